//! The detection job: once a minute (`[detection] interval`), every deploy of the last week
//! whose evaluation is not final is looked at again from its sketches, its findings are
//! recorded, regressed ones get suspects, exemplars and a rollback draft, and open
//! regressions that a later deploy restored are resolved.
//!
//! It runs on a blocking thread beside ingest and reads only sketches (and, for a finding
//! that just regressed, a bounded sample of traces): ingest never waits on it. A deploy
//! recorded after the fact is evaluated at once on the data already stored around it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use analysis::detect::{
    Detection, FIRST_LOOK_MINUTES, LAST_LOOK_MINUTES, OperationFinding, detect,
};
use analysis::{Metric, Thresholds, Verdict, WindowStats, compare};
use model::Deploy;
use shapes::{EffectJ, ExemplarsJ, ExplanationJ, NumbersJ, RankingJ, SideJ};
use store::{Evaluation, FindingFilter, FindingStatus, FindingUpdate, StoreError, StoredFinding};

use crate::Jobs;
use crate::evidence::{self, SideQuery};
use crate::suspects;

const NANOS_PER_MINUTE: u64 = 60 * 1_000_000_000;
/// Deploys older than this are not evaluated (their minute sketches may be rolled up).
const LOOKBACK_NANOS: u64 = 7 * 24 * 60 * NANOS_PER_MINUTE;

/// How detection runs; `Default` is the researched defaults.
#[derive(Debug, Clone)]
pub struct DetectionSettings {
    /// Off: no findings are made (sketches are still kept).
    pub enabled: bool,
    /// How often the job looks at open deploys.
    pub interval: Duration,
    /// The window before a deploy that a full rollout is compared with.
    pub before_window_minutes: u32,
    pub thresholds: Thresholds,
    /// Sketch minutes older than this are rolled up into hours ...
    pub sketch_minutes_max_age_nanos: u64,
    /// ... and sketches older than this are deleted.
    pub sketches_max_age_nanos: u64,
    /// Minor regressions join incidents and are announced.
    pub minor_incidents: bool,
}

impl Default for DetectionSettings {
    fn default() -> DetectionSettings {
        DetectionSettings {
            enabled: true,
            interval: Duration::from_secs(60),
            before_window_minutes: 60,
            thresholds: Thresholds::default(),
            sketch_minutes_max_age_nanos: 8 * 24 * 60 * NANOS_PER_MINUTE,
            sketches_max_age_nanos: 90 * 24 * 60 * NANOS_PER_MINUTE,
            minor_incidents: false,
        }
    }
}

pub async fn run_detection(jobs: Arc<Jobs>, mut stop: tokio::sync::watch::Receiver<bool>) {
    if !jobs.detection.enabled {
        return;
    }
    let mut interval = tokio::time::interval(jobs.detection.interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        if !jobs.lease.is_held() {
            continue;
        }
        let jobs = Arc::clone(&jobs);
        match tokio::task::spawn_blocking(move || evaluate_due(&jobs)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "detection failed; will retry"),
            Err(e) => tracing::error!(error = %e, "detection panicked; will retry"),
        }
    }
}

/// One pass: evaluates every due deploy at the clock's current time. Returns how many
/// deploys were evaluated.
pub fn evaluate_due(jobs: &Jobs) -> Result<usize, StoreError> {
    let now = jobs.ctx.clock.now_unix_nanos();
    let mut evaluated = 0;
    let deploys = jobs.ctx.store.deploys_to_evaluate(now.saturating_sub(LOOKBACK_NANOS))?;
    let mut lag_nanos = 0;
    for deploy in &deploys {
        let evaluation = jobs.ctx.store.evaluation(deploy.id)?;
        if let Some(due) = next_look_due(deploy, evaluation.as_ref()) {
            lag_nanos = lag_nanos.max(now.saturating_sub(due));
        }
        if evaluate_deploy(jobs, deploy, evaluation.as_ref(), now)? {
            evaluated += 1;
            jobs.telemetry.looks_total.fetch_add(1, Ordering::Relaxed);
        }
    }
    jobs.telemetry.pass_done(now, deploys.len(), lag_nanos);
    Ok(evaluated)
}

