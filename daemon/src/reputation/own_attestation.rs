//! This node's own [`Attestation`]: its record of the providers it rented from, and
//! its newest payments from its ledger as the proofs that give the record weight.

use std::collections::HashSet;

use orien_ledger::Store;
use orien_protocol::attestation::MAX_PAYMENT_PROOFS;
use orien_protocol::{Attestation, NodeId, PaymentProof, Timestamp};
use tracing::warn;

use super::Reputation;

/// The newest payments of node `me` as renter (the last acknowledged receipt of each
/// session), at most [`MAX_PAYMENT_PROOFS`], as many providers as there are first. A
/// ledger that cannot be read proves nothing (and says so).
pub fn payment_proofs(store: &Store, me: &NodeId) -> Vec<PaymentProof> {
    let sessions = match store.sessions() {
        Ok(sessions) => sessions,
        Err(e) => {
            warn!(error = %e, "attestation: cannot read the rented sessions");
            return Vec::new();
        }
    };
    // Newest first; one per provider, then the rest.
    let paid: Vec<_> = sessions
        .into_iter()
        .filter(|(record, head)| record.renter == *me && head.seq > 0 && !head.amount.is_zero())
        .collect();
    let mut providers = HashSet::new();
    let (first, rest): (Vec<_>, Vec<_>) = paid
        .into_iter()
        .partition(|(record, _)| providers.insert(record.provider));
    let mut proofs = Vec::new();
    for (record, head) in first.into_iter().chain(rest) {
        if proofs.len() == MAX_PAYMENT_PROOFS {
            break;
        }
        match store.receipt(&record.session, head.seq) {
            Ok(Some(stored)) => proofs.push(PaymentProof {
                receipt: stored.acked.receipt,
                ack: stored.acked.ack,
            }),
            Ok(None) => {}
            Err(e) => {
                warn!(session = %record.session, error = %e, "attestation: cannot read a receipt")
            }
        }
    }
    proofs
}

impl Reputation {
    /// Node `me`'s attestation at `now` with `proofs` (from [`payment_proofs`]); `None`
    /// when it has nothing to say or no payment to weigh it (it would count nowhere).
    /// The receipts it presents are claimed here, so a copier of them counts for nothing.
    pub fn own_attestation(
        &self,
        me: &NodeId,
        now: Timestamp,
        proofs: Vec<PaymentProof>,
    ) -> Option<Attestation> {
        let providers = self.own_records();
        if providers.is_empty() || proofs.is_empty() {
            return None;
        }
        let attestation = Attestation {
            attester: *me,
            issued_at: now,
            providers,
            payments: proofs,
        };
        let payments = match attestation.verified_payments() {
            Ok(payments) => payments,
            Err(e) => {
                warn!(error = %e, "attestation: this node's own payments do not verify");
                return None;
            }
        };
        self.claim_own(me, payments.iter().map(|p| p.receipt));
        Some(attestation)
    }
}
