//! The notification outbox: every review comment, commit status and alert spanblame decides to
//! send is a row here before any attempt, so a slow or failing receiver delays only its own
//! rows and a restart loses nothing pending.
//!
//! A row's idempotency key makes the decision itself idempotent (a second enqueue with the same
//! key is ignored), rows are claimed by due time, and each attempt ends in `delivered`, a later
//! retry, or `dead` after the caller's bound. Rows hold no secrets: the sender adds credentials
//! from the configuration at send time.

use rusqlite::{Row, params};

use crate::{SpanStore, StoreError};

fn sql(e: rusqlite::Error) -> StoreError {
    StoreError::Metadata(e.to_string())
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    /// Waiting for its next attempt.
    Pending,
    Delivered,
    /// Given up after the retry bound; kept for people to see and retry by hand.
    Dead,
    /// Replaced before it was sent (a firing alert whose resolution is already queued).
    Superseded,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Dead => "dead",
            DeliveryState::Superseded => "superseded",
        }
    }

    pub fn parse(text: &str) -> Option<DeliveryState> {
        [
            DeliveryState::Pending,
            DeliveryState::Delivered,
            DeliveryState::Dead,
            DeliveryState::Superseded,
        ]
        .into_iter()
        .find(|state| state.as_str() == text)
    }
}

/// A notification to enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    pub idempotency_key: String,
    /// The configured receiver (`alertmanager:main`, `webhook:slack`, `forge:gitea-main`).
    pub sink: String,
    /// `alert`, `comment` or `status`.
    pub kind: String,
    pub finding_id: Option<u64>,
    pub deploy_id: Option<u64>,
    /// What it lands on, for people (`PR #42`, `D123`, `spanblame_latency_regression`).
    pub target: String,
    pub summary: String,
    /// The request as JSON (method, path, content type, body), without credentials.
    pub request: String,
    /// Keys of pending rows this one makes obsolete (they become `superseded`).
    pub supersedes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: u64,
    pub idempotency_key: String,
    pub sink: String,
    pub kind: String,
    pub finding_id: Option<u64>,
    pub deploy_id: Option<u64>,
    pub target: String,
    pub summary: String,
    pub request: String,
    pub state: DeliveryState,
    pub attempts: u32,
    pub created_unix_nanos: u64,
    pub next_attempt_unix_nanos: u64,
    pub finished_unix_nanos: Option<u64>,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
}

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    Delivered {
        status: u16,
    },
    /// Failed; try again at `retry_at_unix_nanos`, or give up (`None`).
    Failed {
        status: Option<u16>,
        error: String,
        retry_at_unix_nanos: Option<u64>,
    },
}

/// Which deliveries to list; every field narrows.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub finding_id: Option<u64>,
    pub deploy_id: Option<u64>,
    pub state: Option<DeliveryState>,
    /// Only rows with an id below this (paging, newest first).
    pub before_id: Option<u64>,
    pub limit: usize,
}

fn read_delivery(row: &Row<'_>) -> rusqlite::Result<Delivery> {
    Ok(Delivery {
        id: row.get::<_, i64>("id")? as u64,
        idempotency_key: row.get("idempotency_key")?,
        sink: row.get("sink")?,
        kind: row.get("kind")?,
        finding_id: row.get::<_, Option<i64>>("finding_id")?.map(|v| v as u64),
        deploy_id: row.get::<_, Option<i64>>("deploy_id")?.map(|v| v as u64),
        target: row.get("target")?,
        summary: row.get("summary")?,
        request: row.get("request")?,
        state: DeliveryState::parse(&row.get::<_, String>("state")?)
            .unwrap_or(DeliveryState::Pending),
        attempts: row.get::<_, i64>("attempts")? as u32,
        created_unix_nanos: row.get::<_, i64>("created_unix_nanos")? as u64,
        next_attempt_unix_nanos: row.get::<_, i64>("next_attempt_unix_nanos")? as u64,
        finished_unix_nanos: row.get::<_, Option<i64>>("finished_unix_nanos")?.map(|v| v as u64),
        last_status: row.get::<_, Option<i64>>("last_status")?.map(|v| v as u16),
        last_error: row.get("last_error")?,
    })
}

