//! An incident's page: a deploy's regressions as one, with one status, the table of what got
//! worse, the suspects once (with their diffs), example traces and the rollback draft.

use askama::Template;
use shapes::IncidentJ;
use views::Context;

use super::findings::{SuspectView, rollback_text, suspect_views};
use super::status::StatusBox;
use crate::{Layout, Page, PageError, Viewer, render};

#[derive(Template)]
#[template(path = "incident.html")]
struct IncidentPage {
    layout: Layout,
    i: IncidentJ,
    st: StatusBox,
    suspects: Vec<SuspectView>,
    rollback_text: String,
}

pub fn incident_page(ctx: &Context, viewer: &Viewer, id: String) -> Result<Page, PageError> {
    let id: u64 = id.parse().map_err(|_| {
        PageError::not_found(format!("`{id}` is not an incident id; ids are numbers (a deploy's)"))
    })?;
    let Some(i) = views::incidents::incident(ctx, &viewer.visibility, id)? else {
        return Err(PageError::not_found(format!(
            "there is no incident {id}: deploy {id} has no regression (or you may not see it)"
        )));
    };
    let st = StatusBox::new(
        format!("/api/v1/incidents/{id}"),
        &i.status,
        &i.status_by,
        &i.status_note,
        &i.status_changed,
    );
    let page = IncidentPage {
        layout: Layout::new(
            viewer,
            "home",
            format!("Incident {id}: {} {} in {}", i.service, i.version, i.environment()),
        ),
        suspects: suspect_views(ctx, i.suspects()),
        rollback_text: rollback_text(i.explanation.rollback.as_ref()),
        st,
        i,
    };
    render(&page)
}
