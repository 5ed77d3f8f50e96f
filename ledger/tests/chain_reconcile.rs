//! The ledger store and the chain agree: receipts acknowledged with real EIP-712 vouchers
//! are ingested into a RocksDB store on disk, the provider settles them on a real anvil, and
//! chain events are reconciled back, with a reorganisation (anvil snapshot/revert) voiding
//! a confirmed settlement until it is settled again.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod chain_support;

use std::sync::Arc;

use chain_support::{Actor, USDC, World, funded_lane};
use orien_ledger::chain::Reconciler;
use orien_ledger::{Account, AckedReceipt, LaneKey, SessionRecord, Store, StoreOptions};
use orien_protocol::{
    LaneId, ManualClock, Millis, NodeKey, PaymentLane, Pricing, ReceiptAck, ReceiptHash, SessionId,
    Timestamp, UsageReceipt, Usdc,
};

/// 1 µUSDC per millisecond of session time, executions free: amount = session ms.
const PRICING: Pricing = Pricing {
    session_per_minute: Usdc::from_micros(60_000),
    exec_per_minute: Usdc::from_micros(0),
    artefact_per_gib: Usdc::ZERO,
};

/// One session on the escrow lane renter → provider, receipts acknowledged with vouchers
/// that the provider verifies before they go into its store.
struct Session {
    id: SessionId,
    provider_key: NodeKey,
    renter_key: NodeKey,
    lane: LaneId,
    seq: u64,
    prev: ReceiptHash,
    amount: u64,
}

impl Session {
    fn open(store: &Store, world: &World, renter: &Actor, provider: &Actor) -> Self {
        let provider_key = NodeKey::from_secret_bytes([0x50; 32]);
        let renter_key = NodeKey::from_secret_bytes([0x52; 32]);
        let lane = world.escrow.lane_id(renter.address(), provider.address());
        let id = SessionId::random();
        store
            .open_session(SessionRecord {
                session: id,
                provider: provider_key.node_id(),
                renter: renter_key.node_id(),
                payment: PaymentLane::Escrow {
                    chain_id: world.escrow.domain().chain_id(),
                    contract: world.escrow.address(),
                    lane,
                    renter_wallet: renter.address(),
                },
                pricing: PRICING,
                budget: Usdc::from_micros(100 * USDC),
                opened_at: Timestamp(1_763_856_000_000),
            })
            .unwrap();
        Self {
            id,
            provider_key,
            renter_key,
            lane,
            seq: 0,
            prev: ReceiptHash::GENESIS,
            amount: 0,
        }
    }

    fn key(&self) -> LaneKey {
        LaneKey {
            renter: self.renter_key.node_id(),
            provider: self.provider_key.node_id(),
            escrow: Some(self.lane),
        }
    }

    /// The next receipt, `step` µUSDC later, acknowledged with a voucher and ingested.
    fn receipt(&mut self, store: &Store, renter: &Actor, provider: &Actor, step: u64) {
        let before = Usdc::from_micros(self.amount);
        self.seq += 1;
        self.amount += step;
        let receipt = UsageReceipt {
            session: self.id,
            seq: self.seq,
            session_time: Millis(self.amount),
            exec_time: Millis(self.amount / 2),
            cpu_time: Millis(self.amount / 4),
            exec_amount: Usdc::from_micros(self.amount / 2),
            amount: Usdc::from_micros(self.amount),
            prev: self.prev,
            issued_at: Timestamp(1_763_856_000_000 + self.amount),
            results: orien_protocol::ResultsCommitment::NONE,
            artefact_amount: Usdc::ZERO,
        };
        let receipt = self.provider_key.sign(&receipt).unwrap();
        self.prev = receipt.receipt_hash();
        let voucher = renter
            .escrow
            .sign_voucher(provider.address(), Usdc::from_micros(self.amount));
        // The provider checks the voucher before serving more.
        provider
            .escrow
            .domain()
            .verify_next(
                &voucher,
                renter.address(),
                provider.address(),
                before,
                Usdc::from_micros(self.amount),
            )
            .unwrap();
        let ack = ReceiptAck {
            session: self.id,
            seq: self.seq,
            receipt: self.prev,
            voucher: Some(voucher),
        };
        let ack = self.renter_key.sign(&ack).unwrap();
        store.ingest(AckedReceipt { receipt, ack }).unwrap();
    }
}

fn settled(store: &Store, account: Account) -> i128 {
    store.balance(&account).unwrap().net(&account)
}

/// The store's settled accounts equal the escrow's balances to the micro-USDC.
async fn assert_store_matches_chain(store: &Store, world: &World, provider: &Actor, key: LaneKey) {
    let earnings = world.escrow.earnings(provider.address()).await.unwrap();
    let (fees, reserves) = world.escrow.protocol_balances().await.unwrap();
    assert_eq!(
        settled(store, Account::SettledProvider(key)),
        i128::from(earnings.balance.micros())
    );
    assert_eq!(
        settled(store, Account::SettledFee),
        i128::from(fees.micros())
    );
    assert_eq!(
        settled(store, Account::SettledReserve),
        i128::from(reserves.micros())
    );
}

