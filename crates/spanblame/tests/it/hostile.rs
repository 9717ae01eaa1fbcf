//! Hostile bodies cost bounded memory (issue 20, item 1): floods of tiny elements that decode
//! to 40-200 times their size, through HTTP, gzip and gRPC, with and without a token, many at
//! once. The server's peak resident memory (`VmHWM`) stays within `ingest.max_memory` plus a
//! documented constant, every flood is refused with a code that tells the exporter not to
//! retry (or to back off), and the server keeps taking real spans.

use std::io::Write;
use std::time::Duration;

use bytes::{Buf, BufMut};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

use crate::support::TestServer;

/// What the README promises beyond `ingest.max_memory`: the server's own working memory.
const CONSTANT_BYTES: u64 = 64 << 20;
const MAX_MEMORY_BYTES: u64 = 64 << 20;

/// One protobuf field: its key and length prefix, then the bytes.
fn field(number: u64, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 12);
    for value in [number << 3 | 2, bytes.len() as u64] {
        let mut v = value;
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    out.extend_from_slice(bytes);
    out
}

/// An export of one span carrying `num_attributes` empty attributes (`4a 00` each), the
/// attack of issue 20: 2 bytes on the wire, about 80 decoded.
fn attribute_flood(num_attributes: usize) -> Vec<u8> {
    let span = [0x4a, 0x00].repeat(num_attributes);
    field(1, &field(2, &field(2, &span)))
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// The server's resident memory now and at its peak, from `/proc`.
fn memory_bytes(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        let line = status.lines().find_map(|l| l.strip_prefix(name)).unwrap();
        line.trim().trim_end_matches("kB").trim().parse::<u64>().unwrap() * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Sends bytes as they are, as the message of a gRPC call.
#[derive(Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }
    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

async fn grpc_export(server: &TestServer, body: Vec<u8>, compressed: bool) -> tonic::Code {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.otlp_grpc))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    if compressed {
        grpc = grpc.send_compressed(tonic::codec::CompressionEncoding::Gzip);
    }
    grpc.ready().await.unwrap();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    );
    match grpc.unary(tonic::Request::new(body), path, RawCodec).await {
        Ok(_) => tonic::Code::Ok,
        Err(status) => status.code(),
    }
}

async fn http_export(server: &TestServer, body: Vec<u8>, gzipped: bool) -> u16 {
    let mut request = reqwest::Client::new()
        .post(format!("http://{}/v1/traces", server.otlp_http))
        .header("content-type", "application/x-protobuf")
        .body(body);
    if gzipped {
        request = request.header("content-encoding", "gzip");
    }
    request.send().await.map(|r| r.status().as_u16()).unwrap_or(0)
}

