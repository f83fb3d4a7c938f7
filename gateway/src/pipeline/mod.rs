//! The dialect-neutral read pipeline: bucket catalog → metadata (policy-governed) →
//! conditional checks → chunk reads through the cache with bounded read-ahead → a body stream.

use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use cistern_cache::range::{chunk_bounds, chunk_spans, ChunkSpan, RangeSpec};
use cistern_cache::{
    ChunkKey, ChunkStore, Consistency, Heat, Lookup, MetaCache, MetaKey, NearCache, ObjectMeta,
    Served, SingleFlight, Tier,
};
use futures::stream::FuturesOrdered;
use futures::{Stream, StreamExt};
use tokio::sync::{mpsc, OwnedSemaphorePermit};

use crate::error::{Error, ErrorKind, Result};
use crate::metrics::Metrics;
use crate::origin::{ListPage, ListQuery, Origin, PartInfo, PutOptions, PutResult, Upload};

mod budget;
pub mod peers;

use budget::{Budget, Grant, Held};
use peers::{ChunkAsk, MetaAnswer, Node, PeerError, Peers};

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

/// An entity-tag condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EtagMatch {
    /// `*`.
    Any,
    /// Any of these ETags (unquoted).
    OneOf(Vec<String>),
}

impl EtagMatch {
    fn matches(&self, etag: &str) -> bool {
        match self {
            Self::Any => true,
            Self::OneOf(list) => list.iter().any(|e| e == etag),
        }
    }
}

/// Conditional request headers, dialect-neutral.
#[derive(Debug, Clone, Default)]
pub struct Conditions {
    /// `If-Match`.
    pub if_match: Option<EtagMatch>,
    /// `If-None-Match`.
    pub if_none_match: Option<EtagMatch>,
    /// `If-Modified-Since`.
    pub if_modified_since: Option<SystemTime>,
    /// `If-Unmodified-Since`.
    pub if_unmodified_since: Option<SystemTime>,
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Conditions {
    /// Evaluates the conditions in RFC 9110 §13.2.2 order against `meta`, as S3 does:
    /// If-Match, else If-Unmodified-Since (412); then If-None-Match, else If-Modified-Since
    /// (304 for reads).
    pub fn evaluate(&self, meta: &ObjectMeta) -> Result<()> {
        let failed = || {
            Error::new(
                ErrorKind::PreconditionFailed,
                "At least one of the pre-conditions you specified did not hold",
            )
        };
        let not_modified = || Error::not_modified(&meta.etag, meta.last_modified);
        let lm = secs(meta.last_modified);
        match &self.if_match {
            Some(m) if !m.matches(&meta.etag) => return Err(failed()),
            Some(_) => {}
            None => {
                if self.if_unmodified_since.is_some_and(|t| lm > secs(t)) {
                    return Err(failed());
                }
            }
        }
        match &self.if_none_match {
            Some(m) if m.matches(&meta.etag) => return Err(not_modified()),
            Some(_) => {}
            None => {
                if self.if_modified_since.is_some_and(|t| lm <= secs(t)) {
                    return Err(not_modified());
                }
            }
        }
        Ok(())
    }
}

/// Which bytes of an object a read wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// The whole object.
    All,
    /// A byte range.
    Range(RangeSpec),
    /// One part of a multipart object (1-based), where the origin knows parts.
    Part(u32),
}

/// The response header telling what the cache did, in both dialects.
pub const CACHE_HEADER: &str = "x-cistern-cache";

/// What the cache did for one read (the `x-cistern-cache` header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// Everything came from the cache; the origin was not contacted for bytes.
    Hit,
    /// Everything came from the origin.
    Miss,
    /// Some chunks were cached, some fetched.
    Partial,
    /// The cache was not used.
    Bypass,
}

impl CacheStatus {
    /// The header value and metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::Partial => "partial",
            Self::Bypass => "bypass",
        }
    }
}

/// An object read in progress: headers are known, the body streams.
pub struct ObjectRead {
    /// The version being served.
    pub meta: Arc<ObjectMeta>,
    /// The byte range served, or `None` for the whole object.
    pub range: Option<Range<u64>>,
    /// For part reads: how many parts the object has, when the origin says.
    pub parts_count: Option<u32>,
    /// What the cache did.
    pub cache: CacheStatus,
    /// The body.
    pub body: Body,
}

/// A body of known length: one slice already in hand (a read within one chunk: no task, no
/// channel), or a stream fed by a bounded channel from a producer task (the channel is the
/// backpressure).
pub struct Body {
    source: Source,
    remaining: u64,
}

enum Source {
    Ready(Option<Bytes>),
    Channel(mpsc::Receiver<Result<Bytes>>),
}

impl Body {
    /// Bytes not yet yielded.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    fn ready(b: Bytes) -> Self {
        Self {
            remaining: b.len() as u64,
            source: Source::Ready(Some(b).filter(|b| !b.is_empty())),
        }
    }
}

