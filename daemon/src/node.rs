//! [`Node`]: one ORIEN daemon, started in-process. The swarm runs in its own task;
//! the handle talks to it through a command channel.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use libp2p::kad::{self, GetProvidersOk, QueryId, QueryResult, RecordKey};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm, gossipsub, identify};
use orien_protocol::{
    Clock, EvmAddress, ImageDigest, Millis, NodeId, NodeKey, OFFERS_TOPIC, Offer, OfferId, Pricing,
    ResourceLimits, RpcErrorCode, SessionRequest, SessionResponse, Signed, ToolName,
    rpc::MAX_OFFERS_PER_RESPONSE,
};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::faults::{Fault, LinkFaults, Point};
use crate::metrics::{Metrics, OfferOutcome};
use crate::network::{self, Behaviour, BehaviourEvent, NetworkTuning, TransportKind};
use crate::offer_book::{Admission, BookEntry, OfferBook, OfferBookLimits, OfferQuery};
use crate::peer_guard::{Abuse, GuardConfig, PeerGuard, Verdict};
use crate::session::{OwnOffers, SessionServices, Sessions};
use libp2p::metrics::Recorder;

/// What a node needs to start.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Addresses to listen on (`/ip4/0.0.0.0/tcp/4001`, `/ip4/0.0.0.0/udp/4001/quic-v1`,
    /// `/memory/0`…). Port 0 picks a free port; [`Node::listen_addrs`] reports it.
    pub listen: Vec<Multiaddr>,
    /// Bootstrap peers, each ending in `/p2p/<peer id>`.
    pub bootstrap: Vec<Multiaddr>,
    /// Which transports.
    pub transport: TransportKind,
    /// Network timings.
    pub tuning: NetworkTuning,
    /// Addresses at which others reach this node (a public address behind port
    /// forwarding, say), announced as confirmed.
    pub external_addresses: Vec<Multiaddr>,
    /// Lifetime of the offers this node publishes; they are re-announced at a third of it.
    pub offer_ttl: Duration,
    /// Limits of the offer book.
    pub offer_book: OfferBookLimits,
    /// The ledger and (for providers) the sandbox; without them the node only
    /// discovers offers and does not serve or rent sessions.
    pub sessions: Option<SessionServices>,
    /// Faults injected into the session protocol (tests and simulations; `None` for
    /// nodes people run).
    pub faults: Option<Faults>,
}

/// A shared [`LinkFaults`], as a node's configuration holds it.
#[derive(Clone)]
pub struct Faults(Arc<dyn LinkFaults>);

impl Faults {
    /// Wraps a fault policy.
    pub fn new(faults: impl LinkFaults) -> Self {
        Self(Arc::new(faults))
    }

    /// Shares a fault policy the caller keeps a handle on (to change it while the node
    /// runs).
    pub fn shared(faults: Arc<dyn LinkFaults>) -> Self {
        Self(faults)
    }

    fn decide(&self, point: Point<'_>) -> Fault {
        self.0.decide(point)
    }
}

impl std::fmt::Debug for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Faults(..)")
    }
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            listen: Vec::new(),
            bootstrap: Vec::new(),
            transport: TransportKind::Network,
            tuning: NetworkTuning::default(),
            external_addresses: Vec::new(),
            offer_ttl: Duration::from_secs(3600),
            offer_book: OfferBookLimits::default(),
            sessions: None,
            faults: None,
        }
    }
}

/// What a provider offers for one tool; the node adds identity, issue and expiry times
/// and signs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferSpec {
    /// The tool.
    pub tool: ToolName,
    /// Its version.
    pub version: String,
    /// What it does.
    pub description: String,
    /// Its image.
    pub image_digest: ImageDigest,
    /// JSON Schema of its arguments, as text.
    pub args_schema: String,
    /// Its price.
    pub pricing: Pricing,
    /// Its limits.
    pub limits: ResourceLimits,
    /// Where the provider is paid.
    pub payout: EvmAddress,
}

impl From<Offer> for OfferSpec {
    /// The spec of an offer made by `orien_provider::Provider::offer` (provider, times
    /// and signature are the node's to set).
    fn from(offer: Offer) -> Self {
        Self {
            tool: offer.tool,
            version: offer.version,
            description: offer.description,
            image_digest: offer.image_digest,
            args_schema: offer.args_schema,
            pricing: offer.pricing,
            limits: offer.limits,
            payout: offer.payout,
        }
    }
}

/// Errors of the node.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The swarm could not be built.
    #[error(transparent)]
    Build(#[from] network::BuildError),
    /// A listen address could not be used.
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: Multiaddr,
        /// Why.
        reason: String,
    },
    /// A bootstrap address has no `/p2p/<peer id>` suffix.
    #[error("bootstrap address {0} must end with /p2p/<peer id>")]
    BootstrapWithoutPeerId(Multiaddr),
    /// The offer could not be signed (it breaks a protocol rule).
    #[error("offer for {tool} is invalid: {reason}")]
    InvalidOffer {
        /// The tool.
        tool: ToolName,
        /// Why.
        reason: String,
    },
    /// The node's task has stopped.
    #[error("the node has stopped")]
    Stopped,
}

/// A change to a node's offer book.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OfferEvent {
    /// An offer was added (or replaced an older one of its provider and tool).
    Added {
        /// The offer.
        id: OfferId,
        /// Its tool.
        tool: ToolName,
        /// Its provider.
        provider: NodeId,
    },
    /// An offer left the book: expired, withdrawn or replaced.
    Removed {
        /// The offer.
        id: OfferId,
    },
}

/// A snapshot of a node's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeStats {
    /// Peers with an open connection.
    pub peers: usize,
    /// Offers in the offer book.
    pub offers_known: usize,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Command")
    }
}

