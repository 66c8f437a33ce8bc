//! Item 7 of "The suite against real Keycloak": Keycloak stopped mid-run and started again,
//! through `UmaLayer` and through the `uma-proxy` binary at once. The test stops and starts
//! the Keycloak of `keycloak.sh`, so `test.sh` runs it alone, after the other tests.

#![allow(
    clippy::unwrap_used,
    reason = "tests against a live server: a failure is a test failure"
)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::proxy::{Proxy, config, upstream};
use common::*;
use http::{Method, StatusCode};
use serde_json::json;
use tower_uma::{IntrospectionCache, ResourceMap, Route};

fn keycloak_sh(arg: &str) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/keycloak.sh");
    let out = Command::new("bash")
        .arg(script)
        .arg(arg)
        .output()
        .expect("keycloak.sh runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "keycloak.sh {arg} failed:\n{text}");
    text
}

/// Polls `check` until it holds, for at most `within`.
async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Keycloak stops: requests that need it get `403` + `Warning` at once, cached RPTs are still
/// served (a fresh entry under `max_ttl`; with `stale_if_error` also past it). Keycloak starts
/// again: both recover without a restart, and a new
/// RPT goes through.
#[tokio::test]
async fn keycloak_stopped_mid_run_and_back() {
    require_keycloak().await;
    let status = keycloak_sh("status");
    assert!(
        status.contains("running (pid"),
        "this test stops and starts Keycloak, so it must have been started by keycloak.sh: {status}"
    );
    let pat = pat_of(RS_ID, RS_SECRET).await;
    let id = register(
        &pat,
        json!({"name": unique("album-outage"), "resource_scopes": ["view", "delete"]}),
    )
    .await;
    // The layer: cached results live 2 s, and may be served 10 minutes past that when the AS
    // fails (stale-if-error).
    let layer = discover(RS_ID, RS_SECRET)
        .await
        .cache(
            IntrospectionCache::builder()
                .max_ttl(Duration::from_secs(2))
                .stale_if_error(Duration::from_secs(600))
                .build(),
        )
        .request_timeout(Duration::from_secs(2))
        .resources(
            ResourceMap::new().route(
                Route::new("/albums/{id}")
                    .resource_id(&id)
                    .scopes(Method::GET, ["view"])
                    .scopes(Method::DELETE, ["delete"]),
            ),
        )
        .build()
        .await
        .unwrap();
    let app = format!("{}/albums/{id}", protected(layer).await);
    // The proxy, with its defaults (max_ttl 60 s, no stale-if-error).
    let name = unique("album-outage-proxy");
    let proxy = Proxy::start(&config(RS_ID, &upstream().await, &name, "", ""), RS_SECRET).await;
    let via_proxy = proxy.url("/albums/1");

    let rpt_app = rpt("bob", &ticket_of(&get(&app, Method::GET, None).await)).await;
    let rpt_proxy = rpt("bob", &ticket_of(&get(&via_proxy, Method::GET, None).await)).await;
    assert_eq!(
        get(&app, Method::GET, Some(&rpt_app)).await.status(),
        StatusCode::OK
    );
    let ok = answer(get(&via_proxy, Method::GET, Some(&rpt_proxy)).await).await;
    assert_eq!(ok.status, StatusCode::OK);
    let perms: serde_json::Value =
        serde_json::from_str(ok.body["permissions"].as_str().unwrap()).unwrap();
    let proxy_resource = perms[0]["resource_id"].as_str().unwrap().to_owned();

    let stopped_at = Instant::now();
    keycloak_sh("stop");
    eprintln!("Keycloak stopped in {:?}", stopped_at.elapsed());
    assert!(
        http()
            .get(format!("{ISSUER}/.well-known/uma2-configuration"))
            .send()
            .await
            .is_err()
    );

    // Requests that need Keycloak: 403 + Warning.
    for url in [&app, &via_proxy] {
        let r = get(url, Method::GET, None).await;
        assert_unreachable(r.status(), r.headers());
        let r = get(url, Method::GET, Some("an-uncached-token")).await;
        assert_unreachable(r.status(), r.headers());
    }
    // Cached RPTs: the proxy's entry is fresh; the layer's expires after 2 s and is then
    // served stale, since Keycloak cannot answer.
    assert_eq!(
        get(&via_proxy, Method::GET, Some(&rpt_proxy))
            .await
            .status(),
        StatusCode::OK
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        get(&app, Method::GET, Some(&rpt_app)).await.status(),
        StatusCode::OK,
        "stale-if-error serves the expired entry"
    );

    let started_at = Instant::now();
    keycloak_sh("start");
    eprintln!("Keycloak back in {:?}", started_at.elapsed());

    // Recovery without restarting the layer or the proxy: within the breakers' longest wait
    // (5 s by default), a request without an RPT gets a ticket again.
    for url in [&app, &via_proxy] {
        eventually(Duration::from_secs(30), "a ticket again", || async {
            get(url, Method::GET, None).await.status() == StatusCode::UNAUTHORIZED
        })
        .await;
    }
    let fresh = rpt("bob", &ticket_of(&get(&app, Method::GET, None).await)).await;
    assert_eq!(
        get(&app, Method::GET, Some(&fresh)).await.status(),
        StatusCode::OK
    );
    let fresh = rpt("bob", &ticket_of(&get(&via_proxy, Method::GET, None).await)).await;
    assert_eq!(
        get(&via_proxy, Method::GET, Some(&fresh)).await.status(),
        StatusCode::OK
    );
    unregister(&pat, &id).await;
    unregister(&pat, &proxy_resource).await;
}
