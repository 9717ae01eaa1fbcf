//! spanblame's network edge: the route table and the handlers that turn requests into calls
//! of the views and jobs and their answers back into HTTP and gRPC: OTLP ingest (`otlp_http`,
//! `otlp_grpc`, both through `ingest::Intake`), Zipkin (`zipkin`), the JSON API and Tempo's
//! and Jaeger's query APIs (`api`), the web pages (`pages`, over the `web` crate), forge
//! webhooks (`hooks`, `phabricator`, `harbormaster`), health and metrics. The guard, sign-in,
//! the error type, listeners and the server's own metrics are the `edge` crate's; MCP is the
//! `mcp` crate's.
//!
//! Four listeners share one [`AppState`]:
//! - the main HTTP address (`127.0.0.1:7420`): JSON API, web pages, health, metrics, and
//!   OTLP/HTTP (and OTLP/gRPC too, since one HTTP/2-capable server serves both);
//! - the OTLP/gRPC address (`:4317`);
//! - the OTLP/HTTP address (`:4318`);
//! - Zipkin's address (`:9411`).
//!
//! Every route is listed in [`routes`], with what it needs; the router is built from it, each
//! route behind `edge::access::guard`.
//!
//! May depend on: `edge`, `mcp`, `views`, `jobs`, `web`, `compat` and everything below them.
//! **Architecture Invariant:** handlers are thin: parse, authorize (the guard did), call a
//! view or a job, answer. Ingest never waits on anything but the durable append of its own
//! spans. This file is the crate's assembly (its modules, the shared state, the route table);
//! modules may import it, and it imports them.

mod api;
mod harbormaster;
mod hooks;
mod ingest;
mod otlp_grpc;
mod otlp_http;
mod pages;
mod phabricator;
mod zipkin;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post};
use store::SpanStore;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use edge::{access, listen, metrics, sign_in};

pub use edge::access::{
    AccessSettings, AuthMode, ConfiguredToken, OidcSettings, ProxySettings, RouteSpec,
};
pub use edge::error;
pub use edge::listen::ConnectionLimits;
pub use jobs::{
    AlertSink, DEFAULT_TIER, DetectionSettings, ForgeNotify, NotifySettings, RepositoryForge,
    Retention, RetrySettings, ServiceNotify, SinkAuth, SyncError,
};
pub use views::{
    ChangeSettings, Clock, DeployTrigger, DurationError, Integration, MirrorSettings, MirrorSource,
    RepositorySettings, ServiceOwnership, SystemClock, parse_duration_nanos,
};

/// Everything the server needs besides the store; built by the binary from the config.
#[derive(Debug, Clone)]
pub struct Settings {
    pub http_addr: SocketAddr,
    pub otlp_grpc_addr: SocketAddr,
    pub otlp_http_addr: SocketAddr,
    /// Zipkin v2 JSON's own address (`POST /api/v2/spans`), as Zipkin's port 9411.
    pub zipkin_addr: SocketAddr,
    /// The address people and forges reach this server at (links, the OIDC callback);
    /// `None`: `http://` + the bound main address.
    pub public_url: Option<String>,
    pub limits: otlp::DecodeLimits,
    /// Sign-in, tokens, roles, audit retention: who may do what.
    pub access: AccessSettings,
    /// Exports that may be read, decoded or written at once; beyond that, 429 /
    /// RESOURCE_EXHAUSTED, before the body is read.
    pub max_exports_in_flight: usize,
    /// Memory the exports in flight may hold at once (bodies, decompressed bodies, decoded
    /// messages, converted spans); an export that does not fit is refused with 429 /
    /// RESOURCE_EXHAUSTED before it takes it.
    pub max_ingest_memory_bytes: usize,
    /// How far after this server's clock a span may end; later ones are rejected through
    /// `partial_success`.
    pub max_span_future_nanos: u64,
    pub retention: Retention,
    /// Forge integrations, repositories and service ownership: the change graph's sources.
    pub changes: ChangeSettings,
    pub detection: DetectionSettings,
    /// Alerts, review comments and commit statuses for findings, and their delivery.
    pub notifications: NotifySettings,
    /// How long this replica holds the background jobs' lease without renewing it.
    pub background_lease: std::time::Duration,
    /// Connection caps and timeouts of every listener.
    pub connections: ConnectionLimits,
    /// Span metrics and the service graph (`/metrics/spans`, `/services/graph`), when enabled.
    pub span_metrics: Option<analysis::span_metrics::Settings>,
}

