//! Tests of local JWT RPT validation, against keys generated here with aws-lc-rs and a JWKS
//! answered by a canned transport with a fetch counter (and one test against the bundled
//! test AS over loopback).

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    self as sig, ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair,
    Ed25519KeyPair, KeyPair, RsaKeyPair,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use super::*;
use crate::clock::{FixedClock, SystemClock};
use crate::gate::AsEndpoint;
use crate::introspect::Permission;
use crate::protection::canned::{Canned, answer};
use crate::protection::reqwest_transport::ReqwestTransport;
use crate::protection::{Answer, Failure, Transport};

/// The tests' "now", Unix seconds.
const NOW: i64 = 1_767_225_600;
const ISSUER: &str = "https://as.test/realms/acme";
const AUDIENCE: &str = "rs1";

// ---------------------------------------------------------------------------------------
// Keys

/// A signing key of one of the supported types, with its public JWK.
enum TestKey {
    Ec(EcdsaKeyPair, &'static str),
    Rsa(RsaKeyPair),
    Ed(Ed25519KeyPair),
}

impl TestKey {
    fn p256() -> Self {
        Self::ec(&ECDSA_P256_SHA256_FIXED_SIGNING, "P-256")
    }

    fn p384() -> Self {
        Self::ec(&ECDSA_P384_SHA384_FIXED_SIGNING, "P-384")
    }

    fn ec(alg: &'static sig::EcdsaSigningAlgorithm, crv: &'static str) -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).expect("generate EC key");
        Self::Ec(
            EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref()).expect("load EC key"),
            crv,
        )
    }

    fn rsa() -> Self {
        Self::Rsa(RsaKeyPair::generate(KeySize::Rsa2048).expect("generate RSA key"))
    }

    fn ed25519() -> Self {
        Self::Ed(Ed25519KeyPair::generate().expect("generate Ed25519 key"))
    }

    /// The raw public key bytes: the SEC1 point, the RSA modulus, or the Ed25519 key.
    fn public_bytes(&self) -> Vec<u8> {
        match self {
            Self::Ec(k, _) => k.public_key().as_ref().to_vec(),
            Self::Rsa(k) => k
                .public_key()
                .modulus()
                .big_endian_without_leading_zero()
                .to_vec(),
            Self::Ed(k) => k.public_key().as_ref().to_vec(),
        }
    }

    /// The public JWK, with `kid` and, if given, `alg`.
    fn jwk(&self, kid: Option<&str>, alg: Option<&str>) -> Value {
        let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
        let mut jwk = match self {
            Self::Ec(k, crv) => {
                let point = k.public_key().as_ref();
                let half = (point.len() - 1) / 2;
                json!({"kty": "EC", "crv": crv, "x": b64(&point[1..=half]), "y": b64(&point[half + 1..])})
            }
            Self::Rsa(k) => {
                let public = k.public_key();
                json!({
                    "kty": "RSA",
                    "n": b64(public.modulus().big_endian_without_leading_zero()),
                    "e": b64(public.exponent().big_endian_without_leading_zero()),
                })
            }
            Self::Ed(k) => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64(k.public_key().as_ref())})
            }
        };
        jwk["use"] = json!("sig");
        if let Some(kid) = kid {
            jwk["kid"] = json!(kid);
        }
        if let Some(alg) = alg {
            jwk["alg"] = json!(alg);
        }
        jwk
    }

    /// Signs `msg` as JWS algorithm `alg` requires.
    fn sign(&self, alg: &str, msg: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match self {
            Self::Ec(k, _) => k.sign(&rng, msg).expect("EC sign").as_ref().to_vec(),
            Self::Rsa(k) => {
                let padding: &'static dyn sig::RsaEncoding = match alg {
                    "RS256" => &sig::RSA_PKCS1_SHA256,
                    "RS384" => &sig::RSA_PKCS1_SHA384,
                    "PS256" => &sig::RSA_PSS_SHA256,
                    other => panic!("no RSA padding for {other}"),
                };
                let mut out = vec![0; k.public_modulus_len()];
                k.sign(padding, &rng, msg, &mut out).expect("RSA sign");
                out
            }
            Self::Ed(k) => k.sign(msg).as_ref().to_vec(),
        }
    }
}

/// A compact JWS over `header` and `claims`, signed by `sign`.
fn jws(header: &Value, claims: &Value, sign: impl FnOnce(&[u8]) -> Vec<u8>) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// A token signed by `key` with `alg` and `kid`.
fn token(key: &TestKey, alg: &str, kid: Option<&str>, claims: &Value) -> String {
    let mut header = json!({"alg": alg, "typ": "at+jwt"});
    if let Some(kid) = kid {
        header["kid"] = json!(kid);
    }
    jws(&header, claims, |m| key.sign(alg, m))
}

/// An HS256 token "signed" with `secret`.
fn hs256(kid: &str, claims: &Value, secret: &[u8]) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    jws(&json!({"alg": "HS256", "kid": kid}), claims, |m| {
        aws_lc_rs::hmac::sign(&key, m).as_ref().to_vec()
    })
}

/// Valid claims at [`NOW`] with one UMA-named permission.
fn claims() -> Value {
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "bob",
        "azp": "photo-app",
        "iat": NOW - 10,
        "exp": NOW + 300,
        "jti": "j-1",
        "permissions": [{"resource_id": "r1", "resource_scopes": ["view"]}],
    })
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

fn without(mut claims: Value, key: &str) -> Value {
    if let Some(map) = claims.as_object_mut() {
        map.remove(key);
    }
    claims
}

// ---------------------------------------------------------------------------------------
// A JWKS server on loopback

/// What the canned JWKS endpoint answers.
#[derive(Default)]
struct JwksState {
    jwks: Mutex<Value>,
    /// When non-zero, answer with this status instead of the set.
    status: AtomicU16,
    /// The `Cache-Control` header of the answer, if any.
    cache_control: Mutex<Option<String>>,
}

/// A JWKS endpoint answered by a canned transport, counting its fetches.
struct JwksServer {
    state: Arc<JwksState>,
    canned: Canned,
}

impl JwksServer {
    fn new(keys: &[Value]) -> Self {
        let state = Arc::new(JwksState::default());
        *state.jwks.lock().expect("lock") = json!({ "keys": keys });
        let answers = Arc::clone(&state);
        let canned = Canned::with(move |_, _| {
            let status = answers.status.load(Ordering::SeqCst);
            if status != 0 {
                return Ok(answer(status, "jwks unavailable"));
            }
            let body = answers.jwks.lock().expect("lock").to_string();
            let mut ok = answer(200, body);
            if let Some(cc) = answers.cache_control.lock().expect("lock").as_deref() {
                let value = http::HeaderValue::from_str(cc).expect("a header value");
                ok.headers_mut().insert(http::header::CACHE_CONTROL, value);
            }
            Ok(ok)
        });
        Self { state, canned }
    }

    fn set_keys(&self, keys: &[Value]) {
        *self.state.jwks.lock().expect("lock") = json!({ "keys": keys });
    }

    fn set_body(&self, body: Value) {
        *self.state.jwks.lock().expect("lock") = body;
    }

    fn set_cache_control(&self, value: &str) {
        *self.state.cache_control.lock().expect("lock") = Some(value.to_owned());
    }

    fn fetches(&self) -> usize {
        self.canned.calls()
    }

    fn fail_with(&self, status: u16) {
        self.state.status.store(status, Ordering::SeqCst);
    }

    fn delay(&self, d: Duration) {
        self.canned.delay(d);
    }

    fn verifier(&self, interval: Duration) -> JwtVerifier {
        self.verifier_on(interval, Arc::new(FixedClock::new(NOW)))
    }

    /// A verifier whose refetch interval (and claims) run on `clock`.
    fn verifier_on(&self, interval: Duration, clock: Arc<FixedClock>) -> JwtVerifier {
        self.verifier_with(config(JWKS_URI).refetch_interval(interval), clock)
    }

