//! Fuzz target `csv_import`: the properties of `vault_properties::csv_import` on every input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vault_properties::csv_import::check(data));
