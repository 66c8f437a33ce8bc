//! End-to-end behaviour of `UmaLayer` beyond the numbered checks: the whole UMA flow, path
//! spellings, enforcement modes, start-up registration and PAT refresh under concurrency.

use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use http::{Method, StatusCode};
use tower_uma::{
    EnforcementMode, ResourceDecl, ResourceMap, Route, UmaLayer, UmaLayerBuilder,
    clock::FixedClock, resources::Unmapped,
};
use uma_test_as::Endpoint;

/// The whole grant: 401 + ticket → ID token → RPT → 200 (Grant §3).
async fn whole_uma_flow_with_a_declared_resource(f: Flavor) {
    let as_ = start_as_in(f).await;
    let map = ResourceMap::new().route(
        Route::new("/albums/{id}")
            .declare(ResourceDecl::new("album", ["view", "delete"]).with_owner("alice"))
            .scopes(Method::GET, ["view"])
            .scopes(Method::DELETE, ["delete"]),
    );
    let layer = layer_builder(&as_, f)
        .await
        .resources(map)
        .build()
        .await
        .expect("builds");
    let album_id = layer.resource_id("album").expect("registered at start-up");
    assert_eq!(as_.resource_id("album").as_deref(), Some(album_id.as_str()));
    let (url, calls) = protected(layer).await;
    let http = http();

    let resp = http
        .get(format!("{url}/albums/1"))
        .send()
        .await
        .expect("answer");
    let ticket = expect_challenge_any_realm(&resp, &as_);
    let client = UmaClient::new(&as_);
    let id_token = client.id_token("bob", BOB_PW).await;
    let (status, answer) = client.rpt(&ticket, Some(&id_token)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let rpt = answer["access_token"].as_str().expect("an RPT").to_owned();

    let resp = http
        .get(format!("{url}/albums/1"))
        .bearer_auth(&rpt)
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(calls.get(), 1);

    // bob may view but not delete: the RPT does not cover delete, and the AS denies it.
    let resp = http
        .delete(format!("{url}/albums/1"))
        .bearer_auth(&rpt)
        .send()
        .await
        .expect("answer");
    let ticket = expect_challenge_any_realm(&resp, &as_);
    let (status, answer) = client.rpt(&ticket, Some(&id_token)).await;
    // Grant §3.3.6, and each server's own denial (docs/protocol.md §9).
    let (want_status, want_error) = match f {
        Flavor::Standard => (StatusCode::FORBIDDEN, "request_denied"),
        Flavor::Keycloak => (StatusCode::FORBIDDEN, "access_denied"),
        Flavor::Wso2 => (StatusCode::BAD_REQUEST, "invalid_grant"),
    };
    assert_eq!(status, want_status, "{answer}");
    assert_eq!(answer["error"], want_error);
    assert_eq!(calls.get(), 1);
}

fn expect_challenge_any_realm(resp: &reqwest::Response, as_: &uma_test_as::TestAs) -> String {
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let value = resp.headers()[http::header::WWW_AUTHENTICATE]
        .to_str()
        .expect("ascii");
    let c = tower_uma::challenge::parse_uma_challenge(value).expect("UMA challenge");
    assert_eq!(c.as_uri, as_.issuer());
    c.ticket
}

async fn second_start_registers_nothing_new(f: Flavor) {
    let as_ = start_as_in(f).await;
    let map = || {
        ResourceMap::new().route(
            Route::new("/albums/{id}")
                .declare(ResourceDecl::new("album", ["view"]))
                .scopes(Method::GET, ["view"]),
        )
    };
    let first = layer_builder(&as_, f)
        .await
        .resources(map())
        .build()
        .await
        .expect("builds");
    let posts = |as_: &uma_test_as::TestAs| {
        as_.requests(Endpoint::ResourceRegistration)
            .iter()
            .filter(|r| r.method == "POST")
            .count()
    };
    assert_eq!(posts(&as_), 1);
    let second = layer_builder(&as_, f)
        .await
        .resources(map())
        .build()
        .await
        .expect("builds");
    assert_eq!(posts(&as_), 1, "no duplicate POST");
    assert_eq!(first.resource_id("album"), second.resource_id("album"));
}

/// Every alternative spelling of a protected path gets the protected rule or a 400; none is
/// let through on the unmapped rule (which here allows everything).
async fn path_spellings_never_weaken_the_rule(f: Flavor) {
    let as_ = start_as_in(f).await;
    let r = register_invoice(&as_);
    let map = ResourceMap::new()
        .route(
            Route::new("/albums/{id}")
                .resource_id(&r)
                .scopes(Method::GET, ["read"]),
        )
        .route(
            Route::new("/admin")
                .resource_id(&r)
                .scopes(Method::GET, ["write"]),
        )
        .route(Route::public("/health"));
    let layer = layer_builder(&as_, f)
        .await
        .resources(map)
        .unmapped(Unmapped::Allow)
        .build()
        .await
        .expect("builds");
    let (url, calls) = protected(layer).await;
    // reqwest would normalise dot segments, so send raw HTTP/1.1 requests.
    let addr = url.trim_start_matches("http://").to_owned();
    for (path, want) in [
        ("/albums/1", 401),
        // The rule would depend on letter case (a case-sensitive router has no such route).
        ("/Albums/1", 400),
        ("/ALBUMS/1", 400),
        ("//albums/1", 400),
        ("/albums//1", 401),
        ("/albums/1/", 401),
        ("/%61lbums/1", 401),
        ("/albums/../admin", 400),
        ("/albums/1/..", 400),
        ("/albums/%2e%2e/admin", 400),
        ("/albums/.%2E/admin", 400),
        ("/albums/./1", 400),
        ("/albums%2F1", 400),
        ("/albums/1%2f", 400),
        ("/albums;jsessionid=1/1", 400),
        ("/albums/%zz", 400),
        ("/albums\\1", 400),
        ("/albums%3F/1", 400),
        ("/albums/%25%32%65%25%32%65/admin", 400),
        ("/health", 200),
        ("/elsewhere", 200),
    ] {
        let status = raw_get(&addr, path).await;
        assert_eq!(status, want, "{path}");
    }
    assert_eq!(
        calls.get(),
        2,
        "only /health and /elsewhere reached the service"
    );
}

async fn raw_get(addr: &str, path: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.expect("read");
    let head = String::from_utf8_lossy(&buf);
    head.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

async fn permissive_mode_lets_everything_through_and_asks_for_no_ticket(f: Flavor) {
    let as_ = start_as_in(f).await;
    let r = register_invoice(&as_);
    let layer = layer_builder(&as_, f)
        .await
        .resources(invoice_map(&r))
        .enforcement(EnforcementMode::Permissive)
        .build()
        .await
        .expect("builds");
    let (url, calls) = protected(layer).await;
    let http = http();
    let resp = http
        .get(format!("{url}/invoices/1"))
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = http
        .get(format!("{url}/invoices/1"))
        .bearer_auth("junk")
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        as_.count(Endpoint::Introspection),
        1,
        "the decision is still made and logged"
    );
    assert_eq!(as_.count(Endpoint::Permission), 0);
    assert_eq!(calls.get(), 2);
}

async fn per_route_modes_override_the_global_one(f: Flavor) {
    let as_ = start_as_in(f).await;
    let r = register_invoice(&as_);
    let map = ResourceMap::new()
        .route(
            Route::new("/open/*")
                .resource_id(&r)
                .any_method(["read"])
                .enforcement(EnforcementMode::Disabled),
        )
        .route(
            Route::new("/strict/*")
                .resource_id(&r)
                .any_method(["read"])
                .enforcement(EnforcementMode::Enforcing),
        );
    let layer = layer_builder(&as_, f)
        .await
        .resources(map)
        .enforcement(EnforcementMode::Permissive)
        .build()
        .await
        .expect("builds");
    let (url, calls) = protected(layer).await;
    let http = http();
    let resp = http
        .get(format!("{url}/open/x"))
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = http
        .get(format!("{url}/strict/x"))
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(calls.get(), 1);
    assert_eq!(as_.count(Endpoint::Introspection), 0);
}

async fn disabled_mode_makes_no_as_calls(f: Flavor) {
    let as_ = start_as_in(f).await;
    let r = register_invoice(&as_);
    let layer = layer_builder(&as_, f)
        .await
        .resources(invoice_map(&r))
        .enforcement(EnforcementMode::Disabled)
        .build()
        .await
        .expect("builds");
    let (url, calls) = protected(layer).await;
    let resp = http()
        .get(format!("{url}/invoices/1"))
        .bearer_auth("x")
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(calls.get(), 1);
    assert_eq!(
        as_.count(Endpoint::Introspection)
            + as_.count(Endpoint::Permission)
            + as_.count(Endpoint::Token),
        0
    );
}

/// Many requests while the PAT expires → one token request.
async fn pat_refresh_is_single_flight_under_concurrency(f: Flavor) {
    let as_ = as_builder()
        .dialect(f.as_dialect())
        .pat_ttl(Duration::from_secs(60))
        .spawn()
        .await
        .expect("AS");
    let r = register_invoice(&as_);
    let clock = Arc::new(FixedClock::new(now()));
    let layer = layer_builder(&as_, f)
        .await
        .resources(invoice_map(&r))
        .clock(clock.clone())
        .build()
        .await
        .expect("builds");
    let (url, _) = protected(layer).await;
    let http = http();
    let resp = http
        .get(format!("{url}/invoices/1"))
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(as_.pats_issued(), 1);
    // The PAT lives 60 s (refreshed 6 s early): on the layer's clock it has expired, so every
    // request waits for the one refresh.
    clock.advance(60);
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let http = http.clone();
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            http.get(format!("{url}/invoices/1"))
                .send()
                .await
                .expect("answer")
                .status()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.expect("task"), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        as_.pats_issued(),
        2,
        "one refresh for 50 concurrent requests"
    );
}

