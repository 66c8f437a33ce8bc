//! A small bounded memo: values kept by key in [`SETS`] sets of [`WAYS`] entries, the set
//! picked by a hash the caller gives. A value is only ever given back for a key that the
//! caller's test accepts, and only from the set the hash picks; a new entry replaces the
//! oldest of its set. The proxy keeps one per thread for the `X-Uma-*` values of recent principals
//! (see the [`forward`](crate::forward) module).

/// How many sets a [`Memo`] has (a power of two).
pub(crate) const SETS: usize = 32;
/// How many entries each set holds.
pub(crate) const WAYS: usize = 8;

/// At most `SETS * WAYS` keys and their values (see the [module docs](self)).
#[derive(Debug)]
pub(crate) struct Memo<K, V> {
    /// Empty until the first insertion; then `SETS * WAYS` entries, set by set.
    entries: Vec<Option<(K, V)>>,
    /// For each set, the entry the next insertion replaces (the oldest: entries are replaced
    /// in turn).
    next: [u8; SETS],
}

impl<K, V: Clone> Memo<K, V> {
    /// An empty memo (it allocates on the first insertion).
    pub(crate) const fn new() -> Self {
        Self {
            entries: Vec::new(),
            next: [0; SETS],
        }
    }

    /// The value kept with a key that `is_key` accepts, in the set `hash` picks; else the one
    /// `make` gives, kept with the key it returns (which `is_key` must accept, and which
    /// must hash to `hash`) in place of its set's oldest entry.
    ///
    /// # Errors
    ///
    /// `make`'s (nothing is kept then).
    pub(crate) fn get_or_try_insert<E>(
        &mut self,
        hash: u64,
        is_key: impl Fn(&K) -> bool,
        make: impl FnOnce() -> Result<(K, V), E>,
    ) -> Result<V, E> {
        // The top bits: the best mixed of a multiplicative hash.
        let set = (hash >> (u64::BITS - SETS.trailing_zeros())) as usize % SETS;
        if let Some(set) = self.entries.get(set * WAYS..(set + 1) * WAYS) {
            for (k, v) in set.iter().flatten() {
                if is_key(k) {
                    return Ok(v.clone());
                }
            }
        }
        let (k, v) = make()?;
        if self.entries.is_empty() {
            self.entries = std::iter::repeat_with(|| None).take(SETS * WAYS).collect();
        }
        let way = usize::from(self.next[set]) % WAYS;
        self.next[set] = ((way + 1) % WAYS) as u8;
        if let Some(entry) = self.entries.get_mut(set * WAYS + way) {
            *entry = Some((k, v.clone()));
        }
        Ok(v)
    }

    /// How many keys are kept.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.iter().flatten().count()
    }
}

/// A hash of a pointer for [`Memo::get_or_try_insert`]: Fibonacci hashing, whose top bits
/// spread addresses that differ in any bit.
pub(crate) fn address_hash<T: ?Sized>(ptr: *const T) -> u64 {
    (ptr.cast::<()>() as usize as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key with its own hash, so that tests choose which keys share a set.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Key {
        id: u32,
        set: u64,
    }

    fn hash_of(key: &Key) -> u64 {
        key.set << (u64::BITS - SETS.trailing_zeros())
    }

    /// Looks `key` up, making `value-ID` when absent; returns the value and whether it was made.
    fn lookup(memo: &mut Memo<Key, String>, key: &Key) -> (String, bool) {
        let mut made = false;
        let value = memo
            .get_or_try_insert::<()>(
                hash_of(key),
                |k| k == key,
                || {
                    made = true;
                    Ok((key.clone(), format!("value-{}", key.id)))
                },
            )
            .unwrap();
        (value, made)
    }

    #[test]
    fn each_key_gets_its_own_value_even_in_a_crowded_set() {
        let mut memo = Memo::new();
        // Twice as many keys as a set holds, all in set 3, and a few elsewhere.
        let crowded: Vec<Key> = (0..2 * WAYS as u32).map(|id| Key { id, set: 3 }).collect();
        let elsewhere: Vec<Key> = (100..104).map(|id| Key { id, set: 5 }).collect();
        for round in 0..3 {
            for key in crowded.iter().chain(&elsewhere) {
                let (value, _) = lookup(&mut memo, key);
                assert_eq!(value, format!("value-{}", key.id), "round {round}");
            }
        }
        // The newest WAYS keys of the crowded set are kept; the older ones were replaced.
        for key in &crowded[WAYS..] {
            assert!(!lookup(&mut memo, key).1, "{key:?} was not kept");
        }
        assert!(lookup(&mut memo, &crowded[0]).1, "a replaced key was found");
        // The other set kept all of its keys.
        for key in &elsewhere {
            assert!(!lookup(&mut memo, key).1, "{key:?} was not kept");
        }
    }

    #[test]
    fn a_refused_value_is_not_kept() {
        let mut memo: Memo<Key, String> = Memo::new();
        let key = Key { id: 1, set: 0 };
        assert_eq!(
            memo.get_or_try_insert(hash_of(&key), |k| *k == key, || Err("no")),
            Err("no")
        );
        assert_eq!(memo.len(), 0);
        assert!(lookup(&mut memo, &key).1);
    }

    #[test]
    fn the_memo_holds_at_most_sets_times_ways_keys() {
        let mut memo = Memo::new();
        for id in 0..(10 * SETS * WAYS) as u32 {
            let key = Key {
                id,
                set: u64::from(id) % SETS as u64,
            };
            lookup(&mut memo, &key);
        }
        assert_eq!(memo.len(), SETS * WAYS);
        assert_eq!(memo.entries.len(), SETS * WAYS);
    }

    #[test]
    fn addresses_spread_over_the_sets() {
        // Consecutive allocations of one size, 64 bytes apart: every set gets some.
        let mut used = [false; SETS];
        for i in 0..4 * SETS {
            let hash = address_hash((0x7f00_0000_0000usize + 64 * i) as *const u8);
            used[(hash >> (u64::BITS - SETS.trailing_zeros())) as usize] = true;
        }
        assert!(used.iter().all(|u| *u), "{used:?}");
    }
}
