//! Local validation of JWT RPTs: the signature against the AS's JSON Web Key Set, then
//! `iss`, `aud`, `exp` and `nbf`, then the permissions the token carries (docs/protocol.md §8).
//!
//! FedAuthz §5 lets a resource server determine an RPT's status "by local validation of a
//! self-contained RPT" instead of introspection. Keycloak RPTs are always signed JWTs and
//! Janssen's can be; opaque RPTs (WSO2, Janssen's default) still need introspection, hence
//! [`RptValidation::LocalThenIntrospect`].
//!
//! What is checked, in order (the first failure makes the token inactive):
//!
//! 1. the token is a compact JWS: three base64url parts whose first decodes to a JSON object
//!    (anything else is "not a JWT" and left to introspection);
//! 2. the header `alg` is in the allow-list; `none` and the HMAC family (`HS*`) are always
//!    refused, whatever the allow-list says, so a token "signed" with the AS's public key as
//!    an HMAC secret cannot pass (key confusion); `crit` extensions are refused;
//! 3. the key: found by `kid` in the JWKS from the configured `jwks_uri` (never from the
//!    token's `jku`, `jwk`, `x5u` or `x5c`); a token without `kid` is tried only when the set
//!    holds exactly one key; the key's type and curve, and its JWK `alg` when it has one, must
//!    fit the header `alg`. The set is refetched (at most once per
//!    [`refetch_interval`](JwtValidation::refetch_interval)) for an unknown `kid` and when it
//!    is older than [`jwks_max_age`](JwtValidation::jwks_max_age), so a key the AS stops
//!    publishing stops verifying;
//! 4. the signature; when it fails, the set is refetched under the same limit and the token
//!    tried once more if the AS now publishes another key under that `kid` (a key replaced
//!    under its `kid`);
//! 5. `iss` equals the configured issuer (a trailing `/` is ignored, as in discovery);
//! 6. `aud` is present and names one of the accepted audiences (RFC 7519 §4.1.3);
//! 7. `exp` is present and in the future, `nbf` (if any) is not, both within the leeway,
//!    measured with the layer's [`Clock`];
//! 8. `sub`, `client_id`, `azp` and `iat`, where present, have the right types.
//!
//! Permissions are read from a top-level `permissions` array (UMA naming, Janssen) or, when
//! there is none, from Keycloak's `authorization.permissions` (`rsid`/`scopes`); each
//! permission accepts both namings, like an introspection answer.
//!
//! Local validation cannot see revocation: a revoked JWT RPT stays usable until its `exp`.

mod algorithm;
mod jwks;
#[cfg(test)]
mod tests;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{AlgorithmFamily, Validation};
use serde_json::{Map, Value};

use crate::clock::Clock;
use crate::introspect::Introspection;
use crate::protection::{CallError, Caller};
use crate::token::Rpt;

pub use self::algorithm::{Algorithm, ParseAlgorithmError};
use self::jwks::{KeySet, Lookup};

/// How the layer checks RPTs.
///
/// # Example
///
/// ```
/// use tower_uma::jwt::RptValidation;
///
/// // Opaque RPTs (WSO2, default Janssen) can only be introspected.
/// assert_eq!(RptValidation::default(), RptValidation::Introspect);
/// // Keycloak issues signed JWTs: verify them locally, introspect anything else.
/// let _kc = RptValidation::LocalThenIntrospect;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RptValidation {
    /// Ask the AS's introspection endpoint (RFC 7662, FedAuthz §5.1) about every RPT, through
    /// the cache. Sees revocation; costs one AS call per RPT per cache lifetime.
    #[default]
    Introspect,
    /// Verify every RPT locally as a signed JWT (see [`JwtValidation`]); a token that is not
    /// a JWT is refused like an inactive one. No AS call except for the key set; a revoked
    /// RPT stays usable until its `exp`.
    Local,
    /// Verify JWTs locally and introspect tokens that are not JWTs. A JWT that fails
    /// verification is refused, not introspected.
    LocalThenIntrospect,
}

