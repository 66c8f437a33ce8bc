//! The forwarding service: one request in, the same request to the upstream, its response
//! back, bodies streamed both ways.
//!
//! [`forwarding_service`] builds a [`Forward`], a Tower service over
//! `Request<hyper::body::Incoming>`. It is the inner service of the UMA proxy
//! (`UmaLayer::layer(forward)`) and, on its own, a bare forwarding proxy (what the benches
//! compare the UMA proxy with). For each request it:
//!
//! - rewrites the target to the upstream (`upstream` base path + the request's path and query);
//! - removes hop-by-hop headers (`Connection` and every header it names, `Keep-Alive`,
//!   `Proxy-Connection`, `Proxy-Authenticate`, `Proxy-Authorization`, `TE`, `Trailer`,
//!   `Transfer-Encoding`, `Upgrade`) in both directions, and `Host` (the client sets the
//!   upstream's);
//! - removes every method-override signal (`X-HTTP-Method-Override`, `X-HTTP-Method`,
//!   `X-Method-Override`, also with `_`, `.` or other punctuation for `-`, and `_method` query pairs; see
//!   [`tower_uma::method_override::MethodOverride`]): the layer has refused them or decided on them already,
//!   and the upstream must run the request line's method;
//! - removes the client's forwarding headers (`Forwarded`, `X-Real-IP`, every
//!   `X-Forwarded-*` and the other client-address headers of proxies and CDNs: `X-Client-IP`,
//!   `Client-IP`, `True-Client-IP`, `CF-Connecting-IP`, `Fastly-Client-IP`,
//!   `X-Cluster-Client-IP`, `Forwarded-For`, `X-Forwarded`) unless the client's address is in
//!   [`ForwardOptions::trusted_proxies`]; their spellings with `_`, `.` or other punctuation for `-` and the path
//!   overrides `X-Original-URL`, `X-Rewrite-URL`, `X-Original-URI` and
//!   `X-Envoy-Original-Path` are removed whoever sends them;
//! - sets `X-Forwarded-For` (the client's IP, appended to the list a trusted proxy sent),
//!   `X-Forwarded-Proto: http` and `X-Forwarded-Host` (the `Host` the client used), keeping a
//!   trusted proxy's own `X-Forwarded-Proto` and `X-Forwarded-Host`, and appends `for=` the
//!   client's IP to a trusted proxy's `Forwarded` (RFC 7239 §4);
//! - removes any `X-Uma-Subject`, `X-Uma-Client-Id`, `X-Uma-Permissions` and `X-Uma-Tenant`
//!   (also spelled with `_`, `.` or other punctuation for `-`) and, when the request carries a
//!   [`UmaPrincipal`], sets the first three from it (`sub` and `client_id` percent-encoded, see
//!   [`X_UMA_SUBJECT`]); drops `Authorization` unless [`ForwardOptions::forward_authorization`];
//! - when a `TenantLayer` picked the request's tenant (a [`Tenant`] in its extensions), sets
//!   `X-Uma-Tenant` to its name (see [`X_UMA_TENANT`]) and, when the tenant's path prefix was
//!   stripped, `X-Forwarded-Prefix` to it (after a trusted proxy's own prefix, if it sent one);
//! - sends it over a pooled HTTP/1.1 keep-alive connection (the proxy's own pool for its one
//!   upstream) and answers `502 Bad Gateway` when
//!   the upstream cannot be reached or fails, `504 Gateway Timeout` when its response head does
//!   not arrive within [`ForwardOptions::timeout`];
//! - answers the client in HTTP/1.1 whatever version the upstream spoke (an HTTP/1.0 upstream
//!   does not make the client's connection HTTP/1.0 and close it; hyper still answers an
//!   HTTP/1.0 client in HTTP/1.0).
//!
//! Bodies are not collected: the request's `Incoming` body is handed to the upstream client
//! as it is (one of unknown length, whatever the method, sent chunked), and the upstream's
//! `Incoming` response body is boxed ([`ProxyBody`]) and streamed back frame by frame.
//! The one exception: when routes push claims from JSON bodies, the binary reads JSON request
//! bodies whole (at most [`CLAIM_BODY_LIMIT`](crate::server::CLAIM_BODY_LIMIT)) before the
//! layer decides, and forwards the bytes it read ([`RequestBody`]).
//!
//! # Example
//!
//! A bare forwarding proxy (no UMA), served with [`serve`](crate::serve):
//!
//! ```no_run
//! use std::time::Duration;
//! use uma_proxy::{ForwardOptions, Upstream, forwarding_service, serve};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let upstream = Upstream::parse("http://127.0.0.1:9000")?;
//! let forward = forwarding_service(upstream, ForwardOptions::default());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! serve(listener, forward, std::future::pending(), Duration::from_secs(10)).await;
//! # Ok(()) }
//! ```

use std::convert::Infallible;
use std::fmt;
use std::fmt::Write as _;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery, Uri};
use http::{Request, Response, StatusCode, Version};
use http_body::Body as _;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tower_service::Service;
use tower_uma::tenant::Tenant;
use tower_uma::{UmaPrincipal, introspect::Permission};

use crate::body::RequestBody;
use crate::memo::{Memo, address_hash};
use crate::metrics as m;
use crate::pool::{Exchange, Pool, PooledBody, UpstreamError};
use crate::timer::Sleeps;
use crate::trust::TrustedProxies;

