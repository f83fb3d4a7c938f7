//! Placement: which cache node owns a chunk or an object's metadata.
//!
//! Two levels: a key picks a zone, then a node of that zone.
//!
//! - **Zone**: weighted rendezvous hashing (HRW) over the zones, a zone weighing the sum of its
//!   nodes' weights. Zones are few (a lookup computes one `ln` per zone; with one zone, none).
//!   Nodes with zone `""` form a zone of their own, so a cluster without zones is one zone.
//! - **Node within the zone**: multi-probe consistent hashing (`ring.rs`). Every node puts
//!   points on the zone's 64-bit ring in proportion to its weight (4 points per weight unit;
//!   the unit is the median weight rounded to a power of two); a key throws 16 probes and the
//!   point nearest after any probe owns it. A successor is found through a bucket index, so
//!   the cost hardly grows with the cluster (only through cache misses).
//!
//! Cost per [`Placement::owner`]: one `ln` per zone (none with one zone) plus 16 hashes and
//! about 32 independent memory reads into a ring of 12 bytes per point — measured by
//! `examples/placement.rs` on the 2-core build box: about 0.1 µs at 10 and 1 000 nodes,
//! 0.25–0.3 µs at 100 000. [`Placement::ranked`] and [`Placement::spread`] with n = 3 cost
//! 3–4 owner lookups. There is no table of key slots: nothing to quantise, nothing sized by
//! the cluster.
//!
//! Movement, exactly:
//! - A node leaving moves only its own keys *within its zone*; a node joining takes keys only
//!   for itself within its zone. With one zone that is the ideal 1/n.
//! - With several zones, the zone's weight changes too, so besides the node's own keys about
//!   (1 − zone share)/n of all keys switch zone (rendezvous over zones is independent of the
//!   node level): ~1.67/n with three equal zones. `examples/placement.rs` measures both.
//! - Losing a whole zone moves only that zone's keys: no key owned by a node of a surviving
//!   zone changes owner (a zone's ring does not depend on other zones).
//! - Nothing depends on the cluster's size or on input order: growing the cluster never
//!   reshuffles, and every member computes the same placement from the same member set.
//!
//! Cost of a membership change: [`Placement::new`] generates and sorts every ring point, about
//! 40–50 ms at 100 000 nodes. [`Placement::with_changes`] derives the next placement from the
//! current one and a few joins, leaves, weight or zone changes, and is exactly what `new` over
//! the resulting nodes would build (the same rings and indexes, so the same answer to every
//! lookup; the tests compare them). It generates only the changed nodes' points and merges
//! them into the sorted rings in one linear pass, renumbering the other nodes' points as the
//! id-ordered node list shifts, and patches the bucket indexes: 2.5–3.5 ms at 100 000 nodes,
//! 0.02 ms at 1 000, measured by `examples/placement.rs`. Half of that is copying the node
//! list (two reference counts per node); dropping the placement it replaces costs another
//! 1.3–1.6 ms however either was built. A change of more than an eighth of the nodes, or one that
//! moves the weight unit, is a full `new`.
//!
//! Balance: the most loaded node carries about 1.07× the mean share (at 1 000 and 100 000
//! nodes); the least loaded about 0.35–0.6×. [`Placement::shares`] computes every node's exact
//! expected share; the example prints max/mean and min/mean.
//!
//! Hashes are our own, fixed functions (not `std`'s, whose algorithm may change between Rust
//! releases): every node of a cluster, whatever it was built with, must agree on placement.

use std::sync::Arc;

mod ring;

use ring::{Probes, Ring, POINTS_PER_UNIT};

/// A node's weight is capped at this many weight units (so one misconfigured weight cannot
/// take the whole cluster or the memory of a ring).
pub const MAX_UNITS: u32 = 64;

