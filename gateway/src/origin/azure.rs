//! The `azure_blob` origin: an Azure Blob Storage account (or Azurite), read with ranged GETs
//! carrying `If-Match`, signed with Shared Key (our signer, shared with the Blob front's
//! verifier) or authorized with a SAS token or an Entra ID bearer token ([`super::entra`]),
//! through one pooled HTTP client per origin.
//!
//! Error classification (Azure Storage REST reference, "Blob service error codes" and
//! "Common REST API error codes"), by status and `x-ms-error-code`:
//!
//! | HTTP / Azure code                                        | internal kind        |
//! |----------------------------------------------------------|----------------------|
//! | 404 `BlobNotFound`                                       | `NotFound`           |
//! | 404 `ContainerNotFound`                                  | `NoSuchBucket`       |
//! | 412 `ConditionNotMet` (we sent `If-Match`)               | `ObjectChanged`      |
//! | 400 `Md5Mismatch`, `InvalidMd5` (uploads)                | `BadDigest`          |
//! | 403 `AuthenticationFailed`, `AuthorizationFailure`, …     | `AccessDenied`       |
//! | 409 `BlobArchived` and other conflicts, 400 `Invalid*`   | `InvalidArgument`    |
//! | 503 `ServerBusy`, 429                                    | `Throttled` (retry)  |
//! | 500 `InternalError`, `OperationTimedOut`, 502, 504, I/O  | `OriginUnavailable` (retry) |
//! | 501                                                      | `NotImplemented`     |

use std::ops::Range;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use cistern_auth::sharedkey::{self, Scheme};
use cistern_auth::sigv4::uri_encode;
use cistern_auth::Secret;
use cistern_cache::ObjectMeta;
use http::{HeaderMap, Method, StatusCode};
use serde::Deserialize;

use super::wire::{header, header_pairs, ranged_answer, read_text, unquote, xml_code};
use super::BlockRef;
use super::{
    Access, BucketEntry, ForeignCredential, ListCursor, ListEntry, ListPage, ListQuery, Origin,
    PartInfo, PassResponse, Passthrough, PutOptions, PutResult, RangeRead, Upload,
};
use crate::error::{Error, ErrorKind, Result};

/// The largest single Put Blob Azure accepts.
const MAX_PUT_BLOB: u64 = 5000 << 20;

/// Each `<Container>` of a List Containers document as (name, its `<Properties>` and
/// `<Metadata>` elements verbatim), in document order. The name is `<Name>`'s raw text: a
/// name that needed escaping matches no parsed name, and its entry is described by Cistern.
fn container_listings(doc: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = doc;
    while let Some(start) = rest.find("<Container>") {
        let body = &rest[start + "<Container>".len()..];
        let Some(end) = body.find("</Container>") else {
            break;
        };
        let entry = &body[..end];
        rest = &body[end..];
        let name = between(entry, "<Name>", "</Name>").unwrap_or_default();
        let mut listing = String::new();
        for (open, close) in [
            ("<Properties>", "</Properties>"),
            ("<Metadata>", "</Metadata>"),
        ] {
            if let Some(inner) = between(entry, open, close) {
                listing.push_str(open);
                listing.push_str(inner);
                listing.push_str(close);
            }
        }
        out.push((name.to_string(), listing));
    }
    out
}

fn between<'a>(s: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let from = s.find(open)? + open.len();
    let len = s[from..].find(close)?;
    Some(&s[from..from + len])
}

/// The REST version Cistern speaks to Azure origins.
pub const API_VERSION: &str = "2023-11-03";

/// How an Azure origin is authorized.
#[derive(Debug, Clone)]
pub enum AzureCredential {
    /// Shared Key with the account key (base64).
    SharedKey(Secret),
    /// A SAS token (the query string, with or without a leading `?`).
    Sas(Secret),
    /// Microsoft Entra ID access tokens (workload identity, managed identity, client secret).
    Entra(super::entra::EntraSource),
    /// No credentials: public containers only.
    Anonymous,
}

/// Settings of an Azure Blob origin.
#[derive(Debug, Clone)]
pub struct AzureOriginConfig {
    /// `https://<account>.blob.core.windows.net`, or an emulator URL with the account in the
    /// path, `http://127.0.0.1:10000/devstoreaccount1`.
    pub endpoint: String,
    /// The storage account name.
    pub account: String,
    /// Credentials.
    pub credential: AzureCredential,
}

enum Auth {
    SharedKey(Vec<u8>),
    Sas(Vec<(String, String)>),
    Bearer(super::entra::TokenSource),
    Anonymous,
}

/// An Azure Blob origin.
pub struct AzureOrigin {
    client: reqwest::Client,
    /// `scheme://authority`.
    base: String,
    /// The path prefix (`/devstoreaccount1` for emulator-style endpoints, else empty).
    base_path: String,
    account: String,
    auth: Auth,
}

impl std::fmt::Debug for AzureOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureOrigin")
            .field("base", &self.base)
            .field("base_path", &self.base_path)
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

impl AzureOrigin {
    /// Builds the client; fails on a malformed endpoint or key.
    pub fn new(cfg: &AzureOriginConfig) -> std::result::Result<Self, String> {
        let uri: http::Uri = cfg
            .endpoint
            .parse()
            .map_err(|e| format!("invalid endpoint {:?}: {e}", cfg.endpoint))?;
        let scheme = uri.scheme_str().unwrap_or("https");
        if scheme != "http" && scheme != "https" {
            return Err(format!("endpoint {:?} must be http or https", cfg.endpoint));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| format!("endpoint {:?} has no host", cfg.endpoint))?;
        if uri.query().is_some() {
            return Err("the endpoint must not carry a query; give a SAS as `sas`".into());
        }
        let base_path = uri.path().trim_end_matches('/').to_string();
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let auth = match &cfg.credential {
            AzureCredential::SharedKey(k) => Auth::SharedKey(
                sharedkey::decode_key(k.expose()).ok_or("the account key is not base64")?,
            ),
            AzureCredential::Sas(t) => {
                let t = t.expose().trim_start_matches('?');
                let pairs: Vec<(String, String)> = form_urlencoded::parse(t.as_bytes())
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect();
                if !pairs.iter().any(|(k, _)| k == "sig") {
                    return Err("the SAS token has no sig".into());
                }
                Auth::Sas(pairs)
            }
            AzureCredential::Anonymous => Auth::Anonymous,
            AzureCredential::Entra(source) => Auth::Bearer(super::entra::TokenSource::new(
                source.clone(),
                client.clone(),
            )),
        };
        Ok(Self {
            client,
            base: format!("{scheme}://{authority}"),
            base_path,
            account: cfg.account.clone(),
            auth,
        })
    }

