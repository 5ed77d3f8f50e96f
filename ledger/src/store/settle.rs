//! The settlement API: what the chain client reports back into the ledger.

use orien_protocol::{EvmAddress, LaneId, Usdc};
use rocksdb::WriteBatch;
use tracing::info;

use super::{Store, StoreError, keys};
use crate::posting::{Cause, Posting};
use crate::record;
use crate::settlement::{
    LanePayout, LaneSettlement, MinedAt, Settlement, SettlementStatus, SkipKind, SkippedVoucher,
    TxHash, UnsettledVoucher,
};

impl Store {
    /// Records that transaction `tx` was sent to settle `lane` up to the voucher amount
    /// `cumulative`. Idempotent. Nothing is posted until the chain confirms.
    pub fn settlement_submitted(
        &self,
        lane: LaneId,
        tx: TxHash,
        cumulative: Usdc,
    ) -> Result<(), StoreError> {
        self.writable()?;
        let mut writer = self.lock_writer();
        let state = self
            .cached_lane(&mut writer, &lane)?
            .ok_or(StoreError::UnknownLane(lane))?;
        if cumulative > state.acked {
            return Err(settle_err(
                lane,
                tx,
                format!("submitted {cumulative}, but only {} was acked", state.acked),
            ));
        }
        if let Some(existing) = self.settlement(&lane, &tx)? {
            return if existing.cumulative == cumulative {
                Ok(())
            } else {
                Err(settle_err(
                    lane,
                    tx,
                    format!("already recorded for {}", existing.cumulative),
                ))
            };
        }
        let now = self.clock.wall();
        let record = Settlement {
            lane,
            tx,
            cumulative,
            status: SettlementStatus::Submitted,
            submitted_at: now,
            updated_at: now,
        };
        let mut batch = WriteBatch::default();
        batch.put_cf(
            self.cf(keys::SETTLEMENT),
            keys::settlement(&lane, &tx),
            encode(&record)?,
        );
        self.write(batch, "record settlement")?;
        info!(%lane, %tx, %cumulative, "settlement submitted");
        Ok(())
    }

    /// Records that `tx` is confirmed and the chain has now paid `lane` up to
    /// `paid_up_to` (cumulative; what the escrow's event reports, which may be less than
    /// the voucher if the deposit ran short). Posts `Split::delta(settled, paid_up_to)`
    /// from the accrual accounts into the settled ones, with `tx` on the posting, and
    /// returns that posting. Idempotent for the same `(tx, paid_up_to)`; `tx` need not
    /// have been submitted through this store (reconciliation from chain events).
    pub fn settlement_confirmed(
        &self,
        lane: LaneId,
        tx: TxHash,
        paid_up_to: Usdc,
    ) -> Result<Posting, StoreError> {
        self.writable()?;
        let mut writer = self.lock_writer();
        let mut state = self
            .cached_lane(&mut writer, &lane)?
            .ok_or(StoreError::UnknownLane(lane))?;
        let existing = self.settlement(&lane, &tx)?;
        if let Some(Settlement {
            status:
                SettlementStatus::Confirmed {
                    paid_up_to: p,
                    previous,
                    ..
                },
            ..
        }) = existing
        {
            if p != paid_up_to {
                return Err(settle_err(
                    lane,
                    tx,
                    format!("already confirmed up to {p}, not {paid_up_to}"),
                ));
            }
            let round = self.confirmed_round(&tx)?;
            return Posting::settlement(
                tx,
                round,
                state.key,
                previous,
                p,
                false,
                self.clock.wall(),
            )
            .map_err(|e| settle_err(lane, tx, e.to_string()));
        }
        // A voided transaction confirmed again (a reorg re-mined it): a new round, so the
        // earlier confirmation and its reversal stay in the postings as they were.
        let round = match existing {
            Some(Settlement {
                status: SettlementStatus::Voided,
                ..
            }) => self.next_round(&tx)?,
            _ => 0,
        };
        if paid_up_to <= state.settled {
            return Err(settle_err(
                lane,
                tx,
                format!(
                    "pays up to {paid_up_to}, but {} is already settled",
                    state.settled
                ),
            ));
        }
        if paid_up_to > state.acked {
            return Err(settle_err(
                lane,
                tx,
                format!(
                    "pays up to {paid_up_to}, but only {} was acked",
                    state.acked
                ),
            ));
        }
        let now = self.clock.wall();
        let posting =
            Posting::settlement(tx, round, state.key, state.settled, paid_up_to, false, now)
                .map_err(|e| settle_err(lane, tx, e.to_string()))?;
        let record = Settlement {
            lane,
            tx,
            cumulative: existing.map_or(paid_up_to, |s| s.cumulative),
            status: SettlementStatus::Confirmed {
                paid_up_to,
                previous: state.settled,
                previous_tx: state.last_confirmed,
            },
            submitted_at: existing.map_or(now, |s| s.submitted_at),
            updated_at: now,
        };
        state.settled = paid_up_to;
        state.last_confirmed = Some(tx);
        self.commit_settlement(&mut writer, lane, state, record, &posting)?;
        info!(%lane, %tx, %paid_up_to, "settlement confirmed");
        Ok(posting)
    }

