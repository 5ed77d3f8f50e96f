//! The renter's side of a session: it meters on its own clock, keeps the output of its
//! executions, and countersigns each receipt only after checking it and committing it
//! durably.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use orien_ledger::meter::ExecTimer;
use orien_ledger::receipts::Checked;
use orien_ledger::{
    Countersigner, DisputeReason, LaneKey, Meter, MeterConfig, SessionRecord, SessionStatus,
};
use orien_protocol::{
    CloseReason, CloseSession, Exec, ExecEvent, ExecEvents, ExecExit, ExecId, ExecOutcome,
    LaneHead, Millis, NodeId, OfferId, OpenSession, OutputStream, PaymentLane, Pricing,
    RpcErrorCode, SessionId, SessionRequest, SessionResponse, Signed, ToolName, UsageReceipt, Usdc,
};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tracing::{Instrument, info, info_span, warn};

use super::{
    ExecLog, ExecLogs, Inner, PaymentChoice, Reply, SessionError, blocking, error, unexpected,
};
use crate::node::Net;
use crate::payments::{LaneGuard, RenterLane};
use crate::peer_guard::Abuse;

/// A session this node rents, as agreed with the provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RentedSession {
    /// The session.
    pub session: SessionId,
    /// The provider.
    pub provider: NodeId,
    /// The offer it runs under.
    pub offer: OfferId,
    /// The tool.
    pub tool: ToolName,
    /// Prices.
    pub pricing: Pricing,
    /// Most the session may cost.
    pub budget: Usdc,
    /// Longest the session stays open.
    pub max_duration: Millis,
    /// How often the provider sends receipts.
    pub receipt_interval: Millis,
}

/// The output of one execution so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecView {
    /// Every event received, in order.
    pub events: Vec<ExecEvent>,
    /// The exit, once the execution ended.
    pub exit: Option<ExecExit>,
}

impl ExecView {
    /// The bytes of one stream, concatenated.
    pub fn output(&self, stream: OutputStream) -> Vec<u8> {
        self.events
            .iter()
            .filter_map(|e| match e {
                ExecEvent::Output(chunk) if chunk.stream == stream => Some(chunk.data.as_slice()),
                _ => None,
            })
            .flatten()
            .copied()
            .collect()
    }
}

pub(super) enum Input {
    Request {
        request: Box<SessionRequest>,
        reply: Reply,
    },
    StartExec {
        exec: ExecId,
        reply: oneshot::Sender<Result<(), SessionError>>,
    },
    ExecFailed {
        exec: ExecId,
    },
    /// Close locally (status recorded) and answer once that is durable.
    Finish {
        done: oneshot::Sender<()>,
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

/// The manager's handle on a rented session's task.
#[derive(Clone)]
pub(super) struct Handle {
    pub(super) provider: NodeId,
    session: SessionId,
    input: mpsc::Sender<Input>,
    logs: Arc<ExecLogs>,
}

impl Handle {
    pub(super) fn deliver(&self, request: SessionRequest, reply: Reply) {
        super::deliver(&self.input, request, reply);
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Input,
    ) -> Result<T, SessionError> {
        let (tx, rx) = oneshot::channel();
        let ended = || SessionError::NotOpen {
            session: self.session,
            state: "ended".into(),
        };
        self.input.send(make(tx)).await.map_err(|_| ended())?;
        rx.await.map_err(|_| ended())
    }

    pub(super) async fn exec(&self, net: &Net, args_json: String) -> Result<ExecId, SessionError> {
        let exec = ExecId::random();
        self.ask(|reply| Input::StartExec { exec, reply }).await??;
        let request = SessionRequest::Exec(Exec {
            session: self.session,
            exec,
            args_json,
        });
        match net.request(self.provider, request).await {
            Ok(SessionResponse::ExecStarted { exec: started }) if started == exec => Ok(exec),
            other => {
                let _ = self.input.send(Input::ExecFailed { exec }).await;
                Err(match other {
                    Err(e) => e.into(),
                    Ok(response) => unexpected(response),
                })
            }
        }
    }

    pub(super) fn exec_view(&self, exec: ExecId) -> Result<ExecView, SessionError> {
        self.logs.view(exec)
    }

    pub(super) async fn wait_exec(
        &self,
        exec: ExecId,
        timeout: Duration,
    ) -> Result<ExecView, SessionError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = self.logs.changed.notified();
            let view = self.exec_view(exec)?;
            if view.exit.is_some() {
                return Ok(view);
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return Ok(view);
            }
        }
    }