/// The algorithms accepted when none are configured.
const DEFAULT_ALGORITHMS: [Algorithm; 5] = [
    Algorithm::RS256,
    Algorithm::PS256,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// The largest leeway [`JwtValidation::leeway`] accepts.
const MAX_LEEWAY: Duration = Duration::from_secs(300);

/// The shortest refetch interval [`JwtValidation::refetch_interval`] accepts.
const MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(1);

/// The default of [`JwtValidation::jwks_max_age`].
const DEFAULT_JWKS_MAX_AGE: Duration = Duration::from_secs(5 * 60);

/// The bounds of [`JwtValidation::jwks_max_age`].
const MIN_JWKS_MAX_AGE: Duration = Duration::from_secs(1);
const MAX_JWKS_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// Settings of local JWT RPT verification, used with [`RptValidation::Local`] and
/// [`RptValidation::LocalThenIntrospect`].
///
/// The layer fills in what is left unset: the `jwks_uri` from the discovery document, the
/// issuer from its own issuer, and its client id as the audience. A Keycloak RPT carries the
/// resource server's client id in `aud`, so the defaults fit Keycloak.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tower_uma::jwt::{Algorithm, JwtValidation};
///
/// let jwt = JwtValidation::new()
///     .issuer("https://kc.example.com/realms/acme")
///     .audience("photo-api")
///     .audience("photo-api-v2")
///     .algorithms([Algorithm::RS256, Algorithm::PS256])
///     .refetch_interval(Duration::from_secs(60))
///     .jwks_max_age(Duration::from_secs(600))
///     .leeway(Duration::from_secs(5));
/// // The JWKS location normally comes from discovery; set it when the AS publishes none.
/// let jwt = jwt.jwks_uri("https://kc.example.com/realms/acme/protocol/openid-connect/certs");
/// # let _ = jwt;
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct JwtValidation {
    jwks_uri: Option<String>,
    issuer: Option<String>,
    audiences: Vec<String>,
    algorithms: Vec<Algorithm>,
    refetch_interval: Duration,
    jwks_max_age: Duration,
    leeway: Duration,
}

impl Default for JwtValidation {
    fn default() -> Self {
        Self::new()
    }
}

impl JwtValidation {
    /// Settings with every default; see each setter.
    pub fn new() -> Self {
        Self {
            jwks_uri: None,
            issuer: None,
            audiences: Vec::new(),
            algorithms: DEFAULT_ALGORITHMS.to_vec(),
            refetch_interval: Duration::from_secs(30),
            jwks_max_age: DEFAULT_JWKS_MAX_AGE,
            leeway: Duration::ZERO,
        }
    }

    /// The URL of the AS's JSON Web Key Set (RFC 7517 §5), fetched with `GET` on the first
    /// verification. Keys are only ever taken from here, never from a token header. Plain
    /// `http` is refused unless the layer allows it for tests. Defaults to the discovery
    /// document's `jwks_uri`; required.
    pub fn jwks_uri(mut self, url: impl Into<String>) -> Self {
        self.jwks_uri = Some(url.into());
        self
    }

    /// The required `iss` (RFC 7519 §4.1.1), compared exactly except for a trailing `/`.
    /// Defaults to the layer's issuer.
    pub fn issuer(mut self, iss: impl Into<String>) -> Self {
        self.issuer = Some(iss.into());
        self
    }

    /// Adds an accepted `aud` value (RFC 7519 §4.1.3); a token is accepted when its `aud`
    /// names any of them, and refused when it has no `aud`. Call it once per value. Defaults
    /// to the layer's client id.
    pub fn audience(mut self, aud: impl Into<String>) -> Self {
        self.audiences.push(aud.into());
        self
    }

    /// The allow-list of header `alg` values, replacing the default one. The HMAC algorithms
    /// (`HS256`, `HS384`, `HS512`) and `none` cannot be expressed (see [`Algorithm`]), and
    /// tokens naming them are always refused.
    /// Defaults to `RS256`, `PS256`, `ES256`, `ES384` and `EdDSA`.
    pub fn algorithms(mut self, algs: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = algs.into_iter().collect();
        self.algorithms.sort_by_key(|a| a.as_str());
        self.algorithms.dedup();
        self
    }

    /// How often the key set may be refetched, whatever asks for it: an unknown `kid`, a
    /// set older than [`jwks_max_age`](Self::jwks_max_age), or a signature that fails under
    /// a cached key. Also how long a failed fetch is not retried. Measured on the layer's
    /// [`clock`](crate::UmaLayerBuilder::clock). Concurrent lookups share one fetch, so
    /// whatever tokens arrive, the layer never fetches the JWKS more often than this. At
    /// least one second. Defaults to 30 s.
    pub fn refetch_interval(mut self, d: Duration) -> Self {
        self.refetch_interval = d;
        self
    }

    /// How long the fetched key set is used before the next verification refetches it (and
    /// waits for it), so that a key the AS removes from its JWKS (retired, or replaced under
    /// the same `kid`) stops verifying RPTs within about this long. A `Cache-Control:
    /// max-age` on the JWKS answer is honoured when it is shorter. Measured on the layer's
    /// [`clock`](crate::UmaLayerBuilder::clock); the refetch is limited by
    /// [`refetch_interval`](Self::refetch_interval) like any other.
    ///
    /// If that refetch fails (the JWKS is unreachable or answers an error), the cached keys
    /// keep verifying, and the fetch is retried once per refetch interval: a JWKS outage
    /// does not stop local validation. A key that a successful fetch no longer lists never
    /// verifies again. An RPT verified before stays accepted while the introspection cache
    /// keeps its result ([`max_ttl`](crate::cache::IntrospectionCacheBuilder::max_ttl), 60 s
    /// by default).
    ///
    /// Between 1 s and 24 h. Defaults to 5 minutes.
    pub fn jwks_max_age(mut self, d: Duration) -> Self {
        self.jwks_max_age = d;
        self
    }

    /// Clock skew allowed on `exp` and `nbf`. At most five minutes. Defaults to 0 s.
    pub fn leeway(mut self, d: Duration) -> Self {
        self.leeway = d;
        self
    }

    /// The configured JWKS URL, for the layer's `https` check.
    pub(crate) fn configured_jwks_uri(&self) -> Option<&str> {
        self.jwks_uri.as_deref()
    }

    /// Checks the settings; the error says what to fix.
    pub(crate) fn validate(&self) -> Result<(), String> {
        let Some(uri) = self.jwks_uri.as_deref() else {
            return Err(
                "local JWT validation needs a jwks_uri: the discovery document names none; \
                 set JwtValidation::jwks_uri"
                    .to_owned(),
            );
        };
        match url::Url::parse(uri) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            _ => {
                // Never the user info: a URL that does not parse may hold a password.
                let shown = crate::layer::url_check::without_user_info(uri);
                return Err(format!(
                    "the jwks_uri {shown:?} is not an absolute http(s) URL with a host"
                ));
            }
        }
        if self.issuer.as_deref().is_none_or(str::is_empty) {
            return Err(
                "local JWT validation needs an issuer; set JwtValidation::issuer".to_owned(),
            );
        }
        if self.audiences.is_empty() || self.audiences.iter().any(String::is_empty) {
            return Err(
                "local JWT validation needs at least one non-empty audience; \
                 set JwtValidation::audience"
                    .to_owned(),
            );
        }
        if self.algorithms.is_empty() {
            return Err(
                "JwtValidation::algorithms is empty; allow at least one asymmetric algorithm"
                    .to_owned(),
            );
        }
        if self.refetch_interval < MIN_REFETCH_INTERVAL {
            return Err(format!(
                "JwtValidation::refetch_interval is {:?}; use at least {MIN_REFETCH_INTERVAL:?}, \
                 or tokens with invented kids make the layer hammer the JWKS",
                self.refetch_interval
            ));
        }
        if !(MIN_JWKS_MAX_AGE..=MAX_JWKS_MAX_AGE).contains(&self.jwks_max_age) {
            return Err(format!(
                "JwtValidation::jwks_max_age is {:?}; use between {MIN_JWKS_MAX_AGE:?} and \
                 {MAX_JWKS_MAX_AGE:?}",
                self.jwks_max_age
            ));
        }
        if self.leeway > MAX_LEEWAY {
            return Err(format!(
                "JwtValidation::leeway is {:?}; use at most {MAX_LEEWAY:?}",
                self.leeway
            ));
        }
        Ok(())
    }

    /// Everything that decides whether a token is accepted, for telling apart layers that
    /// share a cache: issuer, audiences, algorithms and leeway (after `fill_defaults`).
    pub(crate) fn acceptance(&self) -> String {
        let mut audiences = self.audiences.clone();
        audiences.sort();
        let mut algorithms: Vec<&str> = self.algorithms.iter().map(|a| a.as_str()).collect();
        algorithms.sort_unstable();
        format!(
            "issuer {:?}, keys {:?}, audiences {audiences:?}, algorithms {algorithms:?}, leeway {:?}",
            self.issuer.as_deref().unwrap_or_default(),
            self.jwks_uri.as_deref().unwrap_or_default(),
            self.leeway
        )
    }

    /// Fills in what is unset: the JWKS URL from discovery, the layer's issuer, and its
    /// client id as the only audience.
    pub(crate) fn fill_defaults(&mut self, jwks_uri: Option<&str>, issuer: &str, client_id: &str) {
        if self.jwks_uri.is_none() {
            self.jwks_uri = jwks_uri.map(str::to_owned);
        }
        if self.issuer.is_none() {
            self.issuer = Some(issuer.to_owned());
        }
        if self.audiences.is_empty() {
            self.audiences.push(client_id.to_owned());
        }
    }
}

