//! When the authorization server forgets a resource (issue 13): `uma-test-as` restarted on the
//! same port with empty state, or told to forget its resources, answers ticket requests for
//! the old ids with `400 invalid_resource_id` (FedAuthz §4.3). The layer registers the
//! resource again (declared) or looks its name up again, at most once per interval and once
//! for concurrent requests, asks the ticket again, logs the AS's answer once, and lists the
//! resource in `as_health()` while that fails.

use std::time::Duration;

use crate::common::*;
use http::{Method, StatusCode};
use tower_uma::{ResourceMap, Route};
use uma_test_as::Endpoint;

/// The AS restarts on the same port with nothing registered: the next request is challenged
/// with a ticket the new AS honours, and bob's RPT for the new id is accepted. (What is logged:
/// tests/resync_logs.rs.)
#[tokio::test]
async fn a_restarted_as_gets_the_declared_resource_back() {
    let first = start_as().await;
    let layer = album_layer(&first, |b| b).await;
    let old_id = layer.resource_id("album").expect("registered at build");
    assert_eq!(first.resource_id("album").as_deref(), Some(old_id.as_str()));
    let (url, calls) = protected(layer.clone()).await;
    let http = http();
    let resp = get_plain(&http, &url, "/albums/1").await;
    expect_challenge(&resp, &first);

    // Restart: same address, empty state (and the layer's PAT unknown to the new AS).
    let addr = first.addr();
    first.shutdown().await;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .expect("same port");
    let second = as_builder().spawn_on(listener).await.expect("restarts");
    assert_eq!(second.resource_id("album"), None);

    let resp = get_plain(&http, &url, "/albums/1").await;
    let ticket = expect_challenge(&resp, &second);
    let new_id = layer.resource_id("album").expect("still known");
    assert_ne!(new_id, old_id);
    assert_eq!(
        second.resource_id("album").as_deref(),
        Some(new_id.as_str())
    );
    assert_eq!(registrations(&second), 1);
    assert!(layer.as_health().resources_known());

    // bob walks the grant at the new AS with that ticket; his RPT opens the album.
    let client = UmaClient::new(&second);
    let id_token = client.id_token("bob", BOB_PW).await;
    let (status, answer) = client.rpt(&ticket, Some(&id_token)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let rpt = answer["access_token"].as_str().expect("an RPT");
    let resp = get_with(&http, &url, "/albums/1", rpt).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(calls.get(), 1);

    // More requests: no more recovery, no more log lines.
    for _ in 0..3 {
        let resp = get_plain(&http, &url, "/albums/2").await;
        expect_challenge(&resp, &second);
    }
    assert_eq!(registrations(&second), 1);
}

/// Concurrent requests share one registration; within the interval a second forgetting is
/// not retried (403 + Warning, the resource listed in `as_health()`).
#[tokio::test]
async fn one_attempt_per_interval_shared_by_concurrent_requests() {
    let as_ = start_as().await;
    let layer = album_layer(&as_, |b| {
        b.resource_resync_interval(Duration::from_secs(600))
    })
    .await;
    let old_id = layer.resource_id("album").expect("registered");
    let (url, _) = protected(layer.clone()).await;
    let http = http();
    assert_eq!(registrations(&as_), 1);

    assert_eq!(as_.forget_resources(), 1);
    let requests = (0..8).map(|i| {
        let (http, url) = (http.clone(), url.clone());
        async move { get_plain(&http, &url, &format!("/albums/{i}")).await }
    });
    for resp in futures_util::future::join_all(requests).await {
        expect_challenge(&resp, &as_);
    }
    assert_eq!(
        registrations(&as_),
        2,
        "one registration for eight requests"
    );
    let new_id = layer.resource_id("album").expect("known");
    assert_ne!(new_id, old_id);

    // Forgotten again at once: the interval has not passed, so no attempt.
    as_.forget_resources();
    let resp = get_plain(&http, &url, "/albums/1").await;
    expect_unreachable(&resp);
    assert_eq!(registrations(&as_), 2);
    let health = layer.as_health();
    assert!(!health.resources_known());
    let unknown = &health.unknown_resources()[0];
    assert_eq!(unknown.name(), Some("album"));
    assert_eq!(unknown.id(), new_id);
    assert!(unknown.reason().contains("invalid_resource_id"), "{health}");
    assert!(
        health
            .to_string()
            .contains("resource \"album\" unknown id="),
        "{health}"
    );
}

/// While registering again fails, the resource is listed in `as_health()` and a background
/// task retries; once the AS takes registrations again the resource is back without any
/// request, and the next request is challenged.
#[tokio::test]
async fn health_lists_the_resource_until_it_is_registered_again() {
    let as_ = start_as().await;
    let layer = album_layer(&as_, |b| {
        b.resource_resync_interval(Duration::from_millis(100))
    })
    .await;
    let (url, _) = protected(layer.clone()).await;
    let http = http();

    as_.forget_resources();
    as_.set_down(Endpoint::ResourceRegistration, true);
    let resp = get_plain(&http, &url, "/albums/1").await;
    expect_unreachable(&resp);
    let health = layer.as_health();
    let unknown = health.unknown_resources();
    assert_eq!(unknown.len(), 1, "{health}");
    assert!(
        unknown[0].reason().contains("could not register it again"),
        "{health}"
    );
    // The background task keeps trying (no request needed).
    let tried = registrations(&as_);
    eventually("a background attempt", || registrations(&as_) > tried).await;
    assert!(!layer.as_health().resources_known());

    as_.set_down(Endpoint::ResourceRegistration, false);
    eventually("the resource registered again", || {
        layer.as_health().resources_known()
    })
    .await;
    assert!(as_.resource_id("album").is_some());
    let resp = get_plain(&http, &url, "/albums/1").await;
    expect_challenge(&resp, &as_);
}

/// A resource the layer only names (alice registered it) is looked up again by name when the
/// AS no longer knows its id, and the ticket is asked for the id it has now.
#[tokio::test]
async fn a_named_resource_is_looked_up_again() {
    let as_ = start_as().await;
    let old_id = register_invoice(&as_);
    let map = ResourceMap::new().route(
        Route::new("/invoices/{id}")
            .resource_name("invoice")
            .scopes(Method::GET, ["read"]),
    );
    let layer = discover(&as_)
        .await
        .resources(map)
        .resource_resync_interval(Duration::from_millis(50))
        .build()
        .await
        .expect("builds");
    let (url, _) = protected(layer.clone()).await;
    let http = http();
    let resp = get_plain(&http, &url, "/invoices/1").await;
    expect_challenge(&resp, &as_);
    assert_eq!(layer.resource_id("invoice"), Some(old_id.clone()));

    // Deleted and made again by its owner: a new id.
    as_.forget_resources();
    let new_id = register_invoice(&as_);
    let resp = get_plain(&http, &url, "/invoices/1").await;
    expect_challenge(&resp, &as_);
    assert_eq!(layer.resource_id("invoice"), Some(new_id.clone()));
    let asked = permission_bodies(&as_);
    assert_eq!(
        asked.last().expect("asked")[0]["resource_id"],
        new_id.as_str()
    );
    assert_eq!(registrations(&as_), 0, "nothing registered by the layer");

    // Gone for good: the request refused, the resource listed as unknown, and why.
    as_.forget_resources();
    let resp = get_plain(&http, &url, "/invoices/1").await;
    expect_unreachable(&resp);
    eventually("the lookup's answer in as_health()", || {
        layer
            .as_health()
            .unknown_resources()
            .first()
            .is_some_and(|u| {
                u.reason()
                    .contains("could not find it again: the AS lists no resource named \"invoice\"")
            })
    })
    .await;
}

/// A route that names its resource by id cannot be recovered: refused, reported, nothing
/// registered.
#[tokio::test]
async fn a_resource_named_by_id_is_reported_not_registered() {
    let as_ = start_as().await;
    let id = register_invoice(&as_);
    let layer = invoice_layer(&as_, Flavor::Standard, &id, |b| b).await;
    let (url, _) = protected(layer.clone()).await;
    let http = http();
    as_.forget_resources();
    let resp = get_plain(&http, &url, "/invoices/1").await;
    expect_unreachable(&resp);
    let health = layer.as_health();
    let unknown = &health.unknown_resources()[0];
    assert_eq!((unknown.name(), unknown.id()), (None, id.as_str()));
    assert!(unknown.reason().contains("by id"), "{health}");
    assert_eq!(registrations(&as_), 0);
}
