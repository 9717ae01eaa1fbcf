//! Following a Herald webhook. Herald sends only a PHID; this fetches, through Conduit, the
//! object it names and what links to it (a revision's landed commits, a commit's revision,
//! their authors, reviewers and repository), and turns it into one change batch that the
//! webhook handler applies under the delivery's key.
//!
//! Any failure to fetch stores nothing and answers 502, so Phabricator, which retries until it
//! gets a 2xx, delivers again later.

use std::collections::{BTreeSet, HashMap};

use forge::HeraldPointer;
use forge::conduit::{
    ConduitCall, ConduitCommit, ConduitError, ConduitRepository, Diff, Edge, Revision, User,
};
use model::Review;
use serde::de::DeserializeOwned;
use store::ChangeBatch;

use crate::AppState;
use jobs::outbound::{self, ReadError, error_chain};
use views::Integration;

/// Conduit answers are small JSON pages; anything near this is not one.
const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;
/// Pages of one search before giving up (100 items each).
const MAX_PAGES: usize = 50;

#[derive(Debug, thiserror::Error)]
pub(crate) enum FetchError {
    #[error(
        "no `api_url` and `api_token` are configured for it, so the objects Herald names cannot be fetched"
    )]
    NotConfigured,
    #[error("outbound HTTP is unavailable: {0}")]
    NoClient(String),
    #[error("calling {url}: {reason}")]
    Transport { url: String, reason: String },
    #[error("{url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error(
        "{0}; check the integration's API token (`api_token_env` or `api_token_file`: a Conduit API token, `api-...`)"
    )]
    Authentication(ConduitError),
    #[error(transparent)]
    Conduit(ConduitError),
}

impl From<ConduitError> for FetchError {
    fn from(e: ConduitError) -> FetchError {
        if e.is_authentication() { FetchError::Authentication(e) } else { FetchError::Conduit(e) }
    }
}

/// The change batch a Herald pointer stands for; `None` when the object is neither a revision
/// nor a commit, or the API token cannot see it.
pub(crate) async fn follow(
    state: &AppState,
    integration: &Integration,
    pointer: &HeraldPointer,
) -> Result<Option<ChangeBatch>, FetchError> {
    let (Some(base_url), Some(token)) = (&integration.api_url, &integration.api_token) else {
        return Err(FetchError::NotConfigured);
    };
    let http = state.jobs.http.as_ref().map_err(|e| FetchError::NoClient(e.clone()))?;
    let conduit = Conduit { http, base_url, token };

    let mut revision_phids = BTreeSet::new();
    let mut commit_phids = BTreeSet::new();
    match pointer.object_type.as_str() {
        "DREV" => revision_phids.insert(pointer.object_phid.clone()),
        "CMIT" => commit_phids.insert(pointer.object_phid.clone()),
        _ => return Ok(None),
    };
    // A commit's revision, then every commit landed from the revisions.
    for edge in conduit.edges(&commit_phids, "commit.revision").await? {
        revision_phids.insert(edge.destination_phid);
    }
    let revisions: Vec<Revision> = conduit.search(ConduitCall::revisions, &revision_phids).await?;
    let revision_phids: BTreeSet<String> = revisions.iter().map(|r| r.phid.clone()).collect();
    let landed_edges = conduit.edges(&revision_phids, "revision.commit").await?;
    commit_phids.extend(landed_edges.iter().map(|e| e.destination_phid.clone()));
    let commits: Vec<ConduitCommit> = conduit.search(ConduitCall::commits, &commit_phids).await?;
    if revisions.is_empty() && commits.is_empty() {
        return Ok(None);
    }

    let diff_phids = revisions.iter().filter_map(|r| r.diff_phid.clone()).collect();
    let diffs: Vec<Diff> = conduit.search(ConduitCall::diffs, &diff_phids).await?;
    let user_phids = revisions
        .iter()
        .flat_map(|r| r.author_phid.iter().chain(&r.reviewer_phids))
        .chain(commits.iter().flat_map(|c| c.author.user_phid.iter().chain(&c.committer.user_phid)))
        .filter(|phid| phid.starts_with("PHID-USER-"))
        .cloned()
        .collect();
    let users: HashMap<String, User> = conduit
        .search(ConduitCall::users, &user_phids)
        .await?
        .into_iter()
        .map(|u: User| (u.phid.clone(), u))
        .collect();
    // The pointer's own repository decides where the batch is filed.
    let repository_phid = revisions
        .iter()
        .find_map(|r| r.repository_phid.clone())
        .or_else(|| commits.iter().find_map(|c| c.repository_phid.clone()));
    let repository: Option<ConduitRepository> = match &repository_phid {
        Some(phid) => conduit
            .search(ConduitCall::repositories, &BTreeSet::from([phid.clone()]))
            .await?
            .into_iter()
            .next(),
        None => None,
    };

    let repository_name = repository.as_ref().map_or_else(
        || integration.name.clone(),
        |repo| configured_name(state, repo).unwrap_or_else(|| repo.monogram().to_string()),
    );
    let batch_commits = commits
        .iter()
        .filter(|c| c.repository_phid == repository_phid)
        .map(|c| {
            let url = repository.as_ref().map(|r| r.monogram().commit_url(base_url, &c.identifier));
            c.to_commit(&users, url)
        })
        .collect();
    let identifier: HashMap<&str, &str> =
        commits.iter().map(|c| (c.phid.as_str(), c.identifier.as_str())).collect();
    let reviews: Vec<Review> = revisions
        .iter()
        .map(|revision| {
            let landed: Vec<String> = landed_edges
                .iter()
                .filter(|e| e.source_phid == revision.phid)
                .filter_map(|e| identifier.get(e.destination_phid.as_str()))
                .map(|sha| sha.to_ascii_lowercase())
                .collect();
            let diff = diffs.iter().find(|d| Some(&d.phid) == revision.diff_phid.as_ref());
            revision.to_review(base_url, diff, &landed, &users)
        })
        .collect();
    Ok(Some(ChangeBatch {
        repository: repository_name,
        commits: batch_commits,
        reviews,
        branch_head: None,
    }))
}

