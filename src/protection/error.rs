//! [`CallError`]: the one error of a call to the AS.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;

use super::Endpoint;
use crate::error::{Error, ErrorKind, snippet};
use crate::gate::report::Cause;
use crate::gate::{AsEndpoint, AsFailure, Refusal};

/// Why a call to the AS produced no usable answer. Never carries a token or a secret.
///
/// Cloneable (cheaply: the transport's own error is shared) because one failed call is shared
/// by every request coalesced onto it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CallError {
    endpoint: Endpoint,
    failure: Failure,
}

/// What went wrong with a call, whichever the endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Not made: the layer's cap on AS calls was reached, or the endpoint's circuit is open.
    NotCalled(Refusal),
    /// Not made: the request cannot be expressed (an unusable URL or credential).
    Unsendable(&'static str),
    /// The AS could not be reached (connection refused or reset, DNS, TLS, a broken body).
    Unreachable(Source),
    /// The AS did not answer within the transport's timeout.
    Timeout(Source),
    /// The answer's body is longer than the call's limit.
    TooLarge,
    /// The AS answered with a status the call does not accept (after one PAT refresh on 401).
    Status(Answer),
    /// The AS answered, but not with what the call needs.
    Unusable(Cow<'static, str>),
    /// No PAT could be had to authenticate the call: why the token endpoint failed.
    NoPat(Arc<CallError>),
}

/// The transport's own error behind [`Failure::Unreachable`] or [`Failure::Timeout`], kept as
/// the next link of the source chain. Equality ignores it (tests compare failures).
#[derive(Clone, Default)]
pub(crate) struct Source(Option<Arc<dyn std::error::Error + Send + Sync>>);

impl Source {
    pub(crate) fn new(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(Some(Arc::new(e)))
    }
}

impl PartialEq for Source {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Source {}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(e) => fmt::Debug::fmt(e, f),
            None => f.write_str("-"),
        }
    }
}

/// An answer with an unexpected status: the status, the AS's OAuth `error` code (RFC 6749
/// §5.2, FedAuthz §6; WSO2's `code`), what it wrote (its `error_description`, or a snippet of a
/// body that is not an OAuth error), and a hint at the usual cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    status: u16,
    code: Option<String>,
    said: Option<String>,
    hint: Option<&'static str>,
}

/// Members whose presence means a body holds a token: such a body is never quoted.
const TOKEN_MEMBERS: [&[u8]; 2] = [b"access_token", b"refresh_token"];

/// The error code of a permission (or resource) request naming a resource id the AS does not
/// know (FedAuthz §4.3).
pub(crate) const UNKNOWN_RESOURCE: &str = "invalid_resource_id";

/// The longest OAuth `error` code quoted; longer ones are not codes.
const MAX_CODE: usize = 64;

impl Answer {
    /// An answer with `status` and nothing more.
    pub(crate) fn bare(status: u16) -> Self {
        Self {
            status,
            code: None,
            said: None,
            hint: None,
        }
    }

    /// Reads an answer's status, error code and description. A body that names a token
    /// (`access_token`, `refresh_token`) is never quoted.
    pub(crate) fn read(answer: &http::Response<Bytes>) -> Self {
        Self::of(answer.status(), answer.body())
    }

    /// [`read`](Self::read) of an answer taken apart.
    pub(crate) fn of(status: http::StatusCode, body: &[u8]) -> Self {
        let mut out = Self::bare(status.as_u16());
        if let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) {
            let text = |keys: [&str; 2]| {
                keys.iter()
                    .find_map(|k| map.get(*k).and_then(Value::as_str))
                    .filter(|s| !s.is_empty())
            };
            out.code = text(["error", "code"])
                .filter(|c| c.len() <= MAX_CODE && c.bytes().all(|b| b.is_ascii_graphic()))
                .map(str::to_owned);
            out.said = text(["error_description", "description"]).map(|d| snippet(d.as_bytes()));
        }
        if out.code.is_none() && out.said.is_none() && !body.is_empty() {
            out.said = Some(snippet(body));
        }
        if TOKEN_MEMBERS
            .iter()
            .any(|t| body.windows(t.len()).any(|w| w == *t))
        {
            out.said = Some("[body withheld]".to_owned());
        }
        out
    }

    /// Without what the AS wrote: for calls that send a token the AS might echo.
    pub(crate) fn quiet(mut self) -> Self {
        self.said = None;
        self
    }

    /// With a hint at the usual cause of this answer.
    pub(crate) fn hint(mut self, hint: &'static str) -> Self {
        self.hint = Some(hint);
        self
    }

    /// The status.
    pub(crate) fn status(&self) -> u16 {
        self.status
    }

    /// The OAuth `error` code, if the AS sent one.
    pub(crate) fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }

    /// What the AS wrote (its `error_description`, or a snippet of the body), if quoted.
    pub(crate) fn said(&self) -> Option<&str> {
        self.said.as_deref()
    }

    /// Forgets any quoted text that contains `secret`.
    fn withhold(&mut self, secret: &str) {
        if secret.is_empty() {
            return;
        }
        if self.code.as_deref().is_some_and(|c| c.contains(secret)) {
            self.code = None;
        }
        if self.said.as_deref().is_some_and(|s| s.contains(secret)) {
            self.said = Some("[withheld]".to_owned());
        }
    }
}

