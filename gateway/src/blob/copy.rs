//! Copies within the account: the copy source and its authorization, Copy Blob, Put Block
//! From URL, and copies relayed to the destination's own origin.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use cistern_cache::range::RangeSpec;
use futures::StreamExt;
use http::{HeaderMap, Method, StatusCode};

use super::auth::{self, Caller, Incoming};
use super::error::{already_exists, cannot_verify, BlobError};
use super::read::{etag_list, parse_range};
use super::router::{self, Operation, Routed};
use super::write::{put_options, valid_block_id};
use super::{get, header, query_pairs, quoted, relay, set, xml, BlobFront, Reply};
use crate::pipeline::{BucketBinding, Conditions, Selection};

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

impl BlobFront {
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
    pub(super) async fn relay_same_origin_copy(
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

    /// Put Block From URL: a block made of (`x-ms-source-range` of) another blob of the
    /// account, read through the cache and staged like Put Block.
    pub(super) async fn put_block_from_url(
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
    pub(super) async fn copy_blob(
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
        // A copy id (a GUID, as Azure's): the copy is over when answered, so it only names it.
        set(&mut headers, "x-ms-copy-id", &super::guid(blob));
        set(&mut headers, "x-ms-copy-status", "success");
        Ok(Reply::empty(StatusCode::ACCEPTED, headers))
    }
}
