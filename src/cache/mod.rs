//! The introspection cache: parsed RFC 7662 answers kept per token, with single flight,
//! `exp`-capped lifetimes, a short negative cache and opt-in stale-if-error.
//!
//! [`IntrospectionCache`] sits between the layer and the authorization server's introspection
//! endpoint. It stores the parsed [`Introspection`], never an access decision: the layer decides
//! on every request from the cached result, so permission-level `exp` and `nbf` are checked
//! at decision time, not only when the cache was filled ([FedAuthz §5.1.1]). The user-facing
//! rules (lifetime, bounds, negative cache, stale-if-error, revocation) are documented on
//! [`IntrospectionCache`].
//!
//! [FedAuthz §5.1.1]: https://docs.kantarainitiative.org/uma/wg/rec-oauth-uma-federated-authz-2.0.html#uma-bearer-token-profile
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use tower_uma::IntrospectionCache;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let cache = IntrospectionCache::builder()
//!     .max_entries(50_000)
//!     .max_ttl(Duration::from_secs(30))
//!     .negative_ttl(Duration::from_secs(2))
//!     .stale_if_error(Duration::from_secs(120))
//!     .build();
//!
//! // Clones share their entries, so one cache can serve several layers (each layer keeps
//! // its entries apart from those of layers that check RPTs another way).
//! let shared = cache.clone();
//!
//! // A revocation hook can forget everything (`UmaLayer::forget_token` forgets one token).
//! shared.invalidate_all();
//! assert_eq!(cache.entry_count().await, 0);
//! # }
//! ```
//!
#![doc = include_str!("concurrent-calls.md")]
//!
//! # Why it works this way
//!
//! - **Single flight without `try_get_with`.** The house style names moka's `try_get_with`
//!   for single flight; it is not used because of its behaviour on cancellation (see above).
//!   The in-flight map is ours, and so is the storage (`table::Table`, below).
//! - **One clock.** Each entry stores its wall-clock `fresh_until`/`stale_until`, checked on
//!   every read against the injectable [`Clock`] of the layer reading it
//!   ([`UmaLayerBuilder::clock`](crate::UmaLayerBuilder::clock)); the table drops an entry
//!   once an insert's clock reading is past its `stale_until` (no caller would serve it any
//!   more). A [`FixedClock`](crate::clock::FixedClock)-driven test and a real clock both
//!   behave, and nothing is served past `exp − skew`. The arithmetic is the pure function
//!   `lifetime::entry_lifetime`.
//! - **Scopes.** Each layer reads and writes the cache through its own `CacheScope`: the
//!   issuer of its AS, how it checks RPTs (introspection by which client, at which endpoint,
//!   with which hint and authentication; or local JWT checks with their issuer, key set,
//!   audiences, algorithms and leeway) and its clock. Layers that agree on the first
//!   two share entries; others never see each other's entries, so a result one layer accepted
//!   cannot be a hit for a layer that would have refused it. The scope's key part is private
//!   to the cache, and the layer owns time: it passes its clock reading to lookups, and the
//!   scope's clock to the calls the cache spawns.
//! - **A table of our own, not moka.** Entries live in `table::Table`: 64 shards, each a hash
//!   map behind a read-write lock, bounded by the entries' total weight and evicting by CLOCK
//!   (an entry read since the hand last passed gets a second chance). A moka `get` cost about
//!   1,500 instructions per hit (its read log, expiry arithmetic and the maintenance the log
//!   triggers); a table `get` is one uncontended read lock, one probe and one relaxed atomic
//!   store, under 150. Every operation is synchronous and never waits for maintenance: a hit
//!   costs one SHA-256 of the token, one clock read, one `get` and an `Arc` clone, and a hit
//!   that grants the request is served without a future of the layer's own.
//! - **Key.** The pair (scope, SHA-256 of the token): the token's [`Fingerprint`] digest,
//!   namespaced by the scope's key part compared exactly. Hashing the scope into the digest
//!   (`SHA-256(scope || 0x00 || token)`) would cost an extra SHA-256 block per request and
//!   rule out sharing the digest: the layer can pass the fingerprint it computes for its
//!   `token.fingerprint` span field to `get_or_fetch_by_fingerprint`, so a request hashes its
//!   token once. The table hashes the first eight bytes of the digest (uniform already) mixed with
//!   a per-cache random seed, instead of running SipHash over all 32; equality also compares
//!   the scope, which is interned, so entries do not each hold a copy of it. Raw tokens are
//!   never stored.

