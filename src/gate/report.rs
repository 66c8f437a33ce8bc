//! Failure logs that stay readable during an outage: the first failure of an endpoint with
//! its cause, then at most one summary per interval (calls failed, by cause), emitted by the
//! next call after the interval has passed, so no background task is needed. The breaker's
//! changes of state are logged once each by the gate; per-call detail stays at DEBUG.
//!
//! The bookkeeping ([`Report`]) is a pure function of times in milliseconds; [`emit`] turns
//! its lines into tracing events.

use std::time::Duration;

use super::breaker::{Transition, millis};
use super::{AsEndpoint, BreakerState};

/// How often a failing endpoint's failures are summarised.
pub(crate) const SUMMARY_INTERVAL: Duration = Duration::from_secs(30);

/// What went wrong with one AS call, or why none was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cause {
    /// Connection refused or reset, DNS, TLS.
    Unreachable,
    /// No answer within the timeout.
    Timeout,
    /// An answer with this unexpected status.
    Status(u16),
    /// An answer whose body could not be used.
    Unparsable,
    /// Not made: too many AS calls in flight.
    Shed,
    /// Not made: the endpoint's circuit is open.
    ShortCircuited,
}

impl Cause {
    const KINDS: usize = 6;

    fn index(self) -> usize {
        match self {
            Self::Unreachable => 0,
            Self::Timeout => 1,
            Self::Status(_) => 2,
            Self::Unparsable => 3,
            Self::Shed => 4,
            Self::ShortCircuited => 5,
        }
    }

    /// Whether the failure says the endpoint is down or overloaded (what the circuit breaker
    /// counts): unreachable, timed out, a 5xx or 429 answer, or an unusable body.
    pub(crate) fn is_transient(self) -> bool {
        match self {
            Self::Unreachable | Self::Timeout | Self::Unparsable => true,
            Self::Status(status) => status >= 500 || status == 429,
            Self::Shed | Self::ShortCircuited => false,
        }
    }

    /// The cause in words, for the first failure's WARN.
    fn describe(self) -> String {
        match self {
            Self::Unreachable => "unreachable".to_owned(),
            Self::Timeout => "timed out".to_owned(),
            Self::Status(status) => format!("answered {status}"),
            Self::Unparsable => "answered with an unusable body".to_owned(),
            Self::Shed => "not called: too many AS calls in flight".to_owned(),
            Self::ShortCircuited => "not called: its circuit is open".to_owned(),
        }
    }
}

/// Failures counted by kind of [`Cause`] (every status together).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts([u64; Cause::KINDS]);

impl Counts {
    fn add(&mut self, cause: Cause) {
        let n = &mut self.0[cause.index()];
        *n = n.saturating_add(1);
    }

    pub(crate) fn total(&self) -> u64 {
        self.0.iter().fold(0, |a, n| a.saturating_add(*n))
    }

    #[cfg(test)]
    pub(crate) fn of(&self, cause: Cause) -> u64 {
        self.0[cause.index()]
    }
}

/// A log line the bookkeeping asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Line {
    /// The first failure after a quiet interval.
    First(Cause),
    /// The failures since the last line, over `over_ms`.
    Summary { counts: Counts, over_ms: i64 },
}

/// The failures of one endpoint since its last line.
#[derive(Debug, Clone, Default)]
pub(crate) struct Report {
    window: Option<Window>,
}

#[derive(Debug, Clone)]
struct Window {
    /// When the last line was emitted (ms).
    start: i64,
    /// Failures since then, not yet reported.
    counts: Counts,
}

impl Window {
    fn due(&self, now: i64) -> bool {
        now < self.start || now.saturating_sub(self.start) >= millis(SUMMARY_INTERVAL)
    }
}

