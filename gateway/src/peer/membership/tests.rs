use super::*;

fn m(addrs: &[&str]) -> Membership {
    let list: Vec<String> = addrs.iter().map(|s| s.to_string()).collect();
    Membership::new(&list, "", Metrics::new().expect("metrics"))
}

#[test]
fn failures_make_a_node_suspect_then_dead_and_a_probe_revives_it() {
    let ms = m(&["a:1", "b:1", "c:1"]);
    let e0 = ms.view().epoch;
    ms.failed("b:1");
    assert_eq!(ms.view().epoch, e0, "a suspect node stays placed");
    ms.failed("b:1");
    assert_eq!(ms.view().epoch, e0 + 1);
    assert!(ms
        .members()
        .iter()
        .any(|(a, h)| &**a == "b:1" && *h == Health::Dead));
    for k in 0..500u64 {
        assert_ne!(ms.route(k, 1), vec![Node::Peer("b:1".into())]);
    }
    ms.failed("b:1");
    assert_eq!(ms.view().epoch, e0 + 1, "already dead");
    ms.succeeded("b:1", None, None, false);
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
    assert_eq!(ms.view().epoch, e0, "requests alone never move keys");
    assert!(ms
        .members()
        .iter()
        .any(|(a, h)| &**a == "b:1" && *h == Health::Suspect));
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
    ms.succeeded("b:1", None, None, false);
    assert!(ms.members().iter().all(|(_, h)| *h == Health::Alive));
}

#[test]
fn a_node_that_recognises_itself_routes_here() {
    let ms = m(&["a:1", "b:1"]);
    ms.succeeded("a:1", None, None, true);
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

fn listed(n: usize, zones: usize) -> Vec<Listed> {
    (0..n)
        .map(|i| Listed {
            addr: format!("10.0.0.{i}:7070"),
            zone: format!("z{}", i % zones),
            weight: Some(1.0),
            here: false,
        })
        .collect()
}

#[test]
fn a_registry_listing_sets_zones_weights_and_self() {
    let ms = Membership::new(&[], "z1", Metrics::new().expect("metrics"));
    let mut l = listed(6, 3);
    l[4].here = true;
    ms.set_listed(&l);
    let e = ms.view().epoch;
    assert_eq!(ms.len(), 6);
    // The same listing again changes nothing; a new weight or zone is a new placement.
    ms.set_listed(&l);
    assert_eq!(ms.view().epoch, e);
    l[0].weight = Some(3.0);
    ms.set_listed(&l);
    assert_eq!(ms.view().epoch, e + 1);
    l[0].zone = "z2".into();
    ms.set_listed(&l);
    assert_eq!(ms.view().epoch, e + 2);
    // A node that left the listing leaves the placement.
    ms.set_listed(&l[1..]);
    assert_eq!(ms.view().epoch, e + 3);
    assert!(!ms.contains("10.0.0.0:7070"));
    let here = (0..2000u64)
        .filter(|k| ms.route(stable_hash(&[&k.to_le_bytes()]), 1) == vec![Node::Here])
        .count();
    assert!((200..600).contains(&here), "{here}");
}

#[test]
fn watch_changes_apply_as_a_listing_would() {
    let all = listed(20, 2);
    let ms = Membership::new(&[], "", Metrics::new().expect("metrics"));
    ms.set_listed(&all[..10]);
    let e = ms.view().epoch;
    ms.change_listed(&all[10..12], &["10.0.0.3:7070", "10.0.0.99:7070"]);
    assert_eq!(ms.view().epoch, e + 1);
    assert_eq!(ms.len(), 11);
    // Nothing new: no new view.
    ms.change_listed(&all[10..11], &["10.0.0.3:7070"]);
    assert_eq!(ms.view().epoch, e + 1);
    let fresh = Membership::new(&[], "", Metrics::new().expect("metrics"));
    let mut same: Vec<Listed> = all[..12].to_vec();
    same.remove(3);
    fresh.set_listed(&same);
    for k in 0..500u64 {
        let key = stable_hash(&[&k.to_le_bytes()]);
        assert_eq!(ms.route(key, 3), fresh.route(key, 3));
    }
}

#[test]
fn a_suspect_is_routed_last_without_moving_keys() {
    let ms = Membership::new(&[], "", Metrics::new().expect("metrics"));
    ms.set_listed(&listed(5, 1));
    let e = ms.view().epoch;
    let key = stable_hash(&[b"k"]);
    let order = ms.route(key, 3);
    let Node::Peer(owner) = order[0].clone() else {
        panic!("a peer")
    };
    ms.suspect(&owner);
    assert_eq!(ms.view().epoch, e, "a suspect stays placed");
    let now = ms.route(key, 3);
    assert_eq!(now[0], order[1], "skipped at once");
    assert_eq!(now[2], order[0], "tried last");
    ms.succeeded(&owner, None, None, false);
    assert_eq!(ms.route(key, 3), order);
    assert_eq!(ms.view().epoch, e);
}

#[test]
fn probes_are_bounded_suspects_first_then_in_turn() {
    let ms = Membership::new(&[], "", Metrics::new().expect("metrics"));
    ms.set_listed(&listed(100, 1));
    ms.suspect("10.0.0.42:7070");
    let first = ms.probe_targets(PROBES_PER_ROUND);
    assert_eq!(first.len(), PROBES_PER_ROUND);
    assert_eq!(&*first[0], "10.0.0.42:7070");
    // Rounds walk the members, the suspect taking one probe of each round: about 34
    // rounds of 3 more reach all 100.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..40 {
        let round = ms.probe_targets(PROBES_PER_ROUND);
        assert_eq!(round.len(), PROBES_PER_ROUND);
        seen.extend(round);
    }
    assert_eq!(seen.len(), 100);
}

