//! In-process tests of the read path over the in-memory origin: single-flight, read-ahead,
//! retries, version changes, and the S3 front's authentication over real HTTP.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cistern_auth::policy::{BucketScope, Permission, Permissions, Policy, Principal};
use cistern_auth::{sigv4, Secret};
use cistern_cache::range::RangeSpec;
use cistern_cache::{ChunkStore, Consistency, StoreConfig};
use futures::StreamExt;

use crate::error::ErrorKind;
use crate::metrics::Metrics;
use crate::origin::layers::{Instrumented, Resilient, RetryPolicy};
use crate::origin::Origin;
use crate::pipeline::{
    BucketBinding, CacheStatus, Catalog, Conditions, ObjectRead, Pipeline, PipelineConfig,
    Selection,
};
use crate::testing::MemOrigin;

pub(crate) const MIB: usize = 1 << 20;

pub(crate) fn pattern(len: usize, seed: u8) -> Bytes {
    Bytes::from(
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 12) as u8)
            .collect::<Vec<u8>>(),
    )
}

pub(crate) struct Setup {
    pub(crate) pipeline: Arc<Pipeline>,
    pub(crate) bucket: Arc<BucketBinding>,
    pub(crate) origin: MemOrigin,
    pub(crate) metrics: Metrics,
}

pub(crate) async fn setup(chunk: usize, consistency: Consistency) -> Setup {
    setup_with(chunk, consistency, false).await
}

async fn setup_with(chunk: usize, consistency: Consistency, populate_on_write: bool) -> Setup {
    setup_cfg(
        PipelineConfig::new(chunk as u64, 4),
        consistency,
        populate_on_write,
    )
    .await
}

async fn setup_cfg(
    cfg: PipelineConfig,
    consistency: Consistency,
    populate_on_write: bool,
) -> Setup {
    let chunk = cfg.chunk_size as usize;
    let origin = MemOrigin::default();
    let metrics = Metrics::new().expect("metrics");
    let store = ChunkStore::open(
        &StoreConfig {
            dir: None,
            memory_bytes: 256 * MIB,
            disk_bytes: 0,
            chunk_size: chunk,
            piece_size: 4096,
        },
        &metrics.registry,
    )
    .await
    .expect("store");
    let layered: Arc<dyn Origin> = Arc::new(Resilient::new(
        Instrumented::new(origin.clone(), Arc::from("mem"), metrics.clone()),
        RetryPolicy {
            timeout: Duration::from_secs(10),
            retries: 3,
            backoff: Duration::from_millis(1),
        },
    ));
    let binding = BucketBinding {
        name: "data".into(),
        origin: layered,
        origin_name: Arc::from("mem"),
        origin_bucket: Arc::from("data"),
        consistency,
        public_read: false,
        populate_on_write,
        cache_only: false,
    };
    let pipeline = Arc::new(Pipeline::new(
        Catalog::new(vec![binding], vec![]),
        store,
        cfg,
        metrics.clone(),
    ));
    let bucket = pipeline.catalog().resolve("data").await.expect("bucket");
    Setup {
        pipeline,
        bucket,
        origin,
        metrics,
    }
}

async fn body(read: ObjectRead) -> Vec<u8> {
    let mut out = Vec::new();
    let mut b = read.body;
    while let Some(chunk) = b.next().await {
        out.extend_from_slice(&chunk.expect("body chunk"));
    }
    out
}

