//! The `azure_blob` origin: an Azure Blob Storage account (or Azurite), read with ranged GETs
//! carrying `If-Match`, signed with Shared Key (our signer, shared with the Blob front's
//! verifier) or authorized with a SAS token or an Entra ID bearer token ([`super::entra`]),
//! through one pooled HTTP client per origin.
//!
//! Error classification (Azure Storage REST reference, "Blob service error codes" and
//! "Common REST API error codes"), by status and `x-ms-error-code`:
//!
//! | HTTP / Azure code                                        | internal kind        |
//! |----------------------------------------------------------|----------------------|
//! | 404 `BlobNotFound`                                       | `NotFound`           |
//! | 404 `ContainerNotFound`                                  | `NoSuchBucket`       |
//! | 412 `ConditionNotMet` (we sent `If-Match`)               | `ObjectChanged`      |
//! | 400 `Md5Mismatch`, `InvalidMd5` (uploads)                | `BadDigest`          |
//! | 403 `AuthenticationFailed`, `AuthorizationFailure`, …     | `AccessDenied`       |
//! | 409 `BlobArchived` and other conflicts, 400 `Invalid*`   | `InvalidArgument`    |
//! | 503 `ServerBusy`, 429                                    | `Throttled` (retry)  |
//! | 500 `InternalError`, `OperationTimedOut`, 502, 504, I/O  | `OriginUnavailable` (retry) |
//! | 501                                                      | `NotImplemented`     |

mod blocks;
mod error;
mod headers;
mod list;
pub(crate) mod ops;
mod request;

use cistern_auth::sharedkey;
use cistern_auth::Secret;

// Origin items the submodules name as `super::…`.
use super::{single_part, upload, wire};
use super::{AppendOptions, Appended, Dialect, PropertyKind};

/// The REST version Cistern speaks to Azure origins.
pub const API_VERSION: &str = "2023-11-03";

/// How an Azure origin is authorized.
#[derive(Debug, Clone)]
pub enum AzureCredential {
    /// Shared Key with the account key (base64).
    SharedKey(Secret),
    /// A SAS token (the query string, with or without a leading `?`).
    Sas(Secret),
    /// Microsoft Entra ID access tokens (workload identity, managed identity, client secret).
    Entra(super::entra::EntraSource),
    /// No credentials: public containers only.
    Anonymous,
}

/// Settings of an Azure Blob origin.
#[derive(Debug, Clone)]
pub struct AzureOriginConfig {
    /// `https://<account>.blob.core.windows.net`, or an emulator URL with the account in the
    /// path, `http://127.0.0.1:10000/devstoreaccount1`.
    pub endpoint: String,
    /// The storage account name.
    pub account: String,
    /// Credentials.
    pub credential: AzureCredential,
}

enum Auth {
    SharedKey(Vec<u8>),
    Sas(Vec<(String, String)>),
    Bearer(super::entra::TokenSource),
    Anonymous,
}

/// An Azure Blob origin.
pub struct AzureOrigin {
    client: reqwest::Client,
    /// `scheme://authority`.
    base: String,
    /// The path prefix (`/devstoreaccount1` for emulator-style endpoints, else empty).
    base_path: String,
    account: String,
    auth: Auth,
}

impl std::fmt::Debug for AzureOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureOrigin")
            .field("base", &self.base)
            .field("base_path", &self.base_path)
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

impl AzureOrigin {
    /// Builds the client; fails on a malformed endpoint or key.
    pub fn new(cfg: &AzureOriginConfig) -> std::result::Result<Self, String> {
        let uri: http::Uri = cfg
            .endpoint
            .parse()
            .map_err(|e| format!("invalid endpoint {:?}: {e}", cfg.endpoint))?;
        let scheme = uri.scheme_str().unwrap_or("https");
        if scheme != "http" && scheme != "https" {
            return Err(format!("endpoint {:?} must be http or https", cfg.endpoint));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| format!("endpoint {:?} has no host", cfg.endpoint))?;
        if uri.query().is_some() {
            return Err("the endpoint must not carry a query; give a SAS as `sas`".into());
        }
        let base_path = uri.path().trim_end_matches('/').to_string();
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let auth = match &cfg.credential {
            AzureCredential::SharedKey(k) => Auth::SharedKey(
                sharedkey::decode_key(k.expose()).ok_or("the account key is not base64")?,
            ),
            AzureCredential::Sas(t) => {
                let t = t.expose().trim_start_matches('?');
                let pairs: Vec<(String, String)> = form_urlencoded::parse(t.as_bytes())
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect();
                if !pairs.iter().any(|(k, _)| k == "sig") {
                    return Err("the SAS token has no sig".into());
                }
                Auth::Sas(pairs)
            }
            AzureCredential::Anonymous => Auth::Anonymous,
            AzureCredential::Entra(source) => Auth::Bearer(super::entra::TokenSource::new(
                source.clone(),
                client.clone(),
            )),
        };
        Ok(Self {
            client,
            base: format!("{scheme}://{authority}"),
            base_path,
            account: cfg.account.clone(),
            auth,
        })
    }
}
