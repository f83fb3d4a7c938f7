//! The `s3` origin: any S3-compatible endpoint, with SigV4-signed requests through one pooled
//! HTTP client per origin.
//!
//! Error classification (Amazon S3 API Reference, "Error responses" / "List of error codes"):
//!
//! | HTTP / S3 code                                   | internal kind        |
//! |--------------------------------------------------|----------------------|
//! | 404 `NoSuchKey`                                  | `NotFound`           |
//! | 404/405 with `x-amz-delete-marker: true`         | as by status and code, with the marker (`Error::delete_marker`) |
//! | 404 `NoSuchBucket`                               | `NoSuchBucket`       |
//! | 412 `PreconditionFailed` (we sent `If-Match`)    | `ObjectChanged`      |
//! | 400 `BadDigest`, `InvalidDigest` (uploads)       | `BadDigest`          |
//! | 403 `AccessDenied`, `SignatureDoesNotMatch`, …   | `AccessDenied`       |
//! | 400 `InvalidArgument`, `InvalidRequest`, …       | `InvalidArgument`    |
//! | 429, 503 `SlowDown`                              | `Throttled` (retry)  |
//! | 500 `InternalError`, 502, 504, connect failures  | `OriginUnavailable` (retry) |
//! | 501 `NotImplemented`                             | `NotImplemented`     |

use std::ops::Range;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use cistern_auth::sigv4;
use cistern_auth::Secret;
use cistern_cache::ObjectMeta;
use http::{HeaderMap, Method, StatusCode};
use serde::Deserialize;

use super::wire::{header, header_pairs, keep_spaces, ranged_answer, read_text, unquote, xml_code};
use super::{BucketEntry, ListCursor, ListEntry, ListPage, ListQuery, Origin, PartInfo, RangeRead};
use super::{Deleted, PassResponse, Passthrough, PutOptions, PutResult, Upload};
use crate::error::{Error, ErrorKind, Result};

/// Settings of an S3 origin.
#[derive(Debug, Clone)]
pub struct S3OriginConfig {
    /// `http://host:port` or `https://host`.
    pub endpoint: String,
    /// Signing region.
    pub region: String,
    /// Access key id; `None` sends unsigned requests.
    pub access_key_id: Option<String>,
    /// Secret access key.
    pub secret_access_key: Option<Secret>,
    /// Path-style (`endpoint/bucket/key`) rather than virtual-host addressing.
    pub path_style: bool,
}

/// An S3-compatible origin.
#[derive(Debug, Clone)]
pub struct S3Origin {
    client: reqwest::Client,
    scheme: String,
    authority: String,
    creds: Option<sigv4::Credentials>,
    path_style: bool,
}

impl S3Origin {
    /// Builds the client; fails on a malformed endpoint.
    pub fn new(cfg: &S3OriginConfig) -> std::result::Result<Self, String> {
        let uri: http::Uri = cfg
            .endpoint
            .parse()
            .map_err(|e| format!("invalid endpoint {:?}: {e}", cfg.endpoint))?;
        let scheme = uri.scheme_str().unwrap_or("https").to_string();
        if scheme != "http" && scheme != "https" {
            return Err(format!("endpoint {:?} must be http or https", cfg.endpoint));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| format!("endpoint {:?} has no host", cfg.endpoint))?;
        // Sign the Host exactly as the HTTP client sends it: lower case, default port omitted.
        let authority = match (authority.port_u16(), scheme.as_str()) {
            (Some(80), "http") | (Some(443), "https") => authority.host().to_ascii_lowercase(),
            _ => authority.as_str().to_ascii_lowercase(),
        };
        let creds = match (&cfg.access_key_id, &cfg.secret_access_key) {
            (Some(ak), Some(sk)) => Some(sigv4::Credentials {
                access_key_id: ak.clone(),
                secret_access_key: sk.clone(),
                region: cfg.region.clone(),
                service: "s3".into(),
            }),
            (None, None) => None,
            _ => return Err("access_key_id and secret_access_key must be given together".into()),
        };
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self {
            client,
            scheme,
            authority,
            creds,
            path_style: cfg.path_style,
        })
    }

    /// Builds, signs and sends one request; returns the response when its status is a success
    /// (or one of `accept`), else the classified error.
    async fn send(
        &self,
        method: Method,
        bucket: Option<&str>,
        key: Option<&str>,
        query: &[(String, String)],
        headers: &[(&str, &str)],
        accept: &[StatusCode],
    ) -> Result<reqwest::Response> {
        self.send_body(method, bucket, key, query, headers, accept, None)
            .await
    }

    /// [`Self::send`] with a streamed body, signed as `UNSIGNED-PAYLOAD` (the body is not
    /// known before it has been sent; `Content-MD5`, when given, is signed and checked by S3).
    #[allow(clippy::too_many_arguments)] // reason: send's arguments plus the body
    async fn send_body(
        &self,
        method: Method,
        bucket: Option<&str>,
        key: Option<&str>,
        query: &[(String, String)],
        headers: &[(&str, &str)],
        accept: &[StatusCode],
        body: Option<reqwest::Body>,
    ) -> Result<reqwest::Response> {
        let resp = self
            .dispatch(method.clone(), bucket, key, query, headers, body)
            .await?;
        check(resp, &method, accept).await
    }

    /// Builds, signs and sends one request; any status comes back.
    async fn dispatch(
        &self,
        method: Method,
        bucket: Option<&str>,
        key: Option<&str>,
        query: &[(String, String)],
        headers: &[(&str, &str)],
        body: Option<reqwest::Body>,
    ) -> Result<reqwest::Response> {
        let payload = if body.is_some() {
            "UNSIGNED-PAYLOAD"
        } else {
            sigv4::EMPTY_SHA256
        };
        if let Some(k) = key {
            // `.`/`..` segments would be normalized away on the wire and could reach another
            // bucket at the origin.
            if k.split('/').any(|s| s == "." || s == "..") {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    "The key cannot be served by this origin",
                ));
            }
        }
        if let (Some(b), false) = (bucket, self.path_style) {
            // The bucket becomes part of the host name: only DNS-safe names may.
            if !b
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-')
            {
                return Err(Error::new(
                    ErrorKind::NoSuchBucket,
                    "The specified bucket does not exist",
                ));
            }
        }
        let (host, mut path) = match (bucket, self.path_style) {
            (Some(b), false) => (format!("{b}.{}", self.authority), String::from("/")),
            (Some(b), true) => (
                self.authority.clone(),
                format!("/{}", sigv4::uri_encode(b, false)),
            ),
            (None, _) => (self.authority.clone(), String::from("/")),
        };
        if let Some(k) = key {
            if !path.ends_with('/') {
                path.push('/');
            }
            path.push_str(&sigv4::uri_encode(k, true));
        }
        let mut url = format!("{}://{host}{path}", self.scheme);
        if !query.is_empty() {
            url.push('?');
            let qs: Vec<String> = query
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{}={}",
                        sigv4::uri_encode(k, false),
                        sigv4::uri_encode(v, false)
                    )
                })
                .collect();
            url.push_str(&qs.join("&"));
        }
        let mut req = self.client.request(method.clone(), &url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(creds) = &self.creds {
            let sig = sigv4::sign(
                &sigv4::Request {
                    method: method.as_str(),
                    host: &host,
                    encoded_path: &path,
                    query,
                    headers,
                    payload_sha256: payload,
                    time: time::OffsetDateTime::now_utc(),
                },
                creds,
            );
            req = req
                .header("authorization", sig.authorization)
                .header("x-amz-date", sig.amz_date)
                .header("x-amz-content-sha256", payload);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        req.send().await.map_err(super::wire::send_failed)
    }
}

