//! The Azure Blob dialect front: our own router ([`router`]) parses each request into a
//! closed operation; [`auth`] authenticates (Shared Key, SAS, anonymous) and authorizes it;
//! the read operations run on the same pipeline and cache as the S3 front; [`error`] is the
//! one place internal errors become Blob wire errors. `batch` runs Blob Batch sub-requests
//! through this same front; `cors` answers preflights and adds CORS headers from the Azure
//! origin's rules.

pub mod auth;
mod batch;
mod cors;
pub mod error;
mod relay;
pub mod router;
pub mod xml;

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use cistern_auth::policy::Policy;
use cistern_cache::range::RangeSpec;
use cistern_cache::ObjectMeta;
use futures::{StreamExt, TryStreamExt};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use http_body::Frame;

use self::auth::{Accounts, Caller, Incoming};
use self::error::BlobError;
use self::router::{Operation, Routed};
use self::xml::{BlobItem, ContainerItem, ListBlobsEcho, Listed};
use crate::origin::{ListCursor, ListQuery};
use crate::pipeline::{
    Body, BucketBinding, Conditions, EtagMatch, Pipeline, Selection, CACHE_HEADER,
};

/// The service version Cistern answers with when the client names none.
pub const DEFAULT_VERSION: &str = "2025-11-05";

/// Ranges for which `x-ms-range-get-content-md5` may be asked (4 MiB, as Azure allows).
const MAX_MD5_RANGE: u64 = 4 << 20;

/// Most entries in one List Blobs or List Containers page.
const MAX_RESULTS: usize = 5000;

/// Most entries in one `include=metadata` List Blobs page.
const MAX_METADATA_RESULTS: usize = 500;

/// How many metadata lookups a `include=metadata` listing runs at once.
const LIST_METADATA_CONCURRENCY: usize = 16;

/// A Blob response body: nothing, one buffer, or the pipeline's stream.
pub enum BlobBody {
    /// No body (HEAD, 304).
    Empty,
    /// One buffer (XML, small reads).
    Full(Option<Bytes>),
    /// An object read in progress.
    Stream(Body),
    /// An origin's answer relayed uncached, of the given length when the origin said.
    Pass(
        futures::stream::BoxStream<'static, crate::error::Result<Bytes>>,
        Option<u64>,
    ),
}

impl http_body::Body for BlobBody {
    type Data = Bytes;
    type Error = crate::error::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            Self::Empty => Poll::Ready(None),
            Self::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Self::Stream(s) => s.poll_next_unpin(cx).map(|o| o.map(|r| r.map(Frame::data))),
            Self::Pass(s, _) => s.poll_next_unpin(cx).map(|o| o.map(|r| r.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Empty => true,
            Self::Full(b) => b.is_none(),
            Self::Stream(s) => s.remaining() == 0,
            Self::Pass(_, n) => *n == Some(0),
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self {
            Self::Empty => http_body::SizeHint::with_exact(0),
            Self::Full(b) => {
                http_body::SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64))
            }
            Self::Stream(s) => http_body::SizeHint::with_exact(s.remaining()),
            Self::Pass(_, Some(n)) => http_body::SizeHint::with_exact(*n),
            Self::Pass(_, None) => http_body::SizeHint::default(),
        }
    }
}

/// A copy's source, authorized: a blob of one of Cistern's containers.
struct CopySource {
    bucket: Arc<BucketBinding>,
    blob: String,
    /// `snapshot` or `versionid`, when the source names one.
    query: Vec<(String, String)>,
}

impl CopySource {
    /// The source as a copy Cistern performs itself reads it: the current version only.
    fn emulated(self) -> Result<(Arc<BucketBinding>, String), BlobError> {
        if !self.query.is_empty() {
            return Err(BlobError::not_implemented(
                "Copy Blob of a snapshot or version between origins",
            ));
        }
        Ok((self.bucket, self.blob))
    }
}

/// A request body as the front reads it (only uploads do).
pub type RequestBody = futures::stream::BoxStream<'static, crate::error::Result<Bytes>>;

/// The Blob front.
pub struct BlobFront {
    domains: Vec<String>,
    pipeline: Arc<Pipeline>,
    policy: Arc<Policy>,
    accounts: Accounts,
    judgements: auth::Judgements,
    /// The catalog's containers and creation times, briefly cached (Get Container Properties
    /// would otherwise list the origin's buckets on every call).
    containers: std::sync::Mutex<Option<(std::time::Instant, ContainerList)>>,
    /// The Azure origin's CORS rules, briefly cached.
    cors: cors::CorsCache,
}

type ContainerList = Arc<Vec<crate::origin::BucketEntry>>;

/// How long the container list is reused.
const CONTAINER_LIST_TTL: std::time::Duration = std::time::Duration::from_secs(10);

/// What the listener logs about a handled request.
pub struct Handled {
    /// The response.
    pub response: http::Response<BlobBody>,
    /// The operation name.
    pub op: &'static str,
}

fn query_pairs(raw: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(raw.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// A query parameter by its exact (lower-case) name: Azure's are lower case, and duplicates
/// are refused before anything reads them.
fn get<'a>(q: &'a [(String, String)], name: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// A parameter named twice (in any case): refused, since Shared Key clients disagree on which
/// one they sign and the operation would read another.
fn duplicate_parameter(q: &[(String, String)]) -> Option<&str> {
    let mut seen = std::collections::HashSet::new();
    q.iter()
        .map(|(k, _)| k.as_str())
        .find(|k| !seen.insert(k.to_ascii_lowercase()))
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn quoted(etag: &str) -> String {
    if etag.starts_with('"') {
        etag.to_string()
    } else {
        format!("\"{etag}\"")
    }
}

/// Parses `If-Match` / `If-None-Match`: `*` or a list of (quoted) ETags.
fn etag_list(v: &str) -> EtagMatch {
    if v.split(',').any(|e| e.trim() == "*") {
        return EtagMatch::Any;
    }
    EtagMatch::OneOf(
        v.split(',')
            .map(|e| {
                let e = e.trim();
                e.strip_prefix("W/")
                    .unwrap_or(e)
                    .trim_matches('"')
                    .to_string()
            })
            .filter(|e| !e.is_empty())
            .collect(),
    )
}

/// The conditions of a read: as [`conditions`], but `If-None-Match: *` asks for a blob that
/// does not exist, which no read can return (Azure: `400 UnsatisfiableCondition`).
fn read_conditions(h: &HeaderMap) -> Result<Conditions, BlobError> {
    let c = conditions(h);
    if c.if_none_match == Some(EtagMatch::Any) {
        return Err(BlobError::new(
            StatusCode::BAD_REQUEST,
            "UnsatisfiableCondition",
            "The request includes an unsatisfiable condition for this operation.",
        ));
    }
    Ok(c)
}

fn conditions(h: &HeaderMap) -> Conditions {
    let date = |n| header(h, n).and_then(|v| httpdate::parse_http_date(v).ok());
    Conditions {
        if_match: header(h, "if-match").map(etag_list),
        if_none_match: header(h, "if-none-match").map(etag_list),
        if_modified_since: date("if-modified-since"),
        if_unmodified_since: date("if-unmodified-since"),
    }
}

/// `bytes=a-b`, `bytes=a-` or `bytes=-n`.
fn parse_range(v: &str) -> Option<RangeSpec> {
    let spec = v.trim().strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    match (a.is_empty(), b.is_empty()) {
        (false, false) => {
            let (first, last) = (a.parse().ok()?, b.parse().ok()?);
            (first <= last).then_some(RangeSpec::FromTo { first, last })
        }
        (false, true) => Some(RangeSpec::From {
            first: a.parse().ok()?,
        }),
        (true, false) => Some(RangeSpec::Suffix {
            len: b.parse().ok()?,
        }),
        (true, true) => None,
    }
}

/// The range a Get Blob asks for: `x-ms-range` wins over `Range`. A malformed `Range` is
/// ignored (the whole blob, as RFC 9110 and Azure do); a malformed `x-ms-range` is an error.
fn requested_range(h: &HeaderMap) -> Result<Option<RangeSpec>, BlobError> {
    if !h.contains_key("x-ms-range") {
        return Ok(header(h, "range").and_then(parse_range));
    }
    for name in ["x-ms-range", "range"] {
        if let Some(v) = h.get(name) {
            let v = v.to_str().ok().and_then(parse_range).ok_or_else(|| {
                BlobError::invalid_header(
                    if name == "range" {
                        "Range"
                    } else {
                        "x-ms-range"
                    },
                    "The value for one of the HTTP headers is not in the correct format.",
                )
            })?;
            return Ok(Some(v));
        }
    }
    Ok(None)
}

fn set(h: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(name, v);
    }
}

/// Headers describing a blob, as Get Blob and Get Blob Properties send them.
fn blob_headers(h: &mut HeaderMap, m: &ObjectMeta) {
    set(h, "last-modified", &xml::http_date(m.last_modified));
    set(h, "etag", &quoted(&m.etag));
    // An Azure blob may have no content type (Set Blob Properties clears it); other origins'
    // objects are typed as Azure types an upload that gives none.
    match (&m.content_type, &m.origin_kind) {
        (Some(t), _) => set(h, "content-type", t),
        (None, Some(_)) => {}
        (None, None) => set(h, "content-type", "application/octet-stream"),
    }
    for (name, v) in [
        ("content-encoding", &m.content_encoding),
        ("content-language", &m.content_language),
        ("cache-control", &m.cache_control),
        ("content-disposition", &m.content_disposition),
    ] {
        if let Some(v) = v {
            set(h, name, v);
        }
    }
    set(
        h,
        "x-ms-blob-type",
        m.origin_kind.as_deref().unwrap_or("BlockBlob"),
    );
    if let Some(c) = m.created {
        set(h, "x-ms-creation-time", &xml::http_date(c));
    }
    set(h, "x-ms-lease-status", "unlocked");
    set(h, "x-ms-lease-state", "available");
    set(h, "accept-ranges", "bytes");
    // An Azure origin's own word on leases, tiers, sequence numbers… (S3 origins' are x-amz-).
    for (k, v) in &m.origin_headers {
        if k.starts_with("x-ms-") {
            if let (Ok(k), Ok(v)) = (
                http::HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(v),
            ) {
                h.insert(k, v);
            }
        }
    }
    user_metadata(h, m);
}

fn user_metadata(h: &mut HeaderMap, m: &ObjectMeta) {
    for (k, v) in &m.user_metadata {
        // Values from other dialects may hold bytes a header cannot; those are skipped.
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(format!("x-ms-meta-{k}").as_bytes()),
            HeaderValue::from_bytes(v.as_bytes()),
        ) {
            h.append(name, value);
        }
    }
}

fn md5_b64(data: &[u8]) -> String {
    use md5::Digest as _;
    base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(data))
}