pub struct AppState {
    pub(crate) settings: Settings,
    /// The background work, and through it the views' context (store, change graph, clock).
    pub(crate) jobs: Arc<jobs::Jobs>,
    pub(crate) metrics: metrics::Metrics,
    pub(crate) write_slots: Arc<Semaphore>,
    /// `max_ingest_memory_bytes`, one permit a byte.
    pub(crate) ingest_memory: Arc<Semaphore>,
    /// Who is calling and whether they may: the access settings and policy, key sets,
    /// rate limits.
    pub(crate) guard: Arc<edge::Guard>,
    /// The MCP endpoint (`/mcp`).
    pub(crate) mcp: mcp::Mcp,
}

impl AppState {
    pub fn new(settings: Settings, store: Arc<SpanStore>, clock: Arc<dyn Clock>) -> Arc<AppState> {
        let write_slots = Arc::new(Semaphore::new(settings.max_exports_in_flight));
        let ingest_memory =
            Arc::new(Semaphore::new(settings.max_ingest_memory_bytes.min(Semaphore::MAX_PERMITS)));
        let policy =
            auth::Policy {
                ingest_open: settings.access.ingest_open,
                deploys_open: settings.access.deploys_open,
                ownership: auth::Ownership::new(
                    settings.changes.services.iter().filter_map(|s| {
                        s.team.as_ref().map(|team| (s.service.clone(), team.clone()))
                    }),
                ),
            };
        let mut ctx = views::Context::new(
            store,
            settings.changes.clone(),
            clock,
            settings.public_url.clone(),
        );
        ctx.minor_incidents = settings.detection.minor_incidents;
        ctx.span_metrics = settings
            .span_metrics
            .clone()
            .map(|s| std::sync::Mutex::new(analysis::span_metrics::SpanMetrics::new(s)));
        let jobs = jobs::Jobs::new(
            ctx,
            jobs::JobSettings {
                detection: settings.detection.clone(),
                notifications: settings.notifications.clone(),
                retention: settings.retention.clone(),
                audit_max_age_nanos: settings.access.audit_max_age_nanos,
                background_lease: settings.background_lease,
                listen_url: format!("http://{}", settings.http_addr),
            },
        );
        let jobs = Arc::new(jobs);
        let guard = Arc::new(edge::Guard::new(settings.access.clone(), policy, Arc::clone(&jobs)));
        let mcp =
            mcp::Mcp::new(Arc::clone(&guard), settings.http_addr, settings.public_url.as_deref());
        Arc::new(AppState {
            guard,
            mcp,
            jobs,
            settings,
            metrics: metrics::Metrics::new(),
            write_slots,
            ingest_memory,
        })
    }
}

impl edge::access::Guarded for AppState {
    fn guard(&self) -> &edge::Guard {
        &self.guard
    }
}

impl AppState {
    /// The settings this server runs with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// What the views read: the store, the change graph, the clock.
    pub(crate) fn ctx(&self) -> &views::Context {
        &self.jobs.ctx
    }
}

// ---------------------------------------------------------------------------------------------
// The jobs, run once at the clock's current time (tests and tools; `serve` runs them on timers).

/// Evaluates every deploy whose evaluation is not final; returns how many were evaluated.
pub fn evaluate_due(state: &AppState) -> Result<usize, store::StoreError> {
    jobs::evaluate_due(&state.jobs)
}

