//! The in-process handle: counters, recordings, every fault knob, minted RPTs and shutdown.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::time::{Duration, Instant};

use serde_json::json;
use uma_test_as::{AuthServer, Endpoint, ResourceDescription, RptPermission, RptSpec};

use crate::common::*;

fn now() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

#[tokio::test]
async fn counters_and_recordings() {
    let auth = spawn().await;
    assert!(Endpoint::ALL.iter().all(|e| auth.count(*e) == 0));
    let (pat, id) = album(&auth).await;
    ticket_for(&auth, &pat, &id, &["view"]).await;
    assert_eq!(auth.count(Endpoint::Token), 1);
    assert_eq!(auth.count(Endpoint::ResourceRegistration), 1);
    assert_eq!(auth.count(Endpoint::Permission), 1);
    let recorded = auth.requests(Endpoint::Permission);
    assert_eq!(recorded.len(), 1);
    let request = &recorded[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.uri, "/permission");
    assert_eq!(
        request.header("Authorization"),
        Some(format!("Bearer {pat}").as_str())
    );
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert!(
        request
            .headers
            .iter()
            .all(|(name, _)| *name == name.to_ascii_lowercase())
    );
    assert_eq!(
        request.json().unwrap(),
        json!({"resource_id": id, "resource_scopes": ["view"]})
    );
    let token_request = &auth.requests(Endpoint::Token)[0];
    assert!(
        token_request
            .form()
            .contains(&("grant_type".into(), "client_credentials".into()))
    );
    assert!(token_request.body_text().contains("uma_protection"));
    let list = format!(
        "{}?name=album",
        auth.endpoint_url(Endpoint::ResourceRegistration)
    );
    http().get(&list).bearer_auth(&pat).send().await.unwrap();
    assert_eq!(
        auth.requests(Endpoint::ResourceRegistration)[1].uri,
        "/resource_set?name=album"
    );

    auth.clear_requests();
    assert!(Endpoint::ALL.iter().all(|e| auth.requests(*e).is_empty()));
    assert_eq!(auth.count(Endpoint::ResourceRegistration), 2);
    http().get(&list).bearer_auth(&pat).send().await.unwrap();
    assert_eq!(auth.requests(Endpoint::ResourceRegistration).len(), 1);
    assert_eq!(auth.count(Endpoint::ResourceRegistration), 3);
}

#[tokio::test]
async fn fail_next_answers_the_status_then_recovers() {
    let auth = spawn().await;
    let (pat, id) = album(&auth).await;
    auth.fail_next(Endpoint::Permission, 2, 500);
    let body = json!({"resource_id": id, "resource_scopes": ["view"]});
    for _ in 0..2 {
        let response = http()
            .post(auth.endpoint_url(Endpoint::Permission))
            .bearer_auth(&pat)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 500);
        assert_eq!(json(response).await["error"], "server_error");
    }
    ticket(&auth, &pat, body.clone()).await;
    assert_eq!(auth.count(Endpoint::Permission), 3);

    auth.fail_next(Endpoint::Introspection, 1, 401);
    let response = http()
        .post(auth.endpoint_url(Endpoint::Introspection))
        .bearer_auth(&pat)
        .form(&[("token", "x")])
        .send()
        .await
        .unwrap();
    assert!(
        response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    assert_error(response, 401, "invalid_token").await;
    // Canned answers come before authentication: even a tokenless request gets one.
    auth.fail_next(Endpoint::Discovery, 1, 503);
    let response = http()
        .get(auth.endpoint_url(Endpoint::Discovery))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 503);
    let response = http()
        .get(auth.endpoint_url(Endpoint::Discovery))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
}

#[tokio::test]
async fn respond_next_sends_arbitrary_answers_in_queue_order() {
    let auth = spawn().await;
    auth.respond_next(Endpoint::Discovery, 1, 200, "application/json", "{not json");
    auth.respond_next(Endpoint::Discovery, 1, 200, "", "plain");
    let response = http()
        .get(auth.endpoint_url(Endpoint::Discovery))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.text().await.unwrap(), "{not json");
    let response = http()
        .get(auth.endpoint_url(Endpoint::Discovery))
        .send()
        .await
        .unwrap();
    assert!(response.headers().get("content-type").is_none());
    assert_eq!(response.text().await.unwrap(), "plain");
    let response = http()
        .get(auth.endpoint_url(Endpoint::Discovery))
        .send()
        .await
        .unwrap();
    assert_eq!(json(response).await["issuer"], auth.issuer().as_str());
    assert_eq!(auth.count(Endpoint::Discovery), 3);
}

#[tokio::test]
async fn ticketless_next_answers_201_without_a_ticket() {
    let auth = spawn().await;
    let (pat, id) = album(&auth).await;
    auth.ticketless_next(1);
    let body = json!({"resource_id": id, "resource_scopes": ["view"]});
    let response = http()
        .post(auth.endpoint_url(Endpoint::Permission))
        .bearer_auth(&pat)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    assert_eq!(json(response).await, json!({}));
    ticket(&auth, &pat, body).await;
}

