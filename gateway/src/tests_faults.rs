//! Fault injection between Cistern and an S3 origin: a raw-TCP fake S3 server (so that it can
//! break a body off, reset, stall, answer the wrong range or change the object between two
//! requests) behind Cistern's real S3 origin client, its retry layer, the pipeline and the S3
//! front over HTTP. What every test checks: a client never gets a 200/206 whose body is short
//! or wrong without its transfer failing; no partial chunk is cached; one response never mixes
//! two versions of an object.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cistern_auth::policy::Policy;
use cistern_cache::{ChunkStore, Consistency, StoreConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::metrics::Metrics;
use crate::origin::layers::{Instrumented, Resilient, RetryPolicy};
use crate::origin::s3::{S3Origin, S3OriginConfig};
use crate::origin::Origin;
use crate::pipeline::{BucketBinding, Catalog, Pipeline, PipelineConfig};

const CHUNK: usize = 64 * 1024;
const KEY_PATH: &str = "/data/obj";

/// What the fake does to one request.
#[derive(Debug, Clone)]
enum Fault {
    /// Announces the whole length, sends this many bytes of the body, then closes.
    Truncate(usize),
    /// Answers this status with an S3 error document of this code.
    Status(u16, &'static str),
    /// Sends nothing, keeps the connection open.
    StallHeaders,
    /// Sends the headers and this many bytes, then keeps the connection open.
    StallBody(usize),
    /// Answers 206 for a range other than the one asked for (shifted by one byte).
    WrongRange,
}

struct Object {
    data: Bytes,
    etag: String,
}

/// A fake S3 origin for one object, `data/obj`.
#[derive(Clone)]
struct Fake {
    object: Arc<Mutex<Object>>,
    /// Faults for the next GETs, in order.
    next: Arc<Mutex<VecDeque<Fault>>>,
    /// A fault for every GET whose range starts at this offset.
    at: Arc<Mutex<Option<(u64, Fault)>>>,
    /// Whether `If-Match` is ignored (an origin that does not support it).
    ignore_if_match: Arc<Mutex<bool>>,
    /// GETs served, per range start.
    gets: Arc<Mutex<Vec<u64>>>,
    requests: Arc<AtomicUsize>,
}

fn pattern(len: usize, seed: u8) -> Bytes {
    Bytes::from(
        (0..len)
            .map(|i| (i as u8).wrapping_mul(29).wrapping_add(seed) ^ (i >> 10) as u8)
            .collect::<Vec<u8>>(),
    )
}

impl Fake {
    async fn start(data: Bytes) -> (Self, SocketAddr) {
        let fake = Fake {
            object: Arc::new(Mutex::new(Object {
                data,
                etag: "v1".into(),
            })),
            next: Arc::default(),
            at: Arc::default(),
            ignore_if_match: Arc::default(),
            gets: Arc::default(),
            requests: Arc::default(),
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let f = fake.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(f.clone().connection(sock));
            }
        });
        (fake, addr)
    }

    fn replace(&self, data: Bytes, etag: &str) {
        *self.object.lock().expect("object") = Object {
            data,
            etag: etag.into(),
        };
    }

    fn push(&self, faults: impl IntoIterator<Item = Fault>) {
        self.next.lock().expect("next").extend(faults);
    }

    fn gets_at(&self, offset: u64) -> usize {
        let gets = self.gets.lock().expect("gets");
        gets.iter().filter(|s| **s == offset).count()
    }

    /// Serves requests on one connection until a fault ends it.
    async fn connection(self, mut sock: TcpStream) {
        let mut buf = Vec::new();
        loop {
            let head = loop {
                if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                    buf.drain(..end + 4);
                    break head;
                }
                let mut more = [0u8; 4096];
                match sock.read(&mut more).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&more[..n]),
                }
            };
            if !self.answer(&mut sock, &head).await {
                return;
            }
        }
    }

    /// Answers one request; false when the connection must end.
    async fn answer(&self, sock: &mut TcpStream, head: &str) -> bool {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let mut lines = head.split("\r\n");
        let request_line = lines.next().unwrap_or_default();
        let mut parts = request_line.split(' ');
        let method = parts.next().unwrap_or_default().to_string();
        let target = parts.next().unwrap_or_default();
        let path = target.split('?').next().unwrap_or_default().to_string();
        let header = |name: &str| {
            head.split("\r\n").skip(1).find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_string())
            })
        };
        let (data, etag) = {
            let o = self.object.lock().expect("object");
            (o.data.clone(), o.etag.clone())
        };
        if path != KEY_PATH {
            return self.error(sock, 404, "NoSuchKey").await;
        }
        let size = data.len() as u64;
        let range = header("range").and_then(|r| {
            let (a, b) = r.strip_prefix("bytes=")?.split_once('-')?;
            Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?))
        });
        let start = range.map_or(0, |r| r.0);
        let fault = if method == "GET" {
            self.gets.lock().expect("gets").push(start);
            let at = self.at.lock().expect("at").clone();
            match at {
                Some((offset, f)) if offset == start => Some(f),
                _ => self.next.lock().expect("next").pop_front(),
            }
        } else {
            None
        };
        let if_match = header("if-match").map(|v| v.trim_matches('"').to_string());
        if !*self.ignore_if_match.lock().expect("flag") && if_match.is_some_and(|m| m != etag) {
            return self.error(sock, 412, "PreconditionFailed").await;
        }
        match fault {
            Some(Fault::Status(status, code)) => return self.error(sock, status, code).await,
            Some(Fault::StallHeaders) => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return false;
            }
            _ => {}
        }
        let (status, body_range) = match range {
            Some((a, _)) if a >= size => return self.error(sock, 416, "InvalidRange").await,
            Some((a, b)) => (206, a..b.min(size - 1) + 1),
            None => (200, 0..size),
        };
        let mut claimed = body_range.clone();
        let mut body = data.slice(body_range.start as usize..body_range.end as usize);
        match fault {
            Some(Fault::WrongRange) if claimed.start > 0 => {
                claimed = claimed.start - 1..claimed.end - 1;
                body = data.slice(claimed.start as usize..claimed.end as usize);
            }
            _ => {}
        }
        let mut resp = format!(
            "HTTP/1.1 {status} X\r\ncontent-length: {}\r\netag: \"{etag}\"\r\n\
             last-modified: Tue, 14 Nov 2023 22:13:20 GMT\r\n\
             content-type: application/octet-stream\r\naccept-ranges: bytes\r\n",
            body.len()
        );
        if status == 206 {
            resp.push_str(&format!(
                "content-range: bytes {}-{}/{size}\r\n",
                claimed.start,
                claimed.end - 1
            ));
        }
        resp.push_str("\r\n");
        if sock.write_all(resp.as_bytes()).await.is_err() {
            return false;
        }
        if method == "HEAD" {
            return true;
        }
        match fault {
            Some(Fault::Truncate(n)) => {
                let _ = sock.write_all(&body[..n.min(body.len())]).await;
                false
            }
            Some(Fault::StallBody(n)) => {
                let _ = sock.write_all(&body[..n.min(body.len())]).await;
                tokio::time::sleep(Duration::from_secs(3600)).await;
                false
            }
            _ => sock.write_all(&body).await.is_ok(),
        }
    }

    async fn error(&self, sock: &mut TcpStream, status: u16, code: &str) -> bool {
        let body = format!("<?xml version=\"1.0\"?><Error><Code>{code}</Code></Error>");
        let resp = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/xml\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        sock.write_all(resp.as_bytes()).await.is_ok()
    }
}