/// Responses hold at most `stream_memory` outside the RAM cache, and a client that opens many
/// responses and reads them one after another is never stalled by the ones it has not read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_response_budget_bounds_held_bytes_without_stalling_a_sequential_reader() {
    let mut cfg = PipelineConfig::new(256 * 1024, 4);
    cfg.stream_memory = MIB;
    cfg.stream_step = 64 * 1024;
    let s = setup_cfg(cfg, Consistency::Immutable, false).await;
    let objects: Vec<Bytes> = (0..8).map(|i| pattern(2 * MIB + 1000, i)).collect();
    for (i, d) in objects.iter().enumerate() {
        s.origin.put("data", &format!("o{i}"), d.clone());
    }
    let reading = async {
        let mut open = Vec::new();
        for i in 0..objects.len() {
            let r = s
                .pipeline
                .get(
                    &s.bucket,
                    &format!("o{i}"),
                    crate::pipeline::Selection::All,
                    &Conditions::default(),
                )
                .await
                .expect("get");
            open.push(r);
        }
        let mut bodies = Vec::new();
        for r in open {
            bodies.push(body(r).await);
        }
        bodies
    };
    let bodies = tokio::time::timeout(Duration::from_secs(60), reading)
        .await
        .expect("a sequential reader of open responses is never stalled");
    for (got, want) in bodies.iter().zip(&objects) {
        assert_eq!(got.as_slice(), want.as_ref());
    }
    assert!(
        s.metrics.budget_waits.get() > 0,
        "the budget was spent and respected"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_herd_makes_one_origin_request() {
    let s = setup(4 * MIB, Consistency::Ttl(Duration::from_secs(60))).await;
    let data = pattern(8 * MIB, 1);
    s.origin.put("data", "shard", data.clone());
    *s.origin.delay.lock().expect("delay") = Duration::from_millis(100);
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (p, b) = (Arc::clone(&s.pipeline), Arc::clone(&s.bucket));
        tasks.push(tokio::spawn(async move {
            let r = p
                .get(
                    &b,
                    "shard",
                    Selection::Range(RangeSpec::FromTo {
                        first: 0,
                        last: 4 * MIB as u64 - 1,
                    }),
                    &Conditions::default(),
                )
                .await
                .expect("get");
            body(r).await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.expect("task"), &data[..4 * MIB]);
    }
    assert_eq!(
        s.origin.reads.load(Ordering::SeqCst),
        1,
        "32 concurrent cold reads, one origin GET"
    );
    assert_eq!(
        s.origin.heads.load(Ordering::SeqCst),
        0,
        "metadata came with the chunk"
    );

    let again = s
        .pipeline
        .get(
            &s.bucket,
            "shard",
            Selection::Range(RangeSpec::FromTo {
                first: 10,
                last: 20,
            }),
            &Conditions::default(),
        )
        .await
        .expect("get");
    assert_eq!(again.cache, CacheStatus::Hit);
    assert_eq!(body(again).await, &data[10..=20]);
    assert_eq!(
        s.origin.reads.load(Ordering::SeqCst),
        1,
        "a hit never asks the origin"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_sequential_read_fetches_chunks_in_parallel() {
    let s = setup(MIB, Consistency::Immutable).await;
    let data = pattern(24 * MIB + 123, 2);
    s.origin.put("data", "big", data.clone());
    *s.origin.delay.lock().expect("delay") = Duration::from_millis(30);
    let r = s
        .pipeline
        .get(&s.bucket, "big", Selection::All, &Conditions::default())
        .await
        .expect("get");
    assert_eq!(r.cache, CacheStatus::Miss);
    assert_eq!(body(r).await, &data[..]);
    assert_eq!(
        s.origin.reads.load(Ordering::SeqCst),
        25,
        "each chunk fetched once"
    );
    assert!(
        s.origin.max_inflight.load(Ordering::SeqCst) >= 2,
        "read-ahead keeps several chunk fetches in flight"
    );
}

#[tokio::test]
async fn retryable_origin_failures_are_retried() {
    let s = setup(MIB, Consistency::Immutable).await;
    s.origin.put("data", "k", pattern(1000, 3));
    s.origin.fail_next.store(2, Ordering::SeqCst);
    let r = s
        .pipeline
        .get(&s.bucket, "k", Selection::All, &Conditions::default())
        .await
        .expect("get after retries");
    assert_eq!(body(r).await.len(), 1000);
    assert_eq!(s.origin.reads.load(Ordering::SeqCst), 3);
    let failed = s
        .metrics
        .origin_requests
        .with_label_values(&["mem", "get", "origin_unavailable"])
        .get();
    assert_eq!(failed, 2, "every attempt is counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_object_is_never_mixed() {
    let s = setup(MIB, Consistency::Ttl(Duration::from_secs(3600))).await;
    let old = pattern(3 * MIB, 4);
    s.origin.put("data", "ckpt", old.clone());
    // Cache metadata and the first chunk only.
    let r = s
        .pipeline
        .get(
            &s.bucket,
            "ckpt",
            Selection::Range(RangeSpec::FromTo { first: 0, last: 9 }),
            &Conditions::default(),
        )
        .await
        .expect("get");
    assert_eq!(body(r).await, &old[..10]);
    // The object changes at the origin; cached metadata still names the old version.
    let new = pattern(3 * MIB + 7, 5);
    s.origin.put("data", "ckpt", new.clone());
    let r = s
        .pipeline
        .get(
            &s.bucket,
            "ckpt",
            Selection::Range(RangeSpec::From {
                first: (MIB + 5) as u64,
            }),
            &Conditions::default(),
        )
        .await
        .expect("get retried with fresh metadata");
    assert_eq!(r.meta.size, new.len() as u64);
    assert_eq!(
        body(r).await,
        &new[MIB + 5..],
        "all bytes from the new version"
    );
    let r = s
        .pipeline
        .get(&s.bucket, "ckpt", Selection::All, &Conditions::default())
        .await
        .expect("full read");
    assert_eq!(
        body(r).await,
        &new[..],
        "the cached first chunk of the old version is not reused"
    );
}

#[tokio::test]
async fn missing_objects_and_bad_ranges_are_errors() {
    let s = setup(MIB, Consistency::Ttl(Duration::from_secs(60))).await;
    s.origin.put("data", "small", pattern(100, 6));
    let e = s
        .pipeline
        .get(&s.bucket, "nope", Selection::All, &Conditions::default())
        .await
        .err()
        .expect("missing");
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let e = s
        .pipeline
        .get(
            &s.bucket,
            "small",
            Selection::Range(RangeSpec::From { first: 100 }),
            &Conditions::default(),
        )
        .await
        .err()
        .expect("416");
    assert_eq!(e.kind(), ErrorKind::InvalidRange);
    assert_eq!(e.object_size(), Some(100));
    s.origin.put("data", "empty", Bytes::new());
    let r = s
        .pipeline
        .get(&s.bucket, "empty", Selection::All, &Conditions::default())
        .await
        .expect("empty");
    assert!(body(r).await.is_empty());
}

/// Serves the S3 front over HTTP on port 0 with one principal that may read bucket `data`.
async fn serve_s3(s: &Setup) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let (addr, stop, _) = serve_s3_with(s, true).await;
    (addr, stop)
}

/// As [`serve_s3`], with or without the object read fast path ahead of s3s; returns the
/// endpoint too, to count what the fast path served.
async fn serve_s3_with(
    s: &Setup,
    fast: bool,
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    Arc<crate::s3::S3Endpoint>,
) {
    let policy = Arc::new(Policy::new([Principal {
        access_key: "reader".into(),
        secret: Secret::new("reader-secret"),
        buckets: BucketScope::Only(vec!["data".into()]),
        permissions: [Permission::Read, Permission::List]
            .into_iter()
            .collect::<Permissions>(),
    }]));
    let mut svc = crate::s3::service(Arc::clone(&s.pipeline), policy, vec![], "us-east-1".into());
    if !fast {
        svc.fast = None;
    }
    let svc = Arc::new(svc);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(crate::server::run_s3(
        listener,
        Arc::clone(&svc),
        s.metrics.clone(),
        crate::server::Limits::default(),
        async move {
            let _ = rx.await;
        },
    ));
    (addr, tx, svc)
}

/// Sends `method path` to `addr`, signed for `reader` with `secret` at `at` (unsigned when
/// `secret` is `None`), with `headers` (signed too).
async fn send_s3(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    secret: Option<&str>,
    headers: &[(&str, &str)],
    at: time::OffsetDateTime,
) -> (u16, Vec<(String, String)>, String) {
    send_s3_as(addr, method, path, secret, headers, at, |a| a.to_string()).await
}

/// As [`send_s3`], with the `Authorization` value rewritten by `mangle`.
async fn send_s3_as(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    secret: Option<&str>,
    headers: &[(&str, &str)],
    at: time::OffsetDateTime,
    mangle: fn(&str) -> String,
) -> (u16, Vec<(String, String)>, String) {
    let host = addr.to_string();
    let m = http::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = reqwest::Client::new().request(m, format!("http://{host}{path}"));
    if let Some(secret) = secret {
        let sig = sigv4::sign(
            &sigv4::Request {
                method,
                host: &host,
                encoded_path: path,
                query: &[],
                headers,
                payload_sha256: sigv4::EMPTY_SHA256,
                time: at,
            },
            &sigv4::Credentials {
                access_key_id: "reader".into(),
                secret_access_key: Secret::new(secret),
                region: "us-east-1".into(),
                service: "s3".into(),
            },
        );
        req = req
            .header("authorization", mangle(&sig.authorization))
            .header("x-amz-date", sig.amz_date)
            .header("x-amz-content-sha256", sigv4::EMPTY_SHA256);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.expect("send");
    let status = r.status().as_u16();
    let mut hs: Vec<(String, String)> = r
        .headers()
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "x-amz-request-id" | "date"))
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("?").to_string()))
        .collect();
    hs.sort();
    let body = r.bytes().await.expect("body");
    let summary = if status >= 400 {
        // Error documents carry the request id: compare the code only.
        let text = String::from_utf8_lossy(&body).to_string();
        text.split("<Code>")
            .nth(1)
            .and_then(|c| c.split("</Code>").next())
            .unwrap_or("")
            .to_string()
    } else {
        format!("{} bytes, crc32c {:08x}", body.len(), crc32c::crc32c(&body))
    };
    (status, hs, summary)
}

/// One request of the fast-path matrix: method, path, secret (`None`: anonymous), headers,
/// signing time, and the status expected (0: whatever s3s answers).
type Case<'a> = (
    &'a str,
    &'a str,
    Option<&'a str>,
    Vec<(&'a str, &'a str)>,
    time::OffsetDateTime,
    u16,
);

