//! Zipkin v2: `POST /api/v2/spans` with a JSON array of spans (optionally gzip-compressed),
//! on the main address and Zipkin's own (`--zipkin-addr`, 9411 by default). Read as an OTLP
//! export (`otlp::decode_zipkin`) and accepted through the same intake as OTLP: a slot before
//! the body, the same caps, token restrictions and partial acceptance. Success is 202, as
//! Zipkin answers; rejected spans are counted in the body.

use std::sync::Arc;

use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::AppState;
use crate::ingest::Intake;
use edge::access::Caller;
use edge::error::header_str;
use edge::error::{ApiError, ErrorCode};

pub(crate) async fn export_spans(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match handle(&state, &headers, body, &caller.visibility).await {
        Ok(response) => response,
        Err(error) => {
            tracing::debug!(code = error.code.as_str(), message = %error.message, "refused a Zipkin export");
            error.into_response()
        }
    }
}

async fn handle(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    body: Body,
    visibility: &auth::Visibility,
) -> Result<Response, ApiError> {
    let content_type = header_str(headers, header::CONTENT_TYPE.as_str());
    let media_type = content_type.map(|c| c.split(';').next().unwrap_or("").trim());
    match media_type {
        // Zipkin's reporters send JSON; curl users often send no type at all.
        Some(m) if m.eq_ignore_ascii_case("application/json") => {}
        None | Some("") => {}
        Some(other) => {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                format!(
                    "`Content-Type` must be `application/json` (Zipkin v2 JSON), got `{other}`; configure the reporter's JSON encoding (Zipkin protobuf is not read)"
                ),
            ));
        }
    }
    let content_encoding =
        otlp::ContentEncoding::parse(header_str(headers, header::CONTENT_ENCODING.as_str()))?;
    let mut intake = Intake::begin(state)?;
    let bytes = intake.read_body(body).await?;
    let raw = intake.decompress(&bytes, content_encoding)?;
    let request = intake.decode_zipkin(&raw)?;
    drop(raw);
    drop(bytes);
    let partial = crate::ingest::accept(intake, request, visibility).await?;
    Ok(match partial {
        None => StatusCode::ACCEPTED.into_response(),
        Some(partial) => (
            StatusCode::ACCEPTED,
            axum::Json(json!({
                "rejected_spans": partial.rejected_spans,
                "message": partial.error_message,
            })),
        )
            .into_response(),
    })
}