#[tokio::test]
async fn misconfiguration_fails_in_build_with_a_message() {
    let as_ = start_as().await;
    // A route naming a resource that has no registration endpoint to be created at.
    let err = UmaLayer::builder(as_.issuer(), RS_ID, RS_SECRET)
        .insecure_allow_http()
        .token_endpoint(as_.endpoint_url(Endpoint::Token))
        .introspection_endpoint(as_.endpoint_url(Endpoint::Introspection))
        .permission_endpoint(as_.endpoint_url(Endpoint::Permission))
        .resources(
            ResourceMap::new().route(
                Route::new("/a")
                    .declare(ResourceDecl::new("a", ["x"]))
                    .any_method(["x"]),
            ),
        )
        .build()
        .await
        .expect_err("no registration endpoint");
    assert!(err.is_config());
    assert!(
        err.to_string().contains("resource_registration_endpoint"),
        "{err}"
    );

    let err = UmaLayer::builder(as_.issuer(), RS_ID, RS_SECRET)
        .insecure_allow_http()
        .token_endpoint(as_.endpoint_url(Endpoint::Token))
        .build()
        .await
        .expect_err("no introspection endpoint");
    assert!(err.to_string().contains("introspection_endpoint"), "{err}");

    let err = discover(&as_)
        .await
        .resources(
            ResourceMap::new().route(
                Route::new("/a/{x}/{x}")
                    .resource_id("r")
                    .any_method(["read"]),
            ),
        )
        .build()
        .await
        .expect_err("bad template");
    assert!(err.is_config(), "{err}");

    let err = discover(&as_)
        .await
        .realm("bad\nrealm")
        .build()
        .await
        .expect_err("bad realm");
    assert!(err.to_string().contains("realm"), "{err}");
}

