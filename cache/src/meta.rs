//! Object metadata and its in-memory cache, governed by a per-bucket consistency policy.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use foyer::{Cache, CacheBuilder};

/// What Cistern knows about one version of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// Size in bytes.
    pub size: u64,
    /// The origin's entity tag, without quotes.
    pub etag: String,
    /// Last modification time.
    pub last_modified: SystemTime,
    /// Media type, when the origin stores one.
    pub content_type: Option<String>,
    /// Content encoding, when stored.
    pub content_encoding: Option<String>,
    /// Cache-Control, when stored.
    pub cache_control: Option<String>,
    /// Content-Disposition, when stored.
    pub content_disposition: Option<String>,
    /// Content-Language, when stored.
    pub content_language: Option<String>,
    /// User metadata as (name, value), names lower-case without any dialect prefix.
    pub user_metadata: Vec<(String, String)>,
}

/// How long cached metadata may be trusted without asking the origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    /// Metadata may be this stale.
    Ttl(Duration),
    /// Metadata is never revalidated (datasets, checkpoints): the pure direct-read path.
    Immutable,
    /// Every read revalidates metadata with the origin; bytes still come from cache when the
    /// ETag matches.
    Strict,
}

impl Default for Consistency {
    /// Default: a 5-second TTL.
    fn default() -> Self {
        Self::Ttl(Duration::from_secs(5))
    }
}

/// Identifies an object at an origin.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MetaKey {
    /// Origin name.
    pub origin: Arc<str>,
    /// Bucket at the origin.
    pub bucket: Arc<str>,
    /// Key at the origin.
    pub key: Arc<str>,
}

/// The result of a metadata lookup.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// Cached and fresh under the policy.
    Fresh(Arc<ObjectMeta>),
    /// Cached but due for revalidation.
    Stale(Arc<ObjectMeta>),
    /// Not cached.
    Missing,
}

#[derive(Debug, Clone)]
struct Entry {
    meta: Arc<ObjectMeta>,
    validated_at: Instant,
}

/// A bounded in-memory metadata cache.
pub struct MetaCache {
    entries: Cache<MetaKey, Entry>,
}

impl MetaCache {
    /// A cache holding at most `capacity` objects' metadata.
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: CacheBuilder::new(capacity.max(16)).build(),
        }
    }

    /// Looks `key` up under `policy`.
    pub fn lookup(&self, key: &MetaKey, policy: Consistency) -> Lookup {
        let Some(entry) = self.entries.get(key) else {
            return Lookup::Missing;
        };
        let e = entry.value();
        let fresh = match policy {
            Consistency::Immutable => true,
            Consistency::Strict => false,
            Consistency::Ttl(ttl) => e.validated_at.elapsed() < ttl,
        };
        if fresh {
            Lookup::Fresh(Arc::clone(&e.meta))
        } else {
            Lookup::Stale(Arc::clone(&e.meta))
        }
    }

    /// Records metadata just validated against the origin.
    pub fn insert(&self, key: MetaKey, meta: Arc<ObjectMeta>) {
        self.entries.insert(
            key,
            Entry {
                meta,
                validated_at: Instant::now(),
            },
        );
    }

    /// Forgets an object (after a write, or when the origin says it is gone).
    pub fn invalidate(&self, key: &MetaKey) {
        self.entries.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(etag: &str) -> Arc<ObjectMeta> {
        Arc::new(ObjectMeta {
            size: 1,
            etag: etag.into(),
            last_modified: SystemTime::UNIX_EPOCH,
            content_type: None,
            content_encoding: None,
            cache_control: None,
            content_disposition: None,
            content_language: None,
            user_metadata: vec![],
        })
    }

    fn key() -> MetaKey {
        MetaKey {
            origin: "o".into(),
            bucket: "b".into(),
            key: "k".into(),
        }
    }

    #[test]
    fn policies_decide_freshness() {
        let c = MetaCache::new(100);
        assert!(matches!(c.lookup(&key(), Consistency::Immutable), Lookup::Missing));
        c.insert(key(), meta("a"));
        assert!(matches!(c.lookup(&key(), Consistency::Immutable), Lookup::Fresh(_)));
        assert!(matches!(c.lookup(&key(), Consistency::Strict), Lookup::Stale(_)));
        assert!(matches!(
            c.lookup(&key(), Consistency::Ttl(Duration::from_secs(60))),
            Lookup::Fresh(_)
        ));
        assert!(matches!(c.lookup(&key(), Consistency::Ttl(Duration::ZERO)), Lookup::Stale(_)));
        c.invalidate(&key());
        assert!(matches!(c.lookup(&key(), Consistency::Immutable), Lookup::Missing));
    }
}
