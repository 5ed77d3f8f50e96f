//! Other renters' [`Attestation`]s, and how much each counts here.
//!
//! An attestation's counts are its attester's word; what gives them weight is what the
//! attester has verifiably paid, and only the part this node can vouch for: the
//! payments to providers this node has paid itself. What a provider lends is capped at
//! what this node paid it, across all attesters together (when the attesters held
//! present more payments to it than that, each one's credit through it is scaled
//! down): a provider this node paid cannot mint weight by signing receipts for any
//! number of fresh keys. Keys that only paid each other (a Sybil cluster) carry receipts
//! among themselves that no honest node can vouch for, and weigh nothing; buying weight
//! costs real payments to providers the reader pays, and an attester's say of a provider
//! is bounded ([`ATTESTER_EVENTS`]) however much it paid.
//!
//! A receipt does not name its renter, so a key that saw another's proof could
//! countersign the same receipt: a receipt ever presented by two attesters (or by this
//! node itself; the newest [`MAX_CLAIMS`] receipts are remembered) credits neither. That
//! lets a copier deny an honest attester its weight, never gain any.
//!
//! The book is bounded: [`MAX_ATTESTERS`], the newest attestation of each, none older
//! than [`MAX_ATTESTATION_AGE`]; when full, the attester of least weight goes first.

use std::collections::{HashMap, HashSet, VecDeque};

use orien_protocol::attestation::MAX_ATTESTATION_AGE;
use orien_protocol::{
    Attestation, InvalidMessage, Millis, NodeId, Payment, ReceiptHash, Signed, Timestamp, Usdc,
    VerifyError,
};

use super::DISPUTE_WEIGHT;

/// Attesters remembered at once.
pub const MAX_ATTESTERS: usize = 1024;
/// Payments (that this node can vouch for) at which an attester counts fully.
pub const FULL_WEIGHT_PAID: Usdc = Usdc::from_micros(100_000);
/// Most events one attester adds to a provider's score, at full weight.
pub const ATTESTER_EVENTS: f64 = 20.0;
/// Receipts whose presenters are remembered (the oldest forgotten first).
pub const MAX_CLAIMS: usize = 16 * 1024;
/// How far ahead of this node's clock an attestation may be signed.
const CLOCK_SKEW: Millis = Millis(5 * 60 * 1000);

/// Why an attestation was not kept.
#[derive(Debug, thiserror::Error)]
pub enum AttestationRejection {
    /// It does not verify: a bad signature, a malformed payload, a false payment proof.
    #[error("invalid attestation: {0}")]
    Invalid(#[from] VerifyError),
    /// A payment proof does not verify (a forged or mismatched receipt or ack).
    #[error("false payment proof: {0}")]
    FalsePayment(InvalidMessage),
    /// Signed ahead of this node's clock by more than the allowed skew.
    #[error("attestation from the future ({0} ms ahead)")]
    FromTheFuture(u64),
    /// Older than [`MAX_ATTESTATION_AGE`].
    #[error("attestation too old")]
    TooOld,
    /// Not newer than the one held from its attester.
    #[error("not newer than the attestation held")]
    NotNewer,
    /// This node's own.
    #[error("this node's own attestation")]
    Own,
    /// The book is full of attesters that weigh more.
    #[error("the attestation book is full of attesters that weigh more")]
    Full,
}

impl AttestationRejection {
    /// Whether the sender broke the protocol (rather than being late or outweighed).
    pub fn is_misbehaviour(&self) -> bool {
        matches!(self, Self::Invalid(_) | Self::FalsePayment(_))
    }
}

/// What attesters say of one provider, as weighed here.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Shared {
    /// Attesters of non-zero weight that speak of it.
    pub attesters: u32,
    /// The sum of their weights (each in (0, 1]).
    pub weight: f64,
    /// Weighted events that count for it.
    pub good: f64,
    /// Weighted events that count against it.
    pub bad: f64,
}

