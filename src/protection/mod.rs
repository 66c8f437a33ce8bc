//! How the layer talks to the authorization server's protection API (UMA FedAuthz §1.3: the
//! PAT, introspection, permission tickets and resource registration): the settings of
//! [`UmaLayerBuilder`](crate::UmaLayerBuilder) that choose the client authentication
//! ([`ClientAuth`]), the grant that obtains the PAT ([`PatGrant`]), how introspection calls
//! authenticate ([`IntrospectionAuth`]) and the shape of permission requests
//! ([`PermissionBody`]). Each [`Dialect`](crate::Dialect) picks defaults for them.
//!
//! # Example
//!
//! ```
//! use tower_uma::protection::{ClientAuth, IntrospectionAuth};
//! use tower_uma::UmaLayer;
//!
//! let builder = UmaLayer::builder("https://as.example", "photo-api", "secret")
//!     .client_auth(ClientAuth::Post)
//!     .introspection_auth(IntrospectionAuth::ClientCredentials);
//! # let _ = builder;
//! ```

// How it works inside (docs/architecture.md has the same, with the request path).
//
// The client of the authorization server (AS): every call the layer makes to it, the
// protection API of FedAuthz (PAT, introspection, permission tickets, resource registration)
// plus discovery and the JWKS.
//
// # Layout
//
// Each call is split in three parts, so that what goes on the wire can be read (and tested)
// without a network:
//
// - **Request builders and response parsers**, pure functions over `http::Request<Bytes>` and
//   `http::Response<Bytes>`, one file per endpoint: [`discovery`], [`token`] (the PAT, with
//   client authentication), [`introspection`], [`permission`], [`resource_set`] (resource
//   registration) and `jwks` (with the `jwt` feature). Their unit tests feed them canned
//   answers.
// - **A transport**, the [`Transport`] trait: sends a request and reads its whole answer, up
//   to a size limit. reqwest is named in one file only, [`reqwest_transport`]; the builder's
//   `http_client(reqwest::Client)` setter hands it a client of the user's.
// - **The plumbing shared by every call**: [`Caller`] takes a slot of the layer's gate (the cap
//   on calls in flight and the endpoint's circuit breaker, see `crate::gate`), sends, parses,
//   and tells the gate what the call showed about the endpoint. [`client::AsClient`] adds the
//   PAT: it is the one place where a `401` makes the layer drop its PAT, get a fresh one and
//   retry exactly once (docs/protocol.md §3.2). [`pat::PatProvider`] obtains and refreshes
//   the PAT; it depends on [`token`] and [`Caller`], never on the client.
//
// Every failure is one [`CallError`]: which endpoint, and what went wrong there. It knows
// whether trying again later may help ([`CallError::is_transient`]: what a process starting
// up retries on), what the call tells the circuit breaker (the gate's `AsFailure::cause`),
// and the metric label of an introspection or JWKS outcome. Its `Display` says what the
// AS answered (status, OAuth `error` code, a hint for the usual misconfigurations) and
// nothing else: the context ("listing registered resources") is added by the public
// [`Error`](crate::Error) that carries it as its source, so that a chain printer prints each
// cause once.
//
// # Why it works this way
//
// oauth2-rs separates its requests from its HTTP client the same way (an `AsyncHttpClient`
// over `http` types, and reqwest in an adapter). The layer's own twist is the gate: a call
// holds its slot from sending to the end of reading the body, never while it waits for a
// PAT, so that the token request a waiting call needs always finds a slot.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use crate::gate::{AsEndpoint, AsGate, Pass};

pub(crate) mod client;
pub(crate) mod discovery;
mod error;
pub(crate) mod introspection;
#[cfg(feature = "jwt")]
pub(crate) mod jwks;
pub(crate) mod pat;
pub(crate) mod permission;
pub(crate) mod reqwest_transport;
pub(crate) mod resource_set;
pub(crate) mod token;

pub(crate) use client::AsClient;
pub(crate) use error::{Answer, CallError, Failure};
pub use introspection::IntrospectionAuth;
pub(crate) use pat::{PatConfig, PatProvider};
pub use permission::PermissionBody;
pub use token::{ClientAuth, PatGrant};

/// The most bytes the layer reads of any answer from the AS (discovery, tokens, introspection,
/// tickets, registration). Real answers take a few KiB; a larger one is refused rather than
/// buffered, so a misbehaving AS cannot make the layer hold megabytes per call.
pub(crate) const MAX_AS_BODY: usize = 1024 * 1024;

