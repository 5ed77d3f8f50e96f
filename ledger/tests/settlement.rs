//! Settlement state on a real store: submitted, confirmed (postings into the settled
//! accounts with the transaction hash), voided (reversed), and the unsettled vouchers.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod support;

use orien_ledger::{Account, Cause, SettlementStatus, StoreError, TxHash};
use orien_protocol::{LaneId, SessionId, Split, Usdc};
use support::chain::{ChainBuilder, escrow, parties, session_record};
use support::temp_store;

fn usdc(m: u64) -> Usdc {
    Usdc::from_micros(m)
}

#[test]
fn settlement_moves_the_paid_split_into_settled_accounts_and_a_void_reverses_it() {
    let t = temp_store();
    let p = parties();
    let lane = LaneId::from_bytes([0x11; 32]);
    let session = SessionId::random();
    t.store
        .open_session(session_record(session, &p, escrow(lane), usdc(10_000_000)))
        .unwrap();
    let mut chain = ChainBuilder::new(session, Some(lane));
    for step in [99, 1, 250, 1_000] {
        t.store.ingest(chain.next(&p, step)).unwrap();
    }
    let key = t.store.session(&session).unwrap().unwrap().lane();

    let unsettled = t.store.unsettled_vouchers().unwrap();
    assert_eq!(unsettled.len(), 1);
    assert_eq!(
        (
            unsettled[0].lane,
            unsettled[0].voucher.cumulative,
            unsettled[0].settled
        ),
        (lane, usdc(1_350), Usdc::ZERO)
    );

    // Submit and confirm a settlement of everything but the last receipt.
    let tx1 = TxHash([1; 32]);
    t.store.settlement_submitted(lane, tx1, usdc(350)).unwrap();
    t.store.settlement_submitted(lane, tx1, usdc(350)).unwrap(); // idempotent
    assert_eq!(
        t.store.unsettled_vouchers().unwrap()[0].pending,
        vec![(tx1, usdc(350))]
    );
    let posting = t.store.settlement_confirmed(lane, tx1, usdc(350)).unwrap();
    assert_eq!(posting.cause, Cause::Settlement { tx: tx1 });
    let split = Split::of(usdc(350));
    let net = |a: Account| t.store.balance(&a).unwrap().net(&a);
    assert_eq!(
        net(Account::SettledProvider(key)),
        i128::from(split.provider().micros())
    );
    assert_eq!(net(Account::SettledFee), i128::from(split.fee().micros()));
    assert_eq!(
        net(Account::SettledReserve),
        i128::from(split.reserve().micros())
    );
    let total = Split::of(usdc(1_350));
    assert_eq!(
        net(Account::Earnings(key)),
        i128::from(total.provider().micros() - split.provider().micros())
    );
    t.store.verify().unwrap();

    // Settle the rest, then a reorg drops that transaction.
    let tx2 = TxHash([2; 32]);
    t.store
        .settlement_confirmed(lane, tx2, usdc(1_350))
        .unwrap();
    assert!(t.store.unsettled_vouchers().unwrap().is_empty());
    assert_eq!(net(Account::Earnings(key)), 0);
    // The older one cannot be voided before the newer one.
    assert!(matches!(
        t.store.settlement_voided(lane, tx1),
        Err(StoreError::Settlement { .. })
    ));
    t.store.settlement_voided(lane, tx2).unwrap();
    assert_eq!(
        t.store.settlement(&lane, &tx2).unwrap().unwrap().status,
        SettlementStatus::Voided
    );
    assert_eq!(
        t.store.lane_settlement(&lane).unwrap().unwrap().settled,
        usdc(350)
    );
    assert_eq!(t.store.unsettled_vouchers().unwrap()[0].settled, usdc(350));
    assert_eq!(
        net(Account::SettledProvider(key)),
        i128::from(split.provider().micros())
    );
    t.store.verify().unwrap();

    // The reorg re-mines the same transaction: it confirms again (a new round), and may
    // flip once more; every round stays in the postings and the books stay exact.
    for round in 1..=2u32 {
        let posting = t
            .store
            .settlement_confirmed(lane, tx2, usdc(1_350))
            .unwrap();
        assert_eq!(posting.cause, Cause::SettlementAgain { tx: tx2, round });
        assert_eq!(net(Account::Earnings(key)), 0);
        assert!(t.store.unsettled_vouchers().unwrap().is_empty());
        t.store.verify().unwrap();
        if round == 1 {
            t.store.settlement_voided(lane, tx2).unwrap();
            assert_eq!(
                t.store.lane_settlement(&lane).unwrap().unwrap().settled,
                usdc(350)
            );
            t.store.verify().unwrap();
        }
    }
    let settled_total = Split::of(usdc(1_350));
    assert_eq!(
        net(Account::SettledFee),
        i128::from(settled_total.fee().micros())
    );
}

