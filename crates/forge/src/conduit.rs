//! Phabricator/Phorge Conduit: the `*.search` calls spanblame makes to follow a Herald pointer,
//! and what it reads from their answers. Pure: the server sends the bytes and hands back what
//! came in, so the real responses in `test_data/forges/phabricator/` are the test suite.
//!
//! Conduit's rules, from its source (see `research/forges.md` §5): `POST {base}/api/{method}`
//! with a form body `params=<JSON>&output=json&__conduit__=1`, the token inside the JSON as
//! `__conduit__.token`; the answer is always `{result, error_code, error_info}`, and HTTP 200
//! even on errors, so `error_code` decides.

use std::collections::HashMap;
use std::fmt;

use model::{Commit, ForgeKind, Person, Review, ReviewState};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value as Json, json};

/// Why a Conduit answer could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConduitError {
    /// Conduit answered, with an error (`ERR-INVALID-AUTH`, `ERR-CONDUIT-CORE`, ...).
    #[error("Conduit `{method}` failed with {code}: {info}")]
    Api { method: &'static str, code: String, info: String },
    #[error("Conduit `{method}` answered something that is not its JSON envelope: {reason}")]
    Malformed { method: &'static str, reason: String },
}

impl ConduitError {
    /// The API token was refused: a configuration problem, not a passing one.
    pub fn is_authentication(&self) -> bool {
        matches!(self, ConduitError::Api { code, .. } if code == "ERR-INVALID-AUTH")
    }
}

/// Conduit refusals that sending again cannot fix: the token is refused, the method unknown,
/// or (for `ERR-CONDUIT-CORE`, Phorge's catch-all) the object or a parameter is invalid.
/// Rate limits and internal errors are worth another try.
pub fn is_permanent_refusal(code: &str, info: &str) -> bool {
    match code {
        "ERR-INVALID-AUTH" | "ERR-INVALID-SESSION" | "ERR-CONDUIT-CALL" | "ERR-NOT-FOUND" => true,
        "ERR-CONDUIT-CORE" => {
            let info = info.to_ascii_lowercase();
            ["does not identify", "invalid", "parameter", "no such", "unknown", "not permitted"]
                .iter()
                .any(|words| info.contains(words))
        }
        _ => false,
    }
}

/// `text` with every Conduit API token (`api-` or `cli-` and 28 more letters or digits, as
/// Phorge quotes a refused one) replaced by `api-…`/`cli-…`, so a refusal can be logged and
/// shown.
pub fn redact_tokens(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = ["api-", "cli-"].iter().filter_map(|p| rest.find(p)).min() {
        let prefix = &rest[at..at + 4];
        let tail = &rest[at + 4..];
        let secret = tail.bytes().take_while(u8::is_ascii_alphanumeric).count();
        out.push_str(&rest[..at]);
        if secret >= 8 {
            out.push_str(prefix);
            out.push('…');
            rest = &tail[secret..];
        } else {
            out.push_str(prefix);
            rest = tail;
        }
    }
    out.push_str(rest);
    out
}

/// One `*.search` request: the method and its parameters, without token or cursor.
#[derive(Debug, Clone, PartialEq)]
pub struct ConduitCall {
    pub method: &'static str,
    params: Json,
}

impl ConduitCall {
    /// `differential.revision.search` for these revision PHIDs, with their reviewers.
    pub fn revisions(phids: &[String]) -> ConduitCall {
        ConduitCall {
            method: "differential.revision.search",
            params: json!({"constraints": {"phids": phids}, "attachments": {"reviewers": true}}),
        }
    }

    /// `differential.diff.search` for these diff PHIDs, with the local commits `arc` uploaded.
    pub fn diffs(phids: &[String]) -> ConduitCall {
        ConduitCall {
            method: "differential.diff.search",
            params: json!({"constraints": {"phids": phids}, "attachments": {"commits": true}}),
        }
    }

    /// `diffusion.commit.search` for these commit PHIDs.
    pub fn commits(phids: &[String]) -> ConduitCall {
        ConduitCall {
            method: "diffusion.commit.search",
            params: json!({"constraints": {"phids": phids}}),
        }
    }

    /// `diffusion.repository.search` for these repository PHIDs, with their clone URIs.
    pub fn repositories(phids: &[String]) -> ConduitCall {
        ConduitCall {
            method: "diffusion.repository.search",
            params: json!({"constraints": {"phids": phids}, "attachments": {"uris": true}}),
        }
    }

    /// `user.search` for these user PHIDs.
    pub fn users(phids: &[String]) -> ConduitCall {
        ConduitCall { method: "user.search", params: json!({"constraints": {"phids": phids}}) }
    }

    /// `edge.search` from these objects along these edge types (`revision.commit`,
    /// `commit.revision`).
    pub fn edges(source_phids: &[String], types: &[&str]) -> ConduitCall {
        ConduitCall {
            method: "edge.search",
            params: json!({"sourcePHIDs": source_phids, "types": types}),
        }
    }

    /// The path under the install's base URL.
    pub fn path(&self) -> String {
        format!("api/{}", self.method)
    }

    /// The form body `ConduitClient` sends: the parameters as JSON in `params`, the token as
    /// `__conduit__.token` inside them, and the page cursor as `after`.
    pub fn form_body(&self, token: &str, after: Option<&str>) -> String {
        let mut params = self.params.clone();
        params["__conduit__"] = json!({"token": token});
        if let Some(after) = after {
            params["after"] = after.into();
        }
        format!("params={}&output=json&__conduit__=1", form_encode(&params.to_string()))
    }

    /// Reads one page of this call's answer.
    pub fn read_page<T: DeserializeOwned>(&self, body: &[u8]) -> Result<Page<T>, ConduitError> {
        read_page(self.method, body)
    }
}

/// One page of a `*.search` answer; `after` is the cursor of the next page, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub after: Option<String>,
}

