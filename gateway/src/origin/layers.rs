//! Decorators around [`Origin`]: metrics, and timeout with retry and backoff. Each implements
//! the same trait, so an origin client stays free of cross-cutting concerns.

use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use cistern_cache::ObjectMeta;

use super::{
    Access, BucketEntry, Deleted, Dialect, ForeignCredential, ListPage, ListQuery, Origin,
    PartInfo, PassResponse, Passthrough, PutOptions, PutResult, RangeRead, Upload,
};
use super::{
    AppendOptions, Appended, BlockRef, PartListing, PropertyKind, UploadEntry, VersionPage,
    VersionQuery,
};
use crate::error::{Error, ErrorKind, Result};
use crate::metrics::Metrics;

/// Counts every origin request by origin, operation and outcome, with latency and bytes.
pub struct Instrumented<O> {
    inner: O,
    name: Arc<str>,
    metrics: Metrics,
}

impl<O> Instrumented<O> {
    /// Wraps `inner`, labelling its metrics with the origin's configured `name`.
    pub fn new(inner: O, name: Arc<str>, metrics: Metrics) -> Self {
        Self {
            inner,
            name,
            metrics,
        }
    }

    async fn observe<T>(&self, op: &str, fut: impl Future<Output = Result<T>>) -> Result<T> {
        let start = Instant::now();
        let res = fut.await;
        let status = match &res {
            Ok(_) => "ok",
            Err(e) => e.kind().as_str(),
        };
        self.metrics
            .origin_requests
            .with_label_values(&[&self.name, op, status])
            .inc();
        self.metrics
            .origin_seconds
            .with_label_values(&[&self.name, op])
            .observe(start.elapsed().as_secs_f64());
        res
    }
}

#[async_trait]
impl<O: Origin> Origin for Instrumented<O> {
    fn dialect(&self) -> Dialect {
        self.inner.dialect()
    }

    async fn list_buckets(&self) -> Result<Vec<BucketEntry>> {
        self.observe("list_buckets", self.inner.list_buckets())
            .await
    }

    async fn bucket_exists(&self, bucket: &str) -> Result<bool> {
        self.observe("head_bucket", self.inner.bucket_exists(bucket))
            .await
    }

    async fn head(&self, bucket: &str, key: &str) -> Result<ObjectMeta> {
        self.observe("head", self.inner.head(bucket, key)).await
    }

