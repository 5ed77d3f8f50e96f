//! Per-session metering.
//!
//! A [`Meter`] counts, on an injectable monotonic [`Clock`]:
//!
//! - **session time**: while the session is open and not suspended;
//! - **execution time**: the sum of call durations (overlapping calls each count),
//!   running calls included, each call counted at most [`MeterConfig::call_cap`];
//! - **CPU time**: as reported by the sandbox for each call.
//!
//! It produces cumulative [`Reading`]s — the content of a receipt — every receipt
//! interval ([`Meter::poll`]), after each call ([`Meter::finish_exec`]) and at close
//! ([`Meter::close`]). Every reading includes the time of the calls still running, so a
//! renter pays for a long call while it runs, interval by interval, and a provider never
//! has more than one interval of a call's work unacknowledged.
//!
//! Each call is priced at its own [`CallRate`] (its tool's execution price and call
//! cap; [`Meter::start_exec`] takes the session's own tool's). The amount is the session
//! time at the session's price plus the execution amount, `floor(Σ ms × price / 60 000)`
//! over the calls' prices, plus the price of the artefacts kept by the results the next
//! receipt commits to ([`Meter::charge_artefacts`]), capped at the budget; when the
//! budget is reached the meter suspends itself and the reading says so, and the provider
//! ends the session.
//!
//! A call is admitted only if the budget covers the worst case of every running call
//! and of the session's artefacts: a session's artefacts together hold at most its
//! workspace, so they cost at most [`MeterConfig::artefact_cap`].
//!
//! Readings never decrease: a running call's contribution only grows, a finished call
//! keeps at least what a reading already reported, and a call that never ran
//! ([`Meter::abandon_exec`]) keeps only that.

use std::sync::Arc;
use std::time::Duration;

use std::collections::BTreeMap;

use orien_protocol::{Clock, Millis, Offer, Pricing, Usage, Usdc};

/// Receipt interval when none is configured.
pub const DEFAULT_RECEIPT_INTERVAL: Millis = Millis(5_000);
/// Shortest receipt interval accepted (a receipt is a signature, a round trip and a
/// synced write on both sides).
pub const MIN_RECEIPT_INTERVAL: Millis = Millis(100);
pub use orien_protocol::pricing::CALL_SLACK;

/// What a session is metered against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeterConfig {
    /// Prices per minute.
    pub pricing: Pricing,
    /// Most the session may cost; the meter suspends when it is reached.
    pub budget: Usdc,
    /// How often a reading is due while the session is open.
    pub receipt_interval: Millis,
    /// The most one call is metered: its tool's `max_exec` plus [`CALL_SLACK`].
    pub call_cap: Millis,
    /// The most the session's artefacts may cost together: its workspace's size at the
    /// session's artefact price ([`Pricing::artefact_amount`]).
    pub artefact_cap: Usdc,
}

impl MeterConfig {
    /// A configuration with the default receipt interval and uncapped calls.
    pub const fn new(pricing: Pricing, budget: Usdc) -> Self {
        Self {
            pricing,
            budget,
            receipt_interval: DEFAULT_RECEIPT_INTERVAL,
            call_cap: Millis(u64::MAX),
            artefact_cap: Usdc::ZERO,
        }
    }

    /// The meter of a session opened on `offer` with `budget`, a reading due every
    /// `receipt_interval`: its prices, its tool's call cap, and the most its workspace's
    /// artefacts may cost.
    pub fn of_offer(offer: &Offer, budget: Usdc, receipt_interval: Millis) -> Self {
        Self {
            pricing: offer.pricing,
            budget,
            receipt_interval,
            call_cap: Self::call_cap_for(offer.limits.max_exec),
            artefact_cap: offer.pricing.artefact_amount(offer.limits.workspace_bytes),
        }
    }

    /// The call cap of a tool whose calls are killed at `max_exec`.
    pub const fn call_cap_for(max_exec: Millis) -> Millis {
        max_exec.saturating_add(CALL_SLACK)
    }

