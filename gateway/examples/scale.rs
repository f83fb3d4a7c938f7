//! Membership at 100 000 nodes, in process: what one view costs and what churn costs.
//!
//! `cargo run --release -p cistern-gateway --example scale`
//!
//! Builds the membership a front holds (the real [`Membership`], fed as the etcd watch feeds it)
//! for N nodes in 3 zones and prints: the time to apply a full listing (start, re-list) and one
//! join or leave (a new view, its placements changed in place: once per batch of watch events,
//! off the request path), the bytes one view holds, the cost of routing a chunk (`route`, 2 nodes) and
//! a hot chunk (`spread`, 3 nodes) through the view, the cost of a failed request marking a node
//! suspect (no placement rebuild), and the messages per process per second: watch events under
//! a churn where every node restarts once a day, and health probes (bounded per interval)
//! against what all-to-all probing would send. Figures, never assertions.

use std::hint::black_box;
use std::time::Instant;

use cistern_cache::placement::stable_hash;
use cistern_gateway::metrics::Metrics;
use cistern_gateway::peer::membership::{Listed, Membership, PROBES_PER_ROUND};

fn listed(n: usize) -> Vec<Listed> {
    (0..n)
        .map(|i| Listed {
            addr: format!("10.{}.{}.{}:7070", i >> 16, (i >> 8) & 255, i & 255),
            zone: format!("zone-{}", i % 3),
            weight: Some(1.0),
            here: false,
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    println!(
        "{:>8} {:>9} {:>9} {:>10} {:>9} {:>10} {:>11} {:>13} {:>14} {:>14}",
        "nodes",
        "list ms",
        "change ms",
        "view MiB",
        "route ns",
        "spread ns",
        "suspect µs",
        "watch ev/s",
        "probes/s",
        "all-to-all/s"
    );
    for n in [1_000usize, 10_000, 100_000] {
        let all = listed(n + 1);
        let ms = Membership::new(&[], "zone-1", Metrics::new().expect("metrics"));
        let t = Instant::now();
        ms.set_listed(&all[..n]);
        let list_ms = t.elapsed().as_secs_f64() * 1e3;
        // One join then one leave, as the etcd watch applies them (changes, not a listing).
        let change_ms = median(
            (0..5)
                .map(|_| {
                    let t = Instant::now();
                    ms.change_listed(&all[n..], &[]);
                    ms.change_listed(&[], &[all[n].addr.as_str()]);
                    t.elapsed().as_secs_f64() * 1e3 / 2.0
                })
                .collect(),
        );
        let view_mib = ms.heap_bytes() as f64 / (1 << 20) as f64;
        let keys: Vec<u64> = (0..100_000u64)
            .map(|i| stable_hash(&[b"bucket/shard.tar", &i.to_le_bytes()]))
            .collect();
        let per = |f: &dyn Fn(u64)| {
            median(
                (0..5)
                    .map(|_| {
                        let t = Instant::now();
                        for k in &keys {
                            f(*k);
                        }
                        t.elapsed().as_nanos() as f64 / keys.len() as f64
                    })
                    .collect(),
            )
        };
        let route_ns = per(&|k| {
            black_box(ms.route(black_box(k), 2));
        });
        let spread_ns = per(&|k| {
            black_box(ms.spread(black_box(k), 3));
        });
        // A failed request: the node turns suspect (routed last) with no placement rebuild;
        // a good answer clears it.
        let t = Instant::now();
        for l in all.iter().take(20) {
            ms.suspect(&l.addr);
            ms.succeeded(&l.addr, None, None, false);
        }
        let suspect_us = t.elapsed().as_secs_f64() * 1e6 / 40.0;
        // Churn: every node restarts once a day (a leave and a join each).
        let watch_events = 2.0 * n as f64 / 86_400.0;
        let probes = PROBES_PER_ROUND as f64; // per 1 s interval, whatever n is
        println!(
            "{n:>8} {list_ms:>9.1} {change_ms:>9.2} {view_mib:>10.1} {route_ns:>9.0} {spread_ns:>10.0} {suspect_us:>11.1} {watch_events:>13.2} {probes:>14.0} {:>14}",
            n
        );
    }
    println!(
        "\nlist ms: apply a full listing (start, or a re-list after a broken watch); change ms: one\n\
         join or leave from the watch (new view, placements changed in place); view MiB: one view (members and two placements);\n\
         route/spread ns: one routing decision through the current view; suspect µs: a failed\n\
         request marking a node suspect (no rebuild); watch ev/s: events each process receives\n\
         when every node restarts once a day; probes/s: health probes each process sends with a\n\
         registry (bounded), against one per member per second all-to-all."
    );
}
