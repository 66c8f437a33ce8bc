//! The layer's client for the AS's protection API: introspection (RFC 7662, FedAuthz §5),
//! permission tickets (FedAuthz §4) and resource registration (FedAuthz §3), each
//! authenticated with the PAT and retried exactly once with a fresh PAT after a 401.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use http::StatusCode;
use serde::Serialize;
use serde_json::Value;
use tracing::Instrument;

use crate::error::describe_transport;
use crate::gate::report::Cause;
use crate::gate::{AsEndpoint, AsFailure, AsGate, Outcome, Pass, Refusal};
use crate::introspect::{IntrospectError, Introspection};
use crate::pat::{ClientAuth, PatProvider};
use crate::token::{ClientSecret, Pat, Rpt};

/// The most bytes the layer reads of any answer from the AS (discovery, tokens, introspection,
/// tickets, registration). Real answers take a few KiB; a larger one is refused rather than
/// buffered, so a misbehaving AS cannot make the layer hold megabytes per call.
pub(crate) const MAX_AS_BODY: usize = 1024 * 1024;

/// Why an answer's body could not be read.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// The connection failed or timed out while the body was read.
    Transport(reqwest::Error),
    /// The body is longer than the limit (from its `Content-Length`, or as it arrived).
    TooLarge,
}

impl BodyError {
    /// What went wrong, without any URL or body.
    pub(crate) fn describe(&self) -> &'static str {
        match self {
            Self::Transport(e) => describe_transport(e),
            Self::TooLarge => "answer too large",
        }
    }
}

/// Reads a whole body of at most `limit` bytes. (Written by hand: http-body-util's `Limited`
/// could count the bytes, but its boxed errors would then have to be downcast to tell a
/// timeout from a broken connection.)
pub(crate) async fn read_body(
    mut resp: reqwest::Response,
    limit: usize,
) -> Result<bytes::Bytes, BodyError> {
    if resp
        .content_length()
        .is_some_and(|n| n > u64::try_from(limit).unwrap_or(u64::MAX))
    {
        return Err(BodyError::TooLarge);
    }
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = resp.chunk().await.map_err(BodyError::Transport)? {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Whether an answer to a PAT-authenticated call refuses the PAT itself: `401` (RFC 6750
/// §3.1 `invalid_token`), or Keycloak's `403` with `{"error": "invalid_bearer_token"}`, its
/// answer to a PAT it cannot verify (expired, revoked, signed with a key it no longer has).
/// A `403` is read to find out (at most [`MAX_AS_BODY`]) and handed on rebuilt.
async fn refuses_pat(resp: reqwest::Response) -> Result<(bool, reqwest::Response), CallError> {
    match resp.status() {
        StatusCode::UNAUTHORIZED => Ok((true, resp)),
        StatusCode::FORBIDDEN => {
            let status = resp.status();
            let headers = resp.headers().clone();
            let body = read_body(resp, MAX_AS_BODY).await.map_err(|e| match e {
                BodyError::Transport(e) => CallError::Transport(e),
                BodyError::TooLarge => CallError::TooLarge,
            })?;
            let refused = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .is_some_and(|v| {
                    v.get("error").and_then(|e| e.as_str()) == Some("invalid_bearer_token")
                });
            let mut rebuilt = http::Response::new(body);
            *rebuilt.status_mut() = status;
            *rebuilt.headers_mut() = headers;
            Ok((refused, reqwest::Response::from(rebuilt)))
        }
        _ => Ok((false, resp)),
    }
}

/// How the layer authenticates itself at the introspection endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum IntrospectionAuth {
    /// The PAT as a bearer token (FedAuthz §5; standard, WSO2, Janssen, PingAM).
    #[default]
    BearerPat,
    /// The layer's client credentials with HTTP Basic (Keycloak, docs/protocol.md §7.3).
    ClientCredentials,
}

/// The JSON shape of a permission request (FedAuthz §4.1 allows both).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PermissionBody {
    /// An array of one or more request objects; Keycloak, WSO2 and PingAM need it.
    #[default]
    Array,
    /// A single request object.
    Object,
}

/// Why no ticket could be had. Every variant ends in `403` + `Warning` for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TicketError {
    #[error("permission endpoint unreachable")]
    Unreachable,
    #[error("permission request timed out")]
    Timeout,
    #[error("permission endpoint answered {0}")]
    Status(u16),
    #[error("permission endpoint answered without a usable ticket")]
    NoTicket,
    #[error("no protection API token")]
    NoPat,
    #[error("permission endpoint not called: {0}")]
    NotCalled(Refusal),
}