/// The response when its status is a success or one of `accept`, else the classified error.
async fn check(
    resp: reqwest::Response,
    method: &Method,
    accept: &[StatusCode],
) -> Result<reqwest::Response> {
    let status = resp.status();
    if status.is_success() || accept.contains(&status) {
        return Ok(resp);
    }
    let marker = delete_marker(resp.headers());
    let body = if *method == Method::HEAD {
        String::new()
    } else {
        resp.text().await.unwrap_or_default()
    };
    let e = classify(status, &body);
    Err(match marker {
        Some(m) => e.with_delete_marker(m),
        None => e,
    })
}

/// What an error answer says of a delete marker: S3 answers a read of a key whose current
/// version is a delete marker with 404 (405 for a `versionId` naming one) and
/// `x-amz-delete-marker: true`, naming the marker in `x-amz-version-id`.
fn delete_marker(h: &HeaderMap) -> Option<crate::error::DeleteMarker> {
    (header(h, "x-amz-delete-marker") == Some("true")).then(|| crate::error::DeleteMarker {
        version_id: header(h, "x-amz-version-id").map(str::to_owned),
    })
}

/// Maps an origin error response to an internal error (see the table in the module docs).
fn classify(status: StatusCode, body: &str) -> Error {
    let code = xml_code(body);
    let (kind, msg) = match (status.as_u16(), code.as_deref()) {
        (409, Some("BucketAlreadyOwnedByYou" | "BucketAlreadyExists")) => {
            (ErrorKind::BucketExists, "The bucket already exists")
        }
        (409, Some("BucketNotEmpty")) => (
            ErrorKind::BucketNotEmpty,
            "The bucket you tried to delete is not empty",
        ),
        (404, Some("NoSuchBucket")) => (
            ErrorKind::NoSuchBucket,
            "The specified bucket does not exist",
        ),
        (404, Some("NoSuchUpload")) => (
            ErrorKind::NoSuchUpload,
            "The specified upload does not exist",
        ),
        (404, _) => (ErrorKind::NotFound, "The specified key does not exist"),
        (400, Some("InvalidPart" | "InvalidPartOrder")) => (
            ErrorKind::InvalidPart,
            "One or more of the specified parts could not be found",
        ),
        (400, Some("BadDigest" | "InvalidDigest")) => (
            ErrorKind::BadDigest,
            "The Content-MD5 you specified did not match what was received",
        ),
        (412, _) => (ErrorKind::ObjectChanged, "The object changed at the origin"),
        (401 | 403, _) => (ErrorKind::AccessDenied, "The origin refused access"),
        (429, _) | (503, _) => (ErrorKind::Throttled, "The origin is throttling requests"),
        (501, _) => (
            ErrorKind::NotImplemented,
            "The origin does not implement this",
        ),
        (400..=499, _) => (
            ErrorKind::InvalidArgument,
            "The origin rejected the request",
        ),
        _ => (ErrorKind::OriginUnavailable, "The origin failed"),
    };
    Error::new(kind, msg).with_source(super::wire::OriginStatus {
        dialect: super::Dialect::S3,
        status: status.as_u16(),
        code: code.unwrap_or_default(),
    })
}

/// Reads object metadata from response headers; `size` is the object's full size.
fn meta_from_headers(h: &HeaderMap, size: u64) -> ObjectMeta {
    let opt = |n: &str| header(h, n).map(str::to_owned);
    let mut user_metadata: Vec<(String, String)> = h
        .iter()
        .filter_map(|(k, v)| {
            let name = k.as_str().strip_prefix("x-amz-meta-")?;
            Some((name.to_string(), v.to_str().ok()?.to_string()))
        })
        .collect();
    user_metadata.sort();
    ObjectMeta {
        size,
        etag: header(h, "etag").map(unquote).unwrap_or_default(),
        last_modified: header(h, "last-modified")
            .and_then(|v| httpdate::parse_http_date(v).ok())
            .unwrap_or(SystemTime::UNIX_EPOCH),
        content_type: opt("content-type"),
        content_encoding: opt("content-encoding"),
        cache_control: opt("cache-control"),
        content_disposition: opt("content-disposition"),
        content_language: opt("content-language"),
        user_metadata,
        origin_headers: ORIGIN_HEADERS
            .iter()
            .filter_map(|n| Some((n.to_string(), header(h, n)?.to_string())))
            .collect(),
        ..Default::default()
    }
}

/// Response headers describing a version that the S3 front returns as S3 sent them.
const ORIGIN_HEADERS: &[&str] = &[
    "x-amz-server-side-encryption",
    "x-amz-server-side-encryption-aws-kms-key-id",
    "x-amz-server-side-encryption-bucket-key-enabled",
    "x-amz-server-side-encryption-customer-algorithm",
    "x-amz-server-side-encryption-customer-key-md5",
    "x-amz-version-id",
    "x-amz-tagging-count",
    "x-amz-storage-class",
    "x-amz-expiration",
    "x-amz-object-lock-mode",
    "x-amz-object-lock-retain-until-date",
    "x-amz-object-lock-legal-hold",
    "x-amz-replication-status",
    "x-amz-website-redirect-location",
    "x-amz-restore",
    "expires",
];

/// What a write's answer says of how the object is kept (server-side encryption, by request
/// or by the bucket's default).
fn written_headers(h: &HeaderMap) -> Vec<(String, String)> {
    ORIGIN_HEADERS
        .iter()
        .filter(|n| n.starts_with("x-amz-server-side-encryption"))
        .filter_map(|n| Some((n.to_string(), header(h, n)?.to_string())))
        .collect()
}

/// The headers that describe an object being written.
fn object_headers(opts: &PutOptions) -> Vec<(String, String)> {
    let mut owned = Vec::new();
    for (name, v) in [
        ("content-type", &opts.content_type),
        ("content-encoding", &opts.content_encoding),
        ("content-language", &opts.content_language),
        ("cache-control", &opts.cache_control),
        ("content-disposition", &opts.content_disposition),
    ] {
        if let Some(v) = v {
            owned.push((name.to_string(), v.clone()));
        }
    }
    for (k, v) in &opts.user_metadata {
        owned.push((format!("x-amz-meta-{k}"), v.clone()));
    }
    if let Some((k, v)) = &opts.checksum {
        if let Some(algo) = k.strip_prefix("x-amz-checksum-") {
            owned.push((
                "x-amz-sdk-checksum-algorithm".to_string(),
                algo.to_ascii_uppercase(),
            ));
        }
        owned.push((k.clone(), v.clone()));
    }
    owned
}

/// The text of the first `<name>` element of a small XML answer.
fn xml_field(body: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = body.find(&open)? + open.len();
    let end = body[start..].find(&format!("</{name}>"))? + start;
    Some(body[start..end].to_string())
}

/// Reads a part's placement from a `HEAD ?partNumber=N` answer. S3 answers 206 with
/// `Content-Range` and `x-amz-mp-parts-count` (and 200 with the whole object for an object
/// uploaded in one piece, part 1). An origin that answers neither way (moto sends the part's
/// length and ETag without saying where the part lies) is not guessed at: `NotImplemented`.
fn part_from_headers(status: StatusCode, h: &HeaderMap) -> Result<PartInfo> {
    if status == StatusCode::RANGE_NOT_SATISFIABLE {
        return Err(Error::new(
            ErrorKind::InvalidPartNumber,
            "The requested partnumber is not satisfiable",
        ));
    }
    let len: Option<u64> = header(h, "content-length").and_then(|v| v.parse().ok());
    let etag = header(h, "etag").map(unquote).unwrap_or_default();
    let parts_count = header(h, "x-amz-mp-parts-count").and_then(|v| v.parse().ok());
    let unknown = || {
        Error::new(
            ErrorKind::NotImplemented,
            "The origin does not report where parts lie",
        )
    };
    match (status, header(h, "content-range")) {
        (StatusCode::PARTIAL_CONTENT, Some(cr)) => {
            let spec = cr
                .trim()
                .strip_prefix("bytes ")
                .and_then(|r| r.split_once('/'));
            let (a, b) = spec
                .and_then(|(r, _)| r.split_once('-'))
                .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)))
                .filter(|(a, b)| a <= b)
                .ok_or_else(|| {
                    Error::new(
                        ErrorKind::OriginUnavailable,
                        "The origin sent a bad Content-Range",
                    )
                })?;
            Ok(PartInfo {
                range: a..b + 1,
                parts_count,
                etag,
            })
        }
        (StatusCode::OK, None) if parts_count.is_none() && !etag.contains('-') => Ok(PartInfo {
            range: 0..len.ok_or_else(unknown)?,
            parts_count: None,
            etag,
        }),
        _ => Err(unknown()),
    }
}

