//! Object metadata and its in-memory cache, governed by a per-bucket consistency policy.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use foyer::{Cache, CacheBuilder};

use crate::key::ChunkKey;
use crate::store::ChunkStore;

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
    /// Base64 MD5 of the whole object, when the origin stores one.
    pub content_md5: Option<String>,
    /// Creation time, when the origin reports one.
    pub created: Option<SystemTime>,
    /// The origin's own kind of object (an Azure origin's blob type), passed through.
    pub origin_kind: Option<String>,
    /// Response headers of the origin's own dialect that describe this version (an S3 origin's
    /// server-side encryption, version id, tag count, storage class, expiration, object lock),
    /// as (lower-case name, value): the front of that dialect returns them on hits as well.
    pub origin_headers: Vec<(String, String)>,
    /// The origin's description changes by itself, with no write (a lease that lapses or is
    /// breaking): it is never trusted without asking the origin again, whatever the policy.
    pub volatile: bool,
}

impl Default for ObjectMeta {
    /// An empty object modified at the epoch, with nothing else known.
    fn default() -> Self {
        Self {
            size: 0,
            etag: String::new(),
            last_modified: UNIX_EPOCH,
            content_type: None,
            content_encoding: None,
            cache_control: None,
            content_disposition: None,
            content_language: None,
            user_metadata: Vec::new(),
            content_md5: None,
            created: None,
            origin_kind: None,
            origin_headers: Vec::new(),
            volatile: false,
        }
    }
}

impl ObjectMeta {
    /// Encodes for the wire between Cistern nodes (the same versioned record as on SSD).
    pub fn to_bytes(&self) -> Bytes {
        encode(&Entry {
            meta: Arc::new(self.clone()),
            validated_at: UNIX_EPOCH,
        })
    }

    /// Decodes [`ObjectMeta::to_bytes`]; `None` when malformed or of another version.
    pub fn from_bytes(b: Bytes) -> Option<Self> {
        decode(b).map(|e| Arc::unwrap_or_clone(e.meta))
    }
}

impl MetaKey {
    /// The key's placement hash (which node owns this object's metadata).
    pub fn placement_hash(&self) -> u64 {
        crate::placement::stable_hash(&[
            b"meta",
            self.origin.as_bytes(),
            self.bucket.as_bytes(),
            self.key.as_bytes(),
        ])
    }
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
    validated_at: SystemTime,
}

/// A bounded in-memory metadata cache, optionally persisted beside the chunks so that after a
/// restart SSD-resident chunks can be found again (their keys carry the ETag).
pub struct MetaCache {
    entries: Cache<MetaKey, Entry>,
    store: Option<ChunkStore>,
    /// When objects were last forgotten. A record validated before that is not believed even
    /// if the SSD still holds it: removing a record can race with its pending write to SSD.
    forgotten: Cache<MetaKey, SystemTime>,
}

impl MetaCache {
    /// A cache holding at most `capacity` objects' metadata in RAM; with a `store`, every
    /// insert is also recorded there.
    pub fn new(capacity: usize, store: Option<ChunkStore>) -> Self {
        Self {
            entries: CacheBuilder::new(capacity.max(16)).build(),
            store,
            forgotten: CacheBuilder::new(capacity.clamp(16, 1 << 16)).build(),
        }
    }

    /// Looks `key` up under `policy`: RAM first, then the persisted record.
    pub async fn lookup(&self, key: &MetaKey, policy: Consistency) -> Lookup {
        if let Some(entry) = self.entries.get(key) {
            return classify(entry.value(), policy);
        }
        let Some(store) = &self.store else {
            return Lookup::Missing;
        };
        let Some(record) = store.get_record(&record_key(key)).await else {
            return Lookup::Missing;
        };
        match decode(record) {
            Some(entry)
                if self
                    .forgotten
                    .get(key)
                    .is_some_and(|t| entry.validated_at <= *t.value()) =>
            {
                // Written before the object was forgotten: a record the removal missed.
                store.remove_record(&record_key(key));
                Lookup::Missing
            }
            Some(mut entry) => {
                if store
                    .unclean_since()
                    .is_some_and(|t| entry.validated_at < t)
                {
                    // The process that wrote it was killed: it may have forgotten this object
                    // (a write, a change seen) without the removal reaching the SSD. Check it
                    // with the origin once before believing it.
                    entry.validated_at = UNIX_EPOCH;
                }
                let out = classify(&entry, policy);
                self.entries.insert(key.clone(), entry);
                out
            }
            None => Lookup::Missing,
        }
    }

