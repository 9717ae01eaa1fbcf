//! Issue 20's attacks through the running binary's public doors (the memory, timeout and
//! error-shape attacks are in `hostile.rs`): deploy reports without a token when sign-in is
//! on, audit truncation, cross-site requests, token escalation, replayed webhooks, audit
//! floods, commits of other teams, and a restricted token through open ingest.

use std::process::Command;

use serde_json::{Value, json};

use crate::support::TestServer;

const SECRET: &str = "a-webhook-secret-for-tests";
const COMMIT: &str = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";

/// A server with `config` as its configuration file, its data in `dir/data`.
fn start(dir: &std::path::Path, config: &str) -> TestServer {
    let path = dir.join("spanblame.toml");
    std::fs::write(&path, config).unwrap();
    TestServer::start_with_env(
        &dir.join("data"),
        &[("SPANBLAME_CONFIG", path.to_str().unwrap()), ("SPANBLAME_GH_SECRET", SECRET)],
    )
}

/// Sign-in through an identity-aware proxy (its key set is never needed: nobody here sends
/// an assertion).
const PROXY: &str = "[auth]\nmode = \"proxy\"\n[auth.proxy]\nassertion_header = \"X-Assertion\"\njwks_url = \"http://127.0.0.1:9/jwks.json\"\nissuer = \"proxy\"\naudience = \"spanblame\"\n";

/// No sign-in, a GitHub integration, and `checkout` living in another repository.
const OPEN: &str = "[[integrations]]\nname = \"gh\"\nkind = \"github\"\nsecret_env = \"SPANBLAME_GH_SECRET\"\n[[repositories]]\nname = \"shop\"\nurl = \"https://git.example.com/acme/shop.git\"\n[[services]]\nname = \"checkout\"\nrepository = \"shop\"\n";

fn request(
    server: &TestServer,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let client = reqwest::blocking::Client::new();
    let mut request = match method {
        "POST" => client.post(server.url(path)),
        _ => client.get(server.url(path)),
    };
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().unwrap();
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

fn cli(args: &[&str]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_spanblame"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// Items 2, 3 and 8: with sign-in on, an anonymous deploy report is refused; a flood of
/// refused requests with huge queries leaves ten short records; and truncating the audit log
/// at its end, with the anchor moved to match, is named by `audit verify`.
#[test]
fn with_sign_in_the_doors_hold_and_the_audit_log_stays_whole() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), PROXY);
    let deploy = json!({"service": "checkout", "environment": "prod", "version": "1.0.0"});
    let (status, answer) = request(&server, "POST", "/api/v1/deploys", None, Some(deploy));
    assert_eq!(status, 401, "{answer}");

    let query = "x".repeat(60 * 1024);
    for _ in 0..100 {
        let (status, _) =
            request(&server, "GET", &format!("/api/v1/traces?service={query}"), None, None);
        assert_eq!(status, 401);
    }
    let data_dir = dir.path().join("data");
    let data = data_dir.to_str().unwrap();
    let (ok, exported) = cli(&["audit", "export", "--data-dir", data]);
    assert!(ok, "{exported}");
    // The deploy report and nine searches; the other 91 refusals of that minute are counted.
    let refusals: Vec<Value> = exported
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["outcome"].as_str().is_some_and(|o| o.starts_with("refused")))
        .collect();
    assert_eq!(refusals.len(), 10, "refusals past 10 a minute are counted, not recorded");
    assert!(refusals.iter().all(|r| r["resource"].as_str().unwrap().len() < 600));
    server.kill();

    let (ok, verified) = cli(&["audit", "verify", "--data-dir", data]);
    assert!(ok, "{verified}");
    let db = rusqlite::Connection::open(data_dir.join("metadata.sqlite")).unwrap();
    db.execute_batch(
        "DELETE FROM audit_log WHERE seq > (SELECT max(seq) - 3 FROM audit_log);
         UPDATE audit_anchor SET head_seq = (SELECT max(seq) FROM audit_log),
           head_link = (SELECT link FROM audit_log ORDER BY seq DESC LIMIT 1);",
    )
    .unwrap();
    drop(db);
    let (ok, verified) = cli(&["audit", "verify", "--data-dir", data]);
    assert!(!ok, "truncation went unnoticed: {verified}");
    assert!(verified.contains("changed without the key"), "{verified}");
}

