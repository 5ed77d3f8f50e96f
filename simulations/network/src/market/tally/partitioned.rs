//! What the scenario's partitions did, read from the ledgers and the modelled
//! sandboxes: the work a cut left its providers unpaid for (model mode's
//! `LossCause::Partitions`, with its bound), the lanes whose two ledgers a cut left
//! apart, and whether any traced offer crossed a cut.
//!
//! A session is *cut* when a partition put its renter and provider on opposite sides
//! while the session was open. Its receipts stop reaching the renter; the provider
//! stops one ack timeout after the last ack it received, the renter closes its side
//! when the provider has been silent for its grace. An ack the renter committed and the
//! cut swallowed leaves the provider's ledger one receipt behind the renter's: a lane
//! gap, which the ledgers resync when the lane next opens a session. Neither is a fault
//! of the node; both are bounded, and checked against their bounds here.

use std::collections::HashMap;
use std::time::Duration;

use orien_ledger::accounts::LaneKey;
use orien_protocol::{Clock, Usdc};
use orien_sim::Scenario;
use orien_sim::model::session::LossCause;
use orien_sim::report::{self, Check, Loss};

use super::super::nodes::Nodes;
use super::super::renters::{Rented, Trace};
use super::Book;

/// The partitions of a run, and the timing rules their bounds are made of.
pub(super) struct Partitioned<'a> {
    cuts: &'a crate::partition::Cuts,
    /// Between receipts.
    interval: Duration,
    /// A provider stops this long after its last ack.
    ack_timeout: Duration,
    /// The slowest round trip of the links: both ways at the mean latency plus the
    /// jitter and a retransmission each way.
    round_trip: Duration,
}

/// Lanes whose renter's ledger has acknowledged more than its provider's.
#[derive(Debug, Default)]
pub(super) struct Gaps {
    /// Acknowledged by renters, not (yet) on their providers' ledgers, micro-USDC.
    pub(super) ahead: u64,
    /// How many lanes.
    pub(super) lanes: u64,
    /// On providers' ledgers beyond what their renters acknowledged (never right).
    pub(super) behind: u64,
    /// Lanes whose gap exceeds one receipt for each cut session on them.
    pub(super) beyond_bound: u64,
}

impl Gaps {
    /// One lane: `paid` on the renter's ledger, `recorded` on the provider's, and the
    /// gap its cut sessions allow.
    fn add(&mut self, paid: u64, recorded: u64, allowed: u64) {
        if recorded > paid {
            self.behind += recorded - paid;
        } else if paid > recorded {
            let gap = paid - recorded;
            self.ahead += gap;
            self.lanes += 1;
            if gap > allowed {
                self.beyond_bound += 1;
            }
        }
    }
}

/// The work sessions of one kind (cut, ended by a crash, …) left unpaid.
pub(super) struct Unpaid {
    pub(super) loss: Loss,
    /// The worst session's loss as a share of its bound.
    pub(super) worst_share: f64,
}

/// Losses summed session by session, each against its own bound (micro-USDC).
#[derive(Debug, Default)]
pub(super) struct Losses {
    sessions: u64,
    total: u64,
    worst: u64,
    worst_share: f64,
}

impl Losses {
    /// One session lost `lost` against `bound`.
    pub(super) fn add(&mut self, lost: u64, bound: u64) {
        self.sessions += 1;
        self.total += lost;
        self.worst = self.worst.max(lost);
        self.worst_share = self.worst_share.max(lost as f64 / bound.max(1) as f64);
    }

    /// The report's row: `cause`, lost by `loser`, against the bound `bound` says.
    pub(super) fn row(self, cause: String, loser: &str, bound: String) -> Unpaid {
        Unpaid {
            loss: Loss {
                cause,
                loser: loser.into(),
                bound,
                sessions: self.sessions,
                total: report::usdc_string(self.total),
                worst: report::usdc_string(self.worst),
                worst_share_of_bound: report::round6(self.worst_share),
            },
            worst_share: self.worst_share,
        }
    }
}

