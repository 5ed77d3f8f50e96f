//! Randomized whole-session simulation: thousands of sessions between the provider's
//! and the renter's session machines over a lossy, duplicating, reordering network, with
//! crashes and restarts on real RocksDB ledgers; every promise checked after every
//! session (see `orien_daemon::session::simulation`).
//!
//! Seeded and bounded: `ORIEN_SIM_SEED`, `ORIEN_SIM_SESSIONS` and `ORIEN_SIM_SECONDS`
//! (real time; 0 for no limit) override each test's defaults. A failure prints the
//! command that replays it; `scripts/fuzz sessions` runs it for as long as asked.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)] // Tests fail loudly on purpose.

use std::time::Duration;

use orien_daemon::session::simulation::{self, FaultRates, SimConfig, SimReport};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} must be a number, not {v:?}"))
        })
        .unwrap_or(default)
}

/// Runs `test`'s simulation: seed, sessions and real-time limit (0: none) from the
/// environment, or these defaults.
fn simulate(test: &str, seed: u64, sessions: u64, seconds: u64, faults: FaultRates) -> SimReport {
    let seed = env_u64("ORIEN_SIM_SEED", seed);
    let sessions = env_u64("ORIEN_SIM_SESSIONS", sessions);
    let seconds = env_u64("ORIEN_SIM_SECONDS", seconds);
    let dir = tempfile::tempdir().unwrap();
    let config = SimConfig {
        seed,
        sessions,
        time_limit: (seconds > 0).then(|| Duration::from_secs(seconds)),
        dir: dir.path().to_owned(),
        faults,
        test: test.into(),
    };
    match simulation::run(&config) {
        Ok(report) => {
            eprintln!(
                "seed {seed}: {} sessions ({} receipts, {} messages, {} lost, {} crashes, {} on slow links, {} charging artefacts) in {:.1} s real, {:.0} s simulated: {:.0} sessions/s; worst provider loss (unpaid, bound) {:?} µUSDC, worst renter overpayment (over its meter, tolerance) {:?} µUSDC",
                report.sessions,
                report.receipts,
                report.messages,
                report.dropped,
                report.crashes,
                report.slow,
                report.charged_artefacts,
                report.elapsed.as_secs_f64(),
                report.simulated.as_secs_f64(),
                report.sessions as f64 / report.elapsed.as_secs_f64(),
                report.worst_provider,
                report.worst_renter,
            );
            report
        }
        Err(violation) => panic!("{violation}"),
    }
}

#[test]
fn sessions_under_loss_duplication_reordering_and_crashes_keep_every_promise() {
    let report = simulate(
        "sessions_under_loss_duplication_reordering_and_crashes_keep_every_promise",
        1,
        3_000,
        60,
        FaultRates::default(),
    );
    // Not vacuous: the run went through many sessions and met every fault.
    let least = env_u64("ORIEN_SIM_SESSIONS", 3_000).min(200);
    assert!(
        report.sessions >= least,
        "only {} sessions ran",
        report.sessions
    );
    assert!(report.receipts > report.sessions, "hardly any receipts");
    assert!(
        report.dropped > 0 && report.crashes > 0 && report.slow > 0,
        "no faults: {report:?}"
    );
    assert!(
        report.worst_provider.is_some_and(|(unpaid, _)| unpaid > 0),
        "no provider ever lost anything: the bound is untested"
    );
    assert!(
        report.charged_artefacts > report.sessions / 10,
        "hardly any session charged for artefacts: {report:?}"
    );
}

#[test]
fn calm_sessions_end_with_identical_chains_and_the_same_reason() {
    let report = simulate(
        "calm_sessions_end_with_identical_chains_and_the_same_reason",
        2,
        300,
        60,
        FaultRates::CALM,
    );
    assert_eq!(report.dropped, 0);
    assert_eq!(report.crashes, 0);
    let least = env_u64("ORIEN_SIM_SESSIONS", 300).min(100);
    assert!(
        report.sessions >= least,
        "only {} sessions ran",
        report.sessions
    );
}
