//! A bounded, stable-toolchain fuzz run over every decoder of stored records.
//!
//! `ledger/fuzz` holds the coverage-guided cargo-fuzz targets; this test drives the same
//! entry points ([`orien_ledger::fuzzing::DECODERS`]) with random bytes and with
//! mutations of real records read back from a real store, so every `scripts/test` run
//! fuzzes a little. `ORIEN_FUZZ_ITERS` sets the iterations per decoder (default 2,000).
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod support;

use orien_ledger::fuzzing::DECODERS;
use orien_protocol::{LaneId, SessionId, Usdc};
use support::chain::{ChainBuilder, Rng, escrow, parties, session_record};

/// Every value stored by a store that saw receipts, a settlement and a conflict.
fn seeds() -> Vec<Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = orien_ledger::Store::open(dir.path()).unwrap();
        let p = parties();
        let lane = LaneId::from_bytes([5; 32]);
        let session = SessionId::from_bytes([6; 16]);
        store
            .open_session(session_record(
                session,
                &p,
                escrow(lane),
                Usdc::from_micros(1_000_000),
            ))
            .unwrap();
        let mut chain = ChainBuilder::new(session, Some(lane));
        for step in [99, 1, 1_000] {
            store.ingest(chain.next(&p, step)).unwrap();
        }
        let mut fork = ChainBuilder::new(session, Some(lane));
        let _ = store.ingest(fork.next(&p, 5));
        store
            .settlement_submitted(lane, orien_ledger::TxHash([1; 32]), Usdc::from_micros(100))
            .unwrap();
        store
            .settlement_confirmed(lane, orien_ledger::TxHash([1; 32]), Usdc::from_micros(100))
            .unwrap();
    }
    let opts = rocksdb::Options::default();
    let cfs = rocksdb::DB::list_cf(&opts, dir.path()).unwrap();
    let db = rocksdb::DB::open_cf_for_read_only(&opts, dir.path(), &cfs, false).unwrap();
    let mut seeds = Vec::new();
    for cf in &cfs {
        let handle = db.cf_handle(cf).unwrap();
        for item in db.iterator_cf(handle, rocksdb::IteratorMode::Start) {
            let (k, v) = item.unwrap();
            seeds.push(k.into_vec());
            seeds.push(v.into_vec());
        }
    }
    assert!(seeds.len() > 20);
    seeds
}

fn mutate(rng: &mut Rng, input: &mut Vec<u8>) {
    let len = input.len() as u64;
    match rng.below(5) {
        0 if len > 0 => {
            let i = rng.below(len) as usize;
            input[i] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let i = rng.below(len) as usize;
            input[i] = rng.next() as u8;
        }
        2 if len > 0 => input.truncate(rng.below(len) as usize),
        3 => {
            let i = rng.below(len + 1) as usize;
            input.insert(i, rng.next() as u8);
        }
        _ => input.extend((0..rng.below(64)).map(|_| rng.next() as u8)),
    }
}

#[test]
fn every_stored_record_decoder_survives_random_and_mutated_input() {
    let iterations: usize = std::env::var("ORIEN_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let seeds = seeds();
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    let mut runs = 0usize;
    for (_, decode) in DECODERS {
        for seed in &seeds {
            decode(seed);
        }
        for i in 0..iterations {
            let mut input = if i % 4 == 0 {
                (0..rng.below(512)).map(|_| rng.next() as u8).collect()
            } else {
                seeds[rng.below(seeds.len() as u64) as usize].clone()
            };
            for _ in 0..=rng.below(4) {
                mutate(&mut rng, &mut input);
            }
            decode(&input);
            runs += 1;
        }
    }
    assert_eq!(runs, DECODERS.len() * iterations);
}

#[test]
fn real_records_decode_with_their_own_decoder() {
    // Each seed is accepted by at least one decoder: the targets cover what is stored.
    let seeds = seeds();
    let kinds: usize = seeds
        .iter()
        .filter(|s| {
            orien_ledger::record::decode::<orien_ledger::Posting>(s).is_ok()
                || orien_ledger::record::decode::<orien_ledger::Balance>(s).is_ok()
                || orien_ledger::record::decode::<orien_ledger::receipts::StoredReceipt>(s).is_ok()
        })
        .count();
    assert!(kinds >= 3);
}
