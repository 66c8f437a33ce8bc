//! Many tenants behind one layer: [`TenantLayer`] picks, for each request, the tenant it
//! belongs to and checks it with that tenant's own [`UmaLayer`].
//!
//! A SaaS API often gives each customer a realm of its own, or an authorization server (AS)
//! of its own. A tenant here is a whole UMA configuration: its issuer (discovery or endpoints),
//! [`Dialect`](crate::Dialect), client credentials and PAT, resource map and registered
//! resources, `realm` and `as_uri` for its challenges, circuit breakers, and introspection
//! cache. Each tenant is an [`UmaLayerBuilder`], built once at
//! [`TenantLayerBuilder::build`] (or, for lazy tenants, on first use).
//!
//! # Picking the tenant
//!
//! Each configured tenant has a [`TenantMatch`]: its `Host`, a path prefix (stripped or not),
//! a header, or the issuer of its JWT RPTs. Tenants are tried in the order they were added;
//! the first whose match holds takes the request. When none does, the
//! [`resolver`](TenantLayerBuilder::resolver) (a closure of yours, if set) may name a tenant:
//! a configured one, or one that the [`template`](TenantLayerBuilder::template) builds on
//! first use.
//!
//! # What stays apart
//!
//! - A request no tenant takes is refused with **`404`** ([`Rejection::UnknownTenant`](crate::Rejection::UnknownTenant), empty
//!   body, `Cache-Control: no-store`) before any call to any AS: there is no AS to name in a
//!   challenge, and the API has no such tenant. The inner service is not called.
//! - A request whose target's authority differs from its `Host`, or whose normalised path
//!   lies under a tenant's prefix that its path as received does not (`//globex/…`), is
//!   refused with **`400`** ([`Rejection::BadRequest`](crate::Rejection::BadRequest)) before
//!   any AS call: the match reads the host and path the inner service reads.
//! - Each request a tenant takes carries a [`Tenant`] in its extensions (name, stripped
//!   prefix): an inner service serving several tenants picks the data by it.
//! - A token of tenant A never grants anything in tenant B: each tenant checks tokens at its
//!   own AS (or against its own keys and issuer), keeps its own cache (a new one per tenant
//!   unless you pass one; a cache shared between tenants keeps their entries apart by issuer,
//!   client and validation settings), and decides with its own resource ids. Two realms of one
//!   Keycloak with the same resource names have different issuers and ids.
//! - One tenant's AS being down affects only that tenant: its requests get `403` + `Warning`
//!   (or a stale entry under stale-if-error) from its own circuit breakers, while the other
//!   tenants' PATs, tickets, caches and breakers are their own.
//!
//! # Lazy tenants
//!
//! With [`template`](TenantLayerBuilder::template), a tenant the resolver names that is not
//! configured is built on first use from a builder the template makes for its name (typically
//! the realm substituted into the issuer). The start-up work (discovery, PAT, resource sync)
//! runs once per tenant: concurrent first requests wait for one build. At most
//! [`max_live_tenants`](TenantLayerBuilder::max_live_tenants) are kept (least recently used
//! go first, and are built again if needed). A name outside `[A-Za-z0-9._-]{1,64}` (or `.`,
//! `..`) never reaches the template: `404`. A template that returns `None` refuses the name
//! (`404`, no AS call). A build that fails because the AS cannot be reached answers `403` +
//! `Warning`, and so does every request for that tenant during a wait
//! ([`lazy_retry_after`](TenantLayerBuilder::lazy_retry_after), 1 s by default, doubled per
//! further failure up to 30 s) without an AS call; the next request after it tries again. A
//! build the AS refuses (no such realm, a wrong secret) is logged at WARN and answers `404`,
//! without a new build for 60 s. At most [`MAX_CONCURRENT_BUILDS`] builds run at once; a
//! request that would start another is answered `403` + `Warning`. Validate names in your
//! resolver: each new name a template accepts costs a build at the AS.
//!
//! # Metrics
//!
//! Each configured tenant's `uma_decisions_total` series carry a `tenant` label with its name;
//! lazy tenants share `tenant="other"`, so the number of series stays bounded. Requests no
//! tenant takes are counted as `uma_decisions_total{outcome="no_tenant",tenant="other"}`.
//!
//! # Example
//!
//! ```no_run
//! use tower_uma::tenant::{TenantLayer, TenantMatch};
//! use tower_uma::{ResourceDecl, ResourceMap, Route, UmaLayer};
//!
//! # async fn run() -> Result<(), tower_uma::Error> {
//! let map = || {
//!     ResourceMap::new().route(
//!         Route::new("/albums/{id}")
//!             .declare(ResourceDecl::new("album", ["view"]))
//!             .scopes(http::Method::GET, ["view"]),
//!     )
//! };
//! let layer = TenantLayer::builder()
//!     .tenant(
//!         "acme",
//!         TenantMatch::default().host("acme.api.example.com"),
//!         UmaLayer::discover("https://sso.example.com/realms/acme", "photo-api", "s1")
//!             .resources(map()),
//!     )
//!     .tenant(
//!         "globex",
//!         TenantMatch::default().path_prefix("/globex").strip_prefix(true),
//!         UmaLayer::discover("https://globex-as.example.net", "photo-api", "s2")
//!             .resources(map()),
//!     )
//!     .build()
//!     .await?;
//! let app: axum::Router = axum::Router::new()
//!     .route("/albums/{id}", axum::routing::get(|| async { "an album" }))
//!     .layer(layer);
//! # let _ = app; Ok(()) }
//! ```

