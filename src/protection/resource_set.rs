//! The resource registration endpoint (FedAuthz §3.2): the requests of create, read, update,
//! delete and list, and the parsing of their answers, tolerant of every shape of
//! docs/protocol.md §4.5.

use bytes::Bytes;
use serde_json::Value;

use super::{Answer, Failure, accept_json, bearer, json_body};
use crate::resources::ResourceDecl;
use crate::token::Pat;

/// A resource as the AS describes it (FedAuthz §3.1), read tolerantly.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub(crate) struct RegisteredResource {
    /// The AS-assigned `_id`.
    pub(crate) id: String,
    /// `name`.
    pub(crate) name: Option<String>,
    /// `type`.
    pub(crate) r#type: Option<String>,
    /// `description`.
    pub(crate) description: Option<String>,
    /// `icon_uri`.
    pub(crate) icon_uri: Option<String>,
    /// `resource_scopes`, sorted.
    pub(crate) resource_scopes: Vec<String>,
}

impl RegisteredResource {
    /// The description in `v` of the resource `id`.
    fn from_json(id: &str, v: &Value) -> Self {
        Self {
            id: text(v, "_id").unwrap_or_else(|| id.to_owned()),
            name: text(v, "name"),
            r#type: text(v, "type"),
            description: text(v, "description"),
            icon_uri: text(v, "icon_uri"),
            resource_scopes: scopes_of(v.get("resource_scopes")),
        }
    }
}

/// The JSON description sent on create and update (FedAuthz §3.1); with `all_fields`, the
/// optional members are sent even when empty (WSO2 requires them, docs/protocol.md §4.3).
pub(crate) fn description(decl: &ResourceDecl, all_fields: bool) -> Result<Bytes, Failure> {
    let unwritable = |_| Failure::Unsendable("the resource description cannot be written");
    let mut v = serde_json::to_value(decl).map_err(unwritable)?;
    if all_fields && let Value::Object(map) = &mut v {
        for key in ["type", "icon_uri", "description"] {
            map.entry(key)
                .or_insert_with(|| Value::String(String::new()));
        }
    }
    serde_json::to_vec(&v).map(Bytes::from).map_err(unwritable)
}

/// `GET {endpoint}`, or one page of it: `first` and `max` in the query (Keycloak,
/// docs/protocol.md §4.2).
pub(crate) fn list(
    endpoint: &str,
    page: Option<(usize, usize)>,
    pat: &Pat,
) -> Result<http::Request<Bytes>, Failure> {
    let url = match page {
        Some((first, max)) => page_url(endpoint, first, max),
        None => endpoint.to_owned(),
    };
    send(http::Method::GET, &url, None, pat)
}

/// `GET {endpoint}?name=…&exactName=true&owner=…&max=-1`: the ids of the resources of that
/// exact name owned by `owner` (Keycloak's query; `max=-1` lists them all).
pub(crate) fn find_named(
    endpoint: &str,
    name: &str,
    owner: &str,
    pat: &Pat,
) -> Result<http::Request<Bytes>, Failure> {
    let mut url = url::Url::parse(endpoint)
        .map_err(|_| Failure::Unsendable("the resource registration endpoint is not a URL"))?;
    url.query_pairs_mut()
        .append_pair("name", name)
        .append_pair("exactName", "true")
        .append_pair("owner", owner)
        .append_pair("max", "-1");
    send(http::Method::GET, url.as_str(), None, pat)
}

/// `GET {endpoint}/{id}`.
pub(crate) fn read(endpoint: &str, id: &str, pat: &Pat) -> Result<http::Request<Bytes>, Failure> {
    send(http::Method::GET, &item_url(endpoint, id), None, pat)
}

/// `POST {endpoint}` of a description (see [`description`]).
pub(crate) fn create(
    endpoint: &str,
    description: Bytes,
    pat: &Pat,
) -> Result<http::Request<Bytes>, Failure> {
    send(http::Method::POST, endpoint, Some(description), pat)
}

