//! The chunk store: a foyer hybrid cache (RAM + SSD) with single-flight fill.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use foyer::{
    BlockEngineConfig, DeviceBuilder, FsDeviceBuilder, HybridCache, HybridCacheBuilder,
    HybridCachePolicy, PsyncIoEngineConfig, RecoverMode, Source,
};
use mixtrics::registry::prometheus_0_14::PrometheusMetricsRegistry;
use prometheus::{IntCounter, Registry};

use crate::flight::SingleFlight;
use crate::key::{Chunk, ChunkKey};

/// Where a chunk's bytes came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// The RAM cache.
    Memory,
    /// The SSD cache.
    Disk,
    /// A fill from the origin.
    Origin,
    /// Another Cistern node.
    Peer,
}

impl Tier {
    /// A stable lower-case name for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Disk => "disk",
            Self::Origin => "origin",
            Self::Peer => "peer",
        }
    }
}

/// A chunk as served to one caller.
#[derive(Debug, Clone)]
pub struct Served {
    /// The chunk's bytes.
    pub data: Bytes,
    /// The tier they came from.
    pub tier: Tier,
    /// True when this caller waited on another caller's fill or disk read.
    pub coalesced: bool,
}

/// Chunk store settings.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Directory for the SSD cache; `None` or a zero `disk_bytes` keeps chunks in RAM only.
    pub dir: Option<PathBuf>,
    /// RAM cache capacity in bytes.
    pub memory_bytes: usize,
    /// SSD cache capacity in bytes.
    pub disk_bytes: usize,
    /// Chunk size in bytes (the largest entry the store must hold).
    pub chunk_size: usize,
}

