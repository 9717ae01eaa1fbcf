//! Backup under load, with the real binary: `serve --demo` runs until it has found and
//! explained its regression (findings, deploys, a change graph, audit records), a client
//! streams traces into it while `spanblame backup` runs, the server is killed, the backup is
//! verified and restored into a new directory, and a server started there has every trace
//! acknowledged before the backup began, the findings, the deploys and commits, and an audit
//! chain that `spanblame audit verify` accepts.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::TestServer;

fn spanblame(args: &[&str]) -> String {
    crate::support::run_ok(Command::new(env!("CARGO_BIN_EXE_spanblame")).args(args))
}

/// One trace of one span, now.
fn export(seq: u64) -> (String, Value) {
    let trace = format!("{:032x}", 0xbac0_0000_0000_0000_u64 + seq);
    let now = jiff::Timestamp::now().as_nanosecond() as u64;
    let body = json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "loadgen"}}]},
        "scopeSpans": [{"spans": [{
            "traceId": trace, "spanId": "00f067aa0ba902b7", "name": "GET /backup", "kind": 2,
            "startTimeUnixNano": (now - 1_000_000).to_string(), "endTimeUnixNano": now.to_string(),
        }]}],
    }]});
    (trace, body)
}

fn ids(server: &TestServer, path: &str, key: &str) -> Vec<u64> {
    let (status, body) = server.get_json(path);
    assert_eq!(status, 200, "{path}: {body}");
    body[key].as_array().unwrap().iter().map(|v| v["id"].as_u64().unwrap()).collect()
}

#[test]
fn a_backup_under_load_restores_every_acknowledged_trace_the_findings_and_the_audit_chain() {
    let root = tempfile::tempdir().unwrap();
    let world = root.path().join("demo");
    let server = TestServer::start_demo(&world);
    server.wait_for_log("regression found", Duration::from_secs(300));
    let data_dir = world.join("data");
    let deadline = Instant::now() + Duration::from_secs(60);
    let (findings, deploys) = loop {
        let findings = ids(&server, "/api/v1/findings?verdict=regressed", "findings");
        let deploys = ids(&server, "/api/v1/deploys", "deploys");
        if !findings.is_empty() && !deploys.is_empty() {
            break (findings, deploys);
        }
        assert!(Instant::now() < deadline, "no findings or deploys: {findings:?} {deploys:?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let (_, listed) = server.get_json("/api/v1/deploys");
    let commit = listed["deploys"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|d| d["commit_sha"].as_str().map(str::to_owned))
        .expect("a deploy names its commit");

    let url = format!("http://{}/v1/traces", server.otlp_http);
    let acked: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (acked, stop) = (Arc::clone(&acked), Arc::clone(&stop));
        std::thread::spawn(move || {
            let client = reqwest::blocking::Client::new();
            for seq in 0.. {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let (trace, body) = export(seq);
                match client.post(&url).json(&body).send() {
                    Ok(r) if r.status().is_success() => {
                        acked.lock().unwrap().push((trace, Instant::now()))
                    }
                    _ => return,
                }
            }
        })
    };
    while acked.lock().unwrap().len() < 100 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let backup = root.path().join("backup");
    let began = Instant::now();
    let said = spanblame(&[
        "backup",
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--to",
        backup.to_str().unwrap(),
    ]);
    assert!(said.contains("backed"), "{said}");
    // Traffic goes on a little after the backup, then the server dies.
    std::thread::sleep(Duration::from_millis(200));
    server.kill();
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let acked = acked.lock().unwrap().clone();
    let before: Vec<&String> = acked.iter().filter(|(_, at)| *at < began).map(|(t, _)| t).collect();
    assert!(before.len() >= 100, "{} traces acknowledged before the backup", before.len());

    let said = spanblame(&["backup", "verify", backup.to_str().unwrap()]);
    assert!(said.contains("is intact"), "{said}");
    let restored = root.path().join("restored");
    spanblame(&[
        "restore",
        "--from",
        backup.to_str().unwrap(),
        "--data-dir",
        restored.to_str().unwrap(),
    ]);
    let said = spanblame(&["audit", "verify", "--data-dir", restored.to_str().unwrap()]);
    assert!(said.contains("audit log intact"), "{said}");

    let server = TestServer::start(&restored);
    for trace in &before {
        let (status, body) = server.get_json(&format!("/api/v1/traces/{trace}"));
        assert_eq!(status, 200, "trace {trace}, acknowledged before the backup, is lost: {body}");
        assert_eq!(body["spans"].as_array().unwrap().len(), 1, "{body}");
    }
    let restored_findings = ids(&server, "/api/v1/findings?verdict=regressed", "findings");
    assert!(findings.iter().all(|f| restored_findings.contains(f)), "{restored_findings:?}");
    let restored_deploys = ids(&server, "/api/v1/deploys", "deploys");
    assert!(deploys.iter().all(|d| restored_deploys.contains(d)), "{restored_deploys:?}");
    let (status, body) = server.get_json(&format!("/api/v1/commits/{commit}"));
    assert_eq!(status, 200, "the change graph's commit {commit}: {body}");
}