/// Why a JWT was refused; logged at DEBUG, never with the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    MalformedHeader,
    AlgNone,
    AlgUnsupported,
    AlgSymmetric,
    AlgNotAllowed,
    UnknownKid,
    NoKid,
    KeyMismatch,
    Signature,
    MalformedToken,
    Issuer,
    Audience,
    NoExp,
    Expired,
    NotYetValid,
    MalformedClaims,
}

impl Refusal {
    fn as_str(self) -> &'static str {
        match self {
            Self::MalformedHeader => "malformed header",
            Self::AlgNone => "alg none",
            Self::AlgUnsupported => "alg not supported",
            Self::AlgSymmetric => "symmetric alg refused (key confusion)",
            Self::AlgNotAllowed => "alg not in the allow-list",
            Self::UnknownKid => "unknown kid",
            Self::NoKid => "no kid and not exactly one key in the set",
            Self::KeyMismatch => "key type or JWK alg does not fit the header alg",
            Self::Signature => "signature",
            Self::MalformedToken => "malformed token",
            Self::Issuer => "iss",
            Self::Audience => "aud",
            Self::NoExp => "no exp",
            Self::Expired => "exp",
            Self::NotYetValid => "nbf",
            Self::MalformedClaims => "malformed claims",
        }
    }
}