use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hashbrown::Equivalent;

use crate::clock::Clock;
use crate::introspect::Introspection;
use crate::metrics;
use crate::protection::CallError;
use crate::token::{Fingerprint, Rpt};

mod derived;
mod flight;
mod key;
mod lifetime;
#[cfg(feature = "redis")]
mod shared;
mod store;
mod table;
#[cfg(test)]
mod tests;

pub(crate) use derived::{DerivedCache, Matches};
use flight::{Begin, Flights, SharedFlight, Ticket};
#[cfg(feature = "redis")]
pub use shared::{MIN_SECRET_LEN, SharedCache, SharedCacheBuilder, SharedCacheError, SharedHealth};
// The other files' items, for the siblings (each starts with `use super::*`) and the tests.
#[allow(unused_imports, reason = "not every item is used by a sibling")]
use key::*;
#[allow(unused_imports, reason = "not every item is used by a sibling")]
use store::*;
use table::Table;

/// A shared, bounded cache of token introspection results.
///
/// The layer looks every RPT up here before calling the AS's introspection endpoint
/// ([RFC 7662]). Build one with [`builder`](Self::builder), or use [`Default`] (the defaults
/// below) or [`disabled`](Self::disabled). Cloning is cheap and clones share their entries,
/// so one cache can back several layers. Each layer keeps its entries apart from those of
/// layers talking to another authorization server or checking RPTs another way (another
/// `RptValidation`; introspection by another client, at another endpoint, with another hint
/// or authentication; for JWTs another issuer, key set, audiences, algorithms or leeway): a
/// result one layer accepted is never a hit for a layer that would have refused it. Layers
/// that agree share entries. [`UmaLayer::forget_token`](crate::UmaLayer::forget_token)
/// forgets a token in every layer's entries. Time is the layer's: freshness is checked against the clock of the layer
/// reading ([`UmaLayerBuilder::clock`](crate::UmaLayerBuilder::clock)).
///
/// # What is cached, and for how long
///
/// - **Keys** are the layer's scope (see above) and a SHA-256 of the token; raw tokens are
///   never stored.
/// - **Active results** live `min(max_ttl, exp − now − skew)`: never past the token's `exp`
///   ([RFC 7662 §4]). A result whose `exp` is within the skew is not cached; one without
///   `exp` is cached only with [`cache_without_exp(true)`](IntrospectionCacheBuilder::cache_without_exp).
///   Freshness is checked against the layer's [`Clock`] on every read.
/// - **Inactive results** (`active: false`) live
///   [`negative_ttl`](IntrospectionCacheBuilder::negative_ttl) (5 s by default) in a
///   separate, separately bounded cache, so that a token repeated by a misbehaving client
///   costs the AS one introspection per 5 s, and a flood of junk tokens can neither grow
///   memory nor evict active entries. The negative cache never grants anything; its cost is
///   that a token the AS called inactive stays refused for up to `negative_ttl` even if it
///   becomes active meanwhile (say, an RPT checked at an AS replica that has not seen it yet).
///   Revocation is not delayed by it: a revoked token is inactive.
/// - **Errors** (AS unreachable, timeout, error status, unparsable answer, no PAT) are never
///   cached.
/// - **Stale-if-error** (opt-in, [`stale_if_error`](IntrospectionCacheBuilder::stale_if_error)):
///   when the AS call fails, an active result whose cache lifetime ended less than the grace
///   ago may be served, as long as the token's `exp − skew` has not passed. Every such serve
///   is counted and logged (at WARN at most once per 30 s, so that an outage does not flood
///   the logs; the others at DEBUG). Never for inactive results.
///
/// A revoked RPT stays usable for as long as its entry is fresh (RFC 7662 §4 names this
/// trade-off): keep `max_ttl` short, call
/// [`UmaLayer::forget_token`](crate::UmaLayer::forget_token) from a revocation hook, or turn
/// caching off.
///
/// # Bounds
///
/// The active-result cache holds at most [`max_entries`](IntrospectionCacheBuilder::max_entries)
/// "typical entries" (10,000 by default): each entry weighs `1 + bytes / 512`, where `bytes`
/// approximates the parsed result's size, so an AS answer with thousands of permissions counts
/// as many entries. Memory is thus bounded by about `max_entries × 512` bytes of introspection
/// data plus a few hundred bytes of bookkeeping per entry: at most roughly 9 MB at the
/// default.
/// Typical results take far less than 512 bytes (resource ids and scope names are interned):
/// the memory bench measures about 570 bytes of resident memory per entry, bookkeeping
/// included, for results carrying two permissions. The negative cache holds at most
/// [`negative_max_entries`](IntrospectionCacheBuilder::negative_max_entries) entries (10,000
/// by default; an inactive entry takes about 500 bytes with its bookkeeping, so at most
/// roughly 5 MB). The insert that passes the bound evicts (least recently read first, by the
/// CLOCK approximation, never the entry it stores) until the total fits; an entry heavier
/// than the whole bound is not stored.
///
#[doc = include_str!("concurrent-calls.md")]
///
/// # Metrics and tracing
///
/// The cache records `uma_cache_hits_total`, `uma_cache_misses_total`,
/// `uma_cache_coalesced_total`, `uma_cache_negative_hits_total`,
/// `uma_cache_stale_served_total` and `uma_cache_evictions_total{cache, cause}` through the
/// `metrics` facade, and an event `uma.cache.stale_served` with `token.fingerprint` for each
/// stale serve: at WARN for the first in any 30 s (with `suppressed`, the number of stale
/// serves logged at DEBUG since the previous WARN one), at DEBUG for the others. A disabled
/// cache records nothing.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tower_uma::IntrospectionCache;
///
/// // Short-lived entries, and no caching of tokens that carry no `exp`.
/// let strict = IntrospectionCache::builder()
///     .max_ttl(Duration::from_secs(10))
///     .build();
///
/// // Every request asks the AS.
/// let off = IntrospectionCache::disabled();
/// # let _ = (strict, off);
/// ```
///
/// [RFC 7662]: https://www.rfc-editor.org/rfc/rfc7662
/// [RFC 7662 §4]: https://www.rfc-editor.org/rfc/rfc7662#section-4
#[derive(Clone)]
pub struct IntrospectionCache {
    /// `None` when disabled.
    inner: Option<Arc<Inner>>,
}

