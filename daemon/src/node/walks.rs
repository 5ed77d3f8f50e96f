//! Kademlia walks (bootstrap), each worth its cost. A walk is a lookup of the node's own
//! key, then one of a random key in every bucket farther than its nearest neighbour's:
//! ten lookups in a market of a thousand, some 30 requests each, most of them opening a
//! connection the budget trims soon after. A joining node's walk is its own key alone
//! (its nearest peers, who must know it, and some on the way): the far buckets fill
//! from the connections that come to it, and the periodic walk refreshes them all. A
//! renter that then finds no address for a provider looks the provider up
//! (`peer_lookup`). On 200 whole nodes in orien-sim, joining and trading a minute,
//! both together took the connection ends opened from 52,016 to 22,330, peak memory
//! from 3.4 GB to 1.7 GB and wall time from 160 s to 99 to 119 s, with 12 lookups and
//! every request served (19 of 20 before).
//!
//! kad 0.49 also starts a walk by
//! itself 500 ms after a peer enters a routing table of fewer than 20 peers, and the
//! throttle it sets while the node's own first walk fills the table fires as soon as
//! that walk ends: every joiner walked twice (203 walks for 100 nodes, counted by
//! orien-sim), the second asking every bucket again, 8 to 10 steps of some 30 requests,
//! most of them opening a connection the budget trims soon after. kad lets no caller
//! turn that off (its setter is crate-private), so a walk that starts within
//! [`WALK_SPACING`] of the previous one's end is finished after its first step, the
//! lookup of the node's own key: its closest peers stay fresh, the far buckets the
//! previous walk has just refreshed are not asked again.

use std::time::Duration;

use libp2p::kad::QueryId;

use super::EventLoop;

/// A node's first walk, and any within this of the last one's end, stops after its
/// first step.
pub(super) const WALK_SPACING: Duration = Duration::from_secs(60);

/// The walk in progress and when the last one ended.
#[derive(Debug, Default)]
pub(super) struct Walks {
    current: Option<(QueryId, bool)>,
    last_ended: Option<Duration>,
}

impl Walks {
    /// A step of walk `id` finished at `now` (`last`: the walk is done). Whether the walk
    /// is to stop here.
    pub(super) fn step(&mut self, id: QueryId, now: Duration, last: bool) -> bool {
        let cut = match self.current {
            Some((current, cut)) if current == id => cut,
            _ => {
                let cut = self
                    .last_ended
                    .is_none_or(|ended| now.saturating_sub(ended) < WALK_SPACING);
                self.current = Some((id, cut));
                cut
            }
        };
        if last {
            self.current = None;
            self.last_ended = Some(now);
        }
        cut && !last
    }
}

impl EventLoop {
    /// A step of a walk finished: a joiner's walk, or one right after another, stops
    /// here.
    pub(super) fn on_walk_step(&mut self, id: QueryId, last: bool) {
        if self.walks.step(id, self.clock.monotonic(), last)
            && let Some(mut query) = self.swarm.behaviour_mut().kad.query_mut(&id)
        {
            query.finish();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (QueryId, QueryId, QueryId) {
        // Query ids come only from kad; three behaviours' first queries differ.
        let mut kad = libp2p::kad::Behaviour::new(
            libp2p::PeerId::random(),
            libp2p::kad::store::MemoryStore::new(libp2p::PeerId::random()),
        );
        let mut id = || kad.get_closest_peers(libp2p::PeerId::random());
        (id(), id(), id())
    }

    #[test]
    fn a_joiners_walk_and_one_right_after_stop_after_their_first_step_and_a_later_one_runs_whole() {
        let (first, second, later) = ids();
        let secs = Duration::from_secs;
        let mut walks = Walks::default();
        // The node's first walk: its own key, then stopped at each step until it ends.
        assert!(walks.step(first, secs(1), false));
        assert!(walks.step(first, secs(1), false));
        assert!(
            !walks.step(first, secs(3), true),
            "its end is not cut again"
        );
        // kad's automatic walk, right after: stopped at each step until it ends.
        assert!(walks.step(second, secs(4), false));
        assert!(walks.step(second, secs(4), false));
        assert!(
            !walks.step(second, secs(4), true),
            "its end is not cut again"
        );
        // A walk a spacing after the last one's end runs whole.
        let then = secs(4) + WALK_SPACING;
        assert!(!walks.step(later, then, false));
        assert!(!walks.step(later, then + secs(1), true));
    }
}
