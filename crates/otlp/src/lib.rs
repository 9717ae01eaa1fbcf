//! OTLP trace decoding: from the bytes an exporter sends to [`model::Span`]s (Zipkin v2 JSON
//! too, read as an OTLP export by [`decode_zipkin`]); and encoding spans back to OTLP for the
//! read APIs that answer in it ([`traces_data`]).
//!
//! The three transports (OTLP/gRPC, OTLP/HTTP with protobuf, OTLP/HTTP with JSON) differ only
//! in how they frame the `ExportTraceServiceRequest`. This crate turns each framing into that
//! one message ([`decode_protobuf`], [`decode_json`], after [`decompress`]) and then every
//! transport goes through the same [`convert`], which validates each span, applies the
//! attribute limits and reports rejected spans for OTLP's `partial_success`. The server never
//! touches protobuf or OTLP JSON itself.
//!
//! Caps come first: a body is decompressed only up to [`DecodeLimits::max_body_bytes`] and a
//! ratio of its compressed size, so a gzip bomb costs a few kilobytes of memory, not gigabytes.
//!
//! **Architecture Invariant:** only this crate knows OTLP's wire types; nothing here panics on
//! any input (see the property tests in `tests.rs`).
//!
//! May depend on: `model`, `opentelemetry-proto`/`prost`, decompression. **Never:** IO, a
//! runtime, storage, or deciding who may send (the server's access guard does).

mod body;
mod convert;
mod encode;
mod shape;
mod status;
mod zipkin;

#[cfg(test)]
mod tests;

pub use body::{ContentEncoding, decode_json, decode_protobuf, decompress, decompressed_allowance};
pub use convert::{Converted, convert};
pub use encode::{
    TracesData, any_value, encode_json, encode_protobuf, encode_protobuf_in_field_one, key_values,
    traces_data,
};
pub use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
    trace_service_server,
};
pub use shape::{MAX_NESTING, Shape, measure_json, measure_protobuf};
pub use status::{encode_export_response, encode_rpc_status, grpc_status_details_with_retry};
pub use zipkin::{decode_zipkin, measure_zipkin};

/// Size caps and attribute limits applied while decoding. The defaults follow PRODUCT.md §3.1
/// and the OpenTelemetry SDK's own span limits.
#[derive(Debug, Clone)]
pub struct DecodeLimits {
    /// Largest request body accepted, after decompression.
    pub max_body_bytes: usize,
    /// Largest decompressed/compressed size ratio; bounds what a small body may expand to.
    pub max_decompression_ratio: usize,
    /// Attributes kept per span, event, link, resource or scope; the rest are counted as dropped.
    pub max_attributes: usize,
    /// Longest string or bytes attribute value kept; longer values are truncated.
    pub max_attribute_value_bytes: usize,
    pub max_events_per_span: usize,
    pub max_links_per_span: usize,
    /// Spans one request may carry (an exporter's batch is far smaller).
    pub max_spans_per_request: usize,
    /// Memory one request may take once decoded, as [`measure_protobuf`] bounds it before
    /// decoding; a body of tiny elements is refused instead of amplified.
    pub max_decoded_bytes: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_body_bytes: 16 * 1024 * 1024,
            max_decompression_ratio: 100,
            max_attributes: 128,
            max_attribute_value_bytes: 16 * 1024,
            max_events_per_span: 128,
            max_links_per_span: 128,
            max_spans_per_request: 100_000,
            max_decoded_bytes: 128 * 1024 * 1024,
        }
    }
}

/// Why a request could not be decoded at all. Each maps to one OTLP status (see `server`).
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("request body is larger than the {limit_bytes}-byte limit")]
    BodyTooLarge { limit_bytes: usize },
    #[error(
        "decompressed body exceeds {limit_bytes} bytes (limit: {max_ratio}x the compressed size, at most the body limit)"
    )]
    DecompressedTooLarge { limit_bytes: usize, max_ratio: usize },
    #[error("unsupported `Content-Encoding` `{0}`; send `gzip` or no encoding")]
    UnsupportedEncoding(String),
    #[error("body is not valid gzip: {0}")]
    Gzip(String),
    #[error("body is not a valid OTLP protobuf `ExportTraceServiceRequest`: {0}")]
    Protobuf(String),
    #[error("body is not valid OTLP JSON: {0}")]
    Json(String),
    #[error(
        "the request holds {num_spans} spans; at most {limit} are accepted in one request: lower the exporter's batch size"
    )]
    TooManySpans { num_spans: u64, limit: usize },
    #[error(
        "the request would take {decoded_bytes} bytes of memory once decoded, over the {limit_bytes}-byte limit (many tiny elements, such as empty attributes, cost far more decoded than sent); send smaller batches"
    )]
    DecodesTooLarge { decoded_bytes: u64, limit_bytes: usize },
    #[error("body is not valid Zipkin v2 JSON: {0}")]
    Zipkin(String),
    #[error("the request nests messages or attribute values more than {limit} deep")]
    TooDeep { limit: usize },
    #[error(
        "OTLP JSON keys must be lowerCamelCase (`resourceSpans`, `scopeSpans`), not snake_case; nothing was accepted"
    )]
    SnakeCaseJson,
}
