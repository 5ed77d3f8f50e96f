//! The renter's side of a session as a state machine: inputs in, actions out, no I/O.
//!
//! The machine meters the session on the renter's own clock, checks the provider's
//! output streams and exits, countersigns each receipt only once a driver reports it
//! durably committed, and notices a provider gone silent. It reads time from the
//! session's [`Clock`] (the same clock as its meter), so a test drives every timer by
//! hand; a driver keeps the output for readers, commits, records and sleeps.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use orien_ledger::meter::{CallRate, ExecTimer};
use orien_ledger::receipts::{Checked, PendingAck};
use orien_ledger::{
    AckedReceipt, CheckedReceipt, Countersigner, DisputeReason, Durable, Evidence, Meter,
    ResultFault, SessionStatus, SuspendReason,
};
use orien_protocol::{
    Clock, CloseReason, ContentHash, ExecEvent, ExecEvents, ExecExit, ExecId, Millis, NodeId,
    RpcErrorCode, SessionId, SessionResponse, Signed, UsageReceipt, Usdc,
};
use tracing::{info, warn};

use super::call_terms::CallTerms;
use super::error;
use super::provider_machine::ran;
use crate::peer_guard::Abuse;

/// The fixed terms of a rented session.
#[derive(Debug, Clone, Copy)]
pub struct RenterTerms {
    /// The session.
    pub session: SessionId,
    /// The provider, who signs every call's result.
    pub provider: NodeId,
    /// The offer's `concurrent_execs`.
    pub max_calls: u32,
    /// How long the provider may stay silent before the session counts as disconnected.
    pub grace: Duration,
    /// How much longer than the renter's own timer an exit's wall time may be.
    pub slack: Millis,
}

/// What happens to a rented session.
#[derive(Debug)]
pub enum RenterInput<R> {
    /// A timer may be due ([`RenterMachine::wake_at`]).
    Tick,
    /// The provider sends a receipt; `reply` is answered with the ack once it is
    /// durable, or with the refusal.
    Receipt {
        /// The receipt, as received.
        receipt: Signed<UsageReceipt>,
        /// Who waits for the answer.
        reply: R,
        /// What the renter's ledger holds acknowledged on the session's escrow lane,
        /// read under the lane's turn, which the driver keeps until the receipt is
        /// committed (zero on ledger-paid lanes): its voucher counts from it.
        lane_acked: Usdc,
    },
    /// The provider ended the session.
    Closed {
        /// Why.
        reason: CloseReason,
        /// Who waits for the answer.
        reply: R,
    },
    /// The renter closes the session (its close request has been sent).
    Finish,
    /// The outcome of [`RenterAction::Commit`].
    Committed(Result<Durable, String>),
}

/// What the driver must do, in order.
#[derive(Debug)]
pub enum RenterAction<R> {
    /// Answer a request.
    Reply(R, SessionResponse),
    /// Commit this receipt durably; report as [`RenterInput::Committed`].
    Commit(Box<CheckedReceipt>),
    /// Record that the session is suspended, with the evidence of a refused receipt.
    Suspend {
        /// The status to record.
        status: SessionStatus,
        /// The refused receipt, to keep as evidence.
        evidence: Option<Box<Evidence>>,
    },
    /// The session is over: record why. Nothing follows.
    Ended(CloseReason),
}

/// A refused batch of output: why, and what the peer guard should count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// Told to the provider as a bad request.
    pub detail: String,
    /// Set when only a hostile provider sends such output.
    pub abuse: Option<Abuse>,
}

impl Refused {
    fn new(detail: impl Into<String>, abuse: Option<Abuse>) -> Self {
        Self {
            detail: detail.into(),
            abuse,
        }
    }

    /// The answer to the provider.
    pub fn response(&self) -> SessionResponse {
        error(RpcErrorCode::BadRequest, &self.detail)
    }
}

/// One call as the renter follows it.
#[derive(Debug)]
struct Call {
    /// The tool asked for, its rate and output cap.
    terms: CallTerms,
    /// SHA-256 of the arguments sent.
    args: ContentHash,
    /// The output paths named, whose artefacts the signed result must name in order.
    outputs: Vec<String>,
    /// Its meter timer, until it exits.
    timer: Option<ExecTimer>,
    next_batch: u64,
    output_bytes: u64,
    /// Where the next chunk of stdout and of stderr must start.
    offsets: [u64; 2],
    exited: bool,
    /// How the call ended, once it exited.
    ended: Option<CallEnd>,
}