#[derive(Deserialize)]
struct Envelope {
    result: Option<Json>,
    error_code: Option<String>,
    error_info: Option<String>,
}

#[derive(Deserialize)]
struct SearchResult<T> {
    data: Vec<T>,
    #[serde(default)]
    cursor: Cursor,
}

#[derive(Deserialize, Default)]
struct Cursor {
    after: Option<Json>,
}

fn read_page<T: DeserializeOwned>(
    method: &'static str,
    body: &[u8],
) -> Result<Page<T>, ConduitError> {
    let malformed = |reason: String| ConduitError::Malformed { method, reason };
    let envelope: Envelope = serde_json::from_slice(body).map_err(|e| malformed(e.to_string()))?;
    if let Some(code) = envelope.error_code {
        return Err(ConduitError::Api {
            method,
            code,
            info: redact_tokens(&envelope.error_info.unwrap_or_default()),
        });
    }
    let result = envelope.result.ok_or_else(|| malformed("`result` is null".into()))?;
    let result: SearchResult<T> =
        serde_json::from_value(result).map_err(|e| malformed(format!("in `result`: {e}")))?;
    let after = match result.cursor.after {
        Some(Json::String(after)) if !after.is_empty() => Some(after),
        Some(Json::Number(after)) => Some(after.to_string()),
        _ => None,
    };
    Ok(Page { items: result.data, after })
}

/// `application/x-www-form-urlencoded` encoding: unreserved bytes stay, the rest is `%XX`.
pub(crate) fn form_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3 / 2);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// What spanblame reads from the answers

/// A Differential revision (`differential.revision.search`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "RawRevision")]
pub struct Revision {
    pub id: u64,
    pub phid: String,
    pub title: String,
    /// Absolute (`https://host/D123`); older installs omit it.
    pub uri: Option<String>,
    pub author_phid: Option<String>,
    /// `needs-review`, `needs-revision`, `changes-planned`, `accepted`, `published`,
    /// `abandoned` or `draft`.
    pub status: String,
    pub repository_phid: Option<String>,
    /// The active diff.
    pub diff_phid: Option<String>,
    /// Reviewer PHIDs (users or projects), when the `reviewers` attachment was asked for.
    pub reviewer_phids: Vec<String>,
}

impl Revision {
    /// `D123`: how Phabricator names a revision.
    pub fn monogram(&self) -> String {
        format!("D{}", self.id)
    }