    /// What one receipt interval can cost with `calls` calls running through it: the
    /// most an honest provider works between two acknowledged receipts, and so the
    /// smallest budget it accepts.
    pub fn interval_worst_case(&self, calls: u32) -> Usdc {
        let interval = self.receipt_interval.max(MIN_RECEIPT_INTERVAL);
        self.pricing.amount_for(Usage {
            session: interval,
            exec: Millis(interval.get().saturating_mul(u64::from(calls))),
        })
    }
}

/// How one call is metered: its tool's price per minute of execution and the most it is
/// metered (its tool's `max_exec` plus [`CALL_SLACK`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CallRate {
    /// Price of one minute of this call's execution.
    pub exec_per_minute: Usdc,
    /// The most this call is metered.
    pub cap: Millis,
}

impl CallRate {
    /// What `charged` of execution costs at this rate alone, `floor(ms × price /
    /// 60 000)`: a call's cost in its execution record.
    pub fn cost(self, charged: Millis) -> Usdc {
        exec_amount_of([(self.exec_per_minute, charged.to_duration())])
    }
}

impl MeterConfig {
    /// The rate of a call of the session's own tool.
    pub const fn own_rate(&self) -> CallRate {
        CallRate {
            exec_per_minute: self.pricing.exec_per_minute,
            cap: self.call_cap,
        }
    }
}

/// `floor(Σ ms × price / 60 000)` over durations by price (µUSDC per minute), exact.
fn exec_amount_of(by_price: impl IntoIterator<Item = (Usdc, Duration)>) -> Usdc {
    let mut whole: u128 = 0;
    let mut rest: u128 = 0;
    for (price, duration) in by_price {
        let value = u128::from(Millis::from_duration(duration).get()) * u128::from(price.micros());
        whole = whole.saturating_add(value / 60_000);
        rest += value % 60_000;
    }
    let micros = whole.saturating_add(rest / 60_000);
    Usdc::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
}

/// A call refused because its worst case does not fit the budget left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the call's worst case ({worst} for {cap} of execution, {artefacts} of it for the session's artefacts) does not fit the budget left ({left}); open a session with a larger budget"
)]
pub struct CallDoesNotFit {
    /// What the session would cost if this call and every running one ran to the cap
    /// and its artefacts filled the workspace.
    pub worst: Usdc,
    /// The part of `worst` that is the session's artefacts at most.
    pub artefacts: Usdc,
    /// The call cap.
    pub cap: Millis,
    /// Budget minus what is metered now.
    pub left: Usdc,
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
    /// Price of the execution time, each call at its own rate.
    pub exec_amount: Usdc,
    /// Price of the artefacts kept by the results the next receipt commits to.
    pub artefact_amount: Usdc,
    /// Price of the usage (session time at the session's price plus `exec_amount` plus
    /// `artefact_amount`), capped at the budget.
    pub amount: Usdc,
    /// Whether the amount has reached the budget (the meter is then suspended).
    pub budget_reached: bool,
    /// Why the reading was taken.
    pub trigger: Trigger,
}

/// A call in progress, started by [`Meter::start_exec`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[must_use = "finish the call with Meter::finish_exec or Meter::abandon_exec"]
pub struct ExecTimer {
    id: u64,
}

