//! Store behaviour: round trips through the WAL and blocks, recovery, retention, search.

use std::io::Write;
use std::sync::Arc;

use model::{
    Event, KeyValue, Link, Resource, Scope, Span, SpanId, SpanKind, Status, StatusCode, TraceId,
    Value,
};
use proptest::prelude::*;

use crate::{SketchQuery, SpanQuery, SpanStore, StoreOptions, SyncPolicy, codec};

const SECOND: u64 = 1_000_000_000;
const T0: u64 = 1_700_000_000 * SECOND;

fn resource(service: &str, version: &str) -> Arc<Resource> {
    Arc::new(Resource {
        attributes: vec![
            KeyValue::new("service.name", Value::String(service.into())),
            KeyValue::new("service.version", Value::String(version.into())),
            KeyValue::new("deployment.environment.name", Value::String("prod".into())),
        ],
        dropped_attributes_count: 0,
        schema_url: "https://opentelemetry.io/schemas/1.30.0".into(),
    })
}

fn span(trace: u8, span: u8, start: u64, resource: &Arc<Resource>) -> Span {
    Span {
        trace_id: TraceId::from_bytes([trace; 16]).unwrap(),
        span_id: SpanId::from_bytes([span; 8]).unwrap(),
        parent_span_id: (span > 1).then(|| SpanId::from_bytes([1; 8]).unwrap()),
        trace_state: "vendor=x".into(),
        flags: 1,
        name: format!("op-{}", span % 3),
        kind: SpanKind::Server,
        start_time_unix_nanos: start,
        end_time_unix_nanos: start + u64::from(span) * 1_000_000,
        attributes: vec![
            KeyValue::new("http.route", Value::String("/cart/{id}".into())),
            KeyValue::new("retries", Value::Int(-3)),
            KeyValue::new("ratio", Value::Double(0.25)),
            KeyValue::new(
                "tags",
                Value::Array(vec![Value::Bool(true), Value::Bytes(vec![0, 255])]),
            ),
            KeyValue::new("nested", Value::KvList(vec![KeyValue::new("k", Value::Empty)])),
        ],
        dropped_attributes_count: 2,
        events: vec![Event {
            time_unix_nanos: start + 5,
            name: "cache miss".into(),
            attributes: vec![KeyValue::new("key", Value::String("cart:1".into()))],
            dropped_attributes_count: 0,
        }],
        dropped_events_count: 1,
        links: vec![Link {
            trace_id: TraceId::from_bytes([9; 16]).unwrap(),
            span_id: SpanId::from_bytes([9; 8]).unwrap(),
            trace_state: String::new(),
            attributes: vec![],
            dropped_attributes_count: 0,
            flags: 0,
        }],
        dropped_links_count: 0,
        status: Status {
            code: if span.is_multiple_of(2) { StatusCode::Error } else { StatusCode::Ok },
            message: String::new(),
        },
        resource: Arc::clone(resource),
        scope: Arc::new(Scope { name: "lib".into(), version: "1".into(), ..Scope::default() }),
    }
}

fn options() -> StoreOptions {
    StoreOptions { row_group_spans: 4, ..StoreOptions::default() }
}

#[test]
fn codec_round_trips_every_field() {
    let r = resource("checkout", "v1");
    let spans: Vec<Span> = (1..20).map(|i| span(i % 4 + 1, i, T0 + u64::from(i), &r)).collect();
    let decoded = codec::decode(&codec::encode(&spans)).unwrap();
    assert_eq!(decoded, spans);
}

