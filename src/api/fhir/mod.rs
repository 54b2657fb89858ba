//! The FHIR REST API at `/fhir`: one file per interaction family.

pub mod bulk;
pub mod bundle;
pub mod crud;
pub mod history;
pub mod measure;
pub mod metadata;
pub mod process_message;
pub mod search;
pub mod share;
pub mod validate;
