//! The change graph's configuration: forge integrations, repositories (with their mirrors
//! and URL forms) and service ownership.

use model::{ForgeKind, normalize_repository_url};

use crate::mirrors::{MirrorSettings, MirrorSource};

#[derive(Debug, Clone, Default)]
pub struct ChangeSettings {
    pub integrations: Vec<Integration>,
    pub repositories: Vec<RepositorySettings>,
    pub services: Vec<ServiceOwnership>,
    pub mirrors: MirrorSettings,
    /// `[gate]`: the tagging gate's required checks, environments and window.
    pub gate: analysis::gate::Rules,
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
    pub fn web_url(&self) -> Option<String> {
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
    /// `deploy_from`: the forge events of its repository that deploy it.
    pub deploy_from: Vec<DeployTrigger>,
}

/// A forge event that deploys a service (`deploy_from = ["deployment:production",
/// "release:production"]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeployTrigger {
    /// A successful deployment (GitHub, GitLab, a Phabricator Harbormaster deploy plan) to the
    /// named environment, or to any, under the forge's name for it.
    Deployment { environment: Option<String> },
    /// A published release (Gitea/Forgejo, Gogs, GitHub), live in `environment`.
    Release { environment: String },
}

impl DeployTrigger {
    /// Reads `deployment`, `deployment:ENV` or `release:ENV`; the error says what to write.
    pub fn parse(text: &str) -> Result<DeployTrigger, String> {
        let (kind, environment) = match text.split_once(':') {
            Some((kind, environment)) => (kind.trim(), Some(environment.trim())),
            None => (text.trim(), None),
        };
        match (kind, environment) {
            (_, Some("")) => Err(format!("`{text}` names no environment after `:`")),
            ("deployment", environment) => {
                Ok(DeployTrigger::Deployment { environment: environment.map(str::to_owned) })
            }
            ("release", Some(environment)) => {
                Ok(DeployTrigger::Release { environment: environment.to_owned() })
            }
            ("release", None) => Err(
                "`release` needs the environment a published release goes live in: write `release:production`".into(),
            ),
            _ => Err(format!(
                "`{text}` is not a deploy event: use `deployment`, `deployment:ENVIRONMENT` or `release:ENVIRONMENT`"
            )),
        }
    }

    /// As `deploy_from` writes it.
    pub fn text(&self) -> String {
        match self {
            DeployTrigger::Deployment { environment: None } => "deployment".into(),
            DeployTrigger::Deployment { environment: Some(e) } => format!("deployment:{e}"),
            DeployTrigger::Release { environment } => format!("release:{environment}"),
        }
    }

    /// The environment the event deploys to under this trigger, or `None` when it does not
    /// trigger it.
    pub fn environment_for(&self, event: &forge::DeployEventKind) -> Option<String> {
        match (self, event) {
            (
                DeployTrigger::Deployment { environment: wanted },
                forge::DeployEventKind::Deployment { environment }
                | forge::DeployEventKind::Build { environment },
            ) => wanted.as_ref().is_none_or(|w| w == environment).then(|| environment.clone()),
            (DeployTrigger::Release { environment }, forge::DeployEventKind::Release { .. }) => {
                Some(environment.clone())
            }
            _ => None,
        }
    }
}

impl ChangeSettings {
    pub fn integration(&self, kind: ForgeKind, name: &str) -> Option<&Integration> {
        self.integrations.iter().find(|i| i.kind == kind && i.name == name)
    }

    /// The configured repository a forge event or span names, by name or by URL.
    pub fn repository_for(&self, names: &[Option<&str>]) -> Option<&RepositorySettings> {
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

    pub fn ownership(&self, service: &str) -> Option<&ServiceOwnership> {
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
