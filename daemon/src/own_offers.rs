//! The offers this node publishes, in one place: what the provider asked to offer per
//! tool ([`OfferSpec`]), the signed offer currently announced for it, and every offer
//! it signed that has not expired yet, by id — a renter may open a session on any of
//! them. The node's task writes it (publish, re-announce, withdraw); the session layer
//! and the API read it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use orien_protocol::{
    EncodeError, EvmAddress, ImageDigest, Millis, NodeKey, Offer, OfferId, Pricing, ResourceLimits,
    Signed, Timestamp, ToolName,
};

/// What a provider offers for one tool; the node adds identity, issue and expiry times
/// and signs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferSpec {
    /// The tool.
    pub tool: ToolName,
    /// Its version.
    pub version: String,
    /// What it does.
    pub description: String,
    /// Its image.
    pub image_digest: ImageDigest,
    /// JSON Schema of its arguments, as text.
    pub args_schema: String,
    /// Its price.
    pub pricing: Pricing,
    /// Its limits.
    pub limits: ResourceLimits,
    /// Where the provider is paid.
    pub payout: EvmAddress,
}

impl From<Offer> for OfferSpec {
    /// The spec of an offer made by `orien_provider::Provider::offer` (provider, times
    /// and signature are the node's to set).
    fn from(offer: Offer) -> Self {
        Self {
            tool: offer.tool,
            version: offer.version,
            description: offer.description,
            image_digest: offer.image_digest,
            args_schema: offer.args_schema,
            pricing: offer.pricing,
            limits: offer.limits,
            payout: offer.payout,
        }
    }
}

impl OfferSpec {
    /// The offer `key` makes of this spec at `now`, valid for `lifetime` (at least 1 ms),
    /// its sessions' artefacts kept for `keep_artefacts` after their close (the node's
    /// setting, the same for all its tools).
    pub(crate) fn offer(
        &self,
        key: &NodeKey,
        now: Timestamp,
        lifetime: Duration,
        keep_artefacts: Millis,
    ) -> Offer {
        Offer {
            provider: key.node_id(),
            tool: self.tool.clone(),
            version: self.version.clone(),
            description: self.description.clone(),
            image_digest: self.image_digest,
            args_schema: self.args_schema.clone(),
            pricing: self.pricing,
            limits: self.limits,
            payout: self.payout,
            issued_at: now,
            expires_at: now.saturating_add(Millis::from_duration(lifetime).max(Millis(1))),
            keep_artefacts,
        }
    }

    /// That offer, signed.
    pub(crate) fn sign(
        &self,
        key: &NodeKey,
        now: Timestamp,
        lifetime: Duration,
        keep_artefacts: Millis,
    ) -> Result<Signed<Offer>, EncodeError> {
        key.sign(&self.offer(key, now, lifetime, keep_artefacts))
    }
}

/// The current offer of one tool.
#[derive(Debug, Clone)]
struct Announced {
    spec: OfferSpec,
    signed: Signed<Offer>,
}

#[derive(Debug, Default)]
struct State {
    /// What is announced now, per tool.
    announced: BTreeMap<ToolName, Announced>,
    /// Every signed offer that can still be opened, by id.
    openable: HashMap<OfferId, Offer>,
}

/// The node's own offers; cheap to clone (one shared state).
#[derive(Debug, Clone, Default)]
pub(crate) struct OwnOffers(Arc<RwLock<State>>);

impl OwnOffers {
    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.0.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records `signed` (made of `spec` and already checked: `offer` is its content) as
    /// the tool's current offer; offers that expired by `now` can no longer be opened.
    pub(crate) fn announce(
        &self,
        spec: OfferSpec,
        signed: Signed<Offer>,
        offer: Offer,
        now: Timestamp,
    ) {
        debug_assert_eq!(
            offer.tool, spec.tool,
            "an offer is announced for its own tool"
        );
        let mut state = self.write();
        state.openable.retain(|_, o| !o.is_expired(now));
        state.openable.insert(signed.offer_id(), offer);
        state
            .announced
            .insert(spec.tool.clone(), Announced { spec, signed });
    }

    /// The specs of every tool announced, to sign again.
    pub(crate) fn specs(&self) -> Vec<OfferSpec> {
        self.read()
            .announced
            .values()
            .map(|a| a.spec.clone())
            .collect()
    }

