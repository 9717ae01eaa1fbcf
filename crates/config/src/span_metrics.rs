//! `[span_metrics]`: span metrics and the service graph under Tempo's metric names, for a
//! Prometheus that scrapes `/metrics/spans` and for the `/services/graph` page. Off unless
//! enabled: they cost memory per series.

use anyhow::bail;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Span metrics and the service graph under Tempo's metric names, for a Prometheus that
/// scrapes `/metrics/spans` and for the `/services/graph` page; they cost memory per series.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SpanMetricsConfig {
    /// Whether they are computed at ingest.
    pub enabled: bool,
    /// Whether span metrics carry a `service_version` label (one series per version).
    pub version_label: bool,
    /// Most series kept; the ones past it are counted in
    /// `spanblame_span_metrics_series_dropped_total`.
    pub max_series: usize,
}

impl Default for SpanMetricsConfig {
    fn default() -> Self {
        let defaults = analysis::span_metrics::Settings::default();
        SpanMetricsConfig {
            enabled: false,
            version_label: defaults.version_label,
            max_series: defaults.max_series,
        }
    }
}

/// The generator's settings when enabled.
pub(super) fn resolve_span_metrics(
    config: &SpanMetricsConfig,
) -> anyhow::Result<Option<analysis::span_metrics::Settings>> {
    if config.max_series == 0 {
        bail!("`span_metrics.max_series` must be at least 1 (the default is 10000)");
    }
    Ok(config.enabled.then(|| analysis::span_metrics::Settings {
        version_label: config.version_label,
        max_series: config.max_series,
        ..analysis::span_metrics::Settings::default()
    }))
}
