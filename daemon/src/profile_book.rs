//! The profile book: the newest valid, unexpired [`ProviderProfile`] of every provider
//! this node has heard of, beside the offer book.
//!
//! Profiles arrive as untrusted bytes (gossip). The book decodes them size-limited,
//! verifies the provider's signature, drops expired ones and ones from the future beyond
//! clock skew, and keeps one profile per provider, the newest. Keys are free, so like the
//! offer book it counts every profile against the connection it came through: a full
//! book makes room by evicting from the source holding the most, so a flood through one
//! connection displaces only itself.

use std::collections::HashMap;

use orien_protocol::{
    DecodeError, Millis, NodeId, ProviderProfile, Signed, Timestamp, ToolName, Usdc, VerifyError,
};

use crate::offer_book::{Source, WITHDRAWAL_WINDOW};

/// Most profiles held.
pub const PROFILE_CAPACITY: usize = 4_096;
/// How far in the future `issued_at` may be (clock skew tolerated).
pub const MAX_CLOCK_SKEW: Millis = Millis(5 * 60 * 1000);

/// Why a profile was not taken into the book.
#[derive(Debug, thiserror::Error)]
pub enum ProfileRejection {
    /// The bytes are not a signed profile (too large, malformed, invalid fields).
    #[error("undecodable profile: {0}")]
    Decode(#[from] DecodeError),
    /// The signature is wrong or not the provider's.
    #[error("profile signature: {0}")]
    Signature(#[from] VerifyError),
    /// The profile has expired.
    #[error("profile expired at {expires_at}")]
    Expired {
        /// When it expired.
        expires_at: Timestamp,
    },
    /// Issued further in the future than clock skew explains.
    #[error("profile issued at {issued_at}, in the future")]
    FromTheFuture {
        /// The claimed issue time.
        issued_at: Timestamp,
    },
    /// The book holds a profile of the provider at least as new.
    #[error("an equal or newer profile of the provider is known")]
    Stale,
    /// The book is full of profiles from sources holding no more than this one.
    #[error("the profile book is full")]
    Full,
}

impl ProfileRejection {
    /// Whether the sender broke the protocol (as opposed to sending something old).
    pub fn is_misbehaviour(&self) -> bool {
        matches!(
            self,
            Self::Decode(_) | Self::Signature(_) | Self::FromTheFuture { .. }
        )
    }
}

/// What admitting a profile did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileAdmission {
    /// The provider's profile is now this one.
    Stored(NodeId),
    /// A newer profile that has already expired: the provider withdrew, and the book
    /// forgot its profile (forward it, so others forget it too).
    Withdrawn(NodeId),
}

/// A profile in the book.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileEntry {
    /// The verified profile.
    pub profile: ProviderProfile,
    /// As signed, to forward.
    pub signed: Signed<ProviderProfile>,
    /// The connection it came through (`None`: this node's own).
    source: Source,
}

/// How [`ProfileBook::query`] sorts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ProfileSort {
    /// Longest uptime first.
    #[default]
    Uptime,
    /// Cheapest first (of the tool filtered by, else its cheapest tool's highest
    /// per-minute price).
    Price,
    /// Most completed sessions first.
    Sessions,
    /// By display name.
    Name,
}

/// Which profiles to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfileQuery {
    /// Only providers selling this tool.
    pub tool: Option<ToolName>,
    /// Only providers whose price per minute (of `tool`, or of every tool) is at most
    /// this, session time and execution alike.
    pub max_price: Option<Usdc>,
    /// Only providers up at least this long when they signed.
    pub min_uptime: Option<Millis>,
    /// Order.
    pub sort: ProfileSort,
    /// Skip this many.
    pub offset: usize,
    /// At most this many.
    pub limit: usize,
}

/// One page of [`ProfileBook::query`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfilePage {
    /// The profiles.
    pub profiles: Vec<ProfileEntry>,
    /// How many match in all.
    pub total: usize,
}

/// The book.
#[derive(Debug, Default)]
pub struct ProfileBook {
    entries: HashMap<NodeId, ProfileEntry>,
    per_source: HashMap<Source, usize>,
}

impl ProfileBook {
    /// Decodes, verifies and admits a profile received from `source`.
    pub fn admit_bytes(
        &mut self,
        bytes: &[u8],
        now: Timestamp,
        source: Source,
    ) -> Result<ProfileAdmission, ProfileRejection> {
        let signed = orien_protocol::wire::decode::<Signed<ProviderProfile>>(bytes)?;
        self.admit(signed, now, source)
    }

