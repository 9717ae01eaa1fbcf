//! Notifications (the outbox's rows) as the notifications API and the finding page show them,
//! and whether a caller may see one.

use store::{Delivery, DeliveryFilter, DeliveryState, StoreError, StoredFinding};

use crate::{Context, Visibility, rfc3339};
use shapes::NotificationJ;

/// One delivery as the API shows it (never its request, which may name internal paths).
pub fn delivery_view(d: &Delivery) -> NotificationJ {
    NotificationJ {
        id: d.id,
        sink: d.sink.clone(),
        kind: d.kind.clone(),
        target: d.target.clone(),
        summary: d.summary.clone(),
        state: d.state.as_str().into(),
        attempts: d.attempts,
        finding_id: d.finding_id,
        deploy_id: d.deploy_id,
        created: rfc3339(d.created_unix_nanos),
        next_attempt: (d.state == DeliveryState::Pending)
            .then(|| rfc3339(d.next_attempt_unix_nanos)),
        finished: d.finished_unix_nanos.map(rfc3339),
        last_status: d.last_status,
        last_error: d.last_error.clone(),
        result: d.result.clone(),
    }
}

/// Whether the caller may see a delivery: it is about a deploy of a service they see.
pub fn may_see(ctx: &Context, visibility: &Visibility, d: &Delivery) -> Result<bool, StoreError> {
    let Some(deploy) = d.deploy_id.map(|id| ctx.store.deploy(id)).transpose()?.flatten() else {
        return Ok(visibility.services.is_none());
    };
    let environment = Some(deploy.environment.as_str()).filter(|e| !e.is_empty());
    Ok(visibility.allows(&deploy.service, environment))
}

/// A finding's notifications as the API and the finding page show them.
pub fn finding_notifications(
    ctx: &Context,
    finding: &StoredFinding,
) -> Result<Vec<NotificationJ>, StoreError> {
    // Every row names its deploy; a deploy's comments and statuses are filed under its first
    // finding, so they are shown on every finding of the deploy, its alerts only on their own.
    let mut rows = ctx.store.deliveries(&DeliveryFilter {
        deploy_id: Some(finding.deploy_id),
        limit: 2_000,
        ..DeliveryFilter::default()
    })?;
    rows.retain(|d| {
        (d.kind != "alert" || d.finding_id == Some(finding.id))
            && !d.idempotency_key.contains(":refresh:")
    });
    rows.reverse(); // oldest first
    Ok(rows.iter().map(delivery_view).collect())
}