#[test]
fn floods_of_tiny_elements_cost_bounded_memory_and_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with_env(
        dir.path(),
        &[
            ("SPANBLAME_INGEST_MAX_MEMORY", "64MiB"),
            ("SPANBLAME_INGEST_MAX_EXPORTS_IN_FLIGHT", "8"),
        ],
    );
    std::thread::sleep(Duration::from_secs(1));
    let (idle_bytes, _) = memory_bytes(server.pid());

    // 16 MB of empty attributes: 515 MiB decoded each before the fix.
    let flood = attribute_flood(7_900_000);
    let gzipped = gzip(&flood);
    assert!(gzipped.len() < 256 * 1024, "{}", gzipped.len());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (http, http_gzip, grpc) = runtime.block_on(async {
        let http = futures_join_all((0..6).map(|_| http_export(&server, flood.clone(), false)));
        let http_gzip =
            futures_join_all((0..4).map(|_| http_export(&server, gzipped.clone(), true)));
        let grpc = futures_join_all((0..3).map(|_| grpc_export(&server, flood.clone(), false)));
        let grpc_gzip =
            futures_join_all((0..3).map(|_| grpc_export(&server, gzipped.clone(), true)));
        let (http, http_gzip, grpc, grpc_gzip) = tokio::join!(http, http_gzip, grpc, grpc_gzip);
        (http, http_gzip, [grpc, grpc_gzip].concat())
    });
    let (_, peak_bytes) = memory_bytes(server.pid());
    // Refused as too large to decode (never retried), or throttled while others were read
    // (a 429 comes before the body is read, so a client still sending may see the connection
    // closed instead: 0).
    for status in http.iter().chain(&http_gzip) {
        assert!(matches!(status, 413 | 429 | 0), "HTTP answered {status}: {http:?} {http_gzip:?}");
    }
    assert!(http.iter().chain(&http_gzip).any(|s| *s == 413), "{http:?} {http_gzip:?}");
    for code in &grpc {
        assert!(
            matches!(code, tonic::Code::InvalidArgument | tonic::Code::ResourceExhausted),
            "gRPC answered {code:?}: {grpc:?}"
        );
    }
    let grown = peak_bytes.saturating_sub(idle_bytes);
    eprintln!("idle {} MiB, peak {} MiB under the flood", idle_bytes >> 20, peak_bytes >> 20);
    assert!(
        grown <= MAX_MEMORY_BYTES + CONSTANT_BYTES,
        "the server grew by {} MiB under the flood (idle {} MiB, peak {} MiB); the bound is `ingest.max_memory` 64 MiB + {} MiB",
        grown >> 20,
        idle_bytes >> 20,
        peak_bytes >> 20,
        CONSTANT_BYTES >> 20
    );

    // Real spans still go in.
    let json = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"checkout"}}]},
      "scopeSpans":[{"spans":[{"traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"EEE19B7EC3C1B174",
      "name":"GET /","startTimeUnixNano":"1763700000000000000","endTimeUnixNano":"1763700000250000000"}]}]}]}"#;
    let status = reqwest::blocking::Client::new()
        .post(format!("http://{}/v1/traces", server.otlp_http))
        .header("content-type", "application/json")
        .body(json)
        .send()
        .unwrap()
        .status();
    assert_eq!(status, 200);
    server.wait_for_trace("5b8efff798038103d269b633813fc60c", 1);
}

#[test]
fn unauthenticated_grpc_is_refused_before_its_message_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with_env(
        dir.path(),
        &[("SPANBLAME_INGEST_REQUIRE_AUTH", "true"), ("SPANBLAME_INGEST_MAX_MEMORY", "64MiB")],
    );
    std::thread::sleep(Duration::from_secs(1));
    let (idle_bytes, _) = memory_bytes(server.pid());
    let flood = attribute_flood(7_900_000);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let codes = runtime
        .block_on(futures_join_all((0..6).map(|_| grpc_export(&server, flood.clone(), false))));
    assert!(codes.iter().all(|c| *c == tonic::Code::Unauthenticated), "{codes:?}");
    let statuses = runtime
        .block_on(futures_join_all((0..6).map(|_| http_export(&server, flood.clone(), false))));
    // 401 before the body is read; a client still sending may see the connection closed (0).
    assert!(statuses.iter().all(|s| matches!(s, 401 | 0)), "{statuses:?}");
    assert!(statuses.contains(&401), "{statuses:?}");
    let (_, peak_bytes) = memory_bytes(server.pid());
    // Nothing was buffered for them: far below even one body.
    assert!(
        peak_bytes.saturating_sub(idle_bytes) < 16 << 20,
        "the server grew by {} MiB answering unauthenticated floods",
        peak_bytes.saturating_sub(idle_bytes) >> 20
    );
}