impl Report {
    /// Records a failure at `now`; returns the line to log, if any.
    pub(crate) fn failure(&mut self, now: i64, cause: Cause) -> Option<Line> {
        let Some(window) = &mut self.window else {
            self.window = Some(Window {
                start: now,
                counts: Counts::default(),
            });
            return Some(Line::First(cause));
        };
        if !window.due(now) {
            window.counts.add(cause);
            return None;
        }
        if window.counts.total() == 0 {
            // A whole quiet interval since the last line: this is a new first failure.
            *window = Window {
                start: now,
                counts: Counts::default(),
            };
            return Some(Line::First(cause));
        }
        window.counts.add(cause);
        let over_ms = now.saturating_sub(window.start);
        let counts = std::mem::take(&mut window.counts);
        window.start = now;
        Some(Line::Summary { counts, over_ms })
    }

    /// Records a call that went well at `now`: once a whole interval has passed since the
    /// last line, the failures still unreported are summarised and the window closes, so the
    /// next failure is a first failure again.
    pub(crate) fn success(&mut self, now: i64) -> Option<Line> {
        let window = self.window.as_ref()?;
        if !window.due(now) {
            return None;
        }
        let line = (window.counts.total() > 0).then(|| Line::Summary {
            counts: window.counts,
            over_ms: now.saturating_sub(window.start),
        });
        self.window = None;
        line
    }

    /// Closes the window (the endpoint is back) and returns the failures not yet reported.
    pub(crate) fn close(&mut self) -> Counts {
        self.window.take().map(|w| w.counts).unwrap_or_default()
    }
}

/// What one call's bookkeeping asks to log, gathered under the endpoint's lock and emitted
/// after it is released.
#[derive(Debug, Default)]
pub(crate) struct Events {
    pub(crate) line: Option<Line>,
    pub(crate) transition: Option<Transition>,
    /// With a transition to `Closed`: the failures not reported before.
    pub(crate) unreported: Counts,
    /// The breaker's state after the call.
    pub(crate) state: Option<BreakerState>,
}

