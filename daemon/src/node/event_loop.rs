//! The swarm's task: commands from the handle, swarm events and timers, each delegated.

use std::time::Duration;

use futures::StreamExt;
use libp2p::kad::{self, QueryResult};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::SwarmEvent;
use libp2p::{gossipsub, identify};
use orien_protocol::{ATTESTATIONS_TOPIC, OFFERS_TOPIC, PROFILES_TOPIC};
use tokio::sync::mpsc;
use tracing::{debug, info};

use crate::network::BehaviourEvent;
use libp2p::metrics::Recorder;

use crate::net::NetCommand;

use super::relay::{RELAY_HOP_PROTOCOL, is_direct};
use super::{Command, EventLoop, NodeStats, OfferEvent};

const FLUSH_ON_SHUTDOWN: Duration = Duration::from_millis(500);

/// Resolves at `at`, or never when there is nothing scheduled.
async fn wait_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl EventLoop {
    pub(super) async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut net: mpsc::Receiver<NetCommand>,
    ) {
        // Not at once: offers are announced when published, and a tick racing the first
        // publication would announce it twice.
        let period = (self.offer_ttl / 3).max(Duration::from_millis(100));
        let mut reannounce = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        let mut sweep = tokio::time::interval(Duration::from_secs(1));
        let mut attest =
            tokio::time::interval(self.attestation_interval.max(Duration::from_millis(100)));
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Shutdown(done)) => {
                        self.flush(FLUSH_ON_SHUTDOWN).await;
                        let _ = done.send(());
                        break;
                    }
                    Some(command) => self.on_command(command),
                    None => break,
                },
                Some(command) = net.recv() => self.on_command(command.into()),
                Some((id, answer)) = self.answers.next() => {
                    self.respond(id, answer.response, answer.abuse, false);
                }
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                _ = reannounce.tick() => self.reannounce(),
                _ = attest.tick() => self.attest(),
                _ = wait_until(self.profile_due) => {
                    self.profile_due = None;
                    self.publish_profile();
                }
                _ = sweep.tick() => {
                    self.expire_bans();
                    self.trim_connections();
                    self.top_up_connections();
                    let expired = self.book.expire(self.clock.wall());
                    if !expired.is_empty() {
                        debug!(count = expired.len(), "expired offers dropped");
                    }
                    for id in expired {
                        let _ = self.events.send(OfferEvent::Removed { id });
                    }
                    self.profiles.expire(self.clock.wall());
                    self.refresh_profile();
                    if let Some(sessions) = &self.sessions {
                        sessions.reputation().expire_attestations(self.clock.wall());
                    }
                }
            }
        }
        info!("node stopped");
    }

    /// Keeps the swarm running for `period` so queued messages (withdrawals) go out.
    pub(super) async fn flush(&mut self, period: Duration) {
        let deadline = tokio::time::sleep(period);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                _ = &mut deadline => return,
            }
        }
    }

    pub(super) fn on_command(&mut self, command: Command) {
        match command {
            Command::Publish(spec, reply) => {
                let _ = reply.send(self.publish(spec));
            }
            Command::WithdrawAll(reply) => {
                self.withdraw_all();
                let _ = reply.send(());
            }
            Command::Query(query, reply) => {
                let _ = reply.send(self.book_entries(&query));
            }
            Command::Find(tool, provider, reply) => self.find_offers(tool, provider, reply),
            Command::PeerScore(peer, reply) => {
                let _ = reply.send(self.swarm.behaviour().gossipsub.peer_score(&peer));
            }
            Command::ConnectedPeers(reply) => {
                let _ = reply.send(self.swarm.connected_peers().copied().collect());
            }
            Command::Disconnect(peer, reply) => {
                let _ = reply.send(self.swarm.disconnect_peer_id(peer).is_ok());
            }
            Command::Offer(id, reply) => {
                let _ = reply.send(self.book.resolve(&id).cloned());
            }
            Command::Providers(query, reply) => {
                let _ = reply.send(self.profiles.query(&query, self.clock.wall()));
            }
            Command::Provider(provider, reply) => {
                let now = self.clock.wall();
                let found = self
                    .profiles
                    .get(&provider)
                    .filter(|e| !e.profile.is_expired(now))
                    .cloned();
                let _ = reply.send(found);
            }
            Command::Request {
                peer,
                request,
                reply,
                faulted,
            } => self.send_request(peer, request, reply, faulted),
            Command::Respond {
                id,
                response,
                abuse,
                faulted,
            } => self.respond(id, response, abuse, faulted),
            Command::Stats(reply) => {
                let _ = reply.send(NodeStats {
                    peers: self.swarm.connected_peers().count(),
                    offers_known: self.book.len(),
                });
            }
            Command::Serve {
                peer,
                request,
                channel,
            } => self.serve(peer, request, channel),
            Command::Attest(signed) => self.gossip_attestation(&signed),
            Command::Shutdown(_) => unreachable!("handled by the loop"),
        }
    }

    pub(super) fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        self.record(&event);
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            })) if message.topic == gossipsub::IdentTopic::new(PROFILES_TOPIC).hash() => {
                self.on_profile_gossip(propagation_source, message_id, &message);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            })) if message.topic == gossipsub::IdentTopic::new(ATTESTATIONS_TOPIC).hash() => {
                self.on_attestation_gossip(propagation_source, message_id, &message);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Ping(event)) => self.on_ping(&event),
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            })) => self.on_gossip(propagation_source, message_id, message),
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Subscribed {
                peer_id,
                topic,
            })) if topic == gossipsub::IdentTopic::new(OFFERS_TOPIC).hash() => {
                self.on_offer_topic_joined(peer_id);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Unsubscribed {
                topic,
                ..
            })) if topic == gossipsub::IdentTopic::new(OFFERS_TOPIC).hash() => {
                self.on_offer_topic_left();
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                let kad_protocol = libp2p::StreamProtocol::new(orien_protocol::KAD_PROTOCOL);
                let hop = libp2p::StreamProtocol::new(RELAY_HOP_PROTOCOL);
                if info.protocols.contains(&hop)
                    && let Some(addr) = info.listen_addrs.iter().find(|a| is_direct(a))
                {
                    debug!(relay = %peer_id, %addr, "peer serves as a relay");
                    self.relays
                        .insert(peer_id, addr.clone().with(Protocol::P2p(peer_id)));
                }
                if info.protocols.contains(&kad_protocol) {
                    for addr in info.listen_addrs {
                        self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                    }
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                id,
                result: QueryResult::GetProviders(result),
                step,
                ..
            })) => self.on_providers(id, result, step.last),
            SwarmEvent::Behaviour(BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                id,
                result: QueryResult::Bootstrap(_),
                step,
                ..
            })) => self.on_walk_step(id, step.last),
            SwarmEvent::Behaviour(BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                id,
                result: QueryResult::GetClosestPeers(result),
                ..
            })) => {
                let peers = match result {
                    Ok(ok) => ok.peers,
                    Err(kad::GetClosestPeersError::Timeout { peers, .. }) => peers,
                };
                self.on_peer_found(id, peers);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Session(event)) => self.on_session(event),
            SwarmEvent::ConnectionEstablished {
                peer_id,
                endpoint,
                num_established,
                ..
            } => {
                self.on_connected(peer_id, num_established.get() == 1);
                if self.guard.is_banned(&peer_id, self.clock.monotonic()) {
                    debug!(peer = %peer_id, "banned peer connected; disconnecting");
                    let _ = self.swarm.disconnect_peer_id(peer_id);
                    return;
                }
                self.on_peer_reachable(peer_id);
                debug!(peer = %peer_id, addr = %endpoint.get_remote_address(), "connected");
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                error,
                ..
            } => self.on_dial_error(connection_id, &error.to_string()),
            SwarmEvent::ConnectionClosed {
                peer_id,
                cause,
                num_established,
                ..
            } => {
                self.on_disconnected(&peer_id, num_established == 0);
                if num_established == 0 {
                    self.on_offer_topic_left();
                }
                debug!(peer = %peer_id, cause = ?cause, "disconnected");
            }
            _ => {}
        }
    }

    pub(super) fn record(&self, event: &SwarmEvent<BehaviourEvent>) {
        let libp2p = &self.metrics.libp2p;
        libp2p.record(event);
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(e)) => libp2p.record(e),
            SwarmEvent::Behaviour(BehaviourEvent::Kad(e)) => libp2p.record(e),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(e)) => libp2p.record(e),
            SwarmEvent::Behaviour(BehaviourEvent::Ping(e)) => libp2p.record(e),
            SwarmEvent::Behaviour(BehaviourEvent::Dcutr(e)) => libp2p.record(e),
            SwarmEvent::ConnectionEstablished { .. } | SwarmEvent::ConnectionClosed { .. } => {
                self.metrics
                    .peers
                    .set(i64::try_from(self.swarm.connected_peers().count()).unwrap_or(i64::MAX));
            }
            _ => {}
        }
        self.metrics
            .offers_in_book
            .set(i64::try_from(self.book.len()).unwrap_or(i64::MAX));
    }
}

impl From<NetCommand> for Command {
    fn from(command: NetCommand) -> Self {
        match command {
            NetCommand::Request {
                peer,
                request,
                reply,
            } => Command::Request {
                peer,
                request: *request,
                reply,
                faulted: false,
            },
            NetCommand::Offer(id, reply) => Command::Offer(id, reply),
            NetCommand::Find(tool, provider, reply) => Command::Find(tool, Some(provider), reply),
        }
    }
}
