//! [`UmaLayer`] and its builder.
//!
//! See the [crate documentation](crate) for the request path and an example.

use std::collections::HashMap;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use crate::IntrospectionCache;
use crate::clock::{Clock, SystemClock};
use crate::decision::Rules;
use crate::dialect::{DerivedEndpoints, Dialect};
use crate::discovery::{DiscoveryDocument, trim_issuer};
use crate::error::Error;
use crate::gate::{AsEndpoint, AsGate, AsHealth, GateSettings};
use crate::method_override::MethodOverride;
use crate::protection::reqwest_transport::ReqwestTransport;
use crate::protection::{
    AsClient, Caller, ClientAuth, IntrospectionAuth, PatConfig, PatGrant, PatProvider,
    PermissionBody, Transport,
};
use crate::registration::{Registrar, ResourceRegistry, ResourceSync, ResourceSyncMode};
use crate::resources::{EnforcementMode, ResourceMap, ResourceResolver};
use crate::resync::Resync;
use crate::service::Uma;
use crate::start::StartRetry;
use crate::token::ClientSecret;

/// What happens to a request that matches no mapped route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Unmapped {
    /// Refuse it with `403 Forbidden` (no UMA challenge: there is no resource to ask for).
    #[default]
    Deny,
    /// Let it through unchecked.
    Allow,
}

/// A Tower layer that protects a service as a UMA 2.0 resource server.
///
/// Build one with [`UmaLayer::discover`] (reads the AS's discovery document) or
/// [`UmaLayer::builder`] (endpoints configured by hand), then wrap a service with
/// [`Layer::layer`] or axum's `Router::layer`. Cloning is an `Arc` clone. See the
/// [crate documentation](crate) for the request path.
#[derive(Clone)]
#[must_use]
pub struct UmaLayer {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for UmaLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UmaLayer")
            .field("realm", &self.shared.realm)
            .field("as_uri", &self.shared.as_uri)
            .field("enforcement", &self.shared.enforcement)
            .finish_non_exhaustive()
    }
}

/// How requests are mapped: the resource map (which also detects ambiguous spellings) or a
/// user's resolver.
pub(crate) enum Resolver {
    Map(ResourceMap),
    Custom(Arc<dyn ResourceResolver>),
}

/// Everything the request path needs, shared by every clone of the layer and service.
pub(crate) struct Shared {
    pub(crate) realm: String,
    pub(crate) as_uri: String,
    pub(crate) namespace: String,
    pub(crate) client: Arc<AsClient>,
    pub(crate) cache: IntrospectionCache,
    pub(crate) resolver: Resolver,
    pub(crate) registry: ResourceRegistry,
    pub(crate) enforcement: EnforcementMode,
    /// Whether refused spellings get `400` even in permissive mode, because some route may
    /// be enforcing.
    pub(crate) strict_spellings: bool,
    pub(crate) unmapped: Unmapped,
    pub(crate) method_override: MethodOverride,
    pub(crate) rules: Rules,
    pub(crate) clock: Arc<dyn Clock>,
    /// The cap and circuit breakers of every AS call (also held by the client).
    pub(crate) gate: Arc<AsGate>,
    /// Whether the cache reads `clock` too, so that one reading serves both.
    pub(crate) cache_shares_clock: bool,
    #[cfg(feature = "jwt")]
    pub(crate) rpt_validation: crate::jwt::RptValidation,
    #[cfg(feature = "jwt")]
    pub(crate) jwt: Option<Arc<crate::jwt::JwtVerifier>>,
}

impl Shared {
    /// Checks an RPT as configured: by introspection, or locally when it is a JWT.
    pub(crate) async fn check_rpt(
        &self,
        token: &crate::token::Rpt,
    ) -> Result<crate::introspect::Introspection, crate::protection::CallError> {
        #[cfg(feature = "jwt")]
        if let Some(verifier) = &self.jwt {
            use crate::jwt::RptValidation;
            match (self.rpt_validation, verifier.verify(token).await?) {
                (_, Some(result)) => return Ok(result),
                // Local only: a token that is not a JWT cannot be valid.
                (RptValidation::Local, None) => {
                    return Ok(crate::introspect::Introspection::inactive());
                }
                _ => {}
            }
        }
        self.client.introspect(token).await
    }
}

