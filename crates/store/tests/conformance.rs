//! The storage conformance suite: the same cases against every span engine, through the
//! public `SpanStore` API. Embedded runs in a temporary directory; ClickHouse runs against a
//! real server (one, and a two-shard cluster behind `Distributed` tables) started by
//! `testbed`, each case in a database of its own.

use std::sync::Arc;

use model::{
    KeyValue, Resource, Scope, Span, SpanId, SpanKind, Status, StatusCode, TraceId, Value,
};
use store::{ClickHouseOptions, SketchQuery, SpanBackend, SpanQuery, SpanStore, StoreOptions};

const SECOND: u64 = 1_000_000_000;
const MINUTE: u64 = 60 * SECOND;
const DAY: u64 = 86_400 * SECOND;
/// A minute boundary, so sketch minutes are easy to name.
const T0: u64 = 1_700_000_040 * SECOND;

/// One engine, opened (and reopened) on the same data.
struct Harness {
    dir: tempfile::TempDir,
    backend: SpanBackend,
}

impl Harness {
    fn open(&self) -> SpanStore {
        SpanStore::open_with(self.dir.path(), self.backend.clone()).expect("the store opens")
    }
}

type Case = fn(&Harness);

const CASES: &[(&str, Case)] = &[
    (
        "traces_round_trip_across_services_and_reopens",
        traces_round_trip_across_services_and_reopens,
    ),
    ("a_retried_export_reads_once", a_retried_export_reads_once),
    ("search_filters_and_orders_newest_first", search_filters_and_orders_newest_first),
    ("search_respects_the_callers_reach", search_respects_the_callers_reach),
    ("sketches_hold_every_span_once_per_minute", sketches_hold_every_span_once_per_minute),
    (
        "the_catalog_lists_services_and_infers_deploys",
        the_catalog_lists_services_and_infers_deploys,
    ),
    ("retention_drops_whole_old_days", retention_drops_whole_old_days),
    ("sketch_retention_drops_old_days", sketch_retention_drops_old_days),
];

/// Runs every case on a fresh harness; fails naming the cases that failed (each case's
/// own panic message is printed as it happens).
fn run_all(make: impl Fn(&str) -> Harness) {
    let failed: Vec<&str> = CASES
        .iter()
        .filter(|(name, case)| {
            let harness = make(name);
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| case(&harness))).is_err()
        })
        .map(|(name, _)| *name)
        .collect();
    assert!(failed.is_empty(), "conformance cases failed: {failed:?}");
}

#[test]
fn embedded() {
    run_all(|_| Harness {
        dir: tempfile::tempdir().unwrap(),
        backend: SpanBackend::Embedded(StoreOptions {
            row_group_spans: 4,
            ..StoreOptions::default()
        }),
    });
}

#[test]
fn clickhouse_single_server() {
    let server = testbed::ClickHouse::start();
    run_all(|name| Harness {
        dir: tempfile::tempdir().unwrap(),
        backend: SpanBackend::ClickHouse(ClickHouseOptions::new(&server.url(), name)),
    });
}

#[test]
fn clickhouse_two_shards() {
    let cluster = testbed::ClickHouseCluster::start(2);
    run_all(|name| {
        let mut options = ClickHouseOptions::new(&cluster.urls()[0], name);
        options.cluster = Some(testbed::ClickHouseCluster::NAME.to_owned());
        options.nodes = cluster.urls();
        Harness { dir: tempfile::tempdir().unwrap(), backend: SpanBackend::ClickHouse(options) }
    });
    // Both shards hold spans: the Distributed table spread them by trace id.
    for node in &cluster.nodes {
        let count =
            node.query("SELECT count() FROM search_filters_and_orders_newest_first.spans_local");
        assert_ne!(count.trim(), "0", "a shard holds no spans");
    }
}

// ---- data ----

fn resource(service: &str, version: &str, environment: &str) -> Arc<Resource> {
    Arc::new(Resource {
        attributes: vec![
            KeyValue::new("service.name", Value::String(service.into())),
            KeyValue::new("service.version", Value::String(version.into())),
            KeyValue::new("deployment.environment.name", Value::String(environment.into())),
            KeyValue::new("host.name", Value::String("node-1".into())),
        ],
        dropped_attributes_count: 0,
        schema_url: String::new(),
    })
}

fn trace_id(n: u8) -> TraceId {
    TraceId::from_bytes([n; 16]).unwrap()
}

