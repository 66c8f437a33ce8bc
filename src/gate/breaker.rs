//! The circuit breaker of one AS endpoint: a pure state machine over times in milliseconds,
//! so that every transition can be tested without a clock or a network.
//!
//! ```text
//!            K consecutive transient failures
//!   Closed ───────────────────────────────────► Open (interval: base)
//!     ▲                                          │  the interval passes: the next call
//!     │ the probe succeeds                       ▼  is let through as the only probe
//!     └──────────────────────────────────── HalfOpen
//!                                                │  the probe fails: Open again, with the
//!                                                └► interval doubled (at most max)
//! ```
//!
//! Outcomes of calls admitted before the circuit opened are ignored while it is open or
//! half-open (only the probe decides); a probe that ends without an outcome (cancelled, or it
//! never reached the endpoint) hands the probe to the next call.

use std::time::Duration;

use super::BreakerState;

/// The breaker's knobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BreakerSettings {
    /// Consecutive transient failures that open the circuit; `0`: never open.
    pub(crate) threshold: u32,
    /// The first open interval.
    pub(crate) base: Duration,
    /// The longest open interval.
    pub(crate) max: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            threshold: 5,
            base: Duration::from_secs(1),
            max: Duration::from_secs(5),
        }
    }
}

/// Whether a call may go to the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// The circuit is closed.
    Call,
    /// The circuit was open and its interval has passed: this call is the one probe.
    Probe,
    /// The circuit is open, or half-open with its probe out: answer at once.
    Reject,
}

/// A change of state, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Transition {
    pub(crate) from: BreakerState,
    pub(crate) to: BreakerState,
    /// When the circuit last left `Closed` (ms), for the outage's length.
    pub(crate) down_since: i64,
    /// The consecutive transient failures so far.
    pub(crate) failures: u32,
    /// How long the circuit now stays open (when `to` is `Open`).
    pub(crate) open_for: Duration,
}

/// The state of one endpoint's circuit.
#[derive(Debug, Clone)]
pub(crate) struct Breaker {
    state: BreakerState,
    /// Consecutive transient failures (saturating).
    failures: u32,
    /// When the state last changed (ms).
    since: i64,
    /// When the circuit last left `Closed` (ms).
    down_since: i64,
    /// The current open interval (`ZERO` while closed).
    open_for: Duration,
    /// Whether the half-open probe is out.
    probing: bool,
}

impl Breaker {
    pub(crate) fn new(now: i64) -> Self {
        Self {
            state: BreakerState::Closed,
            failures: 0,
            since: now,
            down_since: now,
            open_for: Duration::ZERO,
            probing: false,
        }
    }

    /// The state, the consecutive transient failures and since when (ms) it holds.
    pub(crate) fn health(&self) -> (BreakerState, u32, i64) {
        (self.state, self.failures, self.since)
    }

    /// Whether the open interval has passed at `now`. A clock that went backwards counts as
    /// passed: the worst it costs is one probe.
    fn due(&self, now: i64) -> bool {
        now < self.since || now.saturating_sub(self.since) >= millis(self.open_for)
    }

    /// How long from `now` until an open circuit lets its probe through (zero when it would
    /// admit a call now, or when it is half-open: its probe is out or may be taken at once).
    pub(crate) fn open_remaining(&self, now: i64) -> Duration {
        if self.state != BreakerState::Open || self.due(now) {
            return Duration::ZERO;
        }
        let left = millis(self.open_for).saturating_sub(now.saturating_sub(self.since));
        Duration::from_millis(u64::try_from(left).unwrap_or(0))
    }

    /// Whether [`admit`](Self::admit) would let a call through now (without taking the probe).
    pub(crate) fn would_admit(&self, now: i64) -> bool {
        match self.state {
            BreakerState::Closed => true,
            BreakerState::Open => self.due(now),
            BreakerState::HalfOpen => !self.probing,
        }
    }

    /// Asks to call the endpoint at `now`.
    pub(crate) fn admit(&mut self, now: i64) -> (Admission, Option<Transition>) {
        match self.state {
            BreakerState::Closed => (Admission::Call, None),
            BreakerState::Open if self.due(now) => {
                self.probing = true;
                let t = self.change(now, BreakerState::HalfOpen);
                (Admission::Probe, Some(t))
            }
            BreakerState::HalfOpen if !self.probing => {
                self.probing = true;
                (Admission::Probe, None)
            }
            BreakerState::Open | BreakerState::HalfOpen => (Admission::Reject, None),
        }
    }