/// Builds an [`IntrospectionCache`]; see its docs for what each setting does.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tower_uma::IntrospectionCache;
///
/// let cache = IntrospectionCache::builder()
///     .max_entries(1_000)
///     .max_ttl(Duration::from_secs(120))
///     .skew(Duration::from_secs(10))
///     .cache_without_exp(false)
///     .negative_ttl(Duration::from_secs(5))
///     .negative_max_entries(500)
///     .stale_if_error(Duration::from_secs(300))
///     .build();
/// # let _ = cache;
/// ```
#[must_use]
#[derive(Debug, Clone)]
pub struct IntrospectionCacheBuilder {
    settings: Settings,
    #[cfg(feature = "redis")]
    shared: Option<SharedCache>,
}

#[derive(Debug, Clone, Copy)]
struct Settings {
    max_entries: u64,
    max_ttl: Duration,
    skew: Duration,
    cache_without_exp: bool,
    negative_ttl: Duration,
    negative_max_entries: u64,
    stale_if_error: Duration,
}

impl Default for IntrospectionCacheBuilder {
    fn default() -> Self {
        Self {
            settings: Settings {
                max_entries: 10_000,
                max_ttl: Duration::from_secs(60),
                skew: Duration::from_secs(5),
                cache_without_exp: false,
                negative_ttl: Duration::from_secs(5),
                negative_max_entries: 10_000,
                stale_if_error: Duration::ZERO,
            },
            #[cfg(feature = "redis")]
            shared: None,
        }
    }
}