/// `PUT {endpoint}/{id}` of the full description, which replaces the old one (§3.2.3).
pub(crate) fn update(
    endpoint: &str,
    id: &str,
    description: Bytes,
    pat: &Pat,
) -> Result<http::Request<Bytes>, Failure> {
    send(
        http::Method::PUT,
        &item_url(endpoint, id),
        Some(description),
        pat,
    )
}

/// `DELETE {endpoint}/{id}`.
pub(crate) fn delete(endpoint: &str, id: &str, pat: &Pat) -> Result<http::Request<Bytes>, Failure> {
    send(http::Method::DELETE, &item_url(endpoint, id), None, pat)
}

/// A request with the PAT as bearer, accepting JSON, with a JSON body when there is one.
fn send(
    method: http::Method,
    url: &str,
    body: Option<Bytes>,
    pat: &Pat,
) -> Result<http::Request<Bytes>, Failure> {
    let auth = bearer(pat.secret())?;
    match body {
        Some(body) => super::build(method, url, [auth, accept_json(), json_body()], body),
        None => super::build(method, url, [auth, accept_json()], Bytes::new()),
    }
}

/// `endpoint` with the query of one list page: `first` and `max` (Keycloak).
fn page_url(endpoint: &str, first: usize, max: usize) -> String {
    match url::Url::parse(endpoint) {
        Ok(mut url) => {
            url.query_pairs_mut()
                .append_pair("first", &first.to_string())
                .append_pair("max", &max.to_string());
            url.into()
        }
        Err(_) => format!("{endpoint}?first={first}&max={max}"),
    }
}

/// What a resource id is escaped with in a path segment: everything but the unreserved
/// characters (RFC 3986 §2.3). Escaping those is not normal form (RFC 3986 §6.2.2.2), and
/// Keycloak refuses such a path (`400 missingNormalization`), its UUID ids being full of `-`.
const ID_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn item_url(endpoint: &str, id: &str) -> String {
    let id: String = if id.bytes().all(|b| b == b'.') {
        // `.` and `..` would be dot segments; escaped, they are plain names.
        id.replace('.', "%2E")
    } else {
        percent_encoding::utf8_percent_encode(id, ID_SEGMENT).collect()
    };
    format!("{}/{id}", endpoint.trim_end_matches('/'))
}

/// One page of a list (§3.2.5).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Listed {
    /// The ids, as strings or as objects' `_id`.
    pub(crate) ids: Vec<String>,
    /// How many items the page held, ids or not (to tell a short page).
    pub(crate) items: usize,
}

/// Reads a list: a success with a JSON array.
pub(crate) fn parse_list(answer: http::Response<Bytes>) -> Result<Listed, Failure> {
    let body = success(answer)?;
    let Value::Array(items) = body else {
        return Err(Failure::Unusable(
            "with a body that is not a JSON array".into(),
        ));
    };
    let ids = items
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned).or_else(|| text(v, "_id")))
        .collect();
    Ok(Listed {
        ids,
        items: items.len(),
    })
}

/// Reads the description of resource `id`; `None` when the AS has no such resource (`404`:
/// deleted since it was listed).
pub(crate) fn parse_read(
    id: &str,
    answer: http::Response<Bytes>,
) -> Result<Option<RegisteredResource>, Failure> {
    if answer.status() == http::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    let body = success(answer)?;
    Ok(Some(RegisteredResource::from_json(id, &body)))
}

/// What a create made.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Created {
    /// The new resource's id: its `_id`, or the last segment of `Location`.
    Id(String),
    /// `409`: the AS has a resource of that name already.
    Conflict,
}

