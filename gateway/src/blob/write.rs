//! Writes: Put Blob, Append Block, Set Blob Metadata and Properties, and what they read from
//! the request (`Content-Length`, the blob's properties, block ids and block lists).

use base64::Engine as _;
use bytes::BytesMut;
use futures::TryStreamExt;
use http::{HeaderMap, StatusCode};

use super::error::{already_exists, BlobError};
use super::read::conditions;
use super::router::Operation;
use super::{header, quoted, set, xml, BlobFront, Reply, RequestBody};

impl BlobFront {
    /// Put Blob: a block blob in one request, streamed to the origin.
    pub(super) async fn put_blob(
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

    /// Append Block: the body is added to the end of an append blob, all or nothing, with
    /// the append-position and max-size conditions.
    pub(super) async fn append_block(
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

    /// Set Blob Metadata (the `x-ms-meta-*` given replace all metadata) and Set Blob
    /// Properties (the `x-ms-blob-content-*` and cache control given replace them all; one not
    /// given is cleared, as Azure does), without rewriting the bytes.
    pub(super) async fn set_properties(
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
}

/// `Content-Length` of an upload, required.
pub(super) fn content_length(h: &HeaderMap) -> Result<u64, BlobError> {
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
pub(super) fn put_options(h: &HeaderMap, body_is_blob: bool) -> crate::origin::PutOptions {
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

/// Block ids: base64 of at most 64 bytes, as Azure requires.
pub(crate) fn valid_block_id(id: &str) -> bool {
    base64::engine::general_purpose::STANDARD
        .decode(id)
        .is_ok_and(|b| !b.is_empty() && b.len() <= 64)
}

/// The most a block list body may hold (50,000 blocks of 64-byte ids, with room).
const MAX_BLOCK_LIST_BYTES: usize = 8 << 20;

/// Reads and parses a Put Block List body: `Latest`, `Committed` and `Uncommitted` entries in
/// order.
pub(super) async fn read_block_list(
    mut body: RequestBody,
) -> Result<Vec<crate::origin::BlockRef>, BlobError> {
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
    parse_block_list(&buf)
}

/// Parses a Put Block List body (see [`read_block_list`]).
pub(crate) fn parse_block_list(buf: &[u8]) -> Result<Vec<crate::origin::BlockRef>, BlobError> {
    use crate::origin::BlockRef;
    let invalid = || {
        BlobError::new(
            StatusCode::BAD_REQUEST,
            "InvalidXmlDocument",
            "XML specified is not syntactically valid.",
        )
    };
    let mut reader = quick_xml::Reader::from_reader(buf);
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
