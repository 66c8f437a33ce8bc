//! The HTTP surface: the router and the helpers handlers share (form and JSON parsing, client
//! and PAT authentication).
//!
//! Handlers never use axum's rejecting extractors for input: they take the raw body and
//! headers and turn every problem into an OAuth error body with status 400 (or 401 for
//! authentication), so no input can produce axum's plain-text rejections, a 500 or a panic.

mod admin;
mod discovery;
mod grant;
mod introspect;
mod permission;
mod resource;
mod token;

use std::sync::Arc;

use axum::Router;
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use http::{HeaderMap, StatusCode, header};

use crate::dialect::{Dialect, Endpoint};
use crate::error::OAuthError;
use crate::faults::fault_layer;
use crate::model::unix_now_ms;
use crate::state::{Shared, TokenRecord};

/// Builds the router of one server: every endpoint at its dialect's paths, each behind the
/// fault layer of its [`Endpoint`].
pub(crate) fn router(shared: &Arc<Shared>) -> Router {
    let layout = &shared.layout;
    let endpoint = |e: Endpoint, router: Router<Arc<Shared>>| {
        router.layer(from_fn_with_state((Arc::clone(shared), e), fault_layer))
    };
    let route = |e: Endpoint, method_router: MethodRouter<Arc<Shared>>| {
        endpoint(
            e,
            Router::new().route(&layout.path(e), with_405(method_router)),
        )
    };

    let collection = layout.path(Endpoint::ResourceRegistration);
    let item = layout.resource_item_route();
    let registration = Router::new()
        .route(
            &collection,
            with_405(get(resource::list).post(resource::create)),
        )
        .route(
            &format!("{collection}/"),
            with_405(get(resource::list).post(resource::create)),
        )
        .route(
            &item,
            with_405(
                get(resource::read)
                    .put(resource::update)
                    .delete(resource::delete),
            ),
        )
        .route(
            &format!("{item}/"),
            with_405(
                get(resource::read)
                    .put(resource::update)
                    .delete(resource::delete),
            ),
        );
    let (approve, deny) = layout.admin_decision_routes();
    let admin = Router::new()
        .route(&layout.path(Endpoint::Admin), with_405(get(admin::list)))
        .route(&approve, with_405(post(admin::approve)))
        .route(&deny, with_405(post(admin::deny)));
    let mut discovery = Router::new().route(
        &layout.path(Endpoint::Discovery),
        with_405(get(discovery::discovery)),
    );
    if let Some(alias) = layout.alias(Endpoint::Discovery) {
        discovery = discovery.route(&alias, with_405(get(discovery::openid_configuration)));
    }

    let router = Router::new()
        .merge(endpoint(Endpoint::Discovery, discovery))
        .merge(route(Endpoint::Jwks, get(discovery::jwks)))
        .merge(route(Endpoint::Token, post(token::token)))
        .merge(route(Endpoint::Introspection, post(introspect::introspect)))
        .merge(route(Endpoint::Permission, post(permission::permission)))
        .merge(route(Endpoint::Revocation, post(introspect::revoke)))
        .merge(endpoint(Endpoint::ResourceRegistration, registration))
        .merge(endpoint(Endpoint::Admin, admin))
        .fallback(not_found)
        .with_state(Arc::clone(shared));
    if shared.dialect == Dialect::Keycloak {
        router.layer(axum::middleware::from_fn(keycloak_normalized_path))
    } else {
        router
    }
}

/// Keycloak refuses, before anything else, a path that is not in normal form because an
/// unreserved character is percent-encoded (`%2D` for `-`, RFC 3986 §6.2.2.2): 400
/// `missingNormalization`.
async fn keycloak_normalized_path(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if escapes_unreserved(req.uri().path()) {
        return OAuthError::new(StatusCode::BAD_REQUEST, "missingNormalization")
            .describe("Request path not normalized")
            .into_response();
    }
    next.run(req).await
}

/// Whether `path` has a `%XX` escape of an unreserved character (ALPHA, DIGIT, `-._~`).
fn escapes_unreserved(path: &str) -> bool {
    let b = path.as_bytes();
    b.windows(3).any(|w| {
        w[0] == b'%'
            && std::str::from_utf8(&w[1..])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .is_some_and(|c| c.is_ascii_alphanumeric() || b"-._~".contains(&c))
    })
}

/// Answers 405 with a JSON body (FedAuthz §3.2 `unsupported_method_type`) instead of axum's
/// empty one.
fn with_405(router: MethodRouter<Arc<Shared>>) -> MethodRouter<Arc<Shared>> {
    router.fallback(|| async {
        OAuthError::new(StatusCode::METHOD_NOT_ALLOWED, "unsupported_method_type")
            .describe("this method is not supported here")
            .into_response()
    })
}

