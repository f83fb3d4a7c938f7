//! Wiring: settings → origins (with their layers) → catalog → pipeline → S3 and Blob fronts
//! and the admin listener. Only the binary (and tests) call this.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::Context as _;
use cistern_auth::policy::Policy;
use cistern_cache::{ChunkStore, StoreConfig};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{OriginSpec, Settings};
use crate::metrics::Metrics;
use crate::origin::fs::FsOrigin;
use crate::origin::layers::{Instrumented, Resilient};
use crate::origin::s3::S3Origin;
use crate::origin::Origin;
use crate::pipeline::{AutoExpose, BucketBinding, Catalog, Pipeline, PipelineConfig};
use crate::server::{run_admin, run_blob, run_dual, run_s3, Ready};

/// A running Cistern.
pub struct Running {
    /// Where the S3 listener is bound.
    pub s3_addr: SocketAddr,
    /// Where the Blob listener is bound.
    pub blob_addr: SocketAddr,
    /// Where the both-dialects listener is bound, when configured.
    pub dual_addr: Option<SocketAddr>,
    /// Where the admin listener is bound.
    pub admin_addr: SocketAddr,
    /// The metrics registry (tests read it).
    pub metrics: Metrics,
    ready: Ready,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
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

/// Opens the cache, builds everything and starts listening.
pub async fn start(s: &Settings) -> anyhow::Result<Running> {
    let metrics = Metrics::new().context("cannot create metrics")?;
    let disk = s.disk_bytes > 0;
    if disk {
        std::fs::create_dir_all(&s.cache_dir)
            .with_context(|| format!("cannot create cache directory {}", s.cache_dir.display()))?;
    }
    let store = ChunkStore::open(
        &StoreConfig {
            dir: disk.then(|| s.cache_dir.clone()),
            memory_bytes: usize::try_from(s.memory_bytes).unwrap_or(usize::MAX),
            disk_bytes: usize::try_from(s.disk_bytes).unwrap_or(usize::MAX),
            chunk_size: usize::try_from(s.chunk_size).unwrap_or(usize::MAX),
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
            });
        }
        origins.insert(o.name.clone(), origin);
    }
    let mut explicit = Vec::new();
    for b in &s.buckets {
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
        });
    }
    let pipeline = Arc::new(Pipeline::new(
        Catalog::new(explicit, auto),
        store,
        PipelineConfig {
            chunk_size: s.chunk_size,
            readahead: s.readahead,
        },
        metrics.clone(),
    ));
    let policy = Arc::new(Policy::new(s.principals.clone()));
    let blob_front = Arc::new(crate::blob::BlobFront::new(
        Arc::clone(&pipeline),
        Arc::clone(&policy),
        s.blob_host_domains.clone(),
    ));
    let svc = Arc::new(crate::s3::service(
        Arc::clone(&pipeline),
        policy,
        s.virtual_host_domains.clone(),
        s.region.clone(),
    ));

    let s3_listener = TcpListener::bind(s.s3_listen)
        .await
        .with_context(|| format!("cannot listen on {} (S3)", s.s3_listen))?;
    let blob_listener = TcpListener::bind(s.blob_listen)
        .await
        .with_context(|| format!("cannot listen on {} (Blob)", s.blob_listen))?;
    let admin_listener = TcpListener::bind(s.admin_listen)
        .await
        .with_context(|| format!("cannot listen on {} (admin)", s.admin_listen))?;
    let dual_listener = match s.dual_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (both dialects)"))?,
        ),
        None => None,
    };
    let s3_addr = s3_listener.local_addr()?;
    let blob_addr = blob_listener.local_addr()?;
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
            stopped(rx.clone()),
        )));
    }
    tasks.extend([
        tokio::spawn(run_s3(
            s3_listener,
            svc,
            metrics.clone(),
            stopped(rx.clone()),
        )),
        tokio::spawn(run_blob(
            blob_listener,
            blob_front,
            metrics.clone(),
            stopped(rx.clone()),
        )),
        tokio::spawn(run_admin(
            admin_listener,
            metrics.clone(),
            ready.clone(),
            stopped(rx),
        )),
    ]);
    ready.0.store(true, Ordering::Relaxed);
    Ok(Running {
        s3_addr,
        blob_addr,
        dual_addr,
        admin_addr,
        metrics,
        ready,
        stop,
        tasks,
        pipeline,
    })
}

impl Running {
    /// Stops accepting, drains in-flight requests, and closes the cache (persisting what is
    /// in RAM to SSD).
    pub async fn shutdown(self) {
        self.ready.0.store(false, Ordering::Relaxed);
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        if let Err(e) = self.pipeline.store().close().await {
            tracing::warn!(error = %e, "closing the cache failed");
        }
    }
}
