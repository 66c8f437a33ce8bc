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
//! The text goes through two private steps: `raw`, serde's view of the file (every key, its
//! type and its span), then `resolve`, which checks the values and builds the public types
//! of this module. Positions, key names and durations come from the workspace's `toml-diag`
//! crate, which uma-test-as shares.

mod keycloak;
mod raw;
mod resolve;
mod shared;

pub(crate) use shared::redact_url;
mod tenants;
#[cfg(test)]
mod tests;

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use http::Method;
use toml_diag::Diagnostic;
pub use toml_diag::parse_duration;
pub use tower_uma::Dialect;
use tower_uma::{
    EnforcementMode, IntrospectionCache, ResourceDecl, ResourceMap, Route,
    method_override::MethodOverride, resources::Unmapped, token::ClientSecret,
};

use crate::forward::Upstream;
use crate::trust::{AllowedHosts, TrustedProxies};

/// The default `listen` address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// The keys whose values are secrets: an error on their line does not quote the value.
/// (`client_secret` also covers `client_secret_env`, whose value may be the secret by mistake.)
const SECRET_KEYS: &[&str] = &[
    "client_secret",
    "resource_owner_password",
    "admin_token_env",
    "secret_env",
];

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
    /// `--keycloak-config FILE`: replaces the file's `keycloak_config`.
    pub keycloak_config: Option<String>,
}

/// A checked proxy configuration. See the crate README for every key and its default.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Where the proxy listens (`listen`).
    pub listen: SocketAddr,
    /// `mode`: a reverse proxy (`"proxy"`, the default) or the decision service of a
    /// gateway (`"decision"`).
    pub mode: Mode,
    /// Where requests are forwarded (`upstream`); required in proxy mode, refused in decision
    /// mode (the proxy forwards nothing there).
    pub upstream: Option<Upstream>,
    /// The `realm` of UMA challenges (`realm`); the layer defaults to the client id.
    pub realm: Option<String>,
    /// `enforcement`: `"enforcing"` (default), `"permissive"` or `"disabled"`.
    pub enforcement: EnforcementMode,
    /// `unmapped`: `"deny"` (default) or `"allow"`.
    pub unmapped: Unmapped,
    /// The admin listener (`/healthz`, `/metrics`), off unless `admin_listen` is set.
    pub admin_listen: Option<SocketAddr>,
    /// The bearer secret of `POST /admin/revoke`, from the environment variable named by
    /// `admin_token_env` (at least 16 bytes); without it the endpoint answers `404`.
    pub admin_token: Option<ClientSecret>,
    /// Whether the client's `Authorization` header reaches the upstream
    /// (`forward_authorization`, default `true`).
    pub forward_authorization: bool,
    /// How long the upstream may take to answer with its response head (`upstream_timeout`).
    pub upstream_timeout: Duration,
    /// How long requests in flight may take to finish after SIGTERM or Ctrl-C
    /// (`shutdown_timeout`).
    pub shutdown_timeout: Duration,
    /// `method_override`: `"refuse"` (default) or `"decide"`; see
    /// [`tower_uma::method_override::MethodOverride`].
    pub method_override: MethodOverride,
    /// `trusted_proxies`: the peers whose forwarding headers are kept (default: none).
    pub trusted_proxies: TrustedProxies,
    /// `allowed_hosts`: the `Host` values answered; others get `421` (default: any host).
    pub allowed_hosts: Option<AllowedHosts>,
    /// `[authorization_server]`, or what the Keycloak configuration names; with
    /// `[[tenants]]`, the first tenant's (each tenant's is in [`tenants`](Self::tenants)).
    pub authorization_server: AsConfig,
    /// `keycloak_config` (or `--keycloak-config`): Keycloak's `keycloak.json`, whose paths
    /// come before `[[resources]]` in [`resource_map`](Self::resource_map).
    pub keycloak: Option<tower_uma::keycloak::KeycloakConfig>,
    /// `[cache]`.
    pub cache: CacheConfig,
    /// `[resource_metadata]`: RFC 9728 metadata served at
    /// `/.well-known/oauth-protected-resource` (off without the table).
    pub resource_metadata: Option<tower_uma::metadata::ResourceMetadata>,
    /// `[[resources]]`, in file order (empty with `[[tenants]]`).
    pub resources: Vec<ResourceConfig>,
    /// `[[tenants]]`, in file order: empty for a single-tenant file.
    pub tenants: Vec<TenantConfig>,
}

