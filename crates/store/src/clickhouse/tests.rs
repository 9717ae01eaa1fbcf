//! The ClickHouse engine's SQL on a current ClickHouse (26.x, through the `chdb` Python
//! package), beside the 18.16 server the conformance suite runs: the schema is created, the
//! engine's own `RowBinary` rows are inserted, and every query it sends returns the rows it
//! should.

use std::sync::Arc;

use model::{
    KeyValue, Resource, Scope, Span, SpanId, SpanKind, Status, StatusCode, TraceId, Value,
};

use crate::clickhouse::queries;
use crate::clickhouse::schema::{self, Layout};
use crate::{SketchQuery, SpanQuery};

fn span(trace: u8, n: u8, service: &str, start: u64, failed: bool) -> Span {
    let resource = Arc::new(Resource {
        attributes: vec![
            KeyValue::new("service.name", Value::String(service.into())),
            KeyValue::new("service.version", Value::String("v1".into())),
            KeyValue::new("deployment.environment.name", Value::String("prod".into())),
        ],
        dropped_attributes_count: 0,
        schema_url: String::new(),
    });
    Span {
        trace_id: TraceId::from_bytes([trace; 16]).unwrap(),
        span_id: SpanId::from_bytes([trace, n, 1, 1, 1, 1, 1, 1]).unwrap(),
        parent_span_id: None,
        trace_state: String::new(),
        flags: 0,
        name: "GET /cart".into(),
        kind: SpanKind::Server,
        start_time_unix_nanos: start,
        end_time_unix_nanos: start + u64::from(n) * 1_000_000,
        attributes: vec![KeyValue::new("retries", Value::Int(i64::from(n)))],
        dropped_attributes_count: 0,
        events: vec![],
        dropped_events_count: 0,
        links: vec![],
        dropped_links_count: 0,
        status: Status {
            code: if failed { StatusCode::Error } else { StatusCode::Unset },
            message: if failed { "Timeout".into() } else { String::new() },
        },
        resource,
        scope: Arc::new(Scope::default()),
    }
}

#[test]
fn the_statements_run_on_a_current_clickhouse() {
    let python = std::env::var_os("SPANBLAME_TEST_CHDB_PYTHON").expect(
        "SPANBLAME_TEST_CHDB_PYTHON is not set: run the tests with `cargo xtask test` (it installs the chdb package, a current ClickHouse, into a virtualenv)",
    );
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout { database: "compat", cluster: None };
    const T0: u64 = 1_700_000_040_000_000_000;
    let spans = vec![
        span(1, 1, "storefront", T0, false),
        span(1, 2, "checkout", T0 + 1_000, true),
        span(2, 1, "storefront", T0 + 60_000_000_000, false),
    ];
    let mut plan: Vec<(String, Option<usize>)> =
        layout.statements().into_iter().map(|sql| (sql, None)).collect();
    let (rows, index, sketches, errors) = super::encode_batch(&spans);
    for (table, writer) in [
        (&schema::SPANS, rows),
        (&schema::TRACE_INDEX, index),
        (&schema::SKETCHES, sketches),
        (&schema::SKETCH_ERRORS, errors),
    ] {
        let path = dir.path().join(format!("{}.bin", table.name));
        std::fs::write(&path, &writer.bytes).unwrap();
        plan.push((
            format!(
                "INSERT INTO {} SELECT * FROM file('{}', 'RowBinary')",
                layout.local(table),
                path.display()
            ),
            None,
        ));
    }
    let trace = TraceId::from_bytes([1; 16]).unwrap();
    let ranges =
        vec![("storefront".to_owned(), T0, T0), ("checkout".to_owned(), T0 + 1_000, T0 + 1_000)];
    let everything = SpanQuery { end_unix_nanos: u64::MAX, limit: 10, ..SpanQuery::default() };
    let narrow = SpanQuery {
        service: Some("checkout".into()),
        operation: Some("GET /cart".into()),
        environment: Some("prod".into()),
        version: Some("v1".into()),
        min_duration_nanos: Some(1),
        max_duration_nanos: Some(10_000_000),
        status: Some(StatusCode::Error),
        attributes: vec![("retries".into(), "2".into())],
        allowed_services: Some(vec!["checkout".into(), "storefront".into()]),
        allowed_environments: Some(vec!["prod".into()]),
        ..everything.clone()
    };
    let sketch = SketchQuery {
        service: "storefront".into(),
        environment: Some("prod".into()),
        from_unix_minute: 0,
        to_unix_minute: i64::MAX,
    };
    let failing = SketchQuery { service: "checkout".into(), ..sketch.clone() };
    let ids = [TraceId::from_bytes([1; 16]).unwrap(), TraceId::from_bytes([2; 16]).unwrap()];
    let day = (T0 / schema::NANOS_PER_DAY) as i64;
    for (sql, expect) in [
        (queries::trace_ranges(&layout, &trace), Some(2)),
        (queries::trace_spans(&layout, &ranges, &trace), Some(2)),
        (queries::search_trace_ids(&layout, &queries::search_filter(&everything), 10), Some(2)),
        (queries::search_spans(&layout, &queries::search_filter(&everything), &ids), Some(3)),
        (queries::search_trace_ids(&layout, &queries::search_filter(&narrow), 10), Some(1)),
        (queries::sketch_rows(&layout, &queries::sketch_filter(&sketch)), Some(2)),
        (queries::sketch_error_rows(&layout, &queries::sketch_filter(&failing)), Some(1)),
        (queries::partitions(&layout.local(&schema::SPANS)), Some(1)),
        (queries::drop_partition(&layout.local(&schema::SPANS), day), None),
        (queries::search_trace_ids(&layout, &queries::search_filter(&everything), 10), Some(0)),
    ] {
        plan.push((sql.trim_end_matches(" FORMAT RowBinary").to_owned(), expect));
    }
    let statements: Vec<serde_json::Value> = plan
        .iter()
        .map(|(sql, expect)| serde_json::json!({"sql": sql, "expect_rows": expect}))
        .collect();
    let plan_json = serde_json::json!({ "statements": statements }).to_string();
    let plan_path = dir.path().join("plan.json");
    std::fs::write(&plan_path, plan_json).unwrap();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/clickhouse/chdb_dialect.py");
    let output = std::process::Command::new(python).arg(script).arg(&plan_path).output().unwrap();
    let log = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{log}{}", String::from_utf8_lossy(&output.stderr));
    assert!(log.starts_with("chdb 2"), "a current release ran it: {log}");
}