/// Runs futures concurrently on the current task and returns their outputs in order.
async fn futures_join_all<F: std::future::Future>(
    futures: impl IntoIterator<Item = F>,
) -> Vec<F::Output> {
    let mut pending: Vec<_> = futures.into_iter().map(|f| Some(Box::pin(f))).collect();
    let mut outputs: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        for (slot, output) in pending.iter_mut().zip(&mut outputs) {
            if let Some(future) = slot
                && let std::task::Poll::Ready(value) = future.as_mut().poll(cx)
            {
                *output = Some(value);
                *slot = None;
            }
        }
        if pending.iter().all(Option::is_none) {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

#[test]
fn refusals_use_codes_exporters_do_not_retry_and_content_types_ignore_case() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with_env(dir.path(), &[("SPANBLAME_INGEST_MAX_BODY", "64KiB")]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // Garbage protobuf (tonic's server said INTERNAL) and an oversized message (OUT_OF_RANGE,
    // which OTLP exporters retry forever): both INVALID_ARGUMENT.
    let garbage = runtime.block_on(grpc_export(&server, vec![0xff; 64], false));
    assert_eq!(garbage, tonic::Code::InvalidArgument);
    let oversized = runtime.block_on(grpc_export(&server, attribute_flood(40_000), false));
    assert_eq!(oversized, tonic::Code::InvalidArgument);
    let empty = runtime.block_on(grpc_export(&server, Vec::new(), false));
    assert_eq!(empty, tonic::Code::Ok);

    // Media types are case-insensitive (RFC 9110 §8.3.1).
    let status = reqwest::blocking::Client::new()
        .post(format!("http://{}/v1/traces", server.otlp_http))
        .header("content-type", "Application/X-Protobuf")
        .body(Vec::new())
        .send()
        .unwrap()
        .status();
    assert_eq!(status, 200);
}

#[test]
fn a_deploy_url_must_be_a_web_address() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    let client = reqwest::blocking::Client::new();
    let report = |url: &str| {
        let body = serde_json::json!({"service": "checkout", "environment": "prod",
            "version": "1.0.0", "url": url});
        let response = client.post(server.url("/api/v1/deploys")).json(&body).send().unwrap();
        (response.status().as_u16(), response.json::<serde_json::Value>().unwrap())
    };
    let (status, body) = report("javascript:alert(document.cookie)");
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("http(s) URL"), "{body}");
    let (status, body) = report("https://ci.example.com/pipelines/7");
    assert_eq!(status, 201, "{body}");
}

#[test]
fn spans_from_the_far_future_are_rejected_and_the_rest_stored() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    let span = |span_id: &str, end: &str| {
        serde_json::json!({"traceId": "6B8EFFF798038103D269B633813FC60C", "spanId": span_id,
            "name": "GET /", "startTimeUnixNano": "1763700000000000000", "endTimeUnixNano": end})
    };
    let body = serde_json::json!({"resourceSpans": [{"resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": "checkout"}}]},
        "scopeSpans": [{"spans": [span("EEE19B7EC3C1B174", "1763700000250000000"),
                                   span("EEE19B7EC3C1B175", "18446744073709551615")]}]}]});
    let response = reqwest::blocking::Client::new()
        .post(format!("http://{}/v1/traces", server.otlp_http))
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer: serde_json::Value = response.json().unwrap();
    let partial = &answer["partialSuccess"];
    assert_eq!(partial["rejectedSpans"], 1, "{answer}");
    assert!(partial["errorMessage"].as_str().unwrap().contains("ingest.max_future"), "{answer}");
    server.wait_for_trace("6b8efff798038103d269b633813fc60c", 1);
}

#[test]
fn malformed_requests_get_json_errors_and_pages_get_html() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    let client = reqwest::blocking::Client::new();
    for path in [
        "/api/v1/traces/%FF%FE",
        "/api/v1/commits/%FF/impact",
        "/api/v1/findings/%FF",
        "/api/v1/traces?limit=%FF",
    ] {
        let response = client.get(server.url(path)).send().unwrap();
        assert_eq!(response.status(), 400, "{path}");
        let body: serde_json::Value = response.json().unwrap();
        assert_eq!(body["error"]["code"], "invalid_argument", "{path}: {body}");
        assert!(!body["error"]["message"].as_str().unwrap().is_empty(), "{path}: {body}");
    }
    let response = client.post(server.url("/hooks/gitea/%FF")).body("{}").send().unwrap();
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().unwrap();
    assert!(body["error"]["code"].is_string(), "{status} {body}");
    let response = client.get(server.url("/services/%FF")).send().unwrap();
    assert_eq!(response.status(), 400);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/html"), "{content_type}");

    // A malformed chunked body is a bad request, not an oversized one.
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(server.http).unwrap();
    stream
        .write_all(
            b"POST /api/v1/deploys HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
        )
        .unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
}