    async fn read(
        &self,
        bucket: &str,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> Result<RangeRead> {
        let r = self
            .observe("get", self.inner.read(bucket, key, range, if_match))
            .await?;
        self.metrics
            .origin_bytes
            .with_label_values(&[&self.name])
            .inc_by(r.data.len() as u64);
        Ok(r)
    }

    async fn list(&self, bucket: &str, query: &ListQuery) -> Result<ListPage> {
        self.observe("list", self.inner.list(bucket, query)).await
    }

    async fn part(&self, bucket: &str, key: &str, part: u32) -> Result<PartInfo> {
        self.observe("head_part", self.inner.part(bucket, key, part))
            .await
    }

    async fn judge(
        &self,
        bucket: &str,
        key: Option<&str>,
        cred: &ForeignCredential,
        access: Access,
    ) -> Result<bool> {
        self.observe("judge", self.inner.judge(bucket, key, cred, access))
            .await
    }

    async fn passthrough(&self, req: &Passthrough) -> Result<PassResponse> {
        self.observe("passthrough", self.inner.passthrough(req))
            .await
    }

    async fn passthrough_upload(&self, req: &Passthrough, upload: Upload) -> Result<PassResponse> {
        self.observe("passthrough", self.inner.passthrough_upload(req, upload))
            .await
    }

    async fn copy_source_headers(
        &self,
        bucket: &str,
        key: &str,
        query: &[(String, String)],
    ) -> Result<Vec<(String, String)>> {
        self.inner.copy_source_headers(bucket, key, query).await
    }

    async fn put(
        &self,
        bucket: &str,
        key: &str,
        upload: Upload,
        opts: &PutOptions,
    ) -> Result<PutResult> {
        self.observe("put", self.inner.put(bucket, key, upload, opts))
            .await
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<()> {
        self.observe("delete", self.inner.delete(bucket, key)).await
    }

    async fn delete_version(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
        if_match: Option<&str>,
    ) -> Result<Deleted> {
        self.observe(
            "delete",
            self.inner.delete_version(bucket, key, version, if_match),
        )
        .await
    }

    async fn start_parts(&self, bucket: &str, key: &str, opts: &PutOptions) -> Result<String> {
        self.observe("start_parts", self.inner.start_parts(bucket, key, opts))
            .await
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
        self.observe(
            "put_part",
            self.inner
                .put_part(bucket, key, upload_id, part, upload, content_md5),
        )
        .await
    }

    async fn complete_parts(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: &[(u32, String)],
    ) -> Result<PutResult> {
        self.observe(
            "complete_parts",
            self.inner.complete_parts(bucket, key, upload_id, parts),
        )
        .await
    }

    async fn abort_parts(&self, bucket: &str, key: &str, upload_id: &str) -> Result<()> {
        self.observe(
            "abort_parts",
            self.inner.abort_parts(bucket, key, upload_id),
        )
        .await
    }

    async fn create_bucket(&self, bucket: &str) -> Result<()> {
        self.observe("create_bucket", self.inner.create_bucket(bucket))
            .await
    }

    async fn delete_bucket(&self, bucket: &str) -> Result<()> {
        self.observe("delete_bucket", self.inner.delete_bucket(bucket))
            .await
    }

    async fn put_block(
        &self,
        bucket: &str,
        key: &str,
        block_id: &str,
        upload: Upload,
        content_md5: Option<&str>,
    ) -> Result<()> {
        self.observe(
            "put_block",
            self.inner
                .put_block(bucket, key, block_id, upload, content_md5),
        )
        .await
    }

    async fn commit_blocks(
        &self,
        bucket: &str,
        key: &str,
        blocks: &[BlockRef],
        opts: &PutOptions,
    ) -> Result<PutResult> {
        self.observe(
            "commit_blocks",
            self.inner.commit_blocks(bucket, key, blocks, opts),
        )
        .await
    }

    async fn staged_blocks(&self, bucket: &str, key: &str) -> Result<Vec<(String, u64)>> {
        self.observe("staged_blocks", self.inner.staged_blocks(bucket, key))
            .await
    }

    async fn committed_blocks(&self, bucket: &str, key: &str) -> Result<Vec<(String, u64)>> {
        self.observe("committed_blocks", self.inner.committed_blocks(bucket, key))
            .await
    }

    async fn list_parts(&self, bucket: &str, key: &str, upload_id: &str) -> Result<PartListing> {
        self.observe("list_parts", self.inner.list_parts(bucket, key, upload_id))
            .await
    }

    async fn get_tags(&self, bucket: &str, key: &str) -> Result<Vec<(String, String)>> {
        self.observe("get_tags", self.inner.get_tags(bucket, key))
            .await
    }

    async fn put_tags(&self, bucket: &str, key: &str, tags: &[(String, String)]) -> Result<()> {
        self.observe("put_tags", self.inner.put_tags(bucket, key, tags))
            .await
    }

    async fn delete_tags(&self, bucket: &str, key: &str) -> Result<()> {
        self.observe("delete_tags", self.inner.delete_tags(bucket, key))
            .await
    }

    async fn list_versions(&self, bucket: &str, q: &VersionQuery) -> Result<VersionPage> {
        self.observe("list_versions", self.inner.list_versions(bucket, q))
            .await
    }

    async fn create_appendable(
        &self,
        bucket: &str,
        key: &str,
        opts: &PutOptions,
    ) -> Result<PutResult> {
        self.observe(
            "create_appendable",
            self.inner.create_appendable(bucket, key, opts),
        )
        .await
    }

    async fn append(
        &self,
        bucket: &str,
        key: &str,
        upload: Upload,
        opts: &AppendOptions,
    ) -> Result<Appended> {
        self.observe("append", self.inner.append(bucket, key, upload, opts))
            .await
    }

    async fn list_uploads(&self, bucket: &str, prefix: &str) -> Result<Vec<UploadEntry>> {
        self.observe("list_uploads", self.inner.list_uploads(bucket, prefix))
            .await
    }

    async fn set_properties(
        &self,
        bucket: &str,
        key: &str,
        etag: &str,
        opts: &PutOptions,
        which: PropertyKind,
    ) -> Result<PutResult> {
        self.observe(
            "set_properties",
            self.inner.set_properties(bucket, key, etag, opts, which),
        )
        .await
    }
}

/// Timeout and retry settings.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Per-attempt timeout.
    pub timeout: Duration,
    /// Attempts after the first.
    pub retries: u32,
    /// First backoff; doubles per retry, with jitter.
    pub backoff: Duration,
}

impl Default for RetryPolicy {
    /// Default: 30 s per attempt, 3 retries, 100 ms initial backoff.
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            retries: 3,
            backoff: Duration::from_millis(100),
        }
    }
}

