//! [`Attestation`]: what one renter has seen of the providers it rented from, signed and
//! gossiped on [`ATTESTATIONS_TOPIC`](crate::ATTESTATIONS_TOPIC), with the evidence that
//! it has paid someone: up to [`MAX_PAYMENT_PROOFS`] of its dual-signed receipts.
//!
//! The counts are the attester's word; the receipts are not. A receipt is signed by its
//! provider and its ack by the attester, so a node that reads an attestation knows whom
//! the attester paid and how much, and can weigh the counts by the part of that it can
//! itself vouch for (the payments to providers it has paid too). Keys that only ever
//! paid each other carry receipts among themselves, which no one else can vouch for.
//!
//! A receipt does not name its renter, so anyone who saw a proof can countersign the
//! same receipt; a reader therefore credits a receipt presented by two attesters to
//! neither (see the daemon's reputation docs).

use serde::{Deserialize, Serialize};

use crate::error::InvalidMessage;
use crate::ids::{NodeId, ReceiptHash, SessionId};
use crate::money::Usdc;
use crate::receipt::{ReceiptAck, UsageReceipt};
use crate::signed::{Signed, SignedPayload};
use crate::time::{Millis, Timestamp};
use crate::wire::Message;

/// Most providers one attestation speaks of.
pub const MAX_ATTESTED_PROVIDERS: usize = 32;
/// Most receipts one attestation carries as its payments.
pub const MAX_PAYMENT_PROOFS: usize = 8;
/// Oldest attestation a node keeps: attesters publish again well before.
pub const MAX_ATTESTATION_AGE: Millis = Millis(24 * 60 * 60 * 1000);

/// The attester's record of one provider: calls and sessions it rented, as its
/// reputation counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProviderRecord {
    /// The provider.
    pub provider: NodeId,
    /// Calls that ran to their exit.
    pub calls_completed: u64,
    /// Calls that did not, for a reason other than their arguments.
    pub calls_failed: u64,
    /// Sessions the provider ended early.
    pub sessions_failed: u64,
    /// Sessions ended by a dispute of its receipts or results.
    pub disputes: u64,
}

/// One payment of the attester: a receipt its provider signed and the attester's ack
/// of exactly that receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentProof {
    /// Signed by the provider that was paid.
    pub receipt: Signed<UsageReceipt>,
    /// Signed by the attester.
    pub ack: Signed<ReceiptAck>,
}

/// A payment read from a [`PaymentProof`] whose signatures verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Payment {
    /// Who was paid (the receipt's signer).
    pub provider: NodeId,
    /// The session.
    pub session: SessionId,
    /// The receipt acknowledged.
    pub receipt: ReceiptHash,
    /// The cumulative amount the attester acknowledged owing.
    pub amount: Usdc,
}

impl PaymentProof {
    /// Checks both signatures and that `renter` acknowledged exactly this receipt.
    pub fn verify(&self, renter: &NodeId) -> Result<Payment, InvalidMessage> {
        let receipt = self
            .receipt
            .verify()
            .map_err(|e| InvalidMessage::new("payments", format!("receipt: {e}")))?;
        let ack = self
            .ack
            .verify_from(renter)
            .map_err(|e| InvalidMessage::new("payments", format!("ack: {e}")))?;
        let provider = *self.receipt.signer();
        if provider == *renter {
            return Err(InvalidMessage::new(
                "payments",
                "a receipt the attester signed itself proves no payment",
            ));
        }
        let hash = self.receipt.receipt_hash();
        if ack.receipt != hash || ack.session != receipt.session || ack.seq != receipt.seq {
            return Err(InvalidMessage::new(
                "payments",
                "the ack is not of the receipt beside it",
            ));
        }
        Ok(Payment {
            provider,
            session: receipt.session,
            receipt: hash,
            amount: receipt.amount,
        })
    }
}

