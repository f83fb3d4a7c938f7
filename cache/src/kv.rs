//! Cache-only namespaces (the inference KV tier): objects written into the cache and living
//! nowhere else. This node's share of them: an index per namespace (key → the version it
//! holds), with a byte quota enforced by evicting the least recently used objects and an
//! optional time to live; the bytes are chunks in the [`ChunkStore`] (RAM, then SSD), under
//! keys no origin can produce. Nothing here is durable: a restart, a lost chunk or an eviction
//! drops an object, and a reader then finds it absent.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::{Bound, Range};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::key::ChunkKey;
use crate::meta::ObjectMeta;
use crate::store::{ChunkStore, Tier};

/// The origin name of every cache-only chunk key. Configured origin names cannot hold a NUL,
/// so these keys never meet an origin's.
const KV_ORIGIN: &str = "\0kv";

/// A namespace's limits on one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KvLimits {
    /// The most bytes of objects the namespace keeps on this node (`None`: only the cache's
    /// own capacity bounds it).
    pub quota: Option<u64>,
    /// How long an object lives after it was written (`None`: until evicted).
    pub ttl: Option<Duration>,
}

/// Why an object could not be read or kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    /// The node does not hold it (never written, deleted, expired, evicted or lost).
    #[error("no such object")]
    NotFound,
    /// It holds another version than the one asked for.
    #[error("the object changed")]
    Changed,
    /// A commit found chunks of the version missing (never staged, or already evicted).
    #[error("the object's bytes did not all arrive")]
    Incomplete,
    /// The object is larger than the namespace's whole quota.
    #[error("the object is larger than the namespace's quota")]
    TooLarge,
}

/// One namespace's usage on this node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KvUsage {
    /// The namespace.
    pub space: String,
    /// Objects held.
    pub objects: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Objects evicted to stay within the quota, since start.
    pub evicted: u64,
    /// Objects dropped at the end of their time to live, since start.
    pub expired: u64,
    /// Objects found to have lost bytes (the cache let a chunk go), since start.
    pub lost: u64,
}

struct Entry {
    meta: Arc<ObjectMeta>,
    /// Last use, as the namespace's use counter (its position in `lru`).
    tick: u64,
    expires: Option<Instant>,
}

#[derive(Default)]
struct Space {
    limits: KvLimits,
    used: u64,
    entries: BTreeMap<Arc<str>, Entry>,
    /// Use counter → key, oldest first.
    lru: BTreeMap<u64, Arc<str>>,
    /// Objects in the order they were written, with their deadline and write tick (a later
    /// write or use of the key leaves a stale item behind, recognised by its tick).
    expiry: VecDeque<(Instant, Arc<str>, Arc<str>)>,
    tick: u64,
    evicted: u64,
    expired: u64,
    lost: u64,
}

/// Objects dropped from the index whose chunks are to go too.
type Dropped = Vec<(Arc<str>, Arc<ObjectMeta>)>;

impl Space {
    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    fn take(&mut self, key: &str) -> Option<(Arc<str>, Arc<ObjectMeta>)> {
        let (k, e) = self.entries.remove_entry(key)?;
        self.lru.remove(&e.tick);
        self.used -= e.meta.size;
        Some((k, e.meta))
    }

    /// Drops objects whose time is up (oldest writes first).
    fn reap(&mut self, now: Instant, dropped: &mut Dropped) {
        while let Some((at, key, etag)) = self.expiry.front() {
            if *at > now {
                break;
            }
            let current = self
                .entries
                .get(key)
                .is_some_and(|e| *e.meta.etag == **etag && e.expires.is_some_and(|x| x <= now));
            let key = Arc::clone(key);
            self.expiry.pop_front();
            if current {
                if let Some(d) = self.take(&key) {
                    self.expired += 1;
                    dropped.push(d);
                }
            }
        }
    }

    /// The live entry for `key`, marked as just used; an expired one is dropped.
    fn touch(&mut self, key: &str, now: Instant, dropped: &mut Dropped) -> Option<Arc<ObjectMeta>> {
        let expired = self.entries.get(key)?.expires.is_some_and(|x| x <= now);
        if expired {
            if let Some(d) = self.take(key) {
                self.expired += 1;
                dropped.push(d);
            }
            return None;
        }
        let tick = self.next_tick();
        let e = self.entries.get_mut(key)?;
        let old = std::mem::replace(&mut e.tick, tick);
        let meta = Arc::clone(&e.meta);
        if let Some(k) = self.lru.remove(&old) {
            self.lru.insert(tick, k);
        }
        Some(meta)
    }
}

