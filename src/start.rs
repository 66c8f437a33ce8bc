//! Waiting for the authorization server at start-up: [`StartRetry`].
//!
//! Under an orchestrator the API and its authorization server (AS) often start together, and
//! the AS is not always the first to answer. With a [`StartRetry`] policy, discovery and the
//! work of [`build`](crate::UmaLayerBuilder::build) (the PAT and the resource sync) are tried
//! again while they fail for a reason that may pass ([`Error::is_transient`]: the AS cannot be
//! reached, times out, answers `5xx` or `429`), with capped exponential backoff and jitter, up
//! to a total wait; any other error (a wrong client secret, an issuer mismatch, a refused
//! resource, a configuration error) is returned at once.

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::Error;

/// A function told of each failed start-up attempt that will be retried.
type OnRetry = Arc<dyn Fn(&StartAttempt<'_>) + Send + Sync>;

/// How start-up waits for an authorization server that is not ready: set it with
/// [`UmaLayerBuilder::start_retry`](crate::UmaLayerBuilder::start_retry), or use its
/// `wait_for_as` shortcut.
///
/// Each phase (discovery when the builder comes from [`UmaLayer::discover`](crate::UmaLayer::discover),
/// then [`build`](crate::UmaLayerBuilder::build)) is tried, and tried again after a transient
/// failure ([`Error::is_transient`]) until it succeeds or its wait would pass `max_wait`. The
/// delays start at `first` (0.2 s by default), double after each failure up to `max` (10 s),
/// and each is drawn between half and all of that value (jitter, so that many instances
/// restarted together do not retry together). A retry also waits for any circuit breaker that
/// earlier attempts opened. A permanent error ends the phase at once.
///
/// Each failed attempt that will be retried is one INFO event (target `tower_uma::start`)
/// naming the phase, the attempt, the delay and the error, or a call of your
/// [`on_retry`](Self::on_retry) function instead. When the wait is over, the error says how
/// many attempts were made over how long, and has the last failure as its source.
///
/// # Example
///
/// ```no_run
/// use std::time::Duration;
/// use tower_uma::{ResourceDecl, ResourceMap, Route, UmaLayer};
///
/// # async fn run() -> Result<(), tower_uma::Error> {
/// // Wait up to two minutes for the AS, in discovery and in the resource sync.
/// let layer = UmaLayer::discover("https://as.example.com", "photo-api", "secret")
///     .wait_for_as(Duration::from_secs(120))
///     .resources(ResourceMap::new().route(
///         Route::new("/albums/{id}").declare(ResourceDecl::new("album", ["view"])).any_method(["view"]),
///     ))
///     .build()
///     .await?;
/// # let _ = layer; Ok(()) }
/// ```
#[derive(Clone)]
#[must_use]
pub struct StartRetry {
    max_wait: Option<Duration>,
    first: Duration,
    max: Duration,
    on_retry: Option<OnRetry>,
}

impl fmt::Debug for StartRetry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StartRetry")
            .field("max_wait", &self.max_wait)
            .field("first", &self.first)
            .field("max", &self.max)
            .field("on_retry", &self.on_retry.is_some())
            .finish()
    }
}

impl StartRetry {
    /// Retries each phase for at most `max_wait` in all, with delays from 0.2 s doubling up to
    /// 10 s (with jitter).
    pub fn new(max_wait: Duration) -> Self {
        Self {
            max_wait: Some(max_wait),
            first: Duration::from_millis(200),
            max: Duration::from_secs(10),
            on_retry: None,
        }
    }

    /// Retries for as long as it takes (a process that has nothing better to do than wait,
    /// such as uma-proxy). Delays as for [`new`](Self::new).
    pub fn forever() -> Self {
        Self {
            max_wait: None,
            ..Self::new(Duration::ZERO)
        }
    }

    /// The first delay and the longest one (each drawn between half and all of its value).
    /// A zero `first` is read as 1 ms, and a `max` below `first` as `first`.
    pub fn delays(mut self, first: Duration, max: Duration) -> Self {
        self.first = first.max(Duration::from_millis(1));
        self.max = max.max(self.first);
        self
    }

