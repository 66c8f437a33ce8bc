//! Secret newtypes (RPT, PAT, client secret) and RFC 6750 bearer-token parsing.
//!
//! Every secret type here follows the `oauth2` crate's pattern: `Debug` is redacted, there is
//! no `Display`, and the raw value is only reachable through `secret()`. What may be logged
//! is a [`Fingerprint`]: a short prefix of the SHA-256 of the value.
//!
//! # Example
//!
//! ```
//! use tower_uma::token::{ClientSecret, Fingerprint};
//!
//! let secret = ClientSecret::new("s3cr3t");
//! assert_eq!(format!("{secret:?}"), "ClientSecret([redacted])");
//! assert_eq!(secret.fingerprint(), Fingerprint::of(b"s3cr3t"));
//! assert_eq!(secret.fingerprint().to_string().len(), 12);
//! ```

use std::borrow::Cow;
use std::fmt;

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue};
#[cfg(any(test, target_arch = "x86_64", not(feature = "rustls")))]
use sha2::{Digest, Sha256};

/// Defines a secret string newtype with a redacted `Debug`, `secret()` and `fingerprint()`.
macro_rules! secret_type {
    ($(#[$meta:meta])* $vis:vis $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq)]
        $vis struct $name(String);

        impl $name {
            #[doc = concat!("Wraps a raw value as a [`", stringify!($name), "`].")]
            #[must_use]
            $vis fn new(value: impl Into<String>) -> Self {
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
            $vis fn secret(&self) -> &str {
                &self.0
            }

            /// A short, stable SHA-256 fingerprint of the value, safe to log.
            #[must_use]
            #[allow(dead_code, reason = "not every secret type is logged")]
            $vis fn fingerprint(&self) -> Fingerprint {
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
    pub(crate) Rpt
);
secret_type!(
    /// A protection API access token (PAT), the resource server's credential at the AS.
    pub(crate) Pat
);
secret_type!(
    /// An OAuth client secret.
    pub ClientSecret
);

/// A SHA-256 digest of a secret, shown as its first 12 hex digits.
///
/// The full digest is kept so that fingerprints compare exactly; only the short form is ever
/// printed. Aligned to eight bytes, so that copies of it (and of an `Option` of it, which the
/// request path moves along) are a few aligned words rather than 33 odd-aligned bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[repr(align(8))]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The fingerprint of some bytes.
    #[must_use]
    pub fn of(bytes: &[u8]) -> Self {
        Self(sha256(bytes))
    }

    /// The full 32-byte digest.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// SHA-256 through aws-lc-rs when the `rustls` feature has brought it into the build and the
/// CPU has no SHA extensions (nor under valgrind, which hides them): its assembly takes about
/// 30% fewer instructions than `sha2`'s portable code. With them, both use them, and `sha2`,
/// inlined, spends less around them: 76 against 81 ns for a 43-byte token (64 ns since
/// `sha2_digest` pads such a token itself), 797 against 852 ns for a 1,200-byte JWT on the
/// project's AMD EPYC VM.
#[cfg(feature = "rustls")]
fn sha256(bytes: &[u8]) -> [u8; 32] {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("sha") {
        return sha2_digest(bytes);
    }
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut out = [0_u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// SHA-256 through `sha2` (builds without the `rustls` feature).
#[cfg(not(feature = "rustls"))]
fn sha256(bytes: &[u8]) -> [u8; 32] {
    sha2_digest(bytes)
}

/// SHA-256 through `sha2`. A message that fits in one block with its padding (at most 55
/// bytes: opaque tokens) is padded here as FIPS 180-4 §5.1.1 pads it (the bytes, `0x80`,
/// zeros, the length in bits as a 64-bit big-endian number) and compressed once from the
/// initial hash value (§5.3.3), which spares `sha2`'s buffering: 64–70 against 73–76 ns for a
/// 43-byte token on the project's AMD EPYC VM. Longer ones go through `Sha256::digest`. A
/// unit test compares both at every length from 0 to 255 bytes.
fn sha2_digest(bytes: &[u8]) -> [u8; 32] {
    /// The initial hash value of SHA-256 (FIPS 180-4 §5.3.3).
    const INITIAL: [u32; 8] = [
        0x6a09_e667,
        0xbb67_ae85,
        0x3c6e_f372,
        0xa54f_f53a,
        0x510e_527f,
        0x9b05_688c,
        0x1f83_d9ab,
        0x5be0_cd19,
    ];
    /// The longest message one block holds with its padding: 64 bytes less `0x80` and the
    /// eight bytes of the length.
    const ONE_BLOCK: usize = 55;
    if bytes.len() > ONE_BLOCK {
        return Sha256::digest(bytes).into();
    }
    let mut block = [0_u8; 64];
    block[..bytes.len()].copy_from_slice(bytes);
    block[bytes.len()] = 0x80;
    // At most 55 bytes: the length in bits fits in a u64 (the cast cannot truncate).
    let bits = (bytes.len() as u64) * 8;
    block[56..].copy_from_slice(&bits.to_be_bytes());
    let mut state = INITIAL;
    sha2::compress256(&mut state, &[block.into()]);
    let mut out = [0_u8; 32];
    for (bytes, word) in out.chunks_exact_mut(4).zip(state) {
        bytes.copy_from_slice(&word.to_be_bytes());
    }
    out
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
/// (borrowed from the request, or shared, never copied) and where the token is in it. A hit
/// in the cache needs only its fingerprint; an [`Rpt`] is made from it on a miss.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct BearerToken<'h> {
    value: Cow<'h, HeaderValue>,
    start: usize,
}

impl BearerToken<'_> {
    /// The token holding the header value itself (shared, not copied), for the requests that
    /// wait for the AS.
    pub(crate) fn into_owned(self) -> BearerToken<'static> {
        BearerToken {
            value: Cow::Owned(self.value.into_owned()),
            start: self.start,
        }
    }

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

impl fmt::Debug for BearerToken<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken([redacted])")
    }
}

/// What the `Authorization` header of a request says about an RPT (RFC 6750 §2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Bearer<'h> {
    /// No usable bearer credential: no header, an empty one, another scheme, or `Bearer`
    /// followed by nothing. Treated as a tokenless request (docs/protocol.md §6.4).
    Absent,
    /// A syntactically valid bearer token.
    Token(BearerToken<'h>),
    /// A bearer credential that cannot be a token: several `Authorization` headers, bytes that
    /// are not visible ASCII, characters outside RFC 6750's `b64token`, or more than
    /// [`MAX_TOKEN_LEN`] bytes. Answered with `400 invalid_request`.
    Malformed(&'static str),
}

/// Reads the RPT from the `Authorization` header only (never from the query or body).
///
/// The scheme compares case-insensitively and may be followed by one or more spaces
/// (RFC 6750 §2.1, RFC 9110 §11.1). Works on the header's bytes: the token is checked against
/// the `b64token` alphabet (ASCII) byte by byte, so no UTF-8 pass is needed.
pub(crate) fn bearer_from_headers(headers: &HeaderMap) -> Bearer<'_> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Bearer::Absent;
    };
    if values.next().is_some() {
        return Bearer::Malformed("more than one Authorization header");
    }
    // The common spelling, `Bearer ` and an unpadded token, checked without branching per
    // byte. Whatever it accepts, `parse_value` accepts with the same result (a unit test
    // compares the two); everything else goes there.
    let bytes = value.as_bytes();
    if let Some((scheme, token)) = bytes.split_at_checked(BEARER_SP.len())
        && scheme.eq_ignore_ascii_case(BEARER_SP)
        && !token.is_empty()
        && token.len() <= MAX_TOKEN_LEN
        && all_b64token(token)
    {
        return Bearer::Token(BearerToken {
            value: Cow::Borrowed(value),
            start: BEARER_SP.len(),
        });
    }
    parse_value(value)
}

/// `Bearer` and the one space of the common spelling.
const BEARER_SP: &[u8] = b"bearer ";

/// Whether every byte is in the `b64token` body alphabet: eight table lookups at a time,
/// combined without a branch per byte.
fn all_b64token(bytes: &[u8]) -> bool {
    let mut chunks = bytes.chunks_exact(8);
    let in_chunks = chunks.all(|c| c.iter().fold(true, |ok, &b| ok & B64TOKEN[usize::from(b)]));
    in_chunks && chunks.remainder().iter().all(|&b| B64TOKEN[usize::from(b)])
}

/// Every spelling of one `Authorization` header value: blanks around the scheme and the token,
/// `=` padding, other schemes, and the reasons for refusing a value.
pub(crate) fn parse_value(value: &HeaderValue) -> Bearer<'_> {
    let bytes = value.as_bytes();
    if bytes.len() > MAX_TOKEN_LEN + 16 {
        return Bearer::Malformed("credentials too long");
    }
    let start = skip_blanks(bytes, 0);
    let scheme_end = bytes[start..]
        .iter()
        .position(|&b| is_blank(b))
        .map_or(bytes.len(), |n| start + n);
    if !bytes[start..scheme_end].eq_ignore_ascii_case(b"bearer") {
        // Another scheme (or none): no bearer token, unless the value is not even ASCII.
        return if bytes.is_ascii() {
            Bearer::Absent
        } else {
            Bearer::Malformed("credentials are not ASCII")
        };
    }
    let token_start = skip_blanks(bytes, scheme_end);
    // One pass over the token: the b64token body, then its `=` padding.
    let body_end = bytes[token_start..]
        .iter()
        .position(|&b| !B64TOKEN[usize::from(b)])
        .map_or(bytes.len(), |n| token_start + n);
    let token_end = body_end + bytes[body_end..].iter().take_while(|&&b| b == b'=').count();
    if token_end == token_start {
        // Nothing after the scheme but blanks, or a token that starts with a foreign byte.
        return if token_start == bytes.len() {
            Bearer::Absent
        } else if bytes.is_ascii() {
            Bearer::Malformed("token is not a b64token")
        } else {
            Bearer::Malformed("credentials are not ASCII")
        };
    }
    if body_end == token_start || skip_blanks(bytes, token_end) != bytes.len() {
        // Padding only, or something other than blanks after the token.
        return if bytes.is_ascii() {
            Bearer::Malformed("token is not a b64token")
        } else {
            Bearer::Malformed("credentials are not ASCII")
        };
    }
    if token_end - token_start > MAX_TOKEN_LEN {
        return Bearer::Malformed("token too long");
    }
    if token_end != bytes.len() {
        // Trailing blanks after the token: copy the value without them.
        let Ok(value) = HeaderValue::from_bytes(&bytes[..token_end]) else {
            return Bearer::Malformed("credentials are not a header value");
        };
        return Bearer::Token(BearerToken {
            value: Cow::Owned(value),
            start: token_start,
        });
    }
    Bearer::Token(BearerToken {
        value: Cow::Borrowed(value),
        start: token_start,
    })
}

fn is_blank(byte: u8) -> bool {
    byte == b' ' || byte == b'\t'
}

/// The index of the first non-blank byte at or after `from` (`bytes.len()` if none).
fn skip_blanks(bytes: &[u8], from: usize) -> usize {
    bytes[from..]
        .iter()
        .position(|&b| !is_blank(b))
        .map_or(bytes.len(), |n| from + n)
}

/// The bytes of RFC 6750's `b64token` before its `=` padding:
/// `ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/"`.
static B64TOKEN: [bool; 256] = {
    let mut table = [false; 256];
    let mut i = 0;
    while i < 256 {
        #[allow(clippy::cast_possible_truncation, reason = "i < 256")]
        let byte = i as u8;
        table[i] =
            byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
        i += 1;
    }
    table
};

/// The decoded (not parsed) payload of a compact JWS, if the token is one.
pub(crate) fn jwt_payload_bytes(token: &[u8]) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let mut parts = token.split(|b| *b == b'.');
    let (_, payload, _, None) = (parts.next()?, parts.next()?, parts.next()?, parts.next()) else {
        return None;
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
}

/// The JSON object in the payload of a compact JWS, if the token is one.
pub(crate) fn jwt_payload(token: &[u8]) -> Option<serde_json::Map<String, serde_json::Value>> {
    let bytes = jwt_payload_bytes(token)?;
    match serde_json::from_slice(&bytes).ok()? {
        serde_json::Value::Object(map) => Some(map),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn token<'b>(b: &'b Bearer<'_>) -> Option<&'b [u8]> {
        match b {
            Bearer::Token(t) => Some(t.as_bytes()),
            _ => None,
        }
    }

    /// What `bearer_from_headers` says of these values, the token owned.
    fn parse(values: &[&[u8]]) -> Bearer<'static> {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(
                AUTHORIZATION,
                HeaderValue::from_bytes(v).expect("valid header bytes"),
            );
        }
        match bearer_from_headers(&h) {
            Bearer::Token(t) => Bearer::Token(t.into_owned()),
            Bearer::Absent => Bearer::Absent,
            Bearer::Malformed(why) => Bearer::Malformed(why),
        }
    }

    /// Every value the fast path of `bearer_from_headers` takes must parse the same through
    /// `parse_value`, and so must everything else: the two are compared on all short values
    /// over an alphabet of the bytes that matter, and on long ones around the 8-byte chunks.
    #[test]
    fn fast_path_agrees_with_the_general_parser() {
        const ALPHABET: &[u8] = b"aZ9-._~+/= \t\"\x80,";
        let mut checked = 0_u32;
        let mut check = |value: Vec<u8>| {
            let Ok(header) = HeaderValue::from_bytes(&value) else {
                return;
            };
            assert_eq!(parse(&[&value]), parse_value(&header), "{value:?}");
            checked += 1;
        };
        for prefix in [
            &b"Bearer "[..],
            b"bEaReR ",
            b"Bearer",
            b"Bearer  ",
            b"Basic ",
        ] {
            // Every string of up to three bytes from the alphabet after each prefix.
            let mut tails = vec![Vec::new()];
            for _ in 0..3 {
                let longer: Vec<Vec<u8>> = tails
                    .iter()
                    .flat_map(|t| ALPHABET.iter().map(move |&b| [t.as_slice(), &[b]].concat()))
                    .collect();
                tails.extend(longer);
                tails.dedup();
            }
            for tail in &tails {
                check([prefix, tail.as_slice()].concat());
            }
            // Long tokens, with one byte from the alphabet at every position of the chunks.
            for len in [7, 8, 9, 15, 16, 17, 43, 64] {
                for at in 0..len {
                    for &b in ALPHABET {
                        let mut token = vec![b'k'; len];
                        token[at] = b;
                        check([prefix, token.as_slice()].concat());
                    }
                }
            }
        }
        // The length limit, either side.
        for len in [MAX_TOKEN_LEN - 1, MAX_TOKEN_LEN, MAX_TOKEN_LEN + 1] {
            check([&b"Bearer "[..], &vec![b'x'; len]].concat());
        }
        assert!(checked > 10_000, "only {checked} values checked");
    }

    #[test]
    fn no_header_is_absent() {
        assert_eq!(bearer_from_headers(&HeaderMap::new()), Bearer::Absent);
    }

    #[test]
    fn scheme_is_case_insensitive_and_spaces_are_allowed() {
        // docs/protocol.md §11 check 12, RFC 6750 §2.1
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
        // docs/protocol.md §6.4, §11 check 21
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
        assert!(matches!(parse(&[b"Basic \xff"]), Bearer::Malformed(_)));
        assert!(matches!(parse(&[b"Bearer abc \xff"]), Bearer::Malformed(_)));
        assert!(matches!(parse(&[b"Bearer abc=d"]), Bearer::Malformed(_)));
        assert!(matches!(parse(&[b"Bearer =abc"]), Bearer::Malformed(_)));
        let long = format!("Bearer {}", "a".repeat(MAX_TOKEN_LEN + 1));
        assert!(matches!(parse(&[long.as_bytes()]), Bearer::Malformed(_)));
    }

    #[test]
    fn b64token_alphabet_and_padding() {
        assert_eq!(
            token(&parse(&[b"Bearer aZ09-._~+/=="])),
            Some(&b"aZ09-._~+/=="[..])
        );
        assert_eq!(token(&parse(&[b" \tBearer tok"])), Some(&b"tok"[..]));
        assert_eq!(token(&parse(&[b"Bearer a="])), Some(&b"a="[..]));
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
    fn fingerprints_are_sha256() {
        // FIPS 180-2 test vector "abc", and agreement with `sha2` at every length around the
        // block and padding boundaries, whichever implementation this build uses.
        let abc = Fingerprint::of(b"abc");
        assert_eq!(
            abc.as_bytes()[..8],
            [0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea]
        );
        // What logs show: the first six bytes in hex, and nothing more.
        assert_eq!(abc.to_string(), "ba7816bf8f01");
        assert_eq!(format!("{abc:?}"), "Fingerprint(ba7816bf8f01)");
        let data: Vec<u8> = (0..=255).collect();
        for len in 0..data.len() {
            let expected: [u8; 32] = Sha256::digest(&data[..len]).into();
            assert_eq!(Fingerprint::of(&data[..len]).as_bytes(), &expected, "{len}");
        }
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

    #[test]
    fn tokens_up_to_8_kib_are_accepted_in_every_spelling() {
        // Keycloak RPTs with a few permissions are 1.5–4 KB of JWT: the limit is 8 KiB.
        assert_eq!(MAX_TOKEN_LEN, 8192);
        for len in [1_500, 4_096, MAX_TOKEN_LEN] {
            let t = "eyJ.x-_".repeat(len).into_bytes();
            let t = &t[..len];
            // The common spelling, and one the general parser reads (blanks around).
            for value in [
                [&b"Bearer "[..], t].concat(),
                [&b"Bearer  "[..], t, b"\t"].concat(),
            ] {
                assert_eq!(token(&parse(&[&value])), Some(t), "{len} bytes");
            }
        }
        for value in [
            [&b"Bearer "[..], &[b'x'; MAX_TOKEN_LEN + 1]].concat(),
            [&b"Bearer  "[..], &[b'x'; MAX_TOKEN_LEN + 1]].concat(),
            // A value already longer than any token plus a few blanks is refused unread.
            [&b"Bearer "[..], &[b'x'; MAX_TOKEN_LEN], &[b' '; 10]].concat(),
        ] {
            assert!(
                matches!(parse(&[&value]), Bearer::Malformed(_)),
                "{}",
                value.len()
            );
        }
        // The longest value read: a full-length token with nine blanks after it.
        let t = [b'x'; MAX_TOKEN_LEN];
        let value = [&b"Bearer "[..], &t, &[b' '; 9]].concat();
        assert_eq!(value.len(), MAX_TOKEN_LEN + 16);
        assert_eq!(token(&parse(&[&value])), Some(&t[..]));
    }
}
