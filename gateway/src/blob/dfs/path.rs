//! The DFS path operations over the origin's flat namespace: create (file or directory),
//! append and flush, properties, delete and rename.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine as _;
use cistern_cache::ObjectMeta;
use futures::StreamExt;
use http::{HeaderMap, StatusCode};

use super::super::auth::Caller;
use super::super::error::BlobError;
use super::super::read::{blob_headers, read_conditions};
use super::super::router::{Operation, Routed};
use super::super::write::content_length;
use super::super::{get, header, quoted, set, xml, BlobFront, Reply, RequestBody};
use super::error::{invalid_flush_position, path_exists, path_not_found};
use super::router::{DfsOp, DfsRouted};
use super::{parse_properties, posix_headers, properties_header};
use crate::error::ErrorKind;
use crate::origin::{BlockRef, PropertyKind, PutOptions, Upload};
use crate::pipeline::{BucketBinding, Conditions, Selection};

/// What a path is.
enum Kind {
    /// A file, with its metadata.
    File(Arc<ObjectMeta>),
    /// A directory, with its marker's metadata when it has one.
    Dir(Option<Arc<ObjectMeta>>),
    /// Nothing.
    Missing,
}

/// The block an append at `position` stages (every id of a file has the same length, as
/// Azure requires).
fn block_id(position: u64) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("cistern-dfs-{position:020}"))
}

/// The position a staged block's id names, when it is one of ours.
fn block_position(id: &str) -> Option<u64> {
    let raw = base64::engine::general_purpose::STANDARD.decode(id).ok()?;
    std::str::from_utf8(&raw)
        .ok()?
        .strip_prefix("cistern-dfs-")?
        .parse()
        .ok()
}

/// The `position` parameter of append and flush.
fn position(q: &[(String, String)]) -> Result<u64, BlobError> {
    match get(q, "position") {
        Some(v) => v.parse().map_err(|_| {
            BlobError::invalid_query(
                "position",
                v,
                "The value of position must be a non-negative integer.",
            )
        }),
        None => Err(BlobError::new(
            StatusCode::BAD_REQUEST,
            "MissingRequiredQueryParameter",
            "A query parameter that's mandatory for this request is not specified.",
        )
        .with_detail("QueryParameterName", "position")),
    }
}

/// A boolean query parameter (absent: false).
fn flag(q: &[(String, String)], name: &'static str) -> Result<bool, BlobError> {
    match get(q, name) {
        None => Ok(false),
        Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
        Some(v) => Err(BlobError::invalid_query(
            name,
            v,
            "The value must be true or false.",
        )),
    }
}

/// The content headers a create or flush sets (`x-ms-content-*`, `x-ms-cache-control`),
/// over the ones the file has.
fn content_options(h: &HeaderMap, base: Option<&ObjectMeta>) -> PutOptions {
    let pick = |name: &str, current: Option<&Option<String>>| {
        header(h, name)
            .map(str::to_string)
            .or_else(|| current.cloned().flatten())
    };
    PutOptions {
        content_type: pick("x-ms-content-type", base.map(|m| &m.content_type)),
        content_encoding: pick("x-ms-content-encoding", base.map(|m| &m.content_encoding)),
        content_language: pick("x-ms-content-language", base.map(|m| &m.content_language)),
        cache_control: pick("x-ms-cache-control", base.map(|m| &m.cache_control)),
        content_disposition: pick(
            "x-ms-content-disposition",
            base.map(|m| &m.content_disposition),
        ),
        user_metadata: base.map(|m| m.user_metadata.clone()).unwrap_or_default(),
        ..PutOptions::default()
    }
}

fn empty_upload() -> Upload {
    Upload {
        body: futures::stream::empty().boxed(),
        len: 0,
    }
}

fn written(status: StatusCode, etag: &str, modified: Option<SystemTime>) -> Reply {
    let mut h = HeaderMap::new();
    set(&mut h, "etag", &quoted(etag));
    if let Some(t) = modified {
        set(&mut h, "last-modified", &xml::http_date(t));
    }
    set(&mut h, "x-ms-request-server-encrypted", "false");
    Reply::empty(status, h)
}