    pub fn state(&self) -> ReviewState {
        match self.status.as_str() {
            "published" => ReviewState::Merged,
            "abandoned" => ReviewState::Closed,
            _ => ReviewState::Open,
        }
    }

    /// The revision's page: its own `uri`, else `{base}/D123`.
    pub fn url(&self, base_url: &str) -> String {
        self.uri
            .clone()
            .unwrap_or_else(|| format!("{}/{}", base_url.trim_end_matches('/'), self.monogram()))
    }

    /// The revision as a review. `landed` are the commits Phabricator links to it
    /// (`revision.commit` edges), `diff` its active diff, `users` who the PHIDs are.
    pub fn to_review(
        &self,
        base_url: &str,
        diff: Option<&Diff>,
        landed: &[String],
        users: &HashMap<String, User>,
    ) -> Review {
        let author = self.author_phid.as_deref().map_or_else(Person::default, |phid| {
            users.get(phid).map_or_else(Person::default, User::person)
        });
        let reviewers = self
            .reviewer_phids
            .iter()
            .map(|phid| users.get(phid).map_or_else(|| phid.clone(), |u| u.username.clone()))
            .collect();
        let mut commits: Vec<String> = landed.to_vec();
        if let Some(diff) = diff {
            commits.extend(diff.commits.iter().map(|c| c.identifier.clone()));
        }
        commits.sort();
        commits.dedup();
        Review {
            kind: ForgeKind::Phabricator,
            id: self.monogram(),
            title: self.title.clone(),
            url: Some(self.url(base_url)),
            author,
            reviewers,
            state: self.state(),
            // A diff's branch lives in the author's working copy, not in the repository.
            head_branch: None,
            head_sha: diff.and_then(Diff::head).map(str::to_owned),
            // One landed commit is what the revision became; several leave it open.
            merge_commit_sha: match (self.state(), landed) {
                (ReviewState::Merged, [only]) => Some(only.clone()),
                _ => None,
            },
            commits,
        }
    }
}

#[derive(Deserialize)]
struct RawRevision {
    id: u64,
    phid: String,
    fields: RevisionFields,
    #[serde(default)]
    attachments: RevisionAttachments,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RevisionFields {
    #[serde(default)]
    title: String,
    uri: Option<String>,
    #[serde(rename = "authorPHID")]
    author_phid: Option<String>,
    status: Option<Status>,
    #[serde(rename = "repositoryPHID")]
    repository_phid: Option<String>,
    #[serde(rename = "diffPHID")]
    diff_phid: Option<String>,
}

#[derive(Deserialize)]
struct Status {
    value: String,
}

#[derive(Deserialize, Default)]
struct RevisionAttachments {
    reviewers: Option<ReviewersAttachment>,
}

#[derive(Deserialize)]
struct ReviewersAttachment {
    #[serde(default)]
    reviewers: Vec<ReviewerEntry>,
}

#[derive(Deserialize)]
struct ReviewerEntry {
    #[serde(rename = "reviewerPHID")]
    reviewer_phid: String,
}

impl From<RawRevision> for Revision {
    fn from(raw: RawRevision) -> Revision {
        let fields = raw.fields;
        Revision {
            id: raw.id,
            phid: raw.phid,
            title: fields.title,
            uri: fields.uri,
            author_phid: fields.author_phid,
            status: fields.status.map(|s| s.value).unwrap_or_default(),
            repository_phid: fields.repository_phid,
            diff_phid: fields.diff_phid,
            reviewer_phids: raw
                .attachments
                .reviewers
                .map(|a| a.reviewers.into_iter().map(|r| r.reviewer_phid).collect())
                .unwrap_or_default(),
        }
    }
}

/// An author or committer as Conduit describes one.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Signature {
    pub name: Option<String>,
    pub email: Option<String>,
    pub epoch: Option<i64>,
    #[serde(rename = "userPHID")]
    pub user_phid: Option<String>,
}

impl Signature {
    fn person(&self, users: &HashMap<String, User>) -> Person {
        Person {
            name: self.name.clone().filter(|n| !n.is_empty()),
            email: self.email.clone().filter(|e| !e.is_empty()),
            username: self
                .user_phid
                .as_deref()
                .and_then(|phid| users.get(phid))
                .map(|u| u.username.clone()),
        }
    }
}

