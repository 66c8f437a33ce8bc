//! Token introspection (RFC 7662, FedAuthz §5): the response model. The call itself and its
//! error are the protection client's (`crate::protection`).

mod intern;
mod model;

pub use model::{Introspection, ParseError, Permission};
