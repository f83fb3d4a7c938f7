//! The `s3` origin: any S3-compatible endpoint, with SigV4-signed requests through one pooled
//! HTTP client per origin.
//!
//! Error classification (Amazon S3 API Reference, "Error responses" / "List of error codes"):
//!
//! | HTTP / S3 code                                   | internal kind        |
//! |--------------------------------------------------|----------------------|
//! | 404 `NoSuchKey`                                  | `NotFound`           |
//! | 404/405 with `x-amz-delete-marker: true`         | as by status and code, with the marker (`Error::delete_marker`) |
//! | 404 `NoSuchBucket`                               | `NoSuchBucket`       |
//! | 412 `PreconditionFailed` (we sent `If-Match`)    | `ObjectChanged`      |
//! | 400 `BadDigest`, `InvalidDigest` (uploads)       | `BadDigest`          |
//! | 403 `AccessDenied`, `SignatureDoesNotMatch`, …   | `AccessDenied`       |
//! | 400 `InvalidArgument`, `InvalidRequest`, …       | `InvalidArgument`    |
//! | 429, 503 `SlowDown`                              | `Throttled` (retry)  |
//! | 500 `InternalError`, 502, 504, connect failures  | `OriginUnavailable` (retry) |
//! | 501 `NotImplemented`                             | `NotImplemented`     |

pub(crate) mod error;
mod headers;
pub(crate) mod list;
mod ops;
mod request;
mod staging;

pub use staging::BLOCK_STAGING;

use cistern_auth::sigv4;
use cistern_auth::Secret;

// Origin items the submodules name as `super::…`.
use super::{upload, wire};
use super::{BlockRef, Dialect, Owner, PartEntry, PartListing, PropertyKind};
use super::{UploadEntry, VersionEntry, VersionPage, VersionQuery};

/// Settings of an S3 origin.
#[derive(Debug, Clone)]
pub struct S3OriginConfig {
    /// `http://host:port` or `https://host`.
    pub endpoint: String,
    /// Signing region.
    pub region: String,
    /// Access key id; `None` sends unsigned requests.
    pub access_key_id: Option<String>,
    /// Secret access key.
    pub secret_access_key: Option<Secret>,
    /// Path-style (`endpoint/bucket/key`) rather than virtual-host addressing.
    pub path_style: bool,
}

/// An S3-compatible origin.
#[derive(Debug, Clone)]
pub struct S3Origin {
    client: reqwest::Client,
    scheme: String,
    authority: String,
    creds: Option<sigv4::Credentials>,
    path_style: bool,
}

impl S3Origin {
    /// Builds the client; fails on a malformed endpoint.
    pub fn new(cfg: &S3OriginConfig) -> std::result::Result<Self, String> {
        let uri: http::Uri = cfg
            .endpoint
            .parse()
            .map_err(|e| format!("invalid endpoint {:?}: {e}", cfg.endpoint))?;
        let scheme = uri.scheme_str().unwrap_or("https").to_string();
        if scheme != "http" && scheme != "https" {
            return Err(format!("endpoint {:?} must be http or https", cfg.endpoint));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| format!("endpoint {:?} has no host", cfg.endpoint))?;
        // Sign the Host exactly as the HTTP client sends it: lower case, default port omitted.
        let authority = match (authority.port_u16(), scheme.as_str()) {
            (Some(80), "http") | (Some(443), "https") => authority.host().to_ascii_lowercase(),
            _ => authority.as_str().to_ascii_lowercase(),
        };
        let creds = match (&cfg.access_key_id, &cfg.secret_access_key) {
            (Some(ak), Some(sk)) => Some(sigv4::Credentials {
                access_key_id: ak.clone(),
                secret_access_key: sk.clone(),
                region: cfg.region.clone(),
                service: "s3".into(),
            }),
            (None, None) => None,
            _ => return Err("access_key_id and secret_access_key must be given together".into()),
        };
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self {
            client,
            scheme,
            authority,
            creds,
            path_style: cfg.path_style,
        })
    }
}
