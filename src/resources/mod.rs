//! From a request to the UMA resource and the scopes it needs: [`ResourceMap`], [`Route`] and
//! the [`ResourceResolver`] trait.
//!
//! A [`ResourceMap`] is a table of path templates. Each [`Route`] names the resource it
//! protects (a registered `_id`, or a [`ResourceDecl`] the layer registers at start-up) and the
//! scopes each HTTP method needs. For each request the layer asks the map for a [`Resolution`]:
//! [`Protected`](Resolution::Protected) (check the RPT for this resource and these scopes),
//! [`Public`](Resolution::Public) (no token needed),
//! [`MethodNotAllowed`](Resolution::MethodNotAllowed) (the path's route does not list the
//! method: `405`) or [`Unmapped`](Resolution::Unmapped) (no route matches the path; denied in
//! [`EnforcementMode::Enforcing`]). A route, or the whole map, can hand the decision
//! to a [`ResourceResolver`], for example to protect each album as its own resource.
//!
//! # Example
//!
//! ```
//! use http::{HeaderMap, Method};
//! use tower_uma::{Resolution, ResourceDecl, ResourceMap, ResourceRef, Route};
//!
//! let map = ResourceMap::new()
//!     .route(Route::public("/health"))
//!     .route(
//!         Route::new("/albums/{id}")
//!             .declare(ResourceDecl::new("albums", ["view", "edit"]))
//!             .scopes(Method::GET, ["view"])
//!             .scopes(Method::PUT, ["edit"]),
//!     );
//! map.validate()?;
//!
//! let headers = HeaderMap::new();
//! assert_eq!(map.resolve_request(&Method::GET, "/health", &headers)?, Resolution::Public);
//! match map.resolve_request(&Method::PUT, "//albums//7/", &headers)? {
//!     Resolution::Protected { resource, scopes, .. } => {
//!         assert_eq!(resource, ResourceRef::Name("albums".to_owned()));
//!         assert_eq!(scopes, ["edit"]);
//!     }
//!     other => panic!("unexpected {other:?}"),
//! }
//! // No entry for DELETE, no `any_method` and no `method_as_scope`: 405, with the methods
//! // the route lists.
//! assert_eq!(
//!     map.resolve_request(&Method::DELETE, "/albums/7", &headers)?,
//!     Resolution::MethodNotAllowed {
//!         allow: vec![Method::GET, Method::HEAD, Method::PUT],
//!         enforcement: None,
//!     },
//! );
//! // Nothing matches the path: unmapped.
//! assert_eq!(map.resolve_request(&Method::GET, "/photos/7", &headers)?, Resolution::Unmapped);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The matching rules, the precedence between templates and the reasons for both are
//! documented on [`ResourceMap`], where users of the re-exported types can read them.

#[cfg(feature = "axum")]
mod axum_check;
mod method;
mod path;
mod template;

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use http::{HeaderMap, Method};
use serde::Serialize;

pub(crate) use self::method::check_route_method;
pub(crate) use self::method::is_case_variant;
use self::path::NormalizedPath;
pub use self::path::PathError;
pub(crate) use self::path::normalize_path;
use self::template::{Lens, Template};
use crate::registration::Binding;

/// Which resource a route protects.
///
/// # Example
///
/// ```
/// use tower_uma::{ResourceRef, Route};
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
/// use tower_uma::{Resolution, ResourceMap, Route};
///
/// let map = ResourceMap::new().route(
///     Route::new("/invoices/{id}")
///         .resource_id("4d3c9f")
///         .scopes(Method::GET, ["read"])
///         .scopes(Method::POST, ["write"]),
/// );
/// let head = map.resolve_request(&Method::HEAD, "/invoices/42", &HeaderMap::new())?;
/// assert!(matches!(head, Resolution::Protected { scopes, .. } if scopes == ["read"]));
/// # Ok::<(), tower_uma::PathError>(())
/// ```
///
/// The HTTP method as the scope, with `ANY` matching and a per-route enforcement mode:
///
/// ```
/// use http::{HeaderMap, Method};
/// use tower_uma::{EnforcementMode, Resolution, ResourceMap, Route, ScopeMode};
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
/// # Ok::<(), tower_uma::PathError>(())
/// ```
#[derive(Clone)]
#[must_use]
pub struct Route {
    template: String,
    public: bool,
    public_methods: Vec<Method>,
    resource: Option<ResourceRef>,
    decl: Option<ResourceDecl>,
    methods: Vec<(Method, Vec<String>)>,
    any_method: Option<Vec<String>>,
    method_as_scope: bool,
    scope_mode: ScopeMode,
    enforcement: Option<EnforcementMode>,
    resolver: Option<Arc<dyn ResourceResolver>>,
    /// The id of the resource named in `resource`, bound by the layer once the registry knew
    /// it (see [`ResourceMap::bind`]).
    bound: Option<Binding>,
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
    /// use tower_uma::{Resolution, ResourceMap, Route};
    ///
    /// let map = ResourceMap::new().route(Route::public("/static/*"));
    /// let headers = HeaderMap::new();
    /// let get = map.resolve_request(&Method::GET, "/static/app.js", &headers)?;
    /// assert_eq!(get, Resolution::Public);
    /// let post = map.resolve_request(&Method::POST, "/static/app.js", &headers)?;
    /// assert!(matches!(post, Resolution::MethodNotAllowed { .. }));
    /// # Ok::<(), tower_uma::PathError>(())
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
    /// use tower_uma::{Resolution, ResourceMap, Route};
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
    /// # Ok::<(), tower_uma::PathError>(())
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
    /// use tower_uma::{RequestInfo, Resolution, ResourceMap, ResourceRef, Route};
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
    /// # Ok::<(), tower_uma::PathError>(())
    /// ```
    pub fn resolver(mut self, resolver: impl ResourceResolver) -> Self {
        self.resolver = Some(Arc::new(resolver));
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
    fn scope_lists(&self) -> impl Iterator<Item = &Vec<String>> {
        self.methods
            .iter()
            .map(|(_, scopes)| scopes)
            .chain(self.any_method.as_ref())
    }

    /// Checks the route on its own.
    fn check(&self) -> Result<(), ResourceMapError> {
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
    fn is_public_for(&self, method: &Method) -> bool {
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
    fn allowed_methods(&self) -> Vec<Method> {
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
            let head = (*method == Method::GET).then_some(&Method::HEAD);
            for m in std::iter::once(method).chain(head) {
                if !out.contains(m) {
                    out.push(m.clone());
                }
            }
        }
        out
    }

    /// What this route decides for a request that matched it, borrowing the route's resource
    /// and scopes; `None` when the route does not list the method (no scopes, public or not, no
    /// `any_method`, no `method_as_scope`, no resolver).
    fn rule_for<'m>(
        &'m self,
        template: &Template,
        method: &Method,
        path: &NormalizedPath<'_>,
        headers: &HeaderMap,
    ) -> Option<Resolved<'m>> {
        if self.is_public_for(method) {
            return Some(Resolved::Public);
        }
        if self.public {
            return None;
        }
        if let Some(resolver) = &self.resolver {
            let params = template.captures(path.segments());
            return Some(Resolved::from(resolver.resolve(&RequestInfo {
                method,
                path: path.as_str(),
                headers,
                params: &params,
            })));
        }
        let scopes = self.scopes_for(method)?;
        Some(match &self.resource {
            Some(resource) => Resolved::Protected(Protected {
                resource: Cow::Borrowed(resource),
                bound: self.bound.as_ref(),
                scopes,
                scope_mode: self.scope_mode,
                enforcement: self.enforcement,
            }),
            // Not reached: a valid map gives every protected route without a resolver a
            // resource, and an invalid map resolves nothing.
            None => Resolved::Unmapped,
        })
    }

