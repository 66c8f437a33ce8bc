//! Many tenants behind one `TenantLayer`, end to end against two real `uma-test-as`
//! instances (one per tenant): a token of one tenant grants nothing in the other, a request no
//! tenant takes is refused before any AS call, one tenant's AS down leaves the other alone, PATs,
//! tickets and caches are per tenant, and the token-issuer match never fetches for an unknown
//! issuer. Lazy tenants are built once for concurrent first requests.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::common::*;
use http::{Method, StatusCode};
use tower_uma::start::StartRetry;
use tower_uma::tenant::{TenantChoice, TenantLayer, TenantLayerBuilder, TenantMatch};
use tower_uma::{Rejection, ResourceDecl, ResourceMap, Route, UmaLayer, UmaLayerBuilder};
use uma_test_as::{Endpoint, RptFormat, TestAs};

/// The same map for every tenant: `album` declared by name, so each AS gives it its own id.
fn albums() -> ResourceMap {
    ResourceMap::new().route(
        Route::new("/albums/{id}")
            .declare(ResourceDecl::new("album", ["view"]))
            .scopes(Method::GET, ["view"]),
    )
}

async fn tenant_builder(as_: &TestAs) -> UmaLayerBuilder {
    discover(as_).await.resources(albums())
}

/// Every call either AS has seen, all endpoints together.
fn as_calls(ases: &[&TestAs]) -> u64 {
    ases.iter()
        .map(|a| Endpoint::ALL.iter().map(|e| a.count(*e)).sum::<u64>())
        .sum()
}

/// Two ASes; tenant `a` by host `a.test`, tenant `b` by the path prefix `/b` (stripped).
struct Two {
    a: TestAs,
    b: TestAs,
    layer: TenantLayer,
    url: String,
    calls: Calls,
}

async fn two_with(configure: impl FnOnce(TenantLayerBuilder) -> TenantLayerBuilder) -> Two {
    let (a, b) = tokio::join!(start_as(), start_as());
    let builder = TenantLayer::builder()
        .tenant(
            "a",
            TenantMatch::default().host("a.test"),
            tenant_builder(&a).await,
        )
        .tenant(
            "b",
            TenantMatch::default().path_prefix("/b").strip_prefix(true),
            tenant_builder(&b).await,
        );
    let layer = configure(builder)
        .build()
        .await
        .expect("both tenants build");
    let calls = Calls::default();
    let addr = serve(app(calls.clone()).layer(layer.clone())).await;
    Two {
        a,
        b,
        layer,
        url: format!("http://{addr}"),
        calls,
    }
}

async fn two() -> Two {
    two_with(|b| b).await
}

/// A GET of `path` with `Host: host` and an optional bearer token.
async fn get(t: &Two, host: &str, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut req = http()
        .get(format!("{}{path}", t.url))
        .header(http::header::HOST, host);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    req.send().await.expect("the app answers")
}

fn album(as_: &TestAs) -> String {
    as_.resource_id("album").expect("registered at build")
}