/// The error type of proxy bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of every response the proxy sends: the upstream's streamed body, the layer's empty
/// refusals, or the proxy's own short error texts.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// `X-Uma-Subject`: the RPT's `sub`, percent-encoded: every byte of its UTF-8 outside
/// visible ASCII (`0x21`–`0x7E`), and `%` itself, is written `%XX` (upper-case hex), so
/// `" admin"` is sent as `%20admin` and `josé` as `jos%C3%A9`, while `bob` or a UUID is sent
/// as it is. Percent-decoding the header gives exactly the AS's value.
pub const X_UMA_SUBJECT: HeaderName = HeaderName::from_static("x-uma-subject");
/// `X-Uma-Client-Id`: the RPT's `client_id`, percent-encoded like [`X_UMA_SUBJECT`].
pub const X_UMA_CLIENT_ID: HeaderName = HeaderName::from_static("x-uma-client-id");
/// `X-Uma-Permissions`: a JSON array of `{"resource_id", "resource_scopes"}` objects, in
/// visible ASCII and spaces only: other characters (control characters, DEL, non-ASCII) are
/// `\u` escapes, so the value can neither be split nor mangled on the way.
pub const X_UMA_PERMISSIONS: HeaderName = HeaderName::from_static("x-uma-permissions");
/// `X-Uma-Tenant`: the name of the tenant whose authorization server decided the request
/// (`[[tenants]]`), percent-encoded like [`X_UMA_SUBJECT`]. An upstream serving several
/// tenants picks the tenant's data by this header, never by `Host` or path: it is the tenant
/// whose checks the request passed.
pub const X_UMA_TENANT: HeaderName = HeaderName::from_static("x-uma-tenant");
/// `X-Forwarded-Prefix`: the path prefix removed from the request (`strip_prefix`), so that
/// an upstream can write links the client can follow.
pub const X_FORWARDED_PREFIX: HeaderName = HeaderName::from_static("x-forwarded-prefix");
/// `X-Forwarded-For`.
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`.
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `X-Forwarded-Host`.
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// The headers the proxy alone may set; whatever a client sends under these names is removed
/// before anything else sees the request (see [`remove_uma_headers`]).
pub const UMA_HEADERS: [HeaderName; 4] = [
    X_UMA_SUBJECT,
    X_UMA_CLIENT_ID,
    X_UMA_PERMISSIONS,
    X_UMA_TENANT,
];

/// Whether the header name `name` is `canonical` with any `-` possibly spelled with another
/// character that is not a letter or digit: CGI-style upstreams (WSGI, Rack, PHP) read
/// `X_Uma_Subject` and `X-Uma-Subject` as the same `HTTP_X_UMA_SUBJECT`, and PHP reads
/// `X.Uma.Subject` so too (Caddy, and nginx with `ignore_invalid_headers off`, pass it on as
/// `HTTP_X.UMA.SUBJECT`, which PHP registers with `_` for `.`).
fn spelled_as(name: &str, canonical: &str) -> bool {
    name.len() == canonical.len()
        && canonical
            .bytes()
            .zip(name.bytes())
            .all(|(c, n)| c == n || (c == b'-' && !n.is_ascii_alphanumeric()))
}

/// Removes every header for which `spoofed` holds, scanning the names once.
fn remove_names(headers: &mut HeaderMap, spoofed: impl Fn(&str) -> bool) {
    if !headers.keys().any(|n| spoofed(n.as_str())) {
        return;
    }
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|n| spoofed(n.as_str()))
        .cloned()
        .collect();
    for name in names {
        headers.remove(name);
    }
}

/// Removes every header a client could pass off as one of [`UMA_HEADERS`]: those names, and
/// their spellings with `_`, `.` or other punctuation for `-` (`X_Uma_Subject`,
/// `X.Uma.Subject`), which CGI-style upstreams (WSGI, Rack, PHP) read as the same
/// `HTTP_X_UMA_SUBJECT` (PHP registers the `.` that Caddy passes on as `_`).
pub fn remove_uma_headers(headers: &mut HeaderMap) {
    remove_names(headers, is_uma);
}

/// Removes from `req` every header the forwarding service would not pass on from its client
/// (see [`ForwardOptions::trusted_proxies`]): the `X-Uma-*` headers, the path overrides
/// (`X-Original-URL`, `X-Rewrite-URL`, …) and, unless the client (its [`ClientAddr`]) is one
/// of `trusted`, the forwarding headers (`Forwarded`, `X-Forwarded-*`, `X-Real-IP`, …), in
/// every spelling.
///
/// uma-proxy calls it before the layer, so that the layer decides on the headers the upstream
/// receives: a claim pushed from `X-Forwarded-For` (a Keycloak `claim-information-point`)
/// reads a trusted proxy's value or none, never one a client made up. Without a
/// [`ClientAddr`] the client is not trusted.
pub fn remove_untrusted_headers<B>(req: &mut Request<B>, trusted: &TrustedProxies) {
    let trusted = req
        .extensions()
        .get::<ClientAddr>()
        .is_some_and(|ClientAddr(a)| trusted.contains(a.ip()));
    let headers = req.headers_mut();
    remove_names(headers, |name| is_spoofed(name, trusted));
    remove_connection_options(headers);
}

/// Removes the headers a `Connection` header names (RFC 9110 §7.6.1), which the forwarding
/// service would remove as hop-by-hop anyway, so that the layer decides without them, as the
/// upstream will run the request: `Connection: X-Org` must not leave a claim read from
/// `X-Org` in force for a request the upstream receives without it, nor `Connection:
/// Content-Type` a body read as JSON that the upstream reads as a form. `Host`,
/// `Content-Length` and `Transfer-Encoding` stay until the forwarding service (it sets the
/// upstream's `Host` and frames the body itself): the host check and the layer's reading of
/// the body's length need them.
fn remove_connection_options(headers: &mut HeaderMap) {
    if !headers.contains_key(header::CONNECTION) {
        return;
    }
    let named = connection_options(headers);
    for name in named {
        if ![
            header::HOST,
            header::CONTENT_LENGTH,
            header::TRANSFER_ENCODING,
        ]
        .contains(&name)
        {
            headers.remove(name);
        }
    }
}

/// The headers that the `Connection` headers name and the message carries, split on the
/// bytes, so that one token that is not ASCII (or not a name) does not keep the others in.
/// The usual `close` and `keep-alive` are passed over, and a name is made only for a header
/// the message has: most messages allocate nothing here.
fn connection_options(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.eq_ignore_ascii_case(b"close") && !t.eq_ignore_ascii_case(b"keep-alive"))
        .filter_map(|t| std::str::from_utf8(t).ok())
        .filter(|t| headers.contains_key(*t))
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .collect()
}

/// Whether `name` is one of [`UMA_HEADERS`] in any spelling (see [`remove_uma_headers`]).
fn is_uma(name: &str) -> bool {
    name.starts_with('x') && UMA_HEADERS.iter().any(|uma| spelled_as(name, uma.as_str()))
}

/// Whether the forwarding service removes the request header `name` before it sets its own:
/// the `X-Uma-*` headers, path overrides and forwarding headers (a `trusted` proxy's kept, in
/// their usual spelling only), in every spelling.
fn is_spoofed(name: &str, trusted: bool) -> bool {
    // Every one of these names starts with one of these letters (checked by a test): the
    // usual headers are told apart at the first byte.
    if !matches!(name.as_bytes().first(), Some(b'x' | b'f' | b'c' | b't')) {
        return false;
    }
    // A trusted proxy's forwarding headers are kept in their usual spelling only.
    let unusual = || {
        name.bytes()
            .any(|b| b != b'-' && !b.is_ascii_alphanumeric())
    };
    is_uma(name) || is_path_override(name) || (is_forwarding(name) && (!trusted || unusual()))
}

/// The address of the client a request came from, inserted into the request extensions by
/// [`serve`](crate::serve) (used for `X-Forwarded-For`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);

/// Where requests go: `http://HOST:PORT` with an optional base path.
#[derive(Clone, PartialEq, Eq)]
pub struct Upstream {
    authority: Authority,
    /// Empty, or starts with `/` and has no trailing `/`.
    base_path: String,
    /// The `Host` the upstream is sent: `HOST:PORT`, or `HOST` for port 80 (what an HTTP client
    /// would write when the request has none), made once.
    host: HeaderValue,
}

