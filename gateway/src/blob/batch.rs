//! Blob Batch (`POST /<account>?comp=batch`, and `POST /<account>/<container>?restype=container
//! &comp=batch` for the blobs of one container): a `multipart/mixed` body of up to
//! [`MAX_SUBREQUESTS`] Delete Blob or Set Blob Tier sub-requests, all of one kind, in at most
//! [`MAX_BODY`] bytes.
//!
//! The batch request itself only needs an authenticated caller. Each sub-request then goes
//! through this front's own dispatch as if it had come alone: its own Shared Key signature or
//! SAS is verified and authorized, a delete forgets the blob's cached metadata on the usual
//! path, and Set Blob Tier is relayed to an Azure origin (elsewhere it is `NotImplemented`, per
//! sub-request). The answers come back in order as one `202 multipart/mixed` body, a part per
//! sub-request with its `Content-ID`, status line, headers and error body — so the batch works
//! over every origin kind.
//!
//! A batch that cannot be taken apart (no or an empty or a repeated boundary, a part that is
//! not a request, a sub-request a batch may not hold, mixed kinds, too many) is answered as
//! Azure and Azurite answer it: a 202 whose only part (without `Content-ID`) holds the error. A
//! batch without `Content-Type`, or with a body over the limit, is refused outright.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

use super::error::BlobError;
use super::router::{self, Operation, Routed};
use super::{error_reply, header, query_pairs, set, BlobFront, Reply, RequestBody};

/// Most sub-requests in one batch (Azure's limit).
pub const MAX_SUBREQUESTS: usize = 256;

/// The largest batch body (Azure's limit: 4 MiB).
pub const MAX_BODY: usize = 4 << 20;

/// Sub-requests run at once (answers still come back in order).
const CONCURRENCY: usize = 8;

/// The most of a sub-response's body kept (error documents are a few hundred bytes).
const MAX_SUB_BODY: usize = 64 << 10;

/// One sub-request as the batch body holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubRequest {
    /// The part's `Content-ID`, echoed on its answer.
    pub content_id: String,
    /// The request line's method.
    pub method: String,
    /// The request line's target: a path with its query (or an absolute URL).
    pub target: String,
    /// The sub-request's headers, in order.
    pub headers: Vec<(String, String)>,
}

/// The boundary named by a batch's `Content-Type` (`multipart/mixed; boundary=…`): the
/// parameter's name in any case, whitespace around its value allowed, a quoted value
/// unquoted. None, an empty one, or a media type other than `multipart/mixed` is
/// `InvalidHeaderValue`; two are `InvalidInput`.
pub fn boundary(content_type: &str) -> Result<&str, BlobError> {
    let bad = || {
        BlobError::invalid_header(
            "Content-Type",
            "The value for one of the HTTP headers is not in the correct format.",
        )
    };
    let mut params = content_type.split(';').map(str::trim);
    let media = params.next().unwrap_or("");
    if !media.eq_ignore_ascii_case("multipart/mixed") {
        return Err(bad());
    }
    let found: Vec<&str> = params
        .filter_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.trim().eq_ignore_ascii_case("boundary").then(|| v.trim())
        })
        .collect();
    match found.as_slice() {
        [] => Err(bad()),
        [v] => {
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v);
            if v.is_empty() {
                Err(bad())
            } else {
                Ok(v)
            }
        }
        _ => Err(BlobError::invalid_input()),
    }
}

/// Where a delimiter line (`--<boundary>`, at the start of the body or of a line) begins, at or
/// after `from`.
fn find_delimiter(text: &str, delimiter: &str, from: usize) -> Option<usize> {
    let mut at = from;
    while let Some(i) = text.get(at..)?.find(delimiter) {
        let i = at + i;
        if i == 0 || text.as_bytes().get(i - 1) == Some(&b'\n') {
            return Some(i);
        }
        at = i + 1;
    }
    None
}