/// When a deploy's next look falls due: the minute after its last look (the first look's
/// minute before any); `None` when it had its last.
fn next_look_due(deploy: &Deploy, evaluation: Option<&Evaluation>) -> Option<u64> {
    let next = match evaluation {
        Some(e) if e.is_final => return None,
        Some(e) => e.look_minutes + 1,
        None => FIRST_LOOK_MINUTES,
    };
    (next <= LAST_LOOK_MINUTES)
        .then(|| deploy.started_at_unix_nanos + u64::from(next) * NANOS_PER_MINUTE)
}

/// Looks at one deploy if a new minute has passed since the last look.
fn evaluate_deploy(
    jobs: &Jobs,
    deploy: &Deploy,
    evaluation: Option<&Evaluation>,
    now: u64,
) -> Result<bool, StoreError> {
    let store = &jobs.ctx.store;
    let start = deploy.started_at_unix_nanos;
    let next = store.next_deploy(deploy)?;
    let last = start + u64::from(LAST_LOOK_MINUTES) * NANOS_PER_MINUTE;
    let superseded_at = next.as_ref().map(|n| n.started_at_unix_nanos).filter(|&t| t < last);
    let end = now.min(last).min(superseded_at.unwrap_or(u64::MAX));
    let look = (end.saturating_sub(start) / NANOS_PER_MINUTE) as u32;
    let deploy_final = look >= LAST_LOOK_MINUTES || superseded_at.is_some_and(|t| t <= now);
    if look < FIRST_LOOK_MINUTES {
        if deploy_final {
            // Replaced before the first look: nothing can be said about it alone.
            store.record_look(
                deploy,
                &[],
                Evaluation { look_minutes: look, is_final: true },
                now,
            )?;
            return Ok(true);
        }
        return Ok(false);
    }
    if evaluation.is_some_and(|e| e.look_minutes >= look && !deploy_final) {
        return Ok(false);
    }
    let settings = &jobs.detection;
    let windows = views::sketches::deploy_windows(
        &jobs.ctx,
        deploy,
        look,
        jobs.detection.before_window_minutes,
        true,
    )?;
    let detection = detect(&windows, look, &settings.thresholds);
    let updates: Vec<FindingUpdate> = detection
        .findings
        .iter()
        .map(|f| FindingUpdate {
            deploy_id: deploy.id,
            service: deploy.service.clone(),
            environment: deploy.environment.clone(),
            operation: f.operation.clone(),
            span_kind: f.span_kind.clone(),
            metric: f.comparison.metric.as_str().to_owned(),
            verdict: f.comparison.verdict.as_str().to_owned(),
            severity: if f.comparison.minor.is_some() { "minor" } else { "major" }.to_owned(),
            is_final: f.is_final || deploy_final,
            look_minutes: look,
            detail: serde_json::to_string(&finding_detail(f, &detection))
                .expect("numbers serialise"),
            baseline_stats: f.baseline_stats.encode(),
        })
        .collect();
    let before = store.findings(&FindingFilter {
        deploy_id: Some(deploy.id),
        limit: usize::MAX,
        ..FindingFilter::default()
    })?;
    let recorded = store.record_look(
        deploy,
        &updates,
        Evaluation { look_minutes: look, is_final: deploy_final },
        now,
    )?;
    if !recorded {
        // A deploy report moved its start while we looked: the next pass looks again.
        return Ok(false);
    }
    log_verdict_changes(deploy, &before, &updates);
    for update in &updates {
        let seen = before.iter().any(|f| {
            (&f.operation, &f.span_kind, &f.metric)
                == (&update.operation, &update.span_kind, &update.metric)
        });
        if !seen {
            jobs.telemetry.finding_made(&update.verdict);
        }
    }
    explain(jobs, deploy, end)?;
    crate::notify::announce_quietly(jobs, deploy.id);
    resolve_restored(jobs, deploy, &detection, now)?;
    tracing::debug!(deploy = deploy.id, look, findings = updates.len(), "evaluated a deploy");
    Ok(true)
}

