//! What this node has seen of the providers it rented from: its own evidence, from its
//! own ledger (durable records of its calls, the ends of its sessions), never what a
//! provider says of itself.
//!
//! A call that completed (any exit code: the tool's own answer) counts for the
//! provider; a call that failed for any reason but its arguments (timed out, out of
//! memory, the sandbox failed, lost with its session, disputed) counts against it. Calls
//! are what a provider delivers, so a session that ended as the renter wanted (closed,
//! budget spent, its longest duration, a lane close) is counted but adds nothing to the
//! score (else a provider failing every call of short sessions would score on their
//! closes); one the provider ended early (silence, shutdown) counts against it, and a
//! dispute (the provider's receipt or signed result was false) counts as
//! [`DISPUTE_WEIGHT`] failures. The renter's own faults (a missing ack, its restart)
//! count neither way.
//!
//! The score is the mean of a Beta posterior with the optimistic prior Beta(2, 1): a
//! provider never seen scores 2/3, so a newcomer is tried before a provider that fails
//! half its calls (about 1/2) and after one that always delivers (near 1).
//!
//! Other renters' signed [`attestations`] add to the posterior, each weighed by what its
//! attester verifiably paid to providers this node paid too ([`Standing`]); a provider's
//! own evidence here is never replaced by hearsay. Pings of providers (libp2p ping on
//! open connections) give an uptime, reported beside the score and not scored: a
//! connection this node did not keep says little of the provider.

pub mod attestations;
mod own_attestation;

pub use own_attestation::payment_proofs;

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

use orien_ledger::executions::{ExecFailure, ExecQuery, ExecRecord, ExecState};
use orien_ledger::store::MAX_EXEC_PAGE;
use orien_ledger::{SessionStatus, Store};
use orien_protocol::attestation::MAX_ATTESTED_PROVIDERS;
use orien_protocol::{
    Attestation, CloseReason, Millis, NodeId, ProviderRecord, ReceiptHash, Signed, Timestamp, Usdc,
};
use tracing::warn;

use self::attestations::{AttestationBook, AttestationRejection, Shared};

/// How many failures a dispute weighs.
pub const DISPUTE_WEIGHT: u64 = 10;
/// Providers remembered at once; past it the one with the least evidence is forgotten.
const PROVIDERS: usize = 4096;
/// Start latencies kept per provider (the newest).
const LATENCIES: usize = 256;
/// Calls read back from the ledger at start (the newest).
pub const LEARNED_CALLS: usize = 10_000;

/// One provider's record with this node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evidence {
    /// Calls that ran to their exit.
    pub calls_completed: u64,
    /// Calls that did not, for a reason other than their arguments.
    pub calls_failed: u64,
    /// Sessions that ended as the renter wanted.
    pub sessions_completed: u64,
    /// Sessions the provider ended early.
    pub sessions_failed: u64,
    /// Sessions ended by a dispute of the provider's receipts or results.
    pub disputes: u64,
    /// What this node acknowledged owing the provider over the sessions it rented.
    pub paid: Usdc,
    /// Pings of the provider answered (in memory only).
    pub pings_answered: u64,
    /// Pings of the provider that failed (in memory only).
    pub pings_failed: u64,
    /// From a call's request to the provider's confirmation that it started, the
    /// newest first.
    starts: VecDeque<Millis>,
    /// From a session's request to the provider's acceptance (sandbox up), the newest
    /// first; in memory only (the ledger does not keep when an open was asked).
    opens: VecDeque<Millis>,
    /// From a call's request to its first output, the newest first; in memory only.
    first_outputs: VecDeque<Millis>,
}

impl Evidence {
    /// The score in (0, 1): the Beta(2, 1)-prior posterior mean of delivering.
    pub fn score(&self) -> f64 {
        let (good, bad) = self.events();
        (good as f64 + 2.0) / ((good + bad) as f64 + 3.0)
    }

    /// The p50 and p95 of call start latency, once any call started.
    pub fn start_latency(&self) -> Option<(Millis, Millis)> {
        percentiles(&self.starts)
    }

    /// The p50 and p95 of session open latency, once any open was accepted in this run.
    pub fn open_latency(&self) -> Option<(Millis, Millis)> {
        percentiles(&self.opens)
    }

    /// The p50 and p95 of the time to a call's first output, once any call answered in
    /// this run.
    pub fn first_output_latency(&self) -> Option<(Millis, Millis)> {
        percentiles(&self.first_outputs)
    }

    /// The share of pings answered, once any was sent.
    pub fn uptime(&self) -> Option<f64> {
        let sent = self.pings_answered + self.pings_failed;
        (sent > 0).then(|| self.pings_answered as f64 / sent as f64)
    }

