//! Serving: the accept loop with graceful shutdown, the admin listener, and [`run`], the whole
//! proxy from a [`Config`].
//!
//! # Example
//!
//! ```no_run
//! use uma_proxy::{Config, Overrides, run};
//!
//! # async fn start() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::from_path("proxy.toml".as_ref(), &Overrides::default())?;
//! let ctrl_c = async {
//!     let _ = tokio::signal::ctrl_c().await;
//! };
//! run(config, None, |addr| eprintln!("serving on {addr}"), ctrl_c).await?;
//! # Ok(()) }
//! ```

use std::cell::RefCell;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures_util::future::Either;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tower::ServiceExt;
use tower_service::Service;
use tower_uma::resources::ClaimBodyLayer;
use tower_uma::tenant::TenantLayer;
use tower_uma::token::ClientSecret;
use tower_uma::{UmaLayer, health::AsHealth, start::StartRetry};

use crate::body::RequestBody;

use crate::config::{Config, Mode};
use crate::decision::{DecisionAnswer, DecisionFront};
use crate::forward::{
    ClientAddr, ForwardOptions, ProxyBody, forwarding_service, full_body, remove_uma_headers,
    remove_untrusted_headers,
};
use crate::metadata::MetadataFront;
use crate::metrics as m;
use crate::timer::KeptTimer;
use crate::trust::HostCheck;

/// How [`serve`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Drain {
    /// Every request in flight finished.
    Complete,
    /// The grace period ended first; the remaining connections were dropped.
    TimedOut,
}

/// Serves HTTP/1.1 on `listener` with `service` until `shutdown` completes; then stops
/// accepting, lets requests in flight finish for at most `grace` (then closes the connections
/// still open), and returns.
///
/// Before `service` sees a request, every `X-Uma-Subject`, `X-Uma-Client-Id` and
/// `X-Uma-Permissions` header the client sent, in any spelling with `_`, `.` or other punctuation for `-`, is removed
/// (so they cannot be spoofed, whatever route the request takes), and a [`ClientAddr`] is put
/// in its extensions. Connections keep alive; an idle one is closed at shutdown, a busy one
/// after its current response.
///
/// `service` is the UMA proxy (`UmaLayer::layer(forward)`) or the bare
/// [`forwarding_service`]; see the [`forward`](crate::forward) module for an example.
pub async fn serve<S>(
    listener: TcpListener,
    service: S,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> Drain
where
    S: Service<Request<Incoming>, Response = Response<ProxyBody>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let stop = Arc::new(Stop::default());
    // The connections' tasks: dropping the set when the grace period ends aborts (closes) the
    // connections still open. Finished tasks are reaped as the loop goes, so that the set
    // holds the open connections only.
    let mut connections = tokio::task::JoinSet::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    // hyper's timer (for its header read timeout) reuses its timers rather than registering
    // one per request.
    http.timer(KeptTimer::default()).keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let service = service.clone();
        let in_place = RefCell::new(service.clone());
        let per_request = hyper::service::service_fn(move |mut req: Request<Incoming>| {
            remove_uma_headers(req.headers_mut());
            req.extensions_mut().insert(ClientAddr(peer));
            call_ready(&in_place, &service, req)
        });
        let conn = http.serve_connection(TokioIo::new(stream), per_request);
        let stop = Arc::clone(&stop);
        connections.spawn(async move {
            if let Err(e) = stop.until_stopped(conn).await {
                tracing::debug!(error = %e, client = %peer, "connection ended with an error");
            }
        });
    }
    drop(listener);
    stop.now();
    let drained = async { while connections.join_next().await.is_some() {} };
    match tokio::time::timeout(grace, drained).await {
        Ok(()) => Drain::Complete,
        Err(_) => {
            let open = connections.len();
            connections.abort_all();
            while connections.join_next().await.is_some() {}
            tracing::debug!(
                connections = open,
                "connections closed: the shutdown grace period ended"
            );
            Drain::TimedOut
        }
    }
}

