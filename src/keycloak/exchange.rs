//! Permission exchange: a plain access token that holds no permission for the request is
//! exchanged at Keycloak's token endpoint for the permissions its bearer may have (the
//! uma-ticket grant with `permission=RESOURCE#SCOPE,…`, `audience` and
//! `response_mode=permissions`, the access token as bearer, an RPT as `subject_token`), as
//! Keycloak's enforcer does without `user-managed-access`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::cache::{DerivedCache, Matches};
use crate::gate::AsEndpoint;
use crate::introspect::Introspection;
use crate::protection::token::Client;
use crate::protection::{Answer, CallError, Caller, Failure, MAX_AS_BODY};
use crate::resources::{ClaimValues, NO_CLAIMS};
use crate::token::{BearerToken, Fingerprint};

/// The settings of permission exchange (Keycloak's enforcer without `user-managed-access`).
///
/// When a token holds no permission that grants the request (a plain access token, which
/// Keycloak's introspection calls inactive under the RPT hint, or an RPT without this
/// permission), the layer asks the token endpoint for the
/// permissions the token's bearer may have on the resource, with the uma-ticket grant
/// (`grant_type=urn:ietf:params:oauth:grant-type:uma-ticket`, UMA Grant §3.3.1, as Keycloak
/// extends it): `permission=RESOURCE#SCOPE,…`, `audience` = the client id,
/// `response_mode=permissions`, and the token as bearer; a token the introspection calls
/// active (an RPT) goes as `subject_token` with the client's credentials instead, as
/// Keycloak's own enforcer sends it, because Keycloak refuses an RPT a few seconds old as the
/// bearer of the grant (`unauthorized_client`) and ends its user's session. The permissions
/// it answers are decided like an RPT's (all or any of the scopes, as the route says).
///
/// - A refusal (`403 access_denied`) is a `403` without a ticket
///   ([`Rejection::Denied`](crate::Rejection::Denied)): there is nothing the client could do
///   with one.
/// - A token Keycloak does not accept (`400 invalid_grant`, `401`: expired, revoked, not one
///   of its tokens) goes on as without exchange: `401` with a ticket.
/// - A failure (unreachable, a `5xx`, an unreadable answer, `400 invalid_resource`) is a
///   `403` with `Warning: 199`, as when the AS is unreachable.
/// - Answers, refusals included, are cached per (token fingerprint, resource, scopes) for at
///   most [`max_ttl`](Self::max_ttl), and a granting answer is never used past the token's
///   `exp` (the decision checks it on every request): the introspection's, or for a token it
///   calls inactive, the `exp` of the JWT Keycloak has just accepted (a granting answer for a
///   token without a readable `exp` is not used). Failures are not cached.
/// - A token's answers go whenever the layer's introspection cache forgets the token: from a
///   revocation hook ([`UmaLayer::forget_token`](crate::UmaLayer::forget_token), for every
///   layer sharing that cache), [`forget_all_tokens`](crate::UmaLayer::forget_all_tokens), or
///   a revocation heard from the fleet (feature `redis`); an answer being fetched meanwhile
///   answers the requests that were waiting for it, and no request that comes after. With
///   the introspection cache [disabled](crate::IntrospectionCache::disabled), no answer is
///   kept: every request asks.
/// - Requests without a token still get `401` with a ticket, and RPTs that grant the request
///   pass without an exchange: UMA clients keep working in the same deployment.
/// - Since Keycloak's introspection cannot tell a plain access token from a bad one, a token
///   it calls inactive costs one exchange (cached like any answer) before its challenge; the
///   calls go through the layer's cap and circuit breakers like every AS call.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tower_uma::keycloak::PermissionExchange;
///
/// let exchange = PermissionExchange::new().max_entries(5_000).max_ttl(Duration::from_secs(30));
/// # let _ = exchange;
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub struct PermissionExchange {
    max_entries: u64,
    max_ttl: Duration,
}

impl Default for PermissionExchange {
    fn default() -> Self {
        Self::new()
    }
}

