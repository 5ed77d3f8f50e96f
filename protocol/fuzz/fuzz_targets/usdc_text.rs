#![no_main]
//! Fuzzes `orien_protocol::fuzzing` decoder `usdc_text`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    assert!(orien_protocol::fuzzing::run("usdc_text", data));
});
