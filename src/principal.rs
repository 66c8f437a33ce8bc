//! What the layer tells the inner service and the client: the [`UmaPrincipal`] of an
//! authorised request, and the [`Rejection`] attached to a refused one.
//!
//! # Example
//!
//! ```
//! use http::Request;
//! use tower_uma::UmaPrincipal;
//!
//! fn handler(req: &Request<()>) -> String {
//!     match req.extensions().get::<UmaPrincipal>() {
//!         Some(p) => format!("hello {}", p.subject().unwrap_or("anonymous")),
//!         None => "not checked by UmaLayer".to_owned(),
//!     }
//! }
//! assert_eq!(handler(&Request::new(())), "not checked by UmaLayer");
//! ```

use std::sync::Arc;

use crate::introspect::{Introspection, Permission};
use crate::token::Fingerprint;

/// Which permissions of an introspection result apply to this request: a bit per permission
/// for the first 64 (the common case, no allocation), a list beyond that.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Granted {
    Bits(u64),
    List(Vec<usize>),
}

impl Granted {
    pub(crate) fn contains(&self, i: usize) -> bool {
        match self {
            Self::Bits(b) => i < 64 && b & (1u64 << i) != 0,
            Self::List(l) => l.contains(&i),
        }
    }

    /// The lowest index granted, if any.
    fn first(&self) -> Option<usize> {
        match self {
            Self::Bits(0) => None,
            Self::Bits(b) => Some(b.trailing_zeros() as usize),
            Self::List(l) => l.iter().min().copied(),
        }
    }
}

/// Where a principal's resource id is kept.
#[derive(Clone, PartialEq, Eq)]
enum ResourceId {
    /// In the granted permission at this index (every granted permission names the resource
    /// the request was checked against): nothing copied, nothing counted.
    Granted(usize),
    /// A copy of its own (no permission granted: not made by the layer's decisions).
    Own(Arc<str>),
}

/// The requesting party and permissions of an authorised request, inserted into the request
/// extensions before the inner service is called.
///
/// Cheap to make and to clone: it shares the (cached) introspection result instead of
/// copying it.
#[derive(Clone, PartialEq, Eq)]
pub struct UmaPrincipal {
    introspection: Arc<Introspection>,
    resource_id: ResourceId,
    granted: Granted,
    token_fingerprint: Fingerprint,
}

impl UmaPrincipal {
    /// The principal of a request checked against `resource_id` and granted by the
    /// permissions `granted` of `introspection`, each of which names `resource_id` (as the
    /// decision grants them).
    pub(crate) fn new(
        introspection: Arc<Introspection>,
        resource_id: &str,
        granted: Granted,
        token_fingerprint: Fingerprint,
    ) -> Self {
        let resource_id = match granted.first() {
            Some(i) => {
                debug_assert!(
                    introspection
                        .permissions()
                        .iter()
                        .enumerate()
                        .all(|(j, p)| !granted.contains(j) || p.resource_id() == resource_id),
                    "a granted permission names another resource"
                );
                ResourceId::Granted(i)
            }
            None => ResourceId::Own(Arc::from(resource_id)),
        };
        Self {
            introspection,
            resource_id,
            granted,
            token_fingerprint,
        }
    }

    /// The RPT's subject (`sub`), usually the requesting party.
    #[must_use]
    pub fn subject(&self) -> Option<&str> {
        self.introspection.sub()
    }

    /// The client the RPT was issued to (`client_id`).
    #[must_use]
    pub fn client_id(&self) -> Option<&str> {
        self.introspection.client_id()
    }

    /// The resource this request was checked against.
    #[must_use]
    pub fn resource_id(&self) -> &str {
        match &self.resource_id {
            ResourceId::Granted(i) => self.introspection.permissions()[*i].resource_id(),
            ResourceId::Own(id) => id,
        }
    }

    /// The RPT's permissions for this resource that were valid when the request was checked.
    pub fn permissions(&self) -> impl Iterator<Item = &Permission> + '_ {
        self.introspection
            .permissions()
            .iter()
            .enumerate()
            .filter(|(i, _)| self.granted.contains(*i))
            .map(|(_, p)| p)
    }

    /// The scopes granted on this resource, each once, in order of appearance.
    #[must_use]
    pub fn scopes(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for s in self.permissions().flat_map(Permission::resource_scopes) {
            if !out.contains(&s) {
                out.push(s);
            }
        }
        out
    }

    /// Whether the permissions for this resource include `scope`.
    #[must_use]
    pub fn has_scope(&self, scope: &str) -> bool {
        self.permissions().any(|p| p.has_scope(scope))
    }

    /// A fingerprint of the RPT, safe to log (never the token itself).
    #[must_use]
    pub fn token_fingerprint(&self) -> Fingerprint {
        self.token_fingerprint
    }

    /// The whole introspection result (or locally validated RPT) behind this request.
    #[must_use]
    pub fn introspection(&self) -> &Introspection {
        &self.introspection
    }
}

