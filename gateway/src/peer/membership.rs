//! Membership: which cache nodes exist, which are alive, and the placement over them.
//!
//! Members come from a static list, from DNS (re-resolved), from etcd (nodes register under a
//! lease; see [`super::etcd`]) or from a Kubernetes EndpointSlice watch ([`super::kube`]).
//! A failed probe (`GET /v1/health`, signed) or request makes a node *suspect*: routing skips
//! it at once (it moves to the end of every route) but it stays placed, so one front's blip
//! moves no keys. [`DEAD_AFTER`] consecutive failed probes make it *dead*, and one good probe
//! brings it back. Only dead nodes (and nodes that leave the registry) leave the placement;
//! each change of the placed set bumps the view's epoch and rebuilds the placement.
//!
//! Who is probed: with a static list or DNS (small clusters) every member, each interval; with
//! a registry (etcd, Kubernetes) liveness comes from the registry (lease expiry, readiness),
//! and each process probes at most [`PROBES_PER_ROUND`] members per interval — the suspect and
//! dead first, then the others in turn — so probe traffic per node stays bounded however large
//! the cluster. A node recognises itself by the random instance id its registration or its own
//! health answer carries. Each member has a zone (from the registry or its health answer);
//! placement puts hot-chunk replicas in distinct zones and a front reads a replica in its own
//! zone when there is one.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use cistern_cache::placement::{stable_hash, Node as PlacementNode, Placement};

use crate::metrics::Metrics;
use crate::pipeline::peers::Node;

/// Consecutive failures after which a node is dead.
pub const DEAD_AFTER: u32 = 2;

/// Probes per interval when a registry (etcd, Kubernetes) lists the members.
pub const PROBES_PER_ROUND: usize = 4;

/// A member as a registry lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct Listed {
    /// Peer address.
    pub addr: String,
    /// Zone ("" when unknown).
    pub zone: String,
    /// Relative capacity, when the registry says.
    pub weight: Option<f64>,
    /// Whether this is this process.
    pub here: bool,
}

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

/// A member's health between views: shared by every view that holds the member, so marking a
/// node suspect (a failed request) or clearing it is one atomic store, not a new view.
#[derive(Debug, Default)]
struct Flags {
    suspect: AtomicBool,
    /// Consecutive failed probes.
    fails: AtomicU32,
}

#[derive(Debug, Clone)]
struct Member {
    /// Failed [`DEAD_AFTER`] probes in a row: not placed.
    dead: bool,
    weight: f64,
    zone: Arc<str>,
    here: bool,
    flags: Arc<Flags>,
}

impl Member {
    fn new(zone: &str) -> Self {
        Self {
            dead: false,
            weight: 1.0,
            zone: Arc::from(zone),
            here: false,
            flags: Arc::default(),
        }
    }

    fn health(&self) -> Health {
        if self.dead {
            Health::Dead
        } else if self.flags.suspect.load(Ordering::Relaxed) {
            Health::Suspect
        } else {
            Health::Alive
        }
    }

    fn placement_node(id: &Arc<str>, m: &Member) -> PlacementNode {
        PlacementNode {
            id: Arc::clone(id),
            weight: m.weight,
            zone: Arc::clone(&m.zone),
        }
    }
}

/// One membership view: the placements and routing tables of one epoch, immutable (but for
/// members' health flags), replaced whole when the placed set changes. The members themselves
/// live beside it ([`Membership`]), changed in place: a new view costs its placements' changes
/// and two routing tables, not a copy of every member.
#[derive(Debug, Default)]
pub struct View {
    /// Bumped whenever the set of placed nodes (or their weights, zones) changes.
    pub epoch: u64,
    placement: Arc<Placement>,
    /// Per placement index: this process.
    here: Vec<bool>,
    /// Per placement index: the member's health flags (suspects are routed last).
    flags: Vec<Arc<Flags>>,
    /// Placement over every member, dead or alive: where a key's owners are by everyone's
    /// reckoning, for invalidations (a node this process thinks dead may still serve others).
    /// The same placement as `placement` while no member is dead.
    everyone: Arc<Placement>,
}

