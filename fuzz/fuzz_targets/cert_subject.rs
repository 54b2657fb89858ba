//! cargo-fuzz target `cert_subject`: certificate subjects, see [`entries::cert_subject`]
//! (shared with the stable driver).
#![no_main]

#[path = "entries.rs"]
mod entries;

libfuzzer_sys::fuzz_target!(|data: &[u8]| entries::cert_subject(data));
