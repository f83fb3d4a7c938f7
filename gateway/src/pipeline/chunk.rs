//! Chunk reads: from this node's store, from the chunk's owner in the cluster (hot chunks
//! spread over several nodes and kept in the near cache), or from the origin.

use std::sync::Arc;

use bytes::Bytes;
use cistern_cache::range::{chunk_bounds, ChunkSpan};
use cistern_cache::{ChunkKey, Served, Tier};

use super::peers::{ChunkAsk, Node, PeerError};
use super::{BucketBinding, Pipeline};
use crate::error::{Error, ErrorKind, Result};
use crate::origin::Origin;

impl Pipeline {
    /// One chunk: from this node's store (filled once from the origin with `If-Match` on the
    /// ETag), or from its owner in the cluster, falling back to the next node in placement
    /// order and then to the origin directly. Hot chunks are kept in the near cache and
    /// spread over several nodes.
    ///
    /// Returns the bytes of `span` only. An owner elsewhere sends only those (a 4 KiB read
    /// moves 4 KiB between nodes, not the chunk), except for hot chunks, which are fetched
    /// whole for the near cache.
    ///
    /// `fresh`: the response's first read of this chunk (only those count towards heat; a
    /// response may read a chunk a step at a time).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn chunk(
        &self,
        b: &BucketBinding,
        key: &Arc<str>,
        etag: &Arc<str>,
        size: u64,
        span: ChunkSpan,
        fresh: bool,
    ) -> Result<Served> {
        let index = span.index;
        let ck = self.chunk_key(b, key, etag, index);
        let Some(peers) = &self.peers else {
            return self.local_chunk(b, ck, size, span, None).await;
        };
        let hash = ck.placement_hash();
        let hot = if fresh {
            self.heat.touch(hash)
        } else {
            self.heat.is_hot(hash)
        };
        let (mut order, near): (Vec<Node>, Vec<bool>) = if hot {
            peers
                .spread(hash, self.cfg.hot_replicas.max(2))
                .into_iter()
                .unzip()
        } else {
            (peers.route(hash, 2), Vec::new())
        };
        if order.first() == Some(&Node::Here) {
            // The owner serves its own copy, hot or not.
            return self.local_chunk(b, ck, size, span, None).await;
        }
        let mut primary = None;
        if hot {
            if let Some(data) = self.near.get(&ck) {
                self.metrics.near_hits.inc();
                return sliced(
                    Served {
                        data,
                        tier: Tier::Memory,
                        coalesced: false,
                    },
                    span,
                );
            }
            if let Some(Node::Peer(p)) = order.first() {
                primary = Some(Arc::clone(p));
            }
            // Spread the readers of a hot chunk over its nodes in this zone when there are any
            // (zones hold one replica each), else over all of them.
            let turn = HOT_TURN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let near: Vec<usize> = (0..order.len()).filter(|&i| near[i]).collect();
            if near.is_empty() {
                let n = order.len().max(1);
                order.rotate_left(turn % n);
            } else {
                let first = order.remove(near[turn % near.len()]);
                order.insert(0, first);
            }
        }
        let whole = chunk_len(index, self.cfg.chunk_size, size);
        // Only the wanted bytes cross the network, unless the chunk is hot (kept whole here).
        let part = (!hot && (span.start, span.end) != (0, whole)).then_some((span.start, span.end));
        let expected = part.map_or(whole, |(s, e)| e - s);
        for node in &order {
            // A replica (not the owner) fills from the owner, not from the origin.
            let via = match (node, &primary) {
                (Node::Peer(a), Some(p)) if a == p => None,
                (_, p) => p.clone(),
            };
            let addr = match node {
                Node::Here => return self.local_chunk(b, ck, size, span, via).await,
                Node::Peer(addr) => addr,
            };
            let mut ask = self.ask(b, key, etag, size, index, via);
            ask.part = part;
            match peers.chunk(addr, &ask).await {
                Ok((data, tier)) if data.len() == expected => {
                    let tier = if tier == Tier::Origin {
                        Tier::Origin
                    } else {
                        Tier::Peer
                    };
                    let served = Served {
                        data,
                        tier,
                        coalesced: false,
                    };
                    if part.is_some() {
                        return Ok(served);
                    }
                    if hot {
                        self.near.insert(ck, served.data.clone());
                    }
                    return sliced(served, span);
                }
                Ok(_) => {
                    tracing::warn!(peer = %addr, "peer sent a chunk of the wrong length");
                    self.metrics
                        .peer_fallbacks
                        .with_label_values(&["next"])
                        .inc();
                }
                Err(PeerError::Answer(e)) => return Err(e),
                Err(PeerError::Unavailable) => {
                    self.metrics
                        .peer_fallbacks
                        .with_label_values(&["next"])
                        .inc();
                }
            }
        }
        // No node could serve it: the origin directly, without caching it here.
        self.metrics
            .peer_fallbacks
            .with_label_values(&["origin"])
            .inc();
        // Only the wanted bytes: nothing is kept, and a response read a step at a time
        // must not fetch the whole chunk once per piece.
        let mut ask = self.ask(b, key, etag, size, index, None);
        ask.part = Some((span.start, span.end));
        let data =
            fill_from_origin(Arc::clone(&b.origin), ask, Arc::clone(&b.origin_bucket)).await?;
        Ok(Served {
            data,
            tier: Tier::Origin,
            coalesced: false,
        })
    }

    pub(super) fn ask(
        &self,
        b: &BucketBinding,
        key: &Arc<str>,
        etag: &Arc<str>,
        size: u64,
        index: u64,
        via: Option<Arc<str>>,
    ) -> ChunkAsk {
        ChunkAsk {
            bucket: Arc::from(b.name.as_str()),
            key: Arc::clone(key),
            etag: Arc::clone(etag),
            size,
            index,
            chunk_size: self.cfg.chunk_size,
            via,
            part: None,
            pin: None,
            cached_only: false,
        }
    }

    /// The bytes of `span` of a chunk from this node's store (an SSD hit reads only the pieces
    /// they touch), the chunk filled once (for all concurrent callers) from `via` — the
    /// owner, when this node holds a replica of a hot chunk — or from the origin.
    pub(super) async fn local_chunk(
        &self,
        b: &BucketBinding,
        ck: ChunkKey,
        size: u64,
        span: ChunkSpan,
        via: Option<Arc<str>>,
    ) -> Result<Served> {
        // A RAM hit needs none of the fill's setup (its clones and allocations).
        if let Some(served) = self.store.in_ram(&ck, &(span.start..span.end)) {
            check_len(&served.data, span.end - span.start)?;
            return Ok(served);
        }
        let origin = Arc::clone(&b.origin);
        let origin_bucket = Arc::clone(&b.origin_bucket);
        let ask = self.ask(b, &ck.key, &ck.etag, size, ck.index, via);
        let peers = self.peers.clone();
        let regions = Arc::clone(&self.regions);
        let metrics = self.metrics.clone();
        let hash = ck.placement_hash();
        let len = chunk_len(ck.index, self.cfg.chunk_size, size);
        let served = self
            .store
            .get_or_fill(
                &self.chunk_flight,
                ck,
                len,
                span.start..span.end,
                move || async move {
                    if let (Some(peers), Some(owner)) = (peers, ask.via.clone()) {
                        let plain = ChunkAsk {
                            via: None,
                            part: None,
                            pin: None,
                            ..ask.clone()
                        };
                        match peers.chunk(&owner, &plain).await {
                            Ok((data, _))
                                if data.len() == chunk_len(ask.index, ask.chunk_size, ask.size) =>
                            {
                                return Ok(data)
                            }
                            Err(PeerError::Answer(e)) => return Err(e),
                            _ => {}
                        }
                    }
                    if let Some(data) = from_regions(&regions, hash, &ask, &metrics).await {
                        return Ok(data);
                    }
                    fill_from_origin(origin, ask, origin_bucket).await
                },
            )
            .await?;
        if served.coalesced {
            self.metrics.coalesced_waiters.inc();
        }
        check_len(&served.data, span.end - span.start)?;
        Ok(served)
    }

    /// Whether a chunk is (probably) cached where it lives: in this node's store, or —
    /// owned elsewhere — assumed so until its owner says otherwise.
    pub(super) fn probably_cached(&self, ck: &ChunkKey) -> bool {
        match &self.peers {
            Some(p) if p.route(ck.placement_hash(), 1).first() != Some(&Node::Here) => true,
            _ => self.store.resident(ck),
        }
    }
}

