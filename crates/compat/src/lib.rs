//! spanblame's answers in the shapes of the tools people already use, so Grafana's data
//! sources work against it unchanged:
//!
//! - `tempo`: Grafana Tempo's query API: a trace by id in OTLP, TraceQL search
//!   (`traceql` runs over each candidate trace, with the conditions every match must meet
//!   pushed down to the store's search), tag names and values;
//! - `jaeger`: Jaeger's query API (services, operations, trace search and by id) in its
//!   JSON model, for Jaeger's UI and Grafana's Jaeger data source;
//! - `find`: the traces a TraceQL query matches, read through the store's search, shared
//!   by the APIs;
//! - `params`: the parameter forms those APIs take (Unix seconds, Go durations, logfmt tags).
//!
//! Every answer is built within the caller's [`views::Visibility`], as the JSON API v1 is:
//! spans of services the caller may not see never match and never show but as a redacted
//! stand-in that keeps a shared trace whole.
//!
//! May depend on: `model`, `otlp` (OTLP encoding), `store`'s query types, `traceql`, `views`.
//! **Never:** HTTP, a runtime, templates, or writing anything.

pub mod find;
pub mod jaeger;
pub mod params;
pub mod tempo;

#[cfg(test)]
mod tests;

pub use params::{go_duration_nanos, logfmt_pairs, unix_seconds};
