//! Object tags: GetObjectTagging, PutObjectTagging and DeleteObjectTagging, passed to the
//! origin (current versions only).

use s3s::dto;
use s3s::{s3_error, S3Request, S3Response, S3Result};

use super::error::to_s3;
use super::S3Front;

/// Tagging of a specific version is not served (versioned reads are not either).
fn no_version(v: &Option<String>) -> S3Result<()> {
    match v {
        Some(_) => Err(s3_error!(
            NotImplemented,
            "Tags of a specific version are not implemented yet"
        )),
        None => Ok(()),
    }
}

impl S3Front {
    /// GetObjectTagging, asked of the origin (current versions only).
    pub(super) async fn get_tagging(
        &self,
        req: S3Request<dto::GetObjectTaggingInput>,
    ) -> S3Result<S3Response<dto::GetObjectTaggingOutput>> {
        let i = req.input;
        no_version(&i.version_id)?;
        let b = self.bucket(&i.bucket).await?;
        let tags = b
            .origin
            .get_tags(&b.origin_bucket, &i.key)
            .await
            .map_err(to_s3)?;
        Ok(S3Response::new(dto::GetObjectTaggingOutput {
            tag_set: tags
                .into_iter()
                .map(|(k, v)| dto::Tag {
                    key: Some(k),
                    value: Some(v),
                })
                .collect(),
            version_id: None,
        }))
    }

    /// PutObjectTagging, passed to the origin (≤ 10 tags, as S3 allows).
    pub(super) async fn put_tagging(
        &self,
        req: S3Request<dto::PutObjectTaggingInput>,
    ) -> S3Result<S3Response<dto::PutObjectTaggingOutput>> {
        let i = req.input;
        no_version(&i.version_id)?;
        let tags: Vec<(String, String)> = i
            .tagging
            .tag_set
            .into_iter()
            .map(|t| (t.key.unwrap_or_default(), t.value.unwrap_or_default()))
            .collect();
        if tags.len() > 10 {
            return Err(s3_error!(
                InvalidTag,
                "Object tags cannot be greater than 10"
            ));
        }
        let b = self.bucket(&i.bucket).await?;
        b.origin
            .put_tags(&b.origin_bucket, &i.key, &tags)
            .await
            .map_err(to_s3)?;
        self.pipeline.changed(&b, &i.key).await;
        Ok(S3Response::new(dto::PutObjectTaggingOutput::default()))
    }

    /// DeleteObjectTagging, passed to the origin.
    pub(super) async fn delete_tagging(
        &self,
        req: S3Request<dto::DeleteObjectTaggingInput>,
    ) -> S3Result<S3Response<dto::DeleteObjectTaggingOutput>> {
        let i = req.input;
        no_version(&i.version_id)?;
        let b = self.bucket(&i.bucket).await?;
        b.origin
            .delete_tags(&b.origin_bucket, &i.key)
            .await
            .map_err(to_s3)?;
        self.pipeline.changed(&b, &i.key).await;
        Ok(S3Response::new(dto::DeleteObjectTaggingOutput::default()))
    }
}
