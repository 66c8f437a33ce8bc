//! Thin wrappers that let the fuzz targets in `fuzz/` reach internal parsers (feature
//! `fuzzing`, off by default).
//!
//! Not part of the API: hidden from the documentation, with no stability promise. Each
//! function calls the internal one and converts its answer into plain owned values; none adds
//! behaviour of its own.

use http::{HeaderMap, HeaderValue};

use crate::decision::{self, Requirement, Rules};
use crate::introspect::Introspection;
use crate::resources::{PathError, ScopeMode};
use crate::token::{self, Bearer};
use crate::{challenge, challenge::ChallengeError};

/// What a bearer parser made of an `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BearerOutcome {
    /// No bearer credential: treated as a tokenless request.
    Absent,
    /// The token's bytes.
    Token(Vec<u8>),
    /// Refused with `400`, and why.
    Malformed(&'static str),
}

impl From<Bearer<'_>> for BearerOutcome {
    fn from(bearer: Bearer<'_>) -> Self {
        match bearer {
            Bearer::Absent => Self::Absent,
            Bearer::Token(t) => Self::Token(t.as_bytes().to_vec()),
            Bearer::Malformed(why) => Self::Malformed(why),
        }
    }
}

/// The layer's reading of the `Authorization` headers: the fast path for the common spelling,
/// then the general parser.
#[must_use]
pub fn bearer_from_headers(headers: &HeaderMap) -> BearerOutcome {
    token::bearer_from_headers(headers).into()
}

/// The general parser alone, on one header value.
#[must_use]
pub fn parse_bearer_value(value: &HeaderValue) -> BearerOutcome {
    token::parse_value(value).into()
}

/// A normalised request path, as owned strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalizedPath {
    /// The canonical path (`/` and the canonical segments).
    pub canonical: String,
    /// The segments.
    pub segments: Vec<PathSegment>,
    /// Whether any segment keeps an escape.
    pub has_escapes: bool,
}

/// One segment of a [`NormalizedPath`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathSegment {
    /// The canonical spelling (only unreserved characters decoded).
    pub canonical: String,
    /// The fully percent-decoded value.
    pub decoded: String,
    /// Whether the canonical spelling keeps an escape.
    pub has_escapes: bool,
}

/// The layer's path normaliser.
///
/// # Errors
///
/// The [`PathError`] the layer answers `400` for.
pub fn normalize_path(raw: &str) -> Result<NormalizedPath, PathError> {
    let path = crate::resources::normalize_path(raw)?;
    Ok(NormalizedPath {
        canonical: path.as_str().to_owned(),
        segments: path
            .segments()
            .iter()
            .map(|s| PathSegment {
                canonical: s.canonical().to_owned(),
                decoded: s.decoded().to_owned(),
                has_escapes: s.has_escapes(),
            })
            .collect(),
        has_escapes: path.has_escapes(),
    })
}

/// The layer's renderer of `WWW-Authenticate: UMA realm="…", as_uri="…", ticket="…"`.
///
/// # Errors
///
/// The [`ChallengeError`] for a value that cannot be sent.
pub fn render_challenge(
    realm: &str,
    as_uri: &str,
    ticket: &str,
) -> Result<HeaderValue, ChallengeError> {
    challenge::render_challenge(realm, as_uri, ticket, None)
}

/// The access decision's knobs and what the request needs.
#[derive(Debug, Clone, Copy)]
pub struct Decide<'a> {
    /// The resource the request is for.
    pub resource_id: &'a str,
    /// The scopes it needs.
    pub scopes: &'a [String],
    /// Whether all of them or any one is needed.
    pub mode: ScopeMode,
    /// The time of the request, seconds since the epoch.
    pub now: i64,
    /// Seconds of tolerance for clock differences.
    pub leeway: i64,
    /// Keycloak's reading of a permission without scopes.
    pub empty_scopes_grant_all: bool,
}

/// The access decision on `intro`.
///
/// # Errors
///
/// The name of the denial (`inactive`, `expired`, …).
pub fn decide(intro: &Introspection, d: Decide<'_>) -> Result<Vec<usize>, &'static str> {
    let requirement = Requirement {
        claims: &crate::resources::NO_CLAIMS,
        resource_id: d.resource_id,
        scopes: d.scopes,
        mode: d.mode,
    };
    let rules = Rules {
        leeway: d.leeway,
        empty_scopes_grant_all: d.empty_scopes_grant_all,
    };
    decision::decide(intro, requirement, d.now, rules)
        .map(|granted| {
            (0..intro.permissions().len())
                .filter(|&i| granted.contains(i))
                .collect()
        })
        .map_err(decision::Denial::as_str)
}

/// [`Introspection::from_json`] for an already decoded JSON value (the public API takes bytes
/// only).
///
/// # Errors
///
/// As [`Introspection::from_json`].
pub fn introspection_from_value(
    value: &serde_json::Value,
) -> Result<Introspection, crate::introspect::ParseError> {
    Introspection::from_value(value)
}
