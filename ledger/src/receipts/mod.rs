//! The receipt protocol, without transport: the provider issues and chains signed
//! receipts ([`Issuer`]), the renter checks and countersigns them ([`Countersigner`]).
//! Both end with the same chain of [`AckedReceipt`]s.

mod countersigner;
mod issuer;

pub use countersigner::{Checked, Countersigner, PendingAck, Refusal, Tolerance, VoucherSigner};
pub use issuer::{AckError, DEFAULT_ACK_TIMEOUT, Issuer};

use orien_protocol::{ReceiptAck, Signed, Timestamp, UsageReceipt};
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
    const VERSION: u8 = 1;
    // Two envelopes (≤ 128 + 101 and ≤ 192 + 101 bytes) and a timestamp.
    const MAX_LEN: usize = 1 + 229 + 293 + 10;
}
