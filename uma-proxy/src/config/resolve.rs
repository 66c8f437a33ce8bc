//! From the file as written ([`super::raw`]) to a checked [`Config`]: addresses, URLs,
//! secrets from the environment, the authorization server's keys and the resources, each
//! error at the line of the value it is about.

use std::net::SocketAddr;
use std::ops::Range;
use std::time::Duration;

use http::Method;
use toml::Spanned;
use toml_diag::Diagnostic;
use tower_uma::jwt::RptValidation;
use tower_uma::metadata::ResourceMetadata;
use tower_uma::{
    Dialect, ResourceDecl, ResourceMap, resources::ResourceMapError, token::ClientSecret,
};

use super::raw::{
    Dur, ModeRaw, PatGrantKind, RawAs, RawConfig, RawMetadata, RawResource, RptValidationKind,
};
use super::{
    AsCallsConfig, AsConfig, CacheConfig, Config, ConfigError, DEFAULT_AS_TIMEOUT,
    DEFAULT_BREAKER_MAX_OPEN_INTERVAL, DEFAULT_BREAKER_OPEN_INTERVAL, DEFAULT_LISTEN,
    DEFAULT_SHUTDOWN_TIMEOUT, DEFAULT_UPSTREAM_TIMEOUT, DecisionOptions, MethodScopes, Mode,
    Overrides, PatGrantConfig, ResourceConfig,
};
use crate::forward::Upstream;
use crate::trust::{AllowedHosts, Cidr, TrustedProxies};

pub(super) struct Resolver<'a, E> {
    pub(super) text: &'a str,
    pub(super) origin: &'a str,
    pub(super) env: &'a E,
}