impl std::fmt::Debug for UmaPrincipal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UmaPrincipal")
            .field("introspection", &self.introspection)
            .field("resource_id", &self.resource_id())
            .field("granted", &self.granted)
            .field("token_fingerprint", &self.token_fingerprint)
            .finish()
    }
}

/// Why the layer refused a request; attached to the extensions of the response it made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    /// `401` with a UMA challenge: no RPT, or one that does not grant this request.
    Challenged,
    /// `403` with `Warning: 199 - "UMA Authorization Server Unreachable"`: no ticket or no
    /// introspection answer could be had.
    AsUnreachable,
    /// `403`: the request matches no mapped route.
    Unmapped,
    /// `400`: an unusable path or method spelling, malformed credentials, a refused method
    /// override, or a header that a route's pushed claims read, also sent under another
    /// spelling (`X_Org` for `X-Org`).
    BadRequest,
    /// `405` with `Allow`: the matched route does not list the request's method.
    MethodNotAllowed,
    /// `403` without a ticket: permission exchange (see
    /// [`PermissionExchange`](crate::keycloak::PermissionExchange)) asked the AS for the
    /// permissions of the request's token, and it refused them.
    Denied,
    /// `403`: axum's router runs a route other than the one whose rule the layer applied
    /// (checked for routes declared with `tower_uma::axum::UmaRouter`, feature `axum`).
    RouteMismatch,
    /// `415`: the route pushes claims from the JSON body, and the request's body cannot be
    /// read as its upstream would read it: compressed (`Content-Encoding`), JSON in another
    /// charset than UTF-8, or not labelled JSON and not empty. Decided before any call to an
    /// authorization server.
    UnsupportedMediaType,
    /// `500`: the layer cannot decide as configured: the route pushes claims from the JSON
    /// body of the request, and no [`ClaimBodyLayer`](crate::resources::ClaimBodyLayer) read it;
    /// or a [`TenantLayer`](crate::tenant::TenantLayer) tenant that strips its path prefix
    /// took a request axum's router had already routed (the layer added with `Router::layer`
    /// instead of around the router).
    Misconfigured,
    /// `404`: a [`TenantLayer`](crate::tenant::TenantLayer) found no tenant for the request
    /// (no `Host`, path prefix, header or token issuer of a configured tenant, and none its
    /// resolver names). Decided before any call to an authorization server.
    UnknownTenant,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intro() -> Arc<Introspection> {
        let json = br#"{"active": true, "sub": "bob", "permissions": [
            {"resource_id": "other", "resource_scopes": ["x"]},
            {"resource_id": "album-1", "resource_scopes": ["view"]},
            {"resource_id": "album-1", "resource_scopes": ["edit", "view"]}]}"#;
        Arc::new(Introspection::from_json(json).expect("an introspection"))
    }

    /// The resource id is read from the first granted permission, or kept apart when none is
    /// granted; either way the principal says which resource and which permissions.
    #[test]
    fn the_resource_id_comes_from_the_granted_permissions() {
        let fp = Fingerprint::of(b"rpt");
        let two = UmaPrincipal::new(intro(), "album-1", Granted::Bits(0b110), fp);
        assert_eq!(two.resource_id(), "album-1");
        assert_eq!(two.scopes(), ["view", "edit"]);
        assert!(two.has_scope("edit") && !two.has_scope("x"));
        let list = UmaPrincipal::new(intro(), "album-1", Granted::List(vec![2, 1]), fp);
        assert_eq!(list.resource_id(), "album-1");
        assert_eq!(list.permissions().count(), 2);
        let none = UmaPrincipal::new(intro(), "album-9", Granted::Bits(0), fp);
        assert_eq!(none.resource_id(), "album-9");
        assert_eq!(none.permissions().count(), 0);
        let debug = format!("{two:?}");
        assert!(debug.contains("resource_id: \"album-1\""), "{debug}");
        assert!(!debug.contains("rpt"), "{debug}");
    }
}
