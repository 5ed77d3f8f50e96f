//! Money out of the escrow: a provider's earnings (or the treasury's fees and the
//! reserve's share) to the node's wallet, and a renter's unspent lane deposit back after
//! the thaw window; every lane of the node with the ledger and the chain side by side.

use std::time::{SystemTime, UNIX_EPOCH};

use orien_ledger::SettlementStatus;
use orien_ledger::chain::{ChainError, LaneState};
use orien_protocol::{EvmAddress, LaneId, Split, Usdc};
use orien_web_api::ApiError;
use orien_web_api::chain::{
    LaneClose, LaneRole, LaneStatusView, ReclaimView, RefundedView, SessionPaidView,
    SettlementRecordView, SettlementState, WithdrawKind, WithdrawnView,
};
use orien_web_api::sessions::usdc_string;
use tracing::info;

use super::attribution;
use super::errors::{chain_error, ledger_error};
use crate::payments::Payments;
use crate::session::{Sessions, blocking};

/// Withdraws `what` to this node's wallet.
pub(super) async fn withdraw(
    payments: &Payments,
    what: WithdrawKind,
) -> Result<WithdrawnView, ApiError> {
    let escrow = payments.escrow();
    let taken = match what {
        WithdrawKind::Earnings => escrow.withdraw_earnings().await,
        WithdrawKind::Fees => escrow.withdraw_fees().await,
        WithdrawKind::Reserve => escrow.withdraw_reserve().await,
    };
    let (amount, mined) = taken.map_err(|e| withdraw_refused(e, what, payments.wallet()))?;
    info!(?what, %amount, tx = %mined.tx, "withdrawn from the escrow");
    Ok(WithdrawnView {
        what,
        amount: usdc_string(amount),
        to: payments.wallet().to_string(),
        tx: mined.tx.to_string(),
        block: mined.block,
    })
}

fn withdraw_refused(error: ChainError, what: WithdrawKind, wallet: EvmAddress) -> ApiError {
    let reason = match &error {
        ChainError::Reverted { reason, .. } => reason.as_str(),
        _ => return chain_error(error),
    };
    if reason.contains("NothingToWithdraw") {
        return ApiError::Conflict(match what {
            WithdrawKind::Earnings => "nothing to withdraw: earnings are credited when this provider settles its vouchers (POST /v1/settlements, or wait for the settler)".into(),
            WithdrawKind::Fees => "no fees are held by the escrow".into(),
            WithdrawKind::Reserve => "no reserve is held by the escrow".into(),
        });
    }
    if reason.contains("NotPermitted") {
        let whose = if what == WithdrawKind::Fees {
            "treasury"
        } else {
            "reserve"
        };
        return ApiError::Conflict(format!(
            "this node's wallet {wallet} is not the escrow's {whose}; only the {whose}'s wallet may withdraw it"
        ));
    }
    chain_error(error)
}

/// Asks to close the lane to `payout`: refused when nothing is deposited, a close was
/// already asked, or sessions are open on it (none can open while it is asked).
pub(super) async fn reclaim(
    payments: &Payments,
    payout: EvmAddress,
) -> Result<ReclaimView, ApiError> {
    let escrow = payments.escrow();
    let lane = escrow.lane_id(payments.wallet(), payout);
    let turn = payments.turn(lane);
    let _turn = turn.lock().await;
    let state = escrow.lane(lane).await.map_err(chain_error)?;
    if state.deposit.is_zero() {
        return Err(ApiError::Conflict(format!(
            "this wallet has no lane to {payout}: nothing was deposited"
        )));
    }
    if let Some(requested) = state.close_requested_at {
        return Err(ApiError::Conflict(format!(
            "a close of lane {lane} was already asked; its deposit is refundable from {} (POST /v1/wallet/reclaim/finish)",
            chain_time(requested + payments.thaw().as_secs())
        )));
    }
    let open = payments.sessions_on(&lane);
    if open > 0 {
        return Err(ApiError::Conflict(format!(
            "{open} session(s) are open on lane {lane}; close them first"
        )));
    }
    let (thaw_ends_at, mined) = escrow.request_close(payout).await.map_err(chain_error)?;
    info!(%lane, thaw_ends_at, tx = %mined.tx, "lane close asked");
    Ok(ReclaimView {
        lane: lane.to_string(),
        thaw_ends_at,
        tx: mined.tx.to_string(),
        block: mined.block,
    })
}

