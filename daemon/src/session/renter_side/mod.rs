//! The renter's side of a session: it meters on its own clock, keeps the output of its
//! executions, and countersigns each receipt only after checking it and committing it
//! durably.

use std::sync::Arc;
use std::time::Duration;

use orien_ledger::{ExecFailure, ExecRecord, ExecState, SessionStatus};
use orien_protocol::{
    CloseReason, CloseSession, ContentHash, Exec, ExecEvent, ExecEvents, ExecExit, ExecId, Millis,
    NodeId, OfferId, OutputStream, Pricing, RpcErrorCode, SessionId, SessionRequest,
    SessionResponse, Signed, ToolName, UsageReceipt, Usdc,
};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use super::call_terms::CallTerms;
use super::exec_records::{ExecRecords, end_of};
use super::renter_machine::{RenterAction, RenterInput, RenterMachine, StartRefused};
use super::{ExecLog, ExecLogs, Inner, Reply, SessionError, blocking, error, unexpected};
use crate::metrics::Side;
use crate::net::Net;
use crate::payments::LaneGuard;

mod file_gate;
mod opening;

pub(crate) use file_gate::FILE_OPS_WAITING;
use file_gate::FileGate;
pub(super) use opening::open;

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
    /// A call is about to be asked for: admitted by the machine and recorded durably
    /// before the reply.
    StartExec {
        exec: ExecId,
        /// Another tool's terms (`None`: the session's own tool).
        terms: Option<CallTerms>,
        args_json: String,
        outputs: Vec<String>,
        reply: oneshot::Sender<Result<(), SessionError>>,
    },
    /// The provider confirmed the call started.
    ExecStarted { exec: ExecId },
    /// The provider did not start the call.
    ExecFailed { exec: ExecId },
    /// Close locally (status recorded) and answer once that is durable.
    Finish { done: oneshot::Sender<()> },
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
    /// The tool the session opened on.
    pub(super) tool: ToolName,
    session: SessionId,
    input: mpsc::Sender<Input>,
    logs: Arc<ExecLogs>,
    /// Turns of the session's file requests.
    files: Arc<FileGate>,
    /// The turns of its file transfers, apart: a listing does not wait for a
    /// gigabyte to move.
    transfers: Arc<FileGate>,
}

