//! The layer's protection of the authorization server and of itself, end to end against a
//! real `uma-test-as` with its fault knobs: the cap on AS calls in flight, the negative cache
//! on by default, and the circuit breaker per endpoint (time moved with a `FixedClock`, never
//! slept).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::*;
use http::StatusCode;
use tower_uma::{
    UmaLayer, UmaLayerBuilder,
    clock::{Clock, FixedClock},
    health::{AsEndpoint, BreakerState},
};
use uma_test_as::{Endpoint, TestAs};

/// Sends `n` requests at once, each with its own bearer token `{prefix}-{i}`; returns each
/// answer's status, whether it carried the unreachable `Warning`, and how long it took.
async fn burst(url: &str, prefix: &str, n: usize) -> Vec<(StatusCode, bool, Duration)> {
    let http = http();
    let requests = (0..n).map(|i| {
        let req = http
            .get(format!("{url}/invoices/42"))
            .bearer_auth(format!("{prefix}-{i}"));
        async move {
            let started = Instant::now();
            let resp = req.send().await.expect("the app answers");
            let warned = resp.headers().get(http::header::WARNING).is_some();
            (resp.status(), warned, started.elapsed())
        }
    });
    futures_util::future::join_all(requests).await
}

/// The answers that were refused as if the AS were unreachable (`403` + `Warning`).
fn refused(answers: &[(StatusCode, bool, Duration)]) -> usize {
    answers
        .iter()
        .filter(|(status, warned, _)| *status == StatusCode::FORBIDDEN && *warned)
        .count()
}

fn breaker(layer: &UmaLayer, endpoint: AsEndpoint) -> BreakerState {
    layer
        .as_health()
        .endpoint(endpoint)
        .expect("the layer calls it")
        .state()
}

/// A test AS with the invoice resource, and a layer for it on a clock of its own, which
/// already has its PAT (so that the requests of a test only cost introspections and tickets).
struct Env {
    as_: TestAs,
    r: String,
    clock: Arc<FixedClock>,
    layer: UmaLayer,
    url: String,
}

async fn env(configure: impl FnOnce(UmaLayerBuilder, &Arc<FixedClock>) -> UmaLayerBuilder) -> Env {
    let as_ = start_as().await;
    let r = register_invoice(&as_);
    let clock = Arc::new(FixedClock::new(now()));
    let layer = invoice_layer(&as_, Flavor::Standard, &r, |b| {
        configure(b.clock(Arc::clone(&clock) as Arc<dyn Clock>), &clock)
    })
    .await;
    let (url, _) = protected(layer.clone()).await;
    let resp = http()
        .get(format!("{url}/invoices/42"))
        .send()
        .await
        .expect("answer");
    expect_challenge(&resp, &as_);
    Env {
        as_,
        r,
        clock,
        layer,
        url,
    }
}

/// Junk tokens cost the AS an introspection each (and a ticket when inactive): beyond the
/// cap, requests are answered at once with `403` + `Warning` and the AS never sees more calls
/// in flight than the cap.
#[tokio::test]
async fn calls_beyond_the_cap_are_refused_at_once() {
    const CAP: usize = 4;
    const N: usize = 24;
    let Env {
        as_, layer, url, ..
    } = env(|b, _| {
        b.max_as_calls_in_flight(CAP)
            .request_timeout(Duration::from_secs(10))
    })
    .await;
    let introspections = as_.count(Endpoint::Introspection);
    let tickets = as_.count(Endpoint::Permission);
    let latency = Duration::from_secs(2);
    as_.set_latency(Endpoint::Introspection, latency);

    let answers = burst(&url, "junk", N).await;
    let shed: Vec<_> = answers
        .iter()
        .filter(|(status, warned, _)| *status == StatusCode::FORBIDDEN && *warned)
        .collect();
    assert_eq!(shed.len(), N - CAP, "{answers:?}");
    assert!(
        shed.iter().all(|(_, _, took)| *took < latency),
        "shed at once, without waiting for the AS: {answers:?}"
    );
    // The others were introspected (inactive) and challenged.
    let challenged = answers
        .iter()
        .filter(|(status, _, _)| *status == StatusCode::UNAUTHORIZED)
        .count();
    assert_eq!(challenged, CAP, "{answers:?}");
    assert_eq!(
        as_.count(Endpoint::Introspection) - introspections,
        CAP as u64
    );
    assert_eq!(as_.count(Endpoint::Permission) - tickets, CAP as u64);
    assert_eq!(layer.as_health().calls_in_flight(), 0);
    // Shedding says nothing about the AS: no circuit opened.
    assert!(layer.as_health().all_closed());
}

/// The negative cache is on by default: a junk token repeated within its lifetime costs one
/// introspection (each refusal still asks for a fresh ticket: tickets are never reused).
#[tokio::test]
async fn a_repeated_junk_token_is_introspected_once() {
    let Env { as_, url, .. } = env(|b, _| b).await;
    let (introspections, tickets) = (
        as_.count(Endpoint::Introspection),
        as_.count(Endpoint::Permission),
    );
    for _ in 0..3 {
        expect_challenge(
            &get_with(&http(), &url, "/invoices/42", "junk-again").await,
            &as_,
        );
    }
    assert_eq!(as_.count(Endpoint::Introspection) - introspections, 1);
    assert_eq!(as_.count(Endpoint::Permission) - tickets, 3);
}

