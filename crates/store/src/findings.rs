//! Findings (one metric of one operation of one deploy) and how far detection got with each
//! deploy, in the embedded metadata store.
//!
//! A finding's verdict and numbers are detection's to rewrite at every look until it is
//! final; its status (open, acknowledged, resolved) belongs to people and to auto-resolution,
//! and an update from detection never resets it.

use model::Deploy;
use rusqlite::{OptionalExtension, Row, params};

use crate::changes::read_deploy;
use crate::{SpanStore, StoreError};

fn sql(e: rusqlite::Error) -> StoreError {
    StoreError::Metadata(e.to_string())
}

/// A JSON array of strings, for `IN (SELECT value FROM json_each(?))`.
fn json_list(items: &[String]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|item| {
            let mut out = String::from('"');
            for c in item.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                    c => out.push(c),
                }
            }
            out.push('"');
            out
        })
        .collect();
    format!("[{}]", quoted.join(","))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FindingStatus {
    Open,
    Acknowledged,
    Resolved,
}

impl FindingStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            FindingStatus::Open => "open",
            FindingStatus::Acknowledged => "acknowledged",
            FindingStatus::Resolved => "resolved",
        }
    }

    pub fn parse(text: &str) -> Option<FindingStatus> {
        match text {
            "open" => Some(FindingStatus::Open),
            "acknowledged" => Some(FindingStatus::Acknowledged),
            "resolved" => Some(FindingStatus::Resolved),
            _ => None,
        }
    }
}

/// What detection writes for one finding at one look.
#[derive(Debug, Clone, PartialEq)]
pub struct FindingUpdate {
    pub deploy_id: u64,
    pub service: String,
    pub environment: String,
    pub operation: String,
    pub span_kind: String,
    pub metric: String,
    pub verdict: String,
    pub is_final: bool,
    pub look_minutes: u32,
    pub detail: String,
    pub baseline_stats: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoredFinding {
    pub id: u64,
    pub deploy_id: u64,
    pub service: String,
    pub environment: String,
    pub operation: String,
    pub span_kind: String,
    pub metric: String,
    pub verdict: String,
    pub status: FindingStatus,
    pub is_final: bool,
    pub look_minutes: u32,
    pub first_seen_unix_nanos: u64,
    pub updated_unix_nanos: u64,
    pub status_changed_unix_nanos: Option<u64>,
    pub status_by: Option<String>,
    pub status_note: Option<String>,
    pub detail: String,
    /// Exemplars, evidence, suspects and rollback draft, once regressed.
    pub explanation: Option<String>,
    pub explained: bool,
    pub baseline_stats: Vec<u8>,
}

/// Which findings to list; every field narrows.
#[derive(Debug, Clone, Default)]
pub struct FindingFilter {
    pub deploy_id: Option<u64>,
    pub service: Option<String>,
    pub environment: Option<String>,
    pub verdict: Option<String>,
    pub status: Option<FindingStatus>,
    /// First seen at or after.
    pub since_unix_nanos: Option<u64>,
    /// Only findings with an id below this (paging, newest first).
    pub before_id: Option<u64>,
    pub limit: usize,
    /// The caller's reach: only these services (`None`: all).
    pub allowed_services: Option<Vec<String>>,
    /// The caller's reach: only these environments (`None`: all).
    pub allowed_environments: Option<Vec<String>>,
}

/// How far detection got with a deploy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Evaluation {
    pub look_minutes: u32,
    pub is_final: bool,
}

