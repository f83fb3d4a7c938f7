use std::collections::HashSet;

use super::ring::Ring;
use super::*;

fn nodes(n: usize) -> Vec<Node> {
    zoned(n, 1)
}

/// `n` nodes dealt round-robin over `zones` zones (`""` when one).
fn zoned(n: usize, zones: usize) -> Vec<Node> {
    (0..n)
        .map(|i| Node {
            id: Arc::from(format!("10.0.{}.{}:7070", i / 256, i % 256)),
            weight: 1.0,
            zone: if zones == 1 {
                Arc::from("")
            } else {
                Arc::from(format!("az-{}", i % zones))
            },
        })
        .collect()
}

fn key(k: u64) -> u64 {
    stable_hash(&[&k.to_le_bytes()])
}

fn owners(p: &Placement, keys: u64) -> Vec<Arc<str>> {
    (0..keys)
        .map(|k| Arc::clone(&p.nodes()[p.owner(key(k)).expect("a node")].id))
        .collect()
}

fn without(all: &[Node], gone: &str) -> Vec<Node> {
    all.iter().filter(|n| &*n.id != gone).cloned().collect()
}

#[test]
fn hash_is_fixed() {
    // Placement must never change between builds: pin the function's output.
    assert_eq!(stable_hash(&[b""]), stable_hash(&[b""]));
    assert_ne!(stable_hash(&[b"ab", b"c"]), stable_hash(&[b"a", b"bc"]));
    assert_eq!(stable_hash(&[b"cistern"]), 0xA64D_EC9C_BEF2_DA09);
}

#[test]
fn empty_and_single() {
    let p = Placement::new(vec![]);
    assert_eq!(p.owner(1), None);
    assert!(p.ranked(1, 3).is_empty());
    assert!(p.spread(1, 3).is_empty());
    assert!(p.shares().is_empty());
    let p = Placement::new(nodes(1));
    assert_eq!(p.owner(42), Some(0));
    assert_eq!(p.ranked(42, 3), vec![0]);
    assert_eq!(p.spread(42, 3), vec![0]);
    assert_eq!(p.shares(), vec![1.0]);
}

#[test]
fn spread_is_even_and_weighted() {
    let p = Placement::new(nodes(10));
    let mut count = [0usize; 10];
    for k in 0..100_000u64 {
        count[p.owner(key(k)).expect("node")] += 1;
    }
    for c in count {
        assert!((8_500..11_500).contains(&c), "{count:?}");
    }
    // One node with three times the weight takes about three shares.
    let mut ns = nodes(4);
    ns[0].weight = 3.0;
    let p = Placement::new(ns);
    let mut count = [0usize; 4];
    for k in 0..60_000u64 {
        count[p.owner(key(k)).expect("node")] += 1;
    }
    assert!((27_000..33_000).contains(&count[0]), "{count:?}");
    assert!((0.45..0.55).contains(&p.shares()[0]), "{:?}", p.shares());
}

#[test]
fn shares_are_exact() {
    // The computed shares are what keys see: sampled counts agree within sampling noise, and
    // the shares add up to one.
    for zones in [1, 3] {
        let mut ns = zoned(12, zones);
        ns[5].weight = 2.5;
        let p = Placement::new(ns);
        let shares = p.shares();
        assert!(
            (shares.iter().sum::<f64>() - 1.0).abs() < 1e-9,
            "{shares:?}"
        );
        let keys = 400_000u64;
        let mut count = vec![0usize; p.len()];
        for k in 0..keys {
            count[p.owner(key(k)).expect("node")] += 1;
        }
        for (c, s) in count.iter().zip(&shares) {
            let expect = s * keys as f64;
            // Five standard deviations of a binomial count.
            assert!(
                (*c as f64 - expect).abs() < 5.0 * expect.sqrt(),
                "{count:?} vs {shares:?}"
            );
        }
    }
}

