//! Authentication (secret lookup for s3s's SigV4 verification) and authorization (the policy,
//! enforced on every request, cache hits included).

use std::sync::{Arc, OnceLock};

use cistern_auth::policy::{Decision, Permission, Policy};
use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::{S3Auth, SecretKey};
use s3s::path::S3Path;
use s3s::{s3_error, S3Result};

use crate::error::ErrorKind;
use crate::pipeline::Pipeline;

/// Carries the operation name from the access check to the access log and metrics.
#[derive(Clone, Default)]
pub struct OpSlot(pub Arc<OnceLock<String>>);

/// Looks up secrets of configured principals.
pub struct Secrets(pub Arc<Policy>);

#[async_trait::async_trait]
impl S3Auth for Secrets {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        match self.0.principal(access_key) {
            Some(p) => Ok(SecretKey::from(p.secret.expose())),
            None => Err(s3_error!(
                InvalidAccessKeyId,
                "The AWS access key Id you provided does not exist in our records."
            )),
        }
    }
}

/// The permission an S3 operation needs, or `None` for operations Cistern does not implement
/// (they answer NotImplemented to authenticated callers).
pub fn permission_for(op: &str) -> Option<Permission> {
    match op {
        "GetObject" | "HeadObject" | "GetObjectTagging" => Some(Permission::Read),
        "PutObject"
        | "CreateBucket"
        | "CopyObject"
        | "CreateMultipartUpload"
        | "UploadPart"
        | "UploadPartCopy"
        | "ListParts"
        | "PutObjectTagging"
        | "DeleteObjectTagging"
        | "CompleteMultipartUpload"
        | "AbortMultipartUpload" => Some(Permission::Write),
        "DeleteObject" | "DeleteObjects" | "DeleteBucket" => Some(Permission::Delete),
        "ListObjects"
        | "ListObjectsV2"
        | "HeadBucket"
        | "GetBucketLocation"
        | "ListBuckets"
        | "ListMultipartUploads"
        | "ListObjectVersions" => Some(Permission::List),
        _ => None,
    }
}

/// Enforces the policy.
pub struct Access {
    /// The policy.
    pub policy: Arc<Policy>,
    /// For bucket lookups (public-read flags, existence).
    pub pipeline: Arc<Pipeline>,
}

#[async_trait::async_trait]
impl S3Access for Access {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        let op = cx.s3_op().name().to_string();
        if let Some(slot) = cx.extensions_mut().get::<OpSlot>() {
            let _ = slot.0.set(op.clone());
        }
        let caller = cx.credentials().map(|c| c.access_key.clone());
        let bucket = match cx.s3_path() {
            S3Path::Root => None,
            S3Path::Bucket { bucket } | S3Path::Object { bucket, .. } => Some(bucket.to_string()),
        };
        let Some(perm) = permission_for(&op) else {
            // Unimplemented operations: authenticated callers learn it is not implemented.
            return if caller.is_some() {
                Ok(())
            } else {
                Err(denied())
            };
        };
        self.allow(caller.as_deref(), bucket.as_deref(), perm).await
    }
}

fn denied() -> s3s::S3Error {
    s3_error!(AccessDenied, "Access Denied")
}

impl Access {
    /// Whether `caller` (anonymous when `None`) may do `perm` on `bucket` (`None`: the service,
    /// for ListBuckets: any authenticated caller, its listing filtered by scope).
    pub async fn allow(
        &self,
        caller: Option<&str>,
        bucket: Option<&str>,
        perm: Permission,
    ) -> S3Result<()> {
        let Some(bucket) = bucket else {
            return if caller.is_some() {
                Ok(())
            } else {
                Err(denied())
            };
        };
        match caller {
            Some(ak) => {
                // Scope is decided by name first, so a caller cannot probe buckets it may not see.
                match self.policy.authorize(Some(ak), bucket, perm, false) {
                    Decision::Allow => Ok(()),
                    _ => Err(denied()),
                }
            }
            None if !self.pipeline.catalog().could_be_public(bucket) => {
                Err(self.anonymous_private(bucket).await)
            }
            None => match self.pipeline.catalog().resolve(bucket).await {
                Ok(b)
                    if self.policy.authorize(None, bucket, perm, b.public_read)
                        == Decision::Allow =>
                {
                    Ok(())
                }
                Ok(_) => Err(denied()),
                Err(e) => Err(super::error::to_s3(e)),
            },
        }
    }

    /// What an anonymous caller learns of a bucket it may not read, as S3 answers: 404
    /// `NoSuchBucket` when Cistern serves no such bucket, else 403. A configured bucket is
    /// denied without asking any origin; a name only an auto-exposing origin could have is
    /// looked up there, as for a signed caller (S3 too tells anyone whether a bucket exists).
    async fn anonymous_private(&self, bucket: &str) -> s3s::S3Error {
        let catalog = self.pipeline.catalog();
        if catalog.is_configured(bucket) {
            return denied();
        }
        match catalog.resolve(bucket).await {
            Err(e) if e.kind() == ErrorKind::NoSuchBucket => super::error::to_s3(e),
            _ => denied(),
        }
    }
}
