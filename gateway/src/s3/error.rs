//! The one place internal errors become S3 wire errors.

use s3s::{S3Error, S3ErrorCode};

use crate::error::{Error, ErrorKind};

/// Maps an internal error to the S3 error a client should see, logging what the client does
/// not see.
pub fn to_s3(e: Error) -> S3Error {
    let code = match e.kind() {
        ErrorKind::NoSuchBucket => S3ErrorCode::NoSuchBucket,
        ErrorKind::NotFound => S3ErrorCode::NoSuchKey,
        ErrorKind::PreconditionFailed => S3ErrorCode::PreconditionFailed,
        ErrorKind::NotModified => S3ErrorCode::NotModified,
        ErrorKind::InvalidRange => S3ErrorCode::InvalidRange,
        ErrorKind::InvalidPartNumber => S3ErrorCode::Custom("InvalidPartNumber".into()),
        ErrorKind::InvalidArgument => S3ErrorCode::InvalidArgument,
        ErrorKind::AccessDenied | ErrorKind::Leased => S3ErrorCode::AccessDenied,
        ErrorKind::SignatureMismatch => S3ErrorCode::SignatureDoesNotMatch,
        ErrorKind::BadDigest => S3ErrorCode::BadDigest,
        ErrorKind::IncompleteBody => S3ErrorCode::IncompleteBody,
        // S3's answer to a client that stops sending (400).
        ErrorKind::ClientTimeout => S3ErrorCode::RequestTimeout,
        ErrorKind::NoSuchUpload => S3ErrorCode::NoSuchUpload,
        ErrorKind::InvalidPart => S3ErrorCode::InvalidPart,
        ErrorKind::BucketExists => S3ErrorCode::BucketAlreadyOwnedByYou,
        ErrorKind::BucketNotEmpty => S3ErrorCode::BucketNotEmpty,
        ErrorKind::Throttled => S3ErrorCode::SlowDown,
        ErrorKind::OriginUnavailable | ErrorKind::OriginTimeout | ErrorKind::ObjectChanged => {
            S3ErrorCode::ServiceUnavailable
        }
        ErrorKind::NotImplemented => S3ErrorCode::NotImplemented,
        ErrorKind::Internal => S3ErrorCode::InternalError,
    };
    match e.kind() {
        ErrorKind::Internal | ErrorKind::OriginUnavailable | ErrorKind::OriginTimeout => {
            tracing::warn!(error = %e, "request failed");
        }
        _ => tracing::debug!(error = %e, "request failed"),
    }
    let mut err = S3Error::with_message(code, e.message().to_string());
    if e.kind() == ErrorKind::InvalidPartNumber {
        err.set_status_code(http::StatusCode::RANGE_NOT_SATISFIABLE);
    }
    if let Some(o) = crate::origin::OriginStatus::relayable(&e, crate::origin::Dialect::S3) {
        // The S3 origin's own code (InvalidTag, EntityTooSmall, …) where the classification
        // would blur it into InvalidArgument.
        err = S3Error::with_message(
            S3ErrorCode::from_bytes(o.code.as_bytes())
                .unwrap_or_else(|| S3ErrorCode::Custom(o.code.clone().into())),
            e.message().to_string(),
        );
        if let Ok(status) = http::StatusCode::from_u16(o.status) {
            err.set_status_code(status);
        }
    }
    let mut h = http::HeaderMap::new();
    if let Some(size) = e.object_size() {
        if let Ok(v) = http::HeaderValue::from_str(&format!("bytes */{size}")) {
            h.insert(http::header::CONTENT_RANGE, v);
        }
    }
    if let Some((etag, last_modified)) = e.validators() {
        if let Ok(v) = http::HeaderValue::from_str(&format!("\"{etag}\"")) {
            h.insert(http::header::ETAG, v);
        }
        // s3s's formatter: httpdate panics outside 1970–9999, and a file's mtime can be there.
        let mut lm = Vec::with_capacity(29);
        if s3s::dto::Timestamp::from(last_modified)
            .format(s3s::dto::TimestampFormat::HttpDate, &mut lm)
            .is_ok()
        {
            if let Ok(v) = http::HeaderValue::from_bytes(&lm) {
                h.insert(http::header::LAST_MODIFIED, v);
            }
        }
    }
    if let Some(m) = e.delete_marker() {
        // As S3 answers a read of a delete marker (and the origin did): the client learns
        // the key was deleted, and which marker stands for it.
        h.insert(
            "x-amz-delete-marker",
            http::HeaderValue::from_static("true"),
        );
        if let Some(v) = m
            .version_id
            .as_deref()
            .and_then(|v| http::HeaderValue::from_str(v).ok())
        {
            h.insert("x-amz-version-id", v);
        }
    }
    if !h.is_empty() {
        if e.kind() != ErrorKind::NotModified {
            // s3s replaces the response's headers with these, its Content-Type included (a
            // 304 has no body to describe).
            h.insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/xml"),
            );
        }
        err.set_headers(h);
    }
    err
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_s3_codes_and_statuses() {
        let cases = [
            (ErrorKind::NoSuchBucket, 404),
            (ErrorKind::NotFound, 404),
            (ErrorKind::PreconditionFailed, 412),
            (ErrorKind::NotModified, 304),
            (ErrorKind::InvalidRange, 416),
            (ErrorKind::AccessDenied, 403),
            (ErrorKind::Throttled, 503),
            (ErrorKind::OriginUnavailable, 503),
            (ErrorKind::NotImplemented, 501),
            (ErrorKind::Internal, 500),
        ];
        for (kind, status) in cases {
            let e = to_s3(Error::new(kind, "m"));
            assert_eq!(
                e.code().status_code().map(|s| s.as_u16()),
                Some(status),
                "{kind:?}"
            );
        }
    }

    #[test]
    fn a_delete_marker_answer_carries_its_headers() {
        let marker = |v: Option<&str>| crate::error::DeleteMarker {
            version_id: v.map(str::to_owned),
        };
        let e =
            to_s3(Error::new(ErrorKind::NotFound, "gone").with_delete_marker(marker(Some("v-1"))));
        let h = e.headers().expect("headers");
        assert_eq!(h["x-amz-delete-marker"], "true");
        assert_eq!(h["x-amz-version-id"], "v-1");
        assert_eq!(h[http::header::CONTENT_TYPE], "application/xml");
        assert_eq!(e.status_code().map(|s| s.as_u16()), Some(404));
        assert!(
            to_s3(Error::new(ErrorKind::NotFound, "gone"))
                .headers()
                .is_none(),
            "a plain miss says nothing of markers"
        );
        // A versionId naming a marker: the origin's 405 MethodNotAllowed, with the marker.
        let origin_405 = Error::new(ErrorKind::InvalidArgument, "x")
            .with_source(crate::origin::OriginStatus {
                dialect: crate::origin::Dialect::S3,
                status: 405,
                code: "MethodNotAllowed".into(),
            })
            .with_delete_marker(marker(None));
        let e = to_s3(origin_405);
        assert_eq!(e.status_code().map(|s| s.as_u16()), Some(405));
        assert_eq!(e.code().as_str(), "MethodNotAllowed");
        let h = e.headers().expect("headers");
        assert_eq!(h["x-amz-delete-marker"], "true");
        assert!(!h.contains_key("x-amz-version-id"));
    }

    fn cx<'a>(bucket: Option<&'a str>, key: Option<&'a str>) -> ErrorContext<'a> {
        ErrorContext {
            request_id: "RID1",
            bucket,
            key,
        }
    }

    fn completed(body: &str, cx: ErrorContext<'_>) -> String {
        String::from_utf8(complete_error_body(body.as_bytes(), cx).expect("an error document"))
            .expect("utf-8")
    }

    #[test]
    fn error_documents_are_completed_as_s3_writes_them() {
        // As s3s renders one.
        let s3s = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>NoSuchKey</Code><Message>The specified key does not exist</Message></Error>";
        assert_eq!(
            completed(s3s, cx(Some("b"), Some("a&b <c>"))),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>NoSuchKey</Code><Message>The specified key does not exist</Message><Key>a&amp;b &lt;c&gt;</Key><RequestId>RID1</RequestId></Error>"
        );
        assert_eq!(
            completed(
                "<Error><Code>NoSuchBucket</Code><Message>m</Message></Error>",
                cx(Some("nob"), None)
            ),
            "<Error><Code>NoSuchBucket</Code><Message>m</Message><BucketName>nob</BucketName><RequestId>RID1</RequestId></Error>"
        );
        // Other codes name neither; the request id always.
        assert_eq!(
            completed(
                "<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>",
                cx(Some("b"), Some("k"))
            ),
            "<Error><Code>AccessDenied</Code><Message>Access Denied</Message><RequestId>RID1</RequestId></Error>"
        );
        // A relayed origin document: its request id and bucket name are replaced (the
        // exposed bucket, not the origin's), its key and HostId kept, in S3's order.
        let origin = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message><BucketName>origin-name</BucketName><RequestId>ORIGIN</RequestId><HostId>h=</HostId></Error>";
        assert_eq!(
            completed(origin, cx(Some("exposed"), None)),
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message><BucketName>exposed</BucketName><RequestId>RID1</RequestId><HostId>h=</HostId></Error>"
        );
        let origin_key = "<Error><Code>NoSuchKey</Code><Message>m</Message><Key>k</Key><RequestId>X</RequestId></Error>";
        assert_eq!(
            completed(origin_key, cx(Some("b"), Some("k"))),
            "<Error><Code>NoSuchKey</Code><Message>m</Message><Key>k</Key><RequestId>RID1</RequestId></Error>"
        );
        // An early refusal already names it: still exactly one.
        let early = early_response(http::StatusCode::BAD_REQUEST, "InvalidRequest", "m", "RID1");
        let body = early.into_body().bytes().expect("bytes");
        let done = completed(std::str::from_utf8(&body).expect("utf-8"), cx(None, None));
        assert_eq!(
            done.matches("<RequestId>RID1</RequestId>").count(),
            1,
            "{done}"
        );
        // Not an error document: untouched.
        assert!(complete_error_body(b"<ListBucketResult/>", cx(None, None)).is_none());
        assert!(complete_error_body(b"\xff\xfe", cx(None, None)).is_none());
    }
}

