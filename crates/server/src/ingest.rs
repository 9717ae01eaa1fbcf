//! The one accept path every OTLP transport ends in: convert, bound, append durably.
//!
//! gRPC and HTTP (protobuf or JSON) decode their framing into an `ExportTraceServiceRequest`
//! and call [`accept`]. It converts the spans (invalid ones go to `partial_success`), waits
//! for a slot among a bounded number of in-flight writes (none free: `RESOURCE_EXHAUSTED`, so
//! exporters back off instead of the server queueing without bound), and returns once the
//! store has made the spans durable.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use otlp::{ExportTracePartialSuccess, ExportTraceServiceRequest};

use crate::AppState;
use crate::error::{ApiError, ErrorCode, RETRY_AFTER_SECS};

pub(crate) async fn accept(
    state: &Arc<AppState>,
    request: ExportTraceServiceRequest,
) -> Result<Option<ExportTracePartialSuccess>, ApiError> {
    let converted = otlp::convert(request, &state.settings.limits);
    let metrics = &state.metrics;
    let num_spans = converted.spans.len() as u64;
    metrics.spans_received.fetch_add(num_spans + converted.rejected_spans, Ordering::Relaxed);
    metrics.spans_rejected.fetch_add(converted.rejected_spans, Ordering::Relaxed);
    metrics.attribute_values_truncated.fetch_add(converted.truncated_values, Ordering::Relaxed);
    let partial_success = converted.partial_success();
    if num_spans == 0 {
        return Ok(partial_success);
    }

    let Ok(permit) = Arc::clone(&state.write_slots).try_acquire_owned() else {
        metrics.spans_throttled.fetch_add(num_spans, Ordering::Relaxed);
        return Err(ApiError::new(
            ErrorCode::ResourceExhausted,
            format!("too many exports in flight; retry after {RETRY_AFTER_SECS}s"),
        ));
    };
    let store = Arc::clone(&state.store);
    let spans = converted.spans;
    let result = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        store.append(spans)
    })
    .await
    .map_err(ApiError::internal)?;
    match result {
        Ok(()) => {
            metrics.spans_accepted.fetch_add(num_spans, Ordering::Relaxed);
            Ok(partial_success)
        }
        Err(e) => {
            if matches!(e, store::StoreError::Busy(_)) {
                metrics.spans_throttled.fetch_add(num_spans, Ordering::Relaxed);
            }
            Err(e.into())
        }
    }
}