fn read_finding(row: &Row<'_>) -> rusqlite::Result<StoredFinding> {
    Ok(StoredFinding {
        id: row.get::<_, i64>("id")? as u64,
        deploy_id: row.get::<_, i64>("deploy_id")? as u64,
        service: row.get("service")?,
        environment: row.get("environment")?,
        operation: row.get("operation")?,
        span_kind: row.get("span_kind")?,
        metric: row.get("metric")?,
        verdict: row.get("verdict")?,
        status: FindingStatus::parse(&row.get::<_, String>("status")?)
            .unwrap_or(FindingStatus::Open),
        is_final: row.get("is_final")?,
        look_minutes: row.get::<_, i64>("look_minutes")? as u32,
        first_seen_unix_nanos: row.get::<_, i64>("first_seen_unix_nanos")? as u64,
        updated_unix_nanos: row.get::<_, i64>("updated_unix_nanos")? as u64,
        status_changed_unix_nanos: row
            .get::<_, Option<i64>>("status_changed_unix_nanos")?
            .map(|t| t as u64),
        status_by: row.get("status_by")?,
        status_note: row.get("status_note")?,
        detail: row.get("detail")?,
        explanation: row.get("explanation")?,
        explained: row.get("explained")?,
        baseline_stats: row.get("baseline_stats")?,
    })
}

