//! The request-path normaliser.
//!
//! Input: a path (UTF-8). Checks that
//! - it is accepted exactly when a plain reading of the rules written here accepts it: every
//!   non-empty segment percent-decodes (RFC 3986 §2.1) to UTF-8 holding no `/`, `\`, `;`, `?`,
//!   `#`, control character or `%XX` (a double encoding), and is neither `.` nor `..`
//!   (RFC 3986 §3.3);
//! - the canonical path is `/` and the canonical segments joined by `/`, with no empty, `.` or
//!   `..` segment, no `//`, `\`, `;`, `%2F`, `%5C`, `%3B`, control character, lower-case
//!   escape or escape of an unreserved character;
//! - normalising never changes what a segment means: each canonical segment, and the raw
//!   segment it came from, percent-decode to the segment's decoded value;
//! - the canonical path is its own normal form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_uma::fuzzing::normalize_path;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let result = normalize_path(raw);
    let expected = reference(raw);
    let path = match (result, expected) {
        (Ok(path), Some(decoded)) => {
            let got: Vec<&str> = path.segments.iter().map(|s| s.decoded.as_str()).collect();
            assert_eq!(got, decoded, "{raw:?}: decoded segments");
            path
        }
        (Err(_), None) => return,
        (got, expected) => panic!("{raw:?}: normalised to {got:?}, expected {expected:?}"),
    };

    let joined: String = path
        .segments
        .iter()
        .map(|s| format!("/{}", s.canonical))
        .collect();
    assert_eq!(
        path.canonical,
        if joined.is_empty() {
            "/"
        } else {
            joined.as_str()
        }
    );
    let upper = path.canonical.to_ascii_uppercase();
    for bad in ["//", "\\", ";", "%2F", "%5C", "%3B", "?", "#"] {
        assert!(
            !upper.contains(bad),
            "{raw:?} -> {:?} holds {bad}",
            path.canonical
        );
    }
    assert!(
        !path.canonical.bytes().any(|b| b.is_ascii_control()),
        "{:?}",
        path.canonical
    );
    assert_eq!(
        path.has_escapes,
        path.segments.iter().any(|s| s.has_escapes)
    );
    for segment in &path.segments {
        let canonical = segment.canonical.as_str();
        assert!(
            !matches!(canonical, "" | "." | ".."),
            "{raw:?}: segment {canonical:?}"
        );
        assert!(
            !matches!(segment.decoded.as_str(), "" | "." | ".."),
            "{raw:?}: {segment:?}"
        );
        assert_eq!(segment.has_escapes, canonical.contains('%'), "{segment:?}");
        assert_eq!(
            percent_decode(canonical).as_deref(),
            Some(segment.decoded.as_bytes())
        );
        // Escapes are upper-case and never of an unreserved character.
        for escape in canonical.split('%').skip(1) {
            let hex = &escape.as_bytes()[..2];
            assert!(
                hex.iter()
                    .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase()),
                "{canonical:?}"
            );
            let byte = u8::from_str_radix(std::str::from_utf8(hex).unwrap(), 16).unwrap();
            assert!(
                !(byte.is_ascii_alphanumeric() || b"-._~".contains(&byte)),
                "{canonical:?}"
            );
        }
    }

    let again = normalize_path(&path.canonical).expect("a canonical path is accepted");
    assert_eq!(
        again, path,
        "{raw:?}: the canonical path normalises to something else"
    );
});

/// The decoded segments of an acceptable path, `None` for a path to refuse.
fn reference(raw: &str) -> Option<Vec<String>> {
    let rest = raw.strip_prefix('/')?;
    let mut segments = Vec::new();
    for segment in rest.split('/').filter(|s| !s.is_empty()) {
        let decoded = percent_decode(segment)?;
        let forbidden = |b: &u8| b"/\\;?#\x7f".contains(b) || *b < 0x20;
        let double = decoded
            .windows(3)
            .any(|w| w[0] == b'%' && w[1].is_ascii_hexdigit() && w[2].is_ascii_hexdigit());
        if decoded.iter().any(forbidden) || double || decoded == b"." || decoded == b".." {
            return None;
        }
        segments.push(String::from_utf8(decoded).ok()?);
    }
    Some(segments)
}

/// RFC 3986 §2.1 percent-decoding; `None` for a `%` without two hex digits.
fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}
