//! Crash safety: a writer process ingests receipts and prints each one only after its
//! durable commit; this test kills it with SIGKILL at random points, reopens the real
//! on-disk database and checks that every printed receipt is there, that nothing is
//! half-applied and that the ledger verifies.
//!
//! The same holds for a store opened with `Durability::ProcessCrash` (no fsync), which
//! the session simulator relies on: a SIGKILL loses nothing the kernel already has.
//!
//! `ORIEN_CRASH_TRIALS` sets the number of kills (default 50; the benchmark runs 1,000).
#![allow(clippy::unwrap_used, clippy::print_stderr)] // Tests fail loudly on purpose.

mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use orien_ledger::Store;
use orien_protocol::SessionId;
use support::chain::Rng;

/// Consecutive trials on one database.
const TRIALS_PER_DATABASE: u64 = 20;

/// Kills the writer if the test panics while it runs.
struct Writer(Child);

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn every_acked_receipt_survives_sigkill_at_random_points() {
    let trials: u64 = std::env::var("ORIEN_CRASH_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    sigkill_trials("synced", trials);
}

#[test]
fn unsynced_commits_survive_sigkill_at_random_points_too() {
    let trials: u64 = std::env::var("ORIEN_CRASH_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    sigkill_trials("unsynced", trials);
}

/// Kills the writer, of this durability, `trials` times and checks the ledger after each.
fn sigkill_trials(durability: &str, trials: u64) {
    let seed = std::env::var("ORIEN_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!(
        "crash trials ({durability}): {trials}, seed {seed} (set ORIEN_CRASH_SEED to reproduce)"
    );
    let mut rng = Rng(seed | 1);
    let dir = tempfile::tempdir().unwrap();
    let stderr_path = dir.path().join("writer.stderr");
    let mut data = dir.path().join("ledger-0");
    let mut acked: HashMap<SessionId, u64> = HashMap::new();
    let mut total_acked = 0u64;
    let started = Instant::now();
    for trial in 0..trials {
        // Runs of trials share a database (restarts recover a growing ledger); a fresh one
        // every so often keeps the cost of each trial bounded.
        if trial > 0 && trial % TRIALS_PER_DATABASE == 0 {
            std::fs::remove_dir_all(&data).unwrap();
            data = dir.path().join(format!("ledger-{trial}"));
            acked.clear();
        }
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_orien-ledger-crash-writer"))
            .arg(&data)
            .arg(rng.next().to_string())
            .arg("1000000")
            .arg(durability)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let mut writer = Writer(child);
        let mut out = BufReader::new(writer.0.stdout.take().unwrap());
        // Kill after a random number of acks: 0 kills it while it opens or recovers.
        let kill_after = match rng.below(4) {
            0 => 0,
            1 => rng.below(5),
            _ => rng.below(200),
        };
        let mut line = String::new();
        let mut seen = 0;
        while seen < kill_after {
            line.clear();
            if out.read_line(&mut line).unwrap() == 0 {
                let status = writer.0.wait().unwrap();
                panic!(
                    "trial {trial}: the writer stopped on its own ({status}): {}",
                    std::fs::read_to_string(&stderr_path).unwrap_or_default()
                );
            }
            record(&line, &mut acked);
            seen += 1;
        }
        writer.0.kill().unwrap();
        writer.0.wait().unwrap();
        // Acks printed before the kill are still in the pipe.
        for line in out.lines() {
            record(&line.unwrap(), &mut acked);
            seen += 1;
        }
        total_acked += seen;

        let store =
            Store::open(&data).unwrap_or_else(|e| panic!("trial {trial}: reopen failed: {e}"));
        for (session, seq) in &acked {
            let head = store.head(session).unwrap().unwrap();
            assert!(
                head.seq >= *seq,
                "trial {trial}: receipt {session}#{seq} was acked but the ledger ends at #{}",
                head.seq
            );
        }
        let report = store
            .verify()
            .unwrap_or_else(|e| panic!("trial {trial}: verify failed after SIGKILL: {e}"));
        assert!(report.receipts >= acked.values().sum::<u64>());
    }
    eprintln!(
        "crash trials passed ({durability}): {trials} SIGKILLs, {total_acked} acks checked, {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

fn record(line: &str, acked: &mut HashMap<SessionId, u64>) {
    let mut parts = line.split_whitespace();
    assert_eq!(
        parts.next(),
        Some("acked"),
        "unexpected writer output {line:?}"
    );
    let session: SessionId = parts.next().unwrap().parse().unwrap();
    let seq: u64 = parts.next().unwrap().parse().unwrap();
    let max = acked.entry(session).or_default();
    *max = (*max).max(seq);
}
