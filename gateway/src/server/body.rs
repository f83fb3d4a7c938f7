//! Request bodies as the listeners hand them on: timed while the server waits for them,
//! unsized S3 uploads given their length, broken-off bodies as the dialects' errors.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;

use crate::s3::error::early_response;

/// The largest upload taken without a `Content-Length` (held in memory until it ends).
const UNSIZED_MAX: usize = 64 << 20;

/// Unsized uploads buffered at once (bounds the memory they hold to 4 × [`UNSIZED_MAX`]).
static UNSIZED: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(4);

/// The request as s3s takes it. A single-payload upload sent chunked, without a
/// `Content-Length` (as moto and many S3 servers accept; s3s asks for the length), is read
/// whole — up to [`UNSIZED_MAX`] — and given its length; `aws-chunked` bodies carry theirs in
/// `x-amz-decoded-content-length`.
pub(super) async fn sized(
    req: http::Request<Incoming>,
    body_timeout: Duration,
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
        return Ok(req.map(|b| match http_body::Body::is_end_stream(&b) {
            // No body (the reads): nothing to time, nothing to allocate.
            true => s3s::Body::from(b),
            false => s3s::Body::http_body(TimedBody::new(b, body_timeout)),
        }));
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
    let body = TimedBody::new(body, body_timeout);
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
        Err(e) if is_body_timeout(&*e) => {
            let e = crate::s3::error::to_s3(body_timed_out(e));
            return Err(early_response(
                e.status_code().unwrap_or(http::StatusCode::BAD_REQUEST),
                e.code().as_str(),
                e.message().unwrap_or_default(),
                rid,
            ));
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

/// A request body as a stream of data; a body that breaks off is `IncompleteBody`, one the
/// client stopped sending `ClientTimeout`.
pub(super) fn request_body(body: TimedBody<Incoming>) -> crate::blob::RequestBody {
    use futures::StreamExt;
    http_body_util::BodyStream::new(body)
        .filter_map(|frame| async move {
            match frame {
                Ok(f) => f.into_data().ok().map(Ok),
                Err(e) if is_body_timeout(&*e) => Some(Err(body_timed_out(e))),
                Err(e) => Some(Err(crate::error::Error::new(
                    crate::error::ErrorKind::IncompleteBody,
                    "The request body could not be read completely.",
                )
                .with_source(BoxedError(e)))),
            }
        })
        .boxed()
}

/// A boxed error as an error source.
#[derive(Debug)]
struct BoxedError(BoxError);

impl std::fmt::Display for BoxedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for BoxedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The error a request body ends with when the client sent nothing for the listener's
/// `body_read_timeout` while the server was waiting for it.
#[derive(Debug, thiserror::Error)]
#[error("{BODY_TIMEOUT}: nothing received for {0:?}")]
pub struct BodyTimeout(Duration);

/// How [`BodyTimeout`] reads: some wrappers (s3s's `aws-chunked` decoder) keep only the text.
const BODY_TIMEOUT: &str = "request body timed out";

/// Whether `e` (or what it wraps) is a [`BodyTimeout`].
pub fn is_body_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.is::<BodyTimeout>() || err.to_string().contains(BODY_TIMEOUT) {
            return true;
        }
        cur = err.source();
    }
    false
}

/// The internal error for a body the client stopped sending.
pub fn body_timed_out(source: BoxError) -> crate::error::Error {
    crate::error::Error::new(
        crate::error::ErrorKind::ClientTimeout,
        "Your socket connection to the server was not read from or written to within the timeout period.",
    )
    .with_source(BoxedError(source))
}

/// A request body that fails with [`BodyTimeout`] when the client sends nothing for `limit`
/// while the server waits for the next piece. Time the server spends not asking (while the
/// origin takes what it was given, say) does not count: the clock starts at each wait.
pub struct TimedBody<B> {
    inner: B,
    limit: Duration,
    /// The deadline of the current wait (allocated at the first wait only).
    sleep: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    waiting: bool,
}

impl<B> TimedBody<B> {
    /// Wraps `inner`.
    pub fn new(inner: B, limit: Duration) -> Self {
        Self {
            inner,
            limit,
            sleep: None,
            waiting: false,
        }
    }
}

impl<B> http_body::Body for TimedBody<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        use std::task::Poll;
        let this = &mut *self;
        match std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.waiting = false;
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let limit = this.limit;
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                if !this.waiting {
                    this.waiting = true;
                    sleep.as_mut().reset(tokio::time::Instant::now() + limit);
                }
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout(limit))))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
