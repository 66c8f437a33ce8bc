//! The AS's JSON Web Key Set (RFC 7517 §5): fetched lazily, cached by `kid`, and refetched,
//! at most once per refetch interval, when
//!
//! - a token names a key the cache does not hold (key rotation);
//! - a key is looked up in a set older than its maximum age (the configured one, or the JWKS
//!   answer's shorter `Cache-Control: max-age`), so that keys the AS stops publishing stop
//!   verifying: the lookup waits for the fresh set and decides with it;
//! - a signature fails under a cached key (a key replaced under the same `kid`): the token is
//!   tried once more with the key the fresh set holds for that `kid`, if it is another one.
//!
//! The cached keys are always those of the last successful fetch. A failed fetch keeps them
//! (availability during a JWKS outage: an old set keeps verifying until a fetch succeeds);
//! a successful one replaces them all, so a key it no longer lists never verifies again.
//!
//! # Concurrent calls
//!
//! Lookups read the cache under a short, never-awaited `std` lock. A lookup that may refetch
//! takes an async mutex; whoever gets it first fetches, and everyone who waited behind it
//! sees that fetch's result instead of fetching again (one fetch per burst). Every attempt,
//! successful or not, starts the interval anew, so neither a stream of tokens with invented
//! `kid`s or forged signatures, nor an old set, nor an unreachable JWKS can make the layer
//! call the AS more often than once per interval.
//!
//! The interval is measured on the layer's [`Clock`] in milliseconds, like the circuit
//! breakers' intervals, so tests move a [`FixedClock`](crate::FixedClock) instead of sleeping.
//! A clock that went back counts as the interval having passed: a wall clock stepped back
//! lets one fetch through early instead of locking refetches out until it catches up.

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyOperations, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;
use tracing::Instrument;

use crate::clock::Clock;
use crate::gate::AsEndpoint;
use crate::protection::jwks::{self, MAX_JWKS_BYTES};
use crate::protection::{CallError, Caller, Failure};

/// Counter with label `outcome` (`ok` | `unreachable` | `timeout` | `status` | `unparsable`):
/// JWKS fetches.
const JWKS_FETCHES: &str = "uma_jwks_fetches_total";

const RSA_ALGS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// One usable verification key.
pub(super) struct Key {
    pub(super) kid: Option<String>,
    pub(super) key: DecodingKey,
    /// The algorithms this key type and curve can verify.
    algs: &'static [Algorithm],
    /// The JWK's own `alg`, if it has one: then only that algorithm is accepted.
    pinned: Option<Algorithm>,
}

impl Key {
    /// Whether a token signed with `alg` may be checked with this key.
    pub(super) fn fits(&self, alg: Algorithm) -> bool {
        self.algs.contains(&alg)
            && self.pinned.is_none_or(|p| p == alg)
            && self.key.family() == alg.family()
    }

    /// Turns one JWK into a verification key, or says why it is skipped.
    fn from_jwk(jwk: &Jwk) -> Result<Self, &'static str> {
        match &jwk.common.public_key_use {
            None | Some(PublicKeyUse::Signature) => {}
            Some(_) => return Err("not a signature key (`use`)"),
        }
        if let Some(ops) = &jwk.common.key_operations
            && !ops.contains(&KeyOperations::Verify)
        {
            return Err("`key_ops` does not include verify");
        }
        let algs: &'static [Algorithm] = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => RSA_ALGS,
            AlgorithmParameters::EllipticCurve(p) => match p.curve {
                EllipticCurve::P256 => &[Algorithm::ES256],
                EllipticCurve::P384 => &[Algorithm::ES384],
                _ => return Err("unsupported EC curve"),
            },
            AlgorithmParameters::OctetKeyPair(p) => match p.curve {
                EllipticCurve::Ed25519 => &[Algorithm::EdDSA],
                _ => return Err("unsupported OKP curve"),
            },
            // A symmetric key has no business in a public key set; never verify with one.
            AlgorithmParameters::OctetKey(_) => return Err("symmetric key"),
            _ => return Err("unsupported key type"),
        };
        let pinned = match jwk.common.key_algorithm {
            None => None,
            Some(a) => {
                let alg = Algorithm::try_from(a).map_err(|_| "unsupported `alg`")?;
                if !algs.contains(&alg) {
                    return Err("`alg` does not fit the key type");
                }
                Some(alg)
            }
        };
        let key = DecodingKey::from_jwk(jwk).map_err(|_| "unreadable key material")?;
        Ok(Self {
            kid: jwk.common.key_id.clone(),
            key,
            algs,
            pinned,
        })
    }
}