/// A renter's signed account of the providers it rented from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attestation {
    /// The renter; must equal the signer.
    pub attester: NodeId,
    /// When it was signed; a newer attestation of the same attester supersedes older
    /// ones.
    pub issued_at: Timestamp,
    /// Its record of each provider, sorted by provider, each once, never itself (at most
    /// [`MAX_ATTESTED_PROVIDERS`]).
    pub providers: Vec<ProviderRecord>,
    /// Its payments, each of another session (at most [`MAX_PAYMENT_PROOFS`]).
    pub payments: Vec<PaymentProof>,
}

impl Attestation {
    /// The payments, each proof's two signatures checked, each of another session.
    /// Not part of [`Message::validate`], which checks the shape only: a reader verifies
    /// the proofs once, when it weighs them.
    pub fn verified_payments(&self) -> Result<Vec<Payment>, InvalidMessage> {
        let payments = self
            .payments
            .iter()
            .map(|proof| proof.verify(&self.attester))
            .collect::<Result<Vec<_>, _>>()?;
        let mut sessions: Vec<SessionId> = payments.iter().map(|p| p.session).collect();
        sessions.sort_unstable();
        if sessions.windows(2).any(|w| w[0] == w[1]) {
            return Err(InvalidMessage::new(
                "payments",
                "each proof is of another session",
            ));
        }
        Ok(payments)
    }

    /// Its record of `provider`, if it speaks of it.
    pub fn record_of(&self, provider: &NodeId) -> Option<&ProviderRecord> {
        self.providers
            .binary_search_by(|r| r.provider.cmp(provider))
            .ok()
            .map(|i| &self.providers[i])
    }
}

impl Message for Attestation {
    const KIND: &'static str = "Attestation";
    // 32 records of at most 32 + 4 × 10 bytes, 8 proofs of two envelopes of at most
    // 192 + 101 bytes, and headroom.
    const MAX_ENCODED_LEN: usize = 8 * 1024;

    fn validate(&self) -> Result<(), InvalidMessage> {
        if self.providers.len() > MAX_ATTESTED_PROVIDERS {
            return Err(InvalidMessage::new(
                "providers",
                format!("at most {MAX_ATTESTED_PROVIDERS}"),
            ));
        }
        if self
            .providers
            .windows(2)
            .any(|w| w[0].provider >= w[1].provider)
        {
            return Err(InvalidMessage::new(
                "providers",
                "must be sorted by provider, each once",
            ));
        }
        if self.record_of(&self.attester).is_some() {
            return Err(InvalidMessage::new(
                "providers",
                "an attester does not attest for itself",
            ));
        }
        if self.payments.len() > MAX_PAYMENT_PROOFS {
            return Err(InvalidMessage::new(
                "payments",
                format!("at most {MAX_PAYMENT_PROOFS}"),
            ));
        }
        Ok(())
    }
}

impl SignedPayload for Attestation {
    const DOMAIN: &'static str = "orien/attestation/v1";