    /// Builds, signs and sends one request; returns the response when its status is a success
    /// (or one of `accept`), else the classified error.
    async fn send(
        &self,
        method: Method,
        container: Option<&str>,
        blob: Option<&str>,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        accept: &[StatusCode],
    ) -> Result<reqwest::Response> {
        self.send_as(method, container, blob, query, headers, accept, None, None)
            .await
    }

    /// [`Self::send`], authorized with a client's own credential instead of the origin's
    /// when `foreign` is given.
    #[allow(clippy::too_many_arguments)] // reason: send's arguments plus the credential
    async fn send_as(
        &self,
        method: Method,
        container: Option<&str>,
        blob: Option<&str>,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        accept: &[StatusCode],
        foreign: Option<&ForeignCredential>,
        body: Option<reqwest::Body>,
    ) -> Result<reqwest::Response> {
        let resp = self
            .dispatch(
                method.clone(),
                container,
                blob,
                query,
                headers,
                foreign,
                body,
            )
            .await?;
        self.check(resp, &method, accept, foreign).await
    }

    /// Builds, authorizes and sends one request; any status comes back.
    #[allow(clippy::too_many_arguments)] // reason: send_as's arguments but the accepted statuses
    async fn dispatch(
        &self,
        method: Method,
        container: Option<&str>,
        blob: Option<&str>,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        foreign: Option<&ForeignCredential>,
        body: Option<reqwest::Body>,
    ) -> Result<reqwest::Response> {
        let mut path = self.base_path.clone();
        if let Some(c) = container {
            path.push('/');
            path.push_str(&uri_encode(c, false));
        }
        if let Some(b) = blob {
            if b.split('/').any(|s| s == "." || s == "..") {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    "The key cannot be served by this origin",
                ));
            }
            path.push('/');
            path.push_str(&uri_encode(b, true));
        }
        if path.is_empty() {
            path.push('/');
        }
        let mut pairs: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        match (foreign, &self.auth) {
            (Some(ForeignCredential::Sas(sas)), _) | (None, Auth::Sas(sas)) => {
                pairs.extend(sas.iter().cloned());
            }
            _ => {}
        }
        let raw_query = pairs
            .iter()
            .map(|(k, v)| format!("{}={}", uri_encode(k, false), uri_encode(v, false)))
            .collect::<Vec<_>>()
            .join("&");
        let mut url = format!("{}{path}", self.base);
        if !raw_query.is_empty() {
            url.push('?');
            url.push_str(&raw_query);
        }
        let date = httpdate::fmt_http_date(SystemTime::now());
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        all.push(("x-ms-date", &date));
        all.push(("x-ms-version", API_VERSION));
        let mut req = self.client.request(method.clone(), &url);
        for (k, v) in &all {
            req = req.header(*k, *v);
        }
        match (foreign, &self.auth) {
            (Some(ForeignCredential::Bearer(token)), _) => {
                req = req.header("authorization", format!("Bearer {token}"));
            }
            (Some(_), _) => {}
            (None, Auth::Bearer(source)) => {
                let token = source.token().await?;
                req = req.header("authorization", format!("Bearer {token}"));
            }
            (None, _) => {}
        }
        if let (None, Auth::SharedKey(key)) = (foreign, &self.auth) {
            let signed = sharedkey::Request {
                method: method.as_str(),
                account: &self.account,
                raw_path: &path,
                raw_query: &raw_query,
                headers: &all,
            };
            req = req.header(
                "authorization",
                sharedkey::authorization(&signed, Scheme::SharedKey, key),
            );
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        req.send().await.map_err(super::wire::send_failed)
    }

    /// Sends a relayed request (see [`Origin::passthrough`]) with its body, if any, and its
    /// length (Azure wants Content-Length on every PUT, zero included; Shared Key signs a zero
    /// one as the empty string).
    async fn relay(
        &self,
        req: &Passthrough,
        body: Option<(reqwest::Body, u64)>,
    ) -> Result<PassResponse> {
        use futures::StreamExt as _;
        let query: Vec<(&str, &str)> = req
            .query
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let length = body.as_ref().map(|(_, n)| n.to_string());
        let mut headers: Vec<(&str, &str)> = req
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        if let Some(n) = &length {
            headers.push(("content-length", n));
        }
        let container = (!req.bucket.is_empty()).then_some(req.bucket.as_str());
        let blob = (!req.key.is_empty()).then_some(req.key.as_str());
        let resp = self
            .dispatch(
                req.method.clone(),
                container,
                blob,
                &query,
                &headers,
                None,
                body.map(|(b, _)| b),
            )
            .await?;
        let resp = if req.verbatim {
            resp
        } else {
            self.check(
                resp,
                &req.method,
                &[
                    StatusCode::NOT_MODIFIED,
                    StatusCode::PRECONDITION_FAILED,
                    StatusCode::RANGE_NOT_SATISFIABLE,
                ],
                None,
            )
            .await?
        };
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp
            .bytes_stream()
            .map(|r| r.map_err(super::wire::body_failed))
            .boxed();
        Ok(PassResponse {
            status,
            headers,
            body,
        })
    }

    /// The response when its status is a success or one of `accept`, else the classified error.
    async fn check(
        &self,
        resp: reqwest::Response,
        method: &Method,
        accept: &[StatusCode],
        foreign: Option<&ForeignCredential>,
    ) -> Result<reqwest::Response> {
        let status = resp.status();
        if status.is_success() || accept.contains(&status) {
            return Ok(resp);
        }
        if foreign.is_none()
            && (status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN)
        {
            if let Auth::Bearer(source) = &self.auth {
                // Revoked or rotated: the next attempt fetches a new token.
                source.invalidate().await;
            }
        }
        let code = header(resp.headers(), "x-ms-error-code").map(str::to_string);
        let code = match code {
            Some(c) => c,
            None if *method == Method::HEAD => String::new(),
            None => xml_code(&resp.text().await.unwrap_or_default()).unwrap_or_default(),
        };
        Err(classify(status, &code))
    }

    /// Put Block List with the object's properties.
    async fn put_block_list(
        &self,
        bucket: &str,
        key: &str,
        xml: String,
        opts: &PutOptions,
    ) -> Result<PutResult> {
        let mut owned: Vec<(String, String)> =
            vec![("content-length".into(), xml.len().to_string())];
        if opts.create_only {
            owned.push(("if-none-match".into(), "*".into()));
        }
        owned.extend(content_headers(opts));
        owned.extend(metadata_headers(opts));
        let headers = header_pairs(&owned);
        let resp = self
            .send_as(
                Method::PUT,
                Some(bucket),
                Some(key),
                &[("comp", "blocklist")],
                &headers,
                &[],
                None,
                Some(reqwest::Body::from(xml)),
            )
            .await?;
        let h = resp.headers();
        Ok(PutResult {
            etag: header(h, "etag").map(unquote).unwrap_or_default(),
            last_modified: http_time(header(h, "last-modified")),
            version_id: None,
            origin_headers: Vec::new(),
        })
    }
}