/// What changed for the `touched` members, as placement changes against `before` (the
/// previous view's placement over the same kind of members): the nodes to add (new, or with a
/// new weight or zone) and the ids to remove, over the members `counted` keeps.
fn diff<'a>(
    before: &Placement,
    after: &BTreeMap<Arc<str>, Member>,
    touched: &'a [Arc<str>],
    counted: impl Fn(&Member) -> bool,
) -> (Vec<PlacementNode>, Vec<&'a str>) {
    let mut add = Vec::new();
    let mut remove = Vec::new();
    for id in touched {
        let nodes = before.nodes();
        let was = nodes
            .binary_search_by(|n| (*n.id).cmp(&**id))
            .ok()
            .map(|i| &nodes[i]);
        match after.get(id).filter(|m| counted(m)) {
            Some(m) if was.is_none_or(|b| b.weight != m.weight || b.zone != m.zone) => {
                add.push(Member::placement_node(id, m));
            }
            Some(_) => {}
            None if was.is_some() => remove.push(&**id),
            None => {}
        }
    }
    (add, remove)
}

/// Removes the members not in `keep`, returning their ids.
fn remove_unlisted(
    members: &mut BTreeMap<Arc<str>, Member>,
    keep: &HashSet<&str>,
) -> Vec<Arc<str>> {
    let gone: Vec<Arc<str>> = members
        .keys()
        .filter(|k| !keep.contains(&***k))
        .cloned()
        .collect();
    for g in &gone {
        members.remove(g);
    }
    gone
}

/// A member and its id, to change.
fn entry_mut<'a>(
    members: &'a mut BTreeMap<Arc<str>, Member>,
    addr: &str,
) -> Option<(Arc<str>, &'a mut Member)> {
    let id = Arc::clone(members.get_key_value(addr)?.0);
    Some((id, members.get_mut(addr)?))
}

/// Adds or updates a listed member, noting it in `touched` when anything changed.
fn upsert(members: &mut BTreeMap<Arc<str>, Member>, l: &Listed, touched: &mut Vec<Arc<str>>) {
    let weight = l.weight.filter(|w| w.is_finite() && *w > 0.0);
    match entry_mut(members, l.addr.as_str()) {
        Some((id, m)) => {
            let mut changed = false;
            if *m.zone != *l.zone {
                m.zone = Arc::from(l.zone.as_str());
                changed = true;
            }
            if let Some(w) = weight.filter(|w| *w != m.weight) {
                m.weight = w;
                changed = true;
            }
            if m.here != l.here {
                m.here = l.here;
                changed = true;
            }
            if changed {
                touched.push(id);
            }
        }
        None => {
            let id: Arc<str> = Arc::from(l.addr.as_str());
            let mut m = Member::new(&l.zone);
            m.here = l.here;
            if let Some(w) = weight {
                m.weight = w;
            }
            members.insert(Arc::clone(&id), m);
            touched.push(id);
        }
    }
}

impl View {
    /// The view over `members`; with `before`, its placements are changed rather than built
    /// anew (a join or leave at 100 000 nodes: milliseconds instead of tens).
    fn build(
        epoch: u64,
        members: &BTreeMap<Arc<str>, Member>,
        before: Option<(&View, &[Arc<str>])>,
    ) -> Self {
        let live = |m: &Member| !m.dead;
        let any_dead = members.values().any(|m| m.dead);
        let placement = Arc::new(match before {
            Some((b, touched)) => {
                let (add, remove) = diff(&b.placement, members, touched, live);
                b.placement.with_changes(&add, &remove)
            }
            None => Placement::new(
                members
                    .iter()
                    .filter(|(_, m)| live(m))
                    .map(|(id, m)| Member::placement_node(id, m))
                    .collect(),
            ),
        });
        // The placement's nodes are the live members in id order, as the map iterates them:
        // one walk, not a lookup per node.
        let live_members: Vec<&Member> = members.values().filter(|m| live(m)).collect();
        let aligned = live_members.len() == placement.len()
            && members
                .iter()
                .filter(|(_, m)| live(m))
                .zip(placement.nodes())
                .all(|((id, _), n)| *id == n.id);
        let (here, flags) = if aligned {
            live_members
                .iter()
                .map(|m| (m.here, Arc::clone(&m.flags)))
                .unzip()
        } else {
            placement
                .nodes()
                .iter()
                .map(|n| {
                    members
                        .get(&n.id)
                        .map_or((false, Arc::default()), |m| (m.here, Arc::clone(&m.flags)))
                })
                .unzip()
        };
        debug_assert!(aligned, "placement nodes out of the members' order");
        let everyone = match (any_dead, before) {
            (false, _) => Arc::clone(&placement),
            (true, Some((b, touched))) => {
                let (add, remove) = diff(&b.everyone, members, touched, |_| true);
                Arc::new(b.everyone.with_changes(&add, &remove))
            }
            (true, None) => Arc::new(Placement::new(
                members
                    .iter()
                    .map(|(id, m)| Member::placement_node(id, m))
                    .collect(),
            )),
        };
        Self {
            epoch,
            placement,
            here,
            flags,
            everyone,
        }
    }

