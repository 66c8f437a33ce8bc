//! The `UmaPrincipal` axum extractor (feature `axum`) behind a real layer and AS.

use crate::common::*;
use axum::Router;
use axum::routing::get;
use http::{Method, StatusCode};
use tower_uma::refusal::{RefusalBody, RefusalBodyLayer};
use tower_uma::{ResourceMap, Route, UmaPrincipal};
use uma_test_as::Endpoint;

async fn whoami(p: UmaPrincipal) -> String {
    format!(
        "{}|{}|{}|{}|{}",
        p.subject().unwrap_or_default(),
        p.client_id().unwrap_or_default(),
        p.resource_id(),
        p.scopes().join(","),
        p.token_fingerprint()
    )
}

async fn maybe(p: Option<UmaPrincipal>) -> &'static str {
    if p.is_some() { "principal" } else { "none" }
}

#[tokio::test]
async fn handlers_read_the_granted_permissions() {
    let as_ = start_as().await;
    let r = register_invoice(&as_);
    let map = ResourceMap::new()
        .route(
            Route::new("/invoices/{id}")
                .resource_id(&r)
                .scopes(Method::GET, ["read"]),
        )
        .route(Route::public("/public"))
        .route(Route::public("/public-strict"));
    let layer = discover(&as_)
        .await
        .resources(map)
        .build()
        .await
        .expect("builds");
    let app = Router::new()
        .route("/invoices/{id}", get(whoami))
        .route("/public", get(maybe))
        .route("/public-strict", get(whoami))
        .layer(layer);
    let url = format!("http://{}", serve(app).await);
    let rpt = rpt_for(&as_, &r, &["read"]);
    let resp = http()
        .get(format!("{url}/invoices/7"))
        .bearer_auth(&rpt)
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.text().await.expect("body");
    let fp = tower_uma::token::Fingerprint::of(rpt.as_bytes()).to_string();
    assert_eq!(body, format!("bob|{APP_ID}|{r}|read|{fp}"));
    assert!(!body.contains(&rpt));

    let resp = http()
        .get(format!("{url}/public"))
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.text().await.expect("body"), "none");
    let resp = http()
        .get(format!("{url}/public-strict"))
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        resp.text().await.expect("body"),
        "this request was not authorised by UmaLayer"
    );
}

/// RFC 9457 problem details for the layer's refusals.
fn problem(refused: &tower_uma::refusal::RefusedRequest<'_>) -> Option<RefusalBody> {
    let body = serde_json::json!({
        "type": "about:blank",
        "title": format!("{:?}", refused.rejection()),
        "status": refused.status().as_u16(),
        "instance": refused.uri().path(),
    });
    Some(RefusalBody::new(
        http::HeaderValue::from_static("application/problem+json"),
        body.to_string(),
    ))
}

/// A `RefusalBodyLayer` outside the UMA layer renders its refusals, and only those, as
/// problem+json; the challenge, the `Warning` and the status stay the layer's.
#[tokio::test]
async fn refusals_can_be_rendered_without_losing_the_challenge() {
    let as_ = start_as().await;
    let r = register_invoice(&as_);
    let layer = discover(&as_)
        .await
        .resources(
            ResourceMap::new().route(
                Route::new("/invoices/{id}")
                    .resource_id(&r)
                    .scopes(Method::GET, ["read"]),
            ),
        )
        .build()
        .await
        .expect("builds");
    let app = Router::new()
        .route("/invoices/{id}", get(whoami))
        .route("/elsewhere", get(|| async { "unmapped" }))
        .layer(layer)
        .layer(RefusalBodyLayer::new(problem));
    let url = format!("http://{}", serve(app).await);
    let get = |path: &'static str, token: Option<String>| {
        let url = url.clone();
        async move {
            let req = http().get(format!("{url}{path}"));
            let req = match token {
                Some(t) => req.bearer_auth(t),
                None => req,
            };
            req.send().await.expect("answer")
        }
    };
    let json = |text: &str| serde_json::from_str::<serde_json::Value>(text).expect("JSON");

    // No token: the UMA challenge, untouched, with a problem+json body.
    let resp = get("/invoices/7", None).await;
    expect_challenge(&resp, &as_);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let body = json(&resp.text().await.expect("body"));
    assert_eq!(body["status"], 401);
    assert_eq!(body["title"], "Challenged");
    assert_eq!(body["instance"], "/invoices/7");

    // No route: 403, rendered.
    let resp = get("/elsewhere", None).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(json(&resp.text().await.expect("body"))["title"], "Unmapped");

    // Let through: the handler's answer passes untouched.
    let resp = get("/invoices/7", Some(rpt_for(&as_, &r, &["read"]))).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()
            .get("content-type")
            .is_none_or(|t| t != "application/problem+json")
    );
    assert!(resp.text().await.expect("body").starts_with("bob|"));

    // The AS cannot give a ticket: 403 with the Warning, rendered.
    as_.set_down(Endpoint::Permission, true);
    let resp = get("/invoices/7", None).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        resp.headers()["warning"],
        "199 - \"UMA Authorization Server Unreachable\""
    );
    assert_eq!(
        json(&resp.text().await.expect("body"))["title"],
        "AsUnreachable"
    );
}
