//! The introspection cache through the real layer, against `uma-test-as`: the AS's counters
//! prove how many introspection calls each rule makes (issue "introspection cache";
//! RFC 7662 §4, docs/protocol.md §7.7).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::*;
use http::StatusCode;
use tower_uma::{
    IntrospectionCache, UmaLayer,
    clock::{Clock, FixedClock},
};
use uma_test_as::{Endpoint, RptPermission, RptSpec, TestAs};

struct Env {
    as_: TestAs,
    r: String,
    url: String,
    layer: UmaLayer,
}

async fn env(cache: IntrospectionCache, clock: Option<Arc<FixedClock>>) -> Env {
    let as_ = start_as().await;
    let r = register_invoice(&as_);
    let mut builder = discover(&as_).await.resources(invoice_map(&r)).cache(cache);
    if let Some(c) = clock {
        builder = builder.clock(c);
    }
    let layer = builder.build().await.expect("builds");
    let (url, _) = protected(layer.clone()).await;
    Env { as_, r, url, layer }
}

impl Env {
    async fn get(&self, rpt: &str) -> StatusCode {
        http()
            .get(format!("{}/invoices/1", self.url))
            .bearer_auth(rpt)
            .send()
            .await
            .expect("answer")
            .status()
    }

    fn introspections(&self) -> u64 {
        self.as_.count(Endpoint::Introspection)
    }
}

#[tokio::test]
async fn hit_and_miss() {
    let e = env(IntrospectionCache::default(), None).await;
    let rpt = rpt_for(&e.as_, &e.r, &["read"]);
    assert_eq!(e.get(&rpt).await, StatusCode::OK);
    assert_eq!(e.introspections(), 1, "a miss introspects");
    assert_eq!(e.get(&rpt).await, StatusCode::OK);
    assert_eq!(e.introspections(), 1, "a hit does not");
    assert_eq!(e.layer.cache().entry_count().await, 1);
}

#[tokio::test]
async fn cached_yes_for_one_scope_never_authorises_another() {
    let e = env(IntrospectionCache::default(), None).await;
    let rpt = rpt_for(&e.as_, &e.r, &["read"]);
    assert_eq!(e.get(&rpt).await, StatusCode::OK);
    // Same token, POST needs `write`: decided from the cached result, and refused.
    let resp = http()
        .post(format!("{}/invoices/1", e.url))
        .bearer_auth(&rpt)
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(e.introspections(), 1);
}

#[tokio::test]
async fn entry_never_outlives_exp() {
    // exp in 2 s, maximum 60 s: within the 5 s skew, so the result is not cached at all, and
    // once the layer's clock reaches exp the RPT is refused, although the AS (whose clock has
    // not moved) still calls it active.
    let clock = Arc::new(FixedClock::new(now()));
    let cache = IntrospectionCache::builder()
        .max_ttl(Duration::from_secs(60))
        .build();
    let e = env(cache, Some(clock.clone())).await;
    clock.set(now()); // the AS's time now that it is up
    let rpt = e.as_.mint_rpt(RptSpec {
        exp: Some(clock.now_unix() + 2),
        permissions: vec![RptPermission {
            resource_id: e.r.clone(),
            resource_scopes: vec!["read".into()],
            ..RptPermission::default()
        }],
        ..RptSpec::default()
    });
    assert_eq!(e.get(&rpt).await, StatusCode::OK);
    clock.advance(2);
    assert_eq!(e.get(&rpt).await, StatusCode::UNAUTHORIZED);
    assert_eq!(e.introspections(), 2, "not served from the cache");
}

