//! Fuzz target `audit_verify`: the properties of `vault_properties::audit_verify` on every input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vault_properties::audit_verify::check(data));
