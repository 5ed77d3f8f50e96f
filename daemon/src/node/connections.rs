//! Keeping the node within its [`ConnectionBudget`]: which connections to close when
//! discovery has left it connected to more peers than it needs.
//!
//! The choice ([`to_close`]) is a function of what the node knows of each peer, so
//! tests drive it without a swarm; the event loop gathers that knowledge once a second
//! and disconnects what it returns.
//!
//! Every node trims by its own lights, so a node that none of its peers values (a
//! renter in nobody's gossip mesh, say) can be trimmed by all of them at once and be
//! left with a peer or two. Below half of `low` a node therefore dials peers from its
//! routing table until it is back at half of `low`. Not at `low` itself: a trim stops
//! at `low`, so every peer a trimmed node then lost would make it dial, its dials
//! would push others over `high`, and their trims would go round again.

use std::cmp::Ordering;
use std::collections::HashSet;
use std::time::Duration;

use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{PeerId, gossipsub};
use orien_protocol::{ATTESTATIONS_TOPIC, OFFERS_TOPIC, PROFILES_TOPIC};
use tracing::debug;

use crate::network::ConnectionBudget;

use super::EventLoop;

/// How often a node below half its budget's `low` dials more peers.
pub(super) const TOP_UP_EVERY: Duration = Duration::from_secs(10);

/// What the trim weighs of one connected peer.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Connected {
    pub(super) peer: PeerId,
    /// When its first open connection was established (monotonic clock).
    pub(super) since: Duration,
    /// When it last sent or was sent a session-protocol message, if ever.
    pub(super) last_session_message: Option<Duration>,
    /// A live session with it, or it is a relay: never closed.
    pub(super) pinned: bool,
    /// In how many of this node's gossip meshes it is.
    pub(super) meshes: usize,
    /// Its gossip score (0 when scoring knows nothing of it).
    pub(super) score: f64,
}

impl Connected {
    fn protected(&self, budget: &ConnectionBudget, now: Duration) -> bool {
        let recent = |at: Duration| now.saturating_sub(at) < budget.grace;
        self.pinned || recent(self.since) || self.last_session_message.is_some_and(recent)
    }

    /// Least useful first: in fewer meshes, lower score, newer, then by id so the
    /// order is total.
    fn usefulness(&self, other: &Self) -> Ordering {
        self.meshes
            .cmp(&other.meshes)
            .then(self.score.total_cmp(&other.score))
            .then(other.since.cmp(&self.since))
            .then(self.peer.cmp(&other.peer))
    }
}

/// The peers to disconnect: none while at most `budget.high` are connected, else the
/// least useful unprotected ones until `budget.low` would remain (fewer if too many
/// are protected).
pub(super) fn to_close(
    budget: &ConnectionBudget,
    mut connected: Vec<Connected>,
    now: Duration,
) -> Vec<PeerId> {
    if connected.len() <= budget.high {
        return Vec::new();
    }
    let excess = connected.len() - budget.low;
    connected.retain(|c| !c.protected(budget, now));
    connected.sort_by(Connected::usefulness);
    connected.truncate(excess);
    connected.into_iter().map(|c| c.peer).collect()
}

impl EventLoop {
    /// Remembers when a peer's first connection opened.
    pub(super) fn on_connected(&mut self, peer: PeerId, first: bool) {
        if first {
            self.connected_since.insert(peer, self.clock.monotonic());
        }
    }

    /// Forgets a peer whose last connection closed.
    pub(super) fn on_disconnected(&mut self, peer: &PeerId, last: bool) {
        if last {
            self.connected_since.remove(peer);
        }
    }

    /// Notes a session-protocol message to or from `peer`.
    pub(super) fn session_message(&mut self, peer: PeerId) {
        self.session_messages.insert(peer, self.clock.monotonic());
    }

    /// Below half of `low` peers, dials peers of the routing table it is not connected
    /// to, back to half of `low` (the
    /// farthest buckets first: they hold most of the network, and differ from node to
    /// node), at most once per [`TOP_UP_EVERY`].
    pub(super) fn top_up_connections(&mut self) {
        let now = self.clock.monotonic();
        let connected = self.swarm.network_info().num_peers();
        let due = self
            .topped_up
            .is_none_or(|at| now.saturating_sub(at) >= TOP_UP_EVERY);
        let floor = self.connections.low.div_ceil(2);
        if connected >= floor || !due {
            return;
        }
        self.topped_up = Some(now);
        let wanted = floor - connected;
        let mut known: Vec<PeerId> = Vec::new();
        for bucket in self.swarm.behaviour_mut().kad.kbuckets() {
            known.extend(bucket.iter().map(|entry| *entry.node.key.preimage()));
        }
        let banned = |peer: &PeerId| self.guard.is_banned(peer, now);
        let dial: Vec<PeerId> = known
            .into_iter()
            .rev()
            .filter(|peer| !self.swarm.is_connected(peer) && !banned(peer))
            .take(wanted)
            .collect();
        if dial.is_empty() {
            return;
        }
        debug!(
            peers = connected,
            dialling = dial.len(),
            floor,
            "below the connection budget"
        );
        for peer in dial {
            let opts = DialOpts::peer_id(peer)
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build();
            if let Err(e) = self.swarm.dial(opts) {
                debug!(%peer, error = %e, "cannot dial");
            }
        }
    }

