//! [`ResourceMapError`]: why a route table is not usable.

#[cfg(doc)]
use super::{ResourceMap, Route};

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