    fn author(&self) -> Option<&NodeId> {
        Some(&self.attester)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::ResultsCommitment;
    use crate::signed::NodeKey;

    fn proof(provider: &NodeKey, renter: &NodeKey, amount: u64) -> PaymentProof {
        let receipt = provider
            .sign(&UsageReceipt {
                session: SessionId::random(),
                seq: 1,
                session_time: Millis(60_000),
                exec_time: Millis(0),
                cpu_time: Millis(0),
                exec_amount: Usdc::ZERO,
                artefact_amount: Usdc::ZERO,
                amount: Usdc::from_micros(amount),
                prev: ReceiptHash::GENESIS,
                issued_at: Timestamp(1_000),
                results: ResultsCommitment::NONE,
            })
            .unwrap();
        let body = receipt.verify().unwrap();
        let ack = renter
            .sign(&ReceiptAck {
                session: body.session,
                seq: 1,
                receipt: receipt.receipt_hash(),
                voucher: None,
            })
            .unwrap();
        PaymentProof { receipt, ack }
    }

    fn attestation(attester: &NodeKey, payments: Vec<PaymentProof>) -> Attestation {
        Attestation {
            attester: attester.node_id(),
            issued_at: Timestamp(2_000),
            providers: Vec::new(),
            payments,
        }
    }

    #[test]
    fn a_proof_yields_its_provider_and_amount_and_only_for_its_own_renter() {
        let (provider, renter, other) = (
            NodeKey::generate(),
            NodeKey::generate(),
            NodeKey::generate(),
        );
        let proof = proof(&provider, &renter, 40_000);
        let payment = proof.verify(&renter.node_id()).unwrap();
        assert_eq!(payment.provider, provider.node_id());
        assert_eq!(payment.amount, Usdc::from_micros(40_000));
        assert!(proof.verify(&other.node_id()).is_err());
        let signed = renter
            .sign(&attestation(&renter, vec![proof.clone()]))
            .unwrap();
        assert_eq!(
            signed.verify().unwrap().verified_payments().unwrap(),
            vec![payment]
        );
        // Signed by someone else than the attester it names: refused.
        assert!(
            other
                .sign(&attestation(&renter, vec![proof]))
                .unwrap()
                .verify()
                .is_err()
        );
    }

    #[test]
    fn an_ack_of_another_receipt_or_a_self_paid_receipt_is_refused() {
        let (provider, renter) = (NodeKey::generate(), NodeKey::generate());
        let (a, b) = (proof(&provider, &renter, 1), proof(&provider, &renter, 2));
        let swapped = PaymentProof {
            receipt: a.receipt.clone(),
            ack: b.ack.clone(),
        };
        assert!(swapped.verify(&renter.node_id()).is_err());
        let self_paid = proof(&renter, &renter, 5);
        assert!(self_paid.verify(&renter.node_id()).is_err());
        let twice = attestation(&renter, vec![a.clone(), a]);
        assert!(
            twice.verified_payments().is_err(),
            "one session proves one payment"
        );
    }

    #[test]
    fn records_are_sorted_unique_bounded_and_never_of_the_attester() {
        let renter = NodeKey::generate();
        let record = |provider: NodeId| ProviderRecord {
            provider,
            calls_completed: 1,
            calls_failed: 0,
            sessions_failed: 0,
            disputes: 0,
        };
        let mut ids: Vec<NodeId> = (0..3).map(|_| NodeKey::generate().node_id()).collect();
        ids.sort();
        let mut ok = attestation(&renter, Vec::new());
        ok.providers = ids.iter().copied().map(record).collect();
        ok.validate().unwrap();
        assert!(ok.record_of(&ids[1]).is_some());
        let mut unsorted = ok.clone();
        unsorted.providers.reverse();
        assert!(unsorted.validate().is_err());
        let mut itself = attestation(&renter, Vec::new());
        itself.providers = vec![record(renter.node_id())];
        assert!(itself.validate().is_err());
        let mut many = attestation(&renter, Vec::new());
        let mut ids: Vec<NodeId> = (0..=MAX_ATTESTED_PROVIDERS)
            .map(|_| NodeKey::generate().node_id())
            .collect();
        ids.sort();
        many.providers = ids.into_iter().map(record).collect();
        assert!(many.validate().is_err());
    }

    #[test]
    fn the_largest_attestation_fits_its_encoded_limit() {
        let renter = NodeKey::generate();
        let mut full = attestation(&renter, Vec::new());
        let mut ids: Vec<NodeId> = (0..MAX_ATTESTED_PROVIDERS)
            .map(|_| NodeKey::generate().node_id())
            .collect();
        ids.sort();
        full.providers = ids
            .into_iter()
            .map(|provider| ProviderRecord {
                provider,
                calls_completed: u64::MAX,
                calls_failed: u64::MAX,
                sessions_failed: u64::MAX,
                disputes: u64::MAX,
            })
            .collect();
        full.payments = (0..MAX_PAYMENT_PROOFS)
            .map(|_| proof(&NodeKey::generate(), &renter, u64::MAX))
            .collect();
        let bytes = renter.sign(&full).unwrap().to_bytes().unwrap();
        assert!(
            bytes.len() <= Attestation::MAX_ENCODED_LEN,
            "{}",
            bytes.len()
        );
        Signed::<Attestation>::from_bytes(&bytes)
            .unwrap()
            .verify()
            .unwrap();
    }
}
