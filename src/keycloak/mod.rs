//! Keycloak's own enforcer configuration, read as it is: [`KeycloakConfig`] turns a
//! `keycloak.json` (with its `policy-enforcer` section) or a standalone
//! `policy-enforcer.json` into a configured [`UmaLayerBuilder`], [`LazyPaths`] resolves
//! unconfigured paths by the resources' `uris` at Keycloak, [`PermissionExchange`]
//! exchanges plain access tokens for permissions, and claim information points push claims
//! read from the request ([`PushedClaims`](crate::resources::PushedClaims)).
//!
//! # Example
//!
//! ```no_run
//! use tower_uma::keycloak::KeycloakConfig;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = KeycloakConfig::from_path("keycloak.json".as_ref())?;
//! // Discovery at {auth-server-url}/realms/{realm}, the Keycloak dialect, the client's
//! // credentials, the paths, lazy paths.
//! let layer = config.discover().build().await?;
//! # let _ = layer; Ok(()) }
//! ```
//!
//! ```
//! use tower_uma::keycloak::KeycloakConfig;
//!
//! let config = KeycloakConfig::from_json(r#"{
//!   "realm": "photos",
//!   "auth-server-url": "https://sso.example.com/",
//!   "resource": "photo-api",
//!   "credentials": {"secret": "photo-api-secret"},
//!   "policy-enforcer": {
//!     "user-managed-access": {},
//!     "paths": [
//!       {"name": "Album", "path": "/albums/{id}",
//!        "methods": [{"method": "GET", "scopes": ["view"]},
//!                    {"method": "DELETE", "scopes": ["delete"]}]},
//!       {"path": "/health", "enforcement-mode": "DISABLED"}
//!     ]
//!   }
//! }"#)?;
//! assert_eq!(config.issuer(), "https://sso.example.com/realms/photos");
//!
//! let typo = KeycloakConfig::from_json(r#"{"realm": "r", "auth-server-url": "https://kc",
//!   "resource": "c", "credentials": {"secret": "s"},
//!   "policy-enforcer": {"paths": [{"name": "A", "path": "/a", "metods": []}]}}"#);
//! assert_eq!(typo.unwrap_err().key(), "policy-enforcer.paths[0].metods");
//! # Ok::<(), tower_uma::keycloak::KeycloakConfigError>(())
//! ```
//!
//! # Every key and what it means here
//!
//! Keys are read from the top of a `keycloak.json` and from its `policy-enforcer` section,
//! or all from the top of a standalone `policy-enforcer.json` (Quarkus's and keycloak-client's
//! `PolicyEnforcerConfig`). The section may repeat the connection keys; a repeated key must
//! have the same value.
//!
//! | Key | tower-uma meaning |
//! |---|---|
//! | `realm` | the realm: discovery at `{auth-server-url}/realms/{realm}`, and the `realm` of UMA challenges |
//! | `auth-server-url` | Keycloak's base URL (a trailing `/` is dropped) |
//! | `resource` | the client id: the PAT by client credentials, and introspection |
//! | `credentials.secret` | the client secret (required) |
//! | `credentials.jwt`, `credentials.secret-jwt`, `credentials.provider` | refused: other client authentications are not supported |
//! | `public-client` | `false` or absent; `true` is refused (a public client gets no PAT) |
//! | `connection-timeout-millis`, `socket-timeout-millis` | [`UmaLayerBuilder::connect_timeout`](crate::UmaLayerBuilder::connect_timeout), [`request_timeout`](crate::UmaLayerBuilder::request_timeout) |
//! | `truststore`, `truststore-password`, `client-keystore`, `client-keystore-password`, `client-key-password`, `disable-trust-manager`, `allow-any-hostname`, `proxy-url` | refused: they change how the AS is reached; configure the layer's HTTP client with [`UmaLayerBuilder::http_client_builder`](crate::UmaLayerBuilder::http_client_builder) (roots, proxy), which keeps it from following redirects |
//! | `ssl-required`, `confidential-port`, `realm-public-key`, `use-resource-role-mappings`, `enable-cors`, `cors-*`, `expose-token`, `bearer-only`, `autodetect-bearer-only`, `enable-basic-auth`, `redirect-rewrite-rules`, `always-refresh-token`, `register-node-*`, `token-store`, `adapter-state-cookie-path`, `principal-attribute`, `turn-off-change-session-id-on-login`, `token-minimum-time-to-live`, `min-time-between-jwks-requests`, `public-key-cache-ttl`, `enable-pkce`, `ignore-oauth-query-parameter`, `verify-token-audience`, `connection-pool-size`, `connection-ttl-millis` | accepted, no effect: they concern browser sessions, CORS or the adapter's own token check |
//! | `policy-enforcer.enforcement-mode` | `ENFORCING` (the default): [`EnforcementMode::Enforcing`](crate::EnforcementMode::Enforcing). `PERMISSIVE` and `DISABLED` are refused: Keycloak lets any valid access token through there, a rule tower-uma does not have |
//! | `policy-enforcer.paths[]` | one route each; entries with the same `path` are merged into the first, as Keycloak does |
//! | `paths[].name` | the resource, by name ([`ResourceRef::Name`](crate::resources::ResourceRef::Name)): Keycloak's console owns it, the layer never registers it; its id is looked up on first use among the resources the resource server owns, as Keycloak's enforcer does (`name`, `exactName=true`, `owner` = `resource`), so a user's resource of that name is never taken; a name Keycloak does not know denies (`403`), and so does one the resource server holds twice (`403` + `Warning`, the error logged) |
//! | `paths[].id` | the resource by id, when there is no `name` |
//! | neither `name` nor `id` | the resource whose `uris` hold the path as written, else the one whose `uris` match it, looked up once when the layer is built (several: an error, as in Keycloak); none: the path is denied (`403`), whatever [`Unmapped`](crate::resources::Unmapped) says, and lazy paths do not decide it |
//! | `paths[].path` | the route's template: `{id}` parameters (whole segments), a trailing `/*`, or `*` for everything; suffix patterns (`/*.html`), `*` inside a segment, parameters inside a segment, and a trailing `/` or an empty segment (`/x/`, `/x//y`: Keycloak never matches them, tower-uma would match `/x`) are refused |
//! | `paths[].methods[]` | `method` (exactly as written; `HEAD` does not follow `GET`), its `scopes`, and `scopes-enforcement-mode` `ALL` ([`ScopeMode::All`](crate::resources::ScopeMode::All), default) or `ANY`; `DISABLED` is refused (Keycloak then lets any valid token through) |
//! | `paths[].scopes` | the scopes of methods without an entry, any one of them enough; with neither, any valid permission for the resource |
//! | `paths[].enforcement-mode` | `ENFORCING` (default); `DISABLED`: a public route, every standard method passes without a token; `PERMISSIVE` is refused. With no enforced path and no `lazy-load-paths`, a `DISABLED` path with a `*` or a `{…}` is refused (see "No paths" below) |
//! | `paths[].type` | accepted, no effect |
//! | `paths[].claim-information-point.claims`, `policy-enforcer.claim-information-point.claims` | [`PushedClaims`](crate::resources::PushedClaims) of the path's route: each claim a value template (or an array of them) with Keycloak's placeholders `{request.header['…']}`, `{request.parameter['…']}`, `{request.method}`, `{request.uri}`, `{request.relativePath}`, `{request.body['/pointer']}` (a field of a JSON body, read by a [`ClaimBodyLayer`](crate::resources::ClaimBodyLayer) outside the layer; uma-proxy reads bodies of at most 64 KiB itself), and tower-uma's `{request.path['…']}` for the path's `{…}` parameters. The section's claims go with every path; a path's own claim replaces one of the same name. Sent with the ticket request (`claims`) and the permission exchange (`claim_token`); a token's permission that carries claims grants only requests pushing those values. `{request.body}` without a pointer, `{request.cookie[…]}`, `{request.remoteAddr}`, `{request.secure}` and `{keycloak.access_token[…]}` are refused, and so is the section's `claims` together with lazy paths |
//! | `claim-information-point.http` and other providers | refused: only the `claims` provider is supported; claims from another service (`http`) are not fetched |
//! | `policy-enforcer.http-method-as-scope` | methods without an entry need their own name as scope |
//! | `policy-enforcer.lazy-load-paths` | [`LazyPaths`]: paths no entry matches are resolved at Keycloak by the resources' `uris` |
//! | `policy-enforcer.path-cache.max-entries`, `.lifespan` | [`LazyPaths::max_entries`] (default 1000), [`LazyPaths::lifespan`] in milliseconds (default 30000; `-1` never expires; `0` caches nothing). As in Keycloak, a `path-cache` section turns lazy paths on by itself |
//! | `policy-enforcer.user-managed-access` | present (`{}`): UMA only, a token that does not grant the request gets `401` with a ticket. Absent (Keycloak's default): [`PermissionExchange`] as well, a plain access token is exchanged for the permissions it may have, and a refusal is `403` without a ticket; requests without a token still get `401` with a ticket |
//! | `policy-enforcer.on-deny-redirect-to` | [`KeycloakConfig::on_deny_redirect_to`] gives a [`DenyRedirectLayer`](crate::refusal::DenyRedirectLayer) to put outside the layer (uma-proxy does): a denial (`403` without a ticket: permission exchange refused, or no path matches) becomes `302 Found` to that location, as in Keycloak; `401` challenges and the `403` + `Warning` of an unreachable AS stay as they are |
//!
//! # Where the layer differs from Keycloak's enforcer
//!
//! - **No paths.** With no `paths` (or only `DISABLED` ones) Keycloak loads every resource with
//!   `uris` at start-up; here no paths at all turns lazy paths on, so resources added in the
//!   console later are found too. With only `DISABLED` paths, Keycloak's matcher weighs those
//!   resources' `uris` against them (in a hash map's order), and a resource matching a request
//!   more closely, or as closely and tried first, is enforced (`/albums/*` beats a public
//!   `/*`, the Default Resource's `/*` may beat a public `/`); tower-uma cannot know them at
//!   start, so such a configuration is refused. Set `lazy-load-paths` (Keycloak then keeps
//!   `DISABLED` paths public, and so does tower-uma) or configure the protected paths.
//! - **Configured paths win: more permissive than Keycloak.** A path an entry matches is
//!   decided by the entry, always. Keycloak with lazy paths also asks the server about a path
//!   an enforced `*` entry matches, and when a resource's `uris` match it, checks the request
//!   against that resource (with the entry's methods): for `/api/*` bound to `api` and a
//!   resource `reports` with `uris: ["/api/reports"]`, Keycloak wants a permission for
//!   `reports`, tower-uma lets a permission for `api` through. (Its cache could then also
//!   change the decision, keycloak/keycloak-client#190.) Give every resource whose `uris` fall
//!   under a configured `*` path an entry of its own (`{"name": "reports", "path":
//!   "/api/reports"}`), or grant the wildcard entry's resource only to those who may use every
//!   path under it. `DISABLED` `*` entries stay public in both.
//! - **Matching.** Paths are matched by tower-uma's rules ([`ResourceMap`]): the request path
//!   is normalised first and unsafe spellings are refused with `400`; among several matching
//!   entries the most specific wins, segment by segment. Keycloak compares strings and
//!   prefers a path matching the whole request (exact, template, or `/prefix/*` for
//!   `/prefix`) over a trailing `*`, then more segments, then the first listed. Where two
//!   entries with different rules match one request and the two orders would pick different
//!   ones (a public `/api/*` and an enforced `/{tenant}/admin` for `/api/admin`; `/{y}/b`
//!   listed before `/a/{x}` for `/a/b`), the configuration is refused, naming both entries and
//!   the request: list the more specific template first, add an entry for that path itself,
//!   or write paths that do not overlap.
//! - **Resource instances: more permissive than Keycloak.** For an entry with a `{param}`,
//!   Keycloak first looks for a resource whose `uris` hold the concrete path (one resource per
//!   album, `/albums/42`) and then grants the request only on a permission for that instance;
//!   tower-uma decides for the named resource, so a permission for it opens every instance.
//!   Do not make per-instance resources under a template path protected by tower-uma (or grant
//!   the named resource only to those who may use every instance).
//! - **Without `user-managed-access`** Keycloak issues no tickets: a request without a token
//!   is refused with `403`. tower-uma exchanges plain access tokens the same way, but still
//!   answers a request without a token (or with a token Keycloak does not accept) with `401`
//!   and a ticket (UMA Grant §3.3.1), so that UMA clients keep working beside them.
//! - **Pushed claims** come from the request line, headers and JSON body fields: Keycloak's
//!   `{request.body}` (the whole body as text), `{request.cookie[…]}`, `{request.remoteAddr}`, `{request.secure}`,
//!   `{keycloak.access_token[…]}` and the `http` provider are refused; `{request.uri}` is the
//!   path and query as received, where Keycloak gives the full URL; `{request.path['…']}` is
//!   tower-uma's own. A token Keycloak's introspection calls inactive (a plain access token)
//!   of a public client cannot push claims in an exchange (Keycloak refuses them): it gets
//!   `401` with a ticket carrying the claims, where Keycloak's enforcer answers `403`.
//! - **A path without `name` or `id`** is looked up by its path when the layer is built, as
//!   Keycloak does at start-up, and not again: a resource created or changed later in the
//!   console needs a restart (or a `name`).
//!
//! [`ResourceMap`]: crate::ResourceMap

