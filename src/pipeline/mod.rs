//! The request pipeline: everything between "request in" and "pass or respond".
//!
//! # The request path, in five files
//!
//! 1. `service.rs`: [`Uma`](crate::Uma), the Tower shell. `call` hands the request to
//!    [`Pipeline::start`] and turns its [`Flow`] into a response future.
//! 2. `pipeline/mod.rs` (this file): the steps, in order. The method override; the route
//!    ([`Resolver`]); the token; the resource's id; the cached answer and the decision, all
//!    synchronous; and, for requests that must wait for the AS, [`Pending::run`]: the lookup
//!    of a resource name, the introspection (or local JWT check) through the cache, the
//!    decision, the ticket.
//! 3. `pipeline/outcome.rs`: what a refusal becomes under the enforcement mode (the only code
//!    that reads it), the one record of the [`Outcome`] per request (span field, metric label,
//!    DEBUG event), and the responses.
//! 4. `decision.rs`: whether an introspection result grants this resource and these scopes now.
//! 5. `future.rs`: the response future (the asynchronous part, then the inner service).
//!
//! They call into the route table (`resources/`), the cache (`cache/`) and the protection API
//! client (`protection/`), which know nothing of requests.

mod outcome;

use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;

use http::{Request, Response};
use tracing::{Instrument, Span, field};

pub(crate) use self::outcome::Enforcement;
pub(crate) use self::outcome::Outcome;
pub use self::outcome::Unmapped;
pub(crate) use self::outcome::layer_response;
use self::outcome::{Facts, Refusal, Verdict, Why, conclude};
use crate::IntrospectionCache;
use crate::cache::{CacheScope, CacheSource, Cached};
use crate::challenge::render_challenge;
use crate::clock::Clock;
use crate::decision::{Requirement, Rules, decide};
use crate::gate::{AsGate, AsHealth};
use crate::introspect::Introspection;
use crate::keycloak::{Exchanged, Exchanger, LazyResolver};
use crate::method_override::MethodOverride;
use crate::metrics::{DecisionMeter, TenantKeys};
use crate::principal::UmaPrincipal;
use crate::protection::{AsClient, CallError};
use crate::registration::ResourceRegistry;
use crate::resources::{
    BodyRead, ClaimRequest, ClaimValues, EnforcementMode, NO_CLAIMS, Protected, Pushing, Resolved,
    Resolver, ResourceRef, ScopeMode, is_json, normalize_path, unusable_body,
};
use crate::token::{Bearer, BearerToken, Fingerprint, Rpt, bearer_from_headers};

/// What [`Pipeline::new`] is made of; the layer's builder fills it in.
pub(crate) struct Parts {
    pub(crate) enforcement: EnforcementMode,
    pub(crate) unmapped: Unmapped,
    pub(crate) method_override: MethodOverride,
    pub(crate) resolver: Resolver,
    /// Resolves paths no route matches at the AS (lazy paths), when configured.
    pub(crate) lazy: Option<Arc<LazyResolver>>,
    /// Exchanges tokens that do not grant the request for permissions, when configured.
    pub(crate) exchange: Option<Arc<Exchanger>>,
    pub(crate) registry: ResourceRegistry,
    pub(crate) realm: String,
    pub(crate) as_uri: String,
    pub(crate) metadata: Option<crate::metadata::ResourceMetadataDocument>,
    pub(crate) client: Arc<AsClient>,
    pub(crate) gate: Arc<AsGate>,
    pub(crate) cache: IntrospectionCache,
    /// This layer's part of the cache (its key part and the layer's clock).
    pub(crate) scope: CacheScope,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) rules: Rules,
    #[cfg(feature = "jwt")]
    pub(crate) rpt_validation: crate::jwt::RptValidation,
    #[cfg(feature = "jwt")]
    pub(crate) jwt: Option<Arc<crate::jwt::JwtVerifier>>,
    /// The `tenant` label of this layer's decisions, when a tenant's (`tenant/`).
    pub(crate) tenant: Option<TenantKeys>,
}