/// Why the store could not open.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The disk cache is too small for the chunk size.
    #[error(
        "disk cache of {disk} bytes is too small for {chunk}-byte chunks (needs at least {min})"
    )]
    DiskTooSmall {
        disk: usize,
        chunk: usize,
        min: usize,
    },
    /// foyer refused to open.
    #[error("cannot open the chunk cache: {0}")]
    Foyer(#[from] foyer::Error),
    /// A metric could not be registered.
    #[error("cannot register cache metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

type Fill<E> = Result<(Bytes, Tier), E>;

/// Chunks in RAM and on SSD, filled once per key however many callers ask at once.
#[derive(Clone)]
pub struct ChunkStore {
    hybrid: HybridCache<ChunkKey, Chunk>,
    inner: Arc<Inner>,
}

struct Inner {
    corrupt: IntCounter,
}

impl ChunkStore {
    /// Opens (and, with a disk directory, recovers) the store. foyer's metrics and the
    /// store's own are registered in `registry`.
    ///
    /// Policy: `WriteOnInsertion` — a chunk is written to SSD once, when it is filled, so a
    /// crash keeps what was fetched. Memory hits are served by a pure RAM lookup that never
    /// touches the storage engine, so they cause no rewrites.
    pub async fn open(cfg: &StoreConfig, registry: &Registry) -> Result<Self, OpenError> {
        let corrupt = IntCounter::new(
            "cistern_cache_corrupt_chunks_total",
            "Chunks read back from SSD whose CRC32C did not match; dropped and refetched",
        )?;
        registry.register(Box::new(corrupt.clone()))?;

        let builder = HybridCacheBuilder::new()
            .with_name("cistern")
            .with_policy(HybridCachePolicy::WriteOnInsertion)
            .with_flush_on_close(true)
            .with_metrics_registry(Box::new(PrometheusMetricsRegistry::new(registry.clone())))
            .memory(cfg.memory_bytes.max(1))
            .with_shards(8)
            .with_weighter(|_k: &ChunkKey, v: &Chunk| v.data.len() + 128)
            .storage();

        let hybrid = match &cfg.dir {
            Some(dir) if cfg.disk_bytes > 0 => {
                // A block holds several chunks; an entry must fit in a block minus 4 KiB.
                // 64 MiB blocks for 4 MiB chunks (16 chunks a block), at least two chunks a block.
                let block = (cfg.chunk_size * 16)
                    .clamp(16 << 20, 256 << 20)
                    .max(cfg.chunk_size * 2 + 64 * 1024)
                    .next_multiple_of(4096);
                let min = block * 2;
                if cfg.disk_bytes < min {
                    return Err(OpenError::DiskTooSmall {
                        disk: cfg.disk_bytes,
                        chunk: cfg.chunk_size,
                        min,
                    });
                }
                // O_DIRECT: the RAM tier is ours, so the page cache would only hold a second
                // copy of the SSD tier; and buffered writes spent half of a cold fill's CPU
                // copying blocks into it (perf: copy_folio_from_iter_atomic 52 %).
                let device = FsDeviceBuilder::new(dir)
                    .with_capacity(cfg.disk_bytes)
                    .with_direct(true)
                    .build()?;
                builder
                    .with_io_engine_config(PsyncIoEngineConfig::new())
                    .with_engine_config(
                        BlockEngineConfig::new(device)
                            .with_block_size(block)
                            // Fills arrive in bursts (read-ahead); past these bounds foyer
                            // drops SSD writes (counted as buffer_overflow), costing only
                            // SSD hit ratio.
                            .with_buffer_pool_size(block)
                            .with_submit_queue_size_threshold(block * 2),
                    )
                    .with_recover_mode(RecoverMode::Quiet)
                    .build()
                    .await?
            }
            _ => builder.build().await?,
        };

        Ok(Self {
            hybrid,
            inner: Arc::new(Inner { corrupt }),
        })
    }

    /// Returns the chunk for `key`: from RAM, else from SSD, else by running `fill` (once for
    /// all concurrent callers of the same key) and caching its result. A chunk whose CRC32C
    /// does not match on read-back is dropped and refilled, never served.
    pub async fn get_or_fill<F, Fut, E>(
        &self,
        flight: &SingleFlight<ChunkKey, Fill<E>>,
        key: ChunkKey,
        fill: F,
    ) -> Result<Served, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Bytes, E>> + Send + 'static,
        E: Clone + Send + Sync + 'static,
    {
        if let Some(entry) = self.hybrid.memory().get(&key) {
            if entry.value().intact {
                return Ok(Served {
                    data: entry.value().data.clone(),
                    tier: Tier::Memory,
                    coalesced: false,
                });
            }
        }
        let hybrid = self.hybrid.clone();
        let inner = Arc::clone(&self.inner);
        let task_key = key.clone();
        let (res, leader) = flight
            .run(key, move || {
                let fill = fill();
                async move {
                    match hybrid.get(&task_key).await {
                        Ok(Some(entry)) if entry.value().intact => {
                            let tier = match entry.source() {
                                Source::Memory => Tier::Memory,
                                _ => Tier::Disk,
                            };
                            return Ok((entry.value().data.clone(), tier));
                        }
                        Ok(Some(_)) => {
                            inner.corrupt.inc();
                            tracing::warn!(key = ?task_key, "corrupt chunk on ssd, dropping and refetching");
                            hybrid.remove(&task_key);
                        }
                        Ok(None) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "ssd cache read failed, treating as a miss");
                        }
                    }
                    let data = fill.await?;
                    hybrid.insert(task_key, Chunk::new(data.clone()));
                    Ok((data, Tier::Origin))
                }
            })
            .await;
        res.map(|(data, tier)| Served {
            data,
            tier,
            coalesced: !leader,
        })
    }

    /// Inserts a chunk obtained elsewhere (e.g. alongside a metadata fetch).
    pub fn insert(&self, key: ChunkKey, data: Bytes) {
        self.hybrid.insert(key, Chunk::new(data));
    }

    /// Whether the chunk is in RAM or (probably) on SSD, without reading it.
    pub fn resident(&self, key: &ChunkKey) -> bool {
        self.hybrid.memory().contains(key) || self.hybrid.storage().may_contains(key)
    }

    /// Reads a small record stored with [`ChunkStore::insert`] from RAM or SSD, never filling.
    pub async fn get_record(&self, key: &ChunkKey) -> Option<Bytes> {
        match self.hybrid.get(key).await {
            Ok(Some(e)) if e.value().intact => Some(e.value().data.clone()),
            _ => None,
        }
    }

    /// Removes an entry from RAM and SSD.
    pub fn remove(&self, key: &ChunkKey) {
        self.hybrid.remove(key);
    }

    /// Flushes RAM-resident chunks to SSD (with a disk) and closes the store.
    pub async fn close(&self) -> Result<(), foyer::Error> {
        self.hybrid.close().await
    }

    /// Drops every chunk from RAM only (tests use it to exercise the SSD tier).
    #[doc(hidden)]
    pub fn clear_memory(&self) {
        self.hybrid.memory().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn key(i: u64) -> ChunkKey {
        ChunkKey {
            origin: "o".into(),
            bucket: "b".into(),
            key: "k".into(),
            etag: "e".into(),
            index: i,
        }
    }

    async fn open(dir: &std::path::Path) -> ChunkStore {
        ChunkStore::open(
            &StoreConfig {
                dir: Some(dir.to_path_buf()),
                memory_bytes: 8 << 20,
                disk_bytes: 64 << 20,
                chunk_size: 1 << 20,
            },
            &Registry::new(),
        )
        .await
        .expect("open")
    }

    #[tokio::test]
    async fn fills_once_then_hits_memory_then_survives_restart_on_disk() {
        let dir = tempfile::tempdir().expect("tempdir");
        let flight = SingleFlight::default();
        let fills = Arc::new(AtomicUsize::new(0));
        let data = Bytes::from(vec![7u8; 1 << 20]);
        {
            let store = open(dir.path()).await;
            let mut tasks = Vec::new();
            for _ in 0..16 {
                let (store, fills, data) = (store.clone(), fills.clone(), data.clone());
                let flight = &flight;
                tasks.push(async move {
                    store
                        .get_or_fill(flight, key(0), move || async move {
                            fills.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                            Ok::<_, String>(data)
                        })
                        .await
                });
            }
            let results = futures::future::join_all(tasks).await;
            assert_eq!(fills.load(Ordering::SeqCst), 1);
            assert_eq!(
                results
                    .iter()
                    .filter(|r| r.as_ref().is_ok_and(|s| s.coalesced))
                    .count(),
                15
            );
            let hit = store
                .get_or_fill(&flight, key(0), || async {
                    Err::<Bytes, _>("must not fill".to_string())
                })
                .await
                .expect("memory hit");
            assert_eq!(hit.tier, Tier::Memory);
            store.close().await.expect("close");
        }
        let store = open(dir.path()).await;
        let hit = store
            .get_or_fill(&flight, key(0), || async {
                Err::<Bytes, _>("must not fill".to_string())
            })
            .await
            .expect("disk hit after restart");
        assert_eq!(hit.tier, Tier::Disk);
        assert_eq!(hit.data, data);
        store.close().await.expect("close");
    }

    /// Flips one byte of a chunk's bytes inside the SSD cache files.
    fn corrupt_on_disk(dir: &std::path::Path, needle: &[u8]) -> bool {
        for entry in std::fs::read_dir(dir).expect("read_dir").flatten() {
            let path = entry.path();
            if !path.is_file() {
                continue;
            }
            let mut bytes = std::fs::read(&path).expect("read");
            if let Some(pos) = bytes.windows(needle.len()).position(|w| w == needle) {
                bytes[pos + needle.len() / 2] ^= 0xFF;
                std::fs::write(&path, bytes).expect("write");
                return true;
            }
        }
        false
    }

    #[tokio::test]
    async fn a_corrupt_chunk_on_ssd_is_dropped_and_refetched() {
        let dir = tempfile::tempdir().expect("tempdir");
        let flight = SingleFlight::default();
        let data = Bytes::from(
            (0..(1 << 20))
                .map(|i: u32| (i % 251) as u8)
                .collect::<Vec<u8>>(),
        );
        {
            let store = open(dir.path()).await;
            let d = data.clone();
            store
                .get_or_fill(&flight, key(9), move || async move { Ok::<_, String>(d) })
                .await
                .expect("fill");
            store.close().await.expect("close");
        }
        assert!(
            corrupt_on_disk(dir.path(), &data[1000..1064]),
            "chunk bytes found on disk"
        );
        let store = open(dir.path()).await;
        let fresh = data.clone();
        let got = store
            .get_or_fill(
                &flight,
                key(9),
                move || async move { Ok::<_, String>(fresh) },
            )
            .await
            .expect("refetch");
        assert_eq!(got.tier, Tier::Origin, "the corrupt copy is not served");
        assert_eq!(got.data, data);
        store.close().await.expect("close");
    }

    #[tokio::test]
    async fn fill_errors_reach_every_waiter_and_are_not_cached() {
        let flight = SingleFlight::default();
        let store = ChunkStore::open(
            &StoreConfig {
                dir: None,
                memory_bytes: 8 << 20,
                disk_bytes: 0,
                chunk_size: 1 << 20,
            },
            &Registry::new(),
        )
        .await
        .expect("open");
        let err = store
            .get_or_fill(&flight, key(1), || async {
                Err::<Bytes, _>("origin down".to_string())
            })
            .await
            .expect_err("error");
        assert_eq!(err, "origin down");
        let ok = store
            .get_or_fill(&flight, key(1), || async {
                Ok::<_, String>(Bytes::from_static(b"x"))
            })
            .await
            .expect("second try fills");
        assert_eq!(ok.tier, Tier::Origin);
    }
}
