//! Change-intelligence costs: adding one span to a latency sketch (ns), merging sketches, and
//! comparing every metric of one deploy over 1,000 operations.
//!
//! `cargo bench -p analysis --bench detection` (also run by `cargo xtask bench`). It prints each
//! figure beside issue 4's budget: ingest aggregates every span, so the sketch update must be
//! a small part of the ~6 µs a span costs to ingest durably today (158k spans/s).

#![allow(clippy::print_stdout, reason = "a benchmark prints its figures")]

use std::hint::black_box;
use std::time::Instant;

use analysis::{LatencySketch, Metric, Thresholds, WindowStats, compare};

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
        stats.latency.add(rng.duration_nanos());
        stats.spans += 1;
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

    let operations: Vec<(WindowStats, WindowStats)> =
        (0..1_000).map(|_| (window(&mut rng, 600), window(&mut rng, 600))).collect();
    let thresholds = Thresholds::default();
    let start = Instant::now();
    let mut regressed = 0;
    for (before, after) in &operations {
        for metric in Metric::ALL {
            let c = compare(metric, before, after, &thresholds);
            regressed += usize::from(c.verdict == analysis::Verdict::Regressed);
        }
    }
    let detect_millis = start.elapsed().as_secs_f64() * 1e3;
    println!(
        "detection: {detect_millis:.1} ms for one deploy over 1,000 operations x 5 metrics ({regressed} regressed by chance; budget: well under the 60 s re-evaluation period)"
    );
}
