//! Proposing a revert as pure values. On Phabricator/Phorge, Conduit calls: the raw diff
//! (`differential.createrawdiff`), then a new revision that takes it
//! (`differential.revision.edit` with title, summary, test plan, reviewers and repository),
//! with the user and repository lookups that turn names into PHIDs. Elsewhere, the pull or
//! merge request of a pushed branch (Gitea/Forgejo, GitHub, GitLab) and its reviewers. And the
//! readers of their answers.

use serde::Deserialize;
use serde_json::{Value as Json, json};

use model::ForgeKind;

use crate::api::{ApiRequest, Refusal, read_answer};

fn call(method: &str, params: Json) -> ApiRequest {
    ApiRequest { method: "POST".into(), path: format!("/api/{method}"), body: params }
}

/// `user.search` for these usernames.
pub fn users(usernames: &[String]) -> ApiRequest {
    call("user.search", json!({"constraints": {"usernames": usernames}, "limit": 100}))
}

/// `user.whoami`: the token's own user, who cannot review the revision it creates.
pub fn whoami() -> ApiRequest {
    call("user.whoami", json!({}))
}

/// `diffusion.repository.search` for a repository by monogram: `rSHOP` by callsign, `R12` by
/// id; `None` for anything else.
pub fn repository(monogram: &str) -> Option<ApiRequest> {
    let parsed = crate::conduit::RepositoryMonogram::parse(monogram)?;
    let constraints = match parsed {
        crate::conduit::RepositoryMonogram::Callsign(callsign) => {
            json!({"callsigns": [callsign]})
        }
        crate::conduit::RepositoryMonogram::Id(id) => json!({"ids": [id]}),
    };
    Some(call("diffusion.repository.search", json!({"constraints": constraints})))
}

/// `differential.createrawdiff`: the revert as a diff of the repository.
pub fn create_diff(diff: &str, repository_phid: Option<&str>) -> ApiRequest {
    let mut params = json!({"diff": diff});
    if let Some(phid) = repository_phid {
        params["repositoryPHID"] = phid.into();
    }
    call("differential.createrawdiff", params)
}

/// The revert's revision: what it says (Phorge requires a test plan by default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevisionText<'a> {
    pub title: &'a str,
    pub summary: &'a str,
    pub test_plan: &'a str,
}

/// `differential.revision.edit` creating the revert's revision from the diff.
pub fn create_revision(
    diff_phid: &str,
    text: &RevisionText<'_>,
    reviewer_phids: &[String],
    repository_phid: Option<&str>,
) -> ApiRequest {
    let mut transactions = vec![
        json!({"type": "update", "value": diff_phid}),
        json!({"type": "title", "value": text.title}),
        json!({"type": "summary", "value": text.summary}),
        json!({"type": "testPlan", "value": text.test_plan}),
    ];
    if !reviewer_phids.is_empty() {
        transactions.push(json!({"type": "reviewers.add", "value": reviewer_phids}));
    }
    if let Some(phid) = repository_phid {
        transactions.push(json!({"type": "repositoryPHID", "value": phid}));
    }
    call("differential.revision.edit", json!({"transactions": transactions}))
}

/// The pull (merge) request that proposes branch `head` into `base`, where the forge has an
/// API for one (Gogs has none: `None`).
pub fn pull_request(
    kind: ForgeKind,
    repository: &str,
    title: &str,
    body: &str,
    head: &str,
    base: &str,
) -> Option<ApiRequest> {
    let post = |path: String, body: Json| Some(ApiRequest { method: "POST".into(), path, body });
    match kind {
        ForgeKind::Gitea => post(
            format!("/api/v1/repos/{repository}/pulls"),
            json!({"title": title, "body": body, "head": head, "base": base}),
        ),
        ForgeKind::Github => post(
            format!("/repos/{repository}/pulls"),
            json!({"title": title, "body": body, "head": head, "base": base}),
        ),
        ForgeKind::Gitlab => post(
            format!("/api/v4/projects/{}/merge_requests", crate::api::gitlab_id(repository)),
            json!({"title": title, "description": body, "source_branch": head,
                "target_branch": base, "remove_source_branch": true}),
        ),
        ForgeKind::Gogs | ForgeKind::Phabricator => None,
    }
}

/// GitLab: the user named `username` (`GET /users?username=`), whose numeric id a merge
/// request's reviewers take.
pub fn gitlab_user(username: &str) -> ApiRequest {
    ApiRequest {
        method: "GET".into(),
        path: format!("/api/v4/users?username={}", crate::api::segment(username)),
        body: json!({}),
    }
}

