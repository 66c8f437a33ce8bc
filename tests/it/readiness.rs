//! In-process tests of the service contract with `tower-test`: `poll_ready` is delegated, the
//! ready service is the one called, and requests the layer refuses by itself never reach the
//! inner service. No AS is needed: these paths make no AS call.

use http::{Request, Response, StatusCode};
use tokio_test::{assert_pending, assert_ready_ok};
use tower::{Layer, ServiceExt};
use tower_test::mock;
use tower_uma::{Rejection, ResourceMap, Route, UmaLayer};

async fn layer() -> UmaLayer {
    UmaLayer::builder("https://127.0.0.1:1", "rs", "secret")
        .token_endpoint("https://127.0.0.1:1/token")
        .introspection_endpoint("https://127.0.0.1:1/introspect")
        .permission_endpoint("https://127.0.0.1:1/perm")
        .resources(
            ResourceMap::new().route(Route::public("/health")).route(
                Route::new("/albums/{id}")
                    .resource_id("r1")
                    .any_method(["view"]),
            ),
        )
        .build()
        .await
        .expect("a static configuration builds without network")
}

#[tokio::test]
async fn poll_ready_is_delegated_and_public_routes_pass() {
    let (service, mut handle) = mock::pair::<Request<String>, Response<String>>();
    let mut service = mock::Spawn::new(layer().await.layer(service));

    handle.allow(0);
    assert_pending!(service.poll_ready());
    handle.allow(1);
    assert_ready_ok!(service.poll_ready());

    let response = service.call(
        Request::get("/health")
            .body(String::new())
            .expect("request"),
    );
    let (request, send) = handle
        .next_request()
        .await
        .expect("the inner service is called");
    assert_eq!(request.uri().path(), "/health");
    send.send_response(Response::new("ok".to_owned()));
    let response = response.await.expect("inner response");
    assert_eq!(response.body(), "ok");
}

#[tokio::test]
async fn refused_requests_never_reach_the_inner_service() {
    let (service, mut handle) = mock::pair::<Request<String>, Response<String>>();
    handle.allow(10);
    let service = layer().await.layer(service);
    for (path, auth, status, rejection) in [
        ("/nowhere", None, StatusCode::FORBIDDEN, Rejection::Unmapped),
        (
            "/albums/../x",
            None,
            StatusCode::BAD_REQUEST,
            Rejection::BadRequest,
        ),
        (
            "/albums/1",
            Some("Bearer a b"),
            StatusCode::BAD_REQUEST,
            Rejection::BadRequest,
        ),
    ] {
        let mut req = Request::get(path);
        if let Some(a) = auth {
            req = req.header(http::header::AUTHORIZATION, a);
        }
        let resp = service
            .clone()
            .oneshot(req.body(String::new()).expect("request"))
            .await
            .expect("a response, never an error");
        assert_eq!(resp.status(), status, "{path}");
        assert_eq!(resp.extensions().get::<Rejection>(), Some(&rejection));
        assert!(resp.body().is_empty());
    }
    // The unreachable AS (port 1 refuses connections) answers a tokenless protected request with 403 + Warning.
    let resp = service
        .clone()
        .oneshot(
            Request::get("/albums/1")
                .body(String::new())
                .expect("request"),
        )
        .await
        .expect("a response");
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        resp.extensions().get::<Rejection>(),
        Some(&Rejection::AsUnreachable)
    );
    assert!(handle.next_request().now_or_never_is_none());
}

trait NowOrNever {
    fn now_or_never_is_none(self) -> bool;
}

impl<F: std::future::Future> NowOrNever for F {
    fn now_or_never_is_none(self) -> bool {
        let mut task = tokio_test::task::spawn(self);
        task.poll().is_pending()
    }
}
