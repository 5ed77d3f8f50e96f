#![no_main]
//! Fuzzes `orien_ledger::fuzzing` decoder `stored_receipt`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    assert!(orien_ledger::fuzzing::run("stored_receipt", data));
});
