//! Folder markers on a directory origin. Object stores mark a folder with an empty object whose
//! key ends in `/` (S3 consoles, Hadoop's connectors, Cistern's Data Lake front). Here the
//! marker `a/b/` is the directory `a/b` holding an empty file [`MARKER_FILE`]: writing the
//! marker creates both, it is listed (as `a/b/`, the file itself never) while the file is
//! there, it keeps the directory when the last other file in it goes, and deleting it removes
//! the file and then the directories it leaves empty. A plain empty directory (an interrupted
//! upload's, or one made by hand) is no marker and stays invisible, as before.

use std::path::{Path, PathBuf};

use cistern_cache::ObjectMeta;

use super::{blocking, etag_of, not_found_or_io, put_result, write_failed, FsOrigin};
use crate::error::{Error, ErrorKind, Result};
use crate::origin::PutResult;

/// The file that makes a directory a folder marker.
pub(super) const MARKER_FILE: &str = ".cistern-folder";

fn missing() -> Error {
    Error::new(ErrorKind::NotFound, "The specified key does not exist")
}

/// Whether `key` names a folder marker.
pub(super) fn is_marker(key: &str) -> bool {
    key.len() > 1 && key.ends_with('/')
}

impl FsOrigin {
    /// The directory a marker names, checked as object keys are (no empty, `.` or `..`
    /// segments).
    fn folder_path(&self, bucket: &str, key: &str) -> Result<PathBuf> {
        let name = &key[..key.len() - 1];
        if !super::representable(name) {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "This folder name cannot be a directory (empty, `.` or `..` segments)",
            ));
        }
        Ok(self.bucket_path(bucket)?.join(name))
    }

    /// The marker file's metadata, when it exists inside its bucket (symlinks resolved), read
    /// on the blocking pool.
    async fn marker_meta(&self, bucket: &str, key: &str) -> Result<std::fs::Metadata> {
        let dir = self.folder_path(bucket, key).map_err(|_| missing())?;
        let bucket_dir = self.bucket_path(bucket)?;
        let root = self.root.clone();
        blocking(move || {
            let real = dir
                .join(MARKER_FILE)
                .canonicalize()
                .map_err(|e| not_found_or_io(&e))?;
            let bucket_real = bucket_dir.canonicalize().map_err(|e| not_found_or_io(&e))?;
            if !bucket_real.starts_with(&root) || !real.starts_with(&bucket_real) {
                return Err(missing());
            }
            let md = std::fs::metadata(&real).map_err(|e| not_found_or_io(&e))?;
            if !md.is_file() {
                return Err(missing());
            }
            Ok(md)
        })
        .await
    }

    /// HEAD of a marker: zero bytes, its ETag from the marker file.
    pub(super) async fn head_folder(&self, bucket: &str, key: &str) -> Result<ObjectMeta> {
        let md = self.marker_meta(bucket, key).await?;
        Ok(ObjectMeta {
            size: 0,
            etag: etag_of(&md),
            last_modified: md.modified().unwrap_or(std::time::SystemTime::UNIX_EPOCH),
            ..ObjectMeta::default()
        })
    }

    /// Writes a marker: the directory (and its parents) and the marker file; no bytes.
    pub(super) async fn put_folder(&self, bucket: &str, key: &str, len: u64) -> Result<PutResult> {
        if len != 0 {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "A key ending in `/` is a folder here and holds no bytes",
            ));
        }
        let bucket_dir = tokio::fs::metadata(self.bucket_path(bucket)?).await;
        if !bucket_dir.is_ok_and(|m| m.is_dir()) {
            return Err(Error::new(
                ErrorKind::NoSuchBucket,
                "The specified bucket does not exist",
            ));
        }
        let path = self.folder_path(bucket, key)?;
        tokio::fs::create_dir_all(&path)
            .await
            .map_err(write_failed)?;
        tokio::fs::write(path.join(MARKER_FILE), b"")
            .await
            .map_err(write_failed)?;
        let md = self.marker_meta(bucket, key).await?;
        Ok(put_result(&md))
    }

    /// Deletes a marker: its file, then each directory it leaves empty up to the bucket; a
    /// missing marker is fine.
    pub(super) async fn delete_folder(&self, bucket: &str, key: &str) -> Result<()> {
        if self.marker_meta(bucket, key).await.is_err() {
            return Ok(());
        }
        let dir = self.folder_path(bucket, key)?;
        let bucket_dir = self.bucket_path(bucket)?;
        blocking(move || {
            match std::fs::remove_file(dir.join(MARKER_FILE)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(write_failed(e)),
            }
            remove_empty_up_to(&dir, &bucket_dir);
            Ok(())
        })
        .await
    }
}

/// Removes `dir` and its parents while they are empty, stopping at `bucket` (never removed).
fn remove_empty_up_to(dir: &Path, bucket: &Path) {
    let Ok(bucket_real) = bucket.canonicalize() else {
        return;
    };
    let mut next = dir.canonicalize().ok();
    while let Some(d) = next {
        if d == bucket_real || !d.starts_with(&bucket_real) || std::fs::remove_dir(&d).is_err() {
            return;
        }
        next = d.parent().map(Path::to_path_buf);
    }
}