/// A token of tenant A grants nothing in tenant B, even for the resource of the same name,
/// and a token of B naming A's resource id grants nothing in A.
#[tokio::test]
async fn a_token_of_one_tenant_grants_nothing_in_the_other() {
    let t = two().await;
    let (ra, rb) = (album(&t.a), album(&t.b));
    assert_ne!(ra, rb);
    let token_a = rpt_for(&t.a, &ra, &["view"]);
    let resp = get(&t, "a.test", "/albums/1", Some(&token_a)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.text().await.expect("body"), "hello from /albums/1");

    // B's AS does not know A's token: a challenge naming B's AS.
    let resp = get(&t, "other.test", "/b/albums/1", Some(&token_a)).await;
    let challenge = resp
        .headers()
        .get(http::header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .map(tower_uma::challenge::parse_uma_challenge)
        .and_then(Result::ok)
        .expect("a UMA challenge");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(challenge.as_uri, t.b.issuer());

    // A token B issued, whose permission names A's resource id, is checked at A: inactive.
    let forged = rpt_for(&t.b, &ra, &["view"]);
    let resp = get(&t, "a.test", "/albums/1", Some(&forged)).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(t.calls.get(), 1, "only A's own token reached the app");
}

/// The prefix is stripped before the tenant's map and the app see the path.
#[tokio::test]
async fn a_stripped_prefix_is_gone_for_the_map_and_the_app() {
    let t = two().await;
    let token_b = rpt_for(&t.b, &album(&t.b), &["view"]);
    let resp = get(&t, "x.test", "/b/albums/7?size=2", Some(&token_b)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.text().await.expect("body"), "hello from /albums/7");
    // Not a prefix of a segment: no tenant.
    for path in ["/bb/albums/7", "/B/albums/7"] {
        let resp = get(&t, "x.test", path, Some(&token_b)).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{path}");
    }
    // B's prefix in another spelling, which another tenant would take and an upstream might
    // read as `/b/…`: refused, whichever host.
    for host in ["x.test", "a.test"] {
        for path in ["/%62/albums/7", "//b/albums/7"] {
            let resp = get(&t, host, path, Some(&token_b)).await;
            assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{host}{path}");
        }
    }
    assert_eq!(t.calls.get(), 1);
}

/// The tenant layer around an inner service that answers with what it learns of the request:
/// the `Tenant` extension's name and stripped prefix, and the URI (empty without a `Tenant`).
fn tenant_echo(
    layer: &TenantLayer,
) -> impl tower::Service<
    http::Request<()>,
    Response = http::Response<String>,
    Error = std::convert::Infallible,
    Future: Send,
> + Clone {
    use tower::Layer;
    layer.layer(tower::service_fn(|req: http::Request<()>| async move {
        let seen = req
            .extensions()
            .get::<tower_uma::tenant::Tenant>()
            .map(|t| format!("{} {:?} {}", t.name(), t.stripped_prefix(), req.uri()));
        Ok(http::Response::new(seen.unwrap_or_default()))
    }))
}

/// A GET of `uri` with `Host: host` and a bearer token, for [`tenant_echo`].
fn send(uri: &str, host: &str, token: &str) -> http::Request<()> {
    http::Request::builder()
        .uri(uri)
        .header(http::header::HOST, host)
        .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
        .body(())
        .expect("request")
}

/// The inner service learns the tenant and the stripped prefix from the `Tenant` extension,
/// and a request whose target names another host than its `Host` header is refused: the
/// match and whatever serves the request must read the same host.
#[tokio::test]
async fn the_tenant_is_in_the_request_and_hosts_must_agree() {
    use tower::ServiceExt;
    let t = two().await;
    let svc = tenant_echo(&t.layer);
    let token_a = rpt_for(&t.a, &album(&t.a), &["view"]);
    let token_b = rpt_for(&t.b, &album(&t.b), &["view"]);
    let resp = svc
        .clone()
        .oneshot(send("/b/albums/1", "x.test", &token_b))
        .await
        .expect("infallible");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.body(), "b Some(\"/b\") /albums/1");
    let resp = svc
        .clone()
        .oneshot(send("/albums/1", "a.test", &token_a))
        .await
        .expect("infallible");
    assert_eq!(resp.body(), "a None /albums/1");
    // Absolute form naming one tenant, `Host` naming another: 400, nothing called.
    let before = as_calls(&[&t.a, &t.b]);
    for (uri, host) in [
        ("http://x.test/b/albums/1", "a.test"),
        ("http://a.test/albums/1", "x.test"),
    ] {
        let resp = svc
            .clone()
            .oneshot(send(uri, host, &token_b))
            .await
            .expect("infallible");
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{uri} {host}");
        assert_eq!(
            resp.extensions().get::<Rejection>(),
            Some(&Rejection::BadRequest)
        );
    }
    assert_eq!(as_calls(&[&t.a, &t.b]), before);
    // The same host both ways is fine.
    let resp = svc
        .oneshot(send("http://a.test/albums/1", "a.test", &token_a))
        .await
        .expect("infallible");
    assert_eq!(resp.status(), StatusCode::OK);
}

/// A configured tenant the resolver names (no match of its own took the request) checks it,
/// and the `Tenant` extension carries its name and the prefix the resolver's choice stripped;
/// a name that is neither configured nor built by a template is unresolved.
#[tokio::test]
async fn the_resolvers_choice_is_in_the_request() {
    use tower::ServiceExt;
    let t = two_with(|b| {
        b.resolver(|req| match req.uri.path().split('/').nth(1)? {
            "via-b" => Some(TenantChoice::new("b").strip_prefix("/via-b")),
            "albums" => Some(TenantChoice::new("a")),
            other => Some(TenantChoice::new(other)),
        })
    })
    .await;
    let svc = tenant_echo(&t.layer);
    let send = |uri: &str, token: &str| svc.clone().oneshot(send(uri, "nobody.test", token));
    let token_a = rpt_for(&t.a, &album(&t.a), &["view"]);
    let token_b = rpt_for(&t.b, &album(&t.b), &["view"]);
    let resp = send("/via-b/albums/1?x=1", &token_b)
        .await
        .expect("infallible");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.body(), "b Some(\"/via-b\") /albums/1?x=1");
    // A's token in B: checked at B's AS, refused.
    let resp = send("/via-b/albums/1", &token_a).await.expect("infallible");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    // Named without a prefix to strip: the path as received.
    let resp = send("/albums/1", &token_a).await.expect("infallible");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.body(), "a None /albums/1");
    // Neither configured nor built by a template: 404, before any AS call.
    let before = as_calls(&[&t.a, &t.b]);
    let resp = send("/zzz/albums/1", &token_a).await.expect("infallible");
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(as_calls(&[&t.a, &t.b]), before);
}

