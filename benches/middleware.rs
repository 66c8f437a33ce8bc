//! In-process benchmarks of the request path.
//!
//! - `layer/hit`: one request with a cached RPT through an axum app protected by [`UmaLayer`],
//!   against the same app without the layer, in one criterion group. The layer is applied both
//!   ways axum users apply it: `layer` adds it with `Router::layer` (axum then boxes the layered
//!   route once more, a cost of its own that any layer pays: `noop` measures it with a layer
//!   that does nothing), and `wrapped` wraps the whole router (`UmaLayer::layer(&router)`, as
//!   `tower::ServiceBuilder` does). After criterion, an interleaved measurement (every variant in
//!   rotating order) prints the medians, the ratios and the overhead in nanoseconds per request
//!   of each over bare (target: at most 500 ns). `tenants` is `layer` behind a
//!   [`TenantLayer`] of two tenants, the request taken by the second one's path prefix (kept):
//!   the figure printed last is its cost over `layer` (target: at most 100 ns). Every variant is
//!   the router as `axum::serve` runs it: `Router::with_state(())` turns its handlers into
//!   routes once (called directly, a `Router` would do that per request, layers included).
//!   `minimal` is a reference, not a target: what a plain layer that caches bearer tokens does
//!   per request (read `Authorization`, hash the token with the same SHA-256, look it up in a
//!   locked map, clone what it finds into the request's extensions), added with
//!   `Router::layer` like `layer`. What `layer` costs over it is the UMA work: the route and its
//!   rule, the token's syntax, the decision, the method-override check and the outcome's record.
//! - `token/fingerprint`: the SHA-256 of a token, computed once per request.
//!
//! Run with `cargo bench --bench middleware`; `cargo bench --bench middleware -- layer/hit`
//! runs one group; `UMA_BENCH_ONLY=tenants:20000` runs 20,000 requests of one variant and
//! nothing else (for callgrind: see [`only`]). The interleaved figures are printed only when the `layer/hit` group runs
//! in bench mode.
//!
//! [`UmaLayer`]: tower_uma::UmaLayer
//! [`TenantLayer`]: tower_uma::tenant::TenantLayer
#![allow(clippy::print_stdout, reason = "a bench reports its figures on stdout")]

mod support;

use std::hint::black_box;
use std::time::{Duration, Instant};

use std::convert::Infallible;

use axum::Router;
use axum::body::Body;
use axum::response::Response;
use criterion::Criterion;
use http::{HeaderValue, Request, StatusCode};
use tokio::runtime::Runtime;
use tower::{Layer, Service, ServiceExt};
use tower_uma::Uma;
use tower_uma::tenant::{TenantLayer, TenantMatch};
use uma_test_as::Endpoint;

/// Everything the benches share: the runtime the AS runs on, the apps and a cached RPT.
struct Fixture {
    rt: Runtime,
    env: support::Env,
    bare: Router,
    noop: Router,
    layered: Router,
    wrapped: Uma<Router>,
    tenants: Router,
    minimal: Router,
    auth: HeaderValue,
}

/// How a variant is driven: a cloneable request service, as servers use them.
trait App:
    Service<Request<Body>, Response = Response, Error = Infallible, Future: Send> + Clone + Send
{
}

impl<S> App for S where
    S: Service<Request<Body>, Response = Response, Error = Infallible, Future: Send> + Clone + Send
{
}