#[test]
fn spans_are_readable_from_head_blocks_and_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let r = resource("checkout", "v1");
    let first: Vec<Span> = (1..=6).map(|i| span(7, i, T0 + u64::from(i), &r)).collect();
    {
        let store = SpanStore::open(dir.path(), options()).unwrap();
        store.append(first[..3].to_vec()).unwrap();
        assert_eq!(store.trace(&first[0].trace_id).unwrap(), first[..3]);
        store.flush().unwrap();
        store.append(first[3..].to_vec()).unwrap();
        // Half in a block, half in the head.
        assert_eq!(store.stats().num_blocks, 1);
        assert_eq!(store.trace(&first[0].trace_id).unwrap(), first);
    }
    let store = SpanStore::open(dir.path(), options()).unwrap();
    assert_eq!(store.recovered_spans(), 3);
    assert_eq!(store.trace(&first[0].trace_id).unwrap(), first);
    store.flush().unwrap();
    drop(store); // one owner per data directory
    let store = SpanStore::open(dir.path(), options()).unwrap();
    assert_eq!(store.recovered_spans(), 0, "sealed WAL segments are deleted");
    assert_eq!(store.trace(&first[0].trace_id).unwrap(), first);
    assert!(store.trace(&TraceId::from_bytes([42; 16]).unwrap()).unwrap().is_empty());
}

/// (spans, errors, latency count) summed over the service's sketches, and the rows.
fn sketch_totals(store: &SpanStore) -> (u64, u64, u64, usize) {
    let query = SketchQuery {
        service: "checkout".into(),
        environment: None,
        from_unix_minute: 0,
        to_unix_minute: i64::MAX,
    };
    let rows = store.sketches(&query).unwrap();
    let spans = rows.iter().map(|r| r.stats.spans).sum();
    let errors = rows.iter().map(|r| r.stats.errors).sum();
    let latency = rows.iter().map(|r| r.stats.latency.count()).sum();
    (spans, errors, latency, rows.len())
}

#[test]
fn sketches_count_every_span_once_across_seals_and_crashes() {
    let dir = tempfile::tempdir().unwrap();
    let r = resource("checkout", "v1");
    // One series (the route names the operation, whatever the span name), over three
    // minutes; every even span failed.
    let mut spans: Vec<Span> =
        (1..=20).map(|i| span(5, i, T0 + u64::from(i) * 6 * SECOND, &r)).collect();
    spans[3].status = Status { code: StatusCode::Error, message: "boom".into() };
    {
        let store = SpanStore::open(dir.path(), options()).unwrap();
        store.append(spans[..10].to_vec()).unwrap();
        assert_eq!(sketch_totals(&store), (10, 5, 10, 2), "from the head");
        store.flush().unwrap();
        assert_eq!(sketch_totals(&store), (10, 5, 10, 2), "from the stored sketches");
        store.append(spans[10..15].to_vec()).unwrap();
        assert_eq!(sketch_totals(&store).0, 15, "both");
        // Freeze and persist the sketches, then "crash" before the block is written.
        let engine = store.embedded();
        engine.rotate().unwrap();
        let part = engine.heads_read().frozen[0].clone();
        engine.persist_sketches(&part).unwrap();
        assert_eq!(sketch_totals(&store).0, 15, "a persisted frozen part is read once");
    }
    let store = SpanStore::open(dir.path(), options()).unwrap();
    assert_eq!(store.recovered_spans(), 5);
    assert_eq!(sketch_totals(&store).0, 15, "replayed segments below the watermark add nothing");
    store.append(spans[15..].to_vec()).unwrap();
    drop(store); // a crash with unsealed, unpersisted spans
    let store = SpanStore::open(dir.path(), options()).unwrap();
    assert_eq!(sketch_totals(&store), (20, 10, 20, 3));
    store.flush().unwrap();
    drop(store);
    let store = SpanStore::open(dir.path(), options()).unwrap();
    assert_eq!(sketch_totals(&store), (20, 10, 20, 3));
    let rows =
        store.sketches(&SketchQuery { service: "checkout".into(), ..SketchQuery::default() });
    assert!(rows.unwrap().is_empty(), "an empty minute range reads nothing");
    let row = &store
        .sketches(&SketchQuery {
            service: "checkout".into(),
            environment: Some("prod".into()),
            from_unix_minute: 0,
            to_unix_minute: i64::MAX,
        })
        .unwrap()[0];
    assert_eq!(
        (row.series.operation.as_str(), row.series.span_kind.as_str(), row.series.version.as_str()),
        ("/cart/{id}", "server", "v1")
    );
    assert_eq!(row.stats.error_types.get("boom"), Some(&1));
}

