//! The owner's approval API: `GET /admin/requests`, `POST /admin/requests/{id}/approve` and
//! `POST /admin/requests/{id}/deny`.
//!
//! The owner authenticates with HTTP Basic: a user's name and password, or, for resources
//! owned by a client (registered with a client-credentials PAT), the client's id and secret.
//! The list holds the owner's pending requests; a decision answers 200
//! `{"id": …, "status": "approved"|"denied"}`, 404 `not_found` for an id that is unknown or
//! belongs to another owner, and 409 `invalid_request` once the request has been decided.

use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use serde_json::json;

use super::{Authorization, authorization, check_credentials, reject};
use crate::dialect::Endpoint;
use crate::dialect::names::REALM;
use crate::error::{OAuthError, json_response};
use crate::state::{Ruling, Shared};

/// Authenticates the owner; returns the user (or client) name.
fn owner(shared: &Shared, headers: &HeaderMap) -> Result<String, OAuthError> {
    let failed = |description: &str| {
        OAuthError::new(StatusCode::UNAUTHORIZED, "invalid_client")
            .describe(description)
            .challenge(format!("Basic realm=\"{REALM} admin\""))
    };
    let Authorization::Basic(name, password) = authorization(headers) else {
        return Err(failed("the owner must authenticate with HTTP Basic"));
    };
    check_credentials(&shared.settings.users, &name, &password)
        .or_else(|| check_credentials(&shared.settings.clients, &name, &password))
        .ok_or_else(|| failed("wrong user name or password"))
}

/// `GET /admin/requests`.
pub(super) async fn list(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    match owner(&shared, &headers) {
        Ok(owner) => {
            let pending = shared.pending_for(&owner);
            match serde_json::to_value(pending) {
                Ok(body) => json_response(StatusCode::OK, &body),
                Err(_) => reject(
                    Endpoint::Admin,
                    OAuthError::server_error("cannot encode the requests"),
                ),
            }
        }
        Err(error) => reject(Endpoint::Admin, error),
    }
}

/// `POST /admin/requests/{id}/approve`.
pub(super) async fn approve(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    decide(&shared, &headers, id, true)
}

/// `POST /admin/requests/{id}/deny`.
pub(super) async fn deny(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    decide(&shared, &headers, id, false)
}

fn decide(
    shared: &Shared,
    headers: &HeaderMap,
    id: Result<Path<String>, PathRejection>,
    approve: bool,
) -> Response {
    let result = owner(shared, headers).and_then(|owner| {
        let Path(id) =
            id.map_err(|_| OAuthError::invalid_request("invalid request id in the path"))?;
        match shared.decide(&id, Some(&owner), approve) {
            Ruling::Done => {
                let status = if approve { "approved" } else { "denied" };
                Ok(json_response(
                    StatusCode::OK,
                    &json!({"id": id, "status": status}),
                ))
            }
            Ruling::Unknown => Err(OAuthError::not_found(format!(
                "no pending request `{id}` for this owner"
            ))),
            Ruling::AlreadyDecided => Err(OAuthError::new(StatusCode::CONFLICT, "invalid_request")
                .describe("the request has already been decided")),
        }
    });
    result.unwrap_or_else(|e| reject(Endpoint::Admin, e))
}
