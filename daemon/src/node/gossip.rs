//! Offers arriving by gossip: validated, admitted to the book, and the change announced.

use libp2p::{PeerId, gossipsub};
use tracing::{debug, warn};

use crate::metrics::OfferOutcome;
use crate::offer_book::Admission;

use super::{EventLoop, OfferEvent};

impl EventLoop {
    pub(super) fn on_gossip(
        &mut self,
        source: PeerId,
        id: gossipsub::MessageId,
        message: gossipsub::Message,
    ) {
        let now = self.clock.wall();
        let acceptance = match self.book.admit_bytes(&message.data, now, Some(source)) {
            Ok(admission) => {
                self.announce(admission);
                let provider = match admission {
                    Admission::Added(id)
                    | Admission::Replaced { new: id, .. }
                    | Admission::Duplicate(id) => self.book.get(&id).map(|e| e.offer.provider),
                    Admission::Withdrawn { .. } => None,
                };
                // The publisher of an offer must be the provider it names.
                match (provider, message.source) {
                    (Some(provider), Some(publisher)) if provider.to_peer_id() != publisher => {
                        warn!(peer = %source, %publisher, "offer published by someone other than its provider");
                        gossipsub::MessageAcceptance::Reject
                    }
                    _ => {
                        debug!(peer = %source, ?admission, "offer admitted");
                        gossipsub::MessageAcceptance::Accept
                    }
                }
            }
            Err(rejection) if rejection.is_misbehaviour() => {
                warn!(peer = %source, %rejection, "invalid offer; penalising the sender");
                gossipsub::MessageAcceptance::Reject
            }
            Err(rejection) => {
                debug!(peer = %source, %rejection, "offer ignored");
                gossipsub::MessageAcceptance::Ignore
            }
        };
        let outcome = match acceptance {
            gossipsub::MessageAcceptance::Accept => "accepted",
            gossipsub::MessageAcceptance::Ignore => "ignored",
            gossipsub::MessageAcceptance::Reject => "rejected",
        };
        self.metrics
            .offers_received
            .get_or_create(&OfferOutcome { outcome })
            .inc();
        self.swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(&id, &source, acceptance);
    }

    /// Tells subscribers what an admission changed.
    pub(super) fn announce(&self, admission: Admission) {
        let (added, removed) = match admission {
            Admission::Added(id) => (Some(id), None),
            Admission::Replaced { new, old } => (Some(new), Some(old)),
            Admission::Withdrawn { removed, .. } => (None, removed),
            Admission::Duplicate(_) => (None, None),
        };
        if let Some(id) = removed {
            let _ = self.events.send(OfferEvent::Removed { id });
        }
        if let Some(entry) = added.and_then(|id| self.book.get(&id)) {
            let _ = self.events.send(OfferEvent::Added {
                id: entry.id,
                tool: entry.offer.tool.clone(),
                provider: entry.offer.provider,
                source: entry.source,
            });
        }
    }
}
