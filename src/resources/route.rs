//! [`Route`]: one path template, the resource it protects and the scopes each method needs;
//! [`ResourceRef`], [`ResourceDecl`], [`EnforcementMode`] and [`ScopeMode`].

use super::*;

/// Which resource a route protects.
///
/// # Example
///
/// ```
/// use tower_uma::{Route, resources::ResourceRef};
///
/// let by_id = Route::new("/invoices/{id}").resource(ResourceRef::Id("4d3c9f".to_owned()));
/// let by_name = Route::new("/albums/{id}").resource_name("albums");
/// # let _ = (by_id, by_name);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResourceRef {
    /// A resource already registered at the authorization server, by its `_id`
    /// ([FedAuthz §3.2](https://docs.kantarainitiative.org/uma/wg/rec-oauth-uma-federated-authz-2.0.html#reg-api)).
    Id(String),
    /// A resource named in a [`ResourceDecl`] (or registered by someone else under that name);
    /// the layer maps the name to its `_id` after registering or looking it up.
    Name(String),
}

/// A resource description the layer declares, and registers at the authorization server at
/// start-up when it is missing
/// ([FedAuthz §3.1](https://docs.kantarainitiative.org/uma/wg/rec-oauth-uma-federated-authz-2.0.html#resource-set-desc)).
///
/// It serialises as the resource description JSON object: optional fields that are `None` are
/// left out.
///
/// # Example
///
/// ```
/// use tower_uma::ResourceDecl;
///
/// let decl = ResourceDecl::new("albums", ["view", "edit"])
///     .with_type("https://photoz.test/album")
///     .with_description("Photo albums");
/// assert_eq!(decl.resource_scopes, ["view", "edit"]);
/// assert_eq!(decl.icon_uri, None);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ResourceDecl {
    /// The resource's name, unique among the resources this layer declares.
    pub name: String,
    /// A string identifying the semantics of the resource (`type`), usually a URI.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub r#type: Option<String>,
    /// A human-readable description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A URI for a graphic icon representing the resource.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icon_uri: Option<String>,
    /// The scopes the resource can be accessed with (`resource_scopes`, required, non-empty).
    pub resource_scopes: Vec<String>,
    /// The resource owner, for authorization servers that take one at registration
    /// (`uma-test-as`); not part of the UMA resource description. Keycloak 26 ignores it when
    /// the resource server registers with its client-credentials PAT: the resource server
    /// owns what it registers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

impl ResourceDecl {
    /// A declaration with a name and its resource scopes, and no optional fields.
    pub fn new(
        name: impl Into<String>,
        scopes: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self {
            name: name.into(),
            resource_scopes: scopes.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    /// Sets the resource `type`. Defaults to none.
    #[must_use]
    pub fn with_type(mut self, r#type: impl Into<String>) -> Self {
        self.r#type = Some(r#type.into());
        self
    }

    /// Sets the human-readable `description`. Defaults to none.
    #[must_use]
    pub fn with_description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// Sets the `icon_uri`. Defaults to none.
    #[must_use]
    pub fn with_icon_uri(mut self, icon_uri: impl Into<String>) -> Self {
        self.icon_uri = Some(icon_uri.into());
        self
    }

    /// Sets the resource `owner`. Defaults to none (the owner is whoever the authorization
    /// server makes of the PAT).
    #[must_use]
    pub fn with_owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = Some(owner.into());
        self
    }
}

/// What the layer does with its decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum EnforcementMode {
    /// Requests are let through only when the RPT grants what they need; unmapped requests are
    /// denied.
    #[default]
    Enforcing,
    /// Requests are decided and the decision is logged, but every request is let through;
    /// except, when some route may be enforcing, requests whose method or path spelling is
    /// refused (their route is not known).
    Permissive,
    /// No check at all: no token is read and the authorization server is not called. As a
    /// layer's mode, it admits no route overriding it (the builder refuses them), and no
    /// resolver is asked: an `Enforcing` answer of a [`ResourceResolver`] has no effect under
    /// a disabled layer.
    Disabled,
}

