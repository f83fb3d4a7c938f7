//! The Blob dialect's one error mapping: internal errors, routing and authentication
//! failures become an Azure status, `x-ms-error-code` and XML body. Nothing internal leaks:
//! the source is logged, the client gets the code, a short message and the request id.

use std::borrow::Cow;

use bytes::Bytes;
use cistern_auth::sas::SasError;
use http::{HeaderMap, StatusCode};

use super::router::RouteError;
use super::{quoted, set, xml, BlobBody, Reply};
use crate::error::{Error, ErrorKind};

/// A Blob wire error.
#[derive(Debug, Clone)]
pub struct BlobError {
    /// HTTP status.
    pub status: StatusCode,
    /// `x-ms-error-code` and `<Code>`.
    pub code: Cow<'static, str>,
    /// `<Message>` (the request id and time are appended when rendered).
    pub message: Cow<'static, str>,
    /// An extra element, e.g. `AuthenticationErrorDetail` or `QueryParameterName`.
    pub detail: Option<Box<(&'static str, String)>>,
    /// For 416: the object's size (`Content-Range: bytes */N`).
    pub object_size: Option<u64>,
    /// For 304: the current ETag and Last-Modified.
    pub validators: Option<Box<(String, std::time::SystemTime)>>,
}

impl BlobError {
    /// A new error.
    pub fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            status,
            code: Cow::Borrowed(code),
            message: message.into(),
            detail: None,
            object_size: None,
            validators: None,
        }
    }

    /// Adds an extra XML element.
    pub fn with_detail(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.detail = Some(Box::new((name, value.into())));
        self
    }

    /// 403 AuthenticationFailed with the reason in `AuthenticationErrorDetail`.
    pub fn auth_failed(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "AuthenticationFailed",
            "Server failed to authenticate the request. Make sure the value of Authorization header is formed correctly including the signature.",
        )
        .with_detail("AuthenticationErrorDetail", detail)
    }

    /// 403 AuthorizationPermissionMismatch.
    pub fn permission_mismatch() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "AuthorizationPermissionMismatch",
            "This request is not authorized to perform this operation using this permission.",
        )
    }

    /// 403 AuthorizationFailure.
    pub fn authorization_failure() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "AuthorizationFailure",
            "This request is not authorized to perform this operation.",
        )
    }

    /// 404 ResourceNotFound: what an anonymous caller sees for anything not public.
    pub fn resource_not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            "The specified resource does not exist.",
        )
    }

    /// 400 InvalidHeaderValue naming the header.
    pub fn invalid_header(name: &'static str, why: &'static str) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "InvalidHeaderValue", why)
            .with_detail("HeaderName", name)
    }

    /// 400 InvalidQueryParameterValue naming the parameter.
    pub fn invalid_query(name: &'static str, value: &str, why: &'static str) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "InvalidQueryParameterValue", why)
            .with_detail("QueryParameterName", name)
            .with_value(value)
    }

    fn with_value(mut self, value: &str) -> Self {
        // Kept short: the value is the client's own input.
        let v: String = value.chars().take(128).collect();
        self.message = Cow::Owned(format!("{} (value: {v})", self.message));
        self
    }

    /// 400 InvalidInput: a Blob Batch body (or a part of it) that cannot be read, or a
    /// sub-request a batch may not hold.
    pub fn invalid_input() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "InvalidInput",
            "One of the request inputs is not valid.",
        )
    }

    /// 400 MissingRequiredHeader naming the header.
    pub fn missing_header(name: &'static str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "MissingRequiredHeader",
            "An HTTP header that's mandatory for this request is not specified.",
        )
        .with_detail("HeaderName", name)
    }

    /// 400 AllBatchSubRequestsShouldBeSameApi: a batch mixing Delete Blob and Set Blob Tier.
    pub fn batch_mixed_operations() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "AllBatchSubRequestsShouldBeSameApi",
            "All batch subrequests should be the same api.",
        )
    }

    /// 400 ExceedsMaxBatchRequestCount: more sub-requests than a batch may hold.
    pub fn batch_too_many(max: usize) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "ExceedsMaxBatchRequestCount",
            "The batch operation exceeds maximum number of allowed subrequests.",
        )
        .with_detail("MaxLimit", max.to_string())
    }

    /// 413 RequestBodyTooLarge, with the limit.
    pub fn body_too_large(max: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestBodyTooLarge",
            "The request body is too large and exceeds the maximum permissible limit.",
        )
        .with_detail("MaxLimit", max.to_string())
    }

    /// 400 InvalidHeaderValue for a preflight without `Origin` or
    /// `Access-Control-Request-Method`.
    pub fn cors_header_missing(name: &'static str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "InvalidHeaderValue",
            "A required CORS header is not present.",
        )
        .with_detail("HeaderName", name)
    }

    /// 403 CorsPreflightFailure: no CORS rule allows the preflight.
    pub fn cors_preflight_failure() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "CorsPreflightFailure",
            "CORS not enabled or no matching rule found for this request.",
        )
    }

    /// 501 for an operation Cistern does not implement.
    pub fn not_implemented(op: &str) -> Self {
        Self::new(
            StatusCode::NOT_IMPLEMENTED,
            "NotImplemented",
            format!("The {op} operation is not implemented by Cistern."),
        )
    }

    /// The XML body (`None` for 304 and HEAD is decided by the caller).
    pub fn xml(&self, request_id: &str) -> String {
        let now = httpdate::fmt_http_date(std::time::SystemTime::now());
        let mut s = String::with_capacity(256);
        s.push_str("<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>");
        s.push_str(&self.code);
        s.push_str("</Code><Message>");
        super::xml::escape_into(&mut s, &self.message);
        s.push_str("\nRequestId:");
        s.push_str(request_id);
        s.push_str("\nTime:");
        s.push_str(&now);
        s.push_str("</Message>");
        if let Some((name, value)) = self.detail.as_deref() {
            s.push('<');
            s.push_str(name);
            s.push('>');
            super::xml::escape_into(&mut s, value);
            s.push_str("</");
            s.push_str(name);
            s.push('>');
        }
        s.push_str("</Error>");
        s
    }
}