/// Splits a batch body into its sub-requests: the parts between `--<boundary>` lines up to the
/// closing `--<boundary>--` (a preamble before the first is skipped). Lines end with CRLF or
/// LF. Stops after `max + 1` parts, so that an oversized batch is known without reading the
/// rest. A body that is not UTF-8, has no part, no closing delimiter or a part that is not a
/// request is `InvalidInput`.
pub fn parse(body: &[u8], boundary: &str, max: usize) -> Result<Vec<SubRequest>, BlobError> {
    let invalid = BlobError::invalid_input;
    let text = std::str::from_utf8(body).map_err(|_| invalid())?;
    let delimiter = format!("--{boundary}");
    let mut at = find_delimiter(text, &delimiter, 0).ok_or_else(invalid)?;
    let mut parts = Vec::new();
    loop {
        let after = at + delimiter.len();
        let rest = text.get(after..).ok_or_else(invalid)?;
        if rest.starts_with("--") {
            break;
        }
        // Only transport padding may follow a delimiter on its line (else it was a longer
        // boundary that merely starts with this one).
        let eol = rest.find('\n').ok_or_else(invalid)?;
        if !rest[..eol].trim().is_empty() {
            return Err(invalid());
        }
        let start = after + eol + 1;
        let next = find_delimiter(text, &delimiter, start).ok_or_else(invalid)?;
        // The line break before a delimiter belongs to the delimiter.
        let content = &text[start..next];
        let content = content
            .strip_suffix('\n')
            .map_or(content, |c| c.strip_suffix('\r').unwrap_or(c));
        parts.push(parse_part(content).ok_or_else(invalid)?);
        if parts.len() > max {
            return Ok(parts);
        }
        at = next;
    }
    if parts.is_empty() {
        return Err(invalid());
    }
    Ok(parts)
}

/// One part: MIME headers (a `Content-ID` required; a `Content-Type`, when given,
/// `application/http`), a blank line, then an HTTP/1.x request line and headers. A body after
/// them is ignored (Delete Blob and Set Blob Tier have none).
fn parse_part(content: &str) -> Option<SubRequest> {
    let mut lines = content
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l));
    let mut content_id = None;
    loop {
        let line = lines.next()?;
        if line.is_empty() {
            break;
        }
        let (k, v) = line.split_once(':')?;
        let (k, v) = (k.trim(), v.trim());
        if k.eq_ignore_ascii_case("content-id") {
            content_id = Some(v.to_string());
        } else if k.eq_ignore_ascii_case("content-type")
            && !v.eq_ignore_ascii_case("application/http")
        {
            return None;
        }
    }
    let content_id = content_id?;
    let mut request_line = lines.next()?.split(' ').filter(|t| !t.is_empty());
    let (method, target, version) = (
        request_line.next()?,
        request_line.next()?,
        request_line.next()?,
    );
    if request_line.next().is_some() || !version.starts_with("HTTP/1.") {
        return None;
    }
    let mut headers = Vec::new();
    for line in lines {
        if line.is_empty() {
            break;
        }
        let (k, v) = line.split_once(':')?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    Some(SubRequest {
        content_id,
        method: method.to_string(),
        target: target.to_string(),
        headers,
    })
}

/// The request parts of a sub-request; the batch's `Host` stands in when it names none (its
/// URL is relative to the batch's).
fn sub_parts(sub: &SubRequest, outer: &http::request::Parts) -> Option<http::request::Parts> {
    let target = if sub.target.starts_with("http://") || sub.target.starts_with("https://") {
        let uri: http::Uri = sub.target.parse().ok()?;
        uri.path_and_query()?.as_str().to_string()
    } else if sub.target.starts_with('/') {
        sub.target.clone()
    } else {
        format!("/{}", sub.target)
    };
    let mut builder = http::Request::builder()
        .method(Method::from_bytes(sub.method.as_bytes()).ok()?)
        .uri(target);
    for (k, v) in &sub.headers {
        builder = builder.header(
            HeaderName::from_bytes(k.as_bytes()).ok()?,
            HeaderValue::from_str(v).ok()?,
        );
    }
    let (mut parts, ()) = builder.body(()).ok()?.into_parts();
    if !parts.headers.contains_key(http::header::HOST) {
        if let Some(h) = outer.headers.get(http::header::HOST) {
            parts.headers.insert(http::header::HOST, h.clone());
        }
    }
    Some(parts)
}

