//! ListObjectVersions: an S3 origin's page passed through, a directory's objects as their
//! one `null` version each.

use s3s::dto::{self, ETag};
use s3s::{S3Request, S3Response, S3Result};

use super::error::to_s3;
use super::multipart::page_size;
use super::S3Front;

impl S3Front {
    /// ListObjectVersions: an S3 origin's page passed through; a directory's objects as their
    /// one `null` version each.
    pub(super) async fn list_versions(
        &self,
        req: S3Request<dto::ListObjectVersionsInput>,
    ) -> S3Result<S3Response<dto::ListObjectVersionsOutput>> {
        let i = req.input;
        let max = page_size(i.max_keys, "max-keys")?;
        let url = super::wants_url(i.encoding_type.as_ref())?;
        let enc = |s: String| super::enc(s, url);
        let b = self.bucket(&i.bucket).await?;
        let q = crate::origin::VersionQuery {
            prefix: i.prefix.clone().unwrap_or_default(),
            delimiter: i.delimiter.clone().filter(|d| !d.is_empty()),
            key_marker: i.key_marker.clone().filter(|m| !m.is_empty()),
            version_id_marker: i.version_id_marker.clone().filter(|m| !m.is_empty()),
            max_keys: max as u32,
        };
        let page = b
            .origin
            .list_versions(&b.origin_bucket, &q)
            .await
            .map_err(to_s3)?;
        let mut versions = Vec::new();
        let mut markers = Vec::new();
        for e in page.entries {
            let last_modified = e.last_modified.map(dto::Timestamp::from);
            if e.delete_marker {
                markers.push(dto::DeleteMarkerEntry {
                    key: Some(enc(e.key)),
                    version_id: Some(e.version_id),
                    is_latest: Some(e.is_latest),
                    last_modified,
                    // S3 names the owner of every version and delete marker.
                    owner: Some(super::owner(e.owner)),
                });
            } else {
                versions.push(dto::ObjectVersion {
                    key: Some(enc(e.key)),
                    version_id: Some(e.version_id),
                    is_latest: Some(e.is_latest),
                    last_modified,
                    e_tag: e.etag.map(ETag::Strong),
                    size: e.size.map(|s| s as i64),
                    storage_class: Some(dto::ObjectVersionStorageClass::from_static(
                        dto::ObjectVersionStorageClass::STANDARD,
                    )),
                    owner: Some(super::owner(e.owner)),
                    ..Default::default()
                });
            }
        }
        Ok(S3Response::new(dto::ListObjectVersionsOutput {
            name: Some(i.bucket),
            prefix: Some(enc(q.prefix)),
            delimiter: q.delimiter.map(enc),
            key_marker: Some(enc(i.key_marker.unwrap_or_default())),
            version_id_marker: Some(i.version_id_marker.unwrap_or_default()),
            max_keys: Some(max as i32),
            is_truncated: Some(page.truncated),
            next_key_marker: page.next_key_marker.map(enc),
            next_version_id_marker: page.next_version_id_marker,
            versions: Some(versions),
            delete_markers: Some(markers),
            common_prefixes: Some(
                page.prefixes
                    .into_iter()
                    .map(|p| dto::CommonPrefix {
                        prefix: Some(enc(p)),
                    })
                    .collect(),
            ),
            encoding_type: i.encoding_type,
            ..Default::default()
        }))
    }
}
