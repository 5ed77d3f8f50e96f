//! What a run found: `report.json` (every figure, byte-identical for a seed) and
//! `report.md` (the summary a person reads).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use orien_protocol::Usdc;
use serde::{Deserialize, Serialize};

/// The whole report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// The scenario's name.
    pub scenario: String,
    /// Which simulator produced it (`model`).
    pub mode: String,
    /// The seed that decided every draw.
    pub seed: u64,
    /// Nodes by role.
    pub nodes: Nodes,
    /// Simulated minutes.
    pub simulated_minutes: u32,
    /// Events the simulator processed.
    pub events: u64,
    /// How offers spread.
    pub propagation: Propagation,
    /// What renters asked for and got.
    pub sessions: Sessions,
    /// Honest providers' earnings.
    pub earnings: Earnings,
    /// Money across every ledger.
    pub money: Money,
    /// What went to cheaters and failures, against its bounds.
    pub losses: Vec<Loss>,
    /// What hostile nodes tried.
    pub hostile: Hostile,
    /// The invariants checked, each with its verdict.
    pub checks: Vec<Check>,
    /// What the node stack did (network mode only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<Stack>,
}

/// What the real node stack did in a network-mode run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Stack {
    /// Peers each node had an open connection to at the end: mean.
    pub peers_mean: f64,
    /// The most.
    pub peers_max: u32,
    /// The fewest.
    pub peers_min: u32,
    /// Connections the nodes closed to keep within their connection budget, over
    /// every node.
    #[serde(default)]
    pub trimmed: u64,
    /// Connections established, over every node (each counted at both ends).
    #[serde(default)]
    pub connections_opened: u64,
    /// Peers looked up in the DHT because a request could not dial them (a renter
    /// knowing a provider's offer but no address for it), over every node.
    #[serde(default)]
    pub peer_lookups: u64,
    /// Receipts acknowledged, over every renter's ledger.
    pub receipts: u64,
    /// Sessions whose one modelled call did not run to its exit.
    pub failed_calls: u64,
    /// Connections a partition reset when it began (`network.partitions`), counted at
    /// the dialling end, which knows whom it dialled.
    #[serde(default)]
    pub connections_cut: u64,
    /// Dials across an active partition, which failed.
    #[serde(default)]
    pub dials_cut: u64,
    /// Share of the other nodes reached by the worst offer traced after a partition
    /// healed (while none was active); absent when no offer was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coverage_after_heal: Option<f64>,
    /// Providers' stops and starts (`churn.*`); absent when the scenario has no churn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub churn: Option<Churned>,
    /// What hostile renters and providers did (`hostile.silent_renters`,
    /// `hostile.exit_delayers`); absent when the scenario has neither.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostile: Option<Hostilities>,
}

/// Silent renters and exit delayers, played on real nodes (network mode).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hostilities {
    /// Renters drawn silent.
    pub silent_renters: u64,
    /// Sessions in which a silent renter ignored a receipt.
    pub silenced_sessions: u64,
    /// Receipts silent renters ignored (resends included).
    pub receipts_ignored: u64,
    /// Providers drawn to delay exits.
    pub exit_delayers: u64,
    /// Sessions in which an exit delayer held a call's exit back.
    pub delayed_sessions: u64,
    /// Exits held back (resends included).
    pub exits_delayed: u64,
    /// How long each exit was held back, ms.
    pub exit_delay_ms: u64,
}

/// Providers stopped and started again by churn, on real nodes (network mode).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Churned {
    /// Providers crashed (each stopped with no goodbye).
    pub crashes: u64,
    /// Of those, started again on the ledger the crash left.
    pub restarts: u64,
    /// Providers gone offline for their day (shut down as `orien-node` does).
    pub offline: u64,
    /// Of those, back.
    pub back: u64,
    /// Sessions a stop left open in a provider's ledger that its next start closed out
    /// (`restarted`).
    pub closed_out: u64,
    /// Sessions that succeeded on a provider opened after it restarted from a crash.
    pub served_after_restart: u64,
    /// Sessions that succeeded on a provider opened after it came back online.
    pub served_after_return: u64,
}

