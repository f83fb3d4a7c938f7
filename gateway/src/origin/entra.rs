//! Microsoft Entra ID access tokens for Azure origins: workload identity (the AKS path: a
//! federated service-account token exchanged for an access token), managed identity (the
//! instance metadata endpoint) and a client secret. Tokens are cached and refreshed by one
//! caller at a time, five minutes before they expire.
//!
//! Written on reqwest rather than `azure_identity`: these are three small, documented HTTP
//! exchanges, and the SDK would add its own HTTP stack and runtime glue to every build.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cistern_auth::Secret;
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::error::{Error, ErrorKind, Result};

/// The scope of Azure Storage.
pub const STORAGE_SCOPE: &str = "https://storage.azure.com/.default";

/// Refresh this long before a token expires.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// Where an Entra token comes from.
#[derive(Debug, Clone)]
pub enum EntraSource {
    /// Workload identity: the federated token in `token_file` (rotated by Kubernetes) is the
    /// client assertion for `client_id` in `tenant_id`.
    WorkloadIdentity {
        /// `https://login.microsoftonline.com/` or the cloud's authority.
        authority: String,
        /// Tenant.
        tenant_id: String,
        /// Application (client) id.
        client_id: String,
        /// The projected service-account token.
        token_file: PathBuf,
    },
    /// Managed identity through the instance metadata endpoint.
    ManagedIdentity {
        /// `http://169.254.169.254/metadata/identity/oauth2/token` unless overridden.
        endpoint: String,
        /// A user-assigned identity's client id; `None` for the system-assigned one.
        client_id: Option<String>,
    },
    /// An application's client secret.
    ClientSecret {
        /// Authority URL.
        authority: String,
        /// Tenant.
        tenant_id: String,
        /// Application (client) id.
        client_id: String,
        /// The secret.
        secret: Secret,
    },
}

/// A token endpoint's answer (no `Debug`: it holds the token).
#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    /// Seconds; the metadata endpoint sends it as a string.
    #[serde(deserialize_with = "seconds")]
    expires_in: u64,
}

fn seconds<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumOrStr {
        N(u64),
        S(String),
    }
    match NumOrStr::deserialize(d)? {
        NumOrStr::N(n) => Ok(n),
        NumOrStr::S(s) => s.parse().map_err(serde::de::Error::custom),
    }
}

struct Cached {
    token: Arc<str>,
    refresh_at: Instant,
}

/// A cached source of access tokens for Azure Storage.
pub struct TokenSource {
    source: EntraSource,
    client: reqwest::Client,
    cached: Mutex<Option<Cached>>,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.source {
            EntraSource::WorkloadIdentity { .. } => "workload_identity",
            EntraSource::ManagedIdentity { .. } => "managed_identity",
            EntraSource::ClientSecret { .. } => "client_secret",
        };
        f.debug_struct("TokenSource").field("kind", &kind).finish()
    }
}

fn failed(msg: &'static str) -> Error {
    Error::new(ErrorKind::OriginUnavailable, msg)
}

impl TokenSource {
    /// A source sharing the origin's HTTP client.
    pub fn new(source: EntraSource, client: reqwest::Client) -> Self {
        Self {
            source,
            client,
            cached: Mutex::new(None),
        }
    }

