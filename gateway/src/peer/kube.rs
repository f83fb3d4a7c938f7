//! Membership from Kubernetes: a watch of the cache Service's EndpointSlices.
//!
//! Lists `discovery.k8s.io/v1` EndpointSlices labelled `kubernetes.io/service-name=SERVICE`
//! in the namespace, then watches them from the listed `resourceVersion` (a `410 Gone` or a
//! broken watch lists again). A member is an endpoint's first address with the slice's port
//! named or numbered as configured, when the endpoint is ready (Kubernetes' readiness is the
//! liveness signal, from the pod's readiness probe: `/readyz`); its zone is the endpoint's
//! `zone` (the node's `topology.kubernetes.io/zone`). In a pod, the API server, the token
//! (re-read for every list and watch: it rotates) and its CA come from the service account;
//! `api` overrides the address (e.g. `kubectl proxy`'s `http://127.0.0.1:8001`, no token).
//! The pod's service account needs `list` and `watch` on `endpointslices` (see `deploy/`).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::membership::{Listed, Membership};

const SA_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Where the cache nodes are: a Service's EndpointSlices.
#[derive(Clone)]
pub struct KubeMembers {
    http: reqwest::Client,
    api: String,
    token_file: Option<String>,
    namespace: String,
    service: String,
    /// The peer port's name or number in the slices.
    port: String,
    /// This process's peer address as the slices name it (`POD_IP:port`), to know itself.
    me: Option<String>,
}

impl KubeMembers {
    /// Watches `namespace/service`'s slices for `port`; `api` when not in a pod (or to go
    /// through a proxy). `me` is this node's advertised peer address.
    pub fn new(
        namespace: Option<&str>,
        service: &str,
        port: &str,
        api: Option<&str>,
        me: Option<String>,
    ) -> anyhow::Result<Self> {
        let mut b = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(Duration::from_secs(2))
            .tcp_keepalive(Duration::from_secs(10));
        let (api, token_file) = match api {
            Some(a) => (a.trim_end_matches('/').to_string(), None),
            None => {
                let host = std::env::var("KUBERNETES_SERVICE_HOST").map_err(|_| {
                    anyhow::anyhow!(
                        "not in a Kubernetes pod (no KUBERNETES_SERVICE_HOST): set [cluster] k8s_api"
                    )
                })?;
                let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or("443".into());
                let ca = std::fs::read(format!("{SA_DIR}/ca.crt"))?;
                b = b.add_root_certificate(reqwest::Certificate::from_pem(&ca)?);
                let host = if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host
                };
                (
                    format!("https://{host}:{port}"),
                    Some(format!("{SA_DIR}/token")),
                )
            }
        };
        let namespace = match namespace {
            Some(n) => n.to_string(),
            None => std::fs::read_to_string(format!("{SA_DIR}/namespace"))
                .map(|s| s.trim().to_string())
                .map_err(|e| anyhow::anyhow!("no namespace given and none from the pod: {e}"))?,
        };
        Ok(Self {
            http: b.build()?,
            api,
            token_file,
            namespace,
            service: service.to_string(),
            port: port.to_string(),
            me,
        })
    }

    fn url(&self, watch_from: Option<&str>) -> String {
        let mut u = format!(
            "{}/apis/discovery.k8s.io/v1/namespaces/{}/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3D{}",
            self.api, self.namespace, self.service
        );
        if let Some(rv) = watch_from {
            u.push_str("&watch=1&allowWatchBookmarks=true&resourceVersion=");
            u.push_str(rv);
        }
        u
    }

    async fn get(
        &self,
        url: String,
        timeout: Option<Duration>,
    ) -> anyhow::Result<reqwest::Response> {
        let mut req = self.http.get(url);
        if let Some(f) = &self.token_file {
            let token = std::fs::read_to_string(f)?;
            req = req.bearer_auth(token.trim());
        }
        if let Some(t) = timeout {
            req = req.timeout(t);
        }
        let r = req.send().await?;
        if !r.status().is_success() {
            let status = r.status();
            let text = r.text().await.unwrap_or_default();
            anyhow::bail!(
                "Kubernetes API: {status}: {}",
                text.chars().take(300).collect::<String>()
            );
        }
        Ok(r)
    }

    /// The members one slice lists (ready endpoints with the peer port).
    fn members_of(&self, slice: &Value) -> Vec<Listed> {
        let port = slice["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .find_map(|p| {
                let number = p["port"].as_u64()?;
                (p["name"].as_str() == Some(self.port.as_str()) || number.to_string() == self.port)
                    .then_some(number)
            });
        let Some(port) = port else {
            return Vec::new();
        };
        slice["endpoints"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["conditions"]["ready"].as_bool() != Some(false))
            .filter_map(|e| {
                let ip = e["addresses"].as_array()?.first()?.as_str()?;
                let addr = if ip.contains(':') {
                    format!("[{ip}]:{port}")
                } else {
                    format!("{ip}:{port}")
                };
                Some(Listed {
                    here: self.me.as_deref() == Some(addr.as_str()),
                    zone: e["zone"].as_str().unwrap_or("").to_string(),
                    weight: None,
                    addr,
                })
            })
            .collect()
    }
}

