//! Hostile nodes in network mode: renters that stop acknowledging receipts, providers
//! that hold calls' exits back or claim more than they served, Sybils that never serve
//! and a forger outside the market, played on real nodes; money stays conserved, every
//! loss within model mode's bound, every honest session settled.

mod common;

/// The demand and session rules both markets here share.
const DEMAND: &str = r#"
[demand]
sessions_per_minute = 15
mean_session_minutes = 1
max_session_minutes = 2
budget = "0.05"
candidates = 3

[sessions]
open_timeout_secs = 3
offer_ttl_minutes = 2
"#;

/// `scenario` on the shared 24-node market, with [`DEMAND`].
fn market((head, rest): (&str, &str), file: &str) -> orien_sim::Scenario {
    common::market_of_24((head, &format!("{DEMAND}{rest}")), file)
}

/// 24 nodes (8 providers, 16 renters) for three minutes; a quarter of the renters fall
/// silent and two in five providers hold exits back, model mode's draw for seed 7.
const SCENARIO: (&str, &str) = (
    r#"
name = "hostile-net"
description = "24 real nodes; some renters stop acknowledging, some providers delay exits"
seed = 7
duration_minutes = 3
"#,
    r#"
[hostile]
silent_renters = 0.25
exit_delayers = 0.4

[report]
bucket_minutes = 1
propagation_samples = 3
"#,
);

#[test]
fn silent_renters_cost_their_providers_at_most_an_ack_window_and_exit_delayers_gain_nothing() {
    let scenario = market(SCENARIO, "hostile-net.toml");
    let roles = orien_sim::model::hostile_roles(&scenario, scenario.seed);
    let (report, _scratch) = common::run(&scenario);
    eprintln!("{}", report.to_markdown());

    common::assert_checks_hold(
        &report,
        &[
            "money is conserved: renters paid = providers + fee + reserve",
            "every honest session that ran its course settled all it used",
            "every loss within its bound",
            "every ledger verifies (postings balanced, chains intact)",
        ],
    );

    // Model mode's hostile nodes, and they did what they do.
    let stack = report
        .stack
        .as_ref()
        .expect("network mode reports its stack");
    let hostile = stack.hostile.as_ref().expect("hostile nodes are reported");
    let count = |v: &[bool]| v.iter().filter(|&&b| b).count() as u64;
    assert_eq!(hostile.silent_renters, count(&roles.silent_renters));
    assert_eq!(hostile.exit_delayers, count(&roles.exit_delayers));
    assert!(
        hostile.silent_renters >= 2 && hostile.exit_delayers >= 1,
        "{hostile:?}"
    );
    assert!(hostile.silenced_sessions >= 3, "{hostile:?}");
    assert!(
        hostile.receipts_ignored >= hostile.silenced_sessions,
        "{hostile:?}"
    );
    assert!(hostile.delayed_sessions >= 3, "{hostile:?}");

    // Silent renters' sessions ended as model mode's, their providers' loss within the
    // ack window; exit delayers' renters paid no more than the provider served.
    let s = &report.sessions;
    let outcome = |name: &str| s.outcomes.get(name).copied().unwrap_or(0);
    assert_eq!(
        outcome("renter_stopped_acking"),
        hostile.silenced_sessions,
        "{s:?}"
    );
    let loss = |cause: &str| common::loss(&report, cause);
    let silent = loss("silent renters");
    assert_eq!(silent.loser, "provider");
    assert!(silent.sessions >= 3, "{silent:?}");
    assert!(silent.worst_share_of_bound <= 1.0, "{silent:?}");
    let held_back = loss("exits held back");
    assert_eq!(held_back.loser, "renter");
    assert!(held_back.sessions >= 3, "{held_back:?}");
    assert!(held_back.worst_share_of_bound <= 1.0, "{held_back:?}");
    assert!(
        s.succeeded * 10 >= s.requested * 4,
        "most requests still succeed: {s:?}"
    );
}

/// 8 providers, 16 renters and 3 Sybils for two minutes; each Sybil offers the one tool
/// at half its lowest price and holds every open it is asked for unanswered. A forger
/// outside the market publishes 30 forged offers a minute through four nodes. Half the
/// providers cheat on their receipts (model mode's draw for seed 9: greedy ones and
/// tolerance riders).
const SYBILS: (&str, &str) = (
    r#"
name = "sybils-net"
description = "24 real nodes, 3 Sybils that undercut every price and never serve, a forger"
seed = 9
duration_minutes = 2
"#,
    r#"
[hostile]
sybil_nodes = 3
sybil_offers_each = 1
forged_offers_per_minute = 30
receipt_cheats = 0.5

[report]
bucket_minutes = 1
propagation_samples = 3
"#,
);

#[test]
fn sybils_forgers_and_receipt_cheats_take_nothing_beyond_their_bounds() {
    let scenario = market(SYBILS, "sybils-net.toml");
    let (report, _scratch) = common::run(&scenario);
    eprintln!("{}", report.to_markdown());
    common::assert_checks_hold(
        &report,
        &[
            "money is conserved: renters paid = providers + fee + reserve",
            "no Sybil served a session or was paid",
            "no forged offer entered a book or went past the nodes it was sent to",
            "every loss within its bound",
            "every ledger verifies (postings balanced, chains intact)",
        ],
    );
    assert_eq!(report.nodes.sybils, 3);
    let h = &report.hostile;
    // One every two seconds for two minutes, from its first connection on.
    assert!(h.forged_offers >= 50, "{h:?}");
    assert_eq!(h.sybil_offers_sent, 3, "{h:?}");
    // Every renter's book took the Sybils' offers in, like any other.
    assert_eq!(h.sybil_offers_kept, 3, "{h:?}");
    // The cheapest candidate is tried first, and a Sybil's is the cheapest there is.
    assert!(h.opens_wasted_on_sybils >= 3, "{h:?}");
    let s = &report.sessions;
    assert!(
        s.unanswered_opens >= h.opens_wasted_on_sybils,
        "each open on a Sybil waited out its timeout: {s:?} {h:?}"
    );
    let disputes = s.outcomes.get("dispute").copied().unwrap_or(0);
    assert!(
        (s.succeeded + disputes) * 10 >= s.requested * 8,
        "a request not ended by a greedy claim's dispute succeeds, past the Sybils: {s:?}"
    );

    // Receipt cheats: a greedy one's first receipt is refused (a dispute, the renter
    // paying nothing beyond the work); a rider's pass, the renter paying within the
    // tolerance.
    let roles = orien_sim::model::hostile_roles(&scenario, scenario.seed);
    let count = |v: &[bool]| v.iter().filter(|&&b| b).count();
    assert!(
        count(&roles.greedy_claimers) >= 1 && count(&roles.tolerance_riders) >= 1,
        "{roles:?}"
    );
    let greedy = common::loss(&report, "greedy claims");
    assert_eq!(greedy.loser, "renter");
    assert!(greedy.worst_share_of_bound <= 1.0, "{greedy:?}");
    let riders = common::loss(&report, "claims within tolerance");
    assert!(riders.sessions >= 1, "{riders:?}");
    assert!(riders.worst_share_of_bound <= 1.0, "{riders:?}");
    assert!(disputes >= 1, "a greedy claim is refused: {s:?}");
}
