//! Crash safety: every span whose export was acknowledged survives a SIGKILL mid-stream, and
//! the store reopens cleanly after a torn write at the end of its log.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::TestServer;

pub(crate) const SPANS_PER_EXPORT: usize = 50;

pub(crate) fn trace_id(sender: u8, seq: u32) -> [u8; 16] {
    let mut id = [7u8; 16];
    id[0] = sender;
    id[1..5].copy_from_slice(&seq.to_be_bytes());
    id
}

pub(crate) fn export(sender: u8, seq: u32) -> Vec<u8> {
    let spans = (0..SPANS_PER_EXPORT)
        .map(|i| Span {
            trace_id: trace_id(sender, seq).to_vec(),
            span_id: (i as u64 + 1).to_be_bytes().to_vec(),
            name: format!("op-{i}"),
            start_time_unix_nano: 1_763_700_000_000_000_000 + u64::from(seq),
            end_time_unix_nano: 1_763_700_000_001_000_000 + u64::from(seq),
            ..Span::default()
        })
        .collect();
    let attribute = |k: &str, v: &str| KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) }),
        ..KeyValue::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![attribute("service.name", "crashy")],
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans { spans, ..ScopeSpans::default() }],
            ..ResourceSpans::default()
        }],
    }
    .encode_to_vec()
}

fn check_all_present(server: &TestServer, acked: &[(u8, u32)]) {
    for &(sender, seq) in acked {
        let hex: String = trace_id(sender, seq).iter().map(|b| format!("{b:02x}")).collect();
        let (status, body) = server.get_json(&format!("/api/v1/traces/{hex}"));
        assert_eq!(status, 200, "acknowledged trace {hex} lost: {body}");
        assert_eq!(body["spans"].as_array().unwrap().len(), SPANS_PER_EXPORT, "trace {hex}");
    }
}

#[test]
fn acknowledged_spans_survive_sigkill_and_a_torn_log_tail() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    let url = format!("http://{}/v1/traces", server.otlp_http);
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));

    let senders: Vec<_> = (1..=4u8)
        .map(|sender| {
            let (url, acked, stop) = (url.clone(), Arc::clone(&acked), Arc::clone(&stop));
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::new();
                for seq in 0u32.. {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let response = client
                        .post(&url)
                        .header("content-type", "application/x-protobuf")
                        .body(export(sender, seq))
                        .send();
                    match response {
                        Ok(r) if r.status().is_success() => {
                            acked.lock().unwrap().push((sender, seq))
                        }
                        // The server died under us: this export was never acknowledged.
                        _ => return,
                    }
                }
            })
        })
        .collect();

    // Kill once enough exports are acknowledged, while the senders are still sending.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while acked.lock().unwrap().len() < 200 {
        assert!(std::time::Instant::now() < deadline, "senders made no progress");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    server.kill();
    stop.store(true, Ordering::Relaxed);
    for sender in senders {
        sender.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 200);

    let server = TestServer::start(dir.path());
    check_all_present(&server, &acked);
    server.kill();

    // Simulate a torn write: half a record header and some payload at the end of the newest segment.
    let wal_dir = dir.path().join("wal");
    let newest = std::fs::read_dir(&wal_dir).unwrap().map(|e| e.unwrap().path()).max().unwrap();
    let mut file = std::fs::OpenOptions::new().append(true).open(&newest).unwrap();
    file.write_all(&[0xff, 0x10, 0x00, 0x00, 0xaa, 0xbb, 0xcc]).unwrap();
    drop(file);

    let server = TestServer::start(dir.path());
    check_all_present(&server, &acked);
    let (status, _) = server.get_json("/readyz");
    assert_eq!(status, 200);
    let data_dir = server.data_dir.clone();
    drop(server);
    assert!(data_dir.join("metadata.sqlite").exists());
}

/// Runs the CLI; a command still running after `limit` is killed and reported as such (a
/// second server that was not refused would otherwise run forever).
fn cli_within(args: &[&str], limit: Duration) -> (Option<bool>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_spanblame"))
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            let output = child.wait_with_output().unwrap();
            return (None, String::from_utf8_lossy(&output.stderr).into_owned());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&output.stderr).into_owned()
        + &String::from_utf8_lossy(&output.stdout);
    (Some(output.status.success()), text)
}

fn send(server: &TestServer, sender: u8, seqs: std::ops::Range<u32>) -> Vec<(u8, u32)> {
    let client = reqwest::blocking::Client::new();
    seqs.map(|seq| {
        let response = client
            .post(format!("http://{}/v1/traces", server.otlp_http))
            .header("content-type", "application/x-protobuf")
            .body(export(sender, seq))
            .send()
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        (sender, seq)
    })
    .collect()
}

