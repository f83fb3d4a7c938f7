//! The "origin" of a cache-only bucket (`origin = "none"`, the inference KV tier): objects live
//! only on the cache nodes. Each object is kept whole on `replicas` nodes chosen by its key
//! (the placement owner, then one per other zone), in their [`KvStore`]s:
//!
//! - a write streams the body to every replica chunk by chunk and commits the last chunk with
//!   the metadata; it succeeds when at least one replica committed;
//! - a read asks the replicas in placement order, and a replica that lost the object (a
//!   restart, an eviction) or does not answer sends it to the next; when none has it, the
//!   object is not found (a miss, never an error);
//! - a listing asks every live node and merges their pages;
//! - nothing is durable: an object is gone when every replica lost it.
//!
//! Without a cluster, the one replica is this process.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use cistern_cache::{KvError, KvLimits, KvStore, ObjectMeta};
use futures::StreamExt;

use super::listing;
use super::upload::BodyCheck;
use super::{
    single_part, BlockRef, BucketEntry, ListCursor, ListPage, ListQuery, Origin, PartInfo,
    PutOptions, PutResult, RangeRead, Upload,
};

mod list;
mod parts;

use crate::error::{Error, ErrorKind, Result};
use crate::pipeline::peers::{KvPut, Node, PeerError, Peers};
pub use list::local_page;
use list::merge_pages;

/// Where a cache-only bucket's objects live.
pub struct KvOrigin {
    space: Arc<str>,
    limits: KvLimits,
    replicas: usize,
    chunk_size: u64,
    /// This process's store, when it is a cache node.
    local: Option<Arc<KvStore>>,
    /// The cluster, when there is one.
    peers: Option<Arc<dyn Peers>>,
}

fn unavailable() -> Error {
    Error::new(
        ErrorKind::OriginUnavailable,
        "No cache node holding this cache-only bucket answered",
    )
}

fn not_found() -> Error {
    Error::new(ErrorKind::NotFound, "The specified key does not exist.")
}

/// The wire error for a store's answer.
pub fn kv_error(e: KvError) -> Error {
    match e {
        KvError::NotFound => not_found(),
        KvError::Changed => Error::new(
            ErrorKind::ObjectChanged,
            "The object changed while it was read",
        ),
        KvError::Incomplete => Error::new(
            ErrorKind::OriginUnavailable,
            "A cache node lost part of the object while it was written",
        ),
        KvError::TooLarge => Error::new(
            ErrorKind::InvalidArgument,
            "The object is larger than this cache-only bucket's quota",
        ),
    }
}

/// A new version's ETag: 32 hex digits, unique per write (not the body's MD5, which would cost
/// a pass over every byte written).
fn new_etag() -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    // Two random keys per process (the pid in the hash keeps two processes' ids apart even
    // if their keys met).
    static KEYS: std::sync::OnceLock<[std::collections::hash_map::RandomState; 2]> =
        std::sync::OnceLock::new();
    let keys = KEYS.get_or_init(Default::default);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let pid = *PID.get_or_init(std::process::id);
    let h = |k: &std::collections::hash_map::RandomState| {
        std::hash::BuildHasher::hash_one(k, (seq, now, pid))
    };
    format!("{:016x}{:016x}", h(&keys[0]), h(&keys[1]))
}

/// A new version's metadata as an upload's options describe it (its size is set when written).
fn new_version(opts: &PutOptions) -> ObjectMeta {
    let now = SystemTime::now();
    ObjectMeta {
        etag: new_etag(),
        last_modified: now,
        content_type: opts.content_type.clone(),
        content_encoding: opts.content_encoding.clone(),
        cache_control: opts.cache_control.clone(),
        content_disposition: opts.content_disposition.clone(),
        content_language: opts.content_language.clone(),
        user_metadata: opts.user_metadata.clone(),
        content_md5: opts.content_md5.clone(),
        created: Some(now),
        ..ObjectMeta::default()
    }
}

/// What writing `meta` created.
fn created(meta: &ObjectMeta) -> PutResult {
    PutResult {
        etag: meta.etag.clone(),
        last_modified: Some(meta.last_modified),
        version_id: None,
        origin_headers: Vec::new(),
    }
}