/// One upkeep pass: seal, record token use, and optionally apply retention.
pub fn run_maintenance_once(
    state: &AppState,
    with_retention: bool,
) -> Result<(), store::StoreError> {
    jobs::run_maintenance_once(&state.jobs, with_retention)
}

/// Clones or fetches one mirror and imports its new commits; returns how many.
pub fn sync_once(state: &AppState, repository: &RepositorySettings) -> Result<usize, SyncError> {
    jobs::sync_once(&state.jobs, repository)
}

/// Decides one deploy's notifications into the outbox; returns how many were added.
pub fn announce_deploy(state: &AppState, deploy_id: u64) -> Result<usize, store::StoreError> {
    jobs::announce_deploy(&state.jobs, deploy_id)
}

/// Decides again for open and recently resolved regressions; returns how many were added.
pub fn announce_recent(state: &AppState) -> Result<usize, store::StoreError> {
    jobs::announce_recent(&state.jobs)
}

/// Sends every due notification once; returns how many were attempted.
pub async fn deliver_due(state: &Arc<AppState>) -> Result<usize, store::StoreError> {
    jobs::deliver_due(&state.jobs).await
}

use auth::Need;

const fn spec(
    method: &'static str,
    path: &'static str,
    need: Need,
    audit: Option<&'static str>,
) -> RouteSpec {
    RouteSpec { method, path, need, audit, rate_limited: false, page: false }
}

/// A web page: read access, audited like the API read it shows.
const fn page(path: &'static str, audit: &'static str) -> RouteSpec {
    RouteSpec { page: true, ..spec("GET", path, Need::ReadData, Some(audit)) }
}

const fn limited(spec: RouteSpec) -> RouteSpec {
    RouteSpec { rate_limited: true, ..spec }
}

/// The OTLP/gRPC export method: authorized inside its handler, before the body is read.
pub const OTLP_GRPC_ROUTE: RouteSpec = spec("POST", otlp_grpc::ROUTE, Need::Ingest, None);

