//! Syncing the books from peers. A node that joins the offer topic (when it starts, or
//! again after it lost every peer on the topic) pages through the offer and profile
//! books of its first few peers on the topic (`ListBook`, `ListProfiles`;
//! [`NetworkTuning::book_sync_peers`](crate::network::NetworkTuning), two by default:
//! one peer that is new itself, its books still empty, or that withholds does not leave
//! the node blind until the next re-announcements),
//! so it knows the market at once. Providers used to re-announce their offers to the
//! whole network whenever a peer joined the topic: with connections trimmed and
//! re-opened all the time, that was every provider's offers flooded to every node
//! about once a minute, a load that grows with the square of the network.

use std::collections::HashMap;

use libp2p::PeerId;
use libp2p::gossipsub::IdentTopic;
use libp2p::request_response::OutboundRequestId;
use orien_protocol::rpc::{MAX_OFFERS_PER_RESPONSE, MAX_PROFILES_PER_RESPONSE};
use orien_protocol::{
    NodeId, OFFERS_TOPIC, OfferId, ProviderProfile, SessionRequest, SessionResponse, Signed,
};
use tracing::debug;

use super::EventLoop;
use crate::offer_book::OfferBookLimits;
use crate::profile_book::{PROFILE_CAPACITY, ProfileAdmission};

/// Which book a page is of, and where the next page starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cursor {
    Offers(Option<OfferId>),
    Profiles(Option<NodeId>),
}

/// A page asked for: from whom, which, and how many pages of that book came before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Page {
    pub(super) peer: PeerId,
    pub(super) cursor: Cursor,
    pub(super) number: usize,
}

impl Page {
    /// Most pages of one book taken from one peer: a full book, no more, so a peer that
    /// answers page after page forever is not followed forever.
    fn limit(cursor: Cursor) -> usize {
        match cursor {
            Cursor::Offers(_) => {
                OfferBookLimits::DEFAULT_CAPACITY.div_ceil(MAX_OFFERS_PER_RESPONSE)
            }
            Cursor::Profiles(_) => PROFILE_CAPACITY.div_ceil(MAX_PROFILES_PER_RESPONSE),
        }
    }

    /// The page after this one, given the page that came back: none when it was not
    /// full, did not move past the cursor, or was the last this peer may send.
    pub(super) fn next(&self, got: usize, last: Cursor) -> Option<Page> {
        let full = match self.cursor {
            Cursor::Offers(_) => got == MAX_OFFERS_PER_RESPONSE,
            Cursor::Profiles(_) => got == MAX_PROFILES_PER_RESPONSE,
        };
        let moved = match (self.cursor, last) {
            (Cursor::Offers(after), Cursor::Offers(Some(last))) => after.is_none_or(|a| last > a),
            (Cursor::Profiles(after), Cursor::Profiles(Some(last))) => {
                after.is_none_or(|a| last > a)
            }
            _ => false,
        };
        (full && moved && self.number + 1 < Self::limit(self.cursor)).then_some(Page {
            peer: self.peer,
            cursor: last,
            number: self.number + 1,
        })
    }

    fn request(&self) -> SessionRequest {
        match self.cursor {
            Cursor::Offers(after) => SessionRequest::ListBook { after },
            Cursor::Profiles(after) => SessionRequest::ListProfiles { after },
        }
    }
}

/// Whom the books were synced from since the node last joined the offer topic, and the
/// pages on their way.
#[derive(Debug, Default)]
pub(super) struct BookSync {
    /// How many peers to sync from.
    peers: usize,
    /// Whether some peer is on the offer topic (as far as this node heard).
    on_topic: bool,
    synced_from: Vec<PeerId>,
    pending: HashMap<OutboundRequestId, Page>,
}

/// What a peer joining the offer topic calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Joined {
    /// It is the first peer on the topic since the node had none: what the node
    /// published meanwhile reached no one, so its own offers and profile go out again.
    pub(super) first: bool,
    /// Sync the books from it.
    pub(super) sync: bool,
}

impl BookSync {
    /// Syncs from the first `peers` peers on the topic.
    pub(super) fn new(peers: usize) -> Self {
        Self {
            peers,
            ..Self::default()
        }
    }

