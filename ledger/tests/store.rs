//! The RocksDB store on a real on-disk database: commits, idempotency, refusals,
//! evidence, schema versions, settlement, queries and exports.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod support;

use std::sync::Arc;

use orien_ledger::dispute::DisputeReason;
use orien_ledger::store::SCHEMA_VERSION;
use orien_ledger::{Account, CheckedReceipt, Store, StoreError};
use orien_protocol::{PaymentLane, SessionId, Split, Usdc};
use support::chain::{ChainBuilder, Parties, Rng, parties, session_record};
use support::{open, temp_store};

fn usdc(m: u64) -> Usdc {
    Usdc::from_micros(m)
}

#[test]
fn a_chain_of_receipts_posts_exactly_the_split_of_its_final_amount() {
    let t = temp_store();
    let p = parties();
    let session = SessionId::random();
    t.store
        .open_session(session_record(
            session,
            &p,
            PaymentLane::Ledger,
            usdc(10_000_000),
        ))
        .unwrap();
    let mut chain = ChainBuilder::new(session, None);
    let mut rng = Rng(7);
    for _ in 0..200 {
        let step = rng.step(chain.amount);
        let durable = t.store.ingest(chain.next(&p, step)).unwrap();
        assert!(durable.newly_applied());
    }
    let totals = t.store.session_totals(&session).unwrap();
    assert_eq!(totals.receipts, 200);
    assert_eq!(totals.amount, usdc(chain.amount));
    let split = Split::of(usdc(chain.amount));
    let lane = t.store.session(&session).unwrap().unwrap().lane();
    let bal = |a: Account| t.store.balance(&a).unwrap().net(&a);
    assert_eq!(bal(Account::Lane(lane)), i128::from(chain.amount));
    assert_eq!(
        bal(Account::Earnings(lane)),
        i128::from(split.provider().micros())
    );
    assert_eq!(bal(Account::ProtocolFee), i128::from(split.fee().micros()));
    assert_eq!(bal(Account::Reserve), i128::from(split.reserve().micros()));
    let report = t.store.verify().unwrap();
    assert_eq!(
        (report.receipts, report.postings, report.sessions),
        (200, 200, 1)
    );
    assert_eq!(
        t.store.renter_spend(&p.renter.node_id()).unwrap(),
        usdc(chain.amount)
    );
}

#[test]
fn the_same_receipt_twice_is_applied_once() {
    let t = temp_store();
    let p = parties();
    let session = SessionId::random();
    t.store
        .open_session(session_record(
            session,
            &p,
            PaymentLane::Ledger,
            usdc(1_000_000),
        ))
        .unwrap();
    let mut chain = ChainBuilder::new(session, None);
    let first = chain.next(&p, 500);
    assert!(t.store.ingest(first.clone()).unwrap().newly_applied());
    let again = t.store.ingest(first).unwrap();
    assert!(!again.newly_applied());
    assert_eq!(t.store.session_totals(&session).unwrap().amount, usdc(500));
    t.store.verify().unwrap();
}

