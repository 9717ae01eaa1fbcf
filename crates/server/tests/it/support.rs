//! `TestApp`: an `AppState` over a store in a temporary directory, a manual clock, and helpers
//! to send requests through the router.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use server::{AccessSettings, AppState, ChangeSettings, Clock, Retention, Settings};
use store::{SpanStore, StoreOptions};
use tower::ServiceExt;

pub(crate) const SECOND: u64 = 1_000_000_000;
pub(crate) const DAY: u64 = 24 * 3600 * SECOND;
/// 2026-01-01T00:00:00Z.
pub(crate) const T0: u64 = 1_767_225_600 * SECOND;

/// A real forge payload from `crates/forge/test_data/forges/` (see its README).
pub(crate) fn fixture(path: &str) -> Vec<u8> {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR").expect("tests run under cargo");
    let path = std::path::Path::new(&dir).join("../forge/test_data/forges").join(path);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A clock that moves only when told to.
#[derive(Default)]
pub(crate) struct ManualClock(AtomicU64);

impl ManualClock {
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }

    pub(crate) fn set(&self, unix_nanos: u64) {
        self.0.store(unix_nanos, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_unix_nanos(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

pub(crate) struct TestApp {
    pub(crate) state: Arc<AppState>,
    pub(crate) clock: Arc<ManualClock>,
    pub(crate) store: Arc<SpanStore>,
    pub(crate) store_options: StoreOptions,
    _dir: tempfile::TempDir,
}

impl TestApp {
    pub(crate) fn new() -> TestApp {
        TestApp::with_changes(ChangeSettings::default())
    }

    pub(crate) fn with_changes(changes: ChangeSettings) -> TestApp {
        TestApp::with_settings(changes, AccessSettings::default())
    }

    pub(crate) fn with_settings(changes: ChangeSettings, access: AccessSettings) -> TestApp {
        TestApp::build(changes, access, None)
    }

    /// With `server.public_url` set (sign-in builds its callback URL from it).
    pub(crate) fn build(
        changes: ChangeSettings,
        access: AccessSettings,
        public_url: Option<String>,
    ) -> TestApp {
        TestApp::with_full_settings(Settings {
            public_url,
            access,
            changes,
            ..TestApp::default_settings()
        })
    }

    /// The settings every test starts from: loopback, no sign-in, nothing configured.
    pub(crate) fn default_settings() -> Settings {
        Settings {
            http_addr: "127.0.0.1:0".parse().unwrap(),
            otlp_grpc_addr: "127.0.0.1:0".parse().unwrap(),
            otlp_http_addr: "127.0.0.1:0".parse().unwrap(),
            zipkin_addr: "127.0.0.1:0".parse().unwrap(),
            public_url: None,
            limits: otlp::DecodeLimits::default(),
            access: AccessSettings::default(),
            max_exports_in_flight: 8,
            max_ingest_memory_bytes: 512 << 20,
            max_span_future_nanos: 3600 * 1_000_000_000,
            background_lease: std::time::Duration::from_secs(15),
            connections: server::ConnectionLimits::default(),
            span_metrics: None,
            retention: Retention { spans_max_age_nanos: 7 * DAY, disk_budget_bytes: None },
            changes: ChangeSettings::default(),
            detection: server::DetectionSettings::default(),
            notifications: server::NotifySettings::default(),
        }
    }

    pub(crate) fn with_full_settings(settings: Settings) -> TestApp {
        let clock = Arc::new(ManualClock::default());
        clock.set(T0);
        TestApp::open(tempfile::tempdir().unwrap(), settings, clock)
    }

    fn open(dir: tempfile::TempDir, settings: Settings, clock: Arc<ManualClock>) -> TestApp {
        let store_options = StoreOptions::default();
        // The data directory's lock is an flock on an open file: a process another test forks
        // (git, Alertmanager) holds a copy of that file until it execs, so a restart in this
        // process may find it held for a moment after the old store is gone.
        let mut opened = SpanStore::open(dir.path(), store_options.clone());
        for _ in 0..100 {
            match opened {
                Err(store::StoreError::Locked { .. }) => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    opened = SpanStore::open(dir.path(), store_options.clone());
                }
                _ => break,
            }
        }
        let store = Arc::new(opened.unwrap());
        let state =
            AppState::new(settings, Arc::clone(&store), Arc::clone(&clock) as Arc<dyn Clock>);
        TestApp { state, clock, store, store_options, _dir: dir }
    }

    /// Stops this server and starts another on the same data directory, clock and settings,
    /// as a restart does (the store is closed first).
    pub(crate) fn restart(self) -> TestApp {
        let TestApp { state, clock, store, _dir: dir, .. } = self;
        let settings = state.settings().clone();
        drop(state);
        drop(store);
        TestApp::open(dir, settings, clock)
    }

    pub(crate) async fn send(&self, request: Request<Body>) -> (StatusCode, serde_json::Value) {
        let response = server::router(Arc::clone(&self.state)).oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 24).await.unwrap();
        let json = if bytes.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                serde_json::Value::String(String::from_utf8_lossy(&bytes).into())
            })
        };
        (status, json)
    }

    pub(crate) async fn get(&self, path: &str) -> (StatusCode, serde_json::Value) {
        self.send(Request::get(path).body(Body::empty()).unwrap()).await
    }

    /// A page (or any text): its status, body and content type.
    pub(crate) async fn get_page(&self, path: &str) -> (StatusCode, String, String) {
        let (status, content_type, bytes) = self.get_bytes(path, "*/*").await;
        (status, String::from_utf8(bytes).unwrap(), content_type)
    }

    /// Any body, asked for with `accept`: its status, content type and bytes.
    pub(crate) async fn get_bytes(
        &self,
        path: &str,
        accept: &str,
    ) -> (StatusCode, String, Vec<u8>) {
        let request = Request::get(path).header("accept", accept).body(Body::empty()).unwrap();
        let response = server::router(Arc::clone(&self.state)).oneshot(request).await.unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 24).await.unwrap();
        (status, content_type, bytes.to_vec())
    }

    pub(crate) async fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> (StatusCode, serde_json::Value) {
        let request = Request::post(path)
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(body).unwrap()))
            .unwrap();
        self.send(request).await
    }

    pub(crate) async fn post_raw(
        &self,
        path: &str,
        headers: &[(String, String)],
        body: Vec<u8>,
    ) -> (StatusCode, serde_json::Value) {
        let mut request = Request::post(path);
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_str());
        }
        self.send(request.body(Body::from(body)).unwrap()).await
    }

    /// Exports one span over OTLP/HTTP JSON.
    pub(crate) async fn export_span(&self, trace_id: &str, resource: &[(&str, &str)], start: u64) {
        let attributes: Vec<_> = resource
            .iter()
            .map(|(k, v)| serde_json::json!({"key": k, "value": {"stringValue": v}}))
            .collect();
        let body = serde_json::json!({"resourceSpans": [{
            "resource": {"attributes": attributes},
            "scopeSpans": [{"spans": [{
                "traceId": trace_id,
                "spanId": "0102030405060708",
                "name": "GET /checkout",
                "kind": 2,
                "startTimeUnixNano": start.to_string(),
                "endTimeUnixNano": (start + 5_000_000).to_string(),
            }]}]
        }]});
        let (status, response) = self.post_json("/v1/traces", &body).await;
        assert_eq!(status, StatusCode::OK, "{response}");
    }

    pub(crate) fn state_blocks(&self) -> u64 {
        self.store.stats().num_blocks
    }

    /// Runs the server's upkeep job once at `now` (sealing, and retention).
    pub(crate) fn run_jobs_at(&self, now: u64) {
        self.clock.set(now);
        server::run_maintenance_once(&self.state, true).unwrap();
    }
}

