//! Ingesting acknowledged receipts: validation, postings and group commit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use orien_protocol::{
    LaneId, PaymentLane, ReceiptAck, ReceiptHash, SessionId, Timestamp, UsageReceipt, Usdc,
    Voucher, wire,
};
use tracing::{debug, debug_span, warn};

use super::group::{Feed, GroupWrites};
use super::{FastMap, Store, StoreError, Writer, keys};
use crate::accounts::{Account, Balance};
use crate::dispute::{DisputeReason, Evidence, Quantity};
use crate::posting::{Posting, Side};
use crate::receipts::{AckedReceipt, CheckedReceipt, StoredReceipt, VoucherRule};
use crate::record;
use crate::session::{SessionHead, SessionRecord, SessionStatus};
use crate::settlement::{AheadVoucher, LaneSettlement};
use crate::signatures::{self, Claim};

/// Most receipts written by one synced `WriteBatch`.
pub const MAX_GROUP: usize = 1024;

/// Proof that a receipt is durably in the ledger: only the store makes one, and only
/// after the synced write that contains the receipt returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Durable {
    session: SessionId,
    seq: u64,
    receipt: ReceiptHash,
    newly_applied: bool,
    group: u32,
}

impl Durable {
    /// The session.
    pub const fn session(&self) -> SessionId {
        self.session
    }

    /// The receipt's sequence number.
    pub const fn seq(&self) -> u64 {
        self.seq
    }

    /// The receipt's hash.
    pub const fn receipt(&self) -> ReceiptHash {
        self.receipt
    }

    /// `false` when the same receipt had been applied before (an idempotent retry).
    pub const fn newly_applied(&self) -> bool {
        self.newly_applied
    }

    /// How many receipts the synced write that committed this one held (group commit),
    /// this one included; 0 for an idempotent retry, which needed no write.
    pub const fn group(&self) -> u32 {
        self.group
    }
}

/// The outcome of one ingest, as delivered to its caller.
pub type Ingested = Result<Durable, StoreError>;

/// A decoded receipt and ack with their session, waiting for their signatures' check
/// (or already checked) and a commit.
pub(crate) struct Prepared {
    acked: AckedReceipt,
    receipt: UsageReceipt,
    ack: ReceiptAck,
    hash: ReceiptHash,
    session: Arc<SessionRecord>,
    rule: VoucherRule,
}

pub(crate) type Slot = Arc<Mutex<Option<Ingested>>>;

pub(crate) struct Pending {
    item: Result<Prepared, StoreError>,
    slot: Slot,
}

impl Pending {
    /// Where its outcome goes.
    pub(crate) const fn slot(&self) -> &Slot {
        &self.slot
    }
}

/// Uncommitted changes of one group, applied to the caches only after the write.
#[derive(Default)]
struct Overlay {
    heads: FastMap<SessionId, SessionHead>,
    balances: FastMap<Account, Balance>,
    lanes: FastMap<LaneId, LaneSettlement>,
    aheads: FastMap<LaneId, Option<Voucher>>,
    receipts: FastMap<(SessionId, u64), ReceiptHash>,
}

impl Store {
    /// Validates an acked receipt, checks the counterparty's signature, and commits the
    /// receipt with its posting durably. Returns only after the synced write, so the
    /// caller may then send (renter) or accept (provider) the ack.
    ///
    /// Idempotent: the same receipt again returns `Ok` with
    /// [`Durable::newly_applied`] `false`. A *different* receipt with the same
    /// `(session, seq)` is kept as evidence and refused with
    /// [`DisputeReason::Conflicting`].
    pub fn ingest(&self, acked: AckedReceipt) -> Ingested {
        self.writable()?;
        let item = self.prepare(acked).and_then(|v| {
            v.acked
                .receipt
                .verify_from(&v.session.provider)
                .map_err(|e| {
                    refused(
                        &v,
                        DisputeReason::BadSignature {
                            detail: e.to_string(),
                        },
                    )
                })?;
            v.acked
                .ack
                .verify_from(&v.session.renter)
                .map_err(|e| bad_ack(&v, &e.to_string()))?;
            Ok(v)
        });
        self.commit_one(item)
    }

