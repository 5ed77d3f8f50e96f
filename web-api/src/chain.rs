//! Documents of on-chain payment: the node's wallet, escrow lanes and settlements.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::problem::ApiError;
use crate::text::{AddressText, PositiveAmountText};

/// `GET /v1/wallet`: this node's wallet and what the escrow holds for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WalletView {
    /// The wallet's address (pays lanes as renter, receives earnings as provider).
    pub address: String,
    /// Chain id.
    pub chain_id: u64,
    /// The `OrienEscrow` contract.
    pub escrow: String,
    /// The USDC token.
    pub token: String,
    /// USDC in the wallet.
    pub usdc: String,
    /// Provider earnings credited by the escrow and not withdrawn.
    pub earnings: String,
    /// Network fees held by the escrow (all providers).
    pub fees_held: String,
    /// Reserve held by the escrow (all providers).
    pub reserve_held: String,
}

/// Body of `POST /v1/wallet/fund`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FundBody {
    /// The provider's payout address (an offer's `payout`).
    pub to: AddressText,
    /// USDC to add to the lane (e.g. `"5"`).
    pub amount: PositiveAmountText,
}

/// A validated [`FundBody`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FundRequest {
    /// The provider's payout address.
    pub to: orien_protocol::EvmAddress,
    /// The amount (not zero).
    pub amount: orien_protocol::Usdc,
}

impl TryFrom<FundBody> for FundRequest {
    type Error = ApiError;

    fn try_from(body: FundBody) -> Result<Self, ApiError> {
        let to = body
            .to
            .as_str()
            .parse()
            .map_err(|e: orien_protocol::ParseIdError| ApiError::field("to", e.to_string()))?;
        let amount: orien_protocol::Usdc =
            body.amount
                .as_str()
                .parse()
                .map_err(|e: orien_protocol::ParseUsdcError| {
                    ApiError::field("amount", e.to_string())
                })?;
        if amount.is_zero() {
            return Err(ApiError::field("amount", "must be more than zero"));
        }
        Ok(Self { to, amount })
    }
}

/// The answer to `POST /v1/wallet/fund`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FundedView {
    /// The lane.
    pub lane: String,
    /// Its deposit afterwards.
    pub deposit: String,
    /// The funding transaction.
    pub tx: String,
    /// Its block.
    pub block: u64,
}

/// Where a settlement transaction stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SettlementState {
    /// Sent, not confirmed yet.
    Submitted,
    /// Confirmed: it paid `paid`.
    Confirmed,
    /// Reverted, dropped or reorganised away: it paid nothing.
    Voided,
}

/// `GET /v1/settlements`: one settlement transaction of one lane, in this node's ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SettlementRecordView {
    /// The transaction.
    pub tx: String,
    /// The lane it paid from.
    pub lane: String,
    /// The block it was mined in (confirmed; recorded since this version).
    pub block: Option<u64>,
    /// The renter (peer id).
    pub renter: String,
    /// The provider (peer id).
    pub provider: String,
    /// Where it stands.
    pub state: SettlementState,
    /// The voucher it submitted (cumulative on the lane).
    pub voucher: String,
    /// What it paid from the lane (confirmed; `0` otherwise).
    pub paid: String,
    /// The provider's 90 % of `paid` (the change of its share of the lane's settled
    /// total; it can be `-0.000001` on a one micro-USDC step).
    pub provider_part: String,
    /// The network fee's 7 %.
    pub fee_part: String,
    /// The reserve's 3 %.
    pub reserve_part: String,
    /// The lane's settled total after it (confirmed).
    pub paid_up_to: Option<String>,
    /// The sessions it paid for and how much of each (confirmed; from this node's
    /// receipts on the lane, in the order their receipts came).
    pub sessions: Vec<SessionPaidView>,
    /// When it was submitted (or first seen), ms since the Unix epoch.
    pub submitted_at: u64,
    /// When it was confirmed or voided, ms since the Unix epoch.
    pub decided_at: Option<u64>,
}

/// What a settlement paid for one session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SessionPaidView {
    /// The session.
    pub session: String,
    /// The part of the payment that was this session's (before the 90/7/3 split).
    pub amount: String,
}

/// One lane paid by a settlement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LanePaid {
    /// The lane.
    pub lane: String,
    /// What this settlement paid on it.
    pub paid: String,
    /// The lane's settled total afterwards.
    pub settled: String,
}

