//! The guard [`UmaRouter`](super::UmaRouter) puts between the layer and each route's
//! handlers: it lets a request reach route `i`'s handlers only when the layer decided the
//! request by route `i`'s rule.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::{Either, Ready, ready};
use http::{Method, Request, Response, StatusCode};
use tower_layer::Layer;
use tower_service::Service;

use crate::layer::UmaLayer;
use crate::pipeline::{Enforcement, layer_response};
use crate::principal::Rejection;

/// What one route's guard knows: the layer (whose map decides), the route's index in that
/// map, its path as axum routes it, and the enforcement mode of the requests it decides.
#[derive(Debug)]
struct RouteCheck {
    layer: UmaLayer,
    index: usize,
    path: Box<str>,
    /// A disagreement is refused only when this enforces; nothing is checked when it is
    /// disabled.
    enforcement: Enforcement,
}

/// What the guard does with a request for its route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// The layer decided it by this route's rule, or the rule is never enforced.
    Pass,
    /// The layer decided it by another rule (or none).
    Refuse,
}

impl RouteCheck {
    fn verdict(&self, method: &Method, path: &str) -> Verdict {
        if self.enforcement.unchecked().is_some() {
            return Verdict::Pass;
        }
        let Some(map) = self.layer.map() else {
            // Not reached: `UmaRouter::build` refuses layers without its map.
            return Verdict::Refuse;
        };
        let decided = map.deciding_route(method, path);
        if decided == Some(self.index) {
            return Verdict::Pass;
        }
        let decided_by = decided.and_then(|i| map.template_of(i));
        let permissive = !self.enforcement.enforces();
        tracing::warn!(
            http.method = %method,
            url.path = %path,
            route = %self.path,
            decided_by,
            outcome = if permissive { "let through (permissive)" } else { "refused" },
            "axum's router runs a route the layer did not decide this request by"
        );
        if permissive {
            Verdict::Pass
        } else {
            Verdict::Refuse
        }
    }
}

/// The layer of one route's guard.
#[derive(Debug, Clone)]
pub(crate) struct RouteGuardLayer {
    check: Arc<RouteCheck>,
}

impl RouteGuardLayer {
    /// The guard of route `index` of `layer`'s map, routed by axum at `path`.
    pub(crate) fn new(
        layer: &UmaLayer,
        index: usize,
        path: &str,
        enforcement: Enforcement,
    ) -> Self {
        Self {
            check: Arc::new(RouteCheck {
                layer: layer.clone(),
                index,
                path: path.into(),
                enforcement,
            }),
        }
    }
}

impl<T> Layer<T> for RouteGuardLayer {
    type Service = RouteGuard<T>;

    fn layer(&self, inner: T) -> Self::Service {
        RouteGuard {
            inner,
            check: Arc::clone(&self.check),
        }
    }
}

/// One route's guard around its handlers.
#[derive(Debug, Clone)]
pub(crate) struct RouteGuard<T> {
    inner: T,
    check: Arc<RouteCheck>,
}

impl<T, B, R> Service<Request<B>> for RouteGuard<T>
where
    T: Service<Request<B>, Response = Response<R>>,
    R: Default,
{
    type Response = Response<R>;
    type Error = T::Error;
    type Future = Either<Ready<Result<Response<R>, T::Error>>, T::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        match self.check.verdict(req.method(), req.uri().path()) {
            Verdict::Pass => Either::Right(self.inner.call(req)),
            Verdict::Refuse => Either::Left(ready(Ok(layer_response(
                StatusCode::FORBIDDEN,
                Rejection::RouteMismatch,
                None,
            )))),
        }
    }
}
