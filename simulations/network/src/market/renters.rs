//! Renters at work: a Poisson stream of requests, each driven as an agent drives its
//! node (look in the book, open the cheapest of a few offers, call, hold, close), and
//! offers traced from publication to every book.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use orien_daemon::{OfferQuery, OfferSpec, SessionError};
use orien_ledger::SessionStatus;
use orien_protocol::{CloseReason, Millis, RejectReason, SessionId, Usdc};
use orien_sim::Scenario;
use orien_sim::model::churn::Change;
use orien_sim::model::session::Outcome;
use orien_sim::report::Bucket;
use orien_sim::rng::Rng;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::Phase;
use super::nodes::{CALL_MS, Nodes, call_args};

/// Offers are traced this long after the market opens, and no closer together: the
/// books take in the burst of offers of the nodes' start first.
const TRACE_SETTLE: Duration = Duration::from_secs(10);

/// A session a renter opened.
#[derive(Debug, Clone, Copy)]
pub(super) struct Rented {
    pub(super) renter: usize,
    pub(super) provider: usize,
    pub(super) session: SessionId,
    pub(super) budget: Usdc,
    pub(super) outcome: Outcome,
    /// When the renter had it open, and when it saw it end (or gave up waiting).
    pub(super) opened: Instant,
    pub(super) ended: Instant,
}

/// One offer traced from its publication.
#[derive(Debug, Clone)]
pub(super) struct Trace {
    pub(super) publisher: usize,
    pub(super) offer: orien_protocol::OfferId,
    pub(super) published: Instant,
}

/// What the renters did.
#[derive(Debug, Default)]
pub(super) struct Outcomes {
    pub(super) requested: u64,
    pub(super) outcomes: BTreeMap<&'static str, u64>,
    pub(super) unanswered: u64,
    pub(super) full: u64,
    /// Opens tried on a Sybil's offer.
    pub(super) sybil_opens: u64,
    pub(super) open_delays_us: Vec<u64>,
    pub(super) buckets: Vec<Bucket>,
    pub(super) rented: Vec<Rented>,
    pub(super) traces: Vec<Trace>,
    /// Sessions whose call did not run to its exit.
    pub(super) failed_calls: u64,
}

/// What one request came to.
struct Request {
    minute: u32,
    outcome: Outcome,
    open_delay_us: Option<u64>,
    unanswered: u64,
    full: u64,
    sybil_opens: u64,
    rented: Option<Rented>,
    call_failed: bool,
}

/// The renters of a market.
pub(super) struct Market<'a> {
    scenario: &'a Scenario,
    seed: u64,
    nodes: &'a Nodes,
}

impl<'a> Market<'a> {
    pub(super) fn new(scenario: &'a Scenario, seed: u64, nodes: &'a Nodes) -> Self {
        Self {
            scenario,
            seed,
            nodes,
        }
    }

    /// Makes requests for `minutes` of simulated time, traces offers meanwhile, and
    /// waits for every session to end.
    pub(super) async fn run(self, minutes: u32, progress: &mut dyn FnMut(Phase, u64)) -> Outcomes {
        let start = Instant::now();
        let end = start + Duration::from_secs(u64::from(minutes) * 60);
        let mut out = Outcomes::default();
        let bucket_minutes = self.scenario.report.bucket_minutes.max(1);
        out.buckets = (0..minutes.div_ceil(bucket_minutes))
            .map(|b| Bucket {
                minute: b * bucket_minutes,
                providers_online: self.nodes.providers as u32,
                ..Bucket::default()
            })
            .collect();
        let traces = self.traces(start, minutes);
        let requests = self.requests(start, end, &mut out, progress);
        let (traces, ()) = tokio::join!(traces, requests);
        out.traces = traces;
        out
    }

