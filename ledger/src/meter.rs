//! Per-session metering.
//!
//! A [`Meter`] counts, on an injectable monotonic [`Clock`]:
//!
//! - **session time**: while the session is open and not suspended;
//! - **execution time**: the sum of call durations (overlapping calls each count);
//! - **CPU time**: as reported by the sandbox for each call.
//!
//! It produces cumulative [`Reading`]s — the content of a receipt — every receipt
//! interval ([`Meter::poll`]), after each call ([`Meter::finish_exec`]) and at close
//! ([`Meter::close`]). The amount is `Pricing::amount_for` the cumulative usage, capped at
//! the budget; when the budget is reached the meter suspends itself and the reading says
//! so, and the provider suspends the session.

use std::sync::Arc;
use std::time::Duration;

use orien_protocol::{Clock, Millis, Pricing, Usage, Usdc};

/// Receipt interval when none is configured.
pub const DEFAULT_RECEIPT_INTERVAL: Millis = Millis(5_000);
/// Shortest receipt interval accepted (a receipt is a signature, a round trip and a
/// synced write on both sides).
pub const MIN_RECEIPT_INTERVAL: Millis = Millis(100);

/// What a session is metered against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeterConfig {
    /// Prices per minute.
    pub pricing: Pricing,
    /// Most the session may cost; the meter suspends when it is reached.
    pub budget: Usdc,
    /// How often a reading is due while the session is open.
    pub receipt_interval: Millis,
}

impl MeterConfig {
    /// A configuration with the default receipt interval.
    pub const fn new(pricing: Pricing, budget: Usdc) -> Self {
        Self {
            pricing,
            budget,
            receipt_interval: DEFAULT_RECEIPT_INTERVAL,
        }
    }
}

/// Why a reading was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Trigger {
    /// The receipt interval elapsed.
    Interval,
    /// A call finished.
    AfterExec,
    /// The session closed; this is the final reading.
    Close,
}

/// Cumulative usage at one instant: what the next receipt carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    /// Session time while open and not suspended.
    pub session_time: Millis,
    /// Sum of call durations.
    pub exec_time: Millis,
    /// CPU time reported by the sandbox.
    pub cpu_time: Millis,
    /// Price of the usage, capped at the budget.
    pub amount: Usdc,
    /// Whether the amount has reached the budget (the meter is then suspended).
    pub budget_reached: bool,
    /// Why the reading was taken.
    pub trigger: Trigger,
}

/// A call in progress, started by [`Meter::start_exec`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "finish the call with Meter::finish_exec"]
pub struct ExecTimer {
    started: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Accruing session time since the given monotonic instant.
    Running {
        since: Duration,
    },
    Suspended,
    Closed,
}

/// The meter of one session (one side: provider or renter).
pub struct Meter {
    clock: Arc<dyn Clock>,
    config: MeterConfig,
    state: State,
    session_time: Duration,
    exec_time: Duration,
    cpu_time: Millis,
    next_due: Duration,
    budget_reached: bool,
}

impl std::fmt::Debug for Meter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Meter")
            .field("config", &self.config)
            .field("state", &self.state)
            .field("session_time", &self.session_time)
            .field("exec_time", &self.exec_time)
            .field("cpu_time", &self.cpu_time)
            .finish_non_exhaustive()
    }
}

impl Meter {
    /// Starts metering an open session now. A receipt interval below
    /// [`MIN_RECEIPT_INTERVAL`] is raised to it.
    pub fn start(mut config: MeterConfig, clock: Arc<dyn Clock>) -> Self {
        config.receipt_interval = config.receipt_interval.max(MIN_RECEIPT_INTERVAL);
        let now = clock.monotonic();
        Self {
            next_due: now + config.receipt_interval.to_duration(),
            clock,
            config,
            state: State::Running { since: now },
            session_time: Duration::ZERO,
            exec_time: Duration::ZERO,
            cpu_time: Millis::ZERO,
            budget_reached: false,
        }
    }

    /// The configuration.
    pub const fn config(&self) -> &MeterConfig {
        &self.config
    }

