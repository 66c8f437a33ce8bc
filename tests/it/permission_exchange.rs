//! Permission exchange (issue 14, "Permission exchange for plain access tokens"), end to end
//! against `uma-test-as` in the Keycloak dialect over loopback: a plain access token is
//! exchanged at the token endpoint for the permissions its bearer may have (the uma-ticket
//! grant with `permission`, `audience`, `response_mode=permissions` and the token as bearer).

use std::sync::Arc;

use http::{Method, StatusCode};
use tower_uma::clock::FixedClock;
use tower_uma::keycloak::PermissionExchange;
use tower_uma::{ResourceMap, Route, UmaLayer, UmaLayerBuilder};
use uma_test_as::{Endpoint, RecordedRequest, ResourceDescription, TestAs};

use crate::common::{
    ALICE_PW, BOB_PW, Calls, Flavor, UmaClient, expect_challenge, expect_unreachable, get_plain,
    get_with, http, layer_builder, protected, rpt_for, start_as_in,
};

/// `GET /albums/{id}` needs `view`, `DELETE` needs `delete` (bob may only view).
fn map(album: &str) -> ResourceMap {
    ResourceMap::new().route(
        Route::new("/albums/{id}")
            .resource_id(album)
            .scopes(Method::GET, ["view"])
            .scopes(Method::DELETE, ["delete"]),
    )
}

/// The exchanges the layer made: uma-ticket grants with `response_mode=permissions`.
fn exchanges(as_: &TestAs) -> usize {
    as_.requests(Endpoint::Token)
        .iter()
        .filter(|r| r.body_text().contains("response_mode=permissions"))
        .count()
}

/// The first exchange the layer made.
fn first_exchange(as_: &TestAs) -> RecordedRequest {
    as_.requests(Endpoint::Token)
        .into_iter()
        .find(|r| r.body_text().contains("response_mode=permissions"))
        .expect("the exchange")
}

struct Setup {
    as_: TestAs,
    album: String,
    url: String,
    calls: Calls,
    bob: String,
    /// The layer the app runs (a clone: what a revocation hook holds).
    layer: UmaLayer,
}

async fn setup(configure: impl FnOnce(UmaLayerBuilder) -> UmaLayerBuilder) -> Setup {
    let as_ = start_as_in(Flavor::Keycloak).await;
    let album = as_.register_resource(
        "alice",
        ResourceDescription {
            name: Some("album".into()),
            resource_scopes: vec!["view".into(), "delete".into()],
            ..ResourceDescription::default()
        },
    );
    let builder = layer_builder(&as_, Flavor::Keycloak)
        .await
        .resources(map(&album));
    let layer: UmaLayer = configure(builder).build().await.expect("the layer builds");
    let (url, calls) = protected(layer.clone()).await;
    let bob = UmaClient::new(&as_).access_token("bob", BOB_PW).await;
    Setup {
        as_,
        album,
        url,
        calls,
        bob,
        layer,
    }
}

fn exchange(b: UmaLayerBuilder) -> UmaLayerBuilder {
    b.permission_exchange(PermissionExchange::new())
}

#[tokio::test]
async fn a_plain_access_token_is_exchanged_for_its_permissions() {
    let s = setup(exchange).await;
    let http = http();
    for _ in 0..3 {
        let resp = get_with(&http, &s.url, "/albums/1", &s.bob).await;
        assert_eq!(resp.status(), StatusCode::OK);
    }
    assert_eq!(s.calls.get(), 3);
    // Cached per (token, resource, scopes): one exchange.
    assert_eq!(exchanges(&s.as_), 1);
    let grant = first_exchange(&s.as_);
    assert_eq!(
        grant.header("authorization"),
        Some(format!("Bearer {}", s.bob).as_str())
    );
    let body = grant.body_text();
    assert!(body.contains("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Auma-ticket"));
    assert!(
        body.contains(&format!("permission={}%23view", s.album)),
        "{body}"
    );
    assert!(
        body.contains(&format!("audience={}", crate::common::RS_ID)),
        "{body}"
    );
}

