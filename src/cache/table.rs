//! [`Table`], where entries live: a hash map split into shards behind read-write locks,
//! bounded by the entries' total weight, evicting with the CLOCK algorithm.
//!
//! Why not moka, which the cache used before: on the hit path (the only one that matters for
//! speed) a moka lookup cost about 1,500 instructions per request (its bucket walk, a read
//! record pushed to a channel, expiry arithmetic and the maintenance those records trigger);
//! this table answers a hit with one uncontended read lock, one probe keyed by eight bytes
//! of the digest and one relaxed atomic load, about 150 instructions in all. What the
//! cache needs of a store is small: weighted capacity, removal by key and by predicate,
//! removal of expired entries; freshness itself is checked by the callers against the layer's
//! clock. See `docs/architecture.md`, "The entries' table".

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::*;

/// How many shards a table has (a power of two): enough that concurrent requests on two cores
/// or on sixty-four rarely wait for the same lock, few enough to cost nothing when idle.
const SHARDS: usize = 64;

/// A shard is swept for expired entries at most this often (seconds of the layer's
/// clock), on an insert into it.
const SWEEP_EVERY: i64 = 1;

/// A store of [`Entry`]s keyed by [`Key`], holding at most `capacity` weight.
pub(super) struct Table {
    /// `positive` or `negative`: the `cache` label of `uma_cache_evictions_total`.
    label: &'static str,
    shards: Box<[RwLock<Shard>]>,
    hasher: DigestHash,
    capacity: u64,
    /// The total weight of the entries in every shard.
    weight: AtomicU64,
    /// The shard the next eviction starts from.
    hand: AtomicUsize,
    /// The latest clock reading an insert brought: what [`entry_count`](Self::entry_count)
    /// sweeps expired entries at.
    latest: AtomicI64,
}

/// An entry in a shard.
struct Slot {
    entry: Entry,
    weight: u32,
    /// Set by every read, cleared by the clock hand as it passes; the hand evicts the first
    /// entry it finds clear (not read since its last pass).
    referenced: AtomicBool,
    /// Which insert stored it: ring positions of earlier inserts of the key are stale.
    stamp: u64,
}

struct Shard {
    map: hashbrown::HashMap<Key, Slot, DigestHash>,
    /// The clock: keys in the order the hand visits them, with the stamp of the insert that
    /// put them there. May hold stale positions (replaced or removed entries), dropped as the
    /// hand meets them or when they outnumber the live ones.
    ring: VecDeque<(Key, u64)>,
    next_stamp: u64,
    /// When (layer's clock, seconds) the shard is swept for expired entries next.
    next_sweep: i64,
}

impl Table {
    pub(super) fn new(label: &'static str, capacity: u64, hasher: DigestHash) -> Self {
        let shards = (0..SHARDS)
            .map(|_| {
                RwLock::new(Shard {
                    map: hashbrown::HashMap::with_hasher(hasher),
                    ring: VecDeque::new(),
                    next_stamp: 0,
                    next_sweep: i64::MIN,
                })
            })
            .collect();
        Self {
            label,
            shards,
            hasher,
            capacity,
            weight: AtomicU64::new(0),
            hand: AtomicUsize::new(0),
            latest: AtomicI64::new(i64::MIN),
        }
    }

    /// The shard of a digest: a keyed hash of its last eight bytes, so that the bits the map
    /// hashes (the first eight) stay spread within each shard, and tokens ground to share
    /// digest bits cannot gather in one shard.
    fn shard(&self, digest: &[u8; 32]) -> &RwLock<Shard> {
        &self.shards[self.shard_index(digest)]
    }

    fn shard_index(&self, digest: &[u8; 32]) -> usize {
        self.hasher.shard(digest) % SHARDS
    }

