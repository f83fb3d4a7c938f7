//! Warm-up: filling the cache with an object before anyone reads it, through the same
//! metadata and chunk paths a read takes — so in a cluster each chunk is filled by its owner,
//! once, and a chunk already cached costs no origin request.
//!
//! A warm-up never brings chunk bytes to the node that runs it: it asks each chunk's owner for
//! one byte of the chunk (the owner fills the whole chunk on a miss, as for any read) — or,
//! with a pin, for the owner to read the whole chunk and pin it there.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cistern_cache::range::ChunkSpan;
use cistern_cache::{ChunkKey, Served, Tier};

use super::chunk::chunk_len;
use super::peers::{Node, PeerError};
use super::{BucketBinding, Pipeline};
use crate::error::{Error, ErrorKind, Result};

/// What warming one object did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Warmed {
    /// The version warmed.
    pub etag: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its chunks.
    pub chunks: u64,
    /// Bytes filled from the origin now.
    pub fetched_bytes: u64,
    /// Bytes that were cached already.
    pub cached_bytes: u64,
    /// Chunks pinned (with a pin).
    pub pinned_chunks: u64,
}

impl Pipeline {
    /// Warms one object: its metadata, then every chunk at its owner (filled from the origin
    /// where missing), pinned there for `pin` when given. If the object changes at the origin
    /// meanwhile, its metadata is refreshed and the warm-up retried once.
    pub async fn warm(
        &self,
        b: &BucketBinding,
        key: &str,
        pin: Option<Duration>,
    ) -> Result<Warmed> {
        let key: Arc<str> = Arc::from(key);
        match self.try_warm(b, &key, pin).await {
            Err(e) if e.kind() == ErrorKind::ObjectChanged => {
                self.forget(b, &key).await;
                self.try_warm(b, &key, pin).await
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                self.forget(b, &key).await;
                Err(e)
            }
            other => other,
        }
    }

    async fn try_warm(
        &self,
        b: &BucketBinding,
        key: &Arc<str>,
        pin: Option<Duration>,
    ) -> Result<Warmed> {
        // A cold lookup fetches chunk 0 along with the metadata (one origin request) and
        // hands it to its owner, as a read does.
        let (fill, _) = self.metadata(b, key, Some(0)).await?;
        let meta = fill.meta;
        let cs = self.cfg.chunk_size;
        let etag: Arc<str> = Arc::from(meta.etag.as_str());
        let mut out = Warmed {
            etag: meta.etag.clone(),
            size: meta.size,
            chunks: meta.size.div_ceil(cs),
            ..Warmed::default()
        };
        for index in 0..out.chunks {
            let len = chunk_len(index, cs, meta.size) as u64;
            let came_along = index == 0 && matches!(fill.chunk, Some((0, _)));
            let tier = if came_along && pin.is_none() {
                Tier::Origin
            } else {
                let t = self
                    .warm_chunk(b, key, &etag, meta.size, index, pin)
                    .await?;
                if came_along {
                    Tier::Origin
                } else {
                    t
                }
            };
            if pin.is_some() {
                out.pinned_chunks += 1;
            }
            match tier {
                Tier::Origin => out.fetched_bytes += len,
                _ => out.cached_bytes += len,
            }
        }
        Ok(out)
    }

    /// Warms chunk `index` at its owner (the next live node when the owner is unavailable);
    /// returns the tier the owner had it in (`Origin`: filled now). No node at all: an
    /// error — a warm-up never reads from the origin without caching what it read.
    async fn warm_chunk(
        &self,
        b: &BucketBinding,
        key: &Arc<str>,
        etag: &Arc<str>,
        size: u64,
        index: u64,
        pin: Option<Duration>,
    ) -> Result<Tier> {
        let ck = self.chunk_key(b, key, etag, index);
        let Some(peers) = &self.peers else {
            return Ok(self.warm_here(b, ck, size, pin).await?.tier);
        };
        for node in peers.route(ck.placement_hash(), 2) {
            let addr = match node {
                Node::Here => return Ok(self.warm_here(b, ck, size, pin).await?.tier),
                Node::Peer(addr) => addr,
            };
            let mut ask = self.ask(b, key, etag, size, index, None);
            ask.part = Some((0, 1));
            ask.pin = pin.map(|p| p.as_secs().max(1));
            match peers.chunk(&addr, &ask).await {
                Ok((_, tier)) => return Ok(tier),
                Err(PeerError::Answer(e)) => return Err(e),
                Err(PeerError::Unavailable) => {
                    self.metrics
                        .peer_fallbacks
                        .with_label_values(&["next"])
                        .inc();
                }
            }
        }
        Err(Error::new(
            ErrorKind::OriginUnavailable,
            "no cache node could take the chunk",
        ))
    }

    /// Warms a chunk this node holds: one byte of it read through the store (the whole chunk
    /// filled on a miss; an SSD-resident chunk costs one piece read), or with a pin the whole
    /// chunk read and pinned. A pin the pin table has no room for is an error (`Throttled`,
    /// final: the chunk is cached, not pinned).
    pub(super) async fn warm_here(
        &self,
        b: &BucketBinding,
        ck: ChunkKey,
        size: u64,
        pin: Option<Duration>,
    ) -> Result<Served> {
        let len = chunk_len(ck.index, self.cfg.chunk_size, size);
        let span = ChunkSpan {
            index: ck.index,
            start: 0,
            end: if pin.is_some() { len } else { len.min(1) },
        };
        let served = self.local_chunk(b, ck.clone(), size, span, None).await?;
        if let Some(p) = pin {
            if !self.store.pin(ck, served.data.clone(), Instant::now() + p) {
                return Err(Error::new(
                    ErrorKind::Throttled,
                    "the cache node's pin table is full (pins hold at most half of its RAM cache); the chunk is cached but not pinned",
                ));
            }
        }
        Ok(served)
    }

    /// Pinned chunks on this node, their bytes, and the most bytes pins may hold.
    pub fn pinned(&self) -> (u64, u64, u64) {
        self.store.pinned()
    }

    /// The most-read objects lately (`bucket/key`, decayed read counts), most read first.
    pub fn hot_objects(&self, n: usize) -> Vec<(Arc<str>, u64)> {
        self.top.top(n)
    }
}
