//! `orien-sim-network`: orien-sim's network mode. `run` simulates a scenario with real
//! ORIEN nodes on the in-process network in simulated time and writes the same report
//! as model mode; `propagation` traces offers through bare gossipsub swarms beside
//! model mode's trace of the same network, as JSON.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use orien_sim::Scenario;
use orien_sim::model::gossip;
use orien_sim::report::quantile;
use orien_sim::scenario::{Loss, Network, NonNegative};
use orien_sim_network::market::{self, Phase};
use orien_sim_network::{PropagationConfig, propagation};

/// orien-sim's network mode: whole markets of real ORIEN nodes (gossipsub, Kademlia,
/// offer book, session machines, RocksDB ledgers) on an in-process network with the
/// scenario's latency and loss, in simulated time.
#[derive(Debug, Parser)]
#[command(name = "orien-sim-network", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Simulate a scenario with real nodes and write its report (as `orien-sim run`).
    Run {
        /// The scenario file (`orien-sim list`; `orien-sim help run` explains every key).
        scenario: PathBuf,
        /// Seed for keys, links, prices and demand (default: the scenario's `seed`).
        #[arg(long)]
        seed: Option<u64>,
        /// Simulated minutes of demand (default: the scenario's `duration_minutes`).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        minutes: Option<u32>,
        /// Where to write report.json, report.md and the plots (default:
        /// sim-out/<name>-<seed>-network).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Where the nodes' ledgers go while it runs (default: the system's temporary
        /// directory); removed at the end, and when the run is interrupted (Ctrl-C,
        /// SIGTERM).
        #[arg(long)]
        scratch: Option<PathBuf>,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// Offer propagation through bare gossipsub swarms beside model mode, as JSON.
    Propagation(PropagationArgs),
}

/// Offer propagation: network mode (real libp2p gossipsub, simulated time) beside model
/// mode, on the same number of nodes and the same link latency.
#[derive(Debug, clap::Args)]
struct PropagationArgs {
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

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Run {
            scenario,
            seed,
            minutes,
            out,
            scratch,
            quiet,
        } => run(scenario, seed, minutes, out, scratch, quiet),
        Command::Propagation(args) => propagation_json(&args).map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("orien-sim-network: {e:#}");
            }
            ExitCode::from(2)
        }
    }
}

#[allow(clippy::print_stdout)]
fn run(
    path: PathBuf,
    seed: Option<u64>,
    minutes: Option<u32>,
    out: Option<PathBuf>,
    scratch: Option<PathBuf>,
    quiet: bool,
) -> anyhow::Result<ExitCode> {
    let scenario = Scenario::load(&path)?;
    let seed = seed.unwrap_or(scenario.seed);
    let out = out.unwrap_or_else(|| {
        PathBuf::from("sim-out").join(format!("{}-{seed}-network", scenario.name))
    });
    let minutes_total = minutes.unwrap_or(scenario.duration_minutes);
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(scenario.node_count().into())
    };
    let style = |unit: &str| {
        ProgressStyle::with_template(&format!(
            "{{prefix}} [{{bar:40}}] {{pos}}/{{len}} {unit}, {{elapsed}} {{msg}}"
        ))
        .expect("a valid template")
        .progress_chars("=> ")
    };
    bar.set_style(style("nodes started"));
    bar.set_prefix(format!(
        "{} ({} nodes, seed {seed}, network mode)",
        scenario.name,
        scenario.node_count()
    ));
    let (interrupt, signalled) = watch_signals()?;
    let options = market::Options {
        seed,
        minutes,
        scratch,
        interrupt: Some(interrupt),
    };
    let started = Instant::now();
    let mut market_started = None;
    // Where no bar is drawn (a log, CI), a line at every tenth of the nodes started and
    // every simulated minute.
    let mut lines = (!quiet && !std::io::stderr().is_terminal()).then(Milestones::default);
    let nodes = scenario.node_count();
    let report = market::run(&scenario, &options, &mut |p| match p.phase {
        Phase::Starting(up) => {
            bar.set_position(up as u64);
            if let Some(lines) = &mut lines {
                lines.nodes(up, nodes as usize, started.elapsed());
            }
        }
        Phase::Market | Phase::Draining => {
            let from = *market_started.get_or_insert_with(|| {
                bar.set_style(style("simulated minutes"));
                bar.set_length(minutes_total.into());
                p.simulated
            });
            bar.set_position(p.simulated.saturating_sub(from).as_secs() / 60);
            if let Some(lines) = &mut lines {
                let minute = p.simulated.saturating_sub(from).as_secs() / 60;
                lines.minute(minute, minutes_total.into(), p.requested, started.elapsed());
            }
            bar.set_message(format!(
                "{} requests{}",
                p.requested,
                if p.phase == Phase::Draining {
                    ", last sessions closing"
                } else {
                    ""
                }
            ));
        }
        Phase::Tallying => bar.set_message("reading the ledgers"),
    });
    bar.finish_and_clear();
    let report = match report {
        Err(e) if e.is::<market::Interrupted>() => {
            let code = signalled.load(std::sync::atomic::Ordering::SeqCst);
            #[allow(clippy::print_stderr)]
            {
                eprintln!("orien-sim-network: interrupted; no report written");
            }
            return Ok(ExitCode::from(code));
        }
        report => report?,
    };
    let (summary, code) = orien_sim::output::finish(&report, started.elapsed(), &out)?;
    println!("{summary}");
    Ok(code)
}

