//! Request-path normalisation: one canonical spelling per path, or a refusal.
//!
//! See the [parent module](super) for the rules and why they are this strict.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Why a request was refused before its rule could be known: its path, or, for
/// [`MethodCase`](Self::MethodCase), its method.
///
/// The layer answers such requests with `400 Bad Request`: each of these spellings is either
/// malformed or a known way of making a protected request look like another one to the
/// middleware while the upstream service still reaches the protected handler.
///
/// # Example
///
/// ```
/// use http::{HeaderMap, Method};
/// use tower_uma::{ResourceMap, Route, resources::PathError};
///
/// let route = Route::new("/albums/{id}").resource_id("albums").any_method(["view"]);
/// let map = ResourceMap::new().route(route);
/// let refused = map.resolve_request(&Method::GET, "/albums/%2e%2e/admin", &HeaderMap::new());
/// assert_eq!(refused, Err(PathError::DotSegment));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// The path does not start with `/` (asterisk-form, authority-form or an empty path).
    #[error("path does not start with a slash")]
    NotAbsolute,
    /// The path starts with `//`, the form of a network-path reference (RFC 3986 §4.2): an
    /// upstream that resolves the request target as a URI reference against its own address
    /// (Node's `new URL(req.url, base)`, Python's `urllib.parse.urlsplit`) takes the first
    /// segment for a host name and runs the rest (`//public/albums/1` reaching `/albums/1`).
    #[error("path starts with two slashes")]
    NetworkPath,
    /// A `%` not followed by two hexadecimal digits (`%zz`, a truncated `%4`).
    #[error("path contains an invalid percent-encoding")]
    InvalidEscape,
    /// A `.` or `..` segment, in any spelling (`%2e`, `.%2E`, …).
    #[error("path contains a dot segment")]
    DotSegment,
    /// An encoded slash (`%2F`), which some upstreams decode into a segment separator.
    #[error("path contains an encoded slash")]
    EncodedSlash,
    /// A backslash, literal or encoded (`%5C`), which some upstreams treat as a slash.
    #[error("path contains a backslash")]
    Backslash,
    /// A control character, literal or encoded (`%00`, `%0A`, `%7F`, …).
    #[error("path contains a control character")]
    ControlCharacter,
    /// A `;`, literal or encoded (`%3B`): path parameters, which some upstreams strip before
    /// routing (`/admin;x=1` reaching `/admin`).
    #[error("path contains a semicolon")]
    Semicolon,
    /// An encoded `%` that itself starts an escape (`%252e`), which an upstream decoding twice
    /// would turn into another character.
    #[error("path contains a double percent-encoding")]
    DoubleEncoding,
    /// A `?` or `#`, literal (which cannot occur in a path at all) or encoded (`%3F`, `%23`),
    /// which an upstream that decodes the path before splitting off the query or fragment
    /// would cut it at (`/admin%3F.png` reaching `/admin`).
    #[error("path contains a query or fragment delimiter")]
    InvalidCharacter,
    /// A segment whose percent-decoded bytes are not UTF-8.
    #[error("path does not decode to utf-8")]
    InvalidUtf8,
    /// The path selects different routes depending on whether its escapes (`%21`, `%40`, …)
    /// are decoded, or a public route does not let the method through and several protected
    /// routes matching the path could take it: the middleware cannot know which handler the
    /// upstream will run.
    #[error("path selects different routes when percent-decoded")]
    Ambiguous,
    /// The path matches a route's literal segments only when letter case is ignored, and a
    /// case-sensitive router (Flask, Django, Symfony, axum) would apply another rule to it, or
    /// none (`/albums/FEATURED` beside a public `/albums/featured` and a protected
    /// `/albums/{id}`).
    #[error("path selects a different rule when letter case matters")]
    LetterCase,
    /// The path as received selects another route on a router that matches it as sent than
    /// its canonical form selects here, and that route's rule is neither the same nor public:
    /// axum's router (matchit) keeps empty segments (`/x//albums/1`) and a trailing slash, does
    /// not decode escapes (`/%61lbums` is not `/albums`) and never lets a trailing `*` match
    /// nothing (`/admin` is not `/admin/{*rest}`), while other common routers merge, decode or
    /// match those. A rule that depends on the router cannot be right for both.
    #[error("path selects another rule as received than in canonical form")]
    AsReceived,
    /// The method is a case variant (`delete`, `Get`) of a standard method or of a method the
    /// map names: Werkzeug, Django and Symfony upper-case the method and run that method's
    /// handler, while the map compares methods byte for byte (RFC 9110 §9.1).
    #[error("method is a case variant of a known method")]
    MethodCase,
}