fn apply(k: &KubeMembers, slices: &BTreeMap<String, Value>, membership: &Membership) {
    let mut listed: Vec<Listed> = slices.values().flat_map(|s| k.members_of(s)).collect();
    // An endpoint may sit in two slices while it moves: once is enough.
    listed.sort_by(|a, b| a.addr.cmp(&b.addr));
    listed.dedup_by(|a, b| a.addr == b.addr);
    membership.set_listed(&listed);
}

/// Follows the Service's slices until `stop`.
pub async fn follow(
    k: KubeMembers,
    membership: Arc<Membership>,
    stop: impl std::future::Future<Output = ()>,
) {
    super::follow_registry("EndpointSlice", stop, || round(&k, &membership)).await;
}

/// One list, then watches from its version; ends only on an error (or a version gone).
async fn round(k: &KubeMembers, membership: &Membership) -> anyhow::Result<Infallible> {
    let list = k.get(k.url(None), Some(Duration::from_secs(10))).await?;
    let list: Value = serde_json::from_slice(&list.bytes().await?)?;
    let mut rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let mut slices: BTreeMap<String, Value> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| Some((s["metadata"]["name"].as_str()?.to_string(), s.clone())))
        .collect();
    apply(k, &slices, membership);
    // The API server ends a watch after some minutes: watch again from where it ended
    // (a list again only when the version is gone, or on an error).
    loop {
        let resp = k.get(k.url(Some(&rv)), None).await?;
        let mut stream = resp.bytes_stream();
        let mut buf: Vec<u8> = Vec::new();
        let mut pace = super::Coalesce::default();
        loop {
            let chunk = match super::next_or_due(&mut stream, &pace).await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(()) => {
                    apply(k, &slices, membership);
                    pace.applied();
                    continue;
                }
            };
            buf.extend_from_slice(&chunk?);
            let mut changed = false;
            while let Some(nl) = buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = buf.drain(..=nl).collect();
                let ev: Value = serde_json::from_slice(&line)?;
                let obj = &ev["object"];
                if let Some(v) = obj["metadata"]["resourceVersion"].as_str() {
                    rv = v.to_string();
                }
                let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
                match ev["type"].as_str() {
                    Some("ADDED" | "MODIFIED") => {
                        slices.insert(name, obj.clone());
                        changed = true;
                    }
                    Some("DELETED") => {
                        slices.remove(&name);
                        changed = true;
                    }
                    Some("BOOKMARK") => {}
                    // ERROR (410 Gone: the version is too old) or anything else.
                    _ => anyhow::bail!("watch ended: {}", obj["message"]),
                }
            }
            if changed && pace.changed() {
                apply(k, &slices, membership);
                pace.applied();
            }
        }
        if pace.wait().is_some() {
            apply(k, &slices, membership);
        }
        tracing::debug!(version = %rv, "EndpointSlice watch ended; watching again");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn slices_name_ready_endpoints_with_their_zone() {
        let k = KubeMembers::new(
            Some("ns"),
            "cistern-cache",
            "peer",
            Some("http://x"),
            Some("10.1.0.2:7070".into()),
        )
        .expect("client");
        let slice = json!({
            "metadata": { "name": "cistern-cache-abc" },
            "ports": [ { "name": "s3", "port": 9000 }, { "name": "peer", "port": 7070 } ],
            "endpoints": [
                { "addresses": ["10.1.0.1"], "conditions": { "ready": true }, "zone": "z1" },
                { "addresses": ["10.1.0.2"], "conditions": {}, "zone": "z2" },
                { "addresses": ["10.1.0.3"], "conditions": { "ready": false }, "zone": "z1" },
                { "addresses": ["fd00::4"], "zone": "z3" },
            ]
        });
        let m = k.members_of(&slice);
        let got: Vec<(&str, &str, bool)> = m
            .iter()
            .map(|l| (l.addr.as_str(), l.zone.as_str(), l.here))
            .collect();
        assert_eq!(
            got,
            vec![
                ("10.1.0.1:7070", "z1", false),
                ("10.1.0.2:7070", "z2", true),
                ("[fd00::4]:7070", "z3", false),
            ]
        );
        // By number too; a slice without the port lists nobody.
        let k2 = KubeMembers {
            port: "7070".into(),
            ..k.clone()
        };
        assert_eq!(k2.members_of(&slice).len(), 3);
        let k3 = KubeMembers {
            port: "other".into(),
            ..k
        };
        assert!(k3.members_of(&slice).is_empty());
    }
}