#[test]
fn a_different_receipt_for_an_applied_seq_is_kept_as_evidence_and_not_applied() {
    let t = temp_store();
    let p = parties();
    let session = SessionId::random();
    t.store
        .open_session(session_record(
            session,
            &p,
            PaymentLane::Ledger,
            usdc(1_000_000),
        ))
        .unwrap();
    let mut honest = ChainBuilder::new(session, None);
    let mut forked = ChainBuilder::new(session, None);
    t.store.ingest(honest.next(&p, 500)).unwrap();
    let fork = forked.next(&p, 900);
    let err = t.store.ingest(fork.clone()).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Refused {
                seq: 1,
                reason: DisputeReason::Conflicting { seq: 1, .. },
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(t.store.session_totals(&session).unwrap().amount, usdc(500));
    let evidence = t.store.evidence(&session).unwrap();
    assert_eq!(evidence.len(), 1);
    assert_eq!(evidence[0].receipt, fork.receipt);
    t.store.verify().unwrap();
}

#[test]
fn receipts_that_break_the_rules_are_refused_and_change_nothing() {
    let t = temp_store();
    let p = parties();
    let session = SessionId::random();
    t.store
        .open_session(session_record(
            session,
            &p,
            PaymentLane::Ledger,
            usdc(1_000),
        ))
        .unwrap();
    let mut chain = ChainBuilder::new(session, None);
    t.store.ingest(chain.next(&p, 100)).unwrap();

    // A gap: #3 before #2.
    let mut ahead = ChainBuilder {
        seq: chain.seq + 1,
        ..ChainBuilder::new(session, None)
    };
    ahead.prev = chain.prev;
    let err = t.store.ingest(ahead.next(&p, 1)).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Refused {
                reason: DisputeReason::UnexpectedSeq {
                    expected: 2,
                    found: 3
                },
                ..
            }
        ),
        "{err}"
    );

    // A broken chain: #2 naming the wrong predecessor.
    let mut broken = ChainBuilder {
        seq: 1,
        amount: 100,
        ..ChainBuilder::new(session, None)
    };
    broken.prev = orien_protocol::ReceiptHash::from_bytes([9; 32]);
    let err = t.store.ingest(broken.next(&p, 1)).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Refused {
                reason: DisputeReason::BrokenChain { .. },
                ..
            }
        ),
        "{err}"
    );

    // Over budget.
    let mut over = ChainBuilder {
        seq: chain.seq,
        prev: chain.prev,
        amount: chain.amount,
        ..ChainBuilder::new(session, None)
    };
    let err = t.store.ingest(over.next(&p, 5_000)).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Refused {
                reason: DisputeReason::OverBudget { .. },
                ..
            }
        ),
        "{err}"
    );

    // Signed by someone else.
    let mallory = support::chain::Parties {
        provider: orien_protocol::NodeKey::from_secret_bytes([0x66; 32]),
        renter: p.renter.clone(),
    };
    let mut forged = ChainBuilder {
        seq: chain.seq,
        prev: chain.prev,
        amount: chain.amount,
        ..ChainBuilder::new(session, None)
    };
    let err = t.store.ingest(forged.next(&mallory, 1)).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Refused {
                reason: DisputeReason::BadSignature { .. },
                ..
            }
        ),
        "{err}"
    );

    // An ack by someone other than the renter.
    let mallory = support::chain::Parties {
        provider: p.provider.clone(),
        renter: orien_protocol::NodeKey::from_secret_bytes([0x67; 32]),
    };
    let mut bad_ack = ChainBuilder {
        seq: chain.seq,
        prev: chain.prev,
        amount: chain.amount,
        ..ChainBuilder::new(session, None)
    };
    assert!(matches!(
        t.store.ingest(bad_ack.next(&mallory, 1)),
        Err(StoreError::BadAck { .. })
    ));

    // Terms that make no sense are refused.
    let mut zero = session_record(SessionId::random(), &p, PaymentLane::Ledger, Usdc::ZERO);
    assert!(matches!(
        t.store.open_session(zero.clone()),
        Err(StoreError::InvalidSession { .. })
    ));
    zero.budget = usdc(1);
    zero.renter = zero.provider;
    assert!(matches!(
        t.store.open_session(zero),
        Err(StoreError::InvalidSession { .. })
    ));

    // Unknown session.
    let mut stranger = ChainBuilder::new(SessionId::random(), None);
    assert!(matches!(
        t.store.ingest(stranger.next(&p, 1)),
        Err(StoreError::UnknownSession(_))
    ));

    assert_eq!(t.store.session_totals(&session).unwrap().amount, usdc(100));
    assert_eq!(t.store.session_totals(&session).unwrap().receipts, 1);
    t.store.verify().unwrap();
    // The honest next receipt still goes in.
    t.store.ingest(chain.next(&p, 1)).unwrap();
}

