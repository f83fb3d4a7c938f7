//! The peer client: asks other cache nodes for chunks and metadata ([`Peers`] for the
//! pipeline), and probes them for membership.

use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use cistern_auth::{peer as mac, Secret};
use cistern_cache::{ObjectMeta, Tier};

use super::membership::Membership;
use super::wire::{self, ErrorBody, Health};
use crate::metrics::Metrics;
use crate::origin::{ListPage, ListQuery};
use crate::pipeline::peers::{ChunkAsk, KvPut, MetaAnswer, Node, PeerError, Peers};

/// Talks to the other cache nodes.
pub struct PeerClient {
    http: reqwest::Client,
    secret: Secret,
    body_key: mac::BodyKey,
    membership: Arc<Membership>,
    metrics: Metrics,
    /// This process's instance id, when it is a cache node (to recognise itself).
    instance: Option<String>,
    /// The time allowed for an answer that may need an origin fill first (a chunk or metadata
    /// with a chunk): the peer timeout plus a chunk at 20 MB/s.
    fill_timeout: Duration,
}

impl PeerClient {
    /// A client with `timeout` per request.
    pub fn new(
        secret: Secret,
        membership: Arc<Membership>,
        metrics: Metrics,
        timeout: Duration,
        instance: Option<String>,
        chunk_size: u64,
    ) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            // A peer never redirects, and peer traffic never goes through a proxy.
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(Duration::from_millis(500).min(timeout))
            .timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .tcp_nodelay(true)
            .build()?;
        Ok(Self {
            http,
            body_key: mac::BodyKey::new(&secret),
            secret,
            membership,
            metrics,
            instance,
            fill_timeout: timeout + Duration::from_secs_f64(chunk_size as f64 / 20e6),
        })
    }

    /// The membership this client routes over.
    pub fn membership(&self) -> &Arc<Membership> {
        &self.membership
    }

    /// One signed request; the answer's MAC is checked before anything in it is believed.
    async fn call(
        &self,
        op: &'static str,
        method: reqwest::Method,
        node: &str,
        path_and_query: String,
        body: Option<Bytes>,
        timeout: Option<Duration>,
    ) -> Result<(u16, reqwest::header::HeaderMap, Bytes), PeerError> {
        let start = Instant::now();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let digest = self.body_key.digest(body.as_deref().unwrap_or(&[]));
        let (header, request_mac) =
            mac::sign_request(&self.secret, method.as_str(), &path_and_query, now, &digest);
        let mut req = self
            .http
            .request(method, format!("http://{node}{path_and_query}"))
            .header(mac::HEADER, header);
        if let Some(t) = timeout {
            req = req.timeout(t);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let result = async {
            let resp = req.send().await.map_err(|e| ("send", e.to_string()))?;
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let body = resp.bytes().await.map_err(|e| ("body", e.to_string()))?;
            let answer = headers.get(mac::HEADER).and_then(|v| v.to_str().ok());
            let text = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
            let described = wire::described(
                text(wire::TIER),
                text(wire::CHUNK_INDEX),
                text(wire::FETCHED),
            );
            mac::verify_answer(
                &self.secret,
                &request_mac,
                status,
                &self.body_key.digest(&body),
                &described,
                answer,
            )
            .map_err(|e| ("answer", e.to_string()))?;
            Ok::<_, (&str, String)>((status, headers, body))
        }
        .await;
        self.metrics
            .peer_seconds
            .with_label_values(&[op])
            .observe(start.elapsed().as_secs_f64());
        match result {
            Ok((status, headers, body)) => {
                let label = if status < 300 { "ok" } else { "error" };
                self.metrics
                    .peer_requests
                    .with_label_values(&[op, label])
                    .inc();
                Ok((status, headers, body))
            }
            Err((stage, msg)) => {
                self.metrics
                    .peer_requests
                    .with_label_values(&[op, "unavailable"])
                    .inc();
                // reqwest's texts carry the URL: peer URLs hold object keys, not secrets.
                tracing::debug!(peer = node, op, stage, error = %msg, "peer request failed");
                if stage == "answer" {
                    tracing::warn!(peer = node, stage, "peer answer failed its check");
                }
                if op == "health" {
                    self.membership.failed(node);
                } else {
                    self.membership.suspect(node);
                }
                Err(PeerError::Unavailable)
            }
        }
    }

    /// An error answer: final when it is about the object, else ask the next node.
    fn refusal(&self, node: &str, status: u16, body: &Bytes) -> PeerError {
        let parsed = serde_json::from_slice::<ErrorBody>(body)
            .ok()
            .and_then(ErrorBody::error);
        match parsed {
            Some(e) if wire::is_final(e.kind()) => PeerError::Answer(e),
            _ => {
                tracing::warn!(peer = node, status, "peer could not serve the request");
                PeerError::Unavailable
            }
        }
    }

    /// [`Self::call`], with an answer outside 2xx turned into the error it stands for.
    async fn call_ok(
        &self,
        op: &'static str,
        method: reqwest::Method,
        node: &str,
        path_and_query: String,
        body: Option<Bytes>,
        timeout: Option<Duration>,
    ) -> Result<(reqwest::header::HeaderMap, Bytes), PeerError> {
        let (status, headers, body) = self
            .call(op, method, node, path_and_query, body, timeout)
            .await?;
        if !(200..300).contains(&status) {
            return Err(self.refusal(node, status, &body));
        }
        Ok((headers, body))
    }

    /// Probes `node`: its health answer tells its weight and whether it is this process.
    pub async fn probe(&self, node: &str, timeout: Duration) {
        let r = self
            .call(
                "health",
                reqwest::Method::GET,
                node,
                "/v1/health".into(),
                None,
                Some(timeout),
            )
            .await;
        match r {
            Ok((200, _, body)) => match serde_json::from_slice::<Health>(&body) {
                Ok(h) => {
                    let here = self.instance.as_deref() == Some(h.instance.as_str());
                    // An answer without a zone (an older node) leaves what a registry said.
                    let zone = Some(h.zone.as_str()).filter(|z| !z.is_empty());
                    self.membership.succeeded(node, Some(h.weight), zone, here);
                }
                Err(_) => self.membership.failed(node),
            },
            Ok(_) => self.membership.failed(node),
            Err(_) => {} // already counted
        }
    }
}

