//! Posting back to forges: review and commit comments and commit statuses, as each forge's API
//! documents them (see `research/forges.md`), as pure values.
//!
//! A request is built in two steps so that nothing secret is ever stored: [`comment`] and
//! [`status`] give an [`ApiRequest`] (method, path under the integration's `api_url`, JSON
//! parameters) that the server keeps in its outbox; [`prepare`] adds the token at send time
//! and encodes the body the way the forge wants it. [`read_answer`] then says whether the
//! forge took it (Conduit answers HTTP 200 even on errors).
//!
//! `api_url` is the forge's base URL (`https://gitea.example.com`), except for GitHub, where it
//! is the REST root (`https://api.github.com`, or `https://ghe.example.com/api/v3`).

use model::ForgeKind;
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

/// A forge API call without credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiRequest {
    pub method: String,
    /// Under the integration's `api_url`, starting with `/`.
    pub path: String,
    /// The parameters: the JSON body, or for Conduit the `params` object.
    pub body: Json,
}

/// What a comment lands on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target<'a> {
    /// A pull/merge request number (`"42"`) or a Differential revision (`"D123"`).
    Review(&'a str),
    /// A commit, by full sha, when it has no review.
    Commit(&'a str),
}

/// The repository on the forge: `owner/name` (GitLab: the full `group/subgroup/project` path;
/// Phabricator: the repository monogram `rCALLSIGN` or `R12`, used for commit comments).
pub type RepositoryPath<'a> = &'a str;

/// A commit status's state, mapped to each forge's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusState {
    /// A regression is open.
    Failure,
    /// The regression was resolved.
    Success,
}

/// The request that posts `text` (Markdown; Remarkup for Phabricator) on `target`, or `None`
/// when the forge has no API for it (Gogs and Gitea have no commit comments).
pub fn comment(
    kind: ForgeKind,
    repository: RepositoryPath<'_>,
    target: &Target<'_>,
    text: &str,
) -> Option<ApiRequest> {
    let post = |path: String, body: Json| Some(ApiRequest { method: "POST".into(), path, body });
    match (kind, target) {
        (ForgeKind::Gogs | ForgeKind::Gitea, Target::Review(number)) => post(
            format!("/api/v1/repos/{}/issues/{}/comments", repository, segment(number)),
            json!({"body": text}),
        ),
        (ForgeKind::Gogs | ForgeKind::Gitea, Target::Commit(_)) => None,
        (ForgeKind::Github, Target::Review(number)) => post(
            format!("/repos/{}/issues/{}/comments", repository, segment(number)),
            json!({"body": text}),
        ),
        (ForgeKind::Github, Target::Commit(sha)) => post(
            format!("/repos/{}/commits/{}/comments", repository, segment(sha)),
            json!({"body": text}),
        ),
        (ForgeKind::Gitlab, Target::Review(iid)) => post(
            format!(
                "/api/v4/projects/{}/merge_requests/{}/notes",
                gitlab_id(repository),
                segment(iid)
            ),
            json!({"body": text}),
        ),
        (ForgeKind::Gitlab, Target::Commit(sha)) => post(
            format!(
                "/api/v4/projects/{}/repository/commits/{}/comments",
                gitlab_id(repository),
                segment(sha)
            ),
            json!({"note": text}),
        ),
        (ForgeKind::Phabricator, Target::Review(revision)) => post(
            "/api/differential.revision.edit".into(),
            json!({
                "objectIdentifier": revision,
                "transactions": [{"type": "comment", "value": text}],
            }),
        ),
        (ForgeKind::Phabricator, Target::Commit(sha)) => post(
            "/api/diffusion.commit.edit".into(),
            json!({
                "objectIdentifier": crate::conduit::RepositoryMonogram::parse(repository)
                    .map_or_else(|| format!("{repository}{sha}"), |m| m.commit_identifier(sha)),
                "transactions": [{"type": "comment", "value": text}],
            }),
        ),
    }
}

