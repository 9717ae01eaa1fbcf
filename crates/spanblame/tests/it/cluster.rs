//! The binary on ClickHouse (`storage.kind = "cluster"`): a clear error naming the URL when
//! ClickHouse is unreachable at start; while it is down, ingest answers 503 / UNAVAILABLE
//! with retry information and loses nothing it acknowledged, and it recovers without a
//! restart; `check-config` and `migrate` against a real server.

use std::process::Command;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message;

use crate::crash::{SPANS_PER_EXPORT, export, trace_id};
use crate::support::TestServer;

fn cluster_env(url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("SPANBLAME_STORAGE_KIND", "cluster".to_owned()),
        ("SPANBLAME_STORAGE_CLICKHOUSE_URL", url.to_owned()),
        ("SPANBLAME_STORAGE_CLICKHOUSE_DATABASE", "it_cluster".to_owned()),
        ("SPANBLAME_STORAGE_CLICKHOUSE_TIMEOUT", "5s".to_owned()),
    ]
}

/// Runs a CLI command with `env`; returns whether it succeeded and its log.
fn cli(args: &[&str], data_dir: &std::path::Path, env: &[(&str, String)]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_spanblame"))
        .args(args)
        .env("SPANBLAME_STORAGE_DATA_DIR", data_dir)
        .env("NO_COLOR", "1")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("running spanblame");
    let text = String::from_utf8_lossy(&output.stderr).into_owned()
        + &String::from_utf8_lossy(&output.stdout);
    (output.status.success(), text)
}

fn post(server: &TestServer, body: Vec<u8>) -> reqwest::blocking::Response {
    reqwest::blocking::Client::new()
        .post(format!("http://{}/v1/traces", server.otlp_http))
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .unwrap()
}

#[test]
fn unreachable_clickhouse_at_start_is_a_clear_error_naming_the_url() {
    let dir = tempfile::tempdir().unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let url = format!("http://{closed}");
    let (ok, log) = cli(&["serve", "--http-addr", "127.0.0.1:0"], dir.path(), &cluster_env(&url));
    assert!(!ok, "serve must refuse to start: {log}");
    assert!(log.contains(&format!("ClickHouse at {url} is unavailable")), "{log}");
    let (ok, log) = cli(&["check-config"], dir.path(), &cluster_env(&url));
    assert!(!ok && log.contains(&url), "{log}");
}

#[test]
fn a_clickhouse_outage_answers_unavailable_loses_nothing_and_recovers() {
    let mut clickhouse = testbed::ClickHouse::start();
    let dir = tempfile::tempdir().unwrap();
    let env = cluster_env(&clickhouse.url());

    let (ok, log) = cli(&["migrate"], dir.path(), &env);
    assert!(ok && log.contains("ClickHouse schema is current") && log.contains("from=0"), "{log}");
    let (ok, log) = cli(&["check-config"], dir.path(), &env);
    assert!(ok && log.contains(&clickhouse.url()) && log.contains("(server "), "{log}");
    assert!(log.contains("schema 2 of 2, current"), "{log}");

    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = TestServer::start_with_env(dir.path(), &env_refs);
    let mut acked = Vec::new();
    for seq in 0..5 {
        assert_eq!(post(&server, export(1, seq)).status(), 200);
        acked.push(seq);
    }

    clickhouse.kill();
    let refused = post(&server, export(1, 5));
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "5");
    // A protobuf request gets a protobuf `Status`, whose message says what to do.
    assert_eq!(refused.headers()["content-type"], "application/x-protobuf");
    let body = String::from_utf8_lossy(&refused.bytes().unwrap()).into_owned();
    assert!(body.contains("is unavailable; nothing was stored, retry after 5s"), "{body}");
    // The same over gRPC: UNAVAILABLE with a RetryInfo detail.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let status = runtime.block_on(async {
        let mut client =
            TraceServiceClient::connect(format!("http://{}", server.otlp_grpc)).await.unwrap();
        let request = ExportTraceServiceRequest::decode(export(1, 6).as_slice()).unwrap();
        client.export(request).await.unwrap_err()
    });
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert!(!status.details().is_empty(), "retry information in the status details");
    let (ready, _) = server.get_json("/readyz");
    assert_eq!(ready, 503, "not ready while ClickHouse is down");

    // ClickHouse comes back: the same server takes spans again and every acknowledged one is there.
    clickhouse.restart();
    assert_eq!(post(&server, export(1, 7)).status(), 200);
    acked.push(7);
    let (ready, _) = server.get_json("/readyz");
    assert_eq!(ready, 200);
    for seq in acked {
        let hex: String = trace_id(1, seq).iter().map(|b| format!("{b:02x}")).collect();
        let trace = server.wait_for_trace(&hex, SPANS_PER_EXPORT);
        assert_eq!(trace["spans"].as_array().unwrap().len(), SPANS_PER_EXPORT, "trace {hex}");
    }
    // The server owns its data directory (and the SQLite metadata in it): migrate once it stopped.
    drop(server);
    let (ok, log) = cli(&["migrate"], dir.path(), &env);
    assert!(ok && log.contains("from=1"), "migrate again changes nothing: {log}");
}