enum Command {
    Publish(OfferSpec, oneshot::Sender<Result<OfferId, NodeError>>),
    WithdrawAll(oneshot::Sender<()>),
    Query(OfferQuery, oneshot::Sender<Vec<BookEntry>>),
    Find(ToolName, Option<NodeId>, oneshot::Sender<Vec<BookEntry>>),
    PeerScore(PeerId, oneshot::Sender<Option<f64>>),
    ConnectedPeers(oneshot::Sender<Vec<PeerId>>),
    Stats(oneshot::Sender<NodeStats>),
    Offer(OfferId, oneshot::Sender<Option<BookEntry>>),
    Request {
        peer: PeerId,
        request: SessionRequest,
        reply: oneshot::Sender<Result<SessionResponse, NetError>>,
        /// The fault policy has already seen it (it was delayed).
        faulted: bool,
    },
    Respond {
        id: u64,
        response: SessionResponse,
        abuse: Option<Abuse>,
        /// The fault policy has already seen it (it was delayed).
        faulted: bool,
    },
    /// A peer's request that the fault policy delayed, to serve now.
    Serve {
        peer: PeerId,
        request: SessionRequest,
        channel: request_response::ResponseChannel<SessionResponse>,
    },
    Shutdown(oneshot::Sender<()>),
}

/// A session-protocol request from a peer, for the session manager to answer.
#[derive(Debug)]
pub struct Inbound {
    /// The authenticated peer that sent it.
    pub peer: NodeId,
    /// The request.
    pub request: SessionRequest,
    /// Where the answer goes.
    pub reply: oneshot::Sender<Answer>,
}

/// The session manager's answer to a peer's request, and whether the request was
/// something only a hostile peer sends.
#[derive(Debug)]
pub struct Answer {
    /// What goes back to the peer.
    pub response: SessionResponse,
    /// Counted against the peer by the peer guard.
    pub abuse: Option<Abuse>,
}

impl From<SessionResponse> for Answer {
    fn from(response: SessionResponse) -> Self {
        Self {
            response,
            abuse: None,
        }
    }
}

/// A request to a peer failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    /// The peer was unreachable, did not answer in time, or broke the protocol.
    #[error("request to {peer} failed: {reason}")]
    Failed {
        /// The peer.
        peer: String,
        /// What went wrong.
        reason: String,
    },
    /// This node is stopping.
    #[error("the node has stopped")]
    Stopped,
}

/// Sends session-protocol requests through the node's swarm. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Net {
    commands: mpsc::Sender<Command>,
}

impl Net {
    /// Sends `request` to `peer` and waits for its answer (or the request timeout).
    pub async fn request(
        &self,
        peer: NodeId,
        request: SessionRequest,
    ) -> Result<SessionResponse, NetError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Request {
                peer: peer.to_peer_id(),
                request,
                reply,
                faulted: false,
            })
            .await
            .map_err(|_| NetError::Stopped)?;
        rx.await.map_err(|_| NetError::Stopped)?
    }

    /// A verified offer from the book, if known.
    pub async fn offer(&self, id: OfferId) -> Result<Option<BookEntry>, NetError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Offer(id, reply))
            .await
            .map_err(|_| NetError::Stopped)?;
        rx.await.map_err(|_| NetError::Stopped)
    }
}

/// A running ORIEN node.
pub struct Node {
    id: NodeId,
    listen_addrs: Vec<Multiaddr>,
    commands: mpsc::Sender<Command>,
    events: broadcast::Sender<OfferEvent>,
    metrics: Metrics,
    sessions: Option<Sessions>,
    task: Option<JoinHandle<()>>,
}