    async fn requests(
        &self,
        start: Instant,
        end: Instant,
        out: &mut Outcomes,
        progress: &mut dyn FnMut(Phase, u64),
    ) {
        let demand = &self.scenario.demand;
        let mut draws = Rng::stream(self.seed, 12);
        let weights: Vec<f64> = self.scenario.tools.iter().map(|t| t.demand.0).collect();
        let renters = self.nodes.renters;
        let mut running = JoinSet::new();
        let mut last_report = Instant::now();
        loop {
            let gap = draws.exponential(60.0 / demand.sessions_per_minute.0);
            let next = Instant::now() + Duration::from_secs_f64(gap);
            if next >= end {
                tokio::time::sleep_until(end).await;
                break;
            }
            tokio::time::sleep_until(next).await;
            out.requested += 1;
            let renter = self.nodes.providers + draws.below(renters);
            let tool = pick(&mut draws, &weights);
            let wanted = Duration::from_secs_f64(
                (draws.exponential(demand.mean_session_minutes.0) * 60.0)
                    .min(demand.max_session_minutes.0 * 60.0)
                    .max(1.0),
            );
            let minute = (start.elapsed().as_secs() / 60) as u32;
            let context = RequestContext {
                nodes: self.nodes.shared(renter),
                tool,
                wanted,
                minute,
                budget: demand.budget.0,
                candidates: demand.candidates as usize,
                open_timeout: Duration::from_secs_f64(self.scenario.sessions.open_timeout_secs.0),
                max_duration: Millis((demand.max_session_minutes.0 * 60_000.0) as u64 + 60_000),
                receipt_interval: Duration::from_secs_f64(
                    self.scenario.sessions.receipt_interval_secs.0,
                ),
                draws: Rng::stream(self.seed, 1 << 40 | out.requested),
            };
            running.spawn(context.request());
            while let Some(done) = running.try_join_next() {
                Self::record(out, done);
            }
            if last_report.elapsed() >= Duration::from_secs(10) {
                last_report = Instant::now();
                progress(Phase::Market, out.requested);
            }
        }
        progress(Phase::Draining, out.requested);
        while let Some(done) = running.join_next().await {
            Self::record(out, done);
        }
    }

    fn record(out: &mut Outcomes, done: Result<Request, tokio::task::JoinError>) {
        let request = match done {
            Ok(request) => request,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        };
        *out.outcomes.entry(request.outcome.as_str()).or_default() += 1;
        out.unanswered += request.unanswered;
        out.full += request.full;
        out.sybil_opens += request.sybil_opens;
        out.failed_calls += u64::from(request.call_failed);
        out.open_delays_us.extend(request.open_delay_us);
        out.rented.extend(request.rented);
        let bucket_minutes = out.buckets.get(1).map_or(u32::MAX, |b| b.minute.max(1));
        let index = (request.minute / bucket_minutes) as usize;
        let last = out.buckets.len().saturating_sub(1);
        if let Some(bucket) = out.buckets.get_mut(index.min(last)) {
            bucket.requested += 1;
            bucket.succeeded += u64::from(request.outcome.succeeded());
        }
    }

    /// Traces `report.propagation_samples` offers, spread over the run: a provider
    /// publishes its offer anew, and every book's arrival of it is recorded.
    async fn traces(&self, start: Instant, minutes: u32) -> Vec<Trace> {
        let samples = self.scenario.report.propagation_samples;
        if samples == 0 || self.nodes.providers == 0 {
            return Vec::new();
        }
        let spacing = Duration::from_secs(u64::from(minutes) * 60) / samples;
        let mut draws = Rng::stream(self.seed, 13);
        let mut traces = Vec::new();
        for k in 0..samples {
            tokio::time::sleep_until(start + spacing * k + spacing.min(TRACE_SETTLE) / 2).await;
            let publisher = draws.below(self.nodes.providers);
            let node = self.nodes.node(publisher);
            let Some(stall) = &node.stall else { continue };
            // A provider churned away publishes nothing.
            let Some(running) = node.node() else { continue };
            let (tool, _) = stall.prices[draws.below(stall.prices.len())];
            let tool = self.nodes.tools[tool].clone();
            let Some(offer) = stall.sandbox.offer(
                &tool,
                self.nodes.payout,
                orien_protocol::Clock::wall(&*self.nodes.clock),
                self.nodes.offer_ttl,
            ) else {
                continue;
            };
            self.nodes.ears.trace(node.id);
            let published = Instant::now();
            let published_by = running.publish_offer(OfferSpec::from(offer)).await;
            drop(running);
            if let Ok(offer) = published_by {
                traces.push(Trace {
                    publisher,
                    offer,
                    published,
                });
            }
        }
        traces
    }
}

fn pick(draws: &mut Rng, weights: &[f64]) -> usize {
    let total: f64 = weights.iter().sum();
    let mut x = draws.unit() * total;
    for (t, w) in weights.iter().enumerate() {
        if x < *w {
            return t;
        }
        x -= w;
    }
    weights.len() - 1
}

/// What a request task needs.
struct RequestContext {
    nodes: super::nodes::Shared,
    tool: usize,
    wanted: Duration,
    minute: u32,
    budget: Usdc,
    candidates: usize,
    open_timeout: Duration,
    max_duration: Millis,
    receipt_interval: Duration,
    draws: Rng,
}