    /// Closes connections above the budget (see [`to_close`]).
    pub(super) fn trim_connections(&mut self) {
        let now = self.clock.monotonic();
        let budget = self.connections;
        self.session_messages
            .retain(|_, at| now.saturating_sub(*at) < budget.grace);
        if self.swarm.network_info().num_peers() <= budget.high {
            return;
        }
        let sessions: HashSet<PeerId> = self
            .sessions
            .as_ref()
            .map(|s| s.counterparts().iter().map(|n| n.to_peer_id()).collect())
            .unwrap_or_default();
        let gossip = &self.swarm.behaviour().gossipsub;
        let meshes: Vec<HashSet<PeerId>> = [OFFERS_TOPIC, PROFILES_TOPIC, ATTESTATIONS_TOPIC]
            .into_iter()
            .map(|t| {
                let topic = gossipsub::IdentTopic::new(t).hash();
                gossip.mesh_peers(&topic).copied().collect()
            })
            .collect();
        let connected: Vec<Connected> = self
            .swarm
            .connected_peers()
            .map(|peer| Connected {
                peer: *peer,
                since: self.connected_since.get(peer).copied().unwrap_or(now),
                last_session_message: self.session_messages.get(peer).copied(),
                pinned: sessions.contains(peer) || self.relays.contains_key(peer),
                meshes: meshes.iter().filter(|m| m.contains(peer)).count(),
                score: gossip.peer_score(peer).unwrap_or(0.0),
            })
            .collect();
        let peers = connected.len();
        let close = to_close(&budget, connected, now);
        if close.is_empty() {
            return;
        }
        debug!(
            peers,
            closing = close.len(),
            high = budget.high,
            "above the connection budget"
        );
        for peer in &close {
            let _ = self.swarm.disconnect_peer_id(*peer);
        }
        self.metrics
            .peers_trimmed
            .inc_by(u64::try_from(close.len()).unwrap_or(u64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUDGET: ConnectionBudget = ConnectionBudget {
        low: 2,
        high: 4,
        grace: Duration::from_secs(60),
    };
    const NOW: Duration = Duration::from_secs(1_000);

    fn old(peer: PeerId) -> Connected {
        Connected {
            peer,
            since: Duration::from_secs(10),
            last_session_message: None,
            pinned: false,
            meshes: 0,
            score: 0.0,
        }
    }

    fn peers(n: usize) -> Vec<PeerId> {
        (0..n).map(|_| PeerId::random()).collect()
    }

    #[test]
    fn nothing_closes_up_to_the_high_mark() {
        let connected = peers(4).into_iter().map(old).collect();
        assert!(to_close(&BUDGET, connected, NOW).is_empty());
    }

    #[test]
    fn above_the_high_mark_it_closes_down_to_the_low_one() {
        let connected: Vec<Connected> = peers(5).into_iter().map(old).collect();
        assert_eq!(to_close(&BUDGET, connected, NOW).len(), 3);
    }

    #[test]
    fn mesh_peers_and_well_scored_peers_go_last() {
        let ids = peers(5);
        let mut connected: Vec<Connected> = ids.iter().copied().map(old).collect();
        connected[0].meshes = 2;
        connected[1].meshes = 1;
        connected[2].score = 5.0;
        connected[3].score = -1.0;
        let closed = to_close(&BUDGET, connected, NOW);
        assert_eq!(closed, vec![ids[3], ids[4], ids[2]]);
    }

    #[test]
    fn among_equals_the_newest_connection_goes_first() {
        let ids = peers(5);
        let mut connected: Vec<Connected> = ids.iter().copied().map(old).collect();
        for (i, c) in connected.iter_mut().enumerate() {
            c.since = Duration::from_secs(100 + i as u64);
        }
        let closed = to_close(&BUDGET, connected, NOW);
        assert_eq!(closed, vec![ids[4], ids[3], ids[2]]);
    }

    #[test]
    fn sessions_relays_and_young_connections_are_never_closed() {
        let ids = peers(6);
        let mut connected: Vec<Connected> = ids.iter().copied().map(old).collect();
        connected[0].pinned = true;
        connected[1].since = NOW - Duration::from_secs(59);
        connected[2].last_session_message = Some(NOW - Duration::from_secs(30));
        // A session message long ago protects nothing.
        connected[3].last_session_message = Some(NOW - Duration::from_secs(61));
        let closed = to_close(&BUDGET, connected, NOW);
        assert_eq!(
            closed.len(),
            3,
            "the three unprotected ones, though 4 should go"
        );
        for kept in &ids[..3] {
            assert!(!closed.contains(kept));
        }
    }
}
