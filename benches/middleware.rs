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
//!   `ideal`, a reference too, does that UMA work for this one request and nothing else (one
//!   hard-wired route, no table, no modes, no record beyond two counters): what `layer` costs
//!   over it is what being a general layer costs.
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
    ideal: Router,
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
        let minimal = support::app().layer(minimal::holding(&auth)).with_state(());
        assert_eq!(rt.block_on(Self::one(&minimal, &auth)), StatusCode::OK);
        let token = auth.to_str().expect("ASCII")["Bearer ".len()..].to_owned();
        let ideal = support::app()
            .layer(ideal::holding(&token, &env.resource_id))
            .with_state(());
        assert_eq!(rt.block_on(Self::one(&ideal, &auth)), StatusCode::OK);
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
            ideal,
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

    /// What `run` does with variant `which` (see [`VARIANTS`]).
    fn with_variant<R: Run>(&self, which: usize, run: R) -> R::Output {
        match which {
            0 => run.run(self, &self.bare),
            1 => run.run(self, &self.noop),
            2 => run.run(self, &self.layered),
            3 => run.run(self, &self.wrapped),
            4 => run.run(self, &self.tenants),
            5 => run.run(self, &self.minimal),
            _ => run.run(self, &self.ideal),
        }
    }

    /// Nanoseconds per request over `n` requests through variant `which` (see [`VARIANTS`]).
    fn time_variant(&self, which: usize, n: u32) -> f64 {
        self.with_variant(which, Timed(n))
    }
}

/// Something done with one variant, whatever its type.
trait Run {
    type Output;

    fn run<S: App>(self, fx: &Fixture, svc: &S) -> Self::Output;
}

/// Times `n` requests ([`Fixture::time`]).
struct Timed(u32);

impl Run for Timed {
    type Output = f64;

    fn run<S: App>(self, fx: &Fixture, svc: &S) -> f64 {
        fx.time(svc, self.0)
    }
}

/// Measures one request under criterion.
struct Benched<'b, 'c>(&'b mut criterion::Bencher<'c>);

impl Run for Benched<'_, '_> {
    type Output = ();

    fn run<S: App>(self, fx: &Fixture, svc: &S) {
        self.0.to_async(&fx.rt).iter(|| Fixture::one(svc, &fx.auth));
    }
}

/// The variants, in the order [`Fixture::with_variant`] numbers them.
const VARIANTS: [&str; 7] = [
    "bare", "noop", "layer", "wrapped", "tenants", "minimal", "ideal",
];

/// The variants [`interleaved`] holds to the 500 ns target (the others are references).
const TARGETED: [&str; 3] = ["layer", "wrapped", "tenants"];

