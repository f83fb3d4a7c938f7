//! Warm-up jobs: list a bucket's prefix at the origin and warm every object through the
//! pipeline ([`Pipeline::warm`]), a few at a time, keeping the progress an operator watches
//! and a checkpoint to resume from.
//!
//! Resume is by checkpoint: each job appends one line per finished object (key, the ETag its
//! listing showed, size) to `<cache dir>/warm/<id>.jsonl`. Resuming a job lists the prefix
//! again and skips, without any request, every object whose key and ETag are in the
//! checkpoint — nothing done is asked of the origin or the cache nodes again, even after a
//! restart. An object that changed since (another ETag) is warmed again. A *new* job over the
//! same prefix checks everything instead: cached chunks cost no origin request, chunks evicted
//! since are filled again.

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt as _;
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind};
use crate::origin::{ListCursor, ListQuery};
use crate::pipeline::{BucketBinding, Pipeline, Warmed};

/// Failures listed per job (the count goes on beyond).
const MAX_FAILURES: usize = 1000;

/// The most objects warmed at once by one job.
pub const MAX_CONCURRENCY: usize = 256;

/// What a job warms.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct WarmSpec {
    /// The bucket (container), as Cistern exposes it.
    pub bucket: String,
    /// Only keys starting with this.
    pub prefix: String,
    /// Keep warmed chunks from eviction this long (seconds).
    pub pin_seconds: Option<u64>,
    /// Objects warmed at once.
    pub concurrency: usize,
}

/// A job's state.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Listing and warming.
    Running,
    /// Every listed object was tried (some may have failed: see `objects_failed`).
    Done,
    /// Cancelled by an operator; resumable.
    Cancelled,
    /// Found in a checkpoint at start-up, unfinished (the process stopped); resumable.
    Interrupted,
    /// The listing itself failed (see `error`); resumable.
    Failed,
}

/// One object that could not be warmed.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Failure {
    /// Its key.
    pub key: String,
    /// Why (an error kind and message).
    pub reason: String,
}

/// A job's counters: pure bookkeeping, updated as objects are listed and warmed.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Progress {
    /// Objects listed so far (all of them once `listing_complete`).
    pub objects_total: u64,
    /// Objects warmed, or skipped as done by an earlier run.
    pub objects_done: u64,
    /// Of those, skipped (in the checkpoint).
    pub objects_skipped: u64,
    /// Objects that could not be warmed.
    pub objects_failed: u64,
    /// Bytes listed so far.
    pub bytes_total: u64,
    /// Bytes of objects done.
    pub bytes_done: u64,
    /// Bytes of objects that failed.
    pub bytes_failed: u64,
    /// Bytes filled from the origin by this run.
    pub bytes_fetched: u64,
    /// Bytes found cached already by this run.
    pub bytes_cached: u64,
    /// Chunks pinned by this run.
    pub chunks_pinned: u64,
    /// Whether the listing has ended.
    pub listing_complete: bool,
    /// Failures, up to a thousand.
    pub failures: Vec<Failure>,
}

impl Progress {
    /// An object listed.
    pub fn listed(&mut self, size: u64) {
        self.objects_total += 1;
        self.bytes_total += size;
    }

    /// A listed object skipped: the checkpoint has it.
    pub fn skipped(&mut self, size: u64) {
        self.objects_done += 1;
        self.objects_skipped += 1;
        self.bytes_done += size;
    }

    /// A listed object (of `listed_size` bytes in the listing) warmed.
    pub fn warmed(&mut self, listed_size: u64, w: &Warmed) {
        self.objects_done += 1;
        self.bytes_done += listed_size;
        self.bytes_fetched += w.fetched_bytes;
        self.bytes_cached += w.cached_bytes;
        self.chunks_pinned += w.pinned_chunks;
    }

    /// A listed object that could not be warmed.
    pub fn failed(&mut self, key: &str, listed_size: u64, reason: String) {
        self.objects_failed += 1;
        self.bytes_failed += listed_size;
        if self.failures.len() < MAX_FAILURES {
            self.failures.push(Failure {
                key: key.to_string(),
                reason,
            });
        }
    }

    /// Bytes per second over `elapsed` (skipped objects excluded: they took no time).
    pub fn rate(&self, elapsed: Duration, skipped_bytes: u64) -> f64 {
        let secs = elapsed.as_secs_f64();
        if secs <= 0.0 {
            return 0.0;
        }
        self.bytes_done.saturating_sub(skipped_bytes) as f64 / secs
    }

