//! The one intake every OTLP transport goes through: a slot, then memory, then decode,
//! convert, append durably.
//!
//! Hostile input costs bounded memory. In order, after the caller is authenticated:
//! [`Intake::begin`] takes one of `max_exports_in_flight` slots (none free:
//! `RESOURCE_EXHAUSTED`, so exporters back off) *before* the body is read;
//! [`Intake::read_body`] reads it frame by frame, reserving each frame's bytes from the
//! server-wide ingest memory budget (`ingest.max_memory`) as it arrives; decompression
//! reserves its allowance before inflating; [`Intake::decode`] measures what the decoded
//! message will take (`otlp::measure_protobuf`, without allocating), refuses a request over
//! the per-request caps, and reserves twice that (the decoded message, then the converted
//! spans) before decoding. Whatever does not fit the budget is refused with
//! `RESOURCE_EXHAUSTED` and a retry delay; memory held by exports in flight is at most the
//! budget. [`accept`] converts, appends and releases all of it once the spans are durable.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::{Body, Bytes};
use http_body_util::BodyExt;
use otlp::{ExportTracePartialSuccess, ExportTraceServiceRequest};
use tokio::sync::OwnedSemaphorePermit;

use crate::AppState;
use edge::error::{ApiError, Encoding, ErrorCode, RETRY_AFTER_SECS};

/// An export being taken in: its slot and the memory reserved for it so far.
pub(crate) struct Intake {
    state: Arc<AppState>,
    /// An export's slot among `max_exports_in_flight` (`None` for a webhook, which only
    /// reserves memory).
    _slot: Option<OwnedSemaphorePermit>,
    reserved: Option<OwnedSemaphorePermit>,
}

impl Intake {
    /// Takes a slot among the exports in flight, before anything is read.
    pub(crate) fn begin(state: &Arc<AppState>) -> Result<Intake, ApiError> {
        let slot = Arc::clone(&state.write_slots).try_acquire_owned().map_err(|_| {
            state.metrics.exports_throttled.fetch_add(1, Ordering::Relaxed);
            ApiError::new(
                ErrorCode::ResourceExhausted,
                format!("too many exports in flight; retry after {RETRY_AFTER_SECS}s"),
            )
        })?;
        Ok(Intake { state: Arc::clone(state), _slot: Some(slot), reserved: None })
    }

    /// Memory reservations without an export slot: a webhook's body counts against the same
    /// budget as exports.
    pub(crate) fn webhook(state: &Arc<AppState>) -> Intake {
        Intake { state: Arc::clone(state), _slot: None, reserved: None }
    }

    /// Reserves `bytes` of the ingest memory budget for this export.
    fn reserve(&mut self, bytes: usize, what: &str) -> Result<(), ApiError> {
        if bytes == 0 {
            return Ok(());
        }
        let refused = || {
            self.state.metrics.exports_throttled.fetch_add(1, Ordering::Relaxed);
            ApiError::new(
                ErrorCode::ResourceExhausted,
                format!(
                    "spanblame is decoding as much as its ingest memory budget (`ingest.max_memory`, {} bytes) allows; {what} did not fit; retry after {RETRY_AFTER_SECS}s",
                    self.state.settings.max_ingest_memory_bytes
                ),
            )
        };
        let permits = u32::try_from(bytes).map_err(|_| refused())?;
        let permit = Arc::clone(&self.state.ingest_memory)
            .try_acquire_many_owned(permits)
            .map_err(|_| refused())?;
        match &mut self.reserved {
            Some(reserved) => reserved.merge(permit),
            None => self.reserved = Some(permit),
        }
        Ok(())
    }

    /// Reads an export's body up to `ingest.max_body`, reserving each frame's bytes as it
    /// arrives.
    pub(crate) async fn read_body(&mut self, body: Body) -> Result<Bytes, ApiError> {
        let max_bytes = self.state.settings.limits.max_body_bytes;
        self.read_body_within(body, max_bytes, "`ingest.max_body`").await
    }

