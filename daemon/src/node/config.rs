//! What a node is started with, and what can go wrong starting it.

use std::sync::Arc;
use std::time::Duration;

use libp2p::Multiaddr;
use orien_protocol::ToolName;

use crate::faults::{Fault, LinkFaults, Point};
use crate::network::{self, NetworkTuning, TransportKind};
use crate::offer_book::OfferBookLimits;
pub use crate::own_offers::OfferSpec;
use crate::session::SessionServices;

/// What a node needs to start.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Addresses to listen on (`/ip4/0.0.0.0/tcp/4001`, `/ip4/0.0.0.0/udp/4001/quic-v1`,
    /// `/memory/0`…). Port 0 picks a free port; [`Node::listen_addrs`](super::Node::listen_addrs) reports it.
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
    /// What a provider says of itself in the profile it publishes beside its offers.
    pub profile: ProfileText,
    /// How often a node that rents publishes its signed attestation of the providers it
    /// rented from (only once it has paid someone: the payments give it weight).
    pub attestation_interval: Duration,
}

/// What a provider says of itself in its [`ProviderProfile`](orien_protocol::ProviderProfile);
/// the rest (tools, prices, payout, counters) the node fills in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfileText {
    /// The name people see (`None`: "orien provider" and the start of the node id).
    pub display_name: Option<String>,
    /// What the provider offers, for humans and agents.
    pub description: String,
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

    pub(super) fn decide(&self, point: Point<'_>) -> Fault {
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
            profile: ProfileText::default(),
            attestation_interval: Duration::from_secs(600),
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
    /// The connection budget keeps more peers after a trim than it allows before one,
    /// or none at all.
    #[error("connection budget {0:?} is invalid: it needs 0 < low <= high")]
    ConnectionBudget(network::ConnectionBudget),
    /// The node's task has stopped.
    #[error("the node has stopped")]
    Stopped,
}
