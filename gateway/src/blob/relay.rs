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

/// `include=` kinds of a blob listing that only the origin can answer.
const HISTORY: &[&str] = &[
    "snapshots",
    "versions",
    "deleted",
    "uncommittedblobs",
    "deletedwithversions",
    "tags",
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

/// Whether the request goes to the origin as it is (when the container's origin speaks Blob).
pub fn wants_relay(op: Operation, q: &[(String, String)], h: &HeaderMap) -> bool {
    use Operation::*;
    let leased = h.contains_key("x-ms-lease-id");
    match op {
        Unsupported(name) => RELAYED.contains(&name) && !(name == "PutPage" && copies(h)),
        // Azure deletes a container with its blobs, and reports its lease and public access.
        DeleteContainer | GetContainerProperties | GetContainerMetadata => true,
        ListBlobs => q.iter().any(|(k, v)| {
            k.eq_ignore_ascii_case("include")
                && v.split(',')
                    .any(|i| HISTORY.contains(&i.trim().to_ascii_lowercase().as_str()))
        }),
        DeleteBlob => leased || is_version_read(q) || h.contains_key("x-ms-delete-snapshots"),
        PutBlob => {
            leased
                || header(h, "x-ms-blob-type") == Some("PageBlob")
                || h.contains_key("x-ms-tags")
                || h.contains_key("x-ms-access-tier")
        }
        SetBlobProperties => {
            leased
                || h.contains_key("x-ms-blob-content-length")
                || h.contains_key("x-ms-sequence-number-action")
        }
        SetBlobMetadata | PutBlock | PutBlockList | AppendBlock => leased,
        _ => false,
    }
}

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
}

impl BlobFront {
    /// Where the request would be relayed: the container's origin, or at the account level
    /// the one Azure origin Cistern has; `None` when that origin does not speak Blob, and the
    /// front serves or refuses the operation itself.
    pub(super) async fn relay_to(&self, r: &Routed) -> Result<Option<RelayTo>, BlobError> {
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

    /// Relays the request (see the module docs).
    pub(super) async fn relay(
        &self,
        to: RelayTo,
        r: &Routed,
        parts: &http::request::Parts,
        q: &[(String, String)],
        body: RequestBody,
    ) -> Result<Reply, BlobError> {
        let container = r.container.as_deref().unwrap_or("");
        let headers = parts
            .headers
            .iter()
            .filter(|(k, _)| !DROP_REQUEST.contains(&k.as_str()))
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect();
        let req = Passthrough {
            method: parts.method.clone(),
            bucket: container.to_string(),
            key: r.blob.clone().unwrap_or_default(),
            query: q
                .iter()
                .filter(|(k, _)| !SAS_QUERY.contains(&k.to_ascii_lowercase().as_str()))
                .cloned()
                .collect(),
            headers,
            body: collect(body).await?,
            verbatim: true,
        };
        let resp = match to {
            RelayTo::Container(b) => self.pipeline.relay(&b, req).await?,
            RelayTo::Account(o) => o.passthrough(&req).await?,
        };
        if matches!(r.op, Operation::DeleteContainer) && resp.status.is_success() {
            self.pipeline.catalog().forget(container);
            self.invalidate_containers();
        }
        if r.op == Operation::Unsupported("SetBlobServiceProperties") && resp.status.is_success() {
            self.cors.forget();
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
    fn relays_what_only_the_origin_can_answer() {
        let none = HeaderMap::new();
        let mut leased = HeaderMap::new();
        leased.insert("x-ms-lease-id", "id".parse().expect("value"));
        let mut page = HeaderMap::new();
        page.insert("x-ms-blob-type", "PageBlob".parse().expect("value"));
        assert!(wants_relay(Operation::Unsupported("LeaseBlob"), &[], &none));
        assert!(wants_relay(Operation::Unsupported("PutPage"), &[], &none));
        assert!(!wants_relay(Operation::BlobBatch, &[], &none));
        assert!(!wants_relay(Operation::Preflight, &[], &none));
        assert!(!wants_relay(
            Operation::Unsupported("GetUserDelegationKey"),
            &[],
            &none
        ));
        assert!(wants_relay(Operation::PutBlob, &[], &page));
        assert!(wants_relay(Operation::DeleteBlob, &[], &leased));
        assert!(wants_relay(Operation::DeleteContainer, &[], &none));
        assert!(wants_relay(
            Operation::ListBlobs,
            &q(&[("include", "metadata,snapshots")]),
            &none
        ));
        assert!(!wants_relay(
            Operation::ListBlobs,
            &q(&[("include", "metadata")]),
            &none
        ));
        assert!(!wants_relay(Operation::PutBlob, &[], &none));
        assert!(!wants_relay(Operation::GetBlob, &[], &leased));
    }
}
