//! The provider's side of a session: it runs the renter's calls in the sandbox,
//! streams their output, meters the session (running calls included), and issues
//! receipts until each is acknowledged and durably committed. A renter silent for one
//! ack timeout since its last ack ends the session and its sandbox (its calls with it),
//! and a call whose worst case does not fit the budget left is refused, so the provider
//! never works unpaid for more than one ack window of session time and running calls.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use orien_ledger::{CheckedReceipt, ExecRecord, SessionStatus, StoredOutput};
use orien_protocol::rpc::MAX_EVENTS_PER_BATCH;
use orien_protocol::{
    Artefact, ArtefactKept, CloseReason, CloseSession, ContentHash, EvmAddress, Exec, ExecEvent,
    ExecEvents, ExecExit, ExecId, ExecResult, FileInfo, LaneId, Millis, NodeId, RpcErrorCode,
    SessionId, SessionRequest, SessionResponse, Signed, ToolName,
};
use orien_provider::{EntryKind, ExecStream, SandboxSession, WorkspacePath};
use tokio::sync::{mpsc, oneshot};
use tracing::{Instrument, debug, info, info_span, warn};

use super::call_terms::CallTerms;
use super::exec_records::{CallOutput, ExecRecords, end_of};
use super::provider_machine::{
    AckCheck, Delivery, ProviderAction, ProviderInput, ProviderMachine, RETRY,
};
use super::{Inner, Reply, blocking, error};
use crate::metrics::Side;
use crate::net::{Net, NetError};
use crate::payments::{LaneGuard, Payments};

mod admission;

use admission::Slot;
pub(super) use admission::open;

/// Attempts at telling the renter that the provider ended its session.
const CLOSE_NOTICES: u32 = 3;
/// File requests of one session served at once; more answer "rate limited".
const FILE_OPS: usize = orien_protocol::rpc::FILE_OPS_PER_SESSION;
/// File transfers of one session under way at once; more are refused as busy.
pub(super) const TRANSFERS: usize = 2;

pub(super) enum Input {
    Request {
        request: Box<SessionRequest>,
        reply: Reply,
    },
    ExecDone {
        exit: ExecExit,
        /// The call's standard output and error, as recorded while they were forwarded.
        output: (StoredOutput, StoredOutput),
        /// What was kept of each output path the call named.
        artefacts: Vec<Artefact>,
        /// Where the signed result goes (dropped when there is none to send).
        signed: oneshot::Sender<Signed<ExecResult>>,
    },
    /// The renter took the batch carrying a call's signed result.
    ResultDelivered { exec: ExecId },
    /// The renter refused a call's signed result as false.
    ResultDisputed { exec: ExecId, detail: String },
    ReceiptAnswer {
        result: Result<SessionResponse, NetError>,
    },
    /// A call of another tool whose container is ready now: it starts (and is metered)
    /// from here.
    ExecReady {
        exec: Exec,
        terms: CallTerms,
        reply: Reply,
    },
    /// The node stops: close on a closing receipt and tell the renter. The sender is
    /// dropped when the session's task has ended.
    Stop(oneshot::Sender<()>),
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
    /// The session's sandbox, lent to its file transfers.
    pub(super) sandbox: Arc<dyn SandboxSession>,
    /// Turns of its file transfers.
    pub(super) transfers: Arc<tokio::sync::Semaphore>,
}

impl Handle {
    pub(super) fn deliver(&self, request: SessionRequest, reply: Reply) {
        super::deliver(&self.input, request, reply);
    }
}

/// What a stop did to the sessions the node provided.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stopped {
    /// Sessions that ended before the deadline, closed on a closing receipt (or ended
    /// otherwise meanwhile: the renter closed, the ack timed out).
    pub closed: usize,
    /// Sessions still open or opening at the deadline: they end with the node, on what
    /// their renters acknowledged, and its next start closes them out.
    pub unfinished: usize,
}

/// How often a stop looks again for sessions that were opening when it began.
const OPENING_POLL: Duration = Duration::from_millis(100);

