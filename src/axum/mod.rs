//! One route table for axum (feature `axum`): [`UmaRouter`] takes each route once, with its
//! handlers and its UMA rule, and builds from it both axum's router and the layer's
//! [`ResourceMap`].
//!
//! With a plain axum `Router` and a separate map, every path is written twice, and the two
//! drift apart: a path spelled differently in the map answers `403` to every request, or
//! worse, a handler runs under the rule of another template. With [`UmaRouter`] the path is
//! written once, so neither can happen:
//!
//! - each route's path goes to axum's router as written and to the map in the layer's
//!   spelling (`{*rest}` becomes `*`), and its rule is the closure's [`Route`] for that
//!   template;
//! - [`build`](UmaRouter::build) gives the map to the layer builder, builds the layer and puts
//!   it on the router: the layer never sees another map;
//! - each route's handlers sit behind a guard that lets a request reach them only when the
//!   layer decided that request by that route's rule, whatever its spelling (the layer's path
//!   normalisation and matching stay what they are; the guard checks that axum agrees with
//!   them, see [`Rejection::RouteMismatch`](crate::Rejection::RouteMismatch)).
//!
//! # Example
//!
//! ```no_run
//! use axum::routing::get;
//! use http::Method;
//! use tower_uma::axum::UmaRouter;
//! use tower_uma::{ResourceDecl, UmaLayer, UmaPrincipal};
//!
//! async fn show(p: UmaPrincipal) -> String {
//!     format!("an album, shown to {}", p.subject().unwrap_or_default())
//! }
//!
//! async fn remove() {}
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let (app, _uma) = UmaRouter::new()
//!     .route("/albums/{id}", get(show).delete(remove), |rule| {
//!         rule.declare(ResourceDecl::new("album", ["view", "delete"]))
//!             .scopes(Method::GET, ["view"])
//!             .scopes(Method::DELETE, ["delete"])
//!     })
//!     .public("/health", get(|| async { "ok" }))
//!     .build(
//!         UmaLayer::discover("https://as.example.com", "photo-api", "photo-api-secret")
//!             .realm("photos"),
//!     )
//!     .await?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```

mod guard;
#[cfg(test)]
mod tests;

use std::fmt;

use ::axum::Router;
use ::axum::routing::MethodRouter;

use self::guard::RouteGuardLayer;
use crate::error::Error;
pub use crate::extract::MissingPrincipal;
use crate::layer::{UmaLayer, UmaLayerBuilder};
use crate::pipeline::Enforcement;
use crate::resources::{ResourceMap, ResourceMapError, Route};

