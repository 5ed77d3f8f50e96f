//! A hostile peer on the session protocol: it tries to hijack an honest renter's
//! session (exec, close, files), forges receipts toward both sides, opens sessions in
//! someone else's name, and sends raw garbage, oversized and non-canonical frames. Every
//! attempt is refused, and the honest session goes on and ends with identical,
//! verifiable ledgers. Real libp2p over loopback TCP, real Docker, real RocksDB.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

#[path = "support/loopback.rs"]
mod loopback;

use std::io;
use std::time::Duration;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{PeerId, StreamProtocol, Swarm, SwarmBuilder, noise, tcp, yamux};
use orien_daemon::network::{BehaviourEvent, NetworkTuning, build_swarm};
use orien_daemon::{SessionConfig, TransportKind};
use orien_protocol::*;

use loopback::Market;

const PATIENCE: Duration = Duration::from_secs(30);

/// Sends one well-formed request from the hostile node and waits for its fate.
async fn ask(
    swarm: &mut Swarm<orien_daemon::network::Behaviour>,
    peer: PeerId,
    request: SessionRequest,
) -> Result<SessionResponse, String> {
    let id = swarm.behaviour_mut().session.send_request(&peer, request);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let event = tokio::time::timeout_at(deadline, swarm.select_next_some())
            .await
            .expect("an answer or a failure within the patience");
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Session(request_response::Event::Message {
                message:
                    request_response::Message::Response {
                        request_id,
                        response,
                    },
                ..
            })) if request_id == id => return Ok(response),
            SwarmEvent::Behaviour(BehaviourEvent::Session(
                request_response::Event::OutboundFailure {
                    request_id, error, ..
                },
            )) if request_id == id => return Err(error.to_string()),
            _ => {}
        }
    }
}

/// Writes its request bytes as they are, with no framing, and reads whatever comes back.
#[derive(Debug, Clone, Default)]
struct RawCodec;

impl request_response::Codec for RawCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        _: &mut T,
    ) -> io::Result<Vec<u8>> {
        Err(io::Error::other("the raw peer serves nothing"))
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        io.take(1 << 20).read_to_end(&mut out).await?;
        Ok(out)
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        bytes: Vec<u8>,
    ) -> io::Result<()> {
        io.write_all(&bytes).await?;
        io.close().await
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        _: &mut T,
        _: Vec<u8>,
    ) -> io::Result<()> {
        Ok(())
    }
}

#[derive(NetworkBehaviour)]
struct RawPeer {
    session: request_response::Behaviour<RawCodec>,
}

