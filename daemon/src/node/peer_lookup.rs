//! Finding a peer that a request cannot dial. A renter knows a provider from its signed
//! offer, which says who the provider is, not where: the swarm dials it with the
//! addresses Kademlia's routing table and identify's cache hold, and in a market of a
//! thousand nodes most providers are in neither (a routing table keeps twenty peers a
//! bucket). orien-sim found it: on 200 nodes whose joiners walked only their own key,
//! 31 of 48 opens failed with "Failed to dial the requested peer".
//!
//! So a request to a peer that was not connected when it left is kept until it is
//! answered. If its dial fails, the node looks the peer up in the DHT (the walk towards
//! its key reaches the nodes that hold it in their routing tables, and their answers
//! carry its addresses), dials what it found, and sends the request again once
//! connected; once only, and the request fails with the lookup's reason otherwise.
//!
//! [`PeerLookups`] is the bookkeeping, generic over what waits, so tests drive it
//! without a swarm; the event loop does the I/O it asks for.

use std::collections::HashMap;

use libp2p::kad::QueryId;
use libp2p::request_response::OutboundRequestId;
use libp2p::swarm::ConnectionId;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{Multiaddr, PeerId};
use orien_protocol::{SessionRequest, SessionResponse};
use tokio::sync::oneshot;
use tracing::debug;

use super::EventLoop;
use crate::net::NetError;

/// Peers looked up at once; a request beyond fails as its dial did.
pub(super) const MAX_LOOKUPS: usize = 64;
/// Requests waiting on one peer's lookup; one beyond fails as its dial did.
pub(super) const MAX_WAITING_PER_PEER: usize = 16;

/// Where a peer's lookup stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Asking the DHT for the peer.
    LookingUp(QueryId),
    /// Dialling the addresses the DHT gave.
    Dialling(ConnectionId),
}

/// The requests waiting on one peer.
#[derive(Debug)]
struct Waiting<T> {
    stage: Option<Stage>,
    items: Vec<T>,
}

/// What to do about a request whose dial failed.
#[derive(Debug, PartialEq)]
pub(super) enum Parked<T> {
    /// Start a lookup of this peer and report its query with [`PeerLookups::looking_up`].
    LookUp(PeerId),
    /// It waits on a lookup already under way.
    Waits,
    /// It cannot wait (too many waiting): fail it.
    Fail(T),
}

/// What a lookup's answer calls for.
#[derive(Debug, PartialEq)]
pub(super) enum Outcome<T> {
    /// Dial the peer at these addresses and report the dial with [`PeerLookups::dialling`].
    Dial(PeerId, Vec<Multiaddr>),
    /// The DHT does not know the peer: fail what waited.
    NotFound(PeerId, Vec<T>),
    /// Not a peer lookup of ours.
    Unknown,
}

/// Requests kept for a retry and the lookups under way; `T` is what waits (a request
/// and its reply, in the node).
#[derive(Debug)]
pub(super) struct PeerLookups<T> {
    /// Requests sent to a peer not connected when they left, until answered.
    undialled: HashMap<OutboundRequestId, SessionRequest>,
    waiting: HashMap<PeerId, Waiting<T>>,
}

impl<T> Default for PeerLookups<T> {
    fn default() -> Self {
        Self {
            undialled: HashMap::new(),
            waiting: HashMap::new(),
        }
    }
}

impl<T> PeerLookups<T> {
    /// `request` (`id`) left for a peer the node was not connected to.
    pub(super) fn sent(&mut self, id: OutboundRequestId, request: SessionRequest) {
        self.undialled.insert(id, request);
    }

    /// Request `id` was answered or failed otherwise than by its dial.
    pub(super) fn settled(&mut self, id: &OutboundRequestId) {
        self.undialled.remove(id);
    }

    /// Request `id` failed to dial: the request, if it was kept to be sent again.
    pub(super) fn take(&mut self, id: &OutboundRequestId) -> Option<SessionRequest> {
        self.undialled.remove(id)
    }

