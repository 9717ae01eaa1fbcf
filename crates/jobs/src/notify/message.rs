//! What notifications say: alert names and labels (one standard for every sink), severities,
//! the Alertmanager and generic-webhook bodies, review comments and commit status texts, and
//! the retry schedule. Pure functions of a finding's API view, so the words people read on a
//! forge or in a chat are the words the finding page shows.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value as Json_, json};
use sha2::{Digest, Sha256};
use shapes::{DeployJ, FindingJ, SuspectJ};

/// The alert name for a finding's metric: the same in Alertmanager, webhooks and the README.
pub fn alert_name(metric: &str) -> &'static str {
    match metric {
        "error_rate" => "spanblame_error_rate_regression",
        "new_error_types" => "spanblame_new_error_type",
        _ => "spanblame_latency_regression",
    }
}

/// How urgent a regression is, from its effect size and the service's tier (1 is the most
/// critical service): a large effect (latency ×2, +5 error-rate points) or a moderate one
/// (×1.25, +1 point, a new error type) on tier 1 is `critical`; a moderate one elsewhere is
/// `warning` (tier 3 and beyond: large ones only); the rest is `info`.
pub fn severity(finding: &FindingJ, tier: u8) -> &'static str {
    let (large, moderate) = match (&finding.numbers.effect, finding.metric.as_str()) {
        (_, "new_error_types") => (false, true),
        (Some(e), _) if e.kind == "ratio" => (e.estimate >= 2.0, e.estimate >= 1.25),
        (Some(e), _) => (e.estimate >= 0.05, e.estimate >= 0.01),
        (None, _) => (false, false),
    };
    match tier {
        0 | 1 if large || moderate => "critical",
        2 if large => "critical",
        2 if moderate => "warning",
        _ if large => "warning",
        _ => "info",
    }
}

/// The labels of a finding's alert; together they identify it in Alertmanager.
pub fn labels(finding: &FindingJ, tier: u8) -> BTreeMap<&'static str, String> {
    let deploy = finding.deploy.as_ref();
    let mut labels = BTreeMap::from([
        ("alertname", alert_name(&finding.metric).to_owned()),
        ("service", finding.service.clone()),
        ("environment", finding.environment().to_owned()),
        ("operation", finding.operation.clone()),
        ("metric", finding.metric.clone()),
        ("severity", severity(finding, tier).to_owned()),
        ("deploy", finding.deploy_id.to_string()),
    ]);
    if let Some(deploy) = deploy {
        labels.insert("version", deploy.version.clone());
        if let Some(sha) = &deploy.commit_sha {
            labels.insert("commit", sha.clone());
        }
    }
    labels
}

/// Where a finding and its traces are, for links.
pub struct Links<'a> {
    pub base_url: &'a str,
}

impl Links<'_> {
    pub fn finding(&self, id: u64) -> String {
        format!("{}/findings/{id}", self.base_url)
    }

    pub fn deploy(&self, id: u64) -> String {
        format!("{}/deploys/{id}", self.base_url)
    }

    pub fn trace(&self, trace_id: &str) -> String {
        format!("{}/traces/{trace_id}", self.base_url)
    }
}

/// One line: "checkout `POST /cart` p95 latency 120 ms → 180 ms (×1.50 (1.40 to 1.62)) after
/// deploy 1.2.0 to prod".
pub fn headline(finding: &FindingJ) -> String {
    let version = finding.deploy.as_ref().map_or("?", |d| d.version.as_str());
    format!(
        "{} {} {}: {} ({}) after deploy {} to {}",
        finding.service,
        finding.operation,
        finding.metric_name(),
        finding.change_text(),
        finding.effect_text(),
        version,
        finding.environment()
    )
}

