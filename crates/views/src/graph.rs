//! The service graph: which services call which over the last minutes, with rates, errors and
//! p95 per edge, from the span-metrics generator (`Context::span_metrics`), and which
//! services have an open incident.

use serde::Serialize;

use crate::incidents::IncidentFilter;
use crate::{Context, FindingStatus, StoreError, Visibility};

#[derive(Debug, Clone, Serialize)]
pub struct ServiceGraph {
    /// Whether `[span_metrics]` is enabled (otherwise there are no edges to show).
    pub enabled: bool,
    pub window_minutes: u64,
    pub services: Vec<GraphService>,
    pub edges: Vec<GraphEdge>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GraphService {
    pub name: String,
    /// The newest open incident on this service.
    pub incident: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GraphEdge {
    pub client: String,
    pub server: String,
    /// A producer → consumer edge.
    pub messaging: bool,
    pub requests: u64,
    pub requests_per_second: f64,
    pub error_rate: f64,
    pub p95_ms: Option<f64>,
    /// An open incident of the callee, else of the caller.
    pub incident: Option<u64>,
}

/// The edges the caller may see (either end is theirs), their services, and open incidents.
pub fn service_graph(ctx: &Context, visibility: &Visibility) -> Result<ServiceGraph, StoreError> {
    let Some(metrics) = &ctx.span_metrics else {
        return Ok(ServiceGraph {
            enabled: false,
            window_minutes: 0,
            services: Vec::new(),
            edges: Vec::new(),
        });
    };
    let now = ctx.clock.now_unix_nanos();
    let (views, window_minutes) = {
        let metrics = metrics.lock().unwrap_or_else(|p| p.into_inner());
        (metrics.graph(now, |service| visibility.allows_service(service)), metrics.window_minutes())
    };
    let open = crate::incidents::list(
        ctx,
        visibility,
        &IncidentFilter {
            status: Some(FindingStatus::Open),
            limit: 1000,
            ..IncidentFilter::default()
        },
    )?;
    // Newest first: the first one of a service is its newest.
    let incident_of = |service: &str| open.iter().find(|i| i.service == service).map(|i| i.id);
    let mut names: Vec<String> =
        views.iter().flat_map(|e| [e.client.clone(), e.server.clone()]).collect();
    names.sort();
    names.dedup();
    Ok(ServiceGraph {
        enabled: true,
        window_minutes,
        services: names
            .into_iter()
            .map(|name| GraphService { incident: incident_of(&name), name })
            .collect(),
        edges: views
            .into_iter()
            .map(|e| GraphEdge {
                incident: incident_of(&e.server).or_else(|| incident_of(&e.client)),
                client: e.client,
                server: e.server,
                messaging: e.messaging,
                requests: e.requests,
                requests_per_second: e.requests_per_second,
                error_rate: e.error_rate,
                p95_ms: e.p95_ms,
            })
            .collect(),
    })
}
