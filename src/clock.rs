//! An injectable wall clock, so that time arithmetic (token `exp`/`nbf`, cache lifetimes) can
//! be tested as pure functions.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use tower_uma::clock::{Clock, FixedClock};
//!
//! let clock = FixedClock::new(1_767_225_600);
//! assert_eq!(clock.now_unix(), 1_767_225_600);
//! clock.advance(30);
//! assert_eq!(clock.now_unix(), 1_767_225_630);
//! assert_eq!(clock.now_unix_millis(), 1_767_225_630_000);
//! let _shared: Arc<dyn Clock> = Arc::new(clock);
//! ```

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of the current time in whole seconds since the Unix epoch, the unit of every
/// time claim in RFC 7662 and UMA.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// Seconds since the Unix epoch.
    fn now_unix(&self) -> i64;

    /// Milliseconds since the Unix epoch, for intervals shorter than a second (the circuit
    /// breaker's). Defaults to [`now_unix`](Self::now_unix) in milliseconds, so a clock that
    /// only knows whole seconds moves in steps of 1,000.
    fn now_unix_millis(&self) -> i64 {
        self.now_unix().saturating_mul(1_000)
    }
}

/// The system clock. Defaults everywhere.
///
/// Whole seconds ([`now_unix`](Clock::now_unix), every token time and cache lifetime) come,
/// on Linux, from the kernel's coarse real-time clock (`CLOCK_REALTIME_COARSE`): the time of
/// the last timer tick, read from the vDSO in a few nanoseconds instead of the tens that
/// reading the precise clock costs on virtual machines (once per request on the cache-hit
/// path). It lags the precise clock by at most one tick (1–10 ms, by the kernel's `HZ`),
/// far below the one-second resolution of `exp`, `nbf` and `iat` (RFC 7519 §2, "NumericDate")
/// and below the skew between an authorization server's clock and this host's, which the
/// [leeway](crate::UmaLayerBuilder::leeway) is for. Elsewhere, and for milliseconds, it is
/// [`SystemTime`].
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct SystemClock;

impl SystemClock {
    /// One process-wide instance, so that the defaults allocate nothing.
    pub(crate) fn shared() -> Arc<dyn Clock> {
        static SHARED: OnceLock<Arc<dyn Clock>> = OnceLock::new();
        Arc::clone(SHARED.get_or_init(|| Arc::new(Self)))
    }
}

impl Clock for SystemClock {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn now_unix(&self) -> i64 {
        rustix::time::clock_gettime(rustix::time::ClockId::RealtimeCoarse).tv_sec
    }

    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    fn now_unix(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
    }

    fn now_unix_millis(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }
}

/// A clock that stands still until it is moved; for tests.
#[derive(Debug, Default)]
pub struct FixedClock(AtomicI64);

impl FixedClock {
    /// A clock reading `now` seconds since the epoch.
    #[must_use]
    pub fn new(now: i64) -> Self {
        Self(AtomicI64::new(now))
    }

    /// Moves the clock by `secs` (which may be negative).
    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }

    /// Sets the clock to `now`.
    pub fn set(&self, now: i64) {
        self.0.store(now, Ordering::SeqCst);
    }
}

impl Clock for FixedClock {
    fn now_unix(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The system clock's seconds are the precise clock's, or, just after a second begins,
    /// the one before (the coarse clock lags by at most one tick).
    #[test]
    fn system_seconds_follow_the_precise_clock() {
        let precise = || {
            let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
            i64::try_from(d.as_secs()).unwrap()
        };
        for _ in 0..1_000 {
            let before = precise();
            let ours = SystemClock.now_unix();
            let after = precise();
            assert!(
                before - 1 <= ours && ours <= after,
                "{before} {ours} {after}"
            );
        }
        let millis = SystemClock.now_unix_millis();
        assert!(
            (millis / 1_000 - SystemClock.now_unix()).abs() <= 1,
            "{millis}"
        );
    }
}
