//! The tagging gate: whether a change will be attributable once it is deployed, asked before
//! it merges or ships. Three checks, each with what was found and the fix: the change links
//! to a review, the service's code is mapped, and the service's spans carry `service.version`
//! and a commit attribute. "Cannot tell yet" is an outcome of its own, with the reason.

/// One check of the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Check {
    /// The change links to a review (a `Differential Revision:` line, a pull/merge request).
    Review,
    /// A `[[services]]` entry maps the service to its repository, path and owner.
    Service,
    /// Spans of the change (or the service's latest spans) carry a version and a commit.
    Spans,
}

impl Check {
    pub const ALL: [Check; 3] = [Check::Review, Check::Service, Check::Spans];

    /// The name in configuration, the API and the reports.
    pub fn name(self) -> &'static str {
        match self {
            Check::Review => "review",
            Check::Service => "service",
            Check::Spans => "spans",
        }
    }

    pub fn parse(name: &str) -> Option<Check> {
        Check::ALL.into_iter().find(|c| c.name() == name)
    }

    /// What it asks, for people reading a report.
    pub fn title(self) -> &'static str {
        match self {
            Check::Review => "The change links to a review",
            Check::Service => "The service's code is mapped",
            Check::Spans => "Spans carry service.version and a commit",
        }
    }
}

/// A check's or the gate's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail,
    /// Not yet knowable (no spans of the change yet, a commit not fetched yet).
    CannotTell,
    /// The check does not apply (no environment to look in); never the gate's outcome.
    Skipped,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "fail",
            Outcome::CannotTell => "cannot_tell",
            Outcome::Skipped => "skipped",
        }
    }
}

/// Which checks decide, where spans are looked for, and how recent they must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    /// Checks whose failure fails the gate; the others are reported as advice.
    pub required: Vec<Check>,
    /// Environments whose spans the `spans` check reads (staging, CI), unless the caller
    /// names one.
    pub environments: Vec<String>,
    /// How far back spans count.
    pub window_nanos: u64,
}

impl Default for Rules {
    fn default() -> Rules {
        Rules {
            required: Check::ALL.to_vec(),
            environments: Vec::new(),
            window_nanos: 30 * 60 * 1_000_000_000,
        }
    }
}

/// How the change links to a review.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReviewLink {
    /// `id` (`D12`, `42`), and how it was found.
    Found { id: String, how: String },
    /// The commit is known and links to none.
    Missing,
    /// The commit is not known yet; why.
    Unknown(String),
}

/// The `[[services]]` entry of the service, as the gate reads it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Mapping {
    pub repository: Option<String>,
    pub path_prefix: Option<String>,
    /// Its team, or the CODEOWNERS owner of its path.
    pub owner: Option<String>,
    /// Other services mapped to the same repository.
    pub neighbours: Vec<String>,
}

/// One `service.version` of the service seen in an environment within the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionSeen {
    pub environment: String,
    /// Empty when the spans carry no `service.version`.
    pub version: String,
    pub num_spans: u64,
    pub last_seen_unix_nanos: u64,
    /// The commit the spans' commit attribute names.
    pub commit_attribute: Option<String>,
    /// The commit the version resolves to otherwise (a tag, a sha inside the version).
    pub resolves_to: Option<String>,
}

/// Everything the gate decides on, gathered from the store, the mirror and the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    pub service: String,
    /// The head commit asked about; `None` for a diff that is not a commit yet.
    pub commit: Option<String>,
    pub review: ReviewLink,
    pub mapping: Option<Mapping>,
    /// The environments looked in (the caller's, else the rules').
    pub environments: Vec<String>,
    /// Versions seen there within the window.
    pub seen: Vec<VersionSeen>,
    /// Whether the head commit should be running there already (a check after a deploy to
    /// staging), or is still under review (a Harbormaster build, a pull request head).
    pub expect_head: bool,
    /// The window, for the reasons.
    pub window_nanos: u64,
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    pub check: Check,
    pub outcome: Outcome,
    /// Whether it decides the gate (else it is advice).
    pub required: bool,
    pub found: String,
    pub fix: Option<String>,
}

/// The gate's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub outcome: Outcome,
    pub checks: Vec<CheckResult>,
}

/// The fix for spans that do not say what they run.
const STAMP_FIX: &str = "set both resource attributes where the service starts, from the build: OTEL_RESOURCE_ATTRIBUTES=service.version=$VERSION,vcs.ref.head.revision=$GIT_COMMIT (or the SDK's resource)";

