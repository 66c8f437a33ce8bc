//! Route templates: parsing, matching against a [`NormalizedPath`] and precedence.
//!
//! See the [parent module](super) for the grammar and the precedence rules.

use super::path::{PathSegment, normalize_segment};

/// A request path segment as templates see it: [`PathSegment`], or the `&str` of a path in
/// canonical form made of plain bytes only (see
/// [`plain_segments`](super::path::plain_segments)), whose spellings are all the text itself.
pub(crate) trait Segment {
    /// The canonical spelling (only unreserved characters decoded).
    fn canonical(&self) -> &str;
    /// The fully percent-decoded value.
    fn decoded(&self) -> &str;
}

impl Segment for PathSegment<'_> {
    fn canonical(&self) -> &str {
        PathSegment::canonical(self)
    }

    fn decoded(&self) -> &str {
        PathSegment::decoded(self)
    }
}

impl Segment for &str {
    fn canonical(&self) -> &str {
        self
    }

    fn decoded(&self) -> &str {
        self
    }
}

/// The name under which a trailing `*` captures the rest of the path.
pub(crate) const WILDCARD_PARAM: &str = "*";

/// Which spelling of a segment literal template segments are compared with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Spelling {
    /// Unreserved characters decoded, other escapes kept (what the request says).
    Canonical,
    /// Fully percent-decoded (what an upstream that decodes paths sees).
    Decoded,
    /// Byte for byte as received, against the literal as the template writes it, and matched
    /// the way axum's router (matchit) matches: the path's segments as received (see
    /// [`NormalizedPath::as_received`](super::NormalizedPath::as_received)), a `{param}` takes
    /// an empty segment only when more segments follow, and a trailing `*` needs a non-empty
    /// rest (at least one segment, and not a lone empty one).
    Received,
}

/// How literal template segments are compared with the request's: in which spelling, and
/// whether letter case matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Lens {
    /// The spelling of the request's segments.
    pub(crate) spelling: Spelling,
    /// Whether ASCII letters must match in case too (a case-sensitive router).
    pub(crate) exact_case: bool,
}

impl Lens {
    /// The layer's own view: canonical spelling, case ignored.
    pub(crate) const CANONICAL: Self = Self {
        spelling: Spelling::Canonical,
        exact_case: false,
    };
    /// An upstream that decodes the path before routing.
    pub(crate) const DECODED: Self = Self {
        spelling: Spelling::Decoded,
        exact_case: false,
    };
    /// A case-sensitive upstream.
    pub(crate) const EXACT_CASE: Self = Self {
        spelling: Spelling::Canonical,
        exact_case: true,
    };
    /// An upstream that routes on the path as received: axum's router (matchit).
    pub(crate) const RECEIVED: Self = Self {
        spelling: Spelling::Received,
        exact_case: true,
    };
}

#[derive(Clone, Debug)]
enum TemplateSegment {
    /// A literal, normalised, and as the template writes it.
    Literal(PathSegment<'static>, String),
    Param(String),
}

/// The rank of a position where the template ends without a wildcard: above every segment
/// kind, so that a template ending there beats a `*` matching nothing at that position.
const END_RANK: u8 = 3;

/// A parsed route template such as `/albums/{id}/photos/*`.
#[derive(Clone, Debug)]
pub(crate) struct Template {
    segments: Vec<TemplateSegment>,
    wildcard: bool,
    /// Per position: 2 for a literal, 1 for a parameter, then 0 for a trailing wildcard or
    /// [`END_RANK`] after the last segment of a template without one.
    rank: Vec<u8>,
}

impl Template {
    /// Parses a template, or says what is wrong with it.
    pub(crate) fn parse(source: &str) -> Result<Self, String> {
        let Some(rest) = source.strip_prefix('/') else {
            return Err("a template must start with `/`".to_owned());
        };
        let raw_segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
        let mut segments = Vec::with_capacity(raw_segments.len());
        let mut rank = Vec::with_capacity(raw_segments.len() + 1);
        let mut wildcard = false;
        for (index, raw) in raw_segments.iter().enumerate() {
            check_foreign_syntax(raw)?;
            if *raw == "*" {
                if index + 1 != raw_segments.len() {
                    return Err("`*` is only allowed as the last segment".to_owned());
                }
                wildcard = true;
                rank.push(0);
            } else if let Some(inner) = raw.strip_prefix('{') {
                let name = inner.strip_suffix('}').ok_or_else(|| {
                    format!("`{raw}`: a parameter must be a whole `{{name}}` segment")
                })?;
                check_param_name(name)?;
                let duplicate = segments
                    .iter()
                    .any(|s| matches!(s, TemplateSegment::Param(other) if other == name));
                if duplicate {
                    return Err(format!("parameter `{name}` appears twice"));
                }
                segments.push(TemplateSegment::Param(name.to_owned()));
                rank.push(1);
            } else {
                if raw.contains(['{', '}']) {
                    return Err(format!(
                        "`{raw}`: a parameter must be a whole `{{name}}` segment"
                    ));
                }
                if raw.contains('*') {
                    return Err(format!(
                        "`{raw}`: `*` is only allowed as a whole last segment"
                    ));
                }
                let literal = normalize_segment(raw)
                    .map_err(|e| format!("`{raw}`: {e}"))?
                    .ok_or_else(|| "empty segment".to_owned())?
                    .into_owned();
                segments.push(TemplateSegment::Literal(literal, (*raw).to_owned()));
                rank.push(2);
            }
        }
        if !wildcard {
            rank.push(END_RANK);
        }
        Ok(Self {
            segments,
            wildcard,
            rank,
        })
    }

