//! OTLP/gRPC: the `opentelemetry.proto.collector.trace.v1.TraceService/Export` method.
//! tonic decodes (and gunzips, within the size cap) the request; [`crate::ingest::accept`]
//! does the rest, exactly as for OTLP/HTTP.

use std::sync::Arc;

use otlp::trace_service_server::{TraceService, TraceServiceServer};
use otlp::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status};

use crate::AppState;

/// The HTTP/2 path of every `TraceService` method.
pub(crate) const ROUTE: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/{*method}";

pub(crate) struct OtlpGrpc {
    state: Arc<AppState>,
}

pub(crate) fn service(state: Arc<AppState>) -> TraceServiceServer<OtlpGrpc> {
    let max_bytes = state.settings.limits.max_body_bytes;
    TraceServiceServer::new(OtlpGrpc { state })
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(max_bytes)
}

#[tonic::async_trait]
impl TraceService for OtlpGrpc {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        // The same decision as every HTTP route, on the request's metadata.
        let client_addr =
            request.remote_addr().map_or_else(|| "unknown".to_owned(), |a| a.ip().to_string());
        let headers = request.metadata().clone().into_headers();
        let caller = crate::access::check(&self.state, &headers, auth::Need::Ingest, &client_addr)
            .await
            .map_err(|e| e.to_grpc_status())?;
        let partial_success =
            crate::ingest::accept(&self.state, request.into_inner(), &caller.visibility)
                .await
                .map_err(|e| e.to_grpc_status())?;
        Ok(Response::new(ExportTraceServiceResponse { partial_success }))
    }
}
