//! Caches of answers derived from a token (the permission exchange's grants, `keycloak/`):
//! whenever the introspection cache forgets a token, they forget what they hold for it too.
//!
//! A revocation hook calls [`UmaLayer::forget_token`](crate::UmaLayer::forget_token) so that a
//! revoked token stops working. The introspection result is not the only answer kept for a
//! token: a layer that exchanges tokens for permissions keeps the AS's grants as well, and a
//! grant kept past the revocation would let the token through with no AS call. So the layers
//! that keep such answers register them with the cache they use, and every way the cache
//! forgets (one token, a revocation heard from the fleet, everything) reaches them.

use std::sync::{Arc, Mutex, PoisonError, Weak};

use crate::token::Fingerprint;

/// Which tokens to forget, by fingerprint.
pub(crate) type Matches = Arc<dyn Fn(&Fingerprint) -> bool + Send + Sync>;

/// A cache of answers derived from tokens, kept by their fingerprint.
pub(crate) trait DerivedCache: Send + Sync {
    /// Forgets the answers of every token `matches` accepts: requests that arrive after this
    /// returns do not see them.
    fn forget_if(&self, matches: Matches);
    /// Forgets every answer.
    fn forget_all(&self);
}

/// The derived caches of one introspection cache; held weakly, so that a layer that is gone
/// leaves nothing behind.
#[derive(Default)]
pub(super) struct Derived {
    caches: Mutex<Vec<Weak<dyn DerivedCache>>>,
}

impl Derived {
    pub(super) fn add(&self, cache: Weak<dyn DerivedCache>) {
        let mut caches = self.caches.lock().unwrap_or_else(PoisonError::into_inner);
        caches.retain(|c| c.strong_count() > 0);
        caches.push(cache);
    }

    /// The caches still alive (outside the lock, which no cache's call then holds).
    fn alive(&self) -> Vec<Arc<dyn DerivedCache>> {
        let caches = self.caches.lock().unwrap_or_else(PoisonError::into_inner);
        caches.iter().filter_map(Weak::upgrade).collect()
    }

    pub(super) fn forget_if(&self, matches: &Matches) {
        for cache in self.alive() {
            cache.forget_if(Arc::clone(matches));
        }
    }

    /// Forgets what every derived cache holds for the token of `fingerprint`.
    pub(super) fn forget(&self, fingerprint: Fingerprint) {
        self.forget_if(&(Arc::new(move |f: &Fingerprint| *f == fingerprint) as Matches));
    }

    pub(super) fn forget_all(&self) {
        for cache in self.alive() {
            cache.forget_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Kept(Mutex<Vec<Fingerprint>>);

    impl DerivedCache for Kept {
        fn forget_if(&self, matches: Matches) {
            self.0.lock().unwrap().retain(|f| !matches(f));
        }
        fn forget_all(&self) {
            self.0.lock().unwrap().clear();
        }
    }

    #[test]
    fn forgets_one_token_in_every_live_cache_and_drops_the_dead() {
        let (a, b) = (Fingerprint::of(b"a"), Fingerprint::of(b"b"));
        let derived = Derived::default();
        let first = Arc::new(Kept(Mutex::new(vec![a, b])));
        let second = Arc::new(Kept(Mutex::new(vec![a])));
        derived.add(Arc::downgrade(&first) as Weak<dyn DerivedCache>);
        derived.add(Arc::downgrade(&second) as Weak<dyn DerivedCache>);
        derived.forget(a);
        assert_eq!(*first.0.lock().unwrap(), vec![b]);
        assert!(second.0.lock().unwrap().is_empty());

        drop(second);
        let third = Arc::new(Kept(Mutex::new(vec![b])));
        derived.add(Arc::downgrade(&third) as Weak<dyn DerivedCache>);
        assert_eq!(
            derived.caches.lock().unwrap().len(),
            2,
            "the dead one is dropped"
        );
        derived.forget_all();
        assert!(first.0.lock().unwrap().is_empty());
        assert!(third.0.lock().unwrap().is_empty());
    }
}
