//! Tests of the gate on a fake clock: the cap, the breaker's transitions as callers see them,
//! and its metrics. The logs are tested end to end in `tests/as_outage_logs.rs`, with a
//! subscriber of its own (a scoped one races with tracing's callsite cache when tests run in
//! parallel).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use super::*;
use crate::clock::FixedClock;
use crate::metrics::test_recorder::TestRecorder;

/// A clock in milliseconds that moves only when told to.
#[derive(Debug, Default)]
struct MillisClock(AtomicI64);

impl MillisClock {
    fn advance(&self, d: Duration) {
        self.0.fetch_add(breaker::millis(d), Ordering::SeqCst);
    }
}

impl Clock for MillisClock {
    fn now_unix(&self) -> i64 {
        self.now_unix_millis() / 1_000
    }

    fn now_unix_millis(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

const SETTINGS: GateSettings = GateSettings {
    max_in_flight: 3,
    breaker: BreakerSettings {
        threshold: 2,
        base: Duration::from_millis(500),
        max: Duration::from_secs(2),
    },
};

fn gate() -> (AsGate, Arc<MillisClock>) {
    let clock = Arc::new(MillisClock(AtomicI64::new(1_767_225_600_000)));
    let gate = AsGate::new(
        SETTINGS,
        Arc::clone(&clock) as Arc<dyn Clock>,
        &[AsEndpoint::Introspection, AsEndpoint::Permission],
    );
    (gate, clock)
}

/// Opens `endpoint`'s circuit with the threshold's transient failures.
fn open(gate: &AsGate, endpoint: AsEndpoint) {
    for _ in 0..SETTINGS.breaker.threshold {
        gate.admit(endpoint)
            .expect("closed")
            .finish(Outcome::Failed(Cause::Unreachable));
    }
    assert_eq!(state(gate, endpoint), BreakerState::Open);
}

fn state(gate: &AsGate, endpoint: AsEndpoint) -> BreakerState {
    gate.health().endpoint(endpoint).expect("used").state()
}

#[test]
fn calls_beyond_the_cap_are_refused_at_once_and_counted() {
    let rec = TestRecorder::default();
    metrics::with_local_recorder(&rec, || {
        let (gate, _) = gate();
        let held: Vec<Pass<'_>> = (0..3)
            .map(|i| {
                let endpoint = if i % 2 == 0 {
                    AsEndpoint::Introspection
                } else {
                    AsEndpoint::Permission
                };
                gate.admit(endpoint).expect("under the cap")
            })
            .collect();
        assert_eq!(gate.health().calls_in_flight(), 3);
        assert_eq!(rec.gauge(crate::metrics::AS_CALLS_IN_FLIGHT), Some(3.0));
        // The cap is for all endpoints together.
        assert_eq!(
            gate.admit(AsEndpoint::Introspection).err(),
            Some(Refusal::Shed)
        );
        assert_eq!(
            gate.admit(AsEndpoint::Permission).err(),
            Some(Refusal::Shed)
        );
        assert_eq!(
            rec.counter("uma_as_calls_shed_total{endpoint=introspection}"),
            1
        );
        assert_eq!(
            rec.counter("uma_as_calls_shed_total{endpoint=permission}"),
            1
        );
        // Shedding says nothing about the AS: the circuit stays closed.
        assert_eq!(
            state(&gate, AsEndpoint::Introspection),
            BreakerState::Closed
        );
        // A finished call (or a dropped one) frees its slot.
        let mut held = held.into_iter();
        held.next().expect("a pass").finish(Outcome::Answered);
        let again = gate.admit(AsEndpoint::Introspection).expect("a free slot");
        drop(held);
        assert_eq!(gate.health().calls_in_flight(), 1);
        drop(again);
        assert_eq!(gate.health().calls_in_flight(), 0);
        assert_eq!(rec.gauge(crate::metrics::AS_CALLS_IN_FLIGHT), Some(0.0));
        assert_eq!(gate.health().max_calls_in_flight(), 3);
    });
}

#[test]
fn every_transition_as_callers_see_it() {
    let rec = TestRecorder::default();
    metrics::with_local_recorder(&rec, || {
        let (gate, clock) = gate();
        let ep = AsEndpoint::Introspection;
        let gauge = || rec.gauge("uma_as_breaker_state{endpoint=introspection}");
        let to = |s: &str| {
            rec.counter(&format!(
                "uma_as_breaker_transitions_total{{endpoint=introspection,to={s}}}"
            ))
        };
        assert_eq!(gauge(), Some(0.0));
        // Closed: a non-transient failure (a 400) shows the endpoint is up.
        gate.admit(ep)
            .expect("closed")
            .finish(Outcome::Failed(Cause::Unreachable));
        gate.admit(ep)
            .expect("closed")
            .finish(Outcome::Failed(Cause::Status(400)));
        assert_eq!(
            gate.health().endpoint(ep).map(|e| e.consecutive_failures()),
            Some(0)
        );
        // Closed -> Open after the threshold.
        open(&gate, ep);
        assert_eq!((gauge(), to("open")), (Some(2.0), 1));
        let opened_at = clock.now_unix_millis();
        let health = gate.health();
        let e = health.endpoint(ep).expect("used");
        assert_eq!(
            (e.state(), e.consecutive_failures(), e.since_unix_millis()),
            (BreakerState::Open, 2, opened_at)
        );
        assert!(!health.all_closed());
        // Open: refused at once, before and at admission, and counted.
        assert_eq!(gate.check(ep), Err(Refusal::Open));
        assert_eq!(gate.admit(ep).err(), Some(Refusal::Open));
        assert_eq!(
            rec.counter("uma_as_calls_short_circuited_total{endpoint=introspection}"),
            2
        );
        // Other endpoints are not affected.
        assert_eq!(gate.check(AsEndpoint::Permission), Ok(()));
        // Open -> HalfOpen once the interval has passed: one probe only.
        clock.advance(Duration::from_millis(499));
        assert_eq!(gate.check(ep), Err(Refusal::Open));
        clock.advance(Duration::from_millis(1));
        assert_eq!(gate.check(ep), Ok(()));
        let probe = gate.admit(ep).expect("the probe");
        assert_eq!((gauge(), to("half_open")), (Some(1.0), 1));
        assert_eq!(gate.check(ep), Err(Refusal::Open));
        assert_eq!(gate.admit(ep).err(), Some(Refusal::Open));
        // HalfOpen -> Open, for twice as long, when the probe fails.
        probe.finish(Outcome::Failed(Cause::Timeout));
        assert_eq!((gauge(), to("open")), (Some(2.0), 2));
        clock.advance(Duration::from_millis(999));
        assert_eq!(gate.admit(ep).err(), Some(Refusal::Open));
        clock.advance(Duration::from_millis(1));
        // A probe that ends without an outcome (its request went away) hands the probe on.
        drop(gate.admit(ep).expect("a probe"));
        assert_eq!(state(&gate, ep), BreakerState::HalfOpen);
        // HalfOpen -> Closed when the probe succeeds.
        gate.admit(ep)
            .expect("the next probe")
            .finish(Outcome::Answered);
        assert_eq!((gauge(), to("closed")), (Some(0.0), 1));
        assert!(gate.health().all_closed());
        assert_eq!(gate.admit(ep).map(|_| ()), Ok(()));
    });
}

#[test]
fn a_probe_refused_by_the_cap_leaves_the_probe_to_the_next_call() {
    let (gate, clock) = gate();
    let ep = AsEndpoint::Introspection;
    open(&gate, ep);
    clock.advance(SETTINGS.breaker.base);
    let busy: Vec<Pass<'_>> = (0..3)
        .map(|_| gate.admit(AsEndpoint::Permission).expect("slot"))
        .collect();
    assert_eq!(gate.admit(ep).err(), Some(Refusal::Shed));
    drop(busy);
    gate.admit(ep).expect("the probe").finish(Outcome::Answered);
    assert_eq!(state(&gate, ep), BreakerState::Closed);
}

#[test]
fn health_lists_the_endpoints_in_use_and_displays_one_line_each() {
    let (gate, clock) = gate();
    open(&gate, AsEndpoint::Permission);
    clock.advance(Duration::from_millis(250));
    let health = gate.health();
    let names: Vec<_> = health.endpoints().iter().map(|e| e.endpoint()).collect();
    assert_eq!(names, [AsEndpoint::Introspection, AsEndpoint::Permission]);
    assert!(health.endpoint(AsEndpoint::Jwks).is_none());
    assert_eq!(
        health.to_string(),
        "introspection closed consecutive_failures=0 for_ms=250\n\
         permission open consecutive_failures=2 for_ms=250\n"
    );
    for e in AsEndpoint::ALL {
        assert!(AsGate::default().health().endpoint(e).is_some(), "{e}");
    }
}

#[test]
fn the_system_clock_and_a_fixed_clock_both_drive_the_breaker() {
    let fixed = Arc::new(FixedClock::new(1_767_225_600));
    let gate = AsGate::new(
        SETTINGS,
        Arc::clone(&fixed) as Arc<dyn Clock>,
        &[AsEndpoint::Token],
    );
    open(&gate, AsEndpoint::Token);
    assert_eq!(gate.check(AsEndpoint::Token), Err(Refusal::Open));
    fixed.advance(1);
    assert_eq!(gate.check(AsEndpoint::Token), Ok(()));
}
