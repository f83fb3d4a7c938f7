//! The `fs` origin: a local directory whose subdirectories are buckets and whose files are
//! objects (`<root>/<bucket>/<key>`).
//!
//! Keys never escape the root: empty, `.` and `..` segments, absolute keys and NUL bytes are
//! refused, and the resolved path (symlinks followed) must lie inside the root.
//!
//! ETag: the first 16 bytes of SHA-256 over the file's inode, size, modification time and
//! status-change time (nanoseconds), in hex, followed by `-1` so that no client mistakes it
//! for an MD5 of the content. Any write, replace or truncate changes it.

use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use cistern_cache::ObjectMeta;
use sha2::{Digest, Sha256};

mod files;
mod folders;
mod parts;

pub(crate) use files::read_aligned;
use files::*;

use super::upload::BodyCheck;
use super::BlockRef;
use super::{
    listing, single_part, BucketEntry, ListEntry, ListPage, ListQuery, Origin, PartInfo,
    PutOptions, PutResult, RangeRead, Upload,
};
use crate::error::{Error, ErrorKind, Result};

/// A directory of buckets.
#[derive(Debug, Clone)]
pub struct FsOrigin {
    root: PathBuf,
    /// When abandoned uploads were last swept (seconds since the epoch).
    last_sweep: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// Staged parts and blocks, and temporary files of writes a crash cut short, are removed once
/// untouched this long (as Azure drops uncommitted blocks after 7 days).
pub const STAGING_TTL: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// How often the uploads directory is swept (by the next write that starts).
const SWEEP_EVERY_SECS: u64 = 3600;

impl FsOrigin {
    /// Serves `root`, which must exist.
    pub fn new(root: &Path) -> std::io::Result<Self> {
        Ok(Self {
            root: root.canonicalize()?,
            last_sweep: std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0)),
        })
    }

    /// A fresh temporary path in the uploads directory.
    async fn temp_file(&self) -> Result<PathBuf> {
        let uploads = self.root.join(UPLOADS_DIR);
        tokio::fs::create_dir_all(&uploads)
            .await
            .map_err(write_failed)?;
        self.maybe_sweep();
        Ok(uploads.join(unique_name("up")))
    }

    /// Starts a sweep of abandoned uploads in the background, at most once an hour.
    fn maybe_sweep(&self) {
        use std::sync::atomic::Ordering;
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let last = self.last_sweep.load(Ordering::Relaxed);
        if now.saturating_sub(last) < SWEEP_EVERY_SECS
            || self
                .last_sweep
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let dir = self.root.join(UPLOADS_DIR);
        tokio::spawn(async move {
            match sweep(&dir, STAGING_TTL).await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(removed = n, dir = %dir.display(), "removed abandoned uploads")
                }
                Err(e) => tracing::warn!(error = %e, "cannot sweep abandoned uploads"),
            }
        });
    }

    /// The staging directory of an upload in parts, after checking the id is one of ours
    /// (32 hex digits: never a path).
    fn staging(&self, upload_id: &str) -> Result<PathBuf> {
        if upload_id.len() != 32 || !upload_id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::new(
                ErrorKind::NoSuchUpload,
                "The specified upload does not exist",
            ));
        }
        Ok(self.root.join(UPLOADS_DIR).join(format!("mp-{upload_id}")))
    }

    /// Where the staged blocks of one object live.
    fn block_staging(&self, bucket: &str, key: &str) -> PathBuf {
        let mut h = Sha256::new();
        h.update(bucket.as_bytes());
        h.update([0]);
        h.update(key.as_bytes());
        self.root
            .join(UPLOADS_DIR)
            .join(format!("blocks-{}", hex::encode(&h.finalize()[..16])))
    }

    /// The staging directory of `upload_id`, which must have been started for this bucket
    /// and key.
    async fn owned_staging(&self, bucket: &str, key: &str, upload_id: &str) -> Result<PathBuf> {
        let dir = self.staging(upload_id)?;
        let recorded = tokio::fs::read_to_string(dir.join("target"))
            .await
            .map_err(|_| {
                Error::new(
                    ErrorKind::NoSuchUpload,
                    "The specified upload does not exist",
                )
            })?;
        if recorded != format!("{bucket}\n{key}") {
            return Err(Error::new(
                ErrorKind::NoSuchUpload,
                "The specified upload does not exist",
            ));
        }
        Ok(dir)
    }

    fn bucket_path(&self, bucket: &str) -> Result<PathBuf> {
        if bucket.is_empty() || bucket.starts_with('.') || bucket.contains(['/', '\\', '\0']) {
            return Err(Error::new(
                ErrorKind::NoSuchBucket,
                "The specified bucket does not exist",
            ));
        }
        Ok(self.root.join(bucket))
    }

    /// Maps a key to a path inside the bucket, refusing anything that could leave it.
    fn object_path(&self, bucket: &str, key: &str) -> Result<PathBuf> {
        // A key no file can have (`dir/`, `a//b`, `..`) simply does not exist here; answering
        // NotFound keeps folder-marker probes (`HEAD dir/`) working and never touches the disk.
        let invalid = || Error::new(ErrorKind::NotFound, "The specified key does not exist");
        if key.is_empty() || key.starts_with('/') || key.contains('\0') {
            return Err(invalid());
        }
        if key
            .split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == "..")
        {
            return Err(invalid());
        }
        let bucket_dir = self.bucket_path(bucket)?;
        // Resolve symlinks and make sure the file is still inside its bucket: authorization is
        // per bucket, so a link from a public bucket into another one must not serve it.
        let real = bucket_dir
            .join(key)
            .canonicalize()
            .map_err(|e| not_found_or_io(&e))?;
        let bucket_real = bucket_dir.canonicalize().map_err(|e| not_found_or_io(&e))?;
        if !bucket_real.starts_with(&self.root) || !real.starts_with(&bucket_real) {
            return Err(Error::new(
                ErrorKind::AccessDenied,
                "The key resolves outside its bucket",
            ));
        }
        Ok(real)
    }
}

