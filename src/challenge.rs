//! The UMA challenge (`WWW-Authenticate: UMA realm="…", as_uri="…", ticket="…"`) and the
//! `Warning` header sent when no ticket could be obtained.
//!
//! A resource server that refuses a request for lack of a sufficient RPT answers `401` with a
//! challenge carrying the authorization server's URI and a fresh permission ticket
//! ([Grant §3.2.1](https://docs.kantarainitiative.org/uma/wg/rec-oauth-uma-grant-2.0.html#permission-success-to-client));
//! when it cannot get a ticket it answers `403` with [`UNREACHABLE_WARNING`]
//! ([Grant §3.2.2](https://docs.kantarainitiative.org/uma/wg/rec-oauth-uma-grant-2.0.html#permission-failure-to-client)).
//! The layer renders the challenge; [`parse_uma_challenge`] reads one, for client code and tests.
//!
//! The challenge is always rendered on one line as
//! `UMA realm="…", as_uri="…", ticket="…"`, each value an RFC 9110 quoted-string (§5.6.4) in
//! which only `"` and `\` are escaped, so a JWT ticket passes through byte for byte. Values
//! holding control characters (CR and LF included) or non-ASCII characters are refused
//! rather than escaped or dropped: they would split or corrupt the header, and none occurs in
//! a legitimate realm, issuer URI or ticket.
//!
//! # Example
//!
//! ```
//! use tower_uma::challenge::parse_uma_challenge;
//!
//! // Keycloak's enforcer sends no spaces after the commas.
//! let challenge = parse_uma_challenge(
//!     r#"UMA realm="acme",as_uri="https://kc.test/realms/acme",ticket="eyJ.a-b_c""#,
//! )?;
//! assert_eq!(challenge.realm.as_deref(), Some("acme"));
//! assert_eq!(challenge.as_uri, "https://kc.test/realms/acme");
//! assert_eq!(challenge.ticket, "eyJ.a-b_c");
//! # Ok::<(), tower_uma::challenge::ChallengeError>(())
//! ```

use http::HeaderValue;

/// The `Warning` header value for a `403` sent when no permission ticket could be obtained:
/// `199 - "UMA Authorization Server Unreachable"`
/// ([Grant §3.2.2](https://docs.kantarainitiative.org/uma/wg/rec-oauth-uma-grant-2.0.html#permission-failure-to-client)).
///
/// RFC 9111 declares `Warning` obsolete and some intermediaries drop it; UMA still requires it.
pub const UNREACHABLE_WARNING: &str = "199 - \"UMA Authorization Server Unreachable\"";

/// [`UNREACHABLE_WARNING`] as a header value.
pub(crate) const fn unreachable_warning() -> HeaderValue {
    HeaderValue::from_static(UNREACHABLE_WARNING)
}

/// Renders `UMA realm="…", as_uri="…", ticket="…"`, then `, resource_metadata="…"` (RFC 9728
/// §5.1) when given.
///
/// # Errors
///
/// [`ChallengeError::InvalidCharacter`] when a value holds a control character (including
/// CR, LF and HTAB), DEL or a non-ASCII character; [`ChallengeError::EmptyParam`] when
/// `as_uri` or `ticket` is empty.
pub(crate) fn render_challenge(
    realm: &str,
    as_uri: &str,
    ticket: &str,
    resource_metadata: Option<&str>,
) -> Result<HeaderValue, ChallengeError> {
    for (param, value) in [("as_uri", as_uri), ("ticket", ticket)] {
        if value.is_empty() {
            return Err(ChallengeError::EmptyParam { param });
        }
    }
    let mut out = String::with_capacity(32 + realm.len() + as_uri.len() + ticket.len());
    out.push_str("UMA realm=");
    push_quoted(&mut out, "realm", realm)?;
    out.push_str(", as_uri=");
    push_quoted(&mut out, "as_uri", as_uri)?;
    out.push_str(", ticket=");
    push_quoted(&mut out, "ticket", ticket)?;
    if let Some(url) = resource_metadata {
        out.push_str(", resource_metadata=");
        push_quoted(&mut out, "resource_metadata", url)?;
    }
    // Only visible ASCII and spaces were written, which a header value always accepts.
    HeaderValue::try_from(out).map_err(|_| ChallengeError::InvalidCharacter { param: "realm" })
}

