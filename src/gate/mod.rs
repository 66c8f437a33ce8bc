//! The gate in front of every call the layer makes to the authorization server while serving
//! requests (token, introspection, permission, resource registration, JWKS): a cap on the
//! calls in flight, a circuit breaker per endpoint, and failure logs that stay quiet during an
//! outage. [`UmaLayer::as_health`](crate::UmaLayer::as_health) reports its state.
//!
//! # Why it works this way
//!
//! - **Cap.** Every well-formed token a client invents costs an introspection (and, refused, a
//!   permission request), so without a bound a client can make the layer hammer the AS. The
//!   gate counts calls in flight per layer and refuses a call beyond the cap at once, as if
//!   the AS were unreachable (`403` + `Warning`); it never queues. A call waiting for the PAT
//!   holds no slot, so the token request it waits for always finds one once calls drain.
//! - **Breaker.** After `K` consecutive transient failures (unreachable, timeout, 5xx or 429,
//!   unusable answer) an endpoint's circuit opens: its calls are refused at once, without
//!   waiting for a timeout, for a short interval that doubles while probes fail (1 s to 5 s
//!   by default). When it has passed, exactly one call goes through as a probe; its success
//!   closes the circuit. No background task probes: the first request after the interval
//!   does, so recovery takes at most one interval after the AS is back, and an idle layer
//!   makes no calls at all. An answer that is an error but not a transient one (a `400`, a
//!   `401` after the PAT was renewed) shows that the endpoint is up and counts as a success.
//! - **Time.** The breaker reads the layer's [`Clock`] in milliseconds, so tests move a
//!   [`FixedClock`](crate::clock::FixedClock) instead of sleeping. A wall clock that jumps lets at
//!   most one probe through early.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::clock::Clock;
use crate::resync::UnknownResource;

pub(crate) mod breaker;
pub(crate) mod report;

use breaker::{Admission, Breaker, BreakerSettings};
use report::{Cause, Events, Report};

/// An endpoint of the authorization server that the layer calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AsEndpoint {
    /// The token endpoint (the PAT).
    Token,
    /// The introspection endpoint (RFC 7662).
    Introspection,
    /// The permission endpoint (permission tickets, FedAuthz §4).
    Permission,
    /// The resource registration endpoint (FedAuthz §3).
    ResourceRegistration,
    /// The JWKS (local JWT validation).
    Jwks,
}

impl AsEndpoint {
    const ALL: [Self; 5] = [
        Self::Token,
        Self::Introspection,
        Self::Permission,
        Self::ResourceRegistration,
        Self::Jwks,
    ];

    /// The name used in logs, metrics labels and health reports: `"token"`,
    /// `"introspection"`, `"permission"`, `"resource_registration"` or `"jwks"`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Token => "token",
            Self::Introspection => "introspection",
            Self::Permission => "permission",
            Self::ResourceRegistration => "resource_registration",
            Self::Jwks => "jwks",
        }
    }

    fn index(self) -> usize {
        match self {
            Self::Token => 0,
            Self::Introspection => 1,
            Self::Permission => 2,
            Self::ResourceRegistration => 3,
            Self::Jwks => 4,
        }
    }
}

impl fmt::Display for AsEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The state of an endpoint's circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// The endpoint failed repeatedly: its calls are refused at once until the open interval
    /// has passed.
    Open,
    /// The open interval has passed and one probe call is (or may be) out; the others are
    /// refused until it succeeds.
    HalfOpen,
}

impl BreakerState {
    /// `"closed"`, `"open"` or `"half_open"`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }

    /// The value of the `uma_as_breaker_state` gauge: 0 closed, 1 half-open, 2 open.
    fn gauge(self) -> f64 {
        match self {
            Self::Closed => 0.0,
            Self::HalfOpen => 1.0,
            Self::Open => 2.0,
        }
    }
}

/// The health of one AS endpoint, as its circuit breaker sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EndpointHealth {
    endpoint: AsEndpoint,
    state: BreakerState,
    consecutive_failures: u32,
    since_unix_millis: i64,
}

impl EndpointHealth {
    /// The endpoint.
    #[must_use]
    pub fn endpoint(&self) -> AsEndpoint {
        self.endpoint
    }

    /// Its circuit's state.
    #[must_use]
    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// Transient failures in a row (reset by any answer from the endpoint).
    #[must_use]
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// When the circuit entered its state, in milliseconds since the Unix epoch per the
    /// layer's [`Clock`] (the layer's start for a circuit that never opened).
    #[must_use]
    pub fn since_unix_millis(&self) -> i64 {
        self.since_unix_millis
    }
}