/// Maps an origin error response to an internal error (see the table in the module docs).
fn classify(status: StatusCode, code: &str) -> Error {
    let (kind, msg) = match (status.as_u16(), code) {
        (404, "ContainerNotFound") => (
            ErrorKind::NoSuchBucket,
            "The specified container does not exist",
        ),
        (404, _) => (ErrorKind::NotFound, "The specified blob does not exist"),
        (409, "ContainerAlreadyExists") => {
            (ErrorKind::BucketExists, "The container already exists")
        }
        (412, "AppendPositionConditionNotMet" | "MaxBlobSizeConditionNotMet") => (
            ErrorKind::PreconditionFailed,
            "The append condition was not met",
        ),
        (409, "InvalidBlobType") => (ErrorKind::InvalidArgument, "The blob is not an append blob"),
        (409, "BlobAlreadyExists") => (
            ErrorKind::PreconditionFailed,
            "An object already has this key",
        ),
        (400, "Md5Mismatch" | "InvalidMd5") => (
            ErrorKind::BadDigest,
            "The MD5 value specified in the request did not match the body",
        ),
        (412, c) if c.starts_with("Lease") => (
            ErrorKind::Leased,
            "There is currently a lease on the resource and no lease ID was specified",
        ),
        (412, _) => (ErrorKind::ObjectChanged, "The object changed at the origin"),
        (401 | 403, _) => (ErrorKind::AccessDenied, "The origin refused access"),
        (429 | 503, _) => (ErrorKind::Throttled, "The origin is throttling requests"),
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
        dialect: super::Dialect::Blob,
        status: status.as_u16(),
        code: code.to_string(),
    })
}

fn http_time(v: Option<&str>) -> Option<SystemTime> {
    v.and_then(|v| httpdate::parse_http_date(v).ok())
}

/// Object metadata from Get Blob / Get Blob Properties headers; `size` is the blob's size.
fn meta_from_headers(h: &HeaderMap, size: u64) -> ObjectMeta {
    let opt = |n: &str| header(h, n).map(str::to_owned);
    let mut user_metadata: Vec<(String, String)> = h
        .iter()
        .filter_map(|(k, v)| {
            let name = k.as_str().strip_prefix("x-ms-meta-")?;
            Some((name.to_string(), v.to_str().ok()?.to_string()))
        })
        .collect();
    user_metadata.sort();
    ObjectMeta {
        size,
        etag: header(h, "etag").map(unquote).unwrap_or_default(),
        last_modified: http_time(header(h, "last-modified")).unwrap_or(SystemTime::UNIX_EPOCH),
        content_type: opt("content-type"),
        content_encoding: opt("content-encoding"),
        cache_control: opt("cache-control"),
        content_disposition: opt("content-disposition"),
        content_language: opt("content-language"),
        user_metadata,
        // On a ranged read the whole blob's MD5 is in x-ms-blob-content-md5.
        content_md5: opt("x-ms-blob-content-md5").or_else(|| {
            header(h, "content-range")
                .is_none()
                .then(|| opt("content-md5"))
                .flatten()
        }),
        created: http_time(header(h, "x-ms-creation-time")),
        origin_kind: opt("x-ms-blob-type"),
        origin_headers: ORIGIN_HEADERS
            .iter()
            .filter_map(|n| Some((n.to_string(), header(h, n)?.to_string())))
            .collect(),
        // A lease that is breaking, or held for a fixed time, ends by itself.
        volatile: header(h, "x-ms-lease-state") == Some("breaking")
            || header(h, "x-ms-lease-duration") == Some("fixed"),
    }
}

/// Response headers describing a blob that the Blob front returns as Azure sent them (through
/// Cistern a lease, tier or tag change forgets the cached copy; a lease that lapses on its own
/// shows once the metadata is revalidated).
const ORIGIN_HEADERS: &[&str] = &[
    "x-ms-lease-status",
    "x-ms-lease-state",
    "x-ms-lease-duration",
    "x-ms-blob-sequence-number",
    "x-ms-blob-committed-block-count",
    "x-ms-blob-sealed",
    "x-ms-server-encrypted",
    "x-ms-encryption-scope",
    "x-ms-access-tier",
    "x-ms-access-tier-inferred",
    "x-ms-access-tier-change-time",
    "x-ms-archive-status",
    "x-ms-tag-count",
    "x-ms-version-id",
    "x-ms-is-current-version",
    "x-ms-copy-id",
    "x-ms-copy-status",
    "x-ms-copy-source",
    "x-ms-copy-progress",
    "x-ms-copy-completion-time",
    "x-ms-immutability-policy-until-date",
    "x-ms-immutability-policy-mode",
    "x-ms-legal-hold",
    "x-ms-expiry-time",
    "x-ms-last-access-time",
];

