//! The foundation benchmark: OTLP decode rate, durable ingest throughput on one core, bytes
//! per stored span after sealing, and trace-by-id latency in process (component figures; the
//! reads benchmark measures what a user gets through the server); then the same
//! ingest into ClickHouse (a real server started on loopback), side by side.
//!
//! `cargo bench -p spanblame --bench ingest` (set `SPANBLAME_BENCH_SPANS` to change the
//! 10M-span store size, `SPANBLAME_BENCH_CLICKHOUSE_SPANS` the 1M spans sent to ClickHouse;
//! the ClickHouse part needs `SPANBLAME_TEST_CLICKHOUSE`, which `cargo xtask bench` sets). Spans are ~400 bytes of OTLP protobuf with 10 attributes, 512 per
//! request, 5 per trace, as in `shared/research/performance.md` §2.2. It prints each figure
//! beside the floor and PRODUCT.md's target.

#![allow(clippy::print_stdout, clippy::print_stderr, reason = "a benchmark prints its figures")]

use std::time::Instant;

/// The server's allocator, so the component figures are the ones the binary gets.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;

const SPANS_PER_REQUEST: usize = 512;
const SPANS_PER_TRACE: usize = 5;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..KeyValue::default()
    }
}

fn text(key: &str, value: String) -> KeyValue {
    kv(key, any_value::Value::StringValue(value))
}

/// One export request; returns it encoded and the trace ids it holds.
fn request(rng: &mut Rng, start_unix_nanos: u64) -> (Vec<u8>, Vec<[u8; 16]>) {
    const SERVICES: [&str; 4] = ["checkout", "cart", "payments", "catalog"];
    const ROUTES: [&str; 6] =
        ["/cart", "/cart/{id}", "/checkout", "/pay", "/items/{sku}", "/healthz"];
    let service = SERVICES[(rng.next() % 4) as usize];
    let mut trace_ids = Vec::new();
    let mut spans = Vec::with_capacity(SPANS_PER_REQUEST);
    let mut trace_id = [0u8; 16];
    let mut root = [0u8; 8];
    for i in 0..SPANS_PER_REQUEST {
        if i % SPANS_PER_TRACE == 0 {
            trace_id[..8].copy_from_slice(&rng.next().to_le_bytes());
            trace_id[8..].copy_from_slice(&rng.next().to_le_bytes());
            trace_ids.push(trace_id);
        }
        let span_id = rng.next().to_le_bytes();
        if i % SPANS_PER_TRACE == 0 {
            root = span_id;
        }
        let route = ROUTES[(rng.next() % 6) as usize];
        let start = start_unix_nanos + (i as u64) * 1_000_000;
        spans.push(Span {
            trace_id: trace_id.to_vec(),
            span_id: span_id.to_vec(),
            parent_span_id: if i % SPANS_PER_TRACE == 0 { vec![] } else { root.to_vec() },
            name: format!("GET {route}"),
            kind: if i % SPANS_PER_TRACE == 0 { 2 } else { 3 },
            start_time_unix_nano: start,
            end_time_unix_nano: start + 1_000_000 + rng.next() % 50_000_000,
            attributes: vec![
                text("http.route", route.into()),
                text("http.request.method", "GET".into()),
                text("url.scheme", "https".into()),
                text("server.address", "shop.example.com".into()),
                text("user_agent.original", "Mozilla/5.0 (X11; Linux)".into()),
                text("network.protocol.version", "1.1".into()),
                text("cart.id", format!("cart-{:08x}", rng.next() as u32)),
                text(
                    "feature.flag",
                    if rng.next().is_multiple_of(2) { "on".into() } else { "off".into() },
                ),
                kv("http.response.status_code", any_value::Value::IntValue(200)),
                kv("cart.items", any_value::Value::IntValue((rng.next() % 20) as i64)),
            ],
            status: Some(Status {
                code: if rng.next().is_multiple_of(50) { 2 } else { 0 },
                ..Status::default()
            }),
            ..Span::default()
        });
    }
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    text("service.name", service.into()),
                    text("service.version", "1.4.2".into()),
                    text("deployment.environment.name", "prod".into()),
                    text("host.name", "web-01".into()),
                    text("telemetry.sdk.language", "rust".into()),
                ],
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans { spans, ..ScopeSpans::default() }],
            ..ResourceSpans::default()
        }],
    };
    (request.encode_to_vec(), trace_ids)
}

