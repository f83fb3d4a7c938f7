//! The [`Origin`] trait for an S3 origin: buckets, reads, writes, Blob blocks, tags, listings,
//! multipart uploads, deletes and relays, each as the S3 requests it makes.

use std::ops::Range;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use cistern_auth::sigv4;
use cistern_cache::ObjectMeta;
use http::{Method, StatusCode};

use super::error::classify;
use super::headers::{meta_from_headers, object_headers, part_from_headers, written_headers};
use super::list::{parse_time, xml_field, XmlBuckets, XmlOwner, XmlParts, XmlTagging};
use super::list::{XmlUploads, XmlVersions, KEY_ELEMENTS};
use super::staging::{not_staging, staged_block, Staged, BLOCK_STAGING};
use super::S3Origin;
use crate::error::{Error, ErrorKind, Result};
use crate::origin::wire::bad_xml;
use crate::origin::wire::{header, header_pairs, keep_spaces, ranged_answer, read_text, unquote};
use crate::origin::{BucketEntry, ListPage, ListQuery, Origin, PartInfo, RangeRead};
use crate::origin::{Deleted, PassResponse, Passthrough, PutOptions, PutResult, Upload};

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

    /// The staged blocks' ids, from their staging objects' names.
    async fn staged_blocks(&self, bucket: &str, key: &str) -> Result<Vec<(String, u64)>> {
        not_staging(key, ErrorKind::InvalidArgument)?;
        let prefix = super::staging::staged_prefix(key);
        Ok(self
            .staged_objects(bucket, key)
            .await?
            .into_iter()
            .filter_map(|(name, (size, _))| {
                let id = hex::decode(name.strip_prefix(&prefix)?).ok()?;
                Some((String::from_utf8(id).ok()?, size))
            })
            .collect())
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
        let staged = self.staged_objects(bucket, key).await?;
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
