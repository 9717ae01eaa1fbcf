//! A service: its operations, versions and deploys, and its latency and error series.

use std::collections::BTreeMap;

use analysis::compare::WindowStats;
use askama::Template;
use shapes::query_escape;
use shapes::{DeployJ, FindingJ, service_href, short_time, unix_secs};
use views::{Context, FindingFilter, SketchRow};

use super::numbers::{Numbers, entry_points, merged};
use crate::chart::{self, Marker, Series};
use crate::{Layout, Page, PageError, Viewer, render};

pub(crate) struct OperationRow {
    pub(crate) name: String,
    pub(crate) kind: String,
    pub(crate) numbers: Numbers,
    pub(crate) search: String,
}

pub(crate) struct VersionRow {
    pub(crate) environment: String,
    pub(crate) version: String,
    pub(crate) first_seen: String,
    pub(crate) last_seen: String,
    pub(crate) spans: u64,
}

#[derive(Template)]
#[template(path = "service.html")]
struct ServicePage {
    layout: Layout,
    name: String,
    team: Option<String>,
    environment: String,
    environments: Vec<String>,
    operation: String,
    hours: u64,
    latency_chart: String,
    error_chart: String,
    window: Numbers,
    operations: Vec<OperationRow>,
    versions: Vec<VersionRow>,
    deploys: Vec<DeployJ>,
    findings: Vec<FindingJ>,
}

impl ServicePage {
    fn is_hours(&self, hours: &u64) -> bool {
        self.hours == *hours
    }

    fn base_href(&self) -> String {
        service_href(&self.name)
    }

    /// This page with `key` set to `value` (or, with an empty key, without an operation).
    fn self_link(&self, key: &str, value: &str) -> String {
        let mut query = vec![format!("hours={}", self.hours)];
        if !self.environment.is_empty() {
            query.push(format!("environment={}", query_escape(&self.environment)));
        }
        if key == "operation" {
            query.push(format!("operation={}", query_escape(value)));
        }
        format!("{}?{}", self.base_href(), query.join("&"))
    }
}

const HOURS: [u64; 4] = [1, 3, 6, 24];