    /// The refusal of a method this route does not list.
    fn method_not_allowed(&self) -> Resolved<'static> {
        Resolved::MethodNotAllowed {
            allow: self.allowed_methods(),
            enforcement: self.enforcement,
        }
    }
}

/// Adds to `allow` the methods of `more` it does not hold yet.
fn add_methods(allow: &mut Vec<Method>, more: Vec<Method>) {
    for method in more {
        if !allow.contains(&method) {
            allow.push(method);
        }
    }
}

/// The methods a [`Route::public`] route lets through without a token unless widened: the
/// safe methods of RFC 9110 §9.2.1 that browsers and monitors send without credentials.
const PUBLIC_BY_DEFAULT: [Method; 3] = [Method::GET, Method::HEAD, Method::OPTIONS];

fn collect_scopes(scopes: impl IntoIterator<Item = impl Into<String>>) -> Vec<String> {
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

/// Why a [`ResourceMap`] is not usable.
///
/// Returned by [`ResourceMap::validate`]; the layer's builder refuses such a map.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResourceMapError {
    /// A template breaks the [grammar](ResourceMap#matching-rules).
    #[error("invalid route template `{template}`: {reason}")]
    #[non_exhaustive]
    InvalidTemplate {
        /// The template as written.
        template: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Two routes match exactly the same paths (`/a/{x}` and `/A/{y}`).
    #[error("routes `{first}` and `{second}` match the same paths")]
    #[non_exhaustive]
    DuplicateRoute {
        /// The template added first.
        first: String,
        /// The template added later.
        second: String,
    },
    /// A protected route without a resolver names no resource.
    #[error("route `{template}` names no resource")]
    #[non_exhaustive]
    MissingResource {
        /// The route's template.
        template: String,
    },
    /// A protected route without a resolver has no scopes for any method and no
    /// `method_as_scope`, so every request to it would be unmapped.
    #[error("route `{template}` maps no method to scopes")]
    #[non_exhaustive]
    NoScopes {
        /// The route's template.
        template: String,
    },
    /// A scope list is empty or holds an empty scope name.
    #[error("route `{template}` has an empty scope list or scope name")]
    #[non_exhaustive]
    EmptyScope {
        /// The route's template.
        template: String,
    },
    /// A route names a method that looks like a mistake: not upper case (`delete`), or one
    /// edit away from a standard or registered method (`GTE`, `DELTE`).
    #[error("route `{template}`: {reason}")]
    #[non_exhaustive]
    InvalidMethod {
        /// The route's template.
        template: String,
        /// The method as written.
        method: String,
        /// What is wrong with it, and what to write instead.
        reason: String,
    },
    /// A route makes a method both public ([`Route::public_methods`]) and protected
    /// ([`Route::scopes`]).
    #[error("route `{template}` makes method `{method}` both public and protected")]
    #[non_exhaustive]
    PublicAndProtectedMethod {
        /// The route's template.
        template: String,
        /// The method.
        method: String,
    },
    /// A public route also carries a resource, scopes or a resolver.
    #[error("public route `{template}` also carries a resource, scopes or a resolver")]
    #[non_exhaustive]
    PublicRouteWithRules {
        /// The route's template.
        template: String,
    },
    /// A route requires a scope that the resource's declaration does not list.
    #[error(
        "route `{template}` requires scope `{scope}`, which resource `{resource}` does not declare"
    )]
    #[non_exhaustive]
    UndeclaredScope {
        /// The route's template.
        template: String,
        /// The scope missing from the declaration.
        scope: String,
        /// The declared resource's name.
        resource: String,
    },
    /// A resource declaration cannot be registered.
    #[error("invalid declaration of resource `{name}`: {reason}")]
    #[non_exhaustive]
    InvalidDeclaration {
        /// The declared name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Two routes declare the same resource name with different descriptions.
    #[error("resource `{name}` is declared twice with different descriptions")]
    #[non_exhaustive]
    ConflictingDeclaration {
        /// The declared name.
        name: String,
    },
}

/// A route together with its parsed template (`None` when the template is invalid).
#[derive(Clone, Debug)]
struct Entry {
    route: Route,
    template: Option<Template>,
}

