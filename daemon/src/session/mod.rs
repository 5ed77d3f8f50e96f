//! The session manager: metered sessions across the network, on both sides.
//!
//! One tokio task per session owns that session's state — on the provider side its
//! sandbox, meter and receipt issuer (`provider_side`); on the renter side its meter,
//! countersigner and execution logs (`renter_side`). The swarm task only routes:
//! inbound requests arrive here as [`Inbound`] and go to the session's task; outbound
//! requests leave through [`Net`]. Ledger commits run on the blocking pool, and an ack
//! is sent (renter) or accepted (provider) only with the store's `Durable` proof.

pub mod call_terms;
mod config;
mod ended;
mod exec_records;
mod history;
#[cfg(test)]
mod machine_tests;
pub mod operator;
pub mod provider_machine;
mod provider_side;
mod recovery;
pub mod renter_machine;
mod renter_side;
pub mod simulation;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use orien_ledger::Store;
use orien_protocol::{
    Clock, ContentHash, ExecId, FileInfo, Millis, NodeId, NodeKey, Offer, OfferId, RpcErrorCode,
    SessionId, SessionRequest, SessionResponse, ToolName, Usdc,
};
use tokio::sync::{mpsc, oneshot};

pub use config::{LedgerPayments, PaymentChoice, SessionConfig, SessionServices};
pub use operator::{OperatorControls, PeerAccess};
pub use provider_side::Stopped;
pub use renter_side::{ExecView, RentedSession};

use history::{ExecLog, ExecLogs, History};

use crate::net::{Answer, Inbound, Net, NetError};
use crate::own_offers::OwnOffers;
use crate::payments::{PaymentError, Payments};
use crate::peer_guard::Abuse;
use crate::transfer::serve::{Lease, Leases};
use crate::transfer::staging::Staging;
use crate::transfer::{ByteStream, Download, Remote, Stored, TransferError, Transfers};

/// Why a session operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// No such session on this node.
    #[error("unknown session {0}")]
    UnknownSession(SessionId),
    /// No such execution in the session.
    #[error("unknown execution {0}")]
    UnknownExec(ExecId),
    /// The offer is not in the offer book (never seen, expired or withdrawn).
    #[error("offer {0} is not in the offer book; list offers again")]
    UnknownOffer(OfferId),
    /// The offer is this node's own: a node does not rent from itself.
    #[error("offer {0} is this node's own; rent it from another node")]
    OwnOffer(OfferId),
    /// The operator does not rent from this provider (`deny_providers`, or
    /// `allow_providers` without it).
    #[error(
        "this node does not rent from provider {0} (deny_providers / allow_providers in its config)"
    )]
    ProviderNotAllowed(NodeId),
    /// The provider refused to open the session.
    #[error("the provider refused the session: {0:?}")]
    Rejected(orien_protocol::RejectReason),
    /// The provider could not be reached or broke the protocol.
    #[error(transparent)]
    Net(#[from] NetError),
    /// The provider refused the request.
    #[error("the provider refused: {detail}")]
    Refused {
        /// What kind of refusal.
        code: RpcErrorCode,
        /// Its detail.
        detail: String,
    },
    /// The provider answered outside the protocol.
    #[error("the provider answered: {0}")]
    Remote(String),
    /// The session is suspended or closed.
    #[error("session {session} is {state}")]
    NotOpen {
        /// The session.
        session: SessionId,
        /// Its state.
        state: String,
    },
    /// The ledger failed.
    #[error(transparent)]
    Ledger(#[from] orien_ledger::StoreError),
    /// The escrow payment could not be arranged.
    #[error(transparent)]
    Payment(#[from] PaymentError),
    /// Escrow payment was asked for, but the node is not connected to a chain.
    #[error(
        "this node is not connected to a chain; run it with --chain-rpc and --escrow, or pay through the ledger"
    )]
    NoChain,
    /// This node has no ledger, so it cannot rent or serve sessions.
    #[error("this node was started without session services")]
    Disabled,
    /// The call's worst case does not fit the session's remaining budget.
    #[error(transparent)]
    Budget(#[from] orien_ledger::meter::CallDoesNotFit),
    /// A file transfer failed.
    #[error(transparent)]
    Transfer(#[from] TransferError),
    /// The session has as many file transfers queued as it takes; retry shortly.
    #[error("session {0} is moving files already and has {max} more waiting; retry shortly", max = renter_side::FILE_OPS_WAITING)]
    Busy(SessionId),
    /// The session already runs as many calls as its offer allows.
    #[error("at most {max} calls run at once in this session; wait for one to end")]
    TooManyCalls {
        /// The offer's `concurrent_execs`.
        max: u32,
    },
    /// The session's provider offers no such tool (none reached this node, and the
    /// provider did not list one).
    #[error(
        "the session's provider offers no tool `{0}`; its tools are in `GET /v1/providers/{{id}}`"
    )]
    NoSuchTool(ToolName),
}

