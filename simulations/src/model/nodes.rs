//! Providers coming and going, partitions, and how offers reach renters.

use super::*;
use churn::Change;

impl World<'_> {
    pub(super) fn day_change(&mut self, p: usize) {
        let day_us = self.scenario.churn.day_minutes.0 * US_PER_MINUTE as f64;
        let day = self.now as f64 / day_us;
        let away = self.providers[p].rhythm.away(day + 1e-9);
        if away != self.providers[p].away {
            // A crashed node neither withdraws nor announces: its restart does.
            let crashed = self.providers[p].crashed;
            if away {
                self.go_offline(p, Outcome::ProviderLeft);
                self.providers[p].away = true;
                if !crashed {
                    self.providers[p].withdrawn_us = Some(self.now);
                    self.turn(p, Change::Leaves);
                }
            } else {
                self.providers[p].away = false;
                if !crashed {
                    self.come_online(p);
                }
            }
        }
        if let Some(change) = self.providers[p].rhythm.next_change(day + 1e-9) {
            // Truncated to the µs, a change of a short day can fall at or before now,
            // where the day has not turned yet by `day + 1e-9` (0.12 µs of a two-minute
            // day): it is looked at again a µs later, not in the same instant for ever.
            self.schedule(
                ((change * day_us) as u64).max(self.now + 1),
                Event::DayChange { provider: p as u32 },
            );
        }
    }

    pub(super) fn crash(&mut self, p: usize) {
        if self.providers[p].online() {
            self.go_offline(p, Outcome::ProviderCrashed);
            self.providers[p].crashed = true;
            self.turn(p, Change::Crashes);
            let down = self
                .rng
                .exponential(self.scenario.churn.mean_downtime_minutes.0 * US_PER_MINUTE as f64);
            self.schedule(
                self.now + down as u64,
                Event::Restart { provider: p as u32 },
            );
        } else {
            self.schedule_crash(p);
        }
    }

    pub(super) fn restart(&mut self, p: usize) {
        self.providers[p].crashed = false;
        if !self.providers[p].away {
            self.come_online(p);
        }
        self.schedule_crash(p);
    }

    pub(super) fn come_online(&mut self, p: usize) {
        self.turn(p, Change::Returns);
        let provider = &mut self.providers[p];
        provider.announced_us = self.now;
        provider.withdrawn_us = None;
        provider.epoch += 1;
    }

    /// Logs a provider's turn when the run's schedule is asked for.
    fn turn(&mut self, p: usize, change: Change) {
        if let Some(turns) = &mut self.turns {
            turns.push(churn::Turn {
                at_us: self.now,
                provider: p as u32,
                change,
            });
        }
    }

    pub(super) fn go_offline(&mut self, p: usize, outcome: Outcome) {
        for s in std::mem::take(&mut self.providers[p].active) {
            self.end_session(s as usize, outcome);
        }
    }

    pub(super) fn partition_start(&mut self, index: usize) {
        self.partitions_active[index] = true;
        // Sessions across the cut: receipts go unacknowledged and the provider stops an
        // ack timeout after the first one the cut swallows.
        for s in 0..self.sessions.len() {
            let session = &self.sessions[s];
            if session.ended
                || !self.cut(self.renter_node(session.renter), session.provider as usize)
            {
                continue;
            }
            let served = self.now.saturating_sub(session.opened_us);
            let next_receipt = self.timing.last_receipt(served) + self.timing.interval_us;
            let stop = session.opened_us + next_receipt + self.timing.ack_timeout_us;
            self.schedule(
                stop,
                Event::SessionEnd {
                    session: s as u32,
                    outcome: Outcome::Partitioned,
                },
            );
        }
    }

    pub(super) fn renter_node(&self, renter: u32) -> usize {
        self.providers.len() + renter as usize
    }

    /// Whether an active partition separates two nodes.
    pub(super) fn cut(&self, a: usize, b: usize) -> bool {
        self.scenario
            .network
            .partitions
            .iter()
            .enumerate()
            .any(|(i, partition)| {
                self.partitions_active[i]
                    && side(self.seed, i, a, partition.fraction.0)
                        != side(self.seed, i, b, partition.fraction.0)
            })
    }

    pub(super) fn node_online(&self, node: usize) -> bool {
        node >= self.providers.len() || self.providers[node].online()
    }

    pub(super) fn trace(&mut self, index: u32) {
        let online: Vec<usize> = (0..self.providers.len())
            .filter(|&p| self.providers[p].online())
            .collect();
        if online.is_empty() {
            return;
        }
        let mut rng = Rng::stream(self.seed, 1_000 + u64::from(index));
        let from = online[rng.below(online.len())];
        let is_online = |n: usize| self.node_online(n);
        let is_cut = |a: usize, b: usize| self.cut(a, b);
        let when = Conditions {
            online: &is_online,
            cut: &is_cut,
        };
        let trace = gossip::trace(&self.mesh, from, &self.scenario.network, &when, &mut rng);
        self.heard_delays.extend_from_slice(&trace.arrivals_us);
        self.heard_delays.sort_unstable();
        self.traces.push(trace);
    }

    /// How long after an announcement a node hears of it: a draw from the traced
    /// arrival times, the same for the same node and announcement whenever it is asked.
    pub(super) fn hearing_delay(&self, node: usize, offerer: u32, epoch: u32) -> u64 {
        let draw = mix(
            self.seed ^ node as u64,
            u64::from(offerer) | u64::from(epoch) << 32,
        );
        let u = (draw >> 11) as f64 / (1u64 << 53) as f64;
        report::quantile(&self.heard_delays, u)
    }

    /// Whether `renter` counts `offer` among the offers it could open now.
    pub(super) fn knows(&self, renter: u32, offer: &OfferRef) -> bool {
        let node = self.renter_node(renter);
        if offer.sybil {
            return !self.distrusted.contains(&(renter, offer.node))
                && self.now >= self.hearing_delay(node, offer.node, 0);
        }
        let provider = &self.providers[offer.node as usize];
        let heard = self.now
            >= provider.announced_us + self.hearing_delay(node, offer.node, provider.epoch);
        let ttl = minutes_us(self.scenario.sessions.offer_ttl_minutes.0);
        let expired = provider.crashed && self.now >= provider.announced_us + ttl;
        let withdrawn = provider.withdrawn_us.is_some_and(|at| {
            self.now >= at + self.hearing_delay(node, offer.node, provider.epoch + 1)
        });
        heard && !expired && !withdrawn
    }
}

