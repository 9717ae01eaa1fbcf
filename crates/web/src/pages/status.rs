//! The status line of a finding or an incident: where it stands, who set it, when and why,
//! and the actions that apply (with a note), which `assets/app.js` posts to the API.

use shapes::short_time;

pub(crate) struct StatusBox {
    /// The API resource whose `/{action}` the buttons post to.
    pub(crate) path: String,
    pub(crate) status: String,
    pub(crate) by: Option<String>,
    pub(crate) note: Option<String>,
    pub(crate) when: Option<String>,
}

impl StatusBox {
    pub(crate) fn new(
        path: String,
        status: &str,
        by: &Option<String>,
        note: &Option<String>,
        changed: &Option<String>,
    ) -> StatusBox {
        StatusBox {
            path,
            status: status.to_owned(),
            by: by.clone(),
            note: note.clone(),
            when: changed.as_deref().map(short_time),
        }
    }
}
