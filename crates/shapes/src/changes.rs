//! A span's or deploy's change context as typed values: commits, reviews, blames.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A commit as the API names it. Read back from stored explanations too (a suspect's commit).
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CommitJ {
    pub sha: String,
    pub subject: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    pub repository: String,
}

impl CommitJ {
    pub fn short(&self) -> &str {
        self.sha.get(..10).unwrap_or(&self.sha)
    }
}

/// A review as the API names it; a Differential revision known only from a commit message
/// has its kind, id and perhaps its URL.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReviewJ {
    pub kind: String,
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
}

impl ReviewJ {
    /// How the forge names it: `D123`, `PR #45`, `MR !7`.
    pub fn label(&self) -> String {
        review_label(&self.kind, &self.id)
    }
}

/// How the forge names a review: `D123`, `PR #45`, `MR !7`.
pub fn review_label(kind: &str, id: &str) -> String {
    match kind {
        "phabricator" => id.to_owned(),
        "gitlab" => format!("MR !{id}"),
        _ => format!("PR #{id}"),
    }
}

/// A span's change context: what is known of the code it runs, each part only when a record
/// says so.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ChangeJ {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<CommitJ>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub review: Option<ReviewJ>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blame: Option<BlameJ>,
    /// Why there is no blame, for a span that names its code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blame_unavailable: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// The most recent change to the code a span runs: the commit, its review, and where.
#[derive(Debug, Default, Clone, Serialize)]
pub struct BlameJ {
    #[serde(flatten)]
    pub commit: CommitJ,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub review: Option<ReviewJ>,
    pub committed_at: Option<String>,
    pub path: String,
    /// `5-17`, or `12` for one line.
    pub lines: String,
    pub whole_function: bool,
    pub changed_lines: Vec<u32>,
    /// Line by line (`?blame=lines`): each line's commit and code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by_line: Option<Vec<BlameLineJ>>,
    /// The commits `by_line` names, by sha.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line_commits: Option<BTreeMap<String, LineCommitJ>>,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct BlameLineJ {
    pub line: u32,
    pub sha: String,
    pub code: String,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct LineCommitJ {
    pub subject: String,
    pub author: Option<String>,
    pub committed_at: Option<String>,
}

/// One row of a line-by-line blame, as `git blame` prints it: the commit is named on the
/// first line of each run of lines it last changed.
pub struct BlameRowJ {
    pub line: u32,
    pub code: String,
    pub sha: String,
    /// "3f89bb6129 Margaret Hamilton, 2026-11-20: Apply first-order…" on a run's first line.
    pub label: Option<String>,
    /// Whether the span's blamed commit last changed this line.
    pub blamed: bool,
}

impl BlameJ {
    /// The line-by-line rows, runs of one commit labelled once.
    pub fn line_rows(&self) -> Vec<BlameRowJ> {
        let mut previous: Option<&str> = None;
        self.by_line
            .iter()
            .flatten()
            .map(|l| {
                let first_of_run = previous != Some(l.sha.as_str());
                previous = Some(&l.sha);
                let label = first_of_run.then(|| {
                    let short = l.sha.get(..10).unwrap_or(&l.sha);
                    match self.line_commits.as_ref().and_then(|c| c.get(&l.sha)) {
                        Some(c) => {
                            let when = c.committed_at.as_deref().and_then(|t| t.get(..10));
                            let by = [c.author.as_deref(), when].into_iter().flatten();
                            format!("{short} {}: {}", by.collect::<Vec<_>>().join(", "), c.subject)
                        }
                        None => short.to_owned(),
                    }
                });
                BlameRowJ {
                    line: l.line,
                    code: l.code.clone(),
                    sha: l.sha.clone(),
                    label,
                    blamed: l.sha == self.commit.sha,
                }
            })
            .collect()
    }

    pub fn short(&self) -> &str {
        self.commit.short()
    }

    /// Whether it lists its function line by line.
    pub fn has_lines(&self) -> bool {
        self.by_line.as_ref().is_some_and(|lines| !lines.is_empty())
    }

    /// "lines 5-17 (the function), changed here: 8-15".
    pub fn where_text(&self) -> String {
        let scope = if self.whole_function { "the function" } else { "the span's line" };
        format!(
            "{} lines {} ({scope}); this commit last changed {}",
            self.path,
            self.lines,
            ranges_text(&self.changed_lines)
        )
    }
}

/// `[8, 9, 10, 14]` as "8-10, 14".
pub fn ranges_text(lines: &[u32]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let mut j = i;
        while j + 1 < lines.len() && lines[j + 1] == lines[j] + 1 {
            j += 1;
        }
        parts.push(if i == j {
            lines[i].to_string()
        } else {
            format!("{}-{}", lines[i], lines[j])
        });
        i = j + 1;
    }
    if parts.is_empty() {
        "no line".into()
    } else {
        format!("line{} {}", if lines.len() == 1 { "" } else { "s" }, parts.join(", "))
    }
}