    pub(super) async fn close(&self, net: &Net) -> Result<(), SessionError> {
        let request = SessionRequest::Close(CloseSession {
            session: self.session,
            reason: CloseReason::RenterRequested,
        });
        let answer = net.request(self.provider, request).await;
        let (done, finished) = oneshot::channel();
        // The close is recorded whatever the provider answered; when the task already
        // ended (the provider closed first), the send or the reply fails, and that is
        // the same outcome.
        if self.input.send(Input::Finish { done }).await.is_ok() {
            let _ = finished.await;
        }
        match answer? {
            SessionResponse::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }
}

/// Asks the offer's provider for a session and starts its task.
pub(super) async fn open(
    inner: Arc<Inner>,
    offer_id: OfferId,
    budget: Usdc,
    max_duration: Millis,
    payment: PaymentChoice,
) -> Result<RentedSession, SessionError> {
    let entry = inner
        .net
        .offer(offer_id)
        .await?
        .ok_or(SessionError::UnknownOffer(offer_id))?;
    let offer = entry.offer;
    let renter = inner.key.node_id();
    let escrow = match (payment, &inner.payments) {
        (PaymentChoice::Ledger, _) | (PaymentChoice::Auto, None) => None,
        (PaymentChoice::Escrow, None) => return Err(SessionError::NoChain),
        (PaymentChoice::Auto | PaymentChoice::Escrow, Some(payments)) => {
            Some(payments.renter_lane(offer.payout, budget).await?)
        }
    };
    let payment_lane = escrow.as_ref().map_or(PaymentLane::Ledger, |e| e.payment);
    let lane_key = LaneKey {
        renter,
        provider: offer.provider,
        escrow: escrow.as_ref().map(|e| e.lane),
    };
    // Only escrow lanes count vouchers from the lane's total; a ledger lane has none.
    let head = escrow.as_ref().map_or(LaneHead::default(), |e| e.head);
    let request = OpenSession {
        offer: offer_id,
        renter,
        budget,
        max_duration,
        payment: payment_lane,
        lane: head,
    };
    let accepted = match inner
        .net
        .request(offer.provider, SessionRequest::Open(request))
        .await?
    {
        SessionResponse::Accepted(accepted) => accepted,
        SessionResponse::Rejected(rejected) => return Err(SessionError::Rejected(rejected.reason)),
        other => return Err(unexpected(other)),
    };
    if accepted.offer != offer_id
        || accepted.budget != budget
        || accepted.max_duration > max_duration
    {
        warn!(session = %accepted.session, "the provider accepted other terms than asked; closing");
        close_quietly(&inner, offer.provider, accepted.session).await;
        return Err(SessionError::Remote(
            "the provider accepted other terms than asked".into(),
        ));
    }
    let base = match resync(
        &inner,
        lane_key,
        accepted.session,
        head,
        accepted.lane,
        &escrow,
    )
    .await
    {
        Ok(base) => base,
        Err(e) => {
            close_quietly(&inner, offer.provider, accepted.session).await;
            return Err(e);
        }
    };
    let record = SessionRecord {
        session: accepted.session,
        provider: offer.provider,
        renter,
        payment: payment_lane,
        pricing: offer.pricing,
        budget,
        opened_at: inner.clock.wall(),
    };
    let store = inner.store.clone();
    if let Err(e) = blocking(move || store.open_session(record)).await {
        close_quietly(&inner, offer.provider, accepted.session).await;
        return Err(e.into());
    }
    let rented = RentedSession {
        session: accepted.session,
        provider: offer.provider,
        offer: offer_id,
        tool: offer.tool.clone(),
        pricing: offer.pricing,
        budget,
        max_duration: accepted.max_duration,
        receipt_interval: accepted.receipt_interval,
    };
    let call_cap = MeterConfig::call_cap_for(offer.limits.max_exec);
    let meter = Meter::start(
        MeterConfig {
            pricing: offer.pricing,
            budget,
            receipt_interval: accepted.receipt_interval,
            call_cap,
        },
        inner.clock.clone(),
    );
    let mut countersigner = Countersigner::new(
        inner.key.clone(),
        accepted.session,
        offer.provider,
        offer.pricing,
        budget,
        inner.config.tolerance,
    );
    let mut lane_guard = None;
    if let (Some(escrow), Some(payments)) = (escrow, &inner.payments) {
        countersigner = countersigner.with_vouchers(payments.signer(), escrow.lane, base);
        lane_guard = Some(escrow.guard);
    }
    let (input, inbox) = mpsc::channel(64);
    let logs = Arc::new(ExecLogs::default());
    let task = Task {
        inner: inner.clone(),
        session: accepted.session,
        meter,
        countersigner,
        timers: HashMap::new(),
        logs: logs.clone(),
        output_cap: offer.limits.output_bytes.saturating_mul(2),
        max_calls: offer.limits.concurrent_execs,
        call_cap,
        receipt_interval: accepted.receipt_interval,
        lane: lane_guard,
    };
    inner
        .history()
        .insert(rented.clone(), logs.clone(), &inner.held);
    inner.rented().insert(
        accepted.session,
        Handle {
            provider: offer.provider,
            session: accepted.session,
            input,
            logs,
        },
    );
    let span =
        info_span!("session", session = %accepted.session, role = "renter", peer = %offer.provider);
    tokio::spawn(task.run(inbox).instrument(span));
    inner.metrics.session_opened("renter");
    info!(session = %accepted.session, tool = %offer.tool, "session opened");
    Ok(rented)
}

/// Agrees on the lane total the session's vouchers count from: the provider answers the
/// larger of both sides' totals. When it is the provider's, it must come with this node's
/// own voucher for it (escrow lanes), and this ledger records the gap; a provider that
/// answers less than this node's total did not resync and is refused.
async fn resync(
    inner: &Inner,
    key: LaneKey,
    session: SessionId,
    ours: LaneHead,
    theirs: LaneHead,
    escrow: &Option<RenterLane>,
) -> Result<Usdc, SessionError> {
    let (Some(escrow), Some(payments)) = (escrow, &inner.payments) else {
        // A ledger lane: nothing is paid from its total, so there is nothing to agree on.
        return Ok(Usdc::ZERO);
    };
    if theirs.acked < ours.acked {
        return Err(SessionError::Remote(format!(
            "the provider counts {} on the lane where this node acknowledged {}",
            theirs.acked, ours.acked
        )));
    }
    if theirs.acked == ours.acked {
        return Ok(ours.acked);
    }
    match theirs.voucher {
        Some(voucher) if payments.is_own_voucher(&voucher, escrow.payout, theirs.acked) => {
            let store = inner.store.clone();
            blocking(move || store.resync_lane(key, session, theirs.acked, Some(voucher))).await?;
            Ok(theirs.acked)
        }
        _ => Err(SessionError::Remote(format!(
            "the provider counts {} on the lane without this node's voucher for it",
            theirs.acked
        ))),
    }
}

async fn close_quietly(inner: &Inner, provider: NodeId, session: SessionId) {
    let request = SessionRequest::Close(CloseSession {
        session,
        reason: CloseReason::RenterRequested,
    });
    let _ = inner.net.request(provider, request).await;
}

struct Task {
    inner: Arc<Inner>,
    session: SessionId,
    meter: Meter,
    countersigner: Countersigner,
    timers: HashMap<ExecId, ExecTimer>,
    logs: Arc<ExecLogs>,
    /// Most output bytes accepted per execution (both streams): the offer's cap per
    /// stream, twice. More is the provider breaking its own offer.
    output_cap: u64,
    /// The offer's `concurrent_execs`.
    max_calls: u32,
    /// The most one call is paid: the offer's `max_exec` plus the kill slack.
    call_cap: Millis,
    /// The receipt interval the provider agreed to.
    receipt_interval: Millis,
    /// The escrow lane, held until the session ends.
    lane: Option<LaneGuard>,
}

impl Task {
    async fn run(mut self, mut inbox: mpsc::Receiver<Input>) {
        // A provider that is alive sends a receipt every interval; two missed ones are
        // the least silence that means anything.
        let grace = Duration::from_millis(
            self.inner
                .config
                .disconnect_grace
                .get()
                .max(self.receipt_interval.get().saturating_mul(2)),
        );
        let mut silent_until = tokio::time::Instant::now() + grace;
        loop {
            let input = tokio::select! {
                input = inbox.recv() => match input {
                    Some(input) => input,
                    None => break,
                },
                () = tokio::time::sleep_until(silent_until) => {
                    // Nothing from the provider for the whole grace period: it is gone
                    // (killed, or cut off). What is owed stays at the last ack.
                    warn!(grace_ms = grace.as_millis() as u64, "the provider went silent; closing the session as disconnected");
                    // A session whose budget is acknowledged in full ended for its budget,
                    // even when the provider's word of it was lost.
                    let reason = if self.countersigner.budget_spent() {
                        CloseReason::BudgetExhausted
                    } else {
                        CloseReason::Disconnected
                    };
                    self.finish(reason).await;
                    break;
                }
            };
            match input {
                Input::StartExec { exec, reply } => {
                    let result = if !self.meter.is_running() {
                        Err(SessionError::NotOpen {
                            session: self.session,
                            state: "suspended or closed".into(),
                        })
                    } else if self.timers.len() >= self.max_calls as usize {
                        Err(SessionError::TooManyCalls {
                            max: self.max_calls,
                        })
                    } else if let Err(refused) = self.meter.call_fits() {
                        Err(SessionError::Budget(refused))
                    } else {
                        self.timers.insert(exec, self.meter.start_exec());
                        self.logs.logs().insert(exec, ExecLog::new());
                        self.inner.history().execs.insert(exec, self.session);
                        Ok(())
                    };
                    let _ = reply.send(result);
                }
                Input::ExecFailed { exec } => {
                    if let Some(timer) = self.timers.remove(&exec) {
                        self.meter.abandon_exec(timer);
                    }
                    self.logs.logs().remove(&exec);
                    self.inner.history().execs.remove(&exec);
                }
                Input::Request { request, reply } => {
                    silent_until = tokio::time::Instant::now() + grace;
                    let (response, abuse, ended) = self.on_request(*request).await;
                    let _ = match abuse {
                        Some(abuse) => reply.abuse(response, abuse),
                        None => reply.send(response),
                    };
                    if ended {
                        break;
                    }
                }
                Input::Finish { done } => {
                    self.finish(CloseReason::RenterRequested).await;
                    // Free the lane before answering, so the next session may use it.
                    self.lane = None;
                    let _ = done.send(());
                    break;
                }
            }
        }
        self.inner.rented().remove(&self.session);
        self.logs.changed.notify_waiters();
    }

