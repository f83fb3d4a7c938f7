//! The chunk store: a foyer hybrid cache (RAM + SSD) with single-flight fill.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use std::ops::Range;

use tokio::sync::Semaphore;

use bytes::{Bytes, BytesMut};
use foyer::{
    BlockEngineConfig, Cache, CacheBuilder, DeviceBuilder, FsDeviceBuilder, HybridCache,
    HybridCacheBuilder, HybridCachePolicy, Load, PsyncIoEngineConfig, RecoverMode,
};
use mixtrics::registry::prometheus_0_14::PrometheusMetricsRegistry;
use prometheus::{IntCounter, Registry};

use crate::flight::SingleFlight;
use crate::key::{Chunk, ChunkKey, PieceKey};
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
    /// RAM capacity in bytes: whole chunks, plus a small share for SSD pieces read back.
    pub memory_bytes: usize,
    /// SSD cache capacity in bytes.
    pub disk_bytes: usize,
    /// Chunk size in bytes.
    pub chunk_size: usize,
    /// The unit chunks are stored on SSD in (a multiple of 4 KiB, at most `chunk_size`): an
    /// SSD hit reads only the pieces the wanted range touches.
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
/// RAM holds whole chunks (a memory hit is one lookup and a zero-copy slice). The SSD holds
/// each chunk as pieces of `piece_size`, written once when the chunk is filled, so an SSD hit
/// reads only the pieces its range touches (a 4 KiB read costs one piece, not the chunk).
/// A read of a whole chunk from SSD brings it back into RAM; pieces read for a part of a
/// chunk are kept in a small piece cache (the hybrid cache's own RAM tier).
#[derive(Clone)]
pub struct ChunkStore {
    ram: Cache<ChunkKey, Bytes>,
    /// SSD pieces (and metadata records); RAM-only when no disk is configured, then holding
    /// records only.
    pieces: HybridCache<PieceKey, Chunk>,
    inner: Arc<Inner>,
}

struct Inner {
    corrupt: IntCounter,
    piece_size: usize,
    disk: bool,
    /// SSD reads in flight at once. Each holds two piece-sized buffers (the aligned read and
    /// the decoded piece): unbounded, 256 concurrent 4 KiB misses held 128 MiB.
    reads: Semaphore,
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

/// The SSD tier's block (foyer's unit of writing and eviction) for pieces of `piece_size`.
fn block_size(piece_size: usize) -> usize {
    (16 << 20)
        .max(piece_size * 2 + 64 * 1024)
        .next_multiple_of(4096)
}

/// The files the SSD tier keeps open for `disk_bytes` (foyer's directory device holds one
/// file per block).
pub fn ssd_files(disk_bytes: usize, piece_size: usize) -> usize {
    disk_bytes / block_size(piece_size)
}

/// SSD piece reads in flight at once: deep enough to keep an NVMe device busy.
const SSD_READS_IN_FLIGHT: usize = 32;

impl ChunkStore {
    /// Opens (and, with a disk directory, recovers) the store. foyer's metrics and the
    /// store's own are registered in `registry`.
    ///
    /// Policy: `WriteOnInsertion` — a chunk's pieces are written to SSD once, when it is
    /// filled, so a crash keeps what was fetched. Memory hits never touch the storage engine.
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
        // The piece cache: SSD pieces read back for part of a chunk, and metadata records.
        let piece_memory = if disk {
            (memory / 16).clamp(cfg.piece_size * 4, 256 << 20)
        } else {
            (memory / 32).clamp(1 << 20, 16 << 20)
        }
        .min(memory / 2)
        .max(1);
        let ram = CacheBuilder::new((memory - piece_memory).max(cfg.chunk_size * 2))
            .with_name("cistern-ram")
            .with_shards(8)
            .with_weighter(|_k: &ChunkKey, v: &Bytes| v.len() + 128)
            .with_metrics_registry(Box::new(foyer_metrics.clone()))
            .build();