    /// Reads a body up to `max_bytes` (the limit named `limit` in errors), reserving each
    /// frame's bytes as it arrives.
    pub(crate) async fn read_body_within(
        &mut self,
        mut body: Body,
        max_bytes: usize,
        limit: &str,
    ) -> Result<Bytes, ApiError> {
        let too_large = || {
            ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("request body is larger than the {max_bytes}-byte limit ({limit})"),
            )
        };
        // With a `Content-Length` the buffer is sized once; without one it grows by doubling,
        // so each frame reserves twice its bytes.
        let exact = axum::body::HttpBody::size_hint(&body).exact();
        let growth = if exact.is_some() { 1 } else { 2 };
        let capacity = exact.map_or(0, |n| usize::try_from(n).unwrap_or(usize::MAX));
        if capacity > max_bytes {
            return Err(too_large());
        }
        self.reserve(capacity, "the request body")?;
        let mut buffer = Vec::with_capacity(capacity);
        let timeout = self.state.settings.connections.body_read_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let next = tokio::time::timeout_at(deadline, body.frame()).await.map_err(|_| {
                ApiError::invalid(format!(
                    "the request body did not arrive within {} s (`server.body_read_timeout`)",
                    timeout.as_secs()
                ))
            })?;
            let Some(frame) = next else { break };
            let frame = frame.map_err(|e| {
                ApiError::invalid(format!("the request body could not be read: {e}"))
            })?;
            let Ok(data) = frame.into_data() else { continue };
            if buffer.len() + data.len() > max_bytes {
                return Err(too_large());
            }
            let beyond_capacity = (buffer.len() + data.len()).saturating_sub(capacity);
            let already = buffer.len().saturating_sub(capacity);
            self.reserve((beyond_capacity - already) * growth, "the request body")?;
            buffer.extend_from_slice(&data);
        }
        Ok(Bytes::from(buffer))
    }

    /// Decompresses a body, reserving the most it may inflate to first.
    pub(crate) fn decompress<'a>(
        &mut self,
        bytes: &'a [u8],
        encoding: otlp::ContentEncoding,
    ) -> Result<std::borrow::Cow<'a, [u8]>, ApiError> {
        let state = Arc::clone(&self.state);
        let limits = &state.settings.limits;
        if encoding != otlp::ContentEncoding::Identity {
            self.reserve(otlp::decompressed_allowance(bytes.len(), limits), "decompressing it")?;
        }
        Ok(otlp::decompress(bytes, encoding, limits)?)
    }

    /// Measures the message, refuses it over the per-request caps, reserves what decoding and
    /// converting it will take, and decodes it.
    pub(crate) fn decode(
        &mut self,
        bytes: &[u8],
        encoding: Encoding,
    ) -> Result<ExportTraceServiceRequest, ApiError> {
        let shape = match encoding {
            Encoding::Protobuf => otlp::measure_protobuf(bytes)?,
            Encoding::Json => otlp::measure_json(bytes)?,
        };
        shape.check(&self.state.settings.limits)?;
        let decoded_bytes = usize::try_from(shape.decoded_bytes).unwrap_or(usize::MAX);
        self.reserve(decoded_bytes.saturating_mul(2), "decoding it")?;
        Ok(match encoding {
            Encoding::Protobuf => otlp::decode_protobuf(bytes)?,
            Encoding::Json => otlp::decode_json(bytes)?,
        })
    }

    /// Zipkin v2 JSON as [`decode`](Self::decode) takes OTLP: measured, capped, reserved,
    /// then read as an OTLP export.
    pub(crate) fn decode_zipkin(
        &mut self,
        bytes: &[u8],
    ) -> Result<ExportTraceServiceRequest, ApiError> {
        let shape = otlp::measure_zipkin(bytes)?;
        shape.check(&self.state.settings.limits)?;
        let decoded_bytes = usize::try_from(shape.decoded_bytes).unwrap_or(usize::MAX);
        self.reserve(decoded_bytes, "decoding it")?;
        Ok(otlp::decode_zipkin(bytes)?)
    }
}

