//! Membership from etcd: cache nodes register under a lease, every process watches.
//!
//! Talks to etcd v3 through its JSON gateway (`/v3/kv/range`, `/v3/watch`, `/v3/lease/…`),
//! which every etcd since 3.3 serves on its client port: plain HTTP(S) and JSON, so no gRPC
//! stack is built in. A cache node puts `{prefix}/nodes/{advertised address}` =
//! [`Registration`] under a lease of [`EtcdMembers::ttl`] and keeps the lease alive every third
//! of it; on a clean stop it revokes the lease, so the others drop it at once, and a node that
//! dies drops out when the lease expires. Every process (fronts included) lists the prefix,
//! then watches it from the listed revision; a broken or compacted watch lists again. Bursts
//! of events (a thousand nodes starting) are applied together: one new view per batch read.
//!
//! etcd holds no secret: a forged registration can only add an address that cannot answer
//! peer requests (every peer answer is signed with the cluster secret), which costs hit ratio
//! until it is probed dead.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::membership::{Listed, Membership};

/// What a cache node registers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Registration {
    /// Peer address others reach it at.
    pub addr: String,
    /// Zone ("" when none).
    #[serde(default)]
    pub zone: String,
    /// Relative capacity.
    #[serde(default = "one")]
    pub weight: f64,
    /// The process's random instance id.
    #[serde(default)]
    pub instance: String,
}

fn one() -> f64 {
    1.0
}

/// An etcd cluster holding the membership under a prefix.
#[derive(Clone)]
pub struct EtcdMembers {
    http: reqwest::Client,
    endpoints: Arc<[String]>,
    prefix: String,
    ttl: Duration,
}

/// The longest a unary etcd call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn unb64(v: &Value) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(v.as_str()?)
        .ok()
}

/// etcd's JSON gateway writes 64-bit integers as strings.
fn int(v: &Value) -> Option<i64> {
    match v {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

impl EtcdMembers {
    /// Membership at `endpoints` (`http://host:2379`, tried in turn) under `prefix`, with
    /// registrations living `ttl` without a keep-alive.
    pub fn new(endpoints: &[String], prefix: &str, ttl: Duration) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(Duration::from_secs(2))
            // A watch is one long answer: a dead etcd is found by TCP keep-alive.
            .tcp_keepalive(Duration::from_secs(10))
            .build()?;
        Ok(Self {
            http,
            endpoints: endpoints
                .iter()
                .map(|e| e.trim_end_matches('/').to_string())
                .collect(),
            prefix: prefix.trim_end_matches('/').to_string(),
            ttl,
        })
    }

    /// The lease time to live.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn nodes_key(&self) -> String {
        format!("{}/nodes/", self.prefix)
    }

    /// The key range holding every registration: `[prefix/nodes/, prefix/nodes0)`.
    fn range(&self) -> (String, String) {
        (
            b64(&self.nodes_key()),
            b64(&format!("{}/nodes0", self.prefix)),
        )
    }

    /// Posts `body` to `path` at the first endpoint that answers.
    async fn post(
        &self,
        path: &str,
        body: &Value,
        timeout: Option<Duration>,
    ) -> anyhow::Result<reqwest::Response> {
        let mut last = None;
        for e in self.endpoints.iter() {
            let mut req = self
                .http
                .post(format!("{e}{path}"))
                .header("content-type", "application/json")
                .body(body.to_string());
            if let Some(t) = timeout {
                req = req.timeout(t);
            }
            match req.send().await {
                Ok(r) if r.status().is_success() => return Ok(r),
                Ok(r) => {
                    let status = r.status();
                    let text = r.text().await.unwrap_or_default();
                    last = Some(anyhow::anyhow!("etcd {e}{path}: {status}: {text}"));
                }
                Err(err) => last = Some(anyhow::anyhow!("etcd {e}{path}: {err}")),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("no etcd endpoints")))
    }

    async fn call(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let answer = self
            .post(path, &body, Some(CALL_TIMEOUT))
            .await?
            .bytes()
            .await?;
        Ok(serde_json::from_slice(&answer)?)
    }

    /// Grants a lease, returning its id.
    pub async fn grant(&self) -> anyhow::Result<i64> {
        let ttl = self.ttl.as_secs().max(1);
        let v = self.call("/v3/lease/grant", json!({ "TTL": ttl })).await?;
        int(&v["ID"]).ok_or_else(|| anyhow::anyhow!("etcd granted no lease: {v}"))
    }

    /// Keeps a lease alive; `false` when it is gone (expired or revoked).
    pub async fn keep_alive(&self, lease: i64) -> anyhow::Result<bool> {
        let v = self
            .call("/v3/lease/keepalive", json!({ "ID": lease.to_string() }))
            .await?;
        Ok(int(&v["result"]["TTL"]).is_some_and(|t| t > 0))
    }

    /// Revokes a lease (its keys go at once).
    pub async fn revoke(&self, lease: i64) -> anyhow::Result<()> {
        self.call("/v3/lease/revoke", json!({ "ID": lease.to_string() }))
            .await
            .map(drop)
    }

    /// Puts `reg` under `lease`.
    pub async fn register(&self, reg: &Registration, lease: i64) -> anyhow::Result<()> {
        let key = format!("{}{}", self.nodes_key(), reg.addr);
        let value = serde_json::to_string(reg)?;
        self.call(
            "/v3/kv/put",
            json!({ "key": b64(&key), "value": b64(&value), "lease": lease.to_string() }),
        )
        .await
        .map(drop)
    }

    /// Every registration, by key, and the revision they were read at.
    pub async fn list(&self) -> anyhow::Result<(BTreeMap<Vec<u8>, Registration>, i64)> {
        let (key, end) = self.range();
        let v = self
            .call("/v3/kv/range", json!({ "key": key, "range_end": end }))
            .await?;
        let rev = int(&v["header"]["revision"]).unwrap_or(0);
        let mut out = BTreeMap::new();
        for kv in v["kvs"].as_array().into_iter().flatten() {
            if let Some((k, r)) = decode_kv(kv) {
                out.insert(k, r);
            }
        }
        Ok((out, rev))
    }
}