/// Takes no more sessions and closes every provided one on a closing receipt, its
/// renter told why; waits for them until `deadline`.
pub(super) async fn stop_all(inner: &Arc<Inner>, deadline: tokio::time::Instant) -> Stopped {
    use std::sync::atomic::Ordering;
    inner.stopping.store(true, Ordering::SeqCst);
    let mut asked = std::collections::HashSet::new();
    let mut stopped = Stopped::default();
    loop {
        let fresh: Vec<(SessionId, Handle)> = inner
            .provided()
            .iter()
            .filter(|(session, _)| !asked.contains(*session))
            .map(|(session, handle)| (*session, handle.clone()))
            .collect();
        let mut ends = Vec::with_capacity(fresh.len());
        for (session, handle) in fresh {
            asked.insert(session);
            let (waiter, end) = oneshot::channel();
            // A session whose task has ended already has nothing to close.
            if handle.input.send(Input::Stop(waiter)).await.is_ok() {
                ends.push(end);
            }
        }
        for end in ends {
            // Answered by the task's end (its sender dropped), never by a value.
            if tokio::time::timeout_at(deadline, end).await.is_err() {
                break;
            }
            stopped.closed += 1;
        }
        // Sessions opening when the stop began hold a slot before they are listed.
        let open = inner.slots.load(Ordering::SeqCst);
        if open == 0 || tokio::time::Instant::now() >= deadline {
            stopped.unfinished = open;
            return stopped;
        }
        if inner
            .provided()
            .keys()
            .all(|session| asked.contains(session))
        {
            tokio::time::sleep_until(deadline.min(tokio::time::Instant::now() + OPENING_POLL))
                .await;
        }
    }
}

/// A call's exit as the sandbox reported it, until the machine has costed and signed it.
struct Finished {
    exit: ExecExit,
    output: (StoredOutput, StoredOutput),
    /// The forwarder waiting to send the signed result with the exit.
    signed: oneshot::Sender<Signed<ExecResult>>,
}

/// The driver of a provided session: it feeds the machine the renter's requests, the
/// sandbox's exits, the answers to receipts and the timers, and does what it asks.
struct Task {
    inner: Arc<Inner>,
    session: SessionId,
    renter: NodeId,
    sandbox: Arc<dyn SandboxSession>,
    machine: ProviderMachine<Reply>,
    input: mpsc::Sender<Input>,
    /// File requests that may run at once.
    file_ops: Arc<tokio::sync::Semaphore>,
    /// The removal of the sandbox, started when the session began to close.
    removing: Option<tokio::task::JoinHandle<()>>,
    /// On escrow lanes: the payments, to settle a lane whose renter is leaving.
    payments: Option<Arc<Payments>>,
    /// The escrow lane, held until the session ends.
    lane: Option<LaneGuard>,
    /// Its id.
    lane_id: Option<LaneId>,
    /// When each running call started, on the session's clock (for the metrics).
    calls: std::collections::HashMap<ExecId, Duration>,
    /// The terms of a call of the tool the session opened on (a call naming no other
    /// offer).
    own: CallTerms,
    /// How long after the close its artefacts are kept, as its offer promised.
    keep_artefacts: Millis,
    /// The audit records of its calls.
    records: ExecRecords,
    /// The exit reported by the sandbox in the current step, waiting for the machine's
    /// cost and signed result.
    finished: Option<Finished>,
    /// When the receipt in flight was sent, on the session's clock (for the metrics).
    receipt_sent: Option<Duration>,
    /// Who waits for the session to end because the node stops: told by the drop.
    stopping: Vec<oneshot::Sender<()>>,
    _slot: Slot,
}