/// The fast path answers exactly as the s3s path does — status, headers and bytes — for
/// everything it serves, and leaves everything else (errors included) to s3s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_s3_fast_path_answers_exactly_as_the_s3s_path() {
    let s = setup(MIB, Consistency::Ttl(Duration::from_secs(60))).await;
    let data = pattern(2 * MIB + 5, 3);
    s.origin.put("data", "obj", data.clone());
    s.origin.put("data", "dir/a b+é", pattern(1000, 4));
    let (fast_addr, _stop_fast, fast) = serve_s3_with(&s, true).await;
    let (slow_addr, _stop_slow, _) = serve_s3_with(&s, false).await;
    // Warm the cache, so that both paths see hits.
    for path in ["/data/obj", "/data/dir/a%20b%2B%C3%A9"] {
        let at = time::OffsetDateTime::now_utc();
        assert_eq!(
            send_s3(slow_addr, "GET", path, Some("reader-secret"), &[], at)
                .await
                .0,
            200
        );
    }
    let etag = {
        let (_, hs, _) = send_s3(
            slow_addr,
            "HEAD",
            "/data/obj",
            Some("reader-secret"),
            &[],
            time::OffsetDateTime::now_utc(),
        )
        .await;
        hs.into_iter().find(|(k, _)| k == "etag").expect("etag").1
    };
    let now = time::OffsetDateTime::now_utc();
    let stale = now - time::Duration::minutes(20);
    let ok = Some("reader-secret");
    let cases: Vec<Case> = vec![
        ("GET", "/data/obj", ok, vec![], now, 200),
        (
            "GET",
            "/data/obj",
            ok,
            vec![("range", "bytes=0-9")],
            now,
            206,
        ),
        (
            "GET",
            "/data/obj",
            ok,
            vec![("range", "bytes=1048570-")],
            now,
            206,
        ),
        (
            "GET",
            "/data/obj",
            ok,
            vec![("range", "bytes=-3")],
            now,
            206,
        ),
        (
            "GET",
            "/data/obj",
            ok,
            // Signed, so it cannot be dropped: s3s refuses it (S3 would send the whole object).
            vec![("range", "bytes=0-1,5-6")],
            now,
            400,
        ),
        (
            "GET",
            "/data/obj",
            ok,
            vec![("range", "bytes=0-9300000000000000000")],
            now,
            0,
        ),
        (
            "GET",
            "/data/obj",
            ok,
            vec![("if-modified-since", "Sunday, 06-Nov-94 08:49:37 GMT")],
            now,
            0,
        ),
        (
            "GET",
            "/data/obj",
            ok,
            vec![("range", "bytes=9999999-")],
            now,
            416,
        ),
        ("GET", "/data/obj", ok, vec![("if-match", &etag)], now, 200),
        (
            "GET",
            "/data/obj",
            ok,
            vec![("if-match", "\"nope\"")],
            now,
            412,
        ),
        (
            "GET",
            "/data/obj",
            ok,
            vec![("if-none-match", &etag)],
            now,
            304,
        ),
        (
            "GET",
            "/data/obj",
            ok,
            vec![("if-none-match", "*")],
            now,
            304,
        ),
        (
            "GET",
            "/data/obj",
            ok,
            vec![("if-modified-since", "yesterday")],
            now,
            0,
        ),
        ("HEAD", "/data/obj", ok, vec![], now, 200),
        (
            "HEAD",
            "/data/obj",
            ok,
            vec![("range", "bytes=5-9")],
            now,
            206,
        ),
        ("GET", "/data/dir/a%20b%2B%C3%A9", ok, vec![], now, 200),
        ("GET", "/data/missing", ok, vec![], now, 404),
        ("GET", "/data/obj", Some("wrong-secret"), vec![], now, 403),
        ("GET", "/data/obj", ok, vec![], stale, 403),
        ("GET", "/data/obj", None, vec![], now, 403),
        ("GET", "/other/obj", ok, vec![], now, 403),
    ];
    let mut served = 0;
    for (method, path, secret, headers, at, want) in &cases {
        let before = fast.fast.as_ref().expect("fast").served();
        let a = send_s3(fast_addr, method, path, *secret, headers, *at).await;
        let b = send_s3(slow_addr, method, path, *secret, headers, *at).await;
        let label = format!("{method} {path} {headers:?} secret={secret:?}");
        if *want != 0 {
            assert_eq!(a.0, *want, "{label}");
        }
        assert_eq!(a, b, "{label}: the fast path must answer as s3s does");
        let took = fast.fast.as_ref().expect("fast").served() - before;
        served += took;
        assert!(
            took == 0 || a.0 < 300,
            "{label}: only successes are answered by the fast path"
        );
    }
    assert!(served >= 8, "the plain reads took the fast path ({served})");

    // Authorization spellings s3s refuses are refused the same way.
    let upper: fn(&str) -> String = |a| {
        let (head, sig) = a.split_once("Signature=").expect("sig");
        format!("{head}Signature={}", sig.to_ascii_uppercase())
    };
    let reordered: fn(&str) -> String = |a| {
        let rest = a.strip_prefix("AWS4-HMAC-SHA256 ").expect("v4");
        let mut parts: Vec<&str> = rest.split(", ").collect();
        parts.reverse();
        format!("AWS4-HMAC-SHA256 {}", parts.join(", "))
    };
    for mangle in [upper, reordered] {
        let before = fast.fast.as_ref().expect("fast").served();
        let a = send_s3_as(fast_addr, "GET", "/data/obj", ok, &[], now, mangle).await;
        let b = send_s3_as(slow_addr, "GET", "/data/obj", ok, &[], now, mangle).await;
        assert_eq!(a, b);
        assert!(a.0 >= 400, "{a:?}");
        assert_eq!(fast.fast.as_ref().expect("fast").served(), before);
    }

    // A pipeline error met on the fast path is answered by the s3s path without asking the
    // origin again.
    let asked = || s.origin.reads.load(Ordering::SeqCst) + s.origin.heads.load(Ordering::SeqCst);
    let before = asked();
    let r = send_s3(fast_addr, "GET", "/data/also-missing", ok, &[], now).await;
    assert_eq!((r.0, r.2.as_str()), (404, "NoSuchKey"));
    assert_eq!(asked() - before, 1, "one origin request for a missing key");

    // HTTP/1.1 without a Host header: the URI's authority is not taken for one.
    let before = fast.fast.as_ref().expect("fast").served();
    for addr in [fast_addr, slow_addr] {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut c = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let req = format!("GET http://{addr}/data/obj HTTP/1.1\r\nconnection: close\r\n\r\n");
        c.write_all(req.as_bytes()).await.expect("write");
        let mut out = Vec::new();
        c.read_to_end(&mut out).await.expect("read");
        let status = String::from_utf8_lossy(&out[..12.min(out.len())]).to_string();
        assert!(
            !status.contains(" 200"),
            "an anonymous request to a private bucket without Host: {status}"
        );
    }
    assert_eq!(fast.fast.as_ref().expect("fast").served(), before);
}

