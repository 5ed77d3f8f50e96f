//! A partition in network mode: real nodes lose their links across the cut for its
//! minute, money stays conserved and within its bounds, and the market recovers.

mod common;

/// 24 nodes (8 providers, 16 renters) for three minutes; in the second, a partition
/// cuts off 30 %. Seed 11 puts 7 of the 24 on the cut-off side (3 providers and 4
/// renters). Six offers are traced, 30 s apart from 5 s: two during the cut (65 s and
/// 95 s), two after it healed (125 s and 155 s).
const SCENARIO: (&str, &str) = (
    r#"
name = "cut"
description = "24 real nodes; a partition cuts 30 % off for the second minute"
seed = 11
duration_minutes = 3
"#,
    r#"
[[network.partitions]]
start_minute = 1
end_minute = 2
fraction = 0.3

[demand]
sessions_per_minute = 12
mean_session_minutes = 1
max_session_minutes = 3
budget = "0.05"
candidates = 3

[report]
bucket_minutes = 1
propagation_samples = 6
"#,
);

#[test]
fn a_partition_cuts_the_links_across_it_for_its_minute_and_the_market_recovers() {
    let scenario = common::market_of_24(SCENARIO, "cut.toml");
    let (report, _scratch) = common::run(&scenario);

    // Conservation (with the acks the cut swallowed), no overdraft, no session over
    // budget, every session that ran its course settled, the cut sessions' unpaid work
    // within its bound, no offer across the cut, every ledger verified.
    common::assert_checks_hold(
        &report,
        &[
            "every loss within its bound",
            "no offer crossed an active partition",
        ],
    );

    // The links across the cut went down when it began, and dials across it failed.
    let stack = report
        .stack
        .as_ref()
        .expect("network mode reports its stack");
    assert!(stack.connections_cut > 0, "{stack:?}");
    assert!(stack.dials_cut > 0, "{stack:?}");

    // An offer published during the cut stayed on its publisher's side: the larger side
    // has 17 nodes, so at most 16 of the 23 others.
    let p = &report.propagation;
    assert_eq!(p.traced, 6, "{p:?}");
    assert!(p.worst_coverage <= 16.0 / 23.0 + 1e-6, "{p:?}");

    // Sessions open across the cut were cut, and their providers' unpaid work stayed
    // within the ack window at the session's price.
    let loss = common::loss(&report, "partitions");
    assert!(loss.sessions >= 1, "{loss:?}");
    assert_eq!(loss.loser, "provider");
    assert!(loss.worst_share_of_bound <= 1.0, "{loss:?}");

    // After the heal, offers reach every book again and renters get their sessions.
    assert!(
        stack.coverage_after_heal.is_some_and(|c| c >= 0.99),
        "{stack:?}"
    );
    let s = &report.sessions;
    let healed = s
        .over_time
        .iter()
        .find(|b| b.minute == 2)
        .expect("a bucket for the third minute");
    assert!(healed.requested >= 3, "{s:?}");
    assert!(
        healed.succeeded * 10 >= healed.requested * 8,
        "most requests after the heal succeed: {s:?}"
    );
    let before = &s.over_time[0];
    assert!(
        before.succeeded * 10 >= before.requested * 8,
        "most requests before the cut succeed: {s:?}"
    );
}