impl Upstream {
    /// Parses `http://HOST:PORT[/BASE]`.
    ///
    /// # Errors
    ///
    /// A message saying what is wrong: not a URL, not `http`, user info, a query or a
    /// fragment.
    ///
    /// # Example
    ///
    /// ```
    /// use uma_proxy::Upstream;
    ///
    /// let up = Upstream::parse("http://127.0.0.1:9000/api/")?;
    /// assert_eq!(up.to_string(), "http://127.0.0.1:9000/api");
    /// assert!(Upstream::parse("https://example.com").is_err());
    /// # Ok::<(), String>(())
    /// ```
    pub fn parse(text: &str) -> Result<Self, String> {
        // Messages show the URL without its user info (refused below).
        let shown = crate::config::redact_url(text);
        let url =
            url::Url::parse(text).map_err(|e| format!("{shown:?} is not an absolute URL: {e}"))?;
        if url.scheme() != "http" {
            return Err(format!(
                "{shown:?}: only http:// upstreams are supported (scheme {:?})",
                url.scheme()
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!(
                "{shown:?}: user info is not allowed in the upstream URL"
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(format!(
                "{shown:?}: the upstream URL may not have a query or a fragment"
            ));
        }
        let host = url
            .host_str()
            .ok_or_else(|| format!("{shown:?} has no host"))?;
        let port = url.port_or_known_default().unwrap_or(80);
        let authority: Authority = format!("{host}:{port}")
            .parse()
            .map_err(|e| format!("{shown:?}: unusable host: {e}"))?;
        let base_path = url.path().trim_end_matches('/').to_owned();
        let host = if port == 80 {
            HeaderValue::from_str(host)
        } else {
            HeaderValue::from_str(authority.as_str())
        }
        .map_err(|e| format!("{shown:?}: unusable host: {e}"))?;
        Ok(Self {
            authority,
            base_path,
            host,
        })
    }

    /// The upstream request's URI, in origin form, for a request's path and query.
    fn uri_for(&self, pq: Option<&PathAndQuery>) -> Result<Uri, http::Error> {
        let pq = match (pq, self.base_path.is_empty()) {
            // The request's own, shared rather than copied and checked again, when it has a
            // path: an absolute-form target without one (`http://host?x=1`) has the path `/`
            // (RFC 9112 §3.2.2), which the layer decided on.
            (Some(pq), true) if pq.as_str().starts_with('/') => pq.clone(),
            (None, true) => PathAndQuery::from_static("/"),
            (pq, _) => {
                let path = pq.map_or("/", PathAndQuery::path);
                let query = pq.and_then(PathAndQuery::query);
                let base = &self.base_path;
                PathAndQuery::try_from(match query {
                    Some(query) => format!("{base}{path}?{query}"),
                    None => format!("{base}{path}"),
                })?
            }
        };
        // Origin-form (RFC 9112 §3.2.1): the connection is to the upstream already.
        let mut parts = http::uri::Parts::default();
        parts.path_and_query = Some(pq);
        Ok(Uri::from_parts(parts)?)
    }
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}{}", self.authority, self.base_path)
    }
}

impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Upstream({self})")
    }
}

/// Settings of [`forwarding_service`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ForwardOptions {
    /// How long the upstream may take, from sending the request (body included) to its
    /// response head; then `504`. The response body that follows is not timed. Defaults to
    /// 30 s.
    pub timeout: Duration,
    /// Whether the client's `Authorization` header reaches the upstream. Defaults to `true`.
    pub forward_authorization: bool,
    /// How long an idle pooled upstream connection is kept: it is closed between this and 1.5
    /// times this after its last response. Defaults to 90 s.
    pub pool_idle_timeout: Duration,
    /// The peers whose forwarding headers are kept (see the [module docs](crate::forward)).
    /// Defaults to none.
    pub trusted_proxies: TrustedProxies,
}

impl Default for ForwardOptions {
    fn default() -> Self {
        Self {
            timeout: crate::config::DEFAULT_UPSTREAM_TIMEOUT,
            forward_authorization: true,
            pool_idle_timeout: Duration::from_secs(90),
            trusted_proxies: TrustedProxies::default(),
        }
    }
}

impl ForwardOptions {
    /// Sets [`timeout`](Self::timeout). Defaults to 30 s.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets [`forward_authorization`](Self::forward_authorization). Defaults to `true`.
    #[must_use]
    pub fn forward_authorization(mut self, forward: bool) -> Self {
        self.forward_authorization = forward;
        self
    }

    /// Sets [`trusted_proxies`](Self::trusted_proxies). Defaults to none.
    #[must_use]
    pub fn trusted_proxies(mut self, trusted: TrustedProxies) -> Self {
        self.trusted_proxies = trusted;
        self
    }
}

/// Builds the forwarding service to `upstream`: the proxy without `UmaLayer`. See the
/// [module docs](crate::forward) for what it does to each request.
///
/// Needs no runtime to be built; it serves requests in whatever Tokio runtime polls it (its
/// connections are made and swept there).
pub fn forwarding_service(upstream: Upstream, options: ForwardOptions) -> Forward {
    let pool = Pool::new(upstream.authority.clone(), options.pool_idle_timeout);
    Forward {
        shared: Arc::new(Shared {
            pool,
            upstream,
            options,
            meters: m::UpstreamMeters::register(),
            sleeps: Sleeps::default(),
        }),
    }
}

/// The forwarding service; see [`forwarding_service`]. Cloning is cheap (an `Arc`).
///
/// The request for the upstream is made in `call`; its [`ResponseFuture`] waits for the
/// upstream's response head.
#[derive(Clone)]
pub struct Forward {
    shared: Arc<Shared>,
}

struct Shared {
    /// The upstream's keep-alive connections.
    pool: Arc<Pool>,
    upstream: Upstream,
    options: ForwardOptions,
    /// The upstream series, registered when the service is built.
    meters: m::UpstreamMeters,
    /// The upstream timeouts' timers, kept for reuse.
    sleeps: Sleeps,
}

impl fmt::Debug for Forward {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Forward")
            .field("upstream", &self.shared.upstream)
            .field("options", &self.shared.options)
            .finish_non_exhaustive()
    }
}

impl Service<Request<Incoming>> for Forward {
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Incoming>) -> ResponseFuture {
        self.forward(req.map(RequestBody::from))
    }
}

/// Requests whose body was read whole before (by a
/// [`ClaimBodyLayer`](tower_uma::resources::ClaimBodyLayer)).
impl Service<Request<RequestBody>> for Forward {
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<RequestBody>) -> ResponseFuture {
        self.forward(req)
    }
}

impl Forward {
    /// Sends `req` on: the request for the upstream is made here, at once, and the future
    /// waits for the upstream's response head (at most [`ForwardOptions::timeout`]).
    fn forward(&self, req: Request<RequestBody>) -> ResponseFuture {
        let req = match self.upstream_request(req) {
            Ok(req) => req,
            Err(answer) => {
                return ResponseFuture {
                    state: State::Answered(answer),
                };
            }
        };
        // One clock reading for the deadline and the latency.
        // Tokio's clock (the same as std's, unless a test paused it), so that the deadline
        // is on the clock of the timer that waits for it.
        let now = tokio::time::Instant::now();
        let started = now.into_std();
        let deadline = now
            .checked_add(self.shared.options.timeout)
            .unwrap_or_else(|| crate::timer::far_future(now));
        ResponseFuture {
            state: State::Waiting {
                response: self.shared.pool.send(req),
                timeout: self.shared.sleeps.until(deadline),
                started,
                shared: Arc::clone(&self.shared),
            },
        }
    }

