//! Lane resync: a receipt one side committed and the other never saw (a crash between
//! the two commits, an ack lost at the end of a session) leaves the two ledgers'
//! totals of a lane apart. When the next session opens, the side that is behind moves
//! its total up to what the other side proves (on escrow lanes with the renter's own
//! voucher) and records the difference as a [`Cause::LaneGap`] posting, split like the
//! receipts it stands for. Vouchers then count from the same total on both sides.

use orien_protocol::{SessionId, Usdc, Voucher};
use rocksdb::WriteBatch;
use tracing::warn;

use super::{Store, StoreError, keys};
use crate::accounts::{Account, LaneKey};
use crate::posting::{Cause, Posting};
use crate::record;
use crate::settlement::LaneSettlement;

impl Store {
    /// What this ledger has acknowledged on `lane` (the lane account's balance).
    pub fn lane_acked(&self, lane: &LaneKey) -> Result<Usdc, StoreError> {
        let balance = self.balance(&Account::Lane(*lane))?;
        Ok(balance
            .debited
            .checked_sub(balance.credited)
            .unwrap_or(Usdc::ZERO))
    }

    /// Moves this ledger's total of `lane` up to `to`, found when `session` opened, and
    /// keeps `voucher` (the renter's, for `to`) as the lane's latest. Returns the gap
    /// posted: zero when the ledger was not behind (then nothing is written).
    ///
    /// The caller has checked `voucher` (escrow lanes): its signature, lane and amount.
    pub fn resync_lane(
        &self,
        lane: LaneKey,
        session: SessionId,
        to: Usdc,
        voucher: Option<Voucher>,
    ) -> Result<Usdc, StoreError> {
        self.writable()?;
        let mut writer = self.lock_writer();
        self.record_gap(
            &mut writer,
            lane,
            session,
            Cause::LaneGap { session },
            to,
            voucher,
        )
    }

    /// Provider, when the last session open on an escrow lane ended (`session`): the
    /// receipts the lane's [`AheadVoucher`](crate::AheadVoucher) pays for beyond this
    /// ledger's total will not arrive any more (their acks were lost), so the lane moves
    /// up to that voucher, recorded as a [`Cause::LaneGapAtEnd`] posting, and settles it.
    /// Returns the gap (zero without an ahead voucher). The caller holds the lane's turn
    /// and has checked that no session is open on the lane.
    pub fn close_lane_gap(&self, lane: LaneKey, session: SessionId) -> Result<Usdc, StoreError> {
        self.writable()?;
        let Some(escrow) = lane.escrow else {
            return Ok(Usdc::ZERO);
        };
        let mut writer = self.lock_writer();
        let Some(ahead) = self.cached_ahead(&mut writer, &escrow)? else {
            return Ok(Usdc::ZERO);
        };
        let cause = Cause::LaneGapAtEnd { session };
        self.record_gap(
            &mut writer,
            lane,
            session,
            cause,
            ahead.cumulative,
            Some(ahead),
        )
    }

    fn record_gap(
        &self,
        writer: &mut super::Writer,
        lane: LaneKey,
        session: SessionId,
        cause: Cause,
        to: Usdc,
        voucher: Option<Voucher>,
    ) -> Result<Usdc, StoreError> {
        let lane_account = Account::Lane(lane);
        let balance = self.cached_balance(writer, &lane_account)?;
        let before = balance
            .debited
            .checked_sub(balance.credited)
            .unwrap_or(Usdc::ZERO);
        if to <= before {
            return Ok(Usdc::ZERO);
        }
        if voucher.is_some_and(|v| v.cumulative != to || Some(v.lane) != lane.escrow) {
            return Err(StoreError::InvalidSession {
                session,
                detail: "the resync voucher is not for the lane's new total",
            });
        }
        if self
            .db
            .get_cf(self.cf(keys::POSTINGS), keys::posting(&cause))
            .map_err(|e| StoreError::rocks("read posting", &self.path, e))?
            .is_some()
        {
            return Err(StoreError::InvalidSession {
                session,
                detail: "the lane was already resynced when this session opened",
            });
        }
        let now = self.clock.wall();
        let posting = Posting::gap(cause, session, lane, before, to, now).map_err(|_| {
            StoreError::InvalidSession {
                session,
                detail: "the lane's new total does not split",
            }
        })?;
        let mut batch = WriteBatch::default();
        let touched = self.stage_posting(writer, &mut batch, &posting, || {
            StoreError::InvalidSession {
                session,
                detail: "the lane's new total overflows",
            }
        })?;
        let mut lane_state = None;
        if let Some(escrow) = lane.escrow {
            let mut state = self
                .cached_lane(writer, &escrow)?
                .unwrap_or(LaneSettlement {
                    key: lane,
                    acked: Usdc::ZERO,
                    latest_voucher: None,
                    settled: Usdc::ZERO,
                    last_confirmed: None,
                });
            state.acked = to;
            if voucher.is_some() {
                state.latest_voucher = voucher;
            }
            // A voucher that waited above the old total is now within the new one.
            let mut ahead = self.cached_ahead(writer, &escrow)?;
            if let Some(waiting) = ahead.filter(|a| a.cumulative <= to) {
                if state
                    .latest_voucher
                    .is_none_or(|l| l.cumulative < waiting.cumulative)
                {
                    state.latest_voucher = Some(waiting);
                }
                batch.delete_cf(self.cf(keys::SETTLEMENT), keys::ahead(&escrow));
                ahead = None;
            }
            batch.put_cf(
                self.cf(keys::SETTLEMENT),
                keys::lane(&escrow),
                encode(&state)?,
            );
            lane_state = Some((escrow, state, ahead));
        }
        self.write(batch, "record lane gap")?;
        writer.balances.extend(touched);
        if let Some((escrow, state, ahead)) = lane_state {
            writer.lanes.insert(escrow, state);
            writer.aheads.insert(escrow, ahead);
        }
        let gap = Usdc::from_micros(to.micros() - before.micros());
        warn!(%lane, %session, %before, %to, %gap, "lane resynced: receipts this ledger never committed");
        Ok(gap)
    }
}

fn encode<T: record::Record>(value: &T) -> Result<Vec<u8>, StoreError> {
    record::encode(value).map_err(StoreError::Encode)
}