fn push_quoted(out: &mut String, param: &'static str, value: &str) -> Result<(), ChallengeError> {
    out.push('"');
    for byte in value.bytes() {
        match byte {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(char::from(byte));
            }
            b' '..=b'~' => out.push(char::from(byte)),
            _ => return Err(ChallengeError::InvalidCharacter { param }),
        }
    }
    out.push('"');
    Ok(())
}

/// A parsed UMA challenge.
///
/// # Example
///
/// ```
/// use tower_uma::challenge::parse_uma_challenge;
///
/// let challenge = parse_uma_challenge(concat!(
///     r#"UMA realm="photos \"2024\"", as_uri="https://as.test", ticket=tk-5b0e6c, "#,
///     r#"error="insufficient_scope""#,
/// ))?;
/// assert_eq!(challenge.realm.as_deref(), Some(r#"photos "2024""#));
/// assert_eq!(challenge.ticket, "tk-5b0e6c");
/// assert_eq!(challenge.other, [("error".to_owned(), "insufficient_scope".to_owned())]);
/// # Ok::<(), tower_uma::challenge::ChallengeError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct UmaChallenge {
    /// The `realm`, unescaped, if present (UMA does not require it).
    pub realm: Option<String>,
    /// The authorization server's issuer URI (`as_uri`), where the client takes the ticket.
    pub as_uri: String,
    /// The permission ticket, exactly as sent.
    pub ticket: String,
    /// The URL of the resource's metadata (`resource_metadata`, RFC 9728 §5.1), unescaped,
    /// if present.
    pub resource_metadata: Option<String>,
    /// Every other auth-param, in order, with lower-cased names and unescaped values, such as
    /// `error="insufficient_scope"` sent by some resource servers.
    pub other: Vec<(String, String)>,
}

