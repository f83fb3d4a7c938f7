//! The SSD tier's chunk log: whole chunks appended to fixed-size segment files, read back by
//! the pieces (4 KiB-aligned, one CRC32C each) a range touches.
//!
//! - **Layout.** The capacity is split into segments of [`segment_size`]; each is one file,
//!   written front to back, one record per chunk (`record.rs`: a header with the key, the
//!   length and a CRC32C per piece, then the bytes). O_DIRECT throughout: the RAM tier is
//!   ours, so the page cache would only hold a second copy.
//! - **Index.** In RAM: key → (segment, generation, offset, length, piece CRCs). A read takes
//!   it, reads only the pieces it needs (a 4 KiB range reads one piece), checks their CRCs
//!   and serves a slice of the read buffer. A piece that fails its CRC is counted, its record
//!   forgotten, and the read is a miss (the chunk is fetched again).
//! - **Writes** go through a bounded queue to one writer thread: past [`QUEUE_BYTES`] a write
//!   is dropped (counted), costing SSD hit ratio only. The writer gathers what is queued (up to
//!   [`BATCH_BYTES`]) into one write: consecutive records are contiguous in a segment. Until
//!   its record is indexed, a queued chunk is held (and read) from the queue: a chunk the RAM
//!   tier let go on its way to SSD is never absent from both. A chunk removed while queued is
//!   written but not indexed.
//! - **Eviction** is FIFO by segment: when the active segment is full, the writer moves to the
//!   next one in ring order, bumps its generation and forgets its records. A read that raced
//!   with the reuse sees the generation changed after its read and treats it as a miss.
//! - **Recovery** scans every segment's headers at open (a header is believed only with its
//!   tag, keyed with the salt in the `layout` file), stopping at the first one that does not
//!   decode or whose sequence number does not grow (stale bytes of an earlier cycle), and
//!   writes on after the newest record. A changed layout (chunk, piece or segment size,
//!   segment count) starts empty.

mod record;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::ops::Range;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use bytes::Bytes;
use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use tokio::sync::{oneshot, Semaphore};

use crate::key::ChunkKey;
use record::{aligned, Header, ALIGN};

/// Bytes of chunks queued for the writer at most; past it writes are dropped.
pub(crate) const QUEUE_BYTES: usize = 48 << 20;
/// Bytes of queued chunks the writer gathers into one write (one device round trip).
const BATCH_BYTES: usize = 8 << 20;
/// Threads reading segments: as many reads in flight at once (an NVMe device wants depth).
const READERS: usize = 16;
/// Bytes of reads in flight at most (their buffers), in units of [`READ_UNIT`].
const READ_BUDGET: usize = 16 << 20;
const READ_UNIT: usize = 64 << 10;

/// The segment size for chunks of `chunk_size`: at least 16 MiB and four chunks.
pub fn segment_size(chunk_size: usize) -> usize {
    (4 * (chunk_size + 2 * ALIGN))
        .max(16 << 20)
        .next_multiple_of(ALIGN)
}

/// Settings of a chunk log.
#[derive(Debug, Clone)]
pub(crate) struct LogConfig {
    pub dir: PathBuf,
    pub capacity: usize,
    pub chunk_size: usize,
    pub piece: usize,
}

impl LogConfig {
    pub fn segments(&self) -> usize {
        self.capacity / segment_size(self.chunk_size)
    }
}

/// The reader threads. A read is handed over a channel and its bytes come back on a
/// oneshot; a thread parks only when no read is queued, so under load a read costs no wake-up
/// (a task per read on tokio's blocking pool woke a thread, and switched to it, every time:
/// a third of a 4 KiB SSD hit's CPU).
#[derive(Clone)]
struct Readers {
    tx: crossbeam_channel::Sender<ReadJob>,
}

struct ReadJob {
    inner: Arc<Inner>,
    seg: usize,
    at: u64,
    n: usize,
    done: oneshot::Sender<std::io::Result<Bytes>>,
}

