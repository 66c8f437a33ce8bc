//! uma-proxy's integration tests, in one test binary. Each file here was a binary of its own;
//! after a change to the crate, `cargo test` now links one binary instead of five (about a
//! third less CPU time) and the test binaries take less than half the disk. Run one file's
//! tests with `cargo test -p uma-proxy --test it e2e::`.
//!
//! `tests/upkeep.rs` stays a binary of its own: it measures the resident memory of its
//! process, which tests running beside it would disturb.

#[path = "../common/mod.rs"]
mod common;

mod as_outage;
mod config_errors;
mod decision;
mod e2e;
mod forgotten_resource;
mod inprocess;
mod keycloak_config;
mod library;
mod tenants;
mod upstream_view;
