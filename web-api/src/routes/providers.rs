//! Providers, as their signed profiles describe them.

use axum::Json;
use axum::extract::State;

use crate::extract::{ApiPath, ApiQuery};
use crate::providers::{ProviderPage, ProviderQuery, ProviderView, parse_provider_id};
use crate::{ApiError, AppState};

/// The providers this node has heard of (their signed profiles, gossiped), a page at a
/// time: filter by tool, price and uptime, sort by uptime, price, completed sessions or
/// name.
#[utoipa::path(get, path = "/v1/providers", tag = "providers", security(("bearer" = [])), params(ProviderQuery),
    responses(
        (status = 200, description = "A page of providers", body = ProviderPage),
        (status = 400, description = "Invalid filter", body = crate::ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong token", body = crate::ProblemBody, content_type = "application/problem+json"),
    ))]
pub(crate) async fn list_providers(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ProviderQuery>,
) -> Result<Json<ProviderPage>, ApiError> {
    Ok(Json(state.node.providers(query.filter()?).await?))
}

/// One provider's profile.
#[utoipa::path(get, path = "/v1/providers/{id}", tag = "providers", security(("bearer" = [])),
    params(("id" = crate::text::PeerIdText, Path, description = "Provider (peer id)")),
    responses(
        (status = 200, description = "The provider", body = ProviderView),
        (status = 400, description = "Malformed id", body = crate::ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong token", body = crate::ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No profile of that provider is known", body = crate::ProblemBody, content_type = "application/problem+json"),
    ))]
pub(crate) async fn get_provider(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ProviderView>, ApiError> {
    Ok(Json(state.node.provider(parse_provider_id(&id)?).await?))
}