/// The session manager of a node.
#[derive(Clone)]
pub struct Sessions {
    inner: Arc<Inner>,
}

struct Inner {
    key: NodeKey,
    clock: Arc<dyn Clock>,
    net: Net,
    /// File transfers to providers.
    transfers: Transfers,
    /// A provider's staged transfers.
    staging: Option<Arc<Staging>>,
    store: Arc<Store>,
    provider: Option<Arc<dyn orien_provider::Sandbox>>,
    config: SessionConfig,
    payments: Option<Arc<Payments>>,
    metrics: crate::metrics::Metrics,
    own_offers: OwnOffers,
    provided: Mutex<HashMap<SessionId, provider_side::Handle>>,
    rented: Mutex<HashMap<SessionId, renter_side::Handle>>,
    /// Sessions rented in this run, ended ones included (bounded), for the API.
    history: Mutex<History>,
    /// Provided sessions open or opening: the capacity check reserves a slot first.
    slots: std::sync::atomic::AtomicUsize,
    /// The node stops: no session opens any more.
    stopping: std::sync::atomic::AtomicBool,
    /// The same, per renter.
    peer_slots: Mutex<HashMap<NodeId, usize>>,
    /// Each renter's opens in the last minute.
    open_rate: Mutex<operator::OpenRate>,
    /// Output bytes of rented sessions' executions held in memory (history included).
    held: AtomicU64,
    /// Sessions this node provided that ended normally, over its whole ledger (its
    /// profile's counter).
    completed_provided: AtomicU64,
    /// What this node has seen of the providers it rented from.
    reputation: Arc<crate::reputation::Reputation>,
}

