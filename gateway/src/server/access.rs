//! What the listeners record of every request: its id, its metrics and its access-log line.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;
use std::time::Instant;

use prometheus::{Histogram, IntCounter};

use crate::metrics::Metrics;

static REQUEST_SEQ: AtomicU64 = AtomicU64::new(0);

/// A new request id: the time in seconds, the process id's low 16 bits and a sequence
/// number, in upper-case hex (`{secs:X}{pid:04X}{seq:08X}`). Written by hand: through
/// `format!`, with a `getpid` system call each time, it cost 1.4 % of a 4 KiB hit.
pub(super) fn request_id() -> String {
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let pid = *PID.get_or_init(std::process::id) & 0xFFFF;
    let n = REQUEST_SEQ.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut id = String::with_capacity(32);
    push_hex(&mut id, t, 1);
    push_hex(&mut id, pid.into(), 4);
    push_hex(&mut id, n, 8);
    id
}

/// Appends `v` in upper-case hex, zero-padded to at least `width` digits.
pub(super) fn push_hex(s: &mut String, v: u64, width: usize) {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let digits = (16 - v.leading_zeros() as usize / 4).max(width);
    for i in (0..digits).rev() {
        s.push(DIGITS[((v >> (i * 4)) & 0xF) as usize] as char);
    }
}

/// Request metrics and the access-log line, the same for both dialects. The request counter
/// and latency histogram of each (dialect, operation, status) are looked up by label once:
/// through `with_label_values` every request hashed five labels and took two locks.
pub(super) struct Recorder {
    metrics: Metrics,
    known: RwLock<Vec<Known>>,
}

/// The series of one (dialect, operation, status).
struct Known {
    key: u64,
    dialect: &'static str,
    op: Box<str>,
    status: &'static str,
    count: IntCounter,
    seconds: Histogram,
}

impl Recorder {
    pub(super) fn new(metrics: Metrics) -> Self {
        Self {
            metrics,
            known: RwLock::default(),
        }
    }

    /// Counts a request and observes its latency.
    fn count(&self, dialect: &'static str, op: &str, status: &'static str, secs: f64) {
        // FNV-1a: the handful of series a listener has are told apart by it and then checked.
        let mut key = 0xcbf2_9ce4_8422_2325u64;
        for b in [dialect, op, status]
            .iter()
            .flat_map(|s| s.bytes().chain([0]))
        {
            key = (key ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        let found =
            |k: &&Known| k.key == key && k.dialect == dialect && &*k.op == op && k.status == status;
        if let Some(k) = self
            .known
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(found)
        {
            k.count.inc();
            k.seconds.observe(secs);
            return;
        }
        let k = Known {
            key,
            dialect,
            op: op.into(),
            status,
            count: self
                .metrics
                .requests
                .with_label_values(&[dialect, op, status]),
            seconds: self
                .metrics
                .request_seconds
                .with_label_values(&[dialect, op]),
        };
        k.count.inc();
        k.seconds.observe(secs);
        let mut known = self.known.write().unwrap_or_else(|e| e.into_inner());
        if !known.iter().any(|x| found(&x)) {
            known.push(k);
        }
    }

    /// Records a request: its metrics and its access-log line.
    #[allow(clippy::too_many_arguments)] // reason: one flat call site per dialect reads best
    pub(super) fn record<B>(
        &self,
        dialect: &'static str,
        rid: &str,
        method: &http::Method,
        path: &str,
        op: &str,
        resp: &http::Response<B>,
        start: Instant,
    ) {
        let status = resp.status().as_u16();
        let elapsed = start.elapsed();
        self.count(dialect, op, status_label(status), elapsed.as_secs_f64());
        let cache = resp
            .headers()
            .get(crate::pipeline::CACHE_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-");
        tracing::info!(
            target: "cistern::access",
            request_id = %rid,
            dialect,
            %method,
            path = %path,
            operation = op,
            status,
            cache,
            micros = elapsed.as_micros() as u64,
            "request"
        );
    }
}

fn status_label(s: u16) -> &'static str {
    match s {
        200 => "200",
        204 => "204",
        206 => "206",
        304 => "304",
        400 => "400",
        403 => "403",
        404 => "404",
        412 => "412",
        416 => "416",
        500 => "500",
        501 => "501",
        503 => "503",
        _ => match s / 100 {
            2 => "2xx",
            3 => "3xx",
            4 => "4xx",
            _ => "5xx",
        },
    }
}
