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
//!
//! The PAT's age is measured on the layer's [`Clock`] in milliseconds, so tests move a
//! [`FixedClock`](crate::FixedClock) instead of sleeping. A wall clock that jumps ahead only
//! brings a refresh forward; one that goes back can keep a PAT past its expiry, which the AS
//! then answers with 401, and a 401 drops the PAT.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use tracing::Instrument;

use super::token::{self, Client, PatGrant};
use super::{CallError, Caller, MAX_AS_BODY};
use crate::clock::Clock;
use crate::gate::AsEndpoint;
use crate::token::Pat;

/// Where and how the layer asks for its PAT.
#[derive(Clone, Debug)]
pub(crate) struct PatConfig {
    pub(crate) token_endpoint: String,
    pub(crate) client: Client,
    pub(crate) grant: PatGrant,
    /// `Some("uma_protection")` by default; `None` sends no scope (Keycloak checks a role).
    pub(crate) scope: Option<String>,
}

type Flight = Shared<BoxFuture<'static, Result<Held, CallError>>>;

/// A PAT and when to refresh it and when it expires, in clock milliseconds (`None`: no time
/// limit known).
#[derive(Clone, Debug)]
struct Held {
    pat: Pat,
    refresh_at: Option<i64>,
    expires_at: Option<i64>,
}

#[derive(Default)]
struct State {
    current: Option<Held>,
    inflight: Option<(u64, Flight)>,
    generation: u64,
}

/// Hands out the current PAT, refreshing it when needed. Cheap to share behind an `Arc`.
pub(crate) struct PatProvider {
    caller: Caller,
    config: PatConfig,
    state: Mutex<State>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for PatProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PatProvider")
            .field("token_endpoint", &self.config.token_endpoint)
            .field("client_id", &self.config.client.id)
            .finish_non_exhaustive()
    }
}

impl PatProvider {
    /// A provider whose token requests go through `caller` and whose PATs age on `clock`.
    pub(crate) fn new(caller: Caller, config: PatConfig, clock: Arc<dyn Clock>) -> Self {
        Self {
            caller,
            config,
            state: Mutex::new(State::default()),
            clock,
        }
    }

    /// The current PAT, fetching a new one when there is none, it expired or the AS refused
    /// it. When it is only due for a refresh (still valid), the refresh runs in the background
    /// and the current PAT is returned at once.
    ///
    /// # Errors
    ///
    /// Why the token endpoint gave no PAT (shared by every caller of one refresh).
    pub(crate) async fn get(self: &Arc<Self>) -> Result<Pat, CallError> {
        let (generation, flight) = {
            let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            let now = self.clock.now_unix_millis();
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
            task.await
                .unwrap_or_else(|_| Err(CallError::unreachable(AsEndpoint::Token)))
        }
        .boxed()
        .shared()
    }