/// Cistern (S3 front, pipeline, S3 origin client with retries) in front of `fake` at `origin`,
/// serving `data` to anonymous callers. Returns the front's address.
async fn cistern(origin: SocketAddr, consistency: Consistency) -> (SocketAddr, Metrics) {
    let metrics = Metrics::new().expect("metrics");
    let client = S3Origin::new(&S3OriginConfig {
        endpoint: format!("http://{origin}"),
        region: "us-east-1".into(),
        access_key_id: None,
        secret_access_key: None,
        path_style: true,
    })
    .expect("origin client");
    let layered: Arc<dyn Origin> = Arc::new(Resilient::new(
        Instrumented::new(client, Arc::from("fake"), metrics.clone()),
        RetryPolicy {
            timeout: Duration::from_millis(700),
            retries: 2,
            backoff: Duration::from_millis(1),
        },
    ));
    let store = ChunkStore::open(
        &StoreConfig {
            dir: None,
            memory_bytes: 64 << 20,
            disk_bytes: 0,
            chunk_size: CHUNK,
            piece_size: 4096,
        },
        &metrics.registry,
    )
    .await
    .expect("store");
    let binding = BucketBinding {
        name: "data".into(),
        origin: layered,
        origin_name: Arc::from("fake"),
        origin_bucket: Arc::from("data"),
        consistency,
        public_read: true,
        populate_on_write: false,
        cache_only: false,
    };
    let pipeline = Arc::new(Pipeline::new(
        Catalog::new(vec![binding], vec![]),
        store,
        PipelineConfig::new(CHUNK as u64, 4),
        metrics.clone(),
    ));
    let svc = Arc::new(crate::s3::service(
        pipeline,
        Arc::new(Policy::new([])),
        vec![],
        "us-east-1".into(),
    ));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(crate::server::run_s3(
        listener,
        svc,
        metrics.clone(),
        crate::server::Limits::default(),
        std::future::pending(),
    ));
    (addr, metrics)
}

