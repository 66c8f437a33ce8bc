//! Discovery, the token endpoint, resource registration and input hygiene, over real HTTP.

#![allow(clippy::unwrap_used, reason = "tests")]

use serde_json::{Value, json};
use uma_test_as::{Endpoint, ResourceDescription, UMA_TICKET_GRANT};

use crate::common::*;

#[tokio::test]
async fn discovery_document_lists_every_endpoint() {
    let auth = spawn().await;
    let issuer = auth.issuer();
    assert!(issuer.starts_with("http://127.0.0.1:") && !issuer.ends_with('/'));
    assert_eq!(issuer, format!("http://{}", auth.addr()));
    // Grant §2: the document lives at issuer + "/.well-known/uma2-configuration".
    let url = format!("{issuer}/.well-known/uma2-configuration");
    assert_eq!(url, auth.endpoint_url(Endpoint::Discovery));
    let doc = json(http().get(&url).send().await.unwrap()).await;
    assert_eq!(doc["issuer"], issuer.as_str());
    for (key, endpoint) in [
        ("token_endpoint", Endpoint::Token),
        ("introspection_endpoint", Endpoint::Introspection),
        (
            "resource_registration_endpoint",
            Endpoint::ResourceRegistration,
        ),
        ("permission_endpoint", Endpoint::Permission),
        ("jwks_uri", Endpoint::Jwks),
        ("revocation_endpoint", Endpoint::Revocation),
    ] {
        assert_eq!(doc[key], auth.endpoint_url(endpoint).as_str(), "{key}");
        assert!(doc[key].as_str().unwrap().starts_with(&issuer));
    }
    assert_eq!(
        auth.endpoint_url(Endpoint::Permission),
        format!("{issuer}/permission")
    );
    assert_eq!(
        auth.endpoint_url(Endpoint::Admin),
        format!("{issuer}/admin/requests")
    );
    let grants = doc["grant_types_supported"].as_array().unwrap();
    for grant in ["client_credentials", "password", UMA_TICKET_GRANT] {
        assert!(grants.contains(&json!(grant)), "{grant}");
    }
    assert_eq!(
        doc["token_endpoint_auth_methods_supported"],
        json!(["client_secret_basic", "client_secret_post"])
    );
    assert_eq!(doc["uma_profiles_supported"], json!([]));
    assert_eq!(auth.count(Endpoint::Discovery), 1);
}

#[tokio::test]
async fn jwks_publishes_an_es256_key() {
    let auth = spawn().await;
    let jwks = json(
        http()
            .get(auth.endpoint_url(Endpoint::Jwks))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let key = &jwks["keys"][0];
    assert_eq!(key["kty"], "EC");
    assert_eq!(key["crv"], "P-256");
    assert_eq!(key["alg"], "ES256");
    assert!(key["kid"].is_string() && key["x"].is_string() && key["y"].is_string());
}

#[tokio::test]
async fn client_credentials_pat_with_basic_and_body_authentication() {
    let auth = spawn().await;
    let url = auth.endpoint_url(Endpoint::Token);
    let basic = http()
        .post(&url)
        .basic_auth(RS.0, Some(RS.1))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "uma_protection"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status().as_u16(), 200);
    assert_eq!(basic.headers()["cache-control"], "no-store");
    let body = json(basic).await;
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 300);
    assert_eq!(body["scope"], "uma_protection");
    let token = body["access_token"].as_str().unwrap();
    assert!(token.len() >= 43);

    // client_secret_post; scope defaults to uma_protection.
    let post = json(
        http()
            .post(&url)
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", RS.0),
                ("client_secret", RS.1),
            ])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(post["scope"], "uma_protection");
    assert_eq!(auth.pats_issued(), 2);

    // Introspecting a PAT: active, with scope, and no permissions (it is not an RPT).
    let answer = introspect(&auth, post["access_token"].as_str().unwrap(), token).await;
    assert_eq!(answer["active"], true);
    assert_eq!(answer["scope"], "uma_protection");
    assert_eq!(answer["client_id"], RS.0);
    assert_eq!(answer["sub"], RS.0);
    assert!(answer.get("permissions").is_none());
}

