//! The protection API access token (PAT): obtained from the token endpoint, reused until
//! shortly before it expires, refreshed by one call for all concurrent callers, and dropped
//! when the AS answers 401 to it (FedAuthz §1.3, docs/protocol.md §3).
//!
//! Why it works this way: the refresh runs in a spawned task whose result is shared, so a
//! caller that gives up (its client went away) neither cancels the refresh nor causes a second
//! token request. A refresh that starts while the current PAT is still valid (its last tenth
//! of life, at most 30 s) runs in the background: callers keep getting the current PAT, so none
//! waits for the token endpoint, and a brief failure there costs nothing before the PAT
//! actually expires.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use serde::Deserialize;
use tracing::Instrument;

use crate::client::authenticate_client;
use crate::client::{BodyError, MAX_AS_BODY, read_body};
use crate::error::{Error, ErrorKind, describe_transport, snippet};
use crate::gate::report::Cause;
use crate::gate::{AsEndpoint, AsFailure, AsGate, Refusal};
use crate::token::{ClientSecret, Pat};

/// How the layer obtains its PAT.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PatGrant {
    /// `grant_type=client_credentials` with the layer's own client (standard, Keycloak).
    ClientCredentials,
    /// `grant_type=password` for a resource owner, so the PAT is bound to that user (WSO2,
    /// PingAM).
    Password {
        /// The resource owner's user name.
        username: String,
        /// The resource owner's password.
        password: ClientSecret,
    },
}

/// How the layer authenticates itself at the token endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ClientAuth {
    /// HTTP Basic (`client_secret_basic`).
    #[default]
    Basic,
    /// `client_id` and `client_secret` in the form body (`client_secret_post`).
    Post,
}

#[derive(Clone, Debug)]
pub(crate) struct PatConfig {
    pub(crate) token_endpoint: String,
    pub(crate) client_id: String,
    pub(crate) client_secret: ClientSecret,
    pub(crate) client_auth: ClientAuth,
    pub(crate) grant: PatGrant,
    /// `Some("uma_protection")` by default; `None` sends no scope (Keycloak checks a role).
    pub(crate) scope: Option<String>,
}

type Flight = Shared<BoxFuture<'static, Result<Held, PatFailure>>>;

/// A PAT and when to refresh it and when it expires (`None`: no time limit known).
#[derive(Clone, Debug)]
struct Held {
    pat: Pat,
    refresh_at: Option<Instant>,
    expires_at: Option<Instant>,
}

#[derive(Default)]
struct State {
    current: Option<Held>,
    inflight: Option<(u64, Flight)>,
    generation: u64,
}

/// Why no PAT could be had; cloneable so one failed refresh is shared by its waiters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PatFailure {
    pub(crate) message: String,
    /// Whether it may go away by itself (for [`Error::is_transient`]).
    pub(crate) transient: bool,
    /// What the token endpoint did, for its circuit breaker; `None` when it was not called.
    cause: Option<Cause>,
}

impl PatFailure {
    /// A failure that may go away by itself (transport, timeout, 5xx).
    fn transient(message: String, cause: Option<Cause>) -> Self {
        Self {
            message,
            transient: true,
            cause,
        }
    }

    /// A failure that needs a configuration change (bad credentials, a refusing AS).
    fn permanent(message: String, cause: Cause) -> Self {
        Self {
            message,
            transient: false,
            cause: Some(cause),
        }
    }
}

impl AsFailure for PatFailure {
    fn refused(endpoint: AsEndpoint, why: Refusal) -> Self {
        Self::transient(format!("{endpoint} endpoint not called: {why}"), None)
    }

    fn cause(&self) -> Option<Cause> {
        self.cause
    }
}

/// Hands out the current PAT, refreshing it when needed. Cheap to share behind an `Arc`.
pub(crate) struct PatProvider {
    http: reqwest::Client,
    config: PatConfig,
    state: Mutex<State>,
    gate: Arc<AsGate>,
}

impl std::fmt::Debug for PatProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PatProvider")
            .field("token_endpoint", &self.config.token_endpoint)
            .field("client_id", &self.config.client_id)
            .finish_non_exhaustive()
    }
}

