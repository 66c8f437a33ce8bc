//! The fleet's shared cache level on a real `redis-server` (feature `redis`): replicas are
//! layers with caches of their own, sharing one Redis and one `uma-test-as`, whose counters
//! prove how many introspections were made.
//!
//! Each test starts its own redis-server (see `common/redis.rs`); without the binary they
//! fail when `CI` is set and otherwise return early, saying why.

mod common;
#[path = "common/redis.rs"]
mod redis_server;

use std::time::{Duration, Instant};

use common::*;
use http::StatusCode;
use redis_server::RedisServer;
use tower_uma::IntrospectionCache;
use tower_uma::cache::SharedCache;
use uma_test_as::{Endpoint, TestAs};

const SECRET: [u8; 32] = *b"fleet-secret-for-tests-012345678";

/// A replica: a layer with its own local cache, on the shared Redis.
struct Replica {
    url: String,
    /// Built once: building a client takes tens of milliseconds in a debug build.
    http: reqwest::Client,
    layer: tower_uma::UmaLayer,
    shared: SharedCache,
}

async fn replica(as_: &TestAs, r: &str, redis: &RedisServer, timeout: Duration) -> Replica {
    let replica = unsubscribed_replica(as_, r, redis, timeout).await;
    replica.subscribed().await;
    replica
}

/// A replica that may not have subscribed to the revocation channel yet.
async fn unsubscribed_replica(
    as_: &TestAs,
    r: &str,
    redis: &RedisServer,
    timeout: Duration,
) -> Replica {
    let shared = SharedCache::builder(redis.url(), SECRET)
        .timeout(timeout)
        .channel("tests:revoked")
        .build()
        .expect("valid settings");
    let cache = IntrospectionCache::builder().shared(shared.clone()).build();
    let layer = discover(as_)
        .await
        .resources(invoice_map(r))
        .cache(cache)
        .build()
        .await
        .expect("builds");
    let (url, _) = protected(layer.clone()).await;
    Replica {
        url,
        http: http(),
        layer,
        shared,
    }
}