    /// Records that `tx` no longer pays: reverted, dropped, or reorganised away. A
    /// submitted one is simply marked void; a confirmed one has its posting reversed and
    /// must be the lane's latest confirmed settlement (undo reorgs newest first).
    pub fn settlement_voided(&self, lane: LaneId, tx: TxHash) -> Result<(), StoreError> {
        self.writable()?;
        let mut writer = self.lock_writer();
        let mut state = self
            .cached_lane(&mut writer, &lane)?
            .ok_or(StoreError::UnknownLane(lane))?;
        let mut record = self
            .settlement(&lane, &tx)?
            .ok_or_else(|| settle_err(lane, tx, "unknown transaction".into()))?;
        let now = self.clock.wall();
        match record.status {
            SettlementStatus::Voided => return Ok(()),
            SettlementStatus::Submitted => {
                record.status = SettlementStatus::Voided;
                record.updated_at = now;
                let mut batch = WriteBatch::default();
                batch.put_cf(
                    self.cf(keys::SETTLEMENT),
                    keys::settlement(&lane, &tx),
                    encode(&record)?,
                );
                self.write(batch, "void settlement")?;
            }
            SettlementStatus::Confirmed {
                paid_up_to,
                previous,
                previous_tx,
            } => {
                if state.last_confirmed != Some(tx) {
                    return Err(settle_err(
                        lane,
                        tx,
                        format!(
                            "is not the latest confirmed settlement ({:?}); void newer ones first",
                            state.last_confirmed
                        ),
                    ));
                }
                let round = self.confirmed_round(&tx)?;
                let posting =
                    Posting::settlement(tx, round, state.key, previous, paid_up_to, true, now)
                        .map_err(|e| settle_err(lane, tx, e.to_string()))?;
                record.status = SettlementStatus::Voided;
                record.updated_at = now;
                state.settled = previous;
                state.last_confirmed = previous_tx;
                self.commit_settlement(&mut writer, lane, state, record, &posting)?;
            }
        }
        info!(%lane, %tx, "settlement voided");
        Ok(())
    }

    /// The round of `tx`'s current confirmation: the highest re-confirmation posted, or
    /// 0 for the first.
    fn confirmed_round(&self, tx: &TxHash) -> Result<u32, StoreError> {
        Ok(self.next_round(tx)?.saturating_sub(1))
    }

    /// The first round whose confirmation is not posted yet (1 after the first
    /// confirmation, which is round 0).
    fn next_round(&self, tx: &TxHash) -> Result<u32, StoreError> {
        let mut round = 1;
        while self
            .db
            .get_cf(
                self.cf(keys::POSTINGS),
                keys::posting(&Cause::SettlementAgain { tx: *tx, round }),
            )
            .map_err(|e| StoreError::rocks("read posting", &self.path, e))?
            .is_some()
        {
            round += 1;
        }
        Ok(round)
    }

    /// Records the block `tx`, a confirmed settlement of `lane`, was mined in.
    /// Idempotent; a re-mined transaction records its new block.
    pub fn settlement_mined_at(
        &self,
        lane: LaneId,
        tx: TxHash,
        block: u64,
    ) -> Result<(), StoreError> {
        self.writable()?;
        let mut batch = WriteBatch::default();
        batch.put_cf(
            self.cf(keys::SETTLEMENT),
            keys::settlement_block(&lane, &tx),
            encode(&MinedAt { block })?,
        );
        self.write(batch, "record settlement block")
    }

