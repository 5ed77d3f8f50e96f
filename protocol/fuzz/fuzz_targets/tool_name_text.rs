#![no_main]
//! Fuzzes `orien_protocol::fuzzing` decoder `tool_name_text`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    assert!(orien_protocol::fuzzing::run("tool_name_text", data));
});
