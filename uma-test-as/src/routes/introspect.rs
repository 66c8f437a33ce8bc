//! `POST /introspect` (RFC 7662, FedAuthz §5) and `POST /revoke` (RFC 7009).
//!
//! Introspection callers authenticate with a bearer PAT or with client credentials (HTTP
//! Basic or `client_id`/`client_secret` in the body); otherwise 401. `token_type_hint` is
//! accepted and ignored, whatever its value. Answers (`Cache-Control: no-store`):
//!
//! * an active RPT → `active: true` and its [`RptSpec`](crate::RptSpec) members (`exp`,
//!   `iat`, `client_id`, `sub`, `permissions` with per-permission `exp`), never a top-level
//!   `scope` unless a minted spec asks for it;
//! * an active PAT or other access token → `active: true`, `scope`, `client_id`, `sub`,
//!   `exp`, `iat`, `token_type` and no `permissions` (it is not an RPT);
//! * anything else (unknown, expired, revoked) → exactly `{"active":false}`.
//!
//! The dialects (docs/protocol.md §7.3, §7.4):
//!
//! * **Keycloak** requires client authentication (a bearer PAT alone → 401), checks `token`
//!   first (400 "Token not provided."), then the hint: none or `access_token` → a plain
//!   access-token answer without `permissions` (`exp`, `iat`, `nbf`, `jti`, `iss`, `aud`,
//!   `sub`, `typ`, `azp`, `scope`, `client_id`, `username`, `token_type`);
//!   `requesting_party_token` → Keycloak's RPT answer: `jti`, `typ`, `exp`, `iat`, `nbf`,
//!   `aud` and `permissions` with both namings (`rsid`/`rsname`/`scopes` and
//!   `resource_id`/`resource_scopes`) — a token that is not an RPT (a PAT, a user's access
//!   token) is `{"active": false}` under this hint; any
//!   other hint → 400 `invalid_request` "Unsupported token type.".
//! * **WSO2** answers like WSO2's `/oauth2/introspect`: `token_type`, `exp`, `iat`, `nbf`,
//!   `client_id`, `username` (`{sub}@carbon.super`), `aut`, `scope` for plain tokens and
//!   `permissions` (`resource_id`, `resource_scopes`) for RPTs; no `sub`.
//!
//! A minted spec's `extra` members are added last in every dialect.
//!
//! Revocation needs client authentication, accepts any token this server issued (RPT, PAT,
//! access token) from any authenticated client, and answers 200 with an empty body for every
//! well-formed request, known token or not.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use serde_json::{Map, Value, json};

use super::{
    Authorization, Form, Protection, authenticate_client, authorization, bearer_pat, reject,
};
use crate::dialect::names::{ACCESS_TOKEN_HINT, RPT_HINT, WSO2_TENANT};
use crate::dialect::{Dialect, Endpoint};
use crate::error::{OAuthError, json_response};
use crate::model::{RptSpec, unix_now_ms};
use crate::state::{AccessToken, RptMeta, Shared, Store, TokenRecord};

type Body = Result<Bytes, BytesRejection>;

/// The introspection endpoint.
pub(super) async fn introspect(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    introspect_inner(&shared, &headers, body).unwrap_or_else(|e| reject(Endpoint::Introspection, e))
}

