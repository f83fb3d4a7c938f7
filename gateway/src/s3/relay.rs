//! Same-dialect relay: S3 requests Cistern keeps no model of — bucket configuration (policy,
//! ACLs, versioning, object lock, CORS, …), object ACLs, retention and legal holds, reads of a
//! given `versionId`, and writes whose headers ask the origin for something the pipeline does not
//! carry (server-side encryption, object lock, canned ACLs) — go to the bucket's S3 origin as
//! they are and its answer comes back as it is, errors included.
//!
//! s3s has verified the signature (and decoded any `aws-chunked` body) before the route sees the
//! request; the route authorizes it against Cistern's policy like every other operation, then the
//! origin signs the relayed request with its own credentials. Reads here bypass the cache, so a
//! read of version N never meets version M's bytes; anything but a read forgets the object's
//! cached metadata once the origin has answered.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use cistern_auth::policy::Permission;
use futures::stream::BoxStream;
use futures::StreamExt as _;
use http::{HeaderMap, Method, Uri};
use s3s::route::S3Route;
use s3s::{s3_error, Body, S3Request, S3Response, S3Result};

use super::auth::{Access, OpSlot};
use super::error::to_s3;
use super::host::Hosts;
use crate::origin::{Dialect, Passthrough};
use crate::pipeline::{BucketBinding, Pipeline, CACHE_HEADER};

/// Bucket subresources relayed (every method: Get/Put/Delete of the configuration).
const BUCKET_CONFIG: &[&str] = &[
    "accelerate",
    "acl",
    "analytics",
    "cors",
    "encryption",
    "intelligent-tiering",
    "inventory",
    "lifecycle",
    "logging",
    "metrics",
    "notification",
    "object-lock",
    "ownershipControls",
    "policy",
    "policyStatus",
    "publicAccessBlock",
    "replication",
    "requestPayment",
    "tagging",
    "versioning",
    "website",
];

/// Object subresources relayed.
const OBJECT_CONFIG: &[&str] = &[
    "acl",
    "attributes",
    "legal-hold",
    "restore",
    "retention",
    "select",
];

/// Request headers that make the origin keep an object differently from what the pipeline's
/// writes express: a PutObject or CreateMultipartUpload carrying one is relayed whole.
const ORIGIN_WRITE_HEADERS: &[&str] = &[
    "x-amz-server-side-encryption",
    "x-amz-server-side-encryption-aws-kms-key-id",
    "x-amz-server-side-encryption-context",
    "x-amz-server-side-encryption-bucket-key-enabled",
    "x-amz-server-side-encryption-customer-algorithm",
    "x-amz-object-lock-mode",
    "x-amz-object-lock-retain-until-date",
    "x-amz-object-lock-legal-hold",
    "x-amz-acl",
    "x-amz-grant-full-control",
    "x-amz-grant-read",
    "x-amz-grant-read-acp",
    "x-amz-grant-write-acp",
    "x-amz-storage-class",
    "x-amz-website-redirect-location",
];

/// Request headers of writes that an S3 origin keeps and other origins cannot: over an S3
/// origin such a PutObject or CreateMultipartUpload is relayed (elsewhere the pipeline's
/// write ignores them).
const S3_ORIGIN_WRITE_HEADERS: &[&str] = &[
    "x-amz-tagging",
    "expires",
    "if-match",
    "x-amz-checksum-algorithm",
    "x-amz-write-offset-bytes",
];

/// Headers that hand the origin rights over an object (ACLs, locks): they need `admin`.
const ADMIN_WRITE_HEADERS: &[&str] = &[
    "x-amz-object-lock-mode",
    "x-amz-object-lock-retain-until-date",
    "x-amz-object-lock-legal-hold",
    "x-amz-acl",
    "x-amz-grant-full-control",
    "x-amz-grant-read",
    "x-amz-grant-read-acp",
    "x-amz-grant-write-acp",
];

/// Request headers never forwarded: the origin signs anew, and the rest describe this hop.
const DROP_REQUEST: &[&str] = &[
    "authorization",
    "host",
    "x-amz-date",
    "x-amz-content-sha256",
    "x-amz-security-token",
    "x-amz-decoded-content-length",
    "x-amz-trailer",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "expect",
    "te",
    "upgrade",
    "proxy-authorization",
    "user-agent",
    "accept-encoding",
    "amz-sdk-invocation-id",
    "amz-sdk-request",
];