/// The table that maps requests to resources and scopes.
///
/// Routes are added with [`route`](Self::route) and checked as they are added;
/// [`validate`](Self::validate) reports the first problem, and the layer's builder refuses a
/// map that does not validate. A map with a problem resolves every request to
/// [`Resolution::Unmapped`], which enforcing mode denies.
///
/// # Matching rules
///
/// **Path normalisation.** The request path (`Uri::path`, without the query) is brought into one
/// canonical form before any route is looked at, or refused with a [`PathError`], which the
/// layer answers with `400 Bad Request`:
///
/// - Escapes of unreserved characters (`ALPHA DIGIT - . _ ~`) are decoded (`%41` is `A`); all
///   other escapes stay encoded, in upper-case hex. Characters that may not appear literally in
///   a path (space, `"`, `{`, non-ASCII, …) are spelled as their escape.
/// - Refused: invalid escapes (`%zz`, a truncated `%4`); a `.` or `..` segment in any spelling
///   (`..`, `%2e%2e`, `.%2E`, `%2E`); an encoded slash (`%2F`, `%2f`); a backslash, literal or
///   `%5C`; control characters, literal or encoded (`%00`, `%0A`, `%7F`); a `;`, literal or
///   `%3B` (path parameters); an encoded `%` that starts another escape (`%252e`, double
///   encoding); `?` or `#`; escapes that do not decode to UTF-8; a path not starting with `/`.
/// - Empty segments and a trailing slash are dropped: `//albums/1`, `/albums//1` and
///   `/albums/1/` are all `/albums/1` and get its rule, unless the path as received selects
///   a stricter rule (see [paths as received](#paths-as-received)).
///
/// **Templates.** A template starts with `/` and is made of literal segments, `{name}`
/// segments (exactly one non-empty segment; names use ASCII letters, digits, `_` and `-`, each
/// at most once) and an optional final `*`, which matches zero or more remaining segments
/// (`/static/*` matches `/static` and `/static/a/b`). `{` or `}` elsewhere, a `*` that is not
/// the whole last segment, or a literal segment that the normalisation above would refuse make
/// the map invalid ([`ResourceMap::validate`]). So do the syntaxes of other routers, which
/// would otherwise be taken as literals: `:id` (axum 0.7, Express), `*rest` and `{*rest}`
/// (named wildcards), `<id>` (Flask); the error says what to write instead. Empty segments of
/// templates are dropped as well.
///
/// - Literal segments are compared ASCII-case-insensitively, and a path that matches a route
///   only that way (`/Albums/1` for `/albums/{id}`) is decided by it only when a
///   case-sensitive router would apply the same rule; otherwise, including when such a router
///   has no route for it, it is refused as [`PathError::LetterCase`]. Flask, Django, Symfony,
///   Spring and axum route case-sensitively, Express and ASP.NET do not: a rule that depends
///   on case cannot be right for both.
/// - Captured parameters keep the request's spelling, percent-decoded.
/// - A request whose canonical and fully decoded spellings would select different routes (a
///   literal `a!b` route and a request for `/a%21b`) is refused as
///   [`PathError::Ambiguous`].
/// - Two routes that match exactly the same paths (`/a/{x}` and `/A/{y}`) make the map invalid.
///
/// # Precedence
///
/// When several templates match, the winner is decided the same way every time, the way
/// axum's router (matchit) tries routes: segments are compared left to right, and at the first
/// position where the two templates differ, a literal beats a `{param}`, which beats the `*`;
/// where one template ends without a `*`, it beats a `*` that matches nothing there. So among
/// wildcard templates the one with more matching segments wins (`/a/b/*` over `/a/*`), and an
/// earlier literal wins over anything later (`/a/*` over `/{x}/b` for `/a/b`).
///
/// For `/albums/new`, `/albums/new` beats `/albums/{id}`, which beats `/albums/*`, which beats
/// `/*`; `/a/{x}` beats `/{y}/b`; for `/static`, `/static` beats `/static/*`.
///
/// # Paths as received
///
/// Routers that match the path as received (axum's matchit, Express without its defaults)
/// do not see the canonical form: they keep empty segments (a `{param}` takes an empty
/// segment when more follow: `//albums/1` is `/{a}/albums/{id}` there) and a trailing slash
/// (`/albums/1/` is not `/albums/{id}`), do not decode escapes (`/%61lbums` is not `/albums`,
/// and a literal written `%7Eme` matches only that spelling), and never let a trailing `*`
/// match nothing (`/admin` is not `/admin/{*rest}`; the application may serve the bare
/// `/admin` with the same handler, or not). Other routers merge, decode and match those. So
/// when the path is not received in canonical form, a literal is written otherwise than
/// canonically, or the route chosen matches with a `*` matching nothing, the map also looks
/// at what such a router could run: its own best match, and each wildcard route whose bare
/// prefix would beat it. If one of those applies a rule that is neither the rule decided
/// here nor public, the request is refused as [`PathError::AsReceived`]. A public rule
/// there leaves the rule decided here, the stricter one: `/albums/1/` beside a public `/*`
/// keeps the rule of `/albums/{id}`.
///
/// ```
/// use http::{HeaderMap, Method};
/// use tower_uma::{PathError, Resolution, ResourceMap, Route};
///
/// let map = ResourceMap::new()
///     .route(Route::public("/albums"))
///     .route(Route::new("/*").resource_id("everything").any_method(["admin"]));
/// let headers = HeaderMap::new();
/// let resolve = |path| map.resolve_request(&Method::GET, path, &headers);
/// assert_eq!(resolve("/albums")?, Resolution::Public);
/// // axum runs the protected `/{*rest}` for these.
/// assert_eq!(resolve("/albums/"), Err(PathError::AsReceived));
/// assert_eq!(resolve("//albums"), Err(PathError::AsReceived));
/// assert_eq!(resolve("/%61lbums"), Err(PathError::AsReceived));
/// # Ok::<(), PathError>(())
/// ```
///
/// # Methods
///
/// Methods are case-sensitive (RFC 9110 §9.1), but Werkzeug, Django and Symfony upper-case
/// them before routing. So a request whose method is a case variant (`delete`, `Get`) of a
/// standard method (`GET HEAD POST PUT DELETE CONNECT OPTIONS TRACE PATCH`) or of a method
/// some route names is refused as [`PathError::MethodCase`] before any route is looked at.
/// Other extension methods (`PURGE`, `PROPFIND`) go through the map like any other.
///
/// Routes may only name upper-case methods, and not one that is one edit away from a
/// standard or registered method (`GTE`, `DELTE`): such a typo would leave the real method
/// unlisted. [`validate`](Self::validate) reports [`ResourceMapError::InvalidMethod`]. One
/// changed letter in a short name (`READ`, `SET`, `PUB`: four letters or fewer) is not taken
/// for a typo, so such extension methods can be routed.
///
/// # Scopes
///
/// For a matched [`Route`] and the request's method:
///
/// 1. a method the route lets through without a token ([`Route::public`]: `GET`, `HEAD`,
///    `OPTIONS`, and any [`public_methods`](Route::public_methods)) gives
///    [`Resolution::Public`]; other methods on a [`Route::public`] route are handed on, see
///    [public routes](#public-routes);
/// 2. a route with its own [`resolver`](Route::resolver) returns whatever the resolver returns;
///    it sees the decoded captures in [`RequestInfo::params`];
/// 3. otherwise the scopes are the route's entry for the method, for `HEAD` without an entry of
///    its own the `GET` entry, else the [`any_method`](Route::any_method) scopes, else the method
///    name if [`method_as_scope`](Route::method_as_scope) is set, else the route does not list
///    the method and the request is [`Resolution::MethodNotAllowed`] (`405` with `Allow`,
///    whatever the layer's [`Unmapped`](crate::Unmapped) setting says, which concerns only
///    paths no route matches). A path no route matches is [`Resolution::Unmapped`].
///
/// # Public routes
///
/// A public route covers `GET`, `HEAD` and `OPTIONS`, and the methods named with
/// [`Route::public_methods`]. Another method is not public: Express, Spring and Werkzeug
/// fall through to the next route that takes the method, so `DELETE /albums/featured` can run
/// `/albums/{id}`'s handler. Such a request is decided by the other routes matching its path
/// that take the method: by the protected one's rule when there is one (or several with the
/// same rule); refused as [`PathError::Ambiguous`] when protected routes with different rules
/// could take it; public when only public routes take it; `405` when none does, with the
/// methods of every route matching the path in `Allow`, under the strictest
/// [`Route::enforcement`] among them (an `Enforcing` route there keeps a permissive layer from
/// forwarding the request).
///
/// # Why it works this way
///
/// The middleware decides on the path it sees, while the upstream service routes on the path
/// *it* sees: if the two disagree about which handler a request reaches, a protected handler
/// can be reached under a spelling that the middleware filed under a weaker rule. That is how
/// `..;/` let requests past Tomcat path filters and how `%2e%2e` and `%2F` have bypassed
/// reverse-proxy rules. The principle here is that **every request is either refused or
/// decided under the strictest rule that a common upstream (Werkzeug, Express, Spring,
/// Symfony, Django, axum) could apply to it**: every spelling that these upstreams treat as
/// the same path (duplicate and trailing slashes, escapes of unreserved characters) gets the
/// same rule, and every spelling whose meaning differs between them (dot segments, encoded
/// slashes, backslashes, path parameters, double encoding, letter case where it changes the
/// rule, case variants of methods) is refused outright rather than guessed at. Refusing costs
/// a `400` for requests that well-behaved clients do not send; guessing costs a bypass.
///
/// Known limits: the map cannot see rewrites the upstream does on its own (trailing-dot
/// stripping on Windows file servers, Unicode case folding, routing on the query string). For
/// such upstreams, map the whole prefix with a wildcard route. Among overlapping templates the
/// map picks the most specific, as axum's router does; routers that try routes in the order
/// they were registered (Express, Django) may run another one: with `/albums/:id` registered
/// before `/albums/featured`, Express runs the `:id` handler for `GET /albums/featured`, which
/// this map decides as the public route. Register overlapping routes there from the most
/// specific to the least (as their documentation recommends), or give them the same rule.
///
/// # Examples
///
/// ```
/// use http::{HeaderMap, Method};
/// use tower_uma::{PathError, Resolution, ResourceMap, ResourceRef, Route};
///
/// let map = ResourceMap::new()
///     .route(Route::new("/albums/{id}").resource_id("albums").any_method(["view"]))
///     .route(Route::new("/albums/new").resource_id("album-factory").any_method(["create"]))
///     .route(Route::new("/admin/*").resource_id("admin").any_method(["admin"]));
/// map.validate()?;
///
/// let headers = HeaderMap::new();
/// let resolve = |path| map.resolve_request(&Method::GET, path, &headers);
/// let resource = |path| match resolve(path) {
///     Ok(Resolution::Protected { resource, .. }) => Some(resource),
///     _ => None,
/// };
/// assert_eq!(resource("/albums/new"), Some(ResourceRef::Id("album-factory".to_owned())));
/// // `/albums/new` once decoded, but `/albums/{id}` on axum, which matches it as received.
/// assert_eq!(resolve("/albums/%6Eew"), Err(PathError::AsReceived));
/// assert_eq!(resource("//admin/users/"), Some(ResourceRef::Id("admin".to_owned())));
/// // `*` matches nothing here, and no other route could take `/admin` as received.
/// assert_eq!(resource("/admin"), Some(ResourceRef::Id("admin".to_owned())));
/// // A case-sensitive router has no route for it: the rule would depend on case.
/// assert_eq!(resolve("/ADMIN/users"), Err(PathError::LetterCase));
/// assert_eq!(resolve("/albums/../admin"), Err(PathError::DotSegment));
/// assert_eq!(resolve("/admin;x=1"), Err(PathError::Semicolon));
/// assert_eq!(resolve("/elsewhere")?, Resolution::Unmapped);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// A map that does not validate:
///
/// ```
/// use tower_uma::{ResourceMap, ResourceMapError, Route};
///
/// let map = ResourceMap::new()
///     .route(Route::new("/a/{x}").resource_id("a").any_method(["read"]))
///     .route(Route::new("/A/{y}").resource_id("b").any_method(["read"]));
/// assert!(matches!(map.validate(), Err(ResourceMapError::DuplicateRoute { .. })));
/// ```
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct ResourceMap {
    entries: Vec<Entry>,
    /// The first problem found, if any.
    error: Option<ResourceMapError>,
    /// Whether some literal template segment keeps an escape.
    escaped_literals: bool,
    /// Whether some literal template segment is written otherwise than canonically.
    rewritten_literals: bool,
    /// Every method some route names, once each.
    methods: Vec<Method>,
}

