//! Hot keys: a read-rate estimate per key and a small RAM cache for the hottest chunks.
//!
//! When thousands of readers open the same shard at once, every front asks the same owner for
//! the same chunks. Fronts count reads per chunk in a fixed table ([`Heat`], halved every
//! second, so a count is roughly "reads in the last two seconds"); a chunk whose count passes
//! the threshold is kept in the front's [`NearCache`] and spread over several nodes.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use foyer::{Cache, CacheBuilder};

use crate::key::ChunkKey;

/// Approximate per-key read rates: a count-min sketch (two rows of counters indexed by two
/// halves of the key's hash; a key's count is the smaller of its two). Collisions only ever
/// make a cold key look hot — which costs a little RAM and bandwidth, never correctness — and
/// need a collision in both rows.
pub struct Heat {
    counts: Box<[AtomicU32]>,
    second: AtomicU64,
    start: Instant,
    threshold: u32,
}

impl Heat {
    /// Two rows of `slots` counters; a key is hot once its count reaches `threshold` (0 turns
    /// detection off).
    pub fn new(slots: usize, threshold: u32) -> Self {
        Self {
            counts: (0..slots.max(1) * 2).map(|_| AtomicU32::new(0)).collect(),
            second: AtomicU64::new(0),
            start: Instant::now(),
            threshold,
        }
    }

    /// Counts one read of `hash`; true when the key is hot.
    pub fn touch(&self, hash: u64) -> bool {
        if self.threshold == 0 {
            return false;
        }
        let seen = self.second.load(Ordering::Relaxed);
        let now = self.start.elapsed().as_secs();
        if now > seen
            && self
                .second
                .compare_exchange(seen, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            // One caller per second decays the table (8192 counters: a few microseconds).
            let shift = (now - seen).min(31) as u32;
            for c in self.counts.iter() {
                let v = c.load(Ordering::Relaxed);
                c.store(v >> shift, Ordering::Relaxed);
            }
        }
        let (a, b) = self.slots(hash);
        let ca = a.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        let cb = b.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        ca.min(cb) >= self.threshold
    }

    /// Whether `hash` is hot, without counting a read.
    pub fn is_hot(&self, hash: u64) -> bool {
        if self.threshold == 0 {
            return false;
        }
        let (a, b) = self.slots(hash);
        a.load(Ordering::Relaxed).min(b.load(Ordering::Relaxed)) >= self.threshold
    }

    fn slots(&self, hash: u64) -> (&AtomicU32, &AtomicU32) {
        let row = (self.counts.len() / 2) as u64;
        // The second row takes the high bits of a multiplicative hash: independent of the
        // low bits the first row uses.
        (
            &self.counts[(hash % row) as usize],
            &self.counts[(row + (hash.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) % row) as usize],
        )
    }
}

/// A small RAM-only cache of hot chunks owned by other nodes.
pub struct NearCache {
    cache: Option<Cache<ChunkKey, Bytes>>,
}

impl NearCache {
    /// Holds up to `bytes` of chunk data (0 disables it).
    pub fn new(bytes: usize) -> Self {
        Self {
            cache: (bytes > 0).then(|| {
                CacheBuilder::new(bytes)
                    .with_shards(8)
                    .with_weighter(|_k: &ChunkKey, v: &Bytes| v.len() + 128)
                    .build()
            }),
        }
    }

    /// The chunk, if held.
    pub fn get(&self, key: &ChunkKey) -> Option<Bytes> {
        self.cache.as_ref()?.get(key).map(|e| e.value().clone())
    }

    /// Holds a chunk.
    pub fn insert(&self, key: ChunkKey, data: Bytes) {
        if let Some(c) = &self.cache {
            c.insert(key, data);
        }
    }
}

/// The most-read keys lately, for operators (a dashboard's "hot objects"): a bounded table of
/// decaying counts (Space-Saving: a new key, when the table is full, takes the place of the
/// least-read one and inherits its count, so a count overstates by at most that). Counts are
/// halved every `half_life`, so the table follows what is read now.
pub struct TopKeys {
    inner: std::sync::Mutex<TopTable>,
    capacity: usize,
    half_life: std::time::Duration,
}