/// What the cache holds for a token's `kid` and `alg`.
pub(super) enum Lookup {
    /// A key that fits.
    Found(Arc<Key>),
    /// The key exists but its type, curve or `alg` does not fit the token's `alg`.
    Incompatible,
    /// No such key (or, for a token without `kid`, not exactly one key to try).
    Missing,
}

#[derive(Default)]
struct Cached {
    /// The keys of the last successful fetch.
    keys: Vec<Arc<Key>>,
    /// When the last fetch attempt ended, successful or not (clock milliseconds).
    attempted: Option<i64>,
    /// When the last successful fetch ended (clock milliseconds): the age of `keys`.
    fetched: Option<i64>,
    /// How long `keys` may be used before a lookup refetches them (milliseconds): the
    /// configured maximum age, or the last answer's `Cache-Control: max-age` when shorter.
    max_age: i64,
    /// Why the last attempt failed; `None` after a success.
    last_error: Option<CallError>,
    /// Counts finished attempts, so that a waiter can tell that someone else fetched.
    generation: u64,
}

impl Cached {
    fn lookup(&self, kid: Option<&str>, alg: Algorithm) -> Lookup {
        let candidate = match kid {
            Some(kid) => {
                let mut named = self
                    .keys
                    .iter()
                    .filter(|k| k.kid.as_deref() == Some(kid))
                    .peekable();
                if named.peek().is_none() {
                    return Lookup::Missing;
                }
                named.find(|k| k.fits(alg))
            }
            None => match self.keys.as_slice() {
                [only] => Some(only).filter(|k| k.fits(alg)),
                _ => return Lookup::Missing,
            },
        };
        candidate.map_or(Lookup::Incompatible, |k| Lookup::Found(Arc::clone(k)))
    }

    /// Whether the keys are older than their maximum age at `now` (or were never fetched).
    /// A clock that went back counts as the maximum age having passed.
    fn is_stale(&self, now: i64) -> bool {
        self.fetched
            .is_none_or(|at| now < at || now.saturating_sub(at) >= self.max_age)
    }

    /// The answer for a key the cache does not hold: the last attempt's error if it failed.
    fn miss(&self) -> Result<Lookup, CallError> {
        match &self.last_error {
            Some(e) => Err(e.clone()),
            None => Ok(Lookup::Missing),
        }
    }
}

/// The cached key set of one AS.
pub(super) struct KeySet {
    /// The transport, and the cap and circuit breaker of the layer's AS calls.
    caller: Caller,
    uri: String,
    refetch_interval: Duration,
    /// The configured maximum age of the cached set.
    max_age: Duration,
    clock: Arc<dyn Clock>,
    cached: RwLock<Cached>,
    refetch: tokio::sync::Mutex<()>,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cached = self.read();
        let kids: Vec<&str> = cached
            .keys
            .iter()
            .map(|k| k.kid.as_deref().unwrap_or("-"))
            .collect();
        f.debug_struct("KeySet")
            .field("uri", &self.uri)
            .field("refetch_interval", &self.refetch_interval)
            .field("max_age", &self.max_age)
            .field("kids", &kids)
            .finish_non_exhaustive()
    }
}

