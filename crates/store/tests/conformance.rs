//! The storage conformance suite: the same cases against every back-end, through the public
//! `SpanStore` API. The embedded store (spans in its own files, metadata in SQLite) runs in a
//! temporary directory; the scale-out pair runs against real servers started by `testbed`:
//! ClickHouse (one server, and a two-shard cluster behind `Distributed` tables) with
//! PostgreSQL for metadata, each case in databases of its own.

use std::sync::Arc;

use model::{
    Commit, DeploySource, FileChange, FileChangeKind, ForgeKind, KeyValue, Person, Resource,
    Review, ReviewState, Scope, Span, SpanId, SpanKind, Status, StatusCode, TraceId, Value,
};
use store::{
    Accounts, Applied, AttemptOutcome, ChangeBatch, ClickHouseOptions, DeliveryFilter,
    DeliveryState, Evaluation, FindingFilter, FindingStatus, FindingUpdate, MetadataBackend,
    NewAuditRecord, NewDelivery, NewDeploy, PendingSignIn, PostgresOptions, SketchQuery,
    SpanBackend, SpanQuery, SpanStore, StoreOptions, StoredSession, StoredToken,
};

const SECOND: u64 = 1_000_000_000;
const MINUTE: u64 = 60 * SECOND;
const DAY: u64 = 86_400 * SECOND;
/// A minute boundary, so sketch minutes are easy to name.
const T0: u64 = 1_700_000_040 * SECOND;

/// One back-end, opened (and reopened) on the same data.
struct Harness {
    dir: tempfile::TempDir,
    backend: SpanBackend,
    metadata: MetadataBackend,
}

impl Harness {
    fn open(&self) -> SpanStore {
        SpanStore::open_with(self.dir.path(), self.backend.clone(), &self.metadata)
            .expect("the store opens")
    }

    /// A second handle on the metadata alone, as the CLI or another replica opens it.
    fn accounts(&self) -> Accounts {
        Accounts::open(self.dir.path(), &self.metadata).expect("the metadata opens")
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
    ("sampled_spans_weigh_the_sketches", sampled_spans_weigh_the_sketches),
    (
        "the_catalog_lists_services_and_infers_deploys",
        the_catalog_lists_services_and_infers_deploys,
    ),
    ("retention_drops_whole_old_days", retention_drops_whole_old_days),
    ("sketch_retention_drops_old_days", sketch_retention_drops_old_days),
    ("webhooks_apply_once_and_sources_merge", webhooks_apply_once_and_sources_merge),
    ("deploys_merge_and_know_their_neighbours", deploys_merge_and_know_their_neighbours),
    (
        "forge_deploys_are_recorded_once_and_take_the_spans_version",
        forge_deploys_are_recorded_once_and_take_the_spans_version,
    ),
    ("findings_follow_looks_and_people", findings_follow_looks_and_people),
    ("the_outbox_sends_each_decision_once", the_outbox_sends_each_decision_once),
    ("tokens_sessions_and_sign_ins", tokens_sessions_and_sign_ins),
    ("concurrent_writers_keep_one_audit_chain", concurrent_writers_keep_one_audit_chain),
    ("one_holder_per_lease_until_it_expires", one_holder_per_lease_until_it_expires),
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
        metadata: MetadataBackend::Sqlite,
    });
}

/// Metadata in a PostgreSQL database of the case's own.
fn postgres(server: &testbed::Postgres, name: &str) -> MetadataBackend {
    MetadataBackend::Postgres(PostgresOptions::new(&server.create_database(name)))
}

#[test]
fn clickhouse_and_postgresql() {
    let server = testbed::ClickHouse::start();
    let pg = testbed::Postgres::start();
    run_all(|name| Harness {
        dir: tempfile::tempdir().unwrap(),
        backend: SpanBackend::ClickHouse(ClickHouseOptions::new(&server.url(), name)),
        metadata: postgres(&pg, name),
    });
}

