//! The second cache level, shared by a fleet of replicas on Redis (feature `redis`):
//! [`SharedCache`].
//!
//! # What goes to Redis
//!
//! - **Key**: `{prefix}{hex(HMAC-SHA256(secret, "tower-uma/key" ‖ len(scope) ‖ scope ‖
//!   fleet id))}`, where the *fleet id* of a token is `HMAC-SHA256(secret, "tower-uma/token" ‖
//!   SHA-256(token))` ([`fleet_id`]). Neither the token nor its unkeyed digest ever leaves
//!   the process.
//! - **Value**: `tag ‖ payload`, `tag = HMAC-SHA256(secret, "tower-uma/value" ‖ key ‖
//!   payload)`, `payload` the JSON of the introspection result (format 3) with the time its
//!   writer started asking the AS for it (`asked_at_ms`, before the call) and the time it
//!   stops being fresh, at most `max(max_ttl, negative_ttl)` after that asking. A value whose
//!   tag does not verify (written by someone without the secret, or copied from another key)
//!   or of another format (format 2 had the time of writing instead) is dropped, counted and
//!   logged.
//! - **Lifetime**: the local cache's own rules (`min(max_ttl, exp − skew)` for active results,
//!   `negative_ttl` for inactive ones), as a Redis `PX` expiry and as the authenticated
//!   `fresh_until`, which a replica that reads the entry keeps to: an entry is never served,
//!   from Redis or from a local copy of it, past the time the replica that asked the AS gave it.
//! - **Revocation marker**: `{prefix}revoked:{hex(HMAC-SHA256(secret, "tower-uma/marker" ‖
//!   fleet id))}`, holding the revocation time (milliseconds since the epoch, the revoking
//!   replica's clock), written by the replica that revokes (a later time is never replaced
//!   by an earlier one), for `max(max_ttl, negative_ttl) + 2 × skew + 2 s`. Every read of a
//!   shared entry fetches the token's marker in the same `MGET`, and refuses an entry asked
//!   for at or before the marker's time plus the skew, whatever scope wrote it and whether or
//!   not any cache of that scope is still alive; a marker that is not a number refuses the
//!   entry, and a read that fails uses neither.
//! - **Revocation message**: `hex(fleet id) ‖ hex(HMAC-SHA256(secret, "tower-uma/revoke" ‖
//!   len(channel) ‖ channel ‖ fleet id))` on the channel ([`SharedCacheBuilder::channel`]);
//!   a message whose MAC does not verify is dropped and counted. Each replica hides its local
//!   entries whose digest has that fleet id (one HMAC per entry, a scan of the local table at
//!   once), detaches its calls in flight for it, remembers the revocation
//!   for the longest lifetime of an entry plus the skew (by time, not by count) so that an
//!   entry asked for before it (or up to the skew after, in milliseconds of the writer's clock)
//!   is refused even if it comes back, and deletes the Redis keys of its scopes in a task of
//!   its own. That deletion (and the sender's) only tidies up: the marker is what keeps
//!   the entries of other scopes, and those written after it, from being used.
//! - **Liveness**: the channel's connection is PINGed after a second of silence; no answer
//!   within `max(timeout, 500 ms)` counts as a lost subscription. Every subscription, the
//!   first included, empties the local cache.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use hmac::{Hmac, Mac};
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::gate::breaker::{Admission, Breaker, BreakerSettings};
use crate::introspect::Introspection;

use super::store::Inner;
use super::{Key, RevocationNotSent, lifetime};

type HmacSha256 = Hmac<Sha256>;

/// The shortest fleet secret accepted, in bytes.
pub const MIN_SECRET_LEN: usize = 32;

/// The target of the shared cache's events.
const LOG_TARGET: &str = "tower_uma::cache::shared";

/// Domain separation of the three keyed hashes made with the fleet secret.
const TOKEN_LABEL: &[u8] = b"tower-uma/token\0";
const KEY_LABEL: &[u8] = b"tower-uma/key\0";
const VALUE_LABEL: &[u8] = b"tower-uma/value\0";
const REVOKE_LABEL: &[u8] = b"tower-uma/revoke\0";
const MARKER_LABEL: &[u8] = b"tower-uma/marker\0";

/// The layout of stored values; bumped when it changes, so that old values are ignored.
/// 3: `asked_at_ms`, when the writer started asking for the answer (2 had `stored_at_ms`,
/// when it wrote it, which a revocation marker cannot be compared with safely).
const FORMAT: u64 = 3;

/// Writes a revocation marker unless one with a later time is there: `KEYS[1]` the marker,
/// `ARGV[1]` the revocation time (milliseconds since the epoch), `ARGV[2]` its lifetime
/// (milliseconds). A marker whose value is not a number is replaced.
const MARK_SCRIPT: &str = "local at = tonumber(ARGV[1]) \
local cur = tonumber(redis.call('GET', KEYS[1]) or '') \
if cur == nil or cur < at then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end \
return 1";

/// How long the revocation channel may stay silent before a PING checks that it is alive.
const PING_EVERY: Duration = Duration::from_secs(1);

/// The fleet id of a token whose SHA-256 is `digest`: `HMAC-SHA256(secret, label ‖ digest)`.
///
/// This is what replicas agree on about a token: it names it on the revocation channel and
/// in Redis keys. `digest` must be the token's SHA-256 ([`Fingerprint::of`]), which is what
/// the local cache's keys hold today (`key.rs`); a replica tells which of its entries a
/// revocation names by this hash of their key. Should the local key stop being the token's
/// SHA-256, the callers must pass `Fingerprint::of(token)` instead (and the local entries
/// carry their fleet id).
///
/// [`Fingerprint::of`]: crate::token::Fingerprint::of
pub(super) fn fleet_id(mac: &HmacSha256, digest: &[u8; 32]) -> [u8; 32] {
    let mut mac = mac.clone();
    mac.update(TOKEN_LABEL);
    mac.update(digest);
    mac.finalize().into_bytes().into()
}

