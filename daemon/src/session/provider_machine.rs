//! The provider's side of a session as a state machine: inputs in, actions out, no I/O.
//!
//! The machine meters the session (running calls included), decides on the renter's
//! calls, issues receipts one at a time until each is acknowledged and durably
//! committed, and decides when and why the session ends. It reads time from the
//! session's [`Clock`] (the same clock as its meter and issuer), so a test drives every
//! timer by hand; a driver does the sending, committing, sandboxing and sleeping, and
//! feeds the outcomes back as inputs.
//!
//! A renter silent for one ack timeout since its last ack ends the session, and a call
//! whose worst case does not fit the budget left is refused, so the provider never
//! works unpaid for more than one ack window of session time and running calls.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use orien_ledger::meter::ExecTimer;
use orien_ledger::{AckedReceipt, CheckedReceipt, Durable, Issuer, Meter, Reading};
use orien_protocol::{
    Artefact, Clock, CloseReason, ContentHash, Exec, ExecExit, ExecId, ExecOutcome, ExecResult,
    ResultHash, RpcErrorCode, SessionId, SessionResponse, Signed, ToolName, UsageReceipt, Usdc,
};
use orien_provider::WorkspacePath;
use tracing::{debug, info, warn};

mod invariants;

use super::call_terms::CallTerms;
use super::error;

/// Pause before resending a receipt the renter did not take.
pub const RETRY: Duration = Duration::from_secs(1);

/// Checks that an ack pays for its receipt beyond what the ledger checks (on escrow
/// lanes: a voucher signed by the renter's wallet for this lane). Pure: no I/O.
pub trait AckCheck: Send {
    /// `Err` says why the ack does not pay.
    fn check(&self, acked: &CheckedReceipt) -> Result<(), String>;
}

/// What happens to a provided session.
#[derive(Debug)]
pub enum ProviderInput<R> {
    /// A timer may be due ([`ProviderMachine::wake_at`]).
    Tick,
    /// The renter asks for a call; `reply` is answered at once.
    Exec {
        /// The call.
        exec: Exec,
        /// Its tool and how it is metered (the offer it names, or the session's own).
        terms: CallTerms,
        /// Who waits for the answer.
        reply: R,
    },
    /// The renter (or its restart notice) closes the session; `reply` is answered when
    /// the session has ended.
    Close {
        /// Why.
        reason: CloseReason,
        /// Who waits for the end.
        reply: R,
    },
    /// The renter asked the chain to close the session's lane.
    LaneClosing,
    /// A call ended in the sandbox, as the provider saw it.
    Exited {
        /// Its exit.
        exit: ExecExit,
        /// SHA-256 of its standard output and standard error as sent to the renter.
        output: [ContentHash; 2],
        /// What was kept of each output path the call named, in order.
        artefacts: Vec<Artefact>,
    },
    /// The renter took the batch carrying a call's signed result.
    ResultDelivered {
        /// The call.
        exec: ExecId,
    },
    /// The renter refused a call's signed result as false: it refuses every later
    /// receipt, so the session ends now.
    ResultDisputed {
        /// The call.
        exec: ExecId,
        /// What the renter said.
        detail: String,
    },
    /// The outcome of sending the receipt of [`ProviderAction::Send`].
    Delivered(Delivery),
    /// The outcome of [`ProviderAction::Commit`].
    Committed(Result<Durable, String>),
    /// The node stops, gracefully: the session closes as if its renter had asked, on
    /// a closing receipt for the time served, and ends when that is acknowledged (or at
    /// the ack timeout).
    Stop,
    /// The node is gone (the session's inbox closed): the session ends now, on what was
    /// acknowledged.
    Shutdown,
}

/// How a receipt's delivery went.
#[derive(Debug)]
pub enum Delivery {
    /// The renter answered.
    Answered(SessionResponse),
    /// It did not reach the renter, or no answer came back.
    Failed(String),
}