#[test]
fn balance_over_many_nodes() {
    // No node carries much more than its share: the limit on what a cluster can hold.
    let p = Placement::new(nodes(2_000));
    let max = p.shares().into_iter().fold(0.0, f64::max);
    assert!(max * 2_000.0 < 1.15, "max/mean {}", max * 2_000.0);
}

#[test]
fn odd_weights_and_duplicates() {
    let mut ns = nodes(3);
    ns[0].weight = -1.0;
    ns[1].weight = f64::NAN;
    ns[2].weight = f64::INFINITY;
    ns.push(ns[1].clone());
    let p = Placement::new(ns);
    assert_eq!(p.len(), 3);
    for s in p.shares() {
        assert!((0.25..0.42).contains(&s), "{:?}", p.shares());
    }
    // Duplicates keep one record whatever the order they come in.
    let mut a = nodes(3);
    let mut twin = a[1].clone();
    twin.weight = 5.0;
    a.push(twin);
    let mut b = a.clone();
    b.reverse();
    let (pa, pb) = (Placement::new(a), Placement::new(b));
    assert_eq!(pa.len(), 3);
    assert_eq!(pa.nodes()[1].weight, pb.nodes()[1].weight);
}

#[test]
fn a_loss_or_a_join_moves_only_that_nodes_keys() {
    let all = nodes(50);
    let before = owners(&Placement::new(all.clone()), 50_000);
    let gone = Arc::clone(&all[17].id);
    let after = owners(&Placement::new(without(&all, &gone)), 50_000);
    for (b, a) in before.iter().zip(&after) {
        // Exactly the lost node's keys move.
        assert_eq!(b == &gone, b != a);
        assert!(*a != gone);
    }
    // The node coming back takes exactly those keys back: a join moves keys only to the
    // newcomer.
    let mut back = without(&all, &gone);
    back.push(all[17].clone());
    assert_eq!(owners(&Placement::new(back), 50_000), before);
    // Membership is a set: the same nodes in another order place identically.
    let mut shuffled = all.clone();
    shuffled.reverse();
    shuffled.swap(3, 30);
    assert_eq!(owners(&Placement::new(shuffled), 50_000), before);
}

#[test]
fn no_zone_is_one_zone() {
    // "" behaves as any single zone would: the same owners.
    let blank = Placement::new(nodes(30));
    let mut named = nodes(30);
    for n in &mut named {
        n.zone = Arc::from("az-a");
    }
    let named = Placement::new(named);
    assert_eq!(owners(&blank, 20_000), owners(&named, 20_000));
    assert_eq!(blank.zone(0), "");
    assert_eq!(named.zone(0), "az-a");
}

#[test]
fn zones_share_by_weight_and_losing_one_moves_only_its_keys() {
    // Zones of 20, 20 and 10 nodes.
    let mut all = nodes(50);
    for (i, n) in all.iter_mut().enumerate() {
        n.zone = Arc::from(["az-0", "az-1", "az-2"][(i / 20).min(2)]);
    }
    let p = Placement::new(all.clone());
    let keys = 60_000u64;
    let before = owners(&p, keys);
    let zone_of = |id: &Arc<str>| Arc::clone(&all.iter().find(|n| n.id == *id).expect("node").zone);
    for z in ["az-0", "az-1", "az-2"] {
        let weight = all.iter().filter(|n| &*n.zone == z).count() as f64 / all.len() as f64;
        let got = before.iter().filter(|o| &*zone_of(o) == z).count() as f64 / keys as f64;
        assert!((got - weight).abs() < 0.02, "{z}: {got} vs {weight}");
    }
    // Losing az-1 moves its keys and nothing else.
    let rest: Vec<Node> = all.iter().filter(|n| &*n.zone != "az-1").cloned().collect();
    let after = owners(&Placement::new(rest), keys);
    for (b, a) in before.iter().zip(&after) {
        if &*zone_of(b) == "az-1" {
            assert_ne!(b, a);
        } else {
            assert_eq!(b, a);
        }
    }
    // A single node leaving moves its keys, plus the keys its zone no longer wins at its
    // lower weight (about (1 - zone share)/n): far from everything.
    let gone = Arc::clone(&all[7].id);
    let after = owners(&Placement::new(without(&all, &gone)), keys);
    let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
    let owned = before.iter().filter(|o| **o == gone).count();
    assert!(
        moved >= owned && moved < owned * 5 / 2,
        "{moved} vs {owned}"
    );
}

