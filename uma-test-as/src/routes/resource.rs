//! The resource registration API (FedAuthz §3.2), authenticated by a bearer PAT.
//!
//! Standard dialect:
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
//!
//! Keycloak (docs/protocol.md §4.2): `resource_scopes` may be left out; `uris` (or the legacy
//! `uri`), `ownerManagedAccess`, `displayName` and `attributes` are kept; `owner` may be a
//! string or an object with `id`/`name`. Create → 201 with the full representation and no
//! `Location`; a second resource with the same name for the same owner → 409 `invalid_request`
//! "Resource with name [X] already exists."; reads return `resource_scopes` as `{"name": …}`
//! objects and `owner` as `{"id", "name"}`; PUT → 204; DELETE → 204; unknown id → 404 with an
//! empty body. The list takes `_id`, `name` (case-insensitive substring unless
//! `exactName=true`), `owner`, `type`, `uri` (with `matchingUri=true`, `*` in registered
//! patterns matches anything and a `{name}` segment any one segment; as in Keycloak, that match
//! is made after `first`/`max` have paged the list), `scope`, `first`, `max` and `deep=true` (full representations
//! instead of ids). Without `max`, at most 100 ids are listed, as Keycloak's
//! `Constants.DEFAULT_MAX_RESULTS` does (docs/protocol.md §4.2); a negative `max` lists them
//! all.
//!
//! WSO2 (docs/protocol.md §4.3): only PATs issued to a user (the resource owner); create and PUT
//! require `name`, `type`, `icon_uri` and `description` (strings, possibly empty) and a
//! non-empty `resource_scopes`; create → 201 + absolute `Location` + `{"_id"}`; PUT → 201
//! `{"_id"}`; DELETE → 204; the list holds the owner's resources only; another owner's
//! resource → 401; a duplicate name for the owner → 409 `conflict`. Every error of this API is
//! `{"code": …, "description": …}`: 400 `invalid_request`, 401 `Unauthorized` "Unauthorized
//! User.", 404 `not_found`, 409 `conflict`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::{Map, Value, json};

use super::{PatInfo, Protection, parse_json, reject, require_pat};
use crate::dialect::{Dialect, Endpoint};
use crate::error::{OAuthError, json_response};
use crate::model::ResourceDescription;
use crate::state::{Resource, Shared, Store, uuid_text};

type Body = Result<Bytes, BytesRejection>;
type Id = Result<Path<String>, PathRejection>;

/// Keycloak members kept next to the description.
const KEYCLOAK_EXTRA: [&str; 4] = ["uris", "ownerManagedAccess", "displayName", "attributes"];

/// How many resources Keycloak lists when the query has no `max` (its
/// `Constants.DEFAULT_MAX_RESULTS`).
const KEYCLOAK_DEFAULT_MAX: usize = 100;

/// The fields WSO2 declares required besides `resource_scopes`.
const WSO2_REQUIRED: [&str; 4] = ["name", "type", "icon_uri", "description"];

/// Turns a handler's result into the dialect's answer.
fn respond(shared: &Shared, result: Result<Response, OAuthError>) -> Response {
    match result {
        Ok(response) => response,
        Err(error) if shared.dialect == Dialect::Wso2 => {
            let error = if error.status() == StatusCode::UNAUTHORIZED {
                OAuthError::new(StatusCode::UNAUTHORIZED, "Unauthorized")
                    .describe("Unauthorized User.")
            } else {
                error
            };
            tracing::debug!(
                endpoint = ?Endpoint::ResourceRegistration,
                error = error.code(),
                http.status_code = error.status().as_u16(),
                "request rejected"
            );
            error.into_wso2_response()
        }
        Err(error) => reject(Endpoint::ResourceRegistration, error),
    }
}

/// A parsed description plus the Keycloak members to keep.
struct Parsed {
    desc: ResourceDescription,
    extra: Map<String, Value>,
}

