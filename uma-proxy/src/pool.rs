//! The upstream's connections: HTTP/1.1 keep-alive connections to the one upstream, kept
//! while idle and used again.
//!
//! The proxy has a single upstream, so it needs no pool keyed by scheme and authority:
//! hyper-util's general client hashed that key (SipHash over each byte of the authority)
//! three times per request and spawned a task per request to put the connection back once
//! the response body was read. Here the idle connections are a stack behind one lock, and a
//! connection goes back when the proxy has passed on the last frame of its response body (the
//! [`PooledBody`] the response carries), or at once when the response has no body.
//!
//! What it keeps from hyper-util's client:
//! - new connections come from its `HttpConnector` (the name resolved off the runtime's
//!   threads, a second address family tried after 300 ms, `TCP_NODELAY`);
//! - the most recently used idle connection that is ready for a request is taken first, and
//!   a new one is made when none is (none is waited for);
//! - a request that a reused connection refused before sending any of it (the upstream had
//!   closed the connection meanwhile) is sent again, on another connection; a request that
//!   was sent, or a failure on a fresh connection, is an error;
//! - idle connections are closed after
//!   [`ForwardOptions::pool_idle_timeout`](crate::ForwardOptions::pool_idle_timeout): a task
//!   of the pool looks every half of it and closes the connections idle for at least the
//!   whole timeout (so each goes between 1 and 1.5 times the timeout after its last
//!   response, with no clock read per request);
//! - a response body dropped before its end closes its connection (its rest cannot be told
//!   from the next response); one that ends in an error too.
//!
//! At most [`MAX_IDLE`] idle connections are kept; beyond that the oldest is closed. A zero
//! idle timeout keeps none: each connection serves one exchange.

use std::collections::VecDeque;
use std::fmt;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::uri::{Authority, Uri};
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::client::legacy::connect::HttpConnector;
use tower_service::Service as _;

use crate::body::RequestBody;

/// How many idle connections the pool keeps at most.
pub(crate) const MAX_IDLE: usize = 1024;

/// The connections to the upstream (see the [module docs](self)).
pub(crate) struct Pool {
    /// `http://HOST:PORT/`, what `connector` connects to.
    uri: Uri,
    /// hyper-util's TCP connector: the name resolved off the runtime's threads, the addresses
    /// tried in turn with a second family after 300 ms (RFC 8305), `TCP_NODELAY`.
    connector: HttpConnector,
    /// Whether idle connections are kept at all (a zero idle timeout keeps none).
    keep: bool,
    /// Idle connections, the most recently used last, each with the sweep epoch it went idle in.
    idle: Mutex<VecDeque<(SendRequest<RequestBody>, u64)>>,
    /// Sweeps so far: the pool's coarse clock.
    epoch: AtomicU64,
    /// How often the sweeping task looks: half the idle timeout.
    every: Duration,
    /// Whether the sweeping task runs.
    sweeping: AtomicBool,
}

/// Held by the sweeping task: lowers the pool's `sweeping` flag when the task ends or is
/// dropped with its runtime.
struct Running(Weak<Pool>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(pool) = self.0.upgrade() {
            pool.sweeping.store(false, Ordering::Release);
        }
    }
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("uri", &self.uri)
            .field("idle", &self.idle_count())
            .finish_non_exhaustive()
    }
}

/// Why the upstream gave no response head.
#[derive(Debug)]
pub(crate) enum UpstreamError {
    /// The TCP connection could not be made.
    Connect(Box<dyn std::error::Error + Send + Sync>),
    /// The connection was made, but the request could not be sent or no response came.
    Request(hyper::Error),
}

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connect(_) => f.write_str("cannot connect to the upstream"),
            Self::Request(_) => f.write_str("the upstream exchange failed"),
        }
    }
}

impl std::error::Error for UpstreamError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Connect(e) => Some(&**e),
            Self::Request(e) => Some(e),
        }
    }
}

/// The future of one exchange: the response head, with the connection it came on.
pub(crate) type Exchange =
    Pin<Box<dyn Future<Output = Result<Response<PooledBody>, UpstreamError>> + Send>>;

