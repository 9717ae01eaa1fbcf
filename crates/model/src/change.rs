//! The change graph's vocabulary: forges, commits, reviews, deploys and owners, as spanblame
//! records them from webhooks, git mirrors and the deploy API. A field is `None` (or empty)
//! when its source did not say; nothing here is guessed.

use std::fmt;

/// A forge spanblame can receive webhooks from. Forgejo is Gitea's fork and speaks its
/// protocol, so it is `Gitea` here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ForgeKind {
    Gogs,
    Gitea,
    Github,
    Gitlab,
    Phabricator,
}

impl ForgeKind {
    pub const ALL: [ForgeKind; 5] = [
        ForgeKind::Gogs,
        ForgeKind::Gitea,
        ForgeKind::Github,
        ForgeKind::Gitlab,
        ForgeKind::Phabricator,
    ];

    /// The name used in URLs (`/hooks/{kind}/...`), the config and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            ForgeKind::Gogs => "gogs",
            ForgeKind::Gitea => "gitea",
            ForgeKind::Github => "github",
            ForgeKind::Gitlab => "gitlab",
            ForgeKind::Phabricator => "phabricator",
        }
    }

    /// The forge's name as people write it (Gitea's kind covers Forgejo too).
    pub fn display_name(self) -> &'static str {
        match self {
            ForgeKind::Gogs => "Gogs",
            ForgeKind::Gitea => "Gitea",
            ForgeKind::Github => "GitHub",
            ForgeKind::Gitlab => "GitLab",
            ForgeKind::Phabricator => "Phabricator",
        }
    }

    /// Parses a kind; `forgejo` is accepted as `gitea`.
    pub fn parse(name: &str) -> Option<ForgeKind> {
        match name {
            "forgejo" => Some(ForgeKind::Gitea),
            _ => ForgeKind::ALL.into_iter().find(|kind| kind.as_str() == name),
        }
    }
}

impl fmt::Display for ForgeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A person as a forge or git names them. Any part may be unknown (Gogs sends `username: ""`
/// for unmatched e-mails, GitLab redacts e-mails).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Person {
    pub name: Option<String>,
    pub email: Option<String>,
    pub username: Option<String>,
}

impl Person {
    /// The best label for a person: name, then username, then e-mail.
    pub fn display(&self) -> Option<&str> {
        self.name.as_deref().or(self.username.as_deref()).or(self.email.as_deref())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FileChangeKind {
    Added,
    Removed,
    Modified,
}

impl FileChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FileChangeKind::Added => "added",
            FileChangeKind::Removed => "removed",
            FileChangeKind::Modified => "modified",
        }
    }

    pub fn parse(name: &str) -> Option<FileChangeKind> {
        match name {
            "added" => Some(FileChangeKind::Added),
            "removed" => Some(FileChangeKind::Removed),
            "modified" => Some(FileChangeKind::Modified),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct FileChange {
    pub path: String,
    pub kind: FileChangeKind,
}

/// One commit. `parents` is empty when the source did not list them (webhooks rarely do; the
/// git mirror always does).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Commit {
    /// Full hex object id, lowercase.
    pub sha: String,
    pub parents: Vec<String>,
    pub author: Person,
    pub committer: Person,
    pub message: String,
    /// Author time.
    pub time_unix_secs: Option<i64>,
    /// The forge's page for this commit.
    pub url: Option<String>,
    pub files: Vec<FileChange>,
}

impl Commit {
    /// The first line of the message.
    pub fn subject(&self) -> &str {
        subject(&self.message)
    }
}

/// The first line of a commit message, trimmed.
pub fn subject(message: &str) -> &str {
    message.lines().next().unwrap_or("").trim()
}

/// Where a review stands, normalised across forges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReviewState {
    Open,
    Closed,
    Merged,
}

impl ReviewState {
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewState::Open => "open",
            ReviewState::Closed => "closed",
            ReviewState::Merged => "merged",
        }
    }

    pub fn parse(name: &str) -> Option<ReviewState> {
        match name {
            "open" => Some(ReviewState::Open),
            "closed" => Some(ReviewState::Closed),
            "merged" => Some(ReviewState::Merged),
            _ => None,
        }
    }
}

/// A pull request, merge request or Differential revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Review {
    pub kind: ForgeKind,
    /// The forge's own name for it: `"42"` for a pull/merge request, `"D123"` for Phabricator.
    pub id: String,
    pub title: String,
    pub url: Option<String>,
    pub author: Person,
    /// Usernames (or PHIDs where the forge gives nothing better).
    pub reviewers: Vec<String>,
    pub state: ReviewState,
    /// The branch under review (`feature/x`), in the review's own repository.
    pub head_branch: Option<String>,
    pub head_sha: Option<String>,
    pub merge_commit_sha: Option<String>,
    /// Commits known to belong to it.
    pub commits: Vec<String>,
}