    /// Ends refresh `generation`: a fresh PAT replaces the current one; after a failure the
    /// current one is kept (a refresh that was not due yet) and the next call tries again.
    fn settle(&self, generation: u64, result: &Result<Held, CallError>) {
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

    async fn fetch(&self) -> Result<Held, CallError> {
        let span = tracing::debug_span!(
            "uma.pat.refresh",
            http.status_code = tracing::field::Empty,
            error = tracing::field::Empty
        );
        let c = &self.config;
        let started = self.clock.now_unix_millis();
        let result = self
            .caller
            .call(
                AsEndpoint::Token,
                token::request(&c.token_endpoint, &c.client, &c.grant, c.scope.as_deref()),
                MAX_AS_BODY,
                |answer| token::parse(answer, &c.grant),
            )
            .instrument(span.clone())
            .await
            .map_err(|e| e.withholding(&c.client.secrets(&c.grant)));
        match &result {
            Ok(_) => crate::metrics::pat_refresh("ok"),
            // Not called: counted and logged by the gate.
            Err(e) if e.outcome().is_none() => {}
            Err(e) => {
                // Per call: DEBUG. The gate logs the first failure and summaries at WARN.
                crate::metrics::pat_refresh("error");
                span.record("error", tracing::field::display(e));
                tracing::debug!(parent: &span, error = %e, "could not obtain a PAT");
            }
        }
        // An `expires_in` too large for the clock saturates: no time-based refresh (a 401
        // still triggers one), rather than an overflow panic.
        let after =
            |d: Duration| started.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        result.map(|issued| Held {
            pat: Pat::new(issued.access_token),
            refresh_at: issued.lifetime.map(|l| after(refresh_after(l))),
            expires_at: issued.lifetime.map(after),
        })
    }
}

/// When to refresh a PAT that lives `lifetime`: a tenth of its life (at most 30 s) early.
pub(crate) fn refresh_after(lifetime: Duration) -> Duration {
    let margin = (lifetime / 10).min(Duration::from_secs(30));
    lifetime - margin
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FixedClock;
    use crate::protection::canned::Canned;
    use crate::protection::token::ClientAuth;
    use crate::token::ClientSecret;

    const NOW: i64 = 1_767_225_600;

    /// A provider whose token endpoint is `canned`, on a clock that stands still.
    fn provider(canned: &Canned) -> Arc<PatProvider> {
        provider_on(canned, Arc::new(FixedClock::new(NOW)))
    }

    /// A provider whose token endpoint is `canned` and whose PATs age on `clock`.
    fn provider_on(canned: &Canned, clock: Arc<FixedClock>) -> Arc<PatProvider> {
        Arc::new(PatProvider::new(
            Caller::new(canned.transport(), Arc::default()),
            PatConfig {
                token_endpoint: "https://as.test/token".to_owned(),
                client: Client {
                    id: "rs".to_owned(),
                    secret: ClientSecret::new("rs-secret"),
                    auth: ClientAuth::Basic,
                },
                grant: PatGrant::ClientCredentials,
                scope: Some("uma_protection".to_owned()),
            },
            clock,
        ))
    }

    fn issued(token: &str, expires_in: u64) -> String {
        serde_json::json!({
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": expires_in,
        })
        .to_string()
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

    /// An `expires_in` too large for the clock (garbage from the AS) must neither panic
    /// the refresh task nor lose the PAT: the token is kept and refreshed on a 401 instead.
    #[tokio::test]
    async fn a_huge_expires_in_does_not_panic() {
        let canned = Canned::new(|_| (200, issued("pat-huge", u64::MAX)));
        let provider = provider(&canned);
        let pat = provider.get().await.expect("a PAT");
        assert_eq!(pat.secret(), "pat-huge");
        // Reused, not fetched again.
        assert_eq!(provider.get().await.expect("a PAT"), pat);
        assert_eq!(canned.calls(), 1);
    }

    /// Callers that arrive while the token request is out wait for it: one request for all.
    #[tokio::test]
    async fn concurrent_callers_share_one_token_request() {
        let canned = Canned::new(|n| (200, issued(&format!("pat-{n}"), 300)));
        canned.delay(Duration::from_millis(50));
        let provider = provider(&canned);
        let gets = (0..8).map(|_| {
            let p = Arc::clone(&provider);
            tokio::spawn(async move { p.get().await })
        });
        for got in futures_util::future::join_all(gets).await {
            assert_eq!(got.expect("joined").expect("a PAT").secret(), "pat-1");
        }
        assert_eq!(canned.calls(), 1);
    }

    /// The token endpoint's refusal is the error, with the AS's cause and never the secret
    /// the AS echoed.
    #[tokio::test]
    async fn a_refusal_says_why_without_the_secret() {
        let canned = Canned::new(|_| {
            (
                401,
                r#"{"error":"invalid_client","error_description":"secret rs-secret is wrong"}"#
                    .to_owned(),
            )
        });
        let e = provider(&canned).get().await.expect_err("refused");
        assert_eq!(
            e.to_string(),
            "token endpoint answered 401 invalid_client: check client_id and the client secret \
             ([withheld])"
        );
        assert!(!e.is_transient());
    }

    /// A PAT due for a refresh but still valid is handed out at once while the refresh runs
    /// in the background; a failed background refresh keeps it; an expired PAT is never
    /// handed out.
    #[tokio::test]
    async fn a_due_refresh_runs_in_the_background_while_the_pat_is_valid() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let failing = Arc::new(AtomicBool::new(false));
        let f = Arc::clone(&failing);
        let canned = Canned::new(move |n| {
            if f.load(Ordering::SeqCst) {
                (503, String::new())
            } else {
                (200, issued(&format!("pat-{n}"), 3600))
            }
        });
        let clock = Arc::new(FixedClock::new(NOW));
        let provider = provider_on(&canned, clock.clone());
        let first = provider.get().await.expect("a PAT");
        assert_eq!(first.secret(), "pat-1");
        // An hour's PAT is refreshed 30 s early.
        clock.advance(3569);
        assert_eq!(provider.get().await.expect("the PAT"), first);
        assert_eq!(canned.calls(), 1, "not due yet");
        let settled = || async {
            tokio::time::timeout(Duration::from_secs(5), async {
                while provider.state.lock().expect("lock").inflight.is_some() {
                    tokio::task::yield_now().await;
                }
            })
            .await
            .expect("the background refresh ends");
        };
        failing.store(true, Ordering::SeqCst);
        clock.advance(1); // due, and valid for another 30 s
        assert_eq!(provider.get().await.expect("the valid PAT"), first);
        settled().await;
        assert_eq!(canned.calls(), 2, "one background refresh");
        assert_eq!(provider.get().await.expect("kept after a failure"), first);
        settled().await;
        failing.store(false, Ordering::SeqCst);
        assert_eq!(provider.get().await.expect("the valid PAT"), first);
        settled().await;
        let fresh = provider.get().await.expect("the refreshed PAT");
        assert_eq!(fresh.secret(), format!("pat-{}", canned.calls()));
        assert_ne!(fresh, first);
        // Expired: the caller waits for the token endpoint, and a failure is an error.
        failing.store(true, Ordering::SeqCst);
        clock.advance(3600);
        assert!(
            provider.get().await.is_err(),
            "an expired PAT is not handed out"
        );
    }
}