/// Which side of partition `index` a node is on (`true`: cut off), nodes numbered
/// providers first, then renters. Network mode asks the same function, so both modes
/// cut off the same nodes for a seed.
pub fn side(seed: u64, index: usize, node: usize, fraction: f64) -> bool {
    let draw = mix(seed ^ 0x5EED_0000 ^ index as u64, node as u64);
    ((draw >> 11) as f64 / (1u64 << 53) as f64) < fraction
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const SCENARIO: &str = r#"name = "t"
description = "one day of home providers"
duration_minutes = 1440
[nodes]
providers = 50
renters = 5
[[tools]]
name = "sha256"
providers = 1.0
price_per_minute = { min = "0.01", max = "0.02" }
[demand]
sessions_per_minute = 1
mean_session_minutes = 1
budget = "0.10"
[churn]
diurnal_amplitude = 0.9
"#;

    #[test]
    fn a_crashed_provider_neither_withdraws_nor_announces_until_it_restarts() {
        let scenario = Scenario::parse(SCENARIO, Path::new("t.toml")).expect("parses");
        let mut world = World::new(&scenario, 3);
        let day_us = 1440.0 * US_PER_MINUTE as f64;
        let p = (0..world.providers.len())
            .find(|&p| {
                let r = world.providers[p].rhythm;
                r.half_window > 0.05 && r.half_window < 0.45 && !world.providers[p].away
            })
            .expect("a provider with a daily window, online at the start");
        world.providers[p].crashed = true;
        let (epoch, withdrawn) = (world.providers[p].epoch, world.providers[p].withdrawn_us);
        // Its day turns twice (away, then back) while it is down.
        let mut day = 0.0;
        for expect_away in [true, false] {
            day = world.providers[p]
                .rhythm
                .next_change(day)
                .expect("a change")
                + 1e-6;
            world.now = (day * day_us) as u64;
            world.day_change(p);
            assert_eq!(world.providers[p].away, expect_away);
        }
        assert_eq!(
            world.providers[p].epoch, epoch,
            "no announcement while down"
        );
        assert_eq!(
            world.providers[p].withdrawn_us, withdrawn,
            "no withdrawal while down"
        );
        world.restart(p);
        assert_eq!(world.providers[p].epoch, epoch + 1, "the restart announces");
        assert!(world.providers[p].online());
    }

    #[test]
    fn the_churn_schedule_alternates_each_providers_turns_in_time_order() {
        let text = SCENARIO.replace(
            "diurnal_amplitude = 0.9",
            "diurnal_amplitude = 0.9\ncrashes_per_hour = 0.5\nmean_downtime_minutes = 30",
        );
        let scenario = Scenario::parse(&text, Path::new("t.toml")).expect("parses");
        let schedule = super::super::churn_schedule(&scenario, 3);
        assert_eq!(
            schedule,
            super::super::churn_schedule(&scenario, 3),
            "replays"
        );
        let mut online: Vec<bool> = schedule.away_at_start.iter().map(|a| !a).collect();
        let mut counts = [0u32; 3];
        let mut last = 0;
        for turn in &schedule.turns {
            assert!(turn.at_us >= last, "in time order");
            last = turn.at_us;
            let was = std::mem::replace(
                &mut online[turn.provider as usize],
                turn.change == Change::Returns,
            );
            assert_eq!(was, turn.change != Change::Returns, "{turn:?}");
            counts[turn.change as usize] += 1;
        }
        let [leaves, crashes, returns] = counts;
        // 50 providers over a day: each away once, about 0.5 × 24 × (1 - 0.45) crashes.
        assert!((30..=50).contains(&leaves), "{counts:?}");
        assert!((200..=460).contains(&crashes), "{counts:?}");
        assert!(returns + 50 >= leaves + crashes, "{counts:?}");
    }

    #[test]
    fn a_two_minute_day_turns_each_provider_away_and_back_once_a_day() {
        let text = SCENARIO
            .replace("duration_minutes = 1440", "duration_minutes = 4")
            .replace(
                "diurnal_amplitude = 0.9",
                "diurnal_amplitude = 0.9\nday_minutes = 2",
            );
        let scenario = Scenario::parse(&text, Path::new("t.toml")).expect("parses");
        let schedule = super::super::churn_schedule(&scenario, 3);
        for p in 0..50u32 {
            let turns = schedule.turns.iter().filter(|t| t.provider == p).count();
            // Two days: each of its windows begins and ends (or one was under way at
            // the start), at most four turns.
            assert!(turns <= 4, "provider {p}: {turns} turns");
        }
        let turns = schedule.turns.len();
        assert!((60..=200).contains(&turns), "{turns} turns");
    }
}