impl KeySet {
    /// The key set at `uri`, fetched through `caller`, used for at most `max_age` and
    /// refetched at most once per `refetch_interval` of `clock`.
    pub(super) fn new(
        caller: Caller,
        uri: String,
        refetch_interval: Duration,
        max_age: Duration,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            caller,
            uri,
            refetch_interval,
            max_age,
            clock,
            cached: RwLock::new(Cached::default()),
            refetch: tokio::sync::Mutex::new(()),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Cached> {
        // Nothing panics while holding the lock; a poisoned lock still holds a consistent set.
        self.cached.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Finds the key for `kid` and `alg`, fetching the set the first time. When the key is
    /// not cached, or the set is older than its maximum age, the set is refetched first if
    /// the last attempt is at least one refetch interval old, and the answer comes from the
    /// fresh set: a key it no longer holds is [`Lookup::Missing`]. If that fetch fails, or
    /// may not happen yet, the cached keys answer.
    ///
    /// `Err` only when the key is not cached and the last fetch attempt failed.
    pub(super) async fn find(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Lookup, CallError> {
        let seen = {
            let cached = self.read();
            let now = self.clock.now_unix_millis();
            let found = cached.lookup(kid, alg);
            let wanted = matches!(found, Lookup::Missing) || cached.is_stale(now);
            if !wanted || !self.may_fetch(&cached, now) {
                return match found {
                    Lookup::Missing => cached.miss(),
                    hit => Ok(hit),
                };
            }
            cached.generation
        };
        self.fetch_once(seen, "lookup").await;
        let cached = self.read();
        match cached.lookup(kid, alg) {
            Lookup::Missing => cached.miss(),
            hit => Ok(hit),
        }
    }

    /// After a signature failed under `tried` (the key [`find`](Self::find) gave for `kid`
    /// and `alg`): what the AS publishes for them now, in case it replaced the key under the
    /// same `kid`. Refetches the set if the last attempt is at least one refetch interval
    /// old; if the set changed since `tried` was found, answers from it without fetching.
    ///
    /// `Found(tried)` again when the refetch may not happen yet, failed, or brought the same
    /// key: the signature stays refused. Never an error, since a key was cached.
    pub(super) async fn after_bad_signature(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
        tried: &Arc<Key>,
    ) -> Lookup {
        let seen = {
            let cached = self.read();
            match cached.lookup(kid, alg) {
                Lookup::Found(key) if Arc::ptr_eq(&key, tried) => {}
                changed => return changed,
            }
            if !self.may_fetch(&cached, self.clock.now_unix_millis()) {
                return Lookup::Found(Arc::clone(tried));
            }
            cached.generation
        };
        self.fetch_once(seen, "signature").await;
        self.read().lookup(kid, alg)
    }

    /// Fetches the set unless another fetch ended since the cache was at generation `seen`;
    /// at most one fetch runs at a time, and who waited for it shares its result.
    async fn fetch_once(&self, seen: u64, reason: &'static str) {
        let _one_fetch = self.refetch.lock().await;
        let fetched_meanwhile = self.read().generation != seen;
        if !fetched_meanwhile {
            self.fetch(reason).await;
        }
    }

    /// Whether the last attempt is at least one refetch interval before `now`.
    fn may_fetch(&self, cached: &Cached, now: i64) -> bool {
        let interval = i64::try_from(self.refetch_interval.as_millis()).unwrap_or(i64::MAX);
        // A clock that went back counts as the interval having passed.
        cached
            .attempted
            .is_none_or(|at| now < at || now.saturating_sub(at) >= interval)
    }

    /// The number of keys cached (for tests and `Debug`).
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.read().keys.len()
    }

    /// Fetches the set once and records the outcome. `reason` (`lookup` | `signature`) is
    /// what asked for it, for the span.
    async fn fetch(&self, reason: &'static str) {
        let span = tracing::debug_span!(
            "uma.jwks.fetch",
            url.full = %self.uri,
            uma.jwks.reason = reason,
            http.status_code = tracing::field::Empty,
            uma.jwks.keys = tracing::field::Empty,
            error = tracing::field::Empty,
        );
        let result = self
            .caller
            .call(
                AsEndpoint::Jwks,
                jwks::request(&self.uri),
                MAX_JWKS_BYTES,
                |answer| {
                    let max_age = cache_control_max_age(answer.headers());
                    Ok((parse_key_set(&jwks::body(answer)?)?, max_age))
                },
            )
            .instrument(span.clone())
            .await;
        if let Err(e) = &result
            && matches!(e.failure(), Failure::NotCalled(_))
        {
            // Not called (the gate counted and logged it): this lookup fails closed, and
            // the next one may try again, since no attempt reached the AS.
            let mut cached = self.cached.write().unwrap_or_else(PoisonError::into_inner);
            cached.generation = cached.generation.wrapping_add(1);
            cached.last_error = Some(e.clone());
            return;
        }
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.outcome().unwrap_or("unreachable"),
        };
        metrics::counter!(JWKS_FETCHES, "outcome" => outcome).increment(1);
        match &result {
            Ok((keys, _)) => {
                span.record("uma.jwks.keys", keys.len());
                if keys.is_empty() {
                    tracing::warn!(parent: &span, "the JWKS holds no usable signature key");
                }
            }
            Err(e) => {
                // Per call: DEBUG. The gate logs the first failure and summaries at WARN.
                span.record("error", tracing::field::display(e));
                tracing::debug!(
                    parent: &span,
                    error = %e,
                    "JWKS fetch failed; keeping the keys already cached"
                );
            }
        }
        // The write lock is taken last and held only to swap the state.
        let now = self.clock.now_unix_millis();
        let max_age = match &result {
            Ok((_, Some(said))) => self.max_age.min(*said),
            _ => self.max_age,
        };
        let max_age = i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX);
        let mut cached = self.cached.write().unwrap_or_else(PoisonError::into_inner);
        cached.attempted = Some(now);
        cached.generation = cached.generation.wrapping_add(1);
        match result {
            Ok((keys, _)) => {
                cached.keys = keys;
                cached.fetched = Some(now);
                cached.max_age = max_age;
                cached.last_error = None;
            }
            Err(e) => cached.last_error = Some(e),
        }
    }
}

