//! Captures every tracing event and span field (TRACE level, layer and AS alike) during a full
//! UMA flow, including failures and a PAT refresh, and checks that no token, PAT, ID token,
//! password or client secret appears in it.

mod common;

use common::*;
use http::{Method, StatusCode};
use tower_uma::protection::{ClientAuth, IntrospectionAuth};
use tower_uma::{ResourceDecl, ResourceMap, Route};
use uma_test_as::Endpoint;

#[tokio::test]
async fn no_secret_reaches_the_logs() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::FULL)
        .with_writer(capture.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::set_global_default(subscriber)
        .expect("the only subscriber in this binary");

    let as_ = start_as().await;
    let map = ResourceMap::new().route(
        Route::new("/albums/{id}")
            .declare(ResourceDecl::new("album", ["view", "delete"]).with_owner("alice"))
            .scopes(Method::GET, ["view"])
            .scopes(Method::DELETE, ["delete"]),
    );
    let layer = discover(&as_)
        .await
        .resources(map)
        .build()
        .await
        .expect("builds");
    let (url, _) = protected(layer).await;
    let http = http();
    let client = UmaClient::new(&as_);

    let resp = http
        .get(format!("{url}/albums/1"))
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let header = resp.headers()[http::header::WWW_AUTHENTICATE]
        .to_str()
        .expect("ascii")
        .to_owned();
    let ticket = tower_uma::challenge::parse_uma_challenge(&header)
        .expect("challenge")
        .ticket;
    let id_token = client.id_token("bob", BOB_PW).await;
    let (status, answer) = client.rpt(&ticket, Some(&id_token)).await;
    assert_eq!(status, StatusCode::OK);
    let rpt = answer["access_token"].as_str().expect("RPT").to_owned();
    // Twice: a cache miss, then a hit (decided without a future of the layer's own).
    for _ in 0..2 {
        let resp = http
            .get(format!("{url}/albums/1"))
            .bearer_auth(&rpt)
            .send()
            .await
            .expect("answer");
        assert_eq!(resp.status(), StatusCode::OK);
    }
    // Failures: introspection 500, a rejected PAT, a junk token, a denied delete.
    as_.fail_next(Endpoint::Introspection, 1, 500);
    let _ = http
        .get(format!("{url}/albums/2"))
        .bearer_auth("junk-token-abc")
        .send()
        .await;
    as_.reject_next_pat(1);
    let _ = http
        .get(format!("{url}/albums/2"))
        .bearer_auth("junk-token-def")
        .send()
        .await;
    let _ = http
        .delete(format!("{url}/albums/1"))
        .bearer_auth(&rpt)
        .send()
        .await;

    // A client of the user's that follows redirects, sent by the introspection endpoint to the
    // AS's with the client secret in the body: refused, and said once at WARN, without the
    // token, the secret, or the query of the URL it was sent to.
    let to = format!(
        "{}?to=junk-token-ghi",
        as_.endpoint_url(Endpoint::Introspection)
    );
    let redirector = serve(axum::Router::new().fallback(axum::routing::any(move || {
        let to = to.clone();
        async move { (StatusCode::TEMPORARY_REDIRECT, [("location", to)]) }
    })))
    .await;
    let following = discover(&as_)
        .await
        .resources(
            ResourceMap::new().route(
                Route::new("/albums/{id}")
                    .resource_id("whatever")
                    .scopes(Method::GET, ["view"]),
            ),
        )
        .introspection_endpoint(format!("http://{redirector}/introspect"))
        .client_auth(ClientAuth::Post)
        .introspection_auth(IntrospectionAuth::ClientCredentials)
        .http_client(http.clone())
        .build()
        .await
        .expect("builds");
    let (following_url, _) = protected(following).await;
    let resp = http
        .get(format!("{following_url}/albums/3"))
        .bearer_auth("junk-token-ghi")
        .send()
        .await
        .expect("answer");
    expect_unreachable(&resp);

    let pats: Vec<String> = as_
        .requests(Endpoint::Permission)
        .iter()
        .chain(as_.requests(Endpoint::Introspection).iter())
        .filter_map(|r| header_value(r, "authorization"))
        .filter_map(|v| v.strip_prefix("Bearer ").map(str::to_owned))
        .collect();
    assert!(!pats.is_empty());

    let logs = String::from_utf8(capture.0.lock().expect("lock").clone()).expect("utf-8 logs");
    assert!(
        logs.contains("uma.authorize"),
        "the capture saw the layer's spans"
    );
    assert!(logs.contains("uma.introspect"));
    assert!(
        logs.lines().any(|l| l.contains(" WARN ")
            && l.contains("followed a redirect")
            && l.contains("Policy::none()")),
        "the followed redirect is logged at WARN"
    );
    // `cache.hit` is recorded on the `uma.authorize` span, on the synchronous hit path too.
    for fields in [
        [
            "cache.hit=false",
            "cache.source=\"miss\"",
            "uma.decision=\"allowed\"",
        ],
        [
            "cache.hit=true",
            "cache.source=\"hit\"",
            "uma.decision=\"allowed\"",
        ],
    ] {
        assert!(
            logs.lines()
                .any(|l| l.contains("uma.authorize") && fields.iter().all(|f| l.contains(f))),
            "no uma.authorize span with {fields:?}"
        );
    }
    let mut secrets = vec![
        rpt.clone(),
        id_token.clone(),
        ticket.clone(),
        RS_SECRET.to_owned(),
        APP_SECRET.to_owned(),
        BOB_PW.to_owned(),
        ALICE_PW.to_owned(),
        "junk-token-abc".to_owned(),
        "junk-token-def".to_owned(),
        "junk-token-ghi".to_owned(),
    ];
    secrets.extend(pats);
    for secret in &secrets {
        assert!(
            !logs.contains(secret.as_str()),
            "a secret reached the logs: {}…",
            &secret[..4.min(secret.len())]
        );
    }
}

fn header_value(r: &uma_test_as::RecordedRequest, name: &str) -> Option<String> {
    r.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
}
