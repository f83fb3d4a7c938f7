//! PutObject and DeleteObject: the body streams to the origin (never buffered whole), checked
//! on the way for its length, `Content-MD5` and `x-amz-checksum-*` (from a header or an
//! `aws-chunked` trailer); a write that fails a check never completes at the origin.

use bytes::Bytes;
use futures::StreamExt;
use s3s::checksum::ChecksumHasher;
use s3s::crypto::Checksum as _;
use s3s::dto::{self, ETag, StreamingBlob};
use s3s::{s3_error, S3Request, S3Response, S3Result};

use super::error::to_s3;
use super::S3Front;
use crate::error::{Error, ErrorKind, Result};
use crate::origin::{PutOptions, Upload};
use crate::pipeline::{BucketBinding, Selection};
use cistern_cache::range::RangeSpec;
use std::sync::Arc;

/// A checksum algorithm S3 clients declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Algo {
    Crc32,
    Crc32c,
    Crc64Nvme,
    Sha1,
    Sha256,
}

impl Algo {
    fn header(self) -> &'static str {
        match self {
            Self::Crc32 => "x-amz-checksum-crc32",
            Self::Crc32c => "x-amz-checksum-crc32c",
            Self::Crc64Nvme => "x-amz-checksum-crc64nvme",
            Self::Sha1 => "x-amz-checksum-sha1",
            Self::Sha256 => "x-amz-checksum-sha256",
        }
    }

    fn from_header(name: &str) -> Option<Self> {
        [
            Self::Crc32,
            Self::Crc32c,
            Self::Crc64Nvme,
            Self::Sha1,
            Self::Sha256,
        ]
        .into_iter()
        .find(|a| a.header().eq_ignore_ascii_case(name.trim()))
    }

    fn hasher(self) -> ChecksumHasher {
        let mut h = ChecksumHasher::default();
        match self {
            Self::Crc32 => h.crc32 = Some(s3s::crypto::Crc32::new()),
            Self::Crc32c => h.crc32c = Some(s3s::crypto::Crc32c::new()),
            Self::Crc64Nvme => h.crc64nvme = Some(s3s::crypto::Crc64Nvme::new()),
            Self::Sha1 => h.sha1 = Some(s3s::crypto::Sha1::new()),
            Self::Sha256 => h.sha256 = Some(s3s::crypto::Sha256::new()),
        }
        h
    }

    fn pick(self, c: dto::Checksum) -> Option<String> {
        match self {
            Self::Crc32 => c.checksum_crc32,
            Self::Crc32c => c.checksum_crc32c,
            Self::Crc64Nvme => c.checksum_crc64nvme,
            Self::Sha1 => c.checksum_sha1,
            Self::Sha256 => c.checksum_sha256,
        }
    }
}