/// A second cache level on Redis, shared by every replica configured with the same URL,
/// secret and channel (feature `redis`).
///
/// Give it to [`IntrospectionCacheBuilder::shared`](crate::cache::IntrospectionCacheBuilder::shared).
/// On a local miss the cache reads Redis before the authorization server, and writes what
/// the AS answered there, with the local cache's lifetime rules, so that a token costs one
/// introspection per lifetime for the whole fleet instead of one per replica.
/// [`UmaLayer::forget_token`](crate::UmaLayer::forget_token) writes the token's revocation
/// marker, deletes the shared entries it knows and broadcasts the revocation: every replica
/// drops its own entry.
///
/// # What a revocation guarantees
///
/// Once [`UmaLayer::forget_token_everywhere`](crate::UmaLayer::forget_token_everywhere)
/// returned `Ok` (the marker written and the revocation published), no replica of the fleet
/// uses a shared entry of the token asked for at or before the revocation: not one of
/// another scope (a 33rd layer on one cache, a lazy tenant no longer live), not one written
/// to Redis after the revocation by a replica whose call to the AS crossed it, and not on
/// a replica that never heard the broadcast (started after it, or resubscribed after a cut:
/// the marker is read with every entry). This holds while the replicas have the same
/// `max_ttl`, `negative_ttl` and `skew`, their clocks are within `skew` of each other, and
/// nobody with write access to Redis deletes the marker. Entries asked for after the
/// revocation (plus the skew) are used: revoke the token at the AS first. Local entries are
/// dropped by the broadcast, and by every (re)subscription.
/// When it returns `Err`, the marker or the publication may be missing; retry.
///
/// # Failures
///
/// Redis is only ever a cache: every call to it is bounded by
/// [`timeout`](SharedCacheBuilder::timeout), and after a failure (refused connection,
/// timeout, error answer) a circuit stops trying for
/// [`open_interval`](SharedCacheBuilder::open_interval) (doubling while probes fail, at most
/// 16 times that), during which requests go to the local cache and the AS as if there were no
/// shared level. Nothing read from Redis grants anything unless its MAC verifies.
/// While the revocation channel is not subscribed, Redis is not read (a replica that cannot
/// hear revocations must not trust entries others wrote); whenever it is subscribed, the
/// first time included, the local cache is emptied, since revocations may have been missed
/// meanwhile. A channel that stays silent is PINGed every second, so that a connection that
/// died without closing counts as lost within about a second plus `max(timeout, 500 ms)`.
///
/// # Limits
///
/// Run the Redis without persistence, or flush it when it restarts: a snapshot restored after
/// a restart brings back entries deleted since without the markers written since, and a
/// replica restarted meanwhile does not remember their revocation. [`IntrospectionCache::invalidate_all`](crate::IntrospectionCache::invalidate_all)
/// (`UmaLayer::forget_all_tokens`) empties the local cache only, not Redis nor the fleet.
///
/// # Single flight
///
/// Concurrent misses are coalesced per process only. Coalescing fleet-wide (a short lock in
/// Redis) would add a round trip to every miss, make a replica wait for another's call to
/// the AS without seeing its progress, and need a timeout after which it calls anyway; the
/// most it saves is one call per replica that misses the same token in the same instant.
///
/// # Metrics
///
/// `uma_shared_cache_hits_total`, `uma_shared_cache_misses_total`,
/// `uma_shared_cache_errors_total{op}` (`get`, `put`, `forget`, `subscribe`; timeouts
/// included), `uma_shared_cache_skipped_total` (circuit open or not subscribed),
/// `uma_shared_cache_rejected_total` (values that failed their MAC or could not be read),
/// `uma_shared_cache_revocations_total{direction}` (`sent`, `received`) and the gauge
/// `uma_shared_cache_up` (`1` while the circuit is closed and the channel subscribed).
#[derive(Clone)]
pub struct SharedCache {
    inner: Arc<Shared>,
}

/// Builds a [`SharedCache`]; see its docs.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tower_uma::cache::SharedCache;
///
/// let shared = SharedCache::builder("redis://127.0.0.1:6379/", [7_u8; 32])
///     .timeout(Duration::from_millis(50))
///     .channel("photos-api:revoked")
///     .build()?;
/// # let _ = shared;
/// # Ok::<(), tower_uma::cache::SharedCacheError>(())
/// ```
#[must_use]
pub struct SharedCacheBuilder {
    url: String,
    secret: Vec<u8>,
    timeout: Duration,
    channel: String,
    prefix: String,
    open_interval: Duration,
}

/// Why a [`SharedCache`] could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SharedCacheError {
    /// The Redis URL cannot be used.
    #[error("the Redis URL cannot be used: {0}")]
    Url(String),
    /// The fleet secret is shorter than [`MIN_SECRET_LEN`] bytes.
    #[error("the shared cache's secret must be at least {MIN_SECRET_LEN} bytes")]
    ShortSecret,
    /// The channel name or key prefix is empty.
    #[error("the shared cache's {0} must not be empty")]
    Empty(&'static str),
}

/// The state of the shared cache level, for health reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SharedHealth {
    /// Whether the circuit is closed (Redis answered the last call in time).
    pub reachable: bool,
    /// Whether the revocation channel is subscribed.
    pub subscribed: bool,
}

impl SharedHealth {
    /// Whether Redis is used: reachable and subscribed.
    #[must_use]
    pub fn is_up(self) -> bool {
        self.reachable && self.subscribed
    }
}

impl fmt::Display for SharedHealth {
    /// `shared_cache ok`, or `shared_cache degraded reachable=… subscribed=…`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_up() {
            f.write_str("shared_cache ok")
        } else {
            write!(
                f,
                "shared_cache degraded reachable={} subscribed={}",
                self.reachable, self.subscribed
            )
        }
    }
}

impl SharedCacheBuilder {
    /// The longest any Redis call may take (connecting included) before the cache gives up
    /// on it, opens the circuit and goes on without Redis.
    ///
    /// Defaults to 50 ms.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The Redis channel revocations are published on. Every replica of a fleet must use the
    /// same one; fleets sharing a Redis use different ones.
    ///
    /// Defaults to `tower-uma:revocations`.
    pub fn channel(mut self, channel: impl Into<String>) -> Self {
        self.channel = channel.into();
        self
    }

    /// What every key this cache writes starts with.
    ///
    /// Defaults to `tower-uma:`.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long the circuit stays open after a failure before one call probes Redis again
    /// (doubled while probes fail, up to 16 times this).
    ///
    /// Defaults to 1 second.
    pub fn open_interval(mut self, interval: Duration) -> Self {
        self.open_interval = interval;
        self
    }

