//! The fleet's shared cache on a real `redis-server` (feature `redis`).
//!
//! - `shared/local-miss-redis-hit`: a request whose token the local cache does not hold (its
//!   `max_entries` is 0) and Redis does: one Redis `GET` on loopback, the MAC check and the
//!   decision. Beside it, `shared/local-hit` (the local cache answers) and
//!   `shared/local-miss-as` (no shared level: the in-process AS answers), for scale.
//! - `fleet/as-calls-saved`: three replicas (layers with local caches of their own) and a run
//!   of requests spread over them, each token sent to every replica; prints the
//!   introspections made with and without the shared level, and the calls saved.
//!
//! Run with `cargo bench -p tower-uma --features redis --bench shared_cache`; without
//! `--bench` every measurement is shortened to a smoke test. Needs `redis-server`
//! (`apt-get install redis-server`); without it the bench says so and exits.
//! `UMA_BENCH_ONLY=local-miss-redis-hit:N` (or `local-hit:N`, `local-miss-as:N`) sends N
//! requests of that variant and nothing else, for instruction counts under callgrind.
#![allow(clippy::print_stdout, reason = "a bench reports its figures on stdout")]

#[path = "../tests/common/redis.rs"]
mod redis_server;
mod support;

use std::time::Duration;

use axum::Router;
use criterion::Criterion;
use http::StatusCode;
use redis_server::RedisServer;
use tower::ServiceExt;
use tower_uma::IntrospectionCache;
use tower_uma::cache::SharedCache;
use uma_test_as::Endpoint;

const SECRET: [u8; 32] = *b"fleet-secret-for-the-bench-01234";

fn shared(redis: &RedisServer) -> SharedCache {
    SharedCache::builder(redis.url(), SECRET)
        .timeout(Duration::from_millis(200))
        .build()
        .expect("valid settings")
}

/// A local cache with the shared level, keeping `max_entries` locally.
fn cache(redis: &RedisServer, max_entries: u64) -> IntrospectionCache {
    IntrospectionCache::builder()
        .max_entries(max_entries)
        .max_ttl(Duration::from_secs(3_600))
        .shared(shared(redis))
        .build()
}

async fn status(svc: &Router, token: &http::HeaderValue) -> StatusCode {
    svc.clone()
        .oneshot(support::request(Some(token)))
        .await
        .expect("infallible")
        .status()
}

/// Waits until `cache`'s shared level has subscribed (it reads Redis only then).
async fn subscribed(cache: &IntrospectionCache) {
    let shared = cache.shared().expect("a shared level");
    for _ in 0..2_000 {
        if shared.health().is_up() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the shared cache never came up");
}

fn main() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut c = Criterion::default().configure_from_args();
    if !support::bench_mode() {
        c = c
            .warm_up_time(Duration::from_millis(50))
            .measurement_time(Duration::from_millis(200))
            .sample_size(10);
    }
    let env = runtime.block_on(support::start());
    let token = support::bearer(&env.rpt(0));

    // Writes the token's entry to Redis, then reads it from a replica that keeps nothing.
    let (writer, reader, local, direct) = runtime.block_on(async {
        let writer_cache = cache(&redis, 10);
        let writer = support::app().layer(env.layer(writer_cache.clone()).await);
        subscribed(&writer_cache).await;
        assert_eq!(status(&writer, &token).await, StatusCode::OK);
        let reader_cache = cache(&redis, 0);
        let reader = support::app().layer(env.layer(reader_cache.clone()).await);
        subscribed(&reader_cache).await;
        let local = support::app().layer(env.layer(support::long_cache(10)).await);
        let direct = support::app().layer(env.layer(IntrospectionCache::disabled()).await);
        (writer, reader, local, direct)
    });
    let before = env.auth.count(Endpoint::Introspection);
    runtime.block_on(async {
        assert_eq!(status(&reader, &token).await, StatusCode::OK);
    });
    assert_eq!(
        env.auth.count(Endpoint::Introspection),
        before,
        "the reader's request was answered from Redis"
    );
    // `UMA_BENCH_ONLY=VARIANT:N`: N requests of one variant and nothing else, for instruction
    // counts under callgrind (two runs with different N; the difference of the totals divided
    // by the difference of N is the count per request, set-up cancelled out).
    if let Some((name, n)) = std::env::var("UMA_BENCH_ONLY").ok().and_then(|spec| {
        Some((
            spec.split_once(':')?.0.to_owned(),
            spec.split_once(':')?.1.parse::<u32>().ok()?,
        ))
    }) {
        let app = match name.as_str() {
            "local-miss-redis-hit" => &reader,
            "local-hit" => &local,
            "local-miss-as" => &direct,
            other => panic!("UMA_BENCH_ONLY: no variant {other:?}"),
        };
        runtime.block_on(async {
            for _ in 0..n {
                assert_eq!(status(app, &token).await, StatusCode::OK);
            }
        });
        return;
    }
    let mut group = c.benchmark_group("shared");
    if support::selected("shared/local-miss-redis-hit") {
        group.bench_function("local-miss-redis-hit", |b| {
            b.to_async(&runtime).iter(|| status(&reader, &token));
        });
    }
    if support::selected("shared/local-hit") {
        group.bench_function("local-hit", |b| {
            b.to_async(&runtime).iter(|| status(&local, &token));
        });
    }
    if support::selected("shared/local-miss-as") {
        group.bench_function("local-miss-as", |b| {
            b.to_async(&runtime).iter(|| status(&direct, &token));
        });
    }
    group.finish();
    drop(writer);

    if support::selected("fleet/as-calls-saved") {
        let tokens = if support::bench_mode() { 300 } else { 30 };
        let (without, with) = runtime.block_on(async {
            let without = fleet_run(&env, None, tokens).await;
            let with = fleet_run(&env, Some(&redis), tokens).await;
            (without, with)
        });
        println!(
            "fleet/as-calls-saved: {tokens} tokens, each sent once to each of 3 replicas: \
             {without} introspections without the shared level, {with} with it; {} saved",
            without.saturating_sub(with)
        );
    }
    c.final_summary();
}

/// Three replicas; each of `tokens` tokens sent once to each, in turn. Returns the
/// introspections made.
async fn fleet_run(env: &support::Env, redis: Option<&RedisServer>, tokens: usize) -> u64 {
    let mut replicas = Vec::new();
    for _ in 0..3 {
        let cache = match redis {
            Some(redis) => {
                let cache = cache(redis, 10_000);
                subscribed(&cache).await;
                cache
            }
            None => support::long_cache(10_000),
        };
        replicas.push(support::app().layer(env.layer(cache).await));
    }
    let tokens: Vec<_> = (0..tokens)
        .map(|n| support::bearer(&env.rpt(1_000_000 + n)))
        .collect();
    let before = env.auth.count(Endpoint::Introspection);
    for token in &tokens {
        for replica in &replicas {
            assert_eq!(status(replica, token).await, StatusCode::OK);
        }
    }
    env.auth.count(Endpoint::Introspection) - before
}