        let builder = HybridCacheBuilder::new()
            .with_name("cistern")
            .with_policy(HybridCachePolicy::WriteOnInsertion)
            .with_flush_on_close(true)
            .with_metrics_registry(Box::new(foyer_metrics))
            .memory(piece_memory)
            // Shards split the capacity: each must hold a few pieces.
            .with_shards((piece_memory / (cfg.piece_size * 4)).clamp(1, 8))
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
        let pieces = match &cfg.dir {
            Some(dir) if disk => {
                // A block holds many pieces; an entry must fit in a block minus 4 KiB. The
                // write buffer is one block and up to two more queue, so blocks are kept
                // small (16 MiB): that memory is outside the RAM cache.
                let block = block_size(cfg.piece_size);
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
            ram,
            pieces,
            inner: Arc::new(Inner {
                corrupt,
                piece_size: cfg.piece_size,
                disk,
                reads: Semaphore::new(SSD_READS_IN_FLIGHT),
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
        if let Some(entry) = self.ram.get(&key) {
            return Ok(Served {
                data: clamp(entry.value(), &want),
                tier: Tier::Memory,
                coalesced: false,
            });
        }
        if let Some(data) = self.inner.pins.get(&key) {
            return Ok(Served {
                data: clamp(&data, &want),
                tier: Tier::Memory,
                coalesced: false,
            });
        }
        let whole = want.start == 0 && want.end >= len;
        if self.inner.disk && !whole && !want.is_empty() {
            if let Some(data) = self.read_pieces(&key, len, want.clone()).await {
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
                    if this.inner.disk && len > 0 {
                        if let Some(data) = this.read_pieces(&task_key, len, 0..len).await {
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

    /// Reads bytes `want` of a chunk of `len` bytes from its SSD pieces; `None` when a piece
    /// is missing, unreadable or corrupt (a corrupt piece is removed).
    async fn read_pieces(&self, key: &ChunkKey, len: usize, want: Range<usize>) -> Option<Bytes> {
        let p = self.inner.piece_size;
        let (first, last) = (want.start / p, (want.end - 1) / p);
        let piece_key = |i: usize| PieceKey {
            chunk: key.clone(),
            piece: i as u32,
        };
        // Cheap index checks first, so that a miss costs no read.
        let storage = self.pieces.storage();
        if !(first..=last).all(|i| {
            let k = piece_key(i);
            self.pieces.memory().contains(&k) || storage.may_contains(&k)
        }) {
            return None;
        }
        // One piece goes through the piece cache (small reads of one piece repeat); several
        // are read straight from SSD, as they are copied into one buffer below.
        let single = first == last;
        let reads = (first..=last).map(|i| {
            let k = piece_key(i);
            async move {
                let _reading = self.inner.reads.acquire().await;
                let got = if single {
                    self.pieces
                        .get(&k)
                        .await
                        .map(|e| e.map(|e| e.value().clone()))
                } else if let Some(e) = self.pieces.memory().get(&k) {
                    Ok(Some(e.value().clone()))
                } else {
                    match self.pieces.storage().load(&k).await {
                        Ok(Load::Entry { value, .. }) => Ok(Some(value)),
                        Ok(Load::Piece { piece, .. }) => Ok(Some(piece.value().clone())),
                        Ok(_) => Ok(None),
                        Err(e) => Err(e),
                    }
                };
                (got, k)
            }
        });
        let mut parts = Vec::with_capacity(last - first + 1);
        for (i, (got, k)) in (first..).zip(futures::future::join_all(reads).await) {
            let expected = ((i + 1) * p).min(len).saturating_sub(i * p);
            match got {
                Ok(Some(c)) if c.intact && c.data.len() == expected => parts.push(c.data),
                Ok(Some(c)) => {
                    if c.intact {
                        tracing::warn!(key = ?key, piece = i, "chunk piece of the wrong length on ssd, dropping");
                    } else {
                        self.inner.corrupt.inc();
                        tracing::warn!(key = ?key, piece = i, "corrupt chunk piece on ssd, dropping and refetching");
                    }
                    self.pieces.remove(&k);
                    return None;
                }
                Ok(None) => return None,
                Err(e) => {
                    tracing::warn!(error = %e, "ssd cache read failed, treating as a miss");
                    return None;
                }
            }
        }
        let base = first * p;
        if let [one] = parts.as_slice() {
            return Some(one.slice(want.start - base..(want.end - base).min(one.len())));
        }
        let mut out = BytesMut::with_capacity(want.len());
        let mut at = base;
        for part in &parts {
            let from = want.start.max(at) - at;
            let to = want.end.min(at + part.len()) - at;
            out.extend_from_slice(&part[from..to]);
            at += part.len();
        }
        Some(out.freeze())
    }

    /// Inserts a chunk obtained elsewhere (a fill, a write, another node): into RAM, and its
    /// pieces onto SSD.
    pub fn insert(&self, key: ChunkKey, data: Bytes) {
        if self.inner.disk {
            let p = self.inner.piece_size;
            for (i, start) in (0..data.len()).step_by(p).enumerate() {
                let piece = data.slice(start..(start + p).min(data.len()));
                // Straight to SSD: the RAM copy is the whole chunk below.
                self.pieces
                    .storage_writer(PieceKey {
                        chunk: key.clone(),
                        piece: i as u32,
                    })
                    .insert(Chunk::new(piece));
            }
        }
        self.ram.insert(key, data);
    }

    /// Whether chunks are kept on SSD (as pieces).
    pub fn has_disk(&self) -> bool {
        self.inner.disk
    }

    /// Whether the chunk is in RAM (the RAM cache or the pin table).
    pub fn in_memory(&self, key: &ChunkKey) -> bool {
        self.ram.contains(key) || self.inner.pins.contains(key)
    }

    /// Whether the chunk is in RAM or (probably) on SSD, without reading it.
    pub fn resident(&self, key: &ChunkKey) -> bool {
        self.in_memory(key)
            || (self.inner.disk
                && self.pieces.storage().may_contains(&PieceKey {
                    chunk: key.clone(),
                    piece: 0,
                }))
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
        self.pieces.insert(record(key), Chunk::new(data));
    }

    /// Reads a record stored with [`ChunkStore::insert_record`], never filling.
    pub async fn get_record(&self, key: &ChunkKey) -> Option<Bytes> {
        match self.pieces.get(&record(key.clone())).await {
            Ok(Some(e)) if e.value().intact => Some(e.value().data.clone()),
            _ => None,
        }
    }

    /// Removes a record.
    pub fn remove_record(&self, key: &ChunkKey) {
        self.pieces.remove(&record(key.clone()));
    }

    /// Flushes what is still queued for SSD and closes the store, marking its directory as
    /// closed cleanly.
    pub async fn close(&self) -> Result<(), foyer::Error> {
        self.pieces.close().await?;
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
        let _ = self.pieces.close().await;
    }

    /// When this store was opened, if the process before it did not close it: records
    /// written before then may be ones that process removed (its removals can be lost).
    pub fn unclean_since(&self) -> Option<SystemTime> {
        self.inner.unclean_since
    }

    /// Drops every chunk and piece from RAM only (tests use it to exercise the SSD tier).
    #[doc(hidden)]
    pub fn clear_memory(&self) {
        self.ram.clear();
        self.pieces.memory().clear();
    }
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
                piece_size: 64 << 10,
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
                        .get_or_fill(flight, key(0), 1 << 20, 0..1 << 20, move || async move {
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
                .get_or_fill(&flight, key(0), 1 << 20, 0..1 << 20, || async {
                    Err::<Bytes, _>("must not fill".to_string())
                })
                .await
                .expect("memory hit");
            assert_eq!(hit.tier, Tier::Memory);
            store.close().await.expect("close");
        }
        let store = open(dir.path()).await;
        let hit = store
            .get_or_fill(&flight, key(0), 1 << 20, 0..1 << 20, || async {
                Err::<Bytes, _>("must not fill".to_string())
            })
            .await
            .expect("disk hit after restart");
        assert_eq!(hit.tier, Tier::Disk);
        assert_eq!(hit.data, data);
        store.close().await.expect("close");
    }

    #[tokio::test]
    async fn an_ssd_hit_reads_only_the_pieces_its_range_touches() {
        let dir = tempfile::tempdir().expect("tempdir");
        let flight = SingleFlight::default();
        let data = Bytes::from(
            (0..(1 << 20))
                .map(|i: u32| (i % 253) as u8)
                .collect::<Vec<u8>>(),
        );
        {
            let store = open(dir.path()).await;
            let d = data.clone();
            store
                .get_or_fill(&flight, key(3), 1 << 20, 0..1 << 20, move || async move {
                    Ok::<_, String>(d)
                })
                .await
                .expect("fill");
            store.close().await.expect("close");
        }
        let store = open(dir.path()).await;
        let never = || async { Err::<Bytes, _>("must not fill".to_string()) };
        // Within one 64 KiB piece, and across three pieces.
        for want in [300_000..304_096, 60_000..200_000] {
            let got = store
                .get_or_fill(&flight, key(3), 1 << 20, want.clone(), never)
                .await
                .expect("ssd hit");
            assert_eq!(got.tier, Tier::Disk);
            assert_eq!(got.data, data.slice(want));
        }
        assert!(
            !store.ram.contains(&key(3)),
            "a partial read does not bring the whole chunk into RAM"
        );
        assert!(
            store.pieces.memory().usage() < 512 << 10,
            "only the touched pieces were read: {} bytes",
            store.pieces.memory().usage()
        );
        // A whole-chunk read assembles every piece and brings the chunk back into RAM.
        let whole = store
            .get_or_fill(&flight, key(3), 1 << 20, 0..1 << 20, never)
            .await
            .expect("ssd hit");
        assert_eq!((whole.tier, whole.data), (Tier::Disk, data.clone()));
        let again = store
            .get_or_fill(&flight, key(3), 1 << 20, 5..9, never)
            .await
            .expect("memory hit");
        assert_eq!((again.tier, again.data), (Tier::Memory, data.slice(5..9)));
        store.close().await.expect("close");
    }

    #[tokio::test]
    async fn a_pinned_chunk_is_served_after_the_ram_cache_lets_it_go() {
        let flight = SingleFlight::default();
        let store = ChunkStore::open(
            &StoreConfig {
                dir: None,
                memory_bytes: 8 << 20,
                disk_bytes: 0,
                chunk_size: 1 << 20,
                piece_size: 64 << 10,
            },
            &Registry::new(),
        )
        .await
        .expect("open");
        let data = Bytes::from(vec![5u8; 1 << 20]);
        let later = std::time::Instant::now() + std::time::Duration::from_secs(60);
        store.insert(key(0), data.clone());
        store.insert(key(1), data.clone());
        assert!(store.pin(key(0), data.clone(), later));
        assert!(
            !store.pin(key(2), Bytes::from(vec![0u8; 4 << 20]), later),
            "past half of RAM"
        );
        store.clear_memory();
        assert!(store.in_memory(&key(0)) && !store.in_memory(&key(1)));
        let never = || async { Err::<Bytes, _>("must not fill".to_string()) };
        let got = store
            .get_or_fill(&flight, key(0), 1 << 20, 10..20, never)
            .await
            .expect("pinned");
        assert_eq!((got.tier, got.data), (Tier::Memory, data.slice(10..20)));
        assert_eq!(store.pinned(), (1, 1 << 20, 4 << 20));
    }

    #[tokio::test]
    async fn a_bad_piece_size_is_refused() {
        for piece_size in [0, 1000, 2 << 20] {
            let cfg = StoreConfig {
                dir: None,
                memory_bytes: 8 << 20,
                disk_bytes: 0,
                chunk_size: 1 << 20,
                piece_size,
            };
            assert!(matches!(
                ChunkStore::open(&cfg, &Registry::new()).await,
                Err(OpenError::BadPiece { .. })
            ));
        }
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
                .get_or_fill(&flight, key(9), 1 << 20, 0..1 << 20, move || async move {
                    Ok::<_, String>(d)
                })
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
            .get_or_fill(&flight, key(9), 1 << 20, 0..1 << 20, move || async move {
                Ok::<_, String>(fresh)
            })
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
                piece_size: 64 << 10,
            },
            &Registry::new(),
        )
        .await
        .expect("open");
        let err = store
            .get_or_fill(&flight, key(1), 1, 0..1, || async {
                Err::<Bytes, _>("origin down".to_string())
            })
            .await
            .expect_err("error");
        assert_eq!(err, "origin down");
        let ok = store
            .get_or_fill(&flight, key(1), 1, 0..1, || async {
                Ok::<_, String>(Bytes::from_static(b"x"))
            })
            .await
            .expect("second try fills");
        assert_eq!(ok.tier, Tier::Origin);
    }
}