/// Every HTTP route of the main address with what it needs and how it is audited; the
/// router is built from this list, so no route exists without an entry.
pub(crate) fn routes() -> Vec<(RouteSpec, MethodRouter<Arc<AppState>>)> {
    use Need::*;
    vec![
        (spec("GET", "/healthz", Public, None), get(api::health::healthz)),
        (spec("GET", "/readyz", Public, None), get(api::health::readyz)),
        (spec("GET", "/metrics", Public, None), get(api::health::metrics)),
        // Span metrics name services and operations: read access, within the caller's reach.
        (
            spec("GET", "/metrics/spans", ReadData, Some("metrics.spans")),
            get(api::health::span_metrics),
        ),
        (limited(spec("GET", "/auth/login", Public, None)), get(sign_in::login::<AppState>)),
        (limited(spec("GET", "/auth/callback", Public, None)), get(sign_in::callback::<AppState>)),
        (spec("GET", "/auth/me", SignedIn, None), get(sign_in::me::<AppState>)),
        (
            spec("POST", "/auth/logout", SignedIn, Some("auth.sign_out")),
            post(sign_in::logout::<AppState>),
        ),
        (
            spec("GET", "/api/v1/services", ReadData, Some("services.read")),
            get(api::traces::list_services),
        ),
        (
            spec("GET", "/api/v1/traces", ReadData, Some("traces.search")),
            get(api::traces::search_traces),
        ),
        (
            spec("GET", "/api/v1/traces/{trace_id}", ReadData, Some("trace.read")),
            get(api::traces::get_trace),
        ),
        // Grafana Tempo's query API (`api::tempo`).
        (spec("GET", "/api/echo", ReadData, None), get(api::tempo::echo)),
        (
            spec("GET", "/api/traces/{trace_id}", ReadData, Some("trace.read")),
            get(api::tempo::trace_v1),
        ),
        (
            spec("GET", "/api/v2/traces/{trace_id}", ReadData, Some("trace.read")),
            get(api::tempo::trace_v2),
        ),
        (spec("GET", "/api/search", ReadData, Some("traces.search")), get(api::tempo::search)),
        (spec("GET", "/api/search/tags", ReadData, Some("tags.read")), get(api::tempo::tags_v1)),
        (spec("GET", "/api/v2/search/tags", ReadData, Some("tags.read")), get(api::tempo::tags_v2)),
        (
            spec("GET", "/api/search/tag/{tag}/values", ReadData, Some("tags.read")),
            get(api::tempo::tag_values_v1),
        ),
        (
            spec("GET", "/api/v2/search/tag/{tag}/values", ReadData, Some("tags.read")),
            get(api::tempo::tag_values_v2),
        ),
        // Jaeger's query API (`api::jaeger`), under a prefix of its own.
        (
            spec("GET", "/jaeger/api/services", ReadData, Some("services.read")),
            get(api::jaeger::services),
        ),
        (
            spec(
                "GET",
                "/jaeger/api/services/{service}/operations",
                ReadData,
                Some("services.read"),
            ),
            get(api::jaeger::service_operations),
        ),
        (
            spec("GET", "/jaeger/api/operations", ReadData, Some("services.read")),
            get(api::jaeger::operations),
        ),
        (
            spec("GET", "/jaeger/api/dependencies", ReadData, Some("services.read")),
            get(api::jaeger::dependencies),
        ),
        (
            spec("GET", "/jaeger/api/traces", ReadData, Some("traces.search")),
            get(api::jaeger::search),
        ),
        (
            spec("GET", "/jaeger/api/traces/{trace_id}", ReadData, Some("trace.read")),
            get(api::jaeger::trace),
        ),
        (
            spec("GET", "/api/v1/deploys", ReadData, Some("deploys.read")),
            get(api::deploys::list_deploys),
        ),
        (
            spec("POST", "/api/v1/deploys", ReportDeploy, Some("deploy.report")),
            post(api::deploys::create_deploy),
        ),
        (
            spec("POST", "/api/v1/gate", ReportDeploy, Some("gate.evaluate")),
            post(api::gate::evaluate),
        ),
        (
            spec("GET", "/api/v1/commits/{sha}", ReadData, Some("commit.read")),
            get(api::deploys::get_commit),
        ),
        (
            spec("GET", "/api/v1/commits/{sha}/impact", ReadData, Some("commit.read")),
            get(api::deploys::commit_impact),
        ),
        (
            spec("GET", "/api/v1/findings", ReadData, Some("findings.read")),
            get(api::findings::list_findings),
        ),
        (
            spec("GET", "/api/v1/findings/{id}", ReadData, Some("finding.read")),
            get(api::findings::get_finding),
        ),
        (
            spec("POST", "/api/v1/findings/{id}/revert", ProposeRevert, Some("finding.revert")),
            post(api::findings::propose_revert),
        ),
        (
            spec("POST", "/api/v1/findings/{id}/{action}", ChangeFinding, Some("finding.status")),
            post(api::findings::change_status),
        ),
        (
            spec("GET", "/api/v1/incidents", ReadData, Some("incidents.read")),
            get(api::incidents::list_incidents),
        ),
        (
            spec("GET", "/api/v1/incidents/{id}", ReadData, Some("incident.read")),
            get(api::incidents::get_incident),
        ),
        (
            spec("POST", "/api/v1/incidents/{id}/revert", ProposeRevert, Some("incident.revert")),
            post(api::incidents::propose_revert),
        ),
        (
            spec("POST", "/api/v1/incidents/{id}/{action}", ChangeFinding, Some("incident.status")),
            post(api::incidents::change_status),
        ),
        (spec("GET", "/api/v1/dora", ReadData, Some("dora.read")), get(api::dora::get_dora)),
        (
            spec("GET", "/api/v1/notifications", ReadData, Some("notifications.read")),
            get(api::notifications::list_notifications),
        ),
        (
            spec(
                "POST",
                "/api/v1/notifications/{id}/retry",
                ChangeFinding,
                Some("notification.retry"),
            ),
            post(api::notifications::retry_notification),
        ),
        (
            limited(spec("GET", "/api/v1/tokens", ManageTokens, Some("tokens.list"))),
            get(api::tokens::list_tokens),
        ),
        (
            limited(spec("POST", "/api/v1/tokens", ManageTokens, Some("token.create"))),
            post(api::tokens::create_token),
        ),
        (
            limited(spec(
                "POST",
                "/api/v1/tokens/{prefix}/rotate",
                ManageTokens,
                Some("token.rotate"),
            )),
            post(api::tokens::rotate_token),
        ),
        (
            limited(spec(
                "POST",
                "/api/v1/tokens/{prefix}/revoke",
                ManageTokens,
                Some("token.revoke"),
            )),
            post(api::tokens::revoke_token),
        ),
        (spec("GET", "/api/v1/audit", ReadAudit, Some("audit.read")), get(api::audit::list_audit)),
        (
            spec("GET", "/api/v1/audit/verify", ReadAudit, Some("audit.verify")),
            get(api::audit::verify_audit),
        ),
        (spec("POST", "/hooks/{kind}/{integration}", ForgeSignature, None), post(hooks::receive)),
        // Harbormaster sends HTTP Basic credentials, which the step's handler checks itself.
        (
            spec(
                "POST",
                "/hooks/phabricator/{integration}/harbormaster",
                Public,
                Some("gate.harbormaster"),
            ),
            post(harbormaster::build_step),
        ),
        (
            spec(
                "POST",
                "/hooks/phabricator/{integration}/deployed",
                Public,
                Some("deploy.harbormaster"),
            ),
            post(harbormaster::deployed),
        ),
        // MCP for assistants: each tool call is audited inside, as `mcp.<tool>`.
        (spec("POST", "/mcp", ReadData, None), post(mcp_endpoint)),
        (spec("GET", "/mcp", ReadData, None), get(mcp_endpoint)),
        (spec("DELETE", "/mcp", ReadData, None), delete(mcp_endpoint)),
        (otlp_http_route(), post(otlp_http::export_traces)),
        (ZIPKIN_ROUTE, post(zipkin::export_spans)),
        // The web UI: pages over the same views as the API, and its own script and styles.
        (page("/", "services.read"), get(pages::home)),
        (page("/traces", "traces.search"), get(pages::search_page)),
        (page("/traces/{trace_id}", "trace.read"), get(pages::trace_page)),
        (page("/compare", "trace.compare"), get(pages::compare_page)),
        (page("/services/{service}", "service.read"), get(pages::service_page)),
        (page("/incidents/{id}", "incident.read"), get(pages::incident_page)),
        (page("/findings", "findings.read"), get(pages::findings_page)),
        (page("/findings/{id}", "finding.read"), get(pages::finding_page)),
        (page("/deploys", "deploys.read"), get(pages::deploys_page)),
        (page("/deploys/{id}", "deploy.read"), get(pages::deploy_page)),
        (page("/commits/{sha}", "commit.read"), get(pages::commit_page)),
        (page("/dora", "dora.read"), get(pages::dora_page)),
        (page("/services/graph", "services.read"), get(pages::graph_page)),
        (spec("GET", "/assets/app.css", Public, None), get(pages::stylesheet)),
        (spec("GET", "/assets/app.js", Public, None), get(pages::script)),
    ]
}

