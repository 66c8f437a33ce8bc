//! The token endpoint, for the PAT (FedAuthz §1.3, RFC 6749 §4.4 and §4.3), and client
//! authentication (RFC 6749 §2.3.1): the request and the parsing of the answer.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use serde::Deserialize;

use super::{Answer, Failure};
use crate::error::snippet;
use crate::token::ClientSecret;

/// How the layer obtains its PAT.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PatGrant {
    /// `grant_type=client_credentials` with the layer's own client (standard, Keycloak).
    ClientCredentials,
    /// `grant_type=password` for a resource owner, so the PAT is bound to that user (WSO2,
    /// PingAM).
    Password {
        /// The resource owner's user name.
        username: String,
        /// The resource owner's password.
        password: ClientSecret,
    },
}

/// How the layer authenticates itself at the token endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ClientAuth {
    /// HTTP Basic (`client_secret_basic`).
    #[default]
    Basic,
    /// `client_id` and `client_secret` in the form body (`client_secret_post`).
    Post,
}

/// The layer's client credentials and how it presents them.
#[derive(Clone, Debug)]
pub(crate) struct Client {
    pub(crate) id: String,
    pub(crate) secret: ClientSecret,
    pub(crate) auth: ClientAuth,
}

impl Client {
    /// Adds the credentials to a form request: an HTTP Basic header, or `client_id` and
    /// `client_secret` at the end of `form` (RFC 6749 §2.3.1).
    pub(crate) fn authenticate<'a>(
        &'a self,
        form: &mut Vec<(&'a str, &'a str)>,
    ) -> Result<Option<(http::HeaderName, http::HeaderValue)>, Failure> {
        match self.auth {
            ClientAuth::Basic => {
                // RFC 6749 §2.3.1: the id and secret are form-urlencoded before Basic encoding.
                let pair = format!(
                    "{}:{}",
                    form_urlencode(&self.id),
                    form_urlencode(self.secret.secret())
                );
                let value = format!("Basic {}", STANDARD.encode(pair));
                super::sensitive(&value, "the client credentials cannot be sent in a header")
                    .map(Some)
            }
            ClientAuth::Post => {
                form.push(("client_id", &self.id));
                form.push(("client_secret", self.secret.secret()));
                Ok(None)
            }
        }
    }

    /// The secrets a message must never quote: the client secret, and a password grant's
    /// password.
    pub(crate) fn secrets<'a>(&'a self, grant: &'a PatGrant) -> [&'a str; 2] {
        let password = match grant {
            PatGrant::Password { password, .. } => password.secret(),
            PatGrant::ClientCredentials => "",
        };
        [self.secret.secret(), password]
    }
}