/// The id of the one user `gitlab_user` found.
pub fn read_gitlab_user(status: u16, body: &[u8]) -> Result<Option<u64>, Refusal> {
    crate::api::http_status(status, body)?;
    let users: Vec<Json> = serde_json::from_slice(body).unwrap_or_default();
    Ok(users.first().and_then(|u| u["id"].as_u64()))
}

/// GitLab: sets merge request `iid`'s reviewers by user id.
pub fn gitlab_reviewers(repository: &str, iid: u64, user_ids: &[u64]) -> ApiRequest {
    ApiRequest {
        method: "PUT".into(),
        path: format!(
            "/api/v4/projects/{}/merge_requests/{iid}",
            crate::api::gitlab_id(repository)
        ),
        body: json!({"reviewer_ids": user_ids}),
    }
}

/// Asks `reviewers` (usernames) to review pull request `number`, where the forge takes names
/// (GitHub, Gitea; GitLab takes ids: [`gitlab_user`], then [`gitlab_reviewers`]).
pub fn request_reviewers(
    kind: ForgeKind,
    repository: &str,
    number: u64,
    reviewers: &[String],
) -> Option<ApiRequest> {
    let path = match kind {
        ForgeKind::Gitea => {
            format!("/api/v1/repos/{repository}/pulls/{number}/requested_reviewers")
        }
        ForgeKind::Github => format!("/repos/{repository}/pulls/{number}/requested_reviewers"),
        _ => return None,
    };
    (!reviewers.is_empty()).then(|| ApiRequest {
        method: "POST".into(),
        path,
        body: json!({"reviewers": reviewers}),
    })
}

/// A created pull or merge request: its number and page, as the forge answered.
pub fn read_pull_request(
    kind: ForgeKind,
    status: u16,
    body: &[u8],
) -> Result<(Option<u64>, Option<String>), Refusal> {
    read_answer(kind, status, body)?;
    let created: Json = serde_json::from_slice(body).unwrap_or_default();
    let number = created["number"].as_u64().or(created["iid"].as_u64());
    let url = created["html_url"].as_str().or(created["web_url"].as_str()).map(str::to_owned);
    Ok((number, url))
}

#[derive(Deserialize)]
struct Envelope<T> {
    result: Option<T>,
}

fn result<T: for<'de> Deserialize<'de>>(status: u16, body: &[u8]) -> Result<T, Refusal> {
    read_answer(ForgeKind::Phabricator, status, body)?;
    serde_json::from_slice::<Envelope<T>>(body).ok().and_then(|e| e.result).ok_or_else(|| Refusal {
        message: "Conduit's answer has no `result`".into(),
        permanent: false,
    })
}

#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    data: Vec<Object>,
}

#[derive(Deserialize)]
struct Object {
    phid: String,
}

/// The PHIDs of the users `user.search` found (missing names are left out).
pub fn read_users(status: u16, body: &[u8]) -> Result<Vec<String>, Refusal> {
    Ok(result::<Page>(status, body)?.data.into_iter().map(|o| o.phid).collect())
}

/// The token's user's PHID.
pub fn read_whoami(status: u16, body: &[u8]) -> Result<String, Refusal> {
    Ok(result::<Object>(status, body)?.phid)
}

/// The repository's PHID, when `diffusion.repository.search` found it.
pub fn read_repository(status: u16, body: &[u8]) -> Result<Option<String>, Refusal> {
    Ok(result::<Page>(status, body)?.data.into_iter().next().map(|o| o.phid))
}

/// The new diff's PHID.
pub fn read_diff(status: u16, body: &[u8]) -> Result<String, Refusal> {
    #[derive(Deserialize)]
    struct Created {
        phid: String,
    }
    Ok(result::<Created>(status, body)?.phid)
}