/// Parses one `WWW-Authenticate` challenge with the `UMA` scheme.
///
/// Accepts the RFC 9110 §11.6.1 grammar: the scheme (case-insensitive), one or more spaces,
/// then a comma-separated list of `name=value` auth-params with optional whitespace around
/// commas and `=`, values as tokens or quoted-strings, names case-insensitive. The header value
/// must hold this one challenge only.
///
/// # Errors
///
/// - [`ChallengeError::NotUma`] for another scheme (`Bearer …`);
/// - [`ChallengeError::Malformed`] when the value breaks the grammar (a `token68`, an
///   unterminated quoted-string, a second challenge, …);
/// - [`ChallengeError::DuplicateParam`] when an auth-param appears twice;
/// - [`ChallengeError::MissingParam`] or [`ChallengeError::EmptyParam`] when `as_uri` or
///   `ticket` is absent or empty.
///
/// # Example
///
/// ```
/// use tower_uma::challenge::{ChallengeError, parse_uma_challenge};
///
/// let challenge = parse_uma_challenge(r#"uma as_uri="https://as.test",TICKET="t1""#)?;
/// assert_eq!((challenge.as_uri.as_str(), challenge.ticket.as_str()), ("https://as.test", "t1"));
/// assert_eq!(challenge.realm, None);
///
/// assert_eq!(parse_uma_challenge(r#"Bearer realm="api""#), Err(ChallengeError::NotUma));
/// # Ok::<(), ChallengeError>(())
/// ```
pub fn parse_uma_challenge(header: &str) -> Result<UmaChallenge, ChallengeError> {
    let mut cursor = Cursor { rest: header };
    cursor.skip_whitespace();
    let scheme = cursor.token();
    if scheme.is_empty() {
        return Err(malformed("missing auth-scheme"));
    }
    if !scheme.eq_ignore_ascii_case("UMA") {
        return Err(ChallengeError::NotUma);
    }
    if !cursor.rest.is_empty() && !cursor.skip_whitespace() {
        return Err(malformed("no space after the auth-scheme"));
    }

    let mut params: Vec<(String, String)> = Vec::new();
    loop {
        cursor.skip_whitespace();
        if cursor.rest.is_empty() {
            break;
        }
        if cursor.eat(b',') {
            // RFC 9110 §5.6.1: recipients accept empty list elements.
            continue;
        }
        let name = cursor.token().to_ascii_lowercase();
        if name.is_empty() {
            return Err(malformed("expected an auth-param name"));
        }
        cursor.skip_whitespace();
        if !cursor.eat(b'=') {
            return Err(malformed("expected `=` after an auth-param name"));
        }
        cursor.skip_whitespace();
        let value = if cursor.eat(b'"') {
            cursor.quoted_rest()?
        } else {
            let token = cursor.token();
            if token.is_empty() {
                return Err(malformed("expected a token or a quoted-string value"));
            }
            token.to_owned()
        };
        cursor.skip_whitespace();
        if !cursor.rest.is_empty() && !cursor.eat(b',') {
            return Err(malformed("expected `,` between auth-params"));
        }
        if params.iter().any(|(seen, _)| *seen == name) {
            return Err(ChallengeError::DuplicateParam { name });
        }
        params.push((name, value));
    }

    let mut take = |param: &'static str| {
        params
            .iter()
            .position(|(name, _)| name == param)
            .map(|index| params.remove(index).1)
    };
    let realm = take("realm");
    let resource_metadata = take("resource_metadata");
    let mut required = |param: &'static str| match take(param) {
        None => Err(ChallengeError::MissingParam { param }),
        Some(value) if value.is_empty() => Err(ChallengeError::EmptyParam { param }),
        Some(value) => Ok(value),
    };
    let as_uri = required("as_uri")?;
    let ticket = required("ticket")?;
    Ok(UmaChallenge {
        realm,
        as_uri,
        ticket,
        resource_metadata,
        other: params,
    })
}

fn malformed(reason: &'static str) -> ChallengeError {
    ChallengeError::Malformed { reason }
}

/// A forward-only reader over the header value.
struct Cursor<'a> {
    rest: &'a str,
}

impl<'a> Cursor<'a> {
    /// Skips spaces and tabs; whether there were any.
    fn skip_whitespace(&mut self) -> bool {
        let trimmed = self.rest.trim_start_matches([' ', '\t']);
        let skipped = trimmed.len() != self.rest.len();
        self.rest = trimmed;
        skipped
    }

    /// Consumes `byte` if it comes next.
    fn eat(&mut self, byte: u8) -> bool {
        match self.rest.as_bytes().first() {
            Some(next) if *next == byte => {
                self.rest = &self.rest[1..];
                true
            }
            _ => false,
        }
    }

    /// Consumes the longest run of `tchar`s (RFC 9110 §5.6.2), possibly empty.
    fn token(&mut self) -> &'a str {
        let end = self
            .rest
            .bytes()
            .position(|b| !is_tchar(b))
            .unwrap_or(self.rest.len());
        let (token, rest) = self.rest.split_at(end);
        self.rest = rest;
        token
    }

    /// Reads a quoted-string whose opening `"` was consumed, returning it unescaped.
    fn quoted_rest(&mut self) -> Result<String, ChallengeError> {
        let mut value = String::new();
        let mut chars = self.rest.char_indices();
        while let Some((index, c)) = chars.next() {
            match c {
                '"' => {
                    self.rest = &self.rest[index + 1..];
                    return Ok(value);
                }
                '\\' => match chars.next() {
                    Some((_, escaped)) if is_quotable(escaped) => value.push(escaped),
                    _ => return Err(malformed("invalid escape in a quoted-string")),
                },
                c if is_quotable(c) => value.push(c),
                _ => return Err(malformed("control character in a quoted-string")),
            }
        }
        Err(malformed("unterminated quoted-string"))
    }
}