/// The request that sets a commit status, or `None` when the forge has none (Gogs;
/// Phabricator's build results need a Harbormaster build target).
pub fn status(
    kind: ForgeKind,
    repository: RepositoryPath<'_>,
    sha: &str,
    state: StatusState,
    context: &str,
    description: &str,
    target_url: &str,
) -> Option<ApiRequest> {
    // Forges cap the description (GitHub: 140 characters).
    let description: String = description.chars().take(140).collect();
    let (path, body) = match kind {
        ForgeKind::Gitea => (
            format!("/api/v1/repos/{}/statuses/{}", repository, segment(sha)),
            json!({
                "state": match state { StatusState::Failure => "failure", StatusState::Success => "success" },
                "context": context, "description": description, "target_url": target_url,
            }),
        ),
        ForgeKind::Github => (
            format!("/repos/{}/statuses/{}", repository, segment(sha)),
            json!({
                "state": match state { StatusState::Failure => "failure", StatusState::Success => "success" },
                "context": context, "description": description, "target_url": target_url,
            }),
        ),
        ForgeKind::Gitlab => (
            format!("/api/v4/projects/{}/statuses/{}", gitlab_id(repository), segment(sha)),
            json!({
                "state": match state { StatusState::Failure => "failed", StatusState::Success => "success" },
                "name": context, "description": description, "target_url": target_url,
            }),
        ),
        ForgeKind::Gogs | ForgeKind::Phabricator => return None,
    };
    Some(ApiRequest { method: "POST".into(), path, body })
}

/// One unit result of a Harbormaster build: `result` is `pass`, `fail` or `skip`; `details`
/// is Remarkup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitResult {
    pub name: String,
    pub result: &'static str,
    pub details: String,
}

/// The Conduit call (`harbormaster.sendmessage`) that ends a Harbormaster build step waiting
/// for a message: `pass` or `fail` for the build target `receiver`, with unit results.
pub fn harbormaster_message(receiver: &str, passed: bool, units: &[UnitResult]) -> ApiRequest {
    let unit: Vec<Json> = units
        .iter()
        .map(|u| {
            json!({
                "name": u.name,
                "result": u.result,
                "namespace": "spanblame/tagging",
                "engine": "spanblame",
                "details": u.details,
                "format": "remarkup",
            })
        })
        .collect();
    ApiRequest {
        method: "POST".into(),
        path: "/api/harbormaster.sendmessage".into(),
        body: json!({
            "receiver": receiver,
            "type": if passed { "pass" } else { "fail" },
            "unit": unit,
        }),
    }
}

/// A request ready to send: headers (with the token), content type and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    pub headers: Vec<(&'static str, String)>,
    pub content_type: &'static str,
    pub body: String,
}

/// Adds the token the way `kind` takes it and encodes the body.
pub fn prepare(kind: ForgeKind, request: &ApiRequest, token: &str) -> Prepared {
    let json_body = |headers| Prepared {
        headers,
        content_type: "application/json",
        body: request.body.to_string(),
    };
    match kind {
        ForgeKind::Gogs | ForgeKind::Gitea => {
            json_body(vec![("authorization", format!("token {token}"))])
        }
        ForgeKind::Github => json_body(vec![
            ("authorization", format!("Bearer {token}")),
            ("accept", "application/vnd.github+json".into()),
            ("x-github-api-version", "2022-11-28".into()),
        ]),
        ForgeKind::Gitlab => json_body(vec![("private-token", token.to_owned())]),
        ForgeKind::Phabricator => {
            // Conduit takes a form, never a JSON body; the token goes inside `params`.
            let mut params = request.body.clone();
            params["__conduit__"] = json!({"token": token});
            Prepared {
                headers: Vec::new(),
                content_type: "application/x-www-form-urlencoded",
                body: format!(
                    "params={}&output=json&__conduit__=1",
                    crate::conduit::form_encode(&params.to_string())
                ),
            }
        }
    }
}

/// Whether the forge took the request, from its HTTP status and body: `Err` names the problem.
/// Conduit answers 200 with an `error_code` when it refuses.
pub fn read_answer(kind: ForgeKind, status: u16, body: &[u8]) -> Result<(), Refusal> {
    http_status(status, body)?;
    if kind == ForgeKind::Phabricator {
        #[derive(Deserialize)]
        struct Envelope {
            error_code: Option<String>,
            error_info: Option<String>,
        }
        let envelope: Envelope = serde_json::from_slice(body).map_err(|e| Refusal {
            message: format!("Conduit answered something that is not its JSON envelope: {e}"),
            permanent: false,
        })?;
        if let Some(code) = envelope.error_code {
            let info = crate::conduit::redact_tokens(&envelope.error_info.unwrap_or_default());
            let permanent = crate::conduit::is_permanent_refusal(&code, &info);
            return Err(Refusal {
                message: format!("Conduit refused it: {code}: {info}"),
                permanent,
            });
        }
    }
    Ok(())
}

/// Any HTTP receiver's answer by its status: taken (2xx), or refused with the start of its
/// body (tokens redacted).
pub fn http_status(status: u16, body: &[u8]) -> Result<(), Refusal> {
    if (200..300).contains(&status) {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
    Err(Refusal {
        message: format!("HTTP {status}: {}", crate::conduit::redact_tokens(text.trim())),
        // The request is wrong, or what it points at is gone: sending it again cannot help.
        permanent: matches!(status, 400 | 404 | 405 | 410 | 413 | 422),
    })
}

/// Why a forge did not take a request, and whether sending it again could help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub message: String,
    /// The request itself is wrong (or its target gone): dead-letter it at once.
    pub permanent: bool,
}

