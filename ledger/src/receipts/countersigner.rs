//! The renter's side: check each receipt against its own meter, countersign it.

use orien_protocol::{
    EncodeError, LaneId, Millis, NodeId, NodeKey, Pricing, ReceiptAck, ReceiptHash, ResultHash,
    SessionId, Signed, Timestamp, UsageReceipt, Usdc, Voucher,
};
use tracing::{debug, warn};

use super::results::{RepeatedResult, ResultChain, Run};
use super::{AckedReceipt, CheckedReceipt};
use crate::dispute::{DisputeReason, Evidence, Quantity};
use crate::meter::Reading;
use crate::session::SuspendReason;
use crate::store::Durable;

/// How far the provider's measured times may exceed the renter's own meter.
///
/// The two meters start and stop a network round trip apart, so the provider's session
/// time is legitimately a little larger. Allowed: `measured + max(slack, measured ×
/// percent / 100)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tolerance {
    /// Absolute slack.
    pub slack: Millis,
    /// Relative slack, in percent of the measured value.
    pub percent: u8,
}

impl Default for Tolerance {
    fn default() -> Self {
        Self {
            slack: Millis(2_000),
            percent: 2,
        }
    }
}

impl Tolerance {
    /// How far above `measured` a claim may be.
    pub fn allowed(&self, measured: Millis) -> Millis {
        let relative = Millis(measured.get() / 100 * u64::from(self.percent));
        Millis(self.slack.get().max(relative.get()))
    }

    /// How far above a `measured` execution amount a claim may be: the slack priced at
    /// `rate`, the dearest execution price of the session's calls, or the percentage.
    pub fn allowed_amount(&self, measured: Usdc, rate: Usdc) -> Usdc {
        let slack = orien_protocol::Pricing {
            exec_per_minute: rate,
            ..Pricing::default()
        }
        .exec_amount(self.slack);
        let relative = Usdc::from_micros(measured.micros() / 100 * u64::from(self.percent));
        slack.max(relative)
    }
}

/// Signs payment vouchers with the renter's wallet (implemented by the chain client).
pub trait VoucherSigner: Send + Sync {
    /// An EIP-712 voucher for `cumulative` on `lane`.
    fn sign_voucher(&self, lane: LaneId, cumulative: Usdc) -> Result<Voucher, String>;
}

/// A receipt the renter refused; keep [`evidence`](Self::evidence) and suspend.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("receipt refused: {reason}")]
pub struct Refusal {
    /// Why.
    pub reason: DisputeReason,
    /// The receipt as received, for [`Store::record_evidence`](crate::Store::record_evidence).
    pub evidence: Box<Evidence>,
}

impl Refusal {
    /// The suspension this refusal causes.
    pub fn suspension(&self, seq: u64) -> SuspendReason {
        SuspendReason::Dispute {
            seq,
            reason: self.reason.clone(),
        }
    }
}

/// What [`Countersigner::check`] made of a receipt it accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "commit and release a new receipt's ack; send a repeated one's"]
pub enum Checked {
    /// A new receipt: commit its ack durably, then release it.
    New(Box<PendingAck>),
    /// A byte-identical copy of a receipt already acknowledged (the provider lost the
    /// ack and sent it again): here is the same ack again, already durable.
    Again(Signed<ReceiptAck>),
}

/// A checked receipt with its ack, not yet releasable: commit [`acked`](Self::acked)
/// durably first, then [`Countersigner::release`] gives the ack to send.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "commit the acked receipt, then release the ack"]
pub struct PendingAck {
    checked: CheckedReceipt,
}

impl PendingAck {
    /// The dual-signed receipt to commit.
    pub fn acked(&self) -> &AckedReceipt {
        self.checked.acked()
    }

    /// The same, its signatures checked once here, for
    /// [`Store::ingest_checked`](crate::Store::ingest_checked).
    pub const fn checked(&self) -> &CheckedReceipt {
        &self.checked
    }
}