/// One `[[tenants]]` table: which requests are the tenant's (`match`), and its own
/// `[authorization_server]`, `[[resources]]` and `realm`. Every other key (`enforcement`,
/// `unmapped`, `method_override`, `[cache]`) is the file's, applied to each tenant (each
/// tenant gets a cache of its own with the `[cache]` settings).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TenantConfig {
    /// `name`: the tenant's name in logs, `--check` and the `tenant` metric label.
    pub name: String,
    /// `match`: `host`, `path_prefix` and `strip_prefix`.
    pub matches: tower_uma::tenant::TenantMatch,
    /// `realm`: the `realm` of the tenant's challenges (the layer defaults to the client id).
    pub realm: Option<String>,
    /// `[tenants.authorization_server]`: the same keys as `[authorization_server]`.
    pub authorization_server: AsConfig,
    /// `[[tenants.resources]]`: the same keys as `[[resources]]`.
    pub resources: Vec<ResourceConfig>,
    /// The 1-based line of the `[[tenants]]` table in the file.
    pub line: usize,
}

impl TenantConfig {
    /// The tenant's resource map.
    pub fn resource_map(&self) -> ResourceMap {
        self.resources
            .iter()
            .fold(ResourceMap::new(), |map, r| map.route(r.route()))
    }
}

/// What the proxy does with a request it lets through (`mode`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mode {
    /// `mode = "proxy"` (the default): forward it to `upstream`.
    Proxy,
    /// `mode = "decision"`: answer a gateway's authorization request about it; see the
    /// [`decision`](crate::decision) module.
    Decision(DecisionOptions),
}

/// The keys of decision mode: who may ask, and where Envoy's requests name the original path.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DecisionOptions {
    /// `trusted_forwarders`: the peers that may ask (default: loopback, `127.0.0.0/8` and
    /// `::1`); anyone else gets `403`.
    pub trusted_forwarders: TrustedProxies,
    /// `path_prefix`: with Envoy's HTTP `ext_authz`, the prefix its authorization requests put
    /// before the original path (`/ext_authz` for `path_prefix: /ext_authz`).
    pub path_prefix: Option<String>,
}

impl Default for DecisionOptions {
    fn default() -> Self {
        Self {
            trusted_forwarders: TrustedProxies::loopback(),
            path_prefix: None,
        }
    }
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
    /// `rpt_validation`: introspection (the default), or local verification of JWT RPTs
    /// against the AS's key set.
    pub rpt_validation: tower_uma::jwt::RptValidation,
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
/// `breaker_failure_threshold`, `breaker_open_interval`, `breaker_max_open_interval` and
/// `resource_resync_interval` of `[authorization_server]`. Unset keys keep the layer's
/// defaults (64, 5, 1 s, 5 s, 5 s).
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
    /// `resource_resync_interval`: how often a resource the AS forgot may be registered (or
    /// looked up) again.
    pub resource_resync_interval: Option<Duration>,
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
        if let Some(every) = self.resource_resync_interval {
            builder = builder.resource_resync_interval(every);
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
    /// `[cache.shared]`: the fleet's cache level on Redis (feature `redis`).
    pub shared: Option<SharedCacheConfig>,
}

/// `[cache.shared]`: a second cache level on Redis shared by the replicas of a fleet, and the
/// channel their revocations go on (feature `redis`; see tower-uma's `SharedCache`).
///
/// Its `Debug` shows the URL without its user and password.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SharedCacheConfig {
    /// `url`: `redis://host:port/db`.
    pub url: String,
    /// The fleet secret, from the environment variable named by `secret_env` (at least 32
    /// bytes, the same on every replica).
    pub secret: ClientSecret,
    /// `timeout` (default 50 ms): the longest any Redis call may take.
    pub timeout: Duration,
    /// `channel` (default `tower-uma:revocations`): where revocations are published.
    pub channel: String,
}

