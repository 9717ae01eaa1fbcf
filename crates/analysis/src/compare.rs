//! One metric of one operation, before a deploy against after it, to a verdict.
//!
//! Latency (p50, p95, p99): the ratio after/before of the quantile with its order-statistic
//! interval. `Regressed` needs the whole interval above 1, a point effect of at least the
//! minimum (10% for p50/p95, 20% for p99) and an absolute slowdown of at least
//! `max(5 ms, 2α·before)`; `Improved` mirrors it. A significant but smaller move (its
//! interval excludes 1, its size is beyond the sketch's 2α accuracy but under those floors)
//! is still `Regressed` or `Improved`, marked minor with the reason ("+2.0 ms, below the
//! 5 ms floor"): the data says it moved, and whether that matters is the reader's call. No
//! significant move with a point effect inside the band is `NoChange`; a material point
//! effect whose interval still holds 1 is `Inconclusive` (more traffic will tell), as is any
//! side with fewer spans than the quantile needs (50, 200, 1,000).
//!
//! Error rate: the difference of rates with Newcombe's interval, at least 30 errors in all or
//! 1,000 spans per side; a significant difference under the floors is minor, as for latency. New error types: types seen after and never before.
//!
//! Defaults come from `research/change-intelligence.md` §B (Seer, Sentry, Otava, Kayenta).

use std::collections::BTreeMap;

use crate::sketch::{LatencySketch, RELATIVE_ACCURACY, put_varint, take_varint};
use crate::stats::{
    Interval, quantile_ratio, quantile_ratio_p_value, rate_difference, rate_difference_p_value,
};

/// What one side of a comparison saw for one operation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WindowStats {
    /// Durations, each span counted as many times as it stands for (its adjusted count).
    pub latency: LatencySketch,
    /// Spans, errors and error types, weighted the same way: estimated totals.
    pub spans: u64,
    pub errors: u64,
    /// `exception.type` (or the status message when there is none) → count.
    pub error_types: BTreeMap<String, u64>,
    /// Spans actually seen (what intervals are computed from): `spans` when nothing was
    /// sampled.
    pub sampled: u64,
}

/// The version bytes of [`WindowStats::encode`]: 1 had no sampled count.
const WINDOW_ENCODING_V1: u8 = 1;
const WINDOW_ENCODING_V2: u8 = 2;
/// Error types are kept to this many bytes (longer status messages are cut).
pub const MAX_ERROR_TYPE_BYTES: usize = 200;

impl WindowStats {
    /// Adds one span that was not sampled.
    pub fn add(&mut self, duration_nanos: u64, error_type: Option<&str>, is_error: bool) {
        self.add_sampled(duration_nanos, error_type, is_error, 1);
    }

    /// Adds one span that stands for `adjusted_count` spans (1 when it was not sampled).
    pub fn add_sampled(
        &mut self,
        duration_nanos: u64,
        error_type: Option<&str>,
        is_error: bool,
        adjusted_count: u64,
    ) {
        let weight = adjusted_count.max(1);
        self.latency.add_n(duration_nanos, weight);
        self.spans += weight;
        self.sampled += 1;
        if is_error {
            self.errors += weight;
            if let Some(kind) = error_type.filter(|k| !k.is_empty()) {
                let kind = truncate(kind, MAX_ERROR_TYPE_BYTES);
                match self.error_types.get_mut(kind) {
                    Some(count) => *count += weight,
                    None => {
                        self.error_types.insert(kind.to_owned(), weight);
                    }
                }
            }
        }
    }

    /// How many spans the statistics may count on: those seen, not those estimated.
    pub fn sample_size(&self) -> u64 {
        if self.sampled == 0 { self.spans } else { self.sampled.min(self.spans) }
    }

    /// Whether the counts are estimates (some spans stood for more than one).
    pub fn is_estimate(&self) -> bool {
        self.sample_size() < self.spans
    }

