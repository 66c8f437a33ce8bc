//! Secret newtypes (RPT, PAT, client secret) and RFC 6750 bearer-token parsing.
//!
//! Every secret type here follows the `oauth2` crate's pattern: `Debug` is redacted, there is
//! no `Display`, and the raw value is only reachable through `secret()`. What may be logged
//! is a [`Fingerprint`]: a short prefix of the SHA-256 of the value.
//!
//! # Example
//!
//! ```
//! use tower_uma::Rpt;
//!
//! let rpt = Rpt::new("rpt-Zk31");
//! assert_eq!(format!("{rpt:?}"), "Rpt([redacted])");
//! assert_eq!(rpt.fingerprint().to_string().len(), 12);
//! ```

use std::fmt;

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue};
use sha2::{Digest, Sha256};

/// Defines a secret string newtype with a redacted `Debug`, `secret()` and `fingerprint()`.
macro_rules! secret_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq)]
        pub struct $name(String);

        impl $name {
            #[doc = concat!("Wraps a raw value as a [`", stringify!($name), "`].")]
            #[must_use]
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            /// The raw value.
            ///
            /// # Security Warning
            ///
            /// Leaking this value may compromise the security of the protected API. Never log
            /// it, put it in an error message or use it as a map key; use
            /// [`fingerprint`](Self::fingerprint) for those.
            #[must_use]
            pub fn secret(&self) -> &str {
                &self.0
            }

            /// A short, stable SHA-256 fingerprint of the value, safe to log.
            #[must_use]
            pub fn fingerprint(&self) -> Fingerprint {
                Fingerprint::of(self.0.as_bytes())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "([redacted])"))
            }
        }
    };
}

secret_type!(
    /// A requesting party token (RPT) presented by a client as a bearer token.
    Rpt
);
secret_type!(
    /// A protection API access token (PAT), the resource server's credential at the AS.
    Pat
);
secret_type!(
    /// An OAuth client secret.
    ClientSecret
);

/// A SHA-256 digest of a secret, shown as its first 12 hex digits.
///
/// The full digest is kept so that fingerprints compare exactly; only the short form is ever
/// printed.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The fingerprint of some bytes.
    #[must_use]
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// The full 32-byte digest.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0[..6] {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// The largest bearer token the layer accepts, in bytes. Longer credentials are refused with
/// `400 Bad Request` before any AS call, so a client cannot make the layer send megabytes to the
/// AS or hash them.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// A bearer token as it stands in the request's `Authorization` header: the header value
/// (shared, not copied) and where the token is in it. A hit in the cache needs only its
/// fingerprint; an [`Rpt`] is made from it on a miss.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct BearerToken {
    value: HeaderValue,
    start: usize,
}

impl BearerToken {
    /// The token's bytes (ASCII, checked when parsed).
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.value.as_bytes()[self.start..]
    }

    pub(crate) fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(self.as_bytes())
    }

    /// An owned [`Rpt`] (one allocation), for the AS call of a cache miss.
    pub(crate) fn to_rpt(&self) -> Rpt {
        Rpt::new(String::from_utf8_lossy(self.as_bytes()))
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken([redacted])")
    }
}

/// What the `Authorization` header of a request says about an RPT (RFC 6750 §2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Bearer {
    /// No usable bearer credential: no header, an empty one, another scheme, or `Bearer`
    /// followed by nothing. Treated as a tokenless request (uma-wire §14 check 21).
    Absent,
    /// A syntactically valid bearer token.
    Token(BearerToken),
    /// A bearer credential that cannot be a token: several `Authorization` headers, bytes that
    /// are not visible ASCII, characters outside RFC 6750's `b64token`, or more than
    /// [`MAX_TOKEN_LEN`] bytes. Answered with `400 invalid_request`.
    Malformed(&'static str),
}