fn xml_response(body: String) -> Result<Reply, BlobError> {
    let mut h = HeaderMap::new();
    set(&mut h, "content-type", "application/xml");
    Ok(Reply {
        status: StatusCode::OK,
        headers: h,
        body: BlobBody::Full(Some(Bytes::from(body))),
        length: None,
    })
}

/// An operation's answer before the common headers are added.
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: BlobBody,
    /// The `Content-Length` to send when it is not the body's (HEAD).
    length: Option<u64>,
}

impl Reply {
    fn empty(status: StatusCode, headers: HeaderMap) -> Self {
        Self {
            status,
            headers,
            body: BlobBody::Empty,
            length: Some(0),
        }
    }
}

impl BlobFront {
    /// The front over `pipeline`, authenticating the policy's Blob accounts; `domains` are
    /// the host-style suffixes (`<account>.<domain>`), e.g. `blob.core.windows.net`.
    pub fn new(pipeline: Arc<Pipeline>, policy: Arc<Policy>, domains: Vec<String>) -> Self {
        let accounts = Accounts::from_policy(&policy);
        Self {
            domains,
            pipeline,
            policy,
            accounts,
            judgements: auth::Judgements::default(),
            containers: std::sync::Mutex::new(None),
            cors: cors::CorsCache::default(),
        }
    }

    /// Handles one request; only uploads read `body`. A request with an `Origin` gets the
    /// CORS headers its rule grants, errors included.
    pub async fn handle(
        &self,
        parts: &http::request::Parts,
        body: RequestBody,
        peer: Option<IpAddr>,
        request_id: &str,
    ) -> Handled {
        let mut handled = self.respond(parts, body, peer, request_id).await;
        if let Some(origin) = parts.headers.get(http::header::ORIGIN) {
            if parts.method != Method::OPTIONS {
                self.add_cors_headers(origin, &parts.method, handled.response.headers_mut())
                    .await;
            }
        }
        handled
    }

    /// Handles one request (a whole one, or a Blob Batch sub-request), without CORS.
    async fn respond(
        &self,
        parts: &http::request::Parts,
        body: RequestBody,
        peer: Option<IpAddr>,
        request_id: &str,
    ) -> Handled {
        let version = header(&parts.headers, "x-ms-version")
            .filter(|v| v.len() <= 32)
            .unwrap_or(DEFAULT_VERSION)
            .to_string();
        let head = parts.method == Method::HEAD;
        let (reply, op) = match self.dispatch(parts, body, peer, request_id).await {
            (Ok(r), op) => (r, op),
            (Err(e), op) => (error_reply(e, request_id, head), op),
        };
        let mut resp = http::Response::new(reply.body);
        *resp.status_mut() = reply.status;
        let h = resp.headers_mut();
        *h = reply.headers;
        if let Some(n) = reply.length {
            set(h, "content-length", &n.to_string());
        }
        set(h, "x-ms-request-id", request_id);
        set(h, "x-ms-version", &version);
        if let Some(v) = parts.headers.get("x-ms-client-request-id") {
            h.insert("x-ms-client-request-id", v.clone());
        }
        set(h, "date", &xml::http_date(SystemTime::now()));
        set(h, "server", "Cistern");
        Handled { response: resp, op }
    }

    async fn dispatch(
        &self,
        parts: &http::request::Parts,
        body: RequestBody,
        peer: Option<IpAddr>,
        request_id: &str,
    ) -> (Result<Reply, BlobError>, &'static str) {
        let raw_query = parts.uri.query().unwrap_or("");
        let query = query_pairs(raw_query);
        let host = header(&parts.headers, "host")
            .map(str::to_string)
            .or_else(|| parts.uri.authority().map(|a| a.to_string()));
        if let Some(name) = duplicate_parameter(&query) {
            if auth::is_sas_parameter(name) {
                // A SAS whose fields are given twice is not a SAS Azure accepts.
                return (Err(BlobError::authorization_failure()), "unknown");
            }
            return (
                Err(BlobError::invalid_query(
                    "duplicate",
                    name,
                    "A query parameter is given more than once.",
                )),
                "unknown",
            );
        }
        let host_style = host
            .as_deref()
            .and_then(|h| router::host_account(h, &self.domains));
        let routed = match router::route(
            &parts.method,
            host_style,
            parts.uri.path(),
            &query,
            parts.headers.contains_key("x-ms-copy-source"),
        ) {
            Ok(r) => r,
            Err(e) => return (Err(e.into()), "unknown"),
        };
        let op = routed.op.name();
        if routed.op == Operation::Preflight {
            // Unauthenticated, as Azure answers preflights.
            return (self.preflight(&parts.headers).await, op);
        }
        let now = SystemTime::now();
        let incoming = Incoming {
            method: &parts.method,
            raw_path: parts.uri.path(),
            raw_query,
            query: &query,
            headers: &parts.headers,
            peer,
        };
        let result = async {
            let caller = auth::authenticate(&self.accounts, &routed, &incoming, now)?;
            if matches!(caller, Caller::Anonymous) && !self.accounts.contains(&routed.account) {
                return Err(BlobError::resource_not_found());
            }
            auth::authorize(
                &self.policy,
                &self.pipeline,
                &self.judgements,
                &caller,
                &routed,
                peer,
                now,
            )
            .await?;
            let endpoint = match host.as_deref() {
                Some(h) if host_style.is_some() => format!("http://{h}/"),
                Some(h) => format!("http://{h}/{}/", routed.account),
                None => format!("/{}/", routed.account),
            };
            if auth::create_only(&caller, routed.op) {
                return self
                    .operate_create_only(&routed, (&caller, peer), parts, &query, &endpoint, body)
                    .await;
            }
            let mut reply = if routed.op == Operation::BlobBatch {
                self.batch(&routed, parts, body, peer, request_id).await?
            } else {
                self.operate(&routed, (&caller, peer), parts, &query, &endpoint, body)
                    .await?
            };
            if matches!(routed.op, Operation::GetBlob | Operation::GetBlobProperties)
                && reply.status.is_success()
            {
                apply_sas_overrides(&caller, &mut reply.headers);
            }
            Ok(reply)
        }
        .await;
        (result, op)
    }

