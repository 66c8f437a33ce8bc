//! [`UmaLayerBuilder`]: the setters, their defaults, and the entry points that run discovery,
//! the build and the dry run of the resource sync.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::UmaLayer;
use super::url_check::check_url;
use crate::IntrospectionCache;
use crate::clock::{Clock, SystemClock};
use crate::dialect::{DerivedEndpoints, Dialect};
use crate::discovery::DiscoveryDocument;
use crate::error::Error;
use crate::gate::GateSettings;
use crate::method_override::MethodOverride;
use crate::pipeline::Unmapped;
use crate::protection::{ClientAuth, IntrospectionAuth, PatGrant, PermissionBody};
use crate::registration::{ResourceSync, ResourceSyncMode};
use crate::resources::{EnforcementMode, ResourceMap, ResourceResolver};
use crate::start::StartRetry;
use crate::token::ClientSecret;

/// Configures an [`UmaLayer`]. Every setter documents its default; [`build`](Self::build)
/// validates everything once and says what to fix.
#[must_use]
#[derive(Clone)]
pub struct UmaLayerBuilder {
    pub(super) issuer: String,
    pub(super) client_id: String,
    pub(super) client_secret: ClientSecret,
    pub(super) as_uri: Option<String>,
    pub(super) realm: Option<String>,
    pub(super) token_endpoint: Option<String>,
    pub(super) introspection_endpoint: Option<String>,
    pub(super) permission_endpoint: Option<String>,
    pub(super) resource_registration_endpoint: Option<String>,
    pub(super) jwks_uri: Option<String>,
    pub(super) resources: ResourceMap,
    pub(super) metadata: Option<crate::metadata::ResourceMetadata>,
    pub(super) resolver: Option<Arc<dyn ResourceResolver>>,
    pub(super) lazy_paths: Option<crate::keycloak::LazyPaths>,
    pub(super) permission_exchange: Option<crate::keycloak::PermissionExchange>,
    /// Paths of a Keycloak configuration without `name`: their resource is looked up by the
    /// path at build.
    pub(super) uri_bindings: Vec<(String, crate::keycloak::UriCell)>,
    /// Names are resolved only to resources this owner (the client id) owns, as Keycloak's
    /// enforcer resolves `paths[].name`.
    pub(super) names_owner: Option<String>,
    pub(super) connect_timeout: Duration,
    pub(super) request_timeout: Duration,
    pub(super) dialect: Dialect,
    pub(super) token_type_hint: Option<Option<String>>,
    pub(super) introspection_auth: Option<IntrospectionAuth>,
    pub(super) client_auth: ClientAuth,
    pub(super) pat_grant: PatGrant,
    pub(super) pat_scope: Option<Option<String>>,
    pub(super) permission_body: Option<PermissionBody>,
    pub(super) enforcement: EnforcementMode,
    pub(super) unmapped: Unmapped,
    pub(super) method_override: MethodOverride,
    pub(super) leeway: Duration,
    pub(super) empty_scopes_grant_all: Option<bool>,
    pub(super) sync: ResourceSyncMode,
    pub(super) lookup_interval: Duration,
    pub(super) resync_interval: Duration,
    pub(super) start_retry: Option<StartRetry>,
    #[cfg(feature = "jwt")]
    pub(super) rpt_validation: crate::jwt::RptValidation,
    #[cfg(feature = "jwt")]
    pub(super) jwt: crate::jwt::JwtValidation,
    pub(super) cache: Option<IntrospectionCache>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) gate: GateSettings,
    pub(super) http_client: Option<HttpClient>,
    pub(super) allow_http: bool,
    /// Whether [`build`](Self::build) reads the discovery document first
    /// ([`UmaLayer::discover`]).
    pub(super) discover: bool,
    /// The `tenant` label of the decisions, for a tenant's layer (`tenant/`).
    pub(super) metric_tenant: Option<Arc<str>>,
}