/// Everything the request path needs, shared by every clone of the layer and the service.
pub(crate) struct Pipeline {
    /// The layer's enforcement mode.
    mode: EnforcementMode,
    /// The mode of requests whose route cannot be known.
    unrouted: Enforcement,
    unmapped: Unmapped,
    method_override: MethodOverride,
    resolver: Resolver,
    lazy: Option<Arc<LazyResolver>>,
    exchange: Option<Arc<Exchanger>>,
    registry: ResourceRegistry,
    realm: String,
    as_uri: String,
    /// RFC 9728 metadata, when published.
    metadata: Option<crate::metadata::ResourceMetadataDocument>,
    /// Tickets (and, through `rpt`, introspection).
    client: Arc<AsClient>,
    /// The cap and circuit breakers of every AS call (also held by the client).
    gate: Arc<AsGate>,
    cache: IntrospectionCache,
    scope: CacheScope,
    clock: Arc<dyn Clock>,
    rules: Rules,
    /// How a cache miss checks an RPT; shared with the call the cache spawns.
    rpt: Arc<RptCheck>,
    /// How decisions are counted: the hot `allowed` counter, registered when the layer was
    /// built, and the tenant's keys when the layer is a tenant's.
    meter: DecisionMeter,
}

/// How an RPT the cache does not know is checked: by introspection, or locally when it is a
/// JWT.
struct RptCheck {
    client: Arc<AsClient>,
    #[cfg(feature = "jwt")]
    validation: crate::jwt::RptValidation,
    #[cfg(feature = "jwt")]
    jwt: Option<Arc<crate::jwt::JwtVerifier>>,
}

impl RptCheck {
    async fn check(&self, token: &Rpt) -> Result<Introspection, CallError> {
        #[cfg(feature = "jwt")]
        if let Some(verifier) = &self.jwt {
            use crate::jwt::RptValidation;
            match (self.validation, verifier.verify(token).await?) {
                (_, Some(result)) => return Ok(result),
                // Local only: a token that is not a JWT cannot be valid.
                (RptValidation::Local, None) => return Ok(Introspection::inactive()),
                _ => {}
            }
        }
        // Keycloak's introspection leaves out the claims its RPTs' permissions carry.
        let result = self.client.introspect(token).await?;
        Ok(result.with_claims_of(token.secret().as_bytes()))
    }
}

/// What [`Uma`](crate::Uma)'s `call` does after [`Pipeline::start`].
///
/// Two words: the answers that carry something are boxed, so that the common [`Pass`](Self::Pass)
/// is not moved around as a few hundred bytes of an enum sized for a [`Pending`].
pub(crate) enum Flow<R> {
    /// Call the inner service with the request (which carries a principal when allowed).
    Pass,
    /// Answer with the layer's own response; the inner service is not called.
    Respond(Box<Response<R>>),
    /// Finish with [`Pending::run`], then call the inner service or answer.
    Pending(Box<Pending>),
}

/// A request that waits for the AS: what it needs (owned), and where the asynchronous part
/// starts.
pub(crate) struct Pending {
    span: Span,
    need: Protected<'static>,
    enforcement: Enforcement,
    token: Option<BearerToken<'static>>,
    fingerprint: Option<Fingerprint>,
    /// The claims the request pushes, when its route pushes some.
    claims: Option<Arc<ClaimValues>>,
    stage: Stage,
}

/// Where [`Pending::run`] starts.
enum Stage {
    /// No route matches the normalised path: ask the AS for the resource whose `uris` match
    /// it (lazy paths); `need` is a placeholder until then.
    Lazy(String),
    /// The resource is named, and the layer knows no id for the name: look it up at the AS.
    Lookup,
    /// The token has no cached answer: introspect it (or verify it) through the cache.
    Check(String),
    /// Refused already, in enforcing mode: no token, or a cached answer (from `cache`) that
    /// does not grant the request, for `reason`. Ask for a ticket.
    Ticket {
        id: String,
        reason: &'static str,
        cache: Option<CacheSource>,
    },
}

