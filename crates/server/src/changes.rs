//! The change graph's configuration (integrations, repositories, ownership) and the resolver
//! that links a span's version identity to its change context: `{version, commit, review,
//! owner}`. Every field comes from a record; when nothing is known, it is absent, never
//! invented.

use std::collections::HashMap;

use forge::conduit::RepositoryMonogram;
use model::{ForgeKind, Review, normalize_repository_url};
use serde_json::{Map, Value as Json_, json};
use store::{StoreError, StoredCommit};

use crate::AppState;
use crate::mirrors::{MirrorSettings, MirrorSource};

#[derive(Debug, Clone, Default)]
pub struct ChangeSettings {
    pub integrations: Vec<Integration>,
    pub repositories: Vec<RepositorySettings>,
    pub services: Vec<ServiceOwnership>,
    pub mirrors: MirrorSettings,
}

/// A forge that sends webhooks to `/hooks/{kind}/{name}`.
#[derive(Clone)]
pub struct Integration {
    pub name: String,
    pub kind: ForgeKind,
    pub secret: Vec<u8>,
    /// The forge's base URL for API calls (Phabricator: the install, Conduit is `{api_url}/api/`).
    pub api_url: Option<String>,
    pub api_token: Option<String>,
}

impl std::fmt::Debug for Integration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Integration")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("secret", &"<redacted>")
            .field("api_url", &self.api_url)
            .field("api_token", &self.api_token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

#[derive(Debug, Clone, Default)]
pub struct RepositorySettings {
    /// The name spanblame uses (`shop/cart`).
    pub name: String,
    /// Clone or browser URL; webhooks and span attributes are matched against it.
    pub url: Option<String>,
    /// Browser URL for links (defaults to `url` without `.git`).
    pub web_url: Option<String>,
    pub forge: Option<ForgeKind>,
    /// Where its history is read from; without one, only webhooks inform the graph.
    pub mirror: Option<MirrorSource>,
    /// Phabricator's name for it (`rWEB`, `R12`): commit links, and matching Conduit's answers.
    pub monogram: Option<String>,
}

impl RepositorySettings {
    fn web_url(&self) -> Option<String> {
        self.web_url.clone().or_else(|| {
            let url = self.url.as_deref()?;
            url.starts_with("http")
                .then(|| url.trim_end_matches('/').trim_end_matches(".git").to_owned())
        })
    }
}

#[derive(Debug, Clone, Default)]
pub struct ServiceOwnership {
    pub service: String,
    pub repository: Option<String>,
    pub path_prefix: Option<String>,
    pub team: Option<String>,
}

impl ChangeSettings {
    pub(crate) fn integration(&self, kind: ForgeKind, name: &str) -> Option<&Integration> {
        self.integrations.iter().find(|i| i.kind == kind && i.name == name)
    }

    /// The configured repository a forge event or span names, by name or by URL.
    pub(crate) fn repository_for(&self, names: &[Option<&str>]) -> Option<&RepositorySettings> {
        let wanted: Vec<String> =
            names.iter().flatten().map(|name| normalize_repository_url(name)).collect();
        self.repositories.iter().find(|repo| {
            let mut own = vec![repo.name.to_ascii_lowercase()];
            own.extend(repo.monogram.as_deref().map(str::to_ascii_lowercase));
            own.extend(repo.url.as_deref().map(normalize_repository_url));
            own.extend(repo.web_url.as_deref().map(normalize_repository_url));
            own.iter().any(|o| wanted.iter().any(|w| same_repository(o, w)))
        })
    }

    pub(crate) fn ownership(&self, service: &str) -> Option<&ServiceOwnership> {
        self.services.iter().find(|s| s.service == service)
    }
}

/// Normalised names match when equal, or when one is a host-qualified form of an
/// `owner/name` other (`git.example.com/shop/cart` and `shop/cart`).
fn same_repository(a: &str, b: &str) -> bool {
    let suffix_of = |long: &str, short: &str| {
        short.contains('/') && long.strip_suffix(short).is_some_and(|head| head.ends_with('/'))
    };
    a == b || suffix_of(a, b) || suffix_of(b, a)
}

/// The commit a span or deploy's version stands for: the commit the spans name, else the
/// version itself when it is a known sha.
pub(crate) fn resolve_commit(
    state: &AppState,
    explicit: Option<&str>,
    service: &str,
    version: Option<&str>,
) -> Result<Option<StoredCommit>, StoreError> {
    let store = &*state.store;
    if let Some(sha) = explicit
        && let Some(found) = store.find_commit(sha)?
    {
        return Ok(Some(found));
    }
    let Some(version) = version else { return Ok(None) };
    if let Some(sha) = store.version_commit(service, version)?
        && let Some(found) = store.find_commit(&sha)?
    {
        return Ok(Some(found));
    }
    // `1.4.2+a1b2c3d`, `cart@a1b2c3d4`, or a bare sha (find_commit ignores non-shas).
    for candidate in version.split(['+', '@', '-', '_']).rev() {
        if let Some(found) = store.find_commit(candidate)? {
            return Ok(Some(found));
        }
    }
    // A tag in the mirror of the service's repository (or any mirror when none is set).
    let own = state.settings.changes.ownership(service).and_then(|o| o.repository.clone());
    for (name, mirror) in state.mirrors.all() {
        if own.as_ref().is_some_and(|own| own != &name) {
            continue;
        }
        let Ok(Some(sha)) = mirror.resolve_version(version) else { continue };
        if let Some(found) = store.commit(&name, &sha)? {
            return Ok(Some(found));
        }
        // A tag off the imported branch: record that one commit from the mirror.
        if let Ok(commits) = mirror.range(None, &sha, 1) {
            store.record_changes(&store::ChangeBatch {
                repository: name.clone(),
                commits,
                reviews: Vec::new(),
                branch_head: None,
            })?;
            return store.commit(&name, &sha);
        }
    }
    Ok(None)
}

/// (service, version, commit, code file path): what a span's change context depends on.
type ChangeKey = (String, Option<String>, Option<String>, Option<String>);

/// Builds `change` objects, caching per identity: a trace repeats a handful of them.
pub(crate) struct ChangeResolver<'a> {
    state: &'a AppState,
    cache: HashMap<ChangeKey, Json_>,
}

