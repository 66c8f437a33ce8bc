//! Decision mode (`mode = "decision"`), the whole proxy in-process between a real
//! `uma-test-as` and the test acting as the gateway: the original request read from each
//! gateway's convention, the layer's answers passed back as they are, and the requests that
//! must be refused (no original request, sources that disagree, peers not trusted, unsafe
//! spellings).
#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a failure is a test failure"
)]

use std::net::SocketAddr;

use http::{Method, StatusCode, header};
use uma_proxy::{Config, Overrides, run};
use uma_test_as::{Endpoint, RptPermission, RptSpec, TestAs};

use crate::common::*;

/// Runs the proxy in decision mode for `as_` with `extra` keys; returns its address.
async fn start_decision(as_: &TestAs, extra: &str) -> SocketAddr {
    let text = decision_config(as_, extra);
    let env = |n: &str| (n == SECRET_ENV).then(|| RS_SECRET.to_owned());
    let config = Config::from_toml_str(&text, "proxy.toml", &Overrides::default(), env).unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let ended = run(
            config,
            None,
            move |a| {
                let _ = tx.send(a);
            },
            std::future::pending(),
        )
        .await;
        panic!("the proxy stopped: {ended:?}");
    });
    tokio::time::timeout(SOON, rx).await.unwrap().unwrap()
}

fn album_rpt(as_: &TestAs, scopes: &[&str]) -> String {
    let album = as_.resource_id("album").unwrap();
    as_.mint_rpt(RptSpec {
        sub: Some("bob".into()),
        client_id: Some(APP_ID.into()),
        permissions: vec![RptPermission::new(album, scopes.iter().copied())],
        ..RptSpec::active_for("unused", ["unused"], 300)
    })
}

