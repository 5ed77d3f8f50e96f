//! The wallet, escrow lanes and settlement.

use axum::Json;
use axum::extract::State;

use crate::chain::{FundBody, FundRequest, FundedView, LaneView, SettlementView, WalletView};
use crate::extract::ApiJson;
use crate::{ApiError, AppState};

/// This node's wallet: address, USDC, and what the escrow holds.
#[utoipa::path(get, path = "/v1/wallet", tag = "chain", security(("bearer" = [])), responses(
    (status = 200, description = "The wallet", body = WalletView),
    (status = 401, description = "Missing or wrong token", body = crate::ProblemBody, content_type = "application/problem+json"),
    (status = 409, description = "The node is not connected to a chain", body = crate::ProblemBody, content_type = "application/problem+json"),
))]
pub(crate) async fn get_wallet(
    State(state): State<AppState>,
) -> Result<Json<WalletView>, ApiError> {
    Ok(Json(state.node.wallet().await?))
}

/// Adds USDC from this node's wallet to its lane to a provider.
///
/// Honours `Idempotency-Key`: a retry with the same key and body does not fund twice.
#[utoipa::path(post, path = "/v1/wallet/fund", tag = "chain", security(("bearer" = [])),
    request_body = FundBody,
    params(("Idempotency-Key" = Option<crate::text::IdempotencyKeyText>, Header, description = "Replays the first answer to a retried request")),
    responses(
        (status = 200, description = "Funded", body = FundedView),
        (status = 400, description = "Invalid request", body = crate::ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong token", body = crate::ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "Not connected to a chain", body = crate::ProblemBody, content_type = "application/problem+json"),
        (status = 502, description = "The chain refused or could not be reached", body = crate::ProblemBody, content_type = "application/problem+json"),
    ))]
pub(crate) async fn fund_lane(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<FundBody>,
) -> Result<Json<FundedView>, ApiError> {
    let request = FundRequest::try_from(body)?;
    Ok(Json(state.node.fund_lane(request).await?))
}

/// Escrow lanes in this node's ledger: acknowledged, vouched and settled amounts.
#[utoipa::path(get, path = "/v1/settlements", tag = "chain", security(("bearer" = [])), responses(
    (status = 200, description = "Lanes", body = [LaneView]),
    (status = 401, description = "Missing or wrong token", body = crate::ProblemBody, content_type = "application/problem+json"),
))]
pub(crate) async fn list_settlements(
    State(state): State<AppState>,
) -> Result<Json<Vec<LaneView>>, ApiError> {
    Ok(Json(state.node.lanes().await?))
}

/// Settles now: submits the latest voucher of every lane not paid in full, and answers
/// with the confirmed transactions (none when everything is settled).
///
/// Honours `Idempotency-Key`.
#[utoipa::path(post, path = "/v1/settlements", tag = "chain", security(("bearer" = [])),
    params(("Idempotency-Key" = Option<crate::text::IdempotencyKeyText>, Header, description = "Replays the first answer to a retried request")),
    responses(
        (status = 200, description = "Settlement transactions", body = [SettlementView]),
        (status = 401, description = "Missing or wrong token", body = crate::ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "Not connected to a chain", body = crate::ProblemBody, content_type = "application/problem+json"),
        (status = 502, description = "The chain refused or could not be reached", body = crate::ProblemBody, content_type = "application/problem+json"),
    ))]
pub(crate) async fn settle(
    State(state): State<AppState>,
) -> Result<Json<Vec<SettlementView>>, ApiError> {
    Ok(Json(state.node.settle().await?))
}