/// Bounds each attempt with a timeout and retries retryable failures with exponential backoff.
pub struct Resilient<O> {
    inner: O,
    policy: RetryPolicy,
}

impl<O> Resilient<O> {
    /// Wraps `inner`.
    pub fn new(inner: O, policy: RetryPolicy) -> Self {
        Self { inner, policy }
    }

    async fn attempt<T, F, Fut>(&self, mut f: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut delay = self.policy.backoff;
        let mut tries = 0;
        loop {
            let res = match tokio::time::timeout(self.policy.timeout, f()).await {
                Ok(r) => r,
                Err(_) => Err(Error::new(
                    ErrorKind::OriginTimeout,
                    "The origin did not answer in time",
                )),
            };
            match res {
                Err(e) if e.is_retryable() && tries < self.policy.retries => {
                    tries += 1;
                    tracing::debug!(error = %e, tries, "retrying origin request");
                    tokio::time::sleep(delay + jitter(delay)).await;
                    delay = delay.saturating_mul(2);
                }
                other => return other,
            }
        }
    }
}

/// Up to half of `d`, from the clock's sub-second nanoseconds (good enough to spread retries).
fn jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|t| t.subsec_nanos())
        .unwrap_or(0);
    d.mul_f64(f64::from(nanos % 1000) / 2000.0)
}

#[async_trait]
impl<O: Origin> Origin for Resilient<O> {
    fn dialect(&self) -> Dialect {
        self.inner.dialect()
    }

    async fn list_buckets(&self) -> Result<Vec<BucketEntry>> {
        self.attempt(|| self.inner.list_buckets()).await
    }

    async fn bucket_exists(&self, bucket: &str) -> Result<bool> {
        self.attempt(|| self.inner.bucket_exists(bucket)).await
    }

    async fn head(&self, bucket: &str, key: &str) -> Result<ObjectMeta> {
        self.attempt(|| self.inner.head(bucket, key)).await
    }