    /// Commits a receipt whose signatures this node already checked on their way in
    /// ([`CheckedReceipt`]: made by the [`Issuer`](crate::Issuer) or the
    /// [`Countersigner`](crate::Countersigner)), exactly like [`ingest`](Self::ingest)
    /// but without checking them again: only that the session's provider and renter are
    /// the ones who signed.
    pub fn ingest_checked(&self, checked: CheckedReceipt) -> Ingested {
        self.writable()?;
        let (acked, receipt, ack, rule) = checked.into_parts();
        let item = self
            .session(&receipt.session)
            .and_then(|session| session.ok_or(StoreError::UnknownSession(receipt.session)))
            .and_then(|session| {
                let prepared = Prepared {
                    hash: acked.receipt.receipt_hash(),
                    acked,
                    receipt,
                    ack,
                    session,
                    rule,
                };
                if prepared.acked.receipt.signer() != &prepared.session.provider {
                    return Err(refused(&prepared, bad_signature("receipt")));
                }
                if prepared.acked.ack.signer() != &prepared.session.renter {
                    return Err(bad_ack(
                        &prepared,
                        "the ack is not signed by the session's renter",
                    ));
                }
                Ok(prepared)
            });
        self.commit_one(item)
    }

    /// Queues one prepared receipt (or the reason it was refused) behind any others and
    /// waits for the group commit that decides it.
    fn commit_one(&self, item: Result<Prepared, StoreError>) -> Ingested {
        let slot = Slot::default();
        self.queue.push(vec![Pending {
            item,
            slot: Arc::clone(&slot),
        }]);
        self.commit_queued(&slot);
        take(&slot)
    }

