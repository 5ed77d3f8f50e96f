//! When home providers are away: one window a day, and crashes.
//!
//! A provider with daily phase `φ` and threshold `u` (both uniform) is away while
//! `u < A × (1 + cos 2π(t/day + φ)) / 2`, where `A` is the scenario's diurnal amplitude.
//! At any moment a share of about `A/2` of providers is away, `A` at the trough of each
//! one's own day; each is away in one contiguous window per day, centred where its
//! cosine peaks, whose length follows from `u`. Crashes are a Poisson process per
//! provider, each followed by an exponential downtime.
//!
//! [`Schedule`] is what a run made of both: each provider's turns offline and back, in
//! time order. Network mode plays model mode's schedule on real nodes
//! ([`super::churn_schedule`]), so both modes churn the same providers at the same
//! times for a seed.

use std::f64::consts::TAU;

/// How a provider's presence changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Its day turns: it goes offline gracefully (its offers withdrawn).
    Leaves,
    /// It crashes: it stops at once, its offers left to expire.
    Crashes,
    /// It comes online (again): its day turned back, or it restarted after a crash,
    /// whichever of the two came last.
    Returns,
}

/// One provider's presence changing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Turn {
    /// When, µs from the start.
    pub at_us: u64,
    /// Which provider (by index).
    pub provider: u32,
    /// How.
    pub change: Change,
}

/// The providers' turns of a run. A provider is online at the start unless
/// `away_at_start` says otherwise; after that, `Leaves` and `Crashes` each take an
/// online provider offline and `Returns` brings an offline one back, so one provider's
/// turns alternate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schedule {
    /// Per provider: offline (its day away) from the start.
    pub away_at_start: Vec<bool>,
    /// Every turn, in time order.
    pub turns: Vec<Turn>,
}

impl Schedule {
    /// How many providers are online at `at_us` (turns at `at_us` included).
    pub fn online_at(&self, at_us: u64) -> u32 {
        let mut online: Vec<bool> = self.away_at_start.iter().map(|away| !away).collect();
        for turn in self.turns.iter().take_while(|t| t.at_us <= at_us) {
            if let Some(state) = online.get_mut(turn.provider as usize) {
                *state = turn.change == Change::Returns;
            }
        }
        online.iter().filter(|&&on| on).count() as u32
    }
}

/// A provider's daily rhythm.
#[derive(Debug, Clone, Copy)]
pub struct Rhythm {
    /// Phase in days, `[0, 1)`.
    pub phase: f64,
    /// Half the away window, in days (0: never away; ≥ 0.5: always away).
    pub half_window: f64,
}

impl Rhythm {
    /// The rhythm for a provider with phase and threshold draws `phase`, `u` in `[0, 1)`.
    pub fn new(amplitude: f64, phase: f64, u: f64) -> Self {
        let half_window = if amplitude <= 0.0 {
            0.0
        } else {
            let c = 2.0 * u / amplitude - 1.0;
            if c >= 1.0 {
                0.0
            } else {
                c.max(-1.0).acos() / TAU
            }
        };
        Self { phase, half_window }
    }

    /// Whether the provider is away at `day` (time in days).
    pub fn away(&self, day: f64) -> bool {
        if self.half_window <= 0.0 {
            return false;
        }
        // Distance from the centre of the nearest window, in days.
        let x = (day + self.phase).rem_euclid(1.0);
        x.min(1.0 - x) < self.half_window
    }

    /// The next moment after `day` at which being away changes, in days, if ever.
    pub fn next_change(&self, day: f64) -> Option<f64> {
        if self.half_window <= 0.0 || self.half_window >= 0.5 {
            return None;
        }
        // Window centres sit where day + phase is an integer.
        let centre = (day + self.phase).floor() - self.phase;
        [
            centre - self.half_window,
            centre + self.half_window,
            centre + 1.0 - self.half_window,
            centre + 1.0 + self.half_window,
        ]
        .into_iter()
        .find(|&edge| edge > day + 1e-12)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn providers_online_count_each_turn_from_its_instant() {
        let turn = |at_us, provider, change| Turn {
            at_us,
            provider,
            change,
        };
        let schedule = Schedule {
            away_at_start: vec![false, true, false],
            turns: vec![
                turn(10, 0, Change::Crashes),
                turn(20, 1, Change::Returns),
                turn(30, 0, Change::Returns),
                turn(30, 2, Change::Leaves),
            ],
        };
        let online: Vec<u32> = [0, 9, 10, 20, 29, 30]
            .iter()
            .map(|&at| schedule.online_at(at))
            .collect();
        assert_eq!(online, [2, 2, 1, 2, 2, 2]);
        assert_eq!(schedule.online_at(u64::MAX), 2);
    }

    #[test]
    fn the_share_away_is_half_the_amplitude_on_average() {
        let amplitude = 0.6;
        let n = 2_000;
        let mut away = 0;
        let mut total = 0;
        for i in 0..n {
            let phase = f64::from(i) / f64::from(n);
            let u = f64::from((i * 7919) % n) / f64::from(n);
            let rhythm = Rhythm::new(amplitude, phase, u);
            for step in 0..24 {
                total += 1;
                if rhythm.away(f64::from(step) / 24.0) {
                    away += 1;
                }
            }
        }
        let share = f64::from(away) / f64::from(total);
        assert!((share - amplitude / 2.0).abs() < 0.02, "{share}");
    }

    #[test]
    fn changes_alternate_and_agree_with_away() {
        let rhythm = Rhythm::new(0.8, 0.3, 0.2);
        assert!(rhythm.half_window > 0.0 && rhythm.half_window < 0.5);
        let mut day = 0.0;
        let mut state = rhythm.away(day);
        for _ in 0..10 {
            let next = rhythm.next_change(day).expect("a window each day");
            assert!(next > day);
            assert_eq!(
                rhythm.away((day + next) / 2.0),
                state,
                "constant between changes"
            );
            state = !state;
            assert_eq!(rhythm.away(next + 1e-9), state);
            day = next;
        }
        assert!(Rhythm::new(0.0, 0.3, 0.2).next_change(0.0).is_none());
        assert!(
            !Rhythm::new(0.5, 0.3, 0.9).away(0.7),
            "u above the amplitude: never away"
        );
    }
}