#[tokio::test]
async fn close_next_and_set_down_close_the_connection() {
    let auth = spawn().await;
    let url = auth.endpoint_url(Endpoint::Discovery);
    auth.close_next(Endpoint::Discovery, 1);
    let error = http().get(&url).send().await.unwrap_err();
    assert!(!error.is_status(), "no HTTP response at all: {error}");
    assert_eq!(
        auth.count(Endpoint::Discovery),
        1,
        "no retry behind our back"
    );
    assert_eq!(
        http().get(&url).send().await.unwrap().status().as_u16(),
        200
    );

    auth.set_down(Endpoint::Discovery, true);
    for _ in 0..2 {
        assert!(http().get(&url).send().await.is_err());
    }
    // Other endpoints are unaffected.
    assert_eq!(
        http()
            .get(auth.endpoint_url(Endpoint::Jwks))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    auth.set_down(Endpoint::Discovery, false);
    assert_eq!(
        http().get(&url).send().await.unwrap().status().as_u16(),
        200
    );
    assert_eq!(auth.count(Endpoint::Discovery), 5);
}

#[tokio::test]
async fn closed_connections_carry_no_response_bytes() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let auth = spawn().await;
    auth.close_next(Endpoint::Token, 1);
    let mut stream = tokio::net::TcpStream::connect(auth.addr()).await.unwrap();
    let body = "grant_type=client_credentials";
    let request = format!(
        "POST /token HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        auth.addr(),
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    // EOF or a reset, but never a byte of a response (and no kept-alive connection either).
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut received));
    assert!(read.await.is_ok(), "the connection was left open");
    assert!(
        received.is_empty(),
        "{}",
        String::from_utf8_lossy(&received)
    );
    assert_eq!(auth.requests(Endpoint::Token)[0].body, body.as_bytes());
}

#[tokio::test]
async fn latency_is_added_and_cleared() {
    let auth = spawn().await;
    let url = auth.endpoint_url(Endpoint::Jwks);
    auth.set_latency(Endpoint::Jwks, Duration::from_millis(500));
    let started = Instant::now();
    assert_eq!(
        http().get(&url).send().await.unwrap().status().as_u16(),
        200
    );
    assert!(started.elapsed() >= Duration::from_millis(500));
    // Latency comes first: a client timeout shorter than it sees no answer.
    let timeout = http()
        .get(&url)
        .timeout(Duration::from_millis(100))
        .send()
        .await
        .unwrap_err();
    assert!(timeout.is_timeout());
    auth.set_latency(Endpoint::Jwks, Duration::ZERO);
    let started = Instant::now();
    http().get(&url).send().await.unwrap();
    assert!(started.elapsed() < Duration::from_millis(500));
}