    /// Seconds left at `rate`, once the listing is complete (before, the total is unknown).
    pub fn eta(&self, rate: f64) -> Option<f64> {
        if !self.listing_complete {
            return None;
        }
        let left = self
            .bytes_total
            .saturating_sub(self.bytes_done + self.bytes_failed);
        if left == 0 {
            return Some(0.0);
        }
        (rate > 0.0).then(|| left as f64 / rate)
    }
}

/// A job as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct JobView {
    /// Its id.
    pub id: String,
    /// What it warms.
    #[serde(flatten)]
    pub spec: WarmSpec,
    /// Its state.
    pub state: State,
    /// When the current run started (Unix seconds).
    pub started: u64,
    /// Seconds the current run has taken.
    pub elapsed_seconds: f64,
    /// Bytes per second (objects warmed by this run).
    pub rate_bytes_per_second: f64,
    /// Seconds left, once the listing is complete.
    pub eta_seconds: Option<f64>,
    /// Whether the job keeps a checkpoint (resumable).
    pub checkpoint: bool,
    /// Why the job failed, when its listing did.
    pub error: Option<String>,
    /// Counters and failures.
    #[serde(flatten)]
    pub progress: Progress,
}

/// One run of a job.
pub struct Job {
    id: String,
    spec: WarmSpec,
    started_at: SystemTime,
    started: Instant,
    inner: Mutex<JobInner>,
    cancel: AtomicBool,
    checkpoint: Option<Mutex<std::fs::File>>,
    /// Bytes of objects skipped as done (for the rate).
    skipped_bytes: AtomicU64,
}

struct JobInner {
    state: State,
    progress: Progress,
    finished: Option<Instant>,
    error: Option<String>,
}

impl Job {
    fn lock(&self) -> std::sync::MutexGuard<'_, JobInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What the admin API shows.
    pub fn view(&self) -> JobView {
        let i = self.lock();
        let elapsed = i.finished.unwrap_or_else(Instant::now) - self.started;
        let rate = i
            .progress
            .rate(elapsed, self.skipped_bytes.load(Ordering::Relaxed));
        JobView {
            id: self.id.clone(),
            spec: self.spec.clone(),
            state: i.state,
            started: self
                .started_at
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            elapsed_seconds: elapsed.as_secs_f64(),
            rate_bytes_per_second: rate,
            eta_seconds: match i.state {
                State::Running => i.progress.eta(rate),
                _ => None,
            },
            checkpoint: self.checkpoint.is_some(),
            error: i.error.clone(),
            progress: i.progress.clone(),
        }
    }

    fn record_done(&self, key: &str, etag: &str, size: u64) {
        let Some(f) = &self.checkpoint else { return };
        let line = serde_json::json!({ "k": key, "e": etag, "s": size }).to_string() + "\n";
        let mut f = f.lock().unwrap_or_else(|e| e.into_inner());
        // One small append (page cache; no fsync: a crash may lose the last few lines, which
        // only means those objects are checked again).
        if let Err(e) = f.write_all(line.as_bytes()) {
            tracing::warn!(job = %self.id, error = %e, "cannot write the warm-up checkpoint");
        }
    }

    fn record_end(&self) {
        if let Some(f) = &self.checkpoint {
            let mut f = f.lock().unwrap_or_else(|e| e.into_inner());
            let _ = f.write_all(b"{\"end\":true}\n");
        }
    }

    /// Whether the job is running.
    pub fn running(&self) -> bool {
        self.lock().state == State::Running
    }
}

/// Why a job could not be started or found.
#[derive(Debug)]
pub enum JobError {
    /// No such job.
    Unknown,
    /// The job is running (it cannot be resumed).
    Running,
    /// The request is invalid (bucket, prefix, concurrency).
    Invalid(Error),
}

/// Every warm-up job of this process (and those found in checkpoints at start-up).
pub struct Jobs {
    pipeline: Arc<Pipeline>,
    dir: Option<PathBuf>,
    jobs: Mutex<BTreeMap<String, Arc<Job>>>,
}

static JOB_SEQ: AtomicU64 = AtomicU64::new(0);

