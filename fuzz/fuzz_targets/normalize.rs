//! Fuzz target `normalize`: the properties of `vault_properties::normalize` on every input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vault_properties::normalize::check(data));
