//! What silent renters and exit delayers did (`market/hostile.rs`), read from the
//! ledgers and the modelled sandboxes, against model mode's bounds.
//!
//! - A session whose renter fell silent: the work its provider did (its sandbox's open
//!   time) beyond what its own ledger was paid, against one receipt interval, the ack
//!   timeout and the slowest round trip at the session's price (model mode's
//!   `LossCause::SilentRenters`).
//! - A session whose provider held exits back: what its renter's ledger paid beyond
//!   the provider's sandbox time at the session's price, against the countersigner's
//!   tolerance, `max(2 s, 2 %)` of that time (model mode's `LossCause::ExitsHeldBack`).

use std::time::Duration;

use orien_protocol::{Clock, Millis};
use orien_sim::Scenario;
use orien_sim::model::session::{LossCause, tolerance_ms};

use super::super::nodes::Nodes;
use super::super::renters::Rented;
use super::Book;
use super::partitioned::{Losses, Unpaid, price};

/// One row of losses, summed session by session: `(lost, bound)` in micro-USDC.
fn row(cause: LossCause, lost: impl Iterator<Item = (u64, u64)>) -> Unpaid {
    let mut losses = Losses::default();
    for (lost, bound) in lost {
        losses.add(lost, bound);
    }
    let loser = if cause.provider_loses() {
        "provider"
    } else {
        "renter"
    };
    losses.row(cause.as_str().to_owned(), loser, cause.bound().to_owned())
}

/// The losses of silent renters' and exit delayers' sessions, one row each when the
/// scenario has them.
pub(super) fn unpaid(
    scenario: &Scenario,
    nodes: &Nodes,
    books: &[Book],
    rented: &[Rented],
    interval: Duration,
    round_trip: Duration,
) -> Vec<Unpaid> {
    let hostile = &nodes.hostile;
    let mut rows = Vec::new();
    let now = nodes.clock.monotonic();
    if scenario.hostile.silent_renters.0 > 0.0 {
        let ack_timeout = Duration::from_secs_f64(scenario.sessions.ack_timeout_secs.0);
        let window = interval + ack_timeout + round_trip;
        let lost = rented
            .iter()
            .filter(|r| hostile.silenced(&r.session))
            .filter_map(|r| {
                let (held, lost) =
                    super::unpaid_work(nodes, books, r, |work| work.closed.unwrap_or(now))?;
                // A rounding micro-USDC at each end of the priced span, as model mode.
                let bound = price(held.pricing.session_per_minute, window).micros() + 2;
                Some((lost, bound))
            });
        rows.push(row(LossCause::SilentRenters, lost));
    }
    // What a renter paid beyond its provider's sandbox time at the session's price,
    // against the countersigner's tolerance.
    let overpaid = |r: &Rented| {
        let held = books[r.renter].heads.get(&r.session)?;
        let work = nodes
            .all
            .get(r.provider)?
            .stall
            .as_ref()?
            .sandbox
            .work(&r.session)?;
        let served = work.closed.unwrap_or(now).saturating_sub(work.opened);
        let worth = held
            .pricing
            .session_amount(Millis::from_duration(served))
            .min(held.budget);
        let overpaid = held.head.amount.micros().saturating_sub(worth.micros());
        let slack = tolerance_ms(u64::try_from(served.as_millis()).unwrap_or(u64::MAX));
        let bound = price(
            held.pricing.session_per_minute,
            Duration::from_millis(slack),
        )
        .min(held.budget)
        .micros()
            + 2;
        Some((overpaid, bound))
    };
    if scenario.hostile.exit_delayers.0 > 0.0 {
        let lost = rented
            .iter()
            .filter(|r| hostile.delayed(&r.session))
            .filter_map(overpaid);
        rows.push(row(LossCause::ExitsHeldBack, lost));
    }
    if scenario.hostile.receipt_cheats.0 > 0.0 {
        let cheat = |r: &&Rented, rate: f64| hostile.cheat_rate(r.provider) == Some(rate);
        let greedy = rented
            .iter()
            .filter(|r| cheat(r, super::super::hostile::GREEDY_RATE))
            .filter_map(overpaid);
        rows.push(row(LossCause::GreedyClaims, greedy));
        let riders = rented
            .iter()
            .filter(|r| cheat(r, super::super::hostile::RIDER_RATE))
            .filter_map(overpaid);
        rows.push(row(LossCause::WithinTolerance, riders));
    }
    rows
}
