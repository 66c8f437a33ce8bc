//! Dialects: the defaults that make the layer work against the authorization servers people
//! run (docs/protocol.md §2–§9). Every default a dialect sets can still be overridden on the
//! builder.
//!
//! | | `Standard` | `Keycloak` | `Wso2` |
//! |---|---|---|---|
//! | issuer as written | `https://as.example` | `https://kc.example/realms/acme` | `https://is.example` (or its `/oauth2/token`) |
//! | discovery | `{issuer}/.well-known/uma2-configuration` | same (realm issuer) | none: endpoints derived from the host |
//! | endpoints without discovery | set by hand | `{issuer}/protocol/openid-connect/token`, `…/token/introspect`, `{issuer}/authz/protection/permission`, `…/resource_set`, `…/certs` | `/oauth2/token`, `/oauth2/introspect`, `/api/identity/oauth2/uma/permission/v1.0/permission`, `/api/identity/oauth2/uma/resourceregistration/v1.0/resource`, `/oauth2/jwks` |
//! | PAT | client credentials, `scope=uma_protection` | client credentials, no scope (Keycloak checks a client role) | the resource owner's password grant, `scope=uma_protection` (required) |
//! | introspection | Bearer PAT, no hint | client credentials (Basic), `token_type_hint=requesting_party_token` | Bearer PAT, no hint |
//! | permission body | array | array | array |
//! | permission with no scopes (absent or empty lists; unreadable ones grant nothing) | grants nothing | grants every scope of its resource (Keycloak's enforcer) | grants nothing |
//! | resource registration | as declared | as declared | `name`, `type`, `icon_uri`, `description` always sent (WSO2 requires them) |
//!
//! Answers are read tolerantly whatever the dialect: both permission namings (`resource_id`
//! and Keycloak's `rsid`), scope lists as strings or `{"name": …}` objects, `Location` or
//! not, `200`/`201`/`204` to updates, `409` on duplicate names, `code`/`description` errors.
//!
//! # Example
//!
//! ```
//! use tower_uma::{Dialect, UmaLayer};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_uma::Error> {
//! // Keycloak, configured the way its users write the issuer, without discovery:
//! let layer = UmaLayer::builder("https://kc.example/realms/acme", "photo-api", "secret")
//!     .dialect(Dialect::Keycloak)
//!     .build()
//!     .await?;
//! assert_eq!(layer.as_uri(), "https://kc.example/realms/acme");
//! # Ok(()) }
//! ```

use std::fmt;
use std::str::FromStr;

use crate::protection::introspection::IntrospectionAuth;

/// The family of authorization server the layer talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Dialect {
    /// UMA 2.0 as specified (Grant, FedAuthz, RFC 7662).
    #[default]
    Standard,
    /// Keycloak's authorization services.
    Keycloak,
    /// WSO2 Identity Server's UMA connector.
    Wso2,
}

/// Reads a dialect's name, ignoring ASCII case: `standard` (also `uma`), `keycloak` or
/// `wso2`; uma-proxy's `dialect` key takes these values.
///
/// ```
/// use tower_uma::{Dialect, dialect::ParseDialectError};
///
/// assert_eq!("keycloak".parse(), Ok(Dialect::Keycloak));
/// assert_eq!("WSO2".parse(), Ok(Dialect::Wso2));
/// let error: ParseDialectError = "gluu".parse::<Dialect>().unwrap_err();
/// assert_eq!(
///     error.to_string(),
///     r#"unknown dialect "gluu": use "standard", "keycloak" or "wso2""#
/// );
/// ```
impl FromStr for Dialect {
    type Err = ParseDialectError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "standard" | "uma" => Ok(Self::Standard),
            "keycloak" => Ok(Self::Keycloak),
            "wso2" => Ok(Self::Wso2),
            _ => Err(ParseDialectError { name: s.to_owned() }),
        }
    }
}

/// Why a string is not a [`Dialect`] name (see its `FromStr` implementation).
///
/// `Display` reads `unknown dialect "gluu": use "standard", "keycloak" or "wso2"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseDialectError {
    name: String,
}

impl ParseDialectError {
    /// The name that was refused, as written.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for ParseDialectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown dialect {:?}: use \"standard\", \"keycloak\" or \"wso2\"",
            self.name
        )
    }
}

impl std::error::Error for ParseDialectError {}

