//! The JSON shapes several forge events share (Gogs/Gitea/GitHub users and repositories,
//! GitLab projects and users, and the [`Repository`] they name) and the small readers every event's parser uses: a body read
//! with the error named, a required field named when missing, forge times.

use model::Person;
use serde::Deserialize;

use crate::WebhookError;

pub(crate) fn read<'de, T: Deserialize<'de>>(json: &'de [u8]) -> Result<T, WebhookError> {
    serde_json::from_slice(json).map_err(|e| WebhookError::Malformed { reason: e.to_string() })
}

pub(crate) fn required(value: Option<String>, field: &'static str) -> Result<String, WebhookError> {
    value.filter(|v| !v.is_empty()).ok_or(WebhookError::MissingField { field })
}

pub(crate) fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

pub(crate) fn timestamp_secs(text: Option<&str>) -> Option<i64> {
    text?.parse::<jiff::Timestamp>().ok().map(|t| t.as_second())
}

/// GitLab's event times: `2021-04-28 21:50:00 +0200` or `2020-11-02 12:55:12 UTC`, and RFC
/// 3339 elsewhere.
pub(crate) fn gitlab_timestamp_secs(text: Option<&str>) -> Option<i64> {
    let text = text?.trim();
    let zoned = |text: &str| {
        jiff::fmt::strtime::parse("%Y-%m-%d %H:%M:%S %z", text).ok()?.to_timestamp().ok()
    };
    let utc = text.strip_suffix(" UTC").map(|t| format!("{t} +0000"));
    zoned(text)
        .or_else(|| zoned(utc.as_deref()?))
        .map(|t| t.as_second())
        .or_else(|| timestamp_secs(Some(text)))
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct User {
    pub(crate) login: Option<String>,
    pub(crate) username: Option<String>,
    pub(crate) full_name: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) email: Option<String>,
}

impl User {
    pub(crate) fn person(self) -> Person {
        Person {
            name: non_empty(self.full_name).or(non_empty(self.name)),
            email: non_empty(self.email),
            username: non_empty(self.username).or(non_empty(self.login)),
        }
    }

    pub(crate) fn handle(&self) -> Option<String> {
        non_empty(self.login.clone()).or(non_empty(self.username.clone()))
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct Repo {
    pub(crate) full_name: Option<String>,
    pub(crate) html_url: Option<String>,
    pub(crate) clone_url: Option<String>,
}

impl Repo {
    pub(crate) fn repository(self) -> Result<Repository, WebhookError> {
        Ok(Repository {
            full_name: required(self.full_name, "repository.full_name")?,
            web_url: non_empty(self.html_url),
            clone_url: non_empty(self.clone_url),
        })
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct GitlabProject {
    pub(crate) path_with_namespace: Option<String>,
    pub(crate) web_url: Option<String>,
    pub(crate) git_http_url: Option<String>,
}

impl GitlabProject {
    pub(crate) fn repository(self) -> Result<Repository, WebhookError> {
        Ok(Repository {
            full_name: required(self.path_with_namespace, "project.path_with_namespace")?,
            web_url: non_empty(self.web_url),
            clone_url: non_empty(self.git_http_url),
        })
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct GitlabUser {
    pub(crate) name: Option<String>,
    pub(crate) username: Option<String>,
    pub(crate) email: Option<String>,
}

impl GitlabUser {
    pub(crate) fn person(self) -> Person {
        Person {
            name: non_empty(self.name),
            // GitLab writes `[REDACTED]` for e-mails that are not public.
            email: non_empty(self.email).filter(|e| e != "[REDACTED]"),
            username: non_empty(self.username),
        }
    }
}

/// The repository an event happened in, as the forge names it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Repository {
    /// `owner/name` (GitLab: `group/subgroup/project`).
    pub full_name: String,
    pub web_url: Option<String>,
    pub clone_url: Option<String>,
}