#[test]
fn ranked_starts_with_the_owner_and_names_the_successor() {
    for zones in [1, 3] {
        let all = zoned(20, zones);
        let p = Placement::new(all.clone());
        for k in 0..2_000u64 {
            let r = p.ranked(key(k), 3);
            assert_eq!(r.len(), 3);
            assert_eq!(Some(r[0]), p.owner(key(k)));
            assert_eq!(r.iter().collect::<HashSet<_>>().len(), 3);
        }
        // Everyone, once each.
        let r = p.ranked(key(7), 50);
        assert_eq!(r.len(), 20);
        assert_eq!(r.iter().collect::<HashSet<_>>().len(), 20);
        // When the owner goes, the second-ranked node takes over; when both go, the third.
        for k in 0..300u64 {
            let r = p.ranked(key(k), 3);
            let q = Placement::new(without(&all, &p.nodes()[r[0]].id));
            let next = &q.nodes()[q.owner(key(k)).expect("node")].id;
            assert_eq!(*next, p.nodes()[r[1]].id, "zones {zones} key {k}");
            let q = Placement::new(without(q.nodes(), &p.nodes()[r[1]].id));
            let third = &q.nodes()[q.owner(key(k)).expect("node")].id;
            assert_eq!(*third, p.nodes()[r[2]].id, "zones {zones} key {k}");
        }
    }
}

#[test]
fn spread_covers_the_zones_first() {
    let all = zoned(21, 3);
    let p = Placement::new(all.clone());
    for k in 0..2_000u64 {
        let s = p.spread(key(k), 5);
        assert_eq!(s.len(), 5);
        assert_eq!(Some(s[0]), p.owner(key(k)));
        assert_eq!(s.iter().collect::<HashSet<_>>().len(), 5);
        let zones: HashSet<&str> = s[..3].iter().map(|&i| p.zone(i)).collect();
        assert_eq!(zones.len(), 3, "{s:?}");
        // Past the zones: failover order, skipping what is already there.
        let more: Vec<usize> = p
            .ranked(key(k), 5)
            .into_iter()
            .filter(|i| !s[..3].contains(i))
            .take(2)
            .collect();
        assert_eq!(s[3..], more[..]);
    }
    // The second is who would own the key if the owner's zone were lost.
    for k in 0..300u64 {
        let s = p.spread(key(k), 2);
        let lost = p.zone(s[0]);
        let rest: Vec<Node> = all.iter().filter(|n| &*n.zone != lost).cloned().collect();
        let q = Placement::new(rest);
        assert_eq!(
            q.nodes()[q.owner(key(k)).expect("node")].id,
            p.nodes()[s[1]].id
        );
    }
    // One zone: spread is the failover order.
    let p = Placement::new(nodes(9));
    assert_eq!(p.spread(key(1), 4), p.ranked(key(1), 4));
}

#[test]
fn same_members_same_placement_with_zones() {
    let all = zoned(40, 4);
    let mut other = all.clone();
    other.reverse();
    other.rotate_left(13);
    let (a, b) = (Placement::new(all), Placement::new(other));
    assert_eq!(owners(&a, 20_000), owners(&b, 20_000));
    for k in 0..500 {
        let id = |p: &Placement, v: Vec<usize>| -> Vec<Arc<str>> {
            v.into_iter()
                .map(|i| Arc::clone(&p.nodes()[i].id))
                .collect()
        };
        assert_eq!(id(&a, a.spread(key(k), 6)), id(&b, b.spread(key(k), 6)));
        assert_eq!(id(&a, a.ranked(key(k), 6)), id(&b, b.ranked(key(k), 6)));
    }
}

