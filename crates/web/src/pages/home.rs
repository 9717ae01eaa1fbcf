//! The home page: services with their current numbers, and the open regressions.

use std::collections::BTreeMap;

use askama::Template;
use serde_json::Value as Json_;
use views::shapes::{FindingJ, read, service_href};
use views::{Context, FindingFilter, FindingStatus};

use super::numbers::{Numbers, entry_points, merged};
use crate::{Layout, Page, PageError, Viewer, render};

/// The home page's "now": the last this many minutes.
const CURRENT_MINUTES: i64 = 15;
const HOME_FINDINGS: usize = 50;

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
    regressions: Vec<FindingJ>,
    other_open: usize,
    ingest_url: String,
    current_minutes: i64,
}

pub fn home(ctx: &Context, viewer: &Viewer) -> Result<Page, PageError> {
    let page = {
        let open = views::findings::list(
            ctx,
            &viewer.visibility,
            FindingFilter {
                status: Some(FindingStatus::Open),
                limit: 1_000,
                ..FindingFilter::default()
            },
        )?;
        let (regressions, others): (Vec<Json_>, Vec<Json_>) =
            open.into_iter().partition(|f| f["verdict"] == "regressed");
        let regressions: Vec<FindingJ> = regressions.into_iter().map(read).collect();
        let other_open = others.len();
        let mut services = Vec::new();
        for service in views::traces::services(ctx, &viewer.visibility)? {
            let name = service["name"].as_str().unwrap_or_default().to_owned();
            let rows =
                views::sketches::recent(ctx, &viewer.visibility, &name, None, CURRENT_MINUTES)?;
            let now = Numbers::of(&merged(entry_points(&rows.iter().collect::<Vec<_>>())));
            let mut versions: BTreeMap<String, (String, String)> = BTreeMap::new();
            for v in service["versions"].as_array().into_iter().flatten() {
                let environment = v["environment"].as_str().unwrap_or("(none)").to_owned();
                let version = v["version"].as_str().unwrap_or_default().to_owned();
                let last_seen = v["last_seen"].as_str().unwrap_or_default().to_owned();
                let newer = versions.get(&environment).is_none_or(|(_, seen)| *seen < last_seen);
                if newer {
                    versions.insert(environment, (version, last_seen));
                }
            }
            services.push(ServiceRow {
                team: ctx.changes.ownership(&name).and_then(|o| o.team.clone()),
                versions: versions
                    .iter()
                    .map(|(env, (v, _))| format!("{v} in {env}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                open_regressions: regressions.iter().filter(|f| f.service == name).count(),
                now,
                name,
            });
        }
        // Services with open regressions first, then by name.
        services
            .sort_by(|a, b| b.open_regressions.cmp(&a.open_regressions).then(a.name.cmp(&b.name)));
        // Entry points first: what callers feel, then the code paths that explain it.
        let mut regressions = regressions;
        regressions.sort_by_key(|f| (f.span_kind != "server", std::cmp::Reverse(f.id)));
        regressions.truncate(HOME_FINDINGS);
        HomePage {
            layout: Layout::new(viewer, "home", "spanblame"),
            services,
            regressions,
            other_open,
            ingest_url: ctx.public_url().unwrap_or("http://127.0.0.1:7420").to_owned(),
            current_minutes: CURRENT_MINUTES,
        }
    };
    render(&page)
}
