//! Cistern's Prometheus metrics. The binary owns the registry; components receive handles.

use std::sync::Arc;

use cistern_cache::KvStore;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{
    Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};

/// All of Cistern's own metrics (foyer registers its own in the same registry).
#[derive(Clone)]
pub struct Metrics {
    /// The registry everything is registered in.
    pub registry: Registry,
    /// Requests by dialect, operation and HTTP status.
    pub requests: IntCounterVec,
    /// Request latency by dialect and operation (to response headers).
    pub request_seconds: HistogramVec,
    /// Object bytes sent to clients by tier (memory, disk, origin).
    pub served_bytes: IntCounterVec,
    /// What the cache did per object read (hit, miss, partial, bypass).
    pub cache_results: IntCounterVec,
    /// `served_bytes` by tier, resolved once per label.
    pub served: Series,
    /// `cache_results` by result, resolved once per label.
    pub cache_result: Series,
    /// Requests to origins by origin, operation and status.
    pub origin_requests: IntCounterVec,
    /// Origin request latency.
    pub origin_seconds: HistogramVec,
    /// Bytes received from origins.
    pub origin_bytes: IntCounterVec,
    /// Callers that waited on another caller's chunk fill instead of asking the origin.
    pub coalesced_waiters: IntCounter,
    /// Time to first byte of object reads.
    pub first_byte_seconds: Histogram,
    /// Peer requests made by this node, by operation and result.
    pub peer_requests: IntCounterVec,
    /// Peer request latency by operation.
    pub peer_seconds: HistogramVec,
    /// Peer requests answered by this node, by operation and status.
    pub peer_served: IntCounterVec,
    /// Chunk bytes this node sent to other nodes.
    pub peer_served_bytes: IntCounter,
    /// Reads that went past an unavailable owner: to the next node, or to the origin.
    pub peer_fallbacks: IntCounterVec,
    /// Chunk fills asked of other regions' clusters, by region and outcome.
    pub region_fills: IntCounterVec,
    /// Writes whose metadata invalidation did not reach an owner.
    pub peer_invalidations_failed: IntCounter,
    /// Hot chunks served from the near cache.
    pub near_hits: IntCounter,
    /// Reads that found the response memory budget spent (`[cache] stream_memory`).
    pub budget_waits: IntCounter,
    /// Bytes of written objects put in the cache (buckets with `populate_on_write`).
    pub populated_bytes: IntCounter,
    /// Cache nodes by state (alive, suspect, dead).
    pub cluster_members: IntGaugeVec,
    /// The membership view's epoch (bumped when the set of live nodes changes).
    pub cluster_epoch: IntGauge,
    /// Membership changes that moved placement.
    pub placement_changes: IntCounter,
    /// The share of keys whose owner moved at the last membership change (sampled).
    pub placement_moved_ratio: Gauge,
}