/// Sends `method path` as a SigV4 presigned URL for `reader` (made with `secret` at `at`,
/// valid `expires` seconds, signing `params` too), its query rewritten by `mangle`, with
/// `headers` (unsigned).
#[allow(clippy::too_many_arguments)] // reason: one request of a test matrix, spelled out
async fn send_presigned(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    secret: &str,
    expires: u32,
    params: &[(String, String)],
    headers: &[(&str, &str)],
    at: time::OffsetDateTime,
    mangle: &dyn Fn(String) -> String,
) -> (u16, Vec<(String, String)>, String) {
    let host = addr.to_string();
    let query = sigv4::presign(
        &sigv4::Request {
            method,
            host: &host,
            encoded_path: path,
            query: params,
            headers: &[],
            payload_sha256: "UNSIGNED-PAYLOAD",
            time: at,
        },
        &sigv4::Credentials {
            access_key_id: "reader".into(),
            secret_access_key: Secret::new(secret),
            region: "us-east-1".into(),
            service: "s3".into(),
        },
        expires,
    );
    let url = format!("{path}?{}", mangle(query));
    send_s3(addr, method, &url, None, headers, at).await
}

/// Presigned URLs too: the fast path answers the plain ones exactly as s3s does, and leaves
/// every other one (expired, from the future, tampered, another bucket or key, more than a
/// week, extra parameters, `response-*` overrides) to s3s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_s3_fast_path_answers_presigned_urls_exactly_as_the_s3s_path() {
    let s = setup(MIB, Consistency::Ttl(Duration::from_secs(60))).await;
    s.origin.put("data", "obj", pattern(2 * MIB + 5, 3));
    s.origin.put("data", "dir/a b+é", pattern(1000, 4));
    let (fast_addr, _stop_fast, fast) = serve_s3_with(&s, true).await;
    let (slow_addr, _stop_slow, _) = serve_s3_with(&s, false).await;
    let now = time::OffsetDateTime::now_utc();
    for path in ["/data/obj", "/data/dir/a%20b%2B%C3%A9"] {
        assert_eq!(
            send_s3(slow_addr, "GET", path, Some("reader-secret"), &[], now)
                .await
                .0,
            200
        );
    }
    let same = |q: String| q;
    let flip_signature = |q: String| {
        let (head, sig) = q.split_once("X-Amz-Signature=").expect("sig");
        let first = if sig.starts_with('0') { '1' } else { '0' };
        format!("{head}X-Amz-Signature={first}{}", &sig[1..])
    };
    let longer = |q: String| q.replace("X-Amz-Expires=3600", "X-Amz-Expires=3601");
    let extra_id = |q: String| format!("{q}&x-id=GetObject");
    let override_type = |q: String| format!("response-content-type=text%2Fplain&{q}");
    let override_disposition =
        |q: String| format!("{q}&response-content-disposition=attachment%3B%20filename%3Dx");
    let repeated = |q: String| format!("{q}&X-Amz-Expires=3600");
    let token = |q: String| format!("{q}&X-Amz-Security-Token=abc");
    let lower_hex = |q: String| q.replace("%2F", "%2f");
    let unencoded = |q: String| q.replace("%2F", "/");
    let other_key = |q: String| q.replace("reader%2F", "writer%2F");
    let header_too = |q: String| format!("{q}&X-Amz-Date=20130524T000000Z");
    type Mangle<'a> = &'a dyn Fn(String) -> String;
    let hour = 3600;
    let ok = "reader-secret";
    let ago = |m: i64| now - time::Duration::minutes(m);
    type Case<'a> = (
        &'a str,
        &'a str,
        &'a str,
        u32,
        Vec<(&'a str, &'a str)>,
        time::OffsetDateTime,
        Mangle<'a>,
        u16,
    );
    let cases: Vec<Case> = vec![
        ("GET", "/data/obj", ok, hour, vec![], now, &same, 200),
        (
            "GET",
            "/data/obj",
            ok,
            hour,
            vec![("range", "bytes=0-4095")],
            now,
            &same,
            206,
        ),
        (
            "GET",
            "/data/obj",
            ok,
            hour,
            vec![("range", "bytes=-3")],
            ago(59),
            &same,
            206,
        ),
        (
            "GET",
            "/data/obj",
            ok,
            604_800,
            vec![],
            ago(60 * 24 * 6),
            &same,
            200,
        ),
        ("HEAD", "/data/obj", ok, hour, vec![], now, &same, 200),
        (
            "GET",
            "/data/dir/a%20b%2B%C3%A9",
            ok,
            hour,
            vec![],
            now,
            &same,
            200,
        ),
        (
            "GET",
            "/data/obj",
            ok,
            hour,
            vec![("if-none-match", "*")],
            now,
            &same,
            304,
        ),
        // Ranges S3 ignores, unsigned here: the whole object, as S3 sends it.
        (
            "GET",
            "/data/obj",
            ok,
            hour,
            vec![("range", "bytes=0-1,5-6")],
            now,
            &same,
            200,
        ),
        (
            "HEAD",
            "/data/obj",
            ok,
            hour,
            vec![("range", "bytes=5-2")],
            now,
            &same,
            200,
        ),
        ("GET", "/data/missing", ok, hour, vec![], now, &same, 404),
        // Expired, and signed too far in the future.
        ("GET", "/data/obj", ok, hour, vec![], ago(61), &same, 403),
        ("GET", "/data/obj", ok, 60, vec![], ago(2), &same, 403),
        (
            "GET",
            "/data/obj",
            ok,
            hour,
            vec![],
            now + time::Duration::minutes(20),
            &same,
            403,
        ),
        // Longer than a week: refused before any verification.
        ("GET", "/data/obj", ok, 604_801, vec![], now, &same, 400),
        // Tampered.
        (
            "GET",
            "/data/obj",
            ok,
            hour,
            vec![],
            now,
            &flip_signature,
            403,
        ),
        ("GET", "/data/obj", ok, hour, vec![], now, &longer, 403),
        (
            "GET",
            "/data/obj",
            "wrong-secret",
            hour,
            vec![],
            now,
            &same,
            403,
        ),
        ("GET", "/data/obj", ok, hour, vec![], now, &other_key, 403),
        ("GET", "/other/obj", ok, hour, vec![], now, &same, 403),
        // Other parameters, other spellings: whatever s3s says.
        ("GET", "/data/obj", ok, hour, vec![], now, &extra_id, 0),
        ("GET", "/data/obj", ok, hour, vec![], now, &override_type, 0),
        (
            "GET",
            "/data/obj",
            ok,
            hour,
            vec![("range", "bytes=0-9")],
            now,
            &override_disposition,
            0,
        ),
        ("GET", "/data/obj", ok, hour, vec![], now, &repeated, 0),
        ("GET", "/data/obj", ok, hour, vec![], now, &token, 0),
        ("GET", "/data/obj", ok, hour, vec![], now, &lower_hex, 0),
        ("GET", "/data/obj", ok, hour, vec![], now, &unencoded, 0),
        ("GET", "/data/obj", ok, hour, vec![], now, &header_too, 0),
        (
            "GET",
            "/data/obj",
            ok,
            hour,
            vec![("x-amz-content-sha256", "UNSIGNED-PAYLOAD")],
            now,
            &same,
            0,
        ),
    ];
    let mut served = 0;
    let none: &[(String, String)] = &[];
    for (i, (method, path, secret, expires, headers, at, mangle, want)) in cases.iter().enumerate()
    {
        let before = fast.fast.as_ref().expect("fast").served();
        let a = send_presigned(
            fast_addr, method, path, secret, *expires, none, headers, *at, *mangle,
        )
        .await;
        let b = send_presigned(
            slow_addr, method, path, secret, *expires, none, headers, *at, *mangle,
        )
        .await;
        let label = format!("case {i}: {method} {path} {headers:?}");
        if *want != 0 {
            assert_eq!(a.0, *want, "{label}: {a:?}");
        }
        assert_eq!(a, b, "{label}: the fast path must answer as s3s does");
        let took = fast.fast.as_ref().expect("fast").served() - before;
        served += took;
        assert!(
            took == 0 || a.0 < 300,
            "{label}: only successes are answered by the fast path"
        );
        if i >= 19 {
            assert_eq!(took, 0, "{label}: other parameters are for s3s");
        }
    }
    assert!(
        served >= 6,
        "the plain presigned reads took the fast path ({served})"
    );
    // Signed overrides and other signed parameters are s3s's to answer (it honours them).
    let p = |k: &str, v: &str| (k.to_string(), v.to_string());
    let signed: [(Vec<(String, String)>, u16); 4] = [
        (vec![p("response-content-type", "text/plain")], 200),
        (
            vec![p("response-content-disposition", "attachment; filename=x")],
            200,
        ),
        (
            vec![
                p("response-cache-control", "no-store"),
                p("response-expires", "Thu, 01 Dec 1994 16:00:00 GMT"),
            ],
            200,
        ),
        (vec![p("x-id", "GetObject")], 200),
    ];
    for (params, want) in &signed {
        let before = fast.fast.as_ref().expect("fast").served();
        let a = send_presigned(
            fast_addr,
            "GET",
            "/data/obj",
            ok,
            hour,
            params,
            &[],
            now,
            &same,
        )
        .await;
        let b = send_presigned(
            slow_addr,
            "GET",
            "/data/obj",
            ok,
            hour,
            params,
            &[],
            now,
            &same,
        )
        .await;
        assert_eq!(a.0, *want, "{params:?}: {a:?}");
        assert_eq!(a, b, "{params:?}");
        assert_eq!(
            fast.fast.as_ref().expect("fast").served(),
            before,
            "{params:?}"
        );
    }
    let whole = send_presigned(
        fast_addr,
        "GET",
        "/data/obj",
        ok,
        hour,
        &signed[0].0,
        &[],
        now,
        &same,
    )
    .await;
    assert!(
        whole.1.contains(&p("content-type", "text/plain")),
        "{whole:?}"
    );
    // A Range S3 ignores, unsigned, on the s3s path (a signed override keeps it there): the
    // whole object too.
    let multi = [("range", "bytes=0-1,5-6")];
    for addr in [fast_addr, slow_addr] {
        let r = send_presigned(
            addr,
            "GET",
            "/data/obj",
            ok,
            hour,
            &signed[0].0,
            &multi,
            now,
            &same,
        )
        .await;
        assert_eq!(r, whole, "{r:?}");
    }
}