impl<'a> Partitioned<'a> {
    pub(super) fn of(scenario: &Scenario, nodes: &'a Nodes) -> Self {
        let network = &scenario.network;
        let ms = |v: f64| Duration::from_secs_f64(v / 1_000.0);
        let one_way = ms(network.latency_ms.0 + network.jitter_ms.0 + 3.0 * network.latency_ms.0);
        Self {
            cuts: &nodes.cuts,
            interval: Duration::from_secs_f64(scenario.sessions.receipt_interval_secs.0),
            ack_timeout: Duration::from_secs_f64(scenario.sessions.ack_timeout_secs.0),
            round_trip: one_way * 2,
        }
    }

    /// Between receipts.
    pub(super) fn interval(&self) -> Duration {
        self.interval
    }

    /// The slowest round trip of the links.
    pub(super) fn round_trip(&self) -> Duration {
        self.round_trip
    }

    /// Whether a partition split the session's renter from its provider while it was
    /// open.
    pub(super) fn cut(&self, rented: &Rented) -> bool {
        (0..self.cuts.len()).any(|i| {
            let (Some(began), healed) = self.cuts.window(i) else {
                return false;
            };
            began <= rented.ended
                && healed.is_none_or(|healed| healed > rented.opened)
                && self.cuts.splits(i, rented.renter, rented.provider)
        })
    }

    /// Each lane's renter's total against its provider's; a gap is allowed one receipt
    /// (an interval and a round trip at the session's price) per session `affected`
    /// says a cut or a stop of its provider broke off.
    pub(super) fn lane_gaps(
        &self,
        nodes: &Nodes,
        books: &[Book],
        rented: &[Rented],
        affected: &dyn Fn(&Rented) -> bool,
    ) -> Gaps {
        let receipt = self.interval + self.round_trip;
        let mut allowed: HashMap<LaneKey, u64> = HashMap::new();
        for r in rented.iter().filter(|r| affected(r)) {
            if let Some(held) = books[r.renter].heads.get(&r.session) {
                let one = price(held.pricing.session_per_minute, receipt);
                *allowed.entry(held.lane).or_default() += one.micros() + 2;
            }
        }
        let mut gaps = Gaps::default();
        for (index, book) in books.iter().enumerate().skip(nodes.providers) {
            let me = nodes.node(index).id;
            for (lane, &paid) in book.lanes.iter().filter(|(lane, _)| lane.renter == me) {
                let recorded = nodes
                    .index_of(&lane.provider)
                    .and_then(|p| books[p].lanes.get(lane))
                    .copied()
                    .unwrap_or(0);
                gaps.add(paid, recorded, allowed.get(lane).copied().unwrap_or(0));
            }
        }
        gaps
    }

    /// The work each cut session's provider did (its sandbox's open time) beyond what
    /// its own ledger was paid, against the ack window at the session's price.
    pub(super) fn unpaid(
        &self,
        nodes: &Nodes,
        books: &[Book],
        rented: &[Rented],
    ) -> Option<Unpaid> {
        if self.cuts.is_empty() {
            return None;
        }
        let window = self.interval + self.ack_timeout + self.round_trip;
        let now = nodes.clock.monotonic();
        let mut losses = Losses::default();
        for r in rented.iter().filter(|r| self.cut(r)) {
            let Some((held, lost)) =
                super::unpaid_work(nodes, books, r, |work| work.closed.unwrap_or(now))
            else {
                continue;
            };
            // A rounding micro-USDC at each end of the priced span, as model mode.
            let bound = price(held.pricing.session_per_minute, window).micros() + 2;
            losses.add(lost, bound);
        }
        let cause = LossCause::Partitions;
        Some(losses.row(
            cause.as_str().to_owned(),
            "provider",
            cause.bound().to_owned(),
        ))
    }

