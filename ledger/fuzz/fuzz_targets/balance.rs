#![no_main]
//! Fuzzes `orien_ledger::fuzzing` decoder `balance`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    assert!(orien_ledger::fuzzing::run("balance", data));
});
