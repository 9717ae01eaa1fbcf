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
