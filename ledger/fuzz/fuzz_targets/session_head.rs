#![no_main]
//! Fuzzes `orien_ledger::fuzzing` decoder `session_head`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    assert!(orien_ledger::fuzzing::run("session_head", data));
});