    /// Errors among the spans seen, as the error rate's statistics count them.
    fn sampled_errors(&self) -> u64 {
        if self.spans == 0 {
            return 0;
        }
        ((self.errors as f64 / self.spans as f64) * self.sample_size() as f64).round() as u64
    }

    pub fn merge(&mut self, other: &WindowStats) {
        self.latency.merge(&other.latency);
        self.spans += other.spans;
        self.sampled += other.sample_size();
        self.errors += other.errors;
        for (kind, count) in &other.error_types {
            *self.error_types.entry(kind.clone()).or_default() += count;
        }
    }

    /// A compact, versioned byte form: `[2, varint spans, varint sampled, varint errors,
    /// varint types, (varint len, utf-8, varint count)..., sketch]`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![WINDOW_ENCODING_V2];
        put_varint(&mut out, self.spans);
        put_varint(&mut out, self.sample_size());
        put_varint(&mut out, self.errors);
        put_varint(&mut out, self.error_types.len() as u64);
        for (kind, count) in &self.error_types {
            put_varint(&mut out, kind.len() as u64);
            out.extend_from_slice(kind.as_bytes());
            put_varint(&mut out, *count);
        }
        out.extend_from_slice(&self.latency.encode());
        out
    }

    /// Reads [`WindowStats::encode`]'s form; `None` for anything else (never panics).
    pub fn decode(bytes: &[u8]) -> Option<WindowStats> {
        let (&version, mut rest) = bytes.split_first()?;
        let spans = take_varint(&mut rest)?;
        let sampled = match version {
            WINDOW_ENCODING_V1 => spans,
            WINDOW_ENCODING_V2 => take_varint(&mut rest)?,
            _ => return None,
        };
        let errors = take_varint(&mut rest)?;
        let num_types = take_varint(&mut rest)?;
        let mut error_types = BTreeMap::new();
        for _ in 0..num_types {
            let len = usize::try_from(take_varint(&mut rest)?).ok()?;
            if len > rest.len() {
                return None;
            }
            let (kind, tail) = rest.split_at(len);
            rest = tail;
            let kind = std::str::from_utf8(kind).ok()?.to_owned();
            error_types.insert(kind, take_varint(&mut rest)?);
        }
        let latency = LatencySketch::decode(rest)?;
        Some(WindowStats { latency, spans, errors, error_types, sampled })
    }
}

/// `text` cut to at most `max` bytes on a character boundary.
fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    LatencyP50,
    LatencyP95,
    LatencyP99,
    ErrorRate,
    NewErrorTypes,
}

impl Metric {
    pub const ALL: [Metric; 5] = [
        Metric::LatencyP50,
        Metric::LatencyP95,
        Metric::LatencyP99,
        Metric::ErrorRate,
        Metric::NewErrorTypes,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Metric::LatencyP50 => "latency_p50",
            Metric::LatencyP95 => "latency_p95",
            Metric::LatencyP99 => "latency_p99",
            Metric::ErrorRate => "error_rate",
            Metric::NewErrorTypes => "new_error_types",
        }
    }

    pub fn is_latency(self) -> bool {
        self.quantile().is_some()
    }

    fn quantile(self) -> Option<f64> {
        match self {
            Metric::LatencyP50 => Some(0.50),
            Metric::LatencyP95 => Some(0.95),
            Metric::LatencyP99 => Some(0.99),
            Metric::ErrorRate | Metric::NewErrorTypes => None,
        }
    }
}

