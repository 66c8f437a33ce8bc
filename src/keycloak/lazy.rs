//! Lazy paths: a request path no route matches is resolved at the AS by the resources' `uris`
//! (Keycloak's `GET {resource_set}?uri=…&matchingUri=true&deep=true`), through a bounded
//! path cache that also keeps "no resource" answers.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use serde_json::Value;

use super::parse::{DEFAULT_LIFESPAN_MS, DEFAULT_MAX_ENTRIES};
use super::rule::scopes_for;
use crate::gate::AsEndpoint;
use crate::protection::{AsClient, CallError, Failure};
use crate::resources::{Protected, ResourceRef};
use crate::token::Pat;

/// The settings of lazy paths: Keycloak's `lazy-load-paths` with its `path-cache`.
///
/// A request whose path no route of the [`ResourceMap`](crate::ResourceMap) matches is not
/// unmapped at once: the layer asks the AS for the resource whose `uris` match the path
/// (Keycloak's resource-set query with `matchingUri=true`) and decides the request for that
/// resource; without one, the request is unmapped. Answers, "no resource" included, are kept
/// in a path cache of [`max_entries`](Self::max_entries) paths for
/// [`lifespan`](Self::lifespan); failures are not kept, and the request they concern is
/// refused as when the AS is unreachable (`403` + `Warning`).
///
/// The scopes a request needs from a resource found this way follow Keycloak's enforcer: the
/// method's name with [`method_as_scope`](Self::method_as_scope), else the resource's scopes;
/// any one of them is enough, and a resource without scopes needs any valid permission for it.
///
/// Routes of the map always win: a path a route matches is decided by the route, never by the
/// AS's `uris` or the cache (Keycloak's enforcer lets a cached or server-side answer override
/// a configured wildcard path, keycloak/keycloak-client#190). A resource found this way that
/// one of [`exclude_names`](Self::exclude_names) names (the resources the configuration binds
/// to paths) is treated as no resource: its configured paths decide its rules, not the
/// resource's generic scopes. The path the AS is asked about is the normalised path, after
/// every refusal of [`PathError`](crate::resources::PathError).
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tower_uma::keycloak::LazyPaths;
///
/// let lazy = LazyPaths::new()
///     .max_entries(500)
///     .lifespan(Some(Duration::from_secs(10)))
///     .exclude_names(["Admin Resource"]);
/// # let _ = lazy;
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub struct LazyPaths {
    max_entries: u64,
    lifespan: Option<Duration>,
    method_as_scope: bool,
    excluded: Vec<String>,
}

impl Default for LazyPaths {
    fn default() -> Self {
        Self::new()
    }
}

impl LazyPaths {
    /// Keycloak's defaults: 1000 paths kept for 30 s, the resource's scopes, nothing excluded.
    pub fn new() -> Self {
        Self {
            max_entries: DEFAULT_MAX_ENTRIES,
            lifespan: Some(Duration::from_millis(DEFAULT_LIFESPAN_MS)),
            method_as_scope: false,
            excluded: Vec::new(),
        }
    }

    /// How many paths the cache keeps (`path-cache.max-entries`); `0` keeps none. Defaults to
    /// 1000.
    pub fn max_entries(mut self, max: u64) -> Self {
        self.max_entries = max;
        self
    }

    /// How long an answer is kept (`path-cache.lifespan`); `None` keeps it until evicted
    /// (Keycloak's `-1`), zero keeps nothing. Defaults to 30 s.
    pub fn lifespan(mut self, lifespan: Option<Duration>) -> Self {
        self.lifespan = lifespan;
        self
    }

    /// Uses the method's name as the scope (`http-method-as-scope`). Defaults to off: the
    /// resource's scopes.
    pub fn method_as_scope(mut self, on: bool) -> Self {
        self.method_as_scope = on;
        self
    }

    /// Resource names that lazy paths never resolve to (the resources bound to configured
    /// paths). Defaults to none.
    pub fn exclude_names(mut self, names: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.excluded.extend(names.into_iter().map(Into::into));
        self
    }