impl Inner {
    fn provided(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, provider_side::Handle>> {
        self.provided.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn rented(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, renter_side::Handle>> {
        self.rented.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn history(&self) -> std::sync::MutexGuard<'_, History> {
        self.history.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// An execution found by its id: its session, its output so far, and whether the
/// session has ended (an execution without an exit by then never reports one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecSnapshot {
    /// The session it ran in.
    pub session: SessionId,
    /// The session's tool.
    pub tool: ToolName,
    /// Its output and exit so far (events from `first_event` on).
    pub view: ExecView,
    /// Index of `view.events[0]` among all of the execution's events.
    pub first_event: usize,
    /// The session has ended.
    pub session_ended: bool,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("provided", &self.inner.provided().len())
            .field("rented", &self.inner.rented().len())
            .finish()
    }
}

/// The refusal of a request about a session the peer is not part of. The peer guard
/// counts these (and impersonation) against the peer.
/// How often a provider removes the artefacts of sessions closed long enough ago.
const ARTEFACT_SWEEP: std::time::Duration = std::time::Duration::from_secs(15);

pub(crate) const NOT_YOUR_SESSION: &str = "unknown session";
/// The refusal of an open that names another node as renter.
pub(crate) const IMPERSONATION: &str =
    "the renter named in the request is not the peer that sent it";

/// Where a session task's answer to a peer goes: back through the node to the peer,
/// with what the peer guard should count.
#[derive(Debug)]
pub(crate) struct Reply(oneshot::Sender<Answer>);

/// A session task's inbox: it takes peers' requests with their reply.
pub(super) trait Inbox: Sized {
    /// The input carrying a peer's request.
    fn request(request: Box<SessionRequest>, reply: Reply) -> Self;
    /// The reply of an input that carried a request.
    fn into_reply(self) -> Option<Reply>;
}

/// Hands a peer's request to a session's task without waiting: a full inbox answers
/// "rate limited" (the peer retries), an ended task "session ended".
fn deliver<I: Inbox>(input: &mpsc::Sender<I>, request: SessionRequest, reply: Reply) {
    let (answer, detail) = match input.try_send(I::request(Box::new(request), reply)) {
        Ok(()) => return,
        Err(mpsc::error::TrySendError::Full(i)) => (
            i.into_reply(),
            (
                RpcErrorCode::RateLimited,
                "the session is busy; retry shortly",
            ),
        ),
        Err(mpsc::error::TrySendError::Closed(i)) => (
            i.into_reply(),
            (RpcErrorCode::SessionEnded, "the session has ended"),
        ),
    };
    if let Some(reply) = answer {
        let _ = reply.send(error(detail.0, detail.1));
    }
}

/// The requester went away before its answer (the node stopped).
#[derive(Debug)]
pub(crate) struct Gone;

impl Reply {
    /// Answers the request.
    pub(crate) fn send(self, response: SessionResponse) -> Result<(), Gone> {
        self.0.send(Answer::from(response)).map_err(|_| Gone)
    }

    /// Refuses something only a hostile peer sends.
    pub(crate) fn abuse(self, response: SessionResponse, abuse: Abuse) -> Result<(), Gone> {
        self.0
            .send(Answer {
                response,
                abuse: Some(abuse),
            })
            .map_err(|_| Gone)
    }
}

impl Sessions {
    /// Starts the manager and closes out the sessions a crash left open. The node's
    /// task hands it peers' requests through [`Sessions::dispatch`].
    pub(crate) fn start(
        key: NodeKey,
        services: SessionServices,
        net: Net,
        mut streams: libp2p_stream::Control,
        own_offers: OwnOffers,
        clock: Arc<dyn Clock>,
        metrics: crate::metrics::Metrics,
    ) -> Self {
        // A provider serves transfers from its staging area; a node that only rents
        // answers no transfer streams.
        let staging = services.provider.as_ref().and_then(|_| {
            match Staging::new(services.staging.clone()) {
                Ok(staging) => Some(Arc::new(staging)),
                Err(e) => {
                    tracing::error!(dir = %services.staging.display(), error = %e, "cannot make the transfer staging area; files cannot move");
                    None
                }
            }
        });
        if let Some(staging) = &staging {
            // Artefacts of closed sessions go when their time is up, even when nothing
            // else happens; the sweep ends with the staging area.
            let staging = Arc::downgrade(staging);
            tokio::spawn(async move {
                let mut every = tokio::time::interval(ARTEFACT_SWEEP);
                loop {
                    every.tick().await;
                    let Some(staging) = staging.upgrade() else {
                        return;
                    };
                    let _ = tokio::task::spawn_blocking(move || {
                        staging.artefacts.purge(std::time::Instant::now())
                    })
                    .await;
                }
            });
        }
        let sessions = Self {
            inner: Arc::new(Inner {
                key,
                clock,
                net,
                transfers: Transfers::new(streams.clone()),
                staging: staging.clone(),
                store: services.store,
                provider: services.provider,
                config: services.config,
                payments: services.payments,
                metrics,
                own_offers,
                provided: Mutex::new(HashMap::new()),
                rented: Mutex::new(HashMap::new()),
                history: Mutex::new(History::default()),
                slots: std::sync::atomic::AtomicUsize::new(0),
                stopping: std::sync::atomic::AtomicBool::new(false),
                peer_slots: Mutex::new(HashMap::new()),
                open_rate: Mutex::default(),
                held: AtomicU64::new(0),
                completed_provided: AtomicU64::new(0),
                reputation: Arc::default(),
            }),
        };
        sessions
            .inner
            .reputation
            .learn_from_ledger(&sessions.inner.store, &sessions.inner.key.node_id());
        let survey = recovery::survey(&sessions.inner.store, &sessions.inner.key.node_id());
        sessions
            .inner
            .completed_provided
            .store(survey.completed_provided, Ordering::Relaxed);
        recovery::lose_unfinished_calls(&sessions.inner.store, sessions.inner.clock.wall());
        tokio::spawn(recovery::close_out(
            sessions.inner.clone(),
            survey.left_open,
        ));
        if let Some(staging) = staging {
            match streams.accept(libp2p::StreamProtocol::new(
                orien_protocol::transfer::TRANSFER_PROTOCOL,
            )) {
                Ok(incoming) => {
                    let leases: Arc<dyn Leases> = Arc::new(ProvidedLeases(sessions.inner.clone()));
                    tokio::spawn(crate::transfer::serve::accept(incoming, leases, staging));
                }
                Err(e) => tracing::error!(error = %e, "cannot serve file transfers"),
            }
        }
        sessions
    }

    /// Sessions this node provided that ended normally (closed by the renter, budget or
    /// duration reached, lane closing), over its whole ledger.
    pub fn completed_provided(&self) -> u64 {
        self.inner.completed_provided.load(Ordering::Relaxed)
    }

    /// Routes one request from a peer to the session it concerns, never waiting on a
    /// session: a session whose inbox is full answers "rate limited".
    pub(crate) fn dispatch(
        &self,
        Inbound {
            peer,
            request,
            reply,
        }: Inbound,
    ) {
        let reply = Reply(reply);
        let session = match &request {
            SessionRequest::Open(open) => {
                let open = open.clone();
                let this = self.clone();
                tokio::spawn(async move {
                    let impersonation = open.renter != peer;
                    let response = provider_side::open(this.inner.clone(), peer, open).await;
                    let _ = if impersonation {
                        reply.abuse(response, Abuse::Impersonation)
                    } else {
                        reply.send(response)
                    };
                });
                return;
            }
            SessionRequest::ListOffers { .. }
            | SessionRequest::ListBook { .. }
            | SessionRequest::ListProfiles { .. } => {
                let _ = reply.send(error(
                    RpcErrorCode::BadRequest,
                    "offers and profiles are listed by the node",
                ));
                return;
            }
            SessionRequest::Exec(exec) => exec.session,
            SessionRequest::Events(batch) => batch.session,
            // Routed by what it claims; its session's countersigner checks it, once.
            SessionRequest::Receipt(receipt) => match receipt.claimed() {
                Ok(r) => r.session,
                Err(e) => {
                    let _ = reply.send(error(RpcErrorCode::BadRequest, &e.to_string()));
                    return;
                }
            },
            SessionRequest::Close(close) => close.session,
            SessionRequest::PutFile { session, .. }
            | SessionRequest::ListFiles { session }
            | SessionRequest::GetFile { session, .. } => *session,
        };
        // A session is provided to its renter, or rented from its provider.
        let provided = self
            .inner
            .provided()
            .get(&session)
            .filter(|h| h.renter == peer)
            .cloned();
        if let Some(handle) = provided {
            return handle.deliver(request, reply);
        }
        let rented = self
            .inner
            .rented()
            .get(&session)
            .filter(|h| h.provider == peer)
            .cloned();
        if let Some(handle) = rented {
            return handle.deliver(request, reply);
        }
        // Not a live session of this peer: one that ended (or that this node forgot in a
        // restart) is answered as such; only one the peer was never part of is abuse.
        let inner = self.inner.clone();
        tokio::spawn(ended::answer(inner, peer, session, request, reply));
    }

    /// Opens a session on `offer` (from the offer book) with `budget` for at most
    /// `max_duration`, paid from an escrow lane when the node is connected to a chain,
    /// else through the embedded ledgers.
    pub async fn open(
        &self,
        offer: OfferId,
        budget: Usdc,
        max_duration: Millis,
    ) -> Result<RentedSession, SessionError> {
        self.open_paid(offer, budget, max_duration, PaymentChoice::Auto)
            .await
    }

    /// [`open`](Self::open) with an explicit choice of payment.
    pub async fn open_paid(
        &self,
        offer: OfferId,
        budget: Usdc,
        max_duration: Millis,
        payment: PaymentChoice,
    ) -> Result<RentedSession, SessionError> {
        renter_side::open(self.inner.clone(), offer, budget, max_duration, payment).await
    }

    /// What this node has seen of the providers it rented from (its own evidence).
    pub fn reputation(&self) -> &Arc<crate::reputation::Reputation> {
        &self.inner.reputation
    }

    /// This node's id.
    pub fn node_id(&self) -> orien_protocol::NodeId {
        self.inner.key.node_id()
    }

    /// This node's attestation of the providers it rented from, its newest payments as
    /// proofs; `None` when it has nothing to say or has paid no one yet.
    pub async fn attestation(&self) -> Option<orien_protocol::Attestation> {
        let (store, me) = (self.inner.store.clone(), self.inner.key.node_id());
        let proofs = blocking(move || crate::reputation::payment_proofs(&store, &me)).await;
        self.inner
            .reputation
            .own_attestation(&me, self.inner.clock.wall(), proofs)
    }

    /// The sessions' timings, limits and the operator's controls.
    pub fn config(&self) -> &SessionConfig {
        &self.inner.config
    }

    /// The sandbox this node sells from (`None`: it only rents).
    pub fn sandbox(&self) -> Option<&Arc<dyn orien_provider::Sandbox>> {
        self.inner.provider.as_ref()
    }

    /// The node's escrow payments, when connected to a chain.
    pub fn payments(&self) -> Option<&Arc<Payments>> {
        self.inner.payments.as_ref()
    }

    /// Starts one execution with JSON arguments, of `tool` (any tool of the session's
    /// provider; `None`: the tool the session opened on) at that tool's offer's
    /// execution price; its output is read with [`exec_view`](Self::exec_view) or
    /// awaited with [`wait_exec`](Self::wait_exec).
    pub async fn exec(
        &self,
        session: SessionId,
        tool: Option<ToolName>,
        args_json: String,
    ) -> Result<ExecId, SessionError> {
        self.exec_with_outputs(session, tool, args_json, Vec::new())
            .await
    }

    /// As [`exec`](Self::exec), naming workspace paths the call leaves its outputs at:
    /// the provider keeps a copy of each when it ends and names its SHA-256 in the
    /// signed result; [`download_artefact`](Self::download_artefact) fetches one.
    pub async fn exec_with_outputs(
        &self,
        session: SessionId,
        tool: Option<ToolName>,
        args_json: String,
        outputs: Vec<String>,
    ) -> Result<ExecId, SessionError> {
        let handle = self.rented(session)?;
        let call = match tool {
            Some(tool) if tool != handle.tool => {
                // The book holds the provider's newest offer of the tool, found for it.
                let found = self.inner.net.find(tool.clone(), handle.provider).await?;
                let entry = found
                    .into_iter()
                    .next()
                    .ok_or(SessionError::NoSuchTool(tool))?;
                Some((entry.id, call_terms::CallTerms::of_offer(&entry.offer)))
            }
            _ => None,
        };
        handle.exec(&self.inner.net, call, args_json, outputs).await
    }

    /// Starts downloading, from `offset`, the artefact with hash `sha256` that a call
    /// of `session` (rented from `provider`) left at `path`: the copy the provider kept
    /// when the call ended. The session may have closed since.
    pub async fn download_artefact(
        &self,
        session: SessionId,
        provider: NodeId,
        path: &str,
        sha256: ContentHash,
        offset: u64,
    ) -> Result<Download, SessionError> {
        let remote = Remote {
            provider,
            session,
            path: path.to_owned(),
            archive: false,
        };
        Ok(self
            .inner
            .transfers
            .download(&remote, offset, Some(sha256))
            .await?)
    }

    /// What an execution has produced so far.
    pub fn exec_view(&self, session: SessionId, exec: ExecId) -> Result<ExecView, SessionError> {
        self.rented(session)?.exec_view(exec)
    }

    /// Waits until an execution exits (or `timeout` passes) and returns its output.
    pub async fn wait_exec(
        &self,
        session: SessionId,
        exec: ExecId,
        timeout: Duration,
    ) -> Result<ExecView, SessionError> {
        self.rented(session)?.wait_exec(exec, timeout).await
    }

    /// Uploads a file of `size` bytes into a rented session's workspace, streamed
    /// from `body` (the bytes from `offset` on: past 0 it resumes an upload the
    /// provider holds exactly that much of). The provider takes it whole and matching
    /// its hash, or not at all.
    pub async fn upload_file(
        &self,
        session: SessionId,
        path: &str,
        size: u64,
        offset: u64,
        body: ByteStream,
    ) -> Result<Stored, SessionError> {
        self.upload(session, path, false, size, offset, body).await
    }

    /// Uploads a tar archive of `size` bytes, unpacked under the directory `dir` of a
    /// rented session's workspace (empty: the workspace itself); as
    /// [`upload_file`](Self::upload_file) otherwise. Only regular files and
    /// directories pass; a link, device, `..` or absolute path refuses the whole.
    pub async fn upload_archive(
        &self,
        session: SessionId,
        dir: &str,
        size: u64,
        offset: u64,
        body: ByteStream,
    ) -> Result<Stored, SessionError> {
        self.upload(session, dir, true, size, offset, body).await
    }

    async fn upload(
        &self,
        session: SessionId,
        path: &str,
        archive: bool,
        size: u64,
        offset: u64,
        body: ByteStream,
    ) -> Result<Stored, SessionError> {
        let handle = self.rented(session)?;
        let _turn = handle.transfer_turn().await?;
        let remote = Remote {
            provider: handle.provider,
            session,
            path: path.to_owned(),
            archive,
        };
        Ok(self
            .inner
            .transfers
            .upload(&remote, size, offset, body)
            .await?)
    }

    /// Starts downloading a file of a rented session's workspace from `offset`: of the
    /// copy with hash `expect` the provider holds from an earlier download, or of the
    /// file as it is now.
    pub async fn download_file(
        &self,
        session: SessionId,
        path: &str,
        offset: u64,
        expect: Option<ContentHash>,
    ) -> Result<Download, SessionError> {
        self.download(session, path, false, offset, expect).await
    }

    /// Starts downloading a tar of the directory `dir` of a rented session's workspace
    /// (empty: the workspace itself), relative to it, with its regular files and
    /// directories; as [`download_file`](Self::download_file) otherwise.
    pub async fn download_archive(
        &self,
        session: SessionId,
        dir: &str,
        offset: u64,
        expect: Option<ContentHash>,
    ) -> Result<Download, SessionError> {
        self.download(session, dir, true, offset, expect).await
    }

    async fn download(
        &self,
        session: SessionId,
        path: &str,
        archive: bool,
        offset: u64,
        expect: Option<ContentHash>,
    ) -> Result<Download, SessionError> {
        let handle = self.rented(session)?;
        let turn = handle.transfer_turn().await?;
        let remote = Remote {
            provider: handle.provider,
            session,
            path: path.to_owned(),
            archive,
        };
        let mut download = self
            .inner
            .transfers
            .download(&remote, offset, expect)
            .await?;
        // The turn lasts as long as the body is read.
        download.body = Box::pin(futures::StreamExt::map(download.body, move |piece| {
            let _held = &turn;
            piece
        }));
        Ok(download)
    }

    /// Writes a file held in memory into a rented session's workspace.
    pub async fn put_file(
        &self,
        session: SessionId,
        path: &str,
        data: Vec<u8>,
    ) -> Result<Stored, SessionError> {
        let size = data.len() as u64;
        let body = futures::stream::once(async move { Ok(bytes::Bytes::from(data)) });
        self.upload_file(session, path, size, 0, Box::pin(body))
            .await
    }

    /// Lists a rented session's workspace.
    pub async fn list_files(&self, session: SessionId) -> Result<Vec<FileInfo>, SessionError> {
        let handle = self.rented(session)?;
        let _turn = handle.file_turn().await?;
        match self
            .inner
            .net
            .request(handle.provider, SessionRequest::ListFiles { session })
            .await?
        {
            SessionResponse::Files(files) => Ok(files),
            other => Err(unexpected(other)),
        }
    }

    /// Closes a rented session: the provider sends its closing receipt, this node
    /// countersigns it, and the session ends.
    pub async fn close(&self, session: SessionId) -> Result<(), SessionError> {
        self.rented(session)?.close(&self.inner.net).await
    }

    /// A session this node rented in this run (open or ended), with its terms.
    pub fn rented_session(&self, session: SessionId) -> Option<RentedSession> {
        self.inner
            .history()
            .sessions
            .get(&session)
            .map(|(rented, _)| rented.clone())
    }

    /// An execution of a rented session, found by its id alone.
    pub fn execution(&self, exec: ExecId) -> Result<ExecSnapshot, SessionError> {
        self.execution_from(exec, 0)
    }

    /// An execution's events from index `from` on (the rest of the snapshot whole): what
    /// a log reader that has seen `from` events needs, without copying those again.
    pub fn execution_from(&self, exec: ExecId, from: usize) -> Result<ExecSnapshot, SessionError> {
        let (session, tool, logs) = self.logs_of(exec)?;
        let view = logs.view_from(exec, from)?;
        let session_ended = !self.inner.rented().contains_key(&session);
        Ok(ExecSnapshot {
            session,
            tool,
            view,
            first_event: from,
            session_ended,
        })
    }

    /// The session of an execution, its tool and its logs, from the history.
    fn logs_of(&self, exec: ExecId) -> Result<(SessionId, ToolName, Arc<ExecLogs>), SessionError> {
        let history = self.inner.history();
        let session = *history
            .execs
            .get(&exec)
            .ok_or(SessionError::UnknownExec(exec))?;
        let (rented, logs) = history
            .sessions
            .get(&session)
            .ok_or(SessionError::UnknownExec(exec))?;
        Ok((session, rented.tool.clone(), logs.clone()))
    }

    /// Waits until an execution has more than `seen` events, or has exited, or its
    /// session ended — at most `timeout` — and returns its events after the first `seen`.
    pub async fn wait_execution(
        &self,
        exec: ExecId,
        seen: usize,
        timeout: Duration,
    ) -> Result<ExecSnapshot, SessionError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let (_, _, logs) = self.logs_of(exec)?;
        loop {
            // Registered before the check, so a change between the two is not missed.
            let changed = logs.changed.notified();
            let snapshot = self.execution_from(exec, seen)?;
            if !snapshot.view.events.is_empty()
                || snapshot.view.exit.is_some()
                || snapshot.session_ended
            {
                return Ok(snapshot);
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return self.execution_from(exec, seen);
            }
        }
    }

    /// The offers this node publishes and serves, by id.
    pub fn own_offers(&self) -> Vec<(OfferId, Offer)> {
        self.inner.own_offers.all()
    }

    /// Sessions this node provides right now.
    pub fn provided_sessions(&self) -> Vec<SessionId> {
        self.inner.provided().keys().copied().collect()
    }

    /// Stops providing, for the node's shutdown: no session opens any more (a renter
    /// asking is refused as at capacity), and every provided session closes as if its
    /// renter had asked, on a closing receipt for the time it served, then tells its
    /// renter it ended for the shutdown. Waits for them until `deadline`; a session
    /// still open then ends with the node, on what its renter acknowledged.
    pub async fn stop_providing(&self, deadline: tokio::time::Instant) -> Stopped {
        provider_side::stop_all(&self.inner, deadline).await
    }

    /// Sessions this node rents right now.
    pub fn rented_sessions(&self) -> Vec<SessionId> {
        self.inner.rented().keys().copied().collect()
    }

    /// The peers this node has a live session with, as provider or renter.
    pub fn counterparts(&self) -> HashSet<NodeId> {
        let mut peers: HashSet<NodeId> = self.inner.provided().values().map(|h| h.renter).collect();
        peers.extend(self.inner.rented().values().map(|h| h.provider));
        peers
    }

    /// The node's ledger.
    pub fn store(&self) -> &Arc<Store> {
        &self.inner.store
    }

    fn rented(&self, session: SessionId) -> Result<renter_side::Handle, SessionError> {
        self.inner
            .rented()
            .get(&session)
            .cloned()
            .ok_or(SessionError::UnknownSession(session))
    }
}

fn error(code: RpcErrorCode, detail: &str) -> SessionResponse {
    SessionResponse::Error {
        code,
        detail: orien_protocol::fit_detail(detail),
    }
}

fn unexpected(response: SessionResponse) -> SessionError {
    match response {
        SessionResponse::Error { code, detail } => SessionError::Refused { code, detail },
        other => SessionError::Remote(format!("unexpected answer {other:?}")),
    }
}

/// Runs a blocking ledger operation off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(value) => value,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// The provider's open sessions lend their sandboxes to the renter's transfers.
struct ProvidedLeases(Arc<Inner>);

impl Leases for ProvidedLeases {
    fn lease(
        &self,
        session: SessionId,
        peer: NodeId,
    ) -> Result<Lease, orien_protocol::transfer::Refusal> {
        use orien_protocol::transfer::{Refusal, TransferRefusal};
        let provided = self.0.provided();
        let Some(handle) = provided.get(&session).filter(|h| h.renter == peer) else {
            return Err(Refusal::new(
                TransferRefusal::NotAuthorised,
                format!("no open session {session} of yours here"),
            ));
        };
        let turn = handle.transfers.clone().try_acquire_owned().map_err(|_| {
            Refusal::new(
                TransferRefusal::Busy,
                format!(
                    "session {session} moves {} files at once already",
                    provider_side::TRANSFERS
                ),
            )
        })?;
        Ok(Lease {
            sandbox: handle.sandbox.clone(),
            _turn: turn,
        })
    }
}
