//! How a request ends: what the checks refused ([`Refusal`]), what the enforcement mode makes
//! of it ([`Enforcement`], the only code that reads an [`EnforcementMode`]), the one record of
//! the [`Outcome`] per request, and the responses the layer makes itself.

use std::fmt;

use http::{HeaderValue, Method, Response, StatusCode};
use tracing::{Span, field};

use crate::cache::CacheSource;
use crate::challenge::unreachable_warning;
use crate::principal::Rejection;
use crate::resources::{EnforcementMode, PathError};
use crate::token::Fingerprint;

/// What happens to a request that matches no mapped route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Unmapped {
    /// Refuse it with `403 Forbidden` (no UMA challenge: there is no resource to ask for).
    #[default]
    Deny,
    /// Let it through unchecked.
    Allow,
}

crate::error::named_setting!(Unmapped { Deny => "deny", Allow => "allow" });

impl Unmapped {
    /// The verdict on a request that matches no route, under `enforcement`.
    pub(crate) fn verdict(self, enforcement: Enforcement) -> Verdict {
        match self {
            Self::Allow => Verdict::Pass(Outcome::Unmapped),
            Self::Deny => enforcement.apply(Refusal::Unmapped),
        }
    }
}

/// How the layer answered one request. Recorded once per request, with the same value, as the
/// `outcome` label of `uma_decisions_total`, the `uma.decision` field of the `uma.authorize`
/// span and the `outcome` field of the DEBUG event `decided`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The RPT grants the request: through, with an [`UmaPrincipal`](crate::UmaPrincipal).
    Allowed,
    /// A public route: through without a token.
    Public,
    /// Enforcement is disabled, for the layer or the route: through unchecked.
    Disabled,
    /// Permissive mode let through a request that enforcing mode would have refused.
    Permissive,
    /// Nothing describes the request (no route matches, or the AS has no resource of the name
    /// the resolver gave): `403`, or through with [`Unmapped::Allow`] or in permissive mode.
    Unmapped,
    /// An unusable method or path spelling, malformed credentials, a refused method
    /// override or a claimed header under two spellings: `400`; or a body that a route
    /// pushing claims from the body cannot read as its upstream would: `415`.
    BadRequest,
    /// The route does not list the method: `405` with `Allow`.
    MethodNotAllowed,
    /// No RPT, or one that does not grant the request: `401` with a UMA challenge.
    Challenged,
    /// The AS could not help (introspection, resource lookup or ticket): `403` + `Warning`.
    Unreachable,
    /// Permission exchange: the AS refused the token any permission for the request: `403`
    /// without a ticket.
    Denied,
    /// The layer cannot decide as configured (a route pushes claims from the body, which no
    /// [`ClaimBodyLayer`](crate::resources::ClaimBodyLayer) read): `500`.
    Misconfigured,
}

impl Outcome {
    /// Every outcome, in the order of the metric table.
    pub(crate) const ALL: [Self; 11] = [
        Self::Allowed,
        Self::Challenged,
        Self::Unreachable,
        Self::Unmapped,
        Self::BadRequest,
        Self::MethodNotAllowed,
        Self::Public,
        Self::Permissive,
        Self::Disabled,
        Self::Denied,
        Self::Misconfigured,
    ];

    /// The position of this outcome in [`ALL`](Self::ALL) (every outcome named: a new one
    /// cannot be left out).
    pub(crate) const fn index(self) -> usize {
        match self {
            Self::Allowed => 0,
            Self::Challenged => 1,
            Self::Unreachable => 2,
            Self::Unmapped => 3,
            Self::BadRequest => 4,
            Self::MethodNotAllowed => 5,
            Self::Public => 6,
            Self::Permissive => 7,
            Self::Disabled => 8,
            Self::Denied => 9,
            Self::Misconfigured => 10,
        }
    }

