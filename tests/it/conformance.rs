//! End-to-end conformance checks of docs/protocol.md §11 (checks 1–31 and 38–40) against a
//! real `uma-test-as` per test, using its fault knobs for the failure cases.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::*;
use http::StatusCode;
use serde_json::json;
use tower_uma::{
    IntrospectionCache, ResourceMap, Route, UmaLayer,
    clock::{Clock, FixedClock},
    resources::Unmapped,
};
use uma_test_as::{Endpoint, RptPermission, RptSpec};

struct Env {
    as_: uma_test_as::TestAs,
    r: String,
    url: String,
    calls: Calls,
    http: reqwest::Client,
}

async fn env_with(
    f: Flavor,
    configure: impl FnOnce(tower_uma::UmaLayerBuilder) -> tower_uma::UmaLayerBuilder,
) -> Env {
    let as_ = start_as_in(f).await;
    let r = register_invoice(&as_);
    let layer = configure(layer_builder(&as_, f).await.resources(invoice_map(&r)))
        .build()
        .await
        .expect("layer builds");
    let (url, calls) = protected(layer).await;
    Env {
        as_,
        r,
        url,
        calls,
        http: http(),
    }
}

async fn env(f: Flavor) -> Env {
    env_with(f, |b| b).await
}

impl Env {
    async fn get(&self, path: &str, auth: Option<&str>) -> reqwest::Response {
        let mut req = self.http.get(format!("{}{path}", self.url));
        if let Some(a) = auth {
            req = req.header(http::header::AUTHORIZATION, a);
        }
        let resp = req.send().await.expect("the app answers");
        assert_hygiene(&resp);
        resp
    }

    /// The AS's next introspection answer: 200 with this JSON body.
    fn introspection_says(&self, body: &serde_json::Value) {
        self.as_.respond_next(
            Endpoint::Introspection,
            1,
            200,
            "application/json",
            &body.to_string(),
        );
    }

    fn current_pat(&self) -> String {
        let reqs = self.as_.requests(Endpoint::Permission);
        let last = reqs.last().expect("a permission request");
        header(last, "authorization")
            .expect("authorization")
            .to_owned()
    }
}

// ---- Tokenless requests ----

