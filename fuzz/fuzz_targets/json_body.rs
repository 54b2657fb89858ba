//! cargo-fuzz target `json_body`: see [`entries::json_body`] (shared with the stable driver).
#![no_main]

#[path = "entries.rs"]
mod entries;

libfuzzer_sys::fuzz_target!(|data: &[u8]| entries::json_body(data));
