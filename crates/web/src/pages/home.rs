//! The home page: the open incidents (one per bad deploy), and services with their current
//! numbers.

use std::collections::BTreeMap;

use askama::Template;
use shapes::{IncidentJ, service_href};
use views::incidents::IncidentFilter;
use views::{Context, FindingStatus};

use super::numbers::{Numbers, entry_points, merged};
use crate::{Layout, Page, PageError, Viewer, render};

/// The home page's "now": the last this many minutes.
const CURRENT_MINUTES: i64 = 15;
/// Open incidents listed at most.
const HOME_INCIDENTS: usize = 50;

impl ServiceRow {
    pub(crate) fn href(&self) -> String {
        service_href(&self.name)
    }
}

pub(crate) struct ServiceRow {
    pub(crate) name: String,
    pub(crate) team: Option<String>,
    pub(crate) versions: String,
    pub(crate) now: Numbers,
    pub(crate) open_regressions: usize,
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    layout: Layout,
    services: Vec<ServiceRow>,
    incidents: Vec<IncidentJ>,
    ingest_url: String,
    current_minutes: i64,
}

pub fn home(ctx: &Context, viewer: &Viewer) -> Result<Page, PageError> {
    let page = {
        // One card per bad deploy, however many operations and percentiles it slowed.
        let open = IncidentFilter {
            status: Some(FindingStatus::Open),
            limit: HOME_INCIDENTS,
            ..IncidentFilter::default()
        };
        let incidents = views::incidents::list(ctx, &viewer.visibility, &open)?;
        let mut services = Vec::new();
        for service in views::traces::services(ctx, &viewer.visibility)? {
            let name = service.name;
            let rows =
                views::sketches::recent(ctx, &viewer.visibility, &name, None, CURRENT_MINUTES)?;
            let now = Numbers::of(&merged(entry_points(&rows.iter().collect::<Vec<_>>())));
            let mut versions: BTreeMap<String, (String, String)> = BTreeMap::new();
            for v in service.versions {
                let environment = v.environment.unwrap_or_else(|| "(none)".into());
                let newer = versions.get(&environment).is_none_or(|(_, seen)| *seen < v.last_seen);
                if newer {
                    versions.insert(environment, (v.version.unwrap_or_default(), v.last_seen));
                }
            }
            services.push(ServiceRow {
                team: ctx.changes.ownership(&name).and_then(|o| o.team.clone()),
                versions: versions
                    .iter()
                    .map(|(env, (v, _))| format!("{v} in {env}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                open_regressions: incidents
                    .iter()
                    .filter(|i| i.service == name)
                    .map(|i| i.regression_count)
                    .sum(),
                now,
                name,
            });
        }
        // Services with open regressions first, then by name.
        services
            .sort_by(|a, b| b.open_regressions.cmp(&a.open_regressions).then(a.name.cmp(&b.name)));
        HomePage {
            layout: Layout::new(viewer, "home", "spanblame"),
            services,
            incidents,
            ingest_url: ctx.public_url().unwrap_or("http://127.0.0.1:7420").to_owned(),
            current_minutes: CURRENT_MINUTES,
        }
    };
    render(&page)
}