impl KvOrigin {
    /// The origin of cache-only bucket `space`.
    pub fn new(
        space: &str,
        limits: KvLimits,
        replicas: usize,
        chunk_size: u64,
        local: Option<Arc<KvStore>>,
        peers: Option<Arc<dyn Peers>>,
    ) -> Self {
        Self {
            space: Arc::from(space),
            limits,
            replicas: replicas.max(1),
            chunk_size: chunk_size.max(1),
            local,
            peers,
        }
    }

    /// The nodes that keep `key`, preferred first.
    fn replicas_of(&self, space: &str, key: &str) -> Vec<Node> {
        match &self.peers {
            Some(p) => {
                let hash = cistern_cache::placement::stable_hash(&[
                    b"kv",
                    space.as_bytes(),
                    key.as_bytes(),
                ]);
                p.spread(hash, self.replicas)
                    .into_iter()
                    .map(|(n, _)| n)
                    .collect()
            }
            None => vec![Node::Here],
        }
    }

    fn local(&self) -> Result<&KvStore> {
        self.local.as_deref().ok_or_else(unavailable)
    }

    fn peers(&self) -> Result<&dyn Peers> {
        self.peers.as_deref().ok_or_else(unavailable)
    }

    /// The object from the first replica that holds it; `range` `None` for metadata only.
    /// Replicas that cannot be reached count as not holding it: a cache-only object is a
    /// cache entry, and its readers take a miss (and recompute) rather than an error.
    async fn fetch(
        &self,
        space: &str,
        key: &str,
        range: Option<Range<u64>>,
        if_match: Option<&str>,
    ) -> Result<(ObjectMeta, Bytes)> {
        let mut last = not_found();
        for node in self.replicas_of(space, key) {
            let got = match node {
                Node::Here => {
                    let kv = self.local()?;
                    let now = Instant::now();
                    match &range {
                        Some(r) => kv
                            .read(space, key, r.clone(), if_match, now)
                            .await
                            .map(|(m, b, _)| (Arc::unwrap_or_clone(m), b)),
                        None => kv
                            .head(space, key, now)
                            .map(|m| (Arc::unwrap_or_clone(m), Bytes::new())),
                    }
                    .map_err(|e| PeerError::Answer(kv_error(e)))
                }
                Node::Peer(addr) => {
                    self.peers()?
                        .kv_get(&addr, space, key, range.clone(), if_match)
                        .await
                }
            };
            match got {
                Ok(found) => return Ok(found),
                // Another replica may hold what this one lost, or a version this one missed.
                Err(PeerError::Answer(e)) => last = e,
                Err(PeerError::Unavailable) => {}
            }
        }
        Err(last)
    }

    /// Sends one piece of the object to every replica still taking part; a replica that
    /// fails drops out.
    async fn send(&self, nodes: &mut Vec<Node>, put: &KvPut, data: Bytes) -> Option<Error> {
        let mut failure = None;
        let results = futures::future::join_all(nodes.iter().map(|n| {
            let data = data.clone();
            async move {
                match n {
                    Node::Here => {
                        let kv = self.local()?;
                        if !data.is_empty() {
                            kv.stage(&put.space, &put.key, &put.etag, put.index, data);
                        }
                        if let Some((meta, limits)) = &put.commit {
                            kv.commit(&put.space, &put.key, meta.clone(), *limits, Instant::now())
                                .map_err(kv_error)?;
                        }
                        Ok(())
                    }
                    Node::Peer(addr) => match self.peers()?.kv_put(addr, put, data).await {
                        Ok(()) => Ok(()),
                        Err(PeerError::Answer(e)) => Err(e),
                        Err(PeerError::Unavailable) => Err(unavailable()),
                    },
                }
            }
        }))
        .await;
        let mut kept = Vec::with_capacity(nodes.len());
        for (n, r) in nodes.drain(..).zip(results) {
            match r {
                Ok(()) => kept.push(n),
                Err(e) => {
                    tracing::debug!(node = ?n, error = %e, "a replica dropped out of a cache-only write");
                    failure = Some(e);
                }
            }
        }
        *nodes = kept;
        failure
    }

    /// `PreconditionFailed` for a create-only write (`If-None-Match: *`) when `key` exists.
    async fn refuse_existing(&self, key: &str, opts: &PutOptions) -> Result<()> {
        if opts.create_only && self.fetch(&self.space, key, None, None).await.is_ok() {
            return Err(Error::new(
                ErrorKind::PreconditionFailed,
                "At least one of the pre-conditions you specified did not hold",
            ));
        }
        Ok(())
    }