/// The shortest `max-age` of the answer's `Cache-Control` headers (RFC 9111 §5.2.2.1), if
/// any is readable. Other directives are ignored: the set is cached for the configured
/// maximum age unless the AS asks for less.
pub(super) fn cache_control_max_age(headers: &http::HeaderMap) -> Option<Duration> {
    headers
        .get_all(http::header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|directive| {
            let (name, value) = directive.split_once('=')?;
            if !name.trim().eq_ignore_ascii_case("max-age") {
                return None;
            }
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            value.parse::<u64>().ok().map(Duration::from_secs)
        })
        .min()
}

/// Reads a JWKS document, keeping the keys usable for signature verification. Keys that are
/// unusable (encryption keys, symmetric keys, unknown types or curves, an `alg` that does not
/// fit) are skipped; a document that is not `{"keys": [...]}` is an error.
pub(super) fn parse_key_set(body: &[u8]) -> Result<Vec<Arc<Key>>, Failure> {
    let unusable = || Failure::Unusable("with a body that is not a JSON Web Key Set".into());
    let value: Value = serde_json::from_slice(body).map_err(|_| unusable())?;
    let items = value
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(unusable)?;
    let mut keys = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let parsed = serde_json::from_value::<Jwk>(item.clone())
            .map_err(|_| "not a JWK")
            .and_then(|jwk| Key::from_jwk(&jwk));
        match parsed {
            Ok(key) => keys.push(Arc::new(key)),
            Err(why) => {
                let kid = item.get("kid").and_then(Value::as_str).unwrap_or("-");
                tracing::debug!(index, kid, why, "skipping a JWKS key");
            }
        }
    }
    Ok(keys)
}
