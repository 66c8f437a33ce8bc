//! [`ResourceMap`]: the route table, its matching rules and their precedence.

use super::*;

/// A route together with its parsed template (`None` when the template is invalid).
#[derive(Clone, Debug)]
pub(super) struct Entry {
    pub(super) route: Route,
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
///   encoding); `?` or `#`; escapes that do not decode to UTF-8; a path not starting with `/`;
///   a path starting with `//` ([`PathError::NetworkPath`]: a network-path reference to an
///   upstream that resolves the target as a URI reference).
/// - Empty segments further in and a trailing slash are dropped: `/albums//1` and
///   `/albums/1/` are both `/albums/1` and get its rule, unless the path as received selects
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
/// segment when more follow: `/x//albums/1` is `/x/{a}/albums/{id}` there) and a trailing slash
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
/// use tower_uma::{ResourceMap, Route, resources::{PathError, Resolution}};
///
/// let map = ResourceMap::new()
///     .route(Route::public("/albums"))
///     .route(Route::new("/*").resource_id("everything").any_method(["admin"]));
/// let headers = HeaderMap::new();
/// let resolve = |path| map.resolve_request(&Method::GET, path, &headers);
/// assert_eq!(resolve("/albums")?, Resolution::Public);
/// // axum runs the protected `/{*rest}` for these.
/// assert_eq!(resolve("/albums/"), Err(PathError::AsReceived));
/// assert_eq!(resolve("/albums//"), Err(PathError::AsReceived));
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
///    whatever the layer's [`Unmapped`] setting says, which concerns only
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
/// use tower_uma::{ResourceMap, Route, resources::{PathError, Resolution, ResourceRef}};
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
/// assert_eq!(resource("/admin//users/"), Some(ResourceRef::Id("admin".to_owned())));
/// // A network-path reference to an upstream that resolves the target as a URI reference.
/// assert_eq!(resolve("//admin/users"), Err(PathError::NetworkPath));
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
/// use tower_uma::{ResourceMap, Route, resources::ResourceMapError};
///
/// let map = ResourceMap::new()
///     .route(Route::new("/a/{x}").resource_id("a").any_method(["read"]))
///     .route(Route::new("/A/{y}").resource_id("b").any_method(["read"]));
/// assert!(matches!(map.validate(), Err(ResourceMapError::DuplicateRoute { .. })));
/// ```
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct ResourceMap {
    pub(super) entries: Vec<Entry>,
    /// The first problem found, if any.
    pub(super) error: Option<ResourceMapError>,
    /// Whether some literal template segment keeps an escape.
    escaped_literals: bool,
    /// Whether some literal template segment is written otherwise than canonically.
    rewritten_literals: bool,
    /// Every method some route names, once each.
    methods: Vec<Method>,
    /// The routes without parameters, wildcard or resolver, by path: see [`literal`](super::literal).
    literals: super::literal::Literals,
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
        if let Some(path) = template.as_ref().and_then(Template::literal_path)
            && route.resolver.is_none()
        {
            self.literals.insert(path, self.entries.len());
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

    /// Whether a route pushes claims from the request body (`{request.body['…']}`): then a
    /// [`ClaimBodyLayer`](super::ClaimBodyLayer) must read JSON bodies outside the layer.
    #[must_use]
    pub fn reads_body(&self) -> bool {
        self.entries
            .iter()
            .any(|e| e.route.claims.as_ref().is_some_and(|c| c.reads_body()))
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
    pub(super) fn resolve_raw(
        &self,
        method: &Method,
        raw_path: &str,
        headers: &HeaderMap,
    ) -> Result<Resolved<'_>, PathError> {
        self.check_method(method)?;
        let quick = self
            .resolve_literal(method, raw_path)
            .or_else(|| self.resolve_plain(method, raw_path));
        if let Some(resolved) = quick {
            debug_assert_eq!(
                self.resolve_path(method, raw_path, headers).as_ref(),
                Ok(&resolved),
                "{method} {raw_path}"
            );
            return Ok(resolved);
        }
        self.resolve_path(method, raw_path, headers)
    }

    /// The full resolution of a request whose method is checked: its path normalised, then
    /// matched against every template.
    fn resolve_path(
        &self,
        method: &Method,
        raw_path: &str,
        headers: &HeaderMap,
    ) -> Result<Resolved<'_>, PathError> {
        let path = normalize_path(raw_path)?;
        self.resolve_normalized(method, &path, headers)
    }

    /// The full resolution, without the quick ways (literal routes, plain paths), for tests
    /// comparing both.
    #[cfg(test)]
    pub(super) fn resolve_in_full(
        &self,
        method: &Method,
        raw_path: &str,
        headers: &HeaderMap,
    ) -> Result<Resolved<'_>, PathError> {
        self.check_method(method)?;
        self.resolve_path(method, raw_path, headers)
    }