/// A stable 64-bit hash of a byte string (multiply-xorshift over 8-byte words, finished with
/// splitmix64). Fixed forever: placement depends on it.
pub fn stable_hash(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0x9E37_79B9_7F4A_7C15;
    for part in parts {
        h = mix(h ^ part.len() as u64);
        let mut words = part.chunks_exact(8);
        for w in &mut words {
            let mut b = [0u8; 8];
            b.copy_from_slice(w);
            h = (h ^ u64::from_le_bytes(b)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            h ^= h >> 29;
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut b = [0u8; 8];
            b[..rest.len()].copy_from_slice(rest);
            h = (h ^ u64::from_le_bytes(b)).wrapping_mul(0x94D0_49BB_1331_11EB);
            h ^= h >> 31;
        }
    }
    mix(h)
}

/// splitmix64's finaliser: a bijective mix of all 64 bits.
#[inline]
pub(crate) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The weighted rendezvous score of a (key, zone) pair: `-w / ln(u)` with `u` uniform in
/// (0, 1) from the pair's hash. Higher wins.
#[inline]
fn score(key: u64, node: u64, weight: f64) -> f64 {
    let h = mix(key ^ node);
    let u = ((h >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64);
    -weight / u.ln()
}

/// One cache node as placement sees it.
#[derive(Debug, Clone)]
pub struct Node {
    /// Stable identity (the node's peer address as members know it).
    pub id: Arc<str>,
    /// Relative capacity; keys are shared in proportion to it. Must be positive (anything else
    /// counts as 1).
    pub weight: f64,
    /// Failure domain (availability zone, rack). `""` means none; nodes without a zone form
    /// one zone together.
    pub zone: Arc<str>,
}

#[derive(Debug, Clone, PartialEq)]
struct Zone {
    name: Arc<str>,
    hash: u64,
    /// The zone's weight: the sum of its nodes' points.
    points: u64,
    ring: Ring,
}

impl Zone {
    fn new(name: Arc<str>, ring: Ring) -> Self {
        Self {
            hash: stable_hash(&[b"zone", name.as_bytes()]),
            points: ring.len() as u64,
            ring,
            name,
        }
    }
}

/// An immutable placement over one membership view, rebuilt when the view changes (see
/// [`Placement::new`] and, cheaper, [`Placement::with_changes`] for the cost;
/// [`Placement::heap_bytes`] for the memory, about 14 MiB at 100 000 nodes of which the node
/// records are 6).
#[derive(Debug, Clone, Default)]
pub struct Placement {
    /// In id order; lookups return indexes into it.
    nodes: Vec<Node>,
    /// `points[i]`: node `i`'s ring points (its weight in units).
    points: Vec<u32>,
    /// In name order.
    zones: Vec<Zone>,
    /// The weight unit (see [`Placement::new`]).
    unit: f64,
    /// Every distinct node weight, ascending, with how many nodes have it: the median weight
    /// (so the unit) of a changed membership without sorting every weight again.
    weights: Vec<(f64, u32)>,
}

impl Placement {
    /// Placement over `nodes` (duplicates by id are kept once — the one with the smallest
    /// zone, then weight, whatever the input order; non-positive or non-finite weights count
    /// as 1).
    ///
    /// Weights are quantised to quarter units: the unit is the median weight rounded to a
    /// power of two (so it rarely changes as members come and go), and a node gets
    /// `round(4 · weight / unit)` ring points, at least 1 and at most `4 ·` [`MAX_UNITS`].
    ///
    /// O(n log n) in the ring points: about 40–50 ms at 100 000 nodes (the example prints it).
    /// For a change of a few nodes, [`Placement::with_changes`] builds the same thing in a
    /// few milliseconds.
    pub fn new(mut nodes: Vec<Node>) -> Self {
        for n in &mut nodes {
            sanitise(n);
        }
        nodes.sort_by(by_id);
        nodes.dedup_by(|later, first| later.id == first.id);
        if nodes.is_empty() {
            return Self::default();
        }

        let weights = weight_counts(&nodes);
        let unit = weight_unit(&weights, nodes.len());
        let mut names: Vec<Arc<str>> = nodes.iter().map(|n| Arc::clone(&n.zone)).collect();
        names.sort();
        names.dedup();
        let mut points = Vec::with_capacity(nodes.len());
        let mut ring_points: Vec<Vec<(u64, u32)>> = vec![Vec::new(); names.len()];
        for (i, n) in nodes.iter_mut().enumerate() {
            let z = names.binary_search(&n.zone).unwrap_or_default();
            // Share one allocation per zone name.
            n.zone = Arc::clone(&names[z]);
            let p = point_count(n.weight, unit);
            ring_points[z].extend(positions(&n.id, p).map(|at| (at, i as u32)));
            points.push(p);
        }
        let zones = names
            .into_iter()
            .zip(ring_points)
            .map(|(name, pts)| Zone::new(name, Ring::new(pts)))
            .collect();
        Self {
            nodes,
            points,
            zones,
            unit,
            weights,
        }
    }

    /// The placement with a change applied: `remove`'s ids gone, then `add`'s nodes in
    /// (a node whose id is already here replaces it: a new weight or zone). Ids not here are
    /// ignored; `add` is taken as [`Placement::new`] takes its input (duplicates by id kept
    /// once, odd weights counting as 1).
    ///
    /// Always exactly [`Placement::new`] over the resulting node set — the same rings, the
    /// same answers to every lookup — but for a change of a few nodes over 15 times
    /// cheaper: only the changed nodes' ring points are generated, then merged into the
    /// already sorted rings in one pass (no sort), renumbering the other nodes' points, and
    /// the bucket indexes are patched. O(n) copying: 2.5–3.5 ms at 100 000 nodes against
    /// 40–50 for `new` (the example prints both). A change that moves the weight unit (the
    /// median weight crossing a power-of-two boundary), or of more than an eighth of the
    /// nodes, is built with `new`.
    pub fn with_changes(&self, add: &[Node], remove: &[&str]) -> Placement {
        match self.plan(add, remove) {
            Plan::Same => self.clone(),
            Plan::Rebuild(nodes) => Self::new(nodes),
            Plan::Patch { gone, add, weights } => self.patched(&gone, add, weights),
        }
    }

    /// How [`Placement::with_changes`] goes about a change.
    fn plan(&self, add: &[Node], remove: &[&str]) -> Plan {
        let mut add = add.to_vec();
        for n in &mut add {
            sanitise(n);
        }
        add.sort_by(by_id);
        add.dedup_by(|later, first| later.id == first.id);
        let find = |id: &str| self.nodes.binary_search_by(|n| (*n.id).cmp(id)).ok();
        // Old indexes of the nodes that go: removed, or replaced by an add. An add identical
        // to the node it replaces changes nothing (even if its id is also removed).
        let mut gone: Vec<usize> = remove.iter().filter_map(|id| find(id)).collect();
        let mut same = Vec::new();
        add.retain(|n| match find(&n.id) {
            Some(i) if self.nodes[i].zone == n.zone && self.nodes[i].weight == n.weight => {
                same.push(i);
                false
            }
            Some(i) => {
                gone.push(i);
                true
            }
            None => true,
        });
        gone.sort_unstable();
        gone.dedup();
        same.sort_unstable();
        gone.retain(|i| same.binary_search(i).is_err());
        if gone.is_empty() && add.is_empty() {
            return Plan::Same;
        }
        let len = self.nodes.len() - gone.len() + add.len();
        if len == 0 || (gone.len() + add.len()) * 8 > self.nodes.len() {
            return Plan::Rebuild(self.survivors(&gone, add));
        }
        let weights = self.weights_after(&gone, &add);
        if weight_unit(&weights, len) != self.unit {
            return Plan::Rebuild(self.survivors(&gone, add));
        }
        Plan::Patch { gone, add, weights }
    }

    /// The nodes but `gone` (old indexes, ascending), then `add`: the input of the `new` that
    /// [`Placement::with_changes`] must equal.
    fn survivors(&self, gone: &[usize], add: Vec<Node>) -> Vec<Node> {
        let mut all = Vec::with_capacity(self.nodes.len() - gone.len() + add.len());
        let mut g = gone.iter().peekable();
        for (i, n) in self.nodes.iter().enumerate() {
            if g.next_if_eq(&&i).is_none() {
                all.push(n.clone());
            }
        }
        all.extend(add);
        all
    }

    /// The weight counts with the nodes at `gone` taken out and `add` put in: one merge.
    fn weights_after(&self, gone: &[usize], add: &[Node]) -> Vec<(f64, u32)> {
        let mut delta: Vec<(f64, i64)> = gone
            .iter()
            .map(|&i| (self.nodes[i].weight, -1))
            .chain(add.iter().map(|n| (n.weight, 1)))
            .collect();
        delta.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut out: Vec<(f64, u32)> = Vec::with_capacity(self.weights.len() + add.len());
        // Adds a count to the last weight if it is `w`, else a new weight.
        let put = |out: &mut Vec<(f64, u32)>, w: f64, c: i64| match out.last_mut() {
            Some((x, n)) if x.total_cmp(&w).is_eq() => *n = (i64::from(*n) + c) as u32,
            _ => out.push((w, c as u32)),
        };
        let mut d = delta.into_iter().peekable();
        for &(w, c) in &self.weights {
            // Weights no node had (a gone node's weight is always counted).
            while let Some((x, c)) = d.next_if(|(x, _)| x.total_cmp(&w).is_lt()) {
                put(&mut out, x, c);
            }
            let mut c = i64::from(c);
            while let Some((_, e)) = d.next_if(|(x, _)| x.total_cmp(&w).is_eq()) {
                c += e;
            }
            if c > 0 {
                put(&mut out, w, c);
            }
        }
        for (x, c) in d {
            put(&mut out, x, c);
        }
        out.shrink_to_fit();
        out
    }

    /// [`Placement::with_changes`] without a change of unit: `gone` (old indexes, ascending,
    /// at least one node left) out, `add` (sorted by id, no id of a remaining node) in.
    fn patched(&self, gone: &[usize], mut add: Vec<Node>, weights: Vec<(f64, u32)>) -> Self {
        let len = self.nodes.len() - gone.len() + add.len();
        // Where each add goes among the old nodes.
        let slot: Vec<usize> = add
            .iter()
            .map(|a| self.nodes.partition_point(|n| n.id < a.id))
            .collect();
        // Zone names after the change, each add sharing its zone's name.
        let mut names: Vec<Arc<str>> = self.zones.iter().map(|z| Arc::clone(&z.name)).collect();
        for a in &mut add {
            match names.binary_search(&a.zone) {
                Ok(z) => a.zone = Arc::clone(&names[z]),
                Err(z) => names.insert(z, Arc::clone(&a.zone)),
            }
        }

        // The new node list in id order, and each old node's new index (`u32::MAX`: gone),
        // copied run by run between the adds and the gone.
        let mut nodes = Vec::with_capacity(len);
        let mut points = Vec::with_capacity(len);
        let mut remap: Vec<u32> = Vec::with_capacity(self.nodes.len());
        let mut added_at = Vec::with_capacity(add.len());
        let mut adds = add.into_iter().zip(slot).peekable();
        let mut left = gone.iter().copied().peekable();
        let mut i = 0;
        loop {
            let next_add = adds.peek().map(|&(_, s)| s);
            let next_gone = left.peek().copied();
            let end = next_add
                .into_iter()
                .chain(next_gone)
                .min()
                .unwrap_or(self.nodes.len());
            // Old node j becomes node j + shift in this run (negative once nodes have gone:
            // computed signed, where it wrapped before and overflowed in debug builds).
            let shift = nodes.len() as i64 - i as i64;
            remap.extend((i..end).map(|j| (j as i64 + shift) as u32));
            nodes.extend_from_slice(&self.nodes[i..end]);
            points.extend_from_slice(&self.points[i..end]);
            i = end;
            if let Some((n, _)) = adds.next_if(|&(_, s)| s == i) {
                added_at.push(nodes.len() as u32);
                points.push(point_count(n.weight, self.unit));
                nodes.push(n);
            } else if left.next_if_eq(&i).is_some() {
                remap.push(u32::MAX);
                i += 1;
            } else {
                break;
            }
        }
        debug_assert_eq!((nodes.len(), remap.len()), (len, self.nodes.len()));

        let mut zones = names
            .into_iter()
            .filter_map(|name| {
                let mut added: Vec<(u64, u32)> = added_at
                    .iter()
                    .filter(|&&i| nodes[i as usize].zone == name)
                    .flat_map(|&i| {
                        positions(&nodes[i as usize].id, points[i as usize]).map(move |at| (at, i))
                    })
                    .collect();
                added.sort_unstable();
                let ring = match self.zones.binary_search_by(|z| z.name.cmp(&name)) {
                    Ok(z) => {
                        let ring = &self.zones[z].ring;
                        let mut dropped: Vec<usize> = gone
                            .iter()
                            .filter(|&&i| self.nodes[i].zone == name)
                            .flat_map(|&i| {
                                positions(&self.nodes[i].id, self.points[i]).map(move |at| {
                                    ring.find(at, i as u32)
                                        .expect("a node's points are on its zone's ring")
                                })
                            })
                            .collect();
                        dropped.sort_unstable();
                        ring.patched(&dropped, &added, &remap)?
                    }
                    Err(_) => Ring::new(added),
                };
                Some(Zone::new(name, ring))
            })
            .collect::<Vec<_>>();
        // As `new`'s, whose zones are never dropped.
        zones.shrink_to_fit();
        Self {
            nodes,
            points,
            zones,
            unit: self.unit,
            weights,
        }
    }

    /// The nodes, in id order (indexes returned by lookups point here).
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// How many nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there are no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Node `i`'s zone (`""` for none). Panics if `i` is out of range.
    pub fn zone(&self, i: usize) -> &str {
        &self.nodes[i].zone
    }

    /// How many zones (nodes without a zone count as one).
    pub fn zone_count(&self) -> usize {
        self.zones.len()
    }

    /// The owner of `key` (a [`stable_hash`]), or `None` with no nodes.
    pub fn owner(&self, key: u64) -> Option<usize> {
        let z = self.best_zone(key, None)?;
        Some(self.zones[z].ring.best(key))
    }

    /// Up to `n` distinct nodes for `key` in failover order: the owner, then the node that
    /// would own `key` if the owner left, then the one that would if both left, and so on.
    /// `ranked(key, 2)[1]` is exactly `owner(key)` of the placement without the owner (as long
    /// as the weight unit stays the same). Costs about one owner lookup per node returned.
    pub fn ranked(&self, key: u64, n: usize) -> Vec<usize> {
        self.failover(key).take(n).collect()
    }

    /// Up to `n` distinct nodes to hold replicas of a hot `key`, one per zone first: the
    /// owner, then the node each other zone would pick for `key` (zones in their score order
    /// for `key`, so `spread(key, 2)[1]` is the owner if the owner's zone were lost), then,
    /// past the number of zones, further nodes in [`Placement::ranked`]'s failover order.
    pub fn spread(&self, key: u64, n: usize) -> Vec<usize> {
        if self.zones.len() <= 1 {
            // One zone: the failover order is the whole answer.
            return self.ranked(key, n);
        }
        let mut out = Vec::with_capacity(n.min(self.nodes.len()));
        let mut order: Vec<(f64, usize)> = (0..self.zones.len())
            .map(|z| (self.zone_score(key, z, 0), z))
            .collect();
        // Descending score; equal scores (never seen) fall back to the zone's name order.
        order.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        for &(_, z) in order.iter().take(n) {
            out.push(self.zones[z].ring.best(key));
        }
        if out.len() < n {
            for i in self.failover(key) {
                if !out.contains(&i) {
                    out.push(i);
                    if out.len() == n {
                        break;
                    }
                }
            }
        }
        out
    }

    /// Every node's expected share of keys (summing to 1), for keys hashed uniformly: exact
    /// for this placement's rings and zone weights, not sampled. O(n log n).
    pub fn shares(&self) -> Vec<f64> {
        let mut out = vec![0.0; self.nodes.len()];
        let total: u64 = self.zones.iter().map(|z| z.points).sum();
        for z in &self.zones {
            z.ring.shares(&mut out, z.points as f64 / total as f64);
        }
        out
    }

    /// An estimate of the heap memory this placement holds (node records with their ids,
    /// zone names, rings and indexes), in bytes.
    pub fn heap_bytes(&self) -> usize {
        // An `Arc<str>` allocation: two reference counts and the bytes.
        let arc = |s: &str| 16 + s.len();
        self.nodes.capacity() * std::mem::size_of::<Node>()
            + self.nodes.iter().map(|n| arc(&n.id)).sum::<usize>()
            + self.points.capacity() * 4
            + self.weights.capacity() * std::mem::size_of::<(f64, u32)>()
            + self.zones.capacity() * std::mem::size_of::<Zone>()
            + self
                .zones
                .iter()
                .map(|z| arc(&z.name) + z.ring.heap_bytes())
                .sum::<usize>()
    }

    /// Zone `z`'s rendezvous score for `key`, its weight reduced by `removed` points (of
    /// nodes already taken in a failover walk); `-inf` if nothing is left.
    #[inline]
    fn zone_score(&self, key: u64, z: usize, removed: u64) -> f64 {
        let zone = &self.zones[z];
        let w = zone.points - removed;
        if w == 0 {
            f64::NEG_INFINITY
        } else {
            score(key, zone.hash, w as f64)
        }
    }

    /// The zone `key` goes to, with each zone's weight reduced by `removed[z]` points; `None`
    /// if no zone has weight left.
    #[inline]
    fn best_zone(&self, key: u64, removed: Option<&[u64]>) -> Option<usize> {
        if self.zones.len() == 1 {
            // One zone: no `ln`.
            let left = self.zones[0].points - removed.map_or(0, |r| r[0]);
            return (left > 0).then_some(0);
        }
        let mut best = None;
        let mut top = f64::NEG_INFINITY;
        for z in 0..self.zones.len() {
            let s = self.zone_score(key, z, removed.map_or(0, |r| r[z]));
            if s > top {
                top = s;
                best = Some(z);
            }
        }
        best
    }

    fn failover(&self, key: u64) -> Failover<'_> {
        Failover {
            p: self,
            key,
            taken: Vec::new(),
            removed: vec![0; self.zones.len()],
            probes: Vec::new(),
        }
    }
}

/// How [`Placement::with_changes`] goes about a change.
#[derive(Debug)]
enum Plan {
    /// Nothing changes.
    Same,
    /// A large change, or one that moves the weight unit: `Placement::new` over these nodes.
    Rebuild(Vec<Node>),
    /// [`Placement::patched`] with these arguments.
    Patch {
        /// Old indexes of the nodes that go, ascending.
        gone: Vec<usize>,
        /// The nodes that come, by id, none with the id of a remaining node.
        add: Vec<Node>,
        /// The weight counts after the change.
        weights: Vec<(f64, u32)>,
    },
}

/// The failover walk of one key: each step is the owner in the placement without the nodes
/// already returned.
struct Failover<'a> {
    p: &'a Placement,
    key: u64,
    taken: Vec<usize>,
    /// Points taken out of each zone so far.
    removed: Vec<u64>,
    /// The key's probes on each zone's ring visited so far.
    probes: Vec<(usize, Probes)>,
}

