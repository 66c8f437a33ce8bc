//! [`Tenants`], the service of a [`TenantLayer`](super::TenantLayer): picks the tenant, then
//! runs that tenant's pipeline exactly as [`Uma`](crate::Uma) does.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode};
use tower_service::Service;

use super::matcher::{LazyIssuer, has_credentials, hides_a_prefix, request_host, strip};
use super::{
    Configured, MAX_CONCURRENT_BUILDS, OTHER, TemplateFn, Tenant, TenantChoice, TenantRequest,
};
use crate::UmaLayer;
use crate::error::Error;
use crate::future::ResponseFuture;
use crate::pipeline::{Flow, Pipeline};
use crate::principal::Rejection;

/// The service a [`TenantLayer`](super::TenantLayer) wraps around yours: each request is
/// checked by its tenant's layer, or refused with `404` when no tenant takes it.
#[derive(Clone)]
pub struct Tenants<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for Tenants<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tenants")
            .field("inner", &self.inner)
            .field("tenants", &self.shared.names().collect::<Vec<_>>())
            .finish()
    }
}

impl<S> Tenants<S> {
    pub(super) fn new(inner: S, shared: Arc<Shared>) -> Self {
        Self { inner, shared }
    }

    /// A reference to the inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// Lazily built tenants: the template, the live ones, and the failed builds not to try again
/// yet.
pub(super) struct Lazy {
    template: Arc<TemplateFn>,
    live: moka::future::Cache<String, UmaLayer>,
    failed: moka::future::Cache<String, Failure>,
    /// The first wait after an unreachable AS (doubled per further failure).
    retry_after: Duration,
    /// Builds in progress (at most [`MAX_CONCURRENT_BUILDS`]).
    building: Arc<AtomicUsize>,
}

/// A failed build of a lazy tenant, remembered until `until`.
#[derive(Clone, Copy, Debug)]
struct Failure {
    until: Instant,
    /// The AS could not be reached (`403` + `Warning`), else it refused (`404`).
    unreachable: bool,
    /// The wait that was set; the next unreachable failure doubles it.
    wait: Duration,
}

/// How long a build the AS refused is not tried again.
const REFUSED_FOR: Duration = Duration::from_secs(60);
/// The longest wait after unreachable failures (unless `lazy_retry_after` is longer).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
/// How many failed names are remembered at most.
const MAX_FAILED: u64 = 10_000;

/// Whether a lazy tenant's name may reach the template: `[A-Za-z0-9._-]{1,64}`, neither `.`
/// nor `..` (it goes into issuer URLs and logs).
fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// One build slot, given back on drop.
struct BuildSlot(Arc<AtomicUsize>);

impl BuildSlot {
    fn take(building: &Arc<AtomicUsize>) -> Option<Self> {
        let taken = building
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_CONCURRENT_BUILDS).then_some(n + 1)
            })
            .is_ok();
        taken.then(|| Self(Arc::clone(building)))
    }
}

impl Drop for BuildSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Lazy {
    pub(super) fn new(template: Arc<TemplateFn>, max_live: u64, retry_after: Duration) -> Self {
        Self {
            failed: moka::future::Cache::builder()
                .max_capacity(MAX_FAILED)
                .time_to_live(REFUSED_FOR.max(MAX_RETRY_AFTER).max(retry_after))
                .build(),
            retry_after,
            building: Arc::new(AtomicUsize::new(0)),
            template,
            live: moka::future::Cache::builder()
                .max_capacity(max_live)
                // Least recently used first: moka's default (TinyLFU) may refuse a new tenant
                // when the live ones are used more often, which would build it per request.
                .eviction_policy(moka::policy::EvictionPolicy::lru())
                .build(),
        }
    }
}

/// What every clone of the layer and the service share.
pub(crate) struct Shared {
    fixed: Vec<Configured>,
    /// Told each time a pending configured tenant is built.
    built: Arc<tokio::sync::Notify>,
    /// Whether some tenant matches on a path prefix (the path is then checked normalised).
    by_prefix: bool,
    /// Whether some tenant matches on the host (an HTTP/1.1 request without one is then
    /// refused).
    by_host: bool,
    resolver: Option<Arc<super::ResolveFn>>,
    lazy: Option<Lazy>,
}

/// The tenant of a request.
enum Pick<'a> {
    Fixed(&'a Configured),
    Lazy(String),
    None,
    /// `400`: the request names several hosts or a host that is not `host[:port]`, has no
    /// host in HTTP/1.1 while a tenant matches on it, or hides a tenant's prefix in its path
    /// spelling.
    Bad,
    /// `500`: a tenant that strips its prefix took a request axum's router had already
    /// routed (the layer was added with `Router::layer`), by the path with the prefix.
    Misrouted,
}