/// Where the countersigner's vouchers come from.
struct Vouchers {
    signer: Box<dyn VoucherSigner>,
    lane: LaneId,
}

/// Checks and countersigns the receipts of one session.
pub struct Countersigner {
    key: NodeKey,
    session: SessionId,
    provider: NodeId,
    pricing: Pricing,
    budget: Usdc,
    tolerance: Tolerance,
    /// The dearest execution price among the session's calls (for the tolerance).
    dearest_rate: Usdc,
    vouchers: Option<Vouchers>,
    last: Option<UsageReceipt>,
    prev: ReceiptHash,
    chain: Vec<AckedReceipt>,
    suspended: Option<SuspendReason>,
    /// The provider's signed results the renter took, for the receipts' commitments.
    results: ResultChain,
}

impl std::fmt::Debug for Countersigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Countersigner")
            .field("session", &self.session)
            .field("acked", &self.chain.len())
            .field("suspended", &self.suspended)
            .finish_non_exhaustive()
    }
}

impl Countersigner {
    /// The countersigner of a session on a ledger-paid lane.
    pub fn new(
        key: NodeKey,
        session: SessionId,
        provider: NodeId,
        pricing: Pricing,
        budget: Usdc,
        tolerance: Tolerance,
    ) -> Self {
        Self {
            key,
            session,
            provider,
            pricing,
            budget,
            tolerance,
            dearest_rate: pricing.exec_per_minute,
            vouchers: None,
            last: None,
            prev: ReceiptHash::GENESIS,
            chain: Vec::new(),
            suspended: None,
            results: ResultChain::new(),
        }
    }

    /// A call of the session runs at `exec_per_minute` (another tool's price): the
    /// tolerance on the execution amount allows for it.
    pub fn price_call(&mut self, exec_per_minute: Usdc) {
        self.dearest_rate = self.dearest_rate.max(exec_per_minute);
    }

    /// The renter took the provider's signed result `seq` (checked, and its record
    /// durable), which says the provider kept `kept_bytes` of artefacts: later receipts
    /// may commit to it, and charge for those at the session's price.
    pub fn hold_result(
        &mut self,
        seq: u64,
        hash: ResultHash,
        kept_bytes: u64,
    ) -> Result<(), RepeatedResult> {
        let artefacts = self.pricing.artefact_amount(kept_bytes);
        self.results.hold(seq, hash, artefacts)
    }

    /// What the artefacts of the longest run of results held cost: the most a receipt
    /// may charge for artefacts now (for the renter's meter,
    /// [`Meter::charge_artefacts`](crate::meter::Meter::charge_artefacts)).
    pub fn artefacts_held(&self) -> Usdc {
        self.results.longest().artefacts
    }

    /// Attaches a voucher to every ack (escrow lanes): for the lane's whole total once
    /// the receipt is committed, that is the lane's total given to
    /// [`check`](Self::check) plus what the receipt adds to this session's amount.
    pub fn with_vouchers(mut self, signer: Box<dyn VoucherSigner>, lane: LaneId) -> Self {
        self.vouchers = Some(Vouchers { signer, lane });
        self
    }

