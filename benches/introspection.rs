//! Benchmarks of the introspection path against the in-process AS.
//!
//! - `e2e/as-latency`: 100 distinct RPTs reused by 32 concurrent tasks, the AS answering
//!   introspection after 5 ms: throughput with the cache on against the cache off
//!   ([`IntrospectionCache::disabled`]), rounds interleaved in one run (target: at least 20×).
//! - `cold/coalesce`: 1,000 concurrent requests carrying one RPT the cache has never seen make
//!   exactly one introspection call (asserted with the AS's counter), with and without
//!   injected AS latency; the wall time is compared with 1,000 concurrent cache hits.
//!
//! Run with `cargo bench --bench introspection`. Without `--bench` (as `cargo test --benches`
//! runs it) every measurement is shortened to a smoke test.
//!
//! [`IntrospectionCache::disabled`]: tower_uma::IntrospectionCache::disabled
#![allow(clippy::print_stdout, reason = "a bench reports its figures on stdout")]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use http::{HeaderValue, StatusCode};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use tokio::sync::Barrier;
use tower::ServiceExt;
use tower_uma::IntrospectionCache;
use uma_test_as::Endpoint;

/// Counts the cache's hit, miss and coalesced counters; every other metric is dropped.
#[derive(Default)]
struct CacheCounters {
    hits: Arc<AtomicU64>,
    misses: Arc<AtomicU64>,
    coalesced: Arc<AtomicU64>,
}

impl CacheCounters {
    fn snapshot(&self) -> [u64; 3] {
        [&self.hits, &self.misses, &self.coalesced].map(|c| c.load(Ordering::Relaxed))
    }
}

/// A `metrics` recorder sharing [`CacheCounters`].
struct CountingRecorder(Arc<CacheCounters>);

impl Recorder for CountingRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let counters = &self.0;
        match key.name() {
            "uma_cache_hits_total" => Counter::from_arc(Arc::clone(&counters.hits)),
            "uma_cache_misses_total" => Counter::from_arc(Arc::clone(&counters.misses)),
            "uma_cache_coalesced_total" => Counter::from_arc(Arc::clone(&counters.coalesced)),
            _ => Counter::noop(),
        }
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

/// Sends one request through `svc` and returns its status.
async fn one(svc: Router, auth: HeaderValue) -> StatusCode {
    svc.oneshot(support::request(Some(&auth)))
        .await
        .expect("infallible")
        .status()
}

/// Requests per second through `svc` from `tasks` concurrent tasks for `duration`, each task
/// cycling through `tokens`.
async fn throughput(
    svc: &Router,
    tokens: &Arc<Vec<HeaderValue>>,
    tasks: usize,
    duration: Duration,
) -> f64 {
    let started = Instant::now();
    let deadline = started + duration;
    let mut set = tokio::task::JoinSet::new();
    for task in 0..tasks {
        let svc = svc.clone();
        let tokens = Arc::clone(tokens);
        set.spawn(async move {
            let mut done = 0_u64;
            let mut next = task;
            while Instant::now() < deadline {
                let status = one(svc.clone(), tokens[next % tokens.len()].clone()).await;
                assert_eq!(status, StatusCode::OK);
                next += tasks;
                done += 1;
            }
            done
        });
    }
    let mut total = 0;
    while let Some(done) = set.join_next().await {
        total += done.expect("a load task");
    }
    total as f64 / started.elapsed().as_secs_f64()
}

async fn as_latency(env: &support::Env, quick: bool) {
    const TOKENS: usize = 100;
    const TASKS: usize = 32;
    let latency = Duration::from_millis(5);
    let (rounds, duration) = if quick {
        (1, Duration::from_millis(200))
    } else {
        (3, Duration::from_secs(2))
    };
    let tokens: Arc<Vec<HeaderValue>> = Arc::new(
        (0..TOKENS)
            .map(|n| support::bearer(&env.rpt(1_000 + n)))
            .collect(),
    );
    let cached = support::app().layer(env.layer(support::long_cache(10_000)).await);
    let uncached = support::app().layer(env.layer(IntrospectionCache::disabled()).await);
    env.auth.set_latency(Endpoint::Introspection, latency);

    let before = env.auth.count(Endpoint::Introspection);
    let (mut on, mut off) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        off.push(throughput(&uncached, &tokens, TASKS, duration).await);
        let count_before_on = env.auth.count(Endpoint::Introspection);
        on.push(throughput(&cached, &tokens, TASKS, duration).await);
        let misses = env.auth.count(Endpoint::Introspection) - count_before_on;
        assert!(
            misses <= TOKENS as u64,
            "the cache introspected {misses} times for {TOKENS} RPTs"
        );
    }
    env.auth
        .set_latency(Endpoint::Introspection, Duration::ZERO);
    let calls = env.auth.count(Endpoint::Introspection) - before;

    let (on_med, off_med) = (
        support::median(&mut on.clone()),
        support::median(&mut off.clone()),
    );
    println!(
        "e2e/as-latency: {TOKENS} RPTs, {TASKS} concurrent tasks, AS introspection latency {latency:?}, \
         {rounds} interleaved rounds of {duration:?} (off, on; the first 'on' round starts cold)"
    );
    println!(
        "  cache off  {:>12.0} req/s  (rounds: {})",
        off_med,
        fmt_rounds(&off)
    );
    println!(
        "  cache on   {:>12.0} req/s  (rounds: {})",
        on_med,
        fmt_rounds(&on)
    );
    println!("  introspection calls during the bench: {calls}");
    let ratio = on_med / off_med;
    let verdict = if ratio >= 20.0 { "met" } else { "MISSED" };
    println!("  throughput ratio on/off {ratio:.1}×; target at least 20×: {verdict}");
}