/// Decision thresholds; `Thresholds::default()` are the researched defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    /// The false-positive level of one test (before correction across operations).
    pub alpha: f64,
    /// The smallest latency change worth reporting, as a fraction (0.10 = 10%).
    pub min_effect_p50: f64,
    pub min_effect_p95: f64,
    pub min_effect_p99: f64,
    /// The smallest absolute latency change worth reporting.
    pub min_delta_nanos: f64,
    pub min_samples_p50: u64,
    pub min_samples_p95: u64,
    pub min_samples_p99: u64,
    /// Error rate: enough evidence is this many errors in all, or `min_error_requests` spans on
    /// each side.
    pub min_errors: u64,
    pub min_error_requests: u64,
    /// The smallest error-rate increase worth reporting, in absolute terms (0.001 = 0.1 pp) ...
    pub min_error_rate_delta: f64,
    /// ... and relative to the rate before (0.2 = +20%).
    pub min_error_rate_effect: f64,
    /// A new error type counts when seen at least this often after the deploy.
    pub min_new_error_count: u64,
}

impl Default for Thresholds {
    fn default() -> Thresholds {
        Thresholds {
            alpha: 0.001,
            min_effect_p50: 0.10,
            min_effect_p95: 0.10,
            min_effect_p99: 0.20,
            min_delta_nanos: 5e6,
            min_samples_p50: 50,
            min_samples_p95: 200,
            min_samples_p99: 1_000,
            min_errors: 30,
            min_error_requests: 1_000,
            min_error_rate_delta: 0.001,
            min_error_rate_effect: 0.20,
            min_new_error_count: 3,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Regressed,
    Improved,
    NoChange,
    Inconclusive { reason: String },
}

impl Verdict {
    pub fn as_str(&self) -> &'static str {
        match self {
            Verdict::Regressed => "regressed",
            Verdict::Improved => "improved",
            Verdict::NoChange => "no_change",
            Verdict::Inconclusive { .. } => "inconclusive",
        }
    }
}

/// The outcome of one comparison, with everything needed to show why.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub metric: Metric,
    pub verdict: Verdict,
    /// Latency: nanoseconds; error rate: a fraction; new error types: their count.
    pub before: f64,
    pub after: f64,
    /// Latency: the ratio after/before; error rate: the difference after − before; new error
    /// types: their number. `None` when not computable.
    pub effect: Option<Interval>,
    pub before_samples: u64,
    pub after_samples: u64,
    /// For `NewErrorTypes`: which.
    pub new_error_types: Vec<String>,
    /// For a `Regressed` or `Improved` verdict whose interval excludes no change but whose
    /// size is under the materiality floor: why it is minor ("+2.0 ms, below the 5 ms
    /// floor"). `None` for a material verdict.
    pub minor: Option<String>,
}

/// Compares `after` with `before` on `metric`.
pub fn compare(
    metric: Metric,
    before: &WindowStats,
    after: &WindowStats,
    thresholds: &Thresholds,
) -> Comparison {
    let mut comparison = Comparison {
        metric,
        verdict: Verdict::NoChange,
        before: 0.0,
        after: 0.0,
        effect: None,
        before_samples: before.spans,
        after_samples: after.spans,
        new_error_types: Vec::new(),
        minor: None,
    };
    comparison.verdict = match metric {
        Metric::ErrorRate => error_rate(before, after, thresholds, &mut comparison),
        Metric::NewErrorTypes => new_error_types(before, after, thresholds, &mut comparison),
        _ => latency(metric, before, after, thresholds, &mut comparison),
    };
    comparison
}

/// The p-value of "`metric` did not move" (two-sided), for false-discovery control across a
/// deploy's tests. `None` for new error types (a rule, not a test) and for empty sides.
pub fn p_value(metric: Metric, before: &WindowStats, after: &WindowStats) -> Option<f64> {
    match metric {
        Metric::NewErrorTypes => None,
        Metric::ErrorRate => rate_difference_p_value(
            before.sampled_errors(),
            before.sample_size(),
            after.sampled_errors(),
            after.sample_size(),
        ),
        _ => quantile_ratio_p_value(
            (&before.latency, before.sample_size()),
            (&after.latency, after.sample_size()),
            metric.quantile()?,
        ),
    }
}

