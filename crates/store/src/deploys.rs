//! Deploys in the metadata database: reported ones (`record_deploy`, merged with a deploy
//! the spans inferred for the same version; `record_forge_deploy`, the same once per forge
//! event and service), inferred ones (the first spans of a version, in the catalog's
//! transaction, or a forge deploy of their commit renamed to their version), each read with
//! its predecessor; and forgetting a deploy's evaluation when its start moves. Changes and findings both call here; nothing here calls
//! them.

use model::{Deploy, DeploySource, ForgeEvent};

use crate::sql::{Executor, Row, args};
use crate::{SpanStore, StoreError};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct VersionKey {
    pub(crate) service: String,
    pub(crate) environment: String,
    pub(crate) version: String,
}

/// First and last span start seen for a catalog key, and how many spans.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Seen {
    pub(crate) first_unix_nanos: u64,
    pub(crate) last_unix_nanos: u64,
    pub(crate) num_spans: u64,
}

impl Seen {
    pub(crate) fn new(unix_nanos: u64) -> Seen {
        Seen { first_unix_nanos: unix_nanos, last_unix_nanos: unix_nanos, num_spans: 1 }
    }

    pub(crate) fn add(&mut self, other: Seen) {
        self.first_unix_nanos = self.first_unix_nanos.min(other.first_unix_nanos);
        self.last_unix_nanos = self.last_unix_nanos.max(other.last_unix_nanos);
        self.num_spans += other.num_spans;
    }
}

impl SpanStore {
    /// Records an explicit deploy. If spans already announced this version (an inferred
    /// deploy that is still the service's latest of that version), the two merge; a repeated
    /// report of the current deploy updates it instead of adding another.
    pub fn record_deploy(&self, deploy: &NewDeploy) -> Result<Deploy, StoreError> {
        let id = self.metadata.write(|db| record(db, deploy))?;
        self.deploy(id as u64)?.ok_or_else(|| StoreError::Metadata("deploy vanished".into()))
    }

    /// Records a deploy a forge event reported ([`NewDeploy::event`]), by the rules of
    /// [`SpanStore::record_deploy`], once per integration, event and service: a redelivery,
    /// or a second success of the same deployment, records nothing and answers `None`.
    pub fn record_forge_deploy(&self, deploy: &NewDeploy) -> Result<Option<Deploy>, StoreError> {
        let event = deploy
            .event
            .as_ref()
            .ok_or_else(|| StoreError::Metadata("a forge deploy without its event".into()))?;
        let key = format!("{}:{}", event.kind, event.id);
        let id = self.metadata.write(|db| {
            let seen: Option<i64> = db.query_value(
                "SELECT deploy_id FROM forge_deploy_events
                 WHERE integration = ?1 AND event = ?2 AND service = ?3",
                args![event.integration, key, deploy.service],
            )?;
            if seen.is_some() {
                return Ok(None);
            }
            let id = record(db, deploy)?;
            // No `ON CONFLICT`: a replica recording the same event at the same moment fails
            // this transaction, and the forge's retry finds the event recorded.
            db.execute(
                "INSERT INTO forge_deploy_events (integration, event, service, deploy_id)
                 VALUES (?1, ?2, ?3, ?4)",
                args![event.integration, key, deploy.service, id],
            )?;
            Ok(Some(id))
        })?;
        match id {
            Some(id) => self.deploy(id as u64),
            None => Ok(None),
        }
    }

