//! `GET /api/v1/dora`: the four DORA metrics for the services a caller may see (one service,
//! a team's, or all), from the deploys, their commit ranges in the mirrors and the regressions
//! attributed to them; computed by `analysis::dora`, with the bands and where they come from.

use std::collections::BTreeSet;

use analysis::dora::{Band, DeployFacts, Dora, Failure, dora};
use model::Deploy;
use store::{FindingFilter, FindingStatus, StoreError};

use crate::{Context, Invalid, Visibility, parse_duration_nanos, ranges, rfc3339};
use shapes::{BandJ, BandsJ, DoraJ, FailureRateJ, FrequencyJ, LeadTimeJ, RestoreJ, WindowJ};

const DAY_NANOS: u64 = 24 * 3600 * 1_000_000_000;
const DEFAULT_WINDOW: &str = "30d";
const MAX_WINDOW_NANOS: u64 = 365 * DAY_NANOS;

/// What to compute DORA over.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DoraQuery {
    pub service: Option<String>,
    pub team: Option<String>,
    pub environment: Option<String>,
    /// As written (`30d`), for links and forms.
    pub window: String,
    pub window_nanos: u64,
}

pub fn parse_query(params: Vec<(String, String)>) -> Result<DoraQuery, Invalid> {
    let mut query = DoraQuery {
        window: DEFAULT_WINDOW.into(),
        window_nanos: 30 * DAY_NANOS,
        ..DoraQuery::default()
    };
    let given = |value: String| Some(value).filter(|v| !v.trim().is_empty());
    for (key, value) in params {
        match key.as_str() {
            "service" => query.service = given(value),
            "team" => query.team = given(value),
            "environment" => query.environment = given(value),
            "window" => {
                let nanos = parse_duration_nanos(&value)
                    .ok()
                    .filter(|n| (DAY_NANOS..=MAX_WINDOW_NANOS).contains(n))
                    .ok_or_else(|| {
                        Invalid::new(format!(
                            "`window` = `{value}` is not a duration from 1d to 365d; write it like `30d` or `12w`"
                        ))
                    })?;
                query.window = value.trim().to_owned();
                query.window_nanos = nanos;
            }
            other => {
                return Err(Invalid::new(format!(
                    "unknown parameter `{other}`; use service, team, environment or window"
                )));
            }
        }
    }
    Ok(query)
}

/// The services the query covers, among those the caller may see.
fn services_in_scope(
    ctx: &Context,
    visibility: &Visibility,
    query: &DoraQuery,
) -> Result<BTreeSet<String>, StoreError> {
    let mut services: BTreeSet<String> = ctx
        .store
        .services()?
        .into_iter()
        .map(|s| s.name)
        .chain(ctx.changes.services.iter().map(|s| s.service.clone()))
        .filter(|s| visibility.allows_service(s))
        .collect();
    if let Some(team) = &query.team {
        services.retain(|s| ctx.changes.ownership(s).and_then(|o| o.team.as_deref()) == Some(team));
    }
    if let Some(service) = &query.service {
        services.retain(|s| s == service);
    }
    Ok(services)
}

/// The metrics, for the API and the page.
pub fn dora_view(
    ctx: &Context,
    visibility: &Visibility,
    query: &DoraQuery,
) -> Result<DoraJ, StoreError> {
    let to = ctx.clock.now_unix_nanos();
    let from = to.saturating_sub(query.window_nanos);
    let services = services_in_scope(ctx, visibility, query)?;
    let environment = query.environment.as_deref();
    let deploys: Vec<Deploy> = ctx
        .store
        .deploys(None, environment, usize::MAX)?
        .into_iter()
        .filter(|d| services.contains(&d.service))
        .filter(|d| {
            visibility.allows(&d.service, Some(d.environment.as_str()).filter(|e| !e.is_empty()))
        })
        .filter(|d| (from..to).contains(&d.started_at_unix_nanos))
        .collect();
    let mut facts = Vec::with_capacity(deploys.len());
    let mut without_range = 0;
    for deploy in &deploys {
        let change_times = match ranges::range_commits(ctx, deploy)? {
            Ok(range) if !range.is_rollback => {
                range.commits.iter().filter_map(|c| c.time_unix_secs).collect()
            }
            Ok(_) => Vec::new(), // a rollback ships no new change
            Err(_) => {
                without_range += 1;
                Vec::new()
            }
        };
        facts.push(DeployFacts {
            started_unix_nanos: deploy.started_at_unix_nanos,
            change_times_unix_secs: change_times,
            failure: failure_of(ctx, deploy)?,
        });
    }
    let metrics = dora(&facts, from, to);
    Ok(render(&metrics, query, &services, from, to, without_range))
}

