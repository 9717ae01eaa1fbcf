//! `TestServer`: the real `spanblame serve` as a child process on loopback ports chosen by
//! the OS, with its own data directory, plus small HTTP helpers.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub(crate) struct TestServer {
    child: Child,
    pub(crate) http: SocketAddr,
    pub(crate) otlp_grpc: SocketAddr,
    pub(crate) otlp_http: SocketAddr,
    pub(crate) zipkin: SocketAddr,
    pub(crate) data_dir: PathBuf,
    /// Every line the server logged so far.
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl TestServer {
    pub(crate) fn start(data_dir: &Path) -> TestServer {
        TestServer::start_with_env(data_dir, &[])
    }

    pub(crate) fn start_with_env(data_dir: &Path, env: &[(&str, &str)]) -> TestServer {
        TestServer::start_with(data_dir, &[], env)
    }

    /// `spanblame serve --demo` building its world in `dir` (which must not exist yet).
    pub(crate) fn start_demo(dir: &Path) -> TestServer {
        TestServer::start_with(dir, &["--demo"], &[])
    }

    /// `spanblame serve` with more arguments and environment variables.
    pub(crate) fn start_with(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> TestServer {
        let mut command = Command::new(env!("CARGO_BIN_EXE_spanblame"));
        command
            .arg("serve")
            .args(args)
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--http-addr", "127.0.0.1:0", "--otlp-grpc-addr", "127.0.0.1:0"])
            .args(["--otlp-http-addr", "127.0.0.1:0"])
            .args(["--zipkin-addr", "127.0.0.1:0"])
            .env("NO_COLOR", "1")
            .env("SPANBLAME_LOG", "info");
        for (key, value) in env {
            command.env(key, value);
        }
        TestServer::spawn(command, data_dir)
    }

    /// Runs `command` (a `spanblame serve` that logs on stderr) and waits until it reports its
    /// listening addresses.
    pub(crate) fn spawn(mut command: Command, data_dir: &Path) -> TestServer {
        command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawning spanblame");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let log: std::sync::Arc<std::sync::Mutex<Vec<String>>> = std::sync::Arc::default();
        let lines = std::sync::Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[spanblame] {line}");
                lines.lock().unwrap_or_else(|p| p.into_inner()).push(line.clone());
                if line.contains("spanblame is listening") {
                    let _ = tx.send(line);
                }
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("spanblame did not report its listening addresses within 30 s");
        let field = |name: &str| -> SocketAddr {
            let start = line.find(&format!(" {name}=")).unwrap() + name.len() + 2;
            line[start..].split_whitespace().next().unwrap().parse().unwrap()
        };
        TestServer {
            http: field("http"),
            otlp_grpc: field("otlp_grpc"),
            otlp_http: field("otlp_http"),
            zipkin: field("zipkin"),
            child,
            data_dir: data_dir.to_owned(),
            log,
        }
    }

    /// Waits until the server has logged a line containing `needle`.
    pub(crate) fn wait_for_log(&self, needle: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.log.lock().unwrap_or_else(|p| p.into_inner()).iter().any(|l| l.contains(needle))
        {
            assert!(
                Instant::now() < deadline,
                "the server did not log `{needle}` within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no shutdown code runs, as in a crash.
    pub(crate) fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, then waits up to `limit` for the process to exit; whether it did.
    pub(crate) fn terminate_within(&mut self, limit: Duration) -> bool {
        let sent = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -TERM failed");
        let started = std::time::Instant::now();
        while started.elapsed() < limit {
            if self.child.try_wait().unwrap().is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// GET a JSON API path; returns status and body.
    pub(crate) fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let response = reqwest::blocking::get(self.url(path)).unwrap();
        let status = response.status().as_u16();
        (status, response.json().unwrap())
    }

    /// Polls until the trace has `num_spans` spans (exporters may deliver in several requests).
    pub(crate) fn wait_for_trace(&self, trace_id: &str, num_spans: usize) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (status, body) = self.get_json(&format!("/api/v1/traces/{trace_id}"));
            if status == 200 && body["spans"].as_array().unwrap().len() >= num_spans {
                return body;
            }
            assert!(Instant::now() < deadline, "trace {trace_id} incomplete: {status} {body}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The span with `name` in a trace response.
pub(crate) fn span_named<'a>(trace: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    trace["spans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no span named {name} in {trace}"))
}

/// This package's directory, read at run time (cargo sets it for tests): a path compiled in
/// with `env!` goes stale when a shared target directory serves checkouts at other paths.
/// Runs `command`, which must succeed; what it printed (stdout, then stderr).
pub(crate) fn run_ok(command: &mut Command) -> String {
    let output = command.output().unwrap_or_else(|e| panic!("{command:?}: {e}"));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{command:?} failed ({}): {said}", output.status);
    said
}

pub(crate) fn manifest_dir() -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("tests run under cargo"))
}