/// A snapshot of the layer's calls to the authorization server, for readiness checks: each
/// endpoint's circuit breaker, and the calls in flight against the cap. Made by
/// [`UmaLayer::as_health`](crate::UmaLayer::as_health).
///
/// `Display` writes one line per endpoint, e.g.
/// `introspection open consecutive_failures=7 for_ms=2300`.
///
/// # Example
///
/// ```
/// use tower_uma::health::{AsEndpoint, AsHealth, BreakerState};
///
/// fn ready(health: &AsHealth) -> bool {
///     // Cached decisions still work while the AS is down: a readiness check may prefer to
///     // look at introspection only, or at nothing but log the state.
///     health
///         .endpoint(AsEndpoint::Introspection)
///         .is_none_or(|e| e.state() == BreakerState::Closed)
/// }
/// # let _ = ready;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AsHealth {
    as_of_unix_millis: i64,
    calls_in_flight: usize,
    max_calls_in_flight: usize,
    endpoints: Vec<EndpointHealth>,
    unknown_resources: Vec<UnknownResource>,
}

impl AsHealth {
    /// Every endpoint this layer calls, in the order token, introspection, permission,
    /// resource registration (when configured), JWKS (with local JWT validation).
    #[must_use]
    pub fn endpoints(&self) -> &[EndpointHealth] {
        &self.endpoints
    }

    /// The health of `endpoint`, if this layer calls it.
    #[must_use]
    pub fn endpoint(&self, endpoint: AsEndpoint) -> Option<&EndpointHealth> {
        self.endpoints.iter().find(|e| e.endpoint == endpoint)
    }

    /// Whether every circuit is closed.
    #[must_use]
    pub fn all_closed(&self) -> bool {
        self.endpoints
            .iter()
            .all(|e| e.state == BreakerState::Closed)
    }

    /// The AS calls in flight when the snapshot was taken.
    #[must_use]
    pub fn calls_in_flight(&self) -> usize {
        self.calls_in_flight
    }

    /// The cap on AS calls in flight.
    #[must_use]
    pub fn max_calls_in_flight(&self) -> usize {
        self.max_calls_in_flight
    }

    /// When the snapshot was taken, in milliseconds since the Unix epoch per the layer's
    /// [`Clock`].
    #[must_use]
    pub fn as_of_unix_millis(&self) -> i64 {
        self.as_of_unix_millis
    }

    /// The resources the AS said it does not know (`invalid_resource_id`, FedAuthz §4.3) and
    /// that the layer could not register or find again yet: requests that need a permission
    /// ticket for one of them are refused with `403` + `Warning` until it is back. Empty
    /// when every ticket request names a resource the AS knows.
    ///
    /// Unlike an open circuit, this does not heal when the AS comes back: it takes a
    /// successful registration (the layer retries it in the background, once per
    /// [`resource_resync_interval`](crate::UmaLayerBuilder::resource_resync_interval)) or a
    /// change of configuration, so it is a reason to fail readiness.
    #[must_use]
    pub fn unknown_resources(&self) -> &[UnknownResource] {
        &self.unknown_resources
    }

    /// Whether the AS knows every resource the layer asked tickets for (see
    /// [`unknown_resources`](Self::unknown_resources)).
    #[must_use]
    pub fn resources_known(&self) -> bool {
        self.unknown_resources.is_empty()
    }

    /// This snapshot with the layer's unknown resources.
    pub(crate) fn with_unknown_resources(mut self, unknown: Vec<UnknownResource>) -> Self {
        self.unknown_resources = unknown;
        self
    }
}

impl fmt::Display for AsHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.endpoints {
            writeln!(
                f,
                "{} {} consecutive_failures={} for_ms={}",
                e.endpoint,
                e.state.as_str(),
                e.consecutive_failures,
                self.as_of_unix_millis
                    .saturating_sub(e.since_unix_millis)
                    .max(0),
            )?;
        }
        for r in &self.unknown_resources {
            r.write_line(f, self.as_of_unix_millis)?;
        }
        Ok(())
    }
}

/// The gate's knobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GateSettings {
    /// The most AS calls in flight at once (at least 1).
    pub(crate) max_in_flight: usize,
    pub(crate) breaker: BreakerSettings,
}

impl Default for GateSettings {
    fn default() -> Self {
        Self {
            max_in_flight: 64,
            breaker: BreakerSettings::default(),
        }
    }
}

/// Why a call was not made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Too many AS calls in flight.
    Shed,
    /// The endpoint's circuit is open.
    Open,
}

/// The error of a call through the gate: it can say what the call tells about the endpoint.
pub(crate) trait AsFailure {
    /// What went wrong at the endpoint; `None` when the call says nothing about it (it was
    /// not made, or no PAT could be had).
    fn cause(&self) -> Option<Cause>;
}

/// What one call tells about its endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The endpoint answered as expected.
    Answered,
    /// The call failed; a transient cause counts against the circuit, any other one shows
    /// that the endpoint is up.
    Failed(Cause),
    /// Nothing is known (cancelled, or the endpoint was never reached).
    Neutral,
}

