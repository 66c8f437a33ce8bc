//! tower-uma, `uma-proxy` and `uma-test-as` against a real Keycloak.
//!
//! This crate has no code of its own: its tests (under `tests/`) are built only with the
//! feature `keycloak` and need the Keycloak that `interop/keycloak/keycloak.sh start` runs on
//! `127.0.0.1:8280`. `interop/keycloak/test.sh` starts it, runs them and stops it; see
//! `interop/keycloak/README.md`.