async fn check_01_02_tokenless_request_gets_one_uma_challenge(f: Flavor) {
    let e = env(f).await;
    let resp = e.get("/invoices/42", None).await;
    let ticket = expect_challenge(&resp, &e.as_);
    assert!(!ticket.is_empty());
    // Check 2: exactly one permission request, Bearer PAT, JSON, for R/read; no introspection.
    let reqs = e.as_.requests(Endpoint::Permission);
    assert_eq!(reqs.len(), 1);
    let auth = header(&reqs[0], "authorization").expect("authorization header");
    assert!(auth.starts_with("Bearer "), "{auth}");
    assert_eq!(header(&reqs[0], "content-type"), Some("application/json"));
    assert_eq!(reqs[0].method, "POST");
    let body: serde_json::Value = serde_json::from_slice(&reqs[0].body).expect("JSON");
    assert_eq!(
        body,
        json!([{"resource_id": e.r, "resource_scopes": ["read"]}])
    );
    assert_eq!(e.as_.count(Endpoint::Introspection), 0);
    assert_eq!(e.calls.get(), 0);
    // The ticket is the AS's own: it works at the token endpoint (byte-for-byte, check 1).
    let client = UmaClient::new(&e.as_);
    let id_token = client.id_token("bob", BOB_PW).await;
    let (status, answer) = client.rpt(&ticket, Some(&id_token)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
}

async fn check_03_post_asks_for_write(f: Flavor) {
    let e = env(f).await;
    let resp = e
        .http
        .post(format!("{}/invoices/42", e.url))
        .send()
        .await
        .expect("answer");
    expect_challenge(&resp, &e.as_);
    assert_eq!(
        permission_bodies(&e.as_),
        vec![json!([{"resource_id": e.r, "resource_scopes": ["write"]}])]
    );
}

async fn check_04_tickets_are_never_reused(f: Flavor) {
    let e = env(f).await;
    let t1 = expect_challenge(&e.get("/invoices/42", None).await, &e.as_);
    let t2 = expect_challenge(&e.get("/invoices/42", None).await, &e.as_);
    assert_ne!(t1, t2);
    assert_eq!(e.as_.count(Endpoint::Permission), 2);
}

async fn check_05_unmapped_routes_are_denied_in_enforcing_mode(f: Flavor) {
    let e = env(f).await;
    let resp = e.get("/elsewhere", None).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(resp.headers().get(http::header::WARNING).is_none());
    assert!(resp.headers().get(http::header::WWW_AUTHENTICATE).is_none());
    assert_eq!(e.calls.get(), 0);
    assert_eq!(
        e.as_.count(Endpoint::Permission) + e.as_.count(Endpoint::Introspection),
        0
    );
}

async fn check_05_unmapped_routes_pass_when_configured(f: Flavor) {
    let e = env_with(f, |b| b.unmapped(Unmapped::Allow)).await;
    let resp = e.get("/elsewhere", None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(e.calls.get(), 1);
    assert_eq!(
        e.as_.count(Endpoint::Permission) + e.as_.count(Endpoint::Introspection),
        0
    );
}

// ---- AS failure while getting a ticket ----

async fn check_06_permission_endpoint_refusing_connections(f: Flavor) {
    let e = env(f).await;
    e.as_.set_down(Endpoint::Permission, true);
    expect_unreachable(&e.get("/invoices/42", None).await);
    assert_eq!(e.calls.get(), 0);
}

async fn check_06_whole_as_gone(f: Flavor) {
    let e = env(f).await;
    let Env {
        as_,
        url,
        calls,
        http,
        ..
    } = e;
    as_.shutdown().await;
    let resp = http
        .get(format!("{url}/invoices/42"))
        .send()
        .await
        .expect("answer");
    expect_unreachable(&resp);
    assert_eq!(calls.get(), 0);
}

async fn check_07_permission_endpoint_bad_answers(f: Flavor) {
    // Each bad answer on its own: with the circuit breaker on, the run of failures below
    // would open the permission endpoint's circuit (tests/it/as_resilience.rs covers that).
    let e = env_with(f, |b| b.breaker_failure_threshold(0)).await;
    e.as_.fail_next(Endpoint::Permission, 1, 500);
    expect_unreachable(&e.get("/invoices/42", None).await);
    e.as_.respond_next(
        Endpoint::Permission,
        1,
        400,
        "application/json",
        r#"{"error":"invalid_resource_id"}"#,
    );
    expect_unreachable(&e.get("/invoices/42", None).await);
    e.as_.ticketless_next(1);
    expect_unreachable(&e.get("/invoices/42", None).await);
    e.as_.respond_next(
        Endpoint::Permission,
        1,
        201,
        "text/html",
        "<html>ticket</html>",
    );
    expect_unreachable(&e.get("/invoices/42", None).await);
    e.as_.respond_next(
        Endpoint::Permission,
        1,
        201,
        "application/json",
        r#"{"ticket":""}"#,
    );
    expect_unreachable(&e.get("/invoices/42", None).await);
    e.as_.close_next(Endpoint::Permission, 1);
    expect_unreachable(&e.get("/invoices/42", None).await);
    assert_eq!(e.calls.get(), 0);
    // And the AS body never reaches the client.
    e.as_.respond_next(
        Endpoint::Permission,
        1,
        502,
        "text/plain",
        "secret-as-detail",
    );
    let resp = e.get("/invoices/42", None).await;
    expect_unreachable(&resp);
    assert!(
        !resp
            .text()
            .await
            .expect("body")
            .contains("secret-as-detail")
    );
    // The next request, with the AS healthy again, is challenged normally.
    expect_challenge(&e.get("/invoices/42", None).await, &e.as_);
}

async fn check_08_stalled_permission_endpoint_times_out(f: Flavor) {
    let e = env(f).await;
    e.as_
        .set_latency(Endpoint::Permission, Duration::from_secs(5));
    let started = Instant::now();
    expect_unreachable(&e.get("/invoices/42", None).await);
    let elapsed = started.elapsed();
    // The configured request timeout is 800 ms (plus one PAT fetch).
    assert!(elapsed < Duration::from_millis(2500), "took {elapsed:?}");
}

async fn check_09_permission_401_once_refreshes_the_pat_and_retries(f: Flavor) {
    let e = env(f).await;
    // Warm up: one PAT in use.
    expect_challenge(&e.get("/invoices/42", None).await, &e.as_);
    assert_eq!(e.as_.pats_issued(), 1);
    e.as_.reject_next_pat(1);
    expect_challenge(&e.get("/invoices/42", None).await, &e.as_);
    assert_eq!(e.as_.pats_issued(), 2, "one extra token request");
    assert_eq!(e.as_.count(Endpoint::Permission), 3, "one retry");
}

async fn check_10_permission_401_twice_fails_closed_without_looping(f: Flavor) {
    let e = env(f).await;
    e.as_.reject_next_pat(2);
    expect_unreachable(&e.get("/invoices/42", None).await);
    assert_eq!(
        e.as_.count(Endpoint::Permission),
        2,
        "at most two permission requests"
    );
}

// ---- Requests with an RPT ----

async fn check_11_active_rpt_reaches_the_service(f: Flavor) {
    let e = env(f).await;
    let rpt = rpt_for(&e.as_, &e.r, &["read"]);
    let resp = e.get("/invoices/42", Some(&format!("Bearer {rpt}"))).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers().get("x-inner").map(|v| v.as_bytes()),
        Some(&b"yes"[..])
    );
    assert_eq!(resp.text().await.expect("body"), "hello from /invoices/42");
    assert_eq!(e.calls.get(), 1);
    let intro = e.as_.requests(Endpoint::Introspection);
    assert_eq!(intro.len(), 1);
    assert_eq!(intro[0].method, "POST");
    assert!(!intro[0].uri.contains(&rpt), "token in the URL");
    let auth = header(&intro[0], "authorization").expect("auth");
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&intro[0].body).expect("form");
    assert!(form.contains(&("token".into(), rpt.clone())));
    if f == Flavor::Keycloak {
        // docs/protocol.md §7.3: client authentication and the RPT hint.
        assert!(auth.starts_with("Basic "), "{auth}");
        assert!(form.contains(&("token_type_hint".into(), "requesting_party_token".into())));
    } else {
        assert!(auth.starts_with("Bearer "), "{auth}");
    }
    assert_eq!(e.as_.count(Endpoint::Permission), 0);
}