/// An axum router and the layer's [`ResourceMap`], declared together: one path per route, its
/// handlers and its rule side by side.
///
/// Add routes with [`route`](Self::route) (protected) and [`public`](Self::public), combine
/// tables with [`merge`](Self::merge) and [`nest`](Self::nest), then
/// [`build`](Self::build) with a layer builder: it returns the axum `Router` with the layer
/// on it, and the layer (for [`registry`](UmaLayer::registry),
/// [`as_health`](UmaLayer::as_health), …). Problems are reported by
/// [`validate`](Self::validate) and by `build`, before the authorization server is called.
///
/// # Paths
///
/// Paths are axum's: literal segments, `{name}` segments and a last `{*name}` segment; the
/// layer matches `{*name}` as its trailing `*` (the rest of the path, which a
/// [`Route::resolver`] reads as the capture `*`). Refused, with the reason:
///
/// - what axum's router refuses: a path without a leading `/`, segments starting with `:` or
///   `*` (axum 0.7 syntax), a `{*name}` before the end, two paths that conflict (`/a/{x}` and
///   `/a/{y}`), parameters inside a segment (`/{id}.json`; the layer matches whole segments
///   only), …;
/// - the same path twice, or two paths the layer cannot tell apart (`/a/{x}` and `/A/{y}`: it
///   matches literals ignoring case and refuses requests whose rule depends on it);
/// - an empty segment or a trailing slash (`/albums/`): axum routes `/albums/` apart from
///   `/albums`, while the layer matches both alike.
///
/// # Methods
///
/// The rule lists methods as [`Route`] does; axum's `MethodRouter` routes its own. A method
/// axum routes but the rule does not list is refused by the layer with `405` (fail closed); a
/// method the rule lists but axum does not route gets axum's `405` once the layer let it
/// through. A `MethodRouter` does not say which methods it routes, so this cannot be checked
/// when the table is built.
///
/// On a [`public`](Self::public) route, a method outside `GET`, `HEAD`, `OPTIONS` and the
/// [`public_methods`](Route::public_methods) is decided by the layer by the other routes
/// matching the path (other frameworks fall through to them), but axum runs the public route's
/// handler (or its `405`): the guard refuses such requests with `403`. Make such methods
/// public, or give them their own protected route.
///
/// # The guard
///
/// The layer decides each request by one route's rule, after normalising its path (see the
/// [matching rules](ResourceMap#matching-rules)); axum's router then runs the handlers of the
/// route it matches on the path as received. They agree on every path in canonical form, and
/// the layer refuses (`400`) the spellings for which axum could run a route under another
/// rule. The guard checks the rest: a request reaches a route's handlers only when the layer
/// decided it by that route's rule. Otherwise it answers `403` with
/// [`Rejection::RouteMismatch`](crate::Rejection::RouteMismatch) and logs a WARN event
/// (method, path, both routes; never a token). This happens for spellings that two routes
/// with the same rule, or a public route, would take (`/x//albums` for `/x/{user}/albums`,
/// where the layer decided `/x/albums`), and for requests the layer let through without a rule
/// ([`Unmapped::Allow`](crate::resources::Unmapped::Allow)). Routes whose rule is never enforced are not
/// refused: under [`EnforcementMode::Disabled`](crate::EnforcementMode::Disabled) the guard
/// checks nothing, under [`EnforcementMode::Permissive`](crate::EnforcementMode::Permissive)
/// (without a route resolver) it logs and lets through. The guard matches the path once more
/// per request.
///
/// # State
///
/// `S` is the state the handlers still need, as in axum's `Router<S>`: give it with
/// [`with_state`](Self::with_state) before or with `Router::with_state` after
/// [`build`](Self::build).
///
/// Routes and fallbacks added to the built `Router` afterwards do not go through the layer
/// at all (axum's `Router::layer` wraps the routes that exist when it is called): declare
/// every route here. Layers added afterwards (tracing, timeouts, CORS) wrap the layer as
/// usual.
#[must_use]
pub struct UmaRouter<S = ()> {
    entries: Vec<Entry<S>>,
    /// The first problem found while adding routes, if any.
    error: Option<RouteTableError>,
}

/// One route: the path axum routes, its handlers and its rule (whose template is the layer's
/// spelling of the path).
struct Entry<S> {
    path: String,
    method_router: MethodRouter<S>,
    rule: Route,
}

impl<S> fmt::Debug for UmaRouter<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UmaRouter")
            .field(
                "routes",
                &self
                    .entries
                    .iter()
                    .map(|e| (&e.path, &e.rule))
                    .collect::<Vec<_>>(),
            )
            .field("error", &self.error)
            .finish()
    }
}

impl<S> Default for UmaRouter<S> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            error: None,
        }
    }
}

