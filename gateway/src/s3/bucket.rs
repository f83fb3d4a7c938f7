//! CreateBucket, with S3's rules for the names of new buckets, and DeleteBucket.

use s3s::dto;
use s3s::{s3_error, S3Request, S3Response, S3Result};

use super::error::to_s3;
use super::S3Front;

/// Whether S3 lets a bucket of this name be created: 3–63 lower-case letters, digits, `.` and
/// `-`, starting and ending with a letter or digit, no `..`, not an IPv4 address. (Cistern
/// serves existing buckets under looser names, e.g. directories with `_`.)
fn creatable_name(name: &str) -> bool {
    let b = name.as_bytes();
    let edge = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    (3..=63).contains(&b.len())
        && b.iter().all(|&c| edge(c) || c == b'.' || c == b'-')
        && b.first().copied().is_some_and(edge)
        && b.last().copied().is_some_and(edge)
        && !name.contains("..")
        && name.parse::<std::net::Ipv4Addr>().is_err()
}

impl S3Front {
    pub(super) async fn make_bucket(
        &self,
        req: S3Request<dto::CreateBucketInput>,
    ) -> S3Result<S3Response<dto::CreateBucketOutput>> {
        let bucket = req.input.bucket;
        if !creatable_name(&bucket) {
            return Err(s3_error!(
                InvalidBucketName,
                "The specified bucket is not valid."
            ));
        }
        self.pipeline.create_bucket(&bucket).await.map_err(to_s3)?;
        Ok(S3Response::new(dto::CreateBucketOutput {
            location: Some(format!("/{bucket}")),
        }))
    }

    pub(super) async fn remove_bucket(
        &self,
        req: S3Request<dto::DeleteBucketInput>,
    ) -> S3Result<S3Response<dto::DeleteBucketOutput>> {
        let b = self.bucket(&req.input.bucket).await?;
        self.pipeline.delete_bucket(&b).await.map_err(to_s3)?;
        Ok(S3Response::new(dto::DeleteBucketOutput::default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names_follow_s3_creation_rules() {
        for ok in ["abc", "my-bucket.data", "a1b", &"x".repeat(63)] {
            assert!(creatable_name(ok), "{ok}");
        }
        for bad in [
            "ab",
            &"x".repeat(64),
            "Upper",
            "under_score",
            "-lead",
            "trail-",
            "dot..dot",
            "192.168.1.1",
            "sp ace",
        ] {
            assert!(!creatable_name(bad), "{bad}");
        }
    }
}