/// The suspect line: "suspect: 1a2b3c4d5e Subject (Author, PR #42): reason; reason".
fn suspect_line(suspect: &SuspectJ) -> String {
    let mut who = Vec::new();
    who.extend(suspect.commit.author.clone());
    who.extend(suspect.review.as_ref().map(|r| r.label()));
    let who = if who.is_empty() { String::new() } else { format!(" ({})", who.join(", ")) };
    let reasons = if suspect.reasons.is_empty() {
        String::new()
    } else {
        format!(": {}", suspect.reasons.join("; "))
    };
    format!("{} {}{who}{reasons}", suspect.commit.short(), suspect.commit.subject)
}

/// Firing or resolved, as Alertmanager and webhooks say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertState<'a> {
    /// Firing until `ends_at` unless refreshed.
    Firing {
        ends_at: &'a str,
    },
    Resolved {
        at: &'a str,
    },
}

fn annotations(finding: &FindingJ, links: &Links<'_>) -> BTreeMap<&'static str, String> {
    let mut annotations = BTreeMap::from([
        ("summary", headline(finding)),
        ("finding_url", links.finding(finding.id)),
    ]);
    if let Some(top) = finding.top_suspect() {
        annotations.insert("suspect", suspect_line(top));
        if let Some(url) = top.review.as_ref().and_then(|r| r.url.clone()) {
            annotations.insert("review_url", url);
        }
    }
    if let Some(slowest) = finding
        .explanation
        .exemplars
        .as_ref()
        .and_then(|e| e.after.slowest.as_ref().or(e.after.typical.as_ref()))
    {
        annotations.insert("exemplar_trace_url", links.trace(&slowest.trace_id));
    }
    if let Some(note) = &finding.status_note {
        annotations.insert("resolution", note.clone());
    }
    annotations
}

/// The body of `POST /api/v2/alerts`: one postable alert.
pub fn alertmanager_body(
    finding: &FindingJ,
    tier: u8,
    links: &Links<'_>,
    state: AlertState<'_>,
) -> Json_ {
    let ends_at = match state {
        AlertState::Firing { ends_at } => ends_at,
        AlertState::Resolved { at } => at,
    };
    json!([{
        "labels": labels(finding, tier),
        "annotations": annotations(finding, links),
        "startsAt": finding.first_seen,
        "endsAt": ends_at,
        "generatorURL": links.finding(finding.id),
    }])
}

/// The body of a generic webhook: the alert's name, labels and annotations, and `text`, which
/// Slack, Mattermost and Rocket.Chat incoming webhooks show as the message.
pub fn webhook_body(
    finding: &FindingJ,
    tier: u8,
    links: &Links<'_>,
    state: AlertState<'_>,
) -> Json_ {
    let labels = labels(finding, tier);
    let (status, at) = match state {
        AlertState::Firing { .. } => ("firing", None),
        AlertState::Resolved { at } => ("resolved", Some(at)),
    };
    let mut text = match state {
        AlertState::Firing { .. } => {
            format!("[{}] Regression: {}", labels["severity"].to_uppercase(), headline(finding))
        }
        AlertState::Resolved { .. } => format!("[RESOLVED] {}", headline(finding)),
    };
    if let (AlertState::Firing { .. }, Some(top)) = (state, finding.top_suspect()) {
        text.push_str(&format!("\nSuspect: {}", suspect_line(top)));
    }
    if let (AlertState::Resolved { .. }, Some(note)) = (state, &finding.status_note) {
        text.push_str(&format!("\n{note}"));
    }
    text.push_str(&format!("\n<{}|Finding {}>", links.finding(finding.id), finding.id));
    json!({
        "version": "1",
        "status": status,
        "alertname": labels["alertname"],
        "labels": labels,
        "annotations": annotations(finding, links),
        "starts_at": finding.first_seen,
        "resolved_at": at,
        "finding_id": finding.id,
        "text": text,
    })
}

/// Markdown for Gogs, Gitea, GitHub and GitLab; Remarkup for Phabricator (its links differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Markup {
    Markdown,
    Remarkup,
}

impl Markup {
    fn link(self, text: &str, url: &str) -> String {
        match self {
            Markup::Markdown => format!("[{text}]({url})"),
            Markup::Remarkup => format!("[[{url} | {text}]]"),
        }
    }
}

