//! A small UMA 2.0 authorization server for end-to-end tests, demos and local development.
//!
//! `uma-test-as` speaks the standard UMA 2.0 wire format: the discovery document of
//! [UMA Grant §2], the token endpoint with the `client_credentials`, `password` and
//! `urn:ietf:params:oauth:grant-type:uma-ticket` grants ([UMA Grant §3.3]), the protection
//! API of [UMA FedAuthz] (resource registration §3, permission endpoint §4, token
//! introspection §5), an [RFC 7009] revocation endpoint and a JWKS document. It defines its
//! own serde models and does not depend on `tower-uma`, so the middleware and this server are
//! independent implementations of the same messages.
//!
//! With [`AuthServerBuilder::dialect`] (or `dialect = "…"` in the configuration, or
//! `--dialect` on the command line) it imitates Keycloak or WSO2 Identity Server instead
//! ([`Dialect`]): their paths (Keycloak's under `/realms/{realm}`), discovery documents (or
//! none), PATs, JWT tickets, introspection rules, resource representations, status codes and
//! error bodies (docs/protocol.md §2–§9 in the tower-uma repository).
//! [`TestAs::rotate_signing_key`] and [`TestAs::retire_old_keys`] exercise JWKS key rotation.
//!
//! It runs in two ways:
//!
//! * **in-process**, for tests: [`AuthServer::builder`] configures clients, users, policies and
//!   token lifetimes; [`AuthServerBuilder::spawn`] binds `127.0.0.1:0` *before* returning, so
//!   a test can send requests at once, without start-up sleeps. The returned [`TestAs`] handle
//!   exposes the issuer URL, per-endpoint request counters and recordings, fault knobs
//!   (latency, canned answers, closed connections, ticketless permission answers, rejected
//!   PATs) and shortcuts such as [`TestAs::mint_rpt`]. Dropping the handle shuts the server
//!   down. Nothing is global, so tests run in parallel.
//! * **standalone**: the `uma-test-as` binary (`uma-test-as --listen 127.0.0.1:8180 --config
//!   as.toml`), configured by a TOML file parsed by [`Config`].
//!
//! # Example
//!
//! ```
//! use uma_test_as::{AuthServer, Endpoint, Policy};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let auth = AuthServer::builder()
//!     .client("photo-api", "photo-api-secret")
//!     .user("bob", "bob-pw")
//!     .policy(Policy::resource("album").scopes(["view"]).users(["bob"]))
//!     .spawn()
//!     .await?;
//!
//! assert!(auth.issuer().starts_with("http://127.0.0.1:"));
//! assert_eq!(
//!     auth.endpoint_url(Endpoint::Permission),
//!     format!("{}/permission", auth.issuer())
//! );
//! // Fault knobs are per server: the next permission request gets a 500.
//! auth.fail_next(Endpoint::Permission, 1, 500);
//! assert_eq!(auth.count(Endpoint::Permission), 0);
//! # Ok(())
//! # }
//! ```
//!
//! # Behaviour in brief
//!
//! The crate README (`uma-test-as/README.md`) documents every endpoint, error code, config key
//! and fault knob. The decisions a test may depend on:
//!
//! * Policies are all-or-nothing: if some requested scope is not granted the uma-ticket grant
//!   answers `request_denied` (or `need_info` / `request_submitted` when more can be done);
//!   there are no partial RPTs.
//! * Introspecting a PAT (or any plain access token) answers `active: true` with `scope`,
//!   `client_id`, `sub`, `exp` and `iat`, and no `permissions`: it is not an RPT.
//! * An RPT created with [`TestAs::mint_rpt`] is introspected exactly as its [`RptSpec`]
//!   says; the server only decides `active` from the token-level `exp` and revocation, and
//!   reports `nbf` and per-permission `exp`/`nbf`/`iat` verbatim for the resource server to
//!   check.
//!
//! [UMA Grant §2]: https://docs.kantarainitiative.org/uma/wg/rec-oauth-uma-grant-2.0.html#as-config
//! [UMA Grant §3.3]: https://docs.kantarainitiative.org/uma/wg/rec-oauth-uma-grant-2.0.html#seek-authorization
//! [UMA FedAuthz]: https://docs.kantarainitiative.org/uma/wg/rec-oauth-uma-federated-authz-2.0.html
//! [RFC 7009]: https://www.rfc-editor.org/rfc/rfc7009

mod builder;
mod config;
mod conn;
mod dialect;
mod error;
mod faults;
mod handle;
mod jwt;
mod model;
mod policy;
mod routes;
mod state;

pub use builder::{AuthServer, AuthServerBuilder};
pub use config::{Config, ConfigError};
pub use dialect::{Dialect, Endpoint, ParseDialectError};
pub use handle::TestAs;
pub use model::{
    PendingRequest, RecordedRequest, ResourceDescription, RptFormat, RptPermission, RptSpec,
};
pub use policy::Policy;

/// The `claim_token_format` for OpenID Connect ID tokens ([UMA Grant §3.3.1]), the only
/// claim-token format this server accepts.
///
/// [UMA Grant §3.3.1]: https://docs.kantarainitiative.org/uma/wg/rec-oauth-uma-grant-2.0.html#uma-grant-type
pub const ID_TOKEN_FORMAT: &str = dialect::names::ID_TOKEN_FORMAT;

/// The grant type of the UMA grant ([UMA Grant §3.3.1]).
///
/// [UMA Grant §3.3.1]: https://docs.kantarainitiative.org/uma/wg/rec-oauth-uma-grant-2.0.html#uma-grant-type
pub const UMA_TICKET_GRANT: &str = dialect::names::UMA_TICKET_GRANT;

/// Compiles and runs the README's Rust example as a doc-test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