/// Endpoints found elsewhere than the builder: in the discovery document, or derived by a
/// dialect from the issuer when neither discovery nor the user sets them.
#[derive(Debug, Default)]
pub(crate) struct DerivedEndpoints {
    pub(crate) token: Option<String>,
    pub(crate) introspection: Option<String>,
    pub(crate) permission: Option<String>,
    pub(crate) registration: Option<String>,
    pub(crate) jwks: Option<String>,
}

impl Dialect {
    /// Whether the AS publishes a UMA discovery document.
    pub(crate) fn has_discovery(self) -> bool {
        self != Self::Wso2
    }

    pub(crate) fn introspection_auth(self) -> IntrospectionAuth {
        match self {
            Self::Keycloak => IntrospectionAuth::ClientCredentials,
            Self::Standard | Self::Wso2 => IntrospectionAuth::BearerPat,
        }
    }

    pub(crate) fn token_type_hint(self) -> Option<String> {
        match self {
            Self::Keycloak => Some("requesting_party_token".to_owned()),
            Self::Standard | Self::Wso2 => None,
        }
    }

    pub(crate) fn pat_scope(self) -> Option<String> {
        match self {
            Self::Keycloak => None,
            Self::Standard | Self::Wso2 => Some("uma_protection".to_owned()),
        }
    }

    pub(crate) fn empty_scopes_grant_all(self) -> bool {
        self == Self::Keycloak
    }

    /// WSO2 declares `name`, `type`, `icon_uri` and `description` required.
    pub(crate) fn sends_all_resource_fields(self) -> bool {
        self == Self::Wso2
    }

    /// The endpoints this dialect's servers have under `issuer`.
    pub(crate) fn derive_endpoints(self, issuer: &str) -> DerivedEndpoints {
        let issuer = issuer.trim_end_matches('/');
        match self {
            Self::Standard => DerivedEndpoints::default(),
            Self::Keycloak => DerivedEndpoints {
                token: Some(format!("{issuer}/protocol/openid-connect/token")),
                introspection: Some(format!("{issuer}/protocol/openid-connect/token/introspect")),
                permission: Some(format!("{issuer}/authz/protection/permission")),
                registration: Some(format!("{issuer}/authz/protection/resource_set")),
                jwks: Some(format!("{issuer}/protocol/openid-connect/certs")),
            },
            Self::Wso2 => {
                let base = origin(issuer);
                DerivedEndpoints {
                    token: Some(format!("{base}/oauth2/token")),
                    introspection: Some(format!("{base}/oauth2/introspect")),
                    permission: Some(format!(
                        "{base}/api/identity/oauth2/uma/permission/v1.0/permission"
                    )),
                    registration: Some(format!(
                        "{base}/api/identity/oauth2/uma/resourceregistration/v1.0/resource"
                    )),
                    jwks: Some(format!("{base}/oauth2/jwks")),
                }
            }
        }
    }
}

/// `scheme://host[:port]` of a URL (the whole string when it does not parse).
fn origin(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => u.origin().ascii_serialization(),
        Err(_) => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keycloak_paths_hang_off_the_realm_issuer() {
        let e = Dialect::Keycloak.derive_endpoints("https://kc.test/realms/acme/");
        assert_eq!(
            e.introspection.as_deref(),
            Some("https://kc.test/realms/acme/protocol/openid-connect/token/introspect")
        );
        assert_eq!(
            e.registration.as_deref(),
            Some("https://kc.test/realms/acme/authz/protection/resource_set")
        );
    }

    #[test]
    fn wso2_paths_hang_off_the_host() {
        let e = Dialect::Wso2.derive_endpoints("https://is.test:9443/oauth2/token");
        assert_eq!(
            e.token.as_deref(),
            Some("https://is.test:9443/oauth2/token")
        );
        assert_eq!(
            e.permission.as_deref(),
            Some("https://is.test:9443/api/identity/oauth2/uma/permission/v1.0/permission")
        );
    }

    #[test]
    fn parse_names() {
        assert_eq!("Keycloak".parse(), Ok(Dialect::Keycloak));
        assert_eq!("wso2".parse(), Ok(Dialect::Wso2));
        assert_eq!("standard".parse(), Ok(Dialect::Standard));
        assert_eq!("uma".parse(), Ok(Dialect::Standard));
        let e = "Gluu".parse::<Dialect>().unwrap_err();
        assert_eq!(e.name(), "Gluu");
        assert!(e.to_string().contains("\"Gluu\"") && e.to_string().contains("keycloak"));
        assert!(" keycloak".parse::<Dialect>().is_err(), "no trimming");
    }
}
