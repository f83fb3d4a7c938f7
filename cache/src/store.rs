//! The chunk store: a foyer RAM cache of whole chunks, the SSD chunk log (`log/`), and
//! single-flight fill.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use std::ops::Range;

use bytes::Bytes;
use foyer::{
    BlockEngineConfig, Cache, CacheBuilder, DeviceBuilder, Event, EventListener, FsDeviceBuilder,
    HybridCache, HybridCacheBuilder, HybridCachePolicy, PsyncIoEngineConfig, RecoverMode,
};
use mixtrics::registry::prometheus_0_14::PrometheusMetricsRegistry;
use prometheus::{IntCounter, Registry};

use crate::flight::SingleFlight;
use crate::key::{Chunk, ChunkKey, PieceKey};
use crate::log::{segment_size, ChunkLog, LogConfig};
use crate::pin::Pins;

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
    /// RAM capacity in bytes: whole chunks, plus a small share for metadata records.
    pub memory_bytes: usize,
    /// SSD cache capacity in bytes.
    pub disk_bytes: usize,
    /// Chunk size in bytes.
    pub chunk_size: usize,
    /// The unit an SSD hit reads and checks (one CRC32C each; a multiple of 4 KiB, at most
    /// `chunk_size`): a range reads only the pieces it touches.
    pub piece_size: usize,
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
    /// The piece size does not fit the chunk size.
    #[error(
        "piece size {piece} must be a multiple of 4096 between 4096 and the chunk size {chunk}"
    )]
    BadPiece { piece: usize, chunk: usize },
    /// foyer refused to open.
    #[error("cannot open the chunk cache: {0}")]
    Foyer(#[from] foyer::Error),
    /// A metric could not be registered.
    #[error("cannot register cache metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The cache directory could not be used.
    #[error("cannot use the cache directory: {0}")]
    Io(std::io::Error),
}

type Fill<E> = Result<(Bytes, Tier), E>;

/// The piece number small records (see [`ChunkStore::insert_record`]) are kept under.
const RECORD: u32 = u32::MAX;

/// Chunks in RAM and on SSD, filled once per key however many callers ask at once.
///
/// RAM holds whole chunks (a memory hit is one lookup and a zero-copy slice). The SSD chunk
/// log holds each chunk whole, written once when it is filled, with a CRC32C per piece of
/// `piece_size`, so an SSD hit reads only the pieces its range touches (a 4 KiB read of 4 KiB
/// pieces reads 4 KiB). A read of a whole chunk from SSD brings it back into RAM. Metadata
/// records live in a small foyer hybrid cache of their own (RAM, and SSD when there is one).
#[derive(Clone)]
pub struct ChunkStore {
    ram: Cache<ChunkKey, Bytes>,
    /// Metadata records (see [`ChunkStore::insert_record`]).
    records: HybridCache<PieceKey, Chunk>,
    /// The SSD tier; `None` without a disk.
    log: Option<ChunkLog>,
    inner: Arc<Inner>,
}

struct Inner {
    /// The marker [`ChunkStore::close`] leaves in the cache directory.
    clean_marker: Option<PathBuf>,
    /// When the store was opened, if the process before did not close it (killed, crashed):
    /// removals it made may not have reached the SSD, so records written before then may be
    /// ones it had removed.
    unclean_since: Option<SystemTime>,
    /// Chunks pinned until a deadline (see `pin.rs`), up to half of `memory_bytes`.
    pins: Pins,
}

/// The file a closed store leaves in its directory; its absence at open means the previous
/// process did not close the store.
const CLEAN_MARKER: &str = "cistern-closed-cleanly";

/// The records' foyer block (its unit of writing and eviction on SSD).
const RECORD_BLOCK: usize = 4 << 20;

/// The SSD share kept for metadata records: 1/32 of the disk, between 2 blocks and 1 GiB.
fn records_disk(disk_bytes: usize) -> usize {
    (disk_bytes / 32).clamp(2 * RECORD_BLOCK, 1 << 30) / RECORD_BLOCK * RECORD_BLOCK
}

/// The chunk log's settings for a disk of `disk_bytes` in `dir`.
fn log_config(dir: &std::path::Path, cfg: &StoreConfig) -> LogConfig {
    LogConfig {
        dir: dir.join("chunks"),
        capacity: cfg.disk_bytes.saturating_sub(records_disk(cfg.disk_bytes)),
        chunk_size: cfg.chunk_size,
        piece: cfg.piece_size,
    }
}

/// The files the SSD tier keeps open for `disk_bytes` with chunks of `chunk_size`: one per
/// chunk log segment, one per records block (foyer's directory device).
pub fn ssd_files(disk_bytes: usize, chunk_size: usize) -> usize {
    let records = records_disk(disk_bytes);
    disk_bytes.saturating_sub(records) / segment_size(chunk_size) + records / RECORD_BLOCK
}