impl IntrospectionCacheBuilder {
    /// The most active results kept, counted in typical entries: an entry weighs
    /// `1 + bytes / 512`, `bytes` being the approximate size of the parsed result, so results
    /// with long permission lists count as several. Memory stays under about
    /// `max_entries × 512` bytes of results plus about 400 bytes of bookkeeping per entry.
    ///
    /// `0` keeps nothing (concurrent misses are still coalesced).
    ///
    /// Defaults to 10,000 (roughly 9 MB).
    pub fn max_entries(mut self, max_entries: u64) -> Self {
        self.settings.max_entries = max_entries;
        self
    }

    /// The longest an active result is served from the cache. Results with an `exp` are kept
    /// at most until `exp` minus the [`skew`](Self::skew), whichever comes first.
    ///
    /// A revoked RPT stays usable for up to this long, so keep it short ([RFC 7662 §4]).
    /// `Duration::ZERO` keeps no active results (concurrent misses are still coalesced).
    ///
    /// Defaults to 60 seconds.
    ///
    /// [RFC 7662 §4]: https://www.rfc-editor.org/rfc/rfc7662#section-4
    pub fn max_ttl(mut self, max_ttl: Duration) -> Self {
        self.settings.max_ttl = max_ttl;
        self
    }

    /// The margin kept before a token's `exp`: a result is not served from the cache once less
    /// than this remains, and is not cached at all if less than this remains when it arrives.
    /// It absorbs clock differences between the AS and this server and the time the request
    /// itself takes. Rounded up to whole seconds, the unit of `exp`.
    ///
    /// Defaults to 5 seconds.
    pub fn skew(mut self, skew: Duration) -> Self {
        self.settings.skew = skew;
        self
    }

    /// Whether an active result without `exp` may be cached (for [`max_ttl`](Self::max_ttl)).
    ///
    /// `exp` is optional in RFC 7662; without it the cache cannot know when the token dies,
    /// so such results are by default not cached and every request with that token calls the
    /// AS.
    ///
    /// Defaults to `false`.
    pub fn cache_without_exp(mut self, allow: bool) -> Self {
        self.settings.cache_without_exp = allow;
        self
    }

    /// How long an inactive answer (`active: false`) is remembered, so that repeated requests
    /// with the same dead or junk token do not each call the AS.
    ///
    /// Inactive answers live in a cache of their own, bounded by
    /// [`negative_max_entries`](Self::negative_max_entries), so a flood of junk tokens can
    /// neither grow memory nor evict active results. A token that the AS reported inactive is
    /// refused for up to this long even if it becomes active meanwhile (an RPT checked at an
    /// AS replica that has not seen it yet): keep it short. Revocation is not delayed (a
    /// revoked token is inactive). `Duration::ZERO` turns negative caching off, so that every
    /// request with a junk token costs an introspection.
    ///
    /// Defaults to 5 seconds.
    pub fn negative_ttl(mut self, ttl: Duration) -> Self {
        self.settings.negative_ttl = ttl;
        self
    }

    /// The most inactive answers kept when [`negative_ttl`](Self::negative_ttl) is set. Each
    /// takes about 500 bytes with its bookkeeping.
    ///
    /// Defaults to 10,000 (roughly 5 MB).
    pub fn negative_max_entries(mut self, max_entries: u64) -> Self {
        self.settings.negative_max_entries = max_entries;
        self
    }

