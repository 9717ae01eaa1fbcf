//! `spanblame gate` against the running binary, as a CI job runs it: exit 0 when the change
//! passes, 1 when it fails (with the fix printed), 2 when it cannot tell yet or the server
//! does not answer; `--json` prints the server's report.

use std::process::Command;

use mirror::testing::{commit_file, git};
use serde_json::{Value, json};

use crate::support::TestServer;

fn gate(server: Option<&TestServer>, args: &[&str]) -> (i32, String, String) {
    let url = server.map_or("http://127.0.0.1:9".to_owned(), |s| s.url(""));
    let output = Command::new(env!("CARGO_BIN_EXE_spanblame"))
        .arg("gate")
        .args(args)
        .args(["--server", &url])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    (
        output.status.code().unwrap(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[test]
fn the_gate_command_exits_with_its_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("shop");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    let reviewed = commit_file(
        &repo,
        "cart/total.py",
        "def total(c):\n    return sum(c)\n",
        "Sum the cart\n\nDifferential Revision: https://phab.example.com/D12",
    );
    let unreviewed = commit_file(&repo, "cart/total.py", "def total(c):\n    return 1\n", "One");
    let config = dir.path().join("spanblame.toml");
    std::fs::write(
        &config,
        format!(
            "[gate]\nenvironments = [\"staging\"]\n\n[[repositories]]\nname = \"shop\"\npath = \"{}\"\n\n[[services]]\nname = \"cart\"\nrepository = \"shop\"\nteam = \"payments\"\npath_prefix = \"cart\"\n\n[[services]]\nname = \"search\"\nrepository = \"shop\"\nteam = \"search\"\npath_prefix = \"search\"\n",
            repo.display()
        ),
    )
    .unwrap();
    let server = TestServer::start_with_env(
        &dir.path().join("data"),
        &[("SPANBLAME_CONFIG", config.to_str().unwrap())],
    );
    let now = jiff::Timestamp::now().as_nanosecond() as u64;
    let attribute = |k: &str, v: &str| json!({"key": k, "value": {"stringValue": v}});
    let body = json!({"resourceSpans": [{"resource": {"attributes": [
        attribute("service.name", "cart"), attribute("service.version", "1.4.0"),
        attribute("deployment.environment.name", "staging"),
        attribute("vcs.ref.head.revision", &reviewed),
    ]}, "scopeSpans": [{"spans": [{
        "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
        "name": "GET /cart", "kind": 2,
        "startTimeUnixNano": now.to_string(), "endTimeUnixNano": (now + 1_000_000).to_string(),
    }]}]}]});
    let response =
        reqwest::blocking::Client::new().post(server.url("/v1/traces")).json(&body).send().unwrap();
    assert_eq!(response.status(), 200);

    let (code, out, err) = gate(Some(&server), &["--service", "cart", "--commit", &reviewed]);
    assert_eq!(code, 0, "{out}{err}");
    let short = &reviewed[..12];
    assert!(
        out.starts_with(&format!(
            "tagging gate for cart at {short}: pass: 3 of 3 required checks pass\n"
        )),
        "{out}"
    );
    assert!(out.contains("  pass        review: D12 (the commit"), "{out}");

    let (code, out, err) = gate(Some(&server), &["--service", "cart", "--commit", &unreviewed]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("  fail        review: commit"), "{out}");
    assert!(out.contains("fix: land it through a review"), "{out}");

    let (code, out, err) =
        gate(Some(&server), &["--service", "search", "--commit", &reviewed, "--json"]);
    assert_eq!(code, 2, "{out}{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["outcome"], "cannot_tell");
    assert_eq!(
        report["checks"][2]["found"],
        "no spans of `search` from staging in the last 30 minutes"
    );

    let (code, out, err) = gate(Some(&server), &["--service", "cart", "--commit", "main"]);
    assert_eq!(code, 2, "a refused request is not a failed gate: {out}{err}");
    assert!(err.contains("the server refused the request (400 Bad Request): `commit` = `main` is not a git commit id"), "{err}");

    let (code, _, err) = gate(None, &["--service", "cart", "--commit", &reviewed]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot tell: asking `http://127.0.0.1:9/api/v1/gate`"), "{err}");
}
