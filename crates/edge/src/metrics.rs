//! `/metrics` in the Prometheus text format: the build, the process (Linux), HTTP requests by
//! route, ingest counters, storage gauges and the notification outbox per receiver.
//! Hand-written because a few dozen series do not justify a metrics framework.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Request-duration buckets in seconds (Prometheus' client defaults).
const HTTP_BUCKETS_SECONDS: [f64; 11] =
    [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Requests of one (method, route template, status code), and how long they took.
#[derive(Debug, Default)]
struct RequestStats {
    /// Requests per bucket (not cumulative), the last past every bound.
    buckets: [u64; HTTP_BUCKETS_SECONDS.len() + 1],
    sum_seconds: f64,
    count: u64,
}

#[derive(Debug)]
pub struct Metrics {
    /// When this process started, for `process_start_time_seconds`.
    pub started_unix_secs: u64,
    pub spans_received: AtomicU64,
    pub spans_accepted: AtomicU64,
    pub spans_rejected: AtomicU64,
    pub spans_throttled: AtomicU64,
    /// Exports refused before decoding: no slot, or no room in the ingest memory budget.
    pub exports_throttled: AtomicU64,
    pub attribute_values_truncated: AtomicU64,
    /// By (method, route template, status): a route is a row of `routes()`, so the series are
    /// bounded by the route table, never by the paths clients send.
    http: Mutex<BTreeMap<(&'static str, &'static str, u16), RequestStats>>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let started_unix_secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Metrics {
            started_unix_secs,
            spans_received: AtomicU64::new(0),
            spans_accepted: AtomicU64::new(0),
            spans_rejected: AtomicU64::new(0),
            spans_throttled: AtomicU64::new(0),
            exports_throttled: AtomicU64::new(0),
            attribute_values_truncated: AtomicU64::new(0),
            http: Mutex::new(BTreeMap::new()),
        }
    }

    /// Counts one answered request of a route.
    pub fn observe_request(
        &self,
        method: &'static str,
        route: &'static str,
        status: u16,
        seconds: f64,
    ) {
        let mut http = self.http.lock().unwrap_or_else(|p| p.into_inner());
        let stats = http.entry((method, route, status)).or_default();
        let at = HTTP_BUCKETS_SECONDS
            .iter()
            .position(|b| seconds <= *b)
            .unwrap_or(HTTP_BUCKETS_SECONDS.len());
        stats.buckets[at] += 1;
        stats.sum_seconds += seconds;
        stats.count += 1;
    }

    fn render_http(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP spanblame_http_requests_total HTTP requests answered, by method, route template and status.\n# TYPE spanblame_http_requests_total counter"
        );
        let http = self.http.lock().unwrap_or_else(|p| p.into_inner());
        for ((method, route, status), stats) in http.iter() {
            let _ = writeln!(
                out,
                "spanblame_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {}",
                label(route),
                stats.count
            );
        }
        let _ = writeln!(
            out,
            "# HELP spanblame_http_request_duration_seconds Time to answer an HTTP request, by method, route template and status.\n# TYPE spanblame_http_request_duration_seconds histogram"
        );
        for ((method, route, status), stats) in http.iter() {
            let labels =
                format!("method=\"{method}\",route=\"{}\",status=\"{status}\"", label(route));
            let mut cumulative = 0;
            for (bound, count) in HTTP_BUCKETS_SECONDS.iter().zip(&stats.buckets) {
                cumulative += count;
                let _ = writeln!(
                    out,
                    "spanblame_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "spanblame_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}\nspanblame_http_request_duration_seconds_sum{{{labels}}} {}\nspanblame_http_request_duration_seconds_count{{{labels}}} {}",
                stats.count, stats.sum_seconds, stats.count
            );
        }
    }
}

/// What a scrape shows besides the counters: the store, the ingest queue, the lease and the
/// outbox (`(receiver, state, count)` for pending and dead deliveries).
pub struct Scrape<'a> {
    pub stats: &'a store::StoreStats,
    pub exports_in_flight: u64,
    pub background_lease_held: bool,
    pub outbox: &'a [(String, store::DeliveryState, u64)],
}

/// This process's resident memory and open file descriptors, where `/proc` tells (Linux).
fn process() -> (Option<u64>, Option<u64>) {
    let page_bytes = 4096;
    let rss = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|text| text.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map(|pages| pages * page_bytes);
    let fds = std::fs::read_dir("/proc/self/fd").ok().map(|dir| dir.count() as u64);
    (rss, fds)
}

/// A label value as the text format writes it (`\`, `"` and newlines escaped).
fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

