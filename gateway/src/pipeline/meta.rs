//! Metadata and consistency: metadata under the bucket's freshness policy (coalesced, asked
//! of its owner in a cluster), write generations, invalidation after writes, part layouts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cistern_cache::{ChunkKey, Consistency, Lookup, MetaKey, ObjectMeta};

use super::chunk::chunk_len;
use super::peers::{ChunkAsk, Node, PeerError};
use super::{BucketBinding, Pipeline};
use crate::error::{Error, ErrorKind, Result};
use crate::origin::PartInfo;

#[derive(Clone)]
pub(super) struct MetaFill {
    pub(super) meta: Arc<ObjectMeta>,
    /// A chunk fetched along with the metadata on a cold read.
    pub(super) chunk: Option<(u64, Bytes)>,
    /// Whether the origin was asked (here, or by the owner that answered).
    pub(super) fetched: bool,
}

/// Part placement by (object, ETag, part number).
pub(super) type PartLayouts = HashMap<(MetaKey, Arc<str>, u32), PartInfo>;

/// Bound on remembered write generations.
const MAX_GENERATIONS: usize = 100_000;

/// Bound on remembered part layouts.
const MAX_PARTS: usize = 100_000;

impl Pipeline {
    /// Where part `n` of this version lies, asking the origin once per version and part.
    pub(super) async fn part(
        &self,
        b: &BucketBinding,
        key: &Arc<str>,
        meta: &ObjectMeta,
        n: u32,
    ) -> Result<PartInfo> {
        let k = (
            self.meta_key(b, key),
            Arc::<str>::from(meta.etag.as_str()),
            n,
        );
        if let Some(p) = self.parts_lock().get(&k) {
            return Ok(p.clone());
        }
        let p = b.origin.part(&b.origin_bucket, key, n).await?;
        if p.etag != meta.etag || p.range.end > meta.size {
            return Err(Error::new(
                ErrorKind::ObjectChanged,
                "The object changed at the origin",
            ));
        }
        let mut map = self.parts_lock();
        if map.len() >= MAX_PARTS {
            map.clear();
        }
        map.insert(k, p.clone());
        Ok(p)
    }

    fn parts_lock(&self) -> std::sync::MutexGuard<'_, PartLayouts> {
        self.parts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// After a write through Cistern: the object's metadata is forgotten here and at its
    /// owners in the cluster before the write is answered, so a read through any front sees
    /// the new version.
    pub(super) async fn written(&self, b: &BucketBinding, key: &Arc<str>) {
        if b.cache_only {
            // Nothing of a cache-only bucket is in the metadata cache (see `direct`).
            return;
        }
        self.written_here(&self.meta_key(b, key));
        self.forget_at_owners(b, key).await;
    }

    /// Forgets an object's metadata here and at its owners (it changed or vanished).
    pub(super) async fn forget(&self, b: &BucketBinding, key: &Arc<str>) {
        self.meta.invalidate(&self.meta_key(b, key));
        self.forget_at_owners(b, key).await;
    }

    async fn forget_at_owners(&self, b: &BucketBinding, key: &Arc<str>) {
        let Some(peers) = &self.peers else { return };
        // The owner and the node that would take over from it (fallback reads cache there),
        // by live and by all members: a node this process thinks dead may still serve others.
        let h = self.meta_key(b, key).placement_hash();
        let mut nodes = peers.route(h, 2);
        for n in peers.owners(h, 2) {
            if !nodes.contains(&n) {
                nodes.push(n);
            }
        }
        let addrs: Vec<Arc<str>> = nodes
            .into_iter()
            .filter_map(|n| match n {
                Node::Peer(addr) => Some(addr),
                Node::Here => None,
            })
            .collect();
        let asks = addrs.iter().map(|a| peers.invalidate(a, &b.name, key));
        let results = futures::future::join_all(asks).await;
        let failed: Vec<Arc<str>> = addrs
            .into_iter()
            .zip(results)
            .filter_map(|(a, r)| r.is_err().then_some(a))
            .collect();
        if failed.is_empty() {
            return;
        }
        self.metrics
            .peer_invalidations_failed
            .inc_by(failed.len() as u64);
        tracing::warn!(bucket = %b.name, key = %key, nodes = failed.len(), "could not invalidate metadata at its owner; retrying in the background");
        // A node that missed it (a blip) must not serve the old version for a whole TTL: try
        // again a few times, after the answer.
        let (peers, bucket, key) = (Arc::clone(peers), b.name.clone(), Arc::clone(key));
        tokio::spawn(async move {
            let mut left = failed;
            for delay in [1u64, 2, 4] {
                tokio::time::sleep(Duration::from_secs(delay)).await;
                let mut still = Vec::new();
                for a in left {
                    if peers.invalidate(&a, &bucket, &key).await.is_err() {
                        still.push(a);
                    }
                }
                if still.is_empty() {
                    return;
                }
                left = still;
            }
            tracing::warn!(bucket = %bucket, key = %key, "gave up invalidating metadata at an owner");
        });
    }

