//! Who may do what: roles, token scopes, the principal a request acts as, and
//! [`authorize`], the one decision every request goes through.
//!
//! The decision is a pure function of the principal, what the route needs ([`Need`]) and the
//! [`Policy`] (the auth mode and who owns which service), so it is table-tested here and the
//! server only looks the route up and asks.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// What a person may do, from their identity provider's groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Everything, including tokens and the audit log.
    Admin,
    /// Every service in every environment; may acknowledge and resolve findings.
    OncallLead,
    /// The services their teams own; other teams' spans only as redacted stubs.
    Engineer,
    /// The audit log.
    Auditor,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::OncallLead => "oncall_lead",
            Role::Engineer => "engineer",
            Role::Auditor => "auditor",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        [Role::Admin, Role::OncallLead, Role::Engineer, Role::Auditor]
            .into_iter()
            .find(|r| r.as_str() == text)
    }
}

/// What an API token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Send spans (OTLP).
    Ingest,
    /// Report deploys.
    Deploy,
    /// Deliver forge events for a relay that cannot hold the forge's secret.
    Webhook,
    /// Read traces, services, deploys and findings (within the token's restriction).
    Read,
    /// Manage tokens, change findings and read the audit log: automation of an admin's work.
    Admin,
    /// Propose the revert of a regression's suspects on the forge (within the token's
    /// restriction); not implied by `admin`.
    Revert,
}

impl Scope {
    pub const ALL: [Scope; 6] =
        [Scope::Ingest, Scope::Deploy, Scope::Webhook, Scope::Read, Scope::Admin, Scope::Revert];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Ingest => "ingest",
            Scope::Deploy => "deploy",
            Scope::Webhook => "webhook",
            Scope::Read => "read",
            Scope::Admin => "admin",
            Scope::Revert => "revert",
        }
    }

    pub fn parse(text: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalKind {
    /// Signed in through OIDC or an identity-aware proxy.
    Person,
    /// An API token (or a token from the configuration).
    Token,
    /// `auth.mode = "none"`: whoever reaches the server, which listens on loopback by default.
    Local,
    /// No credentials.
    Anonymous,
}

/// Who a request acts as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// For the audit log: an email or subject, `token:<prefix>`, `local` or `anonymous`.
    pub id: String,
    pub kind: PrincipalKind,
    pub roles: BTreeSet<Role>,
    pub teams: BTreeSet<String>,
    pub scopes: BTreeSet<Scope>,
    /// A token's restriction to some services (`None`: every service).
    pub services: Option<BTreeSet<String>>,
    /// A token's restriction to some environments (`None`: every environment).
    pub environments: Option<BTreeSet<String>>,
}

impl Principal {
    pub fn anonymous() -> Principal {
        Principal::bare("anonymous", PrincipalKind::Anonymous)
    }

    /// The local operator of a server without sign-in (`auth.mode = "none"`).
    pub fn local() -> Principal {
        Principal {
            roles: BTreeSet::from([Role::Admin]),
            ..Principal::bare("local", PrincipalKind::Local)
        }
    }

    /// A person with the roles and teams their groups map to; every person is an engineer.
    pub fn person(id: &str, mut roles: BTreeSet<Role>, teams: BTreeSet<String>) -> Principal {
        roles.insert(Role::Engineer);
        Principal { roles, teams, ..Principal::bare(id, PrincipalKind::Person) }
    }

    pub fn token(
        id: &str,
        scopes: BTreeSet<Scope>,
        services: Option<BTreeSet<String>>,
        environments: Option<BTreeSet<String>>,
    ) -> Principal {
        Principal { scopes, services, environments, ..Principal::bare(id, PrincipalKind::Token) }
    }

    fn bare(id: &str, kind: PrincipalKind) -> Principal {
        Principal {
            id: id.to_owned(),
            kind,
            roles: BTreeSet::new(),
            teams: BTreeSet::new(),
            scopes: BTreeSet::new(),
            services: None,
            environments: None,
        }
    }

    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    pub fn has_scope(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }

    /// Whether this principal reaches every service and environment (a person, or a token
    /// without restrictions).
    pub fn is_unrestricted(&self) -> bool {
        self.services.is_none() && self.environments.is_none()
    }

