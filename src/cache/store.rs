//! The storage: what the cache keeps per token ([`Entry`], in a [`Table`]), and [`Inner`],
//! which looks entries up,
//! starts the call on a miss, stores its answer and serves stale entries when it fails.

use super::*;

/// What a [`Table`] stores: the shared result plus its wall-clock bookkeeping. Cloned on every
/// hit, so it is an `Arc` and two words.
#[derive(Clone)]
pub(super) struct Entry {
    pub(super) value: Arc<Introspection>,
    pub(super) fresh_until: i64,
    /// Also when the table may drop the entry: no caller serves it after that.
    pub(super) stale_until: i64,
}

impl Entry {
    pub(super) fn new(value: &Arc<Introspection>, times: lifetime::Times) -> Self {
        Self {
            value: Arc::clone(value),
            fresh_until: times.fresh_until,
            stale_until: times.stale_until,
        }
    }
}

pub(super) struct Inner {
    pub(super) settings: Settings,
    pub(super) policy: lifetime::Policy,
    /// Active results.
    pub(super) positive: Table,
    /// Inactive results; `None` when negative caching is off.
    pub(super) negative: Option<Table>,
    pub(super) flights: Flights,
    /// `uma_cache_hits_total`, registered when the cache was built.
    pub(super) hits: metrics::HotCounter,
    /// When the last stale serve was logged at WARN (clock seconds), and how many were logged
    /// at DEBUG since.
    pub(super) stale_log: Mutex<Option<(i64, u64)>>,
    /// The caches of answers derived from tokens (permission exchanges), which forget a token
    /// whenever this cache does.
    pub(super) derived: derived::Derived,
    /// The fleet's shared level on Redis, when configured.
    #[cfg(feature = "redis")]
    pub(super) shared: Option<Arc<shared::Shared>>,
}

/// The target of the cache's events: the public module's, as before the storage had a file of
/// its own, so that log filters and subscribers see no change.
const LOG_TARGET: &str = "tower_uma::cache";

/// At most one stale serve per this many seconds is logged at WARN.
const STALE_WARN_EVERY: i64 = 30;

/// A disabled cache's lookup: the call itself.
pub(super) async fn fetch_uncached<F, Fut>(fetch: F) -> Result<Cached, CallError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<Introspection, CallError>>,
{
    let value = fetch().await?;
    Ok(Cached {
        value: Arc::new(value),
        source: CacheSource::Disabled,
    })
}

impl Inner {
    pub(super) async fn get_or_fetch<F, Fut>(
        self: &Arc<Self>,
        scope: &CacheScope,
        fingerprint: &Fingerprint,
        fetch: F,
    ) -> Result<Cached, CallError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Introspection, CallError>> + Send + 'static,
    {
        let key = KeyRef::new(&scope.namespace, fingerprint);
        let seen = self.flights.completions();
        if let Some(hit) = self.lookup(&key, scope.now()) {
            return Ok(hit);
        }
        Box::pin(self.miss(scope, key, fingerprint, seen, fetch())).await
    }

    /// The miss path, boxed so that the hit path's future stays small.
    async fn miss<Fut>(
        self: &Arc<Self>,
        scope: &CacheScope,
        key: KeyRef<'_>,
        fingerprint: &Fingerprint,
        seen: u64,
        fetch: Fut,
    ) -> Result<Cached, CallError>
    where
        Fut: Future<Output = Result<Introspection, CallError>> + Send + 'static,
    {
        let mut fetch = fetch;
        let mut seen = Some(seen);
        let (flight, source) = loop {
            match self
                .flights
                .begin(key, seen.take(), fetch, |key, ticket, fut| {
                    self.start(key, ticket, Arc::clone(&scope.clock), fut)
                }) {
                Begin::Joined(flight) => {
                    metrics::cache_coalesced();
                    break (flight, CacheSource::Coalesced);
                }
                Begin::Led(flight) => {
                    metrics::cache_miss();
                    break (flight, CacheSource::Miss);
                }
                Begin::Recheck(unused) => {
                    fetch = unused;
                    if let Some(hit) = self.lookup(&key, scope.now()) {
                        return Ok(hit);
                    }
                }
            }
        };
        match flight.await {
            Ok(value) => Ok(Cached { value, source }),
            Err(error) => self.stale_or(&key, fingerprint, error, scope).await,
        }
    }