impl PatProvider {
    /// A provider whose token requests go through `gate`.
    pub(crate) fn new(http: reqwest::Client, config: PatConfig, gate: Arc<AsGate>) -> Self {
        Self {
            http,
            config,
            state: Mutex::new(State::default()),
            gate,
        }
    }

    /// The current PAT, fetching a new one when there is none, it expired or the AS refused
    /// it. When it is only due for a refresh (still valid), the refresh runs in the background
    /// and the current PAT is returned at once.
    pub(crate) async fn get(self: &Arc<Self>) -> Result<Pat, PatFailure> {
        let (generation, flight) = {
            let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            let now = Instant::now();
            let still_valid = match &st.current {
                Some(held) if held.refresh_at.is_none_or(|t| now < t) => {
                    return Ok(held.pat.clone());
                }
                Some(held) if held.expires_at.is_none_or(|t| now < t) => Some(held.pat.clone()),
                _ => None,
            };
            let (generation, flight, started) = match &st.inflight {
                Some((g, f)) => (*g, f.clone(), false),
                None => {
                    st.generation += 1;
                    let generation = st.generation;
                    let flight = self.start_fetch();
                    st.inflight = Some((generation, flight.clone()));
                    (generation, flight, true)
                }
            };
            if let Some(pat) = still_valid {
                if started {
                    // Nobody waits for this refresh: a task stores its result.
                    let this = Arc::clone(self);
                    tokio::spawn(async move {
                        let result = flight.await;
                        this.settle(generation, &result);
                    });
                }
                return Ok(pat);
            }
            (generation, flight)
        };
        let result = flight.await;
        self.settle(generation, &result);
        result.map(|held| held.pat)
    }

    /// Starts a token request in a task of its own, whose result is shared.
    fn start_fetch(self: &Arc<Self>) -> Flight {
        let this = Arc::clone(self);
        let task = tokio::spawn(async move { this.fetch().await });
        async move {
            task.await.unwrap_or_else(|_| {
                Err(PatFailure::transient(
                    "PAT refresh task failed".into(),
                    None,
                ))
            })
        }
        .boxed()
        .shared()
    }

    /// Ends refresh `generation`: a fresh PAT replaces the current one; after a failure the
    /// current one is kept (a refresh that was not due yet) and the next call tries again.
    fn settle(&self, generation: u64, result: &Result<Held, PatFailure>) {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if st.inflight.as_ref().is_some_and(|(g, _)| *g == generation) {
            st.inflight = None;
            if let Ok(fresh) = result {
                st.current = Some(fresh.clone());
            }
        }
    }

    /// Forgets `stale` (the AS answered 401 to it), so the next [`get`](Self::get) fetches a
    /// new PAT. A PAT that was already replaced is left alone.
    pub(crate) fn invalidate(&self, stale: &Pat) {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if st.current.as_ref().is_some_and(|held| held.pat == *stale) {
            st.current = None;
        }
    }

    async fn fetch(&self) -> Result<Held, PatFailure> {
        let span = tracing::debug_span!(
            "uma.pat.refresh",
            http.status_code = tracing::field::Empty,
            error = tracing::field::Empty
        );
        let pass = self
            .gate
            .admit(AsEndpoint::Token)
            .map_err(|why| PatFailure::refused(AsEndpoint::Token, why))?;
        let result = self.fetch_inner().instrument(span.clone()).await;
        pass.record(&result);
        match &result {
            Ok(_) => crate::metrics::pat_refresh("ok"),
            Err(e) => {
                // Per call: DEBUG. The gate logs the first failure and summaries at WARN.
                crate::metrics::pat_refresh("error");
                span.record("error", e.message.as_str());
                tracing::debug!(parent: &span, error = %e.message, "could not obtain a PAT");
            }
        }
        result
    }