impl Replica {
    /// Waits until the revocation channel is not subscribed.
    async fn unsubscribed(&self, within: Duration) {
        let deadline = Instant::now() + within;
        while self.shared.health().subscribed {
            assert!(
                Instant::now() < deadline,
                "still subscribed {within:?} after the channel went silent"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits until the revocation channel is subscribed (Redis is not read before).
    async fn subscribed(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        // Any shared operation starts the subscriber; a cache lookup does.
        while !self.shared.health().subscribed {
            assert!(Instant::now() < deadline, "never subscribed");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn get(&self, token: &str) -> StatusCode {
        get_with(&self.http, &self.url, "/invoices/1", token)
            .await
            .status()
    }
}

/// How many cache entries Redis holds (revocation markers not counted).
fn entries(redis: &RedisServer) -> usize {
    redis.keys("tower-uma:*") - redis.keys("tower-uma:revoked:*")
}

/// The one revocation marker in Redis.
fn only_marker(redis: &RedisServer) -> String {
    let reply = redis.command(&[b"KEYS", b"tower-uma:revoked:*"]);
    let text = String::from_utf8_lossy(&reply);
    let keys: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("tower-uma:revoked:"))
        .collect();
    assert_eq!(keys.len(), 1, "one marker: {keys:?}");
    keys[0].to_owned()
}

/// Waits until Redis holds `n` entries.
async fn written(redis: &RedisServer, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while entries(redis) < n {
        assert!(Instant::now() < deadline, "not written to Redis");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn introspections(as_: &TestAs) -> u64 {
    as_.count(Endpoint::Introspection)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_introspection_serves_every_replica() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let as_ = start_as().await;
    let r = register_invoice(&as_);
    let a = replica(&as_, &r, &redis, Duration::from_millis(200)).await;
    let b = replica(&as_, &r, &redis, Duration::from_millis(200)).await;
    let c = replica(&as_, &r, &redis, Duration::from_millis(200)).await;
    let rpt = rpt_for(&as_, &r, &["read"]);
    assert_eq!(a.get(&rpt).await, StatusCode::OK);
    // The shared entry is written off the request path.
    written(&redis, 1).await;
    assert_eq!(b.get(&rpt).await, StatusCode::OK);
    assert_eq!(c.get(&rpt).await, StatusCode::OK);
    assert_eq!(introspections(&as_), 1, "one introspection for the fleet");
    // Junk is shared too (negative cache).
    assert_eq!(a.get("junk").await, StatusCode::UNAUTHORIZED);
    written(&redis, 2).await;
    assert_eq!(b.get("junk").await, StatusCode::UNAUTHORIZED);
    assert_eq!(introspections(&as_), 2);
    // Neither token nor its SHA-256 shows in Redis.
    assert_eq!(redis.keys("*"), 2);
    for key in ["*junk*", &format!("*{}*", &rpt[..16])] {
        assert_eq!(redis.keys(key), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_on_one_replica_is_honoured_by_all() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let as_ = start_as().await;
    let r = register_invoice(&as_);
    let replicas = [
        replica(&as_, &r, &redis, Duration::from_millis(200)).await,
        replica(&as_, &r, &redis, Duration::from_millis(200)).await,
        replica(&as_, &r, &redis, Duration::from_millis(200)).await,
    ];
    let rpt = rpt_for(&as_, &r, &["read"]);
    for replica in &replicas {
        assert_eq!(replica.get(&rpt).await, StatusCode::OK);
    }
    as_.revoke(&rpt);
    let start = Instant::now();
    replicas[0]
        .layer
        .forget_token_everywhere(&rpt)
        .await
        .expect("sent to the fleet");
    // Each replica is asked until it refuses; no request that starts 100 ms or more after
    // the revocation may be let through.
    let refused_after = futures_util::future::join_all(replicas.iter().map(|replica| {
        let rpt = rpt.clone();
        async move {
            let mut last_let_through = None;
            loop {
                let asked = start.elapsed();
                if replica.get(&rpt).await != StatusCode::OK {
                    return (last_let_through, asked);
                }
                last_let_through = Some(asked);
                assert!(
                    asked < Duration::from_millis(100),
                    "a replica let the revoked token through {asked:?} after the revocation"
                );
            }
        }
    }))
    .await;
    eprintln!(
        "per replica, (last request let through, first request refused), by when they started \
         after the revocation: {refused_after:?}"
    );
    assert_eq!(entries(&redis), 1, "only the new inactive entry");
    assert_eq!(
        redis.keys("tower-uma:revoked:*"),
        1,
        "and the token's revocation marker"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_or_moved_entry_is_refused() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let as_ = start_as().await;
    let r = register_invoice(&as_);
    let a = replica(&as_, &r, &redis, Duration::from_millis(200)).await;
    let reader = rpt_for(&as_, &r, &["read"]);
    assert_eq!(a.get(&reader).await, StatusCode::OK);
    written(&redis, 1).await;
    let reader_key = only_key(&redis, &[]);
    // A token that may only write: GET is refused.
    let writer = rpt_for(&as_, &r, &["write"]);
    assert_eq!(a.get(&writer).await, StatusCode::UNAUTHORIZED);
    written(&redis, 2).await;
    let writer_key = only_key(&redis, std::slice::from_ref(&reader_key));
    let granted = redis.get(&reader_key).expect("stored");

    // Moved: the reader's entry under the writer's key.
    redis.set(&writer_key, &granted);
    let b = replica(&as_, &r, &redis, Duration::from_millis(200)).await;
    let before = introspections(&as_);
    assert_eq!(b.get(&writer).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        introspections(&as_),
        before + 1,
        "the moved entry was refused"
    );

    // Tampered: the reader's own entry, its scopes rewritten in the payload, its tag kept
    // (only the MAC tells the two apart: the payload still parses).
    let mut tampered = granted[..32].to_vec();
    tampered.extend_from_slice(&replace(&granted[32..], b"\"read\"", b"\"write\""));
    assert_ne!(tampered, granted, "the payload names the scope");
    redis.set(&reader_key, &tampered);
    let c = replica(&as_, &r, &redis, Duration::from_millis(200)).await;
    let before = introspections(&as_);
    assert_eq!(
        c.get(&reader).await,
        StatusCode::OK,
        "decided on the AS's answer, not on the tampered `write`"
    );
    assert_eq!(
        introspections(&as_),
        before + 1,
        "the tampered entry was refused"
    );

    // Minted: a well-formed, fresh grant of `read` for the writer's token, under its own
    // key, with 32 bytes of tag made without the secret.
    let mut payload: serde_json::Value = serde_json::from_slice(&granted[32..]).expect("json");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    payload["stored_at"] = (now + 5).into();
    payload["fresh_until"] = (now + 3600).into();
    let mut minted = vec![0x5a_u8; 32];
    minted.extend_from_slice(&serde_json::to_vec(&payload).expect("json"));
    redis.set(&writer_key, &minted);
    let d = replica(&as_, &r, &redis, Duration::from_millis(200)).await;
    let before = introspections(&as_);
    assert_eq!(
        d.get(&writer).await,
        StatusCode::UNAUTHORIZED,
        "the minted `read` grant was not used"
    );
    assert_eq!(
        introspections(&as_),
        before + 1,
        "the minted entry was refused"
    );
}

/// `bytes` with every `from` replaced by `to`.
fn replace(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

/// The one key in Redis that is not in `known`.
fn only_key(redis: &RedisServer, known: &[String]) -> String {
    let reply = redis.command(&[b"KEYS", b"tower-uma:*"]);
    let text = String::from_utf8_lossy(&reply);
    let keys: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("tower-uma:"))
        .filter(|l| !known.iter().any(|k| k == l))
        .collect();
    assert_eq!(keys.len(), 1, "one new key: {keys:?}");
    keys[0].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_hanging_or_stopped_neither_fails_open_nor_stalls() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let as_ = start_as().await;
    let r = register_invoice(&as_);
    let timeout = Duration::from_millis(100);
    let a = replica(&as_, &r, &redis, timeout).await;
    let b = replica(&as_, &r, &redis, timeout).await;
    let good = rpt_for(&as_, &r, &["read"]);
    assert_eq!(a.get(&good).await, StatusCode::OK);
    // Hanging: connections stay open, nothing answers; then gone.
    redis.pause();
    let (slowest_hanging, slow) = fresh_tokens_decided_by_the_as(&as_, &r, [&a, &b], timeout).await;
    // The first call of each replica waits for the timeout and opens its circuit; a probe
    // may wait once more. A circuit that never skipped would make every request wait.
    assert!(
        slow.iter().all(|&n| n <= 2),
        "requests over timeout/2 per replica with Redis hanging: {slow:?}"
    );
    assert!(!a.shared.health().is_up(), "the circuit opened");
    redis.resume();
    redis.stop();
    let (slowest_stopped, _) = fresh_tokens_decided_by_the_as(&as_, &r, [&a, &b], timeout).await;
    eprintln!(
        "slowest request with Redis hanging: {slowest_hanging:?}, stopped: {slowest_stopped:?} \
         (timeout {timeout:?})"
    );
    // One Redis call at most per request (a probe), bounded by the timeout, plus the AS.
    for slowest in [slowest_hanging, slowest_stopped] {
        assert!(
            slowest < timeout + Duration::from_millis(400),
            "a request took {slowest:?} with Redis unusable (timeout {timeout:?})"
        );
    }
    assert!(!b.shared.health().is_up());
}

/// Sends fresh tokens (granting, not granting, revoked) to `replicas` in turn: each is
/// decided on the AS's answer. Returns the slowest request's time, and how many requests
/// each replica took more than `timeout / 2` for.
async fn fresh_tokens_decided_by_the_as(
    as_: &TestAs,
    r: &str,
    replicas: [&Replica; 2],
    timeout: Duration,
) -> (Duration, [u32; 2]) {
    let mut slowest = Duration::ZERO;
    let mut slow = [0_u32; 2];
    for i in 0..24 {
        let (token, expected) = match i % 3 {
            0 => (rpt_for(as_, r, &["read"]), StatusCode::OK),
            1 => (rpt_for(as_, r, &["write"]), StatusCode::UNAUTHORIZED),
            _ => {
                let t = rpt_for(as_, r, &["read"]);
                as_.revoke(&t);
                (t, StatusCode::UNAUTHORIZED)
            }
        };
        let start = Instant::now();
        let status = replicas[i % 2].get(&token).await;
        let took = start.elapsed();
        slowest = slowest.max(took);
        slow[i % 2] += u32::from(took > timeout / 2);
        assert_eq!(status, expected, "request {i}");
    }
    (slowest, slow)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_revocation_channel_is_noticed_and_the_local_cache_emptied() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let as_ = start_as().await;
    let r = register_invoice(&as_);
    let a = replica(&as_, &r, &redis, Duration::from_millis(100)).await;
    let rpt = rpt_for(&as_, &r, &["read"]);
    assert_eq!(a.get(&rpt).await, StatusCode::OK);
    assert_eq!(introspections(&as_), 1);
    // The shared entry is written off the request path; once it is there, it goes, so that
    // only the local entry could answer the token.
    written(&redis, 1).await;
    redis.command(&[b"FLUSHALL"]);
    // A Redis that hangs keeps the connection open and says nothing, like a host gone
    // without closing it: only a PING tells.
    redis.pause();
    a.unsubscribed(Duration::from_secs(5)).await;
    resumed_the_token_is_asked_again(
        &redis,
        &a,
        &as_,
        &rpt,
        "the local entry went when the channel was subscribed again",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_started_while_redis_hangs_empties_its_cache_when_it_subscribes() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let as_ = start_as().await;
    let r = register_invoice(&as_);
    redis.pause();
    let a = unsubscribed_replica(&as_, &r, &redis, Duration::from_millis(100)).await;
    let rpt = rpt_for(&as_, &r, &["read"]);
    assert_eq!(a.get(&rpt).await, StatusCode::OK, "decided by the AS");
    assert!(!a.shared.health().subscribed);
    // Revocations published now are not heard by this replica.
    resumed_the_token_is_asked_again(
        &redis,
        &a,
        &as_,
        &rpt,
        "the answer cached before the first subscription went",
    )
    .await;
}

/// Resumes `redis`, waits for `a` to subscribe, and checks that `rpt` (introspected once
/// before, and not in Redis) costs a second introspection: `a`'s local entry went.
async fn resumed_the_token_is_asked_again(
    redis: &RedisServer,
    a: &Replica,
    as_: &TestAs,
    rpt: &str,
    why: &str,
) {
    redis.resume();
    a.subscribed().await;
    assert_eq!(a.get(rpt).await, StatusCode::OK);
    assert_eq!(introspections(as_), 2, "{why}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_token_everywhere_says_when_the_fleet_was_not_told() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let as_ = start_as().await;
    let r = register_invoice(&as_);
    let a = replica(&as_, &r, &redis, Duration::from_millis(100)).await;
    let rpt = rpt_for(&as_, &r, &["read"]);
    assert_eq!(a.get(&rpt).await, StatusCode::OK);
    assert_eq!(a.layer.forget_token_everywhere(&rpt).await, Ok(()));
    redis.stop();
    assert!(
        a.layer.forget_token_everywhere(&rpt).await.is_err(),
        "Redis is gone: not sent"
    );
}

/// A revocation sent by one replica reaches the grants another replica's permission exchange
/// (Keycloak dialect, a plain access token) cached: that replica asks the AS again and
/// refuses the token, instead of passing it on its cached grant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_from_the_fleet_reaches_the_exchanged_grants() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let as_ = start_as_in(Flavor::Keycloak).await;
    let r = register_invoice(&as_);
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let shared = SharedCache::builder(redis.url(), SECRET)
            .timeout(Duration::from_millis(200))
            .channel("tests:revoked")
            .build()
            .expect("valid settings");
        let cache = IntrospectionCache::builder().shared(shared.clone()).build();
        let layer = layer_builder(&as_, Flavor::Keycloak)
            .await
            .resources(invoice_map(&r))
            .permission_exchange(tower_uma::keycloak::PermissionExchange::new())
            .cache(cache)
            .build()
            .await
            .expect("builds");
        let (url, _) = protected(layer.clone()).await;
        let replica = Replica {
            url,
            http: http(),
            layer,
            shared,
        };
        replica.subscribed().await;
        replicas.push(replica);
    }
    // A plain access token: Keycloak's introspection calls it inactive under the RPT hint,
    // and each replica exchanges it for its permissions once.
    let token = UmaClient::new(&as_).access_token("bob", BOB_PW).await;
    let exchanges = || {
        as_.requests(Endpoint::Token)
            .iter()
            .filter(|r| r.body_text().contains("response_mode=permissions"))
            .count()
    };
    for replica in &replicas {
        for _ in 0..2 {
            assert_eq!(replica.get(&token).await, StatusCode::OK);
        }
    }
    assert_eq!(
        exchanges(),
        2,
        "one exchange per replica, then its cached grant"
    );
    as_.revoke(&token);
    replicas[0]
        .layer
        .forget_token_everywhere(&token)
        .await
        .expect("sent to the fleet");
    // The other replica hears the revocation on the channel, then asks the AS again.
    let deadline = Instant::now() + Duration::from_secs(5);
    while replicas[1].get(&token).await == StatusCode::OK {
        assert!(
            Instant::now() < deadline,
            "the other replica kept the revoked token's exchanged grant"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_ne!(replicas[0].get(&token).await, StatusCode::OK);
    assert!(exchanges() >= 3, "the AS was asked again");
}

/// A layer on `cache` whose scope is its own (the issuer `issuer`, the AS's endpoints named one
/// by one): one tenant of many sharing one cache and the fleet's Redis.
async fn scoped_layer(
    as_: &TestAs,
    r: &str,
    issuer: String,
    cache: &IntrospectionCache,
) -> tower_uma::UmaLayer {
    tower_uma::UmaLayer::builder(issuer, RS_ID, RS_SECRET)
        .insecure_allow_http()
        .realm("invoices")
        .token_endpoint(as_.endpoint_url(Endpoint::Token))
        .introspection_endpoint(as_.endpoint_url(Endpoint::Introspection))
        .permission_endpoint(as_.endpoint_url(Endpoint::Permission))
        .resources(invoice_map(r))
        .cache(cache.clone())
        .build()
        .await
        .expect("builds")
}

/// A cache shared by 33 layers (tenants of one process, one scope each). A token that one of
/// them cached in Redis is revoked at the AS and through another layer's
/// `forget_token_everywhere` (a revocation hook knows no tenant; `forget_token` forgets a
/// token "in every layer's entries"). The local entries go, the revocation is published,
/// but the shared entry of the 33rd scope stays in Redis: the sender deletes the keys of the
/// 32 scopes its cache records, and so does every replica that hears it. A replica that did
/// not hear the revocation (started after it, or resubscribed after a cut) reads the entry,
/// its MAC verifies, and it grants the revoked token until the entry's end of freshness.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_deletes_the_shared_entry_of_every_scope() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let as_ = start_as().await;
    let r = register_invoice(&as_);
    let fleet_cache = || {
        let shared = SharedCache::builder(redis.url(), SECRET)
            .timeout(Duration::from_millis(200))
            .channel("tests:revoked")
            .build()
            .expect("valid settings");
        (
            IntrospectionCache::builder().shared(shared.clone()).build(),
            shared,
        )
    };
    let issuer = |i: usize| format!("{}/tenants/t{i}", as_.issuer());
    let (cache, shared) = fleet_cache();
    let mut layers = Vec::new();
    for i in 0..33 {
        layers.push(scoped_layer(&as_, &r, issuer(i), &cache).await);
    }
    let a = Replica {
        url: protected(layers[32].clone()).await.0,
        http: http(),
        layer: layers[32].clone(),
        shared,
    };
    a.subscribed().await;
    let rpt = rpt_for(&as_, &r, &["read"]);
    assert_eq!(a.get(&rpt).await, StatusCode::OK);
    written(&redis, 1).await;

    as_.revoke(&rpt);
    layers[0]
        .forget_token_everywhere(&rpt)
        .await
        .expect("sent to the fleet");
    // (Not asked again here: its inactive answer would overwrite the entry.) Every replica
    // that hears the revocation has had time to delete its keys.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let left = redis.keys("tower-uma:*");

    // A replica started after the revocation, with the same tenant.
    let (cache, shared) = fleet_cache();
    let layer = scoped_layer(&as_, &r, issuer(32), &cache).await;
    let b = Replica {
        url: protected(layer.clone()).await.0,
        http: http(),
        layer,
        shared,
    };
    b.subscribed().await;
    assert_ne!(
        b.get(&rpt).await,
        StatusCode::OK,
        "a replica started after the revocation granted the revoked token from Redis \
         ({left} tower-uma key(s) left after the revocation; the revoked token's active entry \
         among them)"
    );
}

/// Lazy tenants (`TenantLayer` with a resolver and a template), each with a cache of its own
/// on the fleet's Redis, at most one live: tenant `x` caches a token in Redis, then `y`'s
/// first request drops `x`. The token is revoked at the AS and through the tenant layer
/// (`TenantLayer::forget_token`, "in every tenant"): it reaches the live tenants only, and
/// the replicas that hear the revocation delete the keys of the scopes their live caches
/// record, so `x`'s entry stays in Redis, and a replica that did not hear the revocation
/// grants the revoked token from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_deletes_the_shared_entry_of_a_tenant_no_longer_live() {
    use tower_uma::tenant::{TenantChoice, TenantLayer};
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let as_ = start_as().await;
    let r = register_invoice(&as_);
    let replica = |live: u64| {
        let shared = SharedCache::builder(redis.url(), SECRET)
            .timeout(Duration::from_millis(200))
            .channel("tests:revoked")
            .build()
            .expect("valid settings");
        let (issuer, token_url, introspection_url, permission_url) = (
            as_.issuer(),
            as_.endpoint_url(Endpoint::Token),
            as_.endpoint_url(Endpoint::Introspection),
            as_.endpoint_url(Endpoint::Permission),
        );
        let r = r.clone();
        let template_shared = shared.clone();
        let layer = TenantLayer::builder()
            .resolver(|req| {
                let name = req.uri.path().strip_prefix("/t/")?.split('/').next()?;
                Some(TenantChoice::new(name).strip_prefix(format!("/t/{name}")))
            })
            .template(move |name| {
                Some(
                    tower_uma::UmaLayer::builder(
                        format!("{issuer}/tenants/{name}"),
                        RS_ID,
                        RS_SECRET,
                    )
                    .insecure_allow_http()
                    .realm("invoices")
                    .token_endpoint(token_url.clone())
                    .introspection_endpoint(introspection_url.clone())
                    .permission_endpoint(permission_url.clone())
                    .resources(invoice_map(&r))
                    .cache(
                        IntrospectionCache::builder()
                            .shared(template_shared.clone())
                            .build(),
                    ),
                )
            })
            .max_live_tenants(live);
        (layer, shared)
    };
    let subscribed = |shared: &SharedCache| {
        let shared = shared.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            while !shared.health().subscribed {
                assert!(Instant::now() < deadline, "never subscribed");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    let (builder, shared) = replica(1);
    let tenants = builder.build().await.expect("builds");
    let url = format!(
        "http://{}",
        serve(app(Calls::default()).layer(tenants.clone())).await
    );
    let http = http();
    let rpt = rpt_for(&as_, &r, &["read"]);
    assert_eq!(
        get_with(&http, &url, "/t/x/invoices/1", &rpt)
            .await
            .status(),
        StatusCode::OK
    );
    subscribed(&shared).await;
    // Asked again once subscribed (the first subscription empties the local cache), so
    // that the answer goes to Redis.
    assert_eq!(
        get_with(&http, &url, "/t/x/invoices/1", &rpt)
            .await
            .status(),
        StatusCode::OK
    );
    written(&redis, 1).await;
    // `y` takes the one live place.
    let _ = get_with(&http, &url, "/t/y/invoices/1", "junk").await;
    eventually("x dropped", || tenants.tenant("x").is_none()).await;

    as_.revoke(&rpt);
    tenants.forget_token(&rpt);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let left = redis.keys("tower-uma:*");

    let (builder, shared) = replica(10);
    let fresh = builder.build().await.expect("builds");
    let url = format!("http://{}", serve(app(Calls::default()).layer(fresh)).await);
    // Builds x (its first request also starts the subscriber), then asks once subscribed.
    let _ = get_with(&http, &url, "/t/x/invoices/1", "junk").await;
    subscribed(&shared).await;
    assert_ne!(
        get_with(&http, &url, "/t/x/invoices/1", &rpt)
            .await
            .status(),
        StatusCode::OK,
        "a replica started after the revocation granted the revoked token from Redis \
         ({left} tower-uma key(s) left after the revocation)"
    );
}

/// A replica on `redis` whose cache allows `skew` between clocks, on `channel`.
async fn replica_with(
    as_: &TestAs,
    r: &str,
    redis: &RedisServer,
    channel: &str,
    skew: Duration,
) -> Replica {
    let shared = SharedCache::builder(redis.url(), SECRET)
        .timeout(Duration::from_millis(200))
        .channel(channel)
        .build()
        .expect("valid settings");
    let cache = IntrospectionCache::builder()
        .skew(skew)
        .shared(shared.clone())
        .build();
    let layer = discover(as_)
        .await
        .resources(invoice_map(r))
        .cache(cache)
        .build()
        .await
        .expect("builds");
    let (url, _) = protected(layer.clone()).await;
    let replica = Replica {
        url,
        http: http(),
        layer,
        shared,
    };
    replica.subscribed().await;
    replica
}

/// A write racing a revocation: replica `a` asks the AS before the revocation, gets its
/// answer (active) after, and writes it to Redis after the revocation's deletions, without
/// hearing it (here: on another channel; in a fleet, its write may simply go out before the
/// message comes in). Its entry is refused by every replica that reads it later, since it
/// was asked for before the revocation: its authenticated time is that of the asking, which
/// the token's revocation marker is compared with, not that of the writing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_asked_for_before_a_revocation_and_written_after_it_is_refused() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let as_ = start_as().await;
    let r = register_invoice(&as_);
    let skew = Duration::from_millis(100);
    let a = replica_with(&as_, &r, &redis, "tests:elsewhere", skew).await;
    let b = replica_with(&as_, &r, &redis, "tests:revoked", skew).await;
    let rpt = rpt_for(&as_, &r, &["read"]);

    as_.set_latency(Endpoint::Introspection, Duration::from_millis(500));
    let asked = {
        let (http, url, rpt) = (a.http.clone(), a.url.clone(), rpt.clone());
        tokio::spawn(async move { get_with(&http, &url, "/invoices/1", &rpt).await.status() })
    };
    // Within the layer's request timeout (800 ms).
    tokio::time::sleep(Duration::from_millis(150)).await;
    b.layer
        .forget_token_everywhere(&rpt)
        .await
        .expect("sent to the fleet");
    assert_eq!(asked.await.expect("ran"), StatusCode::OK, "answered before");
    written(&redis, 1).await;
    as_.set_latency(Endpoint::Introspection, Duration::ZERO);
    // Revoked at the AS too (its answer to `a` crossed the revocation).
    as_.revoke(&rpt);

    let c = replica_with(&as_, &r, &redis, "tests:revoked", skew).await;
    let before = introspections(&as_);
    assert_ne!(
        c.get(&rpt).await,
        StatusCode::OK,
        "a replica started after the revocation granted the revoked token from an entry \
         asked for before it"
    );
    assert_eq!(introspections(&as_), before + 1, "the entry was refused");
}

/// A revocation marker that cannot be read (here: overwritten by someone who can write
/// Redis) refuses the entry read with it, even a MAC-valid one put back after the
/// revocation deleted it; and a revocation whose marker cannot be written is reported as
/// not sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_or_unwritten_marker_fails_closed() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let as_ = start_as().await;
    let r = register_invoice(&as_);
    let a = replica(&as_, &r, &redis, Duration::from_millis(200)).await;
    let rpt = rpt_for(&as_, &r, &["read"]);
    assert_eq!(a.get(&rpt).await, StatusCode::OK);
    written(&redis, 1).await;
    let key = only_key(&redis, &[]);
    let granted = redis.get(&key).expect("stored");
    a.layer
        .forget_token_everywhere(&rpt)
        .await
        .expect("sent to the fleet");
    assert_eq!(entries(&redis), 0, "deleted");
    // The entry put back, the marker garbled; the AS still says active.
    redis.set(&key, &granted);
    let marker = only_marker(&redis);
    redis.set(&marker, b"never");
    let b = replica(&as_, &r, &redis, Duration::from_millis(200)).await;
    let before = introspections(&as_);
    assert_eq!(b.get(&rpt).await, StatusCode::OK, "the AS's answer");
    assert_eq!(
        introspections(&as_),
        before + 1,
        "the entry read with an unreadable marker was refused"
    );

    // Markers cannot be written (the one command that writes them is denied).
    let reply = redis.command(&[b"ACL", b"SETUSER", b"default", b"-eval"]);
    assert_eq!(reply, b"+OK\r\n");
    assert!(
        a.layer.forget_token_everywhere(&rpt).await.is_err(),
        "a revocation without its marker is not sent"
    );
}
