//! Request-path normalisation: one canonical spelling per path, or a refusal.
//!
//! See the [parent module](super) for the rules and why they are this strict.

use std::fmt::Write as _;

/// Why a request path was refused before any route was looked at.
///
/// The layer answers such requests with `400 Bad Request`: each of these spellings is either
/// malformed or a known way of making a protected path look like another one to the
/// middleware while the upstream service still reaches the protected handler.
///
/// # Example
///
/// ```
/// use http::{HeaderMap, Method};
/// use tower_uma::{PathError, ResourceMap, Route};
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
    /// A character that cannot occur in a path at all (`?` or `#`).
    #[error("path contains a character that cannot occur in a path")]
    InvalidCharacter,
    /// A segment whose percent-decoded bytes are not UTF-8.
    #[error("path does not decode to utf-8")]
    InvalidUtf8,
    /// The path selects different routes depending on whether its escapes (`%21`, `%40`, …)
    /// are decoded, so the middleware cannot know which handler the upstream will run.
    #[error("path selects different routes when percent-decoded")]
    Ambiguous,
}

/// One segment of a [`NormalizedPath`]: never empty, never `.` or `..`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PathSegment {
    /// Unreserved characters decoded, every other escape kept in upper-case hex.
    canonical: String,
    /// Fully percent-decoded, when that differs from `canonical`.
    decoded: Option<String>,
}

impl PathSegment {
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
}

/// A request path in canonical form, split into segments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NormalizedPath {
    canonical: String,
    segments: Vec<PathSegment>,
}

impl NormalizedPath {
    /// The canonical path: `/` followed by the canonical segments joined with `/`; empty
    /// segments and a trailing slash are gone, so the root is `/`.
    pub(crate) fn as_str(&self) -> &str {
        &self.canonical
    }

    /// The non-empty segments.
    pub(crate) fn segments(&self) -> &[PathSegment] {
        &self.segments
    }

    /// Whether any segment keeps an escape in its canonical spelling.
    pub(crate) fn has_escapes(&self) -> bool {
        self.segments.iter().any(PathSegment::has_escapes)
    }
}

/// Normalises a request path (as `http::Uri::path` returns it) or refuses it.
///
/// # Errors
///
/// Returns the [`PathError`] describing the first offending spelling.
pub(crate) fn normalize_path(raw: &str) -> Result<NormalizedPath, PathError> {
    let rest = raw.strip_prefix('/').ok_or(PathError::NotAbsolute)?;
    let mut segments = Vec::new();
    for raw_segment in rest.split('/') {
        if let Some(segment) = normalize_segment(raw_segment)? {
            segments.push(segment);
        }
    }
    let mut canonical = String::with_capacity(raw.len());
    for segment in &segments {
        canonical.push('/');
        canonical.push_str(&segment.canonical);
    }
    if canonical.is_empty() {
        canonical.push('/');
    }
    Ok(NormalizedPath {
        canonical,
        segments,
    })
}

/// Normalises one segment (the text between two slashes). `Ok(None)` for an empty segment.
///
/// Also used for the literal segments of route templates, so that a template and a request
/// are compared in the same form.
pub(crate) fn normalize_segment(raw: &str) -> Result<Option<PathSegment>, PathError> {
    if raw.is_empty() {
        return Ok(None);
    }
    let bytes = raw.as_bytes();
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
            if byte == b'?' || byte == b'#' {
                return Err(PathError::InvalidCharacter);
            }
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
    let decoded = if escaped {
        let mut decoded = Vec::with_capacity(raw.len());
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
        Some(String::from_utf8(decoded).map_err(|_| PathError::InvalidUtf8)?)
    } else {
        None
    };
    Ok(Some(PathSegment { canonical, decoded }))
}

/// Refuses the bytes that are dangerous whether they appear literally or encoded.
fn check_forbidden(byte: u8) -> Result<(), PathError> {
    match byte {
        b'/' => Err(PathError::EncodedSlash),
        b'\\' => Err(PathError::Backslash),
        b';' => Err(PathError::Semicolon),
        0x00..=0x1f | 0x7f => Err(PathError::ControlCharacter),
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

/// RFC 3986 §2.3: `ALPHA / DIGIT / "-" / "." / "_" / "~"`.
fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// RFC 3986 §2.2 sub-delims, minus `;` (refused before this is asked).
fn is_sub_delim(byte: u8) -> bool {
    matches!(
        byte,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b'='
    )
}
