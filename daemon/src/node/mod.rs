//! [`Node`]: one ORIEN daemon, started in-process. The swarm runs in its own task;
//! the handle talks to it through a command channel, the session layer through
//! [`crate::net::Net`], and peers' session requests go from the task straight to their
//! session.

mod attestations;
mod book_sync;
mod config;
mod connections;
mod discovery;
mod event_loop;
mod gossip;
mod guard;
mod listings;
mod peer_lookup;
mod profiles;
mod publishing;
mod relay;
mod routing;
mod walks;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use libp2p::kad::QueryId;
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm};
use orien_protocol::{Clock, NodeId, NodeKey, OfferId, SessionRequest, SessionResponse, ToolName};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{Instrument, info, info_span, warn};

use crate::metrics::Metrics;
use crate::net::{Answer, Net, NetError};
use crate::network::{self, Behaviour};
use crate::offer_book::{BookEntry, OfferBook, OfferQuery};
use crate::own_offers::OwnOffers;
use crate::peer_guard::{Abuse, GuardConfig, PeerGuard};
use crate::profile_book::{ProfileBook, ProfileEntry, ProfilePage, ProfileQuery};
use crate::session::Sessions;

use self::discovery::Find;
use self::relay::is_direct;

pub use config::{Faults, NodeConfig, NodeError, OfferSpec, ProfileText};

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
        /// The peer it came through first (`None`: this node's own offer).
        source: Option<PeerId>,
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
    Disconnect(PeerId, oneshot::Sender<bool>),
    Stats(oneshot::Sender<NodeStats>),
    Offer(OfferId, oneshot::Sender<Option<BookEntry>>),
    Providers(ProfileQuery, oneshot::Sender<ProfilePage>),
    Provider(NodeId, oneshot::Sender<Option<ProfileEntry>>),
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
    /// This node's attestation, signed off the loop, to gossip.
    Attest(orien_protocol::Signed<orien_protocol::Attestation>),
    /// A peer's request that the fault policy delayed, to serve now.
    Serve {
        peer: PeerId,
        request: SessionRequest,
        channel: request_response::ResponseChannel<SessionResponse>,
    },
    Shutdown(oneshot::Sender<()>),
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
    started: std::time::Instant,
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
        let budget = config.tuning.connections;
        if budget.high == 0 || budget.low > budget.high {
            return Err(NodeError::ConnectionBudget(budget));
        }
        let mut swarm = network::build_swarm(&key, config.transport.clone(), &config.tuning)?;
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
        // The session layer's requests come on a channel of their own: it knows `Net`,
        // not the node's commands.
        let (net_commands, net_receiver) = mpsc::channel(64);
        let (events, _) = broadcast::channel(1024);
        let own_offers = OwnOffers::default();
        let metrics = Metrics::new();
        let event_loop = EventLoop {
            swarm,
            key,
            online_since: clock.wall(),
            clock,
            book: OfferBook::new(config.offer_book),
            profiles: ProfileBook::default(),
            profile_text: config.profile,
            profile_due: None,
            profile_completed: 0,
            own_offers: own_offers.clone(),
            offer_ttl: config.offer_ttl,
            book_sync: book_sync::BookSync::new(config.tuning.book_sync_peers),
            walks: walks::Walks::default(),
            peer_lookups: peer_lookup::PeerLookups::default(),
            finds: HashMap::new(),
            find_requests: HashMap::new(),
            events: events.clone(),
            metrics: metrics.clone(),
            sessions: None,
            answers: FuturesUnordered::new(),
            responders: HashMap::new(),
            guard: PeerGuard::new(GuardConfig::default()),
            listings: listings::ListingBudget::new(),
            next_responder: 0,
            outbound: HashMap::new(),
            commands: commands.clone(),
            relays: HashMap::new(),
            faults: config.faults,
            attestation_interval: config.attestation_interval,
            attestation_budget: attestations::VerifyBudget::default(),
            connections: config.tuning.connections,
            connected_since: HashMap::new(),
            session_messages: HashMap::new(),
            topped_up: None,
        };
        let mut event_loop = event_loop;
        let sessions = match config.sessions {
            Some(services) => {
                let net = Net::new(net_commands);
                let streams = event_loop.swarm.behaviour().transfer.new_control();
                let sessions = Sessions::start(
                    event_loop.key.clone(),
                    services,
                    net,
                    streams,
                    own_offers,
                    event_loop.clock.clone(),
                    metrics.clone(),
                );
                event_loop.sessions = Some(sessions.clone());
                Some(sessions)
            }
            None => None,
        };
        let span = info_span!("node", node = %id);
        let task = tokio::spawn(event_loop.run(receiver, net_receiver).instrument(span));
        info!(node = %id, addrs = ?listen_addrs, "node started");
        Ok(Self {
            id,
            listen_addrs,
            commands,
            events,
            metrics,
            sessions,
            task: Some(task),
            started: std::time::Instant::now(),
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

    /// How long ago the node started.
    pub fn uptime(&self) -> std::time::Duration {
        self.started.elapsed()
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

    /// The provider profiles this node knows that match `query`, one page of them.
    pub async fn providers(&self, query: ProfileQuery) -> Result<ProfilePage, NodeError> {
        self.ask(|tx| Command::Providers(query, tx)).await
    }

    /// One provider's profile, if this node knows it.
    pub async fn provider(&self, provider: NodeId) -> Result<Option<ProfileEntry>, NodeError> {
        self.ask(|tx| Command::Provider(provider, tx)).await
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

    /// Closes every connection to `peer` at once, streams and all; whether there was
    /// one. The peer may connect again (a session's next message or a transfer's
    /// resume dials it): what an unplugged cable or a restarted router does.
    pub async fn disconnect(&self, peer: NodeId) -> Result<bool, NodeError> {
        let peer = peer.to_peer_id();
        self.ask(|reply| Command::Disconnect(peer, reply)).await
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

struct EventLoop {
    swarm: Swarm<Behaviour>,
    key: NodeKey,
    clock: Arc<dyn Clock>,
    book: OfferBook,
    /// Providers' profiles, this node's own included.
    profiles: ProfileBook,
    /// What this node says of itself in its profile.
    profile_text: config::ProfileText,
    /// When this node's profile is published next (debounced after offers).
    profile_due: Option<tokio::time::Instant>,
    /// When this node started: its profile's `online_since`.
    online_since: orien_protocol::Timestamp,
    /// The completed sessions its last published profile counted.
    profile_completed: u64,
    /// The offers this node publishes (shared with the sessions, which open them).
    own_offers: OwnOffers,
    offer_ttl: Duration,
    /// Whom the books were synced from since the node joined the offer topic.
    book_sync: book_sync::BookSync,
    /// The DHT walk in progress and when the last one ended.
    walks: walks::Walks,
    /// Requests kept for a retry after a failed dial, and the peer lookups for them.
    peer_lookups: peer_lookup::PeerLookups<peer_lookup::Waiter>,
    finds: HashMap<QueryId, Find>,
    find_requests: HashMap<OutboundRequestId, QueryId>,
    events: broadcast::Sender<OfferEvent>,
    metrics: Metrics,
    /// The sessions this node serves and rents, when it has session services.
    sessions: Option<Sessions>,
    /// The sessions' answers to peers' requests, by responder id.
    answers: FuturesUnordered<BoxFuture<'static, (u64, Answer)>>,
    /// Inbound requests waiting for their session's answer.
    responders: HashMap<u64, (PeerId, request_response::ResponseChannel<SessionResponse>)>,
    /// Session-protocol abuse per peer, decaying, and the bans it earned: a banned peer is
    /// disconnected on sight, blacklisted in gossip and never answered until its ban ends.
    guard: PeerGuard,
    /// Pages of listings (`ListOffers`, `ListBook`, `ListProfiles`) each peer may still
    /// ask for.
    listings: listings::ListingBudget,
    next_responder: u64,
    /// Outbound session requests waiting for an answer.
    outbound: HashMap<OutboundRequestId, oneshot::Sender<Result<SessionResponse, NetError>>>,
    /// To send commands to ourselves from helper tasks.
    commands: mpsc::Sender<Command>,
    /// Peers that serve as relays (they announced the hop protocol), with an address.
    relays: HashMap<PeerId, Multiaddr>,
    /// Faults injected into the session protocol.
    faults: Option<Faults>,
    /// How often this node publishes its attestation.
    attestation_interval: Duration,
    /// Attestation verifications left this second.
    attestation_budget: attestations::VerifyBudget,
    /// How many peers to stay connected to.
    connections: crate::network::ConnectionBudget,
    /// When each connected peer's first open connection was established.
    connected_since: HashMap<PeerId, Duration>,
    /// When each peer last exchanged a session message with this node (within the
    /// budget's grace; older entries are dropped).
    session_messages: HashMap<PeerId, Duration>,
    /// When this node last dialled peers for being below its budget's `low`.
    topped_up: Option<Duration>,
}