/// Table cells and inline code must not break the table.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// The comment posted on a suspect's review (or commit) when a deploy's findings regress.
pub fn regressed_comment(
    deploy: &DeployJ,
    findings: &[&FindingJ],
    suspect: &SuspectJ,
    rank: usize,
    markup: Markup,
    links: &Links<'_>,
) -> String {
    let env = deploy.environment.as_deref().unwrap_or("(none)");
    let mut out = format!(
        "**spanblame: {} regressed after deploy {} to {}**\n\n",
        deploy.service, deploy.version, env
    );
    out.push_str(&format!(
        "This change is suspect {rank} of the deploy: `{}` {}\n",
        suspect.commit.short(),
        suspect.commit.subject
    ));
    for reason in &suspect.reasons {
        out.push_str(&format!("- {reason}\n"));
    }
    out.push_str("\n| operation | metric | before → after | change (95% interval) | finding |\n");
    out.push_str("| --- | --- | --- | --- | --- |\n");
    for f in findings {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} |\n",
            cell(&f.operation),
            f.metric_name(),
            cell(&f.change_text()),
            cell(&f.effect_text()),
            markup.link(&format!("#{}", f.id), &links.finding(f.id))
        ));
    }
    let mut traces = Vec::new();
    for f in findings.iter().take(1) {
        if let Some(e) = &f.explanation.exemplars {
            for (label, exemplar) in [("before", &e.before.typical), ("after", &e.after.slowest)] {
                if let Some(exemplar) = exemplar {
                    traces.push(markup.link(
                        &format!("{label} ({})", exemplar.duration_text()),
                        &links.trace(&exemplar.trace_id),
                    ));
                }
            }
        }
    }
    if !traces.is_empty() {
        out.push_str(&format!("\nExample traces: {}\n", traces.join(" · ")));
    }
    if let Some(rollback) = findings.iter().find_map(|f| f.explanation.rollback.as_ref())
        && !rollback.commands.is_empty()
    {
        let previous = rollback
            .previous_version
            .as_deref()
            .map(|v| format!(" (previous version {v})"))
            .unwrap_or_default();
        // Every line of the draft, as a code block (Markdown and Remarkup both fence with ```).
        out.push_str(&format!(
            "\nRollback draft{previous}:\n```\n{}\n```\n",
            rollback.commands.join("\n")
        ));
    }
    out.push_str(&format!(
        "\n{}\n",
        markup.link(&format!("Deploy {} in spanblame", deploy.version), &links.deploy(deploy.id))
    ));
    out
}

/// The comment posted when every regression of the deploy is resolved.
pub fn resolved_comment(
    deploy: &DeployJ,
    findings: &[&FindingJ],
    markup: Markup,
    links: &Links<'_>,
) -> String {
    let env = deploy.environment.as_deref().unwrap_or("(none)");
    let mut out = format!(
        "**spanblame: the regressions after deploy {} of {} to {} are resolved**\n\n",
        deploy.version, deploy.service, env
    );
    for f in findings {
        let how = match (&f.status_by, &f.status_note) {
            (Some(by), Some(note)) => format!("resolved by {by}: {note}"),
            (Some(by), None) => format!("resolved by {by}"),
            (None, _) => "resolved".into(),
        };
        out.push_str(&format!(
            "- `{}` {}: {} ({})\n",
            f.operation,
            f.metric_name(),
            how,
            markup.link(&format!("#{}", f.id), &links.finding(f.id))
        ));
    }
    out
}

/// A commit status description (forges cap it at 140 characters).
pub fn status_description(findings: &[&FindingJ], resolved: bool) -> String {
    match (resolved, findings.first()) {
        (true, _) => "spanblame: the regressions after this deploy are resolved".into(),
        (false, Some(f)) if findings.len() == 1 => {
            format!("{} {} {}", f.operation, f.metric_name(), f.effect_text())
        }
        (false, Some(f)) => format!(
            "{} {} {} and {} more regressions",
            f.operation,
            f.metric_name(),
            f.effect_text(),
            findings.len() - 1
        ),
        (false, None) => "spanblame: regression".into(),
    }
}