impl ResourceMap {
    /// An empty map: every request is unmapped.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a route. Problems with it are reported by [`validate`](Self::validate).
    pub fn route(mut self, route: Route) -> Self {
        let template = match Template::parse(&route.template) {
            Ok(template) => Some(template),
            Err(reason) => {
                self.note(ResourceMapError::InvalidTemplate {
                    template: route.template.clone(),
                    reason,
                });
                None
            }
        };
        if let Err(error) = route.check() {
            self.note(error);
        }
        if let Some(template) = &template {
            self.escaped_literals |= template.has_escaped_literals();
            self.rewritten_literals |= template.has_rewritten_literals();
            if let Err(error) = self.check_against_existing(&route, template) {
                self.note(error);
            }
        }
        if let Err(error) = self.check_declared_scopes(&route) {
            self.note(error);
        }
        for method in route
            .methods
            .iter()
            .map(|(m, _)| m)
            .chain(&route.public_methods)
        {
            if !self.methods.contains(method) {
                self.methods.push(method.clone());
            }
        }
        self.entries.push(Entry { route, template });
        self
    }

    /// The template of the first route overriding the enforcement mode with something other
    /// than [`EnforcementMode::Disabled`], if any.
    pub(crate) fn enforcement_override(&self) -> Option<&str> {
        self.entries
            .iter()
            .find(|e| {
                e.route
                    .enforcement
                    .is_some_and(|m| m != EnforcementMode::Disabled)
            })
            .map(|e| e.route.template.as_str())
    }