impl<S> UmaRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// A protected route: axum routes `path` to `method_router`, and the layer decides its
    /// requests by `rule` applied to [`Route::new`] of the path's template.
    ///
    /// `rule` gives the route its resource and scopes with [`Route`]'s methods
    /// ([`declare`](Route::declare), [`scopes`](Route::scopes), …); it must return that route,
    /// not another one (a route for another template is an error).
    ///
    /// # Example
    ///
    /// ```
    /// use axum::routing::get;
    /// use http::Method;
    /// use tower_uma::axum::UmaRouter;
    ///
    /// let table: UmaRouter = UmaRouter::new().route(
    ///     "/invoices/{id}",
    ///     get(|| async { "an invoice" }).post(|| async { "saved" }),
    ///     |rule| {
    ///         rule.resource_id("4d3c9f")
    ///             .scopes(Method::GET, ["read"])
    ///             .scopes(Method::POST, ["write"])
    ///     },
    /// );
    /// table.validate()?;
    /// # Ok::<(), tower_uma::axum::RouteTableError>(())
    /// ```
    pub fn route(
        self,
        path: &str,
        method_router: MethodRouter<S>,
        rule: impl FnOnce(Route) -> Route,
    ) -> Self {
        self.add(path, method_router, Route::new, rule)
    }

    /// A public route ([`Route::public`]): `GET`, `HEAD` and `OPTIONS` requests pass without a
    /// token. Other methods: see [methods](Self#methods).
    pub fn public(self, path: &str, method_router: MethodRouter<S>) -> Self {
        self.add(path, method_router, Route::public, |r| r)
    }

    /// A public route whose rule `rule` adjusts, for example to widen it with
    /// [`public_methods`](Route::public_methods).
    ///
    /// # Example
    ///
    /// ```
    /// use axum::routing::post;
    /// use http::Method;
    /// use tower_uma::axum::UmaRouter;
    ///
    /// let table: UmaRouter = UmaRouter::new().public_with(
    ///     "/hooks/{name}",
    ///     post(|| async { "received" }),
    ///     |rule| rule.public_methods([Method::POST]),
    /// );
    /// table.validate()?;
    /// # Ok::<(), tower_uma::axum::RouteTableError>(())
    /// ```
    pub fn public_with(
        self,
        path: &str,
        method_router: MethodRouter<S>,
        rule: impl FnOnce(Route) -> Route,
    ) -> Self {
        self.add(path, method_router, Route::public, rule)
    }

    fn add(
        mut self,
        path: &str,
        method_router: MethodRouter<S>,
        start: fn(&str) -> Route,
        rule: impl FnOnce(Route) -> Route,
    ) -> Self {
        let template = match layer_template(path) {
            Ok(template) => template,
            Err(reason) => {
                self.note(RouteTableError::InvalidPath {
                    path: path.to_owned(),
                    reason,
                });
                return self;
            }
        };
        let rule = rule(start(&template));
        if rule.template() != template {
            self.note(RouteTableError::RuleForAnotherPath {
                path: path.to_owned(),
                template: rule.template().to_owned(),
            });
            return self;
        }
        self.entries.push(Entry {
            path: path.to_owned(),
            method_router,
            rule,
        });
        self
    }

    /// Adds every route of `other`.
    ///
    /// # Example
    ///
    /// ```
    /// use axum::routing::get;
    /// use http::Method;
    /// use tower_uma::axum::{RouteTableError, UmaRouter};
    ///
    /// let albums = |path: &str| {
    ///     UmaRouter::<()>::new().route(path, get(|| async { "albums" }), |rule| {
    ///         rule.resource_id("albums").scopes(Method::GET, ["view"])
    ///     })
    /// };
    /// assert!(albums("/albums").merge(albums("/photos")).validate().is_ok());
    /// let twice = albums("/albums").merge(albums("/albums")).validate();
    /// assert!(matches!(twice, Err(RouteTableError::DuplicatePath { .. })));
    /// ```
    pub fn merge(mut self, other: Self) -> Self {
        if let Some(error) = other.error {
            self.note(error);
        }
        self.entries.extend(other.entries);
        self
    }

    /// Adds every route of `other` under `prefix` (`/v1` and `/albums/{id}` make
    /// `/v1/albums/{id}`; `/` makes `/v1`). The prefix may hold `{name}` segments, not
    /// `{*name}`, and neither ends in `/` nor is `/` (use [`merge`](Self::merge)).
    ///
    /// Unlike axum's `Router::nest`, the routes are added with their whole paths: handlers see
    /// the whole path in the request's `Uri`.
    pub fn nest(mut self, prefix: &str, other: Self) -> Self {
        if let Err(reason) = check_prefix(prefix) {
            self.note(RouteTableError::InvalidPath {
                path: prefix.to_owned(),
                reason,
            });
            return self;
        }
        if let Some(error) = other.error {
            self.note(error);
        }
        for entry in other.entries {
            let path = if entry.path == "/" {
                prefix.to_owned()
            } else {
                format!("{prefix}{}", entry.path)
            };
            match layer_template(&path) {
                Ok(template) => self.entries.push(Entry {
                    rule: entry.rule.with_template(template),
                    path,
                    method_router: entry.method_router,
                }),
                Err(reason) => self.note(RouteTableError::InvalidPath { path, reason }),
            }
        }
        self
    }

    /// Gives the handlers their state, as axum's `Router::with_state` does.
    pub fn with_state<S2>(self, state: S) -> UmaRouter<S2> {
        UmaRouter {
            entries: self
                .entries
                .into_iter()
                .map(|e| Entry {
                    path: e.path,
                    method_router: e.method_router.with_state(state.clone()),
                    rule: e.rule,
                })
                .collect(),
            error: self.error,
        }
    }

    /// Checks the table: every path one axum accepts and the layer can match alike, no path
    /// twice, every rule valid ([`ResourceMap::validate`]).
    ///
    /// # Errors
    ///
    /// The first problem found, in the order the routes were added.
    pub fn validate(&self) -> Result<(), RouteTableError> {
        self.resource_map().map(|_| ())
    }

    /// The layer's map of this table, for inspection or a dry run of the resource sync
    /// ([`UmaLayerBuilder::check_resources`]). [`build`](Self::build) makes it itself.
    ///
    /// # Errors
    ///
    /// As [`validate`](Self::validate).
    pub fn resource_map(&self) -> Result<ResourceMap, RouteTableError> {
        if let Some(error) = &self.error {
            return Err(error.clone());
        }
        let mut axum_paths = matchit::Router::new();
        let mut map = ResourceMap::new();
        for (index, entry) in self.entries.iter().enumerate() {
            let path = || entry.path.clone();
            if self.entries[..index].iter().any(|e| e.path == entry.path) {
                return Err(RouteTableError::DuplicatePath { path: path() });
            }
            axum_paths.insert(entry.path.as_str(), ()).map_err(|e| {
                RouteTableError::InvalidPath {
                    path: path(),
                    reason: format!("axum's router refuses it: {e}"),
                }
            })?;
            map = map.route(entry.rule.clone());
            map.validate().map_err(RouteTableError::Rule)?;
        }
        Ok(map)
    }

    /// Builds the layer from `layer` with this table as its map (replacing any map given to
    /// it), and returns axum's router with the layer on it, and the layer.
    ///
    /// The router routes each path to its handlers behind their [guard](Self#the-guard); the
    /// layer is put on with `Router::layer`, so it also decides the requests that no route
    /// matches (unmapped: `403` unless [`Unmapped::Allow`](crate::resources::Unmapped::Allow)).
    ///
    /// # Errors
    ///
    /// A [`ErrorKind::Config`](crate::error::ErrorKind::Config) error when the table does not
    /// [`validate`](Self::validate) (before any call to the authorization server) or when
    /// `layer` has a [`resolver`](UmaLayerBuilder::resolver), which would replace the table,
    /// or decides method overrides
    /// ([`MethodOverride::Decide`](crate::method_override::MethodOverride::Decide)), which a
    /// layer inside axum's router cannot: axum has chosen each handler by the method as sent
    /// before the layer could rewrite it; otherwise the errors of [`UmaLayerBuilder::build`].
    pub async fn build(self, layer: UmaLayerBuilder) -> Result<(Router<S>, UmaLayer), Error> {
        let map = self
            .resource_map()
            .map_err(|e| Error::config(format!("invalid route table: {e}")))?;
        if layer.method_override_setting() == crate::method_override::MethodOverride::Decide {
            return Err(Error::config(
                "UmaRouter cannot decide method overrides: axum chooses each route's handler \
                 by the method as sent, before the layer could rewrite it; keep \
                 MethodOverride::Refuse, or put a layer around a plain axum Router \
                 (UmaLayer::layer) to decide them",
            ));
        }
        let uma = layer.resources(map).build().await?;
        if uma.map().is_none() {
            return Err(Error::config(
                "the layer builder has a resolver, which replaces the route table of UmaRouter: \
                 remove .resolver(..) and give the routes that need one a Route::resolver",
            ));
        }
        let mode = uma.enforcement();
        let mut router = Router::new();
        for (index, entry) in self.entries.into_iter().enumerate() {
            let rule = &entry.rule;
            let enforcement = Enforcement::of_guarded_route(
                mode,
                rule.enforcement_override(),
                rule.has_resolver(),
            );
            let guard = RouteGuardLayer::new(&uma, index, &entry.path, enforcement);
            router = router.route(&entry.path, entry.method_router.layer(guard));
        }
        if let Some(doc) = uma.resource_metadata().cloned() {
            // RFC 9728 metadata, public by the layer's own route for it.
            let path = doc.path().to_owned();
            router = router.route(
                &path,
                axum::routing::get(move || {
                    let doc = doc.clone();
                    async move { doc.response() }
                }),
            );
        }
        Ok((router.layer(uma.clone()), uma))
    }

    fn note(&mut self, error: RouteTableError) {
        if self.error.is_none() {
            self.error = Some(error);
        }
    }
}