/// Who presented a receipt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Claim {
    /// One attester (or this node), every time.
    One(NodeId),
    /// More than one: it credits no one.
    Contested,
}

#[derive(Debug)]
struct Held {
    attestation: Attestation,
    payments: Vec<Payment>,
}

/// The newest attestation of each attester, bounded.
#[derive(Debug, Default)]
pub struct AttestationBook {
    held: HashMap<NodeId, Held>,
    /// Who presented each receipt (this node included, for the ones it published),
    /// remembered beyond the attestation that carried it.
    claims: HashMap<ReceiptHash, Claim>,
    /// The receipts of `claims`, oldest first.
    claim_order: VecDeque<ReceiptHash>,
    /// The attesters that speak of each provider.
    speakers: HashMap<NodeId, HashSet<NodeId>>,
    /// What the attesters held present as paid to each provider, in all.
    presented: HashMap<NodeId, Usdc>,
}

impl AttestationBook {
    /// Verifies and keeps `signed` unless it is stale or outweighed. `paid` says what
    /// this node has paid a provider; `me` is this node.
    pub fn admit(
        &mut self,
        signed: &Signed<Attestation>,
        now: Timestamp,
        me: &NodeId,
        paid: &dyn Fn(&NodeId) -> Usdc,
    ) -> Result<NodeId, AttestationRejection> {
        let attestation = signed.verify()?;
        let attester = attestation.attester;
        if attester == *me {
            return Err(AttestationRejection::Own);
        }
        let ahead = attestation.issued_at.since(now);
        if ahead > CLOCK_SKEW {
            return Err(AttestationRejection::FromTheFuture(ahead.get()));
        }
        if now.since(attestation.issued_at) > MAX_ATTESTATION_AGE {
            return Err(AttestationRejection::TooOld);
        }
        if let Some(held) = self.held.get(&attester)
            && held.attestation.issued_at >= attestation.issued_at
        {
            return Err(AttestationRejection::NotNewer);
        }
        let payments = attestation
            .verified_payments()
            .map_err(AttestationRejection::FalsePayment)?;
        self.remove(&attester);
        if self.held.len() >= MAX_ATTESTERS {
            self.expire(now);
        }
        if self.held.len() >= MAX_ATTESTERS {
            let newcomer = Held {
                attestation: attestation.clone(),
                payments: payments.clone(),
            };
            let lightest = self
                .held
                .iter()
                .map(|(a, h)| {
                    (
                        self.weight_of(a, h, None, paid),
                        h.attestation.issued_at,
                        *a,
                    )
                })
                .min_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
            match lightest {
                Some((weight, _, lightest))
                    if weight <= self.weight_of(&attester, &newcomer, None, paid) =>
                {
                    self.remove(&lightest);
                }
                _ => return Err(AttestationRejection::Full),
            }
        }
        for payment in &payments {
            self.claim(payment.receipt, attester);
            let sum = self.presented.entry(payment.provider).or_default();
            *sum = sum.saturating_add(payment.amount);
        }
        for record in &attestation.providers {
            self.speakers
                .entry(record.provider)
                .or_default()
                .insert(attester);
        }
        self.held.insert(
            attester,
            Held {
                attestation,
                payments,
            },
        );
        Ok(attester)
    }

    /// Records that this node itself presented `receipts` (in its own attestation):
    /// anyone else presenting them is a copier.
    pub fn claim_own(&mut self, me: &NodeId, receipts: impl IntoIterator<Item = ReceiptHash>) {
        for receipt in receipts {
            self.claim(receipt, *me);
        }
    }

    fn claim(&mut self, receipt: ReceiptHash, by: NodeId) {
        match self.claims.get_mut(&receipt) {
            Some(claim) => {
                if *claim != Claim::One(by) {
                    *claim = Claim::Contested;
                }
            }
            None => {
                if self.claim_order.len() >= MAX_CLAIMS
                    && let Some(oldest) = self.claim_order.pop_front()
                {
                    self.claims.remove(&oldest);
                }
                self.claims.insert(receipt, Claim::One(by));
                self.claim_order.push_back(receipt);
            }
        }
    }