/// One segment of a [`NormalizedPath`]: never empty, never `.` or `..`.
///
/// Borrows the request's own text when that is canonical already (no escapes, nothing to
/// encode), which is the common case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PathSegment<'a> {
    /// Unreserved characters decoded, every other escape kept in upper-case hex.
    canonical: Cow<'a, str>,
    /// Fully percent-decoded, when that differs from `canonical`.
    decoded: Option<String>,
}

impl PathSegment<'_> {
    /// The canonical spelling (only unreserved characters decoded).
    pub(crate) fn canonical(&self) -> &str {
        &self.canonical
    }

    /// The fully percent-decoded value.
    pub(crate) fn decoded(&self) -> &str {
        self.decoded.as_deref().unwrap_or(&self.canonical)
    }

    /// Whether the canonical spelling still holds escapes, that is, whether an upstream that
    /// decodes paths would see something else.
    pub(crate) fn has_escapes(&self) -> bool {
        self.decoded.is_some()
    }

    /// The same segment, owning its text (for route templates).
    pub(crate) fn into_owned(self) -> PathSegment<'static> {
        PathSegment {
            canonical: Cow::Owned(self.canonical.into_owned()),
            decoded: self.decoded,
        }
    }
}

/// A request path in canonical form, split into segments; borrows the request's path when it
/// is canonical already. Two are equal when their canonical forms are, however received.
#[derive(Clone, Debug)]
pub(crate) struct NormalizedPath<'a> {
    canonical: Cow<'a, str>,
    segments: Vec<PathSegment<'a>>,
    /// The path as received.
    raw: &'a str,
    /// Whether `raw` is canonical already: its segments are the canonical ones.
    verbatim: bool,
}

impl PartialEq for NormalizedPath<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.canonical == other.canonical && self.segments == other.segments
    }
}

impl Eq for NormalizedPath<'_> {}

impl<'a> NormalizedPath<'a> {
    /// The canonical path: `/` followed by the canonical segments joined with `/`; empty
    /// segments and a trailing slash are gone, so the root is `/`.
    pub(crate) fn as_str(&self) -> &str {
        &self.canonical
    }

    /// The non-empty segments.
    pub(crate) fn segments(&self) -> &[PathSegment<'a>] {
        &self.segments
    }

    /// Whether any segment keeps an escape in its canonical spelling.
    pub(crate) fn has_escapes(&self) -> bool {
        self.segments.iter().any(PathSegment::has_escapes)
    }

    /// Whether the path was received in canonical form: no empty segment, no trailing slash,
    /// no segment spelled otherwise than canonically (`%61`, `%c3`, a raw `é`).
    pub(crate) fn is_verbatim(&self) -> bool {
        self.verbatim
    }

    /// The path split as received, for comparing with a router that matches it as axum's
    /// (matchit) does: every segment between two slashes, empty ones and the one after a
    /// trailing slash included, each spelled as sent (escapes not decoded) with its decoded
    /// value for captures; the root `/` has none. [`as_str`](Self::as_str) stays the
    /// canonical path. `None` when the path is [verbatim](Self::is_verbatim): then these are
    /// the segments already.
    pub(crate) fn as_received(&self) -> Option<Self> {
        if self.verbatim {
            return None;
        }
        let rest = self.raw.strip_prefix('/').unwrap_or(self.raw);
        let segments = if rest.is_empty() {
            Vec::new()
        } else {
            rest.split('/')
                .map(|raw| PathSegment {
                    canonical: Cow::Borrowed(raw),
                    // Every segment passed `normalize_segment`, so it decodes.
                    decoded: raw
                        .contains('%')
                        .then(|| percent_decode(raw.as_bytes()).ok())
                        .flatten(),
                })
                .collect()
        };
        Some(Self {
            canonical: self.canonical.clone(),
            segments,
            raw: self.raw,
            verbatim: true,
        })
    }

    /// Whether the path and every segment borrow the request's text (nothing was copied).
    #[cfg(test)]
    pub(crate) fn is_borrowed(&self) -> bool {
        matches!(self.canonical, Cow::Borrowed(_))
            && self
                .segments
                .iter()
                .all(|s| matches!(s.canonical, Cow::Borrowed(_)))
    }
}