#[test]
fn old_minutes_roll_up_into_hours_exactly_and_expire() {
    let dir = tempfile::tempdir().unwrap();
    let store = SpanStore::open(dir.path(), options()).unwrap();
    let r = resource("checkout", "v1");
    let spans: Vec<Span> =
        (1..=30).map(|i| span(6, i, T0 + u64::from(i) * 60 * SECOND, &r)).collect();
    store.append(spans).unwrap();
    store.flush().unwrap();
    let before = store
        .sketches(&SketchQuery {
            service: "checkout".into(),
            to_unix_minute: i64::MAX,
            ..SketchQuery::default()
        })
        .unwrap();
    let mut all_before = analysis::WindowStats::default();
    before.iter().for_each(|row| all_before.merge(&row.stats));
    let day = 24 * 3600 * SECOND;
    let report = store.roll_up_sketches(T0 + 10 * day, 8 * day, 90 * day).unwrap();
    assert_eq!((report.rolled_up_minutes, report.deleted_buckets), (30, 0));
    let after = store
        .sketches(&SketchQuery {
            service: "checkout".into(),
            to_unix_minute: i64::MAX,
            ..SketchQuery::default()
        })
        .unwrap();
    assert!(after.iter().all(|row| row.resolution_minutes == 60) && after.len() <= 2);
    let mut all_after = analysis::WindowStats::default();
    after.iter().for_each(|row| all_after.merge(&row.stats));
    assert_eq!(all_after, all_before, "roll-ups merge exactly");
    let report = store.roll_up_sketches(T0 + 100 * day, 8 * day, 90 * day).unwrap();
    assert_eq!(report.deleted_buckets, after.len() as u64);
}

#[test]
fn torn_write_at_the_end_of_the_wal_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let r = resource("checkout", "v1");
    let spans: Vec<Span> = (1..=3).map(|i| span(3, i, T0, &r)).collect();
    {
        let store = SpanStore::open(dir.path(), options()).unwrap();
        store.append(spans.clone()).unwrap();
    }
    // A record header promising 1000 bytes, followed by only a few: the process died mid-write.
    let wal = std::fs::read_dir(dir.path().join("wal")).unwrap().next().unwrap().unwrap().path();
    let good_len = std::fs::metadata(&wal).unwrap().len();
    let mut file = std::fs::OpenOptions::new().append(true).open(&wal).unwrap();
    file.write_all(&1000u32.to_le_bytes()).unwrap();
    file.write_all(&[0xde, 0xad, 0xbe, 0xef, 1, 2, 3]).unwrap();
    drop(file);

    let store = SpanStore::open(dir.path(), options()).unwrap();
    assert_eq!(store.trace(&spans[0].trace_id).unwrap(), spans);
    assert_eq!(std::fs::metadata(&wal).unwrap().len(), good_len);
    store.append(vec![span(4, 1, T0, &r)]).unwrap();
    drop(store);
    let store = SpanStore::open(dir.path(), options()).unwrap();
    assert_eq!(store.recovered_spans(), 4);
}

#[test]
fn retention_deletes_blocks_by_age_and_by_disk_budget() {
    let dir = tempfile::tempdir().unwrap();
    let r = resource("checkout", "v1");
    let store = SpanStore::open(dir.path(), options()).unwrap();
    let day = 24 * 3600 * SECOND;
    for (trace, start) in [(1u8, T0), (2, T0 + day), (3, T0 + 2 * day)] {
        store.append(vec![span(trace, 1, start, &r)]).unwrap();
        store.flush().unwrap();
    }
    assert_eq!(store.stats().num_blocks, 3);
    let trace = |t: u8| store.trace(&TraceId::from_bytes([t; 16]).unwrap()).unwrap().len();

    // "Now" is day 8: with 7 days of retention only the first block has expired.
    let report = store.enforce_retention(T0 + 8 * day - 1, 7 * day, None).unwrap();
    assert_eq!(report.deleted_blocks, 1);
    assert_eq!((trace(1), trace(2), trace(3)), (0, 1, 1));
    let files = std::fs::read_dir(dir.path().join("blocks")).unwrap().count();
    assert_eq!(files, 2);

    // A budget of one block keeps only the newest.
    let one_block = store.stats().block_bytes / 2 + 1;
    let report = store.enforce_retention(T0 + 8 * day, 7 * day, Some(one_block)).unwrap();
    assert_eq!(report.deleted_blocks, 1);
    assert_eq!((trace(2), trace(3)), (0, 1));
}

