//! Deploys, their ranges and the tagging gate's answers, as typed values.

use serde::{Deserialize, Serialize};

use crate::changes::{CommitJ, ReviewJ};
use crate::words::{is_web_url, query_escape, service_href, short_time};

/// One answer of the tagging gate: as `POST /api/v1/gate` gives it (and the store records
/// it), and with who asked and when in a commit's `gate` list (`views::gate::commit_results`).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct GateJ {
    pub outcome: String,
    pub service: String,
    pub commit: Option<String>,
    /// As the forge names it (`D12`, `PR #42`).
    pub review: Option<String>,
    pub environment: Option<String>,
    pub summary: String,
    pub checks: Vec<GateCheckJ>,
    /// `api`, `harbormaster` or `review`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub asked_by: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub evaluated_at: String,
}

impl GateJ {
    /// Who asked, in words.
    pub fn asked_by_text(&self) -> &'static str {
        match self.asked_by.as_str() {
            "harbormaster" => "a Harbormaster build",
            "review" => "a new review head",
            _ => "the API (spanblame gate)",
        }
    }

    /// `2026-12-05 21:52 UTC`.
    pub fn when(&self) -> String {
        short_time(&self.evaluated_at)
    }
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct GateCheckJ {
    pub name: String,
    pub title: String,
    pub outcome: String,
    pub required: bool,
    pub found: String,
    pub fix: Option<String>,
}

/// A deploy with its commit, predecessor and range, as `GET /api/v1/deploys` lists it.
#[derive(Debug, Default, Clone, Serialize)]
pub struct DeployJ {
    pub id: u64,
    pub service: String,
    pub environment: Option<String>,
    pub version: String,
    pub commit_sha: Option<String>,
    pub commit: Option<CommitJ>,
    pub repository: Option<String>,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub deployer: Option<String>,
    pub is_rollback: bool,
    pub url: Option<String>,
    /// `explicit`, `inferred` or `explicit+inferred`.
    pub source: String,
    /// The forge event that reported it.
    pub forge_event: Option<ForgeEventJ>,
    pub previous: Option<PreviousJ>,
    pub range: Option<RangeJ>,
    /// Commit impact only: how the deploy shipped the commit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shipped_as: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traces_after: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traces_before: Option<String>,
}

impl DeployJ {
    /// The pipeline link, only when it is an http(s) address (a `javascript:` one stored by
    /// an older version is not rendered as a link), and not the forge event's own link.
    pub fn pipeline_link(&self) -> Option<&str> {
        let event_url = self.forge_event.as_ref().and_then(|e| e.url.as_deref());
        self.url.as_deref().filter(|url| is_web_url(url)).filter(|url| Some(*url) != event_url)
    }

    /// Where the deploy was learnt from, in words: the forge event, a report, the spans.
    pub fn origin(&self) -> String {
        let seen_in_spans = self.source == "explicit+inferred";
        match (&self.forge_event, self.source.as_str()) {
            (Some(event), _) if seen_in_spans => format!("{}, and spans", event.description),
            (Some(event), _) => event.description.clone(),
            (None, "explicit") => "a report (API or CLI)".into(),
            (None, "inferred") => "spans of a new version".into(),
            (None, "explicit+inferred") => "a report (API or CLI), and spans".into(),
            (None, other) => other.to_owned(),
        }
    }

    pub fn environment(&self) -> &str {
        self.environment.as_deref().unwrap_or("(none)")
    }

    pub fn when(&self) -> String {
        short_time(&self.started_at)
    }

    pub fn service_href(&self) -> String {
        service_href(&self.service)
    }

    /// The UI's trace searches for the links the API gave (`/api/v1/traces?...`).
    pub fn ui_after(&self) -> Option<String> {
        self.traces_after.as_ref().map(|l| l.replacen("/api/v1/traces", "/traces", 1) + "&last=7d")
    }

    pub fn ui_before(&self) -> Option<String> {
        self.traces_before.as_ref().map(|l| l.replacen("/api/v1/traces", "/traces", 1) + "&last=7d")
    }

    /// The search for this deploy's version.
    pub fn traces_href(&self) -> String {
        let mut href = format!(
            "/traces?service={}&version={}&last=7d",
            query_escape(&self.service),
            query_escape(&self.version)
        );
        if let Some(environment) = &self.environment {
            href.push_str(&format!("&environment={}", query_escape(environment)));
        }
        href
    }
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct ForgeEventJ {
    pub integration: String,
    pub forge: String,
    pub kind: String,
    pub id: String,
    pub url: Option<String>,
    /// `GitHub deployment 145988746`.
    pub description: String,
}

impl ForgeEventJ {
    /// The event's page, only when it is an http(s) address.
    pub fn link(&self) -> Option<&str> {
        self.url.as_deref().filter(|url| is_web_url(url))
    }
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct PreviousJ {
    pub id: u64,
    pub version: String,
    pub commit_sha: Option<String>,
}

/// The commits a deploy shipped since its predecessor; listed only when a mirror has them.
#[derive(Debug, Default, Clone, Serialize)]
pub struct RangeJ {
    pub from: String,
    pub to: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commits: Option<Vec<RangeCommitJ>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncated: Option<bool>,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct RangeCommitJ {
    pub sha: String,
    pub subject: String,
    pub author: Option<String>,
    pub parents: Vec<String>,
    pub files: Vec<FileChangeJ>,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct FileChangeJ {
    pub path: String,
    /// `added`, `modified`, `deleted`, ...
    pub change: String,
}

/// Where a commit shipped (`GET /api/v1/commits/{sha}/impact`); the commit's own page
/// (`GET /api/v1/commits/{sha}`) adds its review and the gate's answers.
#[derive(Debug, Serialize)]
pub struct CommitImpactJ {
    pub commit: CommitJ,
    pub deploys: Vec<DeployJ>,
    #[serde(flatten)]
    pub about: Option<CommitAboutJ>,
}

#[derive(Debug, Serialize)]
pub struct CommitAboutJ {
    pub review: Option<ReviewJ>,
    pub gate: Vec<GateJ>,
}

impl RangeJ {
    /// The commits listed (none without a mirror).
    pub fn listed(&self) -> &[RangeCommitJ] {
        self.commits.as_deref().unwrap_or_default()
    }

    /// Whether more commits shipped than are listed.
    pub fn more(&self) -> bool {
        self.truncated == Some(true)
    }
}

impl RangeCommitJ {
    pub fn short(&self) -> &str {
        self.sha.get(..10).unwrap_or(&self.sha)
    }
}