    /// Answers a request of the provider: the response, abuse to count, and whether
    /// the session ended.
    async fn on_request(
        &mut self,
        request: SessionRequest,
    ) -> (SessionResponse, Option<Abuse>, bool) {
        match request {
            SessionRequest::Events(batch) => {
                let (response, abuse) = self.on_events(batch);
                (response, abuse, false)
            }
            SessionRequest::Receipt(receipt) => (self.on_receipt(receipt).await, None, false),
            SessionRequest::Close(close) => {
                info!(reason = ?close.reason, "the provider closed the session");
                self.finish(close.reason).await;
                (SessionResponse::Done, None, true)
            }
            _ => (
                error(RpcErrorCode::BadRequest, "not a request a renter serves"),
                None,
                false,
            ),
        }
    }

    fn on_events(&mut self, batch: ExecEvents) -> (SessionResponse, Option<Abuse>) {
        let logs_handle = Arc::clone(&self.logs);
        let mut logs = logs_handle.logs();
        let mut disputed = None;
        let Some(log) = logs.get_mut(&batch.exec) else {
            self.logs.warn_unknown(batch.exec);
            return (error(RpcErrorCode::BadRequest, "unknown execution"), None);
        };
        if batch.seq != log.next_batch || log.exit.is_some() {
            let expected = format!("expected batch {} of a running execution", log.next_batch);
            return (error(RpcErrorCode::BadRequest, &expected), None);
        }
        // The whole batch is checked before any of it is kept: every chunk holds bytes
        // and starts where its stream's last one ended, and the call stays within the
        // offer's output cap. Anything else is the provider breaking its own stream.
        let mut offsets = log.offsets;
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
                    return (
                        error(RpcErrorCode::BadRequest, &broken),
                        Some(Abuse::BrokenOutput),
                    );
                }
                offsets[stream] += chunk.data.len() as u64;
                bytes += chunk.data.len() as u64;
            }
        }
        if log.output_bytes.saturating_add(bytes) > self.output_cap {
            let refusal = error(RpcErrorCode::BadRequest, "more output than the offer's cap");
            return (refusal, Some(Abuse::BrokenOutput));
        }
        drop(logs);
        if !self.make_room(bytes) {
            let full = "the renter holds as much output as it keeps; fetch it and close sessions";
            return (error(RpcErrorCode::RateLimited, full), None);
        }
        let mut logs = logs_handle.logs();
        let Some(log) = logs.get_mut(&batch.exec) else {
            return (error(RpcErrorCode::BadRequest, "unknown execution"), None);
        };
        log.offsets = offsets;
        self.logs
            .bytes
            .fetch_add(bytes, std::sync::atomic::Ordering::SeqCst);
        for event in batch.events {
            match event {
                ExecEvent::Output(chunk) => {
                    log.output_bytes = log.output_bytes.saturating_add(chunk.data.len() as u64);
                    log.events.push(ExecEvent::Output(chunk));
                }
                ExecEvent::Exit(exit) => {
                    if let Some(timer) = self.timers.remove(&batch.exec) {
                        // Only executions that ran are metered (nothing is charged for
                        // refused arguments or a failed sandbox), on the renter's own
                        // timer from request to exit, capped at the offer's limit.
                        if matches!(
                            exit.outcome,
                            ExecOutcome::Exited | ExecOutcome::TimedOut | ExecOutcome::OutOfMemory
                        ) {
                            let measured = self.meter.elapsed(&timer).unwrap_or(Millis::ZERO);
                            let _ = self.meter.finish_exec(timer, exit.cpu);
                            disputed = self.implausible(&exit, measured);
                        } else {
                            self.meter.abandon_exec(timer);
                        }
                    }
                    log.events.push(ExecEvent::Exit(exit.clone()));
                    log.exit = Some(exit);
                }
            }
        }
        log.next_batch += 1;
        drop(logs);
        self.logs.changed.notify_waiters();
        if let Some(reason) = disputed {
            let seq = self.countersigner.last().map_or(0, |r| r.seq);
            self.countersigner.dispute(seq, reason.clone());
            self.meter.suspend();
            let status =
                SessionStatus::Suspended(orien_ledger::SuspendReason::Dispute { seq, reason });
            let (store, session) = (self.inner.store.clone(), self.session);
            tokio::spawn(async move {
                if let Err(e) = blocking(move || store.set_status(&session, status)).await {
                    warn!(error = %e, "cannot record the dispute");
                }
            });
        }
        (SessionResponse::Done, None)
    }

    /// Makes room for `bytes` more output within the renter's cap, forgetting the output
    /// of the oldest ended sessions first; `false` when only live sessions are left.
    fn make_room(&self, bytes: u64) -> bool {
        let limit = self.inner.config.max_output_held;
        let held = &self.inner.held;
        loop {
            let now = held.load(std::sync::atomic::Ordering::SeqCst);
            if now.saturating_add(bytes) <= limit {
                held.fetch_add(bytes, std::sync::atomic::Ordering::SeqCst);
                return true;
            }
            let live: std::collections::HashSet<SessionId> =
                self.inner.rented().keys().copied().collect();
            if !self.inner.history().evict_ended(&live, held) {
                return false;
            }
        }
    }

    /// Whether an exit's wall time is one the renter could have seen: not past the
    /// offer's limit, and not longer than the renter's own timer (plus its tolerance).
    fn implausible(&self, exit: &ExecExit, measured: Millis) -> Option<DisputeReason> {
        let slack = self.inner.config.tolerance.slack;
        if exit.wall <= self.call_cap && exit.wall <= measured.saturating_add(slack) {
            return None;
        }
        warn!(exec = %exit.exec, reported = %exit.wall, %measured, "an exit the renter could not have seen");
        Some(DisputeReason::ImplausibleExit {
            exec: exit.exec,
            reported: exit.wall,
            measured,
            limit: self.call_cap,
        })
    }

    async fn on_receipt(&mut self, receipt: Signed<UsageReceipt>) -> SessionResponse {
        let own = self.meter.current();
        match self
            .countersigner
            .check(&receipt, &own, self.inner.clock.wall())
        {
            // Sent again because the provider lost the ack: the ack was durable already.
            Ok(Checked::Again(ack)) => SessionResponse::Ack(ack),
            Ok(Checked::New(pending)) => {
                let store = self.inner.store.clone();
                let acked = pending.acked().clone();
                match blocking(move || store.ingest(acked)).await {
                    Ok(durable) => {
                        self.inner.metrics.receipt_committed("renter");
                        SessionResponse::Ack(self.countersigner.release(pending, &durable))
                    }
                    // Not durable, so no ack: the provider retries or suspends.
                    Err(e) => {
                        warn!(error = %e, "cannot commit the receipt; not acknowledging it");
                        error(
                            RpcErrorCode::Internal,
                            "the renter could not commit the receipt",
                        )
                    }
                }
            }
            Err(refusal) => {
                let seq = receipt.verify().map(|r| r.seq).unwrap_or(0);
                let status = SessionStatus::Suspended(refusal.suspension(seq));
                let store = self.inner.store.clone();
                let session = self.session;
                let evidence = refusal.evidence.clone();
                let kept = blocking(move || {
                    store.record_evidence(&evidence)?;
                    store.set_status(&session, status)
                })
                .await;
                if let Err(e) = kept {
                    warn!(error = %e, "cannot record dispute evidence");
                }
                self.meter.suspend();
                SessionResponse::Disputed {
                    detail: orien_protocol::fit_detail(refusal.reason.to_string()),
                }
            }
        }
    }

    async fn finish(&mut self, reason: CloseReason) {
        let _ = self.meter.close();
        let store = self.inner.store.clone();
        let session = self.session;
        if let Err(e) =
            blocking(move || store.set_status(&session, SessionStatus::Closed(reason))).await
        {
            warn!(error = %e, "cannot record the session's close");
        }
        self.inner.metrics.session_closed("renter", reason);
        info!(?reason, "session closed");
    }
}
