//! How a renter opens a session: it finds the offer, arranges the payment lane and
//! agrees its total with the provider, asks for the session, and starts its task.

use std::sync::Arc;
use std::time::Duration;

use orien_ledger::{Countersigner, LaneKey, Meter, MeterConfig, SessionRecord};
use orien_protocol::{
    CloseReason, CloseSession, LaneHead, Millis, NodeId, OfferId, OpenSession, PaymentLane,
    SessionId, SessionRequest, SessionResponse, Usdc,
};
use tokio::sync::mpsc;
use tracing::{Instrument, info, info_span, warn};

use super::{Handle, RentedSession, Task};
use crate::metrics::Side;
use crate::payments::RenterLane;
use crate::session::call_terms::CallTerms;
use crate::session::exec_records::ExecRecords;
use crate::session::renter_machine::{RenterMachine, RenterTerms};
use crate::session::{ExecLogs, Inner, PaymentChoice, SessionError, blocking, unexpected};

/// Asks the offer's provider for a session and starts its task.
pub(in crate::session) async fn open(
    inner: Arc<Inner>,
    offer_id: OfferId,
    budget: Usdc,
    max_duration: Millis,
    payment: PaymentChoice,
) -> Result<RentedSession, SessionError> {
    let asked = inner.clock.monotonic();
    let entry = inner
        .net
        .offer(offer_id)
        .await?
        .ok_or(SessionError::UnknownOffer(offer_id))?;
    let offer = entry.offer;
    let renter = inner.key.node_id();
    if offer.provider == renter {
        return Err(SessionError::OwnOffer(offer_id));
    }
    if !inner.config.operator.providers.permits(&offer.provider) {
        return Err(SessionError::ProviderNotAllowed(offer.provider));
    }
    let escrow = match (payment, &inner.payments) {
        (PaymentChoice::Ledger, _) | (PaymentChoice::Auto, None) => None,
        (PaymentChoice::Escrow, None) => return Err(SessionError::NoChain),
        (PaymentChoice::Auto | PaymentChoice::Escrow, Some(payments)) => {
            Some(payments.renter_lane(offer.payout, budget).await?)
        }
    };
    let payment_lane = escrow.as_ref().map_or(PaymentLane::Ledger, |e| e.payment);
    let lane_key = LaneKey {
        renter,
        provider: offer.provider,
        escrow: escrow.as_ref().map(|e| e.lane),
    };
    // Only escrow lanes count vouchers from the lane's total; a ledger lane has none.
    let head = escrow.as_ref().map_or(LaneHead::default(), |e| e.head);
    let request = OpenSession {
        offer: offer_id,
        renter,
        budget,
        max_duration,
        payment: payment_lane,
        lane: head,
    };
    let requested = inner.clock.monotonic();
    let accepted = match inner
        .net
        .request(offer.provider, SessionRequest::Open(request))
        .await?
    {
        SessionResponse::Accepted(accepted) => {
            let took = inner.clock.monotonic().saturating_sub(requested);
            inner
                .reputation
                .record_open(offer.provider, Millis::from_duration(took));
            accepted
        }
        SessionResponse::Rejected(rejected) => return Err(SessionError::Rejected(rejected.reason)),
        other => return Err(unexpected(other)),
    };
    if accepted.offer != offer_id
        || accepted.budget != budget
        || accepted.max_duration > max_duration
    {
        warn!(session = %accepted.session, "the provider accepted other terms than asked; closing");
        close_quietly(&inner, offer.provider, accepted.session).await;
        return Err(SessionError::Remote(
            "the provider accepted other terms than asked".into(),
        ));
    }
    if let Err(e) = resync(&inner, lane_key, accepted.session, accepted.lane, &escrow).await {
        close_quietly(&inner, offer.provider, accepted.session).await;
        return Err(e);
    }
    let record = SessionRecord {
        session: accepted.session,
        provider: offer.provider,
        renter,
        payment: payment_lane,
        pricing: offer.pricing,
        budget,
        opened_at: inner.clock.wall(),
    };
    let store = inner.store.clone();
    if let Err(e) = blocking(move || store.open_session(record)).await {
        close_quietly(&inner, offer.provider, accepted.session).await;
        return Err(e.into());
    }
    let rented = RentedSession {
        session: accepted.session,
        provider: offer.provider,
        offer: offer_id,
        tool: offer.tool.clone(),
        pricing: offer.pricing,
        budget,
        max_duration: accepted.max_duration,
        receipt_interval: accepted.receipt_interval,
    };
    let meter = Meter::start(
        MeterConfig::of_offer(&offer, budget, accepted.receipt_interval),
        inner.clock.clone(),
    );
    let mut countersigner = Countersigner::new(
        inner.key.clone(),
        accepted.session,
        offer.provider,
        offer.pricing,
        budget,
        inner.config.tolerance,
    );
    let mut lane_guard = None;
    if let (Some(escrow), Some(payments)) = (escrow, &inner.payments) {
        countersigner = countersigner.with_vouchers(payments.signer(), escrow.lane);
        lane_guard = Some(escrow.guard);
    }
    let (input, inbox) = mpsc::channel(64);
    let logs = Arc::new(ExecLogs::default());
    // A provider that is alive sends a receipt every interval; two missed ones are the
    // least silence that means anything.
    let grace = Duration::from_millis(
        inner
            .config
            .disconnect_grace
            .get()
            .max(accepted.receipt_interval.get().saturating_mul(2)),
    );
    let machine = RenterMachine::new(
        RenterTerms {
            session: accepted.session,
            provider: offer.provider,
            max_calls: offer.limits.concurrent_execs,
            grace,
            slack: inner.config.tolerance.slack,
        },
        meter,
        countersigner,
        inner.clock.clone(),
    );
    let task = Task {
        inner: inner.clone(),
        session: accepted.session,
        own: CallTerms::of_offer(&offer),
        machine,
        provider: offer.provider,
        records: ExecRecords::new(inner.store.clone(), inner.config.kept_output)
            .observed_by(inner.reputation.clone(), offer.provider),
        logs: logs.clone(),
        lane: lane_guard,
    };
    inner
        .history()
        .insert(rented.clone(), logs.clone(), &inner.held);
    inner.rented().insert(
        accepted.session,
        Handle {
            provider: offer.provider,
            tool: offer.tool.clone(),
            session: accepted.session,
            input,
            logs,
            files: Arc::default(),
            transfers: Arc::default(),
        },
    );
    let span =
        info_span!("session", session = %accepted.session, role = "renter", peer = %offer.provider);
    tokio::spawn(task.run(inbox).instrument(span));
    inner
        .metrics
        .session_opened(Side::Renter, inner.clock.monotonic().saturating_sub(asked));
    info!(session = %accepted.session, tool = %offer.tool, "session opened");
    Ok(rented)
}