impl fmt::Display for Answer {
    /// `401 invalid_client: check client_id and the client secret (client authentication
    /// failed)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.status)?;
        if let Some(code) = &self.code {
            write!(f, " {code}")?;
        }
        if let Some(hint) = self.hint {
            write!(f, ": {hint}")?;
        }
        if let Some(said) = &self.said {
            write!(f, " ({said})")?;
        }
        Ok(())
    }
}

impl CallError {
    pub(crate) fn new(endpoint: impl Into<Endpoint>, failure: Failure) -> Self {
        Self {
            endpoint: endpoint.into(),
            failure,
        }
    }

    /// The call to `endpoint` was not made, for `why`.
    pub(crate) fn refused(endpoint: AsEndpoint, why: Refusal) -> Self {
        Self::new(endpoint, Failure::NotCalled(why))
    }

    /// `endpoint` could not be reached (also: the call's task was lost).
    pub(crate) fn unreachable(endpoint: AsEndpoint) -> Self {
        Self::new(endpoint, Failure::Unreachable(Source::default()))
    }

    /// A call to `endpoint` could not be made for want of a PAT, because of `why`.
    pub(crate) fn no_pat(endpoint: AsEndpoint, why: Self) -> Self {
        Self::new(endpoint, Failure::NoPat(Arc::new(why)))
    }

    pub(crate) fn failure(&self) -> &Failure {
        &self.failure
    }

    /// The AS's answer when it says that the resource id of the request is not one it knows
    /// (`invalid_resource_id`, FedAuthz §4.3; Keycloak sends it too, with a `400`).
    pub(crate) fn unknown_resource(&self) -> Option<&Answer> {
        match &self.failure {
            Failure::Status(a) if a.code() == Some(UNKNOWN_RESOURCE) => Some(a),
            _ => None,
        }
    }

    /// Forgets any text the AS wrote that contains one of `secrets` (an AS that echoes what it
    /// was sent must not put a secret into a message or a log).
    pub(crate) fn withholding(mut self, secrets: &[&str]) -> Self {
        if let Failure::Status(answer) = &mut self.failure {
            for secret in secrets {
                answer.withhold(secret);
            }
        }
        self
    }

    /// Whether trying again later may succeed: the AS could not be reached, timed out,
    /// answered too much, answered with a server error or 429, or was not called (the cap, an
    /// open circuit); for want of a PAT, whether the PAT's failure is. An answer that is an
    /// error or unusable needs a change of configuration instead.
    ///
    /// The circuit breaker counts a little differently ([`AsFailure::cause`]): an unusable
    /// answer counts against the endpoint (it is misbehaving, stop calling it), although a
    /// retry would not fix it.
    pub(crate) fn is_transient(&self) -> bool {
        match &self.failure {
            Failure::NotCalled(_) | Failure::Unreachable(_) | Failure::Timeout(_) => true,
            Failure::TooLarge => true,
            Failure::Status(a) => a.status >= 500 || a.status == 429,
            Failure::Unsendable(_) | Failure::Unusable(_) => false,
            Failure::NoPat(why) => why.is_transient(),
        }
    }

