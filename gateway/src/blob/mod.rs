//! The Azure Blob dialect front: our own router ([`router`]) parses each request into a
//! closed operation; [`auth`] authenticates (Shared Key, SAS, anonymous) and authorizes it;
//! the read operations run on the same pipeline and cache as the S3 front; [`error`] is the
//! one place internal errors become Blob wire errors. `batch` runs Blob Batch sub-requests
//! through this same front; `cors` answers preflights and adds CORS headers from the Azure
//! origin's rules.

pub mod auth;
pub(crate) mod batch;
mod copy;
pub(crate) mod cors;
pub mod dfs;
pub mod error;
mod list;
pub(crate) mod read;
mod relay;
pub mod router;
pub(crate) mod write;
pub mod xml;

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use bytes::Bytes;
use cistern_auth::policy::Policy;
use futures::StreamExt;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use http_body::Frame;

use self::auth::{Accounts, Caller, Incoming};
use self::error::{already_exists, error_reply, BlobError};
use self::read::{blob_headers, conditions, read_conditions, user_metadata};
use self::router::{Operation, Routed};
use self::write::{content_length, put_options, read_block_list, valid_block_id};
use crate::pipeline::{Body, BucketBinding, Pipeline, CACHE_HEADER};

/// The service version Cistern answers with when the client names none.
pub const DEFAULT_VERSION: &str = "2025-11-05";

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

/// A request body as the front reads it (only uploads do).
pub type RequestBody = futures::stream::BoxStream<'static, crate::error::Result<Bytes>>;

/// The Blob front.
pub struct BlobFront {
    domains: Vec<String>,
    /// The Data Lake host-style suffixes: each Blob domain `blob.<rest>` as `dfs.<rest>`.
    dfs_domains: Vec<String>,
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

/// The error for a query that names a parameter twice, in either Azure dialect.
fn refuse_duplicates(q: &[(String, String)]) -> Option<BlobError> {
    let name = duplicate_parameter(q)?;
    if auth::is_sas_parameter(name) {
        // A SAS whose fields are given twice is not a SAS Azure accepts.
        return Some(BlobError::authorization_failure());
    }
    Some(BlobError::invalid_query(
        "duplicate",
        name,
        "A query parameter is given more than once.",
    ))
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

fn set(h: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(name, v);
    }
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
        let dfs_domains = domains
            .iter()
            .filter_map(|d| d.strip_prefix("blob.").map(|rest| format!("dfs.{rest}")))
            .collect();
        Self {
            domains,
            dfs_domains,
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
        let mut handled = self.respond(parts, body, peer, request_id, true).await;
        if let Some(origin) = parts.headers.get(http::header::ORIGIN) {
            if parts.method != Method::OPTIONS {
                self.add_cors_headers(origin, &parts.method, handled.response.headers_mut())
                    .await;
            }
        }
        handled
    }

    /// Handles one request (a whole one, or a Blob Batch sub-request), without CORS. Only a
    /// whole request may be a Data Lake one (`allow_dfs`): a batch holds Blob operations alone.
    async fn respond(
        &self,
        parts: &http::request::Parts,
        body: RequestBody,
        peer: Option<IpAddr>,
        request_id: &str,
        allow_dfs: bool,
    ) -> Handled {
        let version = header(&parts.headers, "x-ms-version")
            .filter(|v| v.len() <= 32)
            .unwrap_or(DEFAULT_VERSION)
            .to_string();
        let head = parts.method == Method::HEAD;
        // Without Data Lake domains only the request's shape can make it a DFS one.
        let dfs_host = if self.dfs_domains.is_empty() || !allow_dfs {
            None
        } else {
            header(&parts.headers, "host")
                .or_else(|| parts.uri.authority().map(|a| a.as_str()))
                .and_then(|h| router::host_account(h, &self.dfs_domains))
        };
        let (reply, op) = if dfs_host.is_some() || (allow_dfs && dfs::wanted(parts)) {
            match self.dfs_dispatch(parts, body, peer, dfs_host).await {
                (Ok(r), op) => (r, op),
                (Err(e), op) => (dfs::error_reply(e, request_id, head), op),
            }
        } else {
            match self.dispatch(parts, body, peer, request_id).await {
                (Ok(r), op) => (r, op),
                (Err(e), op) => (error_reply(e, request_id, head), op),
            }
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
        if let Some(e) = refuse_duplicates(&query) {
            return (Err(e), "unknown");
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
        let result = async {
            let caller = self.admit(&routed, parts, &query, peer).await?;
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

    /// Authenticates the request and authorizes the caller for `routed` (its operation and
    /// the resource it names), as every request is, cache hits included.
    async fn admit(
        &self,
        routed: &Routed,
        parts: &http::request::Parts,
        query: &[(String, String)],
        peer: Option<IpAddr>,
    ) -> Result<Caller, BlobError> {
        let now = SystemTime::now();
        let incoming = Incoming {
            method: &parts.method,
            raw_path: parts.uri.path(),
            raw_query: parts.uri.query().unwrap_or(""),
            query,
            headers: &parts.headers,
            peer,
        };
        let caller = auth::authenticate(&self.accounts, routed, &incoming, now)?;
        if matches!(caller, Caller::Anonymous) && !self.accounts.contains(&routed.account) {
            return Err(BlobError::resource_not_found());
        }
        self.authorize(&caller, routed, peer, now).await?;
        Ok(caller)
    }

    /// Authorizes an authenticated caller for `routed`.
    async fn authorize(
        &self,
        caller: &Caller,
        routed: &Routed,
        peer: Option<IpAddr>,
        now: SystemTime,
    ) -> Result<(), BlobError> {
        auth::authorize(
            &self.policy,
            &self.pipeline,
            &self.judgements,
            caller,
            routed,
            peer,
            now,
        )
        .await
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
                let (meta, status, _) = match self.pipeline.head(&b, blob, None, &cond).await {
                    Err(e) if e.kind() == crate::error::ErrorKind::NotFound => {
                        // A directory made through the DFS front, as a Data Lake account's
                        // Blob endpoint shows it (the Data Lake SDKs ask it there).
                        return match self.folder_as_blob(&b, blob).await? {
                            Some(reply) if r.op == Operation::GetBlobProperties => Ok(reply),
                            _ => Err(e.into()),
                        };
                    }
                    other => other?,
                };
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

    async fn bucket(&self, container: &str) -> Result<Arc<BucketBinding>, BlobError> {
        Ok(self.pipeline.catalog().resolve(container).await?)
    }
}

/// A GUID-shaped identifier, unique per call and process (batch response boundaries, copy ids,
/// lease ids): a digest of the time, a counter and `seed`.
pub(crate) fn guid(seed: &str) -> String {
    use sha2::Digest;
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let x = hex::encode(&sha2::Sha256::digest(format!("{nanos}/{seq}/{seed}"))[..16]);
    format!(
        "{}-{}-{}-{}-{}",
        &x[..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..32]
    )
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
