//! In-process tests of the pipeline's cluster routing: three cache-node pipelines and a front
//! over one in-memory origin, joined by a loopback [`Peers`] that calls the target node's
//! pipeline directly, counts every call, and can take a node down. (The real peer protocol,
//! over HTTP between processes, is tested in `conformance/tests/test_cluster.py`.)

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use cistern_cache::placement::{Node as PNode, Placement};
use cistern_cache::range::RangeSpec;
use cistern_cache::{ChunkStore, Consistency, StoreConfig, Tier};
use futures::StreamExt;

use crate::metrics::Metrics;
use crate::origin::layers::{Instrumented, Resilient, RetryPolicy};
use crate::origin::{Origin, PutOptions, Upload};
use crate::pipeline::peers::{ChunkAsk, MetaAnswer, Node, PeerError, Peers};
use crate::pipeline::{BucketBinding, Catalog, Conditions, Pipeline, PipelineConfig, Selection};
use crate::testing::MemOrigin;

const MIB: usize = 1 << 20;

/// The cluster's nodes, shared by every node's loopback.
#[derive(Default)]
struct Fabric {
    nodes: OnceLock<Vec<Arc<Pipeline>>>,
    down: Mutex<HashSet<usize>>,
    /// (operation, node, via) of every call.
    calls: Mutex<Vec<(&'static str, usize, Option<String>)>>,
}

struct Loopback {
    fabric: Arc<Fabric>,
    placement: Placement,
    me: Option<usize>,
}

impl Loopback {
    fn index(node: &str) -> usize {
        node.trim_start_matches('n').parse().expect("node name")
    }

    fn target(
        &self,
        op: &'static str,
        node: &str,
        via: Option<&str>,
    ) -> Result<Arc<Pipeline>, PeerError> {
        let i = Self::index(node);
        self.fabric
            .calls
            .lock()
            .expect("calls")
            .push((op, i, via.map(String::from)));
        if self.fabric.down.lock().expect("down").contains(&i) {
            return Err(PeerError::Unavailable);
        }
        Ok(Arc::clone(&self.fabric.nodes.get().expect("wired")[i]))
    }
}

#[async_trait]
impl Peers for Loopback {
    fn route(&self, hash: u64, n: usize) -> Vec<Node> {
        self.placement
            .ranked(hash, n)
            .into_iter()
            .map(|i| match self.me {
                Some(me) if me == i => Node::Here,
                _ => Node::Peer(Arc::clone(&self.placement.nodes()[i].id)),
            })
            .collect()
    }

    async fn chunk(&self, node: &str, ask: &ChunkAsk) -> Result<(Bytes, Tier), PeerError> {
        let p = self.target("chunk", node, ask.via.as_deref())?;
        p.serve_chunk(ask.clone())
            .await
            .map(|s| (s.data, s.tier))
            .map_err(PeerError::Answer)
    }

    async fn meta(
        &self,
        node: &str,
        bucket: &str,
        key: &str,
        want: Option<u64>,
    ) -> Result<MetaAnswer, PeerError> {
        let p = self.target("meta", node, None)?;
        p.serve_meta(bucket, key, want)
            .await
            .map_err(PeerError::Answer)
    }

    async fn invalidate(&self, node: &str, bucket: &str, key: &str) -> Result<(), PeerError> {
        let p = self.target("invalidate", node, None)?;
        p.serve_invalidate(bucket, key)
            .await
            .map_err(PeerError::Answer)
    }