/// A key and its registration; a value that is not one is skipped (and logged).
fn decode_kv(kv: &Value) -> Option<(Vec<u8>, Registration)> {
    let key = unb64(&kv["key"])?;
    let value = unb64(&kv["value"])?;
    match serde_json::from_slice::<Registration>(&value) {
        Ok(r) if !r.addr.is_empty() => Some((key, r)),
        _ => {
            tracing::warn!(
                key = %String::from_utf8_lossy(&key),
                "etcd holds a registration that is not one; skipped"
            );
            None
        }
    }
}

/// What one watch message changes.
#[derive(Debug, PartialEq)]
enum Change {
    /// Events to apply (puts carry their registration, deletes none).
    Events(Vec<(Vec<u8>, Option<Registration>)>),
    /// The watch ended (canceled, compacted, or an error): list again.
    Ended(String),
    /// Nothing (the watch's creation, a progress notice).
    None,
}

fn parse_message(line: &[u8]) -> Change {
    let Ok(v) = serde_json::from_slice::<Value>(line) else {
        return Change::Ended("unreadable watch message".into());
    };
    if !v["error"].is_null() {
        return Change::Ended(format!("watch error: {}", v["error"]));
    }
    let r = &v["result"];
    if r["canceled"].as_bool() == Some(true) {
        return Change::Ended(format!(
            "watch canceled (compacted to {})",
            int(&r["compact_revision"]).unwrap_or(0)
        ));
    }
    let events: Vec<_> = r["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let key = unb64(&e["kv"]["key"])?;
            if e["type"].as_str() == Some("DELETE") {
                Some((key, None))
            } else {
                decode_kv(&e["kv"]).map(|(k, r)| (k, Some(r)))
            }
        })
        .collect();
    if events.is_empty() {
        Change::None
    } else {
        Change::Events(events)
    }
}

