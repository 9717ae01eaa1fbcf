//! Change-intelligence costs: adding one span to a latency sketch (ns), merging sketches, and
//! one look of detection (`analysis::detect::detect`: p-values, Benjamini–Hochberg, verdicts
//! and guards) for one deploy over 1,000 operations with 30 minutes of data each.
//!
//! `cargo bench -p analysis --bench detection` (also run by `cargo xtask bench`). It prints each
//! figure beside issue 4's budget: ingest aggregates every span, so the sketch update must be
//! a small part of the ~6 µs a span costs to ingest durably today (158k spans/s).

#![allow(clippy::print_stdout, reason = "a benchmark prints its figures")]

use std::hint::black_box;
use std::time::Instant;

use analysis::detect::{Guard, OperationWindows, VersionSplit, detect};
use analysis::{LatencySketch, Thresholds, Verdict, WindowStats};

/// xorshift: deterministic durations without a dependency.
struct Rng(u64);

impl Rng {
    fn duration_nanos(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        // 1 ms .. ~1 s, log-uniform-ish.
        1_000_000 + (self.0 % 1_000) * (self.0 % 1_000_000)
    }
}

fn window(rng: &mut Rng, spans: u64) -> WindowStats {
    let mut stats = WindowStats::default();
    for _ in 0..spans {
        stats.add(rng.duration_nanos(), None, false);
    }
    stats
}

fn main() {
    let mut rng = Rng(0x5eed);
    let values: Vec<u64> = (0..4_000_000).map(|_| rng.duration_nanos()).collect();

    let mut sketch = LatencySketch::new();
    let start = Instant::now();
    for &v in &values {
        sketch.add(v);
    }
    let add_nanos = start.elapsed().as_nanos() as f64 / values.len() as f64;
    black_box(&sketch);
    println!(
        "sketch add: {add_nanos:.1} ns/span (budget: a small part of the ~6,300 ns/span durable ingest; {} buckets)",
        sketch.buckets().count()
    );

    let parts: Vec<LatencySketch> = values
        .chunks(2_000)
        .map(|chunk| {
            let mut s = LatencySketch::new();
            chunk.iter().for_each(|&v| s.add(v));
            s
        })
        .collect();
    let start = Instant::now();
    let mut merged = LatencySketch::new();
    for part in &parts {
        merged.merge(part);
    }
    let merge_micros = start.elapsed().as_secs_f64() * 1e6 / parts.len() as f64;
    black_box(&merged);
    println!("sketch merge: {merge_micros:.2} µs per minute-sketch (rollups and window reads)");

    // 1,000 operations: an hour before, 30 minutes after at 20 spans a minute, a day-earlier guard.
    let operations: Vec<OperationWindows> = (0..1_000)
        .map(|i| OperationWindows {
            operation: format!("/op/{i}"),
            span_kind: "server".into(),
            after: (0..30)
                .map(|_| VersionSplit {
                    deployed: window(&mut rng, 20),
                    others: WindowStats::default(),
                })
                .collect(),
            before: window(&mut rng, 1_200),
            guards: vec![Guard { label: "a day earlier".into(), stats: window(&mut rng, 600) }],
        })
        .collect();
    let start = Instant::now();
    let detection = detect(&operations, 30, &Thresholds::default());
    let detect_millis = start.elapsed().as_secs_f64() * 1e3;
    let regressed =
        detection.findings.iter().filter(|f| f.comparison.verdict == Verdict::Regressed).count();
    println!(
        "detection: {detect_millis:.1} ms for one look at one deploy over 1,000 operations x 5 metrics ({} tests, {regressed} regressed by chance; budget: well under the 60 s look period)",
        detection.tests
    );
}
