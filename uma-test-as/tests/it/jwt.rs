//! JWT RPTs: verifiable against `jwks_uri` with jsonwebtoken, and introspected like opaque ones.

#![allow(clippy::unwrap_used, reason = "tests")]

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde_json::{Value, json};
use uma_test_as::{Endpoint, Policy, RptFormat, RptPermission, RptSpec, TestAs};

use crate::common::*;

async fn verify(auth: &TestAs, token: &str, audience: Option<&str>) -> Value {
    let jwks: JwkSet = http()
        .get(auth.endpoint_url(Endpoint::Jwks))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let header = decode_header(token).unwrap();
    assert_eq!(header.alg, Algorithm::ES256);
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    let jwk = jwks.find(header.kid.as_deref().unwrap()).unwrap();
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_issuer(&[auth.issuer()]);
    match audience {
        Some(aud) => validation.set_audience(&[aud]),
        None => validation.validate_aud = false,
    }
    validation.required_spec_claims.clear();
    decode::<Value>(token, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
        .unwrap()
        .claims
}

#[tokio::test]
async fn granted_jwt_rpt_verifies_against_jwks_uri() {
    let auth = builder()
        .policy(Policy::resource("album").scopes(["view"]).users(["bob"]))
        .rpt_format(RptFormat::Jwt)
        .spawn()
        .await
        .unwrap();
    let (pat, id) = album(&auth).await;
    let ticket = ticket_for(&auth, &pat, &id, &["view"]).await;
    let bob = id_token(&auth, BOB).await;
    let rpt = rpt(grant(&auth, &ticket, Some(&bob), &[]).await).await;
    assert_eq!(rpt.split('.').count(), 3);

    // aud is the resource server that registered the resource.
    let claims = verify(&auth, &rpt, Some(RS.0)).await;
    assert_eq!(claims["iss"], auth.issuer().as_str());
    assert_eq!(claims["sub"], "bob");
    assert_eq!(claims["aud"], RS.0);
    assert!(claims["jti"].is_string());
    assert!(claims["exp"].as_i64().unwrap() > claims["iat"].as_i64().unwrap());
    assert_eq!(claims["permissions"][0]["resource_id"], id.as_str());
    assert_eq!(claims["permissions"][0]["resource_scopes"], json!(["view"]));

    // Introspection answers the JWT like an opaque RPT, and revocation works on it.
    let answer = introspect(&auth, &pat, &rpt).await;
    assert_eq!(answer["active"], true);
    assert_eq!(answer["exp"], claims["exp"]);
    auth.revoke(&rpt);
    assert_eq!(
        introspect(&auth, &pat, &rpt).await,
        json!({"active": false})
    );
}

#[tokio::test]
async fn minted_jwt_rpt_reflects_the_spec() {
    let auth = builder().rpt_format(RptFormat::Jwt).spawn().await.unwrap();
    let pat = pat(&auth, RS).await;
    let mut spec = RptSpec {
        sub: Some("carol".into()),
        client_id: Some("some-client".into()),
        nbf: Some(100),
        permissions: vec![RptPermission {
            exp: Some(5),
            ..RptPermission::new("r1", ["read"])
        }],
        ..RptSpec::default()
    };
    spec.extra.insert("scope".into(), json!("read"));
    let token = auth.mint_rpt(spec);
    let claims = verify(&auth, &token, Some("some-client")).await;
    assert_eq!(claims["sub"], "carol");
    assert!(claims.get("exp").is_none(), "exp: None is left out");
    assert_eq!(claims["scope"], "read");
    assert_eq!(
        claims["permissions"],
        json!([{"resource_id": "r1", "resource_scopes": ["read"], "exp": 5}])
    );
    assert_eq!(
        introspect(&auth, &pat, &token).await,
        json!({"active": true, "sub": "carol", "client_id": "some-client", "nbf": 100, "scope": "read",
               "permissions": [{"resource_id": "r1", "resource_scopes": ["read"], "exp": 5}]})
    );
}
