//! The DORA page: the four keys with their bands and what each counts.

use askama::Template;
use shapes::query_escape;
use shapes::{BandJ, percent_text, short_number, short_time};
use views::Context;
use views::dora::DoraQuery;

use crate::{Layout, Page, PageError, Viewer, render};

#[derive(Template)]
#[template(path = "dora.html")]
struct DoraPage {
    layout: Layout,
    q: DoraQuery,
    scope: String,
    window_text: String,
    metrics: Vec<DoraMetric>,
    /// Each key's title and what its bands mean.
    bands: Vec<(&'static str, BandJ)>,
    api_href: String,
}

struct DoraMetric {
    key: &'static str,
    title: &'static str,
    value: String,
    band: Option<String>,
    detail: String,
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
        let frequency = &v.deployment_frequency;
        let deployments = frequency.deployments;
        let mut metrics = vec![DoraMetric {
            key: "frequency",
            title: "Deployment frequency",
            value: format!("{} / day", short_number(frequency.per_day)),
            band: Some(frequency.band.clone()),
            detail: format!(
                "{deployments} deploy{}; the median week has {} days with a deploy",
                if deployments == 1 { "" } else { "s" },
                short_number(frequency.median_deploy_days_per_week)
            ),
        }];
        let lead = &v.lead_time_for_changes;
        let without = lead.deploys_without_range;
        metrics.push(DoraMetric {
            key: "lead-time",
            title: "Lead time for changes",
            value: lead.median_hours.map_or_else(|| "—".into(), duration_text),
            band: lead.band.clone(),
            detail: format!(
                "median over {} changes{}",
                lead.changes,
                if without > 0 {
                    format!("; {without} deploys' commits could not be read from a mirror")
                } else {
                    String::new()
                }
            ),
        });
        let failures = &v.change_failure_rate;
        metrics.push(DoraMetric {
            key: "failure-rate",
            title: "Change failure rate",
            value: failures.rate.map_or_else(|| "—".into(), percent_text),
            band: failures.band.clone(),
            detail: format!(
                "{} of {deployments} deploys had a regression attributed to them",
                failures.failed_deployments
            ),
        });
        let restore = &v.time_to_restore;
        let unrestored = restore.unrestored;
        metrics.push(DoraMetric {
            key: "restore",
            title: "Time to restore",
            value: restore.median_hours.map_or_else(|| "—".into(), duration_text),
            band: restore.band.clone(),
            detail: format!(
                "median over {} restored failures{}",
                restore.restored,
                if unrestored > 0 { format!("; {unrestored} still open") } else { String::new() }
            ),
        });
        if deployments == 0 {
            metrics.clear();
        }
        let b = v.bands;
        let bands = vec![
            ("Deployment frequency", b.deployment_frequency),
            ("Lead time for changes", b.lead_time_for_changes),
            ("Change failure rate", b.change_failure_rate),
            ("Time to restore", b.time_to_restore),
        ];
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
                short_time(&v.window.from),
                short_time(&v.window.to)
            ),
            q,
            metrics,
            bands,
            api_href,
        }
    };
    render(&page)
}