#[tokio::test]
async fn a_refused_exchange_is_403_without_a_ticket_and_cached() {
    let s = setup(exchange).await;
    let http = http();
    for _ in 0..2 {
        let resp = http
            .delete(format!("{}/albums/1", s.url))
            .bearer_auth(&s.bob)
            .send()
            .await
            .expect("an answer");
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        assert!(resp.headers().get(http::header::WWW_AUTHENTICATE).is_none());
        assert!(resp.headers().get(http::header::WARNING).is_none());
    }
    assert_eq!(s.calls.get(), 0);
    assert_eq!(exchanges(&s.as_), 1);
    // Another user's token is another cache entry: alice may not view (no policy lets her).
    let alice = UmaClient::new(&s.as_).access_token("alice", ALICE_PW).await;
    let resp = get_with(&http, &s.url, "/albums/1", &alice).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(exchanges(&s.as_), 2);
}

/// An RPT that holds no permission for the request is exchanged as Keycloak's own enforcer
/// does it: authenticated as the client, the RPT as `subject_token`, never as the bearer
/// (Keycloak answers a uma-ticket grant whose bearer is an RPT a few seconds old with
/// `unauthorized_client` and ends the user's session; interop/keycloak/README.md).
#[tokio::test]
async fn an_rpt_without_the_permission_is_exchanged_as_its_subject() {
    let s = setup(exchange).await;
    let http = http();
    let other = rpt_for(&s.as_, "another-resource", &["view"]);
    let resp = get_with(&http, &s.url, "/albums/1", &other).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let grant = first_exchange(&s.as_);
    let auth = grant.header("authorization").unwrap_or_default();
    assert!(auth.starts_with("Basic "), "{auth}");
    let body = grant.body_text();
    assert!(body.contains(&format!("subject_token={other}")), "{body}");
    assert!(
        body.contains(&format!("permission={}%23view", s.album)),
        "{body}"
    );
    // Cached like any exchange.
    let resp = get_with(&http, &s.url, "/albums/1", &other).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(exchanges(&s.as_), 1);
}

#[tokio::test]
async fn rpts_and_requests_without_a_token_keep_the_uma_flow() {
    let s = setup(exchange).await;
    let http = http();
    let resp = get_plain(&http, &s.url, "/albums/1").await;
    expect_challenge(&resp, &s.as_);
    let rpt = rpt_for(&s.as_, &s.album, &["view"]);
    let resp = get_with(&http, &s.url, "/albums/1", &rpt).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(exchanges(&s.as_), 0);
    // A token the AS does not accept: asked once (a plain access token is inactive under
    // Keycloak's RPT hint, so only the exchange tells them apart), then challenged.
    let resp = get_with(&http, &s.url, "/albums/1", "not-a-token").await;
    expect_challenge(&resp, &s.as_);
    assert_eq!(exchanges(&s.as_), 1);
}

#[tokio::test]
async fn without_exchange_a_plain_token_is_challenged() {
    let s = setup(|b| b).await;
    let resp = get_with(&http(), &s.url, "/albums/1", &s.bob).await;
    expect_challenge(&resp, &s.as_);
    assert_eq!(exchanges(&s.as_), 0);
}

#[tokio::test]
async fn a_failed_exchange_is_403_with_a_warning_and_not_cached() {
    let s = setup(exchange).await;
    let http = http();
    s.as_.fail_next(Endpoint::Token, 1, 503);
    let resp = get_with(&http, &s.url, "/albums/1", &s.bob).await;
    expect_unreachable(&resp);
    let resp = get_with(&http, &s.url, "/albums/1", &s.bob).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(s.calls.get(), 1);
}

#[tokio::test]
async fn an_exchanged_answer_is_never_used_past_the_tokens_exp() {
    let clock = Arc::new(FixedClock::new(crate::common::now()));
    let layer_clock = Arc::clone(&clock);
    let s = setup(move |b| exchange(b).clock(layer_clock)).await;
    let http = http();
    let resp = get_with(&http, &s.url, "/albums/1", &s.bob).await;
    assert_eq!(resp.status(), StatusCode::OK);
    // A day later the access token (and so its exchanged permissions) has expired.
    clock.advance(86_400);
    let resp = get_with(&http, &s.url, "/albums/1", &s.bob).await;
    assert_ne!(resp.status(), StatusCode::OK);
    assert_eq!(s.calls.get(), 1);
}