/// Nodes by role.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Nodes {
    /// Honest providers.
    pub providers: u32,
    /// Renters.
    pub renters: u32,
    /// Sybil nodes.
    pub sybils: u32,
}

/// How offers spread.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Propagation {
    /// Offers traced to every node.
    pub traced: u32,
    /// Arrival times over every (offer, node) pair reached, ms: 50th percentile.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// The slowest.
    pub max_ms: f64,
    /// Hops, 50th percentile.
    pub hops_p50: u32,
    /// Hops, 99th percentile.
    pub hops_p99: u32,
    /// Hops, most.
    pub hops_max: u32,
    /// Share of online nodes reached, the worst traced offer.
    pub worst_coverage: f64,
    /// Share of online nodes reached, over all traced offers.
    pub mean_coverage: f64,
    /// The arrival-time CDF: `(ms, share of reached pairs at or below it)`, 100 points.
    pub cdf: Vec<(f64, f64)>,
}

/// What renters asked for and got.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Sessions {
    /// Requests renters made.
    pub requested: u64,
    /// Sessions opened.
    pub opened: u64,
    /// Requests that got what they asked for.
    pub succeeded: u64,
    /// Outcomes by name.
    pub outcomes: BTreeMap<String, u64>,
    /// Opens tried on offers that did not answer (away, crashed, cut off, Sybil).
    pub unanswered_opens: u64,
    /// Opens refused because the provider had no free lane.
    pub full_refusals: u64,
    /// Open latency (request to session), ms, 50th and 99th percentiles.
    pub open_p50_ms: f64,
    /// 99th percentile.
    pub open_p99_ms: f64,
    /// By start time.
    pub over_time: Vec<Bucket>,
}

impl Propagation {
    /// The figures of traced offers: every arrival delay (µs, sorted), every arrival's
    /// hop count (sorted), and each offer's share of the nodes it could reach.
    pub fn of(delays_us: &[u64], hops: &[u32], coverage: &[f64]) -> Self {
        let ms = |q: f64| quantile(delays_us, q) as f64 / 1_000.0;
        Self {
            traced: coverage.len() as u32,
            p50_ms: ms(0.5),
            p90_ms: ms(0.9),
            p99_ms: ms(0.99),
            max_ms: ms(1.0),
            hops_p50: quantile(hops, 0.5),
            hops_p99: quantile(hops, 0.99),
            hops_max: quantile(hops, 1.0),
            worst_coverage: round6(coverage.iter().copied().fold(1.0, f64::min)),
            mean_coverage: if coverage.is_empty() {
                0.0
            } else {
                round6(coverage.iter().sum::<f64>() / coverage.len() as f64)
            },
            cdf: (1..=100)
                .map(|i| (ms(f64::from(i) / 100.0), f64::from(i) / 100.0))
                .collect(),
        }
    }
}

/// Sessions requested in one span of time.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Bucket {
    /// The span's start, minutes.
    pub minute: u32,
    /// Requests in it.
    pub requested: u64,
    /// Of which succeeded.
    pub succeeded: u64,
    /// Honest providers online at its start.
    pub providers_online: u32,
}

/// Honest providers' earnings (their 90 %).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Earnings {
    /// Total, USDC.
    pub total: String,
    /// Gini coefficient of earnings over honest providers (0: equal, 1: one takes all).
    pub gini: f64,
    /// Providers that earned nothing.
    pub earned_nothing: u32,
    /// Percentiles of earnings per provider, USDC: p10, p50, p90, p99, max.
    pub percentiles: BTreeMap<String, String>,
    /// Mean earnings by price quintile (cheapest first), USDC, over each provider's
    /// cheapest offer.
    pub by_price_quintile: Vec<String>,
    /// The Lorenz curve: `(share of providers, poorest first; share of all earnings
    /// they hold)`, 101 points.
    pub lorenz: Vec<(f64, f64)>,
}

