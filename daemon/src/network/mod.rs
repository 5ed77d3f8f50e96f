//! The libp2p stack: transports, the composed behaviour and its configuration.
//!
//! | behaviour | job |
//! |---|---|
//! | `identify`, `ping` | learn peers' addresses and protocols, keep connections honest |
//! | `kad` on `/orien/kad/1.0.0` | the private DHT: bootstrap, provider records per tool |
//! | `gossipsub` on `orien/offers/1`, `orien/profiles/1`, `orien/attestations/1` | signed offers, profiles and renters' attestations, strictly validated, peers scored |
//! | `session` on `/orien/session/4` | request-response with a postcard codec ([`codec`]) |
//! | `transfer` on `/orien/files/1` | raw streams of file transfers ([`crate::transfer`]), length-prefixed frames as the session protocol's |
//! | `autonat`, `relay_client`, `dcutr` | reachability behind home NAT |

pub mod codec;
pub(crate) mod frame;

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::{Boxed, MemoryTransport};
use libp2p::core::upgrade::Version;
use libp2p::{
    PeerId, StreamProtocol, Swarm, SwarmBuilder, Transport, autonat, dcutr, gossipsub, identify,
    kad, noise, ping, relay, request_response, tcp, yamux,
};
use orien_protocol::{
    ATTESTATIONS_TOPIC, KAD_PROTOCOL, NodeKey, OFFERS_TOPIC, PROFILES_TOPIC, SESSION_PROTOCOL,
};
use sha2::{Digest, Sha256};

use self::codec::SessionCodec;

/// Identify protocol version string of ORIEN nodes.
pub const IDENTIFY_PROTOCOL: &str = "/orien/id/1";

/// Which transports the swarm uses.
#[derive(Debug, Clone, Default)]
pub enum TransportKind {
    /// TCP and QUIC (and DNS for bootstrap names), with noise and yamux: what users run.
    #[default]
    Network,
    /// libp2p's in-process memory transport (`/memory/<n>` addresses), for tests and
    /// simulations that run many nodes in one process without sockets.
    Memory,
    /// A transport the caller builds from the node's identity: the simulator's
    /// in-process links with latency and loss, say. The relay client is added beside it
    /// as for the others.
    Custom(CustomTransport),
}

/// An authenticated, multiplexed transport, as [`CustomTransport`] builds it.
pub type BoxedTransport = Boxed<(PeerId, StreamMuxerBox)>;

type MakeTransport =
    dyn Fn(&libp2p::identity::Keypair) -> Result<BoxedTransport, BuildError> + Send + Sync;

/// How a node with [`TransportKind::Custom`] builds its transport from its key.
#[derive(Clone)]
pub struct CustomTransport(Arc<MakeTransport>);

impl CustomTransport {
    /// A transport built by `make` from the node's keypair (for the security upgrade).
    pub fn new(
        make: impl Fn(&libp2p::identity::Keypair) -> Result<BoxedTransport, BuildError>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        Self(Arc::new(make))
    }
}

impl CustomTransport {
    /// libp2p's in-process memory transport with noise and yamux, as
    /// [`TransportKind::Memory`] uses.
    pub fn memory() -> Self {
        Self::new(|key| {
            let noise =
                noise::Config::new(key).map_err(|e| BuildError::Transport(e.to_string()))?;
            Ok(MemoryTransport::default()
                .upgrade(Version::V1)
                .authenticate(noise)
                .multiplex(yamux::Config::default())
                .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)))
                .boxed())
        })
    }
}

impl std::fmt::Debug for CustomTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CustomTransport(..)")
    }
}

/// Errors building the swarm.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A transport could not be set up.
    #[error("transport setup failed: {0}")]
    Transport(String),
    /// A behaviour's configuration was refused.
    #[error("behaviour setup failed: {0}")]
    Behaviour(String),
}

pub use composed::{Behaviour, BehaviourEvent};