    fn caches(&self) -> bool {
        self.max_entries > 0 && self.lifespan != Some(Duration::ZERO)
    }
}

/// A resource found by its `uris`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Found {
    id: String,
    scopes: Vec<String>,
}

/// The layer's lazy-path resolver: the settings, the AS client and the path cache.
pub(crate) struct LazyResolver {
    settings: LazyPaths,
    client: Arc<AsClient>,
    endpoint: String,
    cache: moka::future::Cache<String, Option<Arc<Found>>>,
}

impl std::fmt::Debug for LazyResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyResolver")
            .field("settings", &self.settings)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl LazyResolver {
    /// A resolver asking `endpoint` (the resource registration endpoint) through `client`.
    pub(crate) fn new(settings: LazyPaths, client: Arc<AsClient>, endpoint: String) -> Self {
        let mut cache = moka::future::Cache::builder().max_capacity(settings.max_entries);
        if let Some(lifespan) = settings.lifespan {
            cache = cache.time_to_live(lifespan);
        }
        Self {
            cache: cache.build(),
            settings,
            client,
            endpoint,
        }
    }

    /// What a request with `method` to the normalised `path` needs, when the AS has a
    /// resource for the path; `None` when it has none (or only an excluded one).
    ///
    /// # Errors
    ///
    /// The AS call's failure (never cached).
    pub(crate) async fn resolve(
        &self,
        method: &Method,
        path: &str,
    ) -> Result<Option<(String, Protected<'static>)>, CallError> {
        let found = if self.settings.caches() {
            self.cache
                .try_get_with(path.to_owned(), self.find(path))
                .await
                .map_err(|e| (*e).clone())?
        } else {
            self.find(path).await?
        };
        Ok(found.map(|found| {
            let (scopes, scope_mode) =
                scopes_for(method, &[], &found.scopes, self.settings.method_as_scope);
            let need = Protected {
                resource: std::borrow::Cow::Owned(ResourceRef::Id(found.id.clone())),
                bound: None,
                scopes: std::borrow::Cow::Owned(scopes),
                scope_mode,
                enforcement: None,
            };
            (found.id.clone(), need)
        }))
    }

    /// Asks the AS for the first resource whose `uris` match `path`.
    async fn find(&self, path: &str) -> Result<Option<Arc<Found>>, CallError> {
        let build = |pat: &Pat| request(&self.endpoint, path, true, pat);
        let found = self
            .client
            .protected(AsEndpoint::ResourceRegistration, build, parse)
            .await?;
        Ok(found
            .filter(|(_, name)| {
                name.as_ref()
                    .is_none_or(|n| !self.settings.excluded.contains(n))
            })
            .map(|(found, _)| Arc::new(found)))
    }
}

/// `GET {endpoint}?uri={path}[&matchingUri=true]&deep=true&max=-1`: the resources whose
/// `uris` hold the path (or, with `matching`, match it), with their scopes. Keycloak pages its
/// list *before* it matches the uris (checked against Keycloak 26.7: `max=1` finds nothing
/// unless the match is the first resource of all), so the query asks for every page.
fn request(
    endpoint: &str,
    path: &str,
    matching: bool,
    pat: &Pat,
) -> Result<http::Request<Bytes>, Failure> {
    let mut url = url::Url::parse(endpoint)
        .map_err(|_| Failure::Unsendable("the resource registration endpoint is not a URL"))?;
    {
        let mut query = url.query_pairs_mut();
        query.append_pair("uri", path);
        if matching {
            query.append_pair("matchingUri", "true");
        }
        query.append_pair("deep", "true").append_pair("max", "-1");
    }
    let auth = crate::protection::bearer(pat.secret())?;
    crate::protection::build(
        Method::GET,
        url.as_str(),
        [auth, crate::protection::accept_json()],
        Bytes::new(),
    )
}

