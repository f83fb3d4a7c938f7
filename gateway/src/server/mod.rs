//! Listeners: the S3 and Blob fronts (each on its port, or both on one with per-request
//! dialect detection) and the admin endpoints, each `run(listener, shutdown)` on a bound
//! socket so tests can use port 0. SIGTERM-style shutdown stops accepting and drains.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Either;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

mod access;
mod body;

pub use body::{body_timed_out, is_body_timeout, BodyTimeout, TimedBody};

use crate::blob::{BlobBody, BlobFront};
use crate::metrics::Metrics;
use crate::s3::auth::OpSlot;
use crate::s3::error::{complete_error_body, early_response, refuse_early, ErrorContext};
use crate::s3::fast::Outcome;
use crate::s3::S3Endpoint;
use access::{request_id, Recorder};
use body::{request_body, sized};

/// What a client may take and send before the listener gives up on it (`[server]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Time to send a request's head: from the connection's start, or from the end of the
    /// previous response on a kept-alive connection. HTTP/1 only (h2 frames have no
    /// equivalent); the wait for a new connection's first bytes counts for both.
    pub header_read_timeout: Duration,
    /// Longest wait for the next piece of a request body while the server asks for it.
    pub body_read_timeout: Duration,
    /// Largest request head (HTTP/1 request line and headers; HTTP/2 header list): more is
    /// `431 Request Header Fields Too Large` and the connection is closed.
    pub max_header_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(60),
            max_header_bytes: 64 << 10,
        }
    }
}

/// How long in-flight requests may take to finish after shutdown begins.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves the S3 dialect on `listener` until `shutdown` resolves, then drains.
pub async fn run_s3(
    listener: TcpListener,
    svc: Arc<S3Endpoint>,
    metrics: Metrics,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    // One `Arc` per request, not a clone of every metric handle (2 % of a 4 KiB hit's CPU).
    let rec = Arc::new(Recorder::new(metrics));
    serve(listener, limits, shutdown, move |req, _peer| {
        let (svc, rec) = (Arc::clone(&svc), Arc::clone(&rec));
        async move { Ok::<_, Infallible>(handle_s3(&svc, &rec, limits, req).await) }
    })
    .await;
}

async fn handle_s3(
    front: &S3Endpoint,
    rec: &Recorder,
    limits: Limits,
    mut req: http::Request<Incoming>,
) -> http::Response<s3s::Body> {
    let start = Instant::now();
    let rid = request_id();
    let method = req.method().clone();
    // Shares the request's bytes (no copy of the path).
    let uri = req.uri().clone();
    // For error documents: where the request was addressed.
    let host = req.headers().get(http::header::HOST).cloned();
    let copy = req.headers().contains_key("x-amz-copy-source");

    let mut early = refuse_early(
        req.method(),
        req.headers(),
        req.uri().query(),
        &front.region,
    );
    if early.is_none() {
        early = crate::s3::auth::date_for_sigv4(req.headers_mut());
        crate::s3::auth::drop_ignored_range(&method, req.headers_mut(), uri.query());
    }
    let fast = match (&early, &front.fast) {
        (None, Some(fast)) => fast.serve(&req).await,
        _ => Outcome::Declined,
    };
    let mut fast_op = None;
    let fast = match fast {
        Outcome::Served(op, resp) => {
            fast_op = Some(op);
            Some(resp)
        }
        Outcome::Failed(f) => {
            req.extensions_mut().insert(f);
            None
        }
        Outcome::Declined => None,
    };
    // The s3s path names the operation it ran in this slot (the fast path returned it).
    let mut slot = None;
    if early.is_none() && fast.is_none() {
        let s = OpSlot::default();
        req.extensions_mut().insert(s.clone());
        slot = Some(s);
        if let Some(at) = front.placer.place(&req).await {
            req.extensions_mut().insert(at);
        }
    }
    let mut resp = match (early, fast) {
        (Some((status, code, msg)), _) => early_response(status, code, &msg, &rid),
        (None, Some(resp)) => resp,
        (None, None) => match sized(req, limits.body_read_timeout, &rid).await {
            Err(refused) => refused,
            Ok(req) => match front.service.call(req).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = ?e, "s3 service failed");
                    early_response(
                        http::StatusCode::INTERNAL_SERVER_ERROR,
                        "InternalError",
                        "We encountered an internal error. Please try again.",
                        &rid,
                    )
                }
            },
        },
    };
    // s3s 0.14 derives HEAD's status from the output alone (always 200); a ranged HEAD is
    // a 206, as S3 answers it.
    if method == http::Method::HEAD
        && resp.status() == http::StatusCode::OK
        && resp.headers().contains_key(http::header::CONTENT_RANGE)
    {
        *resp.status_mut() = http::StatusCode::PARTIAL_CONTENT;
    }
    let failed = resp.status().is_client_error() || resp.status().is_server_error();
    if failed && method != http::Method::HEAD {
        let (bucket, key) = match copy {
            // A copy's error may be about its source: name neither.
            true => (None, None),
            false => request_target(&front.hosts, host.as_ref(), uri.path()),
        };
        let cx = ErrorContext {
            request_id: &rid,
            bucket: bucket.as_deref(),
            key: key.as_deref(),
        };
        complete_error(&mut resp, cx).await;
    }
    if let Ok(v) = http::HeaderValue::from_str(&rid) {
        resp.headers_mut().insert("x-amz-request-id", v);
    }
    let op = match (fast_op, &slot) {
        (Some(op), _) => op,
        (None, Some(s)) => s.0.get().map_or("unknown", String::as_str),
        (None, None) => "unknown",
    };
    rec.record("s3", &rid, &method, uri.path(), op, &resp, start);
    resp
}

