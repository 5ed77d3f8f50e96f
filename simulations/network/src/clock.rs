//! [`SimClock`]: the node's [`Clock`] on tokio's clock, so that a paused runtime drives
//! metering, offers' timestamps and sessions' deadlines along with every timer.

use std::time::Duration;

use orien_protocol::{Clock, Timestamp};
use tokio::time::Instant;

/// Wall-clock time at the start of every network-mode run: 2026-01-01T00:00:00Z, so
/// that offers and receipts carry the same timestamps in every run of a seed.
pub const WALL_ORIGIN: Timestamp = Timestamp(1_767_225_600_000);

/// Monotonic time is tokio's (simulated, under a paused runtime) since the clock was
/// made; wall time is [`WALL_ORIGIN`] plus it. Must be read inside a tokio runtime.
#[derive(Debug, Clone, Copy)]
pub struct SimClock {
    origin: Instant,
}

impl SimClock {
    /// A clock at monotonic zero now.
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
        }
    }
}

impl Default for SimClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SimClock {
    fn monotonic(&self) -> Duration {
        self.origin.elapsed()
    }

    fn wall(&self) -> Timestamp {
        let ms = u64::try_from(self.monotonic().as_millis()).unwrap_or(u64::MAX);
        Timestamp(WALL_ORIGIN.0.saturating_add(ms))
    }
}

/// A provider's meter that runs fast: monotonic time `rate` times tokio's since the
/// clock was made (wall time stays [`SimClock`]'s). A node on it measures every session
/// and call longer than it was, and claims accordingly: how network mode plays
/// `hostile.receipt_cheats`.
#[derive(Debug, Clone, Copy)]
pub struct FastClock {
    honest: SimClock,
    rate: f64,
}

impl FastClock {
    /// A clock at monotonic zero now, running `rate` (> 1) times as fast.
    pub fn new(rate: f64) -> Self {
        assert!(rate >= 1.0, "a cheat's clock runs fast, not slow: {rate}");
        Self {
            honest: SimClock::new(),
            rate,
        }
    }
}

impl Clock for FastClock {
    fn monotonic(&self) -> Duration {
        self.honest.monotonic().mul_f64(self.rate)
    }

    fn wall(&self) -> Timestamp {
        self.honest.wall()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn moves_with_the_paused_runtime_only() {
        let clock = SimClock::new();
        assert_eq!(clock.wall(), WALL_ORIGIN);
        tokio::time::sleep(Duration::from_secs(90)).await;
        assert_eq!(clock.monotonic(), Duration::from_secs(90));
        assert_eq!(clock.wall(), Timestamp(WALL_ORIGIN.0 + 90_000));
    }

    #[tokio::test(start_paused = true)]
    async fn a_fast_clock_measures_more_and_keeps_the_honest_date() {
        let clock = FastClock::new(1.5);
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(clock.monotonic(), Duration::from_secs(15));
        assert_eq!(clock.wall(), Timestamp(WALL_ORIGIN.0 + 10_000));
    }
}