crate::error::named_setting!(EnforcementMode { Enforcing => "enforcing", Permissive => "permissive", Disabled => "disabled" });

/// How the scopes a request needs are matched against the scopes an RPT grants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ScopeMode {
    /// Every required scope must be granted.
    #[default]
    All,
    /// At least one of the required scopes must be granted.
    Any,
}

/// One mapped path template: which resource it protects and which scopes each method needs.
///
/// Routes are checked when they are added to a [`ResourceMap`]; see the
/// [matching rules](ResourceMap#matching-rules) for the template grammar, precedence and
/// scope rules.
///
/// # Examples
///
/// Scopes per method, with `HEAD` following `GET`:
///
/// ```
/// use http::{HeaderMap, Method};
/// use tower_uma::{ResourceMap, Route, resources::Resolution};
///
/// let map = ResourceMap::new().route(
///     Route::new("/invoices/{id}")
///         .resource_id("4d3c9f")
///         .scopes(Method::GET, ["read"])
///         .scopes(Method::POST, ["write"]),
/// );
/// let head = map.resolve_request(&Method::HEAD, "/invoices/42", &HeaderMap::new())?;
/// assert!(matches!(head, Resolution::Protected { scopes, .. } if scopes == ["read"]));
/// # Ok::<(), tower_uma::resources::PathError>(())
/// ```
///
/// The HTTP method as the scope, with `ANY` matching and a per-route enforcement mode:
///
/// ```
/// use http::{HeaderMap, Method};
/// use tower_uma::{EnforcementMode, ResourceMap, Route, resources::{Resolution, ScopeMode}};
///
/// let map = ResourceMap::new().route(
///     Route::new("/reports/*")
///         .resource_name("reports")
///         .method_as_scope()
///         .scope_mode(ScopeMode::Any)
///         .enforcement(EnforcementMode::Permissive),
/// );
/// match map.resolve_request(&Method::DELETE, "/reports/2024/q1", &HeaderMap::new())? {
///     Resolution::Protected { scopes, scope_mode, enforcement, .. } => {
///         assert_eq!(scopes, ["DELETE"]);
///         assert_eq!(scope_mode, ScopeMode::Any);
///         assert_eq!(enforcement, Some(EnforcementMode::Permissive));
///     }
///     other => panic!("unexpected {other:?}"),
/// }
/// # Ok::<(), tower_uma::resources::PathError>(())
/// ```
#[derive(Clone)]
#[must_use]
pub struct Route {
    pub(super) template: String,
    pub(super) public: bool,
    pub(super) public_methods: Vec<Method>,
    pub(super) resource: Option<ResourceRef>,
    pub(super) decl: Option<ResourceDecl>,
    pub(super) methods: Vec<(Method, Vec<String>)>,
    pub(super) any_method: Option<Vec<String>>,
    method_as_scope: bool,
    scope_mode: ScopeMode,
    pub(super) enforcement: Option<EnforcementMode>,
    pub(super) resolver: Option<Arc<dyn ResourceResolver>>,
    /// The id of the resource named in `resource`, bound by the layer once the registry knew
    /// it (see [`ResourceMap::bind`]).
    pub(super) bound: Option<Binding>,
    /// The claims pushed to the AS for this route's requests.
    pub(super) claims: Option<Arc<PushedClaims>>,
}

impl fmt::Debug for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Route")
            .field("template", &self.template)
            .field("public", &self.public)
            .field("public_methods", &self.public_methods)
            .field("resource", &self.resource)
            .field("decl", &self.decl)
            .field("methods", &self.methods)
            .field("any_method", &self.any_method)
            .field("method_as_scope", &self.method_as_scope)
            .field("scope_mode", &self.scope_mode)
            .field("enforcement", &self.enforcement)
            .field("resolver", &self.resolver.as_ref().map(|_| "<resolver>"))
            .finish()
    }
}

