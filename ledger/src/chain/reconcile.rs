//! Bringing the chain's settlements into the ledger store, and the store's unsettled
//! vouchers onto the chain.
//!
//! The off-chain ledger is the source of truth for what is owed, the chain for what was
//! paid. [`Reconciler::settle_pending`] submits the latest voucher of every lane the store
//! knows as unpaid, recording each settlement ([`Store::settlement_submitted`]) once the
//! transaction is signed and before it is sent, so a crash or an RPC timeout at any later
//! point leaves a record to resolve; vouchers the escrow skips are recorded
//! ([`Store::voucher_skipped`]) and not sent again. [`Reconciler::poll`] resolves the
//! settlements still pending (mined, reverted, or unknown to the chain), then reads the
//! escrow's events from where it last stopped (the cursor is kept in the store; the first
//! run starts at the escrow's deployment block) once they have the configured
//! confirmations: `VoucherSettled` is recorded with [`Store::settlement_confirmed`], which
//! posts the paid split with the transaction hash; `LaneFunded` makes an exhausted lane's
//! voucher payable again; `LaneCloseRequested` is reported, for the provider to settle
//! that lane at once. Before scanning further it re-checks the block hashes of the
//! settlements it confirmed: one whose block was reorganised away is voided
//! ([`Store::settlement_voided`], newest first) and its blocks are scanned again, so a
//! re-mined transaction is confirmed again and a dropped one is submitted again.
//!
//! Store calls are synchronous RocksDB writes of a few milliseconds; they run inline.

use std::collections::VecDeque;

use orien_protocol::{LaneId, NodeId, Usdc, Voucher};
use tracing::{info, instrument, warn};

use super::bindings::OrienEscrow;
use super::convert::{b256_to_lane, usdc_from_u128};
use super::error::ChainError;
use super::escrow::{EscrowClient, MAX_SETTLE_BATCH};
use super::outcome::{BatchSettlement, SettlementTx, SkipReason};
use crate::settlement::{SettlementStatus, SkipKind, TxHash, UnsettledVoucher};
use crate::store::{Store, StoreError};

/// Blocks scanned per `eth_getLogs` request.
const LOG_RANGE: u64 = 2_000;
/// Confirmed settlements remembered for reorg detection.
const REORG_MEMORY: usize = 4_096;

/// Errors of reconciliation.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// Talking to the chain failed.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The store refused or failed a write.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What one [`Reconciler::poll`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Settlements recorded as confirmed: lane, transaction, cumulative amount paid.
    pub confirmed: Vec<(LaneId, TxHash, Usdc)>,
    /// Settlements voided because their block was reorganised away.
    pub voided: Vec<(LaneId, TxHash)>,
    /// Settlement events the store refused, with its reason (for example a transaction
    /// that pays more than the store saw acknowledged). Reported, not retried.
    pub refused: Vec<(LaneId, TxHash, String)>,
    /// Settlement events of lanes this store does not know (other providers' lanes).
    pub foreign: usize,
    /// Lanes of this store whose renter asked to close them, with the end of the thaw
    /// window (unix seconds): settle them now.
    pub close_requested: Vec<(LaneId, u64)>,
    /// Pending settlements voided because the chain reverted or does not know them.
    pub dropped: Vec<(LaneId, TxHash)>,
    /// The last block scanned.
    pub scanned_to: Option<u64>,
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    block: u64,
    block_hash: [u8; 32],
    lane: LaneId,
    tx: TxHash,
}

/// Follows one escrow contract for one store.
#[derive(Debug)]
pub struct Reconciler {
    escrow: EscrowClient,
    next_block: u64,
    seen: VecDeque<Seen>,
}

impl Reconciler {
    /// A reconciler that scans from `from_block` (the escrow's deployment block, or the
    /// [`next_block`](Self::next_block) persisted by a previous run).
    pub fn new(escrow: EscrowClient, from_block: u64) -> Self {
        Self {
            escrow,
            next_block: from_block,
            seen: VecDeque::new(),
        }
    }

    /// A reconciler that resumes where `store` says the last one stopped, or scans from
    /// the escrow's deployment block the first time, so no event is missed.
    pub async fn resume(escrow: EscrowClient, store: &Store) -> Result<Self, ReconcileError> {
        let from = match store.reconcile_cursor()? {
            Some(next) => next,
            None => escrow.deployment_block().await?,
        };
        info!(from, "reconciliation resumes");
        Ok(Self::new(escrow, from))
    }

    /// The first block the next [`poll`](Self::poll) scans; persist it to resume.
    pub fn next_block(&self) -> u64 {
        self.next_block
    }

