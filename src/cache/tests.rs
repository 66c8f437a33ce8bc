//! Unit tests of the introspection cache, driven with fake fetch closures that count their
//! calls and a [`FixedClock`].

use std::fmt::Write as _;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tokio::sync::{Barrier, Notify, Semaphore};

use super::*;
use crate::clock::FixedClock;
use crate::gate::AsEndpoint;
use crate::introspect::Permission;
use crate::metrics::test_recorder::TestRecorder;

const NOW: i64 = 1_767_225_600;
const AS1: &str = "https://as-one.example/realms/a";
const AS2: &str = "https://as-two.example/realms/b";

type FetchResult = Result<Introspection, CallError>;

/// The failures of an introspection call the tests make up.
fn status(status: u16) -> CallError {
    use crate::protection::{Answer, Failure};
    CallError::new(
        AsEndpoint::Introspection,
        Failure::Status(Answer::bare(status)),
    )
}

fn timeout() -> CallError {
    use crate::protection::Failure;
    CallError::new(
        AsEndpoint::Introspection,
        Failure::Timeout(Default::default()),
    )
}

fn unreachable() -> CallError {
    CallError::unreachable(AsEndpoint::Introspection)
}

fn no_pat() -> CallError {
    CallError::no_pat(AsEndpoint::Introspection, timeout())
}

/// Fake introspection calls that count how often they are *run* (polled), not created.
#[derive(Clone, Default)]
struct Fetcher {
    calls: Arc<AtomicUsize>,
}

impl Fetcher {
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Answers `result` at once.
    fn answer(
        &self,
        result: FetchResult,
    ) -> impl FnOnce() -> BoxFuture<'static, FetchResult> + use<> {
        let calls = Arc::clone(&self.calls);
        move || {
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                result
            }
            .boxed()
        }
    }

    /// Answers `result` after `delay`.
    fn slow(
        &self,
        delay: Duration,
        result: FetchResult,
    ) -> impl FnOnce() -> BoxFuture<'static, FetchResult> + use<> {
        let calls = Arc::clone(&self.calls);
        move || {
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(delay).await;
                result
            }
            .boxed()
        }
    }

    /// Signals `started`, then answers `result` once `gate` hands out a permit.
    fn gated(
        &self,
        started: &Arc<Notify>,
        gate: &Arc<Semaphore>,
        result: FetchResult,
    ) -> impl FnOnce() -> BoxFuture<'static, FetchResult> + use<> {
        let calls = Arc::clone(&self.calls);
        let started = Arc::clone(started);
        let gate = Arc::clone(gate);
        move || {
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                started.notify_one();
                let _permit = gate.acquire().await.expect("gate stays open");
                result
            }
            .boxed()
        }
    }
}

fn clock() -> Arc<FixedClock> {
    Arc::new(FixedClock::new(NOW))
}

fn builder() -> IntrospectionCacheBuilder {
    IntrospectionCache::builder()
}

/// The scope of a layer at the AS `ns` that introspects, on `clock`.
fn at(ns: &str, clock: &Arc<FixedClock>) -> CacheScope {
    CacheScope::new(ns, "introspection", Arc::clone(clock) as Arc<dyn Clock>)
}

/// [`at`] on a clock that stays at `NOW`, for tests where time does not move.
fn fixed(ns: &str) -> CacheScope {
    at(ns, &clock())
}

fn active(exp: Option<i64>) -> FetchResult {
    Ok(Introspection::active(
        vec![Permission::new("r-1", ["read"])],
        exp,
    ))
}

fn active_for(sub: &str, exp: i64) -> FetchResult {
    Ok(
        Introspection::active(vec![Permission::new("r-1", ["read"])], Some(exp))
            .with_sub(Some(sub)),
    )
}

fn rpt(s: &str) -> Rpt {
    Rpt::new(s)
}

/// Starts a request for `rpt-a` in a task of its own; its introspection call (an active
/// answer expiring at `exp`) signals `started`, then waits for a permit from `gate`.
fn spawn_gated(
    cache: &IntrospectionCache,
    f: &Fetcher,
    started: &Arc<Notify>,
    gate: &Arc<Semaphore>,
    exp: i64,
) -> tokio::task::JoinHandle<Result<Cached, CallError>> {
    let (cache, fetch) = (cache.clone(), f.gated(started, gate, active(Some(exp))));
    tokio::spawn(async move { cache.get_or_fetch(&fixed(AS1), &rpt("rpt-a"), fetch).await })
}

async fn source(
    cache: &IntrospectionCache,
    scope: &CacheScope,
    token: &Rpt,
    fetch: impl FnOnce() -> BoxFuture<'static, FetchResult>,
) -> CacheSource {
    cache
        .get_or_fetch(scope, token, fetch)
        .await
        .expect("an answer")
        .source
}

#[tokio::test]
async fn miss_then_hit_shares_the_same_result() {
    let clock = clock();
    let cache = builder().build();
    let f = Fetcher::default();
    let t = rpt("rpt-a");
    let first = cache
        .get_or_fetch(&at(AS1, &clock), &t, f.answer(active(Some(NOW + 3600))))
        .await
        .expect("ok");
    assert_eq!(first.source, CacheSource::Miss);
    let second = cache
        .get_or_fetch(&at(AS1, &clock), &t, f.answer(active(Some(NOW + 3600))))
        .await
        .expect("ok");
    assert_eq!(second.source, CacheSource::Hit);
    assert!(Arc::ptr_eq(&first.value, &second.value));
    assert_eq!(f.calls(), 1);
    assert_eq!(cache.entry_count().await, 1);
}

#[tokio::test]
async fn max_ttl_expires_entries_on_the_wall_clock() {
    let clock = clock();
    let cache = builder().max_ttl(Duration::from_secs(60)).build();
    let f = Fetcher::default();
    let t = rpt("rpt-a");
    assert_eq!(
        source(
            &cache,
            &at(AS1, &clock),
            &t,
            f.answer(active(Some(NOW + 3600)))
        )
        .await,
        CacheSource::Miss
    );
    clock.advance(59);
    assert_eq!(
        source(
            &cache,
            &at(AS1, &clock),
            &t,
            f.answer(active(Some(NOW + 3600)))
        )
        .await,
        CacheSource::Hit
    );
    clock.advance(1);
    assert_eq!(
        source(
            &cache,
            &at(AS1, &clock),
            &t,
            f.answer(active(Some(NOW + 3600)))
        )
        .await,
        CacheSource::Miss
    );
    assert_eq!(f.calls(), 2);
}