impl Metrics {
    /// Creates the metrics in a fresh registry.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let buckets = vec![
            0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            2.5, 5.0, 10.0, 30.0,
        ];
        let served_bytes = IntCounterVec::new(
            Opts::new(
                "cistern_served_bytes_total",
                "Object bytes sent to clients by tier",
            ),
            &["tier"],
        )?;
        let cache_results = IntCounterVec::new(
            Opts::new(
                "cistern_cache_results_total",
                "Object reads by what the cache did",
            ),
            &["result"],
        )?;
        let m = Self {
            requests: IntCounterVec::new(
                Opts::new(
                    "cistern_requests_total",
                    "Requests by dialect, operation and status",
                ),
                &["dialect", "operation", "status"],
            )?,
            request_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "cistern_request_duration_seconds",
                    "Request latency to response headers",
                )
                .buckets(buckets.clone()),
                &["dialect", "operation"],
            )?,
            served: Series::new(&served_bytes, &["memory", "disk", "peer", "origin"]),
            served_bytes,
            cache_result: Series::new(&cache_results, &["hit", "miss", "partial", "bypass"]),
            cache_results,
            origin_requests: IntCounterVec::new(
                Opts::new(
                    "cistern_origin_requests_total",
                    "Origin requests by origin, operation and status",
                ),
                &["origin", "operation", "status"],
            )?,
            origin_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "cistern_origin_request_duration_seconds",
                    "Origin request latency",
                )
                .buckets(buckets.clone()),
                &["origin", "operation"],
            )?,
            origin_bytes: IntCounterVec::new(
                Opts::new("cistern_origin_bytes_total", "Bytes received from origins"),
                &["origin"],
            )?,
            coalesced_waiters: IntCounter::new(
                "cistern_coalesced_waiters_total",
                "Reads that waited on another read's chunk fill instead of asking the origin",
            )?,
            first_byte_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "cistern_first_byte_seconds",
                    "Object read time to first body byte",
                )
                .buckets(buckets.clone()),
            )?,
            peer_requests: IntCounterVec::new(
                Opts::new(
                    "cistern_peer_requests_total",
                    "Requests to other Cistern nodes by operation and result",
                ),
                &["op", "result"],
            )?,
            peer_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "cistern_peer_request_duration_seconds",
                    "Latency of requests to other Cistern nodes",
                )
                .buckets(buckets.clone()),
                &["op"],
            )?,
            peer_served: IntCounterVec::new(
                Opts::new(
                    "cistern_peer_served_total",
                    "Peer requests answered by this node by operation and status",
                ),
                &["op", "status"],
            )?,
            peer_served_bytes: IntCounter::new(
                "cistern_peer_served_bytes_total",
                "Chunk bytes sent to other Cistern nodes",
            )?,
            region_fills: IntCounterVec::new(
                Opts::new(
                    "cistern_region_fills_total",
                    "Chunk fills asked of another region's cluster before the origin, by region \
                     and outcome (hit, miss, unavailable, error)",
                ),
                &["region", "outcome"],
            )?,
            peer_fallbacks: IntCounterVec::new(
                Opts::new(
                    "cistern_peer_fallbacks_total",
                    "Reads that went past an unavailable owner, by where they went",
                ),
                &["to"],
            )?,
            peer_invalidations_failed: IntCounter::new(
                "cistern_peer_invalidations_failed_total",
                "Writes whose metadata invalidation did not reach an owner",
            )?,
            populated_bytes: IntCounter::new(
                "cistern_populated_bytes_total",
                "Bytes of objects written through Cistern that were kept in the cache",
            )?,
            near_hits: IntCounter::new(
                "cistern_near_cache_hits_total",
                "Hot chunks served from this front's near cache",
            )?,
            budget_waits: IntCounter::new(
                "cistern_stream_budget_waits_total",
                "Reads that found the response memory budget (cache.stream_memory) spent, and waited or went on 256 KiB at a time",
            )?,
            cluster_members: IntGaugeVec::new(
                Opts::new("cistern_cluster_members", "Cache nodes by state"),
                &["state"],
            )?,
            cluster_epoch: IntGauge::new(
                "cistern_cluster_epoch",
                "Epoch of this node's membership view",
            )?,
            placement_changes: IntCounter::new(
                "cistern_placement_changes_total",
                "Membership changes that moved placement",
            )?,
            placement_moved_ratio: Gauge::new(
                "cistern_placement_moved_ratio",
                "Share of keys whose owner moved at the last membership change (sampled)",
            )?,
            registry,
        };
        m.registry.register(Box::new(m.requests.clone()))?;
        m.registry.register(Box::new(m.request_seconds.clone()))?;
        m.registry.register(Box::new(m.served_bytes.clone()))?;
        m.registry.register(Box::new(m.cache_results.clone()))?;
        m.registry.register(Box::new(m.origin_requests.clone()))?;
        m.registry.register(Box::new(m.origin_seconds.clone()))?;
        m.registry.register(Box::new(m.origin_bytes.clone()))?;
        m.registry.register(Box::new(m.coalesced_waiters.clone()))?;
        m.registry
            .register(Box::new(m.first_byte_seconds.clone()))?;
        m.registry.register(Box::new(m.peer_requests.clone()))?;
        m.registry.register(Box::new(m.peer_seconds.clone()))?;
        m.registry.register(Box::new(m.peer_served.clone()))?;
        m.registry.register(Box::new(m.peer_served_bytes.clone()))?;
        m.registry.register(Box::new(m.peer_fallbacks.clone()))?;
        m.registry.register(Box::new(m.region_fills.clone()))?;
        m.registry
            .register(Box::new(m.peer_invalidations_failed.clone()))?;
        m.registry.register(Box::new(m.near_hits.clone()))?;
        m.registry.register(Box::new(m.budget_waits.clone()))?;
        m.registry.register(Box::new(m.populated_bytes.clone()))?;
        m.registry.register(Box::new(m.cluster_members.clone()))?;
        m.registry.register(Box::new(m.cluster_epoch.clone()))?;
        m.registry.register(Box::new(m.placement_changes.clone()))?;
        m.registry
            .register(Box::new(m.placement_moved_ratio.clone()))?;
        Ok(m)
    }
}

