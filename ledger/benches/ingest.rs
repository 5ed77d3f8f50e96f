//! `cargo bench -p orien-ledger --bench ingest`: receipts ingested per second (the
//! counterparty's signature verified, receipt and postings durably committed with group
//! commit) beside the two physical limits measured in the same run — raw RocksDB synced
//! batches of records of the same size, and ed25519 batch verification of the same
//! signatures on all cores — and the latency of a single receipt's ack (which waits for
//! its own durable commit) beside a raw single synced put.
//!
//! A second ingest row measures the path a node's sessions take: each signature was
//! verified once on its way in (`CheckedReceipt`), and each session's driver commits its
//! receipts one at a time with `Store::ingest_checked`, concurrently with the others,
//! so the store's group commit gathers them. Its baseline is raw RocksDB written the same
//! way: the same threads, each writing its receipts' records as one synced batch per
//! receipt, gathered by RocksDB's own write group.
//!
//! Prints a JSON list of `{name, value, unit, baseline, ratio, goal}` on stdout (the
//! format `scripts/bench` merges). `ORIEN_BENCH_RECEIPTS` sets the receipt count
//! (default 100,000).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

#[path = "../tests/support/chain.rs"]
mod chain;

use std::time::{Duration, Instant};

use chain::{ChainBuilder, escrow, parties, session_record};
use ed25519_dalek::{Signature, VerifyingKey};
use orien_ledger::{AckedReceipt, CheckedReceipt, Store, record};
use orien_protocol::{LaneId, PaymentLane, SessionId, Usdc};
use serde_json::json;

const SESSIONS: usize = 64;

