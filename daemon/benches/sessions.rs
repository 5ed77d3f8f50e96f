//! Simulated sessions per second: the randomized whole-session simulation (both session
//! machines, a lossy network, crashes, real RocksDB ledgers) beside the ledger work
//! alone — the same receipts committed one at a time into fresh ledgers on both sides,
//! the synced writes no simulation of these sessions can skip. Prints one JSON row.
//!
//!   cargo bench -p orien-daemon --bench sessions -- [--sessions N] [--seed S]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::time::{Duration, Instant};

use orien_daemon::session::simulation::{self, FaultRates, SimConfig};
use orien_ledger::{Store, StoreOptions};

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| v.parse().expect("a number"))
}

fn main() {
    let sessions = arg("--sessions", 3_000);
    let seed = arg("--seed", 1);
    let dir = tempfile::tempdir().unwrap();
    let config = SimConfig {
        seed,
        sessions,
        time_limit: None,
        dir: dir.path().to_owned(),
        faults: FaultRates::default(),
        test: "sessions_under_loss_duplication_reordering_and_crashes_keep_every_promise".into(),
    };
    let report = simulation::run(&config).unwrap_or_else(|v| panic!("{v}"));
    let simulated = report.sessions as f64 / report.elapsed.as_secs_f64();

    // The baseline: every receipt the provider committed, committed again one at a time
    // into two fresh ledgers (a provider's and a renter's), as the machines commit them.
    let source = Store::open_with(
        dir.path().join("provider"),
        StoreOptions {
            read_only: true,
            ..StoreOptions::default()
        },
    )
    .unwrap();
    let fresh = tempfile::tempdir().unwrap();
    let targets = [
        Store::open(fresh.path().join("a")).unwrap(),
        Store::open(fresh.path().join("b")).unwrap(),
    ];
    let listed = source.sessions().unwrap();
    let mut work = Vec::new();
    for (record, _) in &listed {
        let receipts = source.receipts(&record.session).unwrap();
        work.push((record.clone(), receipts));
    }
    let started = Instant::now();
    let mut committed = 0u64;
    for (record, receipts) in work {
        for target in &targets {
            target.open_session(record.clone()).unwrap();
        }
        for stored in receipts {
            for target in &targets {
                target.ingest(stored.acked.clone()).unwrap();
                committed += 1;
            }
        }
    }
    let ledger_only: Duration = started.elapsed();
    let baseline = listed.len() as f64 / ledger_only.as_secs_f64();
    let row = serde_json::json!({
        "name": format!(
            "simulated sessions (both machines, 10 % loss, 5 % duplicates, ≤ 300 ms reordering delays, 15 % with a crash and restart; real RocksDB; seed {seed}, {} sessions, {} receipts) vs the ledger work alone ({committed} synced commits one at a time)",
            report.sessions, report.receipts
        ),
        "value": (simulated * 10.0).round() / 10.0,
        "unit": "sessions/s",
        "baseline": (baseline * 10.0).round() / 10.0,
        "ratio": ((simulated / baseline) * 1000.0).round() / 1000.0,
        "goal": ">= 1000 sessions/s",
    });
    println!("{row}");
}
