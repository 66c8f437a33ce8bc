//! The introspection endpoint (RFC 7662 §2, FedAuthz §5): the request and the parsing of the
//! answer.

use bytes::Bytes;

use super::token::{Client, form_post};
use super::{Failure, accept_json, bearer, ok_body};
use crate::introspect::Introspection;
use crate::token::{Pat, Rpt};

/// How the layer authenticates itself at the introspection endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum IntrospectionAuth {
    /// The PAT as a bearer token (FedAuthz §5; standard, WSO2, Janssen, PingAM).
    #[default]
    BearerPat,
    /// The layer's client credentials with HTTP Basic (Keycloak, docs/protocol.md §7.3).
    ClientCredentials,
}

/// Who the introspection request is from.
#[derive(Clone, Copy)]
pub(crate) enum By<'a> {
    /// The PAT as a bearer token.
    Pat(&'a Pat),
    /// The layer's client credentials.
    Client(&'a Client),
}

/// A `POST` of `token` (and the hint, when set) to `url` as a form (RFC 7662 §2.1),
/// authenticated as `by`.
pub(crate) fn request(
    url: &str,
    token: &Rpt,
    hint: Option<&str>,
    by: By<'_>,
) -> Result<http::Request<Bytes>, Failure> {
    let mut form: Vec<(&str, &str)> = vec![("token", token.secret())];
    if let Some(hint) = hint {
        form.push(("token_type_hint", hint));
    }
    match by {
        By::Pat(pat) => form_post(url, form, None, [bearer(pat.secret())?, accept_json()]),
        By::Client(client) => form_post(url, form, Some(client), [accept_json()]),
    }
}

/// Reads the answer: `200` with an introspection response (RFC 7662 §2.2).
pub(crate) fn parse(answer: http::Response<Bytes>) -> Result<Introspection, Failure> {
    let body = ok_body(answer, &[http::StatusCode::OK])?;
    Introspection::from_json(&body)
        .map_err(|_| Failure::Unusable("with a body that is not an introspection response".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::AsEndpoint;
    use crate::protection::CallError;
    use crate::protection::canned::answer;
    use crate::protection::token::ClientAuth;
    use crate::token::ClientSecret;

    #[test]
    fn with_the_pat_as_bearer() {
        let r = request(
            "https://as.test/introspect",
            &Rpt::new("rpt 1"),
            Some("requesting_party_token"),
            By::Pat(&Pat::new("pat-1")),
        )
        .expect("a request");
        assert_eq!(r.method(), http::Method::POST);
        assert_eq!(r.headers()[http::header::AUTHORIZATION], "Bearer pat-1");
        assert!(r.headers()[http::header::AUTHORIZATION].is_sensitive());
        assert_eq!(r.headers()[http::header::ACCEPT], "application/json");
        assert_eq!(
            r.body(),
            "token=rpt+1&token_type_hint=requesting_party_token"
        );
    }

    #[test]
    fn with_client_credentials_in_the_form() {
        let client = Client {
            id: "rs".to_owned(),
            secret: ClientSecret::new("s"),
            auth: ClientAuth::Post,
        };
        let r = request(
            "https://as.test/introspect",
            &Rpt::new("t"),
            None,
            By::Client(&client),
        )
        .expect("a request");
        assert!(r.headers().get(http::header::AUTHORIZATION).is_none());
        assert_eq!(r.body(), "token=t&client_id=rs&client_secret=s");
    }

    #[test]
    fn answers() {
        let i = parse(answer(200, r#"{"active":true,"permissions":[]}"#)).expect("parses");
        assert!(i.is_active());
        assert!(
            !parse(answer(200, r#"{"active":false}"#))
                .expect("parses")
                .is_active()
        );
        let message = |status, body: &'static str| {
            let f = parse(answer(status, body)).expect_err("an error");
            CallError::new(AsEndpoint::Introspection, f).to_string()
        };
        assert_eq!(
            message(200, "<html>"),
            "introspection endpoint answered with a body that is not an introspection response"
        );
        // The request carried a token: what the AS wrote is not quoted, its code is.
        assert_eq!(
            message(
                400,
                r#"{"error":"invalid_request","error_description":"token rpt-1"}"#
            ),
            "introspection endpoint answered 400 invalid_request"
        );
        assert_eq!(message(201, "{}"), "introspection endpoint answered 201");
    }
}
