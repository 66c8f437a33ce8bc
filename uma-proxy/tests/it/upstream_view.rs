//! What the upstream is told, and what the client is answered, with the whole proxy
//! (`uma_proxy::run`) in-process between a real `uma-test-as` and a recording upstream on
//! loopback: method overrides, the encoding of `X-Uma-*`, forwarding headers and
//! `allowed_hosts`, and HTTP/1.0 upstreams.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a failure is a test failure"
)]

use std::net::SocketAddr;
use std::time::Duration;

use http::{Method, Request, StatusCode, Version};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use uma_proxy::{Config, ForwardOptions, Overrides, forwarding_service, run, serve};
use uma_test_as::{RptPermission, RptSpec, TestAs};

use crate::common::*;

/// Runs the whole proxy for `config(as_, upstream, extra)` until the test ends; returns the
/// address it listens on (known once the resources are synced).
pub(crate) async fn start_run(as_: &TestAs, upstream: &str, extra: &str) -> SocketAddr {
    let text = config(as_, upstream, extra);
    let env = |n: &str| (n == SECRET_ENV).then(|| RS_SECRET.to_owned());
    let config = Config::from_toml_str(&text, "proxy.toml", &Overrides::default(), env).unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let on_listening = move |addr| {
            let _ = tx.send(addr);
        };
        let ended = run(config, None, on_listening, std::future::pending()).await;
        panic!("the proxy stopped: {ended:?}");
    });
    tokio::time::timeout(SOON, rx).await.unwrap().unwrap()
}

/// An RPT for the album with `scopes`, for `sub` and `client_id`.
fn album_rpt(as_: &TestAs, scopes: &[&str], sub: &str, client_id: &str) -> String {
    let album = as_.resource_id("album").unwrap();
    as_.mint_rpt(RptSpec {
        sub: Some(sub.into()),
        client_id: Some(client_id.into()),
        permissions: vec![RptPermission::new(album, scopes.iter().copied())],
        ..RptSpec::active_for("unused", ["unused"], 300)
    })
}

const OVERRIDE_HEADERS: [&str; 3] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// Asserts that the upstream got `method` and `uri`, and no method-override header.
fn assert_ran_without_signal(seen: &Seen, method: &Method, uri: &str) {
    assert_eq!(seen.method, *method);
    assert_eq!(seen.uri, uri);
    for (name, _) in &seen.headers {
        assert!(
            !name.as_str().contains("method"),
            "{name} reached the upstream"
        );
    }
}

/// Finding 5: by default the proxy answers every method override with 400, on protected and
/// public routes alike, and nothing reaches the upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn method_overrides_are_refused_by_default() {
    let as_ = start_as().await;
    let up = start_upstream().await;
    let addr = start_run(&as_, &up.url(), "").await;
    let rpt = album_rpt(&as_, &["view", "edit", "delete"], "bob", APP_ID);
    let bearer = format!("Bearer {rpt}");
    for (method, path, headers) in [
        (
            Method::PUT,
            "/albums/1",
            vec![
                ("X-HTTP-Method-Override", "DELETE"),
                ("authorization", bearer.as_str()),
            ],
        ),
        (Method::POST, "/public/x", vec![("X-HTTP-Method", "DELETE")]),
        (
            Method::POST,
            "/public/x",
            vec![("X_Method_Override", "DELETE")],
        ),
        (Method::GET, "/public/x?%5Fmethod=DELETE", vec![]),
        (
            Method::GET,
            "/albums/1?a=1&_method=DELETE",
            vec![("authorization", bearer.as_str())],
        ),
    ] {
        let r = send(method, &format!("http://{addr}{path}"), &headers).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path} {headers:?}");
    }
    assert!(up.seen().is_empty(), "{:?}", up.seen());
}

