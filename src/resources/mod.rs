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
//! use tower_uma::{ResourceDecl, ResourceMap, Route, resources::{Resolution, ResourceRef}};
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
//! match map.resolve_request(&Method::PUT, "/albums//7/", &headers)? {
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
mod body;
mod claims;
mod error;
mod literal;
mod map;
mod method;
mod path;
mod resolve;
mod route;
mod template;

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use http::{HeaderMap, Method};
use serde::Serialize;

pub(crate) use self::method::check_route_method;
pub(crate) use self::method::is_case_variant;
pub use self::path::PathError;
pub(crate) use self::path::normalize_path;
use self::path::{NormalizedPath, PLAIN_SEGMENTS, plain_segments};
use self::template::{Lens, Segment, Template};
pub use crate::pipeline::Unmapped;
use crate::registration::Binding;

// Every file's items, for the siblings (each file starts with `use super::*`) and the tests.
#[allow(unused_imports, reason = "not every item is used by a sibling")]
use self::error::*;
#[allow(unused_imports, reason = "not every item is used by a sibling")]
use self::map::*;
#[allow(unused_imports, reason = "not every item is used by a sibling")]
use self::resolve::*;
#[allow(unused_imports, reason = "not every item is used by a sibling")]
use self::route::*;

pub(crate) use self::body::{BodyRead, is_json, unusable_body};
pub use self::body::{ClaimBody, ClaimBodyLayer};
pub(crate) use self::claims::{ClaimRequest, ClaimValues, NO_CLAIMS};
pub use self::claims::{ClaimTemplateError, PushedClaims};
pub use self::error::ResourceMapError;
pub use self::map::ResourceMap;
pub(crate) use self::resolve::{Protected, Pushing, Resolved, Resolver};
pub use self::resolve::{RequestInfo, Resolution, ResourceResolver};
pub use self::route::{EnforcementMode, ResourceDecl, ResourceRef, Route, ScopeMode};

#[cfg(test)]
mod tests;
