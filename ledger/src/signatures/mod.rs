//! Checking the counterparty's signatures of many receipts at once.
//!
//! A single receipt is checked with [`Signed::verify_from`] (strict ed25519). Many are
//! checked with ed25519 batch verification, split across the machine's cores: one
//! multi-scalar multiplication per chunk instead of one per signature. Batch acceptance
//! is the cofactorless verification equation plus canonical `s`; in addition every key
//! is refused if it is weak (small order), which is what strict verification adds for
//! honest-size inputs. When a batch fails, each item of it is verified strictly on its
//! own so the caller learns exactly which ones are bad. The batch equation is evaluated
//! with one term per signer ([`batch`]): a session's acks all come from one renter.

mod batch;

pub use batch::verify as verify_batch;

use std::collections::HashMap;

use ed25519_dalek::{Signature, VerifyingKey};
use orien_protocol::{NodeId, Signed, SignedPayload};

/// One signature to check: who must have signed, and the signed message.
pub(crate) struct Claim<'a, T> {
    pub(crate) expected: &'a NodeId,
    pub(crate) signed: &'a Signed<T>,
}

/// Largest chunk handed to one batch verification.
const CHUNK: usize = 256;

/// The machine's cores, as far as this process may use them.
pub(crate) fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Verifies every claim on up to `threads` threads (the caller's included); `Ok(())`
/// or the indices of the claims that fail.
pub(crate) fn verify_all<T: SignedPayload + Sync>(
    claims: &[Claim<'_, T>],
    threads: usize,
) -> Result<(), Vec<usize>> {
    if claims.is_empty() {
        return Ok(());
    }
    let threads = threads.min(claims.len().div_ceil(CHUNK)).max(1);
    let per_thread = claims.len().div_ceil(threads);
    let mut bad: Vec<usize> = if threads == 1 {
        verify_range(claims, 0)
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = claims
                .chunks(per_thread)
                .enumerate()
                .map(|(i, part)| scope.spawn(move || verify_range(part, i * per_thread)))
                .collect();
            handles
                .into_iter()
                // A verification thread only panics on a bug; fail every claim then.
                .flat_map(|h| h.join().unwrap_or_else(|_| (0..claims.len()).collect()))
                .collect()
        })
    };
    if bad.is_empty() {
        Ok(())
    } else {
        bad.sort_unstable();
        bad.dedup();
        Err(bad)
    }
}

fn verify_range<T: SignedPayload>(claims: &[Claim<'_, T>], offset: usize) -> Vec<usize> {
    let mut keys: HashMap<NodeId, Option<VerifyingKey>> = HashMap::new();
    let mut bad = Vec::new();
    for (c, chunk) in claims.chunks(CHUNK).enumerate() {
        let base = offset + c * CHUNK;
        if !verify_chunk(chunk, &mut keys) {
            // Find the culprits one by one, strictly.
            bad.extend(
                chunk
                    .iter()
                    .enumerate()
                    .filter(|(_, claim)| claim.signed.verify_from(claim.expected).is_err())
                    .map(|(i, _)| base + i),
            );
        }
    }
    bad
}

fn verify_chunk<T: SignedPayload>(
    chunk: &[Claim<'_, T>],
    keys: &mut HashMap<NodeId, Option<VerifyingKey>>,
) -> bool {
    let mut messages = Vec::with_capacity(chunk.len());
    let mut signatures = Vec::with_capacity(chunk.len());
    let mut verifying = Vec::with_capacity(chunk.len());
    for claim in chunk {
        if claim.signed.signer() != claim.expected {
            return false;
        }
        let key = *keys.entry(*claim.expected).or_insert_with(|| {
            VerifyingKey::from_bytes(claim.expected.as_bytes())
                .ok()
                .filter(|k| !k.is_weak())
        });
        let Some(key) = key else { return false };
        messages.push(claim.signed.signing_bytes());
        signatures.push(Signature::from_bytes(&claim.signed.signature().0));
        verifying.push(key);
    }
    let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    batch::verify(&refs, &signatures, &verifying)
}

#[cfg(test)]
mod tests {
    use super::*;
    use orien_protocol::{Millis, NodeKey, ReceiptHash, SessionId, Timestamp, UsageReceipt, Usdc};

    fn receipt(seq: u64) -> UsageReceipt {
        UsageReceipt {
            session: SessionId::from_bytes([1; 16]),
            seq,
            session_time: Millis(seq),
            exec_time: Millis(0),
            cpu_time: Millis(0),
            exec_amount: Usdc::ZERO,
            amount: Usdc::from_micros(seq),
            prev: if seq == 1 {
                ReceiptHash::GENESIS
            } else {
                ReceiptHash::from_bytes([2; 32])
            },
            issued_at: Timestamp(0),
            results: orien_protocol::ResultsCommitment::NONE,
            artefact_amount: Usdc::ZERO,
        }
    }

    #[test]
    fn finds_exactly_the_bad_signatures_in_a_large_batch() {
        let key = NodeKey::from_secret_bytes([3; 32]);
        let other = NodeKey::from_secret_bytes([4; 32]);
        let signed: Vec<_> = (1..=600)
            .map(|seq| {
                let k = if seq == 77 || seq == 555 {
                    &other
                } else {
                    &key
                };
                k.sign(&receipt(seq)).unwrap()
            })
            .collect();
        let id = key.node_id();
        let claims: Vec<_> = signed
            .iter()
            .map(|s| Claim {
                expected: &id,
                signed: s,
            })
            .collect();
        assert_eq!(verify_all(&claims, 2), Err(vec![76, 554]));
        let good: Vec<_> = claims
            .into_iter()
            .enumerate()
            .filter(|(i, _)| *i != 76 && *i != 554)
            .map(|(_, c)| c)
            .collect();
        assert_eq!(verify_all(&good, 1), Ok(()));
    }
}
