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
}
