//! What [`UmaLayerBuilder::build`] makes before the resource sync: every check that needs no
//! AS call, then the HTTP client, the gate, the protection-API client, the JWT verifier and
//! the cache scope, in a [`Prepared`] configuration that becomes the layer.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::builder::HttpClient;
use super::url_check::check_url;
use super::{UmaLayer, UmaLayerBuilder};
use crate::IntrospectionCache;
use crate::cache::CacheScope;
use crate::clock::Clock;
use crate::decision::Rules;
use crate::dialect::Dialect;
use crate::discovery::trim_issuer;
use crate::error::Error;
use crate::gate::{AsEndpoint, AsGate};
use crate::method_override::MethodOverride;
use crate::pipeline::{Parts, Pipeline, Unmapped};
use crate::protection::reqwest_transport::ReqwestTransport;
use crate::protection::{AsClient, Caller, Deadline, PatConfig, PatGrant, PatProvider, Transport};
use crate::registration::{Registrar, ResourceRegistry, ResourceSyncMode};
use crate::resources::{EnforcementMode, Resolver};
use crate::resync::Resync;

impl UmaLayerBuilder {
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

    /// The transport of every AS call: the user's client, or one with this builder's timeouts
    /// (adjusted by the user's `http_client_builder`), each call bounded by `request_timeout`.
    pub(super) fn make_transport(&self) -> Result<Arc<dyn Transport>, Error> {
        let (connect, request) = (self.connect_timeout, self.request_timeout);
        let transport = match &self.http_client {
            Some(HttpClient::Given(_)) if request.is_zero() => {
                return Err(Error::config(
                    "request_timeout must be greater than zero: it bounds every AS call",
                ));
            }
            Some(HttpClient::Given(c)) => ReqwestTransport::new(c.clone()),
            Some(HttpClient::Configured(configure)) => {
                ReqwestTransport::configured(connect, request, configure.as_ref())?
            }
            None => ReqwestTransport::with_timeouts(connect, request)?,
        };
        Ok(Arc::new(Deadline::new(transport, request)))
    }

    /// Everything [`build`](Self::build) checks that needs no AS call.
    pub(super) fn prepare(mut self) -> Result<Prepared, Error> {
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
            crate::challenge::render_challenge(v, "x", "x", None).map_err(|_| {
                Error::config(format!(
                    "the {name} {v:?} cannot be sent in a challenge: use visible ASCII without control characters"
                ))
            })?;
        }
        let metadata = match &self.metadata {
            Some(m) => {
                let doc = m.document(
                    trim_issuer(&self.issuer),
                    &self.resources.scope_names(),
                    allow_http,
                )?;
                if self.resolver.is_none() {
                    let route = crate::resources::Route::public(doc.path());
                    self.resources = std::mem::take(&mut self.resources).route(route);
                }
                Some(doc)
            }
            None => None,
        };
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
        let transport = self.make_transport()?;
        let gate = self.make_gate()?;
        let caller = Caller::new(transport, Arc::clone(&gate));
        let client_credentials = crate::protection::token::Client {
            id: self.client_id.clone(),
            secret: self.client_secret.clone(),
            auth: self.client_auth,
        };
        // A disabled introspection cache asks the AS on every request: so does the exchange.
        let caching = self
            .cache
            .as_ref()
            .is_none_or(IntrospectionCache::is_enabled);
        let exchange = self.permission_exchange.as_ref().map(|settings| {
            Arc::new(crate::keycloak::Exchanger::new(
                settings,
                caching,
                caller.clone(),
                token_endpoint.clone(),
                self.client_id.clone(),
                client_credentials.clone(),
            ))
        });
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
            Arc::clone(&self.clock),
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
        // Everything that can change the AS's answer about a token (RFC 7662 §4 lets it answer
        // per protected resource): layers that differ in any of it keep their entries apart.
        let introspection = format!(
            "introspection by {:?} at {:?}, hint {:?}, {:?}",
            client.client.id,
            client.introspection_endpoint,
            client.token_type_hint,
            client.introspection_auth
        );
        #[cfg(feature = "jwt")]
        let (jwt, validation) = if self.rpt_validation == crate::jwt::RptValidation::Introspect {
            (None, introspection)
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
            let validation = format!(
                "{:?} ({}), {introspection}",
                self.rpt_validation,
                v.acceptance()
            );
            let verifier =
                crate::jwt::JwtVerifier::new(client.caller.clone(), v, Arc::clone(&self.clock));
            (Some(Arc::new(verifier)), validation)
        };
        #[cfg(not(feature = "jwt"))]
        let validation = introspection;
        // Layers sharing the cache keep their entries apart unless they check RPTs alike.
        let scope = CacheScope::new(
            trim_issuer(&self.issuer),
            &validation,
            Arc::clone(&self.clock),
        );
        let cache = self.cache.take().unwrap_or_default();
        let scope = cache.adopt(scope);
        // The exchange's grants go whenever the cache forgets their token (revocations).
        if let Some(exchanger) = &exchange {
            let derived: Arc<dyn crate::cache::DerivedCache> = exchanger.clone();
            cache.add_derived(Arc::downgrade(&derived));
        }
        let registrar = self
            .resource_registration_endpoint
            .clone()
            .map(|endpoint| Registrar {
                client: Arc::clone(&client),
                endpoint,
                dialect,
                names_owner: self.names_owner.clone(),
            });
        let lazy = match (self.lazy_paths.take(), &registrar) {
            (None, _) => None,
            (Some(lazy), Some(r)) => Some(Arc::new(crate::keycloak::LazyResolver::new(
                lazy,
                Arc::clone(&client),
                r.endpoint.clone(),
            ))),
            (Some(_), None) => {
                return Err(Error::config(
                    "lazy paths ask the resource registration endpoint for the resources' uris;                      set one with .resource_registration_endpoint(url) or use discovery",
                ));
            }
        };
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
            metadata,
            scope,
            client,
            registrar,
            lazy,
            exchange,
            sync: self.sync,
            lookup_interval: self.lookup_interval,
            resync_interval: self.resync_interval,
            cache,
            resolver: match self.resolver {
                Some(r) => Resolver::Custom(r),
                None => Resolver::Map(self.resources),
            },
            enforcement: self.enforcement,
            unmapped: self.unmapped,
            method_override: self.method_override,
            clock: self.clock,
            gate,
            tenant: self
                .metric_tenant
                .as_deref()
                .map(crate::metrics::TenantKeys::new),
        })
    }
}

