//! In-process tests of the S3 front's wire shapes over real HTTP, through both the fast path
//! and the s3s path: SigV4 timed by `Date`, error documents that name their request, reads of a
//! delete marker, and what anonymous callers learn of buckets.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cistern_auth::policy::{BucketScope, Permission, Permissions, Policy, Principal};
use cistern_auth::{sigv4, Secret};
use cistern_cache::{ChunkStore, Consistency, StoreConfig};
use sha2::{Digest, Sha256};

use crate::metrics::Metrics;
use crate::origin::Origin;
use crate::pipeline::{AutoExpose, BucketBinding, Catalog, Pipeline, PipelineConfig};
use crate::testing::MemOrigin;

const SECRET: &str = "reader-secret";

/// A pipeline over in-memory origins: `data` (private) and `pub` (public_read) on `origin`,
/// and every bucket of `auto` exposed under its own name (not public).
struct Front {
    origin: MemOrigin,
    auto: MemOrigin,
    pipeline: Arc<Pipeline>,
    metrics: Metrics,
}

async fn front() -> Front {
    let origin = MemOrigin::default();
    let auto = MemOrigin::default();
    let metrics = Metrics::new().expect("metrics");
    let store = ChunkStore::open(
        &StoreConfig {
            dir: None,
            memory_bytes: 64 << 20,
            disk_bytes: 0,
            chunk_size: 1 << 20,
            piece_size: 4096,
        },
        &metrics.registry,
    )
    .await
    .expect("store");
    let bind = |name: &str, public_read: bool| BucketBinding {
        name: name.into(),
        origin: Arc::new(origin.clone()) as Arc<dyn Origin>,
        origin_name: Arc::from("mem"),
        origin_bucket: Arc::from(name),
        consistency: Consistency::Ttl(Duration::from_secs(60)),
        public_read,
        populate_on_write: false,
        cache_only: false,
    };
    let catalog = Catalog::new(
        vec![bind("data", false), bind("pub", true)],
        vec![AutoExpose {
            origin: Arc::new(auto.clone()),
            origin_name: Arc::from("auto"),
            consistency: Consistency::Ttl(Duration::from_secs(60)),
            public_read: false,
            populate_on_write: false,
        }],
    );
    let pipeline = Arc::new(Pipeline::new(
        catalog,
        store,
        PipelineConfig::new(1 << 20, 4),
        metrics.clone(),
    ));
    Front {
        origin,
        auto,
        pipeline,
        metrics,
    }
}

/// Serves the S3 front on port 0 (with or without the fast path) for one principal, `reader`,
/// that may read and list every bucket.
async fn serve(
    f: &Front,
    fast: bool,
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    Arc<crate::s3::S3Endpoint>,
) {
    let policy = Arc::new(Policy::new([Principal {
        access_key: "reader".into(),
        secret: Secret::new(SECRET),
        buckets: BucketScope::All,
        permissions: [Permission::Read, Permission::List]
            .into_iter()
            .collect::<Permissions>(),
    }]));
    let mut svc = crate::s3::service(Arc::clone(&f.pipeline), policy, vec![], "us-east-1".into());
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
        f.metrics.clone(),
        crate::server::Limits::default(),
        async move {
            let _ = rx.await;
        },
    ));
    (addr, tx, svc)
}

/// What a client saw.
struct Seen {
    status: u16,
    headers: http::HeaderMap,
    body: String,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The text of the error document's `<name>`.
    fn field(&self, name: &str) -> Option<&str> {
        let open = format!("<{name}>");
        let start = self.body.find(&open)? + open.len();
        let end = self.body[start..].find(&format!("</{name}>"))? + start;
        Some(&self.body[start..end])
    }
}

async fn send(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(String, String)],
) -> Seen {
    let m = http::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = reqwest::Client::new().request(m, format!("http://{addr}{path}"));
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let r = req.send().await.expect("send");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = String::from_utf8_lossy(&r.bytes().await.expect("body")).into_owned();
    Seen {
        status,
        headers,
        body,
    }
}

/// Headers of a request signed for `reader` with the x-amz-date our own signer sends.
fn amz_signed(addr: std::net::SocketAddr, method: &str, path: &str) -> Vec<(String, String)> {
    let host = addr.to_string();
    let sig = sigv4::sign(
        &sigv4::Request {
            method,
            host: &host,
            encoded_path: path,
            query: &[],
            headers: &[],
            payload_sha256: sigv4::EMPTY_SHA256,
            time: time::OffsetDateTime::now_utc(),
        },
        &sigv4::Credentials {
            access_key_id: "reader".into(),
            secret_access_key: Secret::new(SECRET),
            region: "us-east-1".into(),
            service: "s3".into(),
        },
    );
    vec![
        ("authorization".into(), sig.authorization),
        ("x-amz-date".into(), sig.amz_date),
        ("x-amz-content-sha256".into(), sigv4::EMPTY_SHA256.into()),
    ]
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |b: u8| k.iter().map(|x| x ^ b).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .to_vec()
}