    /// A verifier with `config` (whose `jwks_uri` is never dialled), on `clock`.
    fn verifier_with(&self, config: JwtValidation, clock: Arc<FixedClock>) -> JwtVerifier {
        JwtVerifier::new(
            Caller::new(self.canned.transport(), Arc::default()),
            config,
            clock,
        )
    }
}

/// The JWKS URL of the canned endpoint (never dialled).
const JWKS_URI: &str = "https://as.test/realms/acme/certs";

/// A transport over a real client, for the bundled test AS.
fn http_client() -> Arc<dyn Transport> {
    let transport = ReqwestTransport::with_timeouts(Duration::from_secs(2), Duration::from_secs(5))
        .expect("a client");
    Arc::new(transport)
}

/// A JWKS fetch that failed with `failure`.
fn jwks_error(failure: Failure) -> CallError {
    CallError::new(AsEndpoint::Jwks, failure)
}

fn unusable_set() -> CallError {
    jwks_error(Failure::Unusable(
        "with a body that is not a JSON Web Key Set".into(),
    ))
}

fn status(status: u16) -> CallError {
    jwks_error(Failure::Status(Answer::bare(status)))
}

fn config(jwks_uri: &str) -> JwtValidation {
    JwtValidation::new()
        .jwks_uri(jwks_uri)
        .issuer(ISSUER)
        .audience(AUDIENCE)
}

fn verifier_over(
    transport: Arc<dyn Transport>,
    config: JwtValidation,
    interval: Duration,
) -> JwtVerifier {
    JwtVerifier::new(
        Caller::new(transport, Arc::default()),
        config.refetch_interval(interval),
        Arc::new(FixedClock::new(NOW)),
    )
}

async fn verdict(v: &JwtVerifier, token: &str) -> Verdict {
    v.check(token).await.expect("no fetch error")
}

fn refused(why: Refusal) -> Verdict {
    Verdict::Refused(why)
}

const LONG: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------
// Valid tokens

#[tokio::test]
async fn valid_es256_token_is_active_with_its_claims() {
    let key = TestKey::p256();
    let jwks = JwksServer::new(&[key.jwk(Some("k1"), Some("ES256"))]);
    let v = jwks.verifier(LONG);
    assert_eq!(
        jwks.fetches(),
        0,
        "nothing is fetched before the first token"
    );

    let rpt = Rpt::new(token(&key, "ES256", Some("k1"), &claims()));
    let intro = v.verify(&rpt).await.expect("verified").expect("a JWT");
    assert!(intro.is_active());
    assert_eq!(intro.exp(), Some(NOW + 300));
    assert_eq!(intro.iat(), Some(NOW - 10));
    assert_eq!(intro.nbf(), None);
    assert_eq!(intro.sub(), Some("bob"));
    assert_eq!(intro.client_id(), Some("photo-app"), "from azp");
    assert_eq!(intro.permissions(), [Permission::new("r1", ["view"])]);

    // Cached: a second token needs no fetch.
    let again = Rpt::new(token(
        &key,
        "ES256",
        Some("k1"),
        &with(claims(), "jti", json!("j-2")),
    ));
    assert!(
        v.verify(&again)
            .await
            .expect("ok")
            .expect("jwt")
            .is_active()
    );
    assert_eq!(jwks.fetches(), 1);
}

#[tokio::test]
async fn every_default_algorithm_verifies() {
    let rsa = TestKey::rsa();
    let p256 = TestKey::p256();
    let p384 = TestKey::p384();
    let ed = TestKey::ed25519();
    let jwks = JwksServer::new(&[
        rsa.jwk(Some("rsa"), None),
        p256.jwk(Some("p256"), None),
        p384.jwk(Some("p384"), Some("ES384")),
        ed.jwk(Some("ed"), Some("EdDSA")),
    ]);
    let v = jwks.verifier(LONG);
    for (key, alg, kid) in [
        (&rsa, "RS256", "rsa"),
        (&rsa, "PS256", "rsa"),
        (&p256, "ES256", "p256"),
        (&p384, "ES384", "p384"),
        (&ed, "EdDSA", "ed"),
    ] {
        let t = token(key, alg, Some(kid), &claims());
        match verdict(&v, &t).await {
            Verdict::Verified(i) => assert!(i.is_active(), "{alg}"),
            other => panic!("{alg}: {other:?}"),
        }
    }
    // RS384 is not in the default allow-list, although the key could verify it.
    let t = token(&rsa, "RS384", Some("rsa"), &claims());
    assert_eq!(verdict(&v, &t).await, refused(Refusal::AlgNotAllowed));
    assert_eq!(jwks.fetches(), 1);
}

/// An `alg` outside the allow-list is refused from the header alone: the key set is not
/// fetched for it, whatever `kid` it names, so such tokens cannot make the layer call the AS.
#[tokio::test]
async fn an_alg_outside_the_allow_list_is_refused_before_any_key_lookup() {
    let rsa = TestKey::rsa();
    let jwks = JwksServer::new(&[rsa.jwk(Some("rsa"), None)]);
    let v = jwks.verifier(Duration::ZERO);
    for kid in ["rsa", "unknown"] {
        let t = token(&rsa, "RS384", Some(kid), &claims());
        assert_eq!(
            verdict(&v, &t).await,
            refused(Refusal::AlgNotAllowed),
            "{kid}"
        );
    }
    assert_eq!(jwks.fetches(), 0);
}

#[tokio::test]
async fn keycloak_authorization_permissions_are_read_in_both_namings() {
    // docs/protocol.md §8: Keycloak puts permissions in `authorization.permissions` with
    // rsid/scopes.
    let key = TestKey::rsa();
    let jwks = JwksServer::new(&[key.jwk(Some("kc"), Some("RS256"))]);
    let v = jwks.verifier(LONG);
    let kc = json!({
        "iss": ISSUER,
        "aud": ["account", AUDIENCE],
        "azp": "photo-app",
        "sub": "f3c1",
        "typ": "Bearer",
        "exp": NOW + 60,
        "iat": NOW,
        "scope": "email profile",
        "authorization": {"permissions": [
            {"rsid": "r-1", "rsname": "Album 1", "scopes": ["view", "edit"]},
            {"rsid": "r-2", "rsname": "Album 2"},
            {"rsid": "r-3", "rsname": "Album 3", "scopes": ["view"],
             "resource_id": "r-3", "resource_scopes": ["view"]},
            {"rsname": "no id"}
        ]},
    });
    let Verdict::Verified(i) = verdict(&v, &token(&key, "RS256", Some("kc"), &kc)).await else {
        panic!("refused");
    };
    assert_eq!(i.client_id(), Some("photo-app"));
    assert_eq!(
        i.permissions(),
        [
            Permission::new("r-1", ["edit", "view"]),
            Permission::new("r-2", Vec::<String>::new()),
            Permission::new("r-3", ["view"]),
        ]
    );

    // Janssen-style top-level permissions with UMA naming, `client_id` and per-permission exp.
    let janssen = json!({
        "iss": ISSUER, "aud": AUDIENCE, "exp": NOW + 60, "client_id": "cl-1", "azp": "ignored",
        "permissions": [{"resource_id": "r-9", "resource_scopes": ["read"], "exp": NOW + 30}],
        "authorization": {"permissions": [{"rsid": "not-read", "scopes": ["all"]}]},
    });
    let Verdict::Verified(i) = verdict(&v, &token(&key, "RS256", Some("kc"), &janssen)).await
    else {
        panic!("refused");
    };
    assert_eq!(i.client_id(), Some("cl-1"), "client_id wins over azp");
    assert_eq!(i.permissions().len(), 1, "top-level permissions win");
    assert_eq!(i.permissions()[0].resource_id(), "r-9");
    assert_eq!(i.permissions()[0].exp(), Some(NOW + 30));

    // A plain access token: active, but it grants nothing.
    let plain = without(kc, "authorization");
    let Verdict::Verified(i) = verdict(&v, &token(&key, "RS256", Some("kc"), &plain)).await else {
        panic!("refused");
    };
    assert!(i.is_active() && i.permissions().is_empty());
}