#[test]
fn everything_acked_survives_a_reopen() {
    let t = temp_store();
    let p = parties();
    let session = SessionId::random();
    t.store
        .open_session(session_record(
            session,
            &p,
            PaymentLane::Ledger,
            usdc(10_000_000),
        ))
        .unwrap();
    let mut chain = ChainBuilder::new(session, None);
    for _ in 0..20 {
        t.store.ingest(chain.next(&p, 321)).unwrap();
    }
    let support::TempStore { store, clock, dir } = t;
    drop(store);
    let store = open(dir.path(), &clock);
    assert_eq!(store.session_totals(&session).unwrap().receipts, 20);
    store.verify().unwrap();
    // And the chain continues where it stopped.
    let head = store.head(&session).unwrap().unwrap();
    let mut resumed = ChainBuilder::resume(session, None, &head);
    store.ingest(resumed.next(&p, 1)).unwrap();
}

/// Rewrites the schema version of the closed database at `dir`, as another orien-node would
/// have written it.
fn write_schema_version(dir: &std::path::Path, version: u32) {
    let opts = rocksdb::Options::default();
    let cfs = rocksdb::DB::list_cf(&opts, dir).unwrap();
    let db = rocksdb::DB::open_cf(&opts, dir, &cfs).unwrap();
    let meta = db.cf_handle("meta").unwrap();
    db.put_cf(meta, b"schema_version", version.to_be_bytes())
        .unwrap();
}

#[test]
fn a_database_of_a_newer_schema_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path()).unwrap());
    write_schema_version(dir.path(), SCHEMA_VERSION + 1);
    let err = Store::open(dir.path()).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::NewerSchema { found, supported, .. }
                if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION
        ),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains(&format!("schema version {}", SCHEMA_VERSION + 1))
            && message.contains("upgrade orien-node"),
        "{message}"
    );
}

#[test]
fn a_database_of_an_older_schema_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path()).unwrap());
    write_schema_version(dir.path(), 1);
    let err = Store::open(dir.path()).unwrap_err();
    assert!(
        matches!(err, StoreError::OlderSchema { found: 1, supported, .. } if supported == SCHEMA_VERSION),
        "{err:?}"
    );
    assert!(err.to_string().contains("settle its lanes"), "{err}");
    // Refused again: the version on disk was not rewritten.
    assert!(matches!(
        Store::open(dir.path()),
        Err(StoreError::OlderSchema { found: 1, .. })
    ));
}

/// A store shared by threads, with `n` ledger-paid sessions open (its directory first:
/// keep it for as long as the store).
fn shared_store(n: usize) -> (tempfile::TempDir, Arc<Store>, Arc<Parties>, Vec<SessionId>) {
    let t = temp_store();
    let p = Arc::new(parties());
    let sessions: Vec<SessionId> = (0..n).map(|_| SessionId::random()).collect();
    for s in &sessions {
        t.store
            .open_session(session_record(
                *s,
                &p,
                PaymentLane::Ledger,
                usdc(u64::MAX / 2),
            ))
            .unwrap();
    }
    (t.dir, Arc::new(t.store), p, sessions)
}