/// Error documents larger than this are left as they are (S3's are a few hundred bytes).
const ERROR_DOC_MAX: usize = 64 << 10;

/// Completes an S3 error document with the request id (and bucket or key) — see
/// [`complete_error_body`]. Documents s3s rendered are in memory; a relayed origin's is read
/// first when it is small and of known length.
async fn complete_error(resp: &mut http::Response<s3s::Body>, cx: ErrorContext<'_>) {
    let xml = resp
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("xml"));
    if !xml {
        return;
    }
    let body = match resp.body().bytes() {
        Some(b) => b,
        None => {
            let small = http_body::Body::size_hint(resp.body())
                .upper()
                .is_some_and(|n| n <= ERROR_DOC_MAX as u64);
            if !small {
                return;
            }
            match resp.body_mut().store_all_limited(ERROR_DOC_MAX).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::debug!(error = %e, "origin error document broke off");
                    return;
                }
            }
        }
    };
    if let Some(done) = complete_error_body(&body, cx) {
        resp.headers_mut().remove(http::header::CONTENT_LENGTH);
        *resp.body_mut() = s3s::Body::from(done);
    }
}

/// The bucket and key a request names (virtual-hosted under a configured domain, else
/// path-style), decoded; `None` where it names none.
fn request_target(
    hosts: &crate::s3::host::Hosts,
    host: Option<&http::HeaderValue>,
    raw_path: &str,
) -> (Option<String>, Option<String>) {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .ok()
            .map(|c| c.into_owned())
            .filter(|s| !s.is_empty())
    };
    let path = raw_path.strip_prefix('/').unwrap_or(raw_path);
    match host
        .and_then(|h| h.to_str().ok())
        .and_then(|h| hosts.bucket_of(h))
    {
        Some(b) => (Some(b.to_string()), decode(path)),
        None => match path.split_once('/') {
            Some((b, k)) => (decode(b), decode(k)),
            None => (decode(path), None),
        },
    }
}

/// Serves the Blob dialect on `listener` until `shutdown` resolves, then drains.
pub async fn run_blob(
    listener: TcpListener,
    front: Arc<BlobFront>,
    metrics: Metrics,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let rec = Arc::new(Recorder::new(metrics));
    serve(listener, limits, shutdown, move |req, peer| {
        let (front, rec) = (Arc::clone(&front), Arc::clone(&rec));
        async move { Ok::<_, Infallible>(handle_blob(&front, &rec, limits, req, peer).await) }
    })
    .await;
}

async fn handle_blob(
    front: &BlobFront,
    rec: &Recorder,
    limits: Limits,
    req: http::Request<Incoming>,
    peer: SocketAddr,
) -> http::Response<BlobBody> {
    let start = Instant::now();
    let rid = request_id();
    let (parts, body) = req.into_parts();
    let body = request_body(TimedBody::new(body, limits.body_read_timeout));
    let handled = front.handle(&parts, body, Some(peer.ip()), &rid).await;
    rec.record(
        "blob",
        &rid,
        &parts.method,
        parts.uri.path(),
        handled.op,
        &handled.response,
        start,
    );
    handled.response
}