/// Turns the first SIGINT or SIGTERM into the run's interrupt: the run stops, its nodes
/// stop and their ledgers are removed, and the process exits as a shell expects of an
/// interrupted command (130, 143: the code is returned). A second signal ends the
/// process at once. The simulation runs on one thread in simulated time, where a signal
/// is not a timer it could wait for: a thread of its own waits for them.
fn watch_signals() -> anyhow::Result<(
    tokio::sync::watch::Receiver<bool>,
    std::sync::Arc<std::sync::atomic::AtomicU8>,
)> {
    use std::sync::atomic::{AtomicU8, Ordering};
    use tokio::signal::unix::{SignalKind, signal};
    let watcher = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    // Registered before the run starts, so an early Ctrl-C is caught too.
    let (mut interrupt, mut terminate) = {
        let _entered = watcher.enter();
        (
            signal(SignalKind::interrupt())?,
            signal(SignalKind::terminate())?,
        )
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let code = std::sync::Arc::new(AtomicU8::new(0));
    let signalled = std::sync::Arc::clone(&code);
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            watcher.block_on(async {
                for nth in 0.. {
                    let code = tokio::select! {
                        _ = interrupt.recv() => 130,
                        _ = terminate.recv() => 143,
                    };
                    #[allow(clippy::print_stderr)]
                    if nth == 0 {
                        signalled.store(code, Ordering::SeqCst);
                        eprintln!(
                            "\norien-sim-network: interrupted; stopping the nodes and removing \
                             their ledgers (again to stop at once)"
                        );
                        let _ = stop.send(true);
                    } else {
                        std::process::exit(code.into());
                    }
                }
            });
        })?;
    Ok((stopped, code))
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

#[allow(clippy::print_stdout)]
fn propagation_json(args: &PropagationArgs) -> anyhow::Result<()> {
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

/// Plain progress lines for a stderr that is not a terminal.
#[derive(Debug, Default)]
struct Milestones {
    nodes_told: usize,
    minute_told: Option<u64>,
}

// Progress is what this command line writes to stderr.
#[allow(clippy::print_stderr)]
impl Milestones {
    fn nodes(&mut self, up: usize, of: usize, wall: Duration) {
        let tenth = of.div_ceil(10).max(1);
        if up >= self.nodes_told + tenth || (up == of && self.nodes_told < of) {
            self.nodes_told = up;
            eprintln!("{up} of {of} nodes started, {:.0} s", wall.as_secs_f64());
        }
    }

    fn minute(&mut self, minute: u64, of: u64, requested: u64, wall: Duration) {
        if self.minute_told.is_none_or(|told| minute > told) {
            self.minute_told = Some(minute);
            eprintln!(
                "simulated minute {minute} of {of}, {requested} requests, {:.0} s",
                wall.as_secs_f64()
            );
        }
    }
}
