//! The loss bound over seeded hostile runs of whole sessions (see
//! `support/fault_runs.rs`): lossy and slow links on both sides, calls that overrun their
//! limit or report impossible exits, renters that stop acknowledging. In every run the
//! honest provider's unpaid work stays within one ack window and the honest renter pays
//! at most the work done plus its tolerance.
//!
//! `ORIEN_FAULT_RUNS` (default 8) runs from `ORIEN_FAULT_SEED` (default: from the clock,
//! printed); a failing run prints the command that replays it. `scripts/bench faults`
//! runs a thousand.
#![allow(clippy::unwrap_used, clippy::print_stderr)] // Tests fail loudly on purpose.

#[path = "support/fault_runs.rs"]
mod fault_runs;
#[path = "support/harness.rs"]
mod harness;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_hostile_runs_keep_both_sides_within_the_loss_bound() {
    let runs = env_u64("ORIEN_FAULT_RUNS").unwrap_or(8);
    let base = env_u64("ORIEN_FAULT_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    });
    eprintln!("loss bound: {runs} runs from seed {base}");
    // Four runs at a time: each is two nodes that mostly wait on timers.
    let mut outcomes = Vec::new();
    for chunk in (0..runs).collect::<Vec<_>>().chunks(4) {
        let handles: Vec<_> = chunk
            .iter()
            .map(|i| tokio::spawn(fault_runs::run(base + i)))
            .collect();
        for handle in handles {
            outcomes.push(handle.await.unwrap());
        }
    }
    for outcome in &outcomes {
        eprintln!(
            "seed {}: ended {}, provider unpaid {} of bound {}, renter overpaid {} of bound {}{}",
            outcome.seed,
            outcome.ended,
            outcome.provider_unpaid,
            outcome.provider_bound,
            outcome.renter_overpaid,
            outcome.renter_bound,
            if outcome.hostile_renter {
                " (renter stopped acking)"
            } else {
                ""
            }
        );
    }
    for outcome in &outcomes {
        assert!(
            outcome.holds(),
            "{outcome:?}\nreplay: ORIEN_FAULT_SEED={} ORIEN_FAULT_RUNS=1 cargo test -p orien-daemon --test loss_bound",
            outcome.seed
        );
    }
    let ran = outcomes.iter().filter(|o| o.ended != "refused").count();
    assert!(
        ran * 2 >= outcomes.len(),
        "most runs open a session: {outcomes:?}"
    );
}
