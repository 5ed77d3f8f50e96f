#![no_main]
//! Fuzzes `orien_protocol::fuzzing` decoder `session_response`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    assert!(orien_protocol::fuzzing::run("session_response", data));
});
