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
//! - A request with several `Host` lines, a `Host` (or target authority) that is not
//!   `host[:port]` (user info, an empty or non-numeric port), a target's authority that
//!   differs from its `Host`, or a normalised path that lies under a tenant's prefix that its
//!   path as received does not (`//globex/…`), is refused with **`400`**
//!   ([`Rejection::BadRequest`](crate::Rejection::BadRequest)) before any AS call, whatever
//!   the tenants match on: the match reads the host and path the inner service reads (RFC 9112
//!   §3.2). So is an HTTP/1.1 request with no host at all (no `Host`, no absolute-form
//!   target) when some configured tenant matches on the host; without such a tenant it is
//!   matched as a request without a host.
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
//! - One tenant's AS down at start holds no other tenant back: that tenant is *pending*, its
//!   requests get `403` + `Warning` while it is built in the background (see
//!   [`TenantLayerBuilder::build`]).
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
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
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
//! let router: axum::Router = axum::Router::new()
//!     .route("/albums/{id}", axum::routing::get(|| async { "an album" }));
//! // Around the whole router, not `Router::layer`: globex's prefix is stripped, and axum
//! // must route the stripped path.
//! let app = tower::Layer::layer(&layer, router);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(
//!     listener,
//!     axum::ServiceExt::<axum::extract::Request>::into_make_service(app),
//! )
//! .await?;
//! # Ok(()) }
//! ```
//!
//! **Wrap the router when a prefix is stripped.** axum runs the layers added with
//! `Router::layer` after it has routed the request, so it would route the path as received
//! (`/globex/albums/1`, no such route) while the tenant's map decided on the stripped
//! `/albums/1`; wrapping the router (`layer.layer(router)`, or `ServiceBuilder`) strips the
//! prefix first, so the router routes what was decided. With the `axum` feature, a tenant
//! layer that strips a prefix of a request axum's router already matched to a route logs an
//! ERROR (once) and answers `500`.

mod matcher;
mod service;

use std::fmt;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use http::{HeaderMap, Method, Uri};
use tokio::sync::Notify;
use tracing::Instrument;

pub use self::matcher::TenantMatch;
pub use self::service::Tenants;
use crate::error::Error;
use crate::pipeline::Pipeline;
use crate::start::StartRetry;
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
///
/// Cloning is one reference-count increment: a configured tenant's requests share one.
#[derive(Clone)]
pub struct Tenant(Arc<TenantSeen>);

/// What a [`Tenant`] holds, behind its one `Arc`.
#[derive(PartialEq, Eq)]
struct TenantSeen {
    name: Box<str>,
    stripped_prefix: Option<Box<str>>,
}

impl Tenant {
    pub(crate) fn new(name: &str, stripped_prefix: Option<&str>) -> Self {
        Self(Arc::new(TenantSeen {
            name: name.into(),
            stripped_prefix: stripped_prefix.map(Box::from),
        }))
    }

    /// The tenant's name (as configured, or as the resolver named it).
    #[must_use]
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// The path prefix removed from the request (`/globex`), when the match or the resolver's
    /// choice strips one (uma-proxy sends it upstream as `X-Forwarded-Prefix`).
    #[must_use]
    pub fn stripped_prefix(&self) -> Option<&str> {
        self.0.stripped_prefix.as_deref()
    }
}

impl PartialEq for Tenant {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
    }
}

impl Eq for Tenant {}

impl fmt::Debug for Tenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tenant")
            .field("name", &self.name())
            .field("stripped_prefix", &self.stripped_prefix())
            .finish()
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
    /// Each configured tenant is tried once, whatever its builder's
    /// [`start_retry`](UmaLayerBuilder::start_retry) policy. A tenant whose build fails
    /// because its AS cannot be reached ([`Error::is_transient`]: no connection, a timeout,
    /// a `5xx` or `429`) does not hold the others back: it is *pending* (logged at WARN,
    /// listed by [`TenantLayer::pending_tenants`]), its requests get `403` + `Warning`
    /// (the AS-unreachable answer, Grant §3.2.2 fail-closed; no AS call, no wait), and it
    /// is built again in a background task, with the backoff of its builder's start-retry
    /// policy (without the policy's total wait) or [`StartRetry::forever`]'s, until it
    /// succeeds; from then on it serves like the others. Should its AS refuse the build
    /// once reachable (a wrong secret), that is logged at WARN and tried again every 30 s.
    /// The background task needs a Tokio runtime and ends when the layer is dropped.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`](crate::error::ErrorKind::Config) for no tenant and no resolver,
    /// duplicate names, a match without conditions or with a bad prefix, a template without
    /// a resolver, or `max_live_tenants(0)` with a template; otherwise the first tenant's
    /// build error that is not transient (a configuration error, a refusal by its AS), with
    /// the tenant's name in its message.
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
            .map(|(name, matches, mut builder)| async move {
                let label: Arc<str> = Arc::from(name.as_str());
                let policy = builder.take_start_retry();
                let builder = builder.metric_tenant(Arc::clone(&label));
                let slot = Arc::new(OnceLock::new());
                let pending = match builder.clone().build().await {
                    Ok(layer) => {
                        let _ = slot.set(layer);
                        None
                    }
                    Err(e) if e.is_transient() && !e.is_config() => {
                        tracing::warn!(
                            tenant = %name,
                            error = format_args!("{e:#}"),
                            "the tenant's authorization server cannot be reached; the tenant's \
                             requests are refused (403) while it is built in the background"
                        );
                        Some(Pending {
                            builder,
                            policy: policy.unwrap_or_else(StartRetry::forever),
                        })
                    }
                    Err(e) => {
                        return Err(Error::new(e.kind(), format!("tenant `{name}`"))
                            .transient(e.is_transient())
                            .with_source(e));
                    }
                };
                Ok::<_, Error>((
                    Configured {
                        seen: Tenant::new(&name, matches.stripped()),
                        name: label,
                        matches,
                        layer: slot,
                    },
                    pending,
                ))
            });
        let (fixed, pending): (Vec<_>, Vec<_>) = futures_util::future::try_join_all(builds)
            .await?
            .into_iter()
            .unzip();
        let lazy = self
            .template
            .map(|template| service::Lazy::new(template, self.max_live, self.retry_after));
        let shared = Arc::new(service::Shared::new(fixed, self.resolver, lazy));
        for (tenant, pending) in shared.fixed().iter().zip(pending) {
            if let Some(pending) = pending {
                tokio::spawn(pending.build(
                    Arc::clone(&tenant.name),
                    Arc::downgrade(&tenant.layer),
                    Arc::clone(shared.built()),
                ));
            }
        }
        Ok(TenantLayer { shared })
    }
}

