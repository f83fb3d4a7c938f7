//! Multipart uploads: CreateMultipartUpload, UploadPart (its body checked as PutObject's),
//! CompleteMultipartUpload, AbortMultipartUpload, ListParts and ListMultipartUploads.

use bytes::Bytes;
use s3s::dto::{self, ETag, StreamingBlob};
use s3s::{s3_error, S3Request, S3Response, S3Result};

use super::error::to_s3;
use super::write::{body_stream, declared, metadata, with_origin_headers};
use super::S3Front;
use crate::origin::{PutOptions, Upload};

pub(super) fn part_number(n: i32) -> S3Result<u32> {
    u32::try_from(n)
        .ok()
        .filter(|n| (1..=10_000).contains(n))
        .ok_or_else(|| {
            s3_error!(
                InvalidArgument,
                "Part number must be an integer between 1 and 10000, inclusive"
            )
        })
}

/// A page size parameter: 0–1000 (default 1000), as S3 caps them.
pub(super) fn page_size(v: Option<i32>, name: &str) -> S3Result<usize> {
    match v {
        None => Ok(1000),
        Some(n) if n >= 0 => Ok((n as usize).min(1000)),
        Some(_) => Err(s3_error!(
            InvalidArgument,
            "Argument {} must be an integer between 0 and 2147483647",
            name
        )),
    }
}

impl S3Front {
    pub(super) async fn create_multipart(
        &self,
        req: S3Request<dto::CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::CreateMultipartUploadOutput>> {
        let mut i = req.input;
        let b = self.bucket(&i.bucket).await?;
        let opts = PutOptions {
            content_md5: None,
            content_type: i.content_type.clone(),
            content_encoding: i.content_encoding.clone(),
            content_language: i.content_language.clone(),
            cache_control: i.cache_control.clone(),
            content_disposition: i.content_disposition.clone(),
            user_metadata: metadata(i.metadata.take()),
            create_only: false,
            checksum: None,
        };
        let id = b
            .origin
            .start_parts(&b.origin_bucket, &i.key, &opts)
            .await
            .map_err(to_s3)?;
        Ok(S3Response::new(dto::CreateMultipartUploadOutput {
            bucket: Some(i.bucket),
            key: Some(i.key),
            upload_id: Some(id),
            ..Default::default()
        }))
    }

    pub(super) async fn upload_part(
        &self,
        req: S3Request<dto::UploadPartInput>,
    ) -> S3Result<S3Response<dto::UploadPartOutput>> {
        let trailers = req.trailing_headers.clone();
        let headers = req.headers.clone();
        let mut i = req.input;
        let part = part_number(i.part_number)?;
        let b = self.bucket(&i.bucket).await?;
        let len = i
            .content_length
            .and_then(|l| u64::try_from(l).ok())
            .ok_or_else(|| {
                s3_error!(
                    MissingContentLength,
                    "You must provide the Content-Length HTTP header."
                )
            })?;
        let checksum = declared(
            [
                &i.checksum_crc32,
                &i.checksum_crc32c,
                &i.checksum_crc64nvme,
                &i.checksum_sha1,
                &i.checksum_sha256,
            ],
            &headers,
            trailers,
        );
        let body = i.body.take().unwrap_or_else(|| {
            StreamingBlob::wrap(futures::stream::empty::<
                std::result::Result<Bytes, std::io::Error>,
            >())
        });
        let upload = Upload {
            body: body_stream(body, checksum),
            len,
        };
        let etag = b
            .origin
            .put_part(
                &b.origin_bucket,
                &i.key,
                &i.upload_id,
                part,
                upload,
                i.content_md5.as_deref(),
            )
            .await
            .map_err(to_s3)?;
        Ok(S3Response::new(dto::UploadPartOutput {
            e_tag: Some(ETag::Strong(etag)),
            ..Default::default()
        }))
    }

    pub(super) async fn complete_multipart(
        &self,
        req: S3Request<dto::CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::CompleteMultipartUploadOutput>> {
        let i = req.input;
        if i.if_match.is_some() || i.if_none_match.is_some() {
            return Err(s3_error!(
                NotImplemented,
                "Conditional writes are not implemented yet"
            ));
        }
        let b = self.bucket(&i.bucket).await?;
        let mut parts: Vec<(u32, String)> = Vec::new();
        for p in i.multipart_upload.and_then(|m| m.parts).unwrap_or_default() {
            let n = p
                .part_number
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| s3_error!(InvalidPart, "A part has no part number"))?;
            let etag = p
                .e_tag
                .map(|e| e.value().to_string())
                .ok_or_else(|| s3_error!(InvalidPart, "A part has no ETag"))?;
            parts.push((n, etag));
        }
        if parts.is_empty() {
            return Err(s3_error!(
                MalformedXML,
                "You must specify at least one part"
            ));
        }
        if parts.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err(s3_error!(
                InvalidPartOrder,
                "The list of parts was not in ascending order."
            ));
        }
        let put = self
            .pipeline
            .complete_parts(&b, &i.key, &i.upload_id, &parts)
            .await
            .map_err(to_s3)?;
        let resp = S3Response::new(dto::CompleteMultipartUploadOutput {
            bucket: Some(i.bucket),
            key: Some(i.key),
            e_tag: Some(ETag::Strong(put.etag)),
            version_id: put.version_id,
            ..Default::default()
        });
        Ok(with_origin_headers(resp, &put.origin_headers))
    }