/// Finding 5 with `method_override = "decide"`: the override is decided on (a view-only RPT
/// gets a challenge for DELETE) and, once allowed, the upstream receives a DELETE without any
/// signal, the rest of the query intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decided_method_overrides_reach_the_upstream_as_the_method() {
    let as_ = start_as().await;
    let up = start_upstream().await;
    let addr = start_run(&as_, &up.url(), "method_override = \"decide\"").await;
    let viewer = album_rpt(&as_, &["view"], "bob", APP_ID);
    let r = send(
        Method::GET,
        &format!("http://{addr}/albums/1?_method=DELETE"),
        &[("authorization", &format!("Bearer {viewer}"))],
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    let deleter = album_rpt(&as_, &["delete"], "bob", APP_ID);
    let r = send(
        Method::POST,
        &format!("http://{addr}/albums/1?q=1&_method=DELETE"),
        &[
            ("authorization", &format!("Bearer {deleter}")),
            ("X_HTTP_Method_Override", "DELETE"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let seen = up.seen();
    assert_eq!(seen.len(), 1);
    assert_ran_without_signal(&seen[0], &Method::DELETE, "/albums/1?q=1");
}

/// Finding 5, defence in depth: the forwarding service never forwards a signal, even without
/// the layer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_forwarding_service_strips_method_overrides() {
    let up = start_upstream().await;
    let forward = forwarding_service(
        uma_proxy::Upstream::parse(&up.url()).unwrap(),
        ForwardOptions::default(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(
        listener,
        forward,
        std::future::pending(),
        Duration::from_secs(1),
    ));
    let mut headers: Vec<(&str, &str)> = OVERRIDE_HEADERS.iter().map(|h| (*h, "DELETE")).collect();
    headers.push(("x_http_method", "DELETE"));
    let r = send(
        Method::POST,
        &format!("http://{addr}/x?a=1&_METHOD=PUT;b=2&_method%00x=PUT&X-HTTP-Method=PUT"),
        &headers,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_ran_without_signal(&up.seen()[0], &Method::POST, "/x?a=1;b=2");
}

/// Finding 8: `sub` and `client_id` are percent-encoded outside visible ASCII (and `%`), so
/// the upstream reads exactly the AS's values; the permissions JSON stays visible ASCII even
/// for a scope with DEL and non-ASCII characters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_headers_say_exactly_what_the_as_said() {
    let as_ = start_as().await;
    let up = start_upstream().await;
    let addr = start_run(&as_, &up.url(), "").await;
    let odd_scope = "odd\u{7f}é\r\n";
    let rpt = album_rpt(&as_, &["view", odd_scope], " admin", "café 100%");
    let r = send(
        Method::GET,
        &format!("http://{addr}/albums/1"),
        &[("authorization", &format!("Bearer {rpt}"))],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let h = &up.seen()[0].headers;
    assert_eq!(h["x-uma-subject"], "%20admin");
    assert_eq!(h["x-uma-client-id"], "caf%C3%A9%20100%25");
    let permissions = h["x-uma-permissions"].as_bytes();
    assert!(
        permissions.iter().all(|b| (b' '..=b'~').contains(b)),
        "{permissions:?}"
    );
    let parsed: serde_json::Value = serde_json::from_slice(permissions).unwrap();
    let mut scopes: Vec<&str> = parsed[0]["resource_scopes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    scopes.sort_unstable();
    assert_eq!(scopes, [odd_scope, "view"]);
}

/// Every forwarding header a client might send, in both spellings, and path overrides.
const CLAIMS: [(&str, &str); 22] = [
    ("forwarded", "for=10.0.0.1;proto=https"),
    ("x-real-ip", "10.0.0.1"),
    ("x-forwarded-for", "10.0.0.1"),
    ("x-forwarded-proto", "https"),
    ("x-forwarded-port", "443"),
    ("x-forwarded-prefix", "/admin"),
    ("x-forwarded-host", "front.test"),
    ("x_forwarded_for", "10.6.6.6"),
    ("x_real_ip", "10.6.6.6"),
    ("x.forwarded.for", "10.6.6.6"),
    ("x-original-url", "/albums/1"),
    ("x-rewrite-url", "/albums/1"),
    ("x-original-uri", "/albums/1"),
    ("x-envoy-original-path", "/albums/1"),
    ("x-client-ip", "10.6.6.6"),
    ("client-ip", "10.6.6.6"),
    ("true-client-ip", "10.6.6.6"),
    ("cf-connecting-ip", "10.6.6.6"),
    ("fastly-client-ip", "10.6.6.6"),
    ("x-cluster-client-ip", "10.6.6.6"),
    ("forwarded-for", "10.6.6.6"),
    ("x-forwarded", "for=10.6.6.6"),
];

/// Finding 9: a client's forwarding headers are replaced unless it is a trusted proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_are_believed_only_from_trusted_proxies() {
    let as_ = start_as().await;
    let up = start_upstream().await;
    let direct = start_run(&as_, &up.url(), "").await;
    let trusting = start_run(&as_, &up.url(), "trusted_proxies = [\"127.0.0.0/8\"]").await;
    for addr in [direct, trusting] {
        let r = send(Method::GET, &format!("http://{addr}/public/x"), &CLAIMS).await;
        assert_eq!(r.status, StatusCode::OK);
    }
    let seen = up.seen();

    let h = &seen[0].headers;
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], direct.to_string().as_str());
    for (name, _) in CLAIMS {
        if !["x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"].contains(&name) {
            assert!(h.get(name).is_none(), "{name} reached the upstream");
        }
    }

    let h = &seen[1].headers;
    assert_eq!(h["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "https");
    assert_eq!(h["x-forwarded-host"], "front.test");
    assert_eq!(h["x-forwarded-port"], "443");
    assert_eq!(h["x-forwarded-prefix"], "/admin");
    assert_eq!(h["x-real-ip"], "10.0.0.1");
    assert_eq!(h["forwarded"], "for=10.0.0.1;proto=https, for=127.0.0.1");
    for name in [
        "x_forwarded_for",
        "x_real_ip",
        "x.forwarded.for",
        "x-original-url",
        "x-rewrite-url",
        "x-original-uri",
        "x-envoy-original-path",
    ] {
        assert!(h.get(name).is_none(), "{name} reached the upstream");
    }
    // A trusted proxy's other client-address headers pass in their usual spelling.
    for name in [
        "x-client-ip",
        "true-client-ip",
        "cf-connecting-ip",
        "x-forwarded",
    ] {
        assert!(
            h.get(name).is_some(),
            "{name} from a trusted proxy was dropped"
        );
    }
}

/// Sends `head` (a request without body) on a new connection; returns the status code.
async fn raw_status(addr: SocketAddr, head: &str) -> u16 {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(SOON, s.read_to_end(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&buf);
    text.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Finding 9: with `allowed_hosts`, another `Host` (or absolute-form authority) gets 421
/// before the layer or the upstream sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_hosts_are_misdirected() {
    let as_ = start_as().await;
    let up = start_upstream().await;
    let addr = start_run(&as_, &up.url(), "allowed_hosts = [\"good.test\"]").await;
    let url = format!("http://{addr}/public/x");
    let r = send(Method::GET, &url, &[("host", "evil.test")]).await;
    assert_eq!(r.status, StatusCode::MISDIRECTED_REQUEST);
    let r = send(Method::GET, &url, &[]).await;
    assert_eq!(
        r.status,
        StatusCode::MISDIRECTED_REQUEST,
        "the address is not allowed"
    );
    let r = send(
        Method::GET,
        &format!("http://{addr}/albums/1"),
        &[("host", "evil.test")],
    )
    .await;
    assert_eq!(r.status, StatusCode::MISDIRECTED_REQUEST);
    let absolute =
        "GET http://evil.test/public/x HTTP/1.1\r\nHost: good.test\r\nConnection: close\r\n\r\n";
    assert_eq!(raw_status(addr, absolute).await, 421);
    let r = send(Method::GET, &url, &[("host", "GOOD.test:8080")]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(up.seen().len(), 1);
    assert_eq!(as_.count(uma_test_as::Endpoint::Permission), 0);
}

/// An upstream that answers every request in HTTP/1.0 with a body delimited by closing the
/// connection.
async fn start_http10_upstream() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut chunk = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&chunk[..n]),
                    }
                }
                let answer = "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nhello from 1.0";
                let _ = s.write_all(answer.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    format!("http://{addr}")
}

/// Finding 12: an HTTP/1.0 upstream does not make the proxy answer in HTTP/1.0 and close: a
/// client sends two requests on one keep-alive connection and gets two HTTP/1.1 answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http10_upstream_keeps_the_client_on_http11() {
    let as_ = start_as().await;
    let upstream = start_http10_upstream().await;
    let addr = start_run(&as_, &upstream, "").await;
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    for i in 0..2 {
        tokio::time::timeout(SOON, sender.ready())
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("request {i}: the proxy closed the connection: {e}"));
        let req = Request::get(format!("/public/{i}"))
            .header("host", addr.to_string())
            .body(empty())
            .unwrap();
        let resp = tokio::time::timeout(SOON, sender.send_request(req))
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("request {i}: {e}"));
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.version(), Version::HTTP_11, "request {i}");
        assert!(
            resp.headers()
                .get("connection")
                .is_none_or(|v| !v.as_bytes().eq_ignore_ascii_case(b"close")),
            "request {i}: {:?}",
            resp.headers()
        );
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"hello from 1.0");
    }
}