/// Conditional headers other than `If-None-Match: *`.
fn has_conditions(h: &HeaderMap) -> bool {
    ["if-match", "if-modified-since", "if-unmodified-since"]
        .iter()
        .any(|n| h.contains_key(*n))
        || header(h, "if-none-match").is_some_and(|v| v.trim() != "*")
}

impl BlobFront {
    /// The folder marker of `dir` (`dir/`), when there is one.
    pub(super) async fn folder_marker(
        &self,
        b: &BucketBinding,
        dir: &str,
    ) -> Result<Option<Arc<ObjectMeta>>, BlobError> {
        let key = format!("{dir}/");
        match self
            .pipeline
            .head(b, &key, None, &Conditions::default())
            .await
        {
            Ok((meta, _, _)) => Ok(Some(meta)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Get Blob Properties of a name that is no blob but has a folder marker: the directory
    /// as a Data Lake account's Blob endpoint describes it (an empty blob with the metadata
    /// `hdi_isfolder=true`). Only explicit directories (markers) answer: a Blob HEAD of a
    /// prefix that merely has blobs beneath it stays a 404, as on a flat account.
    pub(in crate::blob) async fn folder_as_blob(
        &self,
        b: &BucketBinding,
        blob: &str,
    ) -> Result<Option<Reply>, BlobError> {
        if blob.is_empty() || blob.ends_with('/') {
            return Ok(None);
        }
        let Some(marker) = self.folder_marker(b, blob).await? else {
            return Ok(None);
        };
        let mut h = HeaderMap::new();
        let mut meta = (*marker).clone();
        meta.user_metadata.retain(|(k, _)| k != "hdi_isfolder");
        meta.user_metadata
            .push(("hdi_isfolder".to_string(), "true".to_string()));
        blob_headers(&mut h, &meta);
        Ok(Some(Reply {
            status: StatusCode::OK,
            headers: h,
            body: super::super::BlobBody::Empty,
            length: Some(0),
        }))
    }

    /// Whether `path` is a file (meeting `cond`), a directory, or nothing.
    async fn kind(
        &self,
        b: &BucketBinding,
        path: &str,
        cond: &Conditions,
    ) -> Result<Kind, BlobError> {
        match self.pipeline.head(b, path, None, cond).await {
            Ok((meta, _, _)) => return Ok(Kind::File(meta)),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        if let Some(marker) = self.folder_marker(b, path).await? {
            return Ok(Kind::Dir(Some(marker)));
        }
        if self.has_children(b, path).await? {
            return Ok(Kind::Dir(None));
        }
        Ok(Kind::Missing)
    }

    /// Create (`resource=file|directory`): an empty file, or a directory's marker.
    pub(super) async fn create_path(
        &self,
        fs: &str,
        path: &str,
        directory: bool,
        h: &HeaderMap,
    ) -> Result<Reply, BlobError> {
        let b = self.bucket(fs).await?;
        let create_only = header(h, "if-none-match").is_some_and(|v| v.trim() == "*");
        if has_conditions(h) {
            // Met by the path as it is now (evaluated, then the write: not atomic).
            self.pipeline
                .head(&b, path, None, &read_conditions(h)?)
                .await?;
        }
        if create_only
            && !matches!(
                self.kind(&b, path, &Conditions::default()).await?,
                Kind::Missing
            )
        {
            return Err(path_exists());
        }
        if directory {
            if let Ok((_, _, _)) = self
                .pipeline
                .head(&b, path, None, &Conditions::default())
                .await
            {
                return Err(BlobError::new(
                    StatusCode::CONFLICT,
                    "PathConflict",
                    "The specified path, or an element of the path, exists and its resource type is invalid for this operation.",
                ));
            }
        }
        let mut opts = content_options(h, None);
        if let Some(p) = header(h, "x-ms-properties") {
            opts.user_metadata = parse_properties(p)?;
        }
        let key = if directory {
            format!("{path}/")
        } else {
            path.to_string()
        };
        let put = self.pipeline.put(&b, &key, empty_upload(), &opts).await?;
        let mut reply = written(StatusCode::CREATED, &put.etag, put.last_modified);
        set(&mut reply.headers, "content-length", "0");
        Ok(reply)
    }

    /// Append (`action=append&position=N`): stages the body as a block at `position`; with
    /// `flush=true`, flushes at its end too.
    pub(super) async fn append(
        &self,
        fs: &str,
        path: &str,
        q: &[(String, String)],
        h: &HeaderMap,
        body: RequestBody,
    ) -> Result<Reply, BlobError> {
        let at = position(q)?;
        let len = content_length(h)?;
        let flush = flag(q, "flush")?;
        let b = self.bucket(fs).await?;
        // Appends go to files that exist (Azure: 404 PathNotFound), under their lease.
        self.pipeline
            .head(&b, path, None, &Conditions::default())
            .await?;
        self.check_lease(&b, path, h).await?;
        if len > 0 {
            b.origin
                .put_block(
                    &b.origin_bucket,
                    path,
                    &block_id(at),
                    Upload { body, len },
                    header(h, "content-md5"),
                )
                .await?;
        }
        if flush {
            return self.flush_at(&b, path, at + len, h).await;
        }
        let mut headers = HeaderMap::new();
        if let Some(md5) = header(h, "content-md5") {
            set(&mut headers, "content-md5", md5);
        }
        set(&mut headers, "x-ms-request-server-encrypted", "false");
        Ok(Reply::empty(StatusCode::ACCEPTED, headers))
    }

    /// Flush (`action=flush&position=N`): commits what was appended up to `position`.
    pub(super) async fn flush(
        &self,
        fs: &str,
        path: &str,
        q: &[(String, String)],
        h: &HeaderMap,
    ) -> Result<Reply, BlobError> {
        let at = position(q)?;
        if flag(q, "retainUncommittedData")? {
            return Err(BlobError::not_implemented(
                "Flush with retainUncommittedData=true",
            ));
        }
        flag(q, "close")?; // Accepted: Cistern sends no change notifications.
        let b = self.bucket(fs).await?;
        self.flush_at(&b, path, at, h).await
    }

    /// Commits the file as its committed bytes followed by the staged appends that run
    /// contiguously from its length to `end`. The committed bytes, when there are any, are
    /// referenced as the blocks they were committed as (Azure, after an earlier flush), or else
    /// staged again as the first block (other origins keep no committed blocks).
    async fn flush_at(
        &self,
        b: &Arc<BucketBinding>,
        path: &str,
        end: u64,
        h: &HeaderMap,
    ) -> Result<Reply, BlobError> {
        let (meta, _, _) = self
            .pipeline
            .head(b, path, None, &read_conditions(h)?)
            .await?;
        self.check_lease(b, path, h).await?;
        let committed = meta.size;
        if end < committed {
            return Err(invalid_flush_position());
        }
        if end == committed {
            self.release_after_write(b, path, h).await?;
            return Ok(written(
                StatusCode::OK,
                &meta.etag,
                Some(meta.last_modified),
            ));
        }
        let staged: std::collections::HashMap<u64, (String, u64)> = b
            .origin
            .staged_blocks(&b.origin_bucket, path)
            .await?
            .into_iter()
            .filter_map(|(id, size)| Some((block_position(&id)?, (id, size))))
            .collect();
        let mut blocks = Vec::new();
        let mut at = committed;
        while at < end {
            let (id, size) = staged.get(&at).ok_or_else(invalid_flush_position)?;
            if *size == 0 {
                return Err(invalid_flush_position());
            }
            blocks.push(BlockRef::Uncommitted(id.clone()));
            at += size;
        }
        if at != end {
            return Err(invalid_flush_position());
        }
        // The committed bytes, as the blocks they are committed as where the origin keeps
        // such blocks and they are all ours (an Azure file flushed before), else staged anew.
        let kept: Vec<(String, u64)> = if committed > 0 {
            b.origin.committed_blocks(&b.origin_bucket, path).await?
        } else {
            Vec::new()
        };
        let reuse = !kept.is_empty()
            && kept.iter().map(|(_, n)| n).sum::<u64>() == committed
            && kept.iter().all(|(id, _)| block_position(id).is_some());
        if reuse {
            let prefix = kept.into_iter().map(|(id, _)| BlockRef::Committed(id));
            blocks.splice(0..0, prefix);
        } else if committed > 0 {
            let cond = Conditions {
                if_match: Some(crate::pipeline::EtagMatch::OneOf(vec![meta.etag.clone()])),
                ..Conditions::default()
            };
            let read = self.pipeline.get(b, path, Selection::All, &cond).await?;
            b.origin
                .put_block(
                    &b.origin_bucket,
                    path,
                    &block_id(0),
                    Upload {
                        body: read.body.boxed(),
                        len: committed,
                    },
                    None,
                )
                .await?;
            blocks.insert(0, BlockRef::Uncommitted(block_id(0)));
        }
        let opts = content_options(h, Some(&meta));
        let put = self.pipeline.commit_blocks(b, path, &blocks, &opts).await?;
        self.release_after_write(b, path, h).await?;
        let mut reply = written(StatusCode::OK, &put.etag, put.last_modified);
        set(&mut reply.headers, "content-length", "0");
        Ok(reply)
    }

    /// Set Properties (`action=setProperties`): `x-ms-properties` replaces the file's user
    /// metadata, `x-ms-content-*` its content headers.
    pub(super) async fn set_path_properties(
        &self,
        fs: &str,
        path: &str,
        h: &HeaderMap,
    ) -> Result<Reply, BlobError> {
        let b = self.bucket(fs).await?;
        let cond = read_conditions(h)?;
        self.check_lease(&b, path, h).await?;
        let mut put = None;
        if let Some(p) = header(h, "x-ms-properties") {
            let props = parse_properties(p)?;
            put = Some(
                self.pipeline
                    .set_properties(
                        &b,
                        path,
                        &cond,
                        |m| PutOptions {
                            user_metadata: props,
                            ..content_options(&HeaderMap::new(), Some(m))
                        },
                        PropertyKind::Metadata,
                    )
                    .await?,
            );
        }
        let content = [
            "x-ms-content-type",
            "x-ms-content-encoding",
            "x-ms-content-language",
            "x-ms-cache-control",
            "x-ms-content-disposition",
        ];
        if content.iter().any(|n| h.contains_key(*n)) {
            put = Some(
                self.pipeline
                    .set_properties(
                        &b,
                        path,
                        &Conditions::default(),
                        |m| content_options(h, Some(m)),
                        PropertyKind::Headers,
                    )
                    .await?,
            );
        }
        match put {
            Some(p) => Ok(written(StatusCode::OK, &p.etag, p.last_modified)),
            None => {
                let (meta, _, _) = self.pipeline.head(&b, path, None, &cond).await?;
                Ok(written(
                    StatusCode::OK,
                    &meta.etag,
                    Some(meta.last_modified),
                ))
            }
        }
    }

    /// Get Properties, `getStatus` and `getAccessControl` (HEAD).
    pub(super) async fn path_properties(
        &self,
        fs: &str,
        path: &str,
        op: DfsOp,
        h: &HeaderMap,
    ) -> Result<Reply, BlobError> {
        let b = self.bucket(fs).await?;
        let mut headers = HeaderMap::new();
        let kind = if path.is_empty() {
            Kind::Dir(None) // the filesystem's root
        } else {
            self.kind(&b, path, &read_conditions(h)?).await?
        };
        let (dir, size) = match kind {
            Kind::File(meta) => {
                blob_headers(&mut headers, &meta);
                if op == DfsOp::GetProperties {
                    set(
                        &mut headers,
                        "x-ms-properties",
                        &properties_header(&meta.user_metadata),
                    );
                }
                (false, meta.size)
            }
            Kind::Dir(marker) => {
                let (etag, modified) = marker.as_ref().map_or_else(
                    || {
                        (
                            format!("dir-{}", hex::encode(sha2_16(path))),
                            SystemTime::UNIX_EPOCH,
                        )
                    },
                    |m| (m.etag.clone(), m.last_modified),
                );
                set(&mut headers, "etag", &quoted(&etag));
                set(&mut headers, "last-modified", &xml::http_date(modified));
                if op == DfsOp::GetProperties {
                    let meta = marker
                        .as_ref()
                        .map(|m| m.user_metadata.clone())
                        .unwrap_or_default();
                    set(&mut headers, "x-ms-properties", &properties_header(&meta));
                }
                (true, 0)
            }
            Kind::Missing => return Err(path_not_found()),
        };
        set(
            &mut headers,
            "x-ms-resource-type",
            if dir { "directory" } else { "file" },
        );
        posix_headers(&mut headers, dir);
        if op == DfsOp::GetAccessControl {
            let acl = if dir {
                "user::rwx,group::r-x,other::---"
            } else {
                "user::rw-,group::r--,other::---"
            };
            set(&mut headers, "x-ms-acl", acl);
        }
        Ok(Reply {
            status: StatusCode::OK,
            headers,
            body: super::super::BlobBody::Empty,
            length: Some(size),
        })
    }

    /// Delete: a file, or a directory (only an empty one unless `recursive=true`).
    pub(super) async fn delete_path(
        &self,
        fs: &str,
        path: &str,
        q: &[(String, String)],
        h: &HeaderMap,
    ) -> Result<Reply, BlobError> {
        let recursive = flag(q, "recursive")?;
        let b = self.bucket(fs).await?;
        match self.kind(&b, path, &Conditions::default()).await? {
            Kind::File(_) => {
                self.check_lease(&b, path, h).await?;
                self.pipeline.delete(&b, path).await?;
                self.forget_lease(&b, path).await?;
            }
            Kind::Dir(_) => {
                if !recursive && self.has_children(&b, path).await? {
                    return Err(BlobError::new(
                        StatusCode::CONFLICT,
                        "DirectoryNotEmpty",
                        "The recursive query parameter value must be true to delete a non-empty directory.",
                    ));
                }
                self.delete_under(&b, &format!("{path}/")).await?;
            }
            Kind::Missing => return Err(path_not_found()),
        }
        Ok(Reply::empty(StatusCode::OK, HeaderMap::new()))
    }

    /// Deletes every object whose key starts with `prefix`, a page at a time.
    pub(super) async fn delete_under(
        &self,
        b: &BucketBinding,
        prefix: &str,
    ) -> Result<(), BlobError> {
        let mut continuation = None;
        loop {
            let page = self.page_under(b, prefix, continuation, 1000).await?;
            for e in &page.entries {
                self.pipeline.delete(b, &e.key).await?;
            }
            match page.next {
                Some(next) if page.truncated => continuation = Some(next),
                _ => break,
            }
        }
        // The directory's own marker, whether or not the listing showed it (a directory
        // origin's is the directory, and its metadata may still be cached).
        if !prefix.is_empty() {
            self.pipeline.delete(b, prefix).await?;
        }
        Ok(())
    }

    /// Rename (`x-ms-rename-source: /fs/path`): a copy of each object, then its deletion.
    /// The caller must be allowed to read and delete the source as well as write here.
    pub(super) async fn rename(
        &self,
        r: &DfsRouted,
        caller: &Caller,
        h: &HeaderMap,
        peer: Option<IpAddr>,
    ) -> Result<Reply, BlobError> {
        let raw = header(h, "x-ms-rename-source").unwrap_or("");
        // A SAS after `?` authorizes the source at Azure; Cistern's caller is judged here.
        let raw_path = raw.split_once('?').map_or(raw, |(p, _)| p);
        let source = super::router::route(
            &http::Method::DELETE,
            Some(&r.account),
            raw_path,
            &[],
            false,
        )
        .ok()
        .filter(|s| s.path.is_some())
        .ok_or_else(|| {
            BlobError::invalid_header(
                "x-ms-rename-source",
                "The rename source must be /{filesystem}/{path}.",
            )
        })?;
        let (src_fs, src_path) = (
            source.filesystem.clone().unwrap_or_default(),
            source.path.clone().unwrap_or_default(),
        );
        let now = SystemTime::now();
        for op in [Operation::GetBlob, Operation::DeleteBlob] {
            let routed = Routed {
                op,
                account: r.account.clone(),
                container: Some(src_fs.clone()),
                blob: Some(src_path.clone()),
            };
            self.authorize(caller, &routed, peer, now).await?;
        }
        let dst_fs = r.filesystem.as_deref().unwrap_or("");
        let dst_path = r.path.as_deref().unwrap_or("");
        if src_fs == dst_fs
            && (dst_path == src_path || dst_path.starts_with(&format!("{src_path}/")))
        {
            return Err(BlobError::new(
                StatusCode::BAD_REQUEST,
                "InvalidDestinationPath",
                "The specified path, or an element of the path, cannot be renamed to itself or beneath itself.",
            ));
        }
        let sb = self.bucket(&src_fs).await?;
        let db = self.bucket(dst_fs).await?;
        let create_only = header(h, "if-none-match").is_some_and(|v| v.trim() == "*");
        if create_only
            && !matches!(
                self.kind(&db, dst_path, &Conditions::default()).await?,
                Kind::Missing
            )
        {
            return Err(path_exists());
        }
        match self.kind(&sb, &src_path, &Conditions::default()).await? {
            Kind::Missing => Err(BlobError::new(
                StatusCode::NOT_FOUND,
                "SourcePathNotFound",
                "The source path for a rename operation does not exist.",
            )),
            Kind::File(_) => {
                let mut source_lease = HeaderMap::new();
                if let Some(v) = h.get("x-ms-source-lease-id") {
                    source_lease.insert("x-ms-lease-id", v.clone());
                }
                self.check_lease(&sb, &src_path, &source_lease).await?;
                self.check_lease(&db, dst_path, h).await?;
                let put = self.copy_object(&sb, &src_path, &db, dst_path).await?;
                self.forget_lease(&sb, &src_path).await?;
                self.pipeline.delete(&sb, &src_path).await?;
                Ok(written(StatusCode::CREATED, &put.etag, put.last_modified))
            }
            Kind::Dir(_) => {
                let prefix = format!("{src_path}/");
                // Copy everything first (a page at a time, by key), then delete.
                let mut continuation = None;
                loop {
                    let page = self.page_under(&sb, &prefix, continuation, 1000).await?;
                    for e in &page.entries {
                        let to = format!("{dst_path}/{}", &e.key[prefix.len()..]);
                        self.copy_object(&sb, &e.key, &db, &to).await?;
                    }
                    match page.next {
                        Some(next) if page.truncated => continuation = Some(next),
                        _ => break,
                    }
                }
                self.delete_under(&sb, &prefix).await?;
                let mut reply = Reply::empty(StatusCode::CREATED, HeaderMap::new());
                set(&mut reply.headers, "x-ms-request-server-encrypted", "false");
                Ok(reply)
            }
        }
    }

    /// Copies one object through the cache: its bytes, content headers and user metadata.
    async fn copy_object(
        &self,
        from: &Arc<BucketBinding>,
        from_key: &str,
        to: &BucketBinding,
        to_key: &str,
    ) -> Result<crate::origin::PutResult, BlobError> {
        let read = self
            .pipeline
            .get(from, from_key, Selection::All, &Conditions::default())
            .await?;
        let m = &read.meta;
        let opts = PutOptions {
            content_type: m.content_type.clone(),
            content_encoding: m.content_encoding.clone(),
            content_language: m.content_language.clone(),
            cache_control: m.cache_control.clone(),
            content_disposition: m.content_disposition.clone(),
            user_metadata: m.user_metadata.clone(),
            ..PutOptions::default()
        };
        let len = m.size;
        Ok(self
            .pipeline
            .put(
                to,
                to_key,
                Upload {
                    body: read.body.boxed(),
                    len,
                },
                &opts,
            )
            .await?)
    }
}

/// The first 16 bytes of SHA-256 (an implied directory's stable ETag).
fn sha2_16(s: &str) -> Vec<u8> {
    use sha2::Digest as _;
    sha2::Sha256::digest(s.as_bytes())[..16].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_ids_encode_positions_at_one_length() {
        assert_eq!(block_position(&block_id(0)), Some(0));
        assert_eq!(block_position(&block_id(u64::MAX)), Some(u64::MAX));
        assert_eq!(block_id(1).len(), block_id(1 << 40).len());
        assert_eq!(block_position("QUFBQQ=="), None);
        assert_eq!(block_position("%%%"), None);
    }
}
