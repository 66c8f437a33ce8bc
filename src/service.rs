//! [`Uma`], the service that [`UmaLayer`] wraps around an inner service.
//!
//! See the [crate documentation](crate) for the request path.

use std::borrow::Cow;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderValue, Method, Request, Response, StatusCode};
use tower_service::Service;
use tracing::{Instrument, field};

use crate::cache::Cached;
use crate::challenge::{render_challenge, unreachable_warning};
use crate::decision::{Requirement, decide};
use crate::future::ResponseFuture;
use crate::layer::{Resolver, Shared, UmaLayer, Unmapped};
use crate::principal::{Rejection, UmaPrincipal};
use crate::resources::{
    EnforcementMode, PathError, RequestInfo, Resolved, ResourceRef, ScopeMode, is_case_variant,
    normalize_path,
};
use crate::token::{Bearer, BearerToken, Fingerprint, bearer_from_headers};

/// A service protected by UMA 2.0; made by [`UmaLayer`].
///
/// It keeps the inner service's error type: every refusal is a response. The inner service
/// must be `Clone` (axum's `Router` is) because the ready service is moved into the response
/// future while the authorisation runs.
#[derive(Clone, Debug)]
pub struct Uma<S> {
    inner: S,
    layer: UmaLayer,
}

impl<S> Uma<S> {
    /// Wraps `inner` with the protection configured in `layer`.
    pub fn new(inner: S, layer: UmaLayer) -> Self {
        Self { inner, layer }
    }

    /// A reference to the inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// A mutable reference to the inner service.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The layer; a shortcut for building [`Uma`] with `tower::ServiceBuilder`.
    pub fn layer(layer: UmaLayer) -> UmaLayer {
        layer
    }
}

/// What the request needs after the synchronous checks.
enum Step<'m> {
    Pass,
    Respond(StatusCode, Rejection),
    /// `405` with these methods in `Allow`.
    NotAllowed(Vec<Method>),
    Authorize(Check<'m>),
}

/// A request that needs an RPT, with the route's resource and scopes borrowed from the map.
struct Check<'m> {
    resource: Cow<'m, ResourceRef>,
    scopes: Cow<'m, [String]>,
    mode: ScopeMode,
    enforcement: EnforcementMode,
    token: Option<BearerToken>,
}