/// Request smuggling: framings that a proxy and an upstream could read differently (both
/// `Content-Length` and `Transfer-Encoding`, two lengths, obfuscated codings) are refused or
/// re-framed, so the request hidden in the body (`GET /albums/1`, refused without a token)
/// never reaches the upstream, and no forwarded request carries both framings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggled_requests_never_reach_the_upstream() {
    let as_ = start_as().await;
    let up = start_upstream().await;
    let hooks = "[[resources]]\npath = \"/hooks/*\"\npublic = true\npublic_methods = [\"POST\"]\n";
    let addr = start_run(&as_, &up.url(), hooks).await;
    let hidden = "GET /albums/1 HTTP/1.1\r\nHost: x\r\n\r\n";
    let chunked_hidden = format!("0\r\n\r\n{hidden}");
    let framings = [
        // CL.TE: a length that covers the hidden request, and chunked.
        format!(
            "POST /hooks/x HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n{chunked_hidden}",
            chunked_hidden.len()
        ),
        // TE.CL: chunked first, a short length after.
        format!(
            "POST /hooks/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n{chunked_hidden}"
        ),
        // Two different lengths.
        format!(
            "POST /hooks/x HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: {}\r\n\r\n{hidden}",
            hidden.len()
        ),
        // Obfuscated codings some parsers ignore and others honour.
        format!(
            "POST /hooks/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\nContent-Length: 0\r\n\r\n{hidden}"
        ),
        format!(
            "POST /hooks/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n{chunked_hidden}"
        ),
        format!(
            "POST /hooks/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n{chunked_hidden}"
        ),
        format!(
            "POST /hooks/x HTTP/1.1\r\nHost: x\r\nContent-Length: +{}\r\n\r\n{hidden}",
            hidden.len()
        ),
    ];
    for raw in &framings {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(raw.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        // The proxy answers each request it reads; a refused framing closes the connection.
        let _ = tokio::time::timeout(Duration::from_millis(500), s.read_to_end(&mut buf)).await;
        let text = String::from_utf8_lossy(&buf);
        for status in text
            .match_indices("HTTP/1.1 ")
            .map(|(i, _)| &text[i + 9..i + 12])
        {
            assert!(
                ["200", "400", "401", "501"].contains(&status),
                "{raw:?} got {status}"
            );
        }
    }
    let seen = up.seen();
    assert!(
        !seen.is_empty(),
        "no framing was forwarded: the test checks nothing"
    );
    for seen in seen {
        assert!(!seen.uri.contains("albums"), "smuggled: {}", seen.uri);
        assert!(
            !(seen.headers.contains_key("content-length")
                && seen.headers.contains_key("transfer-encoding")),
            "both framings forwarded for {}",
            seen.uri
        );
    }
}

