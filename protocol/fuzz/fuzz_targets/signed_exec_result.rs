#![no_main]
//! Fuzzes `orien_protocol::fuzzing` decoder `signed_exec_result`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    assert!(orien_protocol::fuzzing::run("signed_exec_result", data));
});