impl Route {
    /// A protected route for a path template such as `/albums/{id}` or `/static/*`.
    ///
    /// The template is checked by [`ResourceMap::validate`]; the route needs a resource (or a
    /// [`resolver`](Self::resolver)) and at least one way of finding scopes.
    pub fn new(template: &str) -> Self {
        Self {
            template: template.to_owned(),
            public: false,
            public_methods: Vec::new(),
            resource: None,
            decl: None,
            methods: Vec::new(),
            any_method: None,
            method_as_scope: false,
            scope_mode: ScopeMode::default(),
            enforcement: None,
            resolver: None,
            bound: None,
            claims: None,
        }
    }

    /// A route whose `GET`, `HEAD` and `OPTIONS` requests pass without any token; widen it
    /// with [`public_methods`](Self::public_methods).
    ///
    /// Other methods are decided by the other routes matching the path (the upstream may fall
    /// through to their handlers), or refused with `405` when none does: see
    /// [public routes](ResourceMap#public-routes). A public route may not also carry a
    /// resource, scopes or a resolver.
    ///
    /// # Example
    ///
    /// ```
    /// use http::{HeaderMap, Method};
    /// use tower_uma::{ResourceMap, Route, resources::Resolution};
    ///
    /// let map = ResourceMap::new().route(Route::public("/static/*"));
    /// let headers = HeaderMap::new();
    /// let get = map.resolve_request(&Method::GET, "/static/app.js", &headers)?;
    /// assert_eq!(get, Resolution::Public);
    /// let post = map.resolve_request(&Method::POST, "/static/app.js", &headers)?;
    /// assert!(matches!(post, Resolution::MethodNotAllowed { .. }));
    /// # Ok::<(), tower_uma::resources::PathError>(())
    /// ```
    pub fn public(template: &str) -> Self {
        Self {
            public: true,
            ..Self::new(template)
        }
    }

    /// Methods whose requests pass without a token, besides those of [`public`](Self::public)
    /// (`GET`, `HEAD`, `OPTIONS`). `HEAD` follows `GET`.
    ///
    /// On a protected route, these methods are public and the others keep their scopes, for
    /// example `OPTIONS` for CORS preflight requests, which browsers send without credentials.
    /// A method may not be both public and given scopes. Defaults to none.
    ///
    /// # Example
    ///
    /// ```
    /// use http::{HeaderMap, Method};
    /// use tower_uma::{ResourceMap, Route, resources::Resolution};
    ///
    /// let map = ResourceMap::new()
    ///     .route(Route::public("/hooks/*").public_methods([Method::POST]))
    ///     .route(
    ///         Route::new("/albums/{id}")
    ///             .resource_id("albums")
    ///             .scopes(Method::GET, ["view"])
    ///             .public_methods([Method::OPTIONS]),
    ///     );
    /// let headers = HeaderMap::new();
    /// let post = map.resolve_request(&Method::POST, "/hooks/build", &headers)?;
    /// assert_eq!(post, Resolution::Public);
    /// let preflight = map.resolve_request(&Method::OPTIONS, "/albums/1", &headers)?;
    /// assert_eq!(preflight, Resolution::Public);
    /// # Ok::<(), tower_uma::resources::PathError>(())
    /// ```
    pub fn public_methods(mut self, methods: impl IntoIterator<Item = Method>) -> Self {
        for method in methods {
            if !self.public_methods.contains(&method) {
                self.public_methods.push(method);
            }
        }
        self
    }

    /// Protects a resource registered at the authorization server under this `_id`.
    ///
    /// Replaces any earlier resource or declaration. Defaults to none.
    pub fn resource_id(self, id: impl Into<String>) -> Self {
        self.resource(ResourceRef::Id(id.into()))
    }

    /// Protects a resource known by name; the layer looks its `_id` up at start-up.
    ///
    /// Replaces any earlier resource or declaration. Defaults to none.
    pub fn resource_name(self, name: impl Into<String>) -> Self {
        self.resource(ResourceRef::Name(name.into()))
    }

