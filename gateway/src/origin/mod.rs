//! Origins: where object bytes live. One [`Origin`] trait; cross-cutting behaviour (timeouts,
//! retries, metrics) is layered around it in [`layers`], never baked into a client.
//!
//! - [`fs`]: a local directory, one subdirectory per bucket.
//! - [`s3`]: any S3-compatible endpoint, SigV4-signed.
//! - [`azure`]: an Azure Blob Storage account (or Azurite), Shared Key or SAS.
//! - [`kv`]: none at all: a cache-only bucket's objects, kept on the cache nodes.

pub mod azure;
pub mod entra;
pub mod fs;
pub mod kv;
pub mod layers;
pub mod listing;
pub mod s3;
pub(crate) mod upload;
pub(crate) mod wire;

pub use wire::OriginStatus;

use std::ops::Range;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use cistern_cache::ObjectMeta;

use crate::error::Result;

/// The current metadata of an object and the bytes of a range of it.
#[derive(Debug, Clone)]
pub struct RangeRead {
    /// Metadata of the version the bytes belong to.
    pub meta: ObjectMeta,
    /// The bytes of the requested range clipped to the object's size (empty when the range
    /// starts at or past the end).
    pub data: Bytes,
}

/// A bucket as an origin lists it.
#[derive(Debug, Clone)]
pub struct BucketEntry {
    /// Bucket name at the origin.
    pub name: String,
    /// Creation time, when known.
    pub created: Option<SystemTime>,
    /// The origin's own description of the bucket in its dialect's listing, when it has one
    /// (an Azure origin: the `<Properties>` and `<Metadata>` elements of its List Containers
    /// entry), for a front of that dialect to pass on.
    pub listing: Option<String>,
}

/// Which listing flavour the client asked for; origins that have both answer in kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListCursor {
    /// ListObjects (V1): resume after `marker`.
    V1 {
        /// Resume after this key.
        marker: Option<String>,
    },
    /// ListObjectsV2: resume from an opaque `continuation` token, or after `start_after`.
    V2 {
        /// A token from a previous page.
        continuation: Option<String>,
        /// Resume after this key (ignored when a continuation token is given).
        start_after: Option<String>,
    },
}

/// A listing request, dialect-neutral.
#[derive(Debug, Clone)]
pub struct ListQuery {
    /// Only keys starting with this.
    pub prefix: String,
    /// Roll keys up to common prefixes at this delimiter.
    pub delimiter: Option<String>,
    /// At most this many keys plus common prefixes (0 is allowed).
    pub max_keys: usize,
    /// Where to resume.
    pub cursor: ListCursor,
}

/// One object in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    /// Key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// ETag without quotes.
    pub etag: String,
    /// Last modification time.
    pub last_modified: SystemTime,
    /// Who owns the object, when the origin's listing says (an S3 origin's `<Owner>`).
    pub owner: Option<Owner>,
}

/// An owner or initiator as an S3 origin names it: its canonical user id and display name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// Canonical user id.
    pub id: String,
    /// Display name (S3 no longer sends it in most regions).
    pub display_name: Option<String>,
}

/// One page of a listing.
#[derive(Debug, Clone, Default)]
pub struct ListPage {
    /// Objects, in key order.
    pub entries: Vec<ListEntry>,
    /// Common prefixes, in order.
    pub common_prefixes: Vec<String>,
    /// Whether more follows.
    pub truncated: bool,
    /// V1: the NextMarker; V2: the NextContinuationToken.
    pub next: Option<String>,
}

/// Where one part of a multipart object lies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartInfo {
    /// The part's bytes within the object.
    pub range: Range<u64>,
    /// How many parts the object has, when the origin says.
    pub parts_count: Option<u32>,
    /// The ETag of the object the part belongs to (without quotes).
    pub etag: String,
}

/// A client credential only the origin can judge.
#[derive(Clone, PartialEq, Eq)]
pub enum ForeignCredential {
    /// An Entra ID bearer token (the `Authorization` value without `Bearer `).
    Bearer(String),
    /// A SAS Cistern cannot verify (user delegation, stored access policy): its query pairs.
    Sas(Vec<(String, String)>),
}