#[tokio::test]
async fn rpts_of_the_bundled_test_as_verify() {
    use uma_test_as::{AuthServer, Endpoint, RptFormat, RptSpec};

    let auth = AuthServer::builder()
        .client("rs1", "rs1-secret")
        .rpt_format(RptFormat::Jwt)
        .spawn()
        .await
        .expect("spawn AS");
    let mut spec = RptSpec::active_for("r1", ["view"], 60);
    spec.sub = Some("bob".to_owned());
    spec.client_id = Some("rs1".to_owned());
    let rpt = Rpt::new(auth.mint_rpt(spec));
    let v = JwtVerifier::new(
        Caller::new(http_client(), Arc::default()),
        JwtValidation::new()
            .jwks_uri(auth.endpoint_url(Endpoint::Jwks))
            .issuer(auth.issuer())
            .audience("rs1"),
        Arc::new(SystemClock),
    );
    let intro = v.verify(&rpt).await.expect("ok").expect("a JWT");
    assert!(intro.is_active());
    assert_eq!(intro.sub(), Some("bob"));
    assert_eq!(intro.permissions(), [Permission::new("r1", ["view"])]);
    assert_eq!(auth.count(Endpoint::Jwks), 1);
    assert_eq!(auth.count(Endpoint::Introspection), 0, "no introspection");

    // The same token for another audience is refused.
    let other = JwtVerifier::new(
        Caller::new(http_client(), Arc::default()),
        JwtValidation::new()
            .jwks_uri(auth.endpoint_url(Endpoint::Jwks))
            .issuer(auth.issuer())
            .audience("someone-else"),
        Arc::new(SystemClock),
    );
    assert!(
        !other
            .verify(&rpt)
            .await
            .expect("ok")
            .expect("jwt")
            .is_active()
    );
}

#[tokio::test]
async fn a_token_without_kid_is_tried_only_against_a_single_key() {
    let key = TestKey::p256();
    let jwks = JwksServer::new(&[key.jwk(None, None)]);
    let v = jwks.verifier(LONG);
    let t = token(&key, "ES256", None, &claims());
    assert!(matches!(verdict(&v, &t).await, Verdict::Verified(_)));

    let other = TestKey::p256();
    let jwks = JwksServer::new(&[key.jwk(Some("a"), None), other.jwk(Some("b"), None)]);
    let v = jwks.verifier(LONG);
    assert_eq!(verdict(&v, &t).await, refused(Refusal::NoKid));
}

// ---------------------------------------------------------------------------------------
// Key rotation and the refetch limit

#[tokio::test]
async fn rotation_refetches_once_and_then_verifies() {
    let old = TestKey::p256();
    let new = TestKey::p256();
    let jwks = JwksServer::new(&[old.jwk(Some("old"), None)]);
    // JwtVerifier::new does not enforce the 1 s minimum; an immediate refetch keeps this
    // test free of sleeps.
    let v = jwks.verifier(Duration::ZERO);
    assert!(matches!(
        verdict(&v, &token(&old, "ES256", Some("old"), &claims())).await,
        Verdict::Verified(_)
    ));
    assert_eq!(jwks.fetches(), 1);

    jwks.set_keys(&[old.jwk(Some("old"), None), new.jwk(Some("new"), None)]);
    let fresh = token(&new, "ES256", Some("new"), &claims());
    assert!(matches!(verdict(&v, &fresh).await, Verdict::Verified(_)));
    assert_eq!(jwks.fetches(), 2, "exactly one refetch");
    assert!(matches!(verdict(&v, &fresh).await, Verdict::Verified(_)));
    assert!(matches!(
        verdict(&v, &token(&old, "ES256", Some("old"), &claims())).await,
        Verdict::Verified(_)
    ));
    assert_eq!(jwks.fetches(), 2, "both keys are cached now");
    assert_eq!(v.keys.len(), 2);
}

#[tokio::test]
async fn unknown_kids_refetch_at_most_once_per_interval() {
    let key = TestKey::p256();
    let jwks = JwksServer::new(&[key.jwk(Some("k1"), None)]);
    let v = jwks.verifier(LONG);
    // The first token ever fetches lazily, even with an unknown kid.
    let ghost = token(&key, "ES256", Some("ghost-1"), &claims());
    assert_eq!(verdict(&v, &ghost).await, refused(Refusal::UnknownKid));
    assert_eq!(jwks.fetches(), 1);
    for kid in ["ghost-2", "ghost-3", "ghost-1"] {
        let t = token(&key, "ES256", Some(kid), &claims());
        assert_eq!(verdict(&v, &t).await, refused(Refusal::UnknownKid));
    }
    assert_eq!(jwks.fetches(), 1, "no refetch within the interval");
    // The known key still works.
    let ok = token(&key, "ES256", Some("k1"), &claims());
    assert!(matches!(verdict(&v, &ok).await, Verdict::Verified(_)));
    assert_eq!(jwks.fetches(), 1);
}

#[tokio::test]
async fn after_the_interval_one_unknown_kid_refetches_and_the_next_does_not() {
    let key = TestKey::p256();
    let jwks = JwksServer::new(&[key.jwk(Some("k1"), None)]);
    let clock = Arc::new(FixedClock::new(NOW));
    let v = jwks.verifier_on(Duration::from_secs(30), clock.clone());
    let ok = token(&key, "ES256", Some("k1"), &claims());
    assert!(matches!(verdict(&v, &ok).await, Verdict::Verified(_)));
    assert_eq!(jwks.fetches(), 1);

    clock.advance(29);
    let early = token(&key, "ES256", Some("unknown-a"), &claims());
    assert_eq!(verdict(&v, &early).await, refused(Refusal::UnknownKid));
    assert_eq!(jwks.fetches(), 1, "not within the interval");
    clock.advance(1);
    let first = token(&key, "ES256", Some("unknown-b"), &claims());
    assert_eq!(verdict(&v, &first).await, refused(Refusal::UnknownKid));
    assert_eq!(
        jwks.fetches(),
        2,
        "one refetch once the interval has passed"
    );
    let second = token(&key, "ES256", Some("unknown-c"), &claims());
    assert_eq!(verdict(&v, &second).await, refused(Refusal::UnknownKid));
    assert_eq!(jwks.fetches(), 2, "not again within the interval");
    // A clock that goes back does not lock the refetch out until it catches up.
    clock.advance(-3600);
    assert_eq!(verdict(&v, &first).await, refused(Refusal::UnknownKid));
    assert_eq!(
        jwks.fetches(),
        3,
        "a clock that went back lets one refetch through"
    );
    assert_eq!(verdict(&v, &second).await, refused(Refusal::UnknownKid));
    assert_eq!(jwks.fetches(), 3);
}

