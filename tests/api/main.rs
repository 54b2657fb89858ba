//! Integration tests over real HTTP on a random loopback port, each run against SQLite and
//! (when `SEKTORBRO_TEST_POSTGRES_URL` is set) PostgreSQL.

#[path = "../common/mod.rs"]
mod common;
mod helpers;

mod audit;
mod bulk;
mod bundles;
mod cache;
mod clients;
mod concurrency;
mod console;
mod crud;
mod examples;
mod forwarding;
mod hardening;
mod hostile;
mod kpis;
mod limits;
mod lookups;
mod measures;
mod medcom;
mod municipal;
mod operations;
mod reports;
mod search;
mod tenancy;
mod tls;
mod tokens;
mod validation;