/// Whether a request speaks the Blob dialect: it names a storage service version, carries a
/// Shared Key or bearer `Authorization`, or a SAS (`sv` with `sig`). Everything else is S3
/// (whose signatures are `AWS4-HMAC-SHA256` headers or `X-Amz-*` query parameters).
pub fn is_blob_request<B>(req: &http::Request<B>) -> bool {
    let h = req.headers();
    if h.contains_key("x-ms-version") || h.contains_key("x-ms-date") {
        return true;
    }
    if let Some(a) = h
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        return a.starts_with("SharedKey ")
            || a.starts_with("SharedKeyLite ")
            || a.starts_with("Bearer ");
    }
    let q = req.uri().query().unwrap_or("");
    let has = |name: &str| {
        q.split('&')
            .any(|p| p.split('=').next().is_some_and(|k| k == name))
    };
    has("sig") && has("sv")
}

/// Serves both dialects on one port (single-port deployments), choosing per request with
/// [`is_blob_request`].
pub async fn run_dual(
    listener: TcpListener,
    s3: Arc<S3Endpoint>,
    blob: Arc<BlobFront>,
    metrics: Metrics,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let rec = Arc::new(Recorder::new(metrics));
    serve(listener, limits, shutdown, move |req, peer| {
        let (s3, blob, rec) = (Arc::clone(&s3), Arc::clone(&blob), Arc::clone(&rec));
        async move {
            let resp = if is_blob_request(&req) {
                handle_blob(&blob, &rec, limits, req, peer)
                    .await
                    .map(Either::Right)
            } else {
                handle_s3(&s3, &rec, limits, req).await.map(Either::Left)
            };
            Ok::<_, Infallible>(resp)
        }
    })
    .await;
}

/// Serves the peer protocol (a cache node's internal listener) until `shutdown` resolves.
pub async fn run_peer(
    listener: TcpListener,
    server: Arc<crate::peer::server::PeerServer>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    serve(listener, limits, shutdown, move |req, _peer| {
        let server = Arc::clone(&server);
        async move { Ok::<_, Infallible>(server.handle(req).await) }
    })
    .await;
}

/// Readiness flag for `/readyz`: false until serving, false again while draining.
#[derive(Clone, Default)]
pub struct Ready(pub Arc<AtomicBool>);

/// Serves the admin listener (`/metrics`, `/healthz`, `/readyz`, the warm-up API and the
/// dashboard: see [`crate::admin`]) until `shutdown` resolves.
pub async fn run_admin(
    listener: TcpListener,
    admin: Arc<crate::admin::Admin>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    serve(
        listener,
        limits,
        shutdown,
        move |req: http::Request<Incoming>, _peer| {
            let admin = Arc::clone(&admin);
            async move { Ok::<_, Infallible>(admin.handle(req).await) }
        },
    )
    .await;
}

