//! Uploads in parts into a cache-only bucket (S3 multipart, which LMCache's S3 client sends
//! for objects over 8 MiB; Blob Put Block and Put Block List, which azcopy and the Azure SDKs
//! send for large blobs). Parts arrive at any front, in any order, so they are kept in the
//! cluster like objects: in a hidden namespace beside the bucket's, under `<upload>/<part>`,
//! on their own replicas, with an upload record `<upload>` holding the object's key and
//! headers. Completing reads the parts back in order into one new object, then drops them.
//! Uploads never completed expire after [`UPLOAD_TTL`].

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use cistern_cache::{KvLimits, ObjectMeta};
use futures::StreamExt;

use super::{created, new_etag, new_version, KvOrigin};
use crate::error::{Error, ErrorKind, Result};
use crate::origin::{BlockRef, ListCursor, ListQuery, PutOptions, PutResult, Upload};

/// How long an upload's parts are kept without being completed.
const UPLOAD_TTL: Duration = Duration::from_secs(3600);

/// The upload record's header naming the object's key.
const KEY_HEADER: &str = "x-cistern-upload-key";

fn no_such_upload() -> Error {
    Error::new(
        ErrorKind::NoSuchUpload,
        "The specified upload does not exist. The upload ID may be invalid, or the upload \
         may have been aborted or completed.",
    )
}

fn invalid_part(why: &str) -> Error {
    Error::new(ErrorKind::InvalidPart, why.to_string())
}

fn part_key(upload_id: &str, part: u32) -> String {
    format!("{upload_id}/{part:05}")
}

/// A staged Blob block of `key` (a NUL keeps it apart from any upload's parts).
fn block_key(key: &str, block_id: &str) -> String {
    format!("{key}\0block\0{block_id}")
}

impl KvOrigin {
    /// The hidden namespace of this bucket's uploads (NUL never appears in a bucket name).
    fn uploads(&self) -> Arc<str> {
        Arc::from(format!("{}\0uploads", self.space))
    }

    fn upload_limits(&self) -> KvLimits {
        KvLimits {
            quota: self.limits.quota,
            ttl: Some(self.limits.ttl.map_or(UPLOAD_TTL, |t| t.max(UPLOAD_TTL))),
        }
    }

    /// The upload's record, if it is in progress for `key`.
    async fn upload_record(&self, key: &str, upload_id: &str) -> Result<ObjectMeta> {
        let record = match self.fetch(&self.uploads(), upload_id, None, None).await {
            Ok((m, _)) => m,
            Err(e) if e.kind() == ErrorKind::NotFound => return Err(no_such_upload()),
            Err(e) => return Err(e),
        };
        let same_key = record
            .origin_headers
            .iter()
            .any(|(n, v)| n == KEY_HEADER && v == key);
        if same_key {
            Ok(record)
        } else {
            Err(no_such_upload())
        }
    }

    /// Starts an upload: its record keeps the key and the headers the object will have.
    pub(super) async fn start_upload(&self, key: &str, opts: &PutOptions) -> Result<String> {
        let upload_id = new_etag();
        // The object's headers, but no digest: it would be of this empty record.
        let record = ObjectMeta {
            content_md5: None,
            origin_headers: vec![(KEY_HEADER.to_string(), key.to_string())],
            ..new_version(opts)
        };
        let empty = futures::stream::empty::<Result<Bytes>>();
        self.write(
            &self.uploads(),
            &upload_id,
            empty,
            0,
            None,
            record,
            self.upload_limits(),
        )
        .await?;
        Ok(upload_id)
    }

