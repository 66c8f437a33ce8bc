//! The configuration file: TOML, every key checked, every error naming its line.
//!
//! [`Config::from_path`] reads `proxy.toml`; [`Config::from_toml_str`] parses text with an
//! injectable environment (tests). Unknown keys, wrong types, bad URLs, bad durations,
//! missing secrets and inconsistent resources are [`ConfigError`]s that read like
//! `proxy.toml: line 4, column 1: unknown field `colour`, expected one of …`.
//!
//! # Example
//!
//! ```
//! use uma_proxy::{Config, Overrides};
//!
//! let text = r#"
//! upstream = "http://127.0.0.1:9000"
//! [authorization_server]
//! issuer = "http://127.0.0.1:8180"
//! allow_http = true
//! client_id = "photo-api"
//! client_secret_env = "PHOTO_API_SECRET"
//! [[resources]]
//! name = "album"
//! path = "/albums/{id}"
//! scopes = { GET = ["view"] }
//! "#;
//! let env = |name: &str| (name == "PHOTO_API_SECRET").then(|| "s3cret".to_owned());
//! let config = Config::from_toml_str(text, "proxy.toml", &Overrides::default(), env)?;
//! assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
//! assert_eq!(config.authorization_server.client_secret.secret(), "s3cret");
//!
//! let err = Config::from_toml_str("upstrem = 1", "proxy.toml", &Overrides::default(), env)
//!     .unwrap_err();
//! assert_eq!(err.line(), Some(1));
//! assert!(err.to_string().contains("unknown field `upstrem`"), "{err}");
//! # Ok::<(), uma_proxy::ConfigError>(())
//! ```
//!
//! Why it works this way: values whose problems only show after parsing (URLs, environment
//! variables, routes) are read as `toml::Spanned`, so their errors carry the line too, exactly
//! like serde's own errors (unknown keys, wrong types), whose spans the `toml` crate reports.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use http::Method;
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use toml::Spanned;
use tower_uma::{
    ClientSecret, EnforcementMode, IntrospectionCache, MethodOverride, ResourceDecl, ResourceMap,
    ResourceMapError, Route, Unmapped,
};

use crate::forward::Upstream;
use crate::trust::{AllowedHosts, Cidr, TrustedProxies};

/// The default `listen` address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// The default `upstream_timeout`.
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);
/// The default `shutdown_timeout`.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// The default `[authorization_server] timeout`.
pub const DEFAULT_AS_TIMEOUT: Duration = Duration::from_secs(3);
/// The default `[authorization_server] breaker_open_interval` (the layer's default).
pub const DEFAULT_BREAKER_OPEN_INTERVAL: Duration = Duration::from_secs(1);
/// The default `[authorization_server] breaker_max_open_interval` (the layer's default).
pub const DEFAULT_BREAKER_MAX_OPEN_INTERVAL: Duration = Duration::from_secs(5);

/// Command-line values that replace the file's `listen` and `upstream`.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--listen ADDR`.
    pub listen: Option<String>,
    /// `--upstream URL`.
    pub upstream: Option<String>,
}

/// A checked proxy configuration. See the crate README for every key and its default.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Where the proxy listens (`listen`).
    pub listen: SocketAddr,
    /// Where requests are forwarded (`upstream`).
    pub upstream: Upstream,
    /// The `realm` of UMA challenges (`realm`); the layer defaults to the client id.
    pub realm: Option<String>,
    /// `enforcement`: `"enforcing"` (default), `"permissive"` or `"disabled"`.
    pub enforcement: EnforcementMode,
    /// `unmapped`: `"deny"` (default) or `"allow"`.
    pub unmapped: Unmapped,
    /// The admin listener (`/healthz`, `/metrics`), off unless `admin_listen` is set.
    pub admin_listen: Option<SocketAddr>,
    /// Whether the client's `Authorization` header reaches the upstream
    /// (`forward_authorization`, default `true`).
    pub forward_authorization: bool,
    /// How long the upstream may take to answer with its response head (`upstream_timeout`).
    pub upstream_timeout: Duration,
    /// How long requests in flight may take to finish after SIGTERM or Ctrl-C
    /// (`shutdown_timeout`).
    pub shutdown_timeout: Duration,
    /// `method_override`: `"refuse"` (default) or `"decide"`; see
    /// [`tower_uma::MethodOverride`].
    pub method_override: MethodOverride,
    /// `trusted_proxies`: the peers whose forwarding headers are kept (default: none).
    pub trusted_proxies: TrustedProxies,
    /// `allowed_hosts`: the `Host` values answered; others get `421` (default: any host).
    pub allowed_hosts: Option<AllowedHosts>,
    /// `[authorization_server]`.
    pub authorization_server: AsConfig,
    /// `[cache]`.
    pub cache: CacheConfig,
    /// `[[resources]]`, in file order.
    pub resources: Vec<ResourceConfig>,
}

/// Which authorization server product the proxy talks to (`dialect`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Dialect {
    /// The UMA 2.0 specifications as written (and `uma-test-as`).
    #[default]
    Standard,
    /// Keycloak's UMA implementation.
    Keycloak,
    /// WSO2 Identity Server.
    Wso2,
}

/// How the proxy obtains its PAT (`pat_grant`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PatGrantConfig {
    /// `pat_grant = "client_credentials"` (the default, except for WSO2).
    ClientCredentials,
    /// `pat_grant = "password"`: a PAT bound to the resource owner (the default for WSO2).
    Password {
        /// `resource_owner`.
        resource_owner: String,
        /// `resource_owner_password` or the variable named by `resource_owner_password_env`.
        password: ClientSecret,
    },
}

/// `[authorization_server]`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AsConfig {
    /// `issuer`: discovery at `{issuer}/.well-known/uma2-configuration`.
    pub issuer: Option<String>,
    /// `as_uri`: the `as_uri` of challenges; defaults to the issuer.
    pub as_uri: Option<String>,
    /// `token_endpoint`, overriding discovery.
    pub token_endpoint: Option<String>,
    /// `introspection_endpoint`, overriding discovery.
    pub introspection_endpoint: Option<String>,
    /// `permission_endpoint`, overriding discovery.
    pub permission_endpoint: Option<String>,
    /// `resource_registration_endpoint`, overriding discovery.
    pub resource_registration_endpoint: Option<String>,
    /// `jwks_uri`: the AS key set (for local validation of JWT RPTs).
    pub jwks_uri: Option<String>,
    /// `dialect`.
    pub dialect: Dialect,
    /// `client_id`.
    pub client_id: String,
    /// `client_secret`, or the variable named by `client_secret_env`.
    pub client_secret: ClientSecret,
    /// `allow_http`: plain-http AS URLs allowed.
    pub allow_http: bool,
    /// `timeout`: per AS call.
    pub timeout: Duration,
    /// `pat_grant` with `resource_owner` and its password.
    pub pat_grant: PatGrantConfig,
    /// `max_calls_in_flight` and the circuit breaker's keys.
    pub calls: AsCallsConfig,
}

