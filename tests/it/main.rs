//! tower-uma's integration tests, in one test binary: each file here was a binary of its own.
//! After a change to the library, `cargo test` links one binary instead of fifteen, and the
//! test binaries take a third of the disk. Run one file's tests with
//! `cargo test --test it layer::` (the module is the file's name).
//!
//! Five files stay binaries of their own, because they need the process to themselves:
//! `as_outage_logs.rs`, `log_hygiene.rs` and `resync_logs.rs` install a global log
//! subscriber; `pipeline.rs` captures the layer's events with a per-thread subscriber, which
//! misses events when other tests in the process hit the same call sites first (tracing
//! caches each call site's interest process-wide); `agreement.rs` runs thousands of
//! generated cases whose time would hold up the others.

// `per_dialect!` and the other macros of `common` are used by the modules below.
#[macro_use]
#[path = "../common/mod.rs"]
mod common;

mod as_resilience;
#[cfg(feature = "axum")]
mod axum_router;
mod cache;
mod conformance;
#[cfg(feature = "axum")]
mod extractor;
#[cfg(feature = "jwt")]
mod jwt;
mod layer;
mod lazy_paths;
mod method_override;
mod permission_exchange;
mod pushed_claims;
mod readiness;
mod registration;
mod resync;
mod scope_shapes;
mod start_retry;
mod tenants;
mod transport;
