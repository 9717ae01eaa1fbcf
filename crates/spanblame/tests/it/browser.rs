//! The README's first command in a real browser: `spanblame serve --demo`, then headless
//! Chromium (Debian's `chromium`, driven by `playwright-core`; both installed by
//! `cargo xtask setup`) walks `tests/browser/demo.mjs`: home page → the incident → a
//! regression → its suspect and diff → the commit → an exemplar trace, a span's blame and the
//! critical path → the typical traces before and after compared → the trace search → a deploy
//! marker. Screenshots land in the test's temporary directory; with
//! `SPANBLAME_UPDATE_SCREENSHOTS=1` the home, incident, finding, trace and compare pages are also
//! copied to `docs/`.

use std::time::{Duration, Instant};

use crate::support::{self, TestServer};

#[test]
fn a_newcomer_follows_the_demo_regression_to_its_suspect_in_chromium() {
    let modules = std::env::var("SPANBLAME_TEST_BROWSER").expect(
        "SPANBLAME_TEST_BROWSER is not set: run the tests with `cargo xtask test`, which installs Chromium and playwright-core",
    );
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_demo(&dir.path().join("demo"));

    // The demo promises the regression, explained, within about a minute. Until its CI
    // reports are all in, a report that moves an inferred deploy's start resets that
    // deploy's findings (they come back at the next look), so wait for them first.
    let started = Instant::now();
    server.wait_for_log("live traffic continues", Duration::from_secs(90));
    loop {
        let (status, body) = server.get_json("/api/v1/findings?verdict=regressed&status=open");
        assert_eq!(status, 200, "{body}");
        let findings = body["findings"].as_array().unwrap();
        let explained = |f: &serde_json::Value| !f["suspects"].as_array().unwrap().is_empty();
        let reported = findings.iter().any(|f| {
            f["operation"] == "/cart/checkout"
                && server.get_json(&format!("/api/v1/findings/{}", f["id"])).1["deploy"]["source"]
                    != "inferred"
        });
        let explained = reported && findings.iter().all(explained);
        if explained {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "no explained regression on /cart/checkout 90 s after the demo started: {body}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    let shots = dir.path().join("screenshots");
    let script = support::manifest_dir().join("tests/browser/demo.mjs");
    let output = std::process::Command::new("node")
        .arg(&script)
        .arg(server.url(""))
        .arg(&shots)
        .env("SPANBLAME_TEST_BROWSER", &modules)
        .output()
        .expect("running node (Node.js 20 or newer)");
    assert!(
        output.status.success(),
        "the browser walk failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    for name in ["home.png", "incident.png", "finding.png", "trace.png", "compare.png"] {
        let shot = shots.join(name);
        assert!(std::fs::metadata(&shot).is_ok_and(|m| m.len() > 10_000), "{name} was not saved");
        if std::env::var_os("SPANBLAME_UPDATE_SCREENSHOTS").is_some() {
            let docs = support::manifest_dir().join("../../docs");
            std::fs::create_dir_all(&docs).unwrap();
            std::fs::copy(&shot, docs.join(name)).unwrap();
        }
    }
}