#[tokio::test]
async fn chain_settlements_reconcile_into_the_store_and_a_reorg_voids_them() {
    let (world, provider, renter) = funded_lane(50).await;
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp(1_763_856_000_000));
    let store = Store::open_with(
        dir.path(),
        StoreOptions {
            clock: Arc::new(clock.clone()),
            ..StoreOptions::default()
        },
    )
    .unwrap();
    let mut session = Session::open(&store, &world, &renter, &provider);
    let deployed_at = world.escrow.block_number().await.unwrap();
    let mut reconciler = Reconciler::new(provider.escrow.clone(), deployed_at.saturating_sub(10));

    // Receipts of a session, one of them the 1 µUSDC step onto a multiple of 100.
    for step in [1_234, 65, 1, 5_000, 98, 1] {
        session.receipt(&store, &renter, &provider, step);
    }
    let batches = reconciler.settle_pending(&store).await.unwrap();
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0].paid().micros(), session.amount);
    let report = reconciler.poll(&store).await.unwrap();
    assert_eq!(report.confirmed.len(), 1);
    assert_eq!(report.refused, vec![]);
    let first_paid = session.amount;
    assert_eq!(
        store
            .lane_settlement(&session.lane)
            .unwrap()
            .unwrap()
            .settled
            .micros(),
        first_paid
    );
    assert_store_matches_chain(&store, &world, &provider, session.key()).await;

    // More receipts, settled in a block that a reorganisation then removes.
    let snapshot = world.anvil.snapshot().await.unwrap();
    for step in [777, 23] {
        session.receipt(&store, &renter, &provider, step);
    }
    reconciler.settle_pending(&store).await.unwrap();
    reconciler.poll(&store).await.unwrap();
    assert_eq!(
        store
            .lane_settlement(&session.lane)
            .unwrap()
            .unwrap()
            .settled
            .micros(),
        session.amount
    );
    world.anvil.revert(snapshot).await.unwrap();
    for _ in 0..3 {
        world
            .anvil
            .advance_time(std::time::Duration::from_secs(12))
            .await
            .unwrap();
    }
    let report = reconciler.poll(&store).await.unwrap();
    assert_eq!(report.voided.len(), 1, "{report:?}");
    assert_eq!(
        store
            .lane_settlement(&session.lane)
            .unwrap()
            .unwrap()
            .settled
            .micros(),
        first_paid,
        "the voided settlement's posting is reversed"
    );
    assert_store_matches_chain(&store, &world, &provider, session.key()).await;

    // The voucher is unpaid again: settling it once more brings store and chain together.
    let batches = reconciler.settle_pending(&store).await.unwrap();
    assert_eq!(batches[0].paid().micros(), session.amount - first_paid);
    reconciler.poll(&store).await.unwrap();
    assert_store_matches_chain(&store, &world, &provider, session.key()).await;
    assert_eq!(
        store
            .lane_settlement(&session.lane)
            .unwrap()
            .unwrap()
            .settled
            .micros(),
        session.amount
    );
    assert_eq!(store.unsettled_vouchers().unwrap(), vec![]);
}

/// A store in a temporary directory.
fn open_store(dir: &std::path::Path) -> Store {
    Store::open(dir).unwrap()
}

#[tokio::test]
async fn a_settlement_sent_just_before_a_crash_is_confirmed_exactly_once_after_restart() {
    let (world, provider, renter) = funded_lane(50).await;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let mut session = Session::open(&store, &world, &renter, &provider);
    for step in [4_000, 321, 99] {
        session.receipt(&store, &renter, &provider, step);
    }
    // The node records the settlement and sends it, then dies before it hears the outcome.
    let vouchers: Vec<_> = store
        .unsettled_vouchers()
        .unwrap()
        .into_iter()
        .map(|u| u.voucher)
        .collect();
    let mut recorded = None;
    provider
        .escrow
        .settle_batch_recorded(&vouchers, |tx| {
            let tx = orien_ledger::TxHash(tx.0);
            store
                .settlement_submitted(session.lane, tx, vouchers[0].cumulative)
                .unwrap();
            recorded = Some(tx);
            Ok(())
        })
        .await
        .unwrap();
    let tx = recorded.expect("recorded before it was sent");
    drop(store);

    // After the restart: reconciliation starts at the escrow's deployment block, finds the
    // transaction and records it once; nothing is sent again.
    let store = open_store(dir.path());
    assert!(
        store.unsettled_vouchers().unwrap()[0].pending
            == vec![(tx, Usdc::from_micros(session.amount))],
        "the pending settlement keeps the lane from being settled twice"
    );
    let mut reconciler = Reconciler::resume(provider.escrow.clone(), &store)
        .await
        .unwrap();
    let report = reconciler.poll(&store).await.unwrap();
    assert_eq!(
        report.confirmed,
        vec![(session.lane, tx, Usdc::from_micros(session.amount))]
    );
    assert!(reconciler.settle_pending(&store).await.unwrap().is_empty());
    let settlements = store.settlements(&session.lane).unwrap();
    assert_eq!(settlements.len(), 1, "{settlements:?}");
    assert_store_matches_chain(&store, &world, &provider, session.key()).await;
    // A second restart scans from the cursor the first one left: still once.
    drop(reconciler);
    let mut reconciler = Reconciler::resume(provider.escrow.clone(), &store)
        .await
        .unwrap();
    assert!(reconciler.poll(&store).await.unwrap().confirmed.is_empty());
    assert_store_matches_chain(&store, &world, &provider, session.key()).await;
}

