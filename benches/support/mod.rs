//! Shared set-up of the benches: one in-process `uma-test-as`, a resource, RPTs, and a small
//! axum app with and without the layer.
#![allow(
    dead_code,
    reason = "each bench target uses a different part of this module"
)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{HeaderValue, Method, Request, header::AUTHORIZATION};
use tower_uma::{IntrospectionCache, ResourceMap, Route, UmaLayer, UmaLayerBuilder};
use uma_test_as::{AuthServer, ResourceDescription, RptPermission, RptSpec, TestAs};

/// The resource server's client at the AS.
pub(crate) const RS_ID: &str = "bench-api";
/// Its secret.
pub(crate) const RS_SECRET: &str = "bench-api-secret-41c9";
/// The protected path every bench request uses.
pub(crate) const PATH: &str = "/invoices/42";

/// A running AS with the `invoice` resource (scopes `read`, `write`) registered.
pub(crate) struct Env {
    pub(crate) auth: TestAs,
    pub(crate) resource_id: String,
}

/// Starts the AS and registers the resource.
pub(crate) async fn start() -> Env {
    let auth = AuthServer::builder()
        .client(RS_ID, RS_SECRET)
        .spawn()
        .await
        .expect("the test AS starts");
    let resource_id = auth.register_resource(
        "alice",
        ResourceDescription {
            name: Some("invoice".into()),
            resource_scopes: vec!["read".into(), "write".into()],
            ..ResourceDescription::default()
        },
    );
    Env { auth, resource_id }
}

/// Wall-clock seconds since the epoch.
pub(crate) fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A layer protecting `GET /invoices/{id}` (scope `read` on `resource_id`) with `cache`, for
/// the AS at `issuer`.
pub(crate) async fn layer_at(
    issuer: &str,
    resource_id: &str,
    cache: IntrospectionCache,
) -> UmaLayer {
    builder_at(issuer, resource_id, cache)
        .build()
        .await
        .expect("the layer builds")
}

/// The builder of [`layer_at`]'s layer.
pub(crate) fn builder_at(
    issuer: &str,
    resource_id: &str,
    cache: IntrospectionCache,
) -> UmaLayerBuilder {
    UmaLayer::discover(issuer, RS_ID, RS_SECRET)
        .insecure_allow_http()
        .realm("bench")
        .resources(
            ResourceMap::new().route(
                Route::new("/invoices/{id}")
                    .resource_id(resource_id)
                    .scopes(Method::GET, ["read"]),
            ),
        )
        .cache(cache)
}

impl Env {
    /// A layer protecting `GET /invoices/{id}` (scope `read`) with `cache`.
    pub(crate) async fn layer(&self, cache: IntrospectionCache) -> UmaLayer {
        layer_at(&self.auth.issuer(), &self.resource_id, cache).await
    }

    /// Mints an active RPT valid for two hours with two permissions: the invoice resource
    /// (`read`, `write`) and another resource (`view`). `n` makes the other resource's id, and
    /// so the introspection answer, distinct per token.
    pub(crate) fn rpt(&self, n: usize) -> String {
        let now = now();
        self.auth.mint_rpt(RptSpec {
            sub: Some("bob".into()),
            client_id: Some("bench-app".into()),
            exp: Some(now + 7_200),
            iat: Some(now),
            permissions: vec![
                RptPermission::new(&self.resource_id, ["read", "write"]),
                RptPermission::new(format!("album-{n}"), ["view"]),
            ],
            ..RptSpec::default()
        })
    }
}

/// A cache that keeps entries for the length of a bench: `max_entries` entries, two hours.
pub(crate) fn long_cache(max_entries: u64) -> IntrospectionCache {
    IntrospectionCache::builder()
        .max_entries(max_entries)
        .max_ttl(Duration::from_secs(3_600))
        .build()
}

/// The protected app: `GET /invoices/{id}` answers a small text body.
pub(crate) fn app() -> Router {
    Router::new().route("/invoices/{id}", get(|| async { "Hello, World!" }))
}

/// The `Authorization` value carrying `token`.
pub(crate) fn bearer(token: &str) -> HeaderValue {
    HeaderValue::try_from(format!("Bearer {token}")).expect("a token is a valid header value")
}

/// `GET /invoices/42`, with the `Authorization` value when given (cloning a `HeaderValue` is
/// a reference-count increment, so building requests costs the same with and without one).
pub(crate) fn request(authorization: Option<&HeaderValue>) -> Request<Body> {
    let mut req = Request::builder().method(Method::GET).uri(PATH);
    if let Some(value) = authorization {
        req = req.header(AUTHORIZATION, value.clone());
    }
    req.body(Body::empty()).expect("a valid request")
}

/// The median of some samples (sorted in place).
pub(crate) fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    let n = samples.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        samples[n / 2]
    } else {
        f64::midpoint(samples[n / 2 - 1], samples[n / 2])
    }
}

/// Whether a bench of a `harness = false` target should run: `--bench` was passed (as
/// `cargo bench` does) and no name filter was given, or one matches `name` as a substring,
/// as criterion filters. Without `--bench` the target runs as a smoke test.
pub(crate) fn selected(name: &str) -> bool {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()))
}

/// Whether the target runs in bench mode (`cargo bench` passes `--bench`); otherwise it is a
/// smoke test (`cargo test --benches`).
pub(crate) fn bench_mode() -> bool {
    std::env::args().any(|a| a == "--bench")
}
