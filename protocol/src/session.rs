//! Opening and closing a metered session over [`SESSION_PROTOCOL`](crate::SESSION_PROTOCOL).
//!
//! These messages travel on an authenticated libp2p connection, so the peer is known;
//! the renter's identity in [`OpenSession`] must match that peer.

use serde::{Deserialize, Serialize};

use crate::error::InvalidMessage;
use crate::ids::{EvmAddress, LaneId, NodeId, OfferId, SessionId};
use crate::money::Usdc;
use crate::receipt::Voucher;
use crate::time::Millis;
use crate::wire::{Message, check_len};

/// Longest free-text detail in a rejection, an error or an execution's outcome.
pub const MAX_DETAIL_LEN: usize = 256;

/// Fits free text (which may quote what a peer sent) into [`MAX_DETAIL_LEN`] bytes: cut
/// at a character boundary and marked with `…`. Every detail a node sends goes through
/// it, so no answer is lost to the limit.
pub fn fit_detail(detail: impl Into<String>) -> String {
    const MARK: &str = "…";
    let mut detail = detail.into();
    if detail.len() <= MAX_DETAIL_LEN {
        return detail;
    }
    let mut end = MAX_DETAIL_LEN - MARK.len();
    while !detail.is_char_boundary(end) {
        end -= 1;
    }
    detail.truncate(end);
    detail.push_str(MARK);
    detail
}

/// How the renter pays for the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentLane {
    /// Settled in both nodes' embedded ledgers only; nothing on chain.
    Ledger,
    /// An `OrienEscrow` lane funded by the renter's wallet.
    Escrow {
        /// EVM chain id the escrow lives on.
        chain_id: u64,
        /// Address of the escrow contract.
        contract: EvmAddress,
        /// The lane between this renter and this provider.
        lane: LaneId,
        /// The renter's wallet, which signs vouchers.
        renter_wallet: EvmAddress,
    },
}

/// What one side has acknowledged on a lane (renter → provider, through one escrow
/// lane or the ledgers) before a session opens, with the renter's latest voucher for that
/// total on escrow lanes.
///
/// Both sides exchange it at open and count the new session's vouchers from the larger
/// total, proved by the renter's own signature: a receipt one side committed and the
/// other never saw (a crash between the two commits, an ack lost at the end of a session)
/// never wedges the lane. The side that was behind records the gap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LaneHead {
    /// Cumulative amount acknowledged on the lane.
    pub acked: Usdc,
    /// The renter-signed voucher for `acked` (escrow lanes with `acked > 0`).
    pub voucher: Option<Voucher>,
}

impl LaneHead {
    fn validate(&self, field: &'static str) -> Result<(), InvalidMessage> {
        match &self.voucher {
            Some(v) if v.cumulative != self.acked => Err(InvalidMessage::new(
                field,
                "the voucher is not for the acknowledged total",
            )),
            _ => Ok(()),
        }
    }
}

/// The renter asks a provider to open a session on one of its offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenSession {
    /// The offer to rent (its hash).
    pub offer: OfferId,
    /// The renter; must be the peer that sent the request.
    pub renter: NodeId,
    /// Most the renter will pay in this session; the provider suspends at it.
    pub budget: Usdc,
    /// Longest the session may stay open.
    pub max_duration: Millis,
    /// How the session is paid.
    pub payment: PaymentLane,
    /// What the renter has acknowledged on the lane so far.
    pub lane: LaneHead,
}

impl Message for OpenSession {
    const KIND: &'static str = "OpenSession";
    const MAX_ENCODED_LEN: usize = 512;

    fn validate(&self) -> Result<(), InvalidMessage> {
        if self.budget.is_zero() {
            return Err(InvalidMessage::new("budget", "must be greater than zero"));
        }
        if self.max_duration == Millis::ZERO {
            return Err(InvalidMessage::new(
                "max_duration",
                "must be greater than zero",
            ));
        }
        if let PaymentLane::Escrow {
            contract,
            renter_wallet,
            ..
        } = self.payment
            && (contract == EvmAddress::ZERO || renter_wallet == EvmAddress::ZERO)
        {
            return Err(InvalidMessage::new("payment", "zero address"));
        }
        if self.payment == PaymentLane::Ledger && self.lane.voucher.is_some() {
            return Err(InvalidMessage::new(
                "lane.voucher",
                "a voucher on a ledger-paid lane",
            ));
        }
        self.lane.validate("lane.voucher")
    }
}

