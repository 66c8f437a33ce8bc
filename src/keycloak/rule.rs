//! From Keycloak's `paths` to tower-uma routes: the path syntax, and the scopes each method
//! needs, decided the way Keycloak's `PolicyEnforcer` decides them.

use std::sync::{Arc, OnceLock};

use http::Method;

use super::parse::{ClaimTemplates, MethodEntry, PathEntry};
use crate::resources::{
    PushedClaims, RequestInfo, Resolution, ResourceRef, ResourceResolver, Route, ScopeMode,
};

/// Every standard method (RFC 9110 §9 and PATCH): a path with `enforcement-mode: DISABLED`
/// lets all of them through without a token.
const ALL_METHODS: [Method; 9] = [
    Method::GET,
    Method::HEAD,
    Method::OPTIONS,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::PATCH,
    Method::TRACE,
    Method::CONNECT,
];

/// The tower-uma template for a Keycloak `path`, or why there is none.
///
/// Keycloak's matcher (`PathMatcher`) takes `{name}` parameters, a trailing `*` and suffix
/// patterns (`/*.html`); tower-uma's templates have whole-segment `{name}` parameters and a
/// trailing `*` segment. What the second cannot say is refused.
pub(crate) fn template_of(path: &str) -> Result<String, String> {
    if path == "*" || path == "/*" {
        return Ok("/*".to_owned());
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err(format!(
            "{path:?} does not start with `/`: request paths always do, so Keycloak never matches it"
        ));
    };
    let segments: Vec<&str> = rest.split('/').collect();
    // Keycloak compares the request path, without empty segments or a trailing `/`, with the
    // path as written: a path with either never matches there, where tower-uma's map would
    // match it as if written without (a public one would open a path Keycloak enforces).
    if path != "/" && segments.contains(&"") {
        let tidy = format!(
            "/{}",
            segments
                .iter()
                .filter(|s| !s.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join("/")
        );
        let what = if path.ends_with('/') {
            "ends with `/`"
        } else {
            "has an empty segment (`//`)"
        };
        return Err(format!(
            "{path:?} {what}: Keycloak's enforcer never matches such a path (it compares request \
             paths without trailing or doubled `/`), where tower-uma would match it as {tidy:?}; \
             write {tidy:?} if that is meant, or remove the entry"
        ));
    }
    let last = segments.len() - 1;
    let mut out = String::new();
    let mut params = 0;
    for (i, segment) in segments.iter().enumerate() {
        out.push('/');
        if segment.contains('*') {
            if i == last && *segment == "*" {
                out.push('*');
                continue;
            }
            if i == last && segment.starts_with("*.") {
                return Err(format!(
                    "{path:?}: the suffix pattern `*{}` (any path ending so) cannot be expressed; \
                     tower-uma's `*` stands for whole trailing segments",
                    &segment[1..]
                ));
            }
            return Err(format!(
                "{path:?}: `*` may only be the whole last segment (`/prefix/*`); Keycloak's `{segment}` \
                 also matches inside a segment, which tower-uma's templates cannot say"
            ));
        }
        if segment.contains('{') || segment.contains('}') {
            let whole = segment.starts_with('{')
                && segment.ends_with('}')
                && segment.matches('{').count() == 1
                && segment.matches('}').count() == 1
                && segment.len() > 2;
            if !whole {
                return Err(format!(
                    "{path:?}: a parameter must be a whole segment (`/albums/{{id}}`), not `{segment}`"
                ));
            }
            // Keycloak's parameter names may hold any character but `/`; the names are not
            // used, so they are renamed to what tower-uma's templates accept.
            params += 1;
            out.push_str(&format!("{{p{params}}}"));
            continue;
        }
        out.push_str(segment);
    }
    Ok(out)
}

/// The scopes a request with `method` needs, as Keycloak's enforcer computes them
/// (`PolicyEnforcer.getRequiredScopes`): the `methods` entry for exactly this method (its
/// scopes and `scopes-enforcement-mode`); otherwise the method's name when
/// `http-method-as-scope` is on, else the path's `scopes`, either matched with `ANY`. An empty
/// list needs any valid permission for the resource.
pub(crate) fn scopes_for(
    method: &Method,
    methods: &[MethodEntry],
    path_scopes: &[String],
    method_as_scope: bool,
) -> (Vec<String>, ScopeMode) {
    if let Some(entry) = methods.iter().find(|m| m.method == *method) {
        return (entry.scopes.clone(), entry.mode);
    }
    let scopes = if method_as_scope {
        vec![method.as_str().to_owned()]
    } else {
        path_scopes.to_vec()
    };
    (scopes, ScopeMode::Any)
}

/// The id of the resource a path without `name` or `id` stands for, found at the AS by the
/// path when the layer is built (see [`crate::keycloak::UriBinding`]); unset until then, or
/// when the AS has no such resource.
pub(crate) type UriCell = Arc<OnceLock<String>>;

/// Which resource a configured path protects.
#[derive(Debug)]
enum Target {
    /// By `name` or `id`.
    Ref(ResourceRef),
    /// By the path, resolved at build.
    ByUri(UriCell),
}

/// The rule of one configured path: decided per request by [`scopes_for`].
#[derive(Debug)]
pub(crate) struct PathRule {
    resource: Target,
    methods: Vec<MethodEntry>,
    scopes: Vec<String>,
    method_as_scope: bool,
}

impl ResourceResolver for PathRule {
    fn resolve(&self, req: &RequestInfo<'_>) -> Resolution {
        let resource = match &self.resource {
            Target::Ref(resource) => resource.clone(),
            Target::ByUri(cell) => match cell.get() {
                Some(id) => ResourceRef::Id(id.clone()),
                // The AS had no resource for the path: nothing can grant it, and Keycloak's
                // enforcer denies it (whatever `Unmapped` says; lazy paths do not re-decide it).
                None => return Resolution::Forbidden,
            },
        };
        let (scopes, scope_mode) = scopes_for(
            req.method,
            &self.methods,
            &self.scopes,
            self.method_as_scope,
        );
        Resolution::Protected {
            resource,
            scopes,
            scope_mode,
            enforcement: None,
        }
    }
}

/// The claims a path pushes: the section's `claims` (`everywhere`), and the path's own, which
/// replace a claim of the same name (Keycloak reads the path's after the section's). A
/// `{request.path['name']}` names one of the path's `{name}` parameters.
fn claims_of(entry: &PathEntry, everywhere: &ClaimTemplates) -> Result<PushedClaims, String> {
    let mut claims = PushedClaims::new();
    let own = |name: &String| entry.claims.iter().any(|(n, _)| n == name);
    let inherited = everywhere.iter().filter(|(n, _)| !own(n));
    for (name, templates) in inherited.chain(&entry.claims) {
        for t in templates {
            claims = claims.claim(name.clone(), t).map_err(|e| e.to_string())?;
        }
    }
    // The path's parameters, in order: renamed `p1`, `p2`… by `template_of`.
    let params: Vec<&str> = entry
        .path
        .split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .collect();
    if let Some(unknown) = claims.path_names().find(|n| !params.contains(n)) {
        return Err(format!(
            "a claim reads `{{request.path['{unknown}']}}`, and {:?} has no such parameter",
            entry.path
        ));
    }
    claims.rename_paths(|name| {
        params
            .iter()
            .position(|p| *p == name)
            .map(|i| format!("p{}", i + 1))
    });
    Ok(claims)
}

/// The route of one configured path; `cell` holds the resource of a path without `name` or
/// `id`, `everywhere` the claims every path pushes.
pub(crate) fn route_of(
    entry: &PathEntry,
    method_as_scope: bool,
    cell: &UriCell,
    everywhere: &ClaimTemplates,
) -> Result<Route, String> {
    let template = template_of(&entry.path)?;
    if entry.disabled {
        return Ok(Route::public(&template).public_methods(ALL_METHODS));
    }
    let claims = claims_of(entry, everywhere)?;
    let resource = match (&entry.name, &entry.id) {
        (Some(name), _) => Target::Ref(ResourceRef::Name(name.clone())),
        (None, Some(id)) => Target::Ref(ResourceRef::Id(id.clone())),
        (None, None) => Target::ByUri(Arc::clone(cell)),
    };
    Ok(Route::new(&template)
        .resolver(PathRule {
            resource,
            methods: entry.methods.clone(),
            scopes: entry.scopes.clone(),
            method_as_scope,
        })
        .push_claims(claims))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keycloak_paths_become_templates() {
        assert_eq!(template_of("/albums/{id}"), Ok("/albums/{p1}".to_owned()));
        assert_eq!(
            template_of("/a/{album id}/photos/{x.y}/*"),
            Ok("/a/{p1}/photos/{p2}/*".to_owned())
        );
        assert_eq!(template_of("*"), Ok("/*".to_owned()));
        assert_eq!(template_of("/*"), Ok("/*".to_owned()));
        assert_eq!(template_of("/api/*"), Ok("/api/*".to_owned()));
        assert_eq!(template_of("/api"), Ok("/api".to_owned()));
        assert_eq!(template_of("/"), Ok("/".to_owned()));
    }

    #[test]
    fn what_templates_cannot_say_is_refused() {
        for (path, says) in [
            ("/api*", "whole last segment"),
            ("/a/*/b", "whole last segment"),
            ("/static/*.html", "suffix pattern `*.html`"),
            ("/albums/{id}.json", "whole segment"),
            ("/albums/x{id}", "whole segment"),
            ("/albums/{}", "whole segment"),
            ("albums/{id}", "does not start with `/`"),
            ("/x/public/", "ends with `/`"),
            ("/x//public", "empty segment"),
            ("//x", "empty segment"),
            ("/x/*/", "ends with `/`"),
        ] {
            let e = template_of(path).expect_err(path);
            assert!(e.contains(says), "{path}: {e}");
        }
    }

    fn entry(method: Method, scopes: &[&str], mode: ScopeMode) -> MethodEntry {
        MethodEntry {
            method,
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            mode,
        }
    }

    #[test]
    fn scopes_follow_keycloaks_enforcer() {
        let methods = [
            entry(Method::GET, &["view"], ScopeMode::All),
            entry(Method::POST, &["a", "b"], ScopeMode::Any),
        ];
        let path = ["view".to_owned(), "edit".to_owned()];
        assert_eq!(
            scopes_for(&Method::GET, &methods, &path, false),
            (vec!["view".to_owned()], ScopeMode::All)
        );
        assert_eq!(
            scopes_for(&Method::POST, &methods, &path, false).1,
            ScopeMode::Any
        );
        // No entry: the path's scopes, ANY. HEAD does not follow GET in Keycloak.
        assert_eq!(
            scopes_for(&Method::HEAD, &methods, &path, false),
            (path.to_vec(), ScopeMode::Any)
        );
        // No entry, method as scope.
        assert_eq!(
            scopes_for(&Method::DELETE, &methods, &path, true),
            (vec!["DELETE".to_owned()], ScopeMode::Any)
        );
        // Nothing at all: any permission for the resource.
        assert_eq!(
            scopes_for(&Method::PUT, &[], &[], false),
            (vec![], ScopeMode::Any)
        );
    }
}
