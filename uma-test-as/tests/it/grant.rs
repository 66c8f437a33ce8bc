//! The uma-ticket grant end to end (UMA Grant §3.3), over real HTTP.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::time::Duration;

use serde_json::json;
use uma_test_as::{Endpoint, ID_TOKEN_FORMAT, Policy, UMA_TICKET_GRANT};

use crate::common::*;

/// PAT → register → ticket → ID token → RPT → introspect → revoke → inactive.
#[tokio::test]
async fn whole_grant() {
    let auth = spawn().await;
    let pat = pat(&auth, RS).await;
    assert_eq!(auth.pats_issued(), 1);
    let id = register(
        &auth,
        &pat,
        json!({"name": "album", "resource_scopes": ["view", "edit"]}),
    )
    .await;
    // Owner defaults to the PAT's subject (the RS client here).
    assert_eq!(auth.resource(&id).unwrap().owner.as_deref(), Some(RS.0));

    let ticket = ticket_for(&auth, &pat, &id, &["view"]).await;
    let bob = id_token(&auth, BOB).await;
    let response = grant(&auth, &ticket, Some(&bob), &[]).await;
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body = json(response).await;
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 300);
    assert!(
        body.get("scope").is_none(),
        "Grant §3.3.5: SHOULD NOT include scope"
    );
    assert!(body.get("upgraded").is_none());
    let rpt = body["access_token"].as_str().unwrap().to_owned();

    let answer = introspect(&auth, &pat, &rpt).await;
    assert_eq!(answer["active"], true);
    assert_eq!(answer["permissions"][0]["resource_id"], id.as_str());
    assert!(auth.is_active(&rpt));

    let revoked = http()
        .post(auth.endpoint_url(Endpoint::Revocation))
        .basic_auth(APP.0, Some(APP.1))
        .form(&[("token", rpt.as_str()), ("token_type_hint", "access_token")])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status().as_u16(), 200);
    assert_eq!(
        introspect(&auth, &pat, &rpt).await,
        json!({"active": false})
    );
    assert!(!auth.is_active(&rpt));
    assert_eq!(auth.count(Endpoint::Revocation), 1);
}

