//! Method overrides (`X-HTTP-Method-Override` and friends, `_method` in the query): refused
//! by default on every route, or decided on and rewritten with `MethodOverride::Decide`, so
//! that the service behind the layer never runs a method the layer did not decide on.

use std::sync::{Arc, Mutex};

use crate::common::*;
use axum::Router;
use axum::body::Body;
use axum::routing::any;
use http::{Method, Request, StatusCode};
use tower_uma::{
    EnforcementMode, ResourceMap, Route, UmaLayer, UmaLayerBuilder,
    method_override::MethodOverride, resources::Unmapped,
};
use uma_test_as::{Endpoint, ResourceDescription, TestAs};

/// What the protected service received: method, URI and header names, in order.
type Seen = Arc<Mutex<Vec<(Method, String, Vec<String>)>>>;

/// Serves a recording service behind `layer`; returns its base URL and what it saw.
async fn recording(layer: UmaLayer) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let sink = Arc::clone(&seen);
    let app = Router::new()
        .fallback(any(move |req: Request<Body>| {
            let sink = Arc::clone(&sink);
            async move {
                let names = req.headers().keys().map(|n| n.to_string()).collect();
                sink.lock().expect("not poisoned").push((
                    req.method().clone(),
                    req.uri().to_string(),
                    names,
                ));
                "ok"
            }
        }))
        .layer(layer);
    (format!("http://{}", serve(app).await), seen)
}

/// The resource `note` (scopes read, write, delete) owned by alice; returns its id.
fn register_note(as_: &TestAs) -> String {
    as_.register_resource(
        "alice",
        ResourceDescription {
            name: Some("note".into()),
            resource_scopes: vec!["read".into(), "write".into(), "delete".into()],
            ..ResourceDescription::default()
        },
    )
}

/// `GET /notes/{id}` needs read, `POST` write, `DELETE` delete; `/health` is public and every
/// other path is let through unchecked.
async fn builder(as_: &TestAs, note: &str) -> UmaLayerBuilder {
    let map = ResourceMap::new()
        .route(
            Route::new("/notes/{id}")
                .resource_id(note)
                .scopes(Method::GET, ["read"])
                .scopes(Method::POST, ["write"])
                .scopes(Method::DELETE, ["delete"]),
        )
        .route(Route::public("/health"));
    discover(as_).await.resources(map).unmapped(Unmapped::Allow)
}

/// [`builder`]'s layer with `MethodOverride::Decide`.
async fn deciding(as_: &TestAs, note: &str) -> UmaLayer {
    builder(as_, note)
        .await
        .method_override(MethodOverride::Decide)
        .build()
        .await
        .expect("builds")
}