/// How the proxy protects the AS and itself from piling up calls: `max_calls_in_flight`,
/// `breaker_failure_threshold`, `breaker_open_interval` and `breaker_max_open_interval` of
/// `[authorization_server]`. Unset keys keep the layer's defaults (64, 5, 1 s, 30 s).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AsCallsConfig {
    /// `max_calls_in_flight`: AS calls in flight at once, at least 1.
    pub max_in_flight: Option<usize>,
    /// `breaker_failure_threshold`: consecutive transient failures that open an endpoint's
    /// circuit; 0 turns the breakers off.
    pub breaker_failure_threshold: Option<u32>,
    /// `breaker_open_interval` and `breaker_max_open_interval`: the first and the longest
    /// wait of an open circuit before its probe.
    pub breaker_open_interval: Option<(Duration, Duration)>,
}

impl AsCallsConfig {
    /// `builder` with these settings.
    pub fn apply(&self, mut builder: tower_uma::UmaLayerBuilder) -> tower_uma::UmaLayerBuilder {
        if let Some(n) = self.max_in_flight {
            builder = builder.max_as_calls_in_flight(n);
        }
        if let Some(k) = self.breaker_failure_threshold {
            builder = builder.breaker_failure_threshold(k);
        }
        if let Some((first, max)) = self.breaker_open_interval {
            builder = builder.breaker_open_interval(first, max);
        }
        builder
    }
}

impl AsConfig {
    /// The first argument of `UmaLayer::builder` when there is no discovery: `as_uri`, else
    /// the origin of the token endpoint.
    #[must_use]
    pub fn builder_issuer(&self) -> String {
        if let Some(uri) = self.as_uri.as_ref().or(self.issuer.as_ref()) {
            return uri.clone();
        }
        self.token_endpoint
            .as_deref()
            .and_then(|t| url::Url::parse(t).ok())
            .map(|u| u.origin().ascii_serialization())
            .unwrap_or_default()
    }
}

/// `[cache]`: the introspection cache. Unset keys keep `IntrospectionCache::builder()`'s
/// defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheConfig {
    /// `enabled` (default `true`); `false` introspects every request.
    pub enabled: Option<bool>,
    /// `max_ttl` (default 60 s).
    pub max_ttl: Option<Duration>,
    /// `max_entries` (default 10,000).
    pub max_entries: Option<u64>,
    /// `negative_ttl` (default 5 s; 0 s: off).
    pub negative_ttl: Option<Duration>,
    /// `negative_max_entries` (default 10,000).
    pub negative_max_entries: Option<u64>,
    /// `stale_if_error` (default 0 s: off).
    pub stale_if_error: Option<Duration>,
    /// `skew` (default 5 s).
    pub skew: Option<Duration>,
    /// `cache_without_exp` (default `false`).
    pub cache_without_exp: Option<bool>,
}

impl CacheConfig {
    /// The cache these settings describe.
    #[must_use]
    pub fn build(&self) -> IntrospectionCache {
        if self.enabled == Some(false) {
            return IntrospectionCache::disabled();
        }
        let mut b = IntrospectionCache::builder();
        if let Some(v) = self.max_ttl {
            b = b.max_ttl(v);
        }
        if let Some(v) = self.max_entries {
            b = b.max_entries(v);
        }
        if let Some(v) = self.negative_ttl {
            b = b.negative_ttl(v);
        }
        if let Some(v) = self.negative_max_entries {
            b = b.negative_max_entries(v);
        }
        if let Some(v) = self.stale_if_error {
            b = b.stale_if_error(v);
        }
        if let Some(v) = self.skew {
            b = b.skew(v);
        }
        if let Some(v) = self.cache_without_exp {
            b = b.cache_without_exp(v);
        }
        b.build()
    }
}

/// Which methods a scope list applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MethodScopes {
    /// One method (`GET = [...]`).
    Method(Method),
    /// Every method without an entry of its own (`"*" = [...]`).
    AnyOther,
}

/// One `[[resources]]` entry.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ResourceConfig {
    /// `path`: the route template (`/albums/{id}`, `/static/*`).
    pub path: String,
    /// `public = true`: no token needed for `GET`, `HEAD` and `OPTIONS`.
    pub public: bool,
    /// `public_methods`: more methods that need no token (on a public entry, besides `GET`,
    /// `HEAD` and `OPTIONS`; on a protected one, instead of scopes).
    pub public_methods: Vec<Method>,
    /// The resource declaration (`name`, `type`, `description`, `icon_uri`, `owner`, and the
    /// scopes of every entry with this name); `None` for public routes.
    pub decl: Option<ResourceDecl>,
    /// `scopes`, per method.
    pub scopes: Vec<(MethodScopes, Vec<String>)>,
    /// The 1-based line of the entry in the file.
    pub line: usize,
}

impl ResourceConfig {
    /// The layer's route for this entry.
    pub fn route(&self) -> Route {
        if self.public {
            return Route::public(&self.path).public_methods(self.public_methods.iter().cloned());
        }
        let mut route = Route::new(&self.path).public_methods(self.public_methods.iter().cloned());
        if let Some(decl) = &self.decl {
            route = route.declare(decl.clone());
        }
        for (methods, scopes) in &self.scopes {
            route = match methods {
                MethodScopes::Method(m) => route.scopes(m.clone(), scopes.iter().cloned()),
                MethodScopes::AnyOther => route.any_method(scopes.iter().cloned()),
            };
        }
        route
    }
}

impl Config {
    /// Reads and checks a configuration file; secrets named by `*_env` keys come from the
    /// process environment.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the file, the line and the key.
    pub fn from_path(path: &Path, overrides: &Overrides) -> Result<Self, ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(&origin, None, format!("cannot read the file: {e}")))?;
        Self::from_toml_str(&text, &origin, overrides, |name| std::env::var(name).ok())
    }

    /// Parses and checks a configuration; `origin` names it in errors and `env` looks up the
    /// variables named by `client_secret_env` and `resource_owner_password_env`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the line and the key.
    pub fn from_toml_str(
        text: &str,
        origin: &str,
        overrides: &Overrides,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let line_col = e.span().map(|s| line_col(text, s.start));
            let message = e.message().trim_end();
            ConfigError {
                origin: origin.to_owned(),
                line: line_col.map(|(l, _)| l),
                column: line_col.map(|(_, c)| c),
                message: match e.span().and_then(|s| key_of_line(text, s.start)) {
                    Some(key) if !message.contains(&format!("`{key}`")) => {
                        format!("`{key}`: {message}")
                    }
                    _ => message.to_owned(),
                },
            }
        })?;
        Resolver {
            text,
            origin,
            env: &env,
        }
        .resolve(raw, overrides)
    }

    /// The resource map of `[[resources]]`.
    pub fn resource_map(&self) -> ResourceMap {
        self.resources
            .iter()
            .fold(ResourceMap::new(), |map, r| map.route(r.route()))
    }
}

/// A configuration problem: what, where (file, line, column) and which key.
///
/// `Display` reads `proxy.toml: line 4, column 1: unknown field `colour`, …`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    origin: String,
    line: Option<usize>,
    column: Option<usize>,
    message: String,
}

impl ConfigError {
    fn new(origin: &str, line: Option<usize>, message: String) -> Self {
        Self {
            origin: origin.to_owned(),
            line,
            column: None,
            message,
        }
    }

    /// The 1-based line of the offending key or value, when known.
    #[must_use]
    pub fn line(&self) -> Option<usize> {
        self.line
    }

