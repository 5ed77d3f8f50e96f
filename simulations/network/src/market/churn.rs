//! Churn (`churn.*`): providers going offline for their day and coming back, and
//! crashing and restarting, on the market's real nodes.
//!
//! The schedule is model mode's ([`orien_sim::model::churn_schedule`], run for the same
//! seed and minutes), so both modes churn the same providers at the same times,
//! counted from the market's opening; a provider away at the start goes offline as the
//! market opens.
//!
//! - *Going offline* is what `orien-node` does on shutdown:
//!   [`orien_daemon::daemon::end_sessions`] closes every session the provider serves on
//!   a closing receipt for the time served and tells its renter, then [`Node::shutdown`]
//!   withdraws the provider's offers, lets the swarm send the withdrawal for half a
//!   second and stops it; then the process exits.
//! - *A crash* stops the node with no goodbye: its task is dropped (no withdrawal, its
//!   offers left to expire in the books, every connection dropped at once).
//!
//! Either way the process ends, and with it every task the node left running: after a
//! crash, the sessions it provided close nothing and write nothing more. One runtime runs every
//! node here, and the node's session tasks are detached (`tokio::spawn`), so they
//! cannot be stopped from outside; they are cut off instead. Their network is gone with
//! the node's task, and at the instant of the stop (no task runs in between) the ledger
//! is copied as the process left it (every commit returned so far has reached the
//! files: `Durability::ProcessCrash`) into the directory the next start opens
//! (`node-<i>/ledger-<n>`). What the orphaned tasks still write goes to the old copy,
//! which nothing reads again. The modelled sandbox is shared by the incarnations; its
//! work records are read up to the stop.
//!
//! *Coming back* is a new [`DaemonParts::assemble`] with the same key, listen address
//! (`/memory/<port>`), sandbox and configuration, the ledger the stop left, and up to
//! three bootstrap peers among the nodes up at that moment. The node's own start does
//! the rest: it closes out the sessions the ledger lists as open (`Restarted`), tells
//! their renters, and publishes its offers anew.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use orien_daemon::{DaemonParts, NodeConfig, SessionConfig};
use orien_protocol::{Clock, EvmAddress, NodeKey};
use orien_sim::Scenario;
use orien_sim::model::churn::{Change, Schedule};
use orien_sim::rng::Rng;
use tokio::time::Instant;

use super::nodes::{Nodes, Retired, listen_for_offers, open_ledger};

/// Whether the scenario churns its providers.
pub(super) fn plays(scenario: &Scenario) -> bool {
    scenario.churn.diurnal_amplitude.0 > 0.0 || scenario.churn.crashes_per_hour.0 > 0.0
}

/// Model mode's schedule for `scenario` run `minutes` with `seed`.
pub(super) fn schedule(scenario: &Scenario, seed: u64, minutes: u32) -> Schedule {
    let mut scenario = scenario.clone();
    scenario.duration_minutes = minutes;
    orien_sim::model::churn_schedule(&scenario, seed)
}

/// What a provider is started from again: its parts but the ledger and bootstrap peers.
pub(super) struct Boot {
    key: NodeKey,
    clock: Arc<dyn Clock>,
    sandbox: Option<Arc<dyn orien_provider::Sandbox>>,
    payout: EvmAddress,
    node: NodeConfig,
    sessions: SessionConfig,
}

impl Boot {
    /// The parts a node was first started from.
    pub(super) fn of(parts: &DaemonParts) -> Self {
        Self {
            key: parts.key.clone(),
            clock: Arc::clone(&parts.clock),
            sandbox: parts.sandbox.clone(),
            payout: parts.payout,
            node: parts.node.clone(),
            sessions: parts.sessions.clone(),
        }
    }
}

/// One stop of a provider, as played.
#[derive(Debug, Clone, Copy)]
pub(super) struct Stop {
    pub(super) provider: usize,
    /// `Leaves` or `Crashes`.
    pub(super) change: Change,
    pub(super) at: Instant,
    /// The same instant on the nodes' clock (the sandbox's work records use it).
    pub(super) at_clock: Duration,
    /// When it was up again, if it was.
    pub(super) back: Option<Instant>,
}

/// The providers' stops as played; renters read it to tell why a session ended.
#[derive(Debug, Default)]
pub(super) struct ChurnLog {
    stops: Mutex<Vec<Stop>>,
}