    fn read(shard: &RwLock<Shard>) -> RwLockReadGuard<'_, Shard> {
        // Nothing panics while a shard is locked; a poisoned lock holds a consistent shard.
        shard.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(shard: &RwLock<Shard>) -> RwLockWriteGuard<'_, Shard> {
        shard.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The entry stored for `key`, expired or not (callers check its times against their
    /// clock), marked as read.
    pub(super) fn get(&self, key: &KeyRef<'_>) -> Option<Entry> {
        let shard = Self::read(self.shard(key.digest));
        let slot = shard.map.get(key)?;
        // A load first: the cache line is written only on the first read after the hand passed.
        if !slot.referenced.load(Ordering::Relaxed) {
            slot.referenced.store(true, Ordering::Relaxed);
        }
        Some(slot.entry.clone())
    }

    /// Stores `entry` for `key` (weighing `weight`), replacing what was stored for it, then
    /// evicts until the table's weight is within its capacity. `now`: the layer's clock.
    pub(super) fn insert(&self, key: Key, entry: Entry, weight: u32, now: i64) {
        self.latest.fetch_max(now, Ordering::Relaxed);
        let mut removed = Removed::default();
        let shard_of_key = self.shard_index(&key.digest);
        if u64::from(weight) > self.capacity {
            // It could never fit: what was stored for the key is replaced all the same.
            let old = Self::write(self.shard(&key.digest))
                .map
                .remove(&key.borrowed());
            if let Some(old) = old {
                removed.add(&old, Cause::Replaced, now);
            }
            removed.size += 1;
            self.account(removed);
            return;
        }
        let stamp = {
            let mut shard = Self::write(&self.shards[shard_of_key]);
            let stamp = shard.next_stamp;
            shard.next_stamp += 1;
            shard.ring.push_back((key.clone(), stamp));
            let slot = Slot {
                entry,
                weight,
                // Not read yet; the insert's own eviction passes over it (below).
                referenced: AtomicBool::new(false),
                stamp,
            };
            self.weight.fetch_add(u64::from(weight), Ordering::AcqRel);
            if let Some(old) = shard.map.insert(key, slot) {
                removed.add(&old, Cause::Replaced, now);
            }
            if now >= shard.next_sweep {
                shard.next_sweep = now.saturating_add(SWEEP_EVERY);
                shard.sweep(now, &mut removed);
            }
            shard.compact();
            stamp
        };
        // Counted outside the lock: the metrics recorder is the application's code.
        self.account(removed);
        self.evict_over_capacity(now, (shard_of_key, stamp));
    }

    /// Removes `key`'s entry; whether there was one.
    pub(super) fn invalidate(&self, key: &KeyRef<'_>) -> bool {
        let old = Self::write(self.shard(key.digest)).map.remove(key);
        let mut removed = Removed::default();
        if let Some(old) = &old {
            removed.add(old, Cause::Explicit, i64::MIN);
        }
        self.account(removed);
        old.is_some()
    }

    /// Removes every entry whose key `matches`. Each shard is searched under its read lock
    /// (the predicate may be costly: the fleet's revocations compute an HMAC per entry) and
    /// write-locked only to remove what matched.
    #[cfg_attr(
        not(feature = "redis"),
        allow(dead_code, reason = "the fleet's revocations use it")
    )]
    pub(super) fn invalidate_if(&self, matches: impl Fn(&Key) -> bool) {
        for shard in &*self.shards {
            self.invalidate_in(shard, &matches);
        }
    }

    /// Removes the entries of every scope for the token whose digest is `digest` (one shard
    /// holds them all).
    pub(super) fn invalidate_digest(&self, digest: &[u8; 32]) {
        self.invalidate_in(self.shard(digest), &|k: &Key| k.digest == *digest);
    }

    fn invalidate_in(&self, shard: &RwLock<Shard>, matches: &impl Fn(&Key) -> bool) {
        let found: Vec<(Key, u64)> = Self::read(shard)
            .map
            .iter()
            .filter(|(key, _)| matches(key))
            .map(|(key, slot)| (key.clone(), slot.stamp))
            .collect();
        if found.is_empty() {
            return;
        }
        let mut removed = Removed::default();
        {
            let mut shard = Self::write(shard);
            for (key, stamp) in found {
                // Only the entries seen matching: one stored since is not affected.
                if shard.map.get(&key).is_some_and(|slot| slot.stamp == stamp)
                    && let Some(old) = shard.map.remove(&key)
                {
                    removed.add(&old, Cause::Explicit, i64::MIN);
                }
            }
            shard.compact();
        }
        self.account(removed);
    }

    /// Removes every entry.
    pub(super) fn invalidate_all(&self) {
        for shard in &*self.shards {
            let mut removed = Removed::default();
            {
                let mut shard = Self::write(shard);
                for (_, old) in shard.map.drain() {
                    removed.add(&old, Cause::Explicit, i64::MIN);
                }
                shard.ring.clear();
            }
            self.account(removed);
        }
    }

    /// How many entries the table holds, the expired ones (as of the latest insert's clock)
    /// removed first. Write-locks every shard: for tests and benchmarks.
    pub(super) fn entry_count(&self) -> u64 {
        let now = self.latest.load(Ordering::Relaxed);
        let mut count = 0_u64;
        for shard in &*self.shards {
            let mut removed = Removed::default();
            {
                let mut shard = Self::write(shard);
                shard.sweep(now, &mut removed);
                shard.compact();
                count = count.saturating_add(shard.map.len() as u64);
            }
            self.account(removed);
        }
        count
    }

    /// Evicts entries, shard after shard from the hand, until the weight fits the capacity;
    /// never the entry `spared` (shard, stamp): the one whose insert evicts.
    fn evict_over_capacity(&self, now: i64, spared: (usize, u64)) {
        // Shards passed without an eviction since the last one: after one full turn every
        // reference bit was cleared, so the next turn evicts; only entries read again meanwhile
        // by other threads could delay it, and after two turns the hand evicts regardless.
        let mut passed = 0;
        while self.weight.load(Ordering::Acquire) > self.capacity && passed < 3 * SHARDS {
            let at = self.hand.fetch_add(1, Ordering::Relaxed) % SHARDS;
            let force = passed >= 2 * SHARDS;
            let spare = (at == spared.0).then_some(spared.1);
            let evicted = Self::write(&self.shards[at]).evict_one(force, spare);
            match evicted {
                Some(old) => {
                    passed = 0;
                    let mut removed = Removed::default();
                    removed.add(&old, Cause::Size, now);
                    self.account(removed);
                }
                None => passed += 1,
            }
        }
    }

    /// Accounts for what was removed: the weight, then the metrics (outside any lock).
    fn account(&self, removed: Removed) {
        if removed.weight > 0 {
            self.weight.fetch_sub(removed.weight, Ordering::AcqRel);
        }
        for (cause, n) in [
            ("expired", removed.expired),
            ("size", removed.size),
            ("explicit", removed.explicit),
            ("replaced", removed.replaced),
        ] {
            for _ in 0..n {
                metrics::cache_eviction(self.label, cause);
            }
        }
    }
}

