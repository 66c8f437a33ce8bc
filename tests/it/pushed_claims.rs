//! Pushed claims (issue 14, "Pushed claims"), end to end against `uma-test-as` in the
//! Keycloak dialect over loopback: claims read from the request go with the ticket request
//! and the permission exchange, and a token's permission granted under some claims does not
//! serve a request pushing others.

use http::{Method, StatusCode};
use serde_json::{Value, json};
use tower_uma::keycloak::PermissionExchange;
use tower_uma::resources::PushedClaims;
use tower_uma::{ResourceMap, Route, UmaLayer, UmaLayerBuilder};
use uma_test_as::{Endpoint, ResourceDescription, TestAs};

use crate::common::{
    BOB_PW, Calls, Flavor, UmaClient, expect_challenge, http, layer_builder, protected, rpt_for,
    start_as_in,
};

/// `GET /albums/{id}` needs `view`, and pushes the organisation (header), the album (path)
/// and the query parameter `q`.
fn map(album: &str) -> ResourceMap {
    let claims = PushedClaims::new()
        .claim("org", "{request.header['X-Org']}")
        .and_then(|c| c.claim("album", "{request.path['id']}"))
        .and_then(|c| c.claim("q", "{request.parameter['q']}"))
        .expect("valid templates");
    ResourceMap::new().route(
        Route::new("/albums/{id}")
            .resource_id(album)
            .scopes(Method::GET, ["view"])
            .push_claims(claims),
    )
}

struct Setup {
    as_: TestAs,
    album: String,
    url: String,
    calls: Calls,
}

async fn setup(configure: impl FnOnce(UmaLayerBuilder) -> UmaLayerBuilder) -> Setup {
    let as_ = start_as_in(Flavor::Keycloak).await;
    let album = as_.register_resource(
        "alice",
        ResourceDescription {
            name: Some("album".into()),
            resource_scopes: vec!["view".into()],
            ..ResourceDescription::default()
        },
    );
    let builder = layer_builder(&as_, Flavor::Keycloak)
        .await
        .resources(map(&album));
    let layer: UmaLayer = configure(builder).build().await.expect("the layer builds");
    let (url, calls) = protected(layer).await;
    Setup {
        as_,
        album,
        url,
        calls,
    }
}

async fn get(s: &Setup, path: &str, org: &str, token: Option<&str>) -> reqwest::Response {
    let mut req = http().get(format!("{}{path}", s.url)).header("x-org", org);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    req.send().await.expect("an answer")
}

/// The `claims` of the last permission request.
fn last_ticket_claims(as_: &TestAs) -> Value {
    let asked = as_
        .requests(Endpoint::Permission)
        .pop()
        .expect("a permission request");
    let body: Value = serde_json::from_slice(&asked.body).expect("JSON");
    body[0]["claims"].clone()
}

#[tokio::test]
async fn the_ticket_request_carries_the_pushed_claims() {
    let s = setup(|b| b).await;
    let resp = get(&s, "/albums/7?q=a+b&q=c", "acme", None).await;
    expect_challenge(&resp, &s.as_);
    assert_eq!(
        last_ticket_claims(&s.as_),
        json!({"album": ["7"], "org": ["acme"], "q": ["a b", "c"]})
    );
    // A claim without a value is not sent.
    let resp = get(&s, "/albums/8", "acme", None).await;
    expect_challenge(&resp, &s.as_);
    assert_eq!(
        last_ticket_claims(&s.as_),
        json!({"album": ["8"], "org": ["acme"]})
    );
    assert_eq!(s.calls.get(), 0);
}

#[tokio::test]
async fn a_token_granted_under_other_claims_does_not_serve_the_request() {
    let s = setup(|b| b).await;
    let rpt = rpt_for(&s.as_, &s.album, &["view"]);
    // Keycloak writes the claims it decided on into the RPT's permission.
    let answer = json!({
        "active": true,
        "exp": 4_102_444_800_i64,
        "permissions": [{"rsid": s.album, "scopes": ["view"],
                         "claims": {"org": ["acme"], "album": ["7"]}}]
    });
    s.as_.respond_next(
        Endpoint::Introspection,
        1,
        200,
        "application/json",
        &answer.to_string(),
    );
    let resp = get(&s, "/albums/7", "acme", Some(&rpt)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    // The same token, from the cache, with another organisation or album: a new ticket,
    // asked with the request's claims.
    let resp = get(&s, "/albums/7", "beta", Some(&rpt)).await;
    expect_challenge(&resp, &s.as_);
    assert_eq!(
        last_ticket_claims(&s.as_),
        json!({"album": ["7"], "org": ["beta"]})
    );
    let resp = get(&s, "/albums/8", "acme", Some(&rpt)).await;
    expect_challenge(&resp, &s.as_);
    assert_eq!(s.calls.get(), 1);
    assert_eq!(s.as_.requests(Endpoint::Introspection).len(), 1);
}

#[tokio::test]
async fn exchanges_push_the_claims_and_are_cached_per_claims() {
    let s = setup(|b| b.permission_exchange(PermissionExchange::new())).await;
    let bob = UmaClient::new(&s.as_).access_token("bob", BOB_PW).await;
    for _ in 0..2 {
        let resp = get(&s, "/albums/7", "acme", Some(&bob)).await;
        assert_eq!(resp.status(), StatusCode::OK);
    }
    let resp = get(&s, "/albums/7", "beta", Some(&bob)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let exchanges: Vec<String> = s
        .as_
        .requests(Endpoint::Token)
        .iter()
        .map(uma_test_as::RecordedRequest::body_text)
        .filter(|b| b.contains("response_mode=permissions"))
        .collect();
    // One exchange per set of claims.
    assert_eq!(exchanges.len(), 2, "{exchanges:?}");
    let claim_token = |body: &str| -> Value {
        use base64::Engine as _;
        let form: Vec<(String, String)> = url::form_urlencoded::parse(body.as_bytes())
            .into_owned()
            .collect();
        let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(
            get("claim_token_format").as_deref(),
            Some("urn:ietf:params:oauth:token-type:jwt")
        );
        let token = get("claim_token").expect("a claim token");
        let json = base64::engine::general_purpose::STANDARD
            .decode(token)
            .expect("base64");
        serde_json::from_slice(&json).expect("JSON")
    };
    assert_eq!(
        claim_token(&exchanges[0]),
        json!({"album": ["7"], "org": ["acme"]})
    );
    assert_eq!(
        claim_token(&exchanges[1]),
        json!({"album": ["7"], "org": ["beta"]})
    );
    assert_eq!(s.calls.get(), 3);
}
