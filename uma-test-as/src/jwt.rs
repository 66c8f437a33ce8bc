//! The server's signing key: ID tokens, JWT RPTs and the JWKS document.
//!
//! One ECDSA P-256 key per server, generated with aws-lc-rs at start-up and never written
//! anywhere. Tokens are signed with ES256 by jsonwebtoken (aws_lc_rs backend) and carry the
//! key's `kid`; the JWK publishes `x`/`y` from the uncompressed public point.

use std::fmt;
use std::io;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::dialect::names::ID_TOKEN_TYP;

/// The signing key and its public half.
pub(crate) struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    kid: String,
    x: String,
    y: String,
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keys")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// The claims of an ID token this server issued that matter to the grant.
#[derive(Debug, Deserialize)]
pub(crate) struct IdTokenClaims {
    /// The requesting party.
    pub(crate) sub: String,
}

impl Keys {
    /// Generates a fresh P-256 key.
    pub(crate) fn generate() -> io::Result<Self> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| io::Error::other("cannot generate a P-256 signing key"))?;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
            .map_err(|_| io::Error::other("cannot load the generated P-256 signing key"))?;
        let point = pair.public_key().as_ref();
        // Uncompressed SEC1 point: 0x04 || X (32 bytes) || Y (32 bytes).
        if point.len() != 65 || point[0] != 0x04 {
            return Err(io::Error::other("unexpected P-256 public key encoding"));
        }
        let x = URL_SAFE_NO_PAD.encode(&point[1..33]);
        let y = URL_SAFE_NO_PAD.encode(&point[33..65]);
        let kid = URL_SAFE_NO_PAD.encode(&Sha256::digest(point)[..12]);
        let decoding = DecodingKey::from_ec_components(&x, &y)
            .map_err(|_| io::Error::other("cannot build the verification key"))?;
        Ok(Self {
            encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
            decoding,
            kid,
            x,
            y,
        })
    }

    /// The JWKS document (RFC 7517 §5).
    pub(crate) fn jwks(&self) -> Value {
        json!({"keys": [{
            "kty": "EC",
            "crv": "P-256",
            "x": self.x,
            "y": self.y,
            "kid": self.kid,
            "use": "sig",
            "alg": "ES256",
        }]})
    }

    /// Signs `claims` with ES256, header `typ` and this key's `kid`.
    pub(crate) fn sign(
        &self,
        typ: &str,
        claims: &Map<String, Value>,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some(typ.to_owned());
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding)
    }

    /// Verifies an ID token this server issued: signature, `typ`, `iss` and `exp`. The
    /// audience is not checked, so an ID token obtained by one client may be pushed by another.
    pub(crate) fn verify_id_token(&self, token: &str, issuer: &str) -> Option<IdTokenClaims> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        if header.typ.as_deref() != Some(ID_TOKEN_TYP) {
            return None;
        }
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_issuer(&[issuer]);
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.leeway = 0;
        jsonwebtoken::decode::<IdTokenClaims>(token, &self.decoding, &validation)
            .ok()
            .map(|data| data.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_tokens_round_trip_and_other_typs_are_refused() {
        let keys = Keys::generate().unwrap();
        let mut claims = Map::new();
        claims.insert("iss".into(), json!("http://as"));
        claims.insert("sub".into(), json!("bob"));
        claims.insert("exp".into(), json!(crate::model::unix_now_secs() + 60));
        let token = keys.sign(ID_TOKEN_TYP, &claims).unwrap();
        assert_eq!(
            keys.verify_id_token(&token, "http://as").unwrap().sub,
            "bob"
        );
        assert!(keys.verify_id_token(&token, "http://other").is_none());
        let rpt = keys.sign("at+jwt", &claims).unwrap();
        assert!(keys.verify_id_token(&rpt, "http://as").is_none());
        let other = Keys::generate().unwrap();
        assert!(other.verify_id_token(&token, "http://as").is_none());
        assert_eq!(keys.jwks()["keys"][0]["kid"], json!(keys.kid));
    }
}
