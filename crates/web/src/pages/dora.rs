//! The DORA page: the four keys with their bands and what each counts.

use askama::Template;
use serde::Deserialize;
use views::dora::DoraQuery;
use views::shapes::{percent_text, read, short_number, short_time};
use views::{Context, query_escape};

use crate::{Layout, Page, PageError, Viewer, render};

#[derive(Template)]
#[template(path = "dora.html")]
struct DoraPage {
    layout: Layout,
    q: DoraQuery,
    scope: String,
    window_text: String,
    metrics: Vec<DoraMetric>,
    bands: Vec<DoraBand>,
    api_href: String,
}

struct DoraMetric {
    key: &'static str,
    title: &'static str,
    value: String,
    band: Option<String>,
    detail: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct DoraBand {
    #[serde(skip)]
    title: &'static str,
    source: String,
    elite: String,
    high: String,
    medium: String,
    low: String,
}

/// Hours as people say them: "45 min", "7.5 h", "3.2 days".
fn duration_text(hours: f64) -> String {
    if hours < 1.0 {
        format!("{} min", (hours * 60.0).round())
    } else if hours < 48.0 {
        format!("{} h", short_number(hours))
    } else {
        format!("{} days", short_number(hours / 24.0))
    }
}

pub fn dora_page(
    ctx: &Context,
    viewer: &Viewer,
    params: Vec<(String, String)>,
) -> Result<Page, PageError> {
    let given: Vec<(String, String)> = params.into_iter().filter(|(_, v)| !v.is_empty()).collect();
    let q = views::dora::parse_query(given).map_err(|e| PageError::bad_request(e.message))?;
    let page = {
        let v = views::dora::dora_view(ctx, &viewer.visibility, &q)?;
        let band = |metric: &str| v[metric]["band"].as_str().map(str::to_owned);
        let hours = |metric: &str| v[metric]["median_hours"].as_f64();
        let n = |metric: &str, key: &str| v[metric][key].as_u64().unwrap_or(0);
        let deployments = n("deployment_frequency", "deployments");
        let mut metrics = vec![DoraMetric {
            key: "frequency",
            title: "Deployment frequency",
            value: format!("{} / day", v["deployment_frequency"]["per_day"]),
            band: band("deployment_frequency"),
            detail: format!(
                "{deployments} deploy{}; the median week has {} days with a deploy",
                if deployments == 1 { "" } else { "s" },
                v["deployment_frequency"]["median_deploy_days_per_week"]
            ),
        }];
        let without = n("lead_time_for_changes", "deploys_without_range");
        metrics.push(DoraMetric {
            key: "lead-time",
            title: "Lead time for changes",
            value: hours("lead_time_for_changes").map_or_else(|| "—".into(), duration_text),
            band: band("lead_time_for_changes"),
            detail: format!(
                "median over {} changes{}",
                n("lead_time_for_changes", "changes"),
                if without > 0 {
                    format!("; {without} deploys' commits could not be read from a mirror")
                } else {
                    String::new()
                }
            ),
        });
        metrics.push(DoraMetric {
            key: "failure-rate",
            title: "Change failure rate",
            value: v["change_failure_rate"]["rate"]
                .as_f64()
                .map_or_else(|| "—".into(), percent_text),
            band: band("change_failure_rate"),
            detail: format!(
                "{} of {deployments} deploys had a regression attributed to them",
                n("change_failure_rate", "failed_deployments")
            ),
        });
        let unrestored = n("time_to_restore", "unrestored");
        metrics.push(DoraMetric {
            key: "restore",
            title: "Time to restore",
            value: hours("time_to_restore").map_or_else(|| "—".into(), duration_text),
            band: band("time_to_restore"),
            detail: format!(
                "median over {} restored failures{}",
                n("time_to_restore", "restored"),
                if unrestored > 0 { format!("; {unrestored} still open") } else { String::new() }
            ),
        });
        if deployments == 0 {
            metrics.clear();
        }
        let bands = [
            ("deployment_frequency", "Deployment frequency"),
            ("lead_time_for_changes", "Lead time for changes"),
            ("change_failure_rate", "Change failure rate"),
            ("time_to_restore", "Time to restore"),
        ]
        .into_iter()
        .map(|(key, title)| DoraBand { title, ..read(v["bands"][key].clone()) })
        .collect();
        let scope = match (&q.service, &q.team) {
            (Some(s), _) => format!("Service {s}"),
            (None, Some(t)) => format!("Team {t}'s services"),
            (None, None) => "All services you may see".into(),
        };
        let environment = q.environment.as_deref().map(|e| format!(" in {e}")).unwrap_or_default();
        let mut query = vec![("window", q.window.clone())];
        query.extend(q.service.clone().map(|s| ("service", s)));
        query.extend(q.team.clone().map(|t| ("team", t)));
        query.extend(q.environment.clone().map(|e| ("environment", e)));
        let api_href = format!(
            "/api/v1/dora?{}",
            query
                .iter()
                .map(|(k, v)| format!("{k}={}", query_escape(v)))
                .collect::<Vec<_>>()
                .join("&")
        );
        DoraPage {
            layout: Layout::new(viewer, "dora", "DORA metrics"),
            scope: format!("{scope}{environment}"),
            window_text: format!(
                "the last {} ({} to {})",
                q.window,
                short_time(v["window"]["from"].as_str().unwrap_or("")),
                short_time(v["window"]["to"].as_str().unwrap_or(""))
            ),
            q,
            metrics,
            bands,
            api_href,
        }
    };
    render(&page)
}
