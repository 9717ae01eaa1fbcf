//! The service graph page: services as boxes in columns by call depth, an arrow per edge
//! labelled with its rate, errors and p95, edges and services with an open incident in red;
//! and the same numbers as a table, for reading and for screen readers.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use askama::Template;
use shapes::{ms_text, percent_text, service_href, short_number};
use views::Context;
use views::graph::{GraphEdge, ServiceGraph};

use crate::{Layout, Page, PageError, Viewer, escape, render};

#[derive(Template)]
#[template(path = "graph.html")]
struct GraphPage {
    layout: Layout,
    graph: ServiceGraph,
    svg: String,
    rows: Vec<EdgeRow>,
}

struct EdgeRow {
    client: String,
    client_href: String,
    server: String,
    server_href: String,
    rate: String,
    errors: String,
    p95: String,
    /// `/incidents/{id}` of the open incident that marks the edge.
    incident_href: Option<String>,
}

const BOX_WIDTH: f64 = 170.0;
const BOX_HEIGHT: f64 = 40.0;
/// Room between columns for an edge's two-line label.
const COLUMN_GAP: f64 = 200.0;
const ROW_GAP: f64 = 56.0;
const MARGIN: f64 = 24.0;
/// How far below the lowest box an edge that skips a column runs.
const DETOUR: f64 = 56.0;

pub fn graph_page(ctx: &Context, viewer: &Viewer) -> Result<Page, PageError> {
    let graph = views::graph::service_graph(ctx, &viewer.visibility)?;
    let rows = graph
        .edges
        .iter()
        .map(|e| EdgeRow {
            client: e.client.clone(),
            client_href: service_href(&e.client),
            server: e.server.clone(),
            server_href: service_href(&e.server),
            rate: rate_text(e),
            errors: percent_text(e.error_rate),
            p95: e.p95_ms.map_or_else(|| "—".into(), ms_text),
            incident_href: e.incident.map(|id| format!("/incidents/{id}")),
        })
        .collect();
    let svg = draw(&graph);
    let layout = Layout::new(viewer, "graph", "Service graph");
    render(&GraphPage { layout, graph, svg, rows })
}

fn rate_text(edge: &GraphEdge) -> String {
    format!("{}/s", short_number(edge.requests_per_second))
}

