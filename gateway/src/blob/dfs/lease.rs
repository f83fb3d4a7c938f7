//! Path leases (`POST` with `x-ms-lease-action`), as the ABFS driver takes them for single-writer
//! files (`fs.azure.infinite-lease.directories`) and releases them on flush. A lease must hold
//! across every front of a cluster, and fronts keep no state, so it is a small record at the
//! origin beside the data: `.cistern-leases/<digest of the path>` in the same bucket, created
//! with `If-None-Match: *` (the origin decides a race) and read from the origin (never the
//! cache) by every write to the path. While a lease is held its record shows in Blob and S3
//! listings of that prefix; DFS listings hide it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderMap, StatusCode};

use super::super::error::BlobError;
use super::super::{header, set, BlobFront, Reply};
use crate::error::ErrorKind;
use crate::origin::{PutOptions, Upload};
use crate::pipeline::BucketBinding;

/// Where lease records live in a bucket.
pub(super) const LEASES: &str = ".cistern-leases/";

/// A held (or lapsed) lease.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Record {
    id: String,
    /// Seconds since the epoch when it lapses; `None` for an infinite lease.
    expires: Option<u64>,
    /// Its duration in seconds (what a renewal grants again); `None` for an infinite lease.
    duration: Option<u64>,
    path: String,
}

impl Record {
    fn active(&self, now: SystemTime) -> bool {
        self.expires
            .is_none_or(|t| UNIX_EPOCH + Duration::from_secs(t) > now)
    }
}

fn record_key(path: &str) -> String {
    use sha2::Digest as _;
    format!(
        "{LEASES}{}",
        hex::encode(&sha2::Sha256::digest(path.as_bytes())[..16])
    )
}

fn lease_error(status: StatusCode, code: &'static str, message: &'static str) -> BlobError {
    BlobError::new(status, code, message)
}

/// A fresh lease id (GUID-shaped; unguessable enough for a capability that a caller already
/// allowed to write holds).
fn new_lease_id() -> String {
    super::super::guid(&format!("lease/{}", std::process::id()))
}

/// `x-ms-lease-duration`: -1 (infinite) or 15 to 60 seconds.
fn duration(h: &HeaderMap) -> Result<Option<u64>, BlobError> {
    match header(h, "x-ms-lease-duration").map(str::trim) {
        None | Some("-1") => Ok(None),
        Some(v) => match v.parse::<u64>() {
            Ok(n) if (15..=60).contains(&n) => Ok(Some(n)),
            _ => Err(BlobError::invalid_header(
                "x-ms-lease-duration",
                "The lease duration must be -1 or between 15 and 60 seconds.",
            )),
        },
    }
}