    /// Whether nothing is announced.
    pub(crate) fn is_empty(&self) -> bool {
        self.read().announced.is_empty()
    }

    /// Withdraws every tool: none can be opened any more. Returns their specs, to sign
    /// the withdrawals.
    pub(crate) fn withdraw_all(&self) -> Vec<OfferSpec> {
        let mut state = self.write();
        state.openable.clear();
        std::mem::take(&mut state.announced)
            .into_values()
            .map(|a| a.spec)
            .collect()
    }

    /// The current signed offers, of `tool` or of every tool, at most `limit`.
    pub(crate) fn listing(&self, tool: Option<&ToolName>, limit: usize) -> Vec<Signed<Offer>> {
        self.read()
            .announced
            .iter()
            .filter(|(name, _)| tool.is_none_or(|t| t == *name))
            .map(|(_, a)| a.signed.clone())
            .take(limit)
            .collect()
    }

    /// Every offer that can still be opened, by tool.
    pub(crate) fn all(&self) -> Vec<(OfferId, Offer)> {
        let mut offers: Vec<(OfferId, Offer)> = self
            .read()
            .openable
            .iter()
            .map(|(id, offer)| (*id, offer.clone()))
            .collect();
        offers.sort_by(|a, b| a.1.tool.cmp(&b.1.tool).then(a.0.cmp(&b.0)));
        offers
    }

    /// The offer `id`, if a session can still be opened on it.
    pub(crate) fn get(&self, id: &OfferId) -> Option<Offer> {
        self.read().openable.get(id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(tool: &str) -> OfferSpec {
        OfferSpec {
            tool: ToolName::new(tool).unwrap(),
            version: "1".into(),
            description: "test".into(),
            image_digest: ImageDigest::from_bytes([7; 32]),
            args_schema: "{}".into(),
            pricing: Pricing::default(),
            limits: ResourceLimits {
                max_exec: Millis(60_000),
                cpu_millis: 1_000,
                memory_bytes: 1 << 28,
                pids: 64,
                tmpfs_bytes: 1 << 24,
                output_bytes: 1 << 20,
                workspace_bytes: 1 << 28,
                concurrent_execs: 2,
            },
            payout: EvmAddress::from_bytes([1; 20]),
        }
    }

    fn announce(own: &OwnOffers, key: &NodeKey, spec: &OfferSpec, now: Timestamp) -> OfferId {
        let signed = spec
            .sign(key, now, Duration::from_secs(60), Millis::ZERO)
            .unwrap();
        let offer = signed.verify().unwrap();
        let id = signed.offer_id();
        own.announce(spec.clone(), signed, offer, now);
        id
    }

    #[test]
    fn a_reannounced_tool_keeps_its_earlier_offer_openable_until_it_expires() {
        let own = OwnOffers::default();
        let key = NodeKey::generate();
        let t0 = Timestamp(1_000_000);
        let first = announce(&own, &key, &spec("grep"), t0);
        let second = announce(&own, &key, &spec("grep"), t0.saturating_add(Millis(1)));
        assert_ne!(first, second);
        assert!(own.get(&first).is_some() && own.get(&second).is_some());
        assert_eq!(own.listing(None, 64).len(), 1, "one current offer per tool");
        assert_eq!(own.listing(None, 64)[0].offer_id(), second);
        let _ = announce(&own, &key, &spec("wc"), t0.saturating_add(Millis(61_000)));
        assert!(own.get(&first).is_none(), "expired offers are pruned");
        assert_eq!(own.specs().len(), 2);
    }

    #[test]
    fn withdrawn_offers_cannot_be_opened_or_listed() {
        let own = OwnOffers::default();
        let key = NodeKey::generate();
        let now = Timestamp(1_000_000);
        let id = announce(&own, &key, &spec("grep"), now);
        let grep = ToolName::new("grep").unwrap();
        assert_eq!(own.listing(Some(&grep), 64).len(), 1);
        assert_eq!(own.withdraw_all(), vec![spec("grep")]);
        assert!(own.is_empty());
        assert!(own.get(&id).is_none());
        assert!(own.listing(None, 64).is_empty());
        assert!(own.all().is_empty());
    }
}