#[test]
fn a_clickhouse_node_at_schema_1_gains_the_sampled_count_and_its_rows_count_as_seen() {
    let server = testbed::ClickHouse::start();
    server.query("CREATE DATABASE upgrade");
    server.query(
        "CREATE TABLE upgrade.sketches (service String, environment String, \
         unix_minute Int64, operation String, span_kind String, version String, spans UInt64, \
         errors UInt64, latencyMap Nested(bucket Int32, count UInt64)) \
         ENGINE = SummingMergeTree PARTITION BY intDiv(unix_minute, 1440) \
         ORDER BY (service, environment, unix_minute, operation, span_kind, version)",
    );
    let minute = (T0 / MINUTE) as i64;
    server.query(&format!(
        "INSERT INTO upgrade.sketches VALUES ('checkout', 'prod', {minute}, 'GET /cart', \
         'server', 'v1', 5, 1, [722], [5])"
    ));
    server.query(
        "CREATE TABLE upgrade.schema_version (version UInt32, applied_unix_secs UInt64) \
         ENGINE = TinyLog",
    );
    server.query("INSERT INTO upgrade.schema_version VALUES (1, 0)");
    let options = ClickHouseOptions::new(&server.url(), "upgrade");
    let from = store::clickhouse::migrate(&options).unwrap();
    let now = store::clickhouse::check(&options).unwrap();
    assert_eq!(
        (from[0].schema_version, now[0].schema_version),
        (1, store::clickhouse::SCHEMA_VERSION)
    );
    let h = Harness {
        dir: tempfile::tempdir().unwrap(),
        backend: SpanBackend::ClickHouse(options),
        metadata: MetadataBackend::Sqlite,
    };
    let rows = h
        .open()
        .sketches(&SketchQuery {
            service: "checkout".into(),
            environment: None,
            from_unix_minute: minute,
            to_unix_minute: minute + 1,
        })
        .unwrap();
    assert_eq!((rows[0].stats.spans, rows[0].stats.sample_size()), (5, 5), "{rows:?}");
}