impl BlobFront {
    /// The path's lease record and its ETag, read at the origin.
    async fn lease_record(
        &self,
        b: &BucketBinding,
        path: &str,
    ) -> Result<Option<(Record, String)>, BlobError> {
        let key = record_key(path);
        match b.origin.read(&b.origin_bucket, &key, 0..4096, None).await {
            Ok(r) => Ok(serde_json::from_slice::<Record>(&r.data)
                .ok()
                .filter(|rec| rec.path == path)
                .map(|rec| (rec, r.meta.etag))),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn write_record(
        &self,
        b: &BucketBinding,
        rec: &Record,
        create_only: bool,
    ) -> Result<(), BlobError> {
        let body = Bytes::from(serde_json::to_vec(rec).unwrap_or_default());
        let len = body.len() as u64;
        let opts = PutOptions {
            content_type: Some("application/json".into()),
            create_only,
            ..PutOptions::default()
        };
        let upload = Upload {
            body: futures::stream::once(async move { Ok(body) }).boxed(),
            len,
        };
        match b
            .origin
            .put(&b.origin_bucket, &record_key(&rec.path), upload, &opts)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == ErrorKind::PreconditionFailed => Err(lease_error(
                StatusCode::CONFLICT,
                "LeaseAlreadyPresent",
                "There is already a lease present.",
            )),
            Err(e) => Err(e.into()),
        }
    }

    async fn drop_record(
        &self,
        b: &BucketBinding,
        path: &str,
        etag: &str,
    ) -> Result<(), BlobError> {
        match b
            .origin
            .delete_version(&b.origin_bucket, &record_key(path), None, Some(etag))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) if e.kind() == ErrorKind::PreconditionFailed => Err(lease_error(
                StatusCode::CONFLICT,
                "LeaseIdMismatchWithLeaseOperation",
                "The lease changed while this request ran.",
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// Checks a write to `path` against its lease: a held lease needs its id in
    /// `x-ms-lease-id`; an id with no lease held is refused too (as Azure refuses both).
    pub(super) async fn check_lease(
        &self,
        b: &BucketBinding,
        path: &str,
        h: &HeaderMap,
    ) -> Result<(), BlobError> {
        let given = header(h, "x-ms-lease-id").filter(|v| !v.trim().is_empty());
        let held = self
            .lease_record(b, path)
            .await?
            .filter(|(r, _)| r.active(SystemTime::now()));
        match (held, given) {
            (None, None) => Ok(()),
            (Some((r, _)), Some(id)) if r.id == id => Ok(()),
            (Some(_), None) => Err(lease_error(
                StatusCode::PRECONDITION_FAILED,
                "LeaseIdMissing",
                "There is currently a lease on the resource and no lease ID was specified in the request.",
            )),
            (Some(_), Some(_)) => Err(lease_error(
                StatusCode::PRECONDITION_FAILED,
                "LeaseIdMismatch",
                "The lease ID specified did not match the lease ID for the resource.",
            )),
            (None, Some(_)) => Err(lease_error(
                StatusCode::PRECONDITION_FAILED,
                "LeaseNotPresent",
                "There is currently no lease on the resource.",
            )),
        }
    }

    /// Removes the lease record of a path that is gone (deleted, or renamed away).
    pub(super) async fn forget_lease(
        &self,
        b: &BucketBinding,
        path: &str,
    ) -> Result<(), BlobError> {
        if let Some((_, etag)) = self.lease_record(b, path).await? {
            self.drop_record(b, path, &etag).await?;
        }
        Ok(())
    }

    /// Releases the lease after a flush or append that asked (`x-ms-lease-action: release`).
    pub(super) async fn release_after_write(
        &self,
        b: &BucketBinding,
        path: &str,
        h: &HeaderMap,
    ) -> Result<(), BlobError> {
        if header(h, "x-ms-lease-action").is_some_and(|a| a.eq_ignore_ascii_case("release")) {
            if let Some((_, etag)) = self.lease_record(b, path).await? {
                self.drop_record(b, path, &etag).await?;
            }
        }
        Ok(())
    }

    /// Lease Path: acquire, renew, change, release or break.
    pub(super) async fn lease(
        &self,
        fs: &str,
        path: &str,
        h: &HeaderMap,
    ) -> Result<Reply, BlobError> {
        let b = self.bucket(fs).await?;
        let action = header(h, "x-ms-lease-action")
            .ok_or_else(|| BlobError::missing_header("x-ms-lease-action"))?
            .to_ascii_lowercase();
        // Leases are on files that exist.
        b.origin.head(&b.origin_bucket, path).await?;
        let now = SystemTime::now();
        let current = self.lease_record(&b, path).await?;
        let held = current.as_ref().filter(|(r, _)| r.active(now));
        let given = header(h, "x-ms-lease-id").filter(|v| !v.trim().is_empty());
        let mismatch = || {
            lease_error(
                StatusCode::CONFLICT,
                "LeaseIdMismatchWithLeaseOperation",
                "The lease ID specified did not match the lease ID for the resource with the specified lease operation.",
            )
        };
        let expiry = |secs: Option<u64>| {
            secs.map(|s| now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() + s)
        };
        let mut out = HeaderMap::new();
        let status = match action.as_str() {
            "acquire" => {
                let secs = duration(h)?;
                let id = header(h, "x-ms-proposed-lease-id")
                    .map(str::to_string)
                    .unwrap_or_else(new_lease_id);
                if held.is_some_and(|(r, _)| r.id != id) {
                    return Err(lease_error(
                        StatusCode::CONFLICT,
                        "LeaseAlreadyPresent",
                        "There is already a lease present.",
                    ));
                }
                if let Some((_, etag)) = &current {
                    self.drop_record(&b, path, etag).await?;
                }
                let rec = Record {
                    id: id.clone(),
                    expires: expiry(secs),
                    duration: secs,
                    path: path.to_string(),
                };
                self.write_record(&b, &rec, true).await?;
                set(&mut out, "x-ms-lease-id", &id);
                StatusCode::CREATED
            }
            "renew" | "change" => {
                let (rec, etag) = current.as_ref().ok_or_else(mismatch)?;
                if Some(rec.id.as_str()) != given {
                    return Err(mismatch());
                }
                let mut next = rec.clone();
                if action == "change" {
                    next.id = header(h, "x-ms-proposed-lease-id")
                        .ok_or_else(|| BlobError::missing_header("x-ms-proposed-lease-id"))?
                        .to_string();
                } else {
                    next.expires = expiry(rec.duration);
                }
                self.drop_record(&b, path, etag).await?;
                self.write_record(&b, &next, true).await?;
                set(&mut out, "x-ms-lease-id", &next.id);
                StatusCode::OK
            }
            "release" => {
                let (rec, etag) = current.as_ref().ok_or_else(mismatch)?;
                if Some(rec.id.as_str()) != given {
                    return Err(mismatch());
                }
                self.drop_record(&b, path, etag).await?;
                StatusCode::OK
            }
            "break" => {
                if let Some((_, etag)) = &current {
                    self.drop_record(&b, path, etag).await?;
                }
                set(&mut out, "x-ms-lease-time", "0");
                StatusCode::ACCEPTED
            }
            _ => {
                return Err(BlobError::invalid_header(
                    "x-ms-lease-action",
                    "The lease action must be acquire, renew, change, release or break.",
                ))
            }
        };
        Ok(Reply::empty(status, out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_lapse_and_ids_differ() {
        let now = SystemTime::now();
        let secs = now.duration_since(UNIX_EPOCH).expect("epoch").as_secs();
        let r = |expires| Record {
            id: "x".into(),
            expires,
            duration: None,
            path: "p".into(),
        };
        assert!(r(None).active(now));
        assert!(r(Some(secs + 30)).active(now));
        assert!(!r(Some(secs - 1)).active(now));
        assert_ne!(new_lease_id(), new_lease_id());
        assert_eq!(new_lease_id().len(), 36);
        assert_ne!(record_key("a"), record_key("b"));
        assert!(record_key("a").starts_with(LEASES));
    }
}