impl Task {
    async fn run(mut self, mut inbox: mpsc::Receiver<Input>) {
        // The renter asking the chain to close the lane ends the session: it is leaving,
        // and the lane must be settled before the thaw window ends.
        let mut closing_lanes = self.payments.as_ref().map(|p| p.closing_lanes());
        loop {
            // Sleep exactly until the machine's next timer, on the session's clock.
            let now = self.inner.clock.monotonic();
            let wait = self
                .machine
                .wake_at()
                .map_or(Duration::from_secs(3600), |at| at.saturating_sub(now));
            let input = tokio::select! {
                input = inbox.recv() => match input {
                    Some(Input::Request { request, reply }) => match self.route(*request, reply) {
                        Some(input) => input,
                        None => continue,
                    },
                    Some(Input::ExecDone { exit, output, artefacts, signed }) => {
                        self.inner.metrics.execution(&exit.outcome);
                        self.call_ended(exit.exec);
                        let hashes = [&output.0, &output.1].map(|o| ContentHash::from_bytes(o.sha256));
                        self.finished = Some(Finished { exit: exit.clone(), output, signed });
                        ProviderInput::Exited { exit, output: hashes, artefacts }
                    }
                    Some(Input::ExecReady { exec, terms, reply }) => {
                        ProviderInput::Exec { exec, terms, reply }
                    }
                    Some(Input::Stop(waiter)) => {
                        self.stopping.push(waiter);
                        ProviderInput::Stop
                    }
                    Some(Input::ResultDelivered { exec }) => ProviderInput::ResultDelivered { exec },
                    Some(Input::ResultDisputed { exec, detail }) => {
                        ProviderInput::ResultDisputed { exec, detail }
                    }
                    Some(Input::ReceiptAnswer { result }) => {
                        if matches!(result, Ok(SessionResponse::Ack(_))) {
                            self.observe_ack();
                        }
                        ProviderInput::Delivered(match result {
                            Ok(answer) => Delivery::Answered(answer),
                            Err(e) => Delivery::Failed(e.to_string()),
                        })
                    }
                    None => ProviderInput::Shutdown,
                },
                () = tokio::time::sleep(wait) => ProviderInput::Tick,
                Some(()) = lane_closed(&mut closing_lanes, self.lane_id) => {
                    closing_lanes = None;
                    ProviderInput::LaneClosing
                }
            };
            let ended = self.step(input).await;
            // An exit the machine did not cost (a call it did not know) gets no result:
            // its forwarder stops waiting.
            self.finished = None;
            if let Some((reason, replies)) = ended {
                return self.teardown(reason, replies).await;
            }
        }
    }