    /// The label value (a contract: dashboards and alerts match on it).
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Public => "public",
            Self::Disabled => "disabled",
            Self::Permissive => "permissive",
            Self::Unmapped => "unmapped",
            Self::BadRequest => "bad_request",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Challenged => "challenged",
            Self::Unreachable => "unreachable",
            Self::Denied => "denied",
            Self::Misconfigured => "misconfigured",
        }
    }
}

/// Why the checks refused a request, before the enforcement mode is applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// An unusable method or path spelling, malformed credentials: `400`.
    BadRequest,
    /// Nothing describes the request: `403`.
    Unmapped,
    /// The route does not list the method: `405` with these methods in `Allow`.
    MethodNotAllowed(Vec<Method>),
    /// No RPT, or one that does not grant the request: the pipeline asks the AS for a ticket,
    /// which makes it [`Challenged`](Self::Challenged) or [`Unreachable`](Self::Unreachable).
    Unauthorised,
    /// `401` with this `WWW-Authenticate` challenge.
    Challenged(HeaderValue),
    /// The AS could not help: `403` + `Warning`.
    Unreachable,
    /// Permission exchange refused: `403` without a ticket.
    Denied,
    /// The layer cannot decide as configured: `500`.
    Misconfigured,
    /// A route pushes claims from the body, which the upstream may read otherwise than the
    /// claims: `415`.
    UnsupportedMediaType,
}

impl Refusal {
    fn outcome(&self) -> Outcome {
        match self {
            Self::BadRequest | Self::UnsupportedMediaType => Outcome::BadRequest,
            Self::Unmapped => Outcome::Unmapped,
            Self::MethodNotAllowed(_) => Outcome::MethodNotAllowed,
            Self::Unauthorised | Self::Challenged(_) => Outcome::Challenged,
            Self::Unreachable => Outcome::Unreachable,
            Self::Denied => Outcome::Denied,
            Self::Misconfigured => Outcome::Misconfigured,
        }
    }

    /// The layer's response: an empty body, `Cache-Control: no-store`, the [`Rejection`] in
    /// the extensions.
    fn into_response<R: Default>(self) -> Response<R> {
        let (status, rejection) = match &self {
            Self::BadRequest => (StatusCode::BAD_REQUEST, Rejection::BadRequest),
            Self::Unmapped => (StatusCode::FORBIDDEN, Rejection::Unmapped),
            Self::Denied => (StatusCode::FORBIDDEN, Rejection::Denied),
            Self::Misconfigured => (StatusCode::INTERNAL_SERVER_ERROR, Rejection::Misconfigured),
            Self::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                Rejection::UnsupportedMediaType,
            ),
            Self::MethodNotAllowed(_) => {
                (StatusCode::METHOD_NOT_ALLOWED, Rejection::MethodNotAllowed)
            }
            Self::Challenged(_) => (StatusCode::UNAUTHORIZED, Rejection::Challenged),
            // Not reached: the pipeline asks for a ticket first. Without one, fail closed.
            Self::Unauthorised | Self::Unreachable => {
                (StatusCode::FORBIDDEN, Rejection::AsUnreachable)
            }
        };
        match self {
            Self::Challenged(challenge) => layer_response(status, rejection, Some(challenge)),
            // RFC 9110 §15.5.6: the route's methods. Methods are tokens, so the list is always
            // a valid header value.
            Self::MethodNotAllowed(allow) => {
                let mut resp = layer_response(status, rejection, None);
                let list: Vec<&str> = allow.iter().map(Method::as_str).collect();
                if let Ok(value) = HeaderValue::from_str(&list.join(", ")) {
                    resp.headers_mut().insert(http::header::ALLOW, value);
                }
                resp
            }
            _ => layer_response(status, rejection, None),
        }
    }
}