    /// Whether some request may be decided in enforcing mode whatever the layer's mode: a
    /// route overrides the mode to `Enforcing`, or has a resolver (which may return such an
    /// override).
    pub(crate) fn may_enforce(&self) -> bool {
        self.entries.iter().any(|e| {
            e.route.resolver.is_some() || e.route.enforcement == Some(EnforcementMode::Enforcing)
        })
    }

    /// Every resource declared with [`Route::declare`], once per name, in the order the routes
    /// were added.
    #[must_use]
    pub fn declared(&self) -> Vec<ResourceDecl> {
        let mut out: Vec<ResourceDecl> = Vec::new();
        for decl in self.entries.iter().filter_map(|e| e.route.decl.as_ref()) {
            if !out.iter().any(|d| d.name == decl.name) {
                out.push(decl.clone());
            }
        }
        out
    }

    /// Every scope the map names (declared resources' scopes, route and `any_method` scopes),
    /// sorted, once each: the `scopes_supported` of RFC 9728 metadata.
    pub(crate) fn scope_names(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for route in self.entries.iter().map(|e| &e.route) {
            let declared = route.decl.iter().flat_map(|d| d.resource_scopes.iter());
            let listed = route.methods.iter().flat_map(|(_, scopes)| scopes.iter());
            let any = route.any_method.iter().flatten();
            out.extend(declared.chain(listed).chain(any).cloned());
        }
        out.sort();
        out.dedup();
        out
    }

    /// Checks the map: every template well formed, no two routes for the same paths, every
    /// protected route with a resource and scopes, every declaration registrable and consistent.
    ///
    /// # Errors
    ///
    /// Returns the first problem found, in the order the routes were added.
    pub fn validate(&self) -> Result<(), ResourceMapError> {
        self.error.clone().map_or(Ok(()), Err)
    }

    /// Normalises a request path and resolves the request: the entry point the layer uses.
    ///
    /// `raw_path` is the path as received (`Uri::path`). A map that does not
    /// [`validate`](Self::validate) resolves everything to [`Resolution::Unmapped`].
    ///
    /// # Errors
    ///
    /// Returns a [`PathError`] when the path is refused by the normalisation rules or is
    /// [ambiguous](PathError::Ambiguous); the layer answers `400 Bad Request`.
    pub fn resolve_request(
        &self,
        method: &Method,
        raw_path: &str,
        headers: &HeaderMap,
    ) -> Result<Resolution, PathError> {
        self.resolve_raw(method, raw_path, headers)
            .map(Resolved::into_owned)
    }

