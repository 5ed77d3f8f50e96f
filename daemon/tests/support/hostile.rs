//! A scripted peer on the real session protocol: the node's own swarm (`build_swarm`,
//! real libp2p over loopback TCP) driven by a test instead of the session logic, so it
//! can say what no honest node says — sign inflated receipts, delay an exit, answer out
//! of order. It serves the DHT and answers `ListOffers` with the offers it is given; every
//! other request goes to the test. `#[path]`-included; needs nothing else from `support`.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use libp2p::kad::RecordKey;
use libp2p::request_response::{self, OutboundRequestId};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId};
use orien_daemon::TransportKind;
use orien_daemon::network::{BehaviourEvent, NetworkTuning, build_swarm};
use orien_protocol::{NodeId, NodeKey, Offer, SessionRequest, SessionResponse, Signed};
use tokio::sync::{mpsc, oneshot};

/// A request a peer sent to the scripted node; answer it with [`Incoming::reply`].
pub struct Incoming {
    pub peer: NodeId,
    pub request: SessionRequest,
    reply: oneshot::Sender<SessionResponse>,
}

impl Incoming {
    /// Answers the request.
    pub fn reply(self, response: SessionResponse) {
        let _ = self.reply.send(response);
    }
}

enum Command {
    Dial(Multiaddr),
    Provide(Signed<Offer>),
    Request(
        PeerId,
        Box<SessionRequest>,
        oneshot::Sender<Result<SessionResponse, String>>,
    ),
}

/// The handle on a scripted peer; its swarm runs in a task that ends when this is
/// dropped.
pub struct HostilePeer {
    pub key: NodeKey,
    pub addr: Multiaddr,
    commands: mpsc::Sender<Command>,
    incoming: mpsc::Receiver<Incoming>,
    task: tokio::task::JoinHandle<()>,
}

