//! uma-test-as's integration tests, in one test binary. Each file here was a binary of its
//! own; after a change to the crate, `cargo test` now links one binary instead of seven (about
//! 40 % less CPU time) and the test binaries take about a quarter of the disk. Run one file's
//! tests with `cargo test -p uma-test-as --test it grant::`.
//!
//! `tests/logs.rs` stays a binary of its own: it captures the logs of a whole grant with a
//! subscriber of its own and checks that no secret is in them. tracing caches, per process,
//! whether each log call site is wanted; a call site first reached by another test while the
//! capture's subscriber is being set up can be cached as unwanted, and an event (with a leak
//! in it) could then miss the capture. Alone in its process, that race cannot happen.

#[path = "../common/mod.rs"]
mod common;

mod binary;
mod conformance;
mod dialects;
mod endpoints;
mod grant;
mod handle;
mod jwt;