/// An S3 XML error response for requests refused before s3s dispatches them (SigV2,
/// over-long presigned expiry).
pub fn early_response(
    status: http::StatusCode,
    code: &str,
    message: &str,
    request_id: &str,
) -> http::Response<s3s::Body> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>{}</Message><RequestId>{}</RequestId></Error>",
        xml_escape(code),
        xml_escape(message),
        xml_escape(request_id)
    );
    let mut resp = http::Response::new(s3s::Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/xml"),
    );
    resp
}

/// What an error document names besides its code: the request it answers, and the bucket and
/// key the request was about (when they are known without doubt).
#[derive(Debug, Clone, Copy)]
pub struct ErrorContext<'a> {
    /// The `x-amz-request-id` of the response.
    pub request_id: &'a str,
    /// The bucket the request named.
    pub bucket: Option<&'a str>,
    /// The key the request named.
    pub key: Option<&'a str>,
}

/// Codes whose S3 error document names the bucket (`<BucketName>`).
const BUCKET_CODES: &[&str] = &[
    "NoSuchBucket",
    "BucketNotEmpty",
    "BucketAlreadyExists",
    "BucketAlreadyOwnedByYou",
    "InvalidBucketName",
];

/// An S3 error document completed as S3 writes it: `<RequestId>` equal to the response's
/// `x-amz-request-id`, `<Key>` for `NoSuchKey` and `<BucketName>` for the bucket errors. s3s
/// renders only code and message, and a relayed origin document names the origin's request and
/// bucket; both are completed here, once, by splicing the elements in before `<HostId>` (or
/// `</Error>`) rather than serializing anew. `None`: not an error document, left as it is.
pub fn complete_error_body(body: &[u8], cx: ErrorContext<'_>) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(body).ok()?;
    let open = text.find("<Error>")?;
    let close = text.rfind("</Error>")?;
    if close < open {
        return None;
    }
    let (head, inner, tail) = (
        &text[..open + "<Error>".len()],
        &text[open + "<Error>".len()..close],
        &text[close..],
    );
    let code = element(inner, "Code").unwrap_or_default();
    let mut inner = without(inner, "RequestId");
    let mut add = String::new();
    if let (true, Some(b)) = (BUCKET_CODES.contains(&code.as_str()), cx.bucket) {
        // The exposed name, not the origin's (a relayed document names the origin's bucket).
        inner = without(&inner, "BucketName");
        add.push_str(&format!("<BucketName>{}</BucketName>", xml_escape(b)));
    }
    if let (true, Some(k)) = (code == "NoSuchKey", cx.key) {
        if element(&inner, "Key").is_none() && xml_text_ok(k) {
            add.push_str(&format!("<Key>{}</Key>", xml_escape(k)));
        }
    }
    add.push_str(&format!(
        "<RequestId>{}</RequestId>",
        xml_escape(cx.request_id)
    ));
    let at = inner.find("<HostId>").unwrap_or(inner.len());
    inner.insert_str(at, &add);
    Some([head, inner.as_str(), tail].concat().into_bytes())
}

