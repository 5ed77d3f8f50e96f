//! The simulated world's time and chance: a seeded generator and a queue of events in
//! simulated time, with a network that drops, duplicates, delays and so reorders.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

/// A small deterministic generator (xorshift64*), so a seed replays its run.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// The generator of `seed`.
    pub const fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64 random bits.
    pub const fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub const fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }

    /// `true` with the given chance in percent.
    pub const fn chance(&mut self, percent: u8) -> bool {
        self.below(100) < percent as u64
    }

    /// A duration in `0..=max`, to the millisecond.
    pub fn upto(&mut self, max: Duration) -> Duration {
        let millis = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(self.below(millis.saturating_add(1)))
    }

    /// 16 random bytes (session and execution ids).
    pub fn id(&mut self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.next().to_le_bytes());
        out[8..].copy_from_slice(&self.next().to_le_bytes());
        out
    }

    /// 32 random bytes (keys).
    pub fn bytes(&mut self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for chunk in out.chunks_mut(8) {
            chunk.copy_from_slice(&self.next().to_le_bytes());
        }
        out
    }
}

/// How hostile the simulated network and hosts are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultRates {
    /// Chance (percent) that a request, or its answer, is lost.
    pub drop: u8,
    /// Chance (percent) that a request arrives twice.
    pub duplicate: u8,
    /// Longest one-way delay; each message draws its own, so messages overtake.
    pub max_delay: Duration,
    /// Chance (percent) that a session sees one side crash and restart.
    pub crash: u8,
    /// Chance (percent) that a session's links are slow: one-way delays up to
    /// [`SLOW_DELAY`], so a round trip may outlast the receipt interval.
    pub slow: u8,
}

/// The longest one-way delay of a slow session's links: a round trip up to 1.8 s,
/// beyond the simulation's receipt interval (1 s) and within its request timeout (2 s).
pub const SLOW_DELAY: Duration = Duration::from_millis(900);

impl Default for FaultRates {
    fn default() -> Self {
        Self {
            drop: 10,
            duplicate: 5,
            max_delay: Duration::from_millis(300),
            crash: 15,
            slow: 10,
        }
    }
}

impl FaultRates {
    /// A network that loses nothing and hosts that never crash.
    pub const CALM: Self = Self {
        drop: 0,
        duplicate: 0,
        max_delay: Duration::from_millis(20),
        crash: 0,
        slow: 0,
    };
}

/// Events due at instants of simulated time, first due first (ties in insertion order).
#[derive(Debug)]
pub struct Schedule<E> {
    heap: BinaryHeap<Reverse<(Duration, u64, Slot<E>)>>,
    next: u64,
}

/// Holds an event without asking it to be ordered.
#[derive(Debug)]
struct Slot<E>(E);

impl<E> PartialEq for Slot<E> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl<E> Eq for Slot<E> {}
impl<E> PartialOrd for Slot<E> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<E> Ord for Slot<E> {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

impl<E> Default for Schedule<E> {
    fn default() -> Self {
        Self {
            heap: BinaryHeap::new(),
            next: 0,
        }
    }
}

impl<E> Schedule<E> {
    /// Schedules `event` at `at`.
    pub fn at(&mut self, at: Duration, event: E) {
        self.next += 1;
        self.heap.push(Reverse((at, self.next, Slot(event))));
    }

    /// The first event due, with its instant.
    pub fn pop(&mut self) -> Option<(Duration, E)> {
        self.heap.pop().map(|Reverse((at, _, Slot(e)))| (at, e))
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}
