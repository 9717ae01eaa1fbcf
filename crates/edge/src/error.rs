//! The one error type of the network edge, [`ApiError`], and its mapping to HTTP statuses,
//! gRPC codes and the JSON body `{"error": {"code", "message"}}`.
//!
//! Library errors become `ApiError`s here, so no library learns about HTTP. Internal errors
//! are logged with their detail and answered with a generic message.

use axum::Json;
use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Seconds an OTLP exporter is told to wait before retrying when the write path is saturated.
pub const RETRY_AFTER_SECS: u32 = 1;
/// What clients are told to wait when a storage engine is unreachable.
pub const UNAVAILABLE_RETRY_AFTER_SECS: u32 = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidArgument,
    Unauthenticated,
    /// Authenticated, but not allowed.
    PermissionDenied,
    NotFound,
    /// The resource is not in a state that allows this.
    Conflict,
    MethodNotAllowed,
    PayloadTooLarge,
    UnsupportedMediaType,
    ResourceExhausted,
    Unavailable,
    /// A forge API the request depends on failed.
    BadGateway,
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidArgument => "invalid_argument",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::PermissionDenied => "permission_denied",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::ResourceExhausted => "resource_exhausted",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::BadGateway => "bad_gateway",
            ErrorCode::Internal => "internal",
        }
    }

    /// The code of an HTTP error status (for answers made by axum's extractors).
    pub fn from_status(status: StatusCode) -> ErrorCode {
        match status {
            StatusCode::UNAUTHORIZED => ErrorCode::Unauthenticated,
            StatusCode::FORBIDDEN => ErrorCode::PermissionDenied,
            StatusCode::NOT_FOUND => ErrorCode::NotFound,
            StatusCode::CONFLICT => ErrorCode::Conflict,
            StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
            StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMediaType,
            StatusCode::TOO_MANY_REQUESTS => ErrorCode::ResourceExhausted,
            StatusCode::SERVICE_UNAVAILABLE => ErrorCode::Unavailable,
            StatusCode::BAD_GATEWAY => ErrorCode::BadGateway,
            s if s.is_server_error() => ErrorCode::Internal,
            _ => ErrorCode::InvalidArgument,
        }
    }

    pub fn http_status(self) -> StatusCode {
        match self {
            ErrorCode::InvalidArgument => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorCode::PermissionDenied => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::Conflict => StatusCode::CONFLICT,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::BadGateway => StatusCode::BAD_GATEWAY,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn grpc_code(self) -> tonic::Code {
        match self {
            ErrorCode::InvalidArgument => tonic::Code::InvalidArgument,
            ErrorCode::Unauthenticated => tonic::Code::Unauthenticated,
            ErrorCode::PermissionDenied => tonic::Code::PermissionDenied,
            ErrorCode::NotFound => tonic::Code::NotFound,
            ErrorCode::Conflict => tonic::Code::FailedPrecondition,
            ErrorCode::MethodNotAllowed => tonic::Code::Unimplemented,
            ErrorCode::PayloadTooLarge => tonic::Code::InvalidArgument,
            ErrorCode::UnsupportedMediaType => tonic::Code::InvalidArgument,
            ErrorCode::ResourceExhausted => tonic::Code::ResourceExhausted,
            ErrorCode::Unavailable | ErrorCode::BadGateway => tonic::Code::Unavailable,
            ErrorCode::Internal => tonic::Code::Internal,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError { code, message: message.into() }
    }

    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::InvalidArgument, message)
    }

    /// Logs the detail; the client sees only that something failed on our side.
    pub fn internal(detail: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %detail, "internal error");
        ApiError::new(ErrorCode::Internal, "internal error; the server log has the details")
    }

    pub fn json_body(&self) -> serde_json::Value {
        serde_json::json!({"error": {"code": self.code.as_str(), "message": self.message}})
    }

    /// How long a client should wait before retrying, for the errors a retry can fix.
    fn retry_after_secs(&self) -> Option<u32> {
        match self.code {
            ErrorCode::ResourceExhausted => Some(RETRY_AFTER_SECS),
            ErrorCode::Unavailable => Some(UNAVAILABLE_RETRY_AFTER_SECS),
            _ => None,
        }
    }

    pub fn to_grpc_status(&self) -> tonic::Status {
        let code = self.code.grpc_code();
        if let Some(secs) = self.retry_after_secs() {
            let details = otlp::grpc_status_details_with_retry(code as i32, &self.message, secs);
            return tonic::Status::with_details(code, self.message.clone(), details.into());
        }
        tonic::Status::new(code, self.message.clone())
    }

    /// Headers every response of this error carries: `Retry-After` where a retry can work.
    pub fn add_headers(&self, response: &mut Response) {
        if let Some(secs) = self.retry_after_secs() {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.code.http_status(), Json(self.json_body())).into_response();
        self.add_headers(&mut response);
        response
    }
}

