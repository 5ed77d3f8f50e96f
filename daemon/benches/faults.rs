//! `scripts/bench faults`: seeded hostile runs of whole sessions between in-process
//! nodes (`tests/support/fault_runs.rs`): lossy and slow links, calls that overrun their
//! limit or report impossible exits, renters that stop acknowledging. Reports the worst
//! provider loss and the worst renter overpayment, each beside its bound in the same run.
//!
//! Usage: `cargo bench -p orien-daemon --bench faults -- [--runs N] [--seed S] [--out FILE]`
#![allow(clippy::unwrap_used, clippy::print_stdout, missing_docs)] // A benchmark reports loudly.

#[path = "../tests/support/fault_runs.rs"]
mod fault_runs;
#[path = "../tests/support/harness.rs"]
mod harness;
mod support;

use std::time::Instant;

use serde_json::json;
use support::flag;

/// Runs at a time: each is two nodes that mostly wait on timers.
const PARALLEL: u64 = 16;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let runs = flag("--runs", 1_000u64);
    let seed = flag("--seed", 1u64);
    let out: Option<String> = Some(flag("--out", String::new())).filter(|s| !s.is_empty());
    let started = Instant::now();
    let mut outcomes = Vec::with_capacity(runs as usize);
    let mut next = 0;
    while next < runs {
        let batch = (next..(next + PARALLEL).min(runs))
            .map(|i| tokio::spawn(fault_runs::run(seed + i)))
            .collect::<Vec<_>>();
        next += batch.len() as u64;
        for handle in batch {
            outcomes.push(handle.await.unwrap());
        }
        if next % 100 == 0 || next == runs {
            println!(
                "{next}/{runs} runs, {:.0} s",
                started.elapsed().as_secs_f64()
            );
        }
    }
    let ran: Vec<_> = outcomes.iter().filter(|o| o.ended != "refused").collect();
    let ratio = |v: u64, b: u64| if b == 0 { 0.0 } else { v as f64 / b as f64 };
    let worst_provider = ran
        .iter()
        .max_by(|a, b| {
            ratio(a.provider_unpaid, a.provider_bound)
                .total_cmp(&ratio(b.provider_unpaid, b.provider_bound))
        })
        .unwrap();
    let worst_renter = ran
        .iter()
        .max_by(|a, b| {
            let r = |o: &&&fault_runs::Outcome| {
                o.renter_overpaid.max(0) as f64 / o.renter_bound.max(1) as f64
            };
            r(a).total_cmp(&r(b))
        })
        .unwrap();
    let held = ran.iter().filter(|o| o.holds()).count();
    let hostile = ran.iter().filter(|o| o.hostile_renter).count();
    println!(
        "{} runs ({} sessions, {} with a renter that stopped acking), bound held in {held}; worst provider loss {} of {} µUSDC (seed {}), worst renter overpayment {} of {} µUSDC (seed {})",
        outcomes.len(),
        ran.len(),
        hostile,
        worst_provider.provider_unpaid,
        worst_provider.provider_bound,
        worst_provider.seed,
        worst_renter.renter_overpaid,
        worst_renter.renter_bound,
        worst_renter.seed,
    );
    let rows = json!([
        {
            "name": format!("worst provider loss over {} seeded hostile sessions (seed {})", ran.len(), worst_provider.seed),
            "value": worst_provider.provider_unpaid,
            "unit": "µUSDC",
            "baseline": worst_provider.provider_bound,
            "ratio": ratio(worst_provider.provider_unpaid, worst_provider.provider_bound),
            "goal": "ratio <= 1 (baseline: that run's bound, one ack window of session time and every call slot)",
        },
        {
            "name": format!("worst renter overpayment over {} seeded hostile sessions (seed {})", ran.len(), worst_renter.seed),
            "value": worst_renter.renter_overpaid,
            "unit": "µUSDC",
            "baseline": worst_renter.renter_bound,
            "ratio": worst_renter.renter_overpaid.max(0) as f64 / worst_renter.renter_bound.max(1) as f64,
            "goal": "ratio <= 1 (baseline: that run's tolerance of the work done)",
        },
        {
            "name": "runs within both bounds",
            "value": held,
            "unit": "runs",
            "baseline": ran.len(),
            "ratio": held as f64 / ran.len().max(1) as f64,
            "goal": "ratio = 1",
        },
    ]);
    if let Some(out) = out {
        std::fs::write(out, serde_json::to_string_pretty(&rows).unwrap()).unwrap();
    }
}
