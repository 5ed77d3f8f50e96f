//! How many listings (`ListOffers`, `ListBook`, `ListProfiles`) a node answers each peer.
//!
//! A listing is answered by the event loop itself and costs one page (up to 64 signed
//! offers or profiles, tens of kilobytes) for a request of a few bytes: a peer asking
//! without end would turn the node into an amplifier and keep its loop busy. Each peer
//! gets a bucket of [`ListingBudget::BURST`] pages, enough to page through both books
//! once when they are full (what an honest joiner asks, once per join of the offer
//! topic), refilled by one page per [`ListingBudget::REFILL_EVERY`]; a request beyond it
//! is answered `RateLimited`, which costs no page. The pure counting lives here: every
//! call takes the time, so a test drives it by hand.

use std::collections::HashMap;
use std::time::Duration;

use libp2p::PeerId;
use orien_protocol::rpc::{MAX_OFFERS_PER_RESPONSE, MAX_PROFILES_PER_RESPONSE};

use crate::offer_book::OfferBookLimits;
use crate::profile_book::PROFILE_CAPACITY;

/// Pages each peer may still ask for, refilled with time.
#[derive(Debug)]
pub(super) struct ListingBudget {
    buckets: HashMap<PeerId, Bucket>,
}

/// A peer's pages left, as of `at` (the node's monotonic time).
#[derive(Debug, Clone, Copy)]
struct Bucket {
    pages: u32,
    at: Duration,
}

impl ListingBudget {
    /// Pages a peer may ask for at once: both books, full, once.
    pub(super) const BURST: u32 = pages(OfferBookLimits::DEFAULT_CAPACITY, MAX_OFFERS_PER_RESPONSE)
        + pages(PROFILE_CAPACITY, MAX_PROFILES_PER_RESPONSE);
    /// One page more per this much time.
    pub(super) const REFILL_EVERY: Duration = Duration::from_secs(1);
    /// Peers remembered; beyond, the one with the most pages left is forgotten (it is
    /// the nearest to a fresh bucket).
    pub(super) const MAX_PEERS: usize = 1_024;

    pub(super) fn new() -> Self {
        Self {
            buckets: HashMap::new(),
        }
    }

    /// Whether `peer` may have one more page at `now`; takes it if so.
    pub(super) fn take(&mut self, peer: PeerId, now: Duration) -> bool {
        if !self.buckets.contains_key(&peer) && self.buckets.len() >= Self::MAX_PEERS {
            self.forget_fullest(now);
        }
        let bucket = self.buckets.entry(peer).or_insert(Bucket {
            pages: Self::BURST,
            at: now,
        });
        bucket.refill(now);
        if bucket.pages == 0 {
            return false;
        }
        bucket.pages -= 1;
        true
    }

    /// Peers remembered.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.buckets.len()
    }

    fn forget_fullest(&mut self, now: Duration) {
        let fullest = self
            .buckets
            .iter_mut()
            .map(|(peer, bucket)| {
                bucket.refill(now);
                (*peer, bucket.pages)
            })
            .max_by_key(|(_, pages)| *pages)
            .map(|(peer, _)| peer);
        if let Some(peer) = fullest {
            self.buckets.remove(&peer);
        }
    }
}

impl Bucket {
    fn refill(&mut self, now: Duration) {
        let elapsed = now.saturating_sub(self.at);
        let earned = elapsed.as_nanos() / ListingBudget::REFILL_EVERY.as_nanos();
        if earned == 0 {
            return;
        }
        let earned = u32::try_from(earned).unwrap_or(u32::MAX);
        self.pages = self.pages.saturating_add(earned).min(ListingBudget::BURST);
        // Time not yet worth a page is kept for the next.
        self.at += ListingBudget::REFILL_EVERY * earned;
        if self.pages == ListingBudget::BURST {
            self.at = now;
        }
    }
}

const fn pages(entries: usize, per_page: usize) -> u32 {
    let pages = entries.div_ceil(per_page);
    assert!(pages <= u32::MAX as usize);
    pages as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    const BURST: u32 = ListingBudget::BURST;

    #[test]
    fn a_peer_pages_through_both_full_books_then_is_refused_until_time_refills_it() {
        assert_eq!(
            BURST,
            157 + 64,
            "10,000 offers and 4,096 profiles in pages of 64"
        );
        let mut budget = ListingBudget::new();
        let (peer, other) = (PeerId::random(), PeerId::random());
        let t0 = Duration::from_secs(100);
        for page in 0..BURST {
            assert!(budget.take(peer, t0), "page {page} of a whole sync");
        }
        assert!(!budget.take(peer, t0), "one page more is refused");
        assert!(
            !budget.take(peer, t0 + Duration::from_millis(999)),
            "not before a page's time"
        );
        assert!(budget.take(other, t0), "another peer has its own budget");
        assert!(budget.take(peer, t0 + Duration::from_secs(1)));
        assert!(!budget.take(peer, t0 + Duration::from_millis(1_500)));
        // Half a second was kept toward the next page.
        assert!(budget.take(peer, t0 + Duration::from_secs(2)));
        // Long idle: a whole sync again, no more.
        let later = t0 + Duration::from_secs(3_600);
        for _ in 0..BURST {
            assert!(budget.take(peer, later));
        }
        assert!(!budget.take(peer, later));
    }

    #[test]
    fn it_remembers_a_bounded_number_of_peers_and_forgets_the_least_indebted_first() {
        let mut budget = ListingBudget::new();
        let now = Duration::from_secs(1);
        let spent = PeerId::random();
        for _ in 0..BURST {
            assert!(budget.take(spent, now));
        }
        for _ in 1..ListingBudget::MAX_PEERS + 100 {
            assert!(budget.take(PeerId::random(), now));
        }
        assert_eq!(budget.len(), ListingBudget::MAX_PEERS);
        assert!(
            !budget.take(spent, now),
            "the peer that spent its budget is still remembered"
        );
    }
}