impl RequestContext {
    async fn request(mut self) -> Request {
        let mut request = Request {
            minute: self.minute,
            outcome: Outcome::NoOfferKnown,
            open_delay_us: None,
            unanswered: 0,
            full: 0,
            sybil_opens: 0,
            rented: None,
            call_failed: false,
        };
        let renter = &self.nodes.renter;
        let query = OfferQuery {
            tool: Some(self.nodes.tools[self.tool].clone()),
            ..OfferQuery::default()
        };
        let mut book = renter.offers(query).await.unwrap_or_default();
        book.sort_by_key(|e| e.id);
        // A few offers the renter knows, at random, cheapest first.
        let mut candidates = Vec::new();
        for _ in 0..self.candidates.min(book.len()) {
            let entry = &book[self.draws.below(book.len())];
            if !candidates
                .iter()
                .any(|c: &&orien_daemon::BookEntry| c.offer.provider == entry.offer.provider)
            {
                candidates.push(entry);
            }
        }
        candidates.sort_by_key(|c| (c.offer.pricing.session_per_minute, c.offer.provider));
        if candidates.is_empty() {
            return request;
        }
        let Some(sessions) = renter.sessions() else {
            return request;
        };
        let asked = Instant::now();
        request.outcome = Outcome::NoProviderAnswered;
        let mut opened = None;
        for candidate in candidates {
            let index = self.nodes.by_node.get(&candidate.offer.provider).copied();
            if index.is_some_and(|i| self.nodes.hostile.is_sybil(i)) {
                request.sybil_opens += 1;
            }
            let open = sessions.open(candidate.id, self.budget, self.max_duration);
            match tokio::time::timeout(self.open_timeout, open).await {
                Ok(Ok(session)) => {
                    opened = Some(session);
                    break;
                }
                Ok(Err(SessionError::Rejected(RejectReason::AtCapacity))) => request.full += 1,
                Ok(Err(_)) | Err(_) => request.unanswered += 1,
            }
        }
        let Some(session) = opened else {
            return request;
        };
        request.open_delay_us = Some(asked.elapsed().as_micros() as u64);
        let held_from = Instant::now();
        let provider = self
            .nodes
            .by_node
            .get(&session.provider)
            .copied()
            .unwrap_or(usize::MAX);
        let id = session.session;
        let call = sessions.exec(id, None, call_args(CALL_MS)).await;
        request.call_failed = match call {
            Ok(exec) => sessions
                .wait_exec(
                    id,
                    exec,
                    self.open_timeout + Duration::from_millis(2 * CALL_MS),
                )
                .await
                .map_or(true, |view| view.exit.is_none()),
            Err(_) => true,
        };
        let store = Arc::clone(sessions.store());
        let status = |store: &orien_ledger::Store| {
            store
                .head(&id)
                .ok()
                .flatten()
                .map_or(SessionStatus::Open, |h| h.status)
        };
        let reason = loop {
            if let SessionStatus::Closed(reason) = status(&store) {
                break Some(reason);
            }
            let left = self.wanted.saturating_sub(held_from.elapsed());
            if left.is_zero() {
                let _ = sessions.close(id).await;
                // The close waits for the provider's closing receipt; give a lost one
                // its ack timeout and a little.
                let deadline = Instant::now() + self.receipt_interval * 4;
                loop {
                    let closed = matches!(status(&store), SessionStatus::Closed(_));
                    if closed || Instant::now() >= deadline {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                break match status(&store) {
                    SessionStatus::Closed(reason) => Some(reason),
                    _ => None,
                };
            }
            tokio::time::sleep(left.min(self.receipt_interval)).await;
        };
        request.outcome = match reason {
            Some(
                CloseReason::RenterRequested | CloseReason::MaxDuration | CloseReason::LaneClosing,
            ) => Outcome::Completed,
            Some(CloseReason::BudgetExhausted) => Outcome::BudgetSpent,
            Some(CloseReason::AckTimeout) => Outcome::RenterStoppedAcking,
            Some(CloseReason::Disconnected) | None => Outcome::Partitioned,
            Some(CloseReason::ProviderShutdown) => Outcome::ProviderLeft,
            Some(CloseReason::Dispute) => Outcome::Dispute,
            Some(CloseReason::Restarted) => Outcome::ProviderCrashed,
        };
        // The renter cannot tell a provider that went away from a cut link (its
        // provider falls silent either way), and one whose wanted time ran out first
        // closes its side as completed; the market knows. As in model mode, a session
        // whose provider stopped before the renter meant to stop ended with the stop.
        // Likewise, a session whose renter fell silent ended by its silence (the
        // renter's node cannot tell its own faults from a provider gone quiet).
        if self.nodes.hostile.silenced(&id) {
            request.outcome = Outcome::RenterStoppedAcking;
        }
        let meant_until = (held_from + self.wanted).min(Instant::now());
        if let Some(stop) = self.nodes.churn.during(provider, held_from, meant_until) {
            request.outcome = match stop.change {
                Change::Crashes => Outcome::ProviderCrashed,
                _ => Outcome::ProviderLeft,
            };
        }
        request.rented = Some(Rented {
            renter: self.nodes.renter_index,
            provider,
            session: id,
            budget: self.budget,
            outcome: request.outcome,
            opened: held_from,
            ended: Instant::now(),
        });
        request
    }
}
