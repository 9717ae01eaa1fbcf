//! The token lifecycle through the `spanblame token` CLI against a running server whose clock
//! the test moves (create, use, rotate with both secrets valid in the grace window, revoke,
//! expire, `list --stale`), then `spanblame audit verify` on the log that session left, and
//! after one byte flipped, one record deleted, one inserted.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};

const SECOND: u64 = 1_000_000_000;
const HOUR: u64 = 3600 * SECOND;
const DAY: u64 = 24 * HOUR;

struct ManualClock(AtomicU64);

impl server::Clock for ManualClock {
    fn now_unix_nanos(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// An in-process server with a manual clock, serving on loopback until dropped.
struct Running {
    url: String,
    clock: Arc<ManualClock>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    fn start(data_dir: &Path) -> Running {
        let store =
            Arc::new(store::SpanStore::open(data_dir, store::StoreOptions::default()).unwrap());
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
        let clock = Arc::new(ManualClock(AtomicU64::new(now.as_nanos() as u64)));
        let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let settings = server::Settings {
            http_addr: loopback,
            otlp_grpc_addr: loopback,
            otlp_http_addr: loopback,
            zipkin_addr: loopback,
            public_url: None,
            limits: otlp::DecodeLimits::default(),
            // No sign-in (the local operator manages tokens), but spans and deploys need one.
            access: server::AccessSettings {
                ingest_open: false,
                deploys_open: false,
                ..server::AccessSettings::default()
            },
            max_exports_in_flight: 8,
            max_ingest_memory_bytes: 512 << 20,
            max_span_future_nanos: 3600 * 1_000_000_000,
            background_lease: std::time::Duration::from_secs(15),
            connections: server::ConnectionLimits::default(),
            span_metrics: None,
            retention: server::Retention { spans_max_age_nanos: 7 * DAY, disk_budget_bytes: None },
            changes: server::ChangeSettings::default(),
            detection: server::DetectionSettings::default(),
            notifications: server::NotifySettings::default(),
        };
        let state =
            server::AppState::new(settings, store, Arc::clone(&clock) as Arc<dyn server::Clock>);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (bound_tx, bound_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            runtime
                .block_on(server::serve(state, async move { drop(stopped.await) }, move |addrs| {
                    bound_tx.send(addrs.http).unwrap()
                }))
                .unwrap();
        });
        let addr = bound_rx.recv().unwrap();
        Running { url: format!("http://{addr}"), clock, stop: Some(stop), thread: Some(thread) }
    }

    fn advance(&self, nanos: u64) {
        self.clock.0.fetch_add(nanos, Ordering::SeqCst);
    }

    fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
            self.thread.take().unwrap().join().unwrap();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs the CLI; returns (success, stdout, stderr).
fn cli(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_spanblame"))
        .args(args)
        .env_remove("SPANBLAME_TOKEN")
        .env_remove("SPANBLAME_SERVER")
        .output()
        .unwrap();
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).unwrap();
    (output.status.success(), text(output.stdout), text(output.stderr))
}

fn token_cli(server: &Running, args: &[&str]) -> String {
    let mut all = vec!["token"];
    all.extend_from_slice(&args[..1]);
    all.extend_from_slice(&["--server", &server.url]);
    all.extend_from_slice(&args[1..]);
    let (ok, stdout, stderr) = cli(&all);
    assert!(ok, "spanblame {all:?} failed: {stderr}");
    stdout.trim().to_owned()
}

/// Sends one span with `token`; returns the status and the error message, if any.
fn send_span(server: &Running, token: &str) -> (u16, String) {
    let body = json!({"resourceSpans": [{"resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": "checkout"}}]},
        "scopeSpans": [{"spans": [{"traceId": "5b8efff798038103d269b633813fc60c",
            "spanId": "eee19b7ec3c1b174", "name": "GET /", "kind": 2,
            "startTimeUnixNano": "1", "endTimeUnixNano": "2"}]}]}]});
    let response = reqwest::blocking::Client::new()
        .post(format!("{}/v1/traces", server.url))
        .bearer_auth(token)
        .json(&body)
        .send()
        .unwrap();
    let status = response.status().as_u16();
    let answer: Value = response.json().unwrap_or(Value::Null);
    (status, answer["message"].as_str().unwrap_or_default().to_owned())
}

fn prefix_of(secret: &str) -> &str {
    &secret[4..12]
}

