//! The dialect-neutral read pipeline: bucket catalog → metadata (policy-governed) →
//! conditional checks → chunk reads through the cache with bounded read-ahead → a body stream.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use cistern_cache::{
    ChunkKey, ChunkStore, Heat, MetaCache, MetaKey, NearCache, SingleFlight, Tier, TopKeys,
};

use crate::error::Result;
use crate::metrics::Metrics;
use crate::origin::{ListPage, ListQuery};

mod budget;
mod catalog;
mod chunk;
mod conditions;
mod direct;
mod meta;
pub mod peers;
mod read;
mod serve;
mod warm;
mod write;

pub use catalog::{valid_bucket_name, AutoExpose, BucketBinding, Catalog};
pub use conditions::{Conditions, EtagMatch};
pub use read::{Body, CacheStatus, ObjectRead, Selection, CACHE_HEADER};
pub use warm::Warmed;

use budget::Budget;
use meta::{MetaFill, PartLayouts};
use peers::Peers;

/// Pipeline settings.
#[derive(Debug, Clone, Copy)]
pub struct PipelineConfig {
    /// Chunk size in bytes.
    pub chunk_size: u64,
    /// Chunks fetched ahead of the one being sent.
    pub readahead: usize,
    /// RAM for hot chunks owned by other nodes (cluster only).
    pub near_cache_bytes: usize,
    /// Reads of one chunk within about two seconds that make it hot (0: never).
    pub hot_threshold: u32,
    /// How many nodes serve a hot chunk.
    pub hot_replicas: usize,
    /// The most of one written object kept for the cache (buckets with `populate_on_write`).
    pub populate_max_bytes: u64,
    /// Bytes that responses may hold outside the RAM cache at once (see `budget`).
    pub stream_memory: usize,
    /// The unit a response without budget advances by (see `budget`).
    pub stream_step: usize,
}

impl PipelineConfig {
    /// A single-node pipeline with `chunk_size` chunks and `readahead` chunks read ahead.
    pub fn new(chunk_size: u64, readahead: usize) -> Self {
        Self {
            chunk_size,
            readahead,
            near_cache_bytes: 0,
            hot_threshold: 0,
            hot_replicas: 1,
            populate_max_bytes: 256 << 20,
            stream_memory: 32 << 20,
            stream_step: budget::STEP,
        }
    }
}

type ChunkFill = Result<(Bytes, Tier)>;

/// The read pipeline shared by every dialect front.
pub struct Pipeline {
    catalog: Catalog,
    store: ChunkStore,
    chunk_flight: SingleFlight<ChunkKey, ChunkFill>,
    meta: Arc<MetaCache>,
    /// Metadata fetches, coalesced per object and write generation.
    meta_flight: SingleFlight<(MetaKey, u64), Result<MetaFill>>,
    /// The write generation of objects written through this Cistern: a metadata fetch that
    /// began before a write neither serves later readers nor enters the cache.
    generations: Arc<Mutex<HashMap<MetaKey, u64>>>,
    /// Part layouts by object version: immutable once the ETag is known.
    parts: Mutex<PartLayouts>,
    cfg: PipelineConfig,
    metrics: Metrics,
    /// The cache cluster, when this node is part of one.
    peers: Option<Arc<dyn Peers>>,
    /// Other regions' clusters, asked (only for what they hold) before the origin, in order.
    regions: Arc<[Region]>,
    /// Bytes of uploads kept for the cache right now, across all uploads.
    populating: Arc<std::sync::atomic::AtomicU64>,
    heat: Heat,
    near: NearCache,
    /// The most-read objects lately (GETs counted here, at the front), for operators.
    top: TopKeys,
    /// Bytes responses hold outside the RAM cache.
    budget: Budget,
}

/// Another region's cache cluster, as a fill source before the origin.
#[derive(Clone)]
pub struct Region {
    /// Its name (metrics, logs).
    pub name: Arc<str>,
    /// Its nodes, placed as that cluster places them.
    pub peers: Arc<dyn Peers>,
}

impl Pipeline {
    /// Wires the pipeline.
    pub fn new(catalog: Catalog, store: ChunkStore, cfg: PipelineConfig, metrics: Metrics) -> Self {
        let meta = Arc::new(MetaCache::new(1 << 20, Some(store.clone())));
        Self {
            catalog,
            store,
            chunk_flight: SingleFlight::default(),
            meta,
            meta_flight: SingleFlight::default(),
            generations: Arc::new(Mutex::new(HashMap::new())),
            parts: Mutex::new(HashMap::new()),
            heat: Heat::new(4096, cfg.hot_threshold),
            near: NearCache::new(cfg.near_cache_bytes),
            top: TopKeys::new(256, std::time::Duration::from_secs(30)),
            budget: Budget::new(
                cfg.stream_memory,
                cfg.stream_step,
                metrics.budget_waits.clone(),
            ),
            cfg,
            metrics,
            peers: None,
            regions: Arc::from([]),
            populating: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        }
    }

    /// Other regions' clusters to ask for a chunk before the origin (in preference order).
    pub fn with_regions(mut self, regions: Vec<Region>) -> Self {
        self.regions = Arc::from(regions);
        self
    }

    /// Joins a cache cluster: chunks and metadata are then read from their owners.
    pub fn with_peers(mut self, peers: Arc<dyn Peers>) -> Self {
        self.peers = Some(peers);
        self
    }

    /// The bucket catalog.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The chunk store (for shutdown).
    pub fn store(&self) -> &ChunkStore {
        &self.store
    }

    /// One page of a listing (always from the origin).
    pub async fn list(&self, b: &BucketBinding, q: &ListQuery) -> Result<ListPage> {
        b.origin.list(&b.origin_bucket, q).await
    }

    fn meta_key(&self, b: &BucketBinding, key: &Arc<str>) -> MetaKey {
        MetaKey {
            origin: Arc::clone(&b.origin_name),
            bucket: Arc::clone(&b.origin_bucket),
            key: Arc::clone(key),
        }
    }

    fn chunk_key(
        &self,
        b: &BucketBinding,
        key: &Arc<str>,
        etag: &Arc<str>,
        index: u64,
    ) -> ChunkKey {
        ChunkKey {
            origin: Arc::clone(&b.origin_name),
            bucket: Arc::clone(&b.origin_bucket),
            key: Arc::clone(key),
            etag: Arc::clone(etag),
            index,
        }
    }
}