async fn check_12_lowercase_scheme_and_header_name(f: Flavor) {
    let e = env(f).await;
    let rpt = rpt_for(&e.as_, &e.r, &["read"]);
    let resp = e
        .http
        .get(format!("{}/invoices/42", e.url))
        .header("authorization", format!("bearer {rpt}"))
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = e
        .get("/invoices/42", Some(&format!("BEARER    {rpt}")))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
}

async fn check_13_inactive_rpt_gets_a_fresh_challenge(f: Flavor) {
    let e = env(f).await;
    let resp = e.get("/invoices/42", Some("Bearer not-a-token")).await;
    expect_challenge(&resp, &e.as_);
    assert_eq!(
        permission_bodies(&e.as_),
        vec![json!([{"resource_id": e.r, "resource_scopes": ["read"]}])]
    );
    assert_eq!(e.calls.get(), 0);
    assert_eq!(resp.text().await.expect("body"), "");
}

async fn check_14_rpt_for_another_resource_is_challenged(f: Flavor) {
    let e = env(f).await;
    let other = register_invoice_named(&e.as_, "other");
    let rpt = rpt_for(&e.as_, &other, &["read"]);
    expect_challenge(
        &e.get("/invoices/42", Some(&format!("Bearer {rpt}"))).await,
        &e.as_,
    );
    assert_eq!(
        permission_bodies(&e.as_),
        vec![json!([{"resource_id": e.r, "resource_scopes": ["read"]}])]
    );
}

fn register_invoice_named(as_: &uma_test_as::TestAs, name: &str) -> String {
    as_.register_resource(
        "alice",
        uma_test_as::ResourceDescription {
            name: Some(name.into()),
            resource_scopes: vec!["read".into()],
            ..Default::default()
        },
    )
}

async fn check_15_wrong_scope_is_challenged_for_the_needed_one(f: Flavor) {
    let e = env(f).await;
    let rpt = rpt_for(&e.as_, &e.r, &["write"]);
    expect_challenge(
        &e.get("/invoices/42", Some(&format!("Bearer {rpt}"))).await,
        &e.as_,
    );
    assert_eq!(
        permission_bodies(&e.as_),
        vec![json!([{"resource_id": e.r, "resource_scopes": ["read"]}])]
    );
    assert_eq!(e.calls.get(), 0);
}

