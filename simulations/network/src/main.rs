//! `orien-sim-network propagation`: real gossipsub swarms on the in-process network in
//! simulated time, beside model mode's trace of the same network, as JSON.

use std::time::{Duration, Instant};

use clap::Parser;
use orien_sim::model::gossip;
use orien_sim::report::quantile;
use orien_sim::scenario::{Loss, Network, NonNegative};
use orien_sim_network::{PropagationConfig, propagation};

/// Offer propagation: network mode (real libp2p gossipsub, simulated time) beside model
/// mode, on the same number of nodes and the same link latency.
#[derive(Debug, Parser)]
#[command(name = "orien-sim-network", version)]
struct Args {
    /// Swarms.
    #[arg(long, default_value_t = 1_000)]
    nodes: usize,
    /// Peers each swarm dials.
    #[arg(long, default_value_t = 4)]
    dials: usize,
    /// Mean one-way latency of a link, ms.
    #[arg(long, default_value_t = 40)]
    latency_ms: u64,
    /// A link's latency varies uniformly by ± this, ms.
    #[arg(long, default_value_t = 20)]
    jitter_ms: u64,
    /// Offers traced.
    #[arg(long, default_value_t = 10)]
    samples: usize,
    /// Simulated time the swarms run before the first offer (mesh forming and upkeep).
    #[arg(long, default_value_t = 10)]
    warmup_secs: u64,
    /// Decides keys, links and publishers.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn summary(
    mut ms: Vec<f64>,
    reached: f64,
    wall: Duration,
    simulated: Duration,
) -> serde_json::Value {
    ms.sort_by(f64::total_cmp);
    serde_json::json!({
        "p50_ms": quantile(&ms, 0.5),
        "p90_ms": quantile(&ms, 0.9),
        "p99_ms": quantile(&ms, 0.99),
        "max_ms": quantile(&ms, 1.0),
        "coverage": reached,
        "wall_s": wall.as_secs_f64(),
        "simulated_s": simulated.as_secs_f64(),
    })
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = PropagationConfig {
        nodes: args.nodes,
        dials: args.dials,
        latency: Duration::from_millis(args.latency_ms),
        jitter: Duration::from_millis(args.jitter_ms),
        loss: 0.0,
        retransmit: Duration::from_millis(200),
        heartbeat: Duration::from_millis(700),
        warmup: Duration::from_secs(args.warmup_secs),
        samples: args.samples,
        seed: args.seed,
    };
    let wall = Instant::now();
    let run = propagation(&config)?;
    let network_wall = wall.elapsed();
    let expected = (args.nodes - 1) * args.samples;
    let network = summary(
        run.arrivals
            .iter()
            .map(|a| a.as_secs_f64() * 1_000.0)
            .collect(),
        run.arrivals.len() as f64 / expected as f64,
        network_wall,
        run.simulated,
    );

    let wall = Instant::now();
    let model_network = Network {
        latency_ms: NonNegative(args.latency_ms as f64),
        jitter_ms: NonNegative(args.jitter_ms as f64),
        loss: Loss(0.0),
        ..Network::default()
    };
    let arrivals: Vec<f64> =
        gossip::calm_arrivals(args.nodes, 6, &model_network, args.samples, args.seed)
            .into_iter()
            .map(|us| us as f64 / 1_000.0)
            .collect();
    let reached = arrivals.len() as f64 / expected as f64;
    let model = summary(arrivals, reached, wall.elapsed(), Duration::ZERO);
    let out = serde_json::json!({
        "nodes": args.nodes,
        "latency_ms": args.latency_ms,
        "jitter_ms": args.jitter_ms,
        "samples": args.samples,
        "network": network,
        "model": model,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