/// A `POST` of `form` to `url` as `application/x-www-form-urlencoded`, with the client's
/// credentials when `client` is given; `extra` headers are added.
pub(crate) fn form_post<'a>(
    url: &str,
    mut form: Vec<(&'a str, &'a str)>,
    client: Option<&'a Client>,
    extra: impl IntoIterator<Item = (http::HeaderName, http::HeaderValue)>,
) -> Result<http::Request<Bytes>, Failure> {
    let auth = match client {
        Some(c) => c.authenticate(&mut form)?,
        None => None,
    };
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let content_type = (
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    super::build(
        http::Method::POST,
        url,
        auth.into_iter().chain([content_type]).chain(extra),
        body,
    )
}

/// RFC 6749 §2.3.1: the client id and secret are form-urlencoded before Basic encoding.
fn form_urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The PAT request (FedAuthz §1.3): `grant` at `url`, asking for `scope` when given (Keycloak
/// checks a role instead, so it is sent none).
pub(crate) fn request(
    url: &str,
    client: &Client,
    grant: &PatGrant,
    scope: Option<&str>,
) -> Result<http::Request<Bytes>, Failure> {
    let mut form: Vec<(&str, &str)> = Vec::with_capacity(6);
    match grant {
        PatGrant::ClientCredentials => form.push(("grant_type", "client_credentials")),
        PatGrant::Password { username, password } => {
            form.push(("grant_type", "password"));
            form.push(("username", username));
            form.push(("password", password.secret()));
        }
    }
    if let Some(scope) = scope {
        form.push(("scope", scope));
    }
    form_post(url, form, Some(client), [])
}

/// A token endpoint's successful answer (RFC 6749 §5.1).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Issued {
    pub(crate) access_token: String,
    /// `expires_in`, when the AS gave a positive one.
    pub(crate) lifetime: Option<Duration>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    token_type: String,
    expires_in: Option<u64>,
}

/// Reads the token endpoint's answer to [`request`]: a bearer token (`token_type` in any
/// letter case, RFC 6749 §5.1) and its lifetime; or the error, with a hint at the usual
/// misconfiguration behind it (RFC 6749 §5.2).
pub(crate) fn parse(answer: http::Response<Bytes>, grant: &PatGrant) -> Result<Issued, Failure> {
    let (parts, body) = answer.into_parts();
    if !parts.status.is_success() {
        let refused = Answer::of(parts.status, &body);
        let hint = hint(&refused, grant);
        return Err(Failure::Status(match hint {
            Some(h) => refused.hint(h),
            None => refused,
        }));
    }
    let parsed: TokenResponse = serde_json::from_slice(&body)
        .map_err(|_| Failure::Unusable("with a body that is not a token response".into()))?;
    if !parsed.token_type.eq_ignore_ascii_case("bearer") {
        return Err(Failure::Unusable(
            format!(
                "with a \"{}\" token, not a bearer token",
                snippet(parsed.token_type.as_bytes())
            )
            .into(),
        ));
    }
    if parsed.access_token.is_empty() {
        return Err(Failure::Unusable("with an empty token".into()));
    }
    Ok(Issued {
        access_token: parsed.access_token,
        lifetime: parsed
            .expires_in
            .filter(|s| *s > 0)
            .map(Duration::from_secs),
    })
}

/// What usually causes a refusal of the PAT request.
fn hint(refused: &Answer, grant: &PatGrant) -> Option<&'static str> {
    let password = matches!(grant, PatGrant::Password { .. });
    // A 401 is the client authentication failing, whatever the code (Keycloak says
    // `unauthorized_client`), RFC 6749 §5.2.
    if refused.status() == 401 {
        return Some("check client_id and the client secret");
    }
    match refused.code()? {
        "invalid_client" => Some("check client_id and the client secret"),
        "invalid_grant" if password => Some("check the resource owner's username and password"),
        "unauthorized_client" if password => {
            Some("the AS does not let this client use the password grant")
        }
        "unauthorized_client" => {
            Some("the AS does not let this client use the client credentials grant")
        }
        "unsupported_grant_type" => Some("the AS does not offer this PAT grant"),
        "invalid_scope" => {
            Some("the AS refuses the PAT scope; set the one it expects with pat_scope")
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::AsEndpoint;
    use crate::protection::CallError;
    use crate::protection::canned::answer;

    fn client(auth: ClientAuth) -> Client {
        Client {
            id: "photo api".to_owned(),
            secret: ClientSecret::new("s3:cr&t"),
            auth,
        }
    }

    fn message(status: u16, body: &str, grant: &PatGrant) -> String {
        let failure = parse(answer(status, body.to_owned()), grant).expect_err("an error");
        CallError::new(AsEndpoint::Token, failure).to_string()
    }

    #[test]
    fn client_credentials_are_form_encoded() {
        assert_eq!(form_urlencode("a b:c"), "a+b%3Ac");
    }

    #[test]
    fn the_pat_request_with_basic_authentication() {
        let r = request(
            "https://as.test/token",
            &client(ClientAuth::Basic),
            &PatGrant::ClientCredentials,
            Some("uma_protection"),
        )
        .expect("a request");
        assert_eq!(r.method(), http::Method::POST);
        assert_eq!(r.uri(), "https://as.test/token");
        assert_eq!(
            r.headers()[http::header::CONTENT_TYPE],
            "application/x-www-form-urlencoded"
        );
        let auth = &r.headers()[http::header::AUTHORIZATION];
        assert!(auth.is_sensitive());
        let encoded = auth
            .to_str()
            .expect("ascii")
            .strip_prefix("Basic ")
            .expect("basic");
        let decoded = STANDARD.decode(encoded).expect("base64");
        assert_eq!(decoded, b"photo+api:s3%3Acr%26t");
        assert_eq!(
            r.body(),
            "grant_type=client_credentials&scope=uma_protection"
        );
    }

    #[test]
    fn the_pat_request_with_post_authentication_and_a_password_grant() {
        let grant = PatGrant::Password {
            username: "alice".to_owned(),
            password: ClientSecret::new("pw d"),
        };
        let r = request(
            "https://as.test/token",
            &client(ClientAuth::Post),
            &grant,
            None,
        )
        .expect("a request");
        assert!(r.headers().get(http::header::AUTHORIZATION).is_none());
        assert_eq!(
            r.body(),
            "grant_type=password&username=alice&password=pw+d\
             &client_id=photo+api&client_secret=s3%3Acr%26t"
        );
    }

    #[test]
    fn a_bearer_token_in_any_letter_case_is_issued() {
        let ok = |body: &str| parse(answer(200, body.to_owned()), &PatGrant::ClientCredentials);
        assert_eq!(
            ok(r#"{"access_token":"pat-1","token_type":"bearer","expires_in":300}"#),
            Ok(Issued {
                access_token: "pat-1".to_owned(),
                lifetime: Some(Duration::from_secs(300)),
            })
        );
        assert_eq!(
            ok(r#"{"access_token":"pat-1","token_type":"BEARER","expires_in":0}"#)
                .map(|i| i.lifetime),
            Ok(None)
        );
        // An `expires_in` too large for an `Instant` is still read (the provider copes).
        assert_eq!(
            ok(&format!(
                r#"{{"access_token":"p","token_type":"Bearer","expires_in":{}}}"#,
                u64::MAX
            ))
            .map(|i| i.lifetime),
            Ok(Some(Duration::from_secs(u64::MAX)))
        );
    }

    #[test]
    fn unusable_token_answers_are_refused() {
        let grant = PatGrant::ClientCredentials;
        assert_eq!(
            message(200, "<html>", &grant),
            "token endpoint answered with a body that is not a token response"
        );
        assert_eq!(
            message(200, r#"{"access_token":"x","token_type":"mac"}"#, &grant),
            "token endpoint answered with a \"mac\" token, not a bearer token"
        );
        assert_eq!(
            message(200, r#"{"access_token":"","token_type":"Bearer"}"#, &grant),
            "token endpoint answered with an empty token"
        );
    }

    /// The AS's cause reaches the message, with what to check.
    #[test]
    fn refusals_say_what_to_check() {
        let cc = PatGrant::ClientCredentials;
        assert_eq!(
            message(401, r#"{"error":"invalid_client"}"#, &cc),
            "token endpoint answered 401 invalid_client: check client_id and the client secret"
        );
        // Keycloak's answer to a wrong secret.
        assert_eq!(
            message(
                401,
                r#"{"error":"unauthorized_client","error_description":"Invalid client or Invalid client credentials"}"#,
                &cc
            ),
            "token endpoint answered 401 unauthorized_client: check client_id and the client \
             secret (Invalid client or Invalid client credentials)"
        );
        let password = PatGrant::Password {
            username: "alice".to_owned(),
            password: ClientSecret::new("pw"),
        };
        assert_eq!(
            message(400, r#"{"error":"invalid_grant"}"#, &password),
            "token endpoint answered 400 invalid_grant: check the resource owner's username and \
             password"
        );
        assert_eq!(
            message(400, r#"{"error":"invalid_scope"}"#, &cc),
            "token endpoint answered 400 invalid_scope: the AS refuses the PAT scope; set the \
             one it expects with pat_scope"
        );
        assert_eq!(
            message(503, "down for maintenance", &cc),
            "token endpoint answered 503 (down for maintenance)"
        );
        // A body holding a token is never quoted.
        assert_eq!(
            message(500, r#"{"access_token":"leak"}"#, &cc),
            "token endpoint answered 500 ([body withheld])"
        );
    }
}
