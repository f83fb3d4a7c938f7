//! The admin listener: `/metrics`, `/healthz`, `/readyz` (open, as Prometheus and Kubernetes
//! probes expect), and for operators the warm-up API (`/admin/warm…`), the stats behind the
//! dashboard (`/admin/stats`) and the dashboard page itself (`/dashboard`).
//!
//! Everything but the first three needs a principal with the `admin` permission on every
//! bucket, given with HTTP Basic authentication (its access key and secret): a browser asks
//! for them once per session, `curl -u` and `cistern warm` send them. The secret is compared
//! in constant time and never logged. The listener is on loopback by default; Basic sends the
//! secret as it is, so reach a remote admin listener through a tunnel (`kubectl port-forward`).

pub mod dashboard;
pub mod warm;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use base64::Engine as _;
use bytes::Bytes;
use cistern_auth::policy::{Permission, Policy};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use serde::Deserialize;

use crate::error::ErrorKind;
use crate::metrics::Metrics;
use crate::peer::membership::Membership;
use crate::pipeline::Pipeline;
use crate::server::Ready;
use warm::{JobError, Jobs, WarmSpec};

/// The realm browsers show when asking for the admin credentials.
const REALM: &str = "Basic realm=\"cistern admin\", charset=\"UTF-8\"";

/// Objects warmed at once when a job does not say.
pub const DEFAULT_CONCURRENCY: usize = 8;

/// What the admin listener serves.
pub struct Admin {
    metrics: Metrics,
    ready: Ready,
    pipeline: Arc<Pipeline>,
    policy: Arc<Policy>,
    membership: Option<Arc<Membership>>,
    jobs: Jobs,
    role: &'static str,
    started: Instant,
}

type Response = http::Response<Full<Bytes>>;

impl Admin {
    /// The admin endpoints over this process's pipeline; warm-up checkpoints go to
    /// `checkpoints` (`<cache dir>/warm`).
    pub fn new(
        metrics: Metrics,
        ready: Ready,
        pipeline: Arc<Pipeline>,
        policy: Arc<Policy>,
        membership: Option<Arc<Membership>>,
        role: &'static str,
        checkpoints: Option<std::path::PathBuf>,
    ) -> Self {
        Self {
            jobs: Jobs::new(Arc::clone(&pipeline), checkpoints),
            metrics,
            ready,
            pipeline,
            policy,
            membership,
            role,
            started: Instant::now(),
        }
    }

    /// Answers one admin request.
    pub async fn handle(&self, req: http::Request<Incoming>) -> Response {
        let path = req.uri().path().to_string();
        let method = req.method().clone();
        match (method.as_str(), path.as_str()) {
            ("GET", "/metrics") => return self.metrics_text(),
            ("GET", "/healthz") => return text(200, "ok\n"),
            ("GET", "/readyz") if self.ready.0.load(Ordering::Relaxed) => {
                return text(200, "ready\n")
            }
            ("GET", "/readyz") => return text(503, "not ready\n"),
            _ => {}
        }
        let known =
            path == "/dashboard" || path == "/admin/stats" || path.starts_with("/admin/warm");
        if !known {
            return text(404, "not found\n");
        }
        if let Some(refused) = self.refusal(req.headers()) {
            return refused;
        }
        match (method.as_str(), path.as_str()) {
            ("GET", "/dashboard") => dashboard::page(),
            ("GET", "/admin/stats") => json(200, &dashboard::stats(self)),
            ("GET", "/admin/warm") => json(
                200,
                &serde_json::json!({
                    "jobs": self.jobs.list().iter().map(|j| j.view()).collect::<Vec<_>>()
                }),
            ),
            ("POST", "/admin/warm") => self.start_job(req).await,
            (m, p) => match p.strip_prefix("/admin/warm/") {
                Some(rest) => self.job_request(m, rest).await,
                None => error(405, "MethodNotAllowed", "method not allowed here"),
            },
        }
    }

    async fn job_request(&self, method: &str, rest: &str) -> Response {
        let (id, action) = match rest.split_once('/') {
            Some((id, a)) => (id, Some(a)),
            None => (rest, None),
        };
        if !warm::valid_id(id) {
            return error(404, "NoSuchJob", &format!("no warm-up job {id:?}"));
        }
        let found = match (method, action) {
            ("GET", None) => self.jobs.get(id).ok_or(JobError::Unknown),
            ("DELETE", None) => self.jobs.cancel(id),
            ("POST", Some("resume")) => self.jobs.resume(id).await,
            _ => return error(405, "MethodNotAllowed", "method not allowed here"),
        };
        match found {
            Ok(job) => json(if method == "GET" { 200 } else { 202 }, &job.view()),
            Err(e) => job_error(id, e),
        }
    }

