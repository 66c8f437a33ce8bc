//! [`Tenants`], the service of a [`TenantLayer`](super::TenantLayer): picks the tenant, then
//! runs that tenant's pipeline exactly as [`Uma`](crate::Uma) does.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response, StatusCode};
use tower_service::Service;

use super::matcher::{has_credentials, hides_a_prefix, hosts_disagree, strip, token_issuer};
use super::{Configured, OTHER, TemplateFn, Tenant, TenantChoice, TenantRequest};
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

/// Lazily built tenants: the template and the live ones.
pub(super) struct Lazy {
    template: Arc<TemplateFn>,
    live: moka::future::Cache<String, UmaLayer>,
}

impl Lazy {
    pub(super) fn new(template: Arc<TemplateFn>, max_live: u64) -> Self {
        Self {
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
    /// Whether some tenant matches on the token's issuer (the token is then read once).
    by_issuer: bool,
    /// Whether some tenant matches on a path prefix (the path is then checked normalised).
    by_prefix: bool,
    resolver: Option<Arc<super::ResolveFn>>,
    lazy: Option<Lazy>,
}

/// The tenant of a request.
enum Pick<'a> {
    Fixed(&'a Configured),
    Lazy(String),
    None,
    /// `400`: the request names two hosts, or hides a tenant's prefix in its path spelling.
    Bad,
}

impl Shared {
    pub(super) fn new(
        fixed: Vec<Configured>,
        resolver: Option<Arc<super::ResolveFn>>,
        lazy: Option<Lazy>,
    ) -> Self {
        Self {
            by_issuer: fixed.iter().any(|t| t.matches.needs_issuer()),
            by_prefix: fixed.iter().any(|t| t.matches.prefix().is_some()),
            fixed,
            resolver,
            lazy,
        }
    }

    pub(super) fn names(&self) -> impl Iterator<Item = &str> {
        self.fixed.iter().map(|t| &*t.name)
    }

    pub(super) fn layer(&self, name: &str) -> Option<UmaLayer> {
        if let Some(t) = self.fixed.iter().find(|t| &*t.name == name) {
            return Some(t.layer.clone());
        }
        let live = &self.lazy.as_ref()?.live;
        live.iter()
            .find(|(key, _)| key.as_str() == name)
            .map(|(_, layer)| layer)
    }

    pub(super) fn forget_token(&self, token: &str) {
        for t in &self.fixed {
            t.layer.forget_token(token);
        }
        if let Some(lazy) = &self.lazy {
            for (_, layer) in lazy.live.iter() {
                layer.forget_token(token);
            }
        }
    }

    /// The request's tenant; strips the path prefix when the tenant's match (or the
    /// resolver's choice) says so, and puts the [`Tenant`] in the request's extensions.
    fn pick<B>(&self, req: &mut Request<B>) -> Pick<'_> {
        // Which host and which path: one reading for the match, the map, the forwarder and
        // the inner service (RFC 9112 §3.2.2 lets the target's authority override `Host`).
        if hosts_disagree(req)
            || (self.by_prefix
                && hides_a_prefix(
                    req.uri().path(),
                    self.fixed.iter().filter_map(|t| t.matches.prefix()),
                ))
        {
            return Pick::Bad;
        }
        let issuer = if self.by_issuer {
            token_issuer(req.headers())
        } else {
            None
        };
        if let Some(t) = self
            .fixed
            .iter()
            .find(|t| t.matches.matches(req, issuer.as_deref()))
        {
            if let Some(prefix) = t.matches.stripped() {
                strip(req, prefix);
            }
            req.extensions_mut().insert(t.seen.clone());
            return Pick::Fixed(t);
        }
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
        let (picked, label) = match self.fixed.iter().find(|t| *t.name == *name) {
            Some(t) => (Pick::Fixed(t), Arc::clone(&t.name)),
            None if self.lazy.is_some() => {
                let label = Arc::from(name.as_str());
                (Pick::Lazy(name), label)
            }
            None => return Pick::None,
        };
        let stripped = strip_prefix.filter(|prefix| strip(req, prefix));
        req.extensions_mut()
            .insert(Tenant::new(label, stripped.map(Arc::from)));
        picked
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
        // The template runs inside the one build that concurrent first requests share.
        let template = Arc::clone(&lazy.template);
        let key = name.clone();
        let build = async move {
            let Some(builder) = template(&key) else {
                return Err(Error::config(REFUSED_NAME));
            };
            builder.metric_tenant(Arc::from(OTHER)).build().await
        };
        match lazy.live.try_get_with(name.clone(), build).await {
            Ok(layer) => {
                // The bound holds from each new tenant on (moka evicts lazily otherwise).
                lazy.live.run_pending_tasks().await;
                Ok(layer)
            }
            Err(e) if e.is_transient() => {
                tracing::warn!(
                    tenant = %name,
                    error = format_args!("{e:#}"),
                    "the tenant's authorization server cannot be reached; its request is refused"
                );
                crate::metrics::tenant_decision(OTHER, "unreachable");
                Err(crate::pipeline::layer_response(
                    StatusCode::FORBIDDEN,
                    Rejection::AsUnreachable,
                    None,
                ))
            }
            Err(e) if e.to_string() == REFUSED_NAME => Err(unresolved(None)),
            Err(e) => {
                tracing::warn!(
                    tenant = %name,
                    error = format_args!("{e:#}"),
                    "the tenant could not be built; its request is refused as unresolved"
                );
                Err(unresolved(None))
            }
        }
    }
}

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

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let name = match self.shared.pick(&mut req) {
            Pick::Fixed(tenant) => {
                return crate::service::dispatch(&mut self.inner, tenant.pipeline(), req);
            }
            Pick::Lazy(name) => name,
            Pick::Bad => {
                crate::metrics::tenant_decision(OTHER, "bad_request");
                tracing::debug!(outcome = "bad_request", "decided");
                return ResponseFuture::ready(crate::pipeline::layer_response(
                    StatusCode::BAD_REQUEST,
                    Rejection::BadRequest,
                    None,
                ));
            }
            Pick::None => {
                let seen = (
                    req.method(),
                    req.uri().path(),
                    has_credentials(req.headers()),
                );
                return ResponseFuture::ready(unresolved(Some(seen)));
            }
        };
        let shared = Arc::clone(&self.shared);
        let authorize = async move {
            let layer = shared.lazy_layer(name).await?;
            let pipeline: &Arc<Pipeline> = layer.pipeline();
            match pipeline.start(&mut req) {
                Flow::Pass => Ok(req),
                Flow::Respond(response) => Err(response),
                Flow::Pending(pending) => pending.run(Arc::clone(pipeline), req).await,
            }
        };
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::authorizing(Box::pin(authorize), inner)
    }
}
