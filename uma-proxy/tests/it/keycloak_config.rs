//! `uma-proxy --keycloak-config keycloak.json`: the binary started from Keycloak's own
//! adapter configuration, against `uma-test-as` in the Keycloak dialect.

use http::{Method, StatusCode};
use serde_json::json;
use tower_uma::challenge::parse_uma_challenge;
use uma_test_as::{AuthServer, Dialect, ResourceDescription, RptSpec, TestAs};

use sha2::Digest as _;

use crate::common::{Proxy, RS_ID, RS_SECRET, send, send_with, start_upstream, write_config};

async fn start_keycloak_as() -> TestAs {
    AuthServer::builder()
        .dialect(Dialect::Keycloak)
        .client(RS_ID, RS_SECRET)
        .spawn()
        .await
        .expect("the test AS starts")
}

/// Registers a resource owned by the resource server, as Keycloak's console makes them (a
/// `paths[].name` binds only to such a resource).
fn register(as_: &TestAs, name: &str, scopes: &[&str], uris: &[&str]) -> String {
    let id = as_.register_resource(
        RS_ID,
        ResourceDescription {
            name: Some(name.into()),
            resource_scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            ..ResourceDescription::default()
        },
    );
    assert!(as_.set_resource_uris(&id, uris));
    id
}

/// A `keycloak.json` for `as_`'s realm and the proxy's client, with `enforcer` as its
/// `policy-enforcer` section.
fn keycloak_json(as_: &TestAs, enforcer: &serde_json::Value) -> serde_json::Value {
    let realm = as_.issuer().rsplit('/').next().expect("a realm").to_owned();
    json!({
        "realm": realm,
        "auth-server-url": as_.base_url() + "/",
        "resource": RS_ID,
        "credentials": {"secret": RS_SECRET},
        "policy-enforcer": enforcer,
    })
}

/// uma-proxy started from `keycloak_json` alone, in front of `upstream`; its address.
async fn start_from_keycloak_json(
    keycloak_json: &serde_json::Value,
    upstream: &str,
) -> (Proxy, std::net::SocketAddr) {
    let file = write_config(&keycloak_json.to_string());
    let mut proxy = Proxy::spawn_args(
        &[
            "--keycloak-config",
            file.to_str().expect("a UTF-8 path"),
            "--upstream",
            upstream,
            "--listen",
            "127.0.0.1:0",
        ],
        &[],
    );
    let addr = proxy.listening().await;
    (proxy, addr)
}

