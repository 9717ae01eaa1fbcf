//! Notifications: `GET /api/v1/notifications` (the outbox, within the caller's reach) and
//! `POST /api/v1/notifications/{id}/retry` (a dead one, once more).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use serde_json::{Value as Json_, json};
use shapes::NotificationJ;
use store::{DeliveryFilter, DeliveryState, StoreError};

use crate::AppState;
use edge::access::Caller;
use edge::error::{ApiError, ErrorCode};

/// `GET /api/v1/notifications?finding=&deploy=&state=&limit=&next=`
pub(crate) async fn list_notifications(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Json<Json_>, ApiError> {
    let mut filter = DeliveryFilter { limit: 100, ..DeliveryFilter::default() };
    for (key, value) in params {
        let number = |what: &str| {
            value.parse::<u64>().map_err(|_| {
                ApiError::invalid(format!("`{key}` = `{value}` is not {what}; give a number"))
            })
        };
        match key.as_str() {
            "finding" => filter.finding_id = Some(number("a finding id")?),
            "deploy" => filter.deploy_id = Some(number("a deploy id")?),
            "next" => filter.before_id = Some(number("a cursor from a previous page")?),
            "limit" => filter.limit = number("a count")?.clamp(1, 1000) as usize,
            "state" => {
                filter.state = Some(DeliveryState::parse(&value).ok_or_else(|| {
                    ApiError::invalid(format!(
                        "`state` = `{value}` is not a delivery state; use pending, delivered, dead or superseded"
                    ))
                })?)
            }
            other => {
                return Err(ApiError::invalid(format!(
                    "unknown parameter `{other}`; use finding, deploy, state, limit or next"
                )));
            }
        }
    }
    let view = tokio::task::spawn_blocking(move || -> Result<Json_, StoreError> {
        let rows = state.ctx().store.deliveries(&filter)?;
        let next = (rows.len() == filter.limit).then(|| rows.last().map(|d| d.id)).flatten();
        let mut visible = Vec::new();
        for d in &rows {
            if views::notifications::may_see(state.ctx(), &caller.visibility, d)? {
                visible.push(views::notifications::delivery_view(d));
            }
        }
        Ok(json!({"notifications": visible, "next": next.map(|id| id.to_string())}))
    })
    .await
    .map_err(ApiError::internal)??;
    Ok(Json(view))
}

/// `POST /api/v1/notifications/{id}/retry`: a dead delivery goes back in the queue.
pub(crate) async fn retry_notification(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<NotificationJ>, ApiError> {
    let id: u64 = id.parse().map_err(|_| {
        ApiError::invalid(format!("`{id}` is not a notification id; ids are numbers"))
    })?;
    let not_found = move || ApiError::new(ErrorCode::NotFound, format!("no notification {id}"));
    let view = tokio::task::spawn_blocking(move || -> Result<Result<NotificationJ, ApiError>, StoreError> {
        let Some(delivery) = state.ctx().store.delivery(id)? else { return Ok(Err(not_found())) };
        if !views::notifications::may_see(state.ctx(), &caller.visibility, &delivery)? {
            return Ok(Err(not_found()));
        }
        if !state.ctx().store.retry_delivery(id, state.ctx().clock.now_unix_nanos())? {
            return Ok(Err(ApiError::new(
                ErrorCode::Conflict,
                format!(
                    "notification {id} is {}, not dead; only dead notifications are retried by hand",
                    delivery.state.as_str()
                ),
            )));
        }
        let retried = state.ctx().store.delivery(id)?.unwrap_or(delivery);
        Ok(Ok(views::notifications::delivery_view(&retried)))
    })
    .await
    .map_err(ApiError::internal)???;
    Ok(Json(view))
}
