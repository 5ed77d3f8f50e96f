//! Seeded hostile runs of whole sessions between in-process nodes (real libp2p, real
//! RocksDB, the modelled sandbox), shared by `tests/loss_bound.rs` and `benches/faults.rs`.
//!
//! A seed decides everything the run does: how lossy and slow each node's links are,
//! the calls (some past the tool's limit, some whose exit reports a wall time it could
//! not have), the budget, when the renter closes, and whether the renter turns hostile
//! and stops acknowledging. The provider is honest. After the run, the work the modelled
//! sandbox really did is priced and compared with what each ledger says was paid:
//!
//! - the provider's unpaid work must stay within one ack window — the ack timeout plus
//!   the round trip of the last acknowledged receipt — of session time and of every
//!   call slot;
//! - the renter's payment must stay within its tolerance of that work (capped per call at
//!   the tool's limit plus the kill slack).
//!
//! Timings are real (loopback, milliseconds), so a seed replays the same schedule of
//! faults, not the same interleaving. `ORIEN_FAULT_DEBUG=1` prints each run's schedule
//! and the work its provider's sandbox did, for looking into a failing seed.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr
)]

use std::time::Duration;

use orien_daemon::session::simulation::Rng;
use orien_daemon::{Fault, Point, SessionConfig};
use orien_ledger::SessionStatus;
use orien_protocol::{Millis, SessionRequest, SessionResponse, Usage, Usdc};

use super::harness::{PATIENCE, Pair, work_pricing, worth};

/// What one run found.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub seed: u64,
    /// Work the provider did that no acknowledged receipt pays (µUSDC).
    pub provider_unpaid: u64,
    /// Its bound for this run's timings (µUSDC).
    pub provider_bound: u64,
    /// What the renter paid beyond the work done (µUSDC; negative: less).
    pub renter_overpaid: i64,
    /// Its bound (µUSDC).
    pub renter_bound: u64,
    /// How the provider ended the session.
    pub ended: String,
    /// Whether the renter stopped acknowledging on purpose.
    pub hostile_renter: bool,
}

impl Outcome {
    /// Whether both bounds held.
    pub fn holds(&self) -> bool {
        self.provider_unpaid <= self.provider_bound
            && self.renter_overpaid <= i64::try_from(self.renter_bound).unwrap_or(i64::MAX)
    }
}

/// Scheduling slack on a busy machine, added to every window.
const SLACK: Duration = Duration::from_millis(300);

/// The faults of one node's links: each session message but the open and the start of
/// a call (and their answers) is lost with `loss` percent and delayed up to `delay`.
fn lossy(
    loss: u8,
    delay: Duration,
    mut rng: Rng,
) -> impl FnMut(&Point<'_>) -> Option<Fault> + Send {
    move |point| {
        let opening = matches!(
            point,
            Point::OutboundRequest {
                request: SessionRequest::Open(_) | SessionRequest::Exec(_),
                ..
            } | Point::InboundRequest {
                request: SessionRequest::Open(_) | SessionRequest::Exec(_),
                ..
            }
        );
        let opened = matches!(
            point,
            Point::OutboundResponse {
                response: SessionResponse::Accepted(_)
                    | SessionResponse::Rejected(_)
                    | SessionResponse::ExecStarted { .. },
                ..
            } | Point::InboundResponse {
                response: SessionResponse::Accepted(_)
                    | SessionResponse::Rejected(_)
                    | SessionResponse::ExecStarted { .. },
                ..
            }
        );
        if opening || opened {
            return None;
        }
        if rng.chance(loss) {
            return Some(Fault::Drop);
        }
        let by = rng.below(u64::try_from(delay.as_millis()).unwrap_or(0) + 1);
        (by > 0).then(|| Fault::Delay(Duration::from_millis(by)))
    }
}