mod matcher;
mod service;

use std::fmt;
use std::sync::Arc;

use http::{HeaderMap, Method, Uri};

pub use self::matcher::TenantMatch;
pub use self::service::Tenants;
use crate::error::Error;
use crate::pipeline::Pipeline;
use crate::{UmaLayer, UmaLayerBuilder};

/// The default of [`TenantLayerBuilder::max_live_tenants`].
pub const DEFAULT_MAX_LIVE_TENANTS: u64 = 100;

/// The default of [`TenantLayerBuilder::lazy_retry_after`].
pub const DEFAULT_LAZY_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// How many lazy tenants are built at once at most; a request that would start one more build
/// is answered `403` + `Warning` (and not remembered as a failure).
pub const MAX_CONCURRENT_BUILDS: usize = 8;

/// What a [`resolver`](TenantLayerBuilder::resolver) sees of a request. Its `Debug` shows the
/// method, the URI and the header names only (never a value: the bearer token is one).
#[derive(Clone, Copy)]
#[non_exhaustive]
pub struct TenantRequest<'a> {
    /// The method.
    pub method: &'a Method,
    /// The URI as received.
    pub uri: &'a Uri,
    /// The headers (the bearer token among them: never log it).
    pub headers: &'a HeaderMap,
}

impl fmt::Debug for TenantRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantRequest")
            .field("method", self.method)
            .field("uri", self.uri)
            .field(
                "header_names",
                &self.headers.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// The tenant a [`TenantLayer`] picked for a request, in the request's extensions for the
/// inner service (`axum::Extension<Tenant>`): its name, and the path prefix removed from the
/// request, if one was. An inner service that serves several tenants' data from one store must
/// pick the data by this name (uma-proxy sends it upstream as `X-Uma-Tenant`), never by a
/// `Host` or path of its own reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    name: Arc<str>,
    stripped_prefix: Option<Arc<str>>,
}

impl Tenant {
    pub(crate) fn new(name: Arc<str>, stripped_prefix: Option<Arc<str>>) -> Self {
        Self {
            name,
            stripped_prefix,
        }
    }

    /// The tenant's name (as configured, or as the resolver named it).
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The path prefix removed from the request (`/globex`), when the match or the resolver's
    /// choice strips one (uma-proxy sends it upstream as `X-Forwarded-Prefix`).
    #[must_use]
    pub fn stripped_prefix(&self) -> Option<&str> {
        self.stripped_prefix.as_deref()
    }
}

/// The tenant a [`resolver`](TenantLayerBuilder::resolver) names for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct TenantChoice {
    name: String,
    strip_prefix: Option<String>,
}

impl TenantChoice {
    /// The tenant named `name`: a configured one, or one the template builds.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            strip_prefix: None,
        }
    }

    /// Removes `prefix` from the path before the tenant's layer and the inner service see the
    /// request (only when the path is `prefix` or starts with `prefix/`).
    pub fn strip_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.strip_prefix = Some(prefix.into());
        self
    }

    /// The tenant's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }
}

type ResolveFn = dyn Fn(&TenantRequest<'_>) -> Option<TenantChoice> + Send + Sync;
type TemplateFn = dyn Fn(&str) -> Option<UmaLayerBuilder> + Send + Sync;

/// Configures a [`TenantLayer`]: the tenants, how requests are matched to them, and lazy
/// tenants. See the [module documentation](self).
#[must_use]
pub struct TenantLayerBuilder {
    tenants: Vec<(String, TenantMatch, UmaLayerBuilder)>,
    resolver: Option<Arc<ResolveFn>>,
    template: Option<Arc<TemplateFn>>,
    max_live: u64,
    retry_after: std::time::Duration,
}

impl fmt::Debug for TenantLayerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantLayerBuilder")
            .field(
                "tenants",
                &self
                    .tenants
                    .iter()
                    .map(|(n, m, _)| (n, m))
                    .collect::<Vec<_>>(),
            )
            .field("resolver", &self.resolver.is_some())
            .field("template", &self.template.is_some())
            .field("max_live", &self.max_live)
            .field("retry_after", &self.retry_after)
            .finish()
    }
}