impl Handle {
    /// Waits for the session's turn to send a file request.
    pub(super) async fn file_turn(
        &self,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, SessionError> {
        self.files.enter(self.session).await
    }

    /// Waits for the session's turn to move a file.
    pub(super) async fn transfer_turn(
        &self,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, SessionError> {
        self.transfers.enter(self.session).await
    }

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

    /// Starts a call: of another tool when `call` names its offer and terms, else of
    /// the session's own.
    pub(super) async fn exec(
        &self,
        net: &Net,
        call: Option<(OfferId, CallTerms)>,
        args_json: String,
        outputs: Vec<String>,
    ) -> Result<ExecId, SessionError> {
        let exec = ExecId::random();
        let asked = args_json.clone();
        let (offer, terms) = call.unzip();
        let named = outputs.clone();
        self.ask(|reply| Input::StartExec {
            exec,
            terms,
            args_json: asked,
            outputs: named,
            reply,
        })
        .await??;
        let request = SessionRequest::Exec(Exec {
            session: self.session,
            exec,
            args_json,
            offer,
            outputs,
        });
        match net.request(self.provider, request).await {
            Ok(SessionResponse::ExecStarted { exec: started }) if started == exec => {
                // Recorded as running when the task gets to it (the session may have
                // ended meanwhile, and then the call is lost with it).
                let _ = self.input.send(Input::ExecStarted { exec }).await;
                Ok(exec)
            }
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

/// The driver of a rented session: it feeds the machine the provider's requests, the
/// API's calls and the timers, keeps the accepted output for readers, and does what the
/// machine asks.
struct Task {
    inner: Arc<Inner>,
    session: SessionId,
    /// The provider it rents from.
    provider: NodeId,
    /// The terms of a call of the tool the session opened on.
    own: CallTerms,
    machine: RenterMachine<Reply>,
    /// The durable records of its calls.
    records: ExecRecords,
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
                Input::StartExec {
                    exec,
                    terms,
                    args_json,
                    outputs,
                    reply,
                } => {
                    let terms = terms.unwrap_or_else(|| self.own.clone());
                    let tool = terms.tool.clone();
                    let mut result = self
                        .machine
                        .start_exec(exec, terms, &args_json, &outputs)
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
                        let record = ExecRecord::requested(
                            exec,
                            self.session,
                            tool,
                            args_json,
                            self.inner.clock.wall(),
                        );
                        if let Err(e) = self.records.begin(record).await {
                            self.machine.exec_failed(exec);
                            result = Err(e.into());
                        }
                    }
                    if result.is_ok() {
                        let started = self.inner.clock.monotonic();
                        self.logs.logs().insert(exec, ExecLog::new(started));
                        self.inner.metrics.execution_started(Side::Renter);
                        self.inner.history().execs.insert(exec, self.session);
                    }
                    let _ = reply.send(result);
                    false
                }
                Input::ExecStarted { exec } => {
                    self.records.started(exec, self.inner.clock.wall()).await;
                    false
                }
                Input::ExecFailed { exec } => {
                    self.machine.exec_failed(exec);
                    self.records.lost(exec, self.inner.clock.wall()).await;
                    if let Some(log) = self.logs.logs().remove(&exec) {
                        let ran = self.inner.clock.monotonic().saturating_sub(log.started);
                        self.inner.metrics.execution_ended(Side::Renter, ran);
                    }
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
                        SessionRequest::Receipt(receipt) => self.on_receipt(receipt, reply).await,
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
        // Calls that never reported an exit end with the session: recorded before the
        // session reads as ended, so a reader that sees it ended finds them lost.
        self.records.lose_all(self.inner.clock.wall()).await;
        self.inner.rented().remove(&self.session);
        let now = self.inner.clock.monotonic();
        for log in self.logs.logs().values().filter(|l| l.exit.is_none()) {
            self.inner
                .metrics
                .execution_ended(Side::Renter, now.saturating_sub(log.started));
        }
        self.logs.changed.notify_waiters();
    }

    /// A receipt: on an escrow lane, checked and committed under the lane's turn, so
    /// its voucher is exactly the lane's total with every session on it; whether the
    /// session ended.
    async fn on_receipt(&mut self, receipt: Signed<UsageReceipt>, reply: Reply) -> bool {
        let Some(lane) = &self.lane else {
            let lane_acked = Usdc::ZERO;
            return self
                .step(RenterInput::Receipt {
                    receipt,
                    reply,
                    lane_acked,
                })
                .await;
        };
        let turn = lane.turn();
        let _turn = turn.lock().await;
        let (payments, id) = (lane.payments(), lane.lane());
        let lane_acked = match blocking(move || payments.lane_head(id)).await {
            Ok(head) => head.acked,
            Err(e) => {
                // Not acknowledged: the provider sends it again or suspends.
                warn!(error = %e, "cannot read the lane's total; not acknowledging the receipt");
                let _ = reply.send(error(
                    RpcErrorCode::Internal,
                    "the renter could not read its ledger",
                ));
                return false;
            }
        };
        self.step(RenterInput::Receipt {
            receipt,
            reply,
            lane_acked,
        })
        .await
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
                    let committing = self.inner.clock.monotonic();
                    let result = blocking(move || store.ingest_checked(*acked))
                        .await
                        .map_err(|e| e.to_string());
                    if let Ok(durable) = &result {
                        let took = self.inner.clock.monotonic().saturating_sub(committing);
                        let group = durable.group();
                        self.inner
                            .metrics
                            .receipt_committed(Side::Renter, took, group);
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
                    let closed = blocking(move || {
                        store.set_status(&session, status)?;
                        store.head(&session)
                    })
                    .await;
                    let paid = match closed {
                        Ok(head) => head.map_or(Usdc::ZERO, |h| h.amount),
                        Err(e) => {
                            warn!(error = %e, "cannot record the session's close");
                            Usdc::ZERO
                        }
                    };
                    self.inner.metrics.session_closed(Side::Renter, reason);
                    self.inner
                        .reputation
                        .record_session(self.provider, reason, paid);
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
        // The record of the output and of the exit is durable before the provider hears
        // the batch was taken.
        let mut exit = None;
        let now = self.inner.clock.wall();
        for event in &batch.events {
            match event {
                ExecEvent::Output(chunk) => self.records.output(batch.exec, chunk, now),
                ExecEvent::Exit(e) => exit = Some(e),
            }
        }
        let output = exit.map(|_| self.records.take_output(batch.exec));
        let received = output
            .as_ref()
            .map_or([ContentHash::of(b""); 2], |(out, err)| {
                [out.sha256, err.sha256].map(ContentHash::from_bytes)
            });
        let actions = self.machine.accept_events(&batch, received);
        let mut answer = SessionResponse::Done;
        if let (Some(exit), Some(output)) = (exit, output) {
            let ended = self.machine.call_end(exit.exec);
            let cost = ended.map_or(Usdc::ZERO, |e| e.cost);
            let mut end = end_of(exit, cost, output, batch.result.clone());
            if let Some(fault) = ended.and_then(|e| e.fault) {
                warn!(exec = %exit.exec, %fault, "the provider's signed result is false; disputing the session");
                end.state = ExecState::Failed(ExecFailure::Disputed);
                end.detail = Some(format!("the provider's signed result {fault}"));
                answer = SessionResponse::Disputed {
                    detail: orien_protocol::fit_detail(end.detail.clone().unwrap_or_default()),
                };
            }
            self.records
                .end(exit.exec, end, self.inner.clock.wall())
                .await;
        }
        {
            let mut logs = self.logs.logs();
            if let Some(log) = logs.get_mut(&batch.exec) {
                self.logs
                    .bytes
                    .fetch_add(bytes, std::sync::atomic::Ordering::SeqCst);
                let now = self.inner.clock.monotonic();
                let metrics = &self.inner.metrics;
                for event in batch.events {
                    match &event {
                        ExecEvent::Exit(exit) => {
                            log.exit = Some(exit.clone());
                            metrics.execution_ended(Side::Renter, now.saturating_sub(log.started));
                        }
                        ExecEvent::Output(_) if log.events.is_empty() => metrics
                            .first_output
                            .observe(now.saturating_sub(log.started).as_secs_f64()),
                        _ => {}
                    }
                    log.events.push(event);
                }
            }
        }
        self.logs.changed.notify_waiters();
        // A dispute is recorded before the provider hears of it.
        self.perform(actions).await;
        let _ = reply.send(answer);
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
