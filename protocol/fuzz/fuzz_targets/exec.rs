#![no_main]
//! Fuzzes `orien_protocol::fuzzing` decoder `exec`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    assert!(orien_protocol::fuzzing::run("exec", data));
});