#[test]
fn heap_bytes_counts_the_rings() {
    let small = Placement::new(nodes(10));
    let big = Placement::new(nodes(1_000));
    assert!(small.heap_bytes() > 10 * std::mem::size_of::<Node>());
    assert!(
        big.heap_bytes() > 50 * small.heap_bytes(),
        "{}",
        big.heap_bytes()
    );
}

#[test]
fn placement_is_pinned() {
    // Placement must never change between builds (members built from different commits must
    // agree): pin a fingerprint of owners and failover orders, weights and zones mixed.
    let mut ns = zoned(300, 3);
    for (i, n) in ns.iter_mut().enumerate() {
        n.weight = [1.0, 1.0, 2.0, 0.5, 1.3][i % 5];
    }
    let p = Placement::new(ns);
    let mut h = 0u64;
    for k in 0..5_000u64 {
        for i in p.ranked(key(k), 3) {
            h = mix(h ^ stable_hash(&[p.nodes()[i].id.as_bytes()]));
        }
    }
    assert_eq!(h, 0x33A2_9C27_8225_90E8);
}

/// Asserts `a` and `b` are the same placement: the same node list, points, zones, rings and
/// bucket indexes, weight unit and counts (so every lookup answers the same) and memory.
#[track_caller]
fn assert_same(a: &Placement, b: &Placement) {
    assert_eq!(a.nodes.len(), b.nodes.len());
    for (x, y) in a.nodes.iter().zip(&b.nodes) {
        assert_eq!(
            (&x.id, &x.zone, x.weight.to_bits()),
            (&y.id, &y.zone, y.weight.to_bits())
        );
    }
    assert_eq!(a.points, b.points);
    assert_eq!(a.zones, b.zones);
    assert_eq!(a.unit.to_bits(), b.unit.to_bits());
    assert_eq!(a.weights, b.weights);
}

/// What `with_changes` must equal: `new` over the nodes but the removed and re-added ids,
/// plus the adds.
fn rebuilt(p: &Placement, add: &[Node], remove: &[&str]) -> Placement {
    let mut all: Vec<Node> = p
        .nodes()
        .iter()
        .filter(|n| !remove.contains(&&*n.id) && !add.iter().any(|a| a.id == n.id))
        .cloned()
        .collect();
    all.extend_from_slice(add);
    let mut q = Placement::new(all);
    // `new` keeps its input's capacity; compare memory at exact capacity.
    q.nodes.shrink_to_fit();
    q
}

/// Applies one change both ways, checks they agree, and says whether it was patched (rather
/// than rebuilt).
#[track_caller]
fn check_change(p: &Placement, add: &[Node], remove: &[&str]) -> (Placement, bool) {
    let patched = matches!(p.plan(add, remove), Plan::Patch { .. });
    let q = p.with_changes(add, remove);
    let r = rebuilt(p, add, remove);
    assert_same(&q, &r);
    assert_eq!(q.heap_bytes(), r.heap_bytes());
    for k in 0..300u64 {
        let k = key(k);
        assert_eq!(q.owner(k), r.owner(k));
        assert_eq!(q.ranked(k, 4), r.ranked(k, 4));
        assert_eq!(q.spread(k, 4), r.spread(k, 4));
    }
    (q, patched)
}

/// A small deterministic generator for the change sequences.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        (mix(self.0) % n as u64) as usize
    }
}

fn node(id: usize, weight: f64, zone: &str) -> Node {
    Node {
        id: Arc::from(format!("n{id:05}")),
        weight,
        zone: Arc::from(zone),
    }
}

