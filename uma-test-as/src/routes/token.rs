//! `POST /token`: `client_credentials` and `password` grants (PATs, access tokens, ID
//! tokens); the uma-ticket grant lives in [`super::grant`].
//!
//! Every grant requires client authentication (HTTP Basic or `client_id`/`client_secret` in
//! the body); all clients are confidential.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use serde_json::{Map, Value};

use super::{Form, authenticate_client, check_credentials, reject};
use crate::dialect::Endpoint;
use crate::dialect::names::{OPENID, UMA_PROTECTION, UMA_TICKET_GRANT};
use crate::error::{OAuthError, json_response};
use crate::state::{Shared, expires_in};

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
    let form = Form::parse(headers, &body)?;
    let client_id = authenticate_client(shared, headers, &form)?;
    let grant_type = form.required("grant_type")?;
    tracing::debug!(grant_type, client_id, "token request");
    match grant_type {
        "client_credentials" => client_credentials(shared, &client_id, &form),
        "password" => password(shared, &client_id, &form),
        UMA_TICKET_GRANT => super::grant::uma_ticket(shared, &client_id, &form),
        _ => Err(
            OAuthError::new(StatusCode::BAD_REQUEST, "unsupported_grant_type")
                .describe("supported: client_credentials, password and the uma-ticket grant"),
        ),
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

/// A PAT for the client itself. `scope` defaults to `uma_protection`, the only scope offered.
fn client_credentials(
    shared: &Shared,
    client_id: &str,
    form: &Form,
) -> Result<Response, OAuthError> {
    let scopes = scopes(form, &[UMA_PROTECTION], &[UMA_PROTECTION])?;
    if scopes.is_empty() {
        return Err(OAuthError::invalid_scope("no scope requested"));
    }
    let token = shared.issue_access_token(client_id, client_id, scopes.clone());
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
    let token = shared.issue_access_token(&user, client_id, scopes.clone());
    Ok(token_response(shared, &token, &scopes, id_token))
}

fn token_response(
    shared: &Shared,
    token: &str,
    scopes: &[String],
    id_token: Option<String>,
) -> Response {
    let mut body = Map::new();
    body.insert("access_token".to_owned(), Value::from(token));
    body.insert("token_type".to_owned(), Value::from("Bearer"));
    body.insert(
        "expires_in".to_owned(),
        Value::from(expires_in(shared.settings.pat_ttl)),
    );
    if !scopes.is_empty() {
        body.insert("scope".to_owned(), Value::from(scopes.join(" ")));
    }
    if let Some(id_token) = id_token {
        body.insert("id_token".to_owned(), Value::from(id_token));
    }
    json_response(StatusCode::OK, &Value::Object(body))
}