impl From<Error> for BlobError {
    fn from(e: Error) -> Self {
        let (status, code, message): (StatusCode, &'static str, &'static str) = match e.kind() {
            ErrorKind::NoSuchBucket => (
                StatusCode::NOT_FOUND,
                "ContainerNotFound",
                "The specified container does not exist.",
            ),
            ErrorKind::NotFound => (
                StatusCode::NOT_FOUND,
                "BlobNotFound",
                "The specified blob does not exist.",
            ),
            ErrorKind::PreconditionFailed => (
                StatusCode::PRECONDITION_FAILED,
                "ConditionNotMet",
                "The condition specified using HTTP conditional header(s) is not met.",
            ),
            ErrorKind::NotModified => (
                StatusCode::NOT_MODIFIED,
                "ConditionNotMet",
                "The condition specified using HTTP conditional header(s) is not met.",
            ),
            ErrorKind::InvalidRange => (
                StatusCode::RANGE_NOT_SATISFIABLE,
                "InvalidRange",
                "The range specified is invalid for the current size of the resource.",
            ),
            ErrorKind::InvalidPartNumber | ErrorKind::InvalidArgument => (
                StatusCode::BAD_REQUEST,
                "InvalidInput",
                "One of the request inputs is not valid.",
            ),
            ErrorKind::BadDigest => (
                StatusCode::BAD_REQUEST,
                "Md5Mismatch",
                "The MD5 value specified in the request did not match with the MD5 value calculated by the server.",
            ),
            ErrorKind::IncompleteBody => (
                StatusCode::BAD_REQUEST,
                "InvalidInput",
                "The request body is shorter or longer than its Content-Length.",
            ),
            ErrorKind::BucketExists => (
                StatusCode::CONFLICT,
                "ContainerAlreadyExists",
                "The specified container already exists.",
            ),
            ErrorKind::BucketNotEmpty => (
                StatusCode::CONFLICT,
                "ContainerBeingDeleted",
                "The specified container still holds blobs at its origin.",
            ),
            ErrorKind::NoSuchUpload | ErrorKind::InvalidPart => (
                StatusCode::BAD_REQUEST,
                "InvalidBlockList",
                "The specified block list is invalid.",
            ),
            ErrorKind::AccessDenied => (
                StatusCode::FORBIDDEN,
                "AuthorizationFailure",
                "This request is not authorized to perform this operation.",
            ),
            ErrorKind::SignatureMismatch => (
                StatusCode::FORBIDDEN,
                "AuthenticationFailed",
                "Server failed to authenticate the request. Make sure the value of Authorization header is formed correctly including the signature.",
            ),
            ErrorKind::Throttled | ErrorKind::OriginUnavailable | ErrorKind::ObjectChanged => (
                StatusCode::SERVICE_UNAVAILABLE,
                "ServerBusy",
                "The server is currently unable to receive requests. Please retry your request.",
            ),
            ErrorKind::Leased => (
                StatusCode::PRECONDITION_FAILED,
                "LeaseIdMissing",
                "There is currently a lease on the resource and no lease ID was specified in the request.",
            ),
            // Azure answers a request it gave up on, the client's slowness included, with
            // 500 OperationTimedOut (its analytics log that as ClientTimeoutError).
            ErrorKind::OriginTimeout | ErrorKind::ClientTimeout => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "OperationTimedOut",
                "The operation could not be completed within the permitted time.",
            ),
            ErrorKind::NotImplemented => (
                StatusCode::NOT_IMPLEMENTED,
                "NotImplemented",
                "The requested operation is not implemented by Cistern.",
            ),
            ErrorKind::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "The server encountered an internal error. Please retry the request.",
            ),
        };
        if matches!(
            e.kind(),
            ErrorKind::Internal | ErrorKind::OriginUnavailable | ErrorKind::OriginTimeout
        ) {
            tracing::warn!(error = %e, "blob request failed");
        }
        let mut out = Self::new(status, code, message);
        if let Some(o) = crate::origin::OriginStatus::relayable(&e, crate::origin::Dialect::Blob) {
            // Azure's own answer, where the classification would blur it (BlobIsSealed,
            // LeaseIdMismatchWithBlobOperation, …).
            out.status = StatusCode::from_u16(o.status).unwrap_or(out.status);
            out.code = Cow::Owned(o.code.clone());
        }
        out.object_size = e.object_size();
        out.validators = e.validators().map(|(t, lm)| Box::new((t.to_string(), lm)));
        out
    }
}

