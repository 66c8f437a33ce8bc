//! Keycloak's reading of scope-less permissions ("no scopes" grants every scope of the
//! resource) must only ever apply to a permission that really has no scopes: a scope list the
//! layer cannot read grants nothing. Driven end to end through a layer in the Keycloak
//! dialect, with the AS's introspection answers canned.

use crate::common::*;
use http::StatusCode;
use serde_json::{Value, json};
use uma_test_as::Endpoint;

#[tokio::test]
async fn unreadable_keycloak_scope_lists_grant_nothing() {
    let f = Flavor::Keycloak;
    let as_ = start_as_in(f).await;
    let r = register_invoice(&as_);
    // The dialect's default: scope-less permissions grant all (Keycloak's enforcer).
    let (url, calls) = protected(invoice_layer(&as_, f, &r, |b| b).await).await;
    let http = http();
    let get = |token: String| {
        let req = http.get(format!("{url}/invoices/42")).bearer_auth(token);
        async move { req.send().await.expect("the app answers") }
    };
    let answer = |permission: Value| {
        let body = json!({"active": true, "exp": now() + 60, "permissions": [permission]});
        as_.respond_next(
            Endpoint::Introspection,
            1,
            200,
            "application/json",
            &body.to_string(),
        );
    };

    let unreadable = [
        json!({"rsid": r, "scopes": "view"}),
        json!({"rsid": r, "scopes": [{"id": "1"}]}),
        json!({"rsid": r, "scopes": [7]}),
        json!({"rsid": r, "resource_id": r, "resource_scopes": [], "scopes": ["write"]}),
    ];
    for (n, permission) in unreadable.into_iter().enumerate() {
        answer(permission.clone());
        let resp = get(format!("kc-unreadable-{n}")).await;
        // Refused with a fresh challenge for `read`: the permission granted nothing.
        expect_challenge_any(&resp, &permission);
    }
    assert_eq!(
        calls.get(),
        0,
        "no unreadable scope list reached the service"
    );

    // A genuinely scope-less permission still takes the Keycloak reading, and a readable one
    // is read.
    answer(json!({"rsid": r, "rsname": "invoice"}));
    assert_eq!(get("kc-no-scopes".into()).await.status(), StatusCode::OK);
    answer(json!({"rsid": r, "scopes": [{"name": "read"}]}));
    assert_eq!(get("kc-read".into()).await.status(), StatusCode::OK);
    assert_eq!(calls.get(), 2);
}

fn expect_challenge_any(resp: &reqwest::Response, permission: &Value) {
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{permission}");
    let value = resp.headers()[http::header::WWW_AUTHENTICATE]
        .to_str()
        .expect("ascii");
    assert!(value.starts_with("UMA "), "{value}");
}