impl SpanStore {
    /// Enqueues deliveries in one transaction, due at once. A key enqueued before (in any
    /// state) is skipped. Returns how many rows were added.
    pub fn enqueue_deliveries(
        &self,
        deliveries: &[NewDelivery],
        now_unix_nanos: u64,
    ) -> Result<usize, StoreError> {
        let mut conn = self.metadata.conn();
        let tx = conn.transaction().map_err(sql)?;
        let mut added = 0;
        for d in deliveries {
            for key in &d.supersedes {
                tx.execute(
                    "UPDATE outbox SET state = 'superseded', finished_unix_nanos = ?2
                     WHERE idempotency_key = ?1 AND state = 'pending'",
                    params![key, now_unix_nanos as i64],
                )
                .map_err(sql)?;
            }
            added += tx
                .execute(
                    "INSERT OR IGNORE INTO outbox (idempotency_key, sink, kind, finding_id,
                       deploy_id, target, summary, request, state, created_unix_nanos,
                       next_attempt_unix_nanos)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'pending', ?9, ?9)",
                    params![
                        d.idempotency_key,
                        d.sink,
                        d.kind,
                        d.finding_id.map(|v| v as i64),
                        d.deploy_id.map(|v| v as i64),
                        d.target,
                        d.summary,
                        d.request,
                        now_unix_nanos as i64
                    ],
                )
                .map_err(sql)?;
        }
        tx.commit().map_err(sql)?;
        Ok(added)
    }

    /// The delivery enqueued under this key, in any state.
    pub fn delivery_by_key(&self, idempotency_key: &str) -> Result<Option<Delivery>, StoreError> {
        let conn = self.metadata.conn();
        let mut stmt =
            conn.prepare_cached("SELECT * FROM outbox WHERE idempotency_key = ?1").map_err(sql)?;
        let mut rows = stmt.query_map([idempotency_key], read_delivery).map_err(sql)?;
        rows.next().transpose().map_err(sql)
    }

    /// Pending deliveries due at `now`, oldest first (so one target's messages keep their order
    /// when its receiver is healthy).
    pub fn due_deliveries(
        &self,
        now_unix_nanos: u64,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        let conn = self.metadata.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT * FROM outbox WHERE state = 'pending' AND next_attempt_unix_nanos <= ?1
                 ORDER BY id LIMIT ?2",
            )
            .map_err(sql)?;
        stmt.query_map(params![now_unix_nanos as i64, limit as i64], read_delivery)
            .map_err(sql)?
            .collect::<Result<_, _>>()
            .map_err(sql)
    }

    /// Records one attempt. A row that is no longer pending (superseded meanwhile) keeps its
    /// state; its attempt is still counted.
    pub fn record_attempt(
        &self,
        id: u64,
        outcome: &AttemptOutcome,
        now_unix_nanos: u64,
    ) -> Result<(), StoreError> {
        let conn = self.metadata.conn();
        let now = now_unix_nanos as i64;
        match outcome {
            AttemptOutcome::Delivered { status } => conn.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_status = ?2, last_error = NULL,
                   state = CASE state WHEN 'pending' THEN 'delivered' ELSE state END,
                   finished_unix_nanos = ?3
                 WHERE id = ?1",
                params![id as i64, i64::from(*status), now],
            ),
            AttemptOutcome::Failed { status, error, retry_at_unix_nanos: Some(at) } => conn
                .execute(
                    "UPDATE outbox SET attempts = attempts + 1, last_status = ?2, last_error = ?3,
                   next_attempt_unix_nanos = ?4
                 WHERE id = ?1",
                    params![id as i64, status.map(i64::from), error, *at as i64],
                ),
            AttemptOutcome::Failed { status, error, retry_at_unix_nanos: None } => conn.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_status = ?2, last_error = ?3,
                   state = CASE state WHEN 'pending' THEN 'dead' ELSE state END,
                   finished_unix_nanos = ?4
                 WHERE id = ?1",
                params![id as i64, status.map(i64::from), error, now],
            ),
        }
        .map_err(sql)?;
        Ok(())
    }

    /// Puts a dead delivery back in the queue, due at once; false when it is not dead.
    pub fn retry_delivery(&self, id: u64, now_unix_nanos: u64) -> Result<bool, StoreError> {
        let changed = self
            .metadata
            .conn()
            .execute(
                "UPDATE outbox SET state = 'pending', next_attempt_unix_nanos = ?2,
                   finished_unix_nanos = NULL WHERE id = ?1 AND state = 'dead'",
                params![id as i64, now_unix_nanos as i64],
            )
            .map_err(sql)?;
        Ok(changed == 1)
    }

    pub fn delivery(&self, id: u64) -> Result<Option<Delivery>, StoreError> {
        let conn = self.metadata.conn();
        let mut stmt = conn.prepare_cached("SELECT * FROM outbox WHERE id = ?1").map_err(sql)?;
        let mut rows = stmt.query_map([id as i64], read_delivery).map_err(sql)?;
        rows.next().transpose().map_err(sql)
    }

    /// Deliveries, newest first.
    pub fn deliveries(&self, filter: &DeliveryFilter) -> Result<Vec<Delivery>, StoreError> {
        let conn = self.metadata.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT * FROM outbox
                 WHERE (?1 IS NULL OR finding_id = ?1)
                   AND (?2 IS NULL OR deploy_id = ?2)
                   AND (?3 IS NULL OR state = ?3)
                   AND (?4 IS NULL OR id < ?4)
                 ORDER BY id DESC LIMIT ?5",
            )
            .map_err(sql)?;
        stmt.query_map(
            params![
                filter.finding_id.map(|v| v as i64),
                filter.deploy_id.map(|v| v as i64),
                filter.state.map(DeliveryState::as_str),
                filter.before_id.map(|v| v as i64),
                filter.limit as i64
            ],
            read_delivery,
        )
        .map_err(sql)?
        .collect::<Result<_, _>>()
        .map_err(sql)
    }

    /// Deletes delivered and superseded rows finished before `before_unix_nanos` whose key
    /// matches the SQL `LIKE` pattern `key_like`. A deleted key can be enqueued again, so prune
    /// only keys that are never decided twice (periodic refreshes). Dead rows stay.
    pub fn prune_deliveries(
        &self,
        key_like: &str,
        before_unix_nanos: u64,
    ) -> Result<usize, StoreError> {
        self.metadata
            .conn()
            .execute(
                "DELETE FROM outbox WHERE state IN ('delivered', 'superseded')
                   AND finished_unix_nanos < ?2 AND idempotency_key LIKE ?1",
                params![key_like, before_unix_nanos as i64],
            )
            .map_err(sql)
    }
}