impl SpanStore {
    /// Writes one look's findings and the deploy's evaluation in one transaction. A final
    /// finding is never rewritten; a changed verdict restarts `first_seen` and drops the
    /// explanation (it explained another verdict). Returns false, writing nothing, when the
    /// deploy's start moved since `deploy` was read (a late CI report merged into an inferred
    /// deploy and reset it): the look measured windows that no longer apply.
    pub fn record_look(
        &self,
        deploy: &Deploy,
        updates: &[FindingUpdate],
        evaluation: Evaluation,
        now_unix_nanos: u64,
    ) -> Result<bool, StoreError> {
        let deploy_id = deploy.id;
        let mut conn = self.metadata.conn();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(sql)?;
        let start: Option<i64> = tx
            .query_row(
                "SELECT started_at_unix_nanos FROM deploys WHERE id = ?1",
                [deploy_id as i64],
                |row| row.get(0),
            )
            .optional()
            .map_err(sql)?;
        if start != Some(deploy.started_at_unix_nanos as i64) {
            return Ok(false);
        }
        for update in updates {
            let existing: Option<(i64, String, bool)> = tx
                .query_row(
                    "SELECT id, verdict, is_final FROM findings
                     WHERE deploy_id = ?1 AND operation = ?2 AND span_kind = ?3 AND metric = ?4",
                    params![
                        update.deploy_id as i64,
                        update.operation,
                        update.span_kind,
                        update.metric
                    ],
                    |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
                )
                .optional()
                .map_err(sql)?;
            match existing {
                Some((_, _, true)) => {}
                Some((id, verdict, false)) => {
                    let changed = verdict != update.verdict;
                    tx.execute(
                        "UPDATE findings SET verdict = ?2, is_final = ?3, look_minutes = ?4,
                           first_seen_unix_nanos = CASE WHEN ?8 THEN ?5
                             ELSE first_seen_unix_nanos END,
                           explanation = CASE WHEN ?8 THEN NULL ELSE explanation END,
                           explained = CASE WHEN ?8 THEN 0 ELSE explained END,
                           updated_unix_nanos = ?5, detail = ?6, baseline_stats = ?7
                         WHERE id = ?1",
                        params![
                            id,
                            update.verdict,
                            update.is_final,
                            update.look_minutes,
                            now_unix_nanos as i64,
                            update.detail,
                            update.baseline_stats,
                            changed
                        ],
                    )
                    .map_err(sql)?;
                }
                None => {
                    tx.execute(
                        "INSERT INTO findings (deploy_id, service, environment, operation,
                           span_kind, metric, verdict, status, is_final, look_minutes,
                           first_seen_unix_nanos, updated_unix_nanos, detail, baseline_stats)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'open', ?8, ?9, ?10, ?10, ?11, ?12)",
                        params![
                            update.deploy_id as i64,
                            update.service,
                            update.environment,
                            update.operation,
                            update.span_kind,
                            update.metric,
                            update.verdict,
                            update.is_final,
                            update.look_minutes,
                            now_unix_nanos as i64,
                            update.detail,
                            update.baseline_stats
                        ],
                    )
                    .map_err(sql)?;
                }
            }
        }
        tx.execute(
            "INSERT INTO deploy_evaluations (deploy_id, look_minutes, is_final, updated_unix_nanos)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT DO UPDATE SET look_minutes = excluded.look_minutes,
               is_final = excluded.is_final, updated_unix_nanos = excluded.updated_unix_nanos",
            params![
                deploy_id as i64,
                evaluation.look_minutes,
                evaluation.is_final,
                now_unix_nanos as i64
            ],
        )
        .map_err(sql)?;
        tx.commit().map_err(sql)?;
        Ok(true)
    }

    /// Regressed findings of a deploy whose explanation is missing or incomplete.
    pub fn findings_to_explain(&self, deploy_id: u64) -> Result<Vec<StoredFinding>, StoreError> {
        let conn = self.metadata.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT * FROM findings
                 WHERE deploy_id = ?1 AND verdict = 'regressed' AND explained = 0 ORDER BY id",
            )
            .map_err(sql)?;
        stmt.query_map([deploy_id as i64], read_finding)
            .map_err(sql)?
            .collect::<Result<_, _>>()
            .map_err(sql)
    }

    /// Stores a regressed finding's explanation; `complete` false retries it at the next look
    /// (say, the mirror had not fetched the deploy's commits yet).
    pub fn set_finding_explanation(
        &self,
        id: u64,
        explanation: &str,
        complete: bool,
    ) -> Result<(), StoreError> {
        self.metadata
            .conn()
            .execute(
                "UPDATE findings SET explanation = ?2, explained = ?3 WHERE id = ?1",
                params![id as i64, explanation, complete],
            )
            .map_err(sql)?;
        Ok(())
    }

    pub fn evaluation(&self, deploy_id: u64) -> Result<Option<Evaluation>, StoreError> {
        self.metadata
            .conn()
            .query_row(
                "SELECT look_minutes, is_final FROM deploy_evaluations WHERE deploy_id = ?1",
                [deploy_id as i64],
                |row| {
                    Ok(Evaluation {
                        look_minutes: row.get::<_, i64>(0)? as u32,
                        is_final: row.get(1)?,
                    })
                },
            )
            .optional()
            .map_err(sql)
    }

    /// Deploys started at or after `since` whose evaluation is not final, oldest first.
    pub fn deploys_to_evaluate(&self, since_unix_nanos: u64) -> Result<Vec<Deploy>, StoreError> {
        let pending: Vec<(i64, String, String)> = {
            let conn = self.metadata.conn();
            let mut stmt = conn
                .prepare_cached(
                    "SELECT d.id, d.service, d.environment FROM deploys d
                     LEFT JOIN deploy_evaluations e ON e.deploy_id = d.id
                     WHERE d.started_at_unix_nanos >= ?1 AND coalesce(e.is_final, 0) = 0",
                )
                .map_err(sql)?;
            stmt.query_map([since_unix_nanos as i64], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })
            .map_err(sql)?
            .collect::<Result<_, _>>()
            .map_err(sql)?
        };
        // Each (service, environment) is listed once, with predecessors worked out.
        let groups: std::collections::BTreeSet<(&str, &str)> =
            pending.iter().map(|(_, s, e)| (s.as_str(), e.as_str())).collect();
        let wanted: std::collections::HashSet<u64> =
            pending.iter().map(|(id, _, _)| *id as u64).collect();
        let mut deploys = Vec::with_capacity(pending.len());
        for (service, environment) in groups {
            let siblings = self.deploys(Some(service), Some(environment), usize::MAX)?;
            deploys.extend(siblings.into_iter().filter(|d| wanted.contains(&d.id)));
        }
        deploys.sort_by_key(|d| (d.started_at_unix_nanos, d.id));
        Ok(deploys)
    }

    /// The deploy of the same service and environment that followed `deploy`, if any.
    pub fn next_deploy(&self, deploy: &Deploy) -> Result<Option<Deploy>, StoreError> {
        let conn = self.metadata.conn();
        conn.query_row(
            "SELECT * FROM deploys WHERE service = ?1 AND environment = ?2
               AND (started_at_unix_nanos > ?3 OR (started_at_unix_nanos = ?3 AND id > ?4))
             ORDER BY started_at_unix_nanos, id LIMIT 1",
            params![
                deploy.service,
                deploy.environment,
                deploy.started_at_unix_nanos as i64,
                deploy.id as i64
            ],
            read_deploy,
        )
        .optional()
        .map_err(sql)
    }

    pub fn finding(&self, id: u64) -> Result<Option<StoredFinding>, StoreError> {
        self.metadata
            .conn()
            .query_row("SELECT * FROM findings WHERE id = ?1", [id as i64], read_finding)
            .optional()
            .map_err(sql)
    }

    /// Findings newest first.
    pub fn findings(&self, filter: &FindingFilter) -> Result<Vec<StoredFinding>, StoreError> {
        let conn = self.metadata.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT * FROM findings
                 WHERE (?1 IS NULL OR service = ?1) AND (?2 IS NULL OR environment = ?2)
                   AND (?3 IS NULL OR verdict = ?3) AND (?4 IS NULL OR status = ?4)
                   AND (?5 IS NULL OR first_seen_unix_nanos >= ?5) AND (?6 IS NULL OR id < ?6)
                   AND (?8 IS NULL OR service IN (SELECT value FROM json_each(?8)))
                   AND (?9 IS NULL OR environment IN (SELECT value FROM json_each(?9)))
                   AND (?10 IS NULL OR deploy_id = ?10)
                 ORDER BY id DESC LIMIT ?7",
            )
            .map_err(sql)?;
        stmt.query_map(
            params![
                filter.service,
                filter.environment,
                filter.verdict,
                filter.status.map(FindingStatus::as_str),
                filter.since_unix_nanos.map(|t| t as i64),
                filter.before_id.map(|id| id as i64),
                filter.limit.min(i64::MAX as usize) as i64,
                filter.allowed_services.as_deref().map(json_list),
                filter.allowed_environments.as_deref().map(json_list),
                filter.deploy_id.map(|id| id as i64),
            ],
            read_finding,
        )
        .map_err(sql)?
        .collect::<Result<_, _>>()
        .map_err(sql)
    }

    /// Deploys with an explained regression that is still open, or whose status changed at or
    /// after `since_unix_nanos`: the ones whose notifications may be due.
    pub fn deploys_to_announce(&self, since_unix_nanos: u64) -> Result<Vec<u64>, StoreError> {
        let conn = self.metadata.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT DISTINCT deploy_id FROM findings
                 WHERE verdict = 'regressed' AND explanation IS NOT NULL
                   AND (status != 'resolved' OR status_changed_unix_nanos >= ?1)
                 ORDER BY deploy_id",
            )
            .map_err(sql)?;
        stmt.query_map([since_unix_nanos as i64], |row| row.get::<_, i64>(0).map(|v| v as u64))
            .map_err(sql)?
            .collect::<Result<_, _>>()
            .map_err(sql)
    }

    /// Regressed findings not resolved yet, of the deploys of the same service and
    /// environment before `deploy`: the ones it may resolve.
    pub fn unresolved_regressions(
        &self,
        deploy: &Deploy,
    ) -> Result<Vec<StoredFinding>, StoreError> {
        let conn = self.metadata.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT f.* FROM findings f JOIN deploys d ON d.id = f.deploy_id
                 WHERE f.service = ?1 AND f.environment = ?2
                   AND f.verdict = 'regressed' AND f.status != 'resolved'
                   AND (d.started_at_unix_nanos < ?3 OR (d.started_at_unix_nanos = ?3 AND d.id < ?4))
                 ORDER BY f.id",
            )
            .map_err(sql)?;
        stmt.query_map(
            params![
                deploy.service,
                deploy.environment,
                deploy.started_at_unix_nanos as i64,
                deploy.id as i64
            ],
            read_finding,
        )
        .map_err(sql)?
        .collect::<Result<_, _>>()
        .map_err(sql)
    }

    /// Sets a finding's status; `None` when there is no such finding.
    pub fn set_finding_status(
        &self,
        id: u64,
        status: FindingStatus,
        by: &str,
        note: Option<&str>,
        now_unix_nanos: u64,
    ) -> Result<Option<StoredFinding>, StoreError> {
        let changed = self
            .metadata
            .conn()
            .execute(
                "UPDATE findings SET status = ?2, status_by = ?3, status_note = ?4,
                   status_changed_unix_nanos = ?5 WHERE id = ?1",
                params![id as i64, status.as_str(), by, note, now_unix_nanos as i64],
            )
            .map_err(sql)?;
        if changed == 0 {
            return Ok(None);
        }
        self.finding(id)
    }
}