/// A commit Diffusion imported (`diffusion.commit.search`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "RawCommit")]
pub struct ConduitCommit {
    pub phid: String,
    /// The full hash.
    pub identifier: String,
    pub repository_phid: Option<String>,
    pub author: Signature,
    pub committer: Signature,
    pub message: String,
}

impl ConduitCommit {
    /// The commit in spanblame's vocabulary; `url` is its Diffusion page.
    pub fn to_commit(&self, users: &HashMap<String, User>, url: Option<String>) -> Commit {
        Commit {
            sha: self.identifier.to_ascii_lowercase(),
            parents: Vec::new(),
            author: self.author.person(users),
            committer: self.committer.person(users),
            message: self.message.clone(),
            time_unix_secs: self.author.epoch.filter(|&t| t > 0),
            url,
            files: Vec::new(),
        }
    }
}

#[derive(Deserialize)]
struct RawCommit {
    phid: String,
    fields: CommitFields,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CommitFields {
    identifier: String,
    #[serde(rename = "repositoryPHID")]
    repository_phid: Option<String>,
    #[serde(default)]
    author: Signature,
    #[serde(default)]
    committer: Signature,
    #[serde(default)]
    message: String,
}

impl From<RawCommit> for ConduitCommit {
    fn from(raw: RawCommit) -> ConduitCommit {
        ConduitCommit {
            phid: raw.phid,
            identifier: raw.fields.identifier,
            repository_phid: raw.fields.repository_phid,
            author: raw.fields.author,
            committer: raw.fields.committer,
            message: raw.fields.message,
        }
    }
}

/// A diff (`differential.diff.search`) with the local commits `arc diff` uploaded.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "RawDiff")]
pub struct Diff {
    pub phid: String,
    pub revision_phid: Option<String>,
    pub commits: Vec<LocalCommit>,
}

impl Diff {
    /// The tip of the uploaded commits: the one no other names as a parent. `None` when the
    /// diff has no commits or they do not form one line.
    pub fn head(&self) -> Option<&str> {
        let mut tips = self.commits.iter().filter(|candidate| {
            !self.commits.iter().any(|c| c.parents.contains(&candidate.identifier))
        });
        match (tips.next(), tips.next()) {
            (Some(tip), None) => Some(&tip.identifier),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LocalCommit {
    pub identifier: String,
    #[serde(default)]
    pub parents: Vec<String>,
    #[serde(default)]
    pub author: Signature,
    #[serde(default)]
    pub message: String,
}

#[derive(Deserialize)]
struct RawDiff {
    phid: String,
    fields: DiffFields,
    #[serde(default)]
    attachments: DiffAttachments,
}

#[derive(Deserialize)]
struct DiffFields {
    #[serde(rename = "revisionPHID")]
    revision_phid: Option<String>,
}

#[derive(Deserialize, Default)]
struct DiffAttachments {
    commits: Option<CommitsAttachment>,
}

#[derive(Deserialize)]
struct CommitsAttachment {
    #[serde(default)]
    commits: Vec<LocalCommit>,
}

impl From<RawDiff> for Diff {
    fn from(raw: RawDiff) -> Diff {
        Diff {
            phid: raw.phid,
            revision_phid: raw.fields.revision_phid,
            commits: raw.attachments.commits.map(|c| c.commits).unwrap_or_default(),
        }
    }
}

/// A link between two objects (`edge.search`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Edge {
    #[serde(rename = "sourcePHID")]
    pub source_phid: String,
    pub edge_type: String,
    #[serde(rename = "destinationPHID")]
    pub destination_phid: String,
}

/// A user (`user.search`). Conduit gives no e-mail addresses.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "RawUser")]
pub struct User {
    pub phid: String,
    pub username: String,
    pub real_name: Option<String>,
}

impl User {
    pub fn person(&self) -> Person {
        Person {
            name: self.real_name.clone().filter(|n| !n.is_empty()),
            email: None,
            username: Some(self.username.clone()),
        }
    }
}

#[derive(Deserialize)]
struct RawUser {
    phid: String,
    fields: UserFields,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UserFields {
    username: String,
    real_name: Option<String>,
}

impl From<RawUser> for User {
    fn from(raw: RawUser) -> User {
        User { phid: raw.phid, username: raw.fields.username, real_name: raw.fields.real_name }
    }
}

/// A repository Diffusion hosts or observes (`diffusion.repository.search`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "RawRepository")]
pub struct ConduitRepository {
    pub id: u64,
    pub phid: String,
    pub name: String,
    pub callsign: Option<String>,
    pub short_name: Option<String>,
    /// Clone URIs, when the `uris` attachment was asked for.
    pub uris: Vec<String>,
}

impl ConduitRepository {
    pub fn monogram(&self) -> RepositoryMonogram {
        match &self.callsign {
            Some(callsign) if !callsign.is_empty() => {
                RepositoryMonogram::Callsign(callsign.clone())
            }
            _ => RepositoryMonogram::Id(self.id),
        }
    }
}

#[derive(Deserialize)]
struct RawRepository {
    id: u64,
    phid: String,
    fields: RepositoryFields,
    #[serde(default)]
    attachments: RepositoryAttachments,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RepositoryFields {
    #[serde(default)]
    name: String,
    callsign: Option<String>,
    short_name: Option<String>,
}

#[derive(Deserialize, Default)]
struct RepositoryAttachments {
    uris: Option<UrisAttachment>,
}

#[derive(Deserialize)]
struct UrisAttachment {
    #[serde(default)]
    uris: Vec<RepositoryUri>,
}

#[derive(Deserialize)]
struct RepositoryUri {
    fields: RepositoryUriFields,
}

#[derive(Deserialize)]
struct RepositoryUriFields {
    uri: UriForms,
}

#[derive(Deserialize)]
struct UriForms {
    effective: Option<String>,
    raw: Option<String>,
}

impl From<RawRepository> for ConduitRepository {
    fn from(raw: RawRepository) -> ConduitRepository {
        ConduitRepository {
            id: raw.id,
            phid: raw.phid,
            name: raw.fields.name,
            callsign: raw.fields.callsign.filter(|c| !c.is_empty()),
            short_name: raw.fields.short_name.filter(|s| !s.is_empty()),
            uris: raw
                .attachments
                .uris
                .map(|a| {
                    a.uris.into_iter().filter_map(|u| u.fields.uri.effective.or(u.fields.uri.raw))
                })
                .into_iter()
                .flatten()
                .collect(),
        }
    }
}

/// How Phabricator names a repository: `rCALLSIGN`, or `R12` when it has no callsign. Its
/// commit pages are `/rCALLSIGN<hash>` and `/R12:<hash>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RepositoryMonogram {
    Callsign(String),
    Id(u64),
}

impl RepositoryMonogram {
    /// Reads `rCALLSIGN` (upper-case letters) or `R12`.
    pub fn parse(text: &str) -> Option<RepositoryMonogram> {
        if let Some(callsign) = text.strip_prefix('r')
            && !callsign.is_empty()
            && callsign.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        {
            return Some(RepositoryMonogram::Callsign(callsign.to_owned()));
        }
        let id = text.strip_prefix('R')?;
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        id.parse().ok().map(RepositoryMonogram::Id)
    }

    /// The commit's page on the install at `base_url`.
    pub fn commit_url(&self, base_url: &str, sha: &str) -> String {
        format!("{}/{}", base_url.trim_end_matches('/'), self.commit_identifier(sha))
    }

    /// The commit's monogram as Phorge reads it: `rCALLSIGN<sha>`, or `R12:<sha>` (without the
    /// colon, `R1` + a sha starting with a digit would name another repository).
    pub fn commit_identifier(&self, sha: &str) -> String {
        match self {
            RepositoryMonogram::Callsign(callsign) => format!("r{callsign}{sha}"),
            RepositoryMonogram::Id(id) => format!("R{id}:{sha}"),
        }
    }
}

impl fmt::Display for RepositoryMonogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RepositoryMonogram::Callsign(callsign) => write!(f, "r{callsign}"),
            RepositoryMonogram::Id(id) => write!(f, "R{id}"),
        }
    }
}
