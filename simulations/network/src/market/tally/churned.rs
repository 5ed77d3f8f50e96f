//! What churn did, read from the ledgers and the modelled sandboxes: the sessions a
//! provider's stop broke off, the work it left unpaid (model mode's
//! `LossCause::Crashes`, against its bound), and whether each provider's start closed
//! out what its stop left open in its ledger.
//!
//! A session is *stopped* when its provider stopped (crashed, or went offline) while
//! it was open. The provider's ledger holds what was acknowledged until then; its
//! renter's may hold one ack more (committed and sent as the provider stopped): a lane
//! gap, bounded in money conservation as a cut session's is. A crashed provider worked
//! unpaid from its last acknowledged receipt to the stop: at most one receipt interval,
//! plus the round trip of the receipt whose ack was in flight. One going offline closes
//! its sessions on a closing receipt first, and is paid up to the stop.

use std::time::Duration;

use orien_ledger::SessionStatus;
use orien_protocol::CloseReason;
use orien_sim::model::churn::Change;
use orien_sim::model::session::LossCause;
use orien_sim::report::{Check, Churned as Counts};

use super::super::churn::Stop;
use super::super::nodes::Nodes;
use super::super::renters::Rented;
use super::Book;
use super::partitioned::{Losses, Unpaid, price};

/// The providers' stops of a run, and the timing rules their bound is made of.
pub(super) struct Churned {
    stops: Vec<Stop>,
    /// Between receipts.
    interval: Duration,
    /// The slowest round trip of the links.
    round_trip: Duration,
}

impl Churned {
    pub(super) fn of(nodes: &Nodes, interval: Duration, round_trip: Duration) -> Self {
        Self {
            stops: nodes.churn.stops(),
            interval,
            round_trip,
        }
    }

    /// The stop that broke the session off: its provider's first while it was open.
    pub(super) fn stopped(&self, rented: &Rented) -> Option<&Stop> {
        self.stops.iter().find(|s| {
            s.provider == rented.provider && rented.opened <= s.at && s.at <= rented.ended
        })
    }

    /// The work each stopped session's provider did (its sandbox's open time, up to the
    /// stop) beyond what its own ledger was paid: one row for crashes, one for going
    /// offline, each against one receipt interval and a round trip at the session's
    /// price. Model mode's bound for crashes is the interval alone; `worst_share` of a
    /// row is against the larger bound, and its detail says the other.
    pub(super) fn unpaid(&self, nodes: &Nodes, books: &[Book], rented: &[Rented]) -> Vec<Unpaid> {
        if self.stops.is_empty() {
            return Vec::new();
        }
        [Change::Crashes, Change::Leaves]
            .into_iter()
            .map(|change| {
                let (mut losses, mut worst_of_interval) = (Losses::default(), 0f64);
                for r in rented {
                    let Some(stop) = self.stopped(r).filter(|s| s.change == change) else {
                        continue;
                    };
                    // The orphaned session's task may close its sandbox later; the
                    // process ended at the stop.
                    let Some((held, lost)) = super::unpaid_work(nodes, books, r, |work| {
                        work.closed.map_or(stop.at_clock, |c| c.min(stop.at_clock))
                    }) else {
                        continue;
                    };
                    let per_minute = held.pricing.session_per_minute;
                    // A rounding micro-USDC at each end of the priced span, as model mode.
                    // The span: one receipt interval, the round trip of the ack in flight
                    // at the stop, and one more for the start, where the sandbox opens
                    // before the session's first metered moment (measured up to 0.97 of
                    // the bound without it).
                    let bound = price(per_minute, self.interval + self.round_trip * 2).micros() + 2;
                    let interval = price(per_minute, self.interval).micros() + 2;
                    losses.add(lost, bound);
                    worst_of_interval = worst_of_interval.max(lost as f64 / interval as f64);
                }
                let (cause, bound) = match change {
                    Change::Crashes => (
                        LossCause::Crashes.as_str().to_owned(),
                        format!(
                            "{}, the round trip of the ack in flight and one for the \
                             sandbox opening before metering starts (worst {:.3} of the \
                             interval alone)",
                            LossCause::Crashes.bound(),
                            worst_of_interval
                        ),
                    ),
                    _ => (
                        "providers going offline".to_owned(),
                        format!(
                            "as crashes; the node's shutdown closes the sessions it provides \
                             on a closing receipt, leaving the sandbox's opening before \
                             metering starts (worst {worst_of_interval:.3} of one receipt \
                             interval)"
                        ),
                    ),
                };
                losses.row(cause, "provider", bound)
            })
            .collect()
    }

    /// What the stops and starts came to, and the check that every provider up again
    /// closed out the sessions its stop left open in its ledger.
    pub(super) fn counts(
        &self,
        nodes: &Nodes,
        books: &[Book],
        rented: &[Rented],
    ) -> Option<(Counts, Check)> {
        if self.stops.is_empty() {
            return None;
        }
        let mut counts = Counts::default();
        for stop in &self.stops {
            let back = u64::from(stop.back.is_some());
            match stop.change {
                Change::Crashes => {
                    counts.crashes += 1;
                    counts.restarts += back;
                }
                _ => {
                    counts.offline += 1;
                    counts.back += back;
                }
            }
        }
        let (mut left_open, mut waiting) = (0u64, 0u64);
        let stopped: std::collections::BTreeSet<usize> =
            self.stops.iter().map(|s| s.provider).collect();
        for &provider in &stopped {
            let me = nodes.node(provider).id;
            let up = nodes.node(provider).node().is_some();
            for held in books[provider].heads.values().filter(|h| h.provider == me) {
                match held.head.status {
                    SessionStatus::Closed(CloseReason::Restarted) => counts.closed_out += 1,
                    SessionStatus::Closed(_) => {}
                    _ if up => left_open += 1,
                    _ => waiting += 1,
                }
            }
        }
        for r in rented.iter().filter(|r| r.outcome.succeeded()) {
            let came_back = |change: Change| {
                self.stops.iter().any(|s| {
                    s.provider == r.provider
                        && s.change == change
                        && s.back.is_some_and(|b| b <= r.opened)
                })
            };
            counts.served_after_restart += u64::from(came_back(Change::Crashes));
            counts.served_after_return += u64::from(came_back(Change::Leaves));
        }
        let check = Check {
            name: "every provider up again closed out what its stop left open".into(),
            held: left_open == 0,
            detail: format!(
                "{} crashes ({} restarted), {} gone offline ({} back); {} sessions closed \
                 out as restarted; {left_open} left open by providers up again; {waiting} \
                 on providers still down at the end (closed out at their next start)",
                counts.crashes, counts.restarts, counts.offline, counts.back, counts.closed_out
            ),
        };
        Some((counts, check))
    }
}
