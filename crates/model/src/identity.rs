//! Version identity: which service, environment, version, commit, repository and code
//! location a span belongs to, read from the attribute conventions in use today.
//!
//! OpenTelemetry renamed several of these attributes (semantic conventions 1.27-1.31), other
//! tracers use their own names (Datadog's `git.commit.sha`), and container images carry the
//! OCI revision label. We accept all of them, newest convention first, so a user never has to
//! reconfigure an SDK for spanblame. A span attribute wins over a resource attribute of the
//! same name because it is the more specific statement.

use crate::Span;
use crate::span::Value;

/// The attribute names spanblame reads, in order of precedence within each list.
pub mod attribute_names {
    pub const SERVICE: &[&str] = &["service.name"];
    pub const ENVIRONMENT: &[&str] = &["deployment.environment.name", "deployment.environment"];
    pub const VERSION: &[&str] = &["service.version"];
    pub const COMMIT: &[&str] = &[
        "vcs.ref.head.revision",
        "vcs.repository.ref.revision",
        "git.commit.sha",
        "_dd.git.commit.sha",
        "org.opencontainers.image.revision",
    ];
    pub const REPOSITORY: &[&str] =
        &["vcs.repository.url.full", "git.repository_url", "_dd.git.repository_url"];
    pub const CODE_FILE_PATH: &[&str] = &["code.file.path", "code.filepath"];
    pub const CODE_FUNCTION_NAME: &[&str] = &["code.function.name"];
    /// Before semconv 1.30 the function and its namespace were separate; we join them.
    pub const CODE_FUNCTION_OLD: &str = "code.function";
    pub const CODE_NAMESPACE_OLD: &str = "code.namespace";
    pub const CODE_LINE_NUMBER: &[&str] = &["code.line.number", "code.lineno"];
    pub const CODE_STACKTRACE: &[&str] = &["code.stacktrace"];

    /// Whether `key` names a service, environment or version: the attributes that decide
    /// which version a span belongs to.
    pub fn is_identity(key: &str) -> bool {
        [SERVICE, ENVIRONMENT, VERSION].iter().any(|names| names.contains(&key))
    }
}

/// The service name OTel SDKs report when none is configured.
pub const UNKNOWN_SERVICE: &str = "unknown_service";

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CodeLocation {
    pub file_path: Option<String>,
    pub function_name: Option<String>,
    pub line_number: Option<i64>,
    pub stacktrace: Option<String>,
}

impl CodeLocation {
    pub fn is_empty(&self) -> bool {
        *self == CodeLocation::default()
    }
}

/// Everything spanblame needs to link a span to the code behind it. Fields are `None` when
/// the span does not say; nothing is guessed here.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VersionIdentity {
    pub service: String,
    pub environment: Option<String>,
    pub version: Option<String>,
    pub commit: Option<String>,
    pub repository: Option<String>,
    pub code: CodeLocation,
}

impl VersionIdentity {
    pub fn of(span: &Span) -> VersionIdentity {
        let text = |names: &[&str]| first_str(span, names).map(str::to_owned);
        let function_name = text(attribute_names::CODE_FUNCTION_NAME).or_else(|| {
            let function = text(&[attribute_names::CODE_FUNCTION_OLD])?;
            match text(&[attribute_names::CODE_NAMESPACE_OLD]) {
                Some(namespace) => Some(format!("{namespace}.{function}")),
                None => Some(function),
            }
        });
        let line_number = attribute_names::CODE_LINE_NUMBER.iter().find_map(|name| {
            match span.attribute(name)? {
                Value::Int(line) => Some(*line),
                Value::String(line) => line.trim().parse().ok(),
                _ => None,
            }
        });
        VersionIdentity {
            service: span.service_name().to_owned(),
            environment: text(attribute_names::ENVIRONMENT),
            version: text(attribute_names::VERSION),
            commit: text(attribute_names::COMMIT),
            repository: text(attribute_names::REPOSITORY),
            code: CodeLocation {
                file_path: text(attribute_names::CODE_FILE_PATH),
                function_name,
                line_number,
                stacktrace: text(attribute_names::CODE_STACKTRACE),
            },
        }
    }
}

/// The first of `names` that the span (or its resource) sets to a non-blank string.
/// Identity attributes are strings in every convention; other types are not guessed at.
pub(crate) fn first_str<'a>(span: &'a Span, names: &[&str]) -> Option<&'a str> {
    names.iter().find_map(|name| match span.attribute(name)? {
        Value::String(text) if !text.trim().is_empty() => Some(text.as_str()),
        _ => None,
    })
}

impl Span {
    /// `service.name`, or `unknown_service` as the SDKs report when none is set.
    pub fn service_name(&self) -> &str {
        first_str(self, attribute_names::SERVICE).unwrap_or(UNKNOWN_SERVICE)
    }

    pub fn environment(&self) -> Option<&str> {
        first_str(self, attribute_names::ENVIRONMENT)
    }