async fn not_found() -> Response {
    OAuthError::not_found("no such endpoint").into_response()
}

/// Logs a client-caused rejection at DEBUG and turns it into a response.
fn reject(endpoint: Endpoint, error: OAuthError) -> Response {
    tracing::debug!(
        ?endpoint,
        error = error.code(),
        http.status_code = error.status().as_u16(),
        "request rejected"
    );
    error.into_response()
}

/// Whether the `Content-Type` is `essence` (parameters and case ignored).
fn content_type_is(headers: &HeaderMap, accept: impl Fn(&str) -> bool) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| accept(&essence.trim().to_ascii_lowercase()))
}

/// A parsed `application/x-www-form-urlencoded` body whose parameters each appear once.
#[derive(Debug)]
pub(crate) struct Form(Vec<(String, String)>);

impl Form {
    /// Parses the body; a wrong content type, bad encoding or repeated parameter is a 400.
    pub(crate) fn parse(headers: &HeaderMap, body: &[u8]) -> Result<Self, OAuthError> {
        Self::parse_repeatable(headers, body, &[])
    }

    /// Parses the body, allowing the parameters in `repeatable` to appear more than once
    /// (Keycloak's `permission`).
    pub(crate) fn parse_repeatable(
        headers: &HeaderMap,
        body: &[u8],
        repeatable: &[&str],
    ) -> Result<Self, OAuthError> {
        if !content_type_is(headers, |ct| ct == "application/x-www-form-urlencoded") {
            return Err(OAuthError::invalid_request(
                "the body must be application/x-www-form-urlencoded",
            ));
        }
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
            .map_err(|_| OAuthError::invalid_request("the form body is malformed"))?;
        for (i, (name, _)) in pairs.iter().enumerate() {
            if !repeatable.contains(&name.as_str()) && pairs[..i].iter().any(|(n, _)| n == name) {
                // RFC 6749 §3.1: request parameters must not be repeated.
                return Err(OAuthError::invalid_request(format!(
                    "parameter `{name}` is repeated"
                )));
            }
        }
        Ok(Self(pairs))
    }

    /// A parameter's value; an empty value counts as absent (RFC 6749 §3.1).
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, v)| n == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// A parameter's value as sent, empty or not (for Keycloak, which tells `x=` from no `x`).
    pub(crate) fn get_raw(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every non-empty value of a (repeatable) parameter, in order.
    pub(crate) fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(n, v)| n == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// A required parameter.
    pub(crate) fn required(&self, name: &str) -> Result<&str, OAuthError> {
        self.get(name)
            .ok_or_else(|| OAuthError::invalid_request(format!("parameter `{name}` is missing")))
    }
}

/// Parses a JSON body; a wrong content type or invalid JSON is a 400.
pub(crate) fn parse_json(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<serde_json::Value, OAuthError> {
    if !content_type_is(headers, |ct| {
        ct == "application/json" || (ct.starts_with("application/") && ct.ends_with("+json"))
    }) {
        return Err(OAuthError::invalid_request(
            "the body must be application/json",
        ));
    }
    serde_json::from_slice(body)
        .map_err(|e| OAuthError::invalid_request(format!("the JSON body is malformed: {e}")))
}

/// The `Authorization` header, parsed.
#[derive(Debug)]
enum Authorization {
    None,
    Bearer(String),
    Basic(String, String),
    /// Present but unusable (unknown scheme, bad encoding, repeated header).
    Unusable,
}

fn authorization(headers: &HeaderMap) -> Authorization {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Authorization::None;
    };
    if values.next().is_some() {
        return Authorization::Unusable;
    }
    let Ok(value) = value.to_str() else {
        return Authorization::Unusable;
    };
    let Some((scheme, credentials)) = value.trim().split_once(' ') else {
        return Authorization::Unusable;
    };
    let credentials = credentials.trim();
    if credentials.is_empty() {
        return Authorization::Unusable;
    }
    if scheme.eq_ignore_ascii_case("bearer") {
        Authorization::Bearer(credentials.to_owned())
    } else if scheme.eq_ignore_ascii_case("basic") {
        let decoded = STANDARD
            .decode(credentials)
            .or_else(|_| STANDARD_NO_PAD.decode(credentials))
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok());
        match decoded.as_deref().and_then(|d| d.split_once(':')) {
            Some((id, secret)) => Authorization::Basic(id.to_owned(), secret.to_owned()),
            None => Authorization::Unusable,
        }
    } else {
        Authorization::Unusable
    }
}