    /// `item` waits until `peer` is found and connected.
    pub(super) fn park(&mut self, peer: PeerId, item: T) -> Parked<T> {
        let known = self.waiting.contains_key(&peer);
        if !known && self.waiting.len() >= MAX_LOOKUPS {
            return Parked::Fail(item);
        }
        let waiting = self.waiting.entry(peer).or_insert(Waiting {
            stage: None,
            items: Vec::new(),
        });
        if waiting.items.len() >= MAX_WAITING_PER_PEER {
            return Parked::Fail(item);
        }
        waiting.items.push(item);
        if known {
            Parked::Waits
        } else {
            Parked::LookUp(peer)
        }
    }

    /// The lookup of `peer` is query `query`.
    pub(super) fn looking_up(&mut self, peer: PeerId, query: QueryId) {
        if let Some(waiting) = self.waiting.get_mut(&peer) {
            waiting.stage = Some(Stage::LookingUp(query));
        }
    }

    /// The lookup could not start (no peer known to ask): what waited on `peer`.
    pub(super) fn abandon(&mut self, peer: &PeerId) -> Vec<T> {
        self.waiting
            .remove(peer)
            .map(|w| w.items)
            .unwrap_or_default()
    }

    /// Query `query` found `peers` (with the addresses its answers carried).
    pub(super) fn found(
        &mut self,
        query: QueryId,
        peers: impl IntoIterator<Item = (PeerId, Vec<Multiaddr>)>,
    ) -> Outcome<T> {
        let Some(target) = self
            .waiting
            .iter()
            .find(|(_, w)| w.stage == Some(Stage::LookingUp(query)))
            .map(|(peer, _)| *peer)
        else {
            return Outcome::Unknown;
        };
        let addresses = peers
            .into_iter()
            .find(|(peer, addrs)| *peer == target && !addrs.is_empty())
            .map(|(_, addrs)| addrs);
        match addresses {
            Some(addrs) => Outcome::Dial(target, addrs),
            None => Outcome::NotFound(target, self.abandon(&target)),
        }
    }

    /// The dial of `peer` at the addresses found is `connection`.
    pub(super) fn dialling(&mut self, peer: PeerId, connection: ConnectionId) {
        if let Some(waiting) = self.waiting.get_mut(&peer) {
            waiting.stage = Some(Stage::Dialling(connection));
        }
    }

    /// A connection to `peer` is up: what waited on it, to send.
    pub(super) fn connected(&mut self, peer: &PeerId) -> Vec<T> {
        match self.waiting.get(peer) {
            Some(w) if w.stage.is_some() => self.abandon(peer),
            _ => Vec::new(),
        }
    }

    /// Dial `connection` failed: the peer it was to and what waited on it, to fail.
    pub(super) fn dial_error(&mut self, connection: ConnectionId) -> Option<(PeerId, Vec<T>)> {
        let peer = self
            .waiting
            .iter()
            .find(|(_, w)| w.stage == Some(Stage::Dialling(connection)))
            .map(|(peer, _)| *peer)?;
        Some((peer, self.abandon(&peer)))
    }

    /// Peers being looked up or dialled.
    #[cfg(test)]
    fn pending(&self) -> usize {
        self.waiting.len()
    }
}

/// Who waits for a request's answer.
type Reply = oneshot::Sender<Result<SessionResponse, NetError>>;

/// A request waiting on its peer's lookup, and who waits for its answer.
pub(super) type Waiter = (SessionRequest, Reply);

impl EventLoop {
    /// A request to `peer` failed to dial: looks the peer up and sends the request again
    /// when found, or fails it with `reason`.
    pub(super) fn on_dial_failed(
        &mut self,
        id: &OutboundRequestId,
        peer: PeerId,
        reply: Reply,
        reason: String,
    ) {
        let Some(request) = self.peer_lookups.take(id) else {
            return fail(reply, peer, reason);
        };
        match self.peer_lookups.park(peer, (request, reply)) {
            Parked::Waits => {}
            Parked::Fail((_, reply)) => fail(reply, peer, reason),
            Parked::LookUp(peer) => {
                let query = self.swarm.behaviour_mut().kad.get_closest_peers(peer);
                debug!(%peer, "no address for the peer; looking it up in the DHT");
                self.metrics.peer_lookups.inc();
                self.peer_lookups.looking_up(peer, query);
            }
        }
    }