impl PermissionExchange {
    /// 10,000 answers kept for at most 60 s.
    pub fn new() -> Self {
        Self {
            max_entries: 10_000,
            max_ttl: Duration::from_secs(60),
        }
    }

    /// How many answers the cache keeps; `0` keeps none. Defaults to 10,000.
    pub fn max_entries(mut self, max: u64) -> Self {
        self.max_entries = max;
        self
    }

    /// The longest an answer is kept (a granting one also never past the token's `exp`).
    /// Defaults to 60 s.
    pub fn max_ttl(mut self, ttl: Duration) -> Self {
        self.max_ttl = ttl;
        self
    }
}

/// What an exchange answered.
#[derive(Debug)]
pub(crate) enum Exchanged {
    /// The permissions granted, as an introspection result of the token (its `exp`, `nbf`,
    /// `sub` and `client_id`) with those permissions.
    Granted(Arc<Introspection>),
    /// Keycloak refused: the token's bearer may have none of it.
    Denied,
    /// Keycloak does not accept the token (`400 invalid_grant`, `401`): expired, revoked, or
    /// not one of its tokens.
    Unaccepted,
}

/// The cache key: no token, only its fingerprint.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    token: Fingerprint,
    resource: String,
    scopes: Vec<String>,
    /// The pushed claims: a grant under some claims never answers a request with others.
    claims: Option<Arc<ClaimValues>>,
}

/// The layer's exchanger: the settings, the token endpoint and the answer cache.
pub(crate) struct Exchanger {
    caller: Caller,
    token_endpoint: String,
    audience: String,
    /// The layer's client credentials: they authenticate the exchange of an RPT.
    client: Client,
    cache: Option<moka::future::Cache<Key, Kept>>,
    /// What the cache was told to forget (see [`DerivedCache`]).
    forgets: Forgets,
}

/// A cached answer, with the number of forgets the exchanger had been told of when the
/// exchange that obtained it started.
#[derive(Clone)]
struct Kept {
    since: u64,
    answer: Arc<Exchanged>,
}

/// The forgets an exchanger was told of, numbered from 1, and what each of the latest
/// [`FORGETS_KEPT`] forgot (`None`: everything).
///
/// moka's invalidation reaches the answers stored before a forget, but not an exchange under
/// way then: its answer is stored after, and a request arriving after the forget may join it
/// and be handed its answer. So every answer carries the count its exchange started at, and a
/// request that read a later count takes it only when none of the forgets between matches its
/// token (when they are older than the log keeps, it asks again).
#[derive(Default)]
struct Forgets {
    count: AtomicU64,
    log: Mutex<VecDeque<(u64, Option<Matches>)>>,
}

/// How many forgets an exchanger remembers what of.
const FORGETS_KEPT: usize = 1024;

impl Forgets {
    fn count(&self) -> u64 {
        self.count.load(Ordering::SeqCst)
    }

    /// Records a forget; counted while the log is locked, so that a reader that sees the
    /// count finds the record.
    fn record(&self, matches: Option<Matches>) {
        let mut log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        let n = self.count.fetch_add(1, Ordering::SeqCst) + 1;
        log.push_back((n, matches));
        if log.len() > FORGETS_KEPT {
            log.pop_front();
        }
    }

    /// Whether one of the forgets numbered `since + 1 ..= now` covers `token`; `true` when the
    /// log no longer holds them all.
    fn forgot(&self, since: u64, now: u64, token: &Fingerprint) -> bool {
        let log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(&(first, _)) = log.front() else {
            return true;
        };
        if first > since + 1 {
            return true;
        }
        // The log is numbered without gaps: forget `since + 1` sits at `since + 1 - first`.
        let start = usize::try_from(since + 1 - first).unwrap_or(usize::MAX);
        log.range(start.min(log.len())..)
            .take_while(|(n, _)| *n <= now)
            .any(|(_, matches)| matches.as_ref().is_none_or(|m| m(token)))
    }
}