fn introspect_inner(
    shared: &Shared,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, OAuthError> {
    let keycloak = shared.dialect == Dialect::Keycloak;
    // A bearer PAT is checked before the body, so a bad PAT is a 401 whatever the body.
    // Keycloak only knows client authentication.
    let by_pat = match authorization(headers) {
        Authorization::Bearer(token) if !keycloak => {
            Some(bearer_pat(shared, &token, Protection::Introspection)?)
        }
        _ => None,
    };
    let body = body.map_err(|_| OAuthError::invalid_request("the body could not be read"))?;
    let form = Form::parse(headers, &body)?;
    if by_pat.is_none() {
        authenticate_client(shared, headers, &form)?;
    }
    let token = if keycloak {
        form.get("token")
            .ok_or_else(|| OAuthError::invalid_request("Token not provided."))?
    } else {
        form.required("token")?
    };
    let rpt_view = match form.get("token_type_hint") {
        Some(RPT_HINT) => true,
        None | Some(ACCESS_TOKEN_HINT) => false,
        Some(_) if keycloak => {
            return Err(OAuthError::invalid_request("Unsupported token type."));
        }
        Some(_) => false,
    };
    let now = unix_now_ms();
    let store = shared.store();
    let answer = match store.tokens.get(token) {
        Some(TokenRecord::Rpt {
            spec,
            revoked,
            meta,
        }) if !revoked && spec.is_active_at(now) => match shared.dialect {
            Dialect::Standard => Value::Object(spec.introspection()),
            Dialect::Keycloak if rpt_view => keycloak_rpt(spec, meta, &store),
            Dialect::Keycloak => keycloak_plain_rpt(shared, spec, meta),
            Dialect::Wso2 => wso2_rpt(spec),
        },
        Some(TokenRecord::Access(access)) if access.is_active_at(now) => match shared.dialect {
            Dialect::Standard => standard_access(access),
            // Keycloak 26 answers an access token that is not an RPT as inactive under the
            // RPT hint.
            Dialect::Keycloak if rpt_view => json!({"active": false}),
            Dialect::Keycloak => keycloak_access(shared, access),
            Dialect::Wso2 => wso2_access(access),
        },
        _ => json!({"active": false}),
    };
    drop(store);
    Ok(json_response(StatusCode::OK, &answer))
}

fn put(body: &mut Map<String, Value>, key: &str, value: impl Into<Value>) {
    body.insert(key.to_owned(), value.into());
}

fn put_opt(body: &mut Map<String, Value>, key: &str, value: Option<impl Into<Value>>) {
    if let Some(value) = value {
        body.insert(key.to_owned(), value.into());
    }
}

/// Adds a minted spec's `extra` members, then `active: true`.
fn finish(mut body: Map<String, Value>, spec: Option<&RptSpec>) -> Value {
    if let Some(spec) = spec {
        for (key, value) in &spec.extra {
            body.insert(key.clone(), value.clone());
        }
    }
    body.insert("active".to_owned(), Value::Bool(true));
    Value::Object(body)
}

/// A PAT or other access token, standard dialect: not an RPT, so no `permissions`.
fn standard_access(access: &AccessToken) -> Value {
    let mut body = Map::new();
    put(&mut body, "active", true);
    put(&mut body, "scope", access.scopes.join(" "));
    put(&mut body, "client_id", access.client_id.as_str());
    put(&mut body, "sub", access.sub.as_str());
    put(&mut body, "exp", access.exp);
    put(&mut body, "iat", access.iat);
    put(&mut body, "token_type", "Bearer");
    Value::Object(body)
}

/// Keycloak's RPT introspection (`RPTIntrospectionProvider`): token metadata and
/// `permissions` with both namings.
fn keycloak_rpt(spec: &RptSpec, meta: &RptMeta, store: &Store) -> Value {
    let mut body = Map::new();
    put(&mut body, "jti", meta.jti.as_str());
    put(&mut body, "typ", "Bearer");
    put_opt(&mut body, "exp", spec.exp);
    put_opt(&mut body, "iat", spec.iat);
    put_opt(&mut body, "nbf", spec.nbf);
    put_opt(&mut body, "aud", meta.aud_value());
    let permissions: Vec<Value> = spec
        .permissions
        .iter()
        .map(|p| p.keycloak_json(store.resource_name(&p.resource_id).as_deref(), true))
        .collect();
    put(&mut body, "permissions", permissions);
    finish(body, Some(spec))
}

/// Keycloak's plain access-token introspection of an RPT: its claims, no `permissions`.
fn keycloak_plain_rpt(shared: &Shared, spec: &RptSpec, meta: &RptMeta) -> Value {
    let mut body = Map::new();
    put_opt(&mut body, "exp", spec.exp);
    put_opt(&mut body, "iat", spec.iat);
    put_opt(&mut body, "nbf", spec.nbf);
    put(&mut body, "jti", meta.jti.as_str());
    put(&mut body, "iss", shared.token_issuer.as_str());
    put_opt(&mut body, "aud", meta.aud_value());
    put_opt(&mut body, "sub", spec.sub.as_deref());
    put(&mut body, "typ", "Bearer");
    put_opt(&mut body, "azp", spec.client_id.as_deref());
    put_opt(&mut body, "client_id", spec.client_id.as_deref());
    put_opt(&mut body, "username", spec.sub.as_deref());
    put(&mut body, "token_type", "Bearer");
    finish(body, Some(spec))
}

/// Keycloak's plain access-token introspection.
fn keycloak_access(shared: &Shared, access: &AccessToken) -> Value {
    let mut body = Map::new();
    put(&mut body, "exp", access.exp);
    put(&mut body, "iat", access.iat);
    put_opt(&mut body, "jti", access.jti.as_deref());
    put(&mut body, "iss", shared.token_issuer.as_str());
    put(&mut body, "sub", access.sub.as_str());
    put(&mut body, "typ", "Bearer");
    put(&mut body, "azp", access.client_id.as_str());
    put(&mut body, "scope", access.scopes.join(" "));
    put(&mut body, "client_id", access.client_id.as_str());
    if access.user {
        put(&mut body, "username", access.sub.as_str());
    }
    put(&mut body, "token_type", "Bearer");
    finish(body, None)
}

/// `username` and `aut` as WSO2 writes them.
fn wso2_identity(body: &mut Map<String, Value>, user: Option<&str>) {
    match user {
        Some(user) => {
            put(body, "username", format!("{user}@{WSO2_TENANT}"));
            put(body, "aut", "APPLICATION_USER");
        }
        None => put(body, "aut", "APPLICATION"),
    }
}

/// WSO2's introspection of an RPT: the usual members plus `permissions`.
fn wso2_rpt(spec: &RptSpec) -> Value {
    let mut body = Map::new();
    put(&mut body, "token_type", "Bearer");
    put_opt(&mut body, "exp", spec.exp);
    put_opt(&mut body, "iat", spec.iat);
    put_opt(&mut body, "nbf", spec.nbf.or(spec.iat));
    put_opt(&mut body, "client_id", spec.client_id.as_deref());
    wso2_identity(&mut body, spec.sub.as_deref());
    let permissions: Vec<Value> = spec.permissions.iter().map(|p| p.to_json()).collect();
    put(&mut body, "permissions", permissions);
    finish(body, Some(spec))
}

/// WSO2's introspection of a plain access token.
fn wso2_access(access: &AccessToken) -> Value {
    let mut body = Map::new();
    put(&mut body, "token_type", "Bearer");
    put(&mut body, "scope", access.scopes.join(" "));
    put(&mut body, "exp", access.exp);
    put(&mut body, "iat", access.iat);
    put(&mut body, "nbf", access.iat);
    put(&mut body, "client_id", access.client_id.as_str());
    wso2_identity(&mut body, access.user.then_some(access.sub.as_str()));
    finish(body, None)
}

/// The revocation endpoint.
pub(super) async fn revoke(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    revoke_inner(&shared, &headers, body).unwrap_or_else(|e| reject(Endpoint::Revocation, e))
}

fn revoke_inner(shared: &Shared, headers: &HeaderMap, body: Body) -> Result<Response, OAuthError> {
    let body = body.map_err(|_| OAuthError::invalid_request("the body could not be read"))?;
    let form = Form::parse(headers, &body)?;
    let client_id = authenticate_client(shared, headers, &form)?;
    let token = form.required("token")?;
    shared.revoke(token);
    tracing::debug!(client_id, "revocation request");
    Ok(StatusCode::OK.into_response())
}