    /// A peer lookup's answer: dials the peer where it was found.
    pub(super) fn on_peer_found(&mut self, query: QueryId, peers: Vec<libp2p::kad::PeerInfo>) {
        let found = self
            .peer_lookups
            .found(query, peers.into_iter().map(|p| (p.peer_id, p.addrs)));
        match found {
            Outcome::Unknown => {}
            Outcome::NotFound(peer, waiting) => {
                debug!(%peer, "the DHT does not know the peer");
                for (_, reply) in waiting {
                    let reason = "no address known for the peer, and the DHT did not find it";
                    fail(reply, peer, reason.into());
                }
            }
            Outcome::Dial(peer, addrs) => {
                debug!(%peer, addresses = addrs.len(), "found the peer in the DHT; dialling");
                let opts = DialOpts::peer_id(peer)
                    .addresses(addrs)
                    .condition(PeerCondition::DisconnectedAndNotDialing)
                    .build();
                let connection = opts.connection_id();
                match self.swarm.dial(opts) {
                    Ok(()) => self.peer_lookups.dialling(peer, connection),
                    // Connected or being dialled meanwhile: that connection, once up,
                    // sends what waits.
                    Err(e) => {
                        debug!(%peer, error = %e, "no dial after the lookup");
                        if self.swarm.is_connected(&peer) {
                            self.on_peer_reachable(peer);
                        }
                    }
                }
            }
        }
    }

    /// A connection to `peer` is up: sends what waited on its lookup.
    pub(super) fn on_peer_reachable(&mut self, peer: PeerId) {
        for (request, reply) in self.peer_lookups.connected(&peer) {
            // The fault policy saw it when it first left.
            self.send_request(peer, request, reply, true);
        }
    }

    /// Dial `connection` failed: fails what waited on it.
    pub(super) fn on_dial_error(&mut self, connection: ConnectionId, error: &str) {
        if let Some((peer, waiting)) = self.peer_lookups.dial_error(connection) {
            for (_, reply) in waiting {
                let reason = format!("the addresses the DHT gave do not answer: {error}");
                fail(reply, peer, reason);
            }
        }
    }
}