    async fn push(&self, node: &str, ask: &ChunkAsk, data: Bytes) -> Result<(), PeerError> {
        let p = self.target("push", node, None)?;
        p.accept_chunk(ask.clone(), data)
            .await
            .map_err(PeerError::Answer)
    }
}

struct Cluster {
    fabric: Arc<Fabric>,
    front: Arc<Pipeline>,
    origin: MemOrigin,
    placement: Placement,
}

async fn pipeline(
    origin: &MemOrigin,
    fabric: &Arc<Fabric>,
    placement: &Placement,
    me: Option<usize>,
    cfg: PipelineConfig,
) -> Arc<Pipeline> {
    let metrics = Metrics::new().expect("metrics");
    let store = ChunkStore::open(
        &StoreConfig {
            dir: None,
            memory_bytes: 64 * MIB,
            disk_bytes: 0,
            chunk_size: MIB,
            piece_size: 4096,
        },
        &metrics.registry,
    )
    .await
    .expect("store");
    let layered: Arc<dyn Origin> = Arc::new(Resilient::new(
        Instrumented::new(origin.clone(), Arc::from("mem"), metrics.clone()),
        RetryPolicy {
            timeout: Duration::from_secs(10),
            retries: 0,
            backoff: Duration::from_millis(1),
        },
    ));
    let binding = BucketBinding {
        name: "data".into(),
        origin: layered,
        origin_name: Arc::from("mem"),
        origin_bucket: Arc::from("data"),
        consistency: Consistency::Ttl(Duration::from_secs(60)),
        public_read: false,
        populate_on_write: false,
        cache_only: false,
    };
    let peers = Arc::new(Loopback {
        fabric: Arc::clone(fabric),
        placement: placement.clone(),
        me,
    });
    Arc::new(
        Pipeline::new(Catalog::new(vec![binding], vec![]), store, cfg, metrics).with_peers(peers),
    )
}

async fn cluster(front_cfg: PipelineConfig) -> Cluster {
    let origin = MemOrigin::default();
    let fabric = Arc::new(Fabric::default());
    let placement = Placement::new(
        (0..3)
            .map(|i| PNode {
                id: Arc::from(format!("n{i}")),
                weight: 1.0,
                zone: Arc::from(""),
            })
            .collect(),
    );
    let mut nodes = Vec::new();
    for i in 0..3 {
        nodes.push(
            pipeline(
                &origin,
                &fabric,
                &placement,
                Some(i),
                PipelineConfig::new(MIB as u64, 4),
            )
            .await,
        );
    }
    assert!(fabric.nodes.set(nodes).is_ok());
    let front = pipeline(&origin, &fabric, &placement, None, front_cfg).await;
    Cluster {
        fabric,
        front,
        origin,
        placement,
    }
}

async fn read(p: &Arc<Pipeline>, key: &str, first: u64, last: u64) -> Vec<u8> {
    let b = p.catalog().resolve("data").await.expect("bucket");
    let r = p
        .get(
            &b,
            key,
            Selection::Range(RangeSpec::FromTo { first, last }),
            &Conditions::default(),
        )
        .await
        .expect("get");
    let mut out = Vec::new();
    let mut body = r.body;
    while let Some(c) = body.next().await {
        out.extend_from_slice(&c.expect("body"));
    }
    out
}

fn data(n: usize) -> Bytes {
    Bytes::from(
        (0..n)
            .map(|i| (i * 7 + i / 4096) as u8)
            .collect::<Vec<u8>>(),
    )
}

fn calls(c: &Cluster, op: &str) -> Vec<(usize, Option<String>)> {
    c.fabric
        .calls
        .lock()
        .expect("calls")
        .iter()
        .filter(|(o, _, _)| *o == op)
        .map(|(_, n, v)| (*n, v.clone()))
        .collect()
}

#[tokio::test]
async fn chunks_come_from_their_owners_and_each_is_fetched_once() {
    let c = cluster(PipelineConfig::new(MIB as u64, 4)).await;
    let d = data(6 * MIB);
    c.origin.put("data", "obj", d.clone());
    assert_eq!(read(&c.front, "obj", 0, 6 * MIB as u64 - 1).await, d);
    // One origin request per chunk (the first came with the metadata), none for metadata.
    assert_eq!(c.origin.reads.load(Ordering::SeqCst), 6);
    assert_eq!(c.origin.heads.load(Ordering::SeqCst), 0);
    // Every chunk was asked of its owner; the combined first chunk was handed to its owner.
    let owners: HashSet<usize> = calls(&c, "chunk").iter().map(|(n, _)| *n).collect();
    assert!(owners.len() >= 2, "{owners:?}");
    assert_eq!(read(&c.front, "obj", 0, 6 * MIB as u64 - 1).await, d);
    assert_eq!(
        c.origin.reads.load(Ordering::SeqCst),
        6,
        "a second read is all hits"
    );
    let _ = &c.placement;
}

#[tokio::test]
async fn an_unavailable_owner_costs_hit_ratio_not_errors() {
    let c = cluster(PipelineConfig::new(MIB as u64, 4)).await;
    let d = data(4 * MIB);
    c.origin.put("data", "obj", d.clone());
    assert_eq!(read(&c.front, "obj", 0, 4 * MIB as u64 - 1).await, d);
    // One node down: its chunks come from the next node in placement order.
    c.fabric.down.lock().expect("down").insert(0);
    assert_eq!(read(&c.front, "obj", 0, 4 * MIB as u64 - 1).await, d);
    // All down: straight from the origin, still correct.
    c.fabric.down.lock().expect("down").extend([1, 2]);
    let before = c.origin.reads.load(Ordering::SeqCst);
    assert_eq!(
        read(&c.front, "obj", MIB as u64, 3 * MIB as u64 - 1).await,
        &d[MIB..3 * MIB]
    );
    assert!(c.origin.reads.load(Ordering::SeqCst) > before);
}

#[tokio::test]
async fn a_hot_chunk_spreads_over_replicas_that_fill_from_the_owner() {
    let mut cfg = PipelineConfig::new(MIB as u64, 4);
    cfg.hot_threshold = 4;
    cfg.hot_replicas = 3;
    cfg.near_cache_bytes = 0; // off, to watch the spreading itself
    let c = cluster(cfg).await;
    let d = data(2 * MIB);
    c.origin.put("data", "hot", d.clone());
    for _ in 0..30 {
        assert_eq!(read(&c.front, "hot", 100, 200).await, &d[100..=200]);
    }
    let asked = calls(&c, "chunk");
    let nodes: HashSet<usize> = asked.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        nodes.len(),
        3,
        "the hot chunk was read from every replica: {asked:?}"
    );
    // Replicas fill from the owner (asked with `via`), never from the origin.
    assert!(asked.iter().any(|(_, via)| via.is_some()));
    assert_eq!(
        c.origin.reads.load(Ordering::SeqCst),
        1,
        "one origin request in all"
    );
}

