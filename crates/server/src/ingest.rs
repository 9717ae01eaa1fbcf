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

/// A token restricted to some services or environments may send only their spans; the
/// others are rejected through `partial_success`, like any invalid span.
fn restrict(converted: &mut otlp::Converted, visibility: &auth::Visibility) {
    if visibility.is_everything() {
        return;
    }
    let before = converted.spans.len();
    let mut first_refused = None;
    converted.spans.retain(|span| {
        let identity = span.identity();
        let allowed = visibility.allows(&identity.service, identity.environment.as_deref());
        if !allowed && first_refused.is_none() {
            first_refused = Some(format!(
                "span of service `{}` (environment `{}`): the token may send spans only for {}",
                identity.service,
                identity.environment.as_deref().unwrap_or("unset"),
                describe(visibility)
            ));
        }
        allowed
    });
    converted.rejected_spans += (before - converted.spans.len()) as u64;
    if converted.first_rejection.is_none() {
        converted.first_rejection = first_refused;
    }
}

fn describe(visibility: &auth::Visibility) -> String {
    let list = |items: &Option<std::collections::BTreeSet<String>>, what: &str| {
        items
            .as_ref()
            .map(|s| format!("{what} {}", s.iter().cloned().collect::<Vec<_>>().join(", ")))
    };
    [list(&visibility.services, "services"), list(&visibility.environments, "environments")]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" in ")
}

pub(crate) async fn accept(
    state: &Arc<AppState>,
    request: ExportTraceServiceRequest,
    visibility: &auth::Visibility,
) -> Result<Option<ExportTracePartialSuccess>, ApiError> {
    let mut converted = otlp::convert(request, &state.settings.limits);
    restrict(&mut converted, visibility);
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