impl Readers {
    fn start(threads: usize) -> std::io::Result<Self> {
        let (tx, rx) = crossbeam_channel::unbounded::<ReadJob>();
        for i in 0..threads {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("cistern-ssd-read-{i}"))
                .spawn(move || {
                    for job in rx {
                        let (mut buf, off) = aligned(job.n);
                        let got = job.inner.segs[job.seg]
                            .file
                            .read_exact_at(&mut buf[off..off + job.n], job.at)
                            .map(|()| Bytes::from(buf).slice(off..off + job.n));
                        let _ = job.done.send(got);
                    }
                })?;
        }
        Ok(Self { tx })
    }

    /// `n` bytes at `at` of segment `seg`; `None` if the readers are gone.
    async fn read(
        &self,
        inner: Arc<Inner>,
        seg: usize,
        at: u64,
        n: usize,
    ) -> Option<std::io::Result<Bytes>> {
        let (done, got) = oneshot::channel();
        self.tx
            .send(ReadJob {
                inner,
                seg,
                at,
                n,
                done,
            })
            .ok()?;
        got.await.ok()
    }
}

/// Where a chunk lies.
#[derive(Clone)]
struct Loc {
    seg: usize,
    gen: u64,
    data_at: u64,
    len: usize,
    crcs: Arc<[u32]>,
}

struct Segment {
    file: File,
    /// Bumped when the writer reuses the segment (before its first write there).
    gen: AtomicU64,
}

struct Metrics {
    io_bytes: IntCounterVec,
    errors: IntCounterVec,
    drops: IntCounter,
    used: IntGauge,
    corrupt: IntCounter,
}

struct Inner {
    segs: Vec<Segment>,
    seg_size: usize,
    piece: usize,
    index: RwLock<HashMap<ChunkKey, Loc>>,
    /// Chunks queued for the writer, not indexed yet. Locked before `index` where both are.
    queued_chunks: Mutex<HashMap<ChunkKey, Bytes>>,
    reads: Semaphore,
    queued: AtomicUsize,
    metrics: Metrics,
}

impl Inner {
    fn queued(&self) -> MutexGuard<'_, HashMap<ChunkKey, Bytes>> {
        self.queued_chunks.lock().unwrap_or_else(|e| e.into_inner())
    }
}

enum Msg {
    Write(ChunkKey, Bytes),
    Flush(oneshot::Sender<()>),
}

/// The SSD tier (see the module docs). Cheap to clone.
#[derive(Clone)]
pub(crate) struct ChunkLog {
    inner: Arc<Inner>,
    tx: SyncSender<Msg>,
    readers: Readers,
}

/// The writer thread's state.
struct Writer {
    inner: Arc<Inner>,
    salt: [u8; 32],
    active: usize,
    at: usize,
    seq: u64,
    /// The keys written to each segment since it was last reused.
    keys: Vec<Vec<ChunkKey>>,
    filled: Vec<usize>,
}

fn lock_err<T>(_: T) -> std::io::Error {
    std::io::Error::other("chunk log index lock poisoned")
}