    fn suspect(&self, i: usize) -> bool {
        self.flags[i].suspect.load(Ordering::Relaxed)
    }

    /// Placed node `i` as a route.
    fn node(&self, i: usize) -> Node {
        if self.here[i] {
            Node::Here
        } else {
            Node::Peer(Arc::clone(&self.placement.nodes()[i].id))
        }
    }

    /// Placed nodes `idx` as routes, the suspect ones moved last (kept in order otherwise).
    fn routes(&self, idx: Vec<usize>) -> Vec<Node> {
        let (ok, late): (Vec<usize>, Vec<usize>) = idx.into_iter().partition(|&i| !self.suspect(i));
        ok.into_iter().chain(late).map(|i| self.node(i)).collect()
    }

    /// The bytes this view holds (placements and routing tables), roughly.
    pub fn heap_bytes(&self) -> usize {
        let everyone = if Arc::ptr_eq(&self.placement, &self.everyone) {
            0
        } else {
            self.everyone.heap_bytes()
        };
        self.placement.heap_bytes()
            + everyone
            + self.here.len() * (1 + std::mem::size_of::<usize>())
    }
}

/// The membership of the cache cluster as this process sees it.
pub struct Membership {
    /// The members by address, changed in place (under this lock, then a new view).
    members: Mutex<BTreeMap<Arc<str>, Member>>,
    view: RwLock<Arc<View>>,
    /// This process's zone.
    zone: Arc<str>,
    /// Where the next bounded probe round starts.
    probe_turn: AtomicUsize,
    metrics: Metrics,
    /// Whether this is this cluster's membership (published as metrics), not another region's.
    published: bool,
}