    pub(super) async fn abort_multipart(
        &self,
        req: S3Request<dto::AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::AbortMultipartUploadOutput>> {
        let i = req.input;
        let b = self.bucket(&i.bucket).await?;
        b.origin
            .abort_parts(&b.origin_bucket, &i.key, &i.upload_id)
            .await
            .map_err(to_s3)?;
        Ok(S3Response::new(dto::AbortMultipartUploadOutput::default()))
    }

    /// ListParts: the origin's parts of the upload, paged here (`max-parts` ≤ 1000,
    /// `part-number-marker`).
    pub(super) async fn list_parts(
        &self,
        req: S3Request<dto::ListPartsInput>,
    ) -> S3Result<S3Response<dto::ListPartsOutput>> {
        let i = req.input;
        let max = page_size(i.max_parts, "max-parts")?;
        let b = self.bucket(&i.bucket).await?;
        let marker = i.part_number_marker.unwrap_or(0);
        let listing = b
            .origin
            .list_parts(&b.origin_bucket, &i.key, &i.upload_id)
            .await
            .map_err(to_s3)?;
        let mut parts: Vec<_> = listing
            .parts
            .into_iter()
            .filter(|p| i64::from(p.number) > i64::from(marker))
            .collect();
        let truncated = max > 0 && parts.len() > max;
        parts.truncate(max);
        let next = parts.last().map(|p| p.number as i32).filter(|_| truncated);
        Ok(S3Response::new(dto::ListPartsOutput {
            bucket: Some(i.bucket),
            key: Some(i.key),
            upload_id: Some(i.upload_id),
            max_parts: Some(max as i32),
            part_number_marker: Some(marker),
            next_part_number_marker: next,
            is_truncated: Some(truncated),
            parts: Some(
                parts
                    .into_iter()
                    .map(|p| dto::Part {
                        part_number: Some(p.number as i32),
                        e_tag: Some(ETag::Strong(p.etag)),
                        size: Some(p.size as i64),
                        last_modified: p.last_modified.map(dto::Timestamp::from),
                        ..Default::default()
                    })
                    .collect(),
            ),
            // The origin's, else (a directory, Azure) the owner ListBuckets names.
            initiator: Some(super::initiator(listing.initiator)),
            owner: Some(super::owner(listing.owner)),
            storage_class: Some(dto::StorageClass::from(
                listing
                    .storage_class
                    .unwrap_or_else(|| dto::StorageClass::STANDARD.to_string()),
            )),
            ..Default::default()
        }))
    }

    /// ListMultipartUploads: the origin's uploads in progress under the prefix, grouped by
    /// the delimiter and paged here (`max-uploads` ≤ 1000, `key-marker`, `upload-id-marker`).
    pub(super) async fn list_uploads(
        &self,
        req: S3Request<dto::ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<dto::ListMultipartUploadsOutput>> {
        let i = req.input;
        let max = page_size(i.max_uploads, "max-uploads")?;
        let url = super::wants_url(i.encoding_type.as_ref())?;
        let enc = |s: String| super::enc(s, url);
        let b = self.bucket(&i.bucket).await?;
        let prefix = i.prefix.clone().unwrap_or_default();
        let delimiter = i.delimiter.clone().filter(|d| !d.is_empty());
        let key_marker = i.key_marker.clone().unwrap_or_default();
        let id_marker = i
            .upload_id_marker
            .clone()
            .filter(|_| !key_marker.is_empty());
        let all = b
            .origin
            .list_uploads(&b.origin_bucket, &prefix)
            .await
            .map_err(to_s3)?;
        // Entries in key order: uploads, and the common prefixes that stand for many.
        let mut uploads = Vec::new();
        let mut prefixes: Vec<String> = Vec::new();
        let mut taken = 0usize;
        let mut truncated = false;
        let mut last: Option<(String, Option<String>)> = None;
        // The origin lists a key's uploads in start order: resume just after the marker's
        // position (upload ids do not sort by start time).
        let resume_at = match &id_marker {
            Some(id) => all
                .iter()
                .position(|u| u.key == key_marker && u.upload_id == *id)
                .map_or_else(|| all.partition_point(|u| u.key <= key_marker), |i| i + 1),
            None if key_marker.is_empty() => 0,
            None => all.partition_point(|u| u.key <= key_marker),
        };
        for u in all.into_iter().skip(resume_at) {
            let rolled = delimiter.as_deref().and_then(|d| {
                let rest = u.key.strip_prefix(prefix.as_str())?;
                rest.find(d)
                    .map(|at| format!("{prefix}{}", &rest[..at + d.len()]))
            });
            if let Some(p) = &rolled {
                // A prefix already given (on this page, or ending an earlier one).
                if prefixes.last() == Some(p) || (!key_marker.is_empty() && *p <= key_marker) {
                    continue;
                }
            }
            if taken == max {
                truncated = max > 0;
                break;
            }
            taken += 1;
            match rolled {
                Some(p) => {
                    last = Some((p.clone(), None));
                    prefixes.push(p);
                }
                None => {
                    last = Some((u.key.clone(), Some(u.upload_id.clone())));
                    uploads.push(dto::MultipartUpload {
                        key: Some(enc(u.key)),
                        upload_id: Some(u.upload_id),
                        initiated: u.initiated.map(dto::Timestamp::from),
                        ..Default::default()
                    });
                }
            }
        }
        let (next_key, next_id) = match last.filter(|_| truncated) {
            Some((k, id)) => (Some(enc(k)), id),
            None => (None, None),
        };
        Ok(S3Response::new(dto::ListMultipartUploadsOutput {
            bucket: Some(i.bucket),
            prefix: Some(enc(prefix)),
            delimiter: delimiter.map(enc),
            key_marker: Some(enc(key_marker)),
            upload_id_marker: i.upload_id_marker,
            max_uploads: Some(max as i32),
            is_truncated: Some(truncated),
            next_key_marker: next_key,
            next_upload_id_marker: next_id,
            uploads: Some(uploads),
            common_prefixes: Some(
                prefixes
                    .into_iter()
                    .map(|p| dto::CommonPrefix {
                        prefix: Some(enc(p)),
                    })
                    .collect(),
            ),
            encoding_type: i.encoding_type,
            ..Default::default()
        }))
    }
}
