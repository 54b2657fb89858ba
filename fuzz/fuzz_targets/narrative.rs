//! cargo-fuzz target `narrative`: see [`entries::narrative`] (shared with the stable driver).
#![no_main]

#[path = "entries.rs"]
mod entries;

libfuzzer_sys::fuzz_target!(|data: &[u8]| entries::narrative(data));