    /// [`Self::operate`] for a caller that may create the blob but not replace it (see
    /// [`auth::create_only`]): the write goes out with `If-None-Match: *`, so the origin
    /// decides atomically, and an existing blob is the caller's missing permission.
    async fn operate_create_only(
        &self,
        r: &Routed,
        caller: (&Caller, Option<IpAddr>),
        parts: &http::request::Parts,
        q: &[(String, String)],
        endpoint: &str,
        body: RequestBody,
    ) -> Result<Reply, BlobError> {
        let h = &parts.headers;
        if ["if-match", "if-modified-since", "if-unmodified-since"]
            .iter()
            .any(|n| h.contains_key(*n))
            || header(h, "if-none-match").is_some_and(|v| v.trim() != "*")
        {
            // Only a blob that exists can meet these: replacing it needs `w`.
            return Err(BlobError::permission_mismatch());
        }
        let (mut p, ()) = http::Request::new(()).into_parts();
        p.method = parts.method.clone();
        p.uri = parts.uri.clone();
        p.version = parts.version;
        p.headers = h.clone();
        p.headers
            .insert(http::header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        let exists = |code: &str| matches!(code, "BlobAlreadyExists" | "ConditionNotMet");
        match self.operate(r, caller, &p, q, endpoint, body).await {
            Ok(reply)
                if matches!(
                    reply.status,
                    StatusCode::CONFLICT | StatusCode::PRECONDITION_FAILED
                ) =>
            {
                Err(BlobError::permission_mismatch())
            }
            Err(e) if exists(&e.code) => Err(BlobError::permission_mismatch()),
            other => other,
        }
    }

    async fn operate(
        &self,
        r: &Routed,
        (caller, peer): (&Caller, Option<IpAddr>),
        parts: &http::request::Parts,
        q: &[(String, String)],
        endpoint: &str,
        body: RequestBody,
    ) -> Result<Reply, BlobError> {
        let container = r.container.as_deref().unwrap_or("");
        let blob = r.blob.as_deref().unwrap_or("");
        if relay::wants_relay(r.op, q, &parts.headers) {
            if let Some(to) = self.relay_to(r).await? {
                return self.relay(to, r, parts, q, body, endpoint).await;
            }
        }
        if let Some(relayed) = self
            .relay_same_origin_copy(r, (caller, peer), parts, q, endpoint)
            .await?
        {
            drop(body);
            return Ok(relayed);
        }
        match r.op {
            Operation::ListContainers => self.list_containers(&r.account, q, endpoint).await,
            Operation::GetAccountInformation => {
                let mut h = HeaderMap::new();
                set(&mut h, "x-ms-sku-name", "Standard_LRS");
                set(&mut h, "x-ms-account-kind", "StorageV2");
                set(&mut h, "x-ms-is-hns-enabled", "false");
                Ok(Reply::empty(StatusCode::OK, h))
            }
            Operation::GetContainerProperties | Operation::GetContainerMetadata => {
                self.container_properties(container).await
            }
            Operation::ListBlobs => self.list_blobs(container, q, endpoint).await,
            Operation::CreateContainer => {
                if q.iter().any(|(k, _)| k == "comp")
                    || parts.headers.contains_key("x-ms-blob-public-access")
                {
                    return Err(BlobError::not_implemented(
                        "Create Container with public access",
                    ));
                }
                self.pipeline.create_bucket(container).await?;
                self.invalidate_containers();
                Ok(Reply::empty(StatusCode::CREATED, HeaderMap::new()))
            }
            Operation::DeleteContainer => {
                let b = self.bucket(container).await?;
                self.pipeline.delete_bucket(&b).await?;
                self.invalidate_containers();
                Ok(Reply::empty(StatusCode::ACCEPTED, HeaderMap::new()))
            }
            Operation::GetBlob | Operation::GetBlobProperties | Operation::GetBlobMetadata
                if is_version_read(q) =>
            {
                self.pass(container, blob, parts, q).await
            }
            Operation::GetBlob => self.get_blob(container, blob, &parts.headers).await,
            Operation::GetBlobProperties | Operation::GetBlobMetadata => {
                let b = self.bucket(container).await?;
                let cond = read_conditions(&parts.headers)?;
                let (meta, status, _) = self.pipeline.head(&b, blob, None, &cond).await?;
                let mut h = HeaderMap::new();
                if r.op == Operation::GetBlobMetadata {
                    set(&mut h, "last-modified", &xml::http_date(meta.last_modified));
                    set(&mut h, "etag", &quoted(&meta.etag));
                    user_metadata(&mut h, &meta);
                    return Ok(Reply::empty(StatusCode::OK, h));
                }
                blob_headers(&mut h, &meta);
                if let Some(md5) = &meta.content_md5 {
                    set(&mut h, "content-md5", md5);
                }
                set(&mut h, CACHE_HEADER, status.as_str());
                Ok(Reply {
                    status: StatusCode::OK,
                    headers: h,
                    body: BlobBody::Empty,
                    length: Some(meta.size),
                })
            }
            Operation::GetBlockList if is_version_read(q) => {
                self.pass(container, blob, parts, q).await
            }
            Operation::GetBlockList => {
                let b = self.bucket(container).await?;
                let (meta, _, _) = self
                    .pipeline
                    .head(&b, blob, None, &conditions(&parts.headers))
                    .await?;
                if meta.origin_kind.is_some() {
                    // The origin has blocks of its own: it answers.
                    return self.pass(container, blob, parts, q).await;
                }
                let mut reply = xml_response(xml::empty_block_list())?;
                set(
                    &mut reply.headers,
                    "last-modified",
                    &xml::http_date(meta.last_modified),
                );
                set(&mut reply.headers, "etag", &quoted(&meta.etag));
                set(
                    &mut reply.headers,
                    "x-ms-blob-content-length",
                    &meta.size.to_string(),
                );
                Ok(reply)
            }
            Operation::PutBlob => self.put_blob(container, blob, &parts.headers, body).await,
            Operation::SetBlobMetadata | Operation::SetBlobProperties => {
                self.set_properties(r.op, container, blob, &parts.headers)
                    .await
            }
            Operation::CopyBlob => {
                // Copy Blob has no body: whatever came is not read.
                drop(body);
                self.copy_blob(r, caller, &parts.headers, peer, SystemTime::now())
                    .await
            }
            Operation::PutBlock => {
                let id = get(q, "blockid").ok_or_else(|| {
                    BlobError::new(
                        StatusCode::BAD_REQUEST,
                        "MissingRequiredQueryParameter",
                        "A query parameter that's mandatory for this request is not specified.",
                    )
                    .with_detail("QueryParameterName", "blockid")
                })?;
                if !valid_block_id(id) {
                    return Err(BlobError::invalid_query(
                        "blockid",
                        id,
                        "The specified blob or block content is invalid.",
                    ));
                }
                let len = content_length(&parts.headers)?;
                let b = self.bucket(container).await?;
                b.origin
                    .put_block(
                        &b.origin_bucket,
                        blob,
                        id,
                        crate::origin::Upload { body, len },
                        header(&parts.headers, "content-md5"),
                    )
                    .await?;
                let mut h = HeaderMap::new();
                if let Some(md5) = header(&parts.headers, "content-md5") {
                    set(&mut h, "content-md5", md5);
                }
                Ok(Reply::empty(StatusCode::CREATED, h))
            }
            Operation::AppendBlock => {
                self.append_block(container, blob, &parts.headers, body)
                    .await
            }
            Operation::PutBlockFromUrl => {
                self.put_block_from_url(r, caller, &parts.headers, q, peer)
                    .await
            }
            Operation::PutBlockList => {
                let h = &parts.headers;
                // `If-None-Match: *` (what the SDKs send for a large upload without
                // overwrite) is served; other conditions are not yet.
                let create_only = header(h, "if-none-match").is_some_and(|v| v.trim() == "*");
                if ["if-match", "if-modified-since", "if-unmodified-since"]
                    .iter()
                    .any(|n| h.contains_key(*n))
                    || (h.contains_key("if-none-match") && !create_only)
                {
                    return Err(BlobError::not_implemented("conditional Put Block List"));
                }
                let blocks = read_block_list(body).await?;
                let b = self.bucket(container).await?;
                if create_only && self.pipeline.exists_at_origin(&b, blob).await? {
                    return Err(already_exists(
                        crate::error::Error::new(
                            crate::error::ErrorKind::PreconditionFailed,
                            "The blob exists",
                        ),
                        true,
                    ));
                }
                let mut opts = put_options(h, false);
                opts.create_only = create_only;
                let put = self
                    .pipeline
                    .commit_blocks(&b, blob, &blocks, &opts)
                    .await
                    .map_err(|e| already_exists(e, create_only))?;
                let mut h = HeaderMap::new();
                set(&mut h, "etag", &quoted(&put.etag));
                if let Some(t) = put.last_modified {
                    set(&mut h, "last-modified", &xml::http_date(t));
                }
                Ok(Reply::empty(StatusCode::CREATED, h))
            }
            Operation::DeleteBlob => {
                if is_version_read(q) {
                    return Err(BlobError::not_implemented(
                        "Delete Blob of a snapshot or version",
                    ));
                }
                let b = self.bucket(container).await?;
                // Azure answers 404 for a blob that is not there (S3 does not).
                self.pipeline
                    .head(&b, blob, None, &conditions(&parts.headers))
                    .await?;
                self.pipeline.delete(&b, blob).await?;
                Ok(Reply::empty(StatusCode::ACCEPTED, HeaderMap::new()))
            }
            Operation::Unsupported("GetUserDelegationKey")
                if !matches!(caller, Caller::Delegated(_)) =>
            {
                Err(BlobError::auth_failed(
                    "Only authentication scheme Bearer is supported",
                ))
            }
            // Answered by `dispatch` (a batch needs the request id; a preflight no caller).
            Operation::BlobBatch | Operation::Preflight => {
                Err(BlobError::not_implemented(r.op.name()))
            }
            Operation::Unsupported(name) => Err(BlobError::not_implemented(name)),
        }
    }

    fn invalidate_containers(&self) {
        *self.containers.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    async fn container_list(&self) -> crate::error::Result<ContainerList> {
        let lock = || self.containers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, list)) = lock().as_ref() {
            if at.elapsed() < CONTAINER_LIST_TTL {
                return Ok(Arc::clone(list));
            }
        }
        let list = Arc::new(self.pipeline.catalog().list().await?);
        *lock() = Some((std::time::Instant::now(), Arc::clone(&list)));
        Ok(list)
    }