    /// The `outcome` label of this failure in the introspection and JWKS metrics; `None` when
    /// no call was made (the gate counts those).
    pub(crate) fn outcome(&self) -> Option<&'static str> {
        match &self.failure {
            Failure::Unreachable(_) => Some("unreachable"),
            Failure::Timeout(_) => Some("timeout"),
            Failure::Status(_) => Some("status"),
            Failure::TooLarge | Failure::Unusable(_) => Some("unparsable"),
            Failure::NoPat(_) => Some("no_pat"),
            Failure::NotCalled(_) | Failure::Unsendable(_) => None,
        }
    }

    /// The public error of a set-up call that failed while `doing` something (`listing
    /// registered resources`), with this error as its source.
    pub(crate) fn into_error(self, doing: impl Into<String>) -> Error {
        let kind = match (&self.failure, self.endpoint) {
            (Failure::NoPat(_), _) => ErrorKind::Pat,
            (Failure::Unsendable(_), _) => ErrorKind::Config,
            (
                Failure::NotCalled(_)
                | Failure::Unreachable(_)
                | Failure::Timeout(_)
                | Failure::TooLarge,
                _,
            ) => ErrorKind::Transport,
            (_, Endpoint::Discovery) => ErrorKind::Discovery,
            (_, Endpoint::Gated(AsEndpoint::Token)) => ErrorKind::Pat,
            (_, Endpoint::Gated(AsEndpoint::ResourceRegistration)) => ErrorKind::Registration,
            (_, Endpoint::Gated(_)) => ErrorKind::Transport,
        };
        let transient = self.is_transient();
        Error::new(kind, doing)
            .transient(transient)
            .with_source(self)
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let endpoint = self.endpoint;
        match &self.failure {
            Failure::NotCalled(why) => write!(f, "{endpoint} not called: {why}"),
            Failure::Unsendable(why) => write!(f, "{endpoint} not called: {why}"),
            Failure::Unreachable(_) => write!(f, "{endpoint} unreachable"),
            Failure::Timeout(_) => write!(f, "{endpoint} timed out"),
            Failure::TooLarge => write!(f, "{endpoint} answered too large a body"),
            Failure::Status(answer) => write!(f, "{endpoint} answered {answer}"),
            Failure::Unusable(what) => write!(f, "{endpoint} answered {what}"),
            Failure::NoPat(_) => f.write_str("no PAT could be obtained"),
        }
    }
}

impl std::error::Error for CallError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.failure {
            Failure::Unreachable(t) | Failure::Timeout(t) => {
                t.0.as_deref()
                    .map(|e| e as &(dyn std::error::Error + 'static))
            }
            Failure::NoPat(why) => Some(why.as_ref()),
            _ => None,
        }
    }
}