/// Tells [`serve`]'s connections to close once their request in flight (if any) is answered.
///
/// Each connection reads a flag when it is polled, and is woken once when the flag is set:
/// hyper-util's `GracefulShutdown` polls a channel (and takes its lock) every time a
/// connection is polled, that is several times per request.
#[derive(Debug, Default)]
struct Stop {
    stopping: AtomicBool,
    wake: tokio::sync::Notify,
}

impl Stop {
    /// Tells every connection to close.
    fn now(&self) {
        self.stopping.store(true, Ordering::Release);
        self.wake.notify_waiters();
    }

    /// Serves `conn` until it ends; once [`now`](Self::now) is called, it finishes its
    /// request in flight and closes (hyper's graceful shutdown).
    async fn until_stopped<I, S>(
        &self,
        conn: hyper::server::conn::http1::Connection<I, S>,
    ) -> Result<(), hyper::Error>
    where
        S: hyper::service::HttpService<Incoming, ResBody = ProxyBody>,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        I: hyper::rt::Read + hyper::rt::Write + Unpin + 'static,
    {
        // Made before the flag is first read, so that a `now` after that read wakes it.
        let woken = self.wake.notified();
        tokio::pin!(woken, conn);
        let mut registered = false;
        let mut closing = false;
        std::future::poll_fn(|cx| {
            if !closing {
                // The first poll registers for the wake-up (with this task's waker, which
                // stays the same); later ones only read the flag, which `now` sets before
                // waking.
                let woken_now = !registered && woken.as_mut().poll(cx).is_ready();
                registered = true;
                if woken_now || self.stopping.load(Ordering::Acquire) {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
            conn.as_mut().poll(cx)
        })
        .await
    }
}

/// Calls `in_place` when it is ready at once (the proxy's services always are), without
/// cloning it. Otherwise `in_place` itself goes on, in a `Oneshot` that polls it with the
/// request's waker (its readiness may hold a reservation, a semaphore permit being waited
/// for, which a fresh clone would queue behind for ever), and the connection keeps a new
/// clone of `service` for its next request. hyper calls a connection's service for one
/// request at a time, so `in_place` is never borrowed already.
fn call_ready<S, R>(
    in_place: &RefCell<S>,
    service: &S,
    req: R,
) -> Either<S::Future, tower::util::Oneshot<S, R>>
where
    S: Service<R, Error = Infallible> + Clone,
{
    let Ok(mut s) = in_place.try_borrow_mut() else {
        return Either::Right(service.clone().oneshot(req));
    };
    if let Poll::Ready(Ok(())) = s.poll_ready(&mut Context::from_waker(Waker::noop())) {
        return Either::Left(s.call(req));
    }
    let waiting = std::mem::replace(&mut *s, service.clone());
    Either::Right(waiting.oneshot(req))
}

/// Where the admin service finds the layer once it is built, to report the state of its
/// calls to the authorization server on `/healthz`.
pub type LayerSlot = Arc<OnceLock<UmaLayer>>;

/// The admin service: `GET /healthz` (`200 ok` while `ready`, `503` before the first sync and
/// while shutting down) and
/// `GET /metrics` (the Prometheus text rendering of `metrics`; `404` without a handle).
/// [`admin_service_with_layer`] adds the layer's circuit breakers to `/healthz`.
pub fn admin_service(
    ready: Arc<AtomicBool>,
    metrics: Option<PrometheusHandle>,
) -> impl Service<
    Request<Incoming>,
    Response = Response<ProxyBody>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<ProxyBody>, Infallible>> + Send + 'static,
> + Clone
+ Send
+ 'static {
    admin_service_with_layer(ready, metrics, LayerSlot::default())
}

/// [`admin_service`], whose `/healthz` also reports the calls to the authorization server of
/// the layer in `layer` once it is set ([`UmaLayer::as_health`]): after `ok`, a line
/// `authorization_server ok` (every circuit closed) or `authorization_server degraded` (an
/// endpoint's circuit is open or half-open), then one line per endpoint, e.g.
/// `introspection open consecutive_failures=12 for_ms=3400`.
///
/// The status stays `200` while the proxy is ready, whatever the circuits: it still serves
/// public routes and cached decisions, and answers requests that need the failing endpoint at
/// once (`403` + `Warning`), while a `503` would make load balancers take every instance out
/// together, and an instance that gets no requests makes no probe to see the AS come back.
///
/// It turns `503` while the AS does not know a resource the proxy protects
/// ([`AsHealth::unknown_resources`]: the AS answered `invalid_resource_id` and registering
/// the resource again has failed so far): the AS is up but refuses every ticket for it, and
/// that lasts until the layer registers it again, which it retries in the background without
/// needing requests. The body starts with `not ready: …`, then the same lines, with one
/// `resource "NAME" unknown id=ID for_ms=…: REASON` line per such resource.
pub fn admin_service_with_layer(
    ready: Arc<AtomicBool>,
    metrics: Option<PrometheusHandle>,
    layer: LayerSlot,
) -> impl Service<
    Request<Incoming>,
    Response = Response<ProxyBody>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<ProxyBody>, Infallible>> + Send + 'static,
> + Clone
+ Send
+ 'static {
    admin_service_with_revoke(ready, metrics, layer, None)
}