/// Keys the AS stops publishing stop verifying: here the AS replaced the key behind `kid`
/// `sig-1` (kids named by purpose rather than by thumbprint are common, and RFC 7517 §4.5 only
/// asks for distinct kids within one set). An hour on, well past the refetch interval, the
/// verifier still holds the old key: nothing refetches a set whose kids are all known, and a
/// signature that fails under a known kid refetches nothing either. So the replaced key keeps
/// verifying whatever its holder signs, and the AS's new tokens are refused for good.
#[tokio::test]
async fn a_key_replaced_under_its_kid_stops_verifying_and_the_new_one_is_fetched() {
    let old = TestKey::p256();
    let new = TestKey::p256();
    let jwks = JwksServer::new(&[old.jwk(Some("sig-1"), None)]);
    let clock = Arc::new(FixedClock::new(NOW));
    let v = jwks.verifier_on(Duration::from_secs(30), clock.clone());
    let long_lived = with(claims(), "exp", json!(NOW + 86_400));
    let by_old = token(&old, "ES256", Some("sig-1"), &long_lived);
    assert!(matches!(verdict(&v, &by_old).await, Verdict::Verified(_)));
    assert_eq!(jwks.fetches(), 1);

    // The AS replaces the key and keeps its kid; an hour passes.
    jwks.set_keys(&[new.jwk(Some("sig-1"), None)]);
    clock.advance(3600);
    assert_eq!(
        verdict(&v, &by_old).await,
        refused(Refusal::Signature),
        "a key the AS has not published for an hour still verifies (JWKS fetches: {})",
        jwks.fetches()
    );
    let by_new = token(&new, "ES256", Some("sig-1"), &long_lived);
    assert!(
        matches!(verdict(&v, &by_new).await, Verdict::Verified(_)),
        "the AS's current key is never fetched (JWKS fetches: {})",
        jwks.fetches()
    );
}

/// Within its maximum age the cached set answers alone; once older, the next lookup refetches
/// it and decides with the fresh set: a key the AS no longer publishes is unknown.
#[tokio::test]
async fn a_key_removed_from_the_jwks_verifies_until_the_max_age_and_not_after() {
    let kept = TestKey::p256();
    let removed = TestKey::p256();
    let jwks = JwksServer::new(&[
        kept.jwk(Some("kept"), None),
        removed.jwk(Some("gone"), None),
    ]);
    let clock = Arc::new(FixedClock::new(NOW));
    let config = config(JWKS_URI)
        .refetch_interval(Duration::from_secs(30))
        .jwks_max_age(Duration::from_secs(120));
    let v = jwks.verifier_with(config, clock.clone());
    let long_lived = with(claims(), "exp", json!(NOW + 86_400));
    let by_removed = token(&removed, "ES256", Some("gone"), &long_lived);
    let by_kept = token(&kept, "ES256", Some("kept"), &long_lived);
    assert!(matches!(
        verdict(&v, &by_removed).await,
        Verdict::Verified(_)
    ));
    assert_eq!(jwks.fetches(), 1);

    jwks.set_keys(&[kept.jwk(Some("kept"), None)]);
    clock.advance(119);
    assert!(
        matches!(verdict(&v, &by_removed).await, Verdict::Verified(_)),
        "within the maximum age the cached set answers"
    );
    assert_eq!(jwks.fetches(), 1, "no fetch within the maximum age");
    clock.advance(1);
    assert_eq!(verdict(&v, &by_removed).await, refused(Refusal::UnknownKid));
    assert_eq!(jwks.fetches(), 2, "one refetch at the maximum age");
    assert!(matches!(verdict(&v, &by_kept).await, Verdict::Verified(_)));
    assert_eq!(verdict(&v, &by_removed).await, refused(Refusal::UnknownKid));
    assert_eq!(
        jwks.fetches(),
        2,
        "the fresh set answers until it is old in turn"
    );
    assert_eq!(v.keys.len(), 1);
}

/// The refetch of an old set is limited like any other: however many tokens arrive after the
/// maximum age, one shared fetch, then none until the refetch interval has passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_lookups_after_the_max_age_make_one_fetch() {
    let key = TestKey::p256();
    let jwks = JwksServer::new(&[key.jwk(Some("k1"), None)]);
    let clock = Arc::new(FixedClock::new(NOW));
    let v = Arc::new(jwks.verifier_on(Duration::from_secs(30), clock.clone()));
    let long_lived = with(claims(), "exp", json!(NOW + 86_400));
    let t = Arc::new(token(&key, "ES256", Some("k1"), &long_lived));
    assert!(matches!(verdict(&v, &t).await, Verdict::Verified(_)));
    assert_eq!(jwks.fetches(), 1);

    // A burst past the (default, 5 min) maximum age: one fetch, which everyone waits for.
    clock.advance(301);
    jwks.delay(Duration::from_millis(150));
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let v = Arc::clone(&v);
            let t = Arc::clone(&t);
            tokio::spawn(async move { v.check(&t).await })
        })
        .collect();
    for task in tasks {
        let verdict = task.await.expect("join").expect("no fetch error");
        assert!(matches!(verdict, Verdict::Verified(_)), "{verdict:?}");
    }
    assert_eq!(jwks.fetches(), 2, "one fetch for the burst");
    // One after another, too.
    clock.advance(301);
    for _ in 0..50 {
        assert!(matches!(verdict(&v, &t).await, Verdict::Verified(_)));
    }
    assert_eq!(jwks.fetches(), 3, "one fetch for fifty lookups");

    // A maximum age shorter than the refetch interval (here the AS's `max-age=0`) refetches
    // no more often than the interval allows.
    jwks.set_cache_control("max-age=0");
    clock.advance(301);
    assert!(matches!(verdict(&v, &t).await, Verdict::Verified(_)));
    assert_eq!(jwks.fetches(), 4);
    for _ in 0..3 {
        clock.advance(10);
        for _ in 0..20 {
            assert!(matches!(verdict(&v, &t).await, Verdict::Verified(_)));
        }
    }
    assert_eq!(jwks.fetches(), 5, "30 s later, one more; never more often");
}

/// During a JWKS outage an old set keeps verifying (availability); the fetch is retried once
/// per interval, and the first one that succeeds decides.
#[tokio::test]
async fn a_failed_max_age_refetch_keeps_the_cached_keys() {
    let key = TestKey::p256();
    let jwks = JwksServer::new(&[key.jwk(Some("k1"), None)]);
    let clock = Arc::new(FixedClock::new(NOW));
    let v = jwks.verifier_on(Duration::from_secs(30), clock.clone());
    let long_lived = with(claims(), "exp", json!(NOW + 86_400));
    let t = token(&key, "ES256", Some("k1"), &long_lived);
    assert!(matches!(verdict(&v, &t).await, Verdict::Verified(_)));

    jwks.fail_with(503);
    clock.advance(301);
    for _ in 0..5 {
        assert!(
            matches!(verdict(&v, &t).await, Verdict::Verified(_)),
            "a failed refetch keeps the cached keys"
        );
    }
    assert_eq!(jwks.fetches(), 2, "one attempt per interval");
    clock.advance(30);
    assert!(matches!(verdict(&v, &t).await, Verdict::Verified(_)));
    assert_eq!(jwks.fetches(), 3, "retried after the interval");

    // The JWKS is back, without the key: the next allowed fetch decides.
    jwks.fail_with(0);
    jwks.set_keys(&[TestKey::p256().jwk(Some("k2"), None)]);
    clock.advance(30);
    assert_eq!(verdict(&v, &t).await, refused(Refusal::UnknownKid));
    assert_eq!(jwks.fetches(), 4);
}

/// A signature that fails under a known kid refetches the set (the AS may have replaced the
/// key under that kid), but no more often than the refetch interval, whatever is forged.
#[tokio::test]
async fn forged_signatures_under_a_known_kid_refetch_at_most_once_per_interval() {
    let key = TestKey::p256();
    let forger = TestKey::p256();
    let jwks = JwksServer::new(&[key.jwk(Some("k1"), None)]);
    let clock = Arc::new(FixedClock::new(NOW));
    let v = jwks.verifier_on(Duration::from_secs(30), clock.clone());
    let ok = token(&key, "ES256", Some("k1"), &claims());
    assert!(matches!(verdict(&v, &ok).await, Verdict::Verified(_)));
    assert_eq!(jwks.fetches(), 1);

    let forged = token(&forger, "ES256", Some("k1"), &claims());
    for _ in 0..20 {
        assert_eq!(verdict(&v, &forged).await, refused(Refusal::Signature));
    }
    assert_eq!(jwks.fetches(), 1, "not within the interval");
    clock.advance(30);
    for _ in 0..20 {
        assert_eq!(verdict(&v, &forged).await, refused(Refusal::Signature));
    }
    assert_eq!(jwks.fetches(), 2, "one refetch per interval");
    assert!(matches!(verdict(&v, &ok).await, Verdict::Verified(_)));

    // A failed refetch refuses the signature; it is no fetch error, since a key was cached.
    jwks.fail_with(500);
    clock.advance(30);
    assert_eq!(verdict(&v, &forged).await, refused(Refusal::Signature));
    assert_eq!(jwks.fetches(), 3);
    assert!(matches!(verdict(&v, &ok).await, Verdict::Verified(_)));
}