fn fail(reply: Reply, peer: PeerId, reason: String) {
    let _ = reply.send(Err(NetError::Failed {
        peer: peer.to_string(),
        reason,
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query_ids(n: usize) -> Vec<QueryId> {
        // Query ids come only from kad.
        let mut kad = libp2p::kad::Behaviour::new(
            PeerId::random(),
            libp2p::kad::store::MemoryStore::new(PeerId::random()),
        );
        (0..n)
            .map(|_| kad.get_closest_peers(PeerId::random()))
            .collect()
    }

    fn request_ids() -> (OutboundRequestId, OutboundRequestId) {
        // Request ids come only from request-response.
        let mut session = libp2p::request_response::Behaviour::with_codec(
            crate::network::codec::SessionCodec,
            [(
                libp2p::StreamProtocol::new(orien_protocol::SESSION_PROTOCOL),
                libp2p::request_response::ProtocolSupport::Full,
            )],
            libp2p::request_response::Config::default(),
        );
        let mut id =
            || session.send_request(&PeerId::random(), SessionRequest::ListOffers { tool: None });
        (id(), id())
    }

    fn addr(port: u64) -> Multiaddr {
        format!("/memory/{port}").parse().expect("an address")
    }

    #[test]
    fn requests_wait_on_one_lookup_and_go_once_the_peer_found_is_connected() {
        let ids = query_ids(2);
        let (peer, other) = (PeerId::random(), PeerId::random());
        let mut lookups = PeerLookups::default();
        assert_eq!(lookups.park(peer, "open"), Parked::LookUp(peer));
        assert_eq!(
            lookups.park(peer, "second"),
            Parked::Waits,
            "one lookup a peer"
        );
        lookups.looking_up(peer, ids[0]);
        assert_eq!(lookups.found(ids[1], []), Outcome::Unknown, "not our query");
        // The answers carry the peer's addresses among others'.
        let found = lookups.found(
            ids[0],
            [(other, vec![addr(1)]), (peer, vec![addr(2), addr(3)])],
        );
        assert_eq!(found, Outcome::Dial(peer, vec![addr(2), addr(3)]));
        let dial = ConnectionId::new_unchecked(7);
        lookups.dialling(peer, dial);
        assert!(lookups.connected(&other).is_empty());
        assert_eq!(lookups.connected(&peer), vec!["open", "second"]);
        assert_eq!(lookups.pending(), 0);
        assert!(lookups.dial_error(dial).is_none(), "nothing waits any more");
    }

    #[test]
    fn a_peer_the_dht_does_not_know_or_whose_dial_fails_fails_what_waited() {
        let ids = query_ids(2);
        let (peer, other) = (PeerId::random(), PeerId::random());
        let mut lookups = PeerLookups::default();
        assert_eq!(lookups.park(peer, 1), Parked::LookUp(peer));
        lookups.looking_up(peer, ids[0]);
        // Found without an address is not found.
        assert_eq!(
            lookups.found(ids[0], [(other, vec![addr(1)]), (peer, vec![])]),
            Outcome::NotFound(peer, vec![1])
        );
        assert_eq!(lookups.park(other, 2), Parked::LookUp(other));
        lookups.looking_up(other, ids[1]);
        assert_eq!(
            lookups.found(ids[1], [(other, vec![addr(1)])]),
            Outcome::Dial(other, vec![addr(1)])
        );
        let dial = ConnectionId::new_unchecked(9);
        lookups.dialling(other, dial);
        assert!(
            lookups
                .dial_error(ConnectionId::new_unchecked(10))
                .is_none()
        );
        assert_eq!(lookups.dial_error(dial), Some((other, vec![2])));
        assert_eq!(lookups.pending(), 0);
    }

    #[test]
    fn a_connection_during_the_lookup_sends_at_once() {
        let ids = query_ids(1);
        let peer = PeerId::random();
        let mut lookups = PeerLookups::default();
        let _ = lookups.park(peer, 1);
        lookups.looking_up(peer, ids[0]);
        // The lookup's own walk reached the peer.
        assert_eq!(lookups.connected(&peer), vec![1]);
        assert_eq!(
            lookups.found(ids[0], [(peer, vec![addr(1)])]),
            Outcome::Unknown
        );
    }

    #[test]
    fn waiting_is_bounded_per_peer_and_in_peers() {
        let mut lookups = PeerLookups::default();
        let peer = PeerId::random();
        for i in 0..MAX_WAITING_PER_PEER {
            assert_ne!(lookups.park(peer, i), Parked::Fail(i));
        }
        assert_eq!(lookups.park(peer, 99), Parked::Fail(99));
        for i in 1..MAX_LOOKUPS {
            let p = PeerId::random();
            assert_eq!(lookups.park(p, i), Parked::LookUp(p));
        }
        assert_eq!(lookups.park(PeerId::random(), 100), Parked::Fail(100));
        assert_eq!(lookups.pending(), MAX_LOOKUPS);
    }

    #[test]
    fn only_requests_sent_while_unconnected_are_kept_and_only_until_settled() {
        let mut lookups = PeerLookups::<()>::default();
        let (id, other) = request_ids();
        lookups.sent(id, SessionRequest::ListOffers { tool: None });
        assert!(lookups.take(&other).is_none());
        lookups.settled(&id);
        assert!(
            lookups.take(&id).is_none(),
            "an answered request is forgotten"
        );
        lookups.sent(id, SessionRequest::ListOffers { tool: None });
        assert!(lookups.take(&id).is_some());
        assert!(lookups.take(&id).is_none(), "taken once");
    }
}
