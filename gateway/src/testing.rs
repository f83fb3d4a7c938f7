//! An in-memory origin for in-process tests: counts requests and injects faults. Tests use
//! it in addition to the real peers of `conformance/`, never instead of them.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use cistern_cache::ObjectMeta;

use crate::error::{Error, ErrorKind, Result};
use crate::origin::{
    listing, single_part, BucketEntry, ListEntry, ListPage, ListQuery, Origin, PartInfo, RangeRead,
};

#[derive(Default)]
struct State {
    objects: BTreeMap<(String, String), (Bytes, u64)>,
    /// Keys whose current version is a delete marker, with the marker's version id.
    markers: BTreeMap<(String, String), String>,
    version: u64,
}

/// An in-memory origin with request counters and fault injection.
#[derive(Clone, Default)]
pub struct MemOrigin {
    state: Arc<Mutex<State>>,
    /// Ranged reads served.
    pub reads: Arc<AtomicUsize>,
    /// HEADs served.
    pub heads: Arc<AtomicUsize>,
    /// The next this-many reads fail with a retryable error.
    pub fail_next: Arc<AtomicUsize>,
    /// Added latency per read.
    pub delay: Arc<Mutex<Duration>>,
    /// Reads in progress now, and the most seen at once.
    pub inflight: Arc<AtomicUsize>,
    /// The most reads seen in progress at once.
    pub max_inflight: Arc<AtomicUsize>,
    /// Delegated credentials judged (see [`Origin::judge`]): the bearer token `good-token`
    /// may read, any other credential nothing.
    pub judged: Arc<AtomicUsize>,
}

impl MemOrigin {
    /// Stores (or replaces) an object; each put is a new version with a new ETag.
    pub fn put(&self, bucket: &str, key: &str, data: impl Into<Bytes>) {
        let mut s = self.state.lock().expect("state");
        s.version += 1;
        let v = s.version;
        s.markers.remove(&(bucket.to_string(), key.to_string()));
        s.objects
            .insert((bucket.into(), key.into()), (data.into(), v));
    }

    /// Deletes an object as a versioned S3 bucket does: its current version becomes a delete
    /// marker with version id `marker`, and reads answer as S3 answers for one.
    pub fn delete_with_marker(&self, bucket: &str, key: &str, marker: &str) {
        let mut s = self.state.lock().expect("state");
        let k = (bucket.to_string(), key.to_string());
        s.objects.remove(&k);
        s.markers.insert(k, marker.to_string());
    }

    fn meta(data: &Bytes, version: u64) -> ObjectMeta {
        ObjectMeta {
            size: data.len() as u64,
            etag: format!("v{version}"),
            last_modified: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + version),
            content_type: Some("application/octet-stream".into()),
            content_encoding: None,
            cache_control: None,
            content_disposition: None,
            content_language: None,
            user_metadata: vec![("origin".into(), "mem".into())],
            ..Default::default()
        }
    }

    fn get(&self, bucket: &str, key: &str) -> Result<(Bytes, u64)> {
        let s = self.state.lock().expect("state");
        let k = (bucket.to_string(), key.to_string());
        if let Some(found) = s.objects.get(&k) {
            return Ok(found.clone());
        }
        let e = Error::new(ErrorKind::NotFound, "no such key");
        Err(match s.markers.get(&k) {
            Some(m) => e.with_delete_marker(crate::error::DeleteMarker {
                version_id: Some(m.clone()),
            }),
            None => e,
        })
    }
}

#[async_trait]
impl Origin for MemOrigin {
    async fn put(
        &self,
        bucket: &str,
        key: &str,
        upload: crate::origin::Upload,
        _opts: &crate::origin::PutOptions,
    ) -> Result<crate::origin::PutResult> {
        use futures::StreamExt;
        let mut body = upload.body;
        let mut all = Vec::new();
        while let Some(piece) = body.next().await {
            all.extend_from_slice(&piece?);
        }
        self.put(bucket, key, all);
        let version = self.state.lock().expect("state").version;
        Ok(crate::origin::PutResult {
            etag: format!("v{version}"),
            last_modified: None,
            version_id: None,
            origin_headers: Vec::new(),
        })
    }

    async fn list_buckets(&self) -> Result<Vec<BucketEntry>> {
        let s = self.state.lock().expect("state");
        let mut names: Vec<String> = s.objects.keys().map(|(b, _)| b.clone()).collect();
        names.dedup();
        Ok(names
            .into_iter()
            .map(|name| BucketEntry {
                name,
                created: None,
                listing: None,
            })
            .collect())
    }

    async fn bucket_exists(&self, bucket: &str) -> Result<bool> {
        Ok(self
            .state
            .lock()
            .expect("state")
            .objects
            .keys()
            .any(|(b, _)| b == bucket))
    }

    async fn head(&self, bucket: &str, key: &str) -> Result<ObjectMeta> {
        self.heads.fetch_add(1, Ordering::SeqCst);
        let (data, v) = self.get(bucket, key)?;
        Ok(Self::meta(&data, v))
    }

    async fn read(
        &self,
        bucket: &str,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> Result<RangeRead> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        let now = self.inflight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_inflight.fetch_max(now, Ordering::SeqCst);
        let delay = *self.delay.lock().expect("delay");
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        self.inflight.fetch_sub(1, Ordering::SeqCst);
        if self
            .fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(Error::new(ErrorKind::OriginUnavailable, "injected fault"));
        }
        let (data, v) = self.get(bucket, key)?;
        let meta = Self::meta(&data, v);
        if if_match.is_some_and(|m| m != meta.etag) {
            return Err(Error::new(ErrorKind::ObjectChanged, "changed"));
        }
        let s = range.start.min(meta.size) as usize;
        let e = range.end.min(meta.size) as usize;
        Ok(RangeRead {
            data: data.slice(s..e),
            meta,
        })
    }

    async fn judge(
        &self,
        _bucket: &str,
        _key: Option<&str>,
        cred: &crate::origin::ForeignCredential,
        access: crate::origin::Access,
    ) -> Result<bool> {
        self.judged.fetch_add(1, Ordering::SeqCst);
        Ok(access == crate::origin::Access::Read
            && matches!(cred, crate::origin::ForeignCredential::Bearer(t) if t == "good-token"))
    }

    async fn part(&self, bucket: &str, key: &str, part: u32) -> Result<PartInfo> {
        single_part(&self.head(bucket, key).await?, part)
    }

    async fn list(&self, bucket: &str, q: &ListQuery) -> Result<ListPage> {
        let entries: Vec<ListEntry> = {
            let s = self.state.lock().expect("state");
            s.objects
                .iter()
                .filter(|((b, _), _)| b == bucket)
                .map(|((_, k), (d, v))| {
                    let m = Self::meta(d, *v);
                    ListEntry {
                        key: k.clone(),
                        size: m.size,
                        etag: m.etag,
                        last_modified: m.last_modified,
                        owner: None,
                    }
                })
                .collect()
        };
        listing::page(entries, q)
    }
}