    /// A valid access token, fetched when none is cached or the cached one is near expiry.
    pub async fn token(&self) -> Result<Arc<str>> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref() {
            if Instant::now() < c.refresh_at {
                return Ok(Arc::clone(&c.token));
            }
        }
        let fresh = self.fetch().await?;
        let lifetime = Duration::from_secs(fresh.expires_in);
        let token: Arc<str> = Arc::from(fresh.access_token);
        *cached = Some(Cached {
            token: Arc::clone(&token),
            // Short-lived tokens are refreshed at half their life rather than every use.
            refresh_at: Instant::now() + lifetime.saturating_sub(REFRESH_MARGIN.min(lifetime / 2)),
        });
        Ok(token)
    }

    /// Forgets the cached token (after the origin refused it).
    pub async fn invalidate(&self) {
        *self.cached.lock().await = None;
    }

    async fn fetch(&self) -> Result<TokenResponse> {
        let req = match &self.source {
            EntraSource::WorkloadIdentity {
                authority,
                tenant_id,
                client_id,
                token_file,
            } => {
                // Re-read every time: Kubernetes rotates the projected token.
                let assertion = tokio::fs::read_to_string(token_file)
                    .await
                    .map_err(|e| failed("cannot read the federated token file").with_source(e))?;
                self.form(
                    token_url(authority, tenant_id),
                    &[
                        ("grant_type", "client_credentials"),
                        ("client_id", client_id.as_str()),
                        ("scope", STORAGE_SCOPE),
                        (
                            "client_assertion_type",
                            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                        ),
                        ("client_assertion", assertion.trim()),
                    ],
                )
            }
            EntraSource::ClientSecret {
                authority,
                tenant_id,
                client_id,
                secret,
            } => self.form(
                token_url(authority, tenant_id),
                &[
                    ("grant_type", "client_credentials"),
                    ("client_id", client_id.as_str()),
                    ("scope", STORAGE_SCOPE),
                    ("client_secret", secret.expose()),
                ],
            ),
            EntraSource::ManagedIdentity {
                endpoint,
                client_id,
            } => {
                let mut q = vec![
                    ("api-version", "2018-02-01"),
                    ("resource", "https://storage.azure.com/"),
                ];
                if let Some(id) = client_id {
                    q.push(("client_id", id.as_str()));
                }
                let query: String = form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(q)
                    .finish();
                self.client
                    .get(format!("{endpoint}?{query}"))
                    .header("Metadata", "true")
            }
        };
        let resp = req
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(|e| {
                failed("the token endpoint could not be reached").with_source(e.without_url())
            })?;
        let status = resp.status();
        if !status.is_success() {
            // The body may echo request details; only the status is kept.
            return Err(Error::new(
                if status.is_client_error() {
                    ErrorKind::AccessDenied
                } else {
                    ErrorKind::OriginUnavailable
                },
                "the token endpoint refused to issue a token",
            )
            .with_source(TokenStatus(status.as_u16())));
        }
        let body = resp.bytes().await.map_err(|e| {
            failed("the token endpoint's answer broke off").with_source(e.without_url())
        })?;
        serde_json::from_slice::<TokenResponse>(&body)
            .map_err(|e| failed("the token endpoint sent an unreadable answer").with_source(e))
    }

    fn form(&self, url: String, pairs: &[(&str, &str)]) -> reqwest::RequestBuilder {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        self.client
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("token endpoint answered {0}")]
struct TokenStatus(u16);