impl Jobs {
    /// Jobs over `pipeline`, with checkpoints in `dir` (none: jobs are not resumable across
    /// restarts). Checkpoints already there are loaded as interrupted (or done) jobs.
    pub fn new(pipeline: Arc<Pipeline>, dir: Option<PathBuf>) -> Self {
        let dir = dir.and_then(|d| match std::fs::create_dir_all(&d) {
            Ok(()) => Some(d),
            Err(e) => {
                tracing::warn!(dir = %d.display(), error = %e, "no warm-up checkpoints: cannot create their directory");
                None
            }
        });
        let jobs = Self {
            pipeline,
            dir,
            jobs: Mutex::new(BTreeMap::new()),
        };
        jobs.load();
        jobs
    }

    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Arc<Job>>> {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every job, oldest first.
    pub fn list(&self) -> Vec<Arc<Job>> {
        let mut v: Vec<_> = self.map().values().cloned().collect();
        v.sort_by_key(|j| j.started_at);
        v
    }

    /// One job.
    pub fn get(&self, id: &str) -> Option<Arc<Job>> {
        self.map().get(id).cloned()
    }

    /// Starts a job.
    pub async fn start(&self, spec: WarmSpec) -> Result<Arc<Job>, JobError> {
        let binding = self.check(&spec).await?;
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let id = format!(
            "{t:011x}{:04x}",
            JOB_SEQ.fetch_add(1, Ordering::Relaxed) & 0xFFFF
        );
        let file = self.dir.as_ref().and_then(|d| {
            let path = checkpoint_path(d, &id);
            let header = serde_json::to_string(&spec).ok()? + "\n";
            let mut f = open_append(&path)?;
            f.write_all(header.as_bytes()).ok()?;
            Some(f)
        });
        let job = self.launch(id, spec, file, binding, HashMap::new());
        Ok(job)
    }

    /// Resumes a job that is not running: objects its checkpoint names (same ETag) are skipped.
    pub async fn resume(&self, id: &str) -> Result<Arc<Job>, JobError> {
        let old = self.get(id).ok_or(JobError::Unknown)?;
        if old.running() {
            return Err(JobError::Running);
        }
        let binding = self.check(&old.spec).await?;
        let (done, file) = match &self.dir {
            Some(d) => {
                let path = checkpoint_path(d, id);
                let done = read_checkpoint(&path).map(|c| c.done).unwrap_or_default();
                (done, open_append(&path))
            }
            None => (HashMap::new(), None),
        };
        Ok(self.launch(id.to_string(), old.spec.clone(), file, binding, done))
    }

    /// Asks a running job to stop (objects being warmed finish).
    pub fn cancel(&self, id: &str) -> Result<Arc<Job>, JobError> {
        let job = self.get(id).ok_or(JobError::Unknown)?;
        job.cancel.store(true, Ordering::Relaxed);
        Ok(job)
    }

    async fn check(&self, spec: &WarmSpec) -> Result<Arc<BucketBinding>, JobError> {
        if spec.concurrency == 0 || spec.concurrency > MAX_CONCURRENCY {
            return Err(JobError::Invalid(Error::new(
                ErrorKind::InvalidArgument,
                format!("concurrency must be between 1 and {MAX_CONCURRENCY}"),
            )));
        }
        self.pipeline
            .catalog()
            .resolve(&spec.bucket)
            .await
            .map_err(JobError::Invalid)
    }

    fn launch(
        &self,
        id: String,
        spec: WarmSpec,
        file: Option<std::fs::File>,
        binding: Arc<BucketBinding>,
        done: HashMap<String, String>,
    ) -> Arc<Job> {
        let job = Arc::new(Job {
            id: id.clone(),
            spec,
            started_at: SystemTime::now(),
            started: Instant::now(),
            inner: Mutex::new(JobInner {
                state: State::Running,
                progress: Progress::default(),
                finished: None,
                error: None,
            }),
            cancel: AtomicBool::new(false),
            checkpoint: file.map(Mutex::new),
            skipped_bytes: AtomicU64::new(0),
        });
        self.map().insert(id, Arc::clone(&job));
        tokio::spawn(run(
            Arc::clone(&job),
            Arc::clone(&self.pipeline),
            binding,
            done,
        ));
        job
    }

    /// Loads the checkpoints in the directory as jobs that are not running.
    fn load(&self) {
        let Some(dir) = &self.dir else { return };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            let Some(id) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".jsonl"))
                .filter(|id| valid_id(id))
            else {
                continue;
            };
            let Some(c) = read_checkpoint(&path) else {
                continue;
            };
            let started_at = e
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(UNIX_EPOCH);
            let mut progress = Progress::default();
            for size in c.done.values().filter_map(|e| e.rsplit_once('\0')) {
                progress.objects_done += 1;
                progress.bytes_done += size.1.parse::<u64>().unwrap_or(0);
            }
            progress.objects_total = progress.objects_done;
            progress.bytes_total = progress.bytes_done;
            progress.listing_complete = c.ended;
            let job = Arc::new(Job {
                id: id.to_string(),
                spec: c.spec,
                started_at,
                started: Instant::now(),
                inner: Mutex::new(JobInner {
                    state: if c.ended {
                        State::Done
                    } else {
                        State::Interrupted
                    },
                    progress,
                    finished: Some(Instant::now()),
                    error: None,
                }),
                cancel: AtomicBool::new(false),
                checkpoint: None,
                skipped_bytes: AtomicU64::new(0),
            });
            self.map().insert(id.to_string(), job);
        }
    }
}

