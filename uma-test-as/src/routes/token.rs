//! `POST /token`: `client_credentials` and `password` grants (PATs, access tokens, ID
//! tokens); the uma-ticket grant lives in [`super::grant`].
//!
//! Every grant requires client authentication (HTTP Basic or `client_id`/`client_secret` in
//! the body); all clients are confidential. Keycloak also lets the uma-ticket grant be
//! authenticated by a user's access token as `Bearer` (docs/protocol.md §9.2): the client is the
//! token's client and the requesting party its user.
//!
//! Dialect differences: Keycloak answers `token_type: "bearer"` (lower case, docs/protocol.md
//! §3.3) plus `refresh_expires_in: 0` and `not-before-policy: 0`, issues JWT access tokens, and
//! ignores `scope` on the client-credentials grant (every client-credentials token is a PAT:
//! Keycloak checks a client role, not a scope); WSO2 issues UUIDs.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use serde_json::{Map, Value};

use super::{Authorization, Form, authenticate_client, authorization, check_credentials, reject};
use crate::dialect::names::{OPENID, UMA_PROTECTION, UMA_TICKET_GRANT};
use crate::dialect::{Dialect, Endpoint};
use crate::error::{OAuthError, json_response};
use crate::model::unix_now_ms;
use crate::state::{Shared, TokenRecord, expires_in};

/// Who asks for a token.
#[derive(Debug)]
pub(super) struct Caller {
    /// The authenticated client.
    pub(super) client_id: String,
    /// The user of the access token that authenticated the request (Keycloak's bearer
    /// authentication of the uma-ticket grant).
    pub(super) user: Option<String>,
}

/// The token endpoint.
pub(super) async fn token(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    token_inner(&shared, &headers, body).unwrap_or_else(|e| reject(Endpoint::Token, e))
}

