//! Listeners: the S3 and Blob fronts (each on its port, or both on one with per-request
//! dialect detection) and the admin endpoints, each `run(listener, shutdown)` on a bound
//! socket so tests can use port 0. SIGTERM-style shutdown stops accepting and drains.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::blob::{BlobBody, BlobFront};
use crate::metrics::Metrics;
use crate::s3::auth::OpSlot;
use crate::s3::error::{complete_error_body, early_response, refuse_early, ErrorContext};
use crate::s3::fast::Outcome;
use crate::s3::S3Endpoint;

/// How long a client may take to send a request's headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How long in-flight requests may take to finish after shutdown begins.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

static REQUEST_SEQ: AtomicU64 = AtomicU64::new(0);

fn request_id() -> String {
    let n = REQUEST_SEQ.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("{t:X}{:04X}{n:08X}", std::process::id() & 0xFFFF)
}

/// Serves the S3 dialect on `listener` until `shutdown` resolves, then drains.
pub async fn run_s3(
    listener: TcpListener,
    svc: Arc<S3Endpoint>,
    metrics: Metrics,
    shutdown: impl Future<Output = ()>,
) {
    serve(listener, shutdown, move |req, _peer| {
        let (svc, metrics) = (Arc::clone(&svc), metrics.clone());
        async move { Ok::<_, Infallible>(handle_s3(&svc, &metrics, req).await) }
    })
    .await;
}