/// A running call as the meter counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Running {
    started: Duration,
    /// What the last reading counted of it.
    reported: Duration,
    rate: CallRate,
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
    /// Finished calls (and closed-out running ones), by their price per minute.
    exec_time: BTreeMap<Usdc, Duration>,
    running: std::collections::BTreeMap<u64, Running>,
    next_timer: u64,
    cpu_time: Millis,
    /// The price of the artefacts the next receipt commits to.
    artefacts: Usdc,
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
            .field("running", &self.running.len())
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
            exec_time: BTreeMap::new(),
            running: std::collections::BTreeMap::new(),
            next_timer: 0,
            cpu_time: Millis::ZERO,
            artefacts: Usdc::ZERO,
            budget_reached: false,
        }
    }

    /// The results the next receipt commits to kept artefacts costing `total`
    /// (cumulative, never less than before): readings charge for them from now on.
    /// Charging past the budget reaches it, as usage does.
    ///
    /// # Panics
    ///
    /// If `total` is less than an earlier total: results, once committed to, stay.
    pub fn charge_artefacts(&mut self, total: Usdc) {
        assert!(
            total >= self.artefacts,
            "the artefacts charged went down from {} to {total}",
            self.artefacts
        );
        self.artefacts = total;
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

    /// Starts timing a call of the session's own tool; it counts in every reading until
    /// it is finished.
    pub fn start_exec(&mut self) -> ExecTimer {
        self.start_exec_at(self.config.own_rate())
    }

    /// Starts timing a call metered at `rate` (another tool's).
    pub fn start_exec_at(&mut self, rate: CallRate) -> ExecTimer {
        let id = self.next_timer;
        self.next_timer += 1;
        let now = self.clock.monotonic();
        self.running.insert(
            id,
            Running {
                started: now,
                reported: Duration::ZERO,
                rate,
            },
        );
        ExecTimer { id }
    }

    fn add_exec(&mut self, rate: CallRate, duration: Duration) {
        *self.exec_time.entry(rate.exec_per_minute).or_default() += duration;
    }

    /// Calls running now.
    pub fn running_calls(&self) -> usize {
        self.running.len()
    }

    /// The time a running call is charged for if it finishes now: its elapsed time,
    /// capped at the call cap (`None` once it ended).
    pub fn charged(&self, timer: &ExecTimer) -> Option<Millis> {
        let running = self.running.get(&timer.id)?;
        Some(Millis::from_duration(
            self.counted(running, self.clock.monotonic()),
        ))
    }

    /// How long a running call has run so far, uncapped (`None` once it ended).
    pub fn elapsed(&self, timer: &ExecTimer) -> Option<Millis> {
        let running = self.running.get(&timer.id)?;
        Some(Millis::from_duration(
            self.clock.monotonic().saturating_sub(running.started),
        ))
    }

    /// Whether one more call of the session's own tool fits the budget if it and every
    /// running call run to their caps, with session time going on meanwhile.
    pub fn call_fits(&self) -> Result<(), CallDoesNotFit> {
        self.call_fits_at(self.config.own_rate())
    }

    /// Whether one more call metered at `rate` fits the budget if it and every running
    /// call run to their caps, with session time going on meanwhile.
    pub fn call_fits_at(&self, rate: CallRate) -> Result<(), CallDoesNotFit> {
        let now = self.clock.monotonic();
        let current = self.snapshot(Trigger::Interval);
        let mut worst_exec = self.exec_time.clone();
        for r in self.running.values() {
            *worst_exec.entry(r.rate.exec_per_minute).or_default() += r.rate.cap.to_duration();
        }
        *worst_exec.entry(rate.exec_per_minute).or_default() += rate.cap.to_duration();
        let longest = self
            .running
            .values()
            .map(|r| {
                r.rate
                    .cap
                    .to_duration()
                    .saturating_sub(now.saturating_sub(r.started))
            })
            .chain([rate.cap.to_duration()])
            .max()
            .unwrap_or_default();
        // Whatever artefacts were charged so far are part of the workspace's worth.
        let artefacts = self.config.artefact_cap.max(self.artefacts);
        let worst = self
            .config
            .pricing
            .session_amount(
                current
                    .session_time
                    .saturating_add(Millis::from_duration(longest)),
            )
            .saturating_add(exec_amount_of(worst_exec))
            .saturating_add(artefacts);
        if worst <= self.config.budget {
            return Ok(());
        }
        Err(CallDoesNotFit {
            worst,
            artefacts,
            cap: rate.cap,
            left: self.config.budget.saturating_sub(current.amount),
        })
    }

    /// Ends a call started with [`start_exec`](Self::start_exec) that ran: its duration on
    /// the meter's clock, capped at the call cap, joins the execution time with the CPU
    /// time the sandbox reported. Returns the reading due after a call.
    pub fn finish_exec(&mut self, timer: ExecTimer, cpu: Millis) -> Reading {
        if let Some(running) = self.running.remove(&timer.id) {
            let elapsed = self.counted(&running, self.clock.monotonic());
            self.add_exec(running.rate, elapsed);
            self.cpu_time = self.cpu_time.saturating_add(cpu);
        }
        self.take(Trigger::AfterExec)
    }

    /// Ends a call that did not run (refused arguments, a sandbox failure): nothing is
    /// charged for it beyond what a reading already counted.
    pub fn abandon_exec(&mut self, timer: ExecTimer) {
        if let Some(running) = self.running.remove(&timer.id) {
            self.add_exec(running.rate, running.reported);
        }
    }

    /// Adds a call of the session's own tool measured elsewhere, capped at the call cap.
    pub fn record_exec(&mut self, duration: Millis, cpu: Millis) -> Reading {
        if !self.is_closed() {
            let rate = self.config.own_rate();
            self.add_exec(rate, duration.min(rate.cap).to_duration());
            self.cpu_time = self.cpu_time.saturating_add(cpu);
        }
        self.take(Trigger::AfterExec)
    }

    fn counted(&self, running: &Running, now: Duration) -> Duration {
        now.saturating_sub(running.started)
            .min(running.rate.cap.to_duration())
            .max(running.reported)
    }

    /// The interval reading, if one is due (and the session is not closed). Also
    /// notices a budget reached by session time alone.
    pub fn poll(&mut self) -> Option<Reading> {
        if self.is_closed() || self.clock.monotonic() < self.next_due {
            return None;
        }
        Some(self.take(Trigger::Interval))
    }

    /// Takes a reading now, due or not (the interval starts again): for a provider
    /// whose due reading waited on the ack of the receipt before it, so the next receipt
    /// is as fresh as the results it commits to. `None` once closed.
    pub fn read_now(&mut self) -> Option<Reading> {
        (!self.is_closed()).then(|| self.take(Trigger::Interval))
    }

    /// When (on the meter's monotonic clock) the next interval reading is due.
    pub const fn next_due(&self) -> Duration {
        self.next_due
    }

    /// Closes the session and returns the final reading: calls still running end now
    /// (the sandbox kills them). Idempotent.
    pub fn close(&mut self) -> Reading {
        self.suspend();
        let now = self.clock.monotonic();
        let running = std::mem::take(&mut self.running);
        for call in running.values() {
            let counted = self.counted(call, now);
            self.add_exec(call.rate, counted);
        }
        self.state = State::Closed;
        self.take(Trigger::Close)
    }

    /// The cumulative usage now, without taking a reading (the interval is not reset).
    pub fn current(&self) -> Reading {
        self.snapshot(Trigger::Interval)
    }

    /// Marks the time the running calls have counted so far as seen by the other side:
    /// a call abandoned later keeps it, as it keeps what a reading counted. A meter that
    /// takes no readings of its own (the renter's, which checks receipts against
    /// [`current`](Self::current)) calls this whenever it acknowledges one.
    pub fn witnessed(&mut self) {
        let now = self.clock.monotonic();
        for running in self.running.values_mut() {
            let counted = now
                .saturating_sub(running.started)
                .min(running.rate.cap.to_duration());
            running.reported = running.reported.max(counted);
        }
    }

    fn take(&mut self, trigger: Trigger) -> Reading {
        let reading = self.snapshot(trigger);
        self.witnessed();
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
        let now = self.clock.monotonic();
        let running = match self.state {
            State::Running { since } => now.saturating_sub(since),
            _ => Duration::ZERO,
        };
        let session_time = Millis::from_duration(self.session_time + running);
        let mut by_price = self.exec_time.clone();
        for r in self.running.values() {
            *by_price.entry(r.rate.exec_per_minute).or_default() += self.counted(r, now);
        }
        let exec_time = Millis::from_duration(by_price.values().sum());
        let exec_amount = exec_amount_of(by_price);
        let price = self
            .config
            .pricing
            .session_amount(session_time)
            .saturating_add(exec_amount)
            .saturating_add(self.artefacts);
        Reading {
            session_time,
            exec_time,
            cpu_time: self.cpu_time,
            exec_amount,
            artefact_amount: self.artefacts,
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
                artefact_per_gib: Usdc::ZERO,
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
    fn each_call_is_priced_at_its_own_rate_and_capped_at_its_own_cap() {
        // Session 600 µUSDC/min; the own tool 60,000/min; another tool 6,000/min with a
        // 1 s cap.
        let (clock, mut meter) = setup(config(600, 60_000, u64::MAX));
        let other = CallRate {
            exec_per_minute: Usdc::from_micros(6_000),
            cap: Millis(1_000),
        };
        let own = meter.start_exec();
        let cheap = meter.start_exec_at(other);
        clock.advance(Duration::from_millis(1_500));
        let r = meter.current();
        // 1,500 ms at 60,000/min = 1,500; 1,000 ms (capped) at 6,000/min = 100.
        assert_eq!(r.exec_time, Millis(2_500));
        assert_eq!(r.exec_amount, Usdc::from_micros(1_600));
        // Session: 1,500 ms at 600/min = 15.
        assert_eq!(r.amount, Usdc::from_micros(1_615));
        let _ = meter.finish_exec(cheap, Millis::ZERO);
        clock.advance(Duration::from_millis(500));
        let r = meter.finish_exec(own, Millis::ZERO);
        assert_eq!(r.exec_amount, Usdc::from_micros(2_000 + 100));
        assert_eq!(r.amount, Usdc::from_micros(2_100 + 20));
    }

    #[test]
    fn the_exec_amount_floors_the_sum_of_the_calls_not_each_call() {
        let (clock, mut meter) = setup(config(0, 1, u64::MAX));
        let rate = |micros| CallRate {
            exec_per_minute: Usdc::from_micros(micros),
            cap: Millis(u64::MAX),
        };
        // 30 s at 1/min and 30 s at 3/min: 0.5 + 1.5 = 2, where flooring each gives 1.
        let a = meter.start_exec_at(rate(1));
        let b = meter.start_exec_at(rate(3));
        clock.advance(Duration::from_secs(30));
        let _ = meter.finish_exec(a, Millis::ZERO);
        let r = meter.finish_exec(b, Millis::ZERO);
        assert_eq!(r.exec_amount, Usdc::from_micros(2));
    }

    #[test]
    fn a_dear_call_is_refused_where_a_cheap_one_fits() {
        let (_clock, meter) = setup(config(0, 60_000, 10_000));
        let cheap = CallRate {
            exec_per_minute: Usdc::from_micros(60_000),
            cap: Millis(5_000),
        };
        let dear = CallRate {
            exec_per_minute: Usdc::from_micros(600_000),
            cap: Millis(5_000),
        };
        assert!(
            meter.call_fits_at(cheap).is_ok(),
            "5 s at 60,000/min is 5,000"
        );
        let refused = meter.call_fits_at(dear).unwrap_err();
        assert_eq!(refused.worst, Usdc::from_micros(50_000));
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
        assert_eq!(
            first.exec_time,
            Millis(1_300),
            "1,000 ms of the first call and 300 of the second, still running"
        );
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

    #[test]
    fn running_calls_count_in_every_reading_up_to_the_call_cap() {
        let mut c = config(0, 60_000, u64::MAX);
        c.call_cap = Millis(1_500);
        let (clock, mut meter) = setup(c);
        let call = meter.start_exec();
        clock.advance(Duration::from_millis(1_000));
        assert_eq!(meter.current().exec_time, Millis(1_000));
        clock.advance(Duration::from_millis(4_000));
        let interval = meter.poll().unwrap();
        assert_eq!(interval.exec_time, Millis(1_500), "capped while running");
        clock.advance(Duration::from_millis(10_000));
        let after = meter.finish_exec(call, Millis(100));
        assert_eq!(after.exec_time, Millis(1_500), "a late exit is not paid");
        assert_eq!(meter.running_calls(), 0);
    }

    #[test]
    fn a_call_that_did_not_run_keeps_only_what_was_reported() {
        let (clock, mut meter) = setup(config(0, 60_000, u64::MAX));
        let refused = meter.start_exec();
        clock.advance(Duration::from_millis(40));
        meter.abandon_exec(refused);
        assert_eq!(
            meter.current().exec_time,
            Millis::ZERO,
            "nothing was reported"
        );
        let reported = meter.start_exec();
        clock.advance(Duration::from_millis(5_000));
        let interval = meter.poll().unwrap();
        clock.advance(Duration::from_millis(300));
        meter.abandon_exec(reported);
        assert_eq!(
            meter.current().exec_time,
            interval.exec_time,
            "a reading never goes back"
        );
    }

    #[test]
    fn a_call_abandoned_after_its_time_was_witnessed_keeps_that_time() {
        // The renter acknowledges receipts against `current()` and takes no readings:
        // a call whose start answer is then lost must keep the time it acknowledged.
        let (clock, mut meter) = setup(config(0, 60_000, u64::MAX));
        let call = meter.start_exec();
        clock.advance(Duration::from_millis(2_000));
        let acked = meter.current().exec_time;
        assert_eq!(acked, Millis(2_000));
        meter.witnessed();
        clock.advance(Duration::from_millis(500));
        meter.abandon_exec(call);
        assert_eq!(
            meter.current().exec_time,
            acked,
            "what was witnessed stays; what followed it does not count"
        );
        let unseen = meter.start_exec();
        clock.advance(Duration::from_millis(700));
        meter.abandon_exec(unseen);
        assert_eq!(
            meter.current().exec_time,
            acked,
            "an unseen call adds nothing"
        );
    }

    #[test]
    fn closing_ends_the_running_calls() {
        let (clock, mut meter) = setup(config(0, 60_000, u64::MAX));
        let call = meter.start_exec();
        clock.advance(Duration::from_millis(700));
        let last = meter.close();
        assert_eq!(last.exec_time, Millis(700));
        clock.advance(Duration::from_millis(700));
        assert_eq!(meter.finish_exec(call, Millis(5)).exec_time, Millis(700));
    }

    #[test]
    fn a_call_fits_only_if_its_worst_case_and_the_running_calls_fit_the_budget() {
        // 1 µUSDC per ms of session and 10 per ms of call; calls capped at 1 s.
        let mut c = config(60_000, 600_000, 25_000);
        c.call_cap = Millis(1_000);
        let (clock, mut meter) = setup(c);
        // 1,000 session + 10,000 call = 11,000 ≤ 25,000.
        assert!(meter.call_fits().is_ok());
        let _running = meter.start_exec();
        // Now 1,000 session + 10,000 still to run + 10,000 for the new call: fits.
        assert!(meter.call_fits().is_ok());
        let _second = meter.start_exec();
        let refused = meter.call_fits().unwrap_err();
        assert_eq!(refused.worst, Usdc::from_micros(31_000));
        assert_eq!(refused.left, Usdc::from_micros(25_000));
        clock.advance(Duration::from_millis(100));
        assert!(meter.call_fits().is_err(), "time only makes it worse");
    }

    #[test]
    fn a_call_fits_only_if_the_budget_also_covers_the_session_artefacts_at_most() {
        // Calls as above; the workspace's artefacts may cost 5,000 together.
        let mut c = config(60_000, 600_000, 16_000);
        c.call_cap = Millis(1_000);
        c.artefact_cap = Usdc::from_micros(5_000);
        let (clock, mut meter) = setup(c);
        // 1,000 session + 10,000 call + 5,000 artefacts = 16,000: fits exactly.
        assert!(meter.call_fits().is_ok());
        clock.advance(Duration::from_millis(1));
        let refused = meter.call_fits().unwrap_err();
        assert_eq!(refused.artefacts, Usdc::from_micros(5_000));
        assert_eq!(refused.worst, Usdc::from_micros(16_001));
        assert!(
            refused
                .to_string()
                .contains("0.005000 USDC of it for the session's artefacts")
        );

        // Charged artefacts count in the amount and in `left`, not twice in the worst case.
        meter.charge_artefacts(Usdc::from_micros(4_000));
        let reading = meter.current();
        assert_eq!(reading.artefact_amount, Usdc::from_micros(4_000));
        assert_eq!(
            reading.amount,
            Usdc::from_micros(4_001),
            "1 ms of session + artefacts"
        );
        let refused = meter.call_fits().unwrap_err();
        assert_eq!(
            refused.worst,
            Usdc::from_micros(16_001),
            "the cap covers them"
        );
        assert_eq!(refused.left, Usdc::from_micros(11_999));
    }

    #[test]
    fn artefacts_charged_up_to_the_budget_reach_it() {
        let (_clock, mut meter) = setup(config(60_000, 600_000, 10_000));
        meter.charge_artefacts(Usdc::from_micros(12_000));
        let reading = meter.read_now().unwrap();
        assert!(reading.budget_reached);
        assert_eq!(
            reading.amount,
            Usdc::from_micros(10_000),
            "capped at the budget"
        );
        assert!(!meter.is_running(), "suspended at the budget");
        assert!(!meter.resume());
    }

    #[test]
    #[should_panic(expected = "the artefacts charged went down")]
    fn charged_artefacts_never_go_down() {
        let (_clock, mut meter) = setup(config(0, 0, 10_000));
        meter.charge_artefacts(Usdc::from_micros(2));
        meter.charge_artefacts(Usdc::from_micros(1));
    }

    #[test]
    fn the_worst_case_of_an_interval_counts_session_time_and_every_call_slot() {
        let mut c = config(60_000, 600_000, u64::MAX);
        c.receipt_interval = Millis(200);
        assert_eq!(c.interval_worst_case(2), Usdc::from_micros(200 + 4_000));
        assert_eq!(c.interval_worst_case(0), Usdc::from_micros(200));
    }

    proptest! {
        #[test]
        fn readings_never_decrease(steps in proptest::collection::vec((0u64..10_000, 0u8..8), 1..60)) {
            let mut c = config(10_000, 50_000, 2_000_000);
            c.call_cap = Millis(7_000);
            let (clock, mut meter) = setup(c);
            let mut calls = Vec::new();
            // Readings taken (what receipts carry) never decrease; a preview with
            // `current` is never below the last reading taken.
            let mut last = meter.current();
            for (ms, action) in steps {
                clock.advance(Duration::from_millis(ms));
                let (r, taken) = match action {
                    0 => { meter.suspend(); (meter.current(), false) }
                    1 => { meter.resume(); (meter.current(), false) }
                    2 => (meter.record_exec(Millis(ms / 2), Millis(ms / 4)), true),
                    3 => match meter.poll() {
                        Some(r) => (r, true),
                        None => (meter.current(), false),
                    },
                    4 => { calls.push(meter.start_exec()); (meter.current(), false) }
                    5 => match calls.pop() {
                        Some(call) => (meter.finish_exec(call, Millis(ms / 8)), true),
                        None => (meter.current(), false),
                    },
                    6 => {
                        if let Some(call) = calls.pop() { meter.abandon_exec(call); }
                        (meter.current(), false)
                    }
                    _ => (meter.close(), true),
                };
                prop_assert!(r.session_time >= last.session_time);
                prop_assert!(r.exec_time >= last.exec_time);
                prop_assert!(r.cpu_time >= last.cpu_time);
                prop_assert!(r.amount >= last.amount);
                prop_assert!(r.amount <= Usdc::from_micros(2_000_000));
                if taken {
                    last = r;
                }
            }
        }
    }
}