/// How a call ended, as the renter judged its exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallEnd {
    /// Its charged time at the execution price (nothing for a call that did not run).
    pub cost: Usdc,
    /// What is wrong with the provider's signed result, if anything: the session is
    /// disputed for it.
    pub fault: Option<ResultFault>,
}

/// The renter's side of one session.
pub struct RenterMachine<R> {
    terms: RenterTerms,
    clock: Arc<dyn Clock>,
    meter: Meter,
    countersigner: Countersigner,
    calls: HashMap<ExecId, Call>,
    /// When the provider's silence means it is gone (monotonic).
    silent_until: Duration,
    /// The receipt being committed, and who waits for its ack.
    committing: Option<(Box<PendingAck>, R)>,
    ended: bool,
}

impl<R> std::fmt::Debug for RenterMachine<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RenterMachine")
            .field("session", &self.terms.session)
            .field("calls", &self.calls.len())
            .field("committing", &self.committing.is_some())
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl<R> RenterMachine<R> {
    /// A session accepted now, metered by `meter` (on `clock`).
    pub fn new(
        terms: RenterTerms,
        meter: Meter,
        countersigner: Countersigner,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            silent_until: clock.monotonic() + terms.grace,
            terms,
            clock,
            meter,
            countersigner,
            calls: HashMap::new(),
            committing: None,
            ended: false,
        }
    }

    /// The session.
    pub const fn session(&self) -> SessionId {
        self.terms.session
    }

    /// Whether the session has ended (after [`RenterAction::Ended`]).
    pub const fn has_ended(&self) -> bool {
        self.ended
    }

    /// The meter (for reading what the session has used).
    pub const fn meter(&self) -> &Meter {
        &self.meter
    }

    /// The receipts acknowledged (and committed) so far.
    pub fn chain(&self) -> &[AckedReceipt] {
        self.countersigner.chain()
    }

    /// Calls started and not yet exited.
    pub fn running_calls(&self) -> usize {
        self.calls.values().filter(|c| !c.exited).count()
    }

    /// When the provider's silence ends the session (monotonic). `None` once ended.
    pub fn wake_at(&self) -> Option<Duration> {
        (!self.ended).then_some(self.silent_until)
    }

    /// The provider was heard from: its silence starts again.
    pub fn heard(&mut self) {
        self.silent_until = self.clock.monotonic() + self.terms.grace;
    }

    /// Starts timing a call on `terms` (its tool, rate and output cap) with `args_json`
    /// about to be requested, if one more may run and fits the budget.
    pub fn start_exec(
        &mut self,
        exec: ExecId,
        terms: CallTerms,
        args_json: &str,
        outputs: &[String],
    ) -> Result<(), StartRefused> {
        if self.ended || !self.meter.is_running() {
            return Err(StartRefused::NotRunning);
        }
        if self.running_calls() >= self.terms.max_calls as usize {
            return Err(StartRefused::TooManyCalls {
                max: self.terms.max_calls,
            });
        }
        self.meter
            .call_fits_at(terms.rate)
            .map_err(StartRefused::Budget)?;
        let timer = Some(self.meter.start_exec_at(terms.rate));
        self.countersigner.price_call(terms.rate.exec_per_minute);
        self.calls.insert(
            exec,
            Call {
                terms,
                args: ContentHash::of(args_json.as_bytes()),
                outputs: outputs.to_vec(),
                timer,
                next_batch: 0,
                output_bytes: 0,
                offsets: [0, 0],
                exited: false,
                ended: None,
            },
        );
        Ok(())
    }

    /// The provider did not start a call: nothing is charged for it.
    pub fn exec_failed(&mut self, exec: ExecId) {
        if let Some(timer) = self.calls.remove(&exec).and_then(|c| c.timer) {
            self.meter.abandon_exec(timer);
        }
    }

    /// Checks a batch of a call's output before any of it is kept: it is the call's
    /// next batch, every chunk holds bytes and starts where its stream's last one
    /// ended, and the call stays within the offer's output cap. Returns the output
    /// bytes it holds.
    pub fn check_events(&self, batch: &ExecEvents) -> Result<u64, Refused> {
        let Some(call) = self.calls.get(&batch.exec) else {
            warn!(exec = %batch.exec, "events for an unknown execution");
            return Err(Refused::new("unknown execution", None));
        };
        if batch.seq != call.next_batch || call.exited {
            let expected = format!("expected batch {} of a running execution", call.next_batch);
            return Err(Refused::new(expected, None));
        }
        let mut offsets = call.offsets;
        let mut bytes = 0u64;
        for event in &batch.events {
            if let ExecEvent::Output(chunk) = event {
                let stream = chunk.stream as usize;
                let broken = if chunk.data.is_empty() {
                    Some("an empty output chunk".to_owned())
                } else if chunk.offset != offsets[stream] {
                    Some(format!(
                        "an output chunk at offset {} where {} was expected",
                        chunk.offset, offsets[stream]
                    ))
                } else {
                    None
                };
                if let Some(broken) = broken {
                    warn!(exec = %batch.exec, %broken, "broken output from the provider");
                    return Err(Refused::new(broken, Some(Abuse::BrokenOutput)));
                }
                offsets[stream] += chunk.data.len() as u64;
                bytes += chunk.data.len() as u64;
            }
        }
        if call.output_bytes.saturating_add(bytes) > call.terms.output_cap {
            let cap = "more output than the offer's cap";
            return Err(Refused::new(cap, Some(Abuse::BrokenOutput)));
        }
        Ok(bytes)
    }

    /// Takes a batch that passed [`check_events`](Self::check_events): a call's exit
    /// stops its timer (metered from request to exit, capped), and an exit the renter
    /// could not have seen suspends the session. With the exit come the provider's signed
    /// result and `received`, the SHA-256 of each stream (stdout, stderr) as the renter
    /// received it; a result that does not match suspends the session as a dispute.
    pub fn accept_events(
        &mut self,
        batch: &ExecEvents,
        received: [ContentHash; 2],
    ) -> Vec<RenterAction<R>> {
        let mut out = Vec::new();
        let Some(call) = self.calls.get_mut(&batch.exec) else {
            return out;
        };
        call.next_batch += 1;
        let mut exit = None;
        for event in &batch.events {
            match event {
                ExecEvent::Output(chunk) => {
                    call.offsets[chunk.stream as usize] += chunk.data.len() as u64;
                    call.output_bytes += chunk.data.len() as u64;
                }
                ExecEvent::Exit(e) => {
                    call.exited = true;
                    exit = call.timer.take().map(|timer| (timer, e.clone()));
                }
            }
        }
        if let Some((timer, exit)) = exit {
            let rate = call.terms.rate;
            let cost = self.on_exit(timer, rate, &exit, &mut out);
            let fault = self.take_result(batch, &exit, received).err();
            if let Some(fault) = fault {
                let reason = DisputeReason::FalseResult {
                    exec: batch.exec,
                    fault,
                };
                self.suspend_for(reason, &mut out);
            }
            if let Some(call) = self.calls.get_mut(&batch.exec) {
                call.ended = Some(CallEnd { cost, fault });
            }
        }
        #[cfg(debug_assertions)]
        self.check_invariants();
        out
    }

    /// Stops a call's timer at its exit; what the call cost.
    fn on_exit(
        &mut self,
        timer: ExecTimer,
        rate: CallRate,
        exit: &ExecExit,
        out: &mut Vec<RenterAction<R>>,
    ) -> Usdc {
        // Only calls that ran are metered (nothing is charged for refused arguments or
        // a failed sandbox), on the renter's own timer, capped at the offer's limit.
        if !ran(&exit.outcome) {
            self.meter.abandon_exec(timer);
            return Usdc::ZERO;
        }
        let measured = self.meter.elapsed(&timer).unwrap_or(Millis::ZERO);
        let charged = self.meter.charged(&timer).unwrap_or(Millis::ZERO);
        let cost = rate.cost(charged);
        let _ = self.meter.finish_exec(timer, exit.cpu);
        if let Some(reason) = self.implausible(exit, rate.cap, measured) {
            self.suspend_for(reason, out);
        }
        cost
    }

    /// Disputes the session for something the provider said outside a receipt: every
    /// later receipt is refused, and the meter stops.
    fn suspend_for(&mut self, reason: DisputeReason, out: &mut Vec<RenterAction<R>>) {
        if matches!(
            self.countersigner.suspension(),
            Some(SuspendReason::Dispute { .. })
        ) {
            return; // Disputed already: the first reason stands.
        }
        let seq = self.countersigner.last().map_or(0, |r| r.seq);
        self.countersigner.dispute(seq, reason.clone());
        self.meter.suspend();
        out.push(RenterAction::Suspend {
            status: SessionStatus::Suspended(SuspendReason::Dispute { seq, reason }),
            evidence: None,
        });
    }

    /// Checks the provider's signed result of a call against what the renter asked for
    /// and received, and holds it for the receipts to commit to.
    fn take_result(
        &mut self,
        batch: &ExecEvents,
        exit: &ExecExit,
        received: [ContentHash; 2],
    ) -> Result<(), ResultFault> {
        let call = self.calls.get(&batch.exec).ok_or(ResultFault::WrongCall)?;
        let signed = batch.result.as_ref().ok_or(ResultFault::Signature)?;
        let result = signed
            .verify_from(&self.terms.provider)
            .map_err(|_| ResultFault::Signature)?;
        if result.session != self.terms.session
            || result.exit.exec != batch.exec
            || result.tool != call.terms.tool
            || result.args != call.args
            || !result
                .artefacts
                .iter()
                .map(|a| &a.path)
                .eq(call.outputs.iter())
        {
            return Err(ResultFault::WrongCall);
        }
        if &result.exit != exit {
            return Err(ResultFault::WrongExit);
        }
        if result.stdout != received[0] {
            return Err(ResultFault::Stdout);
        }
        if result.stderr != received[1] {
            return Err(ResultFault::Stderr);
        }
        self.countersigner
            .hold_result(result.seq, signed.result_hash(), result.kept_bytes())
            .map_err(|_| ResultFault::RepeatedSeq)?;
        // The receipts may charge for these artefacts from now on; so does the budget.
        self.meter
            .charge_artefacts(self.countersigner.artefacts_held());
        Ok(())
    }

    /// How a call ended, once it exited.
    pub fn call_end(&self, exec: ExecId) -> Option<CallEnd> {
        self.calls.get(&exec).and_then(|c| c.ended)
    }

    /// Whether an exit's wall time is one the renter could have seen: not past the
    /// offer's limit, and not longer than the renter's own timer (plus its tolerance).
    fn implausible(&self, exit: &ExecExit, cap: Millis, measured: Millis) -> Option<DisputeReason> {
        if exit.wall <= cap && exit.wall <= measured.saturating_add(self.terms.slack) {
            return None;
        }
        warn!(exec = %exit.exec, reported = %exit.wall, %measured, "an exit the renter could not have seen");
        Some(DisputeReason::ImplausibleExit {
            exec: exit.exec,
            reported: exit.wall,
            measured,
            limit: cap,
        })
    }

    /// Takes one input; returns what the driver must do, in order.
    pub fn handle(&mut self, input: RenterInput<R>) -> Vec<RenterAction<R>> {
        let mut out = Vec::new();
        if self.ended {
            match input {
                RenterInput::Receipt { reply, .. } | RenterInput::Closed { reply, .. } => {
                    out.push(RenterAction::Reply(
                        reply,
                        error(RpcErrorCode::SessionEnded, "the session has ended"),
                    ));
                }
                _ => {}
            }
            return out;
        }
        match input {
            RenterInput::Tick => {
                if self.committing.is_none() && self.clock.monotonic() >= self.silent_until {
                    // Nothing from the provider for the whole grace period: it is gone
                    // (killed, or cut off). What is owed stays at the last ack.
                    warn!(
                        grace_ms = self.terms.grace.as_millis() as u64,
                        "the provider went silent; closing the session as disconnected"
                    );
                    // A session whose budget is acknowledged in full ended for its
                    // budget, even when the provider's word of it was lost.
                    let reason = if self.countersigner.budget_spent() {
                        CloseReason::BudgetExhausted
                    } else {
                        CloseReason::Disconnected
                    };
                    self.end(reason, &mut out);
                }
            }
            RenterInput::Receipt {
                receipt,
                reply,
                lane_acked,
            } => {
                self.heard();
                self.on_receipt(&receipt, reply, lane_acked, &mut out);
            }
            RenterInput::Closed { reason, reply } => {
                self.heard();
                info!(?reason, "the provider closed the session");
                self.end(reason, &mut out);
                out.push(RenterAction::Reply(reply, SessionResponse::Done));
            }
            RenterInput::Finish => {
                // A close that raced the budget's end: the acknowledged total reached the
                // budget, so both sides name the budget (the provider decides alike).
                let reason = if self.countersigner.budget_spent() {
                    CloseReason::BudgetExhausted
                } else {
                    CloseReason::RenterRequested
                };
                self.end(reason, &mut out);
            }
            RenterInput::Committed(result) => self.on_committed(result, &mut out),
        }
        #[cfg(debug_assertions)]
        self.check_invariants();
        out
    }

    fn on_receipt(
        &mut self,
        receipt: &Signed<UsageReceipt>,
        reply: R,
        lane_acked: Usdc,
        out: &mut Vec<RenterAction<R>>,
    ) {
        if self.committing.is_some() {
            // The provider sends one receipt at a time: this is a resend that overtook
            // the commit of the first. It gets the ack once that is durable.
            let busy = error(RpcErrorCode::RateLimited, "committing the receipt");
            return out.push(RenterAction::Reply(reply, busy));
        }
        let own = self.meter.current();
        // Running calls' time in `own` is now seen: a call abandoned later keeps it.
        self.meter.witnessed();
        match self
            .countersigner
            .check(receipt, &own, self.clock.wall(), lane_acked)
        {
            // Sent again because the provider lost the ack: the ack was durable already.
            Ok(Checked::Again(ack)) => {
                out.push(RenterAction::Reply(reply, SessionResponse::Ack(ack)))
            }
            Ok(Checked::New(pending)) => {
                out.push(RenterAction::Commit(Box::new(pending.checked().clone())));
                self.committing = Some((pending, reply));
            }
            Err(refusal) => {
                let seq = receipt.claimed().map(|r| r.seq).unwrap_or(0);
                self.meter.suspend();
                out.push(RenterAction::Suspend {
                    status: SessionStatus::Suspended(refusal.suspension(seq)),
                    evidence: Some(refusal.evidence.clone()),
                });
                let detail = orien_protocol::fit_detail(refusal.reason.to_string());
                out.push(RenterAction::Reply(
                    reply,
                    SessionResponse::Disputed { detail },
                ));
            }
        }
    }

    fn on_committed(&mut self, result: Result<Durable, String>, out: &mut Vec<RenterAction<R>>) {
        let Some((pending, reply)) = self.committing.take() else {
            return;
        };
        let response = match result {
            Ok(durable) => SessionResponse::Ack(self.countersigner.release(pending, &durable)),
            // Not durable, so no ack: the provider retries or suspends.
            Err(e) => {
                warn!(error = %e, "cannot commit the receipt; not acknowledging it");
                error(
                    RpcErrorCode::Internal,
                    "the renter could not commit the receipt",
                )
            }
        };
        out.push(RenterAction::Reply(reply, response));
    }

    fn end(&mut self, reason: CloseReason, out: &mut Vec<RenterAction<R>>) {
        let _ = self.meter.close();
        self.ended = true;
        out.push(RenterAction::Ended(reason));
        if let Some((_, reply)) = self.committing.take() {
            // Ended before the receipt was durable: it is not acknowledged.
            out.push(RenterAction::Reply(
                reply,
                error(RpcErrorCode::SessionEnded, "the session has ended"),
            ));
        }
    }

    /// Panics when a rule of the protocol is broken. Run after every input in debug
    /// builds and tests.
    pub fn check_invariants(&self) {
        let chain = self.countersigner.chain();
        let last = self.countersigner.last();
        assert_eq!(
            last.map_or(0, |r| r.seq),
            chain.len() as u64,
            "an ack was released for a receipt not in the committed chain"
        );
        if let Some(last) = last {
            assert!(
                last.amount <= self.meter.config().budget,
                "acknowledged more than the budget"
            );
        }
        assert!(
            self.running_calls() <= self.terms.max_calls as usize,
            "more calls running than the offer allows"
        );
        for call in self.calls.values() {
            assert!(
                call.output_bytes <= call.terms.output_cap,
                "output over the cap"
            );
            assert_eq!(
                call.offsets[0] + call.offsets[1],
                call.output_bytes,
                "stream offsets and bytes disagree"
            );
            assert_eq!(
                call.exited,
                call.timer.is_none(),
                "an exited call still timed"
            );
        }
        if self.ended {
            assert!(self.committing.is_none(), "an ended session still commits");
            assert!(self.meter.is_closed(), "an ended session still meters");
        }
    }
}

/// Why a call may not start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartRefused {
    /// The session is suspended or closed.
    NotRunning,
    /// As many calls run as the offer allows.
    TooManyCalls {
        /// The offer's `concurrent_execs`.
        max: u32,
    },
    /// Its worst case does not fit the budget left.
    Budget(orien_ledger::meter::CallDoesNotFit),
}
