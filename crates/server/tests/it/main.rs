//! In-process tests of the server's routes and jobs: the real router and store, driven through
//! `tower::ServiceExt::oneshot` with a manual clock, so time-dependent behaviour is tested
//! without sleeping. (End-to-end tests with real clients over sockets live in
//! `crates/spanblame/tests`.)

mod access;
mod detection;
mod dora;
mod forge_deploys;
mod gate;
mod hooks;
mod jaeger;
mod mcp;
mod mirrors;
mod notify;
mod oidc;
mod phabricator;
mod recorder;
mod retention;
mod revert;
mod self_monitoring;
mod span_metrics;
mod support;
mod tempo;
mod ui;