    async fn bucket(&self, container: &str) -> Result<Arc<BucketBinding>, BlobError> {
        Ok(self.pipeline.catalog().resolve(container).await?)
    }

    /// Put Blob: a block blob in one request, streamed to the origin.
    async fn put_blob(
        &self,
        container: &str,
        blob: &str,
        h: &HeaderMap,
        body: RequestBody,
    ) -> Result<Reply, BlobError> {
        let append_blob = match header(h, "x-ms-blob-type") {
            Some("BlockBlob") => false,
            Some("AppendBlob") => true,
            Some("PageBlob") => return Err(BlobError::not_implemented("Put Blob of a page blob")),
            _ => {
                return Err(BlobError::new(
                    StatusCode::BAD_REQUEST,
                    "MissingRequiredHeader",
                    "An HTTP header that's mandatory for this request is not specified.",
                )
                .with_detail("HeaderName", "x-ms-blob-type"))
            }
        };
        // `If-None-Match: *` (create only, what the SDKs send without overwrite) is served;
        // other conditions on writes are not yet.
        let create_only = header(h, "if-none-match").is_some_and(|v| v.trim() == "*");
        if ["if-match", "if-modified-since", "if-unmodified-since"]
            .iter()
            .any(|n| h.contains_key(*n))
            || (h.contains_key("if-none-match") && !create_only)
        {
            return Err(BlobError::not_implemented("conditional Put Blob"));
        }
        let len = content_length(h)?;
        let b = self.bucket(container).await?;
        if create_only && self.pipeline.exists_at_origin(&b, blob).await? {
            return Err(BlobError::new(
                StatusCode::CONFLICT,
                "BlobAlreadyExists",
                "The specified blob already exists.",
            ));
        }
        let mut opts = put_options(h, true);
        opts.create_only = create_only;
        let put = if append_blob {
            // An append blob starts empty; Append Block grows it.
            if len != 0 {
                return Err(BlobError::invalid_header(
                    "content-length",
                    "Put Blob of an append blob takes no body.",
                ));
            }
            drop(body);
            self.pipeline.create_appendable(&b, blob, &opts).await
        } else {
            self.pipeline
                .put(&b, blob, crate::origin::Upload { body, len }, &opts)
                .await
        }
        .map_err(|e| already_exists(e, create_only))?;
        let mut headers = HeaderMap::new();
        set(&mut headers, "etag", &quoted(&put.etag));
        if let Some(t) = put.last_modified {
            set(&mut headers, "last-modified", &xml::http_date(t));
        }
        if let Some(md5) = &opts.content_md5 {
            set(&mut headers, "content-md5", md5);
        }
        set(&mut headers, "x-ms-request-server-encrypted", "false");
        Ok(Reply::empty(StatusCode::CREATED, headers))
    }

    /// The blob a copy reads (`x-ms-copy-source`): a blob of this Cistern in the caller's
    /// account, authorized by the SAS in its URL or else by the caller's own credentials.
    async fn copy_source(
        &self,
        r: &Routed,
        caller: &Caller,
        h: &HeaderMap,
        peer: Option<IpAddr>,
        now: SystemTime,
    ) -> Result<CopySource, BlobError> {
        let source = header(h, "x-ms-copy-source").unwrap_or("");
        let uri: http::Uri = source
            .parse()
            .ok()
            .filter(|u: &http::Uri| u.scheme().is_some() && u.authority().is_some())
            .ok_or_else(|| {
                BlobError::invalid_header("x-ms-copy-source", "The copy source is not a URL.")
            })?;
        let src_query = query_pairs(uri.query().unwrap_or(""));
        let host_style = uri
            .authority()
            .and_then(|a| router::host_account(a.as_str(), &self.domains));
        let src = router::route(&Method::GET, host_style, uri.path(), &src_query, false)
            .ok()
            .filter(|s| s.op == Operation::GetBlob && s.blob.is_some())
            .ok_or_else(|| {
                BlobError::invalid_header(
                    "x-ms-copy-source",
                    "The copy source does not name a blob.",
                )
            })?;
        if src.account != r.account {
            return Err(BlobError::not_implemented("Copy Blob from another account"));
        }
        // The source's own SAS, when its URL has one; else the caller reads it as itself.
        let src_caller = if src_query.iter().any(|(k, _)| k == "sig") {
            let empty = HeaderMap::new();
            let incoming = Incoming {
                method: &Method::GET,
                raw_path: uri.path(),
                raw_query: uri.query().unwrap_or(""),
                query: &src_query,
                headers: &empty,
                peer,
            };
            auth::authenticate(&self.accounts, &src, &incoming, now).map_err(|_| {
                cannot_verify(
                    StatusCode::FORBIDDEN,
                    "The copy source's signature is not valid.",
                )
            })?
        } else {
            // The caller reads the source as itself. A SAS was verified for the destination
            // only: it may read the source only where its grant reaches — an account SAS
            // anywhere in the account, a container SAS within its own container; a blob SAS
            // names one blob, the destination.
            if let Caller::Sas(s) = caller {
                let same_container = src.container.is_some() && src.container == r.container;
                let reaches = s.resource.is_empty() || (s.resource == "c" && same_container);
                if !reaches {
                    return Err(cannot_verify(
                        StatusCode::FORBIDDEN,
                        "The copy source is outside this SAS's resource; give the source its own SAS.",
                    ));
                }
            }
            caller.clone()
        };
        auth::authorize(
            &self.policy,
            &self.pipeline,
            &self.judgements,
            &src_caller,
            &src,
            peer,
            now,
        )
        .await
        .map_err(|_| {
            cannot_verify(
                StatusCode::FORBIDDEN,
                "This request is not authorized to perform this operation using this permission.",
            )
        })?;
        let container = src.container.clone().unwrap_or_default();
        Ok(CopySource {
            bucket: self.bucket(&container).await?,
            blob: src.blob.clone().unwrap_or_default(),
            query: src_query
                .into_iter()
                .filter(|(k, _)| k == "snapshot" || k == "versionid")
                .collect(),
        })
    }

