//! In-process benchmarks of the request path.
//!
//! - `layer/hit`: one request through an axum app wrapped in [`UmaLayer`] whose RPT is cached,
//!   against the same app without the layer, in one criterion group. After criterion, an
//!   interleaved measurement (bare, layer, layer, bare, …) prints both medians, their ratio and
//!   the overhead in nanoseconds per request (target: at most 1 µs).
//! - `token/fingerprint`: the SHA-256 of a token, computed once per request.
//!
//! Run with `cargo bench --bench middleware`; `cargo bench --bench middleware -- layer/hit`
//! runs one group. The interleaved figures are printed only when the `layer/hit` group runs
//! in bench mode.
//!
//! [`UmaLayer`]: tower_uma::UmaLayer
#![allow(clippy::print_stdout, reason = "a bench reports its figures on stdout")]

mod support;

use std::hint::black_box;
use std::time::{Duration, Instant};

use axum::Router;
use criterion::Criterion;
use http::{HeaderValue, StatusCode};
use tokio::runtime::Runtime;
use tower::ServiceExt;
use uma_test_as::Endpoint;

/// Everything the benches share: the runtime the AS runs on, both apps and a cached RPT.
struct Fixture {
    rt: Runtime,
    env: support::Env,
    bare: Router,
    layered: Router,
    auth: HeaderValue,
}

impl Fixture {
    fn new() -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let (env, layered, auth) = rt.block_on(async {
            let env = support::start().await;
            let layer = env.layer(support::long_cache(10_000)).await;
            let auth = support::bearer(&env.rpt(0));
            let layered = support::app().layer(layer);
            // Fill the cache and check that the request is allowed.
            let resp = layered
                .clone()
                .oneshot(support::request(Some(&auth)))
                .await
                .expect("infallible");
            assert_eq!(resp.status(), StatusCode::OK, "the RPT is accepted");
            assert_eq!(env.auth.count(Endpoint::Introspection), 1);
            (env, layered, auth)
        });
        Self {
            rt,
            env,
            bare: support::app(),
            layered,
            auth,
        }
    }

    /// One request through `svc`, the way a server drives it: clone, ready, call.
    async fn one(svc: &Router, auth: &HeaderValue) -> StatusCode {
        svc.clone()
            .oneshot(support::request(Some(auth)))
            .await
            .expect("infallible")
            .status()
    }

    /// Nanoseconds per request over `n` requests through `svc`.
    fn time(&self, svc: &Router, n: u32) -> f64 {
        self.rt.block_on(async {
            let started = Instant::now();
            for _ in 0..n {
                black_box(Self::one(svc, &self.auth).await);
            }
            started.elapsed().as_secs_f64() * 1e9 / f64::from(n)
        })
    }
}

fn layer_hit(c: &mut Criterion, fx: &Fixture) {
    let mut group = c.benchmark_group("layer/hit");
    group
        .sample_size(50)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for (name, svc) in [("bare", &fx.bare), ("layer", &fx.layered)] {
        group.bench_function(name, |b| {
            b.to_async(&fx.rt).iter(|| Fixture::one(svc, &fx.auth));
        });
    }
    group.finish();
}

fn fingerprint(c: &mut Criterion) {
    let mut group = c.benchmark_group("token/fingerprint");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    let rpt = tower_uma::Rpt::new("rpt-Zk31-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    group.bench_function("sha256", |b| b.iter(|| black_box(&rpt).fingerprint()));
    group.finish();
}

/// Interleaved rounds of `per_round` requests, alternating which app goes first; prints the
/// medians of the per-round figures, their ratio and the overhead.
fn interleaved(fx: &Fixture, rounds: usize, per_round: u32) {
    let (mut bare, mut layer, mut diff) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let (b, l) = if round % 2 == 0 {
            let b = fx.time(&fx.bare, per_round);
            (b, fx.time(&fx.layered, per_round))
        } else {
            let l = fx.time(&fx.layered, per_round);
            (fx.time(&fx.bare, per_round), l)
        };
        bare.push(b);
        layer.push(l);
        diff.push(l - b);
    }
    let (b, l, d) = (
        support::median(&mut bare),
        support::median(&mut layer),
        support::median(&mut diff),
    );
    println!();
    println!(
        "layer/hit interleaved: {rounds} rounds of {per_round} requests each, medians per request"
    );
    println!("  bare   {b:>9.1} ns");
    println!("  layer  {l:>9.1} ns");
    println!(
        "  throughput ratio layer/bare {:.3} (time ratio {:.3})",
        b / l,
        l / b
    );
    println!(
        "  overhead {:.1} ns (median layer − median bare); median of per-round differences {d:.1} ns",
        l - b
    );
    let verdict = if l - b <= 1_000.0 { "met" } else { "MISSED" };
    println!("  target: the layer adds at most 1,000 ns per request: {verdict}");
}

fn main() {
    let fx = Fixture::new();
    let mut c = Criterion::default().configure_from_args();
    layer_hit(&mut c, &fx);
    fingerprint(&mut c);
    c.final_summary();

    if support::bench_mode() && support::selected("layer/hit") {
        interleaved(&fx, 21, 50_000);
    }
    // Every measured request was a cache hit: the AS saw the warm-up's introspection only.
    let introspections = fx.env.auth.count(Endpoint::Introspection);
    assert_eq!(
        introspections, 1,
        "layer/hit must not introspect after the warm-up"
    );
}