fn latency(
    metric: Metric,
    before: &WindowStats,
    after: &WindowStats,
    t: &Thresholds,
    out: &mut Comparison,
) -> Verdict {
    let q = metric.quantile().expect("latency metrics have a quantile");
    let (min_samples, min_effect) = match metric {
        Metric::LatencyP50 => (t.min_samples_p50, t.min_effect_p50),
        Metric::LatencyP95 => (t.min_samples_p95, t.min_effect_p95),
        _ => (t.min_samples_p99, t.min_effect_p99),
    };
    let (n_before, n_after) = (before.sample_size(), after.sample_size());
    out.before_samples = n_before;
    out.after_samples = n_after;
    out.before = before.latency.quantile(q).unwrap_or(0.0);
    out.after = after.latency.quantile(q).unwrap_or(0.0);
    if n_before < min_samples || n_after < min_samples {
        return Verdict::Inconclusive {
            reason: format!(
                "{} needs at least {min_samples} spans on each side; there are {n_before} before and {n_after} after",
                metric.as_str()
            ),
        };
    }
    let Some(ratio) =
        quantile_ratio((&before.latency, n_before), (&after.latency, n_after), q, 1.0 - t.alpha)
    else {
        return Verdict::Inconclusive { reason: "no spans to compare".into() };
    };
    out.effect = Some(ratio);
    // Below the sketch's accuracy a move is not measured at all; above it, a move whose
    // interval excludes 1 is reported, as minor when it is under the materiality floor.
    let resolution = 2.0 * RELATIVE_ACCURACY * out.before;
    let floor = t.min_delta_nanos.max(resolution);
    let delta = out.after - out.before;
    let band = (1.0 / (1.0 + min_effect), 1.0 + min_effect);
    let minor = |size: f64, effect: f64, effect_floor: f64| {
        if size < floor {
            format!(
                "{}{}, below the {} floor",
                if delta < 0.0 { "-" } else { "+" },
                ms(size),
                ms(t.min_delta_nanos.max(resolution))
            )
        } else {
            format!(
                "{:+.0}%, below the {:.0}% minimum effect",
                100.0 * (effect - 1.0),
                100.0 * (effect_floor - 1.0).abs()
            )
        }
    };
    if ratio.low > 1.0 {
        if delta <= resolution {
            Verdict::NoChange
        } else {
            if ratio.estimate < band.1 || delta < floor {
                out.minor = Some(minor(delta, ratio.estimate, band.1));
            }
            Verdict::Regressed
        }
    } else if ratio.high < 1.0 {
        if -delta <= resolution {
            Verdict::NoChange
        } else {
            if ratio.estimate > band.0 || -delta < floor {
                out.minor = Some(minor(-delta, ratio.estimate, band.0));
            }
            Verdict::Improved
        }
    } else if ratio.estimate > band.0 && ratio.estimate < band.1 {
        Verdict::NoChange
    } else {
        Verdict::Inconclusive {
            reason: format!(
                "{} moved by a factor of {:.2}, but the interval {:.2}..{:.2} is too wide to tell; more traffic will narrow it",
                metric.as_str(),
                ratio.estimate,
                ratio.low,
                ratio.high
            ),
        }
    }
}

/// Nanoseconds as "2.0 ms".
fn ms(nanos: f64) -> String {
    format!("{:.1} ms", nanos / 1e6)
}