/// Why an entry left the table (`cause` of `uma_cache_evictions_total`).
#[derive(Clone, Copy)]
enum Cause {
    Size,
    Explicit,
    Replaced,
}

/// Entries removed under a lock, accounted for once it is released.
#[derive(Clone, Copy, Default)]
struct Removed {
    weight: u64,
    expired: u32,
    size: u32,
    explicit: u32,
    replaced: u32,
}

impl Removed {
    /// One more entry removed for `cause`; one past its stale end at `now` counts as
    /// `expired` whatever removed it (as the timers of a cache with per-entry expiry would
    /// have).
    fn add(&mut self, old: &Slot, cause: Cause, now: i64) {
        self.weight += u64::from(old.weight);
        let counter = match cause {
            _ if now >= old.entry.stale_until => &mut self.expired,
            Cause::Size => &mut self.size,
            Cause::Explicit => &mut self.explicit,
            Cause::Replaced => &mut self.replaced,
        };
        *counter = counter.saturating_add(1);
    }
}

impl Shard {
    /// Evicts one entry by CLOCK: the hand goes once around the shard at most, clearing the
    /// reference bit of each entry read since it last passed, and evicts the first one it
    /// finds clear (with `force`, the first live one), passing over the entry of stamp `spare`.
    /// `None` when the shard is empty or every entry in it had been read.
    fn evict_one(&mut self, force: bool, spare: Option<u64>) -> Option<Slot> {
        for _ in 0..self.ring.len() {
            let (key, stamp) = self.ring.pop_front()?;
            let Some(slot) = self.map.get(&key).filter(|slot| slot.stamp == stamp) else {
                // A stale position.
                continue;
            };
            if Some(stamp) == spare || (slot.referenced.swap(false, Ordering::Relaxed) && !force) {
                // Read since the last pass: a second chance.
                self.ring.push_back((key, stamp));
                continue;
            }
            return self.map.remove(&key);
        }
        None
    }

    /// Removes the entries that no caller would serve at `now` any more (past their
    /// stale-if-error end, which is at or after their fresh end).
    fn sweep(&mut self, now: i64, removed: &mut Removed) {
        self.map.retain(|_, slot| {
            let keep = now < slot.entry.stale_until;
            if !keep {
                removed.weight += u64::from(slot.weight);
                removed.expired = removed.expired.saturating_add(1);
            }
            keep
        });
    }