/// Compares secrets in time independent of where they differ.
fn secret_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Undoes the form-encoding RFC 6749 §2.3.1 applies to Basic credentials.
fn form_decode(s: &str) -> Option<String> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("v={s}"))
        .ok()
        .and_then(|mut pairs| pairs.pop())
        .map(|(_, v)| v)
}

/// Checks a name/password pair against a table, raw or form-decoded.
fn check_credentials(
    table: &std::collections::HashMap<String, String>,
    id: &str,
    secret: &str,
) -> Option<String> {
    let matches = |id: &str, secret: &str| {
        table
            .get(id)
            .is_some_and(|expected| secret_eq(expected, secret))
    };
    if matches(id, secret) {
        return Some(id.to_owned());
    }
    let (id, secret) = (form_decode(id)?, form_decode(secret)?);
    matches(&id, &secret).then_some(id)
}

/// Authenticates a client with HTTP Basic or `client_id`/`client_secret` in the form;
/// returns its id.
///
/// Keycloak also accepts what its client libraries send: a `client_id` in the body next to
/// matching Basic credentials, and body credentials next to an unrelated `Bearer` header.
fn authenticate_client(
    shared: &Shared,
    headers: &HeaderMap,
    form: &Form,
) -> Result<String, OAuthError> {
    let keycloak = shared.dialect == Dialect::Keycloak;
    let (body_id, body_secret) = (form.get("client_id"), form.get("client_secret"));
    let in_body = body_id.is_some() || body_secret.is_some();
    let from_body = || {
        let (Some(id), Some(secret)) = (body_id, body_secret) else {
            return Err(OAuthError::invalid_client(
                "client authentication is required",
                true,
            ));
        };
        check_credentials(&shared.settings.clients, id, secret)
            .ok_or_else(|| OAuthError::invalid_client("client authentication failed", false))
    };
    match authorization(headers) {
        Authorization::Basic(id, secret) => {
            let same_id = || {
                body_secret.is_none()
                    && body_id.is_some_and(|b| b == id || form_decode(&id).as_deref() == Some(b))
            };
            if in_body && !(keycloak && same_id()) {
                // RFC 6749 §2.3: one authentication method per request.
                return Err(OAuthError::invalid_request(
                    "use either HTTP Basic or client_id/client_secret, not both",
                ));
            }
            check_credentials(&shared.settings.clients, &id, &secret)
                .ok_or_else(|| OAuthError::invalid_client("client authentication failed", true))
        }
        Authorization::None => from_body(),
        Authorization::Bearer(_) if keycloak && in_body => from_body(),
        Authorization::Bearer(_) | Authorization::Unusable => Err(OAuthError::invalid_client(
            "client authentication needs HTTP Basic or client_id/client_secret",
            true,
        )),
    }
}

/// The subject and client of a valid PAT.
#[derive(Debug)]
pub(crate) struct PatInfo {
    pub(crate) sub: String,
    pub(crate) client_id: String,
}

/// What a bearer token authenticates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Protection {
    /// The resource registration API.
    Registration,
    /// The permission endpoint.
    Permission,
    /// Introspection by PAT (standard and WSO2).
    Introspection,
}

/// Authenticates a protection-API call by its bearer PAT (FedAuthz §1.3); applies the
/// `reject_next_pat` knob to requests that carry a valid PAT.
fn require_pat(
    shared: &Shared,
    headers: &HeaderMap,
    purpose: Protection,
) -> Result<PatInfo, OAuthError> {
    match authorization(headers) {
        Authorization::Bearer(token) => bearer_pat(shared, &token, purpose),
        Authorization::None => Err(pat_refused(shared, "a bearer PAT is required", true)),
        Authorization::Basic(..) | Authorization::Unusable => {
            Err(pat_refused(shared, "a bearer PAT is required", false))
        }
    }
}

/// The answer to a protection-API call whose bearer PAT is missing or not accepted: 401
/// `invalid_token` with a `Bearer` challenge (RFC 6750 §3.1), or, as Keycloak answers a
/// missing, expired, revoked or badly signed token, 403 `invalid_bearer_token`.
fn pat_refused(shared: &Shared, description: &str, missing: bool) -> OAuthError {
    if shared.dialect == Dialect::Keycloak {
        OAuthError::new(StatusCode::FORBIDDEN, "invalid_bearer_token")
            .describe("Could not obtain bearer access_token from request.")
    } else {
        OAuthError::invalid_token(description, missing)
    }
}