/// What the driver must do, in order.
#[derive(Debug)]
pub enum ProviderAction<R> {
    /// Answer a request.
    Reply(R, SessionResponse),
    /// Start a call in the sandbox; report its exit as [`ProviderInput::Exited`].
    StartCall {
        /// The call's id.
        exec: ExecId,
        /// Its tool.
        tool: ToolName,
        /// Its arguments (JSON, checked by the sandbox against the tool's schema).
        args: serde_json::Value,
        /// The arguments as the renter sent them.
        args_json: String,
        /// The output paths the call named: keep a copy of each when it ends.
        outputs: Vec<WorkspacePath>,
    },
    /// A call reported its exit: record its end (the exit itself came with
    /// [`ProviderInput::Exited`]) and send its signed result with the exit; report the
    /// renter taking it as [`ProviderInput::ResultDelivered`].
    CallEnded {
        /// The call.
        exec: ExecId,
        /// What it cost: its metered time at the execution price (nothing for a call
        /// that did not run).
        cost: Usdc,
        /// The provider's signed result (none only if it could not be signed).
        result: Option<Signed<ExecResult>>,
    },
    /// Remove the sandbox (its running calls end with it).
    CloseSandbox,
    /// Send this receipt to the renter; report as [`ProviderInput::Delivered`].
    Send(Signed<UsageReceipt>),
    /// Commit this acknowledged receipt durably (its signatures are checked:
    /// [`Store::ingest_checked`](orien_ledger::Store::ingest_checked)); report as
    /// [`ProviderInput::Committed`].
    Commit(Box<CheckedReceipt>),
    /// The session is over: record why, and answer the close requests that wait (a
    /// resent close is answered like the first); with none, tell the renter. Nothing
    /// follows.
    Ended {
        /// Why it ended.
        reason: CloseReason,
        /// The close requests to answer, oldest first.
        replies: Vec<R>,
    },
}

/// The fixed terms of a provided session.
#[derive(Debug, Clone)]
pub struct ProviderTerms {
    /// The session.
    pub session: SessionId,
    /// The tool it sells.
    pub tool: ToolName,
    /// The tool's `concurrent_execs`.
    pub max_calls: u32,
    /// The session's maximum duration from now.
    pub max_duration: Duration,
}

/// A call running in the sandbox.
#[derive(Debug)]
struct RunningCall {
    /// Its meter timer.
    timer: ExecTimer,
    /// SHA-256 of its arguments as the renter sent them.
    args: ContentHash,
    /// Its tool and rate.
    terms: CallTerms,
}

/// Where the oldest unacknowledged receipt is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Sending {
    /// Not being sent (none waiting, or waiting for `retry_at`).
    Idle,
    /// Sent; the renter's answer is awaited.
    InFlight,
    /// Acknowledged; its commit is awaited.
    Committing,
}

#[derive(Debug)]
struct Closing<R> {
    reason: CloseReason,
    /// Close requests waiting for the end (a renter resends its close when the answer
    /// is slow; each copy gets the same answer).
    replies: Vec<R>,
}

/// The provider's side of one session.
pub struct ProviderMachine<R> {
    terms: ProviderTerms,
    clock: Arc<dyn Clock>,
    meter: Meter,
    issuer: Issuer,
    check: Option<Box<dyn AckCheck>>,
    /// Calls running.
    calls: HashMap<ExecId, RunningCall>,
    /// Every call started in the session, with the digest of its request: an id runs
    /// once.
    started: HashMap<ExecId, ContentHash>,
    /// Signed results the renter has not taken yet: number, hash, artefacts' price.
    undelivered: HashMap<ExecId, (u64, ResultHash, Usdc)>,
    /// Receipts issued and not yet committed, oldest first, with their contents.
    unsent: VecDeque<(UsageReceipt, Signed<UsageReceipt>)>,
    /// A reading fell due while a receipt was outstanding: a fresh one is signed once
    /// that receipt is committed (not one receipt per interval queued behind it). So
    /// receipts never queue up behind a link slower than the interval, and what is
    /// acknowledged trails the meter by one round trip, not by a queue that grows
    /// while acks keep coming.
    waiting: bool,
    /// The front receipt's acknowledgement, while it is being committed.
    committing: Option<CheckedReceipt>,
    sending: Sending,
    /// When to resend the receipt the renter did not take (monotonic).
    retry_at: Option<Duration>,
    /// When the session's maximum duration is reached (monotonic).
    deadline: Duration,
    closing: Option<Closing<R>>,
    /// The closing receipt has been asked for: no more work.
    sandbox_closed: bool,
    ended: bool,
    /// The cumulative amount of the last receipt issued.
    issued_amount: Usdc,
    /// The last receipt committed.
    committed: Option<UsageReceipt>,
}