    /// The check a run with partitions adds: no traced offer across an active partition.
    pub(super) fn checks(&self, nodes: &Nodes, traces: &[Trace]) -> Vec<Check> {
        if self.cuts.is_empty() {
            return Vec::new();
        }
        let (traced, crossed) = self.crossings(nodes, traces);
        let sides: Vec<String> = (0..self.cuts.len())
            .map(|i| {
                let off = (0..nodes.len())
                    .filter(|&n| self.cuts.cut_off(i, n))
                    .count();
                format!("partition {} cut off {off} of {} nodes", i + 1, nodes.len())
            })
            .collect();
        vec![Check {
            name: "no offer crossed an active partition".into(),
            held: crossed == 0,
            detail: format!(
                "{}; {traced} traced offers published during a partition; {crossed} \
                 books across it took one in before it healed",
                sides.join(", ")
            ),
        }]
    }

    /// The share of the other nodes reached by the worst offer traced after a partition
    /// healed, while none was active.
    pub(super) fn coverage_after_heal(&self, nodes: &Nodes, traces: &[Trace]) -> Option<f64> {
        let heard = nodes.ears.heard();
        let windows: Vec<_> = (0..self.cuts.len()).map(|i| self.cuts.window(i)).collect();
        traces
            .iter()
            .filter(|t| {
                let healed = windows
                    .iter()
                    .any(|w| w.1.is_some_and(|h| h <= t.published));
                let active = windows.iter().any(|&(began, healed)| {
                    began.is_some_and(|b| b <= t.published)
                        && healed.is_none_or(|h| t.published < h)
                });
                healed && !active
            })
            .map(|t| {
                let books: std::collections::HashSet<usize> = heard
                    .iter()
                    .filter(|h| h.offer == t.offer && h.node != t.publisher)
                    .map(|h| h.node)
                    .collect();
                report::round6(books.len() as f64 / (nodes.len() - 1).max(1) as f64)
            })
            .reduce(f64::min)
    }

    /// Traced offers published while a partition was active, and how many books across
    /// it took one in before the heal.
    fn crossings(&self, nodes: &Nodes, traces: &[Trace]) -> (u64, u64) {
        let heard = nodes.ears.heard();
        let (mut traced, mut crossed) = (0, 0);
        for trace in traces {
            let mut during = false;
            for i in 0..self.cuts.len() {
                let (Some(began), healed) = self.cuts.window(i) else {
                    continue;
                };
                let active = |at| began <= at && healed.is_none_or(|healed| at < healed);
                if !active(trace.published) {
                    continue;
                }
                during = true;
                crossed += heard
                    .iter()
                    .filter(|h| h.offer == trace.offer && active(h.at))
                    .filter(|h| self.cuts.splits(i, trace.publisher, h.node))
                    .count() as u64;
            }
            traced += u64::from(during);
        }
        (traced, crossed)
    }
}

/// `span` of session time at `per_minute`.
pub(super) fn price(per_minute: Usdc, span: Duration) -> Usdc {
    orien_sim::model::session::cost(
        per_minute,
        u64::try_from(span.as_millis()).unwrap_or(u64::MAX),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lane_may_trail_its_renter_by_what_its_cut_sessions_allow_and_never_lead() {
        let mut gaps = Gaps::default();
        gaps.add(5_000, 5_000, 0);
        gaps.add(5_000, 4_200, 800);
        assert_eq!(
            (gaps.ahead, gaps.lanes, gaps.beyond_bound, gaps.behind),
            (800, 1, 0, 0)
        );
        // Without a cut session on it, a lane has no gap to spare.
        gaps.add(3_000, 2_999, 0);
        assert_eq!((gaps.ahead, gaps.lanes, gaps.beyond_bound), (801, 2, 1));
        // A provider's ledger ahead of its renter's is never right.
        gaps.add(1_000, 1_100, 10_000);
        assert_eq!(gaps.behind, 100);
    }
}