/// Origin response headers not relayed (they describe the origin's hop; hyper frames the body).
const DROP_RESPONSE: &[&str] = &[
    "connection",
    "keep-alive",
    "transfer-encoding",
    "date",
    "server",
    "x-amz-id-2",
    "x-amz-request-id",
];

/// The largest request body relayed (configuration documents, single parts): it is held in
/// memory so the origin request can be retried.
pub const RELAY_BODY_MAX: usize = 64 << 20;

/// Where a request's buckets live, learned by the listener before s3s sees the request
/// ([`Placer::place`]): whether a write may be relayed depends on it, and s3s's route match
/// cannot wait for a bucket lookup.
#[derive(Clone, Default)]
pub struct Placement {
    /// The bucket is served by an S3 origin.
    s3_origin: bool,
    /// The bucket does not exist and would be created at an S3 origin.
    s3_home: bool,
    /// The copy source (`x-amz-copy-source`), when it lives on the bucket's own S3 origin:
    /// its binding, key and version.
    source: Option<(Arc<BucketBinding>, String, Option<String>)>,
}

/// Computes [`Placement`]s.
pub struct Placer {
    /// Resolves buckets.
    pub pipeline: Arc<Pipeline>,
    /// Virtual-hosted buckets.
    pub hosts: Hosts,
}

impl Placer {
    /// Where the request's bucket (and copy source) live; `None` for requests without a
    /// bucket, or whose bucket cannot be found (s3s then answers them).
    pub async fn place<B>(&self, req: &http::Request<B>) -> Option<Placement> {
        let (bucket, key) = target_of(&self.hosts, req.uri(), req.headers())?;
        let catalog = self.pipeline.catalog();
        let b = match catalog.resolve(&bucket).await {
            Ok(b) => b,
            Err(_) if key.is_empty() && req.method() == Method::PUT => {
                let s3_home = catalog
                    .home_for(&bucket)
                    .is_some_and(|(o, _)| o.dialect() == Dialect::S3);
                return Some(Placement {
                    s3_home,
                    ..Placement::default()
                });
            }
            Err(_) => return None,
        };
        let s3_origin = b.origin.dialect() == Dialect::S3;
        let mut source = None;
        if let (true, Some(v)) = (s3_origin, req.headers().get("x-amz-copy-source")) {
            if let Some((sb, sk, version)) = v.to_str().ok().and_then(copy_source) {
                if let Ok(src) = catalog.resolve(&sb).await {
                    if Arc::ptr_eq(&src.origin, &b.origin) {
                        source = Some((src, sk, version));
                    }
                }
            }
        }
        Some(Placement {
            s3_origin,
            s3_home: false,
            source,
        })
    }
}

/// `x-amz-copy-source` as (bucket, key, version): `[/]bucket/key[?versionId=v]`, the key
/// percent-encoded.
fn copy_source(v: &str) -> Option<(String, String, Option<String>)> {
    let (path, query) = v.split_once('?').unwrap_or((v, ""));
    let path = decode(path.strip_prefix('/').unwrap_or(path))?;
    let (bucket, key) = path.split_once('/')?;
    if bucket.is_empty() || key.is_empty() {
        return None;
    }
    let mut version = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("versionId", v)) => version = Some(decode(v)?),
            _ => return None,
        }
    }
    Some((bucket.to_string(), key.to_string(), version))
}

/// What the route matched: carried from `is_match` to `check_access` and `call`.
#[derive(Clone)]
struct Target {
    bucket: String,
    key: String,
    query: Vec<(String, String)>,
    perm: Permission,
    op: String,
    /// A copy's source on the same S3 origin (binding, key, version).
    source: Option<(Arc<BucketBinding>, String, Option<String>)>,
}

/// The relay route (see the module docs).
pub struct Relay {
    /// Resolves buckets, forgets cached metadata.
    pub pipeline: Arc<Pipeline>,
    /// Authorizes the caller.
    pub access: Access,
    /// Virtual-hosted buckets.
    pub hosts: Hosts,
}