impl<'a> ChangeResolver<'a> {
    pub(crate) fn new(state: &'a AppState) -> ChangeResolver<'a> {
        ChangeResolver { state, cache: HashMap::new() }
    }

    pub(crate) fn change(
        &mut self,
        service: &str,
        version: Option<&str>,
        commit: Option<&str>,
        code_path: Option<&str>,
    ) -> Result<Json_, StoreError> {
        let key = (
            service.to_owned(),
            version.map(str::to_owned),
            commit.map(str::to_owned),
            code_path.map(str::to_owned),
        );
        if let Some(found) = self.cache.get(&key) {
            return Ok(found.clone());
        }
        let built = self.build(service, version, commit, code_path)?;
        self.cache.insert(key, built.clone());
        Ok(built)
    }

    fn build(
        &self,
        service: &str,
        version: Option<&str>,
        commit: Option<&str>,
        code_path: Option<&str>,
    ) -> Result<Json_, StoreError> {
        let mut change = Map::new();
        if let Some(version) = version {
            change.insert("version".into(), version.into());
        }
        let settings = &self.state.settings.changes;
        if let Some(stored) = resolve_commit(self.state, commit, service, version)? {
            change.insert("commit".into(), commit_view(settings, &stored));
            if let Some(review) = self.review(&stored)? {
                change.insert("review".into(), review);
            }
        }
        if let Some(owner) = self.owner(service, code_path) {
            change.insert("owner".into(), owner.into());
        }
        Ok(Json_::Object(change))
    }

    /// CODEOWNERS for the span's source file (under the service's path prefix) when the
    /// repository's mirror has one and a rule matches; otherwise the service's team.
    fn owner(&self, service: &str, code_path: Option<&str>) -> Option<String> {
        let ownership = self.state.settings.changes.ownership(service)?;
        let path_owner = || {
            let repository = ownership.repository.as_deref()?;
            let code_owners = self.state.mirrors.code_owners(repository)?;
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
    pub(crate) fn review(&self, stored: &StoredCommit) -> Result<Option<Json_>, StoreError> {
        let store = &self.state.store;
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
        let mut view = json!({"kind": ForgeKind::Phabricator.as_str(), "id": id});
        if let Some(url) = url {
            view["url"] = url.into();
        }
        Ok(Some(view))
    }
}

/// The `Differential Revision:` field of a commit message: `D123` and its URL if given.
/// Only the field's first line counts, as in Phabricator's own parser.
pub(crate) fn differential_revision(message: &str) -> Option<(String, Option<String>)> {
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

pub(crate) fn commit_view(settings: &ChangeSettings, stored: &StoredCommit) -> Json_ {
    let commit = &stored.commit;
    let url = commit.url.clone().or_else(|| commit_url(settings, stored));
    let mut view = Map::new();
    view.insert("sha".into(), commit.sha.clone().into());
    view.insert("subject".into(), commit.subject().into());
    if let Some(author) = commit.author.display() {
        view.insert("author".into(), author.into());
    }
    if let Some(url) = url {
        view.insert("url".into(), url.into());
    }
    view.insert("repository".into(), stored.repository.clone().into());
    Json_::Object(view)
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

pub(crate) fn review_view(review: &Review) -> Json_ {
    let mut view = json!({
        "kind": review.kind.as_str(),
        "id": review.id,
        "state": review.state.as_str(),
    });
    if !review.title.is_empty() {
        view["title"] = review.title.clone().into();
    }
    if let Some(url) = &review.url {
        view["url"] = url.clone().into();
    }
    if let Some(author) = review.author.display() {
        view["author"] = author.into();
    }
    view
}

#[cfg(test)]
mod tests {
    use super::*;

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