/// One random change to `p`: mostly a few joins, leaves, weight and zone changes; sometimes
/// duplicates, unknown ids, an id both removed and re-added, an identical re-add, odd weights
/// or a change too large to patch.
fn random_change(rng: &mut Rng, p: &Placement, next_id: &mut usize) -> (Vec<Node>, Vec<Arc<str>>) {
    const WEIGHTS: [f64; 8] = [1.0, 1.0, 1.0, 1.0, 2.0, 0.5, 1.3, 8.0];
    const ZONES: [&str; 5] = ["", "az-a", "az-b", "az-c", "az-d"];
    let (mut add, mut remove) = (Vec::new(), Vec::new());
    let big = rng.below(20) == 0;
    let count = if big {
        p.len() / 4 + 1
    } else {
        1 + rng.below(3)
    };
    let existing = |rng: &mut Rng| -> Option<Node> {
        (!p.is_empty()).then(|| p.nodes()[rng.below(p.len())].clone())
    };
    for _ in 0..count {
        // Joins win while the cluster is small, so that it keeps a size worth patching.
        let pick = if p.len() < 40 {
            rng.below(3)
        } else {
            rng.below(10)
        };
        match pick {
            0..=2 => {
                *next_id += 1;
                let w = WEIGHTS[rng.below(WEIGHTS.len())];
                add.push(node(*next_id, w, ZONES[rng.below(ZONES.len())]));
            }
            3..=5 => remove.extend(existing(rng).map(|n| n.id)),
            6 => {
                if let Some(mut n) = existing(rng) {
                    n.weight = WEIGHTS[rng.below(WEIGHTS.len())];
                    add.push(n);
                }
            }
            7 => {
                if let Some(mut n) = existing(rng) {
                    n.zone = Arc::from(ZONES[rng.below(ZONES.len())]);
                    add.push(n);
                }
            }
            8 => match rng.below(5) {
                0 => remove.push(Arc::from("not-a-member")),
                1 => {
                    // Both removed and added: ends up with the added record.
                    if let Some(mut n) = existing(rng) {
                        remove.push(Arc::clone(&n.id));
                        n.weight = 2.0;
                        add.push(n);
                    }
                }
                2 => add.extend(existing(rng)),
                3 => {
                    *next_id += 1;
                    add.push(node(*next_id, f64::NAN, "az-a"));
                }
                _ => {
                    *next_id += 1;
                    add.push(node(*next_id, 1.0, "az-b"));
                    add.push(node(*next_id, 2.0, "az-a"));
                }
            },
            _ => {
                // A whole zone leaving (usually a big change), if it is not most of them.
                if let Some(n) = existing(rng) {
                    let size = p.nodes().iter().filter(|m| m.zone == n.zone).count();
                    if rng.below(4) == 0 && size * 2 < p.len() {
                        remove.extend(
                            p.nodes()
                                .iter()
                                .filter(|m| m.zone == n.zone)
                                .map(|m| Arc::clone(&m.id)),
                        );
                    }
                }
            }
        }
    }
    (add, remove)
}

#[test]
fn changes_equal_a_rebuild() {
    // Random change sequences, each step applied to the previous step's result (so errors
    // would compound), every step compared with `new` over the same nodes.
    let mut patched = 0;
    let mut steps = 0;
    for seed in 0..40u64 {
        let mut rng = Rng(seed);
        let start = 20 + rng.below(200);
        let mut next_id = 0;
        let initial: Vec<Node> = (0..start)
            .map(|_| {
                next_id += 1;
                let zone = ["", "az-a", "az-b"][(seed % 3) as usize];
                node(next_id, [1.0, 1.0, 2.0][rng.below(3)], zone)
            })
            .collect();
        let mut p = Placement::new(initial);
        for _ in 0..40 {
            let (add, remove) = random_change(&mut rng, &p, &mut next_id);
            let remove: Vec<&str> = remove.iter().map(|id| &**id).collect();
            let (q, was_patched) = check_change(&p, &add, &remove);
            patched += usize::from(was_patched);
            steps += 1;
            p = q;
        }
    }
    // Most steps took the incremental path (the rest: big changes, a moved unit).
    assert!(patched * 10 > steps * 7, "{patched} of {steps}");
}

