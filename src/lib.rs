//! Sektorbro: a FHIR R4 gateway for care that crosses sectors (municipalities, regions, GPs).
//!
//! The rooms, in the order a request flows through them:
//! - [`api`]: HTTP only — routes, request context, content negotiation, responses.
//! - [`engine`]: the FHIR interactions (CRUD, history, search, transaction/batch) as domain
//!   operations over a store.
//! - [`fhir`]: FHIR knowledge without I/O — resource types, search parameters, OperationOutcome.
//! - [`store`]: persistence, the only room with SQL (SQLite and PostgreSQL).
//! - [`lookup`]: cached lookups in upstreams (patient and organization registries, a terminology
//!   server, JWKS), each optional.
//! - [`forward`]: FHIR messages forwarded to regional systems through a durable outbox
//!   (workers, retries, connectors).
//! - [`audit`]: an AuditEvent per read, search, write, validation and forwarding attempt, queued
//!   and written in batches to the same database.
//! - [`config`], [`app`], [`cli`], [`metrics`]: configuration, wiring, command line, metrics.

pub mod api;
pub mod app;
pub mod audit;
pub mod auth;
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
pub mod store;