#[tokio::test]
async fn token_endpoint_errors() {
    let auth = spawn().await;
    let url = auth.endpoint_url(Endpoint::Token);
    let cc = [("grant_type", "client_credentials")];

    let response = http().post(&url).form(&cc).send().await.unwrap();
    assert!(
        response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    assert_error(response, 401, "invalid_client").await;
    assert_error(
        http()
            .post(&url)
            .basic_auth(RS.0, Some("nope"))
            .form(&cc)
            .send()
            .await
            .unwrap(),
        401,
        "invalid_client",
    )
    .await;
    assert_error(
        http()
            .post(&url)
            .basic_auth("ghost", Some(RS.1))
            .form(&cc)
            .send()
            .await
            .unwrap(),
        401,
        "invalid_client",
    )
    .await;
    assert_error(
        http()
            .post(&url)
            .form(&[("grant_type", "client_credentials"), ("client_id", RS.0)])
            .send()
            .await
            .unwrap(),
        401,
        "invalid_client",
    )
    .await;
    // Two authentication methods at once.
    assert_error(
        http()
            .post(&url)
            .basic_auth(RS.0, Some(RS.1))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", RS.0),
                ("client_secret", RS.1),
            ])
            .send()
            .await
            .unwrap(),
        400,
        "invalid_request",
    )
    .await;
    let authed = |form: &'static [(&'static str, &'static str)]| {
        http()
            .post(&url)
            .basic_auth(RS.0, Some(RS.1))
            .form(form)
            .send()
    };
    assert_error(
        authed(&[("scope", "uma_protection")]).await.unwrap(),
        400,
        "invalid_request",
    )
    .await;
    assert_error(
        authed(&[("grant_type", "authorization_code")])
            .await
            .unwrap(),
        400,
        "unsupported_grant_type",
    )
    .await;
    assert_error(
        authed(&[("grant_type", "client_credentials"), ("scope", "admin")])
            .await
            .unwrap(),
        400,
        "invalid_scope",
    )
    .await;
    assert_error(
        authed(&[
            ("grant_type", "password"),
            ("username", "bob"),
            ("password", "wrong"),
        ])
        .await
        .unwrap(),
        400,
        "invalid_grant",
    )
    .await;
    assert_error(
        authed(&[("grant_type", "password"), ("username", "bob")])
            .await
            .unwrap(),
        400,
        "invalid_request",
    )
    .await;
    assert_error(
        authed(&[
            ("grant_type", "password"),
            ("username", "bob"),
            ("password", "bob-pw"),
            ("scope", "email"),
        ])
        .await
        .unwrap(),
        400,
        "invalid_scope",
    )
    .await;
    // Repeated parameter (RFC 6749 §3.1).
    assert_error(
        authed(&[
            ("grant_type", "client_credentials"),
            ("grant_type", "password"),
        ])
        .await
        .unwrap(),
        400,
        "invalid_request",
    )
    .await;
    assert_eq!(auth.pats_issued(), 0);
}