    /// Enables stale-if-error with a `grace` period.
    ///
    /// When the introspection call fails (AS unreachable, timeout, error status, unparsable
    /// answer, no PAT), an active result whose cache lifetime ended less than `grace` ago is
    /// served instead of failing, provided the token's `exp` minus the [`skew`](Self::skew)
    /// has not passed and not all of its permissions have expired. Each such serve increments
    /// `uma_cache_stale_served_total` and emits an event `uma.cache.stale_served` carrying the
    /// token's fingerprint: at WARN for the first in any 30 s (with the number of serves since
    /// the previous WARN one), at DEBUG for the others, so that an outage does not flood the
    /// logs. Inactive answers are never served stale.
    ///
    /// Active results then stay in memory for up to `max_ttl + grace`. While stale-if-error is
    /// on, freshness is tracked in whole seconds of the layer's clock, so a sub-second
    /// `max_ttl` effectively becomes one second. `Duration::ZERO` turns it off.
    ///
    /// Defaults to `Duration::ZERO` (off).
    pub fn stale_if_error(mut self, grace: Duration) -> Self {
        self.settings.stale_if_error = grace;
        self
    }

    /// Adds the fleet's shared level on Redis (feature `redis`): see [`SharedCache`] for what
    /// it stores, how entries are protected, and how revocations reach every replica.
    ///
    /// The local cache stays in front of it with these settings; give every replica the same
    /// ones, since the replica that asks the AS sets an entry's lifetime for the fleet.
    #[cfg(feature = "redis")]
    pub fn shared(mut self, shared: SharedCache) -> Self {
        self.shared = Some(shared);
        self
    }

    /// Builds the cache.
    #[must_use]
    pub fn build(self) -> IntrospectionCache {
        metrics::describe();
        let s = self.settings;
        let hasher = DigestHash::random();
        let positive = Table::new("positive", s.max_entries, hasher);
        let negative = (!s.negative_ttl.is_zero())
            .then(|| Table::new("negative", s.negative_max_entries, hasher));
        let inner = Arc::new(Inner {
            settings: s,
            policy: lifetime::Policy {
                max_ttl: s.max_ttl,
                skew: s.skew,
                allow_without_exp: s.cache_without_exp,
                negative_ttl: s.negative_ttl,
                stale_grace: s.stale_if_error,
            },
            positive,
            negative,
            flights: Flights::default(),
            hits: metrics::HotCounter::cache_hits(),
            stale_log: Mutex::default(),
            derived: derived::Derived::default(),
            #[cfg(feature = "redis")]
            shared: self.shared.as_ref().map(|s| Arc::clone(s.shared())),
        });
        #[cfg(feature = "redis")]
        if let Some(shared) = &inner.shared {
            shared.attach(&inner);
        }
        IntrospectionCache { inner: Some(inner) }
    }
}

/// Where the answer to one lookup came from. The layer records it on the `uma.authorize` span
/// as `cache.source` (see [`as_str`](Self::as_str)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CacheSource {
    /// A fresh active result from the cache; no AS call.
    Hit,
    /// This request's own introspection call.
    Miss,
    /// An introspection call another request had started (single flight).
    Coalesced,
    /// The introspection call failed and an expired active result was served under
    /// stale-if-error.
    Stale,
    /// A recent inactive answer from the negative cache; no AS call.
    NegativeHit,
    /// The cache is disabled: this request called the AS itself.
    Disabled,
}

