//! The server's signing keys: ID tokens, JWT access tokens, JWT RPTs, Keycloak tickets and the
//! JWKS document.
//!
//! ECDSA P-256 keys, generated with aws-lc-rs (one at start-up, one more per
//! [`TestAs::rotate_signing_key`](crate::TestAs::rotate_signing_key)) and never written
//! anywhere. Tokens are signed with ES256 by jsonwebtoken (aws_lc_rs backend) with the newest
//! key and carry its `kid`; the JWKS publishes every key not yet retired, newest first, with
//! `x`/`y` from the uncompressed public point. Verification picks the key by the token's `kid`.

use std::fmt;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::dialect::names::{ID_TOKEN_TYP, KEYCLOAK_ID_TYP};

/// One signing key and its public half.
struct Key {
    encoding: EncodingKey,
    decoding: DecodingKey,
    kid: String,
    x: String,
    y: String,
}

impl Key {
    /// Generates a fresh P-256 key.
    fn generate() -> io::Result<Self> {
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

    fn jwk(&self) -> Value {
        json!({
            "kty": "EC",
            "crv": "P-256",
            "x": self.x,
            "y": self.y,
            "kid": self.kid,
            "use": "sig",
            "alg": "ES256",
        })
    }
}

/// The published keys, newest (the signing key) first. A key is behind an `Arc` so signing
/// and verifying happen outside the lock.
pub(crate) struct Keys {
    ring: Mutex<Vec<Arc<Key>>>,
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kids: Vec<String> = self.lock().iter().map(|k| k.kid.clone()).collect();
        f.debug_struct("Keys")
            .field("kids", &kids)
            .finish_non_exhaustive()
    }
}

/// The claims of an ID token this server issued that matter to the grant.
#[derive(Debug, Deserialize)]
pub(crate) struct IdTokenClaims {
    /// The requesting party.
    pub(crate) sub: String,
    /// Keycloak-style token type claim (`ID` for ID tokens); absent in the other dialects.
    #[serde(default)]
    typ: Option<String>,
}

impl Keys {
    /// A ring with one fresh P-256 key.
    pub(crate) fn generate() -> io::Result<Self> {
        Ok(Self {
            ring: Mutex::new(vec![Arc::new(Key::generate()?)]),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Arc<Key>>> {
        self.ring.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn current(&self) -> Arc<Key> {
        // The ring is never empty: `retire_old` keeps the newest key.
        Arc::clone(&self.lock()[0])
    }

    /// The `kid` of the key that signs new tokens.
    pub(crate) fn current_kid(&self) -> String {
        self.current().kid.clone()
    }

    /// Generates a new signing key, published before the older ones; returns its `kid`.
    pub(crate) fn rotate(&self) -> io::Result<String> {
        let key = Arc::new(Key::generate()?);
        let kid = key.kid.clone();
        self.lock().insert(0, key);
        Ok(kid)
    }

    /// Drops every key but the signing key; returns how many were dropped.
    pub(crate) fn retire_old(&self) -> usize {
        let mut ring = self.lock();
        let dropped = ring.len() - 1;
        ring.truncate(1);
        dropped
    }

    /// The JWKS document (RFC 7517 §5): every published key, newest first.
    pub(crate) fn jwks(&self) -> Value {
        let keys: Vec<Value> = self.lock().iter().map(|k| k.jwk()).collect();
        json!({ "keys": keys })
    }

    /// Signs `claims` with ES256 and the current key: header `typ` and the key's `kid`.
    pub(crate) fn sign(
        &self,
        typ: &str,
        claims: &Map<String, Value>,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let key = self.current();
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some(typ.to_owned());
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, claims, &key.encoding)
    }

    /// Verifies an ID token this server issued: a published key by `kid`, signature, header
    /// `typ`, `iss`, `exp`, and a `typ` claim (when there is one) of `ID`. The audience is not
    /// checked, so an ID token obtained by one client may be pushed by another.
    pub(crate) fn verify_id_token(&self, token: &str, issuer: &str) -> Option<IdTokenClaims> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        if header.typ.as_deref() != Some(ID_TOKEN_TYP) {
            return None;
        }
        let kid = header.kid?;
        let key = self.lock().iter().find(|k| k.kid == kid).map(Arc::clone)?;
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_issuer(&[issuer]);
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.leeway = 0;
        let claims = jsonwebtoken::decode::<IdTokenClaims>(token, &key.decoding, &validation)
            .ok()?
            .claims;
        // Keycloak-style access tokens share the `JWT` header; their `typ` claim tells them apart.
        claims
            .typ
            .as_deref()
            .is_none_or(|typ| typ == KEYCLOAK_ID_TYP)
            .then_some(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Map<String, Value> {
        let mut claims = Map::new();
        claims.insert("iss".into(), json!("http://as"));
        claims.insert("sub".into(), json!("bob"));
        claims.insert("exp".into(), json!(crate::model::unix_now_secs() + 60));
        claims
    }

    #[test]
    fn id_tokens_round_trip_and_other_typs_are_refused() {
        let keys = Keys::generate().unwrap();
        let token = keys.sign(ID_TOKEN_TYP, &claims()).unwrap();
        assert_eq!(
            keys.verify_id_token(&token, "http://as").unwrap().sub,
            "bob"
        );
        assert!(keys.verify_id_token(&token, "http://other").is_none());
        let rpt = keys.sign("at+jwt", &claims()).unwrap();
        assert!(keys.verify_id_token(&rpt, "http://as").is_none());
        let other = Keys::generate().unwrap();
        assert!(other.verify_id_token(&token, "http://as").is_none());
        assert_eq!(keys.jwks()["keys"][0]["kid"], json!(keys.current_kid()));

        let mut access = claims();
        access.insert("typ".into(), json!("Bearer"));
        let access = keys.sign(ID_TOKEN_TYP, &access).unwrap();
        assert!(keys.verify_id_token(&access, "http://as").is_none());
        let mut id = claims();
        id.insert("typ".into(), json!("ID"));
        let id = keys.sign(ID_TOKEN_TYP, &id).unwrap();
        assert!(keys.verify_id_token(&id, "http://as").is_some());
    }

    #[test]
    fn rotation_publishes_both_keys_and_retiring_drops_the_old_one() {
        let keys = Keys::generate().unwrap();
        let old_kid = keys.current_kid();
        let old = keys.sign(ID_TOKEN_TYP, &claims()).unwrap();
        let new_kid = keys.rotate().unwrap();
        assert_ne!(old_kid, new_kid);
        assert_eq!(keys.current_kid(), new_kid);
        let new = keys.sign(ID_TOKEN_TYP, &claims()).unwrap();
        assert_eq!(
            jsonwebtoken::decode_header(&new).unwrap().kid.as_deref(),
            Some(new_kid.as_str())
        );
        let kids: Vec<Value> = keys.jwks()["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].clone())
            .collect();
        assert_eq!(kids, [json!(new_kid), json!(old_kid)]);
        assert!(keys.verify_id_token(&old, "http://as").is_some());
        assert!(keys.verify_id_token(&new, "http://as").is_some());
        assert_eq!(keys.retire_old(), 1);
        assert_eq!(keys.retire_old(), 0);
        assert_eq!(keys.jwks()["keys"].as_array().unwrap().len(), 1);
        assert!(keys.verify_id_token(&old, "http://as").is_none());
        assert!(keys.verify_id_token(&new, "http://as").is_some());
    }
}
