//! Where each endpoint lives and what the protocol's names are.
//!
//! Why a module of its own: a later issue adds Keycloak and WSO2 dialects (uma-wire §12,
//! §13), which move the endpoints (`/realms/{realm}/authz/protection/…`,
//! `/api/identity/oauth2/uma/…`) and rename members. Every path and wire name the server
//! uses is therefore looked up here, never spelled inline in a handler, so a dialect becomes a
//! new [`Dialect`] variant plus the answers that differ.

/// One of the server's HTTP endpoints, used for counters, recordings and fault knobs.
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

/// The flavour of the wire format the server speaks. Only the standard one exists today.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// UMA 2.0 Grant + FedAuthz as written.
    #[default]
    Standard,
}

impl Dialect {
    /// The path of an endpoint's main route (for the registration endpoint, its collection).
    pub(crate) const fn path(self, endpoint: Endpoint) -> &'static str {
        match self {
            Self::Standard => match endpoint {
                Endpoint::Discovery => "/.well-known/uma2-configuration",
                Endpoint::Token => "/token",
                Endpoint::Introspection => "/introspect",
                Endpoint::Permission => "/permission",
                Endpoint::ResourceRegistration => "/resource_set",
                Endpoint::Revocation => "/revoke",
                Endpoint::Jwks => "/jwks",
                Endpoint::Admin => "/admin/requests",
            },
        }
    }

    /// The axum route of one registered resource (FedAuthz §3.2: `rreguri/{_id}`).
    pub(crate) const fn resource_item_route(self) -> &'static str {
        match self {
            Self::Standard => "/resource_set/{id}",
        }
    }

    /// The axum routes that approve and deny one pending request.
    pub(crate) const fn admin_decision_routes(self) -> (&'static str, &'static str) {
        match self {
            Self::Standard => ("/admin/requests/{id}/approve", "/admin/requests/{id}/deny"),
        }
    }

    /// The absolute URL of an endpoint for the given issuer.
    pub(crate) fn url(self, issuer: &str, endpoint: Endpoint) -> String {
        format!("{issuer}{}", self.path(endpoint))
    }

    /// The absolute URL of one registered resource (the create answer's `Location`).
    pub(crate) fn resource_url(self, issuer: &str, id: &str) -> String {
        format!("{issuer}{}/{id}", self.path(Endpoint::ResourceRegistration))
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
}
