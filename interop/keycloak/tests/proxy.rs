//! The `uma-proxy` binary against a real Keycloak 26 (items 1–6 of "The suite against real
//! Keycloak"; the AS outage is in `outage.rs`). Run by `interop/keycloak/test.sh`, which builds
//! the binary first.

#![allow(
    clippy::unwrap_used,
    reason = "tests against a live server: a failure is a test failure"
)]

mod common;

use std::time::Duration;

use common::proxy::{Proxy, config, upstream};
use common::*;
use http::{Method, StatusCode};
use serde_json::{Value, json};

/// The permissions the upstream saw in `X-Uma-Permissions`.
fn forwarded_permissions(a: &Answer) -> Value {
    serde_json::from_str(a.body["permissions"].as_str().expect("X-Uma-Permissions")).unwrap()
}

/// Items 1, 3 and 5: discovery, PAT and registration at start (`/healthz` 200), then the whole
/// UMA flow with Keycloak's tickets, RPTs and introspection; `DELETE` is denied by Keycloak.
#[tokio::test]
async fn proxy_starts_and_runs_the_uma_flow() {
    require_keycloak().await;
    let name = unique("album-proxy");
    let proxy = Proxy::start(&config(RS_ID, &upstream().await, &name, "", ""), RS_SECRET).await;
    let health = answer(
        http()
            .get(format!("{}/healthz", proxy.admin().await))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(health.status, StatusCode::OK, "{}", health.text);

    let url = proxy.url("/albums/7");
    let ticket = ticket_of(&get(&url, Method::GET, None).await);
    let rpt = rpt("bob", &ticket).await;
    let ok = answer(get(&url, Method::GET, Some(&rpt)).await).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    let perms = forwarded_permissions(&ok);
    assert_eq!(perms[0]["resource_scopes"], json!(["view"]), "{perms}");
    let id = perms[0]["resource_id"].as_str().unwrap().to_owned();
    let pat = pat_of(RS_ID, RS_SECRET).await;
    assert_eq!(
        resource(&pat, &id).await.body["name"],
        json!(name),
        "the proxy registered it"
    );
    // Keycloak's RPT introspection has no `sub` or `client_id`: no X-Uma-Subject/-Client-Id.
    assert_eq!(ok.body["subject"], Value::Null);

    let ticket = ticket_of(&get(&url, Method::DELETE, Some(&rpt)).await);
    let denied = uma_grant(&user_token("bob").await, &ticket, &[]).await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN, "{}", denied.text);
    assert_eq!(denied.body["error"], "access_denied");
    unregister(&pat, &id).await;
}

/// Item 2: the proxy's start-up sync creates its resource, and a second start writes nothing
/// (on a resource server of the test's own, through a recording relay).
#[tokio::test]
async fn proxy_second_start_writes_nothing() {
    require_keycloak().await;
    let rs = TempRs::create("rs-proxy-sync").await;
    let relay = Relay::start().await;
    let extra = format!(
        "resource_registration_endpoint = \"{}\"",
        relay.via(&resource_set_url())
    );
    let cfg = config(&rs.client_id, &upstream().await, "album", &extra, "");
    let first = Proxy::start(&cfg, &rs.secret).await;
    assert_eq!(relay.writes().len(), 1, "{:?}", relay.seen());
    drop(first);
    relay.clear();
    let _second = Proxy::start(&cfg, &rs.secret).await;
    assert_eq!(relay.writes(), Vec::<String>::new());
    assert!(
        !relay.seen().is_empty(),
        "the second start listed the resources"
    );
    let all = rs.resources().await;
    assert_eq!(all.len(), 1);
    assert_eq!(scope_names(&all[0]), ["delete", "view"]);
    rs.remove().await;
}

/// Item 4: an owner-managed resource of alice's behind the proxy; bob's request, alice's
/// approval in Keycloak's account API, bob's `DELETE` goes through.
#[tokio::test]
async fn proxy_owner_approval() {
    require_keycloak().await;
    let name = unique("alice-album-proxy");
    let id = Admin::login()
        .await
        .create_user_resource(RS_ID, &name, "alice", &["view", "delete"])
        .await;
    let proxy = Proxy::start(&config(RS_ID, &upstream().await, &name, "", ""), RS_SECRET).await;
    let url = proxy.url("/albums/1");
    let rpt = approved_delete(&url, &id).await;
    let ok = answer(get(&url, Method::DELETE, Some(&rpt)).await).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    let perms = forwarded_permissions(&ok);
    assert_eq!(perms[0]["resource_id"], json!(id));
    assert_eq!(perms[0]["resource_scopes"], json!(["delete"]));
    unregister(&pat_of(RS_ID, RS_SECRET).await, &id).await;
}

/// Item 6: an RPT revoked at Keycloak is refused once the cache's `max_ttl` has passed.
#[tokio::test]
async fn proxy_revocation_within_the_cache_bound() {
    require_keycloak().await;
    let name = unique("album-proxy-revoke");
    let max_ttl = Duration::from_secs(4);
    let proxy = Proxy::start(
        &config(RS_ID, &upstream().await, &name, "", "max_ttl = \"4s\""),
        RS_SECRET,
    )
    .await;
    let url = proxy.url("/albums/3");
    let rpt = rpt("bob", &ticket_of(&get(&url, Method::GET, None).await)).await;
    let ok = answer(get(&url, Method::GET, Some(&rpt)).await).await;
    assert_eq!(ok.status, StatusCode::OK);
    let id = forwarded_permissions(&ok)[0]["resource_id"]
        .as_str()
        .unwrap()
        .to_owned();
    revoke(&rpt).await;
    challenged_within(&url, &rpt, max_ttl).await;
    unregister(&pat_of(RS_ID, RS_SECRET).await, &id).await;
}
