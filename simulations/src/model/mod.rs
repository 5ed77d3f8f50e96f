//! Model mode: the market as a discrete-event simulation, for up to a million nodes.
//!
//! A plain event queue (a binary heap of `(time, sequence)`), not a simulation
//! framework: the model has one kind of actor and no ports, a heap is all the ordering
//! it needs, and with a sequence number as tie-breaker a build replays a seed byte for
//! byte (across platforms, `ln` and `acos` may round differently in the last bit). What each part models, and what it leaves out, is said in
//! [`gossip`] (offer spread), [`churn`] (home providers), [`session`] (money) and in
//! `simulations/README.md`.

pub mod churn;
pub mod gossip;
mod market;
mod nodes;
pub mod session;
mod summary;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashSet};

use orien_protocol::{Split, Usdc};

use crate::report::{
    self, Bucket, Check, Earnings, Hostile, Loss, Money, Nodes, Propagation, Report, Sessions,
};
use crate::rng::{Rng, mix};
use crate::scenario::{PriceRange, Scenario};
use churn::Rhythm;
use gossip::{Conditions, Mesh, Trace};
use market::LossTally;
pub use nodes::side;
use session::{Conduct, LossCause, Outcome, Settlement, Timing};

/// The offer book keeps this many offers per provider (as orien-node's).
pub const OFFERS_PER_PROVIDER: u32 = 64;

const US_PER_MINUTE: u64 = 60_000_000;

/// How far a run has got, for a progress bar.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Simulated minutes done.
    pub minute: u32,
    /// Of how many.
    pub of: u32,
}

/// Runs the scenario's market with `seed` and reports on it.
pub fn run(scenario: &Scenario, seed: u64, progress: &mut dyn FnMut(Progress)) -> Report {
    let mut world = World::new(scenario, seed);
    world.run(progress);
    world.report()
}

/// The providers' churn (`churn.*`) that [`run`] plays for `scenario` and `seed`: who
/// is away at the start, and every turn offline and back over `duration_minutes`.
/// It runs the whole market to find out, since crash times are drawn from the stream
/// the market draws from; network mode plays the result on real nodes.
pub fn churn_schedule(scenario: &Scenario, seed: u64) -> churn::Schedule {
    let mut world = World::new(scenario, seed);
    let away_at_start = world.providers.iter().map(|p| p.away).collect();
    world.turns = Some(Vec::new());
    world.run(&mut |_| {});
    churn::Schedule {
        away_at_start,
        turns: world.turns.unwrap_or_default(),
    }
}

/// Which nodes [`run`] makes hostile for `scenario` and `seed`, by index: providers that
/// hold calls' exits back (`hostile.exit_delayers`) or claim more than they metered
/// (`hostile.receipt_cheats`), and renters that stop acknowledging
/// (`hostile.silent_renters`). Network mode plays the same nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostileRoles {
    /// By provider index: whether it delays exits.
    pub exit_delayers: Vec<bool>,
    /// By provider index: whether it claims far more than it metered (refused at once).
    pub greedy_claimers: Vec<bool>,
    /// By provider index: whether it claims as much above what it metered as the
    /// renter's tolerance lets pass.
    pub tolerance_riders: Vec<bool>,
    /// By renter index (from 0, after the providers): whether it falls silent.
    pub silent_renters: Vec<bool>,
}