/// A response the layer (or the guard of [`UmaRouter`](crate::axum::UmaRouter)) makes
/// itself: `status`, an empty body, the `challenge` in `WWW-Authenticate`, `Warning: 199` for
/// [`Rejection::AsUnreachable`], `Cache-Control: no-store`, and the rejection in the
/// extensions.
pub(crate) fn layer_response<R: Default>(
    status: StatusCode,
    rejection: Rejection,
    challenge: Option<HeaderValue>,
) -> Response<R> {
    let mut resp = Response::new(R::default());
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    if let Some(challenge) = challenge {
        headers.insert(http::header::WWW_AUTHENTICATE, challenge);
    }
    if rejection == Rejection::AsUnreachable {
        headers.insert(http::header::WARNING, unreachable_warning());
    }
    headers.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    resp.extensions_mut().insert(rejection);
    resp
}

/// What becomes of a request: through with this outcome, or refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Pass(Outcome),
    Refuse(Refusal),
}

impl Verdict {
    fn outcome(&self) -> Outcome {
        match self {
            Self::Pass(outcome) => *outcome,
            Self::Refuse(refusal) => refusal.outcome(),
        }
    }
}

/// The enforcement mode that applies to one request. The only code that reads an
/// [`EnforcementMode`] on the request path: the pipeline asks it whether to check at all
/// ([`unchecked`](Self::unchecked)) and what becomes of each refusal
/// ([`apply`](Self::apply)), so what a mode lets through is read on one screen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Enforcement(EnforcementMode);

impl Enforcement {
    /// The mode of a request on a route: the route's override, or the layer's mode.
    pub(crate) fn of(layer: EnforcementMode, route: Option<EnforcementMode>) -> Self {
        Self(route.unwrap_or(layer))
    }

    /// The mode of a request whose route cannot be known (a refused method or path
    /// spelling): enforcing when some route may be enforcing, else the layer's mode.
    pub(crate) fn unrouted(layer: EnforcementMode, some_route_may_enforce: bool) -> Self {
        if some_route_may_enforce {
            Self(EnforcementMode::Enforcing)
        } else {
            Self(layer)
        }
    }

    /// The mode of the requests a route decides, for the guard of
    /// [`UmaRouter`](crate::axum::UmaRouter): the route's override, or the layer's mode; a
    /// permissive route with a resolver counts as enforcing, since the resolver may return an
    /// `Enforcing` override.
    #[cfg(feature = "axum")]
    pub(crate) fn of_guarded_route(
        layer: EnforcementMode,
        route: Option<EnforcementMode>,
        has_resolver: bool,
    ) -> Self {
        match route.unwrap_or(layer) {
            EnforcementMode::Permissive if has_resolver => Self(EnforcementMode::Enforcing),
            mode => Self(mode),
        }
    }

    /// Whether refusals are enforced: `false` in permissive mode (and when disabled), where a
    /// refusal is logged and the request let through.
    #[cfg(feature = "axum")]
    pub(crate) fn enforces(self) -> bool {
        self.0 == EnforcementMode::Enforcing
    }

    /// `Some(Outcome::Disabled)` when the request is let through unchecked: no token is read
    /// and the AS is not called.
    pub(crate) fn unchecked(self) -> Option<Outcome> {
        (self.0 == EnforcementMode::Disabled).then_some(Outcome::Disabled)
    }

    /// What becomes of a request the checks refused: refused when enforcing; let through when
    /// permissive (as `unmapped` when nothing describes it, else as `permissive`, and without
    /// asking the AS for a ticket); let through as `disabled` when disabled (a route that
    /// disables enforcement but does not list the method).
    pub(crate) fn apply(self, refusal: Refusal) -> Verdict {
        match self.0 {
            EnforcementMode::Enforcing => Verdict::Refuse(refusal),
            EnforcementMode::Permissive if refusal == Refusal::Unmapped => {
                Verdict::Pass(Outcome::Unmapped)
            }
            EnforcementMode::Permissive => Verdict::Pass(Outcome::Permissive),
            EnforcementMode::Disabled => Verdict::Pass(Outcome::Disabled),
        }
    }
}

/// Why a request ended as it did: a short reason (`granted`, `no_token`,
/// `insufficient_scope`, `no_route`, `introspection_failed`, …) and, for a failure, what
/// went wrong.
pub(crate) struct Why {
    reason: &'static str,
    detail: Option<Detail>,
}

