#![no_main]
//! Fuzzes `orien_ledger::fuzzing` decoder `account_key`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    assert!(orien_ledger::fuzzing::run("account_key", data));
});
