//! Blob blocks on an S3 origin: the staging area under [`BLOCK_STAGING`], and the staged
//! blocks' listing, copies, streams, writes and deletes that Put Block and Put Block List use.

use std::ops::Range;

use bytes::Bytes;
use cistern_auth::sigv4;
use http::Method;

use super::list::xml_field;
use super::S3Origin;
use crate::error::{Error, ErrorKind, Result};
use crate::origin::wire::{read_text, unquote};
use crate::origin::{ListCursor, ListQuery, PutOptions, Upload};

/// Where Blob blocks bound for an S3 origin are staged, inside the blob's bucket. Cistern's
/// listings of S3 origins leave this prefix out; at the origin a lifecycle rule on it cleans
/// up blocks that were never committed.
pub const BLOCK_STAGING: &str = ".cistern-blocks/";

/// Keys in the staging area are Cistern's own: clients neither read nor write them.
pub(super) fn not_staging(key: &str, kind: ErrorKind) -> Result<()> {
    if key.starts_with(BLOCK_STAGING) {
        return Err(Error::new(
            kind,
            "This key is in Cistern's block staging area",
        ));
    }
    Ok(())
}

/// One staged block as listed when a commit began.
#[derive(Debug, Clone)]
pub(super) struct Staged {
    pub(super) name: String,
    pub(super) size: u64,
    pub(super) etag: String,
}

/// The staging prefix of one blob's blocks.
pub(super) fn staged_prefix(key: &str) -> String {
    use sha2::Digest as _;
    let d = sha2::Sha256::digest(key.as_bytes());
    format!("{BLOCK_STAGING}{}/", hex::encode(&d[..16]))
}

/// The staging object of one block.
pub(super) fn staged_block(key: &str, block_id: &str) -> String {
    format!("{}{}", staged_prefix(key), hex::encode(block_id.as_bytes()))
}

impl S3Origin {
    /// The blob's staged blocks and their sizes (every listing page).
    pub(super) async fn staged_objects(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<std::collections::HashMap<String, (u64, String)>> {
        let mut out = std::collections::HashMap::new();
        let mut marker = None;
        loop {
            let page = self
                .list_raw(
                    bucket,
                    &ListQuery {
                        prefix: staged_prefix(key),
                        delimiter: None,
                        max_keys: 1000,
                        cursor: ListCursor::V1 { marker },
                    },
                )
                .await?;
            out.extend(page.entries.into_iter().map(|e| (e.key, (e.size, e.etag))));
            match page.next {
                Some(m) if page.truncated && out.len() < 100_000 => marker = Some(m),
                _ => return Ok(out),
            }
        }
    }

    /// UploadPartCopy of a whole object of the same bucket.
    pub(super) async fn copy_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part: u32,
        source: &Staged,
    ) -> Result<String> {
        let src = format!(
            "/{}/{}",
            sigv4::uri_encode(bucket, false),
            sigv4::uri_encode(&source.name, true)
        );
        let pinned = format!("\"{}\"", source.etag);
        let resp = self
            .send(
                Method::PUT,
                Some(bucket),
                Some(key),
                &[
                    ("partNumber".to_string(), part.to_string()),
                    ("uploadId".to_string(), upload_id.to_string()),
                ],
                &[
                    ("x-amz-copy-source", src.as_str()),
                    ("x-amz-copy-source-if-match", pinned.as_str()),
                ],
                &[],
            )
            .await?;
        let body = read_text(resp).await?;
        xml_field(&body, "ETag")
            .map(|e| unquote(&e.replace("&quot;", "\"")).to_string())
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::OriginUnavailable,
                    "The origin did not return the copied part's ETag",
                )
            })
    }

    /// The staged blocks' bytes, one after the other, in ranged reads of at most 8 MiB.
    pub(super) fn staged_stream(
        &self,
        bucket: &str,
        group: Vec<Staged>,
    ) -> futures::stream::BoxStream<'static, Result<Bytes>> {
        use futures::StreamExt as _;
        const STEP: u64 = 8 << 20;
        let this = self.clone();
        let bucket = bucket.to_string();
        let ranges: Vec<(Staged, std::ops::Range<u64>)> = group
            .into_iter()
            .flat_map(|b| {
                let n = b.size;
                (0..n.div_ceil(STEP)).map(move |i| (b.clone(), i * STEP..((i + 1) * STEP).min(n)))
            })
            .collect();
        futures::stream::iter(ranges)
            .then(move |(block, range)| {
                let (this, bucket) = (this.clone(), bucket.clone());
                async move {
                    let want = range.end - range.start;
                    let data = this.read_staged(&bucket, &block, range).await?;
                    if data.len() as u64 != want {
                        return Err(Error::new(
                            ErrorKind::InvalidPart,
                            "A staged block changed while it was committed",
                        ));
                    }
                    Ok(data)
                }
            })
            .boxed()
    }

    /// DeleteObject of any key (missing ones succeed).
    pub(super) async fn delete_any(&self, bucket: &str, key: &str) -> Result<()> {
        match self
            .send(Method::DELETE, Some(bucket), Some(key), &[], &[], &[])
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Stores a staged block (a key of the staging area, which the trait's put refuses).
    pub(super) async fn put_staged(
        &self,
        bucket: &str,
        name: &str,
        upload: Upload,
        opts: &PutOptions,
    ) -> Result<()> {
        let upload = super::upload::settled(upload, opts.content_md5.as_deref()).await?;
        let len = upload.len.to_string();
        let mut headers = vec![("content-length", len.as_str())];
        if let Some(m) = &opts.content_md5 {
            headers.push(("content-md5", m.as_str()));
        }
        self.send_body(
            Method::PUT,
            Some(bucket),
            Some(name),
            &[],
            &headers,
            &[],
            Some(reqwest::Body::wrap_stream(upload.body)),
        )
        .await?;
        Ok(())
    }

    /// A range of a staged block, of the version listed when the commit began (a block
    /// staged again meanwhile fails the commit rather than mixing bytes).
    async fn read_staged(&self, bucket: &str, block: &Staged, range: Range<u64>) -> Result<Bytes> {
        let value = format!("bytes={}-{}", range.start, range.end.saturating_sub(1));
        let pinned = format!("\"{}\"", block.etag);
        let resp = self
            .send(
                Method::GET,
                Some(bucket),
                Some(&block.name),
                &[],
                &[("range", value.as_str()), ("if-match", pinned.as_str())],
                &[],
            )
            .await?;
        resp.bytes().await.map_err(|e| {
            Error::new(
                ErrorKind::OriginUnavailable,
                "The origin's response broke off",
            )
            .with_source(e.without_url())
        })
    }
}
