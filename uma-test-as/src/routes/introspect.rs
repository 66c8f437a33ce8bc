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

use super::{Authorization, Form, authenticate_client, authorization, bearer_pat, reject};
use crate::dialect::Endpoint;
use crate::error::{OAuthError, json_response};
use crate::model::unix_now_ms;
use crate::state::{Shared, TokenRecord};

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
    // A bearer PAT is checked before the body, so a bad PAT is a 401 whatever the body.
    let by_pat = match authorization(headers) {
        Authorization::Bearer(token) => Some(bearer_pat(shared, &token)?),
        _ => None,
    };
    let body = body.map_err(|_| OAuthError::invalid_request("the body could not be read"))?;
    let form = Form::parse(headers, &body)?;
    if by_pat.is_none() {
        authenticate_client(shared, headers, &form)?;
    }
    let token = form.required("token")?;
    let answer = match shared.store().tokens.get(token) {
        Some(TokenRecord::Rpt { spec, revoked })
            if !revoked && spec.is_active_at(unix_now_ms()) =>
        {
            Value::Object(spec.introspection())
        }
        Some(TokenRecord::Access(access)) if access.is_active_at(unix_now_ms()) => {
            let mut body = Map::new();
            body.insert("active".to_owned(), Value::Bool(true));
            body.insert("scope".to_owned(), Value::from(access.scopes.join(" ")));
            body.insert(
                "client_id".to_owned(),
                Value::from(access.client_id.as_str()),
            );
            body.insert("sub".to_owned(), Value::from(access.sub.as_str()));
            body.insert("exp".to_owned(), Value::from(access.exp));
            body.insert("iat".to_owned(), Value::from(access.iat));
            body.insert("token_type".to_owned(), Value::from("Bearer"));
            Value::Object(body)
        }
        _ => json!({"active": false}),
    };
    Ok(json_response(StatusCode::OK, &answer))
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
