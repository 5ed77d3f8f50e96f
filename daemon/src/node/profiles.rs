//! Provider profiles: this node's own, signed beside its offers and gossiped on the
//! profile topic, and peers' profiles arriving by gossip into the profile book.

use std::time::Duration;

use libp2p::{PeerId, gossipsub};
use orien_protocol::profile::{MAX_PROFILE_LIFETIME, MAX_PROFILE_TOOLS};
use orien_protocol::{Millis, PROFILES_TOPIC, ProviderProfile, Signed, ToolPrice};
use tracing::{debug, info, warn};

use crate::profile_book::ProfileAdmission;

use super::EventLoop;

/// What this software calls itself in a profile.
const SOFTWARE: &str = concat!("orien-node ", env!("CARGO_PKG_VERSION"));

/// How long after the last offer is published the profile follows (one profile for a
/// node publishing many offers at start).
pub(super) const PROFILE_DEBOUNCE: Duration = Duration::from_millis(200);

impl EventLoop {
    /// This node's profile for `lifetime`, from its current offers; `None` when it
    /// offers nothing.
    fn own_profile(&self, lifetime: Duration) -> Option<ProviderProfile> {
        let offers = self.own_offers.all();
        let payout = offers.first()?.1.payout;
        let mut tools: Vec<ToolPrice> = offers
            .iter()
            .map(|(_, offer)| ToolPrice {
                tool: offer.tool.clone(),
                pricing: offer.pricing,
            })
            .collect();
        tools.sort_by(|a, b| a.tool.cmp(&b.tool));
        tools.dedup_by(|a, b| a.tool == b.tool);
        tools.truncate(MAX_PROFILE_TOOLS);
        let id = self.key.node_id().to_string();
        let display_name = self.profile_text.display_name.clone().unwrap_or_else(|| {
            format!(
                "orien provider {}",
                id.get(id.len().saturating_sub(8)..).unwrap_or(&id)
            )
        });
        let now = self.clock.wall();
        Some(ProviderProfile {
            provider: self.key.node_id(),
            display_name,
            description: self.profile_text.description.clone(),
            payout,
            tools,
            software: SOFTWARE.into(),
            sessions_completed: self.sessions.as_ref().map_or(0, |s| s.completed_provided()),
            online_since: self.online_since,
            issued_at: now,
            expires_at: now.saturating_add(Millis::from_duration(lifetime)),
        })
    }

    /// Signs this node's profile, keeps it in its own book and gossips it.
    pub(super) fn publish_profile(&mut self) {
        let lifetime = self
            .offer_ttl
            .min(MAX_PROFILE_LIFETIME.to_duration())
            .max(Duration::from_millis(1));
        let Some(profile) = self.own_profile(lifetime) else {
            return;
        };
        let signed = match self.key.sign(&profile) {
            Ok(signed) => signed,
            Err(e) => return warn!(error = %e, "cannot sign the profile"),
        };
        // What we sign is checked like a peer's profile before anyone sees it.
        if let Err(e) = self.profiles.admit(signed.clone(), self.clock.wall(), None) {
            return warn!(error = %e, "the node's own profile is invalid; not publishing it");
        }
        self.gossip_profile(&signed);
        self.profile_completed = profile.sessions_completed;
        debug!(tools = profile.tools.len(), "profile published");
    }

    /// Publishes the profile again (debounced) when a session completed since the last
    /// one, so its counter follows within seconds.
    pub(super) fn refresh_profile(&mut self) {
        let completed = self.sessions.as_ref().map_or(0, |s| s.completed_provided());
        if completed != self.profile_completed && !self.own_offers.is_empty() {
            self.profile_due
                .get_or_insert(tokio::time::Instant::now() + PROFILE_DEBOUNCE);
        }
    }

    /// Gossips a profile that has already expired, newer than the live one: books
    /// forget this node's profile.
    pub(super) fn withdraw_profile(&mut self) {
        if self.profiles.get(&self.key.node_id()).is_none() {
            return;
        }
        let Some(mut profile) = self.own_profile(Duration::from_millis(1)) else {
            return;
        };
        if let Some(held) = self.profiles.get(&self.key.node_id()) {
            // Newer than the live one even within the same millisecond.
            profile.issued_at = profile
                .issued_at
                .max(held.profile.issued_at.saturating_add(Millis(1)));
        }
        profile.expires_at = profile.issued_at.saturating_add(Millis(1));
        if let Ok(signed) = self.key.sign(&profile) {
            let _ = self.profiles.admit(
                signed.clone(),
                profile.expires_at.saturating_add(Millis(1)),
                None,
            );
            self.gossip_profile(&signed);
            info!("profile withdrawn");
        }
    }

    pub(super) fn gossip_profile(&mut self, signed: &Signed<ProviderProfile>) {
        let bytes = match signed.to_bytes() {
            Ok(bytes) => bytes,
            Err(e) => return warn!(error = %e, "cannot encode the profile"),
        };
        let topic = gossipsub::IdentTopic::new(PROFILES_TOPIC);
        match self.swarm.behaviour_mut().gossipsub.publish(topic, bytes) {
            Ok(_) | Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => {}
            Err(gossipsub::PublishError::Duplicate) => {}
            Err(e) => warn!(error = %e, "profile gossip failed"),
        }
    }

    /// A profile arriving by gossip: admitted to the book, or the sender penalised when
    /// it broke the protocol.
    pub(super) fn on_profile_gossip(
        &mut self,
        source: PeerId,
        id: gossipsub::MessageId,
        message: &gossipsub::Message,
    ) {
        let acceptance = match self.profiles.admit_bytes(
            &message.data,
            self.clock.wall(),
            Some(source),
        ) {
            Ok(ProfileAdmission::Stored(provider) | ProfileAdmission::Withdrawn(provider)) => {
                // The publisher of a profile must be the provider it names.
                match message.source {
                    Some(publisher) if provider.to_peer_id() != publisher => {
                        warn!(peer = %source, %publisher, "profile published by someone other than its provider");
                        gossipsub::MessageAcceptance::Reject
                    }
                    _ => gossipsub::MessageAcceptance::Accept,
                }
            }
            Err(rejection) if rejection.is_misbehaviour() => {
                warn!(peer = %source, %rejection, "invalid profile; penalising the sender");
                gossipsub::MessageAcceptance::Reject
            }
            Err(rejection) => {
                debug!(peer = %source, %rejection, "profile ignored");
                gossipsub::MessageAcceptance::Ignore
            }
        };
        self.swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(&id, &source, acceptance);
    }
}
