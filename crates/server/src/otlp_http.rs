//! OTLP/HTTP: `POST /v1/traces` with a protobuf or JSON body, optionally gzip-compressed.
//!
//! Responses follow the OTLP/HTTP specification: success is an `ExportTraceServiceResponse`
//! in the request's encoding; failures carry a `google.rpc.Status` in the request's encoding
//! (the JSON form also has spanblame's `{"error": {"code", "message"}}` object, which OTLP
//! clients ignore and people can read).

use std::sync::Arc;

use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::ingest::Intake;
use edge::access::Caller;
use edge::error::{ApiError, ErrorCode};
use edge::error::{Encoding, JSON, PROTOBUF, error_response, header_str};

pub(crate) async fn export_traces(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let content_type = header_str(&headers, header::CONTENT_TYPE.as_str());
    let media_type = content_type.map(|c| c.split(';').next().unwrap_or("").trim());
    let encoding = match media_type {
        Some(m) if m.eq_ignore_ascii_case(PROTOBUF) => Encoding::Protobuf,
        Some(m) if m.eq_ignore_ascii_case(JSON) => Encoding::Json,
        other => {
            let error = ApiError::new(
                ErrorCode::UnsupportedMediaType,
                format!(
                    "`Content-Type` must be `{PROTOBUF}` or `{JSON}`, got `{}`",
                    other.unwrap_or("(none)")
                ),
            );
            return error_response(&error, Encoding::Json);
        }
    };
    match handle(&state, &headers, body, encoding, &caller.visibility).await {
        Ok(response) => response,
        Err(error) => {
            tracing::debug!(code = error.code.as_str(), message = %error.message, "refused an OTLP/HTTP export");
            error_response(&error, encoding)
        }
    }
}

async fn handle(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    body: Body,
    encoding: Encoding,
    visibility: &auth::Visibility,
) -> Result<Response, ApiError> {
    let content_encoding =
        otlp::ContentEncoding::parse(header_str(headers, header::CONTENT_ENCODING.as_str()))?;
    // A slot before the body is read, then memory as it arrives (`crate::ingest`).
    let mut intake = Intake::begin(state)?;
    let bytes = intake.read_body(body).await?;
    let raw = intake.decompress(&bytes, content_encoding)?;
    let request = intake.decode(&raw, encoding)?;
    drop(raw);
    drop(bytes);
    let partial_success = crate::ingest::accept(intake, request, visibility).await?;
    Ok(match encoding {
        Encoding::Protobuf => {
            let body = otlp::encode_export_response(partial_success);
            ([(header::CONTENT_TYPE, PROTOBUF)], Bytes::from(body)).into_response()
        }
        Encoding::Json => {
            // Absent fields are omitted in OTLP/JSON, so full success is `{}`.
            let body = match partial_success {
                None => b"{}".to_vec(),
                Some(partial) => {
                    serde_json::to_vec(&serde_json::json!({ "partialSuccess": partial }))
                        .map_err(ApiError::internal)?
                }
            };
            ([(header::CONTENT_TYPE, JSON)], Bytes::from(body)).into_response()
        }
    })
}
