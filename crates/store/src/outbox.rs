//! The notification outbox: every review comment, commit status and alert spanblame decides to
//! send is a row here before any attempt, so a slow or failing receiver delays only its own
//! rows and a restart loses nothing pending.
//!
//! A row's idempotency key makes the decision itself idempotent (a second enqueue with the same
//! key is ignored), rows are claimed by due time, and each attempt ends in `delivered`, a later
//! retry, or `dead` after the caller's bound. Rows hold no secrets: the sender adds credentials
//! from the configuration at send time.

use crate::sql::{Executor, Row, args};
use crate::{SpanStore, StoreError};

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
    /// What the delivery made on its receiver, for people to open (a proposed revert's
    /// revision).
    pub result: Option<String>,
}

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    Delivered {
        status: u16,
        /// What it made there, when it made something to open.
        result: Option<String>,
    },
    /// Failed; try again at `retry_at_unix_nanos`, or give up (`None`).
    Failed { status: Option<u16>, error: String, retry_at_unix_nanos: Option<u64> },
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

fn read_delivery(row: &Row) -> Result<Delivery, StoreError> {
    Ok(Delivery {
        id: row.get("id")?,
        idempotency_key: row.get("idempotency_key")?,
        sink: row.get("sink")?,
        kind: row.get("kind")?,
        finding_id: row.get("finding_id")?,
        deploy_id: row.get("deploy_id")?,
        target: row.get("target")?,
        summary: row.get("summary")?,
        request: row.get("request")?,
        state: DeliveryState::parse(&row.get::<String>("state")?).unwrap_or(DeliveryState::Pending),
        attempts: row.get("attempts")?,
        created_unix_nanos: row.get("created_unix_nanos")?,
        next_attempt_unix_nanos: row.get("next_attempt_unix_nanos")?,
        finished_unix_nanos: row.get("finished_unix_nanos")?,
        last_status: row.get("last_status")?,
        last_error: row.get("last_error")?,
        result: row.get("result")?,
    })
}

