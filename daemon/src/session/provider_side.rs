//! The provider's side of a session: it runs the renter's calls in the sandbox,
//! streams their output, meters the session (running calls included), and issues
//! receipts until each is acknowledged and durably committed. A renter silent for one
//! ack timeout since its last ack ends the session and its sandbox (its calls with it),
//! and a call whose worst case does not fit the budget left is refused, so the provider
//! never works unpaid for more than one ack window of session time and running calls.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use orien_ledger::meter::ExecTimer;
use orien_ledger::{
    AckedReceipt, Issuer, LaneKey, Meter, MeterConfig, Reading, SessionRecord, SessionStatus,
};
use orien_protocol::rpc::MAX_EVENTS_PER_BATCH;
use orien_protocol::{
    CloseReason, CloseSession, EvmAddress, Exec, ExecEvent, ExecEvents, ExecExit, ExecId,
    ExecOutcome, FileInfo, LaneHead, LaneId, NodeId, OpenSession, PaymentLane, RejectReason,
    RpcErrorCode, SessionAccepted, SessionId, SessionRejected, SessionRequest, SessionResponse,
    Signed, UsageReceipt, Usdc,
};
use orien_provider::{EntryKind, ExecStream, SandboxSession, WorkspacePath};
use tokio::sync::mpsc;
use tracing::{Instrument, debug, info, info_span, warn};

use super::{Inner, Reply, blocking, error};
use crate::node::{Net, NetError};
use crate::payments::{LaneGuard, Payments};

/// Pause before resending a receipt or an output batch the renter did not take.
const RETRY: Duration = Duration::from_secs(1);
/// Attempts at telling the renter that the provider ended its session.
const CLOSE_NOTICES: u32 = 3;
/// File requests of one session served at once; more answer "rate limited".
const FILE_OPS: usize = 1;

pub(super) enum Input {
    Request {
        request: Box<SessionRequest>,
        reply: Reply,
    },
    ExecDone {
        exit: ExecExit,
    },
    ReceiptAnswer {
        result: Result<SessionResponse, NetError>,
    },
}

impl super::Inbox for Input {
    fn request(request: Box<SessionRequest>, reply: Reply) -> Self {
        Self::Request { request, reply }
    }

    fn into_reply(self) -> Option<Reply> {
        match self {
            Self::Request { reply, .. } => Some(reply),
            _ => None,
        }
    }
}

/// The manager's handle on a provided session's task.
#[derive(Clone)]
pub(super) struct Handle {
    pub(super) renter: NodeId,
    input: mpsc::Sender<Input>,
}

impl Handle {
    pub(super) fn deliver(&self, request: SessionRequest, reply: Reply) {
        super::deliver(&self.input, request, reply);
    }
}

/// A reserved place among the provider's concurrent sessions (in all and for one
/// renter), released on drop.
struct Slot {
    inner: Arc<Inner>,
    renter: NodeId,
}

