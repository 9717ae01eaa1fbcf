//! Reads at volume, as a user gets them: this process is the load generator and the client;
//! the server is the real `spanblame serve` in its own process.
//!
//! 1. Starts `spanblame serve` on a fresh data directory (loopback ports).
//! 2. Sends `SPANBLAME_BENCH_SPANS` spans (default 10M) over OTLP/gRPC: exports of 1,000
//!    spans, 5 per trace, 20 services, 10 attributes (one a tenant id of 1,000 values), unique
//!    random trace ids, start times spread over the last 24 hours in sending order, 1% errors,
//!    1% slower than 150 ms. Several exports in flight, as collectors send.
//! 3. Times, over HTTP, `SPANBLAME_BENCH_QUERIES`
//!    (default 200) of each: trace by id (ids sampled over every stored trace, and ids that do
//!    not exist), and the searches below, each through `/api/v1/traces` and again in TraceQL
//!    through Tempo's `/api/search`; reports p50/p99 and the server's RSS.
//! 4. Loads the same spans into ClickHouse (`SPANBLAME_TEST_CLICKHOUSE`, which `cargo xtask
//!    bench` sets; a plain `MergeTree` ordered by service and start time) and times the same
//!    searches there, side by side (`SPANBLAME_BENCH_CLICKHOUSE_QUERIES` of each, default the
//!    same count: at 100M spans its scans take seconds each).
//!
//! `cargo xtask bench` runs it; `cargo bench -p spanblame --bench reads` alone too.

#![allow(clippy::print_stdout, clippy::print_stderr, reason = "a benchmark prints its figures")]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;

const SPANS_PER_EXPORT: usize = 1_000;
const SPANS_PER_TRACE: usize = 5;
const SERVICES: usize = 20;
const TENANTS: u64 = 1_000;
const DAY_NANOS: u64 = 86_400 * 1_000_000_000;
const HOUR_NANOS: u64 = 3_600 * 1_000_000_000;
const EXPORTS_IN_FLIGHT: usize = 4;

struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// One generated span, the source of both the OTLP export and the ClickHouse row.
struct GenSpan {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    parent: Option<[u8; 8]>,
    service: usize,
    route: &'static str,
    start_unix_nanos: u64,
    duration_nanos: u64,
    error: bool,
    tenant: u64,
    cart: u32,
}

const ROUTES: [&str; 8] =
    ["/cart", "/cart/{id}", "/checkout", "/pay", "/items/{sku}", "/search", "/account", "/healthz"];

/// The spans of export `i` of `num_exports`, the same every time it is asked for.
fn export_spans(i: u64, num_exports: u64, begin_unix_nanos: u64) -> Vec<GenSpan> {
    let mut rng = Rng::new(i + 1);
    let base = begin_unix_nanos + i * (DAY_NANOS / num_exports.max(1));
    let mut out = Vec::with_capacity(SPANS_PER_EXPORT);
    for _ in 0..SPANS_PER_EXPORT / SPANS_PER_TRACE {
        let mut trace_id = [0u8; 16];
        trace_id[..8].copy_from_slice(&rng.next().to_le_bytes());
        trace_id[8..].copy_from_slice(&rng.next().to_le_bytes());
        let service = (rng.next() % SERVICES as u64) as usize;
        let tenant = rng.next() % TENANTS;
        let start = base + rng.next() % 1_000_000_000;
        let slow = rng.next().is_multiple_of(100);
        let root_duration = if slow {
            150_000_000 + rng.next() % 650_000_000
        } else {
            5_000_000 + rng.next() % 55_000_000
        };
        let root = rng.next().to_le_bytes();
        for s in 0..SPANS_PER_TRACE {
            let (span_id, parent, duration) = if s == 0 {
                (root, None, root_duration)
            } else {
                (rng.next().to_le_bytes(), Some(root), 1_000_000 + rng.next() % (root_duration / 2))
            };
            out.push(GenSpan {
                trace_id,
                span_id,
                parent,
                service,
                route: ROUTES[(rng.next() % ROUTES.len() as u64) as usize],
                start_unix_nanos: start + s as u64 * 100_000,
                duration_nanos: duration,
                error: rng.next().is_multiple_of(100),
                tenant,
                cart: rng.next() as u32,
            });
        }
    }
    out
}