    /// Forgets attestations older than [`MAX_ATTESTATION_AGE`] at `now`.
    pub fn expire(&mut self, now: Timestamp) {
        let old: Vec<NodeId> = self
            .held
            .iter()
            .filter(|(_, h)| now.since(h.attestation.issued_at) > MAX_ATTESTATION_AGE)
            .map(|(a, _)| *a)
            .collect();
        for attester in old {
            self.remove(&attester);
        }
    }

    /// The weight here of `attester`'s word on `subject`, in [0, 1] (0 when unknown).
    pub fn weight(
        &self,
        attester: &NodeId,
        subject: &NodeId,
        paid: &dyn Fn(&NodeId) -> Usdc,
    ) -> f64 {
        self.held
            .get(attester)
            .map_or(0.0, |h| self.weight_of(attester, h, Some(subject), paid))
    }

    /// What attesters say of `subject`, weighed.
    pub fn shared(&self, subject: &NodeId, paid: &dyn Fn(&NodeId) -> Usdc) -> Shared {
        let mut shared = Shared::default();
        let Some(speakers) = self.speakers.get(subject) else {
            return shared;
        };
        for attester in speakers {
            let Some(held) = self.held.get(attester) else {
                continue;
            };
            let Some(record) = held.attestation.record_of(subject) else {
                continue;
            };
            let weight = self.weight_of(attester, held, Some(subject), paid);
            if weight <= 0.0 {
                continue;
            }
            let good = record.calls_completed as f64;
            let bad = record.calls_failed as f64
                + record.sessions_failed as f64
                + record.disputes as f64 * DISPUTE_WEIGHT as f64;
            let events = good + bad;
            if events <= 0.0 {
                continue;
            }
            let scale = weight * (ATTESTER_EVENTS / events).min(1.0);
            shared.attesters += 1;
            shared.weight += weight;
            shared.good += good * scale;
            shared.bad += bad * scale;
        }
        shared
    }

    /// Every provider some attester speaks of.
    pub fn subjects(&self) -> impl Iterator<Item = &NodeId> {
        self.speakers.keys()
    }

    /// How many attesters are held.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// `held`'s weight: its payments this node can vouch for (to providers this node
    /// paid, never `subject` itself, no receipt another also presented), each provider's
    /// credit capped at what this node paid it, over [`FULL_WEIGHT_PAID`].
    fn weight_of(
        &self,
        attester: &NodeId,
        held: &Held,
        subject: Option<&NodeId>,
        paid: &dyn Fn(&NodeId) -> Usdc,
    ) -> f64 {
        let mut per_provider: HashMap<NodeId, Usdc> = HashMap::new();
        for payment in &held.payments {
            if Some(&payment.provider) == subject {
                continue;
            }
            let contested = self
                .claims
                .get(&payment.receipt)
                .is_some_and(|claim| *claim != Claim::One(*attester));
            if contested {
                continue;
            }
            let sum = per_provider.entry(payment.provider).or_default();
            *sum = sum.saturating_add(payment.amount);
        }
        // Through each provider: at most what this node paid it, shared by every
        // attester presenting payments to it in proportion to what each presented.
        let credit: f64 = per_provider
            .iter()
            .map(|(provider, amount)| {
                let paid = paid(provider).micros() as f64;
                let presented = self
                    .presented
                    .get(provider)
                    .map_or(0, |u| u.micros())
                    .max(amount.micros()) as f64;
                if presented > paid {
                    amount.micros() as f64 * paid / presented
                } else {
                    amount.micros() as f64
                }
            })
            .sum();
        (credit / FULL_WEIGHT_PAID.micros() as f64).min(1.0)
    }