/// Reads a create's answer (§3.2.1, and the shapes of docs/protocol.md §4.5).
pub(crate) fn parse_created(answer: http::Response<Bytes>) -> Result<Created, Failure> {
    let status = answer.status();
    if status == http::StatusCode::CONFLICT {
        return Ok(Created::Conflict);
    }
    let location = answer
        .headers()
        .get(http::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = success(answer)?;
    text(&body, "_id")
        .or_else(|| {
            location
                .as_deref()
                .and_then(|l| l.trim_end_matches('/').rsplit('/').next())
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        })
        .map(Created::Id)
        .ok_or_else(|| Failure::Unusable(format!("{} without an `_id`", status.as_u16()).into()))
}

/// Reads an update's answer: any success (`200`, `201`, `204`).
pub(crate) fn parse_updated(answer: http::Response<Bytes>) -> Result<(), Failure> {
    success(answer).map(drop)
}

/// Reads a delete's answer: any success, or `404` (the resource is gone either way).
pub(crate) fn parse_deleted(answer: http::Response<Bytes>) -> Result<(), Failure> {
    if answer.status() == http::StatusCode::NOT_FOUND {
        return Ok(());
    }
    success(answer).map(drop)
}

/// The JSON body of a success (`Null` when it is not JSON); otherwise the AS's refusal, quoted.
fn success(answer: http::Response<Bytes>) -> Result<Value, Failure> {
    let (parts, body) = answer.into_parts();
    if !parts.status.is_success() {
        return Err(Failure::Status(Answer::of(parts.status, &body)));
    }
    Ok(serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// Scopes as strings or `{"name": …}` objects (docs/protocol.md §4.2, §4.5).
pub(crate) fn scopes_of(v: Option<&Value>) -> Vec<String> {
    let mut out: Vec<String> = v
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|s| {
                    s.as_str()
                        .or_else(|| s.get("name").and_then(Value::as_str))
                        .map(str::to_owned)
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out.dedup();
    out
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::AsEndpoint;
    use crate::protection::CallError;
    use crate::protection::canned::answer;
    use serde_json::json;

    fn pat() -> Pat {
        Pat::new("pat-1")
    }

    #[test]
    fn item_urls_escape_ids() {
        assert_eq!(
            item_url("https://as/rreg/", "a b/c"),
            "https://as/rreg/a%20b%2Fc"
        );
        assert_eq!(item_url("https://as/rreg", "r1"), "https://as/rreg/r1");
    }

    #[test]
    fn item_urls_keep_unreserved_characters() {
        // Keycloak's ids are UUIDs; it refuses `%2D` for `-` with 400 "Request path not
        // normalized" (RFC 3986 §6.2.2.2: escaped unreserved characters are not normal).
        assert_eq!(
            item_url("https://as/rreg", "a32fdafe-3e3d-4d95-b6a0-af2f26307f04"),
            "https://as/rreg/a32fdafe-3e3d-4d95-b6a0-af2f26307f04"
        );
        assert_eq!(
            item_url("https://as/rreg", "a.b_c~d"),
            "https://as/rreg/a.b_c~d"
        );
        // A whole segment of dots would be a dot segment: escaped.
        assert_eq!(item_url("https://as/rreg", ".."), "https://as/rreg/%2E%2E");
        assert_eq!(item_url("https://as/rreg", "."), "https://as/rreg/%2E");
    }

    #[test]
    fn requests() {
        let list = list("https://as.test/rreg", Some((100, 100)), &pat()).expect("a request");
        assert_eq!(list.method(), http::Method::GET);
        assert_eq!(list.uri(), "https://as.test/rreg?first=100&max=100");
        assert_eq!(list.headers()[http::header::AUTHORIZATION], "Bearer pat-1");
        assert_eq!(list.headers()[http::header::ACCEPT], "application/json");
        assert!(list.headers().get(http::header::CONTENT_TYPE).is_none());
        assert!(list.body().is_empty());
        let read = read("https://as.test/rreg/", "a b", &pat()).expect("a request");
        assert_eq!(read.uri(), "https://as.test/rreg/a%20b");
        let decl = ResourceDecl::new("album", ["view"]);
        let create = create(
            "https://as.test/rreg",
            description(&decl, false).expect("a body"),
            &pat(),
        )
        .expect("a request");
        assert_eq!(create.method(), http::Method::POST);
        assert_eq!(
            create.headers()[http::header::CONTENT_TYPE],
            "application/json"
        );
        let sent: Value = serde_json::from_slice(create.body()).expect("json");
        assert_eq!(sent, json!({"name": "album", "resource_scopes": ["view"]}));
        let update = update(
            "https://as.test/rreg",
            "r1",
            Bytes::from_static(b"{}"),
            &pat(),
        )
        .expect("a request");
        assert_eq!(
            (update.method(), update.uri().to_string()),
            (&http::Method::PUT, "https://as.test/rreg/r1".to_owned())
        );
        let delete = delete("https://as.test/rreg", "r1", &pat()).expect("a request");
        assert_eq!(delete.method(), http::Method::DELETE);
    }

    #[test]
    fn wso2_gets_every_field() {
        let decl = ResourceDecl::new("album", ["view"]);
        let sent: Value =
            serde_json::from_slice(&description(&decl, true).expect("a body")).expect("json");
        assert_eq!(
            sent,
            json!({"name": "album", "resource_scopes": ["view"], "type": "", "icon_uri": "",
                   "description": ""})
        );
    }

    #[test]
    fn reads_scope_objects_and_full_objects() {
        // docs/protocol.md §11 check 35, §4.5
        let body = json!({"_id": "0d3c", "name": "Invoice",
            "resource_scopes": [{"name": "write"}, {"name": "read"}],
            "owner": {"id": "o"}, "uris": ["/i"]});
        let r = parse_read("x", answer(200, body.to_string()))
            .expect("read")
            .expect("found");
        assert_eq!(r.id, "0d3c");
        assert_eq!(r.resource_scopes, ["read", "write"]);
        assert_eq!(r.name.as_deref(), Some("Invoice"));
        assert_eq!(parse_read("x", answer(404, "")), Ok(None));
        // No body: the id asked for, nothing else.
        assert_eq!(
            parse_read("x", answer(200, ""))
                .expect("read")
                .expect("found")
                .id,
            "x"
        );
    }

    #[test]
    fn lists_of_ids_or_objects() {
        let listed =
            parse_list(answer(200, r#"["a", {"_id": "b"}, 5, {"name": "c"}]"#)).expect("a list");
        assert_eq!(
            listed,
            Listed {
                ids: vec!["a".to_owned(), "b".to_owned()],
                items: 4
            }
        );
        let f = parse_list(answer(200, r#"{"_id": "a"}"#)).expect_err("not a list");
        assert_eq!(
            CallError::new(AsEndpoint::ResourceRegistration, f).to_string(),
            "resource registration endpoint answered with a body that is not a JSON array"
        );
    }

    #[test]
    fn creates_read_every_shape() {
        assert_eq!(
            parse_created(answer(201, r#"{"_id": "r1"}"#)),
            Ok(Created::Id("r1".to_owned()))
        );
        let mut located = answer(201, "");
        located.headers_mut().insert(
            http::header::LOCATION,
            http::HeaderValue::from_static("https://as.test/rreg/r2/"),
        );
        assert_eq!(parse_created(located), Ok(Created::Id("r2".to_owned())));
        assert_eq!(parse_created(answer(409, "")), Ok(Created::Conflict));
        let f = parse_created(answer(200, "{}")).expect_err("no id");
        assert_eq!(
            CallError::new(AsEndpoint::ResourceRegistration, f).to_string(),
            "resource registration endpoint answered 200 without an `_id`"
        );
        let f = parse_created(answer(
            400,
            r#"{"code":"invalid_request","description":"Resource scopes are missing"}"#,
        ))
        .expect_err("refused");
        assert_eq!(
            CallError::new(AsEndpoint::ResourceRegistration, f).to_string(),
            "resource registration endpoint answered 400 invalid_request (Resource scopes are \
             missing)"
        );
    }

    #[test]
    fn updates_and_deletes() {
        for status in [200, 201, 204] {
            assert_eq!(parse_updated(answer(status, "")), Ok(()), "{status}");
        }
        assert!(parse_updated(answer(404, "")).is_err());
        for status in [200, 204, 404] {
            assert_eq!(parse_deleted(answer(status, "")), Ok(()), "{status}");
        }
        assert!(matches!(
            parse_deleted(answer(500, "")),
            Err(Failure::Status(a)) if a.status() == 500
        ));
    }
}