/// Typos that used to be accepted silently (`/albums/:id` as a literal, `GTE` as a method,
/// so that `/albums/1` fell to the unmapped rule) fail `build()` with a hint.
#[tokio::test]
async fn route_typos_fail_in_build_with_a_hint() {
    let as_ = start_as().await;
    let gte = Method::from_bytes(b"GTE").expect("a token");
    for (route, hint) in [
        (
            Route::new("/albums/:id")
                .resource_id("r")
                .scopes(Method::GET, ["read"]),
            "use {id} instead",
        ),
        (
            Route::new("/static/*rest")
                .resource_id("r")
                .scopes(Method::GET, ["read"]),
            "a trailing `*`",
        ),
        (
            Route::new("/albums/{id}")
                .resource_id("r")
                .scopes(gte, ["read"]),
            "typo of GET",
        ),
    ] {
        let err = discover(&as_)
            .await
            .resources(ResourceMap::new().route(route))
            .unmapped(Unmapped::Allow)
            .build()
            .await
            .expect_err("a typo");
        assert!(err.is_config(), "{err}");
        assert!(err.to_string().contains(hint), "{err}");
    }
}

#[tokio::test]
async fn static_configuration_without_discovery() {
    let as_ = start_as().await;
    let r = register_invoice(&as_);
    let layer = UmaLayer::builder(as_.issuer(), RS_ID, RS_SECRET)
        .insecure_allow_http()
        .realm("invoices")
        .token_endpoint(as_.endpoint_url(Endpoint::Token))
        .introspection_endpoint(as_.endpoint_url(Endpoint::Introspection))
        .permission_endpoint(as_.endpoint_url(Endpoint::Permission))
        .resources(invoice_map(&r))
        .build()
        .await
        .expect("builds");
    assert_eq!(layer.as_uri(), as_.issuer());
    let (url, _) = protected(layer).await;
    let resp = http()
        .get(format!("{url}/invoices/1"))
        .send()
        .await
        .expect("answer");
    expect_challenge(&resp, &as_);
    assert_eq!(as_.count(Endpoint::Discovery), 0);
}