#[derive(Debug, Deserialize)]
struct XmlContainers {
    #[serde(rename = "Containers", default)]
    containers: XmlContainerList,
    #[serde(rename = "NextMarker", default)]
    next_marker: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct XmlContainerList {
    #[serde(rename = "Container", default)]
    container: Vec<XmlContainer>,
}

#[derive(Debug, Deserialize)]
struct XmlContainer {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Properties", default)]
    properties: XmlProperties,
}

#[derive(Debug, Default, Deserialize)]
struct XmlProperties {
    #[serde(rename = "Last-Modified", default)]
    last_modified: Option<String>,
    #[serde(rename = "Etag", default)]
    etag: Option<String>,
    #[serde(rename = "Content-Length", default)]
    content_length: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct XmlBlobsResult {
    #[serde(rename = "Blobs", default)]
    blobs: XmlBlobs,
    #[serde(rename = "NextMarker", default)]
    next_marker: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct XmlBlobs {
    #[serde(rename = "$value", default)]
    items: Vec<XmlBlobItem>,
}

#[derive(Debug, Deserialize)]
enum XmlBlobItem {
    Blob(XmlBlob),
    BlobPrefix(XmlName),
}

#[derive(Debug, Deserialize)]
struct XmlBlob {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Properties", default)]
    properties: XmlProperties,
}

#[derive(Debug, Deserialize)]
struct XmlName {
    #[serde(rename = "Name")]
    name: String,
}

fn bad_xml(e: quick_xml::DeError) -> Error {
    Error::new(
        ErrorKind::OriginUnavailable,
        "The origin sent an unreadable listing",
    )
    .with_source(e)
}

/// Most containers fetched for one catalog listing (pages of 5000).
const MAX_CONTAINER_PAGES: usize = 20;

#[async_trait]
impl Origin for AzureOrigin {
    fn dialect(&self) -> super::Dialect {
        super::Dialect::Blob
    }

    async fn list_buckets(&self) -> Result<Vec<BucketEntry>> {
        let mut out = Vec::new();
        let mut marker: Option<String> = None;
        for _ in 0..MAX_CONTAINER_PAGES {
            let mut q = vec![("comp", "list"), ("include", "metadata")];
            if let Some(m) = &marker {
                q.push(("marker", m.as_str()));
            }
            let resp = self.send(Method::GET, None, None, &q, &[], &[]).await?;
            let text = read_text(resp).await?;
            let parsed: XmlContainers = quick_xml::de::from_str(&text).map_err(bad_xml)?;
            let mut raw = container_listings(&text).into_iter();
            out.extend(parsed.containers.container.into_iter().map(|c| {
                // The raw entries come in the same order as the parsed ones.
                let listing = raw.next().filter(|(n, _)| *n == c.name).map(|(_, l)| l);
                BucketEntry {
                    name: c.name,
                    created: http_time(c.properties.last_modified.as_deref()),
                    listing,
                }
            }));
            marker = parsed.next_marker.filter(|m| !m.is_empty());
            if marker.is_none() {
                break;
            }
        }
        Ok(out)
    }

    async fn bucket_exists(&self, bucket: &str) -> Result<bool> {
        match self
            .send(
                Method::HEAD,
                Some(bucket),
                None,
                &[("restype", "container")],
                &[],
                &[],
            )
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
        if range.is_empty() {
            let meta = self.head(bucket, key).await?;
            return Ok(RangeRead {
                meta,
                data: Bytes::new(),
            });
        }
        let range_h = format!("bytes={}-{}", range.start, range.end - 1);
        let quoted = if_match.map(|e| format!("\"{e}\""));
        let mut headers = vec![("x-ms-range", range_h.as_str())];
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
        if resp.status() == StatusCode::RANGE_NOT_SATISFIABLE {
            // The range starts past the end (or the blob is empty): the caller still needs
            // the metadata.
            let meta = self.head(bucket, key).await?;
            if if_match.is_some_and(|m| m != meta.etag) {
                return Err(Error::new(
                    ErrorKind::ObjectChanged,
                    "The object changed at the origin",
                ));
            }
            return Ok(RangeRead {
                meta,
                data: Bytes::new(),
            });
        }
        // Azure honours x-ms-range; a 200 is a whole (small) blob from offset 0.
        ranged_answer(resp, range, if_match, meta_from_headers).await
    }

    async fn part(&self, bucket: &str, key: &str, part: u32) -> Result<PartInfo> {
        // Blocks are not parts: the whole blob is part 1.
        super::single_part(&self.head(bucket, key).await?, part)
    }

    /// Put Blob (a block blob, one request: up to 5000 MiB) with `Content-MD5` so that Azure
    /// refuses a mismatching body without storing it.
    async fn put(
        &self,
        bucket: &str,
        key: &str,
        upload: Upload,
        opts: &PutOptions,
    ) -> Result<PutResult> {
        // Azure takes at most 5000 MiB in one Put Blob; larger bodies go in blocks (or parts).
        if upload.len > MAX_PUT_BLOB {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "A single upload to this origin may hold at most 5000 MiB; use a multipart or block upload",
            ));
        }
        let upload = super::upload::settled(upload, opts.content_md5.as_deref()).await?;
        let len = upload.len.to_string();
        let mut owned: Vec<(String, String)> = vec![
            ("content-length".into(), len),
            ("x-ms-blob-type".into(), "BlockBlob".into()),
        ];
        if let Some(m) = &opts.content_md5 {
            owned.push(("content-md5".into(), m.clone()));
        }
        if opts.create_only {
            owned.push(("if-none-match".into(), "*".into()));
        }
        owned.extend(content_headers(opts));
        owned.extend(metadata_headers(opts));
        let headers = header_pairs(&owned);
        let resp = self
            .send_as(
                Method::PUT,
                Some(bucket),
                Some(key),
                &[],
                &headers,
                &[],
                None,
                Some(reqwest::Body::wrap_stream(upload.body)),
            )
            .await?;
        let h = resp.headers();
        Ok(PutResult {
            etag: header(h, "etag").map(unquote).unwrap_or_default(),
            last_modified: http_time(header(h, "last-modified")),
            version_id: None,
            origin_headers: Vec::new(),
        })
    }