/// Items 4, 5, 6, 14 and 15 on a server without sign-in.
#[test]
fn tokens_webhooks_and_commits_stay_within_their_reach() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), OPEN);

    // 5: a token restricted to `checkout` creates only tokens within its reach.
    let create = |token: Option<&str>, body: Value| {
        request(&server, "POST", "/api/v1/tokens", token, Some(body))
    };
    let (status, narrow) =
        create(None, json!({"name": "narrow", "scopes": ["admin"], "services": ["checkout"]}));
    assert_eq!(status, 201, "{narrow}");
    let narrow = narrow["secret"].as_str().unwrap().to_owned();
    let (status, answer) = create(Some(&narrow), json!({"name": "wide", "scopes": ["admin"]}));
    assert_eq!(status, 403, "{answer}");
    let (status, _) = request(&server, "GET", "/api/v1/audit", Some(&narrow), None);
    assert_eq!(status, 403);

    // 4: a page on another site cannot revoke it through the operator's browser (the same
    // check guards proxy assertions; the in-process test `access::cross_site_requests_with_a_
    // proxy_assertion_change_nothing` drives one).
    let prefix = narrow.split('_').nth(1).unwrap();
    let forged = reqwest::blocking::Client::new()
        .post(server.url(&format!("/api/v1/tokens/{prefix}/revoke")))
        .header("origin", "https://evil.example")
        .header("sec-fetch-site", "cross-site")
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .unwrap();
    assert!(matches!(forged.status().as_u16(), 403 | 415), "{}", forged.status());
    let (status, _) = request(&server, "GET", "/api/v1/tokens", Some(&narrow), None);
    assert_eq!(status, 200, "the token was revoked by a cross-site request");

    // 6: a signed push replayed under a new delivery id changes nothing.
    let json = std::fs::read(
        crate::support::manifest_dir()
            .join("../forge/test_data/forges/github/push_with-new-branch.json"),
    )
    .unwrap();
    let deliver = |id: &str| {
        let (headers, body) =
            forge::signed_delivery(model::ForgeKind::Github, SECRET, "push", id, &json);
        let mut request =
            reqwest::blocking::Client::new().post(server.url("/hooks/github/gh")).body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let response = request.send().unwrap();
        (response.status().as_u16(), response.json::<Value>().unwrap())
    };
    let (status, answer) = deliver("d-1");
    assert_eq!((status, answer["status"].as_str()), (200, Some("applied")), "{answer}");
    let (status, answer) = deliver("d-2");
    assert_eq!((status, answer["status"].as_str()), (200, Some("duplicate")), "{answer}");

    // 14: the commit is not `checkout`'s: a token that reads only `checkout` cannot see it.
    let path = format!("/api/v1/commits/{COMMIT}/impact");
    let (status, _) = request(&server, "GET", &path, None, None);
    assert_eq!(status, 200);
    let (status, reader) = create(
        None,
        json!({"name": "reader", "scopes": ["read", "ingest"], "services": ["checkout"]}),
    );
    assert_eq!(status, 201, "{reader}");
    let reader = reader["secret"].as_str().unwrap().to_owned();
    let (status, answer) = request(&server, "GET", &path, Some(&reader), None);
    assert_eq!(status, 404, "{answer}");

    // 15: through open ingest, the same token still sends only `checkout`'s spans.
    let span = |service: &str, span_id: &str| {
        json!({"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
               "scopeSpans": [{"spans": [{"traceId": "7B8EFFF798038103D269B633813FC60C", "spanId": span_id,
                 "name": "GET /", "startTimeUnixNano": "1763700000000000000",
                 "endTimeUnixNano": "1763700000250000000"}]}]})
    };
    let body = json!({"resourceSpans": [span("checkout", "EEE19B7EC3C1B174"), span("search", "EEE19B7EC3C1B175")]});
    let response = reqwest::blocking::Client::new()
        .post(format!("http://{}/v1/traces", server.otlp_http))
        .bearer_auth(&reader)
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().unwrap();
    assert_eq!(answer["partialSuccess"]["rejectedSpans"], 1, "{answer}");
}