impl Node {
    /// Builds the swarm, binds every listen address, dials the bootstrap peers and starts
    /// the node's task.
    pub async fn start(
        key: NodeKey,
        config: NodeConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, NodeError> {
        let id = key.node_id();
        let mut swarm = network::build_swarm(&key, config.transport, &config.tuning)?;
        for addr in &config.listen {
            swarm
                .listen_on(addr.clone())
                .map_err(|e| NodeError::Listen {
                    addr: addr.clone(),
                    reason: e.to_string(),
                })?;
        }
        let listen_addrs = wait_for_listen_addrs(&mut swarm, config.listen.len()).await?;
        // A relay hands its addresses to the nodes that reserve through it, so it must
        // know them: its direct listen addresses (a relay runs where it is reachable),
        // and any the operator names.
        if config.tuning.relay_server {
            for addr in listen_addrs.iter().filter(|a| is_direct(a)) {
                let mut addr = addr.clone();
                if matches!(addr.iter().last(), Some(Protocol::P2p(_))) {
                    addr.pop();
                }
                swarm.add_external_address(addr);
            }
        }
        for addr in &config.external_addresses {
            swarm.add_external_address(addr.clone());
        }
        for addr in &config.bootstrap {
            let Some(Protocol::P2p(peer)) = addr.iter().last() else {
                return Err(NodeError::BootstrapWithoutPeerId(addr.clone()));
            };
            let mut dial_addr = addr.clone();
            dial_addr.pop();
            swarm.behaviour_mut().kad.add_address(&peer, dial_addr);
            if let Err(e) = swarm.dial(addr.clone()) {
                warn!(%addr, error = %e, "cannot dial bootstrap peer");
            }
        }
        if !config.bootstrap.is_empty() {
            let _ = swarm.behaviour_mut().kad.bootstrap();
        }
        let (commands, receiver) = mpsc::channel(64);
        let (events, _) = broadcast::channel(1024);
        let own_offers = OwnOffers::default();
        let metrics = Metrics::new();
        let event_loop = EventLoop {
            swarm,
            key,
            clock,
            book: OfferBook::new(config.offer_book),
            own_offers: HashMap::new(),
            offer_ttl: config.offer_ttl,
            announce_debounce: config.tuning.announce_debounce,
            announce_due: None,
            finds: HashMap::new(),
            find_requests: HashMap::new(),
            events: events.clone(),
            metrics: metrics.clone(),
            inbound: None,
            responders: HashMap::new(),
            guard: PeerGuard::new(GuardConfig::default()),
            next_responder: 0,
            outbound: HashMap::new(),
            commands: commands.clone(),
            own_offer_index: own_offers.clone(),
            relays: HashMap::new(),
            faults: config.faults,
        };
        let mut event_loop = event_loop;
        let sessions = match config.sessions {
            Some(services) => {
                let net = Net {
                    commands: commands.clone(),
                };
                let (sessions, inbox) = Sessions::start(
                    event_loop.key.clone(),
                    services,
                    net,
                    own_offers,
                    event_loop.clock.clone(),
                    metrics.clone(),
                );
                event_loop.inbound = Some(inbox);
                Some(sessions)
            }
            None => None,
        };
        let span = info_span!("node", node = %id);
        let task = tokio::spawn(event_loop.run(receiver).instrument(span));
        info!(node = %id, addrs = ?listen_addrs, "node started");
        Ok(Self {
            id,
            listen_addrs,
            commands,
            events,
            metrics,
            sessions,
            task: Some(task),
        })
    }

    /// Changes to the offer book as they happen. A receiver that lags loses the oldest
    /// events (and is told so by `recv`), never blocks the node.
    pub fn offer_events(&self) -> broadcast::Receiver<OfferEvent> {
        self.events.subscribe()
    }

    /// The session manager, when the node was started with session services.
    pub fn sessions(&self) -> Option<&Sessions> {
        self.sessions.as_ref()
    }

    /// The node's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Connected peers and offers known, in one round trip to the node's task.
    pub async fn stats(&self) -> Result<NodeStats, NodeError> {
        self.ask(Command::Stats).await
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The addresses the node listens on, each ending in `/p2p/<this node>`.
    pub fn listen_addrs(&self) -> &[Multiaddr] {
        &self.listen_addrs
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, NodeError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| NodeError::Stopped)?;
        rx.await.map_err(|_| NodeError::Stopped)
    }

    /// Signs and publishes an offer, puts a provider record in the DHT, and keeps
    /// re-announcing it before it expires. Replaces this node's earlier offer of the tool.
    pub async fn publish_offer(&self, spec: OfferSpec) -> Result<OfferId, NodeError> {
        self.ask(|tx| Command::Publish(spec, tx)).await?
    }

    /// Withdraws every offer of this node (gossips a superseding, already-expired offer
    /// per tool and drops the provider records).
    pub async fn withdraw_offers(&self) -> Result<(), NodeError> {
        self.ask(Command::WithdrawAll).await
    }

    /// Offers in the book matching `query`, cheapest first.
    pub async fn offers(&self, query: OfferQuery) -> Result<Vec<BookEntry>, NodeError> {
        self.ask(|tx| Command::Query(query, tx)).await
    }

    /// Offers of `tool`: from the book, or when it has none, from providers found
    /// through their Kademlia records and asked directly.
    pub async fn find_tool(&self, tool: ToolName) -> Result<Vec<BookEntry>, NodeError> {
        self.find_offers(tool, None).await
    }

    /// Offers of `tool`, only `provider`'s when one is named, cheapest first: from the
    /// book, or when it has no such offer, from providers found through their
    /// Kademlia records and asked directly. A book holding other providers' offers of
    /// the tool does not stop the lookup of the one asked for.
    pub async fn find_offers(
        &self,
        tool: ToolName,
        provider: Option<NodeId>,
    ) -> Result<Vec<BookEntry>, NodeError> {
        self.ask(|tx| Command::Find(tool, provider, tx)).await
    }

    /// The gossip score of a peer, if it is known.
    pub async fn peer_score(&self, peer: NodeId) -> Result<Option<f64>, NodeError> {
        self.ask(|tx| Command::PeerScore(peer.to_peer_id(), tx))
            .await
    }

    /// Peers with an open connection.
    pub async fn connected_peers(&self) -> Result<Vec<PeerId>, NodeError> {
        self.ask(Command::ConnectedPeers).await
    }

    /// Withdraws this node's offers and stops the node.
    pub async fn shutdown(mut self) {
        let _ = self.withdraw_offers().await;
        let _ = self.ask(Command::Shutdown).await;
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn wait_for_listen_addrs(
    swarm: &mut Swarm<Behaviour>,
    expected: usize,
) -> Result<Vec<Multiaddr>, NodeError> {
    let local = *swarm.local_peer_id();
    let mut addrs = Vec::new();
    let deadline = tokio::time::sleep(Duration::from_secs(10));
    tokio::pin!(deadline);
    while addrs.len() < expected {
        tokio::select! {
            event = swarm.select_next_some() => match event {
                SwarmEvent::NewListenAddr { address, .. } => addrs.push(address.with(Protocol::P2p(local))),
                SwarmEvent::ListenerError { error, .. } | SwarmEvent::ListenerClosed { reason: Err(error), .. } => {
                    return Err(NodeError::Listen { addr: Multiaddr::empty(), reason: error.to_string() });
                }
                _ => {}
            },
            _ = &mut deadline => break,
        }
    }
    Ok(addrs)
}

/// An address that reaches its node directly (not through a relay, not unspecified).
fn is_direct(addr: &Multiaddr) -> bool {
    addr.iter().all(|p| !matches!(p, Protocol::P2pCircuit))
        && addr.iter().all(|p| match p {
            Protocol::Ip4(ip) => !ip.is_unspecified(),
            Protocol::Ip6(ip) => !ip.is_unspecified(),
            _ => true,
        })
}

/// How long a stopping node keeps its connections to deliver its withdrawals.
const FLUSH_ON_SHUTDOWN: Duration = Duration::from_millis(500);

/// Resolves at `at`, or never when there is nothing scheduled.
async fn wait_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

struct OwnOffer {
    spec: OfferSpec,
    signed: Signed<Offer>,
}

/// A `find_offers` in progress: the DHT query, then one `ListOffers` per provider found.
struct Find {
    /// The tool (and provider, if one was named): what each provider found is asked
    /// for, and what the waiters are answered with once every one has replied.
    query: OfferQuery,
    waiters: Vec<oneshot::Sender<Vec<BookEntry>>>,
    query_done: bool,
    outstanding: HashSet<OutboundRequestId>,
    asked: HashSet<PeerId>,
}

struct EventLoop {
    swarm: Swarm<Behaviour>,
    key: NodeKey,
    clock: Arc<dyn Clock>,
    book: OfferBook,
    own_offers: HashMap<ToolName, OwnOffer>,
    offer_ttl: Duration,
    announce_debounce: Duration,
    /// A re-announcement owed to peers that joined the offer topic.
    announce_due: Option<tokio::time::Instant>,
    finds: HashMap<QueryId, Find>,
    find_requests: HashMap<OutboundRequestId, QueryId>,
    events: broadcast::Sender<OfferEvent>,
    metrics: Metrics,
    /// The session manager's inbox, when this node serves sessions.
    inbound: Option<mpsc::Sender<Inbound>>,
    /// Inbound requests waiting for the session manager's answer.
    responders: HashMap<u64, (PeerId, request_response::ResponseChannel<SessionResponse>)>,
    /// Session-protocol abuse per peer, decaying, and the bans it earned: a banned peer is
    /// disconnected on sight, blacklisted in gossip and never answered until its ban ends.
    guard: PeerGuard,
    next_responder: u64,
    /// Outbound session requests waiting for an answer.
    outbound: HashMap<OutboundRequestId, oneshot::Sender<Result<SessionResponse, NetError>>>,
    /// To send commands to ourselves from helper tasks.
    commands: mpsc::Sender<Command>,
    own_offer_index: OwnOffers,
    /// Peers that serve as relays (they announced the hop protocol), with an address.
    relays: HashMap<PeerId, Multiaddr>,
    /// Faults injected into the session protocol.
    faults: Option<Faults>,
}

/// The circuit relay v2 hop protocol, announced by relays through identify.
const RELAY_HOP_PROTOCOL: &str = "/libp2p/circuit/relay/0.2.0/hop";

impl EventLoop {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut reannounce =
            tokio::time::interval((self.offer_ttl / 3).max(Duration::from_millis(100)));
        let mut sweep = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Shutdown(done)) => {
                        self.flush(FLUSH_ON_SHUTDOWN).await;
                        let _ = done.send(());
                        break;
                    }
                    Some(command) => self.on_command(command),
                    None => break,
                },
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                _ = reannounce.tick() => self.reannounce(),
                _ = wait_until(self.announce_due) => {
                    self.announce_due = None;
                    self.reannounce();
                }
                _ = sweep.tick() => {
                    self.expire_bans();
                    let expired = self.book.expire(self.clock.wall());
                    if !expired.is_empty() {
                        debug!(count = expired.len(), "expired offers dropped");
                    }
                    for id in expired {
                        let _ = self.events.send(OfferEvent::Removed { id });
                    }
                }
            }
        }
        info!("node stopped");
    }

    /// Keeps the swarm running for `period` so queued messages (withdrawals) go out.
    async fn flush(&mut self, period: Duration) {
        let deadline = tokio::time::sleep(period);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                _ = &mut deadline => return,
            }
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Publish(spec, reply) => {
                let _ = reply.send(self.publish(spec));
            }
            Command::WithdrawAll(reply) => {
                self.withdraw_all();
                let _ = reply.send(());
            }
            Command::Query(query, reply) => {
                let _ = reply.send(self.book_entries(&query));
            }
            Command::Find(tool, provider, reply) => self.find_offers(tool, provider, reply),
            Command::PeerScore(peer, reply) => {
                let _ = reply.send(self.swarm.behaviour().gossipsub.peer_score(&peer));
            }
            Command::ConnectedPeers(reply) => {
                let _ = reply.send(self.swarm.connected_peers().copied().collect());
            }
            Command::Offer(id, reply) => {
                let _ = reply.send(self.book.get(&id).cloned());
            }
            Command::Request {
                peer,
                request,
                reply,
                faulted,
            } => {
                let fault = match &self.faults {
                    Some(faults) if !faulted => match NodeId::from_peer_id(&peer) {
                        Ok(node) => faults.decide(Point::OutboundRequest {
                            peer: node,
                            request: &request,
                        }),
                        Err(_) => Fault::Deliver,
                    },
                    _ => Fault::Deliver,
                };
                match fault {
                    Fault::Deliver => {}
                    Fault::Drop => {
                        debug!(%peer, "fault injection: request lost");
                        let _ = reply.send(Err(NetError::Failed {
                            peer: peer.to_string(),
                            reason: "the request was lost (fault injection)".into(),
                        }));
                        return;
                    }
                    Fault::Delay(by) => {
                        let commands = self.commands.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(by).await;
                            let command = Command::Request {
                                peer,
                                request,
                                reply,
                                faulted: true,
                            };
                            let _ = commands.send(command).await;
                        });
                        return;
                    }
                }
                // A request that breaks a limit would fail in the codec, out of sight:
                // fail it here, where the caller sees why.
                if let Err(e) = orien_protocol::wire::Message::validate(&request) {
                    warn!(%peer, error = %e, "a request breaks a protocol limit; not sent");
                    let _ = reply.send(Err(NetError::Failed {
                        peer: peer.to_string(),
                        reason: format!("the request breaks a protocol limit: {e}"),
                    }));
                    return;
                }
                Self::route_via_relays(&mut self.swarm, &self.relays, peer);
                let id = self
                    .swarm
                    .behaviour_mut()
                    .session
                    .send_request(&peer, request);
                self.outbound.insert(id, reply);
            }
            Command::Respond {
                id,
                response,
                abuse,
                faulted,
            } => {
                let fault = match (&self.faults, self.responders.get(&id)) {
                    (Some(faults), Some((peer, _))) if !faulted => {
                        match NodeId::from_peer_id(peer) {
                            Ok(node) => faults.decide(Point::OutboundResponse {
                                peer: node,
                                response: &response,
                            }),
                            Err(_) => Fault::Deliver,
                        }
                    }
                    _ => Fault::Deliver,
                };
                match fault {
                    Fault::Deliver => {}
                    Fault::Drop => {
                        debug!("fault injection: response lost");
                        self.responders.remove(&id);
                        return;
                    }
                    Fault::Delay(by) => {
                        let commands = self.commands.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(by).await;
                            let command = Command::Respond {
                                id,
                                response,
                                abuse,
                                faulted: true,
                            };
                            let _ = commands.send(command).await;
                        });
                        return;
                    }
                }
                if let Some((peer, channel)) = self.responders.remove(&id) {
                    let response = within_limits(response);
                    if self
                        .swarm
                        .behaviour_mut()
                        .session
                        .send_response(channel, response)
                        .is_err()
                    {
                        debug!("requester went away before the response");
                    }
                    if let Some(abuse) = abuse {
                        self.penalise(peer, abuse);
                    }
                }
            }
            Command::Stats(reply) => {
                let _ = reply.send(NodeStats {
                    peers: self.swarm.connected_peers().count(),
                    offers_known: self.book.len(),
                });
            }
            Command::Serve {
                peer,
                request,
                channel,
            } => self.serve(peer, request, channel),
            Command::Shutdown(_) => unreachable!("handled by the loop"),
        }
    }

    fn sign_offer(&self, spec: &OfferSpec, lifetime: Duration) -> Result<Signed<Offer>, NodeError> {
        let now = self.clock.wall();
        let offer = Offer {
            provider: self.key.node_id(),
            tool: spec.tool.clone(),
            version: spec.version.clone(),
            description: spec.description.clone(),
            image_digest: spec.image_digest,
            args_schema: spec.args_schema.clone(),
            pricing: spec.pricing,
            limits: spec.limits,
            payout: spec.payout,
            issued_at: now,
            expires_at: now.saturating_add(Millis::from_duration(lifetime).max(Millis(1))),
        };
        self.key.sign(&offer).map_err(|e| NodeError::InvalidOffer {
            tool: spec.tool.clone(),
            reason: e.to_string(),
        })
    }

    fn publish(&mut self, spec: OfferSpec) -> Result<OfferId, NodeError> {
        let signed = self.sign_offer(&spec, self.offer_ttl)?;
        let id = signed.offer_id();
        let tool = spec.tool.clone();
        // Our own offers are in our book too, so local queries see them.
        let _ = self.book.admit(signed.clone(), self.clock.wall());
        self.gossip(&signed);
        if let Err(e) = self
            .swarm
            .behaviour_mut()
            .kad
            .start_providing(RecordKey::new(&tool.kademlia_key()))
        {
            warn!(%tool, error = %e, "cannot store provider record");
        }
        self.metrics.offers_published.inc();
        if let Ok(offer) = signed.verify() {
            self.own_offer_index.insert(id, offer, self.clock.wall());
        }
        info!(%tool, offer = %id, "offer published");
        self.own_offers.insert(tool, OwnOffer { spec, signed });
        Ok(id)
    }

    fn reannounce(&mut self) {
        let specs: Vec<OfferSpec> = self.own_offers.values().map(|o| o.spec.clone()).collect();
        for spec in specs {
            if let Err(e) = self.publish(spec) {
                warn!(error = %e, "cannot re-announce offer");
            }
        }
    }

    fn withdraw_all(&mut self) {
        for (tool, own) in std::mem::take(&mut self.own_offers) {
            // A newer offer that has already expired supersedes the live one everywhere.
            match self.sign_offer(&own.spec, Duration::from_millis(1)) {
                Ok(withdrawal) => {
                    let _ = self.book.admit(
                        withdrawal.clone(),
                        self.clock.wall().saturating_add(Millis(1)),
                    );
                    self.gossip(&withdrawal);
                }
                Err(e) => warn!(%tool, error = %e, "cannot sign withdrawal"),
            }
            self.own_offer_index.remove_tool(&tool);
            self.swarm
                .behaviour_mut()
                .kad
                .stop_providing(&RecordKey::new(&tool.kademlia_key()));
            info!(%tool, "offer withdrawn");
        }
    }

    fn gossip(&mut self, signed: &Signed<Offer>) {
        let bytes = match signed.to_bytes() {
            Ok(bytes) => bytes,
            Err(e) => return warn!(error = %e, "cannot encode offer"),
        };
        let topic = gossipsub::IdentTopic::new(OFFERS_TOPIC);
        match self.swarm.behaviour_mut().gossipsub.publish(topic, bytes) {
            Ok(_) => {}
            // Nobody to tell yet: peers that join later find us through the DHT.
            Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => debug!("no gossip peers yet"),
            Err(e) => warn!(error = %e, "offer gossip failed"),
        }
    }

    fn find_offers(
        &mut self,
        tool: ToolName,
        provider: Option<NodeId>,
        reply: oneshot::Sender<Vec<BookEntry>>,
    ) {
        let query = OfferQuery {
            tool: Some(tool.clone()),
            provider,
            ..OfferQuery::default()
        };
        let known = self.book_entries(&query);
        if !known.is_empty() {
            let _ = reply.send(known);
            return;
        }
        let query_id = self
            .swarm
            .behaviour_mut()
            .kad
            .get_providers(RecordKey::new(&tool.kademlia_key()));
        debug!(%tool, "looking up providers in the DHT");
        self.finds.insert(
            query_id,
            Find {
                query,
                waiters: vec![reply],
                query_done: false,
                outstanding: HashSet::new(),
                asked: HashSet::new(),
            },
        );
    }

    /// The live offers in the book matching `query`, cheapest first.
    fn book_entries(&self, query: &OfferQuery) -> Vec<BookEntry> {
        let now = self.clock.wall();
        self.book.query(query, now).into_iter().cloned().collect()
    }

    fn finish_find_if_done(&mut self, query_id: QueryId) {
        let done = self
            .finds
            .get(&query_id)
            .is_some_and(|f| f.query_done && f.outstanding.is_empty());
        if !done {
            return;
        }
        if let Some(find) = self.finds.remove(&query_id) {
            let found = self.book_entries(&find.query);
            for waiter in find.waiters {
                let _ = waiter.send(found.clone());
            }
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        self.record(&event);
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            })) => self.on_gossip(propagation_source, message_id, message),
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Subscribed {
                peer_id,
                topic,
            })) if topic == gossipsub::IdentTopic::new(OFFERS_TOPIC).hash()
                && !self.own_offers.is_empty() =>
            {
                debug!(peer = %peer_id, "peer joined the offer topic; re-announcing soon");
                self.announce_due
                    .get_or_insert(tokio::time::Instant::now() + self.announce_debounce);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                let kad_protocol = libp2p::StreamProtocol::new(orien_protocol::KAD_PROTOCOL);
                let hop = libp2p::StreamProtocol::new(RELAY_HOP_PROTOCOL);
                if info.protocols.contains(&hop)
                    && let Some(addr) = info.listen_addrs.iter().find(|a| is_direct(a))
                {
                    debug!(relay = %peer_id, %addr, "peer serves as a relay");
                    self.relays
                        .insert(peer_id, addr.clone().with(Protocol::P2p(peer_id)));
                }
                if info.protocols.contains(&kad_protocol) {
                    for addr in info.listen_addrs {
                        self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                    }
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                id,
                result: QueryResult::GetProviders(result),
                step,
                ..
            })) => self.on_providers(id, result, step.last),
            SwarmEvent::Behaviour(BehaviourEvent::Session(event)) => self.on_session(event),
            SwarmEvent::ConnectionEstablished {
                peer_id, endpoint, ..
            } => {
                if self.guard.is_banned(&peer_id, self.clock.monotonic()) {
                    debug!(peer = %peer_id, "banned peer connected; disconnecting");
                    let _ = self.swarm.disconnect_peer_id(peer_id);
                    return;
                }
                debug!(peer = %peer_id, addr = %endpoint.get_remote_address(), "connected");
            }
            SwarmEvent::ConnectionClosed { peer_id, cause, .. } => {
                debug!(peer = %peer_id, cause = ?cause, "disconnected");
            }
            _ => {}
        }
    }

    /// Before a request to a peer this node is not connected to, adds a route to it
    /// through each known relay: a provider behind NAT is reachable only that way, and
    /// offers arrive over gossip without addresses. Direct addresses, when known, are
    /// dialled alongside; DCUtR upgrades a relayed connection when it can.
    fn route_via_relays(
        swarm: &mut Swarm<Behaviour>,
        relays: &HashMap<PeerId, Multiaddr>,
        peer: PeerId,
    ) {
        if swarm.is_connected(&peer) {
            return;
        }
        let routes: Vec<Multiaddr> = relays
            .iter()
            .filter(|(relay, _)| **relay != peer && swarm.is_connected(relay))
            .map(|(_, addr)| {
                addr.clone()
                    .with(Protocol::P2pCircuit)
                    .with(Protocol::P2p(peer))
            })
            .collect();
        for route in routes {
            swarm.add_peer_address(peer, route);
        }
    }

    fn on_gossip(&mut self, source: PeerId, id: gossipsub::MessageId, message: gossipsub::Message) {
        let now = self.clock.wall();
        let acceptance = match self.book.admit_bytes(&message.data, now, Some(source)) {
            Ok(admission) => {
                self.announce(admission);
                let provider = match admission {
                    Admission::Added(id)
                    | Admission::Replaced { new: id, .. }
                    | Admission::Duplicate(id) => self.book.get(&id).map(|e| e.offer.provider),
                    Admission::Withdrawn { .. } => None,
                };
                // The publisher of an offer must be the provider it names.
                match (provider, message.source) {
                    (Some(provider), Some(publisher)) if provider.to_peer_id() != publisher => {
                        warn!(peer = %source, %publisher, "offer published by someone other than its provider");
                        gossipsub::MessageAcceptance::Reject
                    }
                    _ => {
                        debug!(peer = %source, ?admission, "offer admitted");
                        gossipsub::MessageAcceptance::Accept
                    }
                }
            }
            Err(rejection) if rejection.is_misbehaviour() => {
                warn!(peer = %source, %rejection, "invalid offer; penalising the sender");
                gossipsub::MessageAcceptance::Reject
            }
            Err(rejection) => {
                debug!(peer = %source, %rejection, "offer ignored");
                gossipsub::MessageAcceptance::Ignore
            }
        };
        let outcome = match acceptance {
            gossipsub::MessageAcceptance::Accept => "accepted",
            gossipsub::MessageAcceptance::Ignore => "ignored",
            gossipsub::MessageAcceptance::Reject => "rejected",
        };
        self.metrics
            .offers_received
            .get_or_create(&OfferOutcome { outcome })
            .inc();
        self.swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(&id, &source, acceptance);
    }

    fn record(&self, event: &SwarmEvent<BehaviourEvent>) {
        let libp2p = &self.metrics.libp2p;
        libp2p.record(event);
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(e)) => libp2p.record(e),
            SwarmEvent::Behaviour(BehaviourEvent::Kad(e)) => libp2p.record(e),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(e)) => libp2p.record(e),
            SwarmEvent::Behaviour(BehaviourEvent::Ping(e)) => libp2p.record(e),
            SwarmEvent::Behaviour(BehaviourEvent::Dcutr(e)) => libp2p.record(e),
            SwarmEvent::ConnectionEstablished { .. } | SwarmEvent::ConnectionClosed { .. } => {
                self.metrics
                    .peers
                    .set(i64::try_from(self.swarm.connected_peers().count()).unwrap_or(i64::MAX));
            }
            _ => {}
        }
        self.metrics
            .offers_in_book
            .set(i64::try_from(self.book.len()).unwrap_or(i64::MAX));
    }

    /// Tells subscribers what an admission changed.
    fn announce(&self, admission: Admission) {
        let (added, removed) = match admission {
            Admission::Added(id) => (Some(id), None),
            Admission::Replaced { new, old } => (Some(new), Some(old)),
            Admission::Withdrawn { removed, .. } => (None, removed),
            Admission::Duplicate(_) => (None, None),
        };
        if let Some(id) = removed {
            let _ = self.events.send(OfferEvent::Removed { id });
        }
        if let Some(entry) = added.and_then(|id| self.book.get(&id)) {
            let _ = self.events.send(OfferEvent::Added {
                id: entry.id,
                tool: entry.offer.tool.clone(),
                provider: entry.offer.provider,
            });
        }
    }

    fn on_providers(
        &mut self,
        query_id: QueryId,
        result: Result<GetProvidersOk, kad::GetProvidersError>,
        last: bool,
    ) {
        let local = *self.swarm.local_peer_id();
        let Some(find) = self.finds.get_mut(&query_id) else {
            return;
        };
        if let Ok(GetProvidersOk::FoundProviders { providers, .. }) = result {
            for peer in providers {
                if peer == local || !find.asked.insert(peer) {
                    continue;
                }
                let request = SessionRequest::ListOffers {
                    tool: find.query.tool.clone(),
                };
                Self::route_via_relays(&mut self.swarm, &self.relays, peer);
                let request_id = self
                    .swarm
                    .behaviour_mut()
                    .session
                    .send_request(&peer, request);
                find.outstanding.insert(request_id);
                self.find_requests.insert(request_id, query_id);
            }
        }
        if last {
            find.query_done = true;
        }
        self.finish_find_if_done(query_id);
    }

    fn on_session(&mut self, event: request_response::Event<SessionRequest, SessionResponse>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => self.on_request(peer, request, channel),
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some(waiter) = self.outbound.remove(&request_id) {
                        self.deliver_response(peer, response, waiter);
                        return;
                    }
                    if let SessionResponse::Offers(offers) = response {
                        let now = self.clock.wall();
                        for signed in offers {
                            match self.book.admit_from(signed, now, Some(peer)) {
                                Ok(admission) => self.announce(admission),
                                Err(rejection) => {
                                    debug!(%peer, %rejection, "listed offer not admitted")
                                }
                            }
                        }
                    }
                    self.request_done(request_id);
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                debug!(%peer, %error, "session request failed");
                if let Some(waiter) = self.outbound.remove(&request_id) {
                    let _ = waiter.send(Err(NetError::Failed {
                        peer: peer.to_string(),
                        reason: error.to_string(),
                    }));
                    return;
                }
                self.request_done(request_id);
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                debug!(%peer, %error, "inbound session request failed");
                // Only a frame that does not decode is abuse; a connection that drops
                // mid-request (as a crash or a flaky link does) is not.
                if let request_response::InboundFailure::Io(e) = &error
                    && e.kind() == std::io::ErrorKind::InvalidData
                {
                    self.penalise(peer, Abuse::UndecodableFrame);
                }
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    /// Counts one abuse against `peer`; a ban it earns blacklists the peer in gossip and
    /// disconnects it now and whenever it connects again, until the ban ends.
    fn penalise(&mut self, peer: PeerId, abuse: Abuse) {
        let now = self.clock.monotonic();
        match self.guard.record(peer, abuse, now) {
            Verdict::Banned { until } => {
                warn!(%peer, abuse = abuse.as_str(), ban_secs = until.saturating_sub(now).as_secs(), "banning a peer that keeps abusing the session protocol");
                self.metrics.peers_banned.inc();
                self.swarm.behaviour_mut().gossipsub.blacklist_peer(&peer);
                let _ = self.swarm.disconnect_peer_id(peer);
            }
            Verdict::Counted(points) => {
                debug!(%peer, abuse = abuse.as_str(), points, "session-protocol abuse");
            }
            Verdict::AlreadyBanned => {}
        }
    }

    /// Lets back the peers whose ban ended.
    fn expire_bans(&mut self) {
        for peer in self.guard.expire(self.clock.monotonic()) {
            info!(%peer, "ban over");
            self.swarm
                .behaviour_mut()
                .gossipsub
                .remove_blacklisted_peer(&peer);
        }
    }

    /// Hands a peer's answer to the request's waiter, unless the fault policy loses or
    /// delays it.
    fn deliver_response(
        &self,
        peer: PeerId,
        response: SessionResponse,
        waiter: oneshot::Sender<Result<SessionResponse, NetError>>,
    ) {
        let fault = match (&self.faults, NodeId::from_peer_id(&peer)) {
            (Some(faults), Ok(node)) => faults.decide(Point::InboundResponse {
                peer: node,
                response: &response,
            }),
            _ => Fault::Deliver,
        };
        match fault {
            Fault::Deliver => {
                let _ = waiter.send(Ok(response));
            }
            Fault::Drop => {
                debug!(%peer, "fault injection: answer lost");
                let _ = waiter.send(Err(NetError::Failed {
                    peer: peer.to_string(),
                    reason: "the answer was lost (fault injection)".into(),
                }));
            }
            Fault::Delay(by) => {
                tokio::spawn(async move {
                    tokio::time::sleep(by).await;
                    let _ = waiter.send(Ok(response));
                });
            }
        }
    }

    fn on_request(
        &mut self,
        peer: PeerId,
        request: SessionRequest,
        channel: request_response::ResponseChannel<SessionResponse>,
    ) {
        if self.guard.is_banned(&peer, self.clock.monotonic()) {
            drop(channel);
            return;
        }
        let fault = match (&self.faults, NodeId::from_peer_id(&peer)) {
            (Some(faults), Ok(node)) => faults.decide(Point::InboundRequest {
                peer: node,
                request: &request,
            }),
            _ => Fault::Deliver,
        };
        match fault {
            Fault::Deliver => self.serve(peer, request, channel),
            Fault::Drop => {
                debug!(%peer, "fault injection: request not served");
                drop(channel);
            }
            Fault::Delay(by) => {
                let commands = self.commands.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(by).await;
                    let command = Command::Serve {
                        peer,
                        request,
                        channel,
                    };
                    let _ = commands.send(command).await;
                });
            }
        }
    }

    /// Answers offer listings itself; hands session requests to the session manager,
    /// keeping the response channel until its answer comes back as `Command::Respond`.
    fn serve(
        &mut self,
        peer: PeerId,
        request: SessionRequest,
        channel: request_response::ResponseChannel<SessionResponse>,
    ) {
        if self.guard.is_banned(&peer, self.clock.monotonic()) {
            drop(channel);
            return;
        }
        let response = match (request, &self.inbound) {
            (SessionRequest::ListOffers { tool }, _) => self.list_offers(tool),
            (request, Some(inbound)) => match NodeId::from_peer_id(&peer) {
                Ok(node) => {
                    let id = self.next_responder;
                    self.next_responder += 1;
                    let (reply, answer) = oneshot::channel();
                    match inbound.try_send(Inbound {
                        peer: node,
                        request,
                        reply,
                    }) {
                        Ok(()) => {
                            self.responders.insert(id, (peer, channel));
                            let commands = self.commands.clone();
                            tokio::spawn(async move {
                                let answer = answer.await.unwrap_or_else(|_| {
                                    Answer::from(SessionResponse::Error {
                                        code: RpcErrorCode::Internal,
                                        detail: "the session manager dropped the request".into(),
                                    })
                                });
                                let respond = Command::Respond {
                                    id,
                                    response: answer.response,
                                    abuse: answer.abuse,
                                    faulted: false,
                                };
                                let _ = commands.send(respond).await;
                            });
                            return;
                        }
                        Err(_) => SessionResponse::Error {
                            code: RpcErrorCode::RateLimited,
                            detail: "too many session requests in flight".into(),
                        },
                    }
                }
                Err(e) => SessionResponse::Error {
                    code: RpcErrorCode::BadRequest,
                    detail: e.to_string(),
                },
            },
            (_, None) => SessionResponse::Error {
                code: RpcErrorCode::BadRequest,
                detail: "this node does not serve sessions".into(),
            },
        };
        if self
            .swarm
            .behaviour_mut()
            .session
            .send_response(channel, response)
            .is_err()
        {
            debug!(%peer, "requester went away before the response");
        }
    }

    fn list_offers(&self, tool: Option<ToolName>) -> SessionResponse {
        let offers: Vec<Signed<Offer>> = self
            .own_offers
            .iter()
            .filter(|(name, _)| tool.as_ref().is_none_or(|t| t == *name))
            .map(|(_, own)| own.signed.clone())
            .take(MAX_OFFERS_PER_RESPONSE)
            .collect();
        if offers.is_empty() && tool.is_some() {
            return SessionResponse::Error {
                code: RpcErrorCode::BadRequest,
                detail: "no such tool offered".into(),
            };
        }
        SessionResponse::Offers(offers)
    }

    fn request_done(&mut self, request_id: OutboundRequestId) {
        if let Some(query_id) = self.find_requests.remove(&request_id) {
            if let Some(find) = self.finds.get_mut(&query_id) {
                find.outstanding.remove(&request_id);
            }
            self.finish_find_if_done(query_id);
        }
    }
}

/// An answer as it may go on the wire: one that breaks a protocol limit (a bug; every
/// detail is fitted) is replaced by an error saying so, so the requester hears of it.
fn within_limits(response: SessionResponse) -> SessionResponse {
    match orien_protocol::wire::Message::validate(&response) {
        Ok(()) => response,
        Err(e) => {
            warn!(error = %e, "an answer breaks a protocol limit; answering with an error");
            SessionResponse::Error {
                code: RpcErrorCode::Internal,
                detail: orien_protocol::fit_detail(format!(
                    "the answer broke a protocol limit: {e}"
                )),
            }
        }
    }
}
