//! Cache-only buckets (`origin = "none"`): the inference KV tier's namespaces.

use std::time::Duration;

use super::file::BucketSection;
use super::parse::{parse_duration, parse_size};
use super::{err, ConfigError};

/// The origin name of a cache-only bucket.
pub const NO_ORIGIN: &str = "none";

/// The most replicas a cache-only bucket may ask for.
const MAX_REPLICAS: usize = 8;

/// A cache-only namespace's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheOnly {
    /// The most bytes it keeps on each cache node (`None`: the cache's size).
    pub quota: Option<u64>,
    /// How long an object lives after it was written (`None`: until evicted).
    pub ttl: Option<Duration>,
    /// How many cache nodes keep each object.
    pub replicas: usize,
}

/// The first of `keys` (name, whether set) that is set, as an error at `key.name`.
fn refuse_set(key: &str, keys: &[(&str, bool)], why: &str) -> Result<(), ConfigError> {
    match keys.iter().find(|(_, set)| *set) {
        Some((name, _)) => Err(err(&format!("{key}.{name}"), why)),
        None => Ok(()),
    }
}

/// The cache-only settings of `[buckets.NAME]` (at `key`), or `None` for a bucket with an
/// origin. Keys that belong to the other kind are refused rather than ignored.
pub fn cache_only(key: &str, b: &BucketSection) -> Result<Option<CacheOnly>, ConfigError> {
    if b.origin != NO_ORIGIN {
        refuse_set(
            key,
            &[
                ("quota", b.quota.is_some()),
                ("expire_after", b.expire_after.is_some()),
                ("replicas", b.replicas.is_some()),
            ],
            "only a cache-only bucket (origin = \"none\") takes this",
        )?;
        return Ok(None);
    }
    refuse_set(
        key,
        &[
            ("origin_bucket", b.origin_bucket.is_some()),
            ("consistency", b.consistency.is_some()),
            ("ttl", b.ttl.is_some()),
            ("populate_on_write", b.populate_on_write.is_some()),
        ],
        "a cache-only bucket (origin = \"none\") has no origin to follow; \
         use expire_after for an object lifetime",
    )?;
    let quota = match &b.quota {
        Some(q) => {
            let v = parse_size(q).map_err(|e| err(&format!("{key}.quota"), e))?;
            if v == 0 {
                return Err(err(&format!("{key}.quota"), "must be more than 0"));
            }
            Some(v)
        }
        None => None,
    };
    let ttl = match &b.expire_after {
        Some(t) => {
            let v = parse_duration(t).map_err(|e| err(&format!("{key}.expire_after"), e))?;
            if v.is_zero() {
                return Err(err(&format!("{key}.expire_after"), "must be more than 0"));
            }
            Some(v)
        }
        None => None,
    };
    let replicas = b.replicas.unwrap_or(1);
    if !(1..=MAX_REPLICAS).contains(&replicas) {
        return Err(err(
            &format!("{key}.replicas"),
            format!("must be between 1 and {MAX_REPLICAS}"),
        ));
    }
    Ok(Some(CacheOnly {
        quota,
        ttl,
        replicas,
    }))
}

#[cfg(test)]
mod tests {
    use super::super::{parse_file, FileConfig};
    use super::*;

    fn bucket(body: &str) -> Result<Option<CacheOnly>, ConfigError> {
        let f: FileConfig = parse_file(&format!("[buckets.kv]\n{body}"), "t").expect("parse");
        cache_only("buckets.kv", &f.buckets["kv"])
    }

    #[test]
    fn cache_only_buckets_take_their_own_keys_and_refuse_the_others() {
        let c =
            bucket("origin = \"none\"\nquota = \"1GiB\"\nexpire_after = \"1h\"\nreplicas = 2\n")
                .expect("ok")
                .expect("cache-only");
        assert_eq!(
            c,
            CacheOnly {
                quota: Some(1 << 30),
                ttl: Some(Duration::from_secs(3600)),
                replicas: 2
            }
        );
        let d = bucket("origin = \"none\"\n")
            .expect("ok")
            .expect("cache-only");
        assert_eq!((d.quota, d.ttl, d.replicas), (None, None, 1));
        for (body, key) in [
            ("origin = \"none\"\nttl = \"5s\"\n", "buckets.kv.ttl"),
            (
                "origin = \"none\"\nconsistency = \"strict\"\n",
                "buckets.kv.consistency",
            ),
            ("origin = \"none\"\nreplicas = 0\n", "buckets.kv.replicas"),
            ("origin = \"none\"\nquota = \"0\"\n", "buckets.kv.quota"),
            ("origin = \"none\"\nquota = \"lots\"\n", "buckets.kv.quota"),
            (
                "origin = \"none\"\nexpire_after = \"0s\"\n",
                "buckets.kv.expire_after",
            ),
            ("origin = \"o\"\nquota = \"1GiB\"\n", "buckets.kv.quota"),
        ] {
            let e = bucket(body).expect_err(body);
            assert!(e.to_string().contains(key), "{body}: {e}");
        }
        assert!(bucket("origin = \"o\"\n").expect("ok").is_none());
    }
}