impl Membership {
    /// Starts with `addrs`, all presumed alive (so a cluster starting together places at once),
    /// for a process in `zone` ("" when unknown).
    pub fn new(addrs: &[String], zone: &str, metrics: Metrics) -> Self {
        let members: BTreeMap<Arc<str>, Member> = addrs
            .iter()
            .map(|a| (Arc::from(a.as_str()), Member::new("")))
            .collect();
        let m = Self {
            view: RwLock::new(Arc::new(View::build(1, &members, None))),
            members: Mutex::new(members),
            zone: Arc::from(zone),
            probe_turn: AtomicUsize::new(0),
            metrics,
            published: true,
        };
        m.publish(&m.lock(), 1);
        m
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<Arc<str>, Member>> {
        self.members.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Members and their health, by address.
    pub fn members(&self) -> Vec<(Arc<str>, Health)> {
        self.lock()
            .iter()
            .map(|(a, m)| (Arc::clone(a), m.health()))
            .collect()
    }

    /// How many members.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether there are no members.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// The bytes the members and the current view hold, roughly.
    pub fn heap_bytes(&self) -> usize {
        // A B-tree entry (key, value, share of a node), the flags, the address.
        let member = std::mem::size_of::<(Arc<str>, Member)>() * 3 / 2 + 48 + 24;
        self.len() * member + self.view().heap_bytes()
    }

    /// Another region's cluster, `addrs` (its cache nodes): placed and probed like ours, but
    /// not published as this cluster's membership metrics.
    pub fn of_region(addrs: &[String], metrics: Metrics) -> Self {
        Self {
            published: false,
            ..Self::new(addrs, "", metrics)
        }
    }

    /// The current view.
    pub fn view(&self) -> Arc<View> {
        Arc::clone(&self.view.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Up to `n` placed nodes for `hash`, owner first, then the nodes that take over from it;
    /// suspects last.
    pub fn route(&self, hash: u64, n: usize) -> Vec<Node> {
        let v = self.view();
        v.routes(v.placement.ranked(hash, n))
    }

    /// Up to `n` placed nodes to hold a hot chunk: the owner first, then one per other zone
    /// (distinct zones first), suspects last; each with whether it is near (in this process's
    /// zone, and not suspect).
    pub fn spread(&self, hash: u64, n: usize) -> Vec<(Node, bool)> {
        let v = self.view();
        let (ok, late): (Vec<usize>, Vec<usize>) = v
            .placement
            .spread(hash, n)
            .into_iter()
            .partition(|&i| !v.suspect(i));
        let near = |i: usize| !v.suspect(i) && *v.placement.nodes()[i].zone == *self.zone;
        ok.into_iter()
            .chain(late)
            .map(|i| (v.node(i), near(i)))
            .collect()
    }

    /// Every placed node (alive or suspect), in placement order.
    pub fn placed(&self) -> Vec<Node> {
        let v = self.view();
        (0..v.placement.nodes().len()).map(|i| v.node(i)).collect()
    }

    /// This process's zone ("" when unknown).
    pub fn zone(&self) -> &str {
        &self.zone
    }

    /// Up to `n` members for `hash` by the placement over every member (dead ones included),
    /// owner first.
    pub fn owners(&self, hash: u64, n: usize) -> Vec<Node> {
        let v = self.view();
        let members = self.lock();
        v.everyone
            .ranked(hash, n)
            .into_iter()
            .map(|i| {
                let id = &v.everyone.nodes()[i].id;
                if members.get(id).is_some_and(|m| m.here) {
                    Node::Here
                } else {
                    Node::Peer(Arc::clone(id))
                }
            })
            .collect()
    }

    /// A request to `addr` failed: it is suspect — routed last at once, still placed. Only
    /// probes mark a node dead, so one front's network blip does not move its keys while the
    /// others still place them there. One atomic store: no new view.
    pub fn suspect(&self, addr: &str) {
        let members = self.lock();
        if let Some(m) = members.get(addr).filter(|m| !m.dead) {
            if !m.flags.suspect.swap(true, Ordering::Relaxed) {
                tracing::warn!(peer = addr, "cache node suspect after a failed request");
                self.moved_health(Health::Alive, Health::Suspect);
            }
        }
    }

    /// Moves one member between health gauges (a flag flipped without a new view).
    fn moved_health(&self, from: Health, to: Health) {
        if self.published {
            let g = &self.metrics.cluster_members;
            g.with_label_values(&[from.as_str()]).dec();
            g.with_label_values(&[to.as_str()]).inc();
        }
    }

    /// Whether `addr` is a member (placed or not).
    pub fn contains(&self, addr: &str) -> bool {
        self.lock().contains_key(addr)
    }

    /// Every member's address (to probe).
    pub fn addresses(&self) -> Vec<Arc<str>> {
        self.lock().keys().cloned().collect()
    }

    /// At most `max` members to probe this round: the suspect and dead first (to clear or
    /// confirm them), then the others in turn, so every member is probed now and then.
    pub fn probe_targets(&self, max: usize) -> Vec<Arc<str>> {
        let members = self.lock();
        let mut out: Vec<Arc<str>> = members
            .iter()
            .filter(|(_, m)| m.health() != Health::Alive)
            .map(|(a, _)| Arc::clone(a))
            .take(max)
            .collect();
        let n = members.len();
        if out.len() < max && n > 0 {
            let start = self
                .probe_turn
                .fetch_add(max - out.len(), Ordering::Relaxed);
            for (a, m) in members.iter().cycle().skip(start % n).take(n) {
                if out.len() == max {
                    break;
                }
                if m.health() == Health::Alive && !m.here {
                    out.push(Arc::clone(a));
                }
            }
        }
        out
    }

    /// A probe or request to `addr` succeeded; `here` when it answered with our instance id;
    /// `zone` when its answer named one. Clearing a suspect is one atomic store; a dead node
    /// coming back, or a new weight, zone or identity, is a new placement.
    pub fn succeeded(&self, addr: &str, weight: Option<f64>, zone: Option<&str>, here: bool) {
        let weight = weight.filter(|w| w.is_finite() && *w > 0.0);
        let members = self.lock();
        let Some(m) = members.get(addr) else {
            return;
        };
        let structural = m.dead
            || m.here != here
            || weight.is_some_and(|w| w != m.weight)
            || zone.is_some_and(|z| *z != *m.zone);
        m.flags.fails.store(0, Ordering::Relaxed);
        if !structural {
            if m.flags.suspect.swap(false, Ordering::Relaxed) {
                tracing::info!(peer = addr, "cache node answers again");
                self.moved_health(Health::Suspect, Health::Alive);
            }
            return;
        }
        drop(members);
        self.update(|members| {
            let Some((id, m)) = entry_mut(members, addr) else {
                return Vec::new();
            };
            if m.dead {
                tracing::info!(peer = addr, "cache node alive again");
            }
            m.dead = false;
            m.flags.suspect.store(false, Ordering::Relaxed);
            m.here = here;
            if let Some(w) = weight {
                m.weight = w;
            }
            if let Some(z) = zone {
                m.zone = Arc::from(z);
            }
            vec![id]
        });
    }

    /// A probe of `addr` failed: suspect, and after [`DEAD_AFTER`] in a row, dead (a new
    /// placement without it).
    pub fn failed(&self, addr: &str) {
        let members = self.lock();
        let Some(m) = members.get(addr).filter(|m| !m.dead) else {
            return; // unknown, or dead already: nothing changes
        };
        let fails = m
            .flags
            .fails
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        if fails < DEAD_AFTER {
            if !m.flags.suspect.swap(true, Ordering::Relaxed) {
                tracing::warn!(peer = addr, "cache node suspect after a failed probe");
                self.moved_health(Health::Alive, Health::Suspect);
            }
            return;
        }
        drop(members);
        self.update(|members| match entry_mut(members, addr) {
            Some((id, m)) if !m.dead => {
                m.dead = true;
                tracing::warn!(peer = addr, "cache node dead");
                vec![id]
            }
            _ => Vec::new(),
        });
    }

    /// Replaces the member list (a DNS answer): new addresses join alive, missing ones leave;
    /// what probes learnt of the others (zone, weight, health) stays.
    pub fn set_addresses(&self, addrs: &[String]) {
        self.update(|members| {
            let keep: HashSet<&str> = addrs.iter().map(String::as_str).collect();
            let mut touched = remove_unlisted(members, &keep);
            for a in addrs {
                if !members.contains_key(a.as_str()) {
                    let id: Arc<str> = Arc::from(a.as_str());
                    members.insert(Arc::clone(&id), Member::new(""));
                    touched.push(id);
                }
            }
            touched
        });
    }

    /// Replaces the member list with a registry's (etcd, Kubernetes): new members join alive,
    /// missing ones leave, zones, weights and `here` come from the listing. Health learnt by
    /// probes and requests stays for members still listed.
    pub fn set_listed(&self, listed: &[Listed]) {
        self.update(|members| {
            let keep: HashSet<&str> = listed.iter().map(|l| l.addr.as_str()).collect();
            let mut touched = remove_unlisted(members, &keep);
            for l in listed {
                upsert(members, l, &mut touched);
            }
            touched
        });
    }

    /// Applies a registry's changes (a watch's events): `upsert` members join or change,
    /// `remove`d ones leave. Costs what changed, not the cluster's size (but for the view's
    /// O(n) routing tables).
    pub fn change_listed(&self, upsert_: &[Listed], remove: &[&str]) {
        self.update(|members| {
            let mut touched = Vec::new();
            for r in remove {
                if let Some((id, _)) = members.remove_entry(*r) {
                    touched.push(id);
                }
            }
            for l in upsert_ {
                upsert(members, l, &mut touched);
            }
            touched
        });
    }

    /// Applies `f` to a copy of the members; when it reports members it changed, a new view
    /// with the next epoch (its placements changed for those members) replaces the current one.
    fn update(&self, f: impl FnOnce(&mut BTreeMap<Arc<str>, Member>) -> Vec<Arc<str>>) {
        let mut members = self.lock();
        let touched = f(&mut members);
        if touched.is_empty() {
            return;
        }
        let mut guard = self.view.write().unwrap_or_else(|e| e.into_inner());
        let epoch = guard.epoch + 1;
        let next = Arc::new(View::build(epoch, &members, Some((&guard, &touched))));
        let before = std::mem::replace(&mut *guard, Arc::clone(&next));
        drop(guard);
        self.publish(&members, epoch);
        drop(members);
        if self.published {
            // Measured outside the locks: routing never waits for it.
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
    }

    fn publish(&self, members: &BTreeMap<Arc<str>, Member>, epoch: u64) {
        if !self.published {
            return;
        }
        let mut n = [0i64; 3];
        for m in members.values() {
            n[m.health() as usize] += 1;
        }
        for h in [Health::Alive, Health::Suspect, Health::Dead] {
            self.metrics
                .cluster_members
                .with_label_values(&[h.as_str()])
                .set(n[h as usize]);
        }
        self.metrics.cluster_epoch.set(epoch as i64);
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
mod tests;