/// An endpoint of the AS, as error messages name it: discovery, or one of the gated endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// `{issuer}/.well-known/uma2-configuration` (called at start-up only, not gated).
    Discovery,
    /// An endpoint the layer calls through its gate.
    Gated(AsEndpoint),
}

impl From<AsEndpoint> for Endpoint {
    fn from(endpoint: AsEndpoint) -> Self {
        Self::Gated(endpoint)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Discovery => "discovery endpoint",
            Self::Gated(AsEndpoint::Token) => "token endpoint",
            Self::Gated(AsEndpoint::Introspection) => "introspection endpoint",
            Self::Gated(AsEndpoint::Permission) => "permission endpoint",
            Self::Gated(AsEndpoint::ResourceRegistration) => "resource registration endpoint",
            Self::Gated(AsEndpoint::Jwks) => "JWKS endpoint",
        })
    }
}

/// Sends one request to the AS and reads its whole answer.
///
/// An answer of any status but a redirect (`3xx`) is `Ok`: judging it is the parser's job.
/// `Err` is one of [`Failure::Unreachable`] (a redirect, or an answer from a followed one,
/// included), [`Failure::Timeout`] (the transport's own timeouts, or [`Deadline`]'s) or
/// [`Failure::TooLarge`] (a body over `limit` bytes, refused as soon as that is known).
pub(crate) trait Transport: fmt::Debug + Send + Sync {
    /// Sends `request`; reads at most `limit` bytes of the answer's body.
    fn send(
        &self,
        request: http::Request<Bytes>,
        limit: usize,
    ) -> BoxFuture<'_, Result<http::Response<Bytes>, Failure>>;
}

/// A transport whose every call ends within `deadline`, whatever the inner transport does: a
/// call still running then fails with [`Failure::Timeout`]. The layer puts it around every
/// transport it builds, so that a client of the user's without timeouts cannot make a request
/// wait for a stalled AS forever (holding one of the gate's slots).
#[derive(Debug)]
pub(crate) struct Deadline<T> {
    inner: T,
    deadline: Duration,
}

impl<T> Deadline<T> {
    /// `inner`, each call of which is given at most `deadline`.
    pub(crate) fn new(inner: T, deadline: Duration) -> Self {
        Self { inner, deadline }
    }
}

impl<T: Transport> Transport for Deadline<T> {
    fn send(
        &self,
        request: http::Request<Bytes>,
        limit: usize,
    ) -> BoxFuture<'_, Result<http::Response<Bytes>, Failure>> {
        let call = tokio::time::timeout(self.deadline, self.inner.send(request, limit));
        async move {
            call.await.unwrap_or_else(|_| {
                Err(Failure::Timeout(error::Source::new(Overdue(self.deadline))))
            })
        }
        .boxed()
    }
}

/// The cause of a [`Failure::Timeout`] found by [`Deadline`].
#[derive(Debug)]
struct Overdue(Duration);

impl fmt::Display for Overdue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "no complete answer within request_timeout ({:?})",
            self.0
        )
    }
}

impl std::error::Error for Overdue {}

/// A transport and the gate every call through it passes: what the PAT provider, the AS client
/// and the JWKS cache share. Cloning is two `Arc` clones.
#[derive(Clone, Debug)]
pub(crate) struct Caller {
    transport: Arc<dyn Transport>,
    gate: Arc<AsGate>,
}

impl Caller {
    pub(crate) fn new(transport: Arc<dyn Transport>, gate: Arc<AsGate>) -> Self {
        Self { transport, gate }
    }

    /// The gate of these calls.
    pub(crate) fn gate(&self) -> &AsGate {
        &self.gate
    }

    /// Calls `endpoint` with `request` through the gate, and parses the answer with `parse`.
    /// What the call shows about the endpoint (the outcome of `parse` included) is recorded
    /// by its circuit breaker.
    pub(crate) async fn call<T>(
        &self,
        endpoint: AsEndpoint,
        request: Result<http::Request<Bytes>, Failure>,
        limit: usize,
        parse: impl FnOnce(http::Response<Bytes>) -> Result<T, Failure>,
    ) -> Result<T, CallError> {
        let (answer, pass) = self.exchange(endpoint, request, limit).await?;
        let result = parse(answer).map_err(|f| CallError::new(endpoint, f));
        pass.record(&result);
        result
    }