/// The files an earlier layout (every piece in foyer, in the directory itself) left.
const OLD_LAYOUT_PREFIX: &str = "foyer-storage-direct-fs-";

impl ChunkStore {
    /// Opens (and, with a disk directory, recovers) the store. foyer's metrics and the
    /// store's own are registered in `registry`.
    ///
    /// A chunk is written to SSD once, when it is filled, so a crash keeps what was fetched
    /// (a cache-only object's chunk when RAM lets it go: see
    /// [`ChunkStore::insert_write_back`]). Memory hits never touch the SSD tier.
    pub async fn open(cfg: &StoreConfig, registry: &Registry) -> Result<Self, OpenError> {
        if cfg.piece_size < 4096
            || !cfg.piece_size.is_multiple_of(4096)
            || cfg.piece_size > cfg.chunk_size.max(4096)
        {
            return Err(OpenError::BadPiece {
                piece: cfg.piece_size,
                chunk: cfg.chunk_size,
            });
        }
        let corrupt = IntCounter::new(
            "cistern_cache_corrupt_chunks_total",
            "Chunk pieces read back from SSD whose CRC32C did not match; dropped and refetched",
        )?;
        registry.register(Box::new(corrupt.clone()))?;
        let foyer_metrics = PrometheusMetricsRegistry::new(registry.clone());

        let disk = cfg.dir.is_some() && cfg.disk_bytes > 0;
        let memory = cfg.memory_bytes.max(1);
        // The records' RAM share.
        let record_memory = (memory / 32)
            .clamp(1 << 20, 16 << 20)
            .min(memory / 2)
            .max(1);
        let ram = CacheBuilder::new((memory - record_memory).max(cfg.chunk_size * 2))
            .with_name("cistern-ram")
            .with_shards(8)
            .with_weighter(|_k: &ChunkKey, v: &Bytes| v.len() + 128)
            .with_metrics_registry(Box::new(foyer_metrics.clone()));

        let builder = HybridCacheBuilder::new()
            .with_name("cistern")
            .with_policy(HybridCachePolicy::WriteOnInsertion)
            .with_flush_on_close(true)
            .with_metrics_registry(Box::new(foyer_metrics))
            .memory(record_memory)
            .with_shards((record_memory / (1 << 20)).clamp(1, 8))
            .with_weighter(|_k: &PieceKey, v: &Chunk| v.data.len() + 128)
            .storage();

        // Taken away now, so that it is there again only if this process closes the store.
        let clean_marker = cfg
            .dir
            .as_ref()
            .filter(|_| disk)
            .map(|d| d.join(CLEAN_MARKER));
        let unclean_since = match &clean_marker {
            Some(m) => match std::fs::remove_file(m) {
                Ok(()) => None,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(SystemTime::now()),
                Err(e) => return Err(OpenError::Io(e)),
            },
            None => None,
        };
        let (records, log) = match &cfg.dir {
            Some(dir) if disk => {
                let log_cfg = log_config(dir, cfg);
                if log_cfg.segments() < 2 {
                    return Err(OpenError::DiskTooSmall {
                        disk: cfg.disk_bytes,
                        chunk: cfg.chunk_size,
                        min: records_disk(cfg.disk_bytes) + 2 * segment_size(cfg.chunk_size),
                    });
                }
                remove_old_layout(dir).map_err(OpenError::Io)?;
                let corrupt = corrupt.clone();
                let reg = registry.clone();
                let log =
                    tokio::task::spawn_blocking(move || ChunkLog::open(&log_cfg, &reg, corrupt))
                        .await
                        .map_err(|e| OpenError::Io(std::io::Error::other(e)))?
                        .map_err(OpenError::Io)?;
                // O_DIRECT, like the chunk log.
                let records_dir = dir.join("records");
                std::fs::create_dir_all(&records_dir).map_err(OpenError::Io)?;
                let device = FsDeviceBuilder::new(records_dir)
                    .with_capacity(records_disk(cfg.disk_bytes))
                    .with_direct(true)
                    .build()?;
                let records = builder
                    .with_io_engine_config(PsyncIoEngineConfig::new())
                    .with_engine_config(
                        BlockEngineConfig::new(device)
                            .with_block_size(RECORD_BLOCK)
                            .with_buffer_pool_size(RECORD_BLOCK)
                            .with_submit_queue_size_threshold(RECORD_BLOCK * 2),
                    )
                    .with_recover_mode(RecoverMode::Quiet)
                    .build()
                    .await?;
                (records, Some(log))
            }
            _ => (builder.build().await?, None),
        };
        let ram = match &log {
            Some(log) => ram.with_event_listener(Arc::new(Spill { log: log.clone() })),
            None => ram,
        }
        .build();

        Ok(Self {
            ram,
            records,
            log,
            inner: Arc::new(Inner {
                clean_marker,
                unclean_since,
                pins: Pins::new(cfg.memory_bytes as u64 / 2),
            }),
        })
    }