impl AsFailure for TicketError {
    fn refused(_: AsEndpoint, why: Refusal) -> Self {
        Self::NotCalled(why)
    }

    fn cause(&self) -> Option<Cause> {
        match self {
            Self::Unreachable => Some(Cause::Unreachable),
            Self::Timeout => Some(Cause::Timeout),
            Self::Status(status) => Some(Cause::Status(*status)),
            Self::NoTicket => Some(Cause::Unparsable),
            Self::NoPat | Self::NotCalled(_) => None,
        }
    }
}

impl From<CallError> for TicketError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::NoPat => Self::NoPat,
            CallError::Transport(e) if e.is_timeout() => Self::Timeout,
            CallError::Transport(e) => {
                tracing::debug!(cause = describe_transport(&e), "permission request failed");
                Self::Unreachable
            }
            CallError::TooLarge => Self::NoTicket,
            CallError::NotCalled(_, why) => Self::NotCalled(why),
        }
    }
}

impl From<CallError> for IntrospectError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::NoPat => Self::NoPat,
            CallError::Transport(e) if e.is_timeout() => Self::Timeout,
            CallError::Transport(_) => Self::Unreachable,
            CallError::TooLarge => Self::Unparsable,
            CallError::NotCalled(endpoint, why) => Self::NotCalled(endpoint, why),
        }
    }
}

#[derive(Debug)]
pub(crate) struct AsClient {
    pub(crate) http: reqwest::Client,
    pub(crate) pat: Arc<PatProvider>,
    /// The cap, circuit breakers and failure logs of every AS call.
    pub(crate) gate: Arc<AsGate>,
    pub(crate) introspection_endpoint: String,
    pub(crate) permission_endpoint: String,
    pub(crate) introspection_auth: IntrospectionAuth,
    pub(crate) token_type_hint: Option<String>,
    pub(crate) permission_body: PermissionBody,
    pub(crate) client_id: String,
    pub(crate) client_secret: ClientSecret,
    pub(crate) client_auth: ClientAuth,
}

/// The failure of one protection call before an answer arrived.
#[derive(Debug)]
pub(crate) enum CallError {
    NoPat,
    Transport(reqwest::Error),
    /// The answer's body is longer than [`MAX_AS_BODY`].
    TooLarge,
    /// Not made: the cap was reached or the endpoint's circuit is open.
    NotCalled(AsEndpoint, Refusal),
}

impl AsFailure for CallError {
    fn refused(endpoint: AsEndpoint, why: Refusal) -> Self {
        Self::NotCalled(endpoint, why)
    }

    fn cause(&self) -> Option<Cause> {
        match self {
            Self::Transport(e) if e.is_timeout() => Some(Cause::Timeout),
            Self::Transport(_) => Some(Cause::Unreachable),
            Self::TooLarge => Some(Cause::Unparsable),
            Self::NoPat | Self::NotCalled(..) => None,
        }
    }
}

#[derive(Serialize)]
struct PermissionRequest<'a> {
    resource_id: &'a str,
    resource_scopes: &'a [String],
}

