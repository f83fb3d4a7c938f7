//! Requests to the origin: built, SigV4-signed and sent (`send`, `dispatch`), and relayed
//! requests passed on with their bodies (`relay`).

use cistern_auth::sigv4;
use http::{Method, StatusCode};

use super::error::check;
use super::staging::not_staging;
use super::S3Origin;
use crate::error::{Error, ErrorKind, Result};
#[cfg(doc)]
use crate::origin::Origin;
use crate::origin::{PassResponse, Passthrough};

impl S3Origin {
    /// Builds, signs and sends one request; returns the response when its status is a success
    /// (or one of `accept`), else the classified error.
    pub(super) async fn send(
        &self,
        method: Method,
        bucket: Option<&str>,
        key: Option<&str>,
        query: &[(String, String)],
        headers: &[(&str, &str)],
        accept: &[StatusCode],
    ) -> Result<reqwest::Response> {
        self.send_body(method, bucket, key, query, headers, accept, None)
            .await
    }

    /// [`Self::send`] with a streamed body, signed as `UNSIGNED-PAYLOAD` (the body is not
    /// known before it has been sent; `Content-MD5`, when given, is signed and checked by S3).
    #[allow(clippy::too_many_arguments)] // reason: send's arguments plus the body
    pub(super) async fn send_body(
        &self,
        method: Method,
        bucket: Option<&str>,
        key: Option<&str>,
        query: &[(String, String)],
        headers: &[(&str, &str)],
        accept: &[StatusCode],
        body: Option<reqwest::Body>,
    ) -> Result<reqwest::Response> {
        let resp = self
            .dispatch(method.clone(), bucket, key, query, headers, body)
            .await?;
        check(resp, &method, accept).await
    }

    /// Builds, signs and sends one request; any status comes back.
    async fn dispatch(
        &self,
        method: Method,
        bucket: Option<&str>,
        key: Option<&str>,
        query: &[(String, String)],
        headers: &[(&str, &str)],
        body: Option<reqwest::Body>,
    ) -> Result<reqwest::Response> {
        let payload = if body.is_some() {
            "UNSIGNED-PAYLOAD"
        } else {
            sigv4::EMPTY_SHA256
        };
        if let Some(k) = key {
            // `.`/`..` segments would be normalized away on the wire and could reach another
            // bucket at the origin.
            if k.split('/').any(|s| s == "." || s == "..") {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    "The key cannot be served by this origin",
                ));
            }
        }
        if let (Some(b), false) = (bucket, self.path_style) {
            // The bucket becomes part of the host name: only DNS-safe names may.
            if !b
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-')
            {
                return Err(Error::new(
                    ErrorKind::NoSuchBucket,
                    "The specified bucket does not exist",
                ));
            }
        }
        let (host, mut path) = match (bucket, self.path_style) {
            (Some(b), false) => (format!("{b}.{}", self.authority), String::from("/")),
            (Some(b), true) => (
                self.authority.clone(),
                format!("/{}", sigv4::uri_encode(b, false)),
            ),
            (None, _) => (self.authority.clone(), String::from("/")),
        };
        if let Some(k) = key {
            if !path.ends_with('/') {
                path.push('/');
            }
            path.push_str(&sigv4::uri_encode(k, true));
        }
        let mut url = format!("{}://{host}{path}", self.scheme);
        if !query.is_empty() {
            url.push('?');
            let qs: Vec<String> = query
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{}={}",
                        sigv4::uri_encode(k, false),
                        sigv4::uri_encode(v, false)
                    )
                })
                .collect();
            url.push_str(&qs.join("&"));
        }
        let mut req = self.client.request(method.clone(), &url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(creds) = &self.creds {
            let sig = sigv4::sign(
                &sigv4::Request {
                    method: method.as_str(),
                    host: &host,
                    encoded_path: &path,
                    query,
                    headers,
                    payload_sha256: payload,
                    time: time::OffsetDateTime::now_utc(),
                },
                creds,
            );
            req = req
                .header("authorization", sig.authorization)
                .header("x-amz-date", sig.amz_date)
                .header("x-amz-content-sha256", payload);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        req.send().await.map_err(super::wire::send_failed)
    }
}

impl S3Origin {
    /// Sends a relayed request (see [`Origin::passthrough`]) with its body, if any, and its
    /// length.
    pub(super) async fn relay(
        &self,
        req: &Passthrough,
        body: Option<(reqwest::Body, u64)>,
    ) -> Result<PassResponse> {
        use futures::StreamExt as _;
        if !req.key.is_empty() {
            not_staging(&req.key, ErrorKind::InvalidArgument)?;
        }
        let length = body.as_ref().map(|(_, n)| n.to_string());
        let mut headers: Vec<(&str, &str)> = req
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        if let Some(n) = &length {
            headers.push(("content-length", n));
        }
        let bucket = (!req.bucket.is_empty()).then_some(req.bucket.as_str());
        let key = (!req.key.is_empty()).then_some(req.key.as_str());
        let resp = self
            .dispatch(
                req.method.clone(),
                bucket,
                key,
                &req.query,
                &headers,
                body.map(|(b, _)| b),
            )
            .await?;
        let resp = if req.verbatim {
            resp
        } else {
            check(
                resp,
                &req.method,
                &[
                    StatusCode::NOT_MODIFIED,
                    StatusCode::PRECONDITION_FAILED,
                    StatusCode::RANGE_NOT_SATISFIABLE,
                ],
            )
            .await?
        };
        Ok(PassResponse {
            status: resp.status(),
            headers: resp.headers().clone(),
            body: resp
                .bytes_stream()
                .map(|r| r.map_err(super::wire::body_failed))
                .boxed(),
        })
    }
}