#[test]
fn change_edge_cases() {
    let none: &[&str] = &[];
    // From empty, to empty, and a one-point ring (a zero-bit bucket index).
    let (p, _) = check_change(&Placement::default(), &nodes(3), none);
    let (p, _) = check_change(
        &p,
        &[],
        &["10.0.0.0:7070", "10.0.0.1:7070", "10.0.0.2:7070"],
    );
    assert!(p.is_empty());
    let p = Placement::new(nodes(9));
    // A new zone, then one-point rings (a zero-bit bucket index) growing and shrinking.
    let (p, was_patched) = check_change(&p, &[node(1, 1.0, "az-lone")], none);
    assert!(was_patched);
    assert_eq!(p.zone_count(), 2);
    let (p, _) = check_change(&p, &[node(2, 0.1, "az-tiny")], none);
    assert_eq!(p.zones[2].ring.len(), 1);
    let (p, _) = check_change(&p, &[node(3, 0.1, "az-tiny")], none);
    assert_eq!(p.zones[2].ring.len(), 2);
    let (p, _) = check_change(&p, &[], &["n00002"]);
    assert_eq!(p.zones[2].ring.len(), 1);
    // A zone's last node leaving drops the zone.
    let (p, was_patched) = check_change(&p, &[], &["n00001"]);
    assert!(was_patched);
    assert_eq!(p.zone_count(), 2);
    // Nothing to do.
    let (q, _) = check_change(&p, &p.nodes()[..2], &["nobody"]);
    assert_same(&p, &q);
    // The bucket count changes as the ring crosses a power of two (64 nodes × 4 points).
    let all = nodes(70);
    let mut p = Placement::new(all[..60].to_vec());
    for n in &all[60..] {
        let (q, was_patched) = check_change(&p, std::slice::from_ref(n), none);
        assert!(was_patched);
        p = q;
    }
    for n in all[..12].iter().rev() {
        p = check_change(&p, &[], &[&n.id]).0;
    }
    // A change that moves the unit rebuilds: half the nodes at weight 1, half at 4.
    let mut mixed = nodes(16);
    for n in &mut mixed[8..] {
        n.weight = 4.0;
    }
    let p = Placement::new(mixed.clone());
    let (_, was_patched) = check_change(&p, &[], &[&mixed[8].id]);
    assert!(!was_patched);
    let (_, was_patched) = check_change(&p, &[], &[&mixed[0].id]);
    assert!(was_patched);
}

#[test]
fn ring_patch_orders_equal_positions_by_node() {
    // Equal positions never come from the hash in practice, but must order as `new` does.
    let old = vec![(5, 0), (5, 2), (5, 4), (9, 1), (1, 3)];
    let ring = Ring::new(old);
    // Node 2 leaves; old nodes 0, 1, 3, 4 become 0, 2, 3, 5; new nodes 1, 4 and 6 join
    // (6 must still go after old 4, past the leaver's point).
    let remap = [0, 2, u32::MAX, 3, 5];
    let dropped = [ring.find(5, 2).expect("point")];
    let added = [(5, 1), (5, 4), (5, 6), (7, 1)];
    let got = ring.patched(&dropped, &added, &remap).expect("points");
    let want = Ring::new(vec![
        (5, 0),
        (5, 1),
        (5, 4),
        (5, 5),
        (5, 6),
        (7, 1),
        (9, 2),
        (1, 3),
    ]);
    assert_eq!(got, want);
    assert_eq!(ring.find(5, 3), None);
}

#[test]
fn changes_equal_a_rebuild_at_scale() {
    for zones in [1, 3] {
        let all = zoned(20_000, zones);
        let mut p = Placement::new(all[..19_990].to_vec());
        let mut gone = Vec::new();
        for (step, n) in all[19_990..].iter().enumerate() {
            let leaver = Arc::clone(&p.nodes()[step * 1_777 % p.len()].id);
            let (q, was_patched) = check_change(&p, std::slice::from_ref(n), &[&leaver]);
            assert!(was_patched);
            gone.push(leaver);
            p = q;
        }
        // Ten back at once, with a new weight each.
        let back: Vec<Node> = all
            .iter()
            .filter(|n| gone.contains(&n.id))
            .map(|n| Node {
                weight: 1.5,
                ..n.clone()
            })
            .collect();
        let (_, was_patched) = check_change(&p, &back, &[]);
        assert!(was_patched);
    }
}