struct TopTable {
    counts: std::collections::HashMap<std::sync::Arc<str>, u64>,
    decayed: Instant,
}

impl TopKeys {
    /// Keeps up to `capacity` keys; counts halve every `half_life`.
    pub fn new(capacity: usize, half_life: std::time::Duration) -> Self {
        Self {
            inner: std::sync::Mutex::new(TopTable {
                counts: std::collections::HashMap::with_capacity(capacity.max(1)),
                decayed: Instant::now(),
            }),
            capacity: capacity.max(1),
            half_life,
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, TopTable> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts one read of `key`.
    pub fn touch(&self, key: &str) {
        let mut t = self.table();
        t.decay(self.half_life);
        if let Some(c) = t.counts.get_mut(key) {
            *c += 1;
            return;
        }
        let mut floor = 0;
        if t.counts.len() >= self.capacity {
            // Full: the least-read key makes room (a scan of `capacity` counters, only when a
            // new key arrives).
            if let Some((k, c)) = t
                .counts
                .iter()
                .min_by_key(|(_, c)| **c)
                .map(|(k, c)| (std::sync::Arc::clone(k), *c))
            {
                t.counts.remove(&k);
                floor = c;
            }
        }
        t.counts.insert(std::sync::Arc::from(key), floor + 1);
    }

    /// Up to `n` keys, most read first, with their (decayed) counts.
    pub fn top(&self, n: usize) -> Vec<(std::sync::Arc<str>, u64)> {
        let mut t = self.table();
        t.decay(self.half_life);
        let mut all: Vec<_> = t
            .counts
            .iter()
            .filter(|(_, c)| **c > 0)
            .map(|(k, c)| (std::sync::Arc::clone(k), *c))
            .collect();
        all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        all.truncate(n);
        all
    }
}

impl TopTable {
    fn decay(&mut self, half_life: std::time::Duration) {
        let elapsed = self.decayed.elapsed();
        if half_life.is_zero() || elapsed < half_life {
            return;
        }
        let halvings = (elapsed.as_secs_f64() / half_life.as_secs_f64()).min(63.0) as u32;
        self.decayed = Instant::now();
        self.counts.retain(|_, c| {
            *c >>= halvings;
            *c > 0
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_keys_rank_by_reads_and_stay_bounded() {
        let t = TopKeys::new(3, std::time::Duration::from_secs(3600));
        for _ in 0..5 {
            t.touch("a");
        }
        for _ in 0..3 {
            t.touch("b");
        }
        t.touch("c");
        t.touch("d"); // replaces c (the least read), inheriting its count
        let top = t.top(10);
        assert_eq!(top.len(), 3);
        assert_eq!((&*top[0].0, top[0].1), ("a", 5));
        assert_eq!((&*top[1].0, top[1].1), ("b", 3));
        assert_eq!((&*top[2].0, top[2].1), ("d", 2));
        assert_eq!(t.top(1).len(), 1);
    }

    #[test]
    fn a_key_becomes_hot_after_threshold_reads() {
        let h = Heat::new(64, 5);
        assert!((0..4).all(|_| !h.touch(7)));
        assert!(h.touch(7));
        assert!(!h.touch(8));
        // A key sharing one row's counter with a hot key is not hot itself.
        let h = Heat::new(64, 5);
        for _ in 0..10 {
            h.touch(3);
        }
        assert!(!h.touch(3 + 64));
        assert!(!Heat::new(64, 0).touch(7));
    }

    #[test]
    fn near_cache_holds_and_can_be_off() {
        let k = ChunkKey {
            origin: "o".into(),
            bucket: "b".into(),
            key: "k".into(),
            etag: "e".into(),
            index: 0,
        };
        let n = NearCache::new(1 << 20);
        n.insert(k.clone(), Bytes::from_static(b"abc"));
        assert_eq!(n.get(&k).as_deref(), Some(&b"abc"[..]));
        let off = NearCache::new(0);
        off.insert(k.clone(), Bytes::from_static(b"abc"));
        assert!(off.get(&k).is_none());
    }
}
