//! The cache cluster: membership, the peer protocol's client and server.
//!
//! - [`membership`]: members, health probes, suspect/dead marking, epochs, and the placement
//!   ([`cistern_cache::placement`]) over live nodes.
//! - [`etcd`], [`kube`]: members from a registry (etcd leases, Kubernetes EndpointSlices).
//! - [`client`]: [`client::PeerClient`] asks other nodes for chunks and metadata; it is the
//!   pipeline's [`crate::pipeline::peers::Peers`].
//! - [`server`]: a cache node's peer listener.
//! - [`wire`]: the protocol's requests and answers.
//!
//! Every request and answer is signed with the cluster secret ([`cistern_auth::peer`]).

pub mod client;
pub mod etcd;
pub mod kube;
pub mod membership;
pub mod server;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;

use crate::config::Members;
use client::PeerClient;

/// How often, at most, a registry watch's changes make a new view during a burst (a
/// thousand nodes starting): a lone change is applied at once.
pub const COALESCE: Duration = Duration::from_millis(250);

/// Paces a registry watch's changes: at once after a quiet spell, then at most every
/// [`COALESCE`] while changes keep coming (a new view costs O(members)).
#[derive(Debug, Default)]
pub(crate) struct Coalesce {
    pending: bool,
    last: Option<tokio::time::Instant>,
}

impl Coalesce {
    /// How long to wait for more before applying what is pending (`None`: nothing pending).
    pub(crate) fn wait(&self) -> Option<Duration> {
        self.pending.then(|| {
            self.last.map_or(Duration::ZERO, |l| {
                (l + COALESCE).saturating_duration_since(tokio::time::Instant::now())
            })
        })
    }

    /// Something changed; `true` when it is to be applied now.
    pub(crate) fn changed(&mut self) -> bool {
        self.pending = true;
        self.last.is_none_or(|l| l.elapsed() >= COALESCE)
    }

    /// What was pending is applied.
    pub(crate) fn applied(&mut self) {
        self.pending = false;
        self.last = Some(tokio::time::Instant::now());
    }
}

/// The next piece of a watch's answer, or, when `pace` has changes pending and their time
/// comes first, `Err(())`: apply them.
pub(crate) async fn next_or_due<S: futures::Stream + Unpin>(
    stream: &mut S,
    pace: &Coalesce,
) -> Result<Option<S::Item>, ()> {
    match pace.wait() {
        None => Ok(stream.next().await),
        Some(d) => tokio::time::timeout(d, stream.next()).await.map_err(|_| ()),
    }
}

/// Runs a registry's list-and-watch `round` until `stop`. A round ends only on an error (a
/// broken or compacted watch, an unreachable registry): logged, then, a second later, a new
/// round lists and watches again. Meanwhile the last view stays.
pub(crate) async fn follow_registry<F, Fut>(
    registry: &str,
    stop: impl std::future::Future<Output = ()>,
    mut round: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<std::convert::Infallible>>,
{
    tokio::pin!(stop);
    loop {
        let Err(e) = tokio::select! {
            r = round() => r,
            () = &mut stop => return,
        };
        tracing::warn!(registry, error = %e, "membership watch broke; listing again");
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = &mut stop => return,
        }
    }
}

/// Keeps membership current until `stop` resolves: re-resolves DNS and probes. With a list or
/// DNS every member is probed each interval (small clusters); with a registry (etcd,
/// Kubernetes), which says who is alive, at most [`membership::PROBES_PER_ROUND`] members.
pub async fn maintain(
    client: Arc<PeerClient>,
    members: Members,
    interval: Duration,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_dns: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = &mut stop => return,
        }
        if let Members::Dns { name, port } = &members {
            if last_dns.is_none_or(|t| t.elapsed() >= membership::DNS_INTERVAL) {
                last_dns = Some(tokio::time::Instant::now());
                match membership::resolve(name, *port).await {
                    Ok(addrs) => client.membership().set_addresses(&addrs),
                    Err(e) => {
                        tracing::warn!(name = %name, error = %e, "cannot resolve the cache nodes")
                    }
                }
            }
        }
        let timeout = interval.min(Duration::from_secs(2));
        let targets = if members.is_registry() {
            client
                .membership()
                .probe_targets(membership::PROBES_PER_ROUND)
        } else {
            client.membership().addresses()
        };
        // At most 64 probes at once (many members: a bounded burst).
        futures::stream::iter(targets)
            .for_each_concurrent(64, |a| {
                let c = Arc::clone(&client);
                async move { c.probe(&a, timeout).await }
            })
            .await;
    }
}
