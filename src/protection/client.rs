//! [`AsClient`]: the calls of the request path (introspection, permission tickets) and the
//! PAT-authenticated call that resource registration uses, each retried exactly once with a
//! fresh PAT after a 401.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tracing::Instrument;

use super::introspection::{self, By, IntrospectionAuth};
use super::pat::PatProvider;
use super::permission::{self, PermissionBody};
use super::token::Client;
use super::{CallError, Caller, Failure, MAX_AS_BODY};
use crate::gate::{AsEndpoint, Outcome};
use crate::introspect::Introspection;
use crate::token::{Pat, Rpt};

/// What an answer tells an endpoint's circuit breaker.
#[derive(Clone, Copy)]
enum Judged {
    /// What the parser makes of it: a transient failure counts against the endpoint.
    ByParse,
    /// Any answer shows that the endpoint is up.
    AnyAnswer,
}

/// The layer's client of the protection API.
#[derive(Debug)]
pub(crate) struct AsClient {
    pub(crate) caller: Caller,
    pub(crate) pat: Arc<PatProvider>,
    pub(crate) introspection_endpoint: String,
    pub(crate) permission_endpoint: String,
    pub(crate) introspection_auth: IntrospectionAuth,
    pub(crate) token_type_hint: Option<String>,
    pub(crate) permission_body: PermissionBody,
    /// The layer's client credentials (introspection with [`IntrospectionAuth::ClientCredentials`]).
    pub(crate) client: Client,
}

impl AsClient {
    /// Calls `endpoint` through the gate with a PAT-authenticated request built by `build`,
    /// and reads its answer with `parse`. On 401 the PAT is dropped, a new one obtained and the
    /// request sent once more; `parse` sees the final answer (docs/protocol.md §3.2). The
    /// gate's slot is held from sending to the end of reading (never while waiting for a PAT),
    /// and the outcome of `parse` is what the endpoint's circuit breaker records.
    ///
    /// This is the one place of the 401 → refresh → retry-once rule (see [`refuses_pat`]).
    pub(crate) async fn protected<T>(
        &self,
        endpoint: AsEndpoint,
        build: impl Fn(&Pat) -> Result<http::Request<Bytes>, Failure>,
        parse: impl FnOnce(http::Response<Bytes>) -> Result<T, Failure>,
    ) -> Result<T, CallError> {
        self.call_with_pat(endpoint, build, parse, Judged::ByParse)
            .await
    }

    /// [`protected`](Self::protected) for resource registration, where any answer counts as
    /// the endpoint being up for its circuit breaker, whatever `parse` makes of it (a refusal
    /// there is about one resource, not about the endpoint's health).
    pub(crate) async fn registration<T>(
        &self,
        build: impl Fn(&Pat) -> Result<http::Request<Bytes>, Failure>,
        parse: impl FnOnce(http::Response<Bytes>) -> Result<T, Failure>,
    ) -> Result<T, CallError> {
        let endpoint = AsEndpoint::ResourceRegistration;
        self.call_with_pat(endpoint, build, parse, Judged::AnyAnswer)
            .await
    }

    async fn call_with_pat<T>(
        &self,
        endpoint: AsEndpoint,
        build: impl Fn(&Pat) -> Result<http::Request<Bytes>, Failure>,
        parse: impl FnOnce(http::Response<Bytes>) -> Result<T, Failure>,
        judged: Judged,
    ) -> Result<T, CallError> {
        // An open circuit answers before any PAT is fetched for a call that would not be made.
        self.caller
            .gate()
            .check(endpoint)
            .map_err(|why| CallError::refused(endpoint, why))?;
        let no_pat = |e| CallError::no_pat(endpoint, e);
        let mut pat = self.pat.get().await.map_err(no_pat)?;
        let (mut answer, mut pass) = self
            .caller
            .exchange(endpoint, build(&pat), MAX_AS_BODY)
            .await?;
        if refuses_pat(&answer) {
            tracing::debug!("AS refused the PAT; refreshing it and retrying once");
            // The endpoint answered: it is up. The slot is not held while a PAT is fetched.
            pass.finish(Outcome::Answered);
            self.pat.invalidate(&pat);
            pat = self.pat.get().await.map_err(no_pat)?;
            (answer, pass) = self
                .caller
                .exchange(endpoint, build(&pat), MAX_AS_BODY)
                .await?;
        }
        let result =
            parse(answer).map_err(|f| CallError::new(endpoint, f).withholding(&[pat.secret()]));
        match judged {
            Judged::ByParse => pass.record(&result),
            Judged::AnyAnswer => pass.finish(Outcome::Answered),
        }
        result
    }

