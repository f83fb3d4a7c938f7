//! The `fs` origin's file handling: where uploads are staged and swept, placing a finished
//! file under its key, names, ETags and metadata from file metadata, aligned reads.

use std::fs::{File, Metadata};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use bytes::Bytes;
use cistern_cache::ObjectMeta;
use sha2::{Digest, Sha256};

use super::FsOrigin;
use crate::error::{Error, ErrorKind, Result};

/// Where uploads are written before they are renamed into place: under the root, outside
/// every bucket (names starting with `.` are not buckets), on the same file system.
pub(super) const UPLOADS_DIR: &str = ".cistern-uploads";

pub(super) static UPLOAD_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

pub(super) fn read_failed(e: std::io::Error) -> Error {
    Error::new(ErrorKind::OriginUnavailable, "The origin failed to read").with_source(e)
}

pub(super) fn write_failed(e: std::io::Error) -> Error {
    Error::new(
        ErrorKind::OriginUnavailable,
        "The origin failed to store the object",
    )
    .with_source(e)
}

/// Removes the entries of the uploads directory untouched for `ttl` (staged uploads are
/// touched by each part or block added). Returns how many went.
pub(super) async fn sweep(dir: &Path, ttl: std::time::Duration) -> std::io::Result<usize> {
    let mut entries = match tokio::fs::read_dir(dir).await {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut removed = 0;
    while let Some(e) = entries.next_entry().await? {
        let Ok(md) = tokio::fs::symlink_metadata(e.path()).await else {
            continue;
        };
        let old = md
            .modified()
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > ttl);
        if !old {
            continue;
        }
        let gone = if md.is_dir() {
            tokio::fs::remove_dir_all(e.path()).await
        } else {
            tokio::fs::remove_file(e.path()).await
        };
        if gone.is_ok() {
            removed += 1;
        }
    }
    Ok(removed)
}

/// Renames a finished upload into `<bucket>/<key>`, creating parent directories inside the
/// bucket only (a symlinked directory must not lead out).
pub(super) async fn place(
    tmp: &Path,
    bucket_real: &Path,
    key: &str,
    create_only: bool,
) -> Result<PathBuf> {
    // Parents inside the bucket only (a symlinked directory must not lead out).
    let target = bucket_real.join(key);
    let parent = target.parent().unwrap_or(bucket_real).to_path_buf();
    tokio::fs::create_dir_all(&parent).await.map_err(|e| {
        Error::new(ErrorKind::InvalidArgument, "A parent of this key is a file").with_source(e)
    })?;
    let parent_real = tokio::fs::canonicalize(&parent)
        .await
        .map_err(write_failed)?;
    if !parent_real.starts_with(bucket_real) {
        return Err(Error::new(
            ErrorKind::AccessDenied,
            "The key resolves outside its bucket",
        ));
    }
    if tokio::fs::metadata(&target).await.is_ok_and(|m| m.is_dir()) {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            "A directory already has this key's name",
        ));
    }
    if create_only {
        // A hard link fails when the name exists: create-only without a window.
        match tokio::fs::hard_link(tmp, &target).await {
            Ok(()) => {
                let _ = tokio::fs::remove_file(tmp).await;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::new(
                    ErrorKind::PreconditionFailed,
                    "An object already has this key",
                ))
            }
            Err(e) => return Err(write_failed(e)),
        }
    } else {
        tokio::fs::rename(tmp, &target)
            .await
            .map_err(write_failed)?;
    }
    Ok(target)
}

/// Removes a temporary upload file when dropped: after a failed write, or when the request is
/// dropped mid-body (a client that disconnects cancels the future, so no error path runs).
/// After a successful rename the file is gone and this does nothing.
pub(super) struct TempGuard(pub(super) PathBuf);