    /// Drops stale ring positions once they outnumber the live entries, so that the ring
    /// stays within a small multiple of the map (amortised: at most once per as many inserts
    /// or removals as there are live entries).
    fn compact(&mut self) {
        if self.ring.len() <= 2 * self.map.len() + 32 {
            return;
        }
        let map = &self.map;
        self.ring
            .retain(|(key, stamp)| map.get(key).is_some_and(|slot| slot.stamp == *stamp));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8, namespace: &str) -> Key {
        let mut digest = [0_u8; 32];
        digest[0] = n;
        digest[31] = n;
        Key {
            digest,
            namespace: Arc::from(namespace),
        }
    }

    fn entry(stale_until: i64) -> Entry {
        Entry::new(
            &Arc::new(Introspection::inactive()),
            lifetime::Times {
                fresh_until: stale_until,
                stale_until,
                ttl: Duration::from_secs(1),
            },
        )
    }

    fn has(table: &Table, key: &Key) -> bool {
        table.get(&key.borrowed()).is_some()
    }

    #[test]
    fn keys_differ_by_namespace_as_well_as_digest() {
        let table = Table::new("positive", 10, DigestHash::random());
        table.insert(key(1, "a"), entry(100), 1, 0);
        assert!(has(&table, &key(1, "a")));
        assert!(!has(&table, &key(1, "b")));
        assert!(!has(&table, &key(2, "a")));
        table.insert(key(1, "b"), entry(100), 1, 0);
        assert_eq!(table.entry_count(), 2);
        assert!(table.invalidate(&key(1, "a").borrowed()));
        assert!(!table.invalidate(&key(1, "a").borrowed()));
        assert!(has(&table, &key(1, "b")));
    }

    #[test]
    fn the_weight_never_exceeds_the_capacity_and_read_entries_survive() {
        let table = Table::new("positive", 8, DigestHash::random());
        let hot = key(0, "a");
        table.insert(hot.clone(), entry(100), 1, 0);
        for n in 1..=200 {
            // The hot entry is read between inserts, so the hand gives it a second chance.
            assert!(has(&table, &hot), "the read entry was evicted at {n}");
            table.insert(key(n, "a"), entry(100), 2, 0);
            assert!(table.weight.load(Ordering::Acquire) <= 8);
        }
        assert!(table.entry_count() <= 8);
        // An entry heavier than the whole table is not stored, and replaces the old one.
        table.insert(hot.clone(), entry(100), 9, 0);
        assert!(!has(&table, &hot));
        assert!(table.weight.load(Ordering::Acquire) <= 8);
    }

    #[test]
    fn replacing_keeps_the_weight_exact_and_the_ring_bounded() {
        let table = Table::new("positive", 1_000, DigestHash::random());
        for round in 0..1_000 {
            table.insert(key(7, "a"), entry(100), 1 + round % 3, 0);
        }
        // The last insert (round 999) weighs 1 + 999 % 3 = 1.
        assert_eq!(table.weight.load(Ordering::Acquire), 1);
        assert_eq!(table.entry_count(), 1);
        let shard = Table::read(table.shard(&key(7, "a").digest));
        assert!(
            shard.ring.len() <= 2 * shard.map.len() + 32,
            "{}",
            shard.ring.len()
        );
    }

    #[test]
    fn expired_entries_are_swept_and_predicates_remove_what_they_match() {
        let table = Table::new("negative", 100, DigestHash::random());
        table.insert(key(1, "a"), entry(10), 1, 0);
        table.insert(key(2, "a"), entry(50), 1, 0);
        table.insert(key(3, "b"), entry(50), 1, 0);
        assert_eq!(table.entry_count(), 3);
        // An insert at 20 (into another shard) moves the clock entry_count sweeps at.
        table.insert(key(4, "b"), entry(50), 1, 20);
        assert_eq!(table.entry_count(), 3, "the one that ended at 10 is gone");
        table.invalidate_if(|k| &*k.namespace == "b");
        assert_eq!(table.entry_count(), 1);
        assert_eq!(table.weight.load(Ordering::Acquire), 1);
        table.invalidate_all();
        assert_eq!(table.entry_count(), 0);
        assert_eq!(table.weight.load(Ordering::Acquire), 0);
    }

