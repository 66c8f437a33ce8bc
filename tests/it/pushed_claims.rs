//! Pushed claims (issue 14, "Pushed claims"), end to end against `uma-test-as` in the
//! Keycloak dialect over loopback: claims read from the request go with the ticket request
//! and the permission exchange, and a token's permission granted under some claims does not
//! serve a request pushing others.

use http::{Method, StatusCode};
use serde_json::{Value, json};
use tower_uma::keycloak::PermissionExchange;
use tower_uma::resources::{ClaimBodyLayer, PushedClaims};
use tower_uma::{ResourceMap, Route, UmaLayer, UmaLayerBuilder};
use uma_test_as::{Endpoint, ResourceDescription, TestAs};

use crate::common::{
    BOB_PW, Calls, Flavor, UmaClient, expect_challenge, http, layer_builder, protected, rpt_for,
    serve, start_as_in,
};

/// `GET /albums/{id}` needs `view`, and pushes the organisation (header), the album (path)
/// and the query parameter `q`.
fn map(album: &str) -> ResourceMap {
    let claims = PushedClaims::new()
        .claim("org", "{request.header['X-Org']}")
        .and_then(|c| c.claim("album", "{request.path['id']}"))
        .and_then(|c| c.claim("q", "{request.parameter['q']}"))
        .expect("valid templates");
    ResourceMap::new().route(
        Route::new("/albums/{id}")
            .resource_id(album)
            .scopes(Method::GET, ["view"])
            .push_claims(claims),
    )
}

struct Setup {
    as_: TestAs,
    album: String,
    url: String,
    calls: Calls,
}

async fn setup(configure: impl FnOnce(UmaLayerBuilder) -> UmaLayerBuilder) -> Setup {
    let as_ = start_as_in(Flavor::Keycloak).await;
    let album = as_.register_resource(
        "alice",
        ResourceDescription {
            name: Some("album".into()),
            resource_scopes: vec!["view".into()],
            ..ResourceDescription::default()
        },
    );
    let builder = layer_builder(&as_, Flavor::Keycloak)
        .await
        .resources(map(&album));
    let layer: UmaLayer = configure(builder).build().await.expect("the layer builds");
    let (url, calls) = protected(layer).await;
    Setup {
        as_,
        album,
        url,
        calls,
    }
}

async fn get(s: &Setup, path: &str, org: &str, token: Option<&str>) -> reqwest::Response {
    let mut req = http().get(format!("{}{path}", s.url)).header("x-org", org);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    req.send().await.expect("an answer")
}

/// The `claims` of the last permission request.
fn last_ticket_claims(as_: &TestAs) -> Value {
    let asked = as_
        .requests(Endpoint::Permission)
        .pop()
        .expect("a permission request");
    let body: Value = serde_json::from_slice(&asked.body).expect("JSON");
    body[0]["claims"].clone()
}

#[tokio::test]
async fn the_ticket_request_carries_the_pushed_claims() {
    let s = setup(|b| b).await;
    let resp = get(&s, "/albums/7?q=a+b&q=c", "acme", None).await;
    expect_challenge(&resp, &s.as_);
    assert_eq!(
        last_ticket_claims(&s.as_),
        json!({"album": ["7"], "org": ["acme"], "q": ["a b", "c"]})
    );
    // A claim without a value is not sent.
    let resp = get(&s, "/albums/8", "acme", None).await;
    expect_challenge(&resp, &s.as_);
    assert_eq!(
        last_ticket_claims(&s.as_),
        json!({"album": ["8"], "org": ["acme"]})
    );
    assert_eq!(s.calls.get(), 0);
}