    /// Protects the given resource.
    ///
    /// Replaces any earlier resource or declaration. Defaults to none.
    pub fn resource(mut self, resource: ResourceRef) -> Self {
        self.resource = Some(resource);
        self.decl = None;
        self
    }

    /// Protects the declared resource, which the layer registers at start-up when the
    /// authorization server does not have it yet ([`ResourceRef::Name`] of `decl.name`).
    ///
    /// Scopes given to this route must be among `decl.resource_scopes`. Replaces any earlier
    /// resource or declaration. Defaults to none.
    pub fn declare(mut self, decl: ResourceDecl) -> Self {
        self.resource = Some(ResourceRef::Name(decl.name.clone()));
        self.decl = Some(decl);
        self
    }

    /// The scopes a request with this method needs.
    ///
    /// Calling it again for the same method replaces the earlier scopes; duplicate scopes are
    /// dropped. Defaults to no entry for any method.
    pub fn scopes(
        mut self,
        method: Method,
        scopes: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        let scopes = collect_scopes(scopes);
        if let Some(entry) = self.methods.iter_mut().find(|(m, _)| *m == method) {
            entry.1 = scopes;
        } else {
            self.methods.push((method, scopes));
        }
        self
    }

    /// The scopes for methods without an entry of their own (after `HEAD` has fallen back to
    /// `GET`).
    ///
    /// Duplicate scopes are dropped. Defaults to none.
    pub fn any_method(mut self, scopes: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.any_method = Some(collect_scopes(scopes));
        self
    }

    /// Uses the method name (`GET`, `DELETE`, …) as the scope for methods with neither an entry
    /// of their own nor [`any_method`](Self::any_method) scopes.
    ///
    /// Defaults to off: such methods are unmapped.
    pub fn method_as_scope(mut self) -> Self {
        self.method_as_scope = true;
        self
    }

    /// How this route's scopes are matched. Defaults to [`ScopeMode::All`].
    pub fn scope_mode(mut self, mode: ScopeMode) -> Self {
        self.scope_mode = mode;
        self
    }

    /// Overrides the layer's enforcement mode for this route. Defaults to the layer's mode.
    ///
    /// A layer in [`EnforcementMode::Disabled`] refuses to build with such overrides; one in
    /// [`EnforcementMode::Permissive`] with an `Enforcing` route refuses every request whose
    /// method or path spelling is refused, whatever its route.
    pub fn enforcement(mut self, mode: EnforcementMode) -> Self {
        self.enforcement = Some(mode);
        self
    }

    /// Lets a resolver decide for requests matching this route, instead of the route's own
    /// resource and scopes; it receives the decoded captures in [`RequestInfo::params`].
    ///
    /// Defaults to none.
    ///
    /// # Example
    ///
    /// One resource per album:
    ///
    /// ```
    /// use http::{HeaderMap, Method};
    /// use tower_uma::{ResourceMap, Route, resources::{RequestInfo, Resolution, ResourceRef}};
    ///
    /// let map = ResourceMap::new().route(Route::new("/albums/{id}/*").resolver(
    ///     |req: &RequestInfo<'_>| match req.param("id") {
    ///         Some(id) => {
    ///             Resolution::protected(ResourceRef::Name(format!("album-{id}")), ["view"])
    ///         }
    ///         None => Resolution::Unmapped,
    ///     },
    /// ));
    /// let headers = HeaderMap::new();
    /// let resolution = map.resolve_request(&Method::GET, "/albums/7/photos/1", &headers)?;
    /// let album_7 = ResourceRef::Name("album-7".to_owned());
    /// assert_eq!(resolution, Resolution::protected(album_7, ["view"]));
    /// # Ok::<(), tower_uma::resources::PathError>(())
    /// ```
    pub fn resolver(mut self, resolver: impl ResourceResolver) -> Self {
        self.resolver = Some(Arc::new(resolver));
        self
    }