/// The circuit breaker through an outage of the introspection endpoint: it opens after the
/// threshold, then the AS sees nothing but one probe per interval (which doubles while probes
/// fail), requests are refused at once, and the first request after the interval that
/// follows the AS's return is served.
#[tokio::test]
async fn the_breaker_opens_probes_and_closes() {
    let Env {
        as_,
        r,
        clock,
        layer,
        url,
    } = env(|b, clock| quick_breakers(b, clock, 3)).await;
    let count = || as_.count(Endpoint::Introspection);
    as_.set_down(Endpoint::Introspection, true);

    // Three failures in a row open the circuit.
    for i in 0..3 {
        assert_eq!(refused(&burst(&url, &format!("down-{i}"), 1).await), 1);
    }
    let calls = count();
    assert_eq!(
        breaker(&layer, AsEndpoint::Introspection),
        BreakerState::Open
    );
    // Open: refused at once, and the AS sees nothing.
    let answers = burst(&url, "open", 20).await;
    assert_eq!(refused(&answers), 20);
    assert_eq!(count(), calls);
    // Tokenless requests still get their challenge: the permission endpoint is fine.
    let resp = http()
        .get(format!("{url}/invoices/42"))
        .send()
        .await
        .expect("answer");
    expect_challenge(&resp, &as_);

    // The interval passes: one probe, which fails; the circuit reopens for 2 s.
    clock.advance(1);
    assert_eq!(refused(&burst(&url, "probe-1", 1).await), 1);
    assert_eq!(count(), calls + 1);
    assert_eq!(
        breaker(&layer, AsEndpoint::Introspection),
        BreakerState::Open
    );
    clock.advance(1);
    assert_eq!(refused(&burst(&url, "still-open", 10).await), 10);
    assert_eq!(count(), calls + 1);

    // The AS comes back; the circuit stays open until its interval has passed, then the
    // first request is the probe and is served.
    as_.set_down(Endpoint::Introspection, false);
    let rpt = rpt_for(&as_, &r, &["read"]);
    assert_eq!(refused(&burst(&url, "back-but-open", 5).await), 5);
    assert_eq!(count(), calls + 1);
    clock.advance(1);
    let resp = get_with(&http(), &url, "/invoices/42", &rpt).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(count(), calls + 2);
    assert_eq!(
        breaker(&layer, AsEndpoint::Introspection),
        BreakerState::Closed
    );
    let other = rpt_for(&as_, &r, &["read"]);
    let resp = get_with(&http(), &url, "/invoices/42", &other).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(count(), calls + 3);
}

/// An AS that hangs: the first requests wait for the timeout, but no more of them than the
/// cap reach the AS; once the timeouts open the circuit, every request is refused at once and
/// the AS sees no new call.
#[tokio::test]
async fn a_hanging_as_sees_at_most_the_cap_then_nothing() {
    const CAP: usize = 4;
    let timeout = Duration::from_millis(500);
    let Env {
        as_, layer, url, ..
    } = env(|b, _| {
        b.max_as_calls_in_flight(CAP)
            .breaker_failure_threshold(CAP as u32)
            .request_timeout(timeout)
    })
    .await;
    let calls = as_.count(Endpoint::Introspection);
    as_.set_latency(Endpoint::Introspection, Duration::from_secs(5));

    let answers = burst(&url, "hang", 20).await;
    assert_eq!(refused(&answers), 20, "{answers:?}");
    assert_eq!(as_.count(Endpoint::Introspection) - calls, CAP as u64);
    assert_eq!(
        breaker(&layer, AsEndpoint::Introspection),
        BreakerState::Open
    );

    let answers = burst(&url, "hang-more", 20).await;
    assert_eq!(refused(&answers), 20);
    assert!(
        answers.iter().all(|(_, _, took)| *took < timeout),
        "refused at once: {answers:?}"
    );
    assert_eq!(as_.count(Endpoint::Introspection) - calls, CAP as u64);
}

/// Unusable answers count as failures too: a permission endpoint that answers with tickets
/// that cannot be sent in a challenge opens its circuit like one that is down.
#[tokio::test]
async fn unusable_tickets_open_the_permission_circuit() {
    let Env {
        as_, layer, url, ..
    } = env(|b, clock| quick_breakers(b, clock, 3)).await;
    let tickets = as_.count(Endpoint::Permission);
    as_.respond_next(
        Endpoint::Permission,
        3,
        201,
        "application/json",
        r#"{"ticket":"tic\u007fket"}"#,
    );
    for _ in 0..3 {
        let resp = http()
            .get(format!("{url}/invoices/42"))
            .send()
            .await
            .expect("answer");
        expect_unreachable(&resp);
    }
    assert_eq!(breaker(&layer, AsEndpoint::Permission), BreakerState::Open);
    let resp = http()
        .get(format!("{url}/invoices/42"))
        .send()
        .await
        .expect("answer");
    expect_unreachable(&resp);
    assert_eq!(as_.count(Endpoint::Permission) - tickets, 3);
}