/// A configured tenant whose AS could not be reached at build: built in the background.
struct Pending {
    builder: UmaLayerBuilder,
    /// The builder's start-up retry policy (without its total wait), or
    /// [`StartRetry::forever`].
    policy: StartRetry,
}

/// How long a pending tenant whose AS refused its build waits before trying again (the
/// operator may fix the AS's side without restarting the process).
const PENDING_REFUSED_RETRY: Duration = Duration::from_secs(30);

impl Pending {
    /// Builds the tenant (retried per its policy until it succeeds, or until the layer is
    /// dropped), puts it in `slot` and tells `built`.
    async fn build(self, name: Arc<str>, slot: Weak<OnceLock<UmaLayer>>, built: Arc<Notify>) {
        let policy = self.policy.without_max_wait();
        loop {
            let attempt = || {
                let builder = self.builder.clone();
                let dropped = slot.strong_count() == 0;
                async move {
                    if dropped {
                        return Err(Error::config("the tenant layer was dropped"));
                    }
                    builder.build().await
                }
            };
            let result = crate::start::retrying(Some(&policy), "build", || Duration::ZERO, attempt)
                .instrument(tracing::info_span!("tenant_build", tenant = %name))
                .await;
            let Some(cell) = slot.upgrade() else {
                return;
            };
            match result {
                Ok(layer) => {
                    let _ = cell.set(layer);
                    built.notify_waiters();
                    tracing::info!(tenant = %name, "the tenant is built; its requests are served");
                    return;
                }
                Err(e) => tracing::warn!(
                    tenant = %name,
                    error = format_args!("{e:#}"),
                    retry_in_ms = PENDING_REFUSED_RETRY.as_millis() as u64,
                    "the tenant's build was refused; its requests stay refused (403)"
                ),
            }
            drop(cell);
            tokio::time::sleep(PENDING_REFUSED_RETRY).await;
        }
    }
}

/// The metric label of lazy tenants and of unresolved requests.
pub(crate) const OTHER: &str = "other";

/// A configured tenant: built, or pending (its AS could not be reached at build; built in
/// the background, `layer` is empty until then).
pub(crate) struct Configured {
    pub(crate) name: Arc<str>,
    pub(crate) matches: TenantMatch,
    pub(crate) layer: Arc<OnceLock<UmaLayer>>,
    /// The request extension of its requests.
    pub(crate) seen: Tenant,
}

impl Configured {
    /// Its pipeline, once built.
    pub(crate) fn pipeline(&self) -> Option<&Arc<Pipeline>> {
        self.layer.get().map(UmaLayer::pipeline)
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

    /// The layer of tenant `name`: a configured one once built (not while it is
    /// [pending](Self::pending_tenants)), or a lazy one while it is live (to read its
    /// [`as_health`](UmaLayer::as_health), its registry, or forget a token there).
    #[must_use]
    pub fn tenant(&self, name: &str) -> Option<UmaLayer> {
        self.shared.layer(name)
    }

    /// The configured tenants not built yet because their AS could not be reached at
    /// [`build`](TenantLayerBuilder::build) (their requests get `403` + `Warning` while they
    /// are built in the background), in the order they are tried.
    pub fn pending_tenants(&self) -> impl Iterator<Item = &str> {
        self.shared
            .fixed()
            .iter()
            .filter(|t| t.layer.get().is_none())
            .map(|t| &*t.name)
    }

    /// Waits until at least one configured tenant is built (at once when one is, or when no
    /// tenant is configured): a process that serves nothing useful before can become ready
    /// then, while its pending tenants are built in the background.
    pub async fn first_tenant_built(&self) {
        loop {
            let mut notified = std::pin::pin!(self.shared.built().notified());
            notified.as_mut().enable();
            let fixed = self.shared.fixed();
            if fixed.is_empty() || fixed.iter().any(|t| t.layer.get().is_some()) {
                return;
            }
            notified.await;
        }
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
