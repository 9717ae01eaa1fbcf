//! One deploy at one look: every operation the deployed version served, every metric, to
//! findings whose false-positive rate holds across operations *and* across repeated looks.
//!
//! - **Baseline.** While other versions still serve an operation (in the newest minute with
//!   spans both do), the deployed version is compared with them *in the same minutes*, which
//!   cancels time of day. After a full rollout it is compared with the window before the
//!   deploy; a regression or improvement then must also show against at least one of the
//!   same clock window a day and a week earlier that has data, or it becomes `Inconclusive`
//!   (time of day may explain it).
//! - **Repeated looks.** Detection looks once a minute from deploy + 2 min to + 60 min. Look
//!   `k` (minute `k + 1`) spends `α / (k (k + 1))` of the level; these sum to less than `α`,
//!   so by the union bound the chance of any false finding over all looks stays below `α`
//!   however often one looks (an alpha-spending, anytime-valid sequential test).
//! - **Many operations.** Within a look, the p-values of all (operation, metric) tests go
//!   through Benjamini–Hochberg at the look's level; each verdict is then taken with the
//!   false-coverage-adjusted level `R·α_k / m` (Benjamini–Yekutieli), so a test is
//!   significant exactly when BH rejects it and its interval is reported at that level.
//! - A decisive verdict (regressed, improved) is final at once; everything is final at 60 min.

use crate::compare::{Comparison, Metric, Thresholds, Verdict, WindowStats, compare, p_value};

/// The first and last look, in minutes after the deploy started.
pub const FIRST_LOOK_MINUTES: u32 = 2;
pub const LAST_LOOK_MINUTES: u32 = 60;

/// Spans of one operation in one minute after the deploy.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VersionSplit {
    /// Of the deployed version.
    pub deployed: WindowStats,
    /// Of every other version of the service.
    pub others: WindowStats,
}

/// An earlier window that guards a before/after comparison against time of day.
#[derive(Debug, Clone, PartialEq)]
pub struct Guard {
    /// For people: "a day earlier", "a week earlier".
    pub label: String,
    /// The after window's clock minutes, that much earlier.
    pub stats: WindowStats,
}

/// What detection needs of one operation around one deploy.
#[derive(Debug, Clone, PartialEq)]
pub struct OperationWindows {
    pub operation: String,
    pub span_kind: String,
    /// Minute by minute from the deploy's start up to the look.
    pub after: Vec<VersionSplit>,
    /// The window just before the deploy (every version).
    pub before: WindowStats,
    pub guards: Vec<Guard>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Baseline {
    /// Other versions in the same minutes (during a rollout).
    OtherVersionsSameMinutes,
    /// The window before the deploy.
    WindowBefore,
}

impl Baseline {
    pub fn as_str(self) -> &'static str {
        match self {
            Baseline::OtherVersionsSameMinutes => "other_versions_same_minutes",
            Baseline::WindowBefore => "window_before",
        }
    }
}

/// One metric of one operation at one look.
#[derive(Debug, Clone, PartialEq)]
pub struct OperationFinding {
    pub operation: String,
    pub span_kind: String,
    pub baseline: Baseline,
    pub comparison: Comparison,
    /// `None` for new error types (a rule) and empty sides.
    pub p_value: Option<f64>,
    /// What the guards said, when they were consulted.
    pub guard_note: Option<String>,
    /// No later look will change this verdict.
    pub is_final: bool,
    /// The windows compared (for exemplars and for auto-resolution later).
    pub baseline_stats: WindowStats,
    pub deployed_stats: WindowStats,
}

/// All findings of one look.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    pub look_minutes: u32,
    /// The level this look spent.
    pub alpha: f64,
    /// Tests with a p-value, and how many Benjamini–Hochberg rejected.
    pub tests: usize,
    pub rejected: usize,
    pub findings: Vec<OperationFinding>,
}

impl Detection {
    /// The level every verdict of this look was taken at: `max(R, 1)·α_k / m`, the
    /// false-coverage-adjusted level for `R` rejections among `m` tests.
    pub fn verdict_alpha(&self) -> f64 {
        verdict_alpha(self.alpha, self.tests, self.rejected)
    }
}

fn verdict_alpha(look_alpha: f64, tests: usize, rejected: usize) -> f64 {
    rejected.max(1) as f64 * look_alpha / tests.max(1) as f64
}

/// The level spent at the look `look_minutes` after the deploy.
pub fn look_alpha(alpha: f64, look_minutes: u32) -> f64 {
    let k = f64::from(look_minutes.clamp(FIRST_LOOK_MINUTES, LAST_LOOK_MINUTES) - 1);
    alpha / (k * (k + 1.0))
}