fn main() {
    let n: usize = std::env::var("ORIEN_BENCH_RECEIPTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let cores = std::thread::available_parallelism()
        .map(|c| c.get())
        .unwrap_or(1);
    let p = parties();

    // The workload: n receipts spread over sessions (every fourth on an escrow lane), as
    // a provider node receives them: receipts it signed, acks the renter signed.
    eprintln!("generating {n} dual-signed receipts…");
    let sessions: Vec<(SessionId, Option<LaneId>)> = (0..SESSIONS)
        .map(|i| {
            let lane = (i % 4 == 0).then(|| LaneId::from_bytes([i as u8; 32]));
            (SessionId::random(), lane)
        })
        .collect();
    let mut builders: Vec<ChainBuilder> = sessions
        .iter()
        .map(|(s, l)| ChainBuilder::new(*s, *l))
        .collect();
    let work: Vec<AckedReceipt> = (0..n)
        .map(|i| builders[i % SESSIONS].next(&p, 1 + (i as u64 % 997)))
        .collect();
    let record_len = record::encode(&orien_ledger::receipts::StoredReceipt {
        acked: work[0].clone(),
        committed_at: orien_protocol::Timestamp(0),
    })
    .unwrap()
    .len();

    // Throughput: the ledger and its two limits, measured in interleaved rounds so that
    // a noisy neighbour slows all three alike; each figure is the median of its rounds.
    let rounds: usize = std::env::var("ORIEN_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    let (mut ingest_rates, mut raw_rates, mut verify_rates) = (vec![], vec![], vec![]);
    let mut merged_rates = vec![];
    let (mut checked_rates, mut raw_concurrent_rates) = (vec![], vec![]);
    let (mut checked_cpu, mut raw_concurrent_cpu) = (vec![], vec![]);
    // Each session's receipts as its driver holds them: signatures verified on the way in.
    let checked = checked_by_session(&work, &p);
    // CPU time per receipt (all threads) of ingest, of the raw batches, of verification.
    let (mut ingest_cpu, mut raw_cpu, mut merged_cpu) = (vec![], vec![], vec![]);
    let mut store = None;
    let mut shape: Option<RecordShape> = None;
    let raw_dir = tempfile::tempdir_in(bench_dir()).unwrap();
    for round in 0..rounds {
        let (s, rate, cpu) = ingest_round(&work, &sessions, &p, round == 0);
        let (first, _) = store.get_or_insert(s);
        ingest_rates.push(rate);
        ingest_cpu.push(cpu);
        let shape = shape.get_or_insert_with(|| RecordShape::of(first, record_len));
        let (rate, cpu) = with_cpu(n, || {
            raw_round(&raw_dir.path().join(round.to_string()), n, shape)
        });
        raw_rates.push(rate);
        raw_cpu.push(cpu);
        verify_rates.push(verify_round(&work, &p, cores, |m, s, k| {
            ed25519_dalek::verify_batch(m, s, k).is_ok()
        }));
        let (rate, cpu) = with_cpu(n, || {
            verify_round(&work, &p, cores, orien_ledger::verify_batch)
        });
        merged_rates.push(rate);
        merged_cpu.push(cpu);
        let (rate, cpu) = checked_round(&checked, &sessions, &p);
        checked_rates.push(rate);
        checked_cpu.push(cpu);
        let (rate, cpu) = with_cpu(n, || {
            raw_concurrent_round(&raw_dir.path().join(format!("{round}-each")), n, shape)
        });
        raw_concurrent_rates.push(rate);
        raw_concurrent_cpu.push(cpu);
        eprintln!(
            "round {}: ledger ingest {:.0} receipts/s ({:.1} µs CPU each), raw rocksdb {:.0} receipts/s ({:.1} µs CPU each), batch verification {:.0} signatures/s ({:.0} with one term per signer, {:.1} µs CPU each) on {cores} cores",
            round + 1,
            ingest_rates[round],
            ingest_cpu[round],
            raw_rates[round],
            raw_cpu[round],
            verify_rates[round],
            merged_rates[round],
            merged_cpu[round],
        );
        eprintln!(
            "round {}: checked ingest from {SESSIONS} sessions at once {:.0} receipts/s ({:.1} µs CPU each), raw rocksdb from the same threads {:.0} receipts/s ({:.1} µs CPU each)",
            round + 1,
            checked_rates[round],
            checked_cpu[round],
            raw_concurrent_rates[round],
            raw_concurrent_cpu[round],
        );
    }
    let (store, store_dir) = store.unwrap();
    let ingest_rate = median(&mut ingest_rates);
    let raw_rate = median(&mut raw_rates);
    let verify_rate = median(&mut verify_rates);
    let merged_rate = median(&mut merged_rates);
    let checked_rate = median(&mut checked_rates);
    let raw_concurrent_rate = median(&mut raw_concurrent_rates);
    let (checked_cpu, raw_concurrent_cpu) =
        (median(&mut checked_cpu), median(&mut raw_concurrent_cpu));
    let (ingest_cpu, raw_cpu, merged_cpu) = (
        median(&mut ingest_cpu),
        median(&mut raw_cpu),
        median(&mut merged_cpu),
    );
    // Both limits need the same cores: what they allow together when each is CPU-bound.
    let shared_limit = cores as f64 * 1e6 / (raw_cpu + merged_cpu);

    // The audit (`orien-node ledger verify`) over the whole ledger beside reading every
    // byte of the same database raw, interleaved.
    let (mut audit_rates, mut scan_rates) = (vec![], vec![]);
    for _ in 0..rounds {
        let started = Instant::now();
        let report = store.verify().unwrap();
        audit_rates.push(report.receipts as f64 / started.elapsed().as_secs_f64());
        scan_rates.push(n as f64 / raw_scan(&store_dir.path().join("ledger")).as_secs_f64());
    }
    let (audit_rate, scan_rate) = (median(&mut audit_rates), median(&mut scan_rates));
    eprintln!("ledger verify {audit_rate:.0} receipts/s, raw scan {scan_rate:.0} receipts/s");

    // 4. Single-receipt ack latency: one receipt at a time, each waiting for its commit.
    let singles = (n / 50).clamp(200, 2_000);
    let (session, _) = sessions[1];
    let head = store.head(&session).unwrap().unwrap();
    let mut chain = ChainBuilder::resume(session, None, &head);
    let mut latencies = Vec::with_capacity(singles);
    for _ in 0..singles {
        let acked = chain.next(&p, 3);
        let started = Instant::now();
        store.ingest(acked).unwrap();
        latencies.push(started.elapsed());
    }
    let mut raw_latencies = Vec::with_capacity(singles);
    {
        let db = rocksdb::DB::open_default(raw_dir.path().join("single")).unwrap();
        let mut sync = rocksdb::WriteOptions::default();
        sync.set_sync(true);
        for i in 0..singles {
            let started = Instant::now();
            db.put_opt((i as u64).to_be_bytes(), vec![0x5au8; record_len], &sync)
                .unwrap();
            raw_latencies.push(started.elapsed());
        }
    }
    let (p50, p99) = (
        percentile(&mut latencies, 50),
        percentile(&mut latencies, 99),
    );
    let (raw50, raw99) = (
        percentile(&mut raw_latencies, 50),
        percentile(&mut raw_latencies, 99),
    );

    let limit = raw_rate.min(merged_rate);
    let ms = |d: Duration| d.as_secs_f64() * 1_000.0;
    let rows = json!([
        {"name": format!("receipts ingested (ack signature verified, durable group commit) vs limit = min(raw RocksDB batches of the same records, the batch verification ingest runs); medians of {rounds} interleaved rounds"),
         "value": round(ingest_rate), "unit": "receipts/s", "baseline": round(limit), "ratio": ratio(ingest_rate, limit),
         "goal": "ratio >= 0.8"},
        {"name": format!("receipts ingested as a node's sessions commit them (signatures verified once on their way in; {SESSIONS} sessions each committing one receipt at a time with `ingest_checked`, gathered by the store's group commit) vs raw RocksDB written the same way (the same {SESSIONS} threads, one synced batch per receipt of the same records, gathered by RocksDB's write group); medians of {rounds} interleaved rounds"),
         "value": round(checked_rate), "unit": "receipts/s", "baseline": round(raw_concurrent_rate), "ratio": ratio(checked_rate, raw_concurrent_rate),
         "goal": "ratio >= 0.8", "cpu_us": round3(checked_cpu), "baseline_cpu_us": round3(raw_concurrent_cpu)},
        {"name": format!("raw RocksDB synced batches of the records ingest writes (per receipt a {}-byte receipt and a {}-byte posting; per batch a head and a balance per session)", shape.as_ref().unwrap().receipt, shape.as_ref().unwrap().posting),
         "value": round(raw_rate), "unit": "receipts/s", "baseline": null, "ratio": null, "goal": null,
         "puts_per_batch": shape.as_ref().unwrap().puts_per_batch(1024)},
        {"name": format!("CPU per receipt, all threads: ingest vs raw RocksDB of the same records + the verification ingest runs (their sum bounds ingest on {cores} cores at {:.0} receipts/s)", shared_limit),
         "value": round3(ingest_cpu), "unit": "µs", "baseline": round3(raw_cpu + merged_cpu), "ratio": ratio(ingest_cpu, raw_cpu + merged_cpu), "goal": null,
         "raw_cpu_us": round3(raw_cpu), "verification_cpu_us": round3(merged_cpu), "cpu_bound_limit": round(shared_limit)},
        {"name": format!("ed25519 batch verification of the same signatures on {cores} cores (ed25519-dalek `verify_batch`: the limit the goal is measured against)"),
         "value": round(verify_rate), "unit": "signatures/s", "baseline": null, "ratio": null, "goal": null},
        {"name": format!("the same signatures batch-verified with one term per signer (what ingest runs: a session's acks share one renter key) on {cores} cores"),
         "value": round(merged_rate), "unit": "signatures/s", "baseline": round(verify_rate), "ratio": ratio(merged_rate, verify_rate), "goal": null},
        {"name": format!("full ledger verify (chains, postings, balances, lane splits) vs a raw read of every key and value of the same database; medians of {rounds}"),
         "value": round(audit_rate), "unit": "receipts/s", "baseline": round(scan_rate), "ratio": ratio(audit_rate, scan_rate), "goal": null},
        {"name": "single-receipt ack latency p50 (ingest until durable) vs raw synced put p50",
         "value": round3(ms(p50)), "unit": "ms", "baseline": round3(ms(raw50)), "ratio": ratio(ms(p50), ms(raw50)), "goal": null},
        {"name": "single-receipt ack latency p99 vs raw synced put p99",
         "value": round3(ms(p99)), "unit": "ms", "baseline": round3(ms(raw99)), "ratio": ratio(ms(p99), ms(raw99)), "goal": null},
    ]);
    println!("{}", serde_json::to_string_pretty(&rows).unwrap());
}

/// One ingest of the whole workload into a fresh store; the store (and its directory),
/// the rate and the CPU time per receipt in µs. The first round also checks the ledger with a full `verify`.
fn ingest_round(
    work: &[AckedReceipt],
    sessions: &[(SessionId, Option<LaneId>)],
    p: &chain::Parties,
    check: bool,
) -> ((Store, tempfile::TempDir), f64, f64) {
    let (store, dir) = fresh_store(sessions, p);
    let input = work.to_vec();
    let provider = p.provider.node_id();
    let started = Instant::now();
    let (results, cpu) = with_cpu(work.len(), || store.ingest_many(input, Some(&provider)));
    let rate = work.len() as f64 / started.elapsed().as_secs_f64();
    assert!(
        results.iter().all(Result::is_ok),
        "every receipt must be accepted"
    );
    if check {
        let report = store.verify().unwrap();
        assert_eq!(report.receipts as usize, work.len());
    }
    ((store, dir), rate, cpu)
}

/// A new ledger in the bench directory with the workload's sessions open.
fn fresh_store(
    sessions: &[(SessionId, Option<LaneId>)],
    p: &chain::Parties,
) -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir_in(bench_dir()).unwrap();
    let store = Store::open(dir.path().join("ledger")).unwrap();
    for (s, lane) in sessions {
        let payment = lane.map_or(PaymentLane::Ledger, escrow);
        store
            .open_session(session_record(
                *s,
                p,
                payment,
                Usdc::from_micros(u64::MAX / 2),
            ))
            .unwrap();
    }
    (store, dir)
}

/// Each session's receipts in order, their signatures verified as a node verifies them on
/// their way in (the provider signed the receipt, the renter the ack).
fn checked_by_session(work: &[AckedReceipt], p: &chain::Parties) -> Vec<Vec<CheckedReceipt>> {
    let (provider, renter) = (p.provider.node_id(), p.renter.node_id());
    let mut by_session: Vec<Vec<CheckedReceipt>> = (0..SESSIONS).map(|_| Vec::new()).collect();
    for (i, acked) in work.iter().enumerate() {
        let receipt = acked.receipt.clone().into_verified_from(&provider).unwrap();
        let ack = acked.ack.clone().into_verified_from(&renter).unwrap();
        by_session[i % SESSIONS].push(CheckedReceipt::new(receipt, ack));
    }
    by_session
}

/// The sessions' drivers at once: one thread per session commits its checked receipts
/// one at a time, each waiting for its durable commit as a driver waits before it
/// releases the ack. Returns receipts/s and the CPU time per receipt in µs.
fn checked_round(
    checked: &[Vec<CheckedReceipt>],
    sessions: &[(SessionId, Option<LaneId>)],
    p: &chain::Parties,
) -> (f64, f64) {
    let (store, _dir) = fresh_store(sessions, p);
    let n: usize = checked.iter().map(Vec::len).sum();
    let input: Vec<Vec<CheckedReceipt>> = checked.to_vec();
    let started = Instant::now();
    let ((), cpu) = with_cpu(n, || {
        std::thread::scope(|scope| {
            for receipts in input {
                let store = &store;
                scope.spawn(move || {
                    for receipt in receipts {
                        assert!(store.ingest_checked(receipt).unwrap().newly_applied());
                    }
                });
            }
        });
    });
    let rate = n as f64 / started.elapsed().as_secs_f64();
    assert_eq!(store.verify().unwrap().receipts as usize, n);
    (rate, cpu)
}

/// Raw RocksDB written as [`checked_round`] writes: one thread per session, each writing
/// one synced batch per receipt (its stored receipt, its posting, the session's head and
/// a balance), so RocksDB's write group gathers the threads' batches. Returns receipts/s.
fn raw_concurrent_round(path: &std::path::Path, n: usize, shape: &RecordShape) -> f64 {
    let db = raw_db(path);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for session in 0..SESSIONS {
            let db = &db;
            scope.spawn(move || {
                let mut sync = rocksdb::WriteOptions::default();
                sync.set_sync(true);
                for i in (session..n).step_by(SESSIONS) {
                    let mut batch = rocksdb::WriteBatch::default();
                    let key = raw_receipt_key(i);
                    batch.put(key, raw_record(shape.receipt, i as u64));
                    batch.put(
                        [&[0u8][..], &key].concat(),
                        raw_record(shape.posting, i as u64),
                    );
                    batch.put([session as u8; 17], raw_record(shape.head, i as u64));
                    batch.put([1, session as u8], raw_record(shape.balance, i as u64));
                    db.write_opt(batch, &sync).unwrap();
                }
            });
        }
    });
    n as f64 / started.elapsed().as_secs_f64()
}

