//! The pages, one module per resource. Each page asks the views (same access rules, same
//! shapes as the API), reads their JSON into the typed shapes, and renders a template.

mod compare;
mod deploys;
mod dora;
mod findings;
mod graph;
mod home;
mod incidents;
mod numbers;
mod services;
mod status;
mod traces;

pub use compare::compare_page;
pub use deploys::{commit_page, deploy_page, deploys_page};
pub use dora::dora_page;
pub use findings::{finding_page, findings_page};
pub use graph::graph_page;
pub use home::home;
pub use incidents::incident_page;
pub use services::service_page;
pub use traces::{search_page, trace_page};