/// Reads the RPT from the `Authorization` header only (never from the query or body).
///
/// The scheme compares case-insensitively and may be followed by one or more spaces
/// (RFC 6750 §2.1, RFC 9110 §11.1).
pub(crate) fn bearer_from_headers(headers: &HeaderMap) -> Bearer {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Bearer::Absent;
    };
    if values.next().is_some() {
        return Bearer::Malformed("more than one Authorization header");
    }
    let bytes = value.as_bytes();
    if bytes.len() > MAX_TOKEN_LEN + 16 {
        return Bearer::Malformed("credentials too long");
    }
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Bearer::Malformed("credentials are not ASCII");
    };
    let text = text.trim_matches(|c| c == ' ' || c == '\t');
    let (scheme, rest) = match text.find([' ', '\t']) {
        Some(i) => (&text[..i], &text[i..]),
        None => (text, ""),
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Bearer::Absent;
    }
    let token = rest.trim_start_matches([' ', '\t']);
    if token.is_empty() {
        return Bearer::Absent;
    }
    if token.len() > MAX_TOKEN_LEN {
        return Bearer::Malformed("token too long");
    }
    if !is_b64token(token) {
        return Bearer::Malformed("token is not a b64token");
    }
    // `text` is a sub-slice of the header's bytes, and `token` ends where `text` ends
    // (trailing blanks were trimmed off `text`, and the token holds none).
    let start = token.as_ptr() as usize - bytes.as_ptr() as usize;
    let end = start + token.len();
    if end != bytes.len() {
        // Trailing blanks after the token: copy the value without them.
        let Ok(value) = HeaderValue::from_bytes(&bytes[..end]) else {
            return Bearer::Malformed("credentials are not a header value");
        };
        return Bearer::Token(BearerToken { value, start });
    }
    Bearer::Token(BearerToken {
        value: value.clone(),
        start,
    })
}

/// RFC 6750 §2.1: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_b64token(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty()
        && body.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn token(b: &Bearer) -> Option<&[u8]> {
        match b {
            Bearer::Token(t) => Some(t.as_bytes()),
            _ => None,
        }
    }

    fn parse(values: &[&[u8]]) -> Bearer {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(
                AUTHORIZATION,
                HeaderValue::from_bytes(v).expect("valid header bytes"),
            );
        }
        bearer_from_headers(&h)
    }

    #[test]
    fn no_header_is_absent() {
        assert_eq!(bearer_from_headers(&HeaderMap::new()), Bearer::Absent);
    }

    #[test]
    fn scheme_is_case_insensitive_and_spaces_are_allowed() {
        // uma-wire §14 check 12, RFC 6750 §2.1
        for v in [
            &b"Bearer abc"[..],
            b"bearer abc",
            b"BEARER   abc",
            b"Bearer\tabc",
        ] {
            assert_eq!(token(&parse(&[v])), Some(&b"abc"[..]), "{v:?}");
        }
    }

    #[test]
    fn empty_or_other_scheme_is_absent() {
        // uma-wire §14 check 21
        for v in [
            &b"Bearer"[..],
            b"Bearer   ",
            b"Basic dXNlcjpwdw==",
            b"",
            b"Bearerabc",
        ] {
            assert_eq!(parse(&[v]), Bearer::Absent, "{v:?}");
        }
    }

    #[test]
    fn malformed_tokens_are_refused() {
        assert!(matches!(parse(&[b"Bearer a b"]), Bearer::Malformed(_)));
        assert!(matches!(parse(&[b"Bearer a\"b"]), Bearer::Malformed(_)));
        assert!(matches!(parse(&[b"Bearer ==="]), Bearer::Malformed(_)));
        assert!(matches!(
            parse(&[b"Bearer a", b"Bearer b"]),
            Bearer::Malformed(_)
        ));
        assert!(matches!(parse(&[b"Bearer \xff\xfe"]), Bearer::Malformed(_)));
        let long = format!("Bearer {}", "a".repeat(MAX_TOKEN_LEN + 1));
        assert!(matches!(parse(&[long.as_bytes()]), Bearer::Malformed(_)));
    }

    #[test]
    fn b64token_alphabet_and_padding() {
        assert_eq!(
            token(&parse(&[b"Bearer aZ09-._~+/=="])),
            Some(&b"aZ09-._~+/=="[..])
        );
        let t = parse(&[b"Bearer  tok  "]);
        assert_eq!(token(&t), Some(&b"tok"[..]));
        let Bearer::Token(t) = t else {
            panic!("a token")
        };
        assert_eq!(t.to_rpt(), Rpt::new("tok"));
        assert_eq!(t.fingerprint(), Rpt::new("tok").fingerprint());
        assert_eq!(format!("{t:?}"), "BearerToken([redacted])");
    }

    #[test]
    fn secrets_are_redacted() {
        let pat = Pat::new("pat-secret-value");
        assert_eq!(format!("{pat:?}"), "Pat([redacted])");
        let fp = pat.fingerprint().to_string();
        assert_eq!(fp.len(), 12);
        assert!(!fp.contains("pat"));
        assert_eq!(ClientSecret::new("x").secret(), "x");
    }
}