    /// Whether the template matches these path segments, comparing literals as `lens` says.
    pub(crate) fn matches<S: Segment>(&self, path: &[S], lens: Lens) -> bool {
        let (n, k) = (path.len(), self.segments.len());
        let length_fits = match (self.wildcard, lens.spelling) {
            (false, _) => n == k,
            // matchit's `{*rest}` needs a non-empty rest: `/a/` is not `/a/{*rest}`.
            (true, Spelling::Received) => n > k && !(n == k + 1 && path[k].canonical().is_empty()),
            (true, _) => n >= k,
        };
        length_fits && self.segments_match(path, lens)
    }

    /// For the segments of a plain path (see [`plain_segments`](super::path::plain_segments)),
    /// in one pass: `None` when the template does not match them under
    /// [`Lens::CANONICAL`], else whether it also matches under [`Lens::EXACT_CASE`] (every
    /// literal in the same case). What [`matches`](Self::matches) answers for both lenses.
    pub(crate) fn matches_plain(&self, path: &[&str]) -> Option<bool> {
        let (n, k) = (path.len(), self.segments.len());
        if n < k || (n > k && !self.wildcard) {
            return None;
        }
        let mut exact = true;
        for (t, p) in self.segments.iter().zip(path) {
            if let TemplateSegment::Literal(literal, _) = t {
                let ours = literal.canonical();
                if ours != *p {
                    if !ours.eq_ignore_ascii_case(p) {
                        return None;
                    }
                    exact = false;
                }
            }
        }
        Some(exact)
    }

