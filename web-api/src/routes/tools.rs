//! The tools this node sells.

use axum::Json;
use axum::extract::State;

use crate::api::OfferView;
use crate::{ApiError, AppState};

/// This node's whitelist, as offered to the network (empty on a node that only rents).
#[utoipa::path(get, path = "/v1/tools", tag = "tools", security(("bearer" = [])), responses(
    (status = 200, description = "Tools on offer", body = [OfferView]),
    (status = 401, description = "Missing or wrong token", body = crate::ProblemBody, content_type = "application/problem+json"),
))]
pub(crate) async fn list_tools(
    State(state): State<AppState>,
) -> Result<Json<Vec<OfferView>>, ApiError> {
    Ok(Json(state.node.tools().await?))
}
