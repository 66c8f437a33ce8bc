//! Reading Keycloak's adapter JSON: every key checked, every error naming its JSON path.
//!
//! The file is walked as a `serde_json::Value` rather than derived with serde, so that an
//! error can say exactly where it is (`policy-enforcer.paths[2].methods[0].method`) and so
//! that the three kinds of keys (supported, accepted without meaning here, not supported yet)
//! are told apart.

use std::time::Duration;

use http::Method;
use serde_json::{Map, Value};

use super::KeycloakConfigError;
use crate::resources::ScopeMode;

/// Keycloak's default `path-cache.max-entries` (`PolicyEnforcerConfig.PathCacheConfig`).
pub(crate) const DEFAULT_MAX_ENTRIES: u64 = 1000;
/// Keycloak's default `path-cache.lifespan`, in milliseconds.
pub(crate) const DEFAULT_LIFESPAN_MS: u64 = 30_000;

/// Adapter keys (`AdapterConfig`, `BaseAdapterConfig`, `BaseRealmConfig`) that concern a
/// browser-facing adapter, the token check Keycloak's adapters do themselves, or CORS: they
/// are accepted and have no effect on the layer.
const IGNORED_TOP: &[&str] = &[
    "ssl-required",
    "confidential-port",
    "realm-public-key",
    "use-resource-role-mappings",
    "enable-cors",
    "cors-max-age",
    "cors-allowed-headers",
    "cors-allowed-methods",
    "cors-exposed-headers",
    "expose-token",
    "bearer-only",
    "autodetect-bearer-only",
    "enable-basic-auth",
    "redirect-rewrite-rules",
    "always-refresh-token",
    "register-node-at-startup",
    "register-node-period",
    "token-store",
    "adapter-state-cookie-path",
    "principal-attribute",
    "turn-off-change-session-id-on-login",
    "token-minimum-time-to-live",
    "min-time-between-jwks-requests",
    "public-key-cache-ttl",
    "enable-pkce",
    "ignore-oauth-query-parameter",
    "verify-token-audience",
    "connection-pool-size",
    "connection-ttl-millis",
];

/// Adapter keys that change how the AS is reached (TLS trust, client certificates, a proxy):
/// silently dropping them would connect otherwise than configured, so they are refused.
const UNSUPPORTED_TOP: &[(&str, &str)] = &[
    (
        "truststore",
        "add the trusted roots to the layer's HTTP client with \
         UmaLayerBuilder::http_client_builder(|b| b.add_root_certificate(..))",
    ),
    ("truststore-password", "see `truststore`"),
    (
        "client-keystore",
        "client certificates are not supported; use `credentials.secret`",
    ),
    ("client-keystore-password", "see `client-keystore`"),
    ("client-key-password", "see `client-keystore`"),
    (
        "disable-trust-manager",
        "tower-uma always verifies the AS's certificate",
    ),
    (
        "allow-any-hostname",
        "tower-uma always verifies the AS's host name",
    ),
    (
        "proxy-url",
        "set the proxy on the layer's HTTP client with \
         UmaLayerBuilder::http_client_builder(|b| b.proxy(..))",
    ),
];

/// The enforcer settings this crate maps (see the module docs' table).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Parsed {
    pub(crate) realm: String,
    pub(crate) auth_server_url: String,
    pub(crate) resource: String,
    pub(crate) secret: String,
    pub(crate) connect_timeout: Option<Duration>,
    pub(crate) request_timeout: Option<Duration>,
    pub(crate) enforcer: Enforcer,
}

/// The `policy-enforcer` section.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub(crate) struct Enforcer {
    pub(crate) paths: Vec<PathEntry>,
    pub(crate) lazy_load_paths: bool,
    /// `path-cache`: `max-entries`, and `lifespan` (`None`: entries never expire, Keycloak's
    /// `-1`; zero: nothing is cached).
    pub(crate) path_cache: Option<(u64, Option<Duration>)>,
    pub(crate) http_method_as_scope: bool,
    pub(crate) user_managed_access: bool,
    /// `claim-information-point.claims` for every path.
    pub(crate) claims: ClaimTemplates,
    /// `on-deny-redirect-to`, checked to be a header value.
    pub(crate) on_deny_redirect_to: Option<http::HeaderValue>,
}