    /// Submits the latest voucher of every lane the store lists as not paid in full (and
    /// with no transaction pending), in batches of at most [`MAX_SETTLE_BATCH`], and
    /// records what each batch paid. The escrow client's wallet must be the provider's.
    #[instrument(skip_all, fields(provider = %self.escrow.wallet_address()))]
    pub async fn settle_pending(
        &mut self,
        store: &Store,
    ) -> Result<Vec<BatchSettlement>, ReconcileError> {
        self.settle_where(store, |_| true).await
    }

    /// [`settle_pending`](Self::settle_pending) for the lanes on which `provider` is the
    /// provider: a node that also rents holds the vouchers it signed, which the escrow
    /// refuses from anyone but the lane's provider.
    pub async fn settle_provided(
        &mut self,
        store: &Store,
        provider: &NodeId,
    ) -> Result<Vec<BatchSettlement>, ReconcileError> {
        self.settle_where(store, |u| u.key.provider == *provider)
            .await
    }

    /// [`settle_pending`](Self::settle_pending) for one lane only (a lane whose renter
    /// asked to close it).
    pub async fn settle_lane(
        &mut self,
        store: &Store,
        lane: LaneId,
    ) -> Result<Vec<BatchSettlement>, ReconcileError> {
        self.settle_where(store, |u| u.lane == lane).await
    }

    async fn settle_where(
        &mut self,
        store: &Store,
        keep: impl Fn(&UnsettledVoucher) -> bool,
    ) -> Result<Vec<BatchSettlement>, ReconcileError> {
        let vouchers: Vec<Voucher> = store
            .unsettled_vouchers()?
            .into_iter()
            .filter(|u| u.pending.is_empty() && keep(u))
            .map(|u| u.voucher)
            .collect();
        let mut batches = Vec::new();
        for chunk in vouchers.chunks(MAX_SETTLE_BATCH) {
            // Recorded before a byte is sent: a crash after this point leaves a record.
            let mut not_recorded = None;
            let sent = self
                .escrow
                .settle_batch_recorded(chunk, |tx| {
                    let tx = TxHash(tx.0);
                    for voucher in chunk {
                        if let Err(e) =
                            store.settlement_submitted(voucher.lane, tx, voucher.cumulative)
                        {
                            not_recorded = Some(e);
                            return Err(ChainError::Unexpected(
                                "not sent: the ledger could not record the settlement".into(),
                            ));
                        }
                    }
                    Ok(())
                })
                .await;
            if let Some(e) = not_recorded {
                return Err(e.into());
            }
            let batch = sent?;
            self.record_batch(store, &batch, |_| true)?;
            batches.push(batch);
        }
        Ok(batches)
    }

    /// Records what a mined settlement paid and skipped, for the lanes `mine` selects.
    fn record_batch(
        &mut self,
        store: &Store,
        batch: &BatchSettlement,
        mine: impl Fn(&LaneId) -> bool,
    ) -> Result<(), ReconcileError> {
        let tx = TxHash(batch.mined.tx.0);
        for settled in batch.settled.iter().filter(|s| mine(&s.lane)) {
            store.settlement_confirmed(settled.lane, tx, settled.settled)?;
            keep_block(store, settled.lane, tx, batch.mined.block);
            self.remember(Seen {
                block: batch.mined.block,
                block_hash: batch.mined.block_hash,
                lane: settled.lane,
                tx,
            });
        }
        for skipped in batch.skipped.iter().filter(|s| mine(&s.lane)) {
            warn!(lane = %skipped.lane, reason = ?skipped.reason, "the escrow skipped a voucher");
            let kind = match skipped.reason {
                SkipReason::InvalidVoucher => SkipKind::Invalid,
                SkipReason::Stale => SkipKind::Stale,
                SkipReason::Exhausted => SkipKind::Exhausted,
            };
            store.voucher_skipped(skipped.lane, skipped.cumulative, kind, tx)?;
            store.settlement_voided(skipped.lane, tx)?;
        }
        Ok(())
    }

    /// Resolves every settlement recorded as submitted and not yet confirmed: a mined one
    /// is recorded, a reverted or unknown one (dropped, or never sent) voided so its
    /// voucher is submitted again.
    async fn resolve_pending(
        &mut self,
        store: &Store,
        report: &mut Reconciled,
    ) -> Result<(), ReconcileError> {
        for pending in store.pending_settlements()? {
            match self.escrow.settlement_status(pending.tx).await? {
                SettlementTx::Mined(batch) => {
                    let lane = pending.lane;
                    self.record_batch(store, &batch, |l| *l == lane)?;
                    if store
                        .settlement(&pending.lane, &pending.tx)?
                        .is_some_and(|s| s.status == SettlementStatus::Submitted)
                    {
                        // Mined without a word about this lane: it paid nothing.
                        store.settlement_voided(pending.lane, pending.tx)?;
                    }
                }
                SettlementTx::Pending => {}
                SettlementTx::Reverted | SettlementTx::Unknown => {
                    warn!(lane = %pending.lane, tx = %pending.tx, "a submitted settlement never paid; voiding it");
                    store.settlement_voided(pending.lane, pending.tx)?;
                    report.dropped.push((pending.lane, pending.tx));
                }
            }
        }
        Ok(())
    }