    /// Returns bytes `want` of the chunk `key` (whose full length is `len`): from RAM, else
    /// from the SSD pieces `want` touches, else by running `fill` — once for all concurrent
    /// callers of the same key — and caching the whole chunk. A piece whose CRC32C does not
    /// match on read-back is dropped and the chunk refilled, never served. The result is
    /// shorter than `want` only when the chunk is (the caller treats that as a changed object).
    pub async fn get_or_fill<F, Fut, E>(
        &self,
        flight: &SingleFlight<ChunkKey, Fill<E>>,
        key: ChunkKey,
        len: usize,
        want: Range<usize>,
        fill: F,
    ) -> Result<Served, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Bytes, E>> + Send + 'static,
        E: Clone + Send + Sync + 'static,
    {
        if let Some(hit) = self.in_ram(&key, &want) {
            return Ok(hit);
        }
        let whole = want.start == 0 && want.end >= len;
        if let Some(log) = self.log.as_ref().filter(|_| !whole && !want.is_empty()) {
            if let Some(data) = log.read(&key, len, want.clone()).await {
                return Ok(Served {
                    data,
                    tier: Tier::Disk,
                    coalesced: false,
                });
            }
        }
        let this = self.clone();
        let task_key = key.clone();
        let (res, leader) = flight
            .run(key, move || {
                let fill = fill();
                async move {
                    if let Some(log) = this.log.as_ref().filter(|_| len > 0) {
                        if let Some(data) = log.read(&task_key, len, 0..len).await {
                            // A whole chunk read from SSD comes back into RAM.
                            this.ram.insert(task_key, data.clone());
                            return Ok((data, Tier::Disk));
                        }
                    }
                    let data = fill.await?;
                    this.insert(task_key, data.clone());
                    Ok((data, Tier::Origin))
                }
            })
            .await;
        res.map(|(data, tier)| Served {
            data: clamp(&data, &want),
            tier,
            coalesced: !leader,
        })
    }

    /// Bytes `want` of the chunk `key` (of `len` bytes) if the store holds it, from RAM or
    /// SSD, never filling. A whole chunk read from SSD comes back into RAM.
    pub async fn get_cached(
        &self,
        key: &ChunkKey,
        len: usize,
        want: Range<usize>,
    ) -> Option<Served> {
        if let Some(hit) = self.in_ram(key, &want) {
            return Some(hit);
        }
        let log = self.log.as_ref().filter(|_| len > 0)?;
        let whole = want.start == 0 && want.end >= len;
        let read = if whole { 0..len } else { want.clone() };
        let data = log.read(key, len, read).await?;
        if whole {
            self.ram.insert(key.clone(), data.clone());
        }
        Some(Served {
            data,
            tier: Tier::Disk,
            coalesced: false,
        })
    }

    /// Bytes `want` of a chunk held in RAM (cached or pinned), never reading the SSD or
    /// filling: a caller's check before it sets up a fill.
    pub fn in_ram(&self, key: &ChunkKey, want: &Range<usize>) -> Option<Served> {
        let data = match self.ram.get(key) {
            Some(entry) => clamp(entry.value(), want),
            None => clamp(&self.inner.pins.get(key)?, want),
        };
        Some(Served {
            data,
            tier: Tier::Memory,
            coalesced: false,
        })
    }

    /// Drops a chunk from RAM and SSD (a pin stays until its deadline).
    pub fn remove(&self, key: &ChunkKey) {
        self.ram.remove(key);
        if let Some(log) = &self.log {
            log.remove(key);
        }
    }

    /// Inserts a chunk obtained elsewhere (a fill, a write, another node): into RAM, and
    /// onto SSD at once, so that a restart finds it there.
    pub fn insert(&self, key: ChunkKey, data: Bytes) {
        if let Some(log) = self.log.as_ref().filter(|l| !l.contains(&key)) {
            log.append(key.clone(), data.clone());
        }
        self.ram.insert(key, data);
    }

    /// Inserts a chunk that no restart could use (a cache-only object's, whose index lives in
    /// RAM): into RAM only. It goes to SSD when RAM lets it go, like every chunk the SSD tier
    /// does not hold, so a chunk removed or replaced while in RAM costs no SSD write.
    pub fn insert_write_back(&self, key: ChunkKey, data: Bytes) {
        self.ram.insert(key, data);
    }

    /// Whether chunks are kept on SSD.
    pub fn has_disk(&self) -> bool {
        self.log.is_some()
    }

    /// Whether the chunk is in RAM (the RAM cache or the pin table).
    pub fn in_memory(&self, key: &ChunkKey) -> bool {
        self.ram.contains(key) || self.inner.pins.contains(key)
    }