    /// A copy whose source lives on the destination's own Azure origin (Copy Blob, Put Blob
    /// and Put Block From URL, Append Block and Put Page From URL), relayed to it once the
    /// caller is authorized for both ends: the origin copies, so the destination keeps
    /// everything Azure keeps (its type, tags, tier, lease, checksums) and nothing crosses
    /// Cistern. `None` for everything else.
    async fn relay_same_origin_copy(
        &self,
        r: &Routed,
        (caller, peer): (&Caller, Option<IpAddr>),
        parts: &http::request::Parts,
        q: &[(String, String)],
        endpoint: &str,
    ) -> Result<Option<Reply>, BlobError> {
        let copy = match r.op {
            Operation::CopyBlob | Operation::PutBlockFromUrl => true,
            Operation::Unsupported(name) => {
                matches!(name, "AppendBlockFromURL" | "PutPage")
                    && parts.headers.contains_key("x-ms-copy-source")
            }
            _ => false,
        };
        if !copy {
            return Ok(None);
        }
        let Some(relay::RelayTo::Container(dst)) = self.relay_to(r).await? else {
            return Ok(None);
        };
        let src = self
            .copy_source(r, caller, &parts.headers, peer, SystemTime::now())
            .await?;
        if !Arc::ptr_eq(&src.bucket.origin, &dst.origin) {
            return Ok(None);
        }
        let source = src
            .bucket
            .origin
            .copy_source_headers(&src.bucket.origin_bucket, &src.blob, &src.query)
            .await?;
        let to = relay::RelayTo::Copy(dst, source);
        let empty = futures::stream::empty().boxed();
        self.relay(to, r, parts, q, empty, endpoint).await.map(Some)
    }