mod composed {
    // The derive generates `BehaviourEvent`, one variant per field, without docs.
    #![allow(missing_docs)]

    use libp2p::swarm::NetworkBehaviour;
    use libp2p::swarm::behaviour::toggle::Toggle;
    use libp2p::{autonat, dcutr, gossipsub, identify, kad, ping, relay, request_response};

    use super::codec::SessionCodec;

    /// The composed behaviour of an ORIEN node.
    #[derive(NetworkBehaviour)]
    pub struct Behaviour {
        /// Relay client: listen through relays when not directly reachable.
        pub relay_client: relay::client::Behaviour,
        /// Relay server, on nodes that offer it.
        pub relay_server: Toggle<relay::Behaviour>,
        /// Direct connection upgrade through relay (hole punching).
        pub dcutr: dcutr::Behaviour,
        /// AutoNAT: learn whether our addresses are publicly reachable.
        pub autonat: autonat::Behaviour,
        /// Identify: exchange addresses and supported protocols.
        pub identify: identify::Behaviour,
        /// Ping: liveness.
        pub ping: ping::Behaviour,
        /// The ORIEN DHT.
        pub kad: kad::Behaviour<kad::store::MemoryStore>,
        /// Offer gossip.
        pub gossipsub: gossipsub::Behaviour,
        /// The session protocol.
        pub session: request_response::Behaviour<SessionCodec>,
        /// Streams of the bulk-data protocol (file transfers), opened and accepted
        /// through its `Control` outside the swarm's task.
        pub transfer: libp2p_stream::Behaviour,
    }
}

/// Tunables of the network layer.
#[derive(Debug, Clone)]
pub struct NetworkTuning {
    /// Gossipsub heartbeat.
    pub heartbeat: Duration,
    /// Timeout of one session-protocol request.
    pub request_timeout: Duration,
    /// How long an idle connection is kept.
    pub idle_timeout: Duration,
    /// Peers a node pages through the offer and profile books of when it joins the offer
    /// topic (at start, and after it lost every peer on it), so it knows the market at
    /// once; 0: none, it learns offers from gossip and the DHT alone.
    pub book_sync_peers: usize,
    /// Serve as a relay (circuit relay v2) for nodes that cannot be reached directly,
    /// e.g. providers behind home NAT. Bootstrap nodes with a public address do.
    pub relay_server: bool,
    /// How many peers the node stays connected to.
    pub connections: ConnectionBudget,
}

/// How many peers a node stays connected to. Discovery opens connections to many
/// peers (Kademlia walks, everyone dialling a bootstrap node), and gossipsub keeps a
/// stream open on every connection to a subscriber, so without a budget none of them
/// would ever close: in a market of thousands a home node would hold hundreds.
///
/// Above `high` connected peers, the node closes connections down to `low`, the least
/// useful first (in fewer of its gossip meshes, lower gossip score, newer). It never
/// closes one to a peer it shares a live session with or exchanged session messages
/// with in the last `grace`, a relay it knows, or a connection younger than `grace`.
/// Below half of `low` (its peers trimmed it away), it dials peers from its routing
/// table back to half of `low`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionBudget {
    /// Peers kept after a trim.
    pub low: usize,
    /// Peers above which the node trims.
    pub high: usize,
    /// How long a new connection, or a peer's last session message, protects it.
    pub grace: Duration,
}

impl ConnectionBudget {
    /// The fewest peers a budget may keep: a trim must leave each of gossipsub's
    /// meshes (six peers each) room to form.
    pub const MIN_LOW: usize = 8;

    /// A budget of at most `high` peers, trimmed to two thirds of it.
    pub fn up_to(high: usize) -> Self {
        Self {
            low: (high * 2 / 3).max(1),
            high,
            ..Self::default()
        }
    }
}

impl Default for ConnectionBudget {
    fn default() -> Self {
        Self {
            low: 32,
            high: 48,
            // Long enough for a DHT query to finish and gossipsub to graft a new peer
            // (a heartbeat); short, because every connection a DHT walk opens lives
            // this long.
            grace: Duration::from_secs(20),
        }
    }
}