/// Normalises a request path (as `http::Uri::path` returns it) or refuses it.
///
/// # Errors
///
/// Returns the [`PathError`] describing the first offending spelling.
pub(crate) fn normalize_path(raw: &str) -> Result<NormalizedPath<'_>, PathError> {
    let rest = raw.strip_prefix('/').ok_or(PathError::NotAbsolute)?;
    if rest.starts_with('/') {
        return Err(PathError::NetworkPath);
    }
    let mut segments = Vec::new();
    // Whether `raw` is canonical as it stands: no empty segment, no rewritten segment.
    let mut as_is = true;
    for raw_segment in rest.split('/') {
        match normalize_segment(raw_segment)? {
            Some(segment) => {
                as_is &= matches!(segment.canonical, Cow::Borrowed(_));
                segments.push(segment);
            }
            None => as_is = false,
        }
    }
    let canonical = if segments.is_empty() {
        Cow::Borrowed("/")
    } else if as_is {
        Cow::Borrowed(raw)
    } else {
        let mut canonical = String::with_capacity(raw.len());
        for segment in &segments {
            canonical.push('/');
            canonical.push_str(&segment.canonical);
        }
        Cow::Owned(canonical)
    };
    Ok(NormalizedPath {
        canonical,
        segments,
        raw,
        // The root has no segment, as received or not.
        verbatim: as_is || raw == "/",
    })
}

/// The most segments [`plain_segments`] splits a path into.
pub(crate) const PLAIN_SEGMENTS: usize = 16;

/// The segments of `raw` when it is in canonical form as received and made of plain bytes
/// only (unreserved characters, sub-delims but `;`, `:` and `@`, no `%`), with no empty, `.`
/// or `..` segment and no trailing slash, in at most [`PLAIN_SEGMENTS`] segments: then
/// [`normalize_path`] would accept it, find it [verbatim](NormalizedPath::is_verbatim) and
/// split it into exactly these segments, each borrowed and without escapes. `None` for every
/// other path (which the full normalisation then accepts or refuses); the root `/` has none.
///
/// Two passes over the bytes, no allocation: the way of requests in the common spelling. The
/// bytes are checked eight at a time, without a branch per byte; then split at the slashes.
#[inline]
pub(crate) fn plain_segments<'a, 'b>(
    raw: &'a str,
    out: &'b mut [&'a str; PLAIN_SEGMENTS],
) -> Option<&'b [&'a str]> {
    let rest = raw.strip_prefix('/')?;
    if rest.is_empty() {
        return Some(&out[..0]);
    }
    let bytes = rest.as_bytes();
    if !all_plain_or_slash(bytes) {
        return None;
    }
    let mut count = 0;
    let mut start = 0;
    // The segment from `start` to the slash (or the end) at `end`; `None` when it is empty or
    // a dot segment, or when there are too many.
    let mut segment_to = |end: usize| -> Option<()> {
        let segment = rest.get(start..end)?;
        if segment.is_empty() || segment == "." || segment == ".." {
            return None;
        }
        *out.get_mut(count)? = segment;
        count += 1;
        start = end + 1;
        Some(())
    };
    let mut chunks = bytes.chunks_exact(8);
    let mut at = 0;
    for chunk in &mut chunks {
        let mut slashes = slash_bits(chunk);
        while slashes != 0 {
            // The lowest set bit is the high bit of the first slash's byte.
            segment_to(at + (slashes.trailing_zeros() / 8) as usize)?;
            slashes &= slashes - 1;
        }
        at += 8;
    }
    for (i, &b) in chunks.remainder().iter().enumerate() {
        if b == b'/' {
            segment_to(at + i)?;
        }
    }
    segment_to(bytes.len())?;
    Some(&out[..count])
}

/// The slashes among eight ASCII bytes: the high bit of each byte that is `/` (little-endian
/// order, so the first byte's is the lowest), and no other bit. Exact for ASCII: XOR makes a
/// slash byte zero, and adding `0x7f` to the low seven bits of a byte sets its high bit unless
/// they are all zero; a byte is zero when neither that bit nor its own high bit is set.
fn slash_bits(chunk: &[u8]) -> u64 {
    const LOW_SEVEN: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let mut word = [0_u8; 8];
    word.copy_from_slice(chunk);
    let x = u64::from_le_bytes(word) ^ 0x2f2f_2f2f_2f2f_2f2f;
    !(((x & LOW_SEVEN) + LOW_SEVEN) | x | LOW_SEVEN)
}

/// Whether every byte is plain (see [`PLAIN`]) or a slash: eight table lookups at a time,
/// combined without a branch per byte.
fn all_plain_or_slash(bytes: &[u8]) -> bool {
    let ok = |b: u8| PLAIN_OR_SLASH[usize::from(b)];
    let mut chunks = bytes.chunks_exact(8);
    let in_chunks = chunks.all(|c| c.iter().fold(true, |all, &b| all & ok(b)));
    in_chunks && chunks.remainder().iter().all(|&b| ok(b))
}

/// [`PLAIN`] and the slash.
static PLAIN_OR_SLASH: [bool; 256] = {
    let mut table = PLAIN;
    table[b'/' as usize] = true;
    table
};

