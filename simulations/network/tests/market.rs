//! Network mode's market: real ORIEN nodes, each with its RocksDB ledger, trading in
//! simulated time; every ledger read back and checked.

mod common;

use std::path::{Path, PathBuf};

use orien_sim::Scenario;

fn scenario(name: &str) -> Scenario {
    let path: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios")
        .join(format!("{name}.toml"));
    Scenario::load(&path).expect("a shipped scenario loads")
}

#[test]
fn fifty_real_nodes_trade_and_every_ledger_agrees_with_its_peers() {
    let scenario = scenario("fifty");
    let (report, scratch) = common::run(&scenario);
    assert_eq!(report.mode, "network");
    common::assert_checks_hold(&report, &[]);
    let s = &report.sessions;
    assert!(s.requested >= 15, "{s:?}");
    assert!(
        s.opened * 10 >= s.requested * 8,
        "most requests open a session: {s:?}"
    );
    assert!(
        s.succeeded * 10 >= s.opened * 9,
        "nearly every opened session ends as the renter wanted: {s:?}"
    );
    assert!(report.events > 0, "receipts were acknowledged");
    let stack = report
        .stack
        .as_ref()
        .expect("network mode reports its stack");
    assert_eq!(
        stack.failed_calls, 0,
        "every session's call ran to its exit"
    );
    assert_eq!(stack.receipts, report.events);
    assert!(stack.peers_min >= 1, "{stack:?}");
    // Each node keeps within its connection budget.
    let budget = orien_daemon::network::ConnectionBudget::default();
    assert!(stack.peers_max <= budget.high as u32, "{stack:?}");
    assert!(stack.connections_opened > 0, "{stack:?}");
    // A joiner walks the DHT towards its own key alone, so a renter often knows a
    // provider's offer but no address for it: it looks the provider up in the DHT.
    // Every provider a renter chose answered, full or not.
    assert_eq!(s.unanswered_opens, 0, "{s:?} {stack:?}");
    let paid: f64 = report.money.renters_paid.parse().expect("a decimal");
    assert!(paid > 0.0, "{:?}", report.money);
    let p = &report.propagation;
    assert_eq!(p.traced, 5);
    assert!(p.worst_coverage >= 0.99, "{p:?}");
    assert!(p.p50_ms >= 20.0 && p.p99_ms < 1_000.0, "{p:?}");
    assert!(p.hops_p50 >= 1, "{p:?}");
    // The ledgers lived in the scratch directory and went with the run.
    let left: Vec<_> = std::fs::read_dir(scratch.path())
        .expect("the scratch directory is there")
        .collect();
    assert!(left.is_empty(), "the run left {left:?}");
}
