//! The proxy through an outage of the AS's introspection endpoint, with the circuit breaker's
//! keys of `[authorization_server]`: requests are refused at once without reaching the AS,
//! `/healthz` (still `200`) and `/metrics` show the open circuit, and the first request after
//! the interval that follows the AS's return is served.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a failure is a test failure"
)]

use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use uma_test_as::{Endpoint, RptSpec};

use crate::common::*;

const WARNING: &str = "199 - \"UMA Authorization Server Unreachable\"";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_shows_on_healthz_and_metrics_and_recovers() {
    let as_ = start_as().await;
    let up = start_upstream().await;
    let text = config(&as_, &up.url(), "admin_listen = \"127.0.0.1:0\"").replace(
        "timeout = \"2s\"",
        "timeout = \"2s\"\nmax_calls_in_flight = 16\nbreaker_failure_threshold = 2\n\
         breaker_open_interval = \"2s\"\nbreaker_max_open_interval = \"2s\"",
    );
    let mut proxy = Proxy::spawn(&text, &[], &[]);
    let admin = proxy.admin_addr().await;
    let addr = proxy.listening().await;
    let healthz_url = format!("http://{admin}/healthz");
    let healthz = || send(Method::GET, &healthz_url, &[]);
    let album = |token: String| {
        let auth = format!("Bearer {token}");
        async move {
            send(
                Method::GET,
                &format!("http://{addr}/albums/1"),
                &[("authorization", &auth)],
            )
            .await
        }
    };

    let health = healthz().await;
    assert_eq!(health.status, StatusCode::OK);
    let body = String::from_utf8_lossy(&health.body).into_owned();
    assert!(body.starts_with("ok\nauthorization_server ok\n"), "{body}");
    assert!(
        body.contains("\nintrospection closed consecutive_failures=0 "),
        "{body}"
    );

    as_.set_down(Endpoint::Introspection, true);
    for i in 0..2 {
        let r = album(format!("junk-{i}")).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
    }
    let calls = as_.count(Endpoint::Introspection);
    let started = Instant::now();
    for i in 0..10 {
        let r = album(format!("open-{i}")).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert_eq!(r.headers[http::header::WARNING], WARNING);
    }
    // Within the open interval, the AS saw none of them.
    assert!(started.elapsed() < Duration::from_secs(2), "a slow machine");
    assert_eq!(as_.count(Endpoint::Introspection), calls);

    let health = healthz().await;
    assert_eq!(health.status, StatusCode::OK, "cached decisions still work");
    let body = String::from_utf8_lossy(&health.body).into_owned();
    assert!(
        body.starts_with("ok\nauthorization_server degraded\n"),
        "{body}"
    );
    assert!(
        body.contains("\nintrospection open consecutive_failures=2 "),
        "{body}"
    );
    assert!(
        body.contains("\npermission closed consecutive_failures=0 "),
        "{body}"
    );
    let metrics = send(Method::GET, &format!("http://{admin}/metrics"), &[]).await;
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    for series in [
        r#"uma_as_breaker_state{endpoint="introspection"} 2"#,
        r#"uma_as_breaker_state{endpoint="permission"} 0"#,
        r#"uma_as_calls_short_circuited_total{endpoint="introspection"} 10"#,
        r#"uma_as_breaker_transitions_total{endpoint="introspection",to="open"} 1"#,
    ] {
        assert!(text.contains(series), "{series} not in:\n{text}");
    }

    // The AS is back: requests are refused until the interval has passed, then the first
    // one probes and is served.
    as_.set_down(Endpoint::Introspection, false);
    let album_id = as_.resource_id("album").unwrap();
    let deadline = Instant::now() + SOON;
    let served = loop {
        let rpt = as_.mint_rpt(RptSpec::active_for(&album_id, ["view"], 300));
        let r = album(rpt).await;
        if r.status == StatusCode::OK {
            break Instant::now();
        }
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert!(Instant::now() < deadline, "never served again");
        // Real time: the breaker runs in the proxy's own process, on its system clock.
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(served.duration_since(started) < Duration::from_secs(2) + SOON);
    let body = String::from_utf8_lossy(&healthz().await.body).into_owned();
    assert!(body.starts_with("ok\nauthorization_server ok\n"), "{body}");
    // Two failures, one probe that succeeded.
    assert_eq!(as_.count(Endpoint::Introspection), calls + 1);
    let stderr = proxy.stderr();
    assert!(
        stderr.contains("authorization server introspection is back after"),
        "{stderr}"
    );
}