fn text(key: &str, value: String) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(value)) }),
        ..KeyValue::default()
    }
}

fn int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(any_value::Value::IntValue(value)) }),
        ..KeyValue::default()
    }
}

fn export_request(spans: &[GenSpan]) -> ExportTraceServiceRequest {
    let mut by_service: Vec<Vec<Span>> = (0..SERVICES).map(|_| Vec::new()).collect();
    for g in spans {
        by_service[g.service].push(Span {
            trace_id: g.trace_id.to_vec(),
            span_id: g.span_id.to_vec(),
            parent_span_id: g.parent.map(|p| p.to_vec()).unwrap_or_default(),
            name: format!("GET {}", g.route),
            kind: if g.parent.is_none() { 2 } else { 3 },
            start_time_unix_nano: g.start_unix_nanos,
            end_time_unix_nano: g.start_unix_nanos + g.duration_nanos,
            attributes: vec![
                text("http.route", g.route.into()),
                text("http.request.method", "GET".into()),
                text("url.scheme", "https".into()),
                text("server.address", "shop.example.com".into()),
                text("user_agent.original", "Mozilla/5.0 (X11; Linux x86_64)".into()),
                text("tenant.id", format!("tenant-{}", g.tenant)),
                text("cart.id", format!("cart-{:08x}", g.cart)),
                text("feature.flag", if g.cart % 2 == 0 { "on".into() } else { "off".into() }),
                int("http.response.status_code", if g.error { 500 } else { 200 }),
                int("cart.items", i64::from(g.cart % 20)),
            ],
            status: Some(Status { code: if g.error { 2 } else { 0 }, ..Status::default() }),
            ..Span::default()
        });
    }
    let resource_spans = by_service
        .into_iter()
        .enumerate()
        .filter(|(_, spans)| !spans.is_empty())
        .map(|(service, spans)| ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    text("service.name", format!("svc-{service}")),
                    text("service.version", "1.4.2".into()),
                    text("deployment.environment.name", "prod".into()),
                    text("host.name", format!("web-{:02}", service % 7)),
                    text("telemetry.sdk.language", "rust".into()),
                ],
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans { spans, ..ScopeSpans::default() }],
            ..ResourceSpans::default()
        })
        .collect();
    ExportTraceServiceRequest { resource_spans }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The server under test.
struct Server {
    child: Child,
    http: SocketAddr,
    otlp_grpc: SocketAddr,
    /// Compactions the server logged, and the milliseconds they took.
    compactions: Arc<(AtomicU64, AtomicU64)>,
}