impl Stream for Body {
    type Item = Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let polled = match &mut this.source {
            Source::Ready(b) => Poll::Ready(b.take().map(Ok)),
            Source::Channel(rx) => rx.poll_recv(cx),
        };
        match polled {
            Poll::Ready(Some(Ok(b))) => {
                this.remaining = this.remaining.saturating_sub(b.len() as u64);
                Poll::Ready(Some(Ok(b)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) if this.remaining > 0 => Poll::Ready(Some(Err(Error::new(
                ErrorKind::Internal,
                "the body ended early",
            )))),
            other => other,
        }
    }
}

/// Pipeline settings.
#[derive(Debug, Clone, Copy)]
pub struct PipelineConfig {
    /// Chunk size in bytes.
    pub chunk_size: u64,
    /// Chunks fetched ahead of the one being sent.
    pub readahead: usize,
    /// RAM for hot chunks owned by other nodes (cluster only).
    pub near_cache_bytes: usize,
    /// Reads of one chunk within about two seconds that make it hot (0: never).
    pub hot_threshold: u32,
    /// How many nodes serve a hot chunk.
    pub hot_replicas: usize,
    /// The most of one written object kept for the cache (buckets with `populate_on_write`).
    pub populate_max_bytes: u64,
    /// Bytes that responses may hold outside the RAM cache at once (see `budget`).
    pub stream_memory: usize,
    /// The SSD piece size: the unit a response without budget advances by.
    pub piece_size: usize,
}

impl PipelineConfig {
    /// A single-node pipeline with `chunk_size` chunks and `readahead` chunks read ahead.
    pub fn new(chunk_size: u64, readahead: usize) -> Self {
        Self {
            chunk_size,
            readahead,
            near_cache_bytes: 0,
            hot_threshold: 0,
            hot_replicas: 1,
            populate_max_bytes: 256 << 20,
            stream_memory: 32 << 20,
            piece_size: 256 << 10,
        }
    }
}

#[derive(Clone)]
struct MetaFill {
    meta: Arc<ObjectMeta>,
    /// A chunk fetched along with the metadata on a cold read.
    chunk: Option<(u64, Bytes)>,
    /// Whether the origin was asked (here, or by the owner that answered).
    fetched: bool,
}

type ChunkFill = Result<(Bytes, Tier)>;

/// The read pipeline shared by every dialect front.
pub struct Pipeline {
    catalog: Catalog,
    store: ChunkStore,
    chunk_flight: SingleFlight<ChunkKey, ChunkFill>,
    meta: Arc<MetaCache>,
    /// Metadata fetches, coalesced per object and write generation.
    meta_flight: SingleFlight<(MetaKey, u64), Result<MetaFill>>,
    /// The write generation of objects written through this Cistern: a metadata fetch that
    /// began before a write neither serves later readers nor enters the cache.
    generations: Arc<Mutex<HashMap<MetaKey, u64>>>,
    /// Part layouts by object version: immutable once the ETag is known.
    parts: Mutex<PartLayouts>,
    cfg: PipelineConfig,
    metrics: Metrics,
    /// The cache cluster, when this node is part of one.
    peers: Option<Arc<dyn Peers>>,
    /// Bytes of uploads kept for the cache right now, across all uploads.
    populating: Arc<std::sync::atomic::AtomicU64>,
    heat: Heat,
    near: NearCache,
    /// Bytes responses hold outside the RAM cache.
    budget: Budget,
}

/// Part placement by (object, ETag, part number).
type PartLayouts = HashMap<(MetaKey, Arc<str>, u32), PartInfo>;

/// Bound on remembered write generations.
const MAX_GENERATIONS: usize = 100_000;

/// Bound on remembered part layouts.
const MAX_PARTS: usize = 100_000;

impl Pipeline {
    /// Wires the pipeline.
    pub fn new(catalog: Catalog, store: ChunkStore, cfg: PipelineConfig, metrics: Metrics) -> Self {
        let meta = Arc::new(MetaCache::new(1 << 20, Some(store.clone())));
        Self {
            catalog,
            store,
            chunk_flight: SingleFlight::default(),
            meta,
            meta_flight: SingleFlight::default(),
            generations: Arc::new(Mutex::new(HashMap::new())),
            parts: Mutex::new(HashMap::new()),
            heat: Heat::new(4096, cfg.hot_threshold),
            near: NearCache::new(cfg.near_cache_bytes),
            budget: Budget::new(
                cfg.stream_memory,
                cfg.piece_size,
                metrics.budget_waits.clone(),
            ),
            cfg,
            metrics,
            peers: None,
            populating: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        }
    }

    /// Joins a cache cluster: chunks and metadata are then read from their owners.
    pub fn with_peers(mut self, peers: Arc<dyn Peers>) -> Self {
        self.peers = Some(peers);
        self
    }

    /// The bucket catalog.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The chunk store (for shutdown).
    pub fn store(&self) -> &ChunkStore {
        &self.store
    }

    /// Stores an object at the origin (streamed), then forgets its cached metadata before
    /// returning, so the writer's next read through Cistern sees the new version (old chunks
    /// become unreachable: their keys carry the old ETag).
    pub async fn put(
        &self,
        b: &BucketBinding,
        key: &str,
        upload: Upload,
        opts: &PutOptions,
    ) -> Result<PutResult> {
        let key: Arc<str> = Arc::from(key);
        let kept = Arc::new(Mutex::new(Kept {
            pieces: Vec::new(),
            len: 0,
            budget: Arc::clone(&self.populating),
        }));
        let upload = if b.populate_on_write {
            keep_while_sending(upload, Arc::clone(&kept), self.cfg.populate_max_bytes)
        } else {
            upload
        };
        let result = b.origin.put(&b.origin_bucket, &key, upload, opts).await;
        // Also after a failure: the origin may have committed before the connection broke.
        self.written(b, &key).await;
        if let (true, Ok(put)) = (b.populate_on_write, &result) {
            self.populate(b, &key, &put.etag, take_kept(&kept)).await;
        }
        result
    }