    /// Put Blob of an empty append blob.
    async fn create_appendable(
        &self,
        bucket: &str,
        key: &str,
        opts: &PutOptions,
    ) -> Result<PutResult> {
        let mut owned: Vec<(String, String)> = vec![
            ("content-length".into(), "0".into()),
            ("x-ms-blob-type".into(), "AppendBlob".into()),
        ];
        if opts.create_only {
            owned.push(("if-none-match".into(), "*".into()));
        }
        owned.extend(content_headers(opts));
        owned.extend(metadata_headers(opts));
        let headers = header_pairs(&owned);
        let resp = self
            .send(Method::PUT, Some(bucket), Some(key), &[], &headers, &[])
            .await?;
        let h = resp.headers();
        Ok(PutResult {
            etag: header(h, "etag").map(unquote).unwrap_or_default(),
            last_modified: http_time(header(h, "last-modified")),
            version_id: None,
            origin_headers: Vec::new(),
        })
    }

    /// Append Block, relayed with its conditions (streamed, checked in flight).
    async fn append(
        &self,
        bucket: &str,
        key: &str,
        upload: Upload,
        opts: &super::AppendOptions,
    ) -> Result<super::Appended> {
        let upload = super::upload::settled(upload, opts.content_md5.as_deref()).await?;
        let mut owned: Vec<(String, String)> =
            vec![("content-length".into(), upload.len.to_string())];
        if let Some(m) = &opts.content_md5 {
            owned.push(("content-md5".into(), m.clone()));
        }
        if let Some(p) = opts.append_position {
            owned.push(("x-ms-blob-condition-appendpos".into(), p.to_string()));
        }
        if let Some(m) = opts.max_size {
            owned.push(("x-ms-blob-condition-maxsize".into(), m.to_string()));
        }
        let headers = header_pairs(&owned);
        let resp = self
            .send_as(
                Method::PUT,
                Some(bucket),
                Some(key),
                &[("comp", "appendblock")],
                &headers,
                &[],
                None,
                Some(reqwest::Body::wrap_stream(upload.body)),
            )
            .await?;
        let h = resp.headers();
        Ok(super::Appended {
            etag: header(h, "etag").map(unquote).unwrap_or_default(),
            last_modified: http_time(header(h, "last-modified")),
            offset: header(h, "x-ms-blob-append-offset")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            blocks: header(h, "x-ms-blob-committed-block-count").and_then(|v| v.parse().ok()),
        })
    }

    /// Set Blob Properties (content headers; unset ones are cleared, as Azure does) or Set
    /// Blob Metadata, with `If-Match` on the version.
    async fn set_properties(
        &self,
        bucket: &str,
        key: &str,
        etag: &str,
        opts: &PutOptions,
        which: super::PropertyKind,
    ) -> Result<PutResult> {
        let (comp, mut owned) = match which {
            super::PropertyKind::Headers => {
                let mut h = content_headers(opts);
                if let Some(m) = &opts.content_md5 {
                    h.push(("x-ms-blob-content-md5".into(), m.clone()));
                }
                ("properties", h)
            }
            super::PropertyKind::Metadata => ("metadata", metadata_headers(opts)),
        };
        owned.push(("if-match".into(), format!("\"{etag}\"")));
        owned.push(("content-length".into(), "0".into()));
        let headers = header_pairs(&owned);
        let resp = self
            .send(
                Method::PUT,
                Some(bucket),
                Some(key),
                &[("comp", comp)],
                &headers,
                &[],
            )
            .await?;
        let h = resp.headers();
        Ok(PutResult {
            etag: header(h, "etag").map(unquote).unwrap_or_default(),
            last_modified: http_time(header(h, "last-modified")),
            version_id: None,
            origin_headers: Vec::new(),
        })
    }

    /// S3 parts become Azure blocks: the upload id is ours and carries the object's
    /// properties (Azure takes them on Put Block List); part N is block
    /// `base64("<upload>-<NNNNN>")`, all block ids of an upload having one length as Azure
    /// requires. Abandoned blocks are Azure's to collect (uncommitted blocks expire in 7 days).
    async fn start_parts(&self, _bucket: &str, _key: &str, opts: &PutOptions) -> Result<String> {
        Ok(parts_id::encode(opts))
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
        use futures::StreamExt as _;
        use md5::Digest as _;
        let (nonce, _) = parts_id::decode(upload_id)?;
        let upload = super::upload::settled(upload, content_md5).await?;
        let md5 = std::sync::Arc::new(std::sync::Mutex::new(md5::Md5::new()));
        let hashing = std::sync::Arc::clone(&md5);
        let body = upload.body.inspect(move |c| {
            if let Ok(c) = c {
                hashing.lock().unwrap_or_else(|e| e.into_inner()).update(c);
            }
        });
        let block = parts_id::block(&nonce, part);
        let len = upload.len.to_string();
        let mut headers = vec![("content-length", len.as_str())];
        if let Some(m) = content_md5 {
            headers.push(("content-md5", m));
        }
        self.send_as(
            Method::PUT,
            Some(bucket),
            Some(key),
            &[("comp", "block"), ("blockid", block.as_str())],
            &headers,
            &[],
            None,
            Some(reqwest::Body::wrap_stream(body)),
        )
        .await?;
        let digest = md5
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .finalize();
        Ok(hex::encode(digest))
    }