impl Pool {
    /// A pool for `authority`, closing connections idle for `idle_timeout` (zero: each
    /// connection serves one exchange).
    pub(crate) fn new(authority: Authority, idle_timeout: Duration) -> Arc<Self> {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.enforce_http(true);
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(http::uri::Scheme::HTTP);
        parts.authority = Some(authority);
        parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
        Arc::new(Self {
            uri: Uri::from_parts(parts).expect("an http URI with an authority and a path"),
            connector,
            keep: !idle_timeout.is_zero(),
            idle: Mutex::new(VecDeque::new()),
            epoch: AtomicU64::new(0),
            every: (idle_timeout / 2).max(Duration::from_millis(1)),
            sweeping: AtomicBool::new(false),
        })
    }

    /// Starts the task that closes idle connections, in the current runtime, unless it runs:
    /// when the first connection goes idle, and again after the runtime it ran in is gone
    /// (the pool may serve one runtime after another).
    fn sweep_later(self: &Arc<Self>) {
        if self.sweeping.load(Ordering::Relaxed) || self.sweeping.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.sweeping.store(false, Ordering::Release);
            return;
        };
        let running = Running(Arc::downgrade(self));
        let every = self.every;
        runtime.spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let Some(pool) = running.0.upgrade() else {
                    return;
                };
                pool.sweep();
            }
        });
    }

    /// Sends `req` (origin-form URI, `Host` set) on an idle connection, or a new one.
    pub(crate) fn send(self: &Arc<Self>, req: Request<RequestBody>) -> Exchange {
        Box::pin(Arc::clone(self).exchange(req))
    }

    async fn exchange(
        self: Arc<Self>,
        mut req: Request<RequestBody>,
    ) -> Result<Response<PooledBody>, UpstreamError> {
        loop {
            let (mut sender, reused) = match self.take() {
                Some(sender) => (sender, true),
                None => (self.connect().await?, false),
            };
            // Ready when taken, unless closed since.
            if let Err(e) = poll_fn(|cx| sender.poll_ready(cx)).await {
                if reused {
                    continue;
                }
                return Err(UpstreamError::Request(e));
            }
            match sender.try_send_request(req).await {
                Ok(response) => return Ok(self.pooled(response, sender)),
                Err(mut e) => match e.take_message() {
                    // Not sent: the upstream closed the connection while it was idle.
                    Some(unsent) if reused => req = unsent,
                    _ => return Err(UpstreamError::Request(e.into_error())),
                },
            }
        }
    }

    /// The response, its body carrying `sender` back to the pool at its end.
    fn pooled(
        self: Arc<Self>,
        response: Response<Incoming>,
        sender: SendRequest<RequestBody>,
    ) -> Response<PooledBody> {
        let (parts, body) = response.into_parts();
        let mut body = PooledBody {
            body,
            back: Some((sender, self)),
        };
        if body.body.is_end_stream() {
            body.give_back();
        }
        Response::from_parts(parts, body)
    }

    /// A new connection to the upstream; its connection task runs on its own.
    async fn connect(&self) -> Result<SendRequest<RequestBody>, UpstreamError> {
        let io = self
            .connector
            .clone()
            .call(self.uri.clone())
            .await
            .map_err(|e| UpstreamError::Connect(e.into()))?;
        let (sender, connection) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(UpstreamError::Request)?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "an upstream connection ended with an error");
            }
        });
        Ok(sender)
    }

    /// The most recently used idle connection that is ready for a request: one still sending
    /// its last request's body (the upstream answered before reading it all), or not yet back
    /// to waiting for a request, is passed over; closed ones are dropped.
    fn take(&self) -> Option<SendRequest<RequestBody>> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let mut at = idle.len();
        while at > 0 {
            at -= 1;
            let (sender, _) = &idle[at];
            if sender.is_closed() {
                idle.remove(at);
            } else if sender.is_ready() {
                return idle.remove(at).map(|(sender, _)| sender);
            }
        }
        None
    }

    /// Keeps `sender` for another request.
    fn put(self: &Arc<Self>, sender: SendRequest<RequestBody>) {
        if !self.keep || sender.is_closed() {
            return;
        }
        self.sweep_later();
        let epoch = self.epoch.load(Ordering::Relaxed);
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let oldest = if idle.len() >= MAX_IDLE {
            idle.pop_front()
        } else {
            None
        };
        idle.push_back((sender, epoch));
        drop(idle);
        drop(oldest);
    }

    /// Closes the connections idle for a whole timeout: those that went idle three sweeps
    /// ago or earlier (sweeps come every half timeout).
    fn sweep(&self) {
        let epoch = self.epoch.fetch_add(1, Ordering::Relaxed) + 1;
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let expired = idle
            .iter()
            .take_while(|(_, since)| since + 3 <= epoch)
            .count();
        let closed: Vec<_> = idle.drain(..expired).collect();
        idle.retain(|(sender, _)| !sender.is_closed());
        drop(idle);
        drop(closed);
    }

    /// How many idle connections are kept.
    pub(crate) fn idle_count(&self) -> usize {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// The upstream's response body; its connection goes back to the pool after its last frame.
pub(crate) struct PooledBody {
    body: Incoming,
    back: Option<(SendRequest<RequestBody>, Arc<Pool>)>,
}

impl PooledBody {
    fn give_back(&mut self) {
        if let Some((sender, pool)) = self.back.take() {
            pool.put(sender);
        }
    }
}

impl fmt::Debug for PooledBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledBody")
            .field("body", &self.body)
            .finish_non_exhaustive()
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let frame = Pin::new(&mut this.body).poll_frame(cx);
        match &frame {
            Poll::Ready(None) => this.give_back(),
            Poll::Ready(Some(Ok(_))) if this.body.is_end_stream() => this.give_back(),
            // Its connection cannot be used again.
            Poll::Ready(Some(Err(_))) => this.back = None,
            Poll::Ready(Some(Ok(_))) | Poll::Pending => {}
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use http_body_util::BodyExt;
    use hyper_util::rt::TokioIo;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// An upstream answering `ok` to every request head, counting its connections; with
    /// `close`, it closes each connection after its first response (without saying so).
    async fn upstream(close: bool) -> (Authority, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authority = listener.local_addr().unwrap().to_string().parse().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    let mut buf = [0; 1024];
                    loop {
                        let Ok(n) = socket.read(&mut buf).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        seen.extend_from_slice(&buf[..n]);
                        while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                            seen.drain(..end + 4);
                            let body = "x".repeat(64 * 1024);
                            let head = format!(
                                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n",
                                body.len()
                            );
                            if socket.write_all(head.as_bytes()).await.is_err()
                                || socket.write_all(body.as_bytes()).await.is_err()
                            {
                                return;
                            }
                            if close {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (authority, accepted)
    }

    fn get() -> Request<RequestBody> {
        Request::get("/x")
            .header(http::header::HOST, "up")
            .body(RequestBody::from(Bytes::new()))
            .unwrap()
    }

    /// Sends a GET and reads the whole body: its length.
    async fn exchange(pool: &Arc<Pool>) -> usize {
        let response = pool.send(get()).await.unwrap();
        assert_eq!(response.status(), http::StatusCode::OK);
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .len()
    }

    /// Waits (yielding, no timer) until `check` holds.
    async fn until(mut check: impl FnMut() -> bool) {
        while !check() {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn one_connection_serves_requests_one_after_another() {
        let (authority, accepted) = upstream(false).await;
        let pool = Pool::new(authority, Duration::from_secs(90));
        for _ in 0..20 {
            assert_eq!(exchange(&pool).await, 64 * 1024);
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert_eq!(pool.idle_count(), 1);
    }

    #[tokio::test]
    async fn concurrent_requests_get_connections_of_their_own_and_keep_them() {
        let (authority, accepted) = upstream(false).await;
        let pool = Pool::new(authority, Duration::from_secs(90));
        // Both response heads before either body is read: two connections.
        let first = pool.send(get()).await.unwrap();
        let second = pool.send(get()).await.unwrap();
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        assert_eq!(pool.idle_count(), 0);
        first.into_body().collect().await.unwrap();
        second.into_body().collect().await.unwrap();
        assert_eq!(pool.idle_count(), 2);
        for _ in 0..4 {
            exchange(&pool).await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_body_dropped_before_its_end_takes_its_connection_along() {
        let (authority, accepted) = upstream(false).await;
        let pool = Pool::new(authority, Duration::from_secs(90));
        let mut body = pool.send(get()).await.unwrap().into_body();
        // One frame of the 64 KiB, then dropped.
        body.frame().await.unwrap().unwrap();
        assert!(!body.is_end_stream());
        drop(body);
        assert_eq!(pool.idle_count(), 0);
        assert_eq!(exchange(&pool).await, 64 * 1024);
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_connection_not_ready_for_a_request_is_passed_over() {
        let pool = Pool::new("127.0.0.1:9".parse().unwrap(), Duration::from_secs(90));
        // A connection whose task never runs never asks for a request.
        let (io, _other_end) = tokio::io::duplex(64);
        let (sender, _connection) = http1::Builder::new()
            .handshake::<_, RequestBody>(TokioIo::new(io))
            .await
            .unwrap();
        assert!(!sender.is_ready() && !sender.is_closed());
        pool.put(sender);
        assert!(pool.take().is_none());
        assert_eq!(pool.idle_count(), 1, "kept for later");
    }

    #[tokio::test]
    async fn a_connection_the_upstream_closed_is_not_used_again() {
        let (authority, accepted) = upstream(true).await;
        let pool = Pool::new(authority, Duration::from_secs(90));
        assert_eq!(exchange(&pool).await, 64 * 1024);
        // The upstream closed it: hyper's connection task sees the end of the stream (before
        // the connection went back to the pool, which then dropped it, or after).
        until(|| {
            let idle = pool.idle.lock().unwrap();
            idle.iter().all(|(sender, _)| sender.is_closed())
        })
        .await;
        assert_eq!(exchange(&pool).await, 64 * 1024);
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn idle_connections_close_after_three_sweeps() {
        let (authority, accepted) = upstream(false).await;
        let pool = Pool::new(authority, Duration::from_secs(3600));
        exchange(&pool).await;
        pool.sweep();
        pool.sweep();
        assert_eq!(pool.idle_count(), 1, "idle for less than the timeout");
        exchange(&pool).await;
        pool.sweep();
        pool.sweep();
        assert_eq!(
            pool.idle_count(),
            1,
            "used again: idle since the second sweep"
        );
        pool.sweep();
        assert_eq!(pool.idle_count(), 0);
        exchange(&pool).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_zero_idle_timeout_keeps_no_connection() {
        let (authority, accepted) = upstream(false).await;
        let pool = Pool::new(authority, Duration::ZERO);
        exchange(&pool).await;
        assert_eq!(pool.idle_count(), 0);
        exchange(&pool).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    /// The sweeping task closes idle connections on its own, and starts again in a second
    /// runtime once the first (where it ran) is gone.
    #[test]
    fn the_sweeping_task_runs_in_each_runtime_the_pool_serves() {
        // An upstream on a runtime of its own, outliving both.
        let upstream_runtime = tokio::runtime::Runtime::new().unwrap();
        let (authority, _) = upstream_runtime.block_on(upstream(false));
        let pool = Pool::new(authority, Duration::from_millis(40));
        for _ in 0..2 {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let response = pool.send(get()).await.unwrap();
                response.into_body().collect().await.unwrap();
                assert_eq!(pool.idle_count(), 1);
                assert!(pool.sweeping.load(Ordering::SeqCst));
                // Closed 40 to 60 ms after; waited for at most 10 s.
                let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
                while pool.idle_count() > 0 {
                    assert!(tokio::time::Instant::now() < deadline, "never swept");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            });
            drop(runtime);
            assert!(
                !pool.sweeping.load(Ordering::SeqCst),
                "the task went with its runtime"
            );
        }
    }

    #[tokio::test]
    async fn at_most_max_idle_connections_are_kept() {
        let pool = Pool::new("127.0.0.1:9".parse().unwrap(), Duration::from_secs(90));
        let mut connections = Vec::new();
        for _ in 0..=MAX_IDLE {
            let (io, _other_end) = tokio::io::duplex(64);
            let (sender, connection) = http1::Builder::new()
                .handshake::<_, RequestBody>(TokioIo::new(io))
                .await
                .unwrap();
            connections.push((connection, _other_end));
            pool.put(sender);
        }
        assert_eq!(pool.idle_count(), MAX_IDLE);
    }

    #[tokio::test]
    async fn an_upstream_that_refuses_connections_is_an_error() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authority = listener.local_addr().unwrap().to_string().parse().unwrap();
        drop(listener);
        let pool = Pool::new(authority, Duration::from_secs(90));
        let error = pool.send(get()).await.unwrap_err();
        assert!(matches!(error, UpstreamError::Connect(_)), "{error:?}");
    }
}