    /// Verifies and admits a signed profile.
    pub fn admit(
        &mut self,
        signed: Signed<ProviderProfile>,
        now: Timestamp,
        source: Source,
    ) -> Result<ProfileAdmission, ProfileRejection> {
        let profile = signed.verify()?;
        let provider = profile.provider;
        if profile.is_expired(now) {
            let recent = now.since(profile.expires_at) < WITHDRAWAL_WINDOW;
            let supersedes = self
                .entries
                .get(&provider)
                .is_some_and(|held| held.profile.issued_at < profile.issued_at);
            if recent && supersedes {
                self.remove(&provider);
                return Ok(ProfileAdmission::Withdrawn(provider));
            }
            return Err(ProfileRejection::Expired {
                expires_at: profile.expires_at,
            });
        }
        if profile.issued_at > now.saturating_add(MAX_CLOCK_SKEW) {
            return Err(ProfileRejection::FromTheFuture {
                issued_at: profile.issued_at,
            });
        }
        if self
            .entries
            .get(&provider)
            .is_some_and(|held| held.profile.issued_at >= profile.issued_at)
        {
            return Err(ProfileRejection::Stale);
        }
        if !self.entries.contains_key(&provider) && self.entries.len() >= PROFILE_CAPACITY {
            self.make_room(source)?;
        }
        self.remove(&provider);
        *self.per_source.entry(source).or_default() += 1;
        self.entries.insert(
            provider,
            ProfileEntry {
                profile,
                signed,
                source,
            },
        );
        Ok(ProfileAdmission::Stored(provider))
    }

    /// Evicts one profile of the source holding the most, if it holds more than
    /// `source` would after this one.
    fn make_room(&mut self, source: Source) -> Result<(), ProfileRejection> {
        let mine = self.per_source.get(&source).copied().unwrap_or(0) + 1;
        let (fullest, held) = self
            .per_source
            .iter()
            .filter(|(s, _)| s.is_some())
            .max_by_key(|(_, n)| **n)
            .map(|(s, n)| (*s, *n))
            .ok_or(ProfileRejection::Full)?;
        if held < mine && fullest != source {
            return Err(ProfileRejection::Full);
        }
        let victim = self
            .entries
            .iter()
            .filter(|(_, e)| e.source == fullest)
            .min_by_key(|(_, e)| e.profile.expires_at)
            .map(|(id, _)| *id)
            .ok_or(ProfileRejection::Full)?;
        self.remove(&victim);
        Ok(())
    }

    fn remove(&mut self, provider: &NodeId) -> Option<ProfileEntry> {
        let entry = self.entries.remove(provider)?;
        if let Some(n) = self.per_source.get_mut(&entry.source) {
            *n -= 1;
            if *n == 0 {
                self.per_source.remove(&entry.source);
            }
        }
        Some(entry)
    }

    /// Drops expired profiles; returns how many.
    pub fn expire(&mut self, now: Timestamp) -> usize {
        let expired: Vec<NodeId> = self
            .entries
            .iter()
            .filter(|(_, e)| e.profile.is_expired(now))
            .map(|(id, _)| *id)
            .collect();
        for id in &expired {
            self.remove(id);
        }
        expired.len()
    }

    /// A provider's profile.
    pub fn get(&self, provider: &NodeId) -> Option<&ProfileEntry> {
        self.entries.get(provider)
    }

    /// The unexpired profiles matching `query`, sorted, one page of them.
    pub fn query(&self, query: &ProfileQuery, now: Timestamp) -> ProfilePage {
        let price_of = |p: &ProviderProfile| match &query.tool {
            Some(tool) => p
                .price_of(tool)
                .map(|pr| pr.session_per_minute.max(pr.exec_per_minute)),
            None => Some(p.most_expensive()),
        };
        let mut matching: Vec<&ProfileEntry> = self
            .entries
            .values()
            .filter(|e| !e.profile.is_expired(now))
            .filter(|e| {
                query
                    .tool
                    .as_ref()
                    .is_none_or(|t| e.profile.price_of(t).is_some())
            })
            .filter(|e| {
                query
                    .max_price
                    .is_none_or(|max| price_of(&e.profile).is_some_and(|p| p <= max))
            })
            .filter(|e| query.min_uptime.is_none_or(|m| e.profile.uptime() >= m))
            .collect();
        // Ties break on the provider id, so pages are stable.
        matching.sort_by(|a, b| {
            let (a, b) = (&a.profile, &b.profile);
            let order = match query.sort {
                ProfileSort::Uptime => b.uptime().cmp(&a.uptime()),
                ProfileSort::Price => price_of(a).cmp(&price_of(b)),
                ProfileSort::Sessions => b.sessions_completed.cmp(&a.sessions_completed),
                ProfileSort::Name => a.display_name.cmp(&b.display_name),
            };
            order.then_with(|| a.provider.cmp(&b.provider))
        });
        let total = matching.len();
        let profiles = matching
            .into_iter()
            .skip(query.offset)
            .take(query.limit)
            .cloned()
            .collect();
        ProfilePage { profiles, total }
    }