    /// Whether `raw_path` takes the literal routes' way (for tests).
    #[cfg(test)]
    pub(super) fn takes_literal_way(&self, method: &Method, raw_path: &str) -> bool {
        self.resolve_literal(method, raw_path).is_some()
    }

    /// Whether `raw_path` takes the plain paths' way (for tests).
    #[cfg(test)]
    pub(super) fn takes_plain_way(&self, method: &Method, raw_path: &str) -> bool {
        self.resolve_literal(method, raw_path).is_none()
            && self.resolve_plain(method, raw_path).is_some()
    }

    /// Whether the quick ways (literal routes, plain paths) may answer at all: the map is valid
    /// and no template keeps or rewrites an escape (a path's spelling could then select
    /// another rule than its bytes show).
    #[inline]
    fn quick_ways_apply(&self) -> bool {
        self.error.is_none() && !self.escaped_literals && !self.rewritten_literals
    }

    /// The rule of the [literal route](super::literal) whose template is `raw_path`, byte for
    /// byte: what [`resolve_normalized`](Self::resolve_normalized) decides for it, without
    /// normalising the path or matching templates. `None` when no such route applies, the
    /// map's templates keep or rewrite escapes, or the route is public and does not let the
    /// method through (it falls through to other routes): the full resolution answers then.
    #[inline]
    fn resolve_literal(&self, method: &Method, raw_path: &str) -> Option<Resolved<'_>> {
        if !self.quick_ways_apply() {
            return None;
        }
        let route = &self.entries[self.literals.get(raw_path)?].route;
        match route.fixed_rule(method, Vec::new) {
            Some(rule) => Some(rule),
            None if !route.public => Some(route.method_not_allowed()),
            None => None,
        }
    }

    /// What [`resolve_normalized`](Self::resolve_normalized) decides for a path in canonical
    /// form made of plain bytes only ([`plain_segments`]), when the decision needs none of its
    /// cross-checks: the best route under the layer's own view matches the path's literals in
    /// their exact case, no `*` of it matches nothing, and it has no resolver of the user's and
    /// takes the method (or, protected, refuses it). Then no escape can make a decoding
    /// upstream choose otherwise, a case-sensitive router chooses the same route, and a router
    /// matching the path as received sees these very segments (the path is verbatim), so the
    /// full resolution comes down to this route's rule. `None` in every other case, and when
    /// a template keeps or rewrites an escape: the full resolution answers then. Debug builds
    /// check every answer against it.
    #[inline]
    fn resolve_plain(&self, method: &Method, raw_path: &str) -> Option<Resolved<'_>> {
        if !self.quick_ways_apply() {
            return None;
        }
        let mut spare = [""; PLAIN_SEGMENTS];
        let segments = plain_segments(raw_path, &mut spare)?;
        // `select` under `Lens::CANONICAL`, learning in the same pass whether the best route
        // matches under `Lens::EXACT_CASE` too.
        let mut best: Option<(usize, &Template, bool)> = None;
        for (index, template) in self.templates() {
            if let Some(exact) = template.matches_plain(segments)
                && best.is_none_or(|(_, b, _)| template.precedence() > b.precedence())
            {
                best = Some((index, template, exact));
            }
        }
        let Some((best, template, exact)) = best else {
            // No route matches, nor does any as received (the same segments, the same case
            // ignored or not).
            return Some(Resolved::Unmapped);
        };
        let route = &self.entries[best].route;
        if route.resolver.is_some() || !exact || template.wildcard_matches_nothing(segments) {
            return None;
        }
        match route.fixed_rule(method, || template.captures(segments)) {
            Some(rule) => Some(rule),
            None if !route.public => Some(route.method_not_allowed()),
            // A public route that does not let the method through: it falls through.
            None => None,
        }
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
        let selected = self.select(path.segments(), Lens::CANONICAL);
        let escapes = path.has_escapes() || self.escaped_literals;
        if escapes && self.select(path.segments(), Lens::DECODED) != selected {
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
        let best = self.select(received.segments(), Lens::RECEIVED);
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
            let other = match self.select(path.segments(), Lens::EXACT_CASE) {
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
    pub(super) fn select<S: Segment>(&self, path: &[S], lens: Lens) -> Option<usize> {
        let mut best: Option<(usize, &Template)> = None;
        for (index, template) in self.matching(path, lens) {
            if best.is_none_or(|(_, b)| template.precedence() > b.precedence()) {
                best = Some((index, template));
            }
        }
        best.map(|(index, _)| index)
    }

    /// The routes whose templates match `path` under `lens`, with their index.
    fn matching<'s, S: Segment>(
        &'s self,
        path: &'s [S],
        lens: Lens,
    ) -> impl Iterator<Item = (usize, &'s Template)> {
        self.templates()
            .filter(move |(_, template)| template.matches(path, lens))
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
        for (other, template) in self
            .matching(path.segments(), lens)
            .filter(|(i, _)| *i != index)
        {
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
