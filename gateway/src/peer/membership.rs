//! Membership: which cache nodes exist, which are alive, and the placement over them.
//!
//! Members come from a static list or from DNS (re-resolved). Every member is probed
//! (`GET /v1/health`, signed) each interval; a failed probe or request makes a node *suspect*,
//! [`DEAD_AFTER`] consecutive failures make it *dead*, and one good probe brings it back. Only
//! dead nodes leave the placement, so a blip does not move keys; each change of the live set
//! bumps the view's epoch and rebuilds the placement. A node recognises itself among the
//! members by the random instance id its own health answer carries.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use cistern_cache::placement::{stable_hash, Node as PlacementNode, Placement};

use crate::metrics::Metrics;
use crate::pipeline::peers::Node;

/// Consecutive failures after which a node is dead.
pub const DEAD_AFTER: u32 = 2;

/// A member's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Answering.
    Alive,
    /// Failed lately; still placed.
    Suspect,
    /// Failed [`DEAD_AFTER`] times in a row; not placed.
    Dead,
}

impl Health {
    /// A stable lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Alive => "alive",
            Self::Suspect => "suspect",
            Self::Dead => "dead",
        }
    }
}

#[derive(Debug, Clone)]
struct Member {
    health: Health,
    fails: u32,
    weight: f64,
    here: bool,
}

/// One membership view: immutable, replaced whole on change.
#[derive(Debug, Default)]
pub struct View {
    /// Bumped whenever the set of placed nodes (or their weights) changes.
    pub epoch: u64,
    members: BTreeMap<Arc<str>, Member>,
    placement: Placement,
    /// Per placement index: this process.
    here: Vec<bool>,
    /// Placement over every member, dead or alive: where a key's owners are by everyone's
    /// reckoning, for invalidations (a node this process thinks dead may still serve others).
    everyone: Placement,
}

impl View {
    fn build(epoch: u64, members: BTreeMap<Arc<str>, Member>) -> Self {
        let live: Vec<PlacementNode> = members
            .iter()
            .filter(|(_, m)| m.health != Health::Dead)
            .map(|(id, m)| PlacementNode {
                id: Arc::clone(id),
                weight: m.weight,
            })
            .collect();
        let placement = Placement::new(live);
        let here = placement
            .nodes()
            .iter()
            .map(|n| members.get(&n.id).is_some_and(|m| m.here))
            .collect();
        let everyone = Placement::new(
            members
                .iter()
                .map(|(id, m)| PlacementNode {
                    id: Arc::clone(id),
                    weight: m.weight,
                })
                .collect(),
        );
        Self {
            epoch,
            members,
            placement,
            here,
            everyone,
        }
    }

    /// Members and their health, by address.
    pub fn members(&self) -> impl Iterator<Item = (&str, Health)> {
        self.members.iter().map(|(a, m)| (&**a, m.health))
    }
}

/// The membership of the cache cluster as this process sees it.
pub struct Membership {
    view: RwLock<Arc<View>>,
    metrics: Metrics,
}

impl Membership {
    /// Starts with `addrs`, all presumed alive (so a cluster starting together places at once).
    pub fn new(addrs: &[String], metrics: Metrics) -> Self {
        let members = addrs
            .iter()
            .map(|a| {
                (
                    Arc::from(a.as_str()),
                    Member {
                        health: Health::Alive,
                        fails: 0,
                        weight: 1.0,
                        here: false,
                    },
                )
            })
            .collect();
        let m = Self {
            view: RwLock::new(Arc::new(View::build(1, members))),
            metrics,
        };
        m.publish(&m.view());
        m
    }

