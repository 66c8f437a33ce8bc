//! `TenantLayer` against a real Keycloak 26 with two realms: `photos` (of
//! `photos-realm.json`) and `photos-b` (of `tenant-realm.json`, created here through the admin
//! API when it does not exist yet). Both realms have the same clients, users and policies, and
//! each tenant declares the same resource name: a token of one realm still grants nothing in
//! the other, and a request no tenant takes never reaches Keycloak. Run by
//! `interop/keycloak/test.sh`.

#![allow(
    clippy::unwrap_used,
    reason = "tests against a live server: a failure is a test failure"
)]

mod common;

use common::*;
use http::{Method, StatusCode};
use serde_json::Value;
use tower_uma::challenge::parse_uma_challenge;
use tower_uma::tenant::{TenantLayer, TenantMatch};
use tower_uma::{Dialect, ResourceDecl, ResourceMap, Route, UmaLayer, UmaLayerBuilder};

/// The second realm's name, as `tenant-realm.json` names it.
const REALM_B: &str = "photos-b";

fn issuer_b() -> String {
    format!("{BASE}/realms/{REALM_B}")
}

/// Creates the realm of `tenant-realm.json` unless it exists (a concurrent creator's `409` is
/// fine too), so the test works whoever started Keycloak.
async fn ensure_realm_b() {
    let admin = Admin::login().await;
    let exists = admin
        .call_url(Method::GET, &format!("{BASE}/admin/realms/{REALM_B}"), None)
        .await;
    if exists.status == StatusCode::OK {
        return;
    }
    let realm: Value = serde_json::from_str(include_str!("../tenant-realm.json")).unwrap();
    let created = admin
        .call_url(Method::POST, &format!("{BASE}/admin/realms"), Some(realm))
        .await;
    assert!(
        created.status == StatusCode::CREATED || created.status == StatusCode::CONFLICT,
        "creating realm {REALM_B}: {} {}",
        created.status,
        created.text
    );
}

/// A tenant of realm `issuer`: the realm's `photo-api`, and `/albums/{id}` as the resource
/// `name` (registered by the layer in that realm).
fn tenant(issuer: &str, name: &str) -> UmaLayerBuilder {
    UmaLayer::discover(issuer, RS_ID, RS_SECRET)
        .dialect(Dialect::Keycloak)
        .insecure_allow_http()
        .realm("photos")
        .resources(
            ResourceMap::new().route(
                Route::new("/albums/{id}")
                    .declare(ResourceDecl::new(name, ["view", "delete"]))
                    .scopes(Method::GET, ["view"]),
            ),
        )
}

/// `builder` with every endpoint the layer calls after its start (token, introspection,
/// permission, resource registration) through the recording `relay`.
fn through(builder: UmaLayerBuilder, issuer: &str, relay: &Relay) -> UmaLayerBuilder {
    builder
        .token_endpoint(relay.via(&format!("{issuer}/protocol/openid-connect/token")))
        .introspection_endpoint(relay.via(&format!(
            "{issuer}/protocol/openid-connect/token/introspect"
        )))
        .permission_endpoint(relay.via(&format!("{issuer}/authz/protection/permission")))
        .resource_registration_endpoint(
            relay.via(&format!("{issuer}/authz/protection/resource_set")),
        )
}

/// bob's RPT for `ticket` at realm `issuer` (password grant through `photo-app`, then the
/// uma-ticket grant).
async fn bob_rpt(issuer: &str, ticket: &str) -> String {
    let token_url = format!("{issuer}/protocol/openid-connect/token");
    let user = answer(
        http()
            .post(&token_url)
            .form(&[
                ("grant_type", "password"),
                ("client_id", APP_ID),
                ("username", "bob"),
                ("password", "bob"),
                ("scope", "openid"),
            ])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(user.status, StatusCode::OK, "{}", user.text);
    let access = user.body["access_token"].as_str().unwrap();
    let rpt = answer(
        http()
            .post(&token_url)
            .bearer_auth(access)
            .form(&[("grant_type", UMA_GRANT), ("ticket", ticket)])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(rpt.status, StatusCode::OK, "{}", rpt.text);
    rpt.body["access_token"].as_str().unwrap().to_owned()
}

/// The ticket of a UMA challenge, which must name `issuer`.
fn ticket_from(resp: &reqwest::Response, issuer: &str) -> String {
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let header = resp.headers()[http::header::WWW_AUTHENTICATE]
        .to_str()
        .unwrap();
    let c = parse_uma_challenge(header).unwrap();
    assert_eq!(c.as_uri, issuer);
    c.ticket
}

async fn send(url: &str, host: &str, token: Option<&str>) -> reqwest::Response {
    let mut req = http().get(url).header(http::header::HOST, host);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn two_realms_with_the_same_names_stay_apart() {
    require_keycloak().await;
    ensure_realm_b().await;
    // Both realms' calls through the recording relay, so that the test sees every call to
    // Keycloak after the start.
    let relay = Relay::start().await;
    let name = unique("tenant-album");
    let layer = TenantLayer::builder()
        .tenant(
            "a",
            TenantMatch::default().host("a.test"),
            through(tenant(ISSUER, &name), ISSUER, &relay),
        )
        .tenant(
            "b",
            TenantMatch::default().path_prefix("/b").strip_prefix(true),
            through(tenant(&issuer_b(), &name), &issuer_b(), &relay),
        )
        .build()
        .await
        .unwrap();
    let base = format!("http://{}", serve(echo_app().layer(layer)).await);

    // Realm photos: a challenge, bob's RPT, 200.
    let at_a = format!("{base}/albums/1");
    let ticket = ticket_from(&send(&at_a, "a.test", None).await, ISSUER);
    let rpt_a = bob_rpt(ISSUER, &ticket).await;
    assert_eq!(
        send(&at_a, "a.test", Some(&rpt_a)).await.status(),
        StatusCode::OK
    );

    // The same RPT in realm photos-b, for a resource of the same name: refused, with a
    // challenge from photos-b.
    let at_b = format!("{base}/b/albums/1");
    let ticket_b = ticket_from(&send(&at_b, "x.test", Some(&rpt_a)).await, &issuer_b());
    let rpt_b = bob_rpt(&issuer_b(), &ticket_b).await;
    assert_eq!(
        send(&at_b, "x.test", Some(&rpt_b)).await.status(),
        StatusCode::OK
    );
    // And photos-b's RPT grants nothing in photos.
    ticket_from(&send(&at_a, "a.test", Some(&rpt_b)).await, ISSUER);

    // No tenant: 404, and Keycloak was not asked.
    relay.clear();
    let resp = send(&format!("{base}/albums/1"), "nobody.test", Some(&rpt_a)).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert!(relay.seen().is_empty(), "{:?}", relay.seen());
}
