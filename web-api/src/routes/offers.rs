//! The offer book.

use axum::Json;
use axum::extract::State;

use crate::api::{OfferQueryParams, OfferView};
use crate::extract::ApiQuery;
use crate::{ApiError, AppState};

/// Offers this node knows, cheapest execution price first (or, with
/// `sort=reputation`, best provider reputation with this node first).
#[utoipa::path(get, path = "/v1/offers", tag = "offers", security(("bearer" = [])), params(OfferQueryParams), responses(
    (status = 200, description = "Matching offers", body = [OfferView]),
    (status = 400, description = "Invalid filter", body = crate::ProblemBody, content_type = "application/problem+json"),
    (status = 401, description = "Missing or wrong token", body = crate::ProblemBody, content_type = "application/problem+json"),
))]
pub(crate) async fn list_offers(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<OfferQueryParams>,
) -> Result<Json<Vec<OfferView>>, ApiError> {
    match params.filter()? {
        Some(filter) => Ok(Json(state.node.offers(filter).await?)),
        None => Ok(Json(Vec::new())),
    }
}