    async fn fetch_inner(&self) -> Result<Held, PatFailure> {
        let c = &self.config;
        let mut form: Vec<(&str, &str)> = Vec::with_capacity(6);
        match &c.grant {
            PatGrant::ClientCredentials => form.push(("grant_type", "client_credentials")),
            PatGrant::Password { username, password } => {
                form.push(("grant_type", "password"));
                form.push(("username", username));
                form.push(("password", password.secret()));
            }
        }
        if let Some(scope) = &c.scope {
            form.push(("scope", scope));
        }
        let req = authenticate_client(
            self.http.post(&c.token_endpoint),
            &mut form,
            c.client_auth,
            &c.client_id,
            &c.client_secret,
        );
        let started = Instant::now();
        let transport = |e: &reqwest::Error, what: &str| {
            let cause = if e.is_timeout() {
                Cause::Timeout
            } else {
                Cause::Unreachable
            };
            PatFailure::transient(format!("token endpoint {what}"), Some(cause))
        };
        let resp = req
            .form(&form)
            .send()
            .await
            .map_err(|e| transport(&e, describe_transport(&e)))?;
        let status = resp.status();
        tracing::Span::current().record("http.status_code", status.as_u16());
        let body = read_body(resp, MAX_AS_BODY).await.map_err(|e| match &e {
            BodyError::Transport(t) => transport(t, e.describe()),
            BodyError::TooLarge => PatFailure::transient(
                format!("token endpoint {}", e.describe()),
                Some(Cause::Unparsable),
            ),
        })?;
        if !status.is_success() {
            let message = format!(
                "token endpoint answered {status}: {}",
                redact_token_body(&body)
            );
            let cause = Cause::Status(status.as_u16());
            return Err(if cause.is_transient() {
                PatFailure::transient(message, Some(cause))
            } else {
                PatFailure::permanent(message, cause)
            });
        }
        let unusable = |message: String| PatFailure::permanent(message, Cause::Unparsable);
        let parsed: TokenResponse = serde_json::from_slice(&body)
            .map_err(|_| unusable("token endpoint answer is not a token response".into()))?;
        if !parsed.token_type.eq_ignore_ascii_case("bearer") {
            return Err(unusable(format!(
                "token endpoint issued a \"{}\" token, not a bearer token",
                snippet(parsed.token_type.as_bytes())
            )));
        }
        if parsed.access_token.is_empty() {
            return Err(unusable("token endpoint issued an empty token".into()));
        }
        let lifetime = parsed
            .expires_in
            .filter(|s| *s > 0)
            .map(Duration::from_secs);
        // An `expires_in` too large for an `Instant` means no time-based refresh (a 401 still
        // triggers one), rather than an overflow panic.
        Ok(Held {
            pat: Pat::new(parsed.access_token),
            refresh_at: lifetime.and_then(|l| started.checked_add(refresh_after(l))),
            expires_at: lifetime.and_then(|l| started.checked_add(l)),
        })
    }
}

/// When to refresh a PAT that lives `lifetime`: a tenth of its life (at most 30 s) early.
pub(crate) fn refresh_after(lifetime: Duration) -> Duration {
    let margin = (lifetime / 10).min(Duration::from_secs(30));
    lifetime - margin
}

/// A token endpoint error body may echo nothing secret by spec, but never quote a body that
/// looks like it holds a token.
fn redact_token_body(body: &[u8]) -> String {
    if body.windows(12).any(|w| w == b"access_token") {
        return "[body withheld]".into();
    }
    snippet(body)
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    token_type: String,
    expires_in: Option<u64>,
}

impl From<PatFailure> for Error {
    fn from(e: PatFailure) -> Self {
        Self::new(
            ErrorKind::Pat,
            format!("could not obtain a PAT: {}", e.message),
        )
        .transient(e.transient)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A provider whose token endpoint is `app`'s `/token`, served on a loopback port.
    async fn provider_for(app: axum::Router) -> Arc<PatProvider> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/token", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
        Arc::new(PatProvider::new(
            reqwest::Client::builder().build().expect("client"),
            PatConfig {
                token_endpoint: url,
                client_id: "rs".to_owned(),
                client_secret: ClientSecret::new("rs-secret"),
                client_auth: ClientAuth::Basic,
                grant: PatGrant::ClientCredentials,
                scope: Some("uma_protection".to_owned()),
            },
            Arc::default(),
        ))
    }

    #[test]
    fn refresh_margin() {
        assert_eq!(
            refresh_after(Duration::from_secs(300)),
            Duration::from_secs(270)
        );
        assert_eq!(
            refresh_after(Duration::from_secs(3600)),
            Duration::from_secs(3570)
        );
        assert_eq!(
            refresh_after(Duration::from_secs(2)),
            Duration::from_millis(1800)
        );
    }