/// GitLab's `:id`: the project path with `/` escaped.
pub(crate) fn gitlab_id(path: &str) -> String {
    path.split('/').map(segment).collect::<Vec<_>>().join("%2F")
}

/// One path segment, percent-encoded beyond unreserved characters.
pub(crate) fn segment(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "9fceb02d0ae598e95dc970b74767f19372d61af8";

    #[test]
    fn comments_go_where_each_forge_documents_them() {
        let review = Target::Review("42");
        let cases = [
            (ForgeKind::Gogs, "/api/v1/repos/acme/shop/issues/42/comments"),
            (ForgeKind::Gitea, "/api/v1/repos/acme/shop/issues/42/comments"),
            (ForgeKind::Github, "/repos/acme/shop/issues/42/comments"),
            (ForgeKind::Gitlab, "/api/v4/projects/acme%2Fshop/merge_requests/42/notes"),
        ];
        for (kind, path) in cases {
            let request = comment(kind, "acme/shop", &review, "hi").unwrap();
            assert_eq!((request.method.as_str(), request.path.as_str()), ("POST", path), "{kind}");
            assert_eq!(request.body, json!({"body": "hi"}));
        }
        let phab = comment(ForgeKind::Phabricator, "rSHOP", &Target::Review("D123"), "hi").unwrap();
        assert_eq!(phab.path, "/api/differential.revision.edit");
        assert_eq!(
            phab.body,
            json!({"objectIdentifier": "D123", "transactions": [{"type": "comment", "value": "hi"}]})
        );
    }

    #[test]
    fn commit_comments_exist_only_where_the_forge_has_them() {
        let commit = Target::Commit(SHA);
        assert!(comment(ForgeKind::Gogs, "acme/shop", &commit, "x").is_none());
        assert!(comment(ForgeKind::Gitea, "acme/shop", &commit, "x").is_none());
        let gitlab = comment(ForgeKind::Gitlab, "group/sub/shop", &commit, "x").unwrap();
        assert_eq!(
            gitlab.path,
            format!("/api/v4/projects/group%2Fsub%2Fshop/repository/commits/{SHA}/comments")
        );
        assert_eq!(gitlab.body, json!({"note": "x"}));
        let github = comment(ForgeKind::Github, "acme/shop", &commit, "x").unwrap();
        assert_eq!(github.path, format!("/repos/acme/shop/commits/{SHA}/comments"));
        let phab = comment(ForgeKind::Phabricator, "rSHOP", &commit, "x").unwrap();
        assert_eq!(phab.body["objectIdentifier"], format!("rSHOP{SHA}"));
        // By id, a colon separates the repository from the sha: `R1` + sha reads as R16….
        let by_id = comment(ForgeKind::Phabricator, "R1", &commit, "x").unwrap();
        assert_eq!(by_id.body["objectIdentifier"], format!("R1:{SHA}"));
    }

    #[test]
    fn statuses_use_each_forges_words() {
        let args = |kind, state| {
            status(kind, "acme/shop", SHA, state, "spanblame/checkout", "p95 ×1.4", "https://x/f/1")
        };
        let gitea = args(ForgeKind::Gitea, StatusState::Failure).unwrap();
        assert_eq!(gitea.path, format!("/api/v1/repos/acme/shop/statuses/{SHA}"));
        assert_eq!(gitea.body["state"], "failure");
        assert_eq!(gitea.body["context"], "spanblame/checkout");
        let gitlab = args(ForgeKind::Gitlab, StatusState::Failure).unwrap();
        assert_eq!(gitlab.body["state"], "failed");
        assert_eq!(gitlab.body["name"], "spanblame/checkout");
        assert_eq!(args(ForgeKind::Github, StatusState::Success).unwrap().body["state"], "success");
        assert!(args(ForgeKind::Gogs, StatusState::Failure).is_none());
        assert!(args(ForgeKind::Phabricator, StatusState::Failure).is_none());
        let long =
            status(ForgeKind::Github, "a/b", SHA, StatusState::Failure, "c", &"x".repeat(500), "u")
                .unwrap();
        assert_eq!(long.body["description"].as_str().unwrap().len(), 140);
    }

    #[test]
    fn tokens_are_added_only_when_sending() {
        let request = comment(ForgeKind::Gitea, "acme/shop", &Target::Review("1"), "hi").unwrap();
        assert!(!serde_json::to_string(&request).unwrap().contains("secret"));
        let gitea = prepare(ForgeKind::Gitea, &request, "secret");
        assert_eq!(gitea.headers, [("authorization", "token secret".to_owned())]);
        assert_eq!(gitea.content_type, "application/json");
        let github = prepare(ForgeKind::Github, &request, "secret");
        assert_eq!(github.headers[0], ("authorization", "Bearer secret".to_owned()));
        let gitlab = prepare(ForgeKind::Gitlab, &request, "secret");
        assert_eq!(gitlab.headers, [("private-token", "secret".to_owned())]);

        let edit = comment(ForgeKind::Phabricator, "rX", &Target::Review("D7"), "a & b").unwrap();
        let phab = prepare(ForgeKind::Phabricator, &edit, "api-abcdefghijklmnopqrstuvwxyzab");
        assert!(phab.headers.is_empty());
        assert_eq!(phab.content_type, "application/x-www-form-urlencoded");
        assert!(
            phab.body.starts_with("params=") && phab.body.ends_with("&output=json&__conduit__=1")
        );
        let params = phab.body.strip_prefix("params=").unwrap().split('&').next().unwrap();
        let decoded = crate::verify::percent_decode(params.as_bytes()).unwrap();
        let decoded: Json = serde_json::from_slice(&decoded).unwrap();
        assert_eq!(decoded["__conduit__"]["token"], "api-abcdefghijklmnopqrstuvwxyzab");
        assert_eq!(decoded["transactions"][0]["value"], "a & b");
    }

    #[test]
    fn answers_are_read_per_forge() {
        assert!(read_answer(ForgeKind::Gitea, 201, b"{}").is_ok());
        let refused =
            read_answer(ForgeKind::Github, 404, b"{\"message\":\"Not Found\"}").unwrap_err();
        assert!(refused.message.contains("404") && refused.message.contains("Not Found"));
        assert!(refused.permanent, "{refused:?}");
        assert!(!read_answer(ForgeKind::Github, 502, b"").unwrap_err().permanent);
        let conduit =
            br#"{"result":null,"error_code":"ERR-INVALID-AUTH","error_info":"bad token"}"#;
        let refused = read_answer(ForgeKind::Phabricator, 200, conduit).unwrap_err();
        assert!(refused.message.contains("ERR-INVALID-AUTH") && refused.permanent, "{refused:?}");
        let ok = br#"{"result":{"object":{"id":123,"phid":"PHID-DREV-x"},"transactions":[]},"error_code":null,"error_info":null}"#;
        assert!(read_answer(ForgeKind::Phabricator, 200, ok).is_ok());
        assert!(read_answer(ForgeKind::Phabricator, 200, b"<html>").is_err());
    }

    /// Phorge's own refusals, as recorded against a real Phorge
    /// (`shared/fixtures/forges/phorge-live`): a bad token and a monogram that names no
    /// commit are permanent, and the token never reaches the message.
    #[test]
    fn conduit_refusals_are_classified_and_tokens_redacted() {
        let bad_token = br#"{"result":null,"error_code":"ERR-INVALID-AUTH","error_info":"API token \"api-aaaaaaaaaaaaaaaaaaaaaaaaaaaa\" is not valid."}"#;
        let refused = read_answer(ForgeKind::Phabricator, 200, bad_token).unwrap_err();
        assert!(refused.permanent, "{refused:?}");
        assert!(!refused.message.contains("aaaaaaaa"), "{refused:?}");
        assert!(refused.message.contains("api-…"), "{refused:?}");
        let no_object = br#"{"result":null,"error_code":"ERR-CONDUIT-CORE","error_info":"Monogram \"R16d7046b015ad6988095aa09ec449cc4b6d329488\" does not identify a valid object."}"#;
        assert!(read_answer(ForgeKind::Phabricator, 200, no_object).unwrap_err().permanent);
        let busy = br#"{"result":null,"error_code":"ERR-RATE-LIMIT","error_info":"You are making too many API requests too quickly."}"#;
        assert!(!read_answer(ForgeKind::Phabricator, 200, busy).unwrap_err().permanent);
        let crashed = br#"{"result":null,"error_code":"ERR-CONDUIT-CORE","error_info":"Lost connection to MySQL server during query"}"#;
        assert!(!read_answer(ForgeKind::Phabricator, 200, crashed).unwrap_err().permanent);
    }

    #[test]
    fn path_segments_are_escaped() {
        let request =
            comment(ForgeKind::Gitea, "acme/shop", &Target::Review("1/../2"), "x").unwrap();
        assert_eq!(request.path, "/api/v1/repos/acme/shop/issues/1%2F..%2F2/comments");
    }
}
