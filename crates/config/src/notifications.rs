//! `[notifications]`, `[[alerts.alertmanager]]` and `[[alerts.webhook]]`: where findings are
//! announced and how delivery retries.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::changes::{IntegrationConfig, RepositoryConfig, ServiceConfig, derive_forge_path};
use super::values::{parse_duration_nanos, read_secret};

/// How notifications (review comments, commit statuses, alerts) are delivered: each through
/// an outbox, retried with backoff.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct NotificationsConfig {
    /// Attempts before a delivery is dead-lettered (visible in the API and the finding page).
    pub max_attempts: u32,
    /// The first retry's wait; it doubles (with jitter) up to `max_backoff`.
    pub initial_backoff: String,
    /// The longest wait between two attempts.
    pub max_backoff: String,
    /// How often a firing alert is sent to Alertmanager again.
    pub alert_refresh: String,
}

impl Default for NotificationsConfig {
    fn default() -> Self {
        NotificationsConfig {
            max_attempts: 12,
            initial_backoff: "10s".into(),
            max_backoff: "30m".into(),
            alert_refresh: "15m".into(),
        }
    }
}

/// Where alerts go: one alert per regressed finding, resolved when the finding is.
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Prometheus Alertmanagers (API v2).
    pub alertmanager: Vec<SinkConfig>,
    /// Generic JSON webhooks (the body has a Slack-compatible `text`).
    pub webhook: Vec<SinkConfig>,
}

/// One alert receiver: its URL in the file, or (for URLs that hold a secret, like a Slack
/// webhook) in an environment variable or a file.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// Names it in the outbox and the API (unset: `default`, `2`, `3`... by position).
    #[schemars(example = &"oncall")]
    pub name: Option<String>,
    /// Where alerts are sent (Alertmanager: its base URL).
    #[schemars(example = &"http://alertmanager:9093")]
    pub url: Option<String>,
    /// Or the environment variable holding the URL, for URLs that hold a secret.
    #[schemars(example = &"SLACK_WEBHOOK_URL")]
    pub url_env: Option<String>,
    /// Or a file holding it.
    #[schemars(example = &"/run/secrets/slack-webhook-url")]
    pub url_file: Option<PathBuf>,
    /// Webhooks: the environment variable holding a Standard Webhooks signing secret (`whsec_`
    /// and the base64 of 24 to 64 random bytes) to sign each alert with.
    #[schemars(example = &"SPANBLAME_ALERT_SIGNING_SECRET")]
    pub secret_env: Option<String>,
    /// Or a file holding it.
    #[schemars(example = &"/run/secrets/alert-signing-secret")]
    pub secret_file: Option<PathBuf>,
    /// The environment variable holding the receiver's bearer token, sent as
    /// `Authorization: Bearer`.
    #[schemars(example = &"ALERT_RECEIVER_TOKEN")]
    pub bearer_token_env: Option<String>,
    /// Or a file holding it.
    #[schemars(example = &"/run/secrets/alert-receiver-token")]
    pub bearer_token_file: Option<PathBuf>,
    /// HTTP Basic credentials: the user name here, the password from the environment or a file.
    #[schemars(example = &"spanblame")]
    pub username: Option<String>,
    /// The environment variable holding the Basic password.
    #[schemars(example = &"ALERTMANAGER_PASSWORD")]
    pub password_env: Option<String>,
    /// Or a file holding it.
    #[schemars(example = &"/run/secrets/alertmanager-password")]
    pub password_file: Option<PathBuf>,
}

/// A credential named by `<name>_env` or `<name>_file` (at most one), if either is set.
fn credential(
    key: &str,
    name: &str,
    var: Option<&str>,
    file: Option<&Path>,
    env: &BTreeMap<String, String>,
) -> anyhow::Result<Option<String>> {
    let value = match (var, file) {
        (None, None) => return Ok(None),
        (Some(var), None) => env.get(var).cloned().with_context(|| {
            format!("{key}: environment variable `{var}` named by `{name}_env` is not set")
        })?,
        (None, Some(file)) => std::fs::read_to_string(file)
            .with_context(|| format!("{key}: reading `{name}_file` `{}`", file.display()))?,
        (Some(_), Some(_)) => bail!("{key}: set `{name}_env` or `{name}_file`, not both"),
    };
    let value = value.trim().to_owned();
    if value.is_empty() {
        bail!("{key}: `{name}` is empty");
    }
    Ok(Some(value))
}