    async fn read(
        &self,
        bucket: &str,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> Result<RangeRead> {
        self.attempt(|| self.inner.read(bucket, key, range.clone(), if_match))
            .await
    }

    async fn list(&self, bucket: &str, query: &ListQuery) -> Result<ListPage> {
        self.attempt(|| self.inner.list(bucket, query)).await
    }

    async fn part(&self, bucket: &str, key: &str, part: u32) -> Result<PartInfo> {
        self.attempt(|| self.inner.part(bucket, key, part)).await
    }

    async fn judge(
        &self,
        bucket: &str,
        key: Option<&str>,
        cred: &ForeignCredential,
        access: Access,
    ) -> Result<bool> {
        self.attempt(|| self.inner.judge(bucket, key, cred, access))
            .await
    }

    async fn passthrough(&self, req: &Passthrough) -> Result<PassResponse> {
        self.attempt(|| self.inner.passthrough(req)).await
    }

    /// Not retried, not timed out per attempt: as [`Origin::put`].
    async fn passthrough_upload(&self, req: &Passthrough, upload: Upload) -> Result<PassResponse> {
        self.inner.passthrough_upload(req, upload).await
    }

    async fn copy_source_headers(
        &self,
        bucket: &str,
        key: &str,
        query: &[(String, String)],
    ) -> Result<Vec<(String, String)>> {
        self.inner.copy_source_headers(bucket, key, query).await
    }

    /// Not retried and not timed out per attempt: the body is consumed as it goes, and a
    /// large upload legitimately takes longer than a read's timeout (a stalled client is cut
    /// off by the listener).
    async fn put(
        &self,
        bucket: &str,
        key: &str,
        upload: Upload,
        opts: &PutOptions,
    ) -> Result<PutResult> {
        self.inner.put(bucket, key, upload, opts).await
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<()> {
        self.attempt(|| self.inner.delete(bucket, key)).await
    }

    async fn delete_version(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
        if_match: Option<&str>,
    ) -> Result<Deleted> {
        self.attempt(|| self.inner.delete_version(bucket, key, version, if_match))
            .await
    }

    async fn start_parts(&self, bucket: &str, key: &str, opts: &PutOptions) -> Result<String> {
        // Not retried: a retry after a lost answer would start a second upload.
        self.inner.start_parts(bucket, key, opts).await
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
        self.inner
            .put_part(bucket, key, upload_id, part, upload, content_md5)
            .await
    }

    async fn complete_parts(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: &[(u32, String)],
    ) -> Result<PutResult> {
        self.inner
            .complete_parts(bucket, key, upload_id, parts)
            .await
    }

    async fn abort_parts(&self, bucket: &str, key: &str, upload_id: &str) -> Result<()> {
        self.attempt(|| self.inner.abort_parts(bucket, key, upload_id))
            .await
    }

    async fn create_bucket(&self, bucket: &str) -> Result<()> {
        // Not retried: a retry after a lost answer would report that the bucket exists.
        self.inner.create_bucket(bucket).await
    }

    async fn delete_bucket(&self, bucket: &str) -> Result<()> {
        self.inner.delete_bucket(bucket).await
    }

    async fn put_block(
        &self,
        bucket: &str,
        key: &str,
        block_id: &str,
        upload: Upload,
        content_md5: Option<&str>,
    ) -> Result<()> {
        self.inner
            .put_block(bucket, key, block_id, upload, content_md5)
            .await
    }

    async fn commit_blocks(
        &self,
        bucket: &str,
        key: &str,
        blocks: &[BlockRef],
        opts: &PutOptions,
    ) -> Result<PutResult> {
        self.inner.commit_blocks(bucket, key, blocks, opts).await
    }

    async fn staged_blocks(&self, bucket: &str, key: &str) -> Result<Vec<(String, u64)>> {
        self.attempt(|| self.inner.staged_blocks(bucket, key)).await
    }

    async fn committed_blocks(&self, bucket: &str, key: &str) -> Result<Vec<(String, u64)>> {
        self.attempt(|| self.inner.committed_blocks(bucket, key))
            .await
    }

    async fn set_properties(
        &self,
        bucket: &str,
        key: &str,
        etag: &str,
        opts: &PutOptions,
        which: PropertyKind,
    ) -> Result<PutResult> {
        // Idempotent for one version (If-Match): retried like a read.
        self.attempt(|| self.inner.set_properties(bucket, key, etag, opts, which))
            .await
    }

    async fn list_parts(&self, bucket: &str, key: &str, upload_id: &str) -> Result<PartListing> {
        self.attempt(|| self.inner.list_parts(bucket, key, upload_id))
            .await
    }

    async fn get_tags(&self, bucket: &str, key: &str) -> Result<Vec<(String, String)>> {
        self.attempt(|| self.inner.get_tags(bucket, key)).await
    }

    async fn put_tags(&self, bucket: &str, key: &str, tags: &[(String, String)]) -> Result<()> {
        // Replacing a tag set is idempotent.
        self.attempt(|| self.inner.put_tags(bucket, key, tags))
            .await
    }

    async fn delete_tags(&self, bucket: &str, key: &str) -> Result<()> {
        self.attempt(|| self.inner.delete_tags(bucket, key)).await
    }

    async fn list_versions(&self, bucket: &str, q: &VersionQuery) -> Result<VersionPage> {
        self.attempt(|| self.inner.list_versions(bucket, q)).await
    }

    async fn create_appendable(
        &self,
        bucket: &str,
        key: &str,
        opts: &PutOptions,
    ) -> Result<PutResult> {
        // A write: not retried (a retry after a lost answer would empty what was appended).
        self.inner.create_appendable(bucket, key, opts).await
    }

    async fn append(
        &self,
        bucket: &str,
        key: &str,
        upload: Upload,
        opts: &AppendOptions,
    ) -> Result<Appended> {
        // The body is consumed by the first attempt: never retried.
        self.inner.append(bucket, key, upload, opts).await
    }

    async fn list_uploads(&self, bucket: &str, prefix: &str) -> Result<Vec<UploadEntry>> {
        self.attempt(|| self.inner.list_uploads(bucket, prefix))
            .await
    }
}

#[cfg(test)]
mod tests;