/// One chunk from the first other region whose owner holds it (asked only if cached, so a
/// region's miss never becomes its origin read). Any failure — a miss, an unreachable or slow
/// region — is a miss: our own origin is asked next, so a region's outage costs hit ratio only.
async fn from_regions(
    regions: &[super::Region],
    hash: u64,
    ask: &ChunkAsk,
    metrics: &crate::metrics::Metrics,
) -> Option<Bytes> {
    let want = chunk_len(ask.index, ask.chunk_size, ask.size);
    for r in regions {
        let Some(Node::Peer(addr)) = r.peers.route(hash, 1).into_iter().next() else {
            continue;
        };
        let remote = ChunkAsk {
            via: None,
            part: None,
            pin: None,
            cached_only: true,
            ..ask.clone()
        };
        let outcome = match r.peers.chunk(&addr, &remote).await {
            Ok((data, _)) if data.len() == want => {
                metrics
                    .region_fills
                    .with_label_values(&[&r.name, "hit"])
                    .inc();
                return Some(data);
            }
            Ok(_) => "error",
            Err(PeerError::Answer(e)) if e.kind() == ErrorKind::NotFound => "miss",
            Err(PeerError::Answer(_)) => "error",
            Err(PeerError::Unavailable) => "unavailable",
        };
        metrics
            .region_fills
            .with_label_values(&[&r.name, outcome])
            .inc();
    }
    None
}