    /// Whether this principal may create a token with these scopes and restrictions: a
    /// person with the `admin` role may create any; a token only one within its own reach (its
    /// scopes, or any with `admin`; its services and environments, or a subset of them).
    pub fn may_grant(
        &self,
        scopes: &BTreeSet<Scope>,
        services: Option<&BTreeSet<String>>,
        environments: Option<&BTreeSet<String>>,
    ) -> Result<(), String> {
        if self.kind != PrincipalKind::Token {
            return Ok(());
        }
        if let Some(scope) =
            scopes.iter().find(|s| !self.has_scope(Scope::Admin) && !self.has_scope(**s))
        {
            return Err(format!(
                "`{}` may not grant the `{scope}` scope, which it does not hold",
                self.id
            ));
        }
        self.reaches("services", self.services.as_ref(), services)?;
        self.reaches("environments", self.environments.as_ref(), environments)
    }

    /// Whether this principal may rotate or revoke a token with these restrictions: only one
    /// within its own reach, so a restricted token never manages an unrestricted one.
    pub fn may_manage(
        &self,
        services: Option<&BTreeSet<String>>,
        environments: Option<&BTreeSet<String>>,
    ) -> Result<(), String> {
        if self.kind != PrincipalKind::Token {
            return Ok(());
        }
        self.reaches("services", self.services.as_ref(), services)?;
        self.reaches("environments", self.environments.as_ref(), environments)
    }

    fn reaches(
        &self,
        what: &str,
        own: Option<&BTreeSet<String>>,
        wanted: Option<&BTreeSet<String>>,
    ) -> Result<(), String> {
        match (own, wanted) {
            (None, _) => Ok(()),
            (Some(own), None) => Err(format!(
                "`{}` is restricted to {what} {} and may not reach every one of them",
                self.id,
                own.iter().cloned().collect::<Vec<_>>().join(", ")
            )),
            (Some(own), Some(wanted)) => match wanted.iter().find(|w| !own.contains(*w)) {
                None => Ok(()),
                Some(outside) => Err(format!(
                    "`{}` is restricted to {what} {} and may not reach `{outside}`",
                    self.id,
                    own.iter().cloned().collect::<Vec<_>>().join(", ")
                )),
            },
        }
    }
}

/// What a route needs of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Need {
    /// Health, metrics, the sign-in pages: anyone.
    Public,
    /// Forge webhooks: the handler checks the forge's signature on the raw body (or a
    /// `webhook`-scoped token) before parsing anything.
    ForgeSignature,
    /// Send spans.
    Ingest,
    /// Report a deploy.
    ReportDeploy,
    /// Traces, services, deploys, findings, commits: filtered by what the caller may see.
    ReadData,
    /// Acknowledge, resolve or reopen a finding of a service the caller may see.
    ChangeFinding,
    /// Propose the revert of a regression's suspects on the forge: on-call leads and admins
    /// for any service, engineers for their teams' services, tokens with the `revert` scope.
    ProposeRevert,
    /// Create, list, rotate and revoke API tokens.
    ManageTokens,
    /// Read and export the audit log.
    ReadAudit,
    /// Anyone signed in: their own identity, signing out.
    SignedIn,
}

/// Which services each team owns (from the configuration and the change graph).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ownership {
    teams_by_service: BTreeMap<String, BTreeSet<String>>,
}

impl Ownership {
    pub fn new(pairs: impl IntoIterator<Item = (String, String)>) -> Ownership {
        let mut teams_by_service: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (service, team) in pairs {
            teams_by_service.entry(service).or_default().insert(team);
        }
        Ownership { teams_by_service }
    }

    /// The services any of `teams` owns.
    pub fn services_of(&self, teams: &BTreeSet<String>) -> BTreeSet<String> {
        self.teams_by_service
            .iter()
            .filter(|(_, owners)| !owners.is_disjoint(teams))
            .map(|(service, _)| service.clone())
            .collect()
    }
}

/// The server's access settings the decision depends on.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// `ingest.require_auth = false`: anyone may send spans.
    pub ingest_open: bool,
    /// `deploys.require_auth = false`: anyone may report deploys.
    pub deploys_open: bool,
    pub ownership: Ownership,
}

/// What an allowed caller may see: every service and environment, or some.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Visibility {
    /// `None`: every service.
    pub services: Option<BTreeSet<String>>,
    /// `None`: every environment.
    pub environments: Option<BTreeSet<String>>,
}

impl Visibility {
    pub fn everything() -> Visibility {
        Visibility { services: None, environments: None }
    }

    pub fn is_everything(&self) -> bool {
        self.services.is_none() && self.environments.is_none()
    }

    pub fn allows_service(&self, service: &str) -> bool {
        self.services.as_ref().is_none_or(|s| s.contains(service))
    }