/// What a sink's credential keys say: a bearer token, or a user name and password.
fn sink_auth(
    key: &str,
    sink: &SinkConfig,
    env: &BTreeMap<String, String>,
) -> anyhow::Result<Option<server::SinkAuth>> {
    let bearer = credential(
        key,
        "bearer_token",
        sink.bearer_token_env.as_deref(),
        sink.bearer_token_file.as_deref(),
        env,
    )?;
    let password = credential(
        key,
        "password",
        sink.password_env.as_deref(),
        sink.password_file.as_deref(),
        env,
    )?;
    match (bearer, &sink.username, password) {
        (None, None, None) => Ok(None),
        (Some(token), None, None) => Ok(Some(server::SinkAuth::Bearer(token))),
        (None, Some(username), Some(password)) => {
            Ok(Some(server::SinkAuth::Basic { username: username.clone(), password }))
        }
        (Some(_), _, _) => {
            bail!("{key}: set a bearer token or a `username` and password, not both")
        }
        (None, _, _) => {
            bail!("{key}: HTTP Basic needs both `username` and `password_env` (or `password_file`)")
        }
    }
}

/// A Standard Webhooks signing secret: `whsec_` and the base64 of 24 to 64 random bytes; the
/// base64 part is what signs.
fn signing_secret(key: &str, text: &str) -> anyhow::Result<String> {
    let generate = "generate one with `echo whsec_$(openssl rand -base64 32)`";
    let Some(encoded) = text.strip_prefix("whsec_") else {
        bail!("{key}: the signing secret must start with `whsec_` (Standard Webhooks); {generate}");
    };
    // The signature of nothing tells whether the secret decodes; its length is checked from
    // the base64 text (24 bytes are 32 characters).
    if forge::standard_webhook_signature(encoded, "id", "0", b"").is_none()
        || !(32..=88).contains(&encoded.len())
    {
        bail!(
            "{key}: the signing secret after `whsec_` is not the base64 of 24 to 64 bytes; {generate}"
        );
    }
    Ok(encoded.to_owned())
}

/// What the notification settings are resolved from.
pub(super) struct NotifySections<'a> {
    pub(super) notifications: &'a NotificationsConfig,
    pub(super) alerts: &'a AlertsConfig,
    pub(super) integrations: &'a [IntegrationConfig],
    pub(super) repositories: &'a [RepositoryConfig],
    pub(super) services: &'a [ServiceConfig],
}

