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
mod tests {
    //! Every `Origin` method has a default (answering NotImplemented) so that origins implement
    //! only what they can; a layer that forgets to forward one would silently answer that
    //! default. This test calls every method through both layers.

    use std::ops::Range;
    use std::sync::Arc;

    use async_trait::async_trait;
    use bytes::Bytes;
    use cistern_cache::ObjectMeta;
    use futures::StreamExt;

    use super::*;
    use crate::origin::{ListCursor, ListEntry};

    struct Probe;

    fn meta() -> ObjectMeta {
        ObjectMeta {
            etag: "e".into(),
            ..Default::default()
        }
    }

    fn done() -> PutResult {
        PutResult {
            etag: "p".into(),
            last_modified: None,
            version_id: None,
            origin_headers: Vec::new(),
        }
    }

    #[async_trait]
    impl Origin for Probe {
        async fn list_buckets(&self) -> Result<Vec<BucketEntry>> {
            Ok(vec![])
        }
        async fn bucket_exists(&self, _: &str) -> Result<bool> {
            Ok(true)
        }
        async fn head(&self, _: &str, _: &str) -> Result<ObjectMeta> {
            Ok(meta())
        }
        async fn read(
            &self,
            _: &str,
            _: &str,
            _: Range<u64>,
            _: Option<&str>,
        ) -> Result<RangeRead> {
            Ok(RangeRead {
                meta: meta(),
                data: Bytes::new(),
            })
        }
        async fn list(&self, _: &str, _: &ListQuery) -> Result<ListPage> {
            Ok(ListPage {
                entries: vec![ListEntry {
                    key: "k".into(),
                    size: 0,
                    etag: "e".into(),
                    last_modified: std::time::SystemTime::UNIX_EPOCH,
                    owner: None,
                }],
                ..Default::default()
            })
        }
        async fn part(&self, _: &str, _: &str, _: u32) -> Result<PartInfo> {
            Ok(PartInfo {
                range: 0..0,
                parts_count: None,
                etag: "e".into(),
            })
        }
        async fn judge(
            &self,
            _: &str,
            _: Option<&str>,
            _: &ForeignCredential,
            _: Access,
        ) -> Result<bool> {
            Ok(true)
        }
        async fn passthrough(&self, _: &Passthrough) -> Result<PassResponse> {
            Ok(PassResponse {
                status: http::StatusCode::OK,
                headers: http::HeaderMap::new(),
                body: futures::stream::empty().boxed(),
            })
        }
        async fn put(&self, _: &str, _: &str, _: Upload, _: &PutOptions) -> Result<PutResult> {
            Ok(done())
        }
        async fn delete(&self, _: &str, _: &str) -> Result<()> {
            Ok(())
        }
        async fn start_parts(&self, _: &str, _: &str, _: &PutOptions) -> Result<String> {
            Ok("u".into())
        }
        async fn put_part(
            &self,
            _: &str,
            _: &str,
            _: &str,
            _: u32,
            _: Upload,
            _: Option<&str>,
        ) -> Result<String> {
            Ok("t".into())
        }
        async fn complete_parts(
            &self,
            _: &str,
            _: &str,
            _: &str,
            _: &[(u32, String)],
        ) -> Result<PutResult> {
            Ok(done())
        }
        async fn abort_parts(&self, _: &str, _: &str, _: &str) -> Result<()> {
            Ok(())
        }
        async fn create_bucket(&self, _: &str) -> Result<()> {
            Ok(())
        }
        async fn delete_bucket(&self, _: &str) -> Result<()> {
            Ok(())
        }
        async fn put_block(
            &self,
            _: &str,
            _: &str,
            _: &str,
            _: Upload,
            _: Option<&str>,
        ) -> Result<()> {
            Ok(())
        }
        async fn commit_blocks(
            &self,
            _: &str,
            _: &str,
            _: &[BlockRef],
            _: &PutOptions,
        ) -> Result<PutResult> {
            Ok(done())
        }
        async fn set_properties(
            &self,
            _: &str,
            _: &str,
            _: &str,
            _: &PutOptions,
            _: PropertyKind,
        ) -> Result<PutResult> {
            Ok(done())
        }
        async fn list_parts(&self, _: &str, _: &str, _: &str) -> Result<PartListing> {
            Ok(PartListing::default())
        }
        async fn create_appendable(&self, _: &str, _: &str, _: &PutOptions) -> Result<PutResult> {
            Ok(done())
        }
        async fn get_tags(&self, _: &str, _: &str) -> Result<Vec<(String, String)>> {
            Ok(vec![])
        }
        async fn put_tags(&self, _: &str, _: &str, _: &[(String, String)]) -> Result<()> {
            Ok(())
        }
        async fn delete_tags(&self, _: &str, _: &str) -> Result<()> {
            Ok(())
        }
        async fn list_versions(&self, _: &str, _: &VersionQuery) -> Result<VersionPage> {
            Ok(VersionPage::default())
        }
        async fn append(&self, _: &str, _: &str, _: Upload, _: &AppendOptions) -> Result<Appended> {
            Ok(Appended {
                etag: String::new(),
                last_modified: None,
                offset: 0,
                blocks: None,
            })
        }
        async fn list_uploads(&self, _: &str, _: &str) -> Result<Vec<UploadEntry>> {
            Ok(vec![])
        }
    }