#[test]
fn search_filters_and_orders_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let checkout = resource("checkout", "v1");
    let cart = resource("cart", "v2");
    let store = SpanStore::open(dir.path(), options()).unwrap();
    store
        .append((1..=10).map(|t| span(t, 2, T0 + u64::from(t) * SECOND, &checkout)).collect())
        .unwrap();
    store.flush().unwrap();
    store
        .append((11..=12).map(|t| span(t, 3, T0 + u64::from(t) * SECOND, &cart)).collect())
        .unwrap();

    let all = SpanQuery { end_unix_nanos: u64::MAX, limit: 100, ..SpanQuery::default() };
    let ids = |query: &SpanQuery| -> Vec<u8> {
        store.search(query).unwrap().iter().map(|m| m.trace_id.as_bytes()[0]).collect()
    };
    assert_eq!(ids(&all), (1..=12).rev().collect::<Vec<u8>>());
    assert_eq!(ids(&SpanQuery { limit: 3, ..all.clone() }), vec![12, 11, 10]);
    assert_eq!(ids(&SpanQuery { service: Some("cart".into()), ..all.clone() }), vec![12, 11]);
    assert_eq!(
        ids(&SpanQuery { version: Some("v1".into()), limit: 2, ..all.clone() }),
        vec![10, 9]
    );
    assert_eq!(ids(&SpanQuery { status: Some(StatusCode::Ok), ..all.clone() }), vec![12, 11]);
    assert_eq!(
        ids(&SpanQuery { min_duration_nanos: Some(3_000_000), ..all.clone() }),
        vec![12, 11]
    );
    let attr =
        SpanQuery { attributes: vec![("retries".into(), "-3".into())], limit: 1, ..all.clone() };
    assert_eq!(ids(&attr), vec![12]);
    let window = SpanQuery {
        start_unix_nanos: T0 + 4 * SECOND,
        end_unix_nanos: T0 + 6 * SECOND,
        ..all.clone()
    };
    assert_eq!(ids(&window), vec![5, 4]);
    assert_eq!(ids(&SpanQuery { operation: Some("/cart/{id}".into()), ..all }).len(), 12);

    let services = store.services().unwrap();
    assert_eq!(services.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["cart", "checkout"]);
    assert_eq!(services[1].versions[0].version.as_deref(), Some("v1"));
    assert_eq!(services[1].versions[0].num_spans, 10);
    assert_eq!(services[1].operations[0].name, "/cart/{id}");
}

#[test]
fn no_sync_policy_still_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let r = resource("checkout", "v1");
    {
        let store =
            SpanStore::open(dir.path(), StoreOptions { sync: SyncPolicy::Never, ..options() })
                .unwrap();
        store.append(vec![span(5, 1, T0, &r)]).unwrap();
    }
    let store = SpanStore::open(dir.path(), options()).unwrap();
    assert_eq!(store.trace(&TraceId::from_bytes([5; 16]).unwrap()).unwrap().len(), 1);
}

#[test]
fn concurrent_appends_are_all_durable_and_visible() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        SpanStore::open(dir.path(), StoreOptions { max_head_spans: 50, ..options() }).unwrap(),
    );
    let r = resource("checkout", "v1");
    std::thread::scope(|scope| {
        for t in 1..=8u8 {
            let store = Arc::clone(&store);
            let r = Arc::clone(&r);
            scope.spawn(move || {
                for i in 1..=20u8 {
                    store.append(vec![span(t, i, T0 + u64::from(i), &r)]).unwrap();
                    if i % 7 == 0 {
                        store.maintain(T0).unwrap();
                    }
                }
            });
        }
    });
    for t in 1..=8u8 {
        assert_eq!(store.trace(&TraceId::from_bytes([t; 16]).unwrap()).unwrap().len(), 20);
    }
    drop(store);
    let store = SpanStore::open(dir.path(), options()).unwrap();
    for t in 1..=8u8 {
        assert_eq!(store.trace(&TraceId::from_bytes([t; 16]).unwrap()).unwrap().len(), 20);
    }
}