impl std::fmt::Debug for UmaLayerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UmaLayerBuilder")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret)
            .field("realm", &self.realm)
            .field("token_endpoint", &self.token_endpoint)
            .field("introspection_endpoint", &self.introspection_endpoint)
            .field("permission_endpoint", &self.permission_endpoint)
            .field(
                "resource_registration_endpoint",
                &self.resource_registration_endpoint,
            )
            .field("enforcement", &self.enforcement)
            .finish_non_exhaustive()
    }
}

/// The HTTP client of the AS calls, when not the layer's default.
#[derive(Clone)]
pub(super) enum HttpClient {
    /// The user's own client ([`UmaLayerBuilder::http_client`]).
    Given(reqwest::Client),
    /// The layer's client, adjusted by the user ([`UmaLayerBuilder::http_client_builder`]).
    Configured(Arc<crate::protection::reqwest_transport::Configure>),
}

impl UmaLayerBuilder {
    pub(super) fn new(issuer: String, client_id: String, client_secret: ClientSecret) -> Self {
        Self {
            issuer,
            client_id,
            client_secret,
            as_uri: None,
            realm: None,
            token_endpoint: None,
            introspection_endpoint: None,
            permission_endpoint: None,
            resource_registration_endpoint: None,
            jwks_uri: None,
            resources: ResourceMap::new(),
            metadata: None,
            resolver: None,
            lazy_paths: None,
            permission_exchange: None,
            uri_bindings: Vec::new(),
            names_owner: None,
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(3),
            dialect: Dialect::Standard,
            token_type_hint: None,
            introspection_auth: None,
            client_auth: ClientAuth::Basic,
            pat_grant: PatGrant::ClientCredentials,
            pat_scope: None,
            permission_body: None,
            enforcement: EnforcementMode::Enforcing,
            unmapped: Unmapped::Deny,
            method_override: MethodOverride::Refuse,
            leeway: Duration::ZERO,
            empty_scopes_grant_all: None,
            sync: ResourceSyncMode::default(),
            lookup_interval: Duration::from_secs(5),
            resync_interval: Duration::from_secs(5),
            start_retry: None,
            #[cfg(feature = "jwt")]
            rpt_validation: crate::jwt::RptValidation::default(),
            #[cfg(feature = "jwt")]
            jwt: crate::jwt::JwtValidation::new(),
            cache: None,
            clock: SystemClock::shared(),
            gate: GateSettings::default(),
            http_client: None,
            allow_http: false,
            discover: false,
            metric_tenant: None,
        }
    }

    /// Reads `{issuer}/.well-known/uma2-configuration` and fills in every endpoint not set
    /// by hand, when the builder was made by [`UmaLayer::discover`] (once). Fails when the
    /// document's `issuer` differs from the configured one.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`](crate::error::ErrorKind::Config) for an unusable issuer URL,
    /// [`ErrorKind::Transport`](crate::error::ErrorKind::Transport) when the AS cannot be
    /// reached, [`ErrorKind::Discovery`](crate::error::ErrorKind::Discovery) for a bad document.
    async fn discovered(mut self) -> Result<Self, Error> {
        if !std::mem::take(&mut self.discover) {
            return Ok(self);
        }
        check_url("issuer", &self.issuer, self.allow_http)?;
        if !self.dialect.has_discovery() {
            // WSO2 publishes no discovery document; its endpoints are derived in build().
            return Ok(self);
        }
        let http = self.make_transport()?;
        let fetch = || crate::protection::discovery::fetch(http.as_ref(), &self.issuer);
        let no_hint = || Duration::ZERO; // discovery is not gated
        let doc: DiscoveryDocument =
            crate::start::retrying(self.start_retry.as_ref(), "discovery", no_hint, fetch).await?;
        self.fill_endpoints(DerivedEndpoints {
            token: doc.token_endpoint.clone(),
            introspection: doc.introspection_endpoint().map(str::to_owned),
            permission: doc.permission_endpoint.clone(),
            registration: doc.resource_registration_endpoint.clone(),
            jwks: doc.jwks_uri.clone(),
        });
        self.as_uri.get_or_insert(doc.issuer);
        Ok(self)
    }