/// Zipkin v2 JSON; like OTLP/HTTP, its body is capped inside the handler.
const ZIPKIN_ROUTE: RouteSpec = spec("POST", "/api/v2/spans", Need::Ingest, None);

/// OTLP/HTTP; its body is capped inside the handler, where the error can be OTLP-shaped.
const fn otlp_http_route() -> RouteSpec {
    spec("POST", "/v1/traces", Need::Ingest, None)
}

/// Every route the server exposes (HTTP and gRPC), with what each needs: for the route
/// table test, which fails when a route has no expectation.
pub fn route_table() -> Vec<RouteSpec> {
    let mut table: Vec<RouteSpec> = routes().into_iter().map(|(spec, _)| spec).collect();
    table.push(OTLP_GRPC_ROUTE);
    table
}

/// Adds `routes` to a router, each behind the access guard and counted by route template
/// (`spanblame_http_requests_total`, with the time to answer, refusals included).
fn guarded(
    state: &Arc<AppState>,
    routes: Vec<(RouteSpec, MethodRouter<Arc<AppState>>)>,
) -> Router<Arc<AppState>> {
    routes.into_iter().fold(Router::new(), |router, (spec, handler)| {
        let guard =
            axum::middleware::from_fn_with_state((Arc::clone(&state.guard), spec), access::guard);
        let count = axum::middleware::from_fn_with_state((Arc::clone(state), spec), count_request);
        router.route(spec.path, handler.route_layer(guard).route_layer(count))
    })
}