#[test]
fn a_settlement_cannot_pay_more_than_was_acked_or_go_backwards() {
    let t = temp_store();
    let p = parties();
    let lane = LaneId::from_bytes([0x12; 32]);
    let session = SessionId::random();
    t.store
        .open_session(session_record(session, &p, escrow(lane), usdc(10_000_000)))
        .unwrap();
    let mut chain = ChainBuilder::new(session, Some(lane));
    t.store.ingest(chain.next(&p, 1_000)).unwrap();
    let tx = TxHash([3; 32]);
    assert!(matches!(
        t.store.settlement_confirmed(lane, tx, usdc(1_001)),
        Err(StoreError::Settlement { .. })
    ));
    assert!(matches!(
        t.store.settlement_submitted(lane, tx, usdc(1_001)),
        Err(StoreError::Settlement { .. })
    ));
    t.store.settlement_confirmed(lane, tx, usdc(600)).unwrap();
    t.store.settlement_confirmed(lane, tx, usdc(600)).unwrap(); // idempotent
    assert!(matches!(
        t.store
            .settlement_confirmed(lane, TxHash([4; 32]), usdc(600)),
        Err(StoreError::Settlement { .. })
    ));
    assert!(matches!(
        t.store
            .settlement_confirmed(LaneId::from_bytes([0; 32]), tx, usdc(1)),
        Err(StoreError::UnknownLane(_))
    ));
    t.store.verify().unwrap();
}

#[test]
fn settling_just_below_a_multiple_of_100_leaves_earnings_at_minus_one_and_verify_accepts_it() {
    let t = temp_store();
    let p = parties();
    let lane = LaneId::from_bytes([0x13; 32]);
    let session = SessionId::random();
    t.store
        .open_session(session_record(session, &p, escrow(lane), usdc(10_000_000)))
        .unwrap();
    let mut chain = ChainBuilder::new(session, Some(lane));
    t.store.ingest(chain.next(&p, 99)).unwrap();
    t.store
        .settlement_confirmed(lane, TxHash([5; 32]), usdc(99))
        .unwrap();
    t.store.ingest(chain.next(&p, 1)).unwrap();
    let key = t.store.session(&session).unwrap().unwrap().lane();
    let earnings = Account::Earnings(key);
    assert_eq!(t.store.balance(&earnings).unwrap().net(&earnings), -1);
    t.store.verify().unwrap();
    t.store
        .settlement_confirmed(lane, TxHash([6; 32]), usdc(100))
        .unwrap();
    assert_eq!(t.store.balance(&earnings).unwrap().net(&earnings), 0);
    t.store.verify().unwrap();
}

#[test]
fn a_voucher_that_does_not_name_the_lane_total_is_refused() {
    let t = temp_store();
    let p = parties();
    let lane = LaneId::from_bytes([0x14; 32]);
    let session = SessionId::random();
    t.store
        .open_session(session_record(session, &p, escrow(lane), usdc(10_000_000)))
        .unwrap();
    // A chain built for another lane carries vouchers for the wrong lane id.
    let mut wrong = ChainBuilder::new(session, Some(LaneId::from_bytes([0x15; 32])));
    assert!(matches!(
        t.store.ingest(wrong.next(&p, 10)),
        Err(StoreError::BadAck { .. })
    ));
    // A ledger-paid chain has no voucher: accepted, the voucher is optional.
    let mut none = ChainBuilder::new(session, None);
    t.store.ingest(none.next(&p, 10)).unwrap();
    assert_eq!(
        t.store
            .lane_settlement(&lane)
            .unwrap()
            .unwrap()
            .latest_voucher,
        None
    );
    t.store.verify().unwrap();
}

