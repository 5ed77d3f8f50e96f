//! What the ledger keeps about a session: its terms (fixed at open) and its head (the
//! last acknowledged receipt and the session's status).

use orien_protocol::{
    CloseReason, Millis, NodeId, PaymentLane, Pricing, ReceiptHash, SessionId, Timestamp, Usdc,
};
use serde::{Deserialize, Serialize};

use crate::accounts::LaneKey;
use crate::dispute::DisputeReason;
use crate::record::Record;

/// The terms of a session, recorded when it opens and never changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// The session.
    pub session: SessionId,
    /// The node that runs the tool and signs receipts.
    pub provider: NodeId,
    /// The node that pays and countersigns.
    pub renter: NodeId,
    /// How the session is paid.
    pub payment: PaymentLane,
    /// Prices of the offer the session runs under.
    pub pricing: Pricing,
    /// Most the session may cost.
    pub budget: Usdc,
    /// Wall-clock time of opening.
    pub opened_at: Timestamp,
}

impl SessionRecord {
    /// The lane the session is paid from.
    pub fn lane(&self) -> LaneKey {
        LaneKey {
            renter: self.renter,
            provider: self.provider,
            escrow: match self.payment {
                PaymentLane::Ledger => None,
                PaymentLane::Escrow { lane, .. } => Some(lane),
            },
        }
    }
}

impl Record for SessionRecord {
    const KIND: &'static str = "session";
    // 2: prices carry the artefact price.
    const VERSION: u8 = 2;
    const MAX_LEN: usize = 512;
}

/// Why a session stopped accruing usage without being closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SuspendReason {
    /// The budget is spent.
    BudgetReached,
    /// The renter did not acknowledge receipt `seq` within the ack timeout.
    AckTimeout {
        /// The unacknowledged receipt.
        seq: u64,
    },
    /// Receipt `seq` failed the renter's checks; it is kept as evidence.
    Dispute {
        /// The disputed receipt.
        seq: u64,
        /// What was wrong with it.
        reason: DisputeReason,
    },
}

/// Where a session stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionStatus {
    /// Open and metering.
    Open,
    /// Open but not metering.
    Suspended(SuspendReason),
    /// Closed; no receipt will follow.
    Closed(CloseReason),
}

/// The state of a session after its last acknowledged receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionHead {
    /// Sequence number of the last acked receipt (0 before the first).
    pub seq: u64,
    /// Its hash, which the next receipt must name ([`ReceiptHash::GENESIS`] at first).
    pub hash: ReceiptHash,
    /// Cumulative session time.
    pub session_time: Millis,
    /// Cumulative execution time.
    pub exec_time: Millis,
    /// Cumulative CPU time.
    pub cpu_time: Millis,
    /// Cumulative amount.
    pub amount: Usdc,
    /// Status.
    pub status: SessionStatus,
    /// How many of the session's results the last receipt commits to.
    pub results: u64,
}

impl SessionHead {
    /// The head of a session with no receipt yet.
    pub const fn new() -> Self {
        Self {
            seq: 0,
            hash: ReceiptHash::GENESIS,
            session_time: Millis::ZERO,
            exec_time: Millis::ZERO,
            cpu_time: Millis::ZERO,
            amount: Usdc::ZERO,
            status: SessionStatus::Open,
            results: 0,
        }
    }
}

impl Default for SessionHead {
    fn default() -> Self {
        Self::new()
    }
}

impl Record for SessionHead {
    const KIND: &'static str = "session head";
    // 2: the count of results committed.
    const VERSION: u8 = 2;
    const MAX_LEN: usize = 512;
}
