//! The response future of [`Uma`](crate::Uma).
//!
//! Why it works this way (after tower-http's async authorisation): the authorisation step is
//! one boxed `'static` future (extract, resolve, introspect through the cache, decide, maybe
//! fetch a ticket); the inner service's future stays unboxed in a second state. Requests that
//! need no AS work skip the box entirely: public routes, disabled enforcement, requests refused
//! before any AS call, and, the common case, requests whose RPT is cached and grants them.
//! Those are decided synchronously in `call`, which then calls the inner service directly
//! (without cloning it).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures_util::future::BoxFuture;
use http::Request;
use pin_project_lite::pin_project;
use tower_service::Service;

pin_project! {
    /// The future of [`Uma`](crate::Uma)'s `call`: the authorisation step, then the inner
    /// service's future.
    pub struct ResponseFuture<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        #[pin]
        state: State<S, ReqBody>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        Authorizing {
            auth: BoxFuture<'static, Result<Request<ReqBody>, S::Response>>,
            inner: Option<S>,
        },
        Calling {
            #[pin]
            fut: S::Future,
        },
        Ready {
            response: Option<S::Response>,
        },
    }
}

impl<S, ReqBody> ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>>,
{
    pub(crate) fn authorizing(
        auth: BoxFuture<'static, Result<Request<ReqBody>, S::Response>>,
        inner: S,
    ) -> Self {
        Self {
            state: State::Authorizing {
                auth,
                inner: Some(inner),
            },
        }
    }

    pub(crate) fn calling(fut: S::Future) -> Self {
        Self {
            state: State::Calling { fut },
        }
    }

    pub(crate) fn ready(response: S::Response) -> Self {
        Self {
            state: State::Ready {
                response: Some(response),
            },
        }
    }
}

impl<S, ReqBody> Future for ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>>,
{
    type Output = Result<S::Response, S::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let mut this = self.as_mut().project();
            match this.state.as_mut().project() {
                StateProj::Authorizing { auth, inner } => match ready!(auth.as_mut().poll(cx)) {
                    Ok(req) => {
                        let mut svc = inner.take().expect(
                            "invariant: the inner service is taken once, when authorisation ends",
                        );
                        let fut = svc.call(req);
                        this.state.set(State::Calling { fut });
                    }
                    Err(response) => return Poll::Ready(Ok(response)),
                },
                StateProj::Calling { fut } => return fut.poll(cx),
                StateProj::Ready { response } => {
                    let response = response
                        .take()
                        .expect("invariant: a ready ResponseFuture is not polled after completion");
                    return Poll::Ready(Ok(response));
                }
            }
        }
    }
}

impl<S, ReqBody> fmt::Debug for ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