impl Slot {
    fn reserve(inner: &Arc<Inner>, renter: NodeId) -> Result<Self, RejectReason> {
        let taken = inner.slots.fetch_add(1, Ordering::SeqCst);
        if taken >= inner.config.max_sessions {
            inner.slots.fetch_sub(1, Ordering::SeqCst);
            return Err(RejectReason::AtCapacity);
        }
        let max = inner.config.max_sessions_per_peer;
        let mut peers = inner
            .peer_slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let theirs = peers.entry(renter).or_insert(0);
        if *theirs >= max {
            drop(peers);
            inner.slots.fetch_sub(1, Ordering::SeqCst);
            return Err(RejectReason::TooManySessions {
                max: u32::try_from(max).unwrap_or(u32::MAX),
            });
        }
        *theirs += 1;
        Ok(Self {
            inner: inner.clone(),
            renter,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.inner.slots.fetch_sub(1, Ordering::SeqCst);
        let mut peers = self
            .inner
            .peer_slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(theirs) = peers.get_mut(&self.renter) {
            *theirs = theirs.saturating_sub(1);
            if *theirs == 0 {
                peers.remove(&self.renter);
            }
        }
    }
}

/// Decides on an `OpenSession` from `peer`; on acceptance the sandbox is up and the
/// session's task runs.
pub(super) async fn open(inner: Arc<Inner>, peer: NodeId, open: OpenSession) -> SessionResponse {
    let reject = |reason| {
        SessionResponse::Rejected(SessionRejected {
            offer: open.offer,
            reason,
        })
    };
    let invalid = |detail: &str| {
        reject(RejectReason::InvalidRequest {
            detail: detail.into(),
        })
    };
    let Some(provider) = inner.provider.clone() else {
        return invalid("this node sells no tools");
    };
    if open.renter != peer {
        return invalid(super::IMPERSONATION);
    }
    let Some(offer) = inner.own_offers.get(&open.offer) else {
        return reject(RejectReason::UnknownOffer);
    };
    if offer.is_expired(inner.clock.wall()) {
        return reject(RejectReason::OfferExpired);
    }
    if open.max_duration > inner.config.max_duration {
        return reject(RejectReason::DurationTooLong {
            max: inner.config.max_duration,
        });
    }
    let meter_config = MeterConfig {
        pricing: offer.pricing,
        budget: open.budget,
        receipt_interval: inner.config.receipt_interval,
        call_cap: MeterConfig::call_cap_for(offer.limits.max_exec),
    };
    // A budget that one interval of work can exhaust leaves no room for a receipt.
    let minimum = meter_config.interval_worst_case(offer.limits.concurrent_execs);
    if open.budget < minimum {
        return reject(RejectReason::BudgetTooLow { minimum });
    }
    // On a chain, a ledger-paid session is an IOU: only from the peers the operator lists.
    if open.payment == PaymentLane::Ledger
        && inner.payments.is_some()
        && !inner.config.ledger_payments.allows(&peer)
    {
        return reject(RejectReason::EscrowRequired);
    }
    let slot = match Slot::reserve(&inner, peer) {
        Ok(slot) => slot,
        Err(reason) => return reject(reason),
    };
    // Escrow: the lane must be ours to be paid on and hold enough for the budget.
    let (lane, escrow) = match (&open.payment, &inner.payments) {
        (PaymentLane::Ledger, _) => (None, None),
        (PaymentLane::Escrow { .. }, None) => return reject(RejectReason::PaymentNotSupported),
        (PaymentLane::Escrow { renter_wallet, .. }, Some(payments)) => {
            match payments
                .provider_lane(&open.payment, offer.payout, open.budget, open.max_duration)
                .await
            {
                Ok(guard) => (
                    Some(guard),
                    Some((payments.clone(), *renter_wallet, offer.payout)),
                ),
                Err(reason) => return reject(reason),
            }
        }
    };
    let session = SessionId::random();
    let span = info_span!("session", session = %session, role = "provider", peer = %peer);
    let lane_head = match &escrow {
        Some(escrow) => match resync(&inner, peer, session, &open, escrow)
            .instrument(span.clone())
            .await
        {
            Ok(head) => head,
            Err(reason) => return reject(reason),
        },
        None => LaneHead::default(),
    };
    let sandbox = match provider
        .open_session(session, &offer.tool)
        .instrument(span.clone())
        .await
    {
        Ok(sandbox) => sandbox,
        Err(e) => {
            warn!(parent: &span, error = %e, "cannot create the sandbox");
            let detail = orien_protocol::fit_detail(e.to_string());
            return reject(RejectReason::SandboxUnavailable { detail });
        }
    };
    let record = SessionRecord {
        session,
        provider: inner.key.node_id(),
        renter: peer,
        payment: open.payment,
        pricing: offer.pricing,
        budget: open.budget,
        opened_at: inner.clock.wall(),
    };
    let store = inner.store.clone();
    if let Err(e) = blocking(move || store.open_session(record)).await {
        warn!(parent: &span, error = %e, "cannot record the session");
        let _ = sandbox.close().await;
        return reject(RejectReason::SandboxUnavailable {
            detail: "the provider's ledger is unavailable".into(),
        });
    }
    let accepted = SessionAccepted {
        session,
        offer: open.offer,
        budget: open.budget,
        max_duration: open.max_duration,
        receipt_interval: inner.config.receipt_interval,
        ack_timeout: inner.config.ack_timeout,
        lane: lane_head,
    };
    let clock = inner.clock.clone();
    let (input, inbox) = mpsc::channel(64);
    let task = Task {
        meter: Meter::start(meter_config, clock.clone()),
        calls: HashMap::new(),
        max_calls: offer.limits.concurrent_execs,
        issuer: Issuer::new(
            inner.key.clone(),
            session,
            peer,
            accepted.ack_timeout,
            clock.clone(),
        ),
        deadline: clock.monotonic() + open.max_duration.to_duration(),
        inner: inner.clone(),
        session,
        renter: peer,
        sandbox: Arc::from(sandbox),
        input: input.clone(),
        unsent: VecDeque::new(),
        in_flight: false,
        retry_at: None,
        closing: None,
        file_ops: Arc::new(tokio::sync::Semaphore::new(FILE_OPS)),
        removing: None,
        lane_id: match open.payment {
            PaymentLane::Escrow { lane, .. } => Some(lane),
            PaymentLane::Ledger => None,
        },
        escrow,
        lane,
        _slot: slot,
    };
    inner.provided().insert(
        session,
        Handle {
            renter: peer,
            input,
        },
    );
    tokio::spawn(task.run(inbox).instrument(span));
    inner.metrics.session_opened("provider");
    info!(%session, tool = %offer.tool, renter = %peer, budget = %open.budget, "session accepted");
    SessionResponse::Accepted(accepted)
}

/// Agrees with the renter on the escrow lane's total before the session's first voucher:
/// the larger of the two ledgers' totals. A renter ahead proves its total with its
/// voucher, and this ledger records the gap (receipts it never committed); a renter
/// behind gets this node's latest voucher, its own signature, as proof.
async fn resync(
    inner: &Arc<Inner>,
    renter: NodeId,
    session: SessionId,
    open: &OpenSession,
    (payments, renter_wallet, payout): &(Arc<Payments>, EvmAddress, EvmAddress),
) -> Result<LaneHead, RejectReason> {
    let unavailable = |e: orien_ledger::StoreError| {
        warn!(error = %e, "cannot read or resync the lane");
        RejectReason::SandboxUnavailable {
            detail: "the provider's ledger is unavailable".into(),
        }
    };
    let PaymentLane::Escrow { lane, .. } = open.payment else {
        return Ok(LaneHead::default());
    };
    let ours = {
        let payments = payments.clone();
        blocking(move || payments.lane_head(lane))
            .await
            .map_err(unavailable)?
    };
    let theirs = open.lane;
    if theirs.acked <= ours.acked {
        // Equal, or the renter is behind: its own voucher tells it what it acknowledged.
        let voucher = (theirs.acked < ours.acked)
            .then_some(ours.voucher)
            .flatten();
        return Ok(LaneHead {
            acked: ours.acked,
            voucher,
        });
    }
    let Some(voucher) = theirs.voucher else {
        return Err(RejectReason::InvalidRequest {
            detail: "the lane's total comes without the renter's voucher for it".into(),
        });
    };
    if let Err(e) = payments.verify_voucher(&voucher, *renter_wallet, *payout, theirs.acked) {
        return Err(RejectReason::InvalidRequest {
            detail: orien_protocol::fit_detail(format!("the renter's voucher for the lane: {e}")),
        });
    }
    let key = LaneKey {
        renter,
        provider: inner.key.node_id(),
        escrow: Some(lane),
    };
    let store = inner.store.clone();
    blocking(move || store.resync_lane(key, session, theirs.acked, Some(voucher)))
        .await
        .map_err(unavailable)?;
    Ok(LaneHead {
        acked: theirs.acked,
        voucher: None,
    })
}

struct Closing {
    reason: CloseReason,
    reply: Option<Reply>,
}

struct Task {
    inner: Arc<Inner>,
    session: SessionId,
    renter: NodeId,
    sandbox: Arc<dyn SandboxSession>,
    meter: Meter,
    /// Calls running, with their meter timers.
    calls: HashMap<ExecId, ExecTimer>,
    /// The tool's `concurrent_execs`.
    max_calls: u32,
    issuer: Issuer,
    input: mpsc::Sender<Input>,
    /// Receipts issued and not yet acknowledged, oldest first; the front one is the one
    /// being sent when `in_flight`.
    unsent: VecDeque<Signed<UsageReceipt>>,
    in_flight: bool,
    /// When to resend the receipt the renter did not take (monotonic).
    retry_at: Option<Duration>,
    /// Monotonic instant at which the session's maximum duration is reached.
    deadline: Duration,
    closing: Option<Closing>,
    /// File requests that may run at once.
    file_ops: Arc<tokio::sync::Semaphore>,
    /// The removal of the sandbox, started when the session began to close.
    removing: Option<tokio::task::JoinHandle<()>>,
    /// On escrow lanes: the payments, the renter's wallet and the payout address that
    /// every ack's voucher must match.
    escrow: Option<(Arc<Payments>, EvmAddress, EvmAddress)>,
    /// The escrow lane, held until the session ends.
    lane: Option<LaneGuard>,
    /// Its id.
    lane_id: Option<LaneId>,
    _slot: Slot,
}

impl Task {
    async fn run(mut self, mut inbox: mpsc::Receiver<Input>) {
        // The renter asking the chain to close the lane ends the session: it is leaving,
        // and the lane must be settled before the thaw window ends.
        let mut closing_lanes = self.escrow.as_ref().map(|(p, _, _)| p.closing_lanes());
        let reason = loop {
            // Sleep exactly until the next timer: receipt interval, ack deadline, maximum
            // duration or a resend.
            let wait = self
                .next_timer()
                .saturating_sub(self.inner.clock.monotonic());
            tokio::select! {
                input = inbox.recv() => match input {
                    Some(input) => self.on_input(input).await,
                    None => break CloseReason::ProviderShutdown,
                },
                () = tokio::time::sleep(wait) => self.on_timer(),
                Some(()) = lane_closed(&mut closing_lanes, self.lane_id) => {
                    info!("the renter asked to close the lane; ending the session");
                    closing_lanes = None;
                    self.begin_close(CloseReason::LaneClosing, None);
                }
            }
            if let Some(reason) = self.finished() {
                break reason;
            }
        };
        self.teardown(reason).await;
    }

    /// The next instant (monotonic) at which a timer is due.
    fn next_timer(&self) -> Duration {
        let far = self.inner.clock.monotonic() + Duration::from_secs(3600);
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
        .unwrap_or(far)
    }

    /// The session is over when it is closing and every receipt is acknowledged, or when
    /// the renter stopped acknowledging.
    fn finished(&mut self) -> Option<CloseReason> {
        if let Some(closing) = &self.closing
            && self.unsent.is_empty()
        {
            return Some(closing.reason);
        }
        self.issuer
            .ack_timed_out()
            .then_some(CloseReason::AckTimeout)
    }

    fn on_timer(&mut self) {
        let now = self.inner.clock.monotonic();
        if self.closing.is_none()
            && let Some(reading) = self.meter.poll()
        {
            self.issue(reading);
        }
        if self.closing.is_none() && now >= self.deadline {
            self.begin_close(CloseReason::MaxDuration, None);
        }
        if self.retry_at.is_some_and(|at| now >= at) {
            self.retry_at = None;
            self.send_next();
        }
    }

    async fn on_input(&mut self, input: Input) {
        match input {
            Input::Request { request, reply } => self.on_request(*request, reply).await,
            Input::ExecDone { exit } => {
                self.inner.metrics.execution(&exit.outcome);
                debug!(exec = %exit.exec, outcome = ?exit.outcome, wall = %exit.wall, "execution finished");
                let Some(timer) = self.calls.remove(&exit.exec) else {
                    return;
                };
                if ran(&exit.outcome) {
                    // Metered on the provider's own clock, from the request to the exit it
                    // saw (before the renter sees it), capped at the tool's limit.
                    let reading = self.meter.finish_exec(timer, exit.cpu);
                    if self.closing.is_none() {
                        self.issue(reading);
                    }
                } else {
                    self.meter.abandon_exec(timer);
                }
            }
            Input::ReceiptAnswer { result } => self.on_receipt_answer(result).await,
        }
    }

    async fn on_request(&mut self, request: SessionRequest, reply: Reply) {
        let response = match request {
            SessionRequest::Exec(exec) => self.exec(exec),
            SessionRequest::Close(close) if close.reason == CloseReason::Restarted => {
                // The renter crashed and forgot the session: nobody will acknowledge a
                // closing receipt. What was acknowledged stands.
                info!("the renter restarted; ending the session without a closing receipt");
                self.end_unacknowledged(CloseReason::Restarted, Some(reply));
                return;
            }
            SessionRequest::Close(close) => {
                self.begin_close(close.reason, Some(reply));
                return;
            }
            request @ (SessionRequest::PutFile { .. }
            | SessionRequest::ListFiles { .. }
            | SessionRequest::GetFile { .. }) => {
                // Files move off the session's task, so a large or slow transfer never
                // holds up the receipts; a few at a time per session.
                let Ok(permit) = self.file_ops.clone().try_acquire_owned() else {
                    let _ = reply.send(error(
                        RpcErrorCode::RateLimited,
                        "the session is moving files already; retry shortly",
                    ));
                    return;
                };
                let sandbox = self.sandbox.clone();
                tokio::spawn(
                    async move {
                        let response = file_op(sandbox.as_ref(), request).await;
                        drop(permit);
                        let _ = reply.send(response);
                    }
                    .in_current_span(),
                );
                return;
            }
            _ => error(RpcErrorCode::BadRequest, "not a request a provider serves"),
        };
        let _ = reply.send(response);
    }

    fn exec(&mut self, exec: Exec) -> SessionResponse {
        if self.closing.is_some() || !self.meter.is_running() {
            return error(
                RpcErrorCode::BadRequest,
                "the session is suspended or closing",
            );
        }
        if self.calls.contains_key(&exec.exec) {
            return error(RpcErrorCode::BadRequest, "this execution id is running");
        }
        if self.calls.len() >= self.max_calls as usize {
            return error(
                RpcErrorCode::RateLimited,
                &format!(
                    "at most {} calls run at once in this session; wait for one to end",
                    self.max_calls
                ),
            );
        }
        if let Err(refused) = self.meter.call_fits() {
            return error(RpcErrorCode::BadRequest, &refused.to_string());
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
        self.calls.insert(exec.exec, self.meter.start_exec());
        let stream = self.sandbox.exec(exec.exec, args, self.inner.clock.clone());
        let forward = forward_output(
            stream,
            self.inner.net.clone(),
            self.renter,
            self.session,
            exec.exec,
            self.input.clone(),
        );
        tokio::spawn(
            forward.instrument(info_span!("exec", session = %self.session, exec = %exec.exec)),
        );
        SessionResponse::ExecStarted { exec: exec.exec }
    }

    fn issue(&mut self, reading: Reading) {
        match self.issuer.issue(&reading) {
            Ok(receipt) => {
                self.unsent.push_back(receipt);
                self.send_next();
            }
            Err(e) => warn!(error = %e, "cannot sign a receipt"),
        }
        if reading.budget_reached && self.closing.is_none() {
            info!("budget reached; closing the session");
            self.begin_close(CloseReason::BudgetExhausted, None);
        }
    }

    /// Sends the oldest unacknowledged receipt, one at a time so acks come in order.
    fn send_next(&mut self) {
        if self.in_flight {
            return;
        }
        let Some(receipt) = self.unsent.front().cloned() else {
            return;
        };
        self.in_flight = true;
        let (net, renter, input) = (self.inner.net.clone(), self.renter, self.input.clone());
        tokio::spawn(async move {
            let result = net.request(renter, SessionRequest::Receipt(receipt)).await;
            let _ = input.send(Input::ReceiptAnswer { result }).await;
        });
    }

    async fn on_receipt_answer(&mut self, result: Result<SessionResponse, NetError>) {
        self.in_flight = false;
        match result {
            Ok(SessionResponse::Ack(ack)) => match self.issuer.on_ack(&ack) {
                Ok(acked) => {
                    if let Err(detail) = self.check_voucher(&acked) {
                        warn!(%detail, "the renter's voucher does not pay this receipt; closing the session");
                        self.unsent.clear();
                        self.closing = Some(Closing {
                            reason: CloseReason::Dispute,
                            reply: self.closing.take().and_then(|c| c.reply),
                        });
                        return;
                    }
                    let store = self.inner.store.clone();
                    let to_commit = acked.clone();
                    match blocking(move || store.ingest(to_commit)).await {
                        Ok(durable) => {
                            self.issuer.committed(acked, &durable);
                            self.unsent.pop_front();
                            self.inner.metrics.receipt_committed("provider");
                            debug!(seq = durable.seq(), "receipt acknowledged and committed");
                            self.send_next();
                        }
                        Err(e) => {
                            // The renter holds the ack; the provider just cannot record it.
                            warn!(error = %e, "cannot commit an acknowledged receipt; closing");
                            self.unsent.pop_front();
                            self.begin_close(CloseReason::ProviderShutdown, None);
                        }
                    }
                }
                Err(e) => {
                    warn!(error = %e, "the renter's ack does not match; resending the receipt");
                    self.retry_later();
                }
            },
            Ok(SessionResponse::Disputed { detail }) => {
                warn!(%detail, "the renter disputes a receipt; closing the session");
                self.unsent.clear();
                self.closing = Some(Closing {
                    reason: CloseReason::Dispute,
                    reply: self.closing.take().and_then(|c| c.reply),
                });
            }
            Ok(SessionResponse::Error {
                code: RpcErrorCode::SessionEnded,
                ..
            }) => {
                // The renter has no such session any more (it closed it, or forgot it in
                // a restart): no ack will come, so stop now rather than at the timeout.
                info!("the renter ended the session; ending it here");
                self.end_unacknowledged(CloseReason::Disconnected, None);
            }
            Ok(other) => {
                debug!(answer = ?other, "receipt not acknowledged; retrying");
                self.retry_later();
            }
            Err(e) => {
                debug!(error = %e, "receipt not delivered; retrying until the ack timeout");
                self.retry_later();
            }
        }
    }

    fn retry_later(&mut self) {
        self.retry_at = Some(self.inner.clock.monotonic() + RETRY);
    }

    /// On an escrow lane, an ack must carry a voucher signed by the renter's wallet for
    /// this lane, not below the last one. (The ledger then checks that it names the
    /// lane's acknowledged total exactly.)
    fn check_voucher(&self, acked: &AckedReceipt) -> Result<(), String> {
        let Some((payments, renter_wallet, payout)) = &self.escrow else {
            return Ok(());
        };
        let ack = acked.ack.verify().map_err(|e| e.to_string())?;
        let voucher = ack
            .voucher
            .ok_or("an ack on an escrow lane without a voucher")?;
        payments
            .verify_voucher(&voucher, *renter_wallet, *payout, Usdc::ZERO)
            .map_err(|e| e.to_string())
    }

    /// Ends the session with no closing receipt: the renter cannot acknowledge one. The
    /// receipts waiting for an ack are dropped; the acknowledged ones stand.
    fn end_unacknowledged(&mut self, reason: CloseReason, reply: Option<Reply>) {
        let _ = self.meter.close();
        self.unsent.clear();
        self.in_flight = false;
        let reply = reply.or_else(|| self.closing.take().and_then(|c| c.reply));
        self.closing = Some(Closing { reason, reply });
    }

    /// Stops metering and issues the closing receipt; the session ends once it is acked.
    fn begin_close(&mut self, reason: CloseReason, reply: Option<Reply>) {
        if let Some(closing) = &mut self.closing {
            if let Some(reply) = reply {
                // Already closing: answer when the first close completes.
                if let Some(first) = closing.reply.take() {
                    let _ =
                        first.send(error(RpcErrorCode::BadRequest, "closed by a later request"));
                }
                closing.reply = Some(reply);
            }
            return;
        }
        info!(?reason, "closing the session");
        // No work after the closing reading: running calls end with the sandbox now.
        let sandbox = self.sandbox.clone();
        self.removing = Some(tokio::spawn(async move {
            if let Err(e) = sandbox.close().await {
                warn!(error = %e, "cannot remove the sandbox; the reaper will");
            }
        }));
        let reading = self.meter.close();
        self.closing = Some(Closing { reason, reply });
        match self.issuer.issue(&reading) {
            Ok(receipt) => {
                self.unsent.push_back(receipt);
                self.send_next();
            }
            Err(e) => warn!(error = %e, "cannot sign the closing receipt"),
        }
    }

    async fn teardown(mut self, reason: CloseReason) {
        self.inner.provided().remove(&self.session);
        let status = match reason {
            CloseReason::AckTimeout => {
                warn!(
                    "no ack within the timeout; the session is suspended and its sandbox removed"
                );
                SessionStatus::Closed(CloseReason::AckTimeout)
            }
            other => SessionStatus::Closed(other),
        };
        let store = self.inner.store.clone();
        let session = self.session;
        if let Err(e) = blocking(move || store.set_status(&session, status)).await {
            warn!(error = %e, "cannot record the session's end");
        }
        match self.removing.take() {
            Some(removing) => {
                let _ = removing.await;
            }
            None => {
                if let Err(e) = self.sandbox.close().await {
                    warn!(error = %e, "cannot remove the sandbox; the reaper will");
                }
            }
        }
        // The lane is free before the renter hears of the close, so its next session on
        // the lane is not refused as overlapping this one.
        drop(self.lane);
        // A lane whose renter is leaving is settled as soon as its session ends.
        if let (Some((payments, _, _)), Some(lane)) = (&self.escrow, self.lane_id)
            && payments.is_closing(&lane)
        {
            let payments = payments.clone();
            tokio::spawn(async move {
                if let Err(e) = payments.settle_lane(lane).await {
                    warn!(%lane, error = %e, "cannot settle the closing lane; the settler retries");
                }
            });
        }
        let renter_initiated = matches!(reason, CloseReason::RenterRequested);
        if let Some(reply) = self.closing.and_then(|c| c.reply) {
            let _ = reply.send(SessionResponse::Done);
        } else if !renter_initiated {
            // Tell the renter why, so both ledgers record the same reason; a renter that
            // stopped acknowledging may still be listening.
            let (net, renter) = (self.inner.net.clone(), self.renter);
            tokio::spawn(async move {
                for attempt in 1..=CLOSE_NOTICES {
                    let close = SessionRequest::Close(CloseSession { session, reason });
                    match net.request(renter, close).await {
                        Ok(SessionResponse::Done) => return,
                        Ok(answer) => return debug!(?answer, "the renter answered the close"),
                        Err(e) => debug!(attempt, error = %e, "close not delivered"),
                    }
                    tokio::time::sleep(RETRY).await;
                }
            });
        }
        self.inner.metrics.session_closed("provider", reason);
        info!(?reason, "session ended");
    }
}

/// Reports the exit of an execution to the session's task and streams its events to the
/// renter in ordered, acknowledged batches.
async fn forward_output(
    mut stream: ExecStream,
    net: Net,
    renter: NodeId,
    session: SessionId,
    exec: ExecId,
    input: mpsc::Sender<Input>,
) {
    let mut seq = 0u64;
    let mut delivering = true;
    while let Some(first) = stream.recv().await {
        let mut events = vec![first];
        // Gather what is already waiting, without delaying what is not.
        while events.len() < MAX_EVENTS_PER_BATCH
            && !matches!(events.last(), Some(ExecEvent::Exit(_)))
        {
            match tokio::time::timeout(Duration::ZERO, stream.recv()).await {
                Ok(Some(event)) => events.push(event),
                _ => break,
            }
        }
        let exit = match events.last() {
            Some(ExecEvent::Exit(exit)) => Some(exit.clone()),
            _ => None,
        };
        // The meter stops at the exit the provider sees, before the renter sees it, so
        // the provider's measure of a call is never longer than the renter's.
        if let Some(exit) = &exit {
            let _ = input.send(Input::ExecDone { exit: exit.clone() }).await;
        }
        if delivering {
            let batch = ExecEvents {
                session,
                exec,
                seq,
                events,
            };
            delivering = deliver(&net, renter, batch).await;
            seq += 1;
        }
        if exit.is_some() {
            return;
        }
    }
}

/// Resolves when `lane` appears among the lanes whose renter asked to close them;
/// never when there is no such watch or no lane.
async fn lane_closed(
    closing: &mut Option<tokio::sync::watch::Receiver<std::collections::HashMap<LaneId, u64>>>,
    lane: Option<LaneId>,
) -> Option<()> {
    let (Some(closing), Some(lane)) = (closing.as_mut(), lane) else {
        return std::future::pending().await;
    };
    loop {
        if closing.borrow_and_update().contains_key(&lane) {
            return Some(());
        }
        if closing.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

/// Serves one file request of the renter on the session's sandbox.
async fn file_op(sandbox: &dyn SandboxSession, request: SessionRequest) -> SessionResponse {
    match request {
        SessionRequest::PutFile { path, data, .. } => match WorkspacePath::new(&path) {
            Ok(path) => match sandbox.upload(&path, &data).await {
                Ok(()) => SessionResponse::Done,
                Err(e) => error(RpcErrorCode::BadRequest, &e.to_string()),
            },
            Err(e) => error(RpcErrorCode::BadRequest, &e.to_string()),
        },
        SessionRequest::ListFiles { .. } => match sandbox.list().await {
            Ok(entries) => SessionResponse::Files(
                entries
                    .into_iter()
                    .take(orien_protocol::rpc::MAX_FILES_LISTED)
                    .map(|e| FileInfo {
                        path: e.path,
                        size: e.size,
                        is_dir: e.kind == EntryKind::Directory,
                    })
                    .collect(),
            ),
            Err(e) => error(RpcErrorCode::Internal, &e.to_string()),
        },
        SessionRequest::GetFile { path, .. } => match WorkspacePath::new(&path) {
            Ok(path) => match sandbox.download(&path).await {
                Ok(data) if data.len() <= orien_protocol::rpc::MAX_FILE_CHUNK => {
                    SessionResponse::File { data }
                }
                Ok(_) => error(
                    RpcErrorCode::BadRequest,
                    "the file is larger than one transfer allows",
                ),
                Err(e) => error(RpcErrorCode::BadRequest, &e.to_string()),
            },
            Err(e) => error(RpcErrorCode::BadRequest, &e.to_string()),
        },
        _ => error(RpcErrorCode::BadRequest, "not a file request"),
    }
}

/// Whether a call ran (and is paid), as opposed to refused before it started.
fn ran(outcome: &ExecOutcome) -> bool {
    matches!(
        outcome,
        ExecOutcome::Exited | ExecOutcome::TimedOut | ExecOutcome::OutOfMemory
    )
}

/// Sends one batch, retrying a few times; `false` when the renter is gone.
async fn deliver(net: &Net, renter: NodeId, batch: ExecEvents) -> bool {
    for attempt in 0..5 {
        match net
            .request(renter, SessionRequest::Events(batch.clone()))
            .await
        {
            Ok(SessionResponse::Done) => return true,
            Ok(SessionResponse::Error {
                code: RpcErrorCode::RateLimited,
                ..
            }) => {
                debug!(attempt, "the renter is busy; resending the output batch");
                tokio::time::sleep(RETRY / 4).await;
            }
            Ok(other) => {
                debug!(answer = ?other, "the renter refused an output batch");
                return false;
            }
            Err(e) => {
                debug!(attempt, error = %e, "output batch not delivered; retrying");
                tokio::time::sleep(RETRY).await;
            }
        }
    }
    false
}
