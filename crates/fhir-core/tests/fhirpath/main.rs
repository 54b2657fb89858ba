//! The FHIRPath engine against the official FHIRPath R4 test suite (`suite.rs`) and against every
//! constraint expression of the R4 definitions on the official examples (`invariants.rs`). Both
//! read the R4 package beside the checkout and skip with a message when it is absent.

#[allow(dead_code)]
mod common;
mod invariants;
mod suite;
