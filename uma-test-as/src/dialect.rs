//! Where each endpoint lives and what the protocol's names are.
//!
//! The Keycloak and WSO2 dialects (docs/protocol.md §2–§9 at the repository root) move the
//! endpoints (`/realms/{realm}/authz/protection/…`, `/api/identity/oauth2/uma/…`) and rename
//! members.
//! Every path and wire name the server uses is therefore looked up here ([`Layout`] and
//! [`names`]), never spelled inline in a handler; the handlers only branch on [`Dialect`] for
//! the answers that differ.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserialize, Deserializer};

/// One of the server's HTTP endpoints, used for counters, recordings and fault knobs.
///
/// The paths below are the standard dialect's; a [`Dialect`] moves them (the crate README
/// lists every dialect's paths) but keeps the endpoint, so counters, recordings and fault
/// knobs work the same way whatever the dialect.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `GET /.well-known/uma2-configuration` ([UMA Grant §2](https://docs.kantarainitiative.org/uma/wg/rec-oauth-uma-grant-2.0.html#as-config)).
    Discovery,
    /// `POST /token`: PATs, ID tokens and RPTs.
    Token,
    /// `POST /introspect` ([RFC 7662](https://www.rfc-editor.org/rfc/rfc7662), FedAuthz §5).
    Introspection,
    /// `POST /permission` (FedAuthz §4): permission tickets.
    Permission,
    /// `/resource_set` and `/resource_set/{id}` (FedAuthz §3).
    ResourceRegistration,
    /// `POST /revoke` ([RFC 7009](https://www.rfc-editor.org/rfc/rfc7009)).
    Revocation,
    /// `GET /jwks`: the key that signs ID tokens and JWT RPTs.
    Jwks,
    /// `/admin/requests…`: the owner's view of pending approval requests.
    Admin,
}

impl Endpoint {
    /// Every endpoint, in declaration order.
    pub const ALL: [Self; 8] = [
        Self::Discovery,
        Self::Token,
        Self::Introspection,
        Self::Permission,
        Self::ResourceRegistration,
        Self::Revocation,
        Self::Jwks,
        Self::Admin,
    ];

    /// Number of endpoints, the size of per-endpoint tables.
    pub(crate) const COUNT: usize = Self::ALL.len();

    /// Position in per-endpoint tables.
    pub(crate) const fn index(self) -> usize {
        match self {
            Self::Discovery => 0,
            Self::Token => 1,
            Self::Introspection => 2,
            Self::Permission => 3,
            Self::ResourceRegistration => 4,
            Self::Revocation => 5,
            Self::Jwks => 6,
            Self::Admin => 7,
        }
    }
}

/// The authorization server whose wire format the server imitates (docs/protocol.md §2–§9).
///
/// Parsed from `standard`, `keycloak` or `wso2` (case-insensitive) by [`FromStr`](std::str::FromStr),
/// the `dialect` key of the configuration file and the binary's `--dialect` flag.
///
/// # Example
///
/// ```
/// use uma_test_as::Dialect;
///
/// assert_eq!("Keycloak".parse::<Dialect>(), Ok(Dialect::Keycloak));
/// assert_eq!(Dialect::Wso2.to_string(), "wso2");
/// assert!("gluu".parse::<Dialect>().is_err());
/// ```
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// UMA 2.0 Grant + FedAuthz + RFC 7662 as written.
    #[default]
    Standard,
    /// Keycloak's authorization services: everything under `/realms/{realm}/…`, JWT access
    /// tokens and tickets, client-authenticated introspection with the `requesting_party_token`
    /// hint, Keycloak's resource representation and grant errors.
    Keycloak,
    /// WSO2 Identity Server's UMA connector: no discovery, user-bound PATs, `code`/`description`
    /// errors on the resource API, a generic `invalid_grant` for every failed grant.
    Wso2,
}

impl Dialect {
    /// Every dialect, in declaration order.
    pub const ALL: [Self; 3] = [Self::Standard, Self::Keycloak, Self::Wso2];

    /// The lower-case name: `standard`, `keycloak` or `wso2`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Standard => "standard",
            Self::Keycloak => "keycloak",
            Self::Wso2 => "wso2",
        }
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a string is not a dialect name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseDialectError(String);

impl fmt::Display for ParseDialectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown dialect `{}`: expected `standard`, `keycloak` or `wso2`",
            self.0
        )
    }
}

impl std::error::Error for ParseDialectError {}

impl FromStr for Dialect {
    type Err = ParseDialectError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|d| d.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| ParseDialectError(s.to_owned()))
    }
}

impl<'de> Deserialize<'de> for Dialect {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(de::Error::custom)
    }
}

/// The default Keycloak realm.
pub(crate) const DEFAULT_REALM: &str = "uma";

/// Whether a realm name can stand in a URL path as is (Keycloak realm names are path
/// segments): non-empty, at most 64 characters of `A-Z a-z 0-9 - _ .`, not `.` or `..`.
pub(crate) fn valid_realm(realm: &str) -> bool {
    !realm.is_empty()
        && realm.len() <= 64
        && realm != "."
        && realm != ".."
        && realm
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Where a server's endpoints live: a dialect plus, for Keycloak, the realm prefix.
///
/// Every path the router serves and every URL the server publishes is computed here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Layout {
    pub(crate) dialect: Dialect,
    /// `/realms/{realm}` for Keycloak, empty otherwise.
    prefix: String,
}

