//! `POST /permission` (FedAuthz §4): a PAT-authenticated request for a permission ticket.
//!
//! The body is a single permission object or a non-empty array of them, each with
//! `resource_id` and `resource_scopes` (strings; `{"name": …}` objects are accepted too).
//! Answers: 201 `{"ticket": …}` (one ticket for the whole request; permissions naming the
//! same resource are merged); 400 `invalid_resource_id` / `invalid_scope` /
//! `invalid_request`; 401 without a valid PAT. Any valid PAT may ask about any resource.
//! Tickets are 256-bit random URL-safe strings, single-use, expiring after `ticket_ttl`.
//!
//! Dialects (docs/protocol.md §5.2, §5.3): Keycloak and WSO2 take **arrays only** (a bare
//! object → 400 `invalid_request`). Keycloak accepts any valid access token of the realm (it
//! does not check `uma_protection` here), resolves an unknown `resource_id` as a resource
//! *name* (the caller's resources first), answers an empty array with 400
//! `invalid_permission_request`, and issues JWT tickets. WSO2 needs a PAT issued to a user (401
//! `{"error":"unauthorized","error_description":"Unauthorized user"}` otherwise), only accepts
//! that user's resources (else 400 `invalid_resource_id`) and issues UUID tickets.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use super::{Protection, parse_json, reject, require_pat};
use crate::dialect::{Dialect, Endpoint};
use crate::error::{OAuthError, json_response};
use crate::state::{Requested, Shared, Store, Ticket};

/// The permission endpoint.
pub(super) async fn permission(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    permission_inner(&shared, &headers, body).unwrap_or_else(|e| {
        if shared.dialect == Dialect::Wso2 && e.status() == StatusCode::UNAUTHORIZED {
            // WSO2's permission API: `error`/`error_description`, but its own words.
            let mut wso2 = OAuthError::new(StatusCode::UNAUTHORIZED, "unauthorized")
                .describe("Unauthorized user");
            if let Some(challenge) = e.challenge_value() {
                wso2 = wso2.challenge(challenge);
            }
            return reject(Endpoint::Permission, wso2);
        }
        reject(Endpoint::Permission, e)
    })
}

