//! The provider's side: issue chained, signed receipts; stop when the renter stops
//! acknowledging.
//!
//! The ack timeout counts from the last ack (or the start of the session), not from the
//! send of the receipt waiting for one: a renter that stops acknowledging gets at most
//! one ack timeout of further work, however the receipts fall between its acks.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use orien_protocol::{
    Artefact, Clock, ContentHash, EncodeError, ExecExit, ExecResult, Millis, NodeId, NodeKey,
    ReceiptAck, ReceiptHash, ResultHash, SessionId, Signed, ToolName, UsageReceipt, Usdc, Verified,
    VerifyError,
};
use tracing::{debug, warn};

use super::results::{RepeatedResult, ResultChain};
use super::{AckedReceipt, CheckedReceipt};
use crate::meter::Reading;
use crate::session::SuspendReason;
use crate::store::Durable;

/// How long the provider waits for an ack when none is configured.
pub const DEFAULT_ACK_TIMEOUT: Millis = Millis(10_000);

/// An ack the provider cannot accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    /// Not validly signed by the session's renter.
    #[error("ack is not the renter's: {0}")]
    Signature(#[from] VerifyError),
    /// No receipt is waiting for an ack.
    #[error("no receipt is waiting for an ack")]
    NothingOutstanding,
    /// The ack does not name the oldest unacknowledged receipt.
    #[error(
        "ack for session {session} #{seq} ({receipt}) does not match the outstanding #{expected_seq}"
    )]
    Mismatch {
        /// Session named by the ack.
        session: SessionId,
        /// Seq named by the ack.
        seq: u64,
        /// Receipt hash named by the ack.
        receipt: ReceiptHash,
        /// The receipt expected to be acknowledged.
        expected_seq: u64,
    },
}

struct Outstanding {
    /// Made by this node, so checked as made.
    receipt: Verified<UsageReceipt>,
    seq: u64,
    hash: ReceiptHash,
}

/// Issues the receipts of one session and tracks their acks.
pub struct Issuer {
    key: NodeKey,
    session: SessionId,
    renter: NodeId,
    clock: Arc<dyn Clock>,
    ack_timeout: Duration,
    next_seq: u64,
    prev: ReceiptHash,
    outstanding: VecDeque<Outstanding>,
    chain: Vec<AckedReceipt>,
    suspended: Option<SuspendReason>,
    /// Monotonic time of the last accepted ack, or of the start.
    last_ack: Duration,
    /// The number of the last result signed.
    last_result: u64,
    /// The results the renter acknowledged, for the receipts' commitments.
    results: ResultChain,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("session", &self.session)
            .field("next_seq", &self.next_seq)
            .field("outstanding", &self.outstanding.len())
            .field("suspended", &self.suspended)
            .finish_non_exhaustive()
    }
}