/// Evaluates every check; the gate fails on a failed required check, else cannot tell on an
/// undecided one, else passes.
pub fn evaluate(facts: &Facts, rules: &Rules) -> Report {
    let checks: Vec<CheckResult> = Check::ALL
        .into_iter()
        .map(|check| {
            let (outcome, found, fix) = match check {
                Check::Review => review(facts),
                Check::Service => service(facts),
                Check::Spans => spans(facts),
            };
            CheckResult { check, outcome, required: rules.required.contains(&check), found, fix }
        })
        .collect();
    let required = || checks.iter().filter(|c| c.required);
    let outcome = if required().any(|c| c.outcome == Outcome::Fail) {
        Outcome::Fail
    } else if required().any(|c| c.outcome == Outcome::CannotTell) {
        Outcome::CannotTell
    } else {
        Outcome::Pass
    };
    Report { outcome, checks }
}

type Judged = (Outcome, String, Option<String>);

fn review(facts: &Facts) -> Judged {
    match &facts.review {
        ReviewLink::Found { id, how } => (Outcome::Pass, format!("{id} ({how})"), None),
        ReviewLink::Missing => (
            Outcome::Fail,
            format!("commit {} links to no review", short(facts.commit.as_deref())),
            Some("land it through a review: on Phabricator, `arc diff` adds a `Differential Revision:` line to the commit message; on Gitea, Forgejo, GitHub or GitLab, merge it from a pull or merge request".into()),
        ),
        ReviewLink::Unknown(why) => (Outcome::CannotTell, why.clone(), None),
    }
}

fn service(facts: &Facts) -> Judged {
    let name = &facts.service;
    let Some(mapping) = &facts.mapping else {
        return (
            Outcome::Fail,
            format!("no [[services]] entry is named `{name}`"),
            Some(format!(
                "add one to the configuration: [[services]] name = \"{name}\", repository = \"<a [[repositories]] name>\", team = \"<the owner>\""
            )),
        );
    };
    let Some(repository) = &mapping.repository else {
        return (
            Outcome::Fail,
            format!("the [[services]] entry `{name}` names no repository"),
            Some(format!(
                "set `repository` in [[services]] `{name}` to the [[repositories]] entry its code lives in"
            )),
        );
    };
    if mapping.path_prefix.is_none() && !mapping.neighbours.is_empty() {
        return (
            Outcome::Fail,
            format!(
                "`{repository}` also holds {}, and `{name}` says nothing of where its code is",
                mapping.neighbours.join(", ")
            ),
            Some(format!(
                "set `path_prefix` in [[services]] `{name}` (e.g. \"services/{name}\"), so owners and blame read its code"
            )),
        );
    }
    let Some(owner) = &mapping.owner else {
        return (
            Outcome::Fail,
            format!("`{name}` has no owner: no `team`, and no CODEOWNERS entry for its code"),
            Some(format!("set `team` in [[services]] `{name}`, or add its path to CODEOWNERS")),
        );
    };
    let path = mapping.path_prefix.as_deref().map(|p| format!(" at `{p}`")).unwrap_or_default();
    (Outcome::Pass, format!("`{name}` is `{repository}`{path}, owned by {owner}"), None)
}