    /// An `expires_in` too large for an `Instant` (garbage from the AS) must neither panic
    /// the refresh task nor lose the PAT: the token is kept and refreshed on a 401 instead.
    #[tokio::test]
    async fn a_huge_expires_in_does_not_panic() {
        let app = axum::Router::new().route(
            "/token",
            axum::routing::post(|| async {
                axum::Json(serde_json::json!({
                    "access_token": "pat-huge",
                    "token_type": "Bearer",
                    "expires_in": u64::MAX,
                }))
            }),
        );
        let provider = provider_for(app).await;
        let pat = provider.get().await.expect("a PAT");
        assert_eq!(pat.secret(), "pat-huge");
        // Reused, not fetched again.
        assert_eq!(provider.get().await.expect("a PAT"), pat);
    }

    /// A PAT due for a refresh but still valid is handed out at once while the refresh runs
    /// in the background; a failed background refresh keeps it; an expired PAT is never
    /// handed out.
    #[tokio::test]
    async fn a_due_refresh_runs_in_the_background_while_the_pat_is_valid() {
        use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
        let calls = Arc::new(AtomicU32::new(0));
        let failing = Arc::new(AtomicBool::new(false));
        let (c, f) = (Arc::clone(&calls), Arc::clone(&failing));
        let app = axum::Router::new().route(
            "/token",
            axum::routing::post(move || {
                let n = c.fetch_add(1, Ordering::SeqCst) + 1;
                let fail = f.load(Ordering::SeqCst);
                async move {
                    if fail {
                        return Err(http::StatusCode::SERVICE_UNAVAILABLE);
                    }
                    Ok(axum::Json(serde_json::json!({
                        "access_token": format!("pat-{n}"),
                        "token_type": "Bearer",
                        "expires_in": 3600,
                    })))
                }
            }),
        );
        let provider = provider_for(app).await;
        let first = provider.get().await.expect("a PAT");
        assert_eq!(first.secret(), "pat-1");
        // Move the PAT into its refresh window (still valid for a minute).
        let age = |refresh: i64, expiry: i64| {
            let mut st = provider.state.lock().expect("lock");
            let held = st.current.as_mut().expect("held");
            let shift = |secs: i64| {
                let d = Duration::from_secs(secs.unsigned_abs());
                if secs < 0 {
                    Instant::now() - d
                } else {
                    Instant::now() + d
                }
            };
            held.refresh_at = Some(shift(refresh));
            held.expires_at = Some(shift(expiry));
        };
        let settled = || async {
            tokio::time::timeout(Duration::from_secs(5), async {
                while provider.state.lock().expect("lock").inflight.is_some() {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            })
            .await
            .expect("the background refresh ends");
        };
        failing.store(true, Ordering::SeqCst);
        age(-1, 60);
        assert_eq!(provider.get().await.expect("the valid PAT"), first);
        settled().await;
        assert_eq!(calls.load(Ordering::SeqCst), 2, "one background refresh");
        assert_eq!(provider.get().await.expect("kept after a failure"), first);
        settled().await;
        failing.store(false, Ordering::SeqCst);
        assert_eq!(provider.get().await.expect("the valid PAT"), first);
        settled().await;
        let fresh = provider.get().await.expect("the refreshed PAT");
        assert_eq!(
            fresh.secret(),
            format!("pat-{}", calls.load(Ordering::SeqCst))
        );
        assert_ne!(fresh, first);
        // Expired: the caller waits for the token endpoint, and a failure is an error.
        failing.store(true, Ordering::SeqCst);
        age(-2, -1);
        assert!(
            provider.get().await.is_err(),
            "an expired PAT is not handed out"
        );
    }

    #[test]
    fn token_bodies_are_withheld() {
        assert_eq!(
            redact_token_body(br#"{"access_token":"x"}"#),
            "[body withheld]"
        );
        assert_eq!(
            redact_token_body(br#"{"error":"invalid_client"}"#),
            r#"{"error":"invalid_client"}"#
        );
    }
}