impl<E: Fn(&str) -> Option<String>> Resolver<'_, E> {
    pub(super) fn at(&self, span: Range<usize>, message: String) -> ConfigError {
        ConfigError::new(self.origin, Diagnostic::at(self.text, span.start, message))
    }

    pub(super) fn nowhere(&self, message: String) -> ConfigError {
        ConfigError::new(self.origin, Diagnostic::new(message))
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

    pub(super) fn resolve(
        &self,
        raw: RawConfig,
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
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
        let mode = self.resolve_mode(&raw)?;
        if matches!(mode, Mode::Decision(_))
            && raw.method_override == tower_uma::method_override::MethodOverride::Decide
        {
            return Err(self.nowhere(
                "method_override = \"decide\" cannot be used with mode = \"decision\": the gateway \
                 forwards the request as the client sent it, so the API could run another method \
                 than the one decided; remove method_override (overrides are then refused)"
                    .to_owned(),
            ));
        }
        let upstream = match (&overrides.upstream, &raw.upstream, &mode) {
            (Some(_), _, Mode::Decision(_)) => {
                return Err(self.nowhere(
                    "--upstream: mode = \"decision\" forwards nothing; remove --upstream (or set mode = \"proxy\")"
                        .to_owned(),
                ));
            }
            (None, Some(v), Mode::Decision(_)) => {
                return Err(self.at(
                    v.span(),
                    "`upstream`: mode = \"decision\" forwards nothing; remove `upstream` (or set mode = \"proxy\")"
                        .to_owned(),
                ));
            }
            (None, None, Mode::Decision(_)) => None,
            (Some(cli), _, Mode::Proxy) => {
                Some(Upstream::parse(cli).map_err(|m| self.nowhere(format!("--upstream: {m}")))?)
            }
            (None, Some(v), Mode::Proxy) => Some(
                Upstream::parse(v.get_ref())
                    .map_err(|m| self.at(v.span(), format!("`upstream`: {m}")))?,
            ),
            (None, None, Mode::Proxy) => {
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
        let keycloak = self.resolve_keycloak(&raw, overrides)?;
        let tenants =
            self.resolve_tenants(&raw, &mode, keycloak.is_some(), allowed_hosts.as_ref())?;
        let (authorization_server, as_span) = match (&raw.authorization_server, &keycloak) {
            // Refused beside [[tenants]] (resolve_tenants): the first tenant's, for readers
            // of `Config::authorization_server`.
            (None, None) if !tenants.is_empty() => (tenants[0].authorization_server.clone(), 0..0),
            (Some(a), None) => (self.resolve_as(a)?, a.span()),
            (None, Some(kc)) => (super::keycloak::as_config(kc), 0..0),
            (Some(a), Some(_)) => {
                return Err(self.at(
                    a.span(),
                    "remove [authorization_server]: the Keycloak configuration (keycloak_config or \
                     --keycloak-config) names the authorization server and the client"
                        .to_owned(),
                ));
            }
            (None, None) => {
                return Err(self.nowhere(
                    "missing field `authorization_server` (or `keycloak_config`, or --keycloak-config)"
                        .to_owned(),
                ));
            }
        };
        let resources = self.resolve_resources(&raw.resources)?;
        self.check_registration(&authorization_server, &resources, as_span)?;
        if matches!(mode, Mode::Decision(_))
            && keycloak
                .as_ref()
                .is_some_and(|k| k.resource_map().reads_body())
        {
            return Err(self.nowhere(
                "claims from the request body (`{request.body[…]}`) cannot be used with mode = \
                 \"decision\": the gateway does not send the body; use mode = \"proxy\""
                    .to_owned(),
            ));
        }
        let resource_metadata = self.resolve_metadata(raw.resource_metadata.as_ref())?;
        let admin_token = self.resolve_admin_token(raw.admin_token_env.as_ref())?;
        let shared = self.resolve_shared(raw.cache.shared.as_ref())?;
        let c = raw.cache;
        Ok(Config {
            listen,
            mode,
            upstream,
            realm: raw.realm,
            enforcement: raw.enforcement,
            unmapped: raw.unmapped,
            admin_listen,
            admin_token,
            forward_authorization: raw
                .forward_authorization
                .as_ref()
                .is_none_or(|v| *v.get_ref()),
            upstream_timeout,
            shutdown_timeout: raw
                .shutdown_timeout
                .map_or(DEFAULT_SHUTDOWN_TIMEOUT, |d| d.0),
            method_override: raw.method_override,
            trusted_proxies,
            allowed_hosts,
            authorization_server,
            keycloak,
            cache: CacheConfig {
                enabled: c.enabled,
                max_ttl: c.max_ttl.map(|d| d.0),
                max_entries: c.max_entries,
                negative_ttl: c.negative_ttl.map(|d| d.0),
                negative_max_entries: c.negative_max_entries,
                stale_if_error: c.stale_if_error.map(|d| d.0),
                skew: c.skew.map(|d| d.0),
                cache_without_exp: c.cache_without_exp,
                shared,
            },
            resource_metadata,
            resources,
            tenants,
        })
    }

    /// Resources declared by name need somewhere to register them.
    pub(super) fn check_registration(
        &self,
        a: &AsConfig,
        resources: &[ResourceConfig],
        as_span: Range<usize>,
    ) -> Result<(), ConfigError> {
        if a.issuer.is_none()
            && a.resource_registration_endpoint.is_none()
            && resources.iter().any(|r| r.decl.is_some())
        {
            return Err(self.at(
                as_span,
                "[authorization_server] needs `resource_registration_endpoint` (or `issuer` for discovery): \
                 the protected [[resources]] are registered at start-up"
                    .to_owned(),
            ));
        }
        Ok(())
    }

    /// `[resource_metadata]`: URLs checked here, at their line; the rest when the layer is
    /// built.
    fn resolve_metadata(
        &self,
        raw: Option<&Spanned<RawMetadata>>,
    ) -> Result<Option<ResourceMetadata>, ConfigError> {
        let Some(raw) = raw else { return Ok(None) };
        let m = raw.get_ref();
        let url = |v: &Spanned<String>, key: &str| {
            url::Url::parse(v.get_ref()).map(drop).map_err(|e| {
                self.at(
                    v.span(),
                    format!(
                        "[resource_metadata] `{key}`: {:?} is not an absolute URL ({e})",
                        v.get_ref()
                    ),
                )
            })
        };
        url(&m.resource, "resource")?;
        let mut metadata =
            ResourceMetadata::new(m.resource.get_ref().clone()).in_challenge(m.in_challenge);
        if let Some(name) = &m.resource_name {
            metadata = metadata.resource_name(name.clone());
        }
        if let Some(doc) = &m.resource_documentation {
            url(doc, "resource_documentation")?;
            metadata = metadata.resource_documentation(doc.get_ref().clone());
        }
        Ok(Some(metadata))
    }

    /// `mode`, and the keys of decision mode (`trusted_forwarders`, `path_prefix`), which
    /// proxy mode refuses; decision mode refuses the forwarding service's keys
    /// (`forward_authorization`, `trusted_proxies`, `upstream_timeout`).
    fn resolve_mode(&self, raw: &RawConfig) -> Result<Mode, ConfigError> {
        if raw.mode == ModeRaw::Proxy {
            let only = |key: &str, span: Range<usize>| {
                self.at(
                    span,
                    format!("`{key}` is a key of mode = \"decision\"; this file is in proxy mode"),
                )
            };
            if let Some(v) = &raw.trusted_forwarders {
                return Err(only("trusted_forwarders", v.span()));
            }
            if let Some(v) = &raw.path_prefix {
                return Err(only("path_prefix", v.span()));
            }
            return Ok(Mode::Proxy);
        }
        // The keys of the forwarding service: in decision mode the gateway forwards, and they
        // would do nothing (a gateway sending the client's `Authorization` on although the file
        // says `forward_authorization = false`).
        let proxy_only = |key: &str, span: Range<usize>, instead: &str| {
            self.at(
                span,
                format!(
                    "`{key}` is a key of mode = \"proxy\": in decision mode the gateway \
                     forwards the request, so it would do nothing; {instead}"
                ),
            )
        };
        if let Some(v) = &raw.forward_authorization {
            return Err(proxy_only(
                "forward_authorization",
                v.span(),
                "remove `Authorization` in the gateway instead (nginx: \
                 proxy_set_header Authorization \"\";)",
            ));
        }
        if let Some(v) = &raw.trusted_proxies {
            return Err(proxy_only(
                "trusted_proxies",
                v.span(),
                "the gateways allowed to ask are `trusted_forwarders`",
            ));
        }
        if let Some(v) = &raw.upstream_timeout {
            return Err(proxy_only(
                "upstream_timeout",
                v.span(),
                "the gateway's own timeout applies",
            ));
        }
        let mut options = DecisionOptions::default();
        if let Some(list) = &raw.trusted_forwarders {
            options.trusted_forwarders = self.networks(list.get_ref(), "trusted_forwarders")?;
        }
        if let Some(prefix) = &raw.path_prefix {
            let p = prefix.get_ref();
            if !p.starts_with('/') || p.len() < 2 || p.ends_with('/') || p.contains(['?', '#', '%'])
            {
                return Err(self.at(
                    prefix.span(),
                    format!(
                        "`path_prefix`: {p:?} is not a path prefix: write it as Envoy's `path_prefix`, e.g. \"/ext_authz\" (a leading `/`, no trailing `/`, no `?`, `#` or `%`)"
                    ),
                ));
            }
            options.path_prefix = Some(p.clone());
        }
        Ok(Mode::Decision(options))
    }

    /// A list of networks under `key`, each entry's error at its own line.
    fn networks(&self, list: &[Spanned<String>], key: &str) -> Result<TrustedProxies, ConfigError> {
        list.iter()
            .map(|entry| {
                Cidr::parse(entry.get_ref())
                    .map_err(|m| self.at(entry.span(), format!("`{key}`: {m}")))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(TrustedProxies::new)
    }

    /// `trusted_proxies` and `allowed_hosts`, each entry's error at its own line.
    fn resolve_trust(
        &self,
        raw: &RawConfig,
    ) -> Result<(TrustedProxies, Option<AllowedHosts>), ConfigError> {
        let trusted = match &raw.trusted_proxies {
            Some(list) => self.networks(list.get_ref(), "trusted_proxies")?,
            None => TrustedProxies::default(),
        };
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
        Ok((trusted, allowed))
    }

    pub(super) fn positive(&self, d: &Spanned<Dur>, key: &str) -> Result<Duration, ConfigError> {
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
        // Shown without user info, which the check below refuses.
        let shown = super::redact_url(v.get_ref());
        let url = url::Url::parse(v.get_ref()).map_err(|e| {
            self.at(
                v.span(),
                format!("`{key}`: {shown:?} is not an absolute URL: {e}"),
            )
        })?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(self.at(
                v.span(),
                format!(
                    "`{key}`: {shown:?}: user info is not allowed in the authorization server's \
                     URLs (it would be logged and sent with every call); the client authenticates \
                     with `client_id` and `client_secret`"
                ),
            ));
        }
        match url.scheme() {
            "https" => {}
            "http" if allow_http => {}
            "http" => {
                return Err(self.at(
                    v.span(),
                    format!(
                        "`{key}`: {shown:?} uses plain http; use https, or set allow_http = true in \
                         [authorization_server] (tests and local development only)",
                    ),
                ));
            }
            other => {
                return Err(self.at(
                    v.span(),
                    format!("`{key}`: {shown:?} has scheme {other:?}; use https"),
                ));
            }
        }
        if url.host().is_none() {
            return Err(self.at(v.span(), format!("`{key}`: {shown:?} has no host")));
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
                let shown = super::shared::env_name(name);
                match (self.env)(name) {
                    Some(value) if !value.is_empty() => Ok(ClientSecret::new(value)),
                    Some(_) => Err(self.at(
                        e.span(),
                        format!("`{key}_env`: the environment variable {shown} is empty"),
                    )),
                    None => Err(self.at(
                        e.span(),
                        format!("`{key}_env`: the environment variable {shown} is not set"),
                    )),
                }
            }
            (None, None) => Err(self.at(
                table_span,
                format!("[authorization_server] needs `{key}` or `{key}_env` (the name of an environment variable holding it)"),
            )),
        }
    }

    pub(super) fn resolve_as(&self, raw: &Spanned<RawAs>) -> Result<AsConfig, ConfigError> {
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
            rpt_validation: match a.rpt_validation {
                None | Some(RptValidationKind::Introspect) => RptValidation::Introspect,
                Some(RptValidationKind::Local) => RptValidation::Local,
                Some(RptValidationKind::LocalThenIntrospect) => RptValidation::LocalThenIntrospect,
            },
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
        let resource_resync_interval = a
            .resource_resync_interval
            .as_ref()
            .map(|d| self.positive(d, "resource_resync_interval"))
            .transpose()?;
        Ok(AsCallsConfig {
            max_in_flight,
            breaker_failure_threshold: a.breaker_failure_threshold,
            breaker_open_interval,
            resource_resync_interval,
        })
    }

    pub(super) fn resolve_resources(
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
            let line = toml_diag::line_col(self.text, entry.span().start).0;
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
