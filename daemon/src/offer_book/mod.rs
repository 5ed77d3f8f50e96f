//! The offer book: every valid, unexpired offer this node has heard of.
//!
//! Offers arrive as untrusted bytes (gossip, direct answers). The book decodes them
//! size-limited, verifies the provider's signature, drops expired ones, keeps only the
//! newest offer per (provider, tool), and
//! stays within a fixed capacity. A rejection names its reason so the network layer can
//! penalise the peer that sent it.
//!
//! Keys are free, so a limit per provider does not stop one peer from inventing
//! thousands of providers. Every offer is therefore counted against the connection it
//! came through (its *source*): one source may fill at most a share of the book, and a
//! full book makes room by evicting from the source holding the most offers, not by
//! expiry — so a flood through one connection displaces only itself, and the offers
//! that arrived through other connections stay.
//!
//! A provider re-announces an offer by signing it again (a new id, the same terms). The
//! book lists only the newest, but remembers the ids it replaced until they expire, so
//! a renter who chose an offer a moment before its re-announcement still opens on it
//! ([`OfferBook::resolve`]); a change of terms, a withdrawal or an eviction forgets them.

use std::collections::{BTreeMap, HashMap};

use orien_protocol::{
    DecodeError, Millis, NodeId, Offer, OfferId, Signed, Timestamp, ToolName, Usdc, VerifyError,
};

/// How long after its expiry an offer still counts as a withdrawal worth forwarding.
pub const WITHDRAWAL_WINDOW: Millis = Millis(60_000);

/// Limits of the book.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfferBookLimits {
    /// Most offers held in all.
    pub capacity: usize,
    /// Most tools one provider may list.
    pub per_provider: usize,
    /// How far in the future `issued_at` may be (clock skew tolerated).
    pub max_clock_skew: Millis,
    /// Most offers that may have come through one source connection.
    #[serde(default = "OfferBookLimits::default_per_source")]
    pub per_source: usize,
}

impl OfferBookLimits {
    /// Most offers held in all, by default.
    pub const DEFAULT_CAPACITY: usize = 10_000;

    fn default_per_source() -> usize {
        2_500
    }
}

impl Default for OfferBookLimits {
    fn default() -> Self {
        Self {
            capacity: Self::DEFAULT_CAPACITY,
            per_provider: 64,
            max_clock_skew: Millis(5 * 60 * 1000),
            per_source: Self::default_per_source(),
        }
    }
}

/// Where an offer came from: a peer's connection, or this node itself.
pub type Source = Option<libp2p::PeerId>;

