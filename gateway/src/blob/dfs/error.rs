//! The DFS dialect's one error rendering. Errors are made as the Blob front makes them (the
//! internal error table and authentication failures are shared with [`super::super::error`]),
//! then named as the DFS endpoint names them (`PathNotFound`, `FilesystemNotFound`, …) in
//! `x-ms-error-code` and a JSON body: `{"error":{"code":…,"message":…}}`.

use bytes::Bytes;
use http::StatusCode;

use super::super::error::{error_reply as blob_error_reply, BlobError};
use super::super::{set, BlobBody, Reply};
use super::router::DfsRouteError;

/// The DFS name of a Blob error code.
fn dfs_code(code: &str) -> &str {
    match code {
        "BlobNotFound" => "PathNotFound",
        "ContainerNotFound" => "FilesystemNotFound",
        "BlobAlreadyExists" => "PathAlreadyExists",
        "ContainerAlreadyExists" => "FilesystemAlreadyExists",
        "ContainerBeingDeleted" => "FilesystemBeingDeleted",
        other => other,
    }
}

/// The JSON error body.
pub(super) fn json(code: &str, message: &str, request_id: &str) -> String {
    let now = httpdate::fmt_http_date(std::time::SystemTime::now());
    serde_json::json!({
        "error": {
            "code": code,
            "message": format!("{message}\nRequestId:{request_id}\nTime:{now}"),
        }
    })
    .to_string()
}

/// Renders `e` for a DFS client.
pub(in crate::blob) fn error_reply(e: BlobError, request_id: &str, head: bool) -> Reply {
    let code = dfs_code(&e.code).to_string();
    let message = e.message.to_string();
    let status = e.status;
    let mut reply = blob_error_reply(e, request_id, head);
    set(&mut reply.headers, "x-ms-error-code", &code);
    if head || status == StatusCode::NOT_MODIFIED {
        return reply;
    }
    let body = Bytes::from(json(&code, &message, request_id));
    set(
        &mut reply.headers,
        "content-type",
        "application/json;charset=utf-8",
    );
    reply.length = Some(body.len() as u64);
    reply.body = BlobBody::Full(Some(body));
    reply
}

impl From<DfsRouteError> for BlobError {
    fn from(e: DfsRouteError) -> Self {
        match e {
            DfsRouteError::NoAccount => BlobError::resource_not_found(),
            DfsRouteError::BadPath => BlobError::new(
                StatusCode::BAD_REQUEST,
                "InvalidUri",
                "The request URI is invalid.",
            ),
            DfsRouteError::BadParameter(name, value) if value.is_empty() => BlobError::new(
                StatusCode::BAD_REQUEST,
                "MissingRequiredQueryParameter",
                "A query parameter that's mandatory for this request is not specified.",
            )
            .with_detail("QueryParameterName", name),
            DfsRouteError::BadParameter(name, value) => BlobError::invalid_query(
                name,
                &value,
                "One of the query parameters specified in the request URI is not valid.",
            ),
            DfsRouteError::Verb => BlobError::new(
                StatusCode::BAD_REQUEST,
                "UnsupportedHttpVerb",
                "The resource doesn't support the specified HTTP verb.",
            ),
        }
    }
}

/// 400 InvalidFlushPosition: the appended data does not end where the flush says.
pub(super) fn invalid_flush_position() -> BlobError {
    BlobError::new(
        StatusCode::BAD_REQUEST,
        "InvalidFlushPosition",
        "The uploaded data is not contiguous or the position query parameter value is not equal to the length of the file after appending the uploaded data.",
    )
}

/// 404 PathNotFound.
pub(super) fn path_not_found() -> BlobError {
    BlobError::new(
        StatusCode::NOT_FOUND,
        "PathNotFound",
        "The specified path does not exist.",
    )
}

/// 409 PathAlreadyExists.
pub(super) fn path_exists() -> BlobError {
    BlobError::new(
        StatusCode::CONFLICT,
        "PathAlreadyExists",
        "The specified path already exists.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_codes_get_their_dfs_names_and_a_json_body() {
        let e: BlobError =
            crate::error::Error::new(crate::error::ErrorKind::NotFound, "gone").into();
        let r = error_reply(e, "rid-1", false);
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        assert_eq!(r.headers["x-ms-error-code"], "PathNotFound");
        let BlobBody::Full(Some(body)) = r.body else {
            panic!("a body")
        };
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["error"]["code"], "PathNotFound");
        assert!(v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("RequestId:rid-1")));
        let head = error_reply(
            crate::error::Error::new(crate::error::ErrorKind::NoSuchBucket, "x").into(),
            "rid-2",
            true,
        );
        assert_eq!(head.headers["x-ms-error-code"], "FilesystemNotFound");
        assert!(matches!(head.body, BlobBody::Empty));
    }
}