/// A validated configuration, before the resource sync.
pub(super) struct Prepared {
    #[cfg(feature = "jwt")]
    rpt_validation: crate::jwt::RptValidation,
    #[cfg(feature = "jwt")]
    jwt: Option<Arc<crate::jwt::JwtVerifier>>,
    realm: String,
    as_uri: String,
    metadata: Option<crate::metadata::ResourceMetadataDocument>,
    scope: CacheScope,
    client: Arc<AsClient>,
    pub(super) registrar: Option<Registrar>,
    lazy: Option<Arc<crate::keycloak::LazyResolver>>,
    exchange: Option<Arc<crate::keycloak::Exchanger>>,
    pub(super) sync: ResourceSyncMode,
    lookup_interval: Duration,
    resync_interval: Duration,
    cache: IntrospectionCache,
    resolver: Resolver,
    enforcement: EnforcementMode,
    unmapped: Unmapped,
    method_override: MethodOverride,
    rules: Rules,
    clock: Arc<dyn Clock>,
    pub(super) gate: Arc<AsGate>,
    tenant: Option<crate::metrics::TenantKeys>,
}

impl Prepared {
    pub(super) fn map_decls(&self) -> Vec<crate::resources::ResourceDecl> {
        self.resolver.declared()
    }

    /// The layer, once the resource sync has given the declared names their `ids`.
    pub(super) fn into_layer(mut self, ids: HashMap<String, String>) -> UmaLayer {
        let decls = self.map_decls();
        let registry = ResourceRegistry::new(
            self.registrar,
            ids,
            decls,
            self.lookup_interval,
            Resync::new(self.resync_interval, Arc::clone(&self.clock)),
        );
        self.resolver.bind(|name| registry.bind(name));
        UmaLayer::from_pipeline(Pipeline::new(Parts {
            enforcement: self.enforcement,
            unmapped: self.unmapped,
            method_override: self.method_override,
            resolver: self.resolver,
            lazy: self.lazy,
            exchange: self.exchange,
            registry,
            realm: self.realm,
            as_uri: self.as_uri,
            metadata: self.metadata,
            client: self.client,
            gate: self.gate,
            cache: self.cache,
            scope: self.scope,
            clock: self.clock,
            rules: self.rules,
            #[cfg(feature = "jwt")]
            rpt_validation: self.rpt_validation,
            #[cfg(feature = "jwt")]
            jwt: self.jwt,
            tenant: self.tenant,
        }))
    }
}
