//! Developer and CI tasks.
//!
//! - `cargo xtask test`: install what the tests need (the OpenTelemetry Python SDK in a
//!   virtualenv, the `oidc-provider` npm package for a real OpenID provider, Debian's
//!   `chromium` and the `playwright-core` npm package for the browser tests, Debian's
//!   `prometheus-alertmanager` for the alerting tests, Debian's `clickhouse-server` for the
//!   ClickHouse engine's tests, Debian's `postgresql-15` for the metadata tests on PostgreSQL,
//!   and the `chdb` package (a current ClickHouse in process) in a
//!   second virtualenv for the SQL dialect test; the npm and
//!   Python packages under `~/.cache/spanblame`), bring up a real Phorge with
//!   `../shared/phorge/setup-phorge.sh` when it is there (else skip the `phorge_live` tests by
//!   name, saying why), then check formatting, run clippy, and run
//!   every test (with cargo-nextest when it is installed). This is the README's test command
//!   and what `.ci/run` calls.
//! - `cargo xtask dist`: a release build (its commit in `SPANBLAME_BUILD_COMMIT`) packed by
//!   `packaging/dist.sh` into `target/dist/`: a `.deb`, a tarball, the split debug info and
//!   `SHA256SUMS`.
//! - `cargo xtask docs`: writes `docs/configuration.md`, the configuration reference generated
//!   from the config types (`config::reference`; a test fails when the file is stale).
//! - `cargo xtask bench`: the detection, ingest and reads benchmarks in release mode (the
//!   reads benchmark drives a real `spanblame serve` from a separate load-generator process).
//! - `cargo xtask fuzz [seconds] [name]`: builds the libFuzzer targets in `fuzz/` with coverage
//!   instrumentation, runs each for the given time (default 60 s) from a corpus seeded with
//!   the real payloads in `crates/forge/test_data/forges`, and prints executions and crashes per
//!   target.
//!
//! Tidy checks (file headers, crate boundaries, the crate graph, module cycles read by
//! `layers.rs`) are ordinary tests in `tidy.rs`.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a developer tool talks to its user on the terminal"
)]

#[cfg(test)]
mod layers;
#[cfg(test)]
mod tidy;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// Where Debian's `chromium` package puts the browser the UI tests drive.
const CHROMIUM: &str = "/usr/bin/chromium";
/// Where Debian's `prometheus` package puts Prometheus and `promtool`, which scrape and check
/// `/metrics` and `/metrics/spans`.
const PROMETHEUS: &str = "/usr/bin/prometheus";
const PROMTOOL: &str = "/usr/bin/promtool";
/// Where Debian's `prometheus-alertmanager` package puts the Alertmanager alerts go to.
const ALERTMANAGER: &str = "/usr/bin/prometheus-alertmanager";
/// Where Debian's `clickhouse-server` package (18.16) puts the server the scale-out tests run.
const CLICKHOUSE: &str = "/usr/sbin/clickhouse-server";
/// Where Debian's `postgresql-15` package puts `initdb`, `postgres` and `pg_isready`, for the
/// metadata tests on PostgreSQL.
const POSTGRES_BIN: &str = "/usr/lib/postgresql/15/bin";

/// The OpenTelemetry Python SDK (a real client, with its OTLP and Zipkin JSON exporters) and
/// `standardwebhooks` (a verifier of signed alerts that is not spanblame's), pinned so every
/// machine tests against the same ones.
const PYTHON_PACKAGES: &[&str] = &[
    "opentelemetry-sdk==1.45.2",
    "opentelemetry-exporter-otlp-proto-http==1.45.2",
    "opentelemetry-exporter-zipkin-json==1.45.1",
    "standardwebhooks==1.1.0",
];
/// A current ClickHouse engine in process (26.9), to check the ClickHouse engine's SQL beside
/// Debian's 18.16 server.
const CHDB_PACKAGES: &[&str] = &["chdb-core==26.9.0"];