#[test]
fn tokens_live_rotate_expire_and_leave_a_verifiable_audit_trail() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Running::start(dir.path());

    let first = token_cli(
        &server,
        &["create", "--name", "collector", "--scope", "ingest", "--expires-in", "30d"],
    );
    assert!(first.starts_with("sbt_"), "{first}");
    assert_eq!(send_span(&server, &first).0, 200);
    let (status, message) =
        send_span(&server, "sbt_00000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    assert_eq!(status, 401, "{message}");

    // Rotation: both secrets work during the grace window, only the new one after it.
    let second = token_cli(&server, &["rotate", prefix_of(&first), "--grace", "1h"]);
    assert_ne!(second, first);
    assert_eq!(send_span(&server, &first).0, 200);
    assert_eq!(send_span(&server, &second).0, 200);
    server.advance(HOUR + SECOND);
    let (status, message) = send_span(&server, &first);
    assert_eq!(status, 401);
    assert!(message.contains("rotated") && message.contains(prefix_of(&second)), "{message}");
    assert_eq!(send_span(&server, &second).0, 200);

    // Revocation.
    token_cli(&server, &["revoke", prefix_of(&second)]);
    let (status, message) = send_span(&server, &second);
    assert_eq!((status, message.contains("revoked")), (401, true), "{message}");

    // Expiry.
    let short = token_cli(
        &server,
        &["create", "--name", "short", "--scope", "ingest", "--expires-in", "1d"],
    );
    assert_eq!(send_span(&server, &short).0, 200);
    server.advance(DAY);
    let (status, message) = send_span(&server, &short);
    assert_eq!((status, message.contains("expired")), (401, true), "{message}");

    // Writing the data directory beside the running server is refused (it owns the
    // directory) with the way that works; a deploy token made through the server works, and
    // a token with the wrong scope is refused.
    let (ok, _, stderr) = cli(&[
        "token",
        "create",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--name",
        "ci",
        "--scope",
        "deploy",
    ]);
    assert!(!ok && stderr.contains("in use by another spanblame process"), "{stderr}");
    assert!(stderr.contains("token create --server"), "{stderr}");
    let deployer = token_cli(&server, &["create", "--name", "ci", "--scope", "deploy"]);
    assert_eq!(send_span(&server, &deployer).0, 403);
    let (ok, _, stderr) = cli(&[
        "deploy",
        "--server",
        &server.url,
        "--token",
        &deployer,
        "--service",
        "checkout",
        "--env",
        "prod",
        "--version",
        "1.0.0",
    ]);
    assert!(ok, "{stderr}");

    // `list --stale`: a token unused for 30 days.
    let idle = token_cli(&server, &["create", "--name", "idle", "--scope", "read"]);
    server.advance(31 * DAY);
    let stale: Value =
        serde_json::from_str(&token_cli(&server, &["list", "--stale", "--json"])).unwrap();
    let names: Vec<&str> =
        stale.as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"idle") && names.contains(&"ci"), "{stale}");
    let all: Value = serde_json::from_str(&token_cli(&server, &["list", "--json"])).unwrap();
    let status_of = |prefix: &str| {
        all.as_array().unwrap().iter().find(|t| t["prefix"] == prefix).unwrap()["status"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(status_of(prefix_of(&first)), "expired");
    assert_eq!(status_of(prefix_of(&second)), "revoked");
    assert_eq!(status_of(prefix_of(&idle)), "active");
    let table = token_cli(&server, &["list"]);
    assert!(
        table.contains("PREFIX") && table.contains("collector") && !table.contains(&idle),
        "secrets are never listed"
    );

    server.stop();

    // The session's audit trail verifies, and exports as JSON Lines.
    let data_dir = dir.path().to_str().unwrap();
    let (ok, stdout, stderr) = cli(&["audit", "verify", "--data-dir", data_dir]);
    assert!(ok && stdout.contains("intact"), "{stdout}{stderr}");
    let (ok, exported, _) =
        cli(&["audit", "export", "--data-dir", data_dir, "--since", "2000-01-01T00:00:00Z"]);
    assert!(ok);
    let records: Vec<Value> = exported.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let actions: Vec<&str> = records.iter().map(|r| r["action"].as_str().unwrap()).collect();
    for action in [
        "token.create",
        "token.rotate",
        "token.revoke",
        "tokens.list",
        "deploy.report",
        "/v1/traces",
    ] {
        assert!(actions.contains(&action), "{action} missing from {actions:?}");
    }
    assert!(
        records.iter().any(|r| r["outcome"].as_str().unwrap().contains("revoked")),
        "refusals are recorded"
    );
    let last = records.len() as i64;

    // Tampering, each on a copy: one byte of one record, one record deleted, one inserted.
    let tampered = |sql: &str| -> String {
        let copy = tempfile::tempdir().unwrap();
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            if name.starts_with("metadata.sqlite") || name == "audit.key" {
                std::fs::copy(&path, copy.path().join(name)).unwrap();
            }
        }
        let conn = rusqlite::Connection::open(copy.path().join("metadata.sqlite")).unwrap();
        conn.execute_batch(sql).unwrap();
        drop(conn);
        let (ok, stdout, stderr) =
            cli(&["audit", "verify", "--data-dir", copy.path().to_str().unwrap()]);
        assert!(!ok, "tampering with `{sql}` went unnoticed: {stdout}");
        stderr
    };
    let flipped =
        tampered("UPDATE audit_log SET principal = 'X' || substr(principal, 2) WHERE seq = 3");
    assert!(flipped.contains("audit record 3"), "{flipped}");
    let deleted = tampered("DELETE FROM audit_log WHERE seq = 4");
    assert!(deleted.contains("audit record 5") && deleted.contains("missing"), "{deleted}");
    let inserted = tampered(&format!(
        "INSERT INTO audit_log SELECT seq + 1, time_unix_nanos, 'mallory', action, resource, outcome, client_addr, request_id, link, link FROM audit_log WHERE seq = {last}"
    ));
    assert!(inserted.contains(&format!("audit record {}", last + 1)), "{inserted}");
}
