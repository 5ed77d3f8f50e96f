#![no_main]
//! Fuzzes `orien_ledger::fuzzing` decoder `lane_settlement`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    assert!(orien_ledger::fuzzing::run("lane_settlement", data));
});