#[tokio::test]
async fn entries_are_never_served_past_exp() {
    // exp = now + 2 s with a 60 s maximum and no skew: served before exp, not at it.
    let clock = clock();
    let cache = builder().skew(Duration::ZERO).build();
    let f = Fetcher::default();
    let t = rpt("rpt-short");
    assert_eq!(
        source(
            &cache,
            &at(AS1, &clock),
            &t,
            f.answer(active(Some(NOW + 2)))
        )
        .await,
        CacheSource::Miss
    );
    clock.advance(1);
    assert_eq!(
        source(
            &cache,
            &at(AS1, &clock),
            &t,
            f.answer(active(Some(NOW + 2)))
        )
        .await,
        CacheSource::Hit
    );
    clock.advance(1);
    // The table would keep the entry until its stale end: the layer's clock decides.
    assert_eq!(
        source(
            &cache,
            &at(AS1, &clock),
            &t,
            f.answer(active(Some(NOW + 2)))
        )
        .await,
        CacheSource::Miss
    );
    assert_eq!(f.calls(), 2);

    // With the default 5 s skew, exp = now + 10 s is served for 5 s only.
    let clock = self::clock();
    let cache = builder().build();
    let f = Fetcher::default();
    assert_eq!(
        source(
            &cache,
            &at(AS1, &clock),
            &t,
            f.answer(active(Some(NOW + 10)))
        )
        .await,
        CacheSource::Miss
    );
    clock.advance(4);
    assert_eq!(
        source(
            &cache,
            &at(AS1, &clock),
            &t,
            f.answer(active(Some(NOW + 10)))
        )
        .await,
        CacheSource::Hit
    );
    clock.advance(1);
    assert_eq!(
        source(
            &cache,
            &at(AS1, &clock),
            &t,
            f.answer(active(Some(NOW + 10)))
        )
        .await,
        CacheSource::Miss
    );
    assert_eq!(f.calls(), 2);
}

#[tokio::test]
async fn exp_within_the_skew_is_not_cached() {
    let clock = clock();
    let cache = builder().build();
    let f = Fetcher::default();
    let t = rpt("rpt-dying");
    for _ in 0..3 {
        assert_eq!(
            source(
                &cache,
                &at(AS1, &clock),
                &t,
                f.answer(active(Some(NOW + 3)))
            )
            .await,
            CacheSource::Miss
        );
    }
    assert_eq!(f.calls(), 3);
    assert_eq!(cache.entry_count().await, 0);
}

#[tokio::test]
async fn no_exp_is_cached_only_when_allowed() {
    let clock = clock();
    let f = Fetcher::default();
    let t = rpt("rpt-forever");

    let strict = builder().build();
    assert_eq!(
        source(&strict, &at(AS1, &clock), &t, f.answer(active(None))).await,
        CacheSource::Miss
    );
    assert_eq!(
        source(&strict, &at(AS1, &clock), &t, f.answer(active(None))).await,
        CacheSource::Miss
    );
    assert_eq!(f.calls(), 2);

    let lenient = builder()
        .cache_without_exp(true)
        .max_ttl(Duration::from_secs(30))
        .build();
    assert_eq!(
        source(&lenient, &at(AS1, &clock), &t, f.answer(active(None))).await,
        CacheSource::Miss
    );
    clock.advance(29);
    assert_eq!(
        source(&lenient, &at(AS1, &clock), &t, f.answer(active(None))).await,
        CacheSource::Hit
    );
    clock.advance(1);
    assert_eq!(
        source(&lenient, &at(AS1, &clock), &t, f.answer(active(None))).await,
        CacheSource::Miss
    );
    assert_eq!(f.calls(), 4);
}

#[tokio::test]
async fn tokens_never_see_each_others_entries() {
    let clock = clock();
    let cache = builder().build();
    let f = Fetcher::default();
    let (a, b) = (rpt("rpt-alice"), rpt("rpt-bob"));
    cache
        .get_or_fetch(
            &at(AS1, &clock),
            &a,
            f.answer(active_for("alice", NOW + 3600)),
        )
        .await
        .expect("ok");
    let bob = cache
        .get_or_fetch(
            &at(AS1, &clock),
            &b,
            f.answer(active_for("bob", NOW + 3600)),
        )
        .await
        .expect("ok");
    assert_eq!(
        (bob.source, bob.value.sub()),
        (CacheSource::Miss, Some("bob"))
    );
    let alice = cache
        .get_or_fetch(
            &at(AS1, &clock),
            &a,
            f.answer(active_for("mallory", NOW + 3600)),
        )
        .await
        .expect("ok");
    assert_eq!(
        (alice.source, alice.value.sub()),
        (CacheSource::Hit, Some("alice"))
    );
    // A token that is a prefix of another is a different key.
    let prefix = cache
        .get_or_fetch(
            &at(AS1, &clock),
            &rpt("rpt-ali"),
            f.answer(active_for("p", NOW + 3600)),
        )
        .await
        .expect("ok");
    assert_eq!(prefix.source, CacheSource::Miss);
    assert_eq!(f.calls(), 3);
}

#[tokio::test]
async fn issuers_are_separate_namespaces() {
    let clock = clock();
    let cache = builder().build();
    let shared = cache.clone();
    let f = Fetcher::default();
    let t = rpt("rpt-same");
    let one = cache
        .get_or_fetch(
            &at(AS1, &clock),
            &t,
            f.answer(active_for("one", NOW + 3600)),
        )
        .await
        .expect("ok");
    let two = shared
        .get_or_fetch(
            &at(AS2, &clock),
            &t,
            f.answer(active_for("two", NOW + 3600)),
        )
        .await
        .expect("ok");
    assert_eq!(
        (one.source, two.source),
        (CacheSource::Miss, CacheSource::Miss)
    );
    assert_eq!(f.calls(), 2);
    let again = shared
        .get_or_fetch(&at(AS1, &clock), &t, f.answer(active_for("x", NOW + 3600)))
        .await
        .expect("ok");
    assert_eq!(
        (again.source, again.value.sub()),
        (CacheSource::Hit, Some("one"))
    );
    let again = cache
        .get_or_fetch(&at(AS2, &clock), &t, f.answer(active_for("x", NOW + 3600)))
        .await
        .expect("ok");
    assert_eq!(
        (again.source, again.value.sub()),
        (CacheSource::Hit, Some("two"))
    );
    assert_eq!(f.calls(), 2);
}

#[test]
fn keys_compare_issuer_and_digest_and_hash_alike_borrowed_or_owned() {
    use std::hash::BuildHasher;

    let (t, u) = (rpt("t").fingerprint(), rpt("u").fingerprint());
    let owned = Key {
        digest: *t.as_bytes(),
        namespace: Arc::from(AS1),
    };
    assert!(KeyRef::new(AS1, &t).equivalent(&owned));
    assert!(!KeyRef::new(AS2, &t).equivalent(&owned), "another issuer");
    assert!(!KeyRef::new(AS1, &u).equivalent(&owned), "another token");
    assert!(
        !KeyRef::new("https://as-one.example/realms/", &t).equivalent(&owned),
        "a prefix of the issuer"
    );
    let hasher = std::collections::hash_map::RandomState::new();
    assert_eq!(hasher.hash_one(owned.borrowed()), hasher.hash_one(&owned));
    assert_eq!(
        hasher.hash_one(KeyRef::new(AS1, &t)),
        hasher.hash_one(&owned)
    );
    let flights = Flights::default();
    flights.revoke(KeyRef::new(AS1, &t));
    flights.revoke(KeyRef::new(AS1, &u));
    assert_eq!(flights.namespaces(), 1, "issuers are interned once");
}

