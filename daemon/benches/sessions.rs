//! Simulated sessions per second: the randomized whole-session simulation (both session
//! machines, a lossy network, crashes, real RocksDB ledgers), one independent run per
//! core as a fuzzer runs it, beside the ledger work alone — the same receipts committed
//! one at a time into fresh ledgers on both sides, on as many threads, the writes no
//! simulation of these sessions can skip, with the simulator's durability (process
//! crashes: unsynced WAL) and, for reference, a node's (synced). Prints one JSON row.
//!
//!   cargo bench -p orien-daemon --bench sessions -- [--sessions N] [--seed S] [--threads T]
//!
//! `--sessions` is the total over all runs; run `i` takes seed `S + i`. The ledgers live
//! in `$TMPDIR` (`scripts/bench` puts them on a RAM filesystem, as the simulator's
//! crashes are process crashes that never lose what reached the kernel).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::time::{Duration, Instant};

use orien_daemon::session::simulation::{self, FaultRates, SimConfig, SimReport};
use orien_ledger::receipts::StoredReceipt;
use orien_ledger::{Durability, SessionRecord, Store, StoreOptions};

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| v.parse().expect("a number"))
}

/// One session's receipts as the provider committed them.
type Work = Vec<(SessionRecord, Vec<StoredReceipt>)>;

fn main() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    let threads = arg("--threads", cores).max(1);
    let sessions = arg("--sessions", 6_000);
    let seed = arg("--seed", 1);
    let dirs: Vec<tempfile::TempDir> = (0..threads).map(|_| tempfile::tempdir().unwrap()).collect();

    let started = Instant::now();
    let reports: Vec<SimReport> = std::thread::scope(|scope| {
        let runs: Vec<_> = dirs
            .iter()
            .enumerate()
            .map(|(i, dir)| {
                let config = SimConfig {
                    seed: seed + i as u64,
                    sessions: sessions / threads,
                    time_limit: None,
                    dir: dir.path().to_owned(),
                    faults: FaultRates::default(),
                    test:
                        "sessions_under_loss_duplication_reordering_and_crashes_keep_every_promise"
                            .into(),
                };
                scope.spawn(move || simulation::run(&config).unwrap_or_else(|v| panic!("{v}")))
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let elapsed = started.elapsed();
    let simulated_sessions: u64 = reports.iter().map(|r| r.sessions).sum();
    let receipts: u64 = reports.iter().map(|r| r.receipts).sum();
    let crashes: u64 = reports.iter().map(|r| r.crashes).sum();
    let simulated = simulated_sessions as f64 / elapsed.as_secs_f64();

    // The baseline: every receipt each run's provider committed, committed again one at a
    // time into two fresh ledgers (a provider's and a renter's) per thread, as the
    // machines commit them.
    let work: Vec<Work> = dirs.iter().map(|dir| committed_work(dir.path())).collect();
    let (committed, unsynced) = ledger_work(&work, Durability::ProcessCrash);
    let (_, synced) = ledger_work(&work, Durability::PowerLoss);
    let listed: usize = work.iter().map(Vec::len).sum();
    let baseline = listed as f64 / unsynced.as_secs_f64();
    let synced = listed as f64 / synced.as_secs_f64();
    let row = serde_json::json!({
        "name": format!(
            "simulated sessions ({threads} runs side by side, seeds {seed}..{}; both machines, 10 % loss, 5 % duplicates, ≤ 300 ms reordering delays (≤ 900 ms on the 10 % of sessions with slow links), 15 % with a crash and restart ({crashes} crashes); real RocksDB; {simulated_sessions} sessions, {receipts} receipts) vs the ledger work alone on {threads} threads ({committed} commits one at a time, unsynced as in the simulation; synced: {synced:.1} sessions/s)",
            seed + threads - 1
        ),
        "value": (simulated * 10.0).round() / 10.0,
        "unit": "sessions/s",
        "baseline": (baseline * 10.0).round() / 10.0,
        "ratio": ((simulated / baseline) * 1000.0).round() / 1000.0,
        "goal": ">= 1000 sessions/s",
    });
    println!("{row}");
}

/// The sessions and receipts the provider of the run in `dir` committed.
fn committed_work(dir: &std::path::Path) -> Work {
    let source = Store::open_with(
        dir.join("provider"),
        StoreOptions {
            read_only: true,
            ..StoreOptions::default()
        },
    )
    .unwrap();
    source
        .sessions()
        .unwrap()
        .into_iter()
        .map(|(record, _)| {
            let receipts = source.receipts(&record.session).unwrap();
            (record, receipts)
        })
        .collect()
}

/// Commits every run's receipts, one run per thread, one receipt at a time into two fresh
/// ledgers of this durability (a provider's and a renter's): the commits made and the
/// time they took.
fn ledger_work(work: &[Work], durability: Durability) -> (u64, Duration) {
    let fresh: Vec<tempfile::TempDir> = work.iter().map(|_| tempfile::tempdir().unwrap()).collect();
    let open = |dir: &tempfile::TempDir, name: &str| {
        let options = StoreOptions {
            durability,
            ..StoreOptions::default()
        };
        Store::open_with(dir.path().join(name), options).unwrap()
    };
    let targets: Vec<[Store; 2]> = fresh.iter().map(|d| [open(d, "a"), open(d, "b")]).collect();
    let started = Instant::now();
    let committed: u64 = std::thread::scope(|scope| {
        let threads: Vec<_> = work
            .iter()
            .zip(&targets)
            .map(|(work, targets)| {
                scope.spawn(move || {
                    let mut committed = 0u64;
                    for (record, receipts) in work {
                        for target in targets {
                            target.open_session(record.clone()).unwrap();
                        }
                        for stored in receipts {
                            for target in targets {
                                target.ingest(stored.acked.clone()).unwrap();
                                committed += 1;
                            }
                        }
                    }
                    committed
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).sum()
    });
    (committed, started.elapsed())
}
