//! cargo-fuzz target `search_query`: see [`entries::search_query`] (shared with the stable driver).
#![no_main]

#[path = "entries.rs"]
mod entries;

libfuzzer_sys::fuzz_target!(|data: &[u8]| entries::search_query(data));