    /// `peer` joined the offer topic.
    pub(super) fn joined(&mut self, peer: PeerId) -> Joined {
        let first = !std::mem::replace(&mut self.on_topic, true);
        let sync = self.synced_from.len() < self.peers && !self.synced_from.contains(&peer);
        if sync {
            self.synced_from.push(peer);
        }
        Joined { first, sync }
    }

    /// No peer is left on the offer topic: the next ones to join are synced from.
    pub(super) fn topic_lost(&mut self) {
        self.on_topic = false;
        self.synced_from.clear();
    }

    /// Whether `request` asked for a page.
    pub(super) fn awaits(&self, request: &OutboundRequestId) -> bool {
        self.pending.contains_key(request)
    }

    /// The page a request was for, once it is answered or failed.
    pub(super) fn answered(&mut self, request: &OutboundRequestId) -> Option<Page> {
        self.pending.remove(request)
    }
}

impl EventLoop {
    /// A peer joined the offer topic: sync the books from it if it is one of the first;
    /// if it is the very first, gossip own offers and profile again, which nobody heard.
    pub(super) fn on_offer_topic_joined(&mut self, peer: PeerId) {
        let joined = self.book_sync.joined(peer);
        if joined.first {
            self.regossip_own();
        }
        if joined.sync {
            debug!(%peer, "syncing the offer and profile books from a peer");
            for cursor in [Cursor::Offers(None), Cursor::Profiles(None)] {
                self.ask_page(Page {
                    peer,
                    cursor,
                    number: 0,
                });
            }
        }
    }

    /// A peer left the topic or disconnected: when none is left, the next to join are
    /// synced from (a node cut off for a while catches up this way).
    pub(super) fn on_offer_topic_left(&mut self) {
        let topic = IdentTopic::new(OFFERS_TOPIC).hash();
        let any = self
            .swarm
            .behaviour()
            .gossipsub
            .all_peers()
            .any(|(_, topics)| topics.contains(&&topic));
        if !any {
            self.book_sync.topic_lost();
        }
    }

    /// Gossips own offers and profile again as signed (a peer that heard them already
    /// drops them as duplicates): a provider that published before it had a peer on the
    /// topic, or while cut off, is heard once it has one. The only re-announcement a join
    /// causes is this node's own joining.
    fn regossip_own(&mut self) {
        let offers = self.own_offers.listing(None, usize::MAX);
        if !offers.is_empty() {
            debug!(
                offers = offers.len(),
                "first peer on the offer topic; gossiping own offers again"
            );
        }
        for signed in &offers {
            self.gossip(signed);
        }
        if !offers.is_empty()
            && let Some(own) = self.profiles.get(&self.key.node_id())
        {
            let signed = own.signed.clone();
            self.gossip_profile(&signed);
        }
    }

    fn ask_page(&mut self, page: Page) {
        let id = self
            .swarm
            .behaviour_mut()
            .session
            .send_request(&page.peer, page.request());
        self.book_sync.pending.insert(id, page);
    }

    /// A page of a peer's books came back. Every entry is verified and admitted as if
    /// it came by gossip through `peer`; a page with a forged or broken entry ends the
    /// sync from that peer, a full one asks for the next.
    pub(super) fn on_book_page(
        &mut self,
        peer: PeerId,
        request: &OutboundRequestId,
        response: SessionResponse,
    ) {
        let Some(page) = self.book_sync.answered(request) else {
            return;
        };
        let next = match (page.cursor, response) {
            (Cursor::Offers(_), SessionResponse::Offers(offers)) => {
                let (got, last) = (offers.len(), offers.last().map(Signed::offer_id));
                self.admit_listed_offers(peer, offers)
                    .then(|| page.next(got, Cursor::Offers(last)))
                    .flatten()
            }
            (Cursor::Profiles(_), SessionResponse::Profiles(profiles)) => {
                let got = profiles.len();
                self.admit_listed_profiles(peer, profiles)
                    .and_then(|last| page.next(got, Cursor::Profiles(last)))
            }
            (_, other) => {
                debug!(%peer, answer = ?std::mem::discriminant(&other), "a peer did not list its book");
                None
            }
        };
        if let Some(next) = next {
            self.ask_page(next);
        }
    }