proptest! {
    #[test]
    fn codec_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
        let _ = codec::decode(&bytes);
    }

    #[test]
    fn codec_decode_never_panics_on_mutated_batches(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let r = resource("checkout", "v1");
        let spans: Vec<Span> = (1..6).map(|i| span(i, i, T0, &r)).collect();
        let mut bytes = codec::encode(&spans);
        for (idx, byte) in flips {
            let i = idx.index(bytes.len());
            bytes[i] = byte;
        }
        let _ = codec::decode(&bytes);
    }

    #[test]
    fn codec_round_trips_arbitrary_attribute_values(
        strings in proptest::collection::vec(".{0,20}", 0..5),
        ints in proptest::collection::vec(any::<i64>(), 0..5),
        doubles in proptest::collection::vec(any::<f64>().prop_filter("NaN != NaN", |d| !d.is_nan()), 0..5),
        start in 1u64..u64::MAX / 2,
    ) {
        let r = resource("svc", "v");
        let mut s = span(1, 1, start, &r);
        s.attributes = strings.iter().map(|v| KeyValue::new(v.clone(), Value::String(v.clone())))
            .chain(ints.iter().map(|i| KeyValue::new("i", Value::Int(*i))))
            .chain(doubles.iter().map(|d| KeyValue::new("d", Value::Double(*d))))
            .collect();
        let decoded = codec::decode(&codec::encode(std::slice::from_ref(&s))).unwrap();
        prop_assert_eq!(decoded, vec![s]);
    }
}

mod change_graph;

/// A span for the search property test: small alphabets, so filters both hit and miss.
fn random_span(trace: u8, index: u8, seed: u64, resources: &[Arc<Resource>]) -> Span {
    let pick = |salt: u64, n: u64| (seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ salt) % n;
    let mut s = span(
        trace,
        index,
        T0 + pick(1, 60) * SECOND + u64::from(index),
        &resources[pick(2, resources.len() as u64) as usize],
    );
    s.end_time_unix_nanos = s.start_time_unix_nanos + pick(3, 8) * 1_000_000;
    s.name = format!("op-{}", pick(4, 3));
    s.status.code = [StatusCode::Unset, StatusCode::Ok, StatusCode::Error][pick(5, 3) as usize];
    s.attributes =
        vec![KeyValue::new("tenant.id", Value::String(format!("tenant-{}", pick(6, 4))))];
    match pick(7, 6) {
        0 => s.attributes.push(KeyValue::new("http.route", Value::String("/cart/{id}".into()))),
        // A span that names its service itself, overriding its resource.
        1 => s.attributes.push(KeyValue::new("service.name", Value::String("override".into()))),
        2 => s.attributes.push(KeyValue::new("retries", Value::Int(pick(8, 3) as i64))),
        _ => {}
    }
    s
}

/// What a search returns, as trace ids with their matching span ids.
fn searched(store: &SpanStore, query: &SpanQuery) -> Vec<(TraceId, Vec<SpanId>)> {
    let matches = store.search(query).unwrap();
    matches.into_iter().map(|m| (m.trace_id, m.spans.iter().map(|s| s.span_id).collect())).collect()
}