/// The series of a one-label counter vector for its usual label values, each looked up once:
/// a lookup by label hashes the values and takes a lock, on every request otherwise.
#[derive(Clone)]
pub struct Series {
    vec: IntCounterVec,
    names: &'static [&'static str],
    resolved: Arc<[std::sync::OnceLock<IntCounter>]>,
}

impl Series {
    fn new(vec: &IntCounterVec, names: &'static [&'static str]) -> Self {
        Self {
            vec: vec.clone(),
            names,
            resolved: names.iter().map(|_| std::sync::OnceLock::new()).collect(),
        }
    }

    /// Adds `n` to the series labelled `label` (created on first use, as by label).
    pub fn inc_by(&self, label: &str, n: u64) {
        match self.names.iter().position(|&x| x == label) {
            Some(i) => self.resolved[i]
                .get_or_init(|| self.vec.with_label_values(&[label]))
                .inc_by(n),
            None => self.vec.with_label_values(&[label]).inc_by(n),
        }
    }
}

/// This node's cache-only buckets, read from its [`KvStore`] at each scrape:
/// `cistern_kv_objects{bucket}`, `cistern_kv_bytes{bucket}` and
/// `cistern_kv_dropped_total{bucket,reason}` (reason `quota`, `expired` or `lost`). Uploads in
/// parts in progress count as bucket `<bucket>/uploads`.
pub struct KvMetrics {
    kv: Arc<KvStore>,
    objects: IntGaugeVec,
    bytes: IntGaugeVec,
    dropped: IntCounterVec,
}

impl KvMetrics {
    fn families() -> Result<(IntGaugeVec, IntGaugeVec, IntCounterVec), prometheus::Error> {
        Ok((
            IntGaugeVec::new(
                Opts::new(
                    "cistern_kv_objects",
                    "Objects of each cache-only bucket this node keeps",
                ),
                &["bucket"],
            )?,
            IntGaugeVec::new(
                Opts::new(
                    "cistern_kv_bytes",
                    "Bytes of each cache-only bucket this node keeps",
                ),
                &["bucket"],
            )?,
            IntCounterVec::new(
                Opts::new(
                    "cistern_kv_dropped_total",
                    "Cache-only objects this node dropped: over the quota, past their time \
                     to live, or with bytes the cache lost",
                ),
                &["bucket", "reason"],
            )?,
        ))
    }

    /// The metrics of `kv`.
    pub fn new(kv: Arc<KvStore>) -> Result<Self, prometheus::Error> {
        let (objects, bytes, dropped) = Self::families()?;
        Ok(Self {
            kv,
            objects,
            bytes,
            dropped,
        })
    }
}

impl Collector for KvMetrics {
    fn desc(&self) -> Vec<&Desc> {
        let mut d = self.objects.desc();
        d.extend(self.bytes.desc());
        d.extend(self.dropped.desc());
        d
    }

    fn collect(&self) -> Vec<MetricFamily> {
        // Fresh families each scrape: a counter's value is the store's own count.
        let Ok((objects, bytes, dropped)) = Self::families() else {
            return Vec::new();
        };
        for u in self.kv.usage() {
            // A bucket's uploads in progress are kept as `<bucket>\0uploads` (see
            // `origin::kv::parts`): shown as `<bucket>/uploads`, a name no bucket has.
            let name = u.space.replace('\0', "/");
            let b = name.as_str();
            objects
                .with_label_values(&[b])
                .set(i64::try_from(u.objects).unwrap_or(i64::MAX));
            bytes
                .with_label_values(&[b])
                .set(i64::try_from(u.bytes).unwrap_or(i64::MAX));
            for (reason, n) in [
                ("quota", u.evicted),
                ("expired", u.expired),
                ("lost", u.lost),
            ] {
                dropped.with_label_values(&[b, reason]).inc_by(n);
            }
        }
        let mut out = objects.collect();
        out.extend(bytes.collect());
        out.extend(dropped.collect());
        out
    }
}