/// One keep-alive connection to `addr`: sends `GET path` with `headers` and returns the status
/// and how long the answer took.
struct OneConnection {
    addr: SocketAddr,
    sender: hyper::client::conn::http1::SendRequest<ReqBody>,
}

impl OneConnection {
    async fn open(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        Self { addr, sender }
    }

    async fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> (StatusCode, Duration) {
        tokio::time::timeout(SOON, self.sender.ready())
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{path}: the proxy closed the connection: {e}"));
        let mut req = Request::get(path).header("host", self.addr.to_string());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let started = std::time::Instant::now();
        let resp = tokio::time::timeout(SOON, self.sender.send_request(req.body(empty()).unwrap()))
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        let status = resp.status();
        resp.into_body().collect().await.unwrap();
        (status, started.elapsed())
    }
}

/// The `X-Uma-*` values are kept per thread for the principals seen last: requests with RPTs
/// that differ in subject, client or permissions, sent in turn on one connection, each reach
/// the upstream with their own values, again and again. Forty RPTs: more than one per set of
/// the per-thread memo, so that some share a set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_rpt_gets_its_own_identity_headers_on_one_connection() {
    let as_ = start_as().await;
    let up = start_upstream().await;
    let addr = start_run(&as_, &up.url(), "").await;
    let scopes: [&[&str]; 3] = [&["view"], &["view", "edit"], &["delete", "view"]];
    let rpts: Vec<_> = (0..40)
        .map(|i| {
            // Subjects repeat every 5, clients every 2, permissions every 3.
            let (sub, client, scopes) = (
                format!("user-{}", i % 5),
                format!("app-{}", i % 2),
                scopes[i % 3],
            );
            (album_rpt(&as_, scopes, &sub, &client), sub, client, scopes)
        })
        .collect();
    let mut conn = OneConnection::open(addr).await;
    for round in 0..3 {
        for (rpt, sub, client, scopes) in &rpts {
            let bearer = format!("Bearer {rpt}");
            let (status, _) = conn.get("/albums/1", &[("authorization", &bearer)]).await;
            assert_eq!(status, StatusCode::OK, "round {round}, {sub} {scopes:?}");
            let seen = up.seen().pop().unwrap();
            let h = &seen.headers;
            assert_eq!(h["x-uma-subject"], sub.as_str(), "round {round}");
            assert_eq!(h["x-uma-client-id"], client.as_str(), "round {round}");
            let permissions: serde_json::Value =
                serde_json::from_slice(h["x-uma-permissions"].as_bytes()).unwrap();
            let mut got: Vec<&str> = permissions[0]["resource_scopes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap())
                .collect();
            got.sort_unstable();
            let mut expected = scopes.to_vec();
            expected.sort_unstable();
            assert_eq!(got, expected, "round {round}, {sub}: {permissions}");
        }
    }
}

