//! Local validation of JWT RPTs through the layer (feature `jwt`), against `uma-test-as`
//! issuing JWT RPTs: no introspection for JWTs, the fallback for opaque tokens, and key
//! rotation with one JWKS refetch. The checks on forged tokens (`alg: none`, HS256 signed with
//! the public key, unknown keys) are unit tests of the verifier (`src/jwt/tests.rs`).

use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use http::{Method, StatusCode};

use tower_uma::{
    FixedClock, JwtValidation, ResourceDecl, ResourceMap, Route, RptValidation, UmaLayer,
};
use uma_test_as::{Endpoint, RptFormat, RptPermission, RptSpec, TestAs};

fn album_map() -> ResourceMap {
    ResourceMap::new().route(
        Route::new("/albums/{id}")
            .declare(ResourceDecl::new("album", ["view"]).with_owner("alice"))
            .scopes(Method::GET, ["view"]),
    )
}

async fn setup(mode: RptValidation) -> (TestAs, UmaLayer, String) {
    setup_with(mode, JwtValidation::new()).await
}

async fn setup_with(mode: RptValidation, jwt: JwtValidation) -> (TestAs, UmaLayer, String) {
    setup_on(mode, jwt, None).await
}

/// The layer runs on `clock` when one is given, on the system clock otherwise.
async fn setup_on(
    mode: RptValidation,
    jwt: JwtValidation,
    clock: Option<Arc<FixedClock>>,
) -> (TestAs, UmaLayer, String) {
    let as_ = as_builder()
        .rpt_format(RptFormat::Jwt)
        .spawn()
        .await
        .expect("AS");
    let mut builder = discover(&as_)
        .await
        .resources(album_map())
        .rpt_validation(mode)
        .jwt_validation(jwt);
    if let Some(clock) = clock {
        builder = builder.clock(clock);
    }
    let layer = builder.build().await.expect("builds");
    let (url, _) = protected(layer.clone()).await;
    (as_, layer, url)
}

fn jwt_rpt(as_: &TestAs, layer: &UmaLayer) -> String {
    as_.mint_rpt(RptSpec {
        sub: Some("bob".into()),
        client_id: Some(APP_ID.into()),
        exp: Some(now() + 60),
        iat: Some(now()),
        permissions: vec![RptPermission {
            resource_id: layer.resource_id("album").expect("registered"),
            resource_scopes: vec!["view".into()],
            ..RptPermission::default()
        }],
        ..RptSpec::default()
    })
}

async fn get(url: &str, token: &str) -> StatusCode {
    http()
        .get(format!("{url}/albums/1"))
        .bearer_auth(token)
        .send()
        .await
        .expect("answer")
        .status()
}

