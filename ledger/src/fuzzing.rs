//! Entry points for fuzzers: every decoder of stored records.
//!
//! Each function decodes arbitrary bytes as one record kind and, when decoding succeeds,
//! checks that the value re-encodes to exactly the input. `ledger/fuzz` (cargo-fuzz) and
//! the stable-toolchain smoke test drive the same functions.

use crate::accounts::{Account, Balance};
use crate::dispute::Evidence;
use crate::executions::ExecRecord;
use crate::posting::Posting;
use crate::receipts::StoredReceipt;
use crate::record::{self, Record};
use crate::session::{SessionHead, SessionRecord};
use crate::settlement::{LaneSettlement, Settlement};

fn stored<T: Record + PartialEq + std::fmt::Debug>(data: &[u8]) {
    if let Ok(value) = record::decode::<T>(data) {
        let again = record::encode(&value)
            .unwrap_or_else(|e| panic!("decoded {} does not re-encode: {e}", T::KIND));
        assert_eq!(again, data, "{} decoding is not canonical", T::KIND);
    }
}

fn account_key(data: &[u8]) {
    if let Ok(account) = Account::from_key(data) {
        assert_eq!(account.key(), data, "account key decoding is not canonical");
    }
}

/// A decoder entry point: it panics only on a bug.
pub type Decoder = fn(&[u8]);

/// Every decoder of stored bytes, by name.
pub const DECODERS: &[(&str, Decoder)] = &[
    ("session_record", stored::<SessionRecord>),
    ("session_head", stored::<SessionHead>),
    ("stored_receipt", stored::<StoredReceipt>),
    ("posting", stored::<Posting>),
    ("balance", stored::<Balance>),
    ("account_key", account_key),
    ("settlement", stored::<Settlement>),
    ("lane_settlement", stored::<LaneSettlement>),
    ("evidence", stored::<Evidence>),
    ("execution", stored::<ExecRecord>),
];

/// Runs the decoder called `name` on `data`; `false` if there is no such decoder.
pub fn run(name: &str, data: &[u8]) -> bool {
    match DECODERS.iter().find(|(n, _)| *n == name) {
        Some((_, decoder)) => {
            decoder(data);
            true
        }
        None => false,
    }
}
