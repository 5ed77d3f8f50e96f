//! Offers across a real libp2p network on loopback TCP: gossip, the DHT, expiry,
//! withdrawal, and a hostile peer.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use libp2p::{PeerId, gossipsub};
use orien_daemon::network::{ConnectionBudget, NetworkTuning, TransportKind, build_swarm};
use orien_daemon::profile_book::{ProfileQuery, ProfileSort};
use orien_daemon::{Node, NodeConfig, OfferQuery, OfferSpec, ProfileText};
use orien_protocol::*;

const PATIENCE: Duration = Duration::from_secs(60);

fn config(bootstrap: &[&Node], offer_ttl: Duration) -> NodeConfig {
    NodeConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        bootstrap: bootstrap
            .iter()
            .map(|n| n.listen_addrs()[0].clone())
            .collect(),
        transport: TransportKind::Network,
        tuning: NetworkTuning {
            heartbeat: Duration::from_millis(200),
            ..NetworkTuning::default()
        },
        offer_ttl,
        ..NodeConfig::default()
    }
}

async fn start(bootstrap: &[&Node], offer_ttl: Duration) -> Node {
    start_with(config(bootstrap, offer_ttl)).await
}

async fn start_with(config: NodeConfig) -> Node {
    Node::start(NodeKey::generate(), config, Arc::new(SystemClock::new()))
        .await
        .unwrap()
}

/// A node that does not sync the books from its peers when it joins: it learns offers
/// from gossip and the DHT alone.
async fn start_unsynced(bootstrap: &[&Node], offer_ttl: Duration) -> Node {
    let mut config = config(bootstrap, offer_ttl);
    config.tuning.book_sync_peers = 0;
    start_with(config).await
}

fn spec(tool: &str, exec_price: u64) -> OfferSpec {
    OfferSpec {
        tool: ToolName::new(tool).unwrap(),
        version: "1.36.1".into(),
        description: format!("{tool} from busybox"),
        image_digest: ImageDigest::from_bytes([7; 32]),
        args_schema: r#"{"type":"object"}"#.into(),
        pricing: Pricing {
            session_per_minute: Usdc::from_micros(100),
            exec_per_minute: Usdc::from_micros(exec_price),
            artefact_per_gib: Usdc::ZERO,
        },
        limits: ResourceLimits {
            max_exec: Millis(10_000),
            cpu_millis: 500,
            memory_bytes: 64 << 20,
            pids: 32,
            tmpfs_bytes: 8 << 20,
            output_bytes: 1 << 20,
            workspace_bytes: 16 << 20,
            concurrent_execs: 1,
        },
        payout: EvmAddress::from_bytes([0x42; 20]),
    }
}

/// Polls `check` until it holds or `PATIENCE` runs out.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting until {what}");
}