/// HTAB, SP, VCHAR and obs-text: what a quoted-string may carry (RFC 9110 §5.6.4).
fn is_quotable(c: char) -> bool {
    c == '\t' || c == ' ' || c.is_ascii_graphic() || !c.is_ascii()
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric()
        || matches!(
            byte,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// Why a UMA challenge could not be rendered or parsed.
///
/// # Example
///
/// ```
/// use tower_uma::challenge::{ChallengeError, parse_uma_challenge};
///
/// let error = parse_uma_challenge(r#"UMA as_uri="https://as.test", ticket="a", ticket="b""#)
///     .unwrap_err();
/// assert_eq!(error, ChallengeError::DuplicateParam { name: "ticket".to_owned() });
/// assert_eq!(error.to_string(), "auth-param `ticket` appears more than once");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChallengeError {
    /// A value to render holds a character a quoted-string cannot carry safely (a control
    /// character such as CR or LF, DEL, or a non-ASCII character).
    #[error("`{param}` holds a character that cannot be sent in a challenge")]
    InvalidCharacter {
        /// The auth-param whose value was refused.
        param: &'static str,
    },
    /// `as_uri` or `ticket` is empty.
    #[error("`{param}` is empty")]
    EmptyParam {
        /// The empty auth-param.
        param: &'static str,
    },
    /// The challenge's scheme is not `UMA`.
    #[error("challenge scheme is not UMA")]
    NotUma,
    /// The header value breaks the challenge grammar.
    #[error("malformed challenge: {reason}")]
    Malformed {
        /// Which rule was broken.
        reason: &'static str,
    },
    /// An auth-param appears more than once.
    #[error("auth-param `{name}` appears more than once")]
    DuplicateParam {
        /// The repeated name, lower-cased.
        name: String,
    },
    /// A required auth-param (`as_uri` or `ticket`) is missing.
    #[error("challenge lacks the `{param}` auth-param")]
    MissingParam {
        /// The missing auth-param.
        param: &'static str,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(realm: &str, as_uri: &str, ticket: &str) -> Result<String, ChallengeError> {
        render_challenge(realm, as_uri, ticket, None).map(|v| v.to_str().unwrap().to_owned())
    }

    #[test]
    fn renders_the_canonical_form() {
        assert_eq!(
            render("invoices", "https://as.test", "tk-5b0e6c").unwrap(),
            r#"UMA realm="invoices", as_uri="https://as.test", ticket="tk-5b0e6c""#
        );
    }

    #[test]
    fn jwt_ticket_passes_byte_for_byte() {
        let ticket = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln-_~+/=";
        let header = render("r", "https://as.test", ticket).unwrap();
        assert!(
            header.ends_with(&format!("ticket=\"{ticket}\"")),
            "{header}"
        );
        assert_eq!(parse_uma_challenge(&header).unwrap().ticket, ticket);
    }

    #[test]
    fn escapes_quotes_and_backslashes_and_round_trips() {
        let realm = r#"a "quoted" \realm\"#;
        let header = render(realm, "https://as.test/x?y=\"z\"", "t\\1").unwrap();
        assert_eq!(
            header,
            r#"UMA realm="a \"quoted\" \\realm\\", as_uri="https://as.test/x?y=\"z\"", ticket="t\\1""#
        );
        let parsed = parse_uma_challenge(&header).unwrap();
        assert_eq!(parsed.realm.as_deref(), Some(realm));
        assert_eq!(parsed.as_uri, "https://as.test/x?y=\"z\"");
        assert_eq!(parsed.ticket, "t\\1");
        assert!(parsed.other.is_empty());
    }

    #[test]
    fn round_trips_every_printable_ascii_character() {
        let all: String = (b' '..=b'~').map(char::from).collect();
        let header = render(&all, &all, &all).unwrap();
        let parsed = parse_uma_challenge(&header).unwrap();
        assert_eq!(parsed.realm.as_deref(), Some(all.as_str()));
        assert_eq!(parsed.as_uri, all);
        assert_eq!(parsed.ticket, all);
    }

    #[test]
    fn refuses_characters_a_quoted_string_cannot_carry() {
        for bad in [
            "a\r\nSet-Cookie: x=1",
            "a\n",
            "a\r",
            "a\0",
            "a\t",
            "a\u{7f}",
            "caf\u{e9}",
        ] {
            assert_eq!(
                render("r", "https://as.test", bad),
                Err(ChallengeError::InvalidCharacter { param: "ticket" }),
                "{bad:?}"
            );
            assert_eq!(
                render(bad, "https://as.test", "t"),
                Err(ChallengeError::InvalidCharacter { param: "realm" }),
                "{bad:?}"
            );
            assert_eq!(
                render("r", bad, "t"),
                Err(ChallengeError::InvalidCharacter { param: "as_uri" }),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn refuses_empty_as_uri_or_ticket_but_not_realm() {
        assert_eq!(
            render("r", "https://as.test", ""),
            Err(ChallengeError::EmptyParam { param: "ticket" })
        );
        assert_eq!(
            render("r", "", "t"),
            Err(ChallengeError::EmptyParam { param: "as_uri" })
        );
        assert_eq!(
            render("", "https://as.test", "t").unwrap(),
            r#"UMA realm="", as_uri="https://as.test", ticket="t""#
        );
    }

    #[test]
    fn parses_keycloak_form_without_spaces() {
        let parsed = parse_uma_challenge(
            r#"UMA realm="acme",as_uri="https://kc.test/realms/acme",ticket="eyJ.a-b_c""#,
        )
        .unwrap();
        assert_eq!(
            parsed,
            UmaChallenge {
                realm: Some("acme".to_owned()),
                as_uri: "https://kc.test/realms/acme".to_owned(),
                ticket: "eyJ.a-b_c".to_owned(),
                resource_metadata: None,
                other: Vec::new(),
            }
        );
    }

    #[test]
    fn resource_metadata_renders_last_and_parses_back() {
        let url = "https://photos.test/.well-known/oauth-protected-resource";
        let header = render_challenge("photos", "https://as.test", "tk-1", Some(url)).unwrap();
        assert_eq!(
            header,
            r#"UMA realm="photos", as_uri="https://as.test", ticket="tk-1", resource_metadata="https://photos.test/.well-known/oauth-protected-resource""#
        );
        let parsed = parse_uma_challenge(header.to_str().unwrap()).unwrap();
        assert_eq!(parsed.resource_metadata.as_deref(), Some(url));
        assert!(parsed.other.is_empty());
        assert_eq!(
            render_challenge("r", "a", "t", Some("https://x.test/\n")),
            Err(ChallengeError::InvalidCharacter {
                param: "resource_metadata"
            })
        );
        assert!(render_challenge("r", "a", "t", Some("https://x.test/\u{7f}")).is_err());
    }

    #[test]
    fn keeps_unknown_params() {
        let parsed = parse_uma_challenge(
            r#"UMA realm="r", as_uri="https://as.test", ticket="t", error="insufficient_scope", Foo=bar"#,
        )
        .unwrap();
        assert_eq!(
            parsed.other,
            [
                ("error".to_owned(), "insufficient_scope".to_owned()),
                ("foo".to_owned(), "bar".to_owned())
            ]
        );
    }

    #[test]
    fn accepts_whitespace_tokens_case_and_empty_list_elements() {
        let parsed = parse_uma_challenge(
            "  uMa \t REALM = r ,, As_Uri=\"https://as.test\" ,\tticket = t.1 , ",
        )
        .unwrap();
        assert_eq!(parsed.realm.as_deref(), Some("r"));
        assert_eq!(parsed.as_uri, "https://as.test");
        assert_eq!(parsed.ticket, "t.1");
    }

    #[test]
    fn refuses_duplicate_params_in_any_case() {
        assert_eq!(
            parse_uma_challenge(r#"UMA as_uri="a", ticket="t", AS_URI="b""#),
            Err(ChallengeError::DuplicateParam {
                name: "as_uri".to_owned()
            })
        );
        assert_eq!(
            parse_uma_challenge(r#"UMA realm=a, as_uri="a", ticket="t", realm=b"#),
            Err(ChallengeError::DuplicateParam {
                name: "realm".to_owned()
            })
        );
        assert_eq!(
            parse_uma_challenge(r#"UMA x=1, as_uri="a", ticket="t", X="2""#),
            Err(ChallengeError::DuplicateParam {
                name: "x".to_owned()
            })
        );
    }

    #[test]
    fn refuses_other_schemes() {
        assert_eq!(
            parse_uma_challenge(r#"Bearer realm="api", error="invalid_token""#),
            Err(ChallengeError::NotUma)
        );
        assert_eq!(
            parse_uma_challenge(r#"UMA2 as_uri="a", ticket="t""#),
            Err(ChallengeError::NotUma)
        );
        assert_eq!(
            parse_uma_challenge(r#"UMAas_uri="a", ticket="t""#),
            Err(ChallengeError::NotUma)
        );
    }

    #[test]
    fn requires_as_uri_and_ticket() {
        assert_eq!(
            parse_uma_challenge(r#"UMA realm="r", as_uri="https://as.test""#),
            Err(ChallengeError::MissingParam { param: "ticket" })
        );
        assert_eq!(
            parse_uma_challenge(r#"UMA ticket="t""#),
            Err(ChallengeError::MissingParam { param: "as_uri" })
        );
        assert_eq!(
            parse_uma_challenge("UMA"),
            Err(ChallengeError::MissingParam { param: "as_uri" })
        );
        assert_eq!(
            parse_uma_challenge(r#"UMA as_uri="https://as.test", ticket="""#),
            Err(ChallengeError::EmptyParam { param: "ticket" })
        );
    }

    #[test]
    fn refuses_malformed_values() {
        for bad in [
            "",
            "   ",
            r#"UMA as_uri="https://as.test", ticket="t"#, // unterminated
            r#"UMA as_uri="https://as.test" ticket="t""#, // missing comma
            r#"UMA abc=="#,                               // token68
            r#"UMA as_uri, ticket="t""#,                  // no value
            r#"UMA as_uri=, ticket="t""#,                 // empty token value
            "UMA as_uri=\"a\rb\", ticket=\"t\"",          // CR in quoted-string
            r#"UMA as_uri="a", ticket="t\"#,              // dangling escape
            "UMA as_uri=\"a\", ticket=\"t\\\u{1}\"",      // escaped control character
            "UMA as_uri=\"a\", ticket=\"t\\\n\"",         // escaped LF
            r#"UMA as_uri="a", ticket="t", Bearer realm="x""#, // a second challenge
            r#"UMA as_uri="a", ticket=t"x""#,             // junk after a token
            r#"UMA as_uri=a b, ticket=t"#,                // space inside a token
        ] {
            assert!(
                matches!(
                    parse_uma_challenge(bad),
                    Err(ChallengeError::Malformed { .. })
                ),
                "{bad:?} gave {:?}",
                parse_uma_challenge(bad)
            );
        }
    }

    #[test]
    fn parses_obs_text_in_quoted_strings() {
        let parsed =
            parse_uma_challenge("UMA realm=\"caf\u{e9}\", as_uri=\"a\", ticket=\"t\"").unwrap();
        assert_eq!(parsed.realm.as_deref(), Some("caf\u{e9}"));
    }

    #[test]
    fn warning_value_is_exact() {
        assert_eq!(
            unreachable_warning().to_str().unwrap(),
            r#"199 - "UMA Authorization Server Unreachable""#
        );
    }
}