/// A request no tenant takes is refused with 404 before any AS call, and never reaches the app.
#[tokio::test]
async fn an_unresolved_request_is_refused_before_any_as_call() {
    let t = two().await;
    let before = as_calls(&[&t.a, &t.b]);
    for (host, path, token) in [
        ("nobody.test", "/albums/1", Some("some-token")),
        ("nobody.test", "/albums/1", None),
        ("a.test.evil", "/albums/1", Some("x")),
    ] {
        let resp = get(&t, host, path, token).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{host}{path}");
        assert_eq!(
            resp.headers()
                .get(http::header::CACHE_CONTROL)
                .and_then(|v| v.to_str().ok()),
            Some("no-store")
        );
        assert!(resp.headers().get(http::header::WWW_AUTHENTICATE).is_none());
    }
    assert_eq!(as_calls(&[&t.a, &t.b]), before, "no AS was called");
    assert_eq!(t.calls.get(), 0);
}

/// The rejection in the response extensions names the reason (seen through the service).
#[tokio::test]
async fn the_unresolved_rejection_is_in_the_extensions() {
    use tower::{Layer, ServiceExt};
    let t = two().await;
    let svc = t
        .layer
        .layer(tower::service_fn(|_req: http::Request<()>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
        }));
    let req = http::Request::builder()
        .uri("/albums/1")
        .header(http::header::HOST, "nobody.test")
        .body(())
        .expect("request");
    let resp = svc.oneshot(req).await.expect("infallible");
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        resp.extensions().get::<Rejection>(),
        Some(&Rejection::UnknownTenant)
    );
}