#[async_trait]
impl Origin for FsOrigin {
    async fn list_buckets(&self) -> Result<Vec<BucketEntry>> {
        let root = self.root.clone();
        blocking(move || {
            let mut out = Vec::new();
            for entry in std::fs::read_dir(&root).map_err(|e| not_found_or_io(&e))? {
                let Ok(entry) = entry else { continue };
                let Ok(name) = entry.file_name().into_string() else {
                    continue;
                };
                if name.starts_with('.') {
                    continue;
                }
                if let Ok(md) = std::fs::metadata(entry.path()) {
                    if md.is_dir() {
                        out.push(BucketEntry {
                            name,
                            created: md.modified().ok(),
                            listing: None,
                        });
                    }
                }
            }
            out.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(out)
        })
        .await
    }

    async fn bucket_exists(&self, bucket: &str) -> Result<bool> {
        let Ok(path) = self.bucket_path(bucket) else {
            return Ok(false);
        };
        blocking(move || Ok(std::fs::metadata(path).is_ok_and(|m| m.is_dir()))).await
    }

    async fn head(&self, bucket: &str, key: &str) -> Result<ObjectMeta> {
        if folders::is_marker(key) {
            return self.head_folder(bucket, key).await;
        }
        let path = self.object_path(bucket, key)?;
        blocking(move || {
            let md = std::fs::metadata(&path).map_err(|e| not_found_or_io(&e))?;
            if !md.is_file() {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    "The specified key does not exist",
                ));
            }
            Ok(meta_of(&md))
        })
        .await
    }

    async fn read(
        &self,
        bucket: &str,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> Result<RangeRead> {
        if folders::is_marker(key) {
            let meta = self.head_folder(bucket, key).await?;
            if if_match.is_some_and(|m| m != meta.etag) {
                return Err(Error::new(
                    ErrorKind::ObjectChanged,
                    "The folder changed since it was first read",
                ));
            }
            let _ = range;
            return Ok(RangeRead {
                meta,
                data: Bytes::new(),
            });
        }
        let path = self.object_path(bucket, key)?;
        let if_match = if_match.map(str::to_owned);
        blocking(move || {
            let file = File::open(&path).map_err(|e| not_found_or_io(&e))?;
            let before = file.metadata().map_err(|e| not_found_or_io(&e))?;
            if !before.is_file() {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    "The specified key does not exist",
                ));
            }
            let meta = meta_of(&before);
            if if_match.as_deref().is_some_and(|m| m != meta.etag) {
                return Err(Error::new(
                    ErrorKind::ObjectChanged,
                    "The object changed at the origin",
                ));
            }
            let start = range.start.min(meta.size);
            let end = range.end.min(meta.size);
            let data = read_aligned(&file, start, (end - start) as usize)
                .map_err(|e| not_found_or_io(&e))?;
            // A write during the read would change the ETag: never return mixed bytes.
            let after = file.metadata().map_err(|e| not_found_or_io(&e))?;
            if etag_of(&after) != meta.etag {
                return Err(Error::new(
                    ErrorKind::ObjectChanged,
                    "The object changed at the origin",
                ));
            }
            Ok(RangeRead { meta, data })
        })
        .await
    }

    async fn part(&self, bucket: &str, key: &str, part: u32) -> Result<PartInfo> {
        single_part(&self.head(bucket, key).await?, part)
    }

    /// Writes to a temporary file outside the buckets, checks length and MD5, syncs, then
    /// renames into place: readers see the old file or the new one, never a part. Only the
    /// bytes are stored (a directory has no place for content types or user metadata).
    async fn put(
        &self,
        bucket: &str,
        key: &str,
        upload: Upload,
        opts: &PutOptions,
    ) -> Result<PutResult> {
        if folders::is_marker(key) {
            if opts.create_only && self.head_folder(bucket, key).await.is_ok() {
                return Err(Error::new(
                    ErrorKind::PreconditionFailed,
                    "At least one of the pre-conditions you specified did not hold",
                ));
            }
            return self.put_folder(bucket, key, upload.len).await;
        }
        let bucket_real = writable(self, bucket, key).await?;
        let check = BodyCheck::new(upload.len, opts.content_md5.as_deref())?;
        let tmp = self.temp_file().await?;
        let _cleanup = TempGuard(tmp.clone());
        write_new(&tmp, upload.body, check, |_| {}).await?;
        let target = place(&tmp, &bucket_real, key, opts.create_only).await?;
        let md = tokio::fs::metadata(&target).await.map_err(write_failed)?;
        Ok(put_result(&md))
    }

    async fn start_parts(&self, bucket: &str, key: &str, _opts: &PutOptions) -> Result<String> {
        self.in_start_parts(bucket, key, _opts).await
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
        self.in_put_part(bucket, key, upload_id, part, upload, content_md5)
            .await
    }

    async fn complete_parts(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: &[(u32, String)],
    ) -> Result<PutResult> {
        self.in_complete_parts(bucket, key, upload_id, parts).await
    }

    /// A directory keeps no versions: each object is its one version, `null`, as S3 lists an
    /// unversioned bucket.
    async fn list_versions(
        &self,
        bucket: &str,
        q: &super::VersionQuery,
    ) -> Result<super::VersionPage> {
        if q.version_id_marker.as_deref().is_some_and(|v| v != "null") {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "Invalid version id specified",
            ));
        }
        let page = self
            .list(
                bucket,
                &super::ListQuery {
                    prefix: q.prefix.clone(),
                    delimiter: q.delimiter.clone(),
                    max_keys: q.max_keys as usize,
                    cursor: super::ListCursor::V1 {
                        marker: q.key_marker.clone(),
                    },
                },
            )
            .await?;
        let next = page.next.clone().or_else(|| {
            page.truncated
                .then(|| page.entries.last().map(|e| e.key.clone()))
                .flatten()
        });
        Ok(super::VersionPage {
            entries: page
                .entries
                .into_iter()
                .map(|e| super::VersionEntry {
                    key: e.key,
                    version_id: "null".into(),
                    is_latest: true,
                    last_modified: Some(e.last_modified),
                    etag: Some(e.etag),
                    size: Some(e.size),
                    delete_marker: false,
                    owner: None,
                })
                .collect(),
            prefixes: page.common_prefixes,
            truncated: page.truncated,
            next_version_id_marker: next.as_ref().map(|_| "null".to_string()),
            next_key_marker: next,
        })
    }

    /// An empty file: any file of a directory can be appended to.
    async fn create_appendable(
        &self,
        bucket: &str,
        key: &str,
        opts: &PutOptions,
    ) -> Result<PutResult> {
        let empty = Upload {
            body: Box::pin(futures::stream::empty()),
            len: 0,
        };
        self.put(bucket, key, empty, opts).await
    }

    /// The bytes are staged and checked first, then appended under a lock (appends through
    /// this process are serialized); a failure while appending truncates the file back, so an
    /// append is all or nothing.
    async fn append(
        &self,
        bucket: &str,
        key: &str,
        upload: Upload,
        opts: &super::AppendOptions,
    ) -> Result<super::Appended> {
        use tokio::io::AsyncWriteExt;
        let bucket_real = writable(self, bucket, key).await?;
        let target = tokio::fs::canonicalize(bucket_real.join(key))
            .await
            .map_err(|e| not_found_or_io(&e))?;
        if !target.starts_with(&bucket_real) {
            return Err(Error::new(
                ErrorKind::AccessDenied,
                "The key resolves outside its bucket",
            ));
        }
        let mut check = BodyCheck::new(upload.len, opts.content_md5.as_deref())?;
        let tmp = self.temp_file().await?;
        let _cleanup = TempGuard(tmp.clone());
        let mut staged = create_new(&tmp).await?;
        let mut body = upload.body;
        while let Some(chunk) = futures::StreamExt::next(&mut body).await {
            let chunk = chunk?;
            check.update(&chunk)?;
            staged.write_all(&chunk).await.map_err(write_failed)?;
        }
        check.finish()?;
        staged.flush().await.map_err(write_failed)?;
        drop(staged);

        static APPENDS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
        let _one_at_a_time = APPENDS.lock().await;
        let mut file = tokio::fs::OpenOptions::new()
            .append(true)
            .open(&target)
            .await
            .map_err(|e| not_found_or_io(&e))?;
        let start = file.metadata().await.map_err(write_failed)?.len();
        let precondition = |msg: &'static str| Error::new(ErrorKind::PreconditionFailed, msg);
        if opts.append_position.is_some_and(|p| p != start) {
            return Err(precondition("The append position condition was not met"));
        }
        if opts.max_size.is_some_and(|m| start + upload.len > m) {
            return Err(precondition("The maximum size condition was not met"));
        }
        let copied: Result<()> = async {
            let mut from = tokio::fs::File::open(&tmp).await.map_err(write_failed)?;
            tokio::io::copy(&mut from, &mut file)
                .await
                .map_err(write_failed)?;
            file.sync_data().await.map_err(write_failed)
        }
        .await;
        if let Err(e) = copied {
            let _ = file.set_len(start).await;
            return Err(e);
        }
        let md = file.metadata().await.map_err(write_failed)?;
        Ok(super::Appended {
            etag: etag_of(&md),
            last_modified: md.modified().ok(),
            offset: start,
            blocks: None,
        })
    }

    async fn list_parts(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<super::PartListing> {
        self.in_list_parts(bucket, key, upload_id).await
    }

    async fn list_uploads(&self, bucket: &str, prefix: &str) -> Result<Vec<super::UploadEntry>> {
        self.in_list_uploads(bucket, prefix).await
    }

    async fn abort_parts(&self, bucket: &str, key: &str, upload_id: &str) -> Result<()> {
        self.in_abort_parts(bucket, key, upload_id).await
    }

    async fn create_bucket(&self, bucket: &str) -> Result<()> {
        let path = self.bucket_path(bucket).map_err(|_| {
            Error::new(
                ErrorKind::InvalidArgument,
                "The bucket name is not valid here",
            )
        })?;
        match tokio::fs::create_dir(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(Error::new(
                ErrorKind::BucketExists,
                "The bucket already exists",
            )),
            Err(e) => Err(write_failed(e)),
        }
    }

    async fn delete_bucket(&self, bucket: &str) -> Result<()> {
        let path = self.bucket_path(bucket)?;
        match tokio::fs::remove_dir(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::new(
                ErrorKind::NoSuchBucket,
                "The specified bucket does not exist",
            )),
            Err(e) if e.kind() == std::io::ErrorKind::DirectoryNotEmpty => Err(Error::new(
                ErrorKind::BucketNotEmpty,
                "The bucket you tried to delete is not empty",
            )),
            Err(e) => Err(write_failed(e)),
        }
    }

    async fn put_block(
        &self,
        bucket: &str,
        key: &str,
        block_id: &str,
        upload: Upload,
        content_md5: Option<&str>,
    ) -> Result<()> {
        self.in_put_block(bucket, key, block_id, upload, content_md5)
            .await
    }

    async fn staged_blocks(&self, bucket: &str, key: &str) -> Result<Vec<(String, u64)>> {
        self.in_staged_blocks(bucket, key).await
    }

    async fn commit_blocks(
        &self,
        bucket: &str,
        key: &str,
        blocks: &[BlockRef],
        opts: &PutOptions,
    ) -> Result<PutResult> {
        self.in_commit_blocks(bucket, key, blocks, opts).await
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<()> {
        if folders::is_marker(key) {
            return self.delete_folder(bucket, key).await;
        }
        let path = match self.object_path(bucket, key) {
            Ok(p) => p,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        match tokio::fs::remove_file(&path).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(not_found_or_io(&e)),
        }
        // Directories only existed for the key's prefixes: the ones it leaves empty go too
        // (an object store has no empty folders; a bucket emptied this way can be deleted).
        if let Ok(bucket_real) = tokio::fs::canonicalize(self.bucket_path(bucket)?).await {
            let mut dir = path.parent().map(Path::to_path_buf);
            while let Some(d) = dir {
                if d == bucket_real || !d.starts_with(&bucket_real) {
                    break;
                }
                if tokio::fs::remove_dir(&d).await.is_err() {
                    break;
                }
                dir = d.parent().map(Path::to_path_buf);
            }
        }
        Ok(())
    }

    async fn list(&self, bucket: &str, query: &ListQuery) -> Result<ListPage> {
        let base = self.bucket_path(bucket)?;
        let root = self.root.clone();
        let query = query.clone();
        blocking(move || {
            if !base.is_dir() {
                return Err(Error::new(
                    ErrorKind::NoSuchBucket,
                    "The specified bucket does not exist",
                ));
            }
            // Start the walk at the deepest directory the prefix names.
            let dir_prefix = match query.prefix.rfind('/') {
                Some(i) => &query.prefix[..=i],
                None => "",
            };
            let mut entries = Vec::new();
            // A prefix whose directory part has an absolute, empty, `.` or `..` segment names
            // no key this origin can hold: nothing to list, and never a walk outside the root.
            let representable = dir_prefix.is_empty()
                || dir_prefix[..dir_prefix.len() - 1]
                    .split('/')
                    .all(|seg| !seg.is_empty() && seg != "." && seg != "..");
            if representable {
                // Listings stay inside the bucket too (symlinked files pointing elsewhere are
                // skipped by `walk`).
                let start = base.join(dir_prefix);
                if let Ok(bucket_root) = base.canonicalize() {
                    if bucket_root.starts_with(&root)
                        && start
                            .canonicalize()
                            .is_ok_and(|p| p.starts_with(&bucket_root))
                    {
                        walk(&bucket_root, &start, dir_prefix, &mut entries);
                    }
                }
            }
            entries.sort_by(|a: &ListEntry, b| a.key.cmp(&b.key));
            listing::page(entries, &query)
        })
        .await
    }
}