impl TestApp {
    /// Records a deploy of `service` to `prod` straight into the store.
    pub(crate) fn record_deploy(
        &self,
        service: &str,
        version: &str,
        commit: Option<&str>,
        started: u64,
    ) -> model::Deploy {
        self.store
            .record_deploy(&store::NewDeploy {
                service: service.into(),
                environment: "prod".into(),
                version: version.into(),
                commit: commit.map(str::to_owned),
                repository: None,
                started_at_unix_nanos: started,
                finished_at_unix_nanos: None,
                deployer: None,
                is_rollback: false,
                url: None,
                event: None,
            })
            .unwrap()
    }

    /// Records a final regressed p95 finding of `POST /cart` on `deploy_id`, first seen at
    /// `seen`, with `detail` (the numbers); returns its id. Not explained yet.
    pub(crate) fn record_regression(
        &self,
        deploy_id: u64,
        seen: u64,
        detail: &serde_json::Value,
    ) -> u64 {
        let deploy = self.store.deploy(deploy_id).unwrap().unwrap();
        let update = store::FindingUpdate {
            deploy_id,
            service: deploy.service.clone(),
            environment: deploy.environment.clone(),
            operation: "POST /cart".into(),
            span_kind: "server".into(),
            metric: "latency_p95".into(),
            verdict: "regressed".into(),
            severity: "major".into(),
            is_final: true,
            look_minutes: 10,
            detail: detail.to_string(),
            baseline_stats: Vec::new(),
        };
        let look = store::Evaluation { look_minutes: 10, is_final: true };
        assert!(self.store.record_look(&deploy, &[update], look, seen).unwrap());
        self.store.findings_to_explain(deploy_id).unwrap()[0].id
    }
}

/// Runs Debian's `promtool check metrics` on an exposition: the lints Prometheus itself
/// applies (help text, counter and unit names).
pub(crate) fn promtool_accepts(what: &str, text: &str) {
    let Ok(promtool) = std::env::var("SPANBLAME_TEST_PROMTOOL") else {
        panic!(
            "SPANBLAME_TEST_PROMTOOL is not set: run the tests with `cargo xtask test` (it installs Debian's prometheus), or set it to /usr/bin/promtool"
        );
    };
    use std::io::Write;
    let mut child = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success() && said.trim().is_empty(), "promtool on {what}: {said}");
}