impl std::fmt::Debug for Exchanger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exchanger")
            .field("token_endpoint", &self.token_endpoint)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl Exchanger {
    /// The exchanger; its answers are cached only when `caching` (the layer's introspection
    /// cache is not disabled) and the settings keep some.
    pub(crate) fn new(
        settings: &PermissionExchange,
        caching: bool,
        caller: Caller,
        token_endpoint: String,
        audience: String,
        client: Client,
    ) -> Self {
        let keeps = caching && settings.max_entries > 0 && !settings.max_ttl.is_zero();
        let cache = keeps.then(|| {
            moka::future::Cache::builder()
                .max_capacity(settings.max_entries)
                .time_to_live(settings.max_ttl)
                .support_invalidation_closures()
                .build()
        });
        Self {
            caller,
            token_endpoint,
            audience,
            client,
            cache,
            forgets: Forgets::default(),
        }
    }

    /// The permissions `token` may have on `resource` for `scopes`; `base` is the token's
    /// introspection result, whose `exp`, `nbf`, `sub` and `client_id` the answer keeps.
    ///
    /// # Errors
    ///
    /// The token endpoint's failure (never cached).
    pub(crate) async fn exchange(
        &self,
        token: &BearerToken<'_>,
        fingerprint: Fingerprint,
        resource: &str,
        scopes: &[String],
        claims: Option<&Arc<ClaimValues>>,
        base: &Introspection,
    ) -> Result<Arc<Exchanged>, CallError> {
        let pushed = claims.map_or(&NO_CLAIMS, |c| &**c);
        let ask = || async {
            let build = request(
                &self.token_endpoint,
                &self.audience,
                token,
                Asked {
                    resource,
                    scopes,
                    claims: pushed,
                },
                base.is_active().then_some(&self.client),
            );
            let parse = |answer| parse(answer, base, token);
            self.caller
                .call(AsEndpoint::Token, build, MAX_AS_BODY, parse)
                .await
                .map(Arc::new)
        };
        let Some(cache) = &self.cache else {
            return ask().await;
        };
        let key = Key {
            token: fingerprint,
            resource: resource.to_owned(),
            scopes: scopes.to_vec(),
            claims: claims.filter(|c| !c.is_empty()).cloned(),
        };
        for _ in 0..2 {
            let now = self.forgets.count();
            let kept = async {
                let answer = ask().await?;
                Ok::<_, CallError>(Kept { since: now, answer })
            };
            let kept = cache
                .try_get_with(key.clone(), kept)
                .await
                .map_err(|e| (*e).clone())?;
            if kept.since >= now || !self.forgets.forgot(kept.since, now, &fingerprint) {
                return Ok(kept.answer);
            }
            // Obtained before a forget of this token that this request came after (it joined
            // an exchange under way, or found its answer stored after the forget): not for
            // this request, nor kept.
            cache.invalidate(&key).await;
        }
        // Forgotten again while asking: ask without the cache.
        ask().await
    }
}

impl DerivedCache for Exchanger {
    fn forget_if(&self, matches: Matches) {
        let Some(cache) = &self.cache else { return };
        self.forgets.record(Some(Arc::clone(&matches)));
        // Cannot fail: the cache supports invalidation closures. Entries stored before this
        // call that match are never returned again.
        if let Err(e) = cache.invalidate_entries_if(move |key, _| matches(&key.token)) {
            tracing::error!(error = %e, "the permission exchange's cache could not forget a token; forgetting every answer");
            cache.invalidate_all();
        }
    }

    fn forget_all(&self) {
        let Some(cache) = &self.cache else { return };
        self.forgets.record(None);
        cache.invalidate_all();
    }
}

/// What an exchange asks for.
#[derive(Clone, Copy)]
struct Asked<'a> {
    resource: &'a str,
    scopes: &'a [String],
    claims: &'a ClaimValues,
}