/// Two sessions on one escrow lane: the escrow splits the lane's cumulative total, and
/// floors of a sum are not sums of floors (7 % of 150 + 7 % of 150 = 10 + 10, of 300 =
/// 21). The ledger posts each receipt on the lane's total, so settling the lane's
/// voucher moves exactly what was accrued, and nothing goes negative.
#[test]
fn sessions_sharing_a_lane_accrue_the_split_of_the_lane_total() {
    let t = temp_store();
    let p = parties();
    let lane = LaneId::from_bytes([0x22; 32]);
    let mut base = 0;
    for amount in [150, 150, 33] {
        let session = SessionId::random();
        t.store
            .open_session(session_record(session, &p, escrow(lane), usdc(10_000_000)))
            .unwrap();
        let mut chain = ChainBuilder::new(session, Some(lane));
        chain.lane_base = base;
        t.store.ingest(chain.next(&p, amount)).unwrap();
        base += amount;
    }
    let net = |a: Account| t.store.balance(&a).unwrap().net(&a);
    let lane_total = Split::of(usdc(333));
    assert_eq!(
        net(Account::ProtocolFee),
        i128::from(lane_total.fee().micros())
    );
    assert_eq!(
        net(Account::Reserve),
        i128::from(lane_total.reserve().micros())
    );
    t.store.verify().unwrap();

    let tx = TxHash([3; 32]);
    t.store.settlement_confirmed(lane, tx, usdc(333)).unwrap();
    assert_eq!(net(Account::ProtocolFee), 0);
    assert_eq!(net(Account::Reserve), 0);
    assert_eq!(
        net(Account::SettledFee),
        i128::from(lane_total.fee().micros())
    );
    assert_eq!(
        net(Account::SettledReserve),
        i128::from(lane_total.reserve().micros())
    );
    assert!(t.store.unsettled_vouchers().unwrap().is_empty());
    t.store.verify().unwrap();
}

#[test]
fn a_settlements_block_is_kept_beside_it_and_the_ledger_still_verifies() {
    let t = temp_store();
    let p = parties();
    let lane = LaneId::from_bytes([0x21; 32]);
    let session = SessionId::random();
    t.store
        .open_session(session_record(session, &p, escrow(lane), usdc(10_000_000)))
        .unwrap();
    let mut chain = ChainBuilder::new(session, Some(lane));
    t.store.ingest(chain.next(&p, 500)).unwrap();
    let tx = TxHash([7; 32]);
    t.store.settlement_confirmed(lane, tx, usdc(500)).unwrap();
    assert_eq!(t.store.settlement_block(&lane, &tx).unwrap(), None);
    t.store.settlement_mined_at(lane, tx, 1_234).unwrap();
    t.store.settlement_mined_at(lane, tx, 1_234).unwrap(); // idempotent
    assert_eq!(t.store.settlement_block(&lane, &tx).unwrap(), Some(1_234));
    // A re-mined transaction keeps its new block.
    t.store.settlement_mined_at(lane, tx, 1_240).unwrap();
    assert_eq!(t.store.settlement_block(&lane, &tx).unwrap(), Some(1_240));
    // The block sits beside the settlements: they and the lanes read as before.
    assert_eq!(t.store.settlements(&lane).unwrap().len(), 1);
    assert_eq!(t.store.lanes().unwrap().len(), 1);
    t.store.verify().unwrap();

    // So does the payout of a lane this node funded.
    let payout = orien_protocol::EvmAddress::from_bytes([0x5a; 20]);
    assert_eq!(t.store.lane_payout(&lane).unwrap(), None);
    t.store.lane_payout_funded(lane, payout).unwrap();
    assert_eq!(t.store.lane_payout(&lane).unwrap(), Some(payout));
    assert_eq!(t.store.settlements(&lane).unwrap().len(), 1);
    assert_eq!(t.store.lanes().unwrap().len(), 1);
    t.store.verify().unwrap();
}
