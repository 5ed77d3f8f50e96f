//! The offers this node publishes: signing, gossip, provider records, re-announcement
//! and withdrawal, and the listing a peer asks for.

use std::time::Duration;

use libp2p::gossipsub;
use libp2p::kad::RecordKey;
use orien_protocol::{
    Millis, OFFERS_TOPIC, Offer, OfferId, RpcErrorCode, SessionResponse, Signed, ToolName,
    rpc::MAX_OFFERS_PER_RESPONSE,
};
use tracing::{debug, info, warn};

use super::EventLoop;
use super::config::{NodeError, OfferSpec};

impl EventLoop {
    fn sign_offer(&self, spec: &OfferSpec, lifetime: Duration) -> Result<Signed<Offer>, NodeError> {
        // A node that serves sessions keeps their artefacts as its sessions' settings say.
        let keep_artefacts = self
            .sessions
            .as_ref()
            .map_or(Millis::ZERO, |s| s.config().keep_artefacts);
        spec.sign(&self.key, self.clock.wall(), lifetime, keep_artefacts)
            .map_err(|e| NodeError::InvalidOffer {
                tool: spec.tool.clone(),
                reason: e.to_string(),
            })
    }

    /// Signs, gossips and (re)stores the provider record of an offer.
    pub(super) fn publish(&mut self, spec: OfferSpec) -> Result<OfferId, NodeError> {
        self.announce_offer(spec, true)
    }

    /// Signs and gossips an offer; `provide` also (re)stores its provider record in the
    /// DHT, a query that dials up to twenty peers near the tool's key.
    fn announce_offer(&mut self, spec: OfferSpec, provide: bool) -> Result<OfferId, NodeError> {
        let signed = self.sign_offer(&spec, self.offer_ttl)?;
        let id = signed.offer_id();
        let tool = spec.tool.clone();
        // What we sign is checked like a peer's offer before anyone sees it.
        let offer = signed.verify().map_err(|e| NodeError::InvalidOffer {
            tool: tool.clone(),
            reason: e.to_string(),
        })?;
        // Our own offers are in our book too, so local queries see them.
        let _ = self.book.admit(signed.clone(), self.clock.wall());
        self.gossip(&signed);
        if provide
            && let Err(e) = self
                .swarm
                .behaviour_mut()
                .kad
                .start_providing(RecordKey::new(&tool.kademlia_key()))
        {
            warn!(%tool, error = %e, "cannot store provider record");
        }
        self.metrics.offers_published.inc();
        self.own_offers
            .announce(spec, signed, offer, self.clock.wall());
        info!(%tool, offer = %id, "offer published");
        // The profile follows the offers it summarises, once for a burst of them.
        self.profile_due
            .get_or_insert(tokio::time::Instant::now() + super::profiles::PROFILE_DEBOUNCE);
        Ok(id)
    }

    pub(super) fn reannounce(&mut self) {
        for spec in self.own_offers.specs() {
            if let Err(e) = self.publish(spec) {
                warn!(error = %e, "cannot re-announce offer");
            }
        }
    }

    pub(super) fn withdraw_all(&mut self) {
        self.withdraw_profile();
        self.profile_due = None;
        for spec in self.own_offers.withdraw_all() {
            let tool = spec.tool.clone();
            // A newer offer that has already expired supersedes the live one everywhere.
            match self.sign_offer(&spec, Duration::from_millis(1)) {
                Ok(withdrawal) => {
                    let _ = self.book.admit(
                        withdrawal.clone(),
                        self.clock.wall().saturating_add(Millis(1)),
                    );
                    self.gossip(&withdrawal);
                }
                Err(e) => warn!(%tool, error = %e, "cannot sign withdrawal"),
            }
            self.swarm
                .behaviour_mut()
                .kad
                .stop_providing(&RecordKey::new(&tool.kademlia_key()));
            info!(%tool, "offer withdrawn");
        }
    }

    pub(super) fn gossip(&mut self, signed: &Signed<Offer>) {
        let bytes = match signed.to_bytes() {
            Ok(bytes) => bytes,
            Err(e) => return warn!(error = %e, "cannot encode offer"),
        };
        let topic = gossipsub::IdentTopic::new(OFFERS_TOPIC);
        match self.swarm.behaviour_mut().gossipsub.publish(topic, bytes) {
            Ok(_) => {}
            // Nobody to tell yet: gossiped again when the first peer joins the topic.
            Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => debug!("no gossip peers yet"),
            // Gossiped again as it was: the network has it.
            Err(gossipsub::PublishError::Duplicate) => debug!("offer gossiped already"),
            Err(e) => warn!(error = %e, "offer gossip failed"),
        }
    }

    pub(super) fn list_offers(&self, tool: Option<ToolName>) -> SessionResponse {
        let offers = self
            .own_offers
            .listing(tool.as_ref(), MAX_OFFERS_PER_RESPONSE);
        if offers.is_empty() && tool.is_some() {
            return SessionResponse::Error {
                code: RpcErrorCode::BadRequest,
                detail: "no such tool offered".into(),
            };
        }
        SessionResponse::Offers(offers)
    }
}
