//! CopyObject and UploadPartCopy between any origins: the copy source, checked for the
//! caller, read through the cache and streamed into the destination's upload.

use futures::StreamExt;
use s3s::dto::{self, ETag};
use s3s::{s3_error, S3Request, S3Response, S3Result};

use super::error::to_s3;
use super::multipart::part_number;
use super::write::metadata;
use super::S3Front;
use crate::error::ErrorKind;
use crate::origin::{PutOptions, Upload};
use crate::pipeline::{BucketBinding, Selection};
use cistern_cache::range::RangeSpec;
use std::sync::Arc;

/// The largest object (or part) a copy reads: S3's limit.
const MAX_COPY: u64 = 5 << 30;

/// `x-amz-copy-source-range`: exactly `bytes=first-last`.
fn copy_range(r: &str) -> S3Result<RangeSpec> {
    r.strip_prefix("bytes=")
        .and_then(|v| v.split_once('-'))
        .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)))
        .filter(|(a, b)| a <= b)
        .map(|(first, last)| RangeSpec::FromTo { first, last })
        .ok_or_else(|| {
            s3_error!(
                InvalidArgument,
                "The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy"
            )
        })
}

/// What a copy between origins cannot give its destination.
const UNCOPIED: &[&str] = &[
    "x-amz-server-side-encryption",
    "x-amz-server-side-encryption-aws-kms-key-id",
    "x-amz-server-side-encryption-customer-algorithm",
    "x-amz-copy-source-server-side-encryption-customer-algorithm",
    "x-amz-tagging",
    "x-amz-acl",
    "x-amz-object-lock-mode",
    "x-amz-object-lock-legal-hold",
    "x-amz-storage-class",
    "x-amz-website-redirect-location",
];