/// The outcome of checking one token.
#[derive(Debug, PartialEq)]
enum Verdict {
    NotJwt,
    Refused(Refusal),
    Verified(Introspection),
}

/// Verifies JWT RPTs locally; shared by all clones of the layer.
pub(crate) struct JwtVerifier {
    config: JwtValidation,
    /// One prepared `jsonwebtoken` validation per allowed algorithm: signature only, since
    /// the claims are checked here against the injectable clock.
    validations: Vec<(jsonwebtoken::Algorithm, Validation)>,
    keys: KeySet,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("issuer", &self.config.issuer)
            .field("audiences", &self.config.audiences)
            .field("algorithms", &self.config.algorithms)
            .field("leeway", &self.config.leeway)
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl JwtVerifier {
    /// A verifier for `config`, which should have passed [`JwtValidation::validate`] (a
    /// missing `jwks_uri` makes every key fetch fail). Fetches nothing yet.
    pub(crate) fn new(caller: Caller, config: JwtValidation, clock: Arc<dyn Clock>) -> Self {
        let validations = config
            .algorithms
            .iter()
            .map(|a| a.to_jsonwebtoken())
            .map(|alg| {
                let mut v = Validation::new(alg);
                v.required_spec_claims.clear();
                v.validate_exp = false;
                v.validate_nbf = false;
                v.validate_aud = false;
                v.leeway = 0;
                (alg, v)
            })
            .collect();
        let keys = KeySet::new(
            caller,
            config.jwks_uri.clone().unwrap_or_default(),
            config.refetch_interval,
            config.jwks_max_age,
            Arc::clone(&clock),
        );
        Self {
            config,
            validations,
            keys,
            clock,
        }
    }

    /// Checks `token` locally.
    ///
    /// `Ok(None)`: not a JWT (three base64url parts with a JSON object header); the caller may
    /// introspect it. `Ok(Some(_))`: a JWT, verified (active, with its claims and permissions)
    /// or refused for any reason (inactive; the reason is logged at DEBUG with the token's
    /// fingerprint). `Err`: the key set could not be fetched and no cached key fits.
    pub(crate) async fn verify(&self, token: &Rpt) -> Result<Option<Introspection>, CallError> {
        match self.check(token.secret()).await? {
            Verdict::NotJwt => Ok(None),
            Verdict::Verified(intro) => Ok(Some(intro)),
            Verdict::Refused(why) => {
                tracing::debug!(
                    token.fingerprint = %token.fingerprint(),
                    check = why.as_str(),
                    "JWT RPT refused"
                );
                Ok(Some(Introspection::inactive()))
            }
        }
    }

    async fn check(&self, token: &str) -> Result<Verdict, CallError> {
        let Some(header) = jose_header(token) else {
            return Ok(Verdict::NotJwt);
        };
        let alg = match self.header_alg(&header) {
            Ok(alg) => alg,
            Err(why) => return Ok(Verdict::Refused(why)),
        };
        let kid = match header.get("kid") {
            None => None,
            Some(Value::String(kid)) => Some(kid.as_str()),
            Some(_) => return Ok(Verdict::Refused(Refusal::MalformedHeader)),
        };
        let mut key = match self.keys.find(kid, alg).await? {
            Lookup::Found(key) => key,
            missing => return Ok(Verdict::Refused(no_key(&missing, kid))),
        };
        let Some((_, validation)) = self.validations.iter().find(|(a, _)| *a == alg) else {
            return Ok(Verdict::Refused(Refusal::AlgNotAllowed));
        };
        let mut retried = false;
        let claims = loop {
            let e = match jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, validation) {
                Ok(data) => break data.claims,
                Err(e) => e,
            };
            if !matches!(e.kind(), jsonwebtoken::errors::ErrorKind::InvalidSignature) {
                return Ok(Verdict::Refused(Refusal::MalformedToken));
            }
            if retried {
                return Ok(Verdict::Refused(Refusal::Signature));
            }
            // The AS may have replaced the key under this kid: once, with what it publishes
            // now (one rate-limited refetch), if that is another key.
            retried = true;
            match self.keys.after_bad_signature(kid, alg, &key).await {
                Lookup::Found(fresh) if !Arc::ptr_eq(&fresh, &key) => key = fresh,
                Lookup::Found(_) => return Ok(Verdict::Refused(Refusal::Signature)),
                missing => return Ok(Verdict::Refused(no_key(&missing, kid))),
            }
        };
        Ok(
            match check_claims(&claims, &self.config, self.clock.now_unix()) {
                Ok(intro) => Verdict::Verified(intro),
                Err(why) => Verdict::Refused(why),
            },
        )
    }

