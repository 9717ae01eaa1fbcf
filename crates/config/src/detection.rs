//! `[detection]`: when deploys are evaluated and what counts as a regression.

use anyhow::{Context, bail};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::storage::RetentionConfig;
use super::values::parse_duration_nanos;

/// When deploys are evaluated and what counts as a regression. A latency change must pass a
/// sequential test at `alpha`, be at least the relative effect for its quantile and
/// `min_delta`, with enough samples on each side; an error-rate change must have enough
/// errors or requests and pass both rate floors.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct DetectionConfig {
    /// Whether deploys are evaluated at all.
    pub enabled: bool,
    /// How often open deploys are looked at again.
    pub interval: String,
    /// The window before a deploy that a full rollout is compared with.
    pub before_window: String,
    /// False-positive level per deploy, over all its operations and looks.
    pub alpha: f64,
    /// The smallest p50 change worth reporting, relative (0.10: +10%).
    pub min_effect_p50: f64,
    /// The smallest p95 change worth reporting, relative.
    pub min_effect_p95: f64,
    /// The smallest p99 change worth reporting, relative.
    pub min_effect_p99: f64,
    /// The smallest latency change worth reporting, absolute.
    pub min_delta: String,
    /// Spans needed on each side (before and after) to judge p50.
    pub min_samples_p50: u64,
    /// Spans needed on each side to judge p95.
    pub min_samples_p95: u64,
    /// Spans needed on each side to judge p99.
    pub min_samples_p99: u64,
    /// An error-rate change is judged with this many errors in all, or with
    /// `min_error_requests` spans on each side.
    pub min_errors: u64,
    /// An error-rate change is judged with this many spans on each side, or with `min_errors`
    /// errors in all.
    pub min_error_requests: u64,
    /// The smallest error-rate rise worth reporting, absolute (0.001: +0.1 percentage points);
    /// it must also pass `min_error_rate_effect`.
    pub min_error_rate_delta: f64,
    /// The smallest error-rate rise worth reporting, relative to the rate before (0.20: +20%);
    /// it must also pass `min_error_rate_delta`.
    pub min_error_rate_effect: f64,
    /// A new error type (one not seen before the deploy) counts when seen this often after it.
    pub min_new_error_count: u64,
    /// Whether minor regressions (real, but under the floors above) join incidents and are
    /// announced; they are always shown in the findings.
    pub minor_incidents: bool,
}

impl Default for DetectionConfig {
    fn default() -> Self {
        let t = analysis::Thresholds::default();
        DetectionConfig {
            enabled: true,
            interval: "1m".into(),
            before_window: "1h".into(),
            alpha: t.alpha,
            min_effect_p50: t.min_effect_p50,
            min_effect_p95: t.min_effect_p95,
            min_effect_p99: t.min_effect_p99,
            min_delta: "5ms".into(),
            min_samples_p50: t.min_samples_p50,
            min_samples_p95: t.min_samples_p95,
            min_samples_p99: t.min_samples_p99,
            min_errors: t.min_errors,
            min_error_requests: t.min_error_requests,
            min_error_rate_delta: t.min_error_rate_delta,
            min_error_rate_effect: t.min_error_rate_effect,
            min_new_error_count: t.min_new_error_count,
            minor_incidents: false,
        }
    }
}

pub(super) fn resolve_detection(
    d: &DetectionConfig,
    retention: &RetentionConfig,
) -> anyhow::Result<server::DetectionSettings> {
    let duration = |key: &str, value: &str| {
        parse_duration_nanos(value).with_context(|| format!("`{key}` = `{value}`"))
    };
    let fraction = |key: &str, value: f64, max: f64| -> anyhow::Result<f64> {
        if !(value > 0.0 && value < max) {
            bail!("`detection.{key}` = {value} must be above 0 and below {max}");
        }
        Ok(value)
    };
    let interval = duration("detection.interval", &d.interval)?;
    let before_window = duration("detection.before_window", &d.before_window)?;
    const MINUTE: u64 = 60_000_000_000;
    if before_window < MINUTE {
        bail!("`detection.before_window` = `{}` must be at least `1m`", d.before_window);
    }
    let sketches = duration("retention.sketches", &retention.sketches)?;
    let sketch_minutes = duration("retention.sketch_minutes", &retention.sketch_minutes)?;
    if sketch_minutes > sketches {
        bail!(
            "`retention.sketch_minutes` = `{}` is longer than `retention.sketches` = `{}`; minutes roll up into hours before sketches expire",
            retention.sketch_minutes,
            retention.sketches
        );
    }
    Ok(server::DetectionSettings {
        enabled: d.enabled,
        interval: std::time::Duration::from_nanos(interval),
        before_window_minutes: u32::try_from(before_window / MINUTE).unwrap_or(u32::MAX),
        thresholds: analysis::Thresholds {
            alpha: fraction("alpha", d.alpha, 0.5)?,
            min_effect_p50: fraction("min_effect_p50", d.min_effect_p50, 10.0)?,
            min_effect_p95: fraction("min_effect_p95", d.min_effect_p95, 10.0)?,
            min_effect_p99: fraction("min_effect_p99", d.min_effect_p99, 10.0)?,
            min_delta_nanos: duration("detection.min_delta", &d.min_delta)? as f64,
            min_samples_p50: d.min_samples_p50,
            min_samples_p95: d.min_samples_p95,
            min_samples_p99: d.min_samples_p99,
            min_errors: d.min_errors,
            min_error_requests: d.min_error_requests,
            min_error_rate_delta: fraction("min_error_rate_delta", d.min_error_rate_delta, 1.0)?,
            min_error_rate_effect: fraction(
                "min_error_rate_effect",
                d.min_error_rate_effect,
                100.0,
            )?,
            min_new_error_count: d.min_new_error_count.max(1),
        },
        sketch_minutes_max_age_nanos: sketch_minutes,
        minor_incidents: d.minor_incidents,
        sketches_max_age_nanos: sketches,
    })
}
