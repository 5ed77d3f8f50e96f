//! The wallet, escrow lanes and settlement.

use axum::Json;
use axum::extract::State;

use crate::chain::{
    FundBody, FundRequest, FundedView, LaneStatusView, ReclaimBody, ReclaimView, RefundedView,
    SettlementRecordView, SettlementView, WalletView, WithdrawBody, WithdrawnView,
};
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

/// The settlement history in this node's ledger, newest first: each transaction with its
/// lane, state, the voucher it submitted, what it paid and its 90 / 7 / 3 parts.
#[utoipa::path(get, path = "/v1/settlements", tag = "chain", security(("bearer" = [])), responses(
    (status = 200, description = "Settlements", body = [SettlementRecordView]),
    (status = 401, description = "Missing or wrong token", body = crate::ProblemBody, content_type = "application/problem+json"),
))]
pub(crate) async fn list_settlements(
    State(state): State<AppState>,
) -> Result<Json<Vec<SettlementRecordView>>, ApiError> {
    Ok(Json(state.node.settlements().await?))
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

/// Withdraws from the escrow to this node's wallet: a provider's earnings (credited by
/// settlements), or, by the treasury's or reserve's wallet, the fees or the reserve.
///
/// Honours `Idempotency-Key`.
#[utoipa::path(post, path = "/v1/wallet/withdraw", tag = "chain", security(("bearer" = [])),
    request_body = WithdrawBody,
    params(("Idempotency-Key" = Option<crate::text::IdempotencyKeyText>, Header, description = "Replays the first answer to a retried request")),
    responses(
        (status = 200, description = "Withdrawn", body = WithdrawnView),
        (status = 400, description = "Invalid request", body = crate::ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong token", body = crate::ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "Not connected to a chain, nothing to withdraw, or this wallet may not withdraw it", body = crate::ProblemBody, content_type = "application/problem+json"),
        (status = 502, description = "The chain refused or could not be reached", body = crate::ProblemBody, content_type = "application/problem+json"),
    ))]
pub(crate) async fn withdraw(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<WithdrawBody>,
) -> Result<Json<WithdrawnView>, ApiError> {
    Ok(Json(state.node.withdraw(body.what).await?))
}

/// Asks to close this node's lane to a provider's payout address, to take its unspent
/// deposit back: starts the thaw window, during which the provider may still settle
/// what it is owed. Refused while sessions are open on the lane. Funding the lane again
/// cancels the close.
///
/// Honours `Idempotency-Key`.
#[utoipa::path(post, path = "/v1/wallet/reclaim", tag = "chain", security(("bearer" = [])),
    request_body = ReclaimBody,
    params(("Idempotency-Key" = Option<crate::text::IdempotencyKeyText>, Header, description = "Replays the first answer to a retried request")),
    responses(
        (status = 200, description = "The thaw window started", body = ReclaimView),
        (status = 400, description = "Invalid request", body = crate::ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong token", body = crate::ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "No such lane, sessions open on it, a close already asked, or no chain", body = crate::ProblemBody, content_type = "application/problem+json"),
        (status = 502, description = "The chain refused or could not be reached", body = crate::ProblemBody, content_type = "application/problem+json"),
    ))]
pub(crate) async fn reclaim(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<ReclaimBody>,
) -> Result<Json<ReclaimView>, ApiError> {
    Ok(Json(state.node.reclaim(body.payout()?).await?))
}

/// After the thaw window, takes the lane's unspent deposit back to this node's wallet.
///
/// Honours `Idempotency-Key`.
#[utoipa::path(post, path = "/v1/wallet/reclaim/finish", tag = "chain", security(("bearer" = [])),
    request_body = ReclaimBody,
    params(("Idempotency-Key" = Option<crate::text::IdempotencyKeyText>, Header, description = "Replays the first answer to a retried request")),
    responses(
        (status = 200, description = "Refunded", body = RefundedView),
        (status = 400, description = "Invalid request", body = crate::ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong token", body = crate::ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "No close asked, or the thaw window is not over (the answer says when it is)", body = crate::ProblemBody, content_type = "application/problem+json"),
        (status = 502, description = "The chain refused or could not be reached", body = crate::ProblemBody, content_type = "application/problem+json"),
    ))]
pub(crate) async fn finish_reclaim(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<ReclaimBody>,
) -> Result<Json<RefundedView>, ApiError> {
    Ok(Json(state.node.finish_reclaim(body.payout()?).await?))
}

/// Every escrow lane of this node, as renter or provider: deposit and settled total from
/// the chain, acknowledged from the ledger, what is owed and refundable, open sessions,
/// and the close state with the end of its thaw window.
#[utoipa::path(get, path = "/v1/lanes", tag = "chain", security(("bearer" = [])), responses(
    (status = 200, description = "Lanes", body = [LaneStatusView]),
    (status = 401, description = "Missing or wrong token", body = crate::ProblemBody, content_type = "application/problem+json"),
    (status = 409, description = "Not connected to a chain", body = crate::ProblemBody, content_type = "application/problem+json"),
    (status = 502, description = "The chain could not be reached", body = crate::ProblemBody, content_type = "application/problem+json"),
))]
pub(crate) async fn list_lanes(
    State(state): State<AppState>,
) -> Result<Json<Vec<LaneStatusView>>, ApiError> {
    Ok(Json(state.node.lane_status().await?))
}
