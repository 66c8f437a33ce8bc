//! Single flight: at most one introspection call per key at a time, run in its own task so
//! that no waiter's cancellation can cancel, fail or delay it.
//!
//! The map is only touched on a miss; a hit never locks it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use tokio::sync::oneshot;

use super::{Key, KeyRef};
use crate::gate::AsEndpoint;
use crate::introspect::Introspection;
use crate::protection::CallError;

/// What every waiter of one flight receives.
pub(super) type FlightResult = Result<Arc<Introspection>, CallError>;

/// A handle on a flight's result that any number of waiters can await and drop.
pub(super) type SharedFlight = Shared<BoxFuture<'static, FlightResult>>;

/// One introspection call in progress.
struct Flight {
    /// Tells this flight apart from a later one on the same key.
    id: u64,
    future: SharedFlight,
    /// Set when the key is invalidated while the call runs: the flight must not leave its
    /// (pre-revocation) result in the cache.
    revoked: Arc<AtomicBool>,
}

/// How a miss proceeds.
pub(super) enum Begin<Fut> {
    /// Another request's call is in flight: wait for it.
    Joined(SharedFlight),
    /// This request started the call.
    Led(SharedFlight),
    /// A flight finished between this request's cache lookup and now, so the cache may hold
    /// the answer: look again before starting a call. Gives the unused fetch future back.
    Recheck(Fut),
}

/// What a started flight is told about itself.
pub(super) struct Ticket {
    pub(super) id: u64,
    pub(super) revoked: Arc<AtomicBool>,
}

/// The most issuers interned; more (which a layer never needs) are simply not shared.
const MAX_INTERNED: usize = 32;

#[derive(Default)]
struct State {
    map: HashMap<Key, Flight>,
    /// The issuers seen, so that keys (and the cache entries made from them) share one copy.
    namespaces: Vec<Arc<str>>,
}

impl State {
    /// The owned key for `key`, with its issuer interned.
    fn key(&mut self, key: KeyRef<'_>) -> Key {
        let namespace = self.intern(key.namespace, || Arc::from(key.namespace));
        Key {
            digest: *key.digest,
            namespace,
        }
    }

    /// The interned copy of `namespace`, made by `fresh` when there is none yet.
    fn intern(&mut self, namespace: &str, fresh: impl FnOnce() -> Arc<str>) -> Arc<str> {
        if let Some(interned) = self.namespaces.iter().find(|n| ***n == *namespace) {
            return Arc::clone(interned);
        }
        let fresh = fresh();
        if self.namespaces.len() < MAX_INTERNED {
            self.namespaces.push(Arc::clone(&fresh));
        }
        fresh
    }
}

/// The flights in progress, by key.
#[derive(Default)]
pub(super) struct Flights {
    state: Mutex<State>,
    /// Bumped by every finished flight after it stored its result and before it left the map.
    completions: AtomicU64,
    next_id: AtomicU64,
}

impl Flights {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent even if a holder panicked: every critical section is a
        // single lookup, insert or removal.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A snapshot to hand back to [`begin`](Self::begin): read it *before* the cache lookup.
    pub(super) fn completions(&self) -> u64 {
        self.completions.load(Ordering::SeqCst)
    }