/// Span `n` of trace `trace`, starting at `start`, lasting `millis`.
fn span(trace: u8, n: u8, start: u64, millis: u64, resource: &Arc<Resource>) -> Span {
    Span {
        trace_id: trace_id(trace),
        span_id: SpanId::from_bytes([trace, n, 1, 1, 1, 1, 1, 1]).unwrap(),
        parent_span_id: (n > 1).then(|| SpanId::from_bytes([trace, 1, 1, 1, 1, 1, 1, 1]).unwrap()),
        trace_state: String::new(),
        flags: 1,
        name: format!("GET /cart/{n}"),
        kind: SpanKind::Server,
        start_time_unix_nanos: start,
        end_time_unix_nanos: start + millis * 1_000_000,
        attributes: vec![
            KeyValue::new("http.route", Value::String("/cart/{id}".into())),
            KeyValue::new("retries", Value::Int(i64::from(n))),
            KeyValue::new("tags", Value::Array(vec![Value::Bool(true)])),
            KeyValue::new("note", Value::String("it's \\ \"quoted\"".into())),
        ],
        dropped_attributes_count: 0,
        events: vec![],
        dropped_events_count: 0,
        links: vec![],
        dropped_links_count: 0,
        status: Status { code: StatusCode::Unset, message: String::new() },
        resource: Arc::clone(resource),
        scope: Arc::new(Scope { name: "lib".into(), version: "1".into(), ..Scope::default() }),
    }
}

fn failed(mut span: Span, message: &str) -> Span {
    span.status = Status { code: StatusCode::Error, message: message.into() };
    span
}

// ---- cases ----

fn traces_round_trip_across_services_and_reopens(h: &Harness) {
    let front = resource("storefront", "1.0.0", "prod");
    let back = resource("checkout", "2.0.0", "prod");
    // One trace over two services, and a span that crosses midnight into the next day.
    let midnight = (T0 / DAY + 1) * DAY;
    let spans = [
        span(1, 1, midnight - 2 * SECOND, 5, &front),
        span(1, 2, midnight - SECOND, 3, &back),
        span(1, 3, midnight + SECOND, 1, &back),
        span(2, 1, T0, 9, &front),
    ];
    {
        let store = h.open();
        store.append(spans[..2].to_vec()).unwrap();
        store.append(spans[2..].to_vec()).unwrap();
        assert_eq!(store.trace(&trace_id(1)).unwrap(), spans[..3], "every field, by start");
        assert_eq!(store.trace(&trace_id(2)).unwrap(), spans[3..]);
        assert!(store.trace(&trace_id(42)).unwrap().is_empty(), "an unknown trace is empty");
        store.flush().unwrap();
    }
    let store = h.open();
    assert_eq!(store.trace(&trace_id(1)).unwrap(), spans[..3], "after reopening");
}

fn a_retried_export_reads_once(h: &Harness) {
    let r = resource("checkout", "2.0.0", "prod");
    let spans: Vec<Span> = (1..=3).map(|n| span(3, n, T0 + u64::from(n), 10, &r)).collect();
    let store = h.open();
    store.append(spans.clone()).unwrap();
    store.append(spans.clone()).unwrap();
    assert_eq!(store.trace(&trace_id(3)).unwrap(), spans);
    let found = store
        .search(&SpanQuery { end_unix_nanos: u64::MAX, limit: 10, ..SpanQuery::default() })
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].spans.len(), 3, "matching spans once each");
}