impl AsFailure for CallError {
    /// An `invalid_resource_id` answer is about one resource, not about the endpoint: it
    /// neither counts nor is reported as a failure of the endpoint (the layer's recovery of
    /// forgotten resources logs it, with the AS's description).
    fn cause(&self) -> Option<Cause> {
        if self.unknown_resource().is_some() {
            return None;
        }
        match &self.failure {
            Failure::Unreachable(_) => Some(Cause::Unreachable),
            Failure::Timeout(_) => Some(Cause::Timeout),
            Failure::Status(a) => Some(Cause::Status(a.status)),
            Failure::TooLarge | Failure::Unusable(_) => Some(Cause::Unparsable),
            Failure::NotCalled(_) | Failure::Unsendable(_) | Failure::NoPat(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Chain;

    #[test]
    fn failures_tell_the_circuit_breaker_what_the_endpoint_did() {
        let at = |failure| CallError::new(AsEndpoint::Introspection, failure);
        for (failure, cause) in [
            (
                Failure::Unreachable(Source::default()),
                Some(Cause::Unreachable),
            ),
            (Failure::Timeout(Source::default()), Some(Cause::Timeout)),
            (Failure::Status(Answer::bare(503)), Some(Cause::Status(503))),
            (Failure::TooLarge, Some(Cause::Unparsable)),
            (Failure::Unusable("junk".into()), Some(Cause::Unparsable)),
            // The endpoint was not called: nothing to learn about it.
            (Failure::NotCalled(Refusal::Open), None),
            (Failure::Unsendable("url"), None),
        ] {
            assert_eq!(at(failure.clone()).cause(), cause, "{failure:?}");
        }
    }
    use crate::protection::canned::answer;

    #[test]
    fn answers_quote_the_oauth_error_or_a_snippet() {
        let a = Answer::read(&answer(
            401,
            r#"{"error":"invalid_client","error_description":"client authentication failed"}"#,
        ));
        assert_eq!(
            a.to_string(),
            "401 invalid_client (client authentication failed)"
        );
        assert_eq!(a.code(), Some("invalid_client"));
        let wso2 = Answer::read(&answer(
            400,
            r#"{"code":"invalid_request","description":"Resource scopes are missing"}"#,
        ));
        assert_eq!(
            wso2.to_string(),
            "400 invalid_request (Resource scopes are missing)"
        );
        assert_eq!(
            Answer::read(&answer(502, "<html>bad\ngateway</html>")).to_string(),
            "502 (<html>bad gateway</html>)"
        );
        assert_eq!(Answer::read(&answer(503, "")).to_string(), "503");
        // A code that is not one is not quoted.
        let long = format!(r#"{{"error":"{}"}}"#, "x".repeat(65));
        assert_eq!(Answer::read(&answer(400, long)).code(), None);
        assert_eq!(
            Answer::read(&answer(400, r#"{"error":"two words"}"#)).code(),
            None
        );
    }

    #[test]
    fn bodies_naming_a_token_are_withheld() {
        let a = Answer::read(&answer(
            400,
            r#"{"access_token":"eyJ-secret","token_type":"Bearer"}"#,
        ));
        assert_eq!(a.to_string(), "400 ([body withheld])");
        assert!(!a.to_string().contains("eyJ"));
    }

    #[test]
    fn echoed_secrets_are_withheld() {
        let e = CallError::new(
            AsEndpoint::Token,
            Failure::Status(Answer::read(&answer(
                401,
                r#"{"error":"invalid_client","error_description":"bad secret s3cr3t"}"#,
            ))),
        )
        .withholding(&["s3cr3t"]);
        assert_eq!(
            e.to_string(),
            "token endpoint answered 401 invalid_client ([withheld])"
        );
    }

    #[test]
    fn quiet_answers_keep_the_code_only() {
        let a = Answer::read(&answer(
            400,
            r#"{"error":"invalid_scope","error_description":"x"}"#,
        ));
        assert_eq!(a.quiet().to_string(), "400 invalid_scope");
    }

    /// Each level says one thing: the context, then the missing PAT, then the token
    /// endpoint's answer; a chain printer prints each once.
    #[test]
    fn the_chain_prints_each_cause_once() {
        let token = CallError::new(
            AsEndpoint::Token,
            Failure::Status(
                Answer::read(&answer(401, r#"{"error":"invalid_client"}"#))
                    .hint("check client_id and the client secret"),
            ),
        );
        let e = CallError::no_pat(AsEndpoint::ResourceRegistration, token)
            .into_error("listing registered resources");
        assert_eq!(e.kind(), ErrorKind::Pat);
        assert!(!e.is_transient());
        assert_eq!(e.to_string(), "listing registered resources");
        let first = std::error::Error::source(&e).expect("a source");
        assert_eq!(first.to_string(), "no PAT could be obtained");
        let second = first.source().expect("a second source");
        assert_eq!(
            second.to_string(),
            "token endpoint answered 401 invalid_client: check client_id and the client secret"
        );
        assert!(second.source().is_none());
        let chain = "listing registered resources: no PAT could be obtained: token endpoint \
                     answered 401 invalid_client: check client_id and the client secret";
        assert_eq!(format!("{e:#}"), chain);
        assert_eq!(Chain(&e).to_string(), chain);
        // An error repeated later keeps its chain.
        assert_eq!(format!("{:#}", e.repeat()), chain);
    }

    #[test]
    fn transience_and_breaker_causes() {
        let status = |s| CallError::new(AsEndpoint::Permission, Failure::Status(Answer::bare(s)));
        assert!(status(503).is_transient() && status(429).is_transient());
        assert!(!status(400).is_transient() && !status(401).is_transient());
        // An unknown resource says nothing about the endpoint.
        let unknown = CallError::new(
            AsEndpoint::Permission,
            Failure::Status(Answer::read(&answer(
                400,
                r#"{"error":"invalid_resource_id","error_description":"no such id"}"#,
            ))),
        );
        assert!(unknown.unknown_resource().is_some());
        assert_eq!(unknown.cause(), None);
        assert!(!unknown.is_transient());
        assert!(status(400).unknown_resource().is_none());
        let unusable = CallError::new(AsEndpoint::Token, Failure::Unusable("junk".into()));
        assert!(!unusable.is_transient());
        // The breaker counts an unusable answer as a failure of the endpoint.
        assert_eq!(unusable.cause(), Some(Cause::Unparsable));
        let not_called = CallError::refused(AsEndpoint::Token, Refusal::Open);
        assert!(not_called.is_transient());
        assert_eq!(not_called.cause(), None);
        let no_pat = CallError::no_pat(AsEndpoint::Introspection, status(503));
        assert!(no_pat.is_transient());
        assert_eq!(no_pat.cause(), None);
        assert_eq!(no_pat.outcome(), Some("no_pat"));
        assert_eq!(
            CallError::unreachable(AsEndpoint::Introspection)
                .into_error("x")
                .kind(),
            ErrorKind::Transport
        );
    }
}