/// Reads every key and value of every column family of the database at `path` (opened
/// read-only beside the live store) and returns how long it took.
fn raw_scan(path: &std::path::Path) -> Duration {
    let opts = rocksdb::Options::default();
    let families = rocksdb::DB::list_cf(&opts, path).unwrap();
    let db = rocksdb::DB::open_cf_for_read_only(&opts, path, &families, false).unwrap();
    let started = Instant::now();
    let mut bytes = 0usize;
    for family in &families {
        let cf = db.cf_handle(family).unwrap();
        for item in db.iterator_cf(cf, rocksdb::IteratorMode::Start) {
            let (key, value) = item.unwrap();
            bytes += key.len() + value.len();
        }
    }
    let elapsed = started.elapsed();
    assert!(bytes > 0, "the ledger holds data");
    elapsed
}

/// The records one ingest writes, by size: per receipt its stored receipt and its posting;
/// per synced batch one head and one balance per session the batch touches.
struct RecordShape {
    receipt: usize,
    posting: usize,
    head: usize,
    balance: usize,
}

impl RecordShape {
    /// Measured on a ledger the workload was ingested into.
    fn of(store: &Store, receipt: usize) -> Self {
        let postings = store.postings().unwrap();
        let posting = postings
            .iter()
            .map(|p| record::encode(p).unwrap().len())
            .sum::<usize>()
            / postings.len();
        let (_, head) = store.sessions().unwrap().swap_remove(0);
        let (_, balance) = store.balances().unwrap().swap_remove(0);
        Self {
            receipt,
            posting,
            head: record::encode(&head).unwrap().len(),
            balance: record::encode(&balance).unwrap().len(),
        }
    }