    /// Drops `key` of `space` at every replica that answers; an error only when none did.
    async fn remove(&self, space: &str, key: &str) -> Result<()> {
        let mut reached = false;
        for n in self.replicas_of(space, key) {
            match n {
                Node::Here => {
                    self.local()?.remove(space, key);
                    reached = true;
                }
                Node::Peer(addr) => {
                    reached |= self.peers()?.kv_delete(&addr, space, key).await.is_ok();
                }
            }
        }
        if reached {
            Ok(())
        } else {
            Err(unavailable())
        }
    }

    /// Streams `upload` to the replicas of `key` in `space`, chunk by chunk, and commits it
    /// there as `meta` (its ETag names the version; its size is the upload's). Succeeds when
    /// at least one replica committed.
    #[allow(clippy::too_many_arguments)] // reason: what a write is, spelled out once
    async fn write<S>(
        &self,
        space: &Arc<str>,
        key: &str,
        mut body: S,
        len: u64,
        content_md5: Option<&str>,
        meta: ObjectMeta,
        limits: KvLimits,
    ) -> Result<()>
    where
        S: futures::Stream<Item = Result<Bytes>> + Send + Unpin,
    {
        if limits.quota.is_some_and(|q| len > q) {
            return Err(kv_error(KvError::TooLarge));
        }
        let mut check = BodyCheck::new(len, content_md5)?;
        let etag: Arc<str> = Arc::from(meta.etag.as_str());
        let mut nodes = self.replicas_of(space, key);
        let mut put = KvPut {
            space: Arc::clone(space),
            key: Arc::from(key),
            etag: Arc::clone(&etag),
            index: 0,
            commit: None,
        };
        let cs = usize::try_from(self.chunk_size).unwrap_or(usize::MAX);
        let mut buf = BytesMut::new();
        // A full chunk not sent yet: the object's last one goes with the commit.
        let mut pending: Option<Bytes> = None;
        let mut failure = None;
        while let Some(piece) = body.next().await {
            let mut piece = piece?;
            check.update(&piece)?;
            while !piece.is_empty() {
                if let Some(chunk) = pending.take() {
                    failure = self.send(&mut nodes, &put, chunk).await.or(failure);
                    if nodes.is_empty() {
                        return Err(failure.unwrap_or_else(unavailable));
                    }
                    put.index += 1;
                }
                if buf.is_empty() && piece.len() >= cs {
                    // A piece holding a whole chunk is sliced, not copied.
                    pending = Some(piece.split_to(cs));
                    continue;
                }
                if buf.is_empty() {
                    // The whole chunk at once: growing it piece by piece copies it again
                    // and again.
                    let left = len.saturating_sub(put.index * self.chunk_size);
                    buf.reserve(usize::try_from(left).unwrap_or(cs).min(cs));
                }
                let take = (cs - buf.len()).min(piece.len());
                buf.extend_from_slice(&piece.split_to(take));
                if buf.len() == cs {
                    pending = Some(buf.split().freeze());
                }
            }
        }
        check.finish()?;
        let meta = ObjectMeta { size: len, ..meta };
        put.commit = Some((meta, limits));
        let last = pending.unwrap_or_else(|| buf.freeze());
        failure = self.send(&mut nodes, &put, last).await.or(failure);
        if nodes.is_empty() {
            return Err(failure.unwrap_or_else(unavailable));
        }
        Ok(())
    }

