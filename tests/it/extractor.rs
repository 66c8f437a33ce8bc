//! The `UmaPrincipal` axum extractor (feature `axum`) behind a real layer and AS.

use crate::common::*;
use axum::Router;
use axum::routing::get;
use http::{Method, StatusCode};
use tower_uma::{ResourceMap, Route, UmaPrincipal};

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
    let fp = tower_uma::Rpt::new(rpt.clone()).fingerprint().to_string();
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