/// Headers of a request signed as botocore signs one that carries `Date`: `date` among the
/// signed headers, no `x-amz-date`, the string-to-sign timed by `at`. `sent_date` is the
/// `Date` value sent (the one signed unless `tamper`).
fn date_signed(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    at: time::OffsetDateTime,
    secret: &str,
    tamper: Option<&str>,
) -> Vec<(String, String)> {
    let host = addr.to_string();
    // Python's email.utils.formatdate(), as botocore writes it.
    let date = at
        .format(time::macros::format_description!(
            "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] -0000"
        ))
        .expect("date");
    let amz = sigv4::amz_date(at);
    let canonical = format!(
        "{method}\n{path}\n\ndate:{date}\nhost:{host}\nx-amz-content-sha256:{}\n\ndate;host;x-amz-content-sha256\n{}",
        sigv4::EMPTY_SHA256,
        sigv4::EMPTY_SHA256
    );
    let scope = format!("{}/us-east-1/s3/aws4_request", &amz[..8]);
    let sts = format!(
        "AWS4-HMAC-SHA256\n{amz}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let key = sigv4::signing_key(&Secret::new(secret), &amz[..8], "us-east-1", "s3");
    let sig = hex::encode(hmac_sha256(&key, sts.as_bytes()));
    vec![
        (
            "authorization".into(),
            format!(
                "AWS4-HMAC-SHA256 Credential=reader/{scope}, SignedHeaders=date;host;x-amz-content-sha256, Signature={sig}"
            ),
        ),
        ("date".into(), tamper.unwrap_or(&date).to_string()),
        ("x-amz-content-sha256".into(), sigv4::EMPTY_SHA256.into()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signature_timed_by_date_is_verified_as_aws_verifies_it() {
    let f = front().await;
    f.origin
        .put("data", "obj", Bytes::from_static(b"dated bytes"));
    for fast in [true, false] {
        let (addr, _stop, svc) = serve(&f, fast).await;
        let now = time::OffsetDateTime::now_utc();
        // The same moment written another way, and a second later: both in the skew window.
        let later = httpdate::fmt_http_date((now + time::Duration::seconds(1)).into());
        let served = || svc.fast.as_ref().map_or(0, |p| p.served());
        let before = served();
        let ok = send(
            addr,
            "GET",
            "/data/obj",
            &date_signed(addr, "GET", "/data/obj", now, SECRET, None),
        )
        .await;
        assert_eq!(
            (ok.status, ok.body.as_str()),
            (200, "dated bytes"),
            "fast={fast}"
        );
        if fast {
            assert_eq!(served(), before + 1, "the fast path verified it itself");
        }
        let head = send(
            addr,
            "HEAD",
            "/data/obj",
            &date_signed(addr, "HEAD", "/data/obj", now, SECRET, None),
        )
        .await;
        assert_eq!(head.status, 200, "fast={fast}");

        let refused = [
            // Wrong secret.
            (
                date_signed(addr, "GET", "/data/obj", now, "not-the-secret", None),
                403,
                "SignatureDoesNotMatch",
            ),
            // A Date other than the one signed.
            (
                date_signed(addr, "GET", "/data/obj", now, SECRET, Some(&later)),
                403,
                "SignatureDoesNotMatch",
            ),
            // Signed 20 minutes ago: the skew check applies to Date as to x-amz-date.
            (
                date_signed(
                    addr,
                    "GET",
                    "/data/obj",
                    now - time::Duration::minutes(20),
                    SECRET,
                    None,
                ),
                403,
                "RequestTimeTooSkewed",
            ),
            (
                date_signed(addr, "GET", "/data/obj", now, SECRET, Some("Bad Date")),
                403,
                "AccessDenied",
            ),
        ];
        for (headers, status, code) in refused {
            let r = send(addr, "GET", "/data/obj", &headers).await;
            assert_eq!(
                (r.status, r.field("Code")),
                (status, Some(code)),
                "fast={fast} {headers:?}: {}",
                r.body
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_documents_name_their_request_bucket_and_key() {
    let f = front().await;
    f.origin.put("data", "obj", Bytes::from_static(b"x"));
    for fast in [true, false] {
        let (addr, _stop, _) = serve(&f, fast).await;
        let cases = [
            (
                "GET",
                "/data/missing%20key",
                amz_signed(addr, "GET", "/data/missing%20key"),
                404,
                "NoSuchKey",
                Some(("Key", "missing key")),
            ),
            (
                "GET",
                "/nosuch/k",
                amz_signed(addr, "GET", "/nosuch/k"),
                404,
                "NoSuchBucket",
                Some(("BucketName", "nosuch")),
            ),
            (
                "GET",
                "/nosuch",
                amz_signed(addr, "GET", "/nosuch"),
                404,
                "NoSuchBucket",
                Some(("BucketName", "nosuch")),
            ),
            // Refused before s3s (an expired presign's region): the early path too.
            (
                "GET",
                "/data/obj",
                vec![(
                    "authorization".into(),
                    "AWS4-HMAC-SHA256 Credential=reader/20260101/eu-west-1/s3/aws4_request, SignedHeaders=host, Signature=00".into(),
                )],
                400,
                "AuthorizationHeaderMalformed",
                None,
            ),
            ("PUT", "/data/obj", vec![], 403, "AccessDenied", None),
        ];
        for (method, path, headers, status, code, named) in cases {
            let r = send(addr, method, path, &headers).await;
            assert_eq!(
                (r.status, r.field("Code")),
                (status, Some(code)),
                "fast={fast} {method} {path}: {}",
                r.body
            );
            let rid = r.header("x-amz-request-id").expect("request id");
            assert_eq!(r.field("RequestId"), Some(rid), "{path}: {}", r.body);
            assert_eq!(r.body.matches("<RequestId>").count(), 1, "{}", r.body);
            if let Some((el, v)) = named {
                assert_eq!(r.field(el), Some(v), "{path}: {}", r.body);
            }
            // The document is whole: what was spliced in is inside <Error>.
            assert!(r.body.trim_end().ends_with("</Error>"), "{}", r.body);
            assert_eq!(
                r.header("content-length").and_then(|v| v.parse().ok()),
                Some(r.body.len()),
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_marker_reads_as_s3_answers_it_and_is_never_cached() {
    let f = front().await;
    f.origin.put("data", "gone", Bytes::from_static(b"x"));
    f.origin.delete_with_marker("data", "gone", "marker-v1");
    for fast in [true, false] {
        let (addr, _stop, _) = serve(&f, fast).await;
        for method in ["HEAD", "GET", "HEAD"] {
            let asked =
                f.origin.heads.load(Ordering::SeqCst) + f.origin.reads.load(Ordering::SeqCst);
            let r = send(
                addr,
                method,
                "/data/gone",
                &amz_signed(addr, method, "/data/gone"),
            )
            .await;
            assert_eq!(r.status, 404, "fast={fast} {method}");
            assert_eq!(r.header("x-amz-delete-marker"), Some("true"), "{method}");
            assert_eq!(r.header("x-amz-version-id"), Some("marker-v1"), "{method}");
            if method == "GET" {
                assert_eq!(r.field("Code"), Some("NoSuchKey"));
                assert_eq!(r.header("content-type"), Some("application/xml"));
            }
            assert!(
                f.origin.heads.load(Ordering::SeqCst) + f.origin.reads.load(Ordering::SeqCst)
                    > asked,
                "the origin is asked every time"
            );
        }
    }
    // Written again: readable at once.
    f.origin.put("data", "gone", Bytes::from_static(b"back"));
    let (addr, _stop, _) = serve(&f, true).await;
    let r = send(
        addr,
        "GET",
        "/data/gone",
        &amz_signed(addr, "GET", "/data/gone"),
    )
    .await;
    assert_eq!((r.status, r.body.as_str()), (200, "back"));
    assert_eq!(r.header("x-amz-delete-marker"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_callers_learn_what_s3_tells_them() {
    let f = front().await;
    f.origin.put("data", "obj", Bytes::from_static(b"private"));
    f.origin.put("pub", "obj", Bytes::from_static(b"public"));
    f.auto.put("autob", "obj", Bytes::from_static(b"auto"));
    for fast in [true, false] {
        let (addr, _stop, _) = serve(&f, fast).await;
        let asked =
            || f.origin.heads.load(Ordering::SeqCst) + f.origin.reads.load(Ordering::SeqCst);
        for (method, path, status, code) in [
            ("GET", "/data/obj", 403, Some("AccessDenied")),
            ("HEAD", "/data/obj", 403, None),
            ("GET", "/data", 403, Some("AccessDenied")),
            ("GET", "/data/missing", 403, Some("AccessDenied")),
            ("GET", "/autob/obj", 403, Some("AccessDenied")),
            ("GET", "/autob/missing", 403, Some("AccessDenied")),
            ("GET", "/nosuch/obj", 404, Some("NoSuchBucket")),
            ("HEAD", "/nosuch/obj", 404, None),
            ("GET", "/nosuch?list-type=2", 404, Some("NoSuchBucket")),
            ("GET", "/pub/obj", 200, None),
            ("GET", "/pub/missing", 404, Some("NoSuchKey")),
            ("HEAD", "/pub/missing", 404, None),
            ("GET", "/", 403, Some("AccessDenied")),
        ] {
            let before = asked();
            let r = send(addr, method, path, &[]).await;
            assert_eq!(
                (r.status, r.field("Code")),
                (status, code),
                "fast={fast} {method} {path}: {}",
                r.body
            );
            if path.starts_with("/data") {
                // A configured private bucket is refused without asking its origin.
                assert_eq!(asked(), before, "{method} {path}");
            }
        }
    }
}