impl From<RouteError> for BlobError {
    fn from(e: RouteError) -> Self {
        match e {
            RouteError::NoAccount => Self::new(
                StatusCode::BAD_REQUEST,
                "InvalidUri",
                "The requested URI does not represent any resource on the server.",
            ),
            RouteError::BadPath => Self::new(
                StatusCode::BAD_REQUEST,
                "InvalidUri",
                "The requested URI does not represent any resource on the server.",
            ),
            RouteError::Verb => Self::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "UnsupportedHttpVerb",
                "The resource doesn't support specified Http Verb.",
            ),
            RouteError::BadParameter(name, value) => Self::invalid_query(
                name,
                &value,
                "Value for one of the query parameters specified in the request URI is invalid.",
            ),
        }
    }
}

impl From<SasError> for BlobError {
    fn from(e: SasError) -> Self {
        let (code, message) = match &e {
            SasError::Malformed(_) | SasError::BadSignature | SasError::Time(_) => {
                return Self::auth_failed(e.to_string());
            }
            SasError::Protocol => ("AuthorizationProtocolMismatch", e.to_string()),
            SasError::SourceIp => ("AuthorizationSourceIPMismatch", e.to_string()),
            SasError::Permission => ("AuthorizationPermissionMismatch", e.to_string()),
            SasError::Service => ("AuthorizationServiceMismatch", e.to_string()),
            SasError::ResourceType => ("AuthorizationResourceTypeMismatch", e.to_string()),
            SasError::Scope => ("AuthorizationFailure", e.to_string()),
        };
        Self::new(StatusCode::FORBIDDEN, code, format!("{message}."))
    }
}

/// A create-only write the origin refused because the blob exists: Azure's 409.
pub(super) fn already_exists(e: crate::error::Error, create_only: bool) -> BlobError {
    if create_only && e.kind() == crate::error::ErrorKind::PreconditionFailed {
        BlobError::new(
            StatusCode::CONFLICT,
            "BlobAlreadyExists",
            "The specified blob already exists.",
        )
    } else {
        e.into()
    }
}

/// 403/404 CannotVerifyCopySource: the copy source is missing or may not be read.
pub(super) fn cannot_verify(status: StatusCode, message: &'static str) -> BlobError {
    BlobError::new(status, "CannotVerifyCopySource", message)
}

/// Renders an error: status, `x-ms-error-code`, XML body (none for HEAD and 304).
pub(super) fn error_reply(e: BlobError, request_id: &str, head: bool) -> Reply {
    let mut h = HeaderMap::new();
    set(&mut h, "x-ms-error-code", &e.code);
    if let Some(size) = e.object_size {
        set(&mut h, "content-range", &format!("bytes */{size}"));
    }
    if let Some((etag, lm)) = e.validators.as_deref() {
        set(&mut h, "etag", &quoted(etag));
        set(&mut h, "last-modified", &xml::http_date(*lm));
    }
    if head || e.status == StatusCode::NOT_MODIFIED {
        return Reply::empty(e.status, h);
    }
    set(&mut h, "content-type", "application/xml");
    let body = Bytes::from(e.xml(request_id));
    Reply {
        status: e.status,
        length: Some(body.len() as u64),
        headers: h,
        body: BlobBody::Full(Some(body)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_kinds_map_to_azure_codes() {
        let e: BlobError = Error::new(ErrorKind::NotFound, "x").into();
        assert_eq!((e.status.as_u16(), &*e.code), (404, "BlobNotFound"));
        let e: BlobError = Error::new(ErrorKind::NoSuchBucket, "x").into();
        assert_eq!((e.status.as_u16(), &*e.code), (404, "ContainerNotFound"));
        let e: BlobError = Error::invalid_range(10).into();
        assert_eq!((e.status.as_u16(), e.object_size), (416, Some(10)));
        let e: BlobError = SasError::Permission.into();
        assert_eq!(
            (e.status.as_u16(), &*e.code),
            (403, "AuthorizationPermissionMismatch")
        );
    }

    #[test]
    fn xml_is_escaped_and_carries_the_request_id() {
        let x = BlobError::auth_failed("a<b").xml("rid-1");
        assert!(x.starts_with(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>AuthenticationFailed</Code>"
        ));
        assert!(x.contains("RequestId:rid-1"));
        assert!(x.contains("<AuthenticationErrorDetail>a&lt;b</AuthenticationErrorDetail>"));
    }
}
