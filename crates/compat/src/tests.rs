//! The parameter forms Tempo's API takes, and the older tag search read as TraceQL.

use crate::params::{go_duration_nanos, logfmt_pairs, unix_seconds};
use crate::tempo::parse_search;

const NOW: u64 = 1_767_225_600_000_000_000;

fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn go_durations_read_as_go_writes_them() {
    for (text, nanos) in [
        ("100ms", 100_000_000),
        ("1.5s", 1_500_000_000),
        ("1m30s", 90_000_000_000),
        ("2h", 7_200_000_000_000),
        ("250us", 250_000),
        ("250µs", 250_000),
        ("7ns", 7),
    ] {
        assert_eq!(go_duration_nanos("minDuration", text), Ok(nanos), "{text}");
    }
    for bad in ["", "fast", "5", "1d", "ms", "1.2.3s"] {
        let error = go_duration_nanos("minDuration", bad).unwrap_err();
        assert!(error.contains("`minDuration` must be a duration"), "{bad}: {error}");
    }
}

#[test]
fn logfmt_tags_read_quoted_and_bare_values() {
    assert_eq!(
        logfmt_pairs(r#"service.name="cart api" http.status_code=500  name="say \"hi\"""#).unwrap(),
        vec![
            ("service.name".to_owned(), "cart api".to_owned()),
            ("http.status_code".to_owned(), "500".to_owned()),
            ("name".to_owned(), "say \"hi\"".to_owned()),
        ]
    );
    assert!(logfmt_pairs("broken").unwrap_err().contains("has no value"));
    assert!(logfmt_pairs("a=\"open").unwrap_err().contains("never closed"));
    assert_eq!(logfmt_pairs("  ").unwrap(), vec![]);
}

#[test]
fn times_are_unix_seconds() {
    assert_eq!(unix_seconds("start", "1767225600"), Ok(NOW));
    assert_eq!(unix_seconds("start", "1767225600.5"), Ok(NOW + 500_000_000));
    for bad in ["yesterday", "-1", "1e20", "NaN"] {
        assert!(unix_seconds("start", bad).is_err(), "{bad}");
    }
}

#[test]
fn the_older_tag_search_reads_as_traceql() {
    let search = parse_search(
        &params(&[(
            "tags",
            "service.name=cart name=\"GET /\" status=error http.status_code=500 cached=true",
        )]),
        NOW,
    )
    .unwrap();
    assert_eq!(
        search.query.to_string(),
        "{ .service.name = \"cart\" && name = \"GET /\" && status = error && .http.status_code = 500 && .cached = true }"
    );
    // A name is text even when it looks like a number.
    let search = parse_search(&params(&[("tags", "name=200")]), NOW).unwrap();
    assert_eq!(search.query.to_string(), "{ name = \"200\" }");
    // Defaults: the last day up to now, 20 traces, 3 spans per spanset.
    let search = parse_search(&params(&[("q", "")]), NOW).unwrap();
    assert_eq!(search.query.to_string(), "{ }");
    assert_eq!((search.limit, search.spans_per_spanset), (20, 3));
    assert_eq!(search.end_unix_nanos - search.start_unix_nanos, 24 * 3600 * 1_000_000_000);
    // `end` covers the whole second it names.
    let search =
        parse_search(&params(&[("start", "1767225600"), ("end", "1767225600")]), NOW).unwrap();
    assert_eq!((search.start_unix_nanos, search.end_unix_nanos), (NOW, NOW + 1_000_000_000));
}

#[test]
fn what_every_match_needs_narrows_the_stores_search() {
    let query = traceql::parse(
        "{ resource.service.name = \"cart\" && name = \"GET /cart\" && duration >= 250ms && duration < 2s && status = error && span.tenant = 7 && .flag = true }",
    )
    .unwrap();
    let mut narrowed = store::SpanQuery::default();
    crate::find::push_down(&mut narrowed, &query.required());
    assert_eq!(narrowed.service.as_deref(), Some("cart"));
    assert_eq!(narrowed.operation.as_deref(), Some("GET /cart"));
    assert_eq!(
        (narrowed.min_duration_nanos, narrowed.max_duration_nanos),
        (Some(250_000_000), Some(2_000_000_000))
    );
    assert_eq!(narrowed.status, Some(model::StatusCode::Error));
    assert_eq!(
        narrowed.attributes,
        vec![("tenant".to_owned(), "7".to_owned()), ("flag".to_owned(), "true".to_owned())]
    );
    // What is not a conjunct of equalities and bounds narrows nothing.
    for query in [
        "{ name != \"x\" }",
        "{ name = \"a\" || name = \"b\" }",
        "{ .a =~ \"x.*\" }",
        "{ .ratio = 0.5 }",
    ] {
        let mut narrowed = store::SpanQuery::default();
        crate::find::push_down(&mut narrowed, &traceql::parse(query).unwrap().required());
        assert!(narrowed.operation.is_none() && narrowed.attributes.is_empty(), "{query}");
    }
}