    /// Deploys newest first, optionally for one service and environment, each with its
    /// predecessor (the deploy of the same service and environment before it).
    pub fn deploys(
        &self,
        service: Option<&str>,
        environment: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Deploy>, StoreError> {
        let mut deploys: Vec<Deploy> = self.metadata.read(|db| {
            db.query_map(
                "SELECT * FROM deploys
                 WHERE (CAST(?1 AS TEXT) IS NULL OR service = ?1)
                   AND (CAST(?2 AS TEXT) IS NULL OR environment = ?2)
                 ORDER BY service, environment, started_at_unix_nanos, id",
                args![service, environment],
                read_deploy,
            )
        })?;
        for i in 1..deploys.len() {
            let (before, after) = deploys.split_at_mut(i);
            let (previous, current) = (&before[i - 1], &mut after[0]);
            if previous.service == current.service && previous.environment == current.environment {
                current.previous_id = Some(previous.id);
            }
        }
        deploys.sort_by_key(|d| std::cmp::Reverse((d.started_at_unix_nanos, d.id)));
        deploys.truncate(limit);
        Ok(deploys)
    }

    pub fn deploy(&self, id: u64) -> Result<Option<Deploy>, StoreError> {
        let found = self.metadata.read(|db| {
            db.query_opt("SELECT * FROM deploys WHERE id = ?1", args![id])?
                .map(|row| read_deploy(&row))
                .transpose()
        })?;
        let Some(found) = found else { return Ok(None) };
        let siblings = self.deploys(Some(&found.service), Some(&found.environment), usize::MAX)?;
        Ok(siblings.into_iter().find(|d| d.id == id))
    }
}

/// Merges a reported deploy into the version's deploy when spans announced it first (an
/// inferred deploy) or when it repeats the current deploy; otherwise adds it.
fn record(db: &mut dyn Executor, deploy: &NewDeploy) -> Result<i64, StoreError> {
    let latest: Option<i64> = db.query_value(
        "SELECT id FROM deploys WHERE service = ?1 AND environment = ?2
         ORDER BY started_at_unix_nanos DESC, id DESC LIMIT 1",
        args![deploy.service, deploy.environment],
    )?;
    let same_version = db
        .query_opt(
            "SELECT id, source, started_at_unix_nanos FROM deploys
             WHERE service = ?1 AND environment = ?2 AND version = ?3
             ORDER BY started_at_unix_nanos DESC, id DESC LIMIT 1",
            args![deploy.service, deploy.environment, deploy.version],
        )?
        .map(|row| -> Result<(i64, String, i64), StoreError> {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })
        .transpose()?;
    // Merge when the version's deploy is inferred (spans arrived before CI reported),
    // or when this repeats the report of the deploy that is current.
    let merge_into = match (&same_version, latest) {
        (Some((id, source, start)), _) if source == DeploySource::Inferred.as_str() => {
            Some((*id, *start))
        }
        (Some((id, _, start)), Some(latest_id)) if *id == latest_id => Some((*id, *start)),
        _ => None,
    };
    let event = deploy.event.as_ref();
    let event_forge = event.map(|e| e.forge.as_str());
    if let Some((id, old_start)) = merge_into {
        // A forge says when it finished deploying; spans that came first show the version
        // live earlier, so a forge event never moves a start later.
        let start = match event {
            Some(_) => (deploy.started_at_unix_nanos as i64).min(old_start),
            None => deploy.started_at_unix_nanos as i64,
        };
        if old_start != start {
            reset_evaluation(db, id)?;
        }
        db.execute(
            "UPDATE deploys SET
               commit_sha = coalesce(?2, commit_sha),
               repository = coalesce(?3, repository),
               started_at_unix_nanos = ?4,
               finished_at_unix_nanos = coalesce(?5, finished_at_unix_nanos),
               deployer = coalesce(?6, deployer),
               is_rollback = ?7,
               url = coalesce(?8, url),
               source = CASE WHEN source = 'explicit' THEN 'explicit' ELSE ?9 END,
               event_integration = coalesce(?10, event_integration),
               event_forge = coalesce(?11, event_forge),
               event_kind = coalesce(?12, event_kind),
               event_id = coalesce(?13, event_id),
               event_url = coalesce(?14, event_url)
             WHERE id = ?1",
            args![
                id,
                deploy.commit,
                deploy.repository,
                start,
                deploy.finished_at_unix_nanos,
                deploy.deployer,
                deploy.is_rollback,
                deploy.url,
                DeploySource::Merged.as_str(),
                event.map(|e| e.integration.as_str()),
                event_forge,
                event.map(|e| e.kind.as_str()),
                event.map(|e| e.id.as_str()),
                event.and_then(|e| e.url.as_deref()),
            ],
        )?;
        return Ok(id);
    }
    db.query_value(
        "INSERT INTO deploys (service, environment, version, commit_sha, repository,
           started_at_unix_nanos, finished_at_unix_nanos, deployer, is_rollback, url,
           source, event_integration, event_forge, event_kind, event_id, event_url)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)
         RETURNING id",
        args![
            deploy.service,
            deploy.environment,
            deploy.version,
            deploy.commit,
            deploy.repository,
            deploy.started_at_unix_nanos,
            deploy.finished_at_unix_nanos,
            deploy.deployer,
            deploy.is_rollback,
            deploy.url,
            DeploySource::Explicit.as_str(),
            event.map(|e| e.integration.as_str()),
            event_forge,
            event.map(|e| e.kind.as_str()),
            event.map(|e| e.id.as_str()),
            event.and_then(|e| e.url.as_deref()),
        ],
    )?
    .ok_or_else(|| StoreError::Metadata("an insert returned no id".into()))
}

