//! The pipeline's view of the cache cluster: where a key lives and how to ask another node.
//!
//! The pipeline decides *what* to ask (which chunk, which object's metadata) and in which
//! order to fall back (owner → next node in placement order → the origin directly). How nodes
//! are found, probed and spoken to is the peer module's business ([`crate::peer`]), which
//! implements [`Peers`]; the pipeline never sees HTTP.

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use cistern_cache::{KvLimits, ObjectMeta, Tier};

use crate::error::Error;
use crate::origin::{ListPage, ListQuery};

/// One place a key can be read from, as [`Peers::route`] lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// This process (it is a cache node of the cluster).
    Here,
    /// Another cache node, by its peer address.
    Peer(Arc<str>),
}

/// A peer call that did not produce an answer.
#[derive(Debug, Clone)]
pub enum PeerError {
    /// The node could not be asked, or did not answer properly (refused, timed out, a bad
    /// signature or checksum): ask the next node.
    Unavailable,
    /// The node answered with an error about the object itself (from the origin, e.g. not
    /// found or changed): final, asking elsewhere would get the same.
    Answer(Error),
}

/// A chunk asked of another node. Buckets are named as the catalog names them (every node runs
/// the same configuration); `chunk_size` and `size` let the owner check it computes the same
/// bounds.
#[derive(Debug, Clone)]
pub struct ChunkAsk {
    /// The bucket, as exposed.
    pub bucket: Arc<str>,
    /// The object key.
    pub key: Arc<str>,
    /// The version's ETag.
    pub etag: Arc<str>,
    /// The object's size.
    pub size: u64,
    /// The chunk index.
    pub index: u64,
    /// The cluster's chunk size.
    pub chunk_size: u64,
    /// For a hot chunk asked of a replica: the owner the replica fills from.
    pub via: Option<Arc<str>>,
    /// Only these bytes of the chunk (start, end exclusive); the whole chunk when `None`.
    pub part: Option<(usize, usize)>,
    /// Pin the chunk at the node for this many seconds (a warm-up with a pin): the node reads
    /// the whole chunk (filling it if missing) and keeps it from eviction until then.
    pub pin: Option<u64>,
    /// Only if the node holds it (another region's cluster asking before its origin): a node
    /// without it answers not-found rather than filling it.
    pub cached_only: bool,
}

/// Metadata from another node.
#[derive(Debug, Clone)]
pub struct MetaAnswer {
    /// The object's metadata.
    pub meta: ObjectMeta,
    /// The chunk asked for, when it was fetched along with the metadata.
    pub chunk: Option<(u64, Bytes)>,
    /// Whether the node had to ask the origin (a miss), rather than its cache.
    pub fetched: bool,
}

/// The cluster as the pipeline uses it.
#[async_trait]
pub trait Peers: Send + Sync {
    /// Up to `n` live nodes for a placement hash, owner first.
    fn route(&self, hash: u64, n: usize) -> Vec<Node>;

    /// Up to `n` nodes to hold a hot chunk: the owner first, then one per other zone (distinct
    /// zones first), each with whether it is near (in this process's zone and not suspect).
    fn spread(&self, hash: u64, n: usize) -> Vec<(Node, bool)> {
        self.route(hash, n).into_iter().map(|x| (x, true)).collect()
    }

    /// Up to `n` nodes for a placement hash counting every member, dead or alive (where other
    /// nodes may place it): invalidations go there.
    fn owners(&self, hash: u64, n: usize) -> Vec<Node> {
        self.route(hash, n)
    }

    /// A chunk from `node`, and the tier the node served it from.
    async fn chunk(&self, node: &str, ask: &ChunkAsk) -> Result<(Bytes, Tier), PeerError>;

    /// An object's metadata from its owner `node`; with `want`, the node may fetch that chunk
    /// along (one origin request for both on a cold read).
    async fn meta(
        &self,
        node: &str,
        bucket: &str,
        key: &str,
        want: Option<u64>,
    ) -> Result<MetaAnswer, PeerError>;

    /// Tells `node` to forget an object's metadata (after a write).
    async fn invalidate(&self, node: &str, bucket: &str, key: &str) -> Result<(), PeerError>;

    /// Hands `node` a chunk it owns (fetched elsewhere along with metadata).
    async fn push(&self, node: &str, ask: &ChunkAsk, data: Bytes) -> Result<(), PeerError>;

    /// Every live cache node (a cache-only namespace's listing asks them all).
    fn members(&self) -> Vec<Node> {
        Vec::new()
    }

    /// Stores at `node` a chunk of a cache-only object, or (with `put.commit`) its last
    /// chunk and its metadata, making the object visible there.
    async fn kv_put(&self, node: &str, put: &KvPut, data: Bytes) -> Result<(), PeerError> {
        let _ = (node, put, data);
        Err(PeerError::Unavailable)
    }

    /// A cache-only object's metadata at `node`, with bytes `range` (none: metadata only);
    /// with `if_match`, only that version.
    async fn kv_get(
        &self,
        node: &str,
        space: &str,
        key: &str,
        range: Option<Range<u64>>,
        if_match: Option<&str>,
    ) -> Result<(ObjectMeta, Bytes), PeerError> {
        let _ = (node, space, key, range, if_match);
        Err(PeerError::Unavailable)
    }

    /// Drops a cache-only object at `node`.
    async fn kv_delete(&self, node: &str, space: &str, key: &str) -> Result<(), PeerError> {
        let _ = (node, space, key);
        Err(PeerError::Unavailable)
    }

    /// One page of a cache-only namespace's listing of what `node` holds (`q`'s cursor is a
    /// V1 marker).
    async fn kv_list(&self, node: &str, space: &str, q: &ListQuery) -> Result<ListPage, PeerError> {
        let _ = (node, space, q);
        Err(PeerError::Unavailable)
    }
}

/// A piece of a cache-only object sent to one of the nodes that keep it.
#[derive(Debug, Clone)]
pub struct KvPut {
    /// The namespace (the bucket, as exposed).
    pub space: Arc<str>,
    /// The object key.
    pub key: Arc<str>,
    /// The version being written (its ETag).
    pub etag: Arc<str>,
    /// The chunk the body holds.
    pub index: u64,
    /// With the last chunk: the object's metadata and the namespace's limits, to commit.
    pub commit: Option<(ObjectMeta, KvLimits)>,
}
