//! Access end to end through the router: identity-aware-proxy assertions verified against a
//! JWKS served over HTTP (valid, missing, unsigned, wrongly signed, rotated keys); the route ×
//! principal table over every route the server exposes; redaction of other teams' spans in a
//! shared trace and in search; CSRF and security headers; token restrictions; the audit trail.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use auth::{IdentityMapping, Need};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use model::ForgeKind;
use serde_json::{Value, json};
use server::{
    AccessSettings, AuthMode, ChangeSettings, Integration, ProxySettings, ServiceOwnership,
};

use crate::support::{SECOND, T0, TestApp};

const HEADER: &str = "x-pomerium-jwt-assertion";
const ISSUER: &str = "proxy.example.test";
const AUDIENCE: &str = "spanblame.example.test";
// Two Ed25519 keys: PKCS#8 DER (base64) and the public `x`. The first is RFC 8037's example.
const KEY_A: (&str, &str) = (
    "MC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g",
    "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
);
const KEY_B: (&str, &str) = (
    "MC4CAQAwBQYDK2VwBCIEIHEBLyCoa8eswPmn3wnuZgnD1rIu4Ttv4ALEXvBoGZP0",
    "6NStxYFxHhPxxApRPEoNWrpE7H2SH0QQWWx4BAv_xa0",
);
const SECRET: &str = "webhook-secret-for-tests";

fn jwk(kid: &str, key: (&str, &str)) -> Value {
    json!({"kty": "OKP", "crv": "Ed25519", "x": key.1, "kid": kid, "alg": "EdDSA", "use": "sig"})
}

/// A JWKS document served over HTTP on loopback, replaceable (key rotation).
struct JwksServer {
    url: String,
    keys: Arc<Mutex<Value>>,
}

