//! `spanblame deploy` against a running server: refused without a valid token, recorded with
//! one; and deploys inferred from spans of a new version, merging with explicit reports in
//! either order.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::TestServer;

const TOKEN: &str = "ci-token-0123456789abcdef";

fn start(dir: &std::path::Path) -> TestServer {
    let config = dir.join("spanblame.toml");
    std::fs::write(
        &config,
        "[deploys]\nrequire_auth = true\n[[deploys.tokens]]\nname = \"ci\"\nsecret_env = \"SPANBLAME_CI_TOKEN\"\n",
    )
    .unwrap();
    TestServer::start_with_env(
        &dir.join("data"),
        &[("SPANBLAME_CONFIG", config.to_str().unwrap()), ("SPANBLAME_CI_TOKEN", TOKEN)],
    )
}

/// Runs `spanblame deploy` with `args`; returns success and what it wrote (stderr, then
/// stdout).
fn deploy(server: &TestServer, token: Option<&str>, args: &[&str]) -> (bool, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_spanblame"));
    command.arg("deploy").args(args).args(["--server", &server.url("")]);
    command.env_remove("SPANBLAME_TOKEN").env("NO_COLOR", "1");
    if let Some(token) = token {
        command.args(["--token", token]);
    }
    let output = command.output().unwrap();
    let (stderr, stdout) =
        (String::from_utf8_lossy(&output.stderr), String::from_utf8_lossy(&output.stdout));
    (output.status.success(), format!("{stderr}{stdout}"))
}

fn send_span(server: &TestServer, trace: &str, version: &str) {
    let now = jiff::Timestamp::now().as_nanosecond();
    let body = json!({"resourceSpans": [{
        "resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": "cart"}},
            {"key": "service.version", "value": {"stringValue": version}},
            {"key": "deployment.environment.name", "value": {"stringValue": "production"}},
        ]},
        "scopeSpans": [{"spans": [{
            "traceId": trace, "spanId": "0102030405060708", "name": "GET /cart",
            "startTimeUnixNano": now.to_string(), "endTimeUnixNano": (now + 1_000_000).to_string(),
        }]}]
    }]});
    let response =
        reqwest::blocking::Client::new().post(server.url("/v1/traces")).json(&body).send().unwrap();
    assert_eq!(response.status(), 200);
}

/// Polls the deploy list until `check` holds (the catalog is flushed once a second).
fn wait_for_deploys(
    server: &TestServer,
    check: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = server.get_json("/api/v1/deploys?service=cart&environment=production");
        assert_eq!(status, 200, "{body}");
        let deploys = body["deploys"].as_array().unwrap().clone();
        if check(&deploys) {
            return deploys;
        }
        assert!(Instant::now() < deadline, "deploys never matched: {deploys:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn deploy_cli_needs_a_valid_token_and_merges_with_inferred_deploys() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let v1 = ["--service", "cart", "--env", "production", "--version", "1.0.0"];

    // Spans of 1.0.0 arrive first: an inferred deploy.
    send_span(&server, "11111111111111111111111111111111", "1.0.0");
    let deploys = wait_for_deploys(&server, |d| d.len() == 1);
    assert_eq!(deploys[0]["source"], "inferred");
    assert_eq!(deploys[0]["version"], "1.0.0");

    let (ok, stderr) = deploy(&server, None, &v1);
    assert!(!ok);
    assert!(stderr.contains("needs a token with the `deploy` scope"), "{stderr}");
    let (ok, stderr) = deploy(&server, Some("wrong-token-wrong-token"), &v1);
    assert!(!ok);
    assert!(stderr.contains("neither a spanblame API token"), "{stderr}");
    assert_eq!(
        wait_for_deploys(&server, |_| true)[0]["source"],
        "inferred",
        "refusals store nothing"
    );

    // CI reports 1.0.0 with its commit: it merges with the inferred deploy.
    let sha = "0123456789abcdef0123456789abcdef01234567";
    let mut args = v1.to_vec();
    args.extend(["--commit", sha, "--deployer", "ci-job-42"]);
    let (ok, stderr) = deploy(&server, Some(TOKEN), &args);
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains(" recorded: cart 1.0.0 to production, commit 0123456789ab"),
        "the recorded deploy is printed: {stderr}"
    );
    let deploys = wait_for_deploys(&server, |d| d.len() == 1);
    assert_eq!(deploys[0]["source"], "explicit+inferred");
    assert_eq!(deploys[0]["commit_sha"], sha);
    assert_eq!(deploys[0]["deployer"], "ci-job-42");

    // 2.0.0 is reported before its spans arrive; then the spans merge into it.
    let (ok, stderr) = deploy(
        &server,
        Some(TOKEN),
        &["--service", "cart", "--env", "production", "--version", "2.0.0"],
    );
    assert!(ok, "{stderr}");
    send_span(&server, "22222222222222222222222222222222", "2.0.0");
    let deploys =
        wait_for_deploys(&server, |d| d.len() == 2 && d[0]["source"] == "explicit+inferred");
    assert_eq!(deploys[0]["version"], "2.0.0");
    assert_eq!(deploys[0]["previous"]["version"], "1.0.0");
    assert_eq!(deploys[0]["previous"]["commit_sha"], sha);

    // Bad input is named.
    let (ok, stderr) = deploy(
        &server,
        Some(TOKEN),
        &["--service", "cart", "--env", "production", "--version", "3", "--commit", "HEAD~1"],
    );
    assert!(!ok);
    assert!(stderr.contains("`commit` = `HEAD~1` is not a git commit id"), "{stderr}");
}