impl SpanStore {
    /// Enqueues deliveries in one transaction, due at once. A key enqueued before is skipped,
    /// unless its row was superseded before any attempt to send it (a deploy reset deletes the
    /// findings it announced): deciding it again means it is wanted again, so that row is due
    /// anew. A row attempted before it was superseded may have landed, so it is never sent
    /// again.
    /// Returns how many rows were added or revived.
    pub fn enqueue_deliveries(
        &self,
        deliveries: &[NewDelivery],
        now_unix_nanos: u64,
    ) -> Result<usize, StoreError> {
        self.metadata.write(|db| {
            let mut added = 0;
            for d in deliveries {
                for key in &d.supersedes {
                    db.execute(
                        "UPDATE outbox SET state = 'superseded', finished_unix_nanos = ?2
                         WHERE idempotency_key = ?1 AND state = 'pending'",
                        args![key, now_unix_nanos],
                    )?;
                }
                let values = args![
                    d.idempotency_key,
                    d.sink,
                    d.kind,
                    d.finding_id,
                    d.deploy_id,
                    d.target,
                    d.summary,
                    d.request,
                    now_unix_nanos
                ];
                added += db.execute(
                    "INSERT INTO outbox (idempotency_key, sink, kind, finding_id, deploy_id,
                       target, summary, request, state, created_unix_nanos,
                       next_attempt_unix_nanos)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'pending', ?9, ?9)
                     ON CONFLICT DO NOTHING",
                    values,
                )? as usize;
                added += db.execute(
                    "UPDATE outbox SET sink = ?2, kind = ?3, finding_id = ?4, deploy_id = ?5,
                       target = ?6, summary = ?7, request = ?8, state = 'pending', attempts = 0,
                       created_unix_nanos = ?9, next_attempt_unix_nanos = ?9,
                       finished_unix_nanos = NULL, last_status = NULL, last_error = NULL
                     WHERE idempotency_key = ?1 AND state = 'superseded' AND attempts = 0",
                    values,
                )? as usize;
            }
            Ok(added)
        })
    }

    /// The delivery enqueued under this key, in any state.
    pub fn delivery_by_key(&self, idempotency_key: &str) -> Result<Option<Delivery>, StoreError> {
        self.metadata.read(|db| {
            db.query_opt("SELECT * FROM outbox WHERE idempotency_key = ?1", args![idempotency_key])?
                .map(|row| read_delivery(&row))
                .transpose()
        })
    }

    /// Pending deliveries due at `now`, oldest first (so one target's messages keep their order
    /// when its receiver is healthy).
    pub fn due_deliveries(
        &self,
        now_unix_nanos: u64,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        self.metadata.read(|db| {
            db.query_map(
                "SELECT * FROM outbox WHERE state = 'pending' AND next_attempt_unix_nanos <= ?1
                 ORDER BY id LIMIT ?2",
                args![now_unix_nanos, limit.min(i64::MAX as usize) as i64],
                read_delivery,
            )
        })
    }

    /// Records one attempt. A row that is no longer pending (superseded meanwhile) keeps its
    /// state; its attempt is still counted.
    pub fn record_attempt(
        &self,
        id: u64,
        outcome: &AttemptOutcome,
        now_unix_nanos: u64,
    ) -> Result<(), StoreError> {
        self.metadata.write(|db| {
            match outcome {
                AttemptOutcome::Delivered { status, result } => db.execute(
                    "UPDATE outbox SET attempts = attempts + 1, last_status = ?2, last_error = NULL,
                       state = CASE state WHEN 'pending' THEN 'delivered' ELSE state END,
                       finished_unix_nanos = ?3, result = coalesce(?4, result)
                     WHERE id = ?1",
                    args![id, status, now_unix_nanos, result],
                ),
                AttemptOutcome::Failed { status, error, retry_at_unix_nanos: Some(at) } => db
                    .execute(
                        "UPDATE outbox SET attempts = attempts + 1, last_status = ?2,
                           last_error = ?3, next_attempt_unix_nanos = ?4
                         WHERE id = ?1",
                        args![id, status, error, at],
                    ),
                AttemptOutcome::Failed { status, error, retry_at_unix_nanos: None } => db.execute(
                    "UPDATE outbox SET attempts = attempts + 1, last_status = ?2, last_error = ?3,
                       state = CASE state WHEN 'pending' THEN 'dead' ELSE state END,
                       finished_unix_nanos = ?4
                     WHERE id = ?1",
                    args![id, status, error, now_unix_nanos],
                ),
            }
            .map(|_| ())
        })
    }

    /// How many deliveries wait (`pending`) or were given up on (`dead`), per receiver: what
    /// `/metrics` shows.
    pub fn delivery_counts(&self) -> Result<Vec<(String, DeliveryState, u64)>, StoreError> {
        let rows = self.metadata.read(|db| {
            db.query(
                "SELECT sink, state, COUNT(*) FROM outbox WHERE state IN ('pending', 'dead')
                 GROUP BY sink, state ORDER BY sink, state",
                args![],
            )
        })?;
        let mut counts = Vec::new();
        for row in &rows {
            let state: String = row.get(1)?;
            let Some(state) = DeliveryState::parse(&state) else { continue };
            counts.push((row.get(0)?, state, row.get::<i64>(2)? as u64));
        }
        Ok(counts)
    }

    /// Puts a dead delivery back in the queue, due at once; false when it is not dead.
    pub fn retry_delivery(&self, id: u64, now_unix_nanos: u64) -> Result<bool, StoreError> {
        let changed = self.metadata.write(|db| {
            db.execute(
                "UPDATE outbox SET state = 'pending', next_attempt_unix_nanos = ?2,
                   finished_unix_nanos = NULL WHERE id = ?1 AND state = 'dead'",
                args![id, now_unix_nanos],
            )
        })?;
        Ok(changed == 1)
    }

    pub fn delivery(&self, id: u64) -> Result<Option<Delivery>, StoreError> {
        self.metadata.read(|db| {
            db.query_opt("SELECT * FROM outbox WHERE id = ?1", args![id])?
                .map(|row| read_delivery(&row))
                .transpose()
        })
    }

    /// Deliveries, newest first.
    pub fn deliveries(&self, filter: &DeliveryFilter) -> Result<Vec<Delivery>, StoreError> {
        self.metadata.read(|db| {
            db.query_map(
                "SELECT * FROM outbox
                 WHERE (CAST(?1 AS BIGINT) IS NULL OR finding_id = ?1)
                   AND (CAST(?2 AS BIGINT) IS NULL OR deploy_id = ?2)
                   AND (CAST(?3 AS TEXT) IS NULL OR state = ?3)
                   AND (CAST(?4 AS BIGINT) IS NULL OR id < ?4)
                 ORDER BY id DESC LIMIT ?5",
                args![
                    filter.finding_id,
                    filter.deploy_id,
                    filter.state.map(DeliveryState::as_str),
                    filter.before_id,
                    filter.limit.min(i64::MAX as usize) as i64
                ],
                read_delivery,
            )
        })
    }

    /// Deletes delivered and superseded rows finished before `before_unix_nanos` whose key
    /// matches the SQL `LIKE` pattern `key_like` (case-sensitive: write keys in one case). A
    /// deleted key can be enqueued again, so prune only keys that are never decided twice
    /// (periodic refreshes). Dead rows stay.
    pub fn prune_deliveries(
        &self,
        key_like: &str,
        before_unix_nanos: u64,
    ) -> Result<usize, StoreError> {
        let deleted = self.metadata.write(|db| {
            db.execute(
                "DELETE FROM outbox WHERE state IN ('delivered', 'superseded')
                   AND finished_unix_nanos < ?2 AND idempotency_key LIKE ?1",
                args![key_like, before_unix_nanos],
            )
        })?;
        Ok(deleted as usize)
    }
}

/// Supersedes the pending deliveries of findings a deploy reset deletes.
pub(crate) fn supersede_for_deploy(
    db: &mut dyn Executor,
    deploy_id: i64,
) -> Result<(), StoreError> {
    db.execute(
        "UPDATE outbox SET state = 'superseded', finished_unix_nanos = created_unix_nanos
         WHERE state = 'pending' AND finding_id IN (SELECT id FROM findings WHERE deploy_id = ?1)",
        args![deploy_id],
    )?;
    Ok(())
}