    /// Whether session time is accruing.
    pub const fn is_running(&self) -> bool {
        matches!(self.state, State::Running { .. })
    }

    /// Whether the session is closed.
    pub const fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// Stops session time (ack timeout, dispute, renter's request). No-op unless running.
    pub fn suspend(&mut self) {
        if let State::Running { since } = self.state {
            self.session_time += self.clock.monotonic().saturating_sub(since);
            self.state = State::Suspended;
        }
    }

    /// Resumes session time after a suspension. Refused (returns `false`) once the
    /// budget is reached or the session is closed.
    pub fn resume(&mut self) -> bool {
        match self.state {
            State::Suspended if !self.budget_reached => {
                self.state = State::Running {
                    since: self.clock.monotonic(),
                };
                true
            }
            State::Running { .. } => true,
            _ => false,
        }
    }

    /// Starts timing a call.
    pub fn start_exec(&self) -> ExecTimer {
        ExecTimer {
            started: self.clock.monotonic(),
        }
    }

    /// Ends a call started with [`start_exec`](Self::start_exec), adding its duration
    /// and the CPU time the sandbox reported; returns the reading due after a call.
    pub fn finish_exec(&mut self, timer: ExecTimer, cpu: Millis) -> Reading {
        let elapsed = self.clock.monotonic().saturating_sub(timer.started);
        self.record_exec(Millis::from_duration(elapsed), cpu)
    }

    /// Adds a call measured elsewhere (the renter times its calls from request to exit).
    pub fn record_exec(&mut self, duration: Millis, cpu: Millis) -> Reading {
        if !self.is_closed() {
            self.exec_time += duration.to_duration();
            self.cpu_time = self.cpu_time.saturating_add(cpu);
        }
        self.take(Trigger::AfterExec)
    }

    /// The interval reading, if one is due (and the session is not closed). Also
    /// notices a budget reached by session time alone.
    pub fn poll(&mut self) -> Option<Reading> {
        if self.is_closed() || self.clock.monotonic() < self.next_due {
            return None;
        }
        Some(self.take(Trigger::Interval))
    }

    /// When (on the meter's monotonic clock) the next interval reading is due.
    pub const fn next_due(&self) -> Duration {
        self.next_due
    }

    /// Closes the session and returns the final reading. Idempotent.
    pub fn close(&mut self) -> Reading {
        self.suspend();
        self.state = State::Closed;
        self.take(Trigger::Close)
    }

    /// The cumulative usage now, without taking a reading (the interval is not reset).
    pub fn current(&self) -> Reading {
        self.snapshot(Trigger::Interval)
    }

    fn take(&mut self, trigger: Trigger) -> Reading {
        let reading = self.snapshot(trigger);
        if reading.budget_reached && !self.budget_reached {
            self.budget_reached = true;
            self.suspend();
        }
        self.next_due = self.clock.monotonic() + self.config.receipt_interval.to_duration();
        Reading {
            budget_reached: self.budget_reached || reading.budget_reached,
            ..reading
        }
    }