    /// Takes a slot of the gate for `endpoint`, sends `request` and reads the answer, whatever
    /// its status (recorded on the current span as `http.status_code`). The caller records the
    /// outcome on the returned pass; a failure to send is recorded here.
    pub(crate) async fn exchange(
        &self,
        endpoint: AsEndpoint,
        request: Result<http::Request<Bytes>, Failure>,
        limit: usize,
    ) -> Result<(http::Response<Bytes>, Pass<'_>), CallError> {
        let request = request.map_err(|f| CallError::new(endpoint, f))?;
        let pass = self
            .gate
            .admit(endpoint)
            .map_err(|why| CallError::refused(endpoint, why))?;
        match self.transport.send(request, limit).await {
            Ok(answer) => {
                tracing::Span::current().record("http.status_code", answer.status().as_u16());
                Ok((answer, pass))
            }
            Err(f) => {
                let error = CallError::new(endpoint, f);
                if matches!(error.failure(), Failure::TooLarge) {
                    tracing::debug!(limit, "answer too large");
                }
                pass.record_error(&error);
                Err(error)
            }
        }
    }

    /// Sends `request` without the gate (discovery, before the layer exists), and parses the
    /// answer with `parse`.
    pub(crate) async fn ungated<T>(
        transport: &dyn Transport,
        endpoint: Endpoint,
        request: Result<http::Request<Bytes>, Failure>,
        parse: impl FnOnce(http::Response<Bytes>) -> Result<T, Failure>,
    ) -> Result<T, CallError> {
        let request = request.map_err(|f| CallError::new(endpoint, f))?;
        let answer = transport
            .send(request, MAX_AS_BODY)
            .await
            .map_err(|f| CallError::new(endpoint, f))?;
        tracing::Span::current().record("http.status_code", answer.status().as_u16());
        parse(answer).map_err(|f| CallError::new(endpoint, f))
    }
}

/// A request to `url` with `method`, `headers` and `body`.
///
/// `url` is read as an absolute URL first (as reqwest reads it), so that a spelling the `http`
/// crate's stricter parser refuses (a space, say) is sent percent-encoded rather than not at
/// all.
pub(crate) fn build(
    method: http::Method,
    url: &str,
    headers: impl IntoIterator<Item = (http::HeaderName, http::HeaderValue)>,
    body: impl Into<Bytes>,
) -> Result<http::Request<Bytes>, Failure> {
    let parsed = url::Url::parse(url).map_err(|_| Failure::Unsendable("its URL is not valid"))?;
    let uri = http::Uri::try_from(parsed.as_str())
        .map_err(|_| Failure::Unsendable("its URL is not valid"))?;
    let mut request = http::Request::new(body.into());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    request.headers_mut().extend(headers);
    Ok(request)
}

/// `Authorization: Bearer {token}`, marked sensitive (RFC 6750 §2.1).
pub(crate) fn bearer(token: &str) -> Result<(http::HeaderName, http::HeaderValue), Failure> {
    sensitive(
        &format!("Bearer {token}"),
        "the PAT cannot be sent in a header",
    )
}

/// A header value that HTTP/2 never indexes and `Debug` never shows.
pub(crate) fn sensitive(
    value: &str,
    unsendable: &'static str,
) -> Result<(http::HeaderName, http::HeaderValue), Failure> {
    let mut value =
        http::HeaderValue::from_str(value).map_err(|_| Failure::Unsendable(unsendable))?;
    value.set_sensitive(true);
    Ok((http::header::AUTHORIZATION, value))
}

/// `Accept: application/json`.
pub(crate) fn accept_json() -> (http::HeaderName, http::HeaderValue) {
    (
        http::header::ACCEPT,
        http::HeaderValue::from_static("application/json"),
    )
}

/// `Content-Type: application/json`.
pub(crate) fn json_body() -> (http::HeaderName, http::HeaderValue) {
    (
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    )
}

/// The body of an answer whose status is one of `ok`; otherwise the failure of an unexpected
/// status, with the AS's error code but nothing it wrote (for calls that carry a token).
pub(crate) fn ok_body(
    answer: http::Response<Bytes>,
    ok: &[http::StatusCode],
) -> Result<Bytes, Failure> {
    if ok.contains(&answer.status()) {
        Ok(answer.into_body())
    } else {
        Err(Failure::Status(Answer::read(&answer).quiet()))
    }
}

#[cfg(test)]
pub(crate) mod canned;