impl Issuer {
    /// The issuer of a new session, signing with the provider's `key`.
    pub fn new(
        key: NodeKey,
        session: SessionId,
        renter: NodeId,
        ack_timeout: Millis,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            key,
            session,
            renter,
            last_ack: clock.monotonic(),
            clock,
            ack_timeout: ack_timeout.to_duration(),
            next_seq: 1,
            prev: ReceiptHash::GENESIS,
            outstanding: VecDeque::new(),
            chain: Vec::new(),
            suspended: None,
            last_result: 0,
            results: ResultChain::new(),
        }
    }

    /// Numbers and signs the result of one of the session's calls: the tool, the hash of
    /// its arguments, its exit and the hashes of the output sent.
    pub fn sign_result(
        &mut self,
        tool: ToolName,
        args: ContentHash,
        exit: ExecExit,
        [stdout, stderr]: [ContentHash; 2],
        artefacts: Vec<Artefact>,
    ) -> Result<Verified<ExecResult>, EncodeError> {
        let result = ExecResult {
            session: self.session,
            seq: self.last_result + 1,
            tool,
            args,
            exit,
            stdout,
            stderr,
            artefacts,
        };
        let signed = self.key.sign_verified(&result)?;
        self.last_result = result.seq;
        Ok(signed)
    }

    /// The renter acknowledged result `seq` (the batch carrying it was taken), whose
    /// artefacts cost `artefacts` at the session's price: the next receipts commit to it,
    /// and charge for its artefacts, once every earlier result is acknowledged too. Then
    /// give the meter [`artefacts_delivered`](Self::artefacts_delivered).
    pub fn result_delivered(
        &mut self,
        seq: u64,
        hash: ResultHash,
        artefacts: Usdc,
    ) -> Result<(), RepeatedResult> {
        if seq > self.last_result {
            // Not one this issuer signed.
            return Err(RepeatedResult { seq });
        }
        self.results.hold(seq, hash, artefacts)
    }

    /// What the artefacts of the results the next receipt commits to cost: what the
    /// meter's readings must carry ([`Meter::charge_artefacts`](crate::meter::Meter::charge_artefacts)).
    pub fn artefacts_delivered(&self) -> Usdc {
        self.results.longest().artefacts
    }

    /// Signs the next receipt for a meter reading and starts waiting for its ack.
    ///
    /// # Panics
    ///
    /// If the reading charges for other artefacts than those of the results the receipt
    /// commits to: the meter was not given [`artefacts_delivered`](Self::artefacts_delivered).
    pub fn issue(&mut self, reading: &Reading) -> Result<Signed<UsageReceipt>, EncodeError> {
        let run = self.results.longest();
        assert_eq!(
            reading.artefact_amount, run.artefacts,
            "a reading charges for other artefacts than its receipt's results kept"
        );
        let receipt = UsageReceipt {
            session: self.session,
            seq: self.next_seq,
            session_time: reading.session_time,
            exec_time: reading.exec_time,
            cpu_time: reading.cpu_time,
            exec_amount: reading.exec_amount,
            amount: reading.amount,
            prev: self.prev,
            issued_at: self.clock.wall(),
            results: run.commitment,
            artefact_amount: run.artefacts,
        };
        let verified = self.key.sign_verified(&receipt)?;
        // Receipts commit to ever longer runs: what this one covers is settled for the
        // next ones.
        self.results.commit(run);
        let signed = verified.signed().clone();
        let hash = signed.receipt_hash();
        debug!(session = %self.session, seq = receipt.seq, amount = %receipt.amount, "receipt issued");
        self.outstanding.push_back(Outstanding {
            receipt: verified,
            seq: receipt.seq,
            hash,
        });
        self.next_seq += 1;
        self.prev = hash;
        if reading.budget_reached && self.suspended.is_none() {
            self.suspended = Some(SuspendReason::BudgetReached);
        }
        Ok(signed)
    }

    /// Checks the renter's ack of the oldest outstanding receipt and returns the
    /// dual-signed receipt to commit ([`Store::ingest`](crate::Store::ingest)); then call
    /// [`committed`](Self::committed). Acks must arrive in order.
    pub fn on_ack(&mut self, ack: &Signed<ReceiptAck>) -> Result<AckedReceipt, AckError> {
        self.on_ack_checked(ack).map(AckedReceipt::from)
    }

    /// Like [`on_ack`](Self::on_ack), returning the receipt with both signatures checked
    /// once, here, for [`Store::ingest_checked`](crate::Store::ingest_checked).
    pub fn on_ack_checked(&mut self, ack: &Signed<ReceiptAck>) -> Result<CheckedReceipt, AckError> {
        let ack = ack.clone().into_verified_from(&self.renter)?;
        let content = ack.value();
        let oldest = self
            .outstanding
            .front()
            .ok_or(AckError::NothingOutstanding)?;
        if content.session != self.session
            || content.seq != oldest.seq
            || content.receipt != oldest.hash
        {
            return Err(AckError::Mismatch {
                session: content.session,
                seq: content.seq,
                receipt: content.receipt,
                expected_seq: oldest.seq,
            });
        }
        let oldest = self
            .outstanding
            .pop_front()
            .ok_or(AckError::NothingOutstanding)?;
        self.last_ack = self.clock.monotonic();
        Ok(CheckedReceipt::new(oldest.receipt, ack))
    }

    /// Records that the acked receipt is durably in the ledger: it joins the chain.
    pub fn committed(&mut self, acked: AckedReceipt, durable: &Durable) {
        assert_eq!(
            acked.receipt.receipt_hash(),
            durable.receipt(),
            "committed() with another receipt's proof"
        );
        self.chain.push(acked);
    }

    /// Whether the renter has stopped acknowledging: a receipt is waiting and no ack came
    /// for the ack timeout. The session is then suspended for it (for good).
    pub fn ack_timed_out(&mut self) -> bool {
        if matches!(self.suspended, Some(SuspendReason::AckTimeout { .. })) {
            return true;
        }
        let Some(deadline) = self.ack_deadline() else {
            return false;
        };
        if self.clock.monotonic() < deadline {
            return false;
        }
        let seq = self.outstanding.front().map_or(0, |o| o.seq);
        warn!(session = %self.session, seq, "no ack within the timeout; suspending");
        self.suspended = Some(SuspendReason::AckTimeout { seq });
        true
    }

    /// When the renter will have been silent for the ack timeout (monotonic), if a
    /// receipt is waiting for its ack.
    pub fn ack_deadline(&self) -> Option<Duration> {
        (!self.outstanding.is_empty()).then_some(self.last_ack + self.ack_timeout)
    }

    /// Why the session is suspended, if it is.
    pub const fn suspension(&self) -> Option<&SuspendReason> {
        self.suspended.as_ref()
    }

    /// Lifts an ack-timeout suspension once every receipt is acked (the renter caught
    /// up). A budget suspension is never lifted.
    pub fn resume(&mut self) -> bool {
        if matches!(self.suspended, Some(SuspendReason::AckTimeout { .. }))
            && self.outstanding.is_empty()
        {
            self.suspended = None;
        }
        self.suspended.is_none()
    }

    /// How many results this issuer has signed.
    pub const fn results_signed(&self) -> u64 {
        self.last_result
    }

    /// Receipts issued and not yet acked.
    pub fn outstanding(&self) -> usize {
        self.outstanding.len()
    }

    /// The dual-signed, committed chain so far.
    pub fn chain(&self) -> &[AckedReceipt] {
        &self.chain
    }
}
