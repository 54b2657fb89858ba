//! cargo-fuzz target `jwt`: see [`entries::jwt`] (shared with the stable driver).
#![no_main]

#[path = "entries.rs"]
mod entries;

libfuzzer_sys::fuzz_target!(|data: &[u8]| entries::jwt(data));