    /// Events that count for and against the provider.
    fn events(&self) -> (u64, u64) {
        let bad =
            self.calls_failed + self.sessions_failed + self.disputes.saturating_mul(DISPUTE_WEIGHT);
        (self.calls_completed, bad)
    }

    /// What this node attests of the provider.
    fn record(&self, provider: NodeId) -> ProviderRecord {
        ProviderRecord {
            provider,
            calls_completed: self.calls_completed,
            calls_failed: self.calls_failed,
            sessions_failed: self.sessions_failed,
            disputes: self.disputes,
        }
    }

    fn weight(&self) -> u64 {
        self.calls_completed + self.calls_failed + self.sessions_completed + self.sessions_failed
    }

    fn record_call(&mut self, record: &ExecRecord) {
        match record.state {
            ExecState::Completed => self.calls_completed += 1,
            ExecState::Failed(ExecFailure::InvalidArguments) => return,
            ExecState::Failed(_) => self.calls_failed += 1,
            ExecState::Pending | ExecState::Running => return,
        }
        if let Some(started) = record.started_at {
            self.starts.push_front(started.since(record.requested_at));
            self.starts.truncate(LATENCIES);
        }
    }

    fn record_session(&mut self, reason: CloseReason) {
        match reason {
            CloseReason::RenterRequested
            | CloseReason::BudgetExhausted
            | CloseReason::MaxDuration
            | CloseReason::LaneClosing => self.sessions_completed += 1,
            CloseReason::Disconnected | CloseReason::ProviderShutdown => {
                self.sessions_failed += 1;
            }
            CloseReason::Dispute => self.disputes += 1,
            CloseReason::AckTimeout | CloseReason::Restarted => {}
        }
    }
}

/// The p50 and p95 of `samples` (`None` when empty).
fn percentiles(samples: &VecDeque<Millis>) -> Option<(Millis, Millis)> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted: Vec<Millis> = samples.iter().copied().collect();
    sorted.sort_unstable();
    let at = |q: usize| sorted[(q * (sorted.len() - 1)).div_ceil(100)];
    Some((at(50), at(95)))
}

/// A provider's standing here: this node's own evidence and what attesters say.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Standing {
    /// This node's own evidence.
    pub own: Evidence,
    /// Other renters' attestations, weighed.
    pub shared: Shared,
}

impl Standing {
    /// The score in (0, 1): the Beta(2, 1)-prior posterior mean over the own events and
    /// the weighted attested ones.
    pub fn score(&self) -> f64 {
        let (good, bad) = self.own.events();
        let good = good as f64 + self.shared.good;
        let bad = bad as f64 + self.shared.bad;
        (good + 2.0) / (good + bad + 3.0)
    }
}

#[derive(Debug, Default)]
struct State {
    providers: HashMap<NodeId, Evidence>,
    attestations: AttestationBook,
}

impl State {
    fn paid(&self, provider: &NodeId) -> Usdc {
        self.providers.get(provider).map_or(Usdc::ZERO, |e| e.paid)
    }

    fn standing(&self, provider: &NodeId) -> Standing {
        Standing {
            own: self.providers.get(provider).cloned().unwrap_or_default(),
            shared: self.attestations.shared(provider, &|p| self.paid(p)),
        }
    }
}

/// Every provider's evidence and other renters' attestations, bounded.
#[derive(Debug, Default)]
pub struct Reputation {
    state: Mutex<State>,
}

impl Reputation {
    /// A call rented from `provider` ended as `record` says (a record not final counts
    /// nothing).
    pub fn record_call(&self, provider: NodeId, record: &ExecRecord) {
        self.update(provider, |e| e.record_call(record));
    }

    /// `provider` accepted a session `took` after it was asked.
    pub fn record_open(&self, provider: NodeId, took: Millis) {
        self.update(provider, |e| {
            e.opens.push_front(took);
            e.opens.truncate(LATENCIES);
        });
    }

    /// A session rented from `provider` ended for `reason`, `paid` acknowledged owing.
    pub fn record_session(&self, provider: NodeId, reason: CloseReason, paid: Usdc) {
        self.update(provider, |e| {
            e.record_session(reason);
            e.paid = e.paid.saturating_add(paid);
        });
    }

    /// A call rented from `provider` gave its first output `took` after it was asked.
    pub fn record_first_output(&self, provider: NodeId, took: Millis) {
        self.update(provider, |e| {
            e.first_outputs.push_front(took);
            e.first_outputs.truncate(LATENCIES);
        });
    }