fn search_filters_and_orders_newest_first(h: &Harness) {
    let checkout = resource("checkout", "v1", "prod");
    let cart = resource("cart", "v2", "staging");
    let store = h.open();
    store
        .append(
            (1..=10)
                .map(|t| span(t, 2, T0 + u64::from(t) * SECOND, u64::from(t), &checkout))
                .collect(),
        )
        .unwrap();
    store.flush().unwrap();
    store
        .append(vec![
            failed(span(11, 3, T0 + 11 * SECOND, 30, &cart), "boom"),
            span(12, 3, T0 + 12 * SECOND, 40, &cart),
        ])
        .unwrap();

    let all = SpanQuery { end_unix_nanos: u64::MAX, limit: 100, ..SpanQuery::default() };
    let ids = |query: &SpanQuery| -> Vec<u8> {
        store.search(query).unwrap().iter().map(|m| m.trace_id.as_bytes()[0]).collect()
    };
    assert_eq!(ids(&all), (1..=12).rev().collect::<Vec<u8>>());
    assert_eq!(ids(&SpanQuery { limit: 3, ..all.clone() }), [12, 11, 10]);
    assert_eq!(ids(&SpanQuery { service: Some("cart".into()), ..all.clone() }), [12, 11]);
    assert_eq!(ids(&SpanQuery { version: Some("v1".into()), limit: 2, ..all.clone() }), [10, 9]);
    assert_eq!(ids(&SpanQuery { environment: Some("staging".into()), ..all.clone() }), [12, 11]);
    assert_eq!(ids(&SpanQuery { status: Some(StatusCode::Error), ..all.clone() }), [11]);
    assert_eq!(ids(&SpanQuery { min_duration_nanos: Some(30_000_000), ..all.clone() }), [12, 11]);
    assert_eq!(
        ids(&SpanQuery {
            min_duration_nanos: Some(3_000_000),
            max_duration_nanos: Some(4_000_000),
            ..all.clone()
        }),
        [4, 3]
    );
    // The operation is the route; the span name matches too.
    assert_eq!(ids(&SpanQuery { operation: Some("/cart/{id}".into()), ..all.clone() }).len(), 12);
    assert_eq!(ids(&SpanQuery { operation: Some("GET /cart/3".into()), ..all.clone() }), [12, 11]);
    // Attributes as text, the span's or its resource's; quoting survives.
    let attr =
        |k: &str, v: &str| SpanQuery { attributes: vec![(k.into(), v.into())], ..all.clone() };
    assert_eq!(ids(&attr("retries", "3")), [12, 11]);
    assert_eq!(ids(&attr("host.name", "node-1")).len(), 12);
    assert_eq!(ids(&attr("note", "it's \\ \"quoted\"")).len(), 12);
    assert!(ids(&attr("note", "it's")).is_empty());
    assert!(ids(&attr("tags", "")).is_empty(), "an array has no text form");
    assert!(ids(&attr("missing", "")).is_empty());
    let window = SpanQuery {
        start_unix_nanos: T0 + 4 * SECOND,
        end_unix_nanos: T0 + 6 * SECOND,
        ..all.clone()
    };
    assert_eq!(ids(&window), [5, 4], "start inclusive, end exclusive");
    let matched = store.search(&SpanQuery { limit: 1, ..all }).unwrap();
    assert_eq!(matched[0].spans, [span(12, 3, T0 + 12 * SECOND, 40, &cart)]);
}

fn search_respects_the_callers_reach(h: &Harness) {
    let checkout = resource("checkout", "v1", "prod");
    let cart = resource("cart", "v1", "staging");
    let store = h.open();
    store.append(vec![span(1, 1, T0, 1, &checkout), span(1, 2, T0 + 1, 1, &cart)]).unwrap();
    let all = SpanQuery { end_unix_nanos: u64::MAX, limit: 100, ..SpanQuery::default() };
    let reach = |services: Option<&[&str]>, environments: Option<&[&str]>| {
        let found = store
            .search(&SpanQuery {
                allowed_services: services.map(|s| s.iter().map(|x| x.to_string()).collect()),
                allowed_environments: environments
                    .map(|e| e.iter().map(|x| x.to_string()).collect()),
                ..all.clone()
            })
            .unwrap();
        found
            .iter()
            .flat_map(|m| m.spans.iter().map(|s| s.service_name().to_owned()))
            .collect::<Vec<_>>()
    };
    assert_eq!(reach(Some(&["cart"]), None), ["cart"]);
    assert_eq!(reach(None, Some(&["prod"])), ["checkout"]);
    assert!(reach(Some(&[]), None).is_empty(), "an empty reach sees nothing");
    assert!(reach(Some(&["cart"]), Some(&["prod"])).is_empty());
}

fn sketches_hold_every_span_once_per_minute(h: &Harness) {
    let v1 = resource("checkout", "v1", "prod");
    let v1_staging = resource("checkout", "v1", "staging");
    let store = h.open();
    // Minute 0: 6 spans of 1..=6 ms, two failed; minute 1: 3 spans, in two batches.
    let first: Vec<Span> = (1..=6)
        .map(|n| {
            let s = span(20 + n, 1, T0 + u64::from(n) * SECOND, u64::from(n), &v1);
            if n % 3 == 0 { failed(s, if n == 3 { "Timeout" } else { "Refused" }) } else { s }
        })
        .collect();
    store.append(first).unwrap();
    store.append(vec![span(30, 1, T0 + MINUTE, 100, &v1)]).unwrap();
    store
        .append(vec![
            failed(span(31, 1, T0 + MINUTE + SECOND, 0, &v1), "Timeout"),
            span(32, 1, T0 + MINUTE + 2 * SECOND, 200, &v1),
        ])
        .unwrap();
    store.append(vec![span(33, 1, T0, 7, &v1_staging)]).unwrap();
    store.flush().unwrap();

    let minute = (T0 / MINUTE) as i64;
    let query = SketchQuery {
        service: "checkout".into(),
        environment: Some("prod".into()),
        from_unix_minute: minute,
        to_unix_minute: minute + 2,
    };
    let rows = store.sketches(&query).unwrap();
    assert_eq!(rows.len(), 2, "one row per series and minute: {rows:?}");
    assert_eq!((rows[0].unix_minute, rows[1].unix_minute), (minute, minute + 1));
    assert!(rows.iter().all(|r| r.resolution_minutes == 1));
    assert_eq!(rows[0].series.operation, "/cart/{id}");
    assert_eq!((rows[0].stats.spans, rows[0].stats.errors), (6, 2));
    assert_eq!((rows[1].stats.spans, rows[1].stats.errors), (3, 1));
    let mut expected = analysis::LatencySketch::new();
    for n in 1..=6 {
        expected.add(n * 1_000_000);
    }
    assert_eq!(rows[0].stats.latency, expected, "the latency buckets, exactly");
    assert_eq!(rows[1].stats.latency.quantile(0.0), Some(0.0), "a zero-length span");
    assert_eq!(
        rows[0].stats.error_types.iter().map(|(k, v)| (k.as_str(), *v)).collect::<Vec<_>>(),
        [("Refused", 1), ("Timeout", 1)]
    );
    assert_eq!(rows[1].stats.error_types.get("Timeout"), Some(&1));

    let both = store.sketches(&SketchQuery { environment: None, ..query.clone() }).unwrap();
    assert_eq!(both.len(), 3, "the staging series too");
    let later =
        store.sketches(&SketchQuery { from_unix_minute: minute + 1, ..query.clone() }).unwrap();
    assert_eq!(later.len(), 1, "minutes are half-open ranges");
    let other = store.sketches(&SketchQuery { service: "cart".into(), ..query }).unwrap();
    assert!(other.is_empty());
}

