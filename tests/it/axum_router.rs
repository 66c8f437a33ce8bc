//! `tower_uma::axum::UmaRouter` (feature `axum`) in front of a real `uma-test-as`: one route
//! table for axum's router and the layer, and the guard that refuses a request axum would
//! route to a route the layer did not decide it by.

use std::sync::Arc;

use crate::common::*;
use axum::Router;
use axum::extract::Path;
use axum::routing::{MethodRouter, get, post};
use http::{Method, StatusCode};
use tower::ServiceExt as _;
use tower_uma::axum::UmaRouter;
use tower_uma::{
    EnforcementMode, Rejection, ResourceDecl, UmaLayerBuilder, UmaPrincipal, resources::Unmapped,
};

/// Counts the calls of each handler by name.
#[derive(Clone, Default)]
struct Ran(Arc<std::sync::Mutex<Vec<&'static str>>>);

impl Ran {
    /// A GET handler named `name` that answers its name.
    fn get(&self, name: &'static str) -> MethodRouter {
        get(self.handler(name))
    }

    fn handler(
        &self,
        name: &'static str,
    ) -> impl Fn() -> std::future::Ready<&'static str> + Clone + Send + Sync + 'static {
        let ran = self.clone();
        move || {
            ran.0.lock().expect("lock").push(name);
            std::future::ready(name)
        }
    }

    fn names(&self) -> Vec<&'static str> {
        self.0.lock().expect("lock").clone()
    }
}

async fn serve_table(table: UmaRouter, layer: UmaLayerBuilder) -> String {
    serve_app(table, layer).await.0
}

/// The built app, served on loopback: its URL, and the app for in-process calls.
async fn serve_app(table: UmaRouter, layer: UmaLayerBuilder) -> (String, Router) {
    let (app, _uma): (Router, _) = table.build(layer).await.expect("the table builds");
    (format!("http://{}", serve(app.clone()).await), app)
}

/// `method` on `{url}{path}`, with `token` as bearer token if there is one.
async fn send(method: Method, url: &str, path: &str, token: Option<&str>) -> reqwest::Response {
    let req = http().request(method, format!("{url}{path}"));
    let req = match token {
        Some(token) => req.bearer_auth(token),
        None => req,
    };
    req.send().await.expect("the app answers")
}