fn error_rate(
    before: &WindowStats,
    after: &WindowStats,
    t: &Thresholds,
    out: &mut Comparison,
) -> Verdict {
    let enough_errors = before.errors + after.errors >= t.min_errors;
    let enough_requests =
        before.spans >= t.min_error_requests && after.spans >= t.min_error_requests;
    if before.spans > 0 {
        out.before = before.errors as f64 / before.spans as f64;
    }
    if after.spans > 0 {
        out.after = after.errors as f64 / after.spans as f64;
    }
    if !(enough_errors || enough_requests) || before.spans == 0 || after.spans == 0 {
        return Verdict::Inconclusive {
            reason: format!(
                "error_rate needs {} errors in all or {} spans on each side; there are {} errors in {} spans before and {} in {} after",
                t.min_errors,
                t.min_error_requests,
                before.errors,
                before.spans,
                after.errors,
                after.spans
            ),
        };
    }
    let Some(diff) = rate_difference(
        before.sampled_errors(),
        before.sample_size(),
        after.sampled_errors(),
        after.sample_size(),
        1.0 - t.alpha,
    ) else {
        return Verdict::Inconclusive { reason: "error counts exceed span counts".into() };
    };
    out.effect = Some(diff);
    let material = |delta: f64, base: f64| {
        delta.abs() >= t.min_error_rate_delta && delta.abs() >= t.min_error_rate_effect * base
    };
    let minor = |delta: f64| {
        format!(
            "{:+.2} percentage points, below the {:.2} point and {:.0}% floors",
            100.0 * delta,
            100.0 * t.min_error_rate_delta,
            100.0 * t.min_error_rate_effect
        )
    };
    if diff.low > 0.0 {
        if !material(diff.estimate, out.before) {
            out.minor = Some(minor(diff.estimate));
        }
        Verdict::Regressed
    } else if diff.high < 0.0 {
        if !material(diff.estimate, out.before) {
            out.minor = Some(minor(diff.estimate));
        }
        Verdict::Improved
    } else if !material(diff.estimate, out.before) {
        Verdict::NoChange
    } else {
        Verdict::Inconclusive {
            reason: format!(
                "error_rate moved from {:.4} to {:.4}, but the interval of the difference {:.4}..{:.4} is too wide to tell",
                out.before, out.after, diff.low, diff.high
            ),
        }
    }
}

