use std::collections::HashSet;

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