#[tokio::test]
async fn password_grant_gives_id_token_and_user_owned_pats() {
    let auth = spawn().await;
    let url = auth.endpoint_url(Endpoint::Token);
    let body = json(
        http()
            .post(&url)
            .basic_auth(APP.0, Some(APP.1))
            .form(&[
                ("grant_type", "password"),
                ("username", "bob"),
                ("password", "bob-pw"),
                ("scope", "openid"),
            ])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(body["scope"], "openid");
    let id_token = body["id_token"].as_str().unwrap();

    // The ID token verifies against jwks_uri.
    let jwks: jsonwebtoken::jwk::JwkSet = http()
        .get(auth.endpoint_url(Endpoint::Jwks))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let header = jsonwebtoken::decode_header(id_token).unwrap();
    let jwk = jwks.find(header.kid.as_deref().unwrap()).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_audience(&[APP.0]);
    validation.set_issuer(&[auth.issuer()]);
    let claims = jsonwebtoken::decode::<Value>(
        id_token,
        &jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap(),
        &validation,
    )
    .unwrap()
    .claims;
    assert_eq!(claims["sub"], "bob");

    // WSO2 style: a password-grant PAT belongs to the user, who then owns what it registers.
    let body = json(
        http()
            .post(&url)
            .basic_auth(RS.0, Some(RS.1))
            .form(&[
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", "alice-pw"),
                ("scope", "uma_protection"),
            ])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(body.get("id_token").is_none());
    assert_eq!(auth.pats_issued(), 1);
    let alice_pat = body["access_token"].as_str().unwrap();
    let id = register(
        &auth,
        alice_pat,
        json!({"name": "album", "resource_scopes": ["view"]}),
    )
    .await;
    assert_eq!(auth.resource(&id).unwrap().owner.as_deref(), Some("alice"));
    assert_eq!(
        introspect(&auth, alice_pat, alice_pat).await["sub"],
        "alice"
    );
}

#[tokio::test]
async fn resource_registration_crud() {
    let auth = spawn().await;
    let pat = pat(&auth, RS).await;
    let base = auth.endpoint_url(Endpoint::ResourceRegistration);
    let full = json!({
        "name": "Invoice 42",
        "type": "urn:demo:invoice",
        "icon_uri": "https://rs.test/i.png",
        "description": "One invoice",
        "resource_scopes": ["read", {"name": "write"}],
        "uris": ["/invoices/42"]
    });
    let created = http()
        .post(&base)
        .bearer_auth(&pat)
        .json(&full)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 201);
    let location = created.headers()["location"].to_str().unwrap().to_owned();
    let id = json(created).await["_id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("{base}/{id}"));

    let read = json(
        http()
            .get(&location)
            .bearer_auth(&pat)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        read,
        json!({"_id": id, "name": "Invoice 42", "type": "urn:demo:invoice",
               "icon_uri": "https://rs.test/i.png", "description": "One invoice",
               "resource_scopes": ["read", "write"], "owner": RS.0})
    );
    assert_eq!(
        auth.resource(&id).unwrap(),
        ResourceDescription {
            name: Some("Invoice 42".into()),
            r#type: Some("urn:demo:invoice".into()),
            icon_uri: Some("https://rs.test/i.png".into()),
            description: Some("One invoice".into()),
            resource_scopes: vec!["read".into(), "write".into()],
            owner: Some(RS.0.into()),
        }
    );

    let other = register(
        &auth,
        &pat,
        json!({"name": "Other", "owner": "alice", "resource_scopes": []}),
    )
    .await;
    assert_eq!(
        auth.resource(&other).unwrap().owner.as_deref(),
        Some("alice")
    );
    let list = json(http().get(&base).bearer_auth(&pat).send().await.unwrap()).await;
    assert_eq!(list, json!([id, other]));
    let slash = json(
        http()
            .get(format!("{base}/"))
            .bearer_auth(&pat)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(slash, list);
    let by_name = json(
        http()
            .get(format!("{base}?name=Invoice%2042"))
            .bearer_auth(&pat)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(by_name, json!([id]));
    let none = json(
        http()
            .get(format!("{base}?name=Invoice"))
            .bearer_auth(&pat)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(none, json!([]));
    assert_eq!(auth.resource_id("Invoice 42"), Some(id.clone()));
    assert_eq!(auth.resource_id("nothing"), None);

    let updated = http()
        .put(&location)
        .bearer_auth(&pat)
        .json(&json!({"name": "Invoice 42", "resource_scopes": ["read"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(updated.status().as_u16(), 200);
    assert_eq!(json(updated).await, json!({"_id": id}));
    let read = json(
        http()
            .get(format!("{location}/"))
            .bearer_auth(&pat)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(read["resource_scopes"], json!(["read"]));
    assert!(read.get("type").is_none(), "PUT replaces the description");
    assert_eq!(read["owner"], RS.0, "the owner is kept");

    let deleted = http()
        .delete(&location)
        .bearer_auth(&pat)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status().as_u16(), 204);
    for response in [
        http()
            .get(&location)
            .bearer_auth(&pat)
            .send()
            .await
            .unwrap(),
        http()
            .delete(&location)
            .bearer_auth(&pat)
            .send()
            .await
            .unwrap(),
        http()
            .put(&location)
            .bearer_auth(&pat)
            .json(&json!({"resource_scopes": []}))
            .send()
            .await
            .unwrap(),
    ] {
        assert_error(response, 404, "not_found").await;
    }
    assert_eq!(
        json(http().get(&base).bearer_auth(&pat).send().await.unwrap()).await,
        json!([other])
    );
}

#[tokio::test]
async fn resource_registration_rejections() {
    let auth = spawn().await;
    let pat = pat(&auth, RS).await;
    let base = auth.endpoint_url(Endpoint::ResourceRegistration);
    let good = json!({"name": "x", "resource_scopes": ["a"]});

    assert_error(
        http().post(&base).json(&good).send().await.unwrap(),
        401,
        "invalid_token",
    )
    .await;
    assert_error(
        http().get(&base).bearer_auth("bogus").send().await.unwrap(),
        401,
        "invalid_token",
    )
    .await;
    assert_error(
        http().get(format!("{base}/anything")).send().await.unwrap(),
        401,
        "invalid_token",
    )
    .await;
    for bad in [
        json!({"name": "x"}),
        json!({"resource_scopes": "a"}),
        json!([good.clone()]),
        json!({"resource_scopes": [1]}),
        json!({"name": 5, "resource_scopes": []}),
    ] {
        let response = http()
            .post(&base)
            .bearer_auth(&pat)
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_error(response, 400, "invalid_request").await;
    }
    let not_json = http()
        .post(&base)
        .bearer_auth(&pat)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_error(not_json, 400, "invalid_request").await;
    let wrong_type = http()
        .post(&base)
        .bearer_auth(&pat)
        .header("content-type", "text/plain")
        .body(good.to_string())
        .send()
        .await
        .unwrap();
    assert_error(wrong_type, 400, "invalid_request").await;
    let patch = http()
        .patch(&base)
        .bearer_auth(&pat)
        .json(&good)
        .send()
        .await
        .unwrap();
    assert_error(patch, 405, "unsupported_method_type").await;
    assert_eq!(
        json(http().get(&base).bearer_auth(&pat).send().await.unwrap()).await,
        json!([])
    );
}

#[tokio::test]
async fn bad_input_is_a_400_never_a_500() {
    let auth = spawn().await;
    let pat = pat(&auth, RS).await;
    let big = "a".repeat(70 * 1024);
    for endpoint in [
        Endpoint::Token,
        Endpoint::Introspection,
        Endpoint::Revocation,
    ] {
        let url = auth.endpoint_url(endpoint);
        // Wrong content type, malformed form, oversized body.
        let json_body = http()
            .post(&url)
            .basic_auth(RS.0, Some(RS.1))
            .json(&json!({"token": "x"}))
            .send()
            .await
            .unwrap();
        assert_error(json_body, 400, "invalid_request").await;
        let malformed = http()
            .post(&url)
            .basic_auth(RS.0, Some(RS.1))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(vec![0xff, b'=', 0xfe])
            .send()
            .await
            .unwrap();
        assert_error(malformed, 400, "invalid_request").await;
        let oversized = http()
            .post(&url)
            .basic_auth(RS.0, Some(RS.1))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={big}"))
            .send()
            .await
            .unwrap();
        assert_error(oversized, 400, "invalid_request").await;
    }
    // Missing token at introspection and revocation.
    for endpoint in [Endpoint::Introspection, Endpoint::Revocation] {
        let response = http()
            .post(auth.endpoint_url(endpoint))
            .basic_auth(RS.0, Some(RS.1))
            .form(&[("token_type_hint", "access_token")])
            .send()
            .await
            .unwrap();
        assert_error(response, 400, "invalid_request").await;
    }
    let oversized = http()
        .post(auth.endpoint_url(Endpoint::Permission))
        .bearer_auth(&pat)
        .header("content-type", "application/json")
        .body(format!(
            "{{\"resource_id\":\"{big}\",\"resource_scopes\":[]}}"
        ))
        .send()
        .await
        .unwrap();
    assert_error(oversized, 400, "invalid_request").await;
    // Recorded, with the body left out.
    let recorded = auth.requests(Endpoint::Permission);
    assert_eq!(recorded.len(), 1);
    assert!(recorded[0].body.is_empty());

    let get_token = http()
        .get(auth.endpoint_url(Endpoint::Token))
        .send()
        .await
        .unwrap();
    assert_error(get_token, 405, "unsupported_method_type").await;
    let nowhere = http()
        .get(format!("{}/nowhere", auth.issuer()))
        .send()
        .await
        .unwrap();
    assert_error(nowhere, 404, "not_found").await;
    // Revocation of an unknown token is still 200; it needs client authentication.
    let revoke = http()
        .post(auth.endpoint_url(Endpoint::Revocation))
        .form(&[
            ("token", "unknown"),
            ("client_id", APP.0),
            ("client_secret", APP.1),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(revoke.status().as_u16(), 200);
    assert_error(
        http()
            .post(auth.endpoint_url(Endpoint::Revocation))
            .form(&[("token", "x")])
            .send()
            .await
            .unwrap(),
        401,
        "invalid_client",
    )
    .await;
}

#[tokio::test]
async fn introspection_ignores_unknown_hints() {
    let auth = spawn().await;
    let pat = pat(&auth, RS).await;
    let rpt = auth.mint_rpt(uma_test_as::RptSpec::active_for("r", ["view"], 60));
    for hint in ["access_token", "requesting_party_token", "whatever"] {
        let answer = json(
            http()
                .post(auth.endpoint_url(Endpoint::Introspection))
                .bearer_auth(&pat)
                .form(&[("token", rpt.as_str()), ("token_type_hint", hint)])
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(answer["active"], true, "{hint}");
    }
}