impl<S> Layer<S> for UmaLayer {
    type Service = Uma<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Uma::new(inner, self.clone())
    }
}

impl UmaLayer {
    /// Starts a configuration by discovery: awaiting it reads
    /// `{issuer}/.well-known/uma2-configuration`, checks that the document's `issuer` equals
    /// `issuer`, and returns a builder with the endpoints filled in.
    ///
    /// Plain `http://` issuers are refused unless [`Discover::insecure_allow_http`] is called
    /// before awaiting.
    ///
    /// # Example
    ///
    /// ```no_run
    /// use tower_uma::{ResourceMap, Route, UmaLayer};
    ///
    /// # async fn run() -> Result<(), tower_uma::Error> {
    /// let layer = UmaLayer::discover("https://as.example.com", "photo-api", "photo-api-secret")
    ///     .await?
    ///     .realm("photos")
    ///     .resources(ResourceMap::new().route(
    ///         Route::new("/albums/{id}").resource_id("r-9f1c").scopes(http::Method::GET, ["view"]),
    ///     ))
    ///     .build()
    ///     .await?;
    /// # let _ = layer; Ok(()) }
    /// ```
    pub fn discover(
        issuer: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
    ) -> Discover {
        Discover {
            builder: Self::builder(issuer, client_id, client_secret),
        }
    }

    /// Starts a configuration with endpoints set by hand (no discovery), for servers without a
    /// discovery document (WSO2) or whose document is elsewhere (PingAM).
    ///
    /// `issuer` is the `as_uri` of challenges. Set at least the token, introspection and
    /// permission endpoints, or call [`UmaLayerBuilder::discover`].
    ///
    /// # Example
    ///
    /// ```
    /// use tower_uma::{ResourceMap, Route, UmaLayer};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_uma::Error> {
    /// let layer = UmaLayer::builder("https://is.example.com/oauth2/token", "photo-api", "secret")
    ///     .token_endpoint("https://is.example.com/oauth2/token")
    ///     .introspection_endpoint("https://is.example.com/oauth2/introspect")
    ///     .permission_endpoint("https://is.example.com/api/identity/oauth2/uma/permission/v1.0/permission")
    ///     .resources(ResourceMap::new().route(
    ///         Route::new("/albums/{id}").resource_id("5e0b").scopes(http::Method::GET, ["view"]),
    ///     ))
    ///     .build()
    ///     .await?;
    /// # let _ = layer; Ok(()) }
    /// ```
    pub fn builder(
        issuer: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
    ) -> UmaLayerBuilder {
        UmaLayerBuilder::new(
            issuer.into(),
            client_id.into(),
            ClientSecret::new(client_secret),
        )
    }

    /// Forgets the cached introspection result of `token` (for revocation hooks).
    pub fn forget_token(&self, token: &str) {
        self.shared.cache.invalidate(&self.shared.namespace, token);
    }

    /// Forgets every cached introspection result (of every layer sharing this cache).
    pub fn forget_all_tokens(&self) {
        self.shared.cache.invalidate_all();
    }

    /// The introspection cache this layer uses.
    #[must_use]
    pub fn cache(&self) -> &IntrospectionCache {
        &self.shared.cache
    }

    /// The AS-assigned id of a resource declared by name, once registered.
    #[must_use]
    pub fn resource_id(&self, name: &str) -> Option<String> {
        self.shared.registry.id(name)
    }

    /// The registry of resources by name: look ids up, register resources at run time.
    #[must_use]
    pub fn registry(&self) -> &ResourceRegistry {
        &self.shared.registry
    }

    /// The `as_uri` this layer puts in its challenges.
    #[must_use]
    pub fn as_uri(&self) -> &str {
        &self.shared.as_uri
    }

