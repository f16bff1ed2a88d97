//! Fuzz target `envelope_open`: the properties of `vault_properties::envelope_open` on every input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vault_properties::envelope_open::check(data));
