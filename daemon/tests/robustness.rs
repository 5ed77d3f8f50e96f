//! A node among strangers, between in-process nodes (real libp2p over loopback, real
//! RocksDB; the modelled sandbox, or Docker where the container matters): honest races
//! never get a peer banned, a hostile provider cannot grow the renter's memory, one
//! renter's flood does not stall another's calls, and no answer is lost to a limit.
#![allow(clippy::unwrap_used, clippy::print_stderr)] // Tests fail loudly on purpose.

#[path = "support/harness.rs"]
mod harness;
#[path = "support/hostile.rs"]
mod hostile;
#[path = "support/loopback.rs"]
mod loopback;
#[path = "support/rows.rs"]
mod rows;

use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::{PATIENCE, Pair, TestNode, fast, work, work_tool};
use hostile::{HostilePeer, ScriptedProvider};
use orien_daemon::SessionConfig;
use orien_protocol::*;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_that_quotes_a_long_argument_reaches_the_renter() {
    let pair = Pair::start(fast()).await;
    let session = pair.open(Usdc::from_micros(500_000)).await.unwrap();
    // The schema refuses it, and the refusal quotes the 300-character value.
    let long = format!(r#"{{"ms":"{}"}}"#, "a".repeat(300));
    let exec = pair.exec(session, long).await.unwrap();
    let view = pair
        .renter
        .on(move |node| async move {
            node.sessions()
                .unwrap()
                .wait_exec(session, exec, Duration::from_secs(20))
                .await
        })
        .await
        .unwrap();
    let exit = view.exit.expect("the refusal arrives");
    match exit.outcome {
        ExecOutcome::InvalidArguments { detail } => {
            assert!(detail.len() <= orien_protocol::session::MAX_DETAIL_LEN);
            assert!(
                detail.contains("aaaa"),
                "it still says what was refused: {detail}"
            );
        }
        other => panic!("expected invalid arguments, got {other:?}"),
    }
    pair.close(session).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_asked_to_rent_its_own_offer_refuses_without_dialling_itself() {
    let pair = Pair::start(fast()).await;
    let offer = pair.offer;
    let refused = pair
        .provider
        .on(move |node| async move {
            node.sessions()
                .unwrap()
                .open(offer, Usdc::from_micros(500_000), Millis(60_000))
                .await
        })
        .await;
    match refused {
        Err(orien_daemon::SessionError::OwnOffer(id)) => assert_eq!(id, offer),
        other => panic!("expected a refusal of the node's own offer, got {other:?}"),
    }
    // Nothing was opened on either side of it.
    let provided = pair
        .provider
        .on(|node| async move { node.sessions().unwrap().provided_sessions() })
        .await;
    assert!(provided.is_empty(), "{provided:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn honest_sessions_with_racing_closes_never_get_a_peer_banned() {
    let sessions = env_u64("ORIEN_RACE_SESSIONS").unwrap_or(120);
    let config = SessionConfig {
        max_sessions: 64,
        max_sessions_per_peer: 64,
        ..fast()
    };
    let pair = Arc::new(Pair::start(config).await);
    let mut rng = 0x5eed_u64 ^ sessions;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    // Sessions close while calls still stream output, while receipts are in flight,
    // right after they open; eight at a time.
    let mut done = 0;
    while done < sessions {
        let mut batch = Vec::new();
        for _ in 0..8.min(sessions - done) {
            let (call, wait) = (next() % 400, next() % 400);
            let pair = Arc::clone(&pair);
            batch.push(tokio::spawn(async move {
                let Ok(session) = pair.open(Usdc::from_micros(500_000)).await else {
                    return;
                };
                if call % 3 != 0 {
                    let _ = pair.exec(session, work(call)).await;
                }
                tokio::time::sleep(Duration::from_millis(wait)).await;
                let _ = pair.close(session).await;
            }));
        }
        done += batch.len() as u64;
        for handle in batch {
            handle.await.unwrap();
        }
    }
    // Let the stragglers (output of killed calls, close notices) arrive.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let banned = |node: &TestNode| node.node().metrics().peers_banned.get();
    rows::report(serde_json::json!([{
        "name": format!("honest peers banned over {sessions} sessions with racing closes"),
        "value": banned(&pair.renter) + banned(&pair.provider),
        "unit": "peers", "baseline": null, "ratio": null, "goal": "0",
    }]));
    assert_eq!(banned(&pair.renter), 0, "the renter banned its provider");
    assert_eq!(banned(&pair.provider), 0, "the provider banned its renter");
    let again = pair.open(Usdc::from_micros(500_000)).await;
    assert!(again.is_ok(), "the pair still works: {again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_provider_cannot_grow_the_renters_memory_with_empty_or_replayed_output() {
    let mut scripted = ScriptedProvider::start("a provider that floods output", fast()).await;
    let budget = Usdc::from_micros(1_000_000);
    let session = scripted.open(budget, Millis(60_000), Millis(120_000)).await;
    let exec = scripted.start_call(session, work(10)).await;
    let (hostile, renter) = (&scripted.peer, &scripted.renter);

    // Thousands of batches of empty chunks, then the same real chunk over and over.
    let renter_id = renter.key.node_id();
    let chunk = |offset: u64, data: Vec<u8>| {
        ExecEvent::Output(OutputChunk {
            exec,
            stream: OutputStream::Stdout,
            offset,
            data,
        })
    };
    let mut refused = 0;
    let mut seq = 0;
    for i in 0..2_000u64 {
        let events = if i < 1_000 {
            vec![chunk(0, Vec::new()); 8]
        } else {
            vec![chunk(0, b"x".to_vec()); 8]
        };
        let answer = hostile
            .request(
                renter_id,
                SessionRequest::Events(ExecEvents {
                    session,
                    exec,
                    seq,
                    events,
                    result: None,
                }),
            )
            .await;
        match answer {
            Ok(SessionResponse::Done) => seq += 1,
            _ => refused += 1,
        }
    }
    let view = renter
        .on(move |node| async move { node.sessions().unwrap().exec_view(session, exec) })
        .await
        .unwrap();
    eprintln!(
        "{refused} batches refused, {} events kept",
        view.events.len()
    );
    assert!(
        view.events.len() <= 1,
        "empty and replayed chunks are not kept: {} events",
        view.events.len()
    );
    assert!(refused >= 1_990, "the flood is refused: {refused} of 2000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_renter_flooding_its_session_does_not_stall_another_renters_calls() {
    let config = SessionConfig {
        receipt_interval: Millis(1_000),
        ..SessionConfig::default()
    };
    let market = loopback::Market::start("sha256", config.clone()).await;
    let quiet_dir = tempfile::tempdir().unwrap();
    let quiet_store = Arc::new(orien_ledger::Store::open(quiet_dir.path()).unwrap());
    let quiet = loopback::node(
        NodeKey::generate(),
        &[&market.provider],
        quiet_store,
        None,
        config,
    )
    .await;
    let found = quiet.find_tool(market.tool.clone()).await.unwrap();
    let budget = Usdc::from_micros(500_000);
    let quiet_session = quiet
        .sessions()
        .unwrap()
        .open(found[0].id, budget, Millis(600_000))
        .await
        .unwrap()
        .session;
    quiet
        .sessions()
        .unwrap()
        .put_file(quiet_session, "in.txt", b"quiet\n".to_vec())
        .await
        .unwrap();
    let call = |quiet: &orien_daemon::Node| {
        let sessions = quiet.sessions().unwrap().clone();
        async move {
            let started = Instant::now();
            let exec = sessions
                .exec(quiet_session, None, r#"{"file":"in.txt"}"#.into())
                .await
                .unwrap();
            let view = sessions
                .wait_exec(quiet_session, exec, Duration::from_secs(60))
                .await
                .unwrap();
            assert!(view.exit.is_some());
            started.elapsed()
        }
    };
    let calls = env_u64("ORIEN_FLOOD_CALLS").unwrap_or(8) as usize;
    let mut calm = Vec::new();
    for _ in 0..calls {
        calm.push(call(&quiet).await);
    }

    // The other renter floods its own session with uploads.
    let flooder = market.renter.sessions().unwrap().clone();
    // The provider's offer is re-signed as it re-announces it: open on the current one.
    let current = market.renter.find_tool(market.tool.clone()).await.unwrap();
    let loud = flooder
        .open(current[0].id, budget, Millis(600_000))
        .await
        .unwrap()
        .session;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut flood = Vec::new();
    for i in 0..128 {
        let (flooder, stop) = (flooder.clone(), stop.clone());
        flood.push(tokio::spawn(async move {
            let data = vec![b'x'; 512 * 1024];
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // A refusal by the flooder's own node (its queue of uploads is full)
                // costs the provider nothing; the client retries shortly, as after a
                // 429, rather than spinning on the cores this process shares with the
                // provider and the other renter.
                if let Err(orien_daemon::SessionError::Busy(_)) = flooder
                    .put_file(loud, &format!("f{}", i % 8), data.clone())
                    .await
                {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut flooded = Vec::new();
    for _ in 0..calls {
        flooded.push(call(&quiet).await);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for f in flood {
        let _ = f.await;
    }
    calm.sort();
    flooded.sort();
    eprintln!("quiet renter's calls: calm {calm:?}, during the flood {flooded:?}");
    let p99 = |samples: &[Duration]| {
        samples[((samples.len() * 99).div_ceil(100)).saturating_sub(1)].as_secs_f64() * 1000.0
    };
    rows::report(serde_json::json!([{
        "name": format!("honest renter's call p99 on a provider under another renter's upload flood ({calls} calls)"),
        "value": p99(&flooded), "unit": "ms", "baseline": p99(&calm),
        "ratio": p99(&flooded) / p99(&calm),
        "goal": "ratio <= 2 (baseline: the same calls without the flood)",
    }]));
    let median = |samples: &[Duration]| samples[samples.len() / 2];
    let (calm_mid, flooded_mid) = (median(&calm), median(&flooded));
    let flooded_max = flooded[flooded.len() - 1];
    // The engine and the two cores are shared, so single calls may be slower; a stalled
    // dispatcher or session task shows as seconds, and in the median.
    assert!(
        flooded_mid <= calm_mid * 2 + Duration::from_millis(100)
            && flooded_max <= Duration::from_secs(3),
        "a flood of one session stalled another's calls: median {flooded_mid:?} against {calm_mid:?}, slowest {flooded_max:?}"
    );
    quiet.shutdown().await;
    market.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sybil_flood_of_offers_through_one_connection_leaves_honest_offers_in_the_book() {
    let dir = tempfile::tempdir().unwrap();
    for side in ["provider", "victim"] {
        std::fs::create_dir_all(dir.path().join(side)).unwrap();
    }
    // A peer that answers every lookup with 64 of its 320 offers of fresh keys, each
    // living a day.
    let hostile = HostilePeer::start(NodeKey::generate()).await;
    let tools = harness::model_tools();
    let tool = &tools[0];
    let now = SystemClock::new().wall();
    for _ in 0..320 {
        let sybil = NodeKey::generate();
        let offer = sybil
            .sign(&Offer {
                provider: sybil.node_id(),
                tool: work_tool(),
                version: "1".into(),
                description: "one of many".into(),
                image_digest: orien_provider::model::ModelSandbox::image_digest(&work_tool()),
                args_schema: tool.schema_text(),
                pricing: *tool.pricing(),
                limits: *tool.limits(),
                payout: EvmAddress::from_bytes([0x66; 20]),
                issued_at: now,
                expires_at: now.saturating_add(Millis(24 * 3_600_000 - 1)),
                keep_artefacts: Millis::ZERO,
            })
            .unwrap();
        hostile.provide(offer).await;
    }
    let provider = TestNode::provider(&dir.path().join("provider"), fast()).await;
    let hostile_addr = hostile
        .addr
        .clone()
        .with(libp2p::multiaddr::Protocol::P2p(hostile.id().to_peer_id()));
    let mut addrs = provider.node().listen_addrs().to_vec();
    addrs.push(hostile_addr);
    let victim = TestNode::renter_at(&dir.path().join("victim"), fast(), addrs)
        .await
        .with_book(orien_daemon::OfferBookLimits {
            capacity: 100,
            per_source: 25,
            ..orien_daemon::OfferBookLimits::default()
        })
        .await;
    provider.publish(&work_tool()).await;
    let honest = provider.key.node_id();
    async fn found(victim: &TestNode, honest: NodeId) -> Vec<orien_daemon::BookEntry> {
        victim
            .on(move |node| async move {
                node.offers(orien_daemon::OfferQuery {
                    provider: Some(honest),
                    ..Default::default()
                })
                .await
                .unwrap()
            })
            .await
    }
    let deadline = Instant::now() + PATIENCE;
    while found(&victim, honest).await.is_empty() {
        assert!(Instant::now() < deadline, "the honest offer arrives");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The victim looks the hostile peer up, again and again; each answer floods it.
    let hostile_id = hostile.id();
    for _ in 0..6 {
        let _ = victim
            .on(move |node| async move { node.find_offers(work_tool(), Some(hostile_id)).await })
            .await;
    }
    let in_book = victim
        .on(|node| async move { node.stats().await.unwrap().offers_known })
        .await;
    eprintln!("{in_book} offers in the victim's book");
    assert_eq!(
        found(&victim, honest).await.len(),
        1,
        "the honest offer stays in the book"
    );
    let any = victim
        .on(|node| async move { node.find_tool(work_tool()).await.unwrap() })
        .await;
    assert!(
        any.iter().any(|e| e.offer.provider == honest),
        "and is found"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_asking_for_book_pages_without_end_is_refused_after_a_whole_sync() {
    // A page of a book (up to 64 signed offers) answers a request of a few bytes, from
    // the event loop itself: a peer asking without end made the node an amplifier.
    let dir = tempfile::tempdir().unwrap();
    let provider = TestNode::provider(dir.path(), fast()).await;
    provider.publish(&work_tool()).await;
    let id = provider.key.node_id();
    let addr = provider.node().listen_addrs()[0]
        .clone()
        .with(libp2p::multiaddr::Protocol::P2p(id.to_peer_id()));
    let (greedy, other) = (
        HostilePeer::start(NodeKey::generate()).await,
        HostilePeer::start(NodeKey::generate()).await,
    );
    greedy.dial(addr.clone()).await;
    other.dial(addr).await;
    let page = || SessionRequest::ListBook { after: None };
    let is_page = |answer: &Result<SessionResponse, String>| matches!(answer, Ok(SessionResponse::Offers(offers)) if offers.len() == 1);
    let deadline = Instant::now() + PATIENCE;
    let first = loop {
        let answer = greedy.request(id, page()).await;
        if is_page(&answer) {
            break Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "the provider never lists: {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Both books full, once: 157 pages of offers and 64 of profiles.
    const WHOLE_SYNC: u64 = 157 + 64;
    let mut served = 1u64;
    let refused = loop {
        let answer = greedy.request(id, page()).await;
        if !is_page(&answer) {
            break answer;
        }
        served += 1;
        assert!(served <= 2 * WHOLE_SYNC + 600, "never refused");
    };
    let elapsed = first.elapsed().as_secs();
    match refused {
        Ok(SessionResponse::Error {
            code: RpcErrorCode::RateLimited,
            ..
        }) => {}
        other => panic!("expected RateLimited, got {other:?}"),
    }
    // A whole sync and one page a second since, no more.
    assert!(
        (WHOLE_SYNC..=WHOLE_SYNC + elapsed + 1).contains(&served),
        "{served} pages served in {elapsed} s"
    );
    assert!(
        is_page(&other.request(id, page()).await),
        "another peer is still listed"
    );
    assert!(provider.node().metrics().listings_refused.get() >= 1);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert!(
        is_page(&greedy.request(id, page()).await),
        "a second later, one page more"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_holds_an_open_unanswered_leaves_the_renter_waiting_not_refused() {
    // `Fault::Ignore`, as a Sybil that never serves would do (orien-sim plays it).
    let pair = Pair::start(fast()).await;
    pair.provider.rules.add(|point| {
        matches!(
            point,
            orien_daemon::Point::InboundRequest {
                request: SessionRequest::Open(_),
                ..
            }
        )
        .then_some(orien_daemon::Fault::Ignore)
    });
    // A refused or dropped open fails within a round trip; a held one waits for the
    // renter's own timeout (30 s by default).
    let waited = tokio::time::timeout(
        Duration::from_secs(3),
        pair.open(Usdc::from_micros(1_000_000)),
    )
    .await;
    assert!(waited.is_err(), "the open is still waiting: {waited:?}");
    assert!(
        pair.provider.store().sessions().unwrap().is_empty(),
        "the provider opened nothing"
    );
}
