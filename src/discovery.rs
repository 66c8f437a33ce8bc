//! The UMA discovery document, `{issuer}/.well-known/uma2-configuration` (Grant §2,
//! FedAuthz §2, docs/protocol.md §2). Fetching it is the protection client's job
//! (`crate::protection::discovery`).
//!
//! The document is read tolerantly: unknown members are ignored, and Keycloak's legacy
//! `token_introspection_endpoint` stands in for `introspection_endpoint` when that is absent
//! (docs/protocol.md §2.2). Its `issuer` must equal the configured issuer (RFC 8414 §3.3); a
//! mismatch is an error and no protection call is made.

use serde::Deserialize;

/// The path appended to the issuer (Grant §2: concatenation, not RFC 8414's insertion).
pub(crate) const WELL_KNOWN_PATH: &str = "/.well-known/uma2-configuration";

/// The members of a UMA 2.0 discovery document that a resource server uses.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) struct DiscoveryDocument {
    /// The AS's issuer identifier; used as `as_uri` in challenges (Grant §3.2.1).
    pub(crate) issuer: String,
    /// The OAuth token endpoint (PATs are obtained here).
    #[serde(default)]
    pub(crate) token_endpoint: Option<String>,
    #[serde(default, rename = "introspection_endpoint")]
    introspection: Option<String>,
    #[serde(default, rename = "token_introspection_endpoint")]
    legacy_introspection: Option<String>,
    /// The resource registration endpoint (FedAuthz §3).
    #[serde(default)]
    pub(crate) resource_registration_endpoint: Option<String>,
    /// The permission endpoint (FedAuthz §4).
    #[serde(default)]
    pub(crate) permission_endpoint: Option<String>,
    /// The JSON Web Key Set of the AS.
    #[serde(default)]
    pub(crate) jwks_uri: Option<String>,
    /// The token revocation endpoint (RFC 7009).
    #[serde(default)]
    pub(crate) revocation_endpoint: Option<String>,
}

impl DiscoveryDocument {
    /// The introspection endpoint: `introspection_endpoint`, or Keycloak's legacy
    /// `token_introspection_endpoint` when only that is present.
    #[must_use]
    pub(crate) fn introspection_endpoint(&self) -> Option<&str> {
        self.introspection
            .as_deref()
            .or(self.legacy_introspection.as_deref())
    }
}

/// Trims trailing slashes so `https://as/` and `https://as` name the same issuer.
pub(crate) fn trim_issuer(issuer: &str) -> &str {
    issuer.trim_end_matches('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_keycloaks_legacy_introspection_key() {
        let doc: DiscoveryDocument = serde_json::from_str(r#"{
            "issuer": "https://kc.test/realms/acme",
            "token_endpoint": "https://kc.test/realms/acme/protocol/openid-connect/token",
            "token_introspection_endpoint": "https://kc.test/realms/acme/protocol/openid-connect/token/introspect",
            "permission_endpoint": "https://kc.test/realms/acme/authz/protection/permission",
            "resource_registration_endpoint": "https://kc.test/realms/acme/authz/protection/resource_set",
            "policy_endpoint": "https://kc.test/realms/acme/authz/protection/uma-policy"
        }"#).expect("parses");
        assert_eq!(
            doc.introspection_endpoint(),
            Some("https://kc.test/realms/acme/protocol/openid-connect/token/introspect")
        );
    }

    #[test]
    fn prefers_the_rfc_8414_name() {
        let doc: DiscoveryDocument = serde_json::from_str(
            r#"{"issuer":"i","introspection_endpoint":"a","token_introspection_endpoint":"b"}"#,
        )
        .expect("parses");
        assert_eq!(doc.introspection_endpoint(), Some("a"));
    }

    #[test]
    fn trims_issuer_slashes() {
        assert_eq!(trim_issuer("https://as.test/"), "https://as.test");
        assert_eq!(
            trim_issuer("https://as.test/realms/a"),
            "https://as.test/realms/a"
        );
    }
}
