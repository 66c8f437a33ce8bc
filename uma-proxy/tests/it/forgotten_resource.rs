//! The AS forgets the protected resource (issue 13): `/healthz` turns `503` with the reason
//! while registering it again fails, requests that need a ticket get `403` + `Warning`
//! meanwhile, the log names the AS's error, and once the AS takes registrations again the
//! proxy registers the resource in the background (no request needed), `/healthz` is `200`
//! again, the UMA flow works with the new id, and `/metrics` counts the attempts.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a failure is a test failure"
)]

use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use tower_uma::challenge::parse_uma_challenge;
use uma_test_as::Endpoint;

use crate::common::*;

const WARNING: &str = "199 - \"UMA Authorization Server Unreachable\"";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_is_503_while_the_resource_cannot_be_registered_again() {
    let as_ = start_as().await;
    let up = start_upstream().await;
    let text = config(&as_, &up.url(), "admin_listen = \"127.0.0.1:0\"").replace(
        "timeout = \"2s\"",
        "timeout = \"2s\"\nresource_resync_interval = \"200ms\"",
    );
    let mut proxy = Proxy::spawn(&text, &[], &[]);
    let admin = proxy.admin_addr().await;
    let addr = proxy.listening().await;
    let healthz_url = format!("http://{admin}/healthz");
    let healthz = || send(Method::GET, &healthz_url, &[]);
    let album_url = format!("http://{addr}/albums/1");
    let old_id = as_.resource_id("album").unwrap();
    assert_eq!(healthz().await.status, StatusCode::OK);

    // The AS loses its resources, and cannot register any for now.
    as_.forget_resources();
    as_.set_down(Endpoint::ResourceRegistration, true);
    let r = send(Method::GET, &album_url, &[]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", proxy.stderr());
    assert_eq!(r.headers[http::header::WARNING], WARNING);
    let health = healthz().await;
    let body = String::from_utf8_lossy(&health.body).into_owned();
    assert_eq!(health.status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body.starts_with(
            "not ready: the authorization server does not know 1 protected resource(s)"
        ),
        "{body}"
    );
    assert!(body.contains("\nauthorization_server degraded\n"), "{body}");
    assert!(
        body.contains(&format!("\nresource \"album\" unknown id={old_id} for_ms=")),
        "{body}"
    );
    assert!(body.contains("400 invalid_resource_id"), "{body}");
    let log = proxy
        .stderr_contains("does not know resource \"album\"")
        .await;
    let line = log
        .lines()
        .find(|l| l.contains("does not know resource \"album\""))
        .unwrap();
    assert!(
        line.contains("WARN") && line.contains("invalid_resource_id"),
        "{line}"
    );
    // Still 503 after more attempts in the background.
    let tried = as_.count(Endpoint::ResourceRegistration);
    let deadline = Instant::now() + Duration::from_secs(10);
    while as_.count(Endpoint::ResourceRegistration) < tried + 2 {
        assert!(Instant::now() < deadline, "no background attempt");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(healthz().await.status, StatusCode::SERVICE_UNAVAILABLE);

    // Registrations work again: /healthz turns 200 without any request to the proxy.
    as_.set_down(Endpoint::ResourceRegistration, false);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let health = healthz().await;
        if health.status == StatusCode::OK {
            let body = String::from_utf8_lossy(&health.body).into_owned();
            assert!(body.starts_with("ok\n"), "{body}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still not ready; stderr:\n{}",
            proxy.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let new_id = as_.resource_id("album").expect("registered again");
    assert_ne!(new_id, old_id);

    // The whole flow with the new id.
    let r = send(Method::GET, &album_url, &[]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let challenge = parse_uma_challenge(r.headers["www-authenticate"].to_str().unwrap()).unwrap();
    let id_token = bob_id_token(&as_).await;
    let rpt = rpt_for(&as_, &challenge.ticket, &id_token).await;
    let ok = send(
        Method::GET,
        &album_url,
        &[("authorization", &format!("Bearer {rpt}"))],
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(up.seen().len(), 1);

    let metrics = send(Method::GET, &format!("http://{admin}/metrics"), &[]).await;
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    assert!(
        text.contains(r#"uma_resource_resyncs_total{outcome="registered"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"uma_resource_resyncs_total{outcome="failed"}"#),
        "{text}"
    );
}