mod exchange;
mod lazy;
mod parse;
mod precedence;
mod rule;

use std::fmt;
use std::path::Path;

pub use self::exchange::PermissionExchange;
pub(crate) use self::exchange::{Exchanged, Exchanger};
pub use self::lazy::LazyPaths;
pub(crate) use self::lazy::{LazyResolver, resource_for_uri};
use self::parse::Parsed;
pub(crate) use self::rule::UriCell;
use crate::dialect::Dialect;
use crate::layer::{UmaLayer, UmaLayerBuilder};
use crate::resources::ResourceMap;
use crate::token::ClientSecret;

/// A Keycloak adapter configuration with its policy enforcer, checked: see the
/// [module documentation](self) for every key.
#[derive(Clone)]
pub struct KeycloakConfig {
    parsed: Parsed,
    /// Per path, the resource of a path without `name` or `id`, found by the path when a layer
    /// is built; shared by every map made from this configuration.
    cells: Vec<UriCell>,
}

impl fmt::Debug for KeycloakConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeycloakConfig")
            .field("realm", &self.parsed.realm)
            .field("auth_server_url", &self.parsed.auth_server_url)
            .field("resource", &self.parsed.resource)
            .field("paths", &self.parsed.enforcer.paths.len())
            .finish_non_exhaustive()
    }
}