/// Reads what the server answers on `stream` until it closes the connection (or 15 s pass,
/// which fails the caller's assertion: the server should have closed it long before).
fn answer_until_closed(stream: &mut std::net::TcpStream) -> (String, bool) {
    use std::io::Read;
    stream.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (String::from_utf8_lossy(&answer).into_owned(), true),
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return (String::from_utf8_lossy(&answer).into_owned(), true);
            }
            Err(_) => return (String::from_utf8_lossy(&answer).into_owned(), false),
        }
    }
}

#[test]
fn silent_and_half_sent_requests_are_closed_and_shutdown_has_a_deadline() {
    use std::net::TcpStream;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with_env(
        dir.path(),
        &[
            ("SPANBLAME_SERVER_HEADER_READ_TIMEOUT", "1s"),
            ("SPANBLAME_SERVER_BODY_READ_TIMEOUT", "1s"),
        ],
    );
    // Nothing at all, half a header, half a body: each connection is closed, the last with
    // an answer saying what was missing.
    let mut silent = TcpStream::connect(server.http).unwrap();
    let (_, closed) = answer_until_closed(&mut silent);
    assert!(closed, "a silent connection stayed open");
    let mut half_header = TcpStream::connect(server.http).unwrap();
    half_header.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").unwrap();
    let (_, closed) = answer_until_closed(&mut half_header);
    assert!(closed, "half a header stayed open");
    let mut half_body = TcpStream::connect(server.http).unwrap();
    half_body
        .write_all(b"POST /api/v1/deploys HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"serv")
        .unwrap();
    let (answer, closed) = answer_until_closed(&mut half_body);
    assert!(closed || answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("body_read_timeout"), "{answer}");
    drop(server);

    // SIGTERM while a request is half sent (bodies may take 5 minutes here): the server
    // exits once the shutdown grace has passed.
    let dir = tempfile::tempdir().unwrap();
    let mut server = TestServer::start_with_env(
        dir.path(),
        &[("SPANBLAME_SERVER_BODY_READ_TIMEOUT", "5m"), ("SPANBLAME_SERVER_SHUTDOWN_GRACE", "1s")],
    );
    let mut stuck = TcpStream::connect(server.otlp_http).unwrap();
    stuck
        .write_all(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        server.terminate_within(Duration::from_secs(20)),
        "the server waited on a half-sent request"
    );
    server.wait_for_log("shutdown grace", Duration::from_secs(1));
}

#[test]
fn a_listener_serves_at_most_max_connections_at_once() {
    use std::net::TcpStream;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with_env(
        dir.path(),
        &[("SPANBLAME_SERVER_MAX_CONNECTIONS", "1"), ("SPANBLAME_SERVER_IDLE_TIMEOUT", "5s")],
    );
    // One connection holds the only slot; a second is not served while it is open.
    let holder = TcpStream::connect(server.http).unwrap();
    let waiting =
        reqwest::blocking::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
    assert!(waiting.get(server.url("/healthz")).send().is_err(), "a second connection was served");
    drop(waiting);
    // Once it closes, the next one is (idle connections, kept alive or silent, are closed
    // after `server.idle_timeout`, so none holds a slot for ever).
    drop(holder);
    let client =
        reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    assert_eq!(client.get(server.url("/healthz")).send().unwrap().status(), 200);
}