/// The configured repository a Diffusion repository is, by monogram, callsign, short name,
/// name or clone URI.
fn configured_name(state: &AppState, repository: &ConduitRepository) -> Option<String> {
    let monogram = repository.monogram().to_string();
    let mut names: Vec<Option<&str>> = vec![
        Some(&monogram),
        repository.callsign.as_deref(),
        repository.short_name.as_deref(),
        Some(&repository.name),
    ];
    names.extend(repository.uris.iter().map(|u| Some(u.as_str())));
    state.settings.changes.repository_for(&names).map(|r| r.name.clone())
}

struct Conduit<'a> {
    http: &'a reqwest::Client,
    base_url: &'a str,
    token: &'a str,
}

impl Conduit<'_> {
    /// Every page of a search for these PHIDs; no call at all for none (an empty constraint
    /// would match everything).
    async fn search<T: DeserializeOwned>(
        &self,
        call: fn(&[String]) -> ConduitCall,
        phids: &BTreeSet<String>,
    ) -> Result<Vec<T>, FetchError> {
        if phids.is_empty() {
            return Ok(Vec::new());
        }
        self.pages(call(&phids.iter().cloned().collect::<Vec<_>>())).await
    }

    /// The edges of one type leaving these objects.
    async fn edges(
        &self,
        sources: &BTreeSet<String>,
        edge_type: &str,
    ) -> Result<Vec<Edge>, FetchError> {
        if sources.is_empty() {
            return Ok(Vec::new());
        }
        let sources: Vec<String> = sources.iter().cloned().collect();
        let edges: Vec<Edge> = self.pages(ConduitCall::edges(&sources, &[edge_type])).await?;
        Ok(edges.into_iter().filter(|e| e.edge_type == edge_type).collect())
    }

    async fn pages<T: DeserializeOwned>(&self, call: ConduitCall) -> Result<Vec<T>, FetchError> {
        let url = format!("{}/{}", self.base_url.trim_end_matches('/'), call.path());
        let mut items = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let body = self.post(&url, call.form_body(self.token, after.as_deref())).await?;
            let page = call.read_page::<T>(&body)?;
            items.extend(page.items);
            match page.after {
                Some(next) => after = Some(next),
                None => return Ok(items),
            }
        }
        tracing::warn!(%url, pages = MAX_PAGES, "Conduit search truncated");
        Ok(items)
    }

    async fn post(&self, url: &str, form: String) -> Result<Vec<u8>, FetchError> {
        let transport = |reason: String| FetchError::Transport { url: url.to_owned(), reason };
        let response = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .map_err(|e| transport(error_chain(&e)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(FetchError::Status { url: url.to_owned(), status: status.as_u16() });
        }
        outbound::read_capped(response, MAX_ANSWER_BYTES).await.map_err(|e| match e {
            ReadError::Transport(e) => transport(error_chain(&e)),
            too_large => transport(too_large.to_string()),
        })
    }
}