impl<R> std::fmt::Debug for ProviderMachine<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderMachine")
            .field("session", &self.terms.session)
            .field("calls", &self.calls.len())
            .field("unsent", &self.unsent.len())
            .field("sending", &self.sending)
            .field("closing", &self.closing.as_ref().map(|c| c.reason))
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl<R> ProviderMachine<R> {
    /// A session accepted now, metered by `meter` and receipted by `issuer` (both on
    /// `clock`); `check` vets every ack before it is committed.
    pub fn new(
        terms: ProviderTerms,
        meter: Meter,
        issuer: Issuer,
        check: Option<Box<dyn AckCheck>>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            deadline: clock.monotonic() + terms.max_duration,
            terms,
            clock,
            meter,
            issuer,
            check,
            calls: HashMap::new(),
            started: HashMap::new(),
            undelivered: HashMap::new(),
            unsent: VecDeque::new(),
            waiting: false,
            committing: None,
            sending: Sending::Idle,
            retry_at: None,
            closing: None,
            sandbox_closed: false,
            ended: false,
            issued_amount: Usdc::ZERO,
            committed: None,
        }
    }

    /// The session.
    pub const fn session(&self) -> SessionId {
        self.terms.session
    }

    /// Whether the session has ended (after [`ProviderAction::Ended`]).
    pub const fn has_ended(&self) -> bool {
        self.ended
    }

    /// The meter (for reading what the session has used).
    pub const fn meter(&self) -> &Meter {
        &self.meter
    }

    /// The receipts acknowledged and committed so far.
    pub fn chain(&self) -> &[AckedReceipt] {
        self.issuer.chain()
    }

    /// Calls running.
    pub fn running_calls(&self) -> usize {
        self.calls.len()
    }

    /// The next instant (monotonic, on the session's clock) at which a timer is due:
    /// receipt interval, ack deadline, maximum duration or a resend. `None` once ended.
    pub fn wake_at(&self) -> Option<Duration> {
        if self.ended {
            return None;
        }
        let metering = self.closing.is_none();
        [
            metering.then(|| self.meter.next_due()),
            metering.then_some(self.deadline),
            self.issuer.ack_deadline(),
            self.retry_at,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Takes one input; returns what the driver must do, in order.
    pub fn handle(&mut self, input: ProviderInput<R>) -> Vec<ProviderAction<R>> {
        let mut out = Vec::new();
        if self.ended {
            // A reply to a request that raced the end: the session is gone.
            match input {
                ProviderInput::Exec { reply, .. } | ProviderInput::Close { reply, .. } => {
                    out.push(ProviderAction::Reply(
                        reply,
                        error(RpcErrorCode::SessionEnded, "the session has ended"),
                    ));
                }
                _ => {}
            }
            return out;
        }
        match input {
            ProviderInput::Tick => self.on_timer(&mut out),
            ProviderInput::Exec { exec, terms, reply } => {
                let response = self.exec(exec, terms, &mut out);
                out.push(ProviderAction::Reply(reply, response));
            }
            ProviderInput::Close {
                reason: CloseReason::Restarted,
                reply,
            } => {
                // The renter crashed and forgot the session: nobody will acknowledge a
                // closing receipt. What was acknowledged stands.
                info!("the renter restarted; ending the session without a closing receipt");
                self.end_unacknowledged(CloseReason::Restarted, Some(reply), &mut out);
            }
            ProviderInput::Close { reason, reply } => {
                self.begin_close(reason, Some(reply), &mut out);
            }
            ProviderInput::LaneClosing => {
                info!("the renter asked to close the lane; ending the session");
                self.begin_close(CloseReason::LaneClosing, None, &mut out);
            }
            ProviderInput::Exited {
                exit,
                output,
                artefacts,
            } => self.on_exit(exit, output, artefacts, &mut out),
            ProviderInput::ResultDelivered { exec } => self.on_delivered(exec),
            ProviderInput::ResultDisputed { exec, detail } => {
                self.on_result_disputed(exec, &detail);
            }
            ProviderInput::Delivered(delivery) => self.on_delivery(delivery, &mut out),
            ProviderInput::Committed(result) => self.on_committed(result, &mut out),
            ProviderInput::Stop => {
                info!("the node is stopping; closing the session");
                self.begin_close(CloseReason::ProviderShutdown, None, &mut out);
            }
            ProviderInput::Shutdown => self.end(CloseReason::ProviderShutdown, &mut out),
        }
        if let Some(reason) = self.finished() {
            self.end(reason, &mut out);
        }
        #[cfg(debug_assertions)]
        self.check_invariants();
        out
    }

    /// The session is over when it is closing and every receipt is committed, or when
    /// the renter stopped acknowledging.
    fn finished(&mut self) -> Option<CloseReason> {
        if self.ended {
            return None;
        }
        if let Some(closing) = &self.closing
            && self.unsent.is_empty()
        {
            return Some(closing.reason);
        }
        // An ack being committed is an ack received: not a timeout.
        (self.sending != Sending::Committing && self.issuer.ack_timed_out())
            .then_some(CloseReason::AckTimeout)
    }

    fn end(&mut self, reason: CloseReason, out: &mut Vec<ProviderAction<R>>) {
        // A close that raced the budget's end: the committed total reached the budget,
        // so both sides name the budget (the renter decides by the same rule).
        let budget = self.meter.config().budget;
        let reason = if reason == CloseReason::RenterRequested
            && self.committed.as_ref().is_some_and(|r| r.amount >= budget)
        {
            CloseReason::BudgetExhausted
        } else {
            reason
        };
        if reason == CloseReason::AckTimeout {
            warn!("no ack within the timeout; the session is suspended and its sandbox removed");
        }
        let _ = self.meter.close();
        self.close_sandbox(out);
        self.ended = true;
        let replies = self.closing.take().map(|c| c.replies).unwrap_or_default();
        out.push(ProviderAction::Ended { reason, replies });
    }

    fn on_timer(&mut self, out: &mut Vec<ProviderAction<R>>) {
        let now = self.clock.monotonic();
        if self.closing.is_none()
            && let Some(reading) = self.meter.poll()
        {
            self.issue(&reading, out);
        }
        if self.closing.is_none() && now >= self.deadline {
            self.begin_close(CloseReason::MaxDuration, None, out);
        }
        if self.retry_at.is_some_and(|at| now >= at) {
            self.retry_at = None;
            self.send_next(out);
        }
    }

    fn exec(
        &mut self,
        exec: Exec,
        terms: CallTerms,
        out: &mut Vec<ProviderAction<R>>,
    ) -> SessionResponse {
        // A request for a call already started (sent twice, retried after a lost answer,
        // or replayed) does not run it again: the renter meters each call once and would
        // dispute a second run. The same request gets the same answer, whichever copy
        // arrives first; another request under a used id is refused.
        let digest = request_digest(&exec);
        if let Some(first) = self.started.get(&exec.exec) {
            if *first == digest {
                return SessionResponse::ExecStarted { exec: exec.exec };
            }
            return error(
                RpcErrorCode::BadRequest,
                "this execution id was used in this session for another call; each call needs a new id",
            );
        }
        if self.closing.is_some() || !self.meter.is_running() {
            return error(
                RpcErrorCode::BadRequest,
                "the session is suspended or closing",
            );
        }
        if self.calls.len() >= self.terms.max_calls as usize {
            return error(
                RpcErrorCode::RateLimited,
                &format!(
                    "at most {} calls run at once in this session; wait for one to end",
                    self.terms.max_calls
                ),
            );
        }
        if let Err(refused) = self.meter.call_fits_at(terms.rate) {
            return error(RpcErrorCode::BadRequest, &refused.to_string());
        }
        // Each output path as a workspace path, named in its normal form (the signed
        // result names it as the renter did, so there is one way to write it).
        let mut outputs = Vec::with_capacity(exec.outputs.len());
        for raw in &exec.outputs {
            match WorkspacePath::new(raw) {
                Ok(path) if path.as_str() == raw => outputs.push(path),
                Ok(path) => {
                    return error(
                        RpcErrorCode::BadRequest,
                        &format!("output path `{raw}`: name it `{path}`"),
                    );
                }
                Err(e) => {
                    return error(RpcErrorCode::BadRequest, &format!("an output path: {e}"));
                }
            }
        }
        let args = match serde_json::from_str(&exec.args_json) {
            Ok(args) => args,
            Err(e) => {
                return error(
                    RpcErrorCode::BadRequest,
                    &format!("arguments are not JSON: {e}"),
                );
            }
        };
        let call = RunningCall {
            timer: self.meter.start_exec_at(terms.rate),
            args: ContentHash::of(exec.args_json.as_bytes()),
            terms: terms.clone(),
        };
        self.calls.insert(exec.exec, call);
        self.started.insert(exec.exec, digest);
        out.push(ProviderAction::StartCall {
            exec: exec.exec,
            tool: terms.tool,
            args,
            args_json: exec.args_json,
            outputs,
        });
        SessionResponse::ExecStarted { exec: exec.exec }
    }

    fn on_exit(
        &mut self,
        exit: ExecExit,
        output: [ContentHash; 2],
        artefacts: Vec<Artefact>,
        out: &mut Vec<ProviderAction<R>>,
    ) {
        debug!(exec = %exit.exec, outcome = ?exit.outcome, wall = %exit.wall, "execution finished");
        let exec = exit.exec;
        let Some(RunningCall { timer, args, terms }) = self.calls.remove(&exec) else {
            return;
        };
        let ran = ran(&exit.outcome);
        let cpu = exit.cpu;
        // Metered on the provider's own clock, from the request to the exit it saw
        // (before the renter sees it), capped at the tool's limit; nothing for a call
        // that did not run.
        let cost = match self.meter.charged(&timer) {
            Some(charged) if ran => terms.rate.cost(charged),
            _ => Usdc::ZERO,
        };
        let result = match self
            .issuer
            .sign_result(terms.tool, args, exit, output, artefacts)
        {
            Ok(result) => {
                let (signed, result) = result.into_parts();
                let artefacts = self
                    .meter
                    .config()
                    .pricing
                    .artefact_amount(result.kept_bytes());
                self.undelivered
                    .insert(exec, (result.seq, signed.result_hash(), artefacts));
                Some(signed)
            }
            Err(e) => {
                warn!(%exec, error = %e, "cannot sign the call's result");
                None
            }
        };
        out.push(ProviderAction::CallEnded { exec, cost, result });
        if ran {
            let reading = self.meter.finish_exec(timer, cpu);
            if self.closing.is_none() {
                self.issue(&reading, out);
            }
        } else {
            self.meter.abandon_exec(timer);
        }
    }

    /// The renter took a call's signed result: the next receipts commit to it (once
    /// every earlier result is taken too).
    fn on_delivered(&mut self, exec: ExecId) {
        let Some((seq, hash, artefacts)) = self.undelivered.remove(&exec) else {
            return;
        };
        match self.issuer.result_delivered(seq, hash, artefacts) {
            // The next readings charge for the artefacts the next receipt commits to.
            Ok(()) => self
                .meter
                .charge_artefacts(self.issuer.artefacts_delivered()),
            Err(e) => warn!(%exec, error = %e, "a result delivered twice"),
        }
    }

    fn issue(&mut self, reading: &Reading, out: &mut Vec<ProviderAction<R>>) {
        if self.unsent.is_empty() {
            self.sign(reading, out);
        } else {
            self.waiting = true;
            // A receipt the renter did not take goes again at the next interval at the
            // latest, as when every reading was queued behind it.
            self.send_next(out);
        }
        if reading.budget_reached && self.closing.is_none() {
            info!("budget reached; closing the session");
            self.begin_close(CloseReason::BudgetExhausted, None, out);
        }
    }

    /// Signs a receipt of `reading` (an interval's or the closing one) and sends it
    /// when nothing else is on its way.
    fn sign(&mut self, reading: &Reading, out: &mut Vec<ProviderAction<R>>) {
        match self.issuer.issue(reading) {
            Ok(receipt) => self.queue(receipt, out),
            Err(e) => warn!(error = %e, "cannot sign a receipt"),
        }
    }

    fn queue(&mut self, receipt: Signed<UsageReceipt>, out: &mut Vec<ProviderAction<R>>) {
        // Signed here a moment ago: its payload decodes.
        let content = orien_protocol::wire::decode::<UsageReceipt>(receipt.payload_bytes())
            .expect("a receipt this node just encoded decodes");
        self.issued_amount = content.amount;
        self.unsent.push_back((content, receipt));
        self.send_next(out);
    }

    /// Sends the oldest uncommitted receipt, one at a time so acks come in order.
    fn send_next(&mut self, out: &mut Vec<ProviderAction<R>>) {
        if self.sending != Sending::Idle {
            return;
        }
        let Some((_, receipt)) = self.unsent.front() else {
            return;
        };
        self.sending = Sending::InFlight;
        self.retry_at = None;
        out.push(ProviderAction::Send(receipt.clone()));
    }

    fn on_delivery(&mut self, delivery: Delivery, out: &mut Vec<ProviderAction<R>>) {
        if self.sending != Sending::InFlight {
            // The answer to a send that an unacknowledged end made moot.
            return;
        }
        self.sending = Sending::Idle;
        match delivery {
            Delivery::Answered(SessionResponse::Ack(ack)) => match self.issuer.on_ack_checked(&ack)
            {
                Ok(acked) => {
                    if let Some(Err(detail)) = self.check.as_ref().map(|c| c.check(&acked)) {
                        warn!(%detail, "the renter's ack does not pay this receipt; closing the session");
                        self.dispute();
                        return;
                    }
                    self.sending = Sending::Committing;
                    self.committing = Some(acked.clone());
                    out.push(ProviderAction::Commit(Box::new(acked)));
                }
                Err(e) => {
                    warn!(error = %e, "the renter's ack does not match; resending the receipt");
                    self.retry_later();
                }
            },
            Delivery::Answered(SessionResponse::Disputed { detail }) => {
                warn!(%detail, "the renter disputes a receipt; closing the session");
                self.dispute();
            }
            Delivery::Answered(SessionResponse::Error {
                code: RpcErrorCode::SessionEnded,
                ..
            }) => {
                // The renter has no such session any more (it closed it, or forgot it in
                // a restart): no ack will come, so stop now rather than at the timeout.
                info!("the renter ended the session; ending it here");
                self.end_unacknowledged(CloseReason::Disconnected, None, out);
            }
            Delivery::Answered(other) => {
                debug!(answer = ?other, "receipt not acknowledged; retrying");
                self.retry_later();
            }
            Delivery::Failed(e) => {
                debug!(error = %e, "receipt not delivered; retrying until the ack timeout");
                self.retry_later();
            }
        }
    }

    fn on_committed(&mut self, result: Result<Durable, String>, out: &mut Vec<ProviderAction<R>>) {
        let Some(acked) = self.committing.take() else {
            return;
        };
        self.sending = Sending::Idle;
        let front = self.unsent.pop_front().map(|(content, _)| content);
        match result {
            Ok(durable) => {
                debug!(seq = durable.seq(), "receipt acknowledged and committed");
                self.committed = front;
                self.issuer.committed(acked.into(), &durable);
                if self.unsent.is_empty()
                    && std::mem::take(&mut self.waiting)
                    && let Some(reading) = self.meter.read_now()
                {
                    self.issue(&reading, out);
                }
                self.send_next(out);
            }
            Err(e) => {
                // The renter holds the ack; the provider just cannot record it.
                warn!(error = %e, "cannot commit an acknowledged receipt; closing");
                self.begin_close(CloseReason::ProviderShutdown, None, out);
            }
        }
    }

    /// The renter disputes a call's result: no receipt will be acknowledged any more,
    /// so nothing more is sent (an ack being committed stands) and the session ends.
    fn on_result_disputed(&mut self, exec: ExecId, detail: &str) {
        warn!(%exec, %detail, "the renter disputes a call's result; closing the session");
        self.undelivered.remove(&exec);
        self.waiting = false;
        if self.sending == Sending::Committing {
            self.unsent.truncate(1);
        } else {
            self.unsent.clear();
            self.sending = Sending::Idle;
            self.retry_at = None;
        }
        let replies = self.closing.take().map(|c| c.replies).unwrap_or_default();
        self.closing = Some(Closing {
            reason: CloseReason::Dispute,
            replies,
        });
    }

    /// The renter refused a receipt, or its ack does not pay: nothing more is sent.
    fn dispute(&mut self) {
        self.unsent.clear();
        self.waiting = false;
        let replies = self.closing.take().map(|c| c.replies).unwrap_or_default();
        self.closing = Some(Closing {
            reason: CloseReason::Dispute,
            replies,
        });
    }

    fn retry_later(&mut self) {
        self.retry_at = Some(self.clock.monotonic() + RETRY);
    }

    /// Ends the session with no closing receipt: the renter cannot acknowledge one. The
    /// receipts waiting for an ack are dropped; the acknowledged ones stand.
    fn end_unacknowledged(
        &mut self,
        reason: CloseReason,
        reply: Option<R>,
        out: &mut Vec<ProviderAction<R>>,
    ) {
        let _ = self.meter.close();
        self.waiting = false;
        if self.sending != Sending::Committing {
            self.unsent.clear();
            self.sending = Sending::Idle;
        } else {
            // An ack is being committed: it stands; only what follows it is dropped.
            self.unsent.truncate(1);
        }
        self.retry_at = None;
        self.close_sandbox(out);
        let mut replies = self.closing.take().map(|c| c.replies).unwrap_or_default();
        replies.extend(reply);
        self.closing = Some(Closing { reason, replies });
    }

    /// Stops metering and issues the closing receipt; the session ends once it is
    /// committed.
    fn begin_close(
        &mut self,
        reason: CloseReason,
        reply: Option<R>,
        out: &mut Vec<ProviderAction<R>>,
    ) {
        if let Some(closing) = &mut self.closing {
            // Already closing: answered with the first when the session ends.
            closing.replies.extend(reply);
            return;
        }
        info!(?reason, "closing the session");
        // No work after the closing reading: running calls end with the sandbox now.
        self.close_sandbox(out);
        let reading = self.meter.close();
        self.closing = Some(Closing {
            reason,
            replies: reply.into_iter().collect(),
        });
        // The closing reading covers any reading still waiting.
        self.waiting = false;
        self.sign(&reading, out);
    }

    fn close_sandbox(&mut self, out: &mut Vec<ProviderAction<R>>) {
        if !self.sandbox_closed {
            self.sandbox_closed = true;
            out.push(ProviderAction::CloseSandbox);
        }
    }
}

/// What identifies a call's request: its arguments, the offer it names and its output
/// paths (each length-prefixed, so no two requests share one).
fn request_digest(exec: &Exec) -> ContentHash {
    let mut bytes = Vec::with_capacity(exec.args_json.len() + 64);
    let mut part = |b: &[u8]| {
        bytes.extend_from_slice(&(b.len() as u64).to_be_bytes());
        bytes.extend_from_slice(b);
    };
    part(exec.args_json.as_bytes());
    part(exec.offer.as_ref().map_or(&[][..], |o| o.as_bytes()));
    for output in &exec.outputs {
        part(output.as_bytes());
    }
    ContentHash::of(&bytes)
}

/// Whether a call ran (and is paid), as opposed to refused before it started.
pub(super) fn ran(outcome: &ExecOutcome) -> bool {
    matches!(
        outcome,
        ExecOutcome::Exited | ExecOutcome::TimedOut | ExecOutcome::OutOfMemory
    )
}