    /// Pushes `claims`, read from each request, to the AS with the permission requests of
    /// this route (see [`PushedClaims`]). Empty claims push nothing.
    pub fn push_claims(mut self, claims: PushedClaims) -> Self {
        self.claims = (!claims.is_empty()).then(|| Arc::new(claims));
        self
    }

    /// The scopes for `method`, following the [scope rules](ResourceMap#scopes).
    fn scopes_for(&self, method: &Method) -> Option<Cow<'_, [String]>> {
        let entry = |m: &Method| {
            self.methods
                .iter()
                .find(|(own, _)| own == m)
                .map(|(_, scopes)| scopes)
        };
        let from_head = || {
            (*method == Method::HEAD)
                .then(|| entry(&Method::GET))
                .flatten()
        };
        entry(method)
            .or_else(from_head)
            .or(self.any_method.as_ref())
            .map(|scopes| Cow::Borrowed(scopes.as_slice()))
            .or_else(|| {
                self.method_as_scope
                    .then(|| Cow::Owned(vec![method.as_str().to_owned()]))
            })
    }

    /// Every explicit scope list of this route.
    pub(super) fn scope_lists(&self) -> impl Iterator<Item = &Vec<String>> {
        self.methods
            .iter()
            .map(|(_, scopes)| scopes)
            .chain(self.any_method.as_ref())
    }

    /// Checks the route on its own.
    pub(super) fn check(&self) -> Result<(), ResourceMapError> {
        let template = || self.template.clone();
        for method in self
            .methods
            .iter()
            .map(|(m, _)| m)
            .chain(&self.public_methods)
        {
            check_route_method(method).map_err(|reason| ResourceMapError::InvalidMethod {
                template: template(),
                method: method.as_str().to_owned(),
                reason,
            })?;
        }
        if let Some((method, _)) = self
            .methods
            .iter()
            .find(|(m, _)| self.public_methods.contains(m))
        {
            return Err(ResourceMapError::PublicAndProtectedMethod {
                template: template(),
                method: method.as_str().to_owned(),
            });
        }
        if self.public {
            if self.resource.is_some()
                || self.resolver.is_some()
                || self.method_as_scope
                || self.scope_lists().next().is_some()
            {
                return Err(ResourceMapError::PublicRouteWithRules {
                    template: template(),
                });
            }
            return Ok(());
        }
        if self.resolver.is_none() {
            if self.resource.is_none() {
                return Err(ResourceMapError::MissingResource {
                    template: template(),
                });
            }
            if !self.method_as_scope && self.scope_lists().next().is_none() {
                return Err(ResourceMapError::NoScopes {
                    template: template(),
                });
            }
        }
        if self
            .scope_lists()
            .any(|scopes| scopes.is_empty() || scopes.iter().any(String::is_empty))
        {
            return Err(ResourceMapError::EmptyScope {
                template: template(),
            });
        }
        if let Some(decl) = &self.decl {
            check_decl(decl)?;
        }
        Ok(())
    }

    /// Whether requests with `method` pass without a token: the defaults of a public route,
    /// the [`public_methods`](Self::public_methods), and `HEAD` when `GET` is public and `HEAD`
    /// has no scopes of its own.
    pub(super) fn is_public_for(&self, method: &Method) -> bool {
        let public = |m: &Method| {
            (self.public && PUBLIC_BY_DEFAULT.contains(m)) || self.public_methods.contains(m)
        };
        public(method)
            || (*method == Method::HEAD
                && public(&Method::GET)
                && !self.methods.iter().any(|(m, _)| *m == Method::HEAD))
    }

    /// The methods this route lists, for an `Allow` header: public ones, then those with
    /// scopes; `HEAD` after `GET`.
    pub(super) fn allowed_methods(&self) -> Vec<Method> {
        let mut out: Vec<Method> = Vec::new();
        let defaults = if self.public {
            &PUBLIC_BY_DEFAULT[..]
        } else {
            &[]
        };
        let listed = defaults
            .iter()
            .chain(&self.public_methods)
            .chain(self.methods.iter().map(|(m, _)| m));
        for method in listed {
            let head = (*method == Method::GET).then_some(Method::HEAD);
            add_methods(&mut out, std::iter::once(method.clone()).chain(head));
        }
        out
    }

    /// What this route decides for a request that matched it, borrowing the route's resource
    /// and scopes; `None` when the route does not list the method (no scopes, public or not, no
    /// `any_method`, no `method_as_scope`, no resolver).
    pub(super) fn rule_for<'m>(
        &'m self,
        template: &Template,
        method: &Method,
        path: &NormalizedPath<'_>,
        headers: &HeaderMap,
    ) -> Option<Resolved<'m>> {
        let Some(resolver) = &self.resolver else {
            return self.fixed_rule(method, || template.captures(path.segments()));
        };
        if self.is_public_for(method) {
            return Some(Resolved::Public);
        }
        if self.public {
            return None;
        }
        let params = template.captures(path.segments());
        let mut resolved = Resolved::from(resolver.resolve(&RequestInfo {
            method,
            path: path.as_str(),
            headers,
            params: &params,
        }));
        if let (Resolved::Protected(need), Some(claims)) = (&mut resolved, &self.claims) {
            need.claims = Some(Pushing {
                claims: Arc::clone(claims),
                params,
            });
        }
        Some(resolved)
    }

    /// [`rule_for`](Self::rule_for) of a route without a resolver, whose rule depends on the
    /// method only; `captures` gives the template's parameters for pushed claims.
    pub(super) fn fixed_rule<'m>(
        &'m self,
        method: &Method,
        captures: impl FnOnce() -> Vec<(String, String)>,
    ) -> Option<Resolved<'m>> {
        if self.is_public_for(method) {
            return Some(Resolved::Public);
        }
        if self.public {
            return None;
        }
        let scopes = self.scopes_for(method)?;
        Some(match &self.resource {
            Some(resource) => Resolved::Protected(Protected {
                resource: Cow::Borrowed(resource),
                bound: self.bound.as_ref(),
                scopes,
                scope_mode: self.scope_mode,
                enforcement: self.enforcement,
                claims: self.claims.as_ref().map(|claims| Pushing {
                    claims: Arc::clone(claims),
                    params: captures(),
                }),
            }),
            // Not reached: a valid map gives every protected route without a resolver a
            // resource, and an invalid map resolves nothing.
            None => Resolved::Unmapped,
        })
    }

    /// The refusal of a method this route does not list.
    pub(super) fn method_not_allowed(&self) -> Resolved<'static> {
        Resolved::MethodNotAllowed {
            allow: self.allowed_methods(),
            enforcement: self.enforcement,
        }
    }
}

