//! The peer listener of a cache node: answers chunk, metadata, invalidation and health
//! requests from other nodes, each signed with the cluster secret. Unsigned or mis-signed
//! requests get 401 and nothing else.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use cistern_auth::{peer as mac, Secret};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;

use super::membership::Membership;
use super::wire::{self, ErrorBody, Health, Query};
use crate::error::{Error, ErrorKind, Result};
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;

/// Serves the peer protocol over this node's pipeline.
pub struct PeerServer {
    pipeline: Arc<Pipeline>,
    secret: Secret,
    body_key: mac::BodyKey,
    instance: String,
    weight: f64,
    membership: Arc<Membership>,
    metrics: Metrics,
    max_body: usize,
}

struct Answer {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Bytes,
}

impl Answer {
    fn ok(body: Bytes) -> Self {
        Self {
            status: 200,
            headers: Vec::new(),
            body,
        }
    }

    fn empty() -> Self {
        Self {
            status: 204,
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    fn error(e: &Error) -> Self {
        let status = match e.kind() {
            ErrorKind::NotFound | ErrorKind::NoSuchBucket => 404,
            ErrorKind::ObjectChanged | ErrorKind::PreconditionFailed => 412,
            ErrorKind::InvalidArgument => 400,
            ErrorKind::AccessDenied => 403,
            ErrorKind::Throttled | ErrorKind::OriginUnavailable | ErrorKind::OriginTimeout => 503,
            _ => 500,
        };
        let body = serde_json::to_vec(&ErrorBody::of(e)).unwrap_or_default();
        Self {
            status,
            headers: vec![("content-type", "application/json".into())],
            body: Bytes::from(body),
        }
    }
}

/// 401 with no data (unsigned: the caller is not of this cluster).
fn refused(metrics: &Metrics, why: &'static str) -> http::Response<Full<Bytes>> {
    metrics
        .peer_served
        .with_label_values(&["auth", "401"])
        .inc();
    let mut resp = http::Response::new(Full::new(Bytes::from(format!("{why}\n"))));
    *resp.status_mut() = http::StatusCode::UNAUTHORIZED;
    resp
}

impl PeerServer {
    /// A server for `pipeline`; `instance` is this process's random id (health answers carry
    /// it, so a node recognises itself among the members).
    pub fn new(
        pipeline: Arc<Pipeline>,
        secret: Secret,
        instance: String,
        weight: f64,
        membership: Arc<Membership>,
        metrics: Metrics,
        chunk_size: u64,
    ) -> Self {
        Self {
            pipeline,
            body_key: mac::BodyKey::new(&secret),
            secret,
            instance,
            weight,
            membership,
            metrics,
            max_body: usize::try_from(chunk_size).unwrap_or(usize::MAX),
        }
    }

    /// Answers one request: its body (at most one chunk) is read first, since the request's
    /// MAC covers it.
    pub async fn handle(&self, req: http::Request<Incoming>) -> http::Response<Full<Bytes>> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let (parts, body) = req.into_parts();
        let path_and_query = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        let body = match Limited::new(body, self.max_body).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return refused(&self.metrics, "body unreadable or too long"),
        };
        let signed = parts.headers.get(mac::HEADER).and_then(|v| v.to_str().ok());
        let request_mac = match mac::verify_request(
            &self.secret,
            parts.method.as_str(),
            &path_and_query,
            signed,
            now,
            &self.body_key.digest(&body),
        ) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(reason = %e, path = parts.uri.path(), "peer request refused");
                return refused(&self.metrics, "peer authentication failed");
            }
        };
        let q = Query::parse(parts.uri.query());
        let (op, result) = match (parts.method.as_str(), parts.uri.path()) {
            ("GET", "/v1/chunk") => ("chunk", self.chunk(&q).await),
            ("PUT", "/v1/chunk") => ("push", self.push(&q, body).await),
            ("GET", "/v1/meta") => ("meta", self.meta(&q).await),
            ("POST", "/v1/invalidate") => ("invalidate", self.invalidate(&q).await),
            ("GET", "/v1/health") => ("health", self.health()),
            _ => (
                "unknown",
                Err(Error::new(
                    ErrorKind::InvalidArgument,
                    "no such peer operation",
                )),
            ),
        };
        let answer = result.unwrap_or_else(|e| Answer::error(&e));
        self.metrics
            .peer_served
            .with_label_values(&[op, &answer.status.to_string()])
            .inc();
        let digest = self.body_key.digest(&answer.body);
        let header_of = |name: &str| {
            answer
                .headers
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_str())
        };
        let described = wire::described(
            header_of(wire::TIER),
            header_of(wire::CHUNK_INDEX),
            header_of(wire::FETCHED),
        );
        let signature = mac::sign_answer(
            &self.secret,
            &request_mac,
            answer.status,
            &digest,
            &described,
        );
        let mut resp = http::Response::new(Full::new(answer.body));
        *resp.status_mut() =
            http::StatusCode::from_u16(answer.status).unwrap_or(http::StatusCode::OK);
        let h = resp.headers_mut();
        for (name, value) in answer.headers {
            if let Ok(v) = http::HeaderValue::from_str(&value) {
                h.insert(name, v);
            }
        }
        if let Ok(v) = http::HeaderValue::from_str(&signature) {
            h.insert(mac::HEADER, v);
        }
        resp
    }

    async fn chunk(&self, q: &Query) -> Result<Answer> {
        let mut ask = q.chunk()?;
        // A replica fills only from a member of this cluster, never from an address a request
        // names (the request is signed, but this node's own signature must not go elsewhere).
        if ask
            .via
            .as_deref()
            .is_some_and(|v| !self.membership.contains(v))
        {
            ask.via = None;
        }
        let served = self.pipeline.serve_chunk(ask).await?;
        self.metrics
            .peer_served_bytes
            .inc_by(served.data.len() as u64);
        let mut a = Answer::ok(served.data);
        a.headers
            .push((wire::TIER, served.tier.as_str().to_string()));
        Ok(a)
    }

    async fn push(&self, q: &Query, data: Bytes) -> Result<Answer> {
        let ask = q.chunk()?;
        self.pipeline.accept_chunk(ask, data).await?;
        Ok(Answer::empty())
    }

    async fn meta(&self, q: &Query) -> Result<Answer> {
        let want = q.opt_num("w")?;
        let answer = self
            .pipeline
            .serve_meta(q.get("b")?, q.get("k")?, want)
            .await?;
        let record = answer.meta.to_bytes();
        let chunk = answer.chunk;
        let extra = chunk.as_ref().map_or(0, |(_, d)| d.len());
        let mut body = BytesMut::with_capacity(4 + record.len() + extra);
        body.put_u32(record.len() as u32);
        body.put_slice(&record);
        let mut headers = Vec::new();
        if answer.fetched {
            headers.push((wire::FETCHED, "1".to_string()));
        }
        if let Some((i, data)) = chunk {
            body.put_slice(&data);
            headers.push((wire::CHUNK_INDEX, i.to_string()));
            self.metrics.peer_served_bytes.inc_by(data.len() as u64);
        }
        Ok(Answer {
            status: 200,
            headers,
            body: body.freeze(),
        })
    }

    async fn invalidate(&self, q: &Query) -> Result<Answer> {
        self.pipeline
            .serve_invalidate(q.get("b")?, q.get("k")?)
            .await?;
        Ok(Answer::empty())
    }

    fn health(&self) -> Result<Answer> {
        let ms = &self.membership;
        let count = ms.len();
        let h = Health {
            instance: self.instance.clone(),
            weight: self.weight,
            epoch: ms.view().epoch,
            zone: ms.zone().to_string(),
            member_count: count,
            members: if count <= wire::HEALTH_MEMBERS {
                ms.members()
                    .iter()
                    .map(|(a, h)| (a.to_string(), h.as_str().to_string()))
                    .collect()
            } else {
                Vec::new()
            },
        };
        let body = serde_json::to_vec(&h)
            .map_err(|e| Error::new(ErrorKind::Internal, "cannot encode health").with_source(e))?;
        let mut a = Answer::ok(Bytes::from(body));
        a.headers.push(("content-type", "application/json".into()));
        Ok(a)
    }
}