impl Pipeline {
    pub(crate) fn new(parts: Parts) -> Self {
        Self {
            unrouted: Enforcement::unrouted(parts.enforcement, parts.resolver.may_enforce()),
            mode: parts.enforcement,
            unmapped: parts.unmapped,
            method_override: parts.method_override,
            resolver: parts.resolver,
            lazy: parts.lazy,
            exchange: parts.exchange,
            registry: parts.registry,
            realm: parts.realm,
            as_uri: parts.as_uri,
            metadata: parts.metadata,
            rpt: Arc::new(RptCheck {
                client: Arc::clone(&parts.client),
                #[cfg(feature = "jwt")]
                validation: parts.rpt_validation,
                #[cfg(feature = "jwt")]
                jwt: parts.jwt,
            }),
            client: parts.client,
            gate: parts.gate,
            cache: parts.cache,
            scope: parts.scope,
            clock: parts.clock,
            rules: parts.rules,
            meter: DecisionMeter {
                allowed: crate::metrics::HotCounter::allowed_decisions(),
                tenant: parts.tenant,
            },
        }
    }

    /// The decision keys of this layer's tenant, if any.
    pub(crate) fn realm(&self) -> &str {
        &self.realm
    }

    pub(crate) fn as_uri(&self) -> &str {
        &self.as_uri
    }

    pub(crate) fn metadata(&self) -> Option<&crate::metadata::ResourceMetadataDocument> {
        self.metadata.as_ref()
    }

    pub(crate) fn enforcement(&self) -> EnforcementMode {
        self.mode
    }

    /// The resource map that decides, unless a resolver of the user's replaces it.
    #[cfg(feature = "axum")]
    pub(crate) fn map(&self) -> Option<&crate::ResourceMap> {
        match &self.resolver {
            Resolver::Map(map) => Some(map),
            Resolver::Custom(_) => None,
        }
    }

    pub(crate) fn cache(&self) -> &IntrospectionCache {
        &self.cache
    }

    pub(crate) fn registry(&self) -> &ResourceRegistry {
        &self.registry
    }

    /// The gate's state, and the resources the AS forgot that are not recovered yet.
    pub(crate) fn as_health(&self) -> AsHealth {
        let unknown = self.registry.resync().unknown_resources();
        self.gate.health().with_unknown_resources(unknown)
    }

    /// Forgets the cached answer for `token`; what is left is telling the fleet, when the
    /// cache shares its entries (feature `redis`).
    pub(crate) fn forget_token(&self, token: &str) -> Option<crate::cache::Forgetting> {
        self.cache.forget(&self.scope, token)
    }

    /// The synchronous part, for every request: decides it at once when it can (a cached
    /// answer, or no AS call needed), else says what to wait for. A request let through with
    /// a granting RPT gets its [`UmaPrincipal`] here.
    pub(crate) fn start<B, R: Default>(&self, req: &mut Request<B>) -> Flow<R> {
        // Before anything reads the method, on every route and in every mode: refuse, or
        // rewrite to, a method override.
        let refused_override = crate::method_override::apply(self.method_override, req).err();
        let span = tracing::debug_span!(
            "uma.authorize",
            http.method = %req.method(),
            url.path = %req.uri().path(),
            uma.resource_id = field::Empty,
            uma.scopes = field::Empty,
            uma.decision = field::Empty,
            cache.hit = field::Empty,
            cache.source = field::Empty,
            token.fingerprint = field::Empty,
        );
        match refused_override {
            Some(why) => {
                let why = Why::new("method_override").text(why);
                let refused = Verdict::Refuse(Refusal::BadRequest);
                end(&self.meter, &span, req, &Facts::default(), refused, &why)
            }
            None => self.evaluate(&span, req),
        }
    }