/// After the thaw window, takes the lane's unspent deposit back.
pub(super) async fn finish_reclaim(
    payments: &Payments,
    payout: EvmAddress,
) -> Result<RefundedView, ApiError> {
    let escrow = payments.escrow();
    let lane = escrow.lane_id(payments.wallet(), payout);
    let state = escrow.lane(lane).await.map_err(chain_error)?;
    let Some(requested) = state.close_requested_at else {
        return Err(ApiError::Conflict(format!(
            "no close of lane {lane} was asked; ask with POST /v1/wallet/reclaim (`orien-node wallet reclaim --to {payout}`) and finish after the thaw window"
        )));
    };
    let ends = requested + payments.thaw().as_secs();
    let (refund, mined) = escrow.finish_close(payout).await.map_err(|e| match &e {
        ChainError::Reverted { reason, .. } if reason.contains("ThawNotOver") => {
            ApiError::Conflict(format!(
                "the thaw window of lane {lane} ends at {}; until then the provider may settle what it is owed; finish after it",
                chain_time(ends)
            ))
        }
        _ => chain_error(e),
    })?;
    info!(%lane, %refund, tx = %mined.tx, "lane deposit refunded");
    Ok(RefundedView {
        lane: lane.to_string(),
        refund: usdc_string(refund),
        tx: mined.tx.to_string(),
        block: mined.block,
    })
}

/// Every escrow lane in the ledger with its state on chain.
pub(super) async fn lane_status(
    sessions: &Sessions,
    payments: &Payments,
) -> Result<Vec<LaneStatusView>, ApiError> {
    let store = sessions.store().clone();
    let lanes = blocking(move || {
        store
            .lanes()?
            .into_iter()
            .map(|(lane, ledger)| Ok((lane, store.lane_payout(&lane)?, ledger)))
            .collect::<Result<Vec<_>, orien_ledger::StoreError>>()
    })
    .await
    .map_err(ledger_error)?;
    let me = sessions.node_id();
    let mut views = Vec::with_capacity(lanes.len());
    for (lane, payout, ledger) in lanes {
        let chain = payments.escrow().lane(lane).await.map_err(chain_error)?;
        let mut view = status_view(lane, &ledger, &chain, payments, ledger.key.renter == me);
        view.payout = payout.map(|p| p.to_string());
        views.push(view);
    }
    Ok(views)
}

fn status_view(
    lane: LaneId,
    ledger: &orien_ledger::LaneSettlement,
    chain: &LaneState,
    payments: &Payments,
    renter: bool,
) -> LaneStatusView {
    let minus = |a: Usdc, b: Usdc| Usdc::from_micros(a.micros().saturating_sub(b.micros()));
    let thaw_ends_at = chain
        .close_requested_at
        .map(|at| at + payments.thaw().as_secs());
    let close = match thaw_ends_at {
        None => LaneClose::Open,
        Some(ends) if unix_now() >= ends => LaneClose::Refundable,
        Some(_) => LaneClose::Thawing,
    };
    LaneStatusView {
        lane: lane.to_string(),
        role: if renter {
            LaneRole::Renter
        } else {
            LaneRole::Provider
        },
        renter: ledger.key.renter.to_string(),
        provider: ledger.key.provider.to_string(),
        payout: None,
        deposit: usdc_string(chain.deposit),
        acked: usdc_string(ledger.acked),
        settled: usdc_string(chain.settled),
        owed: usdc_string(minus(ledger.acked, chain.settled)),
        refundable: usdc_string(minus(chain.deposit, ledger.acked.max(chain.settled))),
        sessions_open: payments.sessions_on(&lane),
        voucher: ledger.latest_voucher.map(|v| usdc_string(v.cumulative)),
        last_tx: ledger.last_confirmed.map(|t| t.to_string()),
        close,
        thaw_ends_at,
    }
}

