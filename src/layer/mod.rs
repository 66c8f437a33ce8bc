//! [`UmaLayer`], the layer users build and apply, and its builder.
//!
//! - `mod.rs`: the [`UmaLayer`] type, its [`Layer`] impl, accessors, and the constructors of
//!   [`Uma`] that take a layer (so that `service.rs` needs only the pipeline).
//! - `builder.rs`: [`UmaLayerBuilder`] and [`Discover`], the setters and their defaults.
//! - `assemble.rs`: what [`build`](UmaLayerBuilder::build) checks and makes (HTTP client,
//!   gate, protection-API client, JWT verifier, cache scope) before the resource sync.
//! - `url_check.rs`: the URL checks.
//!
//! See the [crate documentation](crate) for the request path and an example.

mod assemble;
mod builder;
pub(crate) mod url_check;

use std::sync::Arc;

use tower_layer::Layer;

pub use self::builder::UmaLayerBuilder;
use crate::IntrospectionCache;
use crate::gate::AsHealth;
use crate::pipeline::Pipeline;
use crate::registration::ResourceRegistry;
use crate::service::Uma;
use crate::token::ClientSecret;

/// A Tower layer that protects a service as a UMA 2.0 resource server.
///
/// Build one with [`UmaLayer::discover`] (reads the AS's discovery document) or
/// [`UmaLayer::builder`] (endpoints configured by hand), then wrap a service with
/// [`Layer::layer`] or axum's `Router::layer`. Cloning is an `Arc` clone. See the
/// [crate documentation](crate) for the request path.
#[derive(Clone)]
#[must_use]
pub struct UmaLayer {
    pipeline: Arc<Pipeline>,
}

impl std::fmt::Debug for UmaLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UmaLayer")
            .field("realm", &self.pipeline.realm())
            .field("as_uri", &self.pipeline.as_uri())
            .field("enforcement", &self.pipeline.enforcement())
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for UmaLayer {
    type Service = Uma<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Uma::with_pipeline(inner, Arc::clone(&self.pipeline))
    }
}

impl<S> Uma<S> {
    /// Wraps `inner` with the protection configured in `layer`.
    pub fn new(inner: S, layer: UmaLayer) -> Self {
        Self::with_pipeline(inner, layer.pipeline)
    }
}

