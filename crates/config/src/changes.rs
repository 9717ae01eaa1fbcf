//! `[[integrations]]`, `[[repositories]]`, `[[services]]` and `[mirrors]`: the change graph's
//! sources.

use std::collections::BTreeMap;
use std::path::Path;
use std::path::PathBuf;

use anyhow::{Context, bail};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::values::{parse_duration_nanos, read_secret, yes};

/// The git mirrors of `[[repositories]]`, kept under `<data_dir>/mirrors`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct MirrorsConfig {
    /// How often every mirror is fetched (pushes announced by webhooks fetch at once).
    pub fetch_interval: String,
}

impl Default for MirrorsConfig {
    fn default() -> Self {
        MirrorsConfig { fetch_interval: "5m".into() }
    }
}

/// The tagging gate's rules: whether a change is attributable before it merges
/// (`spanblame gate`, Harbormaster, commit statuses).
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct GateConfig {
    /// Checks that fail the gate (`review`, `service`, `spans`); the others are advice.
    pub required: Vec<String>,
    /// Environments whose spans the `spans` check reads when the caller names none (empty:
    /// any).
    #[schemars(example = ["staging"])]
    pub environments: Vec<String>,
    /// How recent those spans must be.
    pub window: String,
}

impl Default for GateConfig {
    fn default() -> Self {
        GateConfig {
            required: analysis::gate::Check::ALL.iter().map(|c| c.name().to_owned()).collect(),
            environments: Vec::new(),
            window: "30m".into(),
        }
    }
}

/// A forge that sends webhooks to `/hooks/{kind}/{name}`, and that spanblame may call back
/// (comments, commit statuses, reverts).
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IntegrationConfig {
    /// The last part of its webhook URL, and what `[[repositories]]` call it.
    #[schemars(example = &"main-gitea")]
    pub name: String,
    /// `gogs`, `gitea` (also Forgejo), `forgejo`, `github`, `gitlab` or `phabricator` (also
    /// Phorge).
    #[schemars(example = &"gitea")]
    pub kind: String,
    /// The environment variable holding the webhook secret (Phabricator: the webhook's HMAC
    /// key; GitLab: the secret token, or a `whsec_` signing token).
    #[schemars(example = &"GITEA_WEBHOOK_SECRET")]
    pub secret_env: Option<String>,
    /// Or a file holding it.
    #[schemars(example = &"/run/secrets/gitea-webhook")]
    pub secret_file: Option<PathBuf>,
    /// The forge's base URL for API calls (Phabricator: Conduit is called at
    /// `<api_url>/api/<method>`).
    #[schemars(example = &"https://phab.example.com")]
    pub api_url: Option<String>,
    /// The environment variable holding an API token (Phabricator: a bot's `api-…` Conduit
    /// token).
    #[schemars(example = &"PHAB_CONDUIT_TOKEN")]
    pub api_token_env: Option<String>,
    /// Or a file holding it.
    #[schemars(example = &"/run/secrets/phab-conduit-token")]
    pub api_token_file: Option<PathBuf>,
    /// Comment on the suspect's review (or commit) when a deploy regresses and when it is
    /// resolved; needs `api_url` and an API token.
    #[serde(default)]
    pub comment_on_findings: bool,
    /// Set a commit status on the suspect commit (Gitea/Forgejo, GitHub, GitLab).
    #[serde(default)]
    pub status_on_findings: bool,
    /// Set the tagging gate's commit status (`spanblame/tagging`) on each new head of a pull or
    /// merge request (Gitea/Forgejo, GitHub, GitLab).
    #[serde(default)]
    pub gate_on_reviews: bool,
}

/// A repository whose commits the change graph holds: mirrored (cloned and fetched every
/// `mirrors.fetch_interval` and on push) or read in place.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RepositoryConfig {
    /// What `[[services]]` call it.
    #[schemars(example = &"shop/cart")]
    pub name: String,
    /// Clone URL (mirrored under the data directory) or browser URL.
    #[schemars(example = &"https://git.example.com/shop/cart.git")]
    pub url: Option<String>,
    /// An existing repository on this machine, read in place instead of cloning `url`.
    #[schemars(example = &"/srv/git/cart.git")]
    pub path: Option<PathBuf>,
    /// Set to false to match webhooks by `url` without cloning it.
    #[serde(default = "yes")]
    pub mirror: bool,
    /// An environment variable holding `user:token` for cloning over HTTP(S).
    #[schemars(example = &"CART_CLONE_CREDENTIALS")]
    pub credentials_env: Option<String>,
    /// Where people browse it, for links (unset: an HTTP(S) `url` without `.git`; Phabricator:
    /// the install's base URL).
    #[schemars(example = &"https://git.example.com/shop/cart")]
    pub web_url: Option<String>,
    /// The forge kind, for link formats and CODEOWNERS syntax (the `kind`s of
    /// `[[integrations]]`).
    #[schemars(example = &"gitea")]
    pub forge: Option<String>,
    /// Phabricator: the repository's monogram (`rCALLSIGN` or `R12`), for commit links.
    #[schemars(example = &"rSHOP")]
    pub monogram: Option<String>,
    /// The `[[integrations]]` entry it lives on, where findings are posted back.
    #[schemars(example = &"main-gitea")]
    pub integration: Option<String>,
    /// Its `owner/name` on that forge (GitLab: the full project path); derived from `url`
    /// when it is under the forge's address.
    #[schemars(example = &"shop/cart")]
    pub forge_path: Option<String>,
}