fn permission_inner(
    shared: &Shared,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, OAuthError> {
    let pat = require_pat(shared, headers, Protection::Permission)?;
    let body = body.map_err(|_| OAuthError::invalid_request("the body could not be read"))?;
    let body = parse_json(headers, &body)?;
    let dialect = shared.dialect;
    match &body {
        Value::Array(items) if items.is_empty() && dialect == Dialect::Keycloak => {
            return Err(
                OAuthError::new(StatusCode::BAD_REQUEST, "invalid_permission_request")
                    .describe("Invalid permission request"),
            );
        }
        // Keycloak reads the body as a list and fails to parse an object.
        Value::Object(_) if dialect == Dialect::Keycloak => {
            return Err(OAuthError::new(StatusCode::BAD_REQUEST, "unknown_error")
                .describe("Cannot parse the JSON"));
        }
        Value::Object(_) if dialect != Dialect::Standard => {
            return Err(OAuthError::invalid_request(
                "the body must be an array of permission objects",
            ));
        }
        _ => {}
    }
    let mut requested = parse_permissions(&body)?;

    let mut store = shared.store();
    if dialect == Dialect::Keycloak {
        resolve_names(&store, &mut requested, &pat.sub);
    }
    for permission in &requested {
        let Some(resource) = store.resource(&permission.resource_id).filter(|r| {
            dialect != Dialect::Wso2 || r.desc.owner.as_deref() == Some(pat.sub.as_str())
        }) else {
            return Err(
                OAuthError::new(StatusCode::BAD_REQUEST, "invalid_resource_id")
                    .describe(format!("no resource with id `{}`", permission.resource_id)),
            );
        };
        if let Some(scope) = permission
            .scopes
            .iter()
            .find(|s| !resource.desc.resource_scopes.contains(s))
        {
            return Err(OAuthError::invalid_scope(format!(
                "resource `{}` has no scope `{scope}`",
                permission.resource_id
            )));
        }
    }
    let ticket = shared
        .new_ticket(
            &mut store,
            Ticket {
                permissions: requested,
                expires_at: Instant::now(),
                used: false,
                bound_client: None,
                requester: None,
                approvals: Vec::new(),
                origin: Some((pat.sub.clone(), pat.client_id.clone())),
            },
        )
        .map_err(|_| OAuthError::server_error("cannot sign the ticket"))?;
    drop(store);
    tracing::debug!(
        client_id = pat.client_id,
        pat.sub,
        "permission ticket issued"
    );
    Ok(json_response(
        StatusCode::CREATED,
        &json!({"ticket": ticket}),
    ))
}

/// Keycloak retries an unknown `resource_id` as a resource name: first among the resources
/// of the PAT's subject, then among all (docs/protocol.md §5.2).
fn resolve_names(store: &Store, requested: &mut [Requested], owner: &str) {
    for permission in requested {
        if store.resource(&permission.resource_id).is_some() {
            continue;
        }
        let named = |r: &&crate::state::Resource| {
            r.desc.name.as_deref() == Some(permission.resource_id.as_str())
        };
        let found = store
            .resources
            .iter()
            .filter(named)
            .find(|r| r.desc.owner.as_deref() == Some(owner))
            .or_else(|| store.resources.iter().find(named));
        if let Some(resource) = found {
            permission.resource_id.clone_from(&resource.id);
        }
    }
}

/// Reads the object-or-array body (FedAuthz §4.1), merging repeated resources.
fn parse_permissions(body: &Value) -> Result<Vec<Requested>, OAuthError> {
    let items: Vec<&Value> = match body {
        Value::Array(items) if items.is_empty() => {
            return Err(OAuthError::invalid_request(
                "the permission array must not be empty",
            ));
        }
        Value::Array(items) => items.iter().collect(),
        Value::Object(_) => vec![body],
        _ => {
            return Err(OAuthError::invalid_request(
                "the body must be a permission object or an array of them",
            ));
        }
    };
    let mut requested: Vec<Requested> = Vec::new();
    for item in items {
        let Some(object) = item.as_object() else {
            return Err(OAuthError::invalid_request(
                "each permission must be a JSON object",
            ));
        };
        let Some(resource_id) = object.get("resource_id").and_then(Value::as_str) else {
            return Err(OAuthError::invalid_request(
                "`resource_id` is missing or not a string",
            ));
        };
        let Some(scopes) = object.get("resource_scopes").and_then(Value::as_array) else {
            return Err(OAuthError::invalid_request(
                "`resource_scopes` is missing or not an array",
            ));
        };
        let mut names = Vec::with_capacity(scopes.len());
        for scope in scopes {
            let name = scope
                .as_str()
                .or_else(|| scope.get("name").and_then(Value::as_str))
                .ok_or_else(|| {
                    OAuthError::invalid_request("`resource_scopes` must hold strings")
                })?;
            names.push(name.to_owned());
        }
        match requested.iter_mut().find(|r| r.resource_id == resource_id) {
            Some(existing) => {
                for name in names {
                    if !existing.scopes.contains(&name) {
                        existing.scopes.push(name);
                    }
                }
            }
            None => {
                let mut unique: Vec<String> = Vec::with_capacity(names.len());
                for name in names {
                    if !unique.contains(&name) {
                        unique.push(name);
                    }
                }
                requested.push(Requested {
                    resource_id: resource_id.to_owned(),
                    scopes: unique,
                });
            }
        }
    }
    Ok(requested)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_and_array_bodies_parse_and_merge() {
        let one =
            parse_permissions(&json!({"resource_id": "a", "resource_scopes": ["x"]})).unwrap();
        assert_eq!(
            one,
            [Requested {
                resource_id: "a".into(),
                scopes: vec!["x".into()]
            }]
        );
        let many = parse_permissions(&json!([
            {"resource_id": "a", "resource_scopes": ["x"]},
            {"resource_id": "b", "resource_scopes": []},
            {"resource_id": "a", "resource_scopes": [{"name": "y"}, "x"]},
        ]))
        .unwrap();
        assert_eq!(many.len(), 2);
        assert_eq!(many[0].scopes, ["x", "y"]);
        assert!(many[1].scopes.is_empty());
    }

    #[test]
    fn malformed_bodies_are_invalid_requests() {
        for body in [
            json!([]),
            json!("x"),
            json!([1]),
            json!({"resource_scopes": []}),
            json!({"resource_id": "a"}),
            json!({"resource_id": 1, "resource_scopes": []}),
            json!({"resource_id": "a", "resource_scopes": [1]}),
        ] {
            let error = parse_permissions(&body).unwrap_err();
            assert_eq!(error.code(), "invalid_request", "{body}");
        }
    }
}