    /// The request for the upstream (see the [module docs](crate::forward)), or the answer
    /// to send the client instead.
    #[allow(
        clippy::result_large_err,
        reason = "the error is the response, made once per refused request"
    )]
    fn upstream_request(
        &self,
        mut req: Request<RequestBody>,
    ) -> Result<Request<RequestBody>, Response<ProxyBody>> {
        // Defence in depth: the layer refused the signals or decided on them already.
        match tower_uma::method_override::strip_method_override(&mut req) {
            Ok(false) => {}
            Ok(true) => tracing::debug!("removed a method override the layer let through"),
            Err(e) => {
                tracing::debug!(error = %e, "cannot remove a method override from the query");
                return Err(error_response(StatusCode::BAD_REQUEST));
            }
        }
        let (mut parts, body) = req.into_parts();
        let uri = match self.shared.upstream.uri_for(parts.uri.path_and_query()) {
            Ok(uri) => uri,
            Err(e) => {
                tracing::warn!(error = %e, "cannot build the upstream URI");
                return Err(error_response(StatusCode::BAD_GATEWAY));
            }
        };
        let client_addr = parts.extensions.get::<ClientAddr>().copied();
        let trusted = client_addr
            .is_some_and(|ClientAddr(a)| self.shared.options.trusted_proxies.contains(a.ip()));
        let principal = parts.extensions.remove::<UmaPrincipal>();
        let tenant = parts.extensions.remove::<Tenant>();

        let headers = &mut parts.headers;
        // The upstream's own Host (RFC 9110 §7.2): the client's named this proxy. Read before
        // the hop-by-hop headers go, so that a client's `Connection: host` cannot hide it from
        // X-Forwarded-Host; set again if that took ours (nothing else writes one).
        let original_host = headers
            .insert(header::HOST, self.shared.upstream.host.clone())
            .or_else(|| {
                parts
                    .uri
                    .authority()
                    .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            });
        if remove_hop_by_hop(headers) && !headers.contains_key(header::HOST) {
            headers.insert(header::HOST, self.shared.upstream.host.clone());
        }
        if !body.is_end_stream() && body.size_hint().exact().is_none() {
            // A body of unknown length (the client sent it chunked) goes on chunked: left to
            // itself, hyper's client would send a GET, HEAD or CONNECT without it.
            headers.insert(
                header::TRANSFER_ENCODING,
                HeaderValue::from_static("chunked"),
            );
        }
        // X-Uma-* (stripped by `serve` already, unless the service is served otherwise),
        // path overrides and forwarding headers, in one pass over the names.
        remove_names(headers, |name| is_spoofed(name, trusted));
        if !self.shared.options.forward_authorization {
            headers.remove(header::AUTHORIZATION);
        }
        // Room for the X-Forwarded-* headers and the X-Uma-* ones, so that the map grows (and
        // rehashes) at most once.
        headers.reserve(
            if principal.is_some() { 6 } else { 3 } + if tenant.is_some() { 2 } else { 0 },
        );
        if let Some(p) = &principal
            && let Err(what) = set_principal_headers(headers, p)
        {
            tracing::warn!(
                token.fingerprint = %p.token_fingerprint(),
                "the RPT's {what} cannot be sent in a header; refusing the request"
            );
            return Err(error_response(StatusCode::BAD_GATEWAY));
        }
        add_forwarded(headers, client_addr, original_host, trusted);
        if let Some(tenant) = &tenant {
            set_tenant_headers(headers, tenant);
        }

        parts.uri = uri;
        parts.version = Version::HTTP_11;
        Ok(Request::from_parts(parts, body))
    }
}

/// The future of [`Forward`]: the upstream's response head, within
/// [`ForwardOptions::timeout`], made the client's response.
pub struct ResponseFuture {
    state: State,
}

enum State {
    /// The proxy answers itself (the request could not be sent on).
    Answered(Response<ProxyBody>),
    /// The upstream request is on its way.
    Waiting {
        response: Exchange,
        /// Fires at the deadline; kept for another request once done with.
        timeout: crate::timer::Timer,
        started: std::time::Instant,
        shared: Arc<Shared>,
    },
    /// The response was given.
    Done,
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Answered(_) => "answered",
            State::Waiting { .. } => "waiting for the upstream",
            State::Done => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<ProxyBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        // The upstream first, then the deadline, as `tokio::time::timeout` does.
        let upstream = match &mut this.state {
            State::Waiting {
                response, timeout, ..
            } => match Pin::new(response).poll(cx) {
                Poll::Ready(result) => Some(result),
                Poll::Pending if timeout.poll(cx).is_ready() => None,
                Poll::Pending => return Poll::Pending,
            },
            State::Answered(_) | State::Done => None,
        };
        Poll::Ready(Ok(match std::mem::replace(&mut this.state, State::Done) {
            State::Waiting {
                timeout,
                started,
                shared,
                ..
            } => {
                shared.sleeps.keep(timeout);
                shared.answer(upstream, started.elapsed())
            }
            State::Answered(answer) => answer,
            // Polled again after its response: a caller's mistake, answered, not a panic.
            State::Done => error_response(StatusCode::INTERNAL_SERVER_ERROR),
        }))
    }
}

impl Shared {
    /// The client's response to the upstream's `result` (`None`: no response head before the
    /// deadline), `elapsed` after sending; recorded in the metrics.
    fn answer(
        &self,
        result: Option<Result<Response<PooledBody>, UpstreamError>>,
        elapsed: Duration,
    ) -> Response<ProxyBody> {
        match result {
            None => {
                self.meters.record("timeout", elapsed);
                tracing::warn!(
                    upstream = %self.upstream,
                    timeout_ms = self.options.timeout.as_millis() as u64,
                    "the upstream did not answer in time"
                );
                error_response(StatusCode::GATEWAY_TIMEOUT)
            }
            Some(Err(e)) => {
                self.meters.record("error", elapsed);
                tracing::warn!(upstream = %self.upstream, error = %error_chain(&e), "the upstream request failed");
                error_response(StatusCode::BAD_GATEWAY)
            }
            Some(Ok(resp)) => {
                self.meters.record("ok", elapsed);
                let (mut parts, body) = resp.into_parts();
                remove_hop_by_hop(&mut parts.headers);
                // hyper answers in the response's version: an HTTP/1.0 upstream would make
                // the client's connection HTTP/1.0, closed after this response.
                parts.version = Version::HTTP_11;
                Response::from_parts(parts, body.map_err(BoxError::from).boxed_unsync())
            }
        }
    }
}