    /// The object's metadata is forgotten here and its generation moves on, so that fetches
    /// begun before the write are neither joined nor cached.
    pub(super) fn written_here(&self, mk: &MetaKey) {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let g = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        {
            let mut gens = self.generations.lock().unwrap_or_else(|e| e.into_inner());
            if gens.len() >= MAX_GENERATIONS {
                // Forgetting generations only ever stops a fetch from being cached.
                gens.clear();
            }
            gens.insert(mk.clone(), g);
        }
        self.meta.invalidate(mk);
    }

    fn generation(&self, mk: &MetaKey) -> u64 {
        generation_of(&self.generations, mk)
    }

    /// Metadata under the bucket's policy. A cold lookup that knows which chunk it will read
    /// first fetches that chunk with the metadata in one origin request. Returns whether the
    /// origin (or the owner) was asked (`cold`).
    pub(super) async fn metadata(
        &self,
        b: &BucketBinding,
        key: &Arc<str>,
        want_chunk: Option<u64>,
    ) -> Result<(MetaFill, bool)> {
        self.metadata_at(b, key, want_chunk, false).await
    }

    /// [`Pipeline::metadata`]; `here_only` when serving another node (never forwarded, so
    /// two nodes with different membership views cannot bounce a request between them).
    pub(super) async fn metadata_at(
        &self,
        b: &BucketBinding,
        key: &Arc<str>,
        want_chunk: Option<u64>,
        here_only: bool,
    ) -> Result<(MetaFill, bool)> {
        let mk = self.meta_key(b, key);
        // Single node (or serving another node): no routing, and no allocation for it.
        let route = match &self.peers {
            Some(p) if !here_only => p.route(mk.placement_hash(), 2),
            _ => Vec::new(),
        };
        let remote = route.first().is_some_and(|n| *n != Node::Here);
        // Metadata owned elsewhere is not kept here, so that a write through another front
        // (which invalidates at the owner) is seen at once — except for immutable buckets,
        // whose metadata is never revalidated anyway.
        let keep_here = !remote || b.consistency == Consistency::Immutable;
        let mut revalidate = false;
        if keep_here {
            match self.meta.lookup(&mk, b.consistency).await {
                Lookup::Fresh(meta) => {
                    return Ok((
                        MetaFill {
                            meta,
                            chunk: None,
                            fetched: false,
                        },
                        false,
                    ))
                }
                Lookup::Stale(_) => revalidate = true,
                Lookup::Missing => {}
            }
        }
        let origin = Arc::clone(&b.origin);
        let (bucket, k) = (Arc::clone(&b.origin_bucket), Arc::clone(key));
        let cs = self.cfg.chunk_size;
        let store = self.store.clone();
        let chunk_key_base = (Arc::clone(&b.origin_name), Arc::clone(&b.origin_bucket));
        let generation = self.generation(&mk);
        let (cache, gens, mk2) = (
            Arc::clone(&self.meta),
            Arc::clone(&self.generations),
            mk.clone(),
        );
        let peers = self.peers.clone();
        let front_bucket: Arc<str> = Arc::from(b.name.as_str());
        let fallbacks = self.metrics.peer_fallbacks.clone();
        // Metadata asked of its owner is not coalesced here: a reader must not join a fetch
        // that began before a write through another front (the owner coalesces anyway).
        let flight_key = if keep_here {
            generation
        } else {
            static UNSHARED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            (1 << 63) | UNSHARED.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        };
        let (res, _) = self
            .meta_flight
            .run((mk.clone(), flight_key), move || async move {
                let mut from_peer = None;
                if let (true, Some(p)) = (remote, &peers) {
                    for node in &route {
                        let Node::Peer(addr) = node else { break };
                        match p.meta(addr, &front_bucket, &k, want_chunk).await {
                            Ok(answer) => {
                                from_peer = Some(MetaFill {
                                    meta: Arc::new(answer.meta),
                                    chunk: answer.chunk,
                                    fetched: answer.fetched,
                                });
                                break;
                            }
                            Err(PeerError::Answer(e)) => return Err(e),
                            Err(PeerError::Unavailable) => {
                                fallbacks.with_label_values(&["next"]).inc();
                            }
                        }
                    }
                }
                let fill = match from_peer {
                    Some(fill) => fill,
                    None => match want_chunk.filter(|_| !revalidate) {
                        None => {
                            let meta = Arc::new(origin.head(&bucket, &k).await?);
                            MetaFill {
                                meta,
                                chunk: None,
                                fetched: true,
                            }
                        }
                        Some(index) => {
                            let r = origin
                                .read(
                                    &bucket,
                                    &k,
                                    index.saturating_mul(cs)..index.saturating_add(1).saturating_mul(cs),
                                    None,
                                )
                                .await?;
                            let meta = Arc::new(r.meta);
                            let chunk = if !r.data.is_empty()
                                && r.data.len() == chunk_len(index, cs, meta.size)
                            {
                                let ck = ChunkKey {
                                    origin: chunk_key_base.0,
                                    bucket: chunk_key_base.1,
                                    key: Arc::clone(&k),
                                    etag: Arc::from(meta.etag.as_str()),
                                    index,
                                };
                                // The chunk goes to its owner: kept here, or handed over.
                                let owner = match &peers {
                                    Some(p) => p.route(ck.placement_hash(), 1).pop(),
                                    None => Some(Node::Here),
                                };
                                match (owner, &peers) {
                                    (Some(Node::Peer(addr)), Some(p)) => {
                                        let ask = ChunkAsk {
                                            bucket: Arc::clone(&front_bucket),
                                            key: Arc::clone(&k),
                                            etag: Arc::clone(&ck.etag),
                                            size: meta.size,
                                            index,
                                            chunk_size: cs,
                                            via: None,
                                            part: None,
                                            pin: None,
                                            cached_only: false,
                                        };
                                        // Handed over before the metadata is answered, so that
                                        // a reader told the ETag finds the chunk at its owner.
                                        if p.push(&addr, &ask, r.data.clone()).await.is_err() {
                                            tracing::debug!(peer = %addr, "could not hand a chunk to its owner");
                                        }
                                    }
                                    _ => store.insert(ck, r.data.clone()),
                                }
                                Some((index, r.data))
                            } else {
                                None
                            };
                            MetaFill {
                                meta,
                                chunk,
                                fetched: true,
                            }
                        }
                    },
                };
                // Cached before the flight ends, so that a reader arriving as it ends finds
                // it rather than starting a second fetch; not if a write landed meanwhile
                // (this answer may predate it).
                if keep_here && generation_of(&gens, &mk2) == generation {
                    cache.insert(mk2, Arc::clone(&fill.meta));
                }
                Ok(fill)
            })
            .await;
        match res {
            Ok(fill) => {
                let fetched = fill.fetched;
                Ok((fill, fetched))
            }
            Err(e) => {
                if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NoSuchBucket) {
                    self.meta.invalidate(&mk);
                }
                Err(e)
            }
        }
    }
}

fn generation_of(gens: &Mutex<HashMap<MetaKey, u64>>, mk: &MetaKey) -> u64 {
    gens.lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(mk)
        .copied()
        .unwrap_or(0)
}
