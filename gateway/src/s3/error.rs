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
        ErrorKind::InvalidArgument => S3ErrorCode::InvalidArgument,
        ErrorKind::AccessDenied => S3ErrorCode::AccessDenied,
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
    if let Some(size) = e.object_size() {
        let mut h = http::HeaderMap::new();
        if let Ok(v) = http::HeaderValue::from_str(&format!("bytes */{size}")) {
            h.insert(http::header::CONTENT_RANGE, v);
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

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Requests Cistern refuses before dispatch: SigV2 in any form (s3s would accept it), and
/// presigned URLs valid for more than 7 days. Returns (status, code, message).
pub fn refuse_early(
    headers: &http::HeaderMap,
    query: Option<&str>,
) -> Option<(http::StatusCode, &'static str, &'static str)> {
    let auth = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let q = query.unwrap_or("");
    let has = |name: &str| q.split('&').any(|p| p.split('=').next() == Some(name));
    if auth.starts_with("AWS ") || (has("Signature") && has("AWSAccessKeyId")) {
        return Some((
            http::StatusCode::BAD_REQUEST,
            "InvalidRequest",
            "The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256.",
        ));
    }
    let expires = q
        .split('&')
        .find_map(|p| p.strip_prefix("X-Amz-Expires="))
        .map(|v| v.parse::<u64>());
    match expires {
        Some(Ok(secs)) if secs > 604_800 => Some((
            http::StatusCode::BAD_REQUEST,
            "AuthorizationQueryParametersError",
            "X-Amz-Expires must be less than a week (in seconds) that is 604800",
        )),
        Some(Err(_)) => Some((
            http::StatusCode::BAD_REQUEST,
            "AuthorizationQueryParametersError",
            "X-Amz-Expires should be a number",
        )),
        _ => None,
    }
}

#[cfg(test)]
mod early_tests {
    use super::*;

    #[test]
    fn refuses_sigv2_and_long_presigns() {
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::AUTHORIZATION,
            http::HeaderValue::from_static("AWS AKID:sig"),
        );
        assert!(refuse_early(&h, None).is_some());
        let h = http::HeaderMap::new();
        assert!(refuse_early(&h, Some("AWSAccessKeyId=a&Expires=1&Signature=x")).is_some());
        assert!(refuse_early(&h, Some("X-Amz-Expires=604801&X-Amz-Signature=x")).is_some());
        assert!(refuse_early(&h, Some("X-Amz-Expires=604800&X-Amz-Signature=x")).is_none());
        assert!(refuse_early(&h, Some("list-type=2")).is_none());
    }
}