/// The wait before the attempt after `attempts` failed ones: doubling from `initial`, capped at
/// `max`, with the upper half jittered by `jitter_seed` (the same row always waits the same,
/// different rows spread out).
pub fn retry_delay(attempts: u32, initial: Duration, max: Duration, jitter_seed: &str) -> Duration {
    let doubled = initial.saturating_mul(1u32 << attempts.saturating_sub(1).min(20));
    let capped = doubled.min(max);
    let digest = Sha256::digest(format!("{jitter_seed}/{attempts}").as_bytes());
    let fraction = f64::from(u16::from_be_bytes([digest[0], digest[1]])) / f64::from(u16::MAX);
    capped.mul_f64(0.5 + 0.5 * fraction)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shapes::{CommitJ, EffectJ, ExplanationJ, NumbersJ, ReviewJ, SideJ};

    fn finding(metric: &str, kind: &str, estimate: f64) -> FindingJ {
        FindingJ {
            id: 7,
            deploy_id: 3,
            service: "checkout".into(),
            environment: Some("prod".into()),
            operation: "POST /cart|x".into(),
            metric: metric.into(),
            verdict: "regressed".into(),
            first_seen: "2026-11-21T10:00:00Z".into(),
            numbers: NumbersJ {
                before: SideJ { spans: 2400, value_ms: Some(120.0), ..Default::default() },
                after: SideJ { spans: 2100, value_ms: Some(180.0), ..Default::default() },
                effect: Some(EffectJ {
                    kind: kind.into(),
                    estimate,
                    low: estimate * 0.9,
                    high: estimate * 1.1,
                }),
                ..Default::default()
            },
            explanation: ExplanationJ {
                suspects: Some(vec![SuspectJ {
                    commit: CommitJ {
                        sha: "1a2b3c4d5e6f".into(),
                        subject: "Cache prices".into(),
                        author: Some("Ada".into()),
                        ..Default::default()
                    },
                    reasons: vec!["the slow span's function `price` is changed".into()],
                    review: Some(ReviewJ {
                        kind: "gitea".into(),
                        id: "42".into(),
                        url: Some("https://git/pr/42".into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            },
            deploy: Some(DeployJ {
                id: 3,
                service: "checkout".into(),
                environment: Some("prod".into()),
                version: "1.2.0".into(),
                commit_sha: Some("abc".into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn severities_follow_effect_and_tier() {
        let cases = [
            (("latency_p95", "ratio", 1.1), [("info", 1)].as_slice()),
            (("latency_p95", "ratio", 1.3), &[("critical", 1), ("warning", 2), ("info", 3)]),
            (("latency_p95", "ratio", 2.5), &[("critical", 1), ("critical", 2), ("warning", 3)]),
            (("error_rate", "difference", 0.02), &[("critical", 1), ("warning", 2), ("info", 3)]),
            (("error_rate", "difference", 0.004), &[("info", 1)]),
            (("new_error_types", "difference", 0.0), &[("critical", 1), ("warning", 2)]),
        ];
        for ((metric, kind, estimate), expected) in cases {
            for (severity_, tier) in expected {
                assert_eq!(
                    severity(&finding(metric, kind, estimate), *tier),
                    *severity_,
                    "{metric} {estimate} tier {tier}"
                );
            }
        }
    }

    #[test]
    fn alerts_carry_the_standard_name_and_labels() {
        let f = finding("latency_p95", "ratio", 1.5);
        let links = Links { base_url: "https://sb.example.com" };
        let body = alertmanager_body(
            &f,
            1,
            &links,
            AlertState::Firing { ends_at: "2026-11-21T11:00:00Z" },
        );
        let alert = &body[0];
        assert_eq!(alert["labels"]["alertname"], "spanblame_latency_regression");
        for label in [
            "service",
            "environment",
            "operation",
            "severity",
            "deploy",
            "commit",
            "metric",
            "version",
        ] {
            assert!(alert["labels"][label].is_string(), "{label}: {alert}");
        }
        assert_eq!(alert["labels"]["severity"], "critical");
        assert_eq!(alert["generatorURL"], "https://sb.example.com/findings/7");
        assert_eq!(alert["endsAt"], "2026-11-21T11:00:00Z");
        assert!(alert["annotations"]["suspect"].as_str().unwrap().contains("Cache prices"));
        assert_eq!(alert_name("error_rate"), "spanblame_error_rate_regression");
        assert_eq!(alert_name("new_error_types"), "spanblame_new_error_type");

        let hook = webhook_body(&f, 1, &links, AlertState::Resolved { at: "2026-11-21T12:00:00Z" });
        assert_eq!(hook["status"], "resolved");
        assert!(hook["text"].as_str().unwrap().starts_with("[RESOLVED] checkout"), "{hook}");
        assert!(
            hook["text"]
                .as_str()
                .unwrap()
                .contains("<https://sb.example.com/findings/7|Finding 7>")
        );
    }

    #[test]
    fn comments_name_the_numbers_the_reasons_and_the_links() {
        let f = finding("latency_p95", "ratio", 1.5);
        let links = Links { base_url: "https://sb.example.com" };
        let deploy = f.deploy.clone().unwrap();
        let md = regressed_comment(&deploy, &[&f], &f.suspects()[0], 1, Markup::Markdown, &links);
        assert!(md.contains("deploy 1.2.0 to prod"), "{md}");
        assert!(md.contains("- the slow span's function `price` is changed"), "{md}");
        assert!(md.contains("`POST /cart\\|x`"), "a pipe does not break the table: {md}");
        assert!(md.contains("120 ms → 180 ms") && md.contains("×1.50"), "{md}");
        assert!(md.contains("[#7](https://sb.example.com/findings/7)"), "{md}");
        let remarkup =
            regressed_comment(&deploy, &[&f], &f.suspects()[0], 1, Markup::Remarkup, &links);
        assert!(remarkup.contains("[[https://sb.example.com/findings/7 | #7]]"), "{remarkup}");
        // The rollback draft in full, every line of it.
        let mut with_rollback = f.clone();
        with_rollback.explanation.rollback = Some(shapes::RollbackJ {
            previous_version: Some("1.1.0".into()),
            commands: vec!["# Fastest: redeploy 1.1.0".into(), "git revert --no-edit abc".into()],
            ..Default::default()
        });
        let md = regressed_comment(
            &deploy,
            &[&with_rollback],
            &f.suspects()[0],
            1,
            Markup::Remarkup,
            &links,
        );
        assert!(
            md.contains("```\n# Fastest: redeploy 1.1.0\ngit revert --no-edit abc\n```"),
            "{md}"
        );
        let resolved = resolved_comment(&deploy, &[&f], Markup::Markdown, &links);
        assert!(resolved.contains("are resolved"), "{resolved}");
        assert_eq!(
            status_description(&[&f], false),
            "POST /cart|x p95 latency ×1.50 (1.35 to 1.65)"
        );
    }

    #[test]
    fn retries_back_off_with_jitter_and_a_cap() {
        let initial = Duration::from_secs(10);
        let max = Duration::from_secs(600);
        let delays: Vec<Duration> =
            (1..=10).map(|a| retry_delay(a, initial, max, "row-1")).collect();
        for (i, delay) in delays.iter().enumerate() {
            let full = initial.saturating_mul(1 << i).min(max);
            assert!(
                *delay >= full / 2 && *delay <= full,
                "attempt {}: {delay:?} of {full:?}",
                i + 1
            );
        }
        assert_eq!(retry_delay(3, initial, max, "row-1"), delays[2], "deterministic per row");
        assert_ne!(retry_delay(3, initial, max, "row-2"), delays[2], "spread across rows");
        assert!(retry_delay(u32::MAX, initial, max, "x") <= max);
    }
}