async fn check_16_top_level_scope_is_not_a_uma_grant(f: Flavor) {
    let e = env(f).await;
    let mut extra = serde_json::Map::new();
    extra.insert("scope".into(), json!("read"));
    let rpt = e.as_.mint_rpt(RptSpec {
        exp: Some(now() + 60),
        extra,
        ..RptSpec::default()
    });
    expect_challenge(
        &e.get("/invoices/42", Some(&format!("Bearer {rpt}"))).await,
        &e.as_,
    );
    assert_eq!(e.calls.get(), 0);
}

fn spec(
    r: &str,
    exp: Option<i64>,
    nbf: Option<i64>,
    perm_exp: Option<i64>,
    perm_nbf: Option<i64>,
) -> RptSpec {
    RptSpec {
        sub: Some("bob".into()),
        exp,
        nbf,
        permissions: vec![RptPermission {
            resource_id: r.into(),
            resource_scopes: vec!["read".into()],
            exp: perm_exp,
            nbf: perm_nbf,
            ..RptPermission::default()
        }],
        ..RptSpec::default()
    }
}

async fn check_17_expired_permission_is_challenged(f: Flavor) {
    let e = env(f).await;
    let rpt = e
        .as_
        .mint_rpt(spec(&e.r, Some(now() + 60), None, Some(now() - 10), None));
    expect_challenge(
        &e.get("/invoices/42", Some(&format!("Bearer {rpt}"))).await,
        &e.as_,
    );
    assert_eq!(e.calls.get(), 0);
}

async fn check_18_active_but_expired_token_is_challenged(f: Flavor) {
    let e = env(f).await;
    // The AS itself would say inactive; make it claim active with a past exp.
    let body = json!({"active": true, "exp": now() - 10,
        "permissions": [{"resource_id": e.r, "resource_scopes": ["read"]}]});
    e.introspection_says(&body);
    expect_challenge(&e.get("/invoices/42", Some("Bearer rpt-18")).await, &e.as_);
    assert_eq!(e.calls.get(), 0);
}