/// Checks the provider's lane total against this ledger's. A provider behind is normal
/// when other sessions share the lane (their acks are on their way) and otherwise records
/// the gap itself; a provider ahead must prove it with this node's own voucher, and this
/// ledger then records the receipts it never committed. Read under the lane's turn, so
/// no receipt of another session on the lane commits in between.
async fn resync(
    inner: &Inner,
    key: LaneKey,
    session: SessionId,
    theirs: LaneHead,
    escrow: &Option<RenterLane>,
) -> Result<(), SessionError> {
    let (Some(escrow), Some(payments)) = (escrow, &inner.payments) else {
        // A ledger lane: nothing is paid from its total, so there is nothing to agree on.
        return Ok(());
    };
    let turn = escrow.guard.turn();
    let _turn = turn.lock().await;
    let ours = {
        let (payments, lane) = (payments.clone(), escrow.lane);
        blocking(move || payments.lane_head(lane)).await?
    };
    if theirs.acked <= ours.acked {
        return Ok(());
    }
    match theirs.voucher {
        Some(voucher) if payments.is_own_voucher(&voucher, escrow.payout, theirs.acked) => {
            let store = inner.store.clone();
            blocking(move || store.resync_lane(key, session, theirs.acked, Some(voucher))).await?;
            Ok(())
        }
        _ => Err(SessionError::Remote(format!(
            "the provider counts {} on the lane without this node's voucher for it",
            theirs.acked
        ))),
    }
}

async fn close_quietly(inner: &Inner, provider: NodeId, session: SessionId) {
    let request = SessionRequest::Close(CloseSession {
        session,
        reason: CloseReason::RenterRequested,
    });
    let _ = inner.net.request(provider, request).await;
}
