//! [`Uma`], the service that [`UmaLayer`](crate::UmaLayer) wraps around an inner service: the
//! Tower shell of the request pipeline (`pipeline/`).
//!
//! `call` hands each request to the pipeline and does what it says: call the inner service at
//! once, answer with the layer's response, or box the pipeline's asynchronous part in front
//! of the inner service's future. See the [crate documentation](crate) for the request path.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use crate::future::ResponseFuture;
use crate::pipeline::{Flow, Pipeline};

/// A service protected by UMA 2.0; made by [`UmaLayer`](crate::UmaLayer).
///
/// It keeps the inner service's error type: every refusal is a response. The inner service
/// must be `Clone` (axum's `Router` is) because the ready service is moved into the response
/// future while the authorisation runs.
#[derive(Clone, Debug)]
pub struct Uma<S> {
    inner: S,
    pipeline: Arc<Pipeline>,
}

impl<S> Uma<S> {
    /// The service for `inner`, checked by `pipeline`.
    pub(crate) fn with_pipeline(inner: S, pipeline: Arc<Pipeline>) -> Self {
        Self { inner, pipeline }
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

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        dispatch(&mut self.inner, &self.pipeline, req)
    }
}

/// Checks `req` with `pipeline` and calls `inner` (ready) when it passes: the body of
/// [`Uma`]'s `call`, shared with the tenants' service (`tenant/`), which picks the pipeline.
pub(crate) fn dispatch<S, ReqBody, ResBody>(
    inner: &mut S,
    pipeline: &Arc<Pipeline>,
    mut req: Request<ReqBody>,
) -> ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
{
    match pipeline.start(&mut req) {
        // Decided at once (the common case: a cached answer that grants the request): no
        // future of the layer's own, and no clone of the inner service.
        Flow::Pass => ResponseFuture::calling(inner.call(req)),
        Flow::Respond(response) => ResponseFuture::ready(*response),
        Flow::Pending(pending) => {
            // The ready inner service goes into the future; this one keeps a fresh clone.
            let clone = inner.clone();
            let inner = std::mem::replace(inner, clone);
            let authorize = pending.run(Arc::clone(pipeline), req);
            ResponseFuture::authorizing(Box::pin(authorize), inner)
        }
    }
}