/// What the asynchronous part needs: [`Check`], owned.
struct AuthCtx {
    resource: ResourceRef,
    scopes: Vec<String>,
    mode: ScopeMode,
    enforcement: EnforcementMode,
    token: Option<BearerToken>,
    /// The token's fingerprint, when the synchronous path computed it.
    fingerprint: Option<Fingerprint>,
    /// The cache's answer, when the synchronous path had one (that did not grant the request).
    looked_up: Option<Cached>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Uma<S>
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
        let shared = &self.layer.shared;
        // Before anything reads the method: refuse, or rewrite to, a method override.
        if crate::method_override::apply(shared.method_override, &mut req).is_err() {
            let rejection = Rejection::BadRequest;
            return ResponseFuture::ready(refusal(StatusCode::BAD_REQUEST, rejection, None));
        }
        let check = match precheck(shared, &req) {
            Step::Pass => return ResponseFuture::calling(self.inner.call(req)),
            Step::Respond(status, rejection) => {
                return ResponseFuture::ready(refusal(status, rejection, None));
            }
            Step::NotAllowed(allow) => return ResponseFuture::ready(method_not_allowed(&allow)),
            Step::Authorize(check) => check,
        };
        let span = tracing::debug_span!(
            "uma.authorize",
            http.method = %req.method(),
            url.path = %req.uri().path(),
            uma.resource_id = field::Empty,
            uma.scopes = ?check.scopes,
            uma.decision = field::Empty,
            cache.hit = field::Empty,
            cache.source = field::Empty,
            token.fingerprint = field::Empty,
        );
        // The hit path, synchronous: a cached answer that grants the request lets it through
        // with no future of the layer's own, and without cloning the inner service.
        let (mut fingerprint, mut looked_up) = (None, None);
        let known_id = match &*check.resource {
            ResourceRef::Id(id) => Some(Cow::Borrowed(id.as_str())),
            ResourceRef::Name(name) => shared.registry.id(name).map(Cow::Owned),
        };
        if let (Some(resource_id), Some(token)) = (known_id, &check.token) {
            let digest = token.fingerprint();
            fingerprint = Some(digest);
            if let Some((cached, cache_now)) = shared.cache.peek(&shared.namespace, &digest) {
                let now = if shared.cache_shares_clock {
                    cache_now
                } else {
                    shared.clock.now_unix()
                };
                let requirement = Requirement {
                    resource_id: &resource_id,
                    scopes: &check.scopes,
                    mode: check.mode,
                };
                if let Ok(granted) = decide(&cached.value, requirement, now, shared.rules) {
                    span.record("uma.resource_id", &*resource_id);
                    span.record("token.fingerprint", field::display(digest));
                    span.record("cache.hit", cached.source.is_hit());
                    span.record("cache.source", cached.source.as_str());
                    span.record("uma.decision", "allowed");
                    crate::metrics::decision("allowed");
                    let principal = UmaPrincipal::new(cached.value, &resource_id, granted, digest);
                    req.extensions_mut().insert(principal);
                    return ResponseFuture::calling(self.inner.call(req));
                }
                // Refused: the asynchronous part asks for a ticket, deciding again on the same
                // answer (and tracing why).
                looked_up = Some(cached);
            }
        }
        let ctx = AuthCtx {
            resource: check.resource.into_owned(),
            scopes: check.scopes.into_owned(),
            mode: check.mode,
            enforcement: check.enforcement,
            token: check.token,
            fingerprint,
            looked_up,
        };
        // The ready inner service goes into the future; this one keeps a fresh clone.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let auth = authorize(Arc::clone(shared), req, ctx).instrument(span);
        ResponseFuture::authorizing(Box::pin(auth), inner)
    }
}

/// The synchronous part: path, route, enforcement mode and bearer syntax.
fn precheck<'m, B>(shared: &'m Shared, req: &Request<B>) -> Step<'m> {
    if shared.enforcement == EnforcementMode::Disabled {
        crate::metrics::decision("disabled");
        return Step::Pass;
    }
    let permissive = shared.enforcement == EnforcementMode::Permissive;
    // A refused spelling of the method or the path: 400, or through in permissive mode when
    // no route could be enforcing (the route is not known yet).
    let refuse = |e: PathError| {
        tracing::debug!(error = %e, http.method = %req.method(), url.path = %req.uri().path(), "refusing an unusable request");
        if permissive && !shared.strict_spellings {
            crate::metrics::decision("permissive");
            Step::Pass
        } else {
            crate::metrics::decision("bad_request");
            Step::Respond(StatusCode::BAD_REQUEST, Rejection::BadRequest)
        }
    };
    let method_check = match &shared.resolver {
        Resolver::Map(map) => map.check_method(req.method()),
        Resolver::Custom(_) if is_case_variant(req.method(), &[]) => Err(PathError::MethodCase),
        Resolver::Custom(_) => Ok(()),
    };
    if let Err(e) = method_check {
        return refuse(e);
    }
    let path = match normalize_path(req.uri().path()) {
        Ok(p) => p,
        Err(e) => return refuse(e),
    };
    let resolution = match &shared.resolver {
        Resolver::Map(map) => map.resolve_normalized(req.method(), &path, req.headers()),
        Resolver::Custom(r) => Ok(Resolved::from(r.resolve(&RequestInfo::new(
            req.method(),
            path.as_str(),
            req.headers(),
            &[],
        )))),
    };
    let resolution = match resolution {
        Ok(r) => r,
        Err(e) => return refuse(e),
    };
    let (resource, scopes, mode, enforcement) = match resolution {
        Resolved::Public => {
            crate::metrics::decision("public");
            return Step::Pass;
        }
        Resolved::Unmapped => {
            return if permissive || shared.unmapped == Unmapped::Allow {
                tracing::trace!(url.path = %req.uri().path(), "unmapped request let through");
                crate::metrics::decision("unmapped");
                Step::Pass
            } else {
                tracing::debug!(http.method = %req.method(), url.path = %req.uri().path(), "refusing an unmapped request");
                crate::metrics::decision("unmapped");
                Step::Respond(StatusCode::FORBIDDEN, Rejection::Unmapped)
            };
        }
        Resolved::MethodNotAllowed { allow, enforcement } => {
            tracing::debug!(http.method = %req.method(), url.path = %req.uri().path(), "the route does not list this method");
            return match enforcement.unwrap_or(shared.enforcement) {
                EnforcementMode::Enforcing => {
                    crate::metrics::decision("method_not_allowed");
                    Step::NotAllowed(allow)
                }
                EnforcementMode::Permissive => {
                    crate::metrics::decision("permissive");
                    Step::Pass
                }
                _ => {
                    crate::metrics::decision("disabled");
                    Step::Pass
                }
            };
        }
        Resolved::Protected {
            resource,
            scopes,
            scope_mode,
            enforcement,
        } => (
            resource,
            scopes,
            scope_mode,
            enforcement.unwrap_or(shared.enforcement),
        ),
    };
    if enforcement == EnforcementMode::Disabled {
        crate::metrics::decision("disabled");
        return Step::Pass;
    }
    let token = match bearer_from_headers(req.headers()) {
        Bearer::Token(t) => Some(t),
        Bearer::Absent => None,
        Bearer::Malformed(why) => {
            tracing::debug!(reason = why, "refusing malformed credentials");
            if enforcement == EnforcementMode::Permissive {
                crate::metrics::decision("permissive");
                return Step::Pass;
            }
            crate::metrics::decision("bad_request");
            return Step::Respond(StatusCode::BAD_REQUEST, Rejection::BadRequest);
        }
    };
    Step::Authorize(Check {
        resource,
        scopes,
        mode,
        enforcement,
        token,
    })
}

