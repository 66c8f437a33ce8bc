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
/// the last timer tick, read in a few nanoseconds instead of the tens that reading the precise
/// clock costs on virtual machines (once per request on the cache-hit path). That time lags
/// the precise clock by about one tick (its resolution, 1–10 ms by the kernel's `HZ`; a
/// little more when the tick runs late: up to 4.3 ms for a 4 ms tick on the project's VM), so
/// the reading is taken two ticks later. It is then never behind the precise clock's second
/// unless the kernel updates its coarse clock more than two ticks late, and at most two ticks
/// ahead: a token is never accepted after the second its `exp` names (it may be refused up to
/// two ticks before that second ends), and one minted on this host with `nbf` set to the
/// current second is not refused as not yet valid. Elsewhere, and for milliseconds, it is
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
        use rustix::time::{ClockId, clock_getres, clock_gettime};
        use std::sync::atomic::AtomicU32;
        /// The coarse clock's resolution in nanoseconds, once read (0: not yet).
        static TICK: AtomicU32 = AtomicU32::new(0);
        let tick = match TICK.load(Ordering::Relaxed) {
            0 => {
                let res = clock_getres(ClockId::RealtimeCoarse);
                // A tick longer than a second is not a coarse clock worth having: take a
                // second, which still keeps the reading from falling behind.
                let tick = u32::try_from(res.tv_nsec)
                    .ok()
                    .filter(|&n| res.tv_sec == 0 && n > 0 && n < NANOS)
                    .unwrap_or(NANOS);
                TICK.store(tick, Ordering::Relaxed);
                tick
            }
            tick => tick,
        };
        let now = clock_gettime(ClockId::RealtimeCoarse);
        later_by(now.tv_sec, now.tv_nsec, tick.saturating_mul(2).min(NANOS))
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

/// Nanoseconds in a second.
#[cfg(any(target_os = "linux", target_os = "android"))]
const NANOS: u32 = 1_000_000_000;

/// The whole seconds of the time `secs` + `nanos` plus `margin` (nanoseconds, at most a
/// second): the latest second the precise clock can be in when the coarse one reads that and
/// lags by at most `margin`.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn later_by(secs: i64, nanos: i64, margin: u32) -> i64 {
    let carry = nanos.saturating_add(i64::from(margin)) / i64::from(NANOS);
    secs.saturating_add(carry)
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

    /// The system clock's seconds are never behind the precise clock's, and at most one
    /// second ahead (just before a second ends), through a second boundary too, which the
    /// loop waits for (about a second of reads). A sample where the kernel updated its
    /// coarse clock very late (more than two ticks behind, a virtual CPU held up) proves
    /// nothing either way: those are counted apart, and must leave most samples usable. (On
    /// a loaded two-core VM, with CI's builds beside the tests, 7% of the samples were late;
    /// the 1,000 usable samples past the boundary are what makes the test bite.)
    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn system_seconds_never_fall_behind_the_precise_clock() {
        use rustix::time::{ClockId, clock_getres, clock_gettime};
        let nanos = |t: rustix::time::Timespec| {
            i128::from(t.tv_sec) * 1_000_000_000 + i128::from(t.tv_nsec)
        };
        let tick = nanos(clock_getres(ClockId::RealtimeCoarse));
        let precise = || clock_gettime(ClockId::Realtime);
        let start = precise().tv_sec;
        let (mut after_the_boundary, mut samples, mut late) = (0, 0, 0);
        while after_the_boundary < 1_000 {
            assert!(
                precise().tv_sec < start + 10,
                "{after_the_boundary} usable samples after the boundary in 10 s \
                 ({late} of {samples} samples late)"
            );
            let before = precise();
            let ours = SystemClock.now_unix();
            let coarse = clock_gettime(ClockId::RealtimeCoarse);
            let after = precise();
            samples += 1;
            if nanos(before) - nanos(coarse) > 2 * tick {
                late += 1;
                continue;
            }
            assert!(
                before.tv_sec <= ours && ours <= after.tv_sec + 1,
                "{before:?} {ours} {after:?}"
            );
            if before.tv_sec > start {
                after_the_boundary += 1;
            }
        }
        assert!(late * 2 <= samples, "{late} of {samples} samples late");
        let millis = SystemClock.now_unix_millis();
        assert!(
            (millis / 1_000 - SystemClock.now_unix()).abs() <= 1,
            "{millis}"
        );
    }

    /// The reading goes to the next second only when the margin crosses it.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn the_margin_crosses_a_second_only_at_its_end() {
        const MARGIN: u32 = 8_000_000;
        assert_eq!(later_by(100, 0, MARGIN), 100);
        assert_eq!(later_by(100, 991_999_999, MARGIN), 100);
        assert_eq!(later_by(100, 992_000_000, MARGIN), 101);
        assert_eq!(later_by(100, 999_999_999, MARGIN), 101);
        assert_eq!(later_by(100, 0, NANOS), 101);
        assert_eq!(later_by(i64::MAX, 999_999_999, MARGIN), i64::MAX);
    }
}