#[tokio::test]
async fn reject_next_pat_answers_401_to_valid_pats() {
    let auth = spawn().await;
    let (pat, id) = album(&auth).await;
    let body = json!({"resource_id": id, "resource_scopes": ["view"]});
    auth.reject_next_pat(2);
    // An invalid PAT does not consume the knob.
    let bogus = http()
        .post(auth.endpoint_url(Endpoint::Permission))
        .bearer_auth("bogus")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_error(bogus, 401, "invalid_token").await;
    let rejected = http()
        .post(auth.endpoint_url(Endpoint::Permission))
        .bearer_auth(&pat)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_error(rejected, 401, "invalid_token").await;
    let rejected = http()
        .post(auth.endpoint_url(Endpoint::Introspection))
        .bearer_auth(&pat)
        .form(&[("token", "x")])
        .send()
        .await
        .unwrap();
    assert_error(rejected, 401, "invalid_token").await;
    // Client-credential callers are not PAT users; then the PAT works again.
    let by_client = http()
        .post(auth.endpoint_url(Endpoint::Introspection))
        .basic_auth(RS.0, Some(RS.1))
        .form(&[("token", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(by_client.status().as_u16(), 200);
    ticket(&auth, &pat, body).await;
}

#[tokio::test]
async fn minted_rpts_are_introspected_exactly() {
    let auth = spawn().await;
    let pat = pat(&auth, RS).await;
    let now = now();

    let plain = auth.mint_rpt(RptSpec::active_for("r1", ["view"], 60));
    let answer = introspect(&auth, &pat, &plain).await;
    assert_eq!(answer["active"], true);
    assert_eq!(
        answer["permissions"],
        json!([{"resource_id": "r1", "resource_scopes": ["view"]}])
    );
    assert!(answer["exp"].as_i64().unwrap() >= now + 59);

    // No exp: active forever, exp omitted. nbf in the future: still active, reported.
    let forever = auth.mint_rpt(RptSpec {
        nbf: Some(now + 3600),
        permissions: vec![RptPermission {
            exp: Some(now - 10),
            nbf: Some(now + 10),
            iat: Some(now - 20),
            ..RptPermission::new("r1", ["view"])
        }],
        ..RptSpec::default()
    });
    assert_eq!(
        introspect(&auth, &pat, &forever).await,
        json!({"active": true, "nbf": now + 3600, "permissions": [{
            "resource_id": "r1", "resource_scopes": ["view"],
            "exp": now - 10, "nbf": now + 10, "iat": now - 20}]})
    );

    let mut scoped = RptSpec::active_for("r1", ["view"], 60);
    scoped.permissions.clear();
    scoped.extra.insert("scope".into(), json!("view"));
    let answer = introspect(&auth, &pat, &auth.mint_rpt(scoped)).await;
    assert_eq!(answer["scope"], "view");
    assert_eq!(answer["permissions"], json!([]));

    let expired = auth.mint_rpt(RptSpec {
        exp: Some(now - 1),
        ..RptSpec::active_for("r1", ["view"], 0)
    });
    assert_eq!(
        introspect(&auth, &pat, &expired).await,
        json!({"active": false})
    );
    assert!(!auth.is_active(&expired));
    auth.revoke(&plain);
    assert_eq!(
        introspect(&auth, &pat, &plain).await,
        json!({"active": false})
    );
}

#[tokio::test]
async fn handle_registers_resources_and_ids_are_visible_over_http() {
    let auth = spawn().await;
    let id = auth.register_resource(
        "alice",
        ResourceDescription {
            name: Some("album".into()),
            owner: Some("ignored".into()),
            resource_scopes: vec!["view".into()],
            ..ResourceDescription::default()
        },
    );
    assert_eq!(auth.resource(&id).unwrap().owner.as_deref(), Some("alice"));
    assert_eq!(auth.resource("nope"), None);
    let pat = pat(&auth, RS).await;
    let read = json(
        http()
            .get(format!(
                "{}/{id}",
                auth.endpoint_url(Endpoint::ResourceRegistration)
            ))
            .bearer_auth(&pat)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(read["owner"], "alice");
    // The handle's resources take part in grants.
    let ticket = ticket_for(&auth, &pat, &id, &["view"]).await;
    let bob = auth.mint_id_token("bob", APP.0);
    rpt(grant(&auth, &ticket, Some(&bob), &[]).await).await;
}

/// `forget_resources` is a restart's loss of resources: the permission endpoint no longer
/// knows the id (FedAuthz §4.3), the PAT still works, and a new registration gets a new id.
#[tokio::test]
async fn forgotten_resources_are_unknown_ids() {
    let auth = spawn().await;
    let (pat, id) = album(&auth).await;
    assert_eq!(auth.forget_resources(), 1);
    assert_eq!(auth.resource(&id), None);
    assert_eq!(auth.resource_id("album"), None);
    let response = http()
        .post(auth.endpoint_url(Endpoint::Permission))
        .bearer_auth(&pat)
        .json(&json!({"resource_id": id, "resource_scopes": ["view"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(json(response).await["error"], "invalid_resource_id");
    let (_, again) = album(&auth).await;
    assert_ne!(again, id);
    ticket_for(&auth, &pat, &again, &["view"]).await;
}

#[tokio::test]
async fn dropping_the_handle_stops_the_server() {
    let auth = AuthServer::builder().spawn().await.unwrap();
    let url = auth.endpoint_url(Endpoint::Discovery);
    let client = http();
    assert!(client.get(&url).send().await.unwrap().status().is_success());
    drop(auth);
    // The listener closes promptly: new connections are refused.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if http().get(&url).send().await.is_err() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "server still answering after drop"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn shutdown_waits_for_the_server_task() {
    let auth = AuthServer::builder().spawn().await.unwrap();
    let addr = auth.addr();
    auth.set_latency(Endpoint::Discovery, Duration::from_secs(30));
    let url = auth.endpoint_url(Endpoint::Discovery);
    let slow = tokio::spawn(async move { http().get(&url).send().await });
    // Wait until the request is inside the server (counted, then sleeping).
    while auth.count(Endpoint::Discovery) == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = Instant::now();
    auth.shutdown().await;
    // The in-flight request's latency is cut short, so shutdown does not wait 30 s.
    assert!(started.elapsed() < Duration::from_secs(5));
    // The request still got its answer: graceful shutdown lets in-flight requests finish.
    assert_eq!(slow.await.unwrap().unwrap().status().as_u16(), 200);
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn servers_are_independent() {
    let (a, b) = tokio::join!(spawn(), spawn());
    assert_ne!(a.issuer(), b.issuer());
    a.fail_next(Endpoint::Jwks, 1, 500);
    assert_eq!(
        http()
            .get(b.endpoint_url(Endpoint::Jwks))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    assert_eq!(
        http()
            .get(a.endpoint_url(Endpoint::Jwks))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        500
    );
    let pat_a = pat(&a, RS).await;
    let unknown_at_b = http()
        .post(b.endpoint_url(Endpoint::Permission))
        .bearer_auth(&pat_a)
        .json(&json!({"resource_id": "x", "resource_scopes": []}))
        .send()
        .await
        .unwrap();
    assert_error(unknown_at_b, 401, "invalid_token").await;
}
