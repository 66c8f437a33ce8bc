//! [`Algorithm`]: the JWS algorithms (RFC 7518 §3.1, RFC 8037 §3.1) an RPT may be signed with.

use std::fmt;
use std::str::FromStr;

/// A JWS signature algorithm the layer accepts for RPTs: the asymmetric ones of RFC 7518
/// §3.1 and `EdDSA` (RFC 8037 §3.1).
///
/// The HMAC algorithms (`HS256`, `HS384`, `HS512`) and `none` have no variant: a resource
/// server shares no secret with the AS, and accepting an HMAC would let a token "signed" with
/// the AS's public key pass. Parsing them fails.
///
/// `FromStr` and `Display` use the `alg` names of the JOSE registry.
///
/// # Example
///
/// ```
/// use tower_uma::jwt::Algorithm;
///
/// let alg: Algorithm = "PS256".parse()?;
/// assert_eq!(alg, Algorithm::PS256);
/// assert_eq!(alg.to_string(), "PS256");
/// assert!("HS256".parse::<Algorithm>().is_err());
/// # Ok::<(), tower_uma::jwt::ParseAlgorithmError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512.
    PS512,
    /// ECDSA with P-256 and SHA-256.
    ES256,
    /// ECDSA with P-384 and SHA-384.
    ES384,
    /// EdDSA with Ed25519.
    EdDSA,
}

impl Algorithm {
    /// Every variant, in declaration order.
    const ALL: [Self; 9] = [
        Self::RS256,
        Self::RS384,
        Self::RS512,
        Self::PS256,
        Self::PS384,
        Self::PS512,
        Self::ES256,
        Self::ES384,
        Self::EdDSA,
    ];

    /// The `alg` name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RS256 => "RS256",
            Self::RS384 => "RS384",
            Self::RS512 => "RS512",
            Self::PS256 => "PS256",
            Self::PS384 => "PS384",
            Self::PS512 => "PS512",
            Self::ES256 => "ES256",
            Self::ES384 => "ES384",
            Self::EdDSA => "EdDSA",
        }
    }

    /// The same algorithm in the `jsonwebtoken` crate, which verifies signatures.
    pub(crate) fn to_jsonwebtoken(self) -> jsonwebtoken::Algorithm {
        use jsonwebtoken::Algorithm as J;
        match self {
            Self::RS256 => J::RS256,
            Self::RS384 => J::RS384,
            Self::RS512 => J::RS512,
            Self::PS256 => J::PS256,
            Self::PS384 => J::PS384,
            Self::PS512 => J::PS512,
            Self::ES256 => J::ES256,
            Self::ES384 => J::ES384,
            Self::EdDSA => J::EdDSA,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = ParseAlgorithmError;

    /// Parses an `alg` name, compared exactly (JOSE names are case-sensitive).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| ParseAlgorithmError { name: s.to_owned() })
    }
}

/// The error of parsing an [`Algorithm`]: the name is not one the layer accepts for RPTs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseAlgorithmError {
    name: String,
}

impl ParseAlgorithmError {
    /// The name that did not parse.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for ParseAlgorithmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hint = if self.name.starts_with("HS") {
            "HMAC algorithms are never accepted for RPTs (the AS's public key would work as the \
             secret); "
        } else {
            ""
        };
        write!(
            f,
            "unsupported JWS algorithm {:?}: {hint}use RS256, RS384, RS512, PS256, PS384, PS512, \
             ES256, ES384 or EdDSA",
            self.name
        )
    }
}

impl std::error::Error for ParseAlgorithmError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_hmac_is_refused() {
        for alg in Algorithm::ALL {
            assert_eq!(alg.as_str().parse::<Algorithm>(), Ok(alg));
            assert_eq!(alg.to_string(), alg.as_str());
            assert_eq!(format!("{:?}", alg.to_jsonwebtoken()), alg.as_str());
        }
        for name in ["HS256", "HS384", "HS512", "none", "rs256", "ES512", ""] {
            let e = name.parse::<Algorithm>().expect_err(name);
            assert_eq!(e.name(), name);
            assert!(e.to_string().contains("unsupported JWS algorithm"), "{e}");
        }
        let e = "HS256".parse::<Algorithm>().expect_err("hmac");
        assert!(e.to_string().contains("HMAC"), "{e}");
    }
}
