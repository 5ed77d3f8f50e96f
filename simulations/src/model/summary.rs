//! The report: figures from the run's tallies, and the invariants checked.

use super::*;

impl World<'_> {
    pub(super) fn report(mut self) -> Report {
        // Providers online at each bucket's start: replay the rhythms (crashes are not
        // replayed; they are rare and short next to a bucket).
        let day_us = self.scenario.churn.day_minutes.0 * US_PER_MINUTE as f64;
        for bucket in &mut self.buckets {
            let day = (u64::from(bucket.minute) * US_PER_MINUTE) as f64 / day_us;
            bucket.providers_online = self
                .providers
                .iter()
                .filter(|p| !p.rhythm.away(day))
                .count() as u32;
        }
        let propagation = self.propagation();
        let earnings = self.earnings();
        let renters_paid = sum(self.renters.iter().map(|r| r.paid));
        let deposited = sum(self.renters.iter().map(|r| r.deposited));
        let providers_earned = sum(self.providers.iter().map(|p| p.earned));
        let escrow_left = deposited.saturating_sub(renters_paid);
        let mut checks = Vec::new();
        let parts = providers_earned
            .saturating_add(self.fee)
            .saturating_add(self.reserve);
        checks.push(Check {
            name: "money is conserved: renters paid = providers + fee + reserve".into(),
            held: parts == renters_paid,
            detail: format!(
                "{} = {} + {} + {}",
                renters_paid.decimal(),
                providers_earned.decimal(),
                self.fee.decimal(),
                self.reserve.decimal()
            ),
        });
        let overdrawn = self.renters.iter().filter(|r| r.paid > r.deposited).count();
        checks.push(Check {
            name: "no renter paid more than it deposited".into(),
            held: overdrawn == 0,
            detail: format!(
                "{overdrawn} overdrawn; {} left in escrow",
                escrow_left.decimal()
            ),
        });
        checks.push(Check {
            name: "no session paid beyond its budget".into(),
            held: self.over_budget == 0,
            detail: format!("{} over", self.over_budget),
        });
        checks.push(Check {
            name: "every honest session that ran its course settled all it used".into(),
            held: self.honest_mismatches == 0,
            detail: format!("{} mismatched", self.honest_mismatches),
        });
        let worst_share = self
            .losses
            .values()
            .map(|t| t.worst_share)
            .fold(0.0, f64::max);
        checks.push(Check {
            name: "every loss within its bound".into(),
            held: worst_share <= 1.0,
            detail: format!("worst share of a bound {worst_share:.3}"),
        });
        let losses = self.losses();
        let open_delays = {
            let mut d = self.open_delays.clone();
            d.sort_unstable();
            d
        };
        let hostile = &self.scenario.hostile;
        let sessions = Sessions {
            requested: self.requested,
            opened: self.opened,
            succeeded: self
                .outcomes
                .iter()
                .filter(|(o, _)| o.succeeded())
                .map(|(_, n)| n)
                .sum(),
            outcomes: Outcome::ALL
                .iter()
                .map(|o| {
                    (
                        o.as_str().to_owned(),
                        self.outcomes.get(o).copied().unwrap_or(0),
                    )
                })
                .collect(),
            unanswered_opens: self.unanswered,
            full_refusals: self.full,
            open_p50_ms: report::quantile(&open_delays, 0.5) as f64 / 1_000.0,
            open_p99_ms: report::quantile(&open_delays, 0.99) as f64 / 1_000.0,
            over_time: self.buckets.clone(),
        };
        Report {
            scenario: self.scenario.name.clone(),
            mode: "model".into(),
            seed: self.seed,
            nodes: Nodes {
                providers: self.scenario.nodes.providers,
                renters: self.scenario.nodes.renters,
                sybils: hostile.sybil_nodes,
            },
            simulated_minutes: self.scenario.duration_minutes,
            events: self.events,
            propagation,
            sessions,
            earnings,
            money: Money {
                deposited: deposited.decimal().to_string(),
                renters_paid: renters_paid.decimal().to_string(),
                providers_earned: providers_earned.decimal().to_string(),
                fee: self.fee.decimal().to_string(),
                reserve: self.reserve.decimal().to_string(),
                escrow_left: escrow_left.decimal().to_string(),
            },
            losses,
            hostile: Hostile {
                forged_offers: (hostile.forged_offers_per_minute.0
                    * f64::from(self.scenario.duration_minutes))
                    as u64,
                sybil_offers_sent: u64::from(hostile.sybil_nodes)
                    * u64::from(hostile.sybil_offers_each),
                sybil_offers_kept: u64::from(hostile.sybil_nodes)
                    * u64::from(hostile.sybil_offers_each.min(OFFERS_PER_PROVIDER)),
                opens_wasted_on_sybils: self.sybil_opens,
            },
            checks,
            stack: None,
        }
    }

    pub(super) fn propagation(&self) -> Propagation {
        let mut hops: Vec<u32> = self
            .traces
            .iter()
            .flat_map(|t| t.hops.iter().copied())
            .collect();
        hops.sort_unstable();
        let coverage: Vec<f64> = self
            .traces
            .iter()
            .map(|t| {
                if t.reachable == 0 {
                    1.0
                } else {
                    t.arrivals_us.len() as f64 / t.reachable as f64
                }
            })
            .collect();
        Propagation::of(&self.heard_delays, &hops, &coverage)
    }

    pub(super) fn earnings(&self) -> Earnings {
        let providers: Vec<(Usdc, u64)> = self
            .providers
            .iter()
            .map(|p| {
                (
                    p.offers.iter().map(|o| o.1).min().unwrap_or(Usdc::ZERO),
                    p.earned.micros(),
                )
            })
            .collect();
        Earnings::of(&providers)
    }

    pub(super) fn losses(&self) -> Vec<Loss> {
        self.losses
            .iter()
            .map(|(cause, t)| Loss {
                cause: cause.as_str().to_owned(),
                loser: if cause.provider_loses() {
                    "provider"
                } else {
                    "renter"
                }
                .to_owned(),
                bound: cause.bound().to_owned(),
                sessions: t.sessions,
                total: report::usdc_string(t.total),
                worst: report::usdc_string(t.worst),
                worst_share_of_bound: report::round6(t.worst_share),
            })
            .collect()
    }
}

pub(super) fn sum(values: impl Iterator<Item = Usdc>) -> Usdc {
    values.fold(Usdc::ZERO, Usdc::saturating_add)
}