    async fn complete_parts(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: &[(u32, String)],
    ) -> Result<PutResult> {
        let (nonce, opts) = parts_id::decode(upload_id)?;
        let mut xml = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>");
        for (n, _) in parts {
            xml.push_str("<Latest>");
            xml.push_str(&parts_id::block(&nonce, *n));
            xml.push_str("</Latest>");
        }
        xml.push_str("</BlockList>");
        match self.put_block_list(bucket, key, xml, &opts).await {
            Err(e) if e.kind() == ErrorKind::InvalidArgument => Err(Error::new(
                ErrorKind::InvalidPart,
                "One or more of the specified parts could not be found",
            )),
            other => other,
        }
    }

    async fn abort_parts(&self, _bucket: &str, _key: &str, upload_id: &str) -> Result<()> {
        parts_id::decode(upload_id).map(|_| ())
    }

    async fn put_block(
        &self,
        bucket: &str,
        key: &str,
        block_id: &str,
        upload: Upload,
        content_md5: Option<&str>,
    ) -> Result<()> {
        let upload = super::upload::settled(upload, content_md5).await?;
        let len = upload.len.to_string();
        let mut headers = vec![("content-length", len.as_str())];
        if let Some(m) = content_md5 {
            headers.push(("content-md5", m));
        }
        self.send_as(
            Method::PUT,
            Some(bucket),
            Some(key),
            &[("comp", "block"), ("blockid", block_id)],
            &headers,
            &[],
            None,
            Some(reqwest::Body::wrap_stream(upload.body)),
        )
        .await?;
        Ok(())
    }

    async fn commit_blocks(
        &self,
        bucket: &str,
        key: &str,
        blocks: &[BlockRef],
        opts: &PutOptions,
    ) -> Result<PutResult> {
        let mut xml = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>");
        for b in blocks {
            let (tag, id) = match b {
                BlockRef::Latest(id) => ("Latest", id),
                BlockRef::Committed(id) => ("Committed", id),
                BlockRef::Uncommitted(id) => ("Uncommitted", id),
            };
            xml.push_str(&format!(
                "<{tag}>{}</{tag}>",
                id.replace('&', "&amp;").replace('<', "&lt;")
            ));
        }
        xml.push_str("</BlockList>");
        self.put_block_list(bucket, key, xml, opts).await
    }

    async fn create_bucket(&self, bucket: &str) -> Result<()> {
        self.send(
            Method::PUT,
            Some(bucket),
            None,
            &[("restype", "container")],
            &[("content-length", "0")],
            &[],
        )
        .await
        .map(|_| ())
    }