impl std::fmt::Debug for ForeignCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Both are bearer secrets.
        match self {
            Self::Bearer(_) => f.write_str("Bearer(<redacted>)"),
            Self::Sas(_) => f.write_str("Sas(<redacted>)"),
        }
    }
}

/// What a judged credential is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// Read one object's data and properties.
    Read,
    /// List a bucket's objects.
    List,
    /// See a bucket's properties.
    Bucket,
}

/// A request relayed to the origin as it is, uncached: reads the cache does not serve
/// (snapshots, versions, block lists) and, for a front over an origin of its own dialect, every
/// operation Cistern has no model of (bucket policy, ACLs, leases, page blobs, …). The front has
/// authenticated and authorized the caller; the origin signs with its own credentials.
#[derive(Debug, Clone)]
pub struct Passthrough {
    /// Any method.
    pub method: http::Method,
    /// Bucket at the origin; empty for account-level requests.
    pub bucket: String,
    /// Key at the origin; empty for bucket-level requests.
    pub key: String,
    /// Query parameters (decoded).
    pub query: Vec<(String, String)>,
    /// Request headers to forward (ranges, conditions, the operation's own headers).
    pub headers: Vec<(String, String)>,
    /// The request body (bounded by the front; relayed bodies are small configuration documents
    /// or single pages and parts).
    pub body: Bytes,
    /// Relay every status as the origin sent it, errors included with their bodies (the front
    /// speaks the origin's dialect). Otherwise failures come back as classified errors.
    pub verbatim: bool,
}

impl Passthrough {
    /// A bodiless read of `bucket`/`key` whose failures are classified.
    pub fn read(method: http::Method, bucket: String, key: String) -> Self {
        Self {
            method,
            bucket,
            key,
            query: Vec::new(),
            headers: Vec::new(),
            body: Bytes::new(),
            verbatim: false,
        }
    }
}

/// The origin's answer to a [`Passthrough`], its body streamed.
pub struct PassResponse {
    /// Status.
    pub status: http::StatusCode,
    /// Response headers (the front picks what it forwards).
    pub headers: http::HeaderMap,
    /// Body.
    pub body: futures::stream::BoxStream<'static, Result<Bytes>>,
}

impl std::fmt::Debug for PassResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PassResponse")
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// An upload's body: a stream of exactly `len` bytes.
pub struct Upload {
    /// The bytes.
    pub body: futures::stream::BoxStream<'static, Result<Bytes>>,
    /// How many.
    pub len: u64,
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// What an upload carries besides its bytes, dialect-neutral.
#[derive(Debug, Clone, Default)]
pub struct PutOptions {
    /// Base64 MD5 of the body the client declared (`Content-MD5`); the write fails with
    /// `BadDigest` and leaves nothing behind when the body does not match.
    pub content_md5: Option<String>,
    /// Media type.
    pub content_type: Option<String>,
    /// Content-Encoding.
    pub content_encoding: Option<String>,
    /// Content-Language.
    pub content_language: Option<String>,
    /// Cache-Control.
    pub cache_control: Option<String>,
    /// Content-Disposition.
    pub content_disposition: Option<String>,
    /// User metadata (names without a dialect prefix).
    pub user_metadata: Vec<(String, String)>,
    /// A checksum the client declared up front, as (`x-amz-checksum-*` header, base64 value):
    /// Cistern verifies it in flight and an S3 origin gets it too (object-lock buckets insist
    /// on one).
    pub checksum: Option<(String, String)>,
    /// Create only (`If-None-Match: *`): `PreconditionFailed` when an object has the key —
    /// decided atomically by the origin where it can (a directory, Azure, S3).
    pub create_only: bool,
}

/// What deleting one version of an object did (S3's DeleteObject answer).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deleted {
    /// The version removed, or the delete marker created, in a versioned bucket.
    pub version_id: Option<String>,
    /// Whether the delete created (or removed) a delete marker.
    pub delete_marker: bool,
}

