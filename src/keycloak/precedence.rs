//! Which configured path decides a request, by Keycloak's rules and by tower-uma's, checked
//! to agree when the configuration is read.
//!
//! tower-uma's map takes the most specific template segment by segment (a literal beats a
//! `{param}`, which beats a `*`, at the first position where two templates differ).
//! Keycloak's `PathMatcher` prefers a path matching the whole request (an exact path, a
//! template, or a `/prefix/*` for the bare `/prefix`) over a trailing `*` matching more; among
//! templates the one with more segments, then fewer parameters, then the first listed; an
//! exact path listed before any matching template at once; among trailing `*` matches the one
//! with more segments, then the first listed. Where two entries with different rules meet,
//! both orders are computed for the paths they share, and a configuration on which they
//! disagree is refused: the request would otherwise get another rule than under Keycloak's
//! enforcer, possibly a public one.

use std::collections::HashSet;

use super::KeycloakConfigError;
use super::parse::PathEntry;

/// How many paths are tried for one pair of entries, at most.
const PER_PAIR: usize = 64;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Seg {
    Lit(String),
    Param,
}

/// A configured path as both matchers see it.
struct Shape<'e> {
    entry: &'e PathEntry,
    segs: Vec<Seg>,
    wild: bool,
}

impl<'e> Shape<'e> {
    /// The shape of a path [`template_of`](super::rule::template_of) accepted.
    fn of(entry: &'e PathEntry) -> Self {
        let path = entry.path.as_str();
        if path == "*" || path == "/*" {
            return Self {
                entry,
                segs: Vec::new(),
                wild: true,
            };
        }
        let mut raw: Vec<&str> = path
            .trim_start_matches('/')
            .split('/')
            .filter(|s| !s.is_empty())
            .collect();
        let wild = raw.last() == Some(&"*");
        if wild {
            raw.pop();
        }
        let segs = raw
            .iter()
            .map(|s| {
                if s.starts_with('{') {
                    Seg::Param
                } else {
                    Seg::Lit((*s).to_owned())
                }
            })
            .collect();
        Self { entry, segs, wild }
    }

    fn matches(&self, path: &[String]) -> bool {
        let fits = if self.wild {
            path.len() >= self.segs.len()
        } else {
            path.len() == self.segs.len()
        };
        fits && self.segs.iter().zip(path).all(|(s, p)| match s {
            Seg::Lit(l) => l == p,
            Seg::Param => true,
        })
    }

    /// tower-uma's precedence key (as the map's templates rank themselves): 2 for a literal,
    /// 1 for a parameter, then 0 for a trailing `*` or 3 for the end of a template without.
    fn rank(&self) -> Vec<u8> {
        let mut rank: Vec<u8> = self
            .segs
            .iter()
            .map(|s| match s {
                Seg::Lit(_) => 2,
                Seg::Param => 1,
            })
            .collect();
        rank.push(if self.wild { 0 } else { 3 });
        rank
    }
}