impl CacheSource {
    /// The value recorded as `cache.source`: `"hit"`, `"miss"`, `"coalesced"`, `"stale"`,
    /// `"negative_hit"` or `"disabled"`.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_uma::cache::CacheSource;
    ///
    /// assert_eq!(CacheSource::NegativeHit.as_str(), "negative_hit");
    /// assert!(CacheSource::Stale.is_hit());
    /// assert!(!CacheSource::Coalesced.is_hit());
    /// ```
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::Coalesced => "coalesced",
            Self::Stale => "stale",
            Self::NegativeHit => "negative_hit",
            Self::Disabled => "disabled",
        }
    }

    /// Whether the answer came from a stored entry without waiting for the AS (the layer's
    /// `cache.hit`): true for [`Hit`](Self::Hit), [`NegativeHit`](Self::NegativeHit) and
    /// [`Stale`](Self::Stale).
    #[must_use]
    pub fn is_hit(self) -> bool {
        matches!(self, Self::Hit | Self::NegativeHit | Self::Stale)
    }
}

/// One lookup's answer.
#[derive(Debug, Clone)]
pub(crate) struct Cached {
    /// The introspection result to decide on.
    pub(crate) value: Arc<Introspection>,
    /// Where it came from.
    pub(crate) source: CacheSource,
}

/// What is left of a revocation once the local cache has forgotten the token: telling the
/// fleet (feature `redis`).
pub(crate) type Forgetting =
    std::pin::Pin<Box<dyn Future<Output = Result<(), RevocationNotSent>> + Send + 'static>>;

/// A revocation that was applied locally but not broadcast to the fleet, or whose marker was
/// not written to Redis (feature `redis`): Redis was unreachable, failed or did not answer
/// within the shared cache's timeout. Other replicas may keep serving their cached answer
/// for the token, or a shared entry of it, until it expires; retry, or revoke the token at
/// the authorization server and wait out `max_ttl`.
///
/// Returned by [`UmaLayer::forget_token_everywhere`](crate::UmaLayer::forget_token_everywhere).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the revocation was not sent to the fleet: {reason}")]
#[non_exhaustive]
pub struct RevocationNotSent {
    reason: &'static str,
}

impl RevocationNotSent {
    #[cfg_attr(
        not(feature = "redis"),
        allow(dead_code, reason = "only the shared level fails to broadcast")
    )]
    pub(crate) fn new(reason: &'static str) -> Self {
        Self { reason }
    }
}

/// One layer's handle on an [`IntrospectionCache`]: which of the cache's entries are its own,
/// and the layer's clock.
///
/// The key part is the issuer of the layer's AS and how the layer checks RPTs, joined so that
/// two different pairs can never make the same key (the issuer's length leads). Layers with the
/// same pair share entries; no other code reads or makes the key part.
#[derive(Clone)]
pub(crate) struct CacheScope {
    namespace: Arc<str>,
    clock: Arc<dyn Clock>,
}

impl CacheScope {
    /// The scope of a layer whose AS is `issuer` (trimmed), that checks RPTs as `validation`
    /// says, and reads time from `clock`.
    pub(crate) fn new(issuer: &str, validation: &str, clock: Arc<dyn Clock>) -> Self {
        Self {
            namespace: Arc::from(format!("{}:{issuer} {validation}", issuer.len())),
            clock,
        }
    }

    /// The layer's clock: what freshness is checked against and entries are stored with.
    fn now(&self) -> i64 {
        self.clock.now_unix()
    }
}