fn brute_force(spans: &[Span], query: &SpanQuery) -> Vec<(TraceId, Vec<SpanId>)> {
    let mut by_trace: std::collections::BTreeMap<TraceId, Vec<&Span>> = Default::default();
    for span in spans.iter().filter(|s| query.matches(*s)) {
        by_trace.entry(span.trace_id).or_default().push(span);
    }
    let mut found: Vec<(u64, TraceId, Vec<SpanId>)> = by_trace
        .into_iter()
        .map(|(id, mut spans)| {
            spans.sort_by_key(|s| {
                std::cmp::Reverse((s.start_time_unix_nanos, *s.span_id.as_bytes()))
            });
            spans.dedup_by_key(|s| s.span_id);
            (spans[0].start_time_unix_nanos, id, spans.iter().map(|s| s.span_id).collect())
        })
        .collect();
    found.sort_by_key(|f| std::cmp::Reverse((f.0, f.1)));
    found.truncate(query.limit);
    found.into_iter().map(|(_, id, spans)| (id, spans)).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Search over a head, several blocks and many row groups returns exactly what a scan of
    /// every span finds: the same traces, in the same order, with the same spans, cut at
    /// `limit`.
    #[test]
    fn search_equals_a_brute_force_scan(
        seeds in proptest::collection::vec(any::<u64>(), 40..160),
        flush_every in 10usize..60,
        service in proptest::option::of(prop::sample::select(vec!["checkout", "cart", "override", "nope"])),
        operation in proptest::option::of(prop::sample::select(vec!["op-1", "/cart/{id}"])),
        min_ms in proptest::option::of(0u64..8),
        max_ms in proptest::option::of(0u64..8),
        status in proptest::option::of(prop::sample::select(vec![StatusCode::Ok, StatusCode::Error, StatusCode::Unset])),
        tenant in proptest::option::of(0u8..5),
        version in proptest::option::of(prop::sample::select(vec!["v1", "v2"])),
        allowed in proptest::option::of(prop::sample::select(vec![vec!["cart"], vec!["checkout", "override"]])),
        window in (0u64..60, 1u64..70),
        limit in 0usize..12,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let resources = [resource("checkout", "v1"), resource("cart", "v2"), resource("cart", "v1")];
        let options = StoreOptions { row_group_spans: 3, compacted_block_spans: 40, ..StoreOptions::default() };
        let store = SpanStore::open(dir.path(), options).unwrap();
        let spans: Vec<Span> = seeds
            .iter()
            .enumerate()
            .map(|(i, seed)| random_span((seed % 23) as u8 + 1, i as u8 + 1, *seed, &resources))
            .collect();
        for (i, chunk) in spans.chunks(7).enumerate() {
            store.append(chunk.to_vec()).unwrap();
            if (i * 7) % flush_every < 7 {
                store.flush().unwrap();
            }
            if i % 5 == 4 {
                // Compaction merges runs of small blocks (some blocks stay apart).
                store.compact().unwrap();
            }
        }
        // A retried export: some spans stored twice, in another block.
        store.append(spans[..5].to_vec()).unwrap();
        let query = SpanQuery {
            service: service.map(str::to_owned),
            operation: operation.map(str::to_owned),
            version: version.map(str::to_owned),
            min_duration_nanos: min_ms.map(|ms| ms * 1_000_000),
            max_duration_nanos: max_ms.map(|ms| ms * 1_000_000),
            status,
            // Tenant 4 holds the typed attribute instead: `retries` (an integer) read as text.
            attributes: tenant
                .map(|t| match t {
                    4 => vec![("retries".to_owned(), "1".to_owned())],
                    t => vec![("tenant.id".to_owned(), format!("tenant-{t}"))],
                })
                .unwrap_or_default(),
            start_unix_nanos: T0 + window.0 * SECOND,
            end_unix_nanos: T0 + (window.0 + window.1) * SECOND,
            limit,
            allowed_services: allowed.map(|a| a.into_iter().map(str::to_owned).collect()),
            ..SpanQuery::default()
        };
        let found = searched(&store, &query);
        prop_assert!(store.stats().num_blocks >= 1);
        prop_assert_eq!(found, brute_force(&spans, &query));
    }
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn a_data_directory_of_the_first_format_reads() {
    let fixture =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("test_data/first-format");
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture, dir.path());
    let checkout = resource("checkout", "v1");
    let cart = resource("cart", "v2");
    let expected = |t: u8| -> Vec<Span> {
        let r = if t <= 6 { &checkout } else { &cart };
        (1..=4).map(|i| span(t, i, T0 + u64::from(t) * SECOND + u64::from(i), r)).collect()
    };
    let all: Vec<Span> = (1..=10).flat_map(expected).collect();
    let check = |store: &SpanStore| {
        for t in 1..=10 {
            assert_eq!(
                store.trace(&TraceId::from_bytes([t; 16]).unwrap()).unwrap(),
                expected(t),
                "trace {t}"
            );
        }
        for query in [
            SpanQuery { end_unix_nanos: u64::MAX, limit: 100, ..SpanQuery::default() },
            SpanQuery {
                service: Some("cart".into()),
                end_unix_nanos: u64::MAX,
                limit: 2,
                ..SpanQuery::default()
            },
            SpanQuery {
                status: Some(StatusCode::Error),
                min_duration_nanos: Some(3_000_000),
                end_unix_nanos: u64::MAX,
                limit: 5,
                ..SpanQuery::default()
            },
        ] {
            let found = searched(store, &query);
            assert_eq!(found, brute_force(&all, &query), "{query:?}");
        }
    };
    let store = SpanStore::open(dir.path(), options()).unwrap();
    assert_eq!(store.recovered_spans(), 4, "trace 10 was still in the log");
    assert_eq!(store.stats().num_blocks, 2);
    check(&store);
    // Sealing the log writes a block of the current format beside the first format's.
    store.flush().unwrap();
    drop(store);
    let store = SpanStore::open(dir.path(), options()).unwrap();
    assert_eq!(store.stats().num_blocks, 3);
    check(&store);
}

