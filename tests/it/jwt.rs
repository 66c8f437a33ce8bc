//! Local validation of JWT RPTs through the layer (feature `jwt`), against `uma-test-as`
//! issuing JWT RPTs: no introspection for JWTs, the fallback for opaque tokens, and key
//! rotation with one JWKS refetch. The checks on forged tokens (`alg: none`, HS256 signed with
//! the public key, unknown keys) are unit tests of the verifier (`src/jwt/tests.rs`).

use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use http::{Method, StatusCode};

use tower_uma::{
    ResourceDecl, ResourceMap, Route, UmaLayer,
    clock::FixedClock,
    jwt::{JwtValidation, RptValidation},
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

/// Layers sharing a cache keep their entries apart unless they check RPTs alike: a JWT one
/// layer accepted locally is no cache hit for a layer that introspects it or checks another
/// audience, while a layer that checks alike shares the entry.
#[tokio::test]
async fn a_shared_cache_keeps_layers_that_check_rpts_differently_apart() {
    let as_ = as_builder()
        .rpt_format(RptFormat::Jwt)
        .spawn()
        .await
        .expect("AS");
    let cache = tower_uma::IntrospectionCache::builder().build();
    let build = |mode: RptValidation, jwt: JwtValidation| {
        let (as_, cache) = (&as_, cache.clone());
        async move {
            let layer = discover(as_)
                .await
                .resources(album_map())
                .cache(cache)
                .rpt_validation(mode)
                .jwt_validation(jwt)
                .build()
                .await
                .expect("a layer builds on a shared cache whatever its RPT checks");
            let (url, _) = protected(layer.clone()).await;
            (layer, url)
        }
    };
    let (local, local_url) = build(
        RptValidation::Local,
        JwtValidation::new().audience(RS_ID).audience("b"),
    )
    .await;
    // Audiences are a set: the same ones in another order check alike.
    let (_, twin_url) = build(
        RptValidation::Local,
        JwtValidation::new().audience("b").audience(RS_ID),
    )
    .await;
    let (_, other_audience_url) = build(
        RptValidation::Local,
        JwtValidation::new().audience("another-api"),
    )
    .await;
    let (_, introspecting_url) = build(RptValidation::Introspect, JwtValidation::new()).await;

    let rpt = jwt_rpt(&as_, &local);
    assert_eq!(get(&local_url, &rpt).await, StatusCode::OK);
    assert_eq!(as_.count(Endpoint::Jwks), 1);
    // The twin never needed the keys: it was served the entry the first layer stored.
    assert_eq!(get(&twin_url, &rpt).await, StatusCode::OK);
    assert_eq!(as_.count(Endpoint::Jwks), 1, "the twin shared the entry");
    // A layer accepting another audience checks the token itself, and refuses it.
    assert_eq!(
        get(&other_audience_url, &rpt).await,
        StatusCode::UNAUTHORIZED,
        "no cache hit across audiences"
    );
    // A layer that introspects asks the AS.
    assert_eq!(as_.count(Endpoint::Introspection), 0);
    assert_eq!(get(&introspecting_url, &rpt).await, StatusCode::OK);
    assert_eq!(
        as_.count(Endpoint::Introspection),
        1,
        "no cache hit across RPT checks"
    );
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

/// A key the AS has retired (removed from its JWKS, as after a compromise or the end of a
/// rotation) stops verifying RPTs once the cached key set is old: the uma-test-as docs say as
/// much of "a resource server that refetches the JWKS". The layer refetches only on an
/// unknown `kid`, so after the usual rotation (the new key's tokens made it refetch once,
/// with both keys published) nothing ever refetches again, and the retired key is trusted
/// for the life of the process: whoever holds it keeps minting RPTs this layer accepts.
#[tokio::test]
async fn a_retired_signing_key_does_not_verify_rpts_forever() {
    const DAY: i64 = 24 * 3600;
    let jwt = JwtValidation::new().refetch_interval(Duration::from_secs(10));
    let clock = Arc::new(FixedClock::new(now()));
    let (as_, layer, url) = setup_on(RptValidation::Local, jwt, Some(clock.clone())).await;
    let resource_id = layer.resource_id("album").expect("registered");
    let mint = || {
        as_.mint_rpt(RptSpec {
            sub: Some("bob".into()),
            client_id: Some(APP_ID.into()),
            exp: Some(now() + 7 * DAY),
            iat: Some(now()),
            permissions: vec![RptPermission {
                resource_id: resource_id.clone(),
                resource_scopes: vec!["view".into()],
                ..RptPermission::default()
            }],
            ..RptSpec::default()
        })
    };
    // Two RPTs signed by the first key; the second is never presented until the end, so no
    // cache entry answers for it.
    let old_key = mint();
    let old_key_unseen = mint();
    assert_eq!(get(&url, &old_key).await, StatusCode::OK);
    // Rotation: a new key is published beside the old one; its first token makes the layer
    // refetch once (the refetch interval has passed on the layer's clock).
    let old_kid = as_.signing_kid();
    as_.rotate_signing_key();
    clock.advance(10);
    assert_eq!(get(&url, &mint()).await, StatusCode::OK);
    assert_eq!(as_.count(Endpoint::Jwks), 2, "one refetch for the new kid");
    // The AS retires the old key: its JWKS no longer holds it.
    as_.retire_old_keys();
    let layer_fetches = as_.count(Endpoint::Jwks);
    let jwks = http()
        .get(as_.endpoint_url(Endpoint::Jwks))
        .send()
        .await
        .expect("the JWKS answers")
        .text()
        .await
        .expect("a body");
    assert!(!jwks.contains(&old_kid), "retired: {jwks}");
    // Two days later a token signed by the retired key still passes.
    clock.advance(2 * DAY);
    assert_eq!(
        get(&url, &old_key_unseen).await,
        StatusCode::UNAUTHORIZED,
        "an RPT signed by a key the AS retired two days ago is still accepted: the key set is \
         never refetched while every kid is known (JWKS fetches by the layer: {layer_fetches})"
    );
}

/// A `jwks_uri` with user info is refused, and the error never shows the password
/// (`check_url`'s rule for every configured URL). One that does not even parse (a password
/// holding `#`, a bad port) is refused by `JwtValidation`'s own check first, whose message
/// quotes the URL as given: password included.
#[tokio::test]
async fn a_jwks_uri_password_never_shows_in_the_build_error() {
    let as_ = as_builder()
        .rpt_format(RptFormat::Jwt)
        .spawn()
        .await
        .expect("AS");
    for bad in [
        "https://rs:s3cret-pw@as.test/certs",
        "https://rs:s3cret-pw@as.test:99999/certs",
        "https://rs:s3cret#pw@as.test/certs",
    ] {
        let through_jwt_validation = discover(&as_)
            .await
            .resources(album_map())
            .rpt_validation(RptValidation::Local)
            .jwt_validation(JwtValidation::new().jwks_uri(bad))
            .build()
            .await
            .expect_err("a jwks_uri with user info");
        let through_the_builder = discover(&as_)
            .await
            .resources(album_map())
            .rpt_validation(RptValidation::Local)
            .jwks_uri(bad)
            .build()
            .await
            .expect_err("a jwks_uri with user info");
        for err in [through_jwt_validation, through_the_builder] {
            assert!(err.is_config(), "{err}");
            assert!(
                !err.to_string().contains("s3cret"),
                "the password of {bad:?} shows in: {err}"
            );
        }
    }
}