    /// Records that `lane`, which this node funded, pays `payout`.
    pub fn lane_payout_funded(&self, lane: LaneId, payout: EvmAddress) -> Result<(), StoreError> {
        self.writable()?;
        let mut batch = WriteBatch::default();
        batch.put_cf(
            self.cf(keys::SETTLEMENT),
            keys::lane_payout(&lane),
            encode(&LanePayout { payout })?,
        );
        self.write(batch, "record lane payout")
    }

    /// The payout address of a lane this node funded (`None`: it funded none such).
    pub fn lane_payout(&self, lane: &LaneId) -> Result<Option<EvmAddress>, StoreError> {
        Ok(self
            .get::<LanePayout>(keys::SETTLEMENT, &keys::lane_payout(lane))?
            .map(|p| p.payout))
    }

    /// The block a settlement was mined in, when recorded.
    pub fn settlement_block(&self, lane: &LaneId, tx: &TxHash) -> Result<Option<u64>, StoreError> {
        Ok(self
            .get::<MinedAt>(keys::SETTLEMENT, &keys::settlement_block(lane, tx))?
            .map(|m| m.block))
    }

    /// One settlement transaction, if recorded.
    pub fn settlement(&self, lane: &LaneId, tx: &TxHash) -> Result<Option<Settlement>, StoreError> {
        self.get(keys::SETTLEMENT, &keys::settlement(lane, tx))
    }

    /// The settlement state of an escrow lane, if any receipt used it.
    pub fn lane_settlement(&self, lane: &LaneId) -> Result<Option<LaneSettlement>, StoreError> {
        self.get(keys::SETTLEMENT, &keys::lane(lane))
    }

    /// Every settlement transaction of a lane.
    pub fn settlements(&self, lane: &LaneId) -> Result<Vec<Settlement>, StoreError> {
        let mut prefix = vec![1u8];
        prefix.extend_from_slice(lane.as_bytes());
        Ok(self
            .scan_prefix(keys::SETTLEMENT, &prefix)?
            .into_iter()
            .map(|(_, s)| s)
            .collect())
    }

    /// Every escrow lane a receipt used, with its settlement state.
    pub fn lanes(&self) -> Result<Vec<(LaneId, LaneSettlement)>, StoreError> {
        let lanes: Vec<(Vec<u8>, LaneSettlement)> = self.scan_prefix(keys::SETTLEMENT, &[0u8])?;
        Ok(lanes
            .into_iter()
            .filter_map(|(key, state)| {
                let id: [u8; 32] = key.get(1..33)?.try_into().ok()?;
                Some((LaneId::from_bytes(id), state))
            })
            .collect())
    }

    /// Records that the escrow skipped `lane`'s voucher for `cumulative` in `tx`: it is
    /// not listed as unsettled again until a newer voucher arrives, or for an exhausted
    /// lane until [`lane_funded`](Self::lane_funded).
    pub fn voucher_skipped(
        &self,
        lane: LaneId,
        cumulative: Usdc,
        kind: SkipKind,
        tx: TxHash,
    ) -> Result<(), StoreError> {
        self.writable()?;
        let record = SkippedVoucher {
            cumulative,
            kind,
            tx,
        };
        let mut batch = WriteBatch::default();
        batch.put_cf(
            self.cf(keys::SETTLEMENT),
            keys::skipped(&lane),
            encode(&record)?,
        );
        self.write(batch, "record skipped voucher")?;
        info!(%lane, %cumulative, ?kind, %tx, "the escrow skipped a voucher; not resubmitting it");
        Ok(())
    }

    /// The renter funded `lane` again: a voucher skipped for an exhausted deposit may pay
    /// now.
    pub fn lane_funded(&self, lane: LaneId) -> Result<(), StoreError> {
        self.writable()?;
        if let Some(SkippedVoucher {
            kind: SkipKind::Exhausted,
            ..
        }) = self.skipped_voucher(&lane)?
        {
            let mut batch = WriteBatch::default();
            batch.delete_cf(self.cf(keys::SETTLEMENT), keys::skipped(&lane));
            self.write(batch, "clear skipped voucher")?;
        }
        Ok(())
    }

