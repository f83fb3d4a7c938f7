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
    async fn read(&self, _: &str, _: &str, _: Range<u64>, _: Option<&str>) -> Result<RangeRead> {
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
    async fn put_block(&self, _: &str, _: &str, _: &str, _: Upload, _: Option<&str>) -> Result<()> {
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
