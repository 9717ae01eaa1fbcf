//! `/metrics` in the Prometheus text format: ingest counters and storage gauges.
//! Hand-written because a dozen series do not justify a metrics framework.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub(crate) spans_received: AtomicU64,
    pub(crate) spans_accepted: AtomicU64,
    pub(crate) spans_rejected: AtomicU64,
    pub(crate) spans_throttled: AtomicU64,
    /// Exports refused before decoding: no slot, or no room in the ingest memory budget.
    pub(crate) exports_throttled: AtomicU64,
    pub(crate) attribute_values_truncated: AtomicU64,
}

pub(crate) fn render(
    metrics: &Metrics,
    stats: &store::StoreStats,
    exports_in_flight: u64,
    background_lease_held: bool,
) -> String {
    let mut out = String::new();
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
