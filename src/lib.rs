//! A Tower layer that turns any HTTP API into a [UMA 2.0] resource server.
//!
//! [UMA 2.0]: https://docs.kantarainitiative.org/uma/wg/rec-oauth-uma-grant-2.0.html
//!
//! [`UmaLayer`] wraps an axum `Router` or any Tower/hyper service. For each request it:
//!
//! 1. normalises the path and finds the protected resource and the scopes this method needs
//!    ([`ResourceMap`], or your own [`ResourceResolver`]); an unusable path is refused with
//!    `400`, an unmapped one with `403` (or let through, if configured);
//! 2. reads the RPT from the `Authorization: Bearer` header only (RFC 6750 §2.1);
//! 3. introspects it at the authorization server (AS) through the [`IntrospectionCache`];
//! 4. lets the request through when the RPT holds a valid permission for that resource with
//!    those scopes, with a [`UmaPrincipal`] in the request extensions;
//! 5. otherwise asks the AS's permission endpoint for a ticket and answers `401` with
//!    `WWW-Authenticate: UMA realm="…", as_uri="…", ticket="…"`, or `403` with
//!    `Warning: 199 - "UMA Authorization Server Unreachable"` when no ticket (or no
//!    introspection answer) can be had. The inner service is never called on these paths.
//!
//! Calls to the AS are capped per layer ([`UmaLayerBuilder::max_as_calls_in_flight`]) and
//! guarded by a circuit breaker per endpoint
//! ([`UmaLayerBuilder::breaker_failure_threshold`]): junk tokens or an outage never make the
//! layer flood the AS, and requests that cannot be decided are refused at once rather than
//! after a timeout. [`UmaLayer::as_health`] reports the breakers' state for readiness checks.
//!
//! When the AS answers a ticket request with `invalid_resource_id` (it restarted without its
//! resources, or an admin deleted one; FedAuthz §4.3), the layer registers the resource again
//! from its declaration, or looks its name up again, and asks once more: at most once per
//! resource per [`UmaLayerBuilder::resource_resync_interval`], retried in the background
//! while it fails, and reported by [`AsHealth::unknown_resources`] meanwhile. At start,
//! [`UmaLayerBuilder::wait_for_as`] (or a [`StartRetry`] policy) waits for an AS that is not
//! reachable yet.
//!
//! Each request ends in one increment of `uma_decisions_total` (see the metrics table in the
//! README) and one DEBUG event `decided` with its method, path, resource, scopes, outcome,
//! reason and the token's fingerprint (never the token): `RUST_LOG=tower_uma=debug` shows one
//! line per decision.
//!
//! The service keeps the inner service's error type; every refusal is a response carrying a
//! [`Rejection`] in its extensions. The PAT is obtained with client credentials (scope
//! `uma_protection`), reused until shortly before it expires, refreshed by one call for all
//! concurrent callers, and replaced (with one retry) when a protection call gets `401`.
//!
//! # Example
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use http::Method;
//! use tower_uma::{ResourceDecl, ResourceMap, Route, UmaLayer};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let uma = UmaLayer::discover("https://as.example.com", "photo-api", "photo-api-secret")
//!     .realm("photos")
//!     .resources(ResourceMap::new().route(
//!         Route::new("/albums/{id}")
//!             .declare(ResourceDecl::new("album", ["view", "delete"]))
//!             .scopes(Method::GET, ["view"])
//!             .scopes(Method::DELETE, ["delete"]),
//!     ))
//!     .build()
//!     .await?;
//!
//! let app: Router = Router::new()
//!     .route("/albums/{id}", get(|| async { "an album" }))
//!     .layer(uma);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```
//!
//! # How each spelling of a request is decided
//!
//! The layer lets a request through only when the inner service will run it under the rule
//! that was checked. Frameworks disagree on methods, letter case and escapes, so every request
//! is either refused or decided under the strictest rule that a common upstream
//! (Flask/Werkzeug, Express, Spring, Symfony/Laravel, Django, axum) could apply to it. Refusals
//! below are `400` ([`Rejection::BadRequest`]) or `405` ([`Rejection::MethodNotAllowed`]);
//! [`ResourceMap`] has the details.
//!
//! | Spelling | What the layer does | Why |
//! |---|---|---|
//! | Method case: `delete`, `Get` (a case variant of `GET HEAD POST PUT DELETE CONNECT OPTIONS TRACE PATCH` or of a method a route names) | `400` ([`PathError::MethodCase`]) | Methods are case-sensitive (RFC 9110 §9.1), but Werkzeug, Django and Symfony upper-case them and run the `DELETE` handler, while the map compares bytes. Extension methods (`PURGE`, `PROPFIND`) are routed as written. |
//! | Method overrides: `X-HTTP-Method-Override`, `X-HTTP-Method`, `X-Method-Override`, `?_method=` | `400` by default; `method_override = "decide"` decides on the overridden method and strips the signal; uma-proxy never forwards the signals | Symfony, Laravel, Express and Rails run the overridden method. A `_method` field in a form body is the upstream's responsibility: the layer does not read bodies. |
//! | Letter case of literal segments: `/Albums/1`, `/albums/FEATURED` | decided by the route matched ignoring case only when a case-sensitive router would apply the same rule; otherwise (also when it would find no route) `400` ([`PathError::LetterCase`]) | Flask, Django, Symfony, Spring and axum route case-sensitively, Express does not. |
//! | Several routes match: `/albums/1` for `/{a}/{b}` and `/albums/*` | the most specific, segment by segment: a literal beats a `{param}`, which beats `*` (here `/albums/*`) | The order axum's router (matchit) tries routes in. |
//! | A leading `//`: `//public/albums/1` | `400` ([`PathError::NetworkPath`]) | It has the form of a network-path reference (RFC 3986 §4.2): an upstream that resolves the request target as a URI reference (Node's `new URL(req.url, base)`, Python's `urlsplit`) takes `public` for a host and runs `/albums/1`. |
//! | Empty segments further in, trailing slash: `/albums//1`, `/albums/1/` | the rule of `/albums/1`, unless the route a router matching the path as received would run has a rule that is neither the same nor public: then `400` ([`PathError::AsReceived`]) | Most routers merge or redirect them; axum keeps them (a `{param}` takes an empty segment when more follow, `/albums/1/` is not `/albums/{id}`). |
//! | Escapes of unreserved characters: `%61lbums`; a literal written `%7Eme` requested as `/~me` | decoded: the rule of `/albums`, under the same condition as the row above (`400`, [`PathError::AsReceived`]) | RFC 3986 §2.3 makes them equivalent and decoding routers run `/albums`; axum matches the path as received and may run a `{param}` or `*` route. |
//! | A trailing `*` matching nothing: `/admin` for `/admin/*` | the rule of `/admin/*`, unless the route axum could run instead (its best match, or the bare prefix of another wildcard route) has a rule that is neither the same nor public: then `400` ([`PathError::AsReceived`]) | Spring's `/admin/**` matches `/admin`; axum's `/admin/{*rest}` does not, and whether the application also serves `/admin` is up to it. |
//! | Other escapes that change the route once decoded: `/a%21b` beside a literal `/a!b` | `400` ([`PathError::Ambiguous`]) | Upstreams that decode before routing and those that do not would run different handlers. |
//! | `%2F`; dot segments in any spelling (`..`, `%2e%2e`); double encoding (`%252e`); `;` (`;jsessionid=1`, `%3B`); `\` and `%5C`; `%3F`, `%23`; control characters; broken escapes | `400` (the other [`PathError`]s) | Each means something else on some upstream (Tomcat strips `;…`, IIS reads `\` as `/`, a second decoding turns `%252e` into `.`). |
//! | [`Route::public`] with `GET`, `HEAD`, `OPTIONS`, or a method of [`Route::public_methods`] | passed without a token | What the route says. |
//! | [`Route::public`] with another method: `DELETE /albums/featured` | decided by the protected route that also matches (`/albums/{id}`); `400` if several protected routes with different rules could take it; `405` + `Allow` if none does | Express, Spring and Werkzeug fall through to the next route that takes the method. |
//! | A method the matched route does not list | `405` + `Allow` ([`Resolution::MethodNotAllowed`]); through, logged, in permissive mode; [`Unmapped`] does not apply | No rule of the map covers it, and the handler (or one it falls through to) may accept it. |
//! | A path no route matches | `403` with [`Unmapped::Deny`] (default); through with [`Unmapped::Allow`] | Nothing describes it. |
//! | A refused spelling in [`EnforcementMode::Permissive`] | through and logged, unless a route may be enforcing (an `Enforcing` override, or a resolver): then `400` | Its route is not known, so neither is its mode. |
//!
//! # Protected resource metadata
//!
//! [`UmaLayerBuilder::resource_metadata`] publishes OAuth 2.0 Protected Resource Metadata
//! (RFC 9728) for the API; see the [`metadata`] module.
//!
//! # Features
//!
//! - `rustls` (default): TLS to the AS with rustls.
//! - `native-tls`: TLS to the AS with the platform's library.
//! - `axum` (default): [`UmaPrincipal`] as an axum extractor, and the [`axum`](mod@crate::axum) module:
//!   [`UmaRouter`](crate::axum::UmaRouter) declares each route once, with its handlers and its
//!   rule, for axum's router and the layer's map.
//! - `jwt`: local validation of JWT RPTs against the AS's JWKS (the [`jwt`](mod@crate::jwt)
//!   module).
//! - `fuzzing`: internal; exposes the parsers to the fuzz targets in `fuzz/`. Not an API: its
//!   module is hidden and may change in any release.
//!
//! # The API
//!
//! At the crate root, what almost every user names:
//!
//! - [`UmaLayer`], [`UmaLayerBuilder`]: the layer and its configuration;
//! - [`Uma`]: the service the layer wraps around yours;
//! - [`UmaPrincipal`]: who was let through, in the request extensions (and an axum extractor);
//! - [`Rejection`]: why the layer answered itself, in the response extensions;
//! - [`ResourceMap`], [`Route`], [`ResourceDecl`]: which resource and scopes each request needs;
//! - [`EnforcementMode`]: enforcing, permissive (log only) or disabled, for the layer or a route;
//! - [`Dialect`]: the kind of authorization server (standard, Keycloak, WSO2);
//! - [`IntrospectionCache`]: the cache of introspection answers, shareable between layers;
//! - [`Error`]: what can go wrong while building the layer.
//!
//! Everything else lives in a module named for what it holds:
//!
//! - [`axum`](mod@crate::axum) (feature `axum`): [`UmaRouter`](crate::axum::UmaRouter), one
//!   route table for axum's router and the layer, and the extractor's rejection;
//! - [`cache`]: the cache's builder and where an answer came from;
//! - [`challenge`]: the `WWW-Authenticate: UMA` challenge and the `Warning` of refusals, and a
//!   parser for clients;
//! - [`clock`]: the injectable wall clock ([`FixedClock`](crate::clock::FixedClock) for tests);
//! - [`dialect`]: [`Dialect`] and its parse error;
//! - [`error`]: [`Error`] and its [`ErrorKind`](crate::error::ErrorKind);
//! - [`future`]: the service's response future;
//! - [`health`]: the AS's health as the layer sees it, for readiness checks;
//! - [`introspect`]: the introspection answer an [`UmaPrincipal`] carries;
//! - [`jwt`](mod@crate::jwt) (feature `jwt`): local validation of JWT RPTs;
//! - [`keycloak`]: Keycloak's own adapter configuration (`keycloak.json`, `policy-enforcer`),
//!   lazy paths and the permission exchange of plain access tokens;
//! - [`metadata`]: OAuth 2.0 Protected Resource Metadata (RFC 9728) for the API;
//! - [`method_override`]: what the layer does with `X-HTTP-Method-Override` and its kin;
//! - [`protection`]: how the layer authenticates to the AS and asks it for tickets;
//! - [`refusal`]: bodies for the layer's refusals (RFC 6750-style JSON, RFC 9457
//!   problem+json), which are empty by default;
//! - [`registration`]: the start-up resource sync and the registry of resources;
//! - [`resources`]: the route table in full: resolvers, scope modes, path errors;
//! - [`start`]: waiting for an AS that is not reachable yet at start-up;
//! - [`tenant`]: [`TenantLayer`](crate::tenant::TenantLayer), one layer for several realms or
//!   authorization servers, each request checked by its tenant's layer;
//! - [`token`]: the secret types, their fingerprints and the bearer token's size limit.
//!
//! [`ResourceResolver`]: crate::resources::ResourceResolver
//! [`AsHealth::unknown_resources`]: crate::health::AsHealth::unknown_resources
//! [`StartRetry`]: crate::start::StartRetry
//! [`PathError`]: crate::resources::PathError
//! [`PathError::MethodCase`]: crate::resources::PathError::MethodCase
//! [`PathError::LetterCase`]: crate::resources::PathError::LetterCase
//! [`PathError::AsReceived`]: crate::resources::PathError::AsReceived
//! [`PathError::Ambiguous`]: crate::resources::PathError::Ambiguous
//! [`PathError::NetworkPath`]: crate::resources::PathError::NetworkPath
//! [`Resolution::MethodNotAllowed`]: crate::resources::Resolution::MethodNotAllowed
//! [`Unmapped`]: crate::resources::Unmapped
//! [`Unmapped::Deny`]: crate::resources::Unmapped::Deny
//! [`Unmapped::Allow`]: crate::resources::Unmapped::Allow
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod axum;
pub mod cache;
pub mod challenge;
pub mod clock;
mod decision;
pub mod dialect;
mod discovery;
pub mod error;
#[cfg(feature = "axum")]
mod extract;
pub mod future;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod gate;
pub mod introspect;
#[cfg(feature = "jwt")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
pub mod jwt;
pub mod keycloak;
mod layer;
pub mod metadata;
pub mod method_override;
mod metrics;
mod pipeline;
mod principal;
pub mod protection;
pub mod refusal;
pub mod registration;
pub mod resources;
mod resync;
mod service;
pub mod start;
pub mod tenant;
pub mod token;

