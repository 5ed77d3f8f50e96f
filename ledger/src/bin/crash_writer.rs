//! `orien-ledger-crash-writer DATA_DIR SEED MAX_RECEIPTS [synced|unsynced]`: the writer
//! process of the crash-safety harness (`tests/crash.rs`, `scripts/bench.d/ledger`).
//! The last argument picks the store's durability: `synced` (the default, what a node
//! runs) or `unsynced` ([`Durability::ProcessCrash`], what the session simulator runs).
//!
//! It ingests deterministic dual-signed receipts into the ledger at `DATA_DIR` —
//! singly, in concurrent pairs, in large groups, and from many sessions at once each on
//! its own thread (as a node's session drivers commit, signatures checked on the way in,
//! so the group commit's leader writes the others' receipts and wakes them) — and prints
//! `acked SESSION SEQ` for each one **only after** its durable commit returned. The harness kills it with SIGKILL
//! at random points and checks that every printed receipt survived. It resumes each
//! session from its stored head, so it can be restarted on the same directory.

#[path = "../../tests/support/chain.rs"]
#[allow(clippy::expect_used)]
mod chain;

use std::io::Write;
use std::process::ExitCode;
use std::sync::Mutex;

use chain::{ChainBuilder, Parties, Rng, escrow, parties, session_record};
use orien_ledger::{AckedReceipt, CheckedReceipt, Durability, Ingested, Store, StoreOptions};
use orien_protocol::{LaneId, PaymentLane, SessionId, Usdc};

/// Sessions committing at once in the many-sessions step, after the first three.
const AT_ONCE: usize = 8;