    /// [`start`](Self::start) after the method override.
    fn evaluate<B, R: Default>(&self, span: &Span, req: &mut Request<B>) -> Flow<R> {
        let done =
            |facts: &Facts<'_>, verdict, why| end(&self.meter, span, req, facts, verdict, &why);
        let none = Facts::default();
        let layer = Enforcement::of(self.mode, None);
        if let Some(outcome) = layer.unchecked() {
            return done(&none, Verdict::Pass(outcome), Why::new("disabled"));
        }
        let need = match self
            .resolver
            .resolve(req.method(), req.uri().path(), req.headers())
        {
            Ok(Resolved::Protected(need)) => need,
            Ok(Resolved::Public) => {
                return done(&none, Verdict::Pass(Outcome::Public), Why::new("public"));
            }
            Ok(Resolved::Unmapped) => {
                if let Some(flow) = self.lazy_pending(span, req, layer) {
                    return flow;
                }
                return done(&none, self.unmapped.verdict(layer), Why::new("no_route"));
            }
            // A route whose resource the AS does not have: denied as an unknown resource
            // name is, whatever `Unmapped` says, and not looked up by lazy paths.
            Ok(Resolved::Forbidden) => {
                let verdict = layer.apply(Refusal::Unmapped);
                return done(&none, verdict, Why::new("unknown_resource"));
            }
            Ok(Resolved::MethodNotAllowed { allow, enforcement }) => {
                let verdict =
                    Enforcement::of(self.mode, enforcement).apply(Refusal::MethodNotAllowed(allow));
                return done(&none, verdict, Why::new("method_not_listed"));
            }
            // Its route is not known, so neither is its mode.
            Err(e) => {
                let verdict = self.unrouted.apply(Refusal::BadRequest);
                return done(&none, verdict, Why::path(e));
            }
        };
        let enforcement = Enforcement::of(self.mode, need.enforcement);
        let mut facts = Facts {
            scopes: &need.scopes,
            ..Facts::default()
        };
        if let Some(outcome) = enforcement.unchecked() {
            return done(&facts, Verdict::Pass(outcome), Why::new("disabled"));
        }
        let claims = match need.claims.as_ref().map(|p| pushed(req, p)).transpose() {
            Ok(claims) => claims.map(Arc::new),
            Err(Unpushable::BodyUnread) => {
                tracing::error!(
                    "the route pushes claims from the JSON body, which no ClaimBodyLayer read: \
                     put tower_uma::resources::ClaimBodyLayer outside the UmaLayer"
                );
                let verdict = enforcement.apply(Refusal::Misconfigured);
                return done(&facts, verdict, Why::new("body_unread"));
            }
            Err(Unpushable::Media(why)) => {
                let verdict = enforcement.apply(Refusal::UnsupportedMediaType);
                return done(&facts, verdict, Why::new("unusable_body").text(why));
            }
            Err(Unpushable::RespelledHeader) => {
                let verdict = enforcement.apply(Refusal::BadRequest);
                return done(&facts, verdict, Why::new("respelled_claim_header"));
            }
            Err(Unpushable::RespelledParameter) => {
                let verdict = enforcement.apply(Refusal::BadRequest);
                return done(&facts, verdict, Why::new("respelled_claim_parameter"));
            }
        };
        let token = match bearer_from_headers(req.headers()) {
            Bearer::Token(t) => Some(t),
            Bearer::Absent => None,
            Bearer::Malformed(why) => {
                let verdict = enforcement.apply(Refusal::BadRequest);
                return done(&facts, verdict, Why::new("malformed_credentials").text(why));
            }
        };
        // The token is hashed once per request, here.
        let fingerprint = token.as_ref().map(BearerToken::fingerprint);
        facts.token = fingerprint;
        let pending = |stage| {
            Flow::Pending(Box::new(Pending {
                span: span.clone(),
                need: need.clone().into_owned(),
                enforcement,
                token: token.clone().map(BearerToken::into_owned),
                fingerprint,
                claims: claims.clone(),
                stage,
            }))
        };
        let Some(id) = self.known_id(&need) else {
            return pending(Stage::Lookup);
        };
        facts.resource = Some(&*id);
        facts.resource_is_id = true;
        // The hit path: a cached answer is decided on at once, with no future of the layer's
        // own, and a refusal is decided once.
        let reason = match (&token, fingerprint) {
            (Some(_), Some(digest)) => {
                let Some((cached, now)) = self.peek(&digest) else {
                    return pending(Stage::Check(id.into_owned()));
                };
                facts.cache = Some(cached.source);
                match self.decide(&cached, &id, &need, claims.as_deref(), now) {
                    Ok(granted) => {
                        let principal = UmaPrincipal::new(cached.value, &id, granted, digest);
                        let why = Why::new("granted");
                        let flow = end(
                            &self.meter,
                            span,
                            req,
                            &facts,
                            Verdict::Pass(Outcome::Allowed),
                            &why,
                        );
                        req.extensions_mut().insert(principal);
                        return flow;
                    }
                    // Permission exchange waits for the AS.
                    Err(_) if self.exchange.is_some() => {
                        return pending(Stage::Check(id.into_owned()));
                    }
                    Err(denial) => denial.as_str(),
                }
            }
            _ => "no_token",
        };
        match enforcement.apply(Refusal::Unauthorised) {
            Verdict::Refuse(_) => {
                let cache = facts.cache;
                let stage = Stage::Ticket {
                    id: id.into_owned(),
                    reason,
                    cache,
                };
                pending(stage)
            }
            passed @ Verdict::Pass(_) => done(&facts, passed, Why::new(reason)),
        }
    }