impl Shared {
    pub(super) fn new(
        fixed: Vec<Configured>,
        resolver: Option<Arc<super::ResolveFn>>,
        lazy: Option<Lazy>,
    ) -> Self {
        Self {
            by_prefix: fixed.iter().any(|t| t.matches.prefix().is_some()),
            by_host: fixed.iter().any(|t| t.matches.host_name().is_some()),
            fixed,
            built: Arc::new(tokio::sync::Notify::new()),
            resolver,
            lazy,
        }
    }

    pub(super) fn fixed(&self) -> &[Configured] {
        &self.fixed
    }

    pub(super) fn built(&self) -> &Arc<tokio::sync::Notify> {
        &self.built
    }

    pub(super) fn names(&self) -> impl Iterator<Item = &str> {
        self.fixed.iter().map(|t| &*t.name)
    }

    pub(super) fn layer(&self, name: &str) -> Option<UmaLayer> {
        if let Some(t) = self.fixed.iter().find(|t| &*t.name == name) {
            return t.layer.get().cloned();
        }
        let live = &self.lazy.as_ref()?.live;
        live.iter()
            .find(|(key, _)| key.as_str() == name)
            .map(|(_, layer)| layer)
    }

    pub(super) fn forget_token(&self, token: &str) {
        for layer in self.fixed.iter().filter_map(|t| t.layer.get()) {
            layer.forget_token(token);
        }
        if let Some(lazy) = &self.lazy {
            for (_, layer) in lazy.live.iter() {
                layer.forget_token(token);
            }
        }
    }

