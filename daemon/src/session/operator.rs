//! What a node's operator decides about peers: which renters a provider serves, which
//! providers a renter rents from, and how often one renter may open sessions.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use orien_protocol::NodeId;

/// Which peers a node deals with: everyone but the denied, or, with an allow list, only
/// those on it (and not denied).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerAccess {
    /// Only these peers (`None`: anyone not denied).
    pub allow: Option<BTreeSet<NodeId>>,
    /// Never these peers.
    pub deny: BTreeSet<NodeId>,
}

impl PeerAccess {
    /// Whether the node deals with `peer`.
    pub fn permits(&self, peer: &NodeId) -> bool {
        !self.deny.contains(peer) && self.allow.as_ref().is_none_or(|a| a.contains(peer))
    }
}

/// The operator's controls of a node's sessions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OperatorControls {
    /// Provider: the renters it serves.
    pub renters: PeerAccess,
    /// Renter: the providers it rents from.
    pub providers: PeerAccess,
    /// Provider: most sessions one renter may open in a minute (0, the default: no
    /// limit; `orien-node run` sets 120).
    pub opens_per_minute: u32,
}

/// How long an open counts against a renter's rate.
const WINDOW: Duration = Duration::from_secs(60);
/// Renters whose opens are remembered at once; past it the idlest are forgotten (an
/// attacker with many keys only spreads its own opens thinner).
const TRACKED: usize = 4096;

/// Each renter's session opens in the last minute, to cap how often one may open.
#[derive(Debug, Default)]
pub(crate) struct OpenRate {
    opens: HashMap<NodeId, Vec<Duration>>,
}

impl OpenRate {
    /// Counts an open by `renter` at `now` (monotonic) when it is within `per_minute`
    /// (0: no limit); `false` when it is not, and then nothing is counted.
    pub(crate) fn admit(&mut self, renter: NodeId, now: Duration, per_minute: u32) -> bool {
        if per_minute == 0 {
            return true;
        }
        let recent = |t: &Duration| now.saturating_sub(*t) < WINDOW;
        if self.opens.len() >= TRACKED && !self.opens.contains_key(&renter) {
            self.opens.retain(|_, times| times.iter().any(recent));
            if self.opens.len() >= TRACKED
                && let Some(idlest) = self
                    .opens
                    .iter()
                    .min_by_key(|(_, times)| times.last().copied())
                    .map(|(peer, _)| *peer)
            {
                self.opens.remove(&idlest);
            }
        }
        let times = self.opens.entry(renter).or_default();
        times.retain(recent);
        if times.len() >= per_minute as usize {
            return false;
        }
        times.push(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orien_protocol::NodeKey;

    fn peer() -> NodeId {
        NodeKey::generate().node_id()
    }

    #[test]
    fn a_denied_peer_is_refused_and_an_allow_list_admits_only_its_own() {
        let (a, b, c) = (peer(), peer(), peer());
        let mut access = PeerAccess::default();
        assert!(access.permits(&a));
        access.deny.insert(a);
        assert!(!access.permits(&a) && access.permits(&b));
        access.allow = Some([a, b].into());
        assert!(access.permits(&b), "allowed");
        assert!(!access.permits(&c), "not on the allow list");
        assert!(!access.permits(&a), "denied wins over allowed");
    }

    #[test]
    fn a_renter_opens_at_most_its_rate_in_any_minute() {
        let (a, b) = (peer(), peer());
        let mut rate = OpenRate::default();
        let s = Duration::from_secs;
        assert!(rate.admit(a, s(0), 2));
        assert!(rate.admit(a, s(10), 2));
        assert!(!rate.admit(a, s(20), 2), "a third open within the minute");
        assert!(rate.admit(b, s(20), 2), "another renter has its own rate");
        assert!(rate.admit(a, s(61), 2), "the first open left the window");
        assert!(!rate.admit(a, s(62), 2));
        assert!(rate.admit(a, s(62), 0), "0 is no limit");
    }

    #[test]
    fn the_renters_remembered_are_bounded() {
        let mut rate = OpenRate::default();
        for i in 0..TRACKED as u64 + 10 {
            assert!(rate.admit(peer(), Duration::from_millis(i), 1));
        }
        assert!(rate.opens.len() <= TRACKED);
    }
}