    /// Ingests many acked receipts: signatures are batch-verified on all cores and the
    /// receipts are committed in synced groups of up to [`MAX_GROUP`]. One verifier
    /// thread per core takes whole groups (decode and batch verification) while this
    /// thread commits the verified groups in input order, so verification never waits
    /// on a commit and commits never wait on a barrier. Results are in input order.
    /// `local` names this node: signatures it made itself are not checked again.
    pub fn ingest_many(
        &self,
        batch: Vec<AckedReceipt>,
        local: Option<&orien_protocol::NodeId>,
    ) -> Vec<Ingested> {
        if let Err(e) = self.writable() {
            return batch.iter().map(|_| Err(e.clone())).collect();
        }
        let groups = batch.len().div_ceil(MAX_GROUP);
        let cores = signatures::cores();
        let verifiers = cores.min(groups).max(1);
        // With fewer groups than cores, each group is verified on several threads.
        let threads_per_group = (cores / verifiers).max(1);
        let mut results: Vec<Ingested> = Vec::with_capacity(batch.len());
        let feed = Feed::new(batch, verifiers);
        std::thread::scope(|scope| {
            let (tx, rx) = std::sync::mpsc::channel::<(usize, Vec<Pending>)>();
            for _ in 0..verifiers {
                let (tx, feed) = (tx.clone(), &feed);
                scope.spawn(move || {
                    while let Some((index, group)) = feed.take() {
                        let pending = self.verify_chunk(group, local, threads_per_group);
                        if tx.send((index, pending)).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(tx);
            // Stops the verifiers should this thread unwind.
            let _closed = feed.close_on_drop();
            let mut early: HashMap<usize, Vec<Pending>> = HashMap::new();
            for next in 0..groups {
                let pending = match early.remove(&next) {
                    Some(p) => p,
                    None => loop {
                        match rx.recv() {
                            Ok((index, pending)) if index == next => break pending,
                            Ok((index, pending)) => {
                                early.insert(index, pending);
                            }
                            // Every verifier is gone before this group: one of them
                            // panicked, and the scope re-raises that panic.
                            Err(_) => return,
                        }
                    },
                };
                let slots: Vec<Slot> = pending.iter().map(|p| Arc::clone(&p.slot)).collect();
                self.queue.push(pending);
                // The queue is taken in order: once its last item is decided, all are.
                if let Some(last) = slots.last() {
                    self.commit_queued(last);
                }
                results.extend(slots.iter().map(take));
                feed.committed();
            }
        });
        results
    }

    fn verify_chunk(
        &self,
        chunk: Vec<AckedReceipt>,
        local: Option<&orien_protocol::NodeId>,
        threads: usize,
    ) -> Vec<Pending> {
        let prepared: Vec<Result<Prepared, StoreError>> =
            chunk.into_iter().map(|a| self.prepare(a)).collect();
        // Which claims to check, and which prepared item each belongs to.
        let mut receipt_claims: Vec<(usize, Claim<'_, UsageReceipt>)> = Vec::new();
        let mut ack_claims: Vec<(usize, Claim<'_, ReceiptAck>)> = Vec::new();
        for (i, v) in prepared.iter().enumerate() {
            let Ok(v) = v else { continue };
            if local != Some(&v.session.provider) {
                receipt_claims.push((
                    i,
                    Claim {
                        expected: &v.session.provider,
                        signed: &v.acked.receipt,
                    },
                ));
            }
            if local != Some(&v.session.renter) {
                ack_claims.push((
                    i,
                    Claim {
                        expected: &v.session.renter,
                        signed: &v.acked.ack,
                    },
                ));
            }
        }
        let bad_receipts = check(&receipt_claims, threads);
        let bad_acks = check(&ack_claims, threads);
        prepared
            .into_iter()
            .enumerate()
            .map(|(i, item)| {
                let item = item.and_then(|v| {
                    if bad_receipts.contains(&i) {
                        Err(refused(&v, bad_signature("receipt")))
                    } else if bad_acks.contains(&i) {
                        Err(bad_ack(&v, "not signed by the renter"))
                    } else {
                        Ok(v)
                    }
                });
                Pending {
                    item,
                    slot: Slot::default(),
                }
            })
            .collect()
    }

    /// Decodes both payloads (signatures are checked by the caller).
    fn prepare(&self, acked: AckedReceipt) -> Result<Prepared, StoreError> {
        let receipt = wire::decode::<UsageReceipt>(acked.receipt.payload_bytes())
            .map_err(|e| StoreError::Malformed(e.to_string()))?;
        let ack = wire::decode::<ReceiptAck>(acked.ack.payload_bytes()).map_err(|e| {
            StoreError::BadAck {
                session: receipt.session,
                seq: receipt.seq,
                detail: e.to_string(),
            }
        })?;
        let session = self
            .session(&receipt.session)?
            .ok_or(StoreError::UnknownSession(receipt.session))?;
        let hash = acked.receipt.receipt_hash();
        // A dual-signed receipt from outside (an import, a replay): its voucher is held
        // like one received from the renter.
        Ok(Prepared {
            acked,
            receipt,
            ack,
            hash,
            session,
            rule: VoucherRule::Covering,
        })
    }

    /// Group commit (see [`CommitQueue`](super::group::CommitQueue)): returns once
    /// `mine`, the caller's last queued item, is decided, having led the commits itself
    /// if no one else did. Every queued item's caller comes here after queueing it, so
    /// nothing queued waits without a caller to lead its commit.
    fn commit_queued(&self, mine: &Slot) {
        let Some(leader) = self.queue.wait_or_lead(mine) else {
            return;
        };
        while !decided(mine) {
            let (group, deciding) = leader.take_group();
            if group.is_empty() {
                // Taken by a leader that panicked: its `Deciding` failed it.
                return;
            }
            self.commit_group(&mut self.lock_writer(), group);
            drop(deciding);
        }
    }

    fn commit_group(&self, writer: &mut Writer, group: Vec<Pending>) {
        let now = self.clock.wall();
        let mut overlay = Overlay::default();
        let mut batch = GroupWrites::default();
        let mut outcomes: Vec<(Slot, Ingested)> = Vec::with_capacity(group.len());
        for pending in group {
            let outcome = pending
                .item
                .and_then(|v| self.apply(writer, &mut overlay, &mut batch, v, now));
            outcomes.push((pending.slot, outcome));
        }
        let applied = outcomes
            .iter()
            .filter(|(_, o)| o.as_ref().is_ok_and(|d| d.newly_applied))
            .count();
        let write = if batch.is_empty() {
            Ok(())
        } else {
            self.flush_overlay(&overlay, &mut batch)
                .and_then(|()| self.write(batch.into_batch(self), "commit receipts"))
        };
        match write {
            Ok(()) => {
                debug!(receipts = applied, "group committed");
                writer.heads.extend(overlay.heads);
                writer.balances.extend(overlay.balances);
                writer.lanes.extend(overlay.lanes);
                writer.aheads.extend(overlay.aheads);
                let group = u32::try_from(applied).unwrap_or(u32::MAX);
                for (slot, mut outcome) in outcomes {
                    if let Ok(durable) = &mut outcome
                        && durable.newly_applied
                    {
                        durable.group = group;
                    }
                    fill(&slot, outcome);
                }
            }
            Err(e) => {
                warn!(error = %e, receipts = outcomes.len(), "group commit failed; nothing applied");
                for (slot, _) in outcomes {
                    fill(&slot, Err(e.clone()));
                }
            }
        }
    }

    fn flush_overlay(&self, overlay: &Overlay, batch: &mut GroupWrites) -> Result<(), StoreError> {
        for (session, head) in &overlay.heads {
            batch.put(keys::SESSIONS, keys::session_head(session), encode(head)?);
        }
        for (account, balance) in &overlay.balances {
            // Conservation of every touched account is re-asserted before it is written.
            assert!(
                balance.net(account) >= account.floor_micros(),
                "balance of {account} would be {} µUSDC",
                balance.net(account)
            );
            batch.put(keys::BALANCES, account.key(), encode(balance)?);
        }
        for (lane, state) in &overlay.lanes {
            batch.put(keys::SETTLEMENT, keys::lane(lane), encode(state)?);
        }
        for (lane, ahead) in &overlay.aheads {
            match ahead {
                Some(voucher) => batch.put(
                    keys::SETTLEMENT,
                    keys::ahead(lane),
                    encode(&AheadVoucher { voucher: *voucher })?,
                ),
                None => batch.delete(keys::SETTLEMENT, keys::ahead(lane)),
            }
        }
        Ok(())
    }

    /// Checks one receipt against the session's head and stages its writes.
    fn apply(
        &self,
        writer: &mut Writer,
        overlay: &mut Overlay,
        batch: &mut GroupWrites,
        v: Prepared,
        now: Timestamp,
    ) -> Ingested {
        let r = &v.receipt;
        let _span = debug_span!("ingest", session = %r.session, seq = r.seq).entered();
        let head = match overlay.heads.get(&r.session) {
            Some(h) => h.clone(),
            None => self.cached_head(writer, &r.session)?,
        };
        if r.seq <= head.seq {
            let applied = match overlay.receipts.get(&(r.session, r.seq)) {
                Some(h) => *h,
                None => self
                    .get::<StoredReceipt>(keys::RECEIPTS, &keys::receipt(&r.session, r.seq))?
                    .map(|s| s.acked.receipt.receipt_hash())
                    .ok_or_else(|| {
                        refused(
                            &v,
                            DisputeReason::UnexpectedSeq {
                                expected: head.seq + 1,
                                found: r.seq,
                            },
                        )
                    })?,
            };
            if applied == v.hash {
                return Ok(Durable {
                    session: r.session,
                    seq: r.seq,
                    receipt: v.hash,
                    newly_applied: false,
                    group: 0,
                });
            }
            let reason = DisputeReason::Conflicting {
                seq: r.seq,
                applied,
            };
            warn!(%applied, conflicting = %v.hash, "conflicting receipt kept as evidence");
            let evidence = Evidence {
                session: r.session,
                receipt: v.acked.receipt.clone(),
                ack: Some(v.acked.ack.clone()),
                reason: reason.clone(),
                recorded_at: now,
            };
            batch.put(
                keys::EVIDENCE,
                keys::evidence(&r.session, r.seq, v.hash.as_bytes()),
                encode(&evidence)?,
            );
            return Err(refused(&v, reason));
        }
        if let SessionStatus::Closed(_) = head.status {
            return Err(StoreError::SessionClosed(r.session));
        }
        if r.seq != head.seq + 1 {
            return Err(refused(
                &v,
                DisputeReason::UnexpectedSeq {
                    expected: head.seq + 1,
                    found: r.seq,
                },
            ));
        }
        if r.prev != head.hash {
            return Err(refused(
                &v,
                DisputeReason::BrokenChain {
                    expected: head.hash,
                    found: r.prev,
                },
            ));
        }
        for (quantity, now_value, before) in [
            (
                Quantity::SessionTime,
                r.session_time.get(),
                head.session_time.get(),
            ),
            (Quantity::ExecTime, r.exec_time.get(), head.exec_time.get()),
            (Quantity::CpuTime, r.cpu_time.get(), head.cpu_time.get()),
            (Quantity::Amount, r.amount.micros(), head.amount.micros()),
            (Quantity::Results, r.results.count, head.results),
        ] {
            if now_value < before {
                return Err(refused(&v, DisputeReason::Decreasing { quantity }));
            }
        }
        if r.amount > v.session.budget {
            return Err(refused(
                &v,
                DisputeReason::OverBudget {
                    amount: r.amount,
                    budget: v.session.budget,
                },
            ));
        }
        let ack = &v.ack;
        if ack.session != r.session || ack.seq != r.seq || ack.receipt != v.hash {
            return Err(bad_ack(&v, "acknowledges a different receipt"));
        }
        let lane = v.session.lane();
        // The lane's acked total before and after this receipt. The split is posted on
        // the lane's cumulative total — as the escrow splits each voucher's increase — so
        // the ledger's fee and reserve match the chain's to the micro-USDC even when
        // several sessions share a lane (floors of a sum are not sums of floors).
        let lane_account = Account::Lane(lane);
        let mut lane_balance = self.overlay_balance(writer, overlay, &lane_account)?;
        let over_budget = || {
            refused(
                &v,
                DisputeReason::OverBudget {
                    amount: r.amount,
                    budget: v.session.budget,
                },
            )
        };
        let lane_before = lane_balance
            .debited
            .checked_sub(lane_balance.credited)
            .ok_or_else(over_budget)?;
        let lane_after = lane_before
            .checked_add(r.amount.saturating_sub(head.amount))
            .ok_or_else(over_budget)?;
        let posting = Posting::receipt(r.session, r.seq, lane, lane_before, lane_after, now)
            .map_err(|_| {
                refused(
                    &v,
                    DisputeReason::Decreasing {
                        quantity: Quantity::Amount,
                    },
                )
            })?;
        posting.assert_balanced();

        let lane_state = match (&v.session.payment, ack.voucher) {
            (PaymentLane::Ledger, None) => None,
            (PaymentLane::Ledger, Some(_)) => {
                return Err(bad_ack(&v, "a voucher on a ledger-paid session"));
            }
            (PaymentLane::Escrow { lane: escrow, .. }, voucher) => {
                if let Some(voucher) = voucher
                    && voucher.lane != *escrow
                {
                    return Err(bad_ack(
                        &v,
                        &format!("a voucher for lane {} on {escrow}", voucher.lane),
                    ));
                }
                let mut state = match overlay.lanes.get(escrow) {
                    Some(s) => *s,
                    None => self.cached_lane(writer, escrow)?.unwrap_or(LaneSettlement {
                        key: lane,
                        acked: Usdc::ZERO,
                        latest_voucher: None,
                        settled: Usdc::ZERO,
                        last_confirmed: None,
                    }),
                };
                let ahead = match overlay.aheads.get(escrow) {
                    Some(a) => *a,
                    None => self.cached_ahead(writer, escrow)?,
                };
                state.acked = lane_after;
                let ahead = match (v.rule, voucher) {
                    (_, None) => ahead,
                    (VoucherRule::Exact, Some(voucher)) => {
                        if voucher.cumulative != lane_after {
                            return Err(bad_ack(
                                &v,
                                &format!(
                                    "voucher for {} does not match the lane's acked total {lane_after} on {escrow}",
                                    voucher.cumulative
                                ),
                            ));
                        }
                        state.latest_voucher = Some(voucher);
                        None
                    }
                    (VoucherRule::Covering, Some(voucher)) => {
                        let held = [state.latest_voucher, ahead, Some(voucher)];
                        let largest = held.iter().flatten().map(|v| v.cumulative).max();
                        if largest < Some(lane_after) {
                            return Err(bad_ack(
                                &v,
                                &format!(
                                    "the renter's vouchers pay at most {} on {escrow}, less than the lane's acked total {lane_after}",
                                    largest.unwrap_or(Usdc::ZERO)
                                ),
                            ));
                        }
                        let largest = |covered: bool| {
                            held.iter()
                                .flatten()
                                .filter(|v| (v.cumulative <= lane_after) == covered)
                                .max_by_key(|v| v.cumulative)
                                .copied()
                        };
                        state.latest_voucher = largest(true);
                        largest(false)
                    }
                };
                Some((*escrow, state, ahead))
            }
        };

        // Stage: balances, head, lane, receipt, posting.
        let mut touched = Vec::with_capacity(posting.legs.len());
        for leg in &posting.legs {
            let mut balance = if leg.account == lane_account {
                lane_balance
            } else {
                self.overlay_balance(writer, overlay, &leg.account)?
            };
            let total = match leg.side {
                Side::Debit => &mut balance.debited,
                Side::Credit => &mut balance.credited,
            };
            *total = total.checked_add(leg.amount).ok_or_else(|| {
                refused(
                    &v,
                    DisputeReason::OverBudget {
                        amount: r.amount,
                        budget: v.session.budget,
                    },
                )
            })?;
            if leg.account == lane_account {
                lane_balance = balance;
            }
            touched.push((leg.account, balance));
        }
        for (account, balance) in touched {
            overlay.balances.insert(account, balance);
        }
        let new_head = SessionHead {
            seq: r.seq,
            hash: v.hash,
            session_time: r.session_time,
            exec_time: r.exec_time,
            cpu_time: r.cpu_time,
            amount: r.amount,
            status: head.status,
            results: r.results.count,
        };
        overlay.heads.insert(r.session, new_head);
        if let Some((escrow, state, ahead)) = lane_state {
            overlay.lanes.insert(escrow, state);
            overlay.aheads.insert(escrow, ahead);
        }
        overlay.receipts.insert((r.session, r.seq), v.hash);
        let stored = StoredReceipt {
            acked: v.acked,
            committed_at: now,
        };
        batch.put(
            keys::RECEIPTS,
            keys::receipt(&r.session, r.seq),
            encode(&stored)?,
        );
        batch.put(
            keys::POSTINGS,
            keys::posting(&posting.cause),
            encode(&posting)?,
        );
        Ok(Durable {
            session: r.session,
            seq: r.seq,
            receipt: v.hash,
            newly_applied: true,
            // Set once the group's write has returned.
            group: 0,
        })
    }

    fn overlay_balance(
        &self,
        writer: &mut Writer,
        overlay: &Overlay,
        account: &Account,
    ) -> Result<Balance, StoreError> {
        match overlay.balances.get(account) {
            Some(b) => Ok(*b),
            None => self.cached_balance(writer, account),
        }
    }
}

fn check<T: orien_protocol::SignedPayload + Sync>(
    claims: &[(usize, Claim<'_, T>)],
    threads: usize,
) -> Vec<usize> {
    let only: Vec<Claim<'_, T>> = claims
        .iter()
        .map(|(_, c)| Claim {
            expected: c.expected,
            signed: c.signed,
        })
        .collect();
    match signatures::verify_all(&only, threads) {
        Ok(()) => Vec::new(),
        Err(bad) => bad.into_iter().map(|i| claims[i].0).collect(),
    }
}

fn encode<T: record::Record>(value: &T) -> Result<Vec<u8>, StoreError> {
    record::encode(value).map_err(StoreError::Encode)
}

fn refused(v: &Prepared, reason: DisputeReason) -> StoreError {
    StoreError::Refused {
        session: v.receipt.session,
        seq: v.receipt.seq,
        reason,
    }
}

fn bad_ack(v: &Prepared, detail: &str) -> StoreError {
    StoreError::BadAck {
        session: v.receipt.session,
        seq: v.receipt.seq,
        detail: detail.to_owned(),
    }
}

fn bad_signature(what: &str) -> DisputeReason {
    DisputeReason::BadSignature {
        detail: format!("the {what} is not signed by the session's provider"),
    }
}

fn fill(slot: &Slot, outcome: Ingested) {
    *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(outcome);
}

pub(crate) fn decided(slot: &Slot) -> bool {
    slot.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .is_some()
}

/// Fails `slot` if no commit decided it: the committing thread panicked. (A receipt in
/// a write that did return is then reported failed: its ack is not released, which is
/// safe; the receipt stays in the ledger and a retry finds it applied.)
pub(crate) fn fail_undecided(slot: &Slot) {
    let mut outcome = slot.lock().unwrap_or_else(PoisonError::into_inner);
    if outcome.is_none() {
        *outcome = Some(Err(panicked()));
    }
}

fn panicked() -> StoreError {
    StoreError::Io {
        op: "group commit",
        detail: "the committing thread panicked".into(),
    }
}

fn take(slot: &Slot) -> Ingested {
    slot.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take()
        .unwrap_or_else(|| Err(panicked()))
}