/// The new revision's monogram (`D43`).
pub fn read_revision(status: u16, body: &[u8]) -> Result<String, Refusal> {
    #[derive(Deserialize)]
    struct Edited {
        object: EditedObject,
    }
    #[derive(Deserialize)]
    struct EditedObject {
        id: u64,
    }
    Ok(format!("D{}", result::<Edited>(status, body)?.object.id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revert_is_a_raw_diff_then_a_revision_with_its_reviewers_and_repository() {
        let diff = create_diff("diff --git a/x b/x\n", Some("PHID-REPO-1"));
        assert_eq!(diff.path, "/api/differential.createrawdiff");
        assert_eq!(diff.body["repositoryPHID"], "PHID-REPO-1");
        let text = RevisionText {
            title: "Revert \"slow cart\"",
            summary: "Reverts D7.",
            test_plan: "Deploy it; the finding's numbers come back.",
        };
        let revision =
            create_revision("PHID-DIFF-1", &text, &["PHID-USER-ada".into()], Some("PHID-REPO-1"));
        let types: Vec<&str> = revision.body["transactions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            types,
            ["update", "title", "summary", "testPlan", "reviewers.add", "repositoryPHID"]
        );
        assert_eq!(repository("rSHOP").unwrap().body["constraints"]["callsigns"][0], "SHOP");
        assert_eq!(repository("R12").unwrap().body["constraints"]["ids"][0], 12);
        assert!(repository("shop").is_none());

        let created = br#"{"result":{"id":9,"phid":"PHID-DIFF-abc","uri":"http://x/differential/diff/9/"},"error_code":null,"error_info":null}"#;
        assert_eq!(read_diff(200, created).unwrap(), "PHID-DIFF-abc");
        let edited = br#"{"result":{"object":{"id":43,"phid":"PHID-DREV-x"},"transactions":[]},"error_code":null,"error_info":null}"#;
        assert_eq!(read_revision(200, edited).unwrap(), "D43");
        let refused =
            br#"{"result":null,"error_code":"ERR-CONDUIT-CORE","error_info":"Diff is empty."}"#;
        assert!(read_diff(200, refused).unwrap_err().message.contains("Diff is empty"));
        let users = br#"{"result":{"data":[{"id":1,"phid":"PHID-USER-a","fields":{}}],"cursor":{}},"error_code":null,"error_info":null}"#;
        assert_eq!(read_users(200, users).unwrap(), ["PHID-USER-a"]);
    }

    #[test]
    fn elsewhere_a_revert_is_a_pull_request_of_a_pushed_branch() {
        let pr = |kind| pull_request(kind, "acme/shop", "Revert", "why", "spanblame/r-1", "main");
        let gitea = pr(ForgeKind::Gitea).unwrap();
        assert_eq!(gitea.path, "/api/v1/repos/acme/shop/pulls");
        assert_eq!(
            (&gitea.body["head"], &gitea.body["base"]),
            (&json!("spanblame/r-1"), &json!("main"))
        );
        assert_eq!(pr(ForgeKind::Github).unwrap().path, "/repos/acme/shop/pulls");
        let gitlab = pr(ForgeKind::Gitlab).unwrap();
        assert_eq!(gitlab.path, "/api/v4/projects/acme%2Fshop/merge_requests");
        assert_eq!(gitlab.body["source_branch"], "spanblame/r-1");
        assert!(pr(ForgeKind::Gogs).is_none(), "Gogs has no pull request API");
        let reviewers = request_reviewers(ForgeKind::Github, "acme/shop", 7, &["ada".into()]);
        assert_eq!(reviewers.unwrap().path, "/repos/acme/shop/pulls/7/requested_reviewers");
        assert!(request_reviewers(ForgeKind::Gitlab, "acme/shop", 7, &["ada".into()]).is_none());
        let answer = br#"{"number": 7, "html_url": "https://github.com/acme/shop/pull/7"}"#;
        assert_eq!(
            read_pull_request(ForgeKind::Github, 201, answer).unwrap(),
            (Some(7), Some("https://github.com/acme/shop/pull/7".into()))
        );
        let answer = br#"{"iid": 3, "web_url": "https://gl/acme/shop/-/merge_requests/3"}"#;
        assert_eq!(read_pull_request(ForgeKind::Gitlab, 201, answer).unwrap().0, Some(3));
        assert!(read_pull_request(ForgeKind::Gitea, 422, b"{}").is_err());
        assert_eq!(gitlab_user("ada lovelace").path, "/api/v4/users?username=ada%20lovelace");
        assert_eq!(read_gitlab_user(200, br#"[{"id": 41, "username": "ada"}]"#).unwrap(), Some(41));
        assert_eq!(read_gitlab_user(200, b"[]").unwrap(), None);
        let set = gitlab_reviewers("acme/shop", 3, &[41]);
        assert_eq!(
            (set.method.as_str(), set.path.as_str()),
            ("PUT", "/api/v4/projects/acme%2Fshop/merge_requests/3")
        );
        assert_eq!(set.body["reviewer_ids"], json!([41]));
    }
}