    /// Introspects `token`.
    pub(crate) async fn introspect(&self, token: &Rpt) -> Result<Introspection, CallError> {
        let span = tracing::debug_span!(
            "uma.introspect",
            token.fingerprint = %token.fingerprint(),
            http.status_code = tracing::field::Empty,
            uma.active = tracing::field::Empty,
            error = tracing::field::Empty,
        );
        let started = Instant::now();
        let result = self
            .introspect_inner(token)
            .instrument(span.clone())
            .await
            .map_err(|e| e.withholding(&[token.secret()]));
        let outcome = match &result {
            Ok(i) if i.is_active() => Some("active"),
            Ok(_) => Some("inactive"),
            // No call made: counted by the gate's own metrics.
            Err(e) => e.outcome(),
        };
        if let Some(outcome) = outcome {
            crate::metrics::introspection(outcome, started.elapsed().as_secs_f64());
        }
        match &result {
            Ok(i) => {
                span.record("uma.active", i.is_active());
            }
            Err(e) => {
                // Per call: DEBUG. The gate logs the first failure and summaries at WARN.
                let chain = crate::error::Chain(e);
                span.record("error", tracing::field::display(&chain));
                tracing::debug!(parent: &span, error = %chain, "introspection failed");
            }
        }
        result
    }

    async fn introspect_inner(&self, token: &Rpt) -> Result<Introspection, CallError> {
        let url = &self.introspection_endpoint;
        let hint = self.token_type_hint.as_deref();
        let endpoint = AsEndpoint::Introspection;
        match self.introspection_auth {
            IntrospectionAuth::BearerPat => {
                let build = |pat: &Pat| introspection::request(url, token, hint, By::Pat(pat));
                self.protected(endpoint, build, introspection::parse).await
            }
            IntrospectionAuth::ClientCredentials => {
                let request = introspection::request(url, token, hint, By::Client(&self.client));
                self.caller
                    .call(endpoint, request, MAX_AS_BODY, introspection::parse)
                    .await
                    .map_err(|e| e.withholding(&[self.client.secret.secret()]))
            }
        }
    }

    /// Asks the permission endpoint for one ticket covering `resource_id` and `scopes`.
    /// Tickets are never cached or reused (Grant §5.5).
    pub(crate) async fn ticket(
        &self,
        resource_id: &str,
        scopes: &[String],
        claims: &crate::resources::ClaimValues,
    ) -> Result<String, CallError> {
        let span = tracing::debug_span!(
            "uma.ticket",
            uma.resource_id = %resource_id,
            uma.scopes = ?scopes,
            http.status_code = tracing::field::Empty,
            error = tracing::field::Empty,
        );
        let result = self
            .ticket_inner(resource_id, scopes, claims)
            .instrument(span.clone())
            .await;
        match &result {
            Ok(_) => crate::metrics::ticket("issued"),
            Err(e) => {
                crate::metrics::ticket("failed");
                // Per call: DEBUG. The gate logs the first failure and summaries at WARN.
                let chain = crate::error::Chain(e);
                span.record("error", tracing::field::display(&chain));
                tracing::debug!(parent: &span, error = %chain, "could not obtain a permission ticket");
            }
        }
        result
    }

    async fn ticket_inner(
        &self,
        resource_id: &str,
        scopes: &[String],
        claims: &crate::resources::ClaimValues,
    ) -> Result<String, CallError> {
        let endpoint = AsEndpoint::Permission;
        let body = permission::body(resource_id, scopes, claims, self.permission_body)
            .map_err(|f| CallError::new(endpoint, f))?;
        let url = &self.permission_endpoint;
        let build = |pat: &Pat| permission::request(url, body.clone(), pat);
        self.protected(endpoint, build, permission::parse).await
    }
}

