//! From a verified identity (OIDC claims or a proxy's assertion) to a [`Principal`]: the
//! groups claim mapped to roles and teams as the configuration says.

use std::collections::BTreeSet;

use crate::jwt::Claims;
use crate::policy::{Principal, Role};

/// How groups become roles and teams.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentityMapping {
    /// The claim holding the person's groups (`groups` for most providers).
    pub groups_claim: String,
    pub admin_groups: Vec<String>,
    pub oncall_lead_groups: Vec<String>,
    pub auditor_groups: Vec<String>,
    /// (team, the groups whose members belong to it).
    pub teams: Vec<(String, Vec<String>)>,
}

impl IdentityMapping {
    /// The name a person is known by in the audit log: email, else preferred username,
    /// else the subject.
    pub fn person_id(claims: &Claims) -> String {
        claims
            .string("email")
            .or_else(|| claims.string("preferred_username"))
            .unwrap_or(&claims.subject)
            .to_owned()
    }

    pub fn groups(&self, claims: &Claims) -> Vec<String> {
        claims.strings(&self.groups_claim)
    }

    /// The principal of a person with `id` in `groups`.
    pub fn principal(&self, id: &str, groups: &[String]) -> Principal {
        let member = |wanted: &[String]| wanted.iter().any(|g| groups.contains(g));
        let mut roles = BTreeSet::new();
        for (role, wanted) in [
            (Role::Admin, &self.admin_groups),
            (Role::OncallLead, &self.oncall_lead_groups),
            (Role::Auditor, &self.auditor_groups),
        ] {
            if member(wanted) {
                roles.insert(role);
            }
        }
        let teams = self
            .teams
            .iter()
            .filter(|(_, wanted)| member(wanted))
            .map(|(team, _)| team.clone())
            .collect();
        Principal::person(id, roles, teams)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_map_to_roles_and_teams() {
        let mapping = IdentityMapping {
            groups_claim: "groups".into(),
            admin_groups: vec!["sre-admins".into()],
            oncall_lead_groups: vec!["oncall-leads".into()],
            auditor_groups: vec!["security".into()],
            teams: vec![
                ("payments".into(), vec!["payments-eng".into()]),
                ("discovery".into(), vec!["search-eng".into(), "ml".into()]),
            ],
        };
        let p = mapping.principal("bob", &["payments-eng".into(), "ml".into(), "security".into()]);
        assert_eq!(p.roles, BTreeSet::from([Role::Engineer, Role::Auditor]));
        assert_eq!(p.teams, BTreeSet::from(["discovery".to_owned(), "payments".to_owned()]));
        let lead = mapping.principal("lea", &["oncall-leads".into()]);
        assert!(lead.has_role(Role::OncallLead) && lead.teams.is_empty());
        assert_eq!(mapping.principal("x", &[]).roles, BTreeSet::from([Role::Engineer]));
    }
}