fn decode(s: &str) -> Option<String> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

fn query_pairs(uri: &Uri) -> Option<Vec<(String, String)>> {
    let Some(q) = uri.query() else {
        return Some(Vec::new());
    };
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Some((decode(k)?, decode(v)?))
        })
        .collect()
}

/// The exposed bucket and key a request names (path-style, or virtual-hosted under a
/// configured domain).
fn target_of(hosts: &Hosts, uri: &Uri, headers: &HeaderMap) -> Option<(String, String)> {
    let path = decode(uri.path())?;
    let path = path.strip_prefix('/')?;
    let host = headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()));
    match host.and_then(|h| hosts.bucket_of(h)) {
        Some(b) => Some((b.to_string(), path.to_string())),
        None => {
            let (b, k) = path.split_once('/').unwrap_or((path, ""));
            (!b.is_empty()).then(|| (b.to_string(), k.to_string()))
        }
    }
}

/// A query string's parameter names, for [`classify`]: deciding whether a request is relayed
/// needs only the names, so values are neither decoded nor copied for the (most) requests that
/// are not (a presigned URL's six long values were 10 % of a 256 KiB PUT's instructions).
struct Names<'a>(Vec<std::borrow::Cow<'a, str>>);

impl<'a> Names<'a> {
    /// `None` when a name is not valid percent-encoded UTF-8.
    fn parse(query: &'a str) -> Option<Self> {
        query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let k = p.split_once('=').map_or(p, |(k, _)| k);
                percent_encoding::percent_decode_str(k).decode_utf8().ok()
            })
            .collect::<Option<Vec<_>>>()
            .map(Self)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn has(q: &Names<'_>, name: &str) -> bool {
    q.0.iter().any(|k| k == name)
}

fn verb(method: &Method) -> &'static str {
    match *method {
        Method::GET | Method::HEAD => "Get",
        Method::DELETE => "Delete",
        _ => "Put",
    }
}