    /// Checks the settings. Connects nothing: the connection and the channel's subscription
    /// are made on first use, from the tokio runtime.
    ///
    /// # Errors
    ///
    /// [`SharedCacheError`] for an unusable URL, a secret shorter than [`MIN_SECRET_LEN`]
    /// bytes, or an empty channel or prefix.
    pub fn build(self) -> Result<SharedCache, SharedCacheError> {
        if self.secret.len() < MIN_SECRET_LEN {
            return Err(SharedCacheError::ShortSecret);
        }
        if self.channel.is_empty() {
            return Err(SharedCacheError::Empty("channel"));
        }
        if self.prefix.is_empty() {
            return Err(SharedCacheError::Empty("key prefix"));
        }
        let client = redis::Client::open(self.url.as_str())
            .map_err(|e| SharedCacheError::Url(e.to_string()))?;
        let mac =
            HmacSha256::new_from_slice(&self.secret).map_err(|_| SharedCacheError::ShortSecret)?;
        describe();
        let epoch = Instant::now();
        Ok(SharedCache {
            inner: Arc::new(Shared {
                client,
                mac,
                timeout: self.timeout,
                channel: self.channel,
                prefix: self.prefix,
                breaker_settings: BreakerSettings {
                    threshold: 1,
                    base: self.open_interval,
                    max: self.open_interval.saturating_mul(16),
                },
                breaker: Mutex::new(Breaker::new(0)),
                epoch,
                connection: OnceLock::new(),
                subscribed: AtomicBool::new(false),
                subscriber: OnceLock::new(),
                caches: Mutex::new(Vec::new()),
                revoked: Mutex::new(Revoked::default()),
                keep_ms: AtomicI64::new(0),
                life_ms: AtomicI64::new(0),
                skew_ms: AtomicI64::new(0),
            }),
        })
    }
}

impl SharedCache {
    /// A builder for the Redis at `url` (`redis://host:port/db`, `rediss://` needs a TLS
    /// feature of the `redis` crate that this crate does not turn on), with the fleet's
    /// `secret` (at least [`MIN_SECRET_LEN`] bytes, the same on every replica, kept secret:
    /// whoever has it can mint grants in Redis).
    pub fn builder(url: impl Into<String>, secret: impl AsRef<[u8]>) -> SharedCacheBuilder {
        SharedCacheBuilder {
            url: url.into(),
            secret: secret.as_ref().to_vec(),
            timeout: Duration::from_millis(50),
            channel: "tower-uma:revocations".to_owned(),
            prefix: "tower-uma:".to_owned(),
            open_interval: Duration::from_secs(1),
        }
    }

    /// Whether Redis answered the last call in time, and whether the revocation channel is
    /// subscribed.
    #[must_use]
    pub fn health(&self) -> SharedHealth {
        SharedHealth {
            reachable: self.inner.reachable(),
            subscribed: self.inner.subscribed.load(Ordering::SeqCst),
        }
    }

    /// The Redis key of `token`'s entry in the scope whose key part is `scope_key`, and the
    /// fleet id of `token` (hex).
    #[cfg(test)]
    fn key_for_test(&self, scope_key: &str, token: &str) -> (String, String) {
        let digest = crate::token::Fingerprint::of(token.as_bytes());
        let id = fleet_id(&self.inner.mac, digest.as_bytes());
        (self.inner.redis_key(scope_key, &id), hex(&id))
    }

    pub(super) fn shared(&self) -> &Arc<Shared> {
        &self.inner
    }

    pub(super) fn from_shared(inner: Arc<Shared>) -> Self {
        Self { inner }
    }
}