/// The uma-ticket grant with the token as bearer (or, with `as_subject`, as `subject_token`
/// with those client credentials), asking for the resource and scopes, with the pushed claims
/// as a `claim_token` (base64 of their JSON, in Keycloak's
/// `urn:ietf:params:oauth:token-type:jwt` format, UMA Grant §3.3.1) when there are any.
fn request<'a>(
    token_endpoint: &str,
    audience: &'a str,
    token: &'a BearerToken<'a>,
    asked: Asked<'_>,
    as_subject: Option<&'a Client>,
) -> Result<http::Request<Bytes>, Failure> {
    use base64::Engine as _;
    let Asked {
        resource,
        scopes,
        claims,
    } = asked;
    let permission = if scopes.is_empty() {
        resource.to_owned()
    } else {
        format!("{resource}#{}", scopes.join(","))
    };
    let token = std::str::from_utf8(token.as_bytes())
        .map_err(|_| Failure::Unsendable("the token cannot be sent"))?;
    let claim_token = if claims.is_empty() {
        None
    } else {
        let json = serde_json::to_vec(claims)
            .map_err(|_| Failure::Unsendable("the pushed claims cannot be written"))?;
        Some(base64::engine::general_purpose::STANDARD.encode(json))
    };
    let mut form = vec![
        ("grant_type", "urn:ietf:params:oauth:grant-type:uma-ticket"),
        ("audience", audience),
        ("permission", permission.as_str()),
        ("response_mode", "permissions"),
    ];
    if let Some(claim_token) = &claim_token {
        form.push(("claim_token", claim_token.as_str()));
        form.push(("claim_token_format", "urn:ietf:params:oauth:token-type:jwt"));
    }
    match as_subject {
        Some(client) => {
            form.push(("subject_token", token));
            crate::protection::token::form_post(token_endpoint, form, Some(client), [])
        }
        None => {
            let auth = crate::protection::bearer(token)?;
            crate::protection::token::form_post(token_endpoint, form, None, [auth])
        }
    }
}

/// Reads the answer: `200` with the granted permissions (`rsid`, `scopes`), a refusal, or a
/// failure.
fn parse(
    answer: http::Response<Bytes>,
    base: &Introspection,
    token: &BearerToken<'_>,
) -> Result<Exchanged, Failure> {
    let (parts, body) = answer.into_parts();
    let status = parts.status;
    if status.is_success() {
        let permissions: Value = serde_json::from_slice(&body)
            .map_err(|_| Failure::Unusable("with a body that is not JSON".into()))?;
        if !permissions.is_array() {
            return Err(Failure::Unusable(
                "with permissions that are not a JSON array".into(),
            ));
        }
        let mut object = claims(base, token);
        // Without a known `exp` the answer could outlive the token: not used.
        if !object.contains_key("exp") {
            return Err(Failure::Unusable(
                "a grant for a token whose expiry is unknown".into(),
            ));
        }
        object.insert("active".to_owned(), Value::Bool(true));
        object.insert("permissions".to_owned(), permissions);
        let intro = Introspection::from_value(&Value::Object(object))
            .map_err(|_| Failure::Unusable("with permissions that cannot be read".into()))?;
        return Ok(Exchanged::Granted(Arc::new(intro)));
    }
    let answer = Answer::of(status, &body);
    if status == http::StatusCode::FORBIDDEN {
        return Ok(Exchanged::Denied);
    }
    let unaccepted = status == http::StatusCode::UNAUTHORIZED
        || (status == http::StatusCode::BAD_REQUEST && answer.code() == Some("invalid_grant"));
    if unaccepted {
        return Ok(Exchanged::Unaccepted);
    }
    Err(Failure::Status(answer))
}

