//! Findings (one metric of one operation of one deploy) and how far detection got with each
//! deploy, in the metadata database.
//!
//! A finding's verdict and numbers are detection's to rewrite at every look until it is
//! final; its status (open, acknowledged, resolved) belongs to people and to auto-resolution,
//! and an update from detection never resets it.

use model::Deploy;

use crate::deploys::read_deploy;
use crate::sql::{Row, Value, args, in_list};
use crate::{SpanStore, StoreError};

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
    /// `major`, or `minor` for a move under the materiality floors.
    pub severity: String,
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
    /// `major`, or `minor` for a move under the materiality floors.
    pub severity: String,
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
    /// Only this severity (`major`: what incidents, alerts and comments are about).
    pub severity: Option<String>,
    /// Only regressions in this status: a status is people's attention, which only a
    /// regression asks for.
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

fn read_finding(row: &Row) -> Result<StoredFinding, StoreError> {
    Ok(StoredFinding {
        id: row.get("id")?,
        deploy_id: row.get("deploy_id")?,
        service: row.get("service")?,
        environment: row.get("environment")?,
        operation: row.get("operation")?,
        span_kind: row.get("span_kind")?,
        metric: row.get("metric")?,
        verdict: row.get("verdict")?,
        severity: row.get("severity")?,
        status: FindingStatus::parse(&row.get::<String>("status")?).unwrap_or(FindingStatus::Open),
        is_final: row.get("is_final")?,
        look_minutes: row.get("look_minutes")?,
        first_seen_unix_nanos: row.get("first_seen_unix_nanos")?,
        updated_unix_nanos: row.get("updated_unix_nanos")?,
        status_changed_unix_nanos: row.get("status_changed_unix_nanos")?,
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
        self.metadata.write(|db| {
            let start: Option<u64> = db.query_value(
                "SELECT started_at_unix_nanos FROM deploys WHERE id = ?1",
                args![deploy_id],
            )?;
            if start != Some(deploy.started_at_unix_nanos) {
                return Ok(false);
            }
            for update in updates {
                let existing = db.query_opt(
                    "SELECT id, verdict, is_final FROM findings
                     WHERE deploy_id = ?1 AND operation = ?2 AND span_kind = ?3 AND metric = ?4",
                    args![update.deploy_id, update.operation, update.span_kind, update.metric],
                )?;
                let Some(existing) = existing else {
                    db.execute(
                        "INSERT INTO findings (deploy_id, service, environment, operation,
                           span_kind, metric, verdict, status, is_final, look_minutes,
                           first_seen_unix_nanos, updated_unix_nanos, detail, baseline_stats,
                           severity)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'open', ?8, ?9, ?10, ?10, ?11, ?12,
                           ?13)",
                        args![
                            update.deploy_id,
                            update.service,
                            update.environment,
                            update.operation,
                            update.span_kind,
                            update.metric,
                            update.verdict,
                            update.is_final,
                            update.look_minutes,
                            now_unix_nanos,
                            update.detail,
                            update.baseline_stats,
                            update.severity
                        ],
                    )?;
                    continue;
                };
                if existing.get::<bool>(2)? {
                    continue;
                }
                let changed = existing.get::<String>(1)? != update.verdict;
                db.execute(
                    "UPDATE findings SET verdict = ?2, is_final = ?3, look_minutes = ?4,
                       first_seen_unix_nanos = CASE WHEN ?8 = 1 THEN ?5
                         ELSE first_seen_unix_nanos END,
                       explanation = CASE WHEN ?8 = 1 THEN NULL ELSE explanation END,
                       explained = CASE WHEN ?8 = 1 THEN 0 ELSE explained END,
                       updated_unix_nanos = ?5, detail = ?6, baseline_stats = ?7,
                       severity = ?9
                     WHERE id = ?1",
                    args![
                        existing.get::<i64>(0)?,
                        update.verdict,
                        update.is_final,
                        update.look_minutes,
                        now_unix_nanos,
                        update.detail,
                        update.baseline_stats,
                        changed,
                        update.severity
                    ],
                )?;
            }
            db.execute(
                "INSERT INTO deploy_evaluations (deploy_id, look_minutes, is_final, updated_unix_nanos)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (deploy_id) DO UPDATE SET look_minutes = excluded.look_minutes,
                   is_final = excluded.is_final, updated_unix_nanos = excluded.updated_unix_nanos",
                args![deploy_id, evaluation.look_minutes, evaluation.is_final, now_unix_nanos],
            )?;
            Ok(true)
        })
    }

    /// Regressed findings of a deploy whose explanation is missing or incomplete.
    pub fn findings_to_explain(&self, deploy_id: u64) -> Result<Vec<StoredFinding>, StoreError> {
        self.metadata.read(|db| {
            db.query_map(
                "SELECT * FROM findings
                 WHERE deploy_id = ?1 AND verdict = 'regressed' AND explained = 0 ORDER BY id",
                args![deploy_id],
                read_finding,
            )
        })
    }

    /// Stores a regressed finding's explanation; `complete` false retries it at the next look
    /// (say, the mirror had not fetched the deploy's commits yet).
    pub fn set_finding_explanation(
        &self,
        id: u64,
        explanation: &str,
        complete: bool,
    ) -> Result<(), StoreError> {
        self.metadata.write(|db| {
            db.execute(
                "UPDATE findings SET explanation = ?2, explained = ?3 WHERE id = ?1",
                args![id, explanation, complete],
            )
            .map(|_| ())
        })
    }

    pub fn evaluation(&self, deploy_id: u64) -> Result<Option<Evaluation>, StoreError> {
        self.metadata.read(|db| {
            db.query_opt(
                "SELECT look_minutes, is_final FROM deploy_evaluations WHERE deploy_id = ?1",
                args![deploy_id],
            )?
            .map(|row| Ok(Evaluation { look_minutes: row.get(0)?, is_final: row.get(1)? }))
            .transpose()
        })
    }

    /// Deploys started at or after `since` whose evaluation is not final, oldest first.
    pub fn deploys_to_evaluate(&self, since_unix_nanos: u64) -> Result<Vec<Deploy>, StoreError> {
        let pending: Vec<(u64, String, String)> = self.metadata.read(|db| {
            db.query_map(
                "SELECT d.id, d.service, d.environment FROM deploys d
                 LEFT JOIN deploy_evaluations e ON e.deploy_id = d.id
                 WHERE d.started_at_unix_nanos >= ?1 AND coalesce(e.is_final, 0) = 0",
                args![since_unix_nanos],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
        })?;
        // Each (service, environment) is listed once, with predecessors worked out.
        let groups: std::collections::BTreeSet<(&str, &str)> =
            pending.iter().map(|(_, s, e)| (s.as_str(), e.as_str())).collect();
        let wanted: std::collections::HashSet<u64> = pending.iter().map(|(id, _, _)| *id).collect();
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
        self.metadata.read(|db| {
            db.query_opt(
                "SELECT * FROM deploys WHERE service = ?1 AND environment = ?2
                   AND (started_at_unix_nanos > ?3 OR (started_at_unix_nanos = ?3 AND id > ?4))
                 ORDER BY started_at_unix_nanos, id LIMIT 1",
                args![deploy.service, deploy.environment, deploy.started_at_unix_nanos, deploy.id],
            )?
            .map(|row| read_deploy(&row))
            .transpose()
        })
    }

    pub fn finding(&self, id: u64) -> Result<Option<StoredFinding>, StoreError> {
        self.metadata.read(|db| {
            db.query_opt("SELECT * FROM findings WHERE id = ?1", args![id])?
                .map(|row| read_finding(&row))
                .transpose()
        })
    }

    /// Findings newest first.
    pub fn findings(&self, filter: &FindingFilter) -> Result<Vec<StoredFinding>, StoreError> {
        let mut sql = String::from(
            "SELECT * FROM findings
             WHERE (CAST(?1 AS TEXT) IS NULL OR service = ?1)
               AND (CAST(?2 AS TEXT) IS NULL OR environment = ?2)
               AND (CAST(?3 AS TEXT) IS NULL OR verdict = ?3)
               AND (CAST(?4 AS TEXT) IS NULL OR (status = ?4 AND verdict = 'regressed'))
               AND (CAST(?5 AS BIGINT) IS NULL OR first_seen_unix_nanos >= ?5)
               AND (CAST(?6 AS BIGINT) IS NULL OR id < ?6)
               AND (CAST(?8 AS BIGINT) IS NULL OR deploy_id = ?8)
               AND (CAST(?9 AS TEXT) IS NULL OR severity = ?9)",
        );
        let mut values: Vec<Value> = args![
            filter.service,
            filter.environment,
            filter.verdict,
            filter.status.map(FindingStatus::as_str),
            filter.since_unix_nanos,
            filter.before_id,
            filter.limit.min(i64::MAX as usize) as i64,
            filter.deploy_id,
            filter.severity,
        ]
        .to_vec();
        // The caller's reach, spelled out as placeholders.
        for (column, allowed) in
            [("service", &filter.allowed_services), ("environment", &filter.allowed_environments)]
        {
            if let Some(allowed) = allowed {
                let (list, more) = in_list(values.len() + 1, allowed);
                sql.push_str(&format!(" AND {column} IN ({list})"));
                values.extend(more);
            }
        }
        sql.push_str(" ORDER BY id DESC LIMIT ?7");
        self.metadata.read(|db| db.query_map(&sql, &values, read_finding))
    }

    /// Deploys with an explained regression that is still open, or whose status changed at or
    /// after `since_unix_nanos`: the ones whose notifications may be due.
    pub fn deploys_to_announce(&self, since_unix_nanos: u64) -> Result<Vec<u64>, StoreError> {
        self.metadata.read(|db| {
            db.query_map(
                "SELECT DISTINCT deploy_id FROM findings
                 WHERE verdict = 'regressed' AND explanation IS NOT NULL
                   AND (status != 'resolved' OR status_changed_unix_nanos >= ?1)
                 ORDER BY deploy_id",
                args![since_unix_nanos],
                |row| row.get(0),
            )
        })
    }

    /// Regressed findings not resolved yet, of the deploys of the same service and
    /// environment before `deploy`: the ones it may resolve.
    pub fn unresolved_regressions(
        &self,
        deploy: &Deploy,
    ) -> Result<Vec<StoredFinding>, StoreError> {
        self.metadata.read(|db| {
            db.query_map(
                "SELECT f.* FROM findings f JOIN deploys d ON d.id = f.deploy_id
                 WHERE f.service = ?1 AND f.environment = ?2
                   AND f.verdict = 'regressed' AND f.status != 'resolved'
                   AND (d.started_at_unix_nanos < ?3 OR (d.started_at_unix_nanos = ?3 AND d.id < ?4))
                 ORDER BY f.id",
                args![deploy.service, deploy.environment, deploy.started_at_unix_nanos, deploy.id],
                read_finding,
            )
        })
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
        let changed = self.metadata.write(|db| {
            db.execute(
                "UPDATE findings SET status = ?2, status_by = ?3, status_note = ?4,
                   status_changed_unix_nanos = ?5 WHERE id = ?1",
                args![id, status.as_str(), by, note, now_unix_nanos],
            )
        })?;
        if changed == 0 {
            return Ok(None);
        }
        self.finding(id)
    }
}