/// Each service's column: the longest chain of callers above it (callers on the left).
fn columns(graph: &ServiceGraph) -> BTreeMap<&str, usize> {
    let mut depth: BTreeMap<&str, usize> =
        graph.services.iter().map(|s| (s.name.as_str(), 0)).collect();
    // Longest paths by relaxation; a cycle stops growing after as many rounds as services.
    for _ in 0..graph.services.len() {
        let mut changed = false;
        for edge in &graph.edges {
            let from = depth[edge.client.as_str()];
            let to = depth.get_mut(edge.server.as_str()).expect("every end is a service");
            if *to < from + 1 && from + 1 < graph.services.len() {
                *to = from + 1;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    depth
}

fn draw(graph: &ServiceGraph) -> String {
    if graph.services.is_empty() {
        return String::new();
    }
    let depth = columns(graph);
    let mut rows_in: BTreeMap<usize, usize> = BTreeMap::new();
    let mut place: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
    for service in &graph.services {
        let column = depth[service.name.as_str()];
        let row = rows_in.entry(column).or_default();
        let x = MARGIN + column as f64 * (BOX_WIDTH + COLUMN_GAP);
        let y = MARGIN + *row as f64 * (BOX_HEIGHT + ROW_GAP);
        *row += 1;
        place.insert(&service.name, (x, y));
    }
    let columns = depth.values().max().copied().unwrap_or(0) + 1;
    let rows = rows_in.values().max().copied().unwrap_or(1);
    let lowest = MARGIN + rows as f64 * BOX_HEIGHT + (rows - 1) as f64 * ROW_GAP;
    let detours = graph.edges.iter().any(|e| !adjacent(&place, e));
    let width = 2.0 * MARGIN + columns as f64 * BOX_WIDTH + (columns - 1) as f64 * COLUMN_GAP;
    let height = lowest + MARGIN + if detours { DETOUR + 24.0 } else { 0.0 };
    let mut svg = format!(
        r#"<svg class="chart graph" viewBox="0 0 {width} {height}" role="img" aria-labelledby="graph-title"><title id="graph-title">Calls between services over the last {} minutes</title><defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" class="head"/></marker><marker id="arrow-bad" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" class="head bad"/></marker></defs>"#,
        graph.window_minutes
    );
    for edge in &graph.edges {
        let (from, to) = (place[edge.client.as_str()], place[edge.server.as_str()]);
        let (x1, y1) = (from.0 + BOX_WIDTH, from.1 + BOX_HEIGHT / 2.0);
        let (x2, y2) = (to.0, to.1 + BOX_HEIGHT / 2.0);
        let class = if edge.incident.is_some() { "edge incident" } else { "edge" };
        let marker = if edge.incident.is_some() { "arrow-bad" } else { "arrow" };
        // To the next column: a curve between the boxes, labelled above its middle. Past a
        // column, or backwards: under every box, labelled at its lowest point.
        let (path, label_x, label_y) = if adjacent(&place, edge) {
            let mid = (x1 + x2) / 2.0;
            // Above the callee's level; going down, left of the middle, where the curve is
            // still high.
            let x = if y2 > y1 { mid - 6.0 } else { mid };
            (format!("M {x1} {y1} C {mid} {y1}, {mid} {y2}, {x2} {y2}"), x, y2 - 22.0)
        } else {
            let low = lowest + DETOUR;
            let path = format!(
                "M {x1} {y1} C {} {low}, {} {low}, {x2} {y2}",
                x1 + COLUMN_GAP / 2.0,
                x2 - COLUMN_GAP / 2.0
            );
            // Just under the curve's lowest point (its middle: an eighth of each end's height
            // and three quarters of the control points').
            (path, (x1 + x2) / 2.0, (y1 + y2) / 8.0 + 0.75 * low + 16.0)
        };
        let anchor =
            if adjacent(&place, edge) && y2 > y1 { "edge-label before" } else { "edge-label" };
        let rate = format!("{} · {} err", rate_text(edge), percent_text(edge.error_rate));
        let p95 = format!("p95 {}", edge.p95_ms.map_or_else(|| "—".into(), ms_text));
        let _ = write!(
            svg,
            r#"<g><title>{} → {}: {rate}, {p95}</title><path class="{class}" d="{path}" marker-end="url(#{marker})"/><text class="{anchor}" x="{label_x}" y="{label_y}">{}</text><text class="{anchor}" x="{label_x}" y="{}">{}</text></g>"#,
            escape(&edge.client),
            escape(&edge.server),
            escape(&rate),
            label_y + 14.0,
            escape(&p95)
        );
    }
    for service in &graph.services {
        let (x, y) = place[service.name.as_str()];
        let class = if service.incident.is_some() { "node incident" } else { "node" };
        let name = escape(&service.name);
        let shown = if service.name.chars().count() > 22 {
            escape(&format!("{}…", service.name.chars().take(21).collect::<String>()))
        } else {
            name.clone()
        };
        let _ = write!(
            svg,
            r#"<a href="{}"><g class="{class}"><title>{name}{}</title><rect x="{x}" y="{y}" width="{BOX_WIDTH}" height="{BOX_HEIGHT}" rx="6"/><text x="{}" y="{}">{shown}</text></g></a>"#,
            escape(&service_href(&service.name)),
            if service.incident.is_some() { " (open incident)" } else { "" },
            x + BOX_WIDTH / 2.0,
            y + BOX_HEIGHT / 2.0 + 5.0,
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Whether an edge goes from one column to the next.
fn adjacent(place: &BTreeMap<&str, (f64, f64)>, edge: &GraphEdge) -> bool {
    let (from, to) = (place[edge.client.as_str()].0, place[edge.server.as_str()].0);
    (to - from - (BOX_WIDTH + COLUMN_GAP)).abs() < 1.0
}
