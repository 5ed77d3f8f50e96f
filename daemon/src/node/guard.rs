//! The peer guard's verdicts applied to the swarm: bans disconnect and blacklist.

use libp2p::PeerId;
use tracing::{debug, info, warn};

use crate::peer_guard::{Abuse, Verdict};

use super::EventLoop;

impl EventLoop {
    /// Counts one abuse against `peer`; a ban it earns blacklists the peer in gossip and
    /// disconnects it now and whenever it connects again, until the ban ends.
    pub(super) fn penalise(&mut self, peer: PeerId, abuse: Abuse) {
        let now = self.clock.monotonic();
        self.metrics.abuse(abuse);
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
    pub(super) fn expire_bans(&mut self) {
        for peer in self.guard.expire(self.clock.monotonic()) {
            info!(%peer, "ban over");
            self.swarm
                .behaviour_mut()
                .gossipsub
                .remove_blacklisted_peer(&peer);
        }
    }
}