    pub fn version(&self) -> Option<&str> {
        first_str(self, attribute_names::VERSION)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{KeyValue, Resource, Scope, SpanId, SpanKind, Status, StatusCode, TraceId};

    fn span(resource: &[(&str, Value)], attributes: &[(&str, Value)]) -> Span {
        let kvs = |pairs: &[(&str, Value)]| {
            pairs.iter().map(|(k, v)| KeyValue::new(*k, v.clone())).collect::<Vec<_>>()
        };
        Span {
            trace_id: TraceId::from_bytes([1; 16]).unwrap(),
            span_id: SpanId::from_bytes([2; 8]).unwrap(),
            parent_span_id: None,
            trace_state: String::new(),
            flags: 0,
            name: "GET /cart".into(),
            kind: SpanKind::Server,
            start_time_unix_nanos: 1,
            end_time_unix_nanos: 2,
            attributes: kvs(attributes),
            dropped_attributes_count: 0,
            events: vec![],
            dropped_events_count: 0,
            links: vec![],
            dropped_links_count: 0,
            status: Status { code: StatusCode::Unset, message: String::new() },
            resource: Arc::new(Resource { attributes: kvs(resource), ..Resource::default() }),
            scope: Arc::new(Scope::default()),
        }
    }

    fn s(text: &str) -> Value {
        Value::String(text.to_owned())
    }

    #[test]
    fn a_sampled_span_stands_for_its_adjusted_count() {
        let with_state = |state: &str| Span { trace_state: state.into(), ..span(&[], &[]) };
        // th:c is a threshold of 3/4 of the range: 25% kept, each stands for 4.
        assert_eq!(with_state("ot=th:c").adjusted_count(), 4);
        assert_eq!(with_state("vendor=x,ot=rv:abcdef01234567;th:e666").adjusted_count(), 10);
        assert_eq!(with_state("ot=th:0").adjusted_count(), 1);
        assert_eq!(with_state("ot=th:8").adjusted_count(), 2);
        for malformed in ["ot=th:", "ot=th:xyz", "ot=th:123456789abcdef0", "th:c", "ot=c"] {
            assert_eq!(with_state(malformed).adjusted_count(), 1, "{malformed}");
        }
        let honeycomb = span(&[], &[("SampleRate", Value::Int(20))]);
        assert_eq!(honeycomb.adjusted_count(), 20);
        let attribute = span(&[("sampling.adjusted_count", Value::Double(2.6))], &[]);
        assert_eq!(attribute.adjusted_count(), 3);
        let absurd = span(&[], &[("SampleRate", Value::Int(-5))]);
        assert_eq!(absurd.adjusted_count(), 1);
        assert_eq!(span(&[], &[]).adjusted_count(), 1);
    }

    #[test]
    fn reads_current_conventions() {
        let identity = span(
            &[
                ("service.name", s("checkout")),
                ("service.version", s("1.4.2")),
                ("deployment.environment.name", s("prod")),
                ("deployment.environment", s("old-name-loses")),
                ("vcs.ref.head.revision", s("a01dbef8a")),
                ("vcs.repository.url.full", s("https://gogs.example.com/acme/shop")),
            ],
            &[
                ("code.file.path", s("checkout/cart.go")),
                ("code.function.name", s("cart.Add")),
                ("code.line.number", Value::Int(42)),
            ],
        )
        .identity();
        assert_eq!(identity.service, "checkout");
        assert_eq!(identity.version.as_deref(), Some("1.4.2"));
        assert_eq!(identity.environment.as_deref(), Some("prod"));
        assert_eq!(identity.commit.as_deref(), Some("a01dbef8a"));
        assert_eq!(identity.repository.as_deref(), Some("https://gogs.example.com/acme/shop"));
        assert_eq!(identity.code.file_path.as_deref(), Some("checkout/cart.go"));
        assert_eq!(identity.code.function_name.as_deref(), Some("cart.Add"));
        assert_eq!(identity.code.line_number, Some(42));
    }

    #[test]
    fn reads_old_and_foreign_conventions() {
        let identity = span(
            &[
                ("deployment.environment", s("staging")),
                ("git.repository_url", s("github.com/acme/shop")),
            ],
            &[
                ("git.commit.sha", s("0123456789abcdef0123456789abcdef01234567")),
                ("code.filepath", s("cart.py")),
                ("code.namespace", s("shop.cart")),
                ("code.function", s("add")),
                ("code.lineno", s("7")),
            ],
        )
        .identity();
        assert_eq!(identity.service, "unknown_service");
        assert_eq!(identity.environment.as_deref(), Some("staging"));
        assert_eq!(identity.commit.as_deref(), Some("0123456789abcdef0123456789abcdef01234567"));
        assert_eq!(identity.repository.as_deref(), Some("github.com/acme/shop"));
        assert_eq!(identity.code.file_path.as_deref(), Some("cart.py"));
        assert_eq!(identity.code.function_name.as_deref(), Some("shop.cart.add"));
        assert_eq!(identity.code.line_number, Some(7));
    }

    #[test]
    fn oci_revision_and_old_vcs_name_are_accepted() {
        let oci = span(&[("org.opencontainers.image.revision", s("abc1234"))], &[]).identity();
        assert_eq!(oci.commit.as_deref(), Some("abc1234"));
        let old = span(
            &[("org.opencontainers.image.revision", s("loses"))],
            &[("vcs.repository.ref.revision", s("def5678"))],
        )
        .identity();
        assert_eq!(old.commit.as_deref(), Some("def5678"));
    }

    #[test]
    fn span_attribute_wins_over_resource_and_blank_is_absent() {
        let identity = span(
            &[("service.version", s("from-resource")), ("deployment.environment.name", s(" "))],
            &[("service.version", s("from-span"))],
        )
        .identity();
        assert_eq!(identity.version.as_deref(), Some("from-span"));
        assert_eq!(identity.environment, None);
    }

    #[test]
    fn operation_prefers_http_route() {
        let with_route = span(&[], &[("http.route", s("/cart/{id}"))]);
        assert_eq!(with_route.operation(), "/cart/{id}");
        assert_eq!(span(&[], &[]).operation(), "GET /cart");
    }
}