    /// The state of this layer's calls to the authorization server, for readiness checks and
    /// health endpoints: each endpoint's circuit breaker (closed, open or half-open, its
    /// consecutive failures, since when), the calls in flight against the cap, and the
    /// resources the AS said it does not know and that could not be registered again yet
    /// ([`AsHealth::unknown_resources`]). See [`AsHealth`] and the builder's
    /// [`breaker_failure_threshold`](UmaLayerBuilder::breaker_failure_threshold) and
    /// [`resource_resync_interval`](UmaLayerBuilder::resource_resync_interval).
    ///
    /// An open circuit does not mean that the layer cannot serve: cached decisions still
    /// work, and requests that need the AS are refused at once (`403` + `Warning`) rather
    /// than after a timeout. Taking the service out of rotation because of it would also stop
    /// the requests whose probes detect recovery, so prefer to report it (log, metric,
    /// degraded status) over failing readiness on it. An unknown resource is different: the
    /// AS is up but refuses every ticket for it until the layer registers it again (which it
    /// retries in the background, with or without requests), so failing readiness on
    /// [`AsHealth::resources_known`] is reasonable.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn run(layer: tower_uma::UmaLayer) {
    /// let health = layer.as_health();
    /// if !health.all_closed() {
    ///     eprintln!("authorization server degraded:\n{health}");
    /// }
    /// let ready = health.resources_known();
    /// # let _ = ready;
    /// # }
    /// ```
    #[must_use]
    pub fn as_health(&self) -> AsHealth {
        let unknown = self.shared.registry.resync().unknown_resources();
        self.shared.gate.health().with_unknown_resources(unknown)
    }
}

/// The pending discovery of [`UmaLayer::discover`]; await it for a [`UmaLayerBuilder`].
#[must_use = "await it to run discovery"]
#[derive(Debug)]
pub struct Discover {
    builder: UmaLayerBuilder,
}

impl Discover {
    /// Allows a plain `http://` issuer and endpoints. For tests and local development only.
    /// Defaults to refusing them.
    pub fn insecure_allow_http(mut self) -> Self {
        self.builder = self.builder.insecure_allow_http();
        self
    }

    /// The TCP connect timeout for every AS call. Defaults to 2 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.builder = self.builder.connect_timeout(timeout);
        self
    }

    /// The whole-request timeout for every AS call. Defaults to 3 s.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.builder = self.builder.request_timeout(timeout);
        self
    }

    /// Waits up to `max_wait` for an AS that cannot be reached yet, in discovery and again
    /// in [`build`](UmaLayerBuilder::build): a shortcut for
    /// [`start_retry(StartRetry::new(max_wait))`](Self::start_retry). Defaults to no waiting.
    pub fn wait_for_as(self, max_wait: Duration) -> Self {
        self.start_retry(StartRetry::new(max_wait))
    }

    /// How discovery, and later [`build`](UmaLayerBuilder::build), wait for an AS that cannot
    /// be reached yet (see [`StartRetry`]). Defaults to no waiting: one attempt.
    pub fn start_retry(mut self, policy: StartRetry) -> Self {
        self.builder = self.builder.start_retry(policy);
        self
    }
}

impl Discover {
    /// The kind of AS (see [`UmaLayerBuilder::dialect`]); with [`Dialect::Wso2`], which
    /// publishes no discovery document, awaiting makes no request. Defaults to
    /// [`Dialect::Standard`].
    pub fn dialect(mut self, dialect: Dialect) -> Self {
        self.builder = self.builder.dialect(dialect);
        self
    }
}

impl IntoFuture for Discover {
    type Output = Result<UmaLayerBuilder, Error>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.builder.discover())
    }
}

/// Configures an [`UmaLayer`]. Every setter documents its default; [`build`](Self::build)
/// validates everything once and says what to fix.
#[must_use]
#[derive(Clone)]
pub struct UmaLayerBuilder {
    issuer: String,
    client_id: String,
    client_secret: ClientSecret,
    as_uri: Option<String>,
    realm: Option<String>,
    token_endpoint: Option<String>,
    introspection_endpoint: Option<String>,
    permission_endpoint: Option<String>,
    resource_registration_endpoint: Option<String>,
    jwks_uri: Option<String>,
    resources: ResourceMap,
    resolver: Option<Arc<dyn ResourceResolver>>,
    connect_timeout: Duration,
    request_timeout: Duration,
    dialect: Dialect,
    token_type_hint: Option<Option<String>>,
    introspection_auth: Option<IntrospectionAuth>,
    client_auth: ClientAuth,
    pat_grant: PatGrant,
    pat_scope: Option<Option<String>>,
    permission_body: Option<PermissionBody>,
    enforcement: EnforcementMode,
    unmapped: Unmapped,
    method_override: MethodOverride,
    leeway: Duration,
    empty_scopes_grant_all: Option<bool>,
    sync: ResourceSyncMode,
    lookup_interval: Duration,
    resync_interval: Duration,
    start_retry: Option<StartRetry>,
    #[cfg(feature = "jwt")]
    rpt_validation: crate::jwt::RptValidation,
    #[cfg(feature = "jwt")]
    jwt: crate::jwt::JwtValidation,
    cache: Option<IntrospectionCache>,
    clock: Arc<dyn Clock>,
    gate: GateSettings,
    http_client: Option<reqwest::Client>,
    allow_http: bool,
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

impl UmaLayerBuilder {
    fn new(issuer: String, client_id: String, client_secret: ClientSecret) -> Self {
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
            resolver: None,
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
        }
    }