fn spans(facts: &Facts) -> Judged {
    if facts.environments.is_empty() {
        return (
            Outcome::Skipped,
            "no environment to look in".into(),
            Some("name one (`--environment staging`), or list them in [gate] environments".into()),
        );
    }
    let places = facts.environments.join(", ");
    let window = minutes(facts.window_nanos);
    let service = &facts.service;
    let is_head = |sha: &Option<String>| match (sha, &facts.commit) {
        (Some(sha), Some(head)) => same_commit(sha, head),
        _ => false,
    };
    let of_head: Vec<&VersionSeen> = facts
        .seen
        .iter()
        .filter(|v| is_head(&v.commit_attribute) || is_head(&v.resolves_to))
        .collect();
    if !of_head.is_empty() {
        let spans: u64 = of_head.iter().map(|v| v.num_spans).sum();
        let head = short(facts.commit.as_deref());
        if let Some(bad) = of_head.iter().find(|v| v.version.is_empty()) {
            return (
                Outcome::Fail,
                format!("spans of {head} from {} carry no service.version", bad.environment),
                Some(STAMP_FIX.into()),
            );
        }
        if let Some(bad) = of_head.iter().find(|v| v.commit_attribute.is_none()) {
            return (
                Outcome::Fail,
                format!(
                    "spans of {head} from {} (version {}) carry no commit attribute",
                    bad.environment, bad.version
                ),
                Some(STAMP_FIX.into()),
            );
        }
        let versions: Vec<&str> = of_head.iter().map(|v| v.version.as_str()).collect();
        return (
            Outcome::Pass,
            format!(
                "{spans} spans of {head} from {places} (version {}) carry service.version and a commit attribute",
                versions.join(", ")
            ),
            None,
        );
    }
    let Some(latest) = facts.seen.iter().max_by_key(|v| v.last_seen_unix_nanos) else {
        return (
            Outcome::CannotTell,
            format!("no spans of `{service}` from {places} in the last {window}"),
            None,
        );
    };
    let described = if latest.version.is_empty() {
        format!("the latest spans of `{service}` from {}", latest.environment)
    } else {
        format!(
            "the latest spans of `{service}` from {} (version {})",
            latest.environment, latest.version
        )
    };
    if latest.version.is_empty() || latest.commit_attribute.is_none() {
        let lacks = if latest.version.is_empty() { "service.version" } else { "commit attribute" };
        return (Outcome::Fail, format!("{described} carry no {lacks}"), Some(STAMP_FIX.into()));
    }
    if facts.expect_head {
        (
            Outcome::CannotTell,
            format!(
                "no spans of {} from {places} in the last {window}; {described} carry both, so a deploy of it should be attributable",
                short(facts.commit.as_deref())
            ),
            None,
        )
    } else {
        (Outcome::Pass, format!("{described} carry service.version and a commit attribute"), None)
    }
}

/// Whether two shas name the same commit (either may be a prefix of at least 7 digits).
fn same_commit(a: &str, b: &str) -> bool {
    let (a, b) = (a.to_ascii_lowercase(), b.to_ascii_lowercase());
    let shorter = a.len().min(b.len());
    shorter >= 7 && a[..shorter] == b[..shorter]
}

fn short(sha: Option<&str>) -> String {
    match sha {
        Some(sha) => sha.chars().take(12).collect(),
        None => "the change".into(),
    }
}