#[tokio::test]
async fn client_credentials_introspection() {
    let as_ = start_as().await;
    let r = register_invoice(&as_);
    let layer = discover(&as_)
        .await
        .resources(invoice_map(&r))
        .introspection_auth(tower_uma::protection::IntrospectionAuth::ClientCredentials)
        .token_type_hint("access_token")
        .build()
        .await
        .expect("builds");
    let (url, _) = protected(layer).await;
    let rpt = rpt_for(&as_, &r, &["read"]);
    let resp = http()
        .get(format!("{url}/invoices/1"))
        .bearer_auth(&rpt)
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status(), StatusCode::OK);
    let intro = as_.requests(Endpoint::Introspection);
    assert!(
        header(&intro[0], "authorization")
            .expect("auth")
            .starts_with("Basic ")
    );
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&intro[0].body).expect("form");
    assert!(form.contains(&("token_type_hint".into(), "access_token".into())));
    assert_eq!(as_.pats_issued(), 0, "no PAT needed");
}

async fn forgetting_a_token_makes_the_layer_ask_again(f: Flavor) {
    let as_ = start_as_in(f).await;
    let r = register_invoice(&as_);
    let layer = layer_builder(&as_, f)
        .await
        .resources(invoice_map(&r))
        .build()
        .await
        .expect("builds");
    let handle = layer.clone();
    let (url, _) = protected(layer).await;
    let rpt = rpt_for(&as_, &r, &["read"]);
    let get = || {
        http()
            .get(format!("{url}/invoices/1"))
            .bearer_auth(&rpt)
            .send()
    };
    assert_eq!(get().await.expect("answer").status(), StatusCode::OK);
    as_.revoke(&rpt);
    assert_eq!(
        get().await.expect("answer").status(),
        StatusCode::OK,
        "still cached"
    );
    handle.forget_token(&rpt);
    assert_eq!(
        get().await.expect("answer").status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(as_.count(Endpoint::Introspection), 2);
}

/// Sends `method` (as written, any case) to `url` with an optional bearer token and returns
/// the status and the `Allow` header.
async fn send(method: &str, url: &str, bearer: Option<&str>) -> (StatusCode, Option<String>) {
    let method = Method::from_bytes(method.as_bytes()).expect("a method");
    let mut req = http().request(method, url);
    if let Some(token) = bearer {
        req = req.bearer_auth(token);
    }
    let resp = req.send().await.expect("answer");
    let allow = resp
        .headers()
        .get(http::header::ALLOW)
        .map(|v| v.to_str().expect("ascii").to_owned());
    (resp.status(), allow)
}

/// With a permissive layer and one route overridden to enforcing, refused spellings are
/// refused: their route is not known, and it may be the enforcing one. Before, they all
/// passed because the layer's mode was applied before the route was known.
#[tokio::test]
async fn refused_spellings_are_refused_when_a_route_may_enforce() {
    let as_ = start_as().await;
    let r = register_invoice(&as_);
    let map = || {
        ResourceMap::new()
            .route(Route::new("/open/*").resource_id(&r).any_method(["read"]))
            .route(
                Route::new("/strict/*")
                    .resource_id(&r)
                    .any_method(["read"])
                    .enforcement(EnforcementMode::Enforcing),
            )
    };
    let permissive = |b: UmaLayerBuilder| b.enforcement(EnforcementMode::Permissive);
    let (url, calls) = serve_map(&as_, map(), permissive).await;
    let addr = url.trim_start_matches("http://").to_owned();
    let spellings = [
        "/strict;jsessionid=1/x",
        "/open/%2e%2e/strict/x",
        "/open%2f..%2fstrict/x",
        "/open\\..\\strict/x",
        "/STRICT/x",
    ];
    for path in spellings {
        assert_eq!(raw_get(&addr, path).await, 400, "{path}");
    }
    assert_eq!(raw_get(&addr, "/strict/x").await, 401);
    assert_eq!(raw_get(&addr, "/open/x").await, 200);
    assert_eq!(calls.get(), 1);

    // With no enforcing route, a permissive layer lets them through (and logs them).
    let open_only =
        ResourceMap::new().route(Route::new("/open/*").resource_id(&r).any_method(["read"]));
    let (url, calls) = serve_map(&as_, open_only, permissive).await;
    let addr = url.trim_start_matches("http://").to_owned();
    for path in spellings {
        assert_eq!(raw_get(&addr, path).await, 200, "{path}");
    }
    assert_eq!(calls.get(), spellings.len());

    // A disabled layer checks nothing, so it refuses to start with route overrides.
    let err = discover(&as_)
        .await
        .resources(map())
        .enforcement(EnforcementMode::Disabled)
        .build()
        .await
        .expect_err("an override under a disabled layer");
    assert!(err.is_config(), "{err}");
    assert!(err.to_string().contains("/strict/*"), "{err}");
}

/// Serves the test app behind a layer discovered from `as_` with `map`, configured further
/// by `configure`; returns its base URL and call counter.
async fn serve_map(
    as_: &uma_test_as::TestAs,
    map: ResourceMap,
    configure: impl FnOnce(UmaLayerBuilder) -> UmaLayerBuilder,
) -> (String, Calls) {
    let builder = discover(as_).await.resources(map);
    protected(configure(builder).build().await.expect("builds")).await
}

/// Case variants of a standard method (`delete`) are refused before any route is looked at;
/// before, `delete` missed the `DELETE` entry and was decided under `any_method` scopes (or
/// let through as unmapped), while Werkzeug, Django and Symfony run the DELETE handler.
#[tokio::test]
async fn method_case_variants_are_refused() {
    let as_ = start_as().await;
    let r = register_invoice(&as_);
    let map = ResourceMap::new()
        .route(
            Route::new("/invoices/{id}")
                .resource_id(&r)
                .scopes(Method::DELETE, ["write"])
                .any_method(["read"]),
        )
        .route(
            Route::new("/drafts/{id}")
                .resource_id(&r)
                .scopes(Method::GET, ["read"]),
        );
    let (url, calls) = serve_map(&as_, map, |b| b.unmapped(Unmapped::Allow)).await;
    let read = rpt_for(&as_, &r, &["read"]);
    for method in ["delete", "Delete", "dELETE"] {
        let (status, _) = send(method, &format!("{url}/invoices/1"), Some(&read)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{method}");
    }
    let (status, _) = send("get", &format!("{url}/drafts/1"), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(calls.get(), 0);
    // The exact spelling needs its own scope; extension methods go through the map.
    let (status, _) = send("DELETE", &format!("{url}/invoices/1"), Some(&read)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = send("PROPFIND", &format!("{url}/invoices/1"), Some(&read)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(calls.get(), 1);
}

/// A method the matched route does not list gets `405` + `Allow`, whatever `unmapped` says;
/// before, `POST /invoices/1` was unmapped and `Unmapped::Allow` let it through with no token.
#[tokio::test]
async fn unlisted_methods_on_a_matched_path_get_405() {
    let as_ = start_as().await;
    let r = register_invoice(&as_);
    let map = || {
        ResourceMap::new().route(
            Route::new("/invoices/{id}")
                .resource_id(&r)
                .scopes(Method::GET, ["read"])
                .scopes(Method::PUT, ["write"])
                .scopes(Method::DELETE, ["write"]),
        )
    };
    let (url, calls) = serve_map(&as_, map(), |b| b.unmapped(Unmapped::Allow)).await;
    for method in ["POST", "PATCH", "OPTIONS"] {
        let (status, allow) = send(method, &format!("{url}/invoices/1"), None).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(allow.as_deref(), Some("GET, HEAD, PUT, DELETE"), "{method}");
    }
    assert_eq!(calls.get(), 0);
    // `unmapped` still concerns the paths no route matches.
    let (status, _) = send("POST", &format!("{url}/elsewhere"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        as_.count(Endpoint::Introspection) + as_.count(Endpoint::Permission),
        0
    );

    // A permissive layer decides, logs and lets it through.
    let (url, calls) = serve_map(&as_, map(), |b| b.enforcement(EnforcementMode::Permissive)).await;
    let (status, allow) = send("POST", &format!("{url}/invoices/1"), None).await;
    assert_eq!((status, allow), (StatusCode::OK, None));
    assert_eq!(calls.get(), 1);
}

/// A public `/invoices/featured` beside the protected `/invoices/{id}` (GET: read, DELETE:
/// write) of resource `r`.
fn featured_map(r: &str) -> ResourceMap {
    ResourceMap::new()
        .route(Route::public("/invoices/featured"))
        .route(
            Route::new("/invoices/{id}")
                .resource_id(r)
                .scopes(Method::GET, ["read"])
                .scopes(Method::DELETE, ["write"]),
        )
}

/// A public route lets GET, HEAD and OPTIONS through; other methods are decided by the
/// protected route that also matches (here a challenge), or get `405`. Before, `DELETE
/// /invoices/featured` passed with no token and a router falling through on the method ran
/// `/invoices/{id}`'s DELETE handler.
#[tokio::test]
async fn public_routes_pass_safe_methods_only() {
    let as_ = start_as().await;
    let r = register_invoice(&as_);
    let map = featured_map(&r)
        .route(Route::public("/health"))
        .route(Route::public("/hooks/*").public_methods([Method::POST]));
    let (url, calls) = serve_map(&as_, map, |b| b.unmapped(Unmapped::Allow)).await;
    for method in ["GET", "HEAD", "OPTIONS"] {
        let (status, _) = send(method, &format!("{url}/invoices/featured"), None).await;
        assert_eq!(status, StatusCode::OK, "{method}");
    }
    assert_eq!(calls.get(), 3);
    let featured = format!("{url}/invoices/featured");
    let (status, _) = send("DELETE", &featured, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let read = rpt_for(&as_, &r, &["read"]);
    let (status, _) = send("DELETE", &featured, Some(&read)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(calls.get(), 3);
    let write = rpt_for(&as_, &r, &["write"]);
    let (status, _) = send("DELETE", &featured, Some(&write)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(calls.get(), 4);

    let (status, allow) = send("POST", &format!("{url}/health"), None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(allow.as_deref(), Some("GET, HEAD, OPTIONS"));
    let (status, _) = send("POST", &format!("{url}/hooks/build"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(calls.get(), 5);
}

/// A method that falls through a public route and that no route takes keeps the strictest
/// override of the routes it could fall to, and its `405` names all their methods. Before, a
/// permissive layer forwarded `POST /invoices/featured` (the public route's mode) although
/// `POST /invoices/1` got `405` from the enforcing `/invoices/{id}`, whose POST handler a
/// falling-through router could run.
#[tokio::test]
async fn falling_through_a_public_route_keeps_the_enforcing_override() {
    let as_ = start_as().await;
    let r = register_invoice(&as_);
    let map = ResourceMap::new()
        .route(Route::public("/invoices/featured"))
        .route(
            Route::new("/invoices/{id}")
                .resource_id(&r)
                .scopes(Method::GET, ["read"])
                .scopes(Method::DELETE, ["write"])
                .enforcement(EnforcementMode::Enforcing),
        );
    let permissive = |b: UmaLayerBuilder| b.enforcement(EnforcementMode::Permissive);
    let (url, calls) = serve_map(&as_, map, permissive).await;
    for path in ["/invoices/1", "/invoices/featured"] {
        let (status, allow) = send("POST", &format!("{url}{path}"), None).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{path}");
        assert!(
            allow.as_deref().is_some_and(|a| a.contains("DELETE")),
            "{path}: {allow:?}"
        );
    }
    let (status, _) = send("GET", &format!("{url}/invoices/featured"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(calls.get(), 1);
}

/// A path that matches a literal only when case is ignored, where a case-sensitive router
/// would apply another rule, is refused. Before, `/invoices/FEATURED` was public here while
/// Flask, Django or axum ran the protected `/invoices/{id}` handler for it.
#[tokio::test]
async fn letter_case_variants_of_literals_are_refused() {
    let as_ = start_as().await;
    let r = register_invoice(&as_);
    let (url, calls) = serve_map(&as_, featured_map(&r), |b| b).await;
    for path in [
        "/invoices/FEATURED",
        "/invoices/Featured",
        "/Invoices/featured",
    ] {
        let (status, _) = send("GET", &format!("{url}{path}"), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}");
    }
    assert_eq!(calls.get(), 0);
    let (status, _) = send("GET", &format!("{url}/invoices/featured"), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = send("GET", &format!("{url}/invoices/ABC"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(calls.get(), 1);
}

per_dialect!(
    whole_uma_flow_with_a_declared_resource,
    second_start_registers_nothing_new,
    path_spellings_never_weaken_the_rule,
    permissive_mode_lets_everything_through_and_asks_for_no_ticket,
    per_route_modes_override_the_global_one,
    disabled_mode_makes_no_as_calls,
    forgetting_a_token_makes_the_layer_ask_again,
);

/// Many requests while the PAT expires → one token request, for each dialect's PAT grant.
mod pat_refresh {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn standard() {
        super::pat_refresh_is_single_flight_under_concurrency(crate::common::Flavor::Standard)
            .await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn keycloak() {
        super::pat_refresh_is_single_flight_under_concurrency(crate::common::Flavor::Keycloak)
            .await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn wso2() {
        super::pat_refresh_is_single_flight_under_concurrency(crate::common::Flavor::Wso2).await;
    }
}