/// Evaluates a deploy at `look_minutes` after it started (at least [`FIRST_LOOK_MINUTES`]).
pub fn detect(
    operations: &[OperationWindows],
    look_minutes: u32,
    thresholds: &Thresholds,
) -> Detection {
    let alpha = look_alpha(thresholds.alpha, look_minutes);
    let sides: Vec<(Baseline, WindowStats, WindowStats)> = operations.iter().map(sides).collect();

    // Benjamini–Hochberg over every test with a p-value.
    let mut p_values: Vec<(usize, Metric, Option<f64>)> = Vec::new();
    for (i, (_, baseline, deployed)) in sides.iter().enumerate() {
        if deployed.spans == 0 {
            continue;
        }
        for metric in Metric::ALL {
            p_values.push((i, metric, p_value(metric, baseline, deployed)));
        }
    }
    let mut sorted: Vec<f64> = p_values.iter().filter_map(|(_, _, p)| *p).collect();
    sorted.sort_by(f64::total_cmp);
    let tests = sorted.len();
    let rejected = (1..=tests)
        .rev()
        .find(|&rank| sorted[rank - 1] <= rank as f64 * alpha / tests as f64)
        .unwrap_or(0);
    let adjusted =
        Thresholds { alpha: verdict_alpha(alpha, tests, rejected), ..thresholds.clone() };

    let findings = p_values
        .into_iter()
        .map(|(i, metric, p_value)| {
            let (baseline_kind, baseline, deployed) = &sides[i];
            let op = &operations[i];
            let mut comparison = compare(metric, baseline, deployed, &adjusted);
            let guard_note = match (baseline_kind, &comparison.verdict) {
                (Baseline::WindowBefore, Verdict::Regressed | Verdict::Improved) => {
                    guard(metric, &op.guards, deployed, &adjusted, &mut comparison)
                }
                _ => None,
            };
            let decisive = matches!(comparison.verdict, Verdict::Regressed | Verdict::Improved);
            OperationFinding {
                operation: op.operation.clone(),
                span_kind: op.span_kind.clone(),
                baseline: *baseline_kind,
                is_final: decisive || look_minutes >= LAST_LOOK_MINUTES,
                comparison,
                p_value,
                guard_note,
                baseline_stats: baseline.clone(),
                deployed_stats: deployed.clone(),
            }
        })
        .collect();
    Detection { look_minutes, alpha, tests, rejected, findings }
}

/// The baseline and the deployed side for one operation: what its findings compare (and
/// what a page charting a finding must draw to show the same numbers).
pub fn sides(op: &OperationWindows) -> (Baseline, WindowStats, WindowStats) {
    let newest = op.after.iter().rev().find(|m| m.deployed.spans + m.others.spans > 0);
    let rolling_out = newest.is_some_and(|m| m.deployed.spans > 0 && m.others.spans > 0);
    let mut baseline = WindowStats::default();
    let mut deployed = WindowStats::default();
    if rolling_out {
        for minute in op.after.iter().filter(|m| m.deployed.spans > 0 && m.others.spans > 0) {
            baseline.merge(&minute.others);
            deployed.merge(&minute.deployed);
        }
        // Error types are new only if the service never raised them before the deploy.
        for (kind, count) in &op.before.error_types {
            *baseline.error_types.entry(kind.clone()).or_default() += count;
        }
        return (Baseline::OtherVersionsSameMinutes, baseline, deployed);
    }
    for minute in &op.after {
        deployed.merge(&minute.deployed);
    }
    (Baseline::WindowBefore, op.before.clone(), deployed)
}

/// Checks a before/after verdict against the day- and week-earlier windows: it stands if at
/// least one guard with enough data agrees, or if no guard has enough data (said in the note).
fn guard(
    metric: Metric,
    guards: &[Guard],
    deployed: &WindowStats,
    thresholds: &Thresholds,
    comparison: &mut Comparison,
) -> Option<String> {
    let checked: Vec<(&Guard, Verdict)> = guards
        .iter()
        .map(|g| (g, compare(metric, &g.stats, deployed, thresholds).verdict))
        .filter(|(_, verdict)| !matches!(verdict, Verdict::Inconclusive { .. }))
        .collect();
    if checked.is_empty() {
        return Some(
            "no data a day or a week earlier with enough spans to rule out time of day".into(),
        );
    }
    if let Some((agreeing, _)) = checked.iter().find(|(_, v)| *v == comparison.verdict) {
        return Some(format!(
            "{} also against the same minutes {}",
            verdict_words(&comparison.verdict),
            agreeing.label
        ));
    }
    let labels: Vec<&str> = checked.iter().map(|(g, _)| g.label.as_str()).collect();
    let reason = format!(
        "{} against the window before the deploy, but not against the same minutes {}: time of day may explain it",
        verdict_words(&comparison.verdict),
        labels.join(" or ")
    );
    comparison.verdict = Verdict::Inconclusive { reason: reason.clone() };
    Some(reason)
}