/// A key replaced under its kid within the maximum age: the first token signed by the new key
/// refetches the set and is verified with the new key; the old key is gone.
#[tokio::test]
async fn a_bad_signature_picks_up_a_key_replaced_under_its_kid() {
    let old = TestKey::p256();
    let new = TestKey::p256();
    let jwks = JwksServer::new(&[old.jwk(Some("sig-1"), None)]);
    let clock = Arc::new(FixedClock::new(NOW));
    let v = jwks.verifier_on(Duration::from_secs(30), clock.clone());
    let by_old = token(&old, "ES256", Some("sig-1"), &claims());
    assert!(matches!(verdict(&v, &by_old).await, Verdict::Verified(_)));

    jwks.set_keys(&[new.jwk(Some("sig-1"), None)]);
    clock.advance(30);
    let by_new = token(&new, "ES256", Some("sig-1"), &claims());
    assert!(matches!(verdict(&v, &by_new).await, Verdict::Verified(_)));
    assert_eq!(jwks.fetches(), 2, "one refetch, then one more try");
    assert_eq!(verdict(&v, &by_old).await, refused(Refusal::Signature));
    assert!(matches!(verdict(&v, &by_new).await, Verdict::Verified(_)));
    assert_eq!(jwks.fetches(), 2);
}

/// The AS's `Cache-Control: max-age` shortens the maximum age, never lengthens it.
#[tokio::test]
async fn a_shorter_cache_control_max_age_is_honoured_and_a_longer_one_is_not() {
    let key = TestKey::p256();
    let jwks = JwksServer::new(&[key.jwk(Some("k1"), None)]);
    jwks.set_cache_control("public, max-age=60");
    let clock = Arc::new(FixedClock::new(NOW));
    let v = jwks.verifier_on(Duration::from_secs(10), clock.clone());
    let long_lived = with(claims(), "exp", json!(NOW + 86_400));
    let t = token(&key, "ES256", Some("k1"), &long_lived);
    assert!(matches!(verdict(&v, &t).await, Verdict::Verified(_)));
    clock.advance(59);
    assert!(matches!(verdict(&v, &t).await, Verdict::Verified(_)));
    assert_eq!(jwks.fetches(), 1);
    clock.advance(1);
    jwks.set_cache_control("max-age=86400");
    assert!(matches!(verdict(&v, &t).await, Verdict::Verified(_)));
    assert_eq!(jwks.fetches(), 2, "refetched after the AS's 60 s");
    // A day is longer than the configured 5 minutes: the 5 minutes count.
    clock.advance(299);
    assert!(matches!(verdict(&v, &t).await, Verdict::Verified(_)));
    assert_eq!(jwks.fetches(), 2);
    clock.advance(1);
    assert!(matches!(verdict(&v, &t).await, Verdict::Verified(_)));
    assert_eq!(
        jwks.fetches(),
        3,
        "refetched after the configured 5 minutes"
    );
}

#[test]
fn cache_control_max_age_is_read_leniently() {
    let max_age = |values: &[&str]| {
        let mut headers = http::HeaderMap::new();
        for v in values {
            headers.append(
                http::header::CACHE_CONTROL,
                http::HeaderValue::from_str(v).expect("a header value"),
            );
        }
        jwks::cache_control_max_age(&headers)
    };
    let secs = |s| Some(Duration::from_secs(s));
    assert_eq!(max_age(&[]), None);
    assert_eq!(max_age(&["no-cache"]), None);
    assert_eq!(max_age(&["public, max-age=600"]), secs(600));
    assert_eq!(max_age(&["Max-Age = \"90\" ,must-revalidate"]), secs(90));
    assert_eq!(max_age(&["max-age=600", "max-age=60"]), secs(60));
    assert_eq!(max_age(&["s-maxage=5, max-age=600"]), secs(600));
    assert_eq!(max_age(&["max-age=-1", "max-age=soon"]), None);
    assert_eq!(max_age(&["max-age=0"]), secs(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_misses_share_one_fetch() {
    let key = TestKey::p256();
    let jwks = JwksServer::new(&[key.jwk(Some("k1"), None)]);
    jwks.delay(Duration::from_millis(150));
    let v = Arc::new(jwks.verifier(Duration::ZERO));
    let t = Arc::new(token(&key, "ES256", Some("k1"), &claims()));
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let v = Arc::clone(&v);
            let t = Arc::clone(&t);
            tokio::spawn(async move { v.check(&t).await })
        })
        .collect();
    for task in tasks {
        let verdict = task.await.expect("join").expect("no fetch error");
        assert!(matches!(verdict, Verdict::Verified(_)), "{verdict:?}");
    }
    assert_eq!(jwks.fetches(), 1, "one fetch for the burst");
}

// ---------------------------------------------------------------------------------------
// Algorithm attacks

#[tokio::test]
async fn alg_none_is_refused_without_fetching() {
    let key = TestKey::p256();
    let jwks = JwksServer::new(&[key.jwk(Some("k1"), None)]);
    let v = jwks.verifier(LONG);
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = json!({"alg": alg, "kid": "k1"});
        let t = jws(&header, &claims(), |_| Vec::new());
        assert!(t.ends_with('.'), "unsecured JWS has an empty signature");
        assert_eq!(verdict(&v, &t).await, refused(Refusal::AlgNone), "{alg}");
        // With a signature part that is present but meaningless, too.
        let t = jws(&header, &claims(), |_| b"sig".to_vec());
        assert_eq!(verdict(&v, &t).await, refused(Refusal::AlgNone), "{alg}");
    }
    let rpt = Rpt::new(jws(&json!({"alg": "none"}), &claims(), |_| Vec::new()));
    assert_eq!(
        v.verify(&rpt).await.expect("ok"),
        Some(Introspection::inactive())
    );
    assert_eq!(jwks.fetches(), 0);
}

#[tokio::test]
async fn hs256_signed_with_the_public_key_is_refused() {
    // Key confusion: an attacker uses the AS's public key as an HMAC secret.
    let ec = TestKey::p256();
    let rsa = TestKey::rsa();
    let ec_jwk = ec.jwk(Some("ec"), None);
    let rsa_jwk = rsa.jwk(Some("rsa"), None);
    let jwks = JwksServer::new(&[ec_jwk.clone(), rsa_jwk.clone()]);
    let secrets: Vec<(&str, Vec<u8>)> = vec![
        ("ec", ec.public_bytes()),
        ("ec", ec_jwk.to_string().into_bytes()),
        ("rsa", rsa.public_bytes()),
        ("rsa", rsa_jwk.to_string().into_bytes()),
        ("rsa", rsa_jwk["n"].as_str().expect("n").as_bytes().to_vec()),
    ];
    // Also with a wider allow-list (HS256 cannot be put in one: `Algorithm` has no HMAC
    // variant; verification refuses HMAC headers whatever the list says).
    let lax = verifier_over(
        jwks.canned.transport(),
        config(JWKS_URI).algorithms([Algorithm::ES256, Algorithm::RS256, Algorithm::PS256]),
        LONG,
    );
    let strict = jwks.verifier(LONG);
    for (kid, secret) in &secrets {
        let t = hs256(kid, &claims(), secret);
        assert_eq!(verdict(&strict, &t).await, refused(Refusal::AlgSymmetric));
        assert_eq!(verdict(&lax, &t).await, refused(Refusal::AlgSymmetric));
        for alg in ["HS384", "HS512"] {
            let header = json!({"alg": alg, "kid": kid});
            let t = jws(&header, &claims(), |_| vec![0; 48]);
            assert_eq!(verdict(&lax, &t).await, refused(Refusal::AlgSymmetric));
        }
    }
    assert_eq!(jwks.fetches(), 0, "refused before any key lookup");
}