/// Normalises one segment (the text between two slashes). `Ok(None)` for an empty segment.
///
/// Also used for the literal segments of route templates, so that a template and a request
/// are compared in the same form.
pub(crate) fn normalize_segment(raw: &str) -> Result<Option<PathSegment<'_>>, PathError> {
    if raw.is_empty() {
        return Ok(None);
    }
    let bytes = raw.as_bytes();
    if bytes.iter().all(|&b| PLAIN[usize::from(b)]) {
        // Canonical already: nothing to decode, nothing to encode.
        if raw == "." || raw == ".." {
            return Err(PathError::DotSegment);
        }
        return Ok(Some(PathSegment {
            canonical: Cow::Borrowed(raw),
            decoded: None,
        }));
    }
    let mut canonical = String::with_capacity(raw.len());
    let mut escaped = false;
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        if byte == b'%' {
            let value = hex_pair(bytes.get(i + 1..i + 3)).ok_or(PathError::InvalidEscape)?;
            check_forbidden(value)?;
            if value == b'%' && hex_pair(bytes.get(i + 3..i + 5)).is_some() {
                return Err(PathError::DoubleEncoding);
            }
            if is_unreserved(value) {
                canonical.push(char::from(value));
            } else {
                push_escape(&mut canonical, value);
                escaped = true;
            }
            i += 3;
        } else {
            check_forbidden(byte)?;
            if is_unreserved(byte) || is_sub_delim(byte) || byte == b':' || byte == b'@' {
                canonical.push(char::from(byte));
            } else {
                // Space, `"`, `{`, non-ASCII, …: the same as their escape, which is the
                // canonical spelling.
                push_escape(&mut canonical, byte);
                escaped = true;
            }
            i += 1;
        }
    }
    if canonical == "." || canonical == ".." {
        return Err(PathError::DotSegment);
    }
    // The canonical spelling has hex digits decoded (they are unreserved), so `%25` followed by
    // two of them here is a double encoding however the digits were spelled (`%252e`,
    // `%25%32%65`, `%252%65`).
    if canonical
        .as_bytes()
        .windows(5)
        .any(|w| w.starts_with(b"%25") && hex_pair(w.get(3..)).is_some())
    {
        return Err(PathError::DoubleEncoding);
    }
    let decoded = if escaped {
        Some(percent_decode(bytes)?)
    } else {
        None
    };
    Ok(Some(PathSegment {
        canonical: Cow::Owned(canonical),
        decoded,
    }))
}

/// Every escape of `bytes` decoded (they are well formed: checked by the caller).
fn percent_decode(bytes: &[u8]) -> Result<String, PathError> {
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut j = 0;
    while j < bytes.len() {
        if bytes[j] == b'%' {
            decoded.push(hex_pair(bytes.get(j + 1..j + 3)).unwrap_or(0));
            j += 3;
        } else {
            decoded.push(bytes[j]);
            j += 1;
        }
    }
    String::from_utf8(decoded).map_err(|_| PathError::InvalidUtf8)
}

/// Refuses the bytes that are dangerous whether they appear literally or encoded.
fn check_forbidden(byte: u8) -> Result<(), PathError> {
    match byte {
        b'/' => Err(PathError::EncodedSlash),
        b'\\' => Err(PathError::Backslash),
        b';' => Err(PathError::Semicolon),
        0x00..=0x1f | 0x7f => Err(PathError::ControlCharacter),
        b'?' | b'#' => Err(PathError::InvalidCharacter),
        _ => Ok(()),
    }
}

fn hex_pair(pair: Option<&[u8]>) -> Option<u8> {
    match pair? {
        [high, low] => Some((hex_value(*high)? << 4) | hex_value(*low)?),
        _ => None,
    }
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

fn push_escape(out: &mut String, byte: u8) {
    // Writing to a String cannot fail.
    let _ = write!(out, "%{byte:02X}");
}

/// The bytes a canonical segment holds literally: unreserved characters, sub-delims but `;`,
/// `:` and `@`. A segment made of these only is its own canonical spelling.
static PLAIN: [bool; 256] = {
    let mut table = [false; 256];
    let mut i = 0;
    while i < 256 {
        // `i < 256`, so the cast is exact.
        #[allow(clippy::cast_possible_truncation)]
        let byte = i as u8;
        table[i] = is_unreserved(byte) || is_sub_delim(byte) || byte == b':' || byte == b'@';
        i += 1;
    }
    table
};

/// RFC 3986 §2.3: `ALPHA / DIGIT / "-" / "." / "_" / "~"`.
const fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// RFC 3986 §2.2 sub-delims, minus `;` (refused before this is asked).
const fn is_sub_delim(byte: u8) -> bool {
    matches!(
        byte,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b'='
    )
}