impl Default for NetworkTuning {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_millis(700),
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(120),
            book_sync_peers: 2,
            relay_server: false,
            connections: ConnectionBudget::default(),
        }
    }
}

/// How often a node walks the DHT to refresh its routing table.
pub const KAD_BOOTSTRAP_INTERVAL: Duration = Duration::from_secs(30 * 60);

/// Largest gossip message: a signed offer with headroom.
const MAX_GOSSIP_LEN: usize = 64 * 1024;

/// Gossip message ids are the SHA-256 of the data: the same offer published twice is
/// one message, whoever forwards it.
fn content_message_id(message: &gossipsub::Message) -> gossipsub::MessageId {
    gossipsub::MessageId::from(Sha256::digest(&message.data).to_vec())
}

fn gossipsub_behaviour(
    key: &libp2p::identity::Keypair,
    tuning: &NetworkTuning,
) -> Result<gossipsub::Behaviour, BuildError> {
    let config = gossipsub::ConfigBuilder::default()
        .validation_mode(gossipsub::ValidationMode::Strict)
        .validate_messages()
        .message_id_fn(content_message_id)
        .max_transmit_size(MAX_GOSSIP_LEN)
        .heartbeat_interval(tuning.heartbeat)
        .build()
        .map_err(|e| BuildError::Behaviour(format!("gossipsub config: {e}")))?;
    let mut behaviour =
        gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Signed(key.clone()), config)
            .map_err(|e| BuildError::Behaviour(format!("gossipsub: {e}")))?;
    let topics = [
        gossipsub::IdentTopic::new(OFFERS_TOPIC),
        gossipsub::IdentTopic::new(PROFILES_TOPIC),
        gossipsub::IdentTopic::new(ATTESTATIONS_TOPIC),
    ];
    let (params, thresholds) = peer_scoring(&topics);
    behaviour
        .with_peer_score(params, thresholds)
        .map_err(|e| BuildError::Behaviour(format!("peer scoring: {e}")))?;
    for topic in &topics {
        behaviour
            .subscribe(topic)
            .map_err(|e| BuildError::Behaviour(format!("subscribe: {e}")))?;
    }
    Ok(behaviour)
}

/// Peer scoring, alike on the offer, profile and attestation topics: an invalid message
/// (forged, garbage, from the future) costs its sender
/// far more than a graylisting threshold; honest but quiet peers are not penalised, since
/// offers are infrequent. Loopback is exempt from the IP-colocation penalty so local
/// networks and tests, where every peer shares 127.0.0.1, behave like real ones.
fn peer_scoring(
    topics: &[gossipsub::IdentTopic],
) -> (gossipsub::PeerScoreParams, gossipsub::PeerScoreThresholds) {
    let topic_params = gossipsub::TopicScoreParams {
        topic_weight: 1.0,
        time_in_mesh_weight: 0.01,
        first_message_deliveries_weight: 1.0,
        first_message_deliveries_cap: 100.0,
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        invalid_message_deliveries_weight: -100.0,
        invalid_message_deliveries_decay: 0.9,
        ..gossipsub::TopicScoreParams::default()
    };
    let mut params = gossipsub::PeerScoreParams {
        ip_colocation_factor_whitelist: HashSet::from([
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ]),
        ..gossipsub::PeerScoreParams::default()
    };
    for topic in topics {
        params.topics.insert(topic.hash(), topic_params.clone());
    }
    (params, gossipsub::PeerScoreThresholds::default())
}