    /// Append Block: the body is added to the end of an append blob, all or nothing, with
    /// the append-position and max-size conditions.
    async fn append_block(
        &self,
        container: &str,
        blob: &str,
        h: &HeaderMap,
        body: RequestBody,
    ) -> Result<Reply, BlobError> {
        if [
            "if-match",
            "if-none-match",
            "if-modified-since",
            "if-unmodified-since",
        ]
        .iter()
        .any(|n| h.contains_key(*n))
        {
            return Err(BlobError::not_implemented("conditional Append Block"));
        }
        let len = content_length(h)?;
        if len > MAX_APPEND_BLOCK {
            return Err(BlobError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestBodyTooLarge",
                "The request body is too large and exceeds the maximum permissible limit (100 MiB).",
            ));
        }
        let number = |name: &'static str| -> Result<Option<u64>, BlobError> {
            header(h, name)
                .map(|v| {
                    v.trim()
                        .parse::<u64>()
                        .map_err(|_| BlobError::invalid_header(name, "Not a number."))
                })
                .transpose()
        };
        let opts = crate::origin::AppendOptions {
            content_md5: header(h, "content-md5").map(str::to_string),
            append_position: number("x-ms-blob-condition-appendpos")?,
            max_size: number("x-ms-blob-condition-maxsize")?,
        };
        let b = self.bucket(container).await?;
        let done = self
            .pipeline
            .append(&b, blob, crate::origin::Upload { body, len }, &opts)
            .await?;
        let mut headers = HeaderMap::new();
        set(&mut headers, "etag", &quoted(&done.etag));
        if let Some(t) = done.last_modified {
            set(&mut headers, "last-modified", &xml::http_date(t));
        }
        set(
            &mut headers,
            "x-ms-blob-append-offset",
            &done.offset.to_string(),
        );
        if let Some(n) = done.blocks {
            set(
                &mut headers,
                "x-ms-blob-committed-block-count",
                &n.to_string(),
            );
        }
        if let Some(m) = &opts.content_md5 {
            set(&mut headers, "content-md5", m);
        }
        set(&mut headers, "x-ms-request-server-encrypted", "false");
        Ok(Reply::empty(StatusCode::CREATED, headers))
    }

    /// Put Block From URL: a block made of (`x-ms-source-range` of) another blob of the
    /// account, read through the cache and staged like Put Block.
    async fn put_block_from_url(
        &self,
        r: &Routed,
        caller: &Caller,
        h: &HeaderMap,
        q: &[(String, String)],
        peer: Option<IpAddr>,
    ) -> Result<Reply, BlobError> {
        let now = SystemTime::now();
        let id = get(q, "blockid")
            .filter(|id| valid_block_id(id))
            .ok_or_else(|| {
                BlobError::invalid_query(
                    "blockid",
                    get(q, "blockid").unwrap_or(""),
                    "The specified blob or block content is invalid.",
                )
            })?;
        let src = self.copy_source(r, caller, h, peer, now).await?;
        let (src_b, src_blob) = src.emulated()?;
        let sel = match header(h, "x-ms-source-range") {
            None => Selection::All,
            Some(v) => match parse_range(v) {
                Some(spec @ RangeSpec::FromTo { .. }) => Selection::Range(spec),
                _ => {
                    return Err(BlobError::invalid_header(
                        "x-ms-source-range",
                        "The source range must be bytes=start-end.",
                    ))
                }
            },
        };
        let date = |n| header(h, n).and_then(|v| httpdate::parse_http_date(v).ok());
        let cond = Conditions {
            if_match: header(h, "x-ms-source-if-match").map(etag_list),
            if_none_match: header(h, "x-ms-source-if-none-match").map(etag_list),
            if_modified_since: date("x-ms-source-if-modified-since"),
            if_unmodified_since: date("x-ms-source-if-unmodified-since"),
        };
        let read = self.read_copy_source(&src_b, &src_blob, sel, &cond).await?;
        let len = read
            .range
            .as_ref()
            .map_or(read.meta.size, |rg| rg.end - rg.start);
        let dst = self.bucket(r.container.as_deref().unwrap_or("")).await?;
        let md5 = header(h, "x-ms-source-content-md5");
        dst.origin
            .put_block(
                &dst.origin_bucket,
                r.blob.as_deref().unwrap_or(""),
                id,
                crate::origin::Upload {
                    len,
                    body: read.body.boxed(),
                },
                md5,
            )
            .await?;
        let mut headers = HeaderMap::new();
        if let Some(m) = md5 {
            set(&mut headers, "content-md5", m);
        }
        set(&mut headers, "x-ms-request-server-encrypted", "false");
        Ok(Reply::empty(StatusCode::CREATED, headers))
    }

    /// Reads a copy source through the cache: missing is `404 CannotVerifyCopySource`, a
    /// failed source condition `412 SourceConditionNotMet`.
    async fn read_copy_source(
        &self,
        src: &Arc<BucketBinding>,
        blob: &str,
        sel: Selection,
        cond: &Conditions,
    ) -> Result<crate::pipeline::ObjectRead, BlobError> {
        match self.pipeline.get(src, blob, sel, cond).await {
            Ok(read) => Ok(read),
            Err(e) if e.kind() == crate::error::ErrorKind::NotFound => Err(cannot_verify(
                StatusCode::NOT_FOUND,
                "The specified blob does not exist.",
            )),
            Err(e)
                if matches!(
                    e.kind(),
                    crate::error::ErrorKind::PreconditionFailed
                        | crate::error::ErrorKind::NotModified
                ) =>
            {
                Err(BlobError::new(
                    StatusCode::PRECONDITION_FAILED,
                    "SourceConditionNotMet",
                    "The source condition specified using HTTP conditional header(s) is not met.",
                ))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Copy Blob (and Copy Blob From URL), synchronous, within the account: the source — a
    /// blob of this Cistern, authorized by the SAS in its URL or else by the caller's own
    /// credentials — is read through the cache and streamed into a write of the destination,
    /// whatever the two origins. Answers `x-ms-copy-status: success`.
    async fn copy_blob(
        &self,
        r: &Routed,
        caller: &Caller,
        h: &HeaderMap,
        peer: Option<IpAddr>,
        now: SystemTime,
    ) -> Result<Reply, BlobError> {
        let src = self.copy_source(r, caller, h, peer, now).await?;
        let (src_b, src_blob) = src.emulated()?;
        // Destination conditions: create-only is served, others not yet.
        let create_only = header(h, "if-none-match").is_some_and(|v| v.trim() == "*");
        if ["if-match", "if-modified-since", "if-unmodified-since"]
            .iter()
            .any(|n| h.contains_key(*n))
            || (h.contains_key("if-none-match") && !create_only)
        {
            return Err(BlobError::not_implemented("conditional Copy Blob"));
        }
        let dst_b = self.bucket(r.container.as_deref().unwrap_or("")).await?;
        let blob = r.blob.as_deref().unwrap_or("");
        if create_only && self.pipeline.exists_at_origin(&dst_b, blob).await? {
            return Err(BlobError::new(
                StatusCode::CONFLICT,
                "BlobAlreadyExists",
                "The specified blob already exists.",
            ));
        }
        let date = |n| header(h, n).and_then(|v| httpdate::parse_http_date(v).ok());
        let cond = Conditions {
            if_match: header(h, "x-ms-source-if-match").map(etag_list),
            if_none_match: header(h, "x-ms-source-if-none-match").map(etag_list),
            if_modified_since: date("x-ms-source-if-modified-since"),
            if_unmodified_since: date("x-ms-source-if-unmodified-since"),
        };
        let read = self
            .read_copy_source(&src_b, &src_blob, Selection::All, &cond)
            .await?;
        let m = &read.meta;
        let given = put_options(h, false);
        // Put Blob From URL (`x-ms-blob-type` given): the request's properties, not the
        // source's, and a plain 201.
        let from_url = h.contains_key("x-ms-blob-type");
        if from_url && header(h, "x-ms-blob-type") != Some("BlockBlob") {
            return Err(BlobError::not_implemented(
                "Put Blob From URL of a page or append blob",
            ));
        }
        let mut opts = if from_url {
            given
        } else {
            crate::origin::PutOptions {
                content_md5: None,
                content_type: m.content_type.clone(),
                content_encoding: m.content_encoding.clone(),
                content_language: m.content_language.clone(),
                cache_control: m.cache_control.clone(),
                content_disposition: m.content_disposition.clone(),
                // Metadata given with the copy replaces the source's; else the source's is kept.
                user_metadata: if given.user_metadata.is_empty() {
                    m.user_metadata.clone()
                } else {
                    given.user_metadata
                },
                create_only: false,
                checksum: None,
            }
        };
        opts.create_only = create_only;
        let upload = crate::origin::Upload {
            len: m.size,
            body: read.body.boxed(),
        };
        let put = self
            .pipeline
            .put(&dst_b, blob, upload, &opts)
            .await
            .map_err(|e| already_exists(e, create_only))?;
        let mut headers = HeaderMap::new();
        set(&mut headers, "etag", &quoted(&put.etag));
        set(
            &mut headers,
            "last-modified",
            &xml::http_date(put.last_modified.unwrap_or(now)),
        );
        set(&mut headers, "x-ms-request-server-encrypted", "false");
        if from_url {
            return Ok(Reply::empty(StatusCode::CREATED, headers));
        }
        set(&mut headers, "x-ms-copy-id", &copy_id(now, blob));
        set(&mut headers, "x-ms-copy-status", "success");
        Ok(Reply::empty(StatusCode::ACCEPTED, headers))
    }

    /// Set Blob Metadata (the `x-ms-meta-*` given replace all metadata) and Set Blob
    /// Properties (the `x-ms-blob-content-*` and cache control given replace them all; one not
    /// given is cleared, as Azure does), without rewriting the bytes.
    async fn set_properties(
        &self,
        op: Operation,
        container: &str,
        blob: &str,
        h: &HeaderMap,
    ) -> Result<Reply, BlobError> {
        use crate::origin::PropertyKind;
        if [
            "x-ms-blob-content-length",
            "x-ms-sequence-number-action",
            "x-ms-lease-id",
        ]
        .iter()
        .any(|n| h.contains_key(*n))
        {
            return Err(BlobError::not_implemented(
                "Set Blob Properties of a page blob, or under a lease",
            ));
        }
        let b = self.bucket(container).await?;
        let given = put_options(h, false);
        let md5 = header(h, "x-ms-blob-content-md5").map(str::to_string);
        let which = if op == Operation::SetBlobMetadata {
            PropertyKind::Metadata
        } else {
            PropertyKind::Headers
        };
        let put = self
            .pipeline
            .set_properties(
                &b,
                blob,
                &conditions(h),
                |m| match which {
                    PropertyKind::Metadata => crate::origin::PutOptions {
                        content_md5: None,
                        content_type: m.content_type.clone(),
                        content_encoding: m.content_encoding.clone(),
                        content_language: m.content_language.clone(),
                        cache_control: m.cache_control.clone(),
                        content_disposition: m.content_disposition.clone(),
                        user_metadata: given.user_metadata,
                        create_only: false,
                        checksum: None,
                    },
                    PropertyKind::Headers => crate::origin::PutOptions {
                        content_md5: md5,
                        user_metadata: m.user_metadata.clone(),
                        ..given
                    },
                },
                which,
            )
            .await?;
        let mut headers = HeaderMap::new();
        set(&mut headers, "etag", &quoted(&put.etag));
        if let Some(t) = put.last_modified {
            set(&mut headers, "last-modified", &xml::http_date(t));
        }
        set(&mut headers, "x-ms-request-server-encrypted", "false");
        Ok(Reply::empty(StatusCode::OK, headers))
    }

    async fn get_blob(
        &self,
        container: &str,
        blob: &str,
        h: &HeaderMap,
    ) -> Result<Reply, BlobError> {
        let b = self.bucket(container).await?;
        let range = requested_range(h)?;
        let want_md5 =
            header(h, "x-ms-range-get-content-md5").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        if want_md5 && range.is_none() {
            return Err(BlobError::invalid_header(
                "x-ms-range-get-content-md5",
                "x-ms-range-get-content-md5 needs a range.",
            ));
        }
        if let (true, Some(RangeSpec::FromTo { first, last })) = (want_md5, range) {
            if last - first >= MAX_MD5_RANGE {
                return Err(BlobError::new(
                    StatusCode::BAD_REQUEST,
                    "OutOfRangeInput",
                    "The requested range for x-ms-range-get-content-md5 is larger than 4 MiB.",
                ));
            }
        }
        let sel = range.map_or(Selection::All, Selection::Range);
        let read = self
            .pipeline
            .get(&b, blob, sel, &read_conditions(h)?)
            .await?;
        let meta = &read.meta;
        let mut headers = HeaderMap::new();
        blob_headers(&mut headers, meta);
        set(&mut headers, CACHE_HEADER, read.cache.as_str());
        let (status, length) = match &read.range {
            Some(rg) => {
                set(
                    &mut headers,
                    "content-range",
                    &format!("bytes {}-{}/{}", rg.start, rg.end - 1, meta.size),
                );
                if let Some(md5) = &meta.content_md5 {
                    set(&mut headers, "x-ms-blob-content-md5", md5);
                }
                (StatusCode::PARTIAL_CONTENT, rg.end - rg.start)
            }
            None => {
                if let Some(md5) = &meta.content_md5 {
                    set(&mut headers, "content-md5", md5);
                    set(&mut headers, "x-ms-blob-content-md5", md5);
                }
                (StatusCode::OK, meta.size)
            }
        };
        if want_md5 {
            if length > MAX_MD5_RANGE {
                return Err(BlobError::new(
                    StatusCode::BAD_REQUEST,
                    "OutOfRangeInput",
                    "The requested range for x-ms-range-get-content-md5 is larger than 4 MiB.",
                ));
            }
            // At most 4 MiB: gathered to hash before the headers go out.
            let mut buf = BytesMut::with_capacity(length as usize);
            let mut body = read.body;
            while let Some(chunk) = body.try_next().await? {
                buf.extend_from_slice(&chunk);
            }
            set(&mut headers, "content-md5", &md5_b64(&buf));
            return Ok(Reply {
                status,
                headers,
                body: BlobBody::Full(Some(buf.freeze())),
                length: Some(length),
            });
        }
        Ok(Reply {
            status,
            headers,
            body: BlobBody::Stream(read.body),
            length: Some(length),
        })
    }

    async fn container_properties(&self, container: &str) -> Result<Reply, BlobError> {
        let b = self.bucket(container).await?;
        let created = self
            .container_list()
            .await
            .ok()
            .and_then(|all| {
                all.iter()
                    .find(|b| b.name == container)
                    .and_then(|b| b.created)
            })
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let mut h = HeaderMap::new();
        set(&mut h, "last-modified", &xml::http_date(created));
        set(&mut h, "etag", &quoted(&container_etag(created)));
        set(&mut h, "x-ms-lease-status", "unlocked");
        set(&mut h, "x-ms-lease-state", "available");
        set(&mut h, "x-ms-has-immutability-policy", "false");
        set(&mut h, "x-ms-has-legal-hold", "false");
        if b.public_read {
            set(&mut h, "x-ms-blob-public-access", "container");
        }
        Ok(Reply::empty(StatusCode::OK, h))
    }

    async fn list_containers(
        &self,
        account: &str,
        q: &[(String, String)],
        endpoint: &str,
    ) -> Result<Reply, BlobError> {
        let prefix = get(q, "prefix");
        let marker = get(q, "marker").filter(|m| !m.is_empty());
        let max = max_results(q)?;
        let with_metadata = container_includes(q)?;
        let all = self.pipeline.catalog().list().await?;
        // The marker is the last name of the previous page: the page starts after it.
        let mut visible = all
            .into_iter()
            .filter(|b| self.policy.can_see(account, &b.name))
            .filter(|b| prefix.is_none_or(|p| b.name.starts_with(p)))
            .filter(|b| marker.is_none_or(|m| b.name.as_str() > m));
        let items: Vec<ContainerItem> = visible
            .by_ref()
            .take(max.unwrap_or(MAX_RESULTS))
            .map(|b| {
                let t = b.created.unwrap_or(SystemTime::UNIX_EPOCH);
                ContainerItem {
                    name: b.name,
                    last_modified: t,
                    // Container listings quote ETags (blob listings do not), as Azure does.
                    etag: quoted(&container_etag(t)),
                    origin: b.listing,
                }
            })
            .collect();
        let next = visible.next().and(items.last()).map(|c| c.name.clone());
        xml_response(xml::list_containers(
            endpoint,
            prefix,
            marker,
            max,
            &items,
            with_metadata,
            next.as_deref(),
        ))
    }

    async fn list_blobs(
        &self,
        container: &str,
        q: &[(String, String)],
        endpoint: &str,
    ) -> Result<Reply, BlobError> {
        let b = self.bucket(container).await?;
        let prefix = get(q, "prefix");
        let delimiter = get(q, "delimiter").filter(|d| !d.is_empty());
        let marker = get(q, "marker").filter(|m| !m.is_empty());
        let max = max_results(q)?;
        let include = includes(q)?;
        // With metadata, each blob may cost a HEAD at the origin: smaller pages bound that
        // (a page may hold fewer than maxresults; the marker carries on).
        let page_max = if include.metadata {
            max.unwrap_or(MAX_RESULTS).min(MAX_METADATA_RESULTS)
        } else {
            max.unwrap_or(MAX_RESULTS)
        };
        let query = ListQuery {
            prefix: prefix.unwrap_or("").to_string(),
            delimiter: delimiter.map(str::to_string),
            max_keys: page_max,
            cursor: ListCursor::V1 {
                marker: marker.map(str::to_string),
            },
        };
        let page = self.pipeline.list(&b, &query).await?;
        let metas: Vec<Option<Arc<ObjectMeta>>> = if include.metadata {
            let keys: Vec<String> = page.entries.iter().map(|e| e.key.clone()).collect();
            futures::stream::iter(keys)
                .map(|key| {
                    // Owned handles: the stream lives inside the response future.
                    let (pipeline, b) = (Arc::clone(&self.pipeline), Arc::clone(&b));
                    async move {
                        match pipeline.head(&b, &key, None, &Conditions::default()).await {
                            Ok((m, _, _)) => Ok(Some(m)),
                            // Deleted since it was listed: listed without metadata.
                            Err(err) if err.kind() == crate::error::ErrorKind::NotFound => Ok(None),
                            Err(err) => Err(err),
                        }
                    }
                })
                .buffered(LIST_METADATA_CONCURRENCY)
                .try_collect()
                .await?
        } else {
            vec![None; page.entries.len()]
        };
        let mut items: Vec<Listed> = page
            .entries
            .iter()
            .zip(metas)
            .map(|(e, m)| {
                // Metadata of the version listed, when the lookup found that version.
                let m = m.filter(|m| m.etag == e.etag);
                Listed::Blob(BlobItem {
                    name: e.key.clone(),
                    size: e.size,
                    // Listings carry ETags unquoted, as Azure writes them.
                    etag: e.etag.clone(),
                    last_modified: e.last_modified,
                    created: m.as_ref().and_then(|m| m.created),
                    content_type: m.as_ref().and_then(|m| m.content_type.clone()),
                    content_md5: m.as_ref().and_then(|m| m.content_md5.clone()),
                    blob_type: m
                        .as_ref()
                        .and_then(|m| m.origin_kind.clone())
                        .unwrap_or_else(|| "BlockBlob".to_string()),
                    metadata: include
                        .metadata
                        .then(|| m.map(|m| m.user_metadata.clone()).unwrap_or_default()),
                })
            })
            .collect();
        items.extend(page.common_prefixes.iter().cloned().map(Listed::Prefix));
        items.sort_by(|a, b| name_of(a).cmp(name_of(b)));
        let echo = ListBlobsEcho {
            endpoint,
            container,
            prefix,
            marker,
            max,
            delimiter,
        };
        let next = if page.truncated {
            page.next.clone()
        } else {
            None
        };
        xml_response(xml::list_blobs(&echo, &items, next.as_deref()))
    }
}

fn name_of(l: &Listed) -> &str {
    match l {
        Listed::Blob(b) => &b.name,
        Listed::Prefix(p) => p,
    }
}

/// Containers have no ETag of their own here: one derived from the creation time stays
/// stable across requests.
fn container_etag(t: SystemTime) -> String {
    let ms = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("0x{ms:X}")
}

/// `Content-Length` of an upload, required.
fn content_length(h: &HeaderMap) -> Result<u64, BlobError> {
    header(h, "content-length")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| {
            BlobError::new(
                StatusCode::LENGTH_REQUIRED,
                "MissingContentLengthHeader",
                "Content-Length header value is required.",
            )
        })
}

/// The properties of a blob being written: `x-ms-blob-content-*` (and, for Put Blob, the
/// plain headers of the body), `x-ms-meta-*`, and the body's `Content-MD5` for Put Blob.
fn put_options(h: &HeaderMap, body_is_blob: bool) -> crate::origin::PutOptions {
    let opt = |a: &str, b: &str| {
        header(h, a)
            .or_else(|| body_is_blob.then(|| header(h, b)).flatten())
            .map(str::to_string)
    };
    let mut user_metadata: Vec<(String, String)> = h
        .iter()
        .filter_map(|(k, v)| {
            let name = k.as_str().strip_prefix("x-ms-meta-")?;
            Some((name.to_string(), v.to_str().ok()?.to_string()))
        })
        .collect();
    user_metadata.sort();
    crate::origin::PutOptions {
        content_md5: body_is_blob
            .then(|| header(h, "content-md5").map(str::to_string))
            .flatten(),
        content_type: opt("x-ms-blob-content-type", "content-type"),
        content_encoding: opt("x-ms-blob-content-encoding", "content-encoding"),
        content_language: opt("x-ms-blob-content-language", "content-language"),
        cache_control: opt("x-ms-blob-cache-control", "cache-control"),
        content_disposition: opt("x-ms-blob-content-disposition", "content-disposition"),
        user_metadata,
        create_only: false,
        checksum: None,
    }
}

/// The largest Append Block body (Azure's limit since 2022-11-02).
const MAX_APPEND_BLOCK: u64 = 100 << 20;

/// A create-only write the origin refused because the blob exists: Azure's 409.
fn already_exists(e: crate::error::Error, create_only: bool) -> BlobError {
    if create_only && e.kind() == crate::error::ErrorKind::PreconditionFailed {
        BlobError::new(
            StatusCode::CONFLICT,
            "BlobAlreadyExists",
            "The specified blob already exists.",
        )
    } else {
        e.into()
    }
}

/// 403/404 CannotVerifyCopySource: the copy source is missing or may not be read.
fn cannot_verify(status: StatusCode, message: &'static str) -> BlobError {
    BlobError::new(status, "CannotVerifyCopySource", message)
}

/// A copy id (a GUID, as Azure's): the copy is over when answered, so it only names it.
fn copy_id(now: SystemTime, blob: &str) -> String {
    use sha2::Digest;
    let nanos = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = sha2::Sha256::digest(format!("{nanos}/{seq}/{blob}"));
    let x = hex::encode(&d[..16]);
    format!(
        "{}-{}-{}-{}-{}",
        &x[..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..32]
    )
}

/// Block ids: base64 of at most 64 bytes, as Azure requires.
fn valid_block_id(id: &str) -> bool {
    base64::engine::general_purpose::STANDARD
        .decode(id)
        .is_ok_and(|b| !b.is_empty() && b.len() <= 64)
}

/// The most a block list body may hold (50,000 blocks of 64-byte ids, with room).
const MAX_BLOCK_LIST_BYTES: usize = 8 << 20;

/// Reads and parses a Put Block List body: `Latest`, `Committed` and `Uncommitted` entries in
/// order.
async fn read_block_list(mut body: RequestBody) -> Result<Vec<crate::origin::BlockRef>, BlobError> {
    use crate::origin::BlockRef;
    let invalid = || {
        BlobError::new(
            StatusCode::BAD_REQUEST,
            "InvalidXmlDocument",
            "XML specified is not syntactically valid.",
        )
    };
    let mut buf = BytesMut::new();
    while let Some(chunk) = body.try_next().await? {
        if buf.len() + chunk.len() > MAX_BLOCK_LIST_BYTES {
            return Err(BlobError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestBodyTooLarge",
                "The request body is too large.",
            ));
        }
        buf.extend_from_slice(&chunk);
    }
    let mut reader = quick_xml::Reader::from_reader(&buf[..]);
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    let mut text = String::new();
    let mut saw_root = false;
    loop {
        match reader.read_event().map_err(|_| invalid())? {
            quick_xml::events::Event::Start(e) => {
                let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                if name == "BlockList" {
                    saw_root = true;
                } else {
                    current = Some(name);
                    text.clear();
                }
            }
            quick_xml::events::Event::Text(t) if current.is_some() => {
                text.push_str(&t.unescape().map_err(|_| invalid())?);
            }
            quick_xml::events::Event::End(_) => {
                if let Some(name) = current.take() {
                    let id = text.trim().to_string();
                    if !valid_block_id(&id) {
                        return Err(BlobError::new(
                            StatusCode::BAD_REQUEST,
                            "InvalidBlockList",
                            "The specified block list is invalid.",
                        ));
                    }
                    out.push(match name.as_str() {
                        "Latest" => BlockRef::Latest(id),
                        "Committed" => BlockRef::Committed(id),
                        "Uncommitted" => BlockRef::Uncommitted(id),
                        _ => return Err(invalid()),
                    });
                }
            }
            quick_xml::events::Event::Eof => break,
            _ => {}
        }
    }
    if !saw_root {
        return Err(invalid());
    }
    Ok(out)
}

