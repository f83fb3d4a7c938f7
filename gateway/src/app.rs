//! Wiring: settings → origins (with their layers) → catalog → pipeline → S3 and Blob fronts
//! and the admin listener. Only the binary (and tests) call this.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::Context as _;
use cistern_auth::policy::Policy;
use cistern_cache::{ChunkStore, KvLimits, KvStore, StoreConfig};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{Members, OriginSpec, Role, Settings};
use crate::metrics::Metrics;
use crate::origin::fs::FsOrigin;
use crate::origin::kv::KvOrigin;
use crate::origin::layers::{Instrumented, Resilient};
use crate::origin::s3::S3Origin;
use crate::origin::Origin;
use crate::peer::client::PeerClient;
use crate::peer::membership::Membership;
use crate::peer::server::PeerServer;
use crate::pipeline::{AutoExpose, BucketBinding, Catalog, Pipeline, PipelineConfig};
use crate::server::{run_admin, run_blob, run_dual, run_peer, run_s3, Ready};

/// A running Cistern.
pub struct Running {
    /// Where the S3 listener is bound (not on a cache-only node).
    pub s3_addr: Option<SocketAddr>,
    /// Where the Blob listener is bound (not on a cache-only node).
    pub blob_addr: Option<SocketAddr>,
    /// Where the peer listener is bound (cache nodes of a cluster).
    pub peer_addr: Option<SocketAddr>,
    /// Where the both-dialects listener is bound, when configured.
    pub dual_addr: Option<SocketAddr>,
    /// Where the admin listener is bound.
    pub admin_addr: SocketAddr,
    /// The metrics registry (tests read it).
    pub metrics: Metrics,
    ready: Ready,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    /// The admin listener, stopped after the others have drained.
    admin_stop: watch::Sender<bool>,
    admin_task: JoinHandle<()>,
    pipeline: Arc<Pipeline>,
}

fn build_origin(spec: &OriginSpec) -> anyhow::Result<Box<dyn OriginBuild>> {
    Ok(match spec {
        OriginSpec::Fs { root } => Box::new(
            FsOrigin::new(root).with_context(|| format!("cannot open {}", root.display()))?,
        ),
        OriginSpec::S3(cfg) => Box::new(S3Origin::new(cfg).map_err(anyhow::Error::msg)?),
        OriginSpec::Azure(cfg) => {
            Box::new(crate::origin::azure::AzureOrigin::new(cfg).map_err(anyhow::Error::msg)?)
        }
    })
}

/// Lets `build_origin` return either client before the layers are added.
trait OriginBuild: Send + Sync {
    fn layered(
        self: Box<Self>,
        name: Arc<str>,
        metrics: Metrics,
        retry: crate::origin::layers::RetryPolicy,
    ) -> Arc<dyn Origin>;
}

impl<O: Origin> OriginBuild for O {
    fn layered(
        self: Box<Self>,
        name: Arc<str>,
        metrics: Metrics,
        retry: crate::origin::layers::RetryPolicy,
    ) -> Arc<dyn Origin> {
        // Retries outside, metrics inside: every attempt is counted.
        Arc::new(Resilient::new(
            Instrumented::new(*self, name, metrics),
            retry,
        ))
    }
}

/// Connections and origin sockets a process should have room for beside the SSD tier's files.
const SPARE_FILES: u64 = 4096;

/// Raises the open-file limit to its hard maximum, and refuses an SSD tier whose files would
/// not fit under it (one per chunk log segment, at least 16 MiB each: 900 GiB is at most
/// 57,600).
fn open_files_for(ssd_files: u64) -> anyhow::Result<()> {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut lim = getrlimit(Resource::Nofile);
    if lim.current < lim.maximum {
        lim.current = lim.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, lim) {
            tracing::warn!(error = %e, "cannot raise the open-file limit");
            lim = getrlimit(Resource::Nofile);
        }
    }
    let Some(limit) = lim.current else {
        return Ok(());
    };
    if ssd_files + 256 > limit {
        anyhow::bail!(
            "cache.disk needs {ssd_files} open files (one per segment of the SSD tier) but \
             the open-file limit is {limit}: raise the limit (ulimit -n, or the container \
             runtime's nofile) or make cache.disk smaller"
        );
    }
    if ssd_files + SPARE_FILES > limit {
        tracing::warn!(
            ssd_files,
            limit,
            "the SSD tier's files leave little of the open-file limit for connections"
        );
    }
    Ok(())
}