    /// The `realm` of the UMA challenge. Defaults to the client id.
    pub fn realm(mut self, realm: impl Into<String>) -> Self {
        self.realm = Some(realm.into());
        self
    }

    /// The `as_uri` of the UMA challenge. Defaults to the discovered `issuer`, or the
    /// configured issuer without discovery.
    pub fn as_uri(mut self, as_uri: impl Into<String>) -> Self {
        self.as_uri = Some(as_uri.into());
        self
    }

    /// The token endpoint (PATs). Defaults to the discovered one.
    pub fn token_endpoint(mut self, url: impl Into<String>) -> Self {
        self.token_endpoint = Some(url.into());
        self
    }

    /// The introspection endpoint. Defaults to the discovered one.
    pub fn introspection_endpoint(mut self, url: impl Into<String>) -> Self {
        self.introspection_endpoint = Some(url.into());
        self
    }

    /// The permission endpoint (tickets). Defaults to the discovered one.
    pub fn permission_endpoint(mut self, url: impl Into<String>) -> Self {
        self.permission_endpoint = Some(url.into());
        self
    }

    /// The resource registration endpoint, needed when resources are declared by name.
    /// Defaults to the discovered one.
    pub fn resource_registration_endpoint(mut self, url: impl Into<String>) -> Self {
        self.resource_registration_endpoint = Some(url.into());
        self
    }

    /// The AS's JSON Web Key Set, for local validation of JWT RPTs. Defaults to the
    /// discovered one.
    pub fn jwks_uri(mut self, url: impl Into<String>) -> Self {
        self.jwks_uri = Some(url.into());
        self
    }

    /// How RPTs are checked: by introspection, by verifying JWT RPTs locally against the
    /// AS's keys, or locally for JWTs and by introspection for the rest. Local results go
    /// through the same cache and decision as introspected ones. Defaults to
    /// [`RptValidation::Introspect`](crate::jwt::RptValidation::Introspect).
    #[cfg(feature = "jwt")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
    pub fn rpt_validation(mut self, mode: crate::jwt::RptValidation) -> Self {
        self.rpt_validation = mode;
        self
    }

    /// The checks of local JWT validation (issuer, audiences, algorithms, key refetch
    /// interval and maximum age). Unset values are filled in at build: the JWKS from discovery or
    /// [`jwks_uri`](Self::jwks_uri), the issuer, and the client id as audience. Defaults to
    /// [`JwtValidation::new`](crate::jwt::JwtValidation::new).
    #[cfg(feature = "jwt")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
    pub fn jwt_validation(mut self, validation: crate::jwt::JwtValidation) -> Self {
        self.jwt = validation;
        self
    }

    /// The map from method and path to resource and scopes. Defaults to an empty map (every
    /// request is unmapped).
    pub fn resources(mut self, map: ResourceMap) -> Self {
        self.resources = map;
        self
    }

    /// Publishes OAuth 2.0 Protected Resource Metadata (RFC 9728) for the API:
    /// [`UmaLayer::resource_metadata`] holds the document to serve, challenges may name it,
    /// and with a [`ResourceMap`] the layer lets its well-known path through as public (a
    /// [`resolver`](Self::resolver) of yours must answer that path itself). See the [`metadata`](crate::metadata)
    /// module. Off by default.
    pub fn resource_metadata(mut self, metadata: crate::metadata::ResourceMetadata) -> Self {
        self.metadata = Some(metadata);
        self
    }

    /// Replaces the resource map with a resolver of your own (a closure
    /// `Fn(&RequestInfo) -> Resolution` works). Resources it names by name must still be
    /// declared in the map to be registered. Defaults to the resource map.
    pub fn resolver(mut self, resolver: impl ResourceResolver) -> Self {
        self.resolver = Some(Arc::new(resolver));
        self
    }

    /// Resolves paths that no route matches at the AS, by the resources' `uris` (Keycloak's
    /// `lazy-load-paths`; see [`LazyPaths`](crate::keycloak::LazyPaths)). Needs the resource
    /// registration endpoint. Defaults to none: such paths are unmapped.
    pub fn lazy_paths(mut self, lazy: crate::keycloak::LazyPaths) -> Self {
        self.lazy_paths = Some(lazy);
        self
    }

