//! Span metrics and the service graph, under the names Grafana Tempo's metrics-generator
//! gives them, so Grafana's RED panels and service-graph view work from a Prometheus that
//! scrapes spanblame:
//!
//! - `traces_spanmetrics_calls_total` and the `traces_spanmetrics_latency` histogram per
//!   (service, span name, span kind, status code), optionally per `service_version`;
//! - `traces_service_graph_request_total`, `…_failed_total` and the `…_server_seconds` and
//!   `…_client_seconds` histograms per edge (client service, server service, connection
//!   type): a client (or producer) span paired with its server (or consumer) child, from
//!   whichever export brings the second of the two, within `edge_wait_nanos`.
//!
//! Counts are weighted by each span's adjusted count (sampled spans stand for many), which
//! Tempo's generator does not yet do. Series are capped (`max_series`); a series past the cap
//! is not created and `spanblame_span_metrics_series_dropped_total` says how many were not.
//! Each edge also keeps its last minutes (rate, errors, p95) for the service-graph page, by
//! the minute each request began.
//!
//! Pure: the caller brings the spans and the time.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;

use model::{Span, SpanId, SpanKind, StatusCode, TraceId};

use crate::exposition::label_value;
use crate::sketch::LatencySketch;

/// Tempo's default span-metrics latency buckets, in seconds.
const LATENCY_BUCKETS_SECONDS: [f64; 12] =
    [0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.02, 2.05, 4.10];
/// Tempo's default service-graph buckets, in seconds.
const GRAPH_BUCKETS_SECONDS: [f64; 8] = [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8];
const NANOS_PER_MINUTE: u64 = 60 * 1_000_000_000;

#[derive(Debug, Clone)]
pub struct Settings {
    /// Whether span metrics carry `service_version`.
    pub version_label: bool,
    /// Most series (span-metric label sets plus edges) kept.
    pub max_series: usize,
    /// How long a client or server span waits for the other half of its edge.
    pub edge_wait_nanos: u64,
    /// Most half-edges waiting at once; the oldest are given up beyond it.
    pub max_pending_edges: usize,
    /// Minutes of each edge kept for the service-graph page.
    pub page_window_minutes: u64,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            version_label: false,
            max_series: 10_000,
            edge_wait_nanos: 10 * 1_000_000_000,
            max_pending_edges: 100_000,
            page_window_minutes: 15,
        }
    }
}

/// What span metrics need of one span, taken before the span is handed to the store.
#[derive(Debug, Clone)]
pub struct Observation {
    service: String,
    name: String,
    kind: SpanKind,
    status: StatusCode,
    is_error: bool,
    version: Option<String>,
    duration_nanos: u64,
    start_unix_nanos: u64,
    trace_id: TraceId,
    span_id: SpanId,
    parent_span_id: Option<SpanId>,
    /// How many spans it stands for (its adjusted count).
    weight: u64,
}