impl Earnings {
    /// The figures of honest providers' earnings, from each provider's cheapest price
    /// and what it earned (µUSDC).
    pub fn of(providers: &[(Usdc, u64)]) -> Self {
        let mut per_provider: Vec<u64> = providers.iter().map(|p| p.1).collect();
        let total = per_provider.iter().sum::<u64>();
        // Mean earnings by the quintile of each provider's cheapest price.
        let mut by_price = providers.to_vec();
        by_price.sort_unstable();
        let quintile = by_price.len().div_ceil(5).max(1);
        let by_price_quintile = by_price
            .chunks(quintile)
            .map(|chunk| usdc_string(chunk.iter().map(|c| c.1).sum::<u64>() / chunk.len() as u64))
            .collect();
        per_provider.sort_unstable();
        let percentiles = [
            ("p10", 0.1),
            ("p50", 0.5),
            ("p90", 0.9),
            ("p99", 0.99),
            ("max", 1.0),
        ]
        .into_iter()
        .map(|(name, q)| (name.to_owned(), usdc_string(quantile(&per_provider, q))))
        .collect();
        Self {
            total: usdc_string(total),
            gini: round6(gini(&per_provider)),
            earned_nothing: per_provider.iter().filter(|&&e| e == 0).count() as u32,
            percentiles,
            by_price_quintile,
            lorenz: lorenz(&per_provider),
        }
    }
}

/// An amount of µUSDC as a decimal string (`"1.250000"`).
pub fn usdc_string(micros: u64) -> String {
    Usdc::from_micros(micros).decimal().to_string()
}

/// Money across every ledger.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Money {
    /// What renters deposited in escrow (each session's budget), USDC.
    pub deposited: String,
    /// What renters paid (sum over their ledgers), USDC.
    pub renters_paid: String,
    /// Providers' 90 % (sum over their ledgers), USDC.
    pub providers_earned: String,
    /// The protocol fee, 7 %.
    pub fee: String,
    /// The reserve, 3 %.
    pub reserve: String,
    /// Left in escrow for renters to withdraw.
    pub escrow_left: String,
}

/// Losses of one kind against their bound.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Loss {
    /// What caused them.
    pub cause: String,
    /// Who loses.
    pub loser: String,
    /// The bound, in words.
    pub bound: String,
    /// Sessions affected.
    pub sessions: u64,
    /// Total lost, USDC.
    pub total: String,
    /// The largest loss in one session, USDC.
    pub worst: String,
    /// The largest share of its own bound one session's loss took (≤ 1 holds).
    pub worst_share_of_bound: f64,
}

/// What hostile nodes tried and got.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Hostile {
    /// Offers with bad signatures sent. The model does not route them: the first node
    /// that checks a signature drops them.
    pub forged_offers: u64,
    /// Sybil offers published.
    pub sybil_offers_sent: u64,
    /// Of which offer books kept (64 per provider).
    pub sybil_offers_kept: u64,
    /// Opens renters wasted on Sybil offers.
    pub opens_wasted_on_sybils: u64,
}

/// One invariant and whether it held.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Check {
    /// What must hold.
    pub name: String,
    /// Whether it did.
    pub held: bool,
    /// The figures behind the verdict.
    pub detail: String,
}

impl Report {
    /// Whether every invariant held.
    pub fn all_held(&self) -> bool {
        self.checks.iter().all(|c| c.held)
    }

