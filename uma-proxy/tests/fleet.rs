//! A fleet: three `uma-proxy` processes sharing one real `redis-server` (`[cache.shared]`)
//! and one `uma-test-as`, behind no load balancer (the test is the balancer). Built with the
//! feature `redis` only; without redis-server the tests fail when `CI` is set and otherwise
//! return early, saying why.

#![allow(clippy::unwrap_used, reason = "a test: a failure is a test failure")]

mod common;
#[path = "../../tests/common/redis.rs"]
mod redis_server;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use redis_server::RedisServer;
use uma_test_as::{Endpoint, RptPermission, RptSpec, TestAs};

use crate::common::*;

const FLEET_SECRET: &str = "fleet-secret-of-the-e2e-tests-4f7a1c9e";
const ADMIN_TOKEN: &str = "admin-token-e2e-0b6d2f";

struct Fleet {
    /// Kept alive (killed on drop).
    _proxies: Vec<Proxy>,
    addrs: Vec<SocketAddr>,
    admins: Vec<SocketAddr>,
}

async fn fleet(as_: &TestAs, upstream: &str, redis: &RedisServer, timeout: &str) -> Fleet {
    let text = format!(
        "{}\n[cache.shared]\nurl = \"{}\"\nsecret_env = \"FLEET_SECRET\"\ntimeout = \"{timeout}\"\nchannel = \"e2e:revoked\"\n",
        config(
            as_,
            upstream,
            "admin_listen = \"127.0.0.1:0\"\nadmin_token_env = \"FLEET_ADMIN\""
        ),
        redis.url()
    );
    let mut proxies = Vec::new();
    let mut addrs = Vec::new();
    let mut admins = Vec::new();
    for _ in 0..3 {
        let mut p = Proxy::spawn(
            &text,
            &[],
            &[("FLEET_SECRET", FLEET_SECRET), ("FLEET_ADMIN", ADMIN_TOKEN)],
        );
        addrs.push(p.listening().await);
        admins.push(p.admin_addr().await);
        proxies.push(p);
    }
    let fleet = Fleet {
        _proxies: proxies,
        addrs,
        admins,
    };
    for admin in &fleet.admins {
        fleet_healthy(*admin).await;
    }
    fleet
}

