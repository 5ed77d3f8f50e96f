//! Churn in network mode: real providers go offline for their day and come back, and
//! crash and restart on the ledger the crash left; money stays conserved, losses within
//! their bound, and the providers serve again once back.

mod common;

/// 24 nodes (8 providers, 16 renters) for four minutes of two-minute days: each
/// provider with an away window is away once a day, and each crashes about once every
/// three minutes it is online, down for 18 s on average. Model mode's schedule for seed
/// 5, which network mode plays.
const SCENARIO: (&str, &str) = (
    r#"
name = "churn-net"
description = "24 real nodes; providers go away for their day, crash and restart"
seed = 5
duration_minutes = 4
"#,
    r#"
[demand]
sessions_per_minute = 15
mean_session_minutes = 1
max_session_minutes = 3
budget = "0.05"
candidates = 3

[sessions]
open_timeout_secs = 3
offer_ttl_minutes = 2

[churn]
diurnal_amplitude = 0.6
day_minutes = 2
crashes_per_hour = 20
mean_downtime_minutes = 0.3

[report]
bucket_minutes = 1
propagation_samples = 4
"#,
);

#[test]
fn providers_that_crash_or_go_offline_come_back_serve_again_and_every_ledger_balances() {
    let scenario = common::market_of_24(SCENARIO, "churn-net.toml");
    let schedule = orien_sim::model::churn_schedule(&scenario, scenario.seed);
    let (report, _scratch) = common::run(&scenario);
    eprintln!("{}", report.to_markdown());

    // Conservation across every ledger (restarted providers' included, with at most one
    // receipt on a lane per session a stop broke off), no overdraft, no session over
    // budget, every session that ran its course settled on both sides, every loss
    // within its bound, every provider up again closed out what its stop left open,
    // every ledger verified.
    common::assert_checks_hold(
        &report,
        &[
            "money is conserved: renters paid = providers + fee + reserve",
            "every honest session that ran its course settled all it used",
            "every loss within its bound",
            "every provider up again closed out what its stop left open",
            "every ledger verifies (postings balanced, chains intact)",
        ],
    );

    // Network mode played model mode's schedule: as many crashes and departures.
    let stack = report
        .stack
        .as_ref()
        .expect("network mode reports its stack");
    let churn = stack.churn.as_ref().expect("churn is reported");
    let count = |change| schedule.turns.iter().filter(|t| t.change == change).count() as u64;
    use orien_sim::model::churn::Change;
    let away_at_start = schedule.away_at_start.iter().filter(|&&a| a).count() as u64;
    assert_eq!(churn.crashes, count(Change::Crashes), "{churn:?}");
    assert_eq!(
        churn.offline,
        count(Change::Leaves) + away_at_start,
        "{churn:?}"
    );
    assert_eq!(
        churn.restarts + churn.back,
        count(Change::Returns),
        "{churn:?}"
    );
    assert!(churn.crashes >= 3 && churn.restarts >= 2, "{churn:?}");
    assert!(churn.offline >= 3 && churn.back >= 2, "{churn:?}");

    // Restarted providers closed out the sessions the crash left open, and served again.
    assert!(churn.closed_out >= 1, "{churn:?}");
    assert!(churn.served_after_restart >= 1, "{churn:?}");
    assert!(churn.served_after_return >= 1, "{churn:?}");

    // Sessions broken off by a stop end as model mode's outcomes, and what their
    // providers were not paid for is a crash's loss, within its bound.
    let s = &report.sessions;
    let outcome = |name: &str| s.outcomes.get(name).copied().unwrap_or(0);
    assert!(outcome("provider_crashed") >= 1, "{s:?}");
    let crashes = common::loss(&report, "crashes");
    assert_eq!(crashes.loser, "provider");
    assert!(crashes.sessions >= 1, "{crashes:?}");
    assert!(crashes.worst_share_of_bound <= 1.0, "{crashes:?}");
    // A provider going offline closes what it serves on a closing receipt first (the
    // node's own shutdown): paid for its time, where a crash loses up to an interval.
    // Before the shutdown did so, the worst came to 0.968 of the bound.
    let offline = common::loss(&report, "providers going offline");
    assert!(offline.sessions >= 1, "{offline:?}");
    assert!(offline.worst_share_of_bound <= 0.1, "{offline:?}");

    // The sessions plot: providers online per minute as churn played them, and most
    // requests still succeed.
    assert_eq!(s.over_time.len(), 4, "{s:?}");
    for bucket in &s.over_time {
        let at = u64::from(bucket.minute) * 60_000_000;
        assert_eq!(
            bucket.providers_online,
            schedule.online_at(at),
            "{bucket:?}"
        );
    }
    assert!(
        s.succeeded * 10 >= s.requested * 5,
        "most requests succeed under churn: {s:?}"
    );
}