/// The asynchronous part: introspect through the cache, decide, or get a ticket.
async fn authorize<B, R>(
    shared: Arc<Shared>,
    mut req: Request<B>,
    ctx: AuthCtx,
) -> Result<Request<B>, Response<R>>
where
    R: Default,
{
    let span = tracing::Span::current();
    let permissive = ctx.enforcement == EnforcementMode::Permissive;
    let resource_id = match &ctx.resource {
        ResourceRef::Id(id) => id.clone(),
        ResourceRef::Name(name) => match Box::pin(shared.registry.lookup(name)).await {
            Ok(Some(id)) => id,
            Ok(None) => {
                // A resolver named a resource the AS does not have: nothing can grant it.
                tracing::debug!(resource = %name, "no resource of that name at the AS");
                span.record("uma.decision", "unmapped");
                crate::metrics::decision("unmapped");
                if permissive {
                    return Ok(req);
                }
                return Err(refusal(StatusCode::FORBIDDEN, Rejection::Unmapped, None));
            }
            Err(e) => {
                // Per request: DEBUG. The AS call's failure was logged by the layer's gate.
                tracing::debug!(resource = %name, error = %e, "could not look the resource up");
                return fail_closed(permissive, req);
            }
        },
    };
    span.record("uma.resource_id", resource_id.as_str());

    if let Some(token) = &ctx.token {
        // The token is hashed once per request, here or on the synchronous path.
        let fingerprint = ctx.fingerprint.unwrap_or_else(|| token.fingerprint());
        let fetched = match ctx.looked_up {
            Some(cached) => Ok(cached),
            None => {
                // Cloned only on a miss: a hit copies nothing.
                shared
                    .cache
                    .get_or_fetch_by_fingerprint(&shared.namespace, &fingerprint, || {
                        let fetch_shared = Arc::clone(&shared);
                        let fetch_token = token.to_rpt();
                        async move { fetch_shared.check_rpt(&fetch_token).await }
                    })
                    .await
            }
        };
        span.record("token.fingerprint", field::display(fingerprint));
        match fetched {
            Ok(cached) => {
                span.record("cache.hit", cached.source.is_hit());
                span.record("cache.source", cached.source.as_str());
                let requirement = Requirement {
                    resource_id: &resource_id,
                    scopes: &ctx.scopes,
                    mode: ctx.mode,
                };
                match decide(
                    &cached.value,
                    requirement,
                    shared.clock.now_unix(),
                    shared.rules,
                ) {
                    Ok(granted) => {
                        span.record("uma.decision", "allowed");
                        crate::metrics::decision("allowed");
                        let principal =
                            UmaPrincipal::new(cached.value, &resource_id, granted, fingerprint);
                        req.extensions_mut().insert(principal);
                        return Ok(req);
                    }
                    Err(denial) => {
                        tracing::debug!(
                            reason = denial.as_str(),
                            "the RPT does not grant this request"
                        );
                    }
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "no introspection answer");
                return fail_closed(permissive, req);
            }
        }
    }

    if permissive {
        span.record("uma.decision", "permissive");
        tracing::debug!("permissive mode: letting an unauthorised request through");
        crate::metrics::decision("permissive");
        return Ok(req);
    }
    // The ticket path is boxed: it is rare, and keeping it out of this future keeps the
    // future (moved into its box on every request) small.
    // A resource the AS forgot is registered (or looked up) again, and the ticket asked once
    // more (crate::resync).
    let ticket = crate::resync::ticket(
        &shared.client,
        &shared.registry,
        &ctx.resource,
        &resource_id,
        &ctx.scopes,
    );
    let Ok(ticket) = Box::pin(ticket).await else {
        return fail_closed(false, req);
    };
    match render_challenge(&shared.realm, &shared.as_uri, &ticket) {
        Ok(header) => {
            span.record("uma.decision", "challenged");
            crate::metrics::decision("challenged");
            Err(refusal(
                StatusCode::UNAUTHORIZED,
                Rejection::Challenged,
                Some(header),
            ))
        }
        Err(e) => {
            tracing::warn!(error = %e, "the AS issued a ticket that cannot be sent in a header");
            fail_closed(false, req)
        }
    }
}