    /// Whether the template ends in a `*` and its segments match all of `path` as received:
    /// what a router matching paths as received does when the application also serves the
    /// bare prefix (`/admin` beside `/admin/{*rest}`), as a `*` matching nothing suggests.
    pub(crate) fn matches_bare(&self, path: &[PathSegment<'_>]) -> bool {
        self.wildcard
            && path.len() == self.segments.len()
            && self.segments_match(path, Lens::RECEIVED)
    }

    /// Whether the template's segments match the first segments of `path` (which has as many
    /// or more), comparing literals as `lens` says.
    fn segments_match<S: Segment>(&self, path: &[S], lens: Lens) -> bool {
        let received = lens.spelling == Spelling::Received;
        self.segments
            .iter()
            .zip(path)
            .enumerate()
            .all(|(at, (t, p))| match t {
                // matchit's `{param}` takes an empty segment only when more follow.
                TemplateSegment::Param(_) => {
                    !received || at + 1 < path.len() || !p.canonical().is_empty()
                }
                TemplateSegment::Literal(literal, written) => {
                    let (ours, theirs) = match lens.spelling {
                        Spelling::Canonical => (literal.canonical(), p.canonical()),
                        Spelling::Decoded => (literal.decoded(), p.decoded()),
                        Spelling::Received => (written.as_str(), p.canonical()),
                    };
                    // The usual spelling first: the same bytes (one comparison of the whole).
                    ours == theirs || (!lens.exact_case && ours.eq_ignore_ascii_case(theirs))
                }
            })
    }

    /// Whether the template ends in a `*` that matches no segment of `path` (`/admin/*` for
    /// `/admin`), which axum's router would not match.
    pub(crate) fn wildcard_matches_nothing<S>(&self, path: &[S]) -> bool {
        self.wildcard && path.len() == self.segments.len()
    }

    /// Whether this wildcard template's bare prefix (the template without its `*`) takes
    /// precedence over `other`; on a tie, `other`, a route of its own, wins.
    pub(crate) fn bare_beats(&self, other: &Self) -> bool {
        let bare = self.rank[..self.segments.len()]
            .iter()
            .chain([END_RANK].iter());
        bare.cmp(other.rank.iter()) == std::cmp::Ordering::Greater
    }

    /// The decoded captures of a matching path: each `{name}`, then `*` (the rest of the path,
    /// decoded segments joined with `/`) for a wildcard template.
    pub(crate) fn captures<S: Segment>(&self, path: &[S]) -> Vec<(String, String)> {
        let mut captures: Vec<(String, String)> = self
            .segments
            .iter()
            .zip(path)
            .filter_map(|(t, p)| match t {
                TemplateSegment::Param(name) => Some((name.clone(), p.decoded().to_owned())),
                TemplateSegment::Literal(..) => None,
            })
            .collect();
        if self.wildcard {
            let rest: Vec<&str> = path
                .iter()
                .skip(self.segments.len())
                .map(Segment::decoded)
                .collect();
            captures.push((WILDCARD_PARAM.to_owned(), rest.join("/")));
        }
        captures
    }

    /// The precedence key: among templates matching one path, the greatest key wins.
    ///
    /// Positions are compared left to right, as axum's router (matchit) tries them: literal
    /// (2) over parameter (1) over wildcard (0), and the end of a template without a wildcard
    /// (3) over a wildcard matching nothing there. Two matching templates with equal keys have
    /// the same shape.
    pub(crate) fn precedence(&self) -> &[u8] {
        &self.rank
    }

    /// Whether both templates match exactly the same paths (`/a/{x}` and `/A/{y}`).
    pub(crate) fn same_shape(&self, other: &Self) -> bool {
        self.wildcard == other.wildcard
            && self.segments.len() == other.segments.len()
            && self
                .segments
                .iter()
                .zip(&other.segments)
                .all(|pair| match pair {
                    (TemplateSegment::Param(_), TemplateSegment::Param(_)) => true,
                    (TemplateSegment::Literal(a, _), TemplateSegment::Literal(b, _)) => {
                        a.decoded().eq_ignore_ascii_case(b.decoded())
                    }
                    _ => false,
                })
    }

    /// The path this template matches, byte for byte, when it has only literal segments,
    /// each written in its canonical spelling without escapes (`/albums/new`, `/`): the key
    /// of the map's [literal routes](super::literal).
    pub(crate) fn literal_path(&self) -> Option<String> {
        if self.wildcard {
            return None;
        }
        let mut path = String::new();
        for segment in &self.segments {
            match segment {
                TemplateSegment::Literal(literal, written)
                    if !literal.has_escapes() && literal.canonical() == written =>
                {
                    path.push('/');
                    path.push_str(written);
                }
                _ => return None,
            }
        }
        if path.is_empty() {
            path.push('/');
        }
        Some(path)
    }

    /// Whether a literal segment keeps an escape (`%21`), so that the canonical and the
    /// decoded spelling of a path may select different routes.
    pub(crate) fn has_escaped_literals(&self) -> bool {
        self.segments
            .iter()
            .any(|s| matches!(s, TemplateSegment::Literal(l, _) if l.has_escapes()))
    }

    /// Whether a literal segment is written otherwise than in its canonical spelling (`%7Eme`,
    /// `café`), so that a router matching the path as received may select another route for
    /// a request in canonical form.
    pub(crate) fn has_rewritten_literals(&self) -> bool {
        self.segments
            .iter()
            .any(|s| matches!(s, TemplateSegment::Literal(l, written) if l.canonical() != written))
    }
}

/// Refuses the parameter and wildcard syntaxes of other routers, which would otherwise be
/// taken as literal segments (`/albums/:id` would match only the path `/albums/:id`).
fn check_foreign_syntax(raw: &str) -> Result<(), String> {
    const REST: &str = "a trailing `*` (it captures the rest of the path as `*`)";
    let refuse = |what: &str, ours: &str| Err(format!("`{raw}` is {what}: use {ours} instead"));
    if let Some(name) = raw.strip_prefix(':') {
        let name = if name.is_empty() { "name" } else { name };
        return refuse("axum 0.7 / Express syntax", &format!("{{{name}}}"));
    }
    if raw.starts_with("{*") {
        return refuse("an axum 0.8 wildcard", REST);
    }
    if raw.len() > 1 && raw.starts_with('*') {
        return refuse("a named wildcard", REST);
    }
    if let Some(inner) = raw.strip_prefix('<').and_then(|r| r.strip_suffix('>')) {
        let name = inner.rsplit(':').next().unwrap_or(inner);
        return refuse("Flask syntax", &format!("{{{name}}}"));
    }
    Ok(())
}

fn check_param_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty parameter name".to_owned());
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(format!(
            "parameter name `{name}` may only hold ASCII letters, digits, `_` and `-`"
        ));
    }
    Ok(())
}