/// One settlement transaction (`POST /v1/settlements`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SettlementView {
    /// The transaction.
    pub tx: String,
    /// Its block.
    pub block: u64,
    /// Gas it used.
    pub gas_used: u64,
    /// The lanes it paid.
    pub lanes: Vec<LanePaid>,
    /// Change of the provider's escrow balance, in micro-USDC.
    pub provider_credit_micros: i64,
    /// Fee credited to the treasury.
    pub fee: String,
    /// Credited to the reserve.
    pub reserve: String,
}

/// What `POST /v1/wallet/withdraw` takes out of the escrow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum WithdrawKind {
    /// A provider's earnings, to its wallet (its payout address).
    #[default]
    Earnings,
    /// The network fees (7 %), by the treasury's wallet only.
    Fees,
    /// The reserve (3 %), by the reserve's wallet only.
    Reserve,
}

/// Body of `POST /v1/wallet/withdraw`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WithdrawBody {
    /// What to withdraw (default `earnings`).
    #[serde(default)]
    pub what: WithdrawKind,
}

/// The answer to `POST /v1/wallet/withdraw`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WithdrawnView {
    /// What was withdrawn.
    pub what: WithdrawKind,
    /// How much USDC.
    pub amount: String,
    /// Where it went (this node's wallet).
    pub to: String,
    /// The transaction.
    pub tx: String,
    /// Its block.
    pub block: u64,
}

/// Body of `POST /v1/wallet/reclaim` and `POST /v1/wallet/reclaim/finish`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReclaimBody {
    /// The payout address of the lane's provider (as for `POST /v1/wallet/fund`).
    pub to: AddressText,
}

impl ReclaimBody {
    /// The provider's payout address.
    pub fn payout(&self) -> Result<orien_protocol::EvmAddress, ApiError> {
        self.to
            .as_str()
            .parse()
            .map_err(|e: orien_protocol::ParseIdError| ApiError::field("to", e.to_string()))
    }
}

/// The answer to `POST /v1/wallet/reclaim`: the thaw window started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReclaimView {
    /// The lane.
    pub lane: String,
    /// When the unspent deposit can be taken back (`POST /v1/wallet/reclaim/finish`),
    /// Unix seconds of the chain; until then the provider may still settle what it is
    /// owed. Funding the lane again cancels the close.
    pub thaw_ends_at: u64,
    /// The transaction.
    pub tx: String,
    /// Its block.
    pub block: u64,
}

/// The answer to `POST /v1/wallet/reclaim/finish`: the unspent deposit refunded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RefundedView {
    /// The lane.
    pub lane: String,
    /// USDC back in this node's wallet.
    pub refund: String,
    /// The transaction.
    pub tx: String,
    /// Its block.
    pub block: u64,
}

/// Where a lane is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LaneClose {
    /// In use; no close asked.
    Open,
    /// The renter asked to close it; the thaw window runs.
    Thawing,
    /// The thaw window is over: the renter can take its unspent deposit back.
    Refundable,
}

/// This node's side of an escrow lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LaneRole {
    /// It pays on the lane.
    Renter,
    /// It is paid from the lane.
    Provider,
}

/// `GET /v1/lanes`: an escrow lane of this node, its ledger and the chain side by side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LaneStatusView {
    /// The lane id.
    pub lane: String,
    /// This node's side.
    pub role: LaneRole,
    /// The renter (peer id).
    pub renter: String,
    /// The provider (peer id).
    pub provider: String,
    /// The provider's payout address, when this node funded or rented on the lane (what
    /// a reclaim names as `to`).
    pub payout: Option<String>,
    /// USDC deposited on the lane (chain).
    pub deposit: String,
    /// Acknowledged by the renter's acks (ledger).
    pub acked: String,
    /// Paid to the provider by settlements (chain).
    pub settled: String,
    /// Acknowledged and not settled yet: the provider's to claim before the thaw ends.
    pub owed: String,
    /// What a reclaim returns to the renter once what is owed is settled (deposit less
    /// acknowledged).
    pub refundable: String,
    /// Sessions open on the lane now.
    pub sessions_open: u32,
    /// The latest voucher for the lane (cumulative; the provider's side settles it).
    pub voucher: Option<String>,
    /// The latest confirmed settlement transaction.
    pub last_tx: Option<String>,
    /// Its close state.
    pub close: LaneClose,
    /// When the thaw window ends, Unix seconds of the chain (with `thawing` or
    /// `refundable`).
    pub thaw_ends_at: Option<u64>,
}
