//! `hostile.silent_renters` and `hostile.exit_delayers`, played on real nodes through
//! the node's own fault injection ([`orien_daemon::faults`]): the session logic of a
//! hostile node is the honest node's, and what makes it hostile is which of its
//! session-protocol messages never go, or go late. The same nodes as model mode's
//! ([`orien_sim::model::hostile_roles`]) for a seed.
//!
//! - A *silent renter* ignores the receipts of each session from one on (the `k`-th,
//!   drawn per session, 1 to [`SILENT_FROM`]): its node never serves them
//!   ([`Point::InboundRequest`] dropped), so it commits and countersigns nothing more,
//!   and the provider's request fails, as a renter that stops answering. The provider
//!   stops one ack timeout after the last ack it had; the work since that ack is its
//!   loss (model mode's `LossCause::SilentRenters`).
//! - An *exit delayer* holds every call's exit back [`EXIT_DELAY`]: the batch of events
//!   that ends in the exit (with the signed result) leaves its node that much later
//!   ([`Point::OutboundRequest`] delayed). The node's renter meters a call from its
//!   request to the exit it receives, so an exit held back lengthens the renter's own
//!   measure, never the provider's claim: the renter pays what it pays an honest
//!   provider. What it could lose (paid beyond the provider's sandbox time, model
//!   mode's `LossCause::ExitsHeldBack`) is measured against its bound anyway.
//! - A *receipt cheat* (`hostile.receipt_cheats`, model mode's providers) runs on a fast
//!   clock ([`crate::clock::FastClock`]): its meter measures every session longer than
//!   it was and its receipts claim that. A greedy one's clock runs [`GREEDY_RATE`] times
//!   as fast, and its renter refuses its first receipt (model mode: refused at once); a
//!   tolerance rider's runs [`RIDER_RATE`] times, within the countersigner's tolerance
//!   (2 s or 2 %), so nothing is refused and the renter pays the difference.
//! - A *Sybil* (`hostile.sybil_nodes`, the nodes after the renters) is a node that
//!   publishes offers at half each tool's lowest price and never serves: it holds every
//!   open it is asked for unanswered ([`Fault::Ignore`]), so the renter waits its open
//!   timeout, as model mode charges.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use orien_daemon::{Fault, Faults, Point};
use orien_protocol::exec::ExecEvent;
use orien_protocol::{SessionId, SessionRequest};
use orien_sim::Scenario;
use orien_sim::report::Hostilities;

/// How long an exit delayer holds each call's exit back: twice the call
/// ([`super::nodes::CALL_MS`]), and the countersigner's tolerance floor (2 s).
pub(super) const EXIT_DELAY: Duration = Duration::from_millis(2_000);

/// How much faster than time a greedy claimer's meter runs: 5 s served claim 7.5 s.
pub(super) const GREEDY_RATE: f64 = 1.5;

/// How much faster a tolerance rider's meter runs: below the tolerance's 2 %.
pub(super) const RIDER_RATE: f64 = 1.015;

/// A silent renter ignores each session's receipts from the `k`-th on, `k` drawn from
/// 1 to this.
pub(super) const SILENT_FROM: u64 = 4;

/// Who is hostile, and what they did.
#[derive(Debug, Default)]
pub(super) struct Hostile {
    seed: u64,
    /// By node index.
    silent: Vec<bool>,
    /// By node index.
    delayers: Vec<bool>,
    /// By node index: how fast a receipt cheat's meter runs.
    cheats: Vec<Option<f64>>,
    /// The Sybils' node indices.
    sybils: std::ops::Range<usize>,
    /// Opens Sybils held unanswered.
    opens_held: std::sync::atomic::AtomicU64,
    /// Receipts ignored, by session.
    silenced: Mutex<HashMap<SessionId, u64>>,
    /// Exits held back, by session.
    delayed: Mutex<HashMap<SessionId, u64>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Hostile {
    /// Whether the scenario has silent renters or exit delayers.
    pub(super) fn plays(scenario: &Scenario) -> bool {
        scenario.hostile.silent_renters.0 > 0.0 || scenario.hostile.exit_delayers.0 > 0.0
    }

    /// Model mode's hostile nodes for `scenario` and `seed`, by node index (providers
    /// first, then renters).
    pub(super) fn of(scenario: &Scenario, seed: u64) -> Self {
        let providers = scenario.nodes.providers as usize;
        let count = providers + scenario.nodes.renters as usize;
        let sybils = count..count + scenario.hostile.sybil_nodes as usize;
        let (mut silent, mut delayers) = (vec![false; count], vec![false; count]);
        let mut cheats = vec![None; count];
        if Self::plays(scenario) || scenario.hostile.receipt_cheats.0 > 0.0 {
            let roles = orien_sim::model::hostile_roles(scenario, seed);
            for (p, (&greedy, &rider)) in roles
                .greedy_claimers
                .iter()
                .zip(&roles.tolerance_riders)
                .enumerate()
            {
                cheats[p] = if greedy {
                    Some(GREEDY_RATE)
                } else if rider {
                    Some(RIDER_RATE)
                } else {
                    None
                };
            }
            for (p, &d) in roles.exit_delayers.iter().enumerate() {
                delayers[p] = d;
            }
            for (r, &s) in roles.silent_renters.iter().enumerate() {
                silent[providers + r] = s;
            }
        }
        Self {
            seed,
            silent,
            delayers,
            cheats,
            sybils,
            ..Self::default()
        }
    }

    /// Node `index`'s fault policy: `None` for an honest node.
    pub(super) fn faults(self: &Arc<Self>, index: usize) -> Option<Faults> {
        if !self.is_silent(index) && !self.is_delayer(index) && !self.is_sybil(index) {
            return None;
        }
        let hostile = Arc::clone(self);
        Some(Faults::new(move |point: Point<'_>| {
            hostile.decide(index, point)
        }))
    }

