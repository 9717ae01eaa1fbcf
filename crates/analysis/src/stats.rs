//! Statistics read straight off sketch buckets, with no raw samples and no resampling.
//!
//! - Quantile intervals from binomial order statistics: the q-quantile of n spans lies between
//!   the spans of rank `nq ∓ z·√(nq(1−q))` with the stated confidence whatever the
//!   distribution; a sketch gives those spans within its 1% accuracy, which widens the
//!   interval by that much (Spotify's observation that the Poisson bootstrap of a quantile is
//!   binomial in the rank).
//! - The ratio of two quantiles: each side's interval at the Bonferroni-split confidence, then
//!   `[after.low / before.high, after.high / before.low]`.
//! - Mann–Whitney U with tie correction, buckets being the ties.
//! - Error rates: Wilson intervals per side and Newcombe's interval of their difference.

use crate::sketch::{LatencySketch, RELATIVE_ACCURACY};

/// A point estimate and the interval around it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    pub low: f64,
    pub estimate: f64,
    pub high: f64,
}

impl Interval {
    pub fn contains(&self, value: f64) -> bool {
        self.low <= value && value <= self.high
    }
}

/// The two-sided critical value of the standard normal for `confidence` (0.999 → 3.29).
pub fn z_for_confidence(confidence: f64) -> f64 {
    normal_quantile(1.0 - (1.0 - confidence) / 2.0)
}

/// A sketch's cumulative bucket counts, to find the span of any rank by binary search.
#[derive(Debug, Clone)]
pub struct Ranks {
    /// `cumulative[i]`: spans in buckets `0..=i`.
    cumulative: Vec<u64>,
    values: Vec<f64>,
    /// The spans actually seen, when the counts stand for more (sampling): the intervals'
    /// width follows this.
    sampled: u64,
}

impl Ranks {
    pub fn of(sketch: &LatencySketch) -> Ranks {
        Ranks::sampled(sketch, sketch.count())
    }

    /// A sketch whose counts are weighted by sampling, of which `sampled` spans were seen.
    pub fn sampled(sketch: &LatencySketch, sampled: u64) -> Ranks {
        let mut total = 0;
        let (cumulative, values) = sketch
            .buckets()
            .map(|bucket| {
                total += bucket.count;
                (total, bucket.value_nanos)
            })
            .unzip();
        Ranks { cumulative, values, sampled: sampled.min(total).max(1) }
    }

    pub fn count(&self) -> u64 {
        self.cumulative.last().copied().unwrap_or(0)
    }

    /// The duration of the span at 0-based `rank`, as the sketch reports it.
    pub fn value_at_rank(&self, rank: u64) -> Option<f64> {
        let bucket = self.cumulative.partition_point(|&seen| seen <= rank);
        self.values.get(bucket).copied()
    }

    /// The `q`-quantile with a distribution-free interval at `confidence`.
    pub fn quantile_interval(&self, q: f64, confidence: f64) -> Option<Interval> {
        let n = self.count();
        if n == 0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let z = z_for_confidence(confidence);
        let center = q * (n - 1) as f64;
        // The binomial spread of the rank among the spans seen, scaled to the counts.
        let seen = self.sampled as f64;
        let spread = z * (seen * q * (1.0 - q)).sqrt() * (n as f64 / seen);
        let last = (n - 1) as f64;
        let low_rank = (center - spread).floor().clamp(0.0, last) as u64;
        let high_rank = (center + spread).ceil().clamp(0.0, last) as u64;
        Some(Interval {
            low: self.value_at_rank(low_rank)? / (1.0 + RELATIVE_ACCURACY),
            estimate: self.value_at_rank(center.floor() as u64)?,
            high: self.value_at_rank(high_rank)? / (1.0 - RELATIVE_ACCURACY),
        })
    }
}

/// The `q`-quantile of `sketch` (nanoseconds) with a distribution-free interval at
/// `confidence`. `None` when the sketch is empty.
pub fn quantile_interval(sketch: &LatencySketch, q: f64, confidence: f64) -> Option<Interval> {
    Ranks::of(sketch).quantile_interval(q, confidence)
}

/// `after`'s q-quantile over `before`'s, with an interval at `confidence` overall.
/// Each side is a sketch and the number of spans actually seen (its count, unless sampled).
pub fn quantile_ratio(
    before: (&LatencySketch, u64),
    after: (&LatencySketch, u64),
    q: f64,
    confidence: f64,
) -> Option<Interval> {
    let ranks = |(sketch, sampled): (&LatencySketch, u64)| Ranks::sampled(sketch, sampled);
    ranks_ratio(&ranks(before), &ranks(after), q, confidence)
}

