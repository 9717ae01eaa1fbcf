//! The conformance table: every construct the crate reads, run over one small trace with
//! hand-computed answers; the refusals with their positions; and property tests (the parser
//! never panics, and a query's text reads back to the same query).

use std::sync::Arc;

use model::{
    KeyValue, Resource, Scope, Span, SpanId, SpanKind, Status, StatusCode, TraceId, Value,
};
use proptest::prelude::*;

use crate::*;

const MS: u64 = 1_000_000;

/// frontend `GET /cart` (900 ms) → checkout `apply_promotions` (600 ms, error) → checkout
/// `SELECT promotions` (400 ms, client); frontend → checkout `load_cart` (50 ms, ok);
/// frontend → payments `charge` (100 ms, error), which the caller may not see.
fn trace_spans() -> Vec<Span> {
    let span = |id: u8,
                parent: Option<u8>,
                service: &str,
                name: &str,
                kind,
                ms: u64,
                status: StatusCode,
                attributes: Vec<(&str, Value)>| Span {
        trace_id: TraceId::from_bytes([1; 16]).unwrap(),
        span_id: SpanId::from_bytes([id; 8]).unwrap(),
        parent_span_id: parent.map(|p| SpanId::from_bytes([p; 8]).unwrap()),
        trace_state: String::new(),
        flags: 0,
        name: name.into(),
        kind,
        start_time_unix_nanos: 1_000 * MS + u64::from(id) * MS,
        end_time_unix_nanos: 1_000 * MS + u64::from(id) * MS + ms * MS,
        attributes: attributes
            .into_iter()
            .map(|(k, v)| KeyValue { key: k.into(), value: v })
            .collect(),
        dropped_attributes_count: 0,
        events: Vec::new(),
        dropped_events_count: 0,
        links: Vec::new(),
        dropped_links_count: 0,
        status: Status {
            code: status,
            message: if status == StatusCode::Error && id == 2 {
                "promo service down".into()
            } else {
                String::new()
            },
        },
        resource: Arc::new(Resource {
            attributes: vec![KeyValue {
                key: "service.name".into(),
                value: Value::String(service.into()),
            }],
            dropped_attributes_count: 0,
            schema_url: String::new(),
        }),
        scope: Arc::new(Scope::default()),
    };
    vec![
        span(
            1,
            None,
            "frontend",
            "GET /cart",
            SpanKind::Server,
            900,
            StatusCode::Unset,
            vec![
                ("http.method", Value::String("GET".into())),
                ("http.status_code", Value::Int(200)),
            ],
        ),
        span(
            2,
            Some(1),
            "checkout",
            "apply_promotions",
            SpanKind::Internal,
            600,
            StatusCode::Error,
            vec![
                ("promo.count", Value::Int(3)),
                ("ratio", Value::Double(0.5)),
                ("cached", Value::Bool(false)),
            ],
        ),
        span(
            3,
            Some(2),
            "checkout",
            "SELECT promotions",
            SpanKind::Client,
            400,
            StatusCode::Unset,
            vec![("db.system", Value::String("postgresql".into()))],
        ),
        span(4, Some(1), "checkout", "load_cart", SpanKind::Internal, 50, StatusCode::Ok, vec![]),
        span(5, Some(1), "payments", "charge", SpanKind::Client, 100, StatusCode::Error, vec![]),
    ]
}

/// spanblame's fields: checkout's change is Rita's (deploy 7), frontend's Sam's; the code
/// `SELECT promotions` runs was last changed by Rita.
struct Changes;

impl Extensions for Changes {
    fn value(&mut self, trace: &Trace<'_>, index: usize, field: ChangeField) -> Option<Static> {
        let span = &trace.spans[index];
        let checkout = span.service_name() == "checkout";
        match field {
            ChangeField::Author => Some(Static::Str(if checkout { "rita" } else { "sam" }.into())),
            ChangeField::Commit => {
                Some(Static::Str(if checkout { "3f89bb6129" } else { "0b1c2d3e4f" }.into()))
            }
            ChangeField::Review => checkout.then(|| Static::Str("D42".into())),
            ChangeField::BlameAuthor => {
                (span.name == "SELECT promotions").then(|| Static::Str("rita".into()))
            }
            ChangeField::BlameCommit => {
                (span.name == "SELECT promotions").then(|| Static::Str("3f89bb6129".into()))
            }
            ChangeField::DeployId => checkout.then_some(Static::Int(7)),
        }
    }
}