    /// Exchanges an active token that does not grant the request (a plain access token) for
    /// the permissions its bearer may have, at the token endpoint, as Keycloak's enforcer does
    /// without `user-managed-access` (see
    /// [`PermissionExchange`](crate::keycloak::PermissionExchange)). A refusal is then `403`
    /// without a ticket. Defaults to none: such a token is challenged with a ticket.
    pub fn permission_exchange(mut self, exchange: crate::keycloak::PermissionExchange) -> Self {
        self.permission_exchange = Some(exchange);
        self
    }

    /// Labels the layer's `uma_decisions_total` series with `tenant` (a tenant's layer).
    pub(crate) fn metric_tenant(mut self, tenant: Arc<str>) -> Self {
        self.metric_tenant = Some(tenant);
        self
    }

    /// The paths whose resource [`build`](Self::build) looks up by the path (Keycloak's
    /// paths without `name`); replaces earlier ones.
    pub(crate) fn uri_bindings(
        mut self,
        bindings: Vec<(String, crate::keycloak::UriCell)>,
    ) -> Self {
        self.uri_bindings = bindings;
        self
    }

    /// Resolves resource names only to resources `owner` (the resource server's client id)
    /// owns, by the AS's exact-name query, as Keycloak's enforcer resolves `paths[].name`; a
    /// name held by several such resources resolves to none.
    pub(crate) fn names_owned_by(mut self, owner: String) -> Self {
        self.names_owner = Some(owner);
        self
    }

    /// The TCP connect timeout for every AS call. Defaults to 2 s. Not applied to a client
    /// given to [`http_client`](Self::http_client).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The whole-request timeout for every AS call, from connecting to the end of the answer's
    /// body: a call still running then fails as a timeout (`403` + `Warning` while serving),
    /// whatever the HTTP client, one given to [`http_client`](Self::http_client) included.
    /// Must be greater than zero. Defaults to 3 s.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// The kind of AS: sets the defaults of every setting marked "the dialect's" below, and
    /// the endpoints when neither discovery nor the builder names them. See [`Dialect`].
    /// Defaults to [`Dialect::Standard`].
    pub fn dialect(mut self, dialect: Dialect) -> Self {
        self.dialect = dialect;
        self
    }

    /// The `token_type_hint` sent with introspection requests (Keycloak needs
    /// `requesting_party_token`). Defaults to the dialect's (none for the standard dialect).
    pub fn token_type_hint(mut self, hint: impl Into<String>) -> Self {
        self.token_type_hint = Some(Some(hint.into()));
        self
    }

    /// Sends no `token_type_hint`, whatever the dialect. Defaults to the dialect's hint.
    pub fn no_token_type_hint(mut self) -> Self {
        self.token_type_hint = Some(None);
        self
    }

    /// How introspection calls authenticate. Defaults to the dialect's
    /// ([`IntrospectionAuth::BearerPat`] for the standard dialect).
    pub fn introspection_auth(mut self, auth: IntrospectionAuth) -> Self {
        self.introspection_auth = Some(auth);
        self
    }

    /// How the layer authenticates at the token endpoint (and at introspection with client
    /// credentials). Defaults to [`ClientAuth::Basic`].
    pub fn client_auth(mut self, auth: ClientAuth) -> Self {
        self.client_auth = auth;
        self
    }

    /// Which grant obtains the PAT. Defaults to [`PatGrant::ClientCredentials`].
    pub fn pat_grant(mut self, grant: PatGrant) -> Self {
        self.pat_grant = grant;
        self
    }

    /// The scope requested with the PAT; `None` sends none. Defaults to the dialect's
    /// (`uma_protection`; none for Keycloak).
    pub fn pat_scope(mut self, scope: Option<String>) -> Self {
        self.pat_scope = Some(scope);
        self
    }

    /// The JSON shape of permission requests. Defaults to the dialect's
    /// ([`PermissionBody::Array`] for all three).
    pub fn permission_body(mut self, body: PermissionBody) -> Self {
        self.permission_body = Some(body);
        self
    }