pub fn service_page(
    ctx: &Context,
    viewer: &Viewer,
    name: String,
    params: Vec<(String, String)>,
) -> Result<Page, PageError> {
    let (mut environment, mut operation, mut hours) = (None, None, 3u64);
    for (key, value) in params.into_iter().filter(|(_, v)| !v.is_empty()) {
        match key.as_str() {
            "environment" => environment = Some(value),
            "operation" => operation = Some(value),
            "hours" => {
                hours = value.parse().ok().filter(|h| HOURS.contains(h)).ok_or_else(|| {
                    PageError::bad_request(format!("`hours` = `{value}` is not one of 1, 3, 6, 24"))
                })?
            }
            other => {
                return Err(PageError::bad_request(format!(
                    "unknown parameter `{other}`; use environment, operation or hours"
                )));
            }
        }
    }
    let page = {
        let Some(service) =
            views::traces::services(ctx, &viewer.visibility)?.into_iter().find(|s| s.name == name)
        else {
            return Err(PageError::not_found(format!(
                "no spans of service `{name}` are stored (or you may not see them)"
            )));
        };
        let minutes = (hours * 60) as i64;
        let rows = views::sketches::recent(
            ctx,
            &viewer.visibility,
            &name,
            environment.as_deref(),
            minutes,
        )?;
        let visible: Vec<&SketchRow> = rows.iter().collect();
        let charted: Vec<&SketchRow> = match &operation {
            Some(op) => visible.iter().copied().filter(|r| &r.series.operation == op).collect(),
            None => entry_points(&visible),
        };
        // Buckets of `hours` minutes: 60 points whatever the window.
        let bucket = hours as i64;
        let mut by_bucket: BTreeMap<i64, WindowStats> = BTreeMap::new();
        for row in &charted {
            by_bucket
                .entry(row.unix_minute.div_euclid(bucket) * bucket)
                .or_default()
                .merge(&row.stats);
        }
        let point = |minute: &i64| (*minute as f64 + bucket as f64 / 2.0) * 60.0;
        let quantile = |q: f64| -> Vec<(f64, f64)> {
            by_bucket
                .iter()
                .filter_map(|(m, s)| s.latency.quantile(q).map(|v| (point(m), v / 1e6)))
                .collect()
        };
        let deploys = views::deploys::deploys(
            ctx,
            &viewer.visibility,
            Some(&name),
            environment.as_deref(),
            200,
        )?;
        let now_secs = ctx.clock.now_unix_nanos() as f64 / 1e9;
        let from_secs = now_secs - minutes as f64 * 60.0;
        let markers: Vec<Marker> = deploys
            .iter()
            .filter_map(|d| {
                let x = unix_secs(&d.started_at)?;
                (x >= from_secs).then(|| Marker {
                    x,
                    label: format!(
                        "deploy of {} in {} at {}",
                        d.version,
                        d.environment(),
                        d.when()
                    ),
                    href: format!("/deploys/{}", d.id),
                    class: if d.is_rollback { "rollback" } else { "deploy" },
                })
            })
            .collect();
        let subject = operation.clone().unwrap_or_else(|| "entry points".into());
        let latency_chart = chart::time_chart(
            &format!("{name} {subject}: latency"),
            " ms",
            &[
                Series { name: "p50".into(), class: "p50", points: quantile(0.5) },
                Series { name: "p95".into(), class: "p95", points: quantile(0.95) },
                Series { name: "p99".into(), class: "p99", points: quantile(0.99) },
            ],
            &markers,
        );
        let error_chart = chart::time_chart(
            &format!("{name} {subject}: error rate"),
            "%",
            &[Series {
                name: "errors".into(),
                class: "errors",
                points: by_bucket
                    .iter()
                    .filter(|(_, s)| s.spans > 0)
                    .map(|(m, s)| (point(m), s.errors as f64 / s.spans as f64 * 100.0))
                    .collect(),
            }],
            &markers,
        );
        let mut per_operation: BTreeMap<(String, String), WindowStats> = BTreeMap::new();
        for row in &visible {
            per_operation
                .entry((row.series.operation.clone(), row.series.span_kind.clone()))
                .or_default()
                .merge(&row.stats);
        }
        let mut operations: Vec<OperationRow> = per_operation
            .iter()
            .map(|((op, kind), stats)| OperationRow {
                name: op.clone(),
                kind: kind.clone(),
                numbers: Numbers::of(stats),
                search: format!(
                    "/traces?service={}&operation={}{}",
                    query_escape(&name),
                    query_escape(op),
                    environment
                        .as_deref()
                        .map(|e| format!("&environment={}", query_escape(e)))
                        .unwrap_or_default()
                ),
            })
            .collect();
        operations.sort_by_key(|o| std::cmp::Reverse(o.numbers.spans));
        let versions = service
            .versions
            .iter()
            .map(|v| VersionRow {
                environment: v.environment.clone().unwrap_or_else(|| "(none)".into()),
                version: v.version.clone().unwrap_or_default(),
                first_seen: short_time(&v.first_seen),
                last_seen: short_time(&v.last_seen),
                spans: v.span_count,
            })
            .collect();
        let findings: Vec<FindingJ> = views::findings::list(
            ctx,
            &viewer.visibility,
            FindingFilter {
                service: Some(name.clone()),
                environment: environment.clone(),
                limit: 200,
                ..FindingFilter::default()
            },
        )?
        .into_iter()
        .filter(FindingJ::moved)
        .take(20)
        .collect();
        ServicePage {
            layout: Layout::new(viewer, "home", format!("Service {name}")),
            team: ctx.changes.ownership(&name).and_then(|o| o.team.clone()),
            environments: service.environments,
            environment: environment.unwrap_or_default(),
            operation: operation.unwrap_or_default(),
            window: Numbers::of(&merged(charted.iter().copied())),
            hours,
            latency_chart,
            error_chart,
            operations,
            versions,
            deploys: deploys.into_iter().take(20).collect(),
            findings,
            name,
        }
    };
    render(&page)
}