#[tokio::test]
async fn a_jwk_alg_or_key_type_that_does_not_fit_the_header_is_refused() {
    let rsa = TestKey::rsa();
    let ec = TestKey::p256();
    let jwks = JwksServer::new(&[
        rsa.jwk(Some("rsa"), Some("RS256")),
        ec.jwk(Some("ec"), Some("ES256")),
    ]);
    let v = jwks.verifier(LONG);
    // A genuine PS256 signature by the key, but its JWK says RS256 only.
    let t = token(&rsa, "PS256", Some("rsa"), &claims());
    assert_eq!(verdict(&v, &t).await, refused(Refusal::KeyMismatch));
    // An RSA algorithm naming the EC key.
    let t = token(&rsa, "RS256", Some("ec"), &claims());
    assert_eq!(verdict(&v, &t).await, refused(Refusal::KeyMismatch));
    // ES384 naming a P-256 key.
    let p384 = TestKey::p384();
    let t = token(&p384, "ES384", Some("ec"), &claims());
    assert_eq!(verdict(&v, &t).await, refused(Refusal::KeyMismatch));
    // The right pairs pass.
    assert!(matches!(
        verdict(&v, &token(&rsa, "RS256", Some("rsa"), &claims())).await,
        Verdict::Verified(_)
    ));
    assert!(matches!(
        verdict(&v, &token(&ec, "ES256", Some("ec"), &claims())).await,
        Verdict::Verified(_)
    ));
    assert_eq!(jwks.fetches(), 1, "a mismatch is not a reason to refetch");
}

#[tokio::test]
async fn bad_signatures_and_malformed_headers_are_refused() {
    let key = TestKey::p256();
    let impostor = TestKey::p256();
    let jwks = JwksServer::new(&[key.jwk(Some("k1"), None)]);
    let v = jwks.verifier(LONG);

    let forged = token(&impostor, "ES256", Some("k1"), &claims());
    assert_eq!(verdict(&v, &forged).await, refused(Refusal::Signature));

    let genuine = token(&key, "ES256", Some("k1"), &claims());
    let mut parts: Vec<&str> = genuine.split('.').collect();
    let raised = URL_SAFE_NO_PAD.encode(with(claims(), "exp", json!(NOW + 99_999)).to_string());
    parts[1] = &raised;
    assert_eq!(
        verdict(&v, &parts.join(".")).await,
        refused(Refusal::Signature),
        "payload swapped under a valid signature"
    );
    let stripped = format!("{}.{}.", parts[0], raised);
    assert_eq!(verdict(&v, &stripped).await, refused(Refusal::Signature));

    let h = |header: Value| jws(&header, &claims(), |m| key.sign("ES256", m));
    assert_eq!(
        verdict(&v, &h(json!({"kid": "k1"}))).await,
        refused(Refusal::MalformedHeader)
    );
    assert_eq!(
        verdict(&v, &h(json!({"alg": 256, "kid": "k1"}))).await,
        refused(Refusal::MalformedHeader)
    );
    assert_eq!(
        verdict(&v, &h(json!({"alg": "ES256", "kid": 1}))).await,
        refused(Refusal::MalformedHeader)
    );
    assert_eq!(
        verdict(&v, &h(json!({"alg": "ES512", "kid": "k1"}))).await,
        refused(Refusal::AlgUnsupported)
    );
    assert_eq!(
        verdict(&v, &h(json!({"alg": "es256", "kid": "k1"}))).await,
        refused(Refusal::AlgUnsupported),
        "alg names are case-sensitive"
    );
    // A critical extension we do not understand (RFC 7515 §4.1.11).
    assert_eq!(
        verdict(
            &v,
            &h(json!({"alg": "ES256", "kid": "k1", "crit": ["exp"], "exp": 1}))
        )
        .await,
        refused(Refusal::MalformedToken)
    );
    // Keys named by the token are never fetched or used.
    let rogue = TestKey::p256();
    let t = jws(
        &json!({"alg": "ES256", "kid": "rogue", "jwk": rogue.jwk(Some("rogue"), None),
                "jku": "http://127.0.0.1:9/evil"}),
        &claims(),
        |m| rogue.sign("ES256", m),
    );
    assert_eq!(verdict(&v, &t).await, refused(Refusal::UnknownKid));
    // Claims that are not a JSON object.
    let t = jws(&json!({"alg": "ES256", "kid": "k1"}), &json!([1, 2]), |m| {
        key.sign("ES256", m)
    });
    assert_eq!(verdict(&v, &t).await, refused(Refusal::MalformedToken));
}

// ---------------------------------------------------------------------------------------
// Claims

#[tokio::test]
async fn wrong_iss_aud_exp_nbf_are_refused() {
    let key = TestKey::p256();
    let jwks = JwksServer::new(&[key.jwk(Some("k1"), None)]);
    let v = jwks.verifier(LONG);
    let check = |claims: Value| {
        let t = token(&key, "ES256", Some("k1"), &claims);
        let v = &v;
        async move { verdict(v, &t).await }
    };
    let c = claims;
    assert_eq!(
        check(with(c(), "iss", json!("https://evil.test"))).await,
        refused(Refusal::Issuer)
    );
    assert_eq!(check(without(c(), "iss")).await, refused(Refusal::Issuer));
    assert_eq!(
        check(with(c(), "aud", json!("other-rs"))).await,
        refused(Refusal::Audience)
    );
    assert_eq!(
        check(with(c(), "aud", json!(["a", "b"]))).await,
        refused(Refusal::Audience)
    );
    assert_eq!(
        check(with(c(), "aud", json!([]))).await,
        refused(Refusal::Audience)
    );
    assert_eq!(check(without(c(), "aud")).await, refused(Refusal::Audience));
    assert_eq!(
        check(with(c(), "exp", json!(NOW))).await,
        refused(Refusal::Expired)
    );
    assert_eq!(
        check(with(c(), "exp", json!(NOW - 3600))).await,
        refused(Refusal::Expired)
    );
    assert_eq!(check(without(c(), "exp")).await, refused(Refusal::NoExp));
    assert_eq!(
        check(with(c(), "nbf", json!(NOW + 1))).await,
        refused(Refusal::NotYetValid)
    );
    for (name, bad) in [
        ("exp", json!("tomorrow")),
        ("nbf", json!(true)),
        ("iat", json!("now")),
        ("aud", json!(42)),
        ("aud", json!([AUDIENCE, 42])),
        ("iss", json!(["x"])),
        ("sub", json!(7)),
        ("azp", json!({"a": 1})),
        ("client_id", json!(false)),
    ] {
        assert_eq!(
            check(with(c(), name, bad)).await,
            refused(Refusal::MalformedClaims),
            "{name}"
        );
    }
    // Accepted variants: aud as an array, a trailing slash on iss, nbf now, float dates.
    for ok in [
        with(c(), "aud", json!(["account", AUDIENCE])),
        with(c(), "iss", json!(format!("{ISSUER}/"))),
        with(c(), "nbf", json!(NOW)),
        with(c(), "exp", json!(NOW as f64 + 0.5 + 1.0)),
    ] {
        assert!(matches!(check(ok).await, Verdict::Verified(_)));
    }
}