    /// A ping of `provider` was answered or failed.
    pub fn record_ping(&self, provider: NodeId, answered: bool) {
        self.update(provider, |e| {
            if answered {
                e.pings_answered += 1;
            } else {
                e.pings_failed += 1;
            }
        });
    }

    /// What this node has seen of `provider` (`None`: nothing yet).
    pub fn of(&self, provider: &NodeId) -> Option<Evidence> {
        self.lock().providers.get(provider).cloned()
    }

    /// Every provider's evidence.
    pub fn all(&self) -> Vec<(NodeId, Evidence)> {
        self.lock()
            .providers
            .iter()
            .map(|(p, e)| (*p, e.clone()))
            .collect()
    }

    /// `provider`'s standing (`None`: nothing seen or heard of it).
    pub fn standing(&self, provider: &NodeId) -> Option<Standing> {
        let state = self.lock();
        let standing = state.standing(provider);
        (state.providers.contains_key(provider) || standing.shared.attesters > 0)
            .then_some(standing)
    }

    /// The standing of every provider seen here or attested by an attester of weight.
    pub fn standings(&self) -> Vec<(NodeId, Standing)> {
        let state = self.lock();
        let mut providers: Vec<NodeId> = state.providers.keys().copied().collect();
        providers.extend(
            state
                .attestations
                .subjects()
                .filter(|p| !state.providers.contains_key(p)),
        );
        providers
            .into_iter()
            .map(|p| (p, state.standing(&p)))
            .filter(|(p, s)| state.providers.contains_key(p) || s.shared.attesters > 0)
            .collect()
    }

    /// Verifies and keeps another renter's attestation (node `me` keeps none of its own).
    pub fn admit_attestation(
        &self,
        signed: &Signed<Attestation>,
        now: Timestamp,
        me: &NodeId,
    ) -> Result<NodeId, AttestationRejection> {
        let mut state = self.lock();
        let State {
            providers,
            attestations,
        } = &mut *state;
        let paid = |p: &NodeId| providers.get(p).map_or(Usdc::ZERO, |e| e.paid);
        attestations.admit(signed, now, me, &paid)
    }

    /// The weight here of `attester`'s word on `subject`, in [0, 1].
    pub fn attester_weight(&self, attester: &NodeId, subject: &NodeId) -> f64 {
        let state = self.lock();
        state
            .attestations
            .weight(attester, subject, &|p| state.paid(p))
    }

    /// How many attesters' attestations are held.
    pub fn attesters_held(&self) -> usize {
        self.lock().attestations.len()
    }

    /// Forgets attestations too old at `now`.
    pub fn expire_attestations(&self, now: Timestamp) {
        self.lock().attestations.expire(now);
    }

    /// What this node attests: its own record of the providers with the most evidence
    /// (at most [`MAX_ATTESTED_PROVIDERS`]), sorted by provider.
    pub fn own_records(&self) -> Vec<ProviderRecord> {
        let state = self.lock();
        let mut records: Vec<(&NodeId, &Evidence)> = state
            .providers
            .iter()
            .filter(|(_, e)| e.events() != (0, 0))
            .collect();
        records.sort_by_key(|(p, e)| (std::cmp::Reverse(e.weight()), **p));
        let mut records: Vec<ProviderRecord> = records
            .into_iter()
            .take(MAX_ATTESTED_PROVIDERS)
            .map(|(p, e)| e.record(*p))
            .collect();
        records.sort_by_key(|r| r.provider);
        records
    }

    /// Node `me` presented `receipts` in its own attestation.
    pub fn claim_own(&self, me: &NodeId, receipts: impl IntoIterator<Item = ReceiptHash>) {
        self.lock().attestations.claim_own(me, receipts);
    }