async fn raw_ask(
    swarm: &mut Swarm<RawPeer>,
    peer: PeerId,
    bytes: Vec<u8>,
) -> Result<Vec<u8>, String> {
    let id: OutboundRequestId = swarm.behaviour_mut().session.send_request(&peer, bytes);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let event = tokio::time::timeout_at(deadline, swarm.select_next_some())
            .await
            .expect("an answer or a failure within the patience");
        match event {
            SwarmEvent::Behaviour(RawPeerEvent::Session(request_response::Event::Message {
                message:
                    request_response::Message::Response {
                        request_id,
                        response,
                    },
                ..
            })) if request_id == id => return Ok(response),
            SwarmEvent::Behaviour(RawPeerEvent::Session(
                request_response::Event::OutboundFailure {
                    request_id, error, ..
                },
            )) if request_id == id => return Err(error.to_string()),
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_peer_cannot_hijack_forge_or_crash_a_session() {
    let session_config = SessionConfig {
        receipt_interval: Millis(500),
        ..SessionConfig::default()
    };
    let market = Market::start("sha256", session_config).await;
    let Market {
        provider_key,
        renter_key,
        provider,
        renter,
        provider_store,
        renter_store,
        tool,
        ..
    } = &market;
    let offer_id = market.offer;
    let found = renter.find_tool(tool.clone()).await.unwrap();
    // The provider re-announces (another id) when the renter joins the offer topic;
    // the earlier offer stays openable until it expires.
    assert!(
        found.iter().any(|e| e.id == offer_id
            || (e.offer.provider == provider_key.node_id() && e.offer.tool == *tool)),
        "the renter finds the provider's offer: {found:?}"
    );
    let sessions = renter.sessions().unwrap();
    let honest = sessions
        .open(offer_id, Usdc::from_micros(500_000), Millis(600_000))
        .await
        .unwrap()
        .session;
    sessions
        .put_file(honest, "data/in.txt", b"mine\n".to_vec())
        .await
        .unwrap();

    // The hostile peer speaks the protocol.
    let hostile_key = NodeKey::generate();
    let mut hostile = build_swarm(
        &hostile_key,
        TransportKind::Network,
        &NetworkTuning::default(),
    )
    .unwrap();
    let provider_peer: PeerId = provider_key.node_id().to_peer_id();
    let renter_peer: PeerId = renter_key.node_id().to_peer_id();
    hostile.dial(provider.listen_addrs()[0].clone()).unwrap();
    hostile.dial(renter.listen_addrs()[0].clone()).unwrap();

    // Each attempt reaches the peer and is answered with a refusal.
    let refused = |answer: Result<SessionResponse, String>, what: &str| match answer {
        Ok(SessionResponse::Error { code, .. }) => {
            assert_eq!(code, RpcErrorCode::BadRequest, "{what}")
        }
        other => panic!("{what}: expected a refusal, got {other:?}"),
    };
    // Hijacking the honest session, on the provider.
    let exec = SessionRequest::Exec(Exec {
        session: honest,
        exec: ExecId::random(),
        args_json: r#"{"file":"data/in.txt"}"#.into(),
        offer: None,
        outputs: Vec::new(),
    });
    refused(
        ask(&mut hostile, provider_peer, exec).await,
        "an exec in someone else's session",
    );
    refused(
        ask(
            &mut hostile,
            provider_peer,
            SessionRequest::GetFile {
                session: honest,
                path: "data/in.txt".into(),
            },
        )
        .await,
        "reading someone else's workspace",
    );
    refused(
        ask(
            &mut hostile,
            provider_peer,
            SessionRequest::Close(CloseSession {
                session: honest,
                reason: CloseReason::RenterRequested,
            }),
        )
        .await,
        "closing someone else's session",
    );
    // Opening in the honest renter's name, and on an offer that does not exist.
    let open = |renter: NodeId, offer: OfferId| {
        SessionRequest::Open(OpenSession {
            offer,
            renter,
            budget: Usdc::from_micros(1_000),
            max_duration: Millis(60_000),
            payment: PaymentLane::Ledger,
            lane: LaneHead::default(),
        })
    };
    match ask(
        &mut hostile,
        provider_peer,
        open(renter_key.node_id(), offer_id),
    )
    .await
    {
        Ok(SessionResponse::Rejected(r)) => {
            assert!(
                matches!(r.reason, RejectReason::InvalidRequest { .. }),
                "{r:?}"
            )
        }
        other => panic!("an open in another renter's name: {other:?}"),
    }
    match ask(
        &mut hostile,
        provider_peer,
        open(hostile_key.node_id(), OfferId::from_bytes([9; 32])),
    )
    .await
    {
        Ok(SessionResponse::Rejected(r)) => assert_eq!(r.reason, RejectReason::UnknownOffer),
        other => panic!("an open on a made-up offer: {other:?}"),
    }
    // Forged receipts toward the renter (pretending to be its provider) and toward the
    // provider.
    let forged = hostile_key
        .sign(&UsageReceipt {
            session: honest,
            seq: 1,
            session_time: Millis(1),
            exec_time: Millis(0),
            cpu_time: Millis(0),
            exec_amount: Usdc::ZERO,
            amount: Usdc::from_micros(499_999),
            prev: ReceiptHash::GENESIS,
            issued_at: SystemClock::new().wall(),
            results: orien_protocol::ResultsCommitment::NONE,
            artefact_amount: Usdc::ZERO,
        })
        .unwrap();
    refused(
        ask(
            &mut hostile,
            renter_peer,
            SessionRequest::Receipt(forged.clone()),
        )
        .await,
        "a forged receipt to the renter",
    );
    // The fifth abuse of the provider gets the peer banned: the answer to it may be cut
    // off with the connection, and nothing is served to it afterwards.
    match ask(&mut hostile, provider_peer, SessionRequest::Receipt(forged)).await {
        Ok(SessionResponse::Error { .. }) | Err(_) => {}
        other => panic!("a forged receipt to the provider was served: {other:?}"),
    }
    let after_ban = ask(
        &mut hostile,
        provider_peer,
        SessionRequest::ListFiles { session: honest },
    )
    .await;
    assert!(
        after_ban.is_err(),
        "a banned peer is not answered: {after_ban:?}"
    );
    let metrics = provider.metrics().render();
    assert!(metrics.contains("orien_peers_banned_total 1"), "{metrics}");

    // Raw bytes on the same protocol: garbage, a 4 GiB length prefix, a frame whose
    // payload is not canonical. None gets an answer; nothing is allocated for the lie.
    let mut raw: Swarm<RawPeer> = SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|_| RawPeer {
            session: request_response::Behaviour::new(
                [(
                    StreamProtocol::new(SESSION_PROTOCOL),
                    ProtocolSupport::Outbound,
                )],
                request_response::Config::default().with_request_timeout(Duration::from_secs(10)),
            ),
        })
        .unwrap()
        .build();
    raw.dial(provider.listen_addrs()[0].clone()).unwrap();
    let valid = wire::encode(&SessionRequest::ListFiles { session: honest }).unwrap();
    let mut overlong = valid.clone();
    // The variant index as an over-long varint (`0x87 0x00` for 7): postcard decodes
    // it, the canonical check refuses it.
    overlong.insert(1, 0x00);
    overlong[0] |= 0x80;
    let frame = |payload: &[u8]| {
        let mut f = (payload.len() as u32).to_be_bytes().to_vec();
        f.extend_from_slice(payload);
        f
    };
    for (what, bytes) in [
        ("garbage", b"\x00\x00\x00\x05hello, not postcard".to_vec()),
        ("a 4 GiB length", vec![0xff, 0xff, 0xff, 0xff, 1, 2, 3]),
        ("a non-canonical frame", frame(&overlong)),
        ("a truncated frame", frame(&valid)[..3].to_vec()),
    ] {
        if let Ok(answer) = raw_ask(&mut raw, provider_peer, bytes).await {
            assert!(answer.is_empty(), "{what} was answered: {answer:?}");
        }
    }

    // The honest session is untouched and still works.
    let exec = sessions
        .exec(honest, None, r#"{"file":"data/in.txt"}"#.into())
        .await
        .unwrap();
    let view = sessions
        .wait_exec(honest, exec, Duration::from_secs(120))
        .await
        .unwrap();
    assert_eq!(view.exit.unwrap().exit_code, Some(0));
    sessions.close(honest).await.unwrap();
    let provider_chain = provider_store.receipts(&honest).unwrap();
    let renter_chain = renter_store.receipts(&honest).unwrap();
    assert!(!renter_chain.is_empty());
    assert_eq!(
        provider_chain.iter().map(|r| &r.acked).collect::<Vec<_>>(),
        renter_chain.iter().map(|r| &r.acked).collect::<Vec<_>>()
    );
    for chain in [&provider_chain, &renter_chain] {
        for stored in chain {
            assert_eq!(
                stored
                    .acked
                    .receipt
                    .verify_from(&provider_key.node_id())
                    .unwrap()
                    .session,
                honest
            );
        }
    }
    assert!(
        renter_store.evidence(&honest).unwrap().is_empty(),
        "no forged receipt reached the ledger"
    );
    assert_eq!(
        renter_store.session_totals(&honest).unwrap().status,
        orien_ledger::SessionStatus::Closed(CloseReason::RenterRequested)
    );
    provider_store.verify().unwrap();
    renter_store.verify().unwrap();
    assert_eq!(
        provider_store.sessions().unwrap().len(),
        1,
        "no session opened by the hostile peer"
    );
    market.shutdown().await;
}