/// Emits the tracing events for `events` of `endpoint` at `now` (ms).
pub(crate) fn emit(endpoint: AsEndpoint, now: i64, events: &Events) {
    let name = endpoint.as_str();
    let state = events.state.map_or("closed", BreakerState::as_str);
    match events.line {
        Some(Line::First(cause)) => tracing::warn!(
            uma.as.endpoint = name,
            error = %cause.describe(),
            uma.as.breaker = state,
            "authorization server {name} call failed: {}; further failures are summarised every {} s",
            cause.describe(),
            SUMMARY_INTERVAL.as_secs(),
        ),
        Some(Line::Summary { counts, over_ms }) => {
            let [
                unreachable,
                timeout,
                status,
                unparsable,
                shed,
                short_circuited,
            ] = counts.0;
            tracing::warn!(
                uma.as.endpoint = name,
                uma.as.breaker = state,
                failed = counts.total(),
                unreachable,
                timeout,
                status,
                unparsable,
                shed,
                short_circuited,
                "authorization server {name}: {} calls failed or were not made in the last {} s",
                counts.total(),
                over_ms / 1_000,
            );
        }
        None => {}
    }
    let Some(t) = events.transition else { return };
    match (t.from, t.to) {
        (BreakerState::Closed, BreakerState::Open) => tracing::warn!(
            uma.as.endpoint = name,
            uma.as.breaker = "open",
            failures = t.failures,
            open_for_ms = millis(t.open_for),
            "authorization server {name} is down after {} consecutive failures: its calls are \
             refused at once for {} ms, then one probe tests it (the wait doubles while probes fail)",
            t.failures,
            millis(t.open_for),
        ),
        (_, BreakerState::Closed) => tracing::info!(
            uma.as.endpoint = name,
            uma.as.breaker = "closed",
            down_for_ms = now.saturating_sub(t.down_since),
            failed = events.unreported.total(),
            "authorization server {name} is back after {} s down",
            now.saturating_sub(t.down_since) / 1_000,
        ),
        (from, to) => tracing::debug!(
            uma.as.endpoint = name,
            from = from.as_str(),
            to = to.as_str(),
            open_for_ms = millis(t.open_for),
            "authorization server {name}: circuit {} -> {}",
            from.as_str(),
            to.as_str(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: i64 = 1_000;

    #[test]
    fn the_first_failure_is_logged_then_one_summary_per_interval() {
        let mut r = Report::default();
        assert_eq!(
            r.failure(0, Cause::Unreachable),
            Some(Line::First(Cause::Unreachable))
        );
        for at in 1..30 {
            assert_eq!(r.failure(at * SECOND, Cause::Unreachable), None);
            assert_eq!(r.failure(at * SECOND + 1, Cause::ShortCircuited), None);
        }
        let Some(Line::Summary { counts, over_ms }) = r.failure(30 * SECOND, Cause::Timeout) else {
            panic!("a summary after 30 s");
        };
        assert_eq!(over_ms, 30 * SECOND);
        assert_eq!(counts.of(Cause::Unreachable), 29);
        assert_eq!(counts.of(Cause::ShortCircuited), 29);
        assert_eq!(counts.of(Cause::Timeout), 1);
        assert_eq!(counts.total(), 59);
        // The next window starts at that line.
        assert_eq!(r.failure(59 * SECOND, Cause::Status(503)), None);
        let Some(Line::Summary { counts, .. }) = r.failure(60 * SECOND, Cause::Status(502)) else {
            panic!("a summary after another 30 s");
        };
        assert_eq!(counts.of(Cause::Status(0)), 2);
    }

    #[test]
    fn successes_do_not_reset_the_window_until_it_is_due() {
        let mut r = Report::default();
        assert!(matches!(r.failure(0, Cause::Timeout), Some(Line::First(_))));
        // Failures and successes alternating: never a second "first failure" within 30 s.
        for at in 1..30 {
            assert_eq!(r.success(at * SECOND), None);
            assert_eq!(r.failure(at * SECOND, Cause::Timeout), None);
        }
        let Some(Line::Summary { counts, .. }) = r.success(31 * SECOND) else {
            panic!("the unreported failures are summarised");
        };
        assert_eq!(counts.total(), 29);
        // The window is closed: the next failure is a first failure again.
        assert_eq!(
            r.failure(32 * SECOND, Cause::Shed),
            Some(Line::First(Cause::Shed))
        );
    }

    #[test]
    fn a_quiet_interval_makes_the_next_failure_a_first_failure() {
        let mut r = Report::default();
        assert!(r.failure(0, Cause::Timeout).is_some());
        assert_eq!(
            r.failure(40 * SECOND, Cause::Unreachable),
            Some(Line::First(Cause::Unreachable))
        );
        // A success after a quiet, due window closes it without a line.
        assert_eq!(r.success(80 * SECOND), None);
        assert!(matches!(
            r.failure(81 * SECOND, Cause::Timeout),
            Some(Line::First(_))
        ));
    }

    #[test]
    fn closing_returns_what_was_not_reported() {
        let mut r = Report::default();
        assert_eq!(r.close(), Counts::default());
        r.failure(0, Cause::Unreachable);
        r.failure(1, Cause::ShortCircuited);
        r.failure(2, Cause::ShortCircuited);
        let left = r.close();
        assert_eq!(left.total(), 2);
        assert!(matches!(r.failure(3, Cause::Timeout), Some(Line::First(_))));
    }

    #[test]
    fn transient_causes() {
        for c in [
            Cause::Unreachable,
            Cause::Timeout,
            Cause::Unparsable,
            Cause::Status(500),
            Cause::Status(503),
            Cause::Status(429),
        ] {
            assert!(c.is_transient(), "{c:?}");
        }
        for c in [
            Cause::Status(400),
            Cause::Status(401),
            Cause::Status(404),
            Cause::Shed,
            Cause::ShortCircuited,
        ] {
            assert!(!c.is_transient(), "{c:?}");
        }
    }
}