    /// Calls `on_retry` for each failed attempt that will be retried, instead of the INFO
    /// event: to log it your own way, count it, or tell a supervisor.
    pub fn on_retry(
        mut self,
        on_retry: impl Fn(&StartAttempt<'_>) + Send + Sync + 'static,
    ) -> Self {
        self.on_retry = Some(Arc::new(on_retry));
        self
    }

    /// This policy without its total wait: retried until it succeeds (a tenant of a
    /// [`TenantLayer`](crate::tenant::TenantLayer) built in the background).
    pub(crate) fn without_max_wait(mut self) -> Self {
        self.max_wait = None;
        self
    }

    /// The nominal delay after failed attempt `attempt` (1-based), before jitter.
    fn nominal(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        self.first.saturating_mul(1u32 << doublings).min(self.max)
    }
}

/// A failed start-up attempt that will be retried, as [`StartRetry::on_retry`] sees it.
#[derive(Debug)]
#[non_exhaustive]
pub struct StartAttempt<'a> {
    phase: &'static str,
    attempt: u32,
    delay: Duration,
    error: &'a Error,
}

impl StartAttempt<'_> {
    /// `"discovery"` or `"build"` (the PAT and the resource sync).
    #[must_use]
    pub fn phase(&self) -> &'static str {
        self.phase
    }

    /// Which attempt of this phase failed, from 1.
    #[must_use]
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// How long until the next attempt.
    #[must_use]
    pub fn delay(&self) -> Duration {
        self.delay
    }

    /// Why the attempt failed (a transient error; its source chain says what the AS did).
    #[must_use]
    pub fn error(&self) -> &Error {
        self.error
    }
}

/// Runs `phase` (`"discovery"`, `"build"`) by calling `attempt`, retried per `policy` (once,
/// without one); `hint` says how long the layer's circuit breakers want a retry to wait.
pub(crate) async fn retrying<T, F>(
    policy: Option<&StartRetry>,
    phase: &'static str,
    hint: impl Fn() -> Duration,
    mut attempt: impl FnMut() -> F,
) -> Result<T, Error>
where
    F: Future<Output = Result<T, Error>>,
{
    let Some(policy) = policy else {
        return attempt().await;
    };
    let started = Instant::now();
    let mut n: u32 = 0;
    loop {
        n = n.saturating_add(1);
        let e = match attempt().await {
            Ok(v) => return Ok(v),
            Err(e) if !e.is_transient() || e.is_config() => return Err(e),
            Err(e) => e,
        };
        let mut delay = jittered(policy.nominal(n), random_fraction()).max(hint());
        if let Some(max_wait) = policy.max_wait {
            let left = max_wait.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(gave_up(phase, n, started.elapsed(), e));
            }
            delay = delay.min(left);
        }
        let step = StartAttempt {
            phase,
            attempt: n,
            delay,
            error: &e,
        };
        match &policy.on_retry {
            Some(on_retry) => on_retry(&step),
            None => tracing::info!(
                target: "tower_uma::start",
                phase,
                attempt = n,
                retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                error = format_args!("{e:#}"),
                "the authorization server is not ready ({phase}, attempt {n}); retrying in {:.1} s",
                delay.as_secs_f64()
            ),
        }
        tokio::time::sleep(delay).await;
    }
}

/// The error of a phase that was still failing when its wait was over: it says so, and has the
/// last failure as its source.
fn gave_up(phase: &str, attempts: u32, waited: Duration, last: Error) -> Error {
    Error::new(
        last.kind(),
        format!(
            "the authorization server was still not ready ({phase}) after {attempts} attempts \
             over {:.1} s",
            waited.as_secs_f64()
        ),
    )
    .transient(true)
    .with_source(last)
}

/// `nominal` scaled into [half, all] of itself by `fraction` (in [0, 1]).
fn jittered(nominal: Duration, fraction: f64) -> Duration {
    let half = nominal / 2;
    half + half.mul_f64(fraction.clamp(0.0, 1.0))
}