#[test]
fn clickhouse_two_shards_and_postgresql() {
    let cluster = testbed::ClickHouseCluster::start(2);
    let pg = testbed::Postgres::start();
    run_all(|name| {
        let mut options = ClickHouseOptions::new(&cluster.urls()[0], name);
        options.cluster = Some(testbed::ClickHouseCluster::NAME.to_owned());
        options.nodes = cluster.urls();
        Harness {
            dir: tempfile::tempdir().unwrap(),
            backend: SpanBackend::ClickHouse(options),
            metadata: postgres(&pg, name),
        }
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

fn sampled_spans_weigh_the_sketches(h: &Harness) {
    let v1 = resource("checkout", "v1", "prod");
    let store = h.open();
    // 10 spans kept by a 25% sampler, 2 of them failed, and 3 not sampled at all.
    let sampled: Vec<Span> = (1..=10)
        .map(|n| {
            let mut s = span(40 + n, 1, T0 + u64::from(n) * SECOND, 10, &v1);
            s.trace_state = "ot=th:c".into();
            if n <= 2 { failed(s, "Timeout") } else { s }
        })
        .collect();
    store.append(sampled).unwrap();
    store.append((1..=3).map(|n| span(60 + n, 1, T0 + 20 * SECOND, 10, &v1)).collect()).unwrap();
    store.flush().unwrap();
    let minute = (T0 / MINUTE) as i64;
    let rows = store
        .sketches(&SketchQuery {
            service: "checkout".into(),
            environment: Some("prod".into()),
            from_unix_minute: minute,
            to_unix_minute: minute + 1,
        })
        .unwrap();
    let stats = &rows[0].stats;
    assert_eq!((stats.spans, stats.errors, stats.latency.count()), (43, 8, 43), "{stats:?}");
    assert_eq!((stats.sample_size(), stats.error_types["Timeout"]), (13, 8));
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

// ---- metadata cases ----

fn commit(sha: char, message: &str) -> Commit {
    Commit {
        sha: sha.to_string().repeat(40),
        message: message.into(),
        author: Person { name: Some("Ada".into()), ..Person::default() },
        files: vec![FileChange { path: "src/cart.rs".into(), kind: FileChangeKind::Modified }],
        ..Commit::default()
    }
}

fn webhooks_apply_once_and_sources_merge(h: &Harness) {
    let store = h.open();
    let review = Review {
        kind: ForgeKind::Gitea,
        id: "7".into(),
        title: "Cache carts".into(),
        url: Some("https://git.example.com/shop/cart/pulls/7".into()),
        author: Person::default(),
        reviewers: vec!["bob".into(), "carol".into()],
        state: ReviewState::Merged,
        head_branch: Some("cache".into()),
        head_sha: Some("a".repeat(40)),
        merge_commit_sha: Some("b".repeat(40)),
        commits: vec!["a".repeat(40)],
    };
    let batch = ChangeBatch {
        repository: "shop/cart".into(),
        commits: vec![commit('a', "cache carts\n\nbody"), commit('b', "Merge pull request #7")],
        reviews: vec![review],
        branch_head: None,
    };
    assert!(!store.webhook_applied("gitea", "k1").unwrap());
    assert_eq!(store.apply_webhook("gitea", "k1", "push", &batch, T0).unwrap(), Applied::New);
    assert!(store.webhook_applied("gitea", "k1").unwrap());
    assert!(!store.webhook_applied("gogs", "k1").unwrap(), "keys are per integration");
    let replay = ChangeBatch { commits: vec![commit('c', "other")], ..batch.clone() };
    assert_eq!(
        store.apply_webhook("gitea", "k1", "push", &replay, T0).unwrap(),
        Applied::Duplicate
    );
    assert!(store.find_commit(&"c".repeat(40)).unwrap().is_none(), "a replay stores nothing");

    // A mirror adds parents later and knows no author: the webhook's author survives.
    let mut from_mirror = commit('a', "");
    from_mirror.author = Person::default();
    from_mirror.parents = vec!["9".repeat(40)];
    store
        .record_changes(&ChangeBatch {
            repository: "shop/cart".into(),
            commits: vec![from_mirror],
            ..ChangeBatch::default()
        })
        .unwrap();
    let found = store.find_commit("AAAAAAA").unwrap().expect("a unique prefix, any case");
    assert_eq!(found.repository, "shop/cart");
    assert_eq!(found.commit.author.name.as_deref(), Some("Ada"));
    assert_eq!(found.commit.parents, vec!["9".repeat(40)]);
    assert_eq!(found.commit.message, "cache carts\n\nbody", "an empty message never erases");
    assert_eq!(found.commit.files.len(), 1);
    assert!(store.find_commit("abc").unwrap().is_none(), "too short a prefix");

    // The same sha in a second repository makes the prefix ambiguous there, not in one.
    store
        .record_changes(&ChangeBatch {
            repository: "shop/other".into(),
            commits: vec![commit('a', "fork")],
            ..ChangeBatch::default()
        })
        .unwrap();
    assert!(store.find_commit("aaaaaaa").unwrap().is_none(), "ambiguous across repositories");
    // A service's own repository decides; a repository without it falls back to the unique one.
    let own = store.find_commit_in(Some("shop/other"), "AAAAAAA").unwrap().expect("its own");
    assert_eq!((own.repository.as_str(), own.commit.message.as_str()), ("shop/other", "fork"));
    let own = store.find_commit_in(Some("shop/cart"), &"a".repeat(40)).unwrap().unwrap();
    assert_eq!(own.repository, "shop/cart");
    assert!(store.find_commit_in(Some("shop/unrelated"), "aaaaaaa").unwrap().is_none());
    assert!(store.find_commit_in(None, "aaaaaaa").unwrap().is_none(), "no preference: ambiguous");
    assert!(store.commit("shop/other", &"A".repeat(40)).unwrap().is_some());

    for sha in ["a", "b"] {
        let reviews = store.reviews_of_commit(&sha.repeat(40)).unwrap();
        assert_eq!(reviews.len(), 1, "{sha}");
        assert_eq!(reviews[0].review.reviewers, ["bob", "carol"]);
        assert_eq!(reviews[0].review.commits, ["a".repeat(40)]);
    }
    let review = store.review("shop/cart", "7").unwrap().unwrap();
    assert_eq!((review.review.state, review.review.kind), (ReviewState::Merged, ForgeKind::Gitea));
    assert!(store.review("shop/cart", "8").unwrap().is_none());
}

fn new_deploy(version: &str, started_at_unix_nanos: u64) -> NewDeploy {
    NewDeploy {
        service: "checkout".into(),
        environment: "prod".into(),
        version: version.into(),
        commit: Some("d".repeat(40)),
        repository: Some("shop/cart".into()),
        started_at_unix_nanos,
        finished_at_unix_nanos: None,
        deployer: Some("ci".into()),
        is_rollback: false,
        url: None,
        event: None,
    }
}

fn deploys_merge_and_know_their_neighbours(h: &Harness) {
    let store = h.open();
    // Spans announce v2 first (an inferred deploy); CI's report merges into it.
    let v1 = store.record_deploy(&new_deploy("v1", T0)).unwrap();
    store
        .append(vec![span(60, 1, T0 + 10 * MINUTE, 1, &resource("checkout", "v2", "prod"))])
        .unwrap();
    store.services().unwrap();
    assert_eq!(store.deploys(Some("checkout"), Some("prod"), 10).unwrap().len(), 2, "inferred");
    let v2 = store.record_deploy(&new_deploy("v2", T0 + 9 * MINUTE)).unwrap();
    assert_eq!(v2.source, DeploySource::Merged);
    assert_eq!((v2.previous_id, v2.started_at_unix_nanos), (Some(v1.id), T0 + 9 * MINUTE));
    assert_eq!(v2.commit.as_deref(), Some("d".repeat(40).as_str()));
    // A repeated report of the current deploy updates it.
    let again = store
        .record_deploy(&NewDeploy { is_rollback: true, ..new_deploy("v2", T0 + 9 * MINUTE) })
        .unwrap();
    assert_eq!((again.id, again.is_rollback), (v2.id, true));
    let listed = store.deploys(Some("checkout"), None, 10).unwrap();
    assert_eq!(listed.iter().map(|d| d.id).collect::<Vec<_>>(), [v2.id, v1.id], "newest first");
    assert_eq!(store.next_deploy(&v1).unwrap().map(|d| d.id), Some(v2.id));
    assert!(store.next_deploy(&again).unwrap().is_none());
    assert_eq!(store.deploy(v1.id).unwrap().unwrap().version, "v1");
    assert!(store.deploy(999_999).unwrap().is_none());
    assert_eq!(store.deploys(None, Some("staging"), 10).unwrap().len(), 0);
}

fn forge_deploy(version: &str, commit: &str, event_id: &str, started: u64) -> NewDeploy {
    NewDeploy {
        version: version.into(),
        commit: Some(commit.into()),
        deployer: Some("Codertocat".into()),
        url: None,
        event: Some(model::ForgeEvent {
            integration: "gh".into(),
            forge: model::ForgeKind::Github,
            kind: "deployment".into(),
            id: event_id.into(),
            url: Some("https://github.com/shop/cart/deployments".into()),
        }),
        ..new_deploy(version, started)
    }
}

/// A version's spans naming `commit` as `vcs.ref.head.revision`.
fn spans_of_commit(store: &SpanStore, version: &str, commit: &str, start: u64) {
    let mut resource = (*resource("checkout", version, "prod")).clone();
    resource.attributes.push(KeyValue::new("vcs.ref.head.revision", Value::String(commit.into())));
    store.append(vec![span(70, 1, start, 1, &Arc::new(resource))]).unwrap();
    store.services().unwrap();
}

fn forge_deploys_are_recorded_once_and_take_the_spans_version(h: &Harness) {
    let store = h.open();
    let (e, f) = ("e".repeat(40), "f".repeat(40));
    // A GitHub deployment of a commit no span has named yet: recorded under its sha.
    let first = store.record_forge_deploy(&forge_deploy(&e, &e, "7", T0)).unwrap().unwrap();
    assert_eq!((first.version.as_str(), first.source), (e.as_str(), DeploySource::Explicit));
    let event = first.event.clone().unwrap();
    assert_eq!((event.kind.as_str(), event.id.as_str()), ("deployment", "7"));
    assert_eq!(event.describe(), "GitHub deployment 7");
    // Redelivered (or a second success of deployment 7): nothing new, even as another
    // service's deploy of the same event is recorded.
    assert!(store.record_forge_deploy(&forge_deploy(&e, &e, "7", T0)).unwrap().is_none());
    let other = NewDeploy { service: "cart".into(), ..forge_deploy(&e, &e, "7", T0) };
    assert!(store.record_forge_deploy(&other).unwrap().is_some(), "per service");
    // The build's spans arrive naming the commit: the forge deploy takes their version, and
    // no second deploy is inferred.
    spans_of_commit(&store, "v5", &e, T0 + MINUTE);
    let listed = store.deploys(Some("checkout"), Some("prod"), 10).unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!((listed[0].id, listed[0].version.as_str()), (first.id, "v5"));
    assert_eq!(listed[0].source, DeploySource::Merged);
    assert_eq!(listed[0].started_at_unix_nanos, T0, "the earlier of the two");
    assert_eq!(store.versions_of_commit("checkout", "prod", &e[..12]).unwrap(), ["v5"]);

    // Spans first this time (an inferred v6), then the forge's success: one deploy, which
    // keeps the spans' earlier start and gains the event.
    spans_of_commit(&store, "v6", &f, T0 + 10 * MINUTE);
    let merged =
        store.record_forge_deploy(&forge_deploy("v6", &f, "8", T0 + 11 * MINUTE)).unwrap().unwrap();
    assert_eq!(merged.source, DeploySource::Merged);
    assert_eq!(merged.started_at_unix_nanos, T0 + 10 * MINUTE);
    assert_eq!(merged.event.map(|e| e.id), Some("8".into()));
    assert_eq!(merged.previous_id, Some(first.id));
    assert_eq!(store.deploys(Some("checkout"), Some("prod"), 10).unwrap().len(), 2);
}

fn update(deploy: &model::Deploy, metric: &str, verdict: &str, is_final: bool) -> FindingUpdate {
    FindingUpdate {
        deploy_id: deploy.id,
        service: deploy.service.clone(),
        environment: deploy.environment.clone(),
        operation: "GET /cart/{id}".into(),
        span_kind: "server".into(),
        metric: metric.into(),
        verdict: verdict.into(),
        severity: "major".into(),
        is_final,
        look_minutes: 5,
        detail: "{\"p\":0.001}".into(),
        baseline_stats: vec![1, 2, 3],
    }
}

fn findings_follow_looks_and_people(h: &Harness) {
    let store = h.open();
    let v1 = store.record_deploy(&new_deploy("v1", T0)).unwrap();
    let v2 = store.record_deploy(&new_deploy("v2", T0 + 30 * MINUTE)).unwrap();
    let pending = store.deploys_to_evaluate(T0).unwrap();
    assert_eq!(pending.iter().map(|d| d.id).collect::<Vec<_>>(), [v1.id, v2.id]);
    let look = Evaluation { look_minutes: 5, is_final: false };
    let updates = [
        update(&v1, "latency_p95", "inconclusive", false),
        update(&v1, "error_rate", "no_change", true),
    ];
    assert!(store.record_look(&v1, &updates, look, T0 + MINUTE).unwrap());
    // The next look: the verdict changes (first seen restarts); a final finding stays.
    let updates = [
        update(&v1, "latency_p95", "regressed", false),
        update(&v1, "error_rate", "regressed", false),
    ];
    assert!(
        store
            .record_look(
                &v1,
                &updates,
                Evaluation { look_minutes: 10, is_final: true },
                T0 + 2 * MINUTE
            )
            .unwrap()
    );
    assert_eq!(
        store.evaluation(v1.id).unwrap(),
        Some(Evaluation { look_minutes: 10, is_final: true })
    );
    assert_eq!(
        store.deploys_to_evaluate(T0).unwrap().iter().map(|d| d.id).collect::<Vec<_>>(),
        [v2.id]
    );
    let all = store.findings(&FindingFilter { limit: 10, ..FindingFilter::default() }).unwrap();
    assert_eq!(all.len(), 2);
    let p95 = all.iter().find(|f| f.metric == "latency_p95").unwrap();
    let errors = all.iter().find(|f| f.metric == "error_rate").unwrap();
    assert_eq!((p95.verdict.as_str(), p95.first_seen_unix_nanos), ("regressed", T0 + 2 * MINUTE));
    assert_eq!((errors.verdict.as_str(), errors.is_final), ("no_change", true), "final stays");
    assert_eq!(p95.baseline_stats, [1, 2, 3]);

    // Explanations, filters, people.
    assert_eq!(store.findings_to_explain(v1.id).unwrap().len(), 1);
    store.set_finding_explanation(p95.id, "{\"suspects\":[]}", true).unwrap();
    assert!(store.findings_to_explain(v1.id).unwrap().is_empty());
    assert_eq!(store.deploys_to_announce(0).unwrap(), [v1.id]);
    let filter =
        |f: FindingFilter| store.findings(&FindingFilter { limit: 10, ..f }).unwrap().len();
    assert_eq!(
        filter(FindingFilter { verdict: Some("regressed".into()), ..Default::default() }),
        1
    );
    assert_eq!(filter(FindingFilter { deploy_id: Some(v2.id), ..Default::default() }), 0);
    assert_eq!(
        filter(FindingFilter { before_id: Some(p95.id.max(errors.id)), ..Default::default() }),
        1
    );
    assert_eq!(
        filter(FindingFilter { since_unix_nanos: Some(T0 + 2 * MINUTE), ..Default::default() }),
        1
    );
    let reach = |services: &[&str]| FindingFilter {
        allowed_services: Some(services.iter().map(|s| s.to_string()).collect()),
        ..Default::default()
    };
    assert_eq!(filter(reach(&["checkout", "cart"])), 2);
    assert_eq!(filter(reach(&["checkout'--", "x\"y"])), 0, "names are bound, never spliced");
    assert_eq!(filter(reach(&[])), 0, "an empty reach sees nothing");
    assert_eq!(store.unresolved_regressions(&v2).unwrap().len(), 1);
    let acknowledged = store
        .set_finding_status(
            p95.id,
            FindingStatus::Acknowledged,
            "oncall",
            Some("looking"),
            T0 + 3 * MINUTE,
        )
        .unwrap()
        .unwrap();
    assert_eq!(
        (acknowledged.status, acknowledged.status_note.as_deref()),
        (FindingStatus::Acknowledged, Some("looking"))
    );
    store.set_finding_status(p95.id, FindingStatus::Resolved, "v2", None, T0 + 4 * MINUTE).unwrap();
    assert!(store.unresolved_regressions(&v2).unwrap().is_empty());
    assert!(store.deploys_to_announce(T0 + 5 * MINUTE).unwrap().is_empty());
    assert!(
        store.set_finding_status(999_999, FindingStatus::Open, "x", None, 0).unwrap().is_none()
    );

    // A late CI report that moves the current deploy's start forgets its findings: the
    // windows moved, and a look measured on the old ones writes nothing.
    let v2_update = update(&v2, "latency_p95", "regressed", false);
    assert!(store.record_look(&v2, &[v2_update], look, T0 + 40 * MINUTE).unwrap());
    let moved = store.record_deploy(&new_deploy("v2", T0 + 31 * MINUTE)).unwrap();
    assert_eq!(moved.id, v2.id);
    let of_v2 = FindingFilter { deploy_id: Some(v2.id), ..Default::default() };
    assert_eq!(filter(of_v2), 0, "reset");
    assert!(store.evaluation(v2.id).unwrap().is_none());
    assert!(!store.record_look(&v2, &[], look, T0 + 41 * MINUTE).unwrap(), "a stale look");
}

fn delivery(key: &str, finding_id: u64) -> NewDelivery {
    NewDelivery {
        idempotency_key: key.into(),
        sink: "webhook:ops".into(),
        kind: "alert".into(),
        finding_id: Some(finding_id),
        deploy_id: Some(3),
        target: "spanblame_latency_regression".into(),
        summary: "p95 up".into(),
        request: "{}".into(),
        supersedes: Vec::new(),
    }
}

fn the_outbox_sends_each_decision_once(h: &Harness) {
    let store = h.open();
    assert_eq!(store.enqueue_deliveries(&[delivery("a", 7), delivery("b", 7)], 10).unwrap(), 2);
    assert_eq!(store.enqueue_deliveries(&[delivery("a", 7)], 11).unwrap(), 0, "same key");
    let due = store.due_deliveries(10, 10).unwrap();
    assert_eq!(due.iter().map(|d| d.idempotency_key.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    let retry = AttemptOutcome::Failed {
        status: Some(503),
        error: "busy".into(),
        retry_at_unix_nanos: Some(50),
    };
    store.record_attempt(due[0].id, &retry, 12).unwrap();
    let made =
        AttemptOutcome::Delivered { status: 201, result: Some("D43 https://phab/D43".into()) };
    store.record_attempt(due[1].id, &made, 12).unwrap();
    let delivered = store.delivery(due[1].id).unwrap().unwrap();
    assert_eq!(delivered.result.as_deref(), Some("D43 https://phab/D43"), "what it made is kept");
    assert!(store.due_deliveries(49, 10).unwrap().is_empty(), "backing off");
    let give_up =
        AttemptOutcome::Failed { status: None, error: "refused".into(), retry_at_unix_nanos: None };
    store.record_attempt(due[0].id, &give_up, 51).unwrap();
    let dead = store.delivery(due[0].id).unwrap().unwrap();
    assert_eq!((dead.state, dead.attempts, dead.last_status), (DeliveryState::Dead, 2, None));
    assert!(store.retry_delivery(dead.id, 60).unwrap());
    assert!(!store.retry_delivery(due[1].id, 60).unwrap(), "only dead rows retry");
    // A resolution supersedes the pending firing; pruning takes only matching keys.
    let resolved = NewDelivery { supersedes: vec!["a".into()], ..delivery("a-resolved", 7) };
    store.enqueue_deliveries(&[resolved], 61).unwrap();
    let due: Vec<String> =
        store.due_deliveries(61, 10).unwrap().into_iter().map(|d| d.idempotency_key).collect();
    assert_eq!(due, ["a-resolved"]);
    // Superseded before it was ever sent (a deploy reset) and decided again: due anew.
    let never_sent = NewDelivery { supersedes: vec!["c".into()], ..delivery("c-resolved", 8) };
    store.enqueue_deliveries(&[delivery("c", 8)], 62).unwrap();
    store.enqueue_deliveries(&[never_sent], 63).unwrap();
    let superseded = store.delivery_by_key("c").unwrap().unwrap();
    assert_eq!(superseded.state, DeliveryState::Superseded);
    assert_eq!(store.enqueue_deliveries(&[delivery("c", 9)], 64).unwrap(), 1, "revived");
    let revived = store.delivery_by_key("c").unwrap().unwrap();
    assert_eq!(
        (revived.state, revived.finding_id, revived.attempts),
        (DeliveryState::Pending, Some(9), 0)
    );
    assert_eq!(store.enqueue_deliveries(&[delivery("c", 9)], 65).unwrap(), 0, "once");
    // "a" was attempted before it was superseded, and may have landed: never sent again.
    assert_eq!(store.enqueue_deliveries(&[delivery("a", 7)], 66).unwrap(), 0);
    assert_eq!(store.prune_deliveries("zzz%", 100).unwrap(), 0);
    assert_eq!(store.prune_deliveries("a", 100).unwrap(), 1, "the superseded row");
    let listed = store
        .deliveries(&DeliveryFilter {
            state: Some(DeliveryState::Delivered),
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(listed.iter().map(|d| d.idempotency_key.as_str()).collect::<Vec<_>>(), ["b"]);
    assert_eq!(store.delivery_by_key("b").unwrap().unwrap().last_status, Some(201));
}

fn token(prefix: &str) -> StoredToken {
    StoredToken {
        prefix: prefix.into(),
        name: "ci".into(),
        secret_sha256: vec![1; 32],
        scopes: vec!["deploy".into(), "read".into()],
        services: Some(vec!["checkout".into()]),
        environments: None,
        created_unix_nanos: 10,
        created_by: "local".into(),
        expires_unix_nanos: 1_000,
        last_used_unix_nanos: None,
        revoked_unix_nanos: None,
        superseded_by: None,
        rotated_from: None,
    }
}

fn tokens_sessions_and_sign_ins(h: &Harness) {
    let store = h.open();
    let accounts = store.accounts();
    accounts.insert_token(&token("aaaa0001")).unwrap();
    assert!(accounts.insert_token(&token("aaaa0001")).is_err(), "prefixes are unique");
    let new = StoredToken { rotated_from: Some("aaaa0001".into()), ..token("bbbb0002") };
    assert!(accounts.rotate_token("aaaa0001", &new, 500).unwrap());
    assert!(!accounts.rotate_token("aaaa0001", &token("cccc0003"), 500).unwrap(), "once");
    let old = accounts.token("aaaa0001").unwrap().unwrap();
    assert_eq!((old.expires_unix_nanos, old.superseded_by.as_deref()), (500, Some("bbbb0002")));
    assert_eq!(accounts.token("bbbb0002").unwrap().unwrap(), new);
    accounts.touch_tokens(&[("bbbb0002".into(), 77), ("bbbb0002".into(), 70)]).unwrap();
    assert!(accounts.revoke_token("bbbb0002", 90).unwrap());
    assert!(!accounts.revoke_token("bbbb0002", 95).unwrap());
    let stored = accounts.token("bbbb0002").unwrap().unwrap();
    assert_eq!((stored.last_used_unix_nanos, stored.revoked_unix_nanos), (Some(77), Some(90)));
    assert_eq!(accounts.tokens().unwrap().len(), 2);

    let session = StoredSession {
        id_sha256: [9; 32],
        principal: "{\"id\":\"ada\"}".into(),
        csrf_token: "csrf".into(),
        id_token: "eyJ".into(),
        created_unix_nanos: 100,
        expires_unix_nanos: 200,
    };
    accounts.insert_session(&session).unwrap();
    assert_eq!(accounts.session(&[9; 32], 150).unwrap(), Some(session));
    assert!(accounts.session(&[9; 32], 200).unwrap().is_none(), "expired");
    let sign_in = PendingSignIn {
        state_sha256: [4; 32],
        nonce: "n".into(),
        code_verifier: "v".into(),
        return_to: "/".into(),
        expires_unix_nanos: 300,
    };
    accounts.insert_sign_in(&sign_in).unwrap();
    assert_eq!(accounts.take_sign_in(&[4; 32], 250).unwrap(), Some(sign_in));
    assert!(accounts.take_sign_in(&[4; 32], 250).unwrap().is_none(), "a state is good once");
    accounts.delete_expired_sessions(1_000).unwrap();
    assert!(accounts.session(&[9; 32], 150).unwrap().is_none());
}

fn audit(n: u64) -> NewAuditRecord {
    NewAuditRecord {
        time_unix_nanos: n,
        principal: "alice@example.test".into(),
        action: "trace.read".into(),
        resource: format!("trace/{n}"),
        outcome: "allowed".into(),
        client_addr: "127.0.0.1".into(),
        request_id: format!("req-{n}"),
    }
}

fn concurrent_writers_keep_one_audit_chain(h: &Harness) {
    let store = h.open();
    // Two more handles on the same metadata, as a CLI and another replica open it.
    let others = [h.accounts(), h.accounts()];
    std::thread::scope(|scope| {
        for (i, accounts) in others.iter().chain([store.accounts()]).enumerate() {
            scope.spawn(move || {
                for n in 0..20 {
                    let time = 1_000 + n * 10 + i as u64;
                    accounts.append_audit(&[audit(time), audit(time)]).unwrap();
                }
            });
        }
    });
    assert_eq!(store.accounts().verify_audit().unwrap(), Ok(120), "one chain, no gap");
    let records = store.accounts().audit_records(0, 0, 1_000).unwrap();
    assert_eq!(records.iter().map(|r| r.seq).collect::<Vec<_>>(), (1..=120).collect::<Vec<_>>());
    others[1].append_audit(&[audit(5_000), audit(5_001)]).unwrap();
    assert_eq!(store.accounts().enforce_audit_retention(2_000).unwrap(), 120);
    // The two kept, and the record of the deletion, chained after them.
    assert_eq!(others[0].verify_audit().unwrap(), Ok(3), "retention keeps the rest verifiable");
    let kept = others[0].audit_records(0, 0, 10).unwrap();
    assert_eq!(kept[0].seq, 121);
    assert_eq!(kept[2].action, "audit.retention");
}

fn one_holder_per_lease_until_it_expires(h: &Harness) {
    // Two holders through one handle: the decision is the database's, not the handle's.
    let store = h.open();
    let second = &store;
    const TTL: u64 = 15 * SECOND;
    assert!(store.acquire_lease("background", "replica-a", T0, TTL).unwrap());
    assert!(!second.acquire_lease("background", "replica-b", T0 + SECOND, TTL).unwrap(), "held");
    assert!(
        store.acquire_lease("background", "replica-a", T0 + 5 * SECOND, TTL).unwrap(),
        "renewed"
    );
    assert!(
        !second.acquire_lease("background", "replica-b", T0 + 16 * SECOND, TTL).unwrap(),
        "renewal counts"
    );
    assert_eq!(
        second.lease_holder("background", T0 + 16 * SECOND).unwrap().as_deref(),
        Some("replica-a")
    );
    // replica-a dies: once its lease expires, b takes it, and a cannot take it back.
    assert!(second.acquire_lease("background", "replica-b", T0 + 20 * SECOND, TTL).unwrap());
    assert!(!store.acquire_lease("background", "replica-a", T0 + 21 * SECOND, TTL).unwrap());
    assert!(store.acquire_lease("other", "replica-a", T0 + 21 * SECOND, TTL).unwrap(), "per name");
    second.release_lease("background", "replica-b").unwrap();
    assert!(store.lease_holder("background", T0 + 22 * SECOND).unwrap().is_none());
    assert!(
        store.acquire_lease("background", "replica-a", T0 + 22 * SECOND, TTL).unwrap(),
        "released"
    );
}

/// A PostgreSQL database at the schema before the newest migration (as the previous build
/// left it, with a delivery in its outbox) is brought up to date by `migrate` (which `serve`
/// runs too), and keeps what it held.
#[test]
fn a_postgresql_schema_one_migration_behind_is_migrated_and_keeps_its_rows() {
    let pg = testbed::Postgres::start();
    let url = pg.create_database("upgrade");
    let migrations = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/postgres");
    let mut scripts: Vec<std::path::PathBuf> = std::fs::read_dir(&migrations)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    scripts.sort();
    let newest = scripts.len();
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    client
        .batch_execute(
            "CREATE TABLE spanblame_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, \
             applied_unix_nanos BIGINT NOT NULL)",
        )
        .unwrap();
    for (i, script) in scripts[..newest - 1].iter().enumerate() {
        client.batch_execute(&std::fs::read_to_string(script).unwrap()).unwrap();
        let name = script.file_stem().unwrap().to_str().unwrap();
        client
            .execute(
                "INSERT INTO spanblame_migrations VALUES ($1, $2, 0)",
                &[&(i as i64 + 1), &name],
            )
            .unwrap();
    }
    client
        .execute(
            "INSERT INTO outbox (idempotency_key, sink, kind, target, summary, request, state, \
             created_unix_nanos, next_attempt_unix_nanos) \
             VALUES ('alert:1', 'webhook:chat', 'alert', 'chat', 'p95 latency of /cart', '{}', \
             'pending', 1, 1)",
            &[],
        )
        .unwrap();
    drop(client);

    let metadata = MetadataBackend::Postgres(PostgresOptions::new(&url));
    let dir = tempfile::tempdir().unwrap();
    let (before, after) = store::migrate_metadata(dir.path(), &metadata).unwrap();
    assert_eq!((before, after), (newest as u32 - 1, newest as u32));
    // The row is still there, with the column the newest migration added.
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let row = client.query_one("SELECT sink, result FROM outbox", &[]).unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, Option<String>>(1)),
        ("webhook:chat".into(), None)
    );
    // And a second start finds nothing to do.
    assert_eq!(store::migrate_metadata(dir.path(), &metadata).unwrap(), (after, after));
}