/// The hostile providers and renters [`run`] draws for `scenario` and `seed`.
pub fn hostile_roles(scenario: &Scenario, seed: u64) -> HostileRoles {
    let world = World::new(scenario, seed);
    HostileRoles {
        exit_delayers: world
            .providers
            .iter()
            .map(|p| p.conduct == Conduct::DelaysExits)
            .collect(),
        greedy_claimers: world
            .providers
            .iter()
            .map(|p| p.conduct == Conduct::GreedyClaims)
            .collect(),
        tolerance_riders: world
            .providers
            .iter()
            .map(|p| p.conduct == Conduct::RidesTolerance)
            .collect(),
        silent_renters: world.renters.iter().map(|r| r.silent).collect(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Arrival,
    SessionEnd { session: u32, outcome: Outcome },
    DayChange { provider: u32 },
    Crash { provider: u32 },
    Restart { provider: u32 },
    PartitionStart { index: u32 },
    PartitionEnd { index: u32 },
    Trace { index: u32 },
    Minute,
}

struct Provider {
    /// (tool, price per minute) for each tool it offers.
    offers: Vec<(u16, Usdc)>,
    rhythm: Rhythm,
    away: bool,
    crashed: bool,
    /// When its current offers were announced (it came online), µs.
    announced_us: u64,
    /// When it went offline gracefully (offers withdrawn), µs.
    withdrawn_us: Option<u64>,
    /// Bumped each time it comes online: renters hear of each announcement anew.
    epoch: u32,
    active: Vec<u32>,
    conduct: Conduct,
    earned: Usdc,
}

impl Provider {
    fn online(&self) -> bool {
        !self.away && !self.crashed
    }
}

struct Renter {
    silent: bool,
    paid: Usdc,
    deposited: Usdc,
}

#[derive(Clone, Copy)]
struct OfferRef {
    node: u32,
    price: Usdc,
    sybil: bool,
}

struct Session {
    renter: u32,
    provider: u32,
    price: Usdc,
    budget: Usdc,
    opened_us: u64,
    /// Honest end: the renter's wanted length or the budget, whichever comes first.
    planned: Outcome,
    ended: bool,
}

struct World<'a> {
    scenario: &'a Scenario,
    seed: u64,
    rng: Rng,
    now: u64,
    end: u64,
    queue: BinaryHeap<Reverse<(u64, u64, Event)>>,
    sequence: u64,
    events: u64,
    timing: Timing,
    mesh: Mesh,
    providers: Vec<Provider>,
    renters: Vec<Renter>,
    /// Offers by tool: honest providers' and Sybils'.
    offers: Vec<Vec<OfferRef>>,
    tool_weights: Vec<f64>,
    partitions_active: Vec<bool>,
    /// Which renters gave up on which Sybil nodes (their reputation memory).
    distrusted: HashSet<(u32, u32)>,
    sessions: Vec<Session>,
    /// Arrival delays of every traced offer at every node it reached, µs, sorted.
    heard_delays: Vec<u64>,
    traces: Vec<Trace>,
    // Tallies.
    outcomes: BTreeMap<Outcome, u64>,
    requested: u64,
    opened: u64,
    unanswered: u64,
    full: u64,
    open_delays: Vec<u64>,
    buckets: Vec<Bucket>,
    fee: Usdc,
    reserve: Usdc,
    losses: BTreeMap<LossCause, LossTally>,
    sybil_opens: u64,
    honest_mismatches: u64,
    over_budget: u64,
    /// Providers' turns offline and back, when asked for ([`churn_schedule`]).
    turns: Option<Vec<churn::Turn>>,
}

impl<'a> World<'a> {
    fn new(scenario: &'a Scenario, seed: u64) -> Self {
        let mut rng = Rng::stream(seed, 1);
        let providers_n = scenario.nodes.providers as usize;
        let renters_n = scenario.nodes.renters as usize;
        let sybils_n = scenario.hostile.sybil_nodes as usize;
        let nodes = providers_n + renters_n + sybils_n;
        let mesh = Mesh::random(
            nodes,
            scenario.network.mesh_degree,
            &mut Rng::stream(seed, 2),
        );
        let tools = &scenario.tools;
        let mut offers = vec![Vec::new(); tools.len()];
        let hostile = &scenario.hostile;
        let providers = (0..providers_n)
            .map(|p| {
                let mut sells: Vec<usize> = (0..tools.len())
                    .filter(|&t| rng.chance(tools[t].providers.0))
                    .collect();
                if sells.is_empty() {
                    sells.push(rng.below(tools.len()));
                }
                let own: Vec<(u16, Usdc)> = sells
                    .into_iter()
                    .map(|t| (t as u16, draw_price(&mut rng, &tools[t].price_per_minute)))
                    .collect();
                for &(t, price) in &own {
                    offers[t as usize].push(OfferRef {
                        node: p as u32,
                        price,
                        sybil: false,
                    });
                }
                let rhythm =
                    Rhythm::new(scenario.churn.diurnal_amplitude.0, rng.unit(), rng.unit());
                let draw = rng.unit();
                let cheats = hostile.receipt_cheats.0;
                let conduct = if draw < cheats / 2.0 {
                    Conduct::GreedyClaims
                } else if draw < cheats {
                    Conduct::RidesTolerance
                } else if draw < cheats + hostile.exit_delayers.0 {
                    Conduct::DelaysExits
                } else {
                    Conduct::Honest
                };
                Provider {
                    offers: own,
                    away: rhythm.away(0.0),
                    rhythm,
                    crashed: false,
                    announced_us: 0,
                    withdrawn_us: None,
                    epoch: 0,
                    active: Vec::new(),
                    conduct,
                    earned: Usdc::ZERO,
                }
            })
            .collect::<Vec<_>>();
        let renters = (0..renters_n)
            .map(|_| Renter {
                silent: rng.chance(hostile.silent_renters.0),
                paid: Usdc::ZERO,
                deposited: Usdc::ZERO,
            })
            .collect();
        // Sybil offers undercut each tool's cheapest price by half; books keep 64 each.
        let kept = hostile.sybil_offers_each.min(OFFERS_PER_PROVIDER);
        for s in 0..sybils_n {
            let node = (providers_n + renters_n + s) as u32;
            for k in 0..kept {
                let t = (s + k as usize) % tools.len();
                let price =
                    Usdc::from_micros((tools[t].price_per_minute.min.0.micros() / 2).max(1));
                offers[t].push(OfferRef {
                    node,
                    price,
                    sybil: true,
                });
            }
        }
        let rules = &scenario.sessions;
        let timing = Timing {
            interval_us: secs_us(rules.receipt_interval_secs.0),
            ack_timeout_us: secs_us(rules.ack_timeout_secs.0),
            round_trip_us: (2.0 * scenario.network.latency_ms.0 * 1_000.0) as u64,
        };
        let end = u64::from(scenario.duration_minutes) * US_PER_MINUTE;
        let mut world = Self {
            scenario,
            seed,
            rng: Rng::stream(seed, 3),
            now: 0,
            end,
            queue: BinaryHeap::new(),
            sequence: 0,
            events: 0,
            timing,
            mesh,
            providers,
            renters,
            offers,
            tool_weights: tools.iter().map(|t| t.demand.0).collect(),
            partitions_active: vec![false; scenario.network.partitions.len()],
            distrusted: HashSet::new(),
            sessions: Vec::new(),
            heard_delays: Vec::new(),
            traces: Vec::new(),
            outcomes: BTreeMap::new(),
            requested: 0,
            opened: 0,
            unanswered: 0,
            full: 0,
            open_delays: Vec::new(),
            buckets: Vec::new(),
            fee: Usdc::ZERO,
            reserve: Usdc::ZERO,
            losses: BTreeMap::new(),
            sybil_opens: 0,
            honest_mismatches: 0,
            over_budget: 0,
            turns: None,
        };
        world.schedule_start();
        world
    }

    fn schedule(&mut self, at: u64, event: Event) {
        if at <= self.end {
            self.sequence += 1;
            self.queue.push(Reverse((at, self.sequence, event)));
        }
    }

    fn schedule_start(&mut self) {
        let first = self.next_arrival();
        self.schedule(first, Event::Arrival);
        let day_us = self.scenario.churn.day_minutes.0 * US_PER_MINUTE as f64;
        for p in 0..self.providers.len() {
            if let Some(change) = self.providers[p].rhythm.next_change(0.0) {
                self.schedule(
                    (change * day_us) as u64,
                    Event::DayChange { provider: p as u32 },
                );
            }
            if self.providers[p].away {
                self.providers[p].withdrawn_us = Some(0);
            }
            self.schedule_crash(p);
        }
        for (i, partition) in self.scenario.network.partitions.iter().enumerate() {
            let index = i as u32;
            self.schedule(
                minutes_us(partition.start_minute.0),
                Event::PartitionStart { index },
            );
            self.schedule(
                minutes_us(partition.end_minute.0),
                Event::PartitionEnd { index },
            );
        }
        let samples = u64::from(self.scenario.report.propagation_samples);
        for i in 0..samples {
            self.schedule(i * self.end / samples, Event::Trace { index: i as u32 });
        }
        let bucket = u64::from(self.scenario.report.bucket_minutes) * US_PER_MINUTE;
        let mut at = 0;
        while at < self.end {
            self.buckets.push(Bucket {
                minute: (at / US_PER_MINUTE) as u32,
                ..Bucket::default()
            });
            at += bucket;
        }
        for minute in 1..=u64::from(self.scenario.duration_minutes) {
            self.schedule(minute * US_PER_MINUTE, Event::Minute);
        }
    }

    fn next_arrival(&mut self) -> u64 {
        let mean_us = US_PER_MINUTE as f64 / self.scenario.demand.sessions_per_minute.0;
        self.now + (self.rng.exponential(mean_us) as u64).max(1)
    }

    fn schedule_crash(&mut self, p: usize) {
        let rate = self.scenario.churn.crashes_per_hour.0;
        if rate > 0.0 {
            let at = self.now + self.rng.exponential(60.0 * US_PER_MINUTE as f64 / rate) as u64;
            self.schedule(at, Event::Crash { provider: p as u32 });
        }
    }

    fn run(&mut self, progress: &mut dyn FnMut(Progress)) {
        while let Some(Reverse((at, _, event))) = self.queue.pop() {
            debug_assert!(at >= self.now, "events run in time order");
            self.now = at;
            self.events += 1;
            match event {
                Event::Arrival => {
                    self.arrival();
                    let next = self.next_arrival();
                    self.schedule(next, Event::Arrival);
                }
                Event::SessionEnd { session, outcome } => {
                    self.end_session(session as usize, outcome)
                }
                Event::DayChange { provider } => self.day_change(provider as usize),
                Event::Crash { provider } => self.crash(provider as usize),
                Event::Restart { provider } => self.restart(provider as usize),
                Event::PartitionStart { index } => self.partition_start(index as usize),
                Event::PartitionEnd { index } => self.partitions_active[index as usize] = false,
                Event::Trace { index } => self.trace(index),
                Event::Minute => progress(Progress {
                    minute: (self.now / US_PER_MINUTE) as u32,
                    of: self.scenario.duration_minutes,
                }),
            }
        }
        // Sessions still running at the end close gracefully: everything served is paid.
        self.now = self.end;
        for s in 0..self.sessions.len() {
            if !self.sessions[s].ended {
                let planned = self.sessions[s].planned;
                self.end_session(s, planned);
            }
        }
    }
}

/// A price drawn uniformly from `range` (whole µUSDC).
pub fn draw_price(rng: &mut Rng, range: &PriceRange) -> Usdc {
    let (min, max) = (range.min.0.micros(), range.max.0.micros());
    let span = max - min + 1;
    Usdc::from_micros(min + (rng.unit() * span as f64) as u64 % span)
}

fn secs_us(secs: f64) -> u64 {
    (secs * 1_000_000.0) as u64
}

fn minutes_us(minutes: f64) -> u64 {
    (minutes * US_PER_MINUTE as f64) as u64
}