/// What a completed upload created.
#[derive(Debug, Clone)]
pub struct PutResult {
    /// The new version's ETag (unquoted).
    pub etag: String,
    /// Its modification time, when the origin says.
    pub last_modified: Option<SystemTime>,
    /// The version it created, in a versioned S3 bucket.
    pub version_id: Option<String>,
    /// Response headers of the origin's own dialect describing how it keeps what was written
    /// (an S3 origin's server-side encryption, applied by a bucket default too), for the
    /// front of that dialect to return.
    pub origin_headers: Vec<(String, String)>,
}

fn no_tags() -> crate::error::Error {
    crate::error::Error::new(
        crate::error::ErrorKind::NotImplemented,
        "This origin keeps no object tags",
    )
}

/// A ListObjectVersions page request, passed to the origin as asked.
#[derive(Debug, Clone, Default)]
pub struct VersionQuery {
    /// Key prefix.
    pub prefix: String,
    /// Delimiter.
    pub delimiter: Option<String>,
    /// Key marker.
    pub key_marker: Option<String>,
    /// Version id marker.
    pub version_id_marker: Option<String>,
    /// Page size (≤ 1000).
    pub max_keys: u32,
}

/// One object version, or a delete marker.
#[derive(Debug, Clone)]
pub struct VersionEntry {
    /// Key.
    pub key: String,
    /// Version id (`null` for an unversioned object).
    pub version_id: String,
    /// Whether this is the current version.
    pub is_latest: bool,
    /// Modification time.
    pub last_modified: Option<SystemTime>,
    /// ETag (unquoted); none for a delete marker.
    pub etag: Option<String>,
    /// Size; none for a delete marker.
    pub size: Option<u64>,
    /// A delete marker rather than a version.
    pub delete_marker: bool,
    /// The owner, when the origin names one.
    pub owner: Option<Owner>,
}

/// One page of versions.
#[derive(Debug, Clone, Default)]
pub struct VersionPage {
    /// Versions and delete markers, in the origin's order.
    pub entries: Vec<VersionEntry>,
    /// Common prefixes.
    pub prefixes: Vec<String>,
    /// More follow.
    pub truncated: bool,
    /// Where the next page starts.
    pub next_key_marker: Option<String>,
    /// Where the next page starts.
    pub next_version_id_marker: Option<String>,
}

/// The checks of one append (Azure's Append Block conditions).
#[derive(Debug, Clone, Default)]
pub struct AppendOptions {
    /// Base64 MD5 of the appended bytes.
    pub content_md5: Option<String>,
    /// Append only if the object is exactly this long now.
    pub append_position: Option<u64>,
    /// Append only if the object stays at most this long.
    pub max_size: Option<u64>,
}

/// What an append did.
#[derive(Debug, Clone)]
pub struct Appended {
    /// The object's new ETag (unquoted).
    pub etag: String,
    /// Its modification time, when known.
    pub last_modified: Option<SystemTime>,
    /// Where the appended bytes begin.
    pub offset: u64,
    /// How many appends the object has had, when the origin counts them.
    pub blocks: Option<u64>,
}

/// One part of an upload in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartEntry {
    /// Part number.
    pub number: u32,
    /// Its ETag (unquoted).
    pub etag: String,
    /// Its size.
    pub size: u64,
    /// When it was uploaded.
    pub last_modified: Option<SystemTime>,
}

/// The parts of an upload in progress, and what the origin says of the upload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartListing {
    /// The parts, by part number.
    pub parts: Vec<PartEntry>,
    /// Who started the upload, when the origin says.
    pub initiator: Option<Owner>,
    /// Who will own the object, when the origin says.
    pub owner: Option<Owner>,
    /// The storage class the object will have, when the origin says.
    pub storage_class: Option<String>,
}

/// One upload in parts in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadEntry {
    /// The object key.
    pub key: String,
    /// The upload id.
    pub upload_id: String,
    /// When it began.
    pub initiated: Option<SystemTime>,
}

/// Which properties [`Origin::set_properties`] replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropertyKind {
    /// Content type, encoding, language, disposition, cache control.
    Headers,
    /// User metadata.
    Metadata,
}

/// One entry of a block list (Azure's Put Block List): which staged or committed block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockRef {
    /// The latest staged block with this id, else the committed one.
    Latest(String),
    /// The block with this id in the object as committed now.
    Committed(String),
    /// The staged (uncommitted) block with this id.
    Uncommitted(String),
}