    /// Checks `receipt` against the renter's own meter `own`, then countersigns it. A
    /// receipt identical to one already acknowledged gets the same ack again. On refusal
    /// the session is suspended; keep the evidence.
    ///
    /// `lane_acked` is what the renter's ledger holds acknowledged on the session's
    /// escrow lane, every session on it included (ignored on ledger-paid lanes). Several
    /// sessions share a lane, so the caller reads it under the lane's turn and keeps the
    /// turn until this receipt is committed or refused: the voucher signed here is then
    /// exactly the lane's total after the commit.
    pub fn check(
        &mut self,
        receipt: &Signed<UsageReceipt>,
        own: &Reading,
        now: Timestamp,
        lane_acked: Usdc,
    ) -> Result<Checked, Refusal> {
        if let Some(done) = self
            .chain
            .iter()
            .rev()
            .find(|done| done.receipt == *receipt)
        {
            debug!(session = %self.session, "receipt sent again; acknowledging it again");
            return Ok(Checked::Again(done.ack.clone()));
        }
        let refuse = |this: &mut Self, reason: DisputeReason| {
            let seq = receipt.claimed().map(|r| r.seq).unwrap_or(0);
            warn!(session = %this.session, seq, %reason, "receipt refused; suspending");
            this.suspended = Some(SuspendReason::Dispute {
                seq,
                reason: reason.clone(),
            });
            refusal(this.session, receipt, reason, now)
        };
        if let Some(SuspendReason::Dispute { reason, .. }) = &self.suspended {
            let reason = reason.clone();
            return Err(refuse(self, reason));
        }
        let verified = match receipt.clone().into_verified_from(&self.provider) {
            Ok(verified) => verified,
            Err(e) => {
                return Err(refuse(
                    self,
                    DisputeReason::BadSignature {
                        detail: e.to_string(),
                    },
                ));
            }
        };
        let r = verified.value().clone();
        match self.judge(&r, own) {
            Ok(()) => {}
            Err(reason) => return Err(refuse(self, reason)),
        }
        let voucher = match &self.vouchers {
            None => None,
            Some(v) => {
                let added = r
                    .amount
                    .saturating_sub(self.last.as_ref().map_or(Usdc::ZERO, |l| l.amount));
                let cumulative = lane_acked.checked_add(added).unwrap_or(Usdc::MAX);
                match v.signer.sign_voucher(v.lane, cumulative) {
                    Ok(voucher) => Some(voucher),
                    Err(detail) => {
                        // The renter cannot pay: not the provider's fault, but no ack goes out.
                        warn!(session = %self.session, %detail, "voucher signing failed");
                        let reason = DisputeReason::BadSignature {
                            detail: format!("voucher signing failed: {detail}"),
                        };
                        return Err(refusal(self.session, receipt, reason, now));
                    }
                }
            }
        };
        let ack = ReceiptAck {
            session: r.session,
            seq: r.seq,
            receipt: receipt.receipt_hash(),
            voucher,
        };
        let ack = self.key.sign_verified(&ack).map_err(|e: EncodeError| {
            refusal(
                self.session,
                receipt,
                DisputeReason::BadSignature {
                    detail: e.to_string(),
                },
                now,
            )
        })?;
        Ok(Checked::New(Box::new(PendingAck {
            checked: CheckedReceipt::countersigned(verified, ack),
        })))
    }

    /// Refuses every later receipt of the session for `reason` (something the provider
    /// said outside a receipt, such as an exit it could not have measured).
    pub fn dispute(&mut self, seq: u64, reason: DisputeReason) {
        warn!(session = %self.session, seq, %reason, "disputing the session");
        self.suspended = Some(SuspendReason::Dispute { seq, reason });
    }

    /// Whether the last acknowledged receipt spent the whole budget.
    pub fn budget_spent(&self) -> bool {
        self.last.as_ref().is_some_and(|r| r.amount >= self.budget)
    }

    /// The last acknowledged receipt.
    pub fn last(&self) -> Option<&UsageReceipt> {
        self.last.as_ref()
    }

