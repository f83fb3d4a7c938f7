//! The Azure origin's one error mapping: error answers (status and `x-ms-error-code`) and
//! unreadable XML documents become internal errors.

use http::{Method, StatusCode};

use super::{Auth, AzureOrigin};
use crate::error::{Error, ErrorKind, Result};
use crate::origin::wire::{self, header, xml_code};
use crate::origin::Dialect;
use crate::origin::ForeignCredential;

impl AzureOrigin {
    /// The response when its status is a success or one of `accept`, else the classified error.
    pub(super) async fn check(
        &self,
        resp: reqwest::Response,
        method: &Method,
        accept: &[StatusCode],
        foreign: Option<&ForeignCredential>,
    ) -> Result<reqwest::Response> {
        let status = resp.status();
        if status.is_success() || accept.contains(&status) {
            return Ok(resp);
        }
        if foreign.is_none()
            && (status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN)
        {
            if let Auth::Bearer(source) = &self.auth {
                // Revoked or rotated: the next attempt fetches a new token.
                source.invalidate().await;
            }
        }
        let code = header(resp.headers(), "x-ms-error-code").map(str::to_string);
        let code = match code {
            Some(c) => c,
            None if *method == Method::HEAD => String::new(),
            None => xml_code(&resp.text().await.unwrap_or_default()).unwrap_or_default(),
        };
        Err(classify(status, &code))
    }
}

/// Maps an origin error response to an internal error (see the table in the module docs).
fn classify(status: StatusCode, code: &str) -> Error {
    let named = match (status.as_u16(), code) {
        (404, "ContainerNotFound") => (
            ErrorKind::NoSuchBucket,
            "The specified container does not exist",
        ),
        (404, _) => (ErrorKind::NotFound, "The specified blob does not exist"),
        (409, "ContainerAlreadyExists") => {
            (ErrorKind::BucketExists, "The container already exists")
        }
        (412, "AppendPositionConditionNotMet" | "MaxBlobSizeConditionNotMet") => (
            ErrorKind::PreconditionFailed,
            "The append condition was not met",
        ),
        (409, "InvalidBlobType") => (ErrorKind::InvalidArgument, "The blob is not an append blob"),
        (409, "BlobAlreadyExists") => (
            ErrorKind::PreconditionFailed,
            "An object already has this key",
        ),
        (400, "Md5Mismatch" | "InvalidMd5") => (
            ErrorKind::BadDigest,
            "The MD5 value specified in the request did not match the body",
        ),
        (412, c) if c.starts_with("Lease") => (
            ErrorKind::Leased,
            "There is currently a lease on the resource and no lease ID was specified",
        ),
        _ => wire::by_status(status),
    };
    wire::origin_error(named, Dialect::Blob, status, code.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_azure_codes() {
        assert_eq!(
            classify(StatusCode::NOT_FOUND, "BlobNotFound").kind(),
            ErrorKind::NotFound
        );
        assert_eq!(
            classify(StatusCode::NOT_FOUND, "ContainerNotFound").kind(),
            ErrorKind::NoSuchBucket
        );
        assert_eq!(
            classify(StatusCode::PRECONDITION_FAILED, "ConditionNotMet").kind(),
            ErrorKind::ObjectChanged
        );
        assert_eq!(
            classify(StatusCode::SERVICE_UNAVAILABLE, "ServerBusy").kind(),
            ErrorKind::Throttled
        );
        assert_eq!(
            classify(StatusCode::FORBIDDEN, "AuthenticationFailed").kind(),
            ErrorKind::AccessDenied
        );
    }
}