/// Parses a description per dialect (see the module docs).
fn description(shared: &Shared, headers: &HeaderMap, body: Body) -> Result<Parsed, OAuthError> {
    let body = body.map_err(|_| OAuthError::invalid_request("the body could not be read"))?;
    let value = parse_json(headers, &body)?;
    let Value::Object(mut object) = value else {
        return Err(OAuthError::invalid_request(
            "the resource description must be a JSON object",
        ));
    };
    let mut extra = Map::new();
    match shared.dialect {
        Dialect::Standard => {}
        Dialect::Keycloak => {
            object
                .entry("resource_scopes")
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Some(Value::Object(owner)) = object.get("owner") {
                let name = owner
                    .get("name")
                    .or_else(|| owner.get("id"))
                    .cloned()
                    .unwrap_or(Value::Null);
                object.insert("owner".to_owned(), name);
            }
            if let Some(uri) = object.remove("uri")
                && !object.contains_key("uris")
            {
                object.insert("uris".to_owned(), Value::Array(vec![uri]));
            }
            for key in KEYCLOAK_EXTRA {
                if let Some(value) = object.get(key).filter(|v| !v.is_null()) {
                    extra.insert(key.to_owned(), value.clone());
                }
            }
        }
        Dialect::Wso2 => {
            for key in WSO2_REQUIRED {
                if !object.get(key).is_some_and(Value::is_string) {
                    return Err(OAuthError::invalid_request(format!(
                        "Resource {key} is missing"
                    )));
                }
            }
            if object
                .get("resource_scopes")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty)
            {
                return Err(OAuthError::invalid_request("Resource scopes are missing"));
            }
            // The owner is the PAT's user, whatever the body says.
            object.remove("owner");
        }
    }
    let desc = serde_json::from_value(Value::Object(object))
        .map_err(|e| OAuthError::invalid_request(format!("invalid resource description: {e}")))?;
    Ok(Parsed { desc, extra })
}

fn path_id(id: Id) -> Result<String, OAuthError> {
    id.map(|Path(id)| id)
        .map_err(|_| OAuthError::invalid_request("invalid resource id in the path"))
}

/// The dialect's answer for an unknown id.
fn unknown(shared: &Shared, id: &str) -> OAuthError {
    match shared.dialect {
        // Keycloak 26: `{"error": "HTTP 404 Not Found"}`, no description.
        Dialect::Keycloak => OAuthError::new(StatusCode::NOT_FOUND, "HTTP 404 Not Found"),
        Dialect::Standard | Dialect::Wso2 => {
            OAuthError::not_found(format!("no resource with id `{id}`"))
        }
    }
}

/// A resource an operation may touch: any for the standard dialect and Keycloak, only the
/// PAT user's own for WSO2 (another owner's → 401).
fn owned<'s>(
    shared: &Shared,
    store: &'s Store,
    pat: &PatInfo,
    id: &str,
) -> Result<&'s Resource, OAuthError> {
    let resource = store.resource(id).ok_or_else(|| unknown(shared, id))?;
    if shared.dialect == Dialect::Wso2 && resource.desc.owner.as_deref() != Some(&pat.sub) {
        return Err(OAuthError::invalid_token(
            "the resource belongs to another owner",
            false,
        ));
    }
    Ok(resource)
}

/// A 409 if `owner` already has another resource called `name` (Keycloak and WSO2).
fn check_duplicate(
    shared: &Shared,
    store: &Store,
    desc: &ResourceDescription,
    except: Option<&str>,
) -> Result<(), OAuthError> {
    let Some(name) = desc.name.as_deref() else {
        return Ok(());
    };
    let taken = store.resources.iter().any(|r| {
        Some(r.id.as_str()) != except
            && r.desc.name.as_deref() == Some(name)
            && r.desc.owner == desc.owner
    });
    if !taken {
        return Ok(());
    }
    match shared.dialect {
        Dialect::Standard => Ok(()),
        Dialect::Keycloak => Err(OAuthError::new(StatusCode::CONFLICT, "invalid_request")
            .describe(format!("Resource with name [{name}] already exists."))),
        Dialect::Wso2 => Err(OAuthError::new(StatusCode::CONFLICT, "conflict")
            .describe(format!("Resource with name {name} already exists"))),
    }
}