#[tokio::test]
async fn exp_caps_the_lifetime_on_the_layer_clock() {
    let clock = Arc::new(FixedClock::new(now()));
    let cache = IntrospectionCache::builder()
        .max_ttl(Duration::from_secs(3600))
        .skew(Duration::from_secs(5))
        .build();
    let e = env(cache, Some(clock.clone())).await;
    let rpt = e.as_.mint_rpt(RptSpec {
        exp: Some(now() + 60),
        permissions: vec![RptPermission {
            resource_id: e.r.clone(),
            resource_scopes: vec!["read".into()],
            ..RptPermission::default()
        }],
        ..RptSpec::default()
    });
    assert_eq!(e.get(&rpt).await, StatusCode::OK);
    clock.advance(50);
    assert_eq!(e.get(&rpt).await, StatusCode::OK);
    assert_eq!(e.introspections(), 1, "still fresh 50 s in");
    clock.advance(6); // past exp - skew: refetched (and the AS still says active)
    assert_eq!(e.get(&rpt).await, StatusCode::OK);
    assert_eq!(e.introspections(), 2);
}

#[tokio::test]
async fn permission_exp_is_checked_on_every_hit() {
    let clock = Arc::new(FixedClock::new(now()));
    let cache = IntrospectionCache::builder().build();
    let e = env(cache, Some(clock.clone())).await;
    let rpt = e.as_.mint_rpt(RptSpec {
        exp: Some(now() + 3600),
        permissions: vec![RptPermission {
            resource_id: e.r.clone(),
            resource_scopes: vec!["read".into()],
            exp: Some(now() + 10),
            ..RptPermission::default()
        }],
        ..RptSpec::default()
    });
    assert_eq!(e.get(&rpt).await, StatusCode::OK);
    clock.advance(11);
    assert_eq!(
        e.get(&rpt).await,
        StatusCode::UNAUTHORIZED,
        "expired permission, cached token"
    );
    assert_eq!(e.introspections(), 1, "decided from the cached result");
}

#[tokio::test]
async fn no_cross_token_hits() {
    let e = env(IntrospectionCache::default(), None).await;
    let good = rpt_for(&e.as_, &e.r, &["read"]);
    assert_eq!(e.get(&good).await, StatusCode::OK);
    for bad in ["x", &format!("{good}x"), &good[..good.len() - 1]] {
        assert_eq!(e.get(bad).await, StatusCode::UNAUTHORIZED, "{bad:.6}");
    }
    assert_eq!(e.introspections(), 4);
}

#[tokio::test]
async fn errors_are_not_cached() {
    let e = env(IntrospectionCache::default(), None).await;
    let rpt = rpt_for(&e.as_, &e.r, &["read"]);
    e.as_.fail_next(Endpoint::Introspection, 1, 503);
    assert_eq!(e.get(&rpt).await, StatusCode::FORBIDDEN);
    assert_eq!(e.get(&rpt).await, StatusCode::OK);
    assert_eq!(e.get(&rpt).await, StatusCode::OK);
    assert_eq!(e.introspections(), 2);
}

#[tokio::test]
async fn negative_cache_is_on_by_default_and_bounded() {
    let default = env(IntrospectionCache::default(), None).await;
    assert_eq!(default.get("junk").await, StatusCode::UNAUTHORIZED);
    assert_eq!(default.get("junk").await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        default.introspections(),
        1,
        "inactive results are cached by default"
    );
    let off = env(
        IntrospectionCache::builder()
            .negative_ttl(Duration::ZERO)
            .build(),
        None,
    )
    .await;
    assert_eq!(off.get("junk").await, StatusCode::UNAUTHORIZED);
    assert_eq!(off.get("junk").await, StatusCode::UNAUTHORIZED);
    assert_eq!(off.introspections(), 2, "and not with a zero negative_ttl");

    let cache = IntrospectionCache::builder()
        .negative_ttl(Duration::from_secs(60))
        .negative_max_entries(10)
        .build();
    let e = env(cache, None).await;
    let good = rpt_for(&e.as_, &e.r, &["read"]);
    assert_eq!(e.get(&good).await, StatusCode::OK);
    assert_eq!(e.get("junk").await, StatusCode::UNAUTHORIZED);
    assert_eq!(e.get("junk").await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        e.introspections(),
        2,
        "the second junk request hit the negative cache"
    );
    for i in 0..100 {
        assert_eq!(e.get(&format!("junk-{i}")).await, StatusCode::UNAUTHORIZED);
    }
    let count = e.layer.cache().entry_count().await;
    assert!(count <= 11, "negative entries are bounded: {count}");
    let before = e.introspections();
    assert_eq!(e.get(&good).await, StatusCode::OK);
    assert_eq!(
        e.introspections(),
        before,
        "the flood did not evict the positive entry"
    );
}