#[tokio::test]
async fn rpt_upgrade_carries_old_permissions() {
    let auth = builder()
        .policy(Policy::resource("album").users(["bob"]))
        .spawn()
        .await
        .unwrap();
    let (pat, id) = album(&auth).await;
    let photo = register(
        &auth,
        &pat,
        json!({"name": "album", "resource_scopes": ["view"]}),
    )
    .await;
    let bob = id_token(&auth, BOB).await;

    let first = rpt(grant(
        &auth,
        &ticket_for(&auth, &pat, &id, &["view"]).await,
        Some(&bob),
        &[],
    )
    .await)
    .await;
    let ticket = ticket(
        &auth,
        &pat,
        json!([{"resource_id": id, "resource_scopes": ["edit"]},
               {"resource_id": photo, "resource_scopes": ["view"]}]),
    )
    .await;
    let response = grant(&auth, &ticket, Some(&bob), &[("rpt", first.as_str())]).await;
    assert_eq!(response.status().as_u16(), 200);
    let body = json(response).await;
    assert_eq!(body["upgraded"], true);
    let second = body["access_token"].as_str().unwrap();
    assert_ne!(second, first);

    let answer = introspect(&auth, &pat, second).await;
    let mut permissions: Vec<(String, Vec<String>)> = answer["permissions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let mut scopes: Vec<String> =
                serde_json::from_value(p["resource_scopes"].clone()).unwrap();
            scopes.sort();
            (p["resource_id"].as_str().unwrap().to_owned(), scopes)
        })
        .collect();
    permissions.sort();
    let mut expected = vec![
        (id.clone(), vec!["edit".to_owned(), "view".to_owned()]),
        (photo.clone(), vec!["view".to_owned()]),
    ];
    expected.sort();
    assert_eq!(permissions, expected);
    // Grant §3.3.5.1: the old RPT is revoked.
    assert_eq!(
        introspect(&auth, &pat, &first).await,
        json!({"active": false})
    );

    // An unknown `rpt` cannot be upgraded: upgraded is false.
    let ticket = ticket_for(&auth, &pat, &id, &["view"]).await;
    let body = json(grant(&auth, &ticket, Some(&bob), &[("rpt", "unknown")]).await).await;
    assert_eq!(body["upgraded"], false);
    assert_eq!(
        introspect(&auth, &pat, body["access_token"].as_str().unwrap()).await["permissions"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn need_info_then_retry_with_claims() {
    let auth = spawn().await;
    let (pat, id) = album(&auth).await;
    let ticket = ticket_for(&auth, &pat, &id, &["view"]).await;
    let body = assert_error(grant(&auth, &ticket, None, &[]).await, 403, "need_info").await;
    assert_eq!(
        body["required_claims"][0]["claim_token_format"],
        json!([ID_TOKEN_FORMAT])
    );
    assert_eq!(body["required_claims"][0]["issuer"], json!([auth.issuer()]));
    let next = body["ticket"].as_str().unwrap();

    let bob = id_token(&auth, BOB).await;
    let rpt = rpt(grant(&auth, next, Some(&bob), &[]).await).await;
    assert_eq!(introspect(&auth, &pat, &rpt).await["sub"], "bob");
}

#[tokio::test]
async fn anyone_policy_needs_identity_and_grants_any_user() {
    let auth = builder()
        .policy(Policy::resource("album").scopes(["view"]).anyone())
        .spawn()
        .await
        .unwrap();
    let (pat, id) = album(&auth).await;
    let ticket = ticket_for(&auth, &pat, &id, &["view"]).await;
    let body = assert_error(grant(&auth, &ticket, None, &[]).await, 403, "need_info").await;
    let alice = id_token(&auth, ALICE).await;
    let rpt = rpt(grant(&auth, body["ticket"].as_str().unwrap(), Some(&alice), &[]).await).await;
    assert_eq!(introspect(&auth, &pat, &rpt).await["sub"], "alice");
    // An ID token minted through the handle works the same.
    let ticket = ticket_for(&auth, &pat, &id, &["view"]).await;
    let minted = auth.mint_id_token("bob", APP.0);
    rpt_ok(grant(&auth, &ticket, Some(&minted), &[]).await).await;
}

async fn rpt_ok(response: reqwest::Response) {
    assert_eq!(response.status().as_u16(), 200);
}

fn approval_server() -> uma_test_as::AuthServerBuilder {
    builder().policy(Policy::resource("album").scopes(["edit"]).owner_approval())
}

#[tokio::test]
async fn request_submitted_then_owner_approves_through_the_handle() {
    let auth = approval_server().spawn().await.unwrap();
    let (pat, id) = album(&auth).await;
    let ticket = ticket_for(&auth, &pat, &id, &["edit"]).await;
    let bob = id_token(&auth, BOB).await;
    let body = assert_error(
        grant(&auth, &ticket, Some(&bob), &[]).await,
        403,
        "request_submitted",
    )
    .await;
    let next = body["ticket"].as_str().unwrap().to_owned();
    assert_ne!(next, ticket);

    let pending = auth.pending_requests("alice");
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].requester, "bob");
    assert_eq!(pending[0].client_id, APP.0);
    assert_eq!(pending[0].resource_id, id);
    assert_eq!(pending[0].scopes, ["edit"]);
    assert!(auth.pending_requests("bob").is_empty());

    // Still pending: another request_submitted with yet another ticket, no second request.
    let body = assert_error(
        grant(&auth, &next, None, &[]).await,
        403,
        "request_submitted",
    )
    .await;
    let next = body["ticket"].as_str().unwrap().to_owned();
    assert_eq!(auth.pending_requests("alice").len(), 1);

    assert!(auth.approve(&pending[0].id));
    assert!(!auth.approve(&pending[0].id), "already decided");
    assert!(auth.pending_requests("alice").is_empty());
    // The same client gets the RPT with the ticket; the requester is remembered.
    let rpt = rpt(grant(&auth, &next, None, &[]).await).await;
    let answer = introspect(&auth, &pat, &rpt).await;
    assert_eq!(answer["sub"], "bob");
    assert_eq!(answer["permissions"][0]["resource_scopes"], json!(["edit"]));
}