    /// The voucher of `lane` the escrow last skipped, if any.
    pub fn skipped_voucher(&self, lane: &LaneId) -> Result<Option<SkippedVoucher>, StoreError> {
        self.get(keys::SETTLEMENT, &keys::skipped(lane))
    }

    /// Settlement transactions submitted and neither confirmed nor voided yet.
    pub fn pending_settlements(&self) -> Result<Vec<Settlement>, StoreError> {
        Ok(self
            .scan_prefix::<Settlement>(keys::SETTLEMENT, &[1u8])?
            .into_iter()
            .map(|(_, s)| s)
            .filter(|s| s.status == SettlementStatus::Submitted)
            .collect())
    }

    /// The next block reconciliation scans, as last recorded.
    pub fn reconcile_cursor(&self) -> Result<Option<u64>, StoreError> {
        let found = self
            .db
            .get_cf(self.cf(keys::META), keys::RECONCILE_CURSOR)
            .map_err(|e| StoreError::rocks("read reconcile cursor", &self.path, e))?;
        Ok(found.and_then(|b| {
            <[u8; 8]>::try_from(b.as_slice())
                .ok()
                .map(u64::from_be_bytes)
        }))
    }

    /// Records the next block reconciliation scans.
    pub fn set_reconcile_cursor(&self, next_block: u64) -> Result<(), StoreError> {
        self.writable()?;
        let mut batch = WriteBatch::default();
        batch.put_cf(
            self.cf(keys::META),
            keys::RECONCILE_CURSOR,
            next_block.to_be_bytes(),
        );
        self.write(batch, "record reconcile cursor")
    }

    /// For every escrow lane whose latest voucher the chain has not paid in full (and
    /// has not skipped): that voucher, what is settled, and the transactions still
    /// pending. What a provider submits next.
    pub fn unsettled_vouchers(&self) -> Result<Vec<UnsettledVoucher>, StoreError> {
        let lanes: Vec<(Vec<u8>, LaneSettlement)> = self.scan_prefix(keys::SETTLEMENT, &[0u8])?;
        let mut out = Vec::new();
        for (key, state) in lanes {
            let Some(voucher) = state.latest_voucher else {
                continue;
            };
            if voucher.cumulative <= state.settled {
                continue;
            }
            let lane = LaneId::from_bytes(
                key.get(1..33)
                    .and_then(|k| k.try_into().ok())
                    .unwrap_or([0; 32]),
            );
            if self
                .skipped_voucher(&lane)?
                .is_some_and(|s| s.cumulative >= voucher.cumulative)
            {
                continue;
            }
            let pending = self
                .settlements(&lane)?
                .into_iter()
                .filter(|s| s.status == SettlementStatus::Submitted)
                .map(|s| (s.tx, s.cumulative))
                .collect();
            out.push(UnsettledVoucher {
                lane,
                key: state.key,
                voucher,
                settled: state.settled,
                pending,
            });
        }
        Ok(out)
    }

    fn commit_settlement(
        &self,
        writer: &mut super::Writer,
        lane: LaneId,
        state: LaneSettlement,
        record: Settlement,
        posting: &Posting,
    ) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        let touched = self.stage_posting(writer, &mut batch, posting, || {
            settle_err(lane, record.tx, "balance overflow".into())
        })?;
        batch.put_cf(
            self.cf(keys::SETTLEMENT),
            keys::settlement(&lane, &record.tx),
            encode(&record)?,
        );
        batch.put_cf(
            self.cf(keys::SETTLEMENT),
            keys::lane(&lane),
            encode(&state)?,
        );
        self.write(batch, "commit settlement")?;
        writer.balances.extend(touched);
        writer.lanes.insert(lane, state);
        Ok(())
    }
}

fn settle_err(lane: LaneId, tx: TxHash, detail: String) -> StoreError {
    StoreError::Settlement { lane, tx, detail }
}

fn encode<T: record::Record>(value: &T) -> Result<Vec<u8>, StoreError> {
    record::encode(value).map_err(StoreError::Encode)
}
