//! The escrow's data in Rust terms: its deploy parameters, lane and earnings state, and the
//! outcome of funding and settlement transactions, decoded from its views and events.

use std::time::Duration;

use alloy::primitives::U256;
use orien_protocol::{EvmAddress, LaneId, Usdc};

use super::error::ChainError;
use super::transactor::Mined;

/// Constructor arguments of the escrow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EscrowParams {
    /// The escrowed token (USDC).
    pub token: EvmAddress,
    /// Owner of the 7 % protocol fee.
    pub treasury: EvmAddress,
    /// Owner of the 3 % reserve.
    pub reserve: EvmAddress,
    /// Time a provider has to settle after a renter's close request (1 s to 30 days).
    pub thaw_period: Duration,
}

/// A lane as the contract stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaneState {
    /// Everything the renter put in.
    pub deposit: Usdc,
    /// Cumulative amount paid out to provider, fee and reserve.
    pub settled: Usdc,
    /// Unix time (seconds) of a pending close request.
    pub close_requested_at: Option<u64>,
}

impl LaneState {
    /// What the lane can still pay: `deposit − settled`.
    pub fn unspent(&self) -> Usdc {
        Usdc::from_micros(self.deposit.micros().saturating_sub(self.settled.micros()))
    }
}

/// A provider's earnings held by the escrow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Earnings {
    /// Credited and not withdrawn.
    pub balance: Usdc,
    /// What can be withdrawn now: the balance minus one micro-USDC per lane whose next
    /// 1 µUSDC step would lower the provider's cumulative share (see the contract).
    pub withdrawable: Usdc,
}

/// The result of funding a lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Funded {
    /// The lane.
    pub lane: LaneId,
    /// Its deposit afterwards.
    pub deposit: Usdc,
    /// The funding transaction.
    pub mined: Mined,
}

/// Why the contract skipped a voucher of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// Bad or high-s signature, or the lane is not (signer → sender).
    InvalidVoucher,
    /// Not above what the lane already settled (a replay or an old voucher).
    Stale,
    /// The lane's deposit is fully settled.
    Exhausted,
}

/// One voucher the contract redeemed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaneSettled {
    /// The lane.
    pub lane: LaneId,
    /// The lane's settled total afterwards.
    pub settled: Usdc,
    /// What this voucher paid.
    pub paid: Usdc,
}

/// One voucher the contract skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VoucherSkipped {
    /// The lane the voucher named.
    pub lane: LaneId,
    /// The voucher's cumulative amount.
    pub cumulative: Usdc,
    /// Why it paid nothing.
    pub reason: SkipReason,
}

/// What one `settleBatch` transaction did, read from its events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchSettlement {
    /// The transaction.
    pub mined: Mined,
    /// Redeemed vouchers, in batch order.
    pub settled: Vec<LaneSettled>,
    /// Skipped vouchers, in batch order.
    pub skipped: Vec<VoucherSkipped>,
    /// Change of the provider's balance (negative by at most one per 99 → 100 step).
    pub provider_credit: i128,
    /// Fee credited to the treasury.
    pub fee: Usdc,
    /// Credited to the reserve.
    pub reserve: Usdc,
}

/// Where a settlement transaction sent earlier stands on chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettlementTx {
    /// Mined and successful: what it paid.
    Mined(Box<BatchSettlement>),
    /// Mined and reverted: it paid nothing.
    Reverted,
    /// Known to the node, not mined yet.
    Pending,
    /// Unknown to the node: dropped, replaced, or never sent.
    Unknown,
}

impl BatchSettlement {
    /// Everything the batch moved out of lanes.
    pub fn paid(&self) -> Usdc {
        Usdc::from_micros(self.settled.iter().map(|s| s.paid.micros()).sum())
    }
}

/// Where an escrow event was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EscrowLog {
    /// Block number.
    pub block: u64,
    /// Block hash (to notice a reorganisation).
    pub block_hash: [u8; 32],
    /// Transaction hash.
    pub tx: [u8; 32],
    /// The node reports the log as removed by a reorganisation.
    pub removed: bool,
}

pub(crate) fn skip_reason(raw: u8) -> Result<SkipReason, ChainError> {
    match raw {
        0 => Ok(SkipReason::InvalidVoucher),
        1 => Ok(SkipReason::Stale),
        2 => Ok(SkipReason::Exhausted),
        other => Err(ChainError::Unexpected(format!(
            "unknown skip reason {other}"
        ))),
    }
}

pub(crate) fn usdc_from_u256(value: U256) -> Result<Usdc, ChainError> {
    u64::try_from(value)
        .map(Usdc::from_micros)
        .map_err(|_| ChainError::AmountOutOfRange(value.to_string()))
}