/// The id of the one resource a configured path without `name` stands for, as Keycloak's
/// enforcer finds it at start-up: the resources whose `uris` hold the path as written, else
/// those whose `uris` match it; `None` when there is none.
///
/// # Errors
///
/// The AS call's failure, or several resources for the path (Keycloak refuses to start then
/// too).
pub(crate) async fn resource_for_uri(
    client: &AsClient,
    endpoint: &str,
    uri: &str,
) -> Result<Option<String>, crate::Error> {
    let doing = || format!("looking up the resource of the path {uri:?} by its uri");
    let mut ids = Vec::new();
    for matching in [false, true] {
        let build = |pat: &Pat| request(endpoint, uri, matching, pat);
        let listed = client
            .registration(build, crate::protection::resource_set::parse_list)
            .await
            .map_err(|e| e.into_error(doing()))?;
        ids = listed.ids;
        if !ids.is_empty() {
            break;
        }
    }
    match ids.as_slice() {
        [] => Ok(None),
        [id] => Ok(Some(id.clone())),
        _ => Err(crate::Error::config(format!(
            "{}: {} resources hold it; name the one meant with `name`",
            doing(),
            ids.len()
        ))),
    }
}

/// Reads the answer: an array of resource representations, the first one used. Its scopes
/// are Keycloak's `scopes` (listings) or `resource_scopes` (reads), as strings or
/// `{"name": …}` objects, sorted.
fn parse(answer: http::Response<Bytes>) -> Result<Option<(Found, Option<String>)>, Failure> {
    let (parts, body) = answer.into_parts();
    if !parts.status.is_success() {
        return Err(Failure::Status(crate::protection::Answer::of(
            parts.status,
            &body,
        )));
    }
    let unusable = |what: &str| Failure::Unusable(what.to_owned().into());
    let value: Value =
        serde_json::from_slice(&body).map_err(|_| unusable("with a body that is not JSON"))?;
    let Value::Array(items) = value else {
        return Err(unusable("with a body that is not a JSON array"));
    };
    let Some(first) = items.first() else {
        return Ok(None);
    };
    let id = first
        .get("_id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| unusable("with a resource without `_id`"))?;
    let scopes = crate::protection::resource_set::scopes_of(
        first.get("scopes").or_else(|| first.get("resource_scopes")),
    );
    let name = first.get("name").and_then(Value::as_str).map(str::to_owned);
    Ok(Some((
        Found {
            id: id.to_owned(),
            scopes,
        },
        name,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protection::canned::answer;

    #[test]
    fn the_query_asks_for_the_first_match_with_scopes() {
        let r = request(
            "https://kc.test/realms/r/authz/protection/resource_set",
            "/albums/a b%2Fc",
            true,
            &Pat::new("p"),
        )
        .expect("a request");
        assert_eq!(
            r.uri(),
            "https://kc.test/realms/r/authz/protection/resource_set?uri=%2Falbums%2Fa+b%252Fc&matchingUri=true&deep=true&max=-1"
        );
        assert_eq!(r.headers()[http::header::AUTHORIZATION], "Bearer p");
    }

    #[test]
    fn answers_are_read_in_keycloaks_shapes() {
        let listed = r#"[{"name":"n","_id":"r1","uris":["/a/*"],
            "scopes":[{"id":"s","name":"view"},{"id":"t","name":"edit"}]}]"#;
        let (found, name) = parse(answer(200, listed)).expect("ok").expect("found");
        assert_eq!(found.id, "r1");
        assert_eq!(found.scopes, ["edit", "view"]);
        assert_eq!(name.as_deref(), Some("n"));
        let plain = r#"[{"_id":"r2","resource_scopes":["a"]}]"#;
        let (found, name) = parse(answer(200, plain)).expect("ok").expect("found");
        assert_eq!((found.scopes, name), (vec!["a".to_owned()], None));
        assert_eq!(parse(answer(200, "[]")), Ok(None));
        assert!(parse(answer(200, "{}")).is_err());
        assert!(parse(answer(200, r#"[{"name":"x"}]"#)).is_err());
        assert!(parse(answer(500, "")).is_err());
    }
}
