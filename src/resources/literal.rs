//! The literal routes' table: the routes whose template has no parameter and no wildcard,
//! by their path, so that a request for exactly that path finds its route without being
//! normalised and matched against every template.
//!
//! A request path equal byte for byte to such a template (written canonically, without
//! escapes) is canonical as received: normalising it changes nothing, no segment holds an
//! escape, and the route wins the match however the layer, a decoding upstream, a
//! case-sensitive one or axum's router look at it (a template of only literals ranks above
//! every other template matching the same segments, and one of the same literals in another
//! case is a duplicate the map refuses). So the map's full resolution of such a request comes
//! down to the route's own rule for the method; [`ResourceMap`](super::ResourceMap) takes
//! this way only when no template keeps or rewrites an escape, and falls back to the full
//! resolution when the route is public and does not let the method through (other routes may
//! then take it). Debug builds check every answer against the full resolution.

use hashbrown::HashTable;

/// Literal routes by path (see the [module](self)).
#[derive(Clone, Debug, Default)]
pub(super) struct Literals {
    /// `(path, route index)`, hashed with [`hash`].
    table: HashTable<(Box<str>, usize)>,
}

impl Literals {
    /// Records route `index` for `path`; the first route given a path keeps it (a second one
    /// is a duplicate the map refuses).
    pub(super) fn insert(&mut self, path: String, index: usize) {
        let hash = hash(&path);
        let entry = self
            .table
            .entry(hash, |(p, _)| **p == *path, |(p, _)| self::hash(p));
        if let hashbrown::hash_table::Entry::Vacant(vacant) = entry {
            vacant.insert((path.into_boxed_str(), index));
        }
    }

    /// The route whose template is `path`, byte for byte.
    #[inline]
    pub(super) fn get(&self, path: &str) -> Option<usize> {
        if self.table.is_empty() {
            return None;
        }
        self.table
            .find(hash(path), |(p, _)| **p == *path)
            .map(|&(_, index)| index)
    }
}

/// A quick hash of a path, eight bytes at a time. The table's keys come from the
/// configuration, never from requests, so a request cannot lengthen a probe sequence: a
/// keyed hash would buy nothing here.
#[inline]
fn hash(path: &str) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let bytes = path.as_bytes();
    let mut h = (bytes.len() as u64).wrapping_mul(K);
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        h = (h ^ u64::from_le_bytes(word))
            .wrapping_mul(K)
            .rotate_left(29);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut word = [0; 8];
        word[..rest.len()].copy_from_slice(rest);
        h = (h ^ u64::from_le_bytes(word))
            .wrapping_mul(K)
            .rotate_left(29);
    }
    // hashbrown takes its control bytes from the top seven bits.
    h ^ (h >> 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_exactly_its_paths() {
        let mut literals = Literals::default();
        assert_eq!(literals.get("/"), None);
        let paths = [
            "/",
            "/hello",
            "/albums/new",
            "/a/b/c/d/e/f/g/h",
            "/a/b/c/d/e/f/g/i",
        ];
        for (index, path) in paths.iter().enumerate() {
            literals.insert((*path).to_owned(), index);
        }
        literals.insert("/hello".to_owned(), 9);
        for (index, path) in paths.iter().enumerate() {
            assert_eq!(literals.get(path), Some(index), "{path}");
        }
        for other in [
            "",
            "/Hello",
            "/hello/",
            "//hello",
            "/albums/new2",
            "/a/b/c/d/e/f/g/",
        ] {
            assert_eq!(literals.get(other), None, "{other}");
        }
    }
}
