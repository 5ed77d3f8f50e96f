//! Receipts and balances from this node's ledger.

use axum::Json;
use axum::extract::State;

use crate::extract::ApiQuery;
use crate::sessions::{
    BalanceView, EarningsPeriod, EarningsQuery, EarningsView, ReceiptQuery, ReceiptView,
    parse_session_id,
};
use crate::{ApiError, AppState};

/// The dual-signed receipts of a session, in chain order.
#[utoipa::path(get, path = "/v1/receipts", tag = "ledger", security(("bearer" = [])), params(ReceiptQuery), responses(
    (status = 200, description = "The session's receipt chain", body = [ReceiptView]),
    (status = 400, description = "Missing or malformed session", body = crate::ProblemBody, content_type = "application/problem+json"),
    (status = 401, description = "Missing or wrong token", body = crate::ProblemBody, content_type = "application/problem+json"),
    (status = 404, description = "No such session", body = crate::ProblemBody, content_type = "application/problem+json"),
))]
pub(crate) async fn list_receipts(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ReceiptQuery>,
) -> Result<Json<Vec<ReceiptView>>, ApiError> {
    Ok(Json(
        state
            .node
            .receipts(parse_session_id(query.session.as_str())?)
            .await?,
    ))
}

/// Every account of the double-entry ledger with its balance.
#[utoipa::path(get, path = "/v1/ledger/balances", tag = "ledger", security(("bearer" = [])), responses(
    (status = 200, description = "Accounts", body = [BalanceView]),
    (status = 401, description = "Missing or wrong token", body = crate::ProblemBody, content_type = "application/problem+json"),
))]
pub(crate) async fn balances(
    State(state): State<AppState>,
) -> Result<Json<Vec<BalanceView>>, ApiError> {
    Ok(Json(state.node.balances().await?))
}

/// What this node earned as provider, per UTC day, oldest first.
#[utoipa::path(get, path = "/v1/earnings", tag = "ledger", security(("bearer" = [])), params(EarningsQuery), responses(
    (status = 200, description = "Earnings per day", body = [EarningsView]),
    (status = 400, description = "Unknown period", body = crate::ProblemBody, content_type = "application/problem+json"),
    (status = 401, description = "Missing or wrong token", body = crate::ProblemBody, content_type = "application/problem+json"),
))]
pub(crate) async fn earnings(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<EarningsQuery>,
) -> Result<Json<Vec<EarningsView>>, ApiError> {
    match query.by {
        EarningsPeriod::Day => Ok(Json(state.node.earnings_by_day().await?)),
    }
}
