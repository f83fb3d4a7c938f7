//! Cistern's Prometheus metrics. The binary owns the registry; components receive handles.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry,
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
}

impl Metrics {
    /// Creates the metrics in a fresh registry.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let buckets = vec![
            0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            2.5, 5.0, 10.0, 30.0,
        ];
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
            served_bytes: IntCounterVec::new(
                Opts::new(
                    "cistern_served_bytes_total",
                    "Object bytes sent to clients by tier",
                ),
                &["tier"],
            )?,
            cache_results: IntCounterVec::new(
                Opts::new(
                    "cistern_cache_results_total",
                    "Object reads by what the cache did",
                ),
                &["result"],
            )?,
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
                .buckets(buckets),
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
        Ok(m)
    }
}