    #[test]
    fn concurrent_inserts_and_reads_keep_the_bound() {
        let table = Arc::new(Table::new("positive", 50, DigestHash::random()));
        let threads: Vec<_> = (0..4_u8)
            .map(|t| {
                let table = Arc::clone(&table);
                std::thread::spawn(move || {
                    for n in 0..250_u8 {
                        let k = key(n.wrapping_mul(4).wrapping_add(t), "a");
                        table.insert(k.clone(), entry(100), 1, 0);
                        let _ = table.get(&k.borrowed());
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("no panic");
        }
        assert!(table.entry_count() <= 50);
        assert!(table.weight.load(Ordering::Acquire) <= 50);
    }

    /// Keys whose digests differ but which the table puts in one shard.
    fn same_shard(table: &Table, n: usize) -> Vec<Key> {
        let target = table.hasher.shard(&key(0, "a").digest) % SHARDS;
        (0..=u8::MAX)
            .flat_map(|a| (0..=u8::MAX).map(move |b| (a, b)))
            .map(|(a, b)| {
                let mut k = key(a, "a");
                k.digest[30] = b;
                k
            })
            .filter(|k| table.hasher.shard(&k.digest) % SHARDS == target)
            .take(n)
            .collect()
    }

    #[test]
    fn a_new_entry_is_not_the_victim_of_its_own_insert() {
        let table = Table::new("positive", 2, DigestHash::random());
        let keys = same_shard(&table, 3);
        assert_eq!(keys.len(), 3);
        table.insert(keys[0].clone(), entry(100), 1, 0);
        table.insert(keys[1].clone(), entry(100), 1, 0);
        assert!(has(&table, &keys[0]) && has(&table, &keys[1]));
        table.insert(keys[2].clone(), entry(100), 1, 0);
        assert!(has(&table, &keys[2]), "the newcomer was evicted");
        // Across shards as well: whatever shard the hand is at, the new key stays.
        let table = Table::new("positive", 2, DigestHash::random());
        for n in 0..=u8::MAX {
            table.insert(key(n, "a"), entry(100), 1, 0);
            assert!(has(&table, &key(n, "a")), "{n} evicted by its own insert");
        }
    }

    /// A recorder that panics when a counter with a label value `expired` is registered.
    struct Panicky;

    impl ::metrics::Recorder for Panicky {
        fn describe_counter(
            &self,
            _: ::metrics::KeyName,
            _: Option<::metrics::Unit>,
            _: ::metrics::SharedString,
        ) {
        }
        fn describe_gauge(
            &self,
            _: ::metrics::KeyName,
            _: Option<::metrics::Unit>,
            _: ::metrics::SharedString,
        ) {
        }
        fn describe_histogram(
            &self,
            _: ::metrics::KeyName,
            _: Option<::metrics::Unit>,
            _: ::metrics::SharedString,
        ) {
        }
        fn register_counter(
            &self,
            key: &::metrics::Key,
            _: &::metrics::Metadata<'_>,
        ) -> ::metrics::Counter {
            assert!(
                key.labels().all(|l| l.value() != "expired"),
                "the recorder panics"
            );
            ::metrics::Counter::noop()
        }
        fn register_gauge(
            &self,
            _: &::metrics::Key,
            _: &::metrics::Metadata<'_>,
        ) -> ::metrics::Gauge {
            ::metrics::Gauge::noop()
        }
        fn register_histogram(
            &self,
            _: &::metrics::Key,
            _: &::metrics::Metadata<'_>,
        ) -> ::metrics::Histogram {
            ::metrics::Histogram::noop()
        }
    }

    #[test]
    fn a_panicking_metrics_recorder_leaves_the_table_consistent() {
        let table = Table::new("positive", 10, DigestHash::random());
        let keys = same_shard(&table, 2);
        table.insert(keys[0].clone(), entry(5), 3, 0);
        // The insert at 10 sweeps the shard: the entry that ended at 5 goes, and its metric
        // panics.
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            ::metrics::with_local_recorder(&Panicky, || {
                table.insert(keys[1].clone(), entry(100), 1, 10);
            });
        }));
        assert!(panicked.is_err());
        assert_eq!(table.weight.load(Ordering::Acquire), 1);
        assert!(table.invalidate(&keys[1].borrowed()));
        assert_eq!(table.weight.load(Ordering::Acquire), 0);
        for n in 0..5 {
            table.insert(key(n, "a"), entry(100), 1, 10);
        }
        assert_eq!(table.entry_count(), 5, "the table still stores");
    }

    #[test]
    fn invalidating_a_digest_removes_it_in_every_scope_and_nothing_else() {
        let table = Table::new("positive", 100, DigestHash::random());
        for ns in ["a", "b", "c"] {
            table.insert(key(1, ns), entry(100), 1, 0);
            table.insert(key(2, ns), entry(100), 1, 0);
        }
        table.invalidate_digest(&key(1, "a").digest);
        assert_eq!(table.entry_count(), 3);
        assert!(["a", "b", "c"].iter().all(|ns| has(&table, &key(2, ns))));
    }
}
