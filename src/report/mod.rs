//! Reports the gateway makes from stored municipal care records for national receivers.
//!
//! - [`kl_gateway`]: KL Gateway delivery reports (§140 rehabilitation, FSIII care), built from
//!   typed records without I/O.
//! - [`stored`]: the records of a municipality read from the store page by page, and the
//!   report written as a stream of text pieces (never the whole report in memory).

pub mod facts;
pub mod flows;
pub mod kl_gateway;
pub mod kpis;
pub mod measures;
pub mod stored;