    /// A request no route matches, when lazy paths are on: the asynchronous part asks the AS
    /// for the path's resource. `None` when lazy paths are off.
    fn lazy_pending<B, R: Default>(
        &self,
        span: &Span,
        req: &Request<B>,
        layer: Enforcement,
    ) -> Option<Flow<R>> {
        self.lazy.as_ref()?;
        // The map normalised it already, or refused it.
        let path = normalize_path(req.uri().path()).ok()?.as_str().to_owned();
        let token = match bearer_from_headers(req.headers()) {
            Bearer::Token(t) => Some(t),
            Bearer::Absent => None,
            Bearer::Malformed(why) => {
                let verdict = layer.apply(Refusal::BadRequest);
                let why = Why::new("malformed_credentials").text(why);
                return Some(end(
                    &self.meter,
                    span,
                    req,
                    &Facts::default(),
                    verdict,
                    &why,
                ));
            }
        };
        let fingerprint = token.as_ref().map(BearerToken::fingerprint);
        Some(Flow::Pending(Box::new(Pending {
            span: span.clone(),
            need: Protected {
                resource: Cow::Owned(ResourceRef::Id(String::new())),
                bound: None,
                scopes: Cow::Owned(Vec::new()),
                scope_mode: ScopeMode::All,
                enforcement: None,
                claims: None,
            },
            enforcement: layer,
            token: token.map(BearerToken::into_owned),
            fingerprint,
            claims: None,
            stage: Stage::Lazy(path),
        })))
    }

    /// Lazy paths: the resource the AS has for the path of a [`Stage::Lazy`] request, which
    /// becomes an ordinary check of that resource; other stages are returned as they are.
    ///
    /// # Errors
    ///
    /// How the request ends when the AS has no resource for the path, or cannot be asked.
    async fn resolve_lazy(
        &self,
        mut pending: Pending,
        method: &http::Method,
    ) -> Result<Pending, (Pending, Verdict, Why)> {
        let (Stage::Lazy(path), Some(lazy)) = (&pending.stage, &self.lazy) else {
            return Ok(pending);
        };
        match Box::pin(lazy.resolve(method, path)).await {
            Ok(Some((id, need))) => {
                pending.need = need;
                pending.stage = Stage::Check(id);
                Ok(pending)
            }
            Ok(None) => {
                let verdict = self.unmapped.verdict(pending.enforcement);
                Err((pending, verdict, Why::new("no_route")))
            }
            Err(e) => {
                let verdict = pending.enforcement.apply(Refusal::Unreachable);
                Err((pending, verdict, Why::new("lazy_path_failed").error(e)))
            }
        }
    }

    /// The id of the resource `need` names, when known without an AS call: bound at build for
    /// the names the map declares, else from the registry (its lock, a copy of the id).
    fn known_id<'n>(&self, need: &'n Protected<'_>) -> Option<Cow<'n, str>> {
        if let Some(id) = need.bound.and_then(|b| self.registry.bound(b)) {
            return Some(Cow::Borrowed(id));
        }
        match &*need.resource {
            ResourceRef::Id(id) => Some(Cow::Borrowed(id.as_str())),
            ResourceRef::Name(name) => self.registry.id(name).map(Cow::Owned),
        }
    }

    /// The cache's answer for a token, if it has one at once, and the time to decide it at:
    /// one reading of the layer's clock serves both.
    fn peek(&self, fingerprint: &Fingerprint) -> Option<(Cached, i64)> {
        let now = self.clock.now_unix();
        let cached = self.cache.peek(&self.scope, fingerprint, now)?;
        Some((cached, now))
    }

    fn decide(
        &self,
        cached: &Cached,
        resource_id: &str,
        need: &Protected<'_>,
        claims: Option<&ClaimValues>,
        now: i64,
    ) -> Result<crate::principal::Granted, crate::decision::Denial> {
        let requirement = Requirement {
            resource_id,
            scopes: &need.scopes,
            mode: need.scope_mode,
            claims: claims.unwrap_or(&NO_CLAIMS),
        };
        decide(&cached.value, requirement, now, self.rules)
    }