/// The `claims` provider's configuration: each claim's name and value templates, in order.
pub(crate) type ClaimTemplates = Vec<(String, Vec<String>)>;

/// One entry of `paths`, merged with later entries of the same `path` (as Keycloak does).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PathEntry {
    /// Where the entry is, for messages: `policy-enforcer.paths[N]`.
    pub(crate) at: String,
    pub(crate) name: Option<String>,
    pub(crate) id: Option<String>,
    pub(crate) path: String,
    pub(crate) methods: Vec<MethodEntry>,
    pub(crate) scopes: Vec<String>,
    /// `enforcement-mode: DISABLED`.
    pub(crate) disabled: bool,
    /// `claim-information-point.claims` of this path.
    pub(crate) claims: ClaimTemplates,
}

/// One entry of `methods`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MethodEntry {
    pub(crate) method: Method,
    pub(crate) scopes: Vec<String>,
    pub(crate) mode: ScopeMode,
}

/// A JSON object being read: the keys seen so far, to refuse unknown ones at the end.
struct Obj<'v> {
    at: String,
    map: &'v Map<String, Value>,
    seen: Vec<&'static str>,
}

fn err(at: &str, message: impl Into<String>) -> KeycloakConfigError {
    KeycloakConfigError::new(at, message)
}

fn join(at: &str, key: &str) -> String {
    if at.is_empty() {
        key.to_owned()
    } else {
        format!("{at}.{key}")
    }
}

impl<'v> Obj<'v> {
    fn new(at: String, value: &'v Value) -> Result<Self, KeycloakConfigError> {
        match value {
            Value::Object(map) => Ok(Self {
                at,
                map,
                seen: Vec::new(),
            }),
            _ => Err(err(&at, "must be a JSON object")),
        }
    }

    fn path(&self, key: &str) -> String {
        join(&self.at, key)
    }

    fn get(&mut self, key: &'static str) -> Option<&'v Value> {
        self.seen.push(key);
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn string(&mut self, key: &'static str) -> Result<Option<String>, KeycloakConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(err(&self.path(key), "must be a string")),
        }
    }

    fn boolean(&mut self, key: &'static str) -> Result<Option<bool>, KeycloakConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(err(&self.path(key), "must be true or false")),
        }
    }