    /// Voids settlements whose blocks were reorganised away, then records every
    /// `VoucherSettled` event with enough confirmations that was not seen yet.
    #[instrument(skip_all, fields(escrow = %self.escrow.address(), from = self.next_block))]
    pub async fn poll(&mut self, store: &Store) -> Result<Reconciled, ReconcileError> {
        let mut report = Reconciled::default();
        self.undo_reorgs(store, &mut report).await?;
        self.resolve_pending(store, &mut report).await?;

        let head = self.escrow.block_number().await?;
        let confirmations = self.escrow.confirmations();
        let Some(safe) = (head + 1).checked_sub(confirmations) else {
            return Ok(report);
        };
        while self.next_block <= safe {
            let to = safe.min(self.next_block + LOG_RANGE - 1);
            for (at, event) in self.escrow.events(self.next_block, to).await? {
                if at.removed {
                    continue;
                }
                let event = match event {
                    OrienEscrow::OrienEscrowEvents::VoucherSettled(event) => event,
                    OrienEscrow::OrienEscrowEvents::LaneCloseRequested(event) => {
                        let lane = b256_to_lane(event.laneId);
                        if store.lane_settlement(&lane)?.is_some() {
                            warn!(%lane, thaw_ends_at = event.thawEndsAt, "the renter asked to close a lane");
                            report.close_requested.push((lane, event.thawEndsAt));
                        }
                        continue;
                    }
                    OrienEscrow::OrienEscrowEvents::LaneFunded(event) => {
                        let lane = b256_to_lane(event.laneId);
                        if store.lane_settlement(&lane)?.is_some() {
                            store.lane_funded(lane)?;
                        }
                        continue;
                    }
                    _ => continue,
                };
                let lane = b256_to_lane(event.laneId);
                let tx = TxHash(at.tx);
                let paid_up_to = usdc_from_u128(event.settled)?;
                if store.lane_settlement(&lane)?.is_none() {
                    report.foreign += 1;
                    continue;
                }
                match store.settlement_confirmed(lane, tx, paid_up_to) {
                    Ok(_) => {
                        keep_block(store, lane, tx, at.block);
                        report.confirmed.push((lane, tx, paid_up_to));
                        self.remember(Seen {
                            block: at.block,
                            block_hash: at.block_hash,
                            lane,
                            tx,
                        });
                    }
                    Err(StoreError::Settlement { detail, .. }) => {
                        warn!(%lane, %tx, %detail, "the store refused a chain settlement");
                        report.refused.push((lane, tx, detail));
                    }
                    Err(other) => return Err(other.into()),
                }
            }
            report.scanned_to = Some(to);
            self.next_block = to + 1;
            store.set_reconcile_cursor(self.next_block)?;
        }
        if !report.confirmed.is_empty() || !report.voided.is_empty() {
            info!(
                confirmed = report.confirmed.len(),
                voided = report.voided.len(),
                refused = report.refused.len(),
                "reconciled chain settlements"
            );
        }
        Ok(report)
    }

    async fn undo_reorgs(
        &mut self,
        store: &Store,
        report: &mut Reconciled,
    ) -> Result<(), ReconcileError> {
        while let Some(last) = self.seen.back().copied() {
            if self.escrow.block_hash(last.block).await? == Some(last.block_hash) {
                // Blocks form a chain: if the newest one is still canonical, so are the rest.
                break;
            }
            warn!(lane = %last.lane, tx = %last.tx, block = last.block, "settlement reorganised away");
            store.settlement_voided(last.lane, last.tx)?;
            report.voided.push((last.lane, last.tx));
            self.next_block = self.next_block.min(last.block);
            store.set_reconcile_cursor(self.next_block)?;
            self.seen.pop_back();
        }
        Ok(())
    }

    fn remember(&mut self, seen: Seen) {
        if self
            .seen
            .iter()
            .any(|s| s.tx == seen.tx && s.lane == seen.lane && s.block_hash == seen.block_hash)
        {
            return;
        }
        if self.seen.len() == REORG_MEMORY {
            self.seen.pop_front();
        }
        self.seen.push_back(seen);
    }
}

/// Keeps the block a confirmed settlement was mined in, for its history (the money is
/// already recorded; a failure here only loses the block number).
fn keep_block(store: &Store, lane: LaneId, tx: TxHash, block: u64) {
    if let Err(e) = store.settlement_mined_at(lane, tx, block) {
        warn!(%lane, %tx, error = %e, "cannot record a settlement's block");
    }
}