    /// Turns a renter's request into the machine's input, or serves it here (files).
    fn route(&mut self, request: SessionRequest, reply: Reply) -> Option<ProviderInput<Reply>> {
        match request {
            SessionRequest::Exec(exec) => {
                let terms = match exec.offer {
                    None => self.own.clone(),
                    Some(id) => match self.inner.own_offers.get(&id) {
                        Some(offer) if offer.tool != self.own.tool => {
                            // Its container is made before the call is metered: the
                            // renter does not pay for it.
                            let (sandbox, input) = (self.sandbox.clone(), self.input.clone());
                            let terms = CallTerms::of_offer(&offer);
                            tokio::spawn(async move {
                                match sandbox.prepare_tool(&terms.tool).await {
                                    Ok(()) => {
                                        let ready = Input::ExecReady { exec, terms, reply };
                                        let _ = input.send(ready).await;
                                    }
                                    Err(detail) => {
                                        let detail = orien_protocol::fit_detail(detail);
                                        let _ = reply.send(error(RpcErrorCode::Internal, &detail));
                                    }
                                }
                            });
                            return None;
                        }
                        Some(offer) => CallTerms::of_offer(&offer),
                        None => {
                            let unknown = format!(
                                "offer {id} is not one of this provider's current offers; list its offers again"
                            );
                            let _ = reply.send(error(RpcErrorCode::BadRequest, &unknown));
                            return None;
                        }
                    },
                };
                Some(ProviderInput::Exec { exec, terms, reply })
            }
            SessionRequest::Close(close) => Some(ProviderInput::Close {
                reason: close.reason,
                reply,
            }),
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
                    return None;
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
                None
            }
            _ => {
                let _ = reply.send(error(
                    RpcErrorCode::BadRequest,
                    "not a request a provider serves",
                ));
                None
            }
        }
    }

    /// Runs one input through the machine and does what it asks; the end of the
    /// session, if it came.
    async fn step(&mut self, input: ProviderInput<Reply>) -> Option<(CloseReason, Vec<Reply>)> {
        let mut actions = VecDeque::from(self.machine.handle(input));
        while let Some(action) = actions.pop_front() {
            match action {
                ProviderAction::Reply(reply, response) => {
                    let _ = reply.send(response);
                }
                ProviderAction::StartCall {
                    exec,
                    tool,
                    args,
                    args_json,
                    outputs,
                } => self.start_call(exec, tool, args, args_json, outputs).await,
                ProviderAction::CallEnded { exec, cost, result } => {
                    if let Some(finished) = self.finished.take_if(|f| f.exit.exec == exec) {
                        let now = self.inner.clock.wall();
                        let end = end_of(&finished.exit, cost, finished.output, result.clone());
                        self.records.end(exec, end, now).await;
                        if let Some(result) = result {
                            let _ = finished.signed.send(result);
                        }
                    }
                }
                ProviderAction::CloseSandbox => {
                    let sandbox = self.sandbox.clone();
                    self.removing = Some(tokio::spawn(async move {
                        if let Err(e) = sandbox.close().await {
                            warn!(error = %e, "cannot remove the sandbox; the reaper will");
                        }
                    }));
                }
                ProviderAction::Send(receipt) => {
                    self.receipt_sent = Some(self.inner.clock.monotonic());
                    let (net, renter, input) =
                        (self.inner.net.clone(), self.renter, self.input.clone());
                    tokio::spawn(async move {
                        let result = net.request(renter, SessionRequest::Receipt(receipt)).await;
                        let _ = input.send(Input::ReceiptAnswer { result }).await;
                    });
                }
                ProviderAction::Commit(acked) => {
                    let store = self.inner.store.clone();
                    let committing = self.inner.clock.monotonic();
                    let result = blocking(move || store.ingest_checked(*acked))
                        .await
                        .map_err(|e| e.to_string());
                    if let Ok(durable) = &result {
                        let now = self.inner.clock.monotonic();
                        let metrics = &self.inner.metrics;
                        let took = now.saturating_sub(committing);
                        metrics.receipt_committed(Side::Provider, took, durable.group());
                        if let Some(sent) = self.receipt_sent.take() {
                            metrics
                                .receipt_durable
                                .observe(now.saturating_sub(sent).as_secs_f64());
                        }
                    }
                    actions.extend(self.machine.handle(ProviderInput::Committed(result)));
                }
                ProviderAction::Ended { reason, replies } => return Some((reason, replies)),
            }
        }
        None
    }

    /// Starts a call once its audit record is durable.
    async fn start_call(
        &mut self,
        exec: ExecId,
        tool: ToolName,
        args: serde_json::Value,
        args_json: String,
        outputs: Vec<WorkspacePath>,
    ) {
        let now = self.inner.clock.wall();
        let record = ExecRecord::running(exec, self.session, tool.clone(), args_json, now);
        if let Err(e) = self.records.begin(record).await {
            // The call runs anyway: the renter was told it started, and its receipts
            // stand on their own; the ledger's failure shows in the next commit.
            warn!(%exec, error = %e, "cannot record the execution");
        }
        self.calls.insert(exec, self.inner.clock.monotonic());
        self.inner.metrics.execution_started(Side::Provider);
        let stream = self
            .sandbox
            .exec_tool(exec, &tool, args, self.inner.clock.clone());
        let forward = forward_output(
            stream,
            self.inner.net.clone(),
            Route {
                renter: self.renter,
                session: self.session,
                exec,
            },
            CallOutput::new(self.inner.config.kept_output),
            Outputs {
                paths: outputs,
                staging: self.inner.staging.clone(),
                sandbox: self.sandbox.clone(),
            },
            self.input.clone(),
        );
        tokio::spawn(forward.instrument(info_span!("exec", session = %self.session, exec = %exec)));
    }

    /// Times the ack of the receipt in flight.
    fn observe_ack(&self) {
        if let Some(sent) = self.receipt_sent {
            let took = self.inner.clock.monotonic().saturating_sub(sent);
            self.inner.metrics.receipt_ack.observe(took.as_secs_f64());
        }
    }

    /// Counts the end of a call that was running.
    fn call_ended(&mut self, exec: ExecId) {
        if let Some(started) = self.calls.remove(&exec) {
            let ran = self.inner.clock.monotonic().saturating_sub(started);
            self.inner.metrics.execution_ended(Side::Provider, ran);
        }
    }

    async fn teardown(mut self, reason: CloseReason, replies: Vec<Reply>) {
        self.inner.provided().remove(&self.session);
        if let Some(staging) = self.inner.staging.clone() {
            let session = self.session;
            let keep_for = self.keep_artefacts.to_duration();
            let _ = tokio::task::spawn_blocking(move || {
                staging.forget(session);
                staging.artefacts.closed(session, keep_for);
            })
            .await;
        }
        // Calls still running end with the sandbox.
        let running: Vec<ExecId> = self.calls.keys().copied().collect();
        for exec in running {
            self.call_ended(exec);
        }
        self.records.lose_all(self.inner.clock.wall()).await;
        let store = self.inner.store.clone();
        let session = self.session;
        let status = SessionStatus::Closed(reason);
        if let Err(e) = blocking(move || store.set_status(&session, status)).await {
            warn!(error = %e, "cannot record the session's end");
        }
        if let Some(removing) = self.removing.take() {
            let _ = removing.await;
        }
        // The lane is free before the renter hears of the close, so its next session on
        // the lane is not refused as overlapping this one.
        let idle = self.lane.is_some_and(LaneGuard::release);
        if idle && let (Some(payments), Some(lane)) = (&self.payments, self.lane_id) {
            close_lane_gap(&self.inner, payments, lane, self.renter, session).await;
        }
        // A lane whose renter is leaving is settled as soon as its session ends.
        if let (Some(payments), Some(lane)) = (&self.payments, self.lane_id)
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
        if !replies.is_empty() {
            for reply in replies {
                let _ = reply.send(SessionResponse::Done);
            }
        } else if !renter_initiated {
            // Tell the renter why, so both ledgers record the same reason; a renter that
            // stopped acknowledging may still be listening.
            let (net, renter) = (self.inner.net.clone(), self.renter);
            let notice = async move {
                for attempt in 1..=CLOSE_NOTICES {
                    let close = SessionRequest::Close(CloseSession { session, reason });
                    match net.request(renter, close).await {
                        Ok(SessionResponse::Done) => return,
                        Ok(answer) => return debug!(?answer, "the renter answered the close"),
                        Err(e) => debug!(attempt, error = %e, "close not delivered"),
                    }
                    tokio::time::sleep(RETRY).await;
                }
            };
            if self.stopping.is_empty() {
                tokio::spawn(notice);
            } else {
                // The node waits for this session before it stops its network.
                notice.await;
            }
        }
        self.inner.metrics.session_closed(Side::Provider, reason);
        if super::recovery::ended_normally(reason) {
            self.inner
                .completed_provided
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        info!(?reason, "session ended");
    }
}