/// The text of the first `<name>` element of `xml`.
fn element(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{name}>"))? + start;
    Some(xml[start..end].to_string())
}

/// `xml` without its `<name>` elements (also empty ones, `<name/>`).
fn without(xml: &str, name: &str) -> String {
    let (open, close, empty) = (
        format!("<{name}>"),
        format!("</{name}>"),
        format!("<{name}/>"),
    );
    let mut out = xml.replace(&empty, "");
    while let Some(start) = out.find(&open) {
        let Some(end) = out[start..].find(&close) else {
            break;
        };
        out.replace_range(start..start + end + close.len(), "");
    }
    out
}

/// Whether `s` can be XML 1.0 character data (escaped): no control characters but tab and
/// line ends.
fn xml_text_ok(s: &str) -> bool {
    !s.chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Requests Cistern refuses before dispatch: SigV2 in any form (s3s would accept it),
/// presigned URLs valid for more than 7 days, signatures scoped to another region, and
/// presigned URLs dated beyond the allowed skew in the future (S3 answers those `403
/// AccessDenied`, "Request is not yet valid"; s3s would say `RequestTimeTooSkewed`).
/// Returns (status, code, message).
pub fn refuse_early(
    method: &http::Method,
    headers: &http::HeaderMap,
    query: Option<&str>,
    region: &str,
) -> Option<(http::StatusCode, &'static str, String)> {
    let bad = |code: &'static str, msg: String| Some((http::StatusCode::BAD_REQUEST, code, msg));
    // Browser-form uploads (PostObject) are not implemented; s3s would read the whole form
    // (up to 5 GiB) into memory before any authorization check, so they stop here.
    let ctype = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if method == http::Method::POST
        && ctype
            .trim_start()
            .to_ascii_lowercase()
            .starts_with("multipart/form-data")
    {
        return Some((
            http::StatusCode::NOT_IMPLEMENTED,
            "NotImplemented",
            "PostObject (browser-based uploads) is not implemented".into(),
        ));
    }
    let auth = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // Names and values decoded exactly as s3s decodes them, every occurrence considered, so
    // that `AWSAccessKey%49d` or a repeated `X-Amz-Expires` cannot slip past. One pass, nothing
    // kept but what the checks below need (this runs on every request with a query string,
    // presigned cache hits included).
    let (mut v2_key, mut v2_sig, mut v4_sig) = (false, false, false);
    let mut expires_error: Option<&'static str> = None;
    let mut credential_region: Option<String> = None;
    let mut presigned_at: Option<Option<i64>> = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        // A pair with nothing to decode is read as it is; the others exactly as s3s decodes
        // them (`+` as a space, percent-decoding, lossy UTF-8), one pair at a time.
        let decoded;
        let (k, v): (&str, &str) = if pair.contains(['%', '+']) {
            decoded = form_urlencoded::parse(pair.as_bytes()).next();
            match &decoded {
                Some((k, v)) => (k, v),
                None => continue,
            }
        } else {
            pair.split_once('=').unwrap_or((pair, ""))
        };
        match k {
            "AWSAccessKeyId" => v2_key = true,
            "Signature" => v2_sig = true,
            "X-Amz-Signature" => v4_sig = true,
            "X-Amz-Expires" if expires_error.is_none() => {
                expires_error = match v.parse::<u64>() {
                    Ok(secs) if secs <= 604_800 => None,
                    Ok(_) => {
                        Some("X-Amz-Expires must be less than a week (in seconds) that is 604800")
                    }
                    Err(_) => Some("X-Amz-Expires should be a number"),
                };
            }
            "X-Amz-Credential" if credential_region.is_none() => {
                credential_region = v
                    .split('/')
                    .nth(2)
                    .filter(|r| *r != region)
                    .map(str::to_owned);
            }
            "X-Amz-Date" if presigned_at.is_none() => {
                presigned_at = Some(cistern_auth::sigv4::parse_amz_date(v));
            }
            _ => {}
        }
    }
    if auth.starts_with("AWS ") || v2_key || (v2_sig && !v4_sig) {
        return bad(
            "InvalidRequest",
            "The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256.".into(),
        );
    }
    if let Some(msg) = expires_error {
        return bad("AuthorizationQueryParametersError", msg.into());
    }
    // The credential scope's region must be ours, as S3 requires.
    let scope_region = |cred: &str| cred.split('/').nth(2).map(str::to_owned);
    let header_region = auth
        .strip_prefix("AWS4-HMAC-SHA256")
        .and_then(|rest| {
            rest.split(',')
                .find_map(|p| p.trim().strip_prefix("Credential="))
        })
        .and_then(scope_region);
    if let Some(r) = header_region.filter(|r| r != region) {
        return bad(
            "AuthorizationHeaderMalformed",
            format!("The authorization header is malformed; the region '{r}' is wrong; expecting '{region}'"),
        );
    }
    if let Some(r) = credential_region {
        return bad(
            "AuthorizationQueryParametersError",
            format!("Error parsing the X-Amz-Credential parameter; the region '{r}' is wrong; expecting '{region}'"),
        );
    }
    if let Some(Some(at)) = presigned_at.filter(|_| v4_sig && auth.is_empty()) {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        if at - now > cistern_auth::sigv4::MAX_SKEW_SECS {
            return Some((
                http::StatusCode::FORBIDDEN,
                "AccessDenied",
                "Request is not yet valid".into(),
            ));
        }
    }
    None
}

