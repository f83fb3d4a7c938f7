//! Pinned chunks: chunks kept out of eviction's reach until a deadline.
//!
//! foyer 0.22 cannot pin an entry (its eviction policies know only priority hints), so pins
//! are a table of their own beside the RAM cache: a pinned chunk's bytes are held here (the
//! same `Bytes` the RAM cache holds while it still holds them, so they cost extra memory only
//! once foyer has evicted them) and a read that misses the RAM cache finds them here. The
//! table is bounded (`capacity` bytes): a pin that does not fit is refused, never forced.
//! Pins live in RAM only: a restart forgets them (the chunks stay on SSD as any other).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::key::ChunkKey;

/// How often expired pins are swept out (on the next pin or lookup after this long).
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// The pin table.
pub(crate) struct Pins {
    capacity: u64,
    inner: Mutex<Table>,
    /// Whether anything is pinned: lookups skip the lock when nothing is.
    count: AtomicU64,
}

struct Table {
    entries: HashMap<ChunkKey, (Bytes, Instant)>,
    bytes: u64,
    swept: Instant,
}

impl Pins {
    pub(crate) fn new(capacity: u64) -> Self {
        Self {
            capacity,
            inner: Mutex::new(Table {
                entries: HashMap::new(),
                bytes: 0,
                swept: Instant::now(),
            }),
            count: AtomicU64::new(0),
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Pins `data` under `key` until `until` (a later deadline extends an existing pin).
    /// False when the table has no room for it.
    pub(crate) fn pin(&self, key: ChunkKey, data: Bytes, until: Instant) -> bool {
        let now = Instant::now();
        let mut t = self.table();
        t.sweep(now, false);
        if let Some((_, deadline)) = t.entries.get_mut(&key) {
            *deadline = (*deadline).max(until);
            return true;
        }
        let len = data.len() as u64;
        if t.bytes + len > self.capacity {
            return false;
        }
        t.bytes += len;
        t.entries.insert(key, (data, until));
        self.count.store(t.entries.len() as u64, Ordering::Relaxed);
        true
    }

    /// The pinned chunk, if pinned and not expired.
    pub(crate) fn get(&self, key: &ChunkKey) -> Option<Bytes> {
        if self.count.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let now = Instant::now();
        let mut t = self.table();
        t.sweep(now, false);
        let found = t
            .entries
            .get(key)
            .filter(|(_, until)| *until > now)
            .map(|(b, _)| b.clone());
        self.count.store(t.entries.len() as u64, Ordering::Relaxed);
        found
    }

    /// Whether `key` is pinned (and not expired).
    pub(crate) fn contains(&self, key: &ChunkKey) -> bool {
        self.count.load(Ordering::Relaxed) > 0 && self.get(key).is_some()
    }

    /// Pinned chunks and their bytes, expired pins swept first.
    pub(crate) fn usage(&self) -> (u64, u64) {
        let mut t = self.table();
        t.sweep(Instant::now(), true);
        self.count.store(t.entries.len() as u64, Ordering::Relaxed);
        (t.entries.len() as u64, t.bytes)
    }

    /// The most bytes the table holds.
    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }
}

impl Table {
    fn sweep(&mut self, now: Instant, force: bool) {
        if !force && now.duration_since(self.swept) < SWEEP_EVERY {
            return;
        }
        self.swept = now;
        let mut freed = 0;
        self.entries.retain(|_, (b, until)| {
            let keep = *until > now;
            if !keep {
                freed += b.len() as u64;
            }
            keep
        });
        self.bytes -= freed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u64) -> ChunkKey {
        ChunkKey::for_test(i)
    }

    #[test]
    fn pins_hold_until_their_deadline_within_capacity() {
        let p = Pins::new(10);
        let later = Instant::now() + Duration::from_secs(60);
        assert!(p.pin(key(0), Bytes::from_static(b"12345"), later));
        assert!(p.pin(key(1), Bytes::from_static(b"12345"), later));
        assert!(
            !p.pin(key(2), Bytes::from_static(b"1"), later),
            "over capacity: refused"
        );
        assert!(
            p.pin(key(1), Bytes::from_static(b"12345"), later),
            "re-pinning extends"
        );
        assert_eq!(p.get(&key(0)).as_deref(), Some(&b"12345"[..]));
        assert_eq!(p.usage(), (2, 10));
        let p = Pins::new(10);
        assert!(p.pin(key(0), Bytes::from_static(b"1"), Instant::now()));
        assert!(!p.contains(&key(0)), "an expired pin is not served");
        assert_eq!(p.usage(), (0, 0), "and is swept");
    }
}