fn token_inner(
    shared: &Shared,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, OAuthError> {
    let body = body.map_err(|_| OAuthError::invalid_request("the body could not be read"))?;
    let form = if shared.dialect == Dialect::Keycloak {
        // Keycloak's `permission` parameter repeats.
        Form::parse_repeatable(headers, &body, &["permission"])?
    } else {
        Form::parse(headers, &body)?
    };
    let grant_type = form.get("grant_type");
    let caller = match keycloak_bearer(shared, headers, &form, grant_type) {
        Some(caller) => caller?,
        None => Caller {
            client_id: authenticate_client(shared, headers, &form).map_err(|e| {
                // Keycloak's token endpoint calls a failed client authentication
                // `unauthorized_client` (its introspection endpoint says `invalid_client`).
                if shared.dialect == Dialect::Keycloak && e.code() == "invalid_client" {
                    OAuthError::new(StatusCode::UNAUTHORIZED, "unauthorized_client")
                        .describe("Invalid client or Invalid client credentials")
                } else {
                    e
                }
            })?,
            user: keycloak_subject(shared, &form, grant_type)?,
        },
    };
    let client_id = caller.client_id.as_str();
    let grant_type = form.required("grant_type")?;
    tracing::debug!(grant_type, client_id, "token request");
    match grant_type {
        "client_credentials" => client_credentials(shared, client_id, &form),
        "password" => password(shared, client_id, &form),
        UMA_TICKET_GRANT => super::grant::uma_ticket(shared, &caller, &form),
        _ => Err(
            OAuthError::new(StatusCode::BAD_REQUEST, "unsupported_grant_type")
                .describe("supported: client_credentials, password and the uma-ticket grant"),
        ),
    }
}

/// Keycloak's bearer authentication of the uma-ticket grant: `None` when it does not apply
/// (another dialect or grant, or client credentials in the body), else the caller or 401.
fn keycloak_bearer(
    shared: &Shared,
    headers: &HeaderMap,
    form: &Form,
    grant_type: Option<&str>,
) -> Option<Result<Caller, OAuthError>> {
    if shared.dialect != Dialect::Keycloak
        || grant_type != Some(UMA_TICKET_GRANT)
        || form.get("client_secret").is_some()
    {
        return None;
    }
    let Authorization::Bearer(token) = authorization(headers) else {
        return None;
    };
    let caller = match shared.store().tokens.get(&token) {
        Some(TokenRecord::Access(access)) if access.is_active_at(unix_now_ms()) => Ok(Caller {
            client_id: access.client_id.clone(),
            user: access.user.then(|| access.sub.clone()),
        }),
        _ => Err(OAuthError::invalid_token(
            "the bearer token is unknown, expired or revoked",
            false,
        )),
    };
    Some(caller)
}

/// Keycloak's `subject_token` on a client-authenticated uma-ticket grant, as Keycloak's own
/// policy enforcer asks for a user's permissions: the user of that token (an access token or
/// an RPT), which must be active, else 400 `invalid_grant`; `None` without one, or in another
/// dialect or grant.
fn keycloak_subject(
    shared: &Shared,
    form: &Form,
    grant_type: Option<&str>,
) -> Result<Option<String>, OAuthError> {
    if shared.dialect != Dialect::Keycloak || grant_type != Some(UMA_TICKET_GRANT) {
        return Ok(None);
    }
    let Some(token) = form.get("subject_token") else {
        return Ok(None);
    };
    let now = unix_now_ms();
    match shared.store().tokens.get(token) {
        Some(TokenRecord::Access(access)) if access.user && access.is_active_at(now) => {
            Ok(Some(access.sub.clone()))
        }
        Some(TokenRecord::Rpt {
            spec,
            revoked: false,
            ..
        }) if spec.is_active_at(now) => Ok(spec.sub.clone()),
        _ => {
            Err(OAuthError::new(StatusCode::BAD_REQUEST, "invalid_grant").describe("Invalid token"))
        }
    }
}

/// Splits a `scope` parameter and checks every value against `allowed`.
fn scopes(form: &Form, allowed: &[&str], default: &[&str]) -> Result<Vec<String>, OAuthError> {
    let Some(requested) = form.get("scope") else {
        return Ok(default.iter().map(|s| (*s).to_owned()).collect());
    };
    let mut scopes: Vec<String> = Vec::new();
    for scope in requested.split(' ').filter(|s| !s.is_empty()) {
        if !allowed.contains(&scope) {
            return Err(OAuthError::invalid_scope(format!(
                "scope `{scope}` is not available for this grant"
            )));
        }
        if !scopes.iter().any(|s| s == scope) {
            scopes.push(scope.to_owned());
        }
    }
    Ok(scopes)
}

/// A PAT for the client itself. `scope` defaults to `uma_protection`, the only scope offered;
/// Keycloak ignores it.
fn client_credentials(
    shared: &Shared,
    client_id: &str,
    form: &Form,
) -> Result<Response, OAuthError> {
    let scopes = if shared.dialect == Dialect::Keycloak {
        vec![UMA_PROTECTION.to_owned()]
    } else {
        scopes(form, &[UMA_PROTECTION], &[UMA_PROTECTION])?
    };
    if scopes.is_empty() {
        return Err(OAuthError::invalid_scope("no scope requested"));
    }
    let token = shared
        .issue_access_token(client_id, client_id, scopes.clone(), false)
        .map_err(|_| OAuthError::server_error("cannot sign the access token"))?;
    Ok(token_response(shared, &token, &scopes, None))
}

/// The resource owner password grant for the server's users: `openid` adds an ID token,
/// `uma_protection` makes the access token a PAT owned by the user (WSO2 style).
fn password(shared: &Shared, client_id: &str, form: &Form) -> Result<Response, OAuthError> {
    let username = form.required("username")?;
    let password = form.required("password")?;
    let scopes = scopes(form, &[OPENID, UMA_PROTECTION], &[])?;
    let Some(user) = check_credentials(&shared.settings.users, username, password) else {
        return Err(OAuthError::invalid_grant("unknown user or wrong password"));
    };
    let id_token = if scopes.iter().any(|s| s == OPENID) {
        let token = shared
            .id_token(&user, client_id)
            .map_err(|_| OAuthError::server_error("cannot sign the ID token"))?;
        Some(token)
    } else {
        None
    };
    let token = shared
        .issue_access_token(&user, client_id, scopes.clone(), true)
        .map_err(|_| OAuthError::server_error("cannot sign the access token"))?;
    Ok(token_response(shared, &token, &scopes, id_token))
}

fn token_response(
    shared: &Shared,
    token: &str,
    scopes: &[String],
    id_token: Option<String>,
) -> Response {
    let mut body = token_body(shared, token, expires_in(shared.settings.pat_ttl));
    if !scopes.is_empty() {
        body.insert("scope".to_owned(), Value::from(scopes.join(" ")));
    }
    if let Some(id_token) = id_token {
        body.insert("id_token".to_owned(), Value::from(id_token));
    }
    json_response(StatusCode::OK, &Value::Object(body))
}

/// The members every successful token answer has: `access_token`, `token_type` (`bearer` for
/// Keycloak, `Bearer` otherwise) and `expires_in`, plus Keycloak's `refresh_expires_in` and
/// `not-before-policy`.
pub(super) fn token_body(shared: &Shared, token: &str, expires_in: i64) -> Map<String, Value> {
    let mut body = Map::new();
    body.insert("access_token".to_owned(), Value::from(token));
    let token_type = match shared.dialect {
        Dialect::Keycloak => "bearer",
        Dialect::Standard | Dialect::Wso2 => "Bearer",
    };
    body.insert("token_type".to_owned(), Value::from(token_type));
    body.insert("expires_in".to_owned(), Value::from(expires_in));
    if shared.dialect == Dialect::Keycloak {
        body.insert("refresh_expires_in".to_owned(), Value::from(0));
        body.insert("not-before-policy".to_owned(), Value::from(0));
    }
    body
}