pub mod health {
    //! The authorization server's health as the layer sees it, for readiness checks:
    //! [`UmaLayer::as_health`](crate::UmaLayer::as_health) returns an [`AsHealth`] with the
    //! state of each endpoint's circuit breaker, the calls in flight, and the resources the AS
    //! forgot that are not recovered yet.
    //!
    //! # Example
    //!
    //! ```
    //! use tower_uma::health::{AsEndpoint, AsHealth, BreakerState};
    //!
    //! fn ready(health: &AsHealth) -> bool {
    //!     health.resources_known()
    //!         && health
    //!             .endpoint(AsEndpoint::Introspection)
    //!             .is_none_or(|e| e.state() != BreakerState::Open)
    //! }
    //! # let _ = ready;
    //! ```
    pub use crate::gate::{AsEndpoint, AsHealth, BreakerState, EndpointHealth};
    pub use crate::resync::UnknownResource;
}

pub use cache::IntrospectionCache;
pub use dialect::Dialect;
pub use error::Error;
pub use layer::{UmaLayer, UmaLayerBuilder};
pub use principal::{Rejection, UmaPrincipal};
pub use resources::{EnforcementMode, ResourceDecl, ResourceMap, Route};
pub use service::Uma;

// The README's code uses `tower_uma::axum`.
#[cfg(all(doctest, feature = "axum"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