async fn send(
    url: &str,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    rpt: Option<&str>,
) -> reqwest::Response {
    let mut req = http().request(method, format!("{url}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(rpt) = rpt {
        req = req.bearer_auth(rpt);
    }
    req.send().await.expect("an answer")
}

/// Every spelling of every signal, on a protected, a public and an unmapped path, with an RPT
/// that grants the request line's method: 400, the service is not called, and the AS is not
/// asked anything. A permissive or disabled layer refuses them too.
#[tokio::test]
async fn method_overrides_are_refused_by_default_on_every_route() {
    let as_ = start_as().await;
    let note = register_note(&as_);
    let rpt = rpt_for(&as_, &note, &["write", "read"]);
    let signals: [(&str, &[(&str, &str)]); 10] = [
        ("/notes/1", &[("X-HTTP-Method-Override", "DELETE")]),
        ("/notes/1", &[("X-HTTP-Method", "DELETE")]),
        ("/notes/1", &[("X-Method-Override", "DELETE")]),
        ("/notes/1", &[("X_HTTP_Method_Override", "DELETE")]),
        ("/notes/1", &[("X.HTTP.Method.Override", "DELETE")]),
        ("/notes/1?_method=DELETE", &[]),
        ("/notes/1?page=2&%5Fmethod=DELETE", &[]),
        ("/notes/1?+.method=DELETE", &[]),
        // PHP (Symfony, Laravel) cuts the decoded name at its first NUL byte.
        ("/notes/1?_method%00=DELETE", &[]),
        // ASP.NET MVC reads the override header's name from the query too.
        ("/notes/1?X-HTTP-Method-Override=DELETE", &[]),
    ];
    for mode in [
        EnforcementMode::Enforcing,
        EnforcementMode::Permissive,
        EnforcementMode::Disabled,
    ] {
        let layer = builder(&as_, &note)
            .await
            .enforcement(mode)
            .build()
            .await
            .expect("builds");
        let (url, seen) = recording(layer).await;
        for (path, headers) in signals {
            let resp = send(&url, Method::POST, path, headers, Some(&rpt)).await;
            assert_eq!(
                resp.status(),
                StatusCode::BAD_REQUEST,
                "{mode:?} {path} {headers:?}"
            );
        }
        for path in ["/health?_method=DELETE", "/elsewhere?_method=DELETE"] {
            let resp = send(&url, Method::GET, path, &[], None).await;
            assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{mode:?} {path}");
        }
        assert!(
            seen.lock().unwrap().is_empty(),
            "{:?}",
            seen.lock().unwrap()
        );
        // The same requests without a signal pass.
        let resp = send(&url, Method::POST, "/notes/1?page=2", &[], Some(&rpt)).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let resp = send(&url, Method::GET, "/health?method=x", &[], None).await;
        assert_eq!(resp.status(), StatusCode::OK);
    }
    assert_eq!(
        as_.count(Endpoint::Introspection),
        2,
        "one introspection per checking layer, for the requests without a signal"
    );
    assert_eq!(as_.count(Endpoint::Permission), 0);
}

/// `MethodOverride::Decide`: a POST that overrides to DELETE is decided under DELETE's rule
/// (a ticket for `delete`, although the RPT grants POST's `write`), and once granted the
/// service receives a DELETE without the signals, the rest of the query intact.
#[tokio::test]
async fn decide_runs_the_overridden_method_without_the_signal() {
    let as_ = start_as().await;
    let note = register_note(&as_);
    let layer = deciding(&as_, &note).await;
    let (url, seen) = recording(layer).await;

    let writer = rpt_for(&as_, &note, &["write"]);
    for (path, headers) in [
        ("/notes/1", &[("X-HTTP-Method-Override", "DELETE")][..]),
        ("/notes/1?_method=DELETE", &[][..]),
    ] {
        let resp = send(&url, Method::POST, path, headers, Some(&writer)).await;
        expect_challenge(&resp, &as_);
    }
    let asked: Vec<_> = permission_bodies(&as_)
        .into_iter()
        .map(|b| b[0]["resource_scopes"].clone())
        .collect();
    assert_eq!(
        asked,
        [serde_json::json!(["delete"]), serde_json::json!(["delete"])]
    );

    let deleter = rpt_for(&as_, &note, &["delete"]);
    let resp = send(
        &url,
        Method::POST,
        "/notes/1?a=1&_method=DELETE;b=%5F",
        &[("x_http_method", "DELETE"), ("x-other", "kept")],
        Some(&deleter),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let (method, uri, names) = seen.lock().unwrap().pop().expect("the service was called");
    assert_eq!(method, Method::DELETE);
    assert_eq!(uri, "/notes/1?a=1;b=%5F");
    assert!(names.iter().any(|n| n == "x-other"), "{names:?}");
    assert!(
        !names.iter().any(|n| n.contains("method")),
        "a signal reached the service: {names:?}"
    );

    // Case variants of standard methods, non-methods and signals that disagree: 400.
    for (path, headers) in [
        ("/notes/1?_method=delete", &[][..]),
        ("/notes/1", &[("X-HTTP-Method-Override", "Delete")][..]),
        ("/notes/1?_method=DE%20LETE", &[][..]),
        ("/notes/1?_method=CONNECT", &[][..]),
        (
            "/notes/1?_method=GET",
            &[("X-Method-Override", "DELETE")][..],
        ),
    ] {
        let resp = send(&url, Method::POST, path, headers, Some(&deleter)).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{path} {headers:?}");
    }
    assert!(seen.lock().unwrap().is_empty());
}

/// `Decide` with the layer added by axum's `Router::layer`: axum has chosen the handler by the
/// method as sent before the layer runs, so an override that changes the method would be
/// decided as one method and run another's handler (`DELETE ?_method=GET` decided as `GET`
/// and run by the `DELETE` handler). Refused with `400` there; around the whole router the
/// same request is decided and run as `GET`. `UmaRouter` refuses `Decide` when it is built.
/// (The layer sees axum's `MatchedPath` with its `axum` feature only.)
#[cfg(feature = "axum")]
#[tokio::test]
async fn decide_inside_axums_router_refuses_an_override_that_changes_the_method() {
    let as_ = start_as().await;
    let note = register_note(&as_);
    let ran: Arc<Mutex<Vec<&'static str>>> = Arc::default();
    let app = || {
        let handler = |name: &'static str| {
            let ran = Arc::clone(&ran);
            move || async move {
                ran.lock().expect("not poisoned").push(name);
                name
            }
        };
        Router::new().route(
            "/notes/{id}",
            axum::routing::get(handler("view")).delete(handler("remove")),
        )
    };
    let layer = deciding(&as_, &note).await;
    let reader = rpt_for(&as_, &note, &["read"]);

    let inside = format!("http://{}", serve(app().layer(layer.clone())).await);
    for (path, headers) in [
        ("/notes/1?_method=GET", &[][..]),
        ("/notes/1", &[("X-HTTP-Method-Override", "GET")][..]),
    ] {
        let resp = send(&inside, Method::DELETE, path, headers, Some(&reader)).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{path} {headers:?}");
    }
    assert!(ran.lock().expect("not poisoned").is_empty());
    // An override naming the method as sent changes nothing: decided as DELETE, challenged.
    let resp = send(
        &inside,
        Method::DELETE,
        "/notes/1?_method=DELETE",
        &[],
        Some(&reader),
    )
    .await;
    expect_challenge(&resp, &as_);
    assert!(ran.lock().expect("not poisoned").is_empty());

    // Around the whole router: the router routes the method the layer rewrote.
    let wrapped = tower::Layer::layer(&layer, app());
    let around = Router::new().fallback_service(wrapped);
    let around = format!("http://{}", serve(around).await);
    let resp = send(
        &around,
        Method::DELETE,
        "/notes/1?_method=GET",
        &[],
        Some(&reader),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(*ran.lock().expect("not poisoned"), ["view"]);

    let table = tower_uma::axum::UmaRouter::<()>::new().route(
        "/notes/{id}",
        axum::routing::get(|| async { "view" }),
        |rule| rule.resource_id(&note).scopes(Method::GET, ["read"]),
    );
    let refused = table
        .build(discover(&as_).await.method_override(MethodOverride::Decide))
        .await
        .expect_err("UmaRouter cannot decide overrides");
    assert!(
        refused.to_string().contains("method overrides"),
        "{refused}"
    );
}