#[cfg(test)]
mod early_tests {
    use super::*;

    #[test]
    fn refuses_sigv2_long_presigns_and_foreign_regions() {
        let r = "us-east-1";
        let get = http::Method::GET;
        let code = |h: &http::HeaderMap, q: Option<&str>| refuse_early(&get, h, q, r).map(|x| x.1);
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::AUTHORIZATION,
            http::HeaderValue::from_static("AWS AKID:sig"),
        );
        assert_eq!(code(&h, None), Some("InvalidRequest"));
        let h = http::HeaderMap::new();
        assert_eq!(
            code(&h, Some("AWSAccessKeyId=a&Expires=1&Signature=x")),
            Some("InvalidRequest")
        );
        assert!(code(&h, Some("X-Amz-Expires=604801&X-Amz-Signature=x")).is_some());
        assert!(code(&h, Some("X-Amz-Expires=604800&X-Amz-Signature=x")).is_none());
        assert!(code(&h, Some("list-type=2")).is_none());
        let q = "X-Amz-Credential=AK%2F20260101%2Feu-west-1%2Fs3%2Faws4_request&X-Amz-Signature=x";
        assert_eq!(code(&h, Some(q)), Some("AuthorizationQueryParametersError"));
        let q = "X-Amz-Credential=AK%2F20260101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Signature=x";
        assert!(code(&h, Some(q)).is_none());
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::AUTHORIZATION,
            http::HeaderValue::from_static(
                "AWS4-HMAC-SHA256 Credential=AK/20260101/eu-west-1/s3/aws4_request, SignedHeaders=host, Signature=x",
            ),
        );
        assert_eq!(code(&h, None), Some("AuthorizationHeaderMalformed"));
        // Encoded or repeated names are seen as s3s sees them.
        let h = http::HeaderMap::new();
        assert_eq!(
            code(
                &h,
                Some("AWSAccessKey%49d=a&Expires=4102444800&Signature=x")
            ),
            Some("InvalidRequest")
        );
        assert!(code(&h, Some("X-Amz-Expire%73=4294967295&X-Amz-Signature=x")).is_some());
        assert!(code(
            &h,
            Some("X-Amz-Expires=60&X-Amz-Expires=999999999&X-Amz-Signature=x")
        )
        .is_some());
        // A presigned URL dated beyond the skew in the future is not valid yet; one from the
        // past is for the signature check to judge (expired or not).
        let h = http::HeaderMap::new();
        let future = refuse_early(
            &get,
            &h,
            Some("X-Amz-Date=29990101T000000Z&X-Amz-Signature=x"),
            r,
        );
        assert_eq!(
            future.map(|x| (x.0, x.1)),
            Some((http::StatusCode::FORBIDDEN, "AccessDenied"))
        );
        assert!(code(&h, Some("X-Amz-Date=20200101T000000Z&X-Amz-Signature=x")).is_none());
        let soon = (time::OffsetDateTime::now_utc() + time::Duration::minutes(5))
            .format(time::macros::format_description!(
                "[year][month][day]T[hour][minute][second]Z"
            ))
            .expect("date");
        assert!(code(&h, Some(&format!("X-Amz-Date={soon}&X-Amz-Signature=x"))).is_none());
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("multipart/form-data; boundary=x"),
        );
        assert_eq!(
            refuse_early(&http::Method::POST, &h, None, r).map(|x| x.1),
            Some("NotImplemented")
        );
    }
}
