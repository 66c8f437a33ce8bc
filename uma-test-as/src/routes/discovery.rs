//! The discovery documents (UMA Grant §2, FedAuthz §2) and the JWKS.
//!
//! * standard: `GET /.well-known/uma2-configuration`;
//! * Keycloak: `GET /realms/{realm}/.well-known/uma2-configuration` and
//!   `…/.well-known/openid-configuration`, with Keycloak's keys (docs/protocol.md §2.2): the
//!   OpenID document lists the OpenID Connect endpoints with the introspection URL under both
//!   `token_introspection_endpoint` and `introspection_endpoint`; the UMA document has the
//!   keys both share (issuer, authorization, token, introspection, logout and JWKS URLs, the
//!   supported grants, response types and modes, token endpoint authentication methods and
//!   scopes) plus `resource_registration_endpoint`, `permission_endpoint` and
//!   `policy_endpoint`, as Keycloak 26 publishes them;
//! * WSO2: no document — the standard path answers 404 `not_found` (docs/protocol.md §2.3).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::dialect::names::{
    KEYCLOAK_AUTH_PATH, KEYCLOAK_LOGOUT_PATH, KEYCLOAK_POLICY_PATH, KEYCLOAK_USERINFO_PATH, OPENID,
    UMA_PROTECTION, UMA_TICKET_GRANT,
};
use crate::dialect::{Dialect, Endpoint};
use crate::error::OAuthError;
use crate::state::Shared;

/// The UMA discovery document of the dialect.
pub(super) async fn discovery(State(shared): State<Arc<Shared>>) -> Response {
    match shared.dialect {
        Dialect::Standard => Json(standard(&shared)).into_response(),
        Dialect::Keycloak => Json(keycloak(&shared, true)).into_response(),
        Dialect::Wso2 => {
            OAuthError::not_found("WSO2 publishes no UMA discovery document").into_response()
        }
    }
}

/// Keycloak's OpenID Connect discovery document.
pub(super) async fn openid_configuration(State(shared): State<Arc<Shared>>) -> Response {
    Json(keycloak(&shared, false)).into_response()
}

/// The standard document: the issuer (no trailing slash) and every endpoint's URL.
fn standard(shared: &Shared) -> Value {
    let url = |e| shared.url(e);
    json!({
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
    })
}

/// Keycloak's documents. The authorization, userinfo, logout and policy endpoints are
/// announced (OpenID Connect discovery requires `authorization_endpoint`) but not served.
fn keycloak(shared: &Shared, uma: bool) -> Value {
    let url = |e| shared.url(e);
    let realm = |path| shared.layout.realm_url(&shared.base, path);
    let introspection = url(Endpoint::Introspection);
    let mut doc = Map::new();
    let mut put = |key: &str, value: Value| {
        doc.insert(key.to_owned(), value);
    };
    put("issuer", json!(shared.issuer));
    put("authorization_endpoint", json!(realm(KEYCLOAK_AUTH_PATH)));
    put("token_endpoint", json!(url(Endpoint::Token)));
    put("introspection_endpoint", json!(introspection));
    put("end_session_endpoint", json!(realm(KEYCLOAK_LOGOUT_PATH)));
    put("jwks_uri", json!(url(Endpoint::Jwks)));
    put(
        "grant_types_supported",
        json!(["client_credentials", "password", UMA_TICKET_GRANT]),
    );
    put("response_types_supported", json!(["code"]));
    put(
        "response_modes_supported",
        json!(["query", "fragment", "form_post"]),
    );
    put(
        "token_endpoint_auth_methods_supported",
        json!(["client_secret_basic", "client_secret_post"]),
    );
    put("scopes_supported", json!([OPENID, UMA_PROTECTION]));
    if uma {
        // Keycloak 26's UMA document stops here: none of the OpenID-only keys below.
        put(
            "resource_registration_endpoint",
            json!(url(Endpoint::ResourceRegistration)),
        );
        put("permission_endpoint", json!(url(Endpoint::Permission)));
        put("policy_endpoint", json!(realm(KEYCLOAK_POLICY_PATH)));
    } else {
        put("token_introspection_endpoint", json!(introspection));
        put("userinfo_endpoint", json!(realm(KEYCLOAK_USERINFO_PATH)));
        put("revocation_endpoint", json!(url(Endpoint::Revocation)));
        put("subject_types_supported", json!(["public"]));
        put("id_token_signing_alg_values_supported", json!(["ES256"]));
        put(
            "introspection_endpoint_auth_methods_supported",
            json!(["client_secret_basic", "client_secret_post"]),
        );
        put(
            "revocation_endpoint_auth_methods_supported",
            json!(["client_secret_basic", "client_secret_post"]),
        );
    }
    Value::Object(doc)
}

/// The JWKS document with every published key (see [`crate::jwt`]).
pub(super) async fn jwks(State(shared): State<Arc<Shared>>) -> Response {
    Json(shared.keys.jwks()).into_response()
}