fn minutes(nanos: u64) -> String {
    let minutes = nanos / 60_000_000_000;
    if minutes == 1 { "minute".into() } else { format!("{minutes} minutes") }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "4f2a9c1d0b7e6f5a4c3b2a1908f7e6d5c4b3a291";
    const OLD: &str = "0123456789abcdef0123456789abcdef01234567";

    fn facts() -> Facts {
        Facts {
            service: "cart".into(),
            commit: Some(HEAD.into()),
            review: ReviewLink::Found {
                id: "D12".into(),
                how: "`Differential Revision:` line".into(),
            },
            mapping: Some(Mapping {
                repository: Some("shop".into()),
                owner: Some("payments".into()),
                ..Mapping::default()
            }),
            environments: vec!["staging".into()],
            seen: vec![seen("1.4.0", Some(HEAD), 100)],
            expect_head: true,
            window_nanos: 30 * 60_000_000_000,
        }
    }

    fn seen(version: &str, commit: Option<&str>, at: u64) -> VersionSeen {
        VersionSeen {
            environment: "staging".into(),
            version: version.into(),
            num_spans: 40,
            last_seen_unix_nanos: at,
            commit_attribute: commit.map(str::to_owned),
            resolves_to: None,
        }
    }

    fn check(report: &Report, check: Check) -> &CheckResult {
        report.checks.iter().find(|c| c.check == check).unwrap()
    }

    #[test]
    fn a_reviewed_mapped_and_stamped_change_passes() {
        let report = evaluate(&facts(), &Rules::default());
        assert_eq!(report.outcome, Outcome::Pass, "{report:?}");
        assert_eq!(check(&report, Check::Review).found, "D12 (`Differential Revision:` line)");
        assert_eq!(check(&report, Check::Service).found, "`cart` is `shop`, owned by payments");
        assert_eq!(
            check(&report, Check::Spans).found,
            "40 spans of 4f2a9c1d0b7e from staging (version 1.4.0) carry service.version and a commit attribute"
        );
        assert!(report.checks.iter().all(|c| c.fix.is_none()));
    }

    #[test]
    fn each_failure_names_what_was_found_and_the_fix() {
        let mut unreviewed = facts();
        unreviewed.review = ReviewLink::Missing;
        let report = evaluate(&unreviewed, &Rules::default());
        assert_eq!(report.outcome, Outcome::Fail);
        let review = check(&report, Check::Review);
        assert_eq!(review.found, "commit 4f2a9c1d0b7e links to no review");
        assert!(review.fix.as_deref().unwrap().contains("Differential Revision:"));

        let mut unmapped = facts();
        unmapped.mapping = None;
        let service = evaluate(&unmapped, &Rules::default()).checks[1].clone();
        assert_eq!(
            (service.outcome, service.found.as_str()),
            (Outcome::Fail, "no [[services]] entry is named `cart`")
        );
        assert!(service.fix.unwrap().contains("[[services]] name = \"cart\""));

        let mut shared = facts();
        shared.mapping.as_mut().unwrap().neighbours = vec!["search".into()];
        let service = check(&evaluate(&shared, &Rules::default()), Check::Service).clone();
        assert_eq!(service.outcome, Outcome::Fail);
        assert!(service.fix.unwrap().contains("path_prefix"), "a monorepo needs the path");

        let mut ownerless = facts();
        ownerless.mapping.as_mut().unwrap().owner = None;
        assert!(
            check(&evaluate(&ownerless, &Rules::default()), Check::Service)
                .found
                .contains("no owner")
        );

        let mut unstamped = facts();
        unstamped.seen =
            vec![VersionSeen { resolves_to: Some(HEAD.into()), ..seen("1.4.0", None, 100) }];
        let spans = check(&evaluate(&unstamped, &Rules::default()), Check::Spans).clone();
        assert_eq!(spans.outcome, Outcome::Fail);
        assert_eq!(
            spans.found,
            "spans of 4f2a9c1d0b7e from staging (version 1.4.0) carry no commit attribute"
        );
        assert!(spans.fix.unwrap().contains("vcs.ref.head.revision"));
    }

    #[test]
    fn no_spans_of_the_change_yet_is_cannot_tell_with_the_reason() {
        let mut quiet = facts();
        quiet.seen.clear();
        let report = evaluate(&quiet, &Rules::default());
        assert_eq!(report.outcome, Outcome::CannotTell);
        assert_eq!(
            check(&report, Check::Spans).found,
            "no spans of `cart` from staging in the last 30 minutes"
        );

        // Older versions carry both attributes: still cannot tell for the head commit...
        let mut earlier = facts();
        earlier.seen = vec![seen("1.3.9", Some(OLD), 50)];
        let report = evaluate(&earlier, &Rules::default());
        assert_eq!(report.outcome, Outcome::CannotTell);
        assert!(
            check(&report, Check::Spans).found.contains("so a deploy of it should be attributable")
        );
        // ...but under review (not deployed anywhere yet) the practice is what can be judged.
        earlier.expect_head = false;
        assert_eq!(evaluate(&earlier, &Rules::default()).outcome, Outcome::Pass);
        // When the latest spans say nothing of their commit, the change will not be attributable.
        earlier.seen.push(seen("1.3.10", None, 60));
        let spans = check(&evaluate(&earlier, &Rules::default()), Check::Spans).clone();
        assert_eq!(spans.outcome, Outcome::Fail);
        assert_eq!(
            spans.found,
            "the latest spans of `cart` from staging (version 1.3.10) carry no commit attribute"
        );
    }

    #[test]
    fn a_commit_not_fetched_yet_and_advisory_checks_do_not_fail_the_gate() {
        let mut unknown = facts();
        unknown.review =
            ReviewLink::Unknown("commit 4f2a9c1d0b7e is not in `shop`'s mirror yet".into());
        assert_eq!(evaluate(&unknown, &Rules::default()).outcome, Outcome::CannotTell);

        let mut unreviewed = facts();
        unreviewed.review = ReviewLink::Missing;
        let rules = Rules { required: vec![Check::Service, Check::Spans], ..Rules::default() };
        let report = evaluate(&unreviewed, &rules);
        assert_eq!(report.outcome, Outcome::Pass, "review is advice here");
        assert!(!check(&report, Check::Review).required);

        let mut nowhere = facts();
        nowhere.environments.clear();
        let report = evaluate(&nowhere, &Rules::default());
        assert_eq!(check(&report, Check::Spans).outcome, Outcome::Skipped);
        assert_eq!(report.outcome, Outcome::Pass);
    }

    #[test]
    fn short_and_full_shas_name_the_same_commit() {
        assert!(same_commit("4F2A9C1", HEAD));
        assert!(!same_commit("4f2a9c", HEAD), "too short to say");
        assert!(!same_commit(OLD, HEAD));
    }
}