    /// [`resolve_request`](Self::resolve_request), borrowing the route's resource and scopes.
    fn resolve_raw(
        &self,
        method: &Method,
        raw_path: &str,
        headers: &HeaderMap,
    ) -> Result<Resolved<'_>, PathError> {
        self.check_method(method)?;
        let path = normalize_path(raw_path)?;
        self.resolve_normalized(method, &path, headers)
    }

    /// Binds every route that protects a resource by name to the id `bind` gives that name
    /// (the registry's, after the start-up sync), so that requests to it need no lookup.
    pub(crate) fn bind(&mut self, bind: impl Fn(&str) -> Option<Binding>) {
        for entry in &mut self.entries {
            let route = &mut entry.route;
            route.bound = match (&route.resource, &route.resolver) {
                (Some(ResourceRef::Name(name)), None) => bind(name),
                _ => None,
            };
        }
    }

    /// Refuses a method that is a case variant of a standard method or of one this map names
    /// (see [methods](ResourceMap#methods)).
    ///
    /// # Errors
    ///
    /// [`PathError::MethodCase`].
    fn check_method(&self, method: &Method) -> Result<(), PathError> {
        if is_case_variant(method, &self.methods) {
            return Err(PathError::MethodCase);
        }
        Ok(())
    }

    /// Resolves a request whose path is already normalised (its method checked).
    ///
    /// # Errors
    ///
    /// [`PathError::Ambiguous`] when the canonical and the decoded spelling of the path select
    /// different rules, or when several protected routes could take a method a public route
    /// does not let through; [`PathError::LetterCase`] when the rule depends on letter case;
    /// [`PathError::AsReceived`] when a router matching the path as received would apply a
    /// rule that is neither the same nor public.
    fn resolve_normalized(
        &self,
        method: &Method,
        path: &NormalizedPath<'_>,
        headers: &HeaderMap,
    ) -> Result<Resolved<'_>, PathError> {
        if self.error.is_some() {
            return Ok(Resolved::Unmapped);
        }
        let selected = self.select(path, Lens::CANONICAL);
        let escapes = path.has_escapes() || self.escaped_literals;
        if escapes && self.select(path, Lens::DECODED) != selected {
            return Err(PathError::Ambiguous);
        }
        // A router matching the path as received (axum's) may choose another route (an empty
        // segment taken by a `{param}`, an escape not decoded, a `*` that matches nothing
        // there). When the path is verbatim, no literal is written otherwise than canonically
        // and it matches the route chosen here (`settled`), it chooses the same one.
        let (resolved, fell_through, settled) = match selected {
            Some(best) => self.decide_best(best, method, path, headers, escapes)?,
            // No route: a router matching the path as received finds none either, unless it
            // sees other segments or other literals.
            None => (Resolved::Unmapped, false, true),
        };
        if !settled || !path.is_verbatim() || self.rewritten_literals {
            let received = path.as_received();
            let received = received.as_ref().unwrap_or(path);
            for index in self.received_candidates(received) {
                // The route chosen here applies its own rule, however its captures are spelled.
                if Some(index) == selected && !fell_through {
                    continue;
                }
                let (rule, _) = self.decide(index, method, received, headers, Lens::RECEIVED)?;
                // The same rule, or a public one (the rule decided here is then the stricter).
                if rule != resolved && rule != Resolved::Public {
                    return Err(PathError::AsReceived);
                }
            }
        }
        Ok(resolved)
    }

    /// The routes a router matching the path as received (axum's) could run: the best match
    /// there, and each wildcard route whose bare prefix is the path and would beat it (when
    /// the application serves the bare prefix too, as `*` matching nothing here suggests).
    fn received_candidates(&self, received: &NormalizedPath<'_>) -> Vec<usize> {
        let best = self.select(received, Lens::RECEIVED);
        let best_template = best.and_then(|i| self.entries[i].template.as_ref());
        let bare = self
            .templates()
            .filter(|(_, t)| {
                t.matches_bare(received.segments()) && best_template.is_none_or(|b| t.bare_beats(b))
            })
            .map(|(index, _)| index);
        best.into_iter().chain(bare).collect()
    }

    /// The rule of the best matching route `best`, checked against what a decoding and a
    /// case-sensitive router would decide; whether the method fell through to other routes;
    /// and whether a router matching the path as received would certainly choose the same
    /// route and rule: it matches the route's literals exactly, nothing fell through, and no
    /// `*` matches nothing.
    fn decide_best(
        &self,
        best: usize,
        method: &Method,
        path: &NormalizedPath<'_>,
        headers: &HeaderMap,
        escapes: bool,
    ) -> Result<(Resolved<'_>, bool, bool), PathError> {
        let decide = |index, lens| self.decide(index, method, path, headers, lens);
        let (resolved, fell_through) = decide(best, Lens::CANONICAL)?;
        if escapes && fell_through && decide(best, Lens::DECODED)?.0 != resolved {
            return Err(PathError::Ambiguous);
        }
        // A case-sensitive router sees only the routes whose literals match exactly. When the
        // chosen route is among them and nothing fell through, it picks the same route; else
        // its rule must be the same, or the request is refused.
        let template = self.entries[best].template.as_ref();
        let exact = template.is_some_and(|t| t.matches(path.segments(), Lens::EXACT_CASE));
        if !exact || fell_through {
            let other = match self.select(path, Lens::EXACT_CASE) {
                Some(index) => Some(decide(index, Lens::EXACT_CASE)?.0),
                None => None,
            };
            if other.as_ref() != Some(&resolved) {
                return Err(PathError::LetterCase);
            }
        }
        let settled = exact
            && !fell_through
            && !template.is_some_and(|t| t.wildcard_matches_nothing(path.segments()));
        Ok((resolved, fell_through, settled))
    }

    /// The index of the best matching route under `lens`, by the precedence rules.
    fn select(&self, path: &NormalizedPath<'_>, lens: Lens) -> Option<usize> {
        let mut best: Option<(usize, &Template)> = None;
        for (index, template) in self.matching(path, lens) {
            if best.is_none_or(|(_, b)| template.precedence() > b.precedence()) {
                best = Some((index, template));
            }
        }
        best.map(|(index, _)| index)
    }

    /// The routes whose templates match `path` under `lens`, with their index.
    fn matching<'s>(
        &'s self,
        path: &'s NormalizedPath<'_>,
        lens: Lens,
    ) -> impl Iterator<Item = (usize, &'s Template)> {
        self.templates()
            .filter(move |(_, template)| template.matches(path.segments(), lens))
    }

    /// Every route's template, with the route's index.
    fn templates(&self) -> impl Iterator<Item = (usize, &Template)> {
        self.entries
            .iter()
            .enumerate()
            .filter_map(|(index, entry)| entry.template.as_ref().map(|t| (index, t)))
    }

    /// The rule of route `index` for this request, and whether it fell through: a public route
    /// that does not let the method pass hands it to the other routes matching under `lens`
    /// (routers that fall through on a method mismatch run their handlers), see
    /// [public routes](ResourceMap#public-routes).
    fn decide(
        &self,
        index: usize,
        method: &Method,
        path: &NormalizedPath<'_>,
        headers: &HeaderMap,
        lens: Lens,
    ) -> Result<(Resolved<'_>, bool), PathError> {
        let entry = &self.entries[index];
        let Some(template) = &entry.template else {
            return Ok((Resolved::Unmapped, false));
        };
        let route = &entry.route;
        if let Some(rule) = route.rule_for(template, method, path, headers) {
            return Ok((rule, false));
        }
        if !route.public {
            return Ok((route.method_not_allowed(), false));
        }
        let mut chosen: Option<Resolved<'_>> = None;
        let mut public = false;
        // When no route takes the method, the 405 names every method the routes matching
        // here allow, under the strictest override among them: a permissive layer must not
        // forward a method that falls through to an enforcing route's handler.
        let mut allow = route.allowed_methods();
        let mut enforcement = route.enforcement;
        for (other, template) in self.matching(path, lens).filter(|(i, _)| *i != index) {
            let other = &self.entries[other].route;
            if other.enforcement == Some(EnforcementMode::Enforcing) {
                enforcement = other.enforcement;
            }
            match other.rule_for(template, method, path, headers) {
                None => add_methods(&mut allow, other.allowed_methods()),
                Some(Resolved::MethodNotAllowed { allow: more, .. }) => {
                    add_methods(&mut allow, more)
                }
                Some(Resolved::Public) => public = true,
                Some(rule) => match &chosen {
                    None => chosen = Some(rule),
                    Some(first) if *first == rule => {}
                    // The upstream may run either handler: no one rule covers both.
                    Some(_) => return Err(PathError::Ambiguous),
                },
            }
        }
        let resolved = chosen
            .or(public.then_some(Resolved::Public))
            .unwrap_or(Resolved::MethodNotAllowed { allow, enforcement });
        Ok((resolved, true))
    }

    fn note(&mut self, error: ResourceMapError) {
        if self.error.is_none() {
            self.error = Some(error);
        }
    }

    /// Duplicate routes and conflicting declarations.
    fn check_against_existing(
        &self,
        route: &Route,
        template: &Template,
    ) -> Result<(), ResourceMapError> {
        for entry in &self.entries {
            if entry
                .template
                .as_ref()
                .is_some_and(|t| t.same_shape(template))
            {
                return Err(ResourceMapError::DuplicateRoute {
                    first: entry.route.template.clone(),
                    second: route.template.clone(),
                });
            }
            if let (Some(new), Some(old)) = (&route.decl, &entry.route.decl)
                && new.name == old.name
                && new != old
            {
                return Err(ResourceMapError::ConflictingDeclaration {
                    name: new.name.clone(),
                });
            }
        }
        Ok(())
    }

    /// Every explicit scope of a route that names a declared resource must be declared, whether
    /// the declaration comes with this route or with another one, before or after it.
    fn check_declared_scopes(&self, route: &Route) -> Result<(), ResourceMapError> {
        let undeclared = |route: &Route, decl: &ResourceDecl| {
            route
                .scope_lists()
                .flatten()
                .find(|scope| !decl.resource_scopes.contains(scope))
                .map(|scope| ResourceMapError::UndeclaredScope {
                    template: route.template.clone(),
                    scope: scope.clone(),
                    resource: decl.name.clone(),
                })
        };
        let named =
            |route: &Route, name: &str| route.resource == Some(ResourceRef::Name(name.to_owned()));
        let earlier_decls = self.entries.iter().filter_map(|e| e.route.decl.as_ref());
        let own_or_earlier = route.decl.as_ref().into_iter().chain(earlier_decls);
        for decl in own_or_earlier {
            if named(route, &decl.name)
                && let Some(error) = undeclared(route, decl)
            {
                return Err(error);
            }
        }
        if let Some(decl) = &route.decl {
            for entry in &self.entries {
                if named(&entry.route, &decl.name)
                    && let Some(error) = undeclared(&entry.route, decl)
                {
                    return Err(error);
                }
            }
        }
        Ok(())
    }
}