async fn check_19_future_nbf_is_challenged_and_zero_nbf_ignored(f: Flavor) {
    let e = env(f).await;
    let future_token = e
        .as_
        .mint_rpt(spec(&e.r, Some(now() + 60), Some(now() + 600), None, None));
    expect_challenge(
        &e.get("/invoices/42", Some(&format!("Bearer {future_token}")))
            .await,
        &e.as_,
    );
    let future_perm = e
        .as_
        .mint_rpt(spec(&e.r, Some(now() + 60), None, None, Some(now() + 600)));
    expect_challenge(
        &e.get("/invoices/42", Some(&format!("Bearer {future_perm}")))
            .await,
        &e.as_,
    );
    let body = json!({"active": true, "exp": now() + 60, "nbf": 0,
        "permissions": [{"resource_id": e.r, "resource_scopes": ["read"], "nbf": 0}]});
    e.introspection_says(&body);
    let resp = e.get("/invoices/42", Some("Bearer rpt-19")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(e.calls.get(), 1);
}

async fn check_20_keycloak_permission_names(f: Flavor) {
    let e = env(f).await;
    let only_kc = json!({"active": true, "exp": now() + 60,
        "permissions": [{"rsid": e.r, "rsname": "invoice", "scopes": ["read"]}]});
    e.introspection_says(&only_kc);
    assert_eq!(
        e.get("/invoices/42", Some("Bearer kc-1")).await.status(),
        StatusCode::OK
    );
    let both = json!({"active": true, "exp": now() + 60,
        "permissions": [{"rsid": e.r, "rsname": "invoice", "scopes": ["read"],
                         "resource_id": e.r, "resource_scopes": ["read"]}]});
    e.introspection_says(&both);
    let resp = e.get("/invoices/42", Some("Bearer kc-2")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(e.calls.get(), 2);
}

async fn check_21_empty_bearer_or_basic_is_tokenless(f: Flavor) {
    let e = env(f).await;
    for auth in ["Bearer", "Bearer    ", "Basic YWxpY2U6YWxpY2UtcHc="] {
        expect_challenge(&e.get("/invoices/42", Some(auth)).await, &e.as_);
    }
    assert_eq!(e.as_.count(Endpoint::Introspection), 0);
    assert_eq!(e.as_.count(Endpoint::Permission), 3);
}

async fn check_21_malformed_credentials_are_bad_requests(f: Flavor) {
    // Our documented choice for credentials that cannot be a b64token: 400, no AS call.
    let e = env(f).await;
    for auth in [
        "Bearer a b",
        "Bearer a\"b",
        &format!("Bearer {}", "a".repeat(10_000)),
    ] {
        let resp = e.get("/invoices/42", Some(auth)).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{auth:.20}");
    }
    assert_eq!(
        e.as_.count(Endpoint::Introspection) + e.as_.count(Endpoint::Permission),
        0
    );
    assert_eq!(e.calls.get(), 0);
}

async fn check_22_query_string_tokens_are_ignored(f: Flavor) {
    let e = env(f).await;
    let rpt = rpt_for(&e.as_, &e.r, &["read"]);
    expect_challenge(
        &e.get(&format!("/invoices/42?access_token={rpt}"), None)
            .await,
        &e.as_,
    );
    assert_eq!(e.as_.count(Endpoint::Introspection), 0);
    assert_eq!(e.calls.get(), 0);
}

// ---- Introspection caching ----

async fn check_23_same_rpt_is_introspected_once(f: Flavor) {
    let e = env(f).await;
    let rpt = rpt_for(&e.as_, &e.r, &["read"]);
    for _ in 0..3 {
        assert_eq!(
            e.get("/invoices/42", Some(&format!("Bearer {rpt}")))
                .await
                .status(),
            StatusCode::OK
        );
    }
    assert_eq!(e.as_.count(Endpoint::Introspection), 1);
}

async fn check_24_cached_result_never_outlives_exp(f: Flavor) {
    // exp in 2 s is within the cache's 5 s skew: not cached. The layer's clock moves past exp
    // (the AS's does not, so only the layer can refuse).
    let clock = Arc::new(FixedClock::new(now()));
    let e = env_with(f, |b| {
        b.clock(clock.clone()).cache(
            IntrospectionCache::builder()
                .max_ttl(Duration::from_secs(60))
                .build(),
        )
    })
    .await;
    clock.set(now()); // the AS's time now that it is up
    let rpt = e
        .as_
        .mint_rpt(spec(&e.r, Some(clock.now_unix() + 2), None, None, None));
    assert_eq!(
        e.get("/invoices/42", Some(&format!("Bearer {rpt}")))
            .await
            .status(),
        StatusCode::OK
    );
    clock.advance(2);
    expect_challenge(
        &e.get("/invoices/42", Some(&format!("Bearer {rpt}"))).await,
        &e.as_,
    );
    assert_eq!(e.calls.get(), 1);
    assert_eq!(
        e.as_.count(Endpoint::Introspection),
        2,
        "not served from the cache"
    );
}

async fn check_25_different_rpts_are_introspected_separately(f: Flavor) {
    let e = env(f).await;
    let a = rpt_for(&e.as_, &e.r, &["read"]);
    let b = rpt_for(&e.as_, &e.r, &["read"]);
    assert_eq!(
        e.get("/invoices/42", Some(&format!("Bearer {a}")))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        e.get("/invoices/42", Some(&format!("Bearer {b}")))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(e.as_.count(Endpoint::Introspection), 2);
}

async fn check_26_introspection_failures_fail_closed_and_are_not_cached(f: Flavor) {
    // Each failure on its own: with the circuit breaker on, the five failures in a row below
    // would open the introspection endpoint's circuit (tests/it/as_resilience.rs covers that).
    let e = env_with(f, |b| b.breaker_failure_threshold(0)).await;
    let rpt = rpt_for(&e.as_, &e.r, &["read"]);
    let auth = format!("Bearer {rpt}");
    e.as_.fail_next(Endpoint::Introspection, 1, 500);
    expect_unreachable(&e.get("/invoices/42", Some(&auth)).await);
    e.as_.respond_next(
        Endpoint::Introspection,
        1,
        200,
        "text/html",
        "<html>oops</html>",
    );
    expect_unreachable(&e.get("/invoices/42", Some(&auth)).await);
    e.as_.respond_next(
        Endpoint::Introspection,
        1,
        200,
        "application/json",
        r#"{"no":"active"}"#,
    );
    expect_unreachable(&e.get("/invoices/42", Some(&auth)).await);
    // A granting answer padded past 1 MiB is not read (the layer never buffers more).
    let padded = json!({"active": true, "exp": now() + 60, "pad": "x".repeat(1024 * 1024),
        "permissions": [{"resource_id": e.r, "resource_scopes": ["read"]}]});
    e.introspection_says(&padded);
    expect_unreachable(&e.get("/invoices/42", Some(&auth)).await);
    // An `exp` that is not a NumericDate is not "no expiry" (docs/protocol.md §7.6: only 0
    // and absent are).
    let body = json!({"active": true, "exp": "never",
        "permissions": [{"resource_id": e.r, "resource_scopes": ["read"]}]});
    e.introspection_says(&body);
    expect_unreachable(&e.get("/invoices/42", Some(&auth)).await);
    assert_eq!(e.calls.get(), 0);
    assert_eq!(
        e.get("/invoices/42", Some(&auth)).await.status(),
        StatusCode::OK
    );
    assert_eq!(e.as_.count(Endpoint::Introspection), 6);
}

async fn check_27_as_down_with_an_uncached_rpt(f: Flavor) {
    let e = env(f).await;
    let rpt = rpt_for(&e.as_, &e.r, &["read"]);
    e.as_.set_down(Endpoint::Introspection, true);
    e.as_.set_down(Endpoint::Permission, true);
    expect_unreachable(&e.get("/invoices/42", Some(&format!("Bearer {rpt}"))).await);
    assert_eq!(e.calls.get(), 0);
}

async fn check_28_introspection_401_refreshes_the_pat_once(f: Flavor) {
    let e = env(f).await;
    expect_challenge(&e.get("/invoices/42", None).await, &e.as_); // a PAT in use
    let rpt = rpt_for(&e.as_, &e.r, &["read"]);
    if f == Flavor::Keycloak {
        // Keycloak's introspection is authenticated by client credentials, not the PAT: a
        // 401 there is a refusal of the client, so it fails closed without a PAT refresh.
        e.as_.fail_next(Endpoint::Introspection, 1, 401);
        expect_unreachable(&e.get("/invoices/42", Some(&format!("Bearer {rpt}"))).await);
        assert_eq!(e.as_.pats_issued(), 1);
        assert_eq!(
            e.get("/invoices/42", Some(&format!("Bearer {rpt}")))
                .await
                .status(),
            StatusCode::OK
        );
        return;
    }
    e.as_.reject_next_pat(1);
    assert_eq!(
        e.get("/invoices/42", Some(&format!("Bearer {rpt}")))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(e.as_.pats_issued(), 2);
    assert_eq!(e.as_.count(Endpoint::Introspection), 2);
}

// ---- Discovery and PAT ----

async fn check_29_issuer_mismatch_fails_start_up_without_protection_calls(f: Flavor) {
    let as_ = start_as_in(f).await;
    let doc = json!({"issuer": "http://127.0.0.1:1", "token_endpoint": as_.endpoint_url(Endpoint::Token),
        "introspection_endpoint": as_.endpoint_url(Endpoint::Introspection),
        "permission_endpoint": as_.endpoint_url(Endpoint::Permission)});
    as_.respond_next(
        Endpoint::Discovery,
        1,
        200,
        "application/json",
        &doc.to_string(),
    );
    let err = UmaLayer::discover(as_.issuer(), RS_ID, RS_SECRET)
        .dialect(f.layer_dialect())
        .insecure_allow_http()
        .build()
        .await
        .expect_err("mismatch is an error");
    assert_eq!(err.kind(), tower_uma::error::ErrorKind::Discovery);
    assert!(err.to_string().contains("issuer"), "{err}");
    assert_eq!(as_.count(Endpoint::Discovery), 1);
    for ep in [
        Endpoint::Token,
        Endpoint::Permission,
        Endpoint::Introspection,
        Endpoint::ResourceRegistration,
    ] {
        assert_eq!(as_.count(ep), 0, "{ep:?}");
    }
}

async fn check_29_discovery_requires_https_unless_allowed(f: Flavor) {
    let as_ = start_as_in(f).await;
    let err = UmaLayer::discover(as_.issuer(), RS_ID, RS_SECRET)
        .dialect(f.layer_dialect())
        .build()
        .await
        .expect_err("http refused");
    assert!(err.is_config());
    assert_eq!(as_.count(Endpoint::Discovery), 0);
}

async fn check_30_legacy_introspection_key(f: Flavor) {
    let as_ = start_as_in(f).await;
    let r = register_invoice(&as_);
    let doc = json!({"issuer": as_.issuer(), "token_endpoint": as_.endpoint_url(Endpoint::Token),
        "token_introspection_endpoint": as_.endpoint_url(Endpoint::Introspection),
        "permission_endpoint": as_.endpoint_url(Endpoint::Permission)});
    as_.respond_next(
        Endpoint::Discovery,
        1,
        200,
        "application/json",
        &doc.to_string(),
    );
    let layer = layer_builder(&as_, f)
        .await
        .resources(invoice_map(&r))
        .build()
        .await
        .expect("builds");
    let (url, _) = protected(layer).await;
    let rpt = rpt_for(&as_, &r, &["read"]);
    let resp = http()
        .get(format!("{url}/invoices/42"))
        .bearer_auth(&rpt)
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(as_.count(Endpoint::Introspection), 1);
}

async fn check_31_pat_request_shape_and_reuse(f: Flavor) {
    let e = env(f).await;
    for _ in 0..3 {
        expect_challenge(&e.get("/invoices/42", None).await, &e.as_);
    }
    let token_reqs = e.as_.requests(Endpoint::Token);
    assert_eq!(token_reqs.len(), 1, "the PAT is reused");
    let t = &token_reqs[0];
    assert_eq!(t.method, "POST");
    assert!(
        header(t, "authorization")
            .expect("client auth")
            .starts_with("Basic ")
    );
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&t.body).expect("form");
    let has = |k: &str, v: &str| form.contains(&(k.to_owned(), v.to_owned()));
    match f {
        Flavor::Standard => {
            assert!(has("grant_type", "client_credentials") && has("scope", "uma_protection"));
        }
        // Keycloak checks a client role, not a scope (docs/protocol.md §3.3).
        Flavor::Keycloak => {
            assert!(has("grant_type", "client_credentials"));
            assert!(!form.iter().any(|(k, _)| k == "scope"), "{form:?}");
        }
        // WSO2 needs a PAT bound to the resource owner (docs/protocol.md §3.4).
        Flavor::Wso2 => {
            assert!(has("grant_type", "password") && has("username", "alice"));
            assert!(has("scope", "uma_protection"));
        }
    }
    let pats: std::collections::HashSet<_> = e
        .as_
        .requests(Endpoint::Permission)
        .iter()
        .map(|r| header(r, "authorization").unwrap_or_default().to_owned())
        .collect();
    assert_eq!(pats.len(), 1, "every permission request used the same PAT");
    assert!(pats.contains(&e.current_pat()));
}

async fn check_31_lowercase_bearer_token_type_is_accepted(f: Flavor) {
    let e = env(f).await;
    e.as_.respond_next(
        Endpoint::Token,
        1,
        200,
        "application/json",
        r#"{"access_token":"pat-lowercase","token_type":"bearer","expires_in":300}"#,
    );
    // The AS does not know this PAT: the layer uses it, gets 401, refreshes and retries.
    expect_challenge(&e.get("/invoices/42", None).await, &e.as_);
    let reqs = e.as_.requests(Endpoint::Permission);
    assert_eq!(
        header(&reqs[0], "authorization"),
        Some("Bearer pat-lowercase")
    );
    assert_eq!(reqs.len(), 2);
}

// ---- Header hygiene ----

async fn check_39_jwt_tickets_pass_byte_for_byte(f: Flavor) {
    let e = env(f).await;
    let ticket = "eyJhbGciOiJSUzI1NiJ9.eyJhIjoxfQ.c2ln-X_y";
    e.as_.respond_next(
        Endpoint::Permission,
        1,
        201,
        "application/json",
        &json!({ "ticket": ticket }).to_string(),
    );
    let resp = e.get("/invoices/42", None).await;
    assert_eq!(expect_challenge(&resp, &e.as_), ticket);
    let raw = resp.headers()[http::header::WWW_AUTHENTICATE]
        .to_str()
        .expect("ascii");
    assert_eq!(
        raw,
        format!(
            "UMA realm=\"invoices\", as_uri=\"{}\", ticket=\"{ticket}\"",
            e.as_.issuer()
        )
    );
}

async fn check_40_inner_401_and_403_pass_through_untouched(f: Flavor) {
    let as_ = start_as_in(f).await;
    let r = register_invoice(&as_);
    let map =
        ResourceMap::new().route(Route::new("/teapot/*").resource_id(&r).any_method(["read"]));
    let layer = layer_builder(&as_, f)
        .await
        .resources(map)
        .build()
        .await
        .expect("builds");
    let (url, calls) = protected(layer).await;
    let rpt = rpt_for(&as_, &r, &["read"]);
    let resp = http()
        .get(format!("{url}/teapot/401"))
        .bearer_auth(&rpt)
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        resp.headers()[http::header::WWW_AUTHENTICATE],
        "Basic realm=\"inner\""
    );
    assert_eq!(resp.text().await.expect("body"), "inner 401");
    let resp = http()
        .get(format!("{url}/teapot/403"))
        .bearer_auth(&rpt)
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(resp.headers().get(http::header::WARNING).is_none());
    assert_eq!(resp.text().await.expect("body"), "inner 403");
    assert_eq!(calls.get(), 2);
    assert_eq!(as_.count(Endpoint::Permission), 0);
}

per_dialect!(
    check_01_02_tokenless_request_gets_one_uma_challenge,
    check_03_post_asks_for_write,
    check_04_tickets_are_never_reused,
    check_05_unmapped_routes_are_denied_in_enforcing_mode,
    check_05_unmapped_routes_pass_when_configured,
    check_06_permission_endpoint_refusing_connections,
    check_06_whole_as_gone,
    check_07_permission_endpoint_bad_answers,
    check_08_stalled_permission_endpoint_times_out,
    check_09_permission_401_once_refreshes_the_pat_and_retries,
    check_10_permission_401_twice_fails_closed_without_looping,
    check_11_active_rpt_reaches_the_service,
    check_12_lowercase_scheme_and_header_name,
    check_13_inactive_rpt_gets_a_fresh_challenge,
    check_14_rpt_for_another_resource_is_challenged,
    check_15_wrong_scope_is_challenged_for_the_needed_one,
    check_16_top_level_scope_is_not_a_uma_grant,
    check_17_expired_permission_is_challenged,
    check_18_active_but_expired_token_is_challenged,
    check_19_future_nbf_is_challenged_and_zero_nbf_ignored,
    check_20_keycloak_permission_names,
    check_21_empty_bearer_or_basic_is_tokenless,
    check_21_malformed_credentials_are_bad_requests,
    check_22_query_string_tokens_are_ignored,
    check_23_same_rpt_is_introspected_once,
    check_24_cached_result_never_outlives_exp,
    check_25_different_rpts_are_introspected_separately,
    check_26_introspection_failures_fail_closed_and_are_not_cached,
    check_27_as_down_with_an_uncached_rpt,
    check_28_introspection_401_refreshes_the_pat_once,
    check_31_pat_request_shape_and_reuse,
    check_31_lowercase_bearer_token_type_is_accepted,
    check_39_jwt_tickets_pass_byte_for_byte,
    check_40_inner_401_and_403_pass_through_untouched,
);

/// Discovery checks run against the dialects that publish a discovery document (WSO2 has
/// none; its static configuration is exercised by every other check above).
mod discovery {
    macro_rules! with_discovery {
        ($($name:ident),* $(,)?) => {
            $(
                mod $name {
                    #[tokio::test]
                    async fn standard() { super::super::$name(crate::common::Flavor::Standard).await }
                    #[tokio::test]
                    async fn keycloak() { super::super::$name(crate::common::Flavor::Keycloak).await }
                }
            )*
        };
    }

    with_discovery!(
        check_29_issuer_mismatch_fails_start_up_without_protection_calls,
        check_29_discovery_requires_https_unless_allowed,
        check_30_legacy_introspection_key,
    );
}