fn behaviour(
    key: &libp2p::identity::Keypair,
    relay_client: relay::client::Behaviour,
    tuning: &NetworkTuning,
) -> Result<Behaviour, BuildError> {
    let peer_id = key.public().to_peer_id();
    let mut kad_config = kad::Config::new(StreamProtocol::new(KAD_PROTOCOL));
    kad_config.set_query_timeout(Duration::from_secs(30));
    // A bootstrap walk opens connections to a good part of the network (about sixty
    // peers each in a market of a hundred, measured by orien-sim), which the connection
    // budget then closes: every five minutes, kad's default, that was most of a node's
    // connections opened. The routing table stays fresh meanwhile from the queries,
    // provider records and connections a node has anyway.
    kad_config.set_periodic_bootstrap_interval(Some(KAD_BOOTSTRAP_INTERVAL));
    let mut kad =
        kad::Behaviour::with_config(peer_id, kad::store::MemoryStore::new(peer_id), kad_config);
    // Every ORIEN node serves the DHT; AutoNAT tells users when they are not reachable.
    kad.set_mode(Some(kad::Mode::Server));
    let session = request_response::Behaviour::with_codec(
        SessionCodec,
        [(
            StreamProtocol::new(SESSION_PROTOCOL),
            request_response::ProtocolSupport::Full,
        )],
        request_response::Config::default().with_request_timeout(tuning.request_timeout),
    );
    let relay_server = tuning.relay_server.then(|| {
        relay::Behaviour::new(
            peer_id,
            relay::Config {
                max_reservations: 256,
                max_circuits: 256,
                max_circuits_per_peer: 16,
                // A session lives as long as its renter keeps it; the defaults (2 min,
                // 128 KiB) would cut sessions short.
                max_circuit_duration: Duration::from_secs(24 * 3600),
                max_circuit_bytes: 1 << 32,
                ..relay::Config::default()
            },
        )
    });
    Ok(Behaviour {
        relay_client,
        relay_server: relay_server.into(),
        dcutr: dcutr::Behaviour::new(peer_id),
        autonat: autonat::Behaviour::new(peer_id, autonat::Config::default()),
        identify: identify::Behaviour::new(identify::Config::new(
            IDENTIFY_PROTOCOL.into(),
            key.public(),
        )),
        ping: ping::Behaviour::default(),
        kad,
        gossipsub: gossipsub_behaviour(key, tuning)?,
        session,
        transfer: libp2p_stream::Behaviour::new(),
    })
}

/// Builds the swarm of a node with identity `key` on the chosen transports.
pub fn build_swarm(
    key: &NodeKey,
    transport: TransportKind,
    tuning: &NetworkTuning,
) -> Result<Swarm<Behaviour>, BuildError> {
    let keypair = key.to_libp2p_keypair();
    let idle = tuning.idle_timeout;
    let CustomTransport(make) = match transport {
        TransportKind::Network => {
            return Ok(SwarmBuilder::with_existing_identity(keypair)
                .with_tokio()
                .with_tcp(
                    tcp::Config::default().nodelay(true),
                    noise::Config::new,
                    yamux::Config::default,
                )
                .map_err(|e| BuildError::Transport(e.to_string()))?
                .with_quic()
                .with_dns()
                .map_err(|e| BuildError::Transport(e.to_string()))?
                .with_relay_client(noise::Config::new, yamux::Config::default)
                .map_err(|e| BuildError::Transport(e.to_string()))?
                .with_behaviour(|key, relay| behaviour(key, relay, tuning).map_err(Box::from))
                .map_err(|e| BuildError::Behaviour(e.to_string()))?
                .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
                .build());
        }
        TransportKind::Memory => CustomTransport::memory(),
        TransportKind::Custom(custom) => custom,
    };
    let swarm = SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_other_transport(
            |key| -> Result<_, Box<dyn std::error::Error + Send + Sync>> { Ok(make(key)?) },
        )
        .map_err(|e| BuildError::Transport(e.to_string()))?
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .map_err(|e| BuildError::Transport(e.to_string()))?
        .with_behaviour(|key, relay| behaviour(key, relay, tuning).map_err(Box::from))
        .map_err(|e| BuildError::Behaviour(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
        .build();
    Ok(swarm)
}