/// A fraction in [0, 1] that differs between calls and processes (std's randomly keyed
/// hasher; jitter needs no more).
fn random_fraction() -> f64 {
    let bits = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    // The top 53 bits, as a float in [0, 1).
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn delays_double_up_to_the_cap_with_jitter_in_the_upper_half() {
        let p = StartRetry::new(Duration::from_secs(60));
        let nominal: Vec<u64> = (1..=9).map(|n| p.nominal(n).as_millis() as u64).collect();
        assert_eq!(
            nominal,
            [200, 400, 800, 1_600, 3_200, 6_400, 10_000, 10_000, 10_000]
        );
        assert_eq!(p.nominal(u32::MAX), Duration::from_secs(10));
        let d = Duration::from_millis(800);
        assert_eq!(jittered(d, 0.0), Duration::from_millis(400));
        assert_eq!(jittered(d, 1.0), d);
        for _ in 0..100 {
            let f = random_fraction();
            assert!((0.0..1.0).contains(&f), "{f}");
        }
        let p = StartRetry::forever().delays(Duration::ZERO, Duration::ZERO);
        assert_eq!(
            (p.first, p.max),
            (Duration::from_millis(1), Duration::from_millis(1))
        );
    }

    fn unreachable() -> Error {
        Error::new(ErrorKind::Transport, "reading the discovery document")
    }

    /// Transient failures are retried until success; each is reported once.
    #[tokio::test]
    async fn transient_failures_are_retried() {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let policy = StartRetry::new(Duration::from_secs(5))
            .delays(Duration::from_millis(1), Duration::from_millis(2))
            .on_retry(move |a| {
                log.lock()
                    .expect("log")
                    .push((a.phase(), a.attempt(), a.error().to_string()));
            });
        let mut calls = 0;
        let got = retrying(
            Some(&policy),
            "discovery",
            || Duration::ZERO,
            || {
                calls += 1;
                let n = calls;
                async move { if n < 3 { Err(unreachable()) } else { Ok(n) } }
            },
        )
        .await;
        assert_eq!(got.expect("the third attempt succeeds"), 3);
        let seen = seen.lock().expect("log").clone();
        assert_eq!(
            seen,
            [
                ("discovery", 1, "reading the discovery document".to_owned()),
                ("discovery", 2, "reading the discovery document".to_owned())
            ]
        );
    }

    /// A permanent error ends at once; without a policy there is one attempt.
    #[tokio::test]
    async fn permanent_errors_and_no_policy_end_at_once() {
        let policy = StartRetry::forever();
        let mut calls = 0;
        let e = retrying(
            Some(&policy),
            "build",
            || Duration::ZERO,
            || {
                calls += 1;
                async { Err::<(), _>(Error::new(ErrorKind::Pat, "wrong secret")) }
            },
        )
        .await
        .expect_err("permanent");
        assert_eq!((e.to_string(), calls), ("wrong secret".to_owned(), 1));
        let mut calls = 0;
        let e = retrying(
            None,
            "build",
            || Duration::ZERO,
            || {
                calls += 1;
                async { Err::<(), _>(unreachable()) }
            },
        )
        .await
        .expect_err("one attempt");
        assert!(e.is_transient());
        assert_eq!(calls, 1);
    }

    /// When the wait is over, the error says so and keeps the last cause.
    #[tokio::test]
    async fn the_wait_ends_with_the_last_cause() {
        let policy = StartRetry::new(Duration::from_millis(30))
            .delays(Duration::from_millis(5), Duration::from_millis(10))
            .on_retry(|_| {});
        let e = retrying(
            Some(&policy),
            "discovery",
            || Duration::ZERO,
            || async { Err::<(), _>(unreachable()) },
        )
        .await
        .expect_err("gives up");
        assert!(e.is_transient());
        assert_eq!(e.kind(), ErrorKind::Transport);
        let shown = format!("{e:#}");
        assert!(
            shown.starts_with("the authorization server was still not ready (discovery) after ")
                && shown.ends_with(": reading the discovery document"),
            "{shown}"
        );
    }
}