/// A permission that expires while its RPT is cached leaves `X-Uma-Permissions` from the
/// first request after its `exp`: the values kept for the RPT are those of the permissions
/// granted then, not those of an earlier request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_permission_leaves_the_permissions_header() {
    let as_ = start_as().await;
    let up = start_upstream().await;
    let addr = start_run(&as_, &up.url(), "").await;
    let album = as_.resource_id("album").unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let edit_until = now + 2;
    let rpt = as_.mint_rpt(RptSpec {
        sub: Some("bob".into()),
        permissions: vec![
            RptPermission::new(album.clone(), ["view"]),
            RptPermission {
                exp: Some(edit_until),
                ..RptPermission::new(album, ["edit"])
            },
        ],
        ..RptSpec::active_for("unused", ["unused"], 300)
    });
    let bearer = format!("Bearer {rpt}");
    let scopes = |seen: &Seen| -> Vec<String> {
        let permissions: serde_json::Value =
            serde_json::from_slice(seen.headers["x-uma-permissions"].as_bytes()).unwrap();
        permissions
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|p| p["resource_scopes"].as_array().unwrap().clone())
            .map(|s| s.as_str().unwrap().to_owned())
            .collect()
    };
    let mut conn = OneConnection::open(addr).await;
    let (status, _) = conn.get("/albums/1", &[("authorization", &bearer)]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(scopes(&up.seen().pop().unwrap()), ["view", "edit"]);
    // Until a second after `exp` (Unix seconds).
    while std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        <= edit_until
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, _) = conn.get("/albums/1", &[("authorization", &bearer)]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(scopes(&up.seen().pop().unwrap()), ["view"]);
    assert_eq!(
        as_.count(uma_test_as::Endpoint::Introspection),
        1,
        "the RPT stayed cached"
    );
}