/// Reads one chunk from the origin with `If-Match` on its ETag.
async fn fill_from_origin(
    origin: Arc<dyn Origin>,
    ask: ChunkAsk,
    origin_bucket: Arc<str>,
) -> Result<Bytes> {
    let mut bounds = chunk_bounds(ask.index, ask.chunk_size, ask.size);
    if let Some((start, end)) = ask.part {
        bounds = bounds.start + start as u64..(bounds.start + end as u64).min(bounds.end);
    }
    let expected = (bounds.end - bounds.start) as usize;
    let r = origin
        .read(&origin_bucket, &ask.key, bounds, Some(&ask.etag))
        .await?;
    if r.data.len() != expected {
        return Err(Error::new(
            ErrorKind::ObjectChanged,
            "The object changed at the origin",
        ));
    }
    Ok(r.data)
}

/// The length of chunk `index` of an object of `size` bytes.
pub(super) fn chunk_len(index: u64, chunk_size: u64, size: u64) -> usize {
    let b = chunk_bounds(index, chunk_size, size);
    (b.end.saturating_sub(b.start)) as usize
}

/// Rotates hot chunks' readers over their nodes.
static HOT_TURN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The `span` of a whole chunk.
pub(super) fn sliced(s: Served, span: ChunkSpan) -> Result<Served> {
    check_len(&s.data, span.end)?;
    Ok(Served {
        data: s.data.slice(span.start..span.end),
        ..s
    })
}

fn check_len(data: &Bytes, end: usize) -> Result<()> {
    if data.len() < end {
        return Err(Error::new(
            ErrorKind::ObjectChanged,
            "The object changed at the origin",
        ));
    }
    Ok(())
}