    /// The header's `alg`, if it is one this verifier accepts.
    fn header_alg(&self, header: &Map<String, Value>) -> Result<jsonwebtoken::Algorithm, Refusal> {
        let Some(Value::String(name)) = header.get("alg") else {
            return Err(Refusal::MalformedHeader);
        };
        if name.eq_ignore_ascii_case("none") {
            return Err(Refusal::AlgNone);
        }
        let alg = jsonwebtoken::Algorithm::from_str(name).map_err(|_| Refusal::AlgUnsupported)?;
        if alg.family() == AlgorithmFamily::Hmac {
            return Err(Refusal::AlgSymmetric);
        }
        if !self
            .config
            .algorithms
            .iter()
            .any(|a| a.to_jsonwebtoken() == alg)
        {
            return Err(Refusal::AlgNotAllowed);
        }
        Ok(alg)
    }
}

/// Why a lookup found no key to verify with (`lookup` is not [`Lookup::Found`]).
fn no_key(lookup: &Lookup, kid: Option<&str>) -> Refusal {
    match lookup {
        Lookup::Incompatible => Refusal::KeyMismatch,
        Lookup::Missing if kid.is_none() => Refusal::NoKid,
        Lookup::Missing | Lookup::Found(_) => Refusal::UnknownKid,
    }
}