/// Upper-cases the first letter of each `-`-separated word and drops the dashes.
fn camel(sub: &str) -> String {
    sub.split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// Which requests are relayed, with the permission each needs and its operation name.
fn classify(
    method: &Method,
    key: &str,
    q: &Names<'_>,
    headers: &HeaderMap,
    at: &Placement,
) -> Option<(Permission, String)> {
    let read = matches!(*method, Method::GET | Method::HEAD);
    let admin = ADMIN_WRITE_HEADERS.iter().any(|h| headers.contains_key(*h));
    let perm = if admin {
        Permission::Admin
    } else {
        Permission::Write
    };
    if key.is_empty() && *method == Method::PUT && q.is_empty() && (at.s3_home || at.s3_origin) {
        // CreateBucket at an S3 origin, with what it carries (object lock, ownership, ACL,
        // location); a bucket of the caller's that exists already: the origin answers as S3.
        let lock = ["x-amz-bucket-object-lock-enabled", "x-amz-object-ownership"]
            .iter()
            .any(|h| headers.contains_key(*h));
        let perm = if lock { Permission::Admin } else { perm };
        return Some((perm, "CreateBucket".to_string()));
    }
    if at.source.is_some() && *method == Method::PUT && !key.is_empty() {
        // A copy within one S3 origin is the origin's own (no byte crosses Cistern, and every
        // option of the copy keeps its meaning).
        let op = if has(q, "uploadId") {
            "UploadPartCopy"
        } else {
            "CopyObject"
        };
        return Some((perm, op.to_string()));
    }
    if key.is_empty()
        && at.s3_origin
        && *method == Method::POST
        && has(q, "delete")
        && headers.contains_key("x-amz-bypass-governance-retention")
    {
        return Some((Permission::Delete, "DeleteObjects".to_string()));
    }
    if key.is_empty() {
        let sub = BUCKET_CONFIG.iter().find(|s| has(q, s))?;
        let perm = if read {
            Permission::List
        } else {
            Permission::Admin
        };
        return Some((perm, format!("{}Bucket{}", verb(method), camel(sub))));
    }
    if let Some(sub) = OBJECT_CONFIG.iter().find(|s| has(q, s)) {
        let (perm, op) = match (*sub, read) {
            ("restore", _) => (Permission::Write, "RestoreObject".to_string()),
            ("select", _) => (Permission::Read, "SelectObjectContent".to_string()),
            ("attributes", _) => (Permission::Read, "GetObjectAttributes".to_string()),
            (s, true) => (Permission::Read, format!("GetObject{}", camel(s))),
            (s, false) => (Permission::Admin, format!("PutObject{}", camel(s))),
        };
        return Some((perm, op));
    }
    let versioned = has(q, "versionId");
    if has(q, "tagging") {
        return versioned.then(|| {
            let perm = if read {
                Permission::Read
            } else {
                Permission::Write
            };
            (perm, format!("{}ObjectTagging", verb(method)))
        });
    }
    let customer_key = headers.contains_key("x-amz-server-side-encryption-customer-key");
    if read && (versioned || customer_key) && !has(q, "uploadId") {
        let op = if *method == Method::HEAD {
            "HeadObject"
        } else {
            "GetObject"
        };
        return Some((Permission::Read, op.to_string()));
    }
    let origin_headers = ORIGIN_WRITE_HEADERS
        .iter()
        .any(|h| headers.contains_key(*h))
        || (at.s3_origin
            && S3_ORIGIN_WRITE_HEADERS
                .iter()
                .any(|h| headers.contains_key(*h)))
        || (at.s3_origin
            && headers
                .get(http::header::IF_NONE_MATCH)
                .is_some_and(|v| v.as_bytes() != b"*"));
    let copy = headers.contains_key("x-amz-copy-source");
    let bypass = headers.contains_key("x-amz-bypass-governance-retention");
    match *method {
        // A part of an upload at an S3 origin: the origin's answer names how it keeps the part
        // (the upload's server-side encryption).
        Method::PUT if at.s3_origin && !copy && has(q, "uploadId") && has(q, "partNumber") => {
            Some((Permission::Write, "UploadPart".to_string()))
        }
        // Deletes that override a governance-mode lock are the origin's to judge.
        Method::DELETE if at.s3_origin && bypass => {
            Some((Permission::Delete, "DeleteObject".to_string()))
        }
        // PutObject, or UploadPart / CompleteMultipartUpload of an SSE-C upload (the customer
        // key goes with every part).
        Method::PUT if !copy && (origin_headers || customer_key) => {
            let op = if has(q, "uploadId") {
                "UploadPart"
            } else {
                "PutObject"
            };
            Some((perm, op.to_string()))
        }
        Method::POST if has(q, "uploads") && origin_headers => {
            Some((perm, "CreateMultipartUpload".to_string()))
        }
        Method::POST if has(q, "uploadId") && customer_key => {
            Some((Permission::Write, "CompleteMultipartUpload".to_string()))
        }
        _ => None,
    }
}

#[async_trait::async_trait]
impl S3Route for Relay {
    fn is_match(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        extensions: &mut http::Extensions,
    ) -> bool {
        let Some((bucket, key)) = target_of(&self.hosts, uri, headers) else {
            return false;
        };
        let at = extensions.get::<Placement>().cloned().unwrap_or_default();
        let Some(names) = Names::parse(uri.query().unwrap_or_default()) else {
            return false;
        };
        let Some((perm, op)) = classify(method, &key, &names, headers, &at) else {
            return false;
        };
        let Some(query) = query_pairs(uri) else {
            return false;
        };
        if let Some(slot) = extensions.get::<OpSlot>() {
            let _ = slot.0.set(op.clone());
        }
        extensions.insert(Target {
            bucket,
            key,
            query,
            perm,
            op,
            source: at.source,
        });
        true
    }

    async fn check_access(&self, req: &mut S3Request<Body>) -> S3Result<()> {
        let Some(t) = req.extensions.get::<Target>() else {
            return Err(s3_error!(InternalError, "The request lost its route"));
        };
        let caller = req.credentials.as_ref().map(|c| c.access_key.as_str());
        self.access.allow(caller, Some(&t.bucket), t.perm).await?;
        if let Some((src, _, _)) = &t.source {
            // A copy reads its source: the caller must be allowed to.
            self.access
                .allow(caller, Some(&src.name), Permission::Read)
                .await?;
        }
        Ok(())
    }

    async fn call(&self, req: S3Request<Body>) -> S3Result<S3Response<Body>> {
        let Some(t) = req.extensions.get::<Target>().cloned() else {
            return Err(s3_error!(InternalError, "The request lost its route"));
        };
        if t.op == "CreateBucket" {
            return self.create_bucket(req, t).await;
        }
        let b = self
            .pipeline
            .catalog()
            .resolve(&t.bucket)
            .await
            .map_err(to_s3)?;
        if b.origin.dialect() != Dialect::S3 {
            return Err(s3_error!(
                NotImplemented,
                "{} needs an S3 origin; bucket {} is not served from one",
                t.op,
                t.bucket
            ));
        }
        let mut headers = forwarded(&req.headers);
        if let Some((src, key, version)) = &t.source {
            // The client named Cistern's bucket; the origin is told its own.
            headers.retain(|(k, _)| k != "x-amz-copy-source");
            let mut v = format!(
                "/{}/{}",
                src.origin_bucket,
                percent_encoding::utf8_percent_encode(key, COPY_SOURCE_KEY)
            );
            if let Some(id) = version {
                v.push_str("?versionId=");
                v.push_str(&percent_encoding::utf8_percent_encode(id, COPY_SOURCE_KEY).to_string());
            }
            headers.push(("x-amz-copy-source".to_string(), v));
        }
        let pass = Passthrough {
            method: req.method.clone(),
            bucket: t.bucket.clone(),
            key: t.key.clone(),
            query: t.query,
            headers,
            body: Bytes::new(),
            verbatim: true,
        };
        let body = super::write::checked_body(req.input, &req.headers, req.trailing_headers);
        let resp = match upload_length(&req.headers) {
            // A large body goes through once, streamed, its declared checksum verified on the
            // way (the last piece held back until it is).
            Some(len) if len > RETRYABLE_BODY => {
                let upload = crate::origin::Upload { body, len };
                let whole = t.op == "PutObject";
                self.pipeline
                    .relay_upload(&b, pass, upload, whole)
                    .await
                    .map_err(to_s3)?
            }
            _ => {
                let body = collect(body).await?;
                let deleted = (t.op == "DeleteObjects").then(|| deleted_keys(&body));
                let pass = Passthrough { body, ..pass };
                let resp = self.pipeline.relay(&b, pass).await.map_err(to_s3)?;
                // The relay forgot nothing (the keys are in the body): each key is forgotten
                // once the origin has answered.
                for key in deleted.into_iter().flatten() {
                    self.pipeline.changed(&b, &key).await;
                }
                resp
            }
        };
        Ok(respond(resp, &req.method))
    }
}

impl Relay {
    /// CreateBucket at an S3 origin, as the client asked it (object lock, ownership, ACL,
    /// location constraint). A name Cistern serves from another origin is taken.
    async fn create_bucket(&self, req: S3Request<Body>, t: Target) -> S3Result<S3Response<Body>> {
        let catalog = self.pipeline.catalog();
        let (origin, at) = match catalog.resolve(&t.bucket).await {
            Ok(b) if b.origin.dialect() == Dialect::S3 => {
                (Arc::clone(&b.origin), b.origin_bucket.to_string())
            }
            Ok(_) => {
                return Err(s3_error!(
                    BucketAlreadyExists,
                    "The requested bucket name is not available."
                ))
            }
            Err(e) if e.kind() == crate::error::ErrorKind::NoSuchBucket => catalog
                .home_for(&t.bucket)
                .filter(|(o, _)| o.dialect() == Dialect::S3)
                .map(|(o, at)| (o, at.to_string()))
                .ok_or_else(|| {
                    s3_error!(NotImplemented, "No S3 origin here creates this bucket")
                })?,
            Err(e) => return Err(to_s3(e)),
        };
        let body = super::write::checked_body(req.input, &req.headers, req.trailing_headers);
        let pass = Passthrough {
            method: Method::PUT,
            bucket: at,
            key: String::new(),
            query: Vec::new(),
            headers: forwarded(&req.headers),
            body: collect(body).await?,
            verbatim: true,
        };
        let resp = origin.passthrough(&pass).await.map_err(to_s3)?;
        catalog.forget(&t.bucket);
        Ok(respond(resp, &req.method))
    }
}

/// The keys a DeleteObjects body names (`<Key>` elements, XML-unescaped).
fn deleted_keys(body: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(body);
    let mut out = Vec::new();
    let mut rest = text.as_ref();
    while let Some(at) = rest.find("<Key>") {
        let from = &rest[at + "<Key>".len()..];
        let Some(end) = from.find("</Key>") else {
            break;
        };
        let raw = &from[..end];
        if let Ok(k) = quick_xml::escape::unescape(raw) {
            out.push(k.into_owned());
        }
        rest = &from[end..];
    }
    out
}

/// The client's headers as the origin gets them: without what describes this hop or Cistern's
/// own signature, and without the `aws-chunked` coding s3s already removed.
fn forwarded(h: &HeaderMap) -> Vec<(String, String)> {
    h.iter()
        .filter(|(k, _)| !DROP_REQUEST.contains(&k.as_str()))
        .filter_map(|(k, v)| {
            let v = v.to_str().ok()?;
            if k == http::header::CONTENT_ENCODING {
                let rest: Vec<&str> = v
                    .split(',')
                    .map(str::trim)
                    .filter(|c| !c.eq_ignore_ascii_case("aws-chunked") && !c.is_empty())
                    .collect();
                return (!rest.is_empty()).then(|| (k.as_str().to_string(), rest.join(",")));
            }
            Some((k.as_str().to_string(), v.to_string()))
        })
        .collect()
}

/// The length of the body the origin gets: the decoded length of an `aws-chunked` body, else
/// `Content-Length`.
fn upload_length(h: &HeaderMap) -> Option<u64> {
    h.get("x-amz-decoded-content-length")
        .or_else(|| h.get(http::header::CONTENT_LENGTH))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// Bodies up to this size are held whole, so that the relayed request can be retried; larger
/// ones are streamed to the origin once.
const RETRYABLE_BODY: u64 = 1 << 20;

/// What `x-amz-copy-source` percent-encodes in a key (S3 takes it URL-encoded; `/` stays).
const COPY_SOURCE_KEY: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// The origin's answer as the S3 front sends it.
fn respond(resp: crate::origin::PassResponse, method: &Method) -> S3Response<Body> {
    let length: Option<u64> = resp
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let mut out = S3Response::new(if *method == Method::HEAD {
        Body::empty()
    } else {
        Body::http_body_unsync(Relayed {
            stream: resp.body,
            length,
        })
    });
    out.status = Some(resp.status);
    for (k, v) in &resp.headers {
        let keep_length = *method == Method::HEAD || k != http::header::CONTENT_LENGTH;
        if keep_length && !DROP_RESPONSE.contains(&k.as_str()) {
            out.headers.append(k.clone(), v.clone());
        }
    }
    out.headers.insert(
        CACHE_HEADER,
        http::HeaderValue::from_static(crate::pipeline::CacheStatus::Bypass.as_str()),
    );
    out
}

/// The request body, whole (bounded by [`RELAY_BODY_MAX`]).
async fn collect(mut body: BoxStream<'static, crate::error::Result<Bytes>>) -> S3Result<Bytes> {
    let mut buf = bytes::BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(to_s3)?;
        if buf.len() + chunk.len() > RELAY_BODY_MAX {
            return Err(s3_error!(
                EntityTooLarge,
                "Bodies of relayed requests are limited to {} bytes; upload larger objects in parts",
                RELAY_BODY_MAX
            ));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// The origin's body as hyper sends it, with its length when the origin gave one.
struct Relayed {
    stream: BoxStream<'static, crate::error::Result<Bytes>>,
    length: Option<u64>,
}

impl http_body::Body for Relayed {
    type Data = Bytes;
    type Error = crate::error::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        self.stream
            .poll_next_unpin(cx)
            .map(|o| o.map(|r| r.map(http_body::Frame::data)))
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self.length {
            Some(n) => http_body::SizeHint::with_exact(n),
            None => http_body::SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests;