/// `upstream_timeout` holds for every request of a keep-alive connection, whose timers are
/// reused from request to request: a request whose upstream is slower gets `504` after the
/// timeout, not at once (after one that timed out, whose timer has fired) and not later; one
/// whose upstream is quicker gets its answer, even when it takes longer than what was left of
/// the timeout of the request before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_timeout_holds_for_every_request_of_a_connection() {
    const TIMEOUT: Duration = Duration::from_millis(1000);
    let as_ = start_as().await;
    let up = start_upstream().await;
    let addr = start_run(&as_, &up.url(), "upstream_timeout = \"1s\"").await;
    let mut conn = OneConnection::open(addr).await;
    for round in 0..2 {
        let (status, took) = conn.get("/public/a?mode=sleep&ms=5000", &[]).await;
        assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "round {round}");
        assert!(took >= TIMEOUT, "round {round}: 504 after {took:?}");
        assert!(
            took < Duration::from_millis(4000),
            "round {round}: 504 after {took:?}"
        );
        // After a timeout: the next request's timer is not the fired one.
        let (status, took) = conn.get("/public/b?mode=sleep&ms=400", &[]).await;
        assert_eq!(status, StatusCode::OK, "round {round} after {took:?}");
        // Longer than what was left of the last request's timeout (600 ms).
        let (status, took) = conn.get("/public/c?mode=sleep&ms=800", &[]).await;
        assert_eq!(status, StatusCode::OK, "round {round} after {took:?}");
    }
}

/// A path that starts with `//` has the form of a network-path reference: an upstream that
/// resolves the request target as a URI reference (Node's `new URL(req.url, base)`, Python's
/// `urlsplit`) reads `//public/albums/1` as host `public` and path `/albums/1`, the protected
/// route, while the proxy would decide the public `/public/albums/1`. Refused, whatever route
/// its canonical form takes; nothing reaches the upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_that_starts_with_two_slashes_never_reaches_the_upstream() {
    let as_ = start_as().await;
    let up = start_upstream().await;
    let addr = start_run(&as_, &up.url(), "").await;
    for path in [
        "//public/albums/1",
        "//albums/1",
        "//",
        "//public/albums/1?x=1",
    ] {
        let answer = send(Method::GET, &format!("http://{addr}{path}"), &[]).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{path}");
    }
    assert!(up.seen().is_empty(), "{:?}", up.seen().len());
    // The public route in its own spelling, and with an empty segment further in, passes.
    for path in ["/public/albums/1", "/public//albums/1"] {
        let answer = send(Method::GET, &format!("http://{addr}{path}"), &[]).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}");
    }
    let seen: Vec<String> = up.seen().iter().map(|s| s.uri.clone()).collect();
    assert_eq!(seen, ["/public/albums/1", "/public//albums/1"]);
}

/// Review (forwarding path): the upstream's base path joined with the request's target. An
/// absolute-form target without a path (`GET http://host?x=1`) is the path `/` to the layer
/// (`Uri::path` of an empty path), and `/` goes to the upstream as `BASE/`; but the forwarding
/// service joins `BASE` with the target's path-and-query *as written*, `?x=1`, and the
/// upstream receives `BASE?x=1`: a path no origin-form request can reach (`BASE` without its
/// slash, which routers such as axum's tell from `BASE/`), run under the rule of `/` (public
/// here) rather than any rule of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_runs_the_path_the_layer_decided_for_an_absolute_form_target() {
    let as_ = start_as().await;
    let up = start_upstream().await;
    let root = "[[resources]]\npath = \"/\"\npublic = true\n";
    let addr = start_run(&as_, &format!("{}/api", up.url()), root).await;
    // Origin form: `/` is `/api/` upstream.
    assert_eq!(
        raw_status(
            addr,
            "GET /?x=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .await,
        200
    );
    // Absolute form, the same path `/` as the layer reads it.
    let absolute = "GET http://x?x=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let status = raw_status(addr, absolute).await;
    let seen: Vec<String> = up.seen().iter().map(|s| s.uri.clone()).collect();
    assert_eq!(seen[0], "/api/?x=1");
    if status == 200 {
        assert_eq!(
            seen.get(1).map(String::as_str),
            Some("/api/?x=1"),
            "decided as `/` (public), forwarded as another path: {seen:?}"
        );
    }
}