#[test]
fn leeway_applies_to_exp_and_nbf() {
    let cfg = config("https://as.test/jwks").leeway(Duration::from_secs(30));
    let c = |name: &str, value: i64| {
        let Value::Object(map) = with(claims(), name, json!(value)) else {
            unreachable!()
        };
        check_claims(&map, &cfg, NOW)
    };
    assert!(c("exp", NOW - 29).is_ok());
    assert_eq!(c("exp", NOW - 30), Err(Refusal::Expired));
    assert!(c("nbf", NOW + 30).is_ok());
    assert_eq!(c("nbf", NOW + 31), Err(Refusal::NotYetValid));
    let strict = config("https://as.test/jwks");
    let Value::Object(map) = with(claims(), "exp", json!(NOW + 1)) else {
        unreachable!()
    };
    assert!(check_claims(&map, &strict, NOW).is_ok());
    assert_eq!(check_claims(&map, &strict, NOW + 1), Err(Refusal::Expired));
}

// ---------------------------------------------------------------------------------------
// Not a JWT, and JWKS failures

#[tokio::test]
async fn tokens_that_are_not_jwts_are_left_to_introspection() {
    let jwks = JwksServer::new(&[]);
    let v = jwks.verifier(LONG);
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"ES256"}"#);
    let array = URL_SAFE_NO_PAD.encode("[1]");
    let text = URL_SAFE_NO_PAD.encode("hello");
    for t in [
        "rpt-Zk31".to_owned(),
        "3f0a6a2e-5d1e-4c43-8f3e-0d3c9a1b2c3d".to_owned(),
        "a.b".to_owned(),
        format!("{header}.e30"),
        format!("{header}.e30.c2ln.x.y"), // five parts: a JWE, not a JWS
        format!("{header}..c2ln"),        // empty payload
        format!("{header}.e3+=.c2ln"),    // payload not base64url
        ".e30.c2ln".to_owned(),           // empty header
        format!("{header}.e30.c2/n"),     // not base64url
        format!("{header}=.e30.c2ln"),    // padding
        format!("{text}.e30.c2ln"),       // header is not JSON
        format!("{array}.e30.c2ln"),      // header is not an object
        "..".to_owned(),
    ] {
        assert_eq!(v.verify(&Rpt::new(t.clone())).await, Ok(None), "{t}");
    }
    assert_eq!(jwks.fetches(), 0);
}

#[tokio::test]
async fn an_unreachable_or_broken_jwks_is_an_error() {
    let key = TestKey::p256();
    let t = token(&key, "ES256", Some("k1"), &claims());

    // Connection refused.
    let dead = Canned::with(|_, _| Err(Failure::Unreachable(Default::default())));
    let v = verifier_over(dead.transport(), config(JWKS_URI), LONG);
    assert_eq!(
        v.check(&t).await,
        Err(CallError::unreachable(AsEndpoint::Jwks))
    );

    let jwks = JwksServer::new(&[key.jwk(Some("k1"), None)]);
    jwks.fail_with(503);
    let v = jwks.verifier(LONG);
    assert_eq!(v.verify(&Rpt::new(t.clone())).await, Err(status(503)));
    // Within the interval the failure is remembered, not retried.
    assert_eq!(v.check(&t).await, Err(status(503)));
    assert_eq!(jwks.fetches(), 1);

    for body in [json!({"keys": "nope"}), json!([1]), json!({"kid": "k1"})] {
        let jwks = JwksServer::new(&[]);
        jwks.set_body(body);
        let v = jwks.verifier(LONG);
        assert_eq!(v.check(&t).await, Err(unusable_set()));
    }
}

#[tokio::test]
async fn a_failed_refetch_keeps_the_cached_keys() {
    let key = TestKey::p256();
    let jwks = JwksServer::new(&[key.jwk(Some("k1"), None)]);
    let v = jwks.verifier(Duration::ZERO);
    let known = token(&key, "ES256", Some("k1"), &claims());
    assert!(matches!(verdict(&v, &known).await, Verdict::Verified(_)));

    jwks.fail_with(500);
    let unknown = token(&key, "ES256", Some("k2"), &claims());
    assert_eq!(v.check(&unknown).await, Err(status(500)));
    assert_eq!(jwks.fetches(), 2);
    assert!(
        matches!(verdict(&v, &known).await, Verdict::Verified(_)),
        "the cached key still verifies"
    );
    assert_eq!(jwks.fetches(), 2, "a cached key needs no fetch");

    // Recovery: the next allowed fetch succeeds and clears the error.
    jwks.fail_with(0);
    assert_eq!(verdict(&v, &unknown).await, refused(Refusal::UnknownKid));
    assert_eq!(jwks.fetches(), 3);
}