impl HostilePeer {
    /// Starts the scripted peer on a loopback port.
    pub async fn start(key: NodeKey) -> Self {
        let mut swarm =
            build_swarm(&key, TransportKind::Network, &NetworkTuning::default()).unwrap();
        swarm
            .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
            .unwrap();
        let addr = loop {
            if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
                break address;
            }
        };
        let (commands, mut command_rx) = mpsc::channel::<Command>(64);
        let (incoming_tx, incoming) = mpsc::channel::<Incoming>(64);
        let task = tokio::spawn(async move {
            let mut offers: Vec<Signed<Offer>> = Vec::new();
            // Answers carry at most 64 offers: more are served in turn.
            let mut served = 0usize;
            let mut waiting: HashMap<
                OutboundRequestId,
                oneshot::Sender<Result<SessionResponse, String>>,
            > = HashMap::new();
            let (answer_tx, mut answers) = mpsc::channel::<(
                request_response::ResponseChannel<SessionResponse>,
                SessionResponse,
            )>(64);
            loop {
                tokio::select! {
                    command = command_rx.recv() => match command {
                        None => return,
                        Some(Command::Dial(addr)) => { let _ = swarm.dial(addr); }
                        Some(Command::Provide(offer)) => {
                            if let Ok(o) = offer.verify() {
                                let key = RecordKey::new(&o.tool.kademlia_key());
                                let _ = swarm.behaviour_mut().kad.start_providing(key);
                            }
                            offers.push(offer);
                        }
                        Some(Command::Request(peer, request, reply)) => {
                            let id = swarm.behaviour_mut().session.send_request(&peer, *request);
                            waiting.insert(id, reply);
                        }
                    },
                    Some((channel, response)) = answers.recv() => {
                        let _ = swarm.behaviour_mut().session.send_response(channel, response);
                    }
                    event = swarm.select_next_some() => match event {
                        SwarmEvent::Behaviour(BehaviourEvent::Identify(
                            libp2p::identify::Event::Received { peer_id, info, .. },
                        )) => {
                            for addr in info.listen_addrs {
                                swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                            }
                        }
                        SwarmEvent::Behaviour(BehaviourEvent::Session(
                            request_response::Event::Message { peer, message, .. },
                        )) => match message {
                            request_response::Message::Request { request, channel, .. } => {
                                if let SessionRequest::ListOffers { .. } = request {
                                    let page: Vec<_> = offers
                                        .iter()
                                        .cycle()
                                        .skip(served)
                                        .take(offers.len().min(orien_protocol::rpc::MAX_OFFERS_PER_RESPONSE))
                                        .cloned()
                                        .collect();
                                    served = served.wrapping_add(page.len());
                                    let response = SessionResponse::Offers(page);
                                    let _ = swarm.behaviour_mut().session.send_response(channel, response);
                                    continue;
                                }
                                // A node joining the offer topic syncs the books from its
                                // first peers on it: this peer's book is its own offers.
                                if let SessionRequest::ListBook { after } = request {
                                    let mut page: Vec<_> = offers
                                        .iter()
                                        .filter(|o| after.is_none_or(|a| o.offer_id() > a))
                                        .cloned()
                                        .collect();
                                    page.sort_by_key(|o| o.offer_id());
                                    page.truncate(orien_protocol::rpc::MAX_OFFERS_PER_RESPONSE);
                                    let response = SessionResponse::Offers(page);
                                    let _ = swarm.behaviour_mut().session.send_response(channel, response);
                                    continue;
                                }
                                if let SessionRequest::ListProfiles { .. } = request {
                                    let response = SessionResponse::Profiles(Vec::new());
                                    let _ = swarm.behaviour_mut().session.send_response(channel, response);
                                    continue;
                                }
                                let (reply, answer) = oneshot::channel();
                                let incoming = Incoming {
                                    peer: NodeId::from_peer_id(&peer).unwrap(),
                                    request,
                                    reply,
                                };
                                if incoming_tx.send(incoming).await.is_err() {
                                    return;
                                }
                                let answer_tx = answer_tx.clone();
                                tokio::spawn(async move {
                                    if let Ok(response) = answer.await {
                                        let _ = answer_tx.send((channel, response)).await;
                                    }
                                });
                            }
                            request_response::Message::Response { request_id, response } => {
                                if let Some(reply) = waiting.remove(&request_id) {
                                    let _ = reply.send(Ok(response));
                                }
                            }
                        },
                        SwarmEvent::Behaviour(BehaviourEvent::Session(
                            request_response::Event::OutboundFailure { request_id, error, .. },
                        )) => {
                            if let Some(reply) = waiting.remove(&request_id) {
                                let _ = reply.send(Err(error.to_string()));
                            }
                        }
                        _ => {}
                    },
                }
            }
        });
        Self {
            key,
            addr,
            commands,
            incoming,
            task,
        }
    }

    /// This peer's node id.
    pub fn id(&self) -> NodeId {
        self.key.node_id()
    }

    /// Dials a node.
    pub async fn dial(&self, addr: Multiaddr) {
        let _ = self.commands.send(Command::Dial(addr)).await;
    }

    /// Serves `offer` on `ListOffers` (64 at a time, in turn) and puts a provider record
    /// for its tool in the DHT.
    pub async fn provide(&self, offer: Signed<Offer>) {
        let _ = self.commands.send(Command::Provide(offer)).await;
    }

    /// Sends a request to `peer` and waits for its answer.
    pub async fn request(
        &self,
        peer: NodeId,
        request: SessionRequest,
    ) -> Result<SessionResponse, String> {
        let (reply, answer) = oneshot::channel();
        let _ = self
            .commands
            .send(Command::Request(
                peer.to_peer_id(),
                Box::new(request),
                reply,
            ))
            .await;
        answer
            .await
            .unwrap_or_else(|_| Err("the peer stopped".into()))
    }

    /// The next request a peer sent, within `patience`.
    pub async fn next(&mut self, patience: Duration) -> Incoming {
        tokio::time::timeout(patience, self.incoming.recv())
            .await
            .expect("a request within the patience")
            .expect("the peer runs")
    }
}