    async fn start_job(&self, req: http::Request<Incoming>) -> Response {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct StartBody {
            bucket: String,
            #[serde(default)]
            prefix: String,
            /// A duration (`30m`, `2h`), or seconds.
            #[serde(default)]
            pin: Option<serde_json::Value>,
            #[serde(default)]
            concurrency: Option<usize>,
        }
        let body = match Limited::new(req.into_body(), 64 << 10).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return error(413, "RequestTooLarge", "the request body is over 64 KiB"),
        };
        let b: StartBody = match serde_json::from_slice(&body) {
            Ok(b) => b,
            Err(e) => {
                return error(
                    400,
                    "InvalidRequest",
                    &format!("expected a JSON object {{\"bucket\", \"prefix\", \"pin\", \"concurrency\"}}: {e}"),
                )
            }
        };
        let pin_seconds = match b.pin {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::Number(n)) => match n.as_u64() {
                Some(s) if s > 0 => Some(s),
                _ => return error(400, "InvalidRequest", "pin must be a positive duration"),
            },
            Some(serde_json::Value::String(s)) => match crate::config::parse_duration(&s) {
                Ok(d) if d.as_secs() > 0 => Some(d.as_secs()),
                Ok(_) => return error(400, "InvalidRequest", "pin must be at least 1s"),
                Err(e) => return error(400, "InvalidRequest", &format!("pin: {e}")),
            },
            Some(_) => return error(400, "InvalidRequest", "pin must be a duration like \"2h\""),
        };
        let spec = WarmSpec {
            bucket: b.bucket,
            prefix: b.prefix,
            pin_seconds,
            concurrency: b.concurrency.unwrap_or(DEFAULT_CONCURRENCY),
        };
        match self.jobs.start(spec).await {
            Ok(job) => json(201, &job.view()),
            Err(e) => job_error("", e),
        }
    }

    /// The answer to a caller that is not a principal with `admin` on every bucket (HTTP
    /// Basic); `None` for one that is.
    fn refusal(&self, h: &http::HeaderMap) -> Option<Response> {
        let challenge = |msg: &str| {
            let mut r = error(401, "Unauthorized", msg);
            r.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static(REALM),
            );
            r
        };
        let Some(v) = h
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return Some(challenge(
                "the admin API needs a principal's access key and secret (HTTP Basic)",
            ));
        };
        let decoded = v
            .strip_prefix("Basic ")
            .and_then(|b| {
                base64::engine::general_purpose::STANDARD
                    .decode(b.trim())
                    .ok()
            })
            .and_then(|b| String::from_utf8(b).ok());
        let Some((ak, secret)) = decoded.as_deref().and_then(|d| d.split_once(':')) else {
            return Some(challenge("malformed Basic credentials"));
        };
        let good = self.policy.principal(ak).is_some_and(|p| {
            subtle::ConstantTimeEq::ct_eq(p.secret.expose().as_bytes(), secret.as_bytes()).into()
        });
        if !good {
            tracing::warn!(access_key = %ak, "admin request with a wrong access key or secret");
            return Some(challenge("wrong access key or secret"));
        }
        if !self.policy.authorize_everywhere(ak, Permission::Admin) {
            return Some(error(
                403,
                "AccessDenied",
                "the admin API needs the admin permission on every bucket (buckets = [\"*\"])",
            ));
        }
        None
    }

    fn metrics_text(&self) -> Response {
        let mut buf = String::new();
        let enc = prometheus::TextEncoder::new();
        match enc.encode_utf8(&self.metrics.registry.gather(), &mut buf) {
            Ok(()) => with_type(200, "text/plain; version=0.0.4", buf.into()),
            Err(e) => text(500, &format!("cannot encode metrics: {e}\n")),
        }
    }
}

fn job_error(id: &str, e: JobError) -> Response {
    match e {
        JobError::Unknown => error(404, "NoSuchJob", &format!("no warm-up job {id:?}")),
        JobError::Running => error(409, "JobRunning", "the job is running; cancel it first"),
        JobError::Invalid(e) if e.kind() == ErrorKind::NoSuchBucket => error(
            404,
            "NoSuchBucket",
            "the bucket does not exist or is not served",
        ),
        JobError::Invalid(e) if e.kind() == ErrorKind::InvalidArgument => {
            error(400, "InvalidRequest", e.message())
        }
        JobError::Invalid(e) => {
            tracing::warn!(error = %e, "warm-up job not started");
            error(502, "OriginError", e.message())
        }
    }
}

fn with_type(status: u16, ctype: &'static str, body: Bytes) -> Response {
    let mut resp = http::Response::new(Full::new(body));
    *resp.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(ctype),
    );
    h.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    resp
}

fn text(status: u16, body: &str) -> Response {
    with_type(status, "text/plain", Bytes::from(body.to_string()))
}

fn json(status: u16, v: &impl serde::Serialize) -> Response {
    match serde_json::to_vec_pretty(v) {
        Ok(b) => with_type(status, "application/json", Bytes::from(b)),
        Err(e) => error(500, "InternalError", &format!("cannot encode: {e}")),
    }
}

/// A JSON error: `{"error": code, "message": …}`.
fn error(status: u16, code: &str, message: &str) -> Response {
    let body = serde_json::json!({ "error": code, "message": message });
    with_type(
        status,
        "application/json",
        Bytes::from(body.to_string().into_bytes()),
    )
}
