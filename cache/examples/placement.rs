//! Placement benchmark: build cost, memory, per-lookup cost, key movement and balance at 10,
//! 1 000 and 100 000 nodes, in one zone and in three.
//!
//! `cargo run --release -p cistern-cache --example placement` (`-- changes`: only the table of
//! membership changes)
//!
//! Prints figures only (it asserts nothing about time). Columns:
//!
//! - `nodes`, `zones`: cluster size; nodes are dealt round-robin over the zones.
//! - `build ms`: `Placement::new` (done once per membership change).
//! - `heap KiB`: `Placement::heap_bytes`, the memory of one membership view.
//! - `owner ns`, `rank3 ns`, `spread3 ns`: one `owner`, `ranked(key, 3)`, `spread(key, 3)`.
//! - `leave %`, `join %`: keys (of 4 000 000) whose owner changes when one node leaves or one
//!   joins; `ideal %` is 1/n (the leaver's keys, or the newcomer's share).
//! - `zone loss %` (three zones): keys whose owner changes when a whole zone goes, against
//!   `zone %`, that zone's share (ideal); `foreign`: how many of the moved keys were owned by
//!   a surviving zone (must be 0).
//! - `max/mean`, `min/mean`: the largest and smallest node share over the mean, exact
//!   (`Placement::shares`), not sampled. max/mean is what limits the cluster; a small min/mean
//!   is a node whose ring points all happen to sit right after others'.
//!
//! Every figure but `heap KiB` and `max/mean` is the median of 5 runs.
//!
//! A second table, at 1 000 and 100 000 nodes: the cost of a membership change made with
//! `Placement::with_changes` against a full `Placement::new` of the changed set (median of 5
//! runs each, a different node each run):
//!
//! - `build ms`: `Placement::new` over the n nodes.
//! - `join ms`, `leave ms`: `with_changes` for one node joining, one leaving.
//! - `10+10 ms`: ten joining and ten leaving in one change.
//! - `heap KiB`: `heap_bytes` of the placement after a change (the same as `new`'s: what an
//!   incremental change needs is kept in the rings themselves, plus one count per distinct
//!   weight).

use std::collections::HashSet;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use cistern_cache::placement::{stable_hash, Node, Placement};

const RUNS: usize = 5;

/// Keys for the movement figures: 40 per node at 100 000 nodes, so one node's share is
/// still a sampled figure there (±15 % per run).
const KEYS: u64 = 4_000_000;

fn nodes(n: usize, zones: usize) -> Vec<Node> {
    (0..n)
        .map(|i| Node {
            id: Arc::from(format!(
                "10.{}.{}.{}:7070",
                i >> 16,
                (i >> 8) & 255,
                i & 255
            )),
            weight: 1.0,
            zone: if zones == 1 {
                Arc::from("")
            } else {
                Arc::from(format!("zone-{}", i % zones))
            },
        })
        .collect()
}

/// Each key's owner, as the address of its id: every placement here is built from clones of
/// the same `Arc`s, so equal addresses mean the same node (and no reference counting).
fn owners(p: &Placement, keys: &[u64]) -> Vec<usize> {
    keys.iter()
        .map(|k| p.nodes()[p.owner(*k).expect("nodes")].id.as_ptr() as usize)
        .collect()
}

