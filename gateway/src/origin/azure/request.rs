//! Requests to the origin: built, authorized (Shared Key, SAS, Entra token or a client's own
//! credential) and sent (`send`, `send_as`, `dispatch`), and relayed requests (`relay`).

use std::time::SystemTime;

use cistern_auth::sharedkey::{self, Scheme};
use cistern_auth::sigv4::uri_encode;
use http::{Method, StatusCode};

use super::{Auth, AzureOrigin, API_VERSION};
use crate::error::{Error, ErrorKind, Result};
#[cfg(doc)]
use crate::origin::Origin;
use crate::origin::{ForeignCredential, PassResponse, Passthrough};

impl AzureOrigin {
    /// Builds, signs and sends one request; returns the response when its status is a success
    /// (or one of `accept`), else the classified error.
    pub(super) async fn send(
        &self,
        method: Method,
        container: Option<&str>,
        blob: Option<&str>,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        accept: &[StatusCode],
    ) -> Result<reqwest::Response> {
        self.send_as(method, container, blob, query, headers, accept, None, None)
            .await
    }

    /// [`Self::send`], authorized with a client's own credential instead of the origin's
    /// when `foreign` is given.
    #[allow(clippy::too_many_arguments)] // reason: send's arguments plus the credential
    pub(super) async fn send_as(
        &self,
        method: Method,
        container: Option<&str>,
        blob: Option<&str>,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        accept: &[StatusCode],
        foreign: Option<&ForeignCredential>,
        body: Option<reqwest::Body>,
    ) -> Result<reqwest::Response> {
        let resp = self
            .dispatch(
                method.clone(),
                container,
                blob,
                query,
                headers,
                foreign,
                body,
            )
            .await?;
        self.check(resp, &method, accept, foreign).await
    }

    /// Builds, authorizes and sends one request; any status comes back.
    #[allow(clippy::too_many_arguments)] // reason: send_as's arguments but the accepted statuses
    async fn dispatch(
        &self,
        method: Method,
        container: Option<&str>,
        blob: Option<&str>,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        foreign: Option<&ForeignCredential>,
        body: Option<reqwest::Body>,
    ) -> Result<reqwest::Response> {
        let mut path = self.base_path.clone();
        if let Some(c) = container {
            path.push('/');
            path.push_str(&uri_encode(c, false));
        }
        if let Some(b) = blob {
            if b.split('/').any(|s| s == "." || s == "..") {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    "The key cannot be served by this origin",
                ));
            }
            path.push('/');
            path.push_str(&uri_encode(b, true));
        }
        if path.is_empty() {
            path.push('/');
        }
        let mut pairs: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        match (foreign, &self.auth) {
            (Some(ForeignCredential::Sas(sas)), _) | (None, Auth::Sas(sas)) => {
                pairs.extend(sas.iter().cloned());
            }
            _ => {}
        }
        let raw_query = pairs
            .iter()
            .map(|(k, v)| format!("{}={}", uri_encode(k, false), uri_encode(v, false)))
            .collect::<Vec<_>>()
            .join("&");
        let mut url = format!("{}{path}", self.base);
        if !raw_query.is_empty() {
            url.push('?');
            url.push_str(&raw_query);
        }
        let date = httpdate::fmt_http_date(SystemTime::now());
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        all.push(("x-ms-date", &date));
        all.push(("x-ms-version", API_VERSION));
        let mut req = self.client.request(method.clone(), &url);
        for (k, v) in &all {
            req = req.header(*k, *v);
        }
        match (foreign, &self.auth) {
            (Some(ForeignCredential::Bearer(token)), _) => {
                req = req.header("authorization", format!("Bearer {token}"));
            }
            (Some(_), _) => {}
            (None, Auth::Bearer(source)) => {
                let token = source.token().await?;
                req = req.header("authorization", format!("Bearer {token}"));
            }
            (None, _) => {}
        }
        if let (None, Auth::SharedKey(key)) = (foreign, &self.auth) {
            let signed = sharedkey::Request {
                method: method.as_str(),
                account: &self.account,
                raw_path: &path,
                raw_query: &raw_query,
                headers: &all,
            };
            req = req.header(
                "authorization",
                sharedkey::authorization(&signed, Scheme::SharedKey, key),
            );
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        req.send().await.map_err(super::wire::send_failed)
    }

    /// Sends a relayed request (see [`Origin::passthrough`]) with its body, if any, and its
    /// length (Azure wants Content-Length on every PUT, zero included; Shared Key signs a zero
    /// one as the empty string).
    pub(super) async fn relay(
        &self,
        req: &Passthrough,
        body: Option<(reqwest::Body, u64)>,
    ) -> Result<PassResponse> {
        use futures::StreamExt as _;
        let query: Vec<(&str, &str)> = req
            .query
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let length = body.as_ref().map(|(_, n)| n.to_string());
        let mut headers: Vec<(&str, &str)> = req
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        if let Some(n) = &length {
            headers.push(("content-length", n));
        }
        let container = (!req.bucket.is_empty()).then_some(req.bucket.as_str());
        let blob = (!req.key.is_empty()).then_some(req.key.as_str());
        let resp = self
            .dispatch(
                req.method.clone(),
                container,
                blob,
                &query,
                &headers,
                None,
                body.map(|(b, _)| b),
            )
            .await?;
        let resp = if req.verbatim {
            resp
        } else {
            self.check(
                resp,
                &req.method,
                &[
                    StatusCode::NOT_MODIFIED,
                    StatusCode::PRECONDITION_FAILED,
                    StatusCode::RANGE_NOT_SATISFIABLE,
                ],
                None,
            )
            .await?
        };
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp
            .bytes_stream()
            .map(|r| r.map_err(super::wire::body_failed))
            .boxed();
        Ok(PassResponse {
            status,
            headers,
            body,
        })
    }
}
