//! `/metrics` in the Prometheus text format: the build, the process (Linux), HTTP requests by
//! route, ingest counters, storage gauges and write and read durations, detection, the
//! notification outbox and delivery attempts per receiver, mirrors per repository, the
//! background lease and the audit log. Hand-written because a few dozen families do not
//! justify a metrics framework; `docs/alerts.yml` and `docs/grafana-dashboard.json` read them.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use analysis::exposition::label_value;
use analysis::histogram::Histogram;

/// Request-duration buckets in seconds (Prometheus' client defaults).
const HTTP_BUCKETS_SECONDS: [f64; 11] =
    [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

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
    http: Mutex<BTreeMap<(&'static str, &'static str, u16), Histogram>>,
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
        http.entry((method, route, status))
            .or_insert_with(|| Histogram::new(&HTTP_BUCKETS_SECONDS))
            .observe(seconds);
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
                label_value(route),
                stats.count
            );
        }
        let _ = writeln!(
            out,
            "# HELP spanblame_http_request_duration_seconds Time to answer an HTTP request, by method, route template and status.\n# TYPE spanblame_http_request_duration_seconds histogram"
        );
        for ((method, route, status), stats) in http.iter() {
            let labels =
                format!("method=\"{method}\",route=\"{}\",status=\"{status}\"", label_value(route));
            histogram_series(out, "spanblame_http_request_duration_seconds", &labels, stats);
        }
    }
}

/// What a scrape shows besides the counters: the store, the ingest queue, the outbox
/// (`(receiver, state, count)` for pending and dead deliveries), and through the guard the
/// jobs' telemetry, the lease and the audit log.
pub struct Scrape<'a> {
    pub stats: &'a store::StoreStats,
    pub exports_in_flight: u64,
    pub outbox: &'a [(String, store::DeliveryState, u64)],
    pub guard: &'a crate::Guard,
}

/// One histogram's `_bucket`, `_sum` and `_count` lines, with `labels` (may be empty).
fn histogram_series(out: &mut String, name: &str, labels: &str, h: &Histogram) {
    let sep = if labels.is_empty() { "" } else { "," };
    for (bound, cumulative) in h.cumulative() {
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}");
    }
    let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
    let _ = writeln!(
        out,
        "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}\n{name}_sum{braces} {}\n{name}_count{braces} {}",
        h.count, h.sum, h.count
    );
}

/// A family's `# HELP` and `# TYPE` lines.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
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