    /// How resources declared by name are reconciled with the AS at start-up. Defaults to
    /// [`ResourceSyncMode::Reconcile`] (create what is missing, update what changed, delete
    /// nothing).
    pub fn resource_sync(mut self, mode: ResourceSyncMode) -> Self {
        self.sync = mode;
        self
    }

    /// How often a request for a resource name the layer does not know (from a resolver, or
    /// [`ResourceRegistry::lookup`](crate::registration::ResourceRegistry::lookup)) may list the AS's
    /// resources; between two listings such names are answered from memory. Each listing
    /// reads only the resources new since the last one. Defaults to 5 s.
    pub fn resource_lookup_interval(mut self, interval: Duration) -> Self {
        self.lookup_interval = interval;
        self
    }

    /// How often the layer may try to recover one resource the AS said it does not know
    /// (`invalid_resource_id` to a permission request, FedAuthz §4.3: the AS restarted and
    /// lost it, or an admin deleted it). A resource this layer declares is registered again, one
    /// it only names is looked up again by name, and the ticket is asked once more; concurrent
    /// requests share one attempt, and while the resource stays unknown a background task
    /// tries again once per interval and [`UmaLayer::as_health`] lists it. Must be greater
    /// than zero.
    ///
    /// Defaults to 5 s.
    pub fn resource_resync_interval(mut self, interval: Duration) -> Self {
        self.resync_interval = interval;
        self
    }

    /// Waits up to `max_wait` for an AS that cannot be reached yet (connection refused, a
    /// timeout, a `5xx` or `429`): a shortcut for
    /// [`start_retry(StartRetry::new(max_wait))`](Self::start_retry), which applies to
    /// discovery too. Defaults to no waiting.
    pub fn wait_for_as(self, max_wait: Duration) -> Self {
        self.start_retry(StartRetry::new(max_wait))
    }

    /// How [`build`](Self::build) (discovery, the PAT and the resource sync) waits for an AS that cannot be reached yet: retried with
    /// capped exponential backoff and jitter while the failure is transient
    /// ([`Error::is_transient`]), returned at once otherwise. See [`StartRetry`]. Defaults to
    /// no waiting: one attempt.
    pub fn start_retry(mut self, policy: StartRetry) -> Self {
        self.start_retry = Some(policy);
        self
    }

    /// Takes the [`start_retry`](Self::start_retry) policy out (a [`TenantLayer`] tries a
    /// configured tenant once at build, then retries it in the background with this policy).
    ///
    /// [`TenantLayer`]: crate::tenant::TenantLayer
    pub(crate) fn take_start_retry(&mut self) -> Option<StartRetry> {
        self.start_retry.take()
    }

    /// The global enforcement mode; routes may override it. Defaults to
    /// [`EnforcementMode::Enforcing`].
    ///
    /// In [`Permissive`](EnforcementMode::Permissive) mode, requests with a refused method or
    /// path spelling (`400` in enforcing mode) are let through only when no route can be
    /// enforcing: when a route overrides the mode to `Enforcing`, or a resolver (which may
    /// return such an override) is configured, they are refused, since their route is not
    /// known. [`Disabled`](EnforcementMode::Disabled) checks nothing, not even route
    /// overrides: [`build`](Self::build) refuses a map whose routes override the mode under a
    /// disabled layer (route resolvers are not consulted at all).
    pub fn enforcement(mut self, mode: EnforcementMode) -> Self {
        self.enforcement = mode;
        self
    }

    /// What to do with requests that match no route. Defaults to [`Unmapped::Deny`].
    pub fn unmapped(mut self, unmapped: Unmapped) -> Self {
        self.unmapped = unmapped;
        self
    }

