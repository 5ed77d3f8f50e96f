//! ed25519 batch verification with one term per signer.
//!
//! A batch of n signatures (Rᵢ, sᵢ) by keys Aᵢ on messages Mᵢ is accepted when
//!
//! ```text
//! [−Σ zᵢ·sᵢ]B + Σ zᵢ·Rᵢ + Σ (zᵢ·hᵢ)·Aᵢ = 0,   hᵢ = SHA-512(Rᵢ ‖ Aᵢ ‖ Mᵢ) mod ℓ
//! ```
//!
//! for 128-bit coefficients zᵢ fixed only after every signature is — the equation
//! ed25519-dalek's `verify_batch` checks (cofactorless, every sᵢ canonical, every Rᵢ a
//! curve point). A session's receipts are all acknowledged by one renter, so most Aᵢ of
//! a chunk are the same point, and Σᵢ (zᵢ·hᵢ)·A = (Σᵢ zᵢ·hᵢ)·A: the same equation with
//! one term per distinct key instead of one per signature. The multiscalar
//! multiplication shrinks from 2n + 1 points to n + k + 1 for k signers.
//!
//! The zᵢ are derived, as ed25519-dalek derives them from a Merlin transcript, from a
//! SHA-512 transcript of every hᵢ (which commits to Rᵢ, Aᵢ and Mᵢ) and every sᵢ: a forger
//! cannot choose signatures that cancel out, since changing any of them changes every zᵢ.

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest, Sha512};

const TRANSCRIPT_LABEL: &[u8] = b"orien/ed25519-batch/1";

/// Whether every `signatures[i]` is a valid signature of `messages[i]` by `keys[i]`
/// (all three the same length): ed25519 batch verification with one term per distinct
/// signer. `false` says only that at least one is not; check them one by one (strictly)
/// to learn which. The caller refuses weak (small-order) keys, as strict verification
/// does.
///
/// # Panics
///
/// When the three slices differ in length.
pub fn verify(messages: &[&[u8]], signatures: &[Signature], keys: &[VerifyingKey]) -> bool {
    assert!(
        messages.len() == signatures.len() && signatures.len() == keys.len(),
        "one message, signature and key per item"
    );
    let n = signatures.len();
    let mut transcript = Sha512::new();
    transcript.update(TRANSCRIPT_LABEL);
    transcript.update((n as u64).to_le_bytes());
    let mut hrams = Vec::with_capacity(n);
    let mut ss = Vec::with_capacity(n);
    let mut rs = Vec::with_capacity(n);
    for ((message, signature), key) in messages.iter().zip(signatures).zip(keys) {
        let Some(s) = Option::<Scalar>::from(Scalar::from_canonical_bytes(*signature.s_bytes()))
        else {
            return false;
        };
        let Some(r) = CompressedEdwardsY(*signature.r_bytes()).decompress() else {
            return false;
        };
        let hram: [u8; 64] = Sha512::new()
            .chain_update(signature.r_bytes())
            .chain_update(key.as_bytes())
            .chain_update(message)
            .finalize()
            .into();
        transcript.update(hram);
        transcript.update(signature.s_bytes());
        hrams.push(Scalar::from_bytes_mod_order_wide(&hram));
        ss.push(s);
        rs.push(r);
    }
    let seed: [u8; 64] = transcript.finalize().into();

    let mut basepoint = Scalar::ZERO;
    let mut zs = Vec::with_capacity(n);
    // (key, Σ zᵢ·hᵢ over its signatures); a chunk has few signers, so a scan is cheapest.
    let mut signers: Vec<(&VerifyingKey, Scalar)> = Vec::new();
    for (i, ((hram, s), key)) in hrams.iter().zip(&ss).zip(keys).enumerate() {
        let z = Scalar::from(coefficient(&seed, i));
        basepoint += z * s;
        let term = z * hram;
        match signers
            .iter_mut()
            .find(|(k, _)| k.as_bytes() == key.as_bytes())
        {
            Some((_, sum)) => *sum += term,
            None => signers.push((key, term)),
        }
        zs.push(z);
    }
    let scalars = std::iter::once(-basepoint)
        .chain(zs)
        .chain(signers.iter().map(|(_, sum)| *sum));
    let points = std::iter::once(ED25519_BASEPOINT_POINT)
        .chain(rs)
        .chain(signers.iter().map(|(key, _)| key.to_edwards()));
    EdwardsPoint::vartime_multiscalar_mul(scalars, points).is_identity()
}