    fn number(&mut self, key: &'static str) -> Result<Option<u64>, KeycloakConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| err(&self.path(key), "must be a whole number, 0 or more")),
        }
    }

    fn strings(&mut self, key: &'static str) -> Result<Vec<String>, KeycloakConfigError> {
        let at = self.path(key);
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    v.as_str()
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .ok_or_else(|| err(&format!("{at}[{i}]"), "must be a non-empty string"))
                })
                .collect(),
            Some(_) => Err(err(&at, "must be an array of strings")),
        }
    }

    fn array(&mut self, key: &'static str) -> Result<&'v [Value], KeycloakConfigError> {
        match self.get(key) {
            None => Ok(&[]),
            Some(Value::Array(items)) => Ok(items),
            Some(_) => Err(err(&self.path(key), "must be an array")),
        }
    }

    /// Refuses a key tower-uma does not support yet, when present.
    fn unsupported(&mut self, key: &'static str, why: &str) -> Result<(), KeycloakConfigError> {
        if self.get(key).is_some() {
            return Err(err(
                &self.path(key),
                format!("is not supported by tower-uma yet: {why}"),
            ));
        }
        Ok(())
    }

    /// Marks keys accepted without effect.
    fn ignore(&mut self, keys: &[&'static str]) {
        self.seen.extend_from_slice(keys);
    }

    /// Refuses any key not read or marked: a typo, or a key this crate does not know.
    fn finish(self) -> Result<(), KeycloakConfigError> {
        match self.map.keys().find(|k| !self.seen.contains(&k.as_str())) {
            Some(key) => Err(err(
                &join(&self.at, key),
                "is not a key of Keycloak's adapter or policy-enforcer configuration (a typo?)",
            )),
            None => Ok(()),
        }
    }
}

/// The connection keys read at one level (the top of `keycloak.json`, or the standalone
/// `policy-enforcer.json`, or the `policy-enforcer` section, which may repeat them).
#[derive(Default)]
struct Connection {
    realm: Option<String>,
    auth_server_url: Option<String>,
    resource: Option<String>,
    secret: Option<String>,
}

fn connection(obj: &mut Obj<'_>) -> Result<Connection, KeycloakConfigError> {
    let mut c = Connection {
        realm: obj.string("realm")?,
        auth_server_url: obj.string("auth-server-url")?,
        resource: obj.string("resource")?,
        secret: None,
    };
    if let Some(v) = obj.get("credentials") {
        let mut creds = Obj::new(obj.path("credentials"), v)?;
        c.secret = creds.string("secret")?;
        creds.unsupported(
            "jwt",
            "signed-JWT client authentication; use `credentials.secret`",
        )?;
        creds.unsupported(
            "secret-jwt",
            "client_secret_jwt authentication; use `credentials.secret`",
        )?;
        creds.unsupported("provider", "credential providers; use `credentials.secret`")?;
        creds.finish()?;
    }
    Ok(c)
}

/// Reads a `keycloak.json` (with a `policy-enforcer` section) or a standalone
/// `policy-enforcer.json`.
pub(crate) fn parse(text: &str) -> Result<Parsed, KeycloakConfigError> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| err("", format!("not valid JSON: {e}")))?;
    let mut top = Obj::new(String::new(), &value)?;
    let mut outer = connection(&mut top)?;
    if top.boolean("public-client")? == Some(true) {
        return Err(err(
            "public-client",
            "a public client cannot obtain a PAT; the resource server needs `credentials.secret`",
        ));
    }
    let connect_timeout = top
        .number("connection-timeout-millis")?
        .map(Duration::from_millis);
    let request_timeout = top
        .number("socket-timeout-millis")?
        .map(Duration::from_millis);
    for (key, why) in UNSUPPORTED_TOP {
        top.unsupported(key, why)?;
    }
    top.ignore(IGNORED_TOP);
    let enforcer = match top.get("policy-enforcer") {
        // keycloak.json: the enforcer in its own section, which may repeat the connection.
        Some(section) => {
            let mut inner = Obj::new("policy-enforcer".to_owned(), section)?;
            let repeated = connection(&mut inner)?;
            merge(&mut outer, repeated)?;
            let enforcer = enforcer(&mut inner)?;
            inner.finish()?;
            enforcer
        }
        // A standalone policy-enforcer.json: its keys at the top.
        None => enforcer(&mut top)?,
    };
    top.finish()?;
    let need = |v: Option<String>, key: &str| {
        v.filter(|s| !s.is_empty())
            .ok_or_else(|| err(key, "is missing"))
    };
    let auth_server_url = need(outer.auth_server_url, "auth-server-url")?;
    // Credentials in the URL would be logged with it and sent on every call (the client
    // authenticates with `credentials.secret`); the message does not repeat the URL.
    if url::Url::parse(&auth_server_url).map_or(auth_server_url.contains('@'), |u| {
        !u.username().is_empty() || u.password().is_some()
    }) {
        return Err(err(
            "auth-server-url",
            "has user info (user:password@); the client authenticates with credentials.secret",
        ));
    }
    Ok(Parsed {
        realm: need(outer.realm, "realm")?,
        auth_server_url,
        resource: need(outer.resource, "resource")?,
        secret: need(outer.secret, "credentials.secret")?,
        connect_timeout,
        request_timeout,
        enforcer,
    })
}

/// Fills `outer` from the section's repetition of the connection keys; a key given at both
/// levels with different values is an error.
fn merge(outer: &mut Connection, inner: Connection) -> Result<(), KeycloakConfigError> {
    let pairs = [
        (&mut outer.realm, inner.realm, "realm"),
        (
            &mut outer.auth_server_url,
            inner.auth_server_url,
            "auth-server-url",
        ),
        (&mut outer.resource, inner.resource, "resource"),
        (&mut outer.secret, inner.secret, "credentials.secret"),
    ];
    for (mine, theirs, key) in pairs {
        match (mine.as_deref(), theirs) {
            (Some(a), Some(b)) if a != b => {
                return Err(err(
                    &format!("policy-enforcer.{key}"),
                    format!("differs from the top-level `{key}`"),
                ));
            }
            (None, Some(b)) => *mine = Some(b),
            _ => {}
        }
    }
    Ok(())
}

/// Why an enforcement mode that only requires some valid token cannot be mapped.
const AUTHENTICATED_ONLY: &str = "in Keycloak's enforcer it lets any valid access token \
     through without checking permissions, and tower-uma has no rule for \"any valid token\"";