/// Whether `id` looks like a job id (lower-case hex): anything else is unknown, and never a
/// path.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

fn checkpoint_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.jsonl"))
}

fn open_append(path: &Path) -> Option<std::fs::File> {
    match std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        Ok(f) => Some(f),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot open the warm-up checkpoint");
            None
        }
    }
}

/// A checkpoint read back.
struct Checkpoint {
    spec: WarmSpec,
    /// Done objects: key → "etag\0size".
    done: HashMap<String, String>,
    ended: bool,
}

#[derive(Deserialize)]
struct Line {
    k: Option<String>,
    e: Option<String>,
    s: Option<u64>,
    #[serde(default)]
    end: bool,
}

fn read_checkpoint(path: &Path) -> Option<Checkpoint> {
    let text = std::fs::read_to_string(path).ok()?;
    parse_checkpoint(&text)
}

/// Parses a checkpoint: the spec on the first line, then one line per finished object, and
/// `{"end":true}` when a run ended. A torn last line (a crash mid-write) is ignored.
fn parse_checkpoint(text: &str) -> Option<Checkpoint> {
    let mut lines = text.lines();
    let spec: WarmSpec = serde_json::from_str(lines.next()?).ok()?;
    let mut done = HashMap::new();
    let mut ended = false;
    for l in lines {
        let Ok(line) = serde_json::from_str::<Line>(l) else {
            continue;
        };
        if line.end {
            ended = true;
            continue;
        }
        if let (Some(k), Some(e)) = (line.k, line.e) {
            done.insert(k, format!("{e}\0{}", line.s.unwrap_or(0)));
            // A later run that goes on after a resume reopens it.
            ended = false;
        }
    }
    Some(Checkpoint { spec, done, ended })
}

/// One run: list page by page, warm `concurrency` objects at a time.
async fn run(
    job: Arc<Job>,
    pipeline: Arc<Pipeline>,
    b: Arc<BucketBinding>,
    done: HashMap<String, String>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    let lister = {
        let (job, pipeline, b) = (Arc::clone(&job), Arc::clone(&pipeline), Arc::clone(&b));
        async move {
            let mut continuation = None;
            loop {
                if job.cancel.load(Ordering::Relaxed) {
                    return;
                }
                let q = ListQuery {
                    prefix: job.spec.prefix.clone(),
                    delimiter: None,
                    max_keys: 1000,
                    cursor: ListCursor::V2 {
                        continuation: continuation.take(),
                        start_after: None,
                    },
                };
                let page = match pipeline.list(&b, &q).await {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::warn!(job = %job.id, error = %e, "warm-up listing failed");
                        let mut i = job.lock();
                        i.error = Some(reason(&e));
                        i.state = State::Failed;
                        return;
                    }
                };
                for e in page.entries {
                    let skip = done
                        .get(&e.key)
                        .is_some_and(|d| d.split_once('\0').map(|(etag, _)| etag) == Some(&e.etag));
                    {
                        let mut i = job.lock();
                        i.progress.listed(e.size);
                        if skip {
                            i.progress.skipped(e.size);
                            job.skipped_bytes.fetch_add(e.size, Ordering::Relaxed);
                        }
                    }
                    if !skip && tx.send(e).await.is_err() {
                        return;
                    }
                }
                match page.next {
                    Some(next) if page.truncated => continuation = Some(next),
                    _ => break,
                }
            }
            job.lock().progress.listing_complete = true;
        }
    };
    let workers = tokio_stream::wrappers::ReceiverStream::new(rx).for_each_concurrent(
        job.spec.concurrency,
        |e| {
            let (job, pipeline, b) = (Arc::clone(&job), Arc::clone(&pipeline), Arc::clone(&b));
            async move {
                if job.cancel.load(Ordering::Relaxed) {
                    return;
                }
                let pin = job.spec.pin_seconds.map(Duration::from_secs);
                match pipeline.warm(&b, &e.key, pin).await {
                    Ok(w) => {
                        job.record_done(&e.key, &e.etag, e.size);
                        job.lock().progress.warmed(e.size, &w);
                    }
                    Err(err) => {
                        tracing::info!(job = %job.id, key = %e.key, error = %err, "object not warmed");
                        job.lock().progress.failed(&e.key, e.size, reason(&err));
                    }
                }
            }
        },
    );
    futures::join!(lister, workers);
    let mut i = job.lock();
    i.finished = Some(Instant::now());
    if i.state == State::Running {
        i.state = if job.cancel.load(Ordering::Relaxed) {
            State::Cancelled
        } else {
            State::Done
        };
    }
    let state = i.state;
    drop(i);
    if state == State::Done {
        job.record_end();
    }
    tracing::info!(job = %job.id, state = ?state, "warm-up ended");
}