/// Supersedes the pending deliveries of findings a deploy reset deletes.
pub(crate) fn supersede_for_deploy(
    tx: &rusqlite::Transaction<'_>,
    deploy_id: i64,
) -> rusqlite::Result<()> {
    tx.execute(
        "UPDATE outbox SET state = 'superseded', finished_unix_nanos = created_unix_nanos
         WHERE state = 'pending' AND finding_id IN (SELECT id FROM findings WHERE deploy_id = ?1)",
        [deploy_id],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StoreOptions;

    fn delivery(key: &str) -> NewDelivery {
        NewDelivery {
            idempotency_key: key.into(),
            sink: "webhook:ops".into(),
            kind: "alert".into(),
            finding_id: Some(7),
            deploy_id: Some(3),
            target: "spanblame_latency_regression".into(),
            summary: "p95 up".into(),
            request: "{}".into(),
            supersedes: Vec::new(),
        }
    }

    #[test]
    fn a_key_is_enqueued_once_and_attempts_end_in_a_state() {
        let dir = tempfile::tempdir().unwrap();
        let store = SpanStore::open(dir.path(), StoreOptions::default()).unwrap();
        assert_eq!(store.enqueue_deliveries(&[delivery("a"), delivery("b")], 10).unwrap(), 2);
        assert_eq!(store.enqueue_deliveries(&[delivery("a")], 11).unwrap(), 0, "same key");
        assert_eq!(store.delivery_by_key("a").unwrap().unwrap().created_unix_nanos, 10);
        assert!(store.delivery_by_key("c").unwrap().is_none());

        let due = store.due_deliveries(10, 10).unwrap();
        assert_eq!(due.iter().map(|d| d.idempotency_key.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        let failed = AttemptOutcome::Failed {
            status: Some(503),
            error: "busy".into(),
            retry_at_unix_nanos: Some(50),
        };
        store.record_attempt(due[0].id, &failed, 12).unwrap();
        store.record_attempt(due[1].id, &AttemptOutcome::Delivered { status: 201 }, 12).unwrap();
        assert!(store.due_deliveries(49, 10).unwrap().is_empty(), "backing off");
        let again = store.due_deliveries(50, 10).unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!((again[0].attempts, again[0].last_status), (1, Some(503)));

        let dead = AttemptOutcome::Failed {
            status: None,
            error: "connection refused".into(),
            retry_at_unix_nanos: None,
        };
        store.record_attempt(again[0].id, &dead, 51).unwrap();
        let row = store.delivery(again[0].id).unwrap().unwrap();
        assert_eq!((row.state, row.attempts), (DeliveryState::Dead, 2));
        assert_eq!(row.last_error.as_deref(), Some("connection refused"));
        assert!(store.retry_delivery(row.id, 60).unwrap());
        assert_eq!(store.due_deliveries(60, 10).unwrap().len(), 1);

        let listed = store
            .deliveries(&DeliveryFilter { finding_id: Some(7), limit: 10, ..Default::default() })
            .unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0].idempotency_key, "b", "newest first");
    }

    #[test]
    fn a_resolution_supersedes_a_pending_firing() {
        let dir = tempfile::tempdir().unwrap();
        let store = SpanStore::open(dir.path(), StoreOptions::default()).unwrap();
        store.enqueue_deliveries(&[delivery("firing")], 1).unwrap();
        let resolved = NewDelivery { supersedes: vec!["firing".into()], ..delivery("resolved") };
        store.enqueue_deliveries(&[resolved], 2).unwrap();
        let due = store.due_deliveries(3, 10).unwrap();
        assert_eq!(
            due.iter().map(|d| d.idempotency_key.as_str()).collect::<Vec<_>>(),
            ["resolved"]
        );
        assert_eq!(store.prune_deliveries("res%", 3).unwrap(), 0, "only matching keys go");
        assert_eq!(store.prune_deliveries("fir%", 3).unwrap(), 1, "the superseded row goes");
    }
}