/// Sends a GET signed with our own SigV4 signer, so s3s's verifier checks the signer too.
async fn signed_get(
    addr: std::net::SocketAddr,
    path: &str,
    secret: &str,
    range: Option<&str>,
) -> reqwest::Response {
    let host = addr.to_string();
    let creds = sigv4::Credentials {
        access_key_id: "reader".into(),
        secret_access_key: Secret::new(secret),
        region: "us-east-1".into(),
        service: "s3".into(),
    };
    let headers: Vec<(&str, &str)> = range.map(|r| ("range", r)).into_iter().collect();
    let sig = sigv4::sign(
        &sigv4::Request {
            method: "GET",
            host: &host,
            encoded_path: path,
            query: &[],
            headers: &headers,
            payload_sha256: sigv4::EMPTY_SHA256,
            time: time::OffsetDateTime::now_utc(),
        },
        &creds,
    );
    let mut req = reqwest::Client::new()
        .get(format!("http://{host}{path}"))
        .header("authorization", sig.authorization)
        .header("x-amz-date", sig.amz_date)
        .header("x-amz-content-sha256", sigv4::EMPTY_SHA256);
    if let Some(r) = range {
        req = req.header("range", r);
    }
    req.send().await.expect("send")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_s3_front_authenticates_every_request_hits_included() {
    let s = setup(MIB, Consistency::Ttl(Duration::from_secs(60))).await;
    let data = pattern(2 * MIB, 7);
    s.origin.put("data", "obj", data.clone());
    let (addr, _stop) = serve_s3(&s).await;

    let r = signed_get(
        addr,
        "/data/obj",
        "reader-secret",
        Some("bytes=1048570-1048580"),
    )
    .await;
    assert_eq!(r.status(), 206);
    assert_eq!(
        r.headers()["content-range"],
        "bytes 1048570-1048580/2097152"
    );
    assert_eq!(r.headers()["x-cistern-cache"], "miss");
    assert_eq!(
        &r.bytes().await.expect("body")[..],
        &data[1_048_570..=1_048_580]
    );

    let r = signed_get(
        addr,
        "/data/obj",
        "reader-secret",
        Some("bytes=1048570-1048580"),
    )
    .await;
    assert_eq!(r.headers()["x-cistern-cache"], "hit");
    let reads = s.origin.reads.load(Ordering::SeqCst);

    let r = signed_get(
        addr,
        "/data/obj",
        "wrong-secret",
        Some("bytes=1048570-1048580"),
    )
    .await;
    assert_eq!(
        r.status(),
        403,
        "a wrong signature on a cached object is refused"
    );
    assert!(r
        .text()
        .await
        .expect("body")
        .contains("SignatureDoesNotMatch"));

    let r = reqwest::get(format!("http://{addr}/data/obj"))
        .await
        .expect("anonymous");
    assert_eq!(
        r.status(),
        403,
        "anonymous reads of a private bucket are refused"
    );

    let r = reqwest::Client::new()
        .get(format!("http://{addr}/data/obj"))
        .header("authorization", "AWS reader:c2lnbmF0dXJl")
        .header(
            "date",
            httpdate::fmt_http_date(std::time::SystemTime::now()),
        )
        .send()
        .await
        .expect("sigv2");
    assert_eq!(r.status(), 400);
    assert!(
        r.text().await.expect("body").contains("AWS4-HMAC-SHA256"),
        "SigV2 gets a clear error"
    );

    assert_eq!(
        s.origin.reads.load(Ordering::SeqCst),
        reads,
        "refused requests never reach the origin"
    );
}

/// A Blob request for `/acct/data/<key>` signed with Shared Key by our own signer.
fn blob_request(
    key: &str,
    account_key: &[u8],
    date: std::time::SystemTime,
) -> http::request::Parts {
    use cistern_auth::sharedkey::{self, Scheme};
    let path = format!("/acct/data/{key}");
    let date = httpdate::fmt_http_date(date);
    let headers = [("x-ms-date", date.as_str()), ("x-ms-version", "2025-11-05")];
    let auth = sharedkey::authorization(
        &sharedkey::Request {
            method: "GET",
            account: "acct",
            raw_path: &path,
            raw_query: "",
            headers: &headers,
        },
        Scheme::SharedKey,
        account_key,
    );
    let (parts, ()) = http::Request::get(path)
        .header("host", "127.0.0.1:10000")
        .header("x-ms-date", date)
        .header("x-ms-version", "2025-11-05")
        .header("authorization", auth)
        .body(())
        .expect("request")
        .into_parts();
    parts
}

pub(crate) fn empty() -> crate::blob::RequestBody {
    futures::stream::empty().boxed()
}

pub(crate) async fn blob_body(b: crate::blob::BlobBody) -> Vec<u8> {
    use http_body_util::BodyExt;
    b.collect().await.expect("body").to_bytes().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_blob_front_serves_hits_without_the_origin_and_maps_failures() {
    use base64::Engine as _;
    let s = setup(MIB, Consistency::Immutable).await;
    let data = pattern(3 * MIB + 5, 9);
    s.origin.put("data", "obj", data.clone());
    let key = b"blob-front-test-key".to_vec();
    let policy = Arc::new(Policy::new([Principal {
        access_key: "acct".into(),
        secret: Secret::new(base64::engine::general_purpose::STANDARD.encode(&key)),
        buckets: BucketScope::Only(vec!["data".into()]),
        permissions: [Permission::Read, Permission::List].into_iter().collect(),
    }]));
    let front = crate::blob::BlobFront::new(Arc::clone(&s.pipeline), policy, vec![]);
    let now = std::time::SystemTime::now();

    let h = front
        .handle(&blob_request("obj", &key, now), empty(), None, "r1")
        .await;
    assert_eq!(h.op, "GetBlob");
    assert_eq!(h.response.status(), 200);
    assert_eq!(h.response.headers()["x-cistern-cache"], "miss");
    assert_eq!(blob_body(h.response.into_body()).await, data);
    let reads = s.origin.reads.load(Ordering::SeqCst);

    // A hit: authenticated again, served without the origin.
    let h = front
        .handle(&blob_request("obj", &key, now), empty(), None, "r2")
        .await;
    assert_eq!(h.response.headers()["x-cistern-cache"], "hit");
    assert_eq!(blob_body(h.response.into_body()).await, data);
    assert_eq!(s.origin.reads.load(Ordering::SeqCst), reads);

    // A hit is not served to a wrong key or a skewed clock.
    for parts in [
        blob_request("obj", b"another-key", now),
        blob_request("obj", &key, now - Duration::from_secs(20 * 60)),
    ] {
        let h = front.handle(&parts, empty(), None, "r3").await;
        assert_eq!(h.response.status(), 403);
        assert_eq!(
            h.response.headers()["x-ms-error-code"],
            "AuthenticationFailed"
        );
        let b = blob_body(h.response.into_body()).await;
        assert!(b.starts_with(b"<?xml"), "{}", String::from_utf8_lossy(&b));
    }

    // An origin that keeps failing costs a retryable Azure error, not a 500 or a panic.
    s.origin.put("data", "broken", pattern(10, 1));
    s.origin.fail_next.store(100, Ordering::SeqCst);
    let h = front
        .handle(&blob_request("broken", &key, now), empty(), None, "r4")
        .await;
    assert_eq!(h.response.status(), 503);
    assert_eq!(h.response.headers()["x-ms-error-code"], "ServerBusy");
    let b = blob_body(h.response.into_body()).await;
    assert!(String::from_utf8_lossy(&b).contains("RequestId:r4"));
    assert!(
        !String::from_utf8_lossy(&b).contains("injected"),
        "internals never leak"
    );
}

#[tokio::test]
async fn populate_on_write_serves_the_written_object_without_reading_it_back() {
    let s = setup_with(MIB, Consistency::Ttl(Duration::from_secs(60)), true).await;
    let data = pattern(5 * MIB + 100, 9);
    // Pieces of odd sizes, as a client sends them.
    let pieces: Vec<Result<Bytes, crate::error::Error>> = data
        .chunks(300_000)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    s.pipeline
        .put(
            &s.bucket,
            "ckpt",
            crate::origin::Upload {
                body: futures::stream::iter(pieces).boxed(),
                len: data.len() as u64,
            },
            &crate::origin::PutOptions::default(),
        )
        .await
        .expect("put");
    let heads = s.origin.heads.load(Ordering::SeqCst);
    assert!(
        heads <= 1,
        "one HEAD for the new version's metadata, got {heads}"
    );
    let r = s
        .pipeline
        .get(&s.bucket, "ckpt", Selection::All, &Conditions::default())
        .await
        .expect("get");
    assert_eq!(r.cache, CacheStatus::Hit);
    assert_eq!(body(r).await, &data[..]);
    assert_eq!(
        s.origin.reads.load(Ordering::SeqCst),
        0,
        "nothing read back"
    );
    assert_eq!(
        s.metrics.populated_bytes.get(),
        data.len() as u64,
        "every chunk kept"
    );
}
