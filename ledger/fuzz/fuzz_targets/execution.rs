#![no_main]
//! Fuzzes `orien_ledger::fuzzing` decoder `execution`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    assert!(orien_ledger::fuzzing::run("execution", data));
});