/// Many small blocks, every span in one of them, with the sketches.
fn store_of_small_blocks(dir: &std::path::Path, options: StoreOptions) -> (SpanStore, Vec<Span>) {
    let r = resource("checkout", "v1");
    let store = SpanStore::open(dir, options).unwrap();
    let mut all = Vec::new();
    for block in 0..10u8 {
        // Trace 1 has a span in every block: compaction brings them together.
        let spans: Vec<Span> = (0..6u8)
            .map(|i| {
                let trace = if i == 0 { 1 } else { 10 + block * 6 + i };
                span(trace, block * 6 + i + 1, T0 + u64::from(block) * SECOND + u64::from(i), &r)
            })
            .collect();
        store.append(spans.clone()).unwrap();
        store.flush().unwrap();
        all.extend(spans);
    }
    (store, all)
}

fn check_every_span_once(store: &SpanStore, all: &[Span]) {
    assert_eq!(store.stats().num_block_spans, all.len() as u64, "each span stored once");
    let mut traces: Vec<TraceId> = all.iter().map(|s| s.trace_id).collect();
    traces.sort();
    traces.dedup();
    for trace in traces {
        let mut expected: Vec<Span> = all.iter().filter(|s| s.trace_id == trace).cloned().collect();
        expected.sort_by_key(|s| (s.start_time_unix_nanos, *s.span_id.as_bytes()));
        assert_eq!(store.trace(&trace).unwrap(), expected);
    }
    let query = SpanQuery { end_unix_nanos: u64::MAX, limit: 1000, ..SpanQuery::default() };
    let found = searched(store, &query);
    assert_eq!(found, brute_force(all, &query));
    assert_eq!(sketch_totals(store).0, all.len() as u64, "each span counted once in the sketches");
}

#[test]
fn compaction_merges_small_blocks_and_keeps_every_span_once() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions { row_group_spans: 4, compacted_block_spans: 40, ..options() };
    let (store, all) = store_of_small_blocks(dir.path(), options.clone());
    assert_eq!(store.stats().num_blocks, 10);
    check_every_span_once(&store, &all);
    store.compact().unwrap();
    let stats = store.stats();
    assert!(stats.num_blocks < 10 && stats.num_compacted_blocks_total >= 4, "{stats:?}");
    check_every_span_once(&store, &all);
    drop(store);
    let store = SpanStore::open(dir.path(), options).unwrap();
    assert_eq!(store.recovered_spans(), 0);
    check_every_span_once(&store, &all);
    let files = std::fs::read_dir(dir.path().join("blocks")).unwrap().count() as u64;
    assert_eq!(files, store.stats().num_blocks, "the merged blocks' files are gone");
}