#[test]
fn concurrent_ingests_share_synced_writes_and_all_become_durable() {
    let (_dir, store, p, sessions) = shared_store(8);
    let threads: Vec<_> = sessions
        .iter()
        .map(|s| {
            let (store, p, s) = (Arc::clone(&store), Arc::clone(&p), *s);
            std::thread::spawn(move || {
                let mut chain = ChainBuilder::new(s, None);
                for _ in 0..50 {
                    assert!(store.ingest(chain.next(&p, 10)).unwrap().newly_applied());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    for s in &sessions {
        assert_eq!(store.session_totals(s).unwrap().receipts, 50);
    }
    assert_eq!(store.verify().unwrap().receipts, 400);
}

/// A `Durable` names how many receipts went out in the synced write that committed it.
#[test]
fn a_durable_proof_names_the_size_of_its_write() {
    let (_dir, store, p, sessions) = shared_store(1);
    let mut chain = ChainBuilder::new(sessions[0], None);
    let first = chain.next(&p, 10);
    assert_eq!(store.ingest(first.clone()).unwrap().group(), 1);
    let again = store.ingest(first).unwrap();
    assert!(!again.newly_applied());
    assert_eq!(again.group(), 0, "a retry needs no write");
    let batch: Vec<_> = (0..2_500).map(|_| chain.next(&p, 10)).collect();
    let groups: Vec<u32> = store
        .ingest_many(batch, None)
        .into_iter()
        .map(|r| r.unwrap().group())
        .collect();
    let expected: Vec<u32> = [1024u32; 2048].into_iter().chain([452; 452]).collect();
    assert_eq!(groups, expected);
}

/// Sessions committing their checked receipts one at a time (as a node's session drivers
/// do) and a batch ingest share the group commit: whoever leads commits the others'
/// receipts, hands the lead on when its own are decided, and every caller gets exactly
/// its own outcomes.
#[test]
fn single_commits_and_a_batch_at_once_each_get_their_own_outcomes() {
    let (_dir, store, p, sessions) = shared_store(24);
    let (singles, batched) = sessions.split_at(16);
    let mut batch = Vec::new();
    let mut builders: Vec<ChainBuilder> = batched
        .iter()
        .map(|s| ChainBuilder::new(*s, None))
        .collect();
    for i in 0..2_400 {
        let builder = &mut builders[i % batched.len()];
        batch.push(builder.next(&p, 7));
    }
    let mut threads: Vec<std::thread::JoinHandle<()>> = singles
        .iter()
        .map(|s| {
            let (store, p, s) = (Arc::clone(&store), Arc::clone(&p), *s);
            std::thread::spawn(move || {
                let mut chain = ChainBuilder::new(s, None);
                for seq in 1..=40 {
                    let acked = chain.next(&p, 10);
                    let checked = CheckedReceipt::new(
                        acked
                            .receipt
                            .into_verified_from(&p.provider.node_id())
                            .unwrap(),
                        acked.ack.into_verified_from(&p.renter.node_id()).unwrap(),
                    );
                    let durable = store.ingest_checked(checked).unwrap();
                    assert_eq!((durable.session(), durable.seq()), (s, seq));
                    assert!(durable.newly_applied());
                    assert!((1..=1024).contains(&durable.group()));
                }
            })
        })
        .collect();
    let batch_store = Arc::clone(&store);
    threads.push(std::thread::spawn(move || {
        let expected: Vec<(SessionId, u64)> = batch
            .iter()
            .map(|a| {
                let r = a.receipt.claimed().unwrap();
                (r.session, r.seq)
            })
            .collect();
        let results = batch_store.ingest_many(batch, None);
        let got: Vec<(SessionId, u64)> = results
            .into_iter()
            .map(|r| {
                let d = r.unwrap();
                (d.session(), d.seq())
            })
            .collect();
        assert_eq!(got, expected);
    }));
    for t in threads {
        t.join().unwrap();
    }
    for s in singles {
        assert_eq!(store.session_totals(s).unwrap().receipts, 40);
    }
    for s in batched {
        assert_eq!(store.session_totals(s).unwrap().receipts, 300);
    }
    assert_eq!(store.verify().unwrap().receipts, 16 * 40 + 2_400);
}

#[test]
fn ingest_many_returns_one_result_per_receipt_in_order() {
    let t = temp_store();
    let p = parties();
    let session = SessionId::random();
    t.store
        .open_session(session_record(
            session,
            &p,
            PaymentLane::Ledger,
            usdc(u64::MAX / 2),
        ))
        .unwrap();
    let mut chain = ChainBuilder::new(session, None);
    let mut batch: Vec<_> = (0..2_500).map(|_| chain.next(&p, 3)).collect();
    // Re-sign receipt #1235 by someone else: only it is refused for its signature, and
    // everything after it for the gap it leaves.
    let content = batch[1_234].receipt.verify().unwrap();
    batch[1_234].receipt = orien_protocol::NodeKey::from_secret_bytes([0x66; 32])
        .sign(&content)
        .unwrap();
    let results = t.store.ingest_many(batch, None);
    assert_eq!(results.len(), 2_500);
    assert!(results[..1_234].iter().all(Result::is_ok));
    assert!(
        matches!(
            &results[1_234],
            Err(StoreError::Refused {
                seq: 1_235,
                reason: DisputeReason::BadSignature { .. },
                ..
            })
        ),
        "{:?}",
        results[1_234]
    );
    assert!(results[1_235..].iter().all(|r| matches!(
        r,
        Err(StoreError::Refused {
            reason: DisputeReason::UnexpectedSeq {
                expected: 1_235,
                ..
            },
            ..
        })
    )));
    assert_eq!(t.store.session_totals(&session).unwrap().receipts, 1_234);
    t.store.verify().unwrap();
}

#[test]
fn ingest_many_across_groups_and_sessions_matches_ingesting_one_by_one() {
    let p = parties();
    let forger = orien_protocol::NodeKey::from_secret_bytes([0x77; 32]);
    let sessions: Vec<SessionId> = (0..5).map(|_| SessionId::random()).collect();
    let mut builders: Vec<ChainBuilder> = sessions
        .iter()
        .map(|s| ChainBuilder::new(*s, None))
        .collect();
    // Five groups, receipts of five sessions interleaved: several verifier threads take
    // groups and may finish them out of order; results and commits must not notice.
    let mut batch: Vec<_> = (0..5_000)
        .map(|i| builders[i % 5].next(&p, 1 + i as u64 % 13))
        .collect();
    // Forged acks in three groups (three sessions stop there), and an earlier receipt
    // again at the end (an idempotent retry).
    for i in [101, 2_222, 4_003] {
        let ack = batch[i].ack.verify().unwrap();
        batch[i].ack = forger.sign(&ack).unwrap();
    }
    batch.push(batch[40].clone());

    let stores = [temp_store(), temp_store()];
    for t in &stores {
        for s in &sessions {
            t.store
                .open_session(session_record(
                    *s,
                    &p,
                    PaymentLane::Ledger,
                    usdc(u64::MAX / 2),
                ))
                .unwrap();
        }
    }
    let many = stores[0].store.ingest_many(batch.clone(), None);
    let one: Vec<_> = batch
        .into_iter()
        .map(|r| stores[1].store.ingest(r))
        .collect();
    assert_eq!(many.len(), one.len());
    for (i, (a, b)) in many.iter().zip(&one).enumerate() {
        match (a, b) {
            // The same proof; only the size of the write it went out in differs.
            (Ok(a), Ok(b)) => assert_eq!(
                (a.session(), a.seq(), a.receipt(), a.newly_applied()),
                (b.session(), b.seq(), b.receipt(), b.newly_applied()),
                "receipt {i}"
            ),
            (Err(a), Err(b)) => assert_eq!(
                std::mem::discriminant(a),
                std::mem::discriminant(b),
                "receipt {i}: {a} vs {b}"
            ),
            _ => panic!("receipt {i}: {a:?} in a batch, {b:?} one by one"),
        }
    }
    for i in [101, 2_222, 4_003] {
        assert!(
            matches!(many[i], Err(StoreError::BadAck { .. })),
            "{:?}",
            many[i]
        );
    }
    assert!(matches!(&many[5_000], Ok(d) if !d.newly_applied()));
    // Sessions 0 and 4 run to the end (1,000 each); sessions 1, 2 and 3 stop at their
    // forged ack (seq 21, 445, 801). The retry is one more `Ok`.
    let stored = 1_000 + 1_000 + 20 + 444 + 800;
    assert_eq!(many.iter().filter(|r| r.is_ok()).count(), stored + 1);
    assert_eq!(
        stores[0].store.balances().unwrap(),
        stores[1].store.balances().unwrap()
    );
    for t in &stores {
        assert_eq!(t.store.verify().unwrap().receipts, stored as u64);
    }
}

#[test]
fn a_lane_behind_the_other_sides_total_records_the_gap_and_takes_the_next_session() {
    let t = temp_store();
    let p = parties();
    let lane_id = orien_protocol::LaneId::from_bytes([0x7a; 32]);
    let first = SessionId::random();
    t.store
        .open_session(session_record(
            first,
            &p,
            support::chain::escrow(lane_id),
            usdc(1_000_000),
        ))
        .unwrap();
    let mut chain = ChainBuilder::new(first, Some(lane_id));
    t.store.ingest(chain.next(&p, 1_234)).unwrap();
    // The renter committed two more receipts this ledger never saw.
    let renter_total = chain.amount + 99 + 1;
    let key = t.store.session(&first).unwrap().unwrap().lane();
    assert_eq!(t.store.lane_acked(&key).unwrap(), usdc(chain.amount));
    let second = SessionId::random();
    let voucher = orien_protocol::Voucher {
        lane: lane_id,
        cumulative: usdc(renter_total),
        signature: orien_protocol::EvmSignature([0x1b; 65]),
    };
    let gap = t
        .store
        .resync_lane(key, second, usdc(renter_total), Some(voucher))
        .unwrap();
    assert_eq!(gap, usdc(100));
    assert_eq!(t.store.lane_acked(&key).unwrap(), usdc(renter_total));
    let state = t.store.lane_settlement(&lane_id).unwrap().unwrap();
    assert_eq!(
        (state.acked, state.latest_voucher),
        (usdc(renter_total), Some(voucher))
    );
    assert_eq!(
        t.store.resync_lane(key, second, usdc(renter_total), None),
        Ok(usdc(0)),
        "a second resync at the same total posts nothing"
    );
    // The next session's vouchers count from the resynced total.
    t.store
        .open_session(session_record(
            second,
            &p,
            support::chain::escrow(lane_id),
            usdc(1_000_000),
        ))
        .unwrap();
    let mut next = ChainBuilder::new(second, Some(lane_id));
    next.lane_base = renter_total;
    t.store.ingest(next.next(&p, 500)).unwrap();
    // The lane's postings still sum to the split of its total, gap included.
    t.store.verify().unwrap();
    let split = Split::of(usdc(renter_total + 500));
    assert_eq!(
        t.store
            .balance(&Account::ProtocolFee)
            .unwrap()
            .net(&Account::ProtocolFee),
        i128::from(split.fee().micros())
    );
}

#[test]
fn a_lane_already_at_the_other_sides_total_records_nothing() {
    let t = temp_store();
    let p = parties();
    let session = SessionId::random();
    t.store
        .open_session(session_record(
            session,
            &p,
            PaymentLane::Ledger,
            usdc(1_000_000),
        ))
        .unwrap();
    let mut chain = ChainBuilder::new(session, None);
    t.store.ingest(chain.next(&p, 700)).unwrap();
    let key = t.store.session(&session).unwrap().unwrap().lane();
    let gap = t
        .store
        .resync_lane(key, SessionId::random(), usdc(500), None)
        .unwrap();
    assert_eq!(gap, usdc(0));
    assert_eq!(t.store.postings().unwrap().len(), 1);
}

/// Two sessions on one escrow lane, with the renter's vouchers for the lane's whole total
/// (signed A1, B1, A2, B2: 100, 150, 180, 200) given the chain of each session.
struct SharedLane {
    lane: orien_protocol::LaneId,
    a: SessionId,
    b: SessionId,
    receipts: [orien_ledger::AckedReceipt; 4],
}

fn shared_lane(t: &support::TempStore) -> SharedLane {
    let p = parties();
    let lane = orien_protocol::LaneId::from_bytes([0x5e; 32]);
    let (a, b) = (SessionId::random(), SessionId::random());
    for s in [a, b] {
        t.store
            .open_session(session_record(
                s,
                &p,
                support::chain::escrow(lane),
                usdc(1_000),
            ))
            .unwrap();
    }
    let (mut ca, mut cb) = (
        ChainBuilder::new(a, Some(lane)),
        ChainBuilder::new(b, Some(lane)),
    );
    // A voucher is the lane's total when the renter signed it: the other session's
    // amount then, plus this one's.
    let a1 = ca.next(&p, 100);
    cb.lane_base = 100;
    let b1 = cb.next(&p, 50);
    ca.lane_base = 50;
    let a2 = ca.next(&p, 30);
    cb.lane_base = 130;
    let b2 = cb.next(&p, 20);
    SharedLane {
        lane,
        a,
        b,
        receipts: [a1, b1, a2, b2],
    }
}

fn voucher_of(acked: &orien_ledger::AckedReceipt) -> orien_protocol::Voucher {
    acked.ack.verify().unwrap().voucher.unwrap()
}

#[test]
fn vouchers_of_sessions_sharing_a_lane_may_arrive_in_any_order_and_the_lane_ends_exact() {
    let t = temp_store();
    let shared = shared_lane(&t);
    let [a1, b1, a2, b2] = shared.receipts.clone();
    let state = |t: &support::TempStore| {
        let s = t.store.lane_settlement(&shared.lane).unwrap().unwrap();
        let ahead = t.store.ahead_voucher(&shared.lane).unwrap();
        (
            s.acked.micros(),
            s.latest_voucher.map(|v| v.cumulative.micros()),
            ahead.map(|v| v.cumulative.micros()),
        )
    };
    // The provider hears B first: its vouchers pay for A's receipts it has not seen.
    t.store.ingest(b1).unwrap();
    assert_eq!(state(&t), (50, None, Some(150)));
    assert!(
        t.store.unsettled_vouchers().unwrap().is_empty(),
        "nothing above the acked total is ever settled"
    );
    t.store.ingest(b2).unwrap();
    assert_eq!(state(&t), (70, None, Some(200)));
    t.store.ingest(a1.clone()).unwrap();
    assert_eq!(state(&t), (170, Some(100), Some(200)));
    let unsettled = t.store.unsettled_vouchers().unwrap();
    assert_eq!(unsettled.len(), 1);
    assert_eq!(unsettled[0].voucher, voucher_of(&a1));
    t.store.ingest(a2).unwrap();
    assert_eq!(state(&t), (200, Some(200), None));
    // After a restart the caches are rebuilt from disk alike.
    let t = support::reopen(t);
    assert_eq!(state(&t), (200, Some(200), None));
    t.store.verify().unwrap();
    let split = Split::of(usdc(200));
    assert_eq!(
        t.store
            .balance(&Account::ProtocolFee)
            .unwrap()
            .net(&Account::ProtocolFee),
        i128::from(split.fee().micros())
    );
    assert_eq!(
        t.store.session_totals(&shared.a).unwrap().amount.micros()
            + t.store.session_totals(&shared.b).unwrap().amount.micros(),
        200
    );
}

#[test]
fn a_voucher_that_leaves_the_lanes_total_unpaid_is_refused_and_changes_nothing() {
    let t = temp_store();
    let p = parties();
    let shared = shared_lane(&t);
    let [a1, ..] = shared.receipts.clone();
    t.store.ingest(a1).unwrap();
    // B's first receipt with a voucher for less than the lane's total after it (150).
    let mut cb = ChainBuilder::new(shared.b, Some(shared.lane));
    cb.lane_base = 99;
    let short = cb.next(&p, 50);
    assert!(
        matches!(t.store.ingest(short), Err(StoreError::BadAck { .. })),
        "a voucher of 149 for a lane total of 150"
    );
    let s = t.store.lane_settlement(&shared.lane).unwrap().unwrap();
    assert_eq!(
        (s.acked, s.latest_voucher.map(|v| v.cumulative)),
        (usdc(100), Some(usdc(100)))
    );
    assert_eq!(t.store.head(&shared.b).unwrap().unwrap().seq, 0);
}

#[test]
fn the_renter_commits_only_a_voucher_for_exactly_its_lanes_total() {
    let t = temp_store();
    let p = parties();
    let shared = shared_lane(&t);
    let [a1, b1, ..] = shared.receipts.clone();
    let countersigned = |acked: orien_ledger::AckedReceipt| {
        orien_ledger::CheckedReceipt::countersigned(
            acked
                .receipt
                .into_verified_from(&p.provider.node_id())
                .unwrap(),
            acked.ack.into_verified_from(&p.renter.node_id()).unwrap(),
        )
    };
    // B1's voucher (150) counts A1, which this renter ledger has not committed: a turn
    // of the lane was skipped, and the ledger says so rather than keep a wrong total.
    assert!(matches!(
        t.store.ingest_checked(countersigned(b1.clone())),
        Err(StoreError::BadAck { .. })
    ));
    t.store.ingest_checked(countersigned(a1)).unwrap();
    t.store.ingest_checked(countersigned(b1)).unwrap();
    let s = t.store.lane_settlement(&shared.lane).unwrap().unwrap();
    assert_eq!(
        (s.acked, s.latest_voucher.map(|v| v.cumulative)),
        (usdc(150), Some(usdc(150)))
    );
}

#[test]
fn resyncing_an_idle_lane_to_its_ahead_voucher_settles_what_never_arrived() {
    let t = temp_store();
    let shared = shared_lane(&t);
    let [_, b1, ..] = shared.receipts.clone();
    // A1's ack never reached the provider; B1's voucher covers it.
    t.store.ingest(b1.clone()).unwrap();
    let key = t.store.session(&shared.b).unwrap().unwrap().lane();
    let ahead = t.store.ahead_voucher(&shared.lane).unwrap().unwrap();
    assert_eq!(ahead, voucher_of(&b1));
    let gap = t
        .store
        .resync_lane(key, SessionId::random(), ahead.cumulative, Some(ahead))
        .unwrap();
    assert_eq!(gap, usdc(100));
    let s = t.store.lane_settlement(&shared.lane).unwrap().unwrap();
    assert_eq!((s.acked, s.latest_voucher), (usdc(150), Some(ahead)));
    assert_eq!(t.store.ahead_voucher(&shared.lane).unwrap(), None);
    assert_eq!(t.store.unsettled_vouchers().unwrap()[0].voucher, ahead);
    let t = support::reopen(t);
    assert_eq!(t.store.ahead_voucher(&shared.lane).unwrap(), None);
    t.store.verify().unwrap();
}

#[test]
fn closing_an_idle_lanes_gap_moves_it_up_to_its_ahead_voucher_once() {
    let t = temp_store();
    let shared = shared_lane(&t);
    let [_, b1, ..] = shared.receipts.clone();
    t.store.ingest(b1.clone()).unwrap();
    let key = t.store.session(&shared.b).unwrap().unwrap().lane();
    assert_eq!(t.store.close_lane_gap(key, shared.b), Ok(usdc(100)));
    let s = t.store.lane_settlement(&shared.lane).unwrap().unwrap();
    assert_eq!(
        (s.acked, s.latest_voucher),
        (usdc(150), Some(voucher_of(&b1)))
    );
    assert_eq!(t.store.ahead_voucher(&shared.lane).unwrap(), None);
    assert_eq!(
        t.store.close_lane_gap(key, shared.b),
        Ok(usdc(0)),
        "nothing waits above the total any more"
    );
    let gaps: Vec<_> = t
        .store
        .postings()
        .unwrap()
        .into_iter()
        .filter(|p| matches!(p.cause, orien_ledger::Cause::LaneGapAtEnd { .. }))
        .collect();
    assert_eq!(gaps.len(), 1);
    t.store.verify().unwrap();
}