/// Checks a bearer token for `purpose`, per dialect:
///
/// * standard: an active access token with `uma_protection`;
/// * Keycloak: the same for registration (a token without it → 403 `invalid_scope`
///   "Requires uma_protection scope."), any active access token at the permission endpoint;
/// * WSO2: an active `uma_protection` token issued to a user (password grant) for
///   registration and permissions — a client-credentials PAT has no resource owner → 401.
fn bearer_pat(shared: &Shared, token: &str, purpose: Protection) -> Result<PatInfo, OAuthError> {
    let info = match shared.store().tokens.get(token) {
        Some(TokenRecord::Access(access)) if access.is_active_at(unix_now_ms()) => {
            let keycloak = shared.dialect == Dialect::Keycloak;
            let accepted = access.is_pat() || (keycloak && purpose == Protection::Permission);
            if !accepted {
                if keycloak {
                    return Err(OAuthError::new(StatusCode::FORBIDDEN, "invalid_scope")
                        .describe("Requires uma_protection scope."));
                }
                return Err(OAuthError::invalid_token(
                    "the token lacks the uma_protection scope",
                    false,
                ));
            }
            if shared.dialect == Dialect::Wso2
                && purpose != Protection::Introspection
                && !access.user
            {
                return Err(OAuthError::invalid_token(
                    "the PAT must belong to a resource owner (a user's password grant)",
                    false,
                ));
            }
            PatInfo {
                sub: access.sub.clone(),
                client_id: access.client_id.clone(),
            }
        }
        _ => {
            return Err(pat_refused(
                shared,
                "the PAT is unknown, expired or revoked",
                false,
            ));
        }
    };
    if shared.faults.take_pat_rejection() {
        tracing::debug!("rejecting a valid PAT (fault knob)");
        return Err(pat_refused(
            shared,
            "the PAT was rejected (injected fault)",
            false,
        ));
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn escaped_unreserved_characters_are_not_normal() {
        assert!(escapes_unreserved(
            "/realms/r/authz/protection/resource_set/a%2Db"
        ));
        assert!(escapes_unreserved("/x/%61"));
        assert!(escapes_unreserved("/x/%7e"));
        assert!(!escapes_unreserved("/x/a-b"));
        assert!(!escapes_unreserved("/x/a%20b%2F"));
        assert!(!escapes_unreserved("/x/%zz%"));
    }

    #[test]
    fn authorization_parsing() {
        assert!(matches!(authorization(&headers(&[])), Authorization::None));
        assert!(matches!(
            authorization(&headers(&[("authorization", "bearer abc")])),
            Authorization::Bearer(t) if t == "abc"
        ));
        assert!(matches!(
            authorization(&headers(&[("authorization", "Basic YTpiOmM=")])),
            Authorization::Basic(a, b) if a == "a" && b == "b:c"
        ));
        assert!(matches!(
            authorization(&headers(&[("authorization", "Bearer")])),
            Authorization::Unusable
        ));
        assert!(matches!(
            authorization(&headers(&[("authorization", "Basic !!!")])),
            Authorization::Unusable
        ));
        assert!(matches!(
            authorization(&headers(&[
                ("authorization", "Bearer a"),
                ("authorization", "Bearer b")
            ])),
            Authorization::Unusable
        ));
    }

    #[test]
    fn forms_reject_wrong_type_and_repeats_and_treat_empty_as_absent() {
        let form_type = headers(&[(
            "content-type",
            "application/x-www-form-urlencoded; charset=UTF-8",
        )]);
        let form = Form::parse(&form_type, b"a=1&b=").unwrap();
        assert_eq!(form.get("a"), Some("1"));
        assert_eq!(form.get("b"), None);
        assert!(form.required("b").is_err());
        assert!(Form::parse(&form_type, b"a=1&a=2").is_err());
        let repeated = Form::parse_repeatable(&form_type, b"p=1&p=&p=2&a=x", &["p"]).unwrap();
        assert_eq!(repeated.all("p"), ["1", "2"]);
        assert!(Form::parse_repeatable(&form_type, b"p=1&a=1&a=2", &["p"]).is_err());
        assert!(Form::parse(&headers(&[("content-type", "application/json")]), b"a=1").is_err());
        assert!(Form::parse(&headers(&[]), b"a=1").is_err());
    }

    #[test]
    fn credentials_compare_raw_then_form_decoded() {
        let table = [("a b".to_owned(), "p&q".to_owned())].into_iter().collect();
        assert_eq!(
            check_credentials(&table, "a b", "p&q").as_deref(),
            Some("a b")
        );
        assert_eq!(
            check_credentials(&table, "a+b", "p%26q").as_deref(),
            Some("a b")
        );
        assert_eq!(check_credentials(&table, "a b", "p&r"), None);
        assert!(secret_eq("abc", "abc"));
        assert!(!secret_eq("abc", "abd"));
        assert!(!secret_eq("abc", "ab"));
    }
}