/// What went wrong, for the `error` field of the decision event.
enum Detail {
    Text(&'static str),
    Path(PathError),
    Error(Box<dyn fmt::Display + Send + Sync>),
}

impl fmt::Display for Detail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Text(text) => f.write_str(text),
            Self::Path(e) => e.fmt(f),
            Self::Error(e) => e.fmt(f),
        }
    }
}

impl Why {
    pub(crate) fn new(reason: &'static str) -> Self {
        Self {
            reason,
            detail: None,
        }
    }

    /// A refused spelling of the method or path.
    pub(crate) fn path(e: PathError) -> Self {
        Self {
            reason: "unusable_request",
            detail: Some(Detail::Path(e)),
        }
    }

    pub(crate) fn text(mut self, text: &'static str) -> Self {
        self.detail = Some(Detail::Text(text));
        self
    }

    pub(crate) fn error(mut self, e: impl fmt::Display + Send + Sync + 'static) -> Self {
        self.detail = Some(Detail::Error(Box::new(e)));
        self
    }
}

/// What a request's record says besides its outcome; each part is filled in once known.
#[derive(Default)]
pub(crate) struct Facts<'a> {
    /// The resource's id, or its name while no id is known.
    pub(crate) resource: Option<&'a str>,
    /// Whether `resource` is the id.
    pub(crate) resource_is_id: bool,
    pub(crate) scopes: &'a [String],
    pub(crate) token: Option<Fingerprint>,
    pub(crate) cache: Option<CacheSource>,
}

/// Records how a request ended, once: the `uma.authorize` span's fields, the
/// `uma_decisions_total` counter (`allowed`: the layer's, for allowed decisions) and a DEBUG event `decided` (never the token: its
/// fingerprint); then makes the response of a refusal.
///
/// # Errors
///
/// The response of a refused request.
pub(crate) fn conclude<R: Default>(
    meter: &crate::metrics::DecisionMeter,
    span: &Span,
    method: &Method,
    path: &str,
    facts: &Facts<'_>,
    verdict: Verdict,
    why: &Why,
) -> Result<(), Response<R>> {
    let outcome = verdict.outcome();
    crate::metrics::decision(outcome, meter);
    tracing::debug!(
        parent: span,
        method = %method,
        path,
        resource = facts.resource,
        scopes = ?facts.scopes,
        outcome = outcome.as_str(),
        tenant = meter.tenant_name(),
        reason = why.reason,
        token = facts.token.map(field::display),
        cache = facts.cache.map(CacheSource::as_str),
        error = why.detail.as_ref().map(field::display),
        "decided"
    );
    // After the event, whose own fields say the same: a log line shows them once. Skipped
    // when no subscriber wants the span (each record would look its field up by name).
    if !span.is_disabled() {
        record_on(span, facts, outcome);
    }
    match verdict {
        Verdict::Pass(_) => Ok(()),
        Verdict::Refuse(refusal) => Err(refusal.into_response()),
    }
}