    /// The current view.
    pub fn view(&self) -> Arc<View> {
        Arc::clone(&self.view.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Up to `n` placed nodes for `hash`, owner first.
    pub fn route(&self, hash: u64, n: usize) -> Vec<Node> {
        let v = self.view();
        v.placement
            .ranked(hash, n)
            .into_iter()
            .map(|i| {
                if v.here[i] {
                    Node::Here
                } else {
                    Node::Peer(Arc::clone(&v.placement.nodes()[i].id))
                }
            })
            .collect()
    }

    /// Up to `n` members for `hash` by the placement over every member (dead ones included),
    /// owner first.
    pub fn owners(&self, hash: u64, n: usize) -> Vec<Node> {
        let v = self.view();
        v.everyone
            .ranked(hash, n)
            .into_iter()
            .map(|i| {
                let id = &v.everyone.nodes()[i].id;
                if v.members.get(id).is_some_and(|m| m.here) {
                    Node::Here
                } else {
                    Node::Peer(Arc::clone(id))
                }
            })
            .collect()
    }

    /// A request to `addr` failed: it is suspect (still placed). Only probes mark a node
    /// dead, so one front's network blip does not move its keys while the others still
    /// place them there.
    pub fn suspect(&self, addr: &str) {
        let already = self
            .view()
            .members
            .get(addr)
            .is_none_or(|m| m.health != Health::Alive);
        if already {
            return;
        }
        self.update(|members| {
            let m = members.get_mut(addr)?;
            if m.health == Health::Alive {
                m.health = Health::Suspect;
                tracing::warn!(peer = addr, "cache node suspect after a failed request");
            }
            Some(false)
        });
    }

    /// Whether `addr` is a member (placed or not).
    pub fn contains(&self, addr: &str) -> bool {
        self.view().members.contains_key(addr)
    }

    /// Every member's address (to probe).
    pub fn addresses(&self) -> Vec<Arc<str>> {
        self.view().members.keys().cloned().collect()
    }

    /// A probe or request to `addr` succeeded; `here` when it answered with our instance id.
    pub fn succeeded(&self, addr: &str, weight: Option<f64>, here: bool) {
        // The common case, a healthy node still healthy, changes nothing: no new view.
        let unchanged = self.view().members.get(addr).is_none_or(|m| {
            m.health == Health::Alive
                && m.fails == 0
                && m.here == here
                && weight.is_none_or(|w| w == m.weight)
        });
        if unchanged {
            return;
        }
        self.update(|members| {
            let m = members.get_mut(addr)?;
            let placed_before = m.health != Health::Dead;
            let changed = !placed_before
                || m.here != here
                || weight.is_some_and(|w| w.is_finite() && w > 0.0 && w != m.weight);
            m.health = Health::Alive;
            m.fails = 0;
            m.here = here;
            if let Some(w) = weight.filter(|w| w.is_finite() && *w > 0.0) {
                m.weight = w;
            }
            Some(changed)
        });
    }

    /// A probe of `addr` failed.
    pub fn failed(&self, addr: &str) {
        if self
            .view()
            .members
            .get(addr)
            .is_none_or(|m| m.health == Health::Dead)
        {
            return; // unknown, or dead already: nothing changes
        }
        self.update(|members| {
            let m = members.get_mut(addr)?;
            m.fails = m.fails.saturating_add(1);
            let before = m.health;
            m.health = if m.fails >= DEAD_AFTER {
                Health::Dead
            } else {
                Health::Suspect
            };
            if before != m.health {
                tracing::warn!(
                    peer = addr,
                    health = m.health.as_str(),
                    "cache node health changed"
                );
            }
            Some(before != Health::Dead && m.health == Health::Dead)
        });
    }

    /// Replaces the member list (a DNS answer): new addresses join alive, missing ones leave.
    pub fn set_addresses(&self, addrs: &[String]) {
        self.update(|members| {
            let before = members.len();
            members.retain(|a, _| addrs.iter().any(|x| **x == **a));
            let mut changed = members.len() != before;
            for a in addrs {
                if !members.contains_key(a.as_str()) {
                    members.insert(
                        Arc::from(a.as_str()),
                        Member {
                            health: Health::Alive,
                            fails: 0,
                            weight: 1.0,
                            here: false,
                        },
                    );
                    changed = true;
                }
            }
            Some(changed)
        });
    }

    /// Applies `f` to a copy of the members; when it reports a placement change, a new view
    /// with the next epoch replaces the current one.
    fn update(&self, f: impl FnOnce(&mut BTreeMap<Arc<str>, Member>) -> Option<bool>) {
        let mut guard = self.view.write().unwrap_or_else(|e| e.into_inner());
        let mut members = guard.members.clone();
        let Some(placement_changed) = f(&mut members) else {
            return;
        };
        let epoch = guard.epoch + u64::from(placement_changed);
        let next = Arc::new(View::build(epoch, members));
        let before = std::mem::replace(&mut *guard, Arc::clone(&next));
        drop(guard);
        if placement_changed {
            // Measured outside the lock: routing never waits for it.
            let moved = moved_share(&before.placement, &next.placement);
            self.metrics.placement_changes.inc();
            self.metrics.placement_moved_ratio.set(moved);
            tracing::info!(
                epoch,
                placed = next.placement.len(),
                moved = format!("{:.1}%", moved * 100.0),
                "cluster membership changed"
            );
        }
        self.publish(&next);
    }

    fn publish(&self, v: &View) {
        for h in [Health::Alive, Health::Suspect, Health::Dead] {
            let n = v.members.values().filter(|m| m.health == h).count();
            self.metrics
                .cluster_members
                .with_label_values(&[h.as_str()])
                .set(n as i64);
        }
        self.metrics.cluster_epoch.set(v.epoch as i64);
    }
}

/// The share of 4096 sample keys whose owner differs between two placements.
fn moved_share(a: &Placement, b: &Placement) -> f64 {
    const SAMPLES: u64 = 4096;
    let owner = |p: &Placement, k: u64| p.owner(k).map(|i| Arc::clone(&p.nodes()[i].id));
    let moved = (0..SAMPLES)
        .filter(|i| {
            let k = stable_hash(&[b"sample", &i.to_le_bytes()]);
            owner(a, k) != owner(b, k)
        })
        .count();
    moved as f64 / SAMPLES as f64
}

/// Resolves `name:port` to member addresses (`ip:port`, sorted).
pub async fn resolve(name: &str, port: u16) -> std::io::Result<Vec<String>> {
    let mut out: Vec<String> = tokio::net::lookup_host((name, port))
        .await?
        .map(|a| a.to_string())
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
}

/// How often DNS membership is re-resolved.
pub const DNS_INTERVAL: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;

    fn m(addrs: &[&str]) -> Membership {
        let list: Vec<String> = addrs.iter().map(|s| s.to_string()).collect();
        Membership::new(&list, Metrics::new().expect("metrics"))
    }

    #[test]
    fn failures_make_a_node_suspect_then_dead_and_a_probe_revives_it() {
        let ms = m(&["a:1", "b:1", "c:1"]);
        let e0 = ms.view().epoch;
        ms.failed("b:1");
        assert_eq!(ms.view().epoch, e0, "a suspect node stays placed");
        ms.failed("b:1");
        let v = ms.view();
        assert_eq!(v.epoch, e0 + 1);
        assert!(v.members().any(|(a, h)| a == "b:1" && h == Health::Dead));
        for k in 0..500u64 {
            assert_ne!(ms.route(k, 1), vec![Node::Peer("b:1".into())]);
        }
        ms.failed("b:1");
        assert_eq!(ms.view().epoch, e0 + 1, "already dead");
        ms.succeeded("b:1", None, false);
        assert_eq!(ms.view().epoch, e0 + 2);
        // Unknown addresses change nothing.
        ms.failed("zz:9");
        assert_eq!(ms.view().epoch, e0 + 2);
    }

    #[test]
    fn a_failed_request_only_makes_a_node_suspect_and_owners_count_the_dead() {
        let ms = m(&["a:1", "b:1", "c:1"]);
        let e0 = ms.view().epoch;
        ms.suspect("b:1");
        ms.suspect("b:1");
        let v = ms.view();
        assert_eq!(v.epoch, e0, "requests alone never move keys");
        assert!(v.members().any(|(a, h)| a == "b:1" && h == Health::Suspect));
        // Probes decide: two failures, dead; routing skips it, owners still name it.
        ms.failed("b:1");
        ms.failed("b:1");
        let mut named_dead = false;
        for k in 0..500u64 {
            let key = stable_hash(&[&k.to_le_bytes()]);
            assert!(!ms.route(key, 3).contains(&Node::Peer("b:1".into())));
            if ms.owners(key, 1) == vec![Node::Peer("b:1".into())] {
                named_dead = true;
            }
        }
        assert!(named_dead, "owners() places over every member");
        ms.succeeded("b:1", None, false);
        assert!(ms.view().members().all(|(_, h)| h == Health::Alive));
    }

    #[test]
    fn a_node_that_recognises_itself_routes_here() {
        let ms = m(&["a:1", "b:1"]);
        ms.succeeded("a:1", None, true);
        let mut here = 0;
        for k in 0..1000u64 {
            let r = ms.route(stable_hash(&[&k.to_le_bytes()]), 2);
            assert_eq!(r.len(), 2);
            if r[0] == Node::Here {
                here += 1;
                assert_eq!(r[1], Node::Peer("b:1".into()));
            }
        }
        assert!((350..650).contains(&here), "{here}");
    }

    #[test]
    fn dns_answers_replace_the_members() {
        let ms = m(&[]);
        assert!(ms.route(1, 1).is_empty());
        ms.set_addresses(&["10.0.0.1:7".into(), "10.0.0.2:7".into()]);
        assert_eq!(ms.addresses().len(), 2);
        let e = ms.view().epoch;
        ms.set_addresses(&["10.0.0.2:7".into()]);
        assert_eq!(ms.view().epoch, e + 1);
        assert_eq!(ms.route(1, 3), vec![Node::Peer("10.0.0.2:7".into())]);
    }
}