impl Drop for TempGuard {
    fn drop(&mut self) {
        // One unlink; never blocks for long.
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A temporary file name no other writer picks, even another process sharing the root (PIDs
/// repeat across containers): process, sequence, time and a digest of them.
pub(super) fn unique_name(prefix: &str) -> String {
    let seq = UPLOAD_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut h = Sha256::new();
    h.update(std::process::id().to_le_bytes());
    h.update(seq.to_le_bytes());
    h.update(nanos.to_le_bytes());
    h.update(format!("{:?}", std::thread::current().id()).as_bytes());
    format!("{prefix}-{}", hex::encode(&h.finalize()[..12]))
}

/// Opens a new file, failing rather than sharing one that exists.
pub(super) async fn create_new(path: &Path) -> Result<tokio::fs::File> {
    tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .await
        .map_err(write_failed)
}

/// A staged block's file name: a digest of its id (ids are client strings, never paths).
/// A staged block's file name: the id in hex, so the staged blocks can be listed (Azure block
/// ids are at most 64 bytes before base64, 176 hex digits); longer ids by digest.
pub(super) fn block_file(block_id: &str) -> String {
    if block_id.len() <= 120 {
        hex::encode(block_id.as_bytes())
    } else {
        format!(
            "x{}",
            hex::encode(&Sha256::digest(block_id.as_bytes())[..16])
        )
    }
}

/// Whether `name` can be a relative path here: not empty, not absolute, no NUL and no empty,
/// `.` or `..` segment (so never a trailing `/`).
pub(super) fn representable(name: &str) -> bool {
    !(name.is_empty()
        || name.starts_with('/')
        || name.contains('\0')
        || name
            .split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == ".."))
}

/// Checks a key can be written here and returns its bucket's real path.
pub(super) async fn writable(origin: &FsOrigin, bucket: &str, key: &str) -> Result<PathBuf> {
    if !representable(key) {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            "This key cannot be stored in a directory (empty, `.` or `..` segments, or a trailing `/`)",
        ));
    }
    let bucket_dir = origin.bucket_path(bucket)?;
    let bucket_real = tokio::fs::canonicalize(&bucket_dir).await.map_err(|_| {
        Error::new(
            ErrorKind::NoSuchBucket,
            "The specified bucket does not exist",
        )
    })?;
    if !bucket_real.starts_with(&origin.root) {
        return Err(Error::new(
            ErrorKind::AccessDenied,
            "The bucket lies outside the root",
        ));
    }
    Ok(bucket_real)
}

pub(super) fn not_found_or_io(e: &std::io::Error) -> Error {
    match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory => {
            Error::new(ErrorKind::NotFound, "The specified key does not exist")
        }
        std::io::ErrorKind::PermissionDenied => {
            Error::new(ErrorKind::AccessDenied, "The origin refused access")
        }
        _ => Error::new(
            ErrorKind::OriginUnavailable,
            "The origin failed to read the object",
        )
        .with_source(std::io::Error::new(e.kind(), e.to_string())),
    }
}

pub(super) fn etag_of(md: &Metadata) -> String {
    let mut h = Sha256::new();
    h.update(md.ino().to_le_bytes());
    h.update(md.size().to_le_bytes());
    h.update(md.mtime().to_le_bytes());
    h.update(md.mtime_nsec().to_le_bytes());
    h.update(md.ctime().to_le_bytes());
    h.update(md.ctime_nsec().to_le_bytes());
    format!("{}-1", hex::encode(&h.finalize()[..16]))
}

pub(super) fn meta_of(md: &Metadata) -> ObjectMeta {
    ObjectMeta {
        size: md.len(),
        etag: etag_of(md),
        last_modified: md.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        content_type: None,
        content_encoding: None,
        cache_control: None,
        content_disposition: None,
        content_language: None,
        user_metadata: Vec::new(),
        ..Default::default()
    }
}

/// Reads `len` bytes at `offset` into a buffer whose data starts 4096-byte aligned: the
/// kernel copies into an aligned destination several times faster on this class of CPU.
pub(crate) fn read_aligned(file: &File, offset: u64, len: usize) -> std::io::Result<Bytes> {
    let mut buf = vec![0u8; len + 4096];
    let pad = buf.as_ptr().align_offset(4096).min(4096);
    file.read_exact_at(&mut buf[pad..pad + len], offset)?;
    Ok(Bytes::from(buf).slice(pad..pad + len))
}

pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::new(ErrorKind::Internal, "origin task failed").with_source(e))?
}

/// Writes `body` to a new file at `tmp`, checked against `check` (its length and any
/// Content-MD5) and shown to `seen` piece by piece, and syncs it to disk.
pub(super) async fn write_new(
    tmp: &Path,
    mut body: futures::stream::BoxStream<'static, Result<Bytes>>,
    mut check: crate::origin::upload::BodyCheck,
    mut seen: impl FnMut(&[u8]),
) -> Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut file = create_new(tmp).await?;
    while let Some(chunk) = futures::StreamExt::next(&mut body).await {
        let chunk = chunk?;
        check.update(&chunk)?;
        seen(&chunk);
        file.write_all(&chunk).await.map_err(write_failed)?;
    }
    check.finish()?;
    file.sync_data().await.map_err(write_failed)
}

/// What a write answers, from the metadata of the file it left.
pub(super) fn put_result(md: &Metadata) -> crate::origin::PutResult {
    crate::origin::PutResult {
        etag: etag_of(md),
        last_modified: md.modified().ok(),
        version_id: None,
        origin_headers: Vec::new(),
    }
}