/// Accept loop shared by the listeners: HTTP/1.1 and h2c (prior knowledge), graceful drain
/// on shutdown, the [`Limits`] on every connection.
pub(crate) async fn serve<F, Fut, B>(
    listener: TcpListener,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
    handler: F,
) where
    F: Fn(http::Request<Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<http::Response<B>, Infallible>> + Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let graceful = GracefulShutdown::new();
    let mut h1 = hyper::server::conn::http1::Builder::new();
    // Without a timer hyper silently drops its header-read timeout: a client that opens a
    // connection and never finishes its headers would hold it forever.
    h1.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(limits.max_header_bytes);
    let mut h2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    h2.timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    let (h1, h2) = (Arc::new(h1), Arc::new(h2));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let (handler, h1, h2, watcher) =
                    (handler.clone(), Arc::clone(&h1), Arc::clone(&h2), graceful.watcher());
                let first_bytes = limits.header_read_timeout;
                tokio::spawn(async move {
                    // hyper's header timer starts once the protocol is known; the wait for
                    // the bytes that tell it needs one too, or a client that connects and
                    // sends nothing would hold the connection for good.
                    let Ok(proto) = tokio::time::timeout(first_bytes, protocol(&stream)).await
                    else {
                        tracing::debug!(%peer, "connection sent no request in time");
                        return;
                    };
                    let (io, svc) = (TokioIo::new(stream), service_fn(move |req| handler(req, peer)));
                    let done = match proto {
                        Protocol::Http2 => watcher.watch(h2.serve_connection(io, svc)).await,
                        Protocol::Http1 => watcher.watch(h1.serve_connection(io, svc)).await,
                    };
                    if let Err(e) = done {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("in-flight requests did not finish within the drain timeout");
    }
}

/// What a connection speaks.
enum Protocol {
    Http1,
    /// h2c with prior knowledge.
    Http2,
}

/// Waits until the connection's first bytes tell HTTP/1 from the HTTP/2 preface, without
/// consuming them. A connection that closes or fails first is left to HTTP/1 to end.
async fn protocol(stream: &tokio::net::TcpStream) -> Protocol {
    const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let mut buf = [0u8; 24];
    loop {
        match stream.peek(&mut buf).await {
            Ok(24) if buf == *PREFACE => return Protocol::Http2,
            Ok(n) if n > 0 && n < PREFACE.len() && buf[..n] == PREFACE[..n] => {
                // Part of the preface: wait for the rest (rare; a real client sends it whole).
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            _ => return Protocol::Http1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_blob_request;

    #[test]
    fn request_ids_are_hex_time_pid_and_sequence() {
        for (v, w, want) in [
            (0u64, 1, "0"),
            (0, 4, "0000"),
            (0x1F, 1, "1F"),
            (0xABCDE, 4, "ABCDE"),
        ] {
            let mut s = String::new();
            super::access::push_hex(&mut s, v, w);
            assert_eq!(s, want);
        }
        let mut s = String::new();
        super::access::push_hex(&mut s, u64::MAX, 8);
        assert_eq!(s, format!("{:X}", u64::MAX));
        let (a, b) = (super::access::request_id(), super::access::request_id());
        let pid = format!("{:04X}", std::process::id() & 0xFFFF);
        for id in [&a, &b] {
            assert!(
                id.len() >= 20 && id.bytes().all(|c| c.is_ascii_hexdigit()),
                "{id}"
            );
            assert_eq!(&id[id.len() - 12..id.len() - 8], pid);
        }
        let seq = |id: &str| u64::from_str_radix(&id[id.len() - 8..], 16).expect("test value");
        assert!(seq(&b) > seq(&a));
    }

    #[tokio::test]
    async fn a_request_body_times_out_only_while_the_server_waits_for_it() {
        use http_body_util::BodyExt;
        use std::time::Duration;
        type Frame = Result<http_body::Frame<bytes::Bytes>, std::convert::Infallible>;
        let (tx, rx) = tokio::sync::mpsc::channel::<Frame>(1);
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
        let mut body = super::TimedBody::new(
            http_body_util::StreamBody::new(stream),
            Duration::from_millis(300),
        );
        let piece = || Ok(http_body::Frame::data(bytes::Bytes::from_static(b"x")));
        // Pieces closer together than the limit: no timeout, however long the body takes.
        for _ in 0..4 {
            let tx = tx.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(150)).await;
                let _ = tx.send(piece()).await;
            });
            let f = body.frame().await.expect("a frame").expect("data");
            assert!(f.is_data());
        }
        // Time the server spends not asking does not count.
        tx.send(piece()).await.expect("send");
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(body.frame().await.expect("a frame").is_ok());
        // Then the client goes quiet while the server waits: the body fails, as a timeout.
        let t = std::time::Instant::now();
        let e = body.frame().await.expect("an end").expect_err("timed out");
        assert!(super::is_body_timeout(&*e), "{e}");
        assert!(t.elapsed() >= Duration::from_millis(300));
        // Seen through a wrapper that keeps only the text (s3s's aws-chunked decoder).
        let wrapped: Box<dyn std::error::Error + Send + Sync> =
            format!("AwsChunkedStreamError: Underlying: {e}").into();
        assert!(super::is_body_timeout(&*wrapped));
        let other: Box<dyn std::error::Error + Send + Sync> = "connection reset".into();
        assert!(!super::is_body_timeout(&*other));
        drop(tx);
    }

    fn req(uri: &str, headers: &[(&str, &str)]) -> http::Request<()> {
        let mut b = http::Request::get(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).expect("request")
    }

    #[test]
    fn dialects_are_told_apart_per_request() {
        assert!(is_blob_request(&req(
            "/acct/c/b",
            &[("x-ms-version", "2025-11-05")]
        )));
        assert!(is_blob_request(&req(
            "/acct/c/b",
            &[("authorization", "SharedKey a:b")]
        )));
        assert!(is_blob_request(&req(
            "/acct/c/b",
            &[("authorization", "Bearer t")]
        )));
        assert!(is_blob_request(&req(
            "/acct/c/b?sv=2025-01-05&sr=b&sig=x",
            &[]
        )));
        assert!(!is_blob_request(&req(
            "/bucket/key",
            &[("authorization", "AWS4-HMAC-SHA256 Credential=a/b")]
        )));
        assert!(!is_blob_request(&req(
            "/bucket/key?X-Amz-Signature=x&X-Amz-Credential=y",
            &[]
        )));
        assert!(!is_blob_request(&req("/bucket/key?sig=only", &[])));
        assert!(!is_blob_request(&req("/bucket/key", &[])));
    }
}
