//! The node itself.

use axum::Json;
use axum::extract::State;

use crate::api::NodeInfo;
use crate::{ApiError, AppState};

/// Identity and state of this node.
#[utoipa::path(get, path = "/v1/node", tag = "node", security(("bearer" = [])), responses(
    (status = 200, description = "This node", body = NodeInfo),
    (status = 401, description = "Missing or wrong token", body = crate::ProblemBody, content_type = "application/problem+json"),
))]
pub(crate) async fn get_node(State(state): State<AppState>) -> Result<Json<NodeInfo>, ApiError> {
    Ok(Json(state.node.node_info().await?))
}