#[async_trait]
impl Peers for PeerClient {
    fn route(&self, hash: u64, n: usize) -> Vec<Node> {
        self.membership.route(hash, n)
    }

    fn spread(&self, hash: u64, n: usize) -> Vec<(Node, bool)> {
        self.membership.spread(hash, n)
    }

    fn owners(&self, hash: u64, n: usize) -> Vec<Node> {
        self.membership.owners(hash, n)
    }

    async fn chunk(&self, node: &str, ask: &ChunkAsk) -> Result<(Bytes, Tier), PeerError> {
        let path = format!("/v1/chunk?{}", wire::chunk_query(ask));
        let (headers, body) = self
            .call_ok(
                "chunk",
                reqwest::Method::GET,
                node,
                path,
                None,
                Some(self.fill_timeout),
            )
            .await?;
        let tier = match headers.get(wire::TIER).and_then(|v| v.to_str().ok()) {
            Some("memory") => Tier::Memory,
            Some("disk") => Tier::Disk,
            Some("peer") => Tier::Peer,
            _ => Tier::Origin,
        };
        Ok((body, tier))
    }

    async fn meta(
        &self,
        node: &str,
        bucket: &str,
        key: &str,
        want: Option<u64>,
    ) -> Result<MetaAnswer, PeerError> {
        let path = format!("/v1/meta?{}", wire::meta_query(bucket, key, want));
        let (headers, body) = self
            .call_ok(
                "meta",
                reqwest::Method::GET,
                node,
                path,
                None,
                Some(self.fill_timeout),
            )
            .await?;
        let (meta, body) = wire::unframe(body).ok_or(PeerError::Unavailable)?;
        let chunk = headers
            .get(wire::CHUNK_INDEX)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            .map(|i| (i, body));
        let fetched = headers.get(wire::FETCHED).is_some();
        Ok(MetaAnswer {
            meta,
            chunk,
            fetched,
        })
    }

    async fn invalidate(&self, node: &str, bucket: &str, key: &str) -> Result<(), PeerError> {
        let path = format!("/v1/invalidate?{}", wire::meta_query(bucket, key, None));
        self.call_ok("invalidate", reqwest::Method::POST, node, path, None, None)
            .await?;
        Ok(())
    }

    fn members(&self) -> Vec<Node> {
        self.membership.placed()
    }

    async fn kv_put(&self, node: &str, put: &KvPut, data: Bytes) -> Result<(), PeerError> {
        let path = format!("/v1/kv/put?{}", wire::kv_put_query(put));
        let body = match &put.commit {
            Some((meta, _)) => wire::framed(meta, &data),
            None => data,
        };
        self.call_ok(
            "kv_put",
            reqwest::Method::PUT,
            node,
            path,
            Some(body),
            Some(self.fill_timeout),
        )
        .await?;
        Ok(())
    }

    async fn kv_get(
        &self,
        node: &str,
        space: &str,
        key: &str,
        range: Option<Range<u64>>,
        if_match: Option<&str>,
    ) -> Result<(ObjectMeta, Bytes), PeerError> {
        let path = format!(
            "/v1/kv/get?{}",
            wire::kv_get_query(space, key, range.as_ref(), if_match)
        );
        let (_, body) = self
            .call_ok(
                "kv_get",
                reqwest::Method::GET,
                node,
                path,
                None,
                Some(self.fill_timeout),
            )
            .await?;
        wire::unframe(body).ok_or(PeerError::Unavailable)
    }

    async fn kv_delete(&self, node: &str, space: &str, key: &str) -> Result<(), PeerError> {
        let path = format!("/v1/kv/delete?{}", wire::meta_query(space, key, None));
        self.call_ok("kv_delete", reqwest::Method::POST, node, path, None, None)
            .await?;
        Ok(())
    }

    async fn kv_list(&self, node: &str, space: &str, q: &ListQuery) -> Result<ListPage, PeerError> {
        let path = format!("/v1/kv/list?{}", wire::kv_list_query(space, q));
        let (_, body) = self
            .call_ok("kv_list", reqwest::Method::GET, node, path, None, None)
            .await?;
        serde_json::from_slice::<wire::KvListing>(&body)
            .map(wire::KvListing::page)
            .map_err(|_| PeerError::Unavailable)
    }

    async fn push(&self, node: &str, ask: &ChunkAsk, data: Bytes) -> Result<(), PeerError> {
        let path = format!("/v1/chunk?{}", wire::chunk_query(ask));
        self.call_ok("push", reqwest::Method::PUT, node, path, Some(data), None)
            .await?;
        Ok(())
    }
}