fn ranks_ratio(before: &Ranks, after: &Ranks, q: f64, confidence: f64) -> Option<Interval> {
    let each = 1.0 - (1.0 - confidence) / 2.0;
    let b = before.quantile_interval(q, each)?;
    let a = after.quantile_interval(q, each)?;
    let ratio = |num: f64, den: f64| if den > 0.0 { num / den } else { f64::INFINITY };
    // Zero-length spans: a ratio of zeros is no change.
    let estimate =
        if a.estimate == 0.0 && b.estimate == 0.0 { 1.0 } else { ratio(a.estimate, b.estimate) };
    Some(Interval {
        low: if a.low == 0.0 { 0.0 } else { ratio(a.low, b.high) },
        estimate,
        high: if a.high == 0.0 { 0.0 } else { ratio(a.high, b.low) },
    })
}

/// The smallest p-value these functions report; below it every test is equally decisive.
pub const MIN_P_VALUE: f64 = 1e-13;

/// The p-value of "the q-quantile did not move": the smallest `1 − confidence` at which
/// [`quantile_ratio`]'s interval excludes 1. `None` when a side is empty.
pub fn quantile_ratio_p_value(
    before: (&LatencySketch, u64),
    after: (&LatencySketch, u64),
    q: f64,
) -> Option<f64> {
    let (before, after) = (Ranks::sampled(before.0, before.1), Ranks::sampled(after.0, after.1));
    ranks_ratio(&before, &after, q, 0.5)?;
    Some(smallest_alpha_excluding(|alpha| {
        ranks_ratio(&before, &after, q, 1.0 - alpha).is_some_and(|r| !r.contains(1.0))
    }))
}

/// The p-value of "the error rate did not move", read off [`rate_difference`] the same way.
pub fn rate_difference_p_value(
    before_errors: u64,
    before_n: u64,
    after_errors: u64,
    after_n: u64,
) -> Option<f64> {
    rate_difference(before_errors, before_n, after_errors, after_n, 0.5)?;
    Some(smallest_alpha_excluding(|alpha| {
        rate_difference(before_errors, before_n, after_errors, after_n, 1.0 - alpha)
            .is_some_and(|d| !d.contains(0.0))
    }))
}

/// The smallest α in `[MIN_P_VALUE, 1]` at which `excludes(α)` holds, for an interval that
/// widens as α shrinks (bisection on log α, to 1% relative precision).
fn smallest_alpha_excluding(excludes: impl Fn(f64) -> bool) -> f64 {
    let (mut low, mut high) = (MIN_P_VALUE.log10(), 0.0f64);
    if excludes(MIN_P_VALUE) {
        return MIN_P_VALUE;
    }
    if !excludes(0.999) {
        return 1.0;
    }
    while high - low > 0.004 {
        let mid = (low + high) / 2.0;
        if excludes(10f64.powf(mid)) { high = mid } else { low = mid }
    }
    10f64.powf(high).min(1.0)
}

/// The Mann–Whitney U test of `after` against `before`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RankTest {
    /// The probability that a span after is slower than one before (ties count half): 0.5
    /// when nothing moved.
    pub probability_slower: f64,
    pub z: f64,
    /// Two-sided.
    pub p_value: f64,
}

pub fn mann_whitney(before: &LatencySketch, after: &LatencySketch) -> Option<RankTest> {
    let (n1, n2) = (before.count() as f64, after.count() as f64);
    if n1 == 0.0 || n2 == 0.0 {
        return None;
    }
    // Walk both sketches' buckets in order; each bucket is one group of ties.
    let mut b = before.buckets().peekable();
    let mut a = after.buckets().peekable();
    let (mut rank_sum_after, mut seen, mut tie_term) = (0.0, 0.0, 0.0);
    loop {
        let next = match (b.peek(), a.peek()) {
            (None, None) => break,
            (Some(x), Some(y)) => x.upper_nanos.min(y.upper_nanos),
            (Some(x), None) => x.upper_nanos,
            (None, Some(y)) => y.upper_nanos,
        };
        let from_before = b.next_if(|x| x.upper_nanos == next).map_or(0, |x| x.count) as f64;
        let from_after = a.next_if(|y| y.upper_nanos == next).map_or(0, |y| y.count) as f64;
        let tied = from_before + from_after;
        let mid_rank = seen + (tied + 1.0) / 2.0;
        rank_sum_after += from_after * mid_rank;
        tie_term += tied * tied * tied - tied;
        seen += tied;
    }
    let u = rank_sum_after - n2 * (n2 + 1.0) / 2.0;
    let n = n1 + n2;
    let variance = n1 * n2 / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0)).max(1.0));
    let z = if variance > 0.0 { (u - n1 * n2 / 2.0) / variance.sqrt() } else { 0.0 };
    Some(RankTest {
        probability_slower: u / (n1 * n2),
        z,
        p_value: 2.0 * (1.0 - normal_cdf(z.abs())),
    })
}

