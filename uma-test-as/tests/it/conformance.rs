//! Conformance checks 41–43 of docs/protocol.md §11 (the bundled AS), over real HTTP.

#![allow(clippy::unwrap_used, reason = "tests")]

use serde_json::json;
use uma_test_as::{Endpoint, RptFormat};

use crate::common::*;

/// docs/protocol.md §11 check 41: single object and array bodies both → 201 `{"ticket":…}`
/// with one ticket.
#[tokio::test]
async fn check_41_permission_object_and_array_bodies_each_get_one_ticket() {
    let auth = spawn().await;
    let (pat, id) = album(&auth).await;
    let other = register(
        &auth,
        &pat,
        json!({"name": "photo", "resource_scopes": ["view"]}),
    )
    .await;

    for body in [
        json!({"resource_id": id, "resource_scopes": ["view"]}),
        json!([{"resource_id": id, "resource_scopes": ["view"]}]),
        json!([{"resource_id": id, "resource_scopes": ["view", "edit"]},
               {"resource_id": other, "resource_scopes": []}]),
    ] {
        let response = http()
            .post(auth.endpoint_url(Endpoint::Permission))
            .bearer_auth(&pat)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 201, "{body}");
        let answer = json(response).await;
        let object = answer.as_object().unwrap();
        assert_eq!(object.len(), 1, "exactly one member: {answer}");
        let ticket = answer["ticket"].as_str().unwrap();
        // Unguessable: at least 128 bits, URL-safe.
        assert!(ticket.len() >= 22, "{ticket}");
        assert!(
            ticket
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
    }
}

/// docs/protocol.md §11 check 41: unknown id → 400 `invalid_resource_id`; unregistered
/// scope → 400 `invalid_scope`.
#[tokio::test]
async fn check_41_permission_errors() {
    let auth = spawn().await;
    let (pat, id) = album(&auth).await;
    let send = |body: serde_json::Value| {
        http()
            .post(auth.endpoint_url(Endpoint::Permission))
            .bearer_auth(&pat)
            .json(&body)
            .send()
    };
    let body = assert_error(
        send(json!({"resource_id": "nope", "resource_scopes": ["view"]}))
            .await
            .unwrap(),
        400,
        "invalid_resource_id",
    )
    .await;
    assert!(body["error_description"].is_string());
    assert_error(
        send(json!([{"resource_id": id, "resource_scopes": ["view"]},
                    {"resource_id": "nope", "resource_scopes": []}]))
        .await
        .unwrap(),
        400,
        "invalid_resource_id",
    )
    .await;
    assert_error(
        send(json!({"resource_id": id, "resource_scopes": ["delete"]}))
            .await
            .unwrap(),
        400,
        "invalid_scope",
    )
    .await;
    // Malformed requests.
    for bad in [
        json!([]),
        json!({"resource_id": id}),
        json!({"resource_scopes": ["view"]}),
        json!(42),
    ] {
        assert_error(send(bad).await.unwrap(), 400, "invalid_request").await;
    }
}