    /// What to do with a request that asks for another method through
    /// `X-HTTP-Method-Override`, `X-HTTP-Method`, `X-Method-Override` or a `_method` query
    /// parameter (see [`MethodOverride`](crate::method_override::MethodOverride)): refuse it with `400`, or
    /// decide on the overridden method and rewrite the request to it, signals removed. The
    /// check runs before anything else, on every route and in every enforcement mode.
    /// Defaults to [`MethodOverride::Refuse`](crate::method_override::MethodOverride::Refuse).
    ///
    /// `Decide` needs the layer around the whole router (`UmaLayer::layer(&router)`, or a
    /// `ServiceBuilder` around it): inside it (axum's `Router::layer`), the router has chosen
    /// the handler by the method as sent before the layer runs, so an override that changes
    /// the method is refused there with `400`, and `UmaRouter` refuses the setting.
    pub fn method_override(mut self, method_override: MethodOverride) -> Self {
        self.method_override = method_override;
        self
    }

    /// The method-override setting (for `UmaRouter`, which cannot honour `Decide`).
    #[cfg(feature = "axum")]
    pub(crate) fn method_override_setting(&self) -> MethodOverride {
        self.method_override
    }

    /// Tolerance for clock differences with the AS when checking `exp` and `nbf`.
    /// Defaults to 0 s.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Treat a permission with no scopes as granting every scope of its resource, as
    /// Keycloak's enforcer does. Weakens the spec reading, hence the name. Only a permission
    /// whose scope lists are absent or empty counts as having no scopes: one whose scopes
    /// cannot be read is dropped and grants nothing (see [`Introspection::from_json`]).
    /// Defaults to the dialect's (on for Keycloak, off otherwise).
    ///
    /// [`Introspection::from_json`]: crate::introspect::Introspection::from_json
    pub fn insecure_empty_scopes_grant_all(mut self) -> Self {
        self.empty_scopes_grant_all = Some(true);
        self
    }

    /// Read a permission with no scopes as granting none (the spec reading), whatever the
    /// dialect. Defaults to the dialect's (off only for Keycloak).
    pub fn require_scopes_in_permissions(mut self) -> Self {
        self.empty_scopes_grant_all = Some(false);
        self
    }

    /// The introspection cache; pass a clone of one cache to several layers to share it, or
    /// [`IntrospectionCache::disabled`] to turn caching off. Layers sharing a cache share
    /// entries only when they talk to the same AS and check RPTs alike; each reads the cache
    /// with its own [`clock`](Self::clock). Defaults to a new cache with
    /// [`IntrospectionCache::builder`]'s defaults.
    pub fn cache(mut self, cache: IntrospectionCache) -> Self {
        self.cache = Some(cache);
        self
    }

    /// The layer's clock, the one source of time for its decisions: `exp`/`nbf` checks, the
    /// introspection cache's lifetimes and freshness (the layer hands it to the cache it
    /// uses), and the circuit breakers' intervals. Tests pass a
    /// [`FixedClock`](crate::clock::FixedClock). Defaults to the system clock.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The most calls this layer makes to the authorization server at once, all endpoints
    /// together (introspection, permission, token, resource registration, JWKS).
    ///
    /// Each request with an unknown token costs an introspection, and a refused one a
    /// permission request, so without a bound a client inventing tokens could make the layer
    /// flood the AS. A call beyond the cap is not made and not queued: the request is answered
    /// at once as if the AS were unreachable (`403` with `Warning: 199`, or a stale entry when
    /// the cache's stale-if-error allows), counted in `uma_as_calls_shed_total`. Calls waiting
    /// for a PAT hold no slot. Must be at least 1.
    ///
    /// Defaults to 64.
    pub fn max_as_calls_in_flight(mut self, max: usize) -> Self {
        self.gate.max_in_flight = max;
        self
    }

    /// How many consecutive transient failures of one AS endpoint (unreachable, timeout, a
    /// 5xx or 429 answer, an unusable answer) open its circuit breaker. While open, calls to
    /// that endpoint are not made: requests that need it are answered at once (`403` +
    /// `Warning`, or a stale entry under stale-if-error) instead of each waiting for a
    /// timeout. Once the open interval (see
    /// [`breaker_open_interval`](Self::breaker_open_interval)) has passed, the next call is let
    /// through as the only probe: its success closes the circuit, its failure opens it again
    /// for twice as long. Any other answer (a `400`, an inactive token) shows the endpoint is
    /// up and resets the count. `0` turns the breakers off.
    ///
    /// Defaults to 5.
    pub fn breaker_failure_threshold(mut self, failures: u32) -> Self {
        self.gate.breaker.threshold = failures;
        self
    }