    /// Caches what was just written: the object's metadata as the origin now reports it
    /// (asked here, or by its owner in a cluster), and the chunks of the kept bytes under the
    /// new ETag, at their owners. Skipped when another write got in between.
    async fn populate(&self, b: &BucketBinding, key: &Arc<str>, etag: &str, mut kept: Kept) {
        let Ok((fill, _)) = self.metadata(b, key, None).await else {
            return;
        };
        let size = fill.meta.size;
        if fill.meta.etag != etag || kept.len > size {
            return;
        }
        let etag: Arc<str> = Arc::from(etag);
        let cs = self.cfg.chunk_size;
        let mut index = 0u64;
        let mut buf = bytes::BytesMut::new();
        for mut piece in std::mem::take(&mut kept.pieces) {
            while !piece.is_empty() {
                let want = chunk_len(index, cs, size);
                if want == 0 {
                    return;
                }
                if buf.is_empty() && piece.len() >= want {
                    // A piece holding the whole chunk is sliced, not copied.
                    let chunk = piece.split_to(want);
                    self.place(b, key, &etag, size, index, chunk).await;
                    index += 1;
                    continue;
                }
                let take = (want - buf.len()).min(piece.len());
                buf.extend_from_slice(&piece.split_to(take));
                if buf.len() == want {
                    self.place(b, key, &etag, size, index, buf.split().freeze())
                        .await;
                    index += 1;
                }
            }
        }
    }

    /// Puts a chunk where it lives: this node's store, or its owner's.
    async fn place(
        &self,
        b: &BucketBinding,
        key: &Arc<str>,
        etag: &Arc<str>,
        size: u64,
        index: u64,
        data: Bytes,
    ) {
        let ck = self.chunk_key(b, key, etag, index);
        self.metrics.populated_bytes.inc_by(data.len() as u64);
        let owner = self
            .peers
            .as_ref()
            .and_then(|p| p.route(ck.placement_hash(), 1).pop());
        match (owner, &self.peers) {
            (Some(Node::Peer(addr)), Some(p)) => {
                let ask = self.ask(b, key, etag, size, index, None);
                if p.push(&addr, &ask, data).await.is_err() {
                    tracing::debug!(peer = %addr, "could not hand a written chunk to its owner");
                }
            }
            _ => self.store.insert(ck, data),
        }
    }

    /// Completes an upload in parts at the origin, then forgets the object's cached metadata.
    pub async fn complete_parts(
        &self,
        b: &BucketBinding,
        key: &str,
        upload_id: &str,
        parts: &[(u32, String)],
    ) -> Result<PutResult> {
        let key: Arc<str> = Arc::from(key);
        let result = b
            .origin
            .complete_parts(&b.origin_bucket, &key, upload_id, parts)
            .await;
        self.written(b, &key).await;
        result
    }

    /// Commits a block list at the origin, then forgets the object's cached metadata.
    pub async fn commit_blocks(
        &self,
        b: &BucketBinding,
        key: &str,
        blocks: &[crate::origin::BlockRef],
        opts: &PutOptions,
    ) -> Result<PutResult> {
        let key: Arc<str> = Arc::from(key);
        let result = b
            .origin
            .commit_blocks(&b.origin_bucket, &key, blocks, opts)
            .await;
        self.written(b, &key).await;
        result
    }

    /// Creates an empty appendable object (an append blob), then forgets cached metadata.
    pub async fn create_appendable(
        &self,
        b: &BucketBinding,
        key: &str,
        opts: &PutOptions,
    ) -> Result<PutResult> {
        let key: Arc<str> = Arc::from(key);
        let result = b
            .origin
            .create_appendable(&b.origin_bucket, &key, opts)
            .await;
        self.written(b, &key).await;
        result
    }

    /// Appends to an appendable object, then forgets its cached metadata (the new length and
    /// ETag are read on the next access; chunks of the old version are never served).
    pub async fn append(
        &self,
        b: &BucketBinding,
        key: &str,
        upload: Upload,
        opts: &crate::origin::AppendOptions,
    ) -> Result<crate::origin::Appended> {
        let key: Arc<str> = Arc::from(key);
        let result = b.origin.append(&b.origin_bucket, &key, upload, opts).await;
        self.written(b, &key).await;
        result
    }

    /// Replaces an object's content headers or user metadata at the origin. The current
    /// version is asked of the origin (not the cache), `cond` is evaluated against it (any
    /// failure is `PreconditionFailed`: this is a write), `build` makes the new properties
    /// from it, and the change applies to that version only. Then the cached metadata is
    /// forgotten, as after any write.
    pub async fn set_properties(
        &self,
        b: &BucketBinding,
        key: &str,
        cond: &Conditions,
        build: impl FnOnce(&ObjectMeta) -> PutOptions,
        which: crate::origin::PropertyKind,
    ) -> Result<PutResult> {
        let key: Arc<str> = Arc::from(key);
        let current = b.origin.head(&b.origin_bucket, &key).await?;
        cond.evaluate(&current).map_err(|e| {
            if e.kind() == ErrorKind::NotModified {
                Error::new(
                    ErrorKind::PreconditionFailed,
                    "The condition specified using HTTP conditional header(s) is not met.",
                )
            } else {
                e
            }
        })?;
        let opts = build(&current);
        let result = b
            .origin
            .set_properties(&b.origin_bucket, &key, &current.etag, &opts, which)
            .await;
        self.written(b, &key).await;
        result
    }