/// A deploy's attributed regression: detected when its first regressed finding was first
/// seen, restored when the last one was resolved (by the deploy that restored the metric, at
/// that deploy's start; by a person, when they resolved it).
fn failure_of(ctx: &Context, deploy: &Deploy) -> Result<Option<Failure>, StoreError> {
    let regressed = ctx.store.findings(&FindingFilter {
        deploy_id: Some(deploy.id),
        verdict: Some("regressed".into()),
        severity: ctx.incident_severity(),
        limit: 10_000,
        ..FindingFilter::default()
    })?;
    let Some(detected) = regressed.iter().map(|f| f.first_seen_unix_nanos).min() else {
        return Ok(None);
    };
    let mut restored = Some(detected);
    for finding in &regressed {
        let at = match (finding.status, finding.status_changed_unix_nanos) {
            (FindingStatus::Resolved, Some(at)) => {
                match resolving_deploy(finding.status_by.as_deref()) {
                    Some(id) => ctx.store.deploy(id)?.map_or(at, |d| d.started_at_unix_nanos),
                    None => at,
                }
            }
            _ => {
                restored = None;
                break;
            }
        };
        restored = restored.map(|r| r.max(at));
    }
    Ok(Some(Failure { detected_unix_nanos: detected, restored_unix_nanos: restored }))
}

/// The deploy id in a status set by auto-resolution: `deploy 12 (1.2.1)`.
fn resolving_deploy(status_by: Option<&str>) -> Option<u64> {
    status_by?.strip_prefix("deploy ")?.split(' ').next()?.parse().ok()
}

fn band(band: Option<Band>) -> Option<String> {
    band.map(|b| b.as_str().into())
}

fn hours(secs: Option<f64>) -> Option<f64> {
    secs.map(|s| (s / 360.0).round() / 10.0)
}

fn render(
    m: &Dora,
    query: &DoraQuery,
    services: &BTreeSet<String>,
    from: u64,
    to: u64,
    without_range: usize,
) -> DoraJ {
    DoraJ {
        window: WindowJ {
            from: rfc3339(from),
            to: rfc3339(to),
            days: (m.window_days * 10.0).round() / 10.0,
            text: query.window.clone(),
        },
        service: query.service.clone(),
        team: query.team.clone(),
        environment: query.environment.clone(),
        services: services.iter().cloned().collect(),
        deployment_frequency: FrequencyJ {
            deployments: m.deployments,
            per_day: (m.deploys_per_day * 100.0).round() / 100.0,
            median_deploy_days_per_week: m.median_deploy_days_per_week,
            band: m.frequency_band.as_str().into(),
        },
        lead_time_for_changes: LeadTimeJ {
            median_hours: hours(m.lead_time_median_secs),
            changes: m.lead_time_changes,
            deploys_without_range: without_range,
            band: band(m.lead_time_band),
        },
        change_failure_rate: FailureRateJ {
            rate: m.change_failure_rate.map(|r| (r * 1000.0).round() / 1000.0),
            failed_deployments: m.failed_deployments,
            deployments: m.deployments,
            band: band(m.change_failure_band),
        },
        time_to_restore: RestoreJ {
            median_hours: hours(m.restore_median_secs),
            restored: m.restored,
            unrestored: m.unrestored,
            band: band(m.restore_band),
        },
        bands: bands(),
    }
}

/// What each band means, and where the thresholds come from.
fn bands() -> BandsJ {
    BandsJ {
        deployment_frequency: BandJ {
            source: "DORA 2024, banded as Four Keys does",
            elite: "on demand: deploys on 3 or more days in the median week",
            high: "daily to weekly: the median week has a deploy",
            medium: "weekly to monthly: the median month has a deploy",
            low: "less than monthly",
        },
        lead_time_for_changes: BandJ {
            source: "DORA 2024; the median of commit → deploy over every change, as Four Keys",
            elite: "under a day",
            high: "a day to a week",
            medium: "a week to a month",
            low: "a month or more",
        },
        change_failure_rate: BandJ {
            source: "Four Keys' buckets (DORA 2019), since DORA 2024's clusters are not monotonic",
            elite: "0–15 %",
            high: "(shares elite's bucket)",
            medium: "16–45 %",
            low: "46 % or more",
        },
        time_to_restore: BandJ {
            source: "DORA 2024 (failed deployment recovery time), from the finding to the deploy or person that resolved it",
            elite: "under an hour",
            high: "under a day",
            medium: "under a week",
            low: "a week or more",
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_and_resolutions_are_read_strictly() {
        let query =
            parse_query(vec![("window".into(), "12w".into()), ("team".into(), "payments".into())])
                .unwrap();
        assert_eq!((query.window_nanos, query.team.as_deref()), (84 * DAY_NANOS, Some("payments")));
        for bad in ["0d", "2y", "400d", "soon"] {
            let err = parse_query(vec![("window".into(), bad.into())]).unwrap_err();
            assert!(err.message.contains("from 1d to 365d"), "{bad}: {}", err.message);
        }
        assert!(
            parse_query(vec![("services".into(), "x".into())])
                .unwrap_err()
                .message
                .contains("unknown parameter")
        );
        assert_eq!(resolving_deploy(Some("deploy 12 (1.2.1)")), Some(12));
        assert_eq!(resolving_deploy(Some("alice")), None);
    }
}
