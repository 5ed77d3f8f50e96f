//! Attestations on gossip: this node's own, published every
//! [`NodeConfig::attestation_interval`](super::NodeConfig) once it has rented and paid,
//! and other renters' arriving into its reputation; and pings of providers, for their
//! uptime.

use std::time::Duration;

use libp2p::{PeerId, gossipsub, ping};
use orien_protocol::{ATTESTATIONS_TOPIC, Attestation, NodeId, Signed};
use tracing::{Instrument, debug, warn};

use super::{Command, EventLoop};

/// Attestations verified per second at most (each costs up to 17 signature checks);
/// beyond it they are ignored, not penalised.
const VERIFY_PER_SECOND: u32 = 50;

/// A budget of attestation verifications, refilled every second.
#[derive(Debug)]
pub(super) struct VerifyBudget {
    left: u32,
    refilled: tokio::time::Instant,
}

impl Default for VerifyBudget {
    fn default() -> Self {
        Self {
            left: VERIFY_PER_SECOND,
            refilled: tokio::time::Instant::now(),
        }
    }
}

impl VerifyBudget {
    fn take(&mut self) -> bool {
        let now = tokio::time::Instant::now();
        if now.duration_since(self.refilled) >= Duration::from_secs(1) {
            self.left = VERIFY_PER_SECOND;
            self.refilled = now;
        }
        let ok = self.left > 0;
        self.left = self.left.saturating_sub(1);
        ok
    }
}

impl EventLoop {
    /// Builds, signs and gossips this node's attestation off the loop (it reads the
    /// ledger); nothing when it has no sessions, nothing to say or no payment.
    pub(super) fn attest(&mut self) {
        let Some(sessions) = self.sessions.clone() else {
            return;
        };
        let (key, commands) = (self.key.clone(), self.commands.clone());
        tokio::spawn(
            async move {
                let Some(attestation) = sessions.attestation().await else {
                    return;
                };
                match key.sign(&attestation) {
                    Ok(signed) => {
                        let _ = commands.send(Command::Attest(signed)).await;
                    }
                    Err(e) => warn!(error = %e, "cannot sign the attestation"),
                }
            }
            .in_current_span(),
        );
    }

    /// Gossips this node's signed attestation.
    pub(super) fn gossip_attestation(&mut self, signed: &Signed<Attestation>) {
        let bytes = match signed.to_bytes() {
            Ok(bytes) => bytes,
            Err(e) => return warn!(error = %e, "cannot encode the attestation"),
        };
        let topic = gossipsub::IdentTopic::new(ATTESTATIONS_TOPIC);
        match self.swarm.behaviour_mut().gossipsub.publish(topic, bytes) {
            Ok(_) => debug!("attestation published"),
            Err(gossipsub::PublishError::NoPeersSubscribedToTopic)
            | Err(gossipsub::PublishError::Duplicate) => {}
            Err(e) => warn!(error = %e, "attestation gossip failed"),
        }
    }

    /// Another renter's attestation arriving by gossip: weighed into the reputation, or
    /// its sender penalised when it broke the protocol.
    pub(super) fn on_attestation_gossip(
        &mut self,
        source: PeerId,
        id: gossipsub::MessageId,
        message: &gossipsub::Message,
    ) {
        let acceptance = if self.attestation_budget.take() {
            self.admit_attestation(source, message)
        } else {
            debug!(peer = %source, "attestation budget spent this second; ignored");
            gossipsub::MessageAcceptance::Ignore
        };
        self.swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(&id, &source, acceptance);
    }

    fn admit_attestation(
        &mut self,
        source: PeerId,
        message: &gossipsub::Message,
    ) -> gossipsub::MessageAcceptance {
        use gossipsub::MessageAcceptance::{Accept, Ignore, Reject};
        let signed = match Signed::<Attestation>::from_bytes(&message.data) {
            Ok(signed) => signed,
            Err(e) => {
                warn!(peer = %source, error = %e, "undecodable attestation; penalising the sender");
                return Reject;
            }
        };
        // The publisher of an attestation must be its attester.
        if let Some(publisher) = message.source
            && signed.signer().to_peer_id() != publisher
        {
            warn!(peer = %source, %publisher, "attestation published by someone other than its attester");
            return Reject;
        }
        let Some(sessions) = &self.sessions else {
            // Nothing to weigh it against here; pass it on when it verifies.
            return match signed.verify() {
                Ok(attestation) if attestation.verified_payments().is_ok() => Accept,
                _ => Reject,
            };
        };
        match sessions.reputation().admit_attestation(
            &signed,
            self.clock.wall(),
            &self.key.node_id(),
        ) {
            Ok(attester) => {
                debug!(%attester, "attestation admitted");
                Accept
            }
            Err(rejection) if rejection.is_misbehaviour() => {
                warn!(peer = %source, %rejection, "invalid attestation; penalising the sender");
                Reject
            }
            Err(rejection) => {
                debug!(peer = %source, %rejection, "attestation ignored");
                Ignore
            }
        }
    }

    /// A ping's outcome: counted for the provider's uptime when the peer is a provider
    /// this node knows (by its profile).
    pub(super) fn on_ping(&mut self, event: &ping::Event) {
        let Some(sessions) = &self.sessions else {
            return;
        };
        let Ok(provider) = NodeId::from_peer_id(&event.peer) else {
            return;
        };
        if self.profiles.get(&provider).is_none() {
            return;
        }
        sessions
            .reputation()
            .record_ping(provider, event.result.is_ok());
    }
}