/// Alert receivers, what each forge integration posts, and the delivery schedule.
pub(super) fn resolve_notifications(
    config: NotifySections<'_>,
    env: &BTreeMap<String, String>,
    changes: &server::ChangeSettings,
) -> anyhow::Result<server::NotifySettings> {
    let duration = |key: &str, value: &str| {
        parse_duration_nanos(value)
            .map(std::time::Duration::from_nanos)
            .with_context(|| format!("`notifications.{key}` = `{value}`"))
    };
    let n = config.notifications;
    if n.max_attempts == 0 {
        bail!("`notifications.max_attempts` must be at least 1");
    }
    let retry = server::RetrySettings {
        max_attempts: n.max_attempts,
        initial_backoff: duration("initial_backoff", &n.initial_backoff)?,
        max_backoff: duration("max_backoff", &n.max_backoff)?,
    };
    if retry.max_backoff < retry.initial_backoff {
        bail!(
            "`notifications.max_backoff` = `{}` is shorter than `initial_backoff` = `{}`; make it at least as long",
            n.max_backoff,
            n.initial_backoff
        );
    }
    let sinks = |section: &str, sinks: &[SinkConfig]| -> anyhow::Result<Vec<server::AlertSink>> {
        let mut out: Vec<server::AlertSink> = Vec::new();
        for (idx, sink) in sinks.iter().enumerate() {
            let name = sink.name.clone().unwrap_or_else(|| {
                if idx == 0 { "default".to_owned() } else { (idx + 1).to_string() }
            });
            let key = format!("`alerts.{section}[{idx}]` (`{name}`)");
            if out.iter().any(|s| s.name == name) {
                bail!("{key}: another `[[alerts.{section}]]` has the same `name`");
            }
            let url = match (&sink.url, &sink.url_env, &sink.url_file) {
                (Some(url), None, None) => url.trim().to_owned(),
                (None, Some(_), None) | (None, None, Some(_)) => {
                    read_secret(&key, sink.url_env.as_deref(), sink.url_file.as_deref(), env)?
                        .trim()
                        .to_owned()
                }
                _ => bail!("{key}: set exactly one of `url`, `url_env` or `url_file`"),
            };
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                bail!("{key}: the URL must start with `https://` (or `http://`)");
            }
            let secret = credential(
                &key,
                "secret",
                sink.secret_env.as_deref(),
                sink.secret_file.as_deref(),
                env,
            )?;
            let signing_secret = match (section, secret) {
                (_, None) => None,
                ("webhook", Some(text)) => Some(signing_secret(&key, &text)?),
                (_, Some(_)) => bail!(
                    "{key}: Alertmanager does not check signatures; give it `bearer_token_env` or `username` and `password_env` instead of a secret"
                ),
            };
            let auth = sink_auth(&key, sink, env)?;
            out.push(server::AlertSink { name, url, signing_secret, auth });
        }
        Ok(out)
    };
    let mut forges = Vec::new();
    for integration in config.integrations {
        if !(integration.comment_on_findings
            || integration.status_on_findings
            || integration.gate_on_reviews)
        {
            continue;
        }
        let has_api = changes
            .integrations
            .iter()
            .any(|i| i.name == integration.name && i.api_url.is_some() && i.api_token.is_some());
        if !has_api {
            bail!(
                "`integrations` (`{}`): `comment_on_findings`, `status_on_findings` and `gate_on_reviews` need `api_url` and `api_token_env` (a token that may comment on reviews and set commit statuses)",
                integration.name
            );
        }
        if integration.gate_on_reviews
            && matches!(
                model::ForgeKind::parse(&integration.kind),
                Some(model::ForgeKind::Gogs | model::ForgeKind::Phabricator)
            )
        {
            bail!(
                "`integrations` (`{}`): `gate_on_reviews` sets commit statuses, which {} has none of; {}",
                integration.name,
                integration.kind,
                if integration.kind == "phabricator" {
                    "use a Harbormaster build step instead (README: \"The tagging gate\")"
                } else {
                    "run `spanblame gate` from CI instead"
                }
            );
        }
        forges.push(server::ForgeNotify {
            integration: integration.name.clone(),
            comments: integration.comment_on_findings,
            statuses: integration.status_on_findings,
            gate: integration.gate_on_reviews,
        });
    }
    let mut repositories = Vec::new();
    for (idx, repository) in config.repositories.iter().enumerate() {
        let Some(name) = &repository.integration else { continue };
        let key = format!("`repositories[{idx}]` (`{}`)", repository.name);
        let Some(integration) = changes.integrations.iter().find(|i| &i.name == name) else {
            bail!("{key}: `integration` = `{name}` is not a configured `[[integrations]]` name");
        };
        let path = match (&repository.forge_path, integration.kind) {
            (Some(path), _) => Some(path.trim().trim_matches('/').to_owned()),
            (None, model::ForgeKind::Phabricator) => repository.monogram.clone(),
            (None, _) => derive_forge_path(
                repository.web_url.as_deref().or(repository.url.as_deref()),
                integration.api_url.as_deref(),
            ),
        };
        let posts = forges.iter().any(|f: &server::ForgeNotify| &f.integration == name);
        let path = match path.filter(|p| !p.is_empty()) {
            Some(path) => path,
            None if posts => bail!(
                "{key}: cannot tell its path on `{name}` from `url`; set `forge_path` (`owner/name`{})",
                if integration.kind == model::ForgeKind::Phabricator {
                    ", or `monogram` for Phabricator"
                } else {
                    ""
                }
            ),
            None => continue,
        };
        repositories.push(server::RepositoryForge {
            repository: repository.name.clone(),
            integration: name.clone(),
            path,
        });
    }
    let services = config
        .services
        .iter()
        .map(|service| server::ServiceNotify {
            service: service.name.clone(),
            tier: service.tier.unwrap_or(server::DEFAULT_TIER),
            comments: service.comment_on_findings.unwrap_or(true),
            alerts: service.alerts.unwrap_or(true),
        })
        .collect();
    Ok(server::NotifySettings {
        alertmanagers: sinks("alertmanager", &config.alerts.alertmanager)?,
        webhooks: sinks("webhook", &config.alerts.webhook)?,
        forges,
        repositories,
        services,
        retry,
        alert_refresh: duration("alert_refresh", &n.alert_refresh)?,
    })
}