/// A revocation hook stops a revoked token that was granted by exchange: the exchanged grant
/// is forgotten with the introspection result (`forget_token`, or `forget_all_tokens`), and
/// the AS is asked again.
#[tokio::test]
async fn a_forgotten_token_loses_its_exchanged_grants() {
    type Forget = fn(&UmaLayer, &str);
    let ways: [(&str, Forget); 2] = [
        ("forget_token", |layer, token| layer.forget_token(token)),
        ("forget_all_tokens", |layer, _| layer.forget_all_tokens()),
    ];
    for (way, forget) in ways {
        let s = setup(exchange).await;
        let http = http();
        let resp = get_with(&http, &s.url, "/albums/1", &s.bob).await;
        assert_eq!(resp.status(), StatusCode::OK, "{way}");
        s.as_.revoke(&s.bob);
        forget(&s.layer, &s.bob);
        let resp = get_with(&http, &s.url, "/albums/1", &s.bob).await;
        expect_challenge(&resp, &s.as_);
        assert_eq!(
            exchanges(&s.as_),
            2,
            "{way}: asked again after the revocation"
        );
        assert_eq!(s.calls.get(), 1, "{way}");
    }
}

/// Forgetting one token keeps the others' grants: only the forgotten one is asked again.
#[tokio::test]
async fn forgetting_a_token_keeps_the_grants_of_others() {
    let s = setup(exchange).await;
    let http = http();
    let other = UmaClient::new(&s.as_).access_token("bob", BOB_PW).await;
    assert_ne!(other, s.bob);
    for token in [&s.bob, &other] {
        let resp = get_with(&http, &s.url, "/albums/1", token).await;
        assert_eq!(resp.status(), StatusCode::OK);
    }
    assert_eq!(exchanges(&s.as_), 2);
    s.layer.forget_token(&s.bob);
    for token in [&s.bob, &other] {
        let resp = get_with(&http, &s.url, "/albums/1", token).await;
        assert_eq!(resp.status(), StatusCode::OK);
    }
    assert_eq!(
        exchanges(&s.as_),
        3,
        "only the forgotten token was exchanged again"
    );
}

/// A grant whose exchange was under way when the token was forgotten answers the request
/// that waited for it, but no request that came after the forget: not one that joins the
/// exchange under way, nor one that finds its answer stored.
#[tokio::test]
async fn a_grant_under_way_when_its_token_is_forgotten_serves_no_later_request() {
    let s = setup(exchange).await;
    // The AS's grant was decided before the revocation and arrives after it: a canned grant
    // of `view`, held back by the latency (under the layer's AS timeout).
    let grant = format!(
        r#"[{{"rsid":"{}","rsname":"album","scopes":["view"]}}]"#,
        s.album
    );
    s.as_
        .respond_next(Endpoint::Token, 1, 200, "application/json", &grant);
    s.as_
        .set_latency(Endpoint::Token, std::time::Duration::from_millis(500));
    let first = tokio::spawn({
        let (url, bob) = (s.url.clone(), s.bob.clone());
        async move { get_with(&http(), &url, "/albums/1", &bob).await.status() }
    });
    crate::common::eventually("the exchange reached the AS", || exchanges(&s.as_) == 1).await;
    s.as_.revoke(&s.bob);
    s.layer.forget_token(&s.bob);
    // Arrives while the first exchange is under way, and would join it.
    let second = get_with(&http(), &s.url, "/albums/1", &s.bob).await;
    expect_challenge(&second, &s.as_);
    assert_eq!(
        first.await.expect("the request"),
        StatusCode::OK,
        "it waited for this grant"
    );
    s.as_
        .set_latency(Endpoint::Token, std::time::Duration::ZERO);
    let third = get_with(&http(), &s.url, "/albums/1", &s.bob).await;
    expect_challenge(&third, &s.as_);
    // The second asked the AS itself; the third had its refusal, cached.
    assert_eq!(exchanges(&s.as_), 2);
    assert_eq!(s.calls.get(), 1);
}

/// With the introspection cache disabled (every request asks the AS, so that a revoked token
/// stops at once), exchanged grants are not kept either.
#[tokio::test]
async fn a_disabled_cache_keeps_no_exchanged_grant() {
    let s = setup(|b| exchange(b).cache(tower_uma::IntrospectionCache::disabled())).await;
    let http = http();
    for _ in 0..2 {
        let resp = get_with(&http, &s.url, "/albums/1", &s.bob).await;
        assert_eq!(resp.status(), StatusCode::OK);
    }
    assert_eq!(exchanges(&s.as_), 2);
    s.as_.revoke(&s.bob);
    let resp = get_with(&http, &s.url, "/albums/1", &s.bob).await;
    expect_challenge(&resp, &s.as_);
}