/// What a [`ResourceResolver`] may look at.
///
/// Its `Debug` output lists header names only, since header values carry the bearer token.
///
/// # Example
///
/// ```
/// use http::{HeaderMap, Method};
/// use tower_uma::{RequestInfo, Resolution, ResourceRef, ResourceResolver};
///
/// let resolver = |req: &RequestInfo<'_>| match req.headers.get("x-tenant") {
///     Some(_) => Resolution::protected(ResourceRef::Name("tenant-data".to_owned()), ["read"]),
///     None => Resolution::Unmapped,
/// };
/// let params = [("id".to_owned(), "7".to_owned())];
/// let headers = HeaderMap::new();
/// let info = RequestInfo::new(&Method::GET, "/albums/7", &headers, &params);
/// assert_eq!(info.param("id"), Some("7"));
/// assert_eq!(resolver.resolve(&info), Resolution::Unmapped);
/// ```
#[non_exhaustive]
pub struct RequestInfo<'a> {
    /// The request method.
    pub method: &'a Method,
    /// The normalised path (see the [matching rules](ResourceMap#matching-rules)): no empty,
    /// `.` or `..` segments, no trailing slash, only escapes of reserved and non-ASCII
    /// characters left.
    pub path: &'a str,
    /// The request headers, `Authorization` included: never log their values.
    pub headers: &'a HeaderMap,
    /// The matched route's captures, percent-decoded, in template order: each `{name}`, then
    /// `*` (the rest of the path, decoded segments joined with `/`) for a template ending in
    /// `*`. Empty when no route template is involved.
    pub params: &'a [(String, String)],
}

impl fmt::Debug for RequestInfo<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        /// Header names without their values.
        struct Names<'h>(&'h HeaderMap);
        impl fmt::Debug for Names<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_list().entries(self.0.keys()).finish()
            }
        }
        f.debug_struct("RequestInfo")
            .field("method", self.method)
            .field("path", &self.path)
            .field("headers", &Names(self.headers))
            .field("params", &self.params)
            .finish()
    }
}

impl<'a> RequestInfo<'a> {
    /// Request data for a resolver, for example to test one. `path` should be normalised.
    #[must_use]
    pub fn new(
        method: &'a Method,
        path: &'a str,
        headers: &'a HeaderMap,
        params: &'a [(String, String)],
    ) -> Self {
        Self {
            method,
            path,
            headers,
            params,
        }
    }

    /// The decoded value captured for `{name}` (or `*`), if any.
    #[must_use]
    pub fn param(&self, name: &str) -> Option<&'a str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, value)| value.as_str())
    }
}

/// What a request needs.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Resolution {
    /// The request needs an RPT granting `scopes` on `resource`.
    Protected {
        /// The resource the request touches.
        resource: ResourceRef,
        /// The scopes required. Routes always give a non-empty list; a custom resolver must
        /// not return an empty one either.
        scopes: Vec<String>,
        /// Whether all or any of `scopes` must be granted.
        scope_mode: ScopeMode,
        /// An override of the layer's enforcement mode, if any.
        enforcement: Option<EnforcementMode>,
    },
    /// The request passes without a token.
    Public,
    /// Nothing maps the request; the layer's enforcement mode decides (enforcing denies).
    Unmapped,
    /// A route matches the path but does not list the method: the layer answers `405 Method
    /// Not Allowed` with `Allow` (RFC 9110 §15.5.6) in enforcing mode.
    MethodNotAllowed {
        /// The methods the route lists (`HEAD` with `GET`), for the `Allow` header.
        allow: Vec<Method>,
        /// The route's override of the layer's enforcement mode, if any.
        enforcement: Option<EnforcementMode>,
    },
}

/// What a request to a protected resource needs: the one shape the layer's request path works
/// with, from the route (or resolver) to the decision. It borrows the route's resource and
/// scopes, so that a request decided at once copies nothing out of the map, and is made owned
/// ([`into_owned`](Self::into_owned)) when the request has to wait for the AS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Protected<'m> {
    /// The resource the request touches.
    pub(crate) resource: Cow<'m, ResourceRef>,
    /// The id bound to `resource`'s name when the layer was built, if any.
    pub(crate) bound: Option<&'m Binding>,
    /// The scopes required.
    pub(crate) scopes: Cow<'m, [String]>,
    /// Whether all or any of `scopes` must be granted.
    pub(crate) scope_mode: ScopeMode,
    /// The route's override of the layer's enforcement mode, if any.
    pub(crate) enforcement: Option<EnforcementMode>,
}

impl Protected<'_> {
    /// The resource's name, when it is named.
    pub(crate) fn name(&self) -> Option<&str> {
        match &*self.resource {
            ResourceRef::Name(name) => Some(name),
            ResourceRef::Id(_) => None,
        }
    }

    /// An owned copy, for the part of the request path that waits for the AS (the binding,
    /// used only before that, is dropped).
    pub(crate) fn into_owned(self) -> Protected<'static> {
        Protected {
            resource: Cow::Owned(self.resource.into_owned()),
            bound: None,
            scopes: Cow::Owned(self.scopes.into_owned()),
            scope_mode: self.scope_mode,
            enforcement: self.enforcement,
        }
    }
}

/// A [`Resolution`] as the layer works with it: [`Protected`] borrows from the map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Resolved<'m> {
    /// See [`Resolution::Protected`].
    Protected(Protected<'m>),
    /// See [`Resolution::Public`].
    Public,
    /// See [`Resolution::Unmapped`].
    Unmapped,
    /// See [`Resolution::MethodNotAllowed`].
    MethodNotAllowed {
        allow: Vec<Method>,
        enforcement: Option<EnforcementMode>,
    },
}

