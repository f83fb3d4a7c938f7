//! Same-dialect relay for the Blob front: requests Cistern keeps no model of — leases, page
//! blobs, snapshots, blob index tags, container metadata and access policies, service
//! properties, history listings — go to the container's Azure origin as they are, re-signed with
//! the origin's credentials after Cistern authenticated and authorized the caller, and Azure's
//! answer comes back as it is, errors included. Reads here bypass the cache; anything else
//! forgets the blob's cached metadata once the origin has answered (a lease or a page write
//! changes what a cached Get Blob Properties would say).
//!
//! Over an origin of another dialect (a directory, S3) these operations keep answering
//! `NotImplemented`: they have no translation.

use bytes::{Bytes, BytesMut};
use futures::StreamExt as _;
use http::{HeaderMap, Method, StatusCode};

use super::error::BlobError;
use super::router::{Operation, Routed};
use super::{header, is_version_read, set, BlobBody, BlobFront, Reply, RequestBody};
use std::sync::Arc;

use crate::origin::{Dialect, Origin, PassResponse, Passthrough};
use crate::pipeline::{BucketBinding, CACHE_HEADER};

/// The operations the router names but Cistern relays rather than serves. The others it names
/// (user delegation keys, copies from a URL) need more than a relay: a delegation key would
/// hand out the origin's own trust, and a URL source names Cistern, which the origin cannot
/// read from. (Blob Batch and CORS preflights are served: `batch`, `cors`.)
pub const RELAYED: &[&str] = &[
    "GetBlobServiceProperties",
    "SetBlobServiceProperties",
    "GetBlobServiceStats",
    "FindBlobsByTags",
    "SetContainerMetadata",
    "GetContainerACL",
    "SetContainerACL",
    "LeaseContainer",
    "RestoreContainer",
    "PutPage",
    "GetPageRanges",
    "AppendBlobSeal",
    "LeaseBlob",
    "SnapshotBlob",
    "AbortCopyBlob",
    "SetBlobTier",
    "GetBlobTags",
    "SetBlobTags",
    "UndeleteBlob",
    "SetBlobExpiry",
    "SetBlobImmutabilityPolicy",
    "SetBlobLegalHold",
    "QueryBlobContents",
];

/// The largest request body relayed (a page is at most 4 MiB; a Put Blob under a lease is held
/// whole so the origin request can be retried).
const RELAY_BODY_MAX: usize = 64 << 20;

/// Query parameters a pass-through read forwards.
const PASS_QUERY: &[&str] = &["snapshot", "versionid", "comp", "blocklisttype"];

/// Request headers a pass-through read forwards.
const PASS_HEADERS: &[&str] = &[
    "range",
    "x-ms-range",
    "x-ms-range-get-content-md5",
    "if-match",
    "if-none-match",
    "if-modified-since",
    "if-unmodified-since",
];

/// SAS parameters: Cistern verified them; the origin gets its own credentials instead.
const SAS_QUERY: &[&str] = &[
    "sv", "ss", "srt", "sp", "se", "st", "spr", "sig", "sr", "si", "sip", "skoid", "sktid", "skt",
    "ske", "sks", "skv", "sdd", "saoid", "suoid", "scid", "ses", "rscc", "rscd", "rsce", "rscl",
    "rsct",
];

/// Request headers a relayed request does not forward: the origin signs anew and sets its own
/// date and version; the rest describe this hop.
const DROP_REQUEST: &[&str] = &[
    "authorization",
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "expect",
    "te",
    "upgrade",
    "user-agent",
    "accept-encoding",
    "x-ms-date",
    "date",
    "x-ms-version",
    "x-ms-client-request-id",
    "x-ms-copy-source-authorization",
    // Cistern answers CORS itself (`cors`), from the origin's rules: the origin's own
    // Access-Control-* headers would duplicate or contradict it.
    "origin",
];

/// Origin response headers not relayed (Cistern sets its own, or they describe the origin's
/// connection).
const DROP_RESPONSE: &[&str] = &[
    "x-ms-request-id",
    "x-ms-version",
    "x-ms-client-request-id",
    "date",
    "server",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
];

