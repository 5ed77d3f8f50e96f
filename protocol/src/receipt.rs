//! Usage receipts and their acknowledgements: the evidence of what a session cost.
//!
//! The provider signs a [`UsageReceipt`] with **cumulative** usage and amount; each
//! receipt names the hash of the previous one, so receipts form a chain. The renter
//! checks it against its own meter and answers with a signed [`ReceiptAck`], optionally
//! carrying an on-chain payment [`Voucher`] for the same cumulative amount. A receipt
//! together with its ack is the dual-signed record both ledgers store.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::bytes;
use crate::error::InvalidMessage;
use crate::ids::{LaneId, ReceiptHash, SessionId};
use crate::money::Usdc;
use crate::result::ResultsCommitment;
use crate::signed::{Signed, SignedPayload};
use crate::time::{Millis, Timestamp};
use crate::wire::Message;

/// Cumulative usage of a session up to `issued_at`, signed by the provider.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct UsageReceipt {
    /// The session.
    pub session: SessionId,
    /// Position in the session's chain, starting at 1.
    pub seq: u64,
    /// Cumulative session time (open and not suspended).
    pub session_time: Millis,
    /// Cumulative execution time.
    pub exec_time: Millis,
    /// Cumulative CPU time reported by the sandbox.
    pub cpu_time: Millis,
    /// Cumulative price of the execution time, each call at its own tool's price per
    /// minute of execution (`floor(Σ ms × price / 60 000)` over the session's prices).
    pub exec_amount: Usdc,
    /// Cumulative amount owed: the session time at the session's price
    /// ([`Pricing::session_amount`](crate::Pricing::session_amount)) plus `exec_amount`
    /// plus `artefact_amount`, capped at the budget.
    pub amount: Usdc,
    /// Hash of the previous receipt, or [`ReceiptHash::GENESIS`] for `seq == 1`.
    pub prev: ReceiptHash,
    /// Wall-clock time of issue, for humans.
    pub issued_at: Timestamp,
    /// The session's results the renter had acknowledged when this was issued (the
    /// longest run from the first).
    pub results: ResultsCommitment,
    /// Cumulative price of keeping the artefacts of the results this receipt commits to:
    /// the sum over them of [`Pricing::artefact_amount`](crate::Pricing::artefact_amount)
    /// of each result's kept bytes, at the session's price.
    pub artefact_amount: Usdc,
}

impl Message for UsageReceipt {
    const KIND: &'static str = "UsageReceipt";
    const MAX_ENCODED_LEN: usize = 192;

    fn validate(&self) -> Result<(), InvalidMessage> {
        if self.seq == 0 {
            return Err(InvalidMessage::new("seq", "receipts are numbered from 1"));
        }
        if (self.seq == 1) != (self.prev == ReceiptHash::GENESIS) {
            return Err(InvalidMessage::new(
                "prev",
                "only the first receipt has the genesis hash",
            ));
        }
        Ok(())
    }
}

impl SignedPayload for UsageReceipt {
    const DOMAIN: &'static str = "orien/receipt/v4";
}

impl Signed<UsageReceipt> {
    /// The hash the next receipt and the ack refer to.
    pub fn receipt_hash(&self) -> ReceiptHash {
        ReceiptHash::from_bytes(self.content_hash())
    }
}

/// A 65-byte secp256k1 signature (`r ‖ s ‖ v`) as used by EVM contracts.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct EvmSignature(pub [u8; 65]);

impl fmt::Debug for EvmSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EvmSignature(0x{})", hex::encode(self.0))
    }
}

impl Serialize for EvmSignature {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        bytes::serialize(&self.0, "0x", serializer)
    }
}

impl<'de> Deserialize<'de> for EvmSignature {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        bytes::deserialize::<D, 65>("EVM signature", "0x", deserializer).map(Self)
    }
}

/// An EIP-712 payment voucher: the renter's wallet authorises the escrow to pay up to
/// `cumulative` from `lane`. Verified by the provider with the chain client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Voucher {
    /// The escrow lane.
    pub lane: LaneId,
    /// Cumulative amount payable from the lane.
    pub cumulative: Usdc,
    /// EIP-712 signature by the renter's wallet key.
    pub signature: EvmSignature,
}

/// The renter's countersignature of one receipt.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ReceiptAck {
    /// The session.
    pub session: SessionId,
    /// Sequence number of the acknowledged receipt.
    pub seq: u64,
    /// Hash of the acknowledged receipt.
    pub receipt: ReceiptHash,
    /// Payment voucher for the receipt's cumulative amount, on escrow lanes.
    pub voucher: Option<Voucher>,
}

impl Message for ReceiptAck {
    const KIND: &'static str = "ReceiptAck";
    const MAX_ENCODED_LEN: usize = 192;

    fn validate(&self) -> Result<(), InvalidMessage> {
        if self.seq == 0 {
            return Err(InvalidMessage::new("seq", "receipts are numbered from 1"));
        }
        Ok(())
    }
}

impl SignedPayload for ReceiptAck {
    const DOMAIN: &'static str = "orien/receipt-ack/v1";
}