impl AsClient {
    /// Calls `endpoint` through the gate with a PAT-authenticated request built by `build`,
    /// and reads its answer with `read`. When the AS refuses the PAT (see [`refuses_pat`]) it
    /// is dropped, a new one obtained and the request sent once more; `read` sees the final answer. The gate's slot is held from
    /// sending to the end of `read` (never while waiting for a PAT), and the outcome of `read`
    /// is what the endpoint's circuit breaker records.
    pub(crate) async fn protected<T, E, B, R, Fut>(
        &self,
        endpoint: AsEndpoint,
        build: B,
        read: R,
    ) -> Result<T, E>
    where
        B: Fn(&Pat) -> reqwest::RequestBuilder,
        R: FnOnce(reqwest::Response) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: AsFailure + From<CallError>,
    {
        // An open circuit answers before any PAT is fetched for a call that would not be made.
        self.gate
            .check(endpoint)
            .map_err(|why| E::refused(endpoint, why))?;
        let pat = self
            .pat
            .get()
            .await
            .map_err(|_| E::from(CallError::NoPat))?;
        let (resp, pass) = self.send(endpoint, build(&pat)).await?;
        let (refused, resp) = match refuses_pat(resp).await {
            Ok(answer) => answer,
            Err(e) => {
                let error = E::from(e);
                pass.record_error(&error);
                return Err(error);
            }
        };
        let (resp, pass) = if refused {
            tracing::debug!("AS refused the PAT; refreshing it and retrying once");
            // The endpoint answered: it is up. The slot is not held while a PAT is fetched.
            pass.finish(Outcome::Answered);
            self.pat.invalidate(&pat);
            let fresh = self
                .pat
                .get()
                .await
                .map_err(|_| E::from(CallError::NoPat))?;
            self.send(endpoint, build(&fresh)).await?
        } else {
            (resp, pass)
        };
        finish(pass, read(resp)).await
    }

    /// Calls `endpoint` through the gate with `request` (authenticated by the caller), and
    /// reads its answer with `read`.
    async fn direct<T, E, R, Fut>(
        &self,
        endpoint: AsEndpoint,
        request: reqwest::RequestBuilder,
        read: R,
    ) -> Result<T, E>
    where
        R: FnOnce(reqwest::Response) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: AsFailure + From<CallError>,
    {
        let (resp, pass) = self.send(endpoint, request).await?;
        finish(pass, read(resp)).await
    }