    /// The asynchronous part of [`Pending::run`]: what the request waited for, and how it
    /// ends.
    async fn finish<B, R: Default>(
        &self,
        pending: Pending,
        mut req: Request<B>,
    ) -> Result<Request<B>, Response<R>> {
        let pending = match self.resolve_lazy(pending, req.method()).await {
            Ok(pending) => pending,
            Err((pending, verdict, why)) => {
                let facts = Facts {
                    token: pending.fingerprint,
                    ..Facts::default()
                };
                let (method, path) = (req.method(), req.uri().path());
                conclude(
                    &self.meter,
                    &pending.span,
                    method,
                    path,
                    &facts,
                    verdict,
                    &why,
                )?;
                return Ok(req);
            }
        };
        let mut settled = Settled::default();
        let (id, (verdict, why)) = match self.resource_id(&pending).await {
            Ok(id) => {
                let ended = self.settle(&pending, &id, &mut settled).await;
                (Some(id), ended)
            }
            Err(ended) => (None, ended),
        };
        let facts = Facts {
            resource: id.as_deref().or_else(|| pending.need.name()),
            resource_is_id: id.is_some(),
            scopes: &pending.need.scopes,
            token: pending.fingerprint,
            cache: settled.cache,
        };
        conclude(
            &self.meter,
            &pending.span,
            req.method(),
            req.uri().path(),
            &facts,
            verdict,
            &why,
        )?;
        if let Some(principal) = settled.principal {
            req.extensions_mut().insert(principal);
        }
        Ok(req)
    }

    /// The resource's id: known already, or looked up at the AS by name.
    ///
    /// # Errors
    ///
    /// How the request ends when the AS has no resource of that name, or cannot be asked.
    async fn resource_id(&self, pending: &Pending) -> Result<String, (Verdict, Why)> {
        let name = match &pending.stage {
            Stage::Check(id) | Stage::Ticket { id, .. } => return Ok(id.clone()),
            Stage::Lookup | Stage::Lazy(_) => pending.need.name().unwrap_or_default(),
        };
        match Box::pin(self.registry.lookup(name)).await {
            Ok(Some(id)) => Ok(id),
            // A resolver named a resource the AS does not have: nothing can grant it.
            Ok(None) => Err((
                pending.enforcement.apply(Refusal::Unmapped),
                Why::new("unknown_resource"),
            )),
            // The AS call's failure was logged by the layer's gate.
            Err(e) => Err((
                pending.enforcement.apply(Refusal::Unreachable),
                Why::new("lookup_failed").error(e),
            )),
        }
    }