fn parse_time(s: &str) -> SystemTime {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(SystemTime::from)
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

impl S3Origin {
    /// One listing page as the origin answers it.
    async fn list_raw(&self, bucket: &str, q: &ListQuery) -> Result<ListPage> {
        let mut query: Vec<(String, String)> = Vec::new();
        let mut push = |k: &str, v: Option<&str>| {
            if let Some(v) = v {
                query.push((k.to_string(), v.to_string()));
            }
        };
        let v2 = matches!(q.cursor, ListCursor::V2 { .. });
        if v2 {
            push("list-type", Some("2"));
            // The owners come along, as V1 always gives them: the front shows them when its
            // client asks (`fetch-owner`).
            push("fetch-owner", Some("true"));
        }
        push("prefix", Some(q.prefix.as_str()).filter(|p| !p.is_empty()));
        push("delimiter", q.delimiter.as_deref());
        push("max-keys", Some(&q.max_keys.to_string()));
        match &q.cursor {
            ListCursor::V1 { marker } => push("marker", marker.as_deref()),
            ListCursor::V2 {
                continuation,
                start_after,
            } => {
                push("continuation-token", continuation.as_deref());
                push("start-after", start_after.as_deref());
            }
        }
        let resp = self
            .send(Method::GET, Some(bucket), None, &query, &[], &[])
            .await?;
        let body = resp.text().await.map_err(|e| {
            Error::new(
                ErrorKind::OriginUnavailable,
                "The origin's response broke off",
            )
            .with_source(e.without_url())
        })?;
        let parsed: XmlListResult =
            quick_xml::de::from_str(&keep_spaces(&body, KEY_ELEMENTS)).map_err(bad_xml)?;
        let entries: Vec<ListEntry> = parsed
            .contents
            .into_iter()
            .map(|o| ListEntry {
                last_modified: parse_time(&o.last_modified),
                etag: unquote(&o.etag),
                key: o.key,
                size: o.size,
                owner: o.owner.and_then(XmlOwner::into_owner),
            })
            .collect();
        let common_prefixes: Vec<String> = parsed
            .common_prefixes
            .into_iter()
            .map(|p| p.prefix)
            .collect();
        let next = if !parsed.is_truncated {
            None
        } else if v2 {
            parsed.next_continuation_token
        } else {
            // Without a delimiter S3 omits NextMarker; the last key is the marker then.
            parsed.next_marker.or_else(|| {
                let last_key = entries.last().map(|e| e.key.clone());
                let last_prefix = common_prefixes.last().cloned();
                last_key.max(last_prefix)
            })
        };
        Ok(ListPage {
            entries,
            common_prefixes,
            truncated: parsed.is_truncated,
            next,
        })
    }
}

impl S3Origin {
    /// Sends a relayed request (see [`Origin::passthrough`]) with its body, if any, and its
    /// length.
    async fn relay(
        &self,
        req: &Passthrough,
        body: Option<(reqwest::Body, u64)>,
    ) -> Result<PassResponse> {
        use futures::StreamExt as _;
        if !req.key.is_empty() {
            not_staging(&req.key, ErrorKind::InvalidArgument)?;
        }
        let length = body.as_ref().map(|(_, n)| n.to_string());
        let mut headers: Vec<(&str, &str)> = req
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        if let Some(n) = &length {
            headers.push(("content-length", n));
        }
        let bucket = (!req.bucket.is_empty()).then_some(req.bucket.as_str());
        let key = (!req.key.is_empty()).then_some(req.key.as_str());
        let resp = self
            .dispatch(
                req.method.clone(),
                bucket,
                key,
                &req.query,
                &headers,
                body.map(|(b, _)| b),
            )
            .await?;
        let resp = if req.verbatim {
            resp
        } else {
            check(
                resp,
                &req.method,
                &[
                    StatusCode::NOT_MODIFIED,
                    StatusCode::PRECONDITION_FAILED,
                    StatusCode::RANGE_NOT_SATISFIABLE,
                ],
            )
            .await?
        };
        Ok(PassResponse {
            status: resp.status(),
            headers: resp.headers().clone(),
            body: resp
                .bytes_stream()
                .map(|r| r.map_err(super::wire::body_failed))
                .boxed(),
        })
    }
}

/// Elements of a listing whose text is a key, exactly: leading and trailing spaces included.
pub(super) const KEY_ELEMENTS: &[&str] =
    &["Key", "Prefix", "NextMarker", "NextKeyMarker", "Marker"];

/// Where Blob blocks bound for an S3 origin are staged, inside the blob's bucket. Cistern's
/// listings of S3 origins leave this prefix out; at the origin a lifecycle rule on it cleans
/// up blocks that were never committed.
pub const BLOCK_STAGING: &str = ".cistern-blocks/";

/// Keys in the staging area are Cistern's own: clients neither read nor write them.
fn not_staging(key: &str, kind: ErrorKind) -> Result<()> {
    if key.starts_with(BLOCK_STAGING) {
        return Err(Error::new(
            kind,
            "This key is in Cistern's block staging area",
        ));
    }
    Ok(())
}

/// One staged block as listed when a commit began.
#[derive(Debug, Clone)]
struct Staged {
    name: String,
    size: u64,
    etag: String,
}

/// The staging prefix of one blob's blocks.
fn staged_prefix(key: &str) -> String {
    use sha2::Digest as _;
    let d = sha2::Sha256::digest(key.as_bytes());
    format!("{BLOCK_STAGING}{}/", hex::encode(&d[..16]))
}

/// The staging object of one block.
fn staged_block(key: &str, block_id: &str) -> String {
    format!("{}{}", staged_prefix(key), hex::encode(block_id.as_bytes()))
}

impl S3Origin {
    /// The blob's staged blocks and their sizes (every listing page).
    async fn staged_blocks(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<std::collections::HashMap<String, (u64, String)>> {
        let mut out = std::collections::HashMap::new();
        let mut marker = None;
        loop {
            let page = self
                .list_raw(
                    bucket,
                    &ListQuery {
                        prefix: staged_prefix(key),
                        delimiter: None,
                        max_keys: 1000,
                        cursor: ListCursor::V1 { marker },
                    },
                )
                .await?;
            out.extend(page.entries.into_iter().map(|e| (e.key, (e.size, e.etag))));
            match page.next {
                Some(m) if page.truncated && out.len() < 100_000 => marker = Some(m),
                _ => return Ok(out),
            }
        }
    }

    /// UploadPartCopy of a whole object of the same bucket.
    async fn copy_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part: u32,
        source: &Staged,
    ) -> Result<String> {
        let src = format!(
            "/{}/{}",
            sigv4::uri_encode(bucket, false),
            sigv4::uri_encode(&source.name, true)
        );
        let pinned = format!("\"{}\"", source.etag);
        let resp = self
            .send(
                Method::PUT,
                Some(bucket),
                Some(key),
                &[
                    ("partNumber".to_string(), part.to_string()),
                    ("uploadId".to_string(), upload_id.to_string()),
                ],
                &[
                    ("x-amz-copy-source", src.as_str()),
                    ("x-amz-copy-source-if-match", pinned.as_str()),
                ],
                &[],
            )
            .await?;
        let body = read_text(resp).await?;
        xml_field(&body, "ETag")
            .map(|e| unquote(&e.replace("&quot;", "\"")).to_string())
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::OriginUnavailable,
                    "The origin did not return the copied part's ETag",
                )
            })
    }

    /// The staged blocks' bytes, one after the other, in ranged reads of at most 8 MiB.
    fn staged_stream(
        &self,
        bucket: &str,
        group: Vec<Staged>,
    ) -> futures::stream::BoxStream<'static, Result<Bytes>> {
        use futures::StreamExt as _;
        const STEP: u64 = 8 << 20;
        let this = self.clone();
        let bucket = bucket.to_string();
        let ranges: Vec<(Staged, std::ops::Range<u64>)> = group
            .into_iter()
            .flat_map(|b| {
                let n = b.size;
                (0..n.div_ceil(STEP)).map(move |i| (b.clone(), i * STEP..((i + 1) * STEP).min(n)))
            })
            .collect();
        futures::stream::iter(ranges)
            .then(move |(block, range)| {
                let (this, bucket) = (this.clone(), bucket.clone());
                async move {
                    let want = range.end - range.start;
                    let data = this.read_staged(&bucket, &block, range).await?;
                    if data.len() as u64 != want {
                        return Err(Error::new(
                            ErrorKind::InvalidPart,
                            "A staged block changed while it was committed",
                        ));
                    }
                    Ok(data)
                }
            })
            .boxed()
    }

    /// DeleteObject of any key (missing ones succeed).
    async fn delete_any(&self, bucket: &str, key: &str) -> Result<()> {
        match self
            .send(Method::DELETE, Some(bucket), Some(key), &[], &[], &[])
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Stores a staged block (a key of the staging area, which the trait's put refuses).
    async fn put_staged(
        &self,
        bucket: &str,
        name: &str,
        upload: Upload,
        opts: &PutOptions,
    ) -> Result<()> {
        let upload = super::upload::settled(upload, opts.content_md5.as_deref()).await?;
        let len = upload.len.to_string();
        let mut headers = vec![("content-length", len.as_str())];
        if let Some(m) = &opts.content_md5 {
            headers.push(("content-md5", m.as_str()));
        }
        self.send_body(
            Method::PUT,
            Some(bucket),
            Some(name),
            &[],
            &headers,
            &[],
            Some(reqwest::Body::wrap_stream(upload.body)),
        )
        .await?;
        Ok(())
    }

    /// A range of a staged block, of the version listed when the commit began (a block
    /// staged again meanwhile fails the commit rather than mixing bytes).
    async fn read_staged(&self, bucket: &str, block: &Staged, range: Range<u64>) -> Result<Bytes> {
        let value = format!("bytes={}-{}", range.start, range.end.saturating_sub(1));
        let pinned = format!("\"{}\"", block.etag);
        let resp = self
            .send(
                Method::GET,
                Some(bucket),
                Some(&block.name),
                &[],
                &[("range", value.as_str()), ("if-match", pinned.as_str())],
                &[],
            )
            .await?;
        resp.bytes().await.map_err(|e| {
            Error::new(
                ErrorKind::OriginUnavailable,
                "The origin's response broke off",
            )
            .with_source(e.without_url())
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct XmlTagging {
    #[serde(default)]
    tag_set: XmlTagSet,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct XmlTagSet {
    #[serde(default)]
    tag: Vec<XmlTag>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct XmlTag {
    key: String,
    #[serde(default)]
    value: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct XmlVersions {
    #[serde(default)]
    version: Vec<XmlVersion>,
    #[serde(default)]
    delete_marker: Vec<XmlDeleteMarker>,
    #[serde(default)]
    common_prefixes: Vec<XmlPrefix>,
    #[serde(default)]
    is_truncated: bool,
    next_key_marker: Option<String>,
    next_version_id_marker: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct XmlVersion {
    key: String,
    version_id: String,
    #[serde(default)]
    is_latest: bool,
    last_modified: String,
    #[serde(rename = "ETag", default)]
    etag: String,
    #[serde(default)]
    size: u64,
    owner: Option<XmlOwner>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct XmlDeleteMarker {
    key: String,
    version_id: String,
    #[serde(default)]
    is_latest: bool,
    last_modified: String,
    owner: Option<XmlOwner>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct XmlParts {
    #[serde(default)]
    part: Vec<XmlPart>,
    #[serde(default)]
    is_truncated: bool,
    next_part_number_marker: Option<String>,
    initiator: Option<XmlOwner>,
    owner: Option<XmlOwner>,
    storage_class: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct XmlPart {
    part_number: u32,
    #[serde(rename = "ETag", default)]
    etag: String,
    #[serde(default)]
    size: u64,
    last_modified: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct XmlUploads {
    #[serde(default)]
    upload: Vec<XmlUpload>,
    #[serde(default)]
    is_truncated: bool,
    next_key_marker: Option<String>,
    next_upload_id_marker: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct XmlUpload {
    key: String,
    upload_id: String,
    initiated: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct XmlListResult {
    #[serde(default)]
    contents: Vec<XmlObject>,
    #[serde(default)]
    common_prefixes: Vec<XmlPrefix>,
    #[serde(default)]
    is_truncated: bool,
    next_continuation_token: Option<String>,
    next_marker: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct XmlObject {
    key: String,
    last_modified: String,
    #[serde(rename = "ETag", default)]
    etag: String,
    size: u64,
    owner: Option<XmlOwner>,
}

/// `<Owner>` or `<Initiator>`.
#[derive(Debug, Deserialize)]
struct XmlOwner {
    #[serde(rename = "ID")]
    id: Option<String>,
    #[serde(rename = "DisplayName")]
    display_name: Option<String>,
}

impl XmlOwner {
    /// The owner, when it has an id.
    fn into_owner(self) -> Option<super::Owner> {
        Some(super::Owner {
            id: self.id.filter(|i| !i.is_empty())?,
            display_name: self.display_name,
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct XmlPrefix {
    prefix: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct XmlBuckets {
    #[serde(default)]
    buckets: XmlBucketList,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct XmlBucketList {
    #[serde(default)]
    bucket: Vec<XmlBucket>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct XmlBucket {
    name: String,
    creation_date: Option<String>,
}

fn bad_xml(e: quick_xml::DeError) -> Error {
    Error::new(
        ErrorKind::OriginUnavailable,
        "The origin sent an unreadable listing",
    )
    .with_source(e)
}

#[async_trait]
impl Origin for S3Origin {
    fn dialect(&self) -> super::Dialect {
        super::Dialect::S3
    }

    async fn list_buckets(&self) -> Result<Vec<BucketEntry>> {
        let resp = self.send(Method::GET, None, None, &[], &[], &[]).await?;
        let body = resp.text().await.map_err(|e| {
            Error::new(
                ErrorKind::OriginUnavailable,
                "The origin's response broke off",
            )
            .with_source(e.without_url())
        })?;
        let parsed: XmlBuckets = quick_xml::de::from_str(&body).map_err(bad_xml)?;
        Ok(parsed
            .buckets
            .bucket
            .into_iter()
            .map(|b| BucketEntry {
                name: b.name,
                created: b.creation_date.as_deref().map(parse_time),
                listing: None,
            })
            .collect())
    }

    async fn bucket_exists(&self, bucket: &str) -> Result<bool> {
        match self
            .send(Method::HEAD, Some(bucket), None, &[], &[], &[])
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NoSuchBucket) => {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    async fn head(&self, bucket: &str, key: &str) -> Result<ObjectMeta> {
        not_staging(key, ErrorKind::NotFound)?;
        let resp = self
            .send(Method::HEAD, Some(bucket), Some(key), &[], &[], &[])
            .await?;
        let size = header(resp.headers(), "content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Ok(meta_from_headers(resp.headers(), size))
    }

    async fn read(
        &self,
        bucket: &str,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> Result<RangeRead> {
        not_staging(key, ErrorKind::NotFound)?;
        if range.is_empty() {
            let meta = self.head(bucket, key).await?;
            return Ok(RangeRead {
                meta,
                data: Bytes::new(),
            });
        }
        let range_h = format!("bytes={}-{}", range.start, range.end - 1);
        let quoted = if_match.map(|e| format!("\"{e}\""));
        let mut headers = vec![("range", range_h.as_str())];
        if let Some(q) = &quoted {
            headers.push(("if-match", q.as_str()));
        }
        let resp = self
            .send(
                Method::GET,
                Some(bucket),
                Some(key),
                &[],
                &headers,
                &[StatusCode::RANGE_NOT_SATISFIABLE],
            )
            .await?;
        match resp.status() {
            StatusCode::RANGE_NOT_SATISFIABLE => {
                // The range starts past the end (or the object is empty): the caller still
                // needs the metadata.
                let meta = self.head(bucket, key).await?;
                if if_match.is_some_and(|m| m != meta.etag) {
                    return Err(Error::new(
                        ErrorKind::ObjectChanged,
                        "The object changed at the origin",
                    ));
                }
                Ok(RangeRead {
                    meta,
                    data: Bytes::new(),
                })
            }
            _ => ranged_answer(resp, range, if_match, meta_from_headers).await,
        }
    }

    /// PutObject in one request (S3 takes up to 5 GiB so), `UNSIGNED-PAYLOAD` with the client's
    /// `Content-MD5` forwarded so that S3 refuses a mismatching body without storing it.
    async fn put(
        &self,
        bucket: &str,
        key: &str,
        upload: Upload,
        opts: &PutOptions,
    ) -> Result<PutResult> {
        not_staging(key, ErrorKind::InvalidArgument)?;
        let upload = super::upload::settled(upload, opts.content_md5.as_deref()).await?;
        let mut owned = object_headers(opts);
        owned.push(("content-length".into(), upload.len.to_string()));
        if let Some(m) = &opts.content_md5 {
            owned.push(("content-md5".into(), m.clone()));
        }
        if opts.create_only {
            // S3's conditional write: 412 when the key exists.
            owned.push(("if-none-match".into(), "*".into()));
        }
        let headers = header_pairs(&owned);
        let resp = self
            .send_body(
                Method::PUT,
                Some(bucket),
                Some(key),
                &[],
                &headers,
                &[],
                Some(reqwest::Body::wrap_stream(upload.body)),
            )
            .await
            .map_err(|e| match e.kind() {
                ErrorKind::ObjectChanged if opts.create_only => Error::new(
                    ErrorKind::PreconditionFailed,
                    "An object already has this key",
                ),
                _ => e,
            })?;
        let h = resp.headers();
        Ok(PutResult {
            etag: header(h, "etag").map(unquote).unwrap_or_default(),
            last_modified: header(h, "last-modified")
                .and_then(|v| httpdate::parse_http_date(v).ok()),
            version_id: header(h, "x-amz-version-id").map(str::to_string),
            origin_headers: written_headers(h),
        })
    }

    /// Blob blocks onto S3: each block is staged as an object of the same bucket under
    /// [`BLOCK_STAGING`] (by a digest of the blob's key and the block id).
    async fn put_block(
        &self,
        bucket: &str,
        key: &str,
        block_id: &str,
        upload: Upload,
        content_md5: Option<&str>,
    ) -> Result<()> {
        let opts = PutOptions {
            content_md5: content_md5.map(str::to_string),
            ..PutOptions::default()
        };
        not_staging(key, ErrorKind::InvalidArgument)?;
        self.put_staged(bucket, &staged_block(key, block_id), upload, &opts)
            .await
    }

    /// Put Block List onto S3: the listed blocks become one multipart upload. Consecutive
    /// blocks are grouped into parts of at least 5 MiB (S3's minimum for every part but the
    /// last); a part that is one staged block is copied at the origin (UploadPartCopy), others
    /// are streamed through in ranged reads of at most 8 MiB. Afterwards every staged block of
    /// the blob is removed (Azure discards uncommitted blocks on commit); on failure the
    /// upload is aborted and the staged blocks stay for a retry.
    async fn commit_blocks(
        &self,
        bucket: &str,
        key: &str,
        blocks: &[super::BlockRef],
        opts: &PutOptions,
    ) -> Result<PutResult> {
        const MAX_PART: u64 = 5 << 30;
        const MAX_PARTS: u64 = 10_000;
        let invalid = |why: &'static str| Error::new(ErrorKind::InvalidPart, why);
        let staged = self.staged_blocks(bucket, key).await?;
        let mut resolved = Vec::with_capacity(blocks.len());
        for b in blocks {
            let id = match b {
                super::BlockRef::Latest(id) | super::BlockRef::Uncommitted(id) => id,
                super::BlockRef::Committed(_) => {
                    return Err(invalid("An S3 origin keeps no committed blocks"))
                }
            };
            let name = staged_block(key, id);
            let (size, etag) = staged
                .get(&name)
                .cloned()
                .ok_or_else(|| invalid("A listed block was not staged"))?;
            resolved.push(Staged { name, size, etag });
        }
        // Parts of at least 5 MiB (S3's minimum), and large enough that 10 000 suffice.
        let total: u64 = resolved.iter().map(|b| b.size).sum();
        let min_part = (5u64 << 20).max(total.div_ceil(MAX_PARTS));
        let mut groups: Vec<Vec<Staged>> = Vec::new();
        let mut size = 0u64;
        for block in resolved {
            let n = block.size;
            let full = groups
                .last()
                .is_none_or(|_| size >= min_part || size + n > MAX_PART);
            if full {
                groups.push(Vec::new());
                size = 0;
            }
            size += n;
            if let Some(g) = groups.last_mut() {
                g.push(block);
            }
        }
        if groups.len() as u64 > MAX_PARTS {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "The block list makes more than 10 000 parts of at most 5 GiB",
            ));
        }
        let upload_id = self.start_parts(bucket, key, opts).await?;
        let assembled: Result<PutResult> = async {
            let mut etags = Vec::with_capacity(groups.len());
            if groups.is_empty() {
                // An empty block list makes an empty object: one empty part.
                groups.push(Vec::new());
            }
            for (i, group) in groups.iter().enumerate() {
                let part = i as u32 + 1;
                let etag = match group.as_slice() {
                    [block] if block.size >= (5 << 20) => {
                        self.copy_part(bucket, key, &upload_id, part, block).await?
                    }
                    _ => {
                        let len = group.iter().map(|b| b.size).sum();
                        let body = self.staged_stream(bucket, group.clone());
                        self.put_part(bucket, key, &upload_id, part, Upload { body, len }, None)
                            .await?
                    }
                };
                etags.push((part, etag));
            }
            self.complete_parts(bucket, key, &upload_id, &etags).await
        }
        .await;
        match assembled {
            Ok(put) => {
                for name in staged.keys() {
                    if let Err(e) = self.delete_any(bucket, name).await {
                        tracing::warn!(error = %e, "cannot remove a staged block");
                    }
                }
                Ok(put)
            }
            Err(e) => {
                let _ = self.abort_parts(bucket, key, &upload_id).await;
                Err(e)
            }
        }
    }

    /// GetObjectTagging, passed through.
    async fn get_tags(&self, bucket: &str, key: &str) -> Result<Vec<(String, String)>> {
        let query = [("tagging".to_string(), String::new())];
        let resp = self
            .send(Method::GET, Some(bucket), Some(key), &query, &[], &[])
            .await?;
        let body = read_text(resp).await?;
        let parsed: XmlTagging = quick_xml::de::from_str(&body).map_err(bad_xml)?;
        Ok(parsed
            .tag_set
            .tag
            .into_iter()
            .map(|t| (t.key, t.value))
            .collect())
    }

    /// PutObjectTagging, passed through (with the Content-MD5 S3 requires).
    async fn put_tags(&self, bucket: &str, key: &str, tags: &[(String, String)]) -> Result<()> {
        use base64::Engine as _;
        use md5::Digest as _;
        let mut xml = String::from("<Tagging><TagSet>");
        for (k, v) in tags {
            xml.push_str(&format!(
                "<Tag><Key>{}</Key><Value>{}</Value></Tag>",
                quick_xml::escape::escape(k.as_str()),
                quick_xml::escape::escape(v.as_str())
            ));
        }
        xml.push_str("</TagSet></Tagging>");
        let md5 =
            base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(xml.as_bytes()));
        let len = xml.len().to_string();
        let query = [("tagging".to_string(), String::new())];
        self.send_body(
            Method::PUT,
            Some(bucket),
            Some(key),
            &query,
            &[
                ("content-md5", md5.as_str()),
                ("content-length", len.as_str()),
            ],
            &[],
            Some(reqwest::Body::from(xml)),
        )
        .await?;
        Ok(())
    }

    /// DeleteObjectTagging, passed through.
    async fn delete_tags(&self, bucket: &str, key: &str) -> Result<()> {
        let query = [("tagging".to_string(), String::new())];
        self.send(Method::DELETE, Some(bucket), Some(key), &query, &[], &[])
            .await?;
        Ok(())
    }

    /// ListObjectVersions, one page passed through.
    async fn list_versions(
        &self,
        bucket: &str,
        q: &super::VersionQuery,
    ) -> Result<super::VersionPage> {
        let mut query = vec![
            ("versions".to_string(), String::new()),
            ("prefix".to_string(), q.prefix.clone()),
            ("max-keys".to_string(), q.max_keys.to_string()),
        ];
        if let Some(d) = &q.delimiter {
            query.push(("delimiter".into(), d.clone()));
        }
        if let Some(m) = &q.key_marker {
            query.push(("key-marker".into(), m.clone()));
        }
        if let Some(m) = &q.version_id_marker {
            query.push(("version-id-marker".into(), m.clone()));
        }
        let resp = self
            .send(Method::GET, Some(bucket), None, &query, &[], &[])
            .await?;
        let body = read_text(resp).await?;
        let page: XmlVersions =
            quick_xml::de::from_str(&keep_spaces(&body, KEY_ELEMENTS)).map_err(bad_xml)?;
        let mut entries: Vec<super::VersionEntry> = page
            .version
            .into_iter()
            .map(|v| super::VersionEntry {
                key: v.key,
                version_id: v.version_id,
                is_latest: v.is_latest,
                last_modified: Some(parse_time(&v.last_modified)),
                etag: Some(unquote(&v.etag).to_string()),
                size: Some(v.size),
                delete_marker: false,
                owner: v.owner.and_then(XmlOwner::into_owner),
            })
            .collect();
        entries.extend(page.delete_marker.into_iter().map(|d| super::VersionEntry {
            key: d.key,
            version_id: d.version_id,
            is_latest: d.is_latest,
            last_modified: Some(parse_time(&d.last_modified)),
            etag: None,
            size: None,
            delete_marker: true,
            owner: d.owner.and_then(XmlOwner::into_owner),
        }));
        entries.retain(|e| !e.key.starts_with(BLOCK_STAGING));
        Ok(super::VersionPage {
            entries,
            prefixes: page
                .common_prefixes
                .into_iter()
                .map(|p| p.prefix)
                .filter(|p| !p.starts_with(BLOCK_STAGING))
                .collect(),
            truncated: page.is_truncated,
            next_key_marker: page.next_key_marker,
            next_version_id_marker: page.next_version_id_marker,
        })
    }

    /// ListParts, passed through (every page).
    async fn list_parts(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<super::PartListing> {
        let mut out = super::PartListing::default();
        let mut marker: Option<String> = None;
        loop {
            let mut query = vec![("uploadId".to_string(), upload_id.to_string())];
            if let Some(m) = &marker {
                query.push(("part-number-marker".into(), m.clone()));
            }
            let resp = self
                .send(Method::GET, Some(bucket), Some(key), &query, &[], &[])
                .await?;
            let body = read_text(resp).await?;
            let page: XmlParts = quick_xml::de::from_str(&body).map_err(bad_xml)?;
            out.parts
                .extend(page.part.into_iter().map(|p| super::PartEntry {
                    number: p.part_number,
                    etag: unquote(&p.etag).to_string(),
                    size: p.size,
                    last_modified: p.last_modified.as_deref().map(parse_time),
                }));
            out.initiator = out
                .initiator
                .or_else(|| page.initiator.and_then(XmlOwner::into_owner));
            out.owner = out
                .owner
                .or_else(|| page.owner.and_then(XmlOwner::into_owner));
            out.storage_class = out
                .storage_class
                .or(page.storage_class.filter(|c| !c.is_empty()));
            match page.next_part_number_marker {
                Some(m) if page.is_truncated && out.parts.len() < 10_000 => marker = Some(m),
                _ => return Ok(out),
            }
        }
    }

    /// ListMultipartUploads, passed through (every page, at most 100 000 uploads).
    async fn list_uploads(&self, bucket: &str, prefix: &str) -> Result<Vec<super::UploadEntry>> {
        let mut out = Vec::new();
        let mut markers: Option<(String, String)> = None;
        loop {
            let mut query = vec![
                ("uploads".to_string(), String::new()),
                ("prefix".to_string(), prefix.to_string()),
            ];
            if let Some((k, u)) = &markers {
                query.push(("key-marker".into(), k.clone()));
                query.push(("upload-id-marker".into(), u.clone()));
            }
            let resp = self
                .send(Method::GET, Some(bucket), None, &query, &[], &[])
                .await?;
            let body = read_text(resp).await?;
            let page: XmlUploads =
                quick_xml::de::from_str(&keep_spaces(&body, KEY_ELEMENTS)).map_err(bad_xml)?;
            out.extend(page.upload.into_iter().map(|u| super::UploadEntry {
                key: u.key,
                upload_id: u.upload_id,
                initiated: u.initiated.as_deref().map(parse_time),
            }));
            match (page.next_key_marker, page.next_upload_id_marker) {
                (Some(k), Some(u)) if page.is_truncated && out.len() < 100_000 => {
                    markers = Some((k, u));
                }
                _ => return Ok(out),
            }
        }
    }

    /// S3 has no property update: the object is copied onto itself with
    /// `x-amz-metadata-directive: REPLACE`, only if it is still version `etag`.
    async fn set_properties(
        &self,
        bucket: &str,
        key: &str,
        etag: &str,
        opts: &PutOptions,
        _which: super::PropertyKind,
    ) -> Result<PutResult> {
        let mut owned = object_headers(opts);
        owned.push((
            "x-amz-copy-source".into(),
            format!(
                "/{}/{}",
                sigv4::uri_encode(bucket, false),
                sigv4::uri_encode(key, true)
            ),
        ));
        owned.push(("x-amz-metadata-directive".into(), "REPLACE".into()));
        owned.push(("x-amz-copy-source-if-match".into(), format!("\"{etag}\"")));
        let headers = header_pairs(&owned);
        let resp = self
            .send(Method::PUT, Some(bucket), Some(key), &[], &headers, &[])
            .await?;
        let body = read_text(resp).await?;
        // A copy can fail after its 200 (an <Error> body): no ETag means no copy.
        let etag = xml_field(&body, "ETag")
            .map(|e| unquote(&e.replace("&quot;", "\"")).to_string())
            .filter(|e| !e.is_empty() && !body.contains("<Error>"))
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::OriginUnavailable,
                    "The origin did not complete the property update",
                )
            })?;
        let last_modified = xml_field(&body, "LastModified").and_then(|t| {
            time::OffsetDateTime::parse(&t, &time::format_description::well_known::Rfc3339)
                .ok()
                .map(SystemTime::from)
        });
        Ok(PutResult {
            etag,
            last_modified,
            version_id: None,
            origin_headers: Vec::new(),
        })
    }

    /// S3's own multipart upload, passed through: the upload id and part ETags are S3's.
    async fn start_parts(&self, bucket: &str, key: &str, opts: &PutOptions) -> Result<String> {
        not_staging(key, ErrorKind::InvalidArgument)?;
        let owned = object_headers(opts);
        let headers = header_pairs(&owned);
        let resp = self
            .send(
                Method::POST,
                Some(bucket),
                Some(key),
                &[("uploads".to_string(), String::new())],
                &headers,
                &[],
            )
            .await?;
        let body = read_text(resp).await?;
        xml_field(&body, "UploadId").ok_or_else(|| {
            Error::new(
                ErrorKind::OriginUnavailable,
                "The origin did not return an upload id",
            )
        })
    }

    async fn put_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part: u32,
        upload: Upload,
        content_md5: Option<&str>,
    ) -> Result<String> {
        let upload = super::upload::settled(upload, content_md5).await?;
        let len = upload.len.to_string();
        let mut headers = vec![("content-length", len.as_str())];
        if let Some(m) = content_md5 {
            headers.push(("content-md5", m));
        }
        let resp = self
            .send_body(
                Method::PUT,
                Some(bucket),
                Some(key),
                &[
                    ("partNumber".to_string(), part.to_string()),
                    ("uploadId".to_string(), upload_id.to_string()),
                ],
                &headers,
                &[],
                Some(reqwest::Body::wrap_stream(upload.body)),
            )
            .await?;
        Ok(header(resp.headers(), "etag")
            .map(unquote)
            .unwrap_or_default())
    }

    async fn complete_parts(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: &[(u32, String)],
    ) -> Result<PutResult> {
        let mut xml = String::from("<CompleteMultipartUpload>");
        for (n, etag) in parts {
            xml.push_str(&format!(
                "<Part><PartNumber>{n}</PartNumber><ETag>\"{}\"</ETag></Part>",
                etag.trim_matches('"')
                    .replace('&', "&amp;")
                    .replace('<', "&lt;")
            ));
        }
        xml.push_str("</CompleteMultipartUpload>");
        let len = xml.len().to_string();
        let resp = self
            .send_body(
                Method::POST,
                Some(bucket),
                Some(key),
                &[("uploadId".to_string(), upload_id.to_string())],
                &[("content-length", len.as_str())],
                &[],
                Some(reqwest::Body::from(xml)),
            )
            .await?;
        let version_id = header(resp.headers(), "x-amz-version-id").map(str::to_string);
        let kept = written_headers(resp.headers());
        let body = read_text(resp).await?;
        // S3 may answer 200 and report a failure in the body.
        if body.contains("<Error>") {
            return Err(classify(StatusCode::BAD_REQUEST, &body));
        }
        Ok(PutResult {
            etag: xml_field(&body, "ETag")
                .map(|e| unquote(&e.replace("&quot;", "\"")))
                .unwrap_or_default(),
            last_modified: None,
            version_id,
            origin_headers: kept,
        })
    }

    async fn abort_parts(&self, bucket: &str, key: &str, upload_id: &str) -> Result<()> {
        self.send(
            Method::DELETE,
            Some(bucket),
            Some(key),
            &[("uploadId".to_string(), upload_id.to_string())],
            &[],
            &[],
        )
        .await?;
        Ok(())
    }

    async fn create_bucket(&self, bucket: &str) -> Result<()> {
        self.send(Method::PUT, Some(bucket), None, &[], &[], &[])
            .await
            .map(|_| ())
    }

    async fn delete_bucket(&self, bucket: &str) -> Result<()> {
        self.send(Method::DELETE, Some(bucket), None, &[], &[], &[])
            .await
            .map(|_| ())
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<()> {
        not_staging(key, ErrorKind::InvalidArgument)?;
        self.delete_any(bucket, key).await
    }

    /// DELETE with `versionId` and `If-Match` as S3 takes them; a missing key or version is
    /// deleted already (S3 answers 204 too).
    async fn delete_version(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
        if_match: Option<&str>,
    ) -> Result<Deleted> {
        not_staging(key, ErrorKind::InvalidArgument)?;
        let query: Vec<(String, String)> = version
            .map(|v| ("versionId".to_string(), v.to_string()))
            .into_iter()
            .collect();
        let headers: Vec<(&str, &str)> = if_match.map(|m| ("if-match", m)).into_iter().collect();
        let resp = match self
            .send(
                Method::DELETE,
                Some(bucket),
                Some(key),
                &query,
                &headers,
                &[],
            )
            .await
        {
            Ok(r) => r,
            Err(e) if e.kind() == ErrorKind::NotFound && if_match.is_none() => {
                return Ok(Deleted::default())
            }
            Err(e) if e.kind() == ErrorKind::ObjectChanged => {
                // Here the 412 answers the caller's own condition.
                return Err(Error::new(
                    ErrorKind::PreconditionFailed,
                    "At least one of the pre-conditions you specified did not hold",
                ));
            }
            Err(e) => return Err(e),
        };
        let h = resp.headers();
        Ok(Deleted {
            version_id: header(h, "x-amz-version-id").map(str::to_string),
            delete_marker: header(h, "x-amz-delete-marker") == Some("true"),
        })
    }

    /// Signs with the origin's credentials and relays the answer; verbatim requests come back
    /// with any status (the S3 front relays the origin's own error document).
    async fn passthrough(&self, req: &Passthrough) -> Result<PassResponse> {
        // A length is sent for an empty body too (hyper sends none; S3 wants one on PUT).
        let has_body = !req.body.is_empty() || matches!(req.method, Method::PUT | Method::POST);
        let body = has_body.then(|| (reqwest::Body::from(req.body.clone()), req.body.len() as u64));
        self.relay(req, body).await
    }

    async fn passthrough_upload(&self, req: &Passthrough, upload: Upload) -> Result<PassResponse> {
        let body = reqwest::Body::wrap_stream(upload.body);
        self.relay(req, Some((body, upload.len))).await
    }

    async fn part(&self, bucket: &str, key: &str, part: u32) -> Result<PartInfo> {
        let query = [("partNumber".to_string(), part.to_string())];
        let resp = self
            .send(
                Method::HEAD,
                Some(bucket),
                Some(key),
                &query,
                &[],
                &[StatusCode::RANGE_NOT_SATISFIABLE],
            )
            .await?;
        part_from_headers(resp.status(), resp.headers())
    }

    /// A listing without Cistern's block staging area (see [`BLOCK_STAGING`]).
    async fn list(&self, bucket: &str, q: &ListQuery) -> Result<ListPage> {
        let mut page = self.list_raw(bucket, q).await?;
        page.entries.retain(|e| !e.key.starts_with(BLOCK_STAGING));
        page.common_prefixes
            .retain(|p| !p.starts_with(BLOCK_STAGING));
        Ok(page)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::origin::wire::total_from_content_range;

    #[test]
    fn classifies_origin_errors() {
        let body = "<Error><Code>NoSuchBucket</Code></Error>";
        assert_eq!(
            classify(StatusCode::NOT_FOUND, body).kind(),
            ErrorKind::NoSuchBucket
        );
        assert_eq!(
            classify(StatusCode::NOT_FOUND, "").kind(),
            ErrorKind::NotFound
        );
        assert_eq!(
            classify(StatusCode::PRECONDITION_FAILED, "").kind(),
            ErrorKind::ObjectChanged
        );
        assert_eq!(
            classify(StatusCode::SERVICE_UNAVAILABLE, "").kind(),
            ErrorKind::Throttled
        );
        assert!(classify(StatusCode::INTERNAL_SERVER_ERROR, "").is_retryable());
        assert!(!classify(StatusCode::FORBIDDEN, "").is_retryable());
    }

    #[test]
    fn reads_part_placement_as_s3_sends_it() {
        let mut h = HeaderMap::new();
        h.insert("content-length", "8388608".parse().expect("hv"));
        h.insert(
            "content-range",
            "bytes 8388608-16777215/41943040".parse().expect("hv"),
        );
        h.insert("x-amz-mp-parts-count", "5".parse().expect("hv"));
        h.insert("etag", "\"abc-5\"".parse().expect("hv"));
        let p = part_from_headers(StatusCode::PARTIAL_CONTENT, &h).expect("part");
        assert_eq!(
            p,
            PartInfo {
                range: 8_388_608..16_777_216,
                parts_count: Some(5),
                etag: "abc-5".into()
            }
        );

        let mut single = HeaderMap::new();
        single.insert("content-length", "12".parse().expect("hv"));
        single.insert("etag", "\"d41d\"".parse().expect("hv"));
        assert_eq!(
            part_from_headers(StatusCode::OK, &single)
                .expect("single")
                .range,
            0..12
        );

        // moto: 200 with the part's length and the part's ETag, no range: never guessed.
        let mut moto = HeaderMap::new();
        moto.insert("content-length", "8388608".parse().expect("hv"));
        moto.insert("etag", "\"b3e0-5\"".parse().expect("hv"));
        assert_eq!(
            part_from_headers(StatusCode::OK, &moto)
                .expect_err("unknown")
                .kind(),
            ErrorKind::NotImplemented
        );
        assert_eq!(
            part_from_headers(StatusCode::RANGE_NOT_SATISFIABLE, &HeaderMap::new())
                .expect_err("416")
                .kind(),
            ErrorKind::InvalidPartNumber
        );
    }

    #[test]
    fn parses_listings() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix></Prefix>
<KeyCount>2</KeyCount><MaxKeys>2</MaxKeys><IsTruncated>true</IsTruncated>
<Contents><Key>a &amp; b</Key><LastModified>2026-01-02T03:04:05.000Z</LastModified><ETag>&quot;abc&quot;</ETag><Size>3</Size><StorageClass>STANDARD</StorageClass></Contents>
<CommonPrefixes><Prefix>d/</Prefix></CommonPrefixes>
<NextContinuationToken>tok</NextContinuationToken></ListBucketResult>"#;
        let parsed: XmlListResult = quick_xml::de::from_str(xml).expect("parse");
        assert_eq!(parsed.contents[0].key, "a & b");
        assert_eq!(unquote(&parsed.contents[0].etag), "abc");
        assert_eq!(parsed.common_prefixes[0].prefix, "d/");
        assert!(parsed.is_truncated);
        assert_eq!(parsed.next_continuation_token.as_deref(), Some("tok"));
        assert_eq!(total_from_content_range("bytes 0-9/1234"), Some(1234));
    }

    #[test]
    fn listings_and_part_lists_carry_the_origins_owners() {
        // As moto 5.2 and S3 answer (V1, and V2 with fetch-owner=true).
        let xml = r#"<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><IsTruncated>false</IsTruncated>
<Contents><Key>k</Key><LastModified>2026-12-07T02:48:40.000Z</LastModified><ETag>"e"</ETag><ChecksumAlgorithm>CRC32</ChecksumAlgorithm><Size>1</Size><StorageClass>STANDARD</StorageClass><Owner><DisplayName>webfile</DisplayName><ID>75aa57f0</ID></Owner></Contents>
<Contents><Key>l</Key><LastModified>2026-12-07T02:48:40.000Z</LastModified><ETag>"e"</ETag><Size>1</Size><Owner><ID>only-id</ID></Owner></Contents>
<Contents><Key>m</Key><LastModified>2026-12-07T02:48:40.000Z</LastModified><ETag>"e"</ETag><Size>1</Size></Contents>
<Name>b</Name></ListBucketResult>"#;
        let parsed: XmlListResult = quick_xml::de::from_str(xml).expect("parse");
        let owners: Vec<_> = parsed
            .contents
            .into_iter()
            .map(|o| o.owner.and_then(XmlOwner::into_owner))
            .collect();
        assert_eq!(
            owners,
            [
                Some(super::super::Owner {
                    id: "75aa57f0".into(),
                    display_name: Some("webfile".into())
                }),
                Some(super::super::Owner {
                    id: "only-id".into(),
                    display_name: None
                }),
                None,
            ]
        );
        let parts = r#"<ListPartsResponse xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Bucket>b</Bucket><Key>mp</Key><UploadId>u</UploadId><PartNumberMarker>0</PartNumberMarker><NextPartNumberMarker>1</NextPartNumberMarker><MaxParts>1000</MaxParts><IsTruncated>false</IsTruncated><Part><PartNumber>1</PartNumber><LastModified>2026-12-07T02:48:40.000Z</LastModified><ETag>"0bbc"</ETag><Size>10</Size></Part><Initiator><ID>init-id</ID><DisplayName>webfile</DisplayName></Initiator><Owner><DisplayName>webfile</DisplayName><ID>owner-id</ID></Owner><StorageClass>STANDARD_IA</StorageClass></ListPartsResponse>"#;
        let page: XmlParts = quick_xml::de::from_str(parts).expect("parse");
        assert_eq!(page.part.len(), 1);
        assert_eq!(
            page.initiator.and_then(XmlOwner::into_owner).map(|o| o.id),
            Some("init-id".into())
        );
        assert_eq!(
            page.owner.and_then(XmlOwner::into_owner).map(|o| o.id),
            Some("owner-id".into())
        );
        assert_eq!(page.storage_class.as_deref(), Some("STANDARD_IA"));
    }

    #[test]
    fn delete_markers_are_read_from_error_answers() {
        let mut h = HeaderMap::new();
        assert_eq!(delete_marker(&h), None);
        h.insert("x-amz-version-id", "v1".parse().expect("hv"));
        assert_eq!(delete_marker(&h), None, "a version id alone is no marker");
        h.insert("x-amz-delete-marker", "true".parse().expect("hv"));
        assert_eq!(
            delete_marker(&h),
            Some(crate::error::DeleteMarker {
                version_id: Some("v1".into())
            })
        );
        h.insert("x-amz-delete-marker", "false".parse().expect("hv"));
        assert_eq!(delete_marker(&h), None);
    }

    #[tokio::test]
    async fn an_error_answer_for_a_delete_marker_keeps_it() {
        let resp = |marker: bool| {
            let mut b = http::Response::builder().status(404);
            if marker {
                b = b
                    .header("x-amz-delete-marker", "true")
                    .header("x-amz-version-id", "m-1");
            }
            reqwest::Response::from(b.body(String::new()).expect("response"))
        };
        let e = check(resp(true), &Method::HEAD, &[])
            .await
            .expect_err("404");
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert_eq!(
            e.delete_marker().and_then(|m| m.version_id.as_deref()),
            Some("m-1")
        );
        let e = check(resp(false), &Method::GET, &[])
            .await
            .expect_err("404");
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(e.delete_marker().is_none());
    }

    #[test]
    fn keys_keep_their_leading_and_trailing_spaces() {
        let xml =
            "<ListBucketResult><IsTruncated>false</IsTruncated>\n<Contents><Key> a b \t</Key>\
<LastModified>2026-01-02T03:04:05.000Z</LastModified><ETag>e</ETag><Size>1</Size></Contents>\
<Contents><Key>nl\nx&amp;</Key><LastModified>2026-01-02T03:04:05.000Z</LastModified>\
<ETag>e</ETag><Size>1</Size></Contents><CommonPrefixes><Prefix>p /</Prefix></CommonPrefixes>\
<NextMarker>m </NextMarker></ListBucketResult>";
        let parsed: XmlListResult =
            quick_xml::de::from_str(&keep_spaces(xml, KEY_ELEMENTS)).expect("parse");
        assert_eq!(parsed.contents[0].key, " a b \t");
        assert_eq!(parsed.contents[1].key, "nl\nx&");
        assert_eq!(parsed.common_prefixes[0].prefix, "p /");
        assert_eq!(parsed.next_marker.as_deref(), Some("m "));
    }
}
