#![no_main]
//! Fuzzes `orien_protocol::fuzzing` decoder `signed_provider_profile`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    assert!(orien_protocol::fuzzing::run("signed_provider_profile", data));
});
