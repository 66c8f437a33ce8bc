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
//!         Some(p) => format!("hello {}", p.subject.as_deref().unwrap_or("anonymous")),
//!         None => "not checked by UmaLayer".to_owned(),
//!     }
//! }
//! assert_eq!(handler(&Request::new(())), "not checked by UmaLayer");
//! ```

use crate::introspect::Permission;
use crate::token::Fingerprint;

/// The requesting party and permissions of an authorised request, inserted into the request
/// extensions before the inner service is called.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UmaPrincipal {
    /// The RPT's subject (`sub`), usually the requesting party.
    pub subject: Option<String>,
    /// The client the RPT was issued to (`client_id`).
    pub client_id: Option<String>,
    /// The resource this request was checked against.
    pub resource_id: String,
    /// The RPT's permissions for this resource that are valid now.
    pub permissions: Vec<Permission>,
    /// A fingerprint of the RPT, safe to log (never the token itself).
    pub token_fingerprint: Fingerprint,
}

impl UmaPrincipal {
    /// Whether the permissions for this resource include `scope`.
    #[must_use]
    pub fn has_scope(&self, scope: &str) -> bool {
        self.permissions
            .iter()
            .any(|p| p.resource_scopes.iter().any(|s| s == scope))
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
    /// `400`: an unusable path or malformed credentials.
    BadRequest,
}
