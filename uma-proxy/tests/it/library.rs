//! `uma_proxy`'s library API used otherwise than the binary uses it: one forwarding service in
//! two runtimes, `serve` in front of a service that waits for readiness, and what a client's
//! `Connection` header may not remove.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a failure is a test failure"
)]

use std::io::{Read as _, Write as _};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use tower::ServiceExt;
use uma_proxy::body::RequestBody;
use uma_proxy::{ForwardOptions, Upstream, forwarding_service, serve};

use crate::common::*;

/// A std upstream answering every request `200` with the request head as body, then closing.
fn echo_upstream() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let mut s = s.unwrap();
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = s.read(&mut buf).unwrap();
                    if n == 0 {
                        return;
                    }
                    head.extend_from_slice(&buf[..n]);
                }
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    head.len()
                );
                let _ = s.write_all(&head);
            });
        }
    });
    addr
}

/// One `Forward`, used from one runtime and then another (a runtime restarted, or a
/// service shared by per-core runtimes): kept timers belong to the runtime that made them.
#[test]
fn one_forwarding_service_serves_a_second_runtime_after_the_first_is_gone() {
    let up = echo_upstream();
    let forward = forwarding_service(
        Upstream::parse(&format!("http://{up}")).unwrap(),
        ForwardOptions::default().timeout(Duration::from_secs(5)),
    );
    let get = |f: uma_proxy::forward::Forward| async move {
        let req = Request::get("/x")
            .body(RequestBody::from(Bytes::new()))
            .unwrap();
        f.oneshot(req).await.unwrap().status()
    };
    let rt = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    let first = rt();
    assert_eq!(first.block_on(get(forward.clone())), StatusCode::OK);
    drop(first);
    let second = rt();
    assert_eq!(second.block_on(get(forward)), StatusCode::OK);
}

/// `serve` with a concurrency-limited service (tower's `ConcurrencyLimit`, limit 1): the
/// second connection's request waits for the first's permit and must get it when released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_hands_a_service_that_waits_for_readiness_its_permit() {
    let (inner, called, release) = crate::inprocess::holding_service();
    let service = tower::limit::ConcurrencyLimit::new(inner, 1);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(
        listener,
        service,
        std::future::pending(),
        Duration::from_secs(1),
    ));
    let get = |path: &str| {
        let req = Request::get(format!("http://{addr}{path}"))
            .body(empty())
            .unwrap();
        tokio::spawn(client().request(req))
    };
    let first = get("/held");
    tokio::time::timeout(SOON, called.notified()).await.unwrap();
    let second = get("/second");
    tokio::time::sleep(Duration::from_millis(300)).await;
    release.notify_one();
    let r = tokio::time::timeout(Duration::from_secs(5), first).await;
    assert_eq!(r.unwrap().unwrap().unwrap().status(), StatusCode::OK);
    let r = tokio::time::timeout(Duration::from_secs(5), second).await;
    assert!(
        r.is_ok(),
        "the second request never got the released permit"
    );
    let third = get("/third");
    let r = tokio::time::timeout(Duration::from_secs(5), third).await;
    assert!(r.is_ok(), "a later request on a new connection hangs too");
}

/// `Connection: host` (the client names Host hop-by-hop): X-Forwarded-Host, and the upstream
/// still gets its own Host.
#[tokio::test]
async fn a_connection_header_naming_host_keeps_x_forwarded_host() {
    let up = echo_upstream();
    let forward = forwarding_service(
        Upstream::parse(&format!("http://{up}")).unwrap(),
        ForwardOptions::default(),
    );
    let req = Request::get("/x")
        .header("host", "public.example")
        .header("connection", "host")
        .body(RequestBody::from(Bytes::new()))
        .unwrap();
    let resp = forward.oneshot(req).await.unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let head = String::from_utf8_lossy(&body).to_lowercase();
    assert!(head.contains("x-forwarded-host: public.example"), "{head}");
    assert!(head.contains(&format!("\r\nhost: {up}\r\n")), "{head}");
}