/// One line per finding whose verdict changed at this look, and per new finding that says
/// something (regressed or improved); the many first `no_change` and `inconclusive` verdicts
/// of every operation stay at debug.
fn log_verdict_changes(deploy: &Deploy, before: &[StoredFinding], updates: &[FindingUpdate]) {
    for update in updates {
        let previous = before.iter().find(|f| {
            (&f.operation, &f.span_kind, &f.metric)
                == (&update.operation, &update.span_kind, &update.metric)
        });
        let from = match previous {
            Some(f) if f.is_final || f.verdict == update.verdict => continue,
            Some(f) => f.verdict.as_str(),
            None if matches!(update.verdict.as_str(), "regressed" | "improved") => "none",
            None => continue,
        };
        tracing::info!(
            deploy = deploy.id,
            service = %deploy.service,
            version = %deploy.version,
            operation = %update.operation,
            metric = %update.metric,
            from,
            to = %update.verdict,
            look_minutes = update.look_minutes,
            "finding verdict changed"
        );
    }
}

/// The numbers of one finding, with units in the field names.
fn finding_detail(f: &OperationFinding, detection: &Detection) -> NumbersJ {
    let c = &f.comparison;
    let side = |value: f64, samples: u64, stats: &WindowStats| match c.metric {
        Metric::ErrorRate => SideJ {
            spans: samples,
            error_rate: Some(value),
            errors: Some(stats.errors),
            ..SideJ::default()
        },
        Metric::NewErrorTypes => SideJ {
            spans: samples,
            error_types: Some(stats.error_types.len() as u64),
            ..SideJ::default()
        },
        _ => SideJ { spans: samples, value_ms: Some(value / 1e6), ..SideJ::default() },
    };
    let effect = c.effect.map(|e| {
        let kind = if c.metric == Metric::ErrorRate { "difference" } else { "ratio" };
        EffectJ { kind: kind.into(), estimate: e.estimate, low: e.low, high: e.high }
    });
    NumbersJ {
        baseline: f.baseline.as_str().into(),
        before: side(c.before, c.before_samples, &f.baseline_stats),
        after: side(c.after, c.after_samples, &f.deployed_stats),
        effect,
        confidence: Some(1.0 - detection.verdict_alpha()),
        p_value: f.p_value,
        tests_in_look: Some(detection.tests as u64),
        reason: match &c.verdict {
            Verdict::Inconclusive { reason } => Some(reason.clone()),
            _ => None,
        },
        guard: f.guard_note.clone(),
        new_error_types: c.new_error_types.clone(),
        minor_reason: c.minor.clone(),
        look_minutes: None,
    }
}

/// One line per regression, when it is first explained: what, where, and the top suspect.
fn log_regression(deploy: &Deploy, finding: &StoredFinding, explanation: &ExplanationJ) {
    if finding.explanation.is_some() {
        // Explained before, without suspects (no mirror yet): said already.
        return;
    }
    let top = explanation.suspects.iter().flatten().next().map(|s| &s.commit);
    tracing::info!(
        finding = finding.id,
        incident = deploy.id,
        service = %finding.service,
        version = %deploy.version,
        operation = %finding.operation,
        metric = %finding.metric,
        suspect = top.map_or("none yet", |c| c.short()),
        subject = top.map_or("", |c| c.subject.as_str()),
        "regression found"
    );
}

