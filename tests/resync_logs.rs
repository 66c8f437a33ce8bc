//! What the recovery of a forgotten resource writes to the logs, captured at INFO through a
//! real layer and `uma-test-as`: the AS's answer (code and description) once per episode at
//! WARN, a failed attempt once per episode at WARN, each recovery once at INFO, and nothing
//! per request; the gate does not report the AS's `invalid_resource_id` as a failure of the
//! permission endpoint. Its own binary: the subscriber is global.

mod common;

use std::time::Duration;

use common::*;
use uma_test_as::Endpoint;

#[tokio::test]
async fn a_forgotten_resource_is_logged_once_per_episode() {
    let capture = Capture::global_info();
    let lines = || capture.layer_lines();

    let as_ = start_as().await;
    let layer = album_layer(&as_, |b| {
        b.resource_resync_interval(Duration::from_millis(50))
    })
    .await;
    let old_id = layer.resource_id("album").expect("registered");
    let (url, _) = protected(layer.clone()).await;
    let http = http();
    let get = || http.get(format!("{url}/albums/1")).send();

    // Episode 1: forgotten, registered again at the first request.
    as_.forget_resources();
    for _ in 0..5 {
        expect_challenge(&get().await.expect("app"), &as_);
    }
    let new_id = layer.resource_id("album").expect("known");
    let all = lines();
    let with = |needle: &str| -> Vec<String> {
        lines().into_iter().filter(|l| l.contains(needle)).collect()
    };
    let forgot = with("does not know resource");
    assert_eq!(forgot.len(), 1, "{all:#?}");
    assert!(forgot[0].contains(" WARN "), "{}", forgot[0]);
    assert!(
        forgot[0].contains("permission endpoint answered 400 invalid_resource_id")
            && forgot[0].contains(&format!("(no resource with id `{old_id}`)"))
            && forgot[0].contains("registering it again"),
        "the AS's code and description: {}",
        forgot[0]
    );
    let back = with("registered again at the authorization server");
    assert_eq!(back.len(), 1, "{all:#?}");
    assert!(
        back[0].contains(" INFO ") && back[0].contains(&new_id) && back[0].contains(&old_id),
        "{}",
        back[0]
    );
    assert_eq!(all.len(), 2, "nothing else, nothing per request: {all:#?}");

    // Episode 2: forgotten while registration is down; every request refused, the failure
    // logged once however many attempts, the return once.
    as_.set_down(Endpoint::ResourceRegistration, true);
    as_.forget_resources();
    for _ in 0..5 {
        expect_unreachable(&get().await.expect("app"));
    }
    let tried = registrations(&as_);
    eventually("a few background attempts", || {
        registrations(&as_) >= tried + 3
    })
    .await;
    as_.set_down(Endpoint::ResourceRegistration, false);
    eventually("the resource registered again", || {
        layer.as_health().resources_known()
    })
    .await;
    expect_challenge(&get().await.expect("app"), &as_);
    let all = lines();
    assert_eq!(with("does not know resource").len(), 2, "{all:#?}");
    let failed = with("could not register resource \"album\" again");
    assert_eq!(failed.len(), 1, "{all:#?}");
    assert!(failed[0].contains(" WARN "), "{}", failed[0]);
    assert_eq!(
        with("registered again at the authorization server").len(),
        2,
        "{all:#?}"
    );
    assert!(
        !all.iter().any(|l| l.contains("permission call failed")),
        "{all:#?}"
    );
}
