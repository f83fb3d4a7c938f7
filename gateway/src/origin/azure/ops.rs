//! The [`Origin`] trait for an Azure origin: containers, reads, writes, append blobs,
//! properties, S3 parts and Blob blocks, deletes, relays, copy sources, foreign credentials
//! and listings, each as the Azure requests it makes.

use std::ops::Range;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use cistern_auth::sigv4::uri_encode;
use cistern_cache::ObjectMeta;
use http::{Method, StatusCode};

use super::blocks::parts_id;
use super::headers::{content_headers, http_time, meta_from_headers, metadata_headers};
use super::list::{container_listings, XmlBlobItem, XmlBlobsResult, XmlContainers};
use super::{Auth, AzureOrigin};
use crate::error::{Error, ErrorKind, Result};
use crate::origin::wire::bad_xml;
use crate::origin::wire::{header, header_pairs, ranged_answer, read_text, unquote};
use crate::origin::BlockRef;
use crate::origin::{
    Access, BucketEntry, ForeignCredential, ListCursor, ListEntry, ListPage, ListQuery, Origin,
    PartInfo, PassResponse, Passthrough, PutOptions, PutResult, RangeRead, Upload,
};

/// The largest single Put Blob Azure accepts.
const MAX_PUT_BLOB: u64 = 5000 << 20;

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

    /// Get Block List with `blocklisttype=uncommitted`.
    async fn staged_blocks(&self, bucket: &str, key: &str) -> Result<Vec<(String, u64)>> {
        Ok(self
            .block_list(bucket, key, "uncommitted")
            .await?
            .uncommitted
            .pairs())
    }

    /// Get Block List with `blocklisttype=committed`.
    async fn committed_blocks(&self, bucket: &str, key: &str) -> Result<Vec<(String, u64)>> {
        Ok(self
            .block_list(bucket, key, "committed")
            .await?
            .committed
            .pairs())
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
        parse_blob_page(&body, skip_to.as_deref())
    }
}

/// Parses a List Blobs answer into a page, skipping names up to `skip_to`. The body comes from
/// the origin: anything it holds is answered with an error, never a panic.
pub(crate) fn parse_blob_page(body: &str, skip_to: Option<&str>) -> Result<ListPage> {
    // Blob names keep their leading and trailing spaces.
    let parsed: XmlBlobsResult =
        quick_xml::de::from_str(&super::wire::keep_spaces(body, &["Name", "NextMarker"]))
            .map_err(bad_xml)?;
    let after = |name: &str| skip_to.is_none_or(|s| name > s);
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