impl Resolved<'_> {
    /// The owned [`Resolution`].
    pub(crate) fn into_owned(self) -> Resolution {
        match self {
            Self::Protected(p) => Resolution::Protected {
                resource: p.resource.into_owned(),
                scopes: p.scopes.into_owned(),
                scope_mode: p.scope_mode,
                enforcement: p.enforcement,
            },
            Self::Public => Resolution::Public,
            Self::Unmapped => Resolution::Unmapped,
            Self::MethodNotAllowed { allow, enforcement } => {
                Resolution::MethodNotAllowed { allow, enforcement }
            }
        }
    }
}

impl From<Resolution> for Resolved<'_> {
    fn from(resolution: Resolution) -> Self {
        match resolution {
            Resolution::Protected {
                resource,
                scopes,
                scope_mode,
                enforcement,
            } => Self::Protected(Protected {
                resource: Cow::Owned(resource),
                bound: None,
                scopes: Cow::Owned(scopes),
                scope_mode,
                enforcement,
            }),
            Resolution::Public => Self::Public,
            Resolution::Unmapped => Self::Unmapped,
            Resolution::MethodNotAllowed { allow, enforcement } => {
                Self::MethodNotAllowed { allow, enforcement }
            }
        }
    }
}

impl Resolution {
    /// [`Resolution::Protected`] with [`ScopeMode::All`] and the layer's enforcement mode.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_uma::{Resolution, ResourceRef, ScopeMode};
    ///
    /// let resolution = Resolution::protected(ResourceRef::Id("4d3c9f".to_owned()), ["read"]);
    /// assert!(matches!(
    ///     resolution,
    ///     Resolution::Protected { scope_mode: ScopeMode::All, enforcement: None, .. }
    /// ));
    /// ```
    #[must_use]
    pub fn protected(
        resource: ResourceRef,
        scopes: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self::Protected {
            resource,
            scopes: collect_scopes(scopes),
            scope_mode: ScopeMode::All,
            enforcement: None,
        }
    }
}

/// Decides what a request needs. Implemented by [`ResourceMap`], by closures
/// `Fn(&RequestInfo<'_>) -> Resolution`, and by your own types.
///
/// A resolver given to [`Route::resolver`] sees the route's captures; one that replaces the
/// whole map sees the normalised path and no captures. Resolvers run on every request, so they
/// should be quick and must not block. A route's resolver may be asked more than once for one
/// request (when the map checks what a case-sensitive or decoding router would decide, or
/// which routes a public route's method falls through to), so it should not count calls.
///
/// # Example
///
/// ```
/// use http::{HeaderMap, Method};
/// use tower_uma::{RequestInfo, Resolution, ResourceRef, ResourceResolver};
///
/// /// Every tenant's data is its own resource, named after the first path segment.
/// struct PerTenant;
///
/// impl ResourceResolver for PerTenant {
///     fn resolve(&self, req: &RequestInfo<'_>) -> Resolution {
///         match req.path.trim_start_matches('/').split('/').next() {
///             Some(tenant) if !tenant.is_empty() => {
///                 let scope = if req.method == Method::GET { "read" } else { "write" };
///                 Resolution::protected(ResourceRef::Name(format!("tenant-{tenant}")), [scope])
///             }
///             _ => Resolution::Unmapped,
///         }
///     }
/// }
///
/// let headers = HeaderMap::new();
/// let info = RequestInfo::new(&Method::POST, "/acme/orders", &headers, &[]);
/// assert_eq!(
///     PerTenant.resolve(&info),
///     Resolution::protected(ResourceRef::Name("tenant-acme".to_owned()), ["write"]),
/// );
/// ```
pub trait ResourceResolver: Send + Sync + 'static {
    /// What `req` needs.
    fn resolve(&self, req: &RequestInfo<'_>) -> Resolution;
}

impl<F> ResourceResolver for F
where
    F: Fn(&RequestInfo<'_>) -> Resolution + Send + Sync + 'static,
{
    fn resolve(&self, req: &RequestInfo<'_>) -> Resolution {
        self(req)
    }
}

impl ResourceResolver for ResourceMap {
    /// Normalises `req.path` and matches it; refused or ambiguous paths resolve to
    /// [`Resolution::Unmapped`] (use [`ResourceMap::resolve_request`] to tell them apart).
    fn resolve(&self, req: &RequestInfo<'_>) -> Resolution {
        self.resolve_request(req.method, req.path, req.headers)
            .unwrap_or(Resolution::Unmapped)
    }
}

/// How the layer maps requests: the [`ResourceMap`] (which also refuses ambiguous spellings),
/// or a resolver of the user's that replaces it.
pub(crate) enum Resolver {
    Map(ResourceMap),
    Custom(Arc<dyn ResourceResolver>),
}

impl Resolver {
    /// Checks the spelling of the method and of `raw_path` (the path as received), normalises
    /// the path and resolves the request.
    ///
    /// # Errors
    ///
    /// A [`PathError`] for a refused method or path spelling, or an ambiguous path.
    pub(crate) fn resolve<'m>(
        &'m self,
        method: &Method,
        raw_path: &str,
        headers: &HeaderMap,
    ) -> Result<Resolved<'m>, PathError> {
        match self {
            Self::Map(map) => map.resolve_raw(method, raw_path, headers),
            Self::Custom(resolver) => {
                if is_case_variant(method, &[]) {
                    return Err(PathError::MethodCase);
                }
                let path = normalize_path(raw_path)?;
                let info = RequestInfo::new(method, path.as_str(), headers, &[]);
                Ok(Resolved::from(resolver.resolve(&info)))
            }
        }
    }

    /// The resources the map declares (none for a resolver of the user's).
    pub(crate) fn declared(&self) -> Vec<ResourceDecl> {
        match self {
            Self::Map(map) => map.declared(),
            Self::Custom(_) => Vec::new(),
        }
    }

    /// Whether some request may be decided in enforcing mode whatever the layer's mode: a
    /// route overrides it to `Enforcing`, or a resolver (which may return such an override)
    /// decides.
    pub(crate) fn may_enforce(&self) -> bool {
        match self {
            Self::Map(map) => map.may_enforce(),
            Self::Custom(_) => true,
        }
    }

    /// See [`ResourceMap::bind`]; a resolver of the user's names resources per request, so
    /// nothing is bound.
    pub(crate) fn bind(&mut self, bind: impl Fn(&str) -> Option<Binding>) {
        if let Self::Map(map) = self {
            map.bind(bind);
        }
    }
}

#[cfg(test)]
mod tests;