#[test]
fn hot_replicas_sit_in_distinct_zones_and_the_near_one_is_flagged() {
    let ms = Membership::new(&[], "z1", Metrics::new().expect("metrics"));
    ms.set_listed(&listed(12, 3));
    let zone_of = |n: &Node| match n {
        Node::Peer(a) => {
            let i: usize = a[7..a.len() - 5].parse().expect("index");
            i % 3
        }
        Node::Here => unreachable!(),
    };
    for k in 0..500u64 {
        let s = ms.spread(stable_hash(&[&k.to_le_bytes()]), 3);
        assert_eq!(s.len(), 3);
        let mut zones: Vec<usize> = s.iter().map(|(n, _)| zone_of(n)).collect();
        zones.sort_unstable();
        assert_eq!(zones, vec![0, 1, 2], "one replica per zone");
        for (n, near) in &s {
            assert_eq!(*near, zone_of(n) == 1);
        }
    }
}

#[test]
fn views_changed_in_place_route_as_views_built_afresh() {
    // A pseudo-random walk of listings, weights, zones and dead nodes; after every step the
    // membership (whose placements were changed, not rebuilt) routes every key as a fresh
    // membership over the same members does.
    let ms = Membership::new(&[], "z0", Metrics::new().expect("metrics"));
    let mut all = listed(60, 3);
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut rnd = |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    let mut dead = std::collections::BTreeSet::new();
    for step in 0..60 {
        match step % 4 {
            0 => all[rnd(60)].weight = Some(1.0 + rnd(3) as f64),
            1 => all[rnd(60)].zone = format!("z{}", rnd(4)),
            2 => {
                let a = all[rnd(60)].addr.clone();
                if ms.contains(&a) {
                    ms.failed(&a);
                    ms.failed(&a);
                    dead.insert(a);
                }
            }
            _ => {
                if let Some(a) = dead.pop_first() {
                    ms.succeeded(&a, None, None, false);
                }
            }
        }
        let present: Vec<Listed> = all.iter().filter(|_| rnd(10) > 0).cloned().collect();
        dead.retain(|a| present.iter().any(|l| l.addr == *a));
        ms.set_listed(&present);
        let fresh = Membership::new(&[], "z0", Metrics::new().expect("metrics"));
        fresh.set_listed(&present);
        for a in &dead {
            fresh.failed(a);
            fresh.failed(a);
        }
        for k in 0..300u64 {
            let key = stable_hash(&[&k.to_le_bytes()]);
            assert_eq!(ms.route(key, 3), fresh.route(key, 3), "step {step}");
            assert_eq!(ms.owners(key, 2), fresh.owners(key, 2), "step {step}");
            assert_eq!(ms.spread(key, 3), fresh.spread(key, 3), "step {step}");
        }
    }
}