async fn count_request(
    axum::extract::State((state, spec)): axum::extract::State<(Arc<AppState>, RouteSpec)>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let seconds = started.elapsed().as_secs_f64();
    state.metrics.observe_request(spec.method, spec.path, response.status().as_u16(), seconds);
    response
}

/// `POST`, `GET` and `DELETE /mcp`, after the guard put the caller in the request.
async fn mcp_endpoint(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
    request: axum::extract::Request,
) -> Response {
    state.mcp.handle(request).await
}

/// Every HTTP route of the main address.
pub fn router(state: Arc<AppState>) -> Router {
    guarded(&state, routes())
        .route(otlp_grpc::ROUTE, post(otlp_grpc::export))
        .fallback(api::health::not_found)
        .method_not_allowed_fallback(api::health::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state.guard),
            access::security_headers,
        ))
        .layer(axum::middleware::from_fn(uniform_errors))
        .with_state(state)
        .layer(DefaultBodyLimit::disable())
}

/// axum's extractors answer a malformed path, query or body in `text/plain`; here the API
/// answers those in JSON with a code, and pages with an HTML page, like every other error.
async fn uniform_errors(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let is_page = {
        let path = request.uri().path();
        !["/api/", "/hooks/", "/auth/", "/v1/", "/mcp", "/opentelemetry."]
            .iter()
            .any(|prefix| path.starts_with(prefix))
    };
    let response = next.run(request).await;
    let status = response.status();
    let plain = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|c| c.as_bytes().starts_with(b"text/plain"));
    if !plain || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let text = axum::body::to_bytes(response.into_body(), 16 * 1024).await.unwrap_or_default();
    let message = String::from_utf8_lossy(&text).trim().to_owned();
    if is_page {
        error::page(status, &message)
    } else {
        error::ApiError::new(error::ErrorCode::from_status(status), message).into_response()
    }
}

/// The OTLP/HTTP-only address.
fn otlp_http_router(state: Arc<AppState>) -> Router {
    let ingest = routes()
        .into_iter()
        .filter(|(spec, _)| *spec == otlp_http_route() || spec.path == "/healthz");
    guarded(&state, ingest.collect())
        .fallback(api::health::not_found)
        .method_not_allowed_fallback(api::health::method_not_allowed)
        .with_state(state)
        .layer(DefaultBodyLimit::disable())
}

/// The Zipkin-only address.
fn zipkin_router(state: Arc<AppState>) -> Router {
    let ingest =
        routes().into_iter().filter(|(spec, _)| *spec == ZIPKIN_ROUTE || spec.path == "/healthz");
    guarded(&state, ingest.collect())
        .fallback(api::health::not_found)
        .method_not_allowed_fallback(api::health::method_not_allowed)
        .with_state(state)
        .layer(DefaultBodyLimit::disable())
}