/// The AS could not help: 403 + Warning, or through in permissive mode.
fn fail_closed<B, R: Default>(
    permissive: bool,
    req: Request<B>,
) -> Result<Request<B>, Response<R>> {
    let span = tracing::Span::current();
    if permissive {
        span.record("uma.decision", "permissive");
        crate::metrics::decision("permissive");
        return Ok(req);
    }
    span.record("uma.decision", "unreachable");
    crate::metrics::decision("unreachable");
    Err(refusal(
        StatusCode::FORBIDDEN,
        Rejection::AsUnreachable,
        None,
    ))
}

/// `405 Method Not Allowed` with the route's methods in `Allow` (RFC 9110 §15.5.6).
fn method_not_allowed<R: Default>(allow: &[Method]) -> Response<R> {
    let mut resp = refusal(
        StatusCode::METHOD_NOT_ALLOWED,
        Rejection::MethodNotAllowed,
        None,
    );
    let list: Vec<&str> = allow.iter().map(Method::as_str).collect();
    // Methods are tokens, so the list is always a valid header value.
    if let Ok(value) = HeaderValue::from_str(&list.join(", ")) {
        resp.headers_mut().insert(http::header::ALLOW, value);
    }
    resp
}

/// A refusal made by the layer: empty body, the rejection in the extensions.
pub(crate) fn refusal<R: Default>(
    status: StatusCode,
    rejection: Rejection,
    challenge: Option<HeaderValue>,
) -> Response<R> {
    let mut resp = Response::new(R::default());
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    if let Some(challenge) = challenge {
        headers.insert(http::header::WWW_AUTHENTICATE, challenge);
    }
    if rejection == Rejection::AsUnreachable {
        headers.insert(http::header::WARNING, unreachable_warning());
    }
    headers.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    resp.extensions_mut().insert(rejection);
    resp
}