    /// Whether the chunk is in RAM or (probably) on SSD, without reading it.
    pub fn resident(&self, key: &ChunkKey) -> bool {
        self.in_memory(key) || self.log.as_ref().is_some_and(|l| l.contains(key))
    }

    /// Pins a whole chunk (`data`) in RAM until `until`: reads find it there however the RAM
    /// cache evicts, until the deadline. False when the pin table (half of `memory_bytes`) has
    /// no room; a pin already held is extended.
    pub fn pin(&self, key: ChunkKey, data: Bytes, until: std::time::Instant) -> bool {
        self.inner.pins.pin(key, data, until)
    }

    /// Pinned chunks, their bytes, and the most bytes pins may hold.
    pub fn pinned(&self) -> (u64, u64, u64) {
        let (n, bytes) = self.inner.pins.usage();
        (n, bytes, self.inner.pins.capacity())
    }

    /// Keeps a small record (e.g. object metadata) under `key`, in RAM and on SSD.
    pub fn insert_record(&self, key: ChunkKey, data: Bytes) {
        self.records.insert(record(key), Chunk::new(data));
    }

    /// Reads a record stored with [`ChunkStore::insert_record`], never filling.
    pub async fn get_record(&self, key: &ChunkKey) -> Option<Bytes> {
        match self.records.get(&record(key.clone())).await {
            Ok(Some(e)) if e.value().intact => Some(e.value().data.clone()),
            _ => None,
        }
    }

    /// Removes a record.
    pub fn remove_record(&self, key: &ChunkKey) {
        self.records.remove(&record(key.clone()));
    }

    /// Waits until every chunk queued for SSD before it is written.
    pub async fn flush(&self) {
        if let Some(log) = &self.log {
            log.flush().await;
        }
    }

    /// Flushes what is still queued for SSD and closes the store, marking its directory as
    /// closed cleanly.
    pub async fn close(&self) -> Result<(), foyer::Error> {
        if let Some(log) = &self.log {
            log.flush().await;
        }
        self.records.close().await?;
        if let Some(m) = &self.inner.clean_marker {
            if let Err(e) = std::fs::write(m, b"") {
                tracing::warn!(error = %e, "cannot mark the cache as closed cleanly");
            }
        }
        Ok(())
    }

    /// Flushes to SSD like [`ChunkStore::close`] without marking the directory as closed
    /// cleanly: what a process killed after its writes reached the SSD leaves.
    #[doc(hidden)]
    pub async fn close_without_marking(&self) {
        if let Some(log) = &self.log {
            log.flush().await;
        }
        let _ = self.records.close().await;
    }

    /// When this store was opened, if the process before it did not close it: records
    /// written before then may be ones that process removed (its removals can be lost).
    pub fn unclean_since(&self) -> Option<SystemTime> {
        self.inner.unclean_since
    }

    /// Chunks the SSD tier has written and indexed.
    #[cfg(test)]
    pub(crate) fn ssd_chunks(&self) -> usize {
        self.log.as_ref().map_or(0, ChunkLog::len)
    }

    /// Drops every chunk and record from RAM only (tests use it to exercise the SSD tier).
    #[doc(hidden)]
    pub fn clear_memory(&self) {
        self.ram.clear();
        self.records.memory().clear();
    }
}

/// Sends the chunks the RAM cache evicts to the SSD tier when it does not hold them (it
/// dropped their write, its FIFO reused their segment, or they were inserted write-back). A
/// chunk removed or replaced in RAM is not: the caller meant it gone.
struct Spill {
    log: ChunkLog,
}

impl EventListener for Spill {
    type Key = ChunkKey;
    type Value = Bytes;

    fn on_leave(&self, reason: Event, key: &ChunkKey, value: &Bytes) {
        if matches!(reason, Event::Evict | Event::Clear) && !self.log.contains(key) {
            self.log.append(key.clone(), value.clone());
        }
    }
}

/// Removes the SSD files of the layout before the chunk log (every piece in foyer's files in
/// the cache directory itself): their space belongs to the log now.
fn remove_old_layout(dir: &std::path::Path) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(OLD_LAYOUT_PREFIX)
        {
            std::fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    if removed > 0 {
        tracing::info!(
            files = removed,
            "removed the SSD cache files of the earlier layout"
        );
    }
    Ok(())
}

fn record(chunk: ChunkKey) -> PieceKey {
    PieceKey {
        chunk,
        piece: RECORD,
    }
}

/// `data[want]`, cut short where `data` is.
fn clamp(data: &Bytes, want: &Range<usize>) -> Bytes {
    let end = want.end.min(data.len());
    data.slice(want.start.min(end)..end)
}

#[cfg(test)]
mod tests;
