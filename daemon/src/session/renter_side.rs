//! The renter's side of a session: it meters on its own clock, keeps the output of its
//! executions, and countersigns each receipt only after checking it and committing it
//! durably.

use std::sync::Arc;
use std::time::Duration;

use orien_ledger::{Countersigner, LaneKey, Meter, MeterConfig, SessionRecord, SessionStatus};
use orien_protocol::{
    CloseReason, CloseSession, Exec, ExecEvent, ExecEvents, ExecExit, ExecId, LaneHead, Millis,
    NodeId, OfferId, OpenSession, OutputStream, PaymentLane, Pricing, RpcErrorCode, SessionId,
    SessionRequest, SessionResponse, ToolName, Usdc,
};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tracing::{Instrument, info, info_span, warn};

use super::renter_machine::{RenterAction, RenterInput, RenterMachine, RenterTerms, StartRefused};
use super::{
    ExecLog, ExecLogs, Inner, PaymentChoice, Reply, SessionError, blocking, error, unexpected,
};
use crate::net::Net;
use crate::payments::{LaneGuard, RenterLane};

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
    // A provider that is alive sends a receipt every interval; two missed ones are the
    // least silence that means anything.
    let grace = Duration::from_millis(
        inner
            .config
            .disconnect_grace
            .get()
            .max(accepted.receipt_interval.get().saturating_mul(2)),
    );
    let machine = RenterMachine::new(
        RenterTerms {
            session: accepted.session,
            max_calls: offer.limits.concurrent_execs,
            output_cap: offer.limits.output_bytes.saturating_mul(2),
            call_cap,
            grace,
            slack: inner.config.tolerance.slack,
        },
        meter,
        countersigner,
        inner.clock.clone(),
    );
    let task = Task {
        inner: inner.clone(),
        session: accepted.session,
        machine,
        logs: logs.clone(),
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

/// The driver of a rented session: it feeds the machine the provider's requests, the
/// API's calls and the timers, keeps the accepted output for readers, and does what the
/// machine asks.
struct Task {
    inner: Arc<Inner>,
    session: SessionId,
    machine: RenterMachine<Reply>,
    logs: Arc<ExecLogs>,
    /// The escrow lane, held until the session ends.
    lane: Option<LaneGuard>,
}

impl Task {
    async fn run(mut self, mut inbox: mpsc::Receiver<Input>) {
        loop {
            // Sleep until the provider's silence would mean it is gone, on the session's
            // clock.
            let now = self.inner.clock.monotonic();
            let wait = self
                .machine
                .wake_at()
                .map_or(Duration::from_secs(3600), |at| at.saturating_sub(now));
            let input = tokio::select! {
                input = inbox.recv() => match input {
                    Some(input) => input,
                    None => break,
                },
                () = tokio::time::sleep(wait) => {
                    if self.step(RenterInput::Tick).await {
                        break;
                    }
                    continue;
                }
            };
            let ended = match input {
                Input::StartExec { exec, reply } => {
                    let result = self
                        .machine
                        .start_exec(exec)
                        .map_err(|refused| match refused {
                            StartRefused::NotRunning => SessionError::NotOpen {
                                session: self.session,
                                state: "suspended or closed".into(),
                            },
                            StartRefused::TooManyCalls { max } => {
                                SessionError::TooManyCalls { max }
                            }
                            StartRefused::Budget(refused) => SessionError::Budget(refused),
                        });
                    if result.is_ok() {
                        self.logs.logs().insert(exec, ExecLog::new());
                        self.inner.history().execs.insert(exec, self.session);
                    }
                    let _ = reply.send(result);
                    false
                }
                Input::ExecFailed { exec } => {
                    self.machine.exec_failed(exec);
                    self.logs.logs().remove(&exec);
                    self.inner.history().execs.remove(&exec);
                    false
                }
                Input::Request { request, reply } => {
                    self.machine.heard();
                    match *request {
                        SessionRequest::Events(batch) => {
                            self.on_events(batch, reply).await;
                            false
                        }
                        SessionRequest::Receipt(receipt) => {
                            self.step(RenterInput::Receipt { receipt, reply }).await
                        }
                        SessionRequest::Close(close) => {
                            self.step(RenterInput::Closed {
                                reason: close.reason,
                                reply,
                            })
                            .await
                        }
                        _ => {
                            let refused =
                                error(RpcErrorCode::BadRequest, "not a request a renter serves");
                            let _ = reply.send(refused);
                            false
                        }
                    }
                }
                Input::Finish { done } => {
                    self.step(RenterInput::Finish).await;
                    // Free the lane before answering, so the next session may use it.
                    self.lane = None;
                    let _ = done.send(());
                    true
                }
            };
            if ended {
                break;
            }
        }
        self.inner.rented().remove(&self.session);
        self.logs.changed.notify_waiters();
    }

    /// Runs one input through the machine and does what it asks; whether the session
    /// ended.
    async fn step(&mut self, input: RenterInput<Reply>) -> bool {
        let actions = self.machine.handle(input);
        self.perform(actions).await
    }

    async fn perform(&mut self, actions: Vec<RenterAction<Reply>>) -> bool {
        let mut actions = std::collections::VecDeque::from(actions);
        let mut ended = false;
        while let Some(action) = actions.pop_front() {
            match action {
                RenterAction::Reply(reply, response) => {
                    let _ = reply.send(response);
                }
                RenterAction::Commit(acked) => {
                    let store = self.inner.store.clone();
                    let result = blocking(move || store.ingest(acked))
                        .await
                        .map_err(|e| e.to_string());
                    if result.is_ok() {
                        self.inner.metrics.receipt_committed("renter");
                    }
                    actions.extend(self.machine.handle(RenterInput::Committed(result)));
                }
                RenterAction::Suspend { status, evidence } => {
                    let (store, session) = (self.inner.store.clone(), self.session);
                    let kept = blocking(move || {
                        if let Some(evidence) = evidence {
                            store.record_evidence(&evidence)?;
                        }
                        store.set_status(&session, status)
                    })
                    .await;
                    if let Err(e) = kept {
                        warn!(error = %e, "cannot record the suspension");
                    }
                }
                RenterAction::Ended(reason) => {
                    let (store, session) = (self.inner.store.clone(), self.session);
                    let status = SessionStatus::Closed(reason);
                    if let Err(e) = blocking(move || store.set_status(&session, status)).await {
                        warn!(error = %e, "cannot record the session's close");
                    }
                    self.inner.metrics.session_closed("renter", reason);
                    info!(?reason, "session closed");
                    ended = true;
                }
            }
        }
        ended
    }

    /// A batch of a call's output: checked by the machine, kept for readers within the
    /// node's cap on held output, then taken by the machine.
    async fn on_events(&mut self, batch: ExecEvents, reply: Reply) {
        let bytes = match self.machine.check_events(&batch) {
            Ok(bytes) => bytes,
            Err(refused) => {
                let _ = match refused.abuse {
                    Some(abuse) => reply.abuse(refused.response(), abuse),
                    None => reply.send(refused.response()),
                };
                return;
            }
        };
        if !self.make_room(bytes) {
            let full = "the renter holds as much output as it keeps; fetch it and close sessions";
            let _ = reply.send(error(RpcErrorCode::RateLimited, full));
            return;
        }
        let actions = self.machine.accept_events(&batch);
        {
            let mut logs = self.logs.logs();
            if let Some(log) = logs.get_mut(&batch.exec) {
                self.logs
                    .bytes
                    .fetch_add(bytes, std::sync::atomic::Ordering::SeqCst);
                for event in batch.events {
                    if let ExecEvent::Exit(exit) = &event {
                        log.exit = Some(exit.clone());
                    }
                    log.events.push(event);
                }
            }
        }
        self.logs.changed.notify_waiters();
        let _ = reply.send(SessionResponse::Done);
        self.perform(actions).await;
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
}