impl ChunkLog {
    /// Opens the log in `cfg.dir` (created if missing), recovering what it holds. Blocking.
    pub fn open(
        cfg: &LogConfig,
        registry: &Registry,
        corrupt: IntCounter,
    ) -> std::io::Result<Self> {
        let seg_size = segment_size(cfg.chunk_size);
        let n = cfg.segments();
        std::fs::create_dir_all(&cfg.dir)?;
        let layout = format!(
            "cistern chunk log 1\nchunk_size {}\npiece {}\nsegment {}\nsegments {}\n",
            cfg.chunk_size, cfg.piece, seg_size, n
        );
        let (salt, fresh) = layout_salt(&cfg.dir, &layout)?;
        let mut segs = Vec::with_capacity(n);
        for i in 0..n {
            let path = cfg.dir.join(format!("segment-{i:06}"));
            let file = open_direct(&path)?;
            if fresh || file.metadata()?.len() != seg_size as u64 {
                file.set_len(0)?;
                file.set_len(seg_size as u64)?;
            }
            segs.push(Segment {
                file,
                gen: AtomicU64::new(0),
            });
        }
        // Segments of a larger layout before this one.
        for i in n.. {
            match std::fs::remove_file(cfg.dir.join(format!("segment-{i:06}"))) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(e) => return Err(e),
            }
        }
        let metrics = Metrics::register(registry, corrupt, (n * seg_size) as i64)
            .map_err(std::io::Error::other)?;
        let inner = Arc::new(Inner {
            segs,
            seg_size,
            piece: cfg.piece,
            index: RwLock::new(HashMap::new()),
            queued_chunks: Mutex::new(HashMap::new()),
            reads: Semaphore::new(READ_BUDGET / READ_UNIT),
            queued: AtomicUsize::new(0),
            metrics,
        });
        let mut writer = Writer {
            inner: inner.clone(),
            salt,
            active: 0,
            at: 0,
            seq: 1,
            keys: vec![Vec::new(); n],
            filled: vec![0; n],
        };
        if !fresh {
            writer.recover()?;
        }
        // Bounded by bytes (`QUEUE_BYTES`) first; the count only bounds tiny chunks.
        let (tx, rx) = sync_channel(4096);
        std::thread::Builder::new()
            .name("cistern-ssd-writer".into())
            .spawn(move || writer.run(rx))?;
        Ok(Self {
            inner,
            tx,
            readers: Readers::start(READERS)?,
        })
    }

    /// Whether the log holds the chunk (written, or queued for writing).
    pub fn contains(&self, key: &ChunkKey) -> bool {
        // Queued first: the writer moves a chunk from there to the index under that lock.
        self.inner.queued().contains_key(key)
            || self
                .inner
                .index
                .read()
                .map(|i| i.contains_key(key))
                .unwrap_or(false)
    }

    /// Forgets the chunk: later reads miss. Its bytes stay until the segment is reused.
    pub fn remove(&self, key: &ChunkKey) {
        self.inner.queued().remove(key);
        if let Ok(mut index) = self.inner.index.write() {
            index.remove(key);
        }
    }

    /// Queues the chunk for writing; dropped (and counted) when the queue is full.
    pub fn append(&self, key: ChunkKey, data: Bytes) {
        let len = data.len();
        if len == 0 || self.inner.queued.fetch_add(len, Ordering::AcqRel) + len > QUEUE_BYTES {
            self.inner.queued.fetch_sub(len, Ordering::AcqRel);
            if len > 0 {
                self.inner.metrics.drops.inc();
            }
            return;
        }
        self.inner.queued().insert(key.clone(), data.clone());
        if let Err(TrySendError::Full(m) | TrySendError::Disconnected(m)) =
            self.tx.try_send(Msg::Write(key, data))
        {
            if let Msg::Write(key, _) = m {
                self.inner.queued().remove(&key);
            }
            self.inner.queued.fetch_sub(len, Ordering::AcqRel);
            self.inner.metrics.drops.inc();
        }
    }

    /// Waits until every write queued before it is on the device.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        // `send` blocks while the queue is full: off the runtime's workers.
        let tx = self.tx.clone();
        let sent = tokio::task::spawn_blocking(move || tx.send(Msg::Flush(done)).is_ok()).await;
        if matches!(sent, Ok(true)) {
            let _ = wait.await;
        }
    }

    /// Bytes `want` of the chunk `key` (of `len` bytes), reading only the pieces they touch;
    /// `None` when the log does not hold it (with that length), the read fails, the segment
    /// was reused under the read, or a piece fails its CRC32C (then the record is forgotten).
    pub async fn read(&self, key: &ChunkKey, len: usize, want: Range<usize>) -> Option<Bytes> {
        let inner = &self.inner;
        if want.start >= want.end || want.end > len {
            return None;
        }
        let queued = inner.queued().get(key).cloned();
        if let Some(data) = queued {
            return (data.len() == len).then(|| data.slice(want));
        }
        let loc = inner.index.read().ok()?.get(key).cloned()?;
        if loc.len != len {
            return None;
        }
        let span = record::piece_span(&want, len, inner.piece);
        let units = span.len().div_ceil(READ_UNIT).min(READ_BUDGET / READ_UNIT) as u32;
        let _budget = inner.reads.acquire_many(units).await.ok()?;
        let (seg, at, n) = (loc.seg, loc.data_at + span.start as u64, span.len());
        let bytes = match self.readers.read(inner.clone(), seg, at, n).await {
            Some(Ok(b)) => b,
            Some(Err(e)) => {
                inner.metrics.errors.with_label_values(&["read"]).inc();
                tracing::warn!(error = %e, "ssd cache read failed, treating as a miss");
                return None;
            }
            None => return None,
        };
        inner
            .metrics
            .io_bytes
            .with_label_values(&["read"])
            .inc_by(n as u64);
        if inner.segs[loc.seg].gen.load(Ordering::Acquire) != loc.gen {
            return None;
        }
        if let Err(piece) = record::verify(&bytes, &span, len, &loc.crcs, inner.piece) {
            inner.metrics.corrupt.inc();
            tracing::warn!(key = ?key, piece, "corrupt chunk piece on ssd, dropping and refetching");
            if let Ok(mut index) = inner.index.write() {
                if index.get(key).is_some_and(|l| {
                    l.seg == loc.seg && l.gen == loc.gen && l.data_at == loc.data_at
                }) {
                    index.remove(key);
                }
            }
            return None;
        }
        Some(bytes.slice(want.start - span.start..want.end - span.start))
    }
}

