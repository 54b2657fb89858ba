//! Sektorbro: a FHIR R4 gateway for care that crosses sectors (municipalities, regions, GPs).
//!
//! The rooms, in the order a request flows through them (ARCHITECTURE.md has the map, with
//! where to start reading for each capability):
//! - [`api`]: HTTP only — routes, the request middleware, request context, responses.
//! - [`auth`]: who is calling — configured clients, SMART scopes, tokens and certificates.
//! - [`engine`]: the FHIR interactions (CRUD, history, search, transaction/batch) as domain
//!   operations over a store, each under the caller's access.
//! - [`municipal`], [`discharge`]: municipal care records and discharge notes, translated to
//!   and from FHIR in front of the engine.
//! - [`store`]: persistence, the only room with SQL (SQLite and PostgreSQL).
//! - [`lookup`]: cached lookups in upstreams (patient and organization registries, a terminology
//!   server, JWKS), each optional.
//! - [`forward`]: FHIR messages forwarded to regional systems through a durable outbox
//!   (workers, retries, connectors).
//! - [`audit`]: the audit trail of reads, searches, writes, validations and forwarding attempts.
//! - [`bulk`]: Bulk Data export: durable jobs run in the background, NDJSON files per type.
//! - [`report`]: KL Gateway delivery reports built from stored municipal care records.
//! - [`config`], [`app`], [`cli`], [`metrics`], [`error`], [`logmask`], [`telemetry`]:
//!   configuration, wiring, command line, metrics, the error type, the log writer that masks
//!   national ids, and OpenTelemetry traces over OTLP/HTTP.
//!
//! FHIR knowledge, FHIRPath and the validator are in the `fhir-core` crate, which does no I/O.

pub mod alloc;
pub mod api;
pub mod app;
pub mod audit;
pub mod auth;
pub mod bulk;
pub mod cli;
pub mod config;
pub mod discharge;
pub mod engine;
pub mod error;
pub mod forward;
pub mod logmask;
pub mod lookup;
pub mod medcom;
pub mod metrics;
pub mod municipal;
pub mod report;
pub mod store;
pub mod telemetry;
