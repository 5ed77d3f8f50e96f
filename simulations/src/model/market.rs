//! Renters' requests: choosing an offer, opening, and settling each session.

use super::*;

/// Money lost of one kind.
#[derive(Default)]
pub(super) struct LossTally {
    pub(super) sessions: u64,
    pub(super) total: u64,
    pub(super) worst: u64,
    pub(super) worst_share: f64,
}

impl LossTally {
    pub(super) fn add(&mut self, lost: Usdc, bound: Usdc) {
        if lost.is_zero() && bound.is_zero() {
            return;
        }
        self.sessions += 1;
        self.total += lost.micros();
        self.worst = self.worst.max(lost.micros());
        let share = if bound.is_zero() {
            f64::INFINITY
        } else {
            lost.micros() as f64 / bound.micros() as f64
        };
        self.worst_share = self.worst_share.max(share);
    }
}

impl World<'_> {
    pub(super) fn arrival(&mut self) {
        self.requested += 1;
        let renter = self.rng.below(self.renters.len()) as u32;
        let tool = self.pick_tool();
        let demand = &self.scenario.demand;
        let wanted_us = (self.rng.exponential(demand.mean_session_minutes.0) * US_PER_MINUTE as f64)
            .min(demand.max_session_minutes.0 * US_PER_MINUTE as f64)
            .max(1_000_000.0) as u64;
        let budget = demand.budget.0;
        let pool = self.offers[tool].len();
        let mut candidates: Vec<OfferRef> = Vec::new();
        for _ in 0..demand.candidates.min(pool as u32) {
            let offer = self.offers[tool][self.rng.below(pool)];
            if !candidates.iter().any(|c| c.node == offer.node) && self.knows(renter, &offer) {
                candidates.push(offer);
            }
        }
        candidates.sort_by_key(|c| (c.price, c.node));
        let bucket = self.bucket_index(self.now);
        self.buckets[bucket].requested += 1;
        if candidates.is_empty() {
            self.record(Outcome::NoOfferKnown, bucket);
            return;
        }
        let open_timeout = secs_us(self.scenario.sessions.open_timeout_secs.0);
        let mut waited = 0;
        for offer in candidates {
            let node = offer.node as usize;
            if offer.sybil {
                self.sybil_opens += 1;
                self.unanswered += 1;
                waited += open_timeout;
                self.distrusted.insert((renter, offer.node));
                continue;
            }
            if !self.providers[node].online() || self.cut(self.renter_node(renter), node) {
                self.unanswered += 1;
                waited += open_timeout;
                continue;
            }
            if self.providers[node].active.len() >= self.scenario.nodes.lanes as usize {
                self.full += 1;
                waited += self.timing.round_trip_us;
                continue;
            }
            self.open(
                renter,
                offer,
                budget,
                wanted_us,
                waited + self.timing.round_trip_us,
            );
            return;
        }
        self.record(Outcome::NoProviderAnswered, bucket);
    }

    pub(super) fn pick_tool(&mut self) -> usize {
        let total: f64 = self.tool_weights.iter().sum();
        let mut x = self.rng.unit() * total;
        for (t, w) in self.tool_weights.iter().enumerate() {
            if x < *w {
                return t;
            }
            x -= w;
        }
        self.tool_weights.len() - 1
    }

    pub(super) fn open(
        &mut self,
        renter: u32,
        offer: OfferRef,
        budget: Usdc,
        wanted_us: u64,
        delay_us: u64,
    ) {
        self.opened += 1;
        self.open_delays.push(delay_us);
        let index = self.sessions.len() as u32;
        let opened_us = self.now + delay_us;
        let to_spend = session::time_to_spend(offer.price, budget).saturating_mul(1_000);
        let (planned, length) = if to_spend <= wanted_us {
            (Outcome::BudgetSpent, to_spend)
        } else {
            (Outcome::Completed, wanted_us)
        };
        let receipts = (length / self.timing.interval_us).max(1);
        // Who breaks the session off first, and when (session time).
        let mut end = (length, planned);
        let provider = &self.providers[offer.node as usize];
        let cheat_at = match provider.conduct {
            Conduct::GreedyClaims => Some(1 + self.rng.below(receipts as usize) as u64),
            // Exits held back ~1 s per receipt interval add up past the 2 s slack by
            // the third receipt (the percentage only grows with the session).
            Conduct::DelaysExits => Some(3),
            Conduct::Honest | Conduct::RidesTolerance => None,
        };
        if let Some(k) = cheat_at {
            let at = k * self.timing.interval_us + self.timing.round_trip_us;
            if at < end.0 {
                end = (at, Outcome::Dispute);
            }
        }
        if self.renters[renter as usize].silent {
            let k = 1 + self.rng.below(receipts as usize) as u64;
            let at = k * self.timing.interval_us + self.timing.ack_timeout_us;
            if at < end.0 {
                end = (at, Outcome::RenterStoppedAcking);
            }
        }
        self.renters[renter as usize].deposited = self.renters[renter as usize]
            .deposited
            .saturating_add(budget);
        self.providers[offer.node as usize].active.push(index);
        self.sessions.push(Session {
            renter,
            provider: offer.node,
            price: offer.price,
            budget,
            opened_us,
            planned,
            ended: false,
        });
        self.schedule(
            opened_us + end.0,
            Event::SessionEnd {
                session: index,
                outcome: end.1,
            },
        );
    }

    pub(super) fn end_session(&mut self, s: usize, outcome: Outcome) {
        if self.sessions[s].ended {
            return;
        }
        let session = &self.sessions[s];
        let (renter, provider, price, budget) = (
            session.renter,
            session.provider as usize,
            session.price,
            session.budget,
        );
        let served = self.now.saturating_sub(session.opened_us);
        let conduct = self.providers[provider].conduct;
        let timing = self.timing;
        let window = timing.ack_window_us() / 1_000;
        let (settlement, loss): (Settlement, Option<(LossCause, Usdc)>) = match outcome {
            Outcome::Completed | Outcome::BudgetSpent | Outcome::ProviderLeft => {
                let extra = if conduct == Conduct::RidesTolerance {
                    session::tolerance_ms(served / 1_000)
                } else {
                    0
                };
                let settled = session::settle(price, budget, served, served, extra);
                let loss = (conduct == Conduct::RidesTolerance)
                    .then(|| (LossCause::WithinTolerance, session::cost(price, extra)));
                (settled, loss)
            }
            Outcome::ProviderCrashed => {
                let settled =
                    session::settle(price, budget, served, timing.last_receipt(served), 0);
                (
                    settled,
                    Some((
                        LossCause::Crashes,
                        session::cost(price, timing.interval_us / 1_000),
                    )),
                )
            }
            Outcome::Partitioned => {
                let paid_until = timing.last_receipt(served.saturating_sub(timing.ack_timeout_us));
                let settled = session::settle(price, budget, served, paid_until, 0);
                (
                    settled,
                    Some((LossCause::Partitions, session::cost(price, window))),
                )
            }
            Outcome::RenterStoppedAcking => {
                let paid_until = timing
                    .last_receipt(served.saturating_sub(timing.ack_timeout_us))
                    .saturating_sub(timing.interval_us);
                let settled = session::settle(price, budget, served, paid_until, 0);
                (
                    settled,
                    Some((LossCause::SilentRenters, session::cost(price, window))),
                )
            }
            Outcome::Dispute => {
                let refused = timing.last_receipt(served.saturating_sub(timing.round_trip_us));
                let paid_until = refused.saturating_sub(timing.interval_us);
                // Exit delayers got their slack accepted until the refusal.
                let extra = if conduct == Conduct::DelaysExits {
                    session::tolerance_ms(paid_until / 1_000)
                } else {
                    0
                };
                let settled = session::settle(price, budget, served, paid_until, extra);
                let cause = if conduct == Conduct::DelaysExits {
                    LossCause::ExitsHeldBack
                } else {
                    LossCause::GreedyClaims
                };
                (
                    settled,
                    Some((
                        cause,
                        session::cost(price, session::tolerance_ms(paid_until / 1_000)),
                    )),
                )
            }
            Outcome::NoOfferKnown | Outcome::NoProviderAnswered => {
                unreachable!("only opened sessions end")
            }
        };
        if let Some((cause, bound)) = loss {
            let lost = if cause.provider_loses() {
                settlement.provider_unpaid
            } else {
                settlement.renter_overpaid
            };
            // A rounding micro-USDC at each end of a priced span.
            let bound = bound.saturating_add(Usdc::from_micros(2));
            self.losses.entry(cause).or_default().add(lost, bound);
        }
        // The ledgers: the renter pays, the provider earns its 90 %, fee and reserve.
        if settlement.paid > budget {
            self.over_budget += 1;
        }
        let honest = conduct == Conduct::Honest && !self.renters[renter as usize].silent;
        if honest && outcome.succeeded() && settlement.paid != settlement.metered {
            self.honest_mismatches += 1;
        }
        let split = Split::of(settlement.paid);
        let renter = &mut self.renters[renter as usize];
        renter.paid = renter.paid.saturating_add(settlement.paid);
        let p = &mut self.providers[provider];
        p.earned = p.earned.saturating_add(split.provider());
        p.active.retain(|&a| a as usize != s);
        self.fee = self.fee.saturating_add(split.fee());
        self.reserve = self.reserve.saturating_add(split.reserve());
        self.sessions[s].ended = true;
        let bucket = self.bucket_index(self.sessions[s].opened_us);
        self.record(outcome, bucket);
    }

    pub(super) fn record(&mut self, outcome: Outcome, bucket: usize) {
        *self.outcomes.entry(outcome).or_default() += 1;
        if outcome.succeeded() {
            self.buckets[bucket].succeeded += 1;
        }
    }

    pub(super) fn bucket_index(&self, at: u64) -> usize {
        let width = u64::from(self.scenario.report.bucket_minutes) * US_PER_MINUTE;
        ((at / width) as usize).min(self.buckets.len() - 1)
    }
}