async fn handle_s3(
    front: &S3Endpoint,
    metrics: &Metrics,
    mut req: http::Request<Incoming>,
) -> http::Response<s3s::Body> {
    let start = Instant::now();
    let rid = request_id();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    // For error documents: where the request was addressed.
    let host = req.headers().get(http::header::HOST).cloned();
    let copy = req.headers().contains_key("x-amz-copy-source");
    let slot = OpSlot::default();
    req.extensions_mut().insert(slot.clone());

    let mut early = refuse_early(
        req.method(),
        req.headers(),
        req.uri().query(),
        &front.region,
    );
    if early.is_none() {
        early = crate::s3::auth::date_for_sigv4(req.headers_mut());
    }
    let fast = match (&early, &front.fast) {
        (None, Some(fast)) => fast.serve(&req).await,
        _ => Outcome::Declined,
    };
    let fast = match fast {
        Outcome::Served(op, resp) => {
            let _ = slot.0.set(op.to_string());
            Some(resp)
        }
        Outcome::Failed(f) => {
            req.extensions_mut().insert(f);
            None
        }
        Outcome::Declined => None,
    };
    if early.is_none() && fast.is_none() {
        if let Some(at) = front.placer.place(&req).await {
            req.extensions_mut().insert(at);
        }
    }
    let mut resp = match (early, fast) {
        (Some((status, code, msg)), _) => early_response(status, code, &msg, &rid),
        (None, Some(resp)) => resp,
        (None, None) => match sized(req, &rid).await {
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
            false => request_target(&front.hosts, host.as_ref(), &path),
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
    let op = slot.0.get().map_or("unknown", String::as_str);
    record(metrics, "s3", &rid, &method, &path, op, &resp, start);
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

/// The largest upload taken without a `Content-Length` (held in memory until it ends).
const UNSIZED_MAX: usize = 64 << 20;

/// Unsized uploads buffered at once (bounds the memory they hold to 4 × [`UNSIZED_MAX`]).
static UNSIZED: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(4);

/// The request as s3s takes it. A single-payload upload sent chunked, without a
/// `Content-Length` (as moto and many S3 servers accept; s3s asks for the length), is read
/// whole — up to [`UNSIZED_MAX`] — and given its length; `aws-chunked` bodies carry theirs in
/// `x-amz-decoded-content-length`.
async fn sized(
    req: http::Request<Incoming>,
    rid: &str,
) -> Result<http::Request<s3s::Body>, http::Response<s3s::Body>> {
    use http_body_util::BodyExt as _;
    let h = req.headers();
    let chunked = h
        .get(http::header::TRANSFER_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let streaming = h
        .get("x-amz-content-sha256")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("STREAMING-"));
    let unsized_upload = matches!(*req.method(), http::Method::PUT | http::Method::POST)
        && chunked
        && !streaming
        && !h.contains_key(http::header::CONTENT_LENGTH);
    if !unsized_upload {
        return Ok(req.map(s3s::Body::from));
    }
    let too_large = || {
        early_response(
            http::StatusCode::LENGTH_REQUIRED,
            "MissingContentLength",
            &format!("Uploads over {UNSIZED_MAX} bytes must send Content-Length"),
            rid,
        )
    };
    let Ok(_permit) = UNSIZED.acquire().await else {
        return Err(too_large());
    };
    let (mut parts, body) = req.into_parts();
    let bytes = match http_body_util::Limited::new(body, UNSIZED_MAX)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            return Err(too_large())
        }
        Err(_) => return Err(early_response(
            http::StatusCode::BAD_REQUEST,
            "IncompleteBody",
            "You did not provide the number of bytes specified by the Content-Length HTTP header",
            rid,
        )),
    };
    // Transfer-Encoding stays: a client may have signed it.
    parts.headers.insert(
        http::header::CONTENT_LENGTH,
        http::HeaderValue::from(bytes.len()),
    );
    Ok(http::Request::from_parts(parts, s3s::Body::from(bytes)))
}

/// Serves the Blob dialect on `listener` until `shutdown` resolves, then drains.
pub async fn run_blob(
    listener: TcpListener,
    front: Arc<BlobFront>,
    metrics: Metrics,
    shutdown: impl Future<Output = ()>,
) {
    serve(listener, shutdown, move |req, peer| {
        let (front, metrics) = (Arc::clone(&front), metrics.clone());
        async move { Ok::<_, Infallible>(handle_blob(&front, &metrics, req, peer).await) }
    })
    .await;
}

async fn handle_blob(
    front: &BlobFront,
    metrics: &Metrics,
    req: http::Request<Incoming>,
    peer: SocketAddr,
) -> http::Response<BlobBody> {
    let start = Instant::now();
    let rid = request_id();
    let (parts, body) = req.into_parts();
    let handled = front
        .handle(&parts, request_body(body), Some(peer.ip()), &rid)
        .await;
    record(
        metrics,
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

/// A request body as a stream of data; a body that breaks off is `IncompleteBody`.
fn request_body(body: Incoming) -> crate::blob::RequestBody {
    use futures::StreamExt;
    http_body_util::BodyStream::new(body)
        .filter_map(|frame| async move {
            match frame {
                Ok(f) => f.into_data().ok().map(Ok),
                Err(e) => Some(Err(crate::error::Error::new(
                    crate::error::ErrorKind::IncompleteBody,
                    "The request body could not be read completely.",
                )
                .with_source(e))),
            }
        })
        .boxed()
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
    shutdown: impl Future<Output = ()>,
) {
    serve(listener, shutdown, move |req, peer| {
        let (s3, blob, metrics) = (Arc::clone(&s3), Arc::clone(&blob), metrics.clone());
        async move {
            let resp = if is_blob_request(&req) {
                handle_blob(&blob, &metrics, req, peer)
                    .await
                    .map(Either::Right)
            } else {
                handle_s3(&s3, &metrics, req).await.map(Either::Left)
            };
            Ok::<_, Infallible>(resp)
        }
    })
    .await;
}

/// Request metrics and the access-log line, the same for both dialects.
#[allow(clippy::too_many_arguments)] // reason: one flat call site per dialect reads best
fn record<B>(
    metrics: &Metrics,
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
    metrics
        .requests
        .with_label_values(&[dialect, op, status_label(status)])
        .inc();
    metrics
        .request_seconds
        .with_label_values(&[dialect, op])
        .observe(elapsed.as_secs_f64());
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

/// Serves the peer protocol (a cache node's internal listener) until `shutdown` resolves.
pub async fn run_peer(
    listener: TcpListener,
    server: Arc<crate::peer::server::PeerServer>,
    shutdown: impl Future<Output = ()>,
) {
    serve(listener, shutdown, move |req, _peer| {
        let server = Arc::clone(&server);
        async move { Ok::<_, Infallible>(server.handle(req).await) }
    })
    .await;
}

/// Readiness flag for `/readyz`: false until serving, false again while draining.
#[derive(Clone, Default)]
pub struct Ready(pub Arc<AtomicBool>);

/// Serves `/metrics`, `/healthz` and `/readyz` until `shutdown` resolves.
pub async fn run_admin(
    listener: TcpListener,
    metrics: Metrics,
    ready: Ready,
    shutdown: impl Future<Output = ()>,
) {
    serve(
        listener,
        shutdown,
        move |req: http::Request<Incoming>, _peer| {
            let (metrics, ready) = (metrics.clone(), ready.clone());
            async move {
                let (status, ctype, body) = match req.uri().path() {
                    "/metrics" => {
                        let mut buf = String::new();
                        let enc = prometheus::TextEncoder::new();
                        match enc.encode_utf8(&metrics.registry.gather(), &mut buf) {
                            Ok(()) => (200, "text/plain; version=0.0.4", buf),
                            Err(e) => (500, "text/plain", format!("cannot encode metrics: {e}\n")),
                        }
                    }
                    "/healthz" => (200, "text/plain", "ok\n".to_string()),
                    "/readyz" if ready.0.load(Ordering::Relaxed) => {
                        (200, "text/plain", "ready\n".to_string())
                    }
                    "/readyz" => (503, "text/plain", "not ready\n".to_string()),
                    _ => (404, "text/plain", "not found\n".to_string()),
                };
                let mut resp = http::Response::new(Full::new(Bytes::from(body)));
                *resp.status_mut() = http::StatusCode::from_u16(status)
                    .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
                resp.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static(ctype),
                );
                Ok::<_, Infallible>(resp)
            }
        },
    )
    .await;
}

/// Accept loop shared by the listeners: HTTP/1.1 and h2c, graceful drain on shutdown.
pub(crate) async fn serve<F, Fut, B>(
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    handler: F,
) where
    F: Fn(http::Request<Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<http::Response<B>, Infallible>> + Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Without a timer hyper silently drops its header-read timeout: a client that opens a
    // connection and never finishes its headers would hold it forever.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder.http2().timer(TokioTimer::new());
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
                let handler = handler.clone();
                let conn = builder
                    .serve_connection(
                        TokioIo::new(stream),
                        service_fn(move |req| handler(req, peer)),
                    )
                    .into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
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

#[cfg(test)]
mod tests {
    use super::is_blob_request;

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