    /// Whether the object exists at the origin now (asked there, not the cache). Used for
    /// create-only writes; the check and the write are two requests, so a concurrent writer
    /// elsewhere can still slip in between.
    pub async fn exists_at_origin(&self, b: &BucketBinding, key: &str) -> Result<bool> {
        match b.origin.head(&b.origin_bucket, key).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Creates a bucket at its home origin ([`Catalog::home_for`]).
    pub async fn create_bucket(&self, bucket: &str) -> Result<()> {
        // A name already served (by any origin) is not created again elsewhere, where it
        // would shadow the existing bucket.
        match self.catalog.resolve(bucket).await {
            Ok(_) => {
                return Err(Error::new(
                    ErrorKind::BucketExists,
                    "The bucket already exists",
                ))
            }
            Err(e) if e.kind() == ErrorKind::NoSuchBucket => {}
            Err(e) => return Err(e),
        }
        let (origin, at) = self.catalog.home_for(bucket).ok_or_else(|| {
            Error::new(
                ErrorKind::NotImplemented,
                "No origin here creates buckets (none exposes its buckets)",
            )
        })?;
        let result = origin.create_bucket(&at).await;
        self.catalog.forget(bucket);
        result
    }

    /// Deletes an (empty) bucket at its origin.
    pub async fn delete_bucket(&self, b: &BucketBinding) -> Result<()> {
        let result = b.origin.delete_bucket(&b.origin_bucket).await;
        self.catalog.forget(&b.name);
        result
    }

    /// Deletes an object at the origin, then forgets its cached metadata.
    pub async fn delete(&self, b: &BucketBinding, key: &str) -> Result<()> {
        let key: Arc<str> = Arc::from(key);
        let result = b.origin.delete(&b.origin_bucket, &key).await;
        self.written(b, &key).await;
        result
    }

    /// Deletes one version of an object (see [`Origin::delete_version`]), then forgets its
    /// cached metadata.
    pub async fn delete_version(
        &self,
        b: &BucketBinding,
        key: &str,
        version: Option<&str>,
        if_match: Option<&str>,
    ) -> Result<crate::origin::Deleted> {
        let key: Arc<str> = Arc::from(key);
        let result = b
            .origin
            .delete_version(&b.origin_bucket, &key, version, if_match)
            .await;
        self.written(b, &key).await;
        result
    }

    /// Forgets an object's cached metadata after Cistern changed something about it at the
    /// origin that its ETag does not show (its tags, and so its tag count).
    pub async fn changed(&self, b: &BucketBinding, key: &str) {
        self.written(b, &Arc::from(key)).await;
    }

    /// Relays a request Cistern has no model of to the bucket's origin (see
    /// [`crate::origin::Passthrough`]); `req.bucket` is the exposed name and becomes the
    /// origin's. Anything but a read may change the object, so its cached metadata is forgotten
    /// (after the origin answered, so a racing fill cannot cache the old version).
    pub async fn relay(
        &self,
        b: &BucketBinding,
        mut req: crate::origin::Passthrough,
    ) -> Result<crate::origin::PassResponse> {
        req.bucket = b.origin_bucket.to_string();
        let changes = !matches!(req.method, http::Method::GET | http::Method::HEAD);
        let result = b.origin.passthrough(&req).await;
        if changes && !req.key.is_empty() {
            self.written(b, &Arc::from(req.key.as_str())).await;
        }
        result
    }

    /// Relays a write with a streamed body (see [`Origin::passthrough_upload`]), then forgets
    /// the object's cached metadata. With `keep` (a whole-object write to a bucket that
    /// populates on write), the bytes sent are kept and, once the origin answered with the new
    /// ETag, cached as [`Self::put`] does.
    pub async fn relay_upload(
        &self,
        b: &BucketBinding,
        mut req: crate::origin::Passthrough,
        upload: Upload,
        keep: bool,
    ) -> Result<crate::origin::PassResponse> {
        req.bucket = b.origin_bucket.to_string();
        let key: Arc<str> = Arc::from(req.key.as_str());
        let keep = keep && b.populate_on_write && !key.is_empty();
        let kept = Arc::new(Mutex::new(Kept {
            pieces: Vec::new(),
            len: 0,
            budget: Arc::clone(&self.populating),
        }));
        let upload = if keep {
            keep_while_sending(upload, Arc::clone(&kept), self.cfg.populate_max_bytes)
        } else {
            upload
        };
        let result = b.origin.passthrough_upload(&req, upload).await;
        if !key.is_empty() {
            self.written(b, &key).await;
        }
        let etag = match &result {
            Ok(r) if keep && r.status.is_success() => r
                .headers
                .get(http::header::ETAG)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim_matches('"').to_string()),
            _ => None,
        };
        if let Some(etag) = etag {
            self.populate(b, &key, &etag, take_kept(&kept)).await;
        }
        result
    }

    /// One page of a listing (always from the origin).
    pub async fn list(&self, b: &BucketBinding, q: &ListQuery) -> Result<ListPage> {
        b.origin.list(&b.origin_bucket, q).await
    }