impl Iterator for Failover<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        let z = self.p.best_zone(self.key, Some(&self.removed))?;
        let ring = &self.p.zones[z].ring;
        let at = match self.probes.iter().position(|(pz, _)| *pz == z) {
            Some(at) => at,
            None => {
                self.probes.push((z, ring.probes(self.key)));
                self.probes.len() - 1
            }
        };
        let i = ring.next_best(&mut self.probes[at].1, &self.taken)?;
        self.taken.push(i);
        self.removed[z] += u64::from(self.p.points[i]);
        Some(i)
    }
}

/// Non-positive or non-finite weights count as 1.
fn sanitise(n: &mut Node) {
    if !(n.weight.is_finite() && n.weight > 0.0) {
        n.weight = 1.0;
    }
}

/// The order of [`Placement::new`]'s node list: by id, then (for duplicates, of which the
/// first is kept) by zone and weight.
fn by_id(a: &Node, b: &Node) -> std::cmp::Ordering {
    (&a.id, &a.zone)
        .cmp(&(&b.id, &b.zone))
        .then(a.weight.total_cmp(&b.weight))
}

/// Ring points for a node of weight `weight`: `round(4 · weight / unit)`, at least 1 and at
/// most `4 ·` [`MAX_UNITS`].
fn point_count(weight: f64, unit: f64) -> u32 {
    let units = (weight / unit * f64::from(POINTS_PER_UNIT)).round();
    units.clamp(1.0, f64::from(MAX_UNITS * POINTS_PER_UNIT)) as u32
}