impl std::fmt::Debug for SharedCacheConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedCacheConfig")
            .field("url", &shared::redact_url(&self.url))
            .field("secret", &self.secret)
            .field("timeout", &self.timeout)
            .field("channel", &self.channel)
            .finish()
    }
}

/// `[cache.shared]`'s default `timeout`.
pub const DEFAULT_SHARED_TIMEOUT: Duration = Duration::from_millis(50);

impl SharedCacheConfig {
    /// The shared level these settings describe.
    ///
    /// # Errors
    ///
    /// What tower-uma says of the URL or secret (the configuration checks both first).
    #[cfg(feature = "redis")]
    pub fn build(
        &self,
    ) -> Result<tower_uma::cache::SharedCache, tower_uma::cache::SharedCacheError> {
        tower_uma::cache::SharedCache::builder(self.url.clone(), self.secret.secret().as_bytes())
            .timeout(self.timeout)
            .channel(self.channel.clone())
            .build()
    }
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
        #[cfg(feature = "redis")]
        if let Some(shared) = &self.shared {
            match shared.build() {
                Ok(shared) => b = b.shared(shared),
                // Checked when the file was read; a hand-built config may still be wrong.
                Err(error) => {
                    tracing::error!(%error, "[cache.shared] is not usable; running without it");
                }
            }
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
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(
                &origin,
                Diagnostic::new(format!("cannot read the file: {e}")),
            )
        })?;
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
        let raw: raw::RawConfig = toml_diag::from_str_with_secrets(text, SECRET_KEYS)
            .map_err(|d| ConfigError::new(origin, d))?;
        resolve::Resolver {
            text,
            origin,
            env: &env,
        }
        .resolve(raw, overrides)
    }

    /// The resource map: the Keycloak configuration's paths, if any, then `[[resources]]`.
    pub fn resource_map(&self) -> ResourceMap {
        let start = self.keycloak.as_ref().map_or_else(
            ResourceMap::new,
            tower_uma::keycloak::KeycloakConfig::resource_map,
        );
        self.resources
            .iter()
            .fold(start, |map, r| map.route(r.route()))
    }

    /// A configuration from Keycloak's `keycloak.json` alone (`uma-proxy --keycloak-config
    /// FILE --upstream URL`): every other key at its default, `upstream` from `overrides`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the Keycloak file's key, or the missing upstream.
    pub fn from_keycloak(path: &Path, overrides: &Overrides) -> Result<Self, ConfigError> {
        let overrides = Overrides {
            keycloak_config: Some(path.display().to_string()),
            ..overrides.clone()
        };
        Self::from_toml_str("", "--keycloak-config", &overrides, |name| {
            std::env::var(name).ok()
        })
    }
}

/// A configuration problem: what, where (file, line, column) and which key.
///
/// `Display` reads `proxy.toml: line 4, column 1: unknown field `colour`, …`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    origin: String,
    diagnostic: Diagnostic,
}

impl ConfigError {
    fn new(origin: &str, diagnostic: Diagnostic) -> Self {
        Self {
            origin: origin.to_owned(),
            diagnostic,
        }
    }

    /// The 1-based line of the offending key or value, when known.
    #[must_use]
    pub fn line(&self) -> Option<usize> {
        self.diagnostic.line()
    }

    /// What is wrong, without the location.
    #[must_use]
    pub fn message(&self) -> &str {
        self.diagnostic.message()
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.origin, self.diagnostic)
    }
}

impl std::error::Error for ConfigError {}