/// Each spanset of `query` over the trace, as its span names.
fn run(query: &str) -> Vec<Vec<String>> {
    let spans = trace_spans();
    let visible: Vec<bool> = spans.iter().map(|s| s.service_name() != "payments").collect();
    let trace = Trace::new(&spans, visible);
    let query = parse(query).unwrap_or_else(|e| panic!("{query}: {e}"));
    query
        .evaluate(&trace, &mut Changes)
        .into_iter()
        .map(|set| set.spans.iter().map(|i| spans[*i].name.clone()).collect())
        .collect()
}

/// The conformance table (`conformance.txt`): each query with its spansets, as span names.
pub(crate) fn conformance() -> Vec<(&'static str, Vec<Vec<String>>)> {
    include_str!("../conformance.txt")
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let (query, sets) = line.split_once('\t').expect("a tab between query and spansets");
            let sets = match sets {
                "-" => Vec::new(),
                sets => sets
                    .split(" ;; ")
                    .map(|set| set.split(" | ").map(str::to_owned).collect())
                    .collect(),
            };
            (query, sets)
        })
        .collect()
}

#[test]
fn the_conformance_table_holds() {
    let table = conformance();
    assert!(table.len() >= 70, "the table was not read: {}", table.len());
    let mut wrong = Vec::new();
    for (query, expected) in table {
        let got = run(query);
        if got != expected {
            wrong.push(format!("{query}\n  expected {expected:?}\n  got      {got:?}"));
        }
        // The canonical text reads back to the same query.
        let parsed = parse(query).unwrap();
        let again = parse(&parsed.to_string()).unwrap_or_else(|e| panic!("{parsed}: {e}"));
        assert_eq!(parsed.pipeline, again.pipeline, "{query} printed as {parsed}");
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn select_and_by_say_what_to_show() {
    let spans = trace_spans();
    let trace = Trace::new(&spans, vec![true; spans.len()]);
    let query =
        parse("{ span.http.method = \"GET\" } | select(resource.service.name) | by(kind)").unwrap();
    let sets = query.evaluate(&trace, &mut NoExtensions);
    assert_eq!(sets.len(), 1);
    assert_eq!(sets[0].by, vec![("kind".to_owned(), Static::Kind(SpanKind::Server))]);
    assert_eq!(sets[0].selected.len(), 1);
    assert_eq!(sets[0].selected[0].to_string(), "resource.service.name");
    let named: Vec<String> = query.named_fields().iter().map(ToString::to_string).collect();
    assert_eq!(named, ["span.http.method", "resource.service.name", "kind"]);
}

#[test]
fn required_conditions_are_what_every_match_meets() {
    let texts = |query: &str| -> Vec<String> {
        parse(query)
            .unwrap()
            .required()
            .iter()
            .map(|c| format!("{} {} {}", c.field, c.op.symbol(), c.value))
            .collect()
    };
    assert_eq!(
        texts(
            "{ resource.service.name = \"checkout\" && duration > 1s && .a =~ \"x\" } | count() > 1"
        ),
        ["resource.service.name = \"checkout\"", "duration > 1s", ".a =~ \"x\""]
    );
    assert_eq!(
        texts("{ status = error } >> { kind = client && name = \"q\" }"),
        ["kind = client", "name = \"q\""]
    );
    assert!(texts("{ status = error } || { kind = client }").is_empty());
    assert!(texts("{ status = error || kind = client }").is_empty());
    assert!(texts("{ .a = nil }").is_empty());
    assert!(texts("{ }").is_empty());
}

/// (query, the column of the error, words its message must have).
const REFUSED: &[(&str, usize, &str)] = &[
    ("", 1, "empty query"),
    ("   ", 1, "empty query"),
    ("{ .a = 1", 9, "end of the query"),
    ("{ rate() }", 3, "metrics query"),
    ("{ } | rate()", 7, "metrics query"),
    ("{ } | quantile_over_time(duration, .9)", 7, "metrics query"),
    ("{ .a + 1 = 2 }", 6, "arithmetic"),
    ("{ event.name = \"x\" }", 3, "`event` scope"),
    ("{ link:spanID = \"x\" }", 3, "`link` scope"),
    ("{ foo = 1 }", 3, "unknown word `foo`"),
    ("{ span:foo = 1 }", 3, "unknown intrinsic"),
    ("{ change.foo = 1 }", 3, "unknown spanblame field"),
    ("{ name = \"x }", 10, "never closed"),
    ("{ duration > 5parsecs }", 15, "unknown duration unit"),
    ("{ .a == 1 }", 6, "`==`"),
    ("{ .a = 1 = 2 }", 10, "second comparison"),
    ("{ name =~ \"(\" }", 8, "does not compile"),
    ("{ name =~ 5 }", 8, "other than a string"),
    ("{ } | avg() > 1", 11, "without a field"),
    ("{ } | count()", 14, "after count()"),
    ("{ } | median(duration) > 1s", 7, "unknown function `median`"),
    ("{ } { }", 5, "after a complete query"),
    ("{ } )", 5, "closes nothing"),
    ("{ .a = \"\\q\" }", 9, "unknown escape"),
    ("{ .a = 1 } & { }", 12, "lone `&`"),
    ("name = \"x\"", 1, "where a spanset belongs"),
    ("{ .a = 1 .b = 2 }", 10, "inside braces"),
];

#[test]
fn refusals_say_where_and_what() {
    for (query, column, words) in REFUSED {
        let error = parse(query).map(|q| q.to_string()).expect_err(query);
        let text = error.to_string();
        assert!(text.contains(words), "{query}: {text}");
        assert_eq!(error.column, *column, "{query}: {text}");
    }
    let deep = format!("{}{{ }}{}", "(".repeat(200), ")".repeat(200));
    assert!(parse(&deep).unwrap_err().to_string().contains("nesting"));
    let not = format!("{{ {}true }}", "!".repeat(10_000));
    assert!(parse(&not).unwrap_err().to_string().contains("nesting"));
    let long = format!("{{ .a = \"{}\" }}", "x".repeat(MAX_QUERY_BYTES));
    assert!(parse(&long).unwrap_err().to_string().contains("16 KiB"));
}

fn static_value() -> impl Strategy<Value = Static> {
    prop_oneof![
        "\\PC{0,8}".prop_map(Static::Str),
        any::<i64>().prop_map(Static::Int),
        (-1e9f64..1e9).prop_map(Static::Float),
        any::<bool>().prop_map(Static::Bool),
        (0u64..1_000_000_000_000).prop_map(Static::Duration),
        prop_oneof![Just(StatusCode::Ok), Just(StatusCode::Error), Just(StatusCode::Unset)]
            .prop_map(Static::Status),
        prop_oneof![Just(SpanKind::Server), Just(SpanKind::Client), Just(SpanKind::Internal)]
            .prop_map(Static::Kind),
        Just(Static::Nil),
    ]
}

fn leaf() -> impl Strategy<Value = Field> {
    prop_oneof![
        static_value().prop_map(Field::Static),
        (0..INTRINSICS.len()).prop_map(|i| Field::Intrinsic(INTRINSICS[i].1)),
        (
            prop_oneof![
                Just(AttributeScope::Span),
                Just(AttributeScope::Resource),
                Just(AttributeScope::Any)
            ],
            prop_oneof!["[a-z][a-z0-9_.:/-]{0,10}", "\\PC{0,6}"],
        )
            .prop_map(|(scope, name)| Field::Attribute(Attribute { scope, name })),
        (0..CHANGE_FIELDS.len()).prop_map(|i| Field::Change(CHANGE_FIELDS[i].1)),
    ]
}

fn field() -> impl Strategy<Value = Field> {
    let ops = prop_oneof![
        Just(BinaryOp::And),
        Just(BinaryOp::Or),
        Just(BinaryOp::Eq),
        Just(BinaryOp::Ne),
        Just(BinaryOp::Gt),
        Just(BinaryOp::Ge),
        Just(BinaryOp::Lt),
        Just(BinaryOp::Le),
    ];
    leaf().prop_recursive(4, 24, 2, move |inner| {
        prop_oneof![
            (inner.clone(), ops.clone(), inner.clone()).prop_map(|(l, op, r)| Field::Binary(
                Box::new(l),
                op,
                Box::new(r)
            )),
            (
                inner.clone(),
                prop_oneof![Just(BinaryOp::Match), Just(BinaryOp::NotMatch)],
                "[a-z.]{0,5}"
            )
                .prop_map(|(l, op, p)| Field::Binary(
                    Box::new(l),
                    op,
                    Box::new(Field::Static(Static::Str(p)))
                )),
            inner.prop_map(|f| Field::Not(Box::new(f))),
        ]
    })
}

fn stage() -> impl Strategy<Value = Stage> {
    let comparison = prop_oneof![Just(BinaryOp::Eq), Just(BinaryOp::Gt), Just(BinaryOp::Le)];
    prop_oneof![
        proptest::option::of(field()).prop_map(Stage::Filter),
        (comparison.clone(), static_value()).prop_map(|(op, value)| Stage::Aggregate {
            function: Aggregate::Count,
            of: None,
            op,
            value
        }),
        (
            prop_oneof![Just(Aggregate::Avg), Just(Aggregate::Max), Just(Aggregate::Sum)],
            leaf(),
            comparison,
            static_value()
        )
            .prop_map(|(function, of, op, value)| Stage::Aggregate {
                function,
                of: Some(of),
                op,
                value
            }),
        proptest::collection::vec(leaf(), 1..3).prop_map(Stage::Select),
        leaf().prop_map(Stage::By),
        Just(Stage::Coalesce),
    ]
}

fn spanset() -> impl Strategy<Value = SpansetExpr> {
    let ops = prop_oneof![
        Just(SpansetOp::And),
        Just(SpansetOp::Or),
        Just(SpansetOp::Child),
        Just(SpansetOp::Descendant),
        Just(SpansetOp::Parent),
        Just(SpansetOp::Ancestor),
        Just(SpansetOp::Sibling),
    ];
    proptest::option::of(field()).prop_map(SpansetExpr::Filter).prop_recursive(
        3,
        12,
        2,
        move |inner| {
            prop_oneof![
                (inner.clone(), ops.clone(), inner.clone())
                    .prop_map(|(l, op, r)| SpansetExpr::Binary(Box::new(l), op, Box::new(r))),
                (inner, proptest::collection::vec(stage(), 1..3)).prop_map(|(first, stages)| {
                    SpansetExpr::Pipeline(Box::new(Pipeline { first, stages }))
                }),
            ]
        },
    )
}

proptest! {
    #[test]
    fn text_reads_back_to_the_same_query(
        first in spanset(),
        stages in proptest::collection::vec(stage(), 0..3),
    ) {
        let pipeline = Pipeline { first, stages };
        let text = pipeline.to_string();
        let again = parse(&text).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        prop_assert_eq!(pipeline, again.pipeline, "{}", text);
    }

    #[test]
    fn no_text_makes_the_parser_panic(text in "\\PC{0,80}") {
        let _ = parse(&text);
    }

    #[test]
    fn no_token_soup_makes_the_parser_panic(
        parts in proptest::collection::vec(
            prop_oneof![
                Just("{"), Just("}"), Just("("), Just(")"), Just("|"), Just("&&"), Just("||"),
                Just(">"), Just(">>"), Just("<"), Just("~"), Just("!"), Just("="), Just("=~"),
                Just("count()"), Just("by("), Just("select("), Just(".a"), Just("name"),
                Just("1s"), Just("\"x\""), Just("-"), Just(","), Just("nil"), Just("span:"),
            ],
            0..30,
        )
    ) {
        let text = parts.join(" ");
        if let Ok(query) = parse(&text) {
            let spans = trace_spans();
            let trace = Trace::new(&spans, vec![true; spans.len()]);
            let _ = query.evaluate(&trace, &mut Changes);
            prop_assert!(parse(&query.to_string()).is_ok(), "{}", query);
        }
    }
}

#[test]
fn whether_a_query_needs_the_whole_trace() {
    for (query, whole) in [
        ("{ }", false),
        ("{ .a = 1 && duration > 1s } | count() > 2 | by(name) | select(.b)", false),
        ("{ change.blame.author = \"rita\" }", false),
        ("{ .a = 1 } >> { .b = 2 }", true),
        ("{ .a = 1 } && { .b = 2 }", true),
        ("({ } | count() > 1)", true),
        ("{ rootServiceName = \"x\" }", true),
        ("{ } | { traceDuration > 1s }", true),
    ] {
        assert_eq!(parse(query).unwrap().needs_whole_trace(), whole, "{query}");
    }
}
