//! End-to-end tests of the `spanblame` binary: real OpenTelemetry clients, bad input, crashes.
//! One test binary for the crate (each `tests/*.rs` file would link its own).

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "tests echo the server log for failure diagnosis"
)]

mod backup;
mod browser;
mod clients;
mod cluster;
mod crash;
mod deploys;
mod findings;
mod gate;
mod hostile;
mod ingest_errors;
mod logs;
mod mcp;
mod packaging;
mod phorge_live;
mod prometheus;
mod readme;
mod replicas;
mod security;
mod support;
mod tokens;
