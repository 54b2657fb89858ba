//! Sektorbro's FHIR core: what the gateway knows about FHIR R4, computed and never fetched.
//!
//! - [`fhir`]: resource types, ids and references, search parameters and search queries,
//!   OperationOutcome.
//! - [`fhirpath`]: FHIRPath (lexer, parser, evaluator over `serde_json`).
//! - [`validation`]: FHIR packages, StructureDefinitions compiled into element trees, snapshots,
//!   terminology, and the validator that walks a resource against its profiles.
//!
//! This crate depends on no HTTP, database or async runtime crate (a test checks `cargo tree`).
//! What needs the network, a terminology server, is reached through
//! [`validation::terminology::TerminologyServer`], which the gateway implements.

pub mod fhir;
pub mod fhirpath;
pub mod validation;
