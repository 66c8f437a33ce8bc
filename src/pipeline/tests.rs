//! The pipeline through a built layer and a real `uma-test-as`, driven in process (no HTTP
//! server): its metric, and its hit path for declared resources.

use std::convert::Infallible;

use http::{HeaderValue, Method, Request, Response, StatusCode};
use tower::ServiceExt as _;
use tower_layer::Layer as _;
use uma_test_as::{AuthServer, Policy, RptPermission, RptSpec, TestAs};

use crate::metrics::test_recorder::TestRecorder;
use crate::registration::ID_READS;
use crate::{ResourceDecl, ResourceMap, Route, UmaLayer};

async fn start_as() -> TestAs {
    AuthServer::builder()
        .client("rs", "rs-secret")
        .user("alice", "alice-pw")
        .policy(Policy::resource("album").scopes(["view"]).users(["bob"]))
        .spawn()
        .await
        .expect("the test AS starts")
}

/// A layer protecting `GET /albums/{id}` (scope `view` of the declared resource `album`),
/// with `/health` public.
async fn layer(as_: &TestAs) -> UmaLayer {
    UmaLayer::discover(as_.issuer(), "rs", "rs-secret")
        .insecure_allow_http()
        .resources(
            ResourceMap::new()
                .route(
                    Route::new("/albums/{id}")
                        .declare(ResourceDecl::new("album", ["view"]).with_owner("alice"))
                        .scopes(Method::GET, ["view"]),
                )
                .route(Route::public("/health")),
        )
        .build()
        .await
        .expect("the layer builds")
}

fn rpt(as_: &TestAs, resource_id: &str) -> String {
    as_.mint_rpt(RptSpec {
        sub: Some("bob".into()),
        exp: Some(crate::clock::Clock::now_unix(&crate::clock::SystemClock) + 600),
        permissions: vec![RptPermission::new(resource_id, ["view"])],
        ..RptSpec::default()
    })
}

/// The status of one request through `layer` in front of a service that answers 200.
async fn status(layer: &UmaLayer, method: Method, path: &str, token: Option<&str>) -> StatusCode {
    let svc = layer.layer(tower::service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(String::new()))
    }));
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .body(())
        .expect("a request");
    if let Some(token) = token {
        let value = HeaderValue::try_from(format!("Bearer {token}")).expect("header");
        req.headers_mut().insert(http::header::AUTHORIZATION, value);
    }
    svc.oneshot(req).await.expect("infallible").status()
}

/// The hit path reads a declared resource's id from the route's binding: no registry lookup
/// (its lock, a copy of the id) per request.
#[tokio::test]
async fn declared_names_are_bound_and_a_hit_does_not_ask_the_registry() {
    let as_ = start_as().await;
    let layer = layer(&as_).await;
    let album = as_.resource_id("album").expect("registered at build");
    let token = rpt(&as_, &album);
    let reads = || ID_READS.with(std::cell::Cell::get);
    let before = reads();
    // A miss, then hits.
    for _ in 0..3 {
        assert_eq!(
            status(&layer, Method::GET, "/albums/1", Some(&token)).await,
            StatusCode::OK
        );
    }
    assert_eq!(reads() - before, 0, "the registry was asked for the id");
}

/// One `uma_decisions_total` increment per request, labelled with its outcome, on the
/// synchronous and the asynchronous paths alike.
#[tokio::test]
async fn each_request_is_counted_once_with_its_outcome() {
    let recorder = TestRecorder::default();
    let _recorder = ::metrics::set_default_local_recorder(&recorder);
    let as_ = start_as().await;
    let layer = layer(&as_).await;
    let album = as_.resource_id("album").expect("registered at build");
    let token = rpt(&as_, &album);
    let requests = [
        (Method::GET, "/health", None, StatusCode::OK),
        (Method::GET, "/elsewhere", None, StatusCode::FORBIDDEN),
        (Method::GET, "/albums/%2e%2e", None, StatusCode::BAD_REQUEST),
        (
            Method::DELETE,
            "/albums/1",
            None,
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (Method::GET, "/albums/1", None, StatusCode::UNAUTHORIZED),
        (
            Method::GET,
            "/albums/1",
            Some("junk"),
            StatusCode::UNAUTHORIZED,
        ),
        (
            Method::GET,
            "/albums/1",
            Some(token.as_str()),
            StatusCode::OK,
        ),
        (
            Method::GET,
            "/albums/1",
            Some(token.as_str()),
            StatusCode::OK,
        ),
    ];
    for (method, path, token, expected) in requests {
        assert_eq!(
            status(&layer, method, path, token).await,
            expected,
            "{path}"
        );
    }
    let counted: Vec<(&str, u64)> = super::Outcome::ALL
        .iter()
        .map(|o| {
            let series = format!("uma_decisions_total{{outcome={}}}", o.as_str());
            (o.as_str(), recorder.counter(&series))
        })
        .filter(|(_, n)| *n > 0)
        .collect();
    assert_eq!(
        counted,
        [
            ("allowed", 2),
            ("challenged", 2),
            ("unmapped", 1),
            ("bad_request", 1),
            ("method_not_allowed", 1),
            ("public", 1),
        ]
    );
}