/// This node's cache-only objects (see the module docs).
pub struct KvStore {
    store: ChunkStore,
    chunk_size: u64,
    spaces: Mutex<HashMap<Arc<str>, Space>>,
}

impl KvStore {
    /// An index over `store`, whose chunks are `chunk_size` bytes.
    pub fn new(store: ChunkStore, chunk_size: u64) -> Self {
        Self {
            store,
            chunk_size: chunk_size.max(1),
            spaces: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Arc<str>, Space>> {
        self.spaces.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn chunk_key(space: &str, key: &str, etag: &str, index: u64) -> ChunkKey {
        ChunkKey {
            origin: Arc::from(KV_ORIGIN),
            bucket: Arc::from(space),
            key: Arc::from(key),
            etag: Arc::from(etag),
            index,
        }
    }

    fn chunks(&self, size: u64) -> u64 {
        size.div_ceil(self.chunk_size)
    }

    fn chunk_len(&self, size: u64, index: u64) -> usize {
        let start = index * self.chunk_size;
        usize::try_from(size.saturating_sub(start).min(self.chunk_size)).unwrap_or(usize::MAX)
    }

    /// Forgets the chunks of objects dropped from the index.
    fn discard(&self, space: &str, dropped: Dropped) {
        for (key, meta) in dropped {
            for i in 0..self.chunks(meta.size) {
                self.store
                    .remove(&Self::chunk_key(space, &key, &meta.etag, i));
            }
        }
    }

    /// Keeps chunk `index` of version `etag` of an object, not yet visible (see
    /// [`KvStore::commit`]): in RAM, and on SSD once RAM lets it go (the index is in RAM, so
    /// an SSD copy made sooner would serve nothing a restart could find).
    pub fn stage(&self, space: &str, key: &str, etag: &str, index: u64, data: Bytes) {
        self.store
            .insert_write_back(Self::chunk_key(space, key, etag, index), data);
    }

    /// Makes an object visible: `meta` (its size and ETag, which names the version whose
    /// chunks were staged) replaces whatever the key held. The namespace takes `limits`, and
    /// its least recently used objects are evicted until it is within its quota again.
    pub fn commit(
        &self,
        space: &str,
        key: &str,
        meta: ObjectMeta,
        limits: KvLimits,
        now: Instant,
    ) -> Result<(), KvError> {
        if limits.quota.is_some_and(|q| meta.size > q) {
            return Err(KvError::TooLarge);
        }
        let all_here = (0..self.chunks(meta.size)).all(|i| {
            self.store
                .resident(&Self::chunk_key(space, key, &meta.etag, i))
        });
        if !all_here {
            return Err(KvError::Incomplete);
        }
        let mut dropped = Vec::new();
        {
            let mut spaces = self.lock();
            let s = match spaces.get_mut(space) {
                Some(s) => s,
                None => spaces.entry(Arc::from(space)).or_default(),
            };
            s.limits = limits;
            s.reap(now, &mut dropped);
            if let Some(old) = s.take(key) {
                if old.1.etag != meta.etag {
                    dropped.push(old);
                }
            }
            let key: Arc<str> = Arc::from(key);
            let tick = s.next_tick();
            let expires = limits.ttl.map(|t| now + t);
            if let Some(at) = expires {
                s.expiry
                    .push_back((at, Arc::clone(&key), Arc::from(meta.etag.as_str())));
            }
            s.used += meta.size;
            s.lru.insert(tick, Arc::clone(&key));
            s.entries.insert(
                Arc::clone(&key),
                Entry {
                    meta: Arc::new(meta),
                    tick,
                    expires,
                },
            );
            while limits.quota.is_some_and(|q| s.used > q) {
                let Some((_, oldest)) = s.lru.first_key_value() else {
                    break;
                };
                if *oldest == key {
                    break;
                }
                let oldest = Arc::clone(oldest);
                if let Some(d) = s.take(&oldest) {
                    s.evicted += 1;
                    dropped.push(d);
                }
            }
        }
        self.discard(space, dropped);
        Ok(())
    }

    /// The object's metadata, or why not: `NotFound` when this node does not hold it whole
    /// (an object whose bytes the cache let go is dropped here).
    pub fn head(&self, space: &str, key: &str, now: Instant) -> Result<Arc<ObjectMeta>, KvError> {
        let meta = self.live(space, key, now)?;
        let whole = (0..self.chunks(meta.size)).all(|i| {
            self.store
                .resident(&Self::chunk_key(space, key, &meta.etag, i))
        });
        if !whole {
            self.lost(space, key, &meta);
            return Err(KvError::NotFound);
        }
        Ok(meta)
    }

    /// The object's metadata and bytes `range` of it (clipped to its size). With `if_match`,
    /// `Changed` unless the node holds that version.
    pub async fn read(
        &self,
        space: &str,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
        now: Instant,
    ) -> Result<(Arc<ObjectMeta>, Bytes, Tier), KvError> {
        let meta = self.live(space, key, now)?;
        if if_match.is_some_and(|e| e != meta.etag) {
            return Err(KvError::Changed);
        }
        let end = range.end.min(meta.size);
        let start = range.start.min(end);
        if start == end {
            return Ok((meta, Bytes::new(), Tier::Memory));
        }
        let cs = self.chunk_size;
        let (first, last) = (start / cs, (end - 1) / cs);
        let mut out: Option<Bytes> = None;
        let mut joined = BytesMut::new();
        let mut tier = Tier::Memory;
        for i in first..=last {
            let base = i * cs;
            let want = usize::try_from(start.max(base) - base).unwrap_or(usize::MAX)
                ..usize::try_from(end.min(base + cs) - base).unwrap_or(usize::MAX);
            let ck = Self::chunk_key(space, key, &meta.etag, i);
            let Some(served) = self
                .store
                .get_cached(&ck, self.chunk_len(meta.size, i), want)
                .await
            else {
                self.lost(space, key, &meta);
                return Err(KvError::NotFound);
            };
            if served.tier == Tier::Disk {
                tier = Tier::Disk;
            }
            if first == last {
                out = Some(served.data);
            } else {
                joined.extend_from_slice(&served.data);
            }
        }
        Ok((meta, out.unwrap_or_else(|| joined.freeze()), tier))
    }

    /// Drops the object; false when the node did not hold it.
    pub fn remove(&self, space: &str, key: &str) -> bool {
        let taken = self.lock().get_mut(space).and_then(|s| s.take(key));
        let found = taken.is_some();
        self.discard(space, taken.into_iter().collect());
        found
    }

    /// The live objects whose keys start with `prefix` and sort after `after`, in key order.
    pub fn list(
        &self,
        space: &str,
        prefix: &str,
        after: Option<&str>,
        now: Instant,
    ) -> Vec<(Arc<str>, Arc<ObjectMeta>)> {
        let spaces = self.lock();
        let Some(s) = spaces.get(space) else {
            return Vec::new();
        };
        let from = match after {
            Some(a) if a >= prefix => Bound::Excluded(a),
            _ => Bound::Included(prefix),
        };
        s.entries
            .range::<str, _>((from, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter(|(_, e)| e.expires.is_none_or(|x| x > now))
            .map(|(k, e)| (Arc::clone(k), Arc::clone(&e.meta)))
            .collect()
    }

    /// Every namespace's usage on this node, by name.
    pub fn usage(&self) -> Vec<KvUsage> {
        let mut out: Vec<KvUsage> = self
            .lock()
            .iter()
            .map(|(name, s)| KvUsage {
                space: name.to_string(),
                objects: s.entries.len() as u64,
                bytes: s.used,
                evicted: s.evicted,
                expired: s.expired,
                lost: s.lost,
            })
            .collect();
        out.sort_by(|a, b| a.space.cmp(&b.space));
        out
    }

    /// The live entry's metadata, used just now.
    fn live(&self, space: &str, key: &str, now: Instant) -> Result<Arc<ObjectMeta>, KvError> {
        let mut dropped = Vec::new();
        let found = {
            let mut spaces = self.lock();
            let s = spaces.get_mut(space).ok_or(KvError::NotFound)?;
            s.reap(now, &mut dropped);
            s.touch(key, now, &mut dropped)
        };
        self.discard(space, dropped);
        found.ok_or(KvError::NotFound)
    }

    /// Drops an object found to have lost a chunk (if the key still holds that version).
    fn lost(&self, space: &str, key: &str, meta: &ObjectMeta) {
        let taken = {
            let mut spaces = self.lock();
            spaces.get_mut(space).and_then(|s| {
                let same = s.entries.get(key).is_some_and(|e| e.meta.etag == meta.etag);
                let t = same.then(|| s.take(key)).flatten();
                if t.is_some() {
                    s.lost += 1;
                }
                t
            })
        };
        self.discard(space, taken.into_iter().collect());
    }
}

#[cfg(test)]
mod tests;