/// Why a Keycloak configuration cannot be used: the JSON path of the key (`""` for the file
/// as a whole) and what is wrong with it.
///
/// `Display` reads ``policy-enforcer.paths[2].claim-information-point.http`: is not supported
/// by tower-uma yet: …``, prefixed with the file's name when read with
/// [`KeycloakConfig::from_path`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeycloakConfigError {
    origin: Option<String>,
    key: String,
    message: String,
}

impl KeycloakConfigError {
    pub(crate) fn new(key: &str, message: impl Into<String>) -> Self {
        Self {
            origin: None,
            key: key.to_owned(),
            message: message.into(),
        }
    }

    /// The JSON path of the offending key, such as `policy-enforcer.paths[2].path`; empty
    /// when the problem is the file as a whole.
    #[must_use]
    pub fn key(&self) -> &str {
        &self.key
    }

    /// What is wrong, without the key.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for KeycloakConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(origin) = &self.origin {
            write!(f, "{origin}: ")?;
        }
        if self.key.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "`{}`: {}", self.key, self.message)
        }
    }
}

impl std::error::Error for KeycloakConfigError {}

impl KeycloakConfig {
    /// Reads and checks a `keycloak.json` or `policy-enforcer.json`.
    ///
    /// # Errors
    ///
    /// A [`KeycloakConfigError`] naming the key: invalid JSON, a missing key, a wrong type, an
    /// unknown key (a typo), a key tower-uma does not support yet, or a path it cannot express.
    pub fn from_json(text: &str) -> Result<Self, KeycloakConfigError> {
        let mut parsed = parse::parse(text)?;
        parsed.auth_server_url = parsed.auth_server_url.trim_end_matches('/').to_owned();
        let cells = parsed
            .enforcer
            .paths
            .iter()
            .map(|_| UriCell::default())
            .collect();
        let config = Self { parsed, cells };
        // Every path must make a route, and the routes a valid map.
        let _checked = config.try_resource_map()?;
        config.check_public_patterns_beside_every_resource()?;
        precedence::check(&config.parsed.enforcer.paths)?;
        if !config.parsed.enforcer.claims.is_empty() && config.lazy_paths().is_some() {
            return Err(KeycloakConfigError::new(
                "policy-enforcer.claim-information-point",
                "is not supported by tower-uma yet with lazy paths (paths resolved at Keycloak \
                 push no claims); give the claims to the `paths` entries",
            ));
        }
        Ok(config)
    }

