//! The RPT reader (`Authorization: Bearer …`, RFC 6750 §2.1).
//!
//! Input: `Authorization` header values, one per line. Checks that
//! - several headers are always refused;
//! - the fast path for the common spelling agrees with the general parser;
//! - both agree with a plain reading of RFC 6750 §2.1 written here (scheme case-insensitive,
//!   blanks around it and the token, `b64token` with `=` padding, at most `MAX_TOKEN_LEN`
//!   bytes, a value over `MAX_TOKEN_LEN + 16` bytes refused whatever its scheme);
//! - a token is a non-empty `b64token` that stands in the header value as is.
#![no_main]

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use tower_uma::token::MAX_TOKEN_LEN;
use tower_uma::fuzzing::{BearerOutcome, bearer_from_headers, parse_bearer_value};

fuzz_target!(|data: &[u8]| {
    let Ok(values) = data
        .split(|&b| b == b'\n')
        .map(HeaderValue::from_bytes)
        .collect::<Result<Vec<_>, _>>()
    else {
        return;
    };
    let mut headers = HeaderMap::new();
    for value in &values {
        headers.append(AUTHORIZATION, value.clone());
    }
    let layer = bearer_from_headers(&headers);
    if let [value] = values.as_slice() {
        let general = parse_bearer_value(value);
        assert_eq!(layer, general, "fast path and general parser differ");
        let bytes = value.as_bytes();
        match (&layer, reference(bytes)) {
            (BearerOutcome::Absent, Expected::Absent)
            | (BearerOutcome::Malformed(_), Expected::Malformed) => {}
            (BearerOutcome::Token(token), Expected::Token(expected)) => {
                assert_eq!(token.as_slice(), expected);
                let body = token.iter().take_while(|&&b| b64token(b)).count();
                assert!(body > 0 && token[body..].iter().all(|&b| b == b'='));
                assert!(token.len() <= MAX_TOKEN_LEN);
                assert!(bytes.windows(token.len()).any(|w| w == token.as_slice()));
            }
            (got, expected) => panic!("{bytes:?}: the layer read {got:?}, RFC 6750 {expected:?}"),
        }
    } else {
        assert!(
            matches!(layer, BearerOutcome::Malformed(_)),
            "{} headers: {layer:?}",
            values.len()
        );
    }
});

#[derive(Debug)]
enum Expected<'a> {
    Absent,
    Token(&'a [u8]),
    Malformed,
}

fn blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// RFC 6750 §2.1 `b64token` before its padding.
fn b64token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)
}

/// `credentials = "Bearer" 1*SP b64token`, read plainly: another scheme is no bearer token
/// (unless the value is not even ASCII), `Bearer` with nothing after it is no token.
fn reference(value: &[u8]) -> Expected<'_> {
    if value.len() > MAX_TOKEN_LEN + 16 {
        return Expected::Malformed;
    }
    let start = value.iter().position(|&b| !blank(b)).unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|&b| !blank(b))
        .map_or(start, |i| i + 1);
    let trimmed = &value[start..end];
    let (scheme, rest) = trimmed.split_at(
        trimmed
            .iter()
            .position(|&b| blank(b))
            .unwrap_or(trimmed.len()),
    );
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return if value.is_ascii() {
            Expected::Absent
        } else {
            Expected::Malformed
        };
    }
    let token = &rest[rest.iter().position(|&b| !blank(b)).unwrap_or(rest.len())..];
    if token.is_empty() {
        return Expected::Absent;
    }
    let body = token.iter().take_while(|&&b| b64token(b)).count();
    if body == 0 || !token[body..].iter().all(|&b| b == b'=') || token.len() > MAX_TOKEN_LEN {
        return Expected::Malformed;
    }
    Expected::Token(token)
}
