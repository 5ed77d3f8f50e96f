//! The provider's side of a session: it runs the renter's calls in the sandbox,
//! streams their output, meters the session (running calls included), and issues
//! receipts until each is acknowledged and durably committed. A renter silent for one
//! ack timeout since its last ack ends the session and its sandbox (its calls with it),
//! and a call whose worst case does not fit the budget left is refused, so the provider
//! never works unpaid for more than one ack window of session time and running calls.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use orien_ledger::{
    AckedReceipt, Issuer, LaneKey, Meter, MeterConfig, SessionRecord, SessionStatus,
};
use orien_protocol::rpc::MAX_EVENTS_PER_BATCH;
use orien_protocol::{
    CloseReason, CloseSession, EvmAddress, ExecEvent, ExecEvents, ExecExit, ExecId, FileInfo,
    LaneHead, LaneId, NodeId, OpenSession, PaymentLane, RejectReason, RpcErrorCode,
    SessionAccepted, SessionId, SessionRejected, SessionRequest, SessionResponse, Usdc,
};
use orien_provider::{EntryKind, ExecStream, SandboxSession, WorkspacePath};
use tokio::sync::mpsc;
use tracing::{Instrument, debug, info, info_span, warn};

use super::provider_machine::{
    AckCheck, Delivery, ProviderAction, ProviderInput, ProviderMachine, ProviderTerms, RETRY,
};
use super::{Inner, Reply, blocking, error};
use crate::net::{Net, NetError};
use crate::payments::{LaneGuard, Payments};

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
    let check = escrow.as_ref().map(|(payments, renter_wallet, payout)| {
        Box::new(VoucherCheck {
            payments: payments.clone(),
            renter_wallet: *renter_wallet,
            payout: *payout,
        }) as Box<dyn AckCheck>
    });
    let machine = ProviderMachine::new(
        ProviderTerms {
            session,
            max_calls: offer.limits.concurrent_execs,
            max_duration: open.max_duration.to_duration(),
        },
        Meter::start(meter_config, clock.clone()),
        Issuer::new(
            inner.key.clone(),
            session,
            peer,
            accepted.ack_timeout,
            clock.clone(),
        ),
        check,
        clock,
    );
    let task = Task {
        machine,
        inner: inner.clone(),
        session,
        renter: peer,
        sandbox: Arc::from(sandbox),
        input: input.clone(),
        file_ops: Arc::new(tokio::sync::Semaphore::new(FILE_OPS)),
        removing: None,
        lane_id: match open.payment {
            PaymentLane::Escrow { lane, .. } => Some(lane),
            PaymentLane::Ledger => None,
        },
        payments: escrow.map(|(payments, _, _)| payments),
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
                    Some(Input::ExecDone { exit }) => {
                        self.inner.metrics.execution(&exit.outcome);
                        ProviderInput::Exited(exit)
                    }
                    Some(Input::ReceiptAnswer { result }) => ProviderInput::Delivered(match result {
                        Ok(answer) => Delivery::Answered(answer),
                        Err(e) => Delivery::Failed(e.to_string()),
                    }),
                    None => ProviderInput::Shutdown,
                },
                () = tokio::time::sleep(wait) => ProviderInput::Tick,
                Some(()) = lane_closed(&mut closing_lanes, self.lane_id) => {
                    closing_lanes = None;
                    ProviderInput::LaneClosing
                }
            };
            if let Some((reason, replies)) = self.step(input).await {
                return self.teardown(reason, replies).await;
            }
        }
    }

    /// Turns a renter's request into the machine's input, or serves it here (files).
    fn route(&mut self, request: SessionRequest, reply: Reply) -> Option<ProviderInput<Reply>> {
        match request {
            SessionRequest::Exec(exec) => Some(ProviderInput::Exec { exec, reply }),
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
                ProviderAction::StartCall { exec, args } => self.start_call(exec, args),
                ProviderAction::CloseSandbox => {
                    let sandbox = self.sandbox.clone();
                    self.removing = Some(tokio::spawn(async move {
                        if let Err(e) = sandbox.close().await {
                            warn!(error = %e, "cannot remove the sandbox; the reaper will");
                        }
                    }));
                }
                ProviderAction::Send(receipt) => {
                    let (net, renter, input) =
                        (self.inner.net.clone(), self.renter, self.input.clone());
                    tokio::spawn(async move {
                        let result = net.request(renter, SessionRequest::Receipt(receipt)).await;
                        let _ = input.send(Input::ReceiptAnswer { result }).await;
                    });
                }
                ProviderAction::Commit(acked) => {
                    let store = self.inner.store.clone();
                    let result = blocking(move || store.ingest(acked))
                        .await
                        .map_err(|e| e.to_string());
                    if result.is_ok() {
                        self.inner.metrics.receipt_committed("provider");
                    }
                    actions.extend(self.machine.handle(ProviderInput::Committed(result)));
                }
                ProviderAction::Ended { reason, replies } => return Some((reason, replies)),
            }
        }
        None
    }

    fn start_call(&self, exec: ExecId, args: serde_json::Value) {
        let stream = self.sandbox.exec(exec, args, self.inner.clock.clone());
        let forward = forward_output(
            stream,
            self.inner.net.clone(),
            self.renter,
            self.session,
            exec,
            self.input.clone(),
        );
        tokio::spawn(forward.instrument(info_span!("exec", session = %self.session, exec = %exec)));
    }

    async fn teardown(mut self, reason: CloseReason, replies: Vec<Reply>) {
        self.inner.provided().remove(&self.session);
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
        drop(self.lane);
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

/// Vets an escrow ack: a voucher signed by the renter's wallet for this lane, not below
/// the last one. (The ledger then checks that it names the lane's acknowledged total
/// exactly.)
struct VoucherCheck {
    payments: Arc<Payments>,
    renter_wallet: EvmAddress,
    payout: EvmAddress,
}

impl AckCheck for VoucherCheck {
    fn check(&self, acked: &AckedReceipt) -> Result<(), String> {
        let ack = acked.ack.verify().map_err(|e| e.to_string())?;
        let voucher = ack
            .voucher
            .ok_or("an ack on an escrow lane without a voucher")?;
        self.payments
            .verify_voucher(&voucher, self.renter_wallet, self.payout, Usdc::ZERO)
            .map_err(|e| e.to_string())
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