    /// Records metadata just validated against the origin.
    pub fn insert(&self, key: MetaKey, meta: Arc<ObjectMeta>) {
        let entry = Entry {
            meta,
            validated_at: SystemTime::now(),
        };
        if let Some(store) = &self.store {
            store.insert_record(record_key(&key), encode(&entry));
        }
        self.entries.insert(key, entry);
    }

    /// Forgets an object (after a write, or when the origin says it is gone).
    pub fn invalidate(&self, key: &MetaKey) {
        self.forgotten.insert(key.clone(), SystemTime::now());
        self.entries.remove(key);
        if let Some(store) = &self.store {
            store.remove_record(&record_key(key));
        }
    }
}

fn classify(e: &Entry, policy: Consistency) -> Lookup {
    let fresh = !e.meta.volatile
        && match policy {
            Consistency::Immutable => true,
            Consistency::Strict => false,
            Consistency::Ttl(ttl) => e.validated_at.elapsed().is_ok_and(|age| age < ttl),
        };
    if fresh {
        Lookup::Fresh(Arc::clone(&e.meta))
    } else {
        Lookup::Stale(Arc::clone(&e.meta))
    }
}

/// Metadata records live in the chunk store under an index no chunk can have and an ETag no
/// origin sends.
fn record_key(k: &MetaKey) -> ChunkKey {
    ChunkKey {
        origin: Arc::clone(&k.origin),
        bucket: Arc::clone(&k.bucket),
        key: Arc::clone(&k.key),
        etag: Arc::from("\0meta"),
        index: u64::MAX,
    }
}

const RECORD_VERSION: u8 = 3;

fn put_str(b: &mut BytesMut, s: &str) {
    b.put_u32_le(s.len() as u32);
    b.put_slice(s.as_bytes());
}

fn put_opt(b: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => {
            b.put_u8(1);
            put_str(b, s);
        }
        None => b.put_u8(0),
    }
}

fn encode(e: &Entry) -> Bytes {
    let m = &e.meta;
    let mut b = BytesMut::with_capacity(256);
    b.put_u8(RECORD_VERSION);
    b.put_u64_le(
        e.validated_at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
    );
    b.put_u64_le(m.size);
    put_str(&mut b, &m.etag);
    b.put_u64_le(
        m.last_modified
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
    );
    put_opt(&mut b, m.content_type.as_deref());
    put_opt(&mut b, m.content_encoding.as_deref());
    put_opt(&mut b, m.cache_control.as_deref());
    put_opt(&mut b, m.content_disposition.as_deref());
    put_opt(&mut b, m.content_language.as_deref());
    b.put_u32_le(m.user_metadata.len() as u32);
    for (k, v) in &m.user_metadata {
        put_str(&mut b, k);
        put_str(&mut b, v);
    }
    put_opt(&mut b, m.content_md5.as_deref());
    match m.created {
        Some(t) => {
            b.put_u8(1);
            b.put_u64_le(
                t.duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64),
            );
        }
        None => b.put_u8(0),
    }
    put_opt(&mut b, m.origin_kind.as_deref());
    b.put_u32_le(m.origin_headers.len() as u32);
    for (k, v) in &m.origin_headers {
        put_str(&mut b, k);
        put_str(&mut b, v);
    }
    // Added within version 3: a record without it is not volatile.
    b.put_u8(u8::from(m.volatile));
    b.freeze()
}

fn get_str(b: &mut Bytes) -> Option<String> {
    if b.remaining() < 4 {
        return None;
    }
    let n = b.get_u32_le() as usize;
    if b.remaining() < n {
        return None;
    }
    String::from_utf8(b.split_to(n).to_vec()).ok()
}

