//! [`Table`], where entries live: a hash map split into shards behind read-write locks,
//! bounded by the entries' total weight, evicting with the CLOCK algorithm.
//!
//! Why not moka, which the cache used before: on the hit path (the only one that matters for
//! speed) a moka lookup cost about 1,500 instructions per request (its bucket walk, a read
//! record pushed to a channel, expiry arithmetic and the maintenance those records trigger);
//! this table answers a hit with one uncontended read lock, one probe keyed by eight bytes
//! of the digest and one relaxed atomic store, a few hundred instructions in all. What the
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

/// An empty shard is swept for expired entries at most this often (seconds of the layer's
/// clock), on an insert into it.
const SWEEP_EVERY: i64 = 1;

/// A store of [`Entry`]s keyed by [`Key`], holding at most `capacity` weight.
pub(super) struct Table {
    /// `positive` or `negative`: the `cache` label of `uma_cache_evictions_total`.
    label: &'static str,
    shards: Box<[RwLock<Shard>]>,
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
            capacity,
            weight: AtomicU64::new(0),
            hand: AtomicUsize::new(0),
            latest: AtomicI64::new(i64::MIN),
        }
    }

    /// The shard of a digest: chosen by its last byte, so that the bits the map hashes (the
    /// first eight bytes) stay spread within each shard.
    fn shard(&self, digest: &[u8; 32]) -> &RwLock<Shard> {
        &self.shards[usize::from(digest[31]) % SHARDS]
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
        if u64::from(weight) > self.capacity {
            // It could never fit: what was stored for the key is replaced all the same.
            self.invalidate(&key.borrowed());
            metrics::cache_eviction(self.label, "size");
            return;
        }
        {
            let mut shard = Self::write(self.shard(&key.digest));
            let stamp = shard.next_stamp;
            shard.next_stamp += 1;
            shard.ring.push_back((key.clone(), stamp));
            let slot = Slot {
                entry,
                weight,
                referenced: AtomicBool::new(false),
                stamp,
            };
            self.weight.fetch_add(u64::from(weight), Ordering::AcqRel);
            if let Some(old) = shard.map.insert(key, slot) {
                self.weight
                    .fetch_sub(u64::from(old.weight), Ordering::AcqRel);
                metrics::cache_eviction(self.label, "replaced");
            }
            if now >= shard.next_sweep {
                shard.next_sweep = now.saturating_add(SWEEP_EVERY);
                self.sweep(&mut shard, now);
            }
            shard.compact();
        }
        self.evict_over_capacity();
    }

    /// Removes `key`'s entry; whether there was one.
    pub(super) fn invalidate(&self, key: &KeyRef<'_>) -> bool {
        let removed = Self::write(self.shard(key.digest)).map.remove(key);
        removed.is_some_and(|slot| {
            self.removed(slot.weight, "explicit");
            true
        })
    }

    /// Removes every entry whose key `matches`.
    pub(super) fn invalidate_if(&self, matches: impl Fn(&Key) -> bool) {
        for shard in &*self.shards {
            let mut shard = Self::write(shard);
            shard.map.retain(|key, slot| {
                let keep = !matches(key);
                if !keep {
                    self.removed(slot.weight, "explicit");
                }
                keep
            });
            shard.compact();
        }
    }

    /// Removes every entry.
    pub(super) fn invalidate_all(&self) {
        self.invalidate_if(|_| true);
    }

    /// How many entries the table holds, the expired ones (as of the latest insert's clock)
    /// removed first.
    pub(super) fn entry_count(&self) -> u64 {
        let now = self.latest.load(Ordering::Relaxed);
        let mut count = 0_u64;
        for shard in &*self.shards {
            let mut shard = Self::write(shard);
            self.sweep(&mut shard, now);
            shard.compact();
            count = count.saturating_add(shard.map.len() as u64);
        }
        count
    }

    /// Removes the shard's entries that no caller would serve at `now` any more (past their
    /// stale-if-error end, which is at or after their fresh end).
    fn sweep(&self, shard: &mut Shard, now: i64) {
        shard.map.retain(|_, slot| {
            let keep = now < slot.entry.stale_until;
            if !keep {
                self.removed(slot.weight, "expired");
            }
            keep
        });
    }

    /// Evicts entries, shard after shard from the hand, until the weight fits the capacity.
    fn evict_over_capacity(&self) {
        // Shards passed without an eviction since the last one: after one full turn every
        // reference bit was cleared, so the next turn evicts; only entries read again meanwhile
        // by other threads could delay it, and after two turns the hand evicts regardless.
        let mut passed = 0;
        while self.weight.load(Ordering::Acquire) > self.capacity && passed < 3 * SHARDS {
            let at = self.hand.fetch_add(1, Ordering::Relaxed) % SHARDS;
            let force = passed >= 2 * SHARDS;
            match Self::write(&self.shards[at]).evict_one(force) {
                Some(weight) => {
                    passed = 0;
                    self.removed(weight, "size");
                }
                None => passed += 1,
            }
        }
    }

    /// Accounts for an entry of `weight` removed for `cause`.
    fn removed(&self, weight: u32, cause: &'static str) {
        self.weight.fetch_sub(u64::from(weight), Ordering::AcqRel);
        metrics::cache_eviction(self.label, cause);
    }
}

impl Shard {
    /// Evicts one entry by CLOCK, returning its weight: the hand goes once around the shard
    /// at most, clearing the reference bit of each entry read since it last passed, and
    /// evicts the first one it finds clear (with `force`, the first live one). `None` when the
    /// shard is empty or every entry in it had been read.
    fn evict_one(&mut self, force: bool) -> Option<u32> {
        for _ in 0..self.ring.len() {
            let (key, stamp) = self.ring.pop_front()?;
            let Some(slot) = self.map.get(&key).filter(|slot| slot.stamp == stamp) else {
                // A stale position.
                continue;
            };
            if slot.referenced.swap(false, Ordering::Relaxed) && !force {
                // Read since the last pass: a second chance.
                self.ring.push_back((key, stamp));
                continue;
            }
            return self.map.remove(&key).map(|slot| slot.weight);
        }
        None
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
}