    /// `report.json`'s text: pretty, with a final newline, byte-identical for the same
    /// scenario and seed.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("a report serialises");
        text.push('\n');
        text
    }

    /// `report.md`'s text.
    pub fn to_markdown(&self) -> String {
        let mut md = String::new();
        let w = &mut md;
        let _ = writeln!(
            w,
            "# {} ({} mode, seed {})\n",
            self.scenario, self.mode, self.seed
        );
        let _ = writeln!(
            w,
            "{} providers, {} renters, {} Sybil nodes; {} simulated minutes; {} events.\n",
            self.nodes.providers,
            self.nodes.renters,
            self.nodes.sybils,
            self.simulated_minutes,
            self.events
        );
        let _ = writeln!(
            w,
            "## Checks\n\n| invariant | held | figures |\n|---|---|---|"
        );
        for c in &self.checks {
            let _ = writeln!(
                w,
                "| {} | {} | {} |",
                c.name,
                if c.held { "yes" } else { "**NO**" },
                c.detail
            );
        }
        if let Some(stack) = &self.stack {
            let _ = writeln!(
                w,
                "\n## The node stack\n\nEvery node ran the whole stack (gossipsub, Kademlia, offer book, session machines, a RocksDB ledger). At the end each had open connections to {:.1} peers on average ({} to {}), having opened {} connections (counted at both ends) and closed {} over their budgets in all; {} times a node looked a peer up in the DHT for want of its address; {} receipts were acknowledged; {} sessions' modelled call did not reach its exit.",
                stack.peers_mean,
                stack.peers_min,
                stack.peers_max,
                stack.connections_opened,
                stack.trimmed,
                stack.peer_lookups,
                stack.receipts,
                stack.failed_calls
            );
            if stack.connections_cut + stack.dials_cut > 0 {
                let _ = writeln!(
                    w,
                    "\nPartitions reset {} connections across them and refused {} dials across them.{}",
                    stack.connections_cut,
                    stack.dials_cut,
                    stack
                        .coverage_after_heal
                        .map(|c| format!(
                            " Offers traced after a partition healed reached {:.1} % of the other nodes or more.",
                            c * 100.0
                        ))
                        .unwrap_or_default()
                );
            }
            if let Some(churn) = &stack.churn {
                let _ = writeln!(
                    w,
                    "\nChurn crashed providers {} times ({} restarted on the ledger the crash left) and took them offline {} times ({} back); their starts closed out {} sessions the stops had left open. After coming back they served {} sessions that succeeded after a crash, {} after going offline.",
                    churn.crashes,
                    churn.restarts,
                    churn.offline,
                    churn.back,
                    churn.closed_out,
                    churn.served_after_restart,
                    churn.served_after_return
                );
            }
            if let Some(h) = &stack.hostile {
                let _ = writeln!(
                    w,
                    "\nHostile nodes: {} silent renters ignored {} receipts in {} sessions; {} exit delayers held {} exits back {} ms each in {} sessions.",
                    h.silent_renters,
                    h.receipts_ignored,
                    h.silenced_sessions,
                    h.exit_delayers,
                    h.exits_delayed,
                    h.exit_delay_ms,
                    h.delayed_sessions
                );
            }
        }
        let p = &self.propagation;
        let _ = writeln!(
            w,
            "\n## Offer propagation\n\n{} offers traced. Arrival p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms, max {:.0} ms; hops p50 {}, p99 {}, max {}; coverage of online nodes: mean {:.4}, worst {:.4}.",
            p.traced,
            p.p50_ms,
            p.p90_ms,
            p.p99_ms,
            p.max_ms,
            p.hops_p50,
            p.hops_p99,
            p.hops_max,
            p.mean_coverage,
            p.worst_coverage
        );
        let s = &self.sessions;
        let _ = writeln!(
            w,
            "\n## Sessions\n\n{} requested, {} opened, {} succeeded ({:.1} %). Open latency p50 {:.0} ms, p99 {:.0} ms; {} opens unanswered, {} refused for want of a lane.\n\n| outcome | requests |\n|---|---|",
            s.requested,
            s.opened,
            s.succeeded,
            percent(s.succeeded, s.requested),
            s.open_p50_ms,
            s.open_p99_ms,
            s.unanswered_opens,
            s.full_refusals
        );
        for (name, count) in &s.outcomes {
            let _ = writeln!(w, "| {name} | {count} |");
        }
        let _ = writeln!(
            w,
            "\n| from minute | requested | succeeded | providers online |\n|---|---|---|---|"
        );
        for b in &s.over_time {
            let _ = writeln!(
                w,
                "| {} | {} | {} | {} |",
                b.minute, b.requested, b.succeeded, b.providers_online
            );
        }
        let e = &self.earnings;
        let _ = writeln!(
            w,
            "\n## Earnings of honest providers\n\nTotal {} USDC; Gini {:.3}; {} earned nothing. Percentiles: {}.\nMean by price quintile, cheapest first: {}.",
            e.total,
            e.gini,
            e.earned_nothing,
            e.percentiles
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", "),
            e.by_price_quintile.join(", ")
        );
        let m = &self.money;
        let _ = writeln!(
            w,
            "\n## Money\n\n| deposited | renters paid | providers (90 %) | fee (7 %) | reserve (3 %) | left in escrow |\n|---|---|---|---|---|---|\n| {} | {} | {} | {} | {} | {} |",
            m.deposited, m.renters_paid, m.providers_earned, m.fee, m.reserve, m.escrow_left
        );
        let _ = writeln!(
            w,
            "\n## Losses\n\n| cause | who loses | sessions | total | worst | worst / bound | bound |\n|---|---|---|---|---|---|---|"
        );
        for l in &self.losses {
            let _ = writeln!(
                w,
                "| {} | {} | {} | {} | {} | {:.3} | {} |",
                l.cause, l.loser, l.sessions, l.total, l.worst, l.worst_share_of_bound, l.bound
            );
        }
        let h = &self.hostile;
        let _ = writeln!(
            w,
            "\n## Hostile nodes\n\n{} forged offers sent (the first node that checks one drops it). {} Sybil offers sent, {} kept in offer books; {} opens wasted on them (a Sybil never serves, so it holds no receipt to be paid for).",
            h.forged_offers, h.sybil_offers_sent, h.sybil_offers_kept, h.opens_wasted_on_sybils,
        );
        md
    }
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// The Gini coefficient of non-negative values (0 when they are all zero).
pub fn gini(values: &[u64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let n = sorted.len() as f64;
    let total: f64 = sorted.iter().map(|&v| v as f64).sum();
    if sorted.is_empty() || total == 0.0 {
        return 0.0;
    }
    let weighted: f64 = sorted
        .iter()
        .enumerate()
        .map(|(i, &v)| (2.0 * (i as f64 + 1.0) - n - 1.0) * v as f64)
        .sum();
    weighted / (n * total)
}

/// `x` to six decimals: the report's shares and coefficients need no more, and short
/// decimals read back from `report.json` as the same numbers.
pub fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// The Lorenz curve of non-negative values, at 101 points.
pub fn lorenz(values: &[u64]) -> Vec<(f64, f64)> {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let total: f64 = sorted.iter().map(|&v| v as f64).sum();
    let mut points = vec![(0.0, 0.0)];
    let mut running = 0.0;
    let mut taken = 0;
    for step in 1..=100 {
        let upto = sorted.len() * step / 100;
        running += sorted[taken..upto].iter().map(|&v| v as f64).sum::<f64>();
        taken = upto;
        let share = if total == 0.0 {
            f64::from(step as u32) / 100.0
        } else {
            running / total
        };
        points.push((f64::from(step as u32) / 100.0, round6(share)));
    }
    points
}

/// The `q`-quantile (0 to 1) of sorted values, nearest rank.
pub fn quantile<T: Copy + Default>(sorted: &[T], q: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gini_is_zero_for_equals_and_near_one_for_one_winner() {
        assert_eq!(gini(&[5, 5, 5, 5]), 0.0);
        assert_eq!(gini(&[0, 0]), 0.0);
        let one = gini(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 100]);
        assert!((one - 0.9).abs() < 1e-9, "{one}");
    }

    #[test]
    fn quantiles_take_the_nearest_rank() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(quantile(&v, 0.5), 50);
        assert_eq!(quantile(&v, 0.99), 99);
        assert_eq!(quantile(&v, 1.0), 100);
        assert_eq!(quantile(&v, 0.0), 1);
        assert_eq!(quantile::<u32>(&[], 0.5), 0);
    }
}
