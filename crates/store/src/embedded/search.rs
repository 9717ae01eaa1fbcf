//! Searching sealed blocks: which row groups a query can skip by their footers and blooms,
//! the rest read on a few threads, and the newest traces kept in bounded memory.

use std::collections::HashMap;

use model::TraceId;

use crate::block::{BlockMeta, Parts};
use crate::codec::{CorruptBatch, StoredSpan};
use crate::{SpanQuery, StoreError};

/// Row groups of one block read at once by a search.
fn search_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).min(4)
}

/// Offers the trace ids of one block's matching spans, skipping the row groups its footer
/// and blooms rule out, and reading the rest on a few threads.
pub(super) fn search_block(
    block: &BlockMeta,
    query: &SpanQuery,
    top: &mut TopTraces,
) -> Result<(), StoreError> {
    let probe_blooms = !query.attributes.is_empty() || query.operation.is_some();
    let (min_duration, max_duration) =
        (query.min_duration_nanos.unwrap_or(0), query.max_duration_nanos.unwrap_or(u64::MAX));
    let mut candidates = Vec::new();
    for (idx, group) in block.row_groups.iter().enumerate() {
        if !query.overlaps(group.min_start_unix_nanos, group.max_end_unix_nanos)
            || top.is_beyond(group.max_end_unix_nanos)
            || query.service.as_deref().is_some_and(|s| !block.group_may_hold_service(idx, s))
            || query
                .allowed_services
                .as_ref()
                .is_some_and(|a| !a.iter().any(|s| block.group_may_hold_service(idx, s)))
            || !block.group_may_hold_duration(idx, min_duration, max_duration)
            || query.status.is_some_and(|code| !block.group_may_hold_status(idx, code))
        {
            continue;
        }
        if probe_blooms && let Some(bloom) = block.group_bloom(idx)? {
            let attributes = query.attributes.iter().all(|(k, v)| bloom.may_hold_attribute(k, v));
            let operation = query.operation.as_deref().is_none_or(|op| {
                bloom.may_hold_name(op) || bloom.may_hold_attribute("http.route", op)
            });
            if !attributes || !operation {
                continue;
            }
        }
        candidates.push(idx);
    }
    let threads = search_threads().min(candidates.len());
    if threads <= 1 {
        for idx in candidates {
            scan_group(block, idx, query, top)?;
        }
        return Ok(());
    }
    let floor = top.floor;
    let found: Vec<Result<TopTraces, StoreError>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let mine: Vec<usize> =
                    candidates.iter().copied().skip(t).step_by(threads).collect();
                scope.spawn(move || {
                    let mut local = TopTraces { floor, ..TopTraces::new(query.limit) };
                    for idx in mine {
                        scan_group(block, idx, query, &mut local)?;
                    }
                    Ok(local)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            .collect()
    });
    for local in found {
        for (trace_id, start) in local?.newest {
            top.offer(trace_id, start);
        }
    }
    Ok(())
}

/// Offers the trace ids of one row group's matching spans. Spans are built for nothing: the
/// scalars are checked first, then (when no span of the group sets its own identity) the
/// identity filters once per resource, then the whole filter.
pub(super) fn scan_group(
    block: &BlockMeta,
    idx: usize,
    query: &SpanQuery,
    top: &mut TopTraces,
) -> Result<(), StoreError> {
    let identity_in_spans = block.group_has_identity_in_span_attributes(idx);
    let parts = if query.needs_span_attributes() || (query.reads_identity() && identity_in_spans) {
        Parts::CoreAndAttributes
    } else {
        Parts::Core
    };
    let loaded = block.load_row_group(idx, parts)?;
    let corrupt = corrupt_group(block, idx);
    let mut cursor = loaded.cursor().map_err(&corrupt)?;
    let resource_ok: Option<Vec<bool>> = (!identity_in_spans && query.reads_identity())
        .then(|| cursor.resources().iter().map(|r| query.resource_matches_identity(r)).collect());
    while let Some(raw) = cursor.next_span().map_err(&corrupt)? {
        if !query.matches_scalars(
            raw.start_time_unix_nanos,
            raw.end_time_unix_nanos - raw.start_time_unix_nanos,
            raw.status_code,
        ) || resource_ok.as_ref().is_some_and(|ok| !ok[raw.resource])
        {
            continue;
        }
        if query.matches(&StoredSpan { cursor: &cursor, raw: &raw }) {
            top.offer(raw.trace_id, raw.start_time_unix_nanos);
        }
    }
    Ok(())
}

pub(super) fn corrupt_group(
    block: &BlockMeta,
    idx: usize,
) -> impl Fn(CorruptBatch) -> StoreError + '_ {
    move |e| StoreError::CorruptBlock {
        path: block.path.clone(),
        reason: format!("row group {idx}: {}", e.0),
    }
}

/// The newest `limit` traces by their newest matching span, kept in memory proportional to
/// `limit` however many spans match. Ties are broken by trace id, as results are ordered.
pub(super) struct TopTraces {
    limit: usize,
    newest: HashMap<TraceId, u64>,
    /// The `limit`-th best (start, trace) at the last pruning: nothing below it can enter.
    floor: Option<(u64, TraceId)>,
}

impl TopTraces {
    pub(super) fn new(limit: usize) -> TopTraces {
        TopTraces { limit, newest: HashMap::new(), floor: None }
    }

    pub(super) fn offer(&mut self, trace_id: TraceId, start_unix_nanos: u64) {
        if self.limit == 0 || self.floor.is_some_and(|floor| (start_unix_nanos, trace_id) < floor) {
            return;
        }
        let newest = self.newest.entry(trace_id).or_insert(start_unix_nanos);
        *newest = (*newest).max(start_unix_nanos);
        if self.newest.len() >= 2 * self.limit.max(16) {
            self.prune();
        }
    }

    /// Keeps the best `limit` and raises the floor to the last of them.
    fn prune(&mut self) {
        let mut best = self.ranked();
        best.truncate(self.limit);
        if best.len() == self.limit {
            self.floor = best.last().copied();
        }
        self.newest = best.into_iter().map(|(start, id)| (id, start)).collect();
    }

    fn ranked(&self) -> Vec<(u64, TraceId)> {
        let mut all: Vec<(u64, TraceId)> = self.newest.iter().map(|(id, s)| (*s, *id)).collect();
        all.sort_unstable_by(|a, b| b.cmp(a));
        all
    }

    /// Whether no span that starts at or before `max_end_unix_nanos` can enter the result.
    pub(super) fn is_beyond(&mut self, max_end_unix_nanos: u64) -> bool {
        if self.limit == 0 {
            return true;
        }
        if self.newest.len() >= self.limit {
            self.prune();
        }
        self.floor.is_some_and(|(start, _)| start > max_end_unix_nanos)
    }

    /// The trace ids, newest first.
    pub(super) fn finish(self) -> Vec<TraceId> {
        let mut best = self.ranked();
        best.truncate(self.limit);
        best.into_iter().map(|(_, id)| id).collect()
    }
}