/// Whether an answer to a PAT-authenticated call refuses the PAT itself: `401` (RFC 6750
/// §3.1 `invalid_token`), or Keycloak's `403` with `{"error": "invalid_bearer_token"}`, its
/// answer to a PAT it cannot verify (expired, revoked, signed with a key it no longer has).
/// Any other `403` is about the request, not the PAT.
fn refuses_pat(answer: &http::Response<Bytes>) -> bool {
    match answer.status() {
        http::StatusCode::UNAUTHORIZED => true,
        http::StatusCode::FORBIDDEN => serde_json::from_slice::<serde_json::Value>(answer.body())
            .ok()
            .is_some_and(|v| {
                v.get("error").and_then(|e| e.as_str()) == Some("invalid_bearer_token")
            }),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::report::Cause;
    use crate::gate::{AsFailure, AsGate, GateSettings};
    use crate::protection::canned::{Canned, answer};
    use crate::protection::pat::PatConfig;
    use crate::protection::token::{ClientAuth, PatGrant};
    use crate::token::ClientSecret;

    /// A client whose AS is `canned`: the token endpoint issues `pat-N` for call N; `other`
    /// answers every other call.
    fn client(
        other: impl Fn(&http::Request<Bytes>) -> (u16, &'static str) + Send + Sync + 'static,
    ) -> (AsClient, Canned) {
        let pats = std::sync::atomic::AtomicUsize::new(0);
        let canned = Canned::with(move |_, r| {
            if r.uri().path() == "/token" {
                let n = pats.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                let body = format!(r#"{{"access_token":"pat-{n}","token_type":"Bearer"}}"#);
                return Ok(answer(200, body));
            }
            let (status, body) = other(r);
            Ok(answer(status, body))
        });
        let gate = Arc::new(AsGate::new(
            GateSettings::default(),
            crate::clock::SystemClock::shared(),
            &[AsEndpoint::Token, AsEndpoint::Permission],
        ));
        let caller = Caller::new(canned.transport(), gate);
        let credentials = Client {
            id: "rs".to_owned(),
            secret: ClientSecret::new("rs-secret"),
            auth: ClientAuth::Basic,
        };
        let pat = Arc::new(PatProvider::new(
            caller.clone(),
            PatConfig {
                token_endpoint: "https://as.test/token".to_owned(),
                client: credentials.clone(),
                grant: PatGrant::ClientCredentials,
                scope: None,
            },
            crate::clock::SystemClock::shared(),
        ));
        let client = AsClient {
            caller,
            pat,
            introspection_endpoint: "https://as.test/introspect".to_owned(),
            permission_endpoint: "https://as.test/perm".to_owned(),
            introspection_auth: IntrospectionAuth::BearerPat,
            token_type_hint: None,
            permission_body: PermissionBody::Array,
            client: credentials,
        };
        (client, canned)
    }

    fn bearer(r: &http::Request<Bytes>) -> &str {
        r.headers()[http::header::AUTHORIZATION]
            .to_str()
            .expect("ascii")
    }

    /// A 401 to the PAT: a fresh PAT and exactly one retry, which succeeds.
    #[tokio::test]
    async fn a_401_refreshes_the_pat_and_retries_once() {
        let (client, canned) = client(|r| match bearer(r) {
            "Bearer pat-1" => (401, ""),
            _ => (201, r#"{"ticket":"t-1"}"#),
        });
        assert_eq!(
            client.ticket("r1", &[], &crate::resources::NO_CLAIMS).await,
            Ok("t-1".to_owned())
        );
        let paths: Vec<String> = canned
            .seen()
            .iter()
            .map(|r| r.uri().path().to_owned())
            .collect();
        assert_eq!(paths, ["/token", "/perm", "/token", "/perm"]);
    }

    /// Keycloak refuses a PAT it cannot verify with `403 invalid_bearer_token`: the same
    /// refresh and retry as a 401. Any other 403 is about the request and is not retried.
    #[tokio::test]
    async fn keycloaks_403_invalid_bearer_token_refreshes_the_pat() {
        let (refreshing, canned) = client(|r| match bearer(r) {
            "Bearer pat-1" => (403, r#"{"error":"invalid_bearer_token"}"#),
            _ => (201, r#"{"ticket":"t-1"}"#),
        });
        assert_eq!(
            refreshing
                .ticket("r1", &[], &crate::resources::NO_CLAIMS)
                .await,
            Ok("t-1".to_owned())
        );
        assert_eq!(canned.calls(), 4, "two PATs, two permission requests");

        let (refusing, canned) = client(|_| (403, r#"{"error":"access_denied"}"#));
        refusing
            .ticket("r1", &[], &crate::resources::NO_CLAIMS)
            .await
            .expect_err("refused");
        assert_eq!(
            canned.calls(),
            2,
            "one PAT, one permission request: no retry"
        );
    }

    /// A second 401 is an AS failure, not a loop; the circuit sees an endpoint that is up.
    #[tokio::test]
    async fn a_second_401_is_a_failure() {
        let (client, canned) = client(|_| (401, r#"{"error":"invalid_token"}"#));
        let e = client
            .ticket("r1", &[], &crate::resources::NO_CLAIMS)
            .await
            .expect_err("refused");
        assert_eq!(
            e.to_string(),
            "permission endpoint answered 401 invalid_token"
        );
        assert_eq!(e.cause(), Some(Cause::Status(401)));
        assert!(!e.cause().is_some_and(Cause::is_transient));
        assert_eq!(canned.calls(), 4, "two PATs, two permission requests");
    }

    /// No PAT: the call is not made, and the error says why the token endpoint failed.
    #[tokio::test]
    async fn no_pat_no_call() {
        let canned = Canned::new(|_| (401, r#"{"error":"invalid_client"}"#.to_owned()));
        let (mut client, _) = client(|_| (500, ""));
        let caller = Caller::new(canned.transport(), Arc::default());
        client.pat = Arc::new(PatProvider::new(
            caller.clone(),
            PatConfig {
                token_endpoint: "https://as.test/token".to_owned(),
                client: client.client.clone(),
                grant: PatGrant::ClientCredentials,
                scope: None,
            },
            crate::clock::SystemClock::shared(),
        ));
        client.caller = caller;
        let e = client
            .ticket("r1", &[], &crate::resources::NO_CLAIMS)
            .await
            .expect_err("no PAT");
        assert_eq!(
            crate::error::Chain(&e).to_string(),
            "no PAT could be obtained: token endpoint answered 401 invalid_client: check \
             client_id and the client secret"
        );
        assert_eq!(canned.calls(), 1, "only the token request");
    }
}
