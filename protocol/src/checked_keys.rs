//! Public keys this thread has already found to be ed25519 curve points.
//!
//! Checking that 32 bytes are a point means decompressing it: a square root in the
//! field, about 15 µs — more than the rest of decoding a receipt's posting. Ledgers,
//! offer books and session records hold few distinct node ids and decode them over and
//! over (`ledger verify` decodes every posting's accounts), so the check is remembered.
//!
//! Only keys that passed the check are stored, so a hit proves the bytes valid: nothing
//! an attacker sends can make an invalid key pass, only evict a valid one (which costs
//! the check again). The table is direct-mapped and fixed-size, so its memory is bounded
//! whatever is decoded.

use std::cell::RefCell;

const SLOTS: usize = 64;

thread_local! {
    static CHECKED: RefCell<[Option<[u8; 32]>; SLOTS]> = const { RefCell::new([None; SLOTS]) };
}

fn slot(bytes: &[u8; 32]) -> usize {
    // Keys are uniformly distributed bytes (hashes of secrets), except the sign bit in
    // the last byte: the first two bytes spread them over the slots.
    usize::from(u16::from_le_bytes([bytes[0], bytes[1]])) % SLOTS
}

/// Whether `bytes` are an ed25519 curve point, remembered per thread.
pub(crate) fn is_curve_point(bytes: &[u8; 32]) -> bool {
    let i = slot(bytes);
    if CHECKED.with_borrow(|table| table[i].as_ref() == Some(bytes)) {
        return true;
    }
    let valid = ed25519_dalek::VerifyingKey::from_bytes(bytes).is_ok();
    if valid {
        CHECKED.with_borrow_mut(|table| table[i] = Some(*bytes));
    }
    valid
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remembered_key_stays_valid_and_an_invalid_one_is_never_remembered() {
        let valid = *ed25519_dalek::SigningKey::from_bytes(&[7; 32])
            .verifying_key()
            .as_bytes();
        assert!(is_curve_point(&valid));
        assert!(is_curve_point(&valid), "answered from the table");
        assert!(CHECKED.with_borrow(|t| t[slot(&valid)] == Some(valid)));

        // Not a point: y = 2 has no x on the curve. Asked twice, rejected twice, and
        // never stored (its slot still holds whatever it held).
        let mut invalid = [0u8; 32];
        invalid[0] = 2;
        assert!(ed25519_dalek::VerifyingKey::from_bytes(&invalid).is_err());
        let before = CHECKED.with_borrow(|t| t[slot(&invalid)]);
        assert!(!is_curve_point(&invalid));
        assert!(!is_curve_point(&invalid));
        assert_eq!(CHECKED.with_borrow(|t| t[slot(&invalid)]), before);
    }

    #[test]
    fn keys_sharing_a_slot_evict_each_other_and_stay_correct() {
        let keys: Vec<[u8; 32]> = (0..=255u8)
            .map(|i| {
                *ed25519_dalek::SigningKey::from_bytes(&[i; 32])
                    .verifying_key()
                    .as_bytes()
            })
            .collect();
        for _ in 0..2 {
            for key in &keys {
                assert!(is_curve_point(key));
            }
        }
        // Flipping bits of a valid key gives (mostly) invalid ones: the table answers
        // exactly as the full check does.
        for key in &keys {
            let mut other = *key;
            other[5] ^= 0x40;
            assert_eq!(
                is_curve_point(&other),
                ed25519_dalek::VerifyingKey::from_bytes(&other).is_ok()
            );
        }
    }
}