#[tokio::test]
async fn stale_if_error_within_and_beyond_the_grace_window() {
    let clock = Arc::new(FixedClock::new(now()));
    let cache = IntrospectionCache::builder()
        .max_ttl(Duration::from_secs(10))
        .stale_if_error(Duration::from_secs(30))
        .negative_ttl(Duration::from_secs(60))
        .build();
    let e = env(cache, Some(clock.clone())).await;
    let rpt = rpt_for(&e.as_, &e.r, &["read"]); // exp in 60 s
    assert_eq!(e.get(&rpt).await, StatusCode::OK);
    assert_eq!(e.get("junk").await, StatusCode::UNAUTHORIZED);
    e.as_.set_down(Endpoint::Introspection, true);
    e.as_.set_down(Endpoint::Permission, true);
    clock.advance(15); // fresh for 10 s, stale since 5 s
    assert_eq!(
        e.get(&rpt).await,
        StatusCode::OK,
        "served stale while the AS is down"
    );
    assert!(e.introspections() >= 2, "it did try the AS first");
    clock.advance(31); // beyond the grace window
    assert_eq!(e.get(&rpt).await, StatusCode::FORBIDDEN);
    // Negative entries are never served stale: once their TTL passed, the AS is asked.
    clock.advance(20);
    assert_eq!(e.get("junk").await, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn eviction_api_forgets_one_or_all() {
    let e = env(IntrospectionCache::default(), None).await;
    let a = rpt_for(&e.as_, &e.r, &["read"]);
    let b = rpt_for(&e.as_, &e.r, &["read"]);
    assert_eq!(e.get(&a).await, StatusCode::OK);
    assert_eq!(e.get(&b).await, StatusCode::OK);
    e.layer.forget_token(&a);
    assert_eq!(e.get(&a).await, StatusCode::OK);
    assert_eq!(e.get(&b).await, StatusCode::OK);
    assert_eq!(e.introspections(), 3);
    e.layer.forget_all_tokens();
    assert_eq!(e.get(&a).await, StatusCode::OK);
    assert_eq!(e.get(&b).await, StatusCode::OK);
    assert_eq!(e.introspections(), 5);
}

#[tokio::test]
async fn shared_cache_between_layers_and_disabled_cache() {
    let as_ = start_as().await;
    let r = register_invoice(&as_);
    let shared = IntrospectionCache::default();
    let one = discover(&as_)
        .await
        .resources(invoice_map(&r))
        .cache(shared.clone())
        .build()
        .await
        .expect("one");
    let two = discover(&as_)
        .await
        .resources(invoice_map(&r))
        .cache(shared.clone())
        .build()
        .await
        .expect("two");
    let (u1, _) = protected(one).await;
    let (u2, _) = protected(two).await;
    let rpt = rpt_for(&as_, &r, &["read"]);
    for u in [&u1, &u2, &u1] {
        let s = http()
            .get(format!("{u}/invoices/1"))
            .bearer_auth(&rpt)
            .send()
            .await
            .expect("answer")
            .status();
        assert_eq!(s, StatusCode::OK);
    }
    assert_eq!(
        as_.count(Endpoint::Introspection),
        1,
        "one cache for both layers"
    );

    let off = discover(&as_)
        .await
        .resources(invoice_map(&r))
        .cache(IntrospectionCache::disabled())
        .build()
        .await
        .expect("off");
    let (u3, _) = protected(off).await;
    for _ in 0..3 {
        let s = http()
            .get(format!("{u3}/invoices/1"))
            .bearer_auth(&rpt)
            .send()
            .await
            .expect("answer")
            .status();
        assert_eq!(s, StatusCode::OK);
    }
    assert_eq!(
        as_.count(Endpoint::Introspection),
        4,
        "no caching when turned off"
    );
}

/// 1,000 concurrent requests on one uncached RPT make exactly one introspection, and a waiter
/// that is dropped (its client went away) does not fail, cancel or delay the others. Driven
/// in-process, so the 1,000 requests need no sockets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_flight_with_a_dropped_waiter() {
    use tower::{Layer, ServiceExt};

    let e = env(IntrospectionCache::default(), None).await;
    let rpt = rpt_for(&e.as_, &e.r, &["read"]);
    e.as_
        .set_latency(Endpoint::Introspection, Duration::from_millis(400));
    let service = e
        .layer
        .layer(tower::service_fn(|_req: http::Request<String>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(String::from("ok")))
        }));
    let request = || {
        http::Request::get("/invoices/1")
            .header(http::header::AUTHORIZATION, format!("Bearer {rpt}"))
            .body(String::new())
            .expect("request")
    };
    // The first waiter leads the call, then gives up after 100 ms.
    let first = tokio::spawn(tokio::time::timeout(
        Duration::from_millis(100),
        service.clone().oneshot(request()),
    ));
    tokio::time::sleep(Duration::from_millis(20)).await;
    let started = Instant::now();
    let tasks: Vec<_> = (0..1000)
        .map(|_| tokio::spawn(service.clone().oneshot(request())))
        .collect();
    assert!(
        first.await.expect("task").is_err(),
        "the first waiter timed out"
    );
    for t in tasks {
        let resp = t.await.expect("task").expect("infallible");
        assert_eq!(resp.status(), StatusCode::OK);
    }
    // A second call (the dropped waiter's flight re-run) would show here…
    assert_eq!(e.introspections(), 1, "exactly one introspection");
    // …and as a wait of another 400 ms; the bound leaves room for a slow CI machine.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "not delayed: {:?}",
        started.elapsed()
    );
}

