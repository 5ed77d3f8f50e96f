//! Bringing the chain's settlements into the ledger store, and the store's unsettled
//! vouchers onto the chain.
//!
//! The off-chain ledger is the source of truth for what is owed, the chain for what was
//! paid. [`Reconciler::settle_pending`] submits the latest voucher of every lane the store
//! knows as unpaid; [`Reconciler::poll`] reads the escrow's `VoucherSettled` events once
//! they have the configured confirmations and records each with
//! [`Store::settlement_confirmed`], which posts the paid split with the transaction hash.
//! Before scanning further it re-checks the block hashes of the settlements it confirmed
//! recently: one whose block was reorganised away is voided
//! ([`Store::settlement_voided`], newest first) and its blocks are scanned again.
//!
//! Store calls are synchronous RocksDB writes of a few milliseconds; they run inline.

use std::collections::VecDeque;

use orien_protocol::{LaneId, Usdc, Voucher};
use tracing::{info, instrument, warn};

use super::bindings::OrienEscrow;
use super::convert::{b256_to_lane, usdc_from_u128};
use super::error::ChainError;
use super::escrow::{EscrowClient, MAX_SETTLE_BATCH};
use super::outcome::BatchSettlement;
use crate::settlement::TxHash;
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
        let vouchers: Vec<Voucher> = store
            .unsettled_vouchers()?
            .into_iter()
            .filter(|u| u.pending.is_empty())
            .map(|u| u.voucher)
            .collect();
        let mut batches = Vec::new();
        for chunk in vouchers.chunks(MAX_SETTLE_BATCH) {
            let batch = self.escrow.settle_batch(chunk).await?;
            let tx = TxHash(batch.mined.tx.0);
            for settled in &batch.settled {
                store.settlement_confirmed(settled.lane, tx, settled.settled)?;
            }
            for skipped in &batch.skipped {
                warn!(lane = %skipped.lane, reason = ?skipped.reason, "the escrow skipped a voucher");
            }
            batches.push(batch);
        }
        Ok(batches)
    }

    /// Voids settlements whose blocks were reorganised away, then records every
    /// `VoucherSettled` event with enough confirmations that was not seen yet.
    #[instrument(skip_all, fields(escrow = %self.escrow.address(), from = self.next_block))]
    pub async fn poll(&mut self, store: &Store) -> Result<Reconciled, ReconcileError> {
        let mut report = Reconciled::default();
        self.undo_reorgs(store, &mut report).await?;

        let head = self.escrow.block_number().await?;
        let confirmations = self.escrow.confirmations();
        let Some(safe) = (head + 1).checked_sub(confirmations) else {
            return Ok(report);
        };
        while self.next_block <= safe {
            let to = safe.min(self.next_block + LOG_RANGE - 1);
            for (at, event) in self.escrow.events(self.next_block, to).await? {
                let OrienEscrow::OrienEscrowEvents::VoucherSettled(event) = event else {
                    continue;
                };
                if at.removed {
                    continue;
                }
                let lane = b256_to_lane(event.laneId);
                let tx = TxHash(at.tx);
                let paid_up_to = usdc_from_u128(event.settled)?;
                if store.lane_settlement(&lane)?.is_none() {
                    report.foreign += 1;
                    continue;
                }
                match store.settlement_confirmed(lane, tx, paid_up_to) {
                    Ok(_) => {
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
            self.seen.pop_back();
        }
        Ok(())
    }

    fn remember(&mut self, seen: Seen) {
        if self.seen.len() == REORG_MEMORY {
            self.seen.pop_front();
        }
        self.seen.push_back(seen);
    }
}
