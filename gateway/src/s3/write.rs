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

/// A checksum algorithm S3 clients declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Algo {
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
pub(super) enum Expected {
    Value(String),
    Trailer(s3s::TrailingHeaders),
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct BodyError(String);

fn bad_checksum(algo: Algo) -> Error {
    Error::new(
        ErrorKind::BadDigest,
        format!(
            "The {} you specified did not match the calculated checksum.",
            algo.header()
        ),
    )
}

/// The request body as an upload stream: client-side read errors become `IncompleteBody`
/// (`ClientTimeout` when the client stopped sending),
/// and a declared checksum is verified at the end (an error there replaces the last piece,
/// which the upload checker holds back, so the origin never completes the write).
pub(super) fn body_stream(
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
                Some(Err(e)) if crate::server::is_body_timeout(&*e) => Some((
                    Err(crate::server::body_timed_out(e)),
                    (body, checksum, hasher, true),
                )),
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
pub(super) fn declared(
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

/// A write's answer with the origin's own word on how it keeps the object (its server-side
/// encryption, default or asked for), as S3 answers.
pub(super) fn with_origin_headers<T>(
    mut resp: S3Response<T>,
    kept: &[(String, String)],
) -> S3Response<T> {
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
pub(super) fn metadata(m: Option<dto::Metadata>) -> Vec<(String, String)> {
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