impl Fixture {
    fn new() -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let (env, layered, wrapped, tenants, auth) = rt.block_on(async {
            let env = support::start().await;
            let cache = support::long_cache(10_000);
            let layer = env.layer(cache.clone()).await;
            let auth = support::bearer(&env.rpt(0));
            let wrapped = layer.layer(support::app().with_state(()));
            let layered = support::app().layer(layer).with_state(());
            // The same layer as the second of two tenants, sharing the cache (same AS and
            // client: same entries).
            let issuer = env.auth.issuer();
            let tenant = |cache| support::builder_at(&issuer, &env.resource_id, cache);
            let tenant_layer = TenantLayer::builder()
                .tenant(
                    "first",
                    TenantMatch::default().path_prefix("/albums"),
                    tenant(cache.clone()),
                )
                .tenant(
                    "second",
                    TenantMatch::default().path_prefix("/invoices"),
                    tenant(cache),
                )
                .build()
                .await
                .expect("the tenants build");
            let tenants = support::app().layer(tenant_layer).with_state(());
            // Fill the cache (shared by all) and check that the request is allowed.
            assert_eq!(Self::one(&layered, &auth).await, StatusCode::OK);
            assert_eq!(Self::one(&wrapped, &auth).await, StatusCode::OK);
            assert_eq!(Self::one(&tenants, &auth).await, StatusCode::OK);
            assert_eq!(env.auth.count(Endpoint::Introspection), 1);
            (env, layered, wrapped, tenants, auth)
        });
        let minimal = support::app()
            .layer(minimal::MinimalLayer::holding(&auth))
            .with_state(());
        assert_eq!(rt.block_on(Self::one(&minimal, &auth)), StatusCode::OK);
        Self {
            rt,
            env,
            bare: support::app().with_state(()),
            noop: support::app()
                .layer(tower::layer::layer_fn(|svc| svc))
                .with_state(()),
            layered,
            wrapped,
            tenants,
            minimal,
            auth,
        }
    }

    /// One request through `svc`, the way a server drives it: clone, ready, call.
    async fn one<S: App>(svc: &S, auth: &HeaderValue) -> StatusCode {
        svc.clone()
            .oneshot(support::request(Some(auth)))
            .await
            .expect("infallible")
            .status()
    }

    /// Nanoseconds per request over `n` requests through `svc`.
    fn time<S: App>(&self, svc: &S, n: u32) -> f64 {
        self.rt.block_on(async {
            let started = Instant::now();
            for _ in 0..n {
                black_box(Self::one(svc, &self.auth).await);
            }
            started.elapsed().as_secs_f64() * 1e9 / f64::from(n)
        })
    }

    /// Nanoseconds per request over `n` requests through variant `which` (see [`VARIANTS`]).
    fn time_variant(&self, which: usize, n: u32) -> f64 {
        match which {
            0 => self.time(&self.bare, n),
            1 => self.time(&self.noop, n),
            2 => self.time(&self.layered, n),
            3 => self.time(&self.wrapped, n),
            4 => self.time(&self.tenants, n),
            _ => self.time(&self.minimal, n),
        }
    }
}

/// The variants, in the order [`Fixture::time_variant`] numbers them.
const VARIANTS: [&str; 6] = ["bare", "noop", "layer", "wrapped", "tenants", "minimal"];

/// The variants [`interleaved`] holds to the 500 ns target (the others are references).
const TARGETED: [&str; 3] = ["layer", "wrapped", "tenants"];

fn layer_hit(c: &mut Criterion, fx: &Fixture) {
    let mut group = c.benchmark_group("layer/hit");
    group
        .sample_size(50)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    group.bench_function("bare", |b| {
        b.to_async(&fx.rt).iter(|| Fixture::one(&fx.bare, &fx.auth));
    });
    group.bench_function("noop", |b| {
        b.to_async(&fx.rt).iter(|| Fixture::one(&fx.noop, &fx.auth));
    });
    group.bench_function("layer", |b| {
        b.to_async(&fx.rt)
            .iter(|| Fixture::one(&fx.layered, &fx.auth));
    });
    group.bench_function("wrapped", |b| {
        b.to_async(&fx.rt)
            .iter(|| Fixture::one(&fx.wrapped, &fx.auth));
    });
    group.bench_function("tenants", |b| {
        b.to_async(&fx.rt)
            .iter(|| Fixture::one(&fx.tenants, &fx.auth));
    });
    group.bench_function("minimal", |b| {
        b.to_async(&fx.rt)
            .iter(|| Fixture::one(&fx.minimal, &fx.auth));
    });
    group.finish();
}

fn fingerprint(c: &mut Criterion) {
    let mut group = c.benchmark_group("token/fingerprint");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    let rpt = "rpt-Zk31-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    group.bench_function("sha256", |b| {
        b.iter(|| tower_uma::token::Fingerprint::of(black_box(rpt).as_bytes()))
    });
    group.finish();
}

/// Interleaved rounds of `per_round` requests, rotating which variant goes first; prints the
/// medians of the per-round figures, and for each variant its ratio to bare and overhead.
fn interleaved(fx: &Fixture, rounds: usize, per_round: u32) {
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); VARIANTS.len()];
    let mut diffs: Vec<Vec<f64>> = vec![Vec::new(); VARIANTS.len()];
    let mut tenant_diffs: Vec<f64> = Vec::new();
    for round in 0..rounds {
        let mut this = [0.0; VARIANTS.len()];
        for k in 0..VARIANTS.len() {
            let which = (round + k) % VARIANTS.len();
            this[which] = fx.time_variant(which, per_round);
        }
        for (which, t) in this.iter().enumerate() {
            times[which].push(*t);
            diffs[which].push(t - this[0]);
        }
        tenant_diffs.push(this[4] - this[2]);
    }
    let medians: Vec<f64> = times.iter_mut().map(|t| support::median(t)).collect();
    let b = medians[0];
    println!();
    println!(
        "layer/hit interleaved: {rounds} rounds of {per_round} requests each, medians per request"
    );
    println!("  bare     {b:>9.1} ns");
    for which in 1..VARIANTS.len() {
        let (name, m) = (VARIANTS[which], medians[which]);
        let d = support::median(&mut diffs[which]);
        println!(
            "  {name:<8} {m:>9.1} ns: throughput ratio {name}/bare {:.3}, overhead {:.1} ns (median of per-round differences {d:.1} ns)",
            b / m,
            m - b
        );
    }
    for which in (0..VARIANTS.len()).filter(|w| TARGETED.contains(&VARIANTS[*w])) {
        let overhead = medians[which] - b;
        let verdict = if overhead <= 500.0 { "MET" } else { "NOT MET" };
        println!(
            "  target: the layer adds at most 500 ns per request ({}): {verdict}",
            VARIANTS[which]
        );
    }
    let over_one = support::median(&mut tenant_diffs);
    let verdict = if over_one <= 100.0 { "met" } else { "MISSED" };
    println!(
        "  tenants over layer: {over_one:.1} ns per request (median of per-round differences); \
         target at most 100 ns: {verdict}"
    );
}