fn verdict_words(verdict: &Verdict) -> &'static str {
    match verdict {
        Verdict::Regressed => "worse",
        Verdict::Improved => "better",
        _ => "unchanged",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::normal_quantile;

    /// `n` log-normal spans per minute around `median_nanos`, errors every `error_every`.
    fn minute(n: u64, median_nanos: f64, salt: u64, error_every: u64) -> WindowStats {
        let mut stats = WindowStats::default();
        for i in 0..n {
            let u = ((i * 7919 + salt * 104_729) % 1_000_003) as f64 / 1_000_003.0;
            let z = normal_quantile(u.clamp(1e-6, 1.0 - 1e-6));
            let error = error_every > 0 && i % error_every == 0;
            stats.add((median_nanos * (0.5 * z).exp()) as u64, error.then_some("Timeout"), error);
        }
        stats
    }

    fn before(minutes: u64, per_minute: u64, median: f64) -> WindowStats {
        let mut stats = WindowStats::default();
        for m in 0..minutes {
            stats.merge(&minute(per_minute, median, 1_000 + m, 0));
        }
        stats
    }

    fn op(
        name: &str,
        after: Vec<VersionSplit>,
        before: WindowStats,
        guards: Vec<Guard>,
    ) -> OperationWindows {
        OperationWindows {
            operation: name.into(),
            span_kind: "server".into(),
            after,
            before,
            guards,
        }
    }

    fn verdicts(detection: &Detection, operation: &str) -> Vec<(&'static str, &'static str)> {
        detection
            .findings
            .iter()
            .filter(|f| f.operation == operation)
            .map(|f| (f.comparison.metric.as_str(), f.comparison.verdict.as_str()))
            .collect()
    }

    #[test]
    fn the_alpha_spent_over_all_looks_stays_below_alpha() {
        let total: f64 =
            (FIRST_LOOK_MINUTES..=LAST_LOOK_MINUTES).map(|m| look_alpha(0.001, m)).sum();
        assert!(total < 0.001, "{total}");
        assert_eq!(look_alpha(0.001, 2), 0.0005);
    }

    #[test]
    fn a_slower_rollout_is_caught_against_other_versions_in_the_same_minutes() {
        // Ten minutes of a canary: 300 spans/min of each version; the new one 40% slower.
        let after: Vec<VersionSplit> = (0..10)
            .map(|m| VersionSplit {
                deployed: minute(300, 70e6, m, 0),
                others: minute(300, 50e6, 100 + m, 0),
            })
            .collect();
        let steady: Vec<VersionSplit> = (0..10)
            .map(|m| VersionSplit {
                deployed: minute(300, 20e6, m, 0),
                others: minute(300, 20e6, 100 + m, 0),
            })
            .collect();
        // The hour before was far faster: the same-minute baseline must be the one used.
        let ops = [
            op("/checkout", after, before(60, 300, 10e6), vec![]),
            op("/cart", steady, before(60, 300, 20e6), vec![]),
        ];
        let detection = detect(&ops, 10, &Thresholds::default());
        let checkout = verdicts(&detection, "/checkout");
        assert_eq!(&checkout[..2], &[("latency_p50", "regressed"), ("latency_p95", "regressed")]);
        // p99 from 3,000 spans a side at this look's level: worse, or not yet sure; never "no change".
        assert_ne!(checkout[2].1, "no_change");
        let p95 = &detection.findings[1];
        assert_eq!(p95.baseline, Baseline::OtherVersionsSameMinutes);
        assert!(p95.is_final && p95.comparison.effect.unwrap().contains(1.4), "{p95:?}");
        assert!(verdicts(&detection, "/cart").iter().all(|(_, v)| *v != "regressed"));
        assert!(detection.rejected >= 2 && detection.tests == 8);
    }

    #[test]
    fn after_rollout_the_guards_rule_out_time_of_day() {
        let after = |median: f64| -> Vec<VersionSplit> {
            (0..15)
                .map(|m| VersionSplit {
                    deployed: minute(600, median, m, 0),
                    others: WindowStats::default(),
                })
                .collect()
        };
        let guard = |label: &str, median: f64| Guard {
            label: label.into(),
            stats: before(15, 600, median),
        };
        // Slower than the hour before, and than yesterday at the same time: regressed.
        let ops =
            [op("/a", after(60e6), before(60, 600, 50e6), vec![guard("a day earlier", 50e6)])];
        let found = &detect(&ops, 15, &Thresholds::default()).findings[1];
        assert_eq!(found.comparison.verdict, Verdict::Regressed, "{found:?}");
        assert_eq!(found.baseline, Baseline::WindowBefore);
        assert!(found.guard_note.as_deref().unwrap().contains("a day earlier"));
        // Slower than the hour before, but this hour is always this slow: inconclusive.
        let ops = [op(
            "/a",
            after(60e6),
            before(60, 600, 50e6),
            vec![guard("a day earlier", 60e6), guard("a week earlier", 61e6)],
        )];
        let found = &detect(&ops, 15, &Thresholds::default()).findings[1];
        match &found.comparison.verdict {
            Verdict::Inconclusive { reason } => assert!(reason.contains("time of day"), "{reason}"),
            other => panic!("{other:?}"),
        }
        // No guard data: the verdict stands and says so.
        let ops = [op("/a", after(60e6), before(60, 600, 50e6), vec![])];
        let found = &detect(&ops, 15, &Thresholds::default()).findings[1];
        assert_eq!(found.comparison.verdict, Verdict::Regressed);
        assert!(found.guard_note.as_deref().unwrap().contains("no data"));
    }

    #[test]
    fn early_looks_need_stronger_evidence_and_small_samples_are_inconclusive() {
        // A 15% p50 shift with 100 spans a minute: not yet at two minutes, clear by thirty.
        let after = |minutes: u64| -> Vec<VersionSplit> {
            (0..minutes)
                .map(|m| VersionSplit {
                    deployed: minute(100, 57.5e6, m, 0),
                    others: WindowStats::default(),
                })
                .collect()
        };
        let base = before(60, 100, 50e6);
        let early = detect(&[op("/a", after(2), base.clone(), vec![])], 2, &Thresholds::default());
        assert_ne!(early.findings[0].comparison.verdict, Verdict::Regressed);
        assert!(!early.findings[0].is_final);
        assert!(
            matches!(early.findings[2].comparison.verdict, Verdict::Inconclusive { .. }),
            "p99 needs 1,000 spans"
        );
        let late = detect(&[op("/a", after(30), base, vec![])], 30, &Thresholds::default());
        assert_eq!(late.findings[0].comparison.verdict, Verdict::Regressed);
    }

    #[test]
    fn an_unchanged_deploy_over_many_operations_finds_nothing() {
        let ops: Vec<OperationWindows> = (0..200)
            .map(|i| {
                let median = 5e6 * (1.0 + (i % 17) as f64);
                let after = (0..20)
                    .map(|m| VersionSplit {
                        deployed: minute(200, median, 50 + m + i, 0),
                        others: WindowStats::default(),
                    })
                    .collect();
                op(&format!("/op/{i}"), after, before(60, 200, median), vec![])
            })
            .collect();
        for look in [2, 5, 10, 20] {
            let detection = detect(&ops, look, &Thresholds::default());
            assert!(
                detection.findings.iter().all(|f| !matches!(
                    f.comparison.verdict,
                    Verdict::Regressed | Verdict::Improved
                )),
                "look {look}"
            );
        }
    }

    #[test]
    fn new_error_types_count_only_when_never_seen_before() {
        let after: Vec<VersionSplit> = (0..5)
            .map(|m| VersionSplit {
                deployed: minute(300, 20e6, m, 50),
                others: WindowStats::default(),
            })
            .collect();
        let clean = detect(
            &[op("/a", after.clone(), before(60, 300, 20e6), vec![])],
            5,
            &Thresholds::default(),
        );
        let new_types =
            clean.findings.iter().find(|f| f.comparison.metric == Metric::NewErrorTypes).unwrap();
        assert_eq!(new_types.comparison.verdict, Verdict::Regressed);
        assert_eq!(new_types.comparison.new_error_types, vec!["Timeout".to_string()]);
        let mut seen = before(60, 300, 20e6);
        seen.merge(&minute(100, 20e6, 7, 10));
        let known = detect(&[op("/a", after, seen, vec![])], 5, &Thresholds::default());
        let new_types =
            known.findings.iter().find(|f| f.comparison.metric == Metric::NewErrorTypes).unwrap();
        assert_eq!(new_types.comparison.verdict, Verdict::NoChange);
    }
}
