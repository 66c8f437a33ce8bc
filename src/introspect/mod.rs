//! What the authorization server said about an RPT (RFC 7662, FedAuthz §5.1.1): an
//! [`Introspection`] with its [`Permission`]s, parsed tolerantly from JSON. The layer caches
//! it and hands it to the inner service in the [`UmaPrincipal`](crate::UmaPrincipal).

mod intern;
mod model;

pub use model::{Introspection, ParseError, Permission};