fn main() -> anyhow::Result<()> {
    let task = std::env::args().nth(1);
    match task.as_deref() {
        Some("test") => test(),
        Some("bench") => {
            setup_debian_package("clickhouse-server", CLICKHOUSE, "the ClickHouse benchmark")?;
            run(Command::new("cargo").args(["bench", "-p", "analysis", "--bench", "detection"]))?;
            run(Command::new("cargo")
                .args(["bench", "-p", "spanblame", "--bench", "ingest"])
                .env("SPANBLAME_TEST_CLICKHOUSE", CLICKHOUSE))?;
            run(Command::new("cargo")
                .args(["bench", "-p", "spanblame", "--bench", "reads"])
                .env("SPANBLAME_TEST_CLICKHOUSE", CLICKHOUSE))
        }
        Some("setup") => setup().map(|_| ()),
        Some("dist") => dist(),
        Some("docs") => docs(),
        Some("fuzz") => {
            let seconds = match std::env::args().nth(2) {
                Some(text) => text.parse().with_context(|| format!("`{text}` is not seconds"))?,
                None => 60,
            };
            fuzz(seconds, std::env::args().nth(3).as_deref().unwrap_or(""))
        }
        _ => bail!(
            "usage: cargo xtask <test|dist|docs|bench|fuzz|setup>\n  test   install test dependencies, then fmt, clippy and every test\n  dist   build the release binary and pack it into target/dist (.deb, .tar.gz, debug info, SHA256SUMS)\n  docs   write docs/configuration.md from the config types\n  bench  run the detection, ingest and reads benchmarks (release build; SPANBLAME_BENCH_SPANS sets the store size)\n  fuzz [seconds] [name]  run each fuzz target (whose name contains `name`) for that long (default 60) and report executions\n  setup  only install test dependencies"
        ),
    }
}

/// The libFuzzer targets in `fuzz/`, each with the fixtures that seed its corpus (a webhook
/// target reads a selector byte before the body: seeds get `0`, a push as JSON).
const FUZZ_TARGETS: &[(&str, &[&str])] = &[
    ("otlp_protobuf", &[]),
    ("otlp_json", &["fuzz/seeds/otlp_json"]),
    ("zipkin", &["fuzz/seeds/zipkin"]),
    ("traceql", &["fuzz/seeds/traceql"]),
    ("webhook_gogs", &["crates/forge/test_data/forges/gogs"]),
    (
        "webhook_gitea",
        &["crates/forge/test_data/forges/gitea", "crates/forge/test_data/forges/forgejo"],
    ),
    ("webhook_github", &["crates/forge/test_data/forges/github"]),
    ("webhook_gitlab", &["crates/forge/test_data/forges/gitlab"]),
    (
        "webhook_phabricator",
        &["crates/forge/test_data/forges/phabricator", "crates/forge/test_data/forges/phorge-live"],
    ),
];

/// Coverage instrumentation for libFuzzer (what `cargo fuzz` passes, without a sanitizer, so
/// a stable toolchain builds it).
const FUZZ_RUSTFLAGS: &str = "-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks";

fn fuzz(seconds: u64, only: &str) -> anyhow::Result<()> {
    let root = workspace_root();
    let target_dir = root.join("target/fuzz");
    // An explicit target keeps the instrumentation off build scripts and proc macros.
    let host = host_triple()?;
    run(Command::new("cargo")
        .args(["build", "--release", "--bins", "--target", &host, "--manifest-path"])
        .arg(root.join("fuzz/Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target_dir)
        .env("RUSTFLAGS", FUZZ_RUSTFLAGS))?;
    let mut report = Vec::new();
    for (target, seeds) in FUZZ_TARGETS.iter().filter(|(name, _)| name.contains(only)) {
        let corpus = target_dir.join("corpus").join(target);
        std::fs::create_dir_all(&corpus)?;
        let prefix: &[u8] = if target.starts_with("webhook_") { &[0] } else { &[] };
        for seed in *seeds {
            seed_corpus(&root.join(seed), &corpus, prefix)?;
        }
        let artifacts = target_dir.join("artifacts").join(target);
        std::fs::create_dir_all(&artifacts)?;
        eprintln!("fuzzing {target} for {seconds} s");
        let output = Command::new(target_dir.join(&host).join("release").join(target))
            .arg(&corpus)
            .arg(format!("-max_total_time={seconds}"))
            .arg(format!("-artifact_prefix={}/", artifacts.display()))
            .arg("-print_final_stats=1")
            .arg("-max_len=65536")
            .output()
            .with_context(|| format!("running the fuzz target `{target}`"))?;
        let log = String::from_utf8_lossy(&output.stderr);
        let executions = log
            .lines()
            .find_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
            .map_or("?".to_owned(), |n| n.trim().to_owned());
        let outcome = if output.status.success() {
            "no crash".to_owned()
        } else {
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            eprintln!("{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
            format!("CRASH (input in {})", artifacts.display())
        };
        let line = format!("{target:<20} {executions:>14} executions in {seconds} s   {outcome}");
        eprintln!("{line}");
        report.push(line);
    }
    println!("{}", report.join("\n"));
    if report.iter().any(|line| line.contains("CRASH")) {
        bail!("a fuzz target crashed; the input that did it is in its artifacts directory");
    }
    Ok(())
}

/// The triple rustc builds for by default (`host:` in `rustc -vV`).
fn host_triple() -> anyhow::Result<String> {
    let output = Command::new("rustc").arg("-vV").output().context("running `rustc -vV`")?;
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_owned)
        .context("`rustc -vV` names no host")
}

/// Copies every file under `from` into the corpus directory (flat, named after its path),
/// each after `prefix`.
fn seed_corpus(from: &Path, corpus: &Path, prefix: &[u8]) -> anyhow::Result<()> {
    let Ok(entries) = std::fs::read_dir(from) else { return Ok(()) };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            seed_corpus(&path, corpus, prefix)?;
        } else {
            let name: String = path
                .to_string_lossy()
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect();
            let mut seed = prefix.to_vec();
            seed.extend(std::fs::read(&path)?);
            std::fs::write(corpus.join(name), seed)?;
        }
    }
    Ok(())
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

/// Builds the release binary with its commit and packs it with `packaging/dist.sh`.
fn dist() -> anyhow::Result<()> {
    let root = workspace_root();
    let commit = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(&root)
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned());
    run(Command::new("cargo")
        .args(["build", "--release", "--locked", "-p", "spanblame"])
        .env("SPANBLAME_BUILD_COMMIT", &commit))?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let out = target.join("dist");
    run(Command::new("bash")
        .arg("packaging/dist.sh")
        .arg(target.join("release/spanblame"))
        .arg(&out))?;
    eprintln!("xtask: packed into {}", out.display());
    Ok(())
}