/// Opens the cache, builds everything and starts listening.
pub async fn start(s: &Settings) -> anyhow::Result<Running> {
    let metrics = Metrics::new().context("cannot create metrics")?;
    // A front holds no chunks of its own (they live on the cache nodes): its store only
    // backs the machinery, RAM-only and small.
    let front_only = s.role == Role::Front;
    let disk = s.disk_bytes > 0 && !front_only;
    let memory_bytes = if front_only {
        s.chunk_size * 2
    } else {
        s.memory_bytes
    };
    if disk {
        std::fs::create_dir_all(&s.cache_dir)
            .with_context(|| format!("cannot create cache directory {}", s.cache_dir.display()))?;
        let files = cistern_cache::ssd_files(
            usize::try_from(s.disk_bytes).unwrap_or(usize::MAX),
            usize::try_from(s.chunk_size).unwrap_or(usize::MAX),
        );
        open_files_for(files as u64)?;
    }
    let store = ChunkStore::open(
        &StoreConfig {
            dir: disk.then(|| s.cache_dir.clone()),
            memory_bytes: usize::try_from(memory_bytes).unwrap_or(usize::MAX),
            disk_bytes: usize::try_from(s.disk_bytes).unwrap_or(usize::MAX),
            chunk_size: usize::try_from(s.chunk_size).unwrap_or(usize::MAX),
            piece_size: usize::try_from(s.piece_size).unwrap_or(usize::MAX),
        },
        &metrics.registry,
    )
    .await
    .context("cannot open the chunk cache")?;

    let mut origins: HashMap<String, Arc<dyn Origin>> = HashMap::new();
    let mut auto = Vec::new();
    for o in &s.origins {
        let name: Arc<str> = Arc::from(o.name.as_str());
        let origin = build_origin(&o.spec)
            .with_context(|| format!("origin {:?}", o.name))?
            .layered(Arc::clone(&name), metrics.clone(), o.retry);
        if o.expose_buckets {
            auto.push(AutoExpose {
                origin: Arc::clone(&origin),
                origin_name: Arc::clone(&name),
                consistency: s.default_consistency,
                public_read: s.default_public_read,
                populate_on_write: s.default_populate_on_write,
            });
        }
        origins.insert(o.name.clone(), origin);
    }
    // A random id per process: a node finds itself among the members by it.
    let instance = format!(
        "{:016x}",
        std::hash::BuildHasher::hash_one(
            &std::collections::hash_map::RandomState::new(),
            (std::process::id(), std::time::SystemTime::now())
        )
    );
    let mut region_clients = Vec::new();
    let peer_client = match &s.cluster {
        Some(c) => {
            let addrs = match &c.members {
                Members::Static(list) => list.clone(),
                _ => Vec::new(),
            };
            let membership = Arc::new(Membership::new(&addrs, &c.zone, metrics.clone()));
            let client = Arc::new(
                PeerClient::new(
                    c.secret.clone(),
                    membership,
                    metrics.clone(),
                    c.peer_timeout,
                    (s.role != Role::Front).then(|| instance.clone()),
                    s.chunk_size,
                )
                .context("cannot create the peer client")?,
            );
            let mut regions = Vec::new();
            for r in &c.regions {
                let client = Arc::new(
                    PeerClient::new(
                        c.secret.clone(),
                        Arc::new(Membership::of_region(&r.peers, metrics.clone())),
                        metrics.clone(),
                        r.timeout,
                        None,
                        s.chunk_size,
                    )
                    .context("cannot create a region's peer client")?,
                );
                region_clients.push((Arc::clone(&client), r.peers.clone()));
                regions.push(crate::pipeline::Region {
                    name: Arc::from(r.name.as_str()),
                    peers: client,
                });
            }
            Some((client, regions))
        }
        None => None,
    };
    let (peer_client, regions) = match peer_client {
        Some((c, r)) => (Some(c), r),
        None => (None, Vec::new()),
    };
    let cluster_peers = peer_client
        .as_ref()
        .map(|c| Arc::clone(c) as Arc<dyn crate::pipeline::peers::Peers>);
    // This process's share of the cache-only buckets, when it is a cache node.
    let kv = (!front_only).then(|| Arc::new(KvStore::new(store.clone(), s.chunk_size)));
    if let Some(kv) = &kv {
        metrics
            .registry
            .register(Box::new(
                crate::metrics::KvMetrics::new(Arc::clone(kv))
                    .context("cannot create the cache-only metrics")?,
            ))
            .context("cannot register the cache-only metrics")?;
    }
    let mut explicit = Vec::new();
    for b in &s.buckets {
        if let Some(c) = b.cache_only {
            let origin = KvOrigin::new(
                &b.name,
                KvLimits {
                    quota: c.quota,
                    ttl: c.ttl,
                },
                c.replicas,
                s.chunk_size,
                kv.clone(),
                cluster_peers.clone(),
            );
            explicit.push(BucketBinding {
                name: b.name.clone(),
                origin: Arc::new(origin),
                origin_name: Arc::from(crate::config::NO_ORIGIN),
                origin_bucket: Arc::from(b.name.as_str()),
                consistency: b.consistency,
                public_read: b.public_read,
                populate_on_write: false,
                cache_only: true,
            });
            continue;
        }
        let origin = origins
            .get(&b.origin)
            .with_context(|| format!("bucket {:?}: unknown origin {:?}", b.name, b.origin))?;
        explicit.push(BucketBinding {
            name: b.name.clone(),
            origin: Arc::clone(origin),
            origin_name: Arc::from(b.origin.as_str()),
            origin_bucket: Arc::from(b.origin_bucket.as_str()),
            consistency: b.consistency,
            public_read: b.public_read,
            populate_on_write: b.populate_on_write,
            cache_only: false,
        });
    }
    let mut pipeline_cfg = PipelineConfig::new(s.chunk_size, s.readahead);
    pipeline_cfg.stream_memory = usize::try_from(s.stream_memory).unwrap_or(usize::MAX);
    // What one written object may hold of the RAM cache while it is sent (populate_on_write).
    pipeline_cfg.populate_max_bytes = (s.memory_bytes / 4).min(1 << 30);
    if let Some(c) = &s.cluster {
        pipeline_cfg.near_cache_bytes = usize::try_from(c.near_cache_bytes).unwrap_or(usize::MAX);
        pipeline_cfg.hot_threshold = c.hot_threshold;
        pipeline_cfg.hot_replicas = c.hot_replicas;
    }
    let mut pipeline = Pipeline::new(
        Catalog::new(explicit, auto),
        store,
        pipeline_cfg,
        metrics.clone(),
    );
    if let Some(p) = cluster_peers {
        pipeline = pipeline.with_peers(p).with_regions(regions);
    }
    let pipeline = Arc::new(pipeline);
    let policy = Arc::new(Policy::new(s.principals.clone()));
    let admin_policy = Arc::clone(&policy);
    let blob_front = Arc::new(crate::blob::BlobFront::new(
        Arc::clone(&pipeline),
        Arc::clone(&policy),
        s.blob_host_domains.clone(),
    ));
    let mut svc = crate::s3::service(
        Arc::clone(&pipeline),
        policy,
        s.virtual_host_domains.clone(),
        s.region.clone(),
    );
    if !s.s3_fast_path {
        svc.fast = None;
    }
    let svc = Arc::new(svc);

    let fronts = s.role != Role::Cache;
    let s3_listener = match fronts {
        true => Some(
            TcpListener::bind(s.s3_listen)
                .await
                .with_context(|| format!("cannot listen on {} (S3)", s.s3_listen))?,
        ),
        false => None,
    };
    let blob_listener = match fronts {
        true => Some(
            TcpListener::bind(s.blob_listen)
                .await
                .with_context(|| format!("cannot listen on {} (Blob)", s.blob_listen))?,
        ),
        false => None,
    };
    let peer_listener = match s.cluster.as_ref().and_then(|c| c.peer_listen) {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (peers)"))?,
        ),
        None => None,
    };
    let admin_listener = TcpListener::bind(s.admin_listen)
        .await
        .with_context(|| format!("cannot listen on {} (admin)", s.admin_listen))?;
    let dual_listener = match s.dual_listen.filter(|_| fronts) {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (both dialects)"))?,
        ),
        None => None,
    };
    let s3_addr = s3_listener
        .as_ref()
        .map(TcpListener::local_addr)
        .transpose()?;
    let blob_addr = blob_listener
        .as_ref()
        .map(TcpListener::local_addr)
        .transpose()?;
    let peer_addr = peer_listener
        .as_ref()
        .map(TcpListener::local_addr)
        .transpose()?;
    let admin_addr = admin_listener.local_addr()?;
    let dual_addr = dual_listener
        .as_ref()
        .map(TcpListener::local_addr)
        .transpose()?;

    let (stop, rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|v| *v).await;
    };
    let ready = Ready::default();
    let mut tasks = Vec::new();
    if let Some(l) = dual_listener {
        tasks.push(tokio::spawn(run_dual(
            l,
            Arc::clone(&svc),
            Arc::clone(&blob_front),
            metrics.clone(),
            s.limits,
            stopped(rx.clone()),
        )));
    }
    if let Some(l) = s3_listener {
        tasks.push(tokio::spawn(run_s3(
            l,
            svc,
            metrics.clone(),
            s.limits,
            stopped(rx.clone()),
        )));
    }
    if let Some(l) = blob_listener {
        tasks.push(tokio::spawn(run_blob(
            l,
            blob_front,
            metrics.clone(),
            s.limits,
            stopped(rx.clone()),
        )));
    }
    if let (Some(c), Some(client)) = (&s.cluster, &peer_client) {
        if let Some(l) = peer_listener {
            let server = Arc::new(
                PeerServer::new(
                    Arc::clone(&pipeline),
                    c.secret.clone(),
                    instance.clone(),
                    c.weight,
                    Arc::clone(client.membership()),
                    metrics.clone(),
                    s.chunk_size,
                )
                .with_kv(kv.clone()),
            );
            tasks.push(tokio::spawn(run_peer(
                l,
                server,
                s.limits,
                stopped(rx.clone()),
            )));
        }
        let cache_node = (s.role != Role::Front).then(|| instance.clone());
        match &c.members {
            Members::Etcd {
                endpoints,
                prefix,
                lease_ttl,
            } => {
                let etcd = crate::peer::etcd::EtcdMembers::new(endpoints, prefix, *lease_ttl)
                    .context("cannot create the etcd client")?;
                if let (Some(instance), Some(addr)) = (&cache_node, &c.advertise) {
                    let reg = crate::peer::etcd::Registration {
                        addr: addr.clone(),
                        zone: c.zone.clone(),
                        weight: c.weight,
                        instance: instance.clone(),
                    };
                    tasks.push(tokio::spawn(crate::peer::etcd::register(
                        etcd.clone(),
                        reg,
                        stopped(rx.clone()),
                    )));
                }
                tasks.push(tokio::spawn(crate::peer::etcd::follow(
                    etcd,
                    Arc::clone(client.membership()),
                    cache_node,
                    stopped(rx.clone()),
                )));
            }
            Members::Kubernetes {
                namespace,
                service,
                port,
                api,
            } => {
                let kube = crate::peer::kube::KubeMembers::new(
                    namespace.as_deref(),
                    service,
                    port,
                    api.as_deref(),
                    c.advertise.clone().filter(|_| cache_node.is_some()),
                )
                .context("cannot create the Kubernetes client")?;
                tasks.push(tokio::spawn(crate::peer::kube::follow(
                    kube,
                    Arc::clone(client.membership()),
                    stopped(rx.clone()),
                )));
            }
            Members::Static(_) | Members::Dns { .. } => {}
        }
        tasks.push(tokio::spawn(crate::peer::maintain(
            Arc::clone(client),
            c.members.clone(),
            c.probe_interval,
            stopped(rx.clone()),
        )));
        // Other regions' nodes are probed too (their lists are short): a region that is down
        // is skipped rather than waited for on every miss.
        for (client, peers) in &region_clients {
            tasks.push(tokio::spawn(crate::peer::maintain(
                Arc::clone(client),
                Members::Static(peers.clone()),
                c.probe_interval,
                stopped(rx.clone()),
            )));
        }
    }
    let admin = Arc::new(crate::admin::Admin::new(
        metrics.clone(),
        ready.clone(),
        Arc::clone(&pipeline),
        admin_policy,
        peer_client.as_ref().map(|c| Arc::clone(c.membership())),
        match s.role {
            Role::All => "all",
            Role::Front => "front",
            Role::Cache => "cache",
        },
        // Checkpoints need a writable cache directory: a front (read-only root, no volume)
        // keeps its jobs in memory only.
        disk.then(|| s.cache_dir.join("warm")),
    ));
    // The admin listener stops last (see `Running::shutdown`): /readyz answers 503 while the
    // others drain.
    let (admin_stop, admin_rx) = watch::channel(false);
    let admin_task = tokio::spawn(run_admin(
        admin_listener,
        admin,
        s.limits,
        stopped(admin_rx),
    ));
    drop(rx);
    ready.0.store(true, Ordering::Relaxed);
    Ok(Running {
        s3_addr,
        blob_addr,
        peer_addr,
        dual_addr,
        admin_addr,
        metrics,
        ready,
        stop,
        tasks,
        admin_stop,
        admin_task,
        pipeline,
    })
}

impl Running {
    /// Stops accepting, drains in-flight requests, and closes the cache (persisting what is
    /// in RAM to SSD).
    /// The admin listener goes on answering (`/readyz` with 503) until the others have
    /// drained and the cache is closed, so that probes see the drain rather than a refused
    /// connection.
    pub async fn shutdown(self) {
        self.ready.0.store(false, Ordering::Relaxed);
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        if let Err(e) = self.pipeline.store().close().await {
            tracing::warn!(error = %e, "closing the cache failed");
        }
        let _ = self.admin_stop.send(true);
        let _ = self.admin_task.await;
    }
}