/// One seeded run.
pub async fn run(seed: u64) -> Outcome {
    let mut rng = Rng::new(seed);
    let config = SessionConfig {
        receipt_interval: Millis(200),
        ack_timeout: Millis(1_000),
        disconnect_grace: Millis(2_000),
        ..SessionConfig::default()
    };
    let pair = Pair::start(config.clone()).await;
    let loss = [0, 2, 10][rng.below(3) as usize];
    let delay = Duration::from_millis([0, 50, 250][rng.below(3) as usize]);
    pair.provider
        .rules
        .add(lossy(loss, delay, Rng::new(rng.next())));
    pair.renter
        .rules
        .add(lossy(loss, delay, Rng::new(rng.next())));
    let hostile_renter = rng.chance(25);
    let stop_acking = Duration::from_millis(200 + rng.below(2_000));
    let budget = Usdc::from_micros(20_000 + rng.below(300_000));
    let lifetime = Duration::from_millis(500 + rng.below(3_500));
    let calls: Vec<(Duration, String)> = (0..rng.below(4))
        .map(|_| {
            let at = Duration::from_millis(rng.below(lifetime.as_millis() as u64));
            let ms = rng.below(2_600);
            let args = match rng.below(10) {
                0 => format!(r#"{{"ms":"{ms}","late":"yes"}}"#),
                1 => format!(r#"{{"ms":"{ms}","wall":"{}"}}"#, ms + 9_000),
                _ => format!(r#"{{"ms":"{ms}"}}"#),
            };
            (at, args)
        })
        .collect();

    if std::env::var_os("ORIEN_FAULT_DEBUG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("orien_daemon=debug")
            .with_test_writer()
            .try_init();
        eprintln!(
            "seed {seed}: loss {loss} % delay {delay:?} hostile {hostile_renter} stop {stop_acking:?} budget {budget} lifetime {lifetime:?} calls {calls:?}"
        );
    }
    let started = tokio::time::Instant::now();
    let Ok(session) = pair.open(budget).await else {
        // A budget below the interval's worst case is refused: nothing ran, nothing lost.
        return Outcome {
            seed,
            provider_unpaid: 0,
            provider_bound: 0,
            renter_overpaid: 0,
            renter_bound: 0,
            ended: "refused".into(),
            hostile_renter,
        };
    };
    if hostile_renter {
        let at = started + stop_acking;
        pair.renter.rules.add(move |point| {
            (tokio::time::Instant::now() >= at
                && matches!(
                    point,
                    Point::InboundRequest {
                        request: SessionRequest::Receipt(_),
                        ..
                    }
                ))
            .then_some(Fault::Drop)
        });
    }
    let mut pending = calls;
    pending.sort_by_key(|(at, _)| *at);
    for (at, args) in pending {
        tokio::time::sleep_until(started + at).await;
        let _ = pair.exec(session, args).await;
    }
    tokio::time::sleep_until(started + lifetime).await;
    let _ = pair.close(session).await;
    let head = pair.provider.closed(&session).await;
    let ended = match head.status {
        SessionStatus::Closed(reason) => format!("{reason:?}"),
        other => format!("{other:?}"),
    };
    // The renter learns of the end, or gives up on a silent provider.
    let _ = tokio::time::timeout(PATIENCE, pair.renter.closed(&session)).await;

    let pricing = work_pricing();
    let work = pair.provider.work(&session);
    let now = pair.provider.clock.monotonic();
    let call_cap = Duration::from_millis(2_000) + Duration::from_millis(1_000);
    let truth = worth(&work, pricing, now, call_cap);
    if std::env::var_os("ORIEN_FAULT_DEBUG").is_some() {
        eprintln!(
            "seed {seed}: work {work:?} truth {truth} now {now:?} head seq {} session {} exec {} amount {}",
            head.seq, head.session_time, head.exec_time, head.amount
        );
    }
    let provider_paid = head.amount;
    let renter_paid = pair.renter.head(&session).amount;

    // The provider stops one ack timeout after the last ack it received, and that ack
    // answered a reading one round trip (both ways delayed) earlier.
    let window = Millis::from_duration(config.ack_timeout.to_duration() + delay * 2 + SLACK);
    let provider_bound = pricing.amount_for(Usage {
        session: window,
        exec: Millis(window.get() * 2),
    });
    let tolerance = config.tolerance;
    let session_ms = Millis::from_duration(work.closed.unwrap_or(now).saturating_sub(work.opened));
    let allowed = |measured: Millis| {
        Millis(
            tolerance
                .slack
                .get()
                .max(measured.get() / 100 * u64::from(tolerance.percent)),
        )
    };
    let exec_ms = Millis(
        work.calls
            .iter()
            .map(|c| {
                c.ended
                    .unwrap_or(now)
                    .saturating_sub(c.started)
                    .min(call_cap)
                    .as_millis() as u64
            })
            .sum(),
    );
    let link = Millis::from_duration(delay * 2 + SLACK);
    let renter_bound = pricing.amount_for(Usage {
        session: allowed(session_ms).saturating_add(link),
        exec: allowed(exec_ms).saturating_add(Millis(link.get() * work.calls.len() as u64)),
    });
    Outcome {
        seed,
        provider_unpaid: truth.micros().saturating_sub(provider_paid.micros()),
        provider_bound: provider_bound.micros(),
        renter_overpaid: i64::try_from(renter_paid.micros()).unwrap_or(i64::MAX)
            - i64::try_from(truth.micros()).unwrap_or(i64::MAX),
        renter_bound: renter_bound.micros(),
        ended,
        hostile_renter,
    }
}
