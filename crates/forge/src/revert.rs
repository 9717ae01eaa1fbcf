//! Proposing a revert on Phabricator/Phorge as Conduit calls, as pure values: the raw diff
//! (`differential.createrawdiff`), then a new revision that takes it
//! (`differential.revision.edit` with title, summary, reviewers and repository), with the
//! user and repository lookups that turn names into PHIDs, and the readers of their answers.

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
}