impl Metrics {
    fn register(
        registry: &Registry,
        corrupt: IntCounter,
        capacity: i64,
    ) -> prometheus::Result<Self> {
        let io_bytes = IntCounterVec::new(
            Opts::new(
                "cistern_ssd_io_bytes_total",
                "Bytes read from and written to the SSD tier",
            ),
            &["op"],
        )?;
        let errors = IntCounterVec::new(
            Opts::new(
                "cistern_ssd_errors_total",
                "SSD tier reads and writes that failed (a read is then a miss, a write is lost)",
            ),
            &["op"],
        )?;
        let drops = IntCounter::new(
            "cistern_ssd_write_drops_total",
            "Chunks not written to the SSD tier because its write queue was full",
        )?;
        let used = IntGauge::new(
            "cistern_ssd_used_bytes",
            "Bytes of the SSD tier's segments holding chunks",
        )?;
        let cap = IntGauge::new(
            "cistern_ssd_capacity_bytes",
            "The SSD tier's capacity for chunks",
        )?;
        cap.set(capacity);
        // Exported at zero from the start, so that rates and alerts have a series.
        for op in ["read", "write"] {
            io_bytes.with_label_values(&[op]);
            errors.with_label_values(&[op]);
        }
        registry.register(Box::new(io_bytes.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(drops.clone()))?;
        registry.register(Box::new(used.clone()))?;
        registry.register(Box::new(cap))?;
        Ok(Self {
            io_bytes,
            errors,
            drops,
            used,
            corrupt,
        })
    }
}

impl Writer {
    fn run(mut self, rx: Receiver<Msg>) {
        let mut next: Option<Msg> = None;
        loop {
            let msg = match next.take() {
                Some(m) => m,
                None => match rx.recv() {
                    Ok(m) => m,
                    Err(_) => break,
                },
            };
            match msg {
                Msg::Write(key, data) => {
                    // What else is queued goes out with it, in one write: consecutive records
                    // are contiguous in the segment, and a write costs a device round trip.
                    let mut bytes = data.len();
                    let mut batch = vec![(key, data)];
                    while bytes < BATCH_BYTES {
                        match rx.try_recv() {
                            Ok(Msg::Write(k, d)) => {
                                bytes += d.len();
                                batch.push((k, d));
                            }
                            Ok(other) => {
                                next = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    self.write_batch(batch);
                    self.inner.queued.fetch_sub(bytes, Ordering::AcqRel);
                }
                Msg::Flush(done) => {
                    for s in &self.inner.segs {
                        let _ = s.file.sync_data();
                    }
                    let _ = done.send(());
                }
            }
        }
    }

    /// Writes records for `batch`, as few writes as the active segment allows.
    fn write_batch(&mut self, batch: Vec<(ChunkKey, Bytes)>) {
        let inner = self.inner.clone();
        let mut group: Vec<(ChunkKey, Bytes, record::Plan)> = Vec::new();
        let mut group_total = 0;
        for (key, data) in batch {
            let Some(plan) =
                record::plan(&key, data.len(), inner.piece).filter(|p| p.total <= inner.seg_size)
            else {
                inner.metrics.errors.with_label_values(&["write"]).inc();
                inner.queued().remove(&key);
                continue;
            };
            if self.at + group_total + plan.total > inner.seg_size {
                self.write_group(std::mem::take(&mut group));
                group_total = 0;
                if self.at + plan.total > inner.seg_size {
                    self.advance();
                }
            }
            group_total += plan.total;
            group.push((key, data, plan));
        }
        self.write_group(group);
    }

    /// Writes consecutive records at the active segment's end in one write, then indexes them.
    fn write_group(&mut self, group: Vec<(ChunkKey, Bytes, record::Plan)>) {
        if group.is_empty() {
            return;
        }
        let inner = self.inner.clone();
        let total: usize = group.iter().map(|(_, _, p)| p.total).sum();
        // Appended, not zeroed first: only the records' padding is written twice.
        let (mut buf, off) = record::aligned_empty(total);
        let mut placed = Vec::with_capacity(group.len());
        for (i, (_, data, plan)) in group.iter().enumerate() {
            let rel = buf.len() - off;
            let crcs = record::encode_append(
                plan,
                &mut buf,
                self.seq + i as u64,
                data,
                inner.piece,
                &self.salt,
            );
            placed.push((rel + plan.size, crcs));
        }
        debug_assert!(
            (buf[off..].as_ptr() as usize).is_multiple_of(ALIGN),
            "moved"
        );
        let seg = &inner.segs[self.active];
        if let Err(e) = seg.file.write_all_at(&buf[off..], self.at as u64) {
            inner.metrics.errors.with_label_values(&["write"]).inc();
            tracing::warn!(error = %e, "ssd cache write failed; these chunks are not kept on SSD");
            let mut queued = inner.queued();
            for (key, _, _) in &group {
                queued.remove(key);
            }
            // What was written of them is past `at`: the next records overwrite it.
            return;
        }
        let gen = seg.gen.load(Ordering::Acquire);
        {
            let mut queued = inner.queued();
            let mut index = inner.index.write().unwrap_or_else(|e| e.into_inner());
            for ((key, data, _), (data_rel, crcs)) in group.iter().zip(placed) {
                // Removed while it was queued: written, never to be read.
                if queued.remove(key).is_none() {
                    continue;
                }
                let loc = Loc {
                    seg: self.active,
                    gen,
                    data_at: (self.at + data_rel) as u64,
                    len: data.len(),
                    crcs: crcs.into(),
                };
                index.insert(key.clone(), loc);
            }
        }
        let n = group.len();
        self.keys[self.active].extend(group.into_iter().map(|(k, _, _)| k));
        self.at += total;
        self.seq += n as u64;
        self.fill(self.at);
        inner
            .metrics
            .io_bytes
            .with_label_values(&["write"])
            .inc_by(total as u64);
    }

    fn fill(&mut self, at: usize) {
        self.filled[self.active] = at;
        self.inner
            .metrics
            .used
            .set(self.filled.iter().sum::<usize>() as i64);
    }

    /// Moves to the next segment in ring order, forgetting what it held.
    fn advance(&mut self) {
        self.active = (self.active + 1) % self.inner.segs.len();
        self.at = 0;
        let old = self.inner.segs[self.active]
            .gen
            .fetch_add(1, Ordering::AcqRel);
        let keys = std::mem::take(&mut self.keys[self.active]);
        if let Ok(mut index) = self.inner.index.write() {
            for k in keys {
                if index
                    .get(&k)
                    .is_some_and(|l| l.seg == self.active && l.gen == old)
                {
                    index.remove(&k);
                }
            }
        }
        self.fill(0);
    }

    /// Rebuilds the index from the segments' headers and continues after the newest record.
    fn recover(&mut self) -> std::io::Result<()> {
        let inner = self.inner.clone();
        let mut found: Vec<(u64, usize, usize, Header)> = Vec::new();
        let mut last: Option<(u64, usize, usize)> = None; // (seq, segment, end)
        for (i, seg) in inner.segs.iter().enumerate() {
            let mut at = 0;
            let mut prev = 0;
            while at + ALIGN <= inner.seg_size {
                let Some(h) = read_header(&seg.file, at, inner.seg_size, &self.salt)? else {
                    break;
                };
                if h.seq <= prev || h.piece != inner.piece || at + h.span() > inner.seg_size {
                    break;
                }
                prev = h.seq;
                let end = at + h.span();
                if last.is_none_or(|(s, _, _)| h.seq > s) {
                    last = Some((h.seq, i, end));
                }
                found.push((h.seq, i, at, h));
                at = end;
            }
            self.filled[i] = at;
        }
        found.sort_by_key(|(seq, ..)| *seq);
        let mut index = inner.index.write().map_err(lock_err)?;
        for (_, seg, at, h) in found {
            self.keys[seg].push(h.key.clone());
            index.insert(
                h.key,
                Loc {
                    seg,
                    gen: 0,
                    data_at: (at + h.size) as u64,
                    len: h.len,
                    crcs: h.crcs.into(),
                },
            );
        }
        if let Some((seq, seg, end)) = last {
            self.seq = seq + 1;
            self.active = seg;
            self.at = end;
        }
        inner
            .metrics
            .used
            .set(self.filled.iter().sum::<usize>() as i64);
        tracing::info!(chunks = index.len(), "ssd cache recovered");
        Ok(())
    }
}

/// The header of the record at `at`, if one is there.
fn read_header(
    file: &File,
    at: usize,
    seg_size: usize,
    salt: &[u8; 32],
) -> std::io::Result<Option<Header>> {
    let (mut buf, off) = aligned(ALIGN);
    file.read_exact_at(&mut buf[off..off + ALIGN], at as u64)?;
    let Some(need) = record::needed(&buf[off..off + ALIGN]) else {
        return Ok(None);
    };
    if at + need > seg_size {
        return Ok(None);
    }
    if need == ALIGN {
        return Ok(record::decode(&buf[off..off + ALIGN], salt));
    }
    let (mut big, off) = aligned(need);
    file.read_exact_at(&mut big[off..off + need], at as u64)?;
    Ok(record::decode(&big[off..off + need], salt))
}

/// Opens a segment file for O_DIRECT reads and writes (buffered where the filesystem refuses
/// O_DIRECT, e.g. tmpfs).
fn open_direct(path: &Path) -> std::io::Result<File> {
    let mut o = OpenOptions::new();
    o.read(true).write(true).create(true).truncate(false);
    match o.clone().custom_flags(libc::O_DIRECT).open(path) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            tracing::warn!(path = %path.display(), "O_DIRECT refused; the SSD cache goes through the page cache");
            o.open(path)
        }
        r => r,
    }
}

/// The log's salt, from its `layout` file when that matches `layout`; otherwise a new salt
/// and layout file, and `true` (the segments are to be started empty).
fn layout_salt(dir: &Path, layout: &str) -> std::io::Result<([u8; 32], bool)> {
    let path = dir.join("layout");
    if let Ok(text) = std::fs::read_to_string(&path) {
        if let Some(rest) = text.strip_prefix(layout) {
            if let Some(salt) = rest
                .trim()
                .strip_prefix("salt ")
                .and_then(|h| hex_salt(h.trim()))
            {
                return Ok((salt, false));
            }
        }
    }
    let mut salt = [0u8; 32];
    getrandom::getrandom(&mut salt).map_err(|e| std::io::Error::other(e.to_string()))?;
    let hex: String = salt.iter().map(|b| format!("{b:02x}")).collect();
    // Written before any segment is: a crash leaves the new layout with empty segments.
    let tmp = dir.join("layout.tmp");
    std::fs::write(&tmp, format!("{layout}salt {hex}\n"))?;
    File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    Ok((salt, true))
}

fn hex_salt(h: &str) -> Option<[u8; 32]> {
    if h.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(h.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
impl ChunkLog {
    pub(crate) fn read_bytes(&self) -> u64 {
        self.inner
            .metrics
            .io_bytes
            .with_label_values(&["read"])
            .get()
    }

    pub(crate) fn len(&self) -> usize {
        self.inner.index.read().map(|i| i.len()).unwrap_or(0)
    }
}
