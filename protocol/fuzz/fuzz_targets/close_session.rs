#![no_main]
//! Fuzzes `orien_protocol::fuzzing` decoder `close_session`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    assert!(orien_protocol::fuzzing::run("close_session", data));
});
