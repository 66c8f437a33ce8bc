//! A bounded interner for what repeats across introspection results: resource ids, scope
//! names, `client_id`s and whole (sorted) scope lists.
//!
//! Cached results for different RPTs mostly name the same few resources and grant the same few
//! scope sets; interned, they share one `Arc` per name or list instead of each holding its own
//! copies. Each interner is bounded so that an authorization server cannot grow it without
//! limit: it keeps at most a fixed number of values of a bounded size (names: 4,096 of at most
//! 128 bytes; lists: 1,024 of at most 512 bytes of names; about 2 MiB together at worst), and
//! once full, or for a larger value, it simply allocates. Values are never removed: the first
//! ones seen stay shared for the life of the process.

use std::collections::HashSet;
use std::hash::Hash;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

/// A value that can be interned, with the size its interner bounds.
pub(super) trait Internable: Eq + Hash + 'static {
    /// The size counted against the interner's per-value bound.
    fn size(&self) -> usize;
}

impl Internable for str {
    /// Bytes.
    fn size(&self) -> usize {
        self.len()
    }
}

impl Internable for [Arc<str>] {
    /// Bytes of the names, plus one per name.
    fn size(&self) -> usize {
        self.iter()
            .fold(self.len(), |acc, s| acc.saturating_add(s.len()))
    }
}

/// A thread-safe set of shared values with a bound on the count and the size of its members.
#[derive(Debug)]
pub(super) struct Interner<T: ?Sized> {
    values: RwLock<HashSet<Arc<T>>>,
    max_count: usize,
    max_size: usize,
}

impl<T: Internable + ?Sized> Interner<T>
where
    for<'a> Arc<T>: From<&'a T>,
{
    /// An empty interner keeping at most `max_count` values of at most `max_size` each.
    pub(super) fn new(max_count: usize, max_size: usize) -> Self {
        Self {
            values: RwLock::new(HashSet::new()),
            max_count,
            max_size,
        }
    }

    /// `value` as a shared value: the interned copy when there is one, otherwise a new one,
    /// which is kept for later calls while the interner has room.
    pub(super) fn intern(&self, value: &T) -> Arc<T> {
        if value.size() > self.max_size {
            return Arc::from(value);
        }
        {
            // The set is valid whatever a panicking holder was doing: ignore poisoning.
            let values = self.values.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(found) = values.get(value) {
                return Arc::clone(found);
            }
            if values.len() >= self.max_count {
                return Arc::from(value);
            }
        }
        let mut values = self.values.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(found) = values.get(value) {
            return Arc::clone(found);
        }
        let new: Arc<T> = Arc::from(value);
        if values.len() < self.max_count {
            values.insert(Arc::clone(&new));
        }
        new
    }

    /// How many values are kept.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.values
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// The process-wide interner of names (resource ids, scope names, `client_id`s).
pub(super) fn names() -> &'static Interner<str> {
    static NAMES: OnceLock<Interner<str>> = OnceLock::new();
    NAMES.get_or_init(|| Interner::new(4_096, 128))
}

/// The process-wide interner of sorted scope lists.
pub(super) fn scope_lists() -> &'static Interner<[Arc<str>]> {
    static LISTS: OnceLock<Interner<[Arc<str>]>> = OnceLock::new();
    LISTS.get_or_init(|| Interner::new(1_024, 512))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_names_share_one_allocation() {
        let interner = Interner::<str>::new(8, 16);
        let a = interner.intern("read");
        let b = interner.intern(&String::from("read"));
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(&*a, "read");
        assert!(!Arc::ptr_eq(&a, &interner.intern("write")));
        assert_eq!(interner.len(), 2);
    }

    #[test]
    fn the_count_is_bounded() {
        let interner = Interner::<str>::new(3, 16);
        let kept: Vec<Arc<str>> = (0..3).map(|i| interner.intern(&format!("s{i}"))).collect();
        for i in 0..100 {
            let extra = interner.intern(&format!("extra-{i}"));
            assert_eq!(&*extra, format!("extra-{i}"), "still the right string");
        }
        assert_eq!(interner.len(), 3, "full: new names are allocated, not kept");
        let again = interner.intern("extra-0");
        assert!(!Arc::ptr_eq(&again, &interner.intern("extra-0")));
        for (i, s) in kept.iter().enumerate() {
            assert!(
                Arc::ptr_eq(s, &interner.intern(&format!("s{i}"))),
                "names kept before it filled are still shared"
            );
        }
    }

    #[test]
    fn long_names_are_not_kept() {
        let interner = Interner::<str>::new(8, 4);
        let long = interner.intern("abcde");
        assert_eq!(&*long, "abcde");
        assert!(!Arc::ptr_eq(&long, &interner.intern("abcde")));
        assert_eq!(interner.len(), 0);
        assert!(Arc::ptr_eq(
            &interner.intern("abcd"),
            &interner.intern("abcd")
        ));
    }

    #[test]
    fn lists_are_bounded_by_count_and_size() {
        let names = Interner::<str>::new(8, 16);
        let list = |s: &[&str]| -> Vec<Arc<str>> { s.iter().map(|s| names.intern(s)).collect() };
        let lists = Interner::<[Arc<str>]>::new(2, 16);
        let a = lists.intern(&list(&["read", "write"]));
        assert!(Arc::ptr_eq(&a, &lists.intern(&list(&["read", "write"]))));
        assert!(
            !Arc::ptr_eq(&a, &lists.intern(&list(&["write", "read"]))),
            "order matters"
        );
        assert_eq!(lists.len(), 2);
        let full = lists.intern(&list(&["view"]));
        assert!(!Arc::ptr_eq(&full, &lists.intern(&list(&["view"]))));
        assert_eq!(lists.len(), 2);

        let lists = Interner::<[Arc<str>]>::new(8, 10);
        let big = list(&["abcd", "efgh"]); // 8 bytes + 2 names: 10, kept
        assert!(Arc::ptr_eq(&lists.intern(&big), &lists.intern(&big)));
        let too_big = list(&["abcd", "efgh", ""]); // 11
        assert!(!Arc::ptr_eq(
            &lists.intern(&too_big),
            &lists.intern(&too_big)
        ));
        assert_eq!(lists.len(), 1);
    }

    #[test]
    fn shared_between_threads() {
        let interner = Interner::<str>::new(64, 16);
        let names: Vec<Vec<Arc<str>>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| s.spawn(|| (0..32).map(|i| interner.intern(&format!("n{i}"))).collect()))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("no panic"))
                .collect()
        });
        assert_eq!(interner.len(), 32);
        for other in &names[1..] {
            assert!(names[0].iter().zip(other).all(|(a, b)| Arc::ptr_eq(a, b)));
        }
    }
}
