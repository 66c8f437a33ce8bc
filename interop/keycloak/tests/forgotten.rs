//! A resource deleted in Keycloak while the layer runs (issue 13, "When the AS forgets a
//! resource"): an admin deletes it through the admin API, as in the console; Keycloak then
//! answers ticket requests for its id with `400 invalid_resource_id` (FedAuthz §4.3). The
//! layer registers it again from its declaration and asks the ticket once more: the next
//! request gets `401` with a ticket Keycloak honours, and bob's RPT for the new id gives
//! `200`. Run by `interop/keycloak/test.sh`.

#![allow(
    clippy::unwrap_used,
    reason = "tests against a live server: a failure is a test failure"
)]

mod common;

use common::*;
use http::{Method, StatusCode};
use serde_json::json;
use tower_uma::{ResourceDecl, ResourceMap, Route};

#[tokio::test]
async fn a_resource_deleted_through_the_admin_api_is_registered_again() {
    require_keycloak().await;
    let name = unique("album-forgotten");
    let layer = discover(RS_ID, RS_SECRET)
        .await
        .resources(
            ResourceMap::new().route(
                Route::new("/albums/{id}")
                    .declare(ResourceDecl::new(&name, ["view", "delete"]))
                    .scopes(Method::GET, ["view"])
                    .scopes(Method::DELETE, ["delete"]),
            ),
        )
        .build()
        .await
        .unwrap();
    let old_id = layer.resource_id(&name).unwrap();
    let url = format!("{}/albums/1", protected(layer.clone()).await);
    ticket_of(&get(&url, Method::GET, None).await);

    // An admin deletes it.
    let admin = Admin::login().await;
    let rs = admin.client_uuid(RS_ID).await;
    let deleted = admin
        .call(
            Method::DELETE,
            &format!("/clients/{rs}/authz/resource-server/resource/{old_id}"),
            None,
        )
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text);
    let pat = pat_of(RS_ID, RS_SECRET).await;
    assert_eq!(resource(&pat, &old_id).await.status, StatusCode::NOT_FOUND);

    // The next request is challenged with a ticket for the resource registered again.
    let first = get(&url, Method::GET, None).await;
    assert_eq!(first.status(), StatusCode::UNAUTHORIZED);
    let new_id = layer.resource_id(&name).unwrap();
    assert_ne!(new_id, old_id);
    assert_eq!(resource(&pat, &new_id).await.body["name"], json!(name));
    assert!(layer.as_health().resources_known());

    // bob's RPT from Keycloak for that ticket opens it.
    let rpt = rpt("bob", &ticket_of(&first)).await;
    let ok = answer(get(&url, Method::GET, Some(&rpt)).await).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    assert_eq!(ok.body["principal"]["resource_id"], json!(new_id));

    unregister(&pat, &new_id).await;
}