/// [`admin_service_with_layer`], with `POST /admin/revoke` when `admin_token` is set (the
/// `admin_token_env` key; see the `admin` module's docs in the README): `204` once the token
/// is forgotten (fleet-wide with `[cache.shared]`), `400`, `401` or, without a token, `404`.
/// With a shared cache, `/healthz` adds a line `shared_cache ok` or `shared_cache degraded
/// reachable=… subscribed=…` (the status stays `200`: requests fall back to the local cache
/// and the AS).
pub fn admin_service_with_revoke(
    ready: Arc<AtomicBool>,
    metrics: Option<PrometheusHandle>,
    layer: LayerSlot,
    admin_token: Option<ClientSecret>,
) -> impl Service<
    Request<Incoming>,
    Response = Response<ProxyBody>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<ProxyBody>, Infallible>> + Send + 'static,
> + Clone
+ Send
+ 'static {
    let health_layer = Arc::clone(&layer);
    let health = move || {
        let (status, mut body) = healthy(health_layer.get().map(UmaLayer::as_health).as_ref());
        if let Some(line) = health_layer.get().and_then(shared_health) {
            body.push_str(&line);
            body.push('\n');
        }
        (status, body)
    };
    admin(
        ready,
        metrics,
        health,
        Some((Revoking::One(layer), admin_token.map(Arc::new))),
    )
}

/// Where the admin service finds the tenants' layer once it is built (`[[tenants]]`).
pub type TenantSlot = Arc<OnceLock<TenantLayer>>;

/// [`admin_service`] for a file with `[[tenants]]`: once ready, `/healthz` answers `200` with
/// `ok`, then for each tenant a line `tenant NAME authorization_server ok` (or `degraded`:
/// a circuit open or half-open, or a protected resource the AS does not know) and that
/// tenant's endpoint lines, as [`admin_service_with_layer`] prints them. A tenant not built
/// yet (its AS could not be reached at start; it is built in the background, its requests
/// get `403` + `Warning` meanwhile) is `degraded`, followed by the line `pending: not built
/// yet, …` instead of endpoint lines. It
/// stays `200` whatever one tenant's state: a `503` would take every tenant out of rotation
/// for one tenant's AS.
///
/// With `admin_token` (the `admin_token_env` key) it answers `POST /admin/revoke` as
/// [`admin_service_with_revoke`] does, forgetting the token in every tenant's cache (and
/// telling the fleet, with `[cache.shared]`): a revocation hook does not know the tenant.
pub fn admin_service_with_tenants(
    ready: Arc<AtomicBool>,
    metrics: Option<PrometheusHandle>,
    tenants: TenantSlot,
    admin_token: Option<ClientSecret>,
) -> impl Service<
    Request<Incoming>,
    Response = Response<ProxyBody>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<ProxyBody>, Infallible>> + Send + 'static,
