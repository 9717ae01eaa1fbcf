//! Real database servers for tests, started on 127.0.0.1 with their data in temporary
//! directories and killed when dropped.
//!
//! The binaries come from Debian's packages, which `cargo xtask test` installs and names in
//! the environment (`SPANBLAME_TEST_CLICKHOUSE`, `SPANBLAME_TEST_POSTGRES`); a test run without them fails and says how
//! to get them, rather than skipping.
//!
//! A dev-dependency only. May depend on: the standard library and the Debian binaries it
//! starts. **Never:** a runtime dependency of the product.

mod clickhouse;
mod postgres;

pub use crate::clickhouse::{ClickHouse, ClickHouseCluster};
pub use crate::postgres::Postgres;

/// A TCP port nothing listens on right now.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("binding a loopback port")
}

/// The binary an environment variable names, or a panic that says how to get it.
pub(crate) fn binary(variable: &str, package: &str) -> std::path::PathBuf {
    match std::env::var_os(variable) {
        Some(path) => path.into(),
        None => panic!(
            "{variable} is not set: run the tests with `cargo xtask test` (it installs Debian's \
             {package}), or set it to the server binary"
        ),
    }
}

/// Waits up to 60 s for `ready` to say yes, panicking with `what` and `log` otherwise.
pub(crate) fn wait_until(what: &str, log: &std::path::Path, mut ready: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        if ready() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let log = std::fs::read_to_string(log).unwrap_or_default();
    panic!("{what} did not start within 60 s; its log:\n{log}");
}