#[tokio::test]
async fn jwt_rpts_are_verified_locally_without_introspection() {
    let (as_, layer, url) = setup(RptValidation::Local).await;
    let rpt = jwt_rpt(&as_, &layer);
    assert_eq!(rpt.split('.').count(), 3, "the AS issues JWT RPTs");
    assert_eq!(get(&url, &rpt).await, StatusCode::OK);
    assert_eq!(get(&url, &rpt).await, StatusCode::OK);
    assert_eq!(as_.count(Endpoint::Introspection), 0);
    assert_eq!(as_.count(Endpoint::Jwks), 1, "keys fetched once and cached");
    // Local only: a token that is not a JWT is never valid, and nothing asks the AS.
    assert_eq!(get(&url, "opaque-token").await, StatusCode::UNAUTHORIZED);
    assert_eq!(as_.count(Endpoint::Introspection), 0);
    // A JWT whose signature does not match is refused.
    let (head, sig) = rpt.rsplit_once('.').expect("three parts");
    let mut sig: Vec<char> = sig.chars().collect();
    let mid = sig.len() / 2;
    sig[mid] = if sig[mid] == 'A' { 'B' } else { 'A' };
    let forged = format!("{head}.{}", sig.into_iter().collect::<String>());
    assert_eq!(get(&url, &forged).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn opaque_tokens_fall_back_to_introspection() {
    let (as_, layer, url) = setup(RptValidation::LocalThenIntrospect).await;
    let rpt = jwt_rpt(&as_, &layer);
    assert_eq!(get(&url, &rpt).await, StatusCode::OK);
    assert_eq!(as_.count(Endpoint::Introspection), 0);
    assert_eq!(get(&url, "opaque-token").await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        as_.count(Endpoint::Introspection),
        1,
        "the opaque token was introspected"
    );
}

/// Layers sharing a cache must check RPTs alike: a JWT one layer accepted locally (or for its
/// audience) must not be a cache hit for a layer that would introspect it or check another
/// audience. Such a configuration is refused when the second layer is built.
#[tokio::test]
async fn a_shared_cache_refuses_layers_that_check_rpts_differently() {
    let as_ = as_builder()
        .rpt_format(RptFormat::Jwt)
        .spawn()
        .await
        .expect("AS");
    let cache = tower_uma::IntrospectionCache::builder().build();
    let build = |mode: RptValidation, jwt: JwtValidation| {
        let (as_, cache) = (&as_, cache.clone());
        async move {
            discover(as_)
                .await
                .resources(album_map())
                .cache(cache)
                .rpt_validation(mode)
                .jwt_validation(jwt)
                .build()
                .await
        }
    };
    let _first = build(RptValidation::Local, JwtValidation::new())
        .await
        .expect("the first layer builds");
    // The same settings share the cache.
    let two = JwtValidation::new().audience("b").audience(APP_ID);
    let _second = build(RptValidation::Local, JwtValidation::new())
        .await
        .expect("a layer checking alike shares the cache");
    for (mode, jwt) in [
        (RptValidation::Introspect, JwtValidation::new()),
        (RptValidation::LocalThenIntrospect, JwtValidation::new()),
        (RptValidation::Local, two.clone()),
    ] {
        let err = build(mode, jwt).await.expect_err("refused");
        assert_eq!(err.kind(), tower_uma::ErrorKind::Config, "{err}");
        assert!(err.to_string().contains("cache of its own"), "{err}");
    }
    // Audiences are a set: the same ones in another order share a cache.
    let other = tower_uma::IntrospectionCache::builder().build();
    let _own = discover(&as_)
        .await
        .resources(album_map())
        .cache(other.clone())
        .rpt_validation(RptValidation::Local)
        .jwt_validation(JwtValidation::new().audience(APP_ID).audience("b"))
        .build()
        .await
        .expect("its own cache");
    let _reordered = discover(&as_)
        .await
        .resources(album_map())
        .cache(other)
        .rpt_validation(RptValidation::Local)
        .jwt_validation(two)
        .build()
        .await
        .expect("the same audiences, in another order");
}

#[tokio::test]
async fn revoked_jwt_is_still_refused_when_introspecting() {
    // The default mode introspects JWTs too, so revocation is seen at once.
    let (as_, layer, url) = setup(RptValidation::Introspect).await;
    let rpt = jwt_rpt(&as_, &layer);
    as_.revoke(&rpt);
    assert_eq!(get(&url, &rpt).await, StatusCode::UNAUTHORIZED);
    assert_eq!(as_.count(Endpoint::Jwks), 0);
}

#[tokio::test]
async fn key_rotation_needs_exactly_one_refetch() {
    let jwt = JwtValidation::new().refetch_interval(Duration::from_secs(10));
    let clock = Arc::new(FixedClock::new(now()));
    let (as_, layer, url) = setup_on(RptValidation::Local, jwt, Some(clock.clone())).await;
    let before = jwt_rpt(&as_, &layer);
    assert_eq!(get(&url, &before).await, StatusCode::OK);
    assert_eq!(as_.count(Endpoint::Jwks), 1);
    as_.rotate_signing_key();
    let after = jwt_rpt(&as_, &layer);
    assert_ne!(
        after.split('.').next(),
        before.split('.').next(),
        "a new kid in the header"
    );
    // Within the refetch interval an unknown kid is refused without asking the AS again…
    assert_eq!(get(&url, &after).await, StatusCode::UNAUTHORIZED);
    assert_eq!(as_.count(Endpoint::Jwks), 1, "rate-limited");
    // …and once it has passed on the layer's clock, one refetch makes the new key known.
    clock.advance(9);
    let early = jwt_rpt(&as_, &layer);
    assert_eq!(get(&url, &early).await, StatusCode::UNAUTHORIZED);
    assert_eq!(as_.count(Endpoint::Jwks), 1, "still within the interval");
    clock.advance(1);
    layer.forget_token(&after);
    let fresh = jwt_rpt(&as_, &layer);
    assert_eq!(
        get(&url, &fresh).await,
        StatusCode::OK,
        "verifies after a refetch"
    );
    assert_eq!(as_.count(Endpoint::Jwks), 2, "exactly one refetch");
    assert_eq!(
        get(&url, &after).await,
        StatusCode::OK,
        "forgotten, re-verified with the new key"
    );
    assert_eq!(
        get(&url, &before).await,
        StatusCode::OK,
        "old keys stay published"
    );
    assert_eq!(as_.count(Endpoint::Jwks), 2, "the new key is cached");
    assert_eq!(as_.count(Endpoint::Introspection), 0);
}

/// Local validation against each dialect's JWT RPTs: top-level `permissions` (standard,
/// WSO2, whose tokens name the token endpoint as `iss`) and Keycloak's
/// `authorization.permissions` with `rsid`/`scopes`.
async fn local_validation_per_dialect(f: Flavor) {
    let as_ = as_builder()
        .dialect(f.as_dialect())
        .rpt_format(RptFormat::Jwt)
        .spawn()
        .await
        .expect("AS");
    let layer = layer_builder(&as_, f)
        .await
        .resources(album_map())
        .rpt_validation(RptValidation::Local)
        .jwt_validation(JwtValidation::new().issuer(as_.jwt_issuer()))
        .build()
        .await
        .expect("builds");
    let (url, _) = protected(layer.clone()).await;
    let rpt = jwt_rpt(&as_, &layer);
    if f == Flavor::Keycloak {
        let claims = rpt.split('.').nth(1).expect("claims");
        let claims = base64_url(claims);
        assert!(
            claims.contains("\"authorization\""),
            "Keycloak nests permissions: {claims}"
        );
    }
    assert_eq!(get(&url, &rpt).await, StatusCode::OK);
    assert_eq!(as_.count(Endpoint::Introspection), 0);
    assert_eq!(get(&url, "not-a-jwt").await, StatusCode::UNAUTHORIZED);
}

fn base64_url(s: &str) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in s.bytes() {
        let Some(v) = A.iter().position(|a| *a == c) else {
            continue;
        };
        bits = (bits << 6) | v as u32;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
            bits &= (1 << n) - 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

per_dialect!(local_validation_per_dialect);