/// The ring positions of node `id`'s `p` points.
fn positions(id: &str, p: u32) -> impl Iterator<Item = u64> {
    let h = stable_hash(&[b"node", id.as_bytes()]);
    (0..u64::from(p)).map(move |j| mix(h.wrapping_add(j.wrapping_mul(0x9E37_79B9_7F4A_7C15))))
}

/// The distinct weights of `nodes`, ascending, with how many nodes have each.
fn weight_counts(nodes: &[Node]) -> Vec<(f64, u32)> {
    let mut w: Vec<f64> = nodes.iter().map(|n| n.weight).collect();
    w.sort_by(f64::total_cmp);
    let mut out: Vec<(f64, u32)> = Vec::new();
    for x in w {
        match out.last_mut() {
            Some((y, c)) if y.total_cmp(&x).is_eq() => *c += 1,
            _ => out.push((x, 1)),
        }
    }
    out.shrink_to_fit();
    out
}

/// The weight that counts as one unit: the median weight (of `len` nodes, counted in
/// `weights`) rounded to a power of two, so that it stays put as nodes come and go (and the
/// ring points of everyone else with it).
fn weight_unit(weights: &[(f64, u32)], len: usize) -> f64 {
    // The weight at index len / 2 of all weights sorted.
    let mut below = 0usize;
    let mut median = 1.0;
    for &(w, c) in weights {
        below += c as usize;
        if below > len / 2 {
            median = w;
            break;
        }
    }
    2f64.powi(median.log2().round() as i32)
}

#[cfg(test)]
mod tests;