impl ChurnLog {
    fn stops_mut(&self) -> std::sync::MutexGuard<'_, Vec<Stop>> {
        self.stops.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every stop so far.
    pub(super) fn stops(&self) -> Vec<Stop> {
        self.stops_mut().clone()
    }

    /// The first stop of `provider` from `from` to `to`, both included.
    pub(super) fn during(&self, provider: usize, from: Instant, to: Instant) -> Option<Stop> {
        self.stops_mut()
            .iter()
            .find(|s| s.provider == provider && from <= s.at && s.at <= to)
            .copied()
    }
}

/// Each provider's turns, `(µs from the opening, change)` in order, a provider away at
/// the start leaving at zero.
pub(super) fn timelines(schedule: &Schedule, providers: usize) -> Vec<Vec<(u64, Change)>> {
    let mut lines: Vec<Vec<(u64, Change)>> = (0..providers)
        .map(|p| {
            if schedule.away_at_start.get(p).copied().unwrap_or(false) {
                vec![(0, Change::Leaves)]
            } else {
                Vec::new()
            }
        })
        .collect();
    for turn in &schedule.turns {
        if let Some(line) = lines.get_mut(turn.provider as usize) {
            line.push((turn.at_us, turn.change));
        }
    }
    lines
}

/// Plays `schedule` (if the scenario churns) on the providers from `opened` (the
/// market's opening) until its last turn.
pub(super) async fn play(
    nodes: &Nodes,
    opened: Instant,
    schedule: Option<&Schedule>,
    seed: u64,
) -> anyhow::Result<()> {
    let Some(schedule) = schedule else {
        return Ok(());
    };
    let lines = timelines(schedule, nodes.providers);
    let providers = lines
        .into_iter()
        .enumerate()
        .map(|(index, line)| async move {
            let mut draws = Rng::stream(seed, 14 << 32 | index as u64);
            for (at_us, change) in line {
                tokio::time::sleep_until(opened + Duration::from_micros(at_us)).await;
                match change {
                    Change::Leaves | Change::Crashes => stop(nodes, index, change).await,
                    Change::Returns => start(nodes, index, &mut draws).await,
                }
                .with_context(|| format!("provider {index}: {change:?} at {at_us} µs"))?;
            }
            anyhow::Ok(())
        });
    for played in futures::future::join_all(providers).await {
        played?;
    }
    Ok(())
}