/// The i-th 128-bit coefficient drawn from the transcript's seed.
fn coefficient(seed: &[u8; 64], i: usize) -> u128 {
    let wide = Sha512::new()
        .chain_update(seed)
        .chain_update((i as u64).to_le_bytes())
        .finalize();
    let mut z = [0u8; 16];
    z.copy_from_slice(&wide[..16]);
    u128::from_le_bytes(z)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    struct Batch {
        messages: Vec<Vec<u8>>,
        signatures: Vec<Signature>,
        keys: Vec<VerifyingKey>,
    }

    impl Batch {
        /// `n` signatures by `signers` keys, round robin.
        fn new(n: usize, signers: u8) -> Self {
            let secrets: Vec<SigningKey> = (0..signers)
                .map(|i| SigningKey::from_bytes(&[i + 1; 32]))
                .collect();
            let mut batch = Batch {
                messages: vec![],
                signatures: vec![],
                keys: vec![],
            };
            for i in 0..n {
                let key = &secrets[i % secrets.len()];
                let message = format!("receipt #{i}").into_bytes();
                batch.signatures.push(key.sign(&message));
                batch.keys.push(key.verifying_key());
                batch.messages.push(message);
            }
            batch
        }

        fn verify(&self) -> bool {
            let refs: Vec<&[u8]> = self.messages.iter().map(Vec::as_slice).collect();
            let ours = verify(&refs, &self.signatures, &self.keys);
            // The library's batch verification agrees on every batch.
            let library = ed25519_dalek::verify_batch(&refs, &self.signatures, &self.keys).is_ok();
            assert_eq!(
                ours, library,
                "merged and library batch verification disagree"
            );
            ours
        }
    }

    #[test]
    fn valid_batches_of_one_or_many_signers_pass() {
        for (n, signers) in [(1, 1), (2, 1), (64, 1), (300, 1), (300, 3), (257, 200)] {
            assert!(Batch::new(n, signers).verify(), "{n} by {signers}");
        }
        assert!(verify(&[], &[], &[]), "nothing to check");
    }

    #[test]
    fn any_flipped_bit_of_any_signature_fails_the_batch() {
        let good = Batch::new(40, 2);
        for i in [0, 17, 39] {
            for byte in [0, 13, 31, 32, 45, 63] {
                let mut bad = Batch::new(40, 2);
                let mut bytes = bad.signatures[i].to_bytes();
                bytes[byte] ^= 0x04;
                bad.signatures[i] = Signature::from_bytes(&bytes);
                assert!(!bad.verify(), "signature {i}, byte {byte}");
            }
        }
        assert!(good.verify());
    }

    #[test]
    fn a_changed_message_or_a_swapped_key_fails_the_batch() {
        let mut changed = Batch::new(50, 1);
        changed.messages[25].push(b'!');
        assert!(!changed.verify());

        let mut swapped = Batch::new(50, 2);
        swapped.keys.swap(0, 1);
        assert!(!swapped.verify());

        // Two signatures swapped between their messages (each still a valid signature,
        // just of the other message).
        let mut crossed = Batch::new(50, 1);
        crossed.signatures.swap(3, 4);
        assert!(!crossed.verify());
    }

    #[test]
    fn a_non_canonical_s_is_refused_although_it_satisfies_the_equation() {
        // s + ℓ is the same scalar mod ℓ: the equation holds, the encoding is malleable.
        let mut batch = Batch::new(8, 1);
        let mut bytes = batch.signatures[5].to_bytes();
        let s = Scalar::from_canonical_bytes(bytes[32..].try_into().unwrap()).unwrap();
        let ell: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let mut carry = 0u16;
        for (out, (a, b)) in bytes[32..].iter_mut().zip(s.as_bytes().iter().zip(ell)) {
            let sum = u16::from(*a) + u16::from(b) + carry;
            *out = sum as u8;
            carry = sum >> 8;
        }
        assert_eq!(carry, 0, "s + ℓ fits in 256 bits");
        batch.signatures[5] = Signature::from_bytes(&bytes);
        assert!(!batch.verify());
    }
}