/// Where the expected checksum comes from.
enum Expected {
    Value(String),
    Trailer(s3s::TrailingHeaders),
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct BodyError(String);

/// The largest object (or part) a copy reads: S3's limit.
const MAX_COPY: u64 = 5 << 30;

fn part_number(n: i32) -> S3Result<u32> {
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

/// Tagging of a specific version is not served (versioned reads are not either).
fn no_version(v: &Option<String>) -> S3Result<()> {
    match v {
        Some(_) => Err(s3_error!(
            NotImplemented,
            "Tags of a specific version are not implemented yet"
        )),
        None => Ok(()),
    }
}

/// A page size parameter: 0–1000 (default 1000), as S3 caps them.
fn page_size(v: Option<i32>, name: &str) -> S3Result<usize> {
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

fn bad_checksum(algo: Algo) -> Error {
    Error::new(
        ErrorKind::BadDigest,
        format!(
            "The {} you specified did not match the calculated checksum.",
            algo.header()
        ),
    )
}

/// The request body as an upload stream: client-side read errors become `IncompleteBody`,
/// and a declared checksum is verified at the end (an error there replaces the last piece,
/// which the upload checker holds back, so the origin never completes the write).
fn body_stream(
    body: StreamingBlob,
    checksum: Option<(Algo, Expected)>,
) -> futures::stream::BoxStream<'static, Result<Bytes>> {
    let hasher = checksum.as_ref().map(|(a, _)| a.hasher());
    futures::stream::unfold(
        (body, checksum, hasher, false),
        |(mut body, checksum, mut hasher, done)| async move {
            if done {
                return None;
            }
            match body.next().await {
                Some(Ok(chunk)) => {
                    if let Some(h) = &mut hasher {
                        h.update(&chunk);
                    }
                    Some((Ok(chunk), (body, checksum, hasher, false)))
                }
                Some(Err(e)) => {
                    let text = e.to_string();
                    // s3s's aws-chunked decoder (private type, pinned version) names a chunk
                    // whose signature does not match.
                    let err = if text.contains("SignatureMismatch") {
                        Error::new(
                            ErrorKind::SignatureMismatch,
                            "The request signature we calculated does not match the signature you provided.",
                        )
                    } else {
                        Error::new(
                            ErrorKind::IncompleteBody,
                            "The request body could not be read completely.",
                        )
                    };
                    Some((
                        Err(err.with_source(BodyError(text))),
                        (body, checksum, hasher, true),
                    ))
                }
                None => {
                    let (algo, expected) = checksum?;
                    let got = hasher.and_then(|h| algo.pick(h.finalize()));
                    let want = match &expected {
                        Expected::Value(v) => Some(v.clone()),
                        Expected::Trailer(t) => t
                            .read(|h| {
                                h.get(algo.header())
                                    .and_then(|v| v.to_str().ok())
                                    .map(str::to_string)
                            })
                            .flatten(),
                    };
                    match want {
                        Some(w) if Some(w.trim()) != got.as_deref() => {
                            Some((Err(bad_checksum(algo)), (body, None, None, true)))
                        }
                        _ => None,
                    }
                }
            }
        },
    )
    .boxed()
}

/// A relayed request's body as an upload stream, its declared checksum (an
/// `x-amz-checksum-*` header, or a trailer named by `x-amz-trailer`) verified on the way as
/// for PutObject (see [`body_stream`]).
pub(super) fn checked_body(
    body: s3s::Body,
    headers: &http::HeaderMap,
    trailers: Option<s3s::TrailingHeaders>,
) -> futures::stream::BoxStream<'static, Result<Bytes>> {
    let value = |a: Algo| {
        headers
            .get(a.header())
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let values = [
        value(Algo::Crc32),
        value(Algo::Crc32c),
        value(Algo::Crc64Nvme),
        value(Algo::Sha1),
        value(Algo::Sha256),
    ];
    let [a, b, c, d, e] = &values;
    let checksum = declared([a, b, c, d, e], headers, trailers);
    body_stream(StreamingBlob::from(body), checksum)
}

/// The declared checksum of an upload (PutObject or UploadPart): a header value, or a trailer
/// named by `x-amz-trailer`. `values` are the input's crc32, crc32c, crc64nvme, sha1, sha256.
fn declared(
    values: [&Option<String>; 5],
    headers: &http::HeaderMap,
    trailers: Option<s3s::TrailingHeaders>,
) -> Option<(Algo, Expected)> {
    let algos = [
        Algo::Crc32,
        Algo::Crc32c,
        Algo::Crc64Nvme,
        Algo::Sha1,
        Algo::Sha256,
    ];
    let values: Vec<(Algo, &Option<String>)> = algos.into_iter().zip(values).collect();
    if let Some((a, Some(v))) = values.into_iter().find(|(_, v)| v.is_some()) {
        return Some((a, Expected::Value(v.clone())));
    }
    let trailer = headers.get("x-amz-trailer")?.to_str().ok()?;
    let algo = Algo::from_header(trailer)?;
    Some((algo, Expected::Trailer(trailers?)))
}

/// Whether S3 lets a bucket of this name be created: 3–63 lower-case letters, digits, `.` and
/// `-`, starting and ending with a letter or digit, no `..`, not an IPv4 address. (Cistern
/// serves existing buckets under looser names, e.g. directories with `_`.)
fn creatable_name(name: &str) -> bool {
    let b = name.as_bytes();
    let edge = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    (3..=63).contains(&b.len())
        && b.iter().all(|&c| edge(c) || c == b'.' || c == b'-')
        && b.first().copied().is_some_and(edge)
        && b.last().copied().is_some_and(edge)
        && !name.contains("..")
        && name.parse::<std::net::Ipv4Addr>().is_err()
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

/// A write's answer with the origin's own word on how it keeps the object (its server-side
/// encryption, default or asked for), as S3 answers.
fn with_origin_headers<T>(mut resp: S3Response<T>, kept: &[(String, String)]) -> S3Response<T> {
    for (k, v) in kept.iter().filter(|(k, _)| k.starts_with("x-amz-")) {
        if let (Ok(k), Ok(v)) = (
            http::HeaderName::from_bytes(k.as_bytes()),
            http::HeaderValue::from_str(v),
        ) {
            resp.headers.insert(k, v);
        }
    }
    resp
}

/// User metadata as the origins take it: lower-case names, sorted.
fn metadata(m: Option<dto::Metadata>) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = m
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    v.sort();
    v
}

impl S3Front {
    pub(super) async fn put(
        &self,
        req: S3Request<dto::PutObjectInput>,
    ) -> S3Result<S3Response<dto::PutObjectOutput>> {
        let trailers = req.trailing_headers.clone();
        let headers = req.headers.clone();
        let mut i = req.input;
        // `If-None-Match: *` (create only) is served; other conditional writes are not yet.
        let create_only = matches!(i.if_none_match, Some(dto::ETagCondition::Any));
        if i.if_match.is_some() || (i.if_none_match.is_some() && !create_only) {
            return Err(s3_error!(
                NotImplemented,
                "Conditional writes are not implemented yet"
            ));
        }
        let b = self.bucket(&i.bucket).await?;
        if create_only
            && self
                .pipeline
                .exists_at_origin(&b, &i.key)
                .await
                .map_err(to_s3)?
        {
            return Err(s3_error!(
                PreconditionFailed,
                "At least one of the pre-conditions you specified did not hold"
            ));
        }
        let len = i.content_length.ok_or_else(|| {
            s3_error!(
                MissingContentLength,
                "You must provide the Content-Length HTTP header."
            )
        })?;
        let len = u64::try_from(len)
            .map_err(|_| s3_error!(InvalidArgument, "Content-Length must not be negative"))?;
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
        let algo = checksum.as_ref().map(|(a, _)| *a);
        let declared_up_front = match &checksum {
            Some((a, Expected::Value(v))) => Some((a.header().to_string(), v.clone())),
            _ => None,
        };
        let body = i.body.take().unwrap_or_else(|| {
            StreamingBlob::wrap(futures::stream::empty::<
                std::result::Result<Bytes, std::io::Error>,
            >())
        });
        let opts = PutOptions {
            content_md5: i.content_md5.clone(),
            content_type: i.content_type.clone(),
            content_encoding: i.content_encoding.clone(),
            content_language: i.content_language.clone(),
            cache_control: i.cache_control.clone(),
            content_disposition: i.content_disposition.clone(),
            user_metadata: i
                .metadata
                .take()
                .map(|m| {
                    let mut v: Vec<(String, String)> = m
                        .into_iter()
                        .map(|(k, v)| (k.to_ascii_lowercase(), v))
                        .collect();
                    v.sort();
                    v
                })
                .unwrap_or_default(),
            create_only,
            checksum: declared_up_front,
        };
        let upload = Upload {
            body: body_stream(body, checksum),
            len,
        };
        let mut put = self
            .pipeline
            .put(&b, &i.key, upload, &opts)
            .await
            .map_err(to_s3)?;
        let kept = std::mem::take(&mut put.origin_headers);
        let mut out = dto::PutObjectOutput {
            e_tag: Some(ETag::Strong(put.etag)),
            version_id: put.version_id,
            ..Default::default()
        };
        if let Some(a) = algo {
            // Echo the verified checksum, as S3 does.
            let v = match a {
                Algo::Crc32 => &mut out.checksum_crc32,
                Algo::Crc32c => &mut out.checksum_crc32c,
                Algo::Crc64Nvme => &mut out.checksum_crc64nvme,
                Algo::Sha1 => &mut out.checksum_sha1,
                Algo::Sha256 => &mut out.checksum_sha256,
            };
            *v = match a {
                Algo::Crc32 => i.checksum_crc32.clone(),
                Algo::Crc32c => i.checksum_crc32c.clone(),
                Algo::Crc64Nvme => i.checksum_crc64nvme.clone(),
                Algo::Sha1 => i.checksum_sha1.clone(),
                Algo::Sha256 => i.checksum_sha256.clone(),
            };
        }
        Ok(with_origin_headers(S3Response::new(out), &kept))
    }

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

    /// GetObjectTagging, asked of the origin (current versions only).
    pub(super) async fn get_tagging(
        &self,
        req: S3Request<dto::GetObjectTaggingInput>,
    ) -> S3Result<S3Response<dto::GetObjectTaggingOutput>> {
        let i = req.input;
        no_version(&i.version_id)?;
        let b = self.bucket(&i.bucket).await?;
        let tags = b
            .origin
            .get_tags(&b.origin_bucket, &i.key)
            .await
            .map_err(to_s3)?;
        Ok(S3Response::new(dto::GetObjectTaggingOutput {
            tag_set: tags
                .into_iter()
                .map(|(k, v)| dto::Tag {
                    key: Some(k),
                    value: Some(v),
                })
                .collect(),
            version_id: None,
        }))
    }

    /// PutObjectTagging, passed to the origin (≤ 10 tags, as S3 allows).
    pub(super) async fn put_tagging(
        &self,
        req: S3Request<dto::PutObjectTaggingInput>,
    ) -> S3Result<S3Response<dto::PutObjectTaggingOutput>> {
        let i = req.input;
        no_version(&i.version_id)?;
        let tags: Vec<(String, String)> = i
            .tagging
            .tag_set
            .into_iter()
            .map(|t| (t.key.unwrap_or_default(), t.value.unwrap_or_default()))
            .collect();
        if tags.len() > 10 {
            return Err(s3_error!(
                InvalidTag,
                "Object tags cannot be greater than 10"
            ));
        }
        let b = self.bucket(&i.bucket).await?;
        b.origin
            .put_tags(&b.origin_bucket, &i.key, &tags)
            .await
            .map_err(to_s3)?;
        self.pipeline.changed(&b, &i.key).await;
        Ok(S3Response::new(dto::PutObjectTaggingOutput::default()))
    }

    /// DeleteObjectTagging, passed to the origin.
    pub(super) async fn delete_tagging(
        &self,
        req: S3Request<dto::DeleteObjectTaggingInput>,
    ) -> S3Result<S3Response<dto::DeleteObjectTaggingOutput>> {
        let i = req.input;
        no_version(&i.version_id)?;
        let b = self.bucket(&i.bucket).await?;
        b.origin
            .delete_tags(&b.origin_bucket, &i.key)
            .await
            .map_err(to_s3)?;
        self.pipeline.changed(&b, &i.key).await;
        Ok(S3Response::new(dto::DeleteObjectTaggingOutput::default()))
    }

    /// ListObjectVersions: an S3 origin's page passed through; a directory's objects as their
    /// one `null` version each.
    pub(super) async fn list_versions(
        &self,
        req: S3Request<dto::ListObjectVersionsInput>,
    ) -> S3Result<S3Response<dto::ListObjectVersionsOutput>> {
        let i = req.input;
        let max = page_size(i.max_keys, "max-keys")?;
        let url = super::wants_url(i.encoding_type.as_ref())?;
        let enc = |s: String| super::enc(s, url);
        let b = self.bucket(&i.bucket).await?;
        let q = crate::origin::VersionQuery {
            prefix: i.prefix.clone().unwrap_or_default(),
            delimiter: i.delimiter.clone().filter(|d| !d.is_empty()),
            key_marker: i.key_marker.clone().filter(|m| !m.is_empty()),
            version_id_marker: i.version_id_marker.clone().filter(|m| !m.is_empty()),
            max_keys: max as u32,
        };
        let page = b
            .origin
            .list_versions(&b.origin_bucket, &q)
            .await
            .map_err(to_s3)?;
        let mut versions = Vec::new();
        let mut markers = Vec::new();
        for e in page.entries {
            let last_modified = e.last_modified.map(dto::Timestamp::from);
            if e.delete_marker {
                markers.push(dto::DeleteMarkerEntry {
                    key: Some(enc(e.key)),
                    version_id: Some(e.version_id),
                    is_latest: Some(e.is_latest),
                    last_modified,
                    // S3 names the owner of every version and delete marker.
                    owner: Some(super::owner(e.owner)),
                });
            } else {
                versions.push(dto::ObjectVersion {
                    key: Some(enc(e.key)),
                    version_id: Some(e.version_id),
                    is_latest: Some(e.is_latest),
                    last_modified,
                    e_tag: e.etag.map(ETag::Strong),
                    size: e.size.map(|s| s as i64),
                    storage_class: Some(dto::ObjectVersionStorageClass::from_static(
                        dto::ObjectVersionStorageClass::STANDARD,
                    )),
                    owner: Some(super::owner(e.owner)),
                    ..Default::default()
                });
            }
        }
        Ok(S3Response::new(dto::ListObjectVersionsOutput {
            name: Some(i.bucket),
            prefix: Some(enc(q.prefix)),
            delimiter: q.delimiter.map(enc),
            key_marker: Some(enc(i.key_marker.unwrap_or_default())),
            version_id_marker: Some(i.version_id_marker.unwrap_or_default()),
            max_keys: Some(max as i32),
            is_truncated: Some(page.truncated),
            next_key_marker: page.next_key_marker.map(enc),
            next_version_id_marker: page.next_version_id_marker,
            versions: Some(versions),
            delete_markers: Some(markers),
            common_prefixes: Some(
                page.prefixes
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

    /// DeleteObjects: each key deleted as DeleteObject would, results reported per key.
    pub(super) async fn delete_many(
        &self,
        req: S3Request<dto::DeleteObjectsInput>,
    ) -> S3Result<S3Response<dto::DeleteObjectsOutput>> {
        let i = req.input;
        if i.delete.objects.len() > 1000 {
            return Err(s3_error!(
                MalformedXML,
                "The request must contain no more than 1000 keys"
            ));
        }
        let b = self.bucket(&i.bucket).await?;
        let quiet = i.delete.quiet.unwrap_or(false);
        let mut deleted = Vec::new();
        let mut errors = Vec::new();
        // A few deletes in flight at once (the origin takes one key per request), answered in
        // the request's order.
        let outcomes: Vec<_> = futures::stream::iter(i.delete.objects)
            .map(|o| {
                let b = &b;
                async move {
                    let if_match = o.e_tag.as_ref().map(|e| format!("\"{}\"", e.value()));
                    let r = self
                        .pipeline
                        .delete_version(b, &o.key, o.version_id.as_deref(), if_match.as_deref())
                        .await;
                    (o, r)
                }
            })
            .buffered(DELETE_FANOUT)
            .collect()
            .await;
        for (o, r) in outcomes {
            match r {
                Ok(done) => {
                    if !quiet {
                        let marker = done.delete_marker;
                        deleted.push(dto::DeletedObject {
                            key: Some(o.key),
                            delete_marker: marker.then_some(true),
                            delete_marker_version_id: if marker {
                                done.version_id.clone()
                            } else {
                                None
                            },
                            version_id: o.version_id.or(if marker {
                                None
                            } else {
                                done.version_id
                            }),
                        });
                    }
                }
                Err(e) => {
                    let s3e = to_s3(e);
                    errors.push(dto::Error {
                        code: Some(s3e.code().as_str().to_string()),
                        key: Some(o.key),
                        message: s3e.message().map(str::to_string),
                        version_id: o.version_id,
                    });
                }
            }
        }
        Ok(S3Response::new(dto::DeleteObjectsOutput {
            deleted: Some(deleted),
            errors: (!errors.is_empty()).then_some(errors),
            ..Default::default()
        }))
    }

    pub(super) async fn make_bucket(
        &self,
        req: S3Request<dto::CreateBucketInput>,
    ) -> S3Result<S3Response<dto::CreateBucketOutput>> {
        let bucket = req.input.bucket;
        if !creatable_name(&bucket) {
            return Err(s3_error!(
                InvalidBucketName,
                "The specified bucket is not valid."
            ));
        }
        self.pipeline.create_bucket(&bucket).await.map_err(to_s3)?;
        Ok(S3Response::new(dto::CreateBucketOutput {
            location: Some(format!("/{bucket}")),
        }))
    }

    pub(super) async fn remove_bucket(
        &self,
        req: S3Request<dto::DeleteBucketInput>,
    ) -> S3Result<S3Response<dto::DeleteBucketOutput>> {
        let b = self.bucket(&req.input.bucket).await?;
        self.pipeline.delete_bucket(&b).await.map_err(to_s3)?;
        Ok(S3Response::new(dto::DeleteBucketOutput::default()))
    }

    pub(super) async fn delete(
        &self,
        req: S3Request<dto::DeleteObjectInput>,
    ) -> S3Result<S3Response<dto::DeleteObjectOutput>> {
        let i = req.input;
        let b = self.bucket(&i.bucket).await?;
        let if_match = i.if_match.as_ref().map(etag_condition);
        let done = self
            .pipeline
            .delete_version(&b, &i.key, i.version_id.as_deref(), if_match.as_deref())
            .await
            .map_err(to_s3)?;
        Ok(S3Response::new(dto::DeleteObjectOutput {
            delete_marker: done.delete_marker.then_some(true),
            version_id: done.version_id,
            ..Default::default()
        }))
    }
}

/// DeleteObjects keys deleted at once.
const DELETE_FANOUT: usize = 16;

/// An `If-Match` condition as the origin takes it.
fn etag_condition(c: &dto::ETagCondition) -> String {
    match c {
        dto::ETagCondition::Any => "*".to_string(),
        dto::ETagCondition::ETag(e) => format!("\"{}\"", e.value()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names_follow_s3_creation_rules() {
        for ok in ["abc", "my-bucket.data", "a1b", &"x".repeat(63)] {
            assert!(creatable_name(ok), "{ok}");
        }
        for bad in [
            "ab",
            &"x".repeat(64),
            "Upper",
            "under_score",
            "-lead",
            "trail-",
            "dot..dot",
            "192.168.1.1",
            "sp ace",
        ] {
            assert!(!creatable_name(bad), "{bad}");
        }
    }
}