/// `exp`, `nbf`, `iat`, `sub` and `client_id` of the token: from its introspection when it is
/// active, else from its JWT payload (Keycloak's access tokens are JWTs; Keycloak has just
/// accepted this one, which is what vouches for the claims).
fn claims(base: &Introspection, token: &BearerToken<'_>) -> Map<String, Value> {
    let mut object = Map::new();
    if base.is_active() {
        for (key, value) in [
            ("exp", base.exp()),
            ("nbf", base.nbf()),
            ("iat", base.iat()),
        ] {
            if let Some(value) = value {
                object.insert(key.to_owned(), Value::from(value));
            }
        }
        for (key, value) in [("sub", base.sub()), ("client_id", base.client_id())] {
            if let Some(value) = value {
                object.insert(key.to_owned(), Value::from(value));
            }
        }
        return object;
    }
    let Some(payload) = crate::token::jwt_payload(token.as_bytes()) else {
        return object;
    };
    for key in ["exp", "nbf", "iat"] {
        if let Some(n) = payload.get(key).and_then(Value::as_i64) {
            object.insert(key.to_owned(), Value::from(n));
        }
    }
    if let Some(sub) = payload.get("sub").and_then(Value::as_str) {
        object.insert("sub".to_owned(), Value::from(sub));
    }
    // Keycloak names the client `azp`.
    let client = payload.get("client_id").or_else(|| payload.get("azp"));
    if let Some(client) = client.and_then(Value::as_str) {
        object.insert("client_id".to_owned(), Value::from(client));
    }
    object
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protection::canned::answer;

    fn base() -> Introspection {
        Introspection::from_json(br#"{"active": true, "exp": 4102444800, "sub": "bob"}"#)
            .expect("an introspection")
    }

    #[test]
    fn the_grant_carries_the_token_as_bearer_and_the_permission() {
        let value = http::HeaderValue::from_static("Bearer tok-1");
        let crate::token::Bearer::Token(token) = crate::token::parse_value(&value) else {
            panic!("a bearer token");
        };
        let scopes = ["view".to_owned(), "edit".to_owned()];
        let asked = |resource, scopes, claims| Asked {
            resource,
            scopes,
            claims,
        };
        let r = request(
            "https://kc.test/token",
            "photo-api",
            &token,
            asked("r1", &scopes, &NO_CLAIMS),
            None,
        )
        .expect("a request");
        assert_eq!(r.headers()[http::header::AUTHORIZATION], "Bearer tok-1");
        let body = std::str::from_utf8(r.body()).expect("utf-8");
        assert_eq!(
            body,
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Auma-ticket&audience=photo-api\
             &permission=r1%23view%2Cedit&response_mode=permissions"
        );
        let r = request(
            "https://kc.test/token",
            "a",
            &token,
            asked("r1", &[], &NO_CLAIMS),
            None,
        )
        .expect("a request");
        assert!(
            std::str::from_utf8(r.body())
                .expect("utf-8")
                .contains("&permission=r1&")
        );
        // Pushed claims: a claim token, base64 of their JSON.
        let claims = ClaimValues::from([("org".to_owned(), vec!["acme".to_owned()])]);
        let r = request(
            "https://kc.test/token",
            "a",
            &token,
            asked("r1", &[], &claims),
            None,
        )
        .expect("a request");
        let body = std::str::from_utf8(r.body()).expect("utf-8");
        // base64 of {"org":["acme"]}
        assert!(
            body.ends_with(
                "&claim_token=eyJvcmciOlsiYWNtZSJdfQ%3D%3D\
                 &claim_token_format=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Ajwt"
            ),
            "{body}"
        );
        // An RPT: the subject, with the client's credentials, never the bearer.
        let client = Client {
            id: "photo-api".into(),
            secret: crate::token::ClientSecret::new("s3cret".to_owned()),
            auth: crate::protection::ClientAuth::Basic,
        };
        let r = request(
            "https://kc.test/token",
            "photo-api",
            &token,
            asked("r1", &scopes, &NO_CLAIMS),
            Some(&client),
        )
        .expect("a request");
        assert_eq!(
            r.headers()[http::header::AUTHORIZATION],
            "Basic cGhvdG8tYXBpOnMzY3JldA=="
        );
        let body = std::str::from_utf8(r.body()).expect("utf-8");
        assert!(body.ends_with("&subject_token=tok-1"), "{body}");
    }

    fn bearer(token: &str) -> BearerToken<'static> {
        let value = http::HeaderValue::from_str(&format!("Bearer {token}")).expect("a header");
        match crate::token::parse_value(&value) {
            crate::token::Bearer::Token(t) => t.into_owned(),
            other => panic!("not a bearer token: {other:?}"),
        }
    }

    #[test]
    fn answers_as_keycloak_gives_them() {
        let opaque = bearer("opaque");
        let granted = parse(
            answer(200, r#"[{"scopes":["view"],"rsid":"r1","rsname":"album"}]"#),
            &base(),
            &opaque,
        );
        let Ok(Exchanged::Granted(intro)) = granted else {
            panic!("granted: {granted:?}");
        };
        assert_eq!(intro.sub(), Some("bob"));
        assert_eq!(intro.exp(), Some(4_102_444_800));
        assert_eq!(intro.permissions()[0].resource_id(), "r1");
        assert!(intro.permissions()[0].has_scope("view"));
        let parse = |status, body: &str| parse(answer(status, body.to_owned()), &base(), &opaque);
        let denied = r#"{"error":"access_denied","error_description":"not_authorized"}"#;
        assert!(matches!(parse(403, denied), Ok(Exchanged::Denied)));
        let bad_token = r#"{"error":"invalid_grant","error_description":"Invalid bearer token"}"#;
        assert!(matches!(parse(400, bad_token), Ok(Exchanged::Unaccepted)));
        assert!(matches!(parse(401, ""), Ok(Exchanged::Unaccepted)));
        assert!(parse(400, r#"{"error":"invalid_resource"}"#).is_err());
        assert!(parse(500, "").is_err());
        assert!(parse(200, "{}").is_err());
    }

    #[test]
    fn an_inactive_introspection_takes_the_claims_of_the_jwt() {
        use base64::Engine as _;
        let b64 = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let payload = b64(r#"{"exp": 4102444800, "sub": "u-1", "azp": "photo-app"}"#);
        let jwt = bearer(&format!("{}.{payload}.sig", b64(r#"{"alg":"RS256"}"#)));
        let inactive = Introspection::inactive();
        let list = r#"[{"scopes":["view"],"rsid":"r1"}]"#;
        let granted = parse(answer(200, list), &inactive, &jwt);
        let Ok(Exchanged::Granted(intro)) = granted else {
            panic!("granted: {granted:?}");
        };
        assert_eq!(intro.exp(), Some(4_102_444_800));
        assert_eq!(intro.sub(), Some("u-1"));
        assert_eq!(intro.client_id(), Some("photo-app"));
        // No readable exp: a grant that could outlive the token is not used.
        let opaque = bearer("opaque");
        assert!(parse(answer(200, list), &inactive, &opaque).is_err());
    }
}

#[cfg(test)]
mod forgets_tests {
    use super::*;

    #[test]
    fn an_answer_is_refused_only_after_a_forget_that_covers_its_token() {
        let (a, b) = (Fingerprint::of(b"a"), Fingerprint::of(b"b"));
        let forgets = Forgets::default();
        assert_eq!(forgets.count(), 0);
        forgets.record(Some(Arc::new(move |f: &Fingerprint| *f == a)));
        assert_eq!(forgets.count(), 1);
        // Started before the forget of `a`: refused for `a`, not for `b`.
        assert!(forgets.forgot(0, 1, &a));
        assert!(!forgets.forgot(0, 1, &b));
        // Started after it: nothing between.
        assert!(!forgets.forgot(1, 1, &a));
        forgets.record(None);
        assert!(forgets.forgot(1, 2, &b), "everything was forgotten");
        assert!(!forgets.forgot(2, 2, &b));
        // Older than the log keeps: assumed forgotten.
        for _ in 0..FORGETS_KEPT {
            forgets.record(Some(Arc::new(|_: &Fingerprint| false)));
        }
        let now = forgets.count();
        assert!(forgets.forgot(0, now, &b));
        assert!(!forgets.forgot(now - 1, now, &b));
    }
}