> + Clone
+ Send
+ 'static {
    let revoking = Revoking::Tenants(Arc::clone(&tenants));
    let health = move || {
        let mut body = "ok\n".to_owned();
        if let Some(layer) = tenants.get() {
            for name in layer.tenant_names() {
                let Some(h) = layer.tenant(name).map(|t| t.as_health()) else {
                    body.push_str(&format!(
                        "tenant {name} authorization_server degraded\n{PENDING_LINE}\n"
                    ));
                    continue;
                };
                let summary = summary(&h);
                body.push_str(&format!(
                    "tenant {name} authorization_server {summary}\n{h}"
                ));
            }
        }
        (StatusCode::OK, body)
    };
    admin(
        ready,
        metrics,
        health,
        Some((revoking, admin_token.map(Arc::new))),
    )
}

/// Where `POST /admin/revoke` finds what to forget a token in, once built.
#[derive(Clone)]
enum Revoking {
    One(LayerSlot),
    Tenants(TenantSlot),
}

impl Revoking {
    fn get(&self) -> Option<crate::admin::Revoker> {
        match self {
            Self::One(slot) => slot.get().cloned().map(crate::admin::Revoker::One),
            Self::Tenants(slot) => slot.get().cloned().map(crate::admin::Revoker::Tenants),
        }
    }
}

/// The `/healthz` line of a tenant not built yet, under its `degraded` line.
const PENDING_LINE: &str =
    "pending: not built yet, its authorization server could not be reached; retrying";

/// The admin service, whose `/healthz` once ready is what `health` says, and which answers
/// `POST /admin/revoke` for the layer of `revoke` (with its admin token) when given.
fn admin(
    ready: Arc<AtomicBool>,
    metrics: Option<PrometheusHandle>,
    health: impl Fn() -> (StatusCode, String) + Clone + Send + Sync + 'static,
    revoke: Option<(Revoking, Option<Arc<ClientSecret>>)>,
) -> impl Service<
    Request<Incoming>,
    Response = Response<ProxyBody>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<ProxyBody>, Infallible>> + Send + 'static,
> + Clone
+ Send
+ 'static {
    tower::service_fn(move |req: Request<Incoming>| {
        let ready = ready.load(Ordering::Acquire);
        let metrics = metrics.clone();
        let healthz = (ready && req.uri().path() == "/healthz").then(&health);
        let revoking = revoke
            .as_ref()
            .filter(|_| req.uri().path() == "/admin/revoke")
            .map(|(layer, token)| (layer.get(), token.clone()));
        async move {
            if let Some((layer, token)) = revoking {
                let resp = if req.method() == Method::POST {
                    crate::admin::revoke(req, layer, token.as_deref()).await
                } else {
                    let mut resp = Response::new(full_body("method not allowed\n"));
                    *resp.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
                    resp
                };
                return Ok(resp);
            }
            let get = req.method() == Method::GET || req.method() == Method::HEAD;
            let (status, content_type, body) = match (get, req.uri().path(), healthz) {
                (true, "/healthz", Some((status, body))) => (status, "text/plain", body),
                (true, "/healthz", None) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "not ready: the first sync with the authorization server has not succeeded \
                     yet, or the proxy is shutting down\n"
                        .to_owned(),
                ),
                (true, "/metrics", _) => match &metrics {
                    Some(handle) => {
                        handle.run_upkeep();
                        (StatusCode::OK, "text/plain; version=0.0.4", handle.render())
                    }
                    None => (
                        StatusCode::NOT_FOUND,
                        "text/plain",
                        "no metrics recorder\n".to_owned(),
                    ),
                },
                (false, "/healthz" | "/metrics", _) => (
                    StatusCode::METHOD_NOT_ALLOWED,
                    "text/plain",
                    "method not allowed\n".to_owned(),
                ),
                _ => (
                    StatusCode::NOT_FOUND,
                    "text/plain",
                    "not found\n".to_owned(),
                ),
            };
            let mut resp = Response::new(full_body(body));
            *resp.status_mut() = status;
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            Ok::<_, Infallible>(resp)
        }
    })
}