/// Bob's RPT by the UMA grant, from the challenge of `resp`.
async fn rpt_from_challenge(as_: &uma_test_as::TestAs, resp: &reqwest::Response) -> String {
    let ticket = expect_challenge(resp, as_);
    let client = UmaClient::new(as_);
    let id_token = client.id_token("bob", BOB_PW).await;
    let (status, answer) = client.rpt(&ticket, Some(&id_token)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer["access_token"].as_str().expect("an RPT").to_owned()
}

#[tokio::test]
async fn the_uma_flow_goes_from_401_to_200() {
    let as_ = start_as().await;
    let table = UmaRouter::new().route(
        "/albums/{id}",
        get(|Path(id): Path<String>, p: UmaPrincipal| async move {
            format!("album {id}, shown to {}", p.subject().unwrap_or_default())
        }),
        |rule| {
            rule.declare(ResourceDecl::new("album", ["view"]).with_owner("alice"))
                .scopes(Method::GET, ["view"])
        },
    );
    let url = serve_table(table, discover(&as_).await).await;
    let resp = send(Method::GET, &url, "/albums/1", None).await;
    let rpt = rpt_from_challenge(&as_, &resp).await;
    let resp = send(Method::GET, &url, "/albums/1", Some(&rpt)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.text().await.expect("body"), "album 1, shown to bob");
}

#[tokio::test]
async fn a_method_axum_routes_but_the_rule_does_not_list_gets_405() {
    let as_ = start_as().await;
    let r = register_invoice(&as_);
    let ran = Ran::default();
    let table = UmaRouter::new().route(
        "/invoices/{id}",
        ran.get("show").delete(ran.handler("remove")),
        |rule| rule.resource_id(&r).scopes(Method::GET, ["read"]),
    );
    let url = serve_table(table, discover(&as_).await).await;
    // A token with every scope of the resource: the method is refused anyway.
    let rpt = rpt_for(&as_, &r, &["read", "write"]);
    let resp = send(Method::DELETE, &url, "/invoices/7", Some(&rpt)).await;
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(resp.headers()[http::header::ALLOW], "GET, HEAD");
    let resp = send(Method::GET, &url, "/invoices/7", Some(&rpt)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(ran.names(), ["show"]);
}

#[tokio::test]
async fn public_routes_pass_without_a_token() {
    let as_ = start_as().await;
    let r = register_invoice(&as_);
    let ran = Ran::default();
    let table = UmaRouter::new()
        .public(
            "/health",
            ran.get("health").post(ran.handler("health-post")),
        )
        .public_with("/hooks/{name}", post(ran.handler("hook")), |rule| {
            rule.public_methods([Method::POST])
        })
        .route("/invoices/{id}", ran.get("invoice"), |rule| {
            rule.resource_id(&r).scopes(Method::GET, ["read"])
        });
    let url = serve_table(table, discover(&as_).await).await;
    let resp = send(Method::GET, &url, "/health", None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = send(Method::POST, &url, "/hooks/build", None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    // Not public on `/health`, and no protected route takes it: the layer's 405.
    let resp = send(Method::POST, &url, "/health", None).await;
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    // The protected route still challenges.
    let resp = send(Method::GET, &url, "/invoices/1", None).await;
    expect_challenge(&resp, &as_);
    assert_eq!(ran.names(), ["health", "hook"]);
}

#[tokio::test]
async fn spellings_only_axum_tells_apart_never_reach_a_handler() {
    let as_ = start_as().await;
    let r = register_invoice(&as_);
    let ran = Ran::default();
    let table = UmaRouter::new().route("/invoices/{id}", ran.get("invoice"), |rule| {
        rule.resource_id(&r).scopes(Method::GET, ["read"])
    });
    let url = serve_table(table, discover(&as_).await).await;
    let rpt = rpt_for(&as_, &r, &["read"]);
    for (path, status) in [
        // The layer decides them by `/invoices/{id}`; axum has no route for them.
        ("/invoices/1/", StatusCode::NOT_FOUND),
        ("/invoices//1", StatusCode::NOT_FOUND),
        // Refused: a network-path reference to some upstreams.
        ("//invoices/1", StatusCode::BAD_REQUEST),
        // A case-sensitive router has no route for it: the rule would depend on case.
        ("/Invoices/1", StatusCode::BAD_REQUEST),
        ("/invoices/1;v=2", StatusCode::BAD_REQUEST),
    ] {
        let resp = send(Method::GET, &url, path, Some(&rpt)).await;
        assert_eq!(resp.status(), status, "{path}");
    }
    assert!(ran.names().is_empty(), "{:?}", ran.names());
    // Without a token, the same spellings are challenged or refused, never routed.
    let resp = send(Method::GET, &url, "/invoices/1/", None).await;
    expect_challenge(&resp, &as_);
    assert!(ran.names().is_empty());
}

/// Two routes with the same rule: for `/x//albums` the layer decides by `/x/albums`, axum runs
/// `/x/{user}/albums` (an empty `user`). The guard refuses it.
fn same_rule_table(ran: &Ran, r: &str) -> UmaRouter {
    let rule = |rule: tower_uma::Route| rule.resource_id(r).scopes(Method::GET, ["read"]);
    UmaRouter::new()
        .route("/x/albums", ran.get("albums"), rule)
        .route("/x/{user}/albums", ran.get("user-albums"), rule)
}

#[tokio::test]
async fn the_guard_refuses_a_route_the_layer_did_not_decide_by() {
    let as_ = start_as().await;
    let r = register_invoice(&as_);
    let ran = Ran::default();
    let (url, app) = serve_app(same_rule_table(&ran, &r), discover(&as_).await).await;
    let rpt = rpt_for(&as_, &r, &["read"]);
    let resp = send(Method::GET, &url, "/x//albums", Some(&rpt)).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_hygiene(&resp);
    assert!(ran.names().is_empty(), "{:?}", ran.names());
    // The refusal is the guard's.
    let req = http::Request::get("/x//albums")
        .header(http::header::AUTHORIZATION, format!("Bearer {rpt}"))
        .body(axum::body::Body::empty())
        .expect("request");
    let resp = app.oneshot(req).await.expect("infallible");
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        resp.extensions().get::<Rejection>(),
        Some(&Rejection::RouteMismatch)
    );
    assert!(ran.names().is_empty(), "{:?}", ran.names());
    // Each route by its own path.
    for path in ["/x/albums", "/x/bob/albums"] {
        let resp = send(Method::GET, &url, path, Some(&rpt)).await;
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
    }
    assert_eq!(ran.names(), ["albums", "user-albums"]);
}

#[tokio::test]
async fn the_guard_refuses_a_method_falling_through_a_public_route() {
    let as_ = start_as().await;
    let r = register_invoice(&as_);
    let ran = Ran::default();
    // Frameworks that fall through on a method run `/albums/{id}` for `POST /albums/featured`,
    // and the layer decides it by that route's rule; axum runs the public route's `POST`.
    let table = UmaRouter::new()
        .public(
            "/albums/featured",
            ran.get("featured").post(ran.handler("featured-post")),
        )
        .route("/albums/{id}", post(ran.handler("album-post")), |rule| {
            rule.resource_id(&r).scopes(Method::POST, ["write"])
        });
    let url = serve_table(table, discover(&as_).await).await;
    let rpt = rpt_for(&as_, &r, &["write"]);
    let resp = send(Method::POST, &url, "/albums/featured", Some(&rpt)).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = send(Method::POST, &url, "/albums/7", Some(&rpt)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(ran.names(), ["album-post"]);
}

#[tokio::test]
async fn the_guard_refuses_what_an_allowing_unmapped_setting_lets_through() {
    let as_ = start_as().await;
    let ran = Ran::default();
    // `/x//albums` matches no route once normalised; axum runs `/x/{user}/albums` for it.
    let table = UmaRouter::new().public("/x/{user}/albums", ran.get("user-albums"));
    let layer = discover(&as_).await.unmapped(Unmapped::Allow);
    let url = serve_table(table, layer).await;
    let resp = send(Method::GET, &url, "/x//albums", None).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(ran.names().is_empty(), "{:?}", ran.names());
}

#[tokio::test]
async fn a_permissive_layer_logs_the_disagreement_and_lets_it_through() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_writer(capture.clone())
        .with_ansi(false)
        .finish();
    // The test runtime runs on this thread only, the server's tasks too.
    let _default = tracing::subscriber::set_default(subscriber);
    let as_ = start_as().await;
    let r = register_invoice(&as_);
    let ran = Ran::default();
    let layer = discover(&as_)
        .await
        .enforcement(EnforcementMode::Permissive);
    let url = serve_table(same_rule_table(&ran, &r), layer).await;
    let resp = send(
        Method::GET,
        &url,
        "/x//albums",
        Some(&rpt_for(&as_, &r, &["read"])),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(ran.names(), ["user-albums"]);
    let logs = capture.text();
    assert!(
        logs.contains("axum's router runs a route the layer did not decide this request by"),
        "{logs}"
    );
    assert!(logs.contains("decided_by=\"/x/albums\""), "{logs}");
    assert!(
        logs.contains("outcome=\"let through (permissive)\""),
        "{logs}"
    );
}

#[tokio::test]
async fn a_layer_builder_with_a_resolver_is_refused() {
    let as_ = start_as().await;
    let layer = discover(&as_)
        .await
        .resolver(|_: &tower_uma::resources::RequestInfo<'_>| {
            tower_uma::resources::Resolution::Public
        });
    let table: UmaRouter = UmaRouter::new().public("/health", get(|| async { "ok" }));
    let err = table.build(layer).await.expect_err("refused");
    assert!(err.is_config(), "{err}");
    assert!(err.to_string().contains("resolver"), "{err}");
}

#[tokio::test]
async fn an_invalid_table_is_refused_before_the_authorization_server_is_called() {
    let as_ = start_as().await;
    let layer = discover(&as_).await;
    let before = as_.requests(uma_test_as::Endpoint::Token).len();
    let table: UmaRouter = UmaRouter::new()
        .public("/health", get(|| async { "ok" }))
        .public("/health", get(|| async { "again" }));
    let err = table.build(layer).await.expect_err("refused");
    assert!(err.is_config(), "{err}");
    assert!(
        err.to_string().contains("`/health` is declared twice"),
        "{err}"
    );
    assert_eq!(as_.requests(uma_test_as::Endpoint::Token).len(), before);
}

/// RFC 9728 metadata: UmaRouter serves the document at the well-known path without a token,
/// the layer names it in challenges when asked to, and a client finds the AS and the scopes
/// there; the resource's path goes after the well-known segment (RFC 9728 §3.1).
#[tokio::test]
async fn resource_metadata_is_served_and_named_in_challenges() {
    use tower_uma::metadata::ResourceMetadata;

    let as_ = start_as().await;
    let table = || {
        UmaRouter::new().route("/albums/{id}", get(|| async { "album" }), |rule| {
            rule.declare(ResourceDecl::new("album", ["view", "delete"]).with_owner("alice"))
                .scopes(Method::GET, ["view"])
        })
    };
    let metadata = ResourceMetadata::new("http://photos.test/api")
        .resource_name("Photos")
        .in_challenge(true);
    let layer = discover(&as_).await.resource_metadata(metadata);
    let url = serve_table(table(), layer).await;

    let resp = send(
        Method::GET,
        &url,
        "/.well-known/oauth-protected-resource/api",
        None,
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()[http::header::CONTENT_TYPE],
        "application/json"
    );
    let doc: serde_json::Value = resp.json().await.expect("JSON");
    assert_eq!(doc["resource"], "http://photos.test/api");
    assert_eq!(
        doc["authorization_servers"],
        serde_json::json!([as_.issuer()])
    );
    assert_eq!(
        doc["scopes_supported"],
        serde_json::json!(["delete", "view"])
    );
    assert_eq!(
        doc["bearer_methods_supported"],
        serde_json::json!(["header"])
    );
    assert_eq!(doc["resource_name"], "Photos");
    // Public for reading only.
    let resp = send(
        Method::DELETE,
        &url,
        "/.well-known/oauth-protected-resource/api",
        None,
    )
    .await;
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);

    let resp = send(Method::GET, &url, "/albums/1", None).await;
    expect_challenge(&resp, &as_);
    let header = resp.headers()[http::header::WWW_AUTHENTICATE]
        .to_str()
        .expect("ASCII");
    let challenge = tower_uma::challenge::parse_uma_challenge(header).expect("a UMA challenge");
    assert_eq!(
        challenge.resource_metadata.as_deref(),
        Some("http://photos.test/.well-known/oauth-protected-resource/api")
    );

    // Off by default: no metadata path, no challenge parameter.
    let url = serve_table(table(), discover(&as_).await).await;
    let resp = send(
        Method::GET,
        &url,
        "/.well-known/oauth-protected-resource",
        None,
    )
    .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN, "unmapped");
    let resp = send(Method::GET, &url, "/albums/1", None).await;
    let header = resp.headers()[http::header::WWW_AUTHENTICATE]
        .to_str()
        .expect("ASCII");
    assert!(!header.contains("resource_metadata"), "{header}");
}

/// A route's own enforcement mode decides what its guard does with a disagreement, whatever
/// the layer's: a permissive route under an enforcing layer logs it and lets it through, an
/// enforcing route under a permissive layer refuses it. (`POST /albums/featured` falls
/// through the public route to `/albums/{id}`, whose rule the layer applies; axum runs the
/// public route's `POST`.)
#[tokio::test]
async fn the_guard_follows_its_routes_enforcement_override() {
    let as_ = start_as().await;
    let r = register_invoice(&as_);
    let rpt = rpt_for(&as_, &r, &["write"]);
    for (layer_mode, route_mode, status) in [
        (
            EnforcementMode::Enforcing,
            EnforcementMode::Permissive,
            StatusCode::OK,
        ),
        (
            EnforcementMode::Permissive,
            EnforcementMode::Enforcing,
            StatusCode::FORBIDDEN,
        ),
    ] {
        let ran = Ran::default();
        let table = UmaRouter::new()
            .public_with(
                "/albums/featured",
                ran.get("featured").post(ran.handler("featured-post")),
                |rule| rule.enforcement(route_mode),
            )
            .route("/albums/{id}", post(ran.handler("album-post")), |rule| {
                rule.resource_id(&r).scopes(Method::POST, ["write"])
            });
        let layer = discover(&as_).await.enforcement(layer_mode);
        let url = serve_table(table, layer).await;
        let resp = send(Method::POST, &url, "/albums/featured", Some(&rpt)).await;
        let case = format!("a {route_mode:?} route under a {layer_mode:?} layer");
        assert_eq!(resp.status(), status, "{case}");
        let expected: &[&str] = if status == StatusCode::OK {
            &["featured-post"]
        } else {
            &[]
        };
        assert_eq!(ran.names(), expected, "{case}");
    }
}

/// A route with a resolver may return an `Enforcing` override for any request, so its guard
/// refuses a disagreement even under a permissive layer; a route without one follows the
/// layer (`a_permissive_layer_logs_the_disagreement_and_lets_it_through`). The resolver
/// returns `/x/albums`' rule, so that only axum and the layer disagree about `/x//albums`.
#[tokio::test]
async fn the_guard_of_a_route_with_a_resolver_enforces_under_a_permissive_layer() {
    let as_ = start_as().await;
    let r = register_invoice(&as_);
    let ran = Ran::default();
    let id = r.clone();
    let table = UmaRouter::new()
        .route("/x/albums", ran.get("albums"), |rule| {
            rule.resource_id(&r).scopes(Method::GET, ["read"])
        })
        .route("/x/{user}/albums", ran.get("user-albums"), move |rule| {
            rule.resolver(move |_: &tower_uma::resources::RequestInfo<'_>| {
                tower_uma::resources::Resolution::protected(
                    tower_uma::resources::ResourceRef::Id(id.clone()),
                    ["read"],
                )
            })
        });
    let layer = discover(&as_)
        .await
        .enforcement(EnforcementMode::Permissive);
    let url = serve_table(table, layer).await;
    let rpt = rpt_for(&as_, &r, &["read"]);
    let resp = send(Method::GET, &url, "/x//albums", Some(&rpt)).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(ran.names().is_empty(), "{:?}", ran.names());
    // By its own path, the route's resolver decides and the handler runs.
    let resp = send(Method::GET, &url, "/x/bob/albums", Some(&rpt)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(ran.names(), ["user-albums"]);
}
