//! Uploads in parts into a cache-only bucket (S3 multipart; what LMCache's S3 client sends
//! for objects over 8 MiB). Parts arrive at any front, in any order, so they are kept in the
//! cluster like objects: in a hidden namespace beside the bucket's, under `<upload>/<part>`,
//! on their own replicas, with an upload record `<upload>` holding the object's key and
//! headers. Completing reads the parts back in order into one new object, then drops them.
//! Uploads never completed expire after [`UPLOAD_TTL`].

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use cistern_cache::{KvLimits, ObjectMeta};
use futures::StreamExt;

use super::{new_etag, KvOrigin};
use crate::error::{Error, ErrorKind, Result};
use crate::origin::{ListCursor, ListQuery, PutOptions, PutResult, Upload};

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
        let record = ObjectMeta {
            etag: new_etag(),
            last_modified: SystemTime::now(),
            content_type: opts.content_type.clone(),
            content_encoding: opts.content_encoding.clone(),
            cache_control: opts.cache_control.clone(),
            content_disposition: opts.content_disposition.clone(),
            content_language: opts.content_language.clone(),
            user_metadata: opts.user_metadata.clone(),
            origin_headers: vec![(KEY_HEADER.to_string(), key.to_string())],
            ..ObjectMeta::default()
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
        let total: u64 = found.iter().map(|(_, m)| m.size).sum();
        // The parts' bytes in order, a chunk's worth at a time, each only from the version
        // that was checked above.
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
                    Err(invalid_part("A part was lost before the upload completed"))
                }
            })
            .boxed();
        let now = SystemTime::now();
        let meta = ObjectMeta {
            etag: format!("{}-{}", new_etag(), parts.len()),
            last_modified: now,
            created: Some(now),
            origin_headers: Vec::new(),
            ..record
        };
        let etag = meta.etag.clone();
        let space = Arc::clone(&self.space);
        self.write(&space, key, body, total, None, meta, self.limits)
            .await?;
        self.drop_upload(upload_id).await;
        Ok(PutResult {
            etag,
            last_modified: Some(now),
            version_id: None,
            origin_headers: Vec::new(),
        })
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
