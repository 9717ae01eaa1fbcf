//! A fleet: two `spanblame serve` processes on one ClickHouse and one PostgreSQL. Spans sent
//! to one replica are found through the other; a bad deploy's finding is made, and announced,
//! once; killing the replica that runs the background jobs hands them to the other within
//! the lease's time; and PostgreSQL unreachable at start, or lost while running, is named and
//! answered with "unavailable" until it returns, without a restart.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::findings::{MINUTE, build_repo, explained_regression, post, post_deploy, send_traffic};
use crate::support::TestServer;

/// The lease the replicas hold the background jobs with (renewed every second).
const LEASE_SECS: u64 = 3;

/// An HTTP endpoint that records every request body (the alert webhook's receiver).
fn receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let bodies: Arc<Mutex<Vec<Value>>> = Arc::default();
    let received = Arc::clone(&bodies);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((name, value)) = line.split_once(':')
                    && name.eq_ignore_ascii_case("content-length")
                {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_ok()
                && let Ok(json) = serde_json::from_slice(&body)
            {
                received.lock().unwrap().push(json);
            }
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    (url, bodies)
}

/// The value of a gauge on a replica's `/metrics`.
fn gauge(server: &TestServer, name: &str) -> Option<u64> {
    let text = reqwest::blocking::get(server.url("/metrics")).ok()?.text().ok()?;
    text.lines().find_map(|line| line.strip_prefix(&format!("{name} "))?.trim().parse().ok())
}

fn holds_lease(server: &TestServer) -> bool {
    gauge(server, "spanblame_background_lease_held") == Some(1)
}

/// Polls `ready` every 200 ms until it holds, or fails with `what` after `limit`.
fn wait_for(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ready() {
        assert!(Instant::now() < deadline, "{what} (waited {limit:?})");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The same audit key in both data directories: the replicas share one audit chain.
fn shared_audit_key(dirs: &[&Path]) {
    let key: Vec<u8> = (0..32u8).map(|i| i.wrapping_mul(37).wrapping_add(11)).collect();
    for dir in dirs {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("audit.key"), &key).unwrap();
    }
}

fn fleet_env<'a>(config: &'a str, pg_url: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![("SPANBLAME_CONFIG", config), ("REPLICAS_PG_URL", pg_url)]
}