impl Outcome {
    /// The outcome of a finished call.
    pub(crate) fn of<T, E: AsFailure>(result: &Result<T, E>) -> Self {
        match result {
            Ok(_) => Self::Answered,
            Err(e) => Self::of_error(e),
        }
    }

    /// The outcome of a call that failed with `error`.
    pub(crate) fn of_error<E: AsFailure>(error: &E) -> Self {
        error.cause().map_or(Self::Neutral, Self::Failed)
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Shed => "too many authorization server calls in flight",
            Self::Open => "its circuit is open after repeated failures",
        })
    }
}

/// One endpoint's breaker and failure report.
#[derive(Debug)]
struct Endpoint {
    breaker: Breaker,
    report: Report,
}

/// The cap, the breakers and the failure reports of one layer. Shared by its AS client, PAT
/// provider and JWT verifier.
#[derive(Debug)]
pub(crate) struct AsGate {
    settings: GateSettings,
    clock: Arc<dyn Clock>,
    in_flight: AtomicUsize,
    endpoints: [Mutex<Endpoint>; 5],
    /// Which endpoints the layer calls (for health reports).
    used: [bool; 5],
}

impl AsGate {
    /// A gate for the endpoints in `used`, reading time from `clock`.
    pub(crate) fn new(settings: GateSettings, clock: Arc<dyn Clock>, used: &[AsEndpoint]) -> Self {
        let now = clock.now_unix_millis();
        let endpoint = || {
            Mutex::new(Endpoint {
                breaker: Breaker::new(now),
                report: Report::default(),
            })
        };
        let mut flags = [false; 5];
        for e in used {
            flags[e.index()] = true;
            crate::metrics::as_breaker_state(e.as_str(), BreakerState::Closed.gauge());
        }
        Self {
            settings,
            clock,
            in_flight: AtomicUsize::new(0),
            endpoints: [endpoint(), endpoint(), endpoint(), endpoint(), endpoint()],
            used: flags,
        }
    }

    fn lock(&self, endpoint: AsEndpoint) -> MutexGuard<'_, Endpoint> {
        // Every critical section is a few field updates: the state is consistent even if a
        // holder panicked.
        self.endpoints[endpoint.index()]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Refuses at once when `endpoint`'s circuit is open (counted and reported as a
    /// short-circuited call), without taking anything: for a caller that has work to do (get
    /// a PAT) before [`admit`](Self::admit).
    pub(crate) fn check(&self, endpoint: AsEndpoint) -> Result<(), Refusal> {
        let now = self.clock.now_unix_millis();
        let mut ep = self.lock(endpoint);
        if ep.breaker.would_admit(now) {
            return Ok(());
        }
        let events = self.refuse(&mut ep, endpoint, now, Refusal::Open);
        drop(ep);
        report::emit(endpoint, now, &events);
        Err(Refusal::Open)
    }