/// A service (its spans' `service.name`): the repository its code is in, its owner, and how
/// its findings are announced.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// The spans' `service.name`.
    #[schemars(example = &"cart")]
    pub name: String,
    /// The `[[repositories]]` entry holding its code.
    #[schemars(example = &"shop/cart")]
    pub repository: Option<String>,
    /// Where its code lives in a monorepo (for CODEOWNERS and suspects).
    #[schemars(example = &"services/cart")]
    pub path_prefix: Option<String>,
    /// The owning `[[teams]]` entry, unless CODEOWNERS in the mirror names one for the span's
    /// `code.file.path`.
    #[schemars(example = &"payments")]
    pub team: Option<String>,
    /// 1 is the most critical; alert severities depend on it (unset: 2).
    #[schemars(example = 1)]
    pub tier: Option<u8>,
    /// Set to false to keep this service's findings off reviews and commit statuses (unset:
    /// as the integration says).
    #[schemars(example = false)]
    pub comment_on_findings: Option<bool>,
    /// Set to false to send no alerts for this service (unset: alerts are sent).
    #[schemars(example = false)]
    pub alerts: Option<bool>,
    /// Forge events of its repository that deploy it: `deployment`, `deployment:ENV`,
    /// `release:ENV`.
    #[serde(default)]
    #[schemars(example = ["deployment:production", "release:staging"])]
    pub deploy_from: Vec<String>,
}

/// What the change graph's settings are resolved from.
pub(super) struct ChangeSections<'a> {
    pub(super) integrations: &'a [IntegrationConfig],
    pub(super) repositories: &'a [RepositoryConfig],
    pub(super) services: &'a [ServiceConfig],
    pub(super) mirrors: &'a MirrorsConfig,
    pub(super) gate: &'a GateConfig,
    /// `storage.data_dir`: cloned mirrors live in its `mirrors` folder.
    pub(super) data_dir: &'a Path,
}

