//! Dispute evidence: receipts that were refused, kept with the reason.

use orien_protocol::{
    ExecId, Millis, ReceiptAck, ReceiptHash, SessionId, Signed, Timestamp, UsageReceipt, Usdc,
};
use serde::{Deserialize, Serialize};

use crate::record::Record;

/// Which cumulative quantity of a receipt is meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Quantity {
    /// Session time.
    SessionTime,
    /// Execution time.
    ExecTime,
    /// CPU time.
    CpuTime,
    /// Amount.
    Amount,
    /// The count of results committed.
    Results,
    /// The price of the execution time.
    ExecAmount,
    /// The price of the artefacts kept.
    ArtefactAmount,
}

/// Why a receipt was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum DisputeReason {
    /// The provider's signature does not verify, or someone else signed.
    #[error("the receipt's signature is not the provider's: {detail}")]
    BadSignature {
        /// What failed.
        detail: String,
    },
    /// The receipt names another session.
    #[error("the receipt belongs to session {found}, not this one")]
    WrongSession {
        /// The session named.
        found: SessionId,
    },
    /// The receipt is not the next in sequence.
    #[error("expected receipt #{expected}, got #{found}")]
    UnexpectedSeq {
        /// The next sequence number.
        expected: u64,
        /// The one received.
        found: u64,
    },
    /// The receipt does not chain onto the previous one.
    #[error("receipt names previous hash {found}, expected {expected}")]
    BrokenChain {
        /// Hash of the last accepted receipt.
        expected: ReceiptHash,
        /// What the receipt named.
        found: ReceiptHash,
    },
    /// A cumulative value went down.
    #[error("cumulative {quantity:?} decreased")]
    Decreasing {
        /// Which one.
        quantity: Quantity,
    },
    /// The provider claims more time than the renter measured, beyond the tolerance.
    #[error("{quantity:?} claimed {claimed}, measured {measured} (tolerance {tolerance})")]
    AboveOwnMeter {
        /// Which quantity.
        quantity: Quantity,
        /// The provider's value.
        claimed: Millis,
        /// The renter's value.
        measured: Millis,
        /// Slack allowed.
        tolerance: Millis,
    },
    /// The amount is not the price of the claimed usage (capped at the budget).
    #[error("amount {claimed} is not the price of the usage claimed ({expected})")]
    WrongAmount {
        /// The provider's amount.
        claimed: Usdc,
        /// What the usage costs.
        expected: Usdc,
    },
    /// The amount exceeds the budget.
    #[error("amount {amount} exceeds the budget {budget}")]
    OverBudget {
        /// The amount claimed.
        amount: Usdc,
        /// The session's budget.
        budget: Usdc,
    },
    /// A different receipt with the same sequence number was already applied.
    #[error("a different receipt #{seq} ({applied}) was already applied")]
    Conflicting {
        /// The sequence number.
        seq: u64,
        /// Hash of the receipt that was applied.
        applied: ReceiptHash,
    },
    /// A call's exit reports a wall time the renter's own timer rules out, or one past
    /// the tool's limit: the provider held the exit back or made the figure up.
    #[error(
        "call {exec} reported {reported} of wall time; the renter measured {measured} and the tool's limit is {limit}"
    )]
    ImplausibleExit {
        /// The call.
        exec: ExecId,
        /// What the exit said.
        reported: Millis,
        /// What the renter's timer said, request to exit.
        measured: Millis,
        /// The tool's wall-time limit plus the slack a kill takes.
        limit: Millis,
    },
    /// A call's signed result does not match what the renter asked for or received.
    #[error("call {exec}: the provider's signed result {fault}")]
    FalseResult {
        /// The call.
        exec: ExecId,
        /// What is wrong with it.
        fault: ResultFault,
    },
    /// The receipt commits to results the renter never took.
    #[error("the receipt commits to {claimed} results; the renter holds the first {held}")]
    ResultsNotHeld {
        /// The count the receipt claims.
        claimed: u64,
        /// The longest run of results the renter holds.
        held: u64,
    },
    /// The provider prices the execution above what the renter's own meter prices it
    /// at (each call at its tool's price), beyond the tolerance.
    #[error("execution priced at {claimed}, measured {measured} (tolerance {tolerance})")]
    ExecAmountAboveOwnMeter {
        /// The provider's execution amount.
        claimed: Usdc,
        /// The renter's.
        measured: Usdc,
        /// Slack allowed.
        tolerance: Usdc,
    },
    /// The receipt's commitment is not the chain of the results the renter took.
    #[error("the receipt's commitment to the first {count} results is not the renter's")]
    ResultsMismatch {
        /// The count committed.
        count: u64,
    },
    /// The receipt charges for artefacts other than what the results it commits to
    /// kept, at the session's price.
    #[error("artefacts charged at {claimed}; the results committed to kept {expected} of them")]
    WrongArtefactAmount {
        /// The provider's artefact amount.
        claimed: Usdc,
        /// The price of the artefacts the committed results name.
        expected: Usdc,
    },
}

/// What is wrong with a call's signed result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, thiserror::Error)]
pub enum ResultFault {
    /// Missing, or not signed by the session's provider.
    #[error("is missing or not signed by the provider")]
    Signature,
    /// Names another session, call, tool or arguments than the renter asked for.
    #[error("names another session, call, tool or arguments")]
    WrongCall,
    /// Its exit is not the exit sent with it.
    #[error("states another exit than the one sent")]
    WrongExit,
    /// Its number was given to an earlier result.
    #[error("repeats the number of an earlier result")]
    RepeatedSeq,
    /// Its standard output hash is not the SHA-256 of the bytes received.
    #[error("states a stdout hash that is not the SHA-256 of the bytes received")]
    Stdout,
    /// Its standard error hash is not the SHA-256 of the bytes received.
    #[error("states a stderr hash that is not the SHA-256 of the bytes received")]
    Stderr,
}

/// A refused receipt, as stored in the `evidence` column family.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// The session.
    pub session: SessionId,
    /// The receipt as received (signature included).
    pub receipt: Signed<UsageReceipt>,
    /// The ack that came with it, if any.
    pub ack: Option<Signed<ReceiptAck>>,
    /// Why it was refused.
    pub reason: DisputeReason,
    /// When it was recorded.
    pub recorded_at: Timestamp,
}

impl Record for Evidence {
    const KIND: &'static str = "evidence";
    // 4: the receipt is an `orien/receipt/v4`, and the artefact amount may be disputed.
    const VERSION: u8 = 4;
    const MAX_LEN: usize = 1024;
}