#[test]
fn a_second_process_cannot_own_the_data_directory_and_nothing_acknowledged_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let server = TestServer::start(dir.path());
    let mut acked = send(&server, 9, 0..20);

    // A second server on the same directory is refused at once, naming the directory and
    // the holder; so is a CLI command that writes. One that only reads works beside it.
    let holder = format!("(pid {})", server.pid());
    let (exited, log) = cli_within(
        &["serve", "--data-dir", data_dir, "--http-addr", "127.0.0.1:0"],
        Duration::from_secs(20),
    );
    assert_eq!(exited, Some(false), "a second server must exit non-zero: {log}");
    assert!(
        log.contains("is in use by another spanblame process") && log.contains(&holder),
        "{log}"
    );
    assert!(log.contains(data_dir), "{log}");
    let (exited, log) = cli_within(
        &["token", "create", "--data-dir", data_dir, "--name", "x", "--scope", "read"],
        Duration::from_secs(20),
    );
    assert_eq!(exited, Some(false), "{log}");
    assert!(log.contains(&holder) && log.contains("--server"), "{log}");
    let (exited, log) =
        cli_within(&["audit", "verify", "--data-dir", data_dir], Duration::from_secs(20));
    assert_eq!(exited, Some(true), "audit verify reads beside the server: {log}");

    // The first server still owns its log: what it acknowledges now survives a SIGKILL.
    acked.extend(send(&server, 9, 20..40));
    server.kill();
    let server = TestServer::start(dir.path());
    check_all_present(&server, &acked);
}

/// Exports by (sender, sequence number): those acknowledged, and all attempted.
type Sent = (Vec<(u8, u32)>, Vec<(u8, u32)>);

/// Runs `senders` threads exporting until `stop`.
fn send_until(
    url: &str,
    senders: std::ops::Range<u8>,
    stop: &Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<Sent>> {
    senders
        .map(|sender| {
            let (url, stop) = (url.to_owned(), Arc::clone(stop));
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::new();
                let (mut acked, mut attempted) = (Vec::new(), Vec::new());
                for seq in 0u32.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    attempted.push((sender, seq));
                    let response = client
                        .post(&url)
                        .header("content-type", "application/x-protobuf")
                        .body(export(sender, seq))
                        .send();
                    match response {
                        Ok(r) if r.status().is_success() => acked.push((sender, seq)),
                        Ok(r) if r.status() == 429 || r.status() == 503 => {
                            std::thread::sleep(Duration::from_millis(20))
                        }
                        _ => break,
                    }
                }
                (acked, attempted)
            })
        })
        .collect()
}

#[test]
fn kills_while_blocks_are_compacted_lose_nothing_and_store_each_span_once() {
    let dir = tempfile::tempdir().unwrap();
    // Small heads and blocks, so sealing and compaction run every few seconds; the spans'
    // times are fixed in 2025, so retention must not take them (or their sketches) meanwhile.
    let env = [
        ("SPANBLAME_STORAGE_HEAD_SPANS", "400"),
        ("SPANBLAME_STORAGE_BLOCK_SPANS", "3200"),
        ("SPANBLAME_RETENTION_SPANS", "3650d"),
        ("SPANBLAME_RETENTION_SKETCHES", "3650d"),
    ];
    let (mut acked, mut attempted) = (Vec::new(), Vec::new());
    for (round, kill_after_ms) in [1_300u64, 2_700, 4_100].into_iter().enumerate() {
        let server = TestServer::start_with_env(dir.path(), &env);
        let stop = Arc::new(AtomicBool::new(false));
        let first = 2 * round as u8 + 1;
        let senders =
            send_until(&format!("http://{}/v1/traces", server.otlp_http), first..first + 2, &stop);
        server.wait_for_log("compacted blocks", Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(kill_after_ms));
        server.kill();
        stop.store(true, Ordering::Relaxed);
        for sender in senders {
            let (a, t) = sender.join().unwrap();
            acked.extend(a);
            attempted.extend(t);
        }
    }
    assert!(acked.len() >= 100, "{} exports acknowledged", acked.len());

    let server = TestServer::start_with_env(dir.path(), &env);
    check_all_present(&server, &acked);
    // Every stored span belongs to an export that was attempted, each export is one trace of
    // SPANS_PER_EXPORT spans, and the trace API removes duplicates: so the store holds each
    // span once exactly when its span count is SPANS_PER_EXPORT times the traces found.
    let mut traces_found = 0;
    for &(sender, seq) in &attempted {
        let hex: String = trace_id(sender, seq).iter().map(|b| format!("{b:02x}")).collect();
        let (status, _) = server.get_json(&format!("/api/v1/traces/{hex}"));
        traces_found += usize::from(status == 200);
    }
    let metrics = reqwest::blocking::get(server.url("/metrics")).unwrap().text().unwrap();
    let metric = |name: &str| -> usize {
        metrics
            .lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.split_whitespace().last()?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {metrics}"))
    };
    let stored = metric("spanblame_block_spans") + metric("spanblame_head_spans");
    assert_eq!(stored, traces_found * SPANS_PER_EXPORT, "every stored span once");
    assert!(metric("spanblame_blocks") < 40, "compaction keeps the block count down");
    server.kill();

    // The sketches count the same spans once each.
    let store = store::SpanStore::open(dir.path(), store::StoreOptions::default()).unwrap();
    let rows = store
        .sketches(&store::SketchQuery {
            service: "crashy".into(),
            environment: None,
            from_unix_minute: 0,
            to_unix_minute: i64::MAX,
        })
        .unwrap();
    let counted: u64 = rows.iter().map(|r| r.stats.spans).sum();
    assert_eq!(counted as usize, stored, "each span counted once in the sketches");
}