/// Asks `addr` (as a gateway would, on `path`) about `method target` named in `headers`.
async fn ask(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Answer {
    send(Method::GET, &format!("http://{addr}{path}"), headers).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_gateway_convention_gets_the_layers_decision() {
    let as_ = start_as().await;
    let addr = start_decision(&as_, "path_prefix = \"/ext_authz\"").await;
    let view = format!("Bearer {}", album_rpt(&as_, &["view"]));

    // Traefik / Caddy: X-Forwarded-Method and X-Forwarded-Uri.
    let r = ask(
        addr,
        "/auth",
        &[
            ("x-forwarded-method", "GET"),
            ("x-forwarded-uri", "/albums/1"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let challenge = r.headers[header::WWW_AUTHENTICATE].to_str().unwrap();
    assert!(challenge.starts_with("UMA realm=\"photos\""), "{challenge}");
    assert!(challenge.contains("ticket=\""), "{challenge}");
    let r = ask(
        addr,
        "/auth",
        &[
            ("x-forwarded-method", "GET"),
            ("x-forwarded-uri", "/albums/1?size=large"),
            ("authorization", &view),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["x-uma-subject"], "bob");
    assert_eq!(r.headers["x-uma-client-id"], APP_ID);
    let permissions = r.headers["x-uma-permissions"].to_str().unwrap();
    assert!(permissions.contains("\"view\""), "{permissions}");
    assert!(r.body.is_empty());

    // nginx: X-Original-Method and X-Original-URI; DELETE needs a scope bob's RPT lacks.
    let r = ask(
        addr,
        "/auth",
        &[
            ("x-original-method", "DELETE"),
            ("x-original-uri", "/albums/1"),
            ("authorization", &view),
        ],
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "a new ticket for delete"
    );
    let r = ask(
        addr,
        "/auth",
        &[
            ("x-original-method", "GET"),
            ("x-original-uri", "/albums/1"),
            ("authorization", &view),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);

    // Envoy: the request's own method and path below path_prefix.
    let r = send(
        Method::GET,
        &format!("http://{addr}/ext_authz/albums/1"),
        &[("authorization", &view)],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["x-uma-subject"], "bob");
    let r = send(
        Method::PUT,
        &format!("http://{addr}/ext_authz/albums/1"),
        &[("authorization", &view)],
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // An RPT without `sub` or `client_id`: the headers are there, empty, for the gateway to
    // overwrite a client's own with.
    let anonymous = as_.mint_rpt(RptSpec {
        sub: None,
        client_id: None,
        permissions: vec![RptPermission::new(
            as_.resource_id("album").unwrap(),
            ["view"],
        )],
        ..RptSpec::active_for("unused", ["unused"], 300)
    });
    let r = ask(
        addr,
        "/auth",
        &[
            ("x-forwarded-method", "GET"),
            ("x-forwarded-uri", "/albums/1"),
            ("authorization", &format!("Bearer {anonymous}")),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["x-uma-subject"], "");
    assert_eq!(r.headers["x-uma-client-id"], "");
    assert!(
        r.headers["x-uma-permissions"]
            .to_str()
            .unwrap()
            .contains("view")
    );

    // Public routes pass without a token and without X-Uma-* headers.
    let r = ask(
        addr,
        "/auth",
        &[
            ("x-forwarded-method", "GET"),
            ("x-forwarded-uri", "/public/x"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    for name in ["x-uma-subject", "x-uma-client-id", "x-uma-permissions"] {
        assert_eq!(
            r.headers[name], "",
            "{name}: empty, for gateways to overwrite a client's"
        );
    }
    // A method the route does not list: 405 with Allow, as in proxy mode.
    let r = ask(
        addr,
        "/auth",
        &[
            ("x-forwarded-method", "POST"),
            ("x-forwarded-uri", "/albums/1"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(r.headers.contains_key(header::ALLOW));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_cannot_be_decided_are_refused() {
    let as_ = start_as().await;
    let addr = start_decision(&as_, "").await;
    let view = format!("Bearer {}", album_rpt(&as_, &["view"]));
    let bad_request = [
        // No original request at all, or half of one.
        vec![],
        vec![("x-forwarded-uri", "/public/x")],
        vec![("x-original-method", "GET")],
        // Two sources that disagree: a client's own X-Original-URI behind Traefik.
        vec![
            ("x-forwarded-method", "GET"),
            ("x-forwarded-uri", "/albums/1"),
            ("x-original-method", "GET"),
            ("x-original-uri", "/public/x"),
        ],
        // Not origin form.
        vec![
            ("x-forwarded-method", "GET"),
            ("x-forwarded-uri", "http://evil/public/x"),
        ],
        // The spelling rules of proxy mode.
        vec![
            ("x-forwarded-method", "GET"),
            ("x-forwarded-uri", "/public/%2e%2e/albums/1"),
        ],
        vec![
            ("x-forwarded-method", "GET"),
            ("x-forwarded-uri", "/albums;x=1/1"),
        ],
        // A network-path reference to an API that resolves it as a URI reference.
        vec![
            ("x-forwarded-method", "GET"),
            ("x-forwarded-uri", "//public/albums/1"),
        ],
        vec![
            ("x-forwarded-method", "delete"),
            ("x-forwarded-uri", "/albums/1"),
        ],
        vec![
            ("x-forwarded-method", "POST"),
            ("x-forwarded-uri", "/albums/1"),
            ("x-http-method-override", "DELETE"),
        ],
        // Two hosts: which one would allowed_hosts check?
        vec![
            ("x-forwarded-method", "GET"),
            ("x-forwarded-uri", "/albums/1"),
            ("x-forwarded-host", "a.test"),
            ("x-forwarded-host", "b.test"),
        ],
    ];
    for headers in &bad_request {
        let mut with_token = headers.clone();
        with_token.push(("authorization", &view));
        let r = ask(addr, "/auth", &with_token).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{headers:?}");
    }
    // Without path_prefix, the request's own path names nothing.
    let r = send(
        Method::GET,
        &format!("http://{addr}/ext_authz/albums/1"),
        &[("authorization", &view)],
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_trusted_forwarders_may_ask() {
    let as_ = start_as().await;
    let addr = start_decision(&as_, "trusted_forwarders = [\"10.0.0.0/8\"]").await;
    let r = ask(
        addr,
        "/auth",
        &[
            ("x-forwarded-method", "GET"),
            ("x-forwarded-uri", "/public/x"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.headers.get(header::WARNING).is_none());
    assert_eq!(as_.count(Endpoint::Introspection), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_as_is_403_with_warning() {
    let as_ = start_as().await;
    let addr = start_decision(&as_, "").await;
    as_.set_down(Endpoint::Introspection, true);
    let r = ask(
        addr,
        "/auth",
        &[
            ("x-forwarded-method", "GET"),
            ("x-forwarded-uri", "/albums/1"),
            ("authorization", "Bearer some-rpt"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let warning = r.headers[header::WARNING].to_str().unwrap();
    assert!(
        warning.contains("UMA Authorization Server Unreachable"),
        "{warning}"
    );
}

/// The binary in decision mode: its metrics say which mode answered, and its start-up line
/// too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_labels_its_metrics_with_the_mode() {
    let as_ = start_as().await;
    let text = decision_config(&as_, "admin_listen = \"127.0.0.1:0\"");
    let (proxy, addr) = Proxy::start(&text).await;
    let admin = proxy.admin_addr().await;
    let r = ask(
        addr,
        "/auth",
        &[
            ("x-forwarded-method", "GET"),
            ("x-forwarded-uri", "/albums/1"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let metrics = send(Method::GET, &format!("http://{admin}/metrics"), &[]).await;
    let text = String::from_utf8_lossy(&metrics.body);
    let line = text
        .lines()
        .find(|l| l.starts_with("uma_decisions_total{"))
        .unwrap_or_else(|| panic!("no decision counted:\n{text}"));
    assert!(line.contains("mode=\"decision\""), "{line}");
    proxy.stderr_contains("mode=\"decision\"").await;
}

/// `[resource_metadata]`: the proxy serves the RFC 9728 document itself, in both modes
/// (the upstream never sees the request), and its challenges name it when asked to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_metadata_in_both_modes() {
    let as_ = start_as().await;
    let table = "[resource_metadata]\nresource = \"http://photos.test\"\n\
                 resource_documentation = \"http://photos.test/docs\"\nin_challenge = true\n";
    let up = start_upstream().await;
    let proxy = crate::upstream_view::start_run(&as_, &up.url(), table).await;
    let decision = start_decision(&as_, table).await;
    for addr in [proxy, decision] {
        let r = send(
            Method::GET,
            &format!("http://{addr}/.well-known/oauth-protected-resource"),
            &[],
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.headers[header::CONTENT_TYPE], "application/json");
        let doc = r.json();
        assert_eq!(doc["resource"], "http://photos.test");
        assert_eq!(
            doc["authorization_servers"],
            serde_json::json!([as_.issuer()])
        );
        assert_eq!(
            doc["scopes_supported"],
            serde_json::json!(["delete", "edit", "view"])
        );
        assert_eq!(doc["resource_documentation"], "http://photos.test/docs");
    }
    assert!(
        up.seen().is_empty(),
        "the upstream was asked: {:?}",
        up.seen().len()
    );
    let r = send(Method::GET, &format!("http://{proxy}/albums/1"), &[]).await;
    let challenge = r.headers[header::WWW_AUTHENTICATE].to_str().unwrap();
    let parsed = tower_uma::challenge::parse_uma_challenge(challenge).unwrap();
    assert_eq!(
        parsed.resource_metadata.as_deref(),
        Some("http://photos.test/.well-known/oauth-protected-resource")
    );
}