    /// The request's tenant; strips the path prefix when the tenant's match (or the
    /// resolver's choice) says so, and puts the [`Tenant`] in the request's extensions.
    ///
    /// Runs on every request: the configured tenants' path is kept small (the resolver's is
    /// [`resolve`](Self::resolve), out of line).
    fn pick<B>(&self, req: &mut Request<B>) -> Pick<'_> {
        // Which host and which path: one reading for the match, the map, the forwarder and
        // the inner service (RFC 9112 §3.2.2 lets the target's authority override `Host`).
        // Several `Host` lines, one that is not `host[:port]`, or one that differs from the
        // target's authority: 400 whatever the tenants match on (RFC 9112 §3.2).
        let Ok(host) = request_host(req) else {
            return Pick::Bad;
        };
        let path = req.uri().path();
        // No host at all in HTTP/1.1 (RFC 9112 §3.2) while a tenant matches on it: 400 rather
        // than letting another tenant take it.
        if (host.is_none() && self.by_host && req.version() == http::Version::HTTP_11)
            || (self.by_prefix
                && hides_a_prefix(path, self.fixed.iter().filter_map(|t| t.matches.prefix())))
        {
            return Pick::Bad;
        }
        let mut issuer = LazyIssuer::new(req.headers());
        let Some(t) = self
            .fixed
            .iter()
            .find(|t| t.matches.matches_at(req, path, host, &mut issuer))
        else {
            return self.resolve(req);
        };
        if let Some(prefix) = t.matches.stripped() {
            if crate::method_override::routed_by_axum(req) {
                return Pick::Misrouted;
            }
            strip(req, prefix);
        }
        req.extensions_mut().insert(t.seen.clone());
        Pick::Fixed(t)
    }

    /// The tenant the resolver names for a request no configured match takes, if any.
    #[inline(never)]
    fn resolve<B>(&self, req: &mut Request<B>) -> Pick<'_> {
        let Some(resolver) = &self.resolver else {
            return Pick::None;
        };
        let view = TenantRequest {
            method: req.method(),
            uri: req.uri(),
            headers: req.headers(),
        };
        let Some(TenantChoice { name, strip_prefix }) = resolver(&view) else {
            return Pick::None;
        };
        let fixed = self.fixed.iter().find(|t| *t.name == *name);
        if fixed.is_none() && self.lazy.is_none() {
            return Pick::None;
        }
        let stripped = strip_prefix.filter(|prefix| strip(req, prefix));
        if stripped.is_some() && crate::method_override::routed_by_axum(req) {
            return Pick::Misrouted;
        }
        req.extensions_mut()
            .insert(Tenant::new(&name, stripped.as_deref()));
        match fixed {
            Some(t) => Pick::Fixed(t),
            None => Pick::Lazy(name),
        }
    }

    /// The layer of lazy tenant `name`, built once (concurrent callers wait for the same
    /// build).
    ///
    /// # Errors
    ///
    /// The response for a name the template refuses, or a build that failed.
    async fn lazy_layer<R: Default>(&self, name: String) -> Result<UmaLayer, Response<R>> {
        let Some(lazy) = &self.lazy else {
            return Err(unresolved(None));
        };
        if let Some(layer) = lazy.live.get(&name).await {
            return Ok(layer);
        }
        if !valid_name(&name) {
            return Err(unresolved(None));
        }
        let now = Instant::now();
        let failed = lazy.failed.get(&name).await;
        if let Some(f) = failed.filter(|f| f.until > now) {
            // Not tried again yet: no AS call.
            return Err(if f.unreachable {
                crate::metrics::tenant_decision(OTHER, "unreachable");
                unreachable_response()
            } else {
                unresolved(None)
            });
        }
        // The template runs inside the one build that concurrent first requests share.
        let template = Arc::clone(&lazy.template);
        let building = Arc::clone(&lazy.building);
        let key = name.clone();
        let build = async move {
            let Some(_slot) = BuildSlot::take(&building) else {
                return Err(Error::config(TOO_MANY_BUILDS).transient(true));
            };
            let Some(builder) = template(&key) else {
                return Err(Error::config(REFUSED_NAME));
            };
            builder.metric_tenant(Arc::from(OTHER)).build().await
        };
        let error = match lazy.live.try_get_with(name.clone(), build).await {
            Ok(layer) => {
                // The bound holds from each new tenant on (moka evicts lazily otherwise).
                lazy.live.run_pending_tasks().await;
                if failed.is_some() {
                    lazy.failed.invalidate(&name).await;
                }
                return Ok(layer);
            }
            Err(e) => e,
        };
        let message = error.to_string();
        if message == REFUSED_NAME {
            return Err(unresolved(None));
        }
        if message == TOO_MANY_BUILDS {
            tracing::warn!(tenant = %name, "too many tenants are being built; its request is refused");
            crate::metrics::tenant_decision(OTHER, "unreachable");
            return Err(unreachable_response());
        }
        let unreachable = error.is_transient();
        let wait = match failed {
            _ if !unreachable => REFUSED_FOR,
            Some(f) if f.unreachable => (f.wait * 2).min(MAX_RETRY_AFTER.max(lazy.retry_after)),
            _ => lazy.retry_after,
        };
        lazy.failed
            .insert(
                name.clone(),
                Failure {
                    until: now + wait,
                    unreachable,
                    wait,
                },
            )
            .await;
        if unreachable {
            tracing::warn!(
                tenant = %name,
                error = format_args!("{error:#}"),
                retry_in_ms = wait.as_millis() as u64,
                "the tenant's authorization server cannot be reached; its request is refused"
            );
            crate::metrics::tenant_decision(OTHER, "unreachable");
            Err(unreachable_response())
        } else {
            tracing::warn!(
                tenant = %name,
                error = format_args!("{error:#}"),
                retry_in_ms = wait.as_millis() as u64,
                "the tenant could not be built; its request is refused as unresolved"
            );
            Err(unresolved(None))
        }
    }
}

/// The `403` + `Warning` of a tenant that cannot be built now (lazy, or configured and
/// pending).
fn unreachable_response<R: Default>() -> Response<R> {
    crate::pipeline::layer_response(StatusCode::FORBIDDEN, Rejection::AsUnreachable, None)
}

/// The error of a build not started because [`MAX_CONCURRENT_BUILDS`] are running.
const TOO_MANY_BUILDS: &str = "too many tenants are being built at once";

/// The error of a name the template refuses (answered `404` without a log line).
const REFUSED_NAME: &str = "the template builds no tenant of this name";

/// The `404` of a request no tenant takes, recorded once.
fn unresolved<R: Default>(req: Option<(&http::Method, &str, bool)>) -> Response<R> {
    crate::metrics::tenant_decision(OTHER, "no_tenant");
    if let Some((method, path, credentials)) = req {
        tracing::debug!(
            method = %method,
            path,
            credentials,
            outcome = "no_tenant",
            "decided"
        );
    }
    crate::pipeline::layer_response(StatusCode::NOT_FOUND, Rejection::UnknownTenant, None)
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Tenants<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    // Not inlined into the caller's `call`: callgrind counts two more copies of the request
    // (240 bytes each) when it is.
    #[inline(never)]
    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        // The configured tenants' path stays small; the others are out of line (the lazy
        // one's future alone is kilobytes of stack).
        match self.shared.pick(&mut req) {
            Pick::Fixed(tenant) => match tenant.pipeline() {
                Some(pipeline) => crate::service::dispatch(&mut self.inner, pipeline, req),
                None => pending_tenant(tenant),
            },
            Pick::Lazy(name) => self.call_lazy(name, req),
            Pick::Bad => bad_request(),
            Pick::Misrouted => misrouted(),
            Pick::None => no_tenant(&req),
        }
    }
}

