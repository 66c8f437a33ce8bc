//! Waiting for the authorization server at start-up (`StartRetry`, issue 13): a layer whose AS
//! is not listening yet keeps trying discovery, then the PAT and the resource sync, and is
//! built once the AS is up; a permanent refusal (a wrong client secret) ends the wait at once.

use std::time::{Duration, Instant};

use crate::common::*;
use tokio::sync::mpsc;
use tower_uma::{UmaLayer, start::StartRetry};
use uma_test_as::Endpoint;

/// A policy with short delays that reports each retry's phase on `tx`.
fn reporting(tx: mpsc::UnboundedSender<(&'static str, u32, bool)>) -> StartRetry {
    StartRetry::new(Duration::from_secs(30))
        .delays(Duration::from_millis(20), Duration::from_millis(200))
        .on_retry(move |a| {
            let _ = tx.send((a.phase(), a.attempt(), a.error().is_transient()));
        })
}

#[tokio::test]
async fn the_layer_waits_for_an_as_that_starts_later() {
    // A free port, closed again: the AS binds it only once the layer has failed to reach it.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let (tx, mut rx) = mpsc::unbounded_channel();
    let building = tokio::spawn(async move {
        UmaLayer::discover(format!("http://{addr}"), RS_ID, RS_SECRET)
            .insecure_allow_http()
            .start_retry(reporting(tx))
            .resources(album_map())
            .build()
            .await
    });

    // Discovery fails (nothing listens), and is retried.
    assert_eq!(rx.recv().await, Some(("discovery", 1, true)));
    let listener = tokio::net::TcpListener::bind(addr).await.expect("the port");
    let as_ = as_builder()
        .spawn_on(listener)
        .await
        .expect("the AS starts");
    // The token endpoint is not ready yet: the build (PAT, sync) is retried too.
    as_.set_down(Endpoint::Token, true);
    let build_retry = loop {
        match rx.recv().await {
            Some(("discovery", _, _)) => {}
            other => break other,
        }
    };
    assert_eq!(build_retry, Some(("build", 1, true)));
    as_.set_down(Endpoint::Token, false);

    let layer = building.await.expect("the task").expect("the layer builds");
    assert_eq!(layer.resource_id("album"), as_.resource_id("album"));
    assert!(layer.resource_id("album").is_some());
    assert!(layer.as_health().all_closed());
}

#[tokio::test]
async fn a_wrong_secret_fails_at_once_without_waiting() {
    let as_ = start_as().await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let started = Instant::now();
    let e = UmaLayer::discover(as_.issuer(), RS_ID, "not-the-secret")
        .insecure_allow_http()
        .start_retry(reporting(tx))
        .resources(album_map())
        .build()
        .await
        .expect_err("a wrong secret");
    assert!(!e.is_transient(), "{e:#}");
    assert!(format!("{e:#}").contains("invalid_client"), "{e:#}");
    assert_eq!(as_.count(Endpoint::Token), 1, "one attempt");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(rx.try_recv().ok(), None, "no retry reported");
}