    /// A call that reached the endpoint and got an answer from it (even an error status that
    /// is not transient): the endpoint is up.
    pub(crate) fn success(&mut self, now: i64, probe: bool) -> Option<Transition> {
        match self.state {
            BreakerState::Closed => {
                self.failures = 0;
                None
            }
            BreakerState::HalfOpen if probe => {
                self.probing = false;
                let t = self.change(now, BreakerState::Closed);
                self.failures = 0;
                self.open_for = Duration::ZERO;
                Some(t)
            }
            // A call admitted before the circuit opened: only the probe decides.
            BreakerState::Open | BreakerState::HalfOpen => None,
        }
    }

    /// A call that failed transiently (unreachable, timeout, 5xx, unparsable).
    pub(crate) fn failure(
        &mut self,
        now: i64,
        probe: bool,
        settings: &BreakerSettings,
    ) -> Option<Transition> {
        self.failures = self.failures.saturating_add(1);
        match self.state {
            BreakerState::Closed
                if settings.threshold > 0 && self.failures >= settings.threshold =>
            {
                self.open_for = settings.base.min(settings.max);
                self.down_since = now;
                Some(self.change(now, BreakerState::Open))
            }
            BreakerState::HalfOpen if probe => {
                self.probing = false;
                self.open_for = self.open_for.saturating_mul(2).min(settings.max);
                Some(self.change(now, BreakerState::Open))
            }
            BreakerState::Closed | BreakerState::Open | BreakerState::HalfOpen => None,
        }
    }

    /// A call that ended without telling anything about the endpoint (cancelled, or it never
    /// reached it): a probe is handed to the next call.
    pub(crate) fn neutral(&mut self, probe: bool) {
        if probe && self.state == BreakerState::HalfOpen {
            self.probing = false;
        }
    }

    fn change(&mut self, now: i64, to: BreakerState) -> Transition {
        let from = self.state;
        self.state = to;
        self.since = now;
        Transition {
            from,
            to,
            down_since: self.down_since,
            failures: self.failures,
            open_for: self.open_for,
        }
    }
}