    fn puts_per_batch(&self, receipts: usize) -> usize {
        2 * receipts + 2 * SESSIONS.min(receipts)
    }
}

/// Raw RocksDB: synced batches of the same records ingest writes (see [`RecordShape`]),
/// keyed as the ledger keys them, 1,024 receipts' worth per batch. Returns receipts/s.
fn raw_round(path: &std::path::Path, n: usize, shape: &RecordShape) -> f64 {
    let db = raw_db(path);
    let mut sync = rocksdb::WriteOptions::default();
    sync.set_sync(true);
    let started = Instant::now();
    for chunk in 0..n.div_ceil(1024) {
        let mut batch = rocksdb::WriteBatch::default();
        let receipts = chunk * 1024..((chunk + 1) * 1024).min(n);
        for i in receipts.clone() {
            let key = raw_receipt_key(i);
            batch.put(key, raw_record(shape.receipt, i as u64));
            batch.put(
                [&[0u8][..], &key].concat(),
                raw_record(shape.posting, i as u64),
            );
        }
        for session in 0..SESSIONS.min(receipts.len()) {
            batch.put([session as u8; 17], raw_record(shape.head, chunk as u64));
            batch.put([1, session as u8], raw_record(shape.balance, chunk as u64));
        }
        db.write_opt(batch, &sync).unwrap();
    }
    n as f64 / started.elapsed().as_secs_f64()
}

