//! The change context of a span or deploy: the resolver that links a version identity to
//! `{version, commit, review, owner}`, and the commit and review objects the API shows.
//! Every field comes from a record; when nothing is known, it is absent, never invented.

use std::collections::HashMap;

use model::{CodeLocation, ForgeKind, Review};
use store::{StoreError, StoredCommit};

use crate::blame::{self, NoBlame};
use crate::settings::ChangeSettings;
use crate::{Context, rfc3339};
use forge::conduit::RepositoryMonogram;
use shapes::{BlameJ, BlameLineJ, ChangeJ, CommitJ, LineCommitJ, ReviewJ};

/// The commit a span or deploy's version stands for: the commit the spans name (in the
/// service's own repository first, then its mirror), else the version itself when it is a
/// known sha or a tag.
pub fn resolve_commit(
    ctx: &Context,
    explicit: Option<&str>,
    service: &str,
    version: Option<&str>,
) -> Result<Option<StoredCommit>, StoreError> {
    let store = &*ctx.store;
    // A commit the service's own repository holds first (forks share commits).
    let own = ctx.changes.ownership(service).and_then(|o| o.repository.clone());
    let find = |sha: &str| store.find_commit_in(own.as_deref(), sha);
    // One commit read from a mirror (a tag off the imported branch, a commit pushed since the
    // last import), recorded so the next look finds it in the store.
    let record = |name: &str, mirror: &mirror::Mirror, sha: &str| {
        let Ok(commits) = mirror.range(None, sha, 1) else { return Ok(None) };
        store.record_changes(&store::ChangeBatch {
            repository: name.to_owned(),
            commits,
            reviews: Vec::new(),
            branch_head: None,
        })?;
        store.commit(name, sha)
    };
    if let Some(sha) = explicit {
        if let Some(found) = find(sha)? {
            return Ok(Some(found));
        }
        if let Some(own) = &own
            && model::looks_like_sha(sha)
            && let Some(mirror) = ctx.mirrors.get(own)
            && let Ok(Some(full)) = mirror.resolve(sha)
            && let Some(found) = record(own, &mirror, &full)?
        {
            return Ok(Some(found));
        }
    }
    let Some(version) = version else { return Ok(None) };
    if let Some(sha) = store.version_commit(service, version)?
        && let Some(found) = find(&sha)?
    {
        return Ok(Some(found));
    }
    // `1.4.2+a1b2c3d`, `cart@a1b2c3d4`, or a bare sha (find_commit ignores non-shas).
    for candidate in version.split(['+', '@', '-', '_']).rev() {
        if let Some(found) = find(candidate)? {
            return Ok(Some(found));
        }
    }
    // A tag in the mirror of the service's repository (or any mirror when none is set).
    for (name, mirror) in ctx.mirrors.all() {
        if own.as_ref().is_some_and(|own| own != &name) {
            continue;
        }
        let Ok(Some(sha)) = mirror.resolve_version(version) else { continue };
        if let Some(found) = store.commit(&name, &sha)? {
            return Ok(Some(found));
        }
        if let Some(found) = record(&name, &mirror, &sha)? {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

/// (service, version, commit, code file, function, line): what a span's change context
/// depends on.
type ChangeKey =
    (String, Option<String>, Option<String>, Option<String>, Option<String>, Option<i64>);

/// Builds `change` objects, caching per identity: a trace repeats a handful of them.
pub struct ChangeResolver<'a> {
    ctx: &'a Context,
    cache: HashMap<ChangeKey, ChangeJ>,
    /// Whether a blame lists its function line by line (`by_line`, `line_commits`).
    blame_lines: bool,
}

impl<'a> ChangeResolver<'a> {
    pub fn new(ctx: &'a Context) -> ChangeResolver<'a> {
        ChangeResolver { ctx, cache: HashMap::new(), blame_lines: false }
    }

    /// A resolver whose blames also list their function line by line.
    pub fn with_blame_lines(ctx: &'a Context) -> ChangeResolver<'a> {
        ChangeResolver { blame_lines: true, ..ChangeResolver::new(ctx) }
    }

    pub fn change(
        &mut self,
        service: &str,
        version: Option<&str>,
        commit: Option<&str>,
        code: &CodeLocation,
    ) -> Result<ChangeJ, StoreError> {
        let key = (
            service.to_owned(),
            version.map(str::to_owned),
            commit.map(str::to_owned),
            code.file_path.clone(),
            code.function_name.clone(),
            code.line_number,
        );
        if let Some(found) = self.cache.get(&key) {
            return Ok(found.clone());
        }
        let built = self.build(service, version, commit, code)?;
        self.cache.insert(key, built.clone());
        Ok(built)
    }

    fn build(
        &self,
        service: &str,
        version: Option<&str>,
        commit: Option<&str>,
        code: &CodeLocation,
    ) -> Result<ChangeJ, StoreError> {
        let mut change = ChangeJ { version: version.map(str::to_owned), ..ChangeJ::default() };
        let built_from = resolve_commit(self.ctx, commit, service, version)?;
        if let Some(stored) = &built_from {
            change.commit = Some(commit_view(&self.ctx.changes, stored));
            change.review = self.review(stored)?;
        }
        if code.file_path.is_some() {
            match self.blame(service, built_from.as_ref(), code)? {
                Ok(blame) => change.blame = Some(blame),
                Err(why) => change.blame_unavailable = Some(why),
            };
        }
        change.owner = self.owner(service, code.file_path.as_deref());
        Ok(change)
    }

    /// The most recent change to the code the span runs, at the version it was built from.
    fn blame(
        &self,
        service: &str,
        built_from: Option<&StoredCommit>,
        code: &CodeLocation,
    ) -> Result<Result<BlameJ, NoBlame>, StoreError> {
        let Some(built_from) = built_from else {
            return Ok(Err("the span's version names no commit spanblame knows".into()));
        };
        let repository = &built_from.repository;
        let Some(mirror) = self.ctx.mirrors.get(repository) else {
            return Ok(Err(format!(
                "repository `{repository}` has no mirror: give it a `url` or `path` under [[repositories]]"
            )));
        };
        let sha = &built_from.commit.sha;
        let source =
            blame::Source { changes: &self.ctx.changes, service, mirror: &mirror, repository, sha };
        let blamed = match blame::blame(&self.ctx.blames, &source, code) {
            Ok(blamed) => blamed,
            Err(why) => return Ok(Err(why)),
        };
        let commit = &blamed.commit;
        let (commit_view, review) = match self.ctx.store.commit(repository, &commit.sha)? {
            Some(stored) => (commit_view(&self.ctx.changes, &stored), self.review(&stored)?),
            None => (
                CommitJ {
                    sha: commit.sha.clone(),
                    subject: commit.summary.clone(),
                    author: commit.author.display().map(str::to_owned),
                    url: None,
                    repository: repository.clone(),
                },
                None,
            ),
        };
        let committed_at =
            |secs: Option<i64>| secs.map(|s| rfc3339(s.max(0) as u64 * 1_000_000_000));
        let extent = blamed.extent;
        Ok(Ok(BlameJ {
            commit: commit_view,
            review,
            committed_at: committed_at(commit.committer_time_unix_secs),
            path: blamed.path.clone(),
            lines: if extent.first_line == extent.last_line {
                extent.first_line.to_string()
            } else {
                format!("{}-{}", extent.first_line, extent.last_line)
            },
            whole_function: blamed.whole_function,
            changed_lines: blamed.changed_lines.clone(),
            by_line: self.blame_lines.then(|| {
                let line = |l: &crate::blame::BlamedLine| BlameLineJ {
                    line: l.line,
                    sha: l.sha.clone(),
                    code: l.code.clone(),
                };
                blamed.by_line.iter().map(line).collect()
            }),
            line_commits: self.blame_lines.then(|| {
                let commit = |c: &mirror::BlamedCommit| LineCommitJ {
                    subject: c.summary.clone(),
                    author: c.author.display().map(str::to_owned),
                    committed_at: committed_at(c.committer_time_unix_secs),
                };
                blamed.line_commits.iter().map(|c| (c.sha.clone(), commit(c))).collect()
            }),
        }))
    }

    /// CODEOWNERS for the span's source file (under the service's path prefix) when the
    /// repository's mirror has one and a rule matches; otherwise the service's team.
    pub(crate) fn owner(&self, service: &str, code_path: Option<&str>) -> Option<String> {
        let ownership = self.ctx.changes.ownership(service)?;
        let path_owner = || {
            let repository = ownership.repository.as_deref()?;
            let code_owners = self.ctx.mirrors.code_owners(repository)?;
            let path = code_path?.trim_start_matches("./").trim_start_matches('/');
            let path = match ownership.path_prefix.as_deref().map(|p| p.trim_matches('/')) {
                Some(prefix) if !prefix.is_empty() && !path.starts_with(prefix) => {
                    format!("{prefix}/{path}")
                }
                _ => path.to_owned(),
            };
            Some(code_owners.owners(&path).join(" ")).filter(|owners| !owners.is_empty())
        };
        path_owner().or_else(|| ownership.team.clone())
    }

    /// The review a commit belongs to: one recorded from a forge, else the Differential
    /// revision its message names (`Differential Revision: https://host/D123`), with only what
    /// the message says when the revision itself is not stored.
    pub fn review(&self, stored: &StoredCommit) -> Result<Option<ReviewJ>, StoreError> {
        let store = &self.ctx.store;
        let recorded = store.reviews_of_commit(&stored.commit.sha)?;
        if let Some(found) = recorded.into_iter().find(|r| r.repository == stored.repository) {
            return Ok(Some(review_view(&found.review)));
        }
        let Some((id, url)) = differential_revision(&stored.commit.message) else {
            return Ok(None);
        };
        if let Some(found) = store.review(&stored.repository, &id)? {
            return Ok(Some(review_view(&found.review)));
        }
        Ok(Some(ReviewJ {
            kind: ForgeKind::Phabricator.as_str().into(),
            id,
            url,
            ..ReviewJ::default()
        }))
    }
}

/// The review of a recorded commit (any prefix of its sha), as the API shows reviews.
pub fn review_of_commit(ctx: &Context, sha: &str) -> Result<Option<ReviewJ>, StoreError> {
    match ctx.store.find_commit(sha)? {
        Some(stored) => ChangeResolver::new(ctx).review(&stored),
        None => Ok(None),
    }
}

/// A commit's patch from its repository's mirror; `None` without a mirror or the commit.
pub fn patch(ctx: &Context, repository: &str, sha: &str) -> Option<String> {
    ctx.mirrors.get(repository)?.patch(sha).ok()
}

/// The `Differential Revision:` field of a commit message: `D123` and its URL if given.
/// Only the field's first line counts, as in Phabricator's own parser.
pub fn differential_revision(message: &str) -> Option<(String, Option<String>)> {
    let value = message
        .lines()
        .find_map(|line| line.trim().strip_prefix("Differential Revision:").map(str::trim))?;
    let tail = value.rsplit('/').next().unwrap_or(value);
    let digits = tail.strip_prefix('D')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let url = value.contains("://").then(|| value.to_owned());
    Some((format!("D{digits}"), url))
}

pub fn commit_view(settings: &ChangeSettings, stored: &StoredCommit) -> CommitJ {
    let commit = &stored.commit;
    CommitJ {
        sha: commit.sha.clone(),
        subject: commit.subject().into(),
        author: commit.author.display().map(str::to_owned),
        url: commit.url.clone().or_else(|| commit_url(settings, stored)),
        repository: stored.repository.clone(),
    }
}

/// The forge's page for a commit, in the forge's own URL form.
fn commit_url(settings: &ChangeSettings, stored: &StoredCommit) -> Option<String> {
    let repo = settings.repository_for(&[Some(&stored.repository)])?;
    let web = repo.web_url()?;
    let sha = &stored.commit.sha;
    Some(match repo.forge {
        Some(ForgeKind::Gitlab) => format!("{web}/-/commit/{sha}"),
        // `web_url` is the install; without a monogram there is no commit page to name.
        Some(ForgeKind::Phabricator) => {
            RepositoryMonogram::parse(repo.monogram.as_deref()?)?.commit_url(&web, sha)
        }
        _ => format!("{web}/commit/{sha}"),
    })
}

pub fn review_view(review: &Review) -> ReviewJ {
    ReviewJ {
        kind: review.kind.as_str().into(),
        id: review.id.clone(),
        state: Some(review.state.as_str().into()),
        title: Some(review.title.clone()).filter(|t| !t.is_empty()),
        url: review.url.clone(),
        author: review.author.display().map(str::to_owned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RepositorySettings;

    #[test]
    fn differential_revision_fields_are_read_like_phabricator_does() {
        let message =
            "Fix cache\n\nSummary: x\n\nDifferential Revision: https://phab.example.com/D123\n";
        assert_eq!(
            differential_revision(message),
            Some(("D123".into(), Some("https://phab.example.com/D123".into())))
        );
        assert_eq!(differential_revision("Differential Revision: D7"), Some(("D7".into(), None)));
        assert_eq!(differential_revision("Differential Revision: https://x/T12"), None);
        assert_eq!(differential_revision("no field here"), None);
    }

    #[test]
    fn repositories_match_by_name_or_any_url_form() {
        let settings = ChangeSettings {
            repositories: vec![RepositorySettings {
                name: "cart".into(),
                url: Some("https://git.example.com/shop/cart.git".into()),
                ..RepositorySettings::default()
            }],
            ..ChangeSettings::default()
        };
        for name in [
            "cart",
            "shop/cart",
            "git@git.example.com:shop/cart.git",
            "https://git.example.com/shop/cart",
        ] {
            assert!(settings.repository_for(&[Some(name)]).is_some(), "{name}");
        }
        assert!(settings.repository_for(&[Some("shop/other")]).is_none());
        assert_eq!(
            settings.repositories[0].web_url().as_deref(),
            Some("https://git.example.com/shop/cart")
        );
    }
}
