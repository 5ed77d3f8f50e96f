#![no_main]
//! Fuzzes `orien_protocol::fuzzing` decoder `session_rejected`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    assert!(orien_protocol::fuzzing::run("session_rejected", data));
});