    /// Whether data of `service` in `environment` (unknown: `None`) may be shown in full.
    pub fn allows(&self, service: &str, environment: Option<&str>) -> bool {
        self.allows_service(service)
            && match (&self.environments, environment) {
                (None, _) => true,
                (Some(allowed), Some(environment)) => allowed.contains(environment),
                (Some(_), None) => false,
            }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow(Visibility),
    Deny(Refusal),
}

/// Why a request is refused: no usable credentials (401) or not enough rights (403).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub kind: RefusalKind,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    Unauthenticated,
    Forbidden,
}

/// The one authorization decision.
pub fn authorize(principal: &Principal, need: Need, policy: &Policy) -> Decision {
    let token_reach = Visibility {
        services: principal.services.clone(),
        environments: principal.environments.clone(),
    };
    let scoped = |scope: Scope| -> Decision {
        if principal.has_scope(scope) {
            Decision::Allow(token_reach.clone())
        } else {
            refuse(principal, &format!("a token with the `{scope}` scope"))
        }
    };
    let is_admin = principal.has_role(Role::Admin);
    match need {
        Need::Public | Need::ForgeSignature => Decision::Allow(Visibility::everything()),
        // Sending spans and reporting deploys are machine work: roles do not grant them. An
        // open door lets anyone in, but a token sent through it keeps its restriction.
        Need::Ingest if policy.ingest_open => Decision::Allow(token_reach),
        Need::Ingest => scoped(Scope::Ingest),
        Need::ReportDeploy if policy.deploys_open => Decision::Allow(token_reach),
        Need::ReportDeploy => scoped(Scope::Deploy),
        Need::ReadData | Need::ChangeFinding => {
            if is_admin || principal.has_role(Role::OncallLead) {
                Decision::Allow(Visibility::everything())
            } else if principal.has_role(Role::Engineer) {
                Decision::Allow(Visibility {
                    services: Some(policy.ownership.services_of(&principal.teams)),
                    environments: None,
                })
            } else if principal.has_scope(Scope::Admin)
                || (need == Need::ReadData && principal.has_scope(Scope::Read))
            {
                Decision::Allow(token_reach)
            } else if need == Need::ReadData {
                refuse(principal, "a signed-in person or a token with the `read` scope")
            } else {
                refuse(principal, "a signed-in person or a token with the `admin` scope")
            }
        }
        Need::ProposeRevert => {
            if is_admin || principal.has_role(Role::OncallLead) {
                Decision::Allow(Visibility::everything())
            } else if principal.has_role(Role::Engineer) {
                Decision::Allow(Visibility {
                    services: Some(policy.ownership.services_of(&principal.teams)),
                    environments: None,
                })
            } else if principal.has_scope(Scope::Revert) {
                Decision::Allow(token_reach)
            } else {
                refuse(
                    principal,
                    "the `oncall-lead` or `admin` role, an engineer of the service's team, or a token with the `revert` scope",
                )
            }
        }
        Need::ManageTokens => {
            if is_admin || principal.has_scope(Scope::Admin) {
                Decision::Allow(Visibility::everything())
            } else {
                refuse(principal, "the `admin` role or a token with the `admin` scope")
            }
        }
        Need::ReadAudit => {
            // The audit log names every service: a restricted admin token may not read it.
            let unrestricted_admin =
                principal.has_scope(Scope::Admin) && principal.is_unrestricted();
            if is_admin || principal.has_role(Role::Auditor) || unrestricted_admin {
                Decision::Allow(Visibility::everything())
            } else {
                refuse(principal, "the `auditor` or `admin` role")
            }
        }
        Need::SignedIn => match principal.kind {
            PrincipalKind::Anonymous => refuse(principal, "signing in"),
            _ => Decision::Allow(token_reach),
        },
    }
}