/// The span fields of a request's record.
fn record_on(span: &Span, facts: &Facts<'_>, outcome: Outcome) {
    if facts.resource_is_id {
        span.record("uma.resource_id", facts.resource);
    }
    if !facts.scopes.is_empty() {
        span.record("uma.scopes", field::debug(facts.scopes));
    }
    if let Some(token) = facts.token {
        span.record("token.fingerprint", field::display(token));
    }
    if let Some(source) = facts.cache {
        span.record("cache.hit", source.is_hit());
        span.record("cache.source", source.as_str());
    }
    span.record("uma.decision", outcome.as_str());
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODES: [EnforcementMode; 3] = [
        EnforcementMode::Enforcing,
        EnforcementMode::Permissive,
        EnforcementMode::Disabled,
    ];

    fn refusals() -> [Refusal; 5] {
        [
            Refusal::BadRequest,
            Refusal::Unmapped,
            Refusal::MethodNotAllowed(vec![Method::GET]),
            Refusal::Unauthorised,
            Refusal::Unreachable,
        ]
    }

    #[test]
    fn each_outcome_has_its_place_in_the_table() {
        for (i, o) in Outcome::ALL.iter().enumerate() {
            assert_eq!(o.index(), i, "{}", o.as_str());
        }
    }

    #[test]
    fn enforcing_refuses_every_refusal_and_checks() {
        let e = Enforcement(EnforcementMode::Enforcing);
        assert_eq!(e.unchecked(), None);
        for r in refusals() {
            assert_eq!(e.apply(r.clone()), Verdict::Refuse(r));
        }
    }

    #[test]
    fn permissive_checks_and_lets_every_refusal_through() {
        let e = Enforcement(EnforcementMode::Permissive);
        assert_eq!(e.unchecked(), None);
        for r in refusals() {
            let expected = if r == Refusal::Unmapped {
                Outcome::Unmapped
            } else {
                Outcome::Permissive
            };
            assert_eq!(e.apply(r), Verdict::Pass(expected));
        }
    }

    #[test]
    fn disabled_checks_nothing_and_lets_everything_through() {
        let e = Enforcement(EnforcementMode::Disabled);
        assert_eq!(e.unchecked(), Some(Outcome::Disabled));
        for r in refusals() {
            assert_eq!(e.apply(r), Verdict::Pass(Outcome::Disabled));
        }
    }

    #[test]
    fn a_route_override_wins_and_unrouted_requests_enforce_when_a_route_may() {
        for layer in MODES {
            for route in MODES {
                assert_eq!(Enforcement::of(layer, Some(route)), Enforcement(route));
            }
            assert_eq!(Enforcement::of(layer, None), Enforcement(layer));
            assert_eq!(
                Enforcement::unrouted(layer, true),
                Enforcement(EnforcementMode::Enforcing)
            );
            assert_eq!(Enforcement::unrouted(layer, false), Enforcement(layer));
        }
    }

    #[test]
    fn unmapped_requests_follow_the_setting_then_the_mode() {
        for mode in MODES {
            let e = Enforcement(mode);
            assert_eq!(Unmapped::Allow.verdict(e), Verdict::Pass(Outcome::Unmapped));
            assert_eq!(Unmapped::Deny.verdict(e), e.apply(Refusal::Unmapped));
        }
    }

    #[test]
    fn every_outcome_has_its_documented_label() {
        let labels: Vec<&str> = Outcome::ALL.iter().map(|o| o.as_str()).collect();
        assert_eq!(
            labels,
            [
                "allowed",
                "challenged",
                "unreachable",
                "unmapped",
                "bad_request",
                "method_not_allowed",
                "public",
                "permissive",
                "disabled",
                "denied",
                "misconfigured"
            ]
        );
    }

    #[test]
    fn responses_carry_status_headers_and_rejection() {
        let resp: Response<()> =
            Refusal::MethodNotAllowed(vec![Method::GET, Method::HEAD]).into_response();
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(resp.headers()[http::header::ALLOW], "GET, HEAD");
        assert_eq!(
            resp.extensions().get::<Rejection>(),
            Some(&Rejection::MethodNotAllowed)
        );
        let resp: Response<()> = Refusal::Unreachable.into_response();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        assert!(resp.headers().contains_key(http::header::WARNING));
        let challenge = HeaderValue::from_static("UMA realm=\"r\"");
        let resp: Response<()> = Refusal::Challenged(challenge.clone()).into_response();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(resp.headers()[http::header::WWW_AUTHENTICATE], challenge);
        assert!(!resp.headers().contains_key(http::header::WARNING));
        for resp in [
            Refusal::BadRequest.into_response::<()>(),
            Refusal::Unmapped.into_response(),
        ] {
            assert_eq!(resp.headers()[http::header::CACHE_CONTROL], "no-store");
            assert_eq!(resp.headers()[http::header::CONTENT_LENGTH], "0");
        }
    }
}