/// Reads a request body, refusing it with 413 as soon as it exceeds `max_bytes` (the body is
/// never buffered past the cap), or 400 when it cannot be read or does not arrive in time.
pub async fn read_capped(
    body: axum::body::Body,
    max_bytes: usize,
    what: &str,
    timeout: std::time::Duration,
) -> Result<axum::body::Bytes, ApiError> {
    let read = tokio::time::timeout(timeout, axum::body::to_bytes(body, max_bytes));
    let Ok(read) = read.await else {
        return Err(ApiError::invalid(format!(
            "{what} body did not arrive within {} s (`server.body_read_timeout`)",
            timeout.as_secs()
        )));
    };
    read.map_err(|e| {
        if e.into_inner().is::<http_body_util::LengthLimitError>() {
            ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("{what} body is larger than the limit of {max_bytes} bytes"),
            )
        } else {
            ApiError::invalid(format!("{what} body could not be read (a malformed chunked body?)"))
        }
    })
}

/// An error for a person: an HTML page with the status and what went wrong (page routes,
/// including the access guard's refusals on them).
pub fn page(status: StatusCode, message: &str) -> Response {
    let reason = status.canonical_reason().unwrap_or("Error");
    match web::error_page(status.as_u16(), reason, message) {
        Some(html) => (status, axum::response::Html(html)).into_response(),
        None => (status, message.to_owned()).into_response(),
    }
}

impl From<views::Invalid> for ApiError {
    fn from(e: views::Invalid) -> ApiError {
        ApiError::invalid(e.message)
    }
}

impl From<otlp::DecodeError> for ApiError {
    fn from(e: otlp::DecodeError) -> ApiError {
        use otlp::DecodeError as E;
        let code = match &e {
            E::BodyTooLarge { .. }
            | E::DecompressedTooLarge { .. }
            | E::TooManySpans { .. }
            | E::DecodesTooLarge { .. } => ErrorCode::PayloadTooLarge,
            E::UnsupportedEncoding(_) => ErrorCode::UnsupportedMediaType,
            E::Gzip(_)
            | E::Protobuf(_)
            | E::Json(_)
            | E::Zipkin(_)
            | E::SnakeCaseJson
            | E::TooDeep { .. } => ErrorCode::InvalidArgument,
        };
        ApiError::new(code, e.to_string())
    }
}

impl From<compat::tempo::TempoError> for ApiError {
    fn from(e: compat::tempo::TempoError) -> ApiError {
        match e {
            compat::tempo::TempoError::Invalid(message) => ApiError::invalid(message),
            compat::tempo::TempoError::Store(e) => e.into(),
        }
    }
}

impl From<store::StoreError> for ApiError {
    fn from(e: store::StoreError) -> ApiError {
        match e {
            store::StoreError::Busy(reason) => ApiError::new(
                ErrorCode::ResourceExhausted,
                format!("spanblame is saturated ({reason}); retry after {RETRY_AFTER_SECS}s"),
            ),
            store::StoreError::Failed(_) => {
                tracing::error!(error = %e, "span store refuses writes");
                ApiError::new(ErrorCode::Unavailable, "the span store is not accepting writes")
            }
            store::StoreError::Unavailable { engine, .. } => {
                // The log names the engine's URL; clients learn only what to do.
                tracing::warn!(error = %e, "a storage engine is unavailable");
                ApiError::new(
                    ErrorCode::Unavailable,
                    format!(
                        "the storage engine ({engine}) is unavailable; nothing was stored, retry after {UNAVAILABLE_RETRY_AFTER_SECS}s"
                    ),
                )
            }
            other => ApiError::internal(other),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// OTLP's shape of an error: a `google.rpc.Status`, in the request's encoding.

/// How an export's message is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

pub const PROTOBUF: &str = "application/x-protobuf";

pub const JSON: &str = "application/json";

/// A refusal before the handler (authentication) in OTLP's shape, in the request's encoding.
pub fn refusal(error: &ApiError, headers: &HeaderMap) -> Response {
    let encoding = match header_str(headers, header::CONTENT_TYPE.as_str()) {
        Some(c) if c.to_ascii_lowercase().starts_with(PROTOBUF) => Encoding::Protobuf,
        _ => Encoding::Json,
    };
    error_response(error, encoding)
}

pub fn error_response(error: &ApiError, encoding: Encoding) -> Response {
    let grpc_code = error.code.grpc_code() as i32;
    let (content_type, body) = match encoding {
        Encoding::Protobuf => (PROTOBUF, otlp::encode_rpc_status(grpc_code, &error.message)),
        Encoding::Json => {
            let mut body = error.json_body();
            body["code"] = grpc_code.into();
            body["message"] = error.message.clone().into();
            (JSON, body.to_string().into_bytes())
        }
    };
    let mut response = (error.code.http_status(), Bytes::from(body)).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    error.add_headers(&mut response);
    response
}

pub fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}