    /// A fresh entry for `key`, if any: the hit path.
    pub(super) fn lookup(&self, key: &KeyRef<'_>, now: i64) -> Option<Cached> {
        if let Some(entry) = self.positive.get(key)
            && now < entry.fresh_until
        {
            self.hits.increment();
            return Some(Cached {
                value: entry.value,
                source: CacheSource::Hit,
            });
        }
        let entry = self.negative.as_ref()?.get(key)?;
        (now < entry.fresh_until).then(|| {
            metrics::cache_negative_hit();
            Cached {
                value: entry.value,
                source: CacheSource::NegativeHit,
            }
        })
    }

    /// Starts the flight that runs `fetch` and stores its result, timed by `clock` (the
    /// layer's).
    fn start<Fut>(
        self: &Arc<Self>,
        key: Key,
        ticket: Ticket,
        clock: Arc<dyn Clock>,
        fetch: Fut,
    ) -> SharedFlight
    where
        Fut: Future<Output = Result<Introspection, CallError>> + Send + 'static,
    {
        // Created outside the task so that it runs even if the task is dropped unpolled.
        let finish = FinishGuard {
            inner: Arc::clone(self),
            key,
            id: ticket.id,
        };
        flight::spawn(async move {
            // The fleet's shared level first, when there is one: an entry another replica
            // stored is kept locally no longer than it was fresh there.
            // Before anything is asked: a revocation marker at or after this refuses what the
            // answer is written to Redis as.
            #[cfg(feature = "redis")]
            let asked_at_ms = shared::unix_now_ms();
            #[cfg(feature = "redis")]
            let found = match &finish.inner.shared {
                Some(shared) => shared.get(&finish.key, clock.now_unix()).await,
                None => None,
            };
            #[cfg(feature = "redis")]
            let (result, cap) = match found {
                Some(found) => (Ok(Arc::new(found.value)), Some(found.fresh_until)),
                None => (fetch.await.map(Arc::new), None),
            };
            #[cfg(not(feature = "redis"))]
            let (result, cap) = (fetch.await.map(Arc::new), None);
            if let Ok(value) = &result {
                let times = finish
                    .inner
                    .store(&finish.key, value, &ticket.revoked, &*clock, cap);
                #[cfg(feature = "redis")]
                if let (Some(shared), None) = (&finish.inner.shared, cap) {
                    // Off the request path: the waiters have their answer without waiting
                    // for Redis to take it.
                    let (shared, key, value) =
                        (Arc::clone(shared), finish.key.clone(), Arc::clone(value));
                    let (revoked, now) = (Arc::clone(&ticket.revoked), clock.now_unix());
                    // Outside a runtime there is no connection to Redis to write with.
                    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                        runtime.spawn(async move {
                            shared
                                .put(&key, &value, times, &revoked, now, asked_at_ms)
                                .await;
                        });
                    }
                }
                #[cfg(not(feature = "redis"))]
                let _ = times;
            }
            drop(finish);
            result
        })
    }

    /// Stores a fresh answer: active results in the positive cache when their lifetime allows,
    /// inactive ones in the negative cache when it is on. Whatever the answer, it replaces
    /// what was stored for the key before, timed by `clock` (the layer's). `cap`: when the
    /// answer stops being fresh at the latest (an entry of the shared level).
    ///
    /// Returns the times the answer may be cached with (`None`: not at all), whether or not
    /// it was stored.
    fn store(
        &self,
        key: &Key,
        value: &Arc<Introspection>,
        revoked: &AtomicBool,
        clock: &dyn Clock,
        cap: Option<i64>,
    ) -> Option<lifetime::Times> {
        let now = clock.now_unix();
        let capped = |times: Option<lifetime::Times>| match cap {
            Some(until) => times.and_then(|t| t.capped(now, until)),
            None => times,
        };
        let times = if value.is_active() {
            capped(self.policy.positive(now, value))
        } else {
            capped(self.policy.negative(now))
        };
        if revoked.load(Ordering::SeqCst) {
            // Invalidated while in flight: what was stored before is gone already.
            return times;
        }
        let weight = lifetime::weight(value);
        if value.is_active() {
            if let Some(negative) = &self.negative {
                negative.invalidate(&key.borrowed());
            }
            match times {
                Some(times) => {
                    self.positive
                        .insert(key.clone(), Entry::new(value, times), weight, now)
                }
                None => {
                    self.positive.invalidate(&key.borrowed());
                }
            }
        } else {
            // An inactive answer retires any earlier active entry, so that stale-if-error can
            // never resurrect it.
            self.positive.invalidate(&key.borrowed());
            if let (Some(negative), Some(times)) = (&self.negative, times) {
                negative.insert(key.clone(), Entry::new(value, times), weight, now);
            }
        }
        // Checked again after inserting: an invalidation that set the flag since is seen here,
        // and one that sets it later removes what was just inserted itself.
        if revoked.load(Ordering::SeqCst) {
            self.positive.invalidate(&key.borrowed());
            if let Some(negative) = &self.negative {
                negative.invalidate(&key.borrowed());
            }
        }
        times
    }

    /// Forgets the entries and calls in flight of the token whose fleet id is `id` (a
    /// revocation heard from the fleet), in every scope. Returns the time (milliseconds since
    /// the epoch) it was forgotten at.
    #[cfg(feature = "redis")]
    pub(super) fn forget_fleet(&self, id: &[u8; 32]) -> i64 {
        let Some(shared) = &self.shared else {
            return shared::unix_now_ms();
        };
        let mac = shared.mac().clone();
        let id = *id;
        let matches = move |digest: &[u8; 32]| shared::fleet_id(&mac, digest) == id;
        self.flights.revoke_matching(&matches);
        for cache in std::iter::once(&self.positive).chain(self.negative.as_ref()) {
            cache.invalidate_if(|k| matches(&k.digest));
        }
        let derived: Matches = Arc::new(move |f: &Fingerprint| matches(f.as_bytes()));
        self.derived.forget_if(&derived);
        shared::unix_now_ms()
    }

    /// Forgets everything (revocations may have been missed).
    #[cfg(feature = "redis")]
    pub(super) fn forget_everything(&self) {
        self.flights.revoke_all();
        self.positive.invalidate_all();
        if let Some(negative) = &self.negative {
            negative.invalidate_all();
        }
        self.derived.forget_all();
    }

    /// After a failed call: an expired active entry still within stale-if-error, or the error.
    async fn stale_or(
        &self,
        key: &KeyRef<'_>,
        fingerprint: &Fingerprint,
        error: CallError,
        scope: &CacheScope,
    ) -> Result<Cached, CallError> {
        if self.policy.stale_grace.is_zero() {
            return Err(error);
        }
        let Some(entry) = self.positive.get(key) else {
            return Err(error);
        };
        let now = scope.now();
        if now < entry.fresh_until {
            // Another call refreshed the entry meanwhile.
            return Ok(Cached {
                value: entry.value,
                source: CacheSource::Hit,
            });
        }
        if now < entry.stale_until && lifetime::usable_when_stale(&entry.value, now) {
            metrics::cache_stale_served();
            let stale_for_secs = now - entry.fresh_until;
            match self.stale_warning(now) {
                Some(suppressed) => tracing::warn!(
                    name: "uma.cache.stale_served",
                    target: LOG_TARGET,
                    {
                        token.fingerprint = %fingerprint,
                        error = %error,
                        stale_for_secs,
                        suppressed,
                    },
                    "introspection failed; serving an expired cache entry under stale-if-error \
                     ({suppressed} more since the last such warning, logged at DEBUG)"
                ),
                None => tracing::debug!(
                    name: "uma.cache.stale_served",
                    target: LOG_TARGET,
                    {
                        token.fingerprint = %fingerprint,
                        error = %error,
                        stale_for_secs,
                    },
                    "introspection failed; serving an expired cache entry under stale-if-error"
                ),
            }
            return Ok(Cached {
                value: entry.value,
                source: CacheSource::Stale,
            });
        }
        Err(error)
    }
}

impl Inner {
    /// Whether a stale serve at `now` is logged at WARN: `Some(n)` with the `n` serves logged
    /// at DEBUG since the last WARN one, when that was at least [`STALE_WARN_EVERY`] ago.
    fn stale_warning(&self, now: i64) -> Option<u64> {
        let mut log = self
            .stale_log
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match &mut *log {
            Some((at, since)) if now >= *at && now - *at < STALE_WARN_EVERY => {
                *since = since.saturating_add(1);
                None
            }
            _ => {
                let suppressed = log.map_or(0, |(_, since)| since);
                *log = Some((now, 0));
                Some(suppressed)
            }
        }
    }
}

/// Takes a flight out of the in-flight map when the flight is over, however it ends.
struct FinishGuard {
    inner: Arc<Inner>,
    key: Key,
    id: u64,
}

impl Drop for FinishGuard {
    fn drop(&mut self) {
        self.inner.flights.finish(&self.key, self.id);
    }
}