/// Forgets a deploy's evaluation and findings (its start moved, so its windows did).
pub(crate) fn reset_evaluation(
    tx: &rusqlite::Transaction<'_>,
    deploy_id: i64,
) -> rusqlite::Result<()> {
    crate::outbox::supersede_for_deploy(tx, deploy_id)?;
    tx.execute("DELETE FROM findings WHERE deploy_id = ?1", [deploy_id])?;
    tx.execute("DELETE FROM deploy_evaluations WHERE deploy_id = ?1", [deploy_id])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{NewDeploy, SpanStore, StoreOptions};

    #[test]
    fn a_callers_reach_filters_findings_in_the_query() {
        let dir = tempfile::tempdir().unwrap();
        let store = SpanStore::open(dir.path(), StoreOptions::default()).unwrap();
        for (service, environment) in
            [("checkout", "prod"), ("search", "prod"), ("checkout", "staging")]
        {
            let deploy = store
                .record_deploy(&NewDeploy {
                    service: service.into(),
                    environment: environment.into(),
                    version: "2".into(),
                    commit: None,
                    repository: None,
                    started_at_unix_nanos: 1,
                    finished_at_unix_nanos: None,
                    deployer: None,
                    is_rollback: false,
                    url: None,
                })
                .unwrap();
            let update = FindingUpdate {
                deploy_id: deploy.id,
                service: service.into(),
                environment: environment.into(),
                operation: "GET \"/\"\\".into(),
                span_kind: "server".into(),
                metric: "latency_p95".into(),
                verdict: "regressed".into(),
                is_final: true,
                look_minutes: 2,
                detail: "{}".into(),
                baseline_stats: Vec::new(),
            };
            store
                .record_look(&deploy, &[update], Evaluation { look_minutes: 2, is_final: true }, 2)
                .unwrap();
        }
        let seen = |services: Option<&[&str]>, environments: Option<&[&str]>| {
            let list =
                |items: Option<&[&str]>| items.map(|i| i.iter().map(|s| s.to_string()).collect());
            let filter = FindingFilter {
                limit: 10,
                allowed_services: list(services),
                allowed_environments: list(environments),
                ..FindingFilter::default()
            };
            let mut found: Vec<String> = store
                .findings(&filter)
                .unwrap()
                .iter()
                .map(|f| format!("{}/{}", f.service, f.environment))
                .collect();
            found.sort();
            found
        };
        assert_eq!(seen(None, None).len(), 3);
        assert_eq!(seen(Some(&["checkout"]), None), ["checkout/prod", "checkout/staging"]);
        assert_eq!(seen(Some(&["checkout"]), Some(&["prod"])), ["checkout/prod"]);
        assert_eq!(seen(Some(&[]), None), Vec::<String>::new());
        // Names that need escaping inside the JSON list still match exactly.
        assert_eq!(seen(Some(&["search\"", "x\\"]), None), Vec::<String>::new());
    }
}