impl fmt::Debug for CacheScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheScope")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl IntrospectionCache {
    /// A builder with the defaults documented on each setter.
    pub fn builder() -> IntrospectionCacheBuilder {
        IntrospectionCacheBuilder::default()
    }

    /// A cache that stores nothing and does not coalesce: every request calls the AS.
    ///
    /// For deployments where a revoked token must stop working at once ([RFC 7662 §4]). A
    /// layer with this cache keeps no permission-exchange grants either
    /// ([`PermissionExchange`](crate::keycloak::PermissionExchange)).
    ///
    /// [RFC 7662 §4]: https://www.rfc-editor.org/rfc/rfc7662#section-4
    #[must_use]
    pub fn disabled() -> Self {
        metrics::describe();
        Self { inner: None }
    }

    /// Forgets what this cache holds for `token`, in every scope (every layer sharing the
    /// cache, whatever its issuer or way of checking RPTs), for example from a revocation hook
    /// ([`UmaLayer::forget_token`](crate::UmaLayer::forget_token)). Requests that arrive after
    /// this returns call the AS again; an introspection call already in flight for the token
    /// still answers the requests waiting for it, but its result is not kept.
    ///
    /// Does not wait for anything but the table's shard locks: the token's entry in each scope
    /// is removed on the spot. Only when the cache has seen more scopes than it records (32)
    /// are the entries of the others found by a scan of the whole cache.
    ///
    /// With a [`SharedCache`] (feature `redis`), returns the writing of the token's revocation
    /// marker (which refuses its shared entries of every scope), the deletion of the shared
    /// entries of the scopes this cache records and the broadcast of the revocation to the
    /// fleet, to await or spawn.
    pub(crate) fn forget(&self, scope: &CacheScope, token: &str) -> Option<Forgetting> {
        let Some(inner) = &self.inner else {
            return None;
        };
        let fingerprint = Fingerprint::of(token.as_bytes());
        inner.flights.revoke_digest(key::token_digest(&fingerprint));
        inner.derived.forget(fingerprint);
        let (seen, complete) = inner.flights.namespaces_seen();
        let namespaces = seen.iter().map(|n| &**n);
        for namespace in std::iter::once(&*scope.namespace).chain(namespaces) {
            let key = KeyRef::new(namespace, &fingerprint);
            inner.positive.invalidate(&key);
            if let Some(negative) = &inner.negative {
                negative.invalidate(&key);
            }
        }
        if !complete {
            inner
                .positive
                .invalidate_digest(key::token_digest(&fingerprint));
            if let Some(negative) = &inner.negative {
                negative.invalidate_digest(key::token_digest(&fingerprint));
            }
        }
        #[cfg(feature = "redis")]
        if let Some(shared) = &inner.shared {
            let (id, at) = shared.revoke(fingerprint.as_bytes());
            let mut scopes = seen;
            if !scopes.iter().any(|n| **n == *scope.namespace) {
                scopes.push(Arc::clone(&scope.namespace));
            }
            let shared = Arc::clone(shared);
            return Some(Box::pin(async move {
                shared.forget(id, scopes, Some(at)).await
            }));
        }
        None
    }

    /// The fleet's shared level, when the cache has one (feature `redis`).
    #[cfg(feature = "redis")]
    #[must_use]
    pub fn shared(&self) -> Option<SharedCache> {
        let shared = self.inner.as_ref()?.shared.as_ref()?;
        Some(SharedCache::from_shared(Arc::clone(shared)))
    }

    /// Forgets every cached result, for every layer sharing this cache. Calls in flight behave
    /// as described for [`UmaLayer::forget_token`](crate::UmaLayer::forget_token).
    pub fn invalidate_all(&self) {
        let Some(inner) = &self.inner else { return };
        inner.flights.revoke_all();
        inner.positive.invalidate_all();
        if let Some(negative) = &inner.negative {
            negative.invalidate_all();
        }
        inner.derived.forget_all();
    }

    /// Whether the cache keeps anything (not [`disabled`](Self::disabled)).
    pub(crate) fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Registers a cache of answers derived from tokens (a layer's permission exchange), which
    /// then forgets a token whenever this cache does: [`forget`](Self::forget), a revocation
    /// heard from the fleet, [`invalidate_all`](Self::invalidate_all). Nothing to do for a
    /// disabled cache, whose layers keep no derived answers either.
    pub(crate) fn add_derived(&self, cache: std::sync::Weak<dyn DerivedCache>) {
        if let Some(inner) = &self.inner {
            inner.derived.add(cache);
        }
    }

    /// How many entries (active and inactive) the cache holds, the expired ones (as of the
    /// latest insert's clock reading) removed first. For tests and benchmarks; `0` when
    /// disabled.
    pub async fn entry_count(&self) -> u64 {
        let Some(inner) = &self.inner else { return 0 };
        let mut count = inner.positive.entry_count();
        if let Some(negative) = &inner.negative {
            count = count.saturating_add(negative.entry_count());
        }
        count
    }

    /// The introspection result for `token` in `scope`: from the cache when fresh, otherwise
    /// from `fetch`, coalesced with any concurrent miss on the same key.
    ///
    /// `fetch` is called on a miss to make the introspection future; the future is only
    /// polled if this request leads the call, so creating it must have no side effects. It
    /// runs in a task of its own (see "Concurrent calls" on [`IntrospectionCache`]), hence
    /// `Send + 'static`.
    ///
    /// Computes the token's fingerprint (one SHA-256); a caller that already has it should
    /// use [`get_or_fetch_by_fingerprint`](Self::get_or_fetch_by_fingerprint).
    ///
    /// # Errors
    ///
    /// The error of the introspection call this request waited for, unless stale-if-error
    /// served an expired entry instead.
    #[cfg_attr(
        not(test),
        allow(
            dead_code,
            reason = "the layer hashes once and calls get_or_fetch_by_fingerprint"
        )
    )]
    pub(crate) async fn get_or_fetch<F, Fut>(
        &self,
        scope: &CacheScope,
        token: &Rpt,
        fetch: F,
    ) -> Result<Cached, CallError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Introspection, CallError>> + Send + 'static,
    {
        if self.inner.is_none() {
            return fetch_uncached(fetch).await;
        }
        self.get_or_fetch_by_fingerprint(scope, &token.fingerprint(), fetch)
            .await
    }

    /// `scope` with its namespace interned by this cache, so that looking up its entries
    /// compares namespaces by address (a layer's scope is made once, at build).
    pub(crate) fn adopt(&self, scope: CacheScope) -> CacheScope {
        match self.inner.as_ref() {
            Some(inner) => CacheScope {
                namespace: inner.flights.intern(&scope.namespace),
                clock: scope.clock,
            },
            None => scope,
        }
    }

    /// A stored answer for the token, if one can be had at once (a fresh active result, or an
    /// inactive one from the negative cache): the layer's synchronous hit path, which then
    /// needs no future of its own. `None` on a miss or when the cache is disabled; the caller
    /// then goes
    /// through [`get_or_fetch_by_fingerprint`](Self::get_or_fetch_by_fingerprint).
    /// Freshness is checked at `now`, the layer's clock reading for the request.
    pub(crate) fn peek(
        &self,
        scope: &CacheScope,
        fingerprint: &Fingerprint,
        now: i64,
    ) -> Option<Cached> {
        let inner = self.inner.as_ref()?;
        inner.lookup(&KeyRef::new(&scope.namespace, fingerprint), now)
    }

    /// [`get_or_fetch`](Self::get_or_fetch) for a token known by its fingerprint
    /// ([`Rpt::fingerprint`]), so that a request hashes its token only once.
    ///
    /// # Errors
    ///
    /// As [`get_or_fetch`](Self::get_or_fetch).
    pub(crate) async fn get_or_fetch_by_fingerprint<F, Fut>(
        &self,
        scope: &CacheScope,
        fingerprint: &Fingerprint,
        fetch: F,
    ) -> Result<Cached, CallError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Introspection, CallError>> + Send + 'static,
    {
        match &self.inner {
            None => fetch_uncached(fetch).await,
            Some(inner) => inner.get_or_fetch(scope, fingerprint, fetch).await,
        }
    }
}

impl Default for IntrospectionCache {
    /// `IntrospectionCache::builder().build()`.
    fn default() -> Self {
        Self::builder().build()
    }
}

impl fmt::Debug for IntrospectionCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("IntrospectionCache");
        match &self.inner {
            None => d.field("enabled", &false).finish(),
            Some(inner) => d
                .field("enabled", &true)
                .field("settings", &inner.settings)
                .finish_non_exhaustive(),
        }
    }
}