/// Every settlement transaction in the ledger, newest first.
pub(super) async fn settlements(
    sessions: &Sessions,
) -> Result<Vec<SettlementRecordView>, ApiError> {
    let store = sessions.store().clone();
    let mut records = blocking(move || {
        let mut records = Vec::new();
        for (lane, state) in store.lanes()? {
            let settlements = store.settlements(&lane)?;
            let slices = if settlements.is_empty() {
                Vec::new()
            } else {
                attribution::lane_slices(&store, &lane)?
            };
            for settlement in settlements {
                let block = store.settlement_block(&lane, &settlement.tx)?;
                let sessions = match settlement.status {
                    SettlementStatus::Confirmed {
                        paid_up_to,
                        previous,
                        ..
                    } => attribution::paid_per_session(&slices, previous, paid_up_to),
                    _ => Vec::new(),
                };
                records.push((state.key, settlement, block, sessions));
            }
        }
        Ok::<_, orien_ledger::StoreError>(records)
    })
    .await
    .map_err(ledger_error)?;
    records.sort_by_key(|r| std::cmp::Reverse(r.1.submitted_at));
    Ok(records
        .into_iter()
        .map(|(key, s, block, sessions)| {
            let (state, range, decided_at) = match s.status {
                SettlementStatus::Submitted => (SettlementState::Submitted, None, None),
                SettlementStatus::Confirmed {
                    paid_up_to,
                    previous,
                    ..
                } => (
                    SettlementState::Confirmed,
                    Some((previous, paid_up_to)),
                    Some(s.updated_at),
                ),
                SettlementStatus::Voided => (SettlementState::Voided, None, Some(s.updated_at)),
            };
            // The escrow splits cumulative totals: a payment's parts are the change of
            // the split of the lane's settled total (the provider's may be −1 µUSDC).
            let split = range.and_then(|(before, after)| Split::delta(before, after).ok());
            let paid = split.map_or(Usdc::ZERO, |d| d.total());
            SettlementRecordView {
                tx: s.tx.to_string(),
                lane: s.lane.to_string(),
                block: block.filter(|_| state == SettlementState::Confirmed),
                renter: key.renter.to_string(),
                provider: key.provider.to_string(),
                state,
                voucher: usdc_string(s.cumulative),
                paid: usdc_string(paid),
                provider_part: signed_usdc(split.map_or(0, |d| d.provider_micros())),
                fee_part: usdc_string(split.map_or(Usdc::ZERO, |d| d.fee())),
                reserve_part: usdc_string(split.map_or(Usdc::ZERO, |d| d.reserve())),
                paid_up_to: range.map(|(_, after)| usdc_string(after)),
                sessions: sessions
                    .into_iter()
                    .map(|(session, amount)| SessionPaidView {
                        session: session.to_string(),
                        amount: usdc_string(amount),
                    })
                    .collect(),
                submitted_at: s.submitted_at.unix_millis(),
                decided_at: decided_at.map(|t| t.unix_millis()),
            }
        })
        .collect())
}

/// Signed micro-USDC as USDC text (`-0.000001`).
fn signed_usdc(micros: i128) -> String {
    let text = usdc_string(Usdc::from_micros(
        u64::try_from(micros.unsigned_abs()).unwrap_or(u64::MAX),
    ));
    if micros < 0 { format!("-{text}") } else { text }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A chain time (Unix seconds) for people: UTC, and how far off it is.
fn chain_time(at: u64) -> String {
    let now = unix_now();
    let when = orien_protocol::Timestamp(at.saturating_mul(1000)).utc();
    if at > now {
        format!("{when} (in {} s)", at - now)
    } else {
        format!("{when} (passed)")
    }
}
