//! The S3 origin's one error mapping: error answers (status, S3 code, delete marker) and
//! unreadable XML documents become internal errors.

use http::{HeaderMap, Method, StatusCode};

use crate::error::{Error, ErrorKind, Result};
use crate::origin::wire::{self, header, xml_code};
use crate::origin::Dialect;

/// The response when its status is a success or one of `accept`, else the classified error.
pub(super) async fn check(
    resp: reqwest::Response,
    method: &Method,
    accept: &[StatusCode],
) -> Result<reqwest::Response> {
    let status = resp.status();
    if status.is_success() || accept.contains(&status) {
        return Ok(resp);
    }
    let marker = delete_marker(resp.headers());
    let body = if *method == Method::HEAD {
        String::new()
    } else {
        resp.text().await.unwrap_or_default()
    };
    let e = classify(status, &body);
    Err(match marker {
        Some(m) => e.with_delete_marker(m),
        None => e,
    })
}

/// What an error answer says of a delete marker: S3 answers a read of a key whose current
/// version is a delete marker with 404 (405 for a `versionId` naming one) and
/// `x-amz-delete-marker: true`, naming the marker in `x-amz-version-id`.
fn delete_marker(h: &HeaderMap) -> Option<crate::error::DeleteMarker> {
    (header(h, "x-amz-delete-marker") == Some("true")).then(|| crate::error::DeleteMarker {
        version_id: header(h, "x-amz-version-id").map(str::to_owned),
    })
}

/// Maps an origin error response to an internal error (see the table in the module docs).
pub(crate) fn classify(status: StatusCode, body: &str) -> Error {
    let code = xml_code(body);
    let named = match (status.as_u16(), code.as_deref()) {
        (409, Some("BucketAlreadyOwnedByYou" | "BucketAlreadyExists")) => {
            (ErrorKind::BucketExists, "The bucket already exists")
        }
        (409, Some("BucketNotEmpty")) => (
            ErrorKind::BucketNotEmpty,
            "The bucket you tried to delete is not empty",
        ),
        (404, Some("NoSuchBucket")) => (
            ErrorKind::NoSuchBucket,
            "The specified bucket does not exist",
        ),
        (404, Some("NoSuchUpload")) => (
            ErrorKind::NoSuchUpload,
            "The specified upload does not exist",
        ),
        (404, _) => (ErrorKind::NotFound, "The specified key does not exist"),
        (400, Some("InvalidPart" | "InvalidPartOrder")) => (
            ErrorKind::InvalidPart,
            "One or more of the specified parts could not be found",
        ),
        (400, Some("BadDigest" | "InvalidDigest")) => (
            ErrorKind::BadDigest,
            "The Content-MD5 you specified did not match what was received",
        ),
        _ => wire::by_status(status),
    };
    wire::origin_error(named, Dialect::S3, status, code.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_origin_errors() {
        let body = "<Error><Code>NoSuchBucket</Code></Error>";
        assert_eq!(
            classify(StatusCode::NOT_FOUND, body).kind(),
            ErrorKind::NoSuchBucket
        );
        assert_eq!(
            classify(StatusCode::NOT_FOUND, "").kind(),
            ErrorKind::NotFound
        );
        assert_eq!(
            classify(StatusCode::PRECONDITION_FAILED, "").kind(),
            ErrorKind::ObjectChanged
        );
        assert_eq!(
            classify(StatusCode::SERVICE_UNAVAILABLE, "").kind(),
            ErrorKind::Throttled
        );
        assert!(classify(StatusCode::INTERNAL_SERVER_ERROR, "").is_retryable());
        assert!(!classify(StatusCode::FORBIDDEN, "").is_retryable());
    }

    #[test]
    fn delete_markers_are_read_from_error_answers() {
        let mut h = HeaderMap::new();
        assert_eq!(delete_marker(&h), None);
        h.insert("x-amz-version-id", "v1".parse().expect("hv"));
        assert_eq!(delete_marker(&h), None, "a version id alone is no marker");
        h.insert("x-amz-delete-marker", "true".parse().expect("hv"));
        assert_eq!(
            delete_marker(&h),
            Some(crate::error::DeleteMarker {
                version_id: Some("v1".into())
            })
        );
        h.insert("x-amz-delete-marker", "false".parse().expect("hv"));
        assert_eq!(delete_marker(&h), None);
    }

    #[tokio::test]
    async fn an_error_answer_for_a_delete_marker_keeps_it() {
        let resp = |marker: bool| {
            let mut b = http::Response::builder().status(404);
            if marker {
                b = b
                    .header("x-amz-delete-marker", "true")
                    .header("x-amz-version-id", "m-1");
            }
            reqwest::Response::from(b.body(String::new()).expect("response"))
        };
        let e = check(resp(true), &Method::HEAD, &[])
            .await
            .expect_err("404");
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert_eq!(
            e.delete_marker().and_then(|m| m.version_id.as_deref()),
            Some("m-1")
        );
        let e = check(resp(false), &Method::GET, &[])
            .await
            .expect_err("404");
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(e.delete_marker().is_none());
    }
}