    /// Checks the token through the cache and decides, unless the request was refused
    /// already; asks for a ticket when enforcing mode refuses.
    async fn settle(&self, pending: &Pending, id: &str, settled: &mut Settled) -> (Verdict, Why) {
        let enforcement = pending.enforcement;
        let reason = match (&pending.stage, &pending.token, pending.fingerprint) {
            // Refused on the synchronous path, in enforcing mode.
            (Stage::Ticket { reason, cache, .. }, _, _) => {
                settled.cache = *cache;
                *reason
            }
            (_, Some(token), Some(digest)) => {
                let cached = match self.fetch(token, &digest).await {
                    Ok(cached) => cached,
                    Err(e) => {
                        let verdict = enforcement.apply(Refusal::Unreachable);
                        return (verdict, Why::new("introspection_failed").error(e));
                    }
                };
                settled.cache = Some(cached.source);
                let now = self.clock.now_unix();
                let claims = pending.claims.as_deref();
                match self.decide(&cached, id, &pending.need, claims, now) {
                    Ok(granted) => {
                        let principal = UmaPrincipal::new(cached.value, id, granted, digest);
                        settled.principal = Some(principal);
                        return (Verdict::Pass(Outcome::Allowed), Why::new("granted"));
                    }
                    Err(denial) if self.exchange.is_some() => {
                        let base = Arc::clone(&cached.value);
                        let exchanged = self.exchanged(pending, token, digest, id, &base);
                        match Box::pin(exchanged).await {
                            Exchange::Granted(principal) => {
                                settled.principal = Some(principal);
                                return (Verdict::Pass(Outcome::Allowed), Why::new("exchanged"));
                            }
                            Exchange::Ended(verdict, why) => return (verdict, why),
                            // Keycloak does not accept the token either: the UMA flow.
                            Exchange::Unaccepted => denial.as_str(),
                        }
                    }
                    Err(denial) => denial.as_str(),
                }
            }
            _ => "no_token",
        };
        if let passed @ Verdict::Pass(_) = enforcement.apply(Refusal::Unauthorised) {
            return (passed, Why::new(reason));
        }
        // Enforcing: ask for a ticket. Boxed: it is rare, and keeping it out of this future
        // keeps the future (moved into its box on every request) small.
        // A resource the AS forgot is registered (or looked up) again, and the ticket asked
        // once more (crate::resync).
        let need = &pending.need;
        let ticket = crate::resync::ticket(
            &self.client,
            &self.registry,
            &need.resource,
            id,
            &need.scopes,
            pending.claims.as_deref().unwrap_or(&NO_CLAIMS),
        );
        let ticket = match Box::pin(ticket).await {
            Ok(ticket) => ticket,
            Err(e) => {
                let verdict = enforcement.apply(Refusal::Unreachable);
                return (verdict, Why::new("ticket_failed").error(e));
            }
        };
        let resource_metadata = self
            .metadata
            .as_ref()
            .and_then(crate::metadata::ResourceMetadataDocument::challenge_param);
        match render_challenge(&self.realm, &self.as_uri, &ticket, resource_metadata) {
            Ok(header) => (
                Verdict::Refuse(Refusal::Challenged(header)),
                Why::new(reason),
            ),
            Err(e) => {
                tracing::warn!(error = %e, "the AS issued a ticket that cannot be sent in a header");
                let verdict = enforcement.apply(Refusal::Unreachable);
                (verdict, Why::new("ticket_unusable").error(e))
            }
        }
    }

    /// Permission exchange: the permissions the AS gives `token` for the request, decided
    /// like an RPT's; a refusal is `403` without a ticket, a failure `403` + `Warning`, a token
    /// the AS does not accept goes on to the UMA challenge. `base` is the token's
    /// introspection result (inactive for a plain access token under Keycloak's RPT hint).
    async fn exchanged(
        &self,
        pending: &Pending,
        token: &BearerToken<'_>,
        digest: Fingerprint,
        id: &str,
        base: &Introspection,
    ) -> Exchange {
        let enforcement = pending.enforcement;
        let Some(exchanger) = &self.exchange else {
            return Exchange::Ended(enforcement.apply(Refusal::Denied), Why::new("no_exchange"));
        };
        let need = &pending.need;
        let answer = exchanger
            .exchange(
                token,
                digest,
                id,
                &need.scopes,
                pending.claims.as_ref(),
                base,
            )
            .await;
        let answer = match answer {
            Ok(answer) => answer,
            Err(e) => {
                let verdict = enforcement.apply(Refusal::Unreachable);
                return Exchange::Ended(verdict, Why::new("exchange_failed").error(e));
            }
        };
        let intro = match &*answer {
            Exchanged::Granted(intro) => Arc::clone(intro),
            Exchanged::Denied => {
                let verdict = enforcement.apply(Refusal::Denied);
                return Exchange::Ended(verdict, Why::new("exchange_denied"));
            }
            Exchanged::Unaccepted => return Exchange::Unaccepted,
        };
        let requirement = Requirement {
            resource_id: id,
            scopes: &need.scopes,
            mode: need.scope_mode,
            claims: pending.claims.as_deref().unwrap_or(&NO_CLAIMS),
        };
        match decide(&intro, requirement, self.clock.now_unix(), self.rules) {
            Ok(granted) => {
                let principal = UmaPrincipal::new(Arc::clone(&intro), id, granted, digest);
                Exchange::Granted(principal)
            }
            // Some permissions, not enough of them (all scopes were needed).
            Err(_) => Exchange::Ended(
                enforcement.apply(Refusal::Denied),
                Why::new("exchange_denied"),
            ),
        }
    }

