//! Reputation from this node's own evidence, between in-process nodes (real libp2p over
//! loopback, real RocksDB, the modelled sandbox) and the renter's MCP endpoint served as
//! `orien-node run` serves it: a provider that fails half its calls sinks below one
//! that delivers, and the MCP chooser stops picking it although it is cheaper; other
//! renters' attestations over gossip weigh by what they verifiably paid, and a Sybil
//! cluster of fresh keys moves no score.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

#[path = "support/harness.rs"]
mod harness;
#[path = "support/mcp_client.rs"]
mod mcp_client;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use harness::{TestNode, fast, model_run, model_tools_priced, work_tool};
use libp2p::{Multiaddr, gossipsub};
use orien_daemon::TransportKind;
use orien_daemon::api::NodeService;
use orien_daemon::network::{NetworkTuning, build_swarm};
use orien_protocol::{
    ATTESTATIONS_TOPIC, Attestation, Clock, Millis, NodeId, NodeKey, PaymentProof, ProviderRecord,
    ReceiptAck, ReceiptHash, ResultsCommitment, SessionId, SystemClock, UsageReceipt, Usdc,
};
use orien_provider::model::ModelRun;
use orien_web_api::{ApiConfig, BearerToken, NodeApi};
use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_failing_half_its_calls_sinks_and_the_chooser_stops_picking_it() {
    let dir = tempfile::tempdir().unwrap();
    // Every second call of the flaky provider runs past the tool's 2 s limit and is
    // killed (timed out); it sells at half the reliable provider's price.
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let flaky_model = move |tool: &orien_provider::Tool, args: &Value| {
        if counted.fetch_add(1, Ordering::SeqCst) % 2 == 1 {
            ModelRun::exits_after(Duration::from_secs(5), b"late\n".to_vec())
        } else {
            model_run(tool, args)
        }
    };
    let flaky = TestNode::provider_modelled(
        &dir.path().join("flaky"),
        fast(),
        model_tools_priced("0.300000"),
        flaky_model,
    )
    .await;
    let reliable = TestNode::provider(&dir.path().join("reliable"), fast()).await;
    let mut bootstrap = flaky.node().listen_addrs().to_vec();
    bootstrap.extend(reliable.node().listen_addrs().iter().cloned());
    let renter = TestNode::renter_at(&dir.path().join("renter"), fast(), bootstrap).await;
    flaky.publish(&work_tool()).await;
    reliable.publish(&work_tool()).await;
    let (flaky_id, reliable_id) = (flaky.key.node_id(), reliable.key.node_id());
    for provider in [flaky_id, reliable_id] {
        let found = renter
            .on(move |node| async move { node.find_offers(work_tool(), Some(provider)).await })
            .await
            .unwrap();
        assert!(!found.is_empty(), "the renter finds {provider}'s offer");
    }

    // The renter's API with its MCP endpoint, on the renter's own runtime.
    let token = BearerToken::generate();
    let served = token.clone();
    let base = renter
        .on(move |node| async move {
            let app =
                orien_web_api::router(Arc::new(NodeService::new(node)), ApiConfig::new(served));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
            base
        })
        .await;
    let client = mcp_client::connect(format!("{base}/mcp"), token.expose().to_owned()).await;
    let mut listed = false;
    for _ in 0..100 {
        let tools = client.list_all_tools().await.unwrap();
        if tools.iter().any(|t| t.name == "work") {
            listed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(listed, "the catalogue lists `work`");
    let call = |provider: Option<String>| {
        let mut args = json!({"ms": "20"});
        if let Some(provider) = provider {
            args["provider"] = json!(provider);
        }
        let Value::Object(args) = args else {
            unreachable!()
        };
        CallToolRequestParams::new("work").with_arguments(args)
    };

    // Unknown to the renter, both score alike: the cheaper flaky provider is chosen.
    let first = client.call_tool(call(None)).await.unwrap();
    let first = first.structured_content.unwrap();
    assert_eq!(first["provider"], flaky_id.to_string(), "{first}");

    // Calls pinned to the flaky provider: half of them time out.
    for _ in 0..7 {
        client
            .call_tool(call(Some(flaky_id.to_string())))
            .await
            .unwrap();
    }
    let api = NodeService::new(renter.node().clone());
    let seen = api.reputation().await.unwrap();
    let of = |p: &orien_protocol::NodeId| {
        seen.iter()
            .find(|r| r.provider == p.to_string())
            .map(|r| r.reputation.clone())
    };
    let sunk = of(&flaky_id).expect("evidence of the flaky provider");
    assert!(sunk.calls_failed >= 3, "{sunk:?}");
    assert!(sunk.calls_completed >= 3, "{sunk:?}");
    assert!(
        sunk.score < 2.0 / 3.0,
        "below a provider never tried: {sunk:?}"
    );

    // Now the chooser passes it over for the dearer provider that delivers, every time.
    for _ in 0..3 {
        let chosen = client.call_tool(call(None)).await.unwrap();
        let chosen = chosen.structured_content.unwrap();
        assert_eq!(chosen["provider"], reliable_id.to_string(), "{chosen}");
        assert_eq!(chosen["state"], "completed", "{chosen}");
    }
    let trusted = of(&reliable_id);
    let trusted = api
        .reputation()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.provider == reliable_id.to_string())
        .map(|r| r.reputation)
        .or(trusted)
        .unwrap();
    assert!(trusted.score > sunk.score, "{trusted:?} vs {sunk:?}");

    // The offer book: cheapest first by default, the provider that delivers first by
    // reputation.
    let offers = |sort| {
        let api = &api;
        async move {
            api.offers(orien_web_api::OfferFilter {
                tool: Some(work_tool()),
                sort,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.provider)
            .collect::<Vec<_>>()
        }
    };
    use orien_web_api::api::OfferSort;
    assert_eq!(offers(OfferSort::Price).await[0], flaky_id.to_string());
    assert_eq!(
        offers(OfferSort::Reputation).await[0],
        reliable_id.to_string()
    );
    assert!(trusted.start_p50_ms.is_some(), "{trusted:?}");
    assert!(trusted.open_p50_ms.is_some(), "{trusted:?}");
    assert!(trusted.first_output_p50_ms.is_some(), "{trusted:?}");
    client.cancel().await.unwrap();
}

/// Rents one session of `calls` modelled calls from `provider` and closes it.
async fn rent(renter: &TestNode, provider: NodeId, calls: usize) {
    renter
        .on(move |node| async move {
            let offer = node.find_offers(work_tool(), Some(provider)).await.unwrap()[0].id;
            let sessions = node.sessions().unwrap();
            let session = sessions
                .open(offer, Usdc::from_micros(1_000_000), Millis(600_000))
                .await
                .unwrap()
                .session;
            for _ in 0..calls {
                let exec = sessions
                    .exec(session, None, json!({"ms": "20"}).to_string())
                    .await
                    .unwrap();
                sessions
                    .wait_exec(session, exec, Duration::from_secs(30))
                    .await
                    .unwrap();
            }
            sessions.close(session).await.unwrap();
        })
        .await;
}

/// Publishes `attestation`, signed by `key`, from a swarm of that key (a publisher must
/// be its attester) connected to `to`; returns the swarm's driver, to abort at the end.
async fn publish_as(
    key: &NodeKey,
    attestation: &Attestation,
    to: Multiaddr,
) -> tokio::task::JoinHandle<()> {
    let tuning = NetworkTuning {
        heartbeat: Duration::from_millis(200),
        ..NetworkTuning::default()
    };
    let mut swarm = build_swarm(key, TransportKind::Network, &tuning).unwrap();
    swarm.dial(to).unwrap();
    let bytes = key.sign(attestation).unwrap().to_bytes().unwrap();
    let topic = gossipsub::IdentTopic::new(ATTESTATIONS_TOPIC);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut sent = false;
    while !sent && tokio::time::Instant::now() < deadline {
        tokio::select! {
            _ = swarm.select_next_some() => {}
            _ = tokio::time::sleep(Duration::from_millis(100)) => {
                sent = swarm.behaviour_mut().gossipsub.publish(topic.clone(), bytes.clone()).is_ok();
            }
        }
    }
    assert!(sent, "the attestation was published");
    tokio::spawn(async move {
        loop {
            swarm.select_next_some().await;
        }
    })
}

/// A payment `renter` acknowledged to `provider`, both fresh keys of one owner.
fn self_dealt(provider: &NodeKey, renter: &NodeKey, micros: u64) -> PaymentProof {
    let receipt = provider
        .sign(&UsageReceipt {
            session: SessionId::random(),
            seq: 1,
            session_time: Millis(600_000),
            exec_time: Millis(0),
            cpu_time: Millis(0),
            exec_amount: Usdc::ZERO,
            amount: Usdc::from_micros(micros),
            prev: ReceiptHash::GENESIS,
            issued_at: SystemClock::new().wall(),
            results: ResultsCommitment::NONE,
            artefact_amount: Usdc::ZERO,
        })
        .unwrap();
    let ack = renter
        .sign(&ReceiptAck {
            session: receipt.verify().unwrap().session,
            seq: 1,
            receipt: receipt.receipt_hash(),
            voucher: None,
        })
        .unwrap();
    PaymentProof { receipt, ack }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attestations_over_gossip_weigh_by_verifiable_payments_and_a_sybil_cluster_moves_no_score()
{
    let dir = tempfile::tempdir().unwrap();
    // `known` delivers; `flaky` lets every call run past the 2 s limit.
    let known = TestNode::provider(&dir.path().join("known"), fast()).await;
    let flaky = TestNode::provider_modelled(
        &dir.path().join("flaky"),
        fast(),
        harness::model_tools(),
        |_: &orien_provider::Tool, _: &Value| {
            ModelRun::exits_after(Duration::from_secs(5), b"late\n".to_vec())
        },
    )
    .await;
    let mut providers = known.node().listen_addrs().to_vec();
    providers.extend(flaky.node().listen_addrs().iter().cloned());
    let observer =
        TestNode::renter_at(&dir.path().join("observer"), fast(), providers.clone()).await;
    let honest = TestNode::renter_at(&dir.path().join("honest"), fast(), providers).await;
    known.publish(&work_tool()).await;
    flaky.publish(&work_tool()).await;
    let (known_id, flaky_id) = (known.key.node_id(), flaky.key.node_id());

    // The observer rents from `known` only; the honest renter from both.
    rent(&observer, known_id, 1).await;
    rent(&honest, known_id, 1).await;
    rent(&honest, flaky_id, 2).await;
    let own = honest
        .node()
        .sessions()
        .unwrap()
        .reputation()
        .of(&flaky_id)
        .unwrap();
    assert_eq!(own.calls_failed, 2, "{own:?}");
    let observed = observer.node().sessions().unwrap().reputation().clone();
    let never = observed.of(&flaky_id).unwrap_or_default();
    assert_eq!(
        never.calls_completed + never.calls_failed + never.sessions_completed,
        0,
        "the observer never rented from it"
    );

    // A Sybil cluster: fresh keys that paid each other large sums, all saying `flaky`
    // delivers everything and slandering `known`.
    let cluster: Vec<NodeKey> = (0..4).map(|_| NodeKey::generate()).collect();
    let observer_addr = observer.node().listen_addrs()[0].clone();
    let mut drivers = Vec::new();
    for (i, sybil) in cluster.iter().enumerate() {
        let peer = &cluster[(i + 1) % cluster.len()];
        let mut providers = vec![
            ProviderRecord {
                provider: flaky_id,
                calls_completed: 10_000,
                calls_failed: 0,
                sessions_failed: 0,
                disputes: 0,
            },
            ProviderRecord {
                provider: known_id,
                calls_completed: 0,
                calls_failed: 10_000,
                sessions_failed: 0,
                disputes: 100,
            },
        ];
        providers.sort_by_key(|r| r.provider);
        let attestation = Attestation {
            attester: sybil.node_id(),
            issued_at: SystemClock::new().wall(),
            providers,
            payments: vec![self_dealt(peer, sybil, 500_000_000)],
        };
        drivers.push(publish_as(sybil, &attestation, observer_addr.clone()).await);
    }

    // The honest renter's attestation (it publishes every second once it has paid) and
    // the cluster's all arrive; only the honest one weighs.
    let heard = harness::eventually(Duration::from_secs(60), || {
        observed.attesters_held() == cluster.len() + 1
            && observed
                .standing(&flaky_id)
                .is_some_and(|s| s.shared.attesters == 1)
    })
    .await;
    let flaky_standing = observed.standing(&flaky_id);
    assert!(
        heard,
        "held {}, {flaky_standing:?}",
        observed.attesters_held()
    );
    let flaky_standing = flaky_standing.unwrap();
    let honest_weight = observed.attester_weight(&honest.key.node_id(), &flaky_id);
    assert!(
        honest_weight > 0.0,
        "the honest renter paid `known`, as the observer did"
    );
    assert_eq!(
        flaky_standing.shared.weight, honest_weight,
        "{flaky_standing:?}"
    );
    assert!(
        flaky_standing.score() < 2.0 / 3.0,
        "the honest report of failures sinks it: {flaky_standing:?}"
    );
    for sybil in &cluster {
        assert_eq!(observed.attester_weight(&sybil.node_id(), &flaky_id), 0.0);
        assert_eq!(observed.attester_weight(&sybil.node_id(), &known_id), 0.0);
    }
    // `known`: the observer's own evidence, untouched by the slander.
    let known_standing = observed.standing(&known_id).unwrap();
    assert_eq!(known_standing.shared.attesters, 0, "{known_standing:?}");
    assert_eq!(known_standing.score(), known_standing.own.score());

    // The API shows the same: the attested provider is listed with its one attester.
    let api = NodeService::new(observer.node().clone());
    let listed = api.reputation().await.unwrap();
    let view = listed
        .iter()
        .find(|r| r.provider == flaky_id.to_string())
        .expect("attested providers are listed")
        .reputation
        .clone();
    assert_eq!(view.attesters, 1, "{view:?}");
    assert_eq!(
        view.calls_completed + view.calls_failed,
        0,
        "no own evidence"
    );
    assert!(view.score < view.own_score, "{view:?}");
    for driver in drivers {
        driver.abort();
    }

    // Pings of a provider the observer knows by its profile give its uptime.
    let pinged = harness::eventually(Duration::from_secs(40), || {
        observed
            .of(&flaky_id)
            .and_then(|e| e.uptime())
            .is_some_and(|u| u > 0.99)
    })
    .await;
    assert!(pinged, "{:?}", observed.of(&flaky_id));
}
