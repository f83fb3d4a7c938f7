//! Placement benchmark: per-lookup cost and key movement at 10, 1 000 and 100 000 nodes.
//!
//! `cargo run --release -p cistern-cache --example placement`
//!
//! Prints, per cluster size: the time to build a placement (done once per membership change),
//! the cost of one owner lookup and of a ranked lookup of 3 nodes (median of 5 runs), and the
//! fraction of 1 000 000 keys whose owner changes when one node leaves or one joins, against the
//! ideal (1/n: only the lost node's keys, or the newcomer's share).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use cistern_cache::placement::{stable_hash, Node, Placement};

fn nodes(n: usize) -> Vec<Node> {
    (0..n)
        .map(|i| Node {
            id: Arc::from(format!(
                "10.{}.{}.{}:7070",
                i >> 16,
                (i >> 8) & 255,
                i & 255
            )),
            weight: 1.0,
        })
        .collect()
}

fn owners(p: &Placement, keys: &[u64]) -> Vec<Arc<str>> {
    keys.iter()
        .map(|k| Arc::clone(&p.nodes()[p.owner(*k).expect("nodes")].id))
        .collect()
}

fn moved(a: &[Arc<str>], b: &[Arc<str>]) -> f64 {
    a.iter().zip(b).filter(|(x, y)| x != y).count() as f64 / a.len() as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let keys: Vec<u64> = (0..1_000_000u64)
        .map(|i| stable_hash(&[b"origin/bucket/some/key.tar", &i.to_le_bytes()]))
        .collect();
    println!(
        "{:>8} {:>10} {:>12} {:>12} {:>14} {:>14} {:>10}",
        "nodes", "build ms", "owner ns", "ranked3 ns", "leave moved %", "join moved %", "ideal %"
    );
    for n in [10usize, 1_000, 100_000] {
        let all = nodes(n + 1);
        let base: Vec<Node> = all[..n].to_vec();
        let t = Instant::now();
        let p = Placement::new(base.clone());
        let build = t.elapsed().as_secs_f64() * 1e3;

        let lookups = 200_000usize;
        let owner_ns = median(
            (0..5)
                .map(|_| {
                    let t = Instant::now();
                    for k in keys.iter().take(lookups) {
                        black_box(p.owner(black_box(*k)));
                    }
                    t.elapsed().as_nanos() as f64 / lookups as f64
                })
                .collect(),
        );
        let ranked_ns = median(
            (0..5)
                .map(|_| {
                    let t = Instant::now();
                    for k in keys.iter().take(lookups / 4) {
                        black_box(p.ranked(black_box(*k), 3));
                    }
                    t.elapsed().as_nanos() as f64 / (lookups / 4) as f64
                })
                .collect(),
        );

        let before = owners(&p, &keys);
        let mut less = base.clone();
        less.remove(n / 2);
        let leave = moved(&before, &owners(&Placement::new(less), &keys));
        let join = moved(&before, &owners(&Placement::new(all.clone()), &keys));
        println!(
            "{n:>8} {build:>10.2} {owner_ns:>12.0} {ranked_ns:>12.0} {:>14.4} {:>14.4} {:>10.4}",
            leave * 100.0,
            join * 100.0,
            100.0 / n as f64
        );
    }
}