    /// The live profiles of providers whose id is above `after`, at most `limit`, in
    /// ascending provider order: one page of the book for a peer that syncs it
    /// (`ListProfiles`).
    pub fn page(
        &self,
        after: Option<NodeId>,
        now: Timestamp,
        limit: usize,
    ) -> Vec<Signed<ProviderProfile>> {
        let live = self
            .entries
            .iter()
            .filter(|(_, e)| !e.profile.is_expired(now))
            .map(|(id, e)| (*id, e));
        crate::paging::page_after(live, after, limit)
            .into_iter()
            .map(|(_, e)| e.signed.clone())
            .collect()
    }

    /// How many profiles the book holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use orien_protocol::{EvmAddress, NodeKey, Pricing, ToolPrice};

    use super::*;

    const NOW: Timestamp = Timestamp(1_800_000_000_000);

    fn profile(
        key: &NodeKey,
        name: &str,
        up_ms: u64,
        price: u64,
        tools: &[&str],
    ) -> Signed<ProviderProfile> {
        let mut tools: Vec<ToolPrice> = tools
            .iter()
            .map(|t| ToolPrice {
                tool: ToolName::new(*t).unwrap(),
                pricing: Pricing {
                    session_per_minute: Usdc::from_micros(price / 10),
                    exec_per_minute: Usdc::from_micros(price),
                    artefact_per_gib: Usdc::ZERO,
                },
            })
            .collect();
        tools.sort_by(|a, b| a.tool.cmp(&b.tool));
        key.sign(&ProviderProfile {
            provider: key.node_id(),
            display_name: name.into(),
            description: String::new(),
            payout: EvmAddress::from_bytes([0x33; 20]),
            tools,
            software: "test".into(),
            sessions_completed: up_ms / 1000,
            online_since: Timestamp(NOW.0 - up_ms),
            issued_at: NOW,
            expires_at: NOW.saturating_add(Millis(3_600_000)),
        })
        .unwrap()
    }

    #[test]
    fn a_book_pages_its_live_profiles_in_provider_order() {
        let mut book = ProfileBook::default();
        let keys: Vec<NodeKey> = (0..5).map(|_| NodeKey::generate()).collect();
        for key in &keys {
            book.admit(profile(key, "p", 1_000, 10, &["wc"]), NOW, None)
                .unwrap();
        }
        let mut ids: Vec<NodeId> = keys.iter().map(NodeKey::node_id).collect();
        ids.sort_unstable();
        let first = book.page(None, NOW, 3);
        let rest = book.page(Some(first[2].verify().unwrap().provider), NOW, 3);
        let paged: Vec<NodeId> = first
            .iter()
            .chain(&rest)
            .map(|s| s.verify().unwrap().provider)
            .collect();
        assert_eq!(paged, ids);
        let expired = NOW.saturating_add(Millis(3_600_001));
        assert!(
            book.page(None, expired, 3).is_empty(),
            "expired profiles stay out"
        );
    }

    fn all() -> ProfileQuery {
        ProfileQuery {
            limit: 100,
            ..ProfileQuery::default()
        }
    }

    fn names(page: &ProfilePage) -> Vec<&str> {
        page.profiles
            .iter()
            .map(|e| e.profile.display_name.as_str())
            .collect()
    }

    #[test]
    fn the_newest_profile_of_a_provider_stands_and_an_old_one_is_stale() {
        let mut book = ProfileBook::default();
        let key = NodeKey::generate();
        book.admit(profile(&key, "first", 1_000, 10, &["wc"]), NOW, None)
            .unwrap();
        let mut newer = profile(&key, "second", 2_000, 10, &["wc"])
            .verify()
            .unwrap();
        newer.issued_at = NOW.saturating_add(Millis(1));
        book.admit(key.sign(&newer).unwrap(), NOW, None).unwrap();
        assert!(matches!(
            book.admit(profile(&key, "first", 1_000, 10, &["wc"]), NOW, None),
            Err(ProfileRejection::Stale)
        ));
        assert_eq!(book.len(), 1);
        assert_eq!(
            book.get(&key.node_id()).unwrap().profile.display_name,
            "second"
        );
    }