    /// Takes a slot of the gate for `endpoint` and sends `request`.
    async fn send<E>(
        &self,
        endpoint: AsEndpoint,
        request: reqwest::RequestBuilder,
    ) -> Result<(reqwest::Response, Pass<'_>), E>
    where
        E: AsFailure + From<CallError>,
    {
        let pass = self
            .gate
            .admit(endpoint)
            .map_err(|why| E::refused(endpoint, why))?;
        match request.send().await {
            Ok(resp) => Ok((resp, pass)),
            Err(e) => {
                let error = E::from(CallError::Transport(e));
                pass.record_error(&error);
                Err(error)
            }
        }
    }

    /// Introspects `token`.
    pub(crate) async fn introspect(&self, token: &Rpt) -> Result<Introspection, IntrospectError> {
        let span = tracing::debug_span!(
            "uma.introspect",
            token.fingerprint = %token.fingerprint(),
            http.status_code = tracing::field::Empty,
            uma.active = tracing::field::Empty,
            error = tracing::field::Empty,
        );
        let started = Instant::now();
        let result = self.introspect_inner(token).instrument(span.clone()).await;
        let outcome = match &result {
            Ok(i) if i.is_active() => Some("active"),
            Ok(_) => Some("inactive"),
            Err(IntrospectError::Unreachable) => Some("unreachable"),
            Err(IntrospectError::Timeout) => Some("timeout"),
            Err(IntrospectError::Status(_)) => Some("status"),
            Err(IntrospectError::Unparsable) => Some("unparsable"),
            Err(IntrospectError::NoPat) => Some("no_pat"),
            // No call was made: counted by the gate's own metrics.
            Err(IntrospectError::NotCalled(..)) => None,
        };
        if let Some(outcome) = outcome {
            crate::metrics::introspection(outcome, started.elapsed().as_secs_f64());
        }
        match &result {
            Ok(i) => {
                span.record("uma.active", i.is_active());
            }
            Err(e) => {
                // Per call: DEBUG. The gate logs the first failure and summaries at WARN.
                span.record("error", tracing::field::display(e));
                tracing::debug!(parent: &span, error = %e, "introspection failed");
            }
        }
        result
    }

    async fn introspect_inner(&self, token: &Rpt) -> Result<Introspection, IntrospectError> {
        let mut form: Vec<(&str, &str)> = vec![("token", token.secret())];
        if let Some(hint) = &self.token_type_hint {
            form.push(("token_type_hint", hint));
        }
        let endpoint = AsEndpoint::Introspection;
        match self.introspection_auth {
            IntrospectionAuth::BearerPat => {
                let build = |pat: &Pat| {
                    self.http
                        .post(&self.introspection_endpoint)
                        .bearer_auth(pat.secret())
                        .header(http::header::ACCEPT, "application/json")
                        .form(&form)
                };
                self.protected(endpoint, build, read_introspection).await
            }
            IntrospectionAuth::ClientCredentials => {
                let req = self
                    .http
                    .post(&self.introspection_endpoint)
                    .header(http::header::ACCEPT, "application/json");
                let mut form = form.clone();
                let req = authenticate_client(
                    req,
                    &mut form,
                    self.client_auth,
                    &self.client_id,
                    &self.client_secret,
                );
                self.direct(endpoint, req.form(&form), read_introspection)
                    .await
            }
        }
    }

    /// Asks the permission endpoint for one ticket covering `resource_id` and `scopes`.
    /// Tickets are never cached or reused (Grant §5.5).
    pub(crate) async fn ticket(
        &self,
        resource_id: &str,
        scopes: &[String],
    ) -> Result<String, TicketError> {
        let span = tracing::debug_span!(
            "uma.ticket",
            uma.resource_id = %resource_id,
            uma.scopes = ?scopes,
            http.status_code = tracing::field::Empty,
            error = tracing::field::Empty,
        );
        let result = self
            .ticket_inner(resource_id, scopes)
            .instrument(span.clone())
            .await;
        match &result {
            Ok(_) => crate::metrics::ticket("issued"),
            Err(e) => {
                crate::metrics::ticket("failed");
                // Per call: DEBUG. The gate logs the first failure and summaries at WARN.
                span.record("error", tracing::field::display(e));
                tracing::debug!(parent: &span, error = %e, "could not obtain a permission ticket");
            }
        }
        result
    }

    async fn ticket_inner(
        &self,
        resource_id: &str,
        scopes: &[String],
    ) -> Result<String, TicketError> {
        let one = PermissionRequest {
            resource_id,
            resource_scopes: scopes,
        };
        let body = match self.permission_body {
            PermissionBody::Array => serde_json::to_vec(&[&one]),
            PermissionBody::Object => serde_json::to_vec(&one),
        }
        .map_err(|_| TicketError::NoTicket)?;
        let build = |pat: &Pat| {
            self.http
                .post(&self.permission_endpoint)
                .bearer_auth(pat.secret())
                .header(http::header::CONTENT_TYPE, "application/json")
                .header(http::header::ACCEPT, "application/json")
                .body(body.clone())
        };
        self.protected(AsEndpoint::Permission, build, read_ticket)
            .await
    }
}

/// Reads the introspection endpoint's answer.
async fn read_introspection(resp: reqwest::Response) -> Result<Introspection, IntrospectError> {
    let body = ok_body(resp, &[StatusCode::OK], IntrospectError::Status).await?;
    Introspection::from_json(&body).map_err(|_| IntrospectError::Unparsable)
}

/// Reads the permission endpoint's answer: the ticket.
async fn read_ticket(resp: reqwest::Response) -> Result<String, TicketError> {
    let ok = [StatusCode::CREATED, StatusCode::OK];
    let body = ok_body(resp, &ok, TicketError::Status).await?;
    let value: Value = serde_json::from_slice(&body).map_err(|_| TicketError::NoTicket)?;
    match value.get("ticket").and_then(Value::as_str) {
        // A ticket that could not be sent in a challenge (a control or non-ASCII character)
        // is as unusable as none.
        Some(t) if !t.is_empty() && t.bytes().all(|b| matches!(b, b' '..=b'~')) => Ok(t.to_owned()),
        _ => Err(TicketError::NoTicket),
    }
}

/// The body of an answer whose status is one of `ok` (recorded on the current span), read up
/// to [`MAX_AS_BODY`]; otherwise the error `status` makes of it.
async fn ok_body<E: From<CallError>>(
    resp: reqwest::Response,
    ok: &[StatusCode],
    status: fn(u16) -> E,
) -> Result<bytes::Bytes, E> {
    let code = resp.status();
    tracing::Span::current().record("http.status_code", code.as_u16());
    if !ok.contains(&code) {
        return Err(status(code.as_u16()));
    }
    read_body(resp, MAX_AS_BODY).await.map_err(|e| {
        E::from(match e {
            BodyError::Transport(e) => CallError::Transport(e),
            BodyError::TooLarge => {
                tracing::debug!(limit = MAX_AS_BODY, "answer too large");
                CallError::TooLarge
            }
        })
    })
}

/// Waits for `read` and records its outcome on `pass`.
async fn finish<T, E: AsFailure>(
    pass: Pass<'_>,
    read: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let result = read.await;
    pass.record(&result);
    result
}

/// Adds the client's credentials to a token-endpoint-style request: HTTP Basic, or
/// `client_id` and `client_secret` in the form (RFC 6749 §2.3.1).
pub(crate) fn authenticate_client<'a>(
    req: reqwest::RequestBuilder,
    form: &mut Vec<(&'a str, &'a str)>,
    auth: ClientAuth,
    client_id: &'a str,
    secret: &'a ClientSecret,
) -> reqwest::RequestBuilder {
    match auth {
        ClientAuth::Basic => req.basic_auth(
            form_urlencode(client_id),
            Some(form_urlencode(secret.secret())),
        ),
        ClientAuth::Post => {
            form.push(("client_id", client_id));
            form.push(("client_secret", secret.secret()));
            req
        }
    }
}