    /// Admits offers a peer listed, as gossip would; `false` when one was forged or
    /// broken (misbehaviour), so no more is asked of that peer.
    pub(super) fn admit_listed_offers(
        &mut self,
        peer: PeerId,
        offers: Vec<Signed<orien_protocol::Offer>>,
    ) -> bool {
        let now = self.clock.wall();
        let mut honest = true;
        for signed in offers {
            match self.book.admit_from(signed, now, Some(peer)) {
                Ok(admission) => self.announce(admission),
                Err(rejection) => {
                    honest &= !rejection.is_misbehaviour();
                    debug!(%peer, %rejection, "listed offer not admitted");
                }
            }
        }
        honest
    }

    /// Admits profiles a peer listed; the last provider listed when all were honest.
    fn admit_listed_profiles(
        &mut self,
        peer: PeerId,
        profiles: Vec<Signed<ProviderProfile>>,
    ) -> Option<Option<NodeId>> {
        let now = self.clock.wall();
        let mut last = None;
        for signed in profiles {
            match self.profiles.admit(signed, now, Some(peer)) {
                Ok(ProfileAdmission::Stored(provider) | ProfileAdmission::Withdrawn(provider)) => {
                    last = Some(provider);
                }
                Err(rejection) if rejection.is_misbehaviour() => {
                    debug!(%peer, %rejection, "listed profile forged or broken; sync stopped");
                    return None;
                }
                // Stale or expired: this node holds a newer one, or it lapsed on the way;
                // the cursor still moves past it.
                Err(rejection) => debug!(%peer, %rejection, "listed profile not admitted"),
            }
        }
        Some(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(cursor: Cursor, number: usize) -> Page {
        Page {
            peer: PeerId::random(),
            cursor,
            number,
        }
    }

    #[test]
    fn a_node_syncs_from_its_first_two_topic_peers_and_again_after_losing_the_topic() {
        let joined = |first, sync| Joined { first, sync };
        let mut off = BookSync::new(0);
        assert_eq!(
            off.joined(PeerId::random()),
            joined(true, false),
            "syncing is off"
        );
        let mut sync = BookSync::new(2);
        let (a, b, c) = (PeerId::random(), PeerId::random(), PeerId::random());
        assert_eq!(sync.joined(a), joined(true, true));
        assert_eq!(sync.joined(a), joined(false, false), "one sync per peer");
        assert_eq!(sync.joined(b), joined(false, true));
        assert_eq!(sync.joined(c), joined(false, false), "two peers are enough");
        sync.topic_lost();
        assert_eq!(
            sync.joined(c),
            joined(true, true),
            "after losing the topic, own offers go out again and the next peer is synced from"
        );
    }

    #[test]
    fn only_a_full_page_that_moves_past_its_cursor_is_followed_and_never_past_a_full_book() {
        let id = |b: u8| OfferId::from_bytes([b; 32]);
        let first = page(Cursor::Offers(None), 0);
        let next = first
            .next(MAX_OFFERS_PER_RESPONSE, Cursor::Offers(Some(id(5))))
            .expect("a full page is followed");
        assert_eq!(next.cursor, Cursor::Offers(Some(id(5))));
        assert_eq!(next.number, 1);
        assert_eq!(next.peer, first.peer);
        assert!(
            first
                .next(MAX_OFFERS_PER_RESPONSE - 1, Cursor::Offers(Some(id(5))))
                .is_none()
        );
        assert!(
            next.next(MAX_OFFERS_PER_RESPONSE, Cursor::Offers(Some(id(5))))
                .is_none(),
            "a page that does not move past its cursor ends the sync"
        );
        assert!(
            next.next(MAX_OFFERS_PER_RESPONSE, Cursor::Offers(Some(id(4))))
                .is_none(),
            "nor does one that goes back"
        );
        let limit = Page::limit(Cursor::Offers(None));
        assert_eq!(limit, 157, "10,000 offers in pages of 64");
        let last = page(Cursor::Offers(Some(id(1))), limit - 1);
        assert!(
            last.next(MAX_OFFERS_PER_RESPONSE, Cursor::Offers(Some(id(9))))
                .is_none()
        );
        let profiles = page(Cursor::Profiles(None), 0);
        assert!(
            profiles
                .next(MAX_PROFILES_PER_RESPONSE, Cursor::Offers(Some(id(9))))
                .is_none(),
            "a cursor of the other book is not followed"
        );
    }
}