    /// Asks to call `endpoint` now: a pass to hold for the length of the call, or why not.
    pub(crate) fn admit(&self, endpoint: AsEndpoint) -> Result<Pass<'_>, Refusal> {
        let now = self.clock.now_unix_millis();
        let mut ep = self.lock(endpoint);
        let (admission, transition) = ep.breaker.admit(now);
        let mut events = Events {
            transition,
            state: Some(ep.breaker.health().0),
            ..Events::default()
        };
        let refused = match admission {
            Admission::Reject => Some(Refusal::Open),
            Admission::Call | Admission::Probe => (!self.take_slot()).then_some(Refusal::Shed),
        };
        if let Some(why) = refused {
            if admission == Admission::Probe {
                // The probe was never sent: the next call probes instead.
                ep.breaker.neutral(true);
            }
            let more = self.refuse(&mut ep, endpoint, now, why);
            events.line = more.line;
            drop(ep);
            transitioned(endpoint, &events);
            report::emit(endpoint, now, &events);
            return Err(why);
        }
        drop(ep);
        transitioned(endpoint, &events);
        report::emit(endpoint, now, &events);
        Ok(Pass {
            gate: self,
            endpoint,
            probe: admission == Admission::Probe,
            done: false,
        })
    }

    /// Counts and reports a refused call.
    fn refuse(&self, ep: &mut Endpoint, endpoint: AsEndpoint, now: i64, why: Refusal) -> Events {
        let cause = match why {
            Refusal::Shed => {
                crate::metrics::as_call_shed(endpoint.as_str());
                tracing::debug!(
                    uma.as.endpoint = endpoint.as_str(),
                    cap = self.settings.max_in_flight,
                    "AS call not made: too many in flight"
                );
                Cause::Shed
            }
            Refusal::Open => {
                crate::metrics::as_call_short_circuited(endpoint.as_str());
                tracing::debug!(
                    uma.as.endpoint = endpoint.as_str(),
                    "AS call not made: the endpoint's circuit is open"
                );
                Cause::ShortCircuited
            }
        };
        Events {
            line: ep.report.failure(now, cause),
            state: Some(ep.breaker.health().0),
            ..Events::default()
        }
    }

    /// Takes one of the slots of the cap, if one is free.
    fn take_slot(&self) -> bool {
        let taken = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.settings.max_in_flight).then_some(n + 1)
            })
            .is_ok();
        if taken {
            crate::metrics::as_calls_in_flight(1.0);
        }
        taken
    }

    fn release_slot(&self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        crate::metrics::as_calls_in_flight(-1.0);
    }

    /// Records how a call admitted with `probe` ended.
    fn settle(&self, endpoint: AsEndpoint, probe: bool, outcome: Outcome) {
        let now = self.clock.now_unix_millis();
        let mut ep = self.lock(endpoint);
        let mut events = Events::default();
        match outcome {
            Outcome::Answered => {
                events.transition = ep.breaker.success(now, probe);
                events.line = ep.report.success(now);
            }
            Outcome::Failed(cause) if cause.is_transient() => {
                events.transition = ep.breaker.failure(now, probe, &self.settings.breaker);
                events.line = ep.report.failure(now, cause);
            }
            Outcome::Failed(cause) => {
                events.transition = ep.breaker.success(now, probe);
                events.line = ep.report.failure(now, cause);
            }
            Outcome::Neutral => ep.breaker.neutral(probe),
        }
        if events
            .transition
            .is_some_and(|t| t.to == BreakerState::Closed)
        {
            events.unreported = ep.report.close();
        }
        events.state = Some(ep.breaker.health().0);
        drop(ep);
        transitioned(endpoint, &events);
        report::emit(endpoint, now, &events);
    }

    /// The health of every endpoint the layer calls.
    pub(crate) fn health(&self) -> AsHealth {
        let endpoints = AsEndpoint::ALL
            .into_iter()
            .filter(|e| self.used[e.index()])
            .map(|endpoint| {
                let (state, consecutive_failures, since_unix_millis) =
                    self.lock(endpoint).breaker.health();
                EndpointHealth {
                    endpoint,
                    state,
                    consecutive_failures,
                    since_unix_millis,
                }
            })
            .collect();
        AsHealth {
            as_of_unix_millis: self.clock.now_unix_millis(),
            calls_in_flight: self.in_flight.load(Ordering::Acquire),
            max_calls_in_flight: self.settings.max_in_flight,
            endpoints,
            unknown_resources: Vec::new(),
        }
    }

    /// How long until every open circuit lets its probe through: a caller about to retry a
    /// failed start-up call waits at least this long, so that its attempt is not refused by a
    /// circuit its earlier attempts opened.
    pub(crate) fn wait_hint(&self) -> Duration {
        let now = self.clock.now_unix_millis();
        AsEndpoint::ALL
            .into_iter()
            .filter(|e| self.used[e.index()])
            .map(|e| self.lock(e).breaker.open_remaining(now))
            .max()
            .unwrap_or(Duration::ZERO)
    }
}

/// Updates the breaker metrics after a change of state.
fn transitioned(endpoint: AsEndpoint, events: &Events) {
    if let Some(t) = events.transition {
        crate::metrics::as_breaker_transition(endpoint.as_str(), t.to.as_str());
        crate::metrics::as_breaker_state(endpoint.as_str(), t.to.gauge());
    }
}

impl Default for AsGate {
    /// The default settings on the system clock, for every endpoint.
    fn default() -> Self {
        Self::new(
            GateSettings::default(),
            crate::clock::SystemClock::shared(),
            &AsEndpoint::ALL,
        )
    }
}

/// The right to make one call, held for its length (reading the answer included). Dropped
/// without [`finish`](Self::finish), the call counts as cancelled.
#[derive(Debug)]
pub(crate) struct Pass<'a> {
    gate: &'a AsGate,
    endpoint: AsEndpoint,
    probe: bool,
    done: bool,
}

impl Pass<'_> {
    /// Records how the call ended.
    pub(crate) fn finish(mut self, outcome: Outcome) {
        self.done = true;
        self.gate.settle(self.endpoint, self.probe, outcome);
    }

    /// Records how the call ended, from its result.
    pub(crate) fn record<T, E: AsFailure>(self, result: &Result<T, E>) {
        self.finish(Outcome::of(result));
    }

    /// Records a call that failed with `error`.
    pub(crate) fn record_error<E: AsFailure>(self, error: &E) {
        self.finish(Outcome::of_error(error));
    }
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        self.gate.release_slot();
        if !self.done {
            self.gate
                .settle(self.endpoint, self.probe, Outcome::Neutral);
        }
    }
}

#[cfg(test)]
mod tests;