pub fn render(metrics: &Metrics, scrape: &Scrape<'_>) -> String {
    let Scrape { stats, exports_in_flight, outbox, guard } = *scrape;
    let jobs = &guard.jobs;
    let background_lease_held = jobs.lease.is_held();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP spanblame_build_info The running build: its version and commit (`SPANBLAME_BUILD_COMMIT` at build time, `unknown` without).\n# TYPE spanblame_build_info gauge\nspanblame_build_info{{version=\"{}\",commit=\"{}\"}} 1",
        label_value(env!("CARGO_PKG_VERSION")),
        label_value(option_env!("SPANBLAME_BUILD_COMMIT").unwrap_or("unknown"))
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
    render_durations(&mut out, stats);
    render_jobs(&mut out, jobs);
    for (name, help, counter) in [
        (
            "spanblame_audit_records_total",
            "Audit records appended to the hash-chained log.",
            &guard.audit_records_total,
        ),
        (
            "spanblame_audit_failures_total",
            "Audit appends that failed (the request was answered 503 and nothing was done).",
            &guard.audit_failures_total,
        ),
    ] {
        family(&mut out, name, "counter", help);
        let _ = writeln!(out, "{name} {}", counter.load(Ordering::Relaxed));
    }
    let _ = writeln!(
        out,
        "# HELP spanblame_notifications Notifications waiting for delivery (pending) or given up on (dead), per receiver.\n# TYPE spanblame_notifications gauge"
    );
    for (receiver, state, count) in outbox {
        let _ = writeln!(
            out,
            "spanblame_notifications{{receiver=\"{}\",state=\"{}\"}} {count}",
            label_value(receiver),
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

/// The store's write and read durations.
fn render_durations(out: &mut String, stats: &store::StoreStats) {
    for (name, help, h) in [
        (
            "spanblame_wal_write_seconds",
            "A group commit's WAL write and sync (embedded engine).",
            &stats.wal_write_seconds,
        ),
        (
            "spanblame_block_seal_seconds",
            "Sealing a head into a block, with its catalog and sketches (embedded engine).",
            &stats.seal_seconds,
        ),
        (
            "spanblame_compaction_seconds",
            "One merge of small blocks into a larger one (embedded engine).",
            &stats.compaction_seconds,
        ),
    ] {
        family(out, name, "histogram", help);
        histogram_series(out, name, "", h);
    }
    family(
        out,
        "spanblame_query_duration_seconds",
        "histogram",
        "Reads of the span store, by kind: `trace` (one trace by id) and `search`.",
    );
    histogram_series(
        out,
        "spanblame_query_duration_seconds",
        "kind=\"trace\"",
        &stats.trace_read_seconds,
    );
    histogram_series(
        out,
        "spanblame_query_duration_seconds",
        "kind=\"search\"",
        &stats.search_seconds,
    );
}

/// Detection, explanation, delivery attempts and mirrors, as the jobs counted them.
fn render_jobs(out: &mut String, jobs: &jobs::Jobs) {
    let t = &jobs.telemetry;
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    let mut series = |name: &str, kind: &str, help: &str, value: String| {
        family(out, name, kind, help);
        let _ = writeln!(out, "{name} {value}");
    };
    series(
        "spanblame_detection_passes_total",
        "counter",
        "Detection passes over the deploys under evaluation (on the lease's holder).",
        load(&t.detection_passes_total).to_string(),
    );
    series(
        "spanblame_detection_last_pass_timestamp_seconds",
        "gauge",
        "When the last detection pass ended, in seconds since 1970 (0: none yet on this replica).",
        load(&t.last_detection_pass_unix_secs).to_string(),
    );
    series(
        "spanblame_detection_deploys_under_evaluation",
        "gauge",
        "Deploys whose evaluation was not final at the last pass.",
        load(&t.deploys_under_evaluation).to_string(),
    );
    series(
        "spanblame_detection_oldest_due_look_lag_seconds",
        "gauge",
        "How long the oldest due look had waited past its minute at the last pass.",
        (load(&t.oldest_due_look_lag_millis) as f64 / 1000.0).to_string(),
    );
    series(
        "spanblame_detection_looks_total",
        "counter",
        "Looks taken: one deploy compared at one minute.",
        load(&t.looks_total).to_string(),
    );
    if let Some(budget) = jobs.retention.disk_budget_bytes {
        series(
            "spanblame_retention_disk_budget_bytes",
            "gauge",
            "`retention.disk_budget`: the bytes of blocks and WAL retention keeps the store under.",
            budget.to_string(),
        );
    }
    let snapshot = t.snapshot();
    family(
        out,
        "spanblame_explanation_seconds",
        "histogram",
        "Explaining one regression: exemplars, evidence, suspects and the rollback draft.",
    );
    histogram_series(out, "spanblame_explanation_seconds", "", &snapshot.explanation_seconds);
    family(out, "spanblame_findings_total", "counter", "Findings made, by verdict.");
    for (verdict, n) in &snapshot.findings_total {
        let _ =
            writeln!(out, "spanblame_findings_total{{verdict=\"{}\"}} {n}", label_value(verdict));
    }
    family(
        out,
        "spanblame_notification_attempts_total",
        "counter",
        "Delivery attempts, by receiver and outcome: delivered, retried (will be tried again), dead (given up).",
    );
    for ((receiver, outcome), n) in &snapshot.deliveries_total {
        let _ = writeln!(
            out,
            "spanblame_notification_attempts_total{{receiver=\"{}\",outcome=\"{outcome}\"}} {n}",
            label_value(receiver)
        );
    }
    family(
        out,
        "spanblame_mirror_last_success_timestamp_seconds",
        "gauge",
        "When each repository's mirror was last cloned or fetched without error, in seconds since 1970.",
    );
    for (repository, health) in &snapshot.mirrors {
        if let Some(at) = health.last_success_unix_secs {
            let _ = writeln!(
                out,
                "spanblame_mirror_last_success_timestamp_seconds{{repository=\"{}\"}} {at}",
                label_value(repository)
            );
        }
    }
    family(
        out,
        "spanblame_mirror_fetch_failures_total",
        "counter",
        "Failed clones and fetches, per repository.",
    );
    for (repository, health) in &snapshot.mirrors {
        let _ = writeln!(
            out,
            "spanblame_mirror_fetch_failures_total{{repository=\"{}\"}} {}",
            label_value(repository),
            health.failures_total
        );
    }
}