/// Waits until `/healthz` says the shared cache is used (the channel is subscribed).
async fn fleet_healthy(admin: SocketAddr) {
    let deadline = Instant::now() + SOON;
    loop {
        let health = send(Method::GET, &format!("http://{admin}/healthz"), &[]).await;
        if String::from_utf8_lossy(&health.body).contains("shared_cache ok") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the shared cache never came up: {}",
            String::from_utf8_lossy(&health.body)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn rpt(as_: &TestAs) -> String {
    let album = as_.resource_id("album").expect("registered");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    as_.mint_rpt(RptSpec {
        sub: Some("bob".into()),
        exp: Some(now + 120),
        permissions: vec![RptPermission {
            resource_id: album,
            resource_scopes: vec!["view".into()],
            ..RptPermission::default()
        }],
        ..RptSpec::default()
    })
}

async fn get(addr: SocketAddr, rpt: &str) -> StatusCode {
    let bearer = format!("Bearer {rpt}");
    send(
        Method::GET,
        &format!("http://{addr}/albums/1"),
        &[("authorization", &bearer)],
    )
    .await
    .status
}

async fn revoke(
    http: &reqwest::Client,
    admin: SocketAddr,
    auth: Option<&str>,
    body: &str,
) -> StatusCode {
    let mut req = http
        .post(format!("http://{admin}/admin/revoke"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_owned());
    if let Some(auth) = auth {
        req = req.bearer_auth(auth);
    }
    req.send().await.unwrap().status()
}

/// Waits until Redis holds an entry.
async fn written(redis: &RedisServer) {
    let deadline = Instant::now() + SOON;
    while redis.keys("tower-uma:*") == 0 {
        assert!(Instant::now() < deadline, "no entry was written to Redis");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_one_introspection_and_revocation_everywhere() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let as_ = start_as().await;
    let up = start_upstream().await;
    let f = fleet(&as_, &up.url(), &redis, "200ms").await;
    let token = rpt(&as_);
    let before = as_.count(Endpoint::Introspection);
    for addr in &f.addrs {
        assert_eq!(get(*addr, &token).await, StatusCode::OK);
        // The shared entry is written off the request path.
        written(&redis).await;
    }
    assert_eq!(
        as_.count(Endpoint::Introspection) - before,
        1,
        "the same RPT sent to three replicas costs one introspection"
    );

    // The admin endpoint: authenticated, and the token is in a form body.
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let form = format!("token={token}");
    assert_eq!(
        revoke(&http, f.admins[1], None, &form).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        revoke(&http, f.admins[1], Some("wrong-admin-token-000"), &form).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        revoke(&http, f.admins[1], Some(ADMIN_TOKEN), "tok=x").await,
        StatusCode::BAD_REQUEST
    );
    for addr in &f.addrs {
        assert_eq!(
            get(*addr, &token).await,
            StatusCode::OK,
            "nothing revoked yet"
        );
    }

    as_.revoke(&token);
    let start = Instant::now();
    assert_eq!(
        revoke(&http, f.admins[1], Some(ADMIN_TOKEN), &form).await,
        StatusCode::NO_CONTENT
    );
    // Each replica is asked until it refuses; no request that starts 100 ms or more after
    // the revocation may be let through.
    let refused_after = futures_util::future::join_all(f.addrs.iter().map(|addr| {
        let token = token.clone();
        async move {
            let mut last_let_through = None;
            loop {
                let asked = start.elapsed();
                if get(*addr, &token).await != StatusCode::OK {
                    return (last_let_through, asked);
                }
                last_let_through = Some(asked);
                assert!(
                    asked < Duration::from_millis(100),
                    "replica {addr} let the revoked token through {asked:?} after the revocation"
                );
            }
        }
    }))
    .await;
    eprintln!(
        "per replica, (last request let through, first request refused), by when they started \
         after POST /admin/revoke was sent: {refused_after:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_hanging_mid_run_nothing_forwarded_without_a_decision() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let as_ = start_as().await;
    let up = start_upstream().await;
    let timeout = Duration::from_millis(100);
    let f = fleet(&as_, &up.url(), &redis, "100ms").await;
    let good = rpt(&as_);
    assert_eq!(get(f.addrs[0], &good).await, StatusCode::OK);
    let forwarded_before = up.seen().len();
    // Hanging: connections stay open and nothing answers, so every Redis call not skipped
    // by the circuit waits for the whole timeout.
    redis.pause();

    let mut latencies = Vec::new();
    let mut slow = [0_u32; 3];
    let mut allowed = 0;
    for i in 0..60 {
        // Fresh tokens: valid, revoked at the AS, junk.
        let token = match i % 3 {
            0 => rpt(&as_),
            1 => {
                let t = rpt(&as_);
                as_.revoke(&t);
                t
            }
            _ => format!("junk-{i}"),
        };
        let start = Instant::now();
        let status = get(f.addrs[i % 3], &token).await;
        let took = start.elapsed();
        latencies.push(took);
        slow[i % 3] += u32::from(took > timeout / 2);
        let expected = if i % 3 == 0 {
            StatusCode::OK
        } else {
            StatusCode::UNAUTHORIZED
        };
        assert_eq!(status, expected, "request {i}");
        allowed += usize::from(status == StatusCode::OK);
    }
    assert_eq!(
        up.seen().len() - forwarded_before,
        allowed,
        "only granted requests reached the upstream"
    );
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100];
    eprintln!(
        "with Redis hanging: p99 {p99:?}, max {:?}, requests over timeout/2 per replica {slow:?}",
        latencies.last()
    );
    // The first call of each replica waits for the timeout and opens its circuit; a probe
    // may wait once more. A circuit that never skipped would make every request wait.
    assert!(
        slow.iter().all(|&n| n <= 2),
        "requests over {:?} per replica: {slow:?}",
        timeout / 2
    );
    assert!(
        p99 < timeout * 2 + Duration::from_millis(400),
        "p99 {p99:?} is not bounded by the timeout {timeout:?}"
    );
    let health = send(Method::GET, &format!("http://{}/healthz", f.admins[0]), &[]).await;
    assert_eq!(health.status, StatusCode::OK);
    assert!(
        String::from_utf8_lossy(&health.body).contains("shared_cache degraded"),
        "{}",
        String::from_utf8_lossy(&health.body)
    );
    // A revocation that cannot be broadcast is reported, so that the caller retries.
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    assert_eq!(
        revoke(
            &http,
            f.admins[2],
            Some(ADMIN_TOKEN),
            &format!("token={good}")
        )
        .await,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_entry_is_refused_by_the_fleet() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let as_ = start_as().await;
    let up = start_upstream().await;
    let f = fleet(&as_, &up.url(), &redis, "200ms").await;
    // A token that grants nothing on albums: its entry says so.
    let album = as_.resource_id("album").expect("registered");
    let weak = as_.mint_rpt(RptSpec {
        sub: Some("mallory".into()),
        exp: Some(i64::from(u32::MAX)),
        permissions: vec![RptPermission {
            resource_id: album,
            resource_scopes: vec!["edit".into()],
            ..RptPermission::default()
        }],
        ..RptSpec::default()
    });
    assert_eq!(get(f.addrs[0], &weak).await, StatusCode::UNAUTHORIZED);
    let reply = redis.command(&[b"KEYS", b"tower-uma:*"]);
    let text = String::from_utf8_lossy(&reply).into_owned();
    let key = text
        .lines()
        .find(|l| l.starts_with("tower-uma:"))
        .expect("the entry is in Redis")
        .to_owned();
    let stored = redis.get(&key).expect("stored");
    // Whoever can write Redis (but has no fleet secret) grants it `view`.
    // The payload rewritten, the tag kept: only the MAC tells them apart.
    let payload = String::from_utf8(stored[32..].to_vec()).expect("the payload is JSON");
    let mut forged = stored[..32].to_vec();
    forged.extend_from_slice(payload.replace("\"edit\"", "\"view\"").as_bytes());
    assert_ne!(forged, stored);
    redis.set(&key, &forged);
    let before = as_.count(Endpoint::Introspection);
    let seen = up.seen().len();
    assert_eq!(get(f.addrs[1], &weak).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        up.seen().len(),
        seen,
        "nothing forwarded on the forged entry"
    );
    assert_eq!(
        as_.count(Endpoint::Introspection) - before,
        1,
        "the forged entry was refused and the AS asked"
    );
}