    fn remove(&mut self, attester: &NodeId) {
        let Some(held) = self.held.remove(attester) else {
            return;
        };
        for payment in &held.payments {
            if let Some(sum) = self.presented.get_mut(&payment.provider) {
                *sum = sum.saturating_sub(payment.amount);
                if sum.is_zero() {
                    self.presented.remove(&payment.provider);
                }
            }
        }
        for record in &held.attestation.providers {
            if let Some(who) = self.speakers.get_mut(&record.provider) {
                who.remove(attester);
                if who.is_empty() {
                    self.speakers.remove(&record.provider);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orien_protocol::{
        NodeKey, PaymentProof, ProviderRecord, ReceiptAck, ResultsCommitment, SessionId,
        UsageReceipt,
    };

    use crate::reputation::Reputation;

    const NOW: Timestamp = Timestamp(1_700_000_000_000);

    /// A receipt `provider` signed for `amount` and `renter`'s ack of it.
    fn paid(provider: &NodeKey, renter: &NodeKey, amount: u64) -> PaymentProof {
        let receipt = provider
            .sign(&UsageReceipt {
                session: SessionId::random(),
                seq: 1,
                session_time: Millis(60_000),
                exec_time: Millis(0),
                cpu_time: Millis(0),
                exec_amount: Usdc::ZERO,
                amount: Usdc::from_micros(amount),
                prev: ReceiptHash::GENESIS,
                issued_at: NOW,
                results: ResultsCommitment::NONE,
                artefact_amount: Usdc::ZERO,
            })
            .unwrap();
        let ack = renter
            .sign(&ReceiptAck {
                session: receipt.verify().unwrap().session,
                seq: 1,
                receipt: receipt.receipt_hash(),
                voucher: None,
            })
            .unwrap();
        PaymentProof { receipt, ack }
    }

    /// `attester` says `subject` delivered `good` calls and failed `bad`.
    fn says(
        attester: &NodeKey,
        subject: NodeId,
        good: u64,
        bad: u64,
        payments: Vec<PaymentProof>,
    ) -> Signed<Attestation> {
        attester
            .sign(&Attestation {
                attester: attester.node_id(),
                issued_at: NOW,
                providers: vec![ProviderRecord {
                    provider: subject,
                    calls_completed: good,
                    calls_failed: bad,
                    sessions_failed: 0,
                    disputes: 0,
                }],
                payments,
            })
            .unwrap()
    }

    /// A reader that paid `known` 0.5 USDC over one session it closed.
    fn reader(known: &NodeKey) -> (Reputation, NodeId) {
        let reputation = Reputation::default();
        reputation.record_session(
            known.node_id(),
            orien_protocol::CloseReason::RenterRequested,
            Usdc::from_micros(500_000),
        );
        (reputation, NodeKey::generate().node_id())
    }

    fn score(reputation: &Reputation, provider: &NodeId) -> f64 {
        reputation.standing(provider).unwrap_or_default().score()
    }

    #[test]
    fn a_sybil_cluster_of_fresh_keys_attesting_for_each_other_moves_no_score() {
        let known = NodeKey::generate();
        let (reputation, me) = reader(&known);
        let target = NodeKey::generate(); // the cluster's provider
        let victim = NodeKey::generate().node_id(); // an honest provider they slander
        let cluster: Vec<NodeKey> = (0..8).map(|_| NodeKey::generate()).collect();
        let before = (
            score(&reputation, &target.node_id()),
            score(&reputation, &victim),
        );
        for (i, sybil) in cluster.iter().enumerate() {
            // Large payments, all among the cluster (and to the target).
            let peer = &cluster[(i + 1) % cluster.len()];
            let payments = vec![
                paid(peer, sybil, 50_000_000),
                paid(&target, sybil, 50_000_000),
            ];
            reputation
                .admit_attestation(
                    &says(sybil, target.node_id(), 10_000, 0, payments.clone()),
                    NOW,
                    &me,
                )
                .unwrap();
            let other = NodeKey::generate();
            reputation
                .admit_attestation(
                    &says(
                        &other,
                        victim,
                        0,
                        10_000,
                        vec![paid(sybil, &other, 9_000_000)],
                    ),
                    NOW,
                    &me,
                )
                .unwrap();
        }
        assert_eq!(score(&reputation, &target.node_id()), before.0);
        assert_eq!(score(&reputation, &victim), before.1);
        assert!(
            reputation.standing(&target.node_id()).is_none(),
            "no weight, no standing"
        );
    }

    #[test]
    fn an_attester_that_paid_a_provider_the_reader_paid_moves_the_score_boundedly() {
        let known = NodeKey::generate();
        let (reputation, me) = reader(&known);
        let flaky = NodeKey::generate().node_id();
        let honest = NodeKey::generate();
        // 0.05 USDC to a provider the reader paid 0.5: half weight.
        let signed = says(&honest, flaky, 1, 99, vec![paid(&known, &honest, 50_000)]);
        reputation.admit_attestation(&signed, NOW, &me).unwrap();
        let weight = reputation.attester_weight(&honest.node_id(), &flaky);
        assert!((weight - 0.5).abs() < 1e-9, "{weight}");
        let standing = reputation.standing(&flaky).unwrap();
        assert_eq!(standing.shared.attesters, 1);
        // 100 events scaled to ATTESTER_EVENTS at half weight: 0.1 good, 9.9 bad.
        assert!((standing.shared.good + standing.shared.bad - ATTESTER_EVENTS * 0.5).abs() < 1e-9);
        assert!(
            standing.score() < 2.0 / 3.0 && standing.score() > 0.1,
            "{}",
            standing.score()
        );
        assert_eq!(
            standing.own,
            super::super::Evidence::default(),
            "hearsay is not evidence"
        );

        // What `known` lends (the 0.5 USDC the reader paid it) is shared in proportion
        // to what each attester presented: one that paid it far more takes nearly all.
        let rich = NodeKey::generate();
        let signed = says(&rich, flaky, 0, 10, vec![paid(&known, &rich, 900_000_000)]);
        reputation.admit_attestation(&signed, NOW, &me).unwrap();
        assert!((reputation.attester_weight(&rich.node_id(), &flaky) - 1.0).abs() < 1e-9);
        let diluted = reputation.attester_weight(&honest.node_id(), &flaky);
        assert!(diluted > 0.0 && diluted < 0.001, "{diluted}");
        let both = reputation.standing(&flaky).unwrap().shared;
        assert_eq!(both.attesters, 2);
        assert!((both.weight - 1.0 - diluted).abs() < 1e-9, "{both:?}");
    }

    #[test]
    fn a_copied_receipt_credits_neither_presenter_and_a_payment_to_the_subject_counts_nothing() {
        let known = NodeKey::generate();
        let (reputation, me) = reader(&known);
        let subject = NodeKey::generate().node_id();
        let (honest, copier) = (NodeKey::generate(), NodeKey::generate());
        let proof = paid(&known, &honest, 100_000);
        reputation
            .admit_attestation(&says(&honest, subject, 5, 0, vec![proof.clone()]), NOW, &me)
            .unwrap();
        assert!(reputation.attester_weight(&honest.node_id(), &subject) > 0.99);
        // The copier countersigns the same receipt.
        let copied = PaymentProof {
            receipt: proof.receipt.clone(),
            ack: copier.sign(&proof.ack.verify().unwrap()).unwrap(),
        };
        reputation
            .admit_attestation(&says(&copier, subject, 5, 0, vec![copied]), NOW, &me)
            .unwrap();
        assert_eq!(reputation.attester_weight(&copier.node_id(), &subject), 0.0);
        assert_eq!(reputation.attester_weight(&honest.node_id(), &subject), 0.0);

        // Payments to the provider attested for lend it no weight.
        let target = NodeKey::generate();
        let fan = NodeKey::generate();
        reputation.record_session(
            target.node_id(),
            orien_protocol::CloseReason::RenterRequested,
            Usdc::from_micros(500_000),
        );
        let signed = says(
            &fan,
            target.node_id(),
            50,
            0,
            vec![paid(&target, &fan, 500_000)],
        );
        reputation.admit_attestation(&signed, NOW, &me).unwrap();
        assert_eq!(
            reputation.attester_weight(&fan.node_id(), &target.node_id()),
            0.0
        );
    }

    #[test]
    fn a_provider_the_reader_paid_lends_at_most_that_across_every_key_it_signs_for() {
        let known = NodeKey::generate(); // the reader paid it 0.5 USDC
        let (reputation, me) = reader(&known);
        let subject = NodeKey::generate().node_id();
        let fresh: Vec<NodeKey> = (0..10).map(|_| NodeKey::generate()).collect();
        for key in &fresh {
            // `known` signs a 1 USDC receipt for each fresh key.
            let signed = says(key, subject, 100, 0, vec![paid(&known, key, 1_000_000)]);
            reputation.admit_attestation(&signed, NOW, &me).unwrap();
        }
        let total: f64 = fresh
            .iter()
            .map(|k| reputation.attester_weight(&k.node_id(), &subject))
            .sum();
        // 0.5 USDC lent in all: five full weights' worth, not ten.
        assert!((total - 5.0).abs() < 1e-9, "{total}");
        let shared = reputation.standing(&subject).unwrap().shared;
        assert!((shared.weight - 5.0).abs() < 1e-9, "{shared:?}");
    }

    #[test]
    fn stale_future_own_forged_and_older_attestations_are_refused() {
        let known = NodeKey::generate();
        let (reputation, me) = reader(&known);
        let attester = NodeKey::generate();
        let subject = NodeKey::generate().node_id();
        let signed = says(&attester, subject, 1, 0, Vec::new());
        let later = Timestamp(NOW.0 + MAX_ATTESTATION_AGE.get() + 1);
        assert!(matches!(
            reputation.admit_attestation(&signed, later, &me),
            Err(AttestationRejection::TooOld)
        ));
        let early = Timestamp(NOW.0 - CLOCK_SKEW.get() - 1);
        assert!(matches!(
            reputation.admit_attestation(&signed, early, &me),
            Err(AttestationRejection::FromTheFuture(_))
        ));
        assert!(matches!(
            reputation.admit_attestation(&signed, NOW, &attester.node_id()),
            Err(AttestationRejection::Own)
        ));
        reputation.admit_attestation(&signed, NOW, &me).unwrap();
        assert!(matches!(
            reputation.admit_attestation(&signed, NOW, &me),
            Err(AttestationRejection::NotNewer)
        ));
        // A proof whose ack is of another receipt: the sender broke the protocol.
        let (a, b) = (paid(&known, &attester, 1), paid(&known, &attester, 2));
        let forged = says(
            &NodeKey::generate(),
            subject,
            1,
            0,
            vec![PaymentProof {
                receipt: a.receipt,
                ack: b.ack,
            }],
        );
        let rejection = reputation.admit_attestation(&forged, NOW, &me).unwrap_err();
        assert!(rejection.is_misbehaviour(), "{rejection}");
    }

    #[test]
    fn a_full_book_drops_a_weightless_attester_for_one_that_weighs() {
        let known = NodeKey::generate();
        let (reputation, me) = reader(&known);
        let subject = NodeKey::generate().node_id();
        for _ in 0..MAX_ATTESTERS {
            let sybil = NodeKey::generate();
            reputation
                .admit_attestation(&says(&sybil, subject, 1, 0, Vec::new()), NOW, &me)
                .unwrap();
        }
        let honest = NodeKey::generate();
        let signed = says(&honest, subject, 1, 0, vec![paid(&known, &honest, 100_000)]);
        reputation.admit_attestation(&signed, NOW, &me).unwrap();
        assert!(reputation.attester_weight(&honest.node_id(), &subject) > 0.99);
        assert_eq!(reputation.lock().attestations.len(), MAX_ATTESTERS);
    }
}