    /// One page of `space`'s listing, merged from every node's.
    async fn list_in(&self, space: &str, q: &ListQuery) -> Result<ListPage> {
        let after = match &q.cursor {
            ListCursor::V1 { marker } => marker.clone(),
            ListCursor::V2 {
                continuation: Some(t),
                ..
            } => Some(listing::decode_token(t)?),
            ListCursor::V2 { start_after, .. } => start_after.clone(),
        };
        let node_q = ListQuery {
            cursor: ListCursor::V1 {
                marker: after.clone(),
            },
            ..q.clone()
        };
        let nodes = match &self.peers {
            Some(p) => p.members(),
            None => vec![Node::Here],
        };
        let pages = futures::future::join_all(nodes.iter().map(|n| {
            let node_q = &node_q;
            async move {
                match n {
                    Node::Here => local_page(self.local()?, space, node_q),
                    Node::Peer(addr) => self
                        .peers()?
                        .kv_list(addr, space, node_q)
                        .await
                        .map_err(|_| unavailable()),
                }
            }
        }))
        .await;
        let mut answered = Vec::new();
        for (n, p) in nodes.iter().zip(pages) {
            match p {
                Ok(p) => answered.push(p),
                // A node that does not answer is left out, as its objects would be lost.
                Err(e) => {
                    tracing::debug!(node = ?n, error = %e, "a cache node left out of a listing")
                }
            }
        }
        if answered.is_empty() && !nodes.is_empty() {
            return Err(unavailable());
        }
        let merged = merge_pages(answered, q.max_keys);
        Ok(ListPage {
            next: merged.next.map(|n| match &q.cursor {
                ListCursor::V1 { .. } => n,
                ListCursor::V2 { .. } => listing::encode_token(&n),
            }),
            ..merged
        })
    }
}

#[async_trait]
impl Origin for KvOrigin {
    async fn list_buckets(&self) -> Result<Vec<BucketEntry>> {
        Ok(vec![BucketEntry {
            name: self.space.to_string(),
            created: None,
            listing: None,
        }])
    }

    async fn bucket_exists(&self, bucket: &str) -> Result<bool> {
        Ok(bucket == &*self.space)
    }

    async fn head(&self, _bucket: &str, key: &str) -> Result<ObjectMeta> {
        Ok(self.fetch(&self.space, key, None, None).await?.0)
    }

    async fn read(
        &self,
        _bucket: &str,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> Result<RangeRead> {
        let (meta, data) = self.fetch(&self.space, key, Some(range), if_match).await?;
        Ok(RangeRead { meta, data })
    }

    async fn list(&self, _bucket: &str, q: &ListQuery) -> Result<ListPage> {
        self.list_in(&self.space, q).await
    }

    async fn part(&self, bucket: &str, key: &str, part: u32) -> Result<PartInfo> {
        let meta = self.head(bucket, key).await?;
        single_part(&meta, part)
    }

    async fn put(
        &self,
        _bucket: &str,
        key: &str,
        upload: Upload,
        opts: &PutOptions,
    ) -> Result<PutResult> {
        self.refuse_existing(key, opts).await?;
        let meta = new_version(opts);
        let done = created(&meta);
        let space = Arc::clone(&self.space);
        let md5 = opts.content_md5.as_deref();
        self.write(&space, key, upload.body, upload.len, md5, meta, self.limits)
            .await?;
        Ok(done)
    }

    async fn start_parts(&self, _bucket: &str, key: &str, opts: &PutOptions) -> Result<String> {
        self.start_upload(key, opts).await
    }

    async fn put_part(
        &self,
        _bucket: &str,
        key: &str,
        upload_id: &str,
        part: u32,
        upload: Upload,
        content_md5: Option<&str>,
    ) -> Result<String> {
        self.upload_part(key, upload_id, part, upload, content_md5)
            .await
    }

    async fn complete_parts(
        &self,
        _bucket: &str,
        key: &str,
        upload_id: &str,
        parts: &[(u32, String)],
    ) -> Result<PutResult> {
        self.complete_upload(key, upload_id, parts).await
    }

    async fn abort_parts(&self, _bucket: &str, key: &str, upload_id: &str) -> Result<()> {
        self.abort_upload(key, upload_id).await
    }

    async fn put_block(
        &self,
        _bucket: &str,
        key: &str,
        block_id: &str,
        upload: Upload,
        content_md5: Option<&str>,
    ) -> Result<()> {
        self.stage_block(key, block_id, upload, content_md5).await
    }

    async fn commit_blocks(
        &self,
        _bucket: &str,
        key: &str,
        blocks: &[BlockRef],
        opts: &PutOptions,
    ) -> Result<PutResult> {
        self.commit_block_list(key, blocks, opts).await
    }

    async fn staged_blocks(&self, _bucket: &str, key: &str) -> Result<Vec<(String, u64)>> {
        self.blocks_of(key).await
    }

    async fn delete(&self, _bucket: &str, key: &str) -> Result<()> {
        self.remove(&self.space, key).await
    }
}