/// Adds to `allow` the methods of `more` it does not hold yet.
pub(super) fn add_methods(allow: &mut Vec<Method>, more: impl IntoIterator<Item = Method>) {
    for method in more {
        if !allow.contains(&method) {
            allow.push(method);
        }
    }
}

/// The methods a [`Route::public`] route lets through without a token unless widened: the
/// safe methods of RFC 9110 §9.2.1 that browsers and monitors send without credentials.
const PUBLIC_BY_DEFAULT: [Method; 3] = [Method::GET, Method::HEAD, Method::OPTIONS];

pub(super) fn collect_scopes(scopes: impl IntoIterator<Item = impl Into<String>>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for scope in scopes {
        let scope = scope.into();
        if !out.contains(&scope) {
            out.push(scope);
        }
    }
    out
}

fn check_decl(decl: &ResourceDecl) -> Result<(), ResourceMapError> {
    let invalid = |reason| ResourceMapError::InvalidDeclaration {
        name: decl.name.clone(),
        reason,
    };
    if decl.name.is_empty() {
        return Err(invalid("the name is empty"));
    }
    if decl.resource_scopes.is_empty() {
        return Err(invalid("it has no resource scopes"));
    }
    if decl.resource_scopes.iter().any(String::is_empty) {
        return Err(invalid("it has an empty scope name"));
    }
    Ok(())
}