    #[test]
    fn a_newer_profile_that_has_expired_withdraws_the_provider() {
        let mut book = ProfileBook::default();
        let key = NodeKey::generate();
        book.admit(profile(&key, "p", 1_000, 10, &["wc"]), NOW, None)
            .unwrap();
        let mut gone = profile(&key, "p", 1_000, 10, &["wc"]).verify().unwrap();
        gone.issued_at = NOW.saturating_add(Millis(1));
        gone.expires_at = NOW.saturating_add(Millis(2));
        let later = NOW.saturating_add(Millis(10));
        assert_eq!(
            book.admit(key.sign(&gone).unwrap(), later, None).unwrap(),
            ProfileAdmission::Withdrawn(key.node_id())
        );
        assert!(book.is_empty());
        assert!(matches!(
            book.admit(key.sign(&gone).unwrap(), later, None),
            Err(ProfileRejection::Expired { .. })
        ));
    }

    #[test]
    fn forged_expired_and_future_profiles_are_refused_and_named() {
        let mut book = ProfileBook::default();
        let (key, other) = (NodeKey::generate(), NodeKey::generate());
        let mut forged = profile(&key, "p", 1, 1, &["wc"]).verify().unwrap();
        forged.provider = other.node_id();
        let forged = key.sign(&forged).unwrap();
        assert!(book.admit(forged, NOW, None).unwrap_err().is_misbehaviour());
        let expired = book
            .admit(
                profile(&key, "p", 1, 1, &["wc"]),
                NOW.saturating_add(Millis(3_600_000)),
                None,
            )
            .unwrap_err();
        assert!(matches!(expired, ProfileRejection::Expired { .. }) && !expired.is_misbehaviour());
        let future = book
            .admit(
                profile(&key, "p", 1, 1, &["wc"]),
                Timestamp(NOW.0 - 600_000),
                None,
            )
            .unwrap_err();
        assert!(future.is_misbehaviour());
        assert!(
            book.admit_bytes(b"garbage", NOW, None)
                .unwrap_err()
                .is_misbehaviour()
        );
        assert!(book.is_empty());
    }

    #[test]
    fn queries_filter_by_tool_price_and_uptime_sort_and_page() {
        let mut book = ProfileBook::default();
        let keys: Vec<NodeKey> = (0..4).map(|_| NodeKey::generate()).collect();
        book.admit(
            profile(&keys[0], "a", 60_000, 300, &["grep", "wc"]),
            NOW,
            None,
        )
        .unwrap();
        book.admit(profile(&keys[1], "b", 3_600_000, 100, &["wc"]), NOW, None)
            .unwrap();
        book.admit(profile(&keys[2], "c", 1_000, 200, &["sed"]), NOW, None)
            .unwrap();
        book.admit(profile(&keys[3], "d", 7_200_000, 900, &["wc"]), NOW, None)
            .unwrap();
        assert_eq!(
            names(&book.query(&all(), NOW)),
            ["d", "b", "a", "c"],
            "longest uptime first"
        );
        let wc = ProfileQuery {
            tool: Some(ToolName::new("wc").unwrap()),
            sort: ProfileSort::Price,
            ..all()
        };
        assert_eq!(names(&book.query(&wc, NOW)), ["b", "a", "d"]);
        let cheap = ProfileQuery {
            max_price: Some(Usdc::from_micros(300)),
            ..wc.clone()
        };
        assert_eq!(names(&book.query(&cheap, NOW)), ["b", "a"]);
        let steady = ProfileQuery {
            min_uptime: Some(Millis(3_600_000)),
            sort: ProfileSort::Name,
            ..all()
        };
        assert_eq!(names(&book.query(&steady, NOW)), ["b", "d"]);
        let page = book.query(
            &ProfileQuery {
                offset: 1,
                limit: 2,
                sort: ProfileSort::Sessions,
                ..all()
            },
            NOW,
        );
        assert_eq!((names(&page), page.total), (vec!["b", "a"], 4));
    }

    #[test]
    fn a_flood_through_one_connection_displaces_only_itself() {
        let mut book = ProfileBook::default();
        let (honest, flood) = (
            Some(libp2p::PeerId::random()),
            Some(libp2p::PeerId::random()),
        );
        let kept = NodeKey::generate();
        book.admit(profile(&kept, "honest", 1, 1, &["wc"]), NOW, honest)
            .unwrap();
        for _ in 0..PROFILE_CAPACITY + 50 {
            let _ = book.admit(
                profile(&NodeKey::generate(), "sybil", 1, 1, &["wc"]),
                NOW,
                flood,
            );
        }
        assert_eq!(book.len(), PROFILE_CAPACITY);
        assert!(
            book.get(&kept.node_id()).is_some(),
            "the honest profile stays"
        );
        // A second honest source still gets in: the flood makes room.
        let late = NodeKey::generate();
        book.admit(profile(&late, "late", 1, 1, &["wc"]), NOW, honest)
            .unwrap();
        assert!(book.get(&late.node_id()).is_some());
    }
}