/// With tenant A's AS down, A's requests get 403 + Warning, and B works as before.
#[tokio::test]
async fn one_tenants_as_down_affects_only_that_tenant() {
    let t = two().await;
    let token_b = rpt_for(&t.b, &album(&t.b), &["view"]);
    for e in Endpoint::ALL {
        t.a.set_down(e, true);
    }
    let resp = get(&t, "a.test", "/albums/1", Some("a-fresh-token")).await;
    expect_unreachable(&resp);
    let resp = get(&t, "a.test", "/albums/1", None).await;
    expect_unreachable(&resp);
    let resp = get(&t, "x.test", "/b/albums/1", Some(&token_b)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = get(&t, "x.test", "/b/albums/1", None).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(resp.headers().get(http::header::WARNING).is_none());
}

/// A tenant whose AS is down at build is pending: the build returns at once with the other
/// tenant serving, the pending tenant's requests get 403 + Warning without waiting, and once
/// its AS is back it is built in the background (per its builder's start-retry backoff) and
/// serves. A tenant its AS refuses still fails the build.
#[tokio::test]
async fn a_tenant_whose_as_is_down_at_build_is_pending_then_built() {
    let (a, b) = tokio::join!(start_as(), start_as());
    for e in Endpoint::ALL {
        b.set_down(e, true);
    }
    let quick = || {
        StartRetry::forever()
            .delays(Duration::from_millis(10), Duration::from_millis(50))
            .on_retry(|_| {})
    };
    let build = TenantLayer::builder()
        .tenant(
            "a",
            TenantMatch::default().host("a.test"),
            tenant_builder(&a).await.start_retry(quick()),
        )
        .tenant(
            "b",
            TenantMatch::default().path_prefix("/b").strip_prefix(true),
            tenant_builder(&b).await.start_retry(quick()),
        )
        .build();
    let layer = tokio::time::timeout(Duration::from_secs(5), build)
        .await
        .expect("b's AS down holds nothing back")
        .expect("a builds; b is pending");
    assert_eq!(layer.pending_tenants().collect::<Vec<_>>(), ["b"]);
    assert!(layer.tenant("b").is_none() && layer.tenant("a").is_some());
    tokio::time::timeout(Duration::from_secs(1), layer.first_tenant_built())
        .await
        .expect("a is built");
    let url = format!(
        "http://{}",
        serve(app(Calls::default()).layer(layer.clone())).await
    );
    let t = Two {
        a,
        b,
        layer,
        url,
        calls: Calls::default(),
    };
    let token_a = rpt_for(&t.a, &album(&t.a), &["view"]);
    let resp = get(&t, "a.test", "/albums/1", Some(&token_a)).await;
    assert_eq!(resp.status(), StatusCode::OK, "a serves");
    let resp = tokio::time::timeout(
        Duration::from_secs(1),
        get(&t, "x.test", "/b/albums/1", Some("a-token")),
    )
    .await
    .expect("no wait for b's build");
    expect_unreachable(&resp);
    expect_unreachable(&get(&t, "x.test", "/b/albums/1", None).await);

    for e in Endpoint::ALL {
        t.b.set_down(e, false);
    }
    eventually("b built in the background", || {
        t.layer.pending_tenants().next().is_none()
    })
    .await;
    let token_b = rpt_for(&t.b, &album(&t.b), &["view"]);
    let resp = get(&t, "x.test", "/b/albums/1", Some(&token_b)).await;
    assert_eq!(resp.status(), StatusCode::OK, "b serves once built");
    let resp = get(&t, "x.test", "/b/albums/1", None).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = get(&t, "a.test", "/albums/1", Some(&token_b)).await;
    assert_eq!(
        resp.status(),
        StatusCode::UNAUTHORIZED,
        "b's token is unknown in a"
    );

    // A refusal (a wrong secret) is no outage: the build fails, naming the tenant.
    let err = TenantLayer::builder()
        .tenant(
            "a",
            TenantMatch::default().host("a.test"),
            tenant_builder(&t.a).await,
        )
        .tenant(
            "b",
            TenantMatch::default().host("b.test"),
            UmaLayer::discover(t.b.issuer(), RS_ID, "wrong-secret")
                .insecure_allow_http()
                .resources(albums())
                .start_retry(quick()),
        )
        .build()
        .await
        .expect_err("refused by b's AS");
    assert!(
        !err.is_transient() && err.to_string().contains("tenant `b`"),
        "{err}"
    );
}

/// PATs, tickets and cache entries are each tenant's own.
#[tokio::test]
async fn pats_tickets_and_caches_are_per_tenant() {
    let t = two().await;
    let (pats_a, pats_b) = (t.a.pats_issued(), t.b.pats_issued());
    let resp = get(&t, "a.test", "/albums/1", None).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(t.a.count(Endpoint::Permission), 1);
    assert_eq!(t.b.count(Endpoint::Permission), 0, "the ticket is A's");
    let resp = get(&t, "x.test", "/b/albums/1", None).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(t.b.count(Endpoint::Permission), 1);
    // Each AS issued the PAT of its own tenant, and no other.
    assert_eq!(t.a.pats_issued(), pats_a.max(1));
    assert_eq!(t.b.pats_issued(), pats_b.max(1));

    // A token cached by A is introspected again by B, at B.
    let token_a = rpt_for(&t.a, &album(&t.a), &["view"]);
    for _ in 0..3 {
        let resp = get(&t, "a.test", "/albums/1", Some(&token_a)).await;
        assert_eq!(resp.status(), StatusCode::OK);
    }
    assert_eq!(t.a.count(Endpoint::Introspection), 1, "A's cache answered");
    let resp = get(&t, "x.test", "/b/albums/1", Some(&token_a)).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(t.b.count(Endpoint::Introspection), 1, "B asked its own AS");
    let (la, lb) = (
        t.layer.tenant("a").expect("a"),
        t.layer.tenant("b").expect("b"),
    );
    // Separate caches: emptying B's leaves A's entry, so A answers without asking its AS.
    lb.cache().invalidate_all();
    let resp = get(&t, "a.test", "/albums/1", Some(&token_a)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        t.a.count(Endpoint::Introspection),
        1,
        "A's entry outlived B's invalidate_all"
    );
    assert_ne!(la.as_uri(), lb.as_uri());
    // Forgetting a token reaches every tenant.
    t.layer.forget_token(&token_a);
    let resp = get(&t, "a.test", "/albums/1", Some(&token_a)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(t.a.count(Endpoint::Introspection), 2);
}

/// Tenants matched by the issuer of their JWT RPTs: an unknown issuer, a token that is not a
/// JWT, or none, are refused before any AS call; a forged `iss` is checked by the AS it names,
/// which refuses it.
#[tokio::test]
async fn the_issuer_match_never_fetches_for_an_unknown_issuer() {
    let jwt_as = || as_builder().rpt_format(RptFormat::Jwt).spawn();
    let (a, b) = tokio::join!(jwt_as(), jwt_as());
    let (a, b) = (a.expect("A starts"), b.expect("B starts"));
    let layer = TenantLayer::builder()
        .tenant(
            "a",
            TenantMatch::default().token_issuer(a.jwt_issuer()),
            tenant_builder(&a).await,
        )
        .tenant(
            "b",
            TenantMatch::default().token_issuer(b.jwt_issuer()),
            tenant_builder(&b).await,
        )
        .build()
        .await
        .expect("builds");
    let calls = Calls::default();
    let url = format!("http://{}", serve(app(calls.clone()).layer(layer)).await);
    let http = http();
    let token_a = rpt_for(&a, &album(&a), &["view"]);
    assert_eq!(
        get_with(&http, &url, "/albums/1", &token_a).await.status(),
        StatusCode::OK
    );

    let before = as_calls(&[&a, &b]);
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let unknown = format!(
        "{}.{}.c2ln",
        b64(r#"{"alg":"RS256","kid":"k"}"#),
        b64(r#"{"iss":"https://evil.example","exp":9999999999}"#)
    );
    for token in [unknown.as_str(), "opaque-token"] {
        let resp = get_with(&http, &url, "/albums/1", token).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    }
    assert_eq!(
        get_plain(&http, &url, "/albums/1").await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(as_calls(&[&a, &b]), before, "nothing fetched for them");

    // B's issuer on a token B never signed: B's AS says so.
    let forged = format!(
        "{}.{}.c2ln",
        b64(r#"{"alg":"RS256","kid":"k"}"#),
        b64(&format!(
            r#"{{"iss":"{}","exp":9999999999}}"#,
            b.jwt_issuer()
        ))
    );
    let resp = get_with(&http, &url, "/albums/1", &forged).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(calls.get(), 1);
}

/// Lazy tenants: concurrent first requests share one build (one discovery, one PAT); a name
/// the template refuses is `404` without an AS call; an AS down at build time answers 403 +
/// Warning for that tenant only.
#[tokio::test]
async fn lazy_tenants_are_built_once_and_fail_alone() {
    let (a, b) = tokio::join!(start_as(), start_as());
    let issuers = Arc::new([a.issuer(), b.issuer()]);
    let built = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&built);
    let asked = Arc::new(AtomicUsize::new(0));
    let names_seen = Arc::clone(&asked);
    let layer = TenantLayer::builder()
        .resolver(|req| {
            let name = req.uri.path().strip_prefix("/t/")?.split('/').next()?;
            Some(TenantChoice::new(name).strip_prefix(format!("/t/{name}")))
        })
        .template(move |name| {
            names_seen.fetch_add(1, Ordering::SeqCst);
            let issuer = match name {
                "a" => issuers[0].clone(),
                "b" => issuers[1].clone(),
                _ => return None,
            };
            counted.fetch_add(1, Ordering::SeqCst);
            Some(
                UmaLayer::discover(issuer, RS_ID, RS_SECRET)
                    .insecure_allow_http()
                    .resources(albums()),
            )
        })
        .max_live_tenants(4)
        .lazy_retry_after(std::time::Duration::from_millis(200))
        .build()
        .await
        .expect("builds");
    let calls = Calls::default();
    let url = format!(
        "http://{}",
        serve(app(calls.clone()).layer(layer.clone())).await
    );
    let http = http();

    let answers =
        futures_util::future::join_all((0..8).map(|_| get_plain(&http, &url, "/t/a/albums/3")))
            .await;
    for resp in answers {
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        a.count(Endpoint::Discovery),
        1,
        "one build for eight requests"
    );
    assert_eq!(a.pats_issued(), 1);
    assert_eq!(built.load(Ordering::SeqCst), 1, "the template ran once");
    assert!(layer.tenant("a").is_some());
    let token_a = rpt_for(&a, &album(&a), &["view"]);
    let resp = get_with(&http, &url, "/t/a/albums/3", &token_a).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.text().await.expect("body"), "hello from /albums/3");

    let before = as_calls(&[&a, &b]);
    let resp = get_with(&http, &url, "/t/zzz/albums/3", &token_a).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(as_calls(&[&a, &b]), before);
    // A name that could not be a realm's never reaches the template.
    let asked_before = asked.load(Ordering::SeqCst);
    for bad in ["a%40x", "..", "a.b%2F..", &"x".repeat(65)] {
        let resp = get_with(&http, &url, &format!("/t/{bad}/albums/3"), &token_a).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{bad}");
    }
    assert_eq!(asked.load(Ordering::SeqCst), asked_before);
    assert_eq!(as_calls(&[&a, &b]), before);

    for e in Endpoint::ALL {
        b.set_down(e, true);
    }
    let resp = get_plain(&http, &url, "/t/b/albums/3").await;
    expect_unreachable(&resp);
    // The failure is remembered: the next request is refused without calling B's AS.
    let b_calls = as_calls(&[&b]);
    let resp = get_plain(&http, &url, "/t/b/albums/3").await;
    expect_unreachable(&resp);
    assert_eq!(as_calls(&[&b]), b_calls, "no build while backing off");
    let resp = get_with(&http, &url, "/t/a/albums/3", &token_a).await;
    assert_eq!(resp.status(), StatusCode::OK, "a is untouched");
    for e in Endpoint::ALL {
        b.set_down(e, false);
    }
    // Tried again once the wait is over (polled: the wait is a timer, not a start-up).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let status = loop {
        let status = get_plain(&http, &url, "/t/b/albums/3").await.status();
        if status != StatusCode::FORBIDDEN || std::time::Instant::now() > deadline {
            break status;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(status, StatusCode::UNAUTHORIZED, "built once B is back");
    assert_eq!(calls.get(), 2);
}

/// At most `max_live_tenants` lazy tenants are kept: the least recently used is dropped, and
/// built again (a second discovery) when asked for again.
#[tokio::test]
async fn lazy_tenants_beyond_the_bound_are_dropped_and_built_again() {
    let (a, b) = tokio::join!(start_as(), start_as());
    let issuers = Arc::new([a.issuer(), b.issuer()]);
    let layer = TenantLayer::builder()
        .resolver(|req| {
            let name = req.uri.path().strip_prefix("/t/")?.split('/').next()?;
            Some(TenantChoice::new(name).strip_prefix(format!("/t/{name}")))
        })
        .template(move |name| {
            let issuer = match name {
                "a" => issuers[0].clone(),
                "b" => issuers[1].clone(),
                _ => return None,
            };
            Some(
                UmaLayer::discover(issuer, RS_ID, RS_SECRET)
                    .insecure_allow_http()
                    .resources(albums()),
            )
        })
        .max_live_tenants(1)
        .build()
        .await
        .expect("builds");
    let url = format!(
        "http://{}",
        serve(app(Calls::default()).layer(layer.clone())).await
    );
    let http = http();
    for path in [
        "/t/a/albums/1",
        "/t/a/albums/2",
        "/t/b/albums/1",
        "/t/a/albums/3",
    ] {
        let resp = get_plain(&http, &url, path).await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
    assert_eq!(
        a.count(Endpoint::Discovery),
        2,
        "a was dropped for b, then built again"
    );
    assert_eq!(b.count(Endpoint::Discovery), 1);
    assert!(layer.tenant("a").is_some());
    assert!(layer.tenant("b").is_none(), "b was dropped for a");
    // Least recently used, not least frequently: a tenant used often is still dropped for a
    // new one, which is then kept (not refused admission and rebuilt on every request).
    for _ in 0..8 {
        let resp = get_plain(&http, &url, "/t/a/albums/1").await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    }
    for _ in 0..3 {
        let resp = get_plain(&http, &url, "/t/b/albums/1").await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        b.count(Endpoint::Discovery),
        2,
        "b is built once more, then kept"
    );
    assert!(layer.tenant("b").is_some());
    assert!(
        layer.tenant("a").is_none(),
        "a, less recently used, was dropped"
    );
}

/// Build refuses what cannot work.
#[tokio::test]
async fn bad_tenant_configurations_are_refused() {
    let a = start_as().await;
    let same = || TenantMatch::default().host("a.test");
    let err = TenantLayer::builder()
        .tenant("a", same(), tenant_builder(&a).await)
        .tenant("b", same(), tenant_builder(&a).await)
        .build()
        .await
        .expect_err("same match");
    assert!(
        err.is_config() && err.to_string().contains("the same match"),
        "{err}"
    );
    // A narrower match after a wider one would never take a request either.
    let err = TenantLayer::builder()
        .tenant(
            "a",
            TenantMatch::default().path_prefix("/a"),
            tenant_builder(&a).await,
        )
        .tenant(
            "b",
            TenantMatch::default()
                .path_prefix("/a/v2")
                .strip_prefix(true),
            tenant_builder(&a).await,
        )
        .build()
        .await
        .expect_err("shadowed");
    assert!(err.to_string().contains("or a wider one"), "{err}");
    let err = TenantLayer::builder()
        .tenant("a", TenantMatch::default(), tenant_builder(&a).await)
        .build()
        .await
        .expect_err("no condition");
    assert!(err.to_string().contains("every request"), "{err}");
    let err = TenantLayer::builder().build().await.expect_err("nothing");
    assert!(err.is_config());
}

/// The tenant layer around an inner service that answers with the tenant it was given and
/// the host it reads itself: the first `Host` line (what `HeaderMap::get`, axum-extra's `Host`
/// and uma-proxy's `X-Forwarded-Host` take), and that value's host as an authority
/// (`http::uri::Authority::host`, as `new URL("http://" + host)` or `urlsplit` read it).
fn host_echo(
    layer: &TenantLayer,
) -> impl tower::Service<
    http::Request<()>,
    Response = http::Response<String>,
    Error = std::convert::Infallible,
    Future: Send,
> + Clone {
    use tower::Layer;
    layer.layer(tower::service_fn(|req: http::Request<()>| async move {
        let tenant = req
            .extensions()
            .get::<tower_uma::tenant::Tenant>()
            .map(|t| t.name().to_owned());
        let host = req
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let authority_host = host
            .parse::<http::uri::Authority>()
            .map(|a| a.host().to_owned())
            .unwrap_or_default();
        Ok(http::Response::new(format!(
            "tenant {tenant:?}, Host {host:?}, its host {authority_host:?}"
        )))
    }))
}

/// Two `Host` lines (RFC 9112 §3.2: a server MUST answer `400`). The match reads no host in
/// them, so a request for `a.test`, which tenant `a` takes with one `Host` line, goes to
/// tenant `b` (path prefix `/b`, any host) when the line is repeated, while the inner service
/// and an upstream's `X-Forwarded-Host` read `a.test`: the client picks which tenant decides
/// a request the inner service takes for `a.test`'s. Refused like a target whose authority
/// differs from its `Host`.
#[tokio::test]
async fn a_request_with_two_host_lines_is_refused() {
    use tower::ServiceExt;
    let t = two().await;
    let svc = host_echo(&t.layer);
    let token_b = rpt_for(&t.b, &album(&t.b), &["view"]);
    // One line: tenant `a` takes it (its map has no `/b/albums/{id}`), `b` is never asked.
    let one = svc
        .clone()
        .oneshot(send("/b/albums/1", "a.test", &token_b))
        .await
        .expect("infallible");
    assert_ne!(one.status(), StatusCode::OK, "{}", one.body());
    let before = as_calls(&[&t.a, &t.b]);
    let mut twice = send("/b/albums/1", "a.test", &token_b);
    twice
        .headers_mut()
        .append(http::header::HOST, http::HeaderValue::from_static("a.test"));
    let resp = svc.oneshot(twice).await.expect("infallible");
    assert_eq!(
        resp.status(),
        StatusCode::BAD_REQUEST,
        "two Host lines were read as no host; the inner service saw: {}",
        resp.body()
    );
    assert_eq!(as_calls(&[&t.a, &t.b]), before, "no AS asked");
}

/// An HTTP/1.1 request with no host at all (no `Host`, no absolute-form target; RFC 9112 §3.2:
/// `400`) while a tenant matches on the host: refused, rather than left to the tenants that
/// do not look at the host. Without a tenant that matches on the host it is matched as before,
/// and HTTP/1.0 (where `Host` is optional) is never refused for it.
#[tokio::test]
async fn an_http11_request_without_a_host_is_refused_when_a_tenant_matches_on_it() {
    use tower::ServiceExt;
    let t = two().await;
    let token_b = rpt_for(&t.b, &album(&t.b), &["view"]);
    let no_host = |version| {
        http::Request::get("/b/albums/1")
            .version(version)
            .header(http::header::AUTHORIZATION, format!("Bearer {token_b}"))
            .body(())
            .expect("request")
    };
    let before = as_calls(&[&t.a, &t.b]);
    let resp = tenant_echo(&t.layer)
        .oneshot(no_host(http::Version::HTTP_11))
        .await
        .expect("infallible");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(as_calls(&[&t.a, &t.b]), before, "no AS asked");
    let resp = tenant_echo(&t.layer)
        .oneshot(no_host(http::Version::HTTP_10))
        .await
        .expect("infallible");
    assert_eq!(resp.body(), "b Some(\"/b\") /albums/1");
    // Prefix tenants only: the host is not read, the request is b's.
    let b = TenantLayer::builder()
        .tenant(
            "b",
            TenantMatch::default().path_prefix("/b").strip_prefix(true),
            tenant_builder(&t.b).await,
        )
        .build()
        .await
        .expect("builds");
    let resp = tenant_echo(&b)
        .oneshot(no_host(http::Version::HTTP_11))
        .await
        .expect("infallible");
    assert_eq!(resp.body(), "b Some(\"/b\") /albums/1");
}

/// A `Host` value that is not `host[:port]` (RFC 9112 §3.2: `400` for an invalid `Host`):
/// `a.test:1@c.test` is matched as host `a.test` with a "port" `1@c.test`, while as an
/// authority (user info `a.test:1`) it names host `c.test`. A token of tenant `a` is granted
/// by `a`'s AS for a request whose host, read as a URL parser reads it, is tenant `c`'s.
#[tokio::test]
async fn a_host_that_is_not_a_host_and_port_is_refused() {
    use tower::ServiceExt;
    let (a, c) = tokio::join!(start_as(), start_as());
    let layer = TenantLayer::builder()
        .tenant(
            "a",
            TenantMatch::default().host("a.test"),
            tenant_builder(&a).await,
        )
        .tenant(
            "c",
            TenantMatch::default().host("c.test"),
            tenant_builder(&c).await,
        )
        .build()
        .await
        .expect("both tenants build");
    let svc = host_echo(&layer);
    let token_a = rpt_for(&a, &album(&a), &["view"]);
    let ok = svc
        .clone()
        .oneshot(send("/albums/1", "a.test", &token_a))
        .await
        .expect("infallible");
    assert_eq!(ok.status(), StatusCode::OK, "{}", ok.body());
    for host in ["a.test:1@c.test", "a.test:@c.test", "a.test:x"] {
        let resp = svc
            .clone()
            .oneshot(send("/albums/1", host, &token_a))
            .await
            .expect("infallible");
        assert_eq!(
            resp.status(),
            StatusCode::BAD_REQUEST,
            "Host {host:?} was matched to a tenant; the inner service saw: {}",
            resp.body()
        );
    }
}

/// The router of the module documentation, the README and `examples/tenants.rs`, with a
/// tenant whose path prefix is stripped. axum runs `Router::layer` after routing: it would
/// route the path as received (`/b/albums/1`: no route, the fallback), while the tenant's map
/// decides on the stripped `/albums/1`, so the route the layer decided by would not be the
/// route axum serves. The documentation therefore wraps the whole router in the layer
/// (`layer.layer(router)`, served with `axum::ServiceExt::into_make_service`): the router then
/// routes the stripped path, and the album handler serves it.
#[tokio::test]
async fn the_documented_router_serves_a_tenant_whose_prefix_is_stripped() {
    use tower::Layer as _;
    let t = two().await;
    let router: axum::Router = axum::Router::new().route(
        "/albums/{id}",
        axum::routing::get(|uri: http::Uri| async move { format!("an album at {}", uri.path()) }),
    );
    let app = t.layer.clone().layer(router);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let app = axum::ServiceExt::<axum::extract::Request>::into_make_service(app);
        let _ = axum::serve(listener, app).await;
    });
    let token_b = rpt_for(&t.b, &album(&t.b), &["view"]);
    let resp = http()
        .get(format!("{url}/b/albums/1"))
        .header(http::header::HOST, "x.test")
        .bearer_auth(&token_b)
        .send()
        .await
        .expect("the app answers");
    let status = resp.status();
    let body = resp.text().await.expect("body");
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "an album at /albums/1"),
        "b's AS was asked {} time(s) and granted; axum routed the unstripped path",
        t.b.count(Endpoint::Introspection)
    );
    // The host tenant, unstripped, is served by the same router.
    let token_a = rpt_for(&t.a, &album(&t.a), &["view"]);
    let resp = http()
        .get(format!("{url}/albums/1"))
        .header(http::header::HOST, "a.test")
        .bearer_auth(&token_a)
        .send()
        .await
        .expect("the app answers");
    assert_eq!(resp.status(), StatusCode::OK);
}

/// The layer added with `Router::layer` instead, and a route that matches the path with the
/// prefix: axum has routed the request to `/b/albums/{id}`'s handler before the layer strips
/// the prefix and decides on `/albums/1`. The layer sees axum's `MatchedPath` and refuses
/// (`500`, `Rejection::Misconfigured`) before any AS call; the handler never runs.
#[cfg(feature = "axum")]
#[tokio::test]
async fn a_stripping_tenant_behind_router_layer_is_refused() {
    let t = two().await;
    let app: axum::Router = axum::Router::new()
        .route(
            "/b/albums/{id}",
            axum::routing::get(|| async { "the prefixed route" }),
        )
        .layer(t.layer.clone());
    let url = format!("http://{}", serve(app).await);
    let token_b = rpt_for(&t.b, &album(&t.b), &["view"]);
    let before = as_calls(&[&t.a, &t.b]);
    let resp = http()
        .get(format!("{url}/b/albums/1"))
        .header(http::header::HOST, "x.test")
        .bearer_auth(&token_b)
        .send()
        .await
        .expect("the app answers");
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(resp.text().await.expect("body"), "");
    assert_eq!(as_calls(&[&t.a, &t.b]), before, "no AS asked");
}

/// A path prefix with a character that is not unreserved (`+`, as `@`, `:`, `!`, `,` …) can be
/// spelled escaped: `/b%2Bx/…`. Normalisation keeps that escape (only unreserved ones are
/// decoded), so the check for a prefix in another spelling would not see `b`'s prefix in it,
/// and tenant `a` (by host) would take the request, while an upstream or router that decodes
/// the path reads `/b+x/…`: the case of `/%62/albums/7` in
/// `a_stripped_prefix_is_gone_for_the_map_and_the_app`, which is refused (`400`).
///
/// Such a prefix is refused when the layer is built (a configuration error naming it), so no
/// escaped spelling can hide it; a prefix of unreserved characters only is found in every
/// escaped spelling of its characters, and the request refused (`400`).
#[tokio::test]
async fn a_prefix_with_a_reserved_character_is_found_in_its_escaped_spelling() {
    use tower::ServiceExt;
    let (a, b) = tokio::join!(start_as(), start_as());
    for reserved in ["/b+x", "/b@x", "/b:x", "/b!x", "/b,x", "/b=x"] {
        let err = TenantLayer::builder()
            .tenant(
                "a",
                TenantMatch::default().host("a.test"),
                tenant_builder(&a).await,
            )
            .tenant(
                "b",
                TenantMatch::default()
                    .path_prefix(reserved)
                    .strip_prefix(true),
                tenant_builder(&b).await,
            )
            .build()
            .await
            .expect_err("a prefix with a reserved character is refused");
        assert!(err.is_config(), "{reserved}: {err}");
        assert!(
            err.to_string().contains(&format!("{reserved:?}")),
            "{reserved}: {err}"
        );
    }
    // Unreserved characters only: every escaped spelling of them is found.
    let layer = TenantLayer::builder()
        .tenant(
            "a",
            TenantMatch::default().host("a.test"),
            tenant_builder(&a).await,
        )
        .tenant(
            "b",
            TenantMatch::default()
                .path_prefix("/b-x~y")
                .strip_prefix(true),
            tenant_builder(&b).await,
        )
        .build()
        .await
        .expect("both tenants build");
    let svc = tenant_echo(&layer);
    let token_b = rpt_for(&b, &album(&b), &["view"]);
    let ok = svc
        .clone()
        .oneshot(send("/b-x~y/albums/7", "x.test", &token_b))
        .await
        .expect("infallible");
    assert_eq!(ok.body(), "b Some(\"/b-x~y\") /albums/7");
    for path in [
        "/b%2Dx~y/albums/7",
        "/b%2dx~y/albums/7",
        "/b-x%7Ey/albums/7",
        "/b-x%7ey/albums/7",
    ] {
        let resp = svc
            .clone()
            .oneshot(send(path, "a.test", &token_b))
            .await
            .expect("infallible");
        assert_eq!(
            resp.status(),
            StatusCode::BAD_REQUEST,
            "{path} on a.test, which a decoding upstream reads as b's /b-x~y/albums/7, was not \
             refused: {:?}",
            resp.extensions().get::<tower_uma::Rejection>()
        );
    }
}