impl TenantLayerBuilder {
    /// Adds tenant `name`, which takes the requests `matches` describes, checked by the layer
    /// `builder` makes. Names must be unique; a tenant added earlier is tried first.
    pub fn tenant(
        mut self,
        name: impl Into<String>,
        matches: TenantMatch,
        builder: UmaLayerBuilder,
    ) -> Self {
        self.tenants.push((name.into(), matches, builder));
        self
    }

    /// Names the tenant of requests no configured [`TenantMatch`] takes: a configured tenant
    /// by its name, or a lazy one (see [`template`](Self::template)). `None` leaves the request
    /// unresolved (`404`). Runs on every such request, before any AS call: keep it cheap.
    pub fn resolver(
        mut self,
        resolver: impl Fn(&TenantRequest<'_>) -> Option<TenantChoice> + Send + Sync + 'static,
    ) -> Self {
        self.resolver = Some(Arc::new(resolver));
        self
    }

    /// Builds tenants the resolver names that are not configured, on first use: `template`
    /// gets the name and returns the builder of its layer (or `None` to refuse the name).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_uma::tenant::{TenantChoice, TenantLayer};
    /// use tower_uma::UmaLayer;
    ///
    /// // `/t/{realm}/…`: one Keycloak realm per customer, built when first asked for.
    /// let builder = TenantLayer::builder()
    ///     .resolver(|req| {
    ///         let realm = req.uri.path().strip_prefix("/t/")?.split('/').next()?;
    ///         let ok = !realm.is_empty() && realm.bytes().all(|b| b.is_ascii_alphanumeric());
    ///         ok.then(|| TenantChoice::new(realm).strip_prefix(format!("/t/{realm}")))
    ///     })
    ///     .template(|realm| {
    ///         Some(UmaLayer::discover(
    ///             format!("https://sso.example.com/realms/{realm}"),
    ///             "photo-api",
    ///             "secret",
    ///         ))
    ///     })
    ///     .max_live_tenants(50);
    /// # let _ = builder;
    /// ```
    pub fn template(
        mut self,
        template: impl Fn(&str) -> Option<UmaLayerBuilder> + Send + Sync + 'static,
    ) -> Self {
        self.template = Some(Arc::new(template));
        self
    }

    /// How many lazily built tenants are kept at most; the least recently used go first.
    /// Configured tenants do not count. Defaults to [`DEFAULT_MAX_LIVE_TENANTS`] (100).
    pub fn max_live_tenants(mut self, max: u64) -> Self {
        self.max_live = max;
        self
    }

    /// How long a lazy tenant whose build failed because its AS could not be reached answers
    /// `403` + `Warning` without trying again; doubled after each further failure, up to
    /// 30 seconds (or `after`, if longer). Defaults to [`DEFAULT_LAZY_RETRY_AFTER`] (1 s). A
    /// build the AS refused (no such realm, a wrong secret) is not tried again for 60 seconds
    /// (`404` meanwhile).
    pub fn lazy_retry_after(mut self, after: std::time::Duration) -> Self {
        self.retry_after = after;
        self
    }

    /// Builds every configured tenant's layer (discovery, PAT, resource sync; each per its
    /// builder, concurrently) and returns the layer.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`](crate::error::ErrorKind::Config) for no tenant and no resolver,
    /// duplicate names, a match without conditions or with a bad prefix, a template without
    /// a resolver, or `max_live_tenants(0)` with a template; otherwise the first tenant's
    /// build error, with the tenant's name in its message. The configured tenants are built
    /// together and all must succeed: one tenant's AS down at start fails (or, with a
    /// builder that waits for its AS, delays) the whole layer; build lazy tenants for ASes
    /// that may be down.
    pub async fn build(self) -> Result<TenantLayer, Error> {
        if self.tenants.is_empty() && self.resolver.is_none() {
            return Err(Error::config(
                "a TenantLayer needs tenants (.tenant(name, match, builder)) or a resolver",
            ));
        }
        if self.template.is_some() && self.resolver.is_none() {
            return Err(Error::config(
                "a template builds the tenants a resolver names: set .resolver(...) too",
            ));
        }
        if self.template.is_some() && self.max_live == 0 {
            return Err(Error::config(
                "max_live_tenants must be at least 1 with a template",
            ));
        }
        for (i, (name, matches, _)) in self.tenants.iter().enumerate() {
            matches.check(name)?;
            if name.is_empty() || name == OTHER {
                return Err(Error::config(format!(
                    "a tenant's name must be neither empty nor `{OTHER}` (the metric label of \
                     the others)"
                )));
            }
            if self.tenants[..i].iter().any(|(n, _, _)| n == name) {
                return Err(Error::config(format!("two tenants are named `{name}`")));
            }
            if let Some((earlier, _, _)) =
                self.tenants[..i].iter().find(|(_, m, _)| m.covers(matches))
            {
                return Err(Error::config(format!(
                    "tenant `{earlier}`, tried first, takes every request of tenant `{name}` \
                     (the same match, or a wider one): `{name}` would never take a request"
                )));
            }
        }
        let builds = self
            .tenants
            .into_iter()
            .map(|(name, matches, builder)| async move {
                let label: Arc<str> = Arc::from(name.as_str());
                let layer = builder
                    .metric_tenant(Arc::clone(&label))
                    .build()
                    .await
                    .map_err(|e| {
                        Error::new(e.kind(), format!("tenant `{name}`"))
                            .transient(e.is_transient())
                            .with_source(e)
                    })?;
                Ok::<_, Error>(Configured {
                    seen: Tenant::new(Arc::clone(&label), matches.stripped().map(Arc::from)),
                    name: label,
                    matches,
                    layer,
                })
            });
        let fixed = futures_util::future::try_join_all(builds).await?;
        let lazy = self
            .template
            .map(|template| service::Lazy::new(template, self.max_live, self.retry_after));
        Ok(TenantLayer {
            shared: Arc::new(service::Shared::new(fixed, self.resolver, lazy)),
        })
    }
}

/// The metric label of lazy tenants and of unresolved requests.
pub(crate) const OTHER: &str = "other";

/// A configured tenant, built.
pub(crate) struct Configured {
    pub(crate) name: Arc<str>,
    pub(crate) matches: TenantMatch,
    pub(crate) layer: UmaLayer,
    /// The request extension of its requests.
    pub(crate) seen: Tenant,
}

impl Configured {
    pub(crate) fn pipeline(&self) -> &Arc<Pipeline> {
        self.layer.pipeline()
    }
}

/// A Tower layer that checks each request with the [`UmaLayer`] of the tenant it belongs to;
/// see the [module documentation](self). Cloning is an `Arc` clone.
#[derive(Clone)]
#[must_use]
pub struct TenantLayer {
    shared: Arc<service::Shared>,
}

impl fmt::Debug for TenantLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantLayer")
            .field("tenants", &self.shared.names().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl TenantLayer {
    /// Starts a configuration with no tenants.
    pub fn builder() -> TenantLayerBuilder {
        TenantLayerBuilder {
            tenants: Vec::new(),
            resolver: None,
            template: None,
            max_live: DEFAULT_MAX_LIVE_TENANTS,
            retry_after: DEFAULT_LAZY_RETRY_AFTER,
        }
    }

    /// The layer of tenant `name`: a configured one, or a lazy one while it is live (to read
    /// its [`as_health`](UmaLayer::as_health), its registry, or forget a token there).
    #[must_use]
    pub fn tenant(&self, name: &str) -> Option<UmaLayer> {
        self.shared.layer(name)
    }

    /// The names of the configured tenants, in the order they are tried.
    pub fn tenant_names(&self) -> impl Iterator<Item = &str> {
        self.shared.names()
    }

    /// Forgets the cached introspection result of `token` in every tenant (configured and
    /// live), for revocation hooks that do not know the tenant.
    pub fn forget_token(&self, token: &str) {
        self.shared.forget_token(token);
    }
}

impl<S> tower_layer::Layer<S> for TenantLayer {
    type Service = Tenants<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Tenants::new(inner, Arc::clone(&self.shared))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_request_shows_no_header_value() {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::AUTHORIZATION,
            http::HeaderValue::from_static("Bearer secret-rpt"),
        );
        let uri = Uri::from_static("/t/a/albums/1");
        let req = TenantRequest {
            method: &Method::GET,
            uri: &uri,
            headers: &headers,
        };
        let shown = format!("{req:?}");
        assert!(!shown.contains("secret-rpt"), "{shown}");
        assert!(
            shown.contains("authorization") && shown.contains("/t/a/albums/1"),
            "{shown}"
        );
    }
}