/// This process's user + system CPU seconds so far, from `/proc/self/stat` (Linux).
fn process_cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command (which may hold spaces) start after the last `)`.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the command; the
    // kernel reports them in USER_HZ, 100 on every Linux architecture spanblame targets.
    (ticks(11) + ticks(12)) / 100.0
}

/// Ingest into ClickHouse through the same store API: spans per second of wall time and per
/// second of this process's CPU (the replica's cost; the server runs on the same cores), and
/// the bytes ClickHouse keeps per span once its parts are merged.
fn clickhouse_section(embedded_rate: f64, embedded_bytes: f64) {
    if std::env::var_os("SPANBLAME_TEST_CLICKHOUSE").is_none() {
        println!(
            "  ClickHouse: skipped (set SPANBLAME_TEST_CLICKHOUSE=/usr/sbin/clickhouse-server, or run `cargo xtask bench`)"
        );
        return;
    }
    let total_spans: usize = std::env::var("SPANBLAME_BENCH_CLICKHOUSE_SPANS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let server = testbed::ClickHouse::start();
    let dir = tempfile::tempdir().unwrap();
    let store = store::SpanStore::open_with(
        dir.path(),
        store::SpanBackend::ClickHouse(store::ClickHouseOptions::new(&server.url(), "bench")),
        &store::MetadataBackend::Sqlite,
    )
    .unwrap();
    let limits = otlp::DecodeLimits::default();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let t0 = 1_763_700_000_000_000_000u64;
    let num_requests = total_spans.div_ceil(SPANS_PER_REQUEST);
    let bodies: Vec<Vec<u8>> =
        (0..num_requests).map(|i| request(&mut rng, t0 + i as u64 * 100_000_000).0).collect();
    let cpu_before = process_cpu_secs();
    let started = Instant::now();
    for body in &bodies {
        let converted = otlp::convert(otlp::decode_protobuf(body).unwrap(), &limits);
        store.append(converted.spans).unwrap();
    }
    store.flush().unwrap();
    let wall_secs = started.elapsed().as_secs_f64();
    let cpu_secs = process_cpu_secs() - cpu_before;
    let ingested = (num_requests * SPANS_PER_REQUEST) as f64;
    server.query("OPTIMIZE TABLE bench.spans FINAL");
    server.query("OPTIMIZE TABLE bench.trace_index FINAL");
    let bytes = |tables: &str| -> f64 {
        server
            .query(&format!(
                "SELECT sum(bytes_on_disk) FROM system.parts WHERE database = 'bench' AND active AND table IN ({tables})"
            ))
            .trim()
            .parse()
            .unwrap_or(0.0)
    };
    let span_bytes = bytes("'spans', 'trace_index'") / ingested;
    let sketch_bytes = bytes("'sketches', 'sketch_errors'");
    println!(
        "ClickHouse {} ({} spans, {SPANS_PER_REQUEST} spans/insert, one thread, server on the same 2 cores)",
        server.query("SELECT version()").trim(),
        ingested
    );
    println!(
        "  ingest, wall time:                  {:>9.0} spans/s   embedded above: {:.0} spans/s",
        ingested / wall_secs,
        embedded_rate
    );
    println!(
        "  ingest per replica core (CPU time): {:>9.0} spans/s   OTel Collector->ClickHouse 137k/core, Rotel 462k/core (replica side only; ClickHouse's own work not counted)",
        ingested / cpu_secs.max(1e-9)
    );
    println!(
        "  stored bytes per span (spans + trace index): {:>6.1} B   embedded above: {:.1} B; ClickHouse planning ~80 B, best in production >=34 B",
        span_bytes, embedded_bytes
    );
    println!("  sketches for all of it:              {:>9.0} B", sketch_bytes);
}

fn main() {
    let total_spans: usize = std::env::var("SPANBLAME_BENCH_SPANS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let num_requests = total_spans.div_ceil(SPANS_PER_REQUEST);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let limits = otlp::DecodeLimits::default();
    let t0 = 1_763_700_000_000_000_000u64;

    // Decode-only: the local upper bound, on a sample of requests.
    let sample: Vec<Vec<u8>> =
        (0..200).map(|i| request(&mut rng, t0 + i * 1_000_000_000).0).collect();
    let bytes_per_span =
        sample.iter().map(Vec::len).sum::<usize>() as f64 / (200 * SPANS_PER_REQUEST) as f64;
    let started = Instant::now();
    let mut decoded = 0usize;
    for _ in 0..5 {
        for body in &sample {
            let converted = otlp::convert(otlp::decode_protobuf(body).unwrap(), &limits);
            decoded += converted.spans.len();
        }
    }
    let decode_rate = decoded as f64 / started.elapsed().as_secs_f64();

    // Durable ingest on one thread: decode + convert + WAL append with fsync + head index,
    // with sealing into blocks done inline (so it is charged to the same core).
    let dir = tempfile::tempdir().unwrap();
    let store = store::SpanStore::open(dir.path(), store::StoreOptions::default()).unwrap();
    let mut sampled_traces = Vec::new();
    let mut generate_secs = 0.0;
    let started = Instant::now();
    for i in 0..num_requests {
        let generated = Instant::now();
        let (body, traces) = request(&mut rng, t0 + i as u64 * 100_000_000);
        generate_secs += generated.elapsed().as_secs_f64();
        if i % 50 == 0 {
            sampled_traces.push(traces[0]);
        }
        let converted = otlp::convert(otlp::decode_protobuf(&body).unwrap(), &limits);
        store.append(converted.spans).unwrap();
        // What the server's once-a-second job does: seal frozen heads, flush the catalog.
        if i % 64 == 63 {
            store.maintain(0).unwrap();
        }
    }
    store.flush().unwrap();
    let ingest_secs = started.elapsed().as_secs_f64() - generate_secs;
    let ingested = num_requests * SPANS_PER_REQUEST;
    let ingest_rate = ingested as f64 / ingest_secs;
    let stats = store.stats();
    let stored_bytes_per_span = stats.block_bytes as f64 / stats.num_block_spans as f64;

    // Trace by id, over traces spread across every block.
    let mut latencies_us: Vec<f64> = Vec::new();
    for _ in 0..3 {
        for trace in &sampled_traces {
            let id = model::TraceId::from_bytes(*trace).unwrap();
            let started = Instant::now();
            let spans = store.trace(&id).unwrap();
            latencies_us.push(started.elapsed().as_secs_f64() * 1e6);
            assert_eq!(spans.len(), SPANS_PER_TRACE);
        }
    }
    latencies_us.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let pct = |p: f64| latencies_us[((latencies_us.len() - 1) as f64 * p) as usize] / 1000.0;

    println!(
        "spanblame ingest benchmark ({ingested} spans, {bytes_per_span:.0} B/span OTLP protobuf, 10 attributes, {SPANS_PER_REQUEST} spans/request, one thread)"
    );
    println!(
        "  decode only (protobuf -> model):   {:>9.0} spans/s  {:>6.1} MB/s   (local upper bound)",
        decode_rate,
        decode_rate * bytes_per_span / 1e6
    );
    println!(
        "  durable ingest (fsync per append): {:>9.0} spans/s  {:>6.1} MB/s   floor 100k/s, gate 250k/s, target 500k/s",
        ingest_rate,
        ingest_rate * bytes_per_span / 1e6
    );
    println!(
        "  stored bytes per span (blocks):    {:>9.1} B            floor 60 B, gate 40 B, target 25 B (Tempo vParquet ~57 B)",
        stored_bytes_per_span
    );
    println!(
        "  trace by id in process, a component figure ({} stored spans, {} blocks, {} lookups): p50 {:.2} ms, p99 {:.2} ms   (what a user gets: the reads benchmark)",
        stats.num_block_spans,
        stats.num_blocks,
        latencies_us.len(),
        pct(0.5),
        pct(0.99)
    );
    drop(store);
    clickhouse_section(ingest_rate, stored_bytes_per_span);
}
