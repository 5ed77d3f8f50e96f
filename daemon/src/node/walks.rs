//! Kademlia walks (bootstrap), one at a time worth its cost. kad 0.49 starts a walk by
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

/// A walk within this of the last one's end stops after its first step.
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
                    .is_some_and(|ended| now.saturating_sub(ended) < WALK_SPACING);
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
    /// A step of a walk finished: a walk right after another stops here.
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
    fn a_walk_right_after_another_stops_after_its_first_step_and_a_later_one_runs_whole() {
        let (first, second, later) = ids();
        let secs = Duration::from_secs;
        let mut walks = Walks::default();
        // The node's first walk runs all its steps.
        assert!(!walks.step(first, secs(1), false));
        assert!(!walks.step(first, secs(2), false));
        assert!(!walks.step(first, secs(3), true));
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