fn moved(a: &[usize], b: &[usize]) -> f64 {
    a.iter().zip(b).filter(|(x, y)| x != y).count() as f64 / a.len() as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The median over [`RUNS`] of `f`'s result.
fn med(mut f: impl FnMut() -> f64) -> f64 {
    median((0..RUNS).map(|_| f()).collect())
}

/// Nanoseconds per call of `f` over `keys`, median of [`RUNS`].
fn per_key<T>(keys: &[u64], f: impl Fn(u64) -> T) -> f64 {
    med(|| {
        let t = Instant::now();
        for k in keys {
            black_box(f(black_box(*k)));
        }
        t.elapsed().as_nanos() as f64 / keys.len() as f64
    })
}

/// The change table: `with_changes` against `new`.
fn changes() {
    println!(
        "{:>7} {:>5} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9}",
        "nodes", "zones", "new ms", "join ms", "leave ms", "10+10 ms", "drop ms", "heap KiB"
    );
    for n in [1_000usize, 100_000] {
        for zones in [1usize, 3] {
            // Spare nodes (the joiners) past the first n.
            let all = nodes(n + 100, zones);
            let base: Vec<Node> = all[..n].to_vec();
            let p = Placement::new(base.clone());
            // Warm the allocator up (the first large allocations fault their pages in).
            black_box(p.with_changes(&all[n..n + 1], &[]));
            // Times `f` alone: making its input and dropping its result are not counted.
            let timed = |f: &mut dyn FnMut() -> Placement| {
                let t = Instant::now();
                let q = black_box(f());
                let took = t.elapsed().as_secs_f64() * 1e3;
                (took, q)
            };
            let build = med(|| {
                let input = base.clone();
                timed(&mut || Placement::new(input.clone())).0
            });
            let mut run = 0;
            let join = med(|| {
                run += 1;
                timed(&mut || p.with_changes(&all[n + run..n + run + 1], &[])).0
            });
            let leave = med(|| {
                run += 1;
                let id = &p.nodes()[(n / 2 + run * 7) % n].id;
                timed(&mut || p.with_changes(&[], &[id])).0
            });
            let mut after = Placement::default();
            let both = med(|| {
                run += 1;
                let join = &all[n + 10 * (run % 9)..n + 10 * (run % 9) + 10];
                let leave: Vec<&str> = (0..10)
                    .map(|i| &*p.nodes()[(i * n / 10 + run * 13) % n].id)
                    .collect();
                let (took, q) = timed(&mut || p.with_changes(join, &leave));
                after = q;
                took
            });
            let drop_ms = med(|| {
                let q = p.with_changes(&all[n..n + 1], &[]);
                let t = Instant::now();
                drop(black_box(q));
                t.elapsed().as_secs_f64() * 1e3
            });
            println!(
                "{n:>7} {zones:>5} {build:>8.2} {join:>8.2} {leave:>8.2} {both:>8.2} {drop_ms:>8.2} {:>9}",
                after.heap_bytes() / 1024
            );
        }
    }
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("changes") {
        changes();
        return;
    }
    let keys: Vec<u64> = (0..KEYS)
        .map(|i| stable_hash(&[b"origin/bucket/some/key.tar", &i.to_le_bytes()]))
        .collect();
    println!(
        "{:>7} {:>5} {:>8} {:>9} {:>8} {:>8} {:>10} {:>8} {:>8} {:>8} {:>11} {:>7} {:>7} {:>8} {:>8}",
        "nodes",
        "zones",
        "build ms",
        "heap KiB",
        "owner ns",
        "rank3 ns",
        "spread3 ns",
        "leave %",
        "join %",
        "ideal %",
        "zone loss %",
        "zone %",
        "foreign",
        "max/mean",
        "min/mean"
    );
    for n in [10usize, 1_000, 100_000] {
        for zones in [1usize, 3] {
            // One spare node (the joiner) past the first n.
            let all = nodes(n + 1, zones);
            let base: Vec<Node> = all[..n].to_vec();
            let build = med(|| {
                let t = Instant::now();
                black_box(Placement::new(base.clone()));
                t.elapsed().as_secs_f64() * 1e3
            });
            let p = Placement::new(base.clone());

            let some = &keys[..200_000];
            let owner_ns = per_key(some, |k| p.owner(k));
            let ranked_ns = per_key(&some[..50_000], |k| p.ranked(k, 3));
            let spread_ns = per_key(&some[..50_000], |k| p.spread(k, 3));

            let before = owners(&p, &keys);
            let mut run = 0;
            let leave = med(|| {
                // A different leaver each run.
                run += 1;
                let mut less = base.clone();
                less.remove((n / 2 + run * 7) % n);
                moved(&before, &owners(&Placement::new(less), &keys))
            });
            let join = moved(&before, &owners(&Placement::new(all.clone()), &keys));

            let (zone_loss, zone_share, foreign) = if zones > 1 {
                let lost: &str = "zone-1";
                let rest: Vec<Node> = base.iter().filter(|m| &*m.zone != lost).cloned().collect();
                let after = owners(&Placement::new(rest), &keys);
                let lost_ids: HashSet<usize> = base
                    .iter()
                    .filter(|m| &*m.zone == lost)
                    .map(|m| m.id.as_ptr() as usize)
                    .collect();
                let in_lost = |id: &usize| lost_ids.contains(id);
                let share = before.iter().filter(|o| in_lost(o)).count();
                let foreign = before
                    .iter()
                    .zip(&after)
                    .filter(|(a, b)| a != b && !in_lost(a))
                    .count();
                (
                    format!("{:.3}", moved(&before, &after) * 100.0),
                    format!("{:.3}", share as f64 / keys.len() as f64 * 100.0),
                    foreign.to_string(),
                )
            } else {
                ("-".into(), "-".into(), "-".into())
            };

            let shares = p.shares();
            let max = shares.iter().copied().fold(0.0, f64::max) * n as f64;
            let min = shares.iter().copied().fold(1.0, f64::min) * n as f64;

            println!(
                "{n:>7} {zones:>5} {build:>8.2} {:>9} {owner_ns:>8.0} {ranked_ns:>8.0} {spread_ns:>10.0} {:>8.4} {:>8.4} {:>8.4} {zone_loss:>11} {zone_share:>7} {foreign:>7} {max:>8.3} {min:>8.3}",
                p.heap_bytes() / 1024,
                leave * 100.0,
                join * 100.0,
                100.0 / n as f64
            );
        }
    }
    println!();
    changes();
}