#[test]
fn a_crash_between_writing_a_compacted_block_and_deleting_its_sources_loses_and_doubles_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions { row_group_spans: 4, compacted_block_spans: 40, ..options() };
    let (store, all) = store_of_small_blocks(dir.path(), options.clone());
    {
        // The compacted block is written and renamed; then the process dies before it
        // deletes the blocks it merged.
        let embedded = store.embedded();
        let blocks = embedded.blocks_for_test();
        let sources: Vec<&crate::block::BlockMeta> = blocks.iter().take(5).map(|b| &**b).collect();
        crate::block::compact(&dir.path().join("blocks"), &sources, 4).unwrap();
    }
    // A torn block write too: its temporary file is left behind.
    std::fs::write(dir.path().join("blocks/00000000000000000099.blk.tmp"), b"SPBLK002 torn")
        .unwrap();
    drop(store);
    let store = SpanStore::open(dir.path(), options).unwrap();
    assert_eq!(store.stats().num_blocks, 6, "the five merged blocks were deleted on open");
    check_every_span_once(&store, &all);
    let files = std::fs::read_dir(dir.path().join("blocks")).unwrap().count() as u64;
    assert_eq!(files, 6);
}

#[test]
fn a_backup_racing_seals_and_compaction_restores_every_span_once() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions { row_group_spans: 4, compacted_block_spans: 40, ..options() };
    let (store, mut all) = store_of_small_blocks(dir.path(), options.clone());
    let r = resource("checkout", "v1");
    let batch = |first: u8| -> Vec<Span> {
        (0..6u8)
            .map(|i| span(first + i, first + i, T0 + 30 * SECOND + u64::from(first + i), &r))
            .collect()
    };
    // In the WAL and the head only.
    let in_head = batch(100);
    store.append(in_head.clone()).unwrap();
    all.extend(in_head);
    let during = batch(150);
    all.extend(during.clone());
    let backups = tempfile::tempdir().unwrap();
    let dest = backups.path().join("backup");
    let mut linking = 0;
    let mut steps = Vec::new();
    let summary = crate::backup::backup(dir.path(), &dest, &mut |step: &str| {
        steps.push(step.to_owned());
        if step.starts_with("linking blocks: 0 ") {
            linking += 1;
            // After the database snapshot: a seal it does not know, and (the first time) a
            // merge that deletes blocks about to be linked, so the copy starts again.
            store.flush().unwrap();
            if linking == 1 {
                store.compact().unwrap();
            }
        } else if step.starts_with("a block changed") {
            store.append(during.clone()).unwrap();
        }
    })
    .unwrap();
    assert_eq!(linking, 2, "{steps:#?}");
    assert!(summary.wal_segments > 0 && summary.blocks > 0, "{summary:?}");
    assert_eq!(crate::backup::verify(&dest).unwrap(), summary);

    let restored_dir = backups.path().join("restored");
    crate::backup::restore(&dest, &restored_dir, &mut |_: &str| {}).unwrap();
    let restored = SpanStore::open(&restored_dir, options).unwrap();
    assert!(restored.recovered_spans() >= 6, "the last seal's spans come back from the WAL");
    restored.flush().unwrap();
    check_every_span_once(&restored, &all);

    // A damaged backup is named as such; a restore never writes over a data directory.
    let err = crate::backup::restore(&dest, dir.path(), &mut |_: &str| {}).unwrap_err();
    assert!(err.to_string().contains("is not empty"), "{err}");
    let block = std::fs::read_dir(dest.join("blocks")).unwrap().next().unwrap().unwrap().path();
    let mut bytes = std::fs::read(&block).unwrap();
    bytes[10] ^= 0xff;
    std::fs::remove_file(&block).unwrap(); // a hard link: never change the live block
    std::fs::write(&block, bytes).unwrap();
    let err = crate::backup::verify(&dest).unwrap_err().to_string();
    assert!(err.contains("does not match its checksum"), "{err}");
}