/// A failure as an operator reads it: the kind and Cistern's message (never the source, which
/// may name an origin URL with its query).
fn reason(e: &Error) -> String {
    format!("{}: {}", e.kind().as_str(), e.message())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_counts_rate_and_eta() {
        let mut p = Progress::default();
        for size in [100, 200, 300, 400] {
            p.listed(size);
        }
        p.skipped(100);
        p.warmed(
            200,
            &Warmed {
                fetched_bytes: 150,
                cached_bytes: 50,
                ..Warmed::default()
            },
        );
        p.failed("c", 300, "not_found: gone".into());
        assert_eq!(
            (
                p.objects_total,
                p.objects_done,
                p.objects_skipped,
                p.objects_failed
            ),
            (4, 2, 1, 1)
        );
        assert_eq!(
            (p.bytes_total, p.bytes_done, p.bytes_failed),
            (1000, 300, 300)
        );
        assert_eq!((p.bytes_fetched, p.bytes_cached), (150, 50));
        assert_eq!(p.failures[0].key, "c");
        // Skipped bytes took no time: 200 bytes in 2 s.
        let rate = p.rate(Duration::from_secs(2), 100);
        assert!((rate - 100.0).abs() < 1e-9);
        assert_eq!(p.eta(rate), None, "unknown until the listing is complete");
        p.listing_complete = true;
        assert_eq!(p.eta(rate), Some(4.0));
        assert_eq!(p.eta(0.0), None);
        for i in 0..MAX_FAILURES + 5 {
            p.failed(&format!("k{i}"), 0, "x".into());
        }
        assert_eq!(p.failures.len(), MAX_FAILURES);
        assert_eq!(p.objects_failed, MAX_FAILURES as u64 + 6);
    }

    #[test]
    fn checkpoints_resume_by_key_and_etag_and_survive_a_torn_line() {
        let spec = WarmSpec {
            bucket: "b".into(),
            prefix: "p/".into(),
            pin_seconds: Some(60),
            concurrency: 4,
        };
        let text = format!(
            "{}\n{}\n{}\n{{\"k\":\"p/c\",\"e",
            serde_json::to_string(&spec).expect("json"),
            r#"{"k":"p/a","e":"e1","s":10}"#,
            r#"{"k":"p/b","e":"e2","s":20}"#
        );
        let c = parse_checkpoint(&text).expect("parses");
        assert_eq!(c.spec, spec);
        assert_eq!(c.done.len(), 2);
        assert_eq!(c.done["p/a"], "e1\u{0}10");
        assert!(!c.ended);
        let c = parse_checkpoint(&format!("{text}\n{{\"end\":true}}\n")).expect("parses");
        assert!(c.ended);
        assert!(parse_checkpoint("not json\n").is_none());
        assert!(valid_id("0193ab0001"));
        assert!(!valid_id("../etc"));
        assert!(!valid_id(""));
    }
}
