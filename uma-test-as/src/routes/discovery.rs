//! `GET /.well-known/uma2-configuration` (UMA Grant §2, FedAuthz §2) and `GET /jwks`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::dialect::Endpoint;
use crate::dialect::names::{OPENID, UMA_PROTECTION, UMA_TICKET_GRANT};
use crate::state::Shared;

/// The discovery document: the issuer (no trailing slash) and every endpoint's URL.
pub(super) async fn discovery(State(shared): State<Arc<Shared>>) -> Response {
    let url = |e| shared.dialect.url(&shared.issuer, e);
    Json(json!({
        "issuer": shared.issuer,
        "token_endpoint": url(Endpoint::Token),
        "introspection_endpoint": url(Endpoint::Introspection),
        "resource_registration_endpoint": url(Endpoint::ResourceRegistration),
        "permission_endpoint": url(Endpoint::Permission),
        "jwks_uri": url(Endpoint::Jwks),
        "revocation_endpoint": url(Endpoint::Revocation),
        "grant_types_supported": ["client_credentials", "password", UMA_TICKET_GRANT],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "introspection_endpoint_auth_methods_supported":
            ["client_secret_basic", "client_secret_post", "bearer"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "scopes_supported": [UMA_PROTECTION, OPENID],
        "response_types_supported": [],
        "id_token_signing_alg_values_supported": ["ES256"],
        "uma_profiles_supported": [],
    }))
    .into_response()
}

/// The JWKS document with the key that signs ID tokens and JWT RPTs.
pub(super) async fn jwks(State(shared): State<Arc<Shared>>) -> Response {
    Json(shared.keys.jwks()).into_response()
}