/// Why an offer was not taken into the book.
#[derive(Debug, thiserror::Error)]
pub enum OfferRejection {
    /// The bytes are not a signed offer (too large, malformed, invalid fields).
    #[error("undecodable offer: {0}")]
    Decode(#[from] DecodeError),
    /// The signature is wrong or not the provider's.
    #[error("offer signature: {0}")]
    Signature(#[from] VerifyError),
    /// The offer has expired.
    #[error("offer expired at {expires_at}")]
    Expired {
        /// When it expired.
        expires_at: Timestamp,
    },
    /// The offer claims to be issued further in the future than clock skew explains.
    #[error("offer issued in the future ({issued_at})")]
    FromTheFuture {
        /// The claimed issue time.
        issued_at: Timestamp,
    },
    /// A newer offer of the same provider and tool is already known.
    #[error("a newer offer of this provider and tool is known")]
    Stale,
    /// The provider already lists as many tools as the book allows.
    #[error("provider lists more than {0} tools")]
    ProviderFull(usize),
    /// Offers that came through this connection already fill its share of the book.
    #[error("the connection it came through already filled its share ({0} offers)")]
    SourceFull(usize),
    /// The book is full of offers that live longer than this one.
    #[error("offer book is full")]
    BookFull,
}

impl OfferRejection {
    /// Whether the sender broke the protocol (forgery, garbage), as opposed to sending
    /// something merely old or redundant. Only misbehaviour is penalised.
    pub fn is_misbehaviour(&self) -> bool {
        matches!(
            self,
            Self::Decode(_) | Self::Signature(_) | Self::FromTheFuture { .. }
        )
    }
}

/// What admitting an offer changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// A new offer.
    Added(OfferId),
    /// A new offer that replaced an older one of the same provider and tool.
    Replaced {
        /// The new offer.
        new: OfferId,
        /// The offer it replaced.
        old: OfferId,
    },
    /// Already known.
    Duplicate(OfferId),
    /// A withdrawal: an offer that expired moments ago and is newer than any held offer
    /// of the same provider and tool. The held one, if any, was removed; the withdrawal
    /// itself is not kept, but is worth forwarding.
    Withdrawn {
        /// The withdrawal (the expired offer).
        withdrawal: OfferId,
        /// The offer removed, if this node held one.
        removed: Option<OfferId>,
    },
}

/// A verified offer in the book.
#[derive(Debug, Clone)]
pub struct BookEntry {
    /// The offer's id.
    pub id: OfferId,
    /// The decoded, verified offer.
    pub offer: Offer,
    /// The signed envelope, to forward as received.
    pub signed: Signed<Offer>,
    /// The connection it first came through (`None`: this node's own).
    pub source: Source,
}

/// A query over the book; every field narrows it.
#[derive(Debug, Clone, Default)]
pub struct OfferQuery {
    /// Only this tool.
    pub tool: Option<ToolName>,
    /// Only offers whose execution price per minute is at most this.
    pub max_exec_price: Option<Usdc>,
    /// Only this provider.
    pub provider: Option<NodeId>,
}

/// The book. Not thread-safe by itself; the node's event loop owns it.
#[derive(Debug, Default)]
pub struct OfferBook {
    limits: OfferBookLimits,
    entries: HashMap<OfferId, BookEntry>,
    latest: HashMap<(NodeId, ToolName), OfferId>,
    per_provider: HashMap<NodeId, usize>,
    /// Expiry index: (expires_at, id), to drop the expired ones.
    by_expiry: BTreeMap<(Timestamp, OfferId), ()>,
    /// Per source: its offers by expiry, to count shares and evict fairly.
    by_source: HashMap<Source, std::collections::BTreeSet<(Timestamp, OfferId)>>,
    /// Offers replaced by a re-announcement of the same terms, until they expire.
    superseded: HashMap<OfferId, Superseded>,
    /// The same ids by provider and tool, so forgetting them costs what there is to forget
    /// (an offer from a new provider forgets nothing, and is admitted in constant time).
    superseded_by_key: HashMap<(NodeId, ToolName), Vec<OfferId>>,
}

/// An offer replaced by a newer one of the same provider, tool and terms.
#[derive(Debug, Clone)]
struct Superseded {
    key: (NodeId, ToolName),
    expires_at: Timestamp,
}

impl OfferBook {
    /// An empty book with these limits.
    pub fn new(limits: OfferBookLimits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    /// Decodes, verifies and admits an offer received as bytes through `source`.
    pub fn admit_bytes(
        &mut self,
        bytes: &[u8],
        now: Timestamp,
        source: Source,
    ) -> Result<Admission, OfferRejection> {
        let signed = Signed::<Offer>::from_bytes(bytes)?;
        self.admit_from(signed, now, source)
    }

    /// Verifies and admits a signed offer of this node's own.
    pub fn admit(
        &mut self,
        signed: Signed<Offer>,
        now: Timestamp,
    ) -> Result<Admission, OfferRejection> {
        self.admit_from(signed, now, None)
    }

    /// Verifies and admits a signed offer that came through `source`.
    pub fn admit_from(
        &mut self,
        signed: Signed<Offer>,
        now: Timestamp,
        source: Source,
    ) -> Result<Admission, OfferRejection> {
        let id = signed.offer_id();
        if self.entries.contains_key(&id) {
            return Ok(Admission::Duplicate(id));
        }
        let offer = signed.verify()?;
        if offer.is_expired(now) {
            return self.withdraw(&offer, id, now);
        }
        if offer.issued_at > now.saturating_add(self.limits.max_clock_skew) {
            return Err(OfferRejection::FromTheFuture {
                issued_at: offer.issued_at,
            });
        }
        let key = (offer.provider, offer.tool.clone());
        let replaced = match self.latest.get(&key) {
            Some(old) => {
                let current = &self.entries[old].offer;
                if (current.issued_at, *old) >= (offer.issued_at, id) {
                    return Err(OfferRejection::Stale);
                }
                Some(*old)
            }
            None => None,
        };
        let reannounced = replaced.filter(|old| same_terms(&self.entries[old].offer, &offer));
        match reannounced {
            Some(old) if self.superseded.len() < self.limits.capacity => {
                let expires_at = self.entries[&old].offer.expires_at;
                self.superseded.insert(
                    old,
                    Superseded {
                        key: key.clone(),
                        expires_at,
                    },
                );
                self.superseded_by_key
                    .entry(key.clone())
                    .or_default()
                    .push(old);
            }
            Some(_) => {}
            None => self.forget_superseded(&key),
        }
        if replaced.is_none() {
            let listed = self.per_provider.get(&offer.provider).copied().unwrap_or(0);
            if listed >= self.limits.per_provider {
                return Err(OfferRejection::ProviderFull(self.limits.per_provider));
            }
            if source.is_some() && self.share(&source) >= self.limits.per_source {
                return Err(OfferRejection::SourceFull(self.limits.per_source));
            }
            if self.entries.len() >= self.limits.capacity {
                self.evict_for(&source, offer.expires_at)?;
            }
        }
        // A newer offer keeps the place (and the source) of the one it replaces.
        let source = match replaced {
            Some(old) => {
                let kept = self.entries[&old].source;
                self.remove(&old);
                kept
            }
            None => source,
        };
        self.insert(BookEntry {
            id,
            offer,
            signed,
            source,
        });
        Ok(match replaced {
            Some(old) => Admission::Replaced { new: id, old },
            None => Admission::Added(id),
        })
    }

    /// An offer that expired moments ago withdraws the held offer of its provider and
    /// tool, if it is newer; an older or long-expired one is just expired.
    fn withdraw(
        &mut self,
        offer: &Offer,
        id: OfferId,
        now: Timestamp,
    ) -> Result<Admission, OfferRejection> {
        let expired = Err(OfferRejection::Expired {
            expires_at: offer.expires_at,
        });
        if now.since(offer.expires_at) > WITHDRAWAL_WINDOW {
            return expired;
        }
        let key = (offer.provider, offer.tool.clone());
        let held = self.latest.get(&key).copied();
        if let Some(held) = held {
            if (self.entries[&held].offer.issued_at, held) >= (offer.issued_at, id) {
                return expired;
            }
            self.remove(&held);
        }
        self.forget_superseded(&key);
        Ok(Admission::Withdrawn {
            withdrawal: id,
            removed: held,
        })
    }

    /// Drops every offer expired at `now`; returns their ids.
    pub fn expire(&mut self, now: Timestamp) -> Vec<OfferId> {
        let expired: Vec<OfferId> = self
            .by_expiry
            .keys()
            .take_while(|(expires_at, _)| *expires_at <= now)
            .map(|(_, id)| *id)
            .collect();
        for id in &expired {
            self.remove(id);
        }
        let gone: Vec<OfferId> = self
            .superseded
            .iter()
            .filter(|(_, s)| s.expires_at <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            if let Some(superseded) = self.superseded.remove(&id)
                && let Some(ids) = self.superseded_by_key.get_mut(&superseded.key)
            {
                ids.retain(|kept| *kept != id);
                if ids.is_empty() {
                    self.superseded_by_key.remove(&superseded.key);
                }
            }
        }
        self.debug_check();
        expired
    }

    /// Offers matching `query` at `now`, cheapest execution price first.
    pub fn query(&self, query: &OfferQuery, now: Timestamp) -> Vec<&BookEntry> {
        let mut found: Vec<&BookEntry> = self
            .entries
            .values()
            .filter(|e| !e.offer.is_expired(now))
            .filter(|e| query.tool.as_ref().is_none_or(|t| &e.offer.tool == t))
            .filter(|e| {
                query
                    .provider
                    .as_ref()
                    .is_none_or(|p| &e.offer.provider == p)
            })
            .filter(|e| {
                query
                    .max_exec_price
                    .is_none_or(|max| e.offer.pricing.exec_per_minute <= max)
            })
            .collect();
        found.sort_by_key(|e| {
            (
                e.offer.pricing.exec_per_minute,
                e.offer.pricing.session_per_minute,
                e.id,
            )
        });
        found
    }

    /// The live offers whose id is above `after`, at most `limit`, in ascending id
    /// order: one page of the book for a peer that syncs it (`ListBook`).
    pub fn page(&self, after: Option<OfferId>, now: Timestamp, limit: usize) -> Vec<Signed<Offer>> {
        let live = self
            .entries
            .iter()
            .filter(|(_, e)| !e.offer.is_expired(now))
            .map(|(id, e)| (*id, e));
        crate::paging::page_after(live, after, limit)
            .into_iter()
            .map(|(_, e)| e.signed.clone())
            .collect()
    }

    /// The offer with this id, if held.
    pub fn get(&self, id: &OfferId) -> Option<&BookEntry> {
        self.entries.get(id)
    }

    /// The offer to open for `id`: the offer itself, or, when a re-announcement of the
    /// same terms replaced it, the offer that did (until `id` expires).
    pub fn resolve(&self, id: &OfferId) -> Option<&BookEntry> {
        if let Some(entry) = self.entries.get(id) {
            return Some(entry);
        }
        let superseded = self.superseded.get(id)?;
        self.latest
            .get(&superseded.key)
            .and_then(|current| self.entries.get(current))
    }

    /// Forgets the replaced offers of `key`: its terms changed, or it was withdrawn.
    fn forget_superseded(&mut self, key: &(NodeId, ToolName)) {
        for id in self.superseded_by_key.remove(key).unwrap_or_default() {
            self.superseded.remove(&id);
        }
    }

    /// Number of offers held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the book is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many offers came through `source`.
    fn share(&self, source: &Source) -> usize {
        self.by_source.get(source).map_or(0, |s| s.len())
    }

    fn insert(&mut self, entry: BookEntry) {
        let key = (entry.offer.provider, entry.offer.tool.clone());
        *self.per_provider.entry(entry.offer.provider).or_default() += 1;
        self.by_expiry
            .insert((entry.offer.expires_at, entry.id), ());
        self.by_source
            .entry(entry.source)
            .or_default()
            .insert((entry.offer.expires_at, entry.id));
        self.latest.insert(key, entry.id);
        self.entries.insert(entry.id, entry);
        self.debug_check();
    }

    fn remove(&mut self, id: &OfferId) {
        let Some(entry) = self.entries.remove(id) else {
            return;
        };
        self.by_expiry.remove(&(entry.offer.expires_at, entry.id));
        if let Some(group) = self.by_source.get_mut(&entry.source) {
            group.remove(&(entry.offer.expires_at, entry.id));
            if group.is_empty() {
                self.by_source.remove(&entry.source);
            }
        }
        let key = (entry.offer.provider, entry.offer.tool);
        if self.latest.get(&key) == Some(id) {
            self.latest.remove(&key);
        }
        if let Some(count) = self.per_provider.get_mut(&entry.offer.provider) {
            *count -= 1;
            if *count == 0 {
                self.per_provider.remove(&entry.offer.provider);
            }
        }
        self.debug_check();
    }

    /// Makes room for an offer from `source` expiring at `expires_at`: evicts the
    /// soonest-expiring offer of the source holding the most offers. When that is the
    /// newcomer's own source, only an offer expiring sooner than the newcomer makes way;
    /// otherwise the newcomer is refused.
    fn evict_for(&mut self, source: &Source, expires_at: Timestamp) -> Result<(), OfferRejection> {
        let largest = self
            .by_source
            .iter()
            .max_by_key(|(s, group)| (group.len(), *s == source))
            .map(|(s, group)| (*s, group.first().copied()));
        match largest {
            Some((s, Some((soonest, id)))) if &s != source || soonest < expires_at => {
                self.remove(&id);
                Ok(())
            }
            _ => Err(OfferRejection::BookFull),
        }
    }

    fn debug_check(&self) {
        debug_assert!(self.superseded.len() <= self.limits.capacity);
        debug_assert_eq!(
            self.superseded.len(),
            self.superseded_by_key.values().map(Vec::len).sum::<usize>()
        );
        debug_assert_eq!(self.entries.len(), self.by_expiry.len());
        debug_assert_eq!(self.entries.len(), self.latest.len());
        debug_assert_eq!(
            self.entries.len(),
            self.per_provider.values().sum::<usize>()
        );
        debug_assert!(self.entries.len() <= self.limits.capacity);
        debug_assert_eq!(
            self.entries.len(),
            self.by_source.values().map(|g| g.len()).sum::<usize>()
        );
    }
}

/// Whether two offers make the same terms: everything but when they were issued and
/// when they expire.
fn same_terms(a: &Offer, b: &Offer) -> bool {
    let untimed = |o: &Offer| Offer {
        issued_at: Timestamp(0),
        expires_at: Timestamp(0),
        ..o.clone()
    };
    untimed(a) == untimed(b)
}

#[cfg(test)]
mod tests;