/// `UMA_BENCH_ONLY=VARIANT:N` (a name of [`VARIANTS`]): N requests through that variant and
/// nothing else, for instruction counts under callgrind, where the difference between two runs
/// with different N, divided by the difference of N, is the count per request (the set-up
/// cancels out). The variant's time per request is printed on stderr.
fn only() -> Option<(usize, u32)> {
    let spec = std::env::var("UMA_BENCH_ONLY").ok()?;
    let (name, n) = spec.split_once(':')?;
    let which = VARIANTS.iter().position(|v| *v == name)?;
    Some((which, n.parse().ok()?))
}

fn main() {
    let fx = Fixture::new();
    if let Some((which, n)) = only() {
        let ns = black_box(fx.time_variant(which, n));
        eprintln!("{} {ns:.1} ns per request", VARIANTS[which]);
        return;
    }
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

/// The reference of `minimal`: what a plain layer that caches bearer tokens does per request.
/// No route, no decision, no refusal but a bare `401`: not a usable authorisation layer.
mod minimal {
    use std::collections::HashMap;
    use std::sync::{Arc, PoisonError, RwLock};
    use std::task::{Context, Poll};

    use futures_util::future::Either;
    use http::{HeaderValue, Request, Response, StatusCode, header::AUTHORIZATION};
    use tower::{Layer, Service};
    use tower_uma::token::Fingerprint;

    /// What a token was found to be, by its fingerprint.
    type Known = Arc<RwLock<HashMap<Fingerprint, Arc<str>>>>;

    /// Adds [`Minimal`].
    #[derive(Clone)]
    pub(crate) struct MinimalLayer(Known);

    impl MinimalLayer {
        /// A layer that knows the token of `authorization` (`Bearer` and the token).
        pub(crate) fn holding(authorization: &HeaderValue) -> Self {
            let token = bearer(authorization).expect("a Bearer value");
            let known = HashMap::from([(Fingerprint::of(token), Arc::from("subject"))]);
            Self(Arc::new(RwLock::new(known)))
        }
    }

    impl<S> Layer<S> for MinimalLayer {
        type Service = Minimal<S>;

        fn layer(&self, inner: S) -> Minimal<S> {
            Minimal {
                inner,
                known: Arc::clone(&self.0),
            }
        }
    }

    /// Passes a request whose bearer token it knows, with what it knows of it as an
    /// extension; answers `401` otherwise.
    #[derive(Clone)]
    pub(crate) struct Minimal<S> {
        inner: S,
        known: Known,
    }

    /// The token of an `Authorization` value in the common spelling.
    fn bearer(value: &HeaderValue) -> Option<&[u8]> {
        value.as_bytes().strip_prefix(b"Bearer ")
    }

    impl<S, B, R: Default> Service<Request<B>> for Minimal<S>
    where
        S: Service<Request<B>, Response = Response<R>>,
    {
        type Response = Response<R>;
        type Error = S::Error;
        type Future = Either<S::Future, std::future::Ready<Result<Response<R>, S::Error>>>;

        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
            self.inner.poll_ready(cx)
        }

        fn call(&mut self, mut req: Request<B>) -> Self::Future {
            let found = req
                .headers()
                .get(AUTHORIZATION)
                .and_then(bearer)
                .map(Fingerprint::of)
                .and_then(|token| {
                    let known = self.known.read().unwrap_or_else(PoisonError::into_inner);
                    known.get(&token).cloned()
                });
            match found {
                Some(subject) => {
                    req.extensions_mut().insert(subject);
                    Either::Left(self.inner.call(req))
                }
                None => {
                    let mut refused = Response::new(R::default());
                    *refused.status_mut() = StatusCode::UNAUTHORIZED;
                    Either::Right(std::future::ready(Ok(refused)))
                }
            }
        }
    }
}