/// A database opened with the options the ledger's column families use.
fn raw_db(path: &std::path::Path) -> rocksdb::DB {
    let mut opts = rocksdb::Options::default();
    opts.create_if_missing(true);
    opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
    opts.set_write_buffer_size(8 << 20);
    rocksdb::DB::open(&opts, path).unwrap()
}

/// Receipt `i`'s key as the ledger keys it: its session, then its sequence number.
fn raw_receipt_key(i: usize) -> [u8; 24] {
    let (session, seq) = ((i % SESSIONS) as u8, (i / SESSIONS) as u64);
    let mut key = [session; 24];
    key[16..].copy_from_slice(&seq.to_be_bytes());
    key
}

/// A record of `len` bytes tagged with `tag`.
fn raw_record(len: usize, tag: u64) -> Vec<u8> {
    let mut v = vec![0x5au8; len.max(8)];
    v[..8].copy_from_slice(&tag.to_le_bytes());
    v
}

/// CPU time this process has used so far (user + system, all threads).
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // The fields after the parenthesised command name; utime and stime are the 12th and
    // 13th of them, in clock ticks (100 per second on Linux).
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

/// Runs `work` and returns its result with the CPU time it used per item, in µs.
fn with_cpu<T>(items: usize, work: impl FnOnce() -> T) -> (T, f64) {
    let before = process_cpu();
    let out = work();
    let used = process_cpu().saturating_sub(before);
    (out, used.as_secs_f64() * 1e6 / items as f64)
}