/// Writes the configuration reference that `config::reference` generates.
fn docs() -> anyhow::Result<()> {
    let output = Command::new("cargo")
        .args(["run", "--quiet", "-p", "config", "--example", "reference"])
        .current_dir(workspace_root())
        .output()
        .context("running the config crate's `reference` example")?;
    if !output.status.success() {
        bail!("the reference example failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let path = workspace_root().join("docs/configuration.md");
    std::fs::write(&path, &output.stdout).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("xtask: wrote {}", path.display());
    Ok(())
}

/// What the tests need besides Rust crates, as installed by [`setup`].
struct Installed {
    python: PathBuf,
    chdb_python: PathBuf,
    oidc: PathBuf,
    browser: PathBuf,
    /// A clean Debian root for the package test, or why there is none.
    debian_root: Result<PathBuf, String>,
}

/// Installs the test dependencies that are not Rust crates; idempotent.
fn setup() -> anyhow::Result<Installed> {
    let python = python_venv("python", PYTHON_PACKAGES)?;
    let chdb_python = python_venv("chdb", CHDB_PACKAGES)?;
    let oidc =
        npm_package("crates/server/test_data/oidc", "oidc", &["provider.mjs"], "oidc-provider")?;
    setup_debian_package("chromium", CHROMIUM, "the browser tests")?;
    setup_debian_package("curl", "/usr/bin/curl", "the README's commands")?;
    setup_debian_package("prometheus-alertmanager", ALERTMANAGER, "the alerting tests")?;
    setup_debian_package("prometheus", PROMETHEUS, "the metrics tests (promtool and a scrape)")?;
    setup_debian_package("systemd", "/usr/bin/systemd-analyze", "the systemd unit's check")?;
    setup_debian_package(
        "binutils",
        "/usr/bin/objcopy",
        "the package test (debug info split off)",
    )?;
    setup_debian_package("clickhouse-server", CLICKHOUSE, "the ClickHouse engine's tests")?;
    setup_debian_package(
        "postgresql-15",
        &format!("{POSTGRES_BIN}/postgres"),
        "the PostgreSQL metadata tests",
    )?;
    let browser = npm_package("crates/spanblame/tests/browser", "browser", &[], "playwright-core")?;
    let debian_root = debian_root()?;
    Ok(Installed { python, chdb_python, oidc, browser, debian_root })
}

/// A minimal Debian root with systemd (`debootstrap --variant=minbase --include=systemd` of
/// this host's release) in `~/.cache/spanblame/debian-root`, made once (again when the recipe
/// changes), which the package test copies and installs the `.deb` into. Only root can make
/// one (and chroot into it); for anyone else, why not.
fn debian_root() -> anyhow::Result<Result<PathBuf, String>> {
    let cache = cache_dir()?;
    let dir = cache.join("debian-root");
    let release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let codename = release
        .lines()
        .find_map(|line| line.strip_prefix("VERSION_CODENAME="))
        .unwrap_or("bookworm")
        .trim_matches('"')
        .to_owned();
    let mirror = std::env::var("SPANBLAME_DEBIAN_MIRROR")
        .unwrap_or_else(|_| "http://deb.debian.org/debian".to_owned());
    let args = ["--variant=minbase", "--include=systemd", &codename];
    let recipe = format!("debootstrap {} {mirror}", args.join(" "));
    let marker = ".spanblame-recipe";
    if std::fs::read_to_string(dir.join(marker)).is_ok_and(|made| made == recipe) {
        return Ok(Ok(dir));
    }
    if !is_root() {
        return Ok(Err("making a Debian root with debootstrap, and chroot, need root".to_owned()));
    }
    setup_debian_package("debootstrap", "/usr/sbin/debootstrap", "the package test's clean root")?;
    let partial = cache.join("debian-root.partial");
    for stale in [&partial, &dir] {
        if stale.exists() {
            std::fs::remove_dir_all(stale)
                .with_context(|| format!("removing {}", stale.display()))?;
        }
    }
    eprintln!("xtask: making a clean Debian {codename} root in {} ({recipe})", dir.display());
    run(Command::new("debootstrap").args(args).arg(&partial).arg(&mirror))
        .context("debootstrap (set SPANBLAME_DEBIAN_MIRROR to another Debian mirror)")?;
    std::fs::write(partial.join(marker), &recipe)?;
    std::fs::rename(&partial, &dir)?;
    Ok(Ok(dir))
}

/// `~/.cache/spanblame`, where installed test dependencies live between runs.
fn cache_dir() -> anyhow::Result<PathBuf> {
    let home = std::env::var_os("HOME").context("HOME is not set")?;
    Ok(PathBuf::from(home).join(".cache/spanblame"))
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// The npm package manifest in `source` (and `files` beside it) installed under
/// `~/.cache/spanblame/<name>` with its `node_modules`; npm runs only when the manifest
/// changed or `marker` (a dependency) is missing.
fn npm_package(source: &str, name: &str, files: &[&str], marker: &str) -> anyhow::Result<PathBuf> {
    let dir = cache_dir()?.join(name);
    let source = workspace_root().join(source);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let manifest = std::fs::read(source.join("package.json"))
        .with_context(|| format!("reading {}", source.join("package.json").display()))?;
    let installed = std::fs::read(dir.join("package.json")).ok();
    for file in std::iter::once(&"package.json").chain(files) {
        std::fs::copy(source.join(file), dir.join(file))
            .with_context(|| format!("copying {file}"))?;
    }
    if installed.as_deref() != Some(manifest.as_slice())
        || !dir.join("node_modules").join(marker).exists()
    {
        eprintln!("xtask: installing npm {marker} into {}", dir.display());
        run(Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--loglevel=error", "--prefix"])
            .arg(&dir))
        .with_context(|| {
            format!("installing {marker} with npm (Node.js 20 or newer must be installed)")
        })?;
    }
    Ok(dir)
}

/// Installs a Debian package unless `binary` is already there (as root, or through
/// passwordless sudo), refreshing the package lists only when the first try fails.
fn setup_debian_package(package: &str, binary: &str, purpose: &str) -> anyhow::Result<()> {
    if Path::new(binary).exists() {
        return Ok(());
    }
    eprintln!("xtask: installing Debian's {package} for {purpose}");
    let as_root = is_root();
    let apt = |args: &[&str]| {
        let mut command = if as_root { Command::new("apt-get") } else { Command::new("sudo") };
        if !as_root {
            command.args(["-n", "apt-get"]);
        }
        command.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        run(&mut command)
    };
    let install = ["install", "-y", "-q", "--no-install-recommends", package];
    if apt(&install).is_err() {
        apt(&["update", "-q"])?;
        apt(&install).with_context(|| {
            format!("installing {package} (as root or with passwordless sudo: apt-get install {package})")
        })?;
    }
    Ok(())
}

/// A virtualenv `~/.cache/spanblame/<name>` holding exactly the pinned `packages`
/// (`name==version`); pip runs only when one is missing or at another version.
fn python_venv(name: &str, packages: &[&str]) -> anyhow::Result<PathBuf> {
    let venv = cache_dir()?.join(name);
    let python = venv.join("bin/python");
    let pins: Vec<String> = packages
        .iter()
        .map(|p| {
            let (package, version) = p.split_once("==").unwrap_or((p, ""));
            format!("version({package:?}) == {version:?}")
        })
        .collect();
    let probe = format!(
        "import sys; from importlib.metadata import version; sys.exit(not ({}))",
        pins.join(" and ")
    );
    let ready = python.exists()
        && Command::new(&python).args(["-c", &probe]).status().is_ok_and(|s| s.success());
    if !ready {
        eprintln!("xtask: installing {} into {}", packages.join(", "), venv.display());
        run(Command::new("python3").arg("-m").arg("venv").arg(&venv))
            .context("creating a Python virtualenv (on Debian: apt-get install python3-venv)")?;
        run(Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
            .args(packages))?;
    }
    Ok(python)
}

/// A real Phorge being brought up for the `phorge_live` tests, or why there is none.
enum Phorge {
    Starting { child: std::process::Child, log: PathBuf, helper: PathBuf },
    Absent(String),
}

/// Where `setup-phorge.sh` writes `phorge.env` (its default `PHORGE_DIR`).
const PHORGE_ENV: &str = "/srv/phorge/phorge.env";

/// Starts `setup-phorge.sh` (from `SPANBLAME_PHORGE_SETUP`, or `../shared/phorge` beside the
/// workspace) in the background: Debian's PHP and MariaDB, Phorge and Arcanist from source
/// snapshots, the daemons, a bot, a Firehose webhook and the hosted repository rSHOP. It is
/// idempotent and needs root; the webhook's URL is set by the test that starts the server.
fn start_phorge() -> anyhow::Result<Phorge> {
    let script = std::env::var_os("SPANBLAME_PHORGE_SETUP")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("../shared/phorge/setup-phorge.sh"));
    if !script.exists() {
        return Ok(Phorge::Absent(format!(
            "{} is absent (set SPANBLAME_PHORGE_SETUP to a setup-phorge.sh)",
            script.display()
        )));
    }
    if !is_root() {
        return Ok(Phorge::Absent(format!("{} needs root", script.display())));
    }
    let log = cache_dir()?.join("phorge-setup.log");
    std::fs::create_dir_all(log.parent().unwrap_or(Path::new(".")))?;
    let output =
        std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    eprintln!(
        "xtask: bringing up a real Phorge with {} (log: {})",
        script.display(),
        log.display()
    );
    let child = Command::new("bash")
        .arg(&script)
        .env("SKIP_REVISION", "1")
        // Nothing listens here: the test points the webhook at its own server.
        .env("HOOK_URL", "http://127.0.0.1:9/hooks/phabricator/phab")
        .stdin(std::process::Stdio::null())
        .stdout(output.try_clone()?)
        .stderr(output)
        .spawn()
        .with_context(|| format!("running {}", script.display()))?;
    Ok(Phorge::Starting { child, log, helper: script.with_file_name("phorge-helper.php") })
}

fn test() -> anyhow::Result<()> {
    let Installed { python, chdb_python, oidc, browser, debian_root } = setup()?;
    // After `setup`, whose apt-get would contend with the script's for dpkg's lock.
    let phorge = start_phorge()?;
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
    command.env("SPANBLAME_TEST_BROWSER", browser);
    command.env("SPANBLAME_TEST_ALERTMANAGER", ALERTMANAGER);
    command.env("SPANBLAME_TEST_PROMETHEUS", PROMETHEUS);
    command.env("SPANBLAME_TEST_PROMTOOL", PROMTOOL);
    command.env("SPANBLAME_TEST_CLICKHOUSE", CLICKHOUSE);
    command.env("SPANBLAME_TEST_CHDB_PYTHON", chdb_python);
    command.env("SPANBLAME_TEST_POSTGRES", POSTGRES_BIN);
    let mut skip = Vec::new();
    match debian_root {
        Ok(root) => {
            command.env("SPANBLAME_TEST_DEBIAN_ROOT", root);
        }
        Err(why) => {
            eprintln!("xtask: SKIPPED the package test (tests named deb_package): {why}");
            skip.push("deb_package");
        }
    }
    match phorge {
        Phorge::Starting { mut child, log, helper } => {
            let status = child.wait()?;
            if !status.success() {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(30).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                bail!(
                    "setting up Phorge failed ({status}); {}:\n{}",
                    log.display(),
                    tail.join("\n")
                );
            }
            command.env("SPANBLAME_TEST_PHORGE_ENV", PHORGE_ENV);
            command.env("SPANBLAME_TEST_PHORGE_HELPER", helper);
        }
        Phorge::Absent(why) => {
            eprintln!("xtask: SKIPPED the real-Phorge suite (tests named phorge_live): {why}");
            skip.push("phorge_live");
        }
    }
    if !skip.is_empty() {
        command.arg("--");
        for name in skip {
            command.args(["--skip", name]);
        }
    }
    run(&mut command)
}
