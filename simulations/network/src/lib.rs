//! orien-sim's network mode: real ORIEN nodes ([`market`]), or bare libp2p gossipsub
//! swarms ([`propagation`]), on an in-process network with per-link latency and loss
//! ([`link`]), in simulated time.
//!
//! Every node or swarm runs in one current-thread tokio runtime whose clock is paused: time
//! moves only when every task waits, straight to the next timer. libp2p's own timers
//! and clocks are on that clock too, through the `futures-timer` and `web-time` shims
//! this workspace patches in (`shims/`). So an offer's spread is measured in simulated
//! time, set by the links' latency alone: how many swarms share the two cores does not
//! change it. tokio's timers tick in whole milliseconds, so network-mode times are too.

pub mod clock;
pub mod link;
pub mod market;
pub mod partition;
pub mod ports;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use libp2p::core::transport::MemoryTransport;
use libp2p::core::upgrade::Version;
use libp2p::core::{ConnectedPoint, Transport};
use libp2p::gossipsub::{self, IdentTopic, MessageAuthenticity, ValidationMode};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm, SwarmBuilder, identity, plaintext, yamux};
use orien_sim::rng::Rng;
use tokio::sync::mpsc;
use tokio::time::Instant;

use link::LinkModel;

/// The gossip topic offers travel on (as orien-node's).
pub const OFFERS_TOPIC: &str = "orien/offers/1";

/// What to run.
#[derive(Debug, Clone)]
pub struct PropagationConfig {
    /// Swarms.
    pub nodes: usize,
    /// Peers each swarm dials (it is dialled by others too).
    pub dials: usize,
    /// Mean one-way latency of a link.
    pub latency: Duration,
    /// A link's latency varies uniformly by ± this, drawn per connection.
    pub jitter: Duration,
    /// Chance that a chunk's segment is lost and retransmitted.
    pub loss: f64,
    /// The retransmission's extra delay.
    pub retransmit: Duration,
    /// Gossipsub heartbeat (orien-node: 700 ms).
    pub heartbeat: Duration,
    /// Simulated time for the mesh to form before the first offer.
    pub warmup: Duration,
    /// Offers published, one after another, each by a node drawn from `seed`.
    pub samples: usize,
    /// Decides keys, links and publishers (the stack's own randomness it does not).
    pub seed: u64,
}

/// Where the traced offers got to.
#[derive(Debug, Clone)]
pub struct Propagation {
    /// Arrival time of each offer at each node it reached, after its publishing.
    pub arrivals: Vec<Duration>,
    /// Nodes each offer reached (the publisher excluded).
    pub reached: Vec<usize>,
    /// Simulated time the whole run took, warm-up included.
    pub simulated: Duration,
}

enum Command {
    Publish(Vec<u8>),
}

/// Runs `config.nodes` gossipsub swarms and traces `config.samples` offers.
pub fn propagation(config: &PropagationConfig) -> anyhow::Result<Propagation> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()?;
    runtime.block_on(run(config))
}

/// Memory-transport ports are process-wide: each run takes a block of its own.
static NEXT_PORT: AtomicU64 = AtomicU64::new(10_000);

/// The first of `count` memory-transport ports no other run in this process uses.
pub(crate) fn memory_ports(count: usize) -> u64 {
    NEXT_PORT.fetch_add(count as u64 + 1, Ordering::Relaxed)
}

fn draw(seed: u64, stream: u64) -> f64 {
    Rng::stream(seed, stream).unit()
}