fn fmt_rounds(v: &[f64]) -> String {
    v.iter()
        .map(|x| format!("{x:.0}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Sends `n` requests with `auth` at once (released together by a barrier); returns the wall
/// time from the release until the last answer.
async fn burst(svc: &Router, auth: &HeaderValue, n: usize) -> Duration {
    let barrier = Arc::new(Barrier::new(n + 1));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let (svc, auth, barrier) = (svc.clone(), auth.clone(), Arc::clone(&barrier));
        set.spawn(async move {
            barrier.wait().await;
            one(svc, auth).await
        });
    }
    barrier.wait().await;
    let started = Instant::now();
    while let Some(status) = set.join_next().await {
        assert_eq!(status.expect("a request task"), StatusCode::OK);
    }
    started.elapsed()
}

async fn coalesce(env: &support::Env, counters: &CacheCounters, latency: Duration, quick: bool) {
    const N: usize = 1_000;
    let iterations = if quick { 2 } else { 10 };
    let svc = support::app().layer(env.layer(support::long_cache(10_000)).await);
    env.auth.set_latency(Endpoint::Introspection, latency);
    let (mut cold, mut warm) = (Vec::new(), Vec::new());
    let mut breakdown = [0_u64; 3];
    for i in 0..iterations {
        let auth = support::bearer(&env.rpt(10_000 + i));
        let calls = env.auth.count(Endpoint::Introspection);
        let seen = counters.snapshot();
        cold.push(burst(&svc, &auth, N).await.as_secs_f64() * 1e3);
        let made = env.auth.count(Endpoint::Introspection) - calls;
        assert_eq!(
            made, 1,
            "{N} concurrent requests on one uncached RPT made {made} introspections"
        );
        let now = counters.snapshot();
        for k in 0..3 {
            breakdown[k] += now[k] - seen[k];
        }
        warm.push(burst(&svc, &auth, N).await.as_secs_f64() * 1e3);
        assert_eq!(
            env.auth.count(Endpoint::Introspection) - calls,
            1,
            "hits make no call"
        );
    }
    env.auth
        .set_latency(Endpoint::Introspection, Duration::ZERO);
    let (c, w) = (support::median(&mut cold), support::median(&mut warm));
    println!(
        "cold/coalesce (AS latency {latency:?}): {N} concurrent requests on one uncached RPT, {iterations} times: \
         exactly 1 introspection each time (asserted)"
    );
    println!(
        "  per burst on average: {:.1} misses, {:.1} coalesced, {:.1} hits (requests that arrived after the fill)",
        breakdown[1] as f64 / iterations as f64,
        breakdown[2] as f64 / iterations as f64,
        breakdown[0] as f64 / iterations as f64,
    );
    println!(
        "  median wall time from release to the last answer: cold burst {c:.2} ms; the same burst again, all hits, {w:.2} ms"
    );
}

fn main() {
    let quick = !support::bench_mode();
    let counters = Arc::new(CacheCounters::default());
    metrics::set_global_recorder(CountingRecorder(Arc::clone(&counters)))
        .unwrap_or_else(|_| panic!("no other metrics recorder is installed"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    rt.block_on(async {
        let env = support::start().await;
        if support::selected("e2e/as-latency") {
            let started = Instant::now();
            as_latency(&env, quick).await;
            println!("  (took {:.1} s)", started.elapsed().as_secs_f64());
        }
        if support::selected("cold/coalesce") {
            let started = Instant::now();
            coalesce(&env, &counters, Duration::ZERO, quick).await;
            coalesce(&env, &counters, Duration::from_millis(5), quick).await;
            println!("  (took {:.1} s)", started.elapsed().as_secs_f64());
        }
    });
}