/// docs/protocol.md §11 check 41: missing or invalid PAT → 401.
#[tokio::test]
async fn check_41_permission_needs_a_valid_pat() {
    let auth = spawn().await;
    let (pat, id) = album(&auth).await;
    let body = json!({"resource_id": id, "resource_scopes": ["view"]});
    let url = auth.endpoint_url(Endpoint::Permission);

    let missing = http().post(&url).json(&body).send().await.unwrap();
    assert_eq!(
        missing.headers()["www-authenticate"].to_str().unwrap(),
        "Bearer realm=\"uma-test-as\""
    );
    assert_error(missing, 401, "invalid_token").await;

    let invalid = http()
        .post(&url)
        .bearer_auth("not-a-pat")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(
        invalid.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
    assert_error(invalid, 401, "invalid_token").await;

    // A revoked PAT, and an access token without uma_protection, are not PATs either.
    auth.revoke(&pat);
    let revoked = http()
        .post(&url)
        .bearer_auth(&pat)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_error(revoked, 401, "invalid_token").await;
    let plain = json(
        http()
            .post(auth.endpoint_url(Endpoint::Token))
            .basic_auth(APP.0, Some(APP.1))
            .form(&[
                ("grant_type", "password"),
                ("username", "bob"),
                ("password", "bob-pw"),
                ("scope", "openid"),
            ])
            .send()
            .await
            .unwrap(),
    )
    .await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let not_pat = http()
        .post(&url)
        .bearer_auth(&plain)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_error(not_pat, 401, "invalid_token").await;
    let basic = http()
        .post(&url)
        .basic_auth(RS.0, Some(RS.1))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_error(basic, 401, "invalid_token").await;
}

/// docs/protocol.md §11 check 42: a ticket used once succeeds, a second use → 400
/// `invalid_grant`.
#[tokio::test]
async fn check_42_ticket_is_single_use_after_success() {
    let auth = spawn().await;
    let (pat, id) = album(&auth).await;
    let ticket = ticket_for(&auth, &pat, &id, &["view"]).await;
    let bob = id_token(&auth, BOB).await;
    rpt(grant(&auth, &ticket, Some(&bob), &[]).await).await;
    let again = grant(&auth, &ticket, Some(&bob), &[]).await;
    let body = assert_error(again, 400, "invalid_grant").await;
    assert!(
        body.get("ticket").is_none(),
        "invalid_grant carries no ticket: {body}"
    );
}

/// docs/protocol.md §11 check 42: a ticket whose use failed (denied) is spent too.
#[tokio::test]
async fn check_42_ticket_is_single_use_after_failure() {
    let auth = spawn().await;
    let (pat, id) = album(&auth).await;
    let ticket = ticket_for(&auth, &pat, &id, &["view"]).await;
    let alice = id_token(&auth, ALICE).await;
    assert_error(
        grant(&auth, &ticket, Some(&alice), &[]).await,
        403,
        "request_denied",
    )
    .await;
    let bob = id_token(&auth, BOB).await;
    assert_error(
        grant(&auth, &ticket, Some(&bob), &[]).await,
        400,
        "invalid_grant",
    )
    .await;
    // An unknown ticket is invalid_grant as well.
    assert_error(
        grant(&auth, "made-up", Some(&bob), &[]).await,
        400,
        "invalid_grant",
    )
    .await;
}

/// docs/protocol.md §11 check 42: denial → 403 `request_denied`.
#[tokio::test]
async fn check_42_denial_is_request_denied() {
    let auth = spawn().await;
    let (pat, id) = album(&auth).await;
    let alice = id_token(&auth, ALICE).await;
    // No policy grants alice; no policy at all covers "edit".
    for scopes in [&["view"][..], &["edit"][..]] {
        let ticket = ticket_for(&auth, &pat, &id, scopes).await;
        let body = assert_error(
            grant(&auth, &ticket, Some(&alice), &[]).await,
            403,
            "request_denied",
        )
        .await;
        assert!(body.get("ticket").is_none());
    }
}

/// docs/protocol.md §11 check 42: `need_info` carries a new ticket different from the
/// submitted one.
#[tokio::test]
async fn check_42_need_info_carries_a_new_ticket() {
    let auth = spawn().await;
    let (pat, id) = album(&auth).await;
    let ticket = ticket_for(&auth, &pat, &id, &["view"]).await;
    let body = assert_error(grant(&auth, &ticket, None, &[]).await, 403, "need_info").await;
    let new_ticket = body["ticket"].as_str().unwrap();
    assert_ne!(new_ticket, ticket);
    assert!(body["required_claims"].is_array());
}

/// docs/protocol.md §11 check 43: introspection of an RPT → `active:true`, `permissions` with
/// `resource_id`/`resource_scopes`, no top-level `scope`.
#[tokio::test]
async fn check_43_rpt_introspection() {
    for format in [RptFormat::Opaque, RptFormat::Jwt] {
        let auth = builder()
            .policy(
                uma_test_as::Policy::resource("album")
                    .scopes(["view"])
                    .users(["bob"]),
            )
            .rpt_format(format)
            .spawn()
            .await
            .unwrap();
        let (pat, id) = album(&auth).await;
        let ticket = ticket_for(&auth, &pat, &id, &["view"]).await;
        let bob = id_token(&auth, BOB).await;
        let rpt = rpt(grant(&auth, &ticket, Some(&bob), &[]).await).await;
        let answer = introspect(&auth, &pat, &rpt).await;
        assert_eq!(answer["active"], true, "{format:?}: {answer}");
        assert!(
            answer.get("scope").is_none(),
            "no top-level scope: {answer}"
        );
        assert_eq!(answer["sub"], "bob");
        assert_eq!(answer["client_id"], APP.0);
        assert!(answer["exp"].as_i64().unwrap() > answer["iat"].as_i64().unwrap());
        let permissions = answer["permissions"].as_array().unwrap();
        assert_eq!(permissions.len(), 1);
        assert_eq!(permissions[0]["resource_id"], id.as_str());
        assert_eq!(permissions[0]["resource_scopes"], json!(["view"]));
        assert_eq!(permissions[0]["exp"], answer["exp"]);
    }
}

/// docs/protocol.md §11 check 43: unknown token → exactly `{"active":false}`.
#[tokio::test]
async fn check_43_unknown_token_is_exactly_inactive() {
    let auth = spawn().await;
    let pat = pat(&auth, RS).await;
    let response = http()
        .post(auth.endpoint_url(Endpoint::Introspection))
        .bearer_auth(&pat)
        .form(&[("token", "no-such-token")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(response.text().await.unwrap(), r#"{"active":false}"#);
}

/// docs/protocol.md §11 check 43: caller without valid credentials → 401.
#[tokio::test]
async fn check_43_introspection_caller_must_authenticate() {
    let auth = spawn().await;
    let rpt = auth.mint_rpt(uma_test_as::RptSpec::active_for("r", ["view"], 60));
    let url = auth.endpoint_url(Endpoint::Introspection);
    let form = [("token", rpt.as_str())];
    assert_error(
        http().post(&url).form(&form).send().await.unwrap(),
        401,
        "invalid_client",
    )
    .await;
    assert_error(
        http()
            .post(&url)
            .bearer_auth("bogus")
            .form(&form)
            .send()
            .await
            .unwrap(),
        401,
        "invalid_token",
    )
    .await;
    assert_error(
        http()
            .post(&url)
            .basic_auth(RS.0, Some("wrong"))
            .form(&form)
            .send()
            .await
            .unwrap(),
        401,
        "invalid_client",
    )
    .await;
    assert_error(
        http()
            .post(&url)
            .form(&[
                ("token", rpt.as_str()),
                ("client_id", RS.0),
                ("client_secret", "wrong"),
            ])
            .send()
            .await
            .unwrap(),
        401,
        "invalid_client",
    )
    .await;
    // The same request with valid client credentials (Basic, then in the body) succeeds.
    let ok = http()
        .post(&url)
        .basic_auth(RS.0, Some(RS.1))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(json(ok).await["active"], true);
    let ok = http()
        .post(&url)
        .form(&[
            ("token", rpt.as_str()),
            ("client_id", RS.0),
            ("client_secret", RS.1),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(json(ok).await["active"], true);
}