/// Whether the request goes to the origin as it is, when the container's origin speaks Blob.
///
/// Over an Azure origin Cistern keeps a model only of what the cache serves — object reads,
/// and the account's container list (its buckets, which may come from several origins) — and
/// relays everything else, so every header and property Azure knows (tags, tiers, leases,
/// blob types, conditions, checksums) keeps its meaning. Copies decide for themselves: a
/// source on the same Azure origin is relayed, another is read through the cache.
pub fn wants_relay(op: Operation, q: &[(String, String)], h: &HeaderMap) -> bool {
    use Operation::*;
    match op {
        Unsupported(name) => RELAYED.contains(&name) && !(name == "PutPage" && copies(h)),
        // Served from the cache, unless they ask what only the origin can answer.
        GetBlob | GetBlobProperties | GetBlobMetadata => {
            is_version_read(q) || ORIGIN_READ_HEADERS.iter().any(|n| h.contains_key(*n))
        }
        ListContainers | CopyBlob | PutBlockFromUrl | BlobBatch | Preflight => false,
        GetAccountInformation
        | GetContainerProperties
        | GetContainerMetadata
        | ListBlobs
        | CreateContainer
        | DeleteContainer
        | GetBlockList
        | PutBlob
        | PutBlock
        | PutBlockList
        | DeleteBlob
        | SetBlobMetadata
        | SetBlobProperties
        | AppendBlock => true,
    }
}

/// Read headers whose answer depends on what only the origin knows (a blob's tags, its
/// lease): such reads go to the origin.
const ORIGIN_READ_HEADERS: &[&str] = &["x-ms-if-tags", "x-ms-lease-id"];

/// Bodies up to this size are held whole, so that the relayed request can be retried; larger
/// ones are streamed to the origin once.
const RETRYABLE_BODY: u64 = 1 << 20;

fn copies(h: &HeaderMap) -> bool {
    h.contains_key("x-ms-copy-source")
}