/// The `/healthz` line of the layer's shared cache, when it has one.
#[cfg(feature = "redis")]
fn shared_health(layer: &UmaLayer) -> Option<String> {
    Some(layer.cache().shared()?.health().to_string())
}

#[cfg(not(feature = "redis"))]
fn shared_health(_: &UmaLayer) -> Option<String> {
    None
}

/// `/healthz` once ready: `200` with `ok`, then the calls to the AS when known; `503` while
/// the AS does not know a resource the proxy protects (its tickets fail until the layer,
/// which keeps trying in the background, has registered it again).
fn healthy(health: Option<&AsHealth>) -> (StatusCode, String) {
    let Some(h) = health else {
        return (StatusCode::OK, "ok\n".to_owned());
    };
    let summary = summary(h);
    if h.resources_known() {
        return (
            StatusCode::OK,
            format!("ok\nauthorization_server {summary}\n{h}"),
        );
    }
    let n = h.unknown_resources().len();
    (
        StatusCode::SERVICE_UNAVAILABLE,
        format!(
            "not ready: the authorization server does not know {n} protected resource(s) and \
             registering them again has not succeeded yet; requests that need a ticket for \
             them are refused\nauthorization_server {summary}\n{h}"
        ),
    )
}

/// `ok` when every circuit is closed and every protected resource known, else `degraded`.
fn summary(h: &AsHealth) -> &'static str {
    if h.all_closed() && h.resources_known() {
        "ok"
    } else {
        "degraded"
    }
}