    /// Joins the flight on `key` or starts one.
    ///
    /// With `seen` (the [`completions`](Self::completions) read before the cache lookup), a
    /// flight that finished since then makes this return [`Begin::Recheck`], so that a request
    /// whose lookup raced with a flight's completion does not start a second call. Without it,
    /// this never returns `Recheck`.
    ///
    /// `start` turns the fetch future into the flight's shared future; it runs once the lock
    /// is released (it may drop the flight at once, which runs [`finish`](Self::finish)),
    /// while the map already holds a handle that waits for it. The fetch future of a request that joins is
    /// dropped, unpolled, after the lock is released.
    pub(super) fn begin<Fut>(
        &self,
        key: KeyRef<'_>,
        seen: Option<u64>,
        fetch: Fut,
        start: impl FnOnce(Key, Ticket, Fut) -> SharedFlight,
    ) -> Begin<Fut> {
        let mut state = self.lock();
        let key = state.key(key);
        if let Some(flight) = state.map.get(&key) {
            let joined = flight.future.clone();
            drop(state);
            drop(fetch);
            return Begin::Joined(joined);
        }
        if seen.is_some_and(|seen| seen != self.completions.load(Ordering::SeqCst)) {
            return Begin::Recheck(fetch);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let revoked = Arc::new(AtomicBool::new(false));
        // The flight is started after the lock is released: starting it can drop it on the
        // spot (spawning on a runtime that is shutting down does), and dropping it runs
        // `finish`, which takes the lock. Until then the map holds a handle that waits for it.
        let (started, flight) = oneshot::channel::<SharedFlight>();
        let future = async move {
            match flight.await {
                Ok(flight) => flight.await,
                // `start` panicked: no call is made.
                Err(_) => Err(CallError::unreachable(AsEndpoint::Introspection)),
            }
        }
        .boxed()
        .shared();
        state.map.insert(
            key.clone(),
            Flight {
                id,
                future: future.clone(),
                revoked: Arc::clone(&revoked),
            },
        );
        drop(state);
        let _ = started.send(start(key, Ticket { id, revoked }, fetch));
        Begin::Led(future)
    }

    /// Called by the flight `id` when it is over (finished, failed, panicked or cancelled),
    /// after it stored its result.
    pub(super) fn finish(&self, key: &Key, id: u64) {
        self.completions.fetch_add(1, Ordering::SeqCst);
        let mut state = self.lock();
        let finished = if state.map.get(key).is_some_and(|f| f.id == id) {
            state.map.remove(key)
        } else {
            None
        };
        // Dropped after the lock is released, like every flight taken out of the map.
        drop(state);
        drop(finished);
    }

    /// Detaches the flight on `key`, if any: later requests start a new call, and the detached
    /// one removes what it stores. Its current waiters still receive its result. (The cache
    /// forgets a token in every scope with [`revoke_digest`](Self::revoke_digest).)
    #[cfg(test)]
    pub(super) fn revoke(&self, key: KeyRef<'_>) {
        let mut state = self.lock();
        let key = state.key(key);
        let detached = state.map.remove(&key);
        if let Some(flight) = &detached {
            flight.revoked.store(true, Ordering::SeqCst);
        }
        // Dropped after the lock is released: outside a runtime the map may hold the last
        // handle on the call, and dropping the call runs `finish`, which takes the lock.
        drop(state);
        drop(detached);
    }

    /// Detaches the flights of the token whose digest is `digest`, in every scope: later
    /// requests start a new call, and each detached one removes what it stores. Their current
    /// waiters still receive their result.
    pub(super) fn revoke_digest(&self, digest: &[u8; 32]) {
        self.revoke_matching(&|d| d == digest);
    }

    /// [`revoke_digest`](Self::revoke_digest) for the flights whose digest `matches` (a
    /// revocation that names the token by its fleet id).
    pub(super) fn revoke_matching(&self, matches: &dyn Fn(&[u8; 32]) -> bool) {
        let mut state = self.lock();
        let keys: Vec<Key> = state
            .map
            .keys()
            .filter(|k| matches(&k.digest))
            .cloned()
            .collect();
        let detached: Vec<Flight> = keys.iter().filter_map(|k| state.map.remove(k)).collect();
        for flight in &detached {
            flight.revoked.store(true, Ordering::SeqCst);
        }
        // Dropped after the lock is released: outside a runtime the map may hold the last
        // handle on the call, and dropping the call runs `finish`, which takes the lock.
        drop(state);
        drop(detached);
    }

    /// [`revoke_digest`](Self::revoke_digest) for every flight.
    pub(super) fn revoke_all(&self) {
        let mut state = self.lock();
        let detached: Vec<Flight> = state.map.drain().map(|(_, flight)| flight).collect();
        for flight in &detached {
            flight.revoked.store(true, Ordering::SeqCst);
        }
        // As in `revoke`.
        drop(state);
        drop(detached);
    }

    /// The interned copy of a scope's `namespace` (`namespace` itself when it is the first),
    /// so that the keys of its entries share the scope's copy and compare by address.
    pub(super) fn intern(&self, namespace: &Arc<str>) -> Arc<str> {
        self.lock().intern(namespace, || Arc::clone(namespace))
    }

    /// The scopes' namespaces seen so far, and whether that is all of them (beyond
    /// `MAX_INTERNED` they are no longer recorded).
    pub(super) fn namespaces_seen(&self) -> (Vec<Arc<str>>, bool) {
        let state = self.lock();
        (
            state.namespaces.clone(),
            state.namespaces.len() < MAX_INTERNED,
        )
    }

    /// How many flights are in progress.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// How many issuers are interned.
    #[cfg(test)]
    pub(super) fn namespaces(&self) -> usize {
        self.lock().namespaces.len()
    }
}

/// Runs `task` to completion on its own and returns a shareable handle on its result.
///
/// In a tokio runtime the task is spawned, so it completes (and fills the cache) even if every
/// waiter is dropped. Outside one there is nothing to spawn on: the waiters then drive the
/// task themselves through the shared future, and it pauses while none is polling.
pub(super) fn spawn<T>(task: T) -> SharedFlight
where
    T: Future<Output = FlightResult> + Send + 'static,
{
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            let handle = runtime.spawn(task);
            async move {
                handle.await.unwrap_or_else(|join_error| {
                    // The fetch panicked or the runtime is shutting down. No answer: fail
                    // closed, like an unreachable AS.
                    // The panic payload is not logged: it could quote anything, secrets included.
                    tracing::warn!(
                        panicked = join_error.is_panic(),
                        "introspection task did not complete; treating the AS as unreachable"
                    );
                    Err(CallError::unreachable(AsEndpoint::Introspection))
                })
            }
            .boxed()
            .shared()
        }
        Err(_) => task.boxed().shared(),
    }
}