    fn upload() -> Upload {
        Upload {
            body: futures::stream::empty().boxed(),
            len: 0,
        }
    }

    #[tokio::test]
    async fn layers_forward_every_method() {
        let metrics = crate::metrics::Metrics::new().expect("metrics");
        let o: Arc<dyn Origin> = Arc::new(Resilient::new(
            Instrumented::new(Probe, Arc::from("probe"), metrics),
            RetryPolicy::default(),
        ));
        let opts = PutOptions::default();
        let q = ListQuery {
            prefix: String::new(),
            delimiter: None,
            max_keys: 1,
            cursor: ListCursor::V1 { marker: None },
        };
        o.list_buckets().await.expect("list_buckets");
        o.bucket_exists("b").await.expect("bucket_exists");
        o.head("b", "k").await.expect("head");
        o.read("b", "k", 0..1, None).await.expect("read");
        o.list("b", &q).await.expect("list");
        o.part("b", "k", 1).await.expect("part");
        let pass = Passthrough::read(http::Method::GET, "b".into(), "k".into());
        o.passthrough(&pass).await.expect("passthrough");
        let cred = ForeignCredential::Bearer("t".into());
        o.judge("b", Some("k"), &cred, Access::Read)
            .await
            .expect("judge");
        o.put("b", "k", upload(), &opts).await.expect("put");
        o.delete("b", "k").await.expect("delete");
        o.delete_version("b", "k", Some("null"), None)
            .await
            .expect("delete_version");
        o.start_parts("b", "k", &opts).await.expect("start_parts");
        o.put_part("b", "k", "u", 1, upload(), None)
            .await
            .expect("put_part");
        o.complete_parts("b", "k", "u", &[(1, "t".into())])
            .await
            .expect("complete_parts");
        o.abort_parts("b", "k", "u").await.expect("abort_parts");
        o.create_bucket("b").await.expect("create_bucket");
        o.delete_bucket("b").await.expect("delete_bucket");
        o.put_block("b", "k", "AA==", upload(), None)
            .await
            .expect("put_block");
        o.commit_blocks("b", "k", &[BlockRef::Latest("AA==".into())], &opts)
            .await
            .expect("commit_blocks");
        o.set_properties("b", "k", "e", &opts, PropertyKind::Metadata)
            .await
            .expect("set_properties");
        o.list_parts("b", "k", "u").await.expect("list_parts");
        o.list_uploads("b", "").await.expect("list_uploads");
        o.get_tags("b", "k").await.expect("get_tags");
        o.put_tags("b", "k", &[]).await.expect("put_tags");
        o.delete_tags("b", "k").await.expect("delete_tags");
        o.list_versions("b", &VersionQuery::default())
            .await
            .expect("list_versions");
        o.create_appendable("b", "k", &opts)
            .await
            .expect("create_appendable");
        o.append("b", "k", upload(), &AppendOptions::default())
            .await
            .expect("append");
    }
}