fn enforcer(obj: &mut Obj<'_>) -> Result<Enforcer, KeycloakConfigError> {
    match obj.string("enforcement-mode")?.as_deref() {
        None | Some("ENFORCING") => {}
        Some("PERMISSIVE") => {
            return Err(err(
                &obj.path("enforcement-mode"),
                format!(
                    "PERMISSIVE is not supported by tower-uma yet: for paths no entry matches, {AUTHENTICATED_ONLY}"
                ),
            ));
        }
        Some("DISABLED") => {
            return Err(err(
                &obj.path("enforcement-mode"),
                format!("DISABLED is not supported by tower-uma yet: {AUTHENTICATED_ONLY}"),
            ));
        }
        Some(other) => return Err(bad_enum(&obj.path("enforcement-mode"), other, MODES)),
    }
    let lazy_load_paths = obj.boolean("lazy-load-paths")?.unwrap_or(false);
    let http_method_as_scope = obj.boolean("http-method-as-scope")?.unwrap_or(false);
    let path_cache = match obj.get("path-cache") {
        None => None,
        Some(v) => {
            let mut cache = Obj::new(obj.path("path-cache"), v)?;
            let max = cache.number("max-entries")?.unwrap_or(DEFAULT_MAX_ENTRIES);
            let lifespan = match cache.get("lifespan") {
                None => Some(Duration::from_millis(DEFAULT_LIFESPAN_MS)),
                Some(v) => match v.as_i64() {
                    // Keycloak: -1 keeps entries forever; 0 (or less) caches nothing.
                    Some(-1) => None,
                    Some(ms) => Some(Duration::from_millis(u64::try_from(ms).unwrap_or(0))),
                    None => {
                        return Err(err(
                            &cache.path("lifespan"),
                            "must be a whole number of milliseconds (-1: never expire)",
                        ));
                    }
                },
            };
            cache.finish()?;
            Some((max, lifespan))
        }
    };
    let user_managed_access = match obj.get("user-managed-access") {
        None => false,
        Some(v) => {
            // Keycloak's `UserManagedAccessConfig` has no keys: its presence is the switch.
            Obj::new(obj.path("user-managed-access"), v)?.finish()?;
            true
        }
    };
    let claims = claim_information_point(obj)?;
    let on_deny_redirect_to = match obj.string("on-deny-redirect-to")? {
        None => None,
        Some(target) => Some(
            http::HeaderValue::from_str(&target)
                .ok()
                .filter(|_| !target.is_empty())
                .ok_or_else(|| {
                    err(
                        &obj.path("on-deny-redirect-to"),
                        "must be a path or URL usable as a Location header",
                    )
                })?,
        ),
    };
    let mut paths: Vec<PathEntry> = Vec::new();
    let at = obj.path("paths");
    for (i, v) in obj.array("paths")?.iter().enumerate() {
        let entry = path_entry(format!("{at}[{i}]"), v)?;
        // Keycloak merges entries with the same `path` into the first one.
        match paths.iter_mut().find(|p| p.path == entry.path) {
            Some(first) => {
                first.methods.extend(entry.methods);
                first.scopes.extend(entry.scopes);
                first.claims.extend(entry.claims);
            }
            None => paths.push(entry),
        }
    }
    Ok(Enforcer {
        paths,
        lazy_load_paths,
        path_cache,
        http_method_as_scope,
        user_managed_access,
        claims,
        on_deny_redirect_to,
    })
}