/// Why an [`UmaRouter`] cannot be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RouteTableError {
    /// A path that axum's router refuses, or that the layer cannot match as axum does.
    #[error("route `{path}`: {reason}")]
    #[non_exhaustive]
    InvalidPath {
        /// The path as written (with its prefix, for nested routes).
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The same path is routed twice.
    #[error("route `{path}` is declared twice")]
    #[non_exhaustive]
    DuplicatePath {
        /// The path.
        path: String,
    },
    /// A route's rule closure returned a route for another template.
    #[error(
        "route `{path}`: the rule returned a route for `{template}`; build on the route it is given"
    )]
    #[non_exhaustive]
    RuleForAnotherPath {
        /// The path of the route.
        path: String,
        /// The template of the route the closure returned.
        template: String,
    },
    /// A rule the layer's map refuses.
    #[error(transparent)]
    Rule(ResourceMapError),
}

/// The layer's template for an axum path: the same segments, `{*name}` as `*`; or why the
/// two cannot match it alike.
fn layer_template(path: &str) -> Result<String, String> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err("axum needs paths that start with `/` (`/` for the root)".to_owned());
    };
    if rest.is_empty() {
        return Ok(path.to_owned());
    }
    let segments: Vec<&str> = rest.split('/').collect();
    let mut template = String::with_capacity(path.len());
    for (index, segment) in segments.iter().enumerate() {
        if segment.is_empty() {
            return Err(
                "an empty segment or a trailing slash: axum routes `/a/` and `/a//b` \
                 apart from `/a` and `/a/b`, the layer matches them alike; leave it out"
                    .to_owned(),
            );
        }
        if segment.starts_with([':', '*']) {
            return Err(format!(
                "`{segment}`: axum refuses segments starting with `:` or `*`; capture with \
                 `{{name}}` or a last `{{*name}}`"
            ));
        }
        template.push('/');
        if segment.starts_with("{*") {
            if index + 1 != segments.len() {
                return Err(format!("`{segment}` must be the last segment"));
            }
            template.push('*');
        } else {
            template.push_str(segment);
        }
    }
    Ok(template)
}

/// Checks a [`UmaRouter::nest`] prefix.
fn check_prefix(prefix: &str) -> Result<(), String> {
    if prefix == "/" || prefix.ends_with('/') {
        return Err("a prefix is not `/` and does not end in `/` (use merge for `/`)".to_owned());
    }
    if prefix.contains("{*") {
        return Err("a prefix cannot hold a `{*name}` segment".to_owned());
    }
    layer_template(prefix).map(drop)
}
