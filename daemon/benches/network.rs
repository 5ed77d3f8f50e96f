//! `scripts/bench network`: offer propagation across a network of ORIEN nodes on
//! loopback TCP, beside raw gossipsub (no ORIEN validation) on the same topology and
//! message size, measured in the same run.
//!
//! Usage: `cargo bench -p orien-daemon --bench network -- [--nodes N] [--trials T] [--out FILE]`
#![allow(clippy::unwrap_used, clippy::print_stdout, missing_docs)] // A benchmark reports loudly.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, Swarm, SwarmBuilder, gossipsub, noise, tcp, yamux};
use orien_daemon::{Node, NodeConfig, OfferEvent, OfferSpec, TransportKind};
use orien_protocol::*;
use tokio::sync::mpsc;

mod support;
use support::flag;

/// Deterministic topology: every node links to node 0 and to two earlier nodes.
fn topology(n: usize) -> Vec<Vec<usize>> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move |bound: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % bound as u64) as usize
    };
    (0..n)
        .map(|i| {
            let mut links = Vec::new();
            if i > 0 {
                links.push(0);
            }
            for _ in 0..2 {
                if i > 1 {
                    let j = 1 + next(i - 1);
                    if !links.contains(&j) {
                        links.push(j);
                    }
                }
            }
            links
        })
        .collect()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn spec(tool: &str) -> OfferSpec {
    support::offer_spec(tool, 1, 1, r#"{"type":"object"}"#)
}

/// Propagation delays (ms) of offers published by node 1 to every other node.
async fn orien_propagation(n: usize, trials: usize) -> (Vec<f64>, usize, usize) {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock::new());
    let mut nodes: Vec<Node> = Vec::new();
    for links in topology(n) {
        let config = NodeConfig {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            bootstrap: links
                .iter()
                .map(|&j| nodes[j].listen_addrs()[0].clone())
                .collect(),
            transport: TransportKind::Network,
            ..NodeConfig::default()
        };
        nodes.push(
            Node::start(NodeKey::generate(), config, clock.clone())
                .await
                .unwrap(),
        );
    }
    tokio::time::sleep(Duration::from_secs(5)).await; // let the mesh settle
    let (tx, mut rx) = mpsc::unbounded_channel::<(usize, ToolName, Instant)>();
    for (i, node) in nodes.iter().enumerate() {
        let mut events = node.offer_events();
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Ok(event) = events.recv().await {
                if let OfferEvent::Added { tool, .. } = event {
                    let _ = tx.send((i, tool, Instant::now()));
                }
            }
        });
    }
    let mut delays = Vec::new();
    let (mut delivered, mut expected) = (0, 0);
    for trial in 0..trials {
        let tool = ToolName::new(format!("bench-{trial}")).unwrap();
        let started = Instant::now();
        nodes[1].publish_offer(spec(tool.as_str())).await.unwrap();
        expected += n - 1; // everyone but the publisher
        let mut seen: HashMap<usize, f64> = HashMap::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while seen.len() < n - 1 {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some((i, t, at))) if t == tool => {
                    seen.entry(i)
                        .or_insert_with(|| at.duration_since(started).as_secs_f64() * 1e3);
                }
                Ok(Some(_)) => {}
                _ => break,
            }
        }
        seen.remove(&1);
        delivered += seen.len();
        delays.extend(seen.into_values());
    }
    for node in nodes {
        node.shutdown().await;
    }
    (delays, delivered, expected)
}

#[derive(NetworkBehaviour)]
struct Raw {
    gossipsub: gossipsub::Behaviour,
}

async fn raw_swarm() -> (Swarm<Raw>, Multiaddr) {
    let mut swarm = SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|key| {
            let config = gossipsub::ConfigBuilder::default()
                .heartbeat_interval(Duration::from_millis(700))
                .max_transmit_size(64 * 1024)
                .build()
                .unwrap();
            let mut gossipsub = gossipsub::Behaviour::new(
                gossipsub::MessageAuthenticity::Signed(key.clone()),
                config,
            )
            .unwrap();
            gossipsub
                .subscribe(&gossipsub::IdentTopic::new("raw"))
                .unwrap();
            Raw { gossipsub }
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
        .build();
    swarm
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .unwrap();
    let addr = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
            break address;
        }
    };
    (swarm, addr)
}