/// The OTLP/gRPC-only address.
fn otlp_grpc_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route(otlp_grpc::ROUTE, post(otlp_grpc::export))
        .with_state(state)
        .layer(DefaultBodyLimit::disable())
}

/// Addresses actually bound (useful when a configured port is 0).
#[derive(Debug, Clone, Copy)]
pub struct BoundAddrs {
    pub http: SocketAddr,
    pub otlp_grpc: SocketAddr,
    pub otlp_http: SocketAddr,
    pub zipkin: SocketAddr,
}

/// Binds all listeners and serves until `shutdown` resolves, running upkeep in the background.
pub async fn serve(
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    on_bound: impl FnOnce(BoundAddrs),
) -> std::io::Result<()> {
    let settings = &state.settings;
    let bind = |addr: SocketAddr, what: &'static str| async move {
        TcpListener::bind(addr).await.map_err(|e| {
            std::io::Error::new(e.kind(), format!("cannot listen on {addr} for {what}: {e}"))
        })
    };
    let http = bind(settings.http_addr, "the web UI and API (`--http-addr`)").await?;
    let grpc = bind(settings.otlp_grpc_addr, "OTLP/gRPC (`--otlp-grpc-addr`)").await?;
    let otlp_http = bind(settings.otlp_http_addr, "OTLP/HTTP (`--otlp-http-addr`)").await?;
    let zipkin = bind(settings.zipkin_addr, "Zipkin (`--zipkin-addr`)").await?;
    let _ = state.ctx().bound_url.set(format!("http://{}", http.local_addr()?));
    on_bound(BoundAddrs {
        http: http.local_addr()?,
        otlp_grpc: grpc.local_addr()?,
        otlp_http: otlp_http.local_addr()?,
        zipkin: zipkin.local_addr()?,
    });

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // Take the lease (if free) before the jobs start, so one replica works at once.
    let work = &state.jobs;
    jobs::lease::renew_once(work).await;
    let lease_job = tokio::spawn(jobs::lease::run_lease(Arc::clone(work), stop_rx.clone()));
    let maintenance =
        tokio::spawn(jobs::maintenance::run_maintenance(Arc::clone(work), stop_rx.clone()));
    let compaction =
        tokio::spawn(jobs::maintenance::run_compaction(Arc::clone(work), stop_rx.clone()));
    let mirror_job = tokio::spawn(jobs::mirrors::run_mirrors(Arc::clone(work), stop_rx.clone()));
    let detection_job =
        tokio::spawn(jobs::detection::run_detection(Arc::clone(work), stop_rx.clone()));
    let delivery_job =
        tokio::spawn(jobs::notify::run_deliveries(Arc::clone(work), stop_rx.clone()));
    let limits = state.settings.connections;
    let servers = [
        tokio::spawn(listen::serve(http, router(Arc::clone(&state)), limits, stop_rx.clone())),
        tokio::spawn(listen::serve(
            grpc,
            otlp_grpc_router(Arc::clone(&state)),
            limits,
            stop_rx.clone(),
        )),
        tokio::spawn(listen::serve(
            otlp_http,
            otlp_http_router(Arc::clone(&state)),
            limits,
            stop_rx.clone(),
        )),
        tokio::spawn(listen::serve(
            zipkin,
            zipkin_router(Arc::clone(&state)),
            limits,
            stop_rx.clone(),
        )),
    ];
    shutdown.await;
    let _ = stop_tx.send(true);
    for server in servers {
        server.await.map_err(std::io::Error::other)??;
    }
    let _ = maintenance.await;
    let _ = compaction.await;
    let _ = mirror_job.await;
    let _ = detection_job.await;
    let _ = delivery_job.await;
    let _ = lease_job.await;
    // Seal what is in memory so the next start has no WAL to replay.
    let store = Arc::clone(&state.ctx().store);
    tokio::task::spawn_blocking(move || store.flush())
        .await
        .map_err(std::io::Error::other)?
        .map_err(std::io::Error::other)?;
    Ok(())
}