    /// Reads `{issuer}/.well-known/uma2-configuration` and fills in every endpoint not set
    /// by hand. Fails when the document's `issuer` differs from the configured one.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) for an unusable issuer URL,
    /// [`ErrorKind::Transport`](crate::ErrorKind::Transport) when the AS cannot be reached,
    /// [`ErrorKind::Discovery`](crate::ErrorKind::Discovery) for a bad document.
    pub async fn discover(mut self) -> Result<Self, Error> {
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
    /// [`RptValidation::Introspect`](crate::RptValidation::Introspect).
    #[cfg(feature = "jwt")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
    pub fn rpt_validation(mut self, mode: crate::jwt::RptValidation) -> Self {
        self.rpt_validation = mode;
        self
    }

    /// The checks of local JWT validation (issuer, audiences, algorithms, key refetch
    /// interval). Unset values are filled in at build: the JWKS from discovery or
    /// [`jwks_uri`](Self::jwks_uri), the issuer, and the client id as audience. Defaults to
    /// [`JwtValidation::new`](crate::JwtValidation::new).
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

    /// Replaces the resource map with a resolver of your own (a closure
    /// `Fn(&RequestInfo) -> Resolution` works). Resources it names by name must still be
    /// declared in the map to be registered. Defaults to the resource map.
    pub fn resolver(mut self, resolver: impl ResourceResolver) -> Self {
        self.resolver = Some(Arc::new(resolver));
        self
    }

    /// The TCP connect timeout for every AS call. Defaults to 2 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The whole-request timeout for every AS call. Defaults to 3 s.
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
    /// [`ResourceRegistry::lookup`](crate::ResourceRegistry::lookup)) may list the AS's
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
    /// [`start_retry(StartRetry::new(max_wait))`](Self::start_retry). To wait in discovery
    /// too, call [`Discover::wait_for_as`] instead (it carries over to this builder).
    /// Defaults to no waiting.
    pub fn wait_for_as(self, max_wait: Duration) -> Self {
        self.start_retry(StartRetry::new(max_wait))
    }

    /// How [`build`](Self::build) (the PAT and the resource sync) and
    /// [`discover`](Self::discover) wait for an AS that cannot be reached yet: retried with
    /// capped exponential backoff and jitter while the failure is transient
    /// ([`Error::is_transient`]), returned at once otherwise. See [`StartRetry`]. Defaults to
    /// no waiting: one attempt.
    pub fn start_retry(mut self, policy: StartRetry) -> Self {
        self.start_retry = Some(policy);
        self
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
    /// parameter (see [`MethodOverride`](crate::MethodOverride)): refuse it with `400`, or
    /// decide on the overridden method and rewrite the request to it, signals removed. The
    /// check runs before anything else, on every route and in every enforcement mode.
    /// Defaults to [`MethodOverride::Refuse`](crate::MethodOverride::Refuse).
    pub fn method_override(mut self, method_override: MethodOverride) -> Self {
        self.method_override = method_override;
        self
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
    /// [`Introspection::from_json`]: crate::Introspection::from_json
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
    /// [`IntrospectionCache::disabled`] to turn caching off. Defaults to a new cache with
    /// [`IntrospectionCache::builder`]'s defaults.
    pub fn cache(mut self, cache: IntrospectionCache) -> Self {
        self.cache = Some(cache);
        self
    }

    /// The clock used for `exp`/`nbf` decisions and the circuit breakers' intervals.
    /// Defaults to the system clock.
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

    /// Uses your own `reqwest::Client` for every AS call (proxies, custom roots). The
    /// timeouts of this builder are then not applied: configure them on the client.
    ///
    /// This couples your code to reqwest's major version (0.13); it is the one place the
    /// public API exposes a reqwest type. Defaults to a client built from this builder's
    /// timeouts that follows no redirects.
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http_client = Some(client);
        self
    }

    /// Allows a plain `http://` issuer and endpoints. For tests and local development only:
    /// tokens and the PAT would cross the network in the clear. Defaults to refusing them.
    pub fn insecure_allow_http(mut self) -> Self {
        self.allow_http = true;
        self
    }

    /// The gate of this layer's AS calls, for the endpoints it calls.
    fn make_gate(&self) -> Result<Arc<AsGate>, Error> {
        let g = self.gate;
        if g.max_in_flight == 0 {
            return Err(Error::config(
                "max_as_calls_in_flight must be at least 1: with 0 the layer could never call the AS",
            ));
        }
        if g.breaker.base.is_zero() || g.breaker.base > g.breaker.max {
            return Err(Error::config(format!(
                "breaker_open_interval: the first interval ({:?}) must be greater than zero and \
                 not above the longest ({:?})",
                g.breaker.base, g.breaker.max
            )));
        }
        let mut used = vec![
            AsEndpoint::Token,
            AsEndpoint::Introspection,
            AsEndpoint::Permission,
        ];
        if self.resource_registration_endpoint.is_some() {
            used.push(AsEndpoint::ResourceRegistration);
        }
        #[cfg(feature = "jwt")]
        if self.rpt_validation != crate::jwt::RptValidation::Introspect {
            used.push(AsEndpoint::Jwks);
        }
        Ok(Arc::new(AsGate::new(g, Arc::clone(&self.clock), &used)))
    }

    /// The transport of every AS call: the user's client, or one with this builder's timeouts.
    fn make_transport(&self) -> Result<Arc<dyn Transport>, Error> {
        let transport = match &self.http_client {
            Some(c) => ReqwestTransport::new(c.clone()),
            None => ReqwestTransport::with_timeouts(self.connect_timeout, self.request_timeout)?,
        };
        Ok(Arc::new(transport))
    }

    /// Validates the configuration, reconciles the declared resources with the AS (see
    /// [`resource_sync`](Self::resource_sync)), and returns the layer.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) with a message saying what to fix; when
    /// resources are declared by name, also the errors of the sync (PAT, transport, AS
    /// answers), which say what was already changed. With a [`start_retry`](Self::start_retry)
    /// policy, transient errors of the sync are retried first.
    pub async fn build(self) -> Result<UmaLayer, Error> {
        let retry = self.start_retry.clone();
        let prepared = self.prepare()?;
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
        let prepared = self.clone().prepare()?;
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
    fn fill_endpoints(&mut self, found: DerivedEndpoints) {
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

    /// Everything [`build`](Self::build) checks that needs no AS call.
    fn prepare(mut self) -> Result<Prepared, Error> {
        check_url("issuer", &self.issuer, self.allow_http)?;
        let dialect = self.dialect;
        self.fill_endpoints(dialect.derive_endpoints(&self.issuer));
        let allow_http = self.allow_http;
        let need = |name: &str, v: &Option<String>| -> Result<String, Error> {
            let v = v.clone().ok_or_else(|| {
                Error::config(format!(
                    "no {name}: use UmaLayer::discover, a dialect that knows it, or set it with .{name}(url)"
                ))
            })?;
            check_url(name, &v, allow_http)?;
            Ok(v)
        };
        let token_endpoint = need("token_endpoint", &self.token_endpoint)?;
        let introspection_endpoint = need("introspection_endpoint", &self.introspection_endpoint)?;
        let permission_endpoint = need("permission_endpoint", &self.permission_endpoint)?;
        if let Some(u) = &self.resource_registration_endpoint {
            check_url("resource_registration_endpoint", u, allow_http)?;
        }
        if self.client_id.is_empty() {
            return Err(Error::config("the client id is empty"));
        }
        if dialect == Dialect::Wso2 && self.pat_grant == PatGrant::ClientCredentials {
            return Err(Error::config(
                "the WSO2 dialect needs a PAT bound to the resource owner: \
                 set .pat_grant(PatGrant::Password { username, password })",
            ));
        }
        let realm = self.realm.clone().unwrap_or_else(|| self.client_id.clone());
        let as_uri = self
            .as_uri
            .clone()
            .unwrap_or_else(|| trim_issuer(&self.issuer).to_owned());
        for (name, v) in [("realm", &realm), ("as_uri", &as_uri)] {
            crate::challenge::render_challenge(v, "x", "x").map_err(|_| {
                Error::config(format!(
                    "the {name} {v:?} cannot be sent in a challenge: use visible ASCII without control characters"
                ))
            })?;
        }
        self.resources
            .validate()
            .map_err(|e| Error::config(format!("invalid resource map: {e}")))?;
        if self.enforcement == EnforcementMode::Disabled
            && let Some(template) = self.resources.enforcement_override()
        {
            return Err(Error::config(format!(
                "route `{template}` overrides the enforcement mode, but the layer is Disabled and \
                 checks nothing: remove the override, or make the layer Permissive"
            )));
        }
        // The route of a refused spelling is not known: it is refused whenever some route may
        // be enforcing (an override, or a resolver that may return one).
        let strict_spellings = self.enforcement == EnforcementMode::Enforcing
            || self.resolver.is_some()
            || self.resources.may_enforce();
        let transport = self.make_transport()?;
        let gate = self.make_gate()?;
        let caller = Caller::new(transport, Arc::clone(&gate));
        let client_credentials = crate::protection::token::Client {
            id: self.client_id.clone(),
            secret: self.client_secret.clone(),
            auth: self.client_auth,
        };
        let pat = Arc::new(PatProvider::new(
            caller.clone(),
            PatConfig {
                token_endpoint,
                client: client_credentials.clone(),
                grant: self.pat_grant.clone(),
                scope: self
                    .pat_scope
                    .clone()
                    .unwrap_or_else(|| dialect.pat_scope()),
            },
        ));
        let client = Arc::new(AsClient {
            caller,
            pat,
            introspection_endpoint,
            permission_endpoint,
            introspection_auth: self
                .introspection_auth
                .unwrap_or_else(|| dialect.introspection_auth()),
            token_type_hint: self
                .token_type_hint
                .clone()
                .unwrap_or_else(|| dialect.token_type_hint()),
            permission_body: self.permission_body.unwrap_or_default(),
            client: client_credentials,
        });
        #[cfg(feature = "jwt")]
        let (jwt, validation) = if self.rpt_validation == crate::jwt::RptValidation::Introspect {
            (None, "introspection".to_owned())
        } else {
            let mut v = self.jwt.clone();
            v.fill_defaults(
                self.jwks_uri.as_deref(),
                trim_issuer(&self.issuer),
                &self.client_id,
            );
            v.validate()
                .map_err(|e| Error::config(format!("invalid JWT validation: {e}")))?;
            if let Some(u) = v.configured_jwks_uri() {
                check_url("jwks_uri", u, allow_http)?;
            }
            let validation = format!("{:?} ({})", self.rpt_validation, v.acceptance());
            let verifier =
                crate::jwt::JwtVerifier::new(client.caller.clone(), v, Arc::clone(&self.clock));
            (Some(Arc::new(verifier)), validation)
        };
        #[cfg(not(feature = "jwt"))]
        let validation = String::from("introspection");
        let namespace = trim_issuer(&self.issuer).to_owned();
        let cache = self.cache.take().unwrap_or_default();
        cache
            .claim(&namespace, &validation)
            .map_err(Error::config)?;
        let registrar = self
            .resource_registration_endpoint
            .clone()
            .map(|endpoint| Registrar {
                client: Arc::clone(&client),
                endpoint,
                dialect,
            });
        if self.resync_interval.is_zero() {
            return Err(Error::config(
                "resource_resync_interval must be greater than zero",
            ));
        }
        let leeway = i64::try_from(self.leeway.as_secs()).unwrap_or(i64::MAX);
        Ok(Prepared {
            #[cfg(feature = "jwt")]
            rpt_validation: self.rpt_validation,
            #[cfg(feature = "jwt")]
            jwt,
            rules: Rules {
                leeway,
                empty_scopes_grant_all: self
                    .empty_scopes_grant_all
                    .unwrap_or_else(|| dialect.empty_scopes_grant_all()),
            },
            realm,
            as_uri,
            namespace,
            client,
            registrar,
            sync: self.sync,
            lookup_interval: self.lookup_interval,
            resync_interval: self.resync_interval,
            cache,
            resolver: match self.resolver {
                Some(r) => Resolver::Custom(r),
                None => Resolver::Map(self.resources),
            },
            enforcement: self.enforcement,
            strict_spellings,
            unmapped: self.unmapped,
            method_override: self.method_override,
            clock: self.clock,
            gate,
        })
    }
}

/// A validated configuration, before the resource sync.
struct Prepared {
    #[cfg(feature = "jwt")]
    rpt_validation: crate::jwt::RptValidation,
    #[cfg(feature = "jwt")]
    jwt: Option<Arc<crate::jwt::JwtVerifier>>,
    realm: String,
    as_uri: String,
    namespace: String,
    client: Arc<AsClient>,
    registrar: Option<Registrar>,
    sync: ResourceSyncMode,
    lookup_interval: Duration,
    resync_interval: Duration,
    cache: IntrospectionCache,
    resolver: Resolver,
    enforcement: EnforcementMode,
    strict_spellings: bool,
    unmapped: Unmapped,
    method_override: MethodOverride,
    rules: Rules,
    clock: Arc<dyn Clock>,
    gate: Arc<AsGate>,
}

impl Prepared {
    fn map_decls(&self) -> Vec<crate::resources::ResourceDecl> {
        match &self.resolver {
            Resolver::Map(map) => map.declared(),
            Resolver::Custom(_) => Vec::new(),
        }
    }

    fn into_layer(self, ids: HashMap<String, String>) -> UmaLayer {
        let cache_shares_clock = self
            .cache
            .clock()
            .is_some_and(|c| crate::clock::same_clock(c, &self.clock));
        let decls = self.map_decls();
        let registry = ResourceRegistry::new(
            self.registrar,
            ids,
            decls,
            self.lookup_interval,
            Resync::new(self.resync_interval, Arc::clone(&self.clock)),
        );
        UmaLayer {
            shared: Arc::new(Shared {
                realm: self.realm,
                namespace: self.namespace,
                as_uri: self.as_uri,
                client: self.client,
                cache: self.cache,
                resolver: self.resolver,
                registry,
                enforcement: self.enforcement,
                strict_spellings: self.strict_spellings,
                unmapped: self.unmapped,
                method_override: self.method_override,
                rules: self.rules,
                cache_shares_clock,
                clock: self.clock,
                gate: self.gate,
                #[cfg(feature = "jwt")]
                rpt_validation: self.rpt_validation,
                #[cfg(feature = "jwt")]
                jwt: self.jwt,
            }),
        }
    }
}

/// Checks that `value` is an absolute http(s) URL with a host, and https unless allowed.
fn check_url(name: &str, value: &str, allow_http: bool) -> Result<(), Error> {
    let url = url::Url::parse(value)
        .map_err(|e| Error::config(format!("the {name} {value:?} is not an absolute URL: {e}")))?;
    match url.scheme() {
        "https" => {}
        "http" if allow_http => {}
        "http" => {
            return Err(Error::config(format!(
                "the {name} {value:?} uses plain http; use https, or call insecure_allow_http() for tests"
            )));
        }
        other => {
            return Err(Error::config(format!(
                "the {name} {value:?} has scheme {other:?}; use https"
            )));
        }
    }
    if url.host().is_none() {
        return Err(Error::config(format!("the {name} {value:?} has no host")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        assert!(check_url("issuer", "https://as.test", false).is_ok());
        let e = check_url("issuer", "http://as.test", false).unwrap_err();
        assert!(e.to_string().contains("insecure_allow_http"), "{e}");
        assert!(check_url("issuer", "http://as.test", true).is_ok());
        assert!(check_url("issuer", "as.test", true).is_err());
        assert!(check_url("issuer", "ftp://as.test", true).is_err());
    }
}
