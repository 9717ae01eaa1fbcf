//! The tagging gate's last answer per service and change, for the commit page and
//! `GET /api/v1/commits/{sha}`: one row per (service, commit, review), replaced by each new
//! evaluation.

use crate::sql::{Row, args};
use crate::{SpanStore, StoreError};

/// One answer of the gate, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GateResult {
    pub service: String,
    /// Empty for a diff that is not a commit yet.
    pub commit_sha: String,
    /// Empty when no review was named (`D12`, `42`).
    pub review_id: String,
    /// Who asked: `api`, `harbormaster` or `review`.
    pub source: String,
    /// `pass`, `fail` or `cannot_tell`.
    pub outcome: String,
    /// The checks as the API shows them (JSON).
    pub report: String,
    pub evaluated_unix_nanos: u64,
}

impl SpanStore {
    /// Records the gate's answer, replacing the last one for the same service and change.
    pub fn record_gate_result(&self, result: &GateResult) -> Result<(), StoreError> {
        self.metadata.write(|db| {
            db.execute(
                "INSERT INTO gate_results VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (service, commit_sha, review_id) DO UPDATE SET
                   source = excluded.source, outcome = excluded.outcome,
                   report = excluded.report, evaluated_unix_nanos = excluded.evaluated_unix_nanos",
                args![
                    result.service,
                    result.commit_sha.to_ascii_lowercase(),
                    result.review_id,
                    result.source,
                    result.outcome,
                    result.report,
                    result.evaluated_unix_nanos
                ],
            )?;
            Ok(())
        })
    }

    /// The last answers about a commit (full sha), or about the review it belongs to (`D12`,
    /// `PR #42`: a Harbormaster build of a diff has no commit yet), newest first.
    pub fn gate_results_of_commit(
        &self,
        sha: &str,
        review_id: Option<&str>,
    ) -> Result<Vec<GateResult>, StoreError> {
        let sha = sha.to_ascii_lowercase();
        self.metadata.read(|db| match review_id.filter(|id| !id.is_empty()) {
            Some(review_id) => db.query_map(
                "SELECT * FROM gate_results WHERE commit_sha = ?1 OR review_id = ?2
                 ORDER BY evaluated_unix_nanos DESC, service",
                args![sha, review_id],
                read_result,
            ),
            None => db.query_map(
                "SELECT * FROM gate_results WHERE commit_sha = ?1
                 ORDER BY evaluated_unix_nanos DESC, service",
                args![sha],
                read_result,
            ),
        })
    }
}

fn read_result(row: &Row) -> Result<GateResult, StoreError> {
    Ok(GateResult {
        service: row.get("service")?,
        commit_sha: row.get("commit_sha")?,
        review_id: row.get("review_id")?,
        source: row.get("source")?,
        outcome: row.get("outcome")?,
        report: row.get("report")?,
        evaluated_unix_nanos: row.get("evaluated_unix_nanos")?,
    })
}