impl Server {
    fn start(data_dir: &std::path::Path) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_spanblame"))
            .args(["serve", "--data-dir"])
            .arg(data_dir)
            .args(["--http-addr", "127.0.0.1:0", "--otlp-grpc-addr", "127.0.0.1:0"])
            .args(["--otlp-http-addr", "127.0.0.1:0"])
            .args(["--zipkin-addr", "127.0.0.1:0"])
            .env("NO_COLOR", "1")
            .env("SPANBLAME_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning spanblame");
        let stderr = child.stderr.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        let compactions: Arc<(AtomicU64, AtomicU64)> = Arc::default();
        let counted = Arc::clone(&compactions);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("compacted blocks") {
                    let took = line
                        .split_whitespace()
                        .find_map(|f| f.strip_prefix("took_ms="))
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(0);
                    counted.0.fetch_add(1, Ordering::Relaxed);
                    counted.1.fetch_add(took, Ordering::Relaxed);
                } else if line.contains("spanblame is listening") {
                    let _ = tx.send(line);
                } else if line.contains("ERROR") || line.contains("WARN") {
                    eprintln!("[spanblame] {line}");
                }
            }
        });
        let line = rx.recv_timeout(Duration::from_secs(60)).expect("spanblame listens");
        let field = |name: &str| -> SocketAddr {
            let start = line.find(&format!(" {name}=")).expect("address logged") + name.len() + 2;
            line[start..].split_whitespace().next().expect("address").parse().expect("address")
        };
        Server { http: field("http"), otlp_grpc: field("otlp_grpc"), child, compactions }
    }

    fn rss_bytes(&self) -> u64 {
        rss_bytes(self.child.id())
    }

    fn metric(&self, name: &str) -> f64 {
        let text = reqwest::blocking::get(format!("http://{}/metrics", self.http))
            .and_then(|r| r.text())
            .unwrap_or_default();
        text.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.split_whitespace().last()?.parse().ok())
            .unwrap_or(f64::NAN)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A process's resident memory, from `/proc/<pid>/status` (0 when it is gone).
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Samples the server's RSS every 200 ms while `running`; returns the peak.
fn watch_rss(pid: u32, running: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut peak = 0;
        while running.load(Ordering::Relaxed) {
            let rss = rss_bytes(pid);
            peak = peak.max(rss);
            std::thread::sleep(Duration::from_millis(200));
        }
        peak
    })
}

/// Sends every export over OTLP/gRPC with several in flight; returns the sampled trace ids
/// (one in 200 traces), the wall time and the wire bytes per span.
fn ingest(
    server: &Server,
    num_exports: u64,
    begin_unix_nanos: u64,
) -> (Vec<[u8; 16]>, Duration, f64) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    let next = Arc::new(AtomicU64::new(0));
    let wire_bytes = Arc::new(AtomicU64::new(0));
    let url = format!("http://{}", server.otlp_grpc);
    let started = Instant::now();
    let sampled = runtime.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..EXPORTS_IN_FLIGHT {
            let (next, wire_bytes, url) = (Arc::clone(&next), Arc::clone(&wire_bytes), url.clone());
            tasks.push(tokio::spawn(async move {
                let mut client = TraceServiceClient::connect(url)
                    .await
                    .expect("connecting over gRPC")
                    .max_encoding_message_size(64 * 1024 * 1024);
                let mut sampled = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= num_exports {
                        return sampled;
                    }
                    let spans = export_spans(i, num_exports, begin_unix_nanos);
                    sampled.extend(spans.iter().step_by(SPANS_PER_TRACE * 200).map(|s| s.trace_id));
                    let request = export_request(&spans);
                    wire_bytes.fetch_add(request.encoded_len() as u64, Ordering::Relaxed);
                    loop {
                        match client.export(request.clone()).await {
                            Ok(_) => break,
                            // Busy (429 / RESOURCE_EXHAUSTED): back off as exporters do.
                            Err(status)
                                if status.code() == tonic::Code::ResourceExhausted
                                    || status.code() == tonic::Code::Unavailable =>
                            {
                                tokio::time::sleep(Duration::from_millis(50)).await
                            }
                            Err(status) => panic!("export {i} refused: {status}"),
                        }
                    }
                    if i % (num_exports / 20).max(1) == 0 {
                        eprintln!("  sent {i} of {num_exports} exports");
                    }
                }
            }));
        }
        let mut sampled = Vec::new();
        for task in tasks {
            sampled.extend(task.await.expect("a sender"));
        }
        sampled
    });
    let per_span =
        wire_bytes.load(Ordering::Relaxed) as f64 / (num_exports as f64 * SPANS_PER_EXPORT as f64);
    (sampled, started.elapsed(), per_span)
}