/// Collects regular files under `dir` (keys relative to the bucket), following symlinks only
/// when they stay inside `root`, never recursing into symlinked directories.
fn walk(root: &Path, dir: &Path, key_prefix: &str, out: &mut Vec<ListEntry>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in rd.flatten() {
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let Ok(ft) = entry.file_type() else { continue };
        let key = format!("{key_prefix}{name}");
        let path = entry.path();
        if ft.is_dir() {
            walk(root, &path, &format!("{key}/"), out);
        } else if name == folders::MARKER_FILE {
            // A folder marker: listed as its directory's key (see `folders`).
            if let (false, Ok(md)) = (key_prefix.is_empty(), std::fs::symlink_metadata(&path)) {
                if md.is_file() {
                    out.push(ListEntry {
                        key: key_prefix.to_string(),
                        size: 0,
                        etag: etag_of(&md),
                        last_modified: md.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                        owner: None,
                    });
                }
            }
        } else if ft.is_file() || ft.is_symlink() {
            if ft.is_symlink() && !path.canonicalize().is_ok_and(|p| p.starts_with(root)) {
                continue;
            }
            if let Ok(md) = std::fs::metadata(&path) {
                if md.is_file() {
                    let m = meta_of(&md);
                    out.push(ListEntry {
                        key,
                        size: m.size,
                        etag: m.etag,
                        last_modified: m.last_modified,
                        owner: None,
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
