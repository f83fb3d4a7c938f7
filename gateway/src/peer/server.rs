//! The peer listener of a cache node: answers chunk, metadata, invalidation, cache-only
//! object and health requests from other nodes, each signed with the cluster secret. Unsigned or mis-signed
//! requests get 401 and nothing else.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use cistern_auth::{peer as mac, Secret};
use cistern_cache::{KvLimits, KvStore};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;

use super::membership::Membership;
use super::wire::{self, ErrorBody, Health, Query};
use crate::error::{Error, ErrorKind, Result};
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;

/// The most a cache-only commit's metadata record may add to a chunk-sized body.
const KV_META_MAX: usize = 256 << 10;

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
    /// This node's share of the cache-only buckets.
    kv: Option<Arc<KvStore>>,
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
            kv: None,
            pipeline,
            body_key: mac::BodyKey::new(&secret),
            secret,
            instance,
            weight,
            membership,
            metrics,
            // A cache-only commit carries the metadata record beside its chunk.
            max_body: usize::try_from(chunk_size)
                .unwrap_or(usize::MAX)
                .saturating_add(KV_META_MAX),
        }
    }

    /// Serves this node's share of the cache-only buckets too.
    pub fn with_kv(mut self, kv: Option<Arc<KvStore>>) -> Self {
        self.kv = kv;
        self
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
            ("PUT", "/v1/kv/put") => ("kv_put", self.kv_put(&q, body)),
            ("GET", "/v1/kv/get") => ("kv_get", self.kv_get(&q).await),
            ("POST", "/v1/kv/delete") => ("kv_delete", self.kv_delete(&q)),
            ("GET", "/v1/kv/list") => ("kv_list", self.kv_list(&q)),
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
        let mut headers = Vec::new();
        if answer.fetched {
            headers.push((wire::FETCHED, "1".to_string()));
        }
        let mut rest = Bytes::new();
        if let Some((i, data)) = answer.chunk {
            headers.push((wire::CHUNK_INDEX, i.to_string()));
            self.metrics.peer_served_bytes.inc_by(data.len() as u64);
            rest = data;
        }
        Ok(Answer {
            status: 200,
            headers,
            body: wire::framed(&answer.meta, &rest),
        })
    }

    async fn invalidate(&self, q: &Query) -> Result<Answer> {
        self.pipeline
            .serve_invalidate(q.get("b")?, q.get("k")?)
            .await?;
        Ok(Answer::empty())
    }

    fn kv(&self) -> Result<&KvStore> {
        self.kv.as_deref().ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidArgument,
                "this node keeps no cache-only objects",
            )
        })
    }

    fn kv_put(&self, q: &Query, body: Bytes) -> Result<Answer> {
        let kv = self.kv()?;
        let (space, key, etag) = (q.get("b")?, q.get("k")?, q.get("e")?);
        let index = q.num("i")?;
        let (meta, body) = if q.text("c") == Some("1") {
            let (meta, rest) = wire::unframe(body)
                .filter(|(m, _)| m.etag == etag)
                .ok_or_else(|| Error::new(ErrorKind::InvalidArgument, "bad metadata record"))?;
            (Some(meta), rest)
        } else {
            (None, body)
        };
        if !body.is_empty() {
            kv.stage(space, key, etag, index, body);
        }
        if let Some(meta) = meta {
            let limits = KvLimits {
                quota: q.opt_num("q")?,
                ttl: q.opt_num("t")?.map(Duration::from_secs),
            };
            kv.commit(space, key, meta, limits, Instant::now())
                .map_err(crate::origin::kv::kv_error)?;
        }
        Ok(Answer::empty())
    }

    async fn kv_get(&self, q: &Query) -> Result<Answer> {
        let kv = self.kv()?;
        let (space, key) = (q.get("b")?, q.get("k")?);
        let now = Instant::now();
        let (meta, data) = match q.kv_range()? {
            Some(r) => {
                let (m, d, _) = kv
                    .read(space, key, r, q.text("e"), now)
                    .await
                    .map_err(crate::origin::kv::kv_error)?;
                (m, d)
            }
            None => (
                kv.head(space, key, now)
                    .map_err(crate::origin::kv::kv_error)?,
                Bytes::new(),
            ),
        };
        self.metrics.peer_served_bytes.inc_by(data.len() as u64);
        Ok(Answer::ok(wire::framed(&meta, &data)))
    }

    fn kv_delete(&self, q: &Query) -> Result<Answer> {
        self.kv()?.remove(q.get("b")?, q.get("k")?);
        Ok(Answer::empty())
    }

    fn kv_list(&self, q: &Query) -> Result<Answer> {
        let page = crate::origin::kv::local_page(self.kv()?, q.get("b")?, &q.kv_list()?)?;
        let body = serde_json::to_vec(&wire::KvListing::of(page)).map_err(|e| {
            Error::new(ErrorKind::Internal, "cannot encode a listing").with_source(e)
        })?;
        let mut a = Answer::ok(Bytes::from(body));
        a.headers.push(("content-type", "application/json".into()));
        Ok(a)
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