fn the_catalog_lists_services_and_infers_deploys(h: &Harness) {
    let v1 = resource("checkout", "v1", "prod");
    let v2 = resource("checkout", "v2", "prod");
    let store = h.open();
    store.append(vec![span(40, 1, T0, 1, &v1), span(40, 2, T0 + SECOND, 1, &v1)]).unwrap();
    store.append(vec![span(41, 1, T0 + MINUTE, 1, &v2)]).unwrap();
    let services = store.services().unwrap();
    assert_eq!(services.len(), 1);
    let versions: Vec<(Option<&str>, u64)> =
        services[0].versions.iter().map(|v| (v.version.as_deref(), v.num_spans)).collect();
    assert_eq!(versions, [(Some("v1"), 2), (Some("v2"), 1)]);
    assert_eq!(services[0].versions[0].first_seen_unix_nanos, T0);
    assert_eq!(services[0].operations[0].name, "/cart/{id}");
    let deploys = store.deploys(Some("checkout"), None, 10).unwrap();
    assert_eq!(deploys.len(), 2, "the first spans of each version infer a deploy");
    assert!(deploys.iter().any(|d| d.version == "v2" && d.started_at_unix_nanos == T0 + MINUTE));
}

fn retention_drops_whole_old_days(h: &Harness) {
    let r = resource("checkout", "v1", "prod");
    let store = h.open();
    let today = T0 / DAY * DAY;
    for (trace, start) in [(51u8, today - 3 * DAY), (52, today - DAY), (53, today + SECOND)] {
        store.append(vec![span(trace, 1, start, 1, &r)]).unwrap();
        store.flush().unwrap();
    }
    let count = |t: u8| store.trace(&trace_id(t)).unwrap().len();
    // Two days of retention, an hour into today: the span of three days ago goes.
    let report = store.enforce_retention(today + 3600 * SECOND, 2 * DAY, None).unwrap();
    assert!(report.deleted_blocks >= 1, "{report:?}");
    assert_eq!((count(51), count(52), count(53)), (0, 1, 1));
    let found = store
        .search(&SpanQuery { end_unix_nanos: u64::MAX, limit: 10, ..SpanQuery::default() })
        .unwrap();
    assert_eq!(found.len(), 2);
    // Again: nothing more to drop.
    let report = store.enforce_retention(today + 3600 * SECOND, 2 * DAY, None).unwrap();
    assert_eq!(report.deleted_blocks, 0);
}

fn sketch_retention_drops_old_days(h: &Harness) {
    let r = resource("checkout", "v1", "prod");
    let store = h.open();
    let today = T0 / DAY * DAY;
    store.append(vec![span(60, 1, today - 10 * DAY, 1, &r)]).unwrap();
    store.append(vec![span(61, 1, today + SECOND, 1, &r)]).unwrap();
    store.flush().unwrap();
    let everything = SketchQuery {
        service: "checkout".into(),
        environment: None,
        from_unix_minute: 0,
        to_unix_minute: i64::MAX,
    };
    let spans = |store: &SpanStore| -> u64 {
        store.sketches(&everything).unwrap().iter().map(|r| r.stats.spans).sum()
    };
    assert_eq!(spans(&store), 2);
    // Keep 7 days of sketches (minutes roll up after a day where the engine rolls up).
    store.roll_up_sketches(today + SECOND, DAY, 7 * DAY).unwrap();
    assert_eq!(spans(&store), 1, "the old day's sketches are gone, today's stay");
}