/// Why [`run`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// An address could not be bound.
    #[error("cannot listen on {addr} ({what})")]
    Bind {
        /// `listen` or `admin_listen`.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The layer refused its configuration (a problem no retry can fix).
    #[error("the UMA configuration is not usable")]
    Layer(#[source] tower_uma::Error),
    /// Proxy mode without an upstream (only a hand-built [`Config`] can say that; the file
    /// is refused earlier).
    #[error("mode = \"proxy\" needs an `upstream`")]
    NoUpstream,
}

impl RunError {
    /// Whether the configuration is at fault (the binary exits with 2, else 1).
    #[must_use]
    pub fn is_config(&self) -> bool {
        matches!(self, Self::Layer(_) | Self::NoUpstream)
    }
}

/// The first retry delay while the AS cannot be reached at start.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// The longest retry delay.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Builds the layer, waiting for the AS for as long as it takes with the layer's own
/// mechanism ([`tower_uma::start::StartRetry::forever`]): discovery, then the PAT and the resource
/// sync, each retried with exponential backoff (0.2 s doubling up to 10 s, each delay drawn
/// between half and all of that, and at least as long as an opened circuit breaker waits)
/// while the AS cannot be reached, times out or answers with server errors
/// ([`tower_uma::Error::is_transient`]); each failure is a WARN event saying so. A
/// configuration error, or an AS that refuses the configuration (wrong client secret, issuer
/// mismatch, a rejected resource), is returned at once.
///
/// # Errors
///
/// The layer's configuration errors and the AS's permanent refusals.
pub async fn build_layer_with_retry(config: &Config) -> Result<UmaLayer, tower_uma::Error> {
    crate::uma::waiting_builder(config, Some(start_retry()))
        .await?
        .build()
        .await
}

/// [`build_layer_with_retry`] for a file with `[[tenants]]`: every tenant's layer, each
/// waiting for its own AS in the same way. A tenant whose AS cannot be reached does not hold
/// the others back: it is pending (its requests get `403` + `Warning`) and built in the
/// background with the same backoff. Returns once at least one tenant is built: the proxy
/// is ready then (a proxy whose every tenant is pending would only answer `403`s, so it
/// stays not ready, as a single-tenant proxy does before its first sync).
///
/// # Errors
///
/// The first tenant's configuration error or permanent refusal (its message names the
/// tenant).
pub async fn build_tenants_with_retry(config: &Config) -> Result<TenantLayer, tower_uma::Error> {
    let layer = crate::uma::tenant_layer(config, Some(start_retry())).await?;
    layer.first_tenant_built().await;
    Ok(layer)
}

/// How the proxy waits for an AS at start: for as long as it takes, each failure a WARN event.
fn start_retry() -> StartRetry {
    StartRetry::forever()
        .delays(FIRST_BACKOFF, MAX_BACKOFF)
        .on_retry(|a| {
            tracing::warn!(
                attempt = a.attempt(),
                retry_in_ms = u64::try_from(a.delay().as_millis()).unwrap_or(u64::MAX),
                error = format_args!("{:#}", a.error()),
                "the authorization server is not reachable or not ready; retrying in {:.1}s",
                a.delay().as_secs_f64()
            );
        })
}

/// The layer `run` serves with: one, or the tenants' (`[[tenants]]`).
enum Built {
    One(UmaLayer),
    Tenants(TenantLayer),
}

/// Builds the layer of `config`, waiting for its authorization server(s).
async fn build_for(config: &Config) -> Result<Built, tower_uma::Error> {
    if config.tenants.is_empty() {
        build_layer_with_retry(config).await.map(Built::One)
    } else {
        build_tenants_with_retry(config).await.map(Built::Tenants)
    }
}

/// Serves proxy mode with `layer` around the forwarding service: RFC 9728 metadata first,
/// then `allowed_hosts`, then the layer.
async fn serve_proxy<L>(
    config: &Config,
    upstream: &crate::forward::Upstream,
    layer: &L,
    metadata: Option<tower_uma::metadata::ResourceMetadataDocument>,
    listener: TcpListener,
    announced: impl Future<Output = ()>,
) -> Drain
where
    L: tower::Layer<crate::forward::Forward>,
    L::Service: Service<Request<Incoming>, Response = Response<ProxyBody>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    <L::Service as Service<Request<Incoming>>>::Future: Send + 'static,
{
    let options = ForwardOptions::default()
        .timeout(config.upstream_timeout)
        .forward_authorization(config.forward_authorization)
        .trusted_proxies(config.trusted_proxies.clone());
    let service = layer.layer(forwarding_service(upstream.clone(), options));
    // Keycloak's `on-deny-redirect-to`: denials become redirects (proxy mode only: a gateway
    // asking for a decision needs the 403).
    let redirect = config
        .keycloak
        .as_ref()
        .and_then(tower_uma::keycloak::KeycloakConfig::on_deny_redirect_to);
    let service = tower::Layer::layer(&tower::util::option_layer(redirect), service);
    let service = MetadataFront::new(metadata, service);
    let service = HostCheck::new(config.allowed_hosts.clone(), service);
    // The headers the upstream will not receive from this client go before anything looks at
    // the request: the layer's claims read what the upstream reads.
    let trusted = config.trusted_proxies.clone();
    let service = tower::util::MapRequest::new(service, move |mut req: Request<Incoming>| {
        remove_untrusted_headers(&mut req, &trusted);
        req
    });
    serve(listener, service, announced, config.shutdown_timeout).await
}

/// Runs the proxy of `config` until `shutdown` completes.
///
/// 1. Binds `listen` (and `admin_listen`, whose `/healthz` answers `503` until step 3).
/// 2. Discovers the AS and registers the resources, retrying while the AS cannot be reached
///    (see [`build_layer_with_retry`]); `shutdown` during this step ends the run cleanly.
/// 3. Calls `on_listening` with the bound address and serves: `X-Uma-*` stripping (in proxy
///    mode also the forwarding headers of clients that are not `trusted_proxies`, and path
///    overrides: [`remove_untrusted_headers`]), then `allowed_hosts` ([`HostCheck`]), then the
///    layer, then the [`forwarding_service`].
/// 4. On `shutdown`: stops accepting, waits at most `shutdown_timeout` for requests in flight.
///
/// `metrics` is the handle of an installed Prometheus recorder, rendered on `/metrics`; its
/// upkeep runs every [`UPKEEP_INTERVAL`](crate::metrics::UPKEEP_INTERVAL) until `run`
/// returns, so its memory stays flat without scrapes (or without an admin listener).
///
/// # Errors
///
/// [`RunError::Bind`] when an address cannot be bound, [`RunError::Layer`] for a
/// configuration the layer refuses.
pub async fn run(
    config: Config,
    metrics: Option<PrometheusHandle>,
    on_listening: impl FnOnce(SocketAddr),
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    if config.mode == Mode::Proxy && config.upstream.is_none() {
        return Err(RunError::NoUpstream);
    }
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| RunError::Bind {
            what: "listen",
            addr: config.listen,
            source,
        })?;
    let ready = Arc::new(AtomicBool::new(false));
    // Drains the recorder's histogram samples whether or not anything scrapes /metrics.
    let _upkeep = metrics
        .clone()
        .map(|handle| m::Upkeep::spawn(handle, m::UPKEEP_INTERVAL));
    let built = LayerSlot::default();
    let tenants = TenantSlot::default();
    m::describe();
    m::ready(false);

    let (admin_stop, admin_stopped) = tokio::sync::oneshot::channel::<()>();
    let admin = match config.admin_listen {
        Some(addr) => {
            let admin_listener =
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| RunError::Bind {
                        what: "admin_listen",
                        addr,
                        source,
                    })?;
            if let Ok(local) = admin_listener.local_addr() {
                tracing::info!(address = %local, "admin listening on http://{local}");
            }
            let stopped = async {
                let _ = admin_stopped.await;
            };
            let grace = Duration::from_secs(1);
            let ready = Arc::clone(&ready);
            Some(if config.tenants.is_empty() {
                let service = admin_service_with_revoke(
                    ready,
                    metrics,
                    Arc::clone(&built),
                    config.admin_token.clone(),
                );
                tokio::spawn(serve(admin_listener, service, stopped, grace))
            } else {
                let service = admin_service_with_tenants(
                    ready,
                    metrics,
                    Arc::clone(&tenants),
                    config.admin_token.clone(),
                );
                tokio::spawn(serve(admin_listener, service, stopped, grace))
            })
        }
        None => None,
    };
    let stop_admin = move || async move {
        let _ = admin_stop.send(());
        if let Some(task) = admin {
            let _ = task.await;
        }
    };

    tokio::pin!(shutdown);
    if config.tenants.is_empty() {
        tracing::info!(
            issuer = config.authorization_server.issuer.as_deref().unwrap_or("(endpoints set one by one)"),
            client_id = %config.authorization_server.client_id,
            "connecting to the authorization server"
        );
    }
    for t in &config.tenants {
        tracing::info!(
            tenant = %t.name,
            issuer = t.authorization_server.issuer.as_deref().unwrap_or("(endpoints set one by one)"),
            client_id = %t.authorization_server.client_id,
            "connecting to the tenant's authorization server"
        );
    }
    let layer = tokio::select! {
        () = &mut shutdown => {
            tracing::info!("shutdown requested before the first sync; stopping");
            stop_admin().await;
            return Ok(());
        }
        built = build_for(&config) => match built {
            Ok(layer) => layer,
            Err(e) => {
                stop_admin().await;
                return Err(RunError::Layer(e));
            }
        },
    };
    let declared = config.resources.iter().filter(|r| r.decl.is_some()).count()
        + config
            .tenants
            .iter()
            .flat_map(|t| &t.resources)
            .filter(|r| r.decl.is_some())
            .count();
    let pending = match &layer {
        Built::Tenants(layer) => layer.pending_tenants().count(),
        Built::One(_) => 0,
    };
    match &config.upstream {
        Some(upstream) => tracing::info!(
            resources = declared,
            tenants = config.tenants.len(),
            pending,
            upstream = %upstream,
            mode = "proxy",
            "resources synced with the authorization server; ready"
        ),
        None => tracing::info!(
            resources = declared,
            mode = "decision",
            "resources synced with the authorization server; ready"
        ),
    }
    match &layer {
        Built::One(layer) => {
            let _ = built.set(layer.clone());
        }
        Built::Tenants(layer) => {
            let _ = tenants.set(layer.clone());
        }
    }
    ready.store(true, Ordering::Release);
    m::ready(true);

    let local = listener.local_addr().map_err(|source| RunError::Bind {
        what: "listen",
        addr: config.listen,
        source,
    })?;
    on_listening(local);

    let grace = config.shutdown_timeout;
    let draining = Arc::clone(&ready);
    let announced = async move {
        shutdown.await;
        // Not ready while draining, so that load balancers stop sending requests.
        draining.store(false, Ordering::Release);
        m::ready(false);
        tracing::info!(
            grace_ms = grace.as_millis() as u64,
            "shutting down: no new connections; finishing requests in flight"
        );
    };
    // RFC 9728 metadata is answered by the proxy itself (the layer only makes its path
    // public). Misdirected requests are answered before the layer spends an AS call on them.
    let drained = match (&config.mode, &config.upstream, &layer) {
        (Mode::Decision(options), _, Built::One(layer)) => {
            let metadata = layer.resource_metadata().cloned();
            let service = tower::Layer::layer(layer, DecisionAnswer);
            let service = HostCheck::new(config.allowed_hosts.clone(), service);
            let service = DecisionFront::new(options.clone(), service);
            let service = MetadataFront::new(metadata, service);
            serve(listener, service, announced, grace).await
        }
        (Mode::Proxy, Some(upstream), Built::One(layer)) => {
            let metadata = layer.resource_metadata().cloned();
            let map = config.resource_map();
            if map.reads_body() {
                // Claims pushed from JSON bodies: the body of those routes' JSON requests is
                // read (bounded in size and time) before the layer decides, and forwarded as
                // read; every other body streams.
                let stack = tower::ServiceBuilder::new()
                    .map_request(|r: Request<Incoming>| r.map(RequestBody::from))
                    .layer(
                        ClaimBodyLayer::new(CLAIM_BODY_LIMIT)
                            .only_for(&map)
                            .read_timeout(config.upstream_timeout),
                    )
                    .layer(layer.clone());
                serve_proxy(&config, upstream, &stack, metadata, listener, announced).await
            } else {
                serve_proxy(&config, upstream, layer, metadata, listener, announced).await
            }
        }
        (Mode::Proxy, Some(upstream), Built::Tenants(layer)) => {
            serve_proxy(&config, upstream, layer, None, listener, announced).await
        }
        // Refused at the start of `run` (no upstream), and by the file (tenants in decision
        // mode).
        (Mode::Proxy, None, _) | (Mode::Decision(_), _, Built::Tenants(_)) => Drain::Complete,
    };
    stop_admin().await;
    match drained {
        Drain::Complete => tracing::info!("stopped"),
        Drain::TimedOut => tracing::warn!(
            "stopped: shutdown_timeout passed with requests still in flight; their connections were closed"
        ),
    }
    Ok(())
}

/// The most a JSON request body may weigh when routes push claims from it: `413` beyond.
pub const CLAIM_BODY_LIMIT: usize = 64 * 1024;