/// The request body, whole (bounded by [`RELAY_BODY_MAX`]).
async fn collect(mut body: RequestBody) -> Result<Bytes, BlobError> {
    let mut buf = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        if buf.len() + chunk.len() > RELAY_BODY_MAX {
            return Err(BlobError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestBodyTooLarge",
                "The request body is too large and exceeds the maximum permissible limit.",
            )
            .with_detail("MaxLimit", RELAY_BODY_MAX.to_string()));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// Where a relayed request goes.
pub(super) enum RelayTo {
    /// The container's origin (its name mapped to the origin's).
    Container(Arc<BucketBinding>),
    /// An account-level request, to the one Azure origin.
    Account(Arc<dyn Origin>),
    /// A container to create: the origin that would hold it, and its name there.
    Home(Arc<dyn Origin>, Arc<str>),
    /// A copy within the container's origin, with the headers that name the source there
    /// (they replace the client's, which named Cistern).
    Copy(Arc<BucketBinding>, Vec<(String, String)>),
}

impl BlobFront {
    /// Where the request would be relayed: the container's origin, or at the account level
    /// the one Azure origin Cistern has; `None` when that origin does not speak Blob, and the
    /// front serves or refuses the operation itself.
    pub(super) async fn relay_to(&self, r: &Routed) -> Result<Option<RelayTo>, BlobError> {
        if r.op == Operation::CreateContainer {
            let c = r.container.as_deref().unwrap_or("");
            // A name served already (by any origin) is not created again elsewhere.
            match self.pipeline.catalog().resolve(c).await {
                Ok(_) => {
                    return Err(crate::error::Error::new(
                        crate::error::ErrorKind::BucketExists,
                        "The specified container already exists.",
                    )
                    .into())
                }
                // A name the origin finds invalid: its own answer to the creation says why.
                Err(e)
                    if matches!(
                        e.kind(),
                        crate::error::ErrorKind::NoSuchBucket
                            | crate::error::ErrorKind::InvalidArgument
                    ) => {}
                Err(e) => return Err(e.into()),
            }
            return Ok(self
                .pipeline
                .catalog()
                .home_for(c)
                .filter(|(o, _)| o.dialect() == Dialect::Blob)
                .map(|(o, at)| RelayTo::Home(o, at)));
        }
        match r.container.as_deref() {
            Some(c) if !c.is_empty() => {
                let b = self.bucket(c).await?;
                Ok((b.origin.dialect() == Dialect::Blob).then_some(RelayTo::Container(b)))
            }
            _ => Ok(self
                .pipeline
                .catalog()
                .sole_origin(Dialect::Blob)
                .map(RelayTo::Account)),
        }
    }

    /// Relays the request (see the module docs). `endpoint` is Cistern's account URL, which
    /// replaces the origin's in listings.
    pub(super) async fn relay(
        &self,
        to: RelayTo,
        r: &Routed,
        parts: &http::request::Parts,
        q: &[(String, String)],
        body: RequestBody,
        endpoint: &str,
    ) -> Result<Reply, BlobError> {
        let container = r.container.as_deref().unwrap_or("");
        let mut headers: Vec<(String, String)> = parts
            .headers
            .iter()
            .filter(|(k, _)| !DROP_REQUEST.contains(&k.as_str()))
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect();
        if let RelayTo::Copy(_, source) = &to {
            headers
                .retain(|(k, _)| k != "x-ms-copy-source" && k != "x-ms-copy-source-authorization");
            headers.extend(source.iter().cloned());
        }
        let mut req = Passthrough {
            method: parts.method.clone(),
            bucket: container.to_string(),
            key: r.blob.clone().unwrap_or_default(),
            query: q
                .iter()
                .filter(|(k, _)| !SAS_QUERY.contains(&k.to_ascii_lowercase().as_str()))
                .cloned()
                .collect(),
            headers,
            body: Bytes::new(),
            verbatim: true,
        };
        let len = super::content_length(&parts.headers).unwrap_or(0);
        let resp = match to {
            // Streamed: a large body, or one a Put Blob keeps for the cache on its way.
            RelayTo::Container(b)
                if len > RETRYABLE_BODY || (r.op == Operation::PutBlob && b.populate_on_write) =>
            {
                let upload = crate::origin::Upload { body, len };
                let whole = r.op == Operation::PutBlob;
                self.pipeline.relay_upload(&b, req, upload, whole).await?
            }
            RelayTo::Container(b) | RelayTo::Copy(b, _) => {
                req.body = collect(body).await?;
                self.pipeline.relay(&b, req).await?
            }
            RelayTo::Account(o) => {
                req.body = collect(body).await?;
                o.passthrough(&req).await?
            }
            RelayTo::Home(o, at) => {
                req.bucket = at.to_string();
                req.body = collect(body).await?;
                o.passthrough(&req).await?
            }
        };
        if matches!(
            r.op,
            Operation::DeleteContainer | Operation::CreateContainer
        ) && resp.status.is_success()
        {
            self.pipeline.catalog().forget(container);
            self.invalidate_containers();
        }
        if r.op == Operation::Unsupported("SetBlobServiceProperties") && resp.status.is_success() {
            self.cors.forget();
        }
        if r.op == Operation::ListBlobs && resp.status.is_success() {
            return listing(resp, container, endpoint).await;
        }
        Ok(reply(resp, &parts.method))
    }

    /// Relays a read the cache does not serve (snapshots, versions, an Azure origin's block
    /// lists) to the bucket's Azure origin, uncached; the origin's failures are classified.
    pub(super) async fn pass(
        &self,
        container: &str,
        blob: &str,
        parts: &http::request::Parts,
        q: &[(String, String)],
    ) -> Result<Reply, BlobError> {
        let b = self.bucket(container).await?;
        if b.origin.dialect() != Dialect::Blob {
            return Err(BlobError::not_implemented(
                "snapshot, version and block-list reads against this origin",
            ));
        }
        let mut req = Passthrough::read(parts.method.clone(), String::new(), blob.to_string());
        req.query = q
            .iter()
            .filter(|(k, _)| PASS_QUERY.contains(&k.as_str()))
            .cloned()
            .collect();
        req.headers = PASS_HEADERS
            .iter()
            .filter_map(|n| Some((n.to_string(), header(&parts.headers, n)?.to_string())))
            .collect();
        let resp = self.pipeline.relay(&b, req).await?;
        Ok(reply(resp, &parts.method))
    }
}

/// A relayed List Blobs answer, naming Cistern's endpoint and the exposed container rather than
/// the origin's (the rest of the document is Azure's own).
async fn listing(resp: PassResponse, container: &str, endpoint: &str) -> Result<Reply, BlobError> {
    let mut headers = HeaderMap::new();
    for (k, v) in &resp.headers {
        if !DROP_RESPONSE.contains(&k.as_str()) && k != http::header::CONTENT_LENGTH {
            headers.append(k.clone(), v.clone());
        }
    }
    let mut body = BytesMut::new();
    let mut stream = resp.body;
    while let Some(piece) = stream.next().await {
        body.extend_from_slice(&piece?);
    }
    let text = String::from_utf8_lossy(&body);
    let out = super::xml::rewrite_root_attributes(&text, endpoint, container);
    Ok(Reply {
        status: StatusCode::OK,
        headers,
        body: BlobBody::Full(Some(Bytes::from(out))),
        length: None,
    })
}

/// The origin's answer as the front sends it: with its length, or chunked when it gave none.
fn reply(resp: PassResponse, method: &Method) -> Reply {
    let mut headers = HeaderMap::new();
    for (k, v) in &resp.headers {
        if !DROP_RESPONSE.contains(&k.as_str()) {
            headers.append(k.clone(), v.clone());
        }
    }
    set(&mut headers, CACHE_HEADER, "bypass");
    let length: Option<u64> = resp
        .headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let head = *method == Method::HEAD;
    let body = if head || resp.status == StatusCode::NOT_MODIFIED {
        BlobBody::Empty
    } else {
        BlobBody::Pass(resp.body, length)
    };
    Reply {
        status: resp.status,
        headers,
        body,
        length: if head { length.or(Some(0)) } else { length },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn relays_all_but_cached_reads_and_the_account_namespace() {
        let none = HeaderMap::new();
        let mut leased = HeaderMap::new();
        leased.insert("x-ms-lease-id", "id".parse().expect("value"));
        let mut tagged = HeaderMap::new();
        tagged.insert("x-ms-if-tags", "a='b'".parse().expect("value"));
        assert!(wants_relay(Operation::Unsupported("LeaseBlob"), &[], &none));
        assert!(wants_relay(Operation::Unsupported("PutPage"), &[], &none));
        assert!(!wants_relay(Operation::BlobBatch, &[], &none));
        assert!(!wants_relay(Operation::Preflight, &[], &none));
        assert!(!wants_relay(
            Operation::Unsupported("GetUserDelegationKey"),
            &[],
            &none
        ));
        for op in [
            Operation::PutBlob,
            Operation::PutBlock,
            Operation::PutBlockList,
            Operation::DeleteBlob,
            Operation::DeleteContainer,
            Operation::CreateContainer,
            Operation::ListBlobs,
            Operation::GetBlockList,
            Operation::SetBlobProperties,
        ] {
            assert!(wants_relay(op, &[], &none), "{op:?}");
        }
        // Cached reads stay cached unless the origin alone can answer them.
        assert!(!wants_relay(Operation::GetBlob, &[], &none));
        assert!(!wants_relay(Operation::GetBlobProperties, &[], &none));
        assert!(wants_relay(Operation::GetBlob, &[], &leased));
        assert!(wants_relay(Operation::GetBlobProperties, &[], &tagged));
        assert!(wants_relay(
            Operation::GetBlob,
            &q(&[("snapshot", "2026-01-01T00:00:00.0000000Z")]),
            &none
        ));
        // Cistern's own namespace, and copies (which decide by their source).
        assert!(!wants_relay(Operation::ListContainers, &[], &none));
        assert!(!wants_relay(Operation::CopyBlob, &[], &none));
    }
}
