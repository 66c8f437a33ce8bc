//! Token introspection (RFC 7662, FedAuthz §5): the response model and the error type shared
//! by the HTTP introspector and the cache.

mod intern;
mod model;

pub use model::{Introspection, ParseError, Permission};

use crate::gate::report::Cause;
use crate::gate::{AsEndpoint, AsFailure, Refusal};

/// Why an introspection call did not produce an answer. Never carries a token or an AS body.
///
/// Cloneable because one failed call is shared by every request that was coalesced onto it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum IntrospectError {
    /// The AS could not be reached (connection refused or reset, DNS, TLS).
    #[error("introspection endpoint unreachable")]
    Unreachable,
    /// The AS did not answer within the configured timeout.
    #[error("introspection timed out")]
    Timeout,
    /// The AS answered with a non-200 status (after one PAT refresh on 401).
    #[error("introspection endpoint answered {0}")]
    Status(u16),
    /// The AS answered 200 with a body that is not an introspection response.
    #[error("introspection response unparsable")]
    Unparsable,
    /// No PAT could be had to authenticate the call.
    #[error("no protection API token")]
    NoPat,
    /// The call was not made: the layer's cap on AS calls was reached, or the endpoint's
    /// circuit is open.
    #[error("{0} endpoint not called: {1}")]
    NotCalled(AsEndpoint, Refusal),
}

impl AsFailure for IntrospectError {
    fn refused(endpoint: AsEndpoint, why: Refusal) -> Self {
        Self::NotCalled(endpoint, why)
    }

    fn cause(&self) -> Option<Cause> {
        match self {
            Self::Unreachable => Some(Cause::Unreachable),
            Self::Timeout => Some(Cause::Timeout),
            Self::Status(status) => Some(Cause::Status(*status)),
            Self::Unparsable => Some(Cause::Unparsable),
            Self::NoPat | Self::NotCalled(..) => None,
        }
    }
}