fn swarm(config: &PropagationConfig, index: usize) -> anyhow::Result<Swarm<gossipsub::Behaviour>> {
    let mut secret = [0u8; 32];
    secret[..8].copy_from_slice(&config.seed.to_le_bytes());
    secret[8..16].copy_from_slice(&(index as u64).to_le_bytes());
    let key = identity::Keypair::ed25519_from_bytes(secret)?;
    let links = LinkModel {
        latency: config.latency,
        jitter: config.jitter,
        loss: config.loss,
        retransmit: config.retransmit,
        seed: config.seed,
        // Bare swarms trace latency and hops alone; a node's uplink is the market's.
        uplink_mbps: None,
    };
    let connections = std::sync::Arc::new(AtomicU64::new(0));
    let gossip = gossipsub::ConfigBuilder::default()
        .validation_mode(ValidationMode::Strict)
        .heartbeat_interval(config.heartbeat)
        .build()?;
    let behaviour = gossipsub::Behaviour::new(MessageAuthenticity::Signed(key.clone()), gossip)
        .map_err(|e| anyhow::anyhow!("gossipsub: {e}"))?;
    let mut swarm = SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_other_transport(move |key| {
            MemoryTransport::default()
                .map(move |conn, _: ConnectedPoint| {
                    // Each end of a connection draws its own read latency.
                    links.end(conn, index, connections.fetch_add(1, Ordering::Relaxed))
                })
                .upgrade(Version::V1)
                .authenticate(plaintext::Config::new(key))
                .multiplex(yamux::Config::default())
        })?
        .with_behaviour(|_| behaviour)?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(24 * 3600)))
        .build();
    swarm
        .behaviour_mut()
        .subscribe(&IdentTopic::new(OFFERS_TOPIC))?;
    Ok(swarm)
}

async fn run(config: &PropagationConfig) -> anyhow::Result<Propagation> {
    let started = Instant::now();
    let base = memory_ports(config.nodes);
    let address = |i: usize| -> Multiaddr {
        format!("/memory/{}", base + i as u64)
            .parse()
            .expect("a memory address")
    };
    let mut swarms = Vec::with_capacity(config.nodes);
    for i in 0..config.nodes {
        let mut swarm = swarm(config, i)?;
        swarm.listen_on(address(i))?;
        swarms.push(swarm);
    }
    let peers: Vec<PeerId> = swarms.iter().map(|s| *s.local_peer_id()).collect();
    for (i, swarm) in swarms.iter_mut().enumerate() {
        for k in 0..config.dials {
            let mut j =
                (draw(config.seed, (i * 64 + k) as u64 | 1 << 40) * config.nodes as f64) as usize;
            if j == i {
                j = (j + 1) % config.nodes;
            }
            swarm.dial(address(j).with(libp2p::multiaddr::Protocol::P2p(peers[j])))?;
        }
    }
    let (heard_tx, mut heard_rx) = mpsc::unbounded_channel::<(usize, Vec<u8>, Instant)>();
    let mut commands = Vec::with_capacity(config.nodes);
    for (i, mut swarm) in swarms.into_iter().enumerate() {
        let (tx, mut rx) = mpsc::unbounded_channel::<Command>();
        commands.push(tx);
        let heard = heard_tx.clone();
        tokio::spawn(async move {
            let topic = IdentTopic::new(OFFERS_TOPIC);
            loop {
                tokio::select! {
                    event = swarm.select_next_some() => {
                        if let SwarmEvent::Behaviour(gossipsub::Event::Message { message, .. }) = event {
                            let _ = heard.send((i, message.data, Instant::now()));
                        }
                    }
                    command = rx.recv() => match command {
                        Some(Command::Publish(data)) => {
                            let _ = swarm.behaviour_mut().publish(topic.clone(), data);
                        }
                        None => return,
                    },
                }
            }
        });
    }
    tokio::time::sleep(config.warmup).await;
    let mut arrivals = Vec::new();
    let mut reached = Vec::new();
    for sample in 0..config.samples {
        let from = (draw(config.seed, sample as u64 | 1 << 50) * config.nodes as f64) as usize;
        let data = format!("offer {sample} from {from}").into_bytes();
        let published = Instant::now();
        commands[from].send(Command::Publish(data.clone()))?;
        let mut got = 0;
        let deadline = published + Duration::from_secs(30);
        while got < config.nodes - 1 {
            match tokio::time::timeout_at(deadline, heard_rx.recv()).await {
                Ok(Some((_, heard, at))) if heard == data => {
                    got += 1;
                    arrivals.push(at - published);
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        reached.push(got);
        // Let stragglers and the next heartbeats pass before the next offer.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    Ok(Propagation {
        arrivals,
        reached,
        simulated: started.elapsed(),
    })
}