    /// Whether node `index` is a silent renter.
    pub(super) fn is_silent(&self, index: usize) -> bool {
        self.silent.get(index).copied().unwrap_or(false)
    }

    /// How fast node `index`'s meter runs, if it cheats on its receipts.
    pub(super) fn cheat_rate(&self, index: usize) -> Option<f64> {
        self.cheats.get(index).copied().flatten()
    }

    /// Whether node `index` is a Sybil.
    pub(super) fn is_sybil(&self, index: usize) -> bool {
        self.sybils.contains(&index)
    }

    /// Opens Sybils held unanswered.
    pub(super) fn opens_held(&self) -> u64 {
        self.opens_held.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether node `index` is an exit delayer.
    pub(super) fn is_delayer(&self, index: usize) -> bool {
        self.delayers.get(index).copied().unwrap_or(false)
    }

    /// The receipt from which a silent renter ignores `session`'s receipts.
    fn silent_from(&self, session: &SessionId) -> u64 {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        session.as_bytes().hash(&mut hasher);
        1 + orien_sim::rng::mix(self.seed ^ 0x5117, hasher.finish()) % SILENT_FROM
    }

    fn decide(&self, index: usize, point: Point<'_>) -> Fault {
        match point {
            Point::InboundRequest {
                request: SessionRequest::Open(_),
                ..
            } if self.is_sybil(index) => {
                self.opens_held
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Fault::Ignore
            }
            Point::InboundRequest {
                request: SessionRequest::Receipt(signed),
                ..
            } if self.is_silent(index) => {
                let Ok(receipt) = signed.claimed() else {
                    return Fault::Deliver;
                };
                if receipt.seq < self.silent_from(&receipt.session) {
                    return Fault::Deliver;
                }
                *lock(&self.silenced).entry(receipt.session).or_default() += 1;
                Fault::Drop
            }
            Point::OutboundRequest {
                request: SessionRequest::Events(batch),
                ..
            } if self.is_delayer(index)
                && matches!(batch.events.last(), Some(ExecEvent::Exit(_))) =>
            {
                *lock(&self.delayed).entry(batch.session).or_default() += 1;
                Fault::Delay(EXIT_DELAY)
            }
            _ => Fault::Deliver,
        }
    }

    /// Whether a silent renter ignored a receipt of `session`.
    pub(super) fn silenced(&self, session: &SessionId) -> bool {
        lock(&self.silenced).contains_key(session)
    }

    /// Whether an exit delayer held an exit of `session` back.
    pub(super) fn delayed(&self, session: &SessionId) -> bool {
        lock(&self.delayed).contains_key(session)
    }

    /// What the hostile nodes did.
    pub(super) fn counts(&self) -> Hostilities {
        let silenced = lock(&self.silenced);
        let delayed = lock(&self.delayed);
        Hostilities {
            silent_renters: self.silent.iter().filter(|&&s| s).count() as u64,
            silenced_sessions: silenced.len() as u64,
            receipts_ignored: silenced.values().sum(),
            exit_delayers: self.delayers.iter().filter(|&&d| d).count() as u64,
            delayed_sessions: delayed.len() as u64,
            exits_delayed: delayed.values().sum(),
            exit_delay_ms: EXIT_DELAY.as_millis() as u64,
        }
    }
}