impl S3Front {
    /// CopyObject of any size up to 5 GiB, between any buckets the caller may read and
    /// write, whatever their origins: the source is read through the cache and streamed into
    /// an upload of the destination.
    pub(super) async fn copy(
        &self,
        req: S3Request<dto::CopyObjectInput>,
    ) -> S3Result<S3Response<dto::CopyObjectOutput>> {
        let caller = req.credentials.as_ref().map(|c| c.access_key.clone());
        // Copies within one S3 origin are relayed (`relay.rs`); this one crosses origins, and
        // its write carries what the pipeline's does (no server-side encryption, tags, ACL,
        // lock or storage class): refused rather than stored without them.
        if let Some(h) = UNCOPIED.iter().find(|h| req.headers.contains_key(**h)) {
            return Err(s3_error!(
                NotImplemented,
                "A copy between origins cannot carry {}",
                h
            ));
        }
        let mut i = req.input;
        let (src_bucket, src_key) = self.copy_source(caller.as_deref(), &i.copy_source)?;
        let replace = i
            .metadata_directive
            .as_ref()
            .is_some_and(|d| d.as_str() == "REPLACE");
        if src_bucket == i.bucket && src_key == i.key && !replace {
            return Err(s3_error!(
                InvalidRequest,
                "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes."
            ));
        }
        let src = self.bucket(&src_bucket).await?;
        let dst = self.bucket(&i.bucket).await?;
        let cond = super::conditions(
            i.copy_source_if_match.as_ref(),
            i.copy_source_if_none_match.as_ref(),
            i.copy_source_if_modified_since.as_ref(),
            i.copy_source_if_unmodified_since.as_ref(),
        );
        let read = self
            .read_source(&src, &src_key, crate::pipeline::Selection::All, &cond)
            .await?;
        if read.meta.size > MAX_COPY {
            return Err(s3_error!(
                InvalidRequest,
                "The specified copy source is larger than the maximum allowable size for a copy source: 5368709120"
            ));
        }
        let m = &read.meta;
        let opts = if replace {
            PutOptions {
                content_md5: None,
                content_type: i.content_type.clone(),
                content_encoding: i.content_encoding.clone(),
                content_language: i.content_language.clone(),
                cache_control: i.cache_control.clone(),
                content_disposition: i.content_disposition.clone(),
                user_metadata: metadata(i.metadata.take()),
                create_only: false,
                checksum: None,
            }
        } else {
            PutOptions {
                content_md5: None,
                content_type: m.content_type.clone(),
                content_encoding: m.content_encoding.clone(),
                content_language: m.content_language.clone(),
                cache_control: m.cache_control.clone(),
                content_disposition: m.content_disposition.clone(),
                user_metadata: m.user_metadata.clone(),
                create_only: false,
                checksum: None,
            }
        };
        let upload = Upload {
            len: m.size,
            body: read.body.boxed(),
        };
        let put = self
            .pipeline
            .put(&dst, &i.key, upload, &opts)
            .await
            .map_err(to_s3)?;
        Ok(S3Response::new(dto::CopyObjectOutput {
            version_id: put.version_id.clone(),
            copy_object_result: Some(dto::CopyObjectResult {
                e_tag: Some(ETag::Strong(put.etag)),
                last_modified: Some(dto::Timestamp::from(
                    put.last_modified.unwrap_or_else(std::time::SystemTime::now),
                )),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    /// The bucket and key a copy reads, after checking the caller may read them (the access
    /// check covered only the destination).
    fn copy_source(
        &self,
        caller: Option<&str>,
        source: &dto::CopySource,
    ) -> S3Result<(String, String)> {
        let (bucket, key) = match source {
            dto::CopySource::Bucket {
                bucket,
                key,
                version_id: None,
            } => (bucket.to_string(), key.to_string()),
            dto::CopySource::Bucket { .. } => {
                return Err(s3_error!(
                    NotImplemented,
                    "Copying a specific version is not implemented yet"
                ))
            }
            _ => {
                return Err(s3_error!(
                    NotImplemented,
                    "Access point copy sources are not implemented"
                ))
            }
        };
        if self.policy.authorize(
            caller,
            &bucket,
            cistern_auth::policy::Permission::Read,
            false,
        ) != cistern_auth::policy::Decision::Allow
        {
            return Err(s3_error!(AccessDenied, "Access Denied"));
        }
        Ok((bucket, key))
    }

    /// Reads a copy source through the cache; every failed source condition is a 412.
    async fn read_source(
        &self,
        src: &Arc<BucketBinding>,
        key: &str,
        sel: Selection,
        cond: &crate::pipeline::Conditions,
    ) -> S3Result<crate::pipeline::ObjectRead> {
        self.pipeline.get(src, key, sel, cond).await.map_err(|e| {
            if e.kind() == ErrorKind::NotModified {
                s3_error!(
                    PreconditionFailed,
                    "At least one of the pre-conditions you specified did not hold"
                )
            } else {
                to_s3(e)
            }
        })
    }

    /// UploadPartCopy: a part made of (a range of) another object, read through the cache
    /// and streamed into the upload, whatever the two origins.
    pub(super) async fn upload_part_copy(
        &self,
        req: S3Request<dto::UploadPartCopyInput>,
    ) -> S3Result<S3Response<dto::UploadPartCopyOutput>> {
        let caller = req.credentials.as_ref().map(|c| c.access_key.clone());
        let i = req.input;
        let part = part_number(i.part_number)?;
        let (src_bucket, src_key) = self.copy_source(caller.as_deref(), &i.copy_source)?;
        let src = self.bucket(&src_bucket).await?;
        let dst = self.bucket(&i.bucket).await?;
        let sel = match i.copy_source_range.as_deref() {
            None => Selection::All,
            Some(r) => Selection::Range(copy_range(r)?),
        };
        let cond = super::conditions(
            i.copy_source_if_match.as_ref(),
            i.copy_source_if_none_match.as_ref(),
            i.copy_source_if_modified_since.as_ref(),
            i.copy_source_if_unmodified_since.as_ref(),
        );
        let read = self.read_source(&src, &src_key, sel, &cond).await?;
        if let Selection::Range(RangeSpec::FromTo { last, .. }) = sel {
            if last >= read.meta.size {
                return Err(s3_error!(
                    InvalidRange,
                    "The x-amz-copy-source-range value runs past the end of the source"
                ));
            }
        }
        let len = read
            .range
            .as_ref()
            .map_or(read.meta.size, |r| r.end - r.start);
        if len > MAX_COPY {
            return Err(s3_error!(
                InvalidRequest,
                "The specified copy source is larger than the maximum allowable size for a copy source: 5368709120"
            ));
        }
        let upload = Upload {
            len,
            body: read.body.boxed(),
        };
        let etag = dst
            .origin
            .put_part(&dst.origin_bucket, &i.key, &i.upload_id, part, upload, None)
            .await
            .map_err(to_s3)?;
        Ok(S3Response::new(dto::UploadPartCopyOutput {
            copy_part_result: Some(dto::CopyPartResult {
                e_tag: Some(ETag::Strong(etag)),
                last_modified: Some(dto::Timestamp::from(std::time::SystemTime::now())),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }
}