impl Observation {
    pub fn of(span: &Span) -> Observation {
        Observation {
            service: span.service_name().to_owned(),
            name: span.name.clone(),
            kind: span.kind,
            status: span.status.code,
            is_error: span.is_error(),
            version: span.version().map(str::to_owned),
            duration_nanos: span.duration_nanos(),
            start_unix_nanos: span.start_time_unix_nanos,
            trace_id: span.trace_id,
            span_id: span.span_id,
            parent_span_id: span.parent_span_id,
            weight: span.adjusted_count(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct CallKey {
    service: String,
    span_name: String,
    /// `SPAN_KIND_SERVER`, as Tempo writes it.
    span_kind: &'static str,
    /// `STATUS_CODE_ERROR`.
    status_code: &'static str,
    version: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EdgeKey {
    pub client: String,
    pub server: String,
    /// A producer → consumer edge (`connection_type="messaging_system"`).
    pub messaging: bool,
}

#[derive(Debug, Clone)]
struct Histogram {
    /// Observations in each bucket (not cumulative), the last past every bound.
    buckets: Vec<u64>,
    sum_seconds: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: usize) -> Histogram {
        Histogram { buckets: vec![0; bounds + 1], sum_seconds: 0.0, count: 0 }
    }

    fn observe(&mut self, bounds: &[f64], seconds: f64, weight: u64) {
        let at = bounds.iter().position(|b| seconds <= *b).unwrap_or(bounds.len());
        self.buckets[at] += weight;
        self.sum_seconds += seconds * weight as f64;
        self.count += weight;
    }
}

#[derive(Debug, Clone)]
struct EdgeMinute {
    unix_minute: u64,
    requests: u64,
    failed: u64,
    server_latency: LatencySketch,
}

#[derive(Debug, Clone)]
struct EdgeStats {
    total: u64,
    failed: u64,
    server: Histogram,
    client: Histogram,
    minutes: VecDeque<EdgeMinute>,
}

/// Half an edge waiting for the other: a client span for its server child, or a server span
/// for its client parent.
#[derive(Debug, Clone)]
struct Half {
    service: String,
    duration_nanos: u64,
    start_unix_nanos: u64,
    failed: bool,
    messaging: bool,
    weight: u64,
    is_client: bool,
    at_unix_nanos: u64,
}

/// An edge as the service-graph page shows it, over the last minutes.
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeView {
    pub client: String,
    pub server: String,
    pub messaging: bool,
    pub requests: u64,
    pub requests_per_second: f64,
    pub error_rate: f64,
    /// The server side's p95 latency, in milliseconds.
    pub p95_ms: Option<f64>,
}

#[derive(Debug)]
pub struct SpanMetrics {
    settings: Settings,
    calls: HashMap<CallKey, Histogram>,
    edges: HashMap<EdgeKey, EdgeStats>,
    /// Waiting halves by (trace, the client span's id).
    pending: HashMap<(TraceId, SpanId), Half>,
    pending_order: VecDeque<(TraceId, SpanId, u64)>,
    series_dropped: u64,
    unpaired: u64,
}

fn kind_label(kind: SpanKind) -> &'static str {
    match kind {
        SpanKind::Unspecified => "SPAN_KIND_UNSPECIFIED",
        SpanKind::Internal => "SPAN_KIND_INTERNAL",
        SpanKind::Server => "SPAN_KIND_SERVER",
        SpanKind::Client => "SPAN_KIND_CLIENT",
        SpanKind::Producer => "SPAN_KIND_PRODUCER",
        SpanKind::Consumer => "SPAN_KIND_CONSUMER",
    }
}

fn status_label(status: StatusCode) -> &'static str {
    match status {
        StatusCode::Unset => "STATUS_CODE_UNSET",
        StatusCode::Ok => "STATUS_CODE_OK",
        StatusCode::Error => "STATUS_CODE_ERROR",
    }
}

impl SpanMetrics {
    pub fn new(settings: Settings) -> SpanMetrics {
        SpanMetrics {
            settings,
            calls: HashMap::new(),
            edges: HashMap::new(),
            pending: HashMap::new(),
            pending_order: VecDeque::new(),
            series_dropped: 0,
            unpaired: 0,
        }
    }

    fn series(&self) -> usize {
        self.calls.len() + self.edges.len()
    }

    /// Counts spans accepted at `now_unix_nanos`.
    pub fn observe(&mut self, spans: &[Observation], now_unix_nanos: u64) {
        self.expire(now_unix_nanos);
        for span in spans {
            let weight = span.weight;
            let key = CallKey {
                service: span.service.clone(),
                span_name: span.name.clone(),
                span_kind: kind_label(span.kind),
                status_code: status_label(span.status),
                version: if self.settings.version_label { span.version.clone() } else { None },
            };
            let seconds = span.duration_nanos as f64 / 1e9;
            let full = self.series() >= self.settings.max_series;
            match self.calls.get_mut(&key) {
                Some(histogram) => histogram.observe(&LATENCY_BUCKETS_SECONDS, seconds, weight),
                None if full => self.series_dropped += 1,
                None => {
                    let mut histogram = Histogram::new(LATENCY_BUCKETS_SECONDS.len());
                    histogram.observe(&LATENCY_BUCKETS_SECONDS, seconds, weight);
                    self.calls.insert(key, histogram);
                }
            }
            self.pair(span, weight, now_unix_nanos);
        }
    }

    fn pair(&mut self, span: &Observation, weight: u64, now_unix_nanos: u64) {
        let (is_client, messaging) = match span.kind {
            SpanKind::Client => (true, false),
            SpanKind::Producer => (true, true),
            SpanKind::Server => (false, false),
            SpanKind::Consumer => (false, true),
            _ => return,
        };
        // The client span's id names the edge: its own, or the server span's parent.
        let client_id = if is_client { Some(span.span_id) } else { span.parent_span_id };
        let Some(client_id) = client_id else { return };
        let key = (span.trace_id, client_id);
        let half = Half {
            service: span.service.clone(),
            duration_nanos: span.duration_nanos,
            start_unix_nanos: span.start_unix_nanos,
            failed: span.is_error,
            messaging,
            weight,
            is_client,
            at_unix_nanos: now_unix_nanos,
        };
        match self.pending.remove(&key) {
            Some(other) if other.is_client != is_client => {
                let (client, server) = if is_client { (half, other) } else { (other, half) };
                self.complete(client, server, now_unix_nanos);
            }
            // A repeat of the same half (a retried export): the newer one waits.
            _ => {
                if self.pending.len() >= self.settings.max_pending_edges {
                    self.give_up_oldest();
                }
                self.pending.insert(key, half);
                self.pending_order.push_back((key.0, key.1, now_unix_nanos));
            }
        }
    }

    fn complete(&mut self, client: Half, server: Half, now_unix_nanos: u64) {
        let key = EdgeKey {
            client: client.service,
            server: server.service,
            messaging: client.messaging || server.messaging,
        };
        let full = self.series() >= self.settings.max_series;
        let stats = match self.edges.get_mut(&key) {
            Some(stats) => stats,
            None if full => {
                self.series_dropped += 1;
                return;
            }
            None => self.edges.entry(key).or_insert_with(|| EdgeStats {
                total: 0,
                failed: 0,
                server: Histogram::new(GRAPH_BUCKETS_SECONDS.len()),
                client: Histogram::new(GRAPH_BUCKETS_SECONDS.len()),
                minutes: VecDeque::new(),
            }),
        };
        let weight = client.weight.max(server.weight);
        let failed = client.failed || server.failed;
        stats.total += weight;
        if failed {
            stats.failed += weight;
        }
        stats.server.observe(&GRAPH_BUCKETS_SECONDS, server.duration_nanos as f64 / 1e9, weight);
        stats.client.observe(&GRAPH_BUCKETS_SECONDS, client.duration_nanos as f64 / 1e9, weight);
        // The page counts a request in the minute it began (so a backlog sent late is not
        // read as a burst now), within the window before now.
        let now_minute = now_unix_nanos / NANOS_PER_MINUTE;
        let minute = server.start_unix_nanos / NANOS_PER_MINUTE;
        let window = self.settings.page_window_minutes;
        while stats.minutes.front().is_some_and(|m| m.unix_minute + window <= now_minute) {
            stats.minutes.pop_front();
        }
        if minute + window <= now_minute || minute > now_minute + 1 {
            return;
        }
        let at = match stats.minutes.iter().position(|m| m.unix_minute >= minute) {
            Some(at) if stats.minutes[at].unix_minute == minute => at,
            found => {
                let at = found.unwrap_or(stats.minutes.len());
                stats.minutes.insert(
                    at,
                    EdgeMinute {
                        unix_minute: minute,
                        requests: 0,
                        failed: 0,
                        server_latency: LatencySketch::new(),
                    },
                );
                at
            }
        };
        let bucket = &mut stats.minutes[at];
        bucket.requests += weight;
        if failed {
            bucket.failed += weight;
        }
        bucket.server_latency.add(server.duration_nanos);
    }

    fn give_up_oldest(&mut self) {
        while let Some((trace, span, at)) = self.pending_order.pop_front() {
            if self.pending.get(&(trace, span)).is_some_and(|h| h.at_unix_nanos == at) {
                self.pending.remove(&(trace, span));
                self.unpaired += 1;
                return;
            }
        }
    }

    /// Gives up halves that waited longer than `edge_wait_nanos`.
    fn expire(&mut self, now_unix_nanos: u64) {
        let deadline = now_unix_nanos.saturating_sub(self.settings.edge_wait_nanos);
        while let Some(&(trace, span, at)) = self.pending_order.front() {
            if at > deadline {
                break;
            }
            self.pending_order.pop_front();
            if self.pending.get(&(trace, span)).is_some_and(|h| h.at_unix_nanos == at) {
                self.pending.remove(&(trace, span));
                self.unpaired += 1;
            }
        }
    }

    /// Every edge since the start, with its requests, whose client or server `allows` names
    /// (Jaeger's dependency links).
    pub fn edge_totals(&self, allows: impl Fn(&str) -> bool) -> Vec<(EdgeKey, u64)> {
        let mut edges: Vec<(EdgeKey, u64)> = self
            .edges
            .iter()
            .filter(|(key, _)| allows(&key.client) || allows(&key.server))
            .map(|(key, stats)| (key.clone(), stats.total))
            .collect();
        edges.sort();
        edges
    }

    /// Minutes the service-graph page covers.
    pub fn window_minutes(&self) -> u64 {
        self.settings.page_window_minutes
    }

    /// The edges of the last `page_window_minutes` whose client or server `allows` names.
    pub fn graph(&self, now_unix_nanos: u64, allows: impl Fn(&str) -> bool) -> Vec<EdgeView> {
        let minute = now_unix_nanos / NANOS_PER_MINUTE;
        let window = self.settings.page_window_minutes.max(1);
        let mut edges: Vec<EdgeView> = self
            .edges
            .iter()
            .filter(|(key, _)| allows(&key.client) || allows(&key.server))
            .filter_map(|(key, stats)| {
                let recent: Vec<&EdgeMinute> =
                    stats.minutes.iter().filter(|m| m.unix_minute + window > minute).collect();
                let requests: u64 = recent.iter().map(|m| m.requests).sum();
                if requests == 0 {
                    return None;
                }
                let failed: u64 = recent.iter().map(|m| m.failed).sum();
                let mut latency = LatencySketch::new();
                for m in &recent {
                    latency.merge(&m.server_latency);
                }
                Some(EdgeView {
                    client: key.client.clone(),
                    server: key.server.clone(),
                    messaging: key.messaging,
                    requests,
                    requests_per_second: requests as f64 / (window * 60) as f64,
                    error_rate: failed as f64 / requests as f64,
                    p95_ms: latency.quantile(0.95).map(|nanos| nanos / 1e6),
                })
            })
            .collect();
        edges.sort_by(|a, b| (&a.client, &a.server).cmp(&(&b.client, &b.server)));
        edges
    }

    /// The Prometheus text exposition of every series whose service (for an edge, its client
    /// or server) `allows` names.
    pub fn render(&self, allows: impl Fn(&str) -> bool) -> String {
        let mut out = String::new();
        let calls: BTreeMap<&CallKey, &Histogram> =
            self.calls.iter().filter(|(k, _)| allows(&k.service)).collect();
        header(
            &mut out,
            "traces_spanmetrics_calls_total",
            "counter",
            "Spans by service, name, kind and status, weighted by their adjusted count.",
        );
        for (key, histogram) in &calls {
            let _ = writeln!(
                out,
                "traces_spanmetrics_calls_total{{{}}} {}",
                call_labels(key),
                histogram.count
            );
        }
        header(
            &mut out,
            "traces_spanmetrics_latency",
            "histogram",
            "Span durations in seconds by service, name, kind and status.",
        );
        for (key, histogram) in &calls {
            write_histogram(
                &mut out,
                "traces_spanmetrics_latency",
                &call_labels(key),
                &LATENCY_BUCKETS_SECONDS,
                histogram,
            );
        }
        let edges: BTreeMap<&EdgeKey, &EdgeStats> =
            self.edges.iter().filter(|(k, _)| allows(&k.client) || allows(&k.server)).collect();
        header(
            &mut out,
            "traces_service_graph_request_total",
            "counter",
            "Requests between two services: a client span paired with its server child.",
        );
        for (key, stats) in &edges {
            let _ = writeln!(
                out,
                "traces_service_graph_request_total{{{}}} {}",
                edge_labels(key),
                stats.total
            );
        }
        header(
            &mut out,
            "traces_service_graph_request_failed_total",
            "counter",
            "Requests between two services where either side failed.",
        );
        for (key, stats) in &edges {
            let _ = writeln!(
                out,
                "traces_service_graph_request_failed_total{{{}}} {}",
                edge_labels(key),
                stats.failed
            );
        }
        for (name, side) in [("server", true), ("client", false)] {
            let metric = format!("traces_service_graph_request_{name}_seconds");
            header(
                &mut out,
                &metric,
                "histogram",
                &format!(
                    "Request durations between two services in seconds, as the {name} measured them."
                ),
            );
            for (key, stats) in &edges {
                let histogram = if side { &stats.server } else { &stats.client };
                write_histogram(
                    &mut out,
                    &metric,
                    &edge_labels(key),
                    &GRAPH_BUCKETS_SECONDS,
                    histogram,
                );
            }
        }
        header(
            &mut out,
            "spanblame_service_graph_unpaired_spans_total",
            "counter",
            "Client or server spans whose other half did not arrive in time.",
        );
        let _ = writeln!(out, "spanblame_service_graph_unpaired_spans_total {}", self.unpaired);
        header(
            &mut out,
            "spanblame_span_metrics_series",
            "gauge",
            "Span-metric and service-graph series kept.",
        );
        let _ = writeln!(out, "spanblame_span_metrics_series {}", self.series());
        header(
            &mut out,
            "spanblame_span_metrics_series_limit",
            "gauge",
            "Most series kept (span_metrics.max_series).",
        );
        let _ = writeln!(out, "spanblame_span_metrics_series_limit {}", self.settings.max_series);
        header(
            &mut out,
            "spanblame_span_metrics_series_dropped_total",
            "counter",
            "Observations of new series not kept because the limit was reached.",
        );
        let _ =
            writeln!(out, "spanblame_span_metrics_series_dropped_total {}", self.series_dropped);
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn call_labels(key: &CallKey) -> String {
    let mut labels = format!(
        "service=\"{}\",span_name=\"{}\",span_kind=\"{}\",status_code=\"{}\"",
        label_value(&key.service),
        label_value(&key.span_name),
        key.span_kind,
        key.status_code
    );
    if let Some(version) = &key.version {
        let _ = write!(labels, ",service_version=\"{}\"", label_value(version));
    }
    labels
}

fn edge_labels(key: &EdgeKey) -> String {
    format!(
        "client=\"{}\",server=\"{}\",connection_type=\"{}\"",
        label_value(&key.client),
        label_value(&key.server),
        if key.messaging { "messaging_system" } else { "" }
    )
}

fn write_histogram(
    out: &mut String,
    name: &str,
    labels: &str,
    bounds: &[f64],
    histogram: &Histogram,
) {
    let mut cumulative = 0;
    for (bound, count) in bounds.iter().zip(&histogram.buckets) {
        cumulative += count;
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
    }
    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", histogram.count);
    let _ = writeln!(out, "{name}_sum{{{labels}}} {}", histogram.sum_seconds);
    let _ = writeln!(out, "{name}_count{{{labels}}} {}", histogram.count);
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use model::{
        KeyValue, Resource, Scope, Span, SpanId, SpanKind, Status, StatusCode, TraceId, Value,
    };

    use super::{Observation, Settings, SpanMetrics};

    const SECOND: u64 = 1_000_000_000;
    const T0: u64 = 1_767_225_600 * SECOND;

    fn span(
        service: &str,
        id: u8,
        parent: Option<u8>,
        kind: SpanKind,
        ms: u64,
        error: bool,
    ) -> Span {
        Span {
            trace_id: TraceId::from_bytes([7; 16]).unwrap(),
            span_id: SpanId::from_bytes([id; 8]).unwrap(),
            parent_span_id: parent.map(|p| SpanId::from_bytes([p; 8]).unwrap()),
            trace_state: String::new(),
            flags: 0,
            name: format!("op-{id}"),
            kind,
            start_time_unix_nanos: T0,
            end_time_unix_nanos: T0 + ms * 1_000_000,
            attributes: Vec::new(),
            dropped_attributes_count: 0,
            events: Vec::new(),
            dropped_events_count: 0,
            links: Vec::new(),
            dropped_links_count: 0,
            status: Status {
                code: if error { StatusCode::Error } else { StatusCode::Unset },
                message: String::new(),
            },
            resource: Arc::new(Resource {
                attributes: vec![
                    KeyValue::new("service.name", Value::String(service.into())),
                    KeyValue::new("service.version", Value::String("1.0".into())),
                ],
                ..Resource::default()
            }),
            scope: Arc::new(Scope::default()),
        }
    }

    fn observe(metrics: &mut SpanMetrics, spans: &[Span], at: u64) {
        let observed: Vec<Observation> = spans.iter().map(Observation::of).collect();
        metrics.observe(&observed, at);
    }

    fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(prefix))
    }

    #[test]
    fn a_client_and_its_server_child_make_an_edge_from_separate_exports() {
        let mut metrics = SpanMetrics::new(Settings::default());
        observe(&mut metrics, &[span("frontend", 1, None, SpanKind::Client, 120, false)], T0);
        observe(
            &mut metrics,
            &[span("checkout", 2, Some(1), SpanKind::Server, 100, true)],
            T0 + SECOND,
        );
        let text = metrics.render(|_| true);
        assert_eq!(
            line(&text, "traces_service_graph_request_total{"),
            Some(
                "traces_service_graph_request_total{client=\"frontend\",server=\"checkout\",connection_type=\"\"} 1"
            )
        );
        assert!(text.contains("traces_service_graph_request_failed_total{client=\"frontend\",server=\"checkout\",connection_type=\"\"} 1"), "{text}");
        assert!(text.contains("traces_service_graph_request_server_seconds_bucket{client=\"frontend\",server=\"checkout\",connection_type=\"\",le=\"0.1\"} 1"), "{text}");
        assert!(text.contains("traces_service_graph_request_client_seconds_bucket{client=\"frontend\",server=\"checkout\",connection_type=\"\",le=\"0.1\"} 0"), "{text}");
        assert!(text.contains("traces_spanmetrics_calls_total{service=\"checkout\",span_name=\"op-2\",span_kind=\"SPAN_KIND_SERVER\",status_code=\"STATUS_CODE_ERROR\"} 1"), "{text}");
        assert!(text.contains("traces_spanmetrics_latency_bucket{service=\"frontend\",span_name=\"op-1\",span_kind=\"SPAN_KIND_CLIENT\",status_code=\"STATUS_CODE_UNSET\",le=\"0.128\"} 1"), "{text}");
        assert!(text.contains("traces_spanmetrics_latency_bucket{service=\"frontend\",span_name=\"op-1\",span_kind=\"SPAN_KIND_CLIENT\",status_code=\"STATUS_CODE_UNSET\",le=\"0.064\"} 0"), "{text}");
        // The server child first works too; so does a producer and its consumer.
        observe(
            &mut metrics,
            &[span("checkout", 4, Some(3), SpanKind::Server, 10, false)],
            T0 + 2 * SECOND,
        );
        observe(
            &mut metrics,
            &[span("frontend", 3, None, SpanKind::Client, 12, false)],
            T0 + 2 * SECOND,
        );
        observe(
            &mut metrics,
            &[
                span("orders", 5, None, SpanKind::Producer, 1, false),
                span("mailer", 6, Some(5), SpanKind::Consumer, 5, false),
            ],
            T0 + 3 * SECOND,
        );
        let text = metrics.render(|_| true);
        assert!(text.contains("traces_service_graph_request_total{client=\"frontend\",server=\"checkout\",connection_type=\"\"} 2"), "{text}");
        assert!(text.contains("traces_service_graph_request_total{client=\"orders\",server=\"mailer\",connection_type=\"messaging_system\"} 1"), "{text}");
        let graph = metrics.graph(T0 + 3 * SECOND, |_| true);
        let edge = graph.iter().find(|e| e.client == "frontend").unwrap();
        assert_eq!((edge.requests, edge.error_rate), (2, 0.5));
        assert!((edge.requests_per_second - 2.0 / 900.0).abs() < 1e-9);
        let p95 = edge.p95_ms.unwrap();
        assert!((9.0..=101.0).contains(&p95), "{edge:?}");
        // What the caller may not see on either end is not shown.
        assert!(metrics.graph(T0, |s| s == "payments").is_empty());
        assert!(!metrics.render(|s| s == "mailer").contains("frontend"));
    }

    #[test]
    fn halves_that_wait_too_long_are_counted_unpaired() {
        let mut metrics =
            SpanMetrics::new(Settings { max_pending_edges: 2, ..Settings::default() });
        observe(&mut metrics, &[span("frontend", 1, None, SpanKind::Client, 1, false)], T0);
        observe(
            &mut metrics,
            &[span("checkout", 2, Some(1), SpanKind::Server, 1, false)],
            T0 + 11 * SECOND,
        );
        assert!(
            metrics.render(|_| true).contains("spanblame_service_graph_unpaired_spans_total 1")
        );
        // Past the pending cap, the oldest half is given up.
        for id in 10..14 {
            observe(
                &mut metrics,
                &[span("frontend", id, None, SpanKind::Client, 1, false)],
                T0 + 12 * SECOND,
            );
        }
        assert!(
            metrics.render(|_| true).contains("spanblame_service_graph_unpaired_spans_total 4")
        );
        // Edges leave the page after its window.
        assert!(metrics.graph(T0 + 16 * 60 * SECOND, |_| true).is_empty());
    }

    #[test]
    fn series_past_the_cap_are_counted_not_kept_and_versions_are_optional() {
        let mut metrics = SpanMetrics::new(Settings {
            max_series: 2,
            version_label: true,
            ..Settings::default()
        });
        let spans: Vec<Span> =
            (1..=4).map(|id| span("a\"b\\c", id, None, SpanKind::Internal, 1, false)).collect();
        observe(&mut metrics, &spans, T0);
        let text = metrics.render(|_| true);
        assert!(text.contains("spanblame_span_metrics_series 2\n"), "{text}");
        assert!(text.contains("spanblame_span_metrics_series_dropped_total 2\n"), "{text}");
        assert!(text.contains("service=\"a\\\"b\\\\c\""), "escaped: {text}");
        assert!(text.contains("service_version=\"1.0\""), "{text}");
        // Every family has its help and type.
        for family in [
            "traces_spanmetrics_calls_total",
            "traces_spanmetrics_latency",
            "traces_service_graph_request_server_seconds",
        ] {
            assert!(
                text.contains(&format!("# HELP {family} "))
                    && text.contains(&format!("# TYPE {family} ")),
                "{family}"
            );
        }
    }

    #[test]
    fn a_backlog_sent_late_counts_but_is_not_a_burst_on_the_page() {
        let mut metrics = SpanMetrics::new(Settings::default());
        let mut client = span("frontend", 1, None, SpanKind::Client, 5, false);
        let mut server = span("checkout", 2, Some(1), SpanKind::Server, 4, false);
        client.start_time_unix_nanos -= 3 * 3600 * SECOND;
        server.start_time_unix_nanos -= 3 * 3600 * SECOND;
        observe(&mut metrics, &[client, server], T0);
        assert!(metrics.render(|_| true).contains("traces_service_graph_request_total{client=\"frontend\",server=\"checkout\",connection_type=\"\"} 1"));
        assert!(metrics.graph(T0, |_| true).is_empty());
    }

    #[test]
    fn sampled_spans_count_for_what_they_stand_for() {
        let mut metrics = SpanMetrics::new(Settings::default());
        let mut sampled = span("frontend", 1, None, SpanKind::Server, 1, false);
        sampled.trace_state = "ot=th:c".into(); // kept with probability 1/4
        observe(&mut metrics, &[sampled], T0);
        assert!(metrics.render(|_| true).contains("traces_spanmetrics_calls_total{service=\"frontend\",span_name=\"op-1\",span_kind=\"SPAN_KIND_SERVER\",status_code=\"STATUS_CODE_UNSET\"} 4"));
    }
}
