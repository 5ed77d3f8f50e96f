//! Time sources. Metering reads a monotonic clock through [`Clock`], so tests and
//! simulations drive time by hand with [`ManualClock`] instead of sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::time::Timestamp;

/// A source of monotonic and wall-clock time.
pub trait Clock: Send + Sync + 'static {
    /// Time since a fixed, arbitrary origin; never goes backwards.
    fn monotonic(&self) -> Duration;
    /// Wall-clock time, for humans and for expiry; may jump.
    fn wall(&self) -> Timestamp;
}

/// The operating system's clocks.
#[derive(Debug, Clone)]
pub struct SystemClock {
    origin: Instant,
}

impl SystemClock {
    /// A clock whose monotonic origin is now.
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn monotonic(&self) -> Duration {
        self.origin.elapsed()
    }

    fn wall(&self) -> Timestamp {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Timestamp(u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX))
    }
}

/// A clock that moves only when told to. Clones share the same time.
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    nanos: Arc<AtomicU64>,
    wall_origin: Timestamp,
}

impl ManualClock {
    /// A clock at monotonic zero whose wall clock reads `wall_origin`.
    pub fn new(wall_origin: Timestamp) -> Self {
        Self {
            nanos: Arc::new(AtomicU64::new(0)),
            wall_origin,
        }
    }

    /// Moves both clocks forward by `by`.
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_add(by, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn monotonic(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::SeqCst))
    }

    fn wall(&self) -> Timestamp {
        self.wall_origin
            .saturating_add(crate::time::Millis::from_duration(self.monotonic()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_advanced_and_clones_share_time() {
        let clock = ManualClock::new(Timestamp(1_000));
        let other = clock.clone();
        assert_eq!(clock.monotonic(), Duration::ZERO);
        other.advance(Duration::from_millis(1_500));
        assert_eq!(clock.monotonic(), Duration::from_millis(1_500));
        assert_eq!(clock.wall(), Timestamp(2_500));
    }

    #[test]
    fn system_clock_is_monotonic() {
        let clock = SystemClock::new();
        let a = clock.monotonic();
        let b = clock.monotonic();
        assert!(b >= a);
        assert!(clock.wall().unix_millis() > 1_600_000_000_000);
    }
}