    /// The cache's answer for a token, from the AS (or the JWT check) on a miss.
    async fn fetch(
        &self,
        token: &BearerToken<'_>,
        fingerprint: &Fingerprint,
    ) -> Result<Cached, CallError> {
        self.cache
            .get_or_fetch_by_fingerprint(&self.scope, fingerprint, || {
                // Copied only on a miss: a hit copies nothing.
                let rpt = Arc::clone(&self.rpt);
                let token = token.to_rpt();
                async move { rpt.check(&token).await }
            })
            .await
    }
}

/// How a permission exchange ended.
enum Exchange {
    /// Granted, with the principal of the exchanged permissions.
    Granted(UmaPrincipal),
    /// Refused, or failed.
    Ended(Verdict, Why),
    /// The AS does not accept the token (expired, revoked, not one of its tokens).
    Unaccepted,
}

/// What the asynchronous part learnt on its way.
#[derive(Default)]
struct Settled {
    cache: Option<CacheSource>,
    principal: Option<UmaPrincipal>,
}

impl Pending {
    /// Waits for the AS and ends the request: `Ok` with the request to pass to the inner
    /// service, or `Err` with the layer's response.
    pub(crate) fn run<B, R>(
        self,
        pipeline: Arc<Pipeline>,
        req: Request<B>,
    ) -> impl Future<Output = Result<Request<B>, Response<R>>> + Send + 'static
    where
        B: Send + 'static,
        R: Default + Send + 'static,
    {
        let span = self.span.clone();
        async move { pipeline.finish(self, req).await }.instrument(span)
    }
}

/// Why the claims a route pushes cannot be read from a request.
///
/// [`ClaimBodyLayer`]: crate::resources::ClaimBodyLayer
enum Unpushable {
    /// The route reads claims from a JSON body that no [`ClaimBodyLayer`] read: `500`.
    BodyUnread,
    /// The route reads claims from the body, which the upstream may read otherwise than
    /// the claims would (see [`unusable_body`]): `415`.
    Media(&'static str),
    /// The request has a header the claims read under another spelling as well, which
    /// CGI-style upstreams read as the same header: `400`.
    RespelledHeader,
    /// The query spells a parameter the claims read so that some upstreams read another
    /// value for it (another case, `.` for `_`, `org[]`, a `;` separator): `400`.
    RespelledParameter,
}

/// The claims `pushing` reads from `req`.
fn pushed<B>(req: &Request<B>, pushing: &Pushing) -> Result<ClaimValues, Unpushable> {
    let reads_body = pushing.claims.reads_body();
    if reads_body && let Some(why) = unusable_body(req) {
        tracing::debug!(
            why,
            "the body cannot be read as the claims would read it: 415"
        );
        return Err(Unpushable::Media(why));
    }
    if let Some(name) = pushing.claims.respelled_header(req.headers()) {
        tracing::debug!(
            header = name,
            "a claimed header also comes under another spelling: 400"
        );
        return Err(Unpushable::RespelledHeader);
    }
    if let Some(name) = pushing.claims.respelled_parameter(req.uri().query()) {
        tracing::debug!(
            parameter = %name,
            "a claimed query parameter is spelled so that upstreams may read another value: 400"
        );
        return Err(Unpushable::RespelledParameter);
    }
    let body = match req.extensions().get::<BodyRead>() {
        Some(read) => read.0.as_deref(),
        None if reads_body && is_json(req.headers()) => return Err(Unpushable::BodyUnread),
        None => None,
    };
    // The route matched, so the path normalises.
    let normalized = normalize_path(req.uri().path()).ok();
    let path = normalized
        .as_ref()
        .map_or_else(|| req.uri().path(), |p| p.as_str());
    Ok(pushing.claims.resolve(&ClaimRequest {
        method: req.method(),
        uri: req.uri(),
        path,
        headers: req.headers(),
        params: &pushing.params,
        body,
    }))
}

/// [`conclude`] for the synchronous part: the flow that follows.
fn end<B, R: Default>(
    meter: &DecisionMeter,
    span: &Span,
    req: &Request<B>,
    facts: &Facts<'_>,
    verdict: Verdict,
    why: &Why,
) -> Flow<R> {
    match conclude(
        meter,
        span,
        req.method(),
        req.uri().path(),
        facts,
        verdict,
        why,
    ) {
        Ok(()) => Flow::Pass,
        Err(response) => Flow::Respond(Box::new(response)),
    }
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("realm", &self.realm)
            .field("as_uri", &self.as_uri)
            .field("enforcement", &self.mode)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