/// `error: cause: cause…`: an error and every cause in its source chain, each once (every
/// level prints only its own message). For logs and the binary's last words.
#[must_use]
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// A body of the proxy's own answers: `bytes`, in one frame.
pub(crate) fn full_body(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// The proxy's own answer: the status and its reason as plain text.
pub(crate) fn error_response(status: StatusCode) -> Response<ProxyBody> {
    let text = format!("{}\n", status.canonical_reason().unwrap_or("error"));
    let mut resp = Response::new(full_body(text));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// The hop-by-hop headers of RFC 9110 §7.6.1 (and the old `Keep-Alive`/`Proxy-Connection`).
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Whether `name` is one of [`HOP_BY_HOP`] or `Upgrade`: first by its length, which sets
/// apart most of the headers a message carries.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    let len = name.as_str().len();
    len < 64
        && HOP_BY_HOP_LENGTHS & (1 << len) != 0
        && (HOP_BY_HOP.contains(name) || name == header::UPGRADE)
}

/// The lengths of the names of [`HOP_BY_HOP`] and `Upgrade`, a bit each (checked by a test):
/// `te` 2, `trailer` and `upgrade` 7, `connection` and `keep-alive` 10, `proxy-connection`
/// 16, `transfer-encoding` 17, `proxy-authenticate` 18, `proxy-authorization` 19.
const HOP_BY_HOP_LENGTHS: u64 = 1 << 2 | 1 << 7 | 1 << 10 | 1 << 16 | 1 << 17 | 1 << 18 | 1 << 19;

/// Removes the hop-by-hop headers, those named by `Connection` included, and `Upgrade`;
/// `false` when there were none (nothing was removed).
pub(crate) fn remove_hop_by_hop(headers: &mut HeaderMap) -> bool {
    // One look at each name; most messages carry none of them.
    if !headers.keys().any(is_hop_by_hop) {
        return false;
    }
    let named = connection_options(headers);
    for name in named {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove(header::UPGRADE);
    true
}

/// `Forwarded` (RFC 7239).
const FORWARDED: HeaderName = HeaderName::from_static("forwarded");

/// The headers besides `X-Forwarded-*` that proxies and CDNs use to say where a request came
/// from, and that applications read for the client's address (Node's `request-ip` reads
/// `X-Client-IP` before `X-Forwarded-For`; PHP code reads `HTTP_CLIENT_IP`).
const CLIENT_ADDRESS: [&str; 10] = [
    "forwarded",
    "forwarded-for",
    "x-forwarded",
    "x-real-ip",
    "x-client-ip",
    "client-ip",
    "true-client-ip",
    "cf-connecting-ip",
    "fastly-client-ip",
    "x-cluster-client-ip",
];

/// Whether `name` says where a request came from, as a proxy would: `Forwarded`, `X-Real-IP`,
/// any `X-Forwarded-*` or another of [`CLIENT_ADDRESS`], in any spelling with `_`, `.` or other
/// punctuation for `-`.
fn is_forwarding(name: &str) -> bool {
    const PREFIX: &str = "x-forwarded-";
    CLIENT_ADDRESS.iter().any(|known| spelled_as(name, known))
        || (name.len() > PREFIX.len()
            && name
                .get(..PREFIX.len())
                .is_some_and(|p| spelled_as(p, PREFIX)))
}

/// Whether `name` asks the upstream to route another path than the request's (IIS, older
/// Symfony and Zend), or names the path a gateway saw (nginx `auth_request` setups, Envoy), which
/// some applications route or authorise on: never forwarded.
fn is_path_override(name: &str) -> bool {
    [
        "x-original-url",
        "x-rewrite-url",
        "x-original-uri",
        "x-envoy-original-path",
    ]
    .iter()
    .any(|known| spelled_as(name, known))
}

/// Replaces the values of the list header `name` with one: them, then `element`, joined by
/// `, ` (values that are not text are dropped).
fn append_element(headers: &mut HeaderMap, name: HeaderName, element: &str) {
    let mut list: Vec<&str> = headers
        .get_all(&name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    list.push(element);
    let value = HeaderValue::from_str(&list.join(", "));
    headers.remove(&name);
    if let Ok(v) = value {
        headers.insert(name, v);
    }
}

/// `ip` as a header value. Written once per thread for the last address seen: clients come
/// through few addresses (a load balancer, a gateway), and formatting one costs more than
/// the rest of `X-Forwarded-For`.
fn ip_value(ip: std::net::IpAddr) -> HeaderValue {
    thread_local! {
        static LAST: std::cell::RefCell<Option<(std::net::IpAddr, HeaderValue)>> =
            const { std::cell::RefCell::new(None) };
    }
    LAST.with_borrow_mut(|last| match last {
        Some((seen, value)) if *seen == ip => value.clone(),
        _ => {
            // An address is visible ASCII: always a valid header value.
            let value = HeaderValue::from_str(&ip.to_string())
                .unwrap_or_else(|_| HeaderValue::from_static(""));
            *last = Some((ip, value.clone()));
            value
        }
    })
}

/// Sets the forwarding headers for a request from `client`; a `trusted` client's own are
/// kept and extended, anyone else's removed (see the [module docs](crate::forward)).
#[cfg(test)]
fn set_forwarded(
    headers: &mut HeaderMap,
    client: Option<ClientAddr>,
    original_host: Option<HeaderValue>,
    trusted: bool,
) {
    remove_names(headers, |name| is_spoofed(name, trusted));
    add_forwarded(headers, client, original_host, trusted);
}

/// Sets the forwarding headers for a request from `client`, once the client's own are
/// removed but a `trusted` proxy's (see [`is_spoofed`]).
fn add_forwarded(
    headers: &mut HeaderMap,
    client: Option<ClientAddr>,
    original_host: Option<HeaderValue>,
    trusted: bool,
) {
    if !trusted {
        // None of the client's is left: no lookups.
        if let Some(ClientAddr(addr)) = client {
            headers.insert(X_FORWARDED_FOR, ip_value(addr.ip().to_canonical()));
        }
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
        if let Some(host) = original_host {
            headers.insert(X_FORWARDED_HOST, host);
        }
        return;
    }
    if let Some(ClientAddr(addr)) = client {
        let ip = addr.ip().to_canonical();
        let element = ip_value(ip);
        if headers.contains_key(&X_FORWARDED_FOR) {
            // A trusted proxy's list: this hop's address goes at its end.
            append_element(
                headers,
                X_FORWARDED_FOR,
                element.to_str().unwrap_or_default(),
            );
        } else {
            headers.insert(X_FORWARDED_FOR, element);
        }
        if headers.contains_key(&FORWARDED) {
            // Only a trusted proxy's is left: add this hop's element (RFC 7239 §4, §6).
            let node = match ip {
                std::net::IpAddr::V4(v4) => format!("for={v4}"),
                std::net::IpAddr::V6(v6) => format!("for=\"[{v6}]\""),
            };
            append_element(headers, FORWARDED, &node);
        }
    }
    if !headers.contains_key(&X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    }
    if !headers.contains_key(&X_FORWARDED_HOST)
        && let Some(host) = original_host
    {
        headers.insert(X_FORWARDED_HOST, host);
    }
}

/// Sets `X-Uma-Tenant` and, when the tenant's prefix was stripped, `X-Forwarded-Prefix` (a
/// trusted proxy's own prefix, the only one left by now, goes first).
fn set_tenant_headers(headers: &mut HeaderMap, tenant: &Tenant) {
    headers.insert(X_UMA_TENANT, percent_encoded(tenant.name()));
    if let Some(prefix) = tenant.stripped_prefix() {
        let outer = headers
            .get(&X_FORWARDED_PREFIX)
            .and_then(|v| v.to_str().ok())
            .map_or("", |v| v.trim_end_matches('/'));
        let joined = percent_encoded(&format!("{outer}{prefix}"));
        headers.insert(X_FORWARDED_PREFIX, joined);
    }
}

/// `value` with every byte outside visible ASCII (`0x21`–`0x7E`), and `%`, percent-encoded
/// (upper-case hex); see [`X_UMA_SUBJECT`].
fn percent_encoded(value: &str) -> HeaderValue {
    let plain = |b: u8| (0x21..=0x7e).contains(&b) && b != b'%';
    if value.bytes().all(plain)
        && let Ok(v) = HeaderValue::from_str(value)
    {
        return v;
    }
    let mut out = String::with_capacity(value.len() * 3);
    for b in value.bytes() {
        if plain(b) {
            out.push(char::from(b));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{b:02X}");
        }
    }
    // Visible ASCII only: a valid header value (an empty one included).
    HeaderValue::from_maybe_shared(Bytes::from(out))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Sets the three `X-Uma-*` headers; `Err(field)` when a value cannot be sent.
pub(crate) fn set_principal_headers(
    headers: &mut HeaderMap,
    p: &UmaPrincipal,
) -> Result<(), &'static str> {
    let values = principal_values(p)?;
    if let Some(sub) = values.subject {
        headers.insert(X_UMA_SUBJECT, sub);
    }
    if let Some(client_id) = values.client_id {
        headers.insert(X_UMA_CLIENT_ID, client_id);
    }
    headers.insert(X_UMA_PERMISSIONS, values.permissions);
    Ok(())
}

/// The three `X-Uma-*` values of one principal.
#[derive(Debug, Clone)]
struct PrincipalValues {
    subject: Option<HeaderValue>,
    client_id: Option<HeaderValue>,
    permissions: HeaderValue,
}

/// The `X-Uma-*` values of `p`, made once per thread for each of the last principals seen
/// (at most [`SETS`](crate::memo::SETS) × [`WAYS`](crate::memo::WAYS) a thread, see
/// [`Memo`]) and shared by their requests.
///
/// The requests of a cached RPT carry principals that share one introspection result, so the
/// memo finds a principal's values by the address of that result, and gives them only to a
/// principal equal to the one they were made for: the same result (the memo's own copy of
/// the principal keeps it alive, so its address is never another's while kept), the same
/// resource, the same permissions granted and the same token. The values are functions of
/// the result and the permissions granted alone, so they are never another request's, nor
/// stale.
fn principal_values(p: &UmaPrincipal) -> Result<PrincipalValues, &'static str> {
    thread_local! {
        static KEPT: std::cell::RefCell<Memo<UmaPrincipal, PrincipalValues>> =
            const { std::cell::RefCell::new(Memo::new()) };
    }
    let same =
        |kept: &UmaPrincipal| std::ptr::eq(kept.introspection(), p.introspection()) && kept == p;
    let make = || {
        let values = PrincipalValues {
            subject: p.subject().map(percent_encoded),
            client_id: p.client_id().map(percent_encoded),
            permissions: permissions_value(p)?,
        };
        Ok((p.clone(), values))
    };
    KEPT.with_borrow_mut(|memo| {
        memo.get_or_try_insert(
            address_hash(std::ptr::from_ref(p.introspection())),
            same,
            make,
        )
    })
}

/// The `X-Uma-Permissions` value of `p`: the JSON is written into a buffer kept by the thread,
/// then copied once into the header value.
fn permissions_value(p: &UmaPrincipal) -> Result<HeaderValue, &'static str> {
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    /// A buffer grown past this (an RPT with very many permissions) is not kept.
    const KEPT: usize = 4096;
    SCRATCH.with_borrow_mut(|json| {
        json.clear();
        let value = match write_permissions_json(json, p.permissions()) {
            Ok(()) if json.iter().all(|&b| (b' '..=b'~').contains(&b)) => {
                HeaderValue::from_bytes(json).map_err(|_| "permissions")
            }
            Ok(()) => HeaderValue::from_maybe_shared(Bytes::from(ascii_json(json.clone())))
                .map_err(|_| "permissions"),
            Err(_) => Err("permissions"),
        };
        if json.capacity() > KEPT {
            *json = Vec::new();
        }
        value
    })
}

/// `[{"resource_id": …, "resource_scopes": […]}, …]`, written directly: ids and scope names
/// are nearly always plain printable ASCII, which is copied as is; anything else goes through
/// serde_json's string escaping.
#[cfg(test)]
fn permissions_json<'a>(
    permissions: impl Iterator<Item = &'a Permission>,
) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::with_capacity(128);
    write_permissions_json(&mut out, permissions)?;
    Ok(out)
}