/// Registers this cache node until `stop`, then revokes its lease. Keeps trying through etcd
/// outages (the node serves meanwhile; the others keep it until its lease expires).
pub async fn register(
    etcd: EtcdMembers,
    reg: Registration,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let beat = (etcd.ttl / 3).max(Duration::from_millis(300));
    let mut lease: Option<i64> = None;
    loop {
        let step = async {
            match lease {
                Some(id) => match etcd.keep_alive(id).await {
                    Ok(true) => Ok(Some(id)),
                    Ok(false) => {
                        tracing::warn!("the etcd lease expired; registering again");
                        Ok(None)
                    }
                    Err(e) => Err(e),
                },
                None => {
                    let id = etcd.grant().await?;
                    etcd.register(&reg, id).await?;
                    tracing::info!(addr = %reg.addr, zone = %reg.zone, "registered in etcd");
                    Ok(Some(id))
                }
            }
        };
        let next = tokio::select! {
            r = step => r,
            () = &mut stop => break,
        };
        let wait = match next {
            Ok(Some(id)) => {
                lease = Some(id);
                beat
            }
            Ok(None) => {
                lease = None;
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot reach etcd to register");
                beat.min(Duration::from_secs(1))
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = &mut stop => break,
        }
    }
    if let Some(id) = lease {
        match etcd.revoke(id).await {
            Ok(()) => tracing::info!(addr = %reg.addr, "left etcd (lease revoked)"),
            Err(e) => tracing::warn!(error = %e, "cannot revoke the etcd lease; it will expire"),
        }
    }
}

/// Follows the registrations until `stop`: lists, then watches, feeding `membership`.
/// `instance` is this process's id (a registration carrying it is this process).
pub async fn follow(
    etcd: EtcdMembers,
    membership: Arc<Membership>,
    instance: Option<String>,
    stop: impl std::future::Future<Output = ()>,
) {
    let listed = |r: &Registration| Listed {
        addr: r.addr.clone(),
        zone: r.zone.clone(),
        weight: Some(r.weight),
        here: instance.as_deref().is_some_and(|i| i == r.instance),
    };
    super::follow_registry("etcd", stop, || round(&etcd, &membership, &listed)).await;
}

/// One list and watch; ends only on an error.
async fn round(
    etcd: &EtcdMembers,
    membership: &Membership,
    listed: &impl Fn(&Registration) -> Listed,
) -> anyhow::Result<Infallible> {
    let (mut regs, rev) = etcd.list().await?;
    membership.set_listed(&regs.values().map(listed).collect::<Vec<_>>());
    let (key, end) = etcd.range();
    let body = json!({ "create_request": {
        "key": key, "range_end": end, "start_revision": (rev + 1).to_string(),
    }});
    let resp = etcd.post("/v3/watch", &body, None).await?;
    let mut stream = resp.bytes_stream();
    let mut buf: Vec<u8> = Vec::new();
    let mut pace = super::Coalesce::default();
    // Changes not applied yet: registrations by address, and addresses gone.
    let mut ups: BTreeMap<String, Listed> = BTreeMap::new();
    let mut gone: BTreeSet<String> = BTreeSet::new();
    let apply = |ups: &mut BTreeMap<String, Listed>, gone: &mut BTreeSet<String>| {
        let up: Vec<Listed> = std::mem::take(ups).into_values().collect();
        let gone = std::mem::take(gone);
        let gone: Vec<&str> = gone.iter().map(String::as_str).collect();
        membership.change_listed(&up, &gone);
    };
    loop {
        let chunk = match super::next_or_due(&mut stream, &pace).await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(()) => {
                apply(&mut ups, &mut gone);
                pace.applied();
                continue;
            }
        };
        buf.extend_from_slice(&chunk?);
        let mut changed = false;
        // Every complete line is one message; apply all that arrived together.
        while let Some(nl) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=nl).collect();
            match parse_message(&line) {
                Change::Events(events) => {
                    for (k, r) in events {
                        let old = match &r {
                            Some(r) => regs.insert(k, r.clone()),
                            None => regs.remove(&k),
                        };
                        if let Some(old) =
                            old.filter(|o| r.as_ref().is_none_or(|r| r.addr != o.addr))
                        {
                            ups.remove(&old.addr);
                            gone.insert(old.addr);
                        }
                        if let Some(r) = r {
                            gone.remove(&r.addr);
                            ups.insert(r.addr.clone(), listed(&r));
                        }
                    }
                    changed = true;
                }
                Change::Ended(why) => anyhow::bail!(why),
                Change::None => {}
            }
        }
        if changed && pace.changed() {
            apply(&mut ups, &mut gone);
            pace.applied();
        }
    }
    anyhow::bail!("the watch ended")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: &str) -> Value {
        json!({ "key": b64(key), "value": b64(value) })
    }

    #[test]
    fn watch_messages_are_read() {
        let reg = r#"{"addr":"10.0.0.1:7070","zone":"z1","weight":2,"instance":"i1"}"#;
        let put = json!({ "result": { "header": { "revision": "7" },
            "events": [ { "kv": kv("/c/nodes/10.0.0.1:7070", reg) },
                        { "type": "DELETE", "kv": { "key": b64("/c/nodes/10.0.0.2:7070") } } ] } });
        let Change::Events(ev) = parse_message(put.to_string().as_bytes()) else {
            panic!("events expected");
        };
        assert_eq!(ev.len(), 2);
        let r = ev[0].1.as_ref().expect("a put");
        assert_eq!(
            (r.addr.as_str(), r.zone.as_str(), r.weight),
            ("10.0.0.1:7070", "z1", 2.0)
        );
        assert_eq!(ev[1], (b"/c/nodes/10.0.0.2:7070".to_vec(), None));
        // Creation and progress notices change nothing; a compaction or error ends the watch.
        let created = json!({ "result": { "header": { "revision": "1" }, "created": true } });
        assert_eq!(parse_message(created.to_string().as_bytes()), Change::None);
        let canceled = json!({ "result": { "canceled": true, "compact_revision": "5" } });
        assert!(matches!(
            parse_message(canceled.to_string().as_bytes()),
            Change::Ended(_)
        ));
        assert!(matches!(
            parse_message(b"{\"error\":{\"grpc_code\":14}}"),
            Change::Ended(_)
        ));
        assert!(matches!(parse_message(b"not json"), Change::Ended(_)));
        // A value that is not a registration is skipped, not applied.
        let junk = json!({ "result": { "events": [ { "kv": kv("/c/nodes/x", "junk") } ] } });
        assert_eq!(parse_message(junk.to_string().as_bytes()), Change::None);
    }
}
