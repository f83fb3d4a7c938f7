//! The `fs` origin's uploads in parts and staged blocks: parts and blocks are files in a
//! staging directory under the uploads directory, assembled into the object on completion
//! or commit.

use super::*;

impl FsOrigin {
    /// Parts are staged as files under `.cistern-uploads/mp-<id>/` beside a record of the
    /// bucket and key they belong to; completion concatenates them and renames the result into
    /// place.
    pub(super) async fn in_start_parts(
        &self,
        bucket: &str,
        key: &str,
        _opts: &PutOptions,
    ) -> Result<String> {
        writable(self, bucket, key).await?;
        self.maybe_sweep();
        let mut h = Sha256::new();
        h.update(std::process::id().to_le_bytes());
        h.update(
            UPLOAD_SEQ
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                .to_le_bytes(),
        );
        h.update(
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
                .to_le_bytes(),
        );
        h.update(bucket.as_bytes());
        h.update([0]);
        h.update(key.as_bytes());
        let id = hex::encode(&h.finalize()[..16]);
        let dir = self.staging(&id)?;
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(write_failed)?;
        tokio::fs::write(dir.join("target"), format!("{bucket}\n{key}"))
            .await
            .map_err(write_failed)?;
        Ok(id)
    }

    pub(super) async fn in_put_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part: u32,
        upload: Upload,
        content_md5: Option<&str>,
    ) -> Result<String> {
        use md5::Digest as _;
        let dir = self.owned_staging(bucket, key, upload_id).await?;
        let check = BodyCheck::new(upload.len, content_md5)?;
        let mut md5 = md5::Md5::new();
        let tmp = dir.join(unique_name(&format!("{part:05}.tmp")));
        let _cleanup = TempGuard(tmp.clone());
        let result: Result<()> = async {
            write_new(&tmp, upload.body, check, |c| md5.update(c)).await?;
            tokio::fs::rename(&tmp, dir.join(format!("{part:05}")))
                .await
                .map_err(write_failed)?;
            // The ETag beside the part, for ListParts (recomputed when missing; completion
            // checks the data itself).
            let etag = hex::encode(md5.clone().finalize());
            tokio::fs::write(dir.join(format!("{part:05}.etag")), &etag)
                .await
                .map_err(write_failed)
        }
        .await;
        result?;
        Ok(hex::encode(md5.finalize()))
    }

    pub(super) async fn in_complete_parts(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: &[(u32, String)],
    ) -> Result<PutResult> {
        use md5::Digest as _;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let dir = self.owned_staging(bucket, key, upload_id).await?;
        let bucket_real = writable(self, bucket, key).await?;
        let tmp = self.temp_file().await?;
        let _cleanup = TempGuard(tmp.clone());
        let result: Result<PathBuf> = async {
            let mut out = create_new(&tmp).await?;
            let mut buf = vec![0u8; 1 << 20];
            for (n, etag) in parts {
                let invalid = || {
                    Error::new(
                        ErrorKind::InvalidPart,
                        "One or more of the specified parts could not be found or its ETag did not match",
                    )
                };
                let mut f = tokio::fs::File::open(dir.join(format!("{n:05}")))
                    .await
                    .map_err(|_| invalid())?;
                let mut md5 = md5::Md5::new();
                loop {
                    let got = f.read(&mut buf).await.map_err(write_failed)?;
                    if got == 0 {
                        break;
                    }
                    md5.update(&buf[..got]);
                    out.write_all(&buf[..got]).await.map_err(write_failed)?;
                }
                if hex::encode(md5.finalize()) != etag.trim_matches('"') {
                    return Err(invalid());
                }
            }
            out.sync_data().await.map_err(write_failed)?;
            drop(out);
            place(&tmp, &bucket_real, key, false).await
        }
        .await;
        let target = result?;
        let _ = tokio::fs::remove_dir_all(&dir).await;
        let md = tokio::fs::metadata(&target).await.map_err(write_failed)?;
        Ok(put_result(&md))
    }

    pub(super) async fn in_list_parts(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<crate::origin::PartListing> {
        use md5::Digest as _;
        let dir = self.owned_staging(bucket, key, upload_id).await?;
        let mut entries = tokio::fs::read_dir(&dir).await.map_err(read_failed)?;
        let mut out = Vec::new();
        while let Some(e) = entries.next_entry().await.map_err(read_failed)? {
            let name = e.file_name();
            let Some(number) = name
                .to_str()
                .filter(|n| n.len() == 5 && n.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let md = e.metadata().await.map_err(read_failed)?;
            let etag = match tokio::fs::read_to_string(dir.join(format!("{number:05}.etag"))).await
            {
                Ok(t) if t.len() == 32 => t,
                _ => {
                    use tokio::io::AsyncReadExt as _;
                    let mut f = tokio::fs::File::open(e.path()).await.map_err(read_failed)?;
                    let mut h = md5::Md5::new();
                    let mut buf = vec![0u8; 1 << 20];
                    loop {
                        let n = f.read(&mut buf).await.map_err(read_failed)?;
                        if n == 0 {
                            break;
                        }
                        h.update(&buf[..n]);
                    }
                    hex::encode(h.finalize())
                }
            };
            out.push(crate::origin::PartEntry {
                number,
                etag,
                size: md.len(),
                last_modified: md.modified().ok(),
            });
        }
        out.sort_by_key(|p| p.number);
        Ok(crate::origin::PartListing {
            parts: out,
            ..Default::default()
        })
    }

    pub(super) async fn in_list_uploads(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> Result<Vec<crate::origin::UploadEntry>> {
        let dir = self.root.join(UPLOADS_DIR);
        let mut entries = match tokio::fs::read_dir(&dir).await {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(read_failed(e)),
        };
        let mut out = Vec::new();
        while let Some(e) = entries.next_entry().await.map_err(read_failed)? {
            let name = e.file_name();
            let Some(id) = name.to_str().and_then(|n| n.strip_prefix("mp-")) else {
                continue;
            };
            let target = e.path().join("target");
            let Ok(recorded) = tokio::fs::read_to_string(&target).await else {
                continue;
            };
            let Some((b, k)) = recorded.split_once('\n') else {
                continue;
            };
            if b != bucket || !k.starts_with(prefix) {
                continue;
            }
            let initiated = tokio::fs::metadata(&target)
                .await
                .ok()
                .and_then(|m| m.modified().ok());
            out.push(crate::origin::UploadEntry {
                key: k.to_string(),
                upload_id: id.to_string(),
                initiated,
            });
        }
        out.sort_by(|a, b| (&a.key, a.initiated).cmp(&(&b.key, b.initiated)));
        Ok(out)
    }

    pub(super) async fn in_abort_parts(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<()> {
        let dir = self.owned_staging(bucket, key, upload_id).await?;
        tokio::fs::remove_dir_all(&dir).await.map_err(write_failed)
    }

    /// Blocks are staged under `.cistern-uploads/blocks-<digest of bucket and key>/`, one
    /// file per block id (by its digest); a block list concatenates them in order.
    pub(super) async fn in_put_block(
        &self,
        bucket: &str,
        key: &str,
        block_id: &str,
        upload: Upload,
        content_md5: Option<&str>,
    ) -> Result<()> {
        writable(self, bucket, key).await?;
        let dir = self.block_staging(bucket, key);
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(write_failed)?;
        let check = BodyCheck::new(upload.len, content_md5)?;
        let final_path = dir.join(block_file(block_id));
        let tmp = dir.join(unique_name("tmp"));
        let _cleanup = TempGuard(tmp.clone());
        write_new(&tmp, upload.body, check, |_| {}).await?;
        tokio::fs::rename(&tmp, &final_path)
            .await
            .map_err(write_failed)
    }

    pub(super) async fn in_staged_blocks(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Vec<(String, u64)>> {
        writable(self, bucket, key).await?;
        let dir = self.block_staging(bucket, key);
        blocking(move || {
            let Ok(rd) = std::fs::read_dir(&dir) else {
                return Ok(Vec::new());
            };
            Ok(rd
                .flatten()
                .filter_map(|e| {
                    let id = hex::decode(e.file_name().to_str()?).ok()?;
                    let size = e.metadata().ok().filter(|m| m.is_file())?.len();
                    Some((String::from_utf8(id).ok()?, size))
                })
                .collect())
        })
        .await
    }

    pub(super) async fn in_commit_blocks(
        &self,
        bucket: &str,
        key: &str,
        blocks: &[BlockRef],
        opts: &PutOptions,
    ) -> Result<PutResult> {
        let bucket_real = writable(self, bucket, key).await?;
        let dir = self.block_staging(bucket, key);
        let tmp = self.temp_file().await?;
        let _cleanup = TempGuard(tmp.clone());
        let invalid = || {
            Error::new(
                ErrorKind::InvalidPart,
                "The specified block list is invalid (a directory keeps no committed blocks)",
            )
        };
        let result: Result<PathBuf> = async {
            let mut out = create_new(&tmp).await?;
            for b in blocks {
                let id = match b {
                    BlockRef::Latest(id) | BlockRef::Uncommitted(id) => id,
                    BlockRef::Committed(_) => return Err(invalid()),
                };
                let mut f = tokio::fs::File::open(dir.join(block_file(id)))
                    .await
                    .map_err(|_| invalid())?;
                tokio::io::copy(&mut f, &mut out)
                    .await
                    .map_err(write_failed)?;
            }
            out.sync_data().await.map_err(write_failed)?;
            drop(out);
            place(&tmp, &bucket_real, key, opts.create_only).await
        }
        .await;
        let target = result?;
        // Azure discards uncommitted blocks on commit.
        let _ = tokio::fs::remove_dir_all(&dir).await;
        let md = tokio::fs::metadata(&target).await.map_err(write_failed)?;
        Ok(put_result(&md))
    }
}
