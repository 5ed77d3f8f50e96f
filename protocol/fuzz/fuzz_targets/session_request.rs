#![no_main]
//! Fuzzes `orien_protocol::fuzzing` decoder `session_request`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    assert!(orien_protocol::fuzzing::run("session_request", data));
});