fn get_opt(b: &mut Bytes) -> Option<Option<String>> {
    if !b.has_remaining() {
        return None;
    }
    match b.get_u8() {
        0 => Some(None),
        _ => get_str(b).map(Some),
    }
}

fn get_pairs(b: &mut Bytes) -> Option<Vec<(String, String)>> {
    if b.remaining() < 4 {
        return None;
    }
    let n = b.get_u32_le() as usize;
    let mut pairs = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        pairs.push((get_str(b)?, get_str(b)?));
    }
    Some(pairs)
}

fn decode(mut b: Bytes) -> Option<Entry> {
    if b.remaining() < 17 || b.get_u8() != RECORD_VERSION {
        return None;
    }
    let validated_at = UNIX_EPOCH + Duration::from_millis(b.get_u64_le());
    let size = b.get_u64_le();
    let etag = get_str(&mut b)?;
    if b.remaining() < 8 {
        return None;
    }
    let last_modified = UNIX_EPOCH + Duration::from_millis(b.get_u64_le());
    let content_type = get_opt(&mut b)?;
    let content_encoding = get_opt(&mut b)?;
    let cache_control = get_opt(&mut b)?;
    let content_disposition = get_opt(&mut b)?;
    let content_language = get_opt(&mut b)?;
    if b.remaining() < 4 {
        return None;
    }
    let user_metadata = get_pairs(&mut b)?;
    let content_md5 = get_opt(&mut b)?;
    let created = match b.has_remaining().then(|| b.get_u8())? {
        0 => None,
        _ if b.remaining() >= 8 => Some(UNIX_EPOCH + Duration::from_millis(b.get_u64_le())),
        _ => return None,
    };
    let origin_kind = get_opt(&mut b)?;
    let origin_headers = get_pairs(&mut b)?;
    let volatile = b.has_remaining() && b.get_u8() != 0;
    Some(Entry {
        meta: Arc::new(ObjectMeta {
            size,
            etag,
            last_modified,
            content_type,
            content_encoding,
            cache_control,
            content_disposition,
            content_language,
            user_metadata,
            content_md5,
            created,
            origin_kind,
            origin_headers,
            volatile,
        }),
        validated_at,
    })
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
            ..Default::default()
        })
    }

    fn key() -> MetaKey {
        MetaKey {
            origin: "o".into(),
            bucket: "b".into(),
            key: "k".into(),
        }
    }

    #[tokio::test]
    async fn policies_decide_freshness() {
        let c = MetaCache::new(100, None);
        assert!(matches!(
            c.lookup(&key(), Consistency::Immutable).await,
            Lookup::Missing
        ));
        c.insert(key(), meta("a"));
        assert!(matches!(
            c.lookup(&key(), Consistency::Immutable).await,
            Lookup::Fresh(_)
        ));
        assert!(matches!(
            c.lookup(&key(), Consistency::Strict).await,
            Lookup::Stale(_)
        ));
        assert!(matches!(
            c.lookup(&key(), Consistency::Ttl(Duration::from_secs(60)))
                .await,
            Lookup::Fresh(_)
        ));
        assert!(matches!(
            c.lookup(&key(), Consistency::Ttl(Duration::ZERO)).await,
            Lookup::Stale(_)
        ));
        c.invalidate(&key());
        assert!(matches!(
            c.lookup(&key(), Consistency::Immutable).await,
            Lookup::Missing
        ));
    }

    #[tokio::test]
    async fn a_record_written_before_an_invalidation_is_not_believed() {
        let registry = prometheus::Registry::new();
        let store = crate::ChunkStore::open(
            &crate::StoreConfig {
                dir: None,
                memory_bytes: 1 << 20,
                disk_bytes: 0,
                chunk_size: 64 * 1024,
                piece_size: 64 * 1024,
            },
            &registry,
        )
        .await
        .expect("store");
        let c = MetaCache::new(100, Some(store.clone()));
        let old = Entry {
            meta: meta("old"),
            validated_at: SystemTime::now() - Duration::from_secs(1),
        };
        c.invalidate(&key());
        // The old version's record reaches the store after the removal (a pending write).
        store.insert_record(record_key(&key()), encode(&old));
        assert!(matches!(
            c.lookup(&key(), Consistency::Immutable).await,
            Lookup::Missing
        ));
        // A record validated after the invalidation is believed (records keep milliseconds).
        tokio::time::sleep(Duration::from_millis(5)).await;
        c.insert(key(), meta("new"));
        c.entries.remove(&key());
        match c.lookup(&key(), Consistency::Immutable).await {
            Lookup::Fresh(m) => assert_eq!(m.etag, "new"),
            other => panic!("{other:?}"),
        }
    }

    /// After a process was killed, records it left are checked with the origin once (a
    /// removal it made may have been lost); after a clean close they are believed.
    #[tokio::test]
    async fn records_left_by_a_killed_process_are_revalidated() {
        let dir = tempfile::tempdir().expect("tempdir");
        let open = || async {
            crate::ChunkStore::open(
                &crate::StoreConfig {
                    dir: Some(dir.path().to_path_buf()),
                    memory_bytes: 4 << 20,
                    disk_bytes: 64 << 20,
                    chunk_size: 64 * 1024,
                    piece_size: 64 * 1024,
                },
                &prometheus::Registry::new(),
            )
            .await
            .expect("store")
        };
        let ttl = Consistency::Ttl(Duration::from_secs(3600));
        let store = open().await;
        MetaCache::new(100, Some(store.clone())).insert(key(), meta("v1"));
        // Written to SSD, then "killed": the store is dropped without close().
        store.close_without_marking().await;
        drop(store);
        let store = open().await;
        assert!(store.unclean_since().is_some());
        let c = MetaCache::new(100, Some(store.clone()));
        assert!(matches!(c.lookup(&key(), ttl).await, Lookup::Stale(m) if m.etag == "v1"));
        // Revalidated, then closed cleanly: believed after the next start.
        c.insert(key(), meta("v1"));
        store.close().await.expect("close");
        drop((c, store));
        let store = open().await;
        assert!(store.unclean_since().is_none());
        let c = MetaCache::new(100, Some(store.clone()));
        assert!(matches!(c.lookup(&key(), ttl).await, Lookup::Fresh(m) if m.etag == "v1"));
    }

    #[test]
    fn records_round_trip() {
        let mut m = (*meta("x")).clone();
        m.content_type = Some("text/plain".into());
        m.user_metadata = vec![("a-b".into(), "ü".into())];
        m.content_md5 = Some("1B2M2Y8AsgTpgAmY7PhCfg==".into());
        m.created = Some(UNIX_EPOCH + Duration::from_secs(1_600_000_000));
        m.origin_kind = Some("BlockBlob".into());
        m.origin_headers = vec![("x-amz-server-side-encryption".into(), "AES256".into())];
        m.last_modified = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let e = Entry {
            meta: Arc::new(m.clone()),
            validated_at: SystemTime::now(),
        };
        let back = decode(encode(&e)).expect("decode");
        assert_eq!(*back.meta, m);
        assert!(decode(Bytes::from_static(b"\x09garbage")).is_none());
        m.volatile = true;
        let e = Entry {
            meta: Arc::new(m.clone()),
            validated_at: SystemTime::now(),
        };
        let encoded = encode(&e);
        assert_eq!(*decode(encoded.clone()).expect("decode").meta, m);
        // A record written before the flag existed reads as not volatile.
        let old = decode(encoded.slice(..encoded.len() - 1)).expect("decode");
        assert!(!old.meta.volatile);
    }

    #[tokio::test]
    async fn volatile_metadata_is_never_fresh() {
        let c = MetaCache::new(100, None);
        let mut m = (*meta("a")).clone();
        m.volatile = true;
        c.insert(key(), Arc::new(m));
        assert!(matches!(
            c.lookup(&key(), Consistency::Immutable).await,
            Lookup::Stale(_)
        ));
    }
}