/// How spanblame learned of a deploy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeploySource {
    /// Reported through `POST /api/v1/deploys` or `spanblame deploy`.
    Explicit,
    /// Inferred from the first spans of a new `service.version` in an environment.
    Inferred,
    /// Reported and also seen in spans: the two records merged.
    Merged,
}

impl DeploySource {
    pub fn as_str(self) -> &'static str {
        match self {
            DeploySource::Explicit => "explicit",
            DeploySource::Inferred => "inferred",
            DeploySource::Merged => "explicit+inferred",
        }
    }

    pub fn parse(name: &str) -> Option<DeploySource> {
        [DeploySource::Explicit, DeploySource::Inferred, DeploySource::Merged]
            .into_iter()
            .find(|source| source.as_str() == name)
    }
}

/// A version of a service going live in an environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deploy {
    pub id: u64,
    pub service: String,
    pub environment: String,
    pub version: String,
    /// The commit the version was built from, when known.
    pub commit: Option<String>,
    pub repository: Option<String>,
    pub started_at_unix_nanos: u64,
    pub finished_at_unix_nanos: Option<u64>,
    pub deployer: Option<String>,
    pub is_rollback: bool,
    pub url: Option<String>,
    pub source: DeploySource,
    /// The forge event the deploy was reported by, when a forge reported it.
    pub event: Option<ForgeEvent>,
    /// The deploy of this service and environment that this one replaced.
    pub previous_id: Option<u64>,
}

/// A forge event that reported a deploy: a deployment that succeeded, a published release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForgeEvent {
    /// The `[[integrations]]` entry it arrived on.
    pub integration: String,
    pub forge: ForgeKind,
    /// `deployment` or `release`.
    pub kind: String,
    /// The forge's id for it (a deployment's number, a release's id).
    pub id: String,
    /// The forge's page for it.
    pub url: Option<String>,
}

impl ForgeEvent {
    /// `GitHub deployment 145988746`, as pages say it.
    pub fn describe(&self) -> String {
        format!("{} {} {}", self.forge.display_name(), self.kind, self.id)
    }
}

/// Is `text` a full or abbreviated git object id (7 to 64 hex digits)?
pub fn looks_like_sha(text: &str) -> bool {
    (7..=64).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The sha 40 zeros that forges send as `before` for a new ref and `after` for a deleted one.
pub fn is_null_sha(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b == b'0')
}

/// Normalises a repository URL for matching: no scheme, credentials, `.git` suffix, trailing
/// slash or case differences; `git@host:owner/repo` becomes `host/owner/repo`.
pub fn normalize_repository_url(url: &str) -> String {
    let url = url.trim();
    let without_scheme = match url.find("://") {
        Some(at) => &url[at + 3..],
        None => url,
    };
    let without_credentials = match without_scheme.find('@') {
        Some(at) if without_scheme[..at].find('/').is_none() => &without_scheme[at + 1..],
        _ => without_scheme,
    };
    // scp-like syntax: host:owner/repo
    let slashed = match (without_credentials.find(':'), without_credentials.find('/')) {
        (Some(colon), Some(slash)) if colon < slash => {
            let (host, rest) = without_credentials.split_at(colon);
            let rest = &rest[1..];
            // A numeric port is not scp syntax.
            let port_len = rest.bytes().take_while(u8::is_ascii_digit).count();
            if port_len > 0 && rest[port_len..].starts_with('/') {
                format!("{host}{}", &rest[port_len..])
            } else {
                format!("{host}/{rest}")
            }
        }
        _ => without_credentials.to_owned(),
    };
    let trimmed = slashed.trim_end_matches('/');
    let trimmed = trimmed.strip_suffix(".git").unwrap_or(trimmed);
    trimmed.to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_urls_normalise_to_one_form() {
        let expected = "git.example.com/team/api";
        for url in [
            "https://git.example.com/team/api",
            "https://git.example.com/team/api.git",
            "https://user:secret@git.example.com/team/api/",
            "git@git.example.com:team/api.git",
            "ssh://git@git.example.com:2222/team/api.git",
            "HTTPS://Git.Example.com/Team/API",
        ] {
            assert_eq!(normalize_repository_url(url), expected, "{url}");
        }
    }

    #[test]
    fn shas_and_null_shas() {
        assert!(looks_like_sha("0123abc"));
        assert!(looks_like_sha(&"a".repeat(40)));
        assert!(!looks_like_sha("v1.2.3"));
        assert!(!looks_like_sha("abc"));
        assert!(is_null_sha(&"0".repeat(40)));
        assert!(!is_null_sha(""));
    }

    #[test]
    fn forge_kinds_round_trip_and_forgejo_is_gitea() {
        for kind in ForgeKind::ALL {
            assert_eq!(ForgeKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(ForgeKind::parse("forgejo"), Some(ForgeKind::Gitea));
        assert_eq!(ForgeKind::parse("bitbucket"), None);
    }

    #[test]
    fn subject_is_the_first_line() {
        assert_eq!(subject("fix: cache\n\nlonger body"), "fix: cache");
        assert_eq!(subject(""), "");
    }
}
