//! Folder markers on a directory origin. Object stores mark an empty folder with an empty
//! object whose key ends in `/` (S3 consoles, Hadoop's connectors, Cistern's Data Lake front);
//! a directory has no such file, so here the marker `a/b/` is the *empty* directory `a/b`:
//! writing it (with no bytes) creates the directory; it exists, and is listed, while the
//! directory is empty (a non-empty one is implied by its files, as on an object store where the
//! marker was never written); deleting it removes the directory when nothing is inside.

use std::path::PathBuf;

use cistern_cache::ObjectMeta;

use super::{blocking, etag_of, not_found_or_io, write_failed, FsOrigin};
use crate::error::{Error, ErrorKind, Result};
use crate::origin::PutResult;

/// Whether `key` names a folder marker.
pub(super) fn is_marker(key: &str) -> bool {
    key.len() > 1 && key.ends_with('/')
}

impl FsOrigin {
    /// The directory a marker names, checked as object keys are: no empty, `.` or `..`
    /// segments, and inside its bucket once symlinks are resolved (for an existing one).
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

    /// The directory's metadata, when it exists inside its bucket and is empty.
    fn folder_meta(&self, bucket: &str, key: &str) -> Result<std::fs::Metadata> {
        let missing = || Error::new(ErrorKind::NotFound, "The specified key does not exist");
        let path = self.folder_path(bucket, key).map_err(|_| missing())?;
        let real = path.canonicalize().map_err(|e| not_found_or_io(&e))?;
        let bucket_real = self
            .bucket_path(bucket)?
            .canonicalize()
            .map_err(|e| not_found_or_io(&e))?;
        if !bucket_real.starts_with(&self.root) || !real.starts_with(&bucket_real) {
            return Err(missing());
        }
        let md = std::fs::metadata(&real).map_err(|e| not_found_or_io(&e))?;
        let empty = std::fs::read_dir(&real).is_ok_and(|mut d| d.next().is_none());
        if !md.is_dir() || !empty {
            return Err(missing());
        }
        Ok(md)
    }

    /// HEAD of a marker: the directory, zero bytes long.
    pub(super) async fn head_folder(&self, bucket: &str, key: &str) -> Result<ObjectMeta> {
        let md = self.folder_meta(bucket, key)?;
        Ok(ObjectMeta {
            size: 0,
            etag: etag_of(&md),
            last_modified: md.modified().unwrap_or(std::time::SystemTime::UNIX_EPOCH),
            ..ObjectMeta::default()
        })
    }

    /// Writes a marker: creates the directory (and its parents); a marker has no bytes.
    pub(super) async fn put_folder(&self, bucket: &str, key: &str, len: u64) -> Result<PutResult> {
        if len != 0 {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "A key ending in `/` is a folder here and holds no bytes",
            ));
        }
        if !self.bucket_exists_now(bucket)? {
            return Err(Error::new(
                ErrorKind::NoSuchBucket,
                "The specified bucket does not exist",
            ));
        }
        let path = self.folder_path(bucket, key)?;
        tokio::fs::create_dir_all(&path)
            .await
            .map_err(write_failed)?;
        // Existing and not empty is fine too: the folder is there (implied by what it holds).
        let md = tokio::fs::metadata(&path).await.map_err(write_failed)?;
        Ok(PutResult {
            etag: etag_of(&md),
            last_modified: md.modified().ok(),
            version_id: None,
            origin_headers: Vec::new(),
        })
    }

    /// Deletes a marker: the directory goes when it is empty; a missing marker is fine.
    pub(super) async fn delete_folder(&self, bucket: &str, key: &str) -> Result<()> {
        if self.folder_meta(bucket, key).is_err() {
            return Ok(());
        }
        let path = self.folder_path(bucket, key)?;
        blocking(move || match std::fs::remove_dir(&path) {
            Ok(()) => Ok(()),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::DirectoryNotEmpty
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(write_failed(e)),
        })
        .await
    }

    fn bucket_exists_now(&self, bucket: &str) -> Result<bool> {
        Ok(std::fs::metadata(self.bucket_path(bucket)?).is_ok_and(|m| m.is_dir()))
    }
}
