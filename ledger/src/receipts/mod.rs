//! The receipt protocol, without transport: the provider issues and chains signed
//! receipts ([`Issuer`]), the renter checks and countersigns them ([`Countersigner`]).
//! Both end with the same chain of [`AckedReceipt`]s, and each receipt commits to the
//! session's signed results both sides hold ([`ResultChain`]).

mod countersigner;
mod issuer;
mod results;

pub use countersigner::{Checked, Countersigner, PendingAck, Refusal, Tolerance, VoucherSigner};
pub use issuer::{AckError, DEFAULT_ACK_TIMEOUT, Issuer};
pub use results::{RepeatedResult, ResultChain, Run};

use orien_protocol::{ReceiptAck, Signed, Timestamp, UsageReceipt, Verified};
use serde::{Deserialize, Serialize};

use crate::record::Record;

/// A receipt and the renter's acknowledgement of it: the dual-signed record both
/// ledgers store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckedReceipt {
    /// Signed by the provider.
    pub receipt: Signed<UsageReceipt>,
    /// Signed by the renter.
    pub ack: Signed<ReceiptAck>,
}

/// An acknowledged receipt whose two signatures this node checked on their way in (or
/// made itself): the [`Issuer`] and the [`Countersigner`] make one, and
/// [`Store::ingest_checked`](crate::Store::ingest_checked) commits it without checking
/// the signatures again. Only whole [`Verified`] halves make one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedReceipt {
    acked: AckedReceipt,
    receipt: UsageReceipt,
    ack: ReceiptAck,
    rule: VoucherRule,
}

/// How the ledger holds an escrow ack's voucher against the lane's acknowledged total.
///
/// Several sessions may share one escrow lane. The renter signs their vouchers one at a
/// time, each for the lane's whole total, so its own ledger's total always equals the
/// voucher it just signed. The provider receives the acks of those sessions over separate
/// streams, in any order: a voucher signed after a receipt the provider has not seen yet
/// is above its total, and one signed before is below its largest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VoucherRule {
    /// The renter signed it for its own ledger's total after this receipt: it must be
    /// exactly that total.
    Exact,
    /// Received from the renter: the largest voucher the lane holds must cover the lane's
    /// total after this receipt; one above it is kept aside until the receipts it pays
    /// for arrive.
    Covering,
}

impl CheckedReceipt {
    /// Joins a checked receipt and an ack received from the renter (the provider's side:
    /// [`VoucherRule::Covering`]).
    pub fn new(receipt: Verified<UsageReceipt>, ack: Verified<ReceiptAck>) -> Self {
        Self::with_rule(receipt, ack, VoucherRule::Covering)
    }

    /// Joins a checked receipt and the ack this node signed for it (the renter's side:
    /// [`VoucherRule::Exact`]).
    pub fn countersigned(receipt: Verified<UsageReceipt>, ack: Verified<ReceiptAck>) -> Self {
        Self::with_rule(receipt, ack, VoucherRule::Exact)
    }

    fn with_rule(
        receipt: Verified<UsageReceipt>,
        ack: Verified<ReceiptAck>,
        rule: VoucherRule,
    ) -> Self {
        let (receipt, receipt_value) = receipt.into_parts();
        let (ack, ack_value) = ack.into_parts();
        Self {
            acked: AckedReceipt { receipt, ack },
            receipt: receipt_value,
            ack: ack_value,
            rule,
        }
    }

    /// How its voucher is held against the lane's total.
    pub const fn rule(&self) -> VoucherRule {
        self.rule
    }

    /// The dual-signed envelopes, as stored and sent.
    pub fn acked(&self) -> &AckedReceipt {
        &self.acked
    }

    /// The receipt's checked content.
    pub fn receipt(&self) -> &UsageReceipt {
        &self.receipt
    }

    /// The ack's checked content.
    pub fn ack(&self) -> &ReceiptAck {
        &self.ack
    }

    /// The envelopes and both contents.
    pub fn into_parts(self) -> (AckedReceipt, UsageReceipt, ReceiptAck, VoucherRule) {
        (self.acked, self.receipt, self.ack, self.rule)
    }
}

impl From<CheckedReceipt> for AckedReceipt {
    fn from(checked: CheckedReceipt) -> Self {
        checked.acked
    }
}

/// An acked receipt as stored in the `receipts` column family.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredReceipt {
    /// The dual-signed receipt, bytes as received.
    pub acked: AckedReceipt,
    /// Wall-clock time of the durable commit.
    pub committed_at: Timestamp,
}

impl Record for StoredReceipt {
    const KIND: &'static str = "receipt";
    // 2: receipts commit to the session's results (`orien/receipt/v2`); 3: they carry
    // the execution amount (`orien/receipt/v3`); 4: the artefact amount
    // (`orien/receipt/v4`).
    const VERSION: u8 = 4;
    // Two envelopes (≤ 192 + 101 and ≤ 192 + 101 bytes) and a timestamp.
    const MAX_LEN: usize = 1 + 293 + 293 + 10;
}