/// Appends [`permissions_json`]'s JSON to `out`.
fn write_permissions_json<'a>(
    out: &mut Vec<u8>,
    permissions: impl Iterator<Item = &'a Permission>,
) -> Result<(), serde_json::Error> {
    out.push(b'[');
    for (i, permission) in permissions.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(br#"{"resource_id":"#);
        json_string(out, permission.resource_id())?;
        out.extend_from_slice(br#","resource_scopes":["#);
        for (j, scope) in permission.resource_scopes().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            json_string(out, scope)?;
        }
        out.extend_from_slice(b"]}");
    }
    out.push(b']');
    Ok(())
}

/// Appends `s` as a JSON string.
fn json_string(out: &mut Vec<u8>, s: &str) -> Result<(), serde_json::Error> {
    if s.bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        Ok(())
    } else {
        serde_json::to_writer(out, s)
    }
}

/// Escapes every character of serialised JSON that is neither visible ASCII nor a space
/// (DEL and non-ASCII: serde_json escapes the other control characters already) as `\uXXXX`
/// (surrogate pairs above the BMP). Such characters only occur inside strings, so the result
/// is equivalent JSON that fits a header value.
fn ascii_json(json: Vec<u8>) -> Vec<u8> {
    let header_safe = |c: char| (' '..='~').contains(&c);
    if json.iter().all(|&b| header_safe(char::from(b))) {
        return json;
    }
    // serde_json writes UTF-8; should it not, nothing is escaped and the header is refused.
    let Ok(text) = std::str::from_utf8(&json) else {
        return json;
    };
    let mut out = String::with_capacity(json.len() + 16);
    for c in text.chars() {
        if header_safe(c) {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                // Writing to a String cannot fail.
                let _ = write!(out, "\\u{u:04x}");
            }
        }
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_urls() {
        let up = Upstream::parse("http://127.0.0.1:9000").unwrap();
        assert_eq!(
            up.uri_for(Some(&PathAndQuery::from_static("/a/b?c=d")))
                .unwrap(),
            "/a/b?c=d"
        );
        let up = Upstream::parse("http://localhost/api/").unwrap();
        assert_eq!(up.to_string(), "http://localhost:80/api");
        assert_eq!(
            up.uri_for(Some(&PathAndQuery::from_static("/x?y")))
                .unwrap(),
            "/api/x?y"
        );
        assert_eq!(up.uri_for(None).unwrap(), "/api/");
        // The Host of the upstream (RFC 9110 §7.2): the port only when it is not 80.
        assert_eq!(up.host, "localhost");
        assert_eq!(
            Upstream::parse("http://127.0.0.1:9000").unwrap().host,
            "127.0.0.1:9000"
        );
        assert_eq!(
            Upstream::parse("http://[::1]:9000").unwrap().host,
            "[::1]:9000"
        );
        // Without a base path the request's path and query are sent as they came.
        let plain = Upstream::parse("http://127.0.0.1:9000").unwrap();
        assert_eq!(plain.uri_for(None).unwrap(), "/");
        assert_eq!(
            plain
                .uri_for(Some(&PathAndQuery::from_static("/%7Ea/b?c=%20")))
                .unwrap(),
            "/%7Ea/b?c=%20"
        );
        // An absolute-form target without a path (`http://host?x=1`) has the path `/`.
        let no_path = PathAndQuery::try_from("?x=1").unwrap();
        assert_eq!(no_path.path(), "/");
        assert_eq!(plain.uri_for(Some(&no_path)).unwrap(), "/?x=1");
        assert_eq!(up.uri_for(Some(&no_path)).unwrap(), "/api/?x=1");
        assert_eq!(
            up.uri_for(Some(&PathAndQuery::from_static("/x?"))).unwrap(),
            "/api/x?"
        );
        for bad in [
            "https://a.test",
            "a.test:80",
            "http://u:p@a.test",
            "http://u@a.test",
            "http://:p@a.test",
            "http://a.test/?q",
            "ftp://a",
        ] {
            assert!(Upstream::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(format!("{up:?}"), "Upstream(http://localhost:80/api)");
    }

    #[test]
    fn spoofed_uma_headers_go_in_every_spelling() {
        let mut h = HeaderMap::new();
        for name in [
            "x-uma-subject",
            "x_uma_client_id",
            "x.uma.permissions",
            "x-uma_subject",
            // Not one of the proxy's headers: kept.
            "x-uma-subjects",
            "x-umasubject",
            "x-uma-other",
        ] {
            h.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_static("spoofed"),
            );
        }
        remove_uma_headers(&mut h);
        let mut kept: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        kept.sort_unstable();
        assert_eq!(kept, ["x-uma-other", "x-uma-subjects", "x-umasubject"]);
    }

    #[test]
    fn options_are_set_by_their_setters() {
        let trusted = TrustedProxies::parse(["10.0.0.0/8"]).unwrap();
        let o = ForwardOptions::default()
            .timeout(Duration::from_millis(1500))
            .forward_authorization(false)
            .trusted_proxies(trusted);
        assert_eq!(o.timeout, Duration::from_millis(1500));
        assert!(!o.forward_authorization);
        assert!(o.trusted_proxies.contains("10.1.2.3".parse().unwrap()));
        let d = ForwardOptions::default();
        assert!(d.forward_authorization && d.trusted_proxies.is_empty());
    }

    #[tokio::test]
    async fn the_service_shows_its_upstream() {
        let up = Upstream::parse("http://127.0.0.1:9000/api").unwrap();
        let shown = format!("{:?}", forwarding_service(up, ForwardOptions::default()));
        assert!(
            shown.starts_with("Forward { upstream: Upstream(http://127.0.0.1:9000/api)"),
            "{shown}"
        );
    }

    #[test]
    fn errors_are_logged_with_their_causes() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl fmt::Display for Outer {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("client error (Connect)")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = Outer(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "tcp connect error",
        ));
        assert_eq!(error_chain(&e), "client error (Connect): tcp connect error");
        assert_eq!(error_chain(&e.0), "tcp connect error");
    }

    #[tokio::test]
    async fn the_proxys_own_answers_are_plain_text() {
        let resp = error_response(StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(resp.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(
            resp.headers()[header::CONTENT_TYPE],
            "text/plain; charset=utf-8"
        );
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "Gateway Timeout\n");
    }

    #[test]
    fn the_prefilters_know_every_name() {
        // `is_spoofed` tells names apart by their first letter, `is_hop_by_hop` by length.
        let uma = UMA_HEADERS;
        let scrubbed = uma
            .iter()
            .map(HeaderName::as_str)
            .chain(CLIENT_ADDRESS)
            .chain(["x-forwarded-for", "x-original-url", "x-rewrite-url"])
            .chain(["x-original-uri", "x-envoy-original-path"]);
        for name in scrubbed {
            assert!(is_spoofed(name, false), "{name}");
            assert!(
                matches!(name.as_bytes()[0], b'x' | b'f' | b'c' | b't'),
                "{name}"
            );
        }
        for name in HOP_BY_HOP.iter().chain([&header::UPGRADE]) {
            assert!(is_hop_by_hop(name), "{name}");
        }
        for kept in [
            "host",
            "authorization",
            "content-type",
            "x-end-to-end",
            "te-x",
        ] {
            let name = HeaderName::from_static(kept);
            assert!(!is_spoofed(kept, false) && !is_hop_by_hop(&name), "{kept}");
        }
    }

    #[test]
    fn hop_by_hop_headers_go() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, X-Secret-Hop"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(
            header::PROXY_AUTHORIZATION,
            HeaderValue::from_static("Basic x"),
        );
        h.insert("x-end-to-end", HeaderValue::from_static("kept"));
        remove_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("x-end-to-end"));
    }

    #[test]
    fn connection_options_go_before_the_layer_but_host_and_framing_stay() {
        let mut req = Request::new(());
        let h = req.headers_mut();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, X-Org, Content-Type, Host, Content-Length"),
        );
        h.append(
            header::CONNECTION,
            HeaderValue::from_static("transfer-encoding, authorization"),
        );
        for (name, value) in [
            ("x-org", "acme"),
            ("content-type", "application/json"),
            ("host", "proxy.test"),
            ("content-length", "2"),
            ("authorization", "Bearer t"),
            ("x-end-to-end", "kept"),
        ] {
            h.insert(name, HeaderValue::from_static(value));
        }
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        remove_untrusted_headers(&mut req, &TrustedProxies::default());
        let h = req.headers();
        for gone in ["x-org", "content-type", "authorization"] {
            assert!(!h.contains_key(gone), "{gone}: {h:?}");
        }
        for kept in [
            "connection",
            "host",
            "content-length",
            "transfer-encoding",
            "x-end-to-end",
        ] {
            assert!(h.contains_key(kept), "{kept}: {h:?}");
        }
    }

    #[test]
    fn connection_tokens_go_even_beside_a_non_ascii_one() {
        // RFC 9110 §7.6.1: every field the Connection header names is hop-by-hop; one token
        // that is not ASCII must not keep the others in the request.
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_bytes(b"X-Secret-Hop, caf\xe9").unwrap(),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("x-end-to-end", HeaderValue::from_static("kept"));
        remove_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("x-end-to-end"));
    }

    /// What a client claims in forwarding headers.
    fn claimed() -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("x-forwarded-for", "10.0.0.1"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "front.test"),
            ("x-forwarded-port", "443"),
            ("x-forwarded-prefix", "/api"),
            ("x-real-ip", "10.0.0.1"),
            ("forwarded", "for=10.0.0.1;proto=https"),
            ("x_forwarded_for", "10.6.6.6"),
            ("x-forwarded_host", "evil.test"),
            ("x_real_ip", "10.6.6.6"),
            // PHP reads `.` in `HTTP_X.FORWARDED.FOR` (which Caddy and nginx pass on) as `_`.
            ("x.forwarded.for", "10.6.6.6"),
            ("x-forwarded.proto", "https"),
            ("x-original-url", "/admin"),
            ("x_rewrite_url", "/admin"),
            ("x-forwardedfor", "kept: not a forwarding header"),
            ("x-forwarded-", "kept: names no forwarded field"),
        ] {
            h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn forwarding_headers_of_untrusted_clients_are_replaced() {
        let mut h = claimed();
        let addr = ClientAddr("[::ffff:127.0.0.1]:5555".parse().unwrap());
        let host = Some(HeaderValue::from_static("proxy:8080"));
        set_forwarded(&mut h, Some(addr), host, false);
        assert_eq!(h[X_FORWARDED_FOR], "127.0.0.1");
        assert_eq!(h[X_FORWARDED_PROTO], "http");
        assert_eq!(h[X_FORWARDED_HOST], "proxy:8080");
        assert_eq!(h.len(), 5, "{h:?}");
        assert!(h.contains_key("x-forwardedfor") && h.contains_key("x-forwarded-"));
    }

    #[test]
    fn each_client_gets_its_own_address() {
        // The last address formatted is kept per thread: a new one must not get the old one.
        for (peer, expected) in [
            ("127.0.0.1:5555", "127.0.0.1"),
            ("127.0.0.1:6666", "127.0.0.1"),
            ("10.1.2.3:5555", "10.1.2.3"),
            ("[::ffff:10.1.2.3]:7", "10.1.2.3"),
            ("[fd00::7]:5555", "fd00::7"),
            ("127.0.0.1:5555", "127.0.0.1"),
        ] {
            let mut h = HeaderMap::new();
            let addr = ClientAddr(peer.parse().unwrap());
            set_forwarded(&mut h, Some(addr), None, false);
            assert_eq!(h[X_FORWARDED_FOR], expected, "{peer}");
        }
    }

    #[test]
    fn forwarding_headers_of_trusted_proxies_are_extended() {
        let mut h = claimed();
        let addr = ClientAddr("[fd00::7]:5555".parse().unwrap());
        let host = Some(HeaderValue::from_static("proxy:8080"));
        set_forwarded(&mut h, Some(addr), host, true);
        assert_eq!(h[X_FORWARDED_FOR], "10.0.0.1, fd00::7");
        assert_eq!(h[X_FORWARDED_PROTO], "https");
        assert_eq!(h[X_FORWARDED_HOST], "front.test");
        assert_eq!(h["x-forwarded-port"], "443");
        assert_eq!(h["x-forwarded-prefix"], "/api");
        assert_eq!(h["x-real-ip"], "10.0.0.1");
        assert_eq!(
            h["forwarded"],
            "for=10.0.0.1;proto=https, for=\"[fd00::7]\""
        );
        for spoof in [
            "x_forwarded_for",
            "x-forwarded_host",
            "x_real_ip",
            "x.forwarded.for",
            "x-forwarded.proto",
            "x-original-url",
            "x_rewrite_url",
        ] {
            assert!(!h.contains_key(spoof), "{spoof}");
        }
    }

    #[test]
    fn subject_and_client_id_are_percent_encoded() {
        for (value, sent) in [
            ("bob", "bob"),
            (
                "0f8fad5b-d9cb-469f-a165-70867728950e",
                "0f8fad5b-d9cb-469f-a165-70867728950e",
            ),
            (" admin", "%20admin"),
            ("admin ", "admin%20"),
            ("100%", "100%25"),
            ("%20", "%2520"),
            ("josé", "jos%C3%A9"),
            ("a\tb\u{7f}", "a%09b%7F"),
            ("a\r\nX-Evil: 1", "a%0D%0AX-Evil:%201"),
            ("", ""),
        ] {
            assert_eq!(percent_encoded(value), sent, "{value:?}");
        }
    }

    #[test]
    fn permissions_json_is_what_serde_json_writes() {
        #[derive(serde::Serialize)]
        struct Expected<'a> {
            resource_id: &'a str,
            resource_scopes: Vec<&'a str>,
        }
        let odd = [
            "plain",
            "with \"quotes\"",
            "back\\slash",
            "tab\there",
            "é𝄞",
            "",
            "\"",
            "\\",
        ];
        let permissions: Vec<Permission> = odd
            .iter()
            .map(|id| Permission::new(*id, odd))
            .chain([Permission::new("no-scopes", Vec::<String>::new())])
            .collect();
        for n in 0..=permissions.len() {
            let written = permissions_json(permissions[..n].iter()).unwrap();
            let expected: Vec<Expected<'_>> = permissions[..n]
                .iter()
                .map(|p| Expected {
                    resource_id: p.resource_id(),
                    resource_scopes: p.resource_scopes().collect(),
                })
                .collect();
            assert_eq!(
                String::from_utf8(written).unwrap(),
                serde_json::to_string(&expected).unwrap()
            );
        }
    }

    #[test]
    fn non_ascii_json_is_escaped() {
        let odd = ["é", "𝄞", "a\"b", "del\u{7f}", "ctl\r\n\t\u{0}"];
        let json = serde_json::to_vec(&odd).unwrap();
        let ascii = ascii_json(json);
        assert!(ascii.iter().all(|b| (b' '..=b'~').contains(b)), "{ascii:?}");
        assert!(HeaderValue::from_bytes(&ascii).is_ok());
        let back: Vec<String> = serde_json::from_slice(&ascii).unwrap();
        assert_eq!(back, odd);
    }
}