#[tokio::test]
async fn the_binary_starts_from_a_keycloak_json_alone() {
    let as_ = start_keycloak_as().await;
    let album = register(&as_, "album", &["view", "delete"], &["/albums/*"]);
    let index = register(&as_, "index", &["list"], &["/index/*"]);
    let upstream = start_upstream().await;
    let issuer = as_.issuer();
    let realm = issuer.rsplit('/').next().expect("a realm").to_owned();
    // As Keycloak's console writes it, plus the enforcer section.
    let keycloak_json = json!({
        "realm": realm,
        "auth-server-url": as_.base_url() + "/",
        "ssl-required": "external",
        "resource": RS_ID,
        "credentials": {"secret": RS_SECRET},
        "confidential-port": 0,
        "policy-enforcer": {
            "user-managed-access": {},
            "lazy-load-paths": true,
            "paths": [
                {"name": "album", "path": "/albums/{id}", "scopes": ["view"],
                 "methods": [{"method": "DELETE", "scopes": ["delete"]}]},
                {"path": "/health", "enforcement-mode": "DISABLED"}
            ]
        }
    });
    let (_proxy, addr) = start_from_keycloak_json(&keycloak_json, &upstream.url()).await;
    let url = |path: &str| format!("http://{addr}{path}");

    let health = send(Method::GET, &url("/health"), &[]).await;
    assert_eq!(health.status, StatusCode::OK);
    let denied = send(Method::GET, &url("/albums/1"), &[]).await;
    assert_eq!(denied.status, StatusCode::UNAUTHORIZED);
    let header = denied.headers[http::header::WWW_AUTHENTICATE]
        .to_str()
        .expect("ascii");
    let challenge = parse_uma_challenge(header).expect("a UMA challenge");
    assert_eq!(challenge.realm.as_deref(), Some(realm.as_str()));
    assert_eq!(challenge.as_uri, issuer);

    let view = as_.mint_rpt(RptSpec::active_for(&album, ["view"], 300));
    let bearer = format!("Bearer {view}");
    let ok = send(
        Method::GET,
        &url("/albums/1"),
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK);
    let delete = send(
        Method::DELETE,
        &url("/albums/1"),
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(delete.status, StatusCode::UNAUTHORIZED);
    // Lazy paths.
    let list = as_.mint_rpt(RptSpec::active_for(&index, ["list"], 300));
    let bearer = format!("Bearer {list}");
    let lazy = send(Method::GET, &url("/index/a"), &[("authorization", &bearer)]).await;
    assert_eq!(lazy.status, StatusCode::OK);
    let nothing = send(Method::GET, &url("/nothing"), &[("authorization", &bearer)]).await;
    assert_eq!(nothing.status, StatusCode::FORBIDDEN);
    assert_eq!(upstream.seen().len(), 3);
}

#[tokio::test]
async fn a_bad_keycloak_json_is_refused_with_its_key() {
    let file = write_config(
        &json!({"realm": "r", "auth-server-url": "https://kc.example", "resource": "c",
                "credentials": {"secret": "s"},
                "policy-enforcer": {"paths": [{"name": "A", "path": "/a",
                    "claim-information-point": {"http": {}}}]}})
        .to_string(),
    );
    let file = file.to_str().expect("a UTF-8 path");
    let mut proxy = Proxy::spawn_args(
        &[
            "--keycloak-config",
            file,
            "--upstream",
            "http://127.0.0.1:9",
        ],
        &[],
    );
    let status = proxy.exit_status().await;
    assert_eq!(status.code(), Some(2));
    proxy
        .stderr_contains(
            "`policy-enforcer.paths[0].claim-information-point.http`: is not supported",
        )
        .await;
}

#[tokio::test]
async fn on_deny_redirect_to_turns_denials_into_redirects() {
    let as_ = start_keycloak_as().await;
    let album = register(&as_, "album", &["view"], &["/albums/*"]);
    let upstream = start_upstream().await;
    let keycloak_json = keycloak_json(
        &as_,
        &json!({
            "user-managed-access": {},
            "on-deny-redirect-to": "/access-denied",
            "paths": [{"name": "album", "path": "/albums/{id}", "scopes": ["view"]}]
        }),
    );
    let (_proxy, addr) = start_from_keycloak_json(&keycloak_json, &upstream.url()).await;
    let url = |path: &str| format!("http://{addr}{path}");
    let bearer = format!(
        "Bearer {}",
        as_.mint_rpt(RptSpec::active_for(&album, ["view"], 300))
    );
    // No path matches: a denial, redirected as Keycloak's enforcer does.
    let unmapped = send(Method::GET, &url("/nothing"), &[("authorization", &bearer)]).await;
    assert_eq!(unmapped.status, StatusCode::FOUND);
    assert_eq!(unmapped.headers[http::header::LOCATION], "/access-denied");
    // A UMA client still gets its challenge, and a granted request passes.
    let challenged = send(Method::GET, &url("/albums/1"), &[]).await;
    assert_eq!(challenged.status, StatusCode::UNAUTHORIZED);
    assert!(challenged.headers.get(http::header::LOCATION).is_none());
    let ok = send(
        Method::GET,
        &url("/albums/1"),
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(upstream.seen().len(), 1);
}

#[tokio::test]
async fn claims_from_the_json_body_are_pushed_and_the_body_still_reaches_the_upstream() {
    use http_body_util::{BodyExt, Full};
    let as_ = start_keycloak_as().await;
    let transfers = register(&as_, "transfers", &["send"], &["/transfers"]);
    let upstream = start_upstream().await;
    let keycloak_json = keycloak_json(
        &as_,
        &json!({
            "user-managed-access": {},
            "paths": [{"name": "transfers", "path": "/transfers",
                       "methods": [{"method": "POST", "scopes": ["send"]}],
                       "claim-information-point": {"claims": {
                           "amount": "{request.body['/amount']}"}}},
                      {"path": "/upload", "enforcement-mode": "DISABLED"}]
        }),
    );
    let (_proxy, addr) = start_from_keycloak_json(&keycloak_json, &upstream.url()).await;
    let url = format!("http://{addr}/transfers");
    let post = |body: &str, bearer: Option<String>| {
        let body = Full::new(bytes::Bytes::from(body.to_owned()))
            .map_err(|never| match never {})
            .boxed_unsync();
        let url = url.clone();
        async move {
            let mut headers = vec![("content-type", "application/json".to_owned())];
            if let Some(b) = bearer {
                headers.push(("authorization", b));
            }
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            send_with(Method::POST, &url, &headers, body).await
        }
    };
    // No token: a ticket asked with the body's claim.
    let challenged = post(r#"{"amount": 120}"#, None).await;
    assert_eq!(challenged.status, StatusCode::UNAUTHORIZED);
    let asked = as_
        .requests(uma_test_as::Endpoint::Permission)
        .pop()
        .expect("a permission request");
    let asked: serde_json::Value = serde_json::from_slice(&asked.body).expect("JSON");
    assert_eq!(asked[0]["claims"], json!({"amount": ["120"]}));
    // An RPT granted under that claim: the request passes with its body intact.
    let rpt = as_.mint_rpt(RptSpec::active_for(&transfers, ["send"], 300));
    as_.respond_next(
        uma_test_as::Endpoint::Introspection,
        1,
        200,
        "application/json",
        &json!({"active": true, "exp": 4_102_444_800_i64,
                "permissions": [{"rsid": transfers, "scopes": ["send"],
                                 "claims": {"amount": ["120"]}}]})
        .to_string(),
    );
    let body = "{\"amount\": 120, \"memo\": \"rent\"}";
    let ok = post(body, Some(format!("Bearer {rpt}"))).await;
    assert_eq!(ok.status, StatusCode::OK);
    let seen = upstream.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body_len, body.len() as u64);
    assert_eq!(
        seen[0].body_sha256,
        crate::common::hex(&sha2::Sha256::digest(body.as_bytes()))
    );
    // Another amount, same token: not granted.
    let other = post(r#"{"amount": 9000}"#, Some(format!("Bearer {rpt}"))).await;
    assert_eq!(other.status, StatusCode::UNAUTHORIZED);
    // Over the limit: 413 before any AS call.
    let asked_before = as_.requests(uma_test_as::Endpoint::Permission).len();
    let big = format!(
        r#"{{"amount": 1, "pad": "{}"}}"#,
        "x".repeat(uma_proxy::server::CLAIM_BODY_LIMIT)
    );
    let too_big = post(&big, None).await;
    assert_eq!(too_big.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        as_.requests(uma_test_as::Endpoint::Permission).len(),
        asked_before
    );
    assert_eq!(upstream.seen().len(), 1);
    // A body the claims cannot read as the upstream would: 415 before any AS call.
    for (content_type, coding) in [
        ("text/plain", "identity"),
        ("application/json; charset=utf-7", "identity"),
        ("application/json", "br"),
    ] {
        let body = Full::new(bytes::Bytes::from_static(br#"{"amount": 120}"#))
            .map_err(|never| match never {})
            .boxed_unsync();
        let refused = send_with(
            Method::POST,
            &url,
            &[("content-type", content_type), ("content-encoding", coding)],
            body,
        )
        .await;
        assert_eq!(
            refused.status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type} {coding}"
        );
    }
    assert_eq!(
        as_.requests(uma_test_as::Endpoint::Permission).len(),
        asked_before
    );
    assert_eq!(upstream.seen().len(), 1);
    // A route that does not read the body: the same JSON streams through, unbounded.
    let body = Full::new(bytes::Bytes::from(big.clone()))
        .map_err(|never| match never {})
        .boxed_unsync();
    let upload = send_with(
        Method::POST,
        &format!("http://{addr}/upload"),
        &[("content-type", "application/json")],
        body,
    )
    .await;
    assert_eq!(upload.status, StatusCode::OK);
    assert_eq!(upstream.seen()[1].body_len, big.len() as u64);
}

/// A claim pushed from a forwarding header (Keycloak's `claim-information-point` reading
/// `X-Forwarded-For`) is what the upstream would receive: a trusted proxy's value, never one
/// a direct client made up.
#[tokio::test]
async fn a_claim_from_a_forwarding_header_is_only_a_trusted_proxys() {
    let as_ = start_keycloak_as().await;
    let admin = register(&as_, "admin", &["use"], &["/admin"]);
    let keycloak_json = keycloak_json(
        &as_,
        &json!({
            "user-managed-access": {},
            "paths": [{"name": "admin", "path": "/admin",
                       "methods": [{"method": "GET", "scopes": ["use"]}],
                       "claim-information-point": {"claims": {
                           "client_ip": "{request.header['X-Forwarded-For']}"}}}]
        }),
    );
    let keycloak_file = write_config(&keycloak_json.to_string());
    // An RPT granted for requests from 10.0.0.1 (what a policy on the address would grant).
    let rpt = as_.mint_rpt(RptSpec::active_for(&admin, ["use"], 300));
    let bearer = format!("Bearer {rpt}");
    for trusted in [false, true] {
        let upstream = start_upstream().await;
        let trust = if trusted {
            "trusted_proxies = [\"127.0.0.0/8\"]"
        } else {
            ""
        };
        let mut proxy = Proxy::spawn(
            &format!(
                "listen = \"127.0.0.1:0\"\nupstream = \"{}\"\nkeycloak_config = {:?}\n{trust}\n",
                upstream.url(),
                keycloak_file.to_str().expect("a UTF-8 path"),
            ),
            &[],
            &[],
        );
        let url = format!("http://{}/admin", proxy.listening().await);
        // The test client (127.0.0.1) says it forwards for 10.0.0.1.
        let challenged = send(Method::GET, &url, &[("x-forwarded-for", "10.0.0.1")]).await;
        assert_eq!(
            challenged.status,
            StatusCode::UNAUTHORIZED,
            "trusted: {trusted}"
        );
        let asked = as_
            .requests(uma_test_as::Endpoint::Permission)
            .pop()
            .expect("a permission request");
        let asked: serde_json::Value = serde_json::from_slice(&asked.body).expect("JSON");
        let claimed = asked[0]["claims"].get("client_ip").cloned();
        assert_eq!(
            claimed,
            trusted.then(|| json!(["10.0.0.1"])),
            "trusted: {trusted}, permission request: {asked}"
        );
        as_.respond_next(
            uma_test_as::Endpoint::Introspection,
            1,
            200,
            "application/json",
            &json!({"active": true, "exp": 4_102_444_800_i64,
                    "permissions": [{"rsid": admin, "scopes": ["use"],
                                     "claims": {"client_ip": ["10.0.0.1"]}}]})
            .to_string(),
        );
        let with_rpt = send(
            Method::GET,
            &url,
            &[
                ("x-forwarded-for", "10.0.0.1"),
                ("authorization", bearer.as_str()),
            ],
        )
        .await;
        if trusted {
            assert_eq!(with_rpt.status, StatusCode::OK);
            let seen = upstream.seen();
            assert_eq!(seen.len(), 1);
            assert_eq!(seen[0].headers["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
        } else {
            assert_eq!(with_rpt.status, StatusCode::UNAUTHORIZED);
            assert!(upstream.seen().is_empty());
        }
    }
}

/// The `transfers` resource and a proxy from a `keycloak.json` whose one path,
/// `/transfers`, pushes `claims` (Keycloak's `claim-information-point`) for `method`
/// (scope `send`); an RPT whose permission was granted under the claims `granted`, cached at
/// its first use. Returns the proxy, its address, the upstream and the `Authorization` value
/// (and the AS, to keep).
async fn transfers_under_claims(
    method: &str,
    claims: serde_json::Value,
    granted: serde_json::Value,
) -> (
    (TestAs, Proxy),
    std::net::SocketAddr,
    crate::common::Upstream,
    String,
) {
    let as_ = start_keycloak_as().await;
    let transfers = register(&as_, "transfers", &["send"], &["/transfers"]);
    let upstream = start_upstream().await;
    let keycloak_json = keycloak_json(
        &as_,
        &json!({
            "user-managed-access": {},
            "paths": [{"name": "transfers", "path": "/transfers",
                       "methods": [{"method": method, "scopes": ["send"]}],
                       "claim-information-point": {"claims": claims}}]
        }),
    );
    let (proxy, addr) = start_from_keycloak_json(&keycloak_json, &upstream.url()).await;
    let rpt = as_.mint_rpt(RptSpec::active_for(&transfers, ["send"], 300));
    // Introspected once, then cached for the rest of the test.
    as_.respond_next(
        uma_test_as::Endpoint::Introspection,
        1,
        200,
        "application/json",
        &json!({"active": true, "exp": 4_102_444_800_i64,
                "permissions": [{"rsid": transfers, "scopes": ["send"],
                                 "claims": granted}]})
        .to_string(),
    );
    ((as_, proxy), addr, upstream, format!("Bearer {rpt}"))
}

/// Review (forwarding path): `Connection` names headers that the forwarding service removes
/// as hop-by-hop, but only *after* the layer has decided. A client can therefore make the
/// layer decide on a header the upstream never receives. Here the claims read the JSON body
/// because its `Content-Type` says JSON (`amount = 120`, which the RPT was granted under);
/// `Connection: Content-Type` then removes that label on the way to the upstream, which
/// reads the same bytes as whatever an unlabelled body is to it. Rack (Rails, Sinatra) parses
/// an unlabelled POST body as a form: `{"amount": 120, "memo": "&amount=9000&"}` is
/// `amount=9000` there. The layer refuses an unlabelled non-empty body on such a route with
/// `415` precisely for this reason; `Connection` gets one past it.
#[tokio::test]
async fn a_connection_header_cannot_remove_the_content_type_the_claims_read_the_body_under() {
    use http_body_util::{BodyExt, Full};
    let (_kept, addr, upstream, bearer) = transfers_under_claims(
        "POST",
        json!({"amount": "{request.body['/amount']}"}),
        json!({"amount": ["120"]}),
    )
    .await;
    let url = format!("http://{addr}/transfers");
    let body = r#"{"amount": 120, "memo": "&amount=9000&"}"#;
    let post = |extra: Option<(&'static str, &'static str)>| {
        let body = Full::new(bytes::Bytes::from_static(body.as_bytes()))
            .map_err(|never| match never {})
            .boxed_unsync();
        let mut headers = vec![
            ("content-type", "application/json"),
            ("authorization", bearer.as_str()),
        ];
        headers.extend(extra);
        let url = url.clone();
        async move { send_with(Method::POST, &url, &headers, body).await }
    };
    // Control: the same request without `Connection` passes with its label.
    let plain = post(None).await;
    assert_eq!(plain.status, StatusCode::OK);
    assert_eq!(
        upstream.seen()[0].headers["content-type"],
        "application/json"
    );

    let hidden = post(Some(("connection", "Content-Type"))).await;
    if hidden.status == StatusCode::OK {
        let seen = upstream.seen();
        assert_eq!(
            seen[1].headers.get("content-type"),
            Some(&http::HeaderValue::from_static("application/json")),
            "allowed under the claims of a JSON body, but the upstream received that body \
             without its Content-Type (it went as hop-by-hop, after the decision): {:?}",
            seen[1].headers
        );
    }
}

/// Review (forwarding path): the same with a claim read from a header. The RPT was granted
/// under `org = acme` (`X-Org: acme`); `Connection: X-Org` makes the forwarding service
/// remove `X-Org` after the layer decided on it, so the upstream runs a request the AS
/// decided for organisation `acme` without any organisation (an API that then falls back to
/// the caller's default organisation, or to all of them, runs what no policy checked). The
/// README says a header claim "reads the headers the upstream will receive".
#[tokio::test]
async fn a_connection_header_cannot_remove_a_header_a_claim_read() {
    let (_kept, addr, upstream, bearer) = transfers_under_claims(
        "GET",
        json!({"org": "{request.header['X-Org']}"}),
        json!({"org": ["acme"]}),
    )
    .await;
    let url = format!("http://{addr}/transfers");
    // Control: with the header, as granted.
    let plain = send(
        Method::GET,
        &url,
        &[("x-org", "acme"), ("authorization", bearer.as_str())],
    )
    .await;
    assert_eq!(plain.status, StatusCode::OK);
    assert_eq!(upstream.seen()[0].headers["x-org"], "acme");

    let hidden = send(
        Method::GET,
        &url,
        &[
            ("x-org", "acme"),
            ("connection", "X-Org"),
            ("authorization", bearer.as_str()),
        ],
    )
    .await;
    if hidden.status == StatusCode::OK {
        let seen = upstream.seen();
        assert_eq!(
            seen[1].headers.get("x-org"),
            Some(&http::HeaderValue::from_static("acme")),
            "allowed under the claim org = acme read from X-Org, but the upstream received no \
             X-Org (removed as hop-by-hop after the decision): {:?}",
            seen[1].headers
        );
    }
}
