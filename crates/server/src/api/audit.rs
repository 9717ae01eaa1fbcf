//! The audit log API for auditors: `GET /api/v1/audit` (records as JSON, oldest first, with a
//! cursor) and `GET /api/v1/audit/verify` (the chain walked end to end).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use edge::error::ApiError;
use views::rfc3339;

const DEFAULT_LIMIT: usize = 500;
const MAX_LIMIT: usize = 10_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListParams {
    /// RFC 3339: records at or after this time.
    since: Option<String>,
    /// The `next` cursor of the previous page.
    after: Option<u64>,
    limit: Option<usize>,
}

pub(crate) async fn list_audit(
    State(state): State<Arc<AppState>>,
    Query(params): Query<ListParams>,
) -> Result<Json<Value>, ApiError> {
    let since = match &params.since {
        Some(text) => views::parse_time("since", text)?,
        None => 0,
    };
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid(format!("`limit` must be 1 to {MAX_LIMIT}")));
    }
    let accounts = state.ctx().store.accounts().clone();
    let after = params.after.unwrap_or(0);
    let records = tokio::task::spawn_blocking(move || accounts.audit_records(since, after, limit))
        .await
        .map_err(ApiError::internal)??;
    let next = (records.len() == limit).then(|| records.last().map(|r| r.seq)).flatten();
    Ok(Json(json!({
        "records": records.iter().map(|r| r.to_json(rfc3339(r.time_unix_nanos))).collect::<Vec<_>>(),
        "next": next,
    })))
}

pub(crate) async fn verify_audit(
    State(state): State<Arc<AppState>>,
) -> Result<Json<Value>, ApiError> {
    let accounts = state.ctx().store.accounts().clone();
    let result = tokio::task::spawn_blocking(move || accounts.verify_audit())
        .await
        .map_err(ApiError::internal)??;
    Ok(Json(match result {
        Ok(records) => json!({"intact": true, "records": records}),
        Err(broken) => {
            json!({"intact": false, "broken": {"seq": broken.seq, "problem": broken.problem}})
        }
    }))
}