/// Inside the catalog transaction: the first spans of a version in a (service, environment)
/// infer its deploy; if CI already reported it, the explicit deploy is marked as seen.
///
/// A forge deploy names a commit, not always the version its build stamps on spans: when it
/// was recorded under a name no span carries (the sha, the release's tag) and this version's
/// spans name its commit, the forge deploy takes this version instead of a second deploy
/// being inferred.
pub(crate) fn infer_deploy(
    db: &mut dyn Executor,
    key: &VersionKey,
    seen: &Seen,
    commit: Option<&str>,
) -> Result<(), StoreError> {
    if key.version.is_empty() {
        return Ok(());
    }
    let existing = db.query_opt(
        "SELECT id, source FROM deploys WHERE service = ?1 AND environment = ?2 AND version = ?3
         ORDER BY started_at_unix_nanos DESC, id DESC LIMIT 1",
        args![key.service, key.environment, key.version],
    )?;
    match existing {
        Some(row) if row.get::<String>(1)? == DeploySource::Explicit.as_str() => {
            db.execute(
                "UPDATE deploys SET source = ?2 WHERE id = ?1",
                args![row.get::<i64>(0)?, DeploySource::Merged.as_str()],
            )?;
        }
        Some(_) => {}
        None if let Some((id, start)) = forge_deploy_of_commit(db, key, commit)? => {
            let start = start.min(seen.first_unix_nanos as i64);
            reset_evaluation(db, id)?;
            db.execute(
                "UPDATE deploys SET version = ?2, source = ?3, started_at_unix_nanos = ?4
                 WHERE id = ?1",
                args![id, key.version, DeploySource::Merged.as_str(), start],
            )?;
        }
        None => {
            db.execute(
                "INSERT INTO deploys (service, environment, version, started_at_unix_nanos,
                   is_rollback, source)
                 VALUES (?1, ?2, ?3, ?4, 0, ?5)",
                args![
                    key.service,
                    key.environment,
                    key.version,
                    seen.first_unix_nanos,
                    DeploySource::Inferred.as_str()
                ],
            )?;
        }
    }
    Ok(())
}

/// The latest forge deploy of the key's service and environment that shipped `commit` under
/// a version no span has carried: its id and start.
fn forge_deploy_of_commit(
    db: &mut dyn Executor,
    key: &VersionKey,
    commit: Option<&str>,
) -> Result<Option<(i64, i64)>, StoreError> {
    let Some(commit) = commit.filter(|c| model::looks_like_sha(c)) else { return Ok(None) };
    let commit = commit.to_ascii_lowercase();
    db.query_opt(
        "SELECT id, started_at_unix_nanos FROM deploys d
         WHERE service = ?1 AND environment = ?2 AND event_kind IS NOT NULL
           AND (commit_sha = ?3 OR commit_sha LIKE ?3 || '%')
           AND NOT EXISTS (SELECT 1 FROM service_versions v
                           WHERE v.service = d.service AND v.environment = d.environment
                             AND v.version = d.version)
         ORDER BY started_at_unix_nanos DESC, id DESC LIMIT 1",
        args![key.service, key.environment, commit],
    )?
    .map(|row| Ok((row.get(0)?, row.get(1)?)))
    .transpose()
}

pub(crate) fn read_deploy(row: &Row) -> Result<Deploy, StoreError> {
    let source: String = row.get("source")?;
    Ok(Deploy {
        id: row.get("id")?,
        service: row.get("service")?,
        environment: row.get("environment")?,
        version: row.get("version")?,
        commit: row.get("commit_sha")?,
        repository: row.get("repository")?,
        started_at_unix_nanos: row.get("started_at_unix_nanos")?,
        finished_at_unix_nanos: row.get("finished_at_unix_nanos")?,
        deployer: row.get("deployer")?,
        is_rollback: row.get("is_rollback")?,
        url: row.get("url")?,
        source: DeploySource::parse(&source).unwrap_or(DeploySource::Explicit),
        event: read_event(row)?,
        previous_id: None,
    })
}

fn read_event(row: &Row) -> Result<Option<ForgeEvent>, StoreError> {
    let forge: Option<String> = row.get("event_forge")?;
    let Some(forge) = forge.as_deref().and_then(model::ForgeKind::parse) else {
        return Ok(None);
    };
    Ok(Some(ForgeEvent {
        integration: row.get::<Option<String>>("event_integration")?.unwrap_or_default(),
        forge,
        kind: row.get::<Option<String>>("event_kind")?.unwrap_or_default(),
        id: row.get::<Option<String>>("event_id")?.unwrap_or_default(),
        url: row.get("event_url")?,
    }))
}

/// Forgets a deploy's evaluation and findings (its start moved, so its windows did).
pub(crate) fn reset_evaluation(db: &mut dyn Executor, deploy_id: i64) -> Result<(), StoreError> {
    crate::outbox::supersede_for_deploy(db, deploy_id)?;
    db.execute("DELETE FROM findings WHERE deploy_id = ?1", args![deploy_id])?;
    db.execute("DELETE FROM deploy_evaluations WHERE deploy_id = ?1", args![deploy_id])?;
    Ok(())
}

/// A deploy as reported through the API.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NewDeploy {
    pub service: String,
    pub environment: String,
    pub version: String,
    pub commit: Option<String>,
    pub repository: Option<String>,
    pub started_at_unix_nanos: u64,
    pub finished_at_unix_nanos: Option<u64>,
    pub deployer: Option<String>,
    pub is_rollback: bool,
    pub url: Option<String>,
    /// The forge event that reported it ([`SpanStore::record_forge_deploy`]).
    pub event: Option<ForgeEvent>,
}
