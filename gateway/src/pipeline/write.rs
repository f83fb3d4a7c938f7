//! Writes through Cistern: each goes to the origin, then the object's cached metadata is
//! forgotten (here and at its owners); buckets that populate on write keep the bytes sent.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use cistern_cache::ObjectMeta;
use futures::StreamExt;

use super::chunk::chunk_len;
use super::peers::Node;
use super::{BucketBinding, Conditions, Pipeline};
use crate::error::{Error, ErrorKind, Result};
use crate::origin::{PutOptions, PutResult, Upload};

// For the links in the doc comments.
#[cfg(doc)]
use super::Catalog;
#[cfg(doc)]
use crate::origin::Origin;

impl Pipeline {
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
