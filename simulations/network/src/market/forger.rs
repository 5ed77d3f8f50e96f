//! `hostile.forged_offers_per_minute`, played by an outside attacker: a bare libp2p
//! swarm (noise, yamux and gossipsub, on the market's links) that dials a few nodes and
//! publishes, at the scenario's rate, offers naming a real provider at half its price
//! but signed with the forger's own key. Gossipsub's envelope is valid (the forger signs
//! it); the offer is not (its signer is not its provider), so the first node that
//! checks it rejects it, forwards nothing, and scores the forger down until gossipsub
//! ignores it. Model mode counts forged offers without routing them; here they travel.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt as _;
use libp2p::core::ConnectedPoint;
use libp2p::core::upgrade::Version;
use libp2p::gossipsub::{self, IdentTopic, MessageAuthenticity, ValidationMode};
use libp2p::{Multiaddr, SwarmBuilder, Transport as _, noise, yamux};
use orien_daemon::OfferQuery;
use orien_protocol::{NodeKey, OFFERS_TOPIC, OfferId, Signed, Timestamp};
use orien_sim::Scenario;
use orien_sim::rng::Rng;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::nodes::Nodes;
use crate::link::LinkModel;

/// Nodes the forger dials.
pub(super) const FORGER_PEERS: usize = 4;

/// What the forger did.
#[derive(Debug, Default)]
pub(super) struct Forged {
    /// The forged offers' ids, as published.
    pub(super) ids: Mutex<HashSet<OfferId>>,
    /// Of the nodes it dialled, how many it was connected to when it first published.
    pub(super) peers: Mutex<usize>,
}

/// Starts the forger if the scenario has one: it publishes from now until `until`.
pub(super) fn start(
    scenario: &Scenario,
    seed: u64,
    nodes: &Nodes,
    until: Instant,
) -> anyhow::Result<Option<(Arc<Forged>, JoinHandle<()>)>> {
    let rate = scenario.hostile.forged_offers_per_minute.0;
    if rate <= 0.0 || nodes.providers == 0 {
        return Ok(None);
    }
    let key = NodeKey::from_secret_bytes(forger_secret(seed));
    let network = &scenario.network;
    // An attacker's uplink is not the market's to model.
    let links = LinkModel {
        uplink_mbps: None,
        ..super::nodes::links(scenario, seed)
    };
    let index = nodes.len();
    let connections = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let gossip = gossipsub::ConfigBuilder::default()
        .validation_mode(ValidationMode::Strict)
        .heartbeat_interval(Duration::from_secs_f64(network.heartbeat_ms.0 / 1_000.0))
        .build()?;
    let behaviour: gossipsub::Behaviour =
        gossipsub::Behaviour::new(MessageAuthenticity::Signed(key.to_libp2p_keypair()), gossip)
            .map_err(|e| anyhow::anyhow!("gossipsub: {e}"))?;
    let mut swarm = SwarmBuilder::with_existing_identity(key.to_libp2p_keypair())
        .with_tokio()
        .with_other_transport(move |id| {
            let noise = noise::Config::new(id)?;
            Ok(libp2p::core::transport::MemoryTransport::default()
                .map(move |conn, _: ConnectedPoint| {
                    let n = connections.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    links.end(conn, index, n)
                })
                .upgrade(Version::V1)
                .authenticate(noise)
                .multiplex(yamux::Config::default()))
        })?
        .with_behaviour(|_| behaviour)?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(24 * 3600)))
        .build();
    let topic = IdentTopic::new(OFFERS_TOPIC);
    swarm.behaviour_mut().subscribe(&topic)?;
    let mut draws = Rng::stream(seed, 17);
    let mut dialled: Vec<Multiaddr> = Vec::new();
    while dialled.len() < FORGER_PEERS.min(nodes.len()) {
        let address = nodes.addresses[draws.below(nodes.len())].clone();
        if !dialled.contains(&address) {
            swarm.dial(address.clone())?;
            dialled.push(address);
        }
    }
    // Offers to forge from: every provider's own, as its node published them.
    let victims: Vec<_> = (0..nodes.providers)
        .filter_map(|i| nodes.node(i).node().map(|n| (nodes.node(i).id, n)))
        .collect();
    let forged = Arc::new(Forged::default());
    let record = Arc::clone(&forged);
    let every = Duration::from_secs_f64(60.0 / rate);
    let task = tokio::spawn(async move {
        let mut next = Instant::now() + every;
        let mut count: u64 = 0;
        while next < until {
            tokio::select! {
                _ = swarm.select_next_some() => continue,
                () = tokio::time::sleep_until(next) => {}
            }
            next += every;
            let (victim, node) = &victims[draws.below(victims.len())];
            let query = OfferQuery {
                provider: Some(*victim),
                ..OfferQuery::default()
            };
            let Some(entry) = node
                .offers(query)
                .await
                .ok()
                .and_then(|o| o.into_iter().next())
            else {
                continue;
            };
            let mut offer = entry.offer;
            offer.pricing.session_per_minute = orien_protocol::Usdc::from_micros(
                (offer.pricing.session_per_minute.micros() / 2).max(1),
            );
            // Each forgery differs, or gossipsub would drop it as a duplicate.
            count += 1;
            offer.issued_at = Timestamp(offer.issued_at.0 + count);
            let Ok(signed) = Signed::sign(&offer, &key) else {
                continue;
            };
            let Ok(bytes) = signed.to_bytes() else {
                continue;
            };
            {
                let mut peers = record.peers.lock().unwrap_or_else(PoisonError::into_inner);
                if *peers == 0 {
                    *peers = swarm.connected_peers().count();
                }
            }
            if swarm.behaviour_mut().publish(topic.clone(), bytes).is_ok() {
                record
                    .ids
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(signed.offer_id());
            }
        }
    });
    Ok(Some((forged, task)))
}

/// The forger's key, from the seed (not any node's).
fn forger_secret(seed: u64) -> [u8; 32] {
    let mut secret = [0xf0; 32];
    secret[..8].copy_from_slice(&seed.to_le_bytes());
    secret
}