#[tokio::test]
async fn errors_are_not_cached() {
    let clock = clock();
    let cache = builder().build();
    let f = Fetcher::default();
    let t = rpt("rpt-a");
    let err = cache
        .get_or_fetch(&at(AS1, &clock), &t, f.answer(Err(status(503))))
        .await;
    assert_eq!(err.map(|c| c.source), Err(status(503)));
    assert_eq!(
        source(
            &cache,
            &at(AS1, &clock),
            &t,
            f.answer(active(Some(NOW + 3600)))
        )
        .await,
        CacheSource::Miss
    );
    assert_eq!(
        source(&cache, &at(AS1, &clock), &t, f.answer(Err(timeout()))).await,
        CacheSource::Hit
    );
    assert_eq!(f.calls(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_concurrent_misses_make_one_call() {
    let cache = IntrospectionCache::default();
    let f = Fetcher::default();
    let exp = NOW + 3600;
    let barrier = Arc::new(Barrier::new(1000));
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let (cache, barrier) = (cache.clone(), Arc::clone(&barrier));
            let fetch = f.slow(Duration::from_millis(50), active(Some(exp)));
            tokio::spawn(async move {
                barrier.wait().await;
                cache
                    .get_or_fetch(&fixed(AS1), &rpt("rpt-hot"), fetch)
                    .await
            })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.expect("task ran").expect("an answer"));
    }
    assert_eq!(f.calls(), 1);
    let misses = results
        .iter()
        .filter(|c| c.source == CacheSource::Miss)
        .count();
    assert_eq!(misses, 1);
    assert!(results.iter().all(|c| matches!(
        c.source,
        CacheSource::Miss | CacheSource::Coalesced | CacheSource::Hit
    )));
    assert!(
        results
            .iter()
            .all(|c| Arc::ptr_eq(&c.value, &results[0].value)),
        "one shared result"
    );
    let inner = cache.inner.as_ref().expect("enabled");
    assert_eq!(inner.flights.len(), 0, "the flight left the map");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_reach_every_waiter_and_the_next_request_retries() {
    let cache = IntrospectionCache::default();
    let f = Fetcher::default();
    let barrier = Arc::new(Barrier::new(50));
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (cache, barrier) = (cache.clone(), Arc::clone(&barrier));
            let fetch = f.slow(Duration::from_millis(50), Err(unreachable()));
            tokio::spawn(async move {
                barrier.wait().await;
                cache.get_or_fetch(&fixed(AS1), &rpt("rpt-a"), fetch).await
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(
            t.await.expect("task ran").map(|c| c.source),
            Err(unreachable())
        );
    }
    assert_eq!(f.calls(), 1);
    let exp = NOW + 3600;
    assert_eq!(
        source(
            &cache,
            &fixed(AS1),
            &rpt("rpt-a"),
            f.answer(active(Some(exp)))
        )
        .await,
        CacheSource::Miss
    );
    assert_eq!(f.calls(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_waiter_neither_cancels_nor_delays_the_others() {
    let cache = IntrospectionCache::default();
    let f = Fetcher::default();
    let (started, gate) = (Arc::new(Notify::new()), Arc::new(Semaphore::new(0)));
    let exp = NOW + 3600;

    // The first waiter leads the call, then goes away mid-flight.
    let leader = spawn_gated(&cache, &f, &started, &gate, exp);
    started.notified().await;
    leader.abort();
    assert!(leader.await.expect_err("aborted").is_cancelled());

    // Others join the same call (their own fetches would block on the gate forever).
    let others: Vec<_> = (0..10)
        .map(|_| spawn_gated(&cache, &f, &started, &gate, exp))
        .collect();
    tokio::time::sleep(Duration::from_millis(20)).await;
    gate.add_permits(100);
    for o in others {
        let answer = tokio::time::timeout(Duration::from_secs(2), o)
            .await
            .expect("answered promptly")
            .expect("task ran")
            .expect("an answer");
        assert_eq!(answer.source, CacheSource::Coalesced);
    }
    assert_eq!(f.calls(), 1, "the dropped leader's call was not re-run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_call_completes_and_fills_the_cache_after_every_waiter_left() {
    let cache = IntrospectionCache::default();
    let f = Fetcher::default();
    let (started, gate) = (Arc::new(Notify::new()), Arc::new(Semaphore::new(0)));
    let exp = NOW + 3600;
    let only = spawn_gated(&cache, &f, &started, &gate, exp);
    started.notified().await;
    only.abort();
    assert!(only.await.expect_err("aborted").is_cancelled());
    gate.add_permits(1);
    let inner = Arc::clone(cache.inner.as_ref().expect("enabled"));
    tokio::time::timeout(Duration::from_secs(2), async {
        while inner.flights.len() > 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .expect("the flight finished");
    assert_eq!(
        source(&cache, &fixed(AS1), &rpt("rpt-a"), f.answer(Err(timeout()))).await,
        CacheSource::Hit
    );
    assert_eq!(f.calls(), 1);
}

#[tokio::test]
async fn negative_caching_is_on_by_default_for_5_seconds_and_can_be_turned_off() {
    let clock = clock();
    let cache = builder().build();
    let f = Fetcher::default();
    let t = rpt("rpt-junk");
    let inactive = || f.answer(Ok(Introspection::inactive()));
    assert_eq!(
        source(&cache, &at(AS1, &clock), &t, inactive()).await,
        CacheSource::Miss
    );
    clock.advance(4);
    assert_eq!(
        source(&cache, &at(AS1, &clock), &t, inactive()).await,
        CacheSource::NegativeHit
    );
    clock.advance(1);
    assert_eq!(
        source(&cache, &at(AS1, &clock), &t, inactive()).await,
        CacheSource::Miss
    );
    assert_eq!(f.calls(), 2);

    let off = builder().negative_ttl(Duration::ZERO).build();
    for _ in 0..2 {
        let c = off
            .get_or_fetch(
                &at(AS1, &clock),
                &t,
                f.answer(Ok(Introspection::inactive())),
            )
            .await
            .expect("ok");
        assert_eq!((c.source, c.value.is_active()), (CacheSource::Miss, false));
    }
    assert_eq!(f.calls(), 4);
    assert_eq!(off.entry_count().await, 0);
}

#[tokio::test]
async fn negative_entries_answer_without_a_call_until_their_ttl() {
    let clock = clock();
    let cache = builder().negative_ttl(Duration::from_secs(10)).build();
    let f = Fetcher::default();
    let t = rpt("rpt-junk");
    assert_eq!(
        source(
            &cache,
            &at(AS1, &clock),
            &t,
            f.answer(Ok(Introspection::inactive()))
        )
        .await,
        CacheSource::Miss
    );
    clock.advance(9);
    let c = cache
        .get_or_fetch(&at(AS1, &clock), &t, f.answer(active(Some(NOW + 3600))))
        .await
        .expect("ok");
    assert_eq!(
        (c.source, c.value.is_active()),
        (CacheSource::NegativeHit, false)
    );
    clock.advance(1);
    let c = cache
        .get_or_fetch(&at(AS1, &clock), &t, f.answer(active(Some(NOW + 3600))))
        .await
        .expect("ok");
    assert_eq!((c.source, c.value.is_active()), (CacheSource::Miss, true));
    assert_eq!(
        source(
            &cache,
            &at(AS1, &clock),
            &t,
            f.answer(Ok(Introspection::inactive()))
        )
        .await,
        CacheSource::Hit
    );
    assert_eq!(f.calls(), 2);
}

#[tokio::test]
async fn a_junk_flood_is_bounded_and_does_not_evict_active_entries() {
    let clock = clock();
    let cache = builder()
        .negative_ttl(Duration::from_secs(60))
        .negative_max_entries(50)
        .max_entries(100)
        .build();
    let f = Fetcher::default();
    let good = rpt("rpt-good");
    assert_eq!(
        source(
            &cache,
            &at(AS1, &clock),
            &good,
            f.answer(active(Some(NOW + 3600)))
        )
        .await,
        CacheSource::Miss
    );
    for i in 0..500 {
        let junk = rpt(&format!("junk-{i}"));
        assert_eq!(
            source(
                &cache,
                &at(AS1, &clock),
                &junk,
                f.answer(Ok(Introspection::inactive()))
            )
            .await,
            CacheSource::Miss
        );
    }
    let inner = cache.inner.as_ref().expect("enabled");
    let negative = inner.negative.as_ref().expect("on");
    assert!(
        negative.entry_count() <= 50,
        "{} negative entries",
        negative.entry_count()
    );
    assert!(negative.entry_count() > 0);
    assert!(cache.entry_count().await <= 51);
    assert_eq!(
        source(&cache, &at(AS1, &clock), &good, f.answer(Err(timeout()))).await,
        CacheSource::Hit
    );
    assert_eq!(f.calls(), 501);
}

#[tokio::test]
async fn the_weigher_bounds_memory_not_just_the_count() {
    let clock = clock();
    let cache = builder().max_entries(20).build();
    let f = Fetcher::default();
    let heavy = || {
        Ok(Introspection::active(
            (0..30)
                .map(|i| Permission::new(format!("resource-{i:020}"), ["read", "write"]))
                .collect(),
            Some(NOW + 3600),
        ))
    };
    let weight = lifetime::weight(&heavy().expect("ok"));
    assert!(weight > 10, "weight {weight}");
    for i in 0..10 {
        cache
            .get_or_fetch(
                &at(AS1, &clock),
                &rpt(&format!("heavy-{i}")),
                f.answer(heavy()),
            )
            .await
            .expect("ok");
    }
    assert!(
        cache.entry_count().await <= 20 / u64::from(weight),
        "{}",
        cache.entry_count().await
    );

    let cache = builder().max_entries(20).build();
    for i in 0..10 {
        cache
            .get_or_fetch(
                &at(AS1, &clock),
                &rpt(&format!("light-{i}")),
                f.answer(active(Some(NOW + 3600))),
            )
            .await
            .expect("ok");
    }
    assert_eq!(cache.entry_count().await, 10, "typical entries weigh 1");
}

fn stale_cache(grace: u64) -> IntrospectionCache {
    builder()
        .max_ttl(Duration::from_secs(10))
        .stale_if_error(Duration::from_secs(grace))
        .negative_ttl(Duration::from_secs(10))
        .build()
}

#[tokio::test]
async fn stale_if_error_serves_within_the_grace_only() {
    let clock = clock();
    let cache = stale_cache(30);
    let f = Fetcher::default();
    let t = rpt("rpt-a");
    let first = cache
        .get_or_fetch(&at(AS1, &clock), &t, f.answer(active(Some(NOW + 3600))))
        .await
        .expect("ok");
    clock.advance(15); // fresh until +10, stale until +40
    let stale = cache
        .get_or_fetch(&at(AS1, &clock), &t, f.answer(Err(status(502))))
        .await
        .expect("served stale");
    assert_eq!(stale.source, CacheSource::Stale);
    assert!(Arc::ptr_eq(&stale.value, &first.value));
    clock.advance(24); // +39
    assert_eq!(
        source(&cache, &at(AS1, &clock), &t, f.answer(Err(unreachable()))).await,
        CacheSource::Stale
    );
    clock.advance(1); // +40: beyond the grace
    let err = cache
        .get_or_fetch(&at(AS1, &clock), &t, f.answer(Err(unreachable())))
        .await;
    assert_eq!(err.map(|c| c.source), Err(unreachable()));
    assert_eq!(f.calls(), 4);
}

#[tokio::test]
async fn stale_if_error_stops_at_exp_minus_skew() {
    let clock = clock();
    let cache = stale_cache(30);
    let f = Fetcher::default();
    let t = rpt("rpt-a");
    // fresh until +10, stale until min(+40, exp − skew = +15)
    assert_eq!(
        source(
            &cache,
            &at(AS1, &clock),
            &t,
            f.answer(active(Some(NOW + 20)))
        )
        .await,
        CacheSource::Miss
    );
    clock.advance(14);
    assert_eq!(
        source(&cache, &at(AS1, &clock), &t, f.answer(Err(timeout()))).await,
        CacheSource::Stale
    );
    clock.advance(1);
    assert!(
        cache
            .get_or_fetch(&at(AS1, &clock), &t, f.answer(Err(timeout())))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn stale_if_error_skips_results_whose_permissions_all_expired() {
    let clock = clock();
    let cache = stale_cache(30);
    let f = Fetcher::default();
    let t = rpt("rpt-a");
    let p = Permission::new("r-1", ["read"]).with_exp(Some(NOW + 12));
    let answer = Ok(Introspection::active(vec![p], Some(NOW + 3600)));
    assert_eq!(
        source(&cache, &at(AS1, &clock), &t, f.answer(answer)).await,
        CacheSource::Miss
    );
    clock.advance(11);
    assert_eq!(
        source(&cache, &at(AS1, &clock), &t, f.answer(Err(timeout()))).await,
        CacheSource::Stale
    );
    clock.advance(1);
    assert!(
        cache
            .get_or_fetch(&at(AS1, &clock), &t, f.answer(Err(timeout())))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn stale_if_error_is_off_by_default() {
    let clock = clock();
    let cache = builder().max_ttl(Duration::from_secs(10)).build();
    let f = Fetcher::default();
    let t = rpt("rpt-a");
    assert_eq!(
        source(
            &cache,
            &at(AS1, &clock),
            &t,
            f.answer(active(Some(NOW + 3600)))
        )
        .await,
        CacheSource::Miss
    );
    clock.advance(11);
    assert!(
        cache
            .get_or_fetch(&at(AS1, &clock), &t, f.answer(Err(timeout())))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn inactive_answers_are_never_served_stale() {
    let clock = clock();
    let cache = stale_cache(300);
    let f = Fetcher::default();

    // An expired negative entry plus a failing AS: the error, not the inactive answer.
    let junk = rpt("rpt-junk");
    assert_eq!(
        source(
            &cache,
            &at(AS1, &clock),
            &junk,
            f.answer(Ok(Introspection::inactive()))
        )
        .await,
        CacheSource::Miss
    );
    clock.advance(11);
    assert!(
        cache
            .get_or_fetch(&at(AS1, &clock), &junk, f.answer(Err(timeout())))
            .await
            .is_err()
    );

    // An active entry, then the AS says the token is inactive (revoked): the old active
    // answer must not come back when the AS later fails.
    let t = rpt("rpt-revoked");
    assert_eq!(
        source(
            &cache,
            &at(AS1, &clock),
            &t,
            f.answer(active(Some(NOW + 3600)))
        )
        .await,
        CacheSource::Miss
    );
    clock.advance(11);
    let c = cache
        .get_or_fetch(
            &at(AS1, &clock),
            &t,
            f.answer(Ok(Introspection::inactive())),
        )
        .await
        .expect("ok");
    assert_eq!((c.source, c.value.is_active()), (CacheSource::Miss, false));
    clock.advance(11); // past the negative entry too
    assert!(
        cache
            .get_or_fetch(&at(AS1, &clock), &t, f.answer(Err(timeout())))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn invalidate_forgets_one_token_and_invalidate_all_everything() {
    let clock = clock();
    let cache = builder().negative_ttl(Duration::from_secs(60)).build();
    let f = Fetcher::default();
    let (a, b, junk) = (rpt("rpt-a"), rpt("rpt-b"), rpt("rpt-junk"));
    for t in [&a, &b] {
        assert_eq!(
            source(
                &cache,
                &at(AS1, &clock),
                t,
                f.answer(active(Some(NOW + 3600)))
            )
            .await,
            CacheSource::Miss
        );
    }
    assert_eq!(
        source(
            &cache,
            &at(AS1, &clock),
            &junk,
            f.answer(Ok(Introspection::inactive()))
        )
        .await,
        CacheSource::Miss
    );
    assert_eq!(cache.entry_count().await, 3);

    cache.forget(&at(AS1, &clock), "rpt-x");
    assert_eq!(
        source(
            &cache,
            &at(AS1, &clock),
            &b,
            f.answer(active(Some(NOW + 3600)))
        )
        .await,
        CacheSource::Hit,
        "another token's forget leaves it"
    );
    cache.forget(&at(AS1, &clock), "rpt-a");
    // Forgotten through another scope (a layer of another issuer, or checking RPTs another
    // way, sharing the cache): the token is forgotten in every scope, since a revocation hook
    // calls one layer.
    cache.forget(&at(AS2, &clock), "rpt-b");
    assert_eq!(
        source(
            &cache,
            &at(AS1, &clock),
            &b,
            f.answer(active(Some(NOW + 3600)))
        )
        .await,
        CacheSource::Miss
    );
    assert_eq!(
        source(
            &cache,
            &at(AS1, &clock),
            &a,
            f.answer(active(Some(NOW + 3600)))
        )
        .await,
        CacheSource::Miss
    );
    cache.forget(&at(AS1, &clock), "rpt-junk");
    assert_eq!(
        source(
            &cache,
            &at(AS1, &clock),
            &junk,
            f.answer(Ok(Introspection::inactive()))
        )
        .await,
        CacheSource::Miss
    );
    assert_eq!(f.calls(), 6);

    cache.clone().invalidate_all();
    assert_eq!(cache.entry_count().await, 0);
    for t in [&a, &b] {
        assert_eq!(
            source(
                &cache,
                &at(AS1, &clock),
                t,
                f.answer(active(Some(NOW + 3600)))
            )
            .await,
            CacheSource::Miss
        );
    }
    assert_eq!(
        source(
            &cache,
            &at(AS1, &clock),
            &junk,
            f.answer(Ok(Introspection::inactive()))
        )
        .await,
        CacheSource::Miss
    );
    assert_eq!(f.calls(), 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidating_during_a_call_detaches_it() {
    for invalidate_all in [false, true] {
        let cache = IntrospectionCache::default();
        let f = Fetcher::default();
        let (started, gate) = (Arc::new(Notify::new()), Arc::new(Semaphore::new(0)));
        let exp = NOW + 3600;
        let waiter = spawn_gated(&cache, &f, &started, &gate, exp);
        started.notified().await;
        if invalidate_all {
            cache.invalidate_all();
        } else {
            cache.forget(&fixed(AS1), "rpt-a");
        }
        // A request after the invalidation starts its own call instead of joining.
        let after = spawn_gated(&cache, &f, &started, &gate, exp);
        started.notified().await;
        assert_eq!(f.calls(), 2);
        gate.add_permits(1);
        // The detached call still answers its waiter...
        assert_eq!(
            waiter.await.expect("ran").expect("answer").source,
            CacheSource::Miss
        );
        gate.add_permits(1);
        assert_eq!(
            after.await.expect("ran").expect("answer").source,
            CacheSource::Miss
        );
        // ...and the fresh call's result is the one kept.
        assert_eq!(
            source(&cache, &fixed(AS1), &rpt("rpt-a"), f.answer(Err(timeout()))).await,
            CacheSource::Hit
        );
        assert_eq!(f.calls(), 2);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_that_arrives_after_invalidation_is_not_kept() {
    let cache = IntrospectionCache::default();
    let f = Fetcher::default();
    let (started, gate) = (Arc::new(Notify::new()), Arc::new(Semaphore::new(0)));
    let exp = NOW + 3600;
    let waiter = spawn_gated(&cache, &f, &started, &gate, exp);
    started.notified().await;
    cache.forget(&fixed(AS1), "rpt-a");
    gate.add_permits(1);
    assert_eq!(
        waiter.await.expect("ran").expect("answer").source,
        CacheSource::Miss
    );
    assert_eq!(cache.entry_count().await, 0);
    assert_eq!(
        source(
            &cache,
            &fixed(AS1),
            &rpt("rpt-a"),
            f.answer(active(Some(exp)))
        )
        .await,
        CacheSource::Miss
    );
    assert_eq!(f.calls(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_cache_always_calls_and_never_coalesces() {
    let cache = IntrospectionCache::disabled();
    let f = Fetcher::default();
    let t = rpt("rpt-a");
    for _ in 0..3 {
        assert_eq!(
            source(&cache, &fixed(AS1), &t, f.answer(active(Some(NOW + 3600)))).await,
            CacheSource::Disabled
        );
    }
    assert_eq!(f.calls(), 3);
    let tasks: Vec<_> = (0..5)
        .map(|_| {
            let (cache, fetch) = (
                cache.clone(),
                f.slow(Duration::from_millis(30), active(None)),
            );
            tokio::spawn(async move { cache.get_or_fetch(&fixed(AS1), &rpt("rpt-a"), fetch).await })
        })
        .collect();
    for t in tasks {
        assert_eq!(
            t.await.expect("ran").expect("answer").source,
            CacheSource::Disabled
        );
    }
    assert_eq!(f.calls(), 8);
    let err = cache
        .get_or_fetch(&fixed(AS1), &t, f.answer(Err(no_pat())))
        .await;
    assert_eq!(err.map(|c| c.source), Err(no_pat()));
    cache.forget(&fixed(AS1), "rpt-a");
    cache.invalidate_all();
    assert_eq!(cache.entry_count().await, 0);
    assert_eq!(
        format!("{cache:?}"),
        "IntrospectionCache { enabled: false }"
    );
}

#[tokio::test]
async fn zero_capacity_or_ttl_stores_nothing_but_still_answers() {
    let clock = clock();
    let f = Fetcher::default();
    let t = rpt("rpt-a");
    for cache in [
        builder().max_entries(0).build(),
        builder().max_ttl(Duration::ZERO).build(),
    ] {
        for _ in 0..2 {
            assert_eq!(
                source(
                    &cache,
                    &at(AS1, &clock),
                    &t,
                    f.answer(active(Some(NOW + 3600)))
                )
                .await,
                CacheSource::Miss
            );
        }
        assert_eq!(cache.entry_count().await, 0);
    }
    assert_eq!(f.calls(), 4);
}

#[test]
fn debug_shows_settings_not_contents() {
    let cache = IntrospectionCache::default();
    let text = format!("{cache:?}");
    assert!(text.starts_with("IntrospectionCache { enabled: true, settings: Settings { max_entries: 10000, max_ttl: 60s, skew: 5s"), "{text}");
    let builder = format!("{:?}", IntrospectionCache::builder());
    assert!(
        builder.contains("stale_if_error: 0ns") && !builder.contains("clock"),
        "{builder}"
    );
    assert_eq!(CacheSource::Miss.as_str(), "miss");
}

#[test]
fn cache_sources_have_stable_names() {
    let all = [
        (CacheSource::Hit, "hit", true),
        (CacheSource::Miss, "miss", false),
        (CacheSource::Coalesced, "coalesced", false),
        (CacheSource::Stale, "stale", true),
        (CacheSource::NegativeHit, "negative_hit", true),
        (CacheSource::Disabled, "disabled", false),
    ];
    for (s, name, hit) in all {
        assert_eq!((s.as_str(), s.is_hit()), (name, hit));
    }
}

/// Captures tracing events: (target and name, level, fields).
#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<(String, tracing::Level, String)>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Events {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Fields(String);
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                let _ = write!(self.0, "{}={:?} ", field.name(), value);
            }
        }
        let mut fields = Fields(String::new());
        event.record(&mut fields);
        let meta = event.metadata();
        self.0.lock().unwrap_or_else(PoisonError::into_inner).push((
            format!("{} {}", meta.target(), meta.name()),
            *meta.level(),
            fields.0,
        ));
    }
}

#[test]
fn metrics_and_the_stale_event_are_recorded() {
    use tracing_subscriber::layer::SubscriberExt as _;

    let recorder = TestRecorder::default();
    let events = Events::default();
    let subscriber = tracing_subscriber::registry().with(events.clone());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let clock = clock();
    let token = rpt("rpt-Zk31-secret");

    ::metrics::with_local_recorder(&recorder, || {
        tracing::subscriber::with_default(subscriber, || {
            runtime.block_on(async {
                let cache = stale_cache(30);
                let f = Fetcher::default();
                let exp = Some(NOW + 3600);
                assert_eq!(
                    source(&cache, &at(AS1, &clock), &token, f.answer(active(exp))).await,
                    CacheSource::Miss
                );
                assert_eq!(
                    source(&cache, &at(AS1, &clock), &token, f.answer(active(exp))).await,
                    CacheSource::Hit
                );
                let junk = rpt("junk");
                assert_eq!(
                    source(
                        &cache,
                        &at(AS1, &clock),
                        &junk,
                        f.answer(Ok(Introspection::inactive()))
                    )
                    .await,
                    CacheSource::Miss
                );
                assert_eq!(
                    source(
                        &cache,
                        &at(AS1, &clock),
                        &junk,
                        f.answer(Ok(Introspection::inactive()))
                    )
                    .await,
                    CacheSource::NegativeHit
                );
                clock.advance(11);
                assert_eq!(
                    source(&cache, &at(AS1, &clock), &token, f.answer(Err(status(500)))).await,
                    CacheSource::Stale
                );
                // A refresh replaces the entry; an invalidation removes it explicitly.
                assert_eq!(
                    source(&cache, &at(AS1, &clock), &token, f.answer(active(exp))).await,
                    CacheSource::Miss
                );
                cache.forget(&at(AS1, &clock), token.secret());
                cache.entry_count().await;

                // Two concurrent misses on one key: one miss, one coalesced.
                let gate = Arc::new(Semaphore::new(0));
                let started = Arc::new(Notify::new());
                let t2 = rpt("rpt-two");
                let scope = at(AS1, &clock);
                let first = cache.get_or_fetch(&scope, &t2, f.gated(&started, &gate, active(exp)));
                let second = async {
                    started.notified().await;
                    let mut joined = pin!(cache.get_or_fetch(&scope, &t2, f.answer(active(exp))));
                    // One poll reaches the flight map and joins; only then may the call end.
                    assert!(joined.as_mut().now_or_never().is_none());
                    gate.add_permits(1);
                    joined.await
                };
                let (a, b) = tokio::join!(first, second);
                assert_eq!(
                    (a.expect("ok").source, b.expect("ok").source),
                    (CacheSource::Miss, CacheSource::Coalesced)
                );
            });
        });
    });

    assert_eq!(recorder.counter("uma_cache_hits_total"), 1);
    assert_eq!(recorder.counter("uma_cache_misses_total"), 5);
    assert_eq!(recorder.counter("uma_cache_coalesced_total"), 1);
    assert_eq!(recorder.counter("uma_cache_negative_hits_total"), 1);
    assert_eq!(recorder.counter("uma_cache_stale_served_total"), 1);
    assert_eq!(
        recorder.counter("uma_cache_evictions_total{cache=positive,cause=replaced}"),
        1
    );
    assert_eq!(
        recorder.counter("uma_cache_evictions_total{cache=positive,cause=explicit}"),
        1
    );

    let events = events
        .0
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let stale: Vec<_> = events
        .iter()
        // The target stays the public module's.
        .filter(|(name, _, _)| name == "tower_uma::cache uma.cache.stale_served")
        .collect();
    assert_eq!(stale.len(), 1, "{events:?}");
    let (_, level, fields) = stale[0];
    assert_eq!(*level, tracing::Level::WARN);
    assert!(
        fields.contains(&format!("token.fingerprint={}", token.fingerprint())),
        "{fields}"
    );
    assert!(
        fields.contains("error=introspection endpoint answered 500"),
        "{fields}"
    );
    for (_, _, fields) in &events {
        assert!(
            !fields.contains(token.secret()),
            "raw token logged: {fields}"
        );
    }
}

/// Polls a future to completion on this thread, with no runtime around.
fn block_on_without_runtime<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        std::thread::park();
    }
}

#[test]
fn works_without_a_tokio_runtime() {
    std::thread::spawn(|| {
        assert!(tokio::runtime::Handle::try_current().is_err());
        let clock = clock();
        let cache = builder().build();
        let f = Fetcher::default();
        let t = rpt("rpt-a");
        block_on_without_runtime(async {
            assert_eq!(
                source(
                    &cache,
                    &at(AS1, &clock),
                    &t,
                    f.answer(active(Some(NOW + 3600)))
                )
                .await,
                CacheSource::Miss
            );
            assert_eq!(
                source(
                    &cache,
                    &at(AS1, &clock),
                    &t,
                    f.answer(active(Some(NOW + 3600)))
                )
                .await,
                CacheSource::Hit
            );
            assert!(
                cache
                    .get_or_fetch(&at(AS1, &clock), &rpt("b"), f.answer(Err(timeout())))
                    .await
                    .is_err()
            );
            assert_eq!(cache.entry_count().await, 1);
        });
        assert_eq!(f.calls(), 2);
        assert_eq!(cache.inner.as_ref().expect("enabled").flights.len(), 0);
    })
    .join()
    .expect("no panic");
}

#[test]
fn begin_joins_rechecks_and_revokes() {
    let flights = Flights::default();
    let fingerprint = rpt("t").fingerprint();
    let key = KeyRef::new(AS1, &fingerprint);
    let owned = Key {
        digest: *fingerprint.as_bytes(),
        namespace: Arc::from(AS1),
    };
    let done = |_: Key, _: Ticket, fut: BoxFuture<'static, flight::FlightResult>| fut.shared();
    let ready = || futures_util::future::ready(Err(timeout())).boxed();

    let seen = flights.completions();
    let first = flights.begin(key, Some(seen), ready(), done);
    assert!(matches!(first, Begin::Led(_)));
    assert!(matches!(
        flights.begin(key, Some(seen), ready(), done),
        Begin::Joined(_)
    ));
    // The flight finishes (id 0): a request that looked the cache up before that rechecks.
    flights.finish(&owned, 0);
    assert_eq!(flights.len(), 0);
    assert!(matches!(
        flights.begin(key, Some(seen), ready(), done),
        Begin::Recheck(_)
    ));
    assert!(matches!(
        flights.begin(key, None, ready(), done),
        Begin::Led(_)
    ));
    // A stale finish (of flight 0) leaves the newer flight (id 1) alone.
    flights.finish(&owned, 0);
    assert_eq!(flights.len(), 1);
    flights.revoke(key);
    assert_eq!(flights.len(), 0);
    assert!(matches!(
        flights.begin(key, None, ready(), done),
        Begin::Led(_)
    ));
    flights.revoke_all();
    assert_eq!(flights.len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_fetch_fails_its_waiters_and_is_cleaned_up() {
    let cache = IntrospectionCache::default();
    let f = Fetcher::default();
    let calls = Arc::clone(&f.calls);
    let panicking = move || {
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            panic!("introspector bug");
        }
        .boxed()
    };
    let joiner = {
        let (cache, fetch) = (cache.clone(), f.slow(Duration::ZERO, active(None)));
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            cache.get_or_fetch(&fixed(AS1), &rpt("rpt-a"), fetch).await
        })
    };
    let led = cache
        .get_or_fetch(&fixed(AS1), &rpt("rpt-a"), panicking)
        .await;
    assert_eq!(led.map(|c| c.source), Err(unreachable()));
    assert_eq!(
        joiner.await.expect("ran").map(|c| c.source),
        Err(unreachable())
    );
    assert_eq!(f.calls(), 1);
    assert_eq!(cache.inner.as_ref().expect("enabled").flights.len(), 0);
    let exp = NOW + 3600;
    assert_eq!(
        source(
            &cache,
            &fixed(AS1),
            &rpt("rpt-a"),
            f.answer(active(Some(exp)))
        )
        .await,
        CacheSource::Miss
    );
    assert_eq!(f.calls(), 2);
}

#[tokio::test]
async fn peek_answers_fresh_entries_only_and_never_fetches() {
    // The layer's synchronous hit path: what `peek` returns must be exactly what a lookup
    // through `get_or_fetch` would serve without calling the AS.
    let clock = clock();
    let cache = builder()
        .max_ttl(Duration::from_secs(60))
        .negative_ttl(Duration::from_secs(10))
        .build();
    let f = Fetcher::default();
    let (t, junk) = (rpt("rpt-a"), rpt("junk"));
    assert!(
        cache
            .peek(&at(AS1, &clock), &t.fingerprint(), clock.now_unix())
            .is_none(),
        "empty cache"
    );
    let stored = cache
        .get_or_fetch(&at(AS1, &clock), &t, f.answer(active(Some(NOW + 3600))))
        .await
        .expect("ok");
    let hit = cache
        .peek(&at(AS1, &clock), &t.fingerprint(), clock.now_unix())
        .expect("a fresh entry");
    assert_eq!(hit.source, CacheSource::Hit);
    assert!(Arc::ptr_eq(&hit.value, &stored.value));
    assert!(
        cache
            .peek(&at(AS2, &clock), &t.fingerprint(), clock.now_unix())
            .is_none(),
        "another issuer"
    );
    assert!(
        cache
            .peek(&at(AS1, &clock), &junk.fingerprint(), clock.now_unix())
            .is_none(),
        "another token"
    );

    let _ = cache
        .get_or_fetch(
            &at(AS1, &clock),
            &junk,
            f.answer(Ok(Introspection::inactive())),
        )
        .await;
    let negative = cache
        .peek(&at(AS1, &clock), &junk.fingerprint(), clock.now_unix())
        .expect("a negative entry");
    assert_eq!(negative.source, CacheSource::NegativeHit);
    assert!(!negative.value.is_active());

    clock.advance(60);
    assert!(
        cache
            .peek(&at(AS1, &clock), &t.fingerprint(), clock.now_unix())
            .is_none(),
        "past max_ttl on the layer's clock"
    );
    let _ = cache
        .get_or_fetch(&at(AS1, &clock), &t, f.answer(active(Some(NOW + 3600))))
        .await;
    assert!(
        cache
            .peek(&at(AS1, &clock), &t.fingerprint(), clock.now_unix())
            .is_some(),
        "refreshed"
    );
    cache.forget(&at(AS1, &clock), t.secret());
    assert!(
        cache
            .peek(&at(AS1, &clock), &t.fingerprint(), clock.now_unix())
            .is_none(),
        "invalidated"
    );
    assert!(
        IntrospectionCache::disabled()
            .peek(&at(AS1, &clock), &t.fingerprint(), clock.now_unix())
            .is_none()
    );
    assert_eq!(f.calls(), 3, "peek itself never calls the AS");
}

#[test]
fn the_key_hash_depends_on_the_digest_and_the_seed() {
    let key = |digest: [u8; 32]| Key {
        digest,
        namespace: Arc::from(AS1),
    };
    let seeded = DigestHash::random();
    let hash = |h: &DigestHash, k: &Key| h.hash_one(k);
    let a = key(*rpt("a").fingerprint().as_bytes());
    let b = key(*rpt("b").fingerprint().as_bytes());
    // Stable for one key, and a borrowed lookup key hashes like the stored one.
    assert_eq!(hash(&seeded, &a), hash(&seeded, &a));
    assert_eq!(hash(&seeded, &a), seeded.hash_one(a.borrowed()));
    assert_ne!(hash(&seeded, &a), hash(&seeded, &b));
    // Digests that differ in one byte of the hashed word only still spread over the low bits.
    // 256 uniform hashes fill about 162 of 256 buckets (standard deviation about 5); the
    // bound below is 5 deviations away, for any seed. Checked for both ends of the word.
    for byte in [0, 7] {
        let mut buckets = std::collections::HashSet::new();
        for n in 0_u8..=255 {
            let mut digest = [0_u8; 32];
            digest[byte] = n;
            buckets.insert(hash(&seeded, &key(digest)) & 0xff);
        }
        assert!(
            buckets.len() > 136,
            "byte {byte}: {} of 256 buckets",
            buckets.len()
        );
    }
    // Another cache, another seed: placement cannot be predicted from the token alone.
    let other = DigestHash::random();
    assert_ne!(hash(&seeded, &a), hash(&other, &a));
}

/// Runs `f` on a thread of its own and fails if it does not return within five seconds (a
/// deadlock would otherwise hang the test run).
fn within_five_seconds(f: impl FnOnce() + Send + 'static) {
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        f();
        let _ = done.send(());
    });
    finished
        .recv_timeout(Duration::from_secs(5))
        .expect("finished (no deadlock, no panic)");
}

#[test]
fn invalidating_a_call_whose_waiters_all_left_does_not_deadlock_without_a_runtime() {
    // Outside tokio the flight's future is owned by the map of calls in flight; once every
    // waiter left, taking it out of the map drops the call, and with it the guard that
    // removes it from the map.
    within_five_seconds(|| {
        let cache = builder().build();
        let pending = || futures_util::future::pending::<FetchResult>().boxed();
        assert!(
            cache
                .get_or_fetch(&fixed(AS1), &rpt("rpt-a"), pending)
                .now_or_never()
                .is_none()
        );
        cache.forget(&fixed(AS1), "rpt-a");
        assert_eq!(cache.inner.as_ref().expect("enabled").flights.len(), 0);
        assert!(
            cache
                .get_or_fetch(&fixed(AS1), &rpt("rpt-b"), pending)
                .now_or_never()
                .is_none()
        );
        cache.invalidate_all();
        assert_eq!(cache.inner.as_ref().expect("enabled").flights.len(), 0);
    });
}

#[test]
fn a_miss_while_the_runtime_shuts_down_does_not_deadlock() {
    // Spawning on a runtime that is shutting down drops the task at once, inside `spawn`.
    within_five_seconds(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let handle = runtime.handle().clone();
        drop(runtime);
        let _entered = handle.enter();
        let cache = builder().build();
        let f = Fetcher::default();
        let answer = block_on_without_runtime(cache.get_or_fetch(
            &fixed(AS1),
            &rpt("rpt-a"),
            f.answer(active(Some(NOW + 3600))),
        ));
        assert_eq!(answer.map(|c| c.source), Err(unreachable()));
        assert_eq!(cache.inner.as_ref().expect("enabled").flights.len(), 0);
    });
}

/// A clock that, once armed, invalidates `rpt-a` at AS1 the next time it is read: the flight
/// reads it in `store` after its first look at the revocation flag and before inserting.
#[derive(Debug, Default)]
struct RevokingClock {
    armed: std::sync::atomic::AtomicBool,
    cache: Mutex<Option<IntrospectionCache>>,
}

impl Clock for RevokingClock {
    fn now_unix(&self) -> i64 {
        if self.armed.swap(false, Ordering::SeqCst) {
            let cache = self
                .cache
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let Some(cache) = cache {
                cache.forget(&fixed(AS1), "rpt-a");
            }
        }
        NOW
    }
}

#[tokio::test]
async fn an_invalidation_that_lands_while_the_result_is_stored_is_not_undone() {
    for negative in [false, true] {
        let clock = Arc::new(RevokingClock::default());
        let scope = CacheScope::new(AS1, "introspection", Arc::clone(&clock) as Arc<dyn Clock>);
        let mut builder = IntrospectionCache::builder();
        if negative {
            builder = builder.negative_ttl(Duration::from_secs(60));
        }
        let cache = builder.build();
        *clock.cache.lock().unwrap_or_else(PoisonError::into_inner) = Some(cache.clone());
        let answer = if negative {
            Ok(Introspection::inactive())
        } else {
            active(Some(NOW + 3600))
        };
        let arming = Arc::clone(&clock);
        let fetch = move || {
            async move {
                // The call returns; the next clock read is the store's.
                arming.armed.store(true, Ordering::SeqCst);
                answer
            }
            .boxed()
        };
        assert_eq!(
            source(&cache, &scope, &rpt("rpt-a"), fetch).await,
            CacheSource::Miss
        );
        assert!(
            clock
                .cache
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_none(),
            "the invalidation ran while the result was being stored"
        );
        assert_eq!(cache.entry_count().await, 0, "negative: {negative}");
        let f = Fetcher::default();
        assert_eq!(
            source(
                &cache,
                &scope,
                &rpt("rpt-a"),
                f.answer(active(Some(NOW + 3600)))
            )
            .await,
            CacheSource::Miss
        );
        assert_eq!(f.calls(), 1);
    }
}

#[tokio::test]
async fn a_newer_answer_that_cannot_be_cached_retires_the_stale_entry() {
    // The AS answers again, active but without `exp` (not cacheable here): the older entry
    // must not outlive that answer and come back under stale-if-error.
    let clock = clock();
    let cache = stale_cache(300);
    let f = Fetcher::default();
    let t = rpt("rpt-a");
    assert_eq!(
        source(
            &cache,
            &at(AS1, &clock),
            &t,
            f.answer(active(Some(NOW + 3600)))
        )
        .await,
        CacheSource::Miss
    );
    clock.advance(11);
    let newer = Ok(Introspection::active(vec![], None));
    assert_eq!(
        source(&cache, &at(AS1, &clock), &t, f.answer(newer)).await,
        CacheSource::Miss
    );
    assert_eq!(
        cache
            .get_or_fetch(&at(AS1, &clock), &t, f.answer(Err(timeout())))
            .await
            .map(|c| c.source),
        Err(timeout())
    );
    assert_eq!(f.calls(), 3);
}

#[test]
fn scopes_differ_whenever_the_issuer_or_the_check_differs() {
    let scope = |issuer: &str, check: &str| {
        CacheScope::new(issuer, check, Arc::clone(&clock()) as Arc<dyn Clock>).namespace
    };
    assert_eq!(scope(AS1, "introspection"), scope(AS1, "introspection"));
    assert_ne!(scope(AS1, "introspection"), scope(AS2, "introspection"));
    assert_ne!(scope(AS1, "introspection"), scope(AS1, "Local (issuer …)"));
    // The issuer's length leads, so no split of the same characters makes the same key.
    assert_ne!(scope("https://a b", "c"), scope("https://a", "b c"));
}

#[tokio::test]
async fn forget_reaches_scopes_beyond_those_it_records() {
    // More scopes than the cache records (32): the token is still forgotten in all of them.
    let clock = clock();
    let cache = builder().build();
    let f = Fetcher::default();
    let t = rpt("rpt-everywhere");
    let scopes: Vec<CacheScope> = (0..40)
        .map(|i| at(&format!("https://as{i}.test"), &clock))
        .collect();
    for scope in &scopes {
        let got = source(&cache, scope, &t, f.answer(active(Some(NOW + 3600)))).await;
        assert_eq!(got, CacheSource::Miss);
    }
    cache.forget(&scopes[0], "rpt-everywhere");
    for scope in &scopes {
        let got = source(&cache, scope, &t, f.answer(active(Some(NOW + 3600)))).await;
        assert_eq!(got, CacheSource::Miss, "{scope:?}");
    }
}

/// A layer's scope, adopted by its cache, shares the interned namespace with the keys of its
/// entries: lookups compare namespaces by address, and a namespace spelled alike elsewhere
/// still compares equal by its text.
#[test]
fn adopted_scopes_share_the_interned_namespace() {
    let cache = IntrospectionCache::default();
    let clock: Arc<dyn Clock> = Arc::new(FixedClock::new(1_000));
    let scope = cache.adopt(CacheScope::new(AS1, "introspection", Arc::clone(&clock)));
    let again = cache.adopt(CacheScope::new(AS1, "introspection", Arc::clone(&clock)));
    assert!(Arc::ptr_eq(&scope.namespace, &again.namespace));
    let inner = cache.inner.as_ref().expect("an enabled cache");
    let digest = [7; 32];
    let key = inner.flights.intern(&scope.namespace);
    assert!(Arc::ptr_eq(&key, &scope.namespace));
    let stored = Key {
        digest,
        namespace: key,
    };
    let copy: String = scope.namespace.to_string();
    for namespace in [&*scope.namespace, copy.as_str()] {
        let probe = KeyRef {
            digest: &digest,
            namespace,
        };
        assert!(probe.equivalent(&stored));
    }
    let other = KeyRef {
        digest: &digest,
        namespace: "7:https://b introspection",
    };
    assert!(!other.equivalent(&stored));
    let other_digest = [8; 32];
    let probe = KeyRef {
        digest: &other_digest,
        namespace: &scope.namespace,
    };
    assert!(!probe.equivalent(&stored));
}