#[tokio::test]
async fn the_near_cache_serves_a_hot_chunk_at_the_front() {
    let mut cfg = PipelineConfig::new(MIB as u64, 4);
    cfg.hot_threshold = 4;
    cfg.hot_replicas = 3;
    cfg.near_cache_bytes = 8 * MIB;
    let c = cluster(cfg).await;
    let d = data(MIB);
    c.origin.put("data", "hot", d.clone());
    for _ in 0..30 {
        assert_eq!(read(&c.front, "hot", 0, 99).await, &d[..100]);
    }
    assert!(calls(&c, "chunk").len() <= 5, "{:?}", calls(&c, "chunk"));
}

#[tokio::test]
async fn a_write_through_the_front_invalidates_metadata_at_its_owners() {
    let c = cluster(PipelineConfig::new(MIB as u64, 4)).await;
    c.origin.put("data", "obj", data(MIB));
    assert_eq!(read(&c.front, "obj", 0, 9).await, &data(MIB)[..10]);
    let new = Bytes::from_static(b"the new version");
    let b = c.front.catalog().resolve("data").await.expect("bucket");
    let body = futures::stream::iter([Ok::<_, crate::error::Error>(new.clone())]).boxed();
    c.front
        .put(
            &b,
            "obj",
            Upload {
                body,
                len: new.len() as u64,
            },
            &PutOptions::default(),
        )
        .await
        .expect("put");
    assert!(!calls(&c, "invalidate").is_empty());
    // The owner forgot it: the next read, through any node, sees the new bytes.
    assert_eq!(read(&c.front, "obj", 0, new.len() as u64 - 1).await, new);
    let other = &c.fabric.nodes.get().expect("nodes")[1];
    assert_eq!(read(other, "obj", 0, new.len() as u64 - 1).await, new);
}