#[test]
fn unusable_jwks_entries_are_skipped() {
    let ec = TestKey::p256();
    let rsa = TestKey::rsa();
    let mut enc = rsa.jwk(Some("enc"), None);
    enc["use"] = json!("enc");
    let mut wrap_only = ec.jwk(Some("wrap"), None);
    wrap_only["key_ops"] = json!(["wrapKey"]);
    let mut verify_ops = ec.jwk(Some("ops"), None);
    verify_ops["key_ops"] = json!(["verify"]);
    let body = json!({"keys": [
        ec.jwk(Some("ok-ec"), Some("ES256")),
        rsa.jwk(Some("ok-rsa"), None),
        verify_ops,
        enc,
        wrap_only,
        {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac", "alg": "HS256"},
        {"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA", "kid": "p521"},
        {"kty": "OKP", "crv": "X25519", "x": "AA", "kid": "x25519"},
        {"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "oaep", "alg": "RSA-OAEP"},
        {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA", "kid": "p256-rs", "alg": "RS256"},
        {"kty": "PQC", "kid": "future"},
        "not an object",
    ]});
    let keys = jwks::parse_key_set(body.to_string().as_bytes()).expect("parses");
    let kids: Vec<&str> = keys.iter().filter_map(|k| k.kid.as_deref()).collect();
    assert_eq!(kids, ["ok-ec", "ok-rsa", "ops"]);
    assert!(jwks::parse_key_set(b"{}").is_err());
    assert!(jwks::parse_key_set(b"<html>").is_err());
    assert!(
        jwks::parse_key_set(br#"{"keys": []}"#)
            .expect("empty")
            .is_empty()
    );
}

// ---------------------------------------------------------------------------------------
// Configuration and logging

#[test]
fn validate_says_what_to_fix() {
    let ok = config("https://as.test/jwks");
    assert_eq!(ok.validate(), Ok(()));
    let e = JwtValidation::new()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .validate();
    assert!(e.expect_err("no jwks_uri").contains("jwks_uri"));
    for bad in ["/jwks", "ftp://as.test/jwks", "file:///etc/jwks.json"] {
        let e = config(bad).validate().expect_err(bad);
        assert!(e.contains("absolute http(s) URL with a host"), "{e}");
    }
    // A URL that does not parse may hold a password: the message never shows the user info.
    for bad in [
        "https://rs:s3cret-pw@as.test:99999/jwks",
        "https://rs:s3cret#pw@as.test/jwks",
        "ftp://rs:s3cret-pw@as.test/jwks",
    ] {
        let e = config(bad).validate().expect_err(bad);
        assert!(e.contains("***@as.test"), "{e}");
        assert!(!e.contains("s3cret") && !e.contains("rs:"), "{e}");
    }
    assert_eq!(config("http://127.0.0.1:8080/jwks").validate(), Ok(()));
    let e = JwtValidation::new()
        .jwks_uri("https://as.test/jwks")
        .audience("a")
        .validate();
    assert!(e.expect_err("no issuer").contains("issuer"));
    let e = JwtValidation::new()
        .jwks_uri("https://as.test/jwks")
        .issuer(ISSUER)
        .validate();
    assert!(e.expect_err("no audience").contains("audience"));
    let e = config("https://as.test/jwks").algorithms([]);
    assert!(e.validate().expect_err("empty").contains("algorithms"));
    let e = config("https://as.test/jwks").leeway(Duration::from_secs(301));
    assert!(e.validate().expect_err("leeway").contains("leeway"));
    let e = config("https://as.test/jwks").leeway(MAX_LEEWAY);
    assert_eq!(e.validate(), Ok(()), "the bound itself is allowed");
    let e = config("https://as.test/jwks").refetch_interval(Duration::from_millis(10));
    assert!(
        e.validate()
            .expect_err("interval")
            .contains("refetch_interval")
    );
    let e = config("https://as.test/jwks").refetch_interval(MIN_REFETCH_INTERVAL);
    assert_eq!(e.validate(), Ok(()), "the bound itself is allowed");
    assert_eq!(JwtValidation::new().jwks_max_age, DEFAULT_JWKS_MAX_AGE);
    for bad in [
        Duration::ZERO,
        Duration::from_millis(999),
        MAX_JWKS_MAX_AGE + Duration::from_secs(1),
    ] {
        let e = config("https://as.test/jwks").jwks_max_age(bad);
        assert!(
            e.validate().expect_err("max age").contains("jwks_max_age"),
            "{bad:?}"
        );
    }
    for bound in [MIN_JWKS_MAX_AGE, MAX_JWKS_MAX_AGE] {
        let e = config("https://as.test/jwks").jwks_max_age(bound);
        assert_eq!(e.validate(), Ok(()), "the bound {bound:?} is allowed");
    }
}

#[test]
fn acceptance_names_everything_that_decides_and_nothing_else() {
    // Layers that share a cache must tell apart verdicts reached under other rules (a key
    // set of other keys accepts other tokens); the order of audiences and algorithms changes
    // nothing.
    let base = config("https://as.test/jwks")
        .audience("other")
        .algorithms([Algorithm::RS256, Algorithm::ES256]);
    let same = config("https://as.test/jwks")
        .audience("other")
        .algorithms([Algorithm::ES256, Algorithm::RS256]);
    assert_eq!(base.acceptance(), same.acceptance());
    assert!(base.acceptance().contains(ISSUER), "{}", base.acceptance());
    for different in [
        base.clone().issuer("https://as.test/realms/other"),
        base.clone().audience("third"),
        base.clone().algorithms([Algorithm::RS256]),
        base.clone().leeway(Duration::from_secs(5)),
        config("https://kc.test/certs")
            .audience("other")
            .algorithms([Algorithm::RS256, Algorithm::ES256]),
    ] {
        assert_ne!(base.acceptance(), different.acceptance());
    }
}

#[test]
fn fill_defaults_only_fills_what_is_unset() {
    let mut jwt = JwtValidation::new();
    jwt.fill_defaults(Some("https://as.test/jwks"), ISSUER, "rs1");
    assert_eq!(jwt.configured_jwks_uri(), Some("https://as.test/jwks"));
    assert_eq!(jwt.issuer.as_deref(), Some(ISSUER));
    assert_eq!(jwt.audiences, ["rs1"]);
    assert_eq!(jwt.validate(), Ok(()));

    let mut mine = JwtValidation::new()
        .jwks_uri("https://kc.test/certs")
        .issuer("https://kc.test/realms/x")
        .audience("a")
        .audience("b");
    mine.fill_defaults(Some("https://as.test/jwks"), ISSUER, "rs1");
    assert_eq!(mine.configured_jwks_uri(), Some("https://kc.test/certs"));
    assert_eq!(mine.issuer.as_deref(), Some("https://kc.test/realms/x"));
    assert_eq!(mine.audiences, ["a", "b"]);

    let mut none = JwtValidation::new();
    none.fill_defaults(None, ISSUER, "rs1");
    assert!(none.validate().expect_err("no jwks").contains("jwks_uri"));
    assert_eq!(JwtValidation::default().algorithms, DEFAULT_ALGORITHMS);
    assert_eq!(RptValidation::default(), RptValidation::Introspect);
}

/// A `MakeWriter` collecting everything into one buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Self;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Captured {
    /// A subscriber writing every event up to DEBUG here, without colours.
    fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync + use<> {
        tracing_subscriber::fmt()
            .with_writer(self.clone())
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .finish()
    }
}

#[tokio::test(flavor = "current_thread")]
async fn refusals_are_logged_with_the_check_but_never_the_token() {
    let out = Captured::default();
    let _guard = tracing::subscriber::set_default(out.subscriber());

    let key = TestKey::p256();
    let jwks = JwksServer::new(&[key.jwk(Some("k1"), None)]);
    let v = jwks.verifier(LONG);
    let expired = token(
        &key,
        "ES256",
        Some("k1"),
        &with(claims(), "exp", json!(NOW - 1)),
    );
    let rpt = Rpt::new(expired.clone());
    assert_eq!(v.verify(&rpt).await, Ok(Some(Introspection::inactive())));
    let hs = hs256("k1", &claims(), b"secret");
    assert_eq!(
        v.verify(&Rpt::new(hs.clone())).await,
        Ok(Some(Introspection::inactive()))
    );
    jwks.fail_with(500);
    let w = jwks.verifier(LONG);
    assert!(w.verify(&rpt).await.is_err());

    let logs = String::from_utf8(out.0.lock().expect("lock").clone()).expect("utf-8");
    assert!(logs.contains("JWT RPT refused"), "{logs}");
    assert!(logs.contains("check=\"exp\""), "{logs}");
    assert!(logs.contains("key confusion"), "{logs}");
    assert!(logs.contains(&rpt.fingerprint().to_string()), "{logs}");
    assert!(logs.contains("uma.jwks.fetch"), "{logs}");
    assert!(logs.contains("JWKS fetch failed"), "{logs}");
    for secret in [&expired, &hs] {
        for part in secret.split('.') {
            assert!(!logs.contains(part), "a token part leaked: {logs}");
        }
    }
    let debug = format!("{v:?}");
    assert!(!debug.contains(&expired), "{debug}");
    assert!(debug.starts_with("JwtVerifier {"), "{debug}");
    assert!(
        debug.contains(ISSUER) && debug.contains(JWKS_URI),
        "{debug}"
    );
}

#[test]
fn the_verifier_and_its_future_can_cross_threads() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    fn send<T: Send>(_: T) {}
    let v = JwksServer::new(&[]).verifier(LONG);
    send_sync(&v);
    let rpt = Rpt::new("x");
    send(v.verify(&rpt));
}

#[test]
fn skipped_keys_are_logged_with_the_reason() {
    let out = Captured::default();
    let body = json!({"keys": [
        {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac", "alg": "HS256"},
        {"kty": "PQC", "kid": "future"},
    ]});
    let keys = tracing::subscriber::with_default(out.subscriber(), || {
        jwks::parse_key_set(body.to_string().as_bytes()).expect("parses")
    });
    assert!(keys.is_empty());
    let logs = String::from_utf8(out.0.lock().expect("lock").clone()).expect("utf-8");
    assert!(logs.contains(r#"kid="hmac" why="symmetric key""#), "{logs}");
    assert!(
        logs.contains(r#"kid="future" why="unsupported key type""#),
        "{logs}"
    );
}

#[tokio::test]
async fn a_key_set_of_several_kilobytes_is_read() {
    // Keycloak publishes an RSA signature key, an RSA encryption key and often older keys:
    // a few kilobytes, well under the 256 KiB limit.
    let keys: Vec<TestKey> = (0..6).map(|_| TestKey::rsa()).collect();
    let jwks = JwksServer::new(
        &keys
            .iter()
            .enumerate()
            .map(|(i, k)| k.jwk(Some(&format!("rsa-{i}")), None))
            .collect::<Vec<_>>(),
    );
    let v = jwks.verifier(LONG);
    let t = token(&keys[5], "RS256", Some("rsa-5"), &claims());
    assert!(matches!(verdict(&v, &t).await, Verdict::Verified(_)));
    assert_eq!(v.keys.len(), 6);
}