/// On a lane this session's end left idle: a voucher above the lane's total (a later
/// ack of another session counted receipts whose acks were lost) will not be matched by
/// those receipts any more, so the lane moves up to it and can settle it. Under the lane's
/// turn, and only while no session opened on the lane meanwhile (its opening resyncs).
async fn close_lane_gap(
    inner: &Arc<Inner>,
    payments: &Arc<Payments>,
    lane: LaneId,
    renter: NodeId,
    session: SessionId,
) {
    let turn = payments.turn(lane);
    let _turn = turn.lock().await;
    if payments.sessions_on(&lane) > 0 {
        return;
    }
    let key = orien_ledger::LaneKey {
        renter,
        provider: inner.key.node_id(),
        escrow: Some(lane),
    };
    let store = inner.store.clone();
    match blocking(move || store.close_lane_gap(key, session)).await {
        Ok(gap) if gap.is_zero() => {}
        Ok(gap) => {
            info!(%lane, %gap, "the lane's voucher pays receipts whose acks never arrived; recorded as its gap")
        }
        Err(e) => {
            warn!(%lane, error = %e, "cannot record the lane's gap; the next session on it resyncs")
        }
    }
}

/// Vets an escrow ack: a voucher signed by the renter's wallet for this lane. (The
/// ledger then checks that the lane's vouchers cover its acknowledged total.)
struct VoucherCheck {
    payments: Arc<Payments>,
    renter_wallet: EvmAddress,
    payout: EvmAddress,
}

impl AckCheck for VoucherCheck {
    fn check(&self, acked: &CheckedReceipt) -> Result<(), String> {
        let voucher = acked
            .ack()
            .voucher
            .as_ref()
            .ok_or("an ack on an escrow lane without a voucher")?;
        self.payments
            .check_voucher(voucher, self.renter_wallet, self.payout)
            .map_err(|e| e.to_string())
    }
}

/// Where a call's output goes.
struct Route {
    renter: NodeId,
    session: SessionId,
    exec: ExecId,
}

/// The output paths a call named, and where their copies are kept.
struct Outputs {
    paths: Vec<WorkspacePath>,
    staging: Option<Arc<crate::transfer::staging::Staging>>,
    sandbox: Arc<dyn SandboxSession>,
}

