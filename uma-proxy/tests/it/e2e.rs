//! End to end: `uma-test-as` in-process, a recording upstream in-process, and the `uma-proxy`
//! binary as a real process between them.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use sha2::{Digest, Sha256};
use tower_uma::challenge::parse_uma_challenge;
use uma_test_as::{Endpoint, RptSpec};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_uma_flow_through_the_proxy() {
    let as_ = start_as().await;
    let up = start_upstream().await;
    let mut proxy = Proxy::spawn(&config(&as_, &up.url(), ""), &[], &[("RUST_LOG", "debug")]);
    let addr = proxy.listening().await;
    let album = as_
        .resource_id("album")
        .expect("the proxy registered the album");
    let stored = as_.resource(&album).unwrap();
    assert_eq!(stored.owner.as_deref(), Some("alice"));
    let url = format!("http://{addr}/albums/1");

    // No token: a UMA challenge, nothing reaches the upstream.
    let first = send(Method::GET, &url, &[]).await;
    assert_eq!(first.status, StatusCode::UNAUTHORIZED);
    let challenge = first.headers["www-authenticate"].to_str().unwrap();
    let challenge = parse_uma_challenge(challenge).unwrap();
    assert_eq!(challenge.realm.as_deref(), Some("photos"));
    assert_eq!(challenge.as_uri, as_.issuer());
    assert!(up.seen().is_empty());

    // Bob's client trades the ticket for an RPT.
    let id_token = bob_id_token(&as_).await;
    let rpt = rpt_for(&as_, &challenge.ticket, &id_token).await;
    let bearer = format!("Bearer {rpt}");

    // With the RPT, spoofed X-Uma-* and hop-by-hop headers: the upstream sees the real ones.
    let ok = send(
        Method::GET,
        &format!("{url}?q=1"),
        &[
            ("authorization", &bearer),
            ("x-uma-subject", "mallory"),
            ("x-uma-client-id", "evil-app"),
            (
                "x-uma-permissions",
                r#"[{"resource_id":"x","resource_scopes":["delete"]}]"#,
            ),
            ("connection", "keep-alive, x-hop"),
            ("x-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-authorization", "Basic c2VjcmV0"),
            ("x-forwarded-for", "10.9.8.7"),
            ("x-end", "kept"),
        ],
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", proxy.stderr());
    assert_eq!(ok.json()["uri"], "/albums/1?q=1");
    assert_eq!(ok.headers["x-up-end"], "1");
    assert!(
        ok.headers.get("x-up-hop").is_none(),
        "hop-by-hop response header forwarded"
    );
    assert!(ok.headers.get("connection").is_none_or(|v| v != "x-up-hop"));

    let seen = up.seen();
    assert_eq!(seen.len(), 1);
    let h = &seen[0].headers;
    assert_eq!(h["x-uma-subject"], "bob");
    assert_eq!(h["x-uma-client-id"], APP_ID);
    assert_eq!(h.get_all("x-uma-subject").iter().count(), 1);
    let perms: serde_json::Value =
        serde_json::from_slice(h["x-uma-permissions"].as_bytes()).unwrap();
    assert_eq!(
        perms,
        serde_json::json!([{"resource_id": album, "resource_scopes": ["view"]}])
    );
    assert_eq!(
        h["authorization"],
        bearer.as_str(),
        "forward_authorization defaults to true"
    );
    // The client is no trusted proxy: its own X-Forwarded-For is replaced, not extended.
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], addr.to_string().as_str());
    assert_eq!(h["host"], up.addr.to_string().as_str());
    assert_eq!(h["x-end"], "kept");
    for hop in ["x-hop", "keep-alive", "proxy-authorization", "connection"] {
        assert!(h.get(hop).is_none(), "{hop} reached the upstream");
    }

    // Again, four times (from the cache): pooled keep-alive connections to the upstream are
    // reused. (A connection goes back to the pool just after its response, so a request may
    // occasionally open a second one; without keep-alive every request would open its own.)
    for _ in 0..4 {
        let again = send(Method::GET, &url, &[("authorization", &bearer)]).await;
        assert_eq!(again.status, StatusCode::OK);
    }
    let seen = up.seen();
    assert_eq!(seen.len(), 5);
    let peers: std::collections::HashSet<_> = seen.iter().map(|s| s.peer).collect();
    assert!(
        peers.len() <= 2,
        "{} upstream connections for 5 sequential requests",
        peers.len()
    );
    assert_eq!(
        as_.count(Endpoint::Introspection),
        1,
        "the second request was cached"
    );

    // The RPT grants view only: DELETE gets a new challenge, not the upstream.
    let denied = send(Method::DELETE, &url, &[("authorization", &bearer)]).await;
    assert_eq!(denied.status, StatusCode::UNAUTHORIZED);
    assert_eq!(up.seen().len(), 5);

    // Unmapped paths are refused by default.
    let unmapped = send(Method::GET, &format!("http://{addr}/other"), &[]).await;
    assert_eq!(unmapped.status, StatusCode::FORBIDDEN);

    // Nothing secret in the logs, even at debug level.
    proxy.sigterm();
    assert!(proxy.exit_status().await.success());
    let log = proxy.stderr();
    assert!(log.contains("resources synced"), "{log}");
    for secret in [
        RS_SECRET,
        rpt.as_str(),
        id_token.as_str(),
        &challenge.ticket,
    ] {
        assert!(!log.contains(secret), "a secret appears in the log:\n{log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_uma_headers_are_stripped_on_public_and_unmapped_routes() {
    let as_ = start_as().await;
    let up = start_upstream().await;
    let extra = "unmapped = \"allow\"\nforward_authorization = false";
    let (_proxy, addr) = Proxy::start(&config(&as_, &up.url(), extra)).await;
    let spoof = [
        ("x-uma-subject", "mallory"),
        ("X-Uma-Client-Id", "evil"),
        ("x-uma-permissions", "[]"),
        ("authorization", "Bearer not-for-the-upstream"),
    ];
    for path in ["/public/a/b", "/elsewhere"] {
        let r = send(Method::GET, &format!("http://{addr}{path}"), &spoof).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
    }
    let seen = up.seen();
    assert_eq!(seen.len(), 2);
    for s in &seen {
        for name in [
            "x-uma-subject",
            "x-uma-client-id",
            "x-uma-permissions",
            "authorization",
        ] {
            assert!(
                s.headers.get(name).is_none(),
                "{name} reached the upstream on {}",
                s.uri
            );
        }
    }
    assert_eq!(seen[0].uri, "/public/a/b");
    assert_eq!(as_.count(Endpoint::Introspection), 0);
    assert_eq!(as_.count(Endpoint::Permission), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_stream_both_ways_without_buffering() {
    const CHUNKS: usize = 8; // 8 MiB each way
    let as_ = start_as().await;
    let up = start_upstream().await;
    let (_proxy, addr) = Proxy::start(&config(&as_, &up.url(), "")).await;
    let album = as_.resource_id("album").unwrap();
    let rpt = as_.mint_rpt(RptSpec::active_for(album, ["view", "edit"], 300));
    let bearer = format!("Bearer {rpt}");

    // Upload: the client sends one MiB, then waits until the upstream has received data
    // before sending the rest. A proxy that collected the body first would never forward it.
    let (tx, body) = channel_body();
    let req = Request::put(format!("http://{addr}/albums/1?mode=upload"))
        .header("authorization", &bearer)
        .body(body)
        .unwrap();
    let pending = tokio::spawn(client().request(req));
    let mut sent = Sha256::new();
    let first = Bytes::from(pattern(0, CHUNK));
    sent.update(&first);
    tx.send(first).await.unwrap();
    tokio::time::timeout(SOON, up.state.upload_first_frame.notified())
        .await
        .expect("the upstream received the body's start before the client finished sending");
    for i in 1..CHUNKS {
        let chunk = Bytes::from(pattern(i, CHUNK));
        sent.update(&chunk);
        tx.send(chunk).await.unwrap();
    }
    drop(tx);
    let resp = tokio::time::timeout(SOON, pending)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let echo: serde_json::Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(echo["body_len"], (CHUNKS * CHUNK) as u64);
    assert_eq!(echo["body_sha256"], hex(&sent.finalize()));

    // Download: the upstream sends one MiB and waits until the client has it before sending
    // the rest. A proxy that collected the response first would never deliver it.
    let req = Request::get(format!(
        "http://{addr}/albums/1?mode=download&chunks={CHUNKS}"
    ))
    .header("authorization", &bearer)
    .body(empty())
    .unwrap();
    let resp = tokio::time::timeout(SOON, client().request(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let mut got = Sha256::new();
    let mut len = 0usize;
    let mut acked = false;
    while let Some(frame) = tokio::time::timeout(SOON, body.frame())
        .await
        .expect("body in time")
    {
        let frame = frame.expect("the download completes");
        if let Ok(data) = frame.into_data() {
            len += data.len();
            got.update(&data);
            if !acked && len >= CHUNK {
                // Still exactly one MiB sent upstream: the client has it before the rest exists.
                assert_eq!(
                    up.state
                        .download_sent_before_ack
                        .load(std::sync::atomic::Ordering::SeqCst),
                    CHUNK as u64
                );
                up.state.download_first_chunk.notify_one();
                acked = true;
            }
        }
    }
    assert_eq!(len, CHUNKS * CHUNK);
    let mut expected = Sha256::new();
    for i in 0..CHUNKS {
        expected.update(pattern(i, CHUNK));
    }
    assert_eq!(hex(&got.finalize()), hex(&expected.finalize()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_refused_is_502_and_too_slow_is_504() {
    let as_ = start_as().await;
    let dead = closed_port().await;
    let (_p1, refused) = Proxy::start(&config(&as_, &format!("http://{dead}"), "")).await;
    let r = send(Method::GET, &format!("http://{refused}/public/x"), &[]).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);

    let up = start_upstream().await;
    let extra = "upstream_timeout = \"300ms\"\nadmin_listen = \"127.0.0.1:0\"";
    let (p2, slow) = Proxy::start(&config(&as_, &up.url(), extra)).await;
    let started = Instant::now();
    let r = send(
        Method::GET,
        &format!("http://{slow}/public/x?mode=sleep&ms=3000"),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
    let fast = send(Method::GET, &format!("http://{slow}/public/y"), &[]).await;
    assert_eq!(fast.status, StatusCode::OK);

    let admin = p2.admin_addr().await;
    let metrics = send(Method::GET, &format!("http://{admin}/metrics"), &[]).await;
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.contains(r#"uma_proxy_upstream_requests_total{outcome="timeout"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"uma_proxy_upstream_requests_total{outcome="ok"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"uma_decisions_total{outcome="public"} 2"#),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_until_the_as_is_reachable_and_healthz_follows() {
    let as_ = start_as().await;
    as_.set_down(Endpoint::Discovery, true);
    let up = start_upstream().await;
    let mut proxy = Proxy::spawn(
        &config(&as_, &up.url(), "admin_listen = \"127.0.0.1:0\""),
        &[],
        &[],
    );
    let admin = proxy.admin_addr().await;
    // The line is a contract: its words, its level and its fields.
    let log = proxy
        .stderr_contains("the authorization server is not reachable or not ready; retrying in ")
        .await;
    let line = log
        .lines()
        .find(|l| l.contains("not reachable or not ready"))
        .unwrap();
    assert!(
        line.contains("WARN") && line.contains("attempt=1") && line.contains("retry_in_ms="),
        "{line}"
    );
    let health = send(Method::GET, &format!("http://{admin}/healthz"), &[]).await;
    assert_eq!(health.status, StatusCode::SERVICE_UNAVAILABLE);
    let metrics = send(Method::GET, &format!("http://{admin}/metrics"), &[]).await;
    assert!(String::from_utf8_lossy(&metrics.body).contains("uma_proxy_ready 0"));
    let tries = as_.count(Endpoint::Discovery);
    assert!(tries >= 1);

    as_.set_down(Endpoint::Discovery, false);
    let addr = proxy.listening().await;
    let health = send(Method::GET, &format!("http://{admin}/healthz"), &[]).await;
    assert_eq!(health.status, StatusCode::OK);
    let r = send(Method::GET, &format!("http://{addr}/albums/1"), &[]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let metrics = send(Method::GET, &format!("http://{admin}/metrics"), &[]).await;
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(text.contains("uma_proxy_ready 1"), "{text}");
    assert!(
        text.contains(r#"uma_decisions_total{outcome="challenged"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"uma_tickets_total{outcome="issued"} 1"#),
        "{text}"
    );
    let other = send(Method::GET, &format!("http://{admin}/nope"), &[]).await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_the_request_in_flight_and_exits_zero() {
    let as_ = start_as().await;
    let up = start_upstream().await;
    let mut proxy = Proxy::spawn(
        &config(&as_, &up.url(), "admin_listen = \"127.0.0.1:0\""),
        &["--log-format", "json"],
        &[],
    );
    let admin = proxy.admin_addr().await;
    let addr = proxy.listening().await;
    let health = send(Method::GET, &format!("http://{admin}/healthz"), &[]).await;
    assert_eq!(health.status, StatusCode::OK);

    let held_url = format!("http://{addr}/public/slow?mode=hold");
    let in_flight = tokio::spawn(async move { send(Method::GET, &held_url, &[]).await });
    tokio::time::timeout(SOON, up.state.held.notified())
        .await
        .expect("the request reached the upstream");
    proxy.sigterm();

    // The proxy stops accepting while the request is still held at the upstream.
    let deadline = Instant::now() + SOON;
    loop {
        match tokio::net::TcpStream::connect(addr).await {
            Err(_) => break,
            Ok(_) => {
                assert!(
                    Instant::now() < deadline,
                    "the proxy kept accepting after SIGTERM"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    assert!(!in_flight.is_finished());
    // Draining: no longer ready, so load balancers stop sending requests.
    let health = send(Method::GET, &format!("http://{admin}/healthz"), &[]).await;
    assert_eq!(health.status, StatusCode::SERVICE_UNAVAILABLE);

    up.state.release.notify_one();
    let answer = tokio::time::timeout(SOON, in_flight)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["uri"], "/public/slow?mode=hold");
    let status = proxy.exit_status().await;
    assert_eq!(status.code(), Some(0), "{}", proxy.stderr());

    // --log-format json: one JSON object per line on standard error. The log is read as it
    // is written, so wait for its last line rather than race the reader.
    let log = proxy.stderr_contains(r#""message":"stopped""#).await;
    let events: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(events.iter().any(|e| {
        e["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("shutting down"))
    }));
    assert!(events.iter().any(|e| e["fields"]["message"] == "stopped"));
}

/// `--check` prints the resource sync's diff and writes nothing to the AS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_prints_the_resource_diff_without_writing() {
    let as_ = start_as().await;
    let up = start_upstream().await;
    let path = write_config(&config(&as_, &up.url(), ""));
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_uma-proxy"))
        .arg("--config")
        .arg(&path)
        .arg("--check")
        .env(SECRET_ENV, RS_SECRET)
        .output()
        .await
        .expect("the binary runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("+ album"), "{stdout}");
    assert!(
        as_.resource_id("album").is_none(),
        "the dry run registered nothing"
    );
    let writes = as_
        .requests(uma_test_as::Endpoint::ResourceRegistration)
        .iter()
        .filter(|r| r.method != "GET")
        .count();
    assert_eq!(writes, 0);
}

/// Requests are refused or decided under the strictest rule a common upstream could apply:
/// method case variants and letter-case variants of literals get `400`, methods a route does
/// not list `405` + `Allow` (whatever `unmapped` says), and a public route covers only `GET`,
/// `HEAD` and `OPTIONS` unless `public_methods` names more.
/// A wrong client secret ends the start with exit code 2 and one line giving each cause once,
/// down to the token endpoint's answer, and never the secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_client_secret_ends_the_start_with_the_as_answer() {
    let as_ = start_as().await;
    let up = start_upstream().await;
    let path = write_config(&config(&as_, &up.url(), ""));
    let wrong = "rs-secret-WRONG-e2e";
    let out = tokio::time::timeout(
        SOON,
        tokio::process::Command::new(env!("CARGO_BIN_EXE_uma-proxy"))
            .arg("--config")
            .arg(&path)
            .env(SECRET_ENV, wrong)
            .output(),
    )
    .await
    .expect("the proxy gives up at once")
    .expect("the binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert_eq!(
        last,
        "error: the UMA configuration is not usable: listing registered resources: no PAT could \
         be obtained: token endpoint answered 401 invalid_client: check client_id and the client \
         secret (client authentication failed)"
    );
    assert!(
        !stderr.contains(wrong) && !stderr.contains(RS_SECRET),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "never listening");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn methods_case_and_public_routes_through_the_proxy() {
    let as_ = start_as().await;
    let up = start_upstream().await;
    let text = format!(
        "{}\n[[resources]]\npath = \"/albums/featured\"\npublic = true\n\
         \n[[resources]]\npath = \"/hooks/*\"\npublic = true\npublic_methods = [\"POST\"]\n",
        config(&as_, &up.url(), "unmapped = \"allow\"")
    );
    let (_proxy, addr) = Proxy::start(&text).await;
    let album = as_.resource_id("album").unwrap();
    let view = format!(
        "Bearer {}",
        as_.mint_rpt(RptSpec::active_for(album, ["view"], 300))
    );
    let at = |path: &str| format!("http://{addr}{path}");
    let method = |m: &str| Method::from_bytes(m.as_bytes()).unwrap();
    let allow = |a: &Answer| {
        a.headers
            .get("allow")
            .map(|v| v.to_str().unwrap().to_owned())
    };

    // `delete` and `Get`: Werkzeug, Django and Symfony would run the DELETE and GET handlers.
    for m in ["delete", "Get", "pUT"] {
        let r = send(method(m), &at("/albums/1"), &[("authorization", &view)]).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{m}");
    }
    // A method the route does not list.
    let r = send(Method::POST, &at("/albums/1"), &[]).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(allow(&r).as_deref(), Some("DELETE, GET, HEAD, PUT"));
    // Public for GET; DELETE is decided under /albums/{id}; the rule of /albums/FEATURED
    // would depend on letter case.
    let r = send(Method::GET, &at("/albums/featured"), &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = send(Method::DELETE, &at("/albums/featured"), &[]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = send(Method::GET, &at("/albums/FEATURED"), &[]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // `public = true` alone covers GET, HEAD and OPTIONS; `public_methods` widens it.
    let r = send(Method::POST, &at("/public/x"), &[]).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(allow(&r).as_deref(), Some("GET, HEAD, OPTIONS"));
    let r = send(Method::POST, &at("/hooks/build"), &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    // `unmapped` concerns paths no route matches.
    let r = send(Method::POST, &at("/elsewhere"), &[]).await;
    assert_eq!(r.status, StatusCode::OK);

    let seen: Vec<String> = up
        .seen()
        .iter()
        .map(|s| format!("{} {}", s.method, s.uri))
        .collect();
    assert_eq!(
        seen,
        [
            "GET /albums/featured",
            "POST /hooks/build",
            "POST /elsewhere"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_validation_verifies_jwt_rpts_without_introspecting_them() {
    let as_ = uma_test_as::AuthServer::builder()
        .client(RS_ID, RS_SECRET)
        .client(APP_ID, APP_SECRET)
        .rpt_format(uma_test_as::RptFormat::Jwt)
        .spawn()
        .await
        .expect("the test AS starts");
    let up = start_upstream().await;
    let text = config(&as_, &up.url(), "").replace(
        "allow_http = true\n",
        "allow_http = true\nrpt_validation = \"local\"\n",
    );
    assert!(text.contains("rpt_validation"));
    let (proxy, addr) = Proxy::start(&text).await;
    let album = as_.resource_id("album").unwrap();
    let rpt = as_.mint_rpt(RptSpec::active_for(album, ["view"], 300));
    let url = format!("http://{addr}/albums/1");
    for _ in 0..3 {
        let r = send(
            Method::GET,
            &url,
            &[("authorization", &format!("Bearer {rpt}"))],
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", proxy.stderr());
    }
    // The same token with its signature changed: refused, never forwarded.
    let (head, sig) = rpt.rsplit_once('.').unwrap();
    let flipped = if sig.starts_with('A') { 'B' } else { 'A' };
    let forged = format!("{head}.{flipped}{}", &sig[1..]);
    let r = send(
        Method::GET,
        &url,
        &[("authorization", &format!("Bearer {forged}"))],
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(up.seen().len(), 3);
    assert_eq!(as_.count(Endpoint::Introspection), 0, "verified locally");
    assert!(as_.count(Endpoint::Jwks) >= 1, "with the AS's keys");
}