/// The provider accepts: the sandbox is ready and metering has started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionAccepted {
    /// The new session.
    pub session: SessionId,
    /// The offer it runs under.
    pub offer: OfferId,
    /// Budget granted (equal to the requested one).
    pub budget: Usdc,
    /// Longest the session will stay open (at most the requested one).
    pub max_duration: Millis,
    /// How often the provider sends a receipt while the session is open.
    pub receipt_interval: Millis,
    /// How long the provider waits for an ack before it suspends the session.
    pub ack_timeout: Millis,
    /// The lane total the session's vouchers count from (the larger of the two sides'),
    /// with its voucher when it is the provider's and above the renter's.
    pub lane: LaneHead,
}

impl Message for SessionAccepted {
    const KIND: &'static str = "SessionAccepted";
    const MAX_ENCODED_LEN: usize = 512;

    fn validate(&self) -> Result<(), InvalidMessage> {
        if self.receipt_interval == Millis::ZERO {
            return Err(InvalidMessage::new(
                "receipt_interval",
                "must be greater than zero",
            ));
        }
        if self.ack_timeout == Millis::ZERO {
            return Err(InvalidMessage::new(
                "ack_timeout",
                "must be greater than zero",
            ));
        }
        self.lane.validate("lane.voucher")
    }
}

/// Why a provider refused to open a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// The provider has no such offer (never made, withdrawn or superseded).
    UnknownOffer,
    /// The offer has expired.
    OfferExpired,
    /// The budget does not cover the minimum the provider requires.
    BudgetTooLow {
        /// Smallest budget accepted.
        minimum: Usdc,
    },
    /// The escrow lane's unspent deposit does not cover the budget.
    InsufficientDeposit {
        /// What the lane can still pay.
        available: Usdc,
    },
    /// The requested duration is longer than the provider allows.
    DurationTooLong {
        /// Longest duration accepted.
        max: Millis,
    },
    /// The provider runs as many sessions as it can.
    AtCapacity,
    /// The provider does not accept this kind of payment.
    PaymentNotSupported,
    /// The sandbox could not be created; the detail says why.
    SandboxUnavailable {
        /// Human-readable detail.
        detail: String,
    },
    /// The request broke a rule; the detail says which.
    InvalidRequest {
        /// Human-readable detail.
        detail: String,
    },
    /// The provider is connected to a chain and takes ledger-paid sessions only from the
    /// peers its operator lists: pay from an escrow lane.
    EscrowRequired,
    /// The renter asked to close the escrow lane; it takes no new session until the
    /// close is finished or cancelled by a top-up.
    LaneClosing,
    /// The renter already has as many sessions open with this provider as it allows.
    TooManySessions {
        /// Sessions one renter may hold at once.
        max: u32,
    },
    /// The provider's operator does not serve this renter (a deny list, or an allow
    /// list without it).
    NotServed,
    /// The renter opened as many sessions in the last minute as the provider allows.
    OpeningTooOften {
        /// Opens one renter may make in a minute.
        per_minute: u32,
    },
}

/// The provider refuses to open a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRejected {
    /// The offer that was asked for.
    pub offer: OfferId,
    /// Why.
    pub reason: RejectReason,
}

impl Message for SessionRejected {
    const KIND: &'static str = "SessionRejected";
    const MAX_ENCODED_LEN: usize = 512;

    fn validate(&self) -> Result<(), InvalidMessage> {
        match &self.reason {
            RejectReason::SandboxUnavailable { detail }
            | RejectReason::InvalidRequest { detail } => {
                check_len("reason.detail", detail, MAX_DETAIL_LEN)
            }
            _ => Ok(()),
        }
    }
}

/// Why a session ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    /// The renter is done.
    RenterRequested,
    /// The budget is spent.
    BudgetExhausted,
    /// The maximum duration was reached.
    MaxDuration,
    /// The renter did not acknowledge a receipt in time.
    AckTimeout,
    /// The peer was unreachable for longer than the grace period.
    Disconnected,
    /// The provider is shutting down.
    ProviderShutdown,
    /// A receipt failed the renter's checks and is kept as evidence.
    Dispute,
    /// The renter asked to close the escrow lane the session is paid from.
    LaneClosing,
    /// The node restarted (after a crash) and closed out the sessions it had open: what
    /// was acknowledged stands, the rest is the loss bound's.
    Restarted,
}

/// Either side closes a session. The provider answers with a final receipt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloseSession {
    /// The session to close.
    pub session: SessionId,
    /// Why.
    pub reason: CloseReason,
}

impl Message for CloseSession {
    const KIND: &'static str = "CloseSession";
    const MAX_ENCODED_LEN: usize = 64;
}