    fn judge(&self, r: &UsageReceipt, own: &Reading) -> Result<(), DisputeReason> {
        if r.session != self.session {
            return Err(DisputeReason::WrongSession { found: r.session });
        }
        let expected = self.last.as_ref().map_or(1, |l| l.seq + 1);
        if r.seq != expected {
            return Err(DisputeReason::UnexpectedSeq {
                expected,
                found: r.seq,
            });
        }
        if r.prev != self.prev {
            return Err(DisputeReason::BrokenChain {
                expected: self.prev,
                found: r.prev,
            });
        }
        if let Some(last) = &self.last {
            for (quantity, now, before) in [
                (
                    Quantity::SessionTime,
                    r.session_time.get(),
                    last.session_time.get(),
                ),
                (Quantity::ExecTime, r.exec_time.get(), last.exec_time.get()),
                (Quantity::CpuTime, r.cpu_time.get(), last.cpu_time.get()),
                (Quantity::Amount, r.amount.micros(), last.amount.micros()),
                (
                    Quantity::ExecAmount,
                    r.exec_amount.micros(),
                    last.exec_amount.micros(),
                ),
                (Quantity::Results, r.results.count, last.results.count),
                (
                    Quantity::ArtefactAmount,
                    r.artefact_amount.micros(),
                    last.artefact_amount.micros(),
                ),
            ] {
                if now < before {
                    return Err(DisputeReason::Decreasing { quantity });
                }
            }
        }
        let run = match self.results.at(r.results.count) {
            None => {
                return Err(DisputeReason::ResultsNotHeld {
                    claimed: r.results.count,
                    held: self.results.longest().commitment.count,
                });
            }
            Some(held) if held.commitment != r.results => {
                return Err(DisputeReason::ResultsMismatch {
                    count: r.results.count,
                });
            }
            Some(held) => held,
        };
        if r.artefact_amount != run.artefacts {
            return Err(DisputeReason::WrongArtefactAmount {
                claimed: r.artefact_amount,
                expected: run.artefacts,
            });
        }
        if r.amount > self.budget {
            return Err(DisputeReason::OverBudget {
                amount: r.amount,
                budget: self.budget,
            });
        }
        let price = self
            .pricing
            .session_amount(r.session_time)
            .saturating_add(r.exec_amount)
            .saturating_add(r.artefact_amount)
            .min(self.budget);
        if r.amount != price {
            return Err(DisputeReason::WrongAmount {
                claimed: r.amount,
                expected: price,
            });
        }
        for (quantity, claimed, measured) in [
            (Quantity::SessionTime, r.session_time, own.session_time),
            (Quantity::ExecTime, r.exec_time, own.exec_time),
        ] {
            let tolerance = self.tolerance.allowed(measured);
            if claimed > measured.saturating_add(tolerance) {
                return Err(DisputeReason::AboveOwnMeter {
                    quantity,
                    claimed,
                    measured,
                    tolerance,
                });
            }
        }
        let tolerance = self
            .tolerance
            .allowed_amount(own.exec_amount, self.dearest_rate);
        if r.exec_amount > own.exec_amount.saturating_add(tolerance) {
            return Err(DisputeReason::ExecAmountAboveOwnMeter {
                claimed: r.exec_amount,
                measured: own.exec_amount,
                tolerance,
            });
        }
        Ok(())
    }

    /// Gives the ack to send, once `durable` proves the receipt is committed.
    pub fn release(&mut self, pending: Box<PendingAck>, durable: &Durable) -> Signed<ReceiptAck> {
        assert_eq!(
            pending.acked().receipt.receipt_hash(),
            durable.receipt(),
            "release() with another receipt's proof"
        );
        let (acked, receipt, ..) = pending.checked.into_parts();
        debug!(session = %self.session, seq = receipt.seq, "receipt countersigned");
        self.prev = durable.receipt();
        // Checked in judge(): the run is held and the receipt charges its artefacts.
        self.results.commit(Run {
            commitment: receipt.results,
            artefacts: receipt.artefact_amount,
        });
        self.last = Some(receipt);
        let ack = acked.ack.clone();
        self.chain.push(acked);
        ack
    }

    /// Why the session is suspended, if it is.
    pub const fn suspension(&self) -> Option<&SuspendReason> {
        self.suspended.as_ref()
    }

    /// The dual-signed, committed chain so far.
    pub fn chain(&self) -> &[AckedReceipt] {
        &self.chain
    }
}

fn refusal(
    session: SessionId,
    receipt: &Signed<UsageReceipt>,
    reason: DisputeReason,
    now: Timestamp,
) -> Refusal {
    Refusal {
        reason: reason.clone(),
        evidence: Box::new(Evidence {
            session,
            receipt: receipt.clone(),
            ack: None,
            reason,
            recorded_at: now,
        }),
    }
}