impl fmt::Debug for SharedCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedCache")
            .field("channel", &self.inner.channel)
            .field("prefix", &self.inner.prefix)
            .field("timeout", &self.inner.timeout)
            .field("health", &self.health())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for SharedCacheBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Neither the secret nor the URL (which may carry a password).
        f.debug_struct("SharedCacheBuilder")
            .field("channel", &self.channel)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Fleet ids revoked recently, with when (the replica's clock, milliseconds since the
/// epoch): a value asked for before that (or up to the clock skew after) is refused. A
/// revocation is kept for as long as an entry asked for before it can live (`keep_ms`), then
/// dropped in the next prune; prunes run when the map has doubled since the last one.
#[derive(Default)]
struct Revoked {
    at: HashMap<[u8; 32], i64>,
    next_prune: usize,
}

/// The fewest revocations kept before a prune is worth it.
const PRUNE_FLOOR: usize = 1024;

impl Revoked {
    fn add(&mut self, id: [u8; 32], at_ms: i64, keep_ms: i64) {
        let at = self.at.entry(id).or_insert(at_ms);
        *at = (*at).max(at_ms);
        if self.at.len() >= self.next_prune {
            let horizon = at_ms.saturating_sub(keep_ms);
            self.at.retain(|_, t| *t >= horizon);
            self.next_prune = self.at.len().saturating_mul(2).max(PRUNE_FLOOR);
        }
    }

    /// Whether a value for `id` asked for at `stored_at_ms` (the writer's clock) may predate a
    /// revocation of `id`, allowing `skew_ms` between the clocks.
    fn refuses(&self, id: &[u8; 32], stored_at_ms: i64, skew_ms: i64) -> bool {
        self.at
            .get(id)
            .is_some_and(|at| stored_at_ms <= at.saturating_add(skew_ms))
    }
}

/// What [`SharedCache`] shares between its clones.
pub(super) struct Shared {
    client: redis::Client,
    /// Keyed with the fleet secret; cloned for each hash.
    mac: HmacSha256,
    timeout: Duration,
    channel: String,
    prefix: String,
    breaker_settings: BreakerSettings,
    breaker: Mutex<Breaker>,
    /// The breaker's clock starts here.
    epoch: Instant,
    connection: OnceLock<ConnectionManager>,
    subscribed: AtomicBool,
    /// Set once the subscriber task is started.
    subscriber: OnceLock<()>,
    /// The caches that use this level, told about revocations.
    caches: Mutex<Vec<Weak<Inner>>>,
    revoked: Mutex<Revoked>,
    /// How long revocations are kept: the longest lifetime of an entry (`max_ttl` or
    /// `negative_ttl`) plus the skew, of the caches attached (milliseconds).
    keep_ms: AtomicI64,
    /// The longest lifetime of an entry (`max_ttl` or `negative_ttl`) of the caches attached
    /// (milliseconds): an entry written to Redis is fresh for at most this long after its
    /// writer started asking the AS, and a revocation marker outlives it.
    life_ms: AtomicI64,
    /// The clock skew allowed between replicas: the largest `skew` of the caches attached
    /// (milliseconds).
    skew_ms: AtomicI64,
}

/// An entry read from Redis, authenticated.
pub(super) struct Found {
    pub(super) value: Introspection,
    /// When it stops being fresh (seconds since the epoch).
    pub(super) fresh_until: i64,
}

impl Shared {
    fn now_ms(&self) -> i64 {
        i64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(i64::MAX)
    }

    fn reachable(&self) -> bool {
        let breaker = self.breaker.lock().unwrap_or_else(PoisonError::into_inner);
        breaker.would_admit(self.now_ms())
            && breaker.health().0 == crate::gate::BreakerState::Closed
    }

    /// Registers a cache to tell about revocations, and starts the subscriber if it is not.
    pub(super) fn attach(self: &Arc<Self>, cache: &Arc<Inner>) {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let policy = &cache.policy;
        let skew = ms(policy.skew);
        let life = ms(policy.max_ttl.max(policy.negative_ttl));
        let keep = life.saturating_add(skew).saturating_add(1000);
        self.skew_ms.fetch_max(skew, Ordering::SeqCst);
        self.life_ms.fetch_max(life, Ordering::SeqCst);
        self.keep_ms.fetch_max(keep, Ordering::SeqCst);
        let mut caches = self.caches.lock().unwrap_or_else(PoisonError::into_inner);
        caches.retain(|c| c.strong_count() > 0);
        caches.push(Arc::downgrade(cache));
        drop(caches);
        self.start_subscriber();
    }

    fn start_subscriber(self: &Arc<Self>) {
        if self.subscriber.get().is_some() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.subscriber.set(()).is_ok() {
            runtime.spawn(subscribe(Arc::downgrade(self)));
        }
    }

    fn connection(self: &Arc<Self>) -> Option<ConnectionManager> {
        self.start_subscriber();
        if let Some(c) = self.connection.get() {
            return Some(c.clone());
        }
        tokio::runtime::Handle::try_current().ok()?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1)
            .set_max_delay(self.timeout);
        match ConnectionManager::new_lazy_with_config(self.client.clone(), config) {
            Ok(c) => Some(self.connection.get_or_init(|| c).clone()),
            Err(error) => {
                tracing::warn!(target: LOG_TARGET, %error, "cannot set up the Redis connection");
                None
            }
        }
    }

    /// Asks the circuit whether to call Redis; `None` when not (counted as skipped).
    fn admit(&self) -> Option<bool> {
        if !self.subscribed.load(Ordering::SeqCst) {
            metrics::counter!("uma_shared_cache_skipped_total").increment(1);
            return None;
        }
        let now = self.now_ms();
        let (admission, _) = self
            .breaker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .admit(now);
        match admission {
            Admission::Call => Some(false),
            Admission::Probe => Some(true),
            Admission::Reject => {
                metrics::counter!("uma_shared_cache_skipped_total").increment(1);
                None
            }
        }
    }

    fn record(&self, op: &'static str, probe: bool, ok: bool) {
        let now = self.now_ms();
        let mut breaker = self.breaker.lock().unwrap_or_else(PoisonError::into_inner);
        let transition = if ok {
            breaker.success(now, probe)
        } else {
            breaker.failure(now, probe, &self.breaker_settings)
        };
        drop(breaker);
        if !ok {
            metrics::counter!("uma_shared_cache_errors_total", "op" => op).increment(1);
        }
        if let Some(t) = transition {
            self.gauge();
            if ok {
                tracing::info!(target: LOG_TARGET, "Redis answers again; the shared cache is used");
            } else {
                tracing::warn!(
                    target: LOG_TARGET,
                    open_ms = u64::try_from(t.open_for.as_millis()).unwrap_or(u64::MAX),
                    op,
                    "Redis failed or timed out; going on without the shared cache for a while"
                );
            }
        }
    }

    fn gauge(&self) {
        let up = self.reachable() && self.subscribed.load(Ordering::SeqCst);
        metrics::gauge!("uma_shared_cache_up").set(if up { 1.0 } else { 0.0 });
    }

    /// Runs `call` on the connection within the timeout, through the circuit. `None` when
    /// skipped, failed or late.
    async fn call<T, F, Fut>(self: &Arc<Self>, op: &'static str, call: F) -> Option<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        // A cache built outside a runtime subscribes on its first use.
        self.start_subscriber();
        let probe = self.admit()?;
        let Some(connection) = self.connection() else {
            self.record(op, probe, false);
            return None;
        };
        match tokio::time::timeout(self.timeout, call(connection)).await {
            Ok(Ok(value)) => {
                self.record(op, probe, true);
                Some(value)
            }
            Ok(Err(error)) => {
                tracing::debug!(target: LOG_TARGET, %error, op, "Redis call failed");
                self.record(op, probe, false);
                None
            }
            Err(_) => {
                tracing::debug!(target: LOG_TARGET, op, "Redis call timed out");
                self.record(op, probe, false);
                None
            }
        }
    }

    fn redis_key(&self, scope: &str, id: &[u8; 32]) -> String {
        let mut mac = self.mac.clone();
        mac.update(KEY_LABEL);
        mac.update(&(scope.len() as u64).to_be_bytes());
        mac.update(scope.as_bytes());
        mac.update(id);
        let tag: [u8; 32] = mac.finalize().into_bytes().into();
        format!("{}{}", self.prefix, hex(&tag))
    }

    fn value_mac(&self, key: &str, payload: &[u8]) -> HmacSha256 {
        let mut mac = self.mac.clone();
        mac.update(VALUE_LABEL);
        mac.update(&(key.len() as u64).to_be_bytes());
        mac.update(key.as_bytes());
        mac.update(payload);
        mac
    }

    /// The Redis key of the revocation marker of the token whose fleet id is `id`:
    /// `{prefix}revoked:{hex(HMAC-SHA256(secret, "tower-uma/marker" ‖ fleet id))}`.
    fn marker_key(&self, id: &[u8; 32]) -> String {
        let mut mac = self.mac.clone();
        mac.update(MARKER_LABEL);
        mac.update(id);
        let tag: [u8; 32] = mac.finalize().into_bytes().into();
        format!("{}revoked:{}", self.prefix, hex(&tag))
    }

    /// The authenticated entry for `key` in Redis, if there is one fresh at `now` that no
    /// revocation marker read with it (in the same MGET) refuses.
    pub(super) async fn get(self: &Arc<Self>, key: &Key, now: i64) -> Option<Found> {
        let id = fleet_id(&self.mac, &key.digest);
        let redis_key = self.redis_key(&key.namespace, &id);
        let keys = [redis_key.clone(), self.marker_key(&id)];
        // Both or neither: a failed or late read uses no entry.
        let read: Vec<Option<Vec<u8>>> = self
            .call("get", |mut c| async move { c.mget(&keys).await })
            .await?;
        let mut read = read.into_iter();
        let (bytes, marker) = (read.next().flatten(), read.next().flatten());
        let Some(bytes) = bytes else {
            metrics::counter!("uma_shared_cache_misses_total").increment(1);
            return None;
        };
        let opened = match marker.as_deref().map(read_marker) {
            Some(None) => Err("its token's revocation marker is unreadable"),
            Some(Some(at)) => self.open(&redis_key, &bytes, &id, now, Some(at)),
            None => self.open(&redis_key, &bytes, &id, now, None),
        };
        match opened {
            Ok(Some(found)) => {
                metrics::counter!("uma_shared_cache_hits_total").increment(1);
                Some(found)
            }
            Ok(None) => {
                metrics::counter!("uma_shared_cache_misses_total").increment(1);
                None
            }
            Err(why) => {
                metrics::counter!("uma_shared_cache_rejected_total").increment(1);
                tracing::warn!(
                    target: LOG_TARGET,
                    reason = why,
                    "refused an entry of the shared cache; asking the authorization server"
                );
                None
            }
        }
    }

    /// Checks and reads a stored value: `Ok(None)` for one that is no longer fresh or
    /// predates a revocation (heard, or `marker`: the time in the token's revocation marker),
    /// `Err` for one that fails its MAC or cannot be read.
    fn open(
        &self,
        redis_key: &str,
        bytes: &[u8],
        id: &[u8; 32],
        now: i64,
        marker: Option<i64>,
    ) -> Result<Option<Found>, &'static str> {
        if bytes.len() < 32 {
            return Err("too short to carry a MAC");
        }
        let (tag, payload) = bytes.split_at(32);
        self.value_mac(redis_key, payload)
            .verify_slice(tag)
            .map_err(|_| "its MAC does not verify")?;
        let value: Value = serde_json::from_slice(payload).map_err(|_| "unreadable payload")?;
        if value.get("format").and_then(Value::as_u64) != Some(FORMAT) {
            return Err("unknown format");
        }
        let int = |name| value.get(name).and_then(Value::as_i64);
        let (Some(asked_at), Some(fresh_until)) = (int("asked_at_ms"), int("fresh_until")) else {
            return Err("unreadable payload");
        };
        let result = value.get("result").ok_or("unreadable payload")?;
        let result = Introspection::from_value(result).map_err(|_| "unreadable result")?;
        if now >= fresh_until {
            return Ok(None);
        }
        let skew = self.skew_ms.load(Ordering::Relaxed);
        // Asked at or before the revocation (within the skew between the clocks): the AS
        // may have answered before it.
        if marker.is_some_and(|at| asked_at <= at.saturating_add(skew)) {
            return Ok(None);
        }
        let revoked = self.revoked.lock().unwrap_or_else(PoisonError::into_inner);
        if revoked.refuses(id, asked_at, skew) {
            return Ok(None);
        }
        Ok(Some(Found {
            value: result,
            fresh_until,
        }))
    }

    /// Writes what the AS answered for `key`, with the local cache's lifetime rules, unless
    /// the call was revoked meanwhile; deletes it again if it was revoked while writing.
    ///
    /// `asked_at_ms` is when this replica started asking (the system clock, before the
    /// call to the AS): a revocation marker at or after it refuses the entry, whenever it
    /// was written. The entry is fresh for at most the longest lifetime after it, so that
    /// the marker outlives it.
    pub(super) async fn put(
        self: &Arc<Self>,
        key: &Key,
        value: &Introspection,
        times: Option<lifetime::Times>,
        revoked: &AtomicBool,
        now: i64,
        asked_at_ms: i64,
    ) {
        let Some(times) = times else { return };
        // `now` is the layer's clock (the system clock but in tests); what is left of the
        // lifetime is measured on the system clock, as `asked_at_ms` is.
        let elapsed_ms = unix_now_ms().saturating_sub(asked_at_ms).max(0);
        let left_ms = self
            .life_ms
            .load(Ordering::Relaxed)
            .saturating_sub(elapsed_ms);
        let latest = now.saturating_add(left_ms.div_euclid(1000));
        let fresh_until = times.fresh_until.min(latest);
        let Ok(ttl_ms) = u64::try_from((fresh_until - now).saturating_mul(1000)) else {
            return;
        };
        if ttl_ms == 0 || revoked.load(Ordering::SeqCst) {
            return;
        }
        let id = fleet_id(&self.mac, &key.digest);
        let redis_key = self.redis_key(&key.namespace, &id);
        let payload = json!({
            "format": FORMAT,
            "asked_at_ms": asked_at_ms,
            "fresh_until": fresh_until,
            "result": to_json(value),
        });
        let Ok(payload) = serde_json::to_vec(&payload) else {
            return;
        };
        let tag = self.value_mac(&redis_key, &payload).finalize().into_bytes();
        let mut bytes = Vec::with_capacity(32 + payload.len());
        bytes.extend_from_slice(&tag);
        bytes.extend_from_slice(&payload);
        let k = redis_key.clone();
        let written: Option<()> = self
            .call(
                "put",
                |mut c| async move { c.pset_ex(k, bytes, ttl_ms).await },
            )
            .await;
        if written.is_some() && revoked.load(Ordering::SeqCst) {
            let _: Option<()> = self
                .call("put", |mut c| async move { c.del(redis_key).await })
                .await;
        }
    }

    /// Deletes the entries of the token whose fleet id is `id` in `scopes`, and, when
    /// `revoked_at` is given (the sender's revocation, milliseconds since the epoch), writes
    /// the token's revocation marker and tells the fleet. The three are sent at once; the
    /// marker and the publication are tried even if the deletion fails.
    ///
    /// The marker is what refuses the token's entries of every scope, including those no
    /// cache of this process knows or that no replica hearing the publication knows: a value
    /// asked for at or before `revoked_at` (within the skew) is never used while the marker
    /// lives, which is longer than any such value stays fresh. The deletion only tidies up.
    ///
    /// # Errors
    ///
    /// [`RevocationNotSent`] when the marker was not written or the revocation was not
    /// published (no runtime, Redis unreachable, failed or late); a failed deletion alone is
    /// logged and counted.
    pub(super) async fn forget(
        self: &Arc<Self>,
        id: [u8; 32],
        scopes: Vec<Arc<str>>,
        revoked_at: Option<i64>,
    ) -> Result<(), RevocationNotSent> {
        let publish = revoked_at.is_some();
        let keys: Vec<String> = scopes.iter().map(|s| self.redis_key(s, &id)).collect();
        // Straight to Redis, whatever the circuit: a revocation is worth a try, and the
        // timeout bounds it.
        let Some(connection) = self.connection() else {
            metrics::counter!("uma_shared_cache_errors_total", "op" => "forget").increment(1);
            return Err(RevocationNotSent::new(
                "no Redis connection (outside a tokio runtime)",
            ));
        };
        let timeout = self.timeout;
        let mut c = connection.clone();
        let delete = async move {
            if keys.is_empty() {
                return Ok(Ok(()));
            }
            tokio::time::timeout(timeout, async move { c.del::<_, ()>(keys).await }).await
        };
        let mut c = connection.clone();
        let marker = self.marker_key(&id);
        let skew = self.skew_ms.load(Ordering::Relaxed);
        // Outlives every entry asked for up to the skew after the revocation (fresh at most
        // `life_ms` after its asking, by a clock up to the skew off), with a second to spare.
        let marker_ms = self
            .life_ms
            .load(Ordering::Relaxed)
            .saturating_add(skew.saturating_mul(2))
            .saturating_add(2000);
        let mark = async move {
            let Some(at) = revoked_at else {
                return Ok(Ok(()));
            };
            tokio::time::timeout(timeout, async move {
                redis::cmd("EVAL")
                    .arg(MARK_SCRIPT)
                    .arg(1)
                    .arg(marker)
                    .arg(at)
                    .arg(marker_ms)
                    .query_async::<()>(&mut c)
                    .await
            })
            .await
        };
        let mut c = connection;
        let message = self.revocation_message(&id);
        let channel = self.channel.clone();
        let send = async move {
            if !publish {
                return Ok(Ok(()));
            }
            tokio::time::timeout(timeout, async move {
                c.publish::<_, _, ()>(channel, message).await
            })
            .await
        };
        let (deleted, marked, sent) = futures_util::future::join3(delete, mark, send).await;
        let failed = |what: &str, result: Result<redis::RedisResult<()>, _>| -> bool {
            let error = match result {
                Ok(Ok(())) => return false,
                Ok(Err(error)) => error.to_string(),
                Err(tokio::time::error::Elapsed { .. }) => "timed out".to_owned(),
            };
            metrics::counter!("uma_shared_cache_errors_total", "op" => "forget").increment(1);
            tracing::warn!(target: LOG_TARGET, %error, "could not {what} a revocation in Redis");
            true
        };
        failed("delete the entries of", deleted);
        let unmarked = failed("mark", marked);
        if failed("broadcast", sent) {
            return Err(RevocationNotSent::new("Redis failed or timed out"));
        }
        if unmarked {
            return Err(RevocationNotSent::new(
                "the revocation marker was not written to Redis (failed or timed out)",
            ));
        }
        if publish {
            metrics::counter!("uma_shared_cache_revocations_total", "direction" => "sent")
                .increment(1);
        }
        Ok(())
    }

    /// The message that revokes `id` on the channel: `hex(id) ‖ hex(tag)`, `tag =
    /// HMAC-SHA256(secret, "tower-uma/revoke" ‖ len(channel) ‖ channel ‖ id)`.
    fn revocation_message(&self, id: &[u8; 32]) -> String {
        let tag: [u8; 32] = self.revocation_mac(id).finalize().into_bytes().into();
        let mut message = hex(id);
        message.push_str(&hex(&tag));
        message
    }

    fn revocation_mac(&self, id: &[u8; 32]) -> HmacSha256 {
        let mut mac = self.mac.clone();
        mac.update(REVOKE_LABEL);
        mac.update(&(self.channel.len() as u64).to_be_bytes());
        mac.update(self.channel.as_bytes());
        mac.update(id);
        mac
    }

    /// The fleet id a message heard on the channel revokes, if its MAC verifies.
    fn read_revocation(&self, message: &[u8]) -> Option<[u8; 32]> {
        if message.len() != 128 {
            return None;
        }
        let (id, tag) = message.split_at(64);
        let id = parse_hex(id)?;
        let tag = parse_hex(tag)?;
        self.revocation_mac(&id).verify_slice(&tag).ok()?;
        Some(id)
    }

    /// The fleet id of `digest` (for the local `forget`), remembered as revoked now, and
    /// when (milliseconds since the epoch), for its revocation marker.
    pub(super) fn revoke(&self, digest: &[u8; 32]) -> ([u8; 32], i64) {
        let id = fleet_id(&self.mac, digest);
        let now = unix_now_ms();
        self.remember(id, now);
        (id, now)
    }

    fn remember(&self, id: [u8; 32], now_ms: i64) {
        let keep = self.keep_ms.load(Ordering::Relaxed);
        self.revoked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .add(id, now_ms, keep);
    }

    /// The keyed hash of the fleet secret, for matching local entries to a revocation.
    pub(super) fn mac(&self) -> &HmacSha256 {
        &self.mac
    }

    /// The caches that use this level and are still alive.
    fn caches(&self) -> Vec<Arc<Inner>> {
        self.caches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter_map(Weak::upgrade)
            .collect()
    }

    /// A revocation heard on the channel: the local entries go at once; the Redis keys of
    /// the token in the scopes this replica saw are deleted in a task of their own.
    fn heard(self: &Arc<Self>, id: [u8; 32]) {
        metrics::counter!("uma_shared_cache_revocations_total", "direction" => "received")
            .increment(1);
        let caches = self.caches();
        let mut scopes = Vec::new();
        for cache in &caches {
            let now = cache.forget_fleet(&id);
            self.remember(id, now);
            scopes.extend(cache.flights.namespaces_seen().0);
        }
        scopes.sort();
        scopes.dedup();
        // A replica that was writing the token's entry when the revocation was sent may have
        // written it after the sender deleted it.
        let shared = Arc::clone(self);
        tokio::spawn(async move {
            let _ = shared.forget(id, scopes, None).await;
        });
    }

    /// After the channel was subscribed, the first time or again: revocations may have been
    /// missed meanwhile (a replica that started while Redis was down cached answers of the
    /// AS without hearing them), so every local entry goes.
    fn resubscribed(&self) {
        let caches = self.caches();
        for cache in caches {
            cache.forget_everything();
        }
        tracing::info!(
            target: LOG_TARGET,
            "subscribed to the revocation channel; the local cache was emptied, since \
             revocations may have been missed"
        );
    }
}