impl Drop for HostilePeer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A scripted provider of the modelled tool `work`, a renter node that found its offer,
/// and the helpers that walk the renter through an open and a call. Needs `harness`
/// included beside this module.
pub struct ScriptedProvider {
    pub peer: HostilePeer,
    pub renter: super::harness::TestNode,
    pub offer: orien_protocol::OfferId,
    _dir: tempfile::TempDir,
}

impl ScriptedProvider {
    /// Starts the scripted provider, signs its offer of `work` (`description` says what it
    /// is up to) and a renter with session settings `config` that found it.
    pub async fn start(description: &str, config: orien_daemon::SessionConfig) -> Self {
        use orien_protocol::{Clock, EvmAddress, Millis, Offer, SystemClock};
        let dir = tempfile::tempdir().unwrap();
        let peer = HostilePeer::start(NodeKey::generate()).await;
        let tools = super::harness::model_tools();
        let tool = &tools[0];
        let now = SystemClock::new().wall();
        let offer = peer
            .key
            .sign(&Offer {
                provider: peer.id(),
                tool: super::harness::work_tool(),
                version: "1".into(),
                description: description.into(),
                image_digest: orien_provider::model::ModelSandbox::image_digest(
                    &super::harness::work_tool(),
                ),
                args_schema: tool.schema_text(),
                pricing: *tool.pricing(),
                limits: *tool.limits(),
                payout: EvmAddress::from_bytes([0x66; 20]),
                issued_at: now,
                expires_at: now.saturating_add(Millis(3_600_000)),
                keep_artefacts: Millis::ZERO,
            })
            .unwrap();
        let offer_id = offer.offer_id();
        peer.provide(offer).await;
        let addr = peer
            .addr
            .clone()
            .with(libp2p::multiaddr::Protocol::P2p(peer.id().to_peer_id()));
        let renter = super::harness::TestNode::renter_at(dir.path(), config, vec![addr]).await;
        let id = peer.id();
        let found = renter
            .on(move |node| async move {
                node.find_offers(super::harness::work_tool(), Some(id))
                    .await
            })
            .await
            .unwrap();
        assert_eq!(
            found.first().map(|e| e.id),
            Some(offer_id),
            "the renter finds it"
        );
        Self {
            peer,
            renter,
            offer: offer_id,
            _dir: dir,
        }
    }

    /// The renter opens a session of `budget`; the scripted provider accepts it with
    /// this receipt interval and ack timeout.
    pub async fn open(
        &mut self,
        budget: orien_protocol::Usdc,
        receipt_interval: orien_protocol::Millis,
        ack_timeout: orien_protocol::Millis,
    ) -> orien_protocol::SessionId {
        use orien_protocol::{LaneHead, Millis, SessionAccepted, SessionId};
        let offer = self.offer;
        let opening = self.renter.spawn(move |node| async move {
            node.sessions()
                .unwrap()
                .open(offer, budget, Millis(600_000))
                .await
        });
        let session = SessionId::random();
        let open = self.peer.next(super::harness::PATIENCE).await;
        assert!(matches!(open.request, SessionRequest::Open(_)));
        open.reply(SessionResponse::Accepted(SessionAccepted {
            session,
            offer,
            budget,
            max_duration: Millis(600_000),
            receipt_interval,
            ack_timeout,
            lane: LaneHead::default(),
        }));
        opening.await.unwrap().unwrap();
        session
    }

    /// The renter starts a call with `args`; the scripted provider says it started.
    pub async fn start_call(
        &mut self,
        session: orien_protocol::SessionId,
        args: String,
    ) -> orien_protocol::ExecId {
        let calling = self.renter.spawn(move |node| async move {
            node.sessions().unwrap().exec(session, None, args).await
        });
        let exec = self.peer.next(super::harness::PATIENCE).await;
        let SessionRequest::Exec(call) = exec.request.clone() else {
            panic!("expected an exec, got {:?}", exec.request);
        };
        exec.reply(SessionResponse::ExecStarted { exec: call.exec });
        calling.await.unwrap().unwrap();
        call.exec
    }
}