    /// [`from_json`](Self::from_json) on a file's contents; errors name the file.
    ///
    /// # Errors
    ///
    /// As [`from_json`](Self::from_json), and when the file cannot be read.
    pub fn from_path(path: &Path) -> Result<Self, KeycloakConfigError> {
        let origin = path.display().to_string();
        let with_origin = |mut e: KeycloakConfigError| {
            e.origin = Some(origin.clone());
            e
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            with_origin(KeycloakConfigError::new(
                "",
                format!("cannot read the file: {e}"),
            ))
        })?;
        Self::from_json(&text).map_err(with_origin)
    }

    /// The issuer: `{auth-server-url}/realms/{realm}`.
    #[must_use]
    pub fn issuer(&self) -> String {
        format!(
            "{}/realms/{}",
            self.parsed.auth_server_url,
            utf8_segment(&self.parsed.realm)
        )
    }

    /// `realm`.
    #[must_use]
    pub fn realm(&self) -> &str {
        &self.parsed.realm
    }

    /// `resource`: the client id.
    #[must_use]
    pub fn client_id(&self) -> &str {
        &self.parsed.resource
    }

    /// `credentials.secret`.
    #[must_use]
    pub fn client_secret(&self) -> ClientSecret {
        ClientSecret::new(self.parsed.secret.clone())
    }

    /// `on-deny-redirect-to`, if set: where [`DenyRedirectLayer`] sends denials. Not applied
    /// by [`apply`](Self::apply): the redirect is a layer of its own, outside the
    /// [`UmaLayer`].
    ///
    /// [`DenyRedirectLayer`]: crate::refusal::DenyRedirectLayer
    #[must_use]
    pub fn on_deny_redirect_to(&self) -> Option<crate::refusal::DenyRedirectLayer> {
        self.parsed
            .enforcer
            .on_deny_redirect_to
            .clone()
            .map(crate::refusal::DenyRedirectLayer::new)
    }

    /// Whether `user-managed-access` is present.
    #[must_use]
    pub fn user_managed_access(&self) -> bool {
        self.parsed.enforcer.user_managed_access
    }

    /// Refuses `DISABLED` paths when Keycloak would load every resource of the client at
    /// start-up (no enforced path, no `lazy-load-paths`).
    ///
    /// Keycloak's matcher then weighs each of those resources' `uris` against the configured
    /// paths, in the order of a hash map: a resource whose `uris` match a request more
    /// closely (`/albums/*` against `/*`, `/a/{id}` against `/a/*`), or as closely and tried
    /// first (`/api/*` against `/api`, the Default Resource's `/*` against `/`), is enforced.
    /// Here a configured path always wins (resources are found by lazy paths, for paths no
    /// entry matches), so a public path could let through what Keycloak enforces, and which
    /// one depends on Keycloak's hashing. No paths at all is not refused: every path is then
    /// resolved at Keycloak, as lazy paths do.
    fn check_public_patterns_beside_every_resource(&self) -> Result<(), KeycloakConfigError> {
        let enforcer = &self.parsed.enforcer;
        if enforcer.lazy_load_paths || !enforcer.paths.iter().all(|p| p.disabled) {
            return Ok(());
        }
        let Some(entry) = enforcer
            .paths
            .iter()
            .find(|p| p.path.contains(['*', '{']))
            .or_else(|| enforcer.paths.first())
        else {
            return Ok(());
        };
        Err(KeycloakConfigError::new(
            &format!("{}.path", entry.at),
            format!(
                "{:?} is DISABLED and no path is enforced: Keycloak then loads every resource \
                 of the client at start-up and tries their `uris` with the configured paths \
                 (in a hash map's order), enforcing a request a resource's `uris` match more \
                 closely than {:?}, or as closely and tried first (`/albums/*` beats `/*`; \
                 `/api/*` may beat `/api`), which tower-uma, deciding configured paths first, \
                 would let through. Set `\"lazy-load-paths\": true` (Keycloak then keeps \
                 DISABLED paths public too), or add the protected resources as enforced `paths`",
                entry.path, entry.path
            ),
        ))
    }

    /// The routes of `paths`.
    pub fn resource_map(&self) -> ResourceMap {
        // Checked when the configuration was read.
        self.try_resource_map().unwrap_or_default()
    }

    fn try_resource_map(&self) -> Result<ResourceMap, KeycloakConfigError> {
        let enforcer = &self.parsed.enforcer;
        let mut map = ResourceMap::new();
        for (entry, cell) in enforcer.paths.iter().zip(&self.cells) {
            let route =
                rule::route_of(entry, enforcer.http_method_as_scope, cell, &enforcer.claims)
                    .map_err(|why| KeycloakConfigError::new(&format!("{}.path", entry.at), why))?;
            map = map.route(route);
            map.validate().map_err(|e| {
                KeycloakConfigError::new(&format!("{}.path", entry.at), e.to_string())
            })?;
        }
        Ok(map)
    }

    /// The lazy paths this configuration asks for, if any: `lazy-load-paths`, a `path-cache`
    /// section, or no enforced path at all.
    #[must_use]
    pub fn lazy_paths(&self) -> Option<LazyPaths> {
        let enforcer = &self.parsed.enforcer;
        let no_paths = enforcer.paths.iter().all(|p| p.disabled);
        if !(enforcer.lazy_load_paths || enforcer.path_cache.is_some() || no_paths) {
            return None;
        }
        let mut lazy = LazyPaths::new()
            .method_as_scope(enforcer.http_method_as_scope)
            .exclude_names(enforcer.paths.iter().filter_map(|p| p.name.clone()));
        if let Some((max, lifespan)) = enforcer.path_cache {
            lazy = lazy.max_entries(max).lifespan(lifespan);
        }
        Some(lazy)
    }

    /// Applies the configuration to a builder: the Keycloak dialect, the realm, the timeouts,
    /// the resource map, the lazy paths and permission exchange. The issuer and credentials are
    /// the builder's.
    pub fn apply(&self, builder: UmaLayerBuilder) -> UmaLayerBuilder {
        let mut builder = builder
            .dialect(Dialect::Keycloak)
            .realm(self.parsed.realm.clone())
            .resources(self.resource_map());
        if let Some(t) = self.parsed.connect_timeout {
            builder = builder.connect_timeout(t);
        }
        if let Some(t) = self.parsed.request_timeout {
            builder = builder.request_timeout(t);
        }
        if let Some(lazy) = self.lazy_paths() {
            builder = builder.lazy_paths(lazy);
        }
        if let Some(exchange) = self.permission_exchange() {
            builder = builder.permission_exchange(exchange);
        }
        let by_uri = enforcer_paths_by_uri(&self.parsed.enforcer.paths, &self.cells);
        builder
            .uri_bindings(by_uri)
            .names_owned_by(self.parsed.resource.clone())
    }

    /// Permission exchange, which Keycloak's enforcer does when `user-managed-access` is
    /// absent (see [`PermissionExchange`]); `None` when it is present (UMA only).
    #[must_use]
    pub fn permission_exchange(&self) -> Option<PermissionExchange> {
        (!self.parsed.enforcer.user_managed_access).then(PermissionExchange::new)
    }

    /// A builder for the configured realm, by the configured client, with everything of
    /// [`apply`](Self::apply) set; [`build`](UmaLayerBuilder::build) runs the discovery.
    pub fn discover(&self) -> UmaLayerBuilder {
        self.apply(UmaLayer::discover(
            self.issuer(),
            self.parsed.resource.clone(),
            self.parsed.secret.clone(),
        ))
    }
}

/// The paths without `name` or `id` (and not public), with the cells their resource goes in.
fn enforcer_paths_by_uri(paths: &[parse::PathEntry], cells: &[UriCell]) -> Vec<(String, UriCell)> {
    paths
        .iter()
        .zip(cells)
        .filter(|(p, _)| p.name.is_none() && p.id.is_none() && !p.disabled)
        .map(|(p, cell)| (p.path.clone(), std::sync::Arc::clone(cell)))
        .collect()
}

/// `realm` as a path segment: everything but unreserved characters escaped.
fn utf8_segment(text: &str) -> String {
    const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(text, SEGMENT).collect()
}

#[cfg(test)]
mod tests;
