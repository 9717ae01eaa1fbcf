//! spanblame's network edge: OTLP ingest over gRPC and HTTP, the JSON API, health and
//! metrics, and the background upkeep of the store.
//!
//! Three listeners share one [`AppState`]:
//! - the main HTTP address (`127.0.0.1:7420`): JSON API, health, metrics, and OTLP/HTTP
//!   (and OTLP/gRPC too, since tonic and axum share one HTTP/2-capable server);
//! - the OTLP/gRPC address (`:4317`);
//! - the OTLP/HTTP address (`:4318`).
//!
//! Every route is listed in [`router`]; handlers live in a module per concern. Errors leave
//! through [`error::ApiError`] only.
//!
//! **Architecture Invariant:** only this crate knows HTTP and gRPC. Ingest never waits on
//! anything but the durable append of its own spans.

mod api;
mod auth;
mod changes;
mod deploys;
mod detection;
pub mod error;
mod evidence;
mod findings;
mod hooks;
mod ingest;
mod jobs;
mod metrics;
mod mirrors;
mod otlp_grpc;
mod otlp_http;
mod outbound;
mod phabricator;
mod suspects;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use store::SpanStore;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

pub use auth::TokenAuth;
pub use changes::{ChangeSettings, Integration, RepositorySettings, ServiceOwnership};
pub use detection::{DetectionSettings, evaluate_due};
pub use jobs::{Clock, SystemClock, run_maintenance_once};
pub use mirrors::{MirrorSettings, MirrorSource, SyncError, sync_once};

/// Everything the server needs besides the store; built by the binary from the config.
#[derive(Debug, Clone)]
pub struct Settings {
    pub http_addr: SocketAddr,
    pub otlp_grpc_addr: SocketAddr,
    pub otlp_http_addr: SocketAddr,
    pub limits: otlp::DecodeLimits,
    pub ingest_auth: TokenAuth,
    /// Exports that may wait for a durable write at once; beyond that, 429 / RESOURCE_EXHAUSTED.
    pub max_exports_in_flight: usize,
    pub retention: Retention,
    /// Forge integrations, repositories and service ownership: the change graph's sources.
    pub changes: ChangeSettings,
    /// Who may report deploys (`POST /api/v1/deploys`) and change a finding's status.
    pub deploy_auth: TokenAuth,
    pub detection: DetectionSettings,
}

#[derive(Debug, Clone)]
pub struct Retention {
    pub spans_max_age_nanos: u64,
    pub disk_budget_bytes: Option<u64>,
}

pub struct AppState {
    pub(crate) settings: Settings,
    pub(crate) store: Arc<SpanStore>,
    pub(crate) metrics: metrics::Metrics,
    pub(crate) write_slots: Arc<Semaphore>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) mirrors: mirrors::Mirrors,
    /// For calls to forge APIs; an error when the system offers no TLS roots.
    pub(crate) http: Result<reqwest::Client, String>,
}

impl AppState {
    pub fn new(settings: Settings, store: Arc<SpanStore>, clock: Arc<dyn Clock>) -> Arc<AppState> {
        let write_slots = Arc::new(Semaphore::new(settings.max_exports_in_flight));
        Arc::new(AppState {
            settings,
            store,
            metrics: metrics::Metrics::default(),
            write_slots,
            clock,
            mirrors: mirrors::Mirrors::default(),
            http: outbound::client().map_err(|e| {
                tracing::warn!(error = %e, "no HTTP client for forge APIs");
                e.to_string()
            }),
        })
    }
}

/// Every HTTP route of the main address.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz))
        .route("/metrics", get(api::metrics))
        .route("/api/v1/services", get(api::list_services))
        .route("/api/v1/traces", get(api::search_traces))
        .route("/api/v1/traces/{trace_id}", get(api::get_trace))
        .route("/api/v1/deploys", get(deploys::list_deploys).post(deploys::create_deploy))
        .route("/api/v1/commits/{sha}/impact", get(deploys::commit_impact))
        .route("/api/v1/findings", get(findings::list_findings))
        .route("/api/v1/findings/{id}", get(findings::get_finding))
        .route("/api/v1/findings/{id}/{action}", post(findings::change_status))
        .route("/hooks/{kind}/{integration}", post(hooks::receive))
        .merge(otlp_http_routes())
        .route_service(otlp_grpc::ROUTE, otlp_grpc::service(Arc::clone(&state)))
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .with_state(state)
        .layer(DefaultBodyLimit::disable())
}

fn otlp_http_routes() -> Router<Arc<AppState>> {
    // Body size is capped inside the handler, where the error can be OTLP-shaped.
    Router::new().route("/v1/traces", post(otlp_http::export_traces))
}

/// The OTLP/HTTP-only address.
fn otlp_http_router(state: Arc<AppState>) -> Router {
    otlp_http_routes()
        .route("/healthz", get(api::healthz))
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .with_state(state)
        .layer(DefaultBodyLimit::disable())
}

/// The OTLP/gRPC-only address.
fn otlp_grpc_router(state: Arc<AppState>) -> Router {
    Router::new().route_service(otlp_grpc::ROUTE, otlp_grpc::service(state))
}

/// Addresses actually bound (useful when a configured port is 0).
#[derive(Debug, Clone, Copy)]
pub struct BoundAddrs {
    pub http: SocketAddr,
    pub otlp_grpc: SocketAddr,
    pub otlp_http: SocketAddr,
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
    on_bound(BoundAddrs {
        http: http.local_addr()?,
        otlp_grpc: grpc.local_addr()?,
        otlp_http: otlp_http.local_addr()?,
    });

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let maintenance = tokio::spawn(jobs::run_maintenance(Arc::clone(&state), stop_rx.clone()));
    let mirror_job = tokio::spawn(mirrors::run_mirrors(Arc::clone(&state), stop_rx.clone()));
    let detection_job = tokio::spawn(detection::run_detection(Arc::clone(&state), stop_rx.clone()));
    let servers = [
        tokio::spawn(
            axum::serve(http, router(Arc::clone(&state)))
                .with_graceful_shutdown(stopped(stop_rx.clone()))
                .into_future(),
        ),
        tokio::spawn(
            axum::serve(grpc, otlp_grpc_router(Arc::clone(&state)))
                .with_graceful_shutdown(stopped(stop_rx.clone()))
                .into_future(),
        ),
        tokio::spawn(
            axum::serve(otlp_http, otlp_http_router(Arc::clone(&state)))
                .with_graceful_shutdown(stopped(stop_rx.clone()))
                .into_future(),
        ),
    ];
    shutdown.await;
    let _ = stop_tx.send(true);
    for server in servers {
        server.await.map_err(std::io::Error::other)??;
    }
    let _ = maintenance.await;
    let _ = mirror_job.await;
    let _ = detection_job.await;
    // Seal what is in memory so the next start has no WAL to replay.
    let store = Arc::clone(&state.store);
    tokio::task::spawn_blocking(move || store.flush())
        .await
        .map_err(std::io::Error::other)?
        .map_err(std::io::Error::other)?;
    Ok(())
}