/// What a client got: the status, and the body if its transfer completed.
#[derive(Debug)]
struct Got {
    status: u16,
    body: Result<Bytes, String>,
}

async fn get(front: SocketAddr, range: Option<&str>) -> Got {
    // A fresh client per request: a broken-off response must not leave a pooled connection.
    let client = reqwest::Client::new();
    let mut req = client.get(format!("http://{front}{KEY_PATH}"));
    if let Some(r) = range {
        req = req.header("range", r);
    }
    let fut = async {
        let resp = req.send().await.expect("the front answers");
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(|e| e.to_string());
        Got { status, body }
    };
    // A guard against a hang, not a timing assertion.
    tokio::time::timeout(Duration::from_secs(60), fut)
        .await
        .expect("the front never hangs")
}

/// A successful answer carries exactly `want`; a failed one is an error status or a transfer
/// that fails. Never a short or wrong body under 200/206.
fn honest(got: &Got, want: &[u8]) -> bool {
    match (&got.body, got.status) {
        (Ok(b), 200 | 206) => {
            assert_eq!(b.len(), want.len(), "a 2xx body has the expected length");
            assert!(b[..] == want[..], "a 2xx body has the expected bytes");
            true
        }
        (Ok(_), s) => {
            assert!(
                s == 503 || s == 504 || s == 412,
                "an origin fault is answered 503/504, got {s}"
            );
            false
        }
        (Err(_), s) => {
            assert!(s == 200 || s == 206, "only a streamed answer breaks off");
            false
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_off_origin_bodies_are_retried_never_cached_and_never_served_short() {
    let data = pattern(5 * CHUNK + 100, 1);
    let (fake, origin) = Fake::start(data.clone()).await;
    let (front, _) = cistern(origin, Consistency::Immutable).await;

    // One truncation and one reset on the way: retries hide them.
    fake.push([Fault::Truncate(1000), Fault::Truncate(0)]);
    let got = get(front, None).await;
    assert!(honest(&got, &data), "{got:?}");

    // Chunk 3 of another version always breaks off: the object is served up to it, then the
    // transfer fails.
    let v2 = pattern(5 * CHUNK + 100, 2);
    fake.replace(v2.clone(), "v2");
    let (front, _) = cistern(origin, Consistency::Immutable).await;
    let c3 = 3 * CHUNK as u64;
    *fake.at.lock().expect("at") = Some((c3, Fault::Truncate(CHUNK / 2)));
    let got = get(front, None).await;
    assert!(!honest(&got, &v2), "chunk 3 never arrives whole: {got:?}");
    let got = get(front, Some(&format!("bytes={c3}-{}", c3 + 10))).await;
    assert!(!honest(&got, &v2[c3 as usize..c3 as usize + 11]), "{got:?}");
    // Once the origin recovers, chunk 3 is fetched again (nothing partial was kept) and every
    // byte is right.
    *fake.at.lock().expect("at") = None;
    let before = fake.gets_at(c3);
    let got = get(front, None).await;
    assert!(honest(&got, &v2), "{got:?}");
    assert_eq!(fake.gets_at(c3), before + 1, "chunk 3 came from the origin");
    let again = fake.requests.load(Ordering::SeqCst);
    let got = get(front, Some(&format!("bytes={c3}-{}", c3 + 10))).await;
    assert!(honest(&got, &v2[c3 as usize..c3 as usize + 11]));
    assert_eq!(
        fake.requests.load(Ordering::SeqCst),
        again,
        "and is now a hit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_that_changes_between_chunks_is_never_mixed() {
    for ignore_if_match in [false, true] {
        let v1 = pattern(4 * CHUNK, 3);
        let v2 = pattern(4 * CHUNK, 4);
        let (fake, origin) = Fake::start(v1.clone()).await;
        *fake.ignore_if_match.lock().expect("flag") = ignore_if_match;
        let (front, _) = cistern(origin, Consistency::Ttl(Duration::from_secs(3600))).await;
        // Metadata and chunk 0 of v1 are cached.
        let got = get(front, Some("bytes=0-9")).await;
        assert!(honest(&got, &v1[..10]));
        fake.replace(v2.clone(), "v2");
        for range in [None, Some("bytes=100-")] {
            let got = get(front, range).await;
            let skip = if range.is_some() { 100 } else { 0 };
            let whole = |v: &Bytes| got.body.as_ref().is_ok_and(|b| b[..] == v[skip..]);
            assert!(
                whole(&v1) || whole(&v2) || !honest(&got, &v2[skip..]),
                "one version, whole, or a failed transfer (ignore If-Match: {ignore_if_match}): {:?}",
                got.status
            );
        }
        // Later reads see v2 whole.
        let got = get(front, None).await;
        assert!(honest(&got, &v2), "{got:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_and_5xx_storms_cost_retries_not_correctness() {
    let data = pattern(8 * CHUNK, 5);
    let (fake, origin) = Fake::start(data.clone()).await;
    let (front, metrics) = cistern(origin, Consistency::Immutable).await;
    let storm = (0..40).map(|i| match i % 4 {
        0 => Fault::Status(503, "SlowDown"),
        1 => Fault::Status(500, "InternalError"),
        2 => Fault::Status(429, "TooManyRequests"),
        _ => Fault::Status(503, "ServiceUnavailable"),
    });
    fake.push(storm);
    let reads = (0..16).map(|i| {
        let start = (i % 8) * CHUNK + i;
        let data = data.clone();
        tokio::spawn(async move {
            let range = format!("bytes={start}-{}", start + 999);
            let got = get(front, Some(&range)).await;
            honest(&got, &data[start..start + 1000])
        })
    });
    let mut ok = 0;
    for r in reads {
        ok += usize::from(r.await.expect("read"));
    }
    eprintln!("{ok} of 16 reads succeeded during the storm");
    // Each read either succeeded exactly or was refused with 503, after a bounded number of
    // attempts: at most 3 per chunk a request needs (16 reads of one chunk each, then 8
    // chunks), fewer where single-flight shares one fill.
    let attempts = fake.requests.load(Ordering::SeqCst);
    let errors = metrics
        .origin_requests
        .with_label_values(&["fake", "get", "origin_unavailable"])
        .get();
    assert!(errors > 0, "the storm was seen");
    // After the storm every chunk is served right.
    assert!(honest(&get(front, None).await, &data));
    let attempts_after = fake.requests.load(Ordering::SeqCst);
    assert!(
        attempts <= 3 * 16,
        "{attempts} origin requests for 16 reads"
    );
    assert!(
        attempts_after - attempts <= 3 * 8,
        "{} origin requests for one read of 8 chunks",
        attempts_after - attempts
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_origin_costs_a_timeout_not_a_hang() {
    let data = pattern(3 * CHUNK, 6);
    let (fake, origin) = Fake::start(data.clone()).await;
    let (front, _) = cistern(origin, Consistency::Immutable).await;
    // No headers, three attempts: the client gets an error status.
    fake.push([
        Fault::StallHeaders,
        Fault::StallHeaders,
        Fault::StallHeaders,
    ]);
    let got = get(front, None).await;
    assert!(!honest(&got, &data), "{got:?}");
    // Chunk 2 stalls mid-body on every attempt: the streamed answer breaks off.
    let c2 = 2 * CHUNK as u64;
    *fake.at.lock().expect("at") = Some((c2, Fault::StallBody(100)));
    let got = get(front, None).await;
    assert!(!honest(&got, &data), "{got:?}");
    *fake.at.lock().expect("at") = None;
    assert!(honest(&get(front, None).await, &data));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_answering_another_range_than_asked_is_refused() {
    let data = pattern(3 * CHUNK, 7);
    let (fake, origin) = Fake::start(data.clone()).await;
    let (front, _) = cistern(origin, Consistency::Immutable).await;
    let c1 = CHUNK as u64;
    *fake.at.lock().expect("at") = Some((c1, Fault::WrongRange));
    let want = &data[c1 as usize..c1 as usize + 100];
    let got = get(front, Some(&format!("bytes={c1}-{}", c1 + 99))).await;
    assert!(!honest(&got, want), "{got:?}");
    *fake.at.lock().expect("at") = None;
    assert!(honest(
        &get(front, Some(&format!("bytes={c1}-{}", c1 + 99))).await,
        want
    ));
}