/// Which of Keycloak's representations of a resource an answer carries: they differ.
#[derive(Clone, Copy, PartialEq, Eq)]
enum KeycloakView {
    /// The answer to a create: `owner` with `name`, `resource_scopes` and `scopes` as
    /// `{"id", "name"}` objects.
    Created,
    /// `GET …/{id}`: `owner` with its `id` only, `attributes`, `resource_scopes` and
    /// `scopes` as `{"name"}` objects.
    Read,
    /// An item of a `deep=true` list: `owner` with `name`, `attributes`, and only `scopes`
    /// (`{"id", "name"}`), no `resource_scopes`.
    Listed,
}

/// A stable, UUID-shaped id for a scope name (Keycloak's scopes have ids of their own).
fn scope_id(name: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("scope:{name}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    uuid_text(&b)
}

/// Keycloak's representation of a resource, as `view` shows it.
fn keycloak_representation(resource: &Resource, view: KeycloakView) -> Value {
    let desc = &resource.desc;
    let mut body = Map::new();
    body.insert("_id".to_owned(), Value::from(resource.id.as_str()));
    let mut put = |key: &str, value: Option<&String>| {
        if let Some(value) = value {
            body.insert(key.to_owned(), Value::from(value.as_str()));
        }
    };
    put("name", desc.name.as_ref());
    put("type", desc.r#type.as_ref());
    put("icon_uri", desc.icon_uri.as_ref());
    put("description", desc.description.as_ref());
    if let Some(owner) = &desc.owner {
        let owner = match view {
            KeycloakView::Read => json!({"id": owner}),
            KeycloakView::Created | KeycloakView::Listed => json!({"id": owner, "name": owner}),
        };
        body.insert("owner".to_owned(), owner);
    }
    body.insert("ownerManagedAccess".to_owned(), Value::Bool(false));
    body.insert("uris".to_owned(), Value::Array(Vec::new()));
    if view != KeycloakView::Created {
        body.insert("attributes".to_owned(), json!({}));
    }
    for (key, value) in &resource.extra {
        body.insert(key.clone(), value.clone());
    }
    let scopes: Vec<Value> = desc
        .resource_scopes
        .iter()
        .map(|s| match view {
            KeycloakView::Read => json!({"name": s}),
            KeycloakView::Created | KeycloakView::Listed => json!({"id": scope_id(s), "name": s}),
        })
        .collect();
    if view != KeycloakView::Listed {
        body.insert("resource_scopes".to_owned(), Value::Array(scopes.clone()));
    }
    body.insert("scopes".to_owned(), Value::Array(scopes));
    Value::Object(body)
}

/// The standard (and WSO2) representation: the description plus `_id`.
fn plain_representation(resource: &Resource) -> Result<Value, OAuthError> {
    let mut body = serde_json::to_value(&resource.desc)
        .map_err(|_| OAuthError::server_error("cannot encode the resource"))?;
    if let Some(object) = body.as_object_mut() {
        object.insert("_id".to_owned(), Value::from(resource.id.as_str()));
    }
    Ok(body)
}

/// `POST`: registers a resource.
pub(super) async fn create(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    respond(&shared, create_inner(&shared, &headers, body))
}

fn create_inner(shared: &Shared, headers: &HeaderMap, body: Body) -> Result<Response, OAuthError> {
    let pat = require_pat(shared, headers, Protection::Registration)?;
    let Parsed { mut desc, extra } = description(shared, headers, body)?;
    let PatInfo { sub, client_id } = pat;
    desc.owner.get_or_insert(sub);
    let id = shared.resource_id();
    let mut store = shared.store();
    check_duplicate(shared, &store, &desc, None)?;
    store.resources.push(Resource {
        id: id.clone(),
        desc,
        registered_by: Some(client_id),
        extra,
    });
    if shared.dialect == Dialect::Keycloak {
        let body = store
            .resource(&id)
            .map(|r| keycloak_representation(r, KeycloakView::Created))
            .unwrap_or_default();
        return Ok(json_response(StatusCode::CREATED, &body));
    }
    drop(store);
    let mut response = json_response(StatusCode::CREATED, &json!({"_id": id}));
    if let Ok(location) = HeaderValue::from_str(&shared.layout.resource_url(&shared.base, &id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// `GET` on the collection: the ids, filtered per dialect.
pub(super) async fn list(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    respond(&shared, list_inner(&shared, &headers, query.as_deref()))
}

fn list_inner(
    shared: &Shared,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Response, OAuthError> {
    let pat = require_pat(shared, headers, Protection::Registration)?;
    let params: Vec<(String, String)> = query
        .map(serde_urlencoded::from_str)
        .transpose()
        .map_err(|_| OAuthError::invalid_request("the query string is malformed"))?
        .unwrap_or_default();
    let param = |key: &str| {
        params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let store = shared.store();
    let body = match shared.dialect {
        Dialect::Standard => {
            let name = param("name");
            store
                .resources
                .iter()
                .filter(|r| name.is_none_or(|n| r.desc.name.as_deref() == Some(n)))
                .map(|r| Value::from(r.id.as_str()))
                .collect()
        }
        Dialect::Wso2 => store
            .resources
            .iter()
            .filter(|r| r.desc.owner.as_deref() == Some(pat.sub.as_str()))
            .map(|r| Value::from(r.id.as_str()))
            .collect(),
        Dialect::Keycloak => keycloak_list(&store, &param)?,
    };
    Ok(json_response(StatusCode::OK, &Value::Array(body)))
}

/// Keycloak's list filters (see the module docs).
fn keycloak_list<'q>(
    store: &Store,
    param: &impl Fn(&str) -> Option<&'q str>,
) -> Result<Vec<Value>, OAuthError> {
    let number = |key: &str| -> Result<Option<i64>, OAuthError> {
        param(key)
            .map(|v| {
                v.parse::<i64>()
                    .map_err(|_| OAuthError::invalid_request(format!("`{key}` must be a number")))
            })
            .transpose()
    };
    let first = number("first")?
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(0);
    // Keycloak: no `max` → its default page size; a negative one → no limit.
    let max = match number("max")? {
        None => KEYCLOAK_DEFAULT_MAX,
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
    };
    let flag = |key: &str| param(key) == Some("true");
    let name = param("name").map(str::to_lowercase);
    let matches = |r: &&Resource| {
        let desc = &r.desc;
        param("_id").is_none_or(|id| r.id == id)
            && name.as_deref().is_none_or(|n| {
                desc.name.as_deref().is_some_and(|name| {
                    if flag("exactName") {
                        param("name") == Some(name)
                    } else {
                        name.to_lowercase().contains(n)
                    }
                })
            })
            && param("owner").is_none_or(|o| desc.owner.as_deref() == Some(o))
            && param("type").is_none_or(|t| desc.r#type.as_deref() == Some(t))
            && param("scope").is_none_or(|s| desc.resource_scopes.iter().any(|x| x == s))
    };
    let matching_uri = flag("matchingUri");
    let uri_matches = |r: &&Resource| {
        param("uri").is_none_or(|uri| {
            r.extra
                .get("uris")
                .and_then(Value::as_array)
                .is_some_and(|uris| {
                    uris.iter().filter_map(Value::as_str).any(|pattern| {
                        if matching_uri {
                            uri_match(pattern, uri)
                        } else {
                            pattern == uri
                        }
                    })
                })
        })
    };
    // Keycloak matches the uris after paging (checked against 26.7): with `matchingUri`,
    // `first` and `max` count every resource the other filters keep.
    Ok(store
        .resources
        .iter()
        .filter(matches)
        .filter(|r| matching_uri || uri_matches(r))
        .skip(first)
        .take(max)
        .filter(|r| !matching_uri || uri_matches(r))
        .map(|r| {
            if flag("deep") {
                keycloak_representation(r, KeycloakView::Listed)
            } else {
                Value::from(r.id.as_str())
            }
        })
        .collect())
}

/// Whether the path `text` matches the registered `pattern` as Keycloak's `matchingUri` does:
/// a `{name}` segment matches any one segment, `*` any run of characters, and a pattern
/// ending in `/*` also its bare prefix (`/albums/*` matches `/albums`, as Keycloak 26 does).
fn uri_match(pattern: &str, text: &str) -> bool {
    if pattern.strip_suffix("/*") == Some(text) {
        return true;
    }
    if !pattern.contains('{') {
        return wildcard_match(pattern, text);
    }
    let (mut pattern_segments, mut text_segments) = (pattern.split('/'), text.split('/'));
    loop {
        match (pattern_segments.next(), text_segments.next()) {
            (None, None) => return true,
            (Some("*"), Some(_)) if pattern_segments.clone().next().is_none() => return true,
            (Some(p), Some(t)) if p.starts_with('{') && p.ends_with('}') && !t.is_empty() => {}
            (Some(p), Some(t)) if wildcard_match(p, t) => {}
            _ => return false,
        }
    }
}

/// Whether `text` matches `pattern`, where `*` matches any run of characters.
fn wildcard_match(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let Some(head) = parts.next() else {
        return true;
    };
    let Some(mut rest) = text.strip_prefix(head) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// `GET` on an item.
pub(super) async fn read(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    id: Id,
) -> Response {
    respond(&shared, read_inner(&shared, &headers, id))
}

fn read_inner(shared: &Shared, headers: &HeaderMap, id: Id) -> Result<Response, OAuthError> {
    let pat = require_pat(shared, headers, Protection::Registration)?;
    let id = path_id(id)?;
    let store = shared.store();
    let resource = owned(shared, &store, &pat, &id)?;
    let body = match shared.dialect {
        Dialect::Keycloak => keycloak_representation(resource, KeycloakView::Read),
        Dialect::Standard | Dialect::Wso2 => plain_representation(resource)?,
    };
    Ok(json_response(StatusCode::OK, &body))
}

/// `PUT` on an item: replaces the description.
pub(super) async fn update(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    id: Id,
    body: Body,
) -> Response {
    respond(&shared, update_inner(&shared, &headers, id, body))
}

fn update_inner(
    shared: &Shared,
    headers: &HeaderMap,
    id: Id,
    body: Body,
) -> Result<Response, OAuthError> {
    let pat = require_pat(shared, headers, Protection::Registration)?;
    let id = path_id(id)?;
    let Parsed { mut desc, extra } = description(shared, headers, body)?;
    let mut store = shared.store();
    let current_owner = owned(shared, &store, &pat, &id)?.desc.owner.clone();
    if desc.owner.is_none() {
        desc.owner = current_owner;
    }
    check_duplicate(shared, &store, &desc, Some(&id))?;
    let resource = store
        .resource_mut(&id)
        .ok_or_else(|| unknown(shared, &id))?;
    resource.desc = desc;
    resource.extra = extra;
    drop(store);
    Ok(match shared.dialect {
        Dialect::Standard => json_response(StatusCode::OK, &json!({"_id": id})),
        Dialect::Keycloak => StatusCode::NO_CONTENT.into_response(),
        Dialect::Wso2 => json_response(StatusCode::CREATED, &json!({"_id": id})),
    })
}

/// `DELETE` on an item.
pub(super) async fn delete(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    id: Id,
) -> Response {
    respond(&shared, delete_inner(&shared, &headers, id))
}

fn delete_inner(shared: &Shared, headers: &HeaderMap, id: Id) -> Result<Response, OAuthError> {
    let pat = require_pat(shared, headers, Protection::Registration)?;
    let id = path_id(id)?;
    let mut store = shared.store();
    owned(shared, &store, &pat, &id)?;
    store.resources.retain(|r| r.id != id);
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard_match("/albums/*", "/albums/1"));
        assert!(wildcard_match("/albums/*", "/albums/"));
        assert!(!wildcard_match("/albums/*", "/photos/1"));
        assert!(wildcard_match("/a/*/b/*", "/a/x/b/y"));
        assert!(wildcard_match("/exact", "/exact"));
        assert!(!wildcard_match("/exact", "/exact/more"));
        assert!(wildcard_match("*", "anything"));
        assert!(!wildcard_match("/a/*/c", "/a/b"));
    }

    #[test]
    fn matching_uris_as_keycloak_matches_them() {
        // Checked against Keycloak 26.7 (`?uri=…&matchingUri=true`).
        assert!(uri_match("/k/*", "/k/a/b"));
        assert!(uri_match("/k/*", "/k"));
        assert!(uri_match("/x/{id}/y", "/x/7/y"));
        assert!(!uri_match("/x/{id}/y", "/x/7/z"));
        assert!(!uri_match("/x/{id}/y", "/x//y"));
        assert!(uri_match("/x/{id}/*", "/x/7/y/z"));
        assert!(!uri_match("/x/{id}", "/x/7/8"));
        assert!(!uri_match("/k/*", "/other"));
    }
}
