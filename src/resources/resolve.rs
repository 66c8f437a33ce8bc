//! From a request to what it needs: [`RequestInfo`], [`Resolution`] and the
//! [`ResourceResolver`] trait for users; `Resolved`, `Protected` and `Resolver` for the
//! pipeline.

use super::*;

/// What a [`ResourceResolver`] may look at.
///
/// Its `Debug` output lists header names only, since header values carry the bearer token.
///
/// # Example
///
/// ```
/// use http::{HeaderMap, Method};
/// use tower_uma::resources::{RequestInfo, Resolution, ResourceRef, ResourceResolver};
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
    /// A route matches the request but nothing can grant it (a resource the AS does not
    /// have): refused with `403` in enforcing mode, whatever
    /// [`Unmapped`](crate::resources::Unmapped) says, and never resolved at the AS by lazy
    /// paths.
    Forbidden,
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
    /// The claims the route pushes, with the route's captures to read them from.
    pub(crate) claims: Option<Pushing>,
}

/// A route's pushed claims and the captures of the request that matched it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Pushing {
    pub(crate) claims: Arc<PushedClaims>,
    pub(crate) params: Vec<(String, String)>,
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
            claims: self.claims,
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
    /// See [`Resolution::Forbidden`].
    Forbidden,
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
            Self::Forbidden => Resolution::Forbidden,
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
                claims: None,
            }),
            Resolution::Public => Self::Public,
            Resolution::Unmapped => Self::Unmapped,
            Resolution::Forbidden => Self::Forbidden,
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
    /// use tower_uma::resources::{Resolution, ResourceRef, ScopeMode};
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
/// use tower_uma::resources::{RequestInfo, Resolution, ResourceRef, ResourceResolver};
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
