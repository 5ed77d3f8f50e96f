//! The market's nodes: each one `orien-node`'s parts, started in this process.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use libp2p::core::ConnectedPoint;
use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::upgrade::Version;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId, Transport, noise, yamux};
use orien_daemon::network::{BuildError, NetworkTuning};
use orien_daemon::{
    CustomTransport, DaemonParts, Node, NodeConfig, OfferEvent, SessionConfig, TransportKind,
};
use orien_ledger::{Durability, Store, StoreOptions};
use orien_protocol::{Clock, EvmAddress, Millis, NodeId, NodeKey, OfferId, ToolName, Usdc};
use orien_provider::model::{ModelRun, ModelSandbox};
use orien_provider::{ProviderConfig, Tool};
use orien_sim::Scenario;
use orien_sim::rng::Rng;
use tokio::time::Instant;

use crate::clock::SimClock;
use crate::link::LinkModel;
use crate::partition::Cuts;

use super::churn::{Boot, ChurnLog};
use super::hostile::Hostile;

/// How long the one modelled call of each session runs, ms.
pub(super) const CALL_MS: u64 = 1_000;

/// A modelled tool call runs `{"ms": "<n>"}` milliseconds.
pub(super) fn call_args(ms: u64) -> String {
    format!(r#"{{"ms":"{ms}"}}"#)
}

/// An offer that reached a node: when, and which.
#[derive(Debug, Clone, Copy)]
pub(super) struct Heard {
    pub(super) node: usize,
    pub(super) offer: OfferId,
    pub(super) at: Instant,
    /// The peer it came through first.
    pub(super) source: Option<PeerId>,
}

/// Offers of the providers being traced, as each node's book took them in.
#[derive(Debug, Default)]
pub(super) struct Ears {
    traced: Mutex<HashSet<NodeId>>,
    heard: Mutex<Vec<Heard>>,
}

impl Ears {
    /// From now on, records the offers `provider` publishes.
    pub(super) fn trace(&self, provider: NodeId) {
        lock(&self.traced).insert(provider);
    }

    fn hear(&self, node: usize, provider: &NodeId, offer: OfferId, source: Option<PeerId>) {
        if lock(&self.traced).contains(provider) {
            lock(&self.heard).push(Heard {
                node,
                offer,
                at: Instant::now(),
                source,
            });
        }
    }

    /// Everything recorded.
    pub(super) fn heard(&self) -> Vec<Heard> {
        lock(&self.heard).clone()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a provider sells.
#[derive(Debug, Clone)]
pub(super) struct Stall {
    pub(super) sandbox: ModelSandbox,
    /// Each tool it sells (by the scenario's index) at its price per minute.
    pub(super) prices: Vec<(usize, Usdc)>,
}

/// One node of the market: running, or (a provider churned away) down.
pub(super) struct SimNode {
    pub(super) id: NodeId,
    /// Providers only.
    pub(super) stall: Option<Stall>,
    /// How to start it again (providers only).
    pub(super) boot: Option<Boot>,
    life: Mutex<Life>,
}

/// A node's present incarnation.
pub(super) struct Life {
    /// The node while it runs; `None` while it is down.
    pub(super) node: Option<Arc<Node>>,
    /// Its ledger: the running node's, or the one a stopped node left, which its next
    /// start opens.
    pub(super) store: Arc<Store>,
    /// How many times it stopped.
    pub(super) stops: u32,
    /// Connections its stopped incarnations had opened and trimmed.
    pub(super) retired: Retired,
}

/// Counters of a node's stopped incarnations, kept for the report.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Retired {
    pub(super) connections_opened: u64,
    pub(super) trimmed: u64,
    pub(super) peer_lookups: u64,
}

impl SimNode {
    /// The node, while it runs.
    pub(super) fn node(&self) -> Option<Arc<Node>> {
        lock(&self.life).node.clone()
    }

    /// Its ledger as it is now (the one a stopped node left, while it is down).
    pub(super) fn store(&self) -> Arc<Store> {
        Arc::clone(&lock(&self.life).store)
    }

    /// Its present incarnation, to stop or start it.
    pub(super) fn life(&self) -> std::sync::MutexGuard<'_, Life> {
        lock(&self.life)
    }
}

/// What a renter's task needs of the market, cheap to clone.
pub(super) struct Shared {
    pub(super) renter: Arc<Node>,
    pub(super) renter_index: usize,
    pub(super) tools: Arc<[ToolName]>,
    pub(super) by_node: Arc<HashMap<NodeId, usize>>,
    /// The providers' stops so far, to tell a session's end by churn.
    pub(super) churn: Arc<ChurnLog>,
    /// Silent renters and exit delayers, to tell a session's end by them.
    pub(super) hostile: Arc<Hostile>,
}

/// Simulated time between two nodes joining: a thousand join over four minutes
/// before the market opens.
pub(super) const JOIN_SPACING: Duration = Duration::from_millis(250);

/// Every node of the market: providers first, then renters, then Sybils.
pub(super) struct Nodes {
    pub(super) all: Vec<SimNode>,
    pub(super) providers: usize,
    pub(super) renters: usize,
    /// Nodes that publish cheap offers and never serve (`hostile.sybil_nodes`).
    pub(super) sybils: usize,
    pub(super) tools: Arc<[ToolName]>,
    by_node: Arc<HashMap<NodeId, usize>>,
    pub(super) clock: Arc<SimClock>,
    pub(super) ears: Arc<Ears>,
    pub(super) by_peer: HashMap<PeerId, usize>,
    pub(super) payout: EvmAddress,
    pub(super) offer_ttl: Millis,
    /// The scenario's partitions, which every connection end consults.
    pub(super) cuts: Arc<Cuts>,
    /// Each node's address, `/memory/<port>/p2p/<peer>`.
    pub(super) addresses: Vec<Multiaddr>,
    /// The providers' stops and starts (`churn.*`), as played.
    pub(super) churn: Arc<ChurnLog>,
    /// Silent renters and exit delayers (`hostile.*`), and what they did.
    pub(super) hostile: Arc<Hostile>,
}

impl Nodes {
    /// Starts every node of `scenario`, each bootstrapped from up to three started
    /// before it; `progress` hears how many are up.
    pub(super) async fn start(
        scenario: &Scenario,
        seed: u64,
        scratch: &Path,
        progress: &mut dyn FnMut(usize),
    ) -> anyhow::Result<Self> {
        let providers = scenario.nodes.providers as usize;
        let renters = scenario.nodes.renters as usize;
        let sybils = scenario.hostile.sybil_nodes as usize;
        let count = providers + renters + sybils;
        anyhow::ensure!(count >= 2, "network mode needs at least two nodes");
        let tools = scenario
            .tools
            .iter()
            .map(|t| {
                ToolName::new(&t.name)
                    .map_err(|e| anyhow::anyhow!("tool {:?} is not a tool name: {e}", t.name))
            })
            .collect::<anyhow::Result<Arc<[_]>>>()?;
        let network = &scenario.network;
        let links = links(scenario, seed);
        let rules = &scenario.sessions;
        let sessions = SessionConfig {
            receipt_interval: Millis((rules.receipt_interval_secs.0 * 1_000.0) as u64),
            ack_timeout: Millis((rules.ack_timeout_secs.0 * 1_000.0) as u64),
            max_sessions: scenario.nodes.lanes as usize,
            ..SessionConfig::default()
        };
        let offer_ttl = Duration::from_secs_f64(rules.offer_ttl_minutes.0 * 60.0);
        let clock = Arc::new(SimClock::new());
        let ears = Arc::new(Ears::default());
        let base = crate::memory_ports(count);
        let cuts = Arc::new(Cuts::new(seed, &network.partitions, base, count));
        let mut draws = Rng::stream(seed, 11);
        let payout = EvmAddress::from_bytes([0x5e; 20]);
        let mut nodes = Self {
            all: Vec::with_capacity(count),
            providers,
            renters,
            sybils,
            tools,
            by_node: Arc::default(),
            clock,
            ears,
            by_peer: HashMap::with_capacity(count),
            payout,
            offer_ttl: Millis::from_duration(offer_ttl),
            cuts,
            addresses: Vec::with_capacity(count),
            churn: Arc::default(),
            hostile: Arc::new(Hostile::of(scenario, seed)),
        };
        let mut addresses: Vec<Multiaddr> = Vec::with_capacity(count);
        for index in 0..count {
            let key = node_key(seed, index);
            let id = key.node_id();
            let peer = key.to_libp2p_keypair().public().to_peer_id();
            let stall = if index < providers {
                Some(nodes.stall(scenario, id, &mut draws)?)
            } else if index >= providers + renters {
                Some(nodes.sybil_stall(scenario, id, index - providers - renters)?)
            } else {
                None
            };
            let mut bootstrap = Vec::new();
            while bootstrap.len() < index.min(3) {
                let address = addresses[draws.below(index)].clone();
                if !bootstrap.contains(&address) {
                    bootstrap.push(address);
                }
            }
            let dir = scratch.join(format!("node-{index}"));
            let store = Arc::new(
                open_ledger(&dir.join("ledger"), &nodes.clock)
                    .with_context(|| format!("node {index}: the ledger does not open"))?,
            );
            let listen: Multiaddr = format!("/memory/{}", base + index as u64).parse()?;
            let parts = DaemonParts {
                key,
                // A receipt cheat's meter runs fast; its ledger keeps honest time.
                clock: match nodes.hostile.cheat_rate(index) {
                    Some(rate) => Arc::new(crate::clock::FastClock::new(rate)),
                    None => nodes.clock.clone(),
                },
                store: Arc::clone(&store),
                sandbox: stall
                    .as_ref()
                    .map(|s| Arc::new(s.sandbox.clone()) as Arc<dyn orien_provider::Sandbox>),
                payments: None,
                payout,
                node: NodeConfig {
                    listen: vec![listen.clone()],
                    bootstrap,
                    transport: TransportKind::Custom(transport(
                        links,
                        index,
                        Arc::clone(&nodes.cuts),
                    )),
                    tuning: NetworkTuning {
                        heartbeat: Duration::from_secs_f64(network.heartbeat_ms.0 / 1_000.0),
                        ..NetworkTuning::default()
                    },
                    offer_ttl,
                    faults: nodes.hostile.faults(index),
                    ..NodeConfig::default()
                },
                sessions: sessions.clone(),
            };
            // Churn starts a provider again from the same parts.
            let boot = stall.as_ref().map(|_| Boot::of(&parts));
            let node = parts
                .assemble(true)
                .await
                .with_context(|| format!("node {index} does not start"))?
                .node;
            listen_for_offers(&node, index, Arc::clone(&nodes.ears));
            addresses.push(listen.with(Protocol::P2p(peer)));
            nodes.by_peer.insert(peer, index);
            nodes.all.push(SimNode {
                id,
                stall,
                boot,
                life: Mutex::new(Life {
                    node: Some(Arc::new(node)),
                    store,
                    stops: 0,
                    retired: Retired::default(),
                }),
            });
            progress(index + 1);
            // Nodes join a few a second, as a market grows, not all in one instant:
            // every joiner's Kademlia walk opens connections that its peers keep for
            // their budget's grace (20 s) before trimming, and a thousand joining
            // at once would have every node hold connections to most of the others.
            tokio::time::sleep(JOIN_SPACING).await;
        }
        nodes.by_node = Arc::new(
            nodes
                .all
                .iter()
                .enumerate()
                .map(|(index, n)| (n.id, index))
                .collect(),
        );
        nodes.addresses = addresses;
        Ok(nodes)
    }

    /// Sybil `s`'s offers, as model mode draws them: its `k`-th of
    /// `hostile.sybil_offers_each` for tool `(s + k) % tools`, at half the tool's lowest
    /// price. A node holds one offer per tool (a second replaces the first in every
    /// book), so a Sybil publishes at most one per tool.
    fn sybil_stall(&self, scenario: &Scenario, id: NodeId, s: usize) -> anyhow::Result<Stall> {
        let markets = &scenario.tools;
        let each = (scenario.hostile.sybil_offers_each as usize).min(markets.len());
        let prices = (0..each)
            .map(|k| {
                let t = (s + k) % markets.len();
                let half = markets[t].price_per_minute.min.0.micros() / 2;
                (t, Usdc::from_micros(half.max(1)))
            })
            .collect();
        self.stall_of(id, prices)
    }

    /// A provider's tools at prices drawn from the scenario's ranges; every provider
    /// sells at least one.
    fn stall(&self, scenario: &Scenario, id: NodeId, draws: &mut Rng) -> anyhow::Result<Stall> {
        let markets = &scenario.tools;
        let mut sells: Vec<usize> = (0..markets.len())
            .filter(|&t| draws.chance(markets[t].providers.0))
            .collect();
        if sells.is_empty() {
            sells.push(draws.below(markets.len()));
        }
        let prices: Vec<(usize, Usdc)> = sells
            .into_iter()
            .map(|t| {
                (
                    t,
                    orien_sim::model::draw_price(draws, &markets[t].price_per_minute),
                )
            })
            .collect();
        self.stall_of(id, prices)
    }

    /// A stall selling each of `prices`' tools at its price, on the modelled sandbox.
    fn stall_of(&self, id: NodeId, prices: Vec<(usize, Usdc)>) -> anyhow::Result<Stall> {
        let config: String = prices
            .iter()
            .map(|&(t, price)| tool_config(&self.tools[t], price))
            .collect();
        let tools: Vec<Tool> = ProviderConfig::parse(&config, Path::new("network-mode.toml"))
            .map_err(|e| anyhow::anyhow!("the modelled tools do not parse: {e}"))?
            .1;
        let sandbox = ModelSandbox::with_clock(
            id,
            tools,
            |_tool: &Tool, args: &serde_json::Value| {
                let ms = args
                    .get("ms")
                    .and_then(|v| v.as_str())
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
                ModelRun::exits_after(Duration::from_millis(ms), b"done\n".to_vec())
            },
            self.clock.clone(),
        );
        Ok(Stall { sandbox, prices })
    }

    /// The node at `index`.
    pub(super) fn node(&self, index: usize) -> &SimNode {
        &self.all[index]
    }

    /// What renter `index`'s task needs.
    pub(super) fn shared(&self, index: usize) -> Shared {
        Shared {
            renter: self.all[index]
                .node()
                .expect("renters run throughout: only providers churn"),
            renter_index: index,
            tools: Arc::clone(&self.tools),
            by_node: Arc::clone(&self.by_node),
            churn: Arc::clone(&self.churn),
            hostile: Arc::clone(&self.hostile),
        }
    }

    /// How many nodes there are.
    pub(super) fn len(&self) -> usize {
        self.all.len()
    }

    /// The index of the node `id`.
    pub(super) fn index_of(&self, id: &NodeId) -> Option<usize> {
        self.by_node.get(id).copied()
    }
}

/// The scenario's links: its latency, jitter and loss (a lost segment costs three
/// latencies), and its nodes' uplink.
pub(super) fn links(scenario: &Scenario, seed: u64) -> LinkModel {
    let network = &scenario.network;
    LinkModel {
        latency: Duration::from_secs_f64(network.latency_ms.0 / 1_000.0),
        jitter: Duration::from_secs_f64(network.jitter_ms.0 / 1_000.0),
        loss: network.loss.0,
        retransmit: Duration::from_secs_f64(3.0 * network.latency_ms.0 / 1_000.0),
        seed,
        uplink_mbps: Some(network.uplink_mbps.0),
    }
}

/// Opens a node's ledger at `dir` as every node of the market does: on the simulated
/// clock, each commit surviving a process crash (not a power loss).
pub(super) fn open_ledger(
    dir: &Path,
    clock: &Arc<SimClock>,
) -> Result<Store, orien_ledger::StoreError> {
    Store::open_with(
        dir,
        StoreOptions {
            clock: clock.clone() as Arc<dyn Clock>,
            durability: Durability::ProcessCrash,
            ..StoreOptions::default()
        },
    )
}

/// A modelled tool priced by the session minute, as a provider's config file says it.
fn tool_config(tool: &ToolName, price: Usdc) -> String {
    // A call's worst case (its whole limit at the session's price) must fit the
    // budget, or the provider refuses it: ten times the one call renters make.
    let max_exec_ms = 10 * CALL_MS;
    format!(
        r#"
[tools.{tool}]
description = "The scenario's {tool}, modelled: a call runs as long as it is asked to."
version = "1"
image = "orien/model:1"
argv = ["work", "{{ms}}"]
schema = '{{"type":"object","additionalProperties":false,"required":["ms"],"properties":{{"ms":{{"type":"string","pattern":"^[0-9]{{1,8}}$"}}}}}}'

[tools.{tool}.limits]
max_exec_ms = {max_exec_ms}
cpus = 1
memory = "256MiB"
pids = 64
tmpfs = "64MiB"
output = "64KiB"
workspace = "1MiB"
concurrent_execs = 1

[tools.{tool}.pricing]
session_per_minute = "{price}"
exec_per_minute = "0"
"#,
        price = price.decimal(),
    )
}

/// Node `index`'s key, from the seed.
fn node_key(seed: u64, index: usize) -> NodeKey {
    let mut secret = [0u8; 32];
    secret[..8].copy_from_slice(&seed.to_le_bytes());
    secret[8..16].copy_from_slice(&(index as u64).to_le_bytes());
    secret[16..24].copy_from_slice(b"orienmkt");
    NodeKey::from_secret_bytes(secret)
}

/// In-process connections through links with the scenario's latency and loss, which
/// its partitions cut (`cuts`), written through the node's uplink, then noise and yamux
/// as over TCP.
fn transport(links: LinkModel, index: usize, cuts: Arc<Cuts>) -> CustomTransport {
    let connections = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let uplink = links.uplink();
    CustomTransport::new(move |key| {
        let connections = Arc::clone(&connections);
        let cuts = Arc::clone(&cuts);
        let uplink = uplink.clone();
        let noise = noise::Config::new(key).map_err(|e| BuildError::Transport(e.to_string()))?;
        // Ports given back when the node stops, so that churn can start it again on its
        // address.
        Ok(crate::ports::ReusableMemory::default()
            .map(move |conn, endpoint: ConnectedPoint| {
                let n = connections.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let end = links.end(conn, index, n);
                let end = match &uplink {
                    Some(uplink) => end.paced(uplink.clone()),
                    None => end,
                };
                cuts.end(end, index, &endpoint)
            })
            .upgrade(Version::V1)
            .authenticate(noise)
            .multiplex(yamux::Config::default())
            .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)))
            .boxed())
    })
}

/// Records when node `index`'s book takes in each traced offer.
pub(super) fn listen_for_offers(node: &Node, index: usize, ears: Arc<Ears>) {
    let mut events = node.offer_events();
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(OfferEvent::Added {
                    id,
                    provider,
                    source,
                    ..
                }) => ears.hear(index, &provider, id, source),
                Ok(OfferEvent::Removed { .. }) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    });
}
