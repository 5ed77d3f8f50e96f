//! Settlement state: what was submitted to the escrow contract, what the chain confirmed.
//!
//! The off-chain ledger is the source of truth for what is owed, the chain for what was
//! paid. The store records each settlement transaction of an escrow lane as
//! [`SettlementStatus::Submitted`], then [`Confirmed`](SettlementStatus::Confirmed) (which
//! posts the paid split into the settled accounts, with the transaction hash on the
//! posting) or [`Voided`](SettlementStatus::Voided) (reverted, dropped or reorganised away;
//! a confirmed settlement's posting is reversed). See `Store::settlement_submitted`,
//! `Store::settlement_confirmed`, `Store::settlement_voided` and
//! `Store::unsettled_vouchers`.

use std::fmt;
use std::str::FromStr;

use orien_protocol::{LaneId, ParseIdError, Timestamp, Usdc, Voucher};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::accounts::LaneKey;
use crate::record::Record;

/// The block a confirmed settlement was mined in, kept beside it for people (the money
/// is in [`Settlement`] and its posting; a node that stopped between the two has none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinedAt {
    /// The block number.
    pub block: u64,
}

impl Record for MinedAt {
    const KIND: &'static str = "settlement block";
    const VERSION: u8 = 1;
    const MAX_LEN: usize = 16;
}

/// The provider's payout address of a lane this node funded as renter: what a reclaim
/// names, kept from the funding (the chain keeps only the lane's hash).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LanePayout {
    /// The address the lane pays.
    pub payout: orien_protocol::EvmAddress,
}

impl Record for LanePayout {
    const KIND: &'static str = "lane payout";
    const VERSION: u8 = 1;
    const MAX_LEN: usize = 32;
}

/// The hash of an EVM transaction (32 bytes; `0x…` in text).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TxHash(pub [u8; 32]);

impl fmt::Display for TxHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{}", hex::encode(self.0))
    }
}

impl fmt::Debug for TxHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TxHash({self})")
    }
}

impl FromStr for TxHash {
    type Err = ParseIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.strip_prefix("0x").unwrap_or(s);
        let mut out = [0u8; 32];
        if text.len() != 64 {
            return Err(ParseIdError {
                kind: "transaction hash",
                reason: format!("expected 64 hex digits, got {}", text.len()),
            });
        }
        hex::decode_to_slice(text, &mut out).map_err(|e| ParseIdError {
            kind: "transaction hash",
            reason: e.to_string(),
        })?;
        Ok(Self(out))
    }
}

impl Serialize for TxHash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            self.0.serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for TxHash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            String::deserialize(deserializer)?
                .parse()
                .map_err(D::Error::custom)
        } else {
            <[u8; 32]>::deserialize(deserializer).map(Self)
        }
    }
}

/// Where one settlement transaction stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SettlementStatus {
    /// Sent to the chain, not yet confirmed.
    Submitted,
    /// Confirmed: the lane is settled up to `paid_up_to`; before it, up to `previous`
    /// (by `previous_tx`, if any).
    Confirmed {
        /// Cumulative amount the chain has paid from the lane after this transaction.
        paid_up_to: Usdc,
        /// Cumulative amount paid before it.
        previous: Usdc,
        /// The confirmed settlement before this one.
        previous_tx: Option<TxHash>,
    },
    /// Reverted, dropped or reorganised away; it pays nothing.
    Voided,
}

/// One settlement transaction of one lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settlement {
    /// The escrow lane.
    pub lane: LaneId,
    /// The transaction.
    pub tx: TxHash,
    /// The voucher amount submitted (cumulative).
    pub cumulative: Usdc,
    /// Its status.
    pub status: SettlementStatus,
    /// When it was submitted (or first seen).
    pub submitted_at: Timestamp,
    /// When the status last changed.
    pub updated_at: Timestamp,
}

impl Record for Settlement {
    const KIND: &'static str = "settlement";
    const VERSION: u8 = 1;
    const MAX_LEN: usize = 256;
}

/// The settlement state of one escrow lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaneSettlement {
    /// Who pays whom on the lane.
    pub key: LaneKey,
    /// Total acknowledged on the lane (the lane account's balance).
    pub acked: Usdc,
    /// The largest voucher received for at most `acked`: what the lane settles. (A
    /// voucher above `acked`, for receipts of another session on the lane still on their
    /// way, waits as the lane's [`AheadVoucher`].)
    pub latest_voucher: Option<Voucher>,
    /// Cumulative amount the chain has paid (confirmed settlements).
    pub settled: Usdc,
    /// The latest confirmed settlement.
    pub last_confirmed: Option<TxHash>,
}

impl Record for LaneSettlement {
    const KIND: &'static str = "lane settlement";
    const VERSION: u8 = 1;
    const MAX_LEN: usize = 512;
}

/// The latest voucher of a lane that the chain has not paid in full.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnsettledVoucher {
    /// The escrow lane.
    pub lane: LaneId,
    /// Who pays whom.
    pub key: LaneKey,
    /// The voucher to submit.
    pub voucher: Voucher,
    /// What the chain has paid so far.
    pub settled: Usdc,
    /// Transactions submitted and not yet confirmed or voided, with their amounts.
    pub pending: Vec<(TxHash, Usdc)>,
}

/// Why the escrow skipped a lane's voucher, as the store remembers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SkipKind {
    /// The contract refused the signature or the lane: the voucher never pays.
    Invalid,
    /// The chain had settled at least as much already: the store is behind the chain's
    /// events, which reconciliation brings in.
    Stale,
    /// The lane's deposit is fully settled: nothing pays until the renter funds it again.
    Exhausted,
}

/// A provider's largest voucher of a lane above what its ledger acknowledged on it.
///
/// The renter signs the vouchers of the sessions sharing a lane one at a time, each for
/// the lane's whole total; their acks reach the provider over separate streams, so a
/// voucher may arrive before a receipt it pays for. It waits here until the lane's total
/// reaches it (then it becomes the lane's latest), or until the next session on an idle
/// lane records the receipts that never arrived as a gap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AheadVoucher {
    /// The voucher.
    pub voucher: Voucher,
}

impl Record for AheadVoucher {
    const KIND: &'static str = "ahead voucher";
    const VERSION: u8 = 1;
    const MAX_LEN: usize = 256;
}

/// A lane's voucher that the escrow skipped: not submitted again until a newer voucher
/// arrives (or, when exhausted, the lane is funded again).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedVoucher {
    /// The voucher's cumulative amount.
    pub cumulative: Usdc,
    /// Why.
    pub kind: SkipKind,
    /// The transaction that skipped it.
    pub tx: TxHash,
}

impl Record for SkippedVoucher {
    const KIND: &'static str = "skipped voucher";
    const VERSION: u8 = 1;
    const MAX_LEN: usize = 64;
}
