//! Helpers shared by the integration tests: one server per test, a proxy-free HTTP client and
//! the usual protocol steps.

#![allow(dead_code, reason = "each test binary uses a different subset")]
#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a failure is a test failure"
)]

use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};
use uma_test_as::{
    AuthServer, AuthServerBuilder, Endpoint, ID_TOKEN_FORMAT, Policy, TestAs, UMA_TICKET_GRANT,
};

pub(crate) const RS: (&str, &str) = ("photo-api", "photo-api-secret");
pub(crate) const APP: (&str, &str) = ("photo-app", "photo-app-secret");
pub(crate) const ALICE: (&str, &str) = ("alice", "alice-pw");
pub(crate) const BOB: (&str, &str) = ("bob", "bob-pw");

/// The sample set-up: the clients and users of `examples/as.toml`, no policies.
pub(crate) fn builder() -> AuthServerBuilder {
    AuthServer::builder()
        .client(RS.0, RS.1)
        .client(APP.0, APP.1)
        .user(ALICE.0, ALICE.1)
        .user(BOB.0, BOB.1)
}

/// The sample set-up with its policy: bob may view albums.
pub(crate) async fn spawn() -> TestAs {
    builder()
        .policy(Policy::resource("album").scopes(["view"]).users(["bob"]))
        .spawn()
        .await
        .unwrap()
}

/// A client that never goes through a proxy, and fails rather than hangs.
pub(crate) fn http() -> Client {
    Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .unwrap()
}

pub(crate) async fn json(response: Response) -> Value {
    response.json().await.unwrap()
}

/// Asserts an OAuth error answer: status, `error` code and `Cache-Control: no-store`.
pub(crate) async fn assert_error(response: Response, status: u16, code: &str) -> Value {
    assert_eq!(response.status().as_u16(), status, "status for {code}");
    assert_eq!(
        response
            .headers()
            .get("cache-control")
            .map(|v| v.to_str().unwrap()),
        Some("no-store"),
        "error bodies carry Cache-Control: no-store"
    );
    let body = json(response).await;
    assert_eq!(body["error"], code, "{body}");
    body
}

/// A PAT for a client by client credentials.
pub(crate) async fn pat(auth: &TestAs, client: (&str, &str)) -> String {
    let response = http()
        .post(auth.endpoint_url(Endpoint::Token))
        .basic_auth(client.0, Some(client.1))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "uma_protection"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    json(response).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Registers a resource with the given PAT; returns its `_id`.
pub(crate) async fn register(auth: &TestAs, pat: &str, body: Value) -> String {
    let response = http()
        .post(auth.endpoint_url(Endpoint::ResourceRegistration))
        .bearer_auth(pat)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    json(response).await["_id"].as_str().unwrap().to_owned()
}

/// Registers an album owned by alice with scopes view and edit; returns the RS's PAT and the id.
pub(crate) async fn album(auth: &TestAs) -> (String, String) {
    let pat = pat(auth, RS).await;
    let id = register(
        auth,
        &pat,
        json!({"name": "album", "owner": "alice", "resource_scopes": ["view", "edit"]}),
    )
    .await;
    (pat, id)
}

/// Asks the permission endpoint for a ticket.
pub(crate) async fn ticket(auth: &TestAs, pat: &str, body: Value) -> String {
    let response = http()
        .post(auth.endpoint_url(Endpoint::Permission))
        .bearer_auth(pat)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    json(response).await["ticket"].as_str().unwrap().to_owned()
}

/// A ticket for one resource and scope list.
pub(crate) async fn ticket_for(
    auth: &TestAs,
    pat: &str,
    resource_id: &str,
    scopes: &[&str],
) -> String {
    ticket(
        auth,
        pat,
        json!({"resource_id": resource_id, "resource_scopes": scopes}),
    )
    .await
}

/// An ID token for a user via the password grant with `scope=openid`, as photo-app.
pub(crate) async fn id_token(auth: &TestAs, user: (&str, &str)) -> String {
    let response = http()
        .post(auth.endpoint_url(Endpoint::Token))
        .basic_auth(APP.0, Some(APP.1))
        .form(&[
            ("grant_type", "password"),
            ("username", user.0),
            ("password", user.1),
            ("scope", "openid"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    json(response).await["id_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The uma-ticket grant as photo-app, with an optional ID token and extra parameters.
pub(crate) async fn grant(
    auth: &TestAs,
    ticket: &str,
    id_token: Option<&str>,
    extra: &[(&str, &str)],
) -> Response {
    grant_as(auth, APP, ticket, id_token, extra).await
}

/// The uma-ticket grant as any client.
pub(crate) async fn grant_as(
    auth: &TestAs,
    client: (&str, &str),
    ticket: &str,
    id_token: Option<&str>,
    extra: &[(&str, &str)],
) -> Response {
    let mut form = vec![("grant_type", UMA_TICKET_GRANT), ("ticket", ticket)];
    if let Some(token) = id_token {
        form.push(("claim_token", token));
        form.push(("claim_token_format", ID_TOKEN_FORMAT));
    }
    form.extend_from_slice(extra);
    http()
        .post(auth.endpoint_url(Endpoint::Token))
        .basic_auth(client.0, Some(client.1))
        .form(&form)
        .send()
        .await
        .unwrap()
}

/// A successful grant's RPT.
pub(crate) async fn rpt(response: Response) -> String {
    assert_eq!(response.status(), StatusCode::OK);
    json(response).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Introspects a token with a bearer PAT; returns the (200) answer.
pub(crate) async fn introspect(auth: &TestAs, pat: &str, token: &str) -> Value {
    let response = http()
        .post(auth.endpoint_url(Endpoint::Introspection))
        .bearer_auth(pat)
        .form(&[("token", token), ("token_type_hint", "access_token")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    json(response).await
}