/// Provider `index` goes offline (`Leaves`) or crashes (`Crashes`).
async fn stop(nodes: &Nodes, index: usize, change: Change) -> anyhow::Result<()> {
    let sim = nodes.node(index);
    let Some(mut node) = sim.life().node.take() else {
        return Ok(());
    };
    // A trace publishing through it holds a handle for one round trip to its task.
    let node = loop {
        match Arc::try_unwrap(node) {
            Ok(node) => break node,
            Err(shared) => {
                node = shared;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    };
    let retired = Retired {
        connections_opened: super::tally::connections_opened(&node.metrics().render()),
        trimmed: node.metrics().peers_trimmed.get(),
        peer_lookups: node.metrics().peer_lookups.get(),
    };
    match change {
        Change::Leaves => {
            orien_daemon::daemon::end_sessions(&node).await;
            node.shutdown().await;
        }
        // Its task is dropped: no withdrawal, every connection gone at once.
        _ => drop(node),
    }
    let at = Instant::now();
    let at_clock = nodes.clock.monotonic();
    // The process ends here: nothing runs between the stop and this copy, so the copy
    // is the ledger as the process left it.
    let mut life = sim.life();
    let from = life.store.path().to_owned();
    let to = ledger_dir(&from, life.stops + 1);
    copy_ledger(&from, &to).with_context(|| format!("copying the ledger {}", from.display()))?;
    life.store = Arc::new(
        open_ledger(&to, &nodes.clock)
            .with_context(|| format!("the ledger {} does not reopen", to.display()))?,
    );
    life.stops += 1;
    life.retired.connections_opened += retired.connections_opened;
    life.retired.trimmed += retired.trimmed;
    life.retired.peer_lookups += retired.peer_lookups;
    drop(life);
    nodes.churn.stops_mut().push(Stop {
        provider: index,
        change,
        at,
        at_clock,
        back: None,
    });
    Ok(())
}

/// Provider `index` starts again on the ledger its stop left.
async fn start(nodes: &Nodes, index: usize, draws: &mut Rng) -> anyhow::Result<()> {
    let sim = nodes.node(index);
    let boot = sim.boot.as_ref().context("only providers start again")?;
    let up: Vec<usize> = (0..nodes.len())
        .filter(|&n| n != index && nodes.node(n).node().is_some())
        .collect();
    let mut bootstrap = Vec::new();
    while bootstrap.len() < up.len().min(3) {
        let address = nodes.addresses[up[draws.below(up.len())]].clone();
        if !bootstrap.contains(&address) {
            bootstrap.push(address);
        }
    }
    let store = sim.store();
    // The stopped incarnation's listener closes when its task is dropped, which the
    // runtime does at its next turn; a start in the same instant waits for it.
    let mut attempts = 0;
    let node = loop {
        let parts = DaemonParts {
            key: boot.key.clone(),
            clock: Arc::clone(&boot.clock),
            store: Arc::clone(&store),
            sandbox: boot.sandbox.clone(),
            payments: None,
            payout: boot.payout,
            node: NodeConfig {
                bootstrap: bootstrap.clone(),
                ..boot.node.clone()
            },
            sessions: boot.sessions.clone(),
        };
        match parts.assemble(true).await {
            Ok(assembled) => break assembled.node,
            Err(_) if attempts < 10 => {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => return Err(e).context("the node does not start again"),
        }
    };
    listen_for_offers(&node, index, Arc::clone(&nodes.ears));
    sim.life().node = Some(Arc::new(node));
    let now = Instant::now();
    if let Some(last) = nodes
        .churn
        .stops_mut()
        .iter_mut()
        .rev()
        .find(|s| s.provider == index)
    {
        last.back = Some(now);
    }
    Ok(())
}

/// The directory of a node's ledger after its `stops`-th stop, beside the first.
fn ledger_dir(first: &Path, stops: u32) -> PathBuf {
    let name = first
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.split('-').next())
        .unwrap_or("ledger");
    first.with_file_name(format!("{name}-{stops}"))
}

/// Copies the ledger at `from` (a RocksDB directory, open) to `to`, as a killed
/// process leaves its files: everything but the lock, which belongs to the process
/// holding `from` open.
fn copy_ledger(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if name == "LOCK" {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type()?.is_dir() {
            copy_ledger(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use orien_sim::model::churn::Turn;

    use super::*;

    #[test]
    fn each_provider_plays_its_own_turns_and_one_away_at_the_start_leaves_at_the_opening() {
        let turn = |at_us, provider, change| Turn {
            at_us,
            provider,
            change,
        };
        let schedule = Schedule {
            away_at_start: vec![false, true, false],
            turns: vec![
                turn(5, 0, Change::Crashes),
                turn(7, 1, Change::Returns),
                turn(9, 0, Change::Returns),
                turn(9, 2, Change::Leaves),
            ],
        };
        let lines = timelines(&schedule, 3);
        assert_eq!(
            lines,
            vec![
                vec![(5, Change::Crashes), (9, Change::Returns)],
                vec![(0, Change::Leaves), (7, Change::Returns)],
                vec![(9, Change::Leaves)],
            ]
        );
    }

    #[test]
    fn each_stop_gets_a_ledger_directory_of_its_own_beside_the_first() {
        let first = Path::new("/tmp/run/node-3/ledger");
        assert_eq!(ledger_dir(first, 1), Path::new("/tmp/run/node-3/ledger-1"));
        let second = ledger_dir(first, 1);
        assert_eq!(
            ledger_dir(&second, 2),
            Path::new("/tmp/run/node-3/ledger-2")
        );
    }

    #[test]
    fn a_ledger_copied_while_open_opens_elsewhere_without_its_lock() {
        let dir = tempfile::tempdir().expect("a directory");
        let clock: Arc<dyn Clock> = Arc::new(orien_protocol::SystemClock::new());
        let options = orien_ledger::StoreOptions {
            clock,
            durability: orien_ledger::Durability::ProcessCrash,
            ..orien_ledger::StoreOptions::default()
        };
        let open = orien_ledger::Store::open_with(dir.path().join("ledger"), options.clone())
            .expect("the ledger opens");
        let copy = dir.path().join("ledger-1");
        copy_ledger(open.path(), &copy).expect("the copy is made");
        assert!(!copy.join("LOCK").exists());
        // The original is still open (and locked); the copy opens all the same.
        let reopened = orien_ledger::Store::open_with(&copy, options).expect("the copy opens");
        reopened.verify().expect("the copy verifies");
        assert!(reopened.sessions().expect("sessions list").is_empty());
    }
}