fn tool_query(tool: &str) -> OfferQuery {
    OfferQuery {
        tool: Some(ToolName::new(tool).unwrap()),
        ..OfferQuery::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renter_sees_both_providers_offers_through_gossip() {
    let bootstrap = start(&[], Duration::from_secs(3600)).await;
    let renter = start(&[&bootstrap], Duration::from_secs(3600)).await;
    let alice = start(&[&bootstrap], Duration::from_secs(3)).await;
    let bob = start(&[&bootstrap], Duration::from_secs(3)).await;
    alice
        .publish_offer(spec("sha256sum", 60_000))
        .await
        .unwrap();
    bob.publish_offer(spec("sha256sum", 30_000)).await.unwrap();

    // Offers re-announce every second (a third of their 3 s lifetime), so they reach
    // the renter once the gossip mesh has formed.
    eventually("the renter holds both offers", || async {
        renter.offers(tool_query("sha256sum")).await.unwrap().len() == 2
    })
    .await;
    let offers = renter.offers(tool_query("sha256sum")).await.unwrap();
    assert_eq!(offers[0].offer.provider, bob.id(), "cheapest first");
    assert_eq!(offers[1].offer.provider, alice.id());
    let cheap = OfferQuery {
        max_exec_price: Some(Usdc::from_micros(40_000)),
        ..tool_query("sha256sum")
    };
    assert_eq!(renter.offers(cheap).await.unwrap().len(), 1);

    for node in [renter, alice, bob, bootstrap] {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_joiner_finds_a_tool_through_the_dht() {
    let bootstrap = start(&[], Duration::from_secs(3600)).await;
    let provider = start(&[&bootstrap], Duration::from_secs(3600)).await;
    eventually(
        "the provider is connected to the bootstrap node",
        || async { !provider.connected_peers().await.unwrap().is_empty() },
    )
    .await;
    let offer_id = provider.publish_offer(spec("wc", 1_000)).await.unwrap();

    // Joins after the only gossip round and syncs no book: its book is empty, the DHT
    // knows the provider.
    let late = start_unsynced(&[&bootstrap], Duration::from_secs(3600)).await;
    assert!(late.offers(tool_query("wc")).await.unwrap().is_empty());
    eventually("the late node finds the provider's offer", || async {
        !late
            .find_tool(ToolName::new("wc").unwrap())
            .await
            .unwrap()
            .is_empty()
    })
    .await;
    let found = late.offers(tool_query("wc")).await.unwrap();
    assert_eq!(found[0].id, offer_id, "{found:?}");
    assert_eq!(found[0].offer.provider, provider.id());

    for node in [late, provider, bootstrap] {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_providers_profile_reaches_a_late_joiner_and_goes_when_it_withdraws() {
    let bootstrap = start(&[], Duration::from_secs(3600)).await;
    let provider = Node::start(
        NodeKey::generate(),
        NodeConfig {
            profile: ProfileText {
                display_name: Some("Ada's workstation".into()),
                description: "text tools, quietly".into(),
            },
            ..config(&[&bootstrap], Duration::from_secs(3600))
        },
        Arc::new(SystemClock::new()),
    )
    .await
    .unwrap();
    eventually("the provider is connected", || async {
        !provider.connected_peers().await.unwrap().is_empty()
    })
    .await;
    provider.publish_offer(spec("wc", 2_000)).await.unwrap();
    provider.publish_offer(spec("grep", 1_000)).await.unwrap();

    // Joins after the profile was gossiped: it gets it when it syncs the books from its
    // peers on joining the offer topic.
    let late = start(&[&bootstrap], Duration::from_secs(3600)).await;
    let everyone = ProfileQuery {
        limit: 10,
        ..ProfileQuery::default()
    };
    eventually("the late node holds the provider's profile", || async {
        late.provider(provider.id())
            .await
            .unwrap()
            .is_some_and(|e| e.profile.tools.len() == 2)
    })
    .await;
    let entry = late.provider(provider.id()).await.unwrap().unwrap();
    let profile = &entry.profile;
    assert_eq!(profile.display_name, "Ada's workstation");
    assert_eq!(profile.description, "text tools, quietly");
    assert_eq!(profile.payout, EvmAddress::from_bytes([0x42; 20]));
    let tools: Vec<&str> = profile.tools.iter().map(|t| t.tool.as_str()).collect();
    assert_eq!(tools, ["grep", "wc"]);
    assert_eq!(
        profile
            .price_of(&ToolName::new("wc").unwrap())
            .unwrap()
            .exec_per_minute,
        Usdc::from_micros(2_000)
    );
    assert_eq!(profile.sessions_completed, 0);
    assert!(profile.software.starts_with("orien-node "));
    assert!(profile.online_since <= profile.issued_at);
    let selling_sed = ProfileQuery {
        tool: Some(ToolName::new("sed").unwrap()),
        ..everyone.clone()
    };
    assert_eq!(late.providers(selling_sed).await.unwrap().total, 0);
    let by_price = ProfileQuery {
        tool: Some(ToolName::new("grep").unwrap()),
        sort: ProfileSort::Price,
        ..everyone.clone()
    };
    assert_eq!(
        late.providers(by_price).await.unwrap().profiles[0]
            .profile
            .provider,
        provider.id()
    );

    // The provider shuts down and withdraws: its profile goes before its hour is up.
    provider.shutdown().await;
    eventually("the withdrawn profile is dropped", || async {
        late.providers(everyone.clone()).await.unwrap().total == 0
    })
    .await;
    for node in [late, bootstrap] {
        node.shutdown().await;
    }
}

/// Opening "tool X from provider P" on a node whose book already holds another
/// provider's offer of X (gossiped) still finds P's offer through the DHT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_providers_gossiped_offer_does_not_hide_the_one_asked_for() {
    let bootstrap = start(&[], Duration::from_secs(3600)).await;
    // It never re-announces within the test (its offers live an hour).
    let listed = start(&[&bootstrap], Duration::from_secs(3600)).await;
    eventually("the listed provider is connected", || async {
        !listed.connected_peers().await.unwrap().is_empty()
    })
    .await;
    let listed_offer = listed.publish_offer(spec("wc", 1_000)).await.unwrap();

    // The renter joins after the listed provider's only gossip round and syncs no book;
    // a second provider re-announces every second, so its offer reaches the renter's
    // book.
    let renter = start_unsynced(&[&bootstrap], Duration::from_secs(3600)).await;
    let gossiping = start(&[&bootstrap], Duration::from_secs(3)).await;
    gossiping.publish_offer(spec("wc", 500)).await.unwrap();
    eventually("the gossiped offer is in the renter's book", || async {
        renter.offers(tool_query("wc")).await.unwrap().len() == 1
    })
    .await;
    let book = renter.offers(tool_query("wc")).await.unwrap();
    assert_eq!(book[0].offer.provider, gossiping.id(), "only gossip so far");

    let find_listed = || renter.find_offers(ToolName::new("wc").unwrap(), Some(listed.id()));
    eventually("the renter finds the listed provider's offer", || async {
        !find_listed().await.unwrap().is_empty()
    })
    .await;
    let found = find_listed().await.unwrap();
    assert_eq!(found.len(), 1, "only the provider asked for");
    assert_eq!(found[0].id, listed_offer);
    assert_eq!(found[0].offer.provider, listed.id());
    // Without a provider, the book's answer stands (both offers by now, cheapest first).
    let any = renter
        .find_offers(ToolName::new("wc").unwrap(), None)
        .await
        .unwrap();
    assert_eq!(any[0].offer.provider, gossiping.id(), "{any:?}");

    for node in [renter, gossiping, listed, bootstrap] {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_offer_disappears_and_a_withdrawn_one_goes_at_once() {
    let bootstrap = start(&[], Duration::from_secs(3600)).await;
    let renter = start(&[&bootstrap], Duration::from_secs(3600)).await;
    let short = start(&[&bootstrap], Duration::from_secs(3)).await;
    let polite = start(&[&bootstrap], Duration::from_secs(3600)).await;
    short.publish_offer(spec("grep", 100)).await.unwrap();
    polite.publish_offer(spec("sort", 100)).await.unwrap();
    eventually("both offers arrive", || async {
        renter.offers(tool_query("grep")).await.unwrap().len() == 1
            && renter.offers(tool_query("sort")).await.unwrap().len() == 1
    })
    .await;

    // The short-lived provider vanishes without a word: its offer expires on its own.
    drop(short);
    eventually("the expired offer is dropped", || async {
        renter.offers(tool_query("grep")).await.unwrap().is_empty()
    })
    .await;

    // The polite one shuts down and withdraws: its offer goes well before its hour is up.
    polite.shutdown().await;
    eventually("the withdrawn offer is dropped", || async {
        renter.offers(tool_query("sort")).await.unwrap().is_empty()
    })
    .await;

    for node in [renter, bootstrap] {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_peer_is_penalised_and_honest_offers_still_flow() {
    let renter = start(&[], Duration::from_secs(3600)).await;
    let honest = start(&[&renter], Duration::from_secs(2)).await;

    // The hostile peer speaks the protocol but sends forged, expired, oversized and
    // garbage offers.
    let hostile_key = NodeKey::generate();
    let tuning = NetworkTuning {
        heartbeat: Duration::from_millis(200),
        ..NetworkTuning::default()
    };
    let mut hostile = build_swarm(&hostile_key, TransportKind::Network, &tuning).unwrap();
    hostile.dial(renter.listen_addrs()[0].clone()).unwrap();
    let topic = gossipsub::IdentTopic::new(OFFERS_TOPIC);
    let victim = NodeKey::generate();
    let now = SystemClock::new().wall();
    let mut forged_offer = Offer {
        provider: victim.node_id(),
        tool: ToolName::new("sha256sum").unwrap(),
        version: "1".into(),
        description: "forged".into(),
        image_digest: ImageDigest::from_bytes([1; 32]),
        args_schema: "{}".into(),
        pricing: Pricing::default(),
        limits: spec("x", 1).limits,
        payout: EvmAddress::from_bytes([1; 20]),
        issued_at: now,
        expires_at: now.saturating_add(Millis(60_000)),
        keep_artefacts: Millis::ZERO,
    };
    let forged = hostile_key.sign(&forged_offer).unwrap().to_bytes().unwrap(); // signer ≠ provider
    forged_offer.provider = hostile_key.node_id();
    forged_offer.issued_at = Timestamp(now.unix_millis() + 3_600_000); // from the future
    forged_offer.expires_at = forged_offer.issued_at.saturating_add(Millis(60_000));
    let future = hostile_key.sign(&forged_offer).unwrap().to_bytes().unwrap();
    let mut payloads = vec![
        forged,
        future,
        b"garbage, not an offer".to_vec(),
        vec![0xff; 40_000],
    ];
    let mut sent = 0usize;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while sent < payloads.len() && tokio::time::Instant::now() < deadline {
        tokio::select! {
            _ = hostile.select_next_some() => {}
            _ = tokio::time::sleep(Duration::from_millis(100)) => {
                if hostile.behaviour_mut().gossipsub.publish(topic.clone(), payloads[sent].clone()).is_ok() {
                    sent += 1;
                }
            }
        }
    }
    assert_eq!(sent, payloads.len(), "the hostile peer could publish");
    payloads.clear();

    // Keep the hostile swarm alive while the renter scores it.
    let hostile_id = hostile_key.node_id();
    let driver = tokio::spawn(async move {
        loop {
            hostile.select_next_some().await;
        }
    });
    eventually("the hostile peer's score goes negative", || async {
        renter
            .peer_score(hostile_id)
            .await
            .unwrap()
            .is_some_and(|s| s < 0.0)
    })
    .await;
    assert!(
        renter
            .offers(OfferQuery::default())
            .await
            .unwrap()
            .is_empty(),
        "nothing hostile was admitted"
    );

    honest.publish_offer(spec("sha256sum", 10)).await.unwrap();
    eventually("the honest offer arrives", || async {
        renter
            .offers(tool_query("sha256sum"))
            .await
            .unwrap()
            .iter()
            .any(|e| e.offer.provider == honest.id())
    })
    .await;
    assert!(renter.peer_score(honest.id()).await.unwrap().unwrap_or(0.0) >= 0.0);

    driver.abort();
    for node in [honest, renter] {
        node.shutdown().await;
    }
}

/// A node built on a transport of the caller's (here libp2p's memory transport with
/// noise and yamux, as orien-sim's network mode builds its links) gossips like one on
/// TCP, and its book's events name the peer each offer came through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_on_a_callers_transport_hears_offers_and_names_their_source() {
    use orien_daemon::{CustomTransport, OfferEvent};

    // What TransportKind::Memory builds, handed over as a caller's own.
    let custom = CustomTransport::memory();
    let port = 40_000 + u64::from(std::process::id() % 10_000);
    let on_memory = |bootstrap: Vec<libp2p::Multiaddr>, n: u64| NodeConfig {
        listen: vec![format!("/memory/{}", port + n).parse().unwrap()],
        bootstrap,
        transport: TransportKind::Custom(custom.clone()),
        ..config(&[], Duration::from_secs(3))
    };
    let provider = Node::start(
        NodeKey::generate(),
        on_memory(Vec::new(), 0),
        Arc::new(SystemClock::new()),
    )
    .await
    .unwrap();
    let renter_key = NodeKey::generate();
    let renter = Node::start(
        renter_key,
        on_memory(provider.listen_addrs().to_vec(), 1),
        Arc::new(SystemClock::new()),
    )
    .await
    .unwrap();
    let mut events = renter.offer_events();
    let id = provider
        .publish_offer(spec("sha256sum", 60_000))
        .await
        .unwrap();
    let provider_peer = provider.id().to_libp2p_public_key().to_peer_id();
    let heard = tokio::time::timeout(PATIENCE, async {
        loop {
            match events.recv().await {
                Ok(OfferEvent::Added {
                    provider: from,
                    source,
                    ..
                }) if from == provider.id() => return source,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("the renter's events stopped: {e}"),
            }
        }
    })
    .await
    .expect("the offer reaches the renter over the memory transport");
    assert_eq!(
        heard,
        Some(provider_peer),
        "it came straight from the provider"
    );
    assert!(
        renter
            .offers(tool_query("sha256sum"))
            .await
            .unwrap()
            .iter()
            .any(|e| e.offer.provider == provider.id()),
        "offer {id} is in the renter's book"
    );
    for node in [renter, provider] {
        node.shutdown().await;
    }
}

/// Discovery connects nodes to many others (Kademlia's bootstrap walks, every node
/// dialling the bootstrap node), and gossipsub's long-lived streams would keep each of
/// those connections open for good. The node closes the least useful ones above its
/// connection budget, and dials more when its peers have trimmed it below the budget:
/// every node ends within it, and an offer published after still reaches them all
/// through what is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_close_connections_above_their_budget_and_offers_still_flow() {
    const NODES: usize = 12;
    const LOW: usize = 4;
    const HIGH: usize = 6;
    let budgeted = |bootstrap: &[&Node]| {
        let mut config = config(bootstrap, Duration::from_secs(3600));
        config.tuning.connections = ConnectionBudget {
            low: LOW,
            high: HIGH,
            grace: Duration::from_secs(2),
        };
        config
    };
    let first = Node::start(
        NodeKey::generate(),
        budgeted(&[]),
        Arc::new(SystemClock::new()),
    )
    .await
    .unwrap();
    let mut nodes = vec![first];
    for _ in 1..NODES {
        let node = Node::start(
            NodeKey::generate(),
            budgeted(&[&nodes[0]]),
            Arc::new(SystemClock::new()),
        )
        .await
        .unwrap();
        nodes.push(node);
    }
    eventually("every node has reached the bootstrap node", || async {
        let mut reached = true;
        for node in &nodes[1..] {
            reached &= node
                .connected_peers()
                .await
                .unwrap()
                .contains(&nodes[0].id().to_peer_id());
        }
        reached
    })
    .await;
    // A node that its peers trimmed below half of LOW dials more from its routing table.
    eventually("every node is within its connection budget", || async {
        let mut within = true;
        for node in &nodes {
            within &= (LOW / 2..=HIGH).contains(&node.stats().await.unwrap().peers);
        }
        within
    })
    .await;
    assert!(
        nodes[0].metrics().peers_trimmed.get() >= (NODES - 1 - HIGH) as u64,
        "the bootstrap node, which every node dialled, closed some of them"
    );

    let provider = &nodes[NODES - 1];
    provider
        .publish_offer(spec("sha256sum", 1_000))
        .await
        .unwrap();
    eventually("every node holds the offer", || async {
        let mut all = true;
        for node in &nodes {
            all &= node.offers(tool_query("sha256sum")).await.unwrap().len() == 1;
        }
        all
    })
    .await;
    for node in nodes {
        node.shutdown().await;
    }
}

/// A node joining the offer topic pages through its first peers' books: it holds every
/// live offer and profile at once, each from the peer it synced from, and no provider
/// re-announces anything for it (they used to, to the whole network, for every join).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joiner_syncs_the_books_from_its_peers_and_no_provider_re_announces_for_it() {
    let hub = start(&[], Duration::from_secs(3600)).await;
    // More offers than one page of a book (64) holds, from a few providers.
    let providers = [
        start(&[&hub], Duration::from_secs(3600)).await,
        start(&[&hub], Duration::from_secs(3600)).await,
    ];
    const TOOLS: usize = 40;
    for provider in &providers {
        eventually("the provider is connected", || async {
            !provider.connected_peers().await.unwrap().is_empty()
        })
        .await;
        for t in 0..TOOLS {
            provider
                .publish_offer(spec(&format!("tool{t}"), 1_000 + t as u64))
                .await
                .unwrap();
        }
    }
    eventually("the hub holds every offer", || async {
        hub.offers(OfferQuery::default()).await.unwrap().len() == 2 * TOOLS
    })
    .await;
    let published = || {
        providers
            .iter()
            .map(|p| p.metrics().offers_published.get())
            .sum::<u64>()
    };
    assert_eq!(published(), 2 * TOOLS as u64);

    for _ in 0..3 {
        // Joins through the hub alone, after every gossip round.
        let joiner = start(&[&hub], Duration::from_secs(3600)).await;
        eventually("the joiner holds every offer and both profiles", || async {
            joiner.offers(OfferQuery::default()).await.unwrap().len() == 2 * TOOLS
                && joiner
                    .providers(ProfileQuery {
                        limit: 10,
                        ..ProfileQuery::default()
                    })
                    .await
                    .unwrap()
                    .total
                    == 2
        })
        .await;
        let book = joiner.offers(OfferQuery::default()).await.unwrap();
        let hub_peer = hub.id().to_peer_id();
        let from_providers: Vec<PeerId> = providers.iter().map(|p| p.id().to_peer_id()).collect();
        assert!(
            book.iter().all(|e| e
                .source
                .is_some_and(|s| s == hub_peer || from_providers.contains(&s))),
            "every offer came from a peer: {:?}",
            book.iter().map(|e| e.source).collect::<Vec<_>>()
        );
        joiner.shutdown().await;
    }
    assert_eq!(
        published(),
        2 * TOOLS as u64,
        "nothing re-announced for the joiners"
    );
    for node in providers.into_iter().chain([hub]) {
        node.shutdown().await;
    }
}
