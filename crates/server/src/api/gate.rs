//! `POST /api/v1/gate`: the tagging gate for a service at a commit, for any CI (`spanblame
//! gate` is its command line). The answer is always the report; its `outcome` says pass,
//! fail or cannot tell.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::{Extension, Json};
use serde::Deserialize;
use shapes::GateJ;
use views::gate::GateRequest;

use crate::AppState;
use edge::access::Caller;
use edge::error::{ApiError, ErrorCode, read_capped};

/// A gate request is a few names; anything larger is not one.
const MAX_GATE_BODY_BYTES: usize = 16 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GateBody {
    service: String,
    commit: String,
    environment: Option<String>,
    /// The commit is a review's head, not deployed anywhere yet: judge the service's latest
    /// spans instead of waiting for the commit's own.
    #[serde(default)]
    under_review: bool,
}

pub(crate) async fn evaluate(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    body: Body,
) -> Result<Json<GateJ>, ApiError> {
    let body = read_capped(
        body,
        MAX_GATE_BODY_BYTES,
        "gate",
        state.settings.connections.body_read_timeout,
    )
    .await?;
    let body: GateBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::invalid(format!(
            "invalid gate request: {e}; send JSON like {{\"service\": \"cart\", \"commit\": \"<sha>\", \"environment\": \"staging\"}}"
        ))
    })?;
    let service = body.service.trim().to_owned();
    if service.is_empty() {
        return Err(ApiError::invalid("`service` must not be empty"));
    }
    let commit = body.commit.trim().to_ascii_lowercase();
    if !model::looks_like_sha(&commit) {
        return Err(ApiError::invalid(format!(
            "`commit` = `{}` is not a git commit id; send the sha (at least 7 hex digits) of the change's head",
            body.commit
        )));
    }
    let environment = body.environment.map(|e| e.trim().to_owned()).filter(|e| !e.is_empty());
    if !caller.visibility.allows(&service, environment.as_deref()) {
        return Err(ApiError::new(
            ErrorCode::PermissionDenied,
            format!(
                "`{}` may not ask about `{service}`: the token is restricted to other services or environments",
                caller.principal.id
            ),
        ));
    }
    let mut request = GateRequest {
        service,
        commit: Some(commit),
        environment,
        review: None,
        expect_head: !body.under_review,
    };
    let state = Arc::clone(&state);
    let view = tokio::task::spawn_blocking(move || {
        let ctx = state.ctx();
        // A short sha is answered and recorded under the full one, when it is known.
        request.commit = views::gate::full_sha(ctx, &request)?.or(request.commit);
        let report = views::gate::evaluate(ctx, &request)?;
        let row = views::gate::result_row(&request, &report, "api", ctx.clock.now_unix_nanos());
        ctx.store.record_gate_result(&row)?;
        tracing::info!(
            service = %request.service,
            commit = request.commit.as_deref().unwrap_or(""),
            outcome = report.outcome.as_str(),
            "tagging gate evaluated"
        );
        Ok::<_, views::StoreError>(views::gate::report_view(&request, &report))
    })
    .await
    .map_err(ApiError::internal)??;
    Ok(Json(view))
}