/// The wire dialect an origin speaks, which decides what a front may relay to it as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// No dialect of its own (a directory): nothing is relayed.
    None,
    /// The S3 API.
    S3,
    /// The Azure Blob REST API.
    Blob,
}

/// An object store Cistern reads from.
#[async_trait]
pub trait Origin: Send + Sync + 'static {
    /// The dialect [`Self::passthrough`] speaks.
    fn dialect(&self) -> Dialect {
        Dialect::None
    }

    /// Lists the origin's buckets.
    async fn list_buckets(&self) -> Result<Vec<BucketEntry>>;

    /// Whether `bucket` exists.
    async fn bucket_exists(&self, bucket: &str) -> Result<bool>;

    /// The object's current metadata.
    async fn head(&self, bucket: &str, key: &str) -> Result<ObjectMeta>;

    /// The object's current metadata and the bytes of `range` (clipped to the object). With
    /// `if_match`, fails with `ObjectChanged` unless the object's ETag is still that one, so
    /// bytes of two versions never mix.
    async fn read(
        &self,
        bucket: &str,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> Result<RangeRead>;

    /// One page of a listing.
    async fn list(&self, bucket: &str, query: &ListQuery) -> Result<ListPage>;

    /// Where part `part` (1-based) of the object lies. Origins without multipart uploads
    /// treat the whole object as part 1; other numbers are `InvalidPartNumber`.
    async fn part(&self, bucket: &str, key: &str, part: u32) -> Result<PartInfo>;

    /// Stores an object whole, replacing any existing one. Nothing is visible at the origin
    /// unless the whole body arrived (and matched `opts.content_md5`). Origins that cannot be
    /// written answer `NotImplemented`.
    async fn put(
        &self,
        bucket: &str,
        key: &str,
        upload: Upload,
        opts: &PutOptions,
    ) -> Result<PutResult> {
        let _ = (bucket, key, upload, opts);
        Err(crate::error::Error::new(
            crate::error::ErrorKind::NotImplemented,
            "This origin cannot be written",
        ))
    }

    /// Begins an upload in parts; the answer is the upload id the other part calls take.
    async fn start_parts(&self, bucket: &str, key: &str, opts: &PutOptions) -> Result<String> {
        let _ = (bucket, key, opts);
        Err(not_writable())
    }

    /// Stores part `part` (1–10000) of an upload; answers the part's ETag (unquoted).
    async fn put_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part: u32,
        upload: Upload,
        content_md5: Option<&str>,
    ) -> Result<String> {
        let _ = (bucket, key, upload_id, part, upload, content_md5);
        Err(not_writable())
    }

    /// Assembles the object from `parts` (number, ETag), in that order; nothing is visible
    /// before this succeeds.
    async fn complete_parts(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: &[(u32, String)],
    ) -> Result<PutResult> {
        let _ = (bucket, key, upload_id, parts);
        Err(not_writable())
    }

    /// Abandons an upload and what it staged.
    async fn abort_parts(&self, bucket: &str, key: &str, upload_id: &str) -> Result<()> {
        let _ = (bucket, key, upload_id);
        Err(not_writable())
    }

    /// Creates a bucket (`BucketExists` when it is there already).
    async fn create_bucket(&self, bucket: &str) -> Result<()> {
        let _ = bucket;
        Err(not_writable())
    }

    /// Deletes an empty bucket (`BucketNotEmpty` otherwise, where the origin says so).
    async fn delete_bucket(&self, bucket: &str) -> Result<()> {
        let _ = bucket;
        Err(not_writable())
    }

    /// Stages one block of an object (Azure's Put Block): invisible until committed.
    async fn put_block(
        &self,
        bucket: &str,
        key: &str,
        block_id: &str,
        upload: Upload,
        content_md5: Option<&str>,
    ) -> Result<()> {
        let _ = (bucket, key, block_id, upload, content_md5);
        Err(not_writable())
    }

    /// Writes the object as the listed blocks, in order (Azure's Put Block List).
    async fn commit_blocks(
        &self,
        bucket: &str,
        key: &str,
        blocks: &[BlockRef],
        opts: &PutOptions,
    ) -> Result<PutResult> {
        let _ = (bucket, key, blocks, opts);
        Err(not_writable())
    }

    /// The blocks staged for an object and not yet committed, as (block id, size), in no
    /// particular order: what a Data Lake flush assembles. Origins without blocks answer
    /// `NotImplemented`.
    async fn staged_blocks(&self, bucket: &str, key: &str) -> Result<Vec<(String, u64)>> {
        let _ = (bucket, key);
        Err(not_writable())
    }

    /// The blocks an object is committed as now, as (block id, size), in order (Azure's Get
    /// Block List); empty where the origin keeps no committed blocks (a directory, S3) or the
    /// object was written whole.
    async fn committed_blocks(&self, bucket: &str, key: &str) -> Result<Vec<(String, u64)>> {
        let _ = (bucket, key);
        Ok(Vec::new())
    }

    /// An object's tags (S3 object tagging).
    async fn get_tags(&self, bucket: &str, key: &str) -> Result<Vec<(String, String)>> {
        let _ = (bucket, key);
        Err(no_tags())
    }

    /// Replaces an object's tags.
    async fn put_tags(&self, bucket: &str, key: &str, tags: &[(String, String)]) -> Result<()> {
        let _ = (bucket, key, tags);
        Err(no_tags())
    }

    /// Removes an object's tags.
    async fn delete_tags(&self, bucket: &str, key: &str) -> Result<()> {
        let _ = (bucket, key);
        Err(no_tags())
    }

    /// One page of an origin's object versions (S3 ListObjectVersions).
    async fn list_versions(&self, bucket: &str, q: &VersionQuery) -> Result<VersionPage> {
        let _ = (bucket, q);
        Err(crate::error::Error::new(
            crate::error::ErrorKind::NotImplemented,
            "This origin does not list object versions",
        ))
    }

    /// Creates an empty object that [`Origin::append`] grows (an Azure append blob),
    /// replacing any object with the key (unless `opts.create_only`).
    async fn create_appendable(
        &self,
        bucket: &str,
        key: &str,
        opts: &PutOptions,
    ) -> Result<PutResult> {
        let _ = (bucket, key, opts);
        Err(crate::error::Error::new(
            crate::error::ErrorKind::NotImplemented,
            "This origin has no append blobs",
        ))
    }

    /// Appends `upload` to an appendable object, all or nothing: a body that fails its
    /// checks adds nothing.
    async fn append(
        &self,
        bucket: &str,
        key: &str,
        upload: Upload,
        opts: &AppendOptions,
    ) -> Result<Appended> {
        let _ = (bucket, key, upload, opts);
        Err(crate::error::Error::new(
            crate::error::ErrorKind::NotImplemented,
            "This origin has no append blobs",
        ))
    }

    /// The parts uploaded so far to an upload in parts, by part number.
    async fn list_parts(&self, bucket: &str, key: &str, upload_id: &str) -> Result<PartListing> {
        let _ = (bucket, key, upload_id);
        Err(crate::error::Error::new(
            crate::error::ErrorKind::NotImplemented,
            "This origin cannot list the parts of an upload",
        ))
    }

    /// The uploads in parts in progress under `prefix`, by key then start time.
    async fn list_uploads(&self, bucket: &str, prefix: &str) -> Result<Vec<UploadEntry>> {
        let _ = (bucket, prefix);
        Err(crate::error::Error::new(
            crate::error::ErrorKind::NotImplemented,
            "This origin cannot list uploads in progress",
        ))
    }

    /// Replaces an object's properties without rewriting its bytes: its content headers
    /// (`Headers`) or its user metadata (`Metadata`) become those of `opts`, the other kind
    /// stays as `opts` also gives it (callers pass the current values). Applies only to the
    /// version `etag` (`PreconditionFailed` otherwise).
    async fn set_properties(
        &self,
        bucket: &str,
        key: &str,
        etag: &str,
        opts: &PutOptions,
        which: PropertyKind,
    ) -> Result<PutResult> {
        let _ = (bucket, key, etag, opts, which);
        Err(crate::error::Error::new(
            crate::error::ErrorKind::NotImplemented,
            "This origin keeps no object properties (a directory stores bytes only)",
        ))
    }

    /// Deletes an object; deleting a missing one succeeds (as S3 and idempotent retries want).
    async fn delete(&self, bucket: &str, key: &str) -> Result<()> {
        let _ = (bucket, key);
        Err(crate::error::Error::new(
            crate::error::ErrorKind::NotImplemented,
            "This origin cannot be written",
        ))
    }

    /// Deletes one version of an object (`None`: the current one, as [`Self::delete`];
    /// `"null"`: the one an unversioned bucket holds) when its ETag still matches `if_match`
    /// (`*`: it exists). Origins without versions know only the null version; they check
    /// `if_match` against the object's current ETag before deleting.
    async fn delete_version(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
        if_match: Option<&str>,
    ) -> Result<Deleted> {
        if let Some(want) = if_match {
            let meta = self.head(bucket, key).await?;
            if want != "*" && want.trim_matches('"') != meta.etag {
                return Err(crate::error::Error::new(
                    crate::error::ErrorKind::PreconditionFailed,
                    "At least one of the pre-conditions you specified did not hold",
                ));
            }
        }
        match version {
            None | Some("null") => self.delete(bucket, key).await.map(|()| Deleted::default()),
            Some(_) => Err(crate::error::Error::new(
                crate::error::ErrorKind::InvalidArgument,
                "Invalid version id specified",
            )),
        }
    }

    /// Sends a request the cache does not serve straight to the origin (see [`Passthrough`]).
    /// Origins without a dialect of their own (a directory) answer `NotImplemented`.
    async fn passthrough(&self, req: &Passthrough) -> Result<PassResponse> {
        let _ = req;
        Err(crate::error::Error::new(
            crate::error::ErrorKind::NotImplemented,
            "This origin has no such reads",
        ))
    }

    /// Sends a request carrying a streamed body (a write Cistern relays rather than models,
    /// such as an Azure Put Blob with its own headers) to the origin, once: a consumed body
    /// cannot be retried. `req.body` is ignored. Origins without a dialect answer
    /// `NotImplemented`.
    async fn passthrough_upload(&self, req: &Passthrough, upload: Upload) -> Result<PassResponse> {
        let _ = (req, upload);
        Err(crate::error::Error::new(
            crate::error::ErrorKind::NotImplemented,
            "This origin has no such writes",
        ))
    }

    /// How a request relayed to this origin names one of the origin's own objects as its copy
    /// source: the headers (`x-ms-copy-source` with the origin's URL, and whatever authorizes
    /// reading it there) that replace the client's, which named Cistern. `query` selects a
    /// snapshot or version. Origins without a dialect answer `NotImplemented`.
    async fn copy_source_headers(
        &self,
        bucket: &str,
        key: &str,
        query: &[(String, String)],
    ) -> Result<Vec<(String, String)>> {
        let _ = (bucket, key, query);
        Err(crate::error::Error::new(
            crate::error::ErrorKind::NotImplemented,
            "This origin cannot be a copy source by URL",
        ))
    }

    /// Whether the origin lets `cred` perform `access` on `bucket` (and `key`): `Ok(true)`
    /// allowed, `Ok(false)` refused. Origins that cannot judge such credentials answer
    /// `NotImplemented`.
    async fn judge(
        &self,
        bucket: &str,
        key: Option<&str>,
        cred: &ForeignCredential,
        access: Access,
    ) -> Result<bool> {
        let _ = (bucket, key, cred, access);
        Err(crate::error::Error::new(
            crate::error::ErrorKind::NotImplemented,
            "This origin cannot judge delegated credentials",
        ))
    }
}

fn not_writable() -> crate::error::Error {
    crate::error::Error::new(
        crate::error::ErrorKind::NotImplemented,
        "This origin cannot be written in parts",
    )
}

/// Part 1 is the whole object; anything else does not exist (origins without parts).
pub(crate) fn single_part(meta: &ObjectMeta, part: u32) -> Result<PartInfo> {
    if part != 1 {
        return Err(crate::error::Error::new(
            crate::error::ErrorKind::InvalidPartNumber,
            "The requested partnumber is not satisfiable",
        ));
    }
    Ok(PartInfo {
        range: 0..meta.size,
        parts_count: None,
        etag: meta.etag.clone(),
    })
}
