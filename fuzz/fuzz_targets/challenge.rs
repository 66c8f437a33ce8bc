//! The UMA challenge (`WWW-Authenticate: UMA realm="…", as_uri="…", ticket="…"`, UMA Grant
//! §3.2.1), parsed and rendered.
//!
//! Input: UTF-8 text, used twice.
//! - Parsed whole as a header value. A challenge read has a non-empty `as_uri` and `ticket`,
//!   and its other auth-params have distinct, lower-case token names (RFC 9110 §11.2). When
//!   its values can be sent, rendering it and parsing the result gives it back.
//! - Split at its first two line feeds into realm, `as_uri` and ticket, then rendered. The
//!   renderer refuses exactly an empty `as_uri` or ticket and a value with a byte outside
//!   visible ASCII and space; what it renders is the canonical form, in which only `"` and
//!   `\` are escaped, and parses back to the same three values and nothing else.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_uma::fuzzing::render_challenge;
use tower_uma::challenge::{ChallengeError, UmaChallenge, parse_uma_challenge};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };

    if let Ok(challenge) = parse_uma_challenge(text) {
        assert!(
            !challenge.as_uri.is_empty() && !challenge.ticket.is_empty(),
            "{challenge:?}"
        );
        for (i, (name, _)) in challenge.other.iter().enumerate() {
            assert!(
                !name.is_empty() && name.bytes().all(|b| tchar(b) && !b.is_ascii_uppercase()),
                "{name:?}"
            );
            assert!(
                !["realm", "as_uri", "ticket"].contains(&name.as_str()),
                "{name:?}"
            );
            assert!(
                challenge.other[..i].iter().all(|(seen, _)| seen != name),
                "{name:?} twice"
            );
        }
        let realm = challenge.realm.clone().unwrap_or_default();
        if [&realm, &challenge.as_uri, &challenge.ticket]
            .iter()
            .all(|v| sendable(v))
        {
            round_trip(&realm, &challenge.as_uri, &challenge.ticket);
        }
    }

    let mut fields = text.splitn(3, '\n');
    let realm = fields.next().unwrap_or_default();
    let as_uri = fields.next().unwrap_or_default();
    let ticket = fields.next().unwrap_or_default();
    let expected = if as_uri.is_empty() {
        Err(ChallengeError::EmptyParam { param: "as_uri" })
    } else if ticket.is_empty() {
        Err(ChallengeError::EmptyParam { param: "ticket" })
    } else if let Some(param) = [("realm", realm), ("as_uri", as_uri), ("ticket", ticket)]
        .into_iter()
        .find_map(|(param, value)| (!sendable(value)).then_some(param))
    {
        Err(ChallengeError::InvalidCharacter { param })
    } else {
        Ok(())
    };
    match (render_challenge(realm, as_uri, ticket), expected) {
        (Ok(_), Ok(())) => round_trip(realm, as_uri, ticket),
        (Err(got), Err(expected)) => assert_eq!(got, expected),
        (got, expected) => {
            panic!("{realm:?} {as_uri:?} {ticket:?}: rendered {got:?}, expected {expected:?}")
        }
    }
});

/// Renders the three values, checks the header against the canonical form (only `"` and `\`
/// escaped), parses it back and compares.
fn round_trip(realm: &str, as_uri: &str, ticket: &str) {
    let header = render_challenge(realm, as_uri, ticket).expect("sendable values render");
    assert!(
        header.as_bytes().iter().all(|b| matches!(b, b' '..=b'~')),
        "{header:?}"
    );
    let text = header.to_str().expect("visible ASCII");
    let expected = format!(
        r#"UMA realm="{}", as_uri="{}", ticket="{}""#,
        escape(realm),
        escape(as_uri),
        escape(ticket)
    );
    assert_eq!(text, expected, "not the canonical form");
    let parsed =
        parse_uma_challenge(text).unwrap_or_else(|e| panic!("{text:?} does not parse: {e}"));
    let UmaChallenge {
        realm: got_realm,
        as_uri: got_uri,
        ticket: got_ticket,
        other,
        ..
    } = parsed;
    assert_eq!(got_realm.as_deref(), Some(realm));
    assert_eq!((got_uri.as_str(), got_ticket.as_str()), (as_uri, ticket));
    assert!(other.is_empty(), "{other:?}");
}

/// What a quoted-string carries safely: visible ASCII and space (RFC 9110 §5.6.4, without
/// HTAB and obs-text).
fn sendable(value: &str) -> bool {
    value.bytes().all(|b| matches!(b, b' '..=b'~'))
}

fn escape(value: &str) -> String {
    value.replace('\\', r"\\").replace('"', r#"\""#)
}

/// RFC 9110 §5.6.2 `tchar`.
fn tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}