/// Wilson's score interval of a proportion `successes / n`.
pub fn wilson_interval(successes: u64, n: u64, confidence: f64) -> Option<Interval> {
    if n == 0 || successes > n {
        return None;
    }
    let (k, n) = (successes as f64, n as f64);
    let z = z_for_confidence(confidence);
    let p = k / n;
    let denominator = 1.0 + z * z / n;
    let center = (p + z * z / (2.0 * n)) / denominator;
    let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / denominator;
    Some(Interval { low: (center - half).max(0.0), estimate: p, high: (center + half).min(1.0) })
}

/// `after`'s error rate minus `before`'s, with Newcombe's hybrid score interval.
pub fn rate_difference(
    before_errors: u64,
    before_n: u64,
    after_errors: u64,
    after_n: u64,
    confidence: f64,
) -> Option<Interval> {
    let b = wilson_interval(before_errors, before_n, confidence)?;
    let a = wilson_interval(after_errors, after_n, confidence)?;
    let d = a.estimate - b.estimate;
    Some(Interval {
        low: d - ((a.estimate - a.low).powi(2) + (b.high - b.estimate).powi(2)).sqrt(),
        estimate: d,
        high: d + ((a.high - a.estimate).powi(2) + (b.estimate - b.low).powi(2)).sqrt(),
    })
}

/// The standard normal distribution function (through Abramowitz and Stegun's 7.1.26
/// approximation of `erfc`, absolute error below 1.5e-7).
pub fn normal_cdf(z: f64) -> f64 {
    0.5 * erfc(-z / std::f64::consts::SQRT_2)
}

fn erfc(x: f64) -> f64 {
    // On |x|, reflected for negative x.
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let tail = poly * (-x * x).exp();
    if x >= 0.0 { tail } else { 2.0 - tail }
}