    /// How long an opened circuit refuses calls before its first probe (`first`), and the
    /// longest it ever waits (`max`): the wait doubles after each failed probe. Recovery is
    /// seen by the first request after the wait, so `max` bounds how long the layer may keep
    /// refusing after the AS is back. `first` must be greater than zero and not above `max`.
    ///
    /// Defaults to 1 s and 5 s: once the AS is back, requests that need it are served again within 5 s at most.
    pub fn breaker_open_interval(mut self, first: Duration, max: Duration) -> Self {
        self.gate.breaker.base = first;
        self.gate.breaker.max = max;
        self
    }

    /// Uses your own `reqwest::Client` for every AS call. Prefer
    /// [`http_client_builder`](Self::http_client_builder), which cannot get the redirect policy
    /// wrong; this one is for a client you share with other code.
    ///
    /// **The client must not follow redirects**: build it with
    /// `.redirect(reqwest::redirect::Policy::none())`. reqwest follows up to 10 by default, and
    /// on a `307` or `308` it sends the same request again, body included, to wherever the
    /// `Location` points: the RPT being introspected, the client secret (with
    /// [`ClientAuth::Post`]), the resource owner's password (with [`PatGrant::Password`]). The
    /// layer refuses any answer that does not come from the URL it asked, and any redirect, as
    /// if the AS were unreachable (`403` + `Warning`, and a warning in the log), so a redirect
    /// never decides a request; but by then the request has already gone to the other host.
    ///
    /// Each AS call is bounded by [`request_timeout`](Self::request_timeout) (a call still
    /// running then fails as a timeout); [`connect_timeout`](Self::connect_timeout) is not
    /// applied: set it on the client, with any shorter timeouts you want.
    ///
    /// This couples your code to reqwest's major version (0.13), as
    /// [`http_client_builder`](Self::http_client_builder) does. Defaults to a client built from
    /// this builder's timeouts that follows no redirects. The later of the two setters wins.
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http_client = Some(HttpClient::Given(client));
        self
    }

    /// Configures the `reqwest::ClientBuilder` the layer builds its client with (proxies,
    /// custom roots, client identity): the safe way to adjust the HTTP client.
    ///
    /// `configure` receives a builder with this builder's
    /// [`connect_timeout`](Self::connect_timeout) and [`request_timeout`](Self::request_timeout)
    /// and the layer's `User-Agent` already set, and returns it adjusted; the layer then sets
    /// `redirect::Policy::none()`, whatever `configure` set (a redirect followed would send the
    /// request, with its token or secret, to another host; see
    /// [`http_client`](Self::http_client)), and builds the client in [`build`](Self::build).
    /// `configure` may change the timeouts, but a call is given at most `request_timeout` in
    /// any case. It is called once per client built (discovery and the layer's own calls may
    /// each build one), so it clones what it hands over:
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use tower_uma::UmaLayer;
    ///
    /// let proxy = reqwest::Proxy::https("http://proxy.internal:3128")?;
    /// let layer = UmaLayer::discover("https://as.internal/realms/photos", "photo-api", "secret")
    ///     // a private CA: `b.add_root_certificate(root.clone())` (with a TLS feature)
    ///     .http_client_builder(move |b| b.proxy(proxy.clone()))
    ///     .build()
    ///     .await?;
    /// # let _ = layer;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// This couples your code to reqwest's major version (0.13). The later of this setter and
    /// [`http_client`](Self::http_client) wins. [`build`](Self::build) fails with
    /// [`ErrorKind::Config`](crate::error::ErrorKind::Config) when reqwest cannot build the
    /// client.
    pub fn http_client_builder(
        mut self,
        configure: impl Fn(reqwest::ClientBuilder) -> reqwest::ClientBuilder + Send + Sync + 'static,
    ) -> Self {
        self.http_client = Some(HttpClient::Configured(Arc::new(configure)));
        self
    }

    /// Allows a plain `http://` issuer and endpoints. For tests and local development only:
    /// tokens and the PAT would cross the network in the clear. Defaults to refusing them.
    pub fn insecure_allow_http(mut self) -> Self {
        self.allow_http = true;
        self
    }

    /// Runs discovery when the builder comes from [`UmaLayer::discover`], validates the
    /// configuration, reconciles the declared resources with the AS (see
    /// [`resource_sync`](Self::resource_sync)), looks up the resources of a Keycloak
    /// configuration's paths without `name` (see [`crate::keycloak`]), and returns the layer.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`](crate::error::ErrorKind::Config) with a message saying what to
    /// fix; the errors of discovery ([`ErrorKind::Transport`](crate::error::ErrorKind::Transport),
    /// [`ErrorKind::Discovery`](crate::error::ErrorKind::Discovery)); when resources are
    /// declared by name, also the errors of the sync (PAT, transport, AS answers), which say
    /// what was already changed. With a [`start_retry`](Self::start_retry) policy, transient
    /// errors of discovery and of the sync are retried first.
    pub async fn build(self) -> Result<UmaLayer, Error> {
        let mut this = self.discovered().await?;
        let retry = this.start_retry.clone();
        let by_uri = std::mem::take(&mut this.uri_bindings);
        let prepared = this.prepare()?;
        let decls = prepared.map_decls();
        let ids = match &prepared.registrar {
            Some(r) if !decls.is_empty() => {
                let sync = || r.sync(&decls, prepared.sync);
                let hint = || prepared.gate.wait_hint();
                crate::start::retrying(retry.as_ref(), "build", hint, sync)
                    .await?
                    .1
            }
            None if !decls.is_empty() => {
                return Err(Error::config(
                    "resources are declared by name but there is no resource registration endpoint; \
                     set one with .resource_registration_endpoint(url) or name resources by id",
                ));
            }
            _ => HashMap::new(),
        };
        if !by_uri.is_empty() {
            let Some(r) = &prepared.registrar else {
                return Err(Error::config(
                    "paths without a resource name are looked up by their uri at the resource \
                     registration endpoint: set one with .resource_registration_endpoint(url)",
                ));
            };
            for (uri, cell) in &by_uri {
                if cell.get().is_none()
                    && let Some(id) =
                        crate::keycloak::resource_for_uri(&r.client, &r.endpoint, uri).await?
                {
                    // A layer built concurrently from the same configuration found the same.
                    let _ = cell.set(id);
                }
            }
        }
        Ok(prepared.into_layer(ids))
    }

    /// A dry run of the start-up resource sync: lists the AS's resources and returns what
    /// [`build`](Self::build) would create, update or delete, without writing anything.
    /// `Display` prints it as a diff.
    ///
    /// # Errors
    ///
    /// As [`build`](Self::build).
    pub async fn check_resources(&self) -> Result<ResourceSync, Error> {
        let prepared = self.clone().discovered().await?.prepare()?;
        let decls = prepared.map_decls();
        let Some(registrar) = &prepared.registrar else {
            return Err(Error::config(
                "no resource registration endpoint: set one with .resource_registration_endpoint(url)",
            ));
        };
        Ok(registrar.plan(&decls, prepared.sync).await?.0)
    }

    /// Sets every endpoint still unset from `found` (discovery, or the dialect's paths);
    /// endpoints set by hand are kept.
    pub(super) fn fill_endpoints(&mut self, found: DerivedEndpoints) {
        for (mine, theirs) in [
            (&mut self.token_endpoint, found.token),
            (&mut self.introspection_endpoint, found.introspection),
            (&mut self.permission_endpoint, found.permission),
            (&mut self.resource_registration_endpoint, found.registration),
            (&mut self.jwks_uri, found.jwks),
        ] {
            if mine.is_none() {
                *mine = theirs;
            }
        }
    }
}