fn token_url(authority: &str, tenant: &str) -> String {
    format!(
        "{}/{tenant}/oauth2/v2.0/token",
        authority.trim_end_matches('/')
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::origin::azure::{AzureCredential, AzureOrigin, AzureOriginConfig};
    use crate::origin::Origin;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex as StdMutex;

    /// A local token endpoint and blob endpoint in one: records what it was sent.
    #[derive(Default)]
    struct Seen {
        token_requests: AtomicUsize,
        token_bodies: StdMutex<Vec<String>>,
        metadata_header: StdMutex<Vec<Option<String>>>,
        blob_auth: StdMutex<Vec<String>>,
    }

    async fn serve(seen: Arc<Seen>, expires_in: &'static str) -> std::net::SocketAddr {
        use http_body_util::{BodyExt, Full};
        use hyper::service::service_fn;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let seen = Arc::clone(&seen);
                tokio::spawn(async move {
                    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let seen = Arc::clone(&seen);
                        async move {
                            let path = req.uri().path().to_string();
                            let mut resp = http::Response::new(Full::new(bytes::Bytes::new()));
                            if path.ends_with("/oauth2/v2.0/token") || path == "/msi" {
                                let n = seen.token_requests.fetch_add(1, Ordering::SeqCst) + 1;
                                seen.metadata_header.lock().expect("lock").push(
                                    req.headers()
                                        .get("metadata")
                                        .and_then(|v| v.to_str().ok())
                                        .map(str::to_string),
                                );
                                let q = req.uri().query().unwrap_or("").to_string();
                                let body = req.into_body().collect().await.expect("body");
                                let text = String::from_utf8_lossy(&body.to_bytes()).into_owned();
                                seen.token_bodies
                                    .lock()
                                    .expect("lock")
                                    .push(format!("{q}|{text}"));
                                *resp.body_mut() = Full::new(bytes::Bytes::from(format!(
                                    "{{\"access_token\":\"tok-{n}\",\"expires_in\":{expires_in},\"token_type\":\"Bearer\"}}"
                                )));
                            } else {
                                let auth = req
                                    .headers()
                                    .get("authorization")
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or("")
                                    .to_string();
                                seen.blob_auth.lock().expect("lock").push(auth);
                                let h = resp.headers_mut();
                                h.insert("content-length", "5".parse().expect("hv"));
                                h.insert("etag", "\"0x8D1\"".parse().expect("hv"));
                                h.insert(
                                    "last-modified",
                                    "Tue, 14 Nov 2023 22:13:20 GMT".parse().expect("hv"),
                                );
                            }
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        addr
    }

    fn origin(addr: std::net::SocketAddr, source: EntraSource) -> AzureOrigin {
        AzureOrigin::new(&AzureOriginConfig {
            endpoint: format!("http://{addr}/acct"),
            account: "acct".into(),
            credential: AzureCredential::Entra(source),
        })
        .expect("origin")
    }

    #[tokio::test]
    async fn workload_identity_exchanges_the_federated_token_and_caches_it() {
        let seen = Arc::new(Seen::default());
        let addr = serve(Arc::clone(&seen), "3600").await;
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("token");
        std::fs::write(&file, "federated-jwt-1\n").expect("write");
        let o = origin(
            addr,
            EntraSource::WorkloadIdentity {
                authority: format!("http://{addr}/"),
                tenant_id: "tenant-a".into(),
                client_id: "client-a".into(),
                token_file: file,
            },
        );
        for _ in 0..3 {
            let m = o.head("c", "b").await.expect("head");
            assert_eq!(m.etag, "0x8D1");
        }
        assert_eq!(seen.token_requests.load(Ordering::SeqCst), 1, "cached");
        let body = seen.token_bodies.lock().expect("lock")[0].clone();
        assert!(body.contains("client_assertion=federated-jwt-1"), "{body}");
        assert!(body.contains("client_id=client-a"), "{body}");
        assert!(
            body.contains("scope=https%3A%2F%2Fstorage.azure.com%2F.default"),
            "{body}"
        );
        let auth = seen.blob_auth.lock().expect("lock").clone();
        assert_eq!(auth, vec!["Bearer tok-1"; 3]);
    }

    #[tokio::test]
    async fn managed_identity_asks_the_metadata_endpoint_and_refreshes_near_expiry() {
        let seen = Arc::new(Seen::default());
        // The metadata endpoint sends expires_in as a string; a 1 s token is refreshed at half
        // its life.
        let addr = serve(Arc::clone(&seen), "\"1\"").await;
        let o = origin(
            addr,
            EntraSource::ManagedIdentity {
                endpoint: format!("http://{addr}/msi"),
                client_id: Some("uami".into()),
            },
        );
        o.head("c", "b").await.expect("head");
        tokio::time::sleep(Duration::from_millis(600)).await;
        o.head("c", "b").await.expect("head");
        assert_eq!(seen.token_requests.load(Ordering::SeqCst), 2);
        assert_eq!(
            seen.metadata_header.lock().expect("lock")[0].as_deref(),
            Some("true")
        );
        let q = seen.token_bodies.lock().expect("lock")[0].clone();
        assert!(
            q.contains("resource=https%3A%2F%2Fstorage.azure.com%2F"),
            "{q}"
        );
        assert!(q.contains("client_id=uami"), "{q}");
        assert_eq!(
            seen.blob_auth.lock().expect("lock").clone(),
            vec!["Bearer tok-1", "Bearer tok-2"]
        );
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let s = TokenSource::new(
            EntraSource::ClientSecret {
                authority: "https://login.microsoftonline.com/".into(),
                tenant_id: "t".into(),
                client_id: "c".into(),
                secret: Secret::new("hunter2"),
            },
            reqwest::Client::new(),
        );
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