/// The inverse of [`normal_cdf`] (Acklam's rational approximation, relative error 1.15e-9).
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    if p <= 0.0 {
        return f64::NEG_INFINITY;
    }
    if p >= 1.0 {
        return f64::INFINITY;
    }
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.024_25 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.024_25 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// A sketch with every span seen (nothing sampled).
    fn all(sketch: &LatencySketch) -> (&LatencySketch, u64) {
        (sketch, sketch.count())
    }

    #[test]
    fn sampled_counts_give_the_quantile_of_the_whole_and_the_width_of_the_sample() {
        // 1,000 spans seen, each standing for 10: the same quantile as all 10,000, and the
        // interval of 1,000.
        let seen: Vec<u64> = durations(1_000, 20e6, 3).collect();
        let mut weighted = LatencySketch::new();
        for &d in &seen {
            weighted.add_n(d, 10);
        }
        let unweighted = sketch_of(seen.iter().copied());
        let sampled = Ranks::sampled(&weighted, 1_000).quantile_interval(0.5, 0.99).unwrap();
        let plain = Ranks::of(&unweighted).quantile_interval(0.5, 0.99).unwrap();
        assert!((sampled.estimate / plain.estimate - 1.0).abs() < 0.03, "{sampled:?} {plain:?}");
        assert!(
            sampled.high / sampled.low >= 0.97 * (plain.high / plain.low),
            "{sampled:?} {plain:?}"
        );
        // Counting the weighted spans as seen would claim a far narrower interval.
        let overstated = Ranks::of(&weighted).quantile_interval(0.5, 0.99).unwrap();
        assert!(overstated.high / overstated.low < sampled.high / sampled.low, "{overstated:?}");
    }

    fn sketch_of(values: impl IntoIterator<Item = u64>) -> LatencySketch {
        let mut sketch = LatencySketch::new();
        for v in values {
            sketch.add(v);
        }
        sketch
    }

    /// Deterministic heavy-tailed durations around `median_nanos` (a log-normal shape from a
    /// fixed low-discrepancy sequence).
    fn durations(n: u64, median_nanos: f64, salt: u64) -> impl Iterator<Item = u64> {
        (0..n).map(move |i| {
            let u = ((i * 7919 + salt * 104_729) % 1_000_003) as f64 / 1_000_003.0;
            let z = normal_quantile(u.clamp(1e-6, 1.0 - 1e-6));
            (median_nanos * (0.6 * z).exp()) as u64
        })
    }

    #[test]
    fn normal_functions_match_known_values() {
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-7);
        assert!((normal_cdf(1.96) - 0.975).abs() < 1e-4);
        assert!((z_for_confidence(0.95) - 1.959_964).abs() < 1e-5);
        assert!((z_for_confidence(0.999) - 3.290_527).abs() < 1e-5);
        assert!((normal_quantile(normal_cdf(-2.5)) + 2.5).abs() < 1e-5);
    }

    #[test]
    fn a_quantile_interval_holds_the_true_quantile() {
        let values: Vec<u64> = durations(5_000, 20e6, 1).collect();
        let mut sorted = values.clone();
        sorted.sort_unstable();
        let sketch = sketch_of(values);
        for q in [0.5, 0.95, 0.99] {
            let truth = sorted[(q * 4_999.0) as usize] as f64;
            let interval = quantile_interval(&sketch, q, 0.999).unwrap();
            assert!(interval.contains(truth), "q={q}: {interval:?} vs {truth}");
            assert!(interval.high / interval.low < 1.3, "q={q}: {interval:?} is too wide");
        }
    }

    #[test]
    fn rank_test_sees_a_shift_and_not_a_copy() {
        let before = sketch_of(durations(2_000, 20e6, 1));
        let same = mann_whitney(&before, &before).unwrap();
        assert!((same.probability_slower - 0.5).abs() < 1e-9 && same.p_value > 0.99, "{same:?}");
        let slower = sketch_of(durations(2_000, 25e6, 2));
        let test = mann_whitney(&before, &slower).unwrap();
        assert!(test.probability_slower > 0.6 && test.p_value < 1e-6, "{test:?}");
    }

    #[test]
    fn error_rate_intervals() {
        let w = wilson_interval(0, 100, 0.95).unwrap();
        assert_eq!(w.low, 0.0);
        assert!(w.high > 0.03 && w.high < 0.04, "{w:?}");
        let d = rate_difference(10, 1_000, 60, 1_000, 0.999).unwrap();
        assert!(d.low > 0.0 && d.contains(0.05), "{d:?}");
        let none = rate_difference(10, 1_000, 12, 1_000, 0.999).unwrap();
        assert!(none.contains(0.0), "{none:?}");
        assert!(rate_difference(1, 0, 1, 10, 0.9).is_none());
    }

    #[test]
    fn p_values_sit_where_the_interval_starts_to_exclude_no_change() {
        let before = sketch_of(durations(3_000, 20e6, 1));
        let slower = sketch_of(durations(3_000, 23e6, 2));
        let p = quantile_ratio_p_value(all(&before), all(&slower), 0.5).unwrap();
        assert!(p < 1e-3 && p > MIN_P_VALUE, "{p}");
        let excludes = |alpha: f64| {
            !quantile_ratio(all(&before), all(&slower), 0.5, 1.0 - alpha).unwrap().contains(1.0)
        };
        assert!(excludes(p * 1.05) && !excludes(p * 0.9), "{p}");
        assert_eq!(quantile_ratio_p_value(all(&before), all(&before), 0.95), Some(1.0));
        assert_eq!(quantile_ratio_p_value(all(&before), (&LatencySketch::new(), 0), 0.5), None);
        let far = sketch_of(durations(3_000, 200e6, 2));
        assert_eq!(quantile_ratio_p_value(all(&before), all(&far), 0.5), Some(MIN_P_VALUE));
        let p = rate_difference_p_value(10, 1_000, 60, 1_000).unwrap();
        assert!(p < 1e-6, "{p}");
        assert!(rate_difference_p_value(10, 1_000, 11, 1_000).unwrap() > 0.5);
    }

    proptest! {
        /// Scaling every duration by a factor gives that factor, inside the interval.
        #[test]
        fn scaling_latencies_yields_the_factor_within_the_interval(
            factor in 1.0f64..3.0,
            n in 50u64..3_000,
            median in 1e5f64..1e9,
            salt in 0u64..1_000,
            q in prop_oneof![Just(0.5), Just(0.95), Just(0.99)],
        ) {
            let before: Vec<u64> = durations(n, median, salt).collect();
            let after = sketch_of(before.iter().map(|&v| (v as f64 * factor).round() as u64));
            let before = sketch_of(before);
            let ratio = quantile_ratio(all(&before), all(&after), q, 0.999).unwrap();
            prop_assert!(ratio.contains(factor), "{ratio:?} vs {factor}");
            prop_assert!((ratio.estimate / factor - 1.0).abs() <= 2.5 * RELATIVE_ACCURACY, "{ratio:?} vs {factor}");
        }

        #[test]
        fn identical_windows_give_a_ratio_interval_around_one(
            n in 1u64..3_000, median in 1e3f64..1e9, salt in 0u64..1_000, q in 0.0f64..=1.0,
        ) {
            let sketch = sketch_of(durations(n, median, salt));
            let ratio = quantile_ratio(all(&sketch), all(&sketch), q, 0.999).unwrap();
            prop_assert!(ratio.contains(1.0), "{ratio:?}");
        }
    }
}
