//! A real Prometheus (Debian's `prometheus`) scrapes `/metrics/spans` from a real server and
//! answers a `traces_service_graph_request_total` query: the edge between two services whose
//! spans arrived over OTLP/HTTP in separate exports.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::support::TestServer;

fn export(server: &TestServer, service: &str, span_id: &str, parent: &str, kind: u8) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
    let body = json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
        "scopeSpans": [{"spans": [{
            "traceId": "8bf92f3577b34da6a3ce929d0e0e4736", "spanId": span_id, "parentSpanId": parent,
            "name": "GET /cart", "kind": kind,
            "startTimeUnixNano": (now - 200_000_000).to_string(),
            "endTimeUnixNano": (now - 100_000_000).to_string(),
        }]}],
    }]});
    let response = reqwest::blocking::Client::new()
        .post(format!("http://{}/v1/traces", server.otlp_http))
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn prometheus_scrapes_the_service_graph() {
    let prometheus = std::env::var("SPANBLAME_TEST_PROMETHEUS").expect(
        "SPANBLAME_TEST_PROMETHEUS is not set: run the tests with `cargo xtask test` (it installs Debian's prometheus), or set it to /usr/bin/prometheus",
    );
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with_env(
        &dir.path().join("data"),
        &[("SPANBLAME_SPAN_METRICS_ENABLED", "true")],
    );
    export(&server, "frontend", "00f067aa0ba902b7", "", 3);
    export(&server, "checkout", "00f067aa0ba902b8", "00f067aa0ba902b7", 2);

    let port = free_port();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: spanblame\n    metrics_path: /metrics/spans\n    static_configs:\n      - targets: ['{}']\n",
            server.http
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(prometheus)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let query =
        format!("http://127.0.0.1:{port}/api/v1/query?query=traces_service_graph_request_total");
    let deadline = Instant::now() + Duration::from_secs(60);
    let answer: Value = loop {
        let answer = reqwest::blocking::get(&query).ok().and_then(|r| r.json::<Value>().ok());
        if let Some(answer) =
            answer.filter(|a| !a["data"]["result"].as_array().is_none_or(Vec::is_empty))
        {
            break answer;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("Prometheus did not answer traces_service_graph_request_total within 60 s");
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let _ = child.kill();
    let _ = child.wait();
    let series = &answer["data"]["result"][0];
    assert_eq!(series["metric"]["client"], "frontend", "{answer}");
    assert_eq!(series["metric"]["server"], "checkout", "{answer}");
    assert_eq!(series["metric"]["job"], "spanblame", "{answer}");
    assert_eq!(series["value"][1], "1", "{answer}");
}