/// Layers on one AS that would ask it differently (another client, another `token_type_hint`;
/// RFC 7662 §4 lets an AS answer per protected resource) keep their entries apart in a shared
/// cache: each asks the AS itself. Before, the scope named only the issuer and the way RPTs
/// are checked, so the second layer was served the first one's answer.
#[tokio::test]
async fn layers_that_ask_the_as_differently_do_not_share_entries() {
    let as_ = as_builder()
        .client("photo-api-2", "photo-api-2-secret")
        .spawn()
        .await
        .expect("the test AS starts");
    let r = register_invoice(&as_);
    let shared = IntrospectionCache::default();
    let layer = |b: tower_uma::UmaLayerBuilder| async {
        b.resources(invoice_map(&r))
            .cache(shared.clone())
            .build()
            .await
            .expect("builds")
    };
    let base = layer(discover(&as_).await).await;
    let other_client = layer(
        UmaLayer::discover(as_.issuer(), "photo-api-2", "photo-api-2-secret").insecure_allow_http(),
    )
    .await;
    let hinted = layer(
        discover(&as_)
            .await
            .token_type_hint("requesting_party_token"),
    )
    .await;
    let same = layer(discover(&as_).await).await;
    let rpt = rpt_for(&as_, &r, &["read"]);
    let mut expected = 0;
    for (layer, asks) in [
        (base, true),
        (other_client, true),
        (hinted, true),
        (same, false),
    ] {
        let (url, _) = protected(layer).await;
        let s = http()
            .get(format!("{url}/invoices/1"))
            .bearer_auth(&rpt)
            .send()
            .await
            .expect("answer")
            .status();
        assert_eq!(s, StatusCode::OK);
        expected += u64::from(asks);
        assert_eq!(as_.count(Endpoint::Introspection), expected);
    }
}