impl Outputs {
    /// Keeps a copy of each path for `renter`, once the call has exited; an output is
    /// part of its call, so the copy is made before the exit goes out.
    async fn keep(&self, session: SessionId, renter: NodeId) -> Vec<Artefact> {
        if self.paths.is_empty() {
            return Vec::new();
        }
        let Some(staging) = &self.staging else {
            // No staging area (it could not be made at start): nothing can be kept.
            return self
                .paths
                .iter()
                .map(|p| Artefact {
                    path: p.to_string(),
                    kept: ArtefactKept::Failed,
                })
                .collect();
        };
        staging
            .artefacts
            .keep(session, renter, self.sandbox.as_ref(), &self.paths)
            .await
    }
}

/// Reports the exit of an execution to the session's task, with the record of its
/// output and what was kept of its output paths, and streams its events to the renter
/// in ordered, acknowledged batches.
async fn forward_output(
    mut stream: ExecStream,
    net: Net,
    route: Route,
    mut output: CallOutput,
    outputs: Outputs,
    input: mpsc::Sender<Input>,
) {
    let Route {
        renter,
        session,
        exec,
    } = route;
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
        for event in &events {
            if let ExecEvent::Output(chunk) = event {
                output.push(chunk);
            }
        }
        let exit = match events.last() {
            Some(ExecEvent::Exit(exit)) => Some(exit.clone()),
            _ => None,
        };
        // The meter stops at the exit the provider sees, before the renter sees it, so
        // the provider's measure of a call is never longer than the renter's. The exit
        // goes out with the provider's signed result, or not at all.
        let mut result = None;
        if let Some(exit) = &exit {
            let (signed, result_rx) = oneshot::channel();
            let artefacts = outputs.keep(session, renter).await;
            let done = Input::ExecDone {
                exit: exit.clone(),
                output: output.clone().finish(),
                artefacts,
                signed,
            };
            let _ = input.send(done).await;
            match result_rx.await {
                Ok(signed) => result = Some(signed),
                Err(_) => {
                    debug!("the session ended before the call's result was signed");
                    return;
                }
            }
        }
        if delivering {
            let batch = ExecEvents {
                session,
                exec,
                seq,
                events,
                result,
            };
            let delivered = deliver(&net, renter, batch).await;
            delivering = delivered == Delivered::Taken;
            seq += 1;
            match delivered {
                Delivered::Taken if exit.is_some() => {
                    let _ = input.send(Input::ResultDelivered { exec }).await;
                }
                Delivered::Disputed(detail) => {
                    let _ = input.send(Input::ResultDisputed { exec, detail }).await;
                }
                _ => {}
            }
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
                Err(e @ orien_provider::ProviderError::NotFound(_)) => {
                    error(RpcErrorCode::NotFound, &e.to_string())
                }
                Err(e) => error(RpcErrorCode::BadRequest, &e.to_string()),
            },
            Err(e) => error(RpcErrorCode::BadRequest, &e.to_string()),
        },
        _ => error(RpcErrorCode::BadRequest, "not a file request"),
    }
}

/// What became of a batch of output.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Delivered {
    /// The renter took it.
    Taken,
    /// The renter refused the call's signed result as false.
    Disputed(String),
    /// The renter refused it otherwise, or could not be reached.
    Gone,
}

/// Sends one batch, retrying a few times while the renter is busy or unreachable.
async fn deliver(net: &Net, renter: NodeId, batch: ExecEvents) -> Delivered {
    for attempt in 0..5 {
        match net
            .request(renter, SessionRequest::Events(batch.clone()))
            .await
        {
            Ok(SessionResponse::Done) => return Delivered::Taken,
            Ok(SessionResponse::Disputed { detail }) => return Delivered::Disputed(detail),
            Ok(SessionResponse::Error {
                code: RpcErrorCode::RateLimited,
                ..
            }) => {
                debug!(attempt, "the renter is busy; resending the output batch");
                tokio::time::sleep(RETRY / 4).await;
            }
            Ok(other) => {
                debug!(answer = ?other, "the renter refused an output batch");
                return Delivered::Gone;
            }
            Err(e) => {
                debug!(attempt, error = %e, "output batch not delivered; retrying");
                tokio::time::sleep(RETRY).await;
            }
        }
    }
    Delivered::Gone
}
