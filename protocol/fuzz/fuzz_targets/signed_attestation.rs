#![no_main]
//! Fuzzes `orien_protocol::fuzzing` decoder `signed_attestation`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    assert!(orien_protocol::fuzzing::run("signed_attestation", data));
});
