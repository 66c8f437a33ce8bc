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
//!     .await?
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
//! | Empty segments, trailing slash: `//albums/1`, `/albums/1/` | the rule of `/albums/1`, unless the route a router matching the path as received would run has a rule that is neither the same nor public: then `400` ([`PathError::AsReceived`]) | Most routers merge or redirect them; axum keeps them (a `{param}` takes an empty segment when more follow, `/albums/1/` is not `/albums/{id}`). |
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
//! - `jwt`: local validation of JWT RPTs against the AS's JWKS (`RptValidation`,
//!   `JwtValidation`).
//! - `fuzzing`: internal; exposes the parsers to the fuzz targets in `fuzz/`. Not an API: its
//!   module is hidden and may change in any release.
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod axum;
mod cache;
mod challenge;
mod clock;
mod decision;
mod dialect;
mod discovery;
mod error;
#[cfg(feature = "axum")]
mod extract;
mod future;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod gate;
mod introspect;
#[cfg(feature = "jwt")]
mod jwt;
pub mod keycloak;
mod layer;
pub mod metadata;
mod method_override;
mod metrics;
mod pipeline;
mod principal;
mod protection;
mod registration;
mod resources;
mod resync;
mod service;
mod start;
mod token;

pub use cache::{CacheSource, IntrospectionCache, IntrospectionCacheBuilder};
pub use challenge::{ChallengeError, UNREACHABLE_WARNING, UmaChallenge, parse_uma_challenge};
pub use clock::{Clock, FixedClock, SystemClock};
pub use dialect::{Dialect, ParseDialectError};
pub use discovery::{DiscoveryDocument, WELL_KNOWN_PATH};
pub use error::{Error, ErrorKind};
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub use extract::MissingPrincipal;
pub use future::ResponseFuture;
pub use gate::{AsEndpoint, AsHealth, BreakerState, EndpointHealth};
pub use introspect::{Introspection, ParseError, Permission};
#[cfg(feature = "jwt")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
pub use jwt::{JwtValidation, RptValidation};
pub use layer::{Discover, UmaLayer, UmaLayerBuilder};
pub use method_override::{MethodOverride, strip_method_override};
pub use pipeline::Unmapped;
pub use principal::{Rejection, UmaPrincipal};
pub use protection::introspection::IntrospectionAuth;
pub use protection::permission::PermissionBody;
pub use protection::token::{ClientAuth, PatGrant};
pub use registration::{
    RegisteredResource, ResourceChange, ResourceRegistry, ResourceSync, ResourceSyncMode,
};
pub use resources::{
    EnforcementMode, PathError, RequestInfo, Resolution, ResourceDecl, ResourceMap,
    ResourceMapError, ResourceRef, ResourceResolver, Route, ScopeMode,
};
pub use resync::UnknownResource;
pub use service::Uma;
pub use start::{StartAttempt, StartRetry};
pub use token::{ClientSecret, Fingerprint, MAX_TOKEN_LEN, Pat, Rpt};

// The README's code uses `tower_uma::axum`.
#[cfg(all(doctest, feature = "axum"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