/// `claim-information-point`: the `claims` provider, each claim a value template or an array
/// of them (checked here); other providers (`http`, custom ones) are refused.
fn claim_information_point(obj: &mut Obj<'_>) -> Result<ClaimTemplates, KeycloakConfigError> {
    let Some(v) = obj.get("claim-information-point") else {
        return Ok(Vec::new());
    };
    let mut cip = Obj::new(obj.path("claim-information-point"), v)?;
    cip.unsupported(
        "http",
        "claims from another service; push claims from the request with the `claims` provider",
    )?;
    let mut out = Vec::new();
    if let Some(v) = cip.get("claims") {
        let at = cip.path("claims");
        let Value::Object(map) = v else {
            return Err(err(&at, "must be a JSON object of claim names and values"));
        };
        for (name, value) in map {
            let here = format!("{at}.{name}");
            let templates = match value {
                Value::String(s) => vec![s.clone()],
                Value::Array(items) => items
                    .iter()
                    .map(|v| v.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| err(&here, "must be a string or an array of strings"))?,
                _ => return Err(err(&here, "must be a string or an array of strings")),
            };
            let mut check = crate::resources::PushedClaims::new();
            for t in &templates {
                check = check
                    .claim(name.clone(), t)
                    .map_err(|e| err(&here, e.to_string()))?;
            }
            out.push((name.clone(), templates));
        }
    }
    // Keycloak's other providers are named by their keys.
    if let Some(key) = cip.map.keys().find(|k| !cip.seen.contains(&k.as_str())) {
        return Err(err(
            &cip.path(key),
            "is not supported by tower-uma: of Keycloak's claim information point providers, only `claims` is",
        ));
    }
    Ok(out)
}

const MODES: &[&str] = &["ENFORCING", "PERMISSIVE", "DISABLED"];
const SCOPE_MODES: &[&str] = &["ALL", "ANY", "DISABLED"];

fn bad_enum(at: &str, value: &str, allowed: &[&str]) -> KeycloakConfigError {
    err(
        at,
        format!(
            "{value:?} is not one of {} (Keycloak reads them in upper case)",
            allowed.join(", ")
        ),
    )
}

fn path_entry(at: String, value: &Value) -> Result<PathEntry, KeycloakConfigError> {
    let mut obj = Obj::new(at.clone(), value)?;
    let path = obj
        .string("path")?
        .filter(|p| !p.is_empty())
        .ok_or_else(|| err(&obj.path("path"), "is missing"))?;
    let name = obj.string("name")?.filter(|n| !n.is_empty());
    let id = obj.string("id")?.filter(|n| !n.is_empty());
    // `type` only describes resources Keycloak creates from its own answers.
    obj.ignore(&["type"]);
    let scopes = obj.strings("scopes")?;
    let disabled = match obj.string("enforcement-mode")?.as_deref() {
        None | Some("ENFORCING") => false,
        Some("DISABLED") => true,
        Some("PERMISSIVE") => {
            return Err(err(
                &obj.path("enforcement-mode"),
                format!(
                    "PERMISSIVE is not supported by tower-uma yet: for a token without any permission for the resource, {AUTHENTICATED_ONLY}"
                ),
            ));
        }
        Some(other) => return Err(bad_enum(&obj.path("enforcement-mode"), other, MODES)),
    };
    let claims = claim_information_point(&mut obj)?;
    let mut methods: Vec<MethodEntry> = Vec::new();
    let methods_at = obj.path("methods");
    for (i, v) in obj.array("methods")?.iter().enumerate() {
        methods.push(method_entry(&format!("{methods_at}[{i}]"), v)?);
    }
    obj.finish()?;
    Ok(PathEntry {
        at,
        name,
        id,
        path,
        methods,
        scopes,
        disabled,
        claims,
    })
}

fn method_entry(at: &str, value: &Value) -> Result<MethodEntry, KeycloakConfigError> {
    let mut obj = Obj::new(at.to_owned(), value)?;
    let name = obj
        .string("method")?
        .ok_or_else(|| err(&obj.path("method"), "is missing"))?;
    let method = Method::from_bytes(name.as_bytes()).map_err(|_| {
        err(
            &obj.path("method"),
            format!("{name:?} is not an HTTP method"),
        )
    })?;
    crate::resources::check_route_method(&method).map_err(|why| err(&obj.path("method"), why))?;
    let scopes = obj.strings("scopes")?;
    let mode = match obj.string("scopes-enforcement-mode")?.as_deref() {
        None | Some("ALL") => ScopeMode::All,
        Some("ANY") => ScopeMode::Any,
        Some("DISABLED") => {
            return Err(err(
                &obj.path("scopes-enforcement-mode"),
                format!(
                    "DISABLED is not supported by tower-uma yet: when the token lacks the permission, {AUTHENTICATED_ONLY}"
                ),
            ));
        }
        Some(other) => {
            return Err(bad_enum(
                &obj.path("scopes-enforcement-mode"),
                other,
                SCOPE_MODES,
            ));
        }
    };
    obj.finish()?;
    Ok(MethodEntry {
        method,
        scopes,
        mode,
    })
}