impl UmaLayer {
    /// Starts a configuration by discovery: [`build`](UmaLayerBuilder::build) (and
    /// [`check_resources`](UmaLayerBuilder::check_resources)) first read
    /// `{issuer}/.well-known/uma2-configuration`, check that the document's `issuer` equals
    /// `issuer`, and fill in every endpoint not set by hand. Every setter of the builder
    /// applies to discovery too: [`dialect`](UmaLayerBuilder::dialect) (WSO2 has no document;
    /// its endpoints are derived from the issuer), the timeouts,
    /// [`start_retry`](UmaLayerBuilder::start_retry) and
    /// [`insecure_allow_http`](UmaLayerBuilder::insecure_allow_http) (plain `http://` issuers
    /// are refused without it).
    ///
    /// # Example
    ///
    /// ```no_run
    /// use tower_uma::{ResourceMap, Route, UmaLayer};
    ///
    /// # async fn run() -> Result<(), tower_uma::Error> {
    /// let layer = UmaLayer::discover("https://as.example.com", "photo-api", "photo-api-secret")
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
    ) -> UmaLayerBuilder {
        let mut builder = Self::builder(issuer, client_id, client_secret);
        builder.discover = true;
        builder
    }

    /// Starts a configuration with endpoints set by hand (no discovery), for servers without a
    /// discovery document (WSO2) or whose document is elsewhere (PingAM).
    ///
    /// `issuer` is the `as_uri` of challenges. Set at least the token, introspection and
    /// permission endpoints, or start with [`UmaLayer::discover`].
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

    /// Forgets the cached introspection result of `token` (for revocation hooks), for every
    /// layer sharing this layer's cache: one call is enough whichever layer the hook holds.
    /// The grants those layers' permission exchanges
    /// ([`PermissionExchange`](crate::keycloak::PermissionExchange)) obtained for the token go
    /// with it.
    ///
    /// With a shared cache on Redis (feature `redis`, `IntrospectionCacheBuilder::shared`),
    /// the token's revocation marker is also written to Redis, its shared entries deleted and
    /// the revocation broadcast to every replica, in a task of its own (outside a tokio runtime, only the local cache forgets); await
    /// [`forget_token_everywhere`](Self::forget_token_everywhere) to know when it was sent.
    pub fn forget_token(&self, token: &str) {
        if let Some(rest) = self.pipeline.forget_token(token)
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            // A failure is logged and counted by the shared cache.
            runtime.spawn(async move {
                let _ = rest.await;
            });
        }
    }

    /// [`forget_token`](Self::forget_token), returning once the fleet was told: the token's
    /// revocation marker written to Redis and the revocation published on the shared cache's
    /// channel (and the shared entries deleted, or that failure logged and counted). From
    /// then on no replica uses a shared entry of the token asked for before the revocation,
    /// whatever layer wrote it, even one that did not hear the broadcast (see "What a
    /// revocation guarantees" in `SharedCache`'s documentation, feature `redis`). Redis calls
    /// are bounded by the shared cache's timeout. Without a shared cache it only forgets
    /// locally, and succeeds.
    ///
    /// # Errors
    ///
    /// [`RevocationNotSent`](crate::cache::RevocationNotSent) when the marker could not be
    /// written or the revocation could not be published: this replica forgot the token, the
    /// others may not have, and a replica that did not hear it may use a shared entry.
    pub async fn forget_token_everywhere(
        &self,
        token: &str,
    ) -> Result<(), crate::cache::RevocationNotSent> {
        match self.pipeline.forget_token(token) {
            Some(rest) => rest.await,
            None => Ok(()),
        }
    }

    /// Forgets every cached introspection result (of every layer sharing this cache), and
    /// every grant their permission exchanges obtained.
    pub fn forget_all_tokens(&self) {
        self.pipeline.cache().invalidate_all();
    }

    /// The introspection cache this layer uses.
    #[must_use]
    pub fn cache(&self) -> &IntrospectionCache {
        self.pipeline.cache()
    }

    /// The AS-assigned id of a resource declared by name, once registered.
    #[must_use]
    pub fn resource_id(&self, name: &str) -> Option<String> {
        self.pipeline.registry().id(name)
    }

    /// The registry of resources by name: look ids up, register resources at run time.
    #[must_use]
    pub fn registry(&self) -> &ResourceRegistry {
        self.pipeline.registry()
    }

    /// The RFC 9728 metadata document, when
    /// [`resource_metadata`](UmaLayerBuilder::resource_metadata) was set: serve it at its
    /// [`path`](crate::metadata::ResourceMetadataDocument::path) (the layer lets that path
    /// through as public; [`UmaRouter`](crate::axum::UmaRouter) serves it by itself).
    pub fn resource_metadata(&self) -> Option<&crate::metadata::ResourceMetadataDocument> {
        self.pipeline.metadata()
    }

    /// The `as_uri` this layer puts in its challenges.
    #[must_use]
    pub fn as_uri(&self) -> &str {
        self.pipeline.as_uri()
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
        self.pipeline.as_health()
    }
}

impl UmaLayer {
    /// The resource map that decides, unless a resolver of the user's replaces it.
    #[cfg(feature = "axum")]
    pub(crate) fn map(&self) -> Option<&crate::ResourceMap> {
        self.pipeline.map()
    }

    /// The layer's enforcement mode.
    #[cfg(feature = "axum")]
    pub(crate) fn enforcement(&self) -> crate::EnforcementMode {
        self.pipeline.enforcement()
    }

    /// The pipeline this layer checks requests with (for the tenants' service).
    pub(crate) fn pipeline(&self) -> &Arc<Pipeline> {
        &self.pipeline
    }

    /// The layer of a built pipeline.
    pub(crate) fn from_pipeline(pipeline: Pipeline) -> Self {
        Self {
            pipeline: Arc::new(pipeline),
        }
    }
}