/// A token restricted to some services or environments may send only their spans; the
/// others are rejected through `partial_success`, like any invalid span.
fn restrict(converted: &mut otlp::Converted, visibility: &auth::Visibility) {
    if visibility.is_everything() {
        return;
    }
    let allowed = |span: &model::Span| {
        let identity = span.identity();
        visibility.allows(&identity.service, identity.environment.as_deref())
    };
    reject(
        converted,
        |span| !allowed(span),
        |span| {
            let identity = span.identity();
            format!(
                "span of service `{}` (environment `{}`): the token may send spans only for {}",
                identity.service,
                identity.environment.as_deref().unwrap_or("unset"),
                describe(visibility)
            )
        },
    );
}

/// Spans that end more than `max_future_nanos` after `now` are rejected through
/// `partial_success`: a clock far off (or `end = u64::MAX`) would otherwise keep its whole
/// block past retention and skew every time window.
fn bound_times(converted: &mut otlp::Converted, now_unix_nanos: u64, max_future_nanos: u64) {
    let latest = now_unix_nanos.saturating_add(max_future_nanos);
    reject(
        converted,
        |span| span.end_time_unix_nanos > latest || span.start_time_unix_nanos > latest,
        |span| {
            format!(
                "span `{}` of trace {} ends at {} ns since 1970, more than `ingest.max_future` ({} s) after this server's clock: fix the sender's clock or its timestamps",
                span.name,
                span.trace_id.to_hex(),
                span.end_time_unix_nanos,
                max_future_nanos / 1_000_000_000
            )
        },
    );
}

/// Removes the spans `refused` picks, counting them for `partial_success`, with the first
/// one's reason (`why`) unless an earlier rejection already gave one.
fn reject(
    converted: &mut otlp::Converted,
    refused: impl Fn(&model::Span) -> bool,
    why: impl Fn(&model::Span) -> String,
) {
    let before = converted.spans.len();
    let mut first_refused = None;
    converted.spans.retain(|span| {
        let refused = refused(span);
        if refused && first_refused.is_none() {
            first_refused = Some(why(span));
        }
        !refused
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

/// Converts and appends an export's spans; its slot and memory are released once they are
/// durable (or refused).
pub(crate) async fn accept(
    intake: Intake,
    request: ExportTraceServiceRequest,
    visibility: &auth::Visibility,
) -> Result<Option<ExportTracePartialSuccess>, ApiError> {
    let state = Arc::clone(&intake.state);
    let mut converted = otlp::convert(request, &state.settings.limits);
    restrict(&mut converted, visibility);
    bound_times(
        &mut converted,
        state.ctx().clock.now_unix_nanos(),
        state.settings.max_span_future_nanos,
    );
    let metrics = &state.metrics;
    let num_spans = converted.spans.len() as u64;
    metrics.spans_received.fetch_add(num_spans + converted.rejected_spans, Ordering::Relaxed);
    metrics.spans_rejected.fetch_add(converted.rejected_spans, Ordering::Relaxed);
    metrics.attribute_values_truncated.fetch_add(converted.truncated_values, Ordering::Relaxed);
    let partial_success = converted.partial_success();
    if num_spans == 0 {
        return Ok(partial_success);
    }

    let store = Arc::clone(&state.ctx().store);
    let spans = converted.spans;
    // What span metrics need, taken before the store takes the spans; counted once durable.
    let observed: Option<Vec<analysis::span_metrics::Observation>> = state
        .ctx()
        .span_metrics
        .as_ref()
        .map(|_| spans.iter().map(analysis::span_metrics::Observation::of).collect());
    let result = tokio::task::spawn_blocking(move || {
        let result = store.append(spans);
        drop(intake);
        result
    })
    .await
    .map_err(ApiError::internal)?;
    match result {
        Ok(()) => {
            metrics.spans_accepted.fetch_add(num_spans, Ordering::Relaxed);
            if let (Some(observed), Some(span_metrics)) = (observed, &state.ctx().span_metrics) {
                let now = state.ctx().clock.now_unix_nanos();
                span_metrics.lock().unwrap_or_else(|p| p.into_inner()).observe(&observed, now);
            }
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