/// Adds exemplars, evidence, suspects and a rollback draft to regressed findings that lack
/// them; one whose deploy range cannot be read yet (say, the mirror has not fetched it) is
/// tried again at the next look.
fn explain(jobs: &Jobs, deploy: &Deploy, end: u64) -> Result<(), StoreError> {
    let store = &jobs.ctx.store;
    let pending = store.findings_to_explain(deploy.id)?;
    if pending.is_empty() {
        return Ok(());
    }
    let before_nanos = u64::from(jobs.detection.before_window_minutes) * NANOS_PER_MINUTE;
    let range = suspects::deploy_range(jobs, deploy)?;
    if range.is_err() && pending.iter().all(|f| f.explanation.is_some()) {
        // Explained already but for the suspects, whose range still cannot be read: the
        // exemplars and evidence stand; reading them again would change nothing.
        return Ok(());
    }
    // The metrics of one operation (p50, p95, p99, errors) share their samples, evidence and
    // ranking: each is read and ranked once per operation and baseline.
    let mut explained: HashMap<(String, bool), (ExplanationJ, bool)> = HashMap::new();
    let record = |finding: &StoredFinding, explanation: &ExplanationJ, complete: bool| {
        let text = serde_json::to_string(explanation).expect("an explanation serialises");
        store.set_finding_explanation(finding.id, &text, complete)?;
        log_regression(deploy, finding, explanation);
        Ok::<_, StoreError>(())
    };
    for finding in pending {
        let numbers = views::findings::numbers(&finding);
        let same_minutes = numbers.baseline == "other_versions_same_minutes";
        let key = (finding.operation.clone(), same_minutes);
        if let Some((explanation, complete)) = explained.get(&key) {
            record(&finding, explanation, *complete)?;
            continue;
        }
        let started = std::time::Instant::now();
        let start = deploy.started_at_unix_nanos;
        let side = |deployed: bool, from: u64, to: u64| {
            evidence::read_side(
                store,
                &SideQuery {
                    deploy,
                    operation: &finding.operation,
                    start_unix_nanos: from,
                    end_unix_nanos: to,
                    deployed,
                },
            )
        };
        let after = side(true, start, end)?;
        let before = if same_minutes {
            side(false, start, end)?
        } else {
            side(false, start.saturating_sub(before_nanos), start)?
        };
        let gathered = analysis::evidence::gather(&finding.operation, &before, &after);
        let (suspects, ranking, rollback, complete) = match &range {
            Ok(range) => {
                let (suspects, ranking, rollback) =
                    suspects::suspects_and_rollback(jobs, deploy, range, &gathered)?;
                (suspects, ranking, Some(rollback), true)
            }
            Err(why) => {
                let ranking = RankingJ { unavailable: Some(why.clone()), ..RankingJ::default() };
                (Vec::new(), ranking, None, false)
            }
        };
        let explanation = ExplanationJ {
            exemplars: Some(ExemplarsJ {
                before: evidence::exemplars(&before),
                after: evidence::exemplars(&after),
            }),
            evidence: Some(evidence::view(&gathered)),
            suspects: Some(suspects),
            ranking: Some(ranking),
            rollback,
        };
        record(&finding, &explanation, complete)?;
        jobs.telemetry.explained(started.elapsed().as_secs_f64());
        explained.insert(key, (explanation, complete));
    }
    Ok(())
}

/// Resolves open regressions of earlier deploys whose metric this deploy brought back: its
/// final comparison against the regressed finding's own baseline shows no regression.
fn resolve_restored(
    jobs: &Jobs,
    deploy: &Deploy,
    detection: &Detection,
    now: u64,
) -> Result<(), StoreError> {
    let store = &jobs.ctx.store;
    let thresholds = &jobs.detection.thresholds;
    for open in store.unresolved_regressions(deploy)? {
        let Some(current) = detection.findings.iter().find(|f| {
            f.is_final
                && f.operation == open.operation
                && f.span_kind == open.span_kind
                && f.comparison.metric.as_str() == open.metric
        }) else {
            continue;
        };
        if let Some(note) = restored(&open, current, thresholds) {
            store.set_finding_status(
                open.id,
                FindingStatus::Resolved,
                &format!("deploy {} ({})", deploy.id, deploy.version),
                Some(&note),
                now,
            )?;
            tracing::info!(
                finding = open.id,
                deploy = deploy.id,
                "a later deploy resolved a regression"
            );
            crate::notify::announce_quietly(jobs, open.deploy_id);
        }
    }
    Ok(())
}

/// Why `current` shows `open`'s regression gone, if it does.
fn restored(
    open: &StoredFinding,
    current: &OperationFinding,
    thresholds: &Thresholds,
) -> Option<String> {
    let good = WindowStats::decode(&open.baseline_stats)?;
    let metric = current.comparison.metric;
    let check = compare(metric, &good, &current.deployed_stats, thresholds);
    matches!(check.verdict, Verdict::NoChange | Verdict::Improved).then(|| {
        let value = |v: f64| {
            if metric.is_latency() { format!("{:.1} ms", v / 1e6) } else { format!("{v:.4}") }
        };
        format!(
            "{} is back to {} (it was {} before the regressing deploy {})",
            metric.as_str(),
            value(check.after),
            value(check.before),
            open.deploy_id
        )
    })
}