#[tokio::test]
async fn a_settlement_recorded_but_never_sent_is_voided_and_sent_again() {
    let (world, provider, renter) = funded_lane(50).await;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let mut session = Session::open(&store, &world, &renter, &provider);
    session.receipt(&store, &renter, &provider, 2_500);
    let vouchers: Vec<_> = store
        .unsettled_vouchers()
        .unwrap()
        .into_iter()
        .map(|u| u.voucher)
        .collect();
    // Recorded, then the node dies before a byte leaves.
    let failed = provider
        .escrow
        .settle_batch_recorded(&vouchers, |tx| {
            store
                .settlement_submitted(
                    session.lane,
                    orien_ledger::TxHash(tx.0),
                    vouchers[0].cumulative,
                )
                .unwrap();
            Err(orien_ledger::chain::ChainError::Unexpected(
                "crashed".into(),
            ))
        })
        .await;
    assert!(failed.is_err());
    assert!(store.unsettled_vouchers().unwrap()[0].pending.len() == 1);

    let mut reconciler = Reconciler::resume(provider.escrow.clone(), &store)
        .await
        .unwrap();
    let report = reconciler.poll(&store).await.unwrap();
    assert_eq!(report.dropped.len(), 1, "the chain never saw it: voided");
    let batches = reconciler.settle_pending(&store).await.unwrap();
    assert_eq!(batches.len(), 1, "so the voucher is sent again");
    assert_eq!(batches[0].paid().micros(), session.amount);
    assert_store_matches_chain(&store, &world, &provider, session.key()).await;
}

#[tokio::test]
async fn a_voucher_the_escrow_skips_is_not_sent_again_until_the_lane_is_funded() {
    let world = World::start().await;
    let provider = world.actor(0).await;
    let renter = world.actor(100 * USDC).await;
    // The lane holds less than the renter acknowledges.
    renter
        .escrow
        .fund(provider.address(), Usdc::from_micros(1_000))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let mut session = Session::open(&store, &world, &renter, &provider);
    session.receipt(&store, &renter, &provider, 1_500);
    let mut reconciler = Reconciler::resume(provider.escrow.clone(), &store)
        .await
        .unwrap();
    let first = reconciler.settle_pending(&store).await.unwrap();
    assert_eq!(first[0].paid().micros(), 1_000, "the deposit, no more");
    let second = reconciler.settle_pending(&store).await.unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].skipped.len(), 1, "the exhausted lane is skipped");
    assert!(
        reconciler.settle_pending(&store).await.unwrap().is_empty(),
        "and not sent again"
    );
    assert_eq!(
        store
            .skipped_voucher(&session.lane)
            .unwrap()
            .map(|s| s.kind),
        Some(orien_ledger::SkipKind::Exhausted)
    );

    // The renter funds the lane again: the voucher pays the rest.
    renter
        .escrow
        .fund(provider.address(), Usdc::from_micros(1_000))
        .await
        .unwrap();
    reconciler.poll(&store).await.unwrap();
    let third = reconciler.settle_pending(&store).await.unwrap();
    assert_eq!(third[0].paid().micros(), 500);
    reconciler.poll(&store).await.unwrap();
    assert_store_matches_chain(&store, &world, &provider, session.key()).await;
    assert_eq!(store.unsettled_vouchers().unwrap(), vec![]);
}

/// A node that also rents holds the vouchers it signed as renter; settling as provider
/// leaves them alone (the escrow would skip them as invalid from anyone but the lane's
/// provider, at the sender's gas), and settles the lanes it provides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_settles_only_the_lanes_it_provides() {
    let (world, provider, renter) = funded_lane(50).await;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut session = Session::open(&store, &world, &renter, &provider);
    session.receipt(&store, &renter, &provider, 4_321);
    let deployed_at = world.escrow.block_number().await.unwrap();

    // The renter's side of the same ledger: its own id is the lane's renter.
    let mut as_renter = Reconciler::new(renter.escrow.clone(), deployed_at.saturating_sub(10));
    let renters_id = session.key().renter;
    assert!(
        as_renter
            .settle_provided(&store, &renters_id)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store.settlements(&session.lane).unwrap().is_empty(),
        "nothing sent"
    );

    let mut as_provider = Reconciler::new(provider.escrow.clone(), deployed_at.saturating_sub(10));
    let providers_id = session.key().provider;
    let batches = as_provider
        .settle_provided(&store, &providers_id)
        .await
        .unwrap();
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0].paid().micros(), 4_321);
}
