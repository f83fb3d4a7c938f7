//! The bucket catalog: the buckets Cistern exposes (bound by name, or every bucket of an
//! origin) and where each really lives.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cistern_cache::Consistency;

use crate::error::{Error, ErrorKind, Result};
use crate::origin::Origin;

/// An exposed bucket and where it really lives.
pub struct BucketBinding {
    /// Exposed name.
    pub name: String,
    /// The origin.
    pub origin: Arc<dyn Origin>,
    /// The origin's configured name (cache keys and metric labels).
    pub origin_name: Arc<str>,
    /// The bucket at the origin.
    pub origin_bucket: Arc<str>,
    /// Metadata freshness policy.
    pub consistency: Consistency,
    /// Whether anonymous callers may read and list.
    pub public_read: bool,
    /// Whether objects written through Cistern are kept in the cache.
    pub populate_on_write: bool,
    /// A cache-only bucket: its origin is the cache cluster itself ([`crate::origin::kv`]),
    /// so reads go to it directly, past the chunk and metadata caches.
    pub cache_only: bool,
}

/// An origin whose every bucket is exposed under its own name.
pub struct AutoExpose {
    /// The origin.
    pub origin: Arc<dyn Origin>,
    /// Its configured name.
    pub origin_name: Arc<str>,
    /// Policy for its buckets.
    pub consistency: Consistency,
    /// Whether its buckets are public-read.
    pub public_read: bool,
    /// Whether its buckets populate the cache on write.
    pub populate_on_write: bool,
}

type ResolvedNames = HashMap<String, (Option<Arc<BucketBinding>>, Instant)>;

fn no_such_bucket() -> Error {
    Error::new(
        ErrorKind::NoSuchBucket,
        "The specified bucket does not exist",
    )
}

/// Bucket (container) names Cistern exposes, in both dialects: 1–255 letters, digits, `.`,
/// `-` and `_`, not `.` or `..`. (AWS's and Azure's own rules are stricter; directory-backed
/// buckets need these.) Anything else could otherwise reach an origin's URL or path.
pub fn valid_bucket_name(name: &str) -> bool {
    (1..=255).contains(&name.len())
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_'))
}

/// How long an auto-exposed bucket's existence (or absence) is remembered.
const AUTO_BUCKET_TTL: Duration = Duration::from_secs(2);

/// The buckets Cistern exposes.
pub struct Catalog {
    explicit: HashMap<String, Arc<BucketBinding>>,
    auto: Vec<AutoExpose>,
    /// Auto-exposed names looked up recently: found (`Some`) or not (`None`).
    resolved: Mutex<ResolvedNames>,
}

impl Catalog {
    /// Explicit bindings take precedence over auto-exposed origins, which are tried in order.
    pub fn new(explicit: Vec<BucketBinding>, auto: Vec<AutoExpose>) -> Self {
        Self {
            explicit: explicit
                .into_iter()
                .map(|b| (b.name.clone(), Arc::new(b)))
                .collect(),
            auto,
            resolved: Mutex::new(HashMap::new()),
        }
    }

    /// The binding for an exposed bucket name. Names outside [`valid_bucket_name`] exist
    /// nowhere (and never reach an origin).
    pub async fn resolve(&self, bucket: &str) -> Result<Arc<BucketBinding>> {
        if !valid_bucket_name(bucket) {
            return Err(no_such_bucket());
        }
        if let Some(b) = self.explicit.get(bucket) {
            return Ok(Arc::clone(b));
        }
        if let Some((b, at)) = self.lock().get(bucket) {
            if at.elapsed() < AUTO_BUCKET_TTL {
                return b.clone().ok_or_else(no_such_bucket);
            }
        }
        let mut found = None;
        for a in &self.auto {
            if a.origin.bucket_exists(bucket).await? {
                found = Some(Arc::new(BucketBinding {
                    name: bucket.to_string(),
                    origin: Arc::clone(&a.origin),
                    origin_name: Arc::clone(&a.origin_name),
                    origin_bucket: Arc::from(bucket),
                    consistency: a.consistency,
                    public_read: a.public_read,
                    populate_on_write: a.populate_on_write,
                    cache_only: false,
                }));
                break;
            }
        }
        let mut map = self.lock();
        if map.len() > 10_000 {
            map.clear();
        }
        map.insert(bucket.to_string(), (found.clone(), Instant::now()));
        found.ok_or_else(no_such_bucket)
    }

    /// Where a new bucket of this name would be created: its explicit binding's origin (and
    /// the bucket there), else the first origin whose buckets are exposed.
    pub fn home_for(&self, bucket: &str) -> Option<(Arc<dyn Origin>, Arc<str>)> {
        if !valid_bucket_name(bucket) {
            return None;
        }
        if let Some(b) = self.explicit.get(bucket) {
            return Some((Arc::clone(&b.origin), Arc::clone(&b.origin_bucket)));
        }
        self.auto
            .first()
            .map(|a| (Arc::clone(&a.origin), Arc::from(bucket)))
    }

    /// The one origin of `dialect` the catalog binds (account-level requests of that dialect go
    /// there), or `None` when there is none or more than one.
    pub fn sole_origin(&self, dialect: crate::origin::Dialect) -> Option<Arc<dyn Origin>> {
        let mut found: Option<(&Arc<str>, &Arc<dyn Origin>)> = None;
        let all = self
            .explicit
            .values()
            .map(|b| (&b.origin_name, &b.origin))
            .chain(self.auto.iter().map(|a| (&a.origin_name, &a.origin)));
        for (name, origin) in all {
            if origin.dialect() != dialect {
                continue;
            }
            match found {
                Some((n, _)) if n == name => {}
                Some(_) => return None,
                None => found = Some((name, origin)),
            }
        }
        found.map(|(_, o)| Arc::clone(o))
    }

    /// Forgets what was remembered about an auto-exposed name (after it was created or
    /// deleted through Cistern).
    pub fn forget(&self, bucket: &str) {
        self.lock().remove(bucket);
    }

    /// Whether `bucket` is configured by name (`[buckets.<name>]`), decided without asking any
    /// origin.
    pub fn is_configured(&self, bucket: &str) -> bool {
        self.explicit.contains_key(bucket)
    }

    /// Whether an anonymous caller could possibly read `bucket`, decided without asking any
    /// origin (so unsigned probes of random names cost nothing upstream).
    pub fn could_be_public(&self, bucket: &str) -> bool {
        match self.explicit.get(bucket) {
            Some(b) => b.public_read,
            None => self.auto.iter().any(|a| a.public_read),
        }
    }

    /// Every exposed bucket (by its exposed name) with what its origin says of it, sorted by
    /// name. Explicitly bound buckets are not looked up.
    pub async fn list(&self) -> Result<Vec<crate::origin::BucketEntry>> {
        let mut out: Vec<crate::origin::BucketEntry> = self
            .explicit
            .keys()
            .map(|k| crate::origin::BucketEntry {
                name: k.clone(),
                created: None,
                listing: None,
            })
            .collect();
        for a in &self.auto {
            for b in a.origin.list_buckets().await? {
                if !self.explicit.contains_key(&b.name) {
                    out.push(b);
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out.dedup_by(|a, b| a.name == b.name);
        Ok(out)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ResolvedNames> {
        self.resolved.lock().unwrap_or_else(|e| e.into_inner())
    }
}
