//! The small protobuf messages OTLP responses need beyond the trace protos: `google.rpc.Status`
//! for OTLP/HTTP error bodies, and `google.rpc.RetryInfo` for throttling responses.

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceResponse,
};
use prost::Message;

#[derive(Clone, PartialEq, Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<ProtoAny>,
}

#[derive(Clone, PartialEq, Message)]
struct ProtoAny {
    #[prost(string, tag = "1")]
    type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    retry_delay: Option<ProtoDuration>,
}

#[derive(Clone, PartialEq, Message)]
struct ProtoDuration {
    #[prost(int64, tag = "1")]
    seconds: i64,
    #[prost(int32, tag = "2")]
    nanos: i32,
}

/// A protobuf `google.rpc.Status`, the body OTLP/HTTP requires for 4xx/5xx responses.
pub fn encode_rpc_status(grpc_code: i32, message: &str) -> Vec<u8> {
    RpcStatus { code: grpc_code, message: message.to_owned(), details: vec![] }.encode_to_vec()
}

/// The serialized `google.rpc.Status` that gRPC carries in `grpc-status-details-bin`, with a
/// `RetryInfo` detail telling OTLP exporters when to retry (OTLP spec, "Throttling").
pub fn grpc_status_details_with_retry(grpc_code: i32, message: &str, retry_secs: u32) -> Vec<u8> {
    let retry =
        RetryInfo { retry_delay: Some(ProtoDuration { seconds: i64::from(retry_secs), nanos: 0 }) };
    RpcStatus {
        code: grpc_code,
        message: message.to_owned(),
        details: vec![ProtoAny {
            type_url: "type.googleapis.com/google.rpc.RetryInfo".to_owned(),
            value: retry.encode_to_vec(),
        }],
    }
    .encode_to_vec()
}

/// The protobuf `ExportTraceServiceResponse` for an accepted request.
pub fn encode_export_response(partial_success: Option<ExportTracePartialSuccess>) -> Vec<u8> {
    ExportTraceServiceResponse { partial_success }.encode_to_vec()
}
