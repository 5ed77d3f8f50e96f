//! Network mode: a whole market of real ORIEN nodes in one process, in simulated time.
//!
//! Every node is what `orien-node` runs, put together by the same constructor
//! ([`orien_daemon::DaemonParts::assemble`]): the libp2p stack (gossipsub, Kademlia,
//! identify, the session protocol, file streams), the offer book, the session machines
//! and a RocksDB ledger in a temporary directory. Two things differ, both below the
//! node: connections are in-process links with the scenario's latency and loss
//! ([`crate::link`]), and the sandbox is [`orien_provider::model::ModelSandbox`] (tool
//! calls that take the time they are told). Every node runs in one current-thread
//! tokio runtime whose clock is paused, and every clock the node reads — its
//! [`Clock`](orien_protocol::Clock), tokio's timers, libp2p's through the shims — is
//! that one; so simulated latencies do not depend on how busy the two cores are.
//!
//! Renters are driven as agents would drive them through the API: a Poisson stream of
//! requests picks a renter and a tool, the renter looks at its own offer book, tries the
//! cheapest of a few offers it knows, makes one call and keeps the session for the time
//! it wanted (or until its budget is spent), then closes it. The scenario's partitions
//! cut the links between their sides while they last ([`crate::partition`]), and its
//! churn takes providers offline and back, and crashes and restarts them, as model mode
//! does (`market/churn.rs`). Its silent renters and exit delayers are model mode's,
//! made hostile through the node's own fault injection (`market/hostile.rs`).
//! Afterwards every ledger is read back and checked (`market/tally.rs`).

mod churn;
mod forger;
mod hostile;
mod nodes;
mod renters;
mod tally;

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use orien_sim::{Report, Scenario};

/// How to run a scenario in network mode.
#[derive(Debug, Clone)]
pub struct Options {
    /// Decides keys, links, prices, demand and traced offers.
    pub seed: u64,
    /// Simulated minutes of demand (the scenario's `duration_minutes` when `None`).
    pub minutes: Option<u32>,
    /// Where the nodes' ledgers live (a temporary directory under it is made and
    /// removed).
    pub scratch: Option<std::path::PathBuf>,
    /// Set to `true` to stop the run: it ends with [`Interrupted`], its nodes and
    /// ledgers removed.
    pub interrupt: Option<tokio::sync::watch::Receiver<bool>>,
}

/// The run was stopped through [`Options::interrupt`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted")
    }
}

impl std::error::Error for Interrupted {}

/// Where a run is.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// What the run is doing.
    pub phase: Phase,
    /// Simulated time since the first node started.
    pub simulated: Duration,
    /// Session requests made so far.
    pub requested: u64,
}

/// The parts of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Starting nodes: how many are up.
    Starting(usize),
    /// Renters at work.
    Market,
    /// Waiting for the last sessions to close.
    Draining,
    /// Reading every ledger back.
    Tallying,
}

/// Runs `scenario` in network mode and reads every ledger back into a [`Report`].
pub fn run(
    scenario: &Scenario,
    options: &Options,
    progress: &mut dyn FnMut(Progress),
) -> anyhow::Result<Report> {
    // A stopped provider's orphaned tasks hold its old ledger open a while beside the
    // one its next start opens.
    let churned = if churn::plays(scenario) {
        scenario.nodes.providers
    } else {
        0
    };
    open_files_for(scenario.node_count() + churned)?;
    let scratch = match &options.scratch {
        Some(dir) => tempfile::Builder::new()
            .prefix("orien-sim-")
            .tempdir_in(dir),
        None => tempfile::Builder::new().prefix("orien-sim-").tempdir(),
    }
    .context("cannot make a directory for the nodes' ledgers")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()?;
    let report = runtime.block_on(async {
        tokio::select! {
            report = market(scenario, options, scratch.path(), progress) => report,
            () = interrupted(options.interrupt.clone()) => Err(Interrupted.into()),
        }
    });
    // Ledgers close with their nodes; the runtime goes first.
    drop(runtime);
    report
}

/// Resolves once `interrupt` turns `true`; never without one.
async fn interrupted(interrupt: Option<tokio::sync::watch::Receiver<bool>>) {
    match interrupt {
        Some(mut interrupt) => {
            if interrupt.wait_for(|stop| *stop).await.is_err() {
                // Its sender is gone: nobody can interrupt any more.
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

/// Open files each node's ledger holds (RocksDB keeps its files open: logs, manifest,
/// write-ahead log and tables per column family); 14 measured at 100 nodes.
const FILES_PER_NODE: u64 = 16;

/// Raises the soft limit of open files to what `nodes` ledgers need (up to the hard
/// limit), or says how to raise it: the default soft limit of 1,024 on many systems
/// holds some sixty nodes.
fn open_files_for(nodes: u32) -> anyhow::Result<()> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let needed = u64::from(nodes) * FILES_PER_NODE + 256;
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current.is_none_or(|soft| soft >= needed) {
        return Ok(());
    }
    let hard = limit.maximum;
    anyhow::ensure!(
        hard.is_none_or(|hard| hard >= needed),
        "{nodes} nodes need about {needed} open files (their ledgers), but this process may \
         open at most {}; raise the limit (`ulimit -Hn {needed}` as root, or LimitNOFILE \
         in a systemd unit) or run fewer nodes",
        hard.unwrap_or(0)
    );
    limit.current = Some(needed);
    setrlimit(Resource::Nofile, limit).context("cannot raise the limit of open files")?;
    Ok(())
}

async fn market(
    scenario: &Scenario,
    options: &Options,
    scratch: &Path,
    progress: &mut dyn FnMut(Progress),
) -> anyhow::Result<Report> {
    let started = tokio::time::Instant::now();
    let minutes = options.minutes.unwrap_or(scenario.duration_minutes);
    let schedule = churn::plays(scenario).then(|| churn::schedule(scenario, options.seed, minutes));
    let nodes = nodes::Nodes::start(scenario, options.seed, scratch, &mut |up| {
        progress(Progress {
            phase: Phase::Starting(up),
            simulated: started.elapsed(),
            requested: 0,
        });
    })
    .await?;
    // The market opens now; partitions and churn count their minutes from here, as
    // model mode counts from its start.
    let opened = tokio::time::Instant::now();
    let partitions = tokio::spawn(
        std::sync::Arc::clone(&nodes.cuts).play(opened, scenario.network.partitions.clone()),
    );
    let mut market_progress = |phase, requested| {
        progress(Progress {
            phase,
            simulated: started.elapsed(),
            requested,
        });
    };
    let until = opened + std::time::Duration::from_secs(u64::from(minutes) * 60);
    let forger = forger::start(scenario, options.seed, &nodes, until)?;
    let market =
        renters::Market::new(scenario, options.seed, &nodes).run(minutes, &mut market_progress);
    let churn = churn::play(&nodes, opened, schedule.as_ref(), options.seed);
    let (outcome, churned) = tokio::join!(market, churn);
    churned.context("churn")?;
    // A partition that outlasts the run is left as it is while the ledgers are read.
    partitions.abort();
    let forged = forger.map(|(forged, task)| {
        task.abort();
        forged
    });
    progress(Progress {
        phase: Phase::Tallying,
        simulated: started.elapsed(),
        requested: outcome.requested,
    });
    // The nodes stay up while their ledgers are read; they stop with the runtime.
    tally::report(
        scenario,
        options.seed,
        minutes,
        &nodes,
        outcome,
        schedule.as_ref(),
        forged.as_deref(),
    )
    .await
}
