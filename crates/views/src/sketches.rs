//! Per-minute latency and error numbers for the pages (the home page's "now", a service's
//! series, a finding's before/after distributions), read from the sketches, never from raw
//! spans, and only for the series the caller may see; and the windows around a deploy that
//! detection compares, read one way for detection and for the page that charts a finding.

use std::collections::BTreeMap;

use analysis::WindowStats;
use analysis::detect::{Guard, OperationWindows, VersionSplit};
use model::Deploy;
use store::{SketchQuery, SketchRow, StoreError};

use crate::{Context, Visibility};

const NANOS_PER_MINUTE: u64 = 60_000_000_000;
const MINUTES_PER_DAY: i64 = 24 * 60;

/// The sketches around a deploy as detection's per-operation windows at look `look`: the
/// `before_minutes` before its start, each minute after it split by version, and (with
/// `guards`) the same clock window a day and a week earlier. Only operations the deployed
/// version served.
pub fn deploy_windows(
    ctx: &Context,
    deploy: &Deploy,
    look: u32,
    before_minutes: u32,
    guards: bool,
) -> Result<Vec<OperationWindows>, StoreError> {
    let start_minute = (deploy.started_at_unix_nanos / NANOS_PER_MINUTE) as i64;
    let end_minute = start_minute + i64::from(look);
    let environment = Some(deploy.environment.clone());
    let read = |from: i64, to: i64| {
        ctx.store.sketches(&SketchQuery {
            service: deploy.service.clone(),
            environment: environment.clone(),
            from_unix_minute: from,
            to_unix_minute: to,
        })
    };
    let mut windows: BTreeMap<(String, String), OperationWindows> = BTreeMap::new();
    for row in read(start_minute - i64::from(before_minutes), end_minute)? {
        let key = (row.series.operation.clone(), row.series.span_kind.clone());
        let op = windows.entry(key).or_insert_with(|| OperationWindows {
            operation: row.series.operation.clone(),
            span_kind: row.series.span_kind.clone(),
            after: vec![VersionSplit::default(); look as usize],
            before: WindowStats::default(),
            guards: vec![
                Guard { label: "a day earlier".into(), stats: WindowStats::default() },
                Guard { label: "a week earlier".into(), stats: WindowStats::default() },
            ],
        });
        if row.unix_minute < start_minute {
            op.before.merge(&row.stats);
        } else if let Some(minute) = op.after.get_mut((row.unix_minute - start_minute) as usize) {
            if row.series.version == deploy.version {
                minute.deployed.merge(&row.stats);
            } else {
                minute.others.merge(&row.stats);
            }
        }
    }
    // Guards only matter for operations the deploy served; add them to known ones.
    for (index, days) in [(0, 1), (1, 7)].into_iter().filter(|_| guards) {
        let shift = days * MINUTES_PER_DAY;
        for row in read(start_minute - shift, end_minute - shift)? {
            if let Some(op) =
                windows.get_mut(&(row.series.operation.clone(), row.series.span_kind.clone()))
            {
                op.guards[index].stats.merge(&row.stats);
            }
        }
    }
    Ok(windows.into_values().filter(|op| op.after.iter().any(|m| m.deployed.spans > 0)).collect())
}

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