#[tokio::test]
async fn request_submitted_then_owner_approves_over_http() {
    let auth = approval_server().spawn().await.unwrap();
    let (pat, id) = album(&auth).await;
    let ticket = ticket_for(&auth, &pat, &id, &["edit"]).await;
    let body = assert_error(
        grant(&auth, &ticket, None, &[]).await,
        403,
        "request_submitted",
    )
    .await;
    let next = body["ticket"].as_str().unwrap().to_owned();

    let admin = auth.endpoint_url(Endpoint::Admin);
    assert_error(
        http().get(&admin).send().await.unwrap(),
        401,
        "invalid_client",
    )
    .await;
    assert_error(
        http()
            .get(&admin)
            .basic_auth("alice", Some("wrong"))
            .send()
            .await
            .unwrap(),
        401,
        "invalid_client",
    )
    .await;
    let bobs = json(
        http()
            .get(&admin)
            .basic_auth("bob", Some("bob-pw"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(bobs, json!([]));
    let list = json(
        http()
            .get(&admin)
            .basic_auth("alice", Some("alice-pw"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    // Without an ID token the requester is the client.
    assert_eq!(list[0]["requester"], APP.0);
    assert_eq!(list[0]["resource_id"], id.as_str());
    let request_id = list[0]["id"].as_str().unwrap();

    // Bob cannot decide alice's request.
    let response = http()
        .post(format!("{admin}/{request_id}/approve"))
        .basic_auth("bob", Some("bob-pw"))
        .send()
        .await
        .unwrap();
    assert_error(response, 404, "not_found").await;
    let response = http()
        .post(format!("{admin}/{request_id}/approve"))
        .basic_auth("alice", Some("alice-pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        json(response).await,
        json!({"id": request_id, "status": "approved"})
    );
    let again = http()
        .post(format!("{admin}/{request_id}/deny"))
        .basic_auth("alice", Some("alice-pw"))
        .send()
        .await
        .unwrap();
    assert_error(again, 409, "invalid_request").await;

    // The approved ticket is bound to photo-app: another client is refused (and spends it).
    let stolen = grant_as(&auth, RS, &next, None, &[]).await;
    assert_error(stolen, 400, "invalid_grant").await;
    assert_error(grant(&auth, &next, None, &[]).await, 400, "invalid_grant").await;
    // A new ticket means a new approval request.
    let ticket = ticket_for(&auth, &pat, &id, &["edit"]).await;
    let body = assert_error(
        grant(&auth, &ticket, None, &[]).await,
        403,
        "request_submitted",
    )
    .await;
    let next = body["ticket"].as_str().unwrap();
    let request_id = auth.pending_requests("alice")[0].id.clone();
    let response = http()
        .post(format!("{admin}/{request_id}/approve"))
        .basic_auth("alice", Some("alice-pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    rpt(grant(&auth, next, None, &[]).await).await;
    assert_eq!(auth.count(Endpoint::Admin), 8);
}

#[tokio::test]
async fn owner_denial_is_request_denied() {
    let auth = approval_server().spawn().await.unwrap();
    let (pat, id) = album(&auth).await;
    let ticket = ticket_for(&auth, &pat, &id, &["edit"]).await;
    let body = assert_error(
        grant(&auth, &ticket, None, &[]).await,
        403,
        "request_submitted",
    )
    .await;
    let request = auth.pending_requests("alice").remove(0);
    let admin = auth.endpoint_url(Endpoint::Admin);
    let response = http()
        .post(format!("{admin}/{}/deny", request.id))
        .basic_auth("alice", Some("alice-pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(json(response).await["status"], "denied");
    assert!(!auth.deny(&request.id));
    assert_error(
        grant(&auth, body["ticket"].as_str().unwrap(), None, &[]).await,
        403,
        "request_denied",
    )
    .await;
}

#[tokio::test]
async fn partial_grants_are_denied_whole() {
    let auth = spawn().await;
    let (pat, id) = album(&auth).await;
    // bob may view but not edit: all or nothing.
    let ticket = ticket_for(&auth, &pat, &id, &["view", "edit"]).await;
    let bob = id_token(&auth, BOB).await;
    assert_error(
        grant(&auth, &ticket, Some(&bob), &[]).await,
        403,
        "request_denied",
    )
    .await;
    // A ticket for no scopes of the album is granted when a policy for it passes.
    let ticket = ticket_for(&auth, &pat, &id, &[]).await;
    let rpt = rpt(grant(&auth, &ticket, Some(&bob), &[]).await).await;
    assert_eq!(
        introspect(&auth, &pat, &rpt).await["permissions"][0]["resource_scopes"],
        json!([])
    );
}

#[tokio::test]
async fn expired_tickets_are_invalid_grant() {
    let auth = builder()
        .policy(Policy::resource("album").users(["bob"]))
        .ticket_ttl(Duration::from_millis(300))
        .spawn()
        .await
        .unwrap();
    let (pat, id) = album(&auth).await;
    let ticket = ticket_for(&auth, &pat, &id, &["view"]).await;
    let bob = id_token(&auth, BOB).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let body = assert_error(
        grant(&auth, &ticket, Some(&bob), &[]).await,
        400,
        "invalid_grant",
    )
    .await;
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("expired")
    );
}

#[tokio::test]
async fn expired_rpts_and_pats_become_inactive() {
    let auth = builder()
        .policy(Policy::resource("album").users(["bob"]))
        .rpt_ttl(Duration::from_secs(1))
        .spawn()
        .await
        .unwrap();
    let (pat, id) = album(&auth).await;
    let bob = id_token(&auth, BOB).await;
    let response = grant(
        &auth,
        &ticket_for(&auth, &pat, &id, &["view"]).await,
        Some(&bob),
        &[],
    )
    .await;
    let body = json(response).await;
    assert_eq!(body["expires_in"], 1);
    let rpt = body["access_token"].as_str().unwrap();
    let answer = introspect(&auth, &pat, rpt).await;
    assert_eq!(answer["active"], true);
    let exp = answer["exp"].as_i64().unwrap();
    // exp is a whole second at least 1 s ahead: wait until it has passed.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let wait = Duration::from_millis(
        u64::try_from(exp * 1000 - i64::try_from(now.as_millis()).unwrap()).unwrap() + 50,
    );
    tokio::time::sleep(wait).await;
    assert_eq!(introspect(&auth, &pat, rpt).await, json!({"active": false}));
}

#[tokio::test]
async fn grant_input_errors() {
    let auth = spawn().await;
    let (pat, id) = album(&auth).await;
    let bob = id_token(&auth, BOB).await;

    // Missing ticket.
    let response = http()
        .post(auth.endpoint_url(Endpoint::Token))
        .basic_auth(APP.0, Some(APP.1))
        .form(&[("grant_type", UMA_TICKET_GRANT)])
        .send()
        .await
        .unwrap();
    assert_error(response, 400, "invalid_request").await;

    // claim_token without its format, and an unsupported format.
    let ticket = ticket_for(&auth, &pat, &id, &["view"]).await;
    assert_error(
        grant(&auth, &ticket, None, &[("claim_token", bob.as_str())]).await,
        400,
        "invalid_request",
    )
    .await;
    assert_error(
        grant(
            &auth,
            &ticket,
            None,
            &[
                ("claim_token", bob.as_str()),
                ("claim_token_format", "urn:ietf:params:oauth:token-type:jwt"),
            ],
        )
        .await,
        400,
        "invalid_request",
    )
    .await;
    // Those did not spend the ticket; a forged claim token does.
    let forged = format!("{bob}x");
    assert_error(
        grant(&auth, &ticket, Some(&forged), &[]).await,
        400,
        "invalid_grant",
    )
    .await;
    assert_error(
        grant(&auth, &ticket, Some(&bob), &[]).await,
        400,
        "invalid_grant",
    )
    .await;

    // An RPT is not an ID token, even when it is a JWT signed by this server.
    let jwt_auth = builder()
        .policy(Policy::resource("album").users(["bob"]))
        .rpt_format(uma_test_as::RptFormat::Jwt)
        .spawn()
        .await
        .unwrap();
    let rpt_jwt = jwt_auth.mint_rpt(uma_test_as::RptSpec::active_for("x", ["view"], 60));
    let (jwt_pat, jwt_id) = album(&jwt_auth).await;
    let ticket = ticket_for(&jwt_auth, &jwt_pat, &jwt_id, &["view"]).await;
    assert_error(
        grant(&jwt_auth, &ticket, Some(&rpt_jwt), &[]).await,
        400,
        "invalid_grant",
    )
    .await;
    // An ID token from another server is refused too.
    let ticket = ticket_for(&auth, &pat, &id, &["view"]).await;
    let foreign = jwt_auth.mint_id_token("bob", APP.0);
    assert_error(
        grant(&auth, &ticket, Some(&foreign), &[]).await,
        400,
        "invalid_grant",
    )
    .await;

    // `scope` naming a scope no resource of the ticket has → invalid_scope.
    let ticket = ticket_for(&auth, &pat, &id, &["view"]).await;
    assert_error(
        grant(&auth, &ticket, Some(&bob), &[("scope", "print")]).await,
        400,
        "invalid_scope",
    )
    .await;
    // A registered scope is fine but does not widen the grant.
    let ticket = ticket_for(&auth, &pat, &id, &["view"]).await;
    let rpt = rpt(grant(&auth, &ticket, Some(&bob), &[("scope", "edit view")]).await).await;
    assert_eq!(
        introspect(&auth, &pat, &rpt).await["permissions"][0]["resource_scopes"],
        json!(["view"])
    );

    // A resource deleted after the ticket was issued is denied.
    let ticket = ticket_for(&auth, &pat, &id, &["view"]).await;
    let deleted = http()
        .delete(format!(
            "{}/{id}",
            auth.endpoint_url(Endpoint::ResourceRegistration)
        ))
        .bearer_auth(&pat)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status().as_u16(), 204);
    assert_error(
        grant(&auth, &ticket, Some(&bob), &[]).await,
        403,
        "request_denied",
    )
    .await;
}