#[tokio::test]
async fn a_token_granted_under_other_claims_does_not_serve_the_request() {
    let s = setup(|b| b).await;
    let rpt = rpt_for(&s.as_, &s.album, &["view"]);
    // Keycloak writes the claims it decided on into the RPT's permission.
    let answer = json!({
        "active": true,
        "exp": 4_102_444_800_i64,
        "permissions": [{"rsid": s.album, "scopes": ["view"],
                         "claims": {"org": ["acme"], "album": ["7"]}}]
    });
    s.as_.respond_next(
        Endpoint::Introspection,
        1,
        200,
        "application/json",
        &answer.to_string(),
    );
    let resp = get(&s, "/albums/7", "acme", Some(&rpt)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    // The same token, from the cache, with another organisation or album: a new ticket,
    // asked with the request's claims.
    let resp = get(&s, "/albums/7", "beta", Some(&rpt)).await;
    expect_challenge(&resp, &s.as_);
    assert_eq!(
        last_ticket_claims(&s.as_),
        json!({"album": ["7"], "org": ["beta"]})
    );
    let resp = get(&s, "/albums/8", "acme", Some(&rpt)).await;
    expect_challenge(&resp, &s.as_);
    assert_eq!(s.calls.get(), 1);
    assert_eq!(s.as_.requests(Endpoint::Introspection).len(), 1);
}

#[tokio::test]
async fn exchanges_push_the_claims_and_are_cached_per_claims() {
    let s = setup(|b| b.permission_exchange(PermissionExchange::new())).await;
    let bob = UmaClient::new(&s.as_).access_token("bob", BOB_PW).await;
    for _ in 0..2 {
        let resp = get(&s, "/albums/7", "acme", Some(&bob)).await;
        assert_eq!(resp.status(), StatusCode::OK);
    }
    let resp = get(&s, "/albums/7", "beta", Some(&bob)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let exchanges: Vec<String> = s
        .as_
        .requests(Endpoint::Token)
        .iter()
        .map(uma_test_as::RecordedRequest::body_text)
        .filter(|b| b.contains("response_mode=permissions"))
        .collect();
    // One exchange per set of claims.
    assert_eq!(exchanges.len(), 2, "{exchanges:?}");
    let claim_token = |body: &str| -> Value {
        use base64::Engine as _;
        let form: Vec<(String, String)> = url::form_urlencoded::parse(body.as_bytes())
            .into_owned()
            .collect();
        let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(
            get("claim_token_format").as_deref(),
            Some("urn:ietf:params:oauth:token-type:jwt")
        );
        let token = get("claim_token").expect("a claim token");
        let json = base64::engine::general_purpose::STANDARD
            .decode(token)
            .expect("base64");
        serde_json::from_slice(&json).expect("JSON")
    };
    assert_eq!(
        claim_token(&exchanges[0]),
        json!({"album": ["7"], "org": ["acme"]})
    );
    assert_eq!(
        claim_token(&exchanges[1]),
        json!({"album": ["7"], "org": ["beta"]})
    );
    assert_eq!(s.calls.get(), 3);
}

/// `POST /transfers` needs `send` and pushes the JSON body's `amount` and every `tags` entry;
/// its handler answers with the body it received.
/// `body_layer` makes the `ClaimBodyLayer` put outside the layer, from the layer's map;
/// `/upload` is a public route that echoes its body too.
async fn body_setup(
    body_layer: impl FnOnce(&ResourceMap) -> Option<ClaimBodyLayer>,
) -> (Setup, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    body_setup_with(body_layer, |b| b, false).await
}

/// [`body_setup`], the layer's builder configured by `configure`, and the layer `around` the
/// router rather than on it.
async fn body_setup_with(
    body_layer: impl FnOnce(&ResourceMap) -> Option<ClaimBodyLayer>,
    configure: impl FnOnce(UmaLayerBuilder) -> UmaLayerBuilder,
    around: bool,
) -> (Setup, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use axum::routing::post;
    let as_ = start_as_in(Flavor::Keycloak).await;
    let album = as_.register_resource(
        "alice",
        ResourceDescription {
            name: Some("transfers".into()),
            resource_scopes: vec!["send".into()],
            ..ResourceDescription::default()
        },
    );
    let claims = PushedClaims::new()
        .claim("amount", "{request.body['/amount']}")
        .and_then(|c| c.claim("tags", "{request.body['/tags']}"))
        .expect("valid templates");
    let map = ResourceMap::new()
        .route(
            Route::new("/transfers")
                .resource_id(&album)
                .scopes(Method::POST, ["send"])
                .scopes(Method::GET, ["send"])
                .push_claims(claims),
        )
        .route(Route::public("/upload").public_methods([Method::POST]));
    let body_layer = body_layer(&map);
    let layer: UmaLayer = configure(layer_builder(&as_, Flavor::Keycloak).await)
        .resources(map)
        .build()
        .await
        .expect("the layer builds");
    let calls = Calls::default();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (c, s) = (calls.clone(), seen.clone());
    let echo = move |body: String| {
        c.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        s.lock().expect("lock").push(body.clone());
        async move { body }
    };
    let router = axum::Router::new()
        .route("/transfers", post(echo.clone()).get(echo.clone()))
        .route("/upload", post(echo));
    // Around the router (where a method override can be decided: the router then routes the
    // method the layer rewrote), or on it with `Router::layer`.
    let app = if around {
        axum::Router::new().fallback_service(tower::Layer::layer(&layer, router))
    } else {
        router.layer(layer)
    };
    let app = match body_layer {
        Some(body_layer) => app.layer(body_layer),
        None => app,
    };
    let url = format!("http://{}", serve(app).await);
    (
        Setup {
            as_,
            album,
            url,
            calls,
        },
        seen,
    )
}

async fn post_json(
    s: &Setup,
    body: &str,
    content_type: &str,
    token: Option<&str>,
) -> reqwest::Response {
    let mut req = http()
        .post(format!("{}/transfers", s.url))
        .header("content-type", content_type)
        .body(body.to_owned());
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    req.send().await.expect("an answer")
}

#[tokio::test]
async fn claims_from_the_json_body_go_with_the_ticket_request() {
    let (s, _) = body_setup(|_| Some(ClaimBodyLayer::new(64))).await;
    let resp = post_json(
        &s,
        r#"{"amount": 120, "tags": ["x", true]}"#,
        "application/json",
        None,
    )
    .await;
    expect_challenge(&resp, &s.as_);
    assert_eq!(
        last_ticket_claims(&s.as_),
        json!({"amount": ["120"], "tags": ["x", "true"]})
    );
    // No body: no claim from it.
    let resp = post_json(&s, "", "text/plain", None).await;
    expect_challenge(&resp, &s.as_);
    assert_eq!(last_ticket_claims(&s.as_), Value::Null);
    assert_eq!(s.calls.get(), 0);
}

#[tokio::test]
async fn the_body_reaches_the_handler_unchanged_and_grants_follow_the_body() {
    let (s, seen) = body_setup(|_| Some(ClaimBodyLayer::new(64))).await;
    let rpt = rpt_for(&s.as_, &s.album, &["send"]);
    let answer = json!({
        "active": true,
        "exp": 4_102_444_800_i64,
        "permissions": [{"rsid": s.album, "scopes": ["send"], "claims": {"amount": ["120"]}}]
    });
    s.as_.respond_next(
        Endpoint::Introspection,
        1,
        200,
        "application/json",
        &answer.to_string(),
    );
    let body = "{\"amount\" : 120,\n \"note\": \"\u{e9}t\u{e9}\"}";
    let resp = post_json(&s, body, "application/json; charset=utf-8", Some(&rpt)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.text().await.expect("a body"), body);
    assert_eq!(seen.lock().expect("lock").as_slice(), [body.to_owned()]);
    // The same token, cached, with another amount in the body: a new ticket.
    let resp = post_json(&s, r#"{"amount": 5000}"#, "application/json", Some(&rpt)).await;
    expect_challenge(&resp, &s.as_);
    assert_eq!(last_ticket_claims(&s.as_), json!({"amount": ["5000"]}));
    assert_eq!(s.calls.get(), 1);
}

#[tokio::test]
async fn bodies_over_the_limit_or_not_json_are_refused_before_the_layer() {
    let (s, _) = body_setup(|_| Some(ClaimBodyLayer::new(64))).await;
    let big = format!(r#"{{"amount": 1, "pad": "{}"}}"#, "x".repeat(100));
    let resp = post_json(&s, &big, "application/json", None).await;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let resp = post_json(&s, "{\"amount\": ", "application/json", None).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(s.as_.requests(Endpoint::Permission).is_empty());
    assert_eq!(s.calls.get(), 0);
}

#[tokio::test]
async fn a_json_request_no_body_layer_read_is_refused_with_500() {
    let (s, _) = body_setup(|_| None).await;
    let rpt = rpt_for(&s.as_, &s.album, &["send"]);
    let resp = post_json(&s, r#"{"amount": 1}"#, "application/json", Some(&rpt)).await;
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(s.as_.requests(Endpoint::Permission).is_empty());
    assert!(s.as_.requests(Endpoint::Introspection).is_empty());
    // A request without a body has no body claims to miss.
    let resp = post_json(&s, "", "text/plain", None).await;
    expect_challenge(&resp, &s.as_);
    assert_eq!(s.calls.get(), 0);
}

#[tokio::test]
async fn odd_json_requests_are_refused_or_read_as_json() {
    let (s, _) = body_setup(|_| Some(ClaimBodyLayer::new(64))).await;
    // A key twice: parsers disagree on which counts.
    let resp = post_json(
        &s,
        r#"{"amount": 1, "amount": 9000}"#,
        "application/json",
        None,
    )
    .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    // Two Content-Type headers.
    let resp = http()
        .post(format!("{}/transfers", s.url))
        .header("content-type", "text/plain")
        .header("content-type", "application/json")
        .body(r#"{"amount": 1}"#)
        .send()
        .await
        .expect("an answer");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(s.as_.requests(Endpoint::Permission).is_empty());
    // Bytes outside ASCII in a parameter do not hide the JSON type.
    let resp = http()
        .post(format!("{}/transfers", s.url))
        .header(
            "content-type",
            http::HeaderValue::from_bytes(b"application/json; x=\"\xff\"").expect("a value"),
        )
        .body(r#"{"amount": 7}"#)
        .send()
        .await
        .expect("an answer");
    expect_challenge(&resp, &s.as_);
    assert_eq!(last_ticket_claims(&s.as_), json!({"amount": ["7"]}));
    // An empty JSON body: read, no value.
    let resp = post_json(&s, "", "application/json", None).await;
    expect_challenge(&resp, &s.as_);
    assert_eq!(last_ticket_claims(&s.as_), Value::Null);
    assert_eq!(s.calls.get(), 0);
}

/// A JSON body over the tests' 64-byte limit.
fn big_json() -> String {
    format!(r#"{{"pad": "{}"}}"#, "x".repeat(200))
}

/// Sends `body` as JSON with `method` to `target` (a path and query); the status.
async fn upload_json(s: &Setup, method: reqwest::Method, target: &str, body: &str) -> StatusCode {
    http()
        .request(method, format!("{}{target}", s.url))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .expect("an answer")
        .status()
}

#[tokio::test]
async fn only_for_reads_the_bodies_of_body_claim_routes_alone() {
    let (s, seen) = body_setup(|map| Some(ClaimBodyLayer::new(64).only_for(map))).await;
    // A public route: a JSON body over the limit and a malformed one pass unread.
    let big = big_json();
    for body in [big.as_str(), "{not json"] {
        let status = upload_json(&s, reqwest::Method::POST, "/upload", body).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    assert_eq!(seen.lock().expect("lock").len(), 2);
    // The body-claims route is still read and bounded.
    let resp = post_json(&s, &big, "application/json", None).await;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let resp = post_json(&s, r#"{"amount": 3}"#, "application/json", None).await;
    expect_challenge(&resp, &s.as_);
    assert_eq!(last_ticket_claims(&s.as_), json!({"amount": ["3"]}));
}

/// With `MethodOverride::Decide` (the layer around the router, where overrides can be
/// decided), `PUT /transfers?_method=POST` is decided as `POST`, whose
/// route reads the body: `only_for` reads it too (it used to look at `PUT`, leave the body
/// unread, and the layer refused with 500).
#[tokio::test]
async fn only_for_reads_the_body_of_a_request_decided_as_another_method() {
    let (s, _) = body_setup_with(
        |map| Some(ClaimBodyLayer::new(64).only_for(map)),
        |b| b.method_override(tower_uma::method_override::MethodOverride::Decide),
        true,
    )
    .await;
    for (method, path) in [
        (reqwest::Method::PUT, "/transfers?_method=POST"),
        (reqwest::Method::PATCH, "/transfers"),
    ] {
        let mut req = http()
            .request(method.clone(), format!("{}{path}", s.url))
            .header("content-type", "application/json")
            .body(r#"{"amount": 5}"#);
        if path == "/transfers" {
            req = req.header("x-http-method-override", "POST");
        }
        let resp = req.send().await.expect("an answer");
        expect_challenge(&resp, &s.as_);
        assert_eq!(
            last_ticket_claims(&s.as_),
            json!({"amount": ["5"]}),
            "{method} {path}"
        );
    }
    assert_eq!(s.calls.get(), 0);
    // Decided as a route that reads no body (the public `POST /upload`): left unread, over
    // the limit or not JSON, as without the override.
    let big = big_json();
    for body in [big.as_str(), "{not json", r#"{"a":1,"a":2}"#] {
        let status = upload_json(&s, reqwest::Method::PUT, "/upload?_method=POST", body).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    assert_eq!(s.calls.get(), 3);
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_is_a_408() {
    let (s, _) = body_setup(|_| {
        Some(ClaimBodyLayer::new(64).read_timeout(std::time::Duration::from_millis(200)))
    })
    .await;
    // The head and the first bytes of a 50-byte body, then nothing.
    let head = raw_head(
        &s,
        b"POST /transfers HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Content-Length: 50\r\n\r\n{\"amount\": ",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    assert!(s.as_.requests(Endpoint::Permission).is_empty());
}

/// Nothing of `s` asked the AS or reached the handler.
fn untouched(s: &Setup) {
    assert!(s.as_.requests(Endpoint::Introspection).is_empty());
    assert!(s.as_.requests(Endpoint::Permission).is_empty());
    assert_eq!(s.calls.get(), 0);
}

/// Sends `method` `path` with `headers` and `body`.
async fn send(
    s: &Setup,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> reqwest::Response {
    let mut req = http()
        .request(method, format!("{}{path}", s.url))
        .body(body.to_owned());
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.send().await.expect("an answer")
}

/// Sends `request` (head and body, as on the wire) over a fresh connection: the first bytes
/// of the answer.
async fn raw_head(s: &Setup, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = s.url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("written");
    let mut answer = vec![0; 64];
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut answer))
        .await
        .expect("an answer before the test's own deadline")
        .expect("read");
    String::from_utf8_lossy(&answer[..n]).into_owned()
}

/// [`raw_head`]: the answer's status code.
async fn raw_status(s: &Setup, request: &[u8]) -> u16 {
    let head = raw_head(s, request).await;
    let code = head.strip_prefix("HTTP/1.1 ").expect("a status line");
    code[..3].parse().expect("a status code")
}

/// A JSON body in a charset other than UTF-8 reads as one document here and as another where
/// it is decoded (Express's body-parser decodes UTF-7): `415`, before the AS is asked.
#[tokio::test]
async fn json_in_a_charset_other_than_utf8_is_refused_with_415() {
    let (s, _) = body_setup(|_| Some(ClaimBodyLayer::new(1024))).await;
    let rpt = rpt_for(&s.as_, &s.album, &["send"]);
    // Decoded as UTF-7: {"amount":1,"x":"","amount":1000000,"y":""}.
    let utf7 =
        r#"{"amount":1,"x":"+ACIALAAiAGEAbQBvAHUAbgB0ACIAOgAxADAAMAAwADAAMAAwACwAIgB5ACIAOgAi-"}"#;
    for content_type in [
        "application/json; charset=utf-7",
        "application/json;charset=\"UTF-7\"",
        "application/json; Charset = utf-16le",
        "application/json; charset=utf-8; charset=utf-7",
        "application/json; x=\"a;charset=utf-7\"",
        "application/merge-patch+json; charset=iso-8859-1",
    ] {
        let resp = post_json(&s, utf7, content_type, Some(&rpt)).await;
        assert_eq!(
            resp.status(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type}"
        );
    }
    untouched(&s);
    // UTF-8, in any case, quoted or not, is read.
    for content_type in [
        "application/json; charset=UTF-8",
        "application/json; charset=\"utf-8\"",
    ] {
        let resp = post_json(&s, r#"{"amount": 2}"#, content_type, None).await;
        expect_challenge(&resp, &s.as_);
        assert_eq!(last_ticket_claims(&s.as_), json!({"amount": ["2"]}));
    }
}

/// Go's encoding/json and ASP.NET match keys case-insensitively (Go with Unicode's simple
/// folding): two such keys in one object are refused like a key twice.
#[tokio::test]
async fn a_key_twice_under_case_folding_is_refused() {
    let (s, _) = body_setup(|_| Some(ClaimBodyLayer::new(1024))).await;
    let rpt = rpt_for(&s.as_, &s.album, &["send"]);
    for body in [
        r#"{"amount":1,"AMOUNT":1000000}"#,
        r#"{"Amount":1,"amount":1000000}"#,
        "{\"amount\":1,\"to\":{\"mask\":\"a\",\"ma\u{17f}k\":\"b\"}}",
        "{\"amount\":1,\"to\":{\"kind\":\"a\",\"\u{212a}IND\":\"b\"}}",
    ] {
        let resp = post_json(&s, body, "application/json", Some(&rpt)).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{body}");
    }
    untouched(&s);
}

/// On a route that reads the body, a body that is not labelled JSON would push no claim while
/// many handlers parse it anyway: `415` unless it is empty, with or without a
/// `ClaimBodyLayer` (`only_for` or not).
#[tokio::test]
async fn a_body_not_labelled_json_is_refused_unless_empty() {
    for which in 0..3 {
        let (s, _) = body_setup(|map| match which {
            0 => None,
            1 => Some(ClaimBodyLayer::new(1024)),
            _ => Some(ClaimBodyLayer::new(1024).only_for(map)),
        })
        .await;
        let rpt = rpt_for(&s.as_, &s.album, &["send"]);
        let body = r#"{"amount":1000000}"#;
        for content_type in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "text/json",
        ] {
            let resp = post_json(&s, body, content_type, Some(&rpt)).await;
            assert_eq!(
                resp.status(),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "{which} {content_type}"
            );
        }
        // No Content-Type at all; a chunked body.
        let unlabelled =
            b"POST /transfers HTTP/1.1\r\nHost: x\r\nContent-Length: 18\r\n\r\n{\"amount\":1000000}";
        assert_eq!(raw_status(&s, unlabelled).await, 415, "{which}");
        let chunked = b"POST /transfers HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n\
            Transfer-Encoding: chunked\r\n\r\n12\r\n{\"amount\":1000000}\r\n0\r\n\r\n";
        assert_eq!(raw_status(&s, chunked).await, 415, "{which}");
        untouched(&s);
        // Empty bodies: a GET, a POST with `Content-Length: 0`.
        let resp = send(&s, Method::GET, "/transfers", &[], "").await;
        expect_challenge(&resp, &s.as_);
        let empty = b"POST /transfers HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n\
            Content-Length: 0\r\n\r\n";
        assert_eq!(raw_status(&s, empty).await, 401, "{which}");
        // A route that does not read the body takes any body.
        let text = [("content-type", "text/plain")];
        let resp = send(&s, Method::POST, "/upload", &text, body).await;
        assert_eq!(resp.status(), StatusCode::OK, "{which}");
    }
}

/// A compressed body would be read as its compressed bytes, while frameworks decode it first
/// (brotli has no magic bytes to tell): `415` on a route that reads the body.
#[tokio::test]
async fn a_compressed_body_is_refused_with_415() {
    let (s, _) = body_setup(|_| Some(ClaimBodyLayer::new(1024))).await;
    let bearer = format!("Bearer {}", rpt_for(&s.as_, &s.album, &["send"]));
    for (content_type, coding) in [
        ("application/json", "gzip"),
        ("application/json", "br"),
        ("application/json", "identity, deflate"),
        ("application/json", "BR"),
        ("text/plain", "gzip"),
    ] {
        let headers = [
            ("authorization", bearer.as_str()),
            ("content-type", content_type),
            ("content-encoding", coding),
        ];
        let resp = send(&s, Method::POST, "/transfers", &headers, r#"{"amount":1}"#).await;
        assert_eq!(
            resp.status(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type} {coding}"
        );
    }
    untouched(&s);
    let headers = [
        ("content-type", "application/json"),
        ("content-encoding", "identity"),
    ];
    let resp = send(&s, Method::POST, "/transfers", &headers, r#"{"amount":1}"#).await;
    expect_challenge(&resp, &s.as_);
    assert_eq!(last_ticket_claims(&s.as_), json!({"amount": ["1"]}));
}

/// CGI-style upstreams (WSGI, Rack, PHP) read `X-Org`, `X_Org` and `X.Org` as the same
/// `HTTP_X_ORG`: a request that carries the claimed header under another spelling is refused.
#[tokio::test]
async fn a_claimed_header_under_another_spelling_is_refused() {
    let s = setup(|b| b).await;
    for other in ["x_org", "X_ORG", "x.org"] {
        let resp = get(&s, "/albums/1", "acme", None).await;
        expect_challenge(&resp, &s.as_);
        let both = [("x-org", "acme"), (other, "evil")];
        let resp = send(&s, Method::GET, "/albums/2", &both, "").await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{other}");
        // Alone, it would give the claim no value and the handler a value.
        let resp = send(&s, Method::GET, "/albums/3", &[(other, "evil")], "").await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{other}");
    }
    // Other names with `_` are not the claimed header.
    let others = [("x-org", "acme"), ("x_orgs", "x"), ("y_org", "x")];
    let resp = send(&s, Method::GET, "/albums/4", &others, "").await;
    expect_challenge(&resp, &s.as_);
    assert_eq!(s.as_.requests(Endpoint::Permission).len(), 4);
    assert_eq!(s.calls.get(), 0);
}

/// A claimed query parameter that some upstreams read under another spelling (ASP.NET in any
/// case, PHP with `.` for `_` or as `q[]`) or split otherwise (on `;`, Rack before 3.0): the
/// claim could carry one value while the handler reads another, so the request is refused
/// before any AS call, whatever its token.
#[tokio::test]
async fn a_claimed_parameter_an_upstream_may_read_otherwise_is_refused() {
    let s = setup(|b| b).await;
    let rpt = rpt_for(&s.as_, &s.album, &["view"]);
    for query in [
        "q=1&Q=9000",
        "Q=9000",
        "q%5B%5D=9000",
        "%20q=9000",
        "x=1;q=9000&q=1",
        "q=1;x=2",
    ] {
        let resp = get(&s, &format!("/albums/7?{query}"), "acme", Some(&rpt)).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{query}");
    }
    assert_eq!(s.as_.count(Endpoint::Introspection), 0);
    // Exact pairs and other parameters are read as before.
    let resp = get(&s, "/albums/7?q=1&q=2&qq=3&page=a;b", "acme", None).await;
    expect_challenge(&resp, &s.as_);
    assert_eq!(
        last_ticket_claims(&s.as_),
        json!({"album": ["7"], "org": ["acme"], "q": ["1", "2"]})
    );
    assert_eq!(s.calls.get(), 0);
}