pub fn render(metrics: &Metrics, scrape: &Scrape<'_>) -> String {
    let Scrape { stats, exports_in_flight, background_lease_held, outbox } = *scrape;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP spanblame_build_info The running build: its version.\n# TYPE spanblame_build_info gauge\nspanblame_build_info{{version=\"{}\"}} 1",
        label(env!("CARGO_PKG_VERSION"))
    );
    let _ = writeln!(
        out,
        "# HELP process_start_time_seconds When the process started, in seconds since 1970.\n# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds {}",
        metrics.started_unix_secs
    );
    let (rss, fds) = process();
    if let Some(rss) = rss {
        let _ = writeln!(
            out,
            "# HELP process_resident_memory_bytes Resident memory.\n# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {rss}"
        );
    }
    if let Some(fds) = fds {
        let _ = writeln!(
            out,
            "# HELP process_open_fds Open file descriptors.\n# TYPE process_open_fds gauge\nprocess_open_fds {fds}"
        );
    }
    metrics.render_http(&mut out);
    let _ = writeln!(
        out,
        "# HELP spanblame_notifications Notifications waiting for delivery (pending) or given up on (dead), per receiver.\n# TYPE spanblame_notifications gauge"
    );
    for (receiver, state, count) in outbox {
        let _ = writeln!(
            out,
            "spanblame_notifications{{receiver=\"{}\",state=\"{}\"}} {count}",
            label(receiver),
            state.as_str()
        );
    }
    let mut series = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
    };
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    series(
        "spanblame_background_lease_held",
        "gauge",
        "1 on the replica that runs the fleet's background jobs (detection, retention, commit import, notifications), else 0.",
        u64::from(background_lease_held),
    );
    series(
        "spanblame_spans_received_total",
        "counter",
        "Spans received over OTLP, valid or not.",
        load(&metrics.spans_received),
    );
    series(
        "spanblame_spans_accepted_total",
        "counter",
        "Spans durably stored.",
        load(&metrics.spans_accepted),
    );
    series(
        "spanblame_spans_rejected_total",
        "counter",
        "Spans rejected as invalid (reported in partial_success).",
        load(&metrics.spans_rejected),
    );
    series(
        "spanblame_spans_throttled_total",
        "counter",
        "Spans refused with 429 / RESOURCE_EXHAUSTED under back-pressure.",
        load(&metrics.spans_throttled),
    );
    series(
        "spanblame_exports_throttled_total",
        "counter",
        "Exports refused with 429 / RESOURCE_EXHAUSTED before decoding (no slot free, or the ingest memory budget full).",
        load(&metrics.exports_throttled),
    );
    series(
        "spanblame_attribute_values_truncated_total",
        "counter",
        "Attribute values shortened to the length limit.",
        load(&metrics.attribute_values_truncated),
    );
    series(
        "spanblame_ingest_exports_in_flight",
        "gauge",
        "OTLP exports waiting for a durable write (the ingest queue depth).",
        exports_in_flight,
    );
    series(
        "spanblame_ingest_queue_bytes",
        "gauge",
        "Encoded bytes queued for the next WAL group commit.",
        stats.pending_write_bytes,
    );
    series("spanblame_wal_bytes", "gauge", "Bytes in write-ahead log segments.", stats.wal_bytes);
    series(
        "spanblame_wal_segments",
        "gauge",
        "Write-ahead log segments on disk.",
        stats.num_wal_segments,
    );
    series(
        "spanblame_head_spans",
        "gauge",
        "Spans in the in-memory head, not yet sealed into a block.",
        stats.num_head_spans,
    );
    series(
        "spanblame_frozen_heads",
        "gauge",
        "Heads waiting to be sealed.",
        stats.num_frozen_heads,
    );
    series("spanblame_blocks", "gauge", "Sealed span blocks on disk.", stats.num_blocks);
    series(
        "spanblame_block_bytes",
        "gauge",
        "Bytes of sealed span blocks on disk.",
        stats.block_bytes,
    );
    series("spanblame_block_spans", "gauge", "Spans in sealed blocks.", stats.num_block_spans);
    series(
        "spanblame_blocks_sealed_total",
        "counter",
        "Blocks sealed since start.",
        stats.num_sealed_blocks_total,
    );
    series(
        "spanblame_blocks_deleted_total",
        "counter",
        "Blocks deleted by retention since start.",
        stats.num_deleted_blocks_total,
    );
    series(
        "spanblame_blocks_compacted_total",
        "counter",
        "Blocks merged into larger ones by compaction since start.",
        stats.num_compacted_blocks_total,
    );
    out
}
