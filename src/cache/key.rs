//! The keys of entries and flights ([`Key`], [`KeyRef`]) and the table's hasher for them
//! ([`DigestHash`]).

use super::*;

/// What entries and flights are keyed by: a token's SHA-256 and the layer's scope.
///
/// Hashes the digest only (uniform already, and the scope rarely differs); equality compares
/// both.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct Key {
    pub(super) digest: [u8; 32],
    /// Interned by the flights map, so entries share it.
    pub(super) namespace: Arc<str>,
}

impl Key {
    pub(super) fn borrowed(&self) -> KeyRef<'_> {
        KeyRef {
            digest: &self.digest,
            namespace: &self.namespace,
        }
    }
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(&self.digest);
    }
}

/// A [`Key`] made of borrowed parts, for lookups that need no allocation.
#[derive(Clone, Copy)]
pub(super) struct KeyRef<'a> {
    pub(super) digest: &'a [u8; 32],
    pub(super) namespace: &'a str,
}

impl<'a> KeyRef<'a> {
    pub(super) fn new(namespace: &'a str, fingerprint: &'a Fingerprint) -> Self {
        Self {
            digest: token_digest(fingerprint),
            namespace,
        }
    }
}

/// The digest a token's entries and flights are keyed by: the token's SHA-256, which the layer
/// computes once per request as its [`Fingerprint`] (see `docs/architecture.md`, "The cache
/// key", for why a plain cryptographic digest rather than a keyed one). Every key the cache
/// makes from a token goes through this function, so that another derivation replaces it
/// alone.
pub(super) fn token_digest(fingerprint: &Fingerprint) -> &[u8; 32] {
    fingerprint.as_bytes()
}

impl Hash for KeyRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(self.digest);
    }
}

impl Equivalent<Key> for KeyRef<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        // A layer's scope and its entries share one interned namespace (see
        // `IntrospectionCache::adopt`): the same address and length is the same text.
        *self.digest == key.digest
            && (std::ptr::eq(self.namespace, &*key.namespace) || self.namespace == &*key.namespace)
    }
}

/// The table's hasher for [`Key`]s: the first eight bytes of the SHA-256 digest, mixed with a
/// per-cache random seed by two folded 128-bit multiplies.
///
/// The digest is uniform already, so hashing all of it again (std's default SipHash) buys
/// nothing; the seed keeps bucket placement unpredictable, so tokens ground to share digest
/// bits still spread over the table.
#[derive(Clone, Copy, Debug)]
pub(super) struct DigestHash {
    seed: u64,
    multiplier: u64,
}

impl DigestHash {
    pub(super) fn random() -> Self {
        let state = RandomState::new();
        Self {
            seed: state.hash_one(0x5eed_u64),
            // Odd, so that the multiply is a bijection on the low word.
            multiplier: state.hash_one(0x6d75_u64) | 1,
        }
    }
}

impl DigestHash {
    /// Which shard of a table holds `digest`: its last eight bytes (independent of the first
    /// eight, which the map hashes), mixed with the seed as the hasher mixes the first.
    pub(super) fn shard(&self, digest: &[u8; 32]) -> usize {
        let mut word = [0_u8; 8];
        word.copy_from_slice(&digest[24..]);
        let mixed = fold_multiply(
            fold_multiply(
                self.seed.rotate_left(32) ^ u64::from_le_bytes(word),
                self.multiplier,
            ),
            FINISH_MULTIPLIER,
        );
        // The top bits: the best mixed by the multiplies.
        (mixed >> 32) as usize
    }
}

impl BuildHasher for DigestHash {
    type Hasher = DigestHasher;

    fn build_hasher(&self) -> DigestHasher {
        DigestHasher {
            hash: self.seed,
            multiplier: self.multiplier,
        }
    }
}

/// See [`DigestHash`].
pub(super) struct DigestHasher {
    hash: u64,
    multiplier: u64,
}

impl Hasher for DigestHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut word = [0_u8; 8];
        let n = bytes.len().min(8);
        word[..n].copy_from_slice(&bytes[..n]);
        self.hash = fold_multiply(self.hash ^ u64::from_le_bytes(word), self.multiplier);
    }

    fn finish(&self) -> u64 {
        // A second round: one folded multiply leaves the low bits weakly mixed for words that
        // differ only in their top bits.
        fold_multiply(self.hash, FINISH_MULTIPLIER)
    }
}

/// An odd constant (2^64 divided by the golden ratio) for [`DigestHasher::finish`].
const FINISH_MULTIPLIER: u64 = 0x9e37_79b9_7f4a_7c15;

/// The 128-bit product of `a` and `b`, its high half folded onto its low half.
fn fold_multiply(a: u64, b: u64) -> u64 {
    let product = u128::from(a) * u128::from(b);
    #[allow(clippy::cast_possible_truncation, reason = "the low and high halves")]
    let (low, high) = (product as u64, (product >> 64) as u64);
    low ^ high
}