fn new_error_types(
    before: &WindowStats,
    after: &WindowStats,
    t: &Thresholds,
    out: &mut Comparison,
) -> Verdict {
    out.new_error_types = after
        .error_types
        .iter()
        .filter(|&(kind, &count)| {
            count >= t.min_new_error_count && !before.error_types.contains_key(kind)
        })
        .map(|(kind, _)| kind.clone())
        .collect();
    out.before = 0.0;
    out.after = out.new_error_types.len() as f64;
    if out.new_error_types.is_empty() {
        return Verdict::NoChange;
    }
    // "Never seen before" means something only after enough traffic before.
    if before.spans < t.min_samples_p50 {
        return Verdict::Inconclusive {
            reason: format!(
                "new error types appeared ({}), but only {} spans were seen before the deploy",
                out.new_error_types.join(", "),
                before.spans
            ),
        };
    }
    Verdict::Regressed
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::stats::normal_quantile;

    /// Deterministic log-normal durations around `median_nanos`.
    fn window(n: u64, median_nanos: f64, salt: u64, error_every: u64) -> WindowStats {
        let mut stats = WindowStats::default();
        for i in 0..n {
            let u = ((i * 7919 + salt * 104_729) % 1_000_003) as f64 / 1_000_003.0;
            let z = normal_quantile(u.clamp(1e-6, 1.0 - 1e-6));
            let failed = error_every > 0 && i % error_every == 0;
            stats.add((median_nanos * (0.5 * z).exp()) as u64, Some("TimeoutError"), failed);
        }
        stats
    }

    #[test]
    fn mixed_rate_sampling_recovers_the_whole_with_the_sample_s_confidence() {
        // 20,000 spans; errors and the slowest 10% kept at 100%, the rest at 10% (each kept
        // one standing for 10), as tail-based samplers do.
        let mut whole = WindowStats::default();
        let mut sampled = WindowStats::default();
        let mut durations: Vec<u64> = Vec::new();
        for i in 0..20_000u64 {
            let u = ((i * 7919 + 17) % 1_000_003) as f64 / 1_000_003.0;
            durations
                .push((30e6 * (0.6 * normal_quantile(u.clamp(1e-6, 1.0 - 1e-6))).exp()) as u64);
        }
        let mut sorted = durations.clone();
        sorted.sort_unstable();
        let slow = sorted[sorted.len() * 9 / 10];
        let mut fast_seen = 0u64;
        for (i, &d) in durations.iter().enumerate() {
            let failed = (i as u64).is_multiple_of(50);
            whole.add(d, Some("TimeoutError"), failed);
            if failed || d >= slow {
                sampled.add_sampled(d, Some("TimeoutError"), failed, 1);
            } else {
                fast_seen += 1;
                if fast_seen.is_multiple_of(10) {
                    sampled.add_sampled(d, Some("TimeoutError"), failed, 10);
                }
            }
        }
        let p95 = |w: &WindowStats| w.latency.quantile(0.95).unwrap();
        assert!((p95(&sampled) / p95(&whole) - 1.0).abs() <= 2.0 * RELATIVE_ACCURACY, "p95");
        let rate = |w: &WindowStats| w.errors as f64 / w.spans as f64;
        assert!((rate(&sampled) / rate(&whole) - 1.0).abs() < 0.05, "error rate");
        assert!((sampled.spans as f64 / whole.spans as f64 - 1.0).abs() < 0.05, "count");
        // The statistics count the spans seen: about 3,800, not 20,000.
        assert!(sampled.is_estimate() && (3_500..4_200).contains(&sampled.sample_size()));
        let c = compare(Metric::LatencyP95, &whole, &sampled, &Thresholds::default());
        assert_eq!((c.verdict, c.after_samples), (Verdict::NoChange, sampled.sample_size()));
        // And the encoding keeps both.
        assert_eq!(WindowStats::decode(&sampled.encode()), Some(sampled.clone()));
    }

    fn verdict(metric: Metric, before: &WindowStats, after: &WindowStats) -> Verdict {
        compare(metric, before, after, &Thresholds::default()).verdict
    }

    #[test]
    fn a_forty_percent_slowdown_regresses_every_quantile() {
        let before = window(5_000, 50e6, 1, 0);
        let after = window(5_000, 70e6, 2, 0);
        for metric in [Metric::LatencyP50, Metric::LatencyP95, Metric::LatencyP99] {
            let c = compare(metric, &before, &after, &Thresholds::default());
            assert_eq!(c.verdict, Verdict::Regressed, "{c:?}");
            assert!(c.effect.unwrap().contains(1.4), "{c:?}");
        }
        assert_eq!(verdict(Metric::LatencyP95, &after, &before), Verdict::Improved);
    }

    #[test]
    fn real_moves_under_the_floors_are_minor_and_moves_within_accuracy_are_no_change() {
        // 8% slower: real with this much traffic, but below the 10% that matters.
        let before = window(20_000, 50e6, 1, 0);
        let after = window(20_000, 54e6, 2, 0);
        let c = compare(Metric::LatencyP50, &before, &after, &Thresholds::default());
        assert_eq!(c.verdict, Verdict::Regressed, "{c:?}");
        assert!(c.minor.as_deref().unwrap().contains("below the 5.0 ms floor"), "{c:?}");
        // 40% slower, but 2 ms on 5 ms spans: below the 5 ms floor, and said so.
        let before = window(5_000, 5e6, 1, 0);
        let after = window(5_000, 7e6, 2, 0);
        let c = compare(Metric::LatencyP50, &before, &after, &Thresholds::default());
        assert_eq!(c.verdict, Verdict::Regressed, "{c:?}");
        let reason = c.minor.unwrap();
        assert!(
            reason.starts_with("+2.0 ms") && reason.contains("below the 5.0 ms floor"),
            "{reason}"
        );
        assert!(c.effect.unwrap().contains(1.4));
        // Faster the same way: a minor improvement.
        let c = compare(Metric::LatencyP50, &after, &before, &Thresholds::default());
        assert_eq!((&c.verdict, c.minor.is_some()), (&Verdict::Improved, true), "{c:?}");
        // A material regression is not minor.
        let c = compare(
            Metric::LatencyP50,
            &window(5_000, 50e6, 1, 0),
            &window(5_000, 70e6, 2, 0),
            &Thresholds::default(),
        );
        assert_eq!((c.verdict, c.minor), (Verdict::Regressed, None));
        // The same distribution on both sides (an A/A deploy): no change.
        let same = window(20_000, 50e6, 1, 0);
        assert_eq!(
            verdict(Metric::LatencyP50, &same, &window(20_000, 50e6, 2, 0)),
            Verdict::NoChange
        );
    }

    #[test]
    fn too_few_samples_are_inconclusive_with_the_reason() {
        let before = window(150, 50e6, 1, 0);
        let after = window(150, 90e6, 2, 0);
        assert_eq!(verdict(Metric::LatencyP50, &before, &after), Verdict::Regressed);
        match verdict(Metric::LatencyP95, &before, &after) {
            Verdict::Inconclusive { reason } => {
                assert!(
                    reason.contains("at least 200 spans") && reason.contains("150 before"),
                    "{reason}"
                )
            }
            other => panic!("{other:?}"),
        }
        let few_errors = window(100, 50e6, 1, 20);
        assert!(matches!(
            verdict(Metric::ErrorRate, &few_errors, &few_errors),
            Verdict::Inconclusive { .. }
        ));
    }

    #[test]
    fn error_rates_and_new_error_types() {
        let before = window(5_000, 50e6, 1, 100); // 1%
        let after = window(5_000, 50e6, 2, 20); // 5%
        let c = compare(Metric::ErrorRate, &before, &after, &Thresholds::default());
        assert_eq!(c.verdict, Verdict::Regressed, "{c:?}");
        assert!(c.effect.unwrap().contains(0.04), "{c:?}");
        assert_eq!(verdict(Metric::ErrorRate, &before, &before), Verdict::NoChange);
        assert_eq!(verdict(Metric::NewErrorTypes, &before, &after), Verdict::NoChange);
        let clean = window(5_000, 50e6, 1, 0);
        let c = compare(Metric::NewErrorTypes, &clean, &after, &Thresholds::default());
        assert_eq!(
            (c.verdict, c.new_error_types),
            (Verdict::Regressed, vec!["TimeoutError".into()])
        );
    }

    proptest! {
        #[test]
        fn window_encoding_round_trips(n in 0u64..300, salt in 0u64..100, error_every in 0u64..10) {
            let w = window(n, 20e6, salt, error_every);
            prop_assert_eq!(WindowStats::decode(&w.encode()), Some(w));
        }

        #[test]
        fn window_decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = WindowStats::decode(&bytes);
        }

        #[test]
        fn identical_windows_never_regress(
            n in 0u64..4_000, median in 1e4f64..1e10, salt in 0u64..100, error_every in 0u64..50,
        ) {
            let w = window(n, median, salt, error_every);
            for metric in Metric::ALL {
                let c = compare(metric, &w, &w, &Thresholds::default());
                prop_assert!(!matches!(c.verdict, Verdict::Regressed | Verdict::Improved), "{c:?}");
            }
        }

        /// Two samples of the same distribution (different draws) at the default α.
        #[test]
        fn same_distribution_draws_do_not_regress(
            n in 200u64..4_000, median in 1e6f64..1e9, salt in 0u64..100,
        ) {
            let before = window(n, median, salt, 0);
            let after = window(n, median, salt + 1, 0);
            for metric in [Metric::LatencyP50, Metric::LatencyP95, Metric::LatencyP99] {
                let c = compare(metric, &before, &after, &Thresholds::default());
                prop_assert!(c.verdict != Verdict::Regressed, "{c:?}");
            }
        }
    }
}
