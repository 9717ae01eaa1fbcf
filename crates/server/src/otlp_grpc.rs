//! OTLP/gRPC: the `opentelemetry.proto.collector.trace.v1.TraceService/Export` method.
//!
//! Served as one unary gRPC call over HTTP/2 by this handler rather than a generated tonic
//! server, because the order is the security boundary: tonic's server reads and decodes the
//! message before any handler runs. Here the caller is authenticated from the headers, the
//! export takes its slot and then memory as its body arrives, and the message is measured
//! before it is decoded (`crate::ingest`), exactly as for OTLP/HTTP.
//!
//! gRPC's framing: the body is one message behind a 1-byte compressed flag and a 4-byte
//! big-endian length (compressed with the `grpc-encoding` header's codec when the flag is
//! set); the answer is one message and a `grpc-status` trailer, or, for a refusal, the
//! status in the headers alone ("Trailers-Only"), built by `tonic::Status`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use http_body_util::{BodyExt, Full};
use tonic::{Code, Status};

use crate::AppState;
use crate::ingest::Intake;
use edge::error::Encoding;

/// The HTTP/2 path of every `TraceService` method.
pub(crate) const ROUTE: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/{*method}";

/// The length prefix before a gRPC message.
const PREFIX_BYTES: usize = 5;

pub(crate) async fn export(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match handle(&state, &peer, &method, &headers, body).await {
        Ok(response) => response,
        Err(status) => {
            tracing::debug!(code = ?status.code(), message = status.message(), "refused an OTLP/gRPC export");
            let mut response = status.into_http::<Body>();
            response
                .headers_mut()
                .insert("grpc-accept-encoding", HeaderValue::from_static("gzip,identity"));
            response
        }
    }
}

async fn handle(
    state: &Arc<AppState>,
    peer: &SocketAddr,
    method: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, Status> {
    if method != "Export" {
        return Err(Status::unimplemented(format!(
            "`TraceService/{method}` does not exist; OTLP exporters call `TraceService/Export`"
        )));
    }
    let compression = match headers.get("grpc-encoding").map(HeaderValue::to_str) {
        None | Some(Ok("identity")) => None,
        Some(Ok(value)) if value.eq_ignore_ascii_case("gzip") => Some(otlp::ContentEncoding::Gzip),
        Some(other) => {
            return Err(Status::unimplemented(format!(
                "`grpc-encoding` `{}` is not supported; use gzip or none",
                other.unwrap_or("(not text)")
            )));
        }
    };
    // The same decision as every HTTP route, on the request's metadata, before the body.
    let caller =
        edge::access::check(&state.guard, headers, auth::Need::Ingest, &peer.ip().to_string())
            .await
            .map_err(|e| e.to_grpc_status())?;
    let mut intake = Intake::begin(state).map_err(|e| e.to_grpc_status())?;
    let framed = intake.read_body(body).await.map_err(|e| e.to_grpc_status())?;
    let (compressed, message) = unframe(&framed)?;
    let encoding = match (compressed, compression) {
        (false, _) => otlp::ContentEncoding::Identity,
        (true, Some(encoding)) => encoding,
        (true, None) => {
            return Err(Status::internal(
                "the message is flagged compressed but the call names no `grpc-encoding`",
            ));
        }
    };
    let raw = intake.decompress(message, encoding).map_err(|e| e.to_grpc_status())?;
    let request = intake.decode(&raw, Encoding::Protobuf).map_err(|e| e.to_grpc_status())?;
    drop(raw);
    drop(framed);
    let partial_success = crate::ingest::accept(intake, request, &caller.visibility)
        .await
        .map_err(|e| e.to_grpc_status())?;
    Ok(answer(&otlp::encode_export_response(partial_success)))
}

/// The one message of a unary call: whether it is compressed, and its bytes.
fn unframe(framed: &[u8]) -> Result<(bool, &[u8]), Status> {
    let malformed =
        |what: &str| Status::invalid_argument(format!("the body is not one gRPC message: {what}"));
    let (prefix, message) = framed
        .split_at_checked(PREFIX_BYTES)
        .ok_or_else(|| malformed("shorter than the 5-byte length prefix"))?;
    let compressed = match prefix[0] {
        0 => false,
        1 => true,
        flag => return Err(malformed(&format!("compressed flag {flag} (0 or 1)"))),
    };
    let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
    if len != message.len() {
        return Err(malformed(&format!(
            "the prefix announces {len} bytes and {} follow (a unary call carries exactly one message)",
            message.len()
        )));
    }
    Ok((compressed, message))
}

/// A successful answer: the message, then `grpc-status: 0` in trailers.
fn answer(message: &[u8]) -> Response {
    let mut framed = Vec::with_capacity(PREFIX_BYTES + message.len());
    framed.push(0);
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(message);
    let mut trailers = HeaderMap::new();
    trailers.insert(Status::GRPC_STATUS, HeaderValue::from(Code::Ok as i32));
    let body = Full::new(Bytes::from(framed)).with_trailers(async move { Some(Ok(trailers)) });
    let mut response = Response::new(Body::new(body));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    response
}
