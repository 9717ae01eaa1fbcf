//! `GET /api/v1/dora`: the four DORA metrics for the services a caller may see.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::{Extension, Json};
use shapes::DoraJ;

use crate::AppState;
use edge::access::Caller;
use edge::error::ApiError;

pub(crate) async fn get_dora(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Json<DoraJ>, ApiError> {
    let query = views::dora::parse_query(params)?;
    let view = tokio::task::spawn_blocking(move || {
        views::dora::dora_view(state.ctx(), &caller.visibility, &query)
    })
    .await
    .map_err(ApiError::internal)??;
    Ok(Json(view))
}
