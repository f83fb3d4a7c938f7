//! The dashboard: one self-contained HTML page (inline CSS and JS, no external assets) that
//! polls `/admin/stats`, and the stats themselves — read from the same counters `/metrics`
//! exports, so the two never disagree.

use bytes::Bytes;
use prometheus::core::Collector;
use serde_json::{json, Value};

use super::{with_type, Admin, Response};

/// The page (`dashboard.html`, compiled in).
const PAGE: &str = include_str!("dashboard.html");

/// `GET /dashboard`.
pub fn page() -> Response {
    with_type(
        200,
        "text/html; charset=utf-8",
        Bytes::from_static(PAGE.as_bytes()),
    )
}

/// Sums a counter family's samples, by the value of `label` (all under "" when `None`).
fn sums(c: &impl Collector, label: Option<&str>) -> serde_json::Map<String, Value> {
    let mut out = std::collections::BTreeMap::<String, f64>::new();
    for mf in c.collect() {
        for m in mf.get_metric() {
            let key = label
                .and_then(|l| {
                    m.get_label()
                        .iter()
                        .find(|p| p.name() == l)
                        .map(|p| p.value().to_string())
                })
                .unwrap_or_default();
            *out.entry(key).or_default() += m.get_counter().value();
        }
    }
    out.into_iter().map(|(k, v)| (k, json!(v as u64))).collect()
}

fn total(c: &impl Collector) -> u64 {
    sums(c, None).values().filter_map(Value::as_u64).sum()
}

/// `GET /admin/stats`: what the dashboard shows.
pub fn stats(a: &Admin) -> Value {
    let m = &a.metrics;
    let reads = |r: &str| m.cache_results.with_label_values(&[r]).get();
    let (hit, miss, partial, bypass) = (
        reads("hit"),
        reads("miss"),
        reads("partial"),
        reads("bypass"),
    );
    let cached_reads = hit + miss + partial;
    let tier = |t: &str| m.served_bytes.with_label_values(&[t]).get();
    let served = json!({
        "memory": tier("memory"),
        "disk": tier("disk"),
        "peer": tier("peer"),
        "origin": tier("origin"),
    });
    let served_total: u64 = ["memory", "disk", "peer", "origin"]
        .iter()
        .map(|t| tier(t))
        .sum();
    let (pinned_chunks, pinned_bytes, pin_capacity) = a.pipeline.pinned();
    let cluster = a.membership.as_ref().map(|ms| {
        json!({
            "epoch": ms.view().epoch,
            "members": ms.members().iter().map(|(addr, h)| json!({"address": &**addr, "state": h.as_str()})).collect::<Vec<_>>(),
        })
    });
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "role": a.role,
        "uptime_seconds": a.started.elapsed().as_secs(),
        "requests": {
            "total": total(&m.requests),
            "by_status": sums(&m.requests, Some("status")),
        },
        "object_reads": { "hit": hit, "miss": miss, "partial": partial, "bypass": bypass },
        "hit_ratio": (cached_reads > 0).then(|| hit as f64 / cached_reads as f64),
        "served_bytes": served,
        "byte_hit_ratio": (served_total > 0).then(|| 1.0 - tier("origin") as f64 / served_total as f64),
        "origin": {
            "requests": total(&m.origin_requests),
            "requests_by_operation": sums(&m.origin_requests, Some("operation")),
            "bytes": total(&m.origin_bytes),
        },
        "coalesced_waiters": m.coalesced_waiters.get(),
        "near_cache_hits": m.near_hits.get(),
        "pinned": { "chunks": pinned_chunks, "bytes": pinned_bytes, "capacity_bytes": pin_capacity },
        "cluster": cluster,
        "hot_objects": a.pipeline.hot_objects(10).into_iter()
            .map(|(k, n)| json!({"key": &*k, "reads": n})).collect::<Vec<_>>(),
        "warm_jobs": a.jobs.list().iter().rev().take(20).map(|j| {
            let mut v = serde_json::to_value(j.view()).unwrap_or(Value::Null);
            // The page shows the first few failures; the job's own endpoint has them all.
            if let Some(f) = v.get_mut("failures").and_then(Value::as_array_mut) {
                f.truncate(5);
            }
            v
        }).collect::<Vec<_>>(),
    })
}