/// A duration in whole milliseconds, saturated to `i64`.
pub(crate) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: BreakerSettings = BreakerSettings {
        threshold: 3,
        base: Duration::from_secs(1),
        max: Duration::from_secs(4),
    };

    /// Opens a fresh breaker with `S.threshold` failures at `now`.
    fn opened(now: i64) -> Breaker {
        let mut b = Breaker::new(0);
        for _ in 1..S.threshold {
            assert_eq!(b.failure(now, false, &S), None);
        }
        let t = b.failure(now, false, &S).expect("opens");
        assert_eq!((t.from, t.to), (BreakerState::Closed, BreakerState::Open));
        b
    }

    #[test]
    fn an_open_circuit_says_when_it_probes() {
        let b = opened(100);
        assert_eq!(b.open_remaining(100), S.base);
        assert_eq!(b.open_remaining(600), Duration::from_millis(500));
        assert_eq!(b.open_remaining(1_100), Duration::ZERO);
        assert_eq!(Breaker::new(0).open_remaining(0), Duration::ZERO);
    }

    #[test]
    fn closed_counts_consecutive_failures_and_a_success_resets_them() {
        let mut b = Breaker::new(0);
        assert_eq!(b.admit(0), (Admission::Call, None));
        assert_eq!(b.failure(10, false, &S), None);
        assert_eq!(b.failure(20, false, &S), None);
        assert_eq!(b.health(), (BreakerState::Closed, 2, 0));
        assert_eq!(b.success(30, false), None);
        assert_eq!(b.health(), (BreakerState::Closed, 0, 0));
        assert_eq!(b.failure(40, false, &S), None);
        assert_eq!(b.failure(50, false, &S), None);
        let t = b.failure(60, false, &S).expect("the third in a row opens");
        assert_eq!(t.to, BreakerState::Open);
        assert_eq!(t.failures, 3);
        assert_eq!(t.open_for, S.base);
        assert_eq!(b.health(), (BreakerState::Open, 3, 60));
    }

    #[test]
    fn open_rejects_until_the_interval_passes_then_lets_one_probe_through() {
        let mut b = opened(1_000);
        assert!(!b.would_admit(1_999));
        assert_eq!(b.admit(1_000), (Admission::Reject, None));
        assert_eq!(b.admit(1_999), (Admission::Reject, None));
        assert!(b.would_admit(2_000));
        let (admission, t) = b.admit(2_000);
        assert_eq!(admission, Admission::Probe);
        let t = t.expect("open -> half-open");
        assert_eq!((t.from, t.to), (BreakerState::Open, BreakerState::HalfOpen));
        // Exactly one probe: everyone else is refused while it is out.
        assert!(!b.would_admit(2_001));
        assert_eq!(b.admit(2_001), (Admission::Reject, None));
        assert_eq!(b.admit(9_000), (Admission::Reject, None));
        assert_eq!(b.health().0, BreakerState::HalfOpen);
    }

    #[test]
    fn a_successful_probe_closes() {
        let mut b = opened(1_000);
        assert_eq!(b.admit(2_000).0, Admission::Probe);
        let t = b.success(2_050, true).expect("half-open -> closed");
        assert_eq!(
            (t.from, t.to),
            (BreakerState::HalfOpen, BreakerState::Closed)
        );
        assert_eq!(t.down_since, 1_000);
        assert_eq!(b.health(), (BreakerState::Closed, 0, 2_050));
        assert_eq!(b.admit(2_051), (Admission::Call, None));
        // The next outage starts again from the base interval.
        for _ in 0..S.threshold {
            b.failure(3_000, false, &S);
        }
        assert_eq!(b.health().0, BreakerState::Open);
        assert_eq!(b.admit(3_999).0, Admission::Reject);
        assert_eq!(b.admit(4_000).0, Admission::Probe);
    }

    #[test]
    fn a_failed_probe_reopens_with_a_doubled_interval_up_to_the_max() {
        let mut b = opened(0);
        let mut at = 0;
        for expected in [2_000, 4_000, 4_000] {
            at += millis(b.open_for);
            assert_eq!(b.admit(at).0, Admission::Probe);
            let t = b.failure(at + 5, true, &S).expect("half-open -> open");
            assert_eq!((t.from, t.to), (BreakerState::HalfOpen, BreakerState::Open));
            assert_eq!(millis(t.open_for), expected);
            assert_eq!(t.down_since, 0);
            at += 5;
            assert_eq!(b.admit(at + expected - 1).0, Admission::Reject);
        }
        assert_eq!(b.health().1, S.threshold + 3);
    }

    #[test]
    fn outcomes_of_calls_admitted_before_the_circuit_opened_are_ignored() {
        let mut b = opened(0);
        assert_eq!(b.success(10, false), None);
        assert_eq!(b.failure(10, false, &S), None);
        assert_eq!(b.health().0, BreakerState::Open);
        assert_eq!(b.admit(1_000).0, Admission::Probe);
        assert_eq!(b.success(1_010, false), None);
        assert_eq!(b.failure(1_010, false, &S), None);
        assert_eq!(b.health().0, BreakerState::HalfOpen);
        assert_eq!(b.admit(1_020).0, Admission::Reject);
    }

    #[test]
    fn a_probe_without_an_outcome_hands_the_probe_on() {
        let mut b = opened(0);
        assert_eq!(b.admit(1_000).0, Admission::Probe);
        b.neutral(false);
        assert_eq!(b.admit(1_001).0, Admission::Reject);
        b.neutral(true);
        assert!(b.would_admit(1_002));
        assert_eq!(b.admit(1_002), (Admission::Probe, None));
        assert_eq!(b.admit(1_003).0, Admission::Reject);
        assert!(b.success(1_004, true).is_some());
    }

    #[test]
    fn a_clock_that_went_backwards_allows_a_probe() {
        let mut b = opened(10_000);
        assert_eq!(b.admit(5_000).0, Admission::Probe);
    }

    #[test]
    fn a_zero_threshold_never_opens() {
        let off = BreakerSettings { threshold: 0, ..S };
        let mut b = Breaker::new(0);
        for at in 0..100 {
            assert_eq!(b.failure(at, false, &off), None);
            assert_eq!(b.admit(at).0, Admission::Call);
        }
        assert_eq!(b.health(), (BreakerState::Closed, 100, 0));
    }
}
