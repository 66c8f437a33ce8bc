//! A transport that answers from a closure, for unit tests (as oauth2-rs's
//! `mock_http_client`): no sockets, and every request it was sent can be inspected.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use super::{Failure, Transport};

type Respond =
    dyn Fn(usize, &http::Request<Bytes>) -> Result<http::Response<Bytes>, Failure> + Send + Sync;

/// Answers each request with what its closure returns for the call's number (from 1).
#[derive(Clone)]
pub(crate) struct Canned {
    inner: Arc<Inner>,
}

struct Inner {
    respond: Box<Respond>,
    calls: AtomicUsize,
    delay_ms: AtomicU64,
    seen: Mutex<Vec<http::Request<Bytes>>>,
}

impl std::fmt::Debug for Canned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Canned")
            .field("calls", &self.calls())
            .finish_non_exhaustive()
    }
}

/// An answer with `status` and `body`.
pub(crate) fn answer(status: u16, body: impl Into<Bytes>) -> http::Response<Bytes> {
    let mut r = http::Response::new(body.into());
    *r.status_mut() = http::StatusCode::from_u16(status).expect("a status");
    r
}

impl Canned {
    /// Answers call `n` with the status and body `respond(n)` gives.
    pub(crate) fn new(respond: impl Fn(usize) -> (u16, String) + Send + Sync + 'static) -> Self {
        Self::with(move |n, _| {
            let (status, body) = respond(n);
            Ok(answer(status, body))
        })
    }

    /// Answers call `n` of `request` with `respond(n, request)`: an answer, or a failure of
    /// the transport.
    pub(crate) fn with(
        respond: impl Fn(usize, &http::Request<Bytes>) -> Result<http::Response<Bytes>, Failure>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                respond: Box::new(respond),
                calls: AtomicUsize::new(0),
                delay_ms: AtomicU64::new(0),
                seen: Mutex::new(Vec::new()),
            }),
        }
    }

    /// This transport, to hand to a [`Caller`](super::Caller).
    pub(crate) fn transport(&self) -> Arc<dyn Transport> {
        Arc::new(self.clone())
    }

    /// Waits `delay` before each answer from now on.
    pub(crate) fn delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).expect("a short delay");
        self.inner.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// How many requests were sent.
    pub(crate) fn calls(&self) -> usize {
        self.inner.calls.load(Ordering::SeqCst)
    }

    /// The requests sent so far, in order.
    pub(crate) fn seen(&self) -> Vec<http::Request<Bytes>> {
        let seen = self
            .inner
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        seen.iter()
            .map(|r| {
                let mut copy = http::Request::new(r.body().clone());
                *copy.method_mut() = r.method().clone();
                *copy.uri_mut() = r.uri().clone();
                *copy.headers_mut() = r.headers().clone();
                copy
            })
            .collect()
    }
}

impl Transport for Canned {
    fn send(
        &self,
        request: http::Request<Bytes>,
        limit: usize,
    ) -> BoxFuture<'_, Result<http::Response<Bytes>, Failure>> {
        let n = self.inner.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let delay = Duration::from_millis(self.inner.delay_ms.load(Ordering::SeqCst));
        async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let answer = (self.inner.respond)(n, &request);
            self.inner
                .seen
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(request);
            let answer = answer?;
            if answer.body().len() > limit {
                return Err(Failure::TooLarge);
            }
            Ok(answer)
        }
        .boxed()
    }
}