/// RFC 6749 §2.3.1: the client id and secret are form-urlencoded before Basic encoding.
fn form_urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_credentials_are_form_encoded() {
        assert_eq!(form_urlencode("a b:c"), "a+b%3Ac");
    }

    /// `read_body` refuses a body over its limit whether the `Content-Length` says so or the
    /// body arrives in chunks with none, and reads one at the limit.
    #[tokio::test]
    async fn bodies_over_the_limit_are_refused() {
        const LIMIT: usize = 64 * 1024;
        let chunked = |n: usize| {
            let chunks =
                (0..n).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'x'; 1024])));
            axum::body::Body::from_stream(futures_util::stream::iter(chunks))
        };
        let app =
            axum::Router::new()
                .route(
                    "/sized/{n}",
                    axum::routing::get(
                        |axum::extract::Path(n): axum::extract::Path<usize>| async move {
                            vec![b'x'; n]
                        },
                    ),
                )
                .route(
                    "/chunked/{n}",
                    axum::routing::get(
                        move |axum::extract::Path(n): axum::extract::Path<usize>| async move {
                            chunked(n)
                        },
                    ),
                );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
        let http = reqwest::Client::new();
        let read = |path: String| {
            let http = http.clone();
            let url = format!("{base}{path}");
            async move {
                let resp = http.get(url).send().await.expect("answer");
                read_body(resp, LIMIT).await
            }
        };
        let sized = read(format!("/sized/{LIMIT}")).await.expect("at the limit");
        assert_eq!(sized.len(), LIMIT);
        let chunked_ok = read("/chunked/64".to_owned()).await.expect("at the limit");
        assert_eq!(chunked_ok.len(), LIMIT);
        assert!(matches!(
            read(format!("/sized/{}", LIMIT + 1)).await,
            Err(BodyError::TooLarge)
        ));
        let over = read("/chunked/65".to_owned()).await;
        assert!(matches!(over, Err(BodyError::TooLarge)), "{over:?}");
    }
}