/// A SAS's `rscc`, `rscd`, `rsce`, `rscl` and `rsct` replace the response headers they name,
/// as Azure applies them (they are signed, so the SAS's issuer chose them).
fn apply_sas_overrides(caller: &Caller, h: &mut HeaderMap) {
    let sas = match caller {
        Caller::Sas(s) => Some(&**s),
        Caller::Delegated(d) => d.sas.as_ref(),
        _ => None,
    };
    let Some(sas) = sas else { return };
    let names = [
        "cache-control",
        "content-disposition",
        "content-encoding",
        "content-language",
        "content-type",
    ];
    for (name, value) in names.into_iter().zip(&sas.overrides) {
        if !value.is_empty() {
            set(h, name, value);
        }
    }
}

/// Snapshot and version reads bypass the cache (whose keys are the current versions').
fn is_version_read(q: &[(String, String)]) -> bool {
    get(q, "snapshot").is_some() || get(q, "versionid").is_some()
}

fn max_results(q: &[(String, String)]) -> Result<Option<usize>, BlobError> {
    match get(q, "maxresults") {
        None => Ok(None),
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n > 0 => Ok(Some((n as usize).min(MAX_RESULTS))),
            _ => Err(BlobError::new(
                StatusCode::BAD_REQUEST,
                "OutOfRangeQueryParameterValue",
                "One of the query parameters specified in the request URI is outside the permissible range.",
            )
            .with_detail("QueryParameterName", "maxresults")),
        },
    }
}