/// A batch verification: messages, signatures, keys → all valid.
type BatchVerifier = fn(&[&[u8]], &[Signature], &[VerifyingKey]) -> bool;

/// ed25519 batch verification of the same (ack) signatures on all cores.
fn verify_round(
    work: &[AckedReceipt],
    p: &chain::Parties,
    cores: usize,
    verify: BatchVerifier,
) -> f64 {
    let n = work.len();
    let key = VerifyingKey::from_bytes(p.renter.node_id().as_bytes()).unwrap();
    let messages: Vec<Vec<u8>> = work.iter().map(|a| a.ack.signing_bytes()).collect();
    let signatures: Vec<Signature> = work
        .iter()
        .map(|a| Signature::from_bytes(&a.ack.signature().0))
        .collect();
    let started = Instant::now();
    std::thread::scope(|s| {
        let per = n.div_ceil(cores);
        for (m, sig) in messages.chunks(per).zip(signatures.chunks(per)) {
            s.spawn(move || {
                for (m, sig) in m.chunks(256).zip(sig.chunks(256)) {
                    let refs: Vec<&[u8]> = m.iter().map(Vec::as_slice).collect();
                    let keys = vec![key; refs.len()];
                    assert!(verify(&refs, sig, &keys));
                }
            });
        }
    });
    n as f64 / started.elapsed().as_secs_f64()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn bench_dir() -> std::path::PathBuf {
    std::env::var_os("ORIEN_BENCH_DIR")
        .map(Into::into)
        .unwrap_or_else(std::env::temp_dir)
}

fn percentile(samples: &mut [Duration], pct: usize) -> Duration {
    samples.sort_unstable();
    samples[(samples.len() * pct / 100).min(samples.len() - 1)]
}

fn round(v: f64) -> f64 {
    v.round()
}

fn round3(v: f64) -> f64 {
    (v * 1_000.0).round() / 1_000.0
}

fn ratio(v: f64, base: f64) -> f64 {
    (v / base * 1_000.0).round() / 1_000.0
}
