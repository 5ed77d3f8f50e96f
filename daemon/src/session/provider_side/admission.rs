//! Whether a provider takes a session: capacity (in all and per renter), the offer, the
//! budget against the interval's worst case, the payment lane and its agreed total;
//! then the sandbox starts and the session's task runs.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};

use orien_ledger::{Issuer, LaneKey, Meter, MeterConfig, SessionRecord};
use orien_protocol::{
    EvmAddress, LaneHead, NodeId, OpenSession, PaymentLane, RejectReason, SessionAccepted,
    SessionId, SessionRejected, SessionResponse,
};
use tokio::sync::mpsc;
use tracing::{Instrument, info, info_span, warn};

use super::{FILE_OPS, Handle, Task, VoucherCheck};
use crate::metrics::Side;
use crate::payments::{LaneGuard, Payments};
use crate::session::call_terms::CallTerms;
use crate::session::exec_records::ExecRecords;
use crate::session::provider_machine::{AckCheck, ProviderMachine, ProviderTerms};
use crate::session::{Inner, blocking};

/// A reserved place among the provider's concurrent sessions (in all and for one
/// renter), released on drop.
pub(super) struct Slot {
    inner: Arc<Inner>,
    renter: NodeId,
}

impl Slot {
    fn reserve(inner: &Arc<Inner>, renter: NodeId) -> Result<Self, RejectReason> {
        if inner.stopping.load(Ordering::SeqCst) {
            // A node that stops takes no session it would have to close at once.
            return Err(RejectReason::AtCapacity);
        }
        let taken = inner.slots.fetch_add(1, Ordering::SeqCst);
        if taken >= inner.config.max_sessions {
            inner.slots.fetch_sub(1, Ordering::SeqCst);
            return Err(RejectReason::AtCapacity);
        }
        let max = inner.config.max_sessions_per_peer;
        let mut peers = inner
            .peer_slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let theirs = peers.entry(renter).or_insert(0);
        if *theirs >= max {
            drop(peers);
            inner.slots.fetch_sub(1, Ordering::SeqCst);
            return Err(RejectReason::TooManySessions {
                max: u32::try_from(max).unwrap_or(u32::MAX),
            });
        }
        *theirs += 1;
        Ok(Self {
            inner: inner.clone(),
            renter,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.inner.slots.fetch_sub(1, Ordering::SeqCst);
        let mut peers = self
            .inner
            .peer_slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(theirs) = peers.get_mut(&self.renter) {
            *theirs = theirs.saturating_sub(1);
            if *theirs == 0 {
                peers.remove(&self.renter);
            }
        }
    }
}

/// Decides on an `OpenSession` from `peer`; on acceptance the sandbox is up and the
/// session's task runs.
pub(in crate::session) async fn open(
    inner: Arc<Inner>,
    peer: NodeId,
    open: OpenSession,
) -> SessionResponse {
    let asked = inner.clock.monotonic();
    let reject = |reason| {
        SessionResponse::Rejected(SessionRejected {
            offer: open.offer,
            reason,
        })
    };
    let invalid = |detail: &str| {
        reject(RejectReason::InvalidRequest {
            detail: detail.into(),
        })
    };
    let Some(provider) = inner.provider.clone() else {
        return invalid("this node sells no tools");
    };
    if open.renter != peer {
        return invalid(crate::session::IMPERSONATION);
    }
    let operator = &inner.config.operator;
    if !operator.renters.permits(&peer) {
        return reject(RejectReason::NotServed);
    }
    let rate = operator.opens_per_minute;
    let admitted = inner
        .open_rate
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .admit(peer, asked, rate);
    if !admitted {
        return reject(RejectReason::OpeningTooOften { per_minute: rate });
    }
    let Some(offer) = inner.own_offers.get(&open.offer) else {
        return reject(RejectReason::UnknownOffer);
    };
    if offer.is_expired(inner.clock.wall()) {
        return reject(RejectReason::OfferExpired);
    }
    if open.max_duration > inner.config.max_duration {
        return reject(RejectReason::DurationTooLong {
            max: inner.config.max_duration,
        });
    }
    let meter_config = MeterConfig::of_offer(&offer, open.budget, inner.config.receipt_interval);
    // A budget that one interval of work can exhaust leaves no room for a receipt.
    let minimum = meter_config.interval_worst_case(offer.limits.concurrent_execs);
    if open.budget < minimum {
        return reject(RejectReason::BudgetTooLow { minimum });
    }
    // On a chain, a ledger-paid session is an IOU: only from the peers the operator lists.
    if open.payment == PaymentLane::Ledger
        && inner.payments.is_some()
        && !inner.config.ledger_payments.allows(&peer)
    {
        return reject(RejectReason::EscrowRequired);
    }
    let slot = match Slot::reserve(&inner, peer) {
        Ok(slot) => slot,
        Err(reason) => return reject(reason),
    };
    // Escrow: the lane must be ours to be paid on and hold enough for the budget.
    let (lane, escrow) = match (&open.payment, &inner.payments) {
        (PaymentLane::Ledger, _) => (None, None),
        (PaymentLane::Escrow { .. }, None) => return reject(RejectReason::PaymentNotSupported),
        (PaymentLane::Escrow { renter_wallet, .. }, Some(payments)) => {
            match payments
                .provider_lane(&open.payment, offer.payout, open.budget, open.max_duration)
                .await
            {
                Ok(guard) => (
                    Some(guard),
                    Some((payments.clone(), *renter_wallet, offer.payout)),
                ),
                Err(reason) => return reject(reason),
            }
        }
    };
    // The sandbox names the session: a warm one, made ahead of it, carries its id.
    let opening = info_span!("session", role = "provider", peer = %peer);
    let (session, sandbox) = match provider.open(&offer.tool).instrument(opening.clone()).await {
        Ok(opened) => opened,
        Err(e) => {
            warn!(parent: &opening, error = %e, "cannot create the sandbox");
            let detail = orien_protocol::fit_detail(e.to_string());
            return reject(RejectReason::SandboxUnavailable { detail });
        }
    };
    let span = info_span!("session", session = %session, role = "provider", peer = %peer);
    let lane_head = match &escrow {
        Some(escrow) => match resync(
            &inner,
            (peer, session),
            &open,
            escrow,
            lane.as_ref().is_some_and(LaneGuard::was_idle),
        )
        .instrument(span.clone())
        .await
        {
            Ok(head) => head,
            Err(reason) => {
                let _ = sandbox.close().await;
                return reject(reason);
            }
        },
        None => LaneHead::default(),
    };
    let record = SessionRecord {
        session,
        provider: inner.key.node_id(),
        renter: peer,
        payment: open.payment,
        pricing: offer.pricing,
        budget: open.budget,
        opened_at: inner.clock.wall(),
    };
    let store = inner.store.clone();
    if let Err(e) = blocking(move || store.open_session(record)).await {
        warn!(parent: &span, error = %e, "cannot record the session");
        let _ = sandbox.close().await;
        return reject(RejectReason::SandboxUnavailable {
            detail: "the provider's ledger is unavailable".into(),
        });
    }
    let accepted = SessionAccepted {
        session,
        offer: open.offer,
        budget: open.budget,
        max_duration: open.max_duration,
        receipt_interval: inner.config.receipt_interval,
        ack_timeout: inner.config.ack_timeout,
        lane: lane_head,
    };
    let clock = inner.clock.clone();
    let (input, inbox) = mpsc::channel(64);
    let check = escrow.as_ref().map(|(payments, renter_wallet, payout)| {
        Box::new(VoucherCheck {
            payments: payments.clone(),
            renter_wallet: *renter_wallet,
            payout: *payout,
        }) as Box<dyn AckCheck>
    });
    let machine = ProviderMachine::new(
        ProviderTerms {
            session,
            tool: offer.tool.clone(),
            max_calls: offer.limits.concurrent_execs,
            max_duration: open.max_duration.to_duration(),
        },
        Meter::start(meter_config, clock.clone()),
        Issuer::new(
            inner.key.clone(),
            session,
            peer,
            accepted.ack_timeout,
            clock.clone(),
        ),
        check,
        clock,
    );
    let sandbox: Arc<dyn orien_provider::SandboxSession> = Arc::from(sandbox);
    let task = Task {
        machine,
        inner: inner.clone(),
        session,
        renter: peer,
        sandbox: sandbox.clone(),
        input: input.clone(),
        file_ops: Arc::new(tokio::sync::Semaphore::new(FILE_OPS)),
        removing: None,
        lane_id: match open.payment {
            PaymentLane::Escrow { lane, .. } => Some(lane),
            PaymentLane::Ledger => None,
        },
        payments: escrow.map(|(payments, _, _)| payments),
        lane,
        calls: std::collections::HashMap::new(),
        own: CallTerms::of_offer(&offer),
        keep_artefacts: offer.keep_artefacts,
        records: ExecRecords::new(inner.store.clone(), inner.config.kept_output),
        finished: None,
        receipt_sent: None,
        stopping: Vec::new(),
        _slot: slot,
    };
    inner.provided().insert(
        session,
        Handle {
            renter: peer,
            input,
            sandbox,
            transfers: Arc::new(tokio::sync::Semaphore::new(super::TRANSFERS)),
        },
    );
    tokio::spawn(task.run(inbox).instrument(span));
    inner.metrics.session_opened(
        Side::Provider,
        inner.clock.monotonic().saturating_sub(asked),
    );
    info!(%session, tool = %offer.tool, renter = %peer, budget = %open.budget, "session accepted");
    SessionResponse::Accepted(accepted)
}

/// Agrees with the renter on the escrow lane's total when a session opens.
///
/// On a lane with no other open session here (`idle`), receipts the renter acknowledged
/// and this ledger never committed (an ack lost at the end of a session) will not arrive
/// any more: the ledger moves up to the larger of the renter's total, proved by its
/// voucher, and a voucher of its own that waited above its total, and records the
/// difference as a gap. While other sessions share the lane, their acks are on their way
/// and nothing is recorded. A renter behind this ledger gets this node's latest voucher,
/// its own signature, as proof.
async fn resync(
    inner: &Arc<Inner>,
    (renter, session): (NodeId, SessionId),
    open: &OpenSession,
    (payments, renter_wallet, payout): &(Arc<Payments>, EvmAddress, EvmAddress),
    idle: bool,
) -> Result<LaneHead, RejectReason> {
    let unavailable = |e: orien_ledger::StoreError| {
        warn!(error = %e, "cannot read or resync the lane");
        RejectReason::SandboxUnavailable {
            detail: "the provider's ledger is unavailable".into(),
        }
    };
    let PaymentLane::Escrow { lane, .. } = open.payment else {
        return Ok(LaneHead::default());
    };
    // Serialized with the gap a session's end records on the lane.
    let turn = payments.turn(lane);
    let _turn = turn.lock().await;
    let (ours, ahead) = {
        let (payments, store) = (payments.clone(), inner.store.clone());
        blocking(move || {
            Ok::<_, orien_ledger::StoreError>((
                payments.lane_head(lane)?,
                store.ahead_voucher(&lane)?,
            ))
        })
        .await
        .map_err(unavailable)?
    };
    let theirs = open.lane;
    let proven = if theirs.acked > ours.acked {
        let Some(voucher) = theirs.voucher else {
            return Err(RejectReason::InvalidRequest {
                detail: "the lane's total comes without the renter's voucher for it".into(),
            });
        };
        if let Err(e) = payments.verify_voucher(&voucher, *renter_wallet, *payout, theirs.acked) {
            return Err(RejectReason::InvalidRequest {
                detail: orien_protocol::fit_detail(format!(
                    "the renter's voucher for the lane: {e}"
                )),
            });
        }
        Some(voucher)
    } else {
        None
    };
    let largest = [proven, ahead]
        .into_iter()
        .flatten()
        .max_by_key(|v| v.cumulative)
        .filter(|v| idle && v.cumulative > ours.acked);
    let Some(voucher) = largest else {
        // Equal, the renter behind (its own voucher tells it what it acknowledged), or
        // other sessions' acks on their way.
        let voucher = (theirs.acked < ours.acked)
            .then_some(ours.voucher)
            .flatten();
        return Ok(LaneHead {
            acked: ours.acked,
            voucher,
        });
    };
    let key = LaneKey {
        renter,
        provider: inner.key.node_id(),
        escrow: Some(lane),
    };
    let store = inner.store.clone();
    blocking(move || store.resync_lane(key, session, voucher.cumulative, Some(voucher)))
        .await
        .map_err(unavailable)?;
    Ok(LaneHead {
        acked: voucher.cumulative,
        voucher: (voucher.cumulative > theirs.acked).then_some(voucher),
    })
}