/// The subscriber task: keeps the channel subscribed while the cache lives, applies each
/// revocation heard, and PINGs the connection when it has been silent for [`PING_EVERY`]:
/// a PING not answered within the deadline (a host gone without closing the connection, a
/// NAT that dropped it) counts as a lost subscription.
async fn subscribe(shared: Weak<Shared>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let Some(s) = shared.upgrade() else { return };
        let deadline = s.timeout.max(Duration::from_millis(500));
        let connect = async {
            let mut pubsub = s.client.get_async_pubsub().await?;
            pubsub.subscribe(&s.channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        let pubsub = match tokio::time::timeout(deadline, connect).await {
            Ok(Ok(p)) => Some(p),
            Ok(Err(error)) => {
                tracing::debug!(target: LOG_TARGET, %error, "cannot subscribe to the revocation channel");
                None
            }
            Err(_) => None,
        };
        let Some(pubsub) = pubsub else {
            metrics::counter!("uma_shared_cache_errors_total", "op" => "subscribe").increment(1);
            drop(s);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
            continue;
        };
        backoff = Duration::from_millis(100);
        s.resubscribed();
        s.subscribed.store(true, Ordering::SeqCst);
        s.gauge();
        drop(s);
        let (mut sink, mut messages) = pubsub.split();
        loop {
            let message = match tokio::time::timeout(PING_EVERY, messages.next()).await {
                Ok(Some(message)) => message,
                Ok(None) => break,
                Err(_) => {
                    let ping = tokio::time::timeout(deadline, sink.ping::<redis::Value>()).await;
                    if matches!(ping, Ok(Ok(_))) {
                        continue;
                    }
                    tracing::warn!(target: LOG_TARGET, "the revocation channel did not answer a PING in time");
                    break;
                }
            };
            let Some(s) = shared.upgrade() else { return };
            match s.read_revocation(message.get_payload_bytes()) {
                Some(id) => s.heard(id),
                None => {
                    metrics::counter!("uma_shared_cache_rejected_total").increment(1);
                    tracing::warn!(target: LOG_TARGET, "ignored a message on the revocation channel: unreadable or its MAC does not verify");
                }
            }
        }
        let Some(s) = shared.upgrade() else { return };
        s.subscribed.store(false, Ordering::SeqCst);
        s.gauge();
        tracing::warn!(
            target: LOG_TARGET,
            "lost the revocation channel; not reading the shared cache until it is back"
        );
    }
}

/// Milliseconds since the epoch by the system clock: when values are stored and revocations
/// heard, compared across replicas (within the skew).
pub(super) fn unix_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
/// The JSON an introspection result parses back from ([`Introspection::from_value`]).
fn to_json(value: &Introspection) -> Value {
    if !value.is_active() {
        return json!({"active": false});
    }
    let mut obj = serde_json::Map::new();
    obj.insert("active".to_owned(), Value::Bool(true));
    for (name, v) in [
        ("exp", value.exp()),
        ("iat", value.iat()),
        ("nbf", value.nbf()),
    ] {
        if let Some(v) = v {
            obj.insert(name.to_owned(), Value::from(v));
        }
    }
    if let Some(sub) = value.sub() {
        obj.insert("sub".to_owned(), Value::from(sub));
    }
    if let Some(client_id) = value.client_id() {
        obj.insert("client_id".to_owned(), Value::from(client_id));
    }
    let permissions = serde_json::to_value(value.permissions()).unwrap_or(Value::Array(vec![]));
    obj.insert("permissions".to_owned(), permissions);
    Value::Object(obj)
}

/// The revocation time a marker holds (milliseconds since the epoch); `None` when it is not
/// a number, which refuses the entry read with it.
fn read_marker(bytes: &[u8]) -> Option<i64> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

fn hex(bytes: &[u8; 32]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(64);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn parse_hex(text: &[u8]) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0_u8; 32];
    for (i, pair) in text.chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

fn describe() {
    use metrics::{describe_counter, describe_gauge};
    describe_counter!(
        "uma_shared_cache_hits_total",
        "Local misses answered from the shared cache on Redis"
    );
    describe_counter!(
        "uma_shared_cache_misses_total",
        "Local misses the shared cache on Redis did not answer"
    );
    describe_counter!(
        "uma_shared_cache_errors_total",
        "Redis calls that failed or timed out, by operation"
    );
    describe_counter!(
        "uma_shared_cache_skipped_total",
        "Redis reads or writes not made: circuit open or revocation channel not subscribed"
    );
    describe_counter!(
        "uma_shared_cache_rejected_total",
        "Shared cache values refused: MAC did not verify, or unreadable"
    );
    describe_counter!(
        "uma_shared_cache_revocations_total",
        "Revocations broadcast (sent) and heard (received) on the Redis channel"
    );
    describe_gauge!(
        "uma_shared_cache_up",
        "1 while Redis answers and the revocation channel is subscribed, else 0"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::introspect::Permission;

    fn shared() -> SharedCache {
        SharedCache::builder("redis://127.0.0.1:1/", [3_u8; 32])
            .build()
            .expect("valid")
    }

    #[test]
    fn results_survive_the_round_trip() {
        let value = Introspection::active(
            vec![
                Permission::new("r1", ["read", "write"]).with_exp(Some(2_000_000_000)),
                Permission::new("r2", Vec::<String>::new()),
            ],
            Some(1_900_000_000),
        )
        .with_sub(Some("alice"))
        .with_client_id(Some("app"));
        let back = Introspection::from_value(&to_json(&value)).expect("parses");
        assert_eq!(back, value);
        let inactive = Introspection::from_value(&to_json(&Introspection::inactive()));
        assert_eq!(inactive, Ok(Introspection::inactive()));
    }

    #[test]
    fn a_value_opens_only_under_its_own_key_and_unaltered() {
        let s = shared();
        let inner = s.shared();
        let id = [9_u8; 32];
        let key = inner.redis_key("scope", &id);
        let payload = serde_json::to_vec(&json!({
            "format": FORMAT, "asked_at_ms": 100_000, "fresh_until": 200,
            "result": to_json(&Introspection::active(vec![], Some(1_000))),
        }))
        .expect("json");
        let tag = inner.value_mac(&key, &payload).finalize().into_bytes();
        let mut bytes = tag.to_vec();
        bytes.extend_from_slice(&payload);
        assert!(matches!(
            inner.open(&key, &bytes, &id, 150, None),
            Ok(Some(_))
        ));
        assert!(
            matches!(inner.open(&key, &bytes, &id, 200, None), Ok(None)),
            "not fresh"
        );
        let other = inner.redis_key("scope", &[8_u8; 32]);
        assert!(
            inner.open(&other, &bytes, &id, 150, None).is_err(),
            "moved to another token"
        );
        let mut altered = bytes.clone();
        let last = altered.len() - 2;
        altered[last] ^= 1;
        assert!(
            inner.open(&key, &altered, &id, 150, None).is_err(),
            "altered"
        );
        assert!(
            inner.open(&key, &bytes[..20], &id, 150, None).is_err(),
            "truncated"
        );
        // A revocation marker at or after the asking refuses it; one before does not.
        assert!(
            matches!(inner.open(&key, &bytes, &id, 150, Some(100_000)), Ok(None)),
            "marked at the asking"
        );
        assert!(
            matches!(
                inner.open(&key, &bytes, &id, 150, Some(99_999)),
                Ok(Some(_))
            ),
            "marked before the asking"
        );
        // The old layout (the time of writing, not of asking) is refused whatever it says.
        let old = serde_json::to_vec(&json!({
            "format": 2, "stored_at_ms": 100_000, "fresh_until": 200,
            "result": to_json(&Introspection::active(vec![], Some(1_000))),
        }))
        .expect("json");
        let mut old_bytes = inner.value_mac(&key, &old).finalize().into_bytes().to_vec();
        old_bytes.extend_from_slice(&old);
        assert!(
            inner.open(&key, &old_bytes, &id, 150, None).is_err(),
            "format 2"
        );
        inner.remember(id, 100_000);
        assert!(
            matches!(inner.open(&key, &bytes, &id, 150, None), Ok(None)),
            "revoked after"
        );
    }

    #[test]
    fn markers_are_read_as_numbers_and_keyed_by_the_fleet_id_alone() {
        assert_eq!(read_marker(b"1765100000123"), Some(1_765_100_000_123));
        assert_eq!(read_marker(b""), None);
        assert_eq!(read_marker(b"soon"), None);
        let s = shared();
        let inner = s.shared();
        let (a, b) = (inner.marker_key(&[1; 32]), inner.marker_key(&[2; 32]));
        assert_ne!(a, b);
        assert!(a.starts_with("tower-uma:revoked:"));
        assert!(!a.contains(&hex(&[1; 32])), "not the fleet id itself");
        assert_ne!(
            a,
            format!("tower-uma:revoked:{}", &inner.redis_key("", &[1; 32])[10..])
        );
    }

    #[test]
    fn keys_depend_on_the_secret_and_scope_and_never_show_the_token() {
        let a = shared();
        let b = SharedCache::builder("redis://127.0.0.1:1/", [4_u8; 32])
            .build()
            .expect("valid");
        let (ka, ia) = a.key_for_test("s1", "the-token");
        let (kb, ib) = b.key_for_test("s1", "the-token");
        assert_ne!(ka, kb);
        assert_ne!(ia, ib);
        assert_ne!(a.key_for_test("s2", "the-token").0, ka);
        assert!(!ka.contains("the-token"));
        let digest = crate::token::Fingerprint::of(b"the-token");
        assert!(!ka.contains(&hex(digest.as_bytes())));
        assert_eq!(parse_hex(ia.as_bytes()).map(|x| hex(&x)), Some(ia));
    }

    #[test]
    fn a_copy_from_the_fleet_lives_no_longer_than_its_writer_said() {
        let times = lifetime::Times {
            fresh_until: 160,
            stale_until: 200,
            ttl: Duration::from_secs(100),
        };
        let capped = times.capped(100, 130).expect("30 s left");
        assert_eq!(capped.fresh_until, 130);
        assert_eq!(capped.stale_until, 200, "the stale-if-error end is kept");
        assert_eq!(
            capped.ttl,
            Duration::from_secs(100),
            "30 s fresh, 70 s of grace"
        );
        assert_eq!(
            times.capped(100, 170),
            Some(times),
            "a later end changes nothing"
        );
        assert_eq!(times.capped(100, 100), None, "nothing left");
        assert_eq!(times.capped(100, 90), None);
    }

    #[test]
    fn revocation_messages_count_only_with_their_mac() {
        let s = shared();
        let inner = s.shared();
        let id = [5_u8; 32];
        let message = inner.revocation_message(&id);
        assert_eq!(inner.read_revocation(message.as_bytes()), Some(id));
        // A bare fleet id, as anyone who can publish on the channel could send it.
        assert_eq!(inner.read_revocation(hex(&id).as_bytes()), None);
        let mut forged = message.into_bytes();
        forged[70] = if forged[70] == b'0' { b'1' } else { b'0' };
        assert_eq!(inner.read_revocation(&forged), None, "tag altered");
        forged = inner.revocation_message(&id).into_bytes();
        forged[3] = if forged[3] == b'0' { b'1' } else { b'0' };
        assert_eq!(inner.read_revocation(&forged), None, "id altered");
        let other = SharedCache::builder("redis://127.0.0.1:1/", [3_u8; 32])
            .channel("another-fleet")
            .build()
            .expect("valid");
        let elsewhere = other.shared().revocation_message(&id);
        assert_eq!(
            inner.read_revocation(elsewhere.as_bytes()),
            None,
            "another channel's"
        );
    }

    #[test]
    fn revocations_are_kept_for_their_time_not_by_count() {
        let mut revoked = Revoked::default();
        let (keep, skew) = (60_000, 5_000);
        revoked.add([1; 32], 1_000_000, keep);
        // A flood of other revocations within the time does not push it out.
        for i in 0..10_000_u32 {
            let mut id = [0_u8; 32];
            id[..4].copy_from_slice(&i.to_be_bytes());
            id[31] = 2;
            revoked.add(id, 1_000_000 + i64::from(i), keep);
        }
        assert!(revoked.refuses(&[1; 32], 1_000_000, skew));
        assert!(
            revoked.refuses(&[1; 32], 1_004_000, skew),
            "stored within the skew after"
        );
        assert!(!revoked.refuses(&[1; 32], 1_006_000, skew), "stored after");
        assert!(!revoked.refuses(&[9; 32], 0, skew), "never revoked");
        // Past its time, it goes in a prune.
        for i in 0..30_000_u32 {
            let mut id = [0_u8; 32];
            id[..4].copy_from_slice(&i.to_be_bytes());
            id[31] = 3;
            revoked.add(id, 2_000_000, keep);
        }
        assert!(
            !revoked.refuses(&[1; 32], 1_000_000, skew),
            "forgotten in time"
        );
        assert!(revoked.at.len() <= 30_000 + PRUNE_FLOOR);
    }

    #[test]
    fn the_fleet_id_is_a_keyed_hash_of_the_tokens_sha256() {
        use sha2::Digest;
        // What local keys hold, and what every replica must hash the same way.
        let digest: [u8; 32] = Sha256::digest(b"the-token").into();
        assert_eq!(
            crate::token::Fingerprint::of(b"the-token").as_bytes(),
            &digest
        );
        let s = shared();
        let (_, id) = s.key_for_test("s1", "the-token");
        assert_eq!(id, hex(&fleet_id(s.shared().mac(), &digest)));
    }

    #[test]
    fn short_secrets_and_bad_urls_are_refused() {
        assert!(matches!(
            SharedCache::builder("redis://127.0.0.1/", [1_u8; 31]).build(),
            Err(SharedCacheError::ShortSecret)
        ));
        assert!(matches!(
            SharedCache::builder("http://127.0.0.1/", [1_u8; 32]).build(),
            Err(SharedCacheError::Url(_))
        ));
    }
}
