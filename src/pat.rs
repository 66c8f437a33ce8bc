//! The protection API access token (PAT): obtained from the token endpoint, reused until
//! shortly before it expires, refreshed by one call for all concurrent callers, and dropped
//! when the AS answers 401 to it (FedAuthz §1.3, uma-wire §3, §11).
//!
//! Why it works this way: the refresh runs in a spawned task whose result is shared, so a
//! caller that gives up (its client went away) neither cancels the refresh nor causes a second
//! token request.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use serde::Deserialize;
use tracing::Instrument;

use crate::client::authenticate_client;
use crate::client::{MAX_AS_BODY, read_body};
use crate::error::{Error, ErrorKind, describe_transport, snippet};
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

type Flight = Shared<BoxFuture<'static, Result<(Pat, Option<Instant>), PatFailure>>>;

#[derive(Default)]
struct State {
    current: Option<(Pat, Option<Instant>)>,
    inflight: Option<(u64, Flight)>,
    generation: u64,
}

/// Why no PAT could be had; cloneable so one failed refresh is shared by its waiters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PatFailure(pub(crate) String, pub(crate) bool);

impl PatFailure {
    /// A failure that may go away by itself (transport, timeout, 5xx).
    fn transient(message: String) -> Self {
        Self(message, true)
    }

    /// A failure that needs a configuration change (bad credentials, a refusing AS).
    fn permanent(message: String) -> Self {
        Self(message, false)
    }
}

/// Hands out the current PAT, refreshing it when needed. Cheap to share behind an `Arc`.
pub(crate) struct PatProvider {
    http: reqwest::Client,
    config: PatConfig,
    state: Mutex<State>,
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
    pub(crate) fn new(http: reqwest::Client, config: PatConfig) -> Self {
        Self {
            http,
            config,
            state: Mutex::new(State::default()),
        }
    }

    /// The current PAT, fetching a new one when there is none or it is about to expire.
    pub(crate) async fn get(self: &Arc<Self>) -> Result<Pat, PatFailure> {
        let (generation, flight) = {
            let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some((pat, refresh_at)) = &st.current
                && refresh_at.is_none_or(|t| Instant::now() < t)
            {
                return Ok(pat.clone());
            }
            if let Some((g, f)) = &st.inflight {
                (*g, f.clone())
            } else {
                st.generation += 1;
                let generation = st.generation;
                let this = Arc::clone(self);
                let task = tokio::spawn(async move { this.fetch().await });
                let flight: Flight = async move {
                    task.await.unwrap_or_else(|_| {
                        Err(PatFailure::transient("PAT refresh task failed".into()))
                    })
                }
                .boxed()
                .shared();
                st.inflight = Some((generation, flight.clone()));
                (generation, flight)
            }
        };
        let result = flight.await;
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if st.inflight.as_ref().is_some_and(|(g, _)| *g == generation) {
            st.inflight = None;
            if let Ok(fresh) = &result {
                st.current = Some(fresh.clone());
            }
        }
        result.map(|(pat, _)| pat)
    }

    /// Forgets `stale` (the AS answered 401 to it), so the next [`get`](Self::get) fetches a
    /// new PAT. A PAT that was already replaced is left alone.
    pub(crate) fn invalidate(&self, stale: &Pat) {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if st.current.as_ref().is_some_and(|(p, _)| p == stale) {
            st.current = None;
        }
    }

    async fn fetch(&self) -> Result<(Pat, Option<Instant>), PatFailure> {
        let span = tracing::debug_span!(
            "uma.pat.refresh",
            http.status_code = tracing::field::Empty,
            error = tracing::field::Empty
        );
        let result = self.fetch_inner().instrument(span.clone()).await;
        match &result {
            Ok(_) => crate::metrics::pat_refresh("ok"),
            Err(e) => {
                crate::metrics::pat_refresh("error");
                span.record("error", e.0.as_str());
                tracing::warn!(parent: &span, error = %e.0, "could not obtain a PAT");
            }
        }
        result
    }

    async fn fetch_inner(&self) -> Result<(Pat, Option<Instant>), PatFailure> {
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
        let resp = req.form(&form).send().await.map_err(|e| {
            PatFailure::transient(format!("token endpoint {}", describe_transport(&e)))
        })?;
        let status = resp.status();
        tracing::Span::current().record("http.status_code", status.as_u16());
        let body = read_body(resp, MAX_AS_BODY)
            .await
            .map_err(|e| PatFailure::transient(format!("token endpoint {}", e.describe())))?;
        if !status.is_success() {
            let message = format!(
                "token endpoint answered {status}: {}",
                redact_token_body(&body)
            );
            return Err(
                if status.is_server_error() || status == http::StatusCode::TOO_MANY_REQUESTS {
                    PatFailure::transient(message)
                } else {
                    PatFailure::permanent(message)
                },
            );
        }
        let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|_| {
            PatFailure::permanent("token endpoint answer is not a token response".into())
        })?;
        if !parsed.token_type.eq_ignore_ascii_case("bearer") {
            return Err(PatFailure::permanent(format!(
                "token endpoint issued a {:?} token, not a bearer token",
                parsed.token_type
            )));
        }
        if parsed.access_token.is_empty() {
            return Err(PatFailure::permanent(
                "token endpoint issued an empty token".into(),
            ));
        }
        let refresh_at = parsed
            .expires_in
            .filter(|s| *s > 0)
            // An `expires_in` too large for an `Instant` means no time-based refresh (a 401
            // still triggers one), rather than an overflow panic.
            .and_then(|secs| started.checked_add(refresh_after(Duration::from_secs(secs))));
        Ok((Pat::new(parsed.access_token), refresh_at))
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
        Self::new(ErrorKind::Pat, format!("could not obtain a PAT: {}", e.0)).transient(e.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/token", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
        let provider = Arc::new(PatProvider::new(
            reqwest::Client::builder().build().expect("client"),
            PatConfig {
                token_endpoint: url,
                client_id: "rs".to_owned(),
                client_secret: ClientSecret::new("rs-secret"),
                client_auth: ClientAuth::Basic,
                grant: PatGrant::ClientCredentials,
                scope: Some("uma_protection".to_owned()),
            },
        ));
        let pat = provider.get().await.expect("a PAT");
        assert_eq!(pat.secret(), "pat-huge");
        // Reused, not fetched again.
        assert_eq!(provider.get().await.expect("a PAT"), pat);
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