/// The operations a batch may hold.
fn batchable(op: Operation) -> bool {
    matches!(
        op,
        Operation::DeleteBlob | Operation::Unsupported("SetBlobTier")
    )
}

/// A sub-response's reason phrase: the error's message (its first line, as Azure writes it)
/// for an error document, else the status's own.
fn reason(status: StatusCode, body: &[u8]) -> String {
    let message = std::str::from_utf8(body).ok().and_then(|b| {
        let start = b.find("<Message>")? + "<Message>".len();
        let m = &b[start..];
        let end = m.find(['\n', '\r', '<']).unwrap_or(m.len());
        Some(m[..end].trim().to_string())
    });
    match message {
        Some(m) if !status.is_success() && !m.is_empty() => m
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
        _ => status.canonical_reason().unwrap_or("").to_string(),
    }
}

/// Appends one `application/http` part.
fn write_part(
    out: &mut BytesMut,
    boundary: &str,
    content_id: Option<&str>,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) {
    out.extend_from_slice(format!("--{boundary}\r\nContent-Type: application/http\r\n").as_bytes());
    if let Some(id) = content_id {
        out.extend_from_slice(format!("Content-ID: {id}\r\n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "\r\nHTTP/1.1 {} {}\r\n",
            status.as_u16(),
            reason(status, body)
        )
        .as_bytes(),
    );
    for (k, v) in headers {
        if k.as_str() == crate::pipeline::CACHE_HEADER {
            continue;
        }
        out.extend_from_slice(k.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !body.is_empty() {
        out.extend_from_slice(body);
        out.extend_from_slice(b"\r\n");
    }
}

/// The batch body, whole: at most [`MAX_BODY`].
async fn read_body(mut body: RequestBody) -> Result<Bytes, BlobError> {
    let mut buf = BytesMut::new();
    while let Some(chunk) = body.try_next().await? {
        if buf.len() + chunk.len() > MAX_BODY {
            return Err(BlobError::body_too_large(MAX_BODY));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// A sub-response's body, at most [`MAX_SUB_BODY`] of it (`None` when it could not be read
/// whole).
async fn sub_body(body: super::BlobBody) -> Option<Bytes> {
    use http_body_util::BodyExt as _;
    http_body_util::Limited::new(body, MAX_SUB_BODY)
        .collect()
        .await
        .ok()
        .map(|c| c.to_bytes())
}

impl BlobFront {
    /// Serves a Blob Batch (see the module docs). The batch's caller was authenticated;
    /// `r` names the account and, for a container-scoped batch, the container.
    pub(super) async fn batch(
        &self,
        r: &Routed,
        parts: &http::request::Parts,
        body: RequestBody,
        peer: Option<IpAddr>,
        request_id: &str,
    ) -> Result<Reply, BlobError> {
        let Some(content_type) = header(&parts.headers, "content-type")
            .map(str::trim)
            .filter(|v| !v.is_empty())
        else {
            return Err(BlobError::missing_header("Content-Type"));
        };
        let declared: Option<u64> =
            header(&parts.headers, "content-length").and_then(|v| v.trim().parse().ok());
        if declared.is_some_and(|n| n > MAX_BODY as u64) {
            return Err(BlobError::body_too_large(MAX_BODY));
        }
        let subs = match boundary(content_type) {
            Ok(b) => {
                let bytes = read_body(body).await?;
                self.take_apart(r, parts, &bytes, b)
            }
            Err(e) => Err(e),
        };
        let response_boundary = format!("batchresponse_{}", super::guid(request_id));
        let mut out = BytesMut::new();
        match subs {
            Err(e) => {
                // The batch as a whole failed: one part, no Content-ID, the batch's request id.
                let reply = error_reply(e, request_id, false);
                let mut h = reply.headers;
                set(&mut h, "x-ms-request-id", request_id);
                let body = match reply.body {
                    super::BlobBody::Full(Some(b)) => b,
                    _ => Bytes::new(),
                };
                set(&mut h, "content-length", &body.len().to_string());
                write_part(&mut out, &response_boundary, None, reply.status, &h, &body);
            }
            Ok(subs) => {
                // The futures are made before the first await: no closure is held across it
                // (its higher-ranked type would defeat the Send proof of the whole request).
                let pending: Vec<Pin<Box<dyn Future<Output = Answer> + Send + '_>>> = subs
                    .iter()
                    .enumerate()
                    .map(|(i, (_, sub))| self.answer(sub, peer, request_id, i))
                    .collect();
                let answers: Vec<Answer> = futures::stream::iter(pending)
                    .buffered(CONCURRENCY)
                    .collect()
                    .await;
                for ((content_id, _), (status, headers, body)) in subs.iter().zip(&answers) {
                    write_part(
                        &mut out,
                        &response_boundary,
                        Some(content_id),
                        *status,
                        headers,
                        body,
                    );
                }
            }
        }
        out.extend_from_slice(format!("--{response_boundary}--\r\n").as_bytes());
        let body = out.freeze();
        let mut h = HeaderMap::new();
        set(
            &mut h,
            "content-type",
            &format!("multipart/mixed; boundary={response_boundary}"),
        );
        Ok(Reply {
            status: StatusCode::ACCEPTED,
            headers: h,
            length: Some(body.len() as u64),
            body: super::BlobBody::Full(Some(body)),
        })
    }

    /// The batch's sub-requests as requests of this front, each checked to be one a batch may
    /// hold: Delete Blob or Set Blob Tier, all of one kind, in the batch's account (and
    /// container, for a container-scoped batch).
    fn take_apart(
        &self,
        r: &Routed,
        outer: &http::request::Parts,
        body: &[u8],
        boundary: &str,
    ) -> Result<Vec<(String, http::request::Parts)>, BlobError> {
        let subs = parse(body, boundary, MAX_SUBREQUESTS)?;
        let mut kind: Option<Operation> = None;
        let mut out = Vec::with_capacity(subs.len().min(MAX_SUBREQUESTS));
        for sub in subs.iter().take(MAX_SUBREQUESTS) {
            let parts = sub_parts(sub, outer).ok_or_else(BlobError::invalid_input)?;
            let query = query_pairs(parts.uri.query().unwrap_or(""));
            let host_style =
                header(&parts.headers, "host").and_then(|h| router::host_account(h, &self.domains));
            let routed = router::route(
                &parts.method,
                host_style,
                parts.uri.path(),
                &query,
                parts.headers.contains_key("x-ms-copy-source"),
            )
            .map_err(|_| BlobError::invalid_input())?;
            let in_scope = routed.account == r.account
                && r.container
                    .as_ref()
                    .is_none_or(|c| routed.container.as_ref() == Some(c));
            if !batchable(routed.op) || !in_scope {
                return Err(BlobError::invalid_input());
            }
            match kind {
                None => kind = Some(routed.op),
                Some(k) if k != routed.op => return Err(BlobError::batch_mixed_operations()),
                Some(_) => {}
            }
            out.push((sub.content_id.clone(), parts));
        }
        if subs.len() > MAX_SUBREQUESTS {
            return Err(BlobError::batch_too_many(MAX_SUBREQUESTS));
        }
        Ok(out)
    }

    /// A sub-request, answered by the front as if it had come alone (its request id is the
    /// batch's, numbered). Boxed: the batch is itself answered by `respond`.
    fn answer<'a>(
        &'a self,
        sub: &'a http::request::Parts,
        peer: Option<IpAddr>,
        batch_id: &'a str,
        index: usize,
    ) -> Pin<Box<dyn Future<Output = Answer> + Send + 'a>> {
        Box::pin(async move {
            let rid = format!("{batch_id}-{index}");
            let handled = self
                .respond(sub, futures::stream::empty().boxed(), peer, &rid, false)
                .await;
            tracing::info!(
                target: "cistern::access",
                request_id = %rid,
                dialect = "blob",
                method = %sub.method,
                path = %sub.uri.path(),
                operation = handled.op,
                status = handled.response.status().as_u16(),
                batch = %batch_id,
                "batch sub-request"
            );
            let (resp, body) = handled.response.into_parts();
            let mut headers = resp.headers;
            let body = sub_body(body).await.unwrap_or_else(|| {
                headers.remove(http::header::CONTENT_TYPE);
                Bytes::new()
            });
            // Every part says how long its body is (a relayed answer may have come chunked).
            set(&mut headers, "content-length", &body.len().to_string());
            (resp.status, headers, body)
        })
    }
}

/// A sub-request's answer: status, headers, body.
type Answer = (StatusCode, HeaderMap, Bytes);

#[cfg(test)]
mod tests {
    use super::*;

    fn code(e: BlobError) -> String {
        e.code.into_owned()
    }

    #[test]
    fn boundaries_as_clients_write_them() {
        let b = |ct| boundary(ct).map_err(code);
        assert_eq!(
            b("multipart/mixed; boundary=batch_6f8a4c2e-1b3d"),
            Ok("batch_6f8a4c2e-1b3d")
        );
        // Azurite's own tests: '=' inside, the parameter's name in any case, whitespace.
        assert_eq!(b("multipart/mixed; boundary=batch_x=="), Ok("batch_x=="));
        assert_eq!(b("multipart/mixed; Boundary=batch_x"), Ok("batch_x"));
        assert_eq!(b("multipart/mixed; boundary= batch_x"), Ok("batch_x"));
        assert_eq!(b("Multipart/Mixed;boundary=\"q r\""), Ok("q r"));
        assert_eq!(b("multipart/mixed; charset=utf-8; boundary=x"), Ok("x"));
        assert_eq!(b("multipart/mixed"), Err("InvalidHeaderValue".into()));
        assert_eq!(
            b("multipart/mixed; boundary="),
            Err("InvalidHeaderValue".into())
        );
        assert_eq!(
            b("multipart/mixed; boundary=\"\""),
            Err("InvalidHeaderValue".into())
        );
        assert_eq!(
            b("text/plain; boundary=x"),
            Err("InvalidHeaderValue".into())
        );
        assert_eq!(
            b("multipart/mixed; boundary=a; boundary=b"),
            Err("InvalidInput".into())
        );
    }

    /// What azure-storage-blob 12.31.1's `ContainerClient.delete_blobs` sends (its
    /// `serialize_batch_body`), two sub-requests.
    const PYTHON_BODY: &str = "--batch_0b5e\r\n\
Content-Type: application/http\r\n\
Content-ID: 0\r\n\
Content-Transfer-Encoding: binary\r\n\
\r\n\
DELETE /acct/data/a%20b.txt? HTTP/1.1\r\n\
x-ms-date: Mon, 07 Dec 2026 01:00:00 GMT\r\n\
Authorization: SharedKey acct:c2lnbmF0dXJl\r\n\
Content-Length: 0\r\n\
\r\n\
\r\n\
--batch_0b5e\r\n\
Content-Type: application/http\r\n\
Content-ID: 1\r\n\
Content-Transfer-Encoding: binary\r\n\
\r\n\
PUT /acct/data/dir/x?comp=tier&sv=2025-11-05&sig=a%2Bb HTTP/1.1\r\n\
x-ms-access-tier: Cool\r\n\
Content-Length: 0\r\n\
\r\n\
\r\n\
--batch_0b5e--\r\n";

    #[test]
    fn parses_what_the_python_sdk_sends() {
        let subs = parse(PYTHON_BODY.as_bytes(), "batch_0b5e", MAX_SUBREQUESTS).expect("parse");
        assert_eq!(
            subs,
            vec![
                SubRequest {
                    content_id: "0".into(),
                    method: "DELETE".into(),
                    target: "/acct/data/a%20b.txt?".into(),
                    headers: vec![
                        ("x-ms-date".into(), "Mon, 07 Dec 2026 01:00:00 GMT".into()),
                        ("Authorization".into(), "SharedKey acct:c2lnbmF0dXJl".into()),
                        ("Content-Length".into(), "0".into()),
                    ],
                },
                SubRequest {
                    content_id: "1".into(),
                    method: "PUT".into(),
                    target: "/acct/data/dir/x?comp=tier&sv=2025-11-05&sig=a%2Bb".into(),
                    headers: vec![
                        ("x-ms-access-tier".into(), "Cool".into()),
                        ("Content-Length".into(), "0".into()),
                    ],
                },
            ]
        );
        // Bare LF line ends, a preamble and no blank line before the delimiter are read too.
        let lf = format!(
            "preamble\n{}",
            PYTHON_BODY.replace("\r\n", "\n").replace("\n\n--", "\n--")
        );
        let subs_lf = parse(lf.as_bytes(), "batch_0b5e", MAX_SUBREQUESTS).expect("parse lf");
        assert_eq!(subs_lf, subs);
    }

    #[test]
    fn refuses_what_is_not_a_batch() {
        let p = |body: &str, b: &str| parse(body.as_bytes(), b, MAX_SUBREQUESTS).map_err(code);
        let invalid = Err("InvalidInput".to_string());
        // The wrong boundary, no parts, no closing delimiter.
        assert_eq!(p(PYTHON_BODY, "other"), invalid);
        assert_eq!(p("--batch_0b5e--\r\n", "batch_0b5e"), invalid);
        assert_eq!(
            p(&PYTHON_BODY.replace("--batch_0b5e--", ""), "batch_0b5e"),
            invalid
        );
        // A boundary that is only the start of the one used.
        assert_eq!(p(PYTHON_BODY, "batch_0b"), invalid);
        // A part with no Content-ID, not application/http, or no request line.
        assert_eq!(
            p(&PYTHON_BODY.replace("Content-ID: 1\r\n", ""), "batch_0b5e"),
            invalid
        );
        assert_eq!(
            p(
                &PYTHON_BODY.replace("application/http", "text/plain"),
                "batch_0b5e"
            ),
            invalid
        );
        assert_eq!(p("--b\r\nContent-ID: 0\r\n\r\n--b--\r\n", "b"), invalid);
        assert_eq!(p("--b\r\nhello\r\n--b--\r\n", "b"), invalid);
        assert_eq!(
            p(
                "--b\r\nContent-ID: 0\r\n\r\nDELETE /a/c/b\r\n\r\n--b--\r\n",
                "b"
            ),
            invalid
        );
        assert_eq!(
            p(
                "--b\r\nContent-ID: 0\r\n\r\nDELETE /a/c/b SPDY/3\r\n\r\n--b--\r\n",
                "b"
            ),
            invalid
        );
        assert_eq!(
            p(
                "--b\r\nContent-ID: 0\r\n\r\nDELETE /a/c/b HTTP/1.1\r\nno colon\r\n\r\n--b--\r\n",
                "b"
            ),
            invalid
        );
        assert_eq!(
            p("\u{0}\u{ff}", "b").map(|_| ()),
            Err("InvalidInput".into())
        );
        assert_eq!(
            parse(&[0xff, 0xfe], "b", MAX_SUBREQUESTS)
                .map_err(code)
                .map(|_| ()),
            Err("InvalidInput".into())
        );
    }

    #[test]
    fn stops_after_one_part_too_many() {
        let part = "--b\r\nContent-ID: 0\r\n\r\nDELETE /a/c/x HTTP/1.1\r\n\r\n";
        let body = format!("{}--b--\r\n", part.repeat(300));
        let subs = parse(body.as_bytes(), "b", MAX_SUBREQUESTS).expect("parse");
        assert_eq!(subs.len(), MAX_SUBREQUESTS + 1);
        let body = format!("{}--b--\r\n", part.repeat(MAX_SUBREQUESTS));
        assert_eq!(
            parse(body.as_bytes(), "b", MAX_SUBREQUESTS)
                .map(|s| s.len())
                .ok(),
            Some(MAX_SUBREQUESTS)
        );
    }

    #[test]
    fn sub_requests_inherit_the_batch_host() {
        let outer = http::Request::builder()
            .uri("/acct?comp=batch")
            .header("host", "127.0.0.1:10000")
            .body(())
            .expect("request")
            .into_parts()
            .0;
        let sub = SubRequest {
            content_id: "0".into(),
            method: "DELETE".into(),
            target: "http://elsewhere/acct/c/b?x=1".into(),
            headers: vec![("x-ms-version".into(), "2025-11-05".into())],
        };
        let p = sub_parts(&sub, &outer).expect("parts");
        assert_eq!(p.method, Method::DELETE);
        assert_eq!(p.uri.path(), "/acct/c/b");
        assert_eq!(p.uri.query(), Some("x=1"));
        assert_eq!(
            p.headers.get("host").map(|v| v.as_bytes()),
            Some(&b"127.0.0.1:10000"[..])
        );
        let relative = SubRequest {
            target: "acct/c/b".into(),
            ..sub.clone()
        };
        assert_eq!(
            sub_parts(&relative, &outer).map(|p| p.uri.path().to_string()),
            Some("/acct/c/b".into())
        );
        let bad = SubRequest {
            target: "/acct/c/a b".into(),
            ..sub.clone()
        };
        assert!(sub_parts(&bad, &outer).is_none());
        let bad_header = SubRequest {
            headers: vec![("bad header".into(), "v".into())],
            ..sub
        };
        assert!(sub_parts(&bad_header, &outer).is_none());
    }

    #[test]
    fn parts_are_written_as_azure_writes_them() {
        let mut out = BytesMut::new();
        let mut h = HeaderMap::new();
        set(&mut h, "x-ms-delete-type-permanent", "true");
        set(&mut h, "x-ms-request-id", "r-0");
        set(&mut h, crate::pipeline::CACHE_HEADER, "bypass");
        write_part(
            &mut out,
            "batchresponse_1",
            Some("0"),
            StatusCode::ACCEPTED,
            &h,
            b"",
        );
        let mut e = HeaderMap::new();
        set(&mut e, "x-ms-error-code", "BlobNotFound");
        let body = BlobError::new(
            StatusCode::NOT_FOUND,
            "BlobNotFound",
            "The specified blob does not exist.",
        )
        .xml("r-1");
        write_part(
            &mut out,
            "batchresponse_1",
            Some("1"),
            StatusCode::NOT_FOUND,
            &e,
            body.as_bytes(),
        );
        let text = String::from_utf8(out.to_vec()).expect("utf-8");
        let want = format!(
            "--batchresponse_1\r\nContent-Type: application/http\r\nContent-ID: 0\r\n\r\n\
HTTP/1.1 202 Accepted\r\nx-ms-delete-type-permanent: true\r\nx-ms-request-id: r-0\r\n\r\n\
--batchresponse_1\r\nContent-Type: application/http\r\nContent-ID: 1\r\n\r\n\
HTTP/1.1 404 The specified blob does not exist.\r\nx-ms-error-code: BlobNotFound\r\n\r\n{body}\r\n"
        );
        assert_eq!(text, want);
    }

    #[test]
    fn reasons() {
        assert_eq!(reason(StatusCode::OK, b""), "OK");
        assert_eq!(
            reason(
                StatusCode::FORBIDDEN,
                b"<Error><Code>X</Code><Message>Not &amp; allowed.\nRequestId:1</Message></Error>"
            ),
            "Not & allowed."
        );
        assert_eq!(
            reason(StatusCode::NOT_IMPLEMENTED, b"junk"),
            "Not Implemented"
        );
    }
}
