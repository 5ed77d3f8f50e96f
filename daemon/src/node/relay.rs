//! Reaching peers through circuit relays.

use std::collections::HashMap;

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId, Swarm};

use crate::network::Behaviour;

use super::EventLoop;

/// An address that reaches its node directly (not through a relay, not unspecified).
pub(super) fn is_direct(addr: &Multiaddr) -> bool {
    addr.iter().all(|p| !matches!(p, Protocol::P2pCircuit))
        && addr.iter().all(|p| match p {
            Protocol::Ip4(ip) => !ip.is_unspecified(),
            Protocol::Ip6(ip) => !ip.is_unspecified(),
            _ => true,
        })
}

/// The circuit relay v2 hop protocol, announced by relays through identify.
pub(super) const RELAY_HOP_PROTOCOL: &str = "/libp2p/circuit/relay/0.2.0/hop";

impl EventLoop {
    /// Before a request to a peer this node is not connected to, adds a route to it
    /// through each known relay: a provider behind NAT is reachable only that way, and
    /// offers arrive over gossip without addresses. Direct addresses, when known, are
    /// dialled alongside; DCUtR upgrades a relayed connection when it can.
    pub(super) fn route_via_relays(
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
}