    fn snapshot(&self, trigger: Trigger) -> Reading {
        let running = match self.state {
            State::Running { since } => self.clock.monotonic().saturating_sub(since),
            _ => Duration::ZERO,
        };
        let session_time = Millis::from_duration(self.session_time + running);
        let exec_time = Millis::from_duration(self.exec_time);
        let price = self.config.pricing.amount_for(Usage {
            session: session_time,
            exec: exec_time,
        });
        Reading {
            session_time,
            exec_time,
            cpu_time: self.cpu_time,
            amount: price.min(self.config.budget),
            budget_reached: price >= self.config.budget,
            trigger,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orien_protocol::{ManualClock, Timestamp};
    use proptest::prelude::*;

    fn config(session_per_minute: u64, exec_per_minute: u64, budget: u64) -> MeterConfig {
        MeterConfig::new(
            Pricing {
                session_per_minute: Usdc::from_micros(session_per_minute),
                exec_per_minute: Usdc::from_micros(exec_per_minute),
            },
            Usdc::from_micros(budget),
        )
    }

    fn setup(c: MeterConfig) -> (ManualClock, Meter) {
        let clock = ManualClock::new(Timestamp(1_700_000_000_000));
        let meter = Meter::start(c, Arc::new(clock.clone()));
        (clock, meter)
    }

    #[test]
    fn session_time_stops_while_suspended() {
        let (clock, mut meter) = setup(config(60_000, 0, u64::MAX));
        clock.advance(Duration::from_secs(2));
        meter.suspend();
        clock.advance(Duration::from_secs(10));
        assert!(meter.resume());
        clock.advance(Duration::from_secs(1));
        let r = meter.current();
        assert_eq!(r.session_time, Millis(3_000));
        assert_eq!(r.amount, Usdc::from_micros(3_000));
    }

    #[test]
    fn exec_time_is_the_sum_of_call_durations_and_cpu_is_reported() {
        let (clock, mut meter) = setup(config(0, 60_000, u64::MAX));
        let a = meter.start_exec();
        clock.advance(Duration::from_millis(700));
        let b = meter.start_exec();
        clock.advance(Duration::from_millis(300));
        let first = meter.finish_exec(a, Millis(500));
        assert_eq!(first.exec_time, Millis(1_000));
        assert_eq!(first.trigger, Trigger::AfterExec);
        let second = meter.finish_exec(b, Millis(250));
        assert_eq!(
            (second.exec_time, second.cpu_time),
            (Millis(1_300), Millis(750))
        );
        assert_eq!(second.amount, Usdc::from_micros(1_300));
    }

    #[test]
    fn interval_readings_come_when_due() {
        let (clock, mut meter) = setup(config(1, 1, u64::MAX));
        assert_eq!(meter.poll(), None);
        clock.advance(Duration::from_millis(4_999));
        assert_eq!(meter.poll(), None);
        clock.advance(Duration::from_millis(1));
        assert_eq!(meter.poll().map(|r| r.trigger), Some(Trigger::Interval));
        assert_eq!(meter.poll(), None, "the interval restarts after a reading");
    }

    #[test]
    fn reaching_the_budget_caps_the_amount_and_suspends() {
        let (clock, mut meter) = setup(config(60_000, 0, 5_000));
        clock.advance(Duration::from_secs(6));
        let r = meter.poll().unwrap();
        assert!(r.budget_reached);
        assert_eq!(r.amount, Usdc::from_micros(5_000));
        assert!(!meter.is_running());
        assert!(!meter.resume(), "a spent budget cannot resume");
        clock.advance(Duration::from_secs(60));
        assert_eq!(meter.close().session_time, Millis(6_000));
    }

    #[test]
    fn close_is_final() {
        let (clock, mut meter) = setup(config(60_000, 60_000, u64::MAX));
        clock.advance(Duration::from_secs(1));
        let last = meter.close();
        assert_eq!(last.trigger, Trigger::Close);
        clock.advance(Duration::from_secs(10));
        assert_eq!(meter.poll(), None);
        assert_eq!(
            meter.record_exec(Millis(5), Millis(5)).exec_time,
            Millis::ZERO
        );
        assert_eq!(meter.close().session_time, last.session_time);
    }

    proptest! {
        #[test]
        fn readings_never_decrease(steps in proptest::collection::vec((0u64..10_000, 0u8..5), 1..60)) {
            let (clock, mut meter) = setup(config(10_000, 50_000, 2_000_000));
            let mut last = meter.current();
            for (ms, action) in steps {
                clock.advance(Duration::from_millis(ms));
                let r = match action {
                    0 => { meter.suspend(); meter.current() }
                    1 => { meter.resume(); meter.current() }
                    2 => meter.record_exec(Millis(ms / 2), Millis(ms / 4)),
                    3 => meter.poll().unwrap_or_else(|| meter.current()),
                    _ => meter.current(),
                };
                prop_assert!(r.session_time >= last.session_time);
                prop_assert!(r.exec_time >= last.exec_time);
                prop_assert!(r.cpu_time >= last.cpu_time);
                prop_assert!(r.amount >= last.amount);
                prop_assert!(r.amount <= Usdc::from_micros(2_000_000));
                last = r;
            }
        }
    }
}
