//! Developer and CI tasks.
//!
//! - `cargo xtask test`: install what the tests need (the OpenTelemetry Python SDK in a
//!   virtualenv and the `oidc-provider` npm package for a real OpenID provider, both under
//!   `~/.cache/spanblame`), then check formatting, run clippy, and run every
//!   test (with cargo-nextest when it is installed). This is the README's test command and
//!   what `.ci/run` calls.
//! - `cargo xtask bench`: the detection and ingest benchmarks in release mode.
//!
//! Tidy checks (file headers, crate boundaries) are ordinary tests in `tidy.rs`.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a developer tool talks to its user on the terminal"
)]

#[cfg(test)]
mod tidy;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// Pinned so every machine tests against the same client.
const PYTHON_PACKAGES: &[&str] =
    &["opentelemetry-sdk==1.45.2", "opentelemetry-exporter-otlp-proto-http==1.45.2"];

fn main() -> anyhow::Result<()> {
    let task = std::env::args().nth(1);
    match task.as_deref() {
        Some("test") => test(),
        Some("bench") => {
            run(Command::new("cargo").args(["bench", "-p", "analysis", "--bench", "detection"]))?;
            run(Command::new("cargo").args(["bench", "-p", "spanblame", "--bench", "ingest"]))
        }
        Some("setup") => setup().map(|_| ()),
        _ => bail!(
            "usage: cargo xtask <test|bench|setup>\n  test   install test dependencies, then fmt, clippy and every test\n  bench  run the detection and ingest benchmarks (release build)\n  setup  only install test dependencies"
        ),
    }
}

/// The workspace root, asked of cargo at run time: a path compiled in with `env!` goes stale
/// when a shared target directory serves checkouts at different paths.
fn workspace_root() -> PathBuf {
    let located = Command::new("cargo")
        .args(["locate-project", "--workspace", "--message-format", "plain"])
        .output()
        .ok()
        .filter(|output| output.status.success())
        .and_then(|output| String::from_utf8(output.stdout).ok());
    match located {
        Some(manifest) => Path::new(manifest.trim()).parent().unwrap_or(Path::new(".")).to_owned(),
        None => PathBuf::from("."),
    }
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let shown = format!("{command:?}");
    let status = command
        .current_dir(workspace_root())
        .status()
        .with_context(|| format!("running {shown}"))?;
    if !status.success() {
        bail!("{shown} failed with {status}");
    }
    Ok(())
}

/// Installs the test dependencies that are not Rust crates; idempotent. Returns the Python
/// interpreter of the virtualenv and the directory of the test OpenID provider.
fn setup() -> anyhow::Result<(PathBuf, PathBuf)> {
    let python = setup_python()?;
    let oidc = setup_oidc_provider()?;
    Ok((python, oidc))
}

/// The test OpenID provider (`crates/server/test_data/oidc`: the `oidc-provider` package on
/// the machine's Node.js), copied under `~/.cache/spanblame/oidc` with its `node_modules`.
fn setup_oidc_provider() -> anyhow::Result<PathBuf> {
    let home = std::env::var_os("HOME").context("HOME is not set")?;
    let dir = PathBuf::from(home).join(".cache/spanblame/oidc");
    let source = workspace_root().join("crates/server/test_data/oidc");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let manifest = std::fs::read(source.join("package.json"))
        .context("reading the provider's package.json")?;
    let installed = std::fs::read(dir.join("package.json")).ok();
    for file in ["package.json", "provider.mjs"] {
        std::fs::copy(source.join(file), dir.join(file))
            .with_context(|| format!("copying {file}"))?;
    }
    if installed.as_deref() != Some(manifest.as_slice())
        || !dir.join("node_modules/oidc-provider").exists()
    {
        eprintln!(
            "xtask: installing the test OpenID provider (npm oidc-provider) into {}",
            dir.display()
        );
        run(Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--loglevel=error", "--prefix"])
            .arg(&dir))
        .context("installing oidc-provider with npm (Node.js 20 or newer must be installed)")?;
    }
    Ok(dir)
}

fn setup_python() -> anyhow::Result<PathBuf> {
    let home = std::env::var_os("HOME").context("HOME is not set")?;
    let venv = PathBuf::from(home).join(".cache/spanblame/python");
    let python = venv.join("bin/python");
    let ready = python.exists()
        && Command::new(&python)
            .args(["-c", "import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.http, sys; from importlib.metadata import version; sys.exit(version('opentelemetry-sdk') != '1.45.2')"])
            .status()
            .is_ok_and(|s| s.success());
    if !ready {
        eprintln!("xtask: installing the OpenTelemetry Python SDK into {}", venv.display());
        run(Command::new("python3").arg("-m").arg("venv").arg(&venv))
            .context("creating a Python virtualenv (on Debian: apt-get install python3-venv)")?;
        run(Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
            .args(PYTHON_PACKAGES))?;
    }
    Ok(python)
}

fn test() -> anyhow::Result<()> {
    let (python, oidc) = setup()?;
    run(Command::new("cargo").args(["fmt", "--all", "--", "--check"]))
        .context("formatting differs: run `cargo fmt --all`")?;
    run(Command::new("cargo").args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    let has_nextest = Command::new("cargo")
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    let mut command = Command::new("cargo");
    if has_nextest {
        command.args(["nextest", "run", "--workspace", "--no-fail-fast"]);
    } else {
        command.args(["test", "--workspace", "--no-fail-fast"]);
    }
    command.env("SPANBLAME_TEST_PYTHON", &python);
    command.env("SPANBLAME_TEST_OIDC_PROVIDER", oidc.join("provider.mjs"));
    run(&mut command)
}