/// The same measurement with bare gossipsub swarms: no offer decoding, signature checks
/// or book, messages of the same size.
async fn raw_propagation(n: usize, trials: usize, size: usize) -> Vec<f64> {
    let mut swarms = Vec::new();
    let mut addrs = Vec::new();
    for _ in 0..n {
        let (swarm, addr) = raw_swarm().await;
        swarms.push(swarm);
        addrs.push(addr);
    }
    for (i, links) in topology(n).into_iter().enumerate() {
        for j in links {
            swarms[i].dial(addrs[j].clone()).unwrap();
        }
    }
    let (tx, mut rx) = mpsc::unbounded_channel::<(usize, Vec<u8>, Instant)>();
    let (publish_tx, mut publish_rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let mut publisher = Some(swarms.remove(1));
    let mut handles = Vec::new();
    for (idx, mut swarm) in swarms.into_iter().enumerate() {
        let i = if idx >= 1 { idx + 1 } else { idx };
        let tx = tx.clone();
        handles.push(tokio::spawn(async move {
            loop {
                if let SwarmEvent::Behaviour(RawEvent::Gossipsub(gossipsub::Event::Message {
                    message,
                    ..
                })) = swarm.select_next_some().await
                {
                    let _ = tx.send((i, message.data[..8].to_vec(), Instant::now()));
                }
            }
        }));
    }
    let mut publisher = publisher.take().unwrap();
    handles.push(tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = publisher.select_next_some() => {}
                Some(data) = publish_rx.recv() => {
                    let _ = publisher.behaviour_mut().gossipsub.publish(gossipsub::IdentTopic::new("raw"), data);
                }
            }
        }
    }));
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut delays = Vec::new();
    for trial in 0..trials as u64 {
        let mut data = trial.to_be_bytes().to_vec();
        data.resize(size, 0xab);
        let tag = data[..8].to_vec();
        let started = Instant::now();
        publish_tx.send(data).unwrap();
        let mut seen: HashMap<usize, f64> = HashMap::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while seen.len() < n - 1 {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some((i, t, at))) if t == tag => {
                    seen.entry(i)
                        .or_insert_with(|| at.duration_since(started).as_secs_f64() * 1e3);
                }
                Ok(Some(_)) => {}
                _ => break,
            }
        }
        delays.extend(seen.into_values());
    }
    for h in handles {
        h.abort();
    }
    delays
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let (nodes, trials) = (flag("--nodes", 50usize), flag("--trials", 20usize));
    let out: Option<String> = flag("--out", String::new()).into();
    let offer_size = {
        let key = NodeKey::generate();
        let s = spec("bench-0");
        let now = SystemClock::new().wall();
        let offer = Offer {
            provider: key.node_id(),
            tool: s.tool,
            version: s.version,
            description: s.description,
            image_digest: s.image_digest,
            args_schema: s.args_schema,
            pricing: s.pricing,
            limits: s.limits,
            payout: s.payout,
            issued_at: now,
            expires_at: now.saturating_add(Millis(3_600_000)),
            keep_artefacts: Millis::ZERO,
        };
        key.sign(&offer).unwrap().to_bytes().unwrap().len()
    };
    println!(
        "offer propagation: {} nodes, {} trials, {offer_size}-byte offers",
        nodes, trials
    );
    let (mut orien, delivered, expected) = orien_propagation(nodes, trials).await;
    let mut raw = raw_propagation(nodes, trials, offer_size).await;
    orien.sort_by(f64::total_cmp);
    raw.sort_by(f64::total_cmp);
    let (o50, o99, r50, r99) = (
        percentile(&orien, 50.0),
        percentile(&orien, 99.0),
        percentile(&raw, 50.0),
        percentile(&raw, 99.0),
    );
    println!("orien: p50 {o50:.1} ms, p99 {o99:.1} ms ({delivered}/{expected} delivered)");
    println!(
        "raw gossipsub: p50 {r50:.1} ms, p99 {r99:.1} ms ({} deliveries)",
        raw.len()
    );
    let results = serde_json::json!([
        { "name": format!("offer propagation p50 ({} nodes)", nodes), "value": o50, "unit": "ms",
          "baseline": r50, "ratio": o50 / r50, "goal": "informational (baseline: raw gossipsub, same topology and size)" },
        { "name": format!("offer propagation p99 ({} nodes)", nodes), "value": o99, "unit": "ms",
          "baseline": r99, "ratio": o99 / r99, "goal": "p99 <= 1000 ms" },
        { "name": "offers delivered", "value": delivered, "unit": "deliveries", "baseline": expected,
          "ratio": delivered as f64 / expected as f64, "goal": "ratio = 1" },
    ]);
    if let Some(out) = out.filter(|o| !o.is_empty()) {
        std::fs::write(&out, serde_json::to_string_pretty(&results).unwrap()).unwrap();
        println!("wrote {out}");
    }
}