/// The entry tower-uma's map decides `path` by.
fn towers_pick(shapes: &[Shape<'_>], path: &[String]) -> Option<usize> {
    shapes
        .iter()
        .enumerate()
        .filter(|(_, s)| s.matches(path))
        .max_by(|(_, a), (_, b)| a.rank().cmp(&b.rank()))
        .map(|(i, _)| i)
}

/// Java's `String.split("/").length`: trailing empty strings are dropped.
fn java_split_len(s: &str) -> usize {
    let parts: Vec<&str> = s.split('/').collect();
    let kept = parts
        .iter()
        .rposition(|p| !p.is_empty())
        .map_or(0, |i| i + 1);
    if s.is_empty() { 1 } else { kept }
}

/// The entry Keycloak's `PathMatcher.matches` decides `path` by, entries tried in `order`
/// (indices into `shapes`); a port of the method for the paths tower-uma accepts (no suffix
/// patterns), without the server-side lookups of `PathConfigMatcher`.
fn keycloaks_pick(shapes: &[Shape<'_>], order: &[usize], path: &[String]) -> Option<usize> {
    let uri = format!("/{}", path.join("/"));
    let mut pattern_count = 0;
    let mut brackets_pattern_count = 0;
    let mut matching_path = None;
    let mut matching_any_path: Option<(usize, usize)> = None;
    for &index in order {
        let shape = &shapes[index];
        let expected = shape.entry.path.as_str();
        if !shape.matches(path) {
            continue;
        }
        let matching_uri = if expected.contains('{') {
            let length = java_split_len(expected);
            let brackets = expected.matches('{').count() + 1;
            if !(pattern_count == 0 || length > pattern_count || brackets < brackets_pattern_count)
            {
                continue;
            }
            pattern_count = length;
            brackets_pattern_count = brackets;
            // The template with the request's values put in (after the empty part before
            // the first `/`).
            expected
                .split('/')
                .enumerate()
                .map(
                    |(at, s)| match at.checked_sub(1).and_then(|i| path.get(i)) {
                        Some(v) if s.starts_with('{') => v.as_str(),
                        _ => s,
                    },
                )
                .collect::<Vec<_>>()
                .join("/")
        } else {
            expected.to_owned()
        };
        let mut bare = expected;
        if let Some(at) = bare.find("/*") {
            bare = &bare[..at];
        }
        if let Some(at) = bare.find('{') {
            bare = &bare[..at];
        }
        let bare = if bare.is_empty() { "/" } else { bare };
        if matching_uri == uri || bare == uri {
            if pattern_count == 0 {
                return Some(index);
            }
            matching_path = Some(index);
        }
        if expected.ends_with('*') {
            let count = java_split_len(&matching_uri);
            match matching_any_path {
                Some((_, best)) if best >= count => {}
                _ => matching_any_path = Some((index, count)),
            }
        }
    }
    matching_path.or(matching_any_path.map(|(i, _)| i))
}

/// Whether two entries decide every request alike: both public, or the same named resource
/// with the same methods and scopes and no claims.
fn same_rule(a: &PathEntry, b: &PathEntry) -> bool {
    if a.disabled || b.disabled {
        return a.disabled && b.disabled;
    }
    let named = (a.name.is_some() || a.id.is_some()) && a.name == b.name && a.id == b.id;
    named
        && a.methods == b.methods
        && a.scopes == b.scopes
        && a.claims.is_empty()
        && b.claims.is_empty()
}

/// Request paths (as segments) both `a` and `b` match: their segments combined, each
/// position left free by both taken as a value no entry names or as any literal an entry has
/// there, so that the entries around them compete as well.
fn shared_paths(
    a: &Shape<'_>,
    b: &Shape<'_>,
    shapes: &[Shape<'_>],
    fresh: &str,
) -> Vec<Vec<String>> {
    let (ka, kb) = (a.segs.len(), b.segs.len());
    let lengths: Vec<usize> = match (a.wild, b.wild) {
        (false, false) if ka == kb => vec![ka],
        (false, false) => return Vec::new(),
        (true, false) if kb >= ka => vec![kb],
        (false, true) if ka >= kb => vec![ka],
        (true, false) | (false, true) => return Vec::new(),
        (true, true) => {
            let least = ka.max(kb);
            let mut lengths: Vec<usize> = shapes
                .iter()
                .map(|s| s.segs.len())
                .filter(|n| *n > least)
                // One past each length too: a third entry of some length can make both
                // orders agree there and leave the disagreement one segment longer.
                .flat_map(|n| [n, n + 1])
                .chain([least, least + 1])
                .collect();
            lengths.sort_unstable();
            lengths.dedup();
            lengths
        }
    };
    let mut out = Vec::new();
    for n in lengths {
        // Per position: the one value both require, or the choices.
        let mut choices: Vec<Vec<String>> = Vec::with_capacity(n);
        for i in 0..n {
            let lit = |s: &Shape<'_>| match s.segs.get(i) {
                Some(Seg::Lit(l)) => Some(l.clone()),
                _ => None,
            };
            let options = match (lit(a), lit(b)) {
                (Some(x), Some(y)) if x != y => Vec::new(),
                (Some(x), _) | (None, Some(x)) => vec![x],
                (None, None) => {
                    let mut options = vec![fresh.to_owned()];
                    for s in shapes {
                        if let Some(l) = lit(s)
                            && !options.contains(&l)
                        {
                            options.push(l);
                        }
                    }
                    options
                }
            };
            choices.push(options);
        }
        if choices.iter().any(Vec::is_empty) {
            continue;
        }
        // Every combination, up to PER_PAIR of them.
        let mut digits = vec![0usize; n];
        for _ in 0..PER_PAIR {
            out.push(
                digits
                    .iter()
                    .zip(&choices)
                    .map(|(d, c)| c[*d].clone())
                    .collect(),
            );
            let mut carry = true;
            for (d, c) in digits.iter_mut().zip(&choices).rev() {
                if !carry {
                    break;
                }
                *d += 1;
                carry = *d == c.len();
                if carry {
                    *d = 0;
                }
            }
            if carry {
                break;
            }
        }
    }
    out
}

/// Refuses a configuration on which Keycloak's matcher and tower-uma's map would decide a
/// request by different entries with different rules, naming both and a request path.
pub(crate) fn check(paths: &[PathEntry]) -> Result<(), KeycloakConfigError> {
    let shapes: Vec<Shape<'_>> = paths.iter().map(Shape::of).collect();
    let literals: HashSet<&str> = shapes
        .iter()
        .flat_map(|s| &s.segs)
        .filter_map(|s| match s {
            Seg::Lit(l) => Some(l.as_str()),
            Seg::Param => None,
        })
        .collect();
    let mut fresh = "x".to_owned();
    while literals.contains(fresh.as_str()) {
        fresh.push('x');
    }
    let order: Vec<usize> = (0..shapes.len()).collect();
    let mut seen = HashSet::new();
    for (i, a) in shapes.iter().enumerate() {
        for b in &shapes[i + 1..] {
            for path in shared_paths(a, b, &shapes, &fresh) {
                if !seen.insert(path.clone()) {
                    continue;
                }
                let (Some(ours), Some(theirs)) = (
                    towers_pick(&shapes, &path),
                    keycloaks_pick(&shapes, &order, &path),
                ) else {
                    continue;
                };
                if ours == theirs || same_rule(&paths[ours], &paths[theirs]) {
                    continue;
                }
                return Err(disagreement(&shapes, &path, ours, theirs));
            }
        }
    }
    Ok(())
}

/// The error for a request path decided by `ours` here and by `theirs` at Keycloak.
fn disagreement(
    shapes: &[Shape<'_>],
    path: &[String],
    ours: usize,
    theirs: usize,
) -> KeycloakConfigError {
    let uri = format!("/{}", path.join("/"));
    let (o, t) = (shapes[ours].entry, shapes[theirs].entry);
    // Would listing ours before theirs make Keycloak agree?
    let mut order: Vec<usize> = (0..shapes.len()).filter(|i| *i != ours).collect();
    let at = order.iter().position(|i| *i == theirs).unwrap_or(0);
    order.insert(at, ours);
    let reorder = if keycloaks_pick(shapes, &order, path) == Some(ours) {
        format!("list {:?} before {:?}, ", o.path, t.path)
    } else {
        String::new()
    };
    let later = if ours > theirs { o } else { t };
    KeycloakConfigError::new(
        &format!("{}.path", later.at),
        format!(
            "{:?} ({}) and {:?} ({}) both match `{uri}`, which Keycloak's enforcer decides by \
             {:?} and tower-uma by {:?}: Keycloak prefers a path matching the whole request \
             (exact or template) over a trailing `*`, then more segments, then fewer \
             parameters, then the first listed, where tower-uma prefers, segment by segment, a literal over a `{{param}}` \
             over a `*`. So that both decide alike, {reorder}add an entry for `{uri}` itself \
             with the rule it should have, or write the paths so that they do not overlap",
            o.path, o.at, t.path, t.at, t.path, o.path
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(paths: &[(&str, bool)]) -> Vec<PathEntry> {
        paths
            .iter()
            .enumerate()
            .map(|(i, (path, disabled))| PathEntry {
                at: format!("policy-enforcer.paths[{i}]"),
                name: (!disabled).then(|| format!("R{i}")),
                id: None,
                path: (*path).to_owned(),
                methods: Vec::new(),
                scopes: Vec::new(),
                disabled: *disabled,
                claims: Vec::new(),
            })
            .collect()
    }

    fn picks(paths: &[&str], uri: &str) -> (Option<usize>, Option<usize>) {
        let list: Vec<(&str, bool)> = paths.iter().map(|p| (*p, false)).collect();
        let entries = entries(&list);
        let shapes: Vec<Shape<'_>> = entries.iter().map(Shape::of).collect();
        let path: Vec<String> = uri
            .split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        let order: Vec<usize> = (0..shapes.len()).collect();
        (
            towers_pick(&shapes, &path),
            keycloaks_pick(&shapes, &order, &path),
        )
    }

    #[test]
    fn keycloaks_matcher_is_ported() {
        // A template matching the whole path beats a trailing `*`.
        assert_eq!(
            picks(&["/api/*", "/{t}/admin"], "/api/admin"),
            (Some(0), Some(1))
        );
        // Templates of as many segments and parameters: the first listed.
        assert_eq!(picks(&["/{y}/b", "/a/{x}"], "/a/b"), (Some(1), Some(0)));
        assert_eq!(picks(&["/a/{x}", "/{y}/b"], "/a/b"), (Some(0), Some(0)));
        // More segments win among templates, fewer parameters among equals.
        assert_eq!(picks(&["/{a}/{b}", "/a/{x}/c"], "/a/1/c").1, Some(1));
        assert_eq!(picks(&["/{a}/{b}", "/a/{x}"], "/a/1").1, Some(1));
        // Among trailing `*`, more segments.
        assert_eq!(
            picks(&["/*", "/a/*", "/a/b/*"], "/a/b/c"),
            (Some(2), Some(2))
        );
        assert_eq!(picks(&["/a/b/*", "/a/*"], "/a/b/c"), (Some(0), Some(0)));
        // `/prefix/*` for the bare prefix counts as a whole match, and a later whole match
        // replaces an earlier template's.
        assert_eq!(picks(&["/{x}", "/api/*"], "/api"), (Some(1), Some(1)));
        assert_eq!(picks(&["/api/*", "/{x}"], "/api"), (Some(0), Some(0)));
        // An exact path listed before a template wins at once, listed after it still wins.
        assert_eq!(picks(&["/a/b", "/a/{x}"], "/a/b"), (Some(0), Some(0)));
        assert_eq!(picks(&["/a/{x}", "/a/b"], "/a/b"), (Some(1), Some(1)));
        // `/prefix/*` listed before `/prefix` takes the bare prefix at once, the root too.
        assert_eq!(picks(&["/api/*", "/api"], "/api"), (Some(1), Some(0)));
        assert_eq!(picks(&["/api", "/api/*"], "/api"), (Some(0), Some(0)));
        assert_eq!(picks(&["/*", "/"], "/"), (Some(1), Some(0)));
        assert_eq!(picks(&["/*", "/a"], "/"), (Some(0), Some(0)));
        // A wildcard template counted before a whole template of the same length blocks it.
        assert_eq!(
            picks(&["/a/{x}/*", "/a/{x}/c"], "/a/1/c"),
            (Some(1), Some(0))
        );
        assert_eq!(
            picks(&["/a/{x}/c", "/a/{x}/*"], "/a/1/c"),
            (Some(0), Some(0))
        );
    }

    #[test]
    fn java_split_drops_trailing_empty_strings() {
        assert_eq!(java_split_len("/a/{x}/*"), 4);
        assert_eq!(java_split_len("/*"), 2);
        assert_eq!(java_split_len("*"), 1);
        assert_eq!(java_split_len("/"), 0);
        assert_eq!(java_split_len("/a/1"), 3);
    }

    #[test]
    fn disagreements_between_different_rules_are_refused() {
        let e =
            check(&entries(&[("/api/*", true), ("/{tenant}/admin", false)])).expect_err("refused");
        assert_eq!(e.key(), "policy-enforcer.paths[1].path");
        assert!(e.message().contains("`/api/admin`"), "{e}");
        // Between two public paths it does not matter.
        check(&entries(&[("/api/*", true), ("/{tenant}/admin", true)])).expect("alike");
        // Listing the more specific template first makes both agree, and the error says so.
        let e = check(&entries(&[("/{y}/b", false), ("/a/{x}", true)])).expect_err("refused");
        assert!(
            e.message().contains("list \"/a/{x}\" before \"/{y}/b\""),
            "{e}"
        );
        check(&entries(&[("/a/{x}", true), ("/{y}/b", false)])).expect("agree");
        // An entry for the path itself settles it.
        check(&entries(&[
            ("/api/*", true),
            ("/{tenant}/admin", false),
            ("/api/admin", false),
        ]))
        .expect("agree");
    }
}
