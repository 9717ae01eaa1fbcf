//! Per-minute latency and error numbers for the pages (the home page's "now", a service's
//! series, a finding's before/after distributions), read from the sketches, never from raw
//! spans, and only for the series the caller may see.

use store::{SketchQuery, SketchRow, StoreError};

use crate::{Context, Visibility};

const NANOS_PER_MINUTE: u64 = 60_000_000_000;

/// The rows of `query` the caller may see.
pub fn rows(
    ctx: &Context,
    visibility: &Visibility,
    query: &SketchQuery,
) -> Result<Vec<SketchRow>, StoreError> {
    let mut rows = ctx.store.sketches(query)?;
    rows.retain(|r| {
        let environment = Some(r.series.environment.as_str()).filter(|e| !e.is_empty());
        visibility.allows(&r.series.service, environment)
    });
    Ok(rows)
}

/// The last `minutes` of one service (all environments when none is given) the caller may see.
pub fn recent(
    ctx: &Context,
    visibility: &Visibility,
    service: &str,
    environment: Option<&str>,
    minutes: i64,
) -> Result<Vec<SketchRow>, StoreError> {
    let now_minute = (ctx.clock.now_unix_nanos() / NANOS_PER_MINUTE) as i64;
    rows(
        ctx,
        visibility,
        &SketchQuery {
            service: service.to_owned(),
            environment: environment.map(str::to_owned),
            from_unix_minute: now_minute - minutes,
            to_unix_minute: now_minute + 1,
        },
    )
}