/// 401 for a caller without credentials, 403 for one whose credentials are not enough.
fn refuse(principal: &Principal, what: &str) -> Decision {
    Decision::Deny(match principal.kind {
        // No credentials were offered (the local operator of an open server offered none).
        PrincipalKind::Anonymous | PrincipalKind::Local => Refusal {
            kind: RefusalKind::Unauthenticated,
            reason: format!("this needs {what}: sign in, or send `Authorization: Bearer <token>`"),
        },
        _ => Refusal {
            kind: RefusalKind::Forbidden,
            reason: format!("`{}` may not do this: it needs {what}", principal.id),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn policy() -> Policy {
        Policy {
            ingest_open: false,
            deploys_open: false,
            ownership: Ownership::new([
                ("checkout".to_owned(), "payments".to_owned()),
                ("cart".to_owned(), "payments".to_owned()),
                ("search".to_owned(), "discovery".to_owned()),
            ]),
        }
    }

    /// `A` allow everything, `S` allow some services (listed), `401`, `403`.
    fn outcome(decision: &Decision) -> String {
        match decision {
            Decision::Allow(v) if v.is_everything() => "A".into(),
            Decision::Allow(v) => format!(
                "S{:?}",
                v.services.clone().unwrap_or_default().into_iter().collect::<Vec<_>>()
            ),
            Decision::Deny(Refusal { kind: RefusalKind::Unauthenticated, .. }) => "401".into(),
            Decision::Deny(Refusal { kind: RefusalKind::Forbidden, .. }) => "403".into(),
        }
    }

    #[test]
    fn decision_table() {
        let person = |roles: &[Role], teams: &[&str]| {
            Principal::person("p@example.test", roles.iter().copied().collect(), set(teams))
        };
        let token = |scopes: &[Scope], services: Option<&[&str]>| {
            Principal::token(
                "token:sbt_x",
                scopes.iter().copied().collect(),
                services.map(set),
                None,
            )
        };
        let principals: Vec<(&str, Principal)> = vec![
            ("anonymous", Principal::anonymous()),
            ("local", Principal::local()),
            ("admin", person(&[Role::Admin], &[])),
            ("lead", person(&[Role::OncallLead], &[])),
            ("payments", person(&[], &["payments"])),
            ("no-team", person(&[], &[])),
            ("auditor", person(&[Role::Auditor], &[])),
            ("ingest", token(&[Scope::Ingest], None)),
            ("deploy", token(&[Scope::Deploy], None)),
            ("read", token(&[Scope::Read], None)),
            ("read-cart", token(&[Scope::Read], Some(&["cart"]))),
            ("admin-token", token(&[Scope::Admin], None)),
            ("revert-cart", token(&[Scope::Revert], Some(&["cart"]))),
        ];
        let needs = [
            Need::Public,
            Need::ForgeSignature,
            Need::Ingest,
            Need::ReportDeploy,
            Need::ReadData,
            Need::ChangeFinding,
            Need::ProposeRevert,
            Need::ManageTokens,
            Need::ReadAudit,
            Need::SignedIn,
        ];
        let mut table = String::new();
        for (name, principal) in &principals {
            let row: Vec<String> =
                needs.iter().map(|need| outcome(&authorize(principal, *need, &policy()))).collect();
            table += &format!("{name:<12} {}\n", row.join(" "));
        }
        let expected = "\
anonymous    A A 401 401 401 401 401 401 401 401
local        A A 401 401 A A A A A A
admin        A A 403 403 A A A A A A
lead         A A 403 403 A A A 403 403 A
payments     A A 403 403 S[\"cart\", \"checkout\"] S[\"cart\", \"checkout\"] S[\"cart\", \"checkout\"] 403 403 A
no-team      A A 403 403 S[] S[] S[] 403 403 A
auditor      A A 403 403 S[] S[] S[] 403 A A
ingest       A A A 403 403 403 403 403 403 A
deploy       A A 403 A 403 403 403 403 403 A
read         A A 403 403 A 403 403 403 403 A
read-cart    A A 403 403 S[\"cart\"] 403 403 403 403 S[\"cart\"]
admin-token  A A 403 403 A A 403 A A A
revert-cart  A A 403 403 403 403 S[\"cart\"] 403 403 S[\"cart\"]
";
        assert_eq!(table, expected, "\n{table}");
    }

    #[test]
    fn open_ingest_and_deploys_need_no_token() {
        let policy = Policy { ingest_open: true, deploys_open: true, ..policy() };
        for need in [Need::Ingest, Need::ReportDeploy] {
            assert_eq!(outcome(&authorize(&Principal::anonymous(), need, &policy)), "A");
            // A token sent through the open door keeps its restriction (issue 20, item 2).
            let restricted = Principal::token(
                "token:sbt_x",
                [Scope::Read].into_iter().collect(),
                Some(set(&["cart"])),
                None,
            );
            assert_eq!(outcome(&authorize(&restricted, need, &policy)), "S[\"cart\"]");
        }
    }

    #[test]
    fn visibility_checks_services_and_environments() {
        let v = Visibility { services: Some(set(&["cart"])), environments: Some(set(&["prod"])) };
        assert!(v.allows("cart", Some("prod")));
        assert!(!v.allows("cart", Some("staging")));
        assert!(!v.allows("cart", None));
        assert!(!v.allows("search", Some("prod")));
        assert!(Visibility::everything().allows("anything", None));
    }
}
