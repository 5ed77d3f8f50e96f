//! Randomized simulation of whole sessions: a provider's and a renter's session
//! machines joined by a simulated network that drops, duplicates, delays and reorders
//! messages, on real on-disk ledgers, with crashes and restarts of either side.
//!
//! Time is simulated (one [`ManualClock`] for both nodes), so a seed replays the same
//! run exactly: the same messages lost, the same calls, the same crashes. Sessions run
//! one after another on the same two ledgers (one lane), so what one session leaves
//! behind is what the next one meets. After every session the run checks what ORIEN
//! promises:
//!
//! - the provider's ledger holds a prefix of the renter's chain, short by at most the
//!   one receipt whose ack was lost, and both hold the same chain when nothing was lost;
//! - the provider's unpaid work is within one ack window (the ack timeout plus the
//!   round trip of the last acknowledged receipt) of session time and every call slot;
//! - the renter paid no more than its own meter plus its tolerance;
//! - no ack left the renter before its receipt was durable in the renter's ledger;
//! - neither ledger lists the session as open once both sides are done;
//!
//! and at the end of the run both ledgers pass the full audit ([`Store::verify`]:
//! money is conserved, chains unbroken).
//!
//! The crashes are process crashes: a node's ledger is dropped without ceremony and
//! opened again from disk, while the machine (and its page cache) stays up. So the
//! ledgers are opened with [`Durability::ProcessCrash`]: every commit reaches the
//! operating system before it returns, which is all a process crash can test, and the
//! fsync that only a power loss would need is skipped. Power loss is not simulated;
//! nodes always run with the default, [`Durability::PowerLoss`].

mod network;
pub(super) mod session;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use orien_ledger::{Durability, Store, StoreOptions};
use orien_protocol::{Clock, ManualClock, NodeKey, Timestamp};

pub use network::{FaultRates, Rng, SLOW_DELAY, Schedule};

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Decides everything the run does.
    pub seed: u64,
    /// Sessions to run, one after another.
    pub sessions: u64,
    /// Stop early (successfully) after this much real time.
    pub time_limit: Option<Duration>,
    /// Where the two ledgers live (created if needed; should be empty).
    pub dir: PathBuf,
    /// The network's and hosts' faults.
    pub faults: FaultRates,
    /// The test that runs this configuration from `ORIEN_SIM_*`, named in the replay
    /// command of a failure.
    pub test: String,
}

/// What a run did and the worst it saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimReport {
    /// Sessions run to their end.
    pub sessions: u64,
    /// Receipts committed by the provider.
    pub receipts: u64,
    /// Messages sent (requests and answers).
    pub messages: u64,
    /// Messages lost.
    pub dropped: u64,
    /// Crashes (each followed by a restart on the same ledger).
    pub crashes: u64,
    /// Sessions on slow links (round trips beyond the receipt interval).
    pub slow: u64,
    /// Sessions whose acknowledged receipts charged for artefacts.
    pub charged_artefacts: u64,
    /// The worst provider loss (unpaid work) beside its bound, µUSDC, by their ratio.
    pub worst_provider: Option<(u64, u64)>,
    /// The worst renter overpayment (paid beyond its own meter; negative: less) beside
    /// its bound (the tolerance), µUSDC, by their ratio.
    pub worst_renter: Option<(i64, u64)>,
    /// Simulated time.
    pub simulated: Duration,
    /// Real time.
    pub elapsed: Duration,
}

/// A broken promise: which run and session, what broke, and how to replay it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "session {session} of seed {seed}: {what}\n  replay: ORIEN_SIM_SEED={seed} ORIEN_SIM_SESSIONS={replay} ORIEN_SIM_SECONDS=0 cargo test --release -p orien-daemon --test session_simulation -- {test} --exact --nocapture"
)]
pub struct Violation {
    /// The run's seed.
    pub seed: u64,
    /// The test to replay it with.
    pub test: String,
    /// The session's index in the run (from 0).
    pub session: u64,
    /// Sessions to run to replay it.
    pub replay: u64,
    /// What broke.
    pub what: String,
}

/// The two nodes: their keys, ledgers and the clock they share.
struct World {
    clock: Arc<ManualClock>,
    provider: NodeKey,
    renter: NodeKey,
    dir: PathBuf,
    provider_store: Option<Store>,
    renter_store: Option<Store>,
    rng: Rng,
    faults: FaultRates,
    report: SimReport,
}

/// Which node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Side {
    Provider,
    Renter,
}

impl World {
    fn store(&self, side: Side) -> &Store {
        match side {
            Side::Provider => self.provider_store.as_ref(),
            Side::Renter => self.renter_store.as_ref(),
        }
        .expect("a node's ledger is open between its restarts")
    }

    fn open(clock: &Arc<ManualClock>, path: PathBuf) -> Result<Store, String> {
        let options = StoreOptions {
            clock: clock.clone() as Arc<dyn Clock>,
            durability: Durability::ProcessCrash,
            ..StoreOptions::default()
        };
        Store::open_with(&path, options).map_err(|e| format!("cannot open {}: {e}", path.display()))
    }

    /// A crash: the ledger is closed without ceremony and opened again from disk.
    fn reopen(&mut self, side: Side) -> Result<(), String> {
        let (slot, name) = match side {
            Side::Provider => (&mut self.provider_store, "provider"),
            Side::Renter => (&mut self.renter_store, "renter"),
        };
        *slot = None;
        *slot = Some(Self::open(&self.clock, self.dir.join(name))?);
        Ok(())
    }
}

/// Runs the simulation: `Ok` with what it saw, or the first broken promise.
pub fn run(config: &SimConfig) -> Result<SimReport, Violation> {
    let started = Instant::now();
    let violation = |session: u64, what: String| Violation {
        seed: config.seed,
        test: config.test.clone(),
        session,
        replay: session + 1,
        what,
    };
    let mut rng = Rng::new(config.seed);
    let clock = Arc::new(ManualClock::new(Timestamp(1_800_000_000_000)));
    let open = |name: &str| World::open(&clock, config.dir.join(name));
    let provider_store = open("provider").map_err(|e| violation(0, e))?;
    let renter_store = open("renter").map_err(|e| violation(0, e))?;
    let mut world = World {
        provider: NodeKey::from_secret_bytes(rng.bytes()),
        renter: NodeKey::from_secret_bytes(rng.bytes()),
        clock: clock.clone(),
        dir: config.dir.clone(),
        provider_store: Some(provider_store),
        renter_store: Some(renter_store),
        rng,
        faults: config.faults,
        report: SimReport::default(),
    };
    for index in 0..config.sessions {
        if config
            .time_limit
            .is_some_and(|limit| started.elapsed() >= limit)
        {
            break;
        }
        session::run(&mut world).map_err(|what| violation(index, what))?;
        world.report.sessions += 1;
    }
    let last = world.report.sessions.saturating_sub(1);
    for side in [Side::Provider, Side::Renter] {
        world
            .store(side)
            .verify()
            .map_err(|e| violation(last, format!("the {side:?} ledger fails its audit: {e}")))?;
    }
    world.report.simulated = clock.monotonic();
    world.report.elapsed = started.elapsed();
    Ok(world.report)
}