    /// Object metadata, with conditions evaluated; for a part, where it lies.
    pub async fn head(
        &self,
        b: &BucketBinding,
        key: &str,
        part: Option<u32>,
        cond: &Conditions,
    ) -> Result<(Arc<ObjectMeta>, CacheStatus, Option<PartInfo>)> {
        let key: Arc<str> = Arc::from(key);
        let (fill, cold) = self.metadata(b, &key, None).await?;
        cond.evaluate(&fill.meta)?;
        let part = match part {
            Some(n) => Some(self.part(b, &key, &fill.meta, n).await?),
            None => None,
        };
        let status = if cold {
            CacheStatus::Miss
        } else {
            CacheStatus::Hit
        };
        Ok((fill.meta, status, part))
    }

    /// Where part `n` of this version lies, asking the origin once per version and part.
    async fn part(
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

    /// Reads an object or a range of it. If the object changes at the origin before the first
    /// byte is sent, metadata is refreshed and the read retried once.
    pub async fn get(
        self: &Arc<Self>,
        b: &Arc<BucketBinding>,
        key: &str,
        sel: Selection,
        cond: &Conditions,
    ) -> Result<ObjectRead> {
        let key: Arc<str> = Arc::from(key);
        match self.try_get(b, &key, sel, cond).await {
            Err(e) if e.kind() == ErrorKind::ObjectChanged => {
                tracing::debug!(bucket = %b.name, key = %key, "object changed at the origin, retrying once");
                self.forget(b, &key).await;
                self.try_get(b, &key, sel, cond).await
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                // Gone at the origin while cached metadata still named it: forget it now
                // rather than at the end of the TTL (here; an owner that fetched forgot it).
                self.meta.invalidate(&self.meta_key(b, &key));
                Err(e)
            }
            other => other,
        }
    }

    /// After a write through Cistern: the object's metadata is forgotten here and at its
    /// owners in the cluster before the write is answered, so a read through any front sees
    /// the new version.
    async fn written(&self, b: &BucketBinding, key: &Arc<str>) {
        self.written_here(&self.meta_key(b, key));
        self.forget_at_owners(b, key).await;
    }

    /// Forgets an object's metadata here and at its owners (it changed or vanished).
    async fn forget(&self, b: &BucketBinding, key: &Arc<str>) {
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
    fn written_here(&self, mk: &MetaKey) {
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

    fn meta_key(&self, b: &BucketBinding, key: &Arc<str>) -> MetaKey {
        MetaKey {
            origin: Arc::clone(&b.origin_name),
            bucket: Arc::clone(&b.origin_bucket),
            key: Arc::clone(key),
        }
    }

    fn chunk_key(
        &self,
        b: &BucketBinding,
        key: &Arc<str>,
        etag: &Arc<str>,
        index: u64,
    ) -> ChunkKey {
        ChunkKey {
            origin: Arc::clone(&b.origin_name),
            bucket: Arc::clone(&b.origin_bucket),
            key: Arc::clone(key),
            etag: Arc::clone(etag),
            index,
        }
    }

    async fn try_get(
        self: &Arc<Self>,
        b: &Arc<BucketBinding>,
        key: &Arc<str>,
        sel: Selection,
        cond: &Conditions,
    ) -> Result<ObjectRead> {
        let start = Instant::now();
        let cs = self.cfg.chunk_size;
        let want = match sel {
            Selection::All => Some(0),
            Selection::Range(spec) => spec.known_start().map(|s| s / cs),
            Selection::Part(_) => None,
        };
        let (fill, cold) = self.metadata(b, key, want).await?;
        let meta = fill.meta;
        cond.evaluate(&meta)?;
        let (bytes, shown_range, parts_count) = match sel {
            Selection::All => (0..meta.size, None, None),
            Selection::Range(spec) => {
                let r = spec
                    .resolve(meta.size)
                    .map_err(|_| Error::invalid_range(meta.size))?;
                (r.clone(), Some(r), None)
            }
            Selection::Part(n) => {
                let p = self.part(b, key, &meta, n).await?;
                (
                    p.range.clone(),
                    Some(p.range).filter(|r| !r.is_empty()),
                    p.parts_count,
                )
            }
        };
        if bytes.is_empty() {
            self.metrics.cache_results.with_label_values(&["hit"]).inc();
            return Ok(ObjectRead {
                meta,
                range: shown_range,
                parts_count,
                cache: if cold {
                    CacheStatus::Miss
                } else {
                    CacheStatus::Hit
                },
                body: Body::ready(Bytes::new()),
            });
        }
        let etag: Arc<str> = Arc::from(meta.etag.as_str());
        let spans: Vec<_> = chunk_spans(bytes.clone(), cs).collect();
        let status = if cold {
            CacheStatus::Miss
        } else {
            let resident = spans
                .iter()
                .filter(|s| self.probably_cached(&self.chunk_key(b, key, &etag, s.index)))
                .count();
            match resident {
                n if n == spans.len() => CacheStatus::Hit,
                0 => CacheStatus::Miss,
                _ => CacheStatus::Partial,
            }
        };
        // The first bytes are read before answering, so that errors (a vanished or changed
        // object, an unreachable origin) become proper error responses.
        let held = Arc::new(Held::default());
        let one_chunk = spans.len() == 1;
        let mut pending: VecDeque<ChunkSpan> = spans.into();
        let first = pending[0];
        let (first_served, first_permit) = match fill.chunk {
            Some((i, data)) if i == first.index => {
                pending.pop_front();
                let served = Served {
                    data,
                    tier: Tier::Origin,
                    coalesced: false,
                };
                (sliced(served, first)?, None)
            }
            _ => {
                let grant = self
                    .admit(b, key, &etag, meta.size, first, &held, true)
                    .await
                    .unwrap_or(Grant {
                        span: first,
                        permit: None,
                    });
                advance(&mut pending, grant.span);
                match self.chunk(b, key, &etag, meta.size, grant.span, true).await {
                    Ok(s) => (s, grant.permit),
                    Err(e) if e.kind() == ErrorKind::NotFound => {
                        // Gone at the origin while the owner's metadata still names it.
                        self.forget(b, key).await;
                        return Err(e);
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        // An owner elsewhere that had to fill from the origin makes this at best partial.
        let status = match (status, first_served.tier) {
            (CacheStatus::Hit, Tier::Origin) if one_chunk => CacheStatus::Miss,
            (CacheStatus::Hit, Tier::Origin) => CacheStatus::Partial,
            (s, _) => s,
        };
        self.metrics
            .cache_results
            .with_label_values(&[status.as_str()])
            .inc();
        self.metrics
            .first_byte_seconds
            .observe(start.elapsed().as_secs_f64());
        self.count_served(first_served.tier, first_served.data.len());
        let first_bytes = frame(&held, first_served, first_permit);

        if pending.is_empty() {
            return Ok(ObjectRead {
                meta,
                range: shown_range,
                parts_count,
                cache: status,
                body: Body::ready(first_bytes),
            });
        }
        let (tx, rx) = mpsc::channel(2);
        let body = Body {
            source: Source::Channel(rx),
            remaining: bytes.end - bytes.start,
        };
        let this = Arc::clone(self);
        let b = Arc::clone(b);
        let key = Arc::clone(key);
        let size = meta.size;
        tokio::spawn(async move {
            if !send_or_give_up(&tx, Ok(first_bytes)).await {
                return;
            }
            // Up to `readahead` reads in flight, each admitted by the response budget.
            let readahead = this.cfg.readahead.max(1);
            let mut inflight = FuturesOrdered::new();
            let mut last_index = Some(first.index);
            loop {
                while inflight.len() < readahead {
                    let Some(&span) = pending.front() else { break };
                    let wait = inflight.is_empty();
                    let Some(grant) = this.admit(&b, &key, &etag, size, span, &held, wait).await
                    else {
                        break;
                    };
                    advance(&mut pending, grant.span);
                    let fresh = last_index != Some(grant.span.index);
                    last_index = Some(grant.span.index);
                    let (this, b, key, etag) = (
                        Arc::clone(&this),
                        Arc::clone(&b),
                        Arc::clone(&key),
                        Arc::clone(&etag),
                    );
                    // Spawned, so that a read finishes (and frees its SSD read slot) while
                    // this stream waits on a slow client.
                    inflight.push_back(tokio::spawn(async move {
                        let served = this.chunk(&b, &key, &etag, size, grant.span, fresh).await?;
                        Ok::<_, Error>((served, grant.permit))
                    }));
                }
                let Some(item) = inflight.next().await else {
                    return;
                };
                let item = item.unwrap_or_else(|e| {
                    Err(Error::new(
                        ErrorKind::Internal,
                        format!("chunk read failed: {e}"),
                    ))
                });
                let msg = match item {
                    Ok((served, permit)) => {
                        this.count_served(served.tier, served.data.len());
                        Ok(frame(&held, served, permit))
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "object stream failed after headers were sent");
                        Err(e)
                    }
                };
                let stop = msg.is_err();
                if !send_or_give_up(&tx, msg).await || stop {
                    return;
                }
            }
        });
        Ok(ObjectRead {
            meta,
            range: shown_range,
            parts_count,
            cache: status,
            body,
        })
    }

    /// Admits reading `span` under the response budget: at once when it is small or in RAM.
    /// Part of a chunk that is not in RAM and lives here is read a piece at a time (each
    /// piece one SSD read, sent as it comes, never copied into one buffer); a whole chunk is
    /// read whole, and comes back into RAM.
    #[allow(clippy::too_many_arguments)]
    async fn admit(
        &self,
        b: &BucketBinding,
        key: &Arc<str>,
        etag: &Arc<str>,
        size: u64,
        span: ChunkSpan,
        held: &Held,
        wait: bool,
    ) -> Option<Grant> {
        if let Some(g) = self.budget.small(span, held, wait) {
            return Some(g);
        }
        let ck = self.chunk_key(b, key, etag, span.index);
        if self.store.in_memory(&ck) {
            return Some(Grant { span, permit: None });
        }
        let whole = span.start == 0 && span.end == chunk_len(span.index, self.cfg.chunk_size, size);
        // Without a disk there are no pieces: a chunk that left RAM is refilled whole.
        let here = self.store.has_disk()
            && match &self.peers {
                None => true,
                Some(p) => p.route(ck.placement_hash(), 1).first() == Some(&Node::Here),
            };
        let span = if whole || !here {
            span
        } else {
            self.budget.first_piece(span)
        };
        self.budget.admit(span, held, wait).await
    }

    fn count_served(&self, tier: Tier, n: usize) {
        self.metrics
            .served_bytes
            .with_label_values(&[tier.as_str()])
            .inc_by(n as u64);
    }

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
    /// response may read a chunk a piece at a time).
    #[allow(clippy::too_many_arguments)]
    async fn chunk(
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
        let mut order = peers.route(hash, if hot { self.cfg.hot_replicas.max(2) } else { 2 });
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
            // Spread the readers of a hot chunk over its first few nodes.
            let turn = HOT_TURN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let n = order.len().max(1);
            order.rotate_left(turn % n);
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
        // Only the wanted bytes: nothing is kept, and a response read a piece at a time
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

    fn ask(
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
        }
    }

    /// The bytes of `span` of a chunk from this node's store (an SSD hit reads only the pieces
    /// they touch), the chunk filled once (for all concurrent callers) from `via` — the
    /// owner, when this node holds a replica of a hot chunk — or from the origin.
    async fn local_chunk(
        &self,
        b: &BucketBinding,
        ck: ChunkKey,
        size: u64,
        span: ChunkSpan,
        via: Option<Arc<str>>,
    ) -> Result<Served> {
        let origin = Arc::clone(&b.origin);
        let origin_bucket = Arc::clone(&b.origin_bucket);
        let ask = self.ask(b, &ck.key, &ck.etag, size, ck.index, via);
        let peers = self.peers.clone();
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
    fn probably_cached(&self, ck: &ChunkKey) -> bool {
        match &self.peers {
            Some(p) if p.route(ck.placement_hash(), 1).first() != Some(&Node::Here) => true,
            _ => self.store.resident(ck),
        }
    }

    /// Metadata under the bucket's policy. A cold lookup that knows which chunk it will read
    /// first fetches that chunk with the metadata in one origin request. Returns whether the
    /// origin (or the owner) was asked (`cold`).
    async fn metadata(
        &self,
        b: &BucketBinding,
        key: &Arc<str>,
        want_chunk: Option<u64>,
    ) -> Result<(MetaFill, bool)> {
        self.metadata_at(b, key, want_chunk, false).await
    }

    /// [`Pipeline::metadata`]; `here_only` when serving another node (never forwarded, so
    /// two nodes with different membership views cannot bounce a request between them).
    async fn metadata_at(
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

    /// Serves another node's chunk request from this node's store (never forwarded, except
    /// that a hot chunk's replica fills from the owner named in `ask.via`).
    pub async fn serve_chunk(&self, ask: ChunkAsk) -> Result<Served> {
        self.check_geometry(&ask)?;
        let b = self.catalog.resolve(&ask.bucket).await?;
        let ck = self.chunk_key(&b, &ask.key, &ask.etag, ask.index);
        let len = chunk_len(ask.index, ask.chunk_size, ask.size);
        let (start, end) = match ask.part {
            None => (0, len),
            Some((start, end)) if start < end && end <= len => (start, end),
            Some(_) => {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    "The chunk part is empty or lies past the end of the chunk",
                ))
            }
        };
        let span = ChunkSpan {
            index: ask.index,
            start,
            end,
        };
        self.local_chunk(&b, ck, ask.size, span, ask.via).await
    }

    /// Serves another node's metadata request: this node is the object's metadata owner.
    pub async fn serve_meta(
        &self,
        bucket: &str,
        key: &str,
        want: Option<u64>,
    ) -> Result<MetaAnswer> {
        let b = self.catalog.resolve(bucket).await?;
        let key: Arc<str> = Arc::from(key);
        let (fill, fetched) = self.metadata_at(&b, &key, want, true).await?;
        Ok(MetaAnswer {
            meta: Arc::unwrap_or_clone(fill.meta),
            chunk: fill.chunk,
            fetched,
        })
    }

    /// Forgets an object's metadata on another node's word (it wrote the object).
    pub async fn serve_invalidate(&self, bucket: &str, key: &str) -> Result<()> {
        let b = self.catalog.resolve(bucket).await?;
        self.written_here(&self.meta_key(&b, &Arc::from(key)));
        Ok(())
    }

    /// Keeps a chunk another node fetched for this node (its owner).
    pub async fn accept_chunk(&self, ask: ChunkAsk, data: Bytes) -> Result<()> {
        self.check_geometry(&ask)?;
        if data.len() != chunk_len(ask.index, ask.chunk_size, ask.size) {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "The chunk has the wrong length",
            ));
        }
        let b = self.catalog.resolve(&ask.bucket).await?;
        let ck = self.chunk_key(&b, &ask.key, &ask.etag, ask.index);
        self.store.insert(ck, data);
        Ok(())
    }

    fn check_geometry(&self, ask: &ChunkAsk) -> Result<()> {
        if ask.chunk_size != self.cfg.chunk_size {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "The nodes disagree on the chunk size; every node must run the same configuration",
            ));
        }
        if ask.index.saturating_mul(ask.chunk_size) >= ask.size {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "The chunk lies past the end of the object",
            ));
        }
        Ok(())
    }
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
fn chunk_len(index: u64, chunk_size: u64, size: u64) -> usize {
    let b = chunk_bounds(index, chunk_size, size);
    (b.end.saturating_sub(b.start)) as usize
}

/// The bytes of an upload kept for the cache. They count against a budget shared by all
/// uploads (`budget`), given back when dropped.
struct Kept {
    pieces: Vec<Bytes>,
    len: u64,
    budget: Arc<std::sync::atomic::AtomicU64>,
}

impl Drop for Kept {
    fn drop(&mut self) {
        self.budget
            .fetch_sub(self.len, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Passes an upload through, keeping (references to) its first bytes while the budget shared
/// by all uploads stays under `max`; once a piece does not fit, nothing more is kept.
/// What [`keep_while_sending`] kept, taken out of the shared slot.
fn take_kept(kept: &Mutex<Kept>) -> Kept {
    let mut k = kept.lock().unwrap_or_else(|e| e.into_inner());
    Kept {
        pieces: std::mem::take(&mut k.pieces),
        len: std::mem::take(&mut k.len),
        budget: Arc::clone(&k.budget),
    }
}

fn keep_while_sending(upload: Upload, kept: Arc<Mutex<Kept>>, max: u64) -> Upload {
    use std::sync::atomic::Ordering;
    let mut full = false;
    let body = upload
        .body
        .map(move |item| {
            if let (Ok(piece), false) = (&item, full) {
                let mut k = kept.lock().unwrap_or_else(|e| e.into_inner());
                let n = piece.len() as u64;
                if k.budget.fetch_add(n, Ordering::Relaxed) + n <= max {
                    k.len += n;
                    k.pieces.push(piece.clone());
                } else {
                    k.budget.fetch_sub(n, Ordering::Relaxed);
                    full = true;
                }
            }
            item
        })
        .boxed();
    Upload {
        body,
        len: upload.len,
    }
}

/// Rotates hot chunks' readers over their nodes.
static HOT_TURN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn generation_of(gens: &Mutex<HashMap<MetaKey, u64>>, mk: &MetaKey) -> u64 {
    gens.lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(mk)
        .copied()
        .unwrap_or(0)
}

/// How long a body producer waits for a client that stopped reading before it ends the
/// response and releases the chunks it holds.
const STALLED_CLIENT_TIMEOUT: Duration = Duration::from_secs(120);

/// Hands one body piece to the response; false when the client is gone or stalled too long.
async fn send_or_give_up(tx: &mpsc::Sender<Result<Bytes>>, msg: Result<Bytes>) -> bool {
    match tokio::time::timeout(STALLED_CLIENT_TIMEOUT, tx.send(msg)).await {
        Ok(Ok(())) => true,
        Ok(Err(_)) => false,
        Err(_) => {
            tracing::warn!("client stopped reading; ending the response");
            false
        }
    }
}

/// The `span` of a whole chunk.
fn sliced(s: Served, span: ChunkSpan) -> Result<Served> {
    check_len(&s.data, span.end)?;
    Ok(Served {
        data: s.data.slice(span.start..span.end),
        ..s
    })
}

/// The bytes of one read as handed to the connection: bytes shared with the RAM cache as
/// they are; any other bytes counted as held by the response (with their budget) until the
/// connection has written them.
fn frame(held: &Arc<Held>, s: Served, permit: Option<OwnedSemaphorePermit>) -> Bytes {
    match (s.tier, permit) {
        (Tier::Memory, _) => s.data,
        (_, permit) => held.track(s.data, permit),
    }
}

/// Removes the bytes of `taken` (the front of `pending`'s first span) from `pending`.
fn advance(pending: &mut VecDeque<ChunkSpan>, taken: ChunkSpan) {
    match pending.front_mut() {
        Some(front) if taken.end < front.end => front.start = taken.end,
        Some(_) => {
            pending.pop_front();
        }
        None => {}
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(etag: &str, lm: u64) -> ObjectMeta {
        ObjectMeta {
            size: 10,
            etag: etag.into(),
            last_modified: SystemTime::UNIX_EPOCH + Duration::from_secs(lm),
            content_type: None,
            content_encoding: None,
            cache_control: None,
            content_disposition: None,
            content_language: None,
            user_metadata: vec![],
            ..Default::default()
        }
    }

    fn at(s: u64) -> Option<SystemTime> {
        Some(SystemTime::UNIX_EPOCH + Duration::from_secs(s))
    }

    #[test]
    fn conditions_follow_s3_precedence() {
        let m = meta("abc", 1000);
        let kind = |c: Conditions| c.evaluate(&m).err().map(|e| e.kind());
        assert_eq!(kind(Conditions::default()), None);
        assert_eq!(
            kind(Conditions {
                if_match: Some(EtagMatch::OneOf(vec!["x".into()])),
                ..Default::default()
            }),
            Some(ErrorKind::PreconditionFailed)
        );
        // If-Match true wins over If-Unmodified-Since false.
        assert_eq!(
            kind(Conditions {
                if_match: Some(EtagMatch::Any),
                if_unmodified_since: at(10),
                ..Default::default()
            }),
            None
        );
        assert_eq!(
            kind(Conditions {
                if_unmodified_since: at(10),
                ..Default::default()
            }),
            Some(ErrorKind::PreconditionFailed)
        );
        assert_eq!(
            kind(Conditions {
                if_none_match: Some(EtagMatch::OneOf(vec!["abc".into()])),
                ..Default::default()
            }),
            Some(ErrorKind::NotModified)
        );
        // If-None-Match false wins over If-Modified-Since.
        assert_eq!(
            kind(Conditions {
                if_none_match: Some(EtagMatch::OneOf(vec!["zz".into()])),
                if_modified_since: at(2000),
                ..Default::default()
            }),
            None
        );
        assert_eq!(
            kind(Conditions {
                if_modified_since: at(1000),
                ..Default::default()
            }),
            Some(ErrorKind::NotModified)
        );
        assert_eq!(
            kind(Conditions {
                if_modified_since: at(999),
                ..Default::default()
            }),
            None
        );
    }
}