/// p50 and p99 of `samples`, in milliseconds.
fn percentiles(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let at =
        |p: f64| samples[((samples.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e3;
    (at(0.5), at(0.99))
}

/// Times `n` GETs of the paths `path(i)` gives; checks each answered 200 (404 for a
/// trace that does not exist).
fn time_gets(
    client: &reqwest::blocking::Client,
    base: &str,
    n: usize,
    path: impl Fn(usize) -> String,
) -> Vec<Duration> {
    (0..n)
        .map(|i| {
            let url = format!("{base}{}", path(i));
            let started = Instant::now();
            let response = client.get(&url).send().expect("the server answers");
            let status = response.status();
            let body = response.bytes().expect("a body");
            let took = started.elapsed();
            assert!(
                status.is_success() || (status == 404 && url.contains("/traces/dead")),
                "{url}: {status} {}",
                String::from_utf8_lossy(&body)
            );
            took
        })
        .collect()
}

fn rfc3339(unix_nanos: u64) -> String {
    jiff::Timestamp::from_nanosecond(i128::from(unix_nanos)).expect("a time").to_string()
}

struct SearchCase {
    name: &'static str,
    /// The query string of `/api/v1/traces`, for query `i`.
    spanblame: Box<dyn Fn(usize) -> String + Sync>,
    /// The same search in ClickHouse SQL.
    clickhouse: Box<dyn Fn(usize) -> String + Sync>,
    /// The same search in TraceQL: the query string of Tempo's `/api/search`.
    traceql: Box<dyn Fn(usize) -> String + Sync>,
    floor_ms: f64,
}

/// `q=<TraceQL>&start=…&end=…&limit=20` for Tempo's search, times in Unix seconds.
fn tempo_query(traceql: &str, start_unix_nanos: u64, end_unix_nanos: u64) -> String {
    let q: String = traceql
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'_' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    format!(
        "q={q}&start={}&end={}&limit=20",
        start_unix_nanos / 1_000_000_000,
        end_unix_nanos / 1_000_000_000
    )
}

fn search_cases(begin: u64, end: u64) -> Vec<SearchCase> {
    let (day_start, day_end) = (rfc3339(begin), rfc3339(end + HOUR_NANOS));
    let hour_start = rfc3339(end - HOUR_NANOS);
    let (tempo_begin, tempo_end) = (begin, end + HOUR_NANOS);
    let newest = |filter: String, since: u64, limit: u32| {
        format!(
            "SELECT trace_id, max(start) AS newest FROM bench.spans WHERE {filter} AND start >= {since} GROUP BY trace_id ORDER BY newest DESC LIMIT {limit}"
        )
    };
    let hour = end - HOUR_NANOS;
    vec![
        SearchCase {
            name: "service, last hour, newest 20",
            spanblame: Box::new({
                let hour_start = hour_start.clone();
                move |i| format!("service=svc-{}&start={hour_start}&limit=20", i % SERVICES)
            }),
            clickhouse: Box::new(move |i| {
                newest(format!("service = 'svc-{}'", i % SERVICES), hour, 20)
            }),
            traceql: Box::new(move |i| {
                let service = i % SERVICES;
                tempo_query(
                    &format!("{{ resource.service.name = \"svc-{service}\" }}"),
                    hour,
                    tempo_end,
                )
            }),
            floor_ms: 1_000.0,
        },
        SearchCase {
            name: "service, min duration 150 ms, 24 h",
            spanblame: Box::new({
                let day_start = day_start.clone();
                move |i| {
                    format!(
                        "service=svc-{}&min_duration_ms=150&start={day_start}&limit=20",
                        i % SERVICES
                    )
                }
            }),
            clickhouse: Box::new(move |i| {
                newest(
                    format!("service = 'svc-{}' AND duration >= 150000000", i % SERVICES),
                    begin,
                    20,
                )
            }),
            traceql: Box::new(move |i| {
                let service = i % SERVICES;
                tempo_query(
                    &format!(
                        "{{ resource.service.name = \"svc-{service}\" && duration >= 150ms }}"
                    ),
                    tempo_begin,
                    tempo_end,
                )
            }),
            floor_ms: 1_000.0,
        },
        SearchCase {
            name: "tenant.id equality, 24 h",
            spanblame: Box::new({
                let day_start = day_start.clone();
                move |i| {
                    format!(
                        "attr.tenant.id=tenant-{}&start={day_start}&limit=20",
                        (i * 37) as u64 % TENANTS
                    )
                }
            }),
            clickhouse: Box::new(move |i| {
                newest(format!("tenant = 'tenant-{}'", (i * 37) as u64 % TENANTS), begin, 20)
            }),
            traceql: Box::new(move |i| {
                let tenant = (i * 37) as u64 % TENANTS;
                tempo_query(
                    &format!("{{ .tenant.id = \"tenant-{tenant}\" }}"),
                    tempo_begin,
                    tempo_end,
                )
            }),
            floor_ms: 1_000.0,
        },
        SearchCase {
            name: "status = error, 24 h",
            spanblame: Box::new({
                let day_start = day_start.clone();
                move |_| format!("status=error&start={day_start}&limit=20")
            }),
            clickhouse: Box::new(move |_| newest("status = 2".into(), begin, 20)),
            traceql: Box::new(move |_| tempo_query("{ status = error }", tempo_begin, tempo_end)),
            floor_ms: 1_000.0,
        },
        SearchCase {
            name: "matches nothing, whole range (operation)",
            spanblame: Box::new(move |i| {
                format!("operation=GET%20/nope-{i}&start={day_start}&end={day_end}&limit=20")
            }),
            clickhouse: Box::new(move |i| newest(format!("name = 'GET /nope-{i}'"), 0, 20)),
            // spanblame's operation is the `http.route` the spans carry.
            traceql: Box::new(move |i| {
                tempo_query(
                    &format!("{{ span.http.route = \"GET /nope-{i}\" }}"),
                    tempo_begin,
                    tempo_end,
                )
            }),
            floor_ms: 5_000.0,
        },
    ]
}

/// Loads the same spans into ClickHouse and times the same searches there.
fn clickhouse_side(
    num_exports: u64,
    begin: u64,
    cases: &[SearchCase],
    queries: usize,
    sampled: &[[u8; 16]],
) -> Option<Vec<(f64, f64)>> {
    std::env::var_os("SPANBLAME_TEST_CLICKHOUSE")?;
    let server = testbed::ClickHouse::start();
    server.query("CREATE DATABASE bench");
    server.query(
        "CREATE TABLE bench.spans (service String, name String, trace_id String, span_id String, start UInt64, duration UInt64, status UInt8, tenant String, cart String) ENGINE = MergeTree() ORDER BY (service, start)",
    );
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()
        .expect("a client");
    let started = Instant::now();
    let mut rows = String::new();
    for i in 0..num_exports {
        for g in export_spans(i, num_exports, begin) {
            rows.push_str(&format!(
                "svc-{}\tGET {}\t{}\t{}\t{}\t{}\t{}\ttenant-{}\tcart-{:08x}\n",
                g.service,
                g.route,
                hex(&g.trace_id),
                hex(&g.span_id),
                g.start_unix_nanos,
                g.duration_nanos,
                if g.error { 2 } else { 0 },
                g.tenant,
                g.cart
            ));
        }
        if rows.len() > 64 * 1024 * 1024 || i + 1 == num_exports {
            let response = client
                .post(format!(
                    "{}/?query=INSERT%20INTO%20bench.spans%20FORMAT%20TabSeparated",
                    server.url()
                ))
                .body(std::mem::take(&mut rows))
                .send()
                .expect("ClickHouse answers");
            assert!(response.status().is_success(), "{}", response.text().unwrap_or_default());
        }
    }
    server.query("OPTIMIZE TABLE bench.spans FINAL");
    eprintln!("  ClickHouse loaded in {:.0} s", started.elapsed().as_secs_f64());
    let run = |sql: String| -> Duration {
        let started = Instant::now();
        let response =
            client.post(server.url()).body(sql.clone()).send().expect("ClickHouse answers");
        let ok = response.status().is_success();
        let text = response.text().unwrap_or_default();
        assert!(ok, "`{sql}`: {text}");
        started.elapsed()
    };
    let mut out = vec![percentiles(
        (0..queries)
            .map(|i| run(format!("SELECT service, name, span_id, start, duration FROM bench.spans WHERE trace_id = '{}'", hex(&sampled[i % sampled.len()]))))
            .collect(),
    )];
    for case in cases {
        out.push(percentiles((0..queries).map(|i| run((case.clickhouse)(i))).collect()));
    }
    Some(out)
}

fn main() {
    let total_spans: u64 = std::env::var("SPANBLAME_BENCH_SPANS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let queries: usize =
        std::env::var("SPANBLAME_BENCH_QUERIES").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let num_exports = total_spans.div_ceil(SPANS_PER_EXPORT as u64);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_nanos() as u64;
    let begin = now - DAY_NANOS;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let server = Server::start(dir.path());

    // Ingest, with the server's RSS watched.
    let ingesting = Arc::new(AtomicBool::new(true));
    let rss_watch = watch_rss(server.child.id(), Arc::clone(&ingesting));
    let (sampled, ingest_time, wire_bytes_per_span) = ingest(&server, num_exports, begin);
    ingesting.store(false, Ordering::Relaxed);
    let ingest_peak_rss = rss_watch.join().expect("the watcher");
    let stored_spans = num_exports * SPANS_PER_EXPORT as u64;

    // What was sent last is still in the head (sealed after 128k spans or 5 minutes), as on
    // a live server; give the last seal a moment to finish.
    std::thread::sleep(Duration::from_secs(5));
    let idle_rss = server.rss_bytes();
    let block_bytes = server.metric("spanblame_block_bytes");
    let num_blocks = server.metric("spanblame_blocks");

    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("a client");
    let base = format!("http://{}", server.http);
    let trace_times = time_gets(&client, &base, queries, |i| {
        format!("/api/v1/traces/{}", hex(&sampled[(i * 7919) % sampled.len()]))
    });
    let missing_times = time_gets(&client, &base, queries, |i| {
        format!("/api/v1/traces/{:032x}", 0xdead_0000_0000_0000_0000_0000_0000_0000u128 + i as u128)
    });
    let cases = search_cases(begin, now);
    let searching = Arc::new(AtomicBool::new(true));
    let rss_watch = watch_rss(server.child.id(), Arc::clone(&searching));
    let mut search_times = Vec::new();
    let mut traceql_times = Vec::new();
    for case in &cases {
        // Two clients at once, each running half of the queries: through `/api/v1/traces`,
        // then the same searches in TraceQL through Tempo's `/api/search`.
        let run = |path: &(dyn Fn(usize) -> String + Sync)| {
            let halves: Vec<Vec<Duration>> = std::thread::scope(|scope| {
                let handles: Vec<_> = (0..2)
                    .map(|half| {
                        let (client, base) = (&client, &base);
                        scope.spawn(move || {
                            time_gets(client, base, queries / 2, |i| path(2 * i + half))
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().expect("a client")).collect()
            });
            percentiles(halves.concat())
        };
        search_times.push(run(&|i| format!("/api/v1/traces?{}", (case.spanblame)(i))));
        traceql_times.push(run(&|i| format!("/api/search?{}", (case.traceql)(i))));
    }
    searching.store(false, Ordering::Relaxed);
    let search_peak_rss = rss_watch.join().expect("the watcher");
    let after_rss = server.rss_bytes();
    let (num_compactions, compaction_ms) = (
        server.compactions.0.load(Ordering::Relaxed),
        server.compactions.1.load(Ordering::Relaxed),
    );
    drop(server);

    // spanblame's own figures first: at 100M spans loading ClickHouse takes a while.
    eprintln!(
        "  spanblame: {stored_spans} spans, {num_blocks} blocks, {:.1} B/span, ingest {:.0} spans/s, RSS peak {} MiB ingesting / {} MiB searching",
        block_bytes / stored_spans as f64,
        stored_spans as f64 / ingest_time.as_secs_f64(),
        ingest_peak_rss >> 20,
        search_peak_rss >> 20
    );
    for (name, (p50, p99)) in ["trace by id", "trace by id, missing"]
        .into_iter()
        .zip([percentiles(trace_times.clone()), percentiles(missing_times.clone())])
        .chain(cases.iter().map(|c| c.name).zip(search_times.iter().copied()))
    {
        eprintln!("  spanblame: {name:<44} p50 {p50:>8.1} ms  p99 {p99:>8.1} ms");
    }
    for (case, (p50, p99)) in cases.iter().zip(&traceql_times) {
        eprintln!("  spanblame TraceQL: {:<35} p50 {p50:>8.1} ms  p99 {p99:>8.1} ms", case.name);
    }
    let clickhouse_queries = std::env::var("SPANBLAME_BENCH_CLICKHOUSE_QUERIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(queries);
    let clickhouse = clickhouse_side(num_exports, begin, &cases, clickhouse_queries, &sampled);
    let ch = |i: usize| -> String {
        clickhouse.as_ref().map_or("(skipped: set SPANBLAME_TEST_CLICKHOUSE)".into(), |c| {
            format!("p50 {:>8.1} ms  p99 {:>8.1} ms", c[i].0, c[i].1)
        })
    };
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    let (t50, t99) = percentiles(trace_times);
    let (m50, m99) = percentiles(missing_times);
    println!(
        "spanblame reads through the server ({stored_spans} spans, {wire_bytes_per_span:.0} B/span OTLP/gRPC, {num_blocks} blocks, {queries} queries each, {clickhouse_queries} on ClickHouse; this process is the client)"
    );
    println!(
        "  ingest end to end: {:.0} spans/s ({EXPORTS_IN_FLIGHT} exports in flight)   stored {:.1} B/span (floor 32 B)",
        stored_spans as f64 / ingest_time.as_secs_f64(),
        block_bytes / stored_spans as f64
    );
    println!(
        "  compaction: {num_compactions} merges, {:.1} s in all ({:.0} ms each on average), during ingest",
        compaction_ms as f64 / 1e3,
        compaction_ms as f64 / num_compactions.max(1) as f64
    );
    println!(
        "  server RSS: peak {:.0} MiB while ingesting, {:.0} MiB idle, peak {:.0} MiB during 2 concurrent searches, {:.0} MiB after (floor 1024 MiB, target 300 MiB)",
        mib(ingest_peak_rss),
        mib(idle_rss),
        mib(search_peak_rss),
        mib(after_rss)
    );
    println!("  {:<44} {:>24}   {:<34} ClickHouse MergeTree", "query", "spanblame", "floor");
    println!(
        "  {:<44} p50 {t50:>8.1} ms  p99 {t99:>8.1} ms   p99 20 ms (target 5 ms)            {}",
        "trace by id",
        ch(0)
    );
    println!("  {:<44} p50 {m50:>8.1} ms  p99 {m99:>8.1} ms   p99 20 ms", "trace by id, missing",);
    for (i, (case, (p50, p99))) in cases.iter().zip(&search_times).enumerate() {
        let ratio = clickhouse.as_ref().map_or(String::new(), |c| {
            format!(" (spanblame/ClickHouse p99 {:.2})", p99 / c[i + 1].1)
        });
        println!(
            "  {:<44} p50 {p50:>8.1} ms  p99 {p99:>8.1} ms   p99 {:>5.0} ms                      {}{ratio}",
            case.name,
            case.floor_ms,
            ch(i + 1)
        );
        let (q50, q99) = traceql_times[i];
        println!(
            "    {:<42} p50 {q50:>8.1} ms  p99 {q99:>8.1} ms   p99 within 20% of /api/v1/traces: TraceQL/v1 p99 {:.2}",
            "same in TraceQL (/api/search)",
            q99 / p99
        );
    }
}