/// Integrations, repositories and service ownership, checked against each other.
pub(super) fn resolve_changes(
    config: ChangeSections<'_>,
    env: &BTreeMap<String, String>,
) -> anyhow::Result<server::ChangeSettings> {
    let kind = |key: &str, name: &str| {
        model::ForgeKind::parse(name).with_context(|| {
            format!("{key} = `{name}` is not a forge kind; use gogs, gitea, forgejo, github, gitlab or phabricator")
        })
    };
    let mut integrations = Vec::new();
    for (idx, integration) in config.integrations.iter().enumerate() {
        let key = format!("`integrations[{idx}]` (`{}`)", integration.name);
        if integration.name.is_empty()
            || !integration
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            bail!(
                "{key}: `name` must be letters, digits, `-` or `_` (it appears in the webhook URL)"
            );
        }
        let kind = kind(&format!("{key}: `kind`"), &integration.kind)?;
        if integrations
            .iter()
            .any(|i: &server::Integration| i.name == integration.name && i.kind == kind)
        {
            bail!("{key}: another `{kind}` integration has the same name");
        }
        let secret = read_secret(
            &key,
            integration.secret_env.as_deref(),
            integration.secret_file.as_deref(),
            env,
        )?;
        if kind == model::ForgeKind::Gitlab
            && let Some(signing_key) = secret.strip_prefix("whsec_")
            && forge::standard_webhook_signature(signing_key, "id", "0", b"").is_none()
        {
            bail!(
                "{key}: the secret starts with `whsec_` (a GitLab signing token) but the rest is not base64; copy the signing token exactly as GitLab shows it"
            );
        }
        let api_token = match (&integration.api_token_env, &integration.api_token_file) {
            (None, None) => None,
            (env_var, file) => Some(read_secret(
                &format!("{key}: api token"),
                env_var.as_deref(),
                file.as_deref(),
                env,
            )?),
        };
        let api_url =
            integration.api_url.as_deref().map(str::trim).map(|url| url.trim_end_matches('/'));
        if let Some(url) = api_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            bail!("{key}: `api_url` = `{url}` must start with `https://` (or `http://`)");
        }
        if api_token.is_some() != api_url.is_some() {
            bail!(
                "{key}: set both `api_url` and `api_token_env` (or `api_token_file`), or neither"
            );
        }
        if kind == model::ForgeKind::Phabricator && api_token.is_none() {
            bail!(
                "{key}: a Phabricator integration needs `api_url` (the install's base URL) and `api_token_env` (a Conduit API token, `api-...`): Herald webhooks carry only PHIDs, which spanblame fetches through Conduit"
            );
        }
        integrations.push(server::Integration {
            name: integration.name.clone(),
            kind,
            secret: secret.into_bytes(),
            api_url: api_url.map(str::to_owned),
            api_token,
        });
    }
    let mut repositories = Vec::new();
    for (idx, repository) in config.repositories.iter().enumerate() {
        let key = format!("`repositories[{idx}]` (`{}`)", repository.name);
        if repository.name.trim().is_empty() {
            bail!("`repositories[{idx}]`: `name` must not be empty");
        }
        let forge = repository
            .forge
            .as_deref()
            .map(|name| kind(&format!("{key}: `forge`"), name))
            .transpose()?;
        let mirror = match (&repository.path, &repository.url) {
            (Some(path), _) => Some(server::MirrorSource::Path(path.clone())),
            (None, Some(url)) if repository.mirror => {
                Some(server::MirrorSource::Clone(match &repository.credentials_env {
                    Some(var) => {
                        let credentials = env.get(var).with_context(|| {
                            format!("{key}: environment variable `{var}` named by `credentials_env` is not set")
                        })?;
                        with_credentials(url, credentials).with_context(|| {
                            format!(
                                "{key}: `credentials_env` needs an `http://` or `https://` `url`"
                            )
                        })?
                    }
                    None => url.clone(),
                }))
            }
            _ => None,
        };
        if let Some(monogram) = &repository.monogram
            && forge::conduit::RepositoryMonogram::parse(monogram).is_none()
        {
            bail!(
                "{key}: `monogram` = `{monogram}` is not a Phabricator repository monogram; use `r` and the callsign (`rWEB`) or `R` and the id (`R12`)"
            );
        }
        repositories.push(server::RepositorySettings {
            name: repository.name.clone(),
            url: repository.url.clone(),
            web_url: repository.web_url.clone(),
            forge,
            mirror,
            monogram: repository.monogram.clone(),
        });
    }
    let mut services = Vec::new();
    for (idx, service) in config.services.iter().enumerate() {
        if let Some(repository) = &service.repository
            && !config.repositories.iter().any(|r| &r.name == repository)
        {
            bail!(
                "`services[{idx}]` (`{}`): `repository` = `{repository}` is not a configured `[[repositories]]` name",
                service.name
            );
        }
        let key = format!("`services[{idx}]` (`{}`)", service.name);
        let mut deploy_from = Vec::new();
        for text in &service.deploy_from {
            let trigger = server::DeployTrigger::parse(text)
                .map_err(|e| anyhow::anyhow!("{key}: `deploy_from`: {e}"))?;
            deploy_from.push(trigger);
        }
        if !deploy_from.is_empty() && service.repository.is_none() {
            bail!(
                "{key}: `deploy_from` needs `repository`: the forge's events are matched to services by the repository they happen in"
            );
        }
        services.push(server::ServiceOwnership {
            service: service.name.clone(),
            repository: service.repository.clone(),
            path_prefix: service.path_prefix.clone(),
            team: service.team.clone(),
            deploy_from,
        });
    }
    let fetch_interval_nanos =
        parse_duration_nanos(&config.mirrors.fetch_interval).with_context(|| {
            format!("`mirrors.fetch_interval` = `{}`", config.mirrors.fetch_interval)
        })?;
    let mirrors = server::MirrorSettings {
        dir: config.data_dir.join("mirrors"),
        fetch_interval: std::time::Duration::from_nanos(fetch_interval_nanos),
        show_progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
    };
    let gate = resolve_gate(config.gate)?;
    Ok(server::ChangeSettings { integrations, repositories, services, mirrors, gate })
}

fn resolve_gate(gate: &GateConfig) -> anyhow::Result<analysis::gate::Rules> {
    let mut required = Vec::new();
    for name in &gate.required {
        let check = analysis::gate::Check::parse(name).with_context(|| {
            format!(
                "`gate.required` names `{name}`, which is not a check: use review, service or spans"
            )
        })?;
        required.push(check);
    }
    let window_nanos = parse_duration_nanos(&gate.window)
        .with_context(|| format!("`gate.window` = `{}`", gate.window))?;
    if let Some(empty) = gate.environments.iter().find(|e| e.trim().is_empty()) {
        bail!(
            "`gate.environments` has an empty name (`{empty}`): list environments such as \"staging\""
        );
    }
    Ok(analysis::gate::Rules { required, environments: gate.environments.clone(), window_nanos })
}

/// `https://host/x` with `user:token` becomes `https://user:token@host/x`.
pub(super) fn with_credentials(url: &str, credentials: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    matches!(scheme, "http" | "https").then(|| format!("{scheme}://{credentials}@{rest}"))
}

/// A repository's path on its forge from its URL: what follows the forge's address (or, for
/// an API host such as `api.github.com`, what follows the host).
pub(super) fn derive_forge_path(url: Option<&str>, api_url: Option<&str>) -> Option<String> {
    let url = url?;
    if !url.contains("://") && !url.contains('@') {
        return None; // a local path
    }
    let normalized = model::normalize_repository_url(url);
    if let Some(base) = api_url.map(model::normalize_repository_url)
        && let Some(rest) = normalized.strip_prefix(&format!("{base}/"))
    {
        return Some(rest.to_owned());
    }
    normalized.split_once('/').map(|(_, rest)| rest.to_owned())
}