impl Layout {
    /// The layout of `dialect`; `realm` only matters for Keycloak.
    pub(crate) fn new(dialect: Dialect, realm: &str) -> Self {
        let prefix = match dialect {
            Dialect::Keycloak => format!("/realms/{realm}"),
            Dialect::Standard | Dialect::Wso2 => String::new(),
        };
        Self { dialect, prefix }
    }

    /// The issuer for a server reachable at `base` (`http://HOST:PORT`): the base itself, or
    /// `{base}/realms/{realm}` for Keycloak. It is what [`TestAs::issuer`](crate::TestAs::issuer)
    /// returns and what discovery documents announce.
    pub(crate) fn issuer(&self, base: &str) -> String {
        format!("{base}{}", self.prefix)
    }

    /// The `iss` of the JWTs the server signs: the issuer, except for WSO2, whose tokens name
    /// the token endpoint (docs/protocol.md §2.3).
    pub(crate) fn token_issuer(&self, base: &str) -> String {
        match self.dialect {
            Dialect::Wso2 => self.url(base, Endpoint::Token),
            Dialect::Standard | Dialect::Keycloak => self.issuer(base),
        }
    }

    /// The path of an endpoint's main route (for the registration endpoint, its collection).
    pub(crate) fn path(&self, endpoint: Endpoint) -> String {
        let path = match self.dialect {
            Dialect::Standard => match endpoint {
                Endpoint::Discovery => "/.well-known/uma2-configuration",
                Endpoint::Token => "/token",
                Endpoint::Introspection => "/introspect",
                Endpoint::Permission => "/permission",
                Endpoint::ResourceRegistration => "/resource_set",
                Endpoint::Revocation => "/revoke",
                Endpoint::Jwks => "/jwks",
                Endpoint::Admin => "/admin/requests",
            },
            Dialect::Keycloak => match endpoint {
                Endpoint::Discovery => "/.well-known/uma2-configuration",
                Endpoint::Token => "/protocol/openid-connect/token",
                Endpoint::Introspection => "/protocol/openid-connect/token/introspect",
                Endpoint::Permission => "/authz/protection/permission",
                Endpoint::ResourceRegistration => "/authz/protection/resource_set",
                Endpoint::Revocation => "/protocol/openid-connect/revoke",
                Endpoint::Jwks => "/protocol/openid-connect/certs",
                Endpoint::Admin => "/admin/requests",
            },
            Dialect::Wso2 => match endpoint {
                // WSO2 has no discovery document: this path answers 404 (counted).
                Endpoint::Discovery => "/.well-known/uma2-configuration",
                Endpoint::Token => "/oauth2/token",
                Endpoint::Introspection => "/oauth2/introspect",
                Endpoint::Permission => "/api/identity/oauth2/uma/permission/v1.0/permission",
                Endpoint::ResourceRegistration => {
                    "/api/identity/oauth2/uma/resourceregistration/v1.0/resource"
                }
                Endpoint::Revocation => "/oauth2/revoke",
                Endpoint::Jwks => "/oauth2/jwks",
                Endpoint::Admin => "/admin/requests",
            },
        };
        format!("{}{path}", self.prefix)
    }

    /// Further paths served by the same endpoint: Keycloak's OpenID Connect discovery
    /// document is counted as [`Endpoint::Discovery`].
    pub(crate) fn alias(&self, endpoint: Endpoint) -> Option<String> {
        match (self.dialect, endpoint) {
            (Dialect::Keycloak, Endpoint::Discovery) => {
                Some(format!("{}/.well-known/openid-configuration", self.prefix))
            }
            _ => None,
        }
    }

    /// The axum route of one registered resource (FedAuthz §3.2: `rreguri/{_id}`).
    pub(crate) fn resource_item_route(&self) -> String {
        format!("{}/{{id}}", self.path(Endpoint::ResourceRegistration))
    }

    /// The axum routes that approve and deny one pending request.
    pub(crate) fn admin_decision_routes(&self) -> (String, String) {
        let base = self.path(Endpoint::Admin);
        (
            format!("{base}/{{id}}/approve"),
            format!("{base}/{{id}}/deny"),
        )
    }

    /// The absolute URL of an endpoint for a server at `base`.
    pub(crate) fn url(&self, base: &str, endpoint: Endpoint) -> String {
        format!("{base}{}", self.path(endpoint))
    }

    /// The absolute URL of one registered resource (the create answer's `Location`).
    pub(crate) fn resource_url(&self, base: &str, id: &str) -> String {
        format!("{base}{}/{id}", self.path(Endpoint::ResourceRegistration))
    }

    /// The absolute URL of a Keycloak path that the server announces but does not serve
    /// (`authorization_endpoint`, `policy_endpoint`, …), relative to the realm.
    pub(crate) fn realm_url(&self, base: &str, path: &str) -> String {
        format!("{base}{}{path}", self.prefix)
    }
}

