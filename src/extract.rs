//! The axum extractor for [`UmaPrincipal`] (feature `axum`).
//!
//! # Example
//!
//! ```
//! use axum::{Router, routing::get};
//! use tower_uma::UmaPrincipal;
//!
//! async fn album(principal: UmaPrincipal) -> String {
//!     format!(
//!         "{} may view: {}",
//!         principal.subject().unwrap_or("someone"),
//!         principal.has_scope("view")
//!     )
//! }
//!
//! // Option<UmaPrincipal> works on routes the layer may let through unchecked.
//! async fn health(principal: Option<UmaPrincipal>) -> &'static str {
//!     if principal.is_some() { "checked" } else { "public" }
//! }
//!
//! let app: Router = Router::new()
//!     .route("/albums/{id}", get(album))
//!     .route("/health", get(health));
//! ```

use std::convert::Infallible;

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;

use crate::principal::UmaPrincipal;

/// The rejection of the [`UmaPrincipal`] extractor: the request was not authorised by
/// `UmaLayer` (a public or unmapped route, or permissive mode let it through).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct MissingPrincipal;

impl MissingPrincipal {
    /// `403 Forbidden`.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        StatusCode::FORBIDDEN
    }

    /// A short explanation for the response body.
    #[must_use]
    pub fn body_text(&self) -> String {
        "this request was not authorised by UmaLayer".to_owned()
    }
}

impl std::fmt::Display for MissingPrincipal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.body_text())
    }
}

impl std::error::Error for MissingPrincipal {}

impl IntoResponse for MissingPrincipal {
    fn into_response(self) -> Response {
        (self.status(), self.body_text()).into_response()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for UmaPrincipal {
    type Rejection = MissingPrincipal;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Self>()
            .cloned()
            .ok_or(MissingPrincipal)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for UmaPrincipal {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Self>().cloned())
    }
}