impl<S> Tenants<S> {
    /// A request of lazy tenant `name`: its layer is built first, if it is not live.
    #[inline(never)]
    fn call_lazy<ReqBody, ResBody>(
        &mut self,
        name: String,
        mut req: Request<ReqBody>,
    ) -> ResponseFuture<S, ReqBody>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
        ReqBody: Send + 'static,
        ResBody: Default + Send + 'static,
    {
        let shared = Arc::clone(&self.shared);
        let authorize = async move {
            let layer = shared.lazy_layer(name).await?;
            let pipeline: &Arc<Pipeline> = layer.pipeline();
            match pipeline.start(&mut req) {
                Flow::Pass => Ok(req),
                Flow::Respond(response) => Err(*response),
                Flow::Pending(pending) => pending.run(Arc::clone(pipeline), req).await,
            }
        };
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::authorizing(Box::pin(authorize), inner)
    }
}

/// The `403` + `Warning` of a configured tenant that is pending (its AS could not be reached
/// at build; no AS call here).
#[cold]
#[inline(never)]
fn pending_tenant<S, ReqBody, ResBody>(tenant: &Configured) -> ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Default,
{
    crate::metrics::tenant_decision(&tenant.name, "unreachable");
    tracing::debug!(tenant = %tenant.name, outcome = "unreachable", "decided");
    ResponseFuture::ready(unreachable_response())
}

/// The `400` of a request whose host cannot be read as one (see [`Pick::Bad`]) or that hides
/// a tenant's prefix.
#[cold]
#[inline(never)]
fn bad_request<S, ReqBody, ResBody>() -> ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Default,
{
    crate::metrics::tenant_decision(OTHER, "bad_request");
    tracing::debug!(outcome = "bad_request", "decided");
    ResponseFuture::ready(crate::pipeline::layer_response(
        StatusCode::BAD_REQUEST,
        Rejection::BadRequest,
        None,
    ))
}

/// The `500` of a request a stripping tenant took after axum's router had routed it (see
/// [`Pick::Misrouted`]); logged at ERROR once per process.
#[cold]
#[inline(never)]
fn misrouted<S, ReqBody, ResBody>() -> ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Default,
{
    static LOGGED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !LOGGED.swap(true, Ordering::Relaxed) {
        tracing::error!(
            "a tenant that strips its path prefix took a request axum's router had already \
             routed by the path with the prefix (the TenantLayer was added with Router::layer \
             or route_layer): such requests are refused with 500; wrap the whole router in \
             the layer (`tenant_layer.layer(router)`) so that axum routes the stripped path \
             (logged once)"
        );
    }
    crate::metrics::tenant_decision(OTHER, "misconfigured");
    tracing::debug!(outcome = "misconfigured", "decided");
    ResponseFuture::ready(crate::pipeline::layer_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        Rejection::Misconfigured,
        None,
    ))
}

/// The `404` of a request no tenant takes.
#[cold]
#[inline(never)]
fn no_tenant<S, ReqBody, ResBody>(req: &Request<ReqBody>) -> ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Default,
{
    let seen = (
        req.method(),
        req.uri().path(),
        has_credentials(req.headers()),
    );
    ResponseFuture::ready(unresolved(Some(seen)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lazy_names_are_plain() {
        for ok in ["acme", "a.b", "a_b-1", &"x".repeat(64)] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "a?b",
            "a#b",
            "a@b",
            "a%2e",
            "é",
            &"x".repeat(65),
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn build_slots_are_bounded_and_given_back() {
        let building = Arc::new(AtomicUsize::new(0));
        let slots: Vec<_> = (0..MAX_CONCURRENT_BUILDS)
            .map(|_| BuildSlot::take(&building).expect("a slot"))
            .collect();
        assert!(BuildSlot::take(&building).is_none(), "all taken");
        drop(slots);
        assert_eq!(building.load(Ordering::Acquire), 0);
        assert!(BuildSlot::take(&building).is_some());
    }
}