    /// Keeps one part; answers its ETag.
    pub(super) async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part: u32,
        upload: Upload,
        content_md5: Option<&str>,
    ) -> Result<String> {
        self.upload_record(key, upload_id).await?;
        let meta = ObjectMeta {
            etag: new_etag(),
            last_modified: SystemTime::now(),
            ..ObjectMeta::default()
        };
        let etag = meta.etag.clone();
        self.write(
            &self.uploads(),
            &part_key(upload_id, part),
            upload.body,
            upload.len,
            content_md5,
            meta,
            self.upload_limits(),
        )
        .await?;
        Ok(etag)
    }

    /// Assembles the object from `parts` (ascending numbers, each with the ETag its upload
    /// answered), then drops the upload.
    pub(super) async fn complete_upload(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[(u32, String)],
    ) -> Result<PutResult> {
        let record = self.upload_record(key, upload_id).await?;
        if parts.is_empty() {
            return Err(invalid_part("The upload names no parts"));
        }
        let uploads = self.uploads();
        let mut found: Vec<(String, ObjectMeta)> = Vec::with_capacity(parts.len());
        let mut last = 0;
        for (n, etag) in parts {
            if *n <= last {
                return Err(invalid_part("The parts are not in ascending order"));
            }
            last = *n;
            let pk = part_key(upload_id, *n);
            let meta = match self.fetch(&uploads, &pk, None, None).await {
                Ok((m, _)) => m,
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    return Err(invalid_part(
                        "One or more of the specified parts could not be found",
                    ))
                }
                Err(e) => return Err(e),
            };
            if meta.etag != etag.trim_matches('"') {
                return Err(invalid_part(
                    "A part's ETag does not match the uploaded part",
                ));
            }
            found.push((pk, meta));
        }
        let now = SystemTime::now();
        let meta = ObjectMeta {
            etag: format!("{}-{}", new_etag(), parts.len()),
            last_modified: now,
            created: Some(now),
            origin_headers: Vec::new(),
            ..record
        };
        let done = created(&meta);
        self.write_joined(found, key, meta).await?;
        self.drop_upload(upload_id).await;
        Ok(done)
    }

    /// Writes `key` as the staged pieces `found` (keys in the uploads namespace, with the
    /// versions checked) joined in order, read back a chunk's worth at a time.
    async fn write_joined(
        &self,
        found: Vec<(String, ObjectMeta)>,
        key: &str,
        meta: ObjectMeta,
    ) -> Result<()> {
        let uploads = self.uploads();
        let total: u64 = found.iter().map(|(_, m)| m.size).sum();
        let cs = self.chunk_size;
        let pieces: Vec<(String, String, std::ops::Range<u64>)> = found
            .iter()
            .flat_map(|(pk, m)| {
                (0..m.size.div_ceil(cs)).map(move |i| {
                    (
                        pk.clone(),
                        m.etag.clone(),
                        i * cs..((i + 1) * cs).min(m.size),
                    )
                })
            })
            .collect();
        let uploads_ref = &uploads;
        let body = futures::stream::iter(pieces)
            .then(move |(pk, etag, r)| async move {
                let want = r.end - r.start;
                let (_, data) = self.fetch(uploads_ref, &pk, Some(r), Some(&etag)).await?;
                if data.len() as u64 == want {
                    Ok(data)
                } else {
                    Err(invalid_part(
                        "A staged part was lost before the upload completed",
                    ))
                }
            })
            .boxed();
        let space = Arc::clone(&self.space);
        self.write(&space, key, body, total, None, meta, self.limits)
            .await
    }

    /// Stages a Blob block of `key` (Put Block), as an upload's part is staged.
    pub(super) async fn stage_block(
        &self,
        key: &str,
        block_id: &str,
        upload: Upload,
        content_md5: Option<&str>,
    ) -> Result<()> {
        let meta = ObjectMeta {
            etag: new_etag(),
            last_modified: SystemTime::now(),
            ..ObjectMeta::default()
        };
        self.write(
            &self.uploads(),
            &block_key(key, block_id),
            upload.body,
            upload.len,
            content_md5,
            meta,
            self.upload_limits(),
        )
        .await
    }

    /// The blocks staged for `key`: (id, size), by id.
    pub(super) async fn blocks_of(&self, key: &str) -> Result<Vec<(String, u64)>> {
        let prefix = block_key(key, "");
        let q = ListQuery {
            prefix: prefix.clone(),
            delimiter: None,
            max_keys: 100_000,
            cursor: ListCursor::V1 { marker: None },
        };
        let page = self.list_in(&self.uploads(), &q).await?;
        Ok(page
            .entries
            .into_iter()
            .map(|e| (e.key[prefix.len()..].to_string(), e.size))
            .collect())
    }

    /// Commits `key` from staged blocks (Put Block List), then drops every block staged for
    /// it, as Azure does. A cache-only object keeps no committed blocks to reuse.
    pub(super) async fn commit_block_list(
        &self,
        key: &str,
        blocks: &[BlockRef],
        opts: &PutOptions,
    ) -> Result<PutResult> {
        self.refuse_existing(key, opts).await?;
        let uploads = self.uploads();
        let mut found = Vec::with_capacity(blocks.len());
        for b in blocks {
            let id = match b {
                BlockRef::Latest(id) | BlockRef::Uncommitted(id) => id,
                BlockRef::Committed(_) => {
                    return Err(invalid_part(
                        "The specified block list is invalid (a cache-only object keeps no \
                         committed blocks)",
                    ))
                }
            };
            let bk = block_key(key, id);
            match self.fetch(&uploads, &bk, None, None).await {
                Ok((m, _)) => found.push((bk, m)),
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    return Err(invalid_part("The specified block list is invalid"))
                }
                Err(e) => return Err(e),
            }
        }
        let meta = new_version(opts);
        let done = created(&meta);
        self.write_joined(found, key, meta).await?;
        for (id, _) in self.blocks_of(key).await.unwrap_or_default() {
            let _ = self.remove(&uploads, &block_key(key, &id)).await;
        }
        Ok(done)
    }

    /// Abandons an upload and its parts.
    pub(super) async fn abort_upload(&self, key: &str, upload_id: &str) -> Result<()> {
        self.upload_record(key, upload_id).await?;
        self.drop_upload(upload_id).await;
        Ok(())
    }

    /// Drops an upload's parts and record (what cannot be reached now expires).
    async fn drop_upload(&self, upload_id: &str) {
        let uploads = self.uploads();
        let q = ListQuery {
            prefix: format!("{upload_id}/"),
            delimiter: None,
            max_keys: 10_000,
            cursor: ListCursor::V1 { marker: None },
        };
        if let Ok(page) = self.list_in(&uploads, &q).await {
            for e in page.entries {
                let _ = self.remove(&uploads, &e.key).await;
            }
        }
        let _ = self.remove(&uploads, upload_id).await;
    }
}
