//! The resource registration API (FedAuthz §3.2), authenticated by a bearer PAT.
//!
//! * `POST /resource_set` → 201, `Location: {issuer}/resource_set/{id}`, `{"_id": …}`;
//! * `GET /resource_set[?name=X]` → 200, array of ids (creation order; `name` filters by
//!   exact name);
//! * `GET /resource_set/{id}` → 200, the description plus `_id`;
//! * `PUT /resource_set/{id}` → 200 `{"_id": …}` (full replacement; the owner is kept unless
//!   the body names one);
//! * `DELETE /resource_set/{id}` → 204.
//!
//! Unknown id → 404 `not_found`; a body that is not a valid description → 400
//! `invalid_request`; other methods → 405 `unsupported_method_type`. A resource's owner is the
//! body's `owner` or else the PAT's subject. Any valid PAT may manage any resource, and names
//! need not be unique (the spec has no such rule).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::{Value, json};

use super::{PatInfo, parse_json, reject, require_pat};
use crate::dialect::Endpoint;
use crate::error::{OAuthError, json_response};
use crate::model::ResourceDescription;
use crate::state::Shared;

type Body = Result<Bytes, BytesRejection>;
type Id = Result<Path<String>, PathRejection>;

fn respond(result: Result<Response, OAuthError>) -> Response {
    result.unwrap_or_else(|e| reject(Endpoint::ResourceRegistration, e))
}

/// Parses a description; `resource_scopes` is required.
fn description(headers: &HeaderMap, body: Body) -> Result<ResourceDescription, OAuthError> {
    let body = body.map_err(|_| OAuthError::invalid_request("the body could not be read"))?;
    let value = parse_json(headers, &body)?;
    if !value.is_object() {
        return Err(OAuthError::invalid_request(
            "the resource description must be a JSON object",
        ));
    }
    serde_json::from_value(value)
        .map_err(|e| OAuthError::invalid_request(format!("invalid resource description: {e}")))
}

fn path_id(id: Id) -> Result<String, OAuthError> {
    id.map(|Path(id)| id)
        .map_err(|_| OAuthError::invalid_request("invalid resource id in the path"))
}

/// `POST`: registers a resource.
pub(super) async fn create(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    respond(create_inner(&shared, &headers, body))
}

fn create_inner(shared: &Shared, headers: &HeaderMap, body: Body) -> Result<Response, OAuthError> {
    let pat = require_pat(shared, headers)?;
    let mut desc = description(headers, body)?;
    let PatInfo { sub, client_id } = pat;
    desc.owner.get_or_insert(sub);
    let id = shared.add_resource(desc, Some(client_id));
    let mut response = json_response(StatusCode::CREATED, &json!({"_id": id}));
    if let Ok(location) = HeaderValue::from_str(&shared.dialect.resource_url(&shared.issuer, &id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// `GET` on the collection: the ids, optionally filtered by `?name=`.
pub(super) async fn list(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    respond(list_inner(&shared, &headers, query.as_deref()))
}

fn list_inner(
    shared: &Shared,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Response, OAuthError> {
    require_pat(shared, headers)?;
    let params: Vec<(String, String)> = query
        .map(serde_urlencoded::from_str)
        .transpose()
        .map_err(|_| OAuthError::invalid_request("the query string is malformed"))?
        .unwrap_or_default();
    let name = params.iter().find(|(k, _)| k == "name").map(|(_, v)| v);
    let ids: Vec<Value> = shared
        .store()
        .resources
        .iter()
        .filter(|r| name.is_none_or(|n| r.desc.name.as_ref() == Some(n)))
        .map(|r| Value::from(r.id.as_str()))
        .collect();
    Ok(json_response(StatusCode::OK, &Value::Array(ids)))
}

/// `GET` on an item.
pub(super) async fn read(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    id: Id,
) -> Response {
    respond(read_inner(&shared, &headers, id))
}

fn read_inner(shared: &Shared, headers: &HeaderMap, id: Id) -> Result<Response, OAuthError> {
    require_pat(shared, headers)?;
    let id = path_id(id)?;
    let store = shared.store();
    let resource = store.resource(&id).ok_or_else(|| unknown(&id))?;
    let mut body = serde_json::to_value(&resource.desc)
        .map_err(|_| OAuthError::server_error("cannot encode the resource"))?;
    if let Some(object) = body.as_object_mut() {
        object.insert("_id".to_owned(), Value::from(id.as_str()));
    }
    Ok(json_response(StatusCode::OK, &body))
}

/// `PUT` on an item: replaces the description.
pub(super) async fn update(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    id: Id,
    body: Body,
) -> Response {
    respond(update_inner(&shared, &headers, id, body))
}

fn update_inner(
    shared: &Shared,
    headers: &HeaderMap,
    id: Id,
    body: Body,
) -> Result<Response, OAuthError> {
    require_pat(shared, headers)?;
    let id = path_id(id)?;
    let mut desc = description(headers, body)?;
    let mut store = shared.store();
    let resource = store.resource_mut(&id).ok_or_else(|| unknown(&id))?;
    if desc.owner.is_none() {
        desc.owner.clone_from(&resource.desc.owner);
    }
    resource.desc = desc;
    Ok(json_response(StatusCode::OK, &json!({"_id": id})))
}

/// `DELETE` on an item.
pub(super) async fn delete(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    id: Id,
) -> Response {
    respond(delete_inner(&shared, &headers, id))
}

fn delete_inner(shared: &Shared, headers: &HeaderMap, id: Id) -> Result<Response, OAuthError> {
    require_pat(shared, headers)?;
    let id = path_id(id)?;
    let mut store = shared.store();
    let before = store.resources.len();
    store.resources.retain(|r| r.id != id);
    if store.resources.len() == before {
        return Err(unknown(&id));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn unknown(id: &str) -> OAuthError {
    OAuthError::not_found(format!("no resource with id `{id}`"))
}