impl JwksServer {
    async fn start(keys: Value) -> JwksServer {
        let keys = Arc::new(Mutex::new(keys));
        let served = Arc::clone(&keys);
        let app = axum::Router::new().route(
            "/jwks.json",
            axum::routing::get(move || {
                let served = Arc::clone(&served);
                async move { axum::Json(served.lock().unwrap().clone()) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        JwksServer { url, keys }
    }
}

fn sign(key: (&str, &str), kid: &str, claims: &Value) -> String {
    let header = Header { kid: Some(kid.into()), ..Header::new(Algorithm::EdDSA) };
    let der = STANDARD.decode(key.0).unwrap();
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_ed_der(&der)).unwrap()
}

fn assertion_claims(email: &str, groups: &[&str]) -> Value {
    let now = T0 / SECOND;
    json!({"iss": ISSUER, "aud": AUDIENCE, "sub": email, "email": email, "groups": groups,
           "iat": now, "exp": now + 300})
}

async fn proxy_app(jwks: &JwksServer) -> TestApp {
    let changes = ChangeSettings {
        integrations: vec![Integration {
            name: "gh".into(),
            kind: ForgeKind::Github,
            secret: SECRET.as_bytes().to_vec(),
            api_url: None,
            api_token: None,
        }],
        services: ["checkout", "cart"]
            .into_iter()
            .map(|s| (s, "payments"))
            .chain([("search", "discovery")])
            .map(|(service, team)| ServiceOwnership {
                service: service.into(),
                repository: None,
                path_prefix: None,
                team: Some(team.into()),
                deploy_from: Vec::new(),
            })
            .collect(),
        ..ChangeSettings::default()
    };
    let access = AccessSettings {
        mode: AuthMode::Proxy(ProxySettings {
            assertion_header: HEADER.into(),
            jwks_url: jwks.url.clone(),
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
        }),
        ingest_open: false,
        deploys_open: false,
        identity: IdentityMapping {
            groups_claim: "groups".into(),
            admin_groups: vec!["sre-admins".into()],
            oncall_lead_groups: vec!["oncall-leads".into()],
            auditor_groups: vec!["security".into()],
            teams: vec![
                ("payments".into(), vec!["payments-eng".into()]),
                ("discovery".into(), vec!["search-eng".into()]),
            ],
        },
        ..AccessSettings::default()
    };
    TestApp::with_settings(changes, access)
}

/// Who sends a request: a proxy assertion, a bearer token, or nothing.
#[derive(Clone)]
enum As {
    Nobody,
    Assertion(String),
    Bearer(String),
}

/// Headers and bytes of a request body.
type Payload = (Vec<(String, String)>, Vec<u8>);

async fn send(
    app: &TestApp,
    who: &As,
    method: &str,
    path: &str,
    body: Option<Payload>,
) -> (StatusCode, Value) {
    let mut request = Request::builder().method(method).uri(path);
    match who {
        As::Nobody => {}
        As::Assertion(jwt) => request = request.header(HEADER, jwt),
        As::Bearer(token) => request = request.header("authorization", format!("Bearer {token}")),
    }
    let body = match body {
        Some((headers, bytes)) => {
            for (name, value) in headers {
                request = request.header(name, value);
            }
            Body::from(bytes)
        }
        None if method == "POST" => {
            request = request.header("content-type", "application/json");
            Body::from("{}")
        }
        None => Body::empty(),
    };
    app.send(request.body(body).unwrap()).await
}

async fn create_token(
    app: &TestApp,
    admin: &As,
    scopes: &[&str],
    services: Option<&[&str]>,
) -> String {
    let body = json!({"name": format!("test-{}", scopes.join("-")), "scopes": scopes, "services": services});
    let headers = vec![("content-type".to_owned(), "application/json".to_owned())];
    let (status, answer) =
        send(app, admin, "POST", "/api/v1/tokens", Some((headers, body.to_string().into_bytes())))
            .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    answer["secret"].as_str().unwrap().to_owned()
}

/// Exports spans of several services in one trace (the caller must be allowed to ingest).
async fn export(
    app: &TestApp,
    token: &As,
    trace_id: &str,
    spans: &[(&str, &str, &str, Option<&str>)],
) -> Value {
    let resource_spans: Vec<Value> = spans
        .iter()
        .map(|(service, span_id, name, parent)| {
            json!({
                "resource": {"attributes": [
                    {"key": "service.name", "value": {"stringValue": service}},
                    {"key": "deployment.environment.name", "value": {"stringValue": "prod"}},
                ]},
                "scopeSpans": [{"spans": [{
                    "traceId": trace_id, "spanId": span_id, "parentSpanId": parent.unwrap_or(""),
                    "name": name, "kind": 2,
                    "startTimeUnixNano": (T0 - 60 * SECOND).to_string(),
                    "endTimeUnixNano": (T0 - 59 * SECOND).to_string(),
                    "attributes": [{"key": "customer.id", "value": {"stringValue": format!("secret-of-{service}")}}],
                }]}],
            })
        })
        .collect();
    let body = json!({"resourceSpans": resource_spans}).to_string().into_bytes();
    let headers = vec![("content-type".to_owned(), "application/json".to_owned())];
    let (status, answer) = send(app, token, "POST", "/v1/traces", Some((headers, body))).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer
}

#[tokio::test]
async fn proxy_assertions_are_verified_and_bare_or_forged_ones_refused() {
    let jwks = JwksServer::start(json!({"keys": [jwk("a", KEY_A)]})).await;
    let app = proxy_app(&jwks).await;
    let alice = assertion_claims("alice@example.test", &["payments-eng"]);

    let valid = As::Assertion(sign(KEY_A, "a", &alice));
    let (status, me) = send(&app, &valid, "GET", "/auth/me", None).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["id"], "alice@example.test");
    assert_eq!(me["teams"], json!(["payments"]));

    // Missing, a bare user header, unsigned (`alg: none`), signed by an unknown key, signed by
    // the right key for another audience, expired: all 401.
    let (status, body) = send(&app, &As::Nobody, "GET", "/api/v1/services", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let bare = Request::get("/api/v1/services").header("x-forwarded-user", "alice@example.test");
    assert_eq!(app.send(bare.body(Body::empty()).unwrap()).await.0, StatusCode::UNAUTHORIZED);
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"a"}"#),
        URL_SAFE_NO_PAD.encode(alice.to_string())
    );
    let (status, body) =
        send(&app, &As::Assertion(unsigned), "GET", "/api/v1/services", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        body["error"]["message"].as_str().unwrap().contains("`none` is not accepted"),
        "{body}"
    );
    let forged = sign(KEY_B, "a", &alice);
    let (status, body) = send(&app, &As::Assertion(forged), "GET", "/api/v1/services", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body["error"]["message"].as_str().unwrap().contains("signature"), "{body}");
    let mut other_audience = alice.clone();
    other_audience["aud"] = json!("grafana.example.test");
    let (status, _) = send(
        &app,
        &As::Assertion(sign(KEY_A, "a", &other_audience)),
        "GET",
        "/api/v1/services",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    app.clock.set(T0 + 300 * SECOND + 61 * SECOND);
    let (status, body) = send(&app, &valid, "GET", "/api/v1/services", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body["error"]["message"].as_str().unwrap().contains("expired"), "{body}");
    app.clock.set(T0);

    // The proxy rotates to key B: an assertion with the new `kid` makes spanblame fetch the
    // key set again.
    *jwks.keys.lock().unwrap() = json!({"keys": [jwk("b", KEY_B)]});
    let rotated = As::Assertion(sign(KEY_B, "b", &alice));
    assert_eq!(send(&app, &rotated, "GET", "/api/v1/services", None).await.0, StatusCode::OK);

    // Every refusal is in the audit log, which still verifies.
    let records = app.store.accounts().audit_records(0, 0, 1000).unwrap();
    let refused = records.iter().filter(|r| r.outcome.starts_with("refused 401")).count();
    assert!(refused >= 6, "{records:#?}");
    assert_eq!(app.store.accounts().verify_audit().unwrap(), Ok(records.len() as u64));
}

/// One request per route that the guard lets through when it should.
fn concrete(path: &str) -> String {
    path.replace("{trace_id}", "0af7651916cd43dd8448eb211c80319c")
        .replace("{sha}", "0123456789abcdef0123456789abcdef01234567")
        .replace("{id}", "1")
        .replace("{service}", "checkout")
        .replace("{action}", "acknowledge")
        .replace("{prefix}", "00000000")
        .replace("{kind}", "github")
        .replace("{integration}", "gh")
        .replace("{tag}", "service.name")
}

#[tokio::test]
async fn every_route_decides_for_every_kind_of_caller() {
    let jwks = JwksServer::start(json!({"keys": [jwk("a", KEY_A)]})).await;
    let app = proxy_app(&jwks).await;
    let person = |email: &str, groups: &[&str]| {
        As::Assertion(sign(KEY_A, "a", &assertion_claims(email, groups)))
    };
    let admin = person("root@example.test", &["sre-admins"]);
    let mut callers: Vec<(&str, As)> = vec![
        ("anon", As::Nobody),
        ("eng", person("eve@example.test", &["payments-eng"])),
        ("lead", person("lea@example.test", &["oncall-leads"])),
        ("admin", admin.clone()),
        ("audit", person("sam@example.test", &["security"])),
    ];
    for (name, scopes) in [
        ("ingest", &["ingest"][..]),
        ("read", &["read"]),
        ("deploy", &["deploy"]),
        ("hook", &["webhook"]),
        ("admtok", &["admin"]),
    ] {
        callers.push((name, As::Bearer(create_token(&app, &admin, scopes, None).await)));
    }

    // `A`: let through (the handler answers, with anything but 401/403); `1`: 401; `3`: 403.
    let expected: BTreeMap<&str, &str> = [
        ("GET /healthz", "A A A A A A A A A A"),
        ("GET /readyz", "A A A A A A A A A A"),
        ("GET /metrics", "A A A A A A A A A A"),
        ("GET /auth/login", "A A A A A A A A A A"),
        ("GET /auth/callback", "A A A A A A A A A A"),
        ("GET /auth/me", "1 A A A A A A A A A"),
        ("POST /auth/logout", "1 A A A A A A A A A"),
        ("GET /api/v1/services", "1 A A A A 3 A 3 3 A"),
        ("GET /api/v1/traces", "1 A A A A 3 A 3 3 A"),
        ("GET /api/v1/traces/{trace_id}", "1 A A A A 3 A 3 3 A"),
        ("GET /api/echo", "1 A A A A 3 A 3 3 A"),
        ("GET /metrics/spans", "1 A A A A 3 A 3 3 A"),
        ("GET /services/graph", "1 A A A A 3 A 3 3 A"),
        ("GET /api/traces/{trace_id}", "1 A A A A 3 A 3 3 A"),
        ("GET /api/v2/traces/{trace_id}", "1 A A A A 3 A 3 3 A"),
        ("GET /api/search", "1 A A A A 3 A 3 3 A"),
        ("GET /api/search/tags", "1 A A A A 3 A 3 3 A"),
        ("GET /api/v2/search/tags", "1 A A A A 3 A 3 3 A"),
        ("GET /api/search/tag/{tag}/values", "1 A A A A 3 A 3 3 A"),
        ("GET /api/v2/search/tag/{tag}/values", "1 A A A A 3 A 3 3 A"),
        ("GET /jaeger/api/services", "1 A A A A 3 A 3 3 A"),
        ("GET /jaeger/api/services/{service}/operations", "1 A A A A 3 A 3 3 A"),
        ("GET /jaeger/api/operations", "1 A A A A 3 A 3 3 A"),
        ("GET /jaeger/api/dependencies", "1 A A A A 3 A 3 3 A"),
        ("GET /jaeger/api/traces", "1 A A A A 3 A 3 3 A"),
        ("GET /jaeger/api/traces/{trace_id}", "1 A A A A 3 A 3 3 A"),
        ("GET /api/v1/deploys", "1 A A A A 3 A 3 3 A"),
        ("POST /api/v1/deploys", "1 3 3 3 3 3 3 A 3 3"),
        // The tagging gate is CI's question, asked with the same token as its deploys.
        ("POST /api/v1/gate", "1 3 3 3 3 3 3 A 3 3"),
        ("GET /api/v1/commits/{sha}", "1 A A A A 3 A 3 3 A"),
        ("GET /api/v1/commits/{sha}/impact", "1 A A A A 3 A 3 3 A"),
        ("GET /api/v1/findings", "1 A A A A 3 A 3 3 A"),
        ("GET /api/v1/findings/{id}", "1 A A A A 3 A 3 3 A"),
        ("POST /api/v1/findings/{id}/{action}", "1 A A A A 3 3 3 3 A"),
        // Proposing a revert: people by role and team, tokens only with `revert` (not `admin`).
        ("POST /api/v1/findings/{id}/revert", "1 A A A A 3 3 3 3 3"),
        ("POST /api/v1/incidents/{id}/revert", "1 A A A A 3 3 3 3 3"),
        ("GET /api/v1/incidents", "1 A A A A 3 A 3 3 A"),
        ("GET /api/v1/incidents/{id}", "1 A A A A 3 A 3 3 A"),
        ("POST /api/v1/incidents/{id}/{action}", "1 A A A A 3 3 3 3 A"),
        ("GET /api/v1/dora", "1 A A A A 3 A 3 3 A"),
        ("GET /api/v1/notifications", "1 A A A A 3 A 3 3 A"),
        ("POST /api/v1/notifications/{id}/retry", "1 A A A A 3 3 3 3 A"),
        ("GET /api/v1/tokens", "1 3 3 A 3 3 3 3 3 A"),
        ("POST /api/v1/tokens", "1 3 3 A 3 3 3 3 3 A"),
        ("POST /api/v1/tokens/{prefix}/rotate", "1 3 3 A 3 3 3 3 3 A"),
        ("POST /api/v1/tokens/{prefix}/revoke", "1 3 3 A 3 3 3 3 3 A"),
        ("GET /api/v1/audit", "1 3 3 A A 3 3 3 3 A"),
        ("GET /api/v1/audit/verify", "1 3 3 A A 3 3 3 3 A"),
        // Signed by the forge: anyone may deliver; a bearer token must have `webhook`.
        ("POST /hooks/{kind}/{integration}", "A A A A A 3 3 3 A 3"),
        // Harbormaster's HTTP Basic credential is checked by the handler (tests/it/gate.rs).
        ("POST /hooks/phabricator/{integration}/harbormaster", "A A A A A A A A A A"),
        ("POST /hooks/phabricator/{integration}/deployed", "A A A A A A A A A A"),
        ("POST /v1/traces", "1 3 3 3 3 A 3 3 3 3"),
        ("POST /api/v2/spans", "1 3 3 3 3 A 3 3 3 3"),
        // MCP: read access; each tool call then filters by the caller, as the API does.
        ("POST /mcp", "1 A A A A 3 A 3 3 A"),
        ("GET /mcp", "1 A A A A 3 A 3 3 A"),
        ("DELETE /mcp", "1 A A A A 3 A 3 3 A"),
        // Pages need what the API reads they show need; their refusals are HTML.
        ("GET /", "1 A A A A 3 A 3 3 A"),
        ("GET /traces", "1 A A A A 3 A 3 3 A"),
        ("GET /traces/{trace_id}", "1 A A A A 3 A 3 3 A"),
        ("GET /compare", "1 A A A A 3 A 3 3 A"),
        ("GET /services/{service}", "1 A A A A 3 A 3 3 A"),
        ("GET /incidents/{id}", "1 A A A A 3 A 3 3 A"),
        ("GET /findings", "1 A A A A 3 A 3 3 A"),
        ("GET /findings/{id}", "1 A A A A 3 A 3 3 A"),
        ("GET /deploys", "1 A A A A 3 A 3 3 A"),
        ("GET /deploys/{id}", "1 A A A A 3 A 3 3 A"),
        ("GET /commits/{sha}", "1 A A A A 3 A 3 3 A"),
        ("GET /dora", "1 A A A A 3 A 3 3 A"),
        ("GET /assets/app.css", "A A A A A A A A A A"),
        ("GET /assets/app.js", "A A A A A A A A A A"),
    ]
    .into_iter()
    .collect();

    let table = server::route_table();
    let grpc = server::OTLP_GRPC_ROUTE;
    assert_eq!(
        grpc.need,
        Need::Ingest,
        "OTLP/gRPC is checked like OTLP/HTTP (crates/spanblame/tests)"
    );
    let http: Vec<_> = table.iter().filter(|r| **r != grpc).collect();
    let names: Vec<String> = http.iter().map(|r| format!("{} {}", r.method, r.path)).collect();
    for name in &names {
        assert!(
            expected.contains_key(name.as_str()),
            "route `{name}` has no row in this table: add one"
        );
    }
    assert_eq!(
        names.len(),
        expected.len(),
        "rows for routes that no longer exist: {:?}",
        expected.keys()
    );

    let mut failures = Vec::new();
    for route in http {
        let name = format!("{} {}", route.method, route.path);
        let path = concrete(route.path);
        for ((who, caller), want) in callers.iter().zip(expected[name.as_str()].split(' ')) {
            let body = match route.path {
                "/hooks/{kind}/{integration}" => {
                    let (headers, body) = forge::signed_delivery(
                        ForgeKind::Github,
                        SECRET,
                        "ping",
                        "d-1",
                        br#"{"zen":"hi","hook_id":1}"#,
                    );
                    Some((headers, body))
                }
                "/v1/traces" => {
                    Some((vec![("content-type".into(), "application/json".into())], b"{}".to_vec()))
                }
                "/api/v2/spans" => {
                    Some((vec![("content-type".into(), "application/json".into())], b"[]".to_vec()))
                }
                _ => None,
            };
            let (status, answer) = send(&app, caller, route.method, &path, body).await;
            let got = match status {
                StatusCode::UNAUTHORIZED => "1",
                StatusCode::FORBIDDEN => "3",
                _ => "A",
            };
            if got != want {
                failures.push(format!("{name} as {who}: expected {want}, got {status} {answer}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn engineers_see_other_teams_spans_only_as_redacted_stubs() {
    let jwks = JwksServer::start(json!({"keys": [jwk("a", KEY_A)]})).await;
    let app = proxy_app(&jwks).await;
    let admin =
        As::Assertion(sign(KEY_A, "a", &assertion_claims("root@example.test", &["sre-admins"])));
    let ingest = As::Bearer(create_token(&app, &admin, &["ingest"], None).await);
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    export(
        &app,
        &ingest,
        trace,
        &[
            ("checkout", "00f067aa0ba902b7", "POST /cart", None),
            ("search", "00f067aa0ba902b8", "SELECT products", Some("00f067aa0ba902b7")),
        ],
    )
    .await;
    export(
        &app,
        &ingest,
        "5bf92f3577b34da6a3ce929d0e0e4736",
        &[("search", "10f067aa0ba902b9", "GET /search", None)],
    )
    .await;

    let eve =
        As::Assertion(sign(KEY_A, "a", &assertion_claims("eve@example.test", &["payments-eng"])));
    let (status, view) = send(&app, &eve, "GET", &format!("/api/v1/traces/{trace}"), None).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    let spans = view["spans"].as_array().unwrap();
    let own = spans.iter().find(|s| s["service"] == "checkout").unwrap();
    assert_eq!(own["attributes"]["customer.id"], "secret-of-checkout");
    let stub = spans.iter().find(|s| s["service"] == "search").unwrap();
    assert_eq!(stub["redacted"], true);
    assert_eq!(stub["parent_span_id"], "00f067aa0ba902b7");
    assert_eq!(stub["duration_ms"], 1000.0);
    for hidden in
        ["name", "operation", "attributes", "events", "links", "resource", "change", "version"]
    {
        assert!(stub.get(hidden).is_none(), "`{hidden}` leaked: {stub}");
    }
    assert!(!view.to_string().contains("secret-of-search") && !view.to_string().contains("SELECT"));

    // A trace only another team has spans in does not exist for her; search and the service
    // list leave the other team out, counts included.
    let (status, _) =
        send(&app, &eve, "GET", "/api/v1/traces/5bf92f3577b34da6a3ce929d0e0e4736", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, found) =
        send(&app, &eve, "GET", "/api/v1/traces?start=2025-12-31T00:00:00Z", None).await;
    let traces = found["traces"].as_array().unwrap();
    assert_eq!(traces.len(), 1, "{found}");
    assert_eq!(traces[0]["matched_spans"].as_array().unwrap().len(), 1);
    // Results are traces: the root and the whole trace's numbers, other teams' spans counted.
    assert_eq!(
        traces[0]["root"],
        json!({"service": "checkout", "found": true, "operation": "POST /cart"})
    );
    assert_eq!(
        (traces[0]["span_count"].as_u64(), traces[0]["service_count"].as_u64()),
        (Some(2), Some(2))
    );
    assert!(traces[0]["duration_ms"].as_f64().unwrap() >= 1000.0, "{found}");
    // Under another team's root, the root names its service only.
    export(
        &app,
        &ingest,
        "6bf92f3577b34da6a3ce929d0e0e4736",
        &[
            ("search", "00f067aa0ba902c7", "GET /search", None),
            ("checkout", "00f067aa0ba902c8", "POST /cart", Some("00f067aa0ba902c7")),
        ],
    )
    .await;
    let (_, found) =
        send(&app, &eve, "GET", "/api/v1/traces?start=2025-12-31T00:00:00Z", None).await;
    let under_search = found["traces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["trace_id"] == "6bf92f3577b34da6a3ce929d0e0e4736")
        .unwrap_or_else(|| panic!("{found}"));
    assert_eq!(under_search["root"], json!({"service": "search", "found": true, "redacted": true}));
    let (_, found) =
        send(&app, &eve, "GET", "/api/v1/traces?service=search&start=2025-12-31T00:00:00Z", None)
            .await;
    assert_eq!(found["traces"], json!([]));
    let (_, services) = send(&app, &eve, "GET", "/api/v1/services", None).await;
    let names: Vec<&str> = services["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["checkout"]);

    // The web UI shows her exactly what the API does: the stub without its name, no page for
    // the other team's trace or service, and only her team's service on the home page.
    let (status, page) = send(&app, &eve, "GET", &format!("/traces/{trace}"), None).await;
    let page = page.as_str().unwrap_or_default().to_owned();
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("POST /cart") && page.contains("secret-of-checkout"), "{page}");
    assert!(page.contains("redacted: another team") && page.contains("search"), "{page}");
    assert!(!page.contains("SELECT") && !page.contains("secret-of-search"), "{page}");
    for hidden in ["/traces/5bf92f3577b34da6a3ce929d0e0e4736", "/services/search"] {
        let (status, page) = send(&app, &eve, "GET", hidden, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{hidden}: {page}");
        assert!(page.as_str().unwrap_or_default().contains("<html"), "an HTML page: {page}");
    }
    let (_, home) = send(&app, &eve, "GET", "/", None).await;
    let home = home.as_str().unwrap_or_default();
    assert!(home.contains("/services/checkout") && !home.contains("/services/search"), "{home}");
    let (_, results) =
        send(&app, &eve, "GET", "/traces?service=search&last=7d&start=2025-12-31T00:00:00Z", None)
            .await;
    assert!(!results.as_str().unwrap_or_default().contains("5bf92f35"), "{results}");

    // Tempo's API, for Grafana, shows her the same: the other team's span as a stand-in in
    // OTLP (ids, times and service only), and search and tags without the other team.
    let (status, otlp) = send(&app, &eve, "GET", &format!("/api/traces/{trace}"), None).await;
    assert_eq!(status, StatusCode::OK, "{otlp}");
    let text = otlp.to_string();
    assert!(text.contains("secret-of-checkout") && text.contains("POST /cart"), "{otlp}");
    assert!(!text.contains("secret-of-search") && !text.contains("SELECT"), "{otlp}");
    assert!(text.contains("(another team's span)") && text.contains("\"search\""), "{otlp}");
    let (status, _) =
        send(&app, &eve, "GET", "/api/v2/traces/5bf92f3577b34da6a3ce929d0e0e4736", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let window = "start=1767139200&end=1767312000";
    let (_, found) = send(&app, &eve, "GET", &format!("/api/search?{window}"), None).await;
    let ids: Vec<&str> = found["traces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["traceID"].as_str().unwrap())
        .collect();
    assert!(!ids.contains(&"5bf92f3577b34da6a3ce929d0e0e4736") && ids.contains(&trace), "{found}");
    let q = "q=%7B%20resource.service.name%20%3D%20%22search%22%20%7D";
    let (_, found) = send(&app, &eve, "GET", &format!("/api/search?{q}&{window}"), None).await;
    assert_eq!(found["traces"], json!([]), "{found}");
    let (_, under) = send(&app, &eve, "GET", &format!("/api/search?{window}"), None).await;
    let under = under["traces"].as_array().unwrap();
    let under_search =
        under.iter().find(|t| t["traceID"] == "6bf92f3577b34da6a3ce929d0e0e4736").unwrap();
    assert_eq!(under_search["rootServiceName"], "search");
    assert!(under_search.get("rootTraceName").is_none(), "{under_search}");
    let (_, values) =
        send(&app, &eve, "GET", &format!("/api/search/tag/service.name/values?{window}"), None)
            .await;
    assert_eq!(values["tagValues"], json!(["checkout"]));
    let (_, tags) = send(&app, &eve, "GET", &format!("/api/search/tags?{window}"), None).await;
    assert!(!tags.to_string().contains("secret"), "{tags}");

    // And Jaeger's: the stand-in keeps the tree whole, and search leaves the other team out.
    let (_, jaeger) = send(&app, &eve, "GET", &format!("/jaeger/api/traces/{trace}"), None).await;
    let text = jaeger.to_string();
    assert!(text.contains("secret-of-checkout") && !text.contains("secret-of-search"), "{jaeger}");
    assert!(!text.contains("SELECT") && text.contains("(another team's span)"), "{jaeger}");
    let (_, services) = send(&app, &eve, "GET", "/jaeger/api/services", None).await;
    assert_eq!(services["data"], json!(["checkout"]));
    let micros = format!("start={}&end={}", (T0 - 3600 * SECOND) / 1000, T0 / 1000);
    for (service, expected) in [("search", 0), ("checkout", 2)] {
        let path = format!("/jaeger/api/traces?service={service}&{micros}");
        let (_, found) = send(&app, &eve, "GET", &path, None).await;
        assert_eq!(found["data"].as_array().unwrap().len(), expected, "{service}: {found}");
    }

    // An on-call lead sees everything in full.
    let lea =
        As::Assertion(sign(KEY_A, "a", &assertion_claims("lea@example.test", &["oncall-leads"])));
    let (_, view) = send(&app, &lea, "GET", &format!("/api/v1/traces/{trace}"), None).await;
    assert!(view["spans"].as_array().unwrap().iter().all(|s| s.get("redacted").is_none()));

    // A token restricted to `cart` may send only cart's spans: the rest is rejected in
    // `partial_success`.
    let cart_only = As::Bearer(create_token(&app, &admin, &["ingest"], Some(&["cart"])).await);
    let answer = export(
        &app,
        &cart_only,
        "6bf92f3577b34da6a3ce929d0e0e4736",
        &[
            ("cart", "20f067aa0ba902b1", "GET /cart", None),
            ("search", "20f067aa0ba902b2", "GET /search", None),
        ],
    )
    .await;
    assert_eq!(answer["partialSuccess"]["rejectedSpans"], 1, "{answer}");
    assert!(
        answer["partialSuccess"]["errorMessage"]
            .as_str()
            .unwrap()
            .contains("only for services cart")
    );
}

#[tokio::test]
async fn responses_carry_security_headers_and_sign_in_is_rate_limited() {
    let app = TestApp::new();
    let response = {
        use tower::ServiceExt;
        server::router(Arc::clone(&app.state))
            .oneshot(Request::get("/healthz").body(Body::empty()).unwrap())
            .await
            .unwrap()
    };
    let headers = response.headers();
    assert!(headers["content-security-policy"].to_str().unwrap().contains("script-src 'self'"));
    assert!(!headers["content-security-policy"].to_str().unwrap().contains("unsafe-inline"));
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["x-frame-options"], "DENY");
    assert!(headers.contains_key("x-request-id"));

    // Sign-in and token endpoints: a bucket per client address.
    let limited = TestApp::with_settings(
        ChangeSettings::default(),
        AccessSettings { rate_limit_per_minute: 3, ..AccessSettings::default() },
    );
    let from = |ip: [u8; 4]| {
        let mut request = Request::get("/api/v1/tokens").body(Body::empty()).unwrap();
        let addr = std::net::SocketAddr::from((ip, 40000));
        request.extensions_mut().insert(axum::extract::ConnectInfo(addr));
        request
    };
    for _ in 0..3 {
        assert_eq!(limited.send(from([10, 0, 0, 1])).await.0, StatusCode::OK);
    }
    let (status, body) = limited.send(from([10, 0, 0, 1])).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(limited.send(from([10, 0, 0, 2])).await.0, StatusCode::OK, "per address");
}

/// Issue 20, item 2: a deploy report's answer (the previous deploy and the mirrored commit
/// range) shows only what the caller may read; a CI token with the `deploy` scope alone learns
/// its deploy's id, and a restricted token reports only its own services.
#[tokio::test]
async fn deploy_reports_answer_only_what_the_caller_may_read() {
    let jwks = JwksServer::start(json!({"keys": [jwk("a", KEY_A)]})).await;
    let app = proxy_app(&jwks).await;
    let admin =
        As::Assertion(sign(KEY_A, "a", &assertion_claims("root@example.test", &["sre-admins"])));
    let report = |version: &str, service: &str| {
        let body = json!({"service": service, "environment": "prod", "version": version});
        Some((
            vec![("content-type".to_owned(), "application/json".to_owned())],
            body.to_string().into_bytes(),
        ))
    };
    let (status, _) =
        send(&app, &As::Nobody, "POST", "/api/v1/deploys", report("1", "checkout")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let ci = As::Bearer(create_token(&app, &admin, &["deploy"], Some(&["checkout"])).await);
    let (status, answer) =
        send(&app, &ci, "POST", "/api/v1/deploys", report("1", "checkout")).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let (status, answer) =
        send(&app, &ci, "POST", "/api/v1/deploys", report("2", "checkout")).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert!(answer["id"].is_number(), "{answer}");
    assert!(answer.get("previous").is_none() && answer.get("range").is_none(), "{answer}");
    let (status, _) = send(&app, &ci, "POST", "/api/v1/deploys", report("1", "search")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let reader = As::Bearer(create_token(&app, &admin, &["deploy", "read"], None).await);
    let (status, answer) =
        send(&app, &reader, "POST", "/api/v1/deploys", report("3", "checkout")).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert_eq!(answer["previous"]["version"], "2", "{answer}");
}

/// Issue 20, item 5: an admin token restricted to one service creates only tokens within its
/// reach, never manages a wider one, and may not read the audit log.
#[tokio::test]
async fn a_restricted_admin_token_cannot_escalate() {
    let jwks = JwksServer::start(json!({"keys": [jwk("a", KEY_A)]})).await;
    let app = proxy_app(&jwks).await;
    let root =
        As::Assertion(sign(KEY_A, "a", &assertion_claims("root@example.test", &["sre-admins"])));
    let global = create_token(&app, &root, &["admin"], None).await;
    let global_prefix = global.split('_').nth(1).unwrap().to_owned();
    let narrow = As::Bearer(create_token(&app, &root, &["admin"], Some(&["checkout"])).await);
    let json_body = |body: Value| {
        Some((
            vec![("content-type".to_owned(), "application/json".to_owned())],
            body.to_string().into_bytes(),
        ))
    };
    let create = |body: Value| send(&app, &narrow, "POST", "/api/v1/tokens", json_body(body));
    let (status, answer) = create(json!({"name": "escalate", "scopes": ["admin"]})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    let (status, answer) =
        create(json!({"name": "other", "scopes": ["read"], "services": ["search"]})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    let (status, answer) =
        create(json!({"name": "own", "scopes": ["read"], "services": ["checkout"]})).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");

    let (_, listed) = send(&app, &narrow, "GET", "/api/v1/tokens", None).await;
    let listed = listed["tokens"].as_array().unwrap();
    assert!(listed.iter().all(|t| t["services"] == json!(["checkout"])), "{listed:?}");
    let revoke = format!("/api/v1/tokens/{global_prefix}/revoke");
    let (status, answer) = send(&app, &narrow, "POST", &revoke, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    let (status, _) = send(&app, &narrow, "GET", "/api/v1/audit", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = send(&app, &As::Bearer(global), "GET", "/api/v1/audit", None).await;
    assert_eq!(status, StatusCode::OK);
}

/// Issue 20, item 4: behind an identity-aware proxy the browser's assertion rides on every
/// request, so a page on another site must not be able to change anything with it.
#[tokio::test]
async fn cross_site_requests_with_a_proxy_assertion_change_nothing() {
    let jwks = JwksServer::start(json!({"keys": [jwk("a", KEY_A)]})).await;
    let app = proxy_app(&jwks).await;
    let root =
        As::Assertion(sign(KEY_A, "a", &assertion_claims("root@example.test", &["sre-admins"])));
    let victim = create_token(&app, &root, &["read"], None).await;
    let prefix = victim.split('_').nth(1).unwrap().to_owned();
    let from = |site: &str, content_type: Option<&str>, body: &str| {
        let mut headers = vec![
            ("origin".to_owned(), "https://evil.example".to_owned()),
            ("sec-fetch-site".to_owned(), site.to_owned()),
        ];
        if let Some(content_type) = content_type {
            headers.push(("content-type".to_owned(), content_type.to_owned()));
        }
        Some((headers, body.as_bytes().to_vec()))
    };
    let revoke = format!("/api/v1/tokens/{prefix}/revoke");
    let (status, answer) = send(&app, &root, "POST", &revoke, from("cross-site", None, "")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    let token = r#"{"name": "evil", "scopes": ["admin"]}"#;
    let (status, answer) =
        send(&app, &root, "POST", "/api/v1/tokens", from("cross-site", Some("text/plain"), token))
            .await;
    assert!(matches!(status.as_u16(), 403 | 415), "{status} {answer}");
    // Without Sec-Fetch-Site, a foreign Origin alone is refused too.
    let origin_only =
        Some((vec![("origin".to_owned(), "https://evil.example".to_owned())], Vec::new()));
    let (status, _) = send(&app, &root, "POST", &revoke, origin_only).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, listed) = send(&app, &root, "GET", "/api/v1/tokens", None).await;
    let tokens = listed["tokens"].as_array().unwrap();
    assert!(tokens.iter().all(|t| t["name"] != "evil"), "{tokens:?}");
    assert!(tokens.iter().any(|t| t["prefix"] == prefix.as_str() && t["status"] == "active"));

    // The same request from spanblame's own pages works.
    let (status, answer) =
        send(&app, &root, "POST", &revoke, from("same-origin", Some("application/json"), "")).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
}

/// Issue 20, item 14: a commit is visible only to callers who may read a service of its
/// repository (or one that shipped it): to anyone else it is not found.
#[tokio::test]
async fn commits_are_visible_only_to_readers_of_their_repository() {
    let jwks = JwksServer::start(json!({"keys": [jwk("a", KEY_A)]})).await;
    let app = proxy_app(&jwks).await;
    let json = crate::support::fixture("github/push_with-new-branch.json");
    let (headers, body) = forge::signed_delivery(ForgeKind::Github, SECRET, "push", "d-1", &json);
    let (status, answer) =
        send(&app, &As::Nobody, "POST", "/hooks/github/gh", Some((headers, body))).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let path = "/api/v1/commits/6113728f27ae82c7b1a177c8d03f9e96e0adf246/impact";
    let root =
        As::Assertion(sign(KEY_A, "a", &assertion_claims("root@example.test", &["sre-admins"])));
    let (status, answer) = send(&app, &root, "GET", path, None).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let eve =
        As::Assertion(sign(KEY_A, "a", &assertion_claims("eve@example.test", &["payments-eng"])));
    let (status, answer) = send(&app, &eve, "GET", path, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    let reader = As::Bearer(create_token(&app, &root, &["read"], Some(&["search"])).await);
    let (status, _) = send(&app, &reader, "GET", path, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) =
        send(&app, &eve, "GET", "/commits/6113728f27ae82c7b1a177c8d03f9e96e0adf246", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// Issue 20, item 8: a flood of refused requests with huge queries from one address records
/// a few of them, cut short, and one summary of the rest, not one row each.
#[tokio::test]
async fn refusal_floods_do_not_flood_the_audit_log() {
    let jwks = JwksServer::start(json!({"keys": [jwk("a", KEY_A)]})).await;
    let app = proxy_app(&jwks).await;
    let attacker: std::net::SocketAddr = "203.0.113.9:4242".parse().unwrap();
    let query = "x".repeat(60 * 1024);
    let refused = |at_unix_nanos: u64| {
        app.clock.set(at_unix_nanos);
        let mut request = Request::builder()
            .uri(format!("/api/v1/traces?service={query}"))
            .body(Body::empty())
            .unwrap();
        request.extensions_mut().insert(axum::extract::ConnectInfo(attacker));
        app.send(request)
    };
    for _ in 0..300 {
        let (status, _) = refused(T0).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    // A minute later the next refusal brings the summary of the suppressed ones.
    let (status, _) = refused(T0 + 61 * SECOND).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let root =
        As::Assertion(sign(KEY_A, "a", &assertion_claims("root@example.test", &["sre-admins"])));
    let (status, log) = send(&app, &root, "GET", "/api/v1/audit?limit=1000", None).await;
    assert_eq!(status, StatusCode::OK, "{log}");
    let from_attacker: Vec<&Value> = log["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["client_addr"] == "203.0.113.9")
        .collect();
    assert_eq!(from_attacker.len(), 12, "10 recorded, 1 summary, 1 after: {from_attacker:#?}");
    assert!(from_attacker.iter().all(|r| r["resource"].as_str().unwrap().len() < 600));
    let summary = from_attacker.iter().find(|r| r["action"] == "refusals.suppressed").unwrap();
    assert!(summary["outcome"].as_str().unwrap().contains("refused 290 more"), "{summary}");
}