    /// Learns what the ledger of node `me` holds: how the sessions it rented ended and
    /// how their newest [`LEARNED_CALLS`] calls did, so a restart forgets nothing
    /// recent. A ledger that cannot be read teaches nothing (and says so).
    pub fn learn_from_ledger(&self, store: &Store, me: &NodeId) {
        let sessions = match store.sessions() {
            Ok(sessions) => sessions,
            Err(e) => {
                warn!(error = %e, "reputation: cannot read the rented sessions");
                return;
            }
        };
        let mut rented = HashMap::new();
        for (record, head) in sessions {
            if record.renter != *me {
                continue;
            }
            match head.status {
                SessionStatus::Closed(reason) => {
                    self.record_session(record.provider, reason, head.amount);
                }
                _ => self.update(record.provider, |e| {
                    e.paid = e.paid.saturating_add(head.amount)
                }),
            }
            rented.insert(record.session, record.provider);
        }
        let mut query = ExecQuery {
            session: None,
            tool: None,
            state: None,
            after: None,
            limit: MAX_EXEC_PAGE,
        };
        let mut read = 0;
        while read < LEARNED_CALLS {
            let page = match store.executions(&query) {
                Ok(page) => page,
                Err(e) => {
                    warn!(error = %e, "reputation: cannot read the execution records");
                    return;
                }
            };
            read += page.records.len();
            for record in &page.records {
                if let Some(provider) = rented.get(&record.session) {
                    self.record_call(*provider, record);
                }
            }
            match page.next {
                Some(next) => query.after = Some(next),
                None => return,
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn update(&self, provider: NodeId, change: impl FnOnce(&mut Evidence)) {
        let mut state = self.lock();
        let providers = &mut state.providers;
        if providers.len() >= PROVIDERS
            && !providers.contains_key(&provider)
            && let Some(least) = providers
                .iter()
                .min_by_key(|(_, e)| e.weight())
                .map(|(p, _)| *p)
        {
            providers.remove(&least);
        }
        change(providers.entry(provider).or_default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orien_ledger::executions::ExecRecord;
    use orien_protocol::{ExecId, NodeKey, SessionId, Timestamp, ToolName};

    fn record(state: ExecState, start_ms: Option<u64>) -> ExecRecord {
        ExecRecord {
            exec: ExecId::random(),
            session: SessionId::random(),
            tool: ToolName::new("wc").unwrap(),
            args_json: "{}".into(),
            requested_at: Timestamp(1_000),
            started_at: start_ms.map(|ms| Timestamp(1_000 + ms)),
            ended_at: None,
            state,
            end: None,
        }
    }

    #[test]
    fn a_provider_that_fails_half_its_calls_scores_below_a_newcomer_and_a_reliable_one() {
        let reputation = Reputation::default();
        let (flaky, reliable, newcomer) = (
            NodeKey::generate().node_id(),
            NodeKey::generate().node_id(),
            NodeKey::generate().node_id(),
        );
        for i in 0..10 {
            let state = if i % 2 == 0 {
                ExecState::Completed
            } else {
                ExecState::Failed(ExecFailure::TimedOut)
            };
            reputation.record_call(flaky, &record(state, Some(20)));
            reputation.record_call(reliable, &record(ExecState::Completed, Some(10)));
        }
        let score = |p: &NodeId| reputation.of(p).unwrap_or_default().score();
        assert!(
            score(&flaky) < score(&newcomer),
            "{} vs {}",
            score(&flaky),
            score(&newcomer)
        );
        assert!(score(&newcomer) < score(&reliable));
        assert!((score(&newcomer) - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!(
            reputation.of(&reliable).unwrap().start_latency(),
            Some((Millis(10), Millis(10)))
        );
    }

    #[test]
    fn the_renters_own_faults_count_neither_way_and_a_dispute_weighs_ten_failures() {
        let reputation = Reputation::default();
        let p = NodeKey::generate().node_id();
        reputation.record_call(
            p,
            &record(ExecState::Failed(ExecFailure::InvalidArguments), None),
        );
        reputation.record_call(p, &record(ExecState::Running, None));
        reputation.record_session(p, CloseReason::AckTimeout, Usdc::ZERO);
        reputation.record_session(p, CloseReason::Restarted, Usdc::ZERO);
        assert_eq!(reputation.of(&p).unwrap_or_default(), Evidence::default());
        reputation.record_session(p, CloseReason::RenterRequested, Usdc::ZERO);
        let closed = reputation.of(&p).unwrap();
        assert_eq!(closed.sessions_completed, 1);
        assert!(
            (closed.score() - 2.0 / 3.0).abs() < 1e-9,
            "a normal close adds nothing"
        );
        reputation.record_session(p, CloseReason::Dispute, Usdc::ZERO);
        let disputed = reputation.of(&p).unwrap();
        assert_eq!(disputed.disputes, 1);
        assert!((disputed.score() - 2.0 / 13.0).abs() < 1e-9);
    }

    #[test]
    fn latencies_are_the_newest_and_percentiles_read_them() {
        let reputation = Reputation::default();
        let p = NodeKey::generate().node_id();
        for ms in 1..=(LATENCIES as u64 + 100) {
            reputation.record_call(p, &record(ExecState::Completed, Some(ms)));
        }
        let evidence = reputation.of(&p).unwrap();
        assert_eq!(evidence.starts.len(), LATENCIES);
        let (p50, p95) = evidence.start_latency().unwrap();
        assert!(p50 > Millis(100) && p95 > p50, "{p50:?} {p95:?}");
    }
}