/// The JOSE header of a compact JWS: exactly three base64url parts (the signature may be
/// empty) whose first decodes to a JSON object. `None` for anything else.
fn jose_header(token: &str) -> Option<Map<String, Value>> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let b64url = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if header.is_empty() || payload.is_empty() || !b64url(header) || !b64url(payload) {
        return None;
    }
    if !b64url(signature) {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(header).ok()?;
    match serde_json::from_slice::<Value>(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// A NumericDate (RFC 7519 §2): an integer or a finite number of seconds, floored.
fn numeric_date(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| {
        v.as_f64()
            .filter(|f| f.is_finite())
            .map(|f| f.floor() as i64)
    })
}

/// An optional claim that must be a string when present.
fn optional_str<'a>(
    claims: &'a Map<String, Value>,
    name: &str,
) -> Result<Option<&'a str>, Refusal> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(Refusal::MalformedClaims),
    }
}

/// An optional NumericDate claim.
fn optional_date(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, Refusal> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => numeric_date(v).map(Some).ok_or(Refusal::MalformedClaims),
    }
}

/// Checks the claims of a token whose signature is valid, at `now` (Unix seconds), and turns
/// them into an active [`Introspection`].
fn check_claims(
    claims: &Map<String, Value>,
    config: &JwtValidation,
    now: i64,
) -> Result<Introspection, Refusal> {
    // iss (RFC 7519 §4.1.1): required, exactly the configured issuer.
    let expected_iss = config.issuer.as_deref().ok_or(Refusal::Issuer)?;
    match claims.get("iss") {
        Some(Value::String(iss))
            if iss.trim_end_matches('/') == expected_iss.trim_end_matches('/') => {}
        Some(Value::String(_)) | None => return Err(Refusal::Issuer),
        Some(_) => return Err(Refusal::MalformedClaims),
    }
    // aud (§4.1.3): required, a string or an array of strings naming an accepted audience.
    let accepted = |a: &str| config.audiences.iter().any(|ok| ok == a);
    match claims.get("aud") {
        Some(Value::String(aud)) if accepted(aud) => {}
        Some(Value::Array(auds)) => {
            let mut names = Vec::with_capacity(auds.len());
            for aud in auds {
                names.push(aud.as_str().ok_or(Refusal::MalformedClaims)?);
            }
            if !names.into_iter().any(accepted) {
                return Err(Refusal::Audience);
            }
        }
        Some(Value::String(_)) | None => return Err(Refusal::Audience),
        Some(_) => return Err(Refusal::MalformedClaims),
    }
    // exp (§4.1.4): required; valid while now < exp + leeway. nbf (§4.1.5): now >= nbf - leeway.
    let leeway = i64::try_from(config.leeway.as_secs()).unwrap_or(i64::MAX);
    let exp = optional_date(claims, "exp")?.ok_or(Refusal::NoExp)?;
    if now >= exp.saturating_add(leeway) {
        return Err(Refusal::Expired);
    }
    let nbf = optional_date(claims, "nbf")?;
    if nbf.is_some_and(|nbf| now < nbf.saturating_sub(leeway)) {
        return Err(Refusal::NotYetValid);
    }
    let iat = optional_date(claims, "iat")?;
    let sub = optional_str(claims, "sub")?;
    let client_id = match optional_str(claims, "client_id")? {
        Some(id) => Some(id),
        None => optional_str(claims, "azp")?,
    };
    // Permissions: top-level (UMA naming, Janssen), else Keycloak's `authorization.permissions`.
    let permissions = claims
        .get("permissions")
        .filter(|p| p.is_array())
        .or_else(|| {
            claims
                .get("authorization")
                .and_then(|a| a.get("permissions"))
        })
        .cloned()
        .unwrap_or_else(|| Value::Array(Vec::new()));
    let mut answer = Map::new();
    answer.insert("active".to_owned(), Value::Bool(true));
    answer.insert("exp".to_owned(), Value::from(exp));
    if let Some(iat) = iat {
        answer.insert("iat".to_owned(), Value::from(iat));
    }
    if let Some(nbf) = nbf {
        answer.insert("nbf".to_owned(), Value::from(nbf));
    }
    if let Some(sub) = sub {
        answer.insert("sub".to_owned(), Value::from(sub));
    }
    if let Some(client_id) = client_id {
        answer.insert("client_id".to_owned(), Value::from(client_id));
    }
    answer.insert("permissions".to_owned(), permissions);
    Introspection::from_value(&Value::Object(answer)).map_err(|_| Refusal::MalformedClaims)
}