/// Wire names shared by several handlers.
pub(crate) mod names {
    /// The OIDC ID-token claim-token format (UMA Grant §3.3.1).
    pub(crate) const ID_TOKEN_FORMAT: &str =
        "http://openid.net/specs/openid-connect-core-1_0.html#IDToken";
    /// The UMA grant type (UMA Grant §3.3.1).
    pub(crate) const UMA_TICKET_GRANT: &str = "urn:ietf:params:oauth:grant-type:uma-ticket";
    /// The scope that makes an access token a PAT (FedAuthz §1.3).
    pub(crate) const UMA_PROTECTION: &str = "uma_protection";
    /// The OIDC scope that adds an `id_token` to a password-grant answer.
    pub(crate) const OPENID: &str = "openid";
    /// The `realm` of the server's `WWW-Authenticate` challenges.
    pub(crate) const REALM: &str = "uma-test-as";
    /// `typ` header of ID tokens.
    pub(crate) const ID_TOKEN_TYP: &str = "JWT";
    /// `typ` header of JWT RPTs (RFC 9068 style), so an RPT is never mistaken for an ID token.
    pub(crate) const RPT_TYP: &str = "at+jwt";
    /// `typ` claim of Keycloak ID tokens (its access tokens, RPTs included, say `Bearer`).
    pub(crate) const KEYCLOAK_ID_TYP: &str = "ID";
    /// `typ` claim of Keycloak access tokens.
    pub(crate) const KEYCLOAK_ACCESS_TYP: &str = "Bearer";
    /// Keycloak's `token_type_hint` for UMA introspection (docs/protocol.md §7.3).
    pub(crate) const RPT_HINT: &str = "requesting_party_token";
    /// The RFC 7009 hint Keycloak treats like no hint at all.
    pub(crate) const ACCESS_TOKEN_HINT: &str = "access_token";
    /// Keycloak's default `claim_token_format`: pushed claims, not an identity.
    pub(crate) const JWT_CLAIM_FORMAT: &str = "urn:ietf:params:oauth:token-type:jwt";
    /// Keycloak endpoints that discovery announces but this server does not serve, relative
    /// to the realm: authorization, userinfo, logout and the UMA policy API.
    pub(crate) const KEYCLOAK_AUTH_PATH: &str = "/protocol/openid-connect/auth";
    pub(crate) const KEYCLOAK_USERINFO_PATH: &str = "/protocol/openid-connect/userinfo";
    pub(crate) const KEYCLOAK_LOGOUT_PATH: &str = "/protocol/openid-connect/logout";
    pub(crate) const KEYCLOAK_POLICY_PATH: &str = "/authz/protection/uma-policy";
    /// WSO2's tenant suffix of user names in introspection answers.
    pub(crate) const WSO2_TENANT: &str = "carbon.super";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keycloak_paths_hang_off_the_realm() {
        let layout = Layout::new(Dialect::Keycloak, "acme");
        assert_eq!(layout.issuer("http://h"), "http://h/realms/acme");
        assert_eq!(
            layout.url("http://h", Endpoint::Introspection),
            "http://h/realms/acme/protocol/openid-connect/token/introspect"
        );
        assert_eq!(
            layout.resource_item_route(),
            "/realms/acme/authz/protection/resource_set/{id}"
        );
        assert_eq!(
            layout.alias(Endpoint::Discovery).as_deref(),
            Some("/realms/acme/.well-known/openid-configuration")
        );
    }

    #[test]
    fn wso2_issuer_is_the_base_but_tokens_name_the_token_endpoint() {
        let layout = Layout::new(Dialect::Wso2, "ignored");
        assert_eq!(layout.issuer("http://h"), "http://h");
        assert_eq!(layout.token_issuer("http://h"), "http://h/oauth2/token");
        assert_eq!(layout.alias(Endpoint::Discovery), None);
    }

    #[test]
    fn standard_paths_are_unchanged() {
        let layout = Layout::new(Dialect::Standard, DEFAULT_REALM);
        let paths: Vec<String> = Endpoint::ALL.iter().map(|e| layout.path(*e)).collect();
        assert_eq!(
            paths,
            [
                "/.well-known/uma2-configuration",
                "/token",
                "/introspect",
                "/permission",
                "/resource_set",
                "/revoke",
                "/jwks",
                "/admin/requests"
            ]
        );
        assert_eq!(layout.token_issuer("http://h"), "http://h");
    }

    #[test]
    fn names_and_realms() {
        for dialect in Dialect::ALL {
            assert_eq!(dialect.to_string().parse::<Dialect>(), Ok(dialect));
        }
        assert_eq!(" WSO2 ".parse::<Dialect>(), Ok(Dialect::Wso2));
        assert!(
            "gluu"
                .parse::<Dialect>()
                .unwrap_err()
                .to_string()
                .contains("keycloak")
        );
        assert!(valid_realm("acme-1.test_x"));
        for bad in ["", "a/b", "a b", "..", "%41", &"x".repeat(65)] {
            assert!(!valid_realm(bad), "{bad}");
        }
    }
}
