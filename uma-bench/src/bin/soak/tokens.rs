//! The RPTs of the run: minted, picked at random for each request, revoked now and then, and
//! looked up again by the upstream and the checks.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use rand::Rng;
use uma_test_as::{RptSpec, TestAs};

use crate::Run;

/// What an RPT was minted to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Class {
    /// Grants `view` on the album: allowed until revoked.
    Valid,
    /// Grants only `edit`: never allowed on `GET`.
    WrongScope,
    /// Minted for a recovery probe (valid, used by the prober only).
    Probe,
}

/// "Never" for the millisecond fields.
const NEVER: u64 = u64::MAX;

/// One minted RPT.
#[derive(Debug)]
pub(crate) struct Slot {
    pub(crate) token: String,
    pub(crate) class: Class,
    /// When it was revoked (ms since the start), or [`NEVER`].
    revoked_ms: AtomicU64,
    /// The last time a request sent while the AS was healthy was allowed with it, or [`NEVER`].
    last_ok_ms: AtomicU64,
}

impl Slot {
    pub(crate) fn revoked_ms(&self) -> Option<u64> {
        let v = self.revoked_ms.load(Ordering::SeqCst);
        (v != NEVER).then_some(v)
    }

    pub(crate) fn last_ok_ms(&self) -> Option<u64> {
        let v = self.last_ok_ms.load(Ordering::SeqCst);
        (v != NEVER).then_some(v)
    }

    pub(crate) fn allowed_at(&self, ms: u64) {
        let _ = self
            .last_ok_ms
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |old| {
                (old == NEVER || old < ms).then_some(ms)
            });
    }
}

/// How many recently revoked RPTs the load keeps sending.
const REVOKED_KEPT: usize = 64;
/// How many RPTs lacking the scope are minted.
const WRONG_SCOPE: usize = 100;
/// Lifetime of every minted RPT: far beyond any run.
const TTL_SECS: i64 = 30 * 24 * 3600;

#[derive(Debug, Default)]
struct Inner {
    slots: Vec<Arc<Slot>>,
    by_token: HashMap<String, usize>,
    /// Slots of the valid RPTs in use.
    valid: Vec<usize>,
    /// Slots of recently revoked RPTs, oldest first.
    revoked: Vec<usize>,
    wrong_scope: Vec<usize>,
}

/// Every RPT of the run.
#[derive(Debug, Default)]
pub(crate) struct Tokens {
    inner: RwLock<Inner>,
    revocations: AtomicUsize,
}

impl Tokens {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Mints an RPT of `class` and returns its slot.
    pub(crate) fn mint(&self, auth: &TestAs, resource_id: &str, class: Class) -> usize {
        let scope = if class == Class::WrongScope {
            "edit"
        } else {
            "view"
        };
        let token = auth.mint_rpt(RptSpec::active_for(resource_id, [scope], TTL_SECS));
        let mut inner = self.write();
        let slot = inner.slots.len();
        inner.by_token.insert(token.clone(), slot);
        inner.slots.push(Arc::new(Slot {
            token,
            class,
            revoked_ms: AtomicU64::new(NEVER),
            last_ok_ms: AtomicU64::new(NEVER),
        }));
        slot
    }

    /// The `valid` RPTs in use and the ones lacking the scope.
    pub(crate) fn mint_initial(&self, auth: &TestAs, resource_id: &str, valid: usize) {
        for _ in 0..valid {
            let slot = self.mint(auth, resource_id, Class::Valid);
            self.write().valid.push(slot);
        }
        for _ in 0..WRONG_SCOPE {
            let slot = self.mint(auth, resource_id, Class::WrongScope);
            self.write().wrong_scope.push(slot);
        }
    }

    pub(crate) fn slot(&self, slot: usize) -> Arc<Slot> {
        Arc::clone(&self.read().slots[slot])
    }

    pub(crate) fn find(&self, token: &str) -> Option<Arc<Slot>> {
        let inner = self.read();
        inner
            .by_token
            .get(token)
            .map(|&slot| Arc::clone(&inner.slots[slot]))
    }

    /// A valid RPT in use, at random.
    pub(crate) fn random_valid(&self, rng: &mut impl Rng) -> Option<(usize, Arc<Slot>)> {
        Self::random_of(&self.read(), |i| &i.valid, rng)
    }

    /// A recently revoked RPT, at random.
    pub(crate) fn random_revoked(&self, rng: &mut impl Rng) -> Option<(usize, Arc<Slot>)> {
        Self::random_of(&self.read(), |i| &i.revoked, rng)
    }

    /// An RPT lacking the scope, at random.
    pub(crate) fn random_wrong_scope(&self, rng: &mut impl Rng) -> Option<(usize, Arc<Slot>)> {
        Self::random_of(&self.read(), |i| &i.wrong_scope, rng)
    }

    fn random_of(
        inner: &Inner,
        list: impl Fn(&Inner) -> &Vec<usize>,
        rng: &mut impl Rng,
    ) -> Option<(usize, Arc<Slot>)> {
        let list = list(inner);
        if list.is_empty() {
            return None;
        }
        let slot = list[rng.random_range(0..list.len())];
        Some((slot, Arc::clone(&inner.slots[slot])))
    }

    /// Revokes a valid RPT at random at the AS, replaces it with a new one, and keeps sending
    /// it as a revoked RPT.
    fn revoke_one(&self, run: &Run, auth: &TestAs, rng: &mut impl Rng) {
        let fresh = self.mint(auth, &run.resource_id, Class::Valid);
        let mut inner = self.write();
        if inner.valid.is_empty() {
            return;
        }
        let at = rng.random_range(0..inner.valid.len());
        let old = std::mem::replace(&mut inner.valid[at], fresh);
        let slot = Arc::clone(&inner.slots[old]);
        // Marked before the AS forgets it: a request may only be let through after this.
        slot.revoked_ms.store(run.now_ms(), Ordering::SeqCst);
        auth.revoke(&slot.token);
        inner.revoked.push(old);
        if inner.revoked.len() > REVOKED_KEPT {
            inner.revoked.remove(0);
        }
        drop(inner);
        self.revocations.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn revocations(&self) -> usize {
        self.revocations.load(Ordering::SeqCst)
    }
}

/// Revokes one valid RPT every `every` until aborted.
pub(crate) async fn revoke_periodically(run: Arc<Run>, auth: Arc<TestAs>, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let mut rng = rand::rng();
        run.tokens.revoke_one(&run, &auth, &mut rng);
    }
}