    /// What is wrong, without the location.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.origin)?;
        match (self.line, self.column) {
            (Some(line), Some(column)) => write!(f, "line {line}, column {column}: ")?,
            (Some(line), None) => write!(f, "line {line}: ")?,
            _ => {}
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// The key assigned on the line holding `offset` (`max_entries` in `max_entries = "lots"`),
/// so that a parse error that names none (a wrong type, a duplicate key) can; `None` on a
/// table header or a line without `=`.
fn key_of_line(text: &str, offset: usize) -> Option<&str> {
    let start = text.get(..offset)?.rfind('\n').map_or(0, |i| i + 1);
    let line = text.get(start..)?.lines().next()?;
    let key = line.split_once('=')?.0.trim();
    let bare = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.';
    (!key.is_empty() && key.bytes().all(bare)).then_some(key)
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Parses `"500ms"`, `"3s"`, `"5m"`, `"1h"` or a bare number of seconds.
#[must_use]
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    match unit.trim() {
        "ms" => Some(Duration::from_millis(number)),
        "s" | "" => Some(Duration::from_secs(number)),
        "m" => number.checked_mul(60).map(Duration::from_secs),
        "h" => number.checked_mul(3600).map(Duration::from_secs),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// The file as written.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<Spanned<String>>,
    upstream: Option<Spanned<String>>,
    realm: Option<String>,
    #[serde(default)]
    enforcement: Enforcement,
    #[serde(default)]
    unmapped: UnmappedRaw,
    admin_listen: Option<Spanned<String>>,
    forward_authorization: Option<bool>,
    upstream_timeout: Option<Spanned<Dur>>,
    shutdown_timeout: Option<Dur>,
    #[serde(default)]
    method_override: MethodOverrideRaw,
    trusted_proxies: Option<Vec<Spanned<String>>>,
    allowed_hosts: Option<Spanned<Vec<Spanned<String>>>>,
    authorization_server: Spanned<RawAs>,
    #[serde(default)]
    cache: RawCache,
    #[serde(default)]
    resources: Vec<Spanned<RawResource>>,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum Enforcement {
    #[default]
    Enforcing,
    Permissive,
    Disabled,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum UnmappedRaw {
    #[default]
    Deny,
    Allow,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum MethodOverrideRaw {
    #[default]
    Refuse,
    Decide,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum PatGrantKind {
    ClientCredentials,
    Password,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAs {
    issuer: Option<Spanned<String>>,
    as_uri: Option<Spanned<String>>,
    token_endpoint: Option<Spanned<String>>,
    introspection_endpoint: Option<Spanned<String>>,
    permission_endpoint: Option<Spanned<String>>,
    resource_registration_endpoint: Option<Spanned<String>>,
    jwks_uri: Option<Spanned<String>>,
    #[serde(default)]
    dialect: Dialect,
    client_id: Spanned<String>,
    client_secret: Option<Spanned<String>>,
    client_secret_env: Option<Spanned<String>>,
    #[serde(default)]
    allow_http: bool,
    timeout: Option<Spanned<Dur>>,
    pat_grant: Option<Spanned<PatGrantKind>>,
    resource_owner: Option<Spanned<String>>,
    resource_owner_password: Option<Spanned<String>>,
    resource_owner_password_env: Option<Spanned<String>>,
    max_calls_in_flight: Option<Spanned<u64>>,
    breaker_failure_threshold: Option<u32>,
    breaker_open_interval: Option<Spanned<Dur>>,
    breaker_max_open_interval: Option<Spanned<Dur>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCache {
    enabled: Option<bool>,
    max_ttl: Option<Dur>,
    max_entries: Option<u64>,
    negative_ttl: Option<Dur>,
    negative_max_entries: Option<u64>,
    stale_if_error: Option<Dur>,
    skew: Option<Dur>,
    cache_without_exp: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResource {
    name: Option<String>,
    #[serde(rename = "type")]
    r#type: Option<String>,
    description: Option<String>,
    icon_uri: Option<String>,
    owner: Option<String>,
    path: Spanned<String>,
    scopes: Option<Spanned<BTreeMap<String, Vec<String>>>>,
    #[serde(default)]
    public: bool,
    public_methods: Option<Spanned<Vec<String>>>,
}

/// A duration written as `"500ms"`, `"3s"`, `"5m"`, `"1h"` or a whole number of seconds.
#[derive(Clone, Copy)]
struct Dur(Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurVisitor;

        impl Visitor<'_> for DurVisitor {
            type Value = Dur;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"3s\", \"500ms\", \"5m\" or \"1h\"")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Dur, E> {
                parse_duration(v).map(Dur).ok_or_else(|| {
                    E::custom(format!(
                        "invalid duration `{v}`: expected a number followed by ms, s, m or h, e.g. \"3s\""
                    ))
                })
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Dur, E> {
                u64::try_from(v)
                    .map(|s| Dur(Duration::from_secs(s)))
                    .map_err(|_| E::custom("a duration cannot be negative"))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Dur, E> {
                Ok(Dur(Duration::from_secs(v)))
            }
        }

        deserializer.deserialize_any(DurVisitor)
    }
}

// ---------------------------------------------------------------------------------------------
// From the file as written to a checked configuration.

struct Resolver<'a, E> {
    text: &'a str,
    origin: &'a str,
    env: &'a E,
}

impl<E: Fn(&str) -> Option<String>> Resolver<'_, E> {
    fn at(&self, span: Range<usize>, message: String) -> ConfigError {
        let (line, column) = line_col(self.text, span.start);
        ConfigError {
            origin: self.origin.to_owned(),
            line: Some(line),
            column: Some(column),
            message,
        }
    }

    fn nowhere(&self, message: String) -> ConfigError {
        ConfigError::new(self.origin, None, message)
    }

    /// A method named under `key` (as written: methods are case-sensitive), or an error at
    /// `at`'s line.
    fn method<T>(
        &self,
        at: &Spanned<T>,
        key: &str,
        method: &str,
        alternatives: &str,
    ) -> Result<Method, ConfigError> {
        Method::from_bytes(method.as_bytes()).map_err(|_| {
            self.at(
                at.span(),
                format!("`{key}`: {method:?} is not an HTTP method{alternatives}"),
            )
        })
    }

    fn resolve(&self, raw: RawConfig, overrides: &Overrides) -> Result<Config, ConfigError> {
        let listen = match (&overrides.listen, &raw.listen) {
            (Some(cli), _) => {
                parse_addr(cli).map_err(|m| self.nowhere(format!("--listen: {m}")))?
            }
            (None, Some(v)) => {
                parse_addr(v.get_ref()).map_err(|m| self.at(v.span(), format!("`listen`: {m}")))?
            }
            (None, None) => parse_addr(DEFAULT_LISTEN).map_err(|m| self.nowhere(m))?,
        };
        let admin_listen = raw
            .admin_listen
            .as_ref()
            .map(|v| {
                parse_addr(v.get_ref())
                    .map_err(|m| self.at(v.span(), format!("`admin_listen`: {m}")))
            })
            .transpose()?;
        let upstream = match (&overrides.upstream, &raw.upstream) {
            (Some(cli), _) => {
                Upstream::parse(cli).map_err(|m| self.nowhere(format!("--upstream: {m}")))?
            }
            (None, Some(v)) => Upstream::parse(v.get_ref())
                .map_err(|m| self.at(v.span(), format!("`upstream`: {m}")))?,
            (None, None) => {
                return Err(self.nowhere(
                    "missing key `upstream`: set it in the file (upstream = \"http://127.0.0.1:9000\") or with --upstream"
                        .to_owned(),
                ));
            }
        };
        let upstream_timeout = match &raw.upstream_timeout {
            Some(d) => self.positive(d, "upstream_timeout")?,
            None => DEFAULT_UPSTREAM_TIMEOUT,
        };
        if let Some(realm) = &raw.realm
            && realm.is_empty()
        {
            return Err(self.nowhere("`realm` is empty".to_owned()));
        }
        let (trusted_proxies, allowed_hosts) = self.resolve_trust(&raw)?;
        let authorization_server = self.resolve_as(&raw.authorization_server)?;
        let resources = self.resolve_resources(&raw.resources)?;
        if authorization_server.issuer.is_none()
            && authorization_server
                .resource_registration_endpoint
                .is_none()
            && resources.iter().any(|r| r.decl.is_some())
        {
            return Err(self.at(
                raw.authorization_server.span(),
                "[authorization_server] needs `resource_registration_endpoint` (or `issuer` for discovery): \
                 the protected [[resources]] are registered at start-up"
                    .to_owned(),
            ));
        }
        let c = raw.cache;
        Ok(Config {
            listen,
            upstream,
            realm: raw.realm,
            enforcement: match raw.enforcement {
                Enforcement::Enforcing => EnforcementMode::Enforcing,
                Enforcement::Permissive => EnforcementMode::Permissive,
                Enforcement::Disabled => EnforcementMode::Disabled,
            },
            unmapped: match raw.unmapped {
                UnmappedRaw::Deny => Unmapped::Deny,
                UnmappedRaw::Allow => Unmapped::Allow,
            },
            admin_listen,
            forward_authorization: raw.forward_authorization.unwrap_or(true),
            upstream_timeout,
            shutdown_timeout: raw
                .shutdown_timeout
                .map_or(DEFAULT_SHUTDOWN_TIMEOUT, |d| d.0),
            method_override: match raw.method_override {
                MethodOverrideRaw::Refuse => MethodOverride::Refuse,
                MethodOverrideRaw::Decide => MethodOverride::Decide,
            },
            trusted_proxies,
            allowed_hosts,
            authorization_server,
            cache: CacheConfig {
                enabled: c.enabled,
                max_ttl: c.max_ttl.map(|d| d.0),
                max_entries: c.max_entries,
                negative_ttl: c.negative_ttl.map(|d| d.0),
                negative_max_entries: c.negative_max_entries,
                stale_if_error: c.stale_if_error.map(|d| d.0),
                skew: c.skew.map(|d| d.0),
                cache_without_exp: c.cache_without_exp,
            },
            resources,
        })
    }

    /// `trusted_proxies` and `allowed_hosts`, each entry's error at its own line.
    fn resolve_trust(
        &self,
        raw: &RawConfig,
    ) -> Result<(TrustedProxies, Option<AllowedHosts>), ConfigError> {
        let trusted = raw
            .trusted_proxies
            .iter()
            .flatten()
            .map(|entry| {
                Cidr::parse(entry.get_ref())
                    .map_err(|m| self.at(entry.span(), format!("`trusted_proxies`: {m}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let allowed = match &raw.allowed_hosts {
            None => None,
            Some(list) => {
                for entry in list.get_ref() {
                    AllowedHosts::parse([entry.get_ref().as_str()])
                        .map_err(|m| self.at(entry.span(), format!("`allowed_hosts`: {m}")))?;
                }
                let entries = list.get_ref().iter().map(|e| e.get_ref().as_str());
                Some(
                    AllowedHosts::parse(entries)
                        .map_err(|m| self.at(list.span(), format!("`allowed_hosts`: {m}")))?,
                )
            }
        };
        Ok((TrustedProxies::new(trusted), allowed))
    }

    fn positive(&self, d: &Spanned<Dur>, key: &str) -> Result<Duration, ConfigError> {
        let v = d.get_ref().0;
        if v.is_zero() {
            return Err(self.at(d.span(), format!("`{key}` must be greater than zero")));
        }
        Ok(v)
    }

    /// An AS URL: absolute, with a host, https (or http with `allow_http`).
    fn as_url(
        &self,
        key: &str,
        v: Option<&Spanned<String>>,
        allow_http: bool,
    ) -> Result<Option<String>, ConfigError> {
        let Some(v) = v else { return Ok(None) };
        let url = url::Url::parse(v.get_ref()).map_err(|e| {
            self.at(
                v.span(),
                format!("`{key}`: {:?} is not an absolute URL: {e}", v.get_ref()),
            )
        })?;
        match url.scheme() {
            "https" => {}
            "http" if allow_http => {}
            "http" => {
                return Err(self.at(
                    v.span(),
                    format!(
                        "`{key}`: {:?} uses plain http; use https, or set allow_http = true in \
                         [authorization_server] (tests and local development only)",
                        v.get_ref()
                    ),
                ));
            }
            other => {
                return Err(self.at(
                    v.span(),
                    format!("`{key}`: {:?} has scheme {other:?}; use https", v.get_ref()),
                ));
            }
        }
        if url.host().is_none() {
            return Err(self.at(v.span(), format!("`{key}`: {:?} has no host", v.get_ref())));
        }
        Ok(Some(v.get_ref().clone()))
    }

    /// A secret given inline (`key`) or through an environment variable (`{key}_env`).
    fn secret(
        &self,
        table_span: Range<usize>,
        key: &str,
        inline: Option<&Spanned<String>>,
        from_env: Option<&Spanned<String>>,
    ) -> Result<ClientSecret, ConfigError> {
        match (inline, from_env) {
            (Some(_), Some(e)) => Err(self.at(
                e.span(),
                format!("set either `{key}` or `{key}_env`, not both"),
            )),
            (Some(v), None) => Ok(ClientSecret::new(v.get_ref().clone())),
            (None, Some(e)) => {
                let name = e.get_ref();
                match (self.env)(name) {
                    Some(value) if !value.is_empty() => Ok(ClientSecret::new(value)),
                    Some(_) => Err(self.at(
                        e.span(),
                        format!("`{key}_env`: the environment variable `{name}` is empty"),
                    )),
                    None => Err(self.at(
                        e.span(),
                        format!("`{key}_env`: the environment variable `{name}` is not set"),
                    )),
                }
            }
            (None, None) => Err(self.at(
                table_span,
                format!("[authorization_server] needs `{key}` or `{key}_env` (the name of an environment variable holding it)"),
            )),
        }
    }

    fn resolve_as(&self, raw: &Spanned<RawAs>) -> Result<AsConfig, ConfigError> {
        let span = raw.span();
        let a = raw.get_ref();
        let allow_http = a.allow_http;
        let issuer = self.as_url("issuer", a.issuer.as_ref(), allow_http)?;
        let as_uri = self.as_url("as_uri", a.as_uri.as_ref(), allow_http)?;
        let token_endpoint =
            self.as_url("token_endpoint", a.token_endpoint.as_ref(), allow_http)?;
        let introspection_endpoint = self.as_url(
            "introspection_endpoint",
            a.introspection_endpoint.as_ref(),
            allow_http,
        )?;
        let permission_endpoint = self.as_url(
            "permission_endpoint",
            a.permission_endpoint.as_ref(),
            allow_http,
        )?;
        let resource_registration_endpoint = self.as_url(
            "resource_registration_endpoint",
            a.resource_registration_endpoint.as_ref(),
            allow_http,
        )?;
        let jwks_uri = self.as_url("jwks_uri", a.jwks_uri.as_ref(), allow_http)?;
        if issuer.is_none() {
            let missing: Vec<&str> = [
                ("token_endpoint", &token_endpoint),
                ("introspection_endpoint", &introspection_endpoint),
                ("permission_endpoint", &permission_endpoint),
            ]
            .into_iter()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| k)
            .collect();
            if !missing.is_empty() {
                return Err(self.at(
                    span,
                    format!(
                        "[authorization_server] needs `issuer` (discovery) or the endpoints one by one; missing: `{}`",
                        missing.join("`, `")
                    ),
                ));
            }
        }
        if a.client_id.get_ref().is_empty() {
            return Err(self.at(a.client_id.span(), "`client_id` is empty".to_owned()));
        }
        let client_secret = self.secret(
            span.clone(),
            "client_secret",
            a.client_secret.as_ref(),
            a.client_secret_env.as_ref(),
        )?;
        let timeout = match &a.timeout {
            Some(d) => self.positive(d, "timeout")?,
            None => DEFAULT_AS_TIMEOUT,
        };
        let default_grant = if a.dialect == Dialect::Wso2 {
            PatGrantKind::Password
        } else {
            PatGrantKind::ClientCredentials
        };
        let grant = a.pat_grant.as_ref().map_or(default_grant, |g| *g.get_ref());
        let pat_grant = match grant {
            PatGrantKind::ClientCredentials => {
                let stray = [
                    ("resource_owner", &a.resource_owner),
                    ("resource_owner_password", &a.resource_owner_password),
                    (
                        "resource_owner_password_env",
                        &a.resource_owner_password_env,
                    ),
                ]
                .into_iter()
                .find_map(|(k, v)| v.as_ref().map(|v| (k, v.span())));
                if let Some((key, at)) = stray {
                    return Err(self.at(
                        at,
                        format!("`{key}` is only used with pat_grant = \"password\""),
                    ));
                }
                PatGrantConfig::ClientCredentials
            }
            PatGrantKind::Password => {
                let owner = a.resource_owner.as_ref().ok_or_else(|| {
                    self.at(
                        a.pat_grant.as_ref().map_or(span.clone(), Spanned::span),
                        "pat_grant = \"password\" needs `resource_owner` (the user the PAT is bound to)"
                            .to_owned(),
                    )
                })?;
                let password = self.secret(
                    owner.span(),
                    "resource_owner_password",
                    a.resource_owner_password.as_ref(),
                    a.resource_owner_password_env.as_ref(),
                )?;
                PatGrantConfig::Password {
                    resource_owner: owner.get_ref().clone(),
                    password,
                }
            }
        };
        let calls = self.resolve_calls(a)?;
        Ok(AsConfig {
            issuer,
            as_uri,
            token_endpoint,
            introspection_endpoint,
            permission_endpoint,
            resource_registration_endpoint,
            jwks_uri,
            dialect: a.dialect,
            client_id: a.client_id.get_ref().clone(),
            client_secret,
            allow_http,
            timeout,
            pat_grant,
            calls,
        })
    }

    /// `max_calls_in_flight` and the breaker's keys of `[authorization_server]`.
    fn resolve_calls(&self, a: &RawAs) -> Result<AsCallsConfig, ConfigError> {
        let max_in_flight = match &a.max_calls_in_flight {
            Some(n) if *n.get_ref() == 0 => {
                return Err(self.at(
                    n.span(),
                    "`max_calls_in_flight` must be at least 1: with 0 no call to the AS could be made"
                        .to_owned(),
                ));
            }
            Some(n) => Some(usize::try_from(*n.get_ref()).unwrap_or(usize::MAX)),
            None => None,
        };
        let first = a
            .breaker_open_interval
            .as_ref()
            .map(|d| self.positive(d, "breaker_open_interval"))
            .transpose()?;
        let max = a
            .breaker_max_open_interval
            .as_ref()
            .map(|d| self.positive(d, "breaker_max_open_interval"))
            .transpose()?;
        let breaker_open_interval = match (first, max) {
            (None, None) => None,
            (first, max) => {
                let first = first.unwrap_or(DEFAULT_BREAKER_OPEN_INTERVAL);
                let max = max.unwrap_or(DEFAULT_BREAKER_MAX_OPEN_INTERVAL);
                if first > max {
                    let at = a
                        .breaker_open_interval
                        .as_ref()
                        .or(a.breaker_max_open_interval.as_ref())
                        .map(Spanned::span);
                    let message = format!(
                        "`breaker_open_interval` ({first:?}) is longer than \
                         `breaker_max_open_interval` ({max:?})"
                    );
                    return Err(match at {
                        Some(span) => self.at(span, message),
                        None => self.nowhere(message),
                    });
                }
                Some((first, max))
            }
        };
        Ok(AsCallsConfig {
            max_in_flight,
            breaker_failure_threshold: a.breaker_failure_threshold,
            breaker_open_interval,
        })
    }

    fn resolve_resources(
        &self,
        raw: &[Spanned<RawResource>],
    ) -> Result<Vec<ResourceConfig>, ConfigError> {
        // Every entry naming a resource declares the same description: the union of their
        // scopes, and the optional fields of whichever entries set them (they must agree).
        let mut decls: Vec<ResourceDecl> = Vec::new();
        for entry in raw {
            let r = entry.get_ref();
            if r.public {
                // `name` is allowed (and only labels the entry); anything about a protected
                // resource is a mistake.
                let extra = [
                    ("type", r.r#type.is_some()),
                    ("description", r.description.is_some()),
                    ("icon_uri", r.icon_uri.is_some()),
                    ("owner", r.owner.is_some()),
                    ("scopes", r.scopes.is_some()),
                ]
                .into_iter()
                .find(|(_, set)| *set);
                if let Some((key, _)) = extra {
                    return Err(self.at(
                        entry.span(),
                        format!(
                            "a public resource (path {:?}) takes no `{key}`",
                            r.path.get_ref()
                        ),
                    ));
                }
                continue;
            }
            let name = r.name.as_ref().filter(|n| !n.is_empty()).ok_or_else(|| {
                self.at(
                    entry.span(),
                    format!(
                        "[[resources]] with path {:?} needs `name` (or `public = true`)",
                        r.path.get_ref()
                    ),
                )
            })?;
            let scopes = r.scopes.as_ref().filter(|s| !s.get_ref().is_empty()).ok_or_else(|| {
                self.at(
                    entry.span(),
                    format!(
                        "resource `{name}` (path {:?}) needs `scopes`, e.g. scopes = {{ GET = [\"view\"] }}",
                        r.path.get_ref()
                    ),
                )
            })?;
            let idx = match decls.iter().position(|d| &d.name == name) {
                Some(i) => i,
                None => {
                    decls.push(ResourceDecl::new(name.clone(), Vec::<String>::new()));
                    decls.len() - 1
                }
            };
            let decl = &mut decls[idx];
            for scope in scopes.get_ref().values().flatten() {
                if !decl.resource_scopes.contains(scope) {
                    decl.resource_scopes.push(scope.clone());
                }
            }
            for (key, mine, theirs) in [
                ("type", &mut decl.r#type, &r.r#type),
                ("description", &mut decl.description, &r.description),
                ("icon_uri", &mut decl.icon_uri, &r.icon_uri),
                ("owner", &mut decl.owner, &r.owner),
            ] {
                match (mine.as_ref(), theirs) {
                    (Some(a), Some(b)) if a != b => {
                        return Err(self.at(
                            entry.span(),
                            format!(
                                "resource `{name}` is given two different `{key}` values ({a:?} and {b:?})"
                            ),
                        ));
                    }
                    (None, Some(b)) => *mine = Some(b.clone()),
                    _ => {}
                }
            }
        }

        let mut out = Vec::with_capacity(raw.len());
        let mut map = ResourceMap::new();
        for entry in raw {
            let r = entry.get_ref();
            let line = line_col(self.text, entry.span().start).0;
            let mut scopes = Vec::new();
            if let Some(s) = &r.scopes {
                for (method, list) in s.get_ref() {
                    let which = if method == "*" {
                        MethodScopes::AnyOther
                    } else {
                        MethodScopes::Method(self.method(s, "scopes", method, " (or \"*\")")?)
                    };
                    if list.is_empty() || list.iter().any(String::is_empty) {
                        return Err(self.at(
                            s.span(),
                            format!(
                                "`scopes`: the list for {method} is empty or holds an empty scope"
                            ),
                        ));
                    }
                    scopes.push((which, list.clone()));
                }
            }
            let decl = if r.public {
                None
            } else {
                r.name
                    .as_ref()
                    .and_then(|n| decls.iter().find(|d| &d.name == n))
                    .cloned()
            };
            let mut public_methods = Vec::new();
            if let Some(p) = &r.public_methods {
                for method in p.get_ref() {
                    public_methods.push(self.method(p, "public_methods", method, "")?);
                }
            }
            let rc = ResourceConfig {
                path: r.path.get_ref().clone(),
                public: r.public,
                public_methods,
                decl,
                scopes,
                line,
            };
            map = map.route(rc.route());
            match map.validate() {
                Ok(()) => {}
                // A method problem points at the key naming the method.
                Err(ResourceMapError::InvalidMethod { method, reason, .. }) => {
                    let named_in_public = r
                        .public_methods
                        .as_ref()
                        .filter(|p| p.get_ref().contains(&method));
                    let (key, span) = match (named_in_public, &r.scopes) {
                        (Some(p), _) => ("public_methods", p.span()),
                        (None, Some(s)) => ("scopes", s.span()),
                        (None, None) => ("path", r.path.span()),
                    };
                    return Err(self.at(span, format!("`{key}`: {reason}")));
                }
                Err(e) => return Err(self.at(r.path.span(), format!("[[resources]]: {e}"))),
            }
            out.push(rc);
        }
        Ok(out)
    }
}

fn parse_addr(v: &str) -> Result<SocketAddr, String> {
    v.parse().map_err(|_| {
        format!("{v:?} is not an address: expected IP:PORT such as \"127.0.0.1:8080\" (port 0 picks a free port)")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"listen = "127.0.0.1:0"
upstream = "http://127.0.0.1:9000"
[authorization_server]
issuer = "http://127.0.0.1:8180"
allow_http = true
client_id = "photo-api"
client_secret_env = "SECRET"
[[resources]]
name = "album"
path = "/albums/{id}"
scopes = { GET = ["view"], PUT = ["edit"] }
"#;

    fn env(name: &str) -> Option<String> {
        (name == "SECRET").then(|| "s3cret".to_owned())
    }

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml_str(text, "proxy.toml", &Overrides::default(), env)
    }

    #[test]
    fn the_base_config_parses_with_defaults() {
        let c = parse(BASE).unwrap();
        assert_eq!(c.upstream_timeout, DEFAULT_UPSTREAM_TIMEOUT);
        assert_eq!(c.shutdown_timeout, DEFAULT_SHUTDOWN_TIMEOUT);
        assert!(c.forward_authorization);
        assert_eq!(c.enforcement, EnforcementMode::Enforcing);
        assert_eq!(c.unmapped, Unmapped::Deny);
        assert_eq!(c.authorization_server.dialect, Dialect::Standard);
        assert_eq!(c.authorization_server.timeout, DEFAULT_AS_TIMEOUT);
        assert_eq!(
            c.authorization_server.pat_grant,
            PatGrantConfig::ClientCredentials
        );
        assert_eq!(c.authorization_server.calls, AsCallsConfig::default());
        let decl = c.resources[0].decl.as_ref().unwrap();
        assert_eq!(decl.resource_scopes, ["view", "edit"]);
        assert_eq!(c.resources[0].line, 8);
        c.resource_map().validate().unwrap();
    }

    #[test]
    fn overrides_replace_the_file() {
        let o = Overrides {
            listen: Some("127.0.0.1:7000".into()),
            upstream: Some("http://127.0.0.1:7001/api/".into()),
        };
        let c = Config::from_toml_str(BASE, "p", &o, env).unwrap();
        assert_eq!(c.listen.port(), 7000);
        assert_eq!(c.upstream.to_string(), "http://127.0.0.1:7001/api");
    }

    #[test]
    fn wrong_types_and_duplicates_name_the_key_too() {
        let text = format!("{BASE}[cache]\nmax_entries = \"lots\"\n");
        let e = parse(&text).unwrap_err();
        assert_eq!(e.line(), Some(13), "{e}");
        assert!(
            e.to_string()
                .starts_with("proxy.toml: line 13, column 15: `max_entries`: invalid type"),
            "{e}"
        );
        let text = BASE.replace("client_id", "realm = \"a\"\nrealm = \"b\"\nclient_id");
        let e = parse(&text).unwrap_err();
        assert!(e.to_string().contains("`realm`: duplicate key"), "{e}");
        // An unknown key is named once, by toml.
        let text = BASE.replace("allow_http = true", "colour = 1");
        let e = parse(&text).unwrap_err();
        assert_eq!(e.message().matches("colour").count(), 1, "{e}");
        // No key on a table header.
        assert_eq!(key_of_line("[cache]\nx = 1", 2), None);
        assert_eq!(key_of_line("[cache]\nx = 1", 9), Some("x"));
        assert_eq!(key_of_line("a.b = { c = 1 }", 12), Some("a.b"));
    }

    #[test]
    fn unknown_keys_name_the_key_and_the_line() {
        let text = BASE.replace("allow_http = true", "allow_http = true\ncolour = \"red\"");
        let e = parse(&text).unwrap_err();
        assert_eq!(e.line(), Some(6), "{e}");
        assert!(e.to_string().contains("unknown field `colour`"), "{e}");
        assert!(
            e.to_string().starts_with("proxy.toml: line 6, column 1: "),
            "{e}"
        );

        let text = format!("{BASE}[cache]\nmax_tll = \"5s\"\n");
        let e = parse(&text).unwrap_err();
        assert_eq!(e.line(), Some(13), "{e}");
        assert!(e.to_string().contains("max_tll"), "{e}");

        let text = BASE.replace(
            "path = \"/albums/{id}\"",
            "path = \"/albums/{id}\"\npublc = true",
        );
        let e = parse(&text).unwrap_err();
        assert_eq!(e.line(), Some(11), "{e}");
    }

    #[test]
    fn bad_values_name_the_line() {
        let e = parse(&BASE.replace("http://127.0.0.1:9000", "not a url")).unwrap_err();
        assert_eq!(e.line(), Some(2), "{e}");
        assert!(e.message().starts_with("`upstream`"), "{e}");

        let e = parse(&BASE.replace("http://127.0.0.1:8180", "ftp://as")).unwrap_err();
        assert_eq!(e.line(), Some(4), "{e}");
        assert!(e.message().contains("issuer"), "{e}");

        let e = parse(&BASE.replace("allow_http = true", "allow_http = false")).unwrap_err();
        assert!(e.message().contains("allow_http"), "{e}");

        let e = parse(&BASE.replace("127.0.0.1:0", "localhost")).unwrap_err();
        assert_eq!(e.line(), Some(1), "{e}");
        assert!(e.message().contains("listen"), "{e}");

        let e = parse(&format!("upstream_timeout = \"3 parsecs\"\n{BASE}")).unwrap_err();
        assert_eq!(e.line(), Some(1), "{e}");
        assert!(e.message().contains("invalid duration"), "{e}");

        let e = parse(
            &BASE
                .replace("enforcing", "x")
                .replace("listen", "enforcement = \"strict\"\nlisten"),
        )
        .unwrap_err();
        assert_eq!(e.line(), Some(1), "{e}");

        let e = parse(&BASE.replace("PUT", "P UT")).unwrap_err();
        assert_eq!(e.line(), Some(11), "{e}");
    }

    #[test]
    fn secrets_come_from_the_file_or_the_environment() {
        let e = parse(&BASE.replace("\"SECRET\"", "\"NOPE\"")).unwrap_err();
        assert_eq!(e.line(), Some(7), "{e}");
        assert!(e.message().contains("`NOPE` is not set"), "{e}");
        assert!(e.message().contains("client_secret_env"), "{e}");

        let inline = BASE.replace(
            "client_secret_env = \"SECRET\"",
            "client_secret = \"inline\"",
        );
        let c = parse(&inline).unwrap();
        assert_eq!(c.authorization_server.client_secret.secret(), "inline");

        let none = BASE.replace("client_secret_env = \"SECRET\"\n", "");
        let e = parse(&none).unwrap_err();
        assert!(e.message().contains("client_secret"), "{e}");
        assert_eq!(e.line(), Some(3), "{e}");

        let both = BASE.replace(
            "client_secret_env = \"SECRET\"",
            "client_secret = \"x\"\nclient_secret_env = \"SECRET\"",
        );
        assert!(parse(&both).unwrap_err().message().contains("not both"));
    }

    #[test]
    fn missing_required_keys_are_named() {
        let e = parse(&BASE.replace("upstream = \"http://127.0.0.1:9000\"\n", "")).unwrap_err();
        assert!(e.message().contains("`upstream`"), "{e}");
        let e = parse(&BASE.replace("client_id = \"photo-api\"\n", "")).unwrap_err();
        assert!(e.message().contains("missing field `client_id`"), "{e}");
        let e = parse("upstream = \"http://127.0.0.1:1\"\n").unwrap_err();
        assert!(e.message().contains("authorization_server"), "{e}");
    }

    #[test]
    fn endpoints_without_discovery() {
        let text = BASE.replace(
            "issuer = \"http://127.0.0.1:8180\"",
            "token_endpoint = \"http://as.test/token\"\nintrospection_endpoint = \"http://as.test/introspect\"",
        );
        let e = parse(&text).unwrap_err();
        assert!(
            e.message().contains("missing: `permission_endpoint`"),
            "{e}"
        );
        let text = text.replace(
            "introspection_endpoint",
            "permission_endpoint = \"http://as.test/permission\"\nintrospection_endpoint",
        );
        let e = parse(&text).unwrap_err();
        assert!(
            e.message().contains("resource_registration_endpoint"),
            "{e}"
        );
        let text = text.replace(
            "introspection_endpoint",
            "resource_registration_endpoint = \"http://as.test/rs\"\nintrospection_endpoint",
        );
        let c = parse(&text).unwrap();
        assert_eq!(c.authorization_server.builder_issuer(), "http://as.test");
    }

    /// `public = true` covers GET, HEAD and OPTIONS; `public_methods` widens it, or makes
    /// methods of a protected entry public.
    #[test]
    fn public_methods_widen_public_entries() {
        use http::HeaderMap;
        use tower_uma::Resolution;
        let text = format!(
            "{BASE}public_methods = [\"OPTIONS\"]\n\
             [[resources]]\npath = \"/health\"\npublic = true\n\
             [[resources]]\npath = \"/hooks/*\"\npublic = true\npublic_methods = [\"POST\"]\n"
        );
        let c = parse(&text).unwrap();
        assert_eq!(c.resources[0].public_methods, [Method::OPTIONS]);
        assert_eq!(c.resources[2].public_methods, [Method::POST]);
        let map = c.resource_map();
        map.validate().unwrap();
        let resolve = |m: Method, path| map.resolve_request(&m, path, &HeaderMap::new()).unwrap();
        assert_eq!(resolve(Method::OPTIONS, "/albums/1"), Resolution::Public);
        assert_eq!(resolve(Method::HEAD, "/health"), Resolution::Public);
        assert!(matches!(
            resolve(Method::POST, "/health"),
            Resolution::MethodNotAllowed { .. }
        ));
        assert_eq!(resolve(Method::POST, "/hooks/x"), Resolution::Public);

        let both = format!("{BASE}public_methods = [\"GET\"]\n");
        let e = parse(&both).unwrap_err();
        assert!(e.message().contains("both public and protected"), "{e}");
        assert_eq!(e.line(), Some(10), "{e}");
    }

    /// Typos that used to be accepted silently: `:id` (a literal), `GTE` and `get` (methods
    /// that never match GET).
    #[test]
    fn route_typos_name_the_key_and_line_with_a_hint() {
        let e = parse(&BASE.replace("{id}\"", ":id\"")).unwrap_err();
        assert_eq!(e.line(), Some(10), "{e}");
        assert!(e.message().contains("use {id} instead"), "{e}");

        let e = parse(&BASE.replace("GET =", "GTE =")).unwrap_err();
        assert_eq!(e.line(), Some(11), "{e}");
        assert!(e.message().starts_with("`scopes`: "), "{e}");
        assert!(e.message().contains("typo of GET"), "{e}");

        let e = parse(&BASE.replace("GET =", "get =")).unwrap_err();
        assert_eq!(e.line(), Some(11), "{e}");
        assert!(e.message().contains("write GET"), "{e}");

        let e = parse(&format!("{BASE}public_methods = [\"OPTOINS\"]\n")).unwrap_err();
        assert_eq!(e.line(), Some(12), "{e}");
        assert!(e.message().starts_with("`public_methods`: "), "{e}");
        assert!(e.message().contains("typo of OPTIONS"), "{e}");

        let e = parse(&format!("{BASE}public_methods = [\"NOT A TOKEN\"]\n")).unwrap_err();
        assert_eq!(e.line(), Some(12), "{e}");
        assert!(e.message().contains("is not an HTTP method"), "{e}");
    }

    #[test]
    fn resources_merge_by_name_and_public_routes_stay_bare() {
        let text = format!(
            "{BASE}[[resources]]\nname = \"album\"\npath = \"/albums\"\nscopes = {{ POST = [\"create\"], \"*\" = [\"view\"] }}\ntype = \"t\"\n\
             [[resources]]\npath = \"/health\"\npublic = true\n"
        );
        let c = parse(&text).unwrap();
        let d0 = c.resources[0].decl.as_ref().unwrap();
        let d1 = c.resources[1].decl.as_ref().unwrap();
        assert_eq!(d0, d1);
        assert_eq!(d0.resource_scopes, ["view", "edit", "create"]);
        assert_eq!(d0.r#type.as_deref(), Some("t"));
        assert!(c.resources[2].public && c.resources[2].decl.is_none());
        c.resource_map().validate().unwrap();

        let bad = format!(
            "{BASE}[[resources]]\npath = \"/health\"\npublic = true\nscopes = {{ GET = [\"x\"] }}\n"
        );
        let e = parse(&bad).unwrap_err();
        assert!(e.message().contains("public"), "{e}");
        assert_eq!(e.line(), Some(12), "{e}");

        let dup = format!(
            "{BASE}[[resources]]\nname = \"other\"\npath = \"/Albums/{{x}}\"\nscopes = {{ GET = [\"v\"] }}\n"
        );
        let e = parse(&dup).unwrap_err();
        assert!(e.message().contains("match the same paths"), "{e}");
        assert_eq!(e.line(), Some(14), "{e}");
    }

    #[test]
    fn the_example_file_parses() {
        let text = include_str!("../proxy.toml");
        let env = |n: &str| (n == "PHOTO_API_SECRET").then(|| "photo-api-secret".to_owned());
        let c = Config::from_toml_str(text, "proxy.toml", &Overrides::default(), env).unwrap();
        assert_eq!(c.admin_listen, Some("127.0.0.1:9090".parse().unwrap()));
        assert_eq!(c.cache.max_entries, Some(100_000));
        assert_eq!(c.resources.len(), 2);
        assert!(c.resources[1].public);
        let decl = c.resources[0].decl.as_ref().unwrap();
        assert_eq!(decl.owner.as_deref(), Some("alice"));
        assert_eq!(decl.resource_scopes.len(), 3);
    }

    #[test]
    fn wso2_defaults_to_the_password_grant() {
        let text = BASE.replace("allow_http = true", "allow_http = true\ndialect = \"wso2\"");
        let e = parse(&text).unwrap_err();
        assert!(e.message().contains("resource_owner"), "{e}");
        let text = text.replace(
            "dialect = \"wso2\"",
            "dialect = \"wso2\"\nresource_owner = \"alice\"\nresource_owner_password_env = \"SECRET\"",
        );
        let c = parse(&text).unwrap();
        match &c.authorization_server.pat_grant {
            PatGrantConfig::Password {
                resource_owner,
                password,
            } => {
                assert_eq!(resource_owner, "alice");
                assert_eq!(password.secret(), "s3cret");
            }
            other => panic!("{other:?}"),
        }
        let cc = BASE.replace(
            "allow_http = true",
            "allow_http = true\nresource_owner = \"alice\"",
        );
        assert!(parse(&cc).unwrap_err().message().contains("only used with"));
    }

    #[test]
    fn debug_output_holds_no_secret() {
        let c = parse(&BASE.replace(
            "client_secret_env = \"SECRET\"",
            "client_secret = \"hunter2-xyz\"",
        ))
        .unwrap();
        assert!(!format!("{c:?}").contains("hunter2-xyz"));
    }

    #[test]
    fn method_override_trusted_proxies_and_allowed_hosts() {
        let c = parse(BASE).unwrap();
        assert_eq!(c.method_override, MethodOverride::Refuse);
        assert!(c.trusted_proxies.is_empty());
        assert_eq!(c.allowed_hosts, None);

        let text = format!(
            "method_override = \"decide\"\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n\
             allowed_hosts = [\"api.example.com\", \"[::1]:8080\"]\n{BASE}"
        );
        let c = parse(&text).unwrap();
        assert_eq!(c.method_override, MethodOverride::Decide);
        assert!(c.trusted_proxies.contains("10.9.9.9".parse().unwrap()));
        assert!(c.trusted_proxies.contains("::1".parse().unwrap()));
        assert!(!c.trusted_proxies.contains("127.0.0.1".parse().unwrap()));
        let hosts = c.allowed_hosts.unwrap();
        assert!(hosts.allows("API.example.com:8080") && hosts.allows("[::1]:8080"));

        let e = parse(&format!("method_override = \"allow\"\n{BASE}")).unwrap_err();
        assert_eq!(e.line(), Some(1), "{e}");
        assert!(e.message().contains("`method_override`"), "{e}");

        let text = format!("trusted_proxies = [\n  \"10.0.0.0/8\",\n  \"10.0.0.1/8\",\n]\n{BASE}");
        let e = parse(&text).unwrap_err();
        assert_eq!(e.line(), Some(3), "{e}");
        assert!(e.message().starts_with("`trusted_proxies`: "), "{e}");
        assert!(e.message().contains("\"10.0.0.0/8\"?"), "{e}");
        let e = parse(&format!("trusted_proxies = [\"localhost\"]\n{BASE}")).unwrap_err();
        assert_eq!(e.line(), Some(1), "{e}");

        let text = format!("allowed_hosts = [\n  \"good.test\",\n  \"u@evil.test\",\n]\n{BASE}");
        let e = parse(&text).unwrap_err();
        assert_eq!(e.line(), Some(3), "{e}");
        assert!(e.message().starts_with("`allowed_hosts`: "), "{e}");
        let e = parse(&format!("allowed_hosts = []\n{BASE}")).unwrap_err();
        assert!(e.message().contains("empty"), "{e}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("3s"), Some(Duration::from_secs(3)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_duration("1.5s"), None);
        assert_eq!(parse_duration("s"), None);
        let c = parse(&format!("shutdown_timeout = 2\n{BASE}")).unwrap();
        assert_eq!(c.shutdown_timeout, Duration::from_secs(2));
        let e = parse(&format!("upstream_timeout = \"0s\"\n{BASE}")).unwrap_err();
        assert!(e.message().contains("greater than zero"), "{e}");
    }

    #[test]
    fn as_call_limits_and_the_breaker() {
        let with = |lines: &str| {
            parse(&BASE.replace("allow_http = true", &format!("allow_http = true\n{lines}")))
        };
        let c = with(
            "max_calls_in_flight = 8\nbreaker_failure_threshold = 0\n\
             breaker_open_interval = \"250ms\"\nbreaker_max_open_interval = \"4s\"",
        )
        .unwrap();
        let calls = c.authorization_server.calls;
        assert_eq!(calls.max_in_flight, Some(8));
        assert_eq!(calls.breaker_failure_threshold, Some(0));
        assert_eq!(
            calls.breaker_open_interval,
            Some((Duration::from_millis(250), Duration::from_secs(4)))
        );
        // One of the two intervals: the other keeps the layer's default.
        let c = with("breaker_max_open_interval = \"2m\"").unwrap();
        assert_eq!(
            c.authorization_server.calls.breaker_open_interval,
            Some((DEFAULT_BREAKER_OPEN_INTERVAL, Duration::from_secs(120)))
        );
        let e = with("max_calls_in_flight = 0").unwrap_err();
        assert_eq!(e.line(), Some(6), "{e}");
        assert!(e.message().contains("at least 1"), "{e}");
        let e = with("breaker_open_interval = \"0s\"").unwrap_err();
        assert!(e.message().contains("greater than zero"), "{e}");
        let e = with("breaker_open_interval = \"1m\"").unwrap_err();
        assert_eq!(e.line(), Some(6), "{e}");
        assert!(e.message().contains("longer than"), "{e}");
        let e = with("breaker_failure_threshold = -1").unwrap_err();
        assert!(e.message().contains("breaker_failure_threshold"), "{e}");
    }
}