/// The sessions every run writes to: two ledger-paid, one on an escrow lane, then
/// [`AT_ONCE`] ledger-paid ones for the many-sessions step.
fn sessions() -> Vec<(SessionId, Option<LaneId>)> {
    let mut sessions = vec![
        (SessionId::from_bytes([1; 16]), None),
        (SessionId::from_bytes([2; 16]), None),
        (
            SessionId::from_bytes([3; 16]),
            Some(LaneId::from_bytes([3; 32])),
        ),
    ];
    sessions.extend((0..AT_ONCE).map(|i| (SessionId::from_bytes([10 + i as u8; 16]), None)));
    sessions
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let durability = match args.get(4).map(String::as_str) {
        None | Some("synced") => Some(Durability::PowerLoss),
        Some("unsynced") => Some(Durability::ProcessCrash),
        Some(_) => None,
    };
    let (Some(dir), Some(seed), Some(max), Some(durability)) = (
        args.get(1),
        args.get(2).and_then(|s| s.parse::<u64>().ok()),
        args.get(3).and_then(|s| s.parse::<u64>().ok()),
        durability,
    ) else {
        let _ = writeln!(
            std::io::stderr(),
            "usage: orien-ledger-crash-writer DATA_DIR SEED MAX_RECEIPTS [synced|unsynced]"
        );
        return ExitCode::from(2);
    };
    match run(dir, seed, max, durability) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(
    dir: &str,
    seed: u64,
    max: u64,
    durability: Durability,
) -> Result<(), Box<dyn std::error::Error>> {
    let options = StoreOptions {
        durability,
        ..StoreOptions::default()
    };
    let store = Store::open_with(dir, options)?;
    let p = parties();
    let mut chains = Vec::new();
    for (session, lane) in sessions() {
        let payment = lane.map_or(PaymentLane::Ledger, escrow);
        store.open_session(session_record(
            session,
            &p,
            payment,
            Usdc::from_micros(u64::MAX / 4),
        ))?;
        let head = store.head(&session)?.ok_or("session vanished")?;
        chains.push(ChainBuilder::resume(session, lane, &head));
    }
    let out = Mutex::new(std::io::stdout());
    let mut rng = Rng(seed | 1);
    let mut written = 0u64;
    while written < max {
        match rng.below(4) {
            // One receipt.
            0 => {
                let i = rng.below(3) as usize;
                let acked = next(&mut chains[i], &p, &mut rng);
                let result = store.ingest(acked.clone());
                report(&out, &[acked], &[result])?;
                written += 1;
            }
            // Two sessions concurrently: their commits may share one synced write.
            1 => {
                let (a, b) = (
                    next(&mut chains[0], &p, &mut rng),
                    next(&mut chains[1], &p, &mut rng),
                );
                let (ra, rb) = std::thread::scope(|s| {
                    let ha = s.spawn(|| store.ingest(a.clone()));
                    let rb = store.ingest(b.clone());
                    (ha.join(), rb)
                });
                let ra = ra.map_err(|_| "ingest thread panicked")?;
                report(&out, &[a, b], &[ra, rb])?;
                written += 2;
            }
            // Many sessions at once, each on its own thread committing receipts whose
            // signatures were checked on their way in, one at a time; each ack is printed
            // as soon as that thread's own commit returned.
            2 => {
                let per_session: Vec<Vec<AckedReceipt>> = chains[3..]
                    .iter_mut()
                    .map(|chain| {
                        let n = 1 + rng.below(8);
                        (0..n).map(|_| next(chain, &p, &mut rng)).collect()
                    })
                    .collect();
                written += per_session.iter().map(|r| r.len() as u64).sum::<u64>();
                let (store, out, p) = (&store, &out, &p);
                std::thread::scope(|s| {
                    let threads: Vec<_> = per_session
                        .into_iter()
                        .map(|receipts| {
                            s.spawn(move || -> Result<(), String> {
                                for acked in receipts {
                                    let result = store.ingest_checked(checked(&acked, p)?);
                                    report(out, &[acked], &[result]).map_err(|e| e.to_string())?;
                                }
                                Ok(())
                            })
                        })
                        .collect();
                    threads.into_iter().try_for_each(|t| {
                        t.join().map_err(|_| "ingest thread panicked".to_string())?
                    })
                })?;
            }
            // A large group through batch verification and group commit.
            _ => {
                let i = rng.below(3) as usize;
                let n = 1 + rng.below(600);
                let batch: Vec<AckedReceipt> =
                    (0..n).map(|_| next(&mut chains[i], &p, &mut rng)).collect();
                let results = store.ingest_many(batch.clone(), None);
                report(&out, &batch, &results)?;
                written += n;
            }
        }
    }
    Ok(())
}

/// The receipt with both signatures checked, as a node checks them on their way in.
fn checked(acked: &AckedReceipt, p: &Parties) -> Result<CheckedReceipt, String> {
    let receipt = acked
        .receipt
        .clone()
        .into_verified_from(&p.provider.node_id());
    let ack = acked.ack.clone().into_verified_from(&p.renter.node_id());
    match (receipt, ack) {
        (Ok(receipt), Ok(ack)) => Ok(CheckedReceipt::new(receipt, ack)),
        _ => Err("a generated receipt does not verify".into()),
    }
}

fn next(chain: &mut ChainBuilder, p: &Parties, rng: &mut Rng) -> AckedReceipt {
    let step = rng.step(chain.amount);
    chain.next(p, step)
}

/// Prints every durable receipt; any refusal is a bug in this writer, so it stops.
fn report(
    out: &Mutex<std::io::Stdout>,
    batch: &[AckedReceipt],
    results: &[Ingested],
) -> Result<(), Box<dyn std::error::Error>> {
    let mut out = out.lock().map_err(|_| "stdout lock poisoned")?;
    for (acked, result) in batch.iter().zip(results) {
        let durable = result
            .as_ref()
            .map_err(|e| format!("receipt refused: {e}"))?;
        debug_assert_eq!(durable.receipt(), acked.receipt.receipt_hash());
        writeln!(out, "acked {} {}", durable.session(), durable.seq())?;
    }
    out.flush()?;
    Ok(())
}