    /// Azure deletes a container with its blobs; Cistern keeps S3's rule and refuses to
    /// delete one that still holds blobs (checked with a one-entry listing first).
    async fn delete_bucket(&self, bucket: &str) -> Result<()> {
        let probe = ListQuery {
            prefix: String::new(),
            delimiter: None,
            max_keys: 1,
            cursor: ListCursor::V1 { marker: None },
        };
        if !self.list(bucket, &probe).await?.entries.is_empty() {
            return Err(Error::new(
                ErrorKind::BucketNotEmpty,
                "The container still holds blobs",
            ));
        }
        self.send(
            Method::DELETE,
            Some(bucket),
            None,
            &[("restype", "container")],
            &[],
            &[],
        )
        .await
        .map(|_| ())
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<()> {
        match self
            .send(Method::DELETE, Some(bucket), Some(key), &[], &[], &[])
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Forwards the request with the origin's credentials. Verbatim requests come back with
    /// whatever status Azure gave; others relay 304, 412 and 416 as they are and other
    /// failures as classified errors.
    async fn passthrough(&self, req: &Passthrough) -> Result<PassResponse> {
        let has_body = !req.body.is_empty() || matches!(req.method, Method::PUT | Method::POST);
        let body = has_body.then(|| (reqwest::Body::from(req.body.clone()), req.body.len() as u64));
        self.relay(req, body).await
    }

    async fn passthrough_upload(&self, req: &Passthrough, upload: Upload) -> Result<PassResponse> {
        let body = reqwest::Body::wrap_stream(upload.body);
        self.relay(req, Some((body, upload.len))).await
    }

    /// The blob's URL at this account. Shared Key needs nothing more (Azure authorizes a
    /// same-account source by the copy request's own signature); a SAS origin appends its
    /// SAS; an Entra origin sends its token as `x-ms-copy-source-authorization`.
    async fn copy_source_headers(
        &self,
        bucket: &str,
        key: &str,
        query: &[(String, String)],
    ) -> Result<Vec<(String, String)>> {
        let mut url = format!(
            "{}{}/{}/{}",
            self.base,
            self.base_path,
            uri_encode(bucket, false),
            uri_encode(key, true)
        );
        let mut pairs: Vec<(String, String)> = query.to_vec();
        if let Auth::Sas(sas) = &self.auth {
            pairs.extend(sas.iter().cloned());
        }
        for (i, (k, v)) in pairs.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(&uri_encode(k, false));
            url.push('=');
            url.push_str(&uri_encode(v, false));
        }
        let mut out = vec![("x-ms-copy-source".to_string(), url)];
        if let Auth::Bearer(source) = &self.auth {
            let token = source.token().await?;
            out.push((
                "x-ms-copy-source-authorization".to_string(),
                format!("Bearer {token}"),
            ));
        }
        Ok(out)
    }

    /// Asks Azure with the client's own credential: a HEAD of the blob (read), a one-entry
    /// listing (list) or the container's properties. A 404 means the credential was accepted
    /// and the object is missing (Azure authorizes before it looks).
    async fn judge(
        &self,
        bucket: &str,
        key: Option<&str>,
        cred: &ForeignCredential,
        access: Access,
    ) -> Result<bool> {
        let (method, blob, query): (Method, Option<&str>, &[(&str, &str)]) = match (access, key) {
            (Access::Read, Some(k)) => (Method::HEAD, Some(k), &[]),
            (Access::List, _) => (
                Method::GET,
                None,
                &[
                    ("restype", "container"),
                    ("comp", "list"),
                    ("maxresults", "1"),
                ],
            ),
            _ => (Method::HEAD, None, &[("restype", "container")]),
        };
        match self
            .send_as(
                method,
                Some(bucket),
                blob,
                query,
                &[],
                &[],
                Some(cred),
                None,
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NoSuchBucket) => Ok(true),
            // Refused, or a credential Azure cannot parse.
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::AccessDenied | ErrorKind::InvalidArgument
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    async fn list(&self, bucket: &str, q: &ListQuery) -> Result<ListPage> {
        // Azure's markers are opaque tokens; S3 clients hand back the NextMarker or
        // continuation token Cistern gave them, which is Azure's. A V2 `start-after` (a key)
        // has no Azure equivalent: names up to it are skipped here.
        let (marker, skip_to) = match &q.cursor {
            ListCursor::V1 { marker } => (marker.clone(), None),
            ListCursor::V2 {
                continuation: Some(c),
                ..
            } => (Some(c.clone()), None),
            ListCursor::V2 {
                continuation: None,
                start_after,
            } => (None, start_after.clone()),
        };
        if q.max_keys == 0 {
            return Ok(ListPage::default());
        }
        let max = q.max_keys.min(5000).to_string();
        let mut query = vec![
            ("restype", "container"),
            ("comp", "list"),
            ("maxresults", max.as_str()),
        ];
        if !q.prefix.is_empty() {
            query.push(("prefix", q.prefix.as_str()));
        }
        if let Some(d) = &q.delimiter {
            query.push(("delimiter", d.as_str()));
        }
        if let Some(m) = &marker {
            query.push(("marker", m.as_str()));
        }
        let resp = self
            .send(Method::GET, Some(bucket), None, &query, &[], &[])
            .await?;
        let body = read_text(resp).await?;
        // Blob names keep their leading and trailing spaces.
        let parsed: XmlBlobsResult =
            quick_xml::de::from_str(&super::wire::keep_spaces(&body, &["Name", "NextMarker"]))
                .map_err(bad_xml)?;
        let after = |name: &str| skip_to.as_deref().is_none_or(|s| name > s);
        let mut page = ListPage::default();
        for item in parsed.blobs.items {
            match item {
                XmlBlobItem::Blob(b) if after(&b.name) => page.entries.push(ListEntry {
                    key: b.name,
                    size: b.properties.content_length.unwrap_or(0),
                    etag: b
                        .properties
                        .etag
                        .as_deref()
                        .map(unquote)
                        .unwrap_or_default(),
                    last_modified: http_time(b.properties.last_modified.as_deref())
                        .unwrap_or(SystemTime::UNIX_EPOCH),
                    owner: None,
                }),
                XmlBlobItem::BlobPrefix(p) if after(&p.name) => page.common_prefixes.push(p.name),
                _ => {}
            }
        }
        page.next = parsed.next_marker.filter(|m| !m.is_empty());
        page.truncated = page.next.is_some();
        Ok(page)
    }
}

/// Upload ids for S3 parts onto Azure blocks: `<32 hex>.<base64url of the properties>`.
mod parts_id {
    use base64::Engine as _;

    use crate::error::{Error, ErrorKind, Result};
    use crate::origin::PutOptions;

    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

    pub(super) fn encode(opts: &PutOptions) -> String {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        h.update(std::process::id().to_le_bytes());
        h.update(
            SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                .to_le_bytes(),
        );
        h.update(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
                .to_le_bytes(),
        );
        let nonce = hex::encode(&h.finalize()[..16]);
        let mut form = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("ct", &opts.content_type),
            ("ce", &opts.content_encoding),
            ("cl", &opts.content_language),
            ("cc", &opts.cache_control),
            ("cd", &opts.content_disposition),
        ] {
            if let Some(v) = v {
                form.append_pair(k, v);
            }
        }
        for (k, v) in &opts.user_metadata {
            form.append_pair(&format!("m.{k}"), v);
        }
        let props = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(form.finish());
        format!("{nonce}.{props}")
    }

    pub(super) fn decode(id: &str) -> Result<(String, PutOptions)> {
        let bad = || {
            Error::new(
                ErrorKind::NoSuchUpload,
                "The specified upload does not exist",
            )
        };
        let (nonce, props) = id.split_once('.').ok_or_else(bad)?;
        if nonce.len() != 32 || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(props)
            .map_err(|_| bad())?;
        let mut opts = PutOptions::default();
        for (k, v) in form_urlencoded::parse(&raw) {
            let v = v.into_owned();
            match k.as_ref() {
                "ct" => opts.content_type = Some(v),
                "ce" => opts.content_encoding = Some(v),
                "cl" => opts.content_language = Some(v),
                "cc" => opts.cache_control = Some(v),
                "cd" => opts.content_disposition = Some(v),
                m => {
                    // Names become header names: anything else means a forged id.
                    let name = m.strip_prefix("m.").ok_or_else(bad)?;
                    if name.is_empty()
                        || !name
                            .bytes()
                            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
                    {
                        return Err(bad());
                    }
                    opts.user_metadata.push((name.to_string(), v));
                }
            }
        }
        Ok((nonce.to_string(), opts))
    }

    /// The block id of part `n` (the same length for every part of an upload).
    pub(super) fn block(nonce: &str, n: u32) -> String {
        base64::engine::general_purpose::STANDARD.encode(format!("{nonce}-{n:05}"))
    }
}

/// `x-ms-blob-content-*` and cache control from the object's properties.
fn content_headers(opts: &PutOptions) -> Vec<(String, String)> {
    [
        ("x-ms-blob-content-type", &opts.content_type),
        ("x-ms-blob-content-encoding", &opts.content_encoding),
        ("x-ms-blob-content-language", &opts.content_language),
        ("x-ms-blob-cache-control", &opts.cache_control),
        ("x-ms-blob-content-disposition", &opts.content_disposition),
    ]
    .into_iter()
    .filter_map(|(name, v)| Some((name.to_string(), v.clone()?)))
    .collect()
}

/// `x-ms-meta-*` from the object's user metadata.
fn metadata_headers(opts: &PutOptions) -> Vec<(String, String)> {
    opts.user_metadata
        .iter()
        .map(|(k, v)| (format!("x-ms-meta-{k}"), v.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_ids_carry_the_properties() {
        let opts = PutOptions {
            content_type: Some("text/plain; charset=utf-8".into()),
            user_metadata: vec![("a_b".into(), "x&y=z".into())],
            ..Default::default()
        };
        let id = parts_id::encode(&opts);
        let (nonce, back) = parts_id::decode(&id).expect("decode");
        assert_eq!(back.content_type, opts.content_type);
        assert_eq!(back.user_metadata, opts.user_metadata);
        assert_eq!(
            parts_id::block(&nonce, 1).len(),
            parts_id::block(&nonce, 10_000).len()
        );
        assert!(parts_id::decode("../../etc").is_err());
        use base64::Engine as _;
        let forged = format!(
            "{}.{}",
            "0".repeat(32),
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("m.bad%0Aname=x")
        );
        assert!(parts_id::decode(&forged).is_err());
    }

    #[test]
    fn parses_a_blob_listing_with_interleaved_prefixes() {
        let xml = r#"<?xml version="1.0" encoding="utf-8"?><EnumerationResults ServiceEndpoint="http://x/" ContainerName="c"><Prefix>a</Prefix><MaxResults>3</MaxResults><Delimiter>/</Delimiter><Blobs><Blob><Name>a1</Name><Properties><Creation-Time>Tue, 14 Nov 2023 22:13:20 GMT</Creation-Time><Last-Modified>Tue, 14 Nov 2023 22:13:20 GMT</Last-Modified><Etag>0x8DBE5</Etag><Content-Length>5</Content-Length><BlobType>BlockBlob</BlobType></Properties></Blob><BlobPrefix><Name>a2/</Name></BlobPrefix><Blob><Name>a3</Name><Properties><Last-Modified>Tue, 14 Nov 2023 22:13:20 GMT</Last-Modified><Etag>"0x8DBE6"</Etag><Content-Length>7</Content-Length></Properties></Blob></Blobs><NextMarker>2!8!YTM-</NextMarker></EnumerationResults>"#;
        let parsed: XmlBlobsResult = quick_xml::de::from_str(xml).expect("parse");
        assert_eq!(parsed.blobs.items.len(), 3);
        assert!(matches!(&parsed.blobs.items[1], XmlBlobItem::BlobPrefix(p) if p.name == "a2/"));
        assert_eq!(parsed.next_marker.as_deref(), Some("2!8!YTM-"));
        match &parsed.blobs.items[2] {
            XmlBlobItem::Blob(b) => {
                assert_eq!(
                    b.properties.etag.as_deref().map(unquote).as_deref(),
                    Some("0x8DBE6")
                );
                assert_eq!(b.properties.content_length, Some(7));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn classifies_azure_codes() {
        assert_eq!(
            classify(StatusCode::NOT_FOUND, "BlobNotFound").kind(),
            ErrorKind::NotFound
        );
        assert_eq!(
            classify(StatusCode::NOT_FOUND, "ContainerNotFound").kind(),
            ErrorKind::NoSuchBucket
        );
        assert_eq!(
            classify(StatusCode::PRECONDITION_FAILED, "ConditionNotMet").kind(),
            ErrorKind::ObjectChanged
        );
        assert_eq!(
            classify(StatusCode::SERVICE_UNAVAILABLE, "ServerBusy").kind(),
            ErrorKind::Throttled
        );
        assert_eq!(
            classify(StatusCode::FORBIDDEN, "AuthenticationFailed").kind(),
            ErrorKind::AccessDenied
        );
    }

    #[test]
    fn headers_become_metadata() {
        let mut h = HeaderMap::new();
        h.insert("etag", "\"0x8DBE5\"".parse().expect("hv"));
        h.insert(
            "last-modified",
            "Tue, 14 Nov 2023 22:13:20 GMT".parse().expect("hv"),
        );
        h.insert(
            "x-ms-creation-time",
            "Tue, 14 Nov 2023 22:13:20 GMT".parse().expect("hv"),
        );
        h.insert("x-ms-blob-type", "BlockBlob".parse().expect("hv"));
        h.insert("x-ms-meta-a_b", "1".parse().expect("hv"));
        h.insert(
            "content-md5",
            "1B2M2Y8AsgTpgAmY7PhCfg==".parse().expect("hv"),
        );
        let m = meta_from_headers(&h, 5);
        assert_eq!(m.etag, "0x8DBE5");
        assert_eq!(m.origin_kind.as_deref(), Some("BlockBlob"));
        assert_eq!(m.user_metadata, vec![("a_b".to_string(), "1".to_string())]);
        assert_eq!(m.content_md5.as_deref(), Some("1B2M2Y8AsgTpgAmY7PhCfg=="));
        assert!(m.created.is_some());
    }

    #[test]
    fn container_listings_keep_properties_and_metadata() {
        let doc = "<?xml version=\"1.0\" encoding=\"utf-8\"?><EnumerationResults><Containers>\
<Container><Name>a</Name><Properties><Etag>\"0x1\"</Etag><PublicAccess>blob</PublicAccess>\
</Properties><Metadata><Key>v</Key></Metadata></Container>\
<Container><Name>b&amp;c</Name><Properties><Etag>\"0x2\"</Etag></Properties></Container>\
</Containers><NextMarker /></EnumerationResults>";
        let got = container_listings(doc);
        assert_eq!(
            got,
            vec![
                (
                    "a".to_string(),
                    "<Properties><Etag>\"0x1\"</Etag><PublicAccess>blob</PublicAccess>\
</Properties><Metadata><Key>v</Key></Metadata>"
                        .to_string()
                ),
                (
                    "b&amp;c".to_string(),
                    "<Properties><Etag>\"0x2\"</Etag></Properties>".to_string()
                ),
            ]
        );
    }
}