fn layer_hit(c: &mut Criterion, fx: &Fixture) {
    let mut group = c.benchmark_group("layer/hit");
    group
        .sample_size(50)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for (which, name) in VARIANTS.iter().enumerate() {
        group.bench_function(*name, |b| fx.with_variant(which, Benched(b)));
    }
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

/// The shell of the reference layers (`minimal`, `ideal`): a layer added with `Router::layer`
/// that passes a request its [`Check`](reference::Check) accepts, with the extension the check
/// gives, and answers `401` otherwise. Not a usable authorisation layer: a refusal says nothing.
mod reference {
    use std::sync::Arc;
    use std::task::{Context, Poll};

    use futures_util::future::Either;
    use http::{Request, Response, StatusCode};
    use tower::{Layer, Service};

    /// What a reference layer does per request.
    pub(crate) trait Check: Send + Sync + 'static {
        /// What a request that passes carries.
        type Extension: Clone + Send + Sync + 'static;

        /// The extension of a request that passes; `None` refuses it.
        fn check<B>(&self, req: &Request<B>) -> Option<Self::Extension>;
    }

    /// Adds [`Reference`] with the check `C`.
    pub(crate) struct ReferenceLayer<C>(Arc<C>);

    impl<C> ReferenceLayer<C> {
        pub(crate) fn new(check: C) -> Self {
            Self(Arc::new(check))
        }
    }

    impl<C> Clone for ReferenceLayer<C> {
        fn clone(&self) -> Self {
            Self(Arc::clone(&self.0))
        }
    }

    impl<S, C> Layer<S> for ReferenceLayer<C> {
        type Service = Reference<S, C>;

        fn layer(&self, inner: S) -> Reference<S, C> {
            Reference {
                inner,
                check: Arc::clone(&self.0),
            }
        }
    }

    /// The service of [`ReferenceLayer`].
    pub(crate) struct Reference<S, C> {
        inner: S,
        check: Arc<C>,
    }

    impl<S: Clone, C> Clone for Reference<S, C> {
        fn clone(&self) -> Self {
            Self {
                inner: self.inner.clone(),
                check: Arc::clone(&self.check),
            }
        }
    }

    impl<S, C, B, R: Default> Service<Request<B>> for Reference<S, C>
    where
        S: Service<Request<B>, Response = Response<R>>,
        C: Check,
    {
        type Response = Response<R>;
        type Error = S::Error;
        type Future = Either<S::Future, std::future::Ready<Result<Response<R>, S::Error>>>;

        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
            self.inner.poll_ready(cx)
        }

        fn call(&mut self, mut req: Request<B>) -> Self::Future {
            match self.check.check(&req) {
                Some(extension) => {
                    req.extensions_mut().insert(extension);
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

/// The reference of `minimal`: what a plain layer that caches bearer tokens does per request.
/// No route, no decision.
mod minimal {
    use std::collections::HashMap;
    use std::sync::{Arc, PoisonError, RwLock};

    use http::{HeaderValue, Request, header::AUTHORIZATION};
    use tower_uma::token::Fingerprint;

    use super::reference::{Check, ReferenceLayer};

    /// Knows one token by its fingerprint; passes requests that bear it, with what it knows of
    /// it as an extension.
    pub(crate) struct Minimal {
        known: RwLock<HashMap<Fingerprint, Arc<str>>>,
    }

    /// The layer that knows the token of `authorization` (`Bearer` and the token).
    pub(crate) fn holding(authorization: &HeaderValue) -> ReferenceLayer<Minimal> {
        let token = bearer(authorization).expect("a Bearer value");
        let known = HashMap::from([(Fingerprint::of(token), Arc::from("subject"))]);
        ReferenceLayer::new(Minimal {
            known: RwLock::new(known),
        })
    }

    /// The token of an `Authorization` value in the common spelling.
    fn bearer(value: &HeaderValue) -> Option<&[u8]> {
        value.as_bytes().strip_prefix(b"Bearer ")
    }

    impl Check for Minimal {
        type Extension = Arc<str>;

        fn check<B>(&self, req: &Request<B>) -> Option<Arc<str>> {
            let token = Fingerprint::of(bearer(req.headers().get(AUTHORIZATION)?)?);
            let known = self.known.read().unwrap_or_else(PoisonError::into_inner);
            known.get(&token).cloned()
        }
    }
}

/// The reference of `ideal`: the UMA work of this one request, written for it alone. It makes
/// the checks the layer's hit path makes on `GET /invoices/{id}` with a cached RPT, in the
/// simplest form that serves this request, and nothing a general layer needs besides: it
/// refuses a method-override header (the three names, a `-` also spelled `_` or `.`; the layer
/// takes any byte but a letter or digit) or a raw `_method` query key (the layer also decodes
/// keys and takes header names as keys); takes the
/// path only in the layer's plain bytes, without empty or dot segments, and matches it to its
/// one route; reads one `Authorization` header with `Bearer` and a `b64token` of at most
/// `MAX_TOKEN_LEN` bytes; looks the token's SHA-256 up (a map keyed by a seeded hash of eight
/// of its bytes, as the layer's table is) with a freshness check on the same coarse clock and
/// counts the hit; grants when the answer is active and in its time window
/// and a permission of the route's resource, in its own window, has `read` (leeway included,
/// zero as the layer's default); inserts a principal (the shared answer, the granted
/// permissions as bits, the fingerprint); counts the decision and opens a span and an event at
/// DEBUG (disabled, as in the bench). It has no route table, no rules per method, no modes, no
/// pushed claims, no more than 64 permissions, no record beyond the counters, and refuses
/// anything else with a bare `401`. What `layer` costs over it is what being a general layer
/// costs.
mod ideal {
    use std::collections::HashMap;
    use std::sync::{Arc, PoisonError, RwLock};

    use http::{Method, Request, header::AUTHORIZATION};
    use tower_uma::clock::{Clock, SystemClock};
    use tower_uma::token::Fingerprint;

    use super::reference::{Check, ReferenceLayer};

    /// A permission of a cached answer.
    struct Permission {
        resource_id: String,
        scopes: Vec<String>,
        exp: Option<i64>,
        nbf: Option<i64>,
    }

    /// A cached answer: what the AS said of a token.
    pub(crate) struct Answer {
        active: bool,
        exp: Option<i64>,
        nbf: Option<i64>,
        permissions: Vec<Permission>,
    }

    /// What a request that passes carries.
    #[derive(Clone)]
    #[allow(dead_code, reason = "a handler would read it")]
    pub(crate) struct Principal {
        answer: Arc<Answer>,
        granted: u64,
        fingerprint: Fingerprint,
    }

    /// A keyed hash of the first eight bytes of a digest (its length prefix first): a folded
    /// multiply with a per-process random seed, as the layer's cache table hashes its keys.
    /// The digest is uniform, so eight of its bytes and a secret seed spread the keys.
    #[derive(Clone)]
    struct DigestHash(u64);

    impl DigestHash {
        fn random() -> Self {
            use std::hash::{BuildHasher as _, Hasher as _};
            let seed = std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish();
            Self(seed | 1)
        }
    }

    struct DigestHasher(u64);

    impl std::hash::BuildHasher for DigestHash {
        type Hasher = DigestHasher;

        fn build_hasher(&self) -> DigestHasher {
            DigestHasher(self.0)
        }
    }

    impl std::hash::Hasher for DigestHasher {
        fn write(&mut self, bytes: &[u8]) {
            let mut word = [0_u8; 8];
            let n = bytes.len().min(8);
            word[..n].copy_from_slice(&bytes[..n]);
            let product = u128::from(self.0 ^ u64::from_le_bytes(word)) * 0x9E37_79B9_7F4A_7C15;
            #[allow(clippy::cast_possible_truncation, reason = "the low and high halves")]
            let folded = (product as u64) ^ ((product >> 64) as u64);
            self.0 = folded;
        }

        fn finish(&self) -> u64 {
            self.0
        }
    }

    /// A cached answer and the second it stays fresh until.
    struct Entry {
        fresh_until: i64,
        answer: Arc<Answer>,
    }

    /// The check; see the module.
    pub(crate) struct Ideal {
        known: RwLock<HashMap<Fingerprint, Entry, DigestHash>>,
        resource_id: String,
        clock: SystemClock,
        /// Seconds of leeway in the time checks (the layer's default: none).
        leeway: i64,
        hits: metrics::Counter,
        decisions: metrics::Counter,
    }

    /// The layer guarding `/invoices/{id}` (resource `resource_id`, `GET` needs `read`) that
    /// knows `token` as the bench's RPT: the invoice resource with `read` and `write`, and
    /// another with `view`.
    pub(crate) fn holding(token: &str, resource_id: &str) -> ReferenceLayer<Ideal> {
        let clock = SystemClock::default();
        let permission = |id: &str, scopes: &[&str]| Permission {
            resource_id: id.to_owned(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            exp: None,
            nbf: None,
        };
        let answer = Answer {
            active: true,
            exp: Some(clock.now_unix() + 7_200),
            nbf: None,
            permissions: vec![
                permission(resource_id, &["read", "write"]),
                permission("album-0", &["view"]),
            ],
        };
        let entry = Entry {
            fresh_until: clock.now_unix() + 3_600,
            answer: Arc::new(answer),
        };
        ReferenceLayer::new(Ideal {
            known: RwLock::new({
                let mut known = HashMap::with_hasher(DigestHash::random());
                known.insert(Fingerprint::of(token.as_bytes()), entry);
                known
            }),
            resource_id: resource_id.to_owned(),
            clock,
            leeway: 0,
            hits: metrics::counter!("ideal_cache_hits_total"),
            decisions: metrics::counter!("ideal_decisions_total", "outcome" => "allowed"),
        })
    }

    /// Whether `b` is a `b64token` body byte (RFC 6750 §2.1).
    const fn is_b64token(b: u8) -> bool {
        b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
    }

    /// The `b64token` bytes, as a table.
    static B64TOKEN: [bool; 256] = {
        let mut t = [false; 256];
        let mut i = 0;
        while i < 256 {
            t[i] = is_b64token(i as u8);
            i += 1;
        }
        t
    };

    /// Whether a path byte is plain as the layer's quick way takes it: unreserved (RFC 3986
    /// §2.3), a sub-delim but `;`, `:`, `@`, or `/`.
    const fn is_plain(b: u8) -> bool {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b'='
                    | b':'
                    | b'@'
                    | b'/'
            )
    }

    /// The id segment of a request to `/invoices/{id}` in plain bytes, if it is one.
    fn route(path: &str) -> Option<&str> {
        if !path.bytes().all(is_plain) {
            return None;
        }
        let id = path.strip_prefix("/invoices/")?;
        (!id.is_empty() && !id.contains('/') && id != "." && id != "..").then_some(id)
    }

    /// Whether `name` is an override header's, a `-` possibly spelled `_` or `.`.
    fn is_override_name(name: &str) -> bool {
        [
            "x-http-method-override",
            "x-http-method",
            "x-method-override",
        ]
        .iter()
        .any(|canonical| {
            canonical.len() == name.len()
                && canonical
                    .bytes()
                    .zip(name.bytes())
                    .all(|(c, n)| c == n || (c == b'-' && matches!(n, b'_' | b'.')))
        })
    }

    /// Whether the request carries a method-override signal: a header, or a `_method` key in
    /// the query (not decoded: this request has no query).
    fn overridden<B>(req: &Request<B>) -> bool {
        req.headers()
            .keys()
            .any(|name| is_override_name(name.as_str()))
            || req.uri().query().is_some_and(|q| {
                q.split(['&', ';'])
                    .any(|pair| pair.split('=').next() == Some("_method"))
            })
    }

    /// The token of the one `Authorization` header, `Bearer` and a `b64token`.
    fn token<B>(req: &Request<B>) -> Option<&[u8]> {
        let mut values = req.headers().get_all(AUTHORIZATION).iter();
        let value = values.next()?;
        if values.next().is_some() {
            return None;
        }
        let (scheme, token) = value.as_bytes().split_at_checked(7)?;
        let ok = scheme.eq_ignore_ascii_case(b"bearer ")
            && !token.is_empty()
            && token.len() <= tower_uma::token::MAX_TOKEN_LEN
            && token.iter().all(|&b| B64TOKEN[usize::from(b)]);
        ok.then_some(token)
    }

    impl Ideal {
        /// The principal of a request the cached answer grants, if it does.
        fn decide<B>(&self, req: &Request<B>) -> Option<Principal> {
            if overridden(req) || req.method() != Method::GET {
                return None;
            }
            let _id = route(req.uri().path())?;
            let fingerprint = Fingerprint::of(token(req)?);
            let now = self.clock.now_unix();
            let answer = {
                let known = self.known.read().unwrap_or_else(PoisonError::into_inner);
                let entry = known.get(&fingerprint)?;
                (now < entry.fresh_until).then(|| Arc::clone(&entry.answer))?
            };
            self.hits.increment(1);
            let leeway = self.leeway;
            let in_window = |exp: Option<i64>, nbf: Option<i64>| {
                exp.is_none_or(|exp| now < exp.saturating_add(leeway))
                    && nbf.is_none_or(|nbf| now.saturating_add(leeway) >= nbf)
            };
            if !answer.active || !in_window(answer.exp, answer.nbf) {
                return None;
            }
            let mut granted = 0u64;
            for (i, p) in answer.permissions.iter().enumerate().take(64) {
                if p.resource_id == self.resource_id
                    && in_window(p.exp, p.nbf)
                    && p.scopes.iter().any(|s| s == "read")
                {
                    granted |= 1 << i;
                }
            }
            (granted != 0).then_some(Principal {
                answer,
                granted,
                fingerprint,
            })
        }
    }

    impl Check for Ideal {
        type Extension = Principal;

        fn check<B>(&self, req: &Request<B>) -> Option<Principal> {
            let span = tracing::debug_span!("ideal", path = req.uri().path());
            let principal = self.decide(req)?;
            self.decisions.increment(1);
            tracing::debug!(parent: &span, outcome = "allowed", "decided");
            Some(principal)
        }
    }
}