/// List Containers' `include=`: whether `metadata` is asked. `deleted` and `system` are
/// accepted and add nothing: Cistern's namespace holds its live buckets only.
fn container_includes(q: &[(String, String)]) -> Result<bool, BlobError> {
    let mut metadata = false;
    for (_, v) in q.iter().filter(|(k, _)| k.eq_ignore_ascii_case("include")) {
        for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match item.to_ascii_lowercase().as_str() {
                "metadata" => metadata = true,
                "deleted" | "system" => {}
                _ => {
                    return Err(BlobError::invalid_query(
                        "include",
                        item,
                        "Value for one of the query parameters specified in the request URI is invalid.",
                    ))
                }
            }
        }
    }
    Ok(metadata)
}

#[derive(Debug, Default)]
struct Include {
    metadata: bool,
}

/// `include=`: `metadata` is served; the dataset-history kinds (snapshots, versions,
/// deleted, uncommitted) are not, and say so; the rest only add fields Cistern omits.
fn includes(q: &[(String, String)]) -> Result<Include, BlobError> {
    let mut inc = Include::default();
    for (k, v) in q {
        if !k.eq_ignore_ascii_case("include") {
            continue;
        }
        for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match item.to_ascii_lowercase().as_str() {
                "metadata" => inc.metadata = true,
                "snapshots" | "versions" | "deleted" | "uncommittedblobs"
                | "deletedwithversions" => {
                    return Err(BlobError::not_implemented(&format!(
                        "List Blobs with include={item}"
                    )))
                }
                "copy" | "tags" | "immutabilitypolicy" | "legalhold" | "permissions"
                | "system" => {}
                _ => {
                    return Err(BlobError::invalid_query(
                        "include",
                        item,
                        "Value for one of the query parameters specified in the request URI is invalid.",
                    ))
                }
            }
        }
    }
    Ok(inc)
}

/// Renders an error: status, `x-ms-error-code`, XML body (none for HEAD and 304).
fn error_reply(e: BlobError, request_id: &str, head: bool) -> Reply {
    let mut h = HeaderMap::new();
    set(&mut h, "x-ms-error-code", &e.code);
    if let Some(size) = e.object_size {
        set(&mut h, "content-range", &format!("bytes */{size}"));
    }
    if let Some((etag, lm)) = e.validators.as_deref() {
        set(&mut h, "etag", &quoted(etag));
        set(&mut h, "last-modified", &xml::http_date(*lm));
    }
    if head || e.status == StatusCode::NOT_MODIFIED {
        return Reply::empty(e.status, h);
    }
    set(&mut h, "content-type", "application/xml");
    let body = Bytes::from(e.xml(request_id));
    Reply {
        status: e.status,
        length: Some(body.len() as u64),
        headers: h,
        body: BlobBody::Full(Some(body)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(
            parse_range("bytes=0-9"),
            Some(RangeSpec::FromTo { first: 0, last: 9 })
        );
        assert_eq!(parse_range("bytes=5-"), Some(RangeSpec::From { first: 5 }));
        assert_eq!(parse_range("bytes=-5"), Some(RangeSpec::Suffix { len: 5 }));
        assert_eq!(parse_range("bytes=9-0"), None);
        assert_eq!(parse_range("items=0-1"), None);
        assert_eq!(parse_range("bytes=-"), None);
        let mut h = HeaderMap::new();
        h.insert("range", HeaderValue::from_static("bytes=0-1"));
        h.insert("x-ms-range", HeaderValue::from_static("bytes=2-3"));
        assert_eq!(
            requested_range(&h).ok().flatten(),
            Some(RangeSpec::FromTo { first: 2, last: 3 })
        );
    }

    #[test]
    fn etag_lists() {
        assert_eq!(etag_list("*"), EtagMatch::Any);
        assert_eq!(
            etag_list("\"0x1\", W/\"0x2\""),
            EtagMatch::OneOf(vec!["0x1".into(), "0x2".into()])
        );
    }

    #[test]
    fn include_values() {
        let q = |s: &str| query_pairs(s);
        assert!(includes(&q("include=metadata")).expect("ok").metadata);
        assert!(!includes(&q("include=copy,tags")).expect("ok").metadata);
        assert_eq!(
            includes(&q("include=snapshots"))
                .err()
                .map(|e| e.code.into_owned()),
            Some("NotImplemented".to_string())
        );
        assert_eq!(
            includes(&q("include=bogus"))
                .err()
                .map(|e| e.code.into_owned()),
            Some("InvalidQueryParameterValue".to_string())
        );
    }
}