#[test]
fn two_replicas_share_the_engines_and_hand_over_the_background_jobs() {
    let clickhouse = testbed::ClickHouse::start();
    let pg = testbed::Postgres::start();
    let pg_url = pg.create_database("fleet");
    let dir = tempfile::tempdir().unwrap();
    let upstream = dir.path().join("shop");
    std::fs::create_dir_all(&upstream).unwrap();
    let repo = build_repo(&upstream);
    let (hook_url, alerts) = receiver();
    let config = dir.path().join("spanblame.toml");
    std::fs::write(
        &config,
        format!(
            "[storage]\nkind = \"cluster\"\nclickhouse_url = \"{}\"\nclickhouse_database = \"fleet\"\npostgres_url_env = \"REPLICAS_PG_URL\"\nbackground_lease = \"{LEASE_SECS}s\"\n\n[detection]\ninterval = \"1s\"\n\n[[repositories]]\nname = \"shop\"\nurl = \"{}\"\n\n[[services]]\nname = \"checkout\"\nrepository = \"shop\"\nteam = \"payments\"\n\n[[alerts.webhook]]\nname = \"ops\"\nurl = \"{hook_url}\"\n",
            clickhouse.url(),
            upstream.display()
        ),
    )
    .unwrap();
    let (a_dir, b_dir) = (dir.path().join("a"), dir.path().join("b"));
    shared_audit_key(&[&a_dir, &b_dir]);
    let env = fleet_env(config.to_str().unwrap(), &pg_url);
    let a = TestServer::start_with_env(&a_dir, &env);
    let b = TestServer::start_with_env(&b_dir, &env);
    wait_for("replica A, started first, runs the background jobs", Duration::from_secs(10), || {
        holds_lease(&a)
    });
    assert!(!holds_lease(&b), "one holder at a time");

    // 70 minutes of 1.0.0 then 25 of a slower 1.1.0, all sent to A; the deploys reported to B.
    let now = jiff::Timestamp::now().as_nanosecond() as u64;
    let deploy_b = now - 25 * MINUTE;
    send_traffic(&a, "1.0.0", &repo.base, deploy_b - 70 * MINUTE, deploy_b, 1.0, 1);
    send_traffic(&a, "1.1.0", &repo.search, deploy_b + 500_000_000, now, 1.4, 2);
    post_deploy(&b, "1.0.0", &repo.base, deploy_b - 75 * MINUTE);
    post_deploy(&b, "1.1.0", &repo.search, deploy_b);

    // A (the holder) detects and explains; B serves the finding and A's spans.
    let regressed = "/api/v1/findings?service=checkout&environment=production&verdict=regressed";
    let finding = explained_regression(&b, Duration::from_secs(120));
    assert_eq!(finding["suspects"][0]["commit"]["sha"], repo.slow.as_str(), "{finding}");
    let trace_id = finding["exemplars"]["after"]["slowest"]["trace_id"].as_str().unwrap();
    for replica in [&a, &b] {
        let (status, trace) = replica.get_json(&format!("/api/v1/traces/{trace_id}"));
        assert_eq!(status, 200, "{trace}");
        assert!(!trace["spans"].as_array().unwrap().is_empty());
    }
    let same = b.get_json(regressed).1["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["operation"] == "/checkout" && f["metric"] == "latency_p50")
        .count();
    assert_eq!(same, 1, "the finding is made once");
    let id = finding["id"].as_u64().unwrap();
    let about = |status: &str| {
        let tag = format!("Finding {id}>");
        let alerts = alerts.lock().unwrap();
        alerts
            .iter()
            .filter(|a| {
                a["status"] == status && a["text"].as_str().is_some_and(|t| t.contains(&tag))
            })
            .count()
    };
    wait_for("the firing alert reaches the webhook", Duration::from_secs(60), || {
        about("firing") >= 1
    });
    // ...and A has recorded it as sent: killed between sending and recording, A would leave it
    // pending, and the resolution below would supersede it (delivery is at least once).
    wait_for("A records the firing alert as delivered", Duration::from_secs(30), || {
        let rows = b.get_json(&format!("/api/v1/notifications?finding={id}")).1;
        rows["notifications"].as_array().is_some_and(|rows| {
            rows.iter().any(|n| n["sink"] == "webhook:ops" && n["state"] == "delivered")
        })
    });

    // A dies; B takes the lease over within the lease's time (plus one renewal interval).
    a.kill();
    wait_for(
        "B runs the background jobs after A's death",
        Duration::from_secs(LEASE_SECS + LEASE_SECS / 3 + 5),
        || holds_lease(&b),
    );
    // People resolve the finding through B; B, now the holder, sends the resolution once.
    let (status, resolved) =
        post(&b, &format!("/api/v1/findings/{id}/resolve"), &serde_json::json!({"by": "oncall"}));
    assert_eq!((status, &resolved["status"]), (200, &Value::from("resolved")), "{resolved}");
    wait_for("the resolution reaches the webhook", Duration::from_secs(60), || {
        about("resolved") >= 1
    });
    // A few more rounds of B's jobs: nothing is announced twice.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!((about("firing"), about("resolved")), (1, 1), "{:#?}", alerts.lock().unwrap());
    let received = alerts.lock().unwrap().len();
    let delivered = b.get_json(&format!("/api/v1/notifications?finding={id}")).1;
    let webhook_rows = delivered["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["sink"] == "webhook:ops" && n["state"] == "delivered")
        .count();
    assert!(webhook_rows >= 2 && received >= webhook_rows, "{delivered}");
}

/// Runs a CLI command; returns whether it succeeded and its log.
fn cli(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_spanblame"))
        .args(args)
        .env("NO_COLOR", "1")
        .envs(env.iter().copied())
        .output()
        .expect("running spanblame");
    let text = String::from_utf8_lossy(&output.stderr).into_owned()
        + &String::from_utf8_lossy(&output.stdout);
    (output.status.success(), text)
}

#[test]
fn postgresql_unreachable_is_named_and_lost_postgresql_answers_unavailable_until_it_returns() {
    let clickhouse = testbed::ClickHouse::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_dir = data.to_str().unwrap();
    let cluster = |pg_url: &str| -> Vec<(&'static str, String)> {
        vec![
            ("SPANBLAME_STORAGE_KIND", "cluster".into()),
            ("SPANBLAME_STORAGE_CLICKHOUSE_URL", clickhouse.url()),
            ("SPANBLAME_STORAGE_CLICKHOUSE_DATABASE", "pg_faults".into()),
            ("SPANBLAME_STORAGE_POSTGRES_URL_ENV", "FAULTS_PG_URL".into()),
            ("SPANBLAME_STORAGE_POSTGRES_TIMEOUT", "3s".into()),
            ("SPANBLAME_STORAGE_DATA_DIR", data_dir.into()),
            ("SPANBLAME_INGEST_REQUIRE_AUTH", "true".into()),
            ("FAULTS_PG_URL", pg_url.into()),
        ]
    };
    // Nothing listens: serve and check-config name the URL, without its password.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let unreachable = format!("postgres://spanblame:hunter2@{closed}/spanblame");
    let env = cluster(&unreachable);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let named = format!("PostgreSQL at postgres://spanblame:***@{closed}/spanblame is unavailable");
    for args in [&["serve", "--http-addr", "127.0.0.1:0"][..], &["check-config"]] {
        let (ok, log) = cli(args, &env);
        assert!(!ok, "{args:?} must fail: {log}");
        assert!(log.contains(&named), "{args:?}: {log}");
        assert!(!log.contains("hunter2"), "the password stays out of the log: {log}");
    }

    // A live server: migrate, a token, then serve.
    let mut pg = testbed::Postgres::start();
    let pg_url = pg.create_database("faults");
    let env = cluster(&pg_url);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (ok, log) = cli(&["migrate"], &env);
    assert!(ok && log.contains("metadata schema is current"), "{log}");
    let (ok, log) = cli(&["check-config"], &env);
    assert!(ok && log.contains("  metadata       PostgreSQL"), "{log}");
    assert!(log.contains(", current"), "{log}");
    let (ok, secret) = cli(
        &["token", "create", "--data-dir", data_dir, "--name", "collector", "--scope", "ingest"],
        &env,
    );
    assert!(ok, "{secret}");
    let secret = secret.lines().last().unwrap().trim().to_owned();
    let server = TestServer::start_with_env(&data, &env);
    let send = |trace: u32| {
        reqwest::blocking::Client::new()
            .post(format!("http://{}/v1/traces", server.otlp_http))
            .header("content-type", "application/x-protobuf")
            .bearer_auth(&secret)
            .body(crate::crash::export(9, trace))
            .send()
            .unwrap()
    };
    assert_eq!(send(1).status(), 200);

    // PostgreSQL dies: the token cannot be checked, so ingest answers 503 with Retry-After
    // (never 401: the token is fine), and stores nothing.
    pg.kill();
    let refused = send(2);
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "5");
    // PostgreSQL returns: the same process takes spans again (new connections), and every
    // acknowledged trace is there.
    pg.restart();
    wait_for("ingest works again without a restart", Duration::from_secs(30), || {
        send(3).status() == 200
    });
    for trace in [1, 3] {
        let hex: String =
            crate::crash::trace_id(9, trace).iter().map(|b| format!("{b:02x}")).collect();
        let body = server.wait_for_trace(&hex, crate::crash::SPANS_PER_EXPORT);
        assert_eq!(body["spans"].as_array().unwrap().len(), crate::crash::SPANS_PER_EXPORT);
    }
}
