//! The Keycloak and WSO2 dialects over real HTTP (docs/protocol.md §2–§9), the binary's
//! `--dialect` switch, and signing-key rotation.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use uma_test_as::{
    Dialect, Endpoint, ID_TOKEN_FORMAT, Policy, RptFormat, RptSpec, TestAs, UMA_TICKET_GRANT,
};

use crate::common::*;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// The payload of a JWT, unverified.
fn claims(jwt: &str) -> Value {
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3, "not a JWT: {jwt}");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap()
}

/// Verifies a JWT against the server's JWKS (ES256, its `kid`, `iss`); returns the claims.
async fn verify(auth: &TestAs, token: &str) -> Value {
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
    let jwk = jwks
        .find(header.kid.as_deref().unwrap())
        .unwrap_or_else(|| panic!("kid {:?} is not published", header.kid));
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_issuer(&[auth.jwt_issuer()]);
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    decode::<Value>(token, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
        .unwrap()
        .claims
}

/// The published `kid`s, in order.
async fn kids(auth: &TestAs) -> Vec<String> {
    let jwks: Value = json(
        http()
            .get(auth.endpoint_url(Endpoint::Jwks))
            .send()
            .await
            .unwrap(),
    )
    .await;
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

/// A form POST to the token endpoint with client credentials in the body.
async fn token_form(auth: &TestAs, form: &[(&str, &str)]) -> Response {
    http()
        .post(auth.endpoint_url(Endpoint::Token))
        .form(form)
        .send()
        .await
        .unwrap()
}

/// A 200 token answer's JSON.
async fn ok_json(response: Response) -> Value {
    let status = response.status();
    let body = json(response).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn status_and_json(response: Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn status_and_text(response: Response) -> (u16, String) {
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// A user's access token from the password grant, as photo-app.
async fn user_token(auth: &TestAs, user: (&str, &str), scope: &str) -> Value {
    ok_json(
        http()
            .post(auth.endpoint_url(Endpoint::Token))
            .basic_auth(APP.0, Some(APP.1))
            .form(&[
                ("grant_type", "password"),
                ("username", user.0),
                ("password", user.1),
                ("scope", scope),
            ])
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn post_json(url: &str, bearer: &str, body: &Value) -> Response {
    http()
        .post(url)
        .bearer_auth(bearer)
        .json(body)
        .send()
        .await
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Keycloak
// ---------------------------------------------------------------------------------------------

fn keycloak() -> uma_test_as::AuthServerBuilder {
    builder()
        .dialect(Dialect::Keycloak)
        .policy(Policy::resource("album").scopes(["view"]).users(["bob"]))
}

/// Keycloak's PAT: a plain client-credentials grant, credentials in the body, no scope.
async fn keycloak_pat(auth: &TestAs) -> String {
    let body = ok_json(
        token_form(
            auth,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", RS.0),
                ("client_secret", RS.1),
            ],
        )
        .await,
    )
    .await;
    body["access_token"].as_str().unwrap().to_owned()
}

/// Registers alice's album (view, edit) with the RS's Keycloak PAT.
async fn keycloak_album(auth: &TestAs) -> (String, String) {
    let pat = keycloak_pat(auth).await;
    let id = register(
        auth,
        &pat,
        json!({"name": "album", "owner": "alice", "resource_scopes": ["view", "edit"]}),
    )
    .await;
    (pat, id)
}

async fn keycloak_ticket(auth: &TestAs, pat: &str, body: &Value) -> String {
    let response = post_json(&auth.endpoint_url(Endpoint::Permission), pat, body).await;
    let (status, body) = status_and_json(response).await;
    assert_eq!(status, 201, "{body}");
    body["ticket"].as_str().unwrap().to_owned()
}

/// Keycloak introspection with HTTP Basic client credentials and an optional hint.
async fn keycloak_introspect(auth: &TestAs, token: &str, hint: Option<&str>) -> Response {
    let mut form = vec![("token", token)];
    if let Some(hint) = hint {
        form.push(("token_type_hint", hint));
    }
    http()
        .post(auth.endpoint_url(Endpoint::Introspection))
        .basic_auth(RS.0, Some(RS.1))
        .form(&form)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn keycloak_discovery_documents_paths_and_counters() {
    let auth = keycloak().realm("acme").spawn().await.unwrap();
    let base = auth.base_url();
    let issuer = format!("{base}/realms/acme");
    assert_eq!(auth.issuer(), issuer);
    assert_eq!(auth.jwt_issuer(), issuer);
    assert_eq!(auth.dialect(), Dialect::Keycloak);
    let expected = [
        (Endpoint::Discovery, "/.well-known/uma2-configuration"),
        (Endpoint::Token, "/protocol/openid-connect/token"),
        (
            Endpoint::Introspection,
            "/protocol/openid-connect/token/introspect",
        ),
        (Endpoint::Permission, "/authz/protection/permission"),
        (
            Endpoint::ResourceRegistration,
            "/authz/protection/resource_set",
        ),
        (Endpoint::Revocation, "/protocol/openid-connect/revoke"),
        (Endpoint::Jwks, "/protocol/openid-connect/certs"),
        (Endpoint::Admin, "/admin/requests"),
    ];
    for (endpoint, path) in expected {
        assert_eq!(auth.endpoint_url(endpoint), format!("{issuer}{path}"));
    }

    let uma: Value = json(
        http()
            .get(format!("{issuer}/.well-known/uma2-configuration"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let oidc = format!("{issuer}/protocol/openid-connect");
    assert_eq!(uma["issuer"], issuer);
    assert_eq!(uma["token_endpoint"], format!("{oidc}/token"));
    // Keycloak 26's UMA document has no `token_introspection_endpoint` (the OpenID one has).
    assert!(uma.get("token_introspection_endpoint").is_none());
    assert_eq!(
        uma["introspection_endpoint"],
        format!("{oidc}/token/introspect")
    );
    assert_eq!(uma["jwks_uri"], format!("{oidc}/certs"));
    assert_eq!(
        uma["resource_registration_endpoint"],
        format!("{issuer}/authz/protection/resource_set")
    );
    assert_eq!(
        uma["permission_endpoint"],
        format!("{issuer}/authz/protection/permission")
    );
    assert_eq!(
        uma["policy_endpoint"],
        format!("{issuer}/authz/protection/uma-policy")
    );
    assert_eq!(uma["authorization_endpoint"], format!("{oidc}/auth"));
    assert!(
        uma["grant_types_supported"]
            .as_array()
            .unwrap()
            .contains(&json!(UMA_TICKET_GRANT))
    );
    assert!(uma.get("uma_profiles_supported").is_none());

    let openid: Value = json(
        http()
            .get(format!("{issuer}/.well-known/openid-configuration"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(openid["issuer"], issuer);
    assert_eq!(
        openid["introspection_endpoint"],
        uma["introspection_endpoint"]
    );
    assert_eq!(
        openid["token_introspection_endpoint"],
        uma["introspection_endpoint"]
    );
    assert_eq!(openid["jwks_uri"], uma["jwks_uri"]);
    assert!(openid.get("resource_registration_endpoint").is_none());
    assert_eq!(auth.count(Endpoint::Discovery), 2, "both documents count");

    // The standard paths do not exist in this dialect, and nothing counted them.
    for path in ["/.well-known/uma2-configuration", "/token", "/jwks"] {
        let response = http().get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
    }
    assert_eq!(auth.count(Endpoint::Discovery), 2);

    // Keycloak's `certs` is the JWKS endpoint for counters, recordings and knobs.
    assert_eq!(kids(&auth).await, [auth.signing_kid()]);
    assert_eq!(auth.count(Endpoint::Jwks), 1);
    assert_eq!(
        auth.requests(Endpoint::Jwks)[0].uri,
        "/realms/acme/protocol/openid-connect/certs"
    );
    auth.fail_next(Endpoint::Jwks, 1, 503);
    let response = http()
        .get(auth.endpoint_url(Endpoint::Jwks))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(auth.count(Endpoint::Jwks), 2);
}

#[tokio::test]
async fn keycloak_pats_come_from_a_plain_client_credentials_grant() {
    let auth = keycloak().spawn().await.unwrap();
    // Credentials in the body, Keycloak's empty extra parameters included.
    let body = ok_json(
        token_form(
            &auth,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", RS.0),
                ("client_secret", RS.1),
                ("audience", ""),
                ("scope", ""),
            ],
        )
        .await,
    )
    .await;
    assert_eq!(
        body["token_type"], "bearer",
        "lower case, docs/protocol.md §3.3"
    );
    assert_eq!(body["expires_in"], 300);
    assert_eq!(body["refresh_expires_in"], 0);
    assert_eq!(body["not-before-policy"], 0);
    // Keycloak's client library decodes access tokens: they are JWTs.
    let pat = body["access_token"].as_str().unwrap();
    let claims = verify(&auth, pat).await;
    assert_eq!(claims["typ"], "Bearer");
    assert_eq!(claims["azp"], RS.0);
    assert_eq!(claims["sub"], RS.0);
    assert!(claims["exp"].as_i64().unwrap() > claims["iat"].as_i64().unwrap());
    assert_eq!(auth.pats_issued(), 1);

    // Basic credentials with a matching client_id in the body are accepted too …
    let body = ok_json(
        http()
            .post(auth.endpoint_url(Endpoint::Token))
            .basic_auth(RS.0, Some(RS.1))
            .form(&[("grant_type", "client_credentials"), ("client_id", RS.0)])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(body["token_type"], "bearer");
    // … a different one is not.
    let response = http()
        .post(auth.endpoint_url(Endpoint::Token))
        .basic_auth(RS.0, Some(RS.1))
        .form(&[("grant_type", "client_credentials"), ("client_id", APP.0)])
        .send()
        .await
        .unwrap();
    assert_error(response, 400, "invalid_request").await;
    let response = token_form(
        &auth,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", RS.0),
            ("client_secret", "wrong"),
        ],
    )
    .await;
    // Keycloak's token endpoint calls it `unauthorized_client`.
    assert_error(response, 401, "unauthorized_client").await;

    // The client-credentials token is a PAT: it registers resources.
    register(
        &auth,
        pat,
        json!({"name": "album", "resource_scopes": ["view"]}),
    )
    .await;
    // A user's token without uma_protection is refused by the resource API with a 403.
    let user = user_token(&auth, ALICE, "openid").await;
    assert_eq!(user["token_type"], "bearer");
    let response = post_json(
        &auth.endpoint_url(Endpoint::ResourceRegistration),
        user["access_token"].as_str().unwrap(),
        &json!({"name": "x", "resource_scopes": ["view"]}),
    )
    .await;
    let body = assert_error(response, 403, "invalid_scope").await;
    assert_eq!(body["error_description"], "Requires uma_protection scope.");
}

#[tokio::test]
async fn keycloak_resource_api_shapes() {
    let auth = keycloak().spawn().await.unwrap();
    let pat = keycloak_pat(&auth).await;
    let url = auth.endpoint_url(Endpoint::ResourceRegistration);

    let response = post_json(
        &url,
        &pat,
        &json!({"name": "album", "type": "urn:photos:album", "owner": "alice",
                "uri": "/albums/*", "resource_scopes": ["view", "edit"]}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert!(response.headers().get("location").is_none(), "no Location");
    let created = json(response).await;
    let id = created["_id"].as_str().unwrap().to_owned();
    assert_eq!(created["name"], "album");
    assert_eq!(created["type"], "urn:photos:album");
    assert_eq!(created["owner"], json!({"id": "alice", "name": "alice"}));
    assert_eq!(created["ownerManagedAccess"], false);
    assert_eq!(created["uris"], json!(["/albums/*"]));
    // Scopes come as objects with Keycloak's scope ids, under both names.
    let names = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| {
                assert!(s.get("id").is_none() || s["id"].is_string(), "{s}");
                s["name"].as_str().unwrap().to_owned()
            })
            .collect()
    };
    assert_eq!(names(&created["resource_scopes"]), ["view", "edit"]);
    assert!(created["resource_scopes"][0]["id"].is_string());
    assert_eq!(created["scopes"], created["resource_scopes"]);

    // Read: the same representation, scopes as objects.
    let read = json(
        http()
            .get(format!("{url}/{id}"))
            .bearer_auth(&pat)
            .send()
            .await
            .unwrap(),
    )
    .await;
    // Read: the owner by id only, `attributes`, scopes as `{"name"}` objects under both names.
    assert_eq!(read["_id"], created["_id"]);
    assert_eq!(read["owner"], json!({"id": "alice"}));
    assert_eq!(read["attributes"], json!({}));
    assert_eq!(
        read["resource_scopes"],
        json!([{"name": "view"}, {"name": "edit"}])
    );
    assert_eq!(read["scopes"], read["resource_scopes"]);

    // A second resource with the same name for the same owner → 409; another owner is fine.
    let response = post_json(
        &url,
        &pat,
        &json!({"name": "album", "owner": "alice", "resource_scopes": ["view"]}),
    )
    .await;
    let body = assert_error(response, 409, "invalid_request").await;
    assert_eq!(
        body["error_description"],
        "Resource with name [album] already exists."
    );
    let response = post_json(
        &url,
        &pat,
        &json!({"name": "album", "owner": {"name": "bob"}, "resource_scopes": ["view"]}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let bobs = json(response).await["_id"].as_str().unwrap().to_owned();
    // No scopes at all is fine for Keycloak.
    let response = post_json(&url, &pat, &json!({"name": "Album of photos"})).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let third = json(response).await["_id"].as_str().unwrap().to_owned();

    // List: substring (case-insensitive) by default, exact with exactName=true, deep=true.
    let list = |query: &'static str| {
        let http = http();
        let url = format!("{url}{query}");
        let pat = pat.clone();
        async move { json(http.get(url).bearer_auth(pat).send().await.unwrap()).await }
    };
    assert_eq!(list("").await, json!([id, bobs, third]));
    assert_eq!(list("?name=album").await, json!([id, bobs, third]));
    assert_eq!(list("?name=album&exactName=true").await, json!([id, bobs]));
    assert_eq!(
        list("?name=album&exactName=true&owner=bob").await,
        json!([bobs])
    );
    assert_eq!(list("?scope=edit").await, json!([id]));
    assert_eq!(list("?first=1&max=1").await, json!([bobs]));
    assert_eq!(list("?uri=/albums/7&matchingUri=true").await, json!([id]));
    let deep = list("?name=album&exactName=true&deep=true&owner=alice").await;
    // Deep listing: like the create answer, with `attributes` and only `scopes`.
    assert_eq!(deep[0]["_id"], created["_id"]);
    assert_eq!(deep[0]["owner"], created["owner"]);
    assert_eq!(deep[0]["scopes"], created["scopes"]);
    assert!(deep[0].get("resource_scopes").is_none());
    assert_eq!(deep[0]["attributes"], json!({}));

    // PUT → 204 without a body; the owner is kept.
    let response = http()
        .put(format!("{url}/{id}"))
        .bearer_auth(&pat)
        .json(&json!({"name": "album", "resource_scopes": ["view"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        status_and_text(response).await,
        (204, String::new()),
        "PUT → 204"
    );
    let resource = auth.resource(&id).unwrap();
    assert_eq!(resource.resource_scopes, ["view"]);
    assert_eq!(resource.owner.as_deref(), Some("alice"));
    // Renaming onto an existing name of the same owner → 409.
    let response = http()
        .put(format!("{url}/{third}"))
        .bearer_auth(&pat)
        .json(&json!({"name": "album", "owner": "alice"}))
        .send()
        .await
        .unwrap();
    assert_error(response, 409, "invalid_request").await;

    // DELETE → 204; unknown ids → 404 `{"error": "HTTP 404 Not Found"}`, for every method.
    let response = http()
        .delete(format!("{url}/{id}"))
        .bearer_auth(&pat)
        .send()
        .await
        .unwrap();
    assert_eq!(status_and_text(response).await, (204, String::new()));
    for request in [
        http().get(format!("{url}/{id}")),
        http().delete(format!("{url}/{id}")),
        http()
            .put(format!("{url}/{id}"))
            .json(&json!({"name": "x"})),
    ] {
        let response = request.bearer_auth(&pat).send().await.unwrap();
        assert_eq!(
            status_and_text(response).await,
            (404, r#"{"error":"HTTP 404 Not Found"}"#.to_owned())
        );
    }
    assert_eq!(auth.count(Endpoint::ResourceRegistration), 19);
}

#[tokio::test]
async fn keycloak_permission_endpoint_takes_arrays_and_issues_jwt_tickets() {
    let auth = keycloak().spawn().await.unwrap();
    let (pat, id) = keycloak_album(&auth).await;
    let url = auth.endpoint_url(Endpoint::Permission);

    let ticket = keycloak_ticket(
        &auth,
        &pat,
        &json!([{"resource_id": id, "resource_scopes": ["view"]}]),
    )
    .await;
    let claims = verify(&auth, &ticket).await;
    assert_eq!(claims["aud"], auth.issuer());
    assert_eq!(claims["azp"], RS.0);
    assert_eq!(
        claims["permissions"],
        json!([{"rsid": id, "scopes": ["view"]}])
    );
    assert!(claims["exp"].as_i64().unwrap() > claims["iat"].as_i64().unwrap());

    // A bare object is not accepted; an empty array is Keycloak's invalid_permission_request.
    let response = post_json(
        &url,
        &pat,
        &json!({"resource_id": id, "resource_scopes": ["view"]}),
    )
    .await;
    assert_error(response, 400, "unknown_error").await;
    let response = post_json(&url, &pat, &json!([])).await;
    assert_error(response, 400, "invalid_permission_request").await;
    // Unknown ids are retried as names.
    let by_name = keycloak_ticket(
        &auth,
        &pat,
        &json!([{"resource_id": "album", "resource_scopes": ["edit"]}]),
    )
    .await;
    assert_eq!(
        claims_of(&by_name)["permissions"],
        json!([{"rsid": id, "scopes": ["edit"]}])
    );
    let response = post_json(
        &url,
        &pat,
        &json!([{"resource_id": "nope", "resource_scopes": ["view"]}]),
    )
    .await;
    assert_error(response, 400, "invalid_resource_id").await;
    let response = post_json(
        &url,
        &pat,
        &json!([{"resource_id": id, "resource_scopes": ["print"]}]),
    )
    .await;
    assert_error(response, 400, "invalid_scope").await;
    // Keycloak does not check uma_protection here: a user's token works.
    let user = user_token(&auth, BOB, "openid").await;
    keycloak_ticket(
        &auth,
        user["access_token"].as_str().unwrap(),
        &json!([{"resource_id": id, "resource_scopes": []}]),
    )
    .await;
    // Knobs act on the Keycloak path.
    auth.ticketless_next(1);
    let response = post_json(
        &url,
        &pat,
        &json!([{"resource_id": id, "resource_scopes": ["view"]}]),
    )
    .await;
    assert_eq!(status_and_json(response).await, (201, json!({})));
    assert_eq!(auth.count(Endpoint::Permission), 8);
}

fn claims_of(jwt: &str) -> Value {
    claims(jwt)
}

/// The uma-ticket grant with client credentials in the body and Keycloak's empty extras.
async fn keycloak_grant(auth: &TestAs, extra: &[(&str, &str)]) -> Response {
    let mut form = vec![
        ("grant_type", UMA_TICKET_GRANT),
        ("client_id", APP.0),
        ("client_secret", APP.1),
        ("audience", ""),
        ("response_include_resource_name", ""),
        ("submit_request", ""),
        ("rpt", ""),
    ];
    form.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
    form.extend_from_slice(extra);
    token_form(auth, &form).await
}

/// Keycloak's own enforcer asks as the client, with the user's token (an access token or an
/// RPT) as `subject_token`: that token's user is the requesting party; a token the server
/// does not know is `400 invalid_grant`; an RPT as the bearer is refused.
#[tokio::test]
async fn keycloak_subject_token_names_the_requesting_party() {
    let auth = keycloak().spawn().await.unwrap();
    let (_pat, id) = keycloak_album(&auth).await;
    let response = http()
        .post(auth.endpoint_url(Endpoint::Token))
        .basic_auth(APP.0, Some(APP.1))
        .form(&[
            ("grant_type", "password"),
            ("username", BOB.0),
            ("password", BOB.1),
        ])
        .send()
        .await
        .unwrap();
    let access = ok_json(response).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut spec = RptSpec::active_for(&id, ["view"], 60);
    spec.sub = Some(BOB.0.into());
    let rpt = auth.mint_rpt(spec);
    let permission = format!("{id}#view");
    for subject in [access.as_str(), rpt.as_str()] {
        let permissions = ok_json(
            keycloak_grant(
                &auth,
                &[
                    ("permission", permission.as_str()),
                    ("subject_token", subject),
                    ("response_mode", "permissions"),
                ],
            )
            .await,
        )
        .await;
        assert_eq!(
            permissions,
            json!([{"rsid": id, "rsname": "album", "scopes": ["view"]}])
        );
    }
    let response = keycloak_grant(
        &auth,
        &[
            ("permission", permission.as_str()),
            ("subject_token", "nope"),
        ],
    )
    .await;
    assert_error(response, 400, "invalid_grant").await;
    let response = http()
        .post(auth.endpoint_url(Endpoint::Token))
        .bearer_auth(&rpt)
        .form(&[
            ("grant_type", UMA_TICKET_GRANT),
            ("permission", permission.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn keycloak_grant_answers_and_reusable_tickets() {
    let auth = keycloak()
        .ticket_ttl(Duration::from_secs(2))
        .spawn()
        .await
        .unwrap();
    let (pat, id) = keycloak_album(&auth).await;
    let bob = id_token(&auth, BOB).await;
    let alice = id_token(&auth, ALICE).await;
    let ticket = keycloak_ticket(
        &auth,
        &pat,
        &json!([{"resource_id": id, "resource_scopes": ["view"]}]),
    )
    .await;
    let with_bob = [
        ("ticket", ticket.as_str()),
        ("claim_token", bob.as_str()),
        ("claim_token_format", ID_TOKEN_FORMAT),
    ];

    let body = ok_json(keycloak_grant(&auth, &with_bob).await).await;
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(
        body["upgraded"], false,
        "Keycloak always says, even without an rpt"
    );
    let rpt = body["access_token"].as_str().unwrap().to_owned();
    // Keycloak's tickets are stateless: the same ticket works again until it expires.
    let again = ok_json(keycloak_grant(&auth, &with_bob).await).await;
    assert_ne!(again["access_token"], body["access_token"]);

    // Denied → access_denied / not_authorized; no identity → also denied (no need_info).
    let response = keycloak_grant(
        &auth,
        &[
            ("ticket", ticket.as_str()),
            ("claim_token", alice.as_str()),
            ("claim_token_format", ID_TOKEN_FORMAT),
        ],
    )
    .await;
    let body = assert_error(response, 403, "access_denied").await;
    assert_eq!(body["error_description"], "not_authorized");
    assert!(body.get("ticket").is_none());
    let response = keycloak_grant(&auth, &[("ticket", ticket.as_str())]).await;
    let body = assert_error(response, 403, "access_denied").await;
    assert_eq!(body["error_description"], "not_authorized");
    // Pushed claims in Keycloak's JWT format are accepted but identify nobody.
    let pushed = URL_SAFE_NO_PAD.encode(br#"{"tenant":["t1"]}"#);
    let response = keycloak_grant(
        &auth,
        &[
            ("ticket", ticket.as_str()),
            ("claim_token", pushed.as_str()),
            ("claim_token_format", "urn:ietf:params:oauth:token-type:jwt"),
        ],
    )
    .await;
    assert_error(response, 403, "access_denied").await;

    // Upgrade: the old RPT is revoked, `upgraded` is reported.
    let body = ok_json(
        keycloak_grant(
            &auth,
            &[with_bob[0], with_bob[1], with_bob[2], ("rpt", &rpt)],
        )
        .await,
    )
    .await;
    assert_eq!(body["upgraded"], true);
    assert!(!auth.is_active(&rpt));

    // response_mode=decision / permissions.
    let decision = ok_json(
        keycloak_grant(
            &auth,
            &[
                with_bob[0],
                with_bob[1],
                with_bob[2],
                ("response_mode", "decision"),
            ],
        )
        .await,
    )
    .await;
    assert_eq!(decision, json!({"result": true}));
    let permissions = ok_json(
        keycloak_grant(
            &auth,
            &[
                with_bob[0],
                with_bob[1],
                with_bob[2],
                ("response_mode", "permissions"),
            ],
        )
        .await,
    )
    .await;
    assert_eq!(
        permissions,
        json!([{"rsid": id, "rsname": "album", "scopes": ["view"]}])
    );

    // Ticketless: permission=RESOURCE#scopes, by name or id (repeatable).
    let by_id = format!("{id}#view");
    let body = ok_json(
        keycloak_grant(
            &auth,
            &[
                ("permission", "album#view"),
                ("permission", by_id.as_str()),
                ("claim_token", bob.as_str()),
                ("claim_token_format", ID_TOKEN_FORMAT),
            ],
        )
        .await,
    )
    .await;
    assert_eq!(body["token_type"], "bearer");
    let response = keycloak_grant(&auth, &[("permission", "nothing#view")]).await;
    assert_error(response, 400, "invalid_resource").await;
    let response = keycloak_grant(&auth, &[]).await;
    assert_error(response, 400, "invalid_request").await;

    // The requesting party's own access token as bearer authenticates the grant.
    let bob_token = user_token(&auth, BOB, "openid").await;
    let response = http()
        .post(auth.endpoint_url(Endpoint::Token))
        .bearer_auth(bob_token["access_token"].as_str().unwrap())
        .form(&[("grant_type", UMA_TICKET_GRANT), ("ticket", &ticket)])
        .send()
        .await
        .unwrap();
    let body = ok_json(response).await;
    let introspected =
        json(keycloak_introspect(&auth, body["access_token"].as_str().unwrap(), None).await).await;
    assert_eq!(introspected["sub"], BOB.0);
    assert_eq!(introspected["azp"], APP.0);

    // A bad ticket → 403 invalid_ticket; a deleted resource → 400 invalid_resource.
    let response = keycloak_grant(&auth, &[("ticket", "not-a-ticket")]).await;
    assert_error(response, 403, "invalid_ticket").await;
    let ticket = keycloak_ticket(
        &auth,
        &pat,
        &json!([{"resource_id": id, "resource_scopes": ["view"]}]),
    )
    .await;
    let response = http()
        .delete(format!(
            "{}/{id}",
            auth.endpoint_url(Endpoint::ResourceRegistration)
        ))
        .bearer_auth(&pat)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let response = keycloak_grant(
        &auth,
        &[
            ("ticket", ticket.as_str()),
            ("claim_token", bob.as_str()),
            ("claim_token_format", ID_TOKEN_FORMAT),
        ],
    )
    .await;
    assert_error(response, 400, "invalid_resource").await;
}

#[tokio::test]
async fn keycloak_expired_tickets_are_invalid_tickets() {
    let auth = keycloak()
        .ticket_ttl(Duration::from_millis(300))
        .spawn()
        .await
        .unwrap();
    let (pat, id) = keycloak_album(&auth).await;
    let bob = id_token(&auth, BOB).await;
    let ticket = keycloak_ticket(
        &auth,
        &pat,
        &json!([{"resource_id": id, "resource_scopes": ["view"]}]),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let response = keycloak_grant(
        &auth,
        &[
            ("ticket", ticket.as_str()),
            ("claim_token", bob.as_str()),
            ("claim_token_format", ID_TOKEN_FORMAT),
        ],
    )
    .await;
    let body = assert_error(response, 403, "invalid_ticket").await;
    assert!(body.get("ticket").is_none());
}

#[tokio::test]
async fn keycloak_approval_needs_submit_request_and_the_same_ticket_again() {
    let auth = builder()
        .dialect(Dialect::Keycloak)
        .policy(Policy::resource("album").scopes(["edit"]).owner_approval())
        .spawn()
        .await
        .unwrap();
    let (pat, id) = keycloak_album(&auth).await;
    let bob = id_token(&auth, BOB).await;
    let ticket = keycloak_ticket(
        &auth,
        &pat,
        &json!([{"resource_id": id, "resource_scopes": ["edit"]}]),
    )
    .await;
    let form = [
        ("ticket", ticket.as_str()),
        ("claim_token", bob.as_str()),
        ("claim_token_format", ID_TOKEN_FORMAT),
    ];
    let submit = [form[0], form[1], form[2], ("submit_request", "true")];

    // Without submit_request nothing is asked of the owner.
    let body = assert_error(keycloak_grant(&auth, &form).await, 403, "access_denied").await;
    assert_eq!(body["error_description"], "not_authorized");
    assert!(auth.pending_requests(ALICE.0).is_empty());

    // With it: request_submitted, no new ticket, one request.
    let body = assert_error(keycloak_grant(&auth, &submit).await, 403, "access_denied").await;
    assert_eq!(body["error_description"], "request_submitted");
    assert!(body.get("ticket").is_none(), "Keycloak sends no new ticket");
    let body = assert_error(keycloak_grant(&auth, &submit).await, 403, "access_denied").await;
    assert_eq!(body["error_description"], "request_submitted");
    let pending = auth.pending_requests(ALICE.0);
    assert_eq!(pending.len(), 1, "polling does not duplicate the request");
    assert_eq!(pending[0].requester, BOB.0);
    assert_eq!(pending[0].scopes, ["edit"]);

    // The owner approves over the realm's admin path; the client presents the same ticket.
    let response = http()
        .post(format!(
            "{}/{}/approve",
            auth.endpoint_url(Endpoint::Admin),
            pending[0].id
        ))
        .basic_auth(ALICE.0, Some(ALICE.1))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        auth.endpoint_url(Endpoint::Admin)
            .starts_with(&format!("{}/admin/", auth.issuer()))
    );
    let body = ok_json(keycloak_grant(&auth, &form).await).await;
    assert_eq!(body["token_type"], "bearer");
}

#[tokio::test]
async fn keycloak_introspection_needs_client_credentials_and_the_rpt_hint() {
    let auth = keycloak().spawn().await.unwrap();
    let (pat, id) = keycloak_album(&auth).await;
    let bob = id_token(&auth, BOB).await;
    let ticket = keycloak_ticket(
        &auth,
        &pat,
        &json!([{"resource_id": id, "resource_scopes": ["view"]}]),
    )
    .await;
    let body = ok_json(
        keycloak_grant(
            &auth,
            &[
                ("ticket", ticket.as_str()),
                ("claim_token", bob.as_str()),
                ("claim_token_format", ID_TOKEN_FORMAT),
            ],
        )
        .await,
    )
    .await;
    let rpt = body["access_token"].as_str().unwrap().to_owned();
    let url = auth.endpoint_url(Endpoint::Introspection);

    // A bearer PAT is not client authentication here.
    let response = http()
        .post(&url)
        .bearer_auth(&pat)
        .form(&[
            ("token", rpt.as_str()),
            ("token_type_hint", "requesting_party_token"),
        ])
        .send()
        .await
        .unwrap();
    assert_error(response, 401, "invalid_client").await;

    // With the hint: permissions in both namings, Keycloak's metadata, aud = the RS.
    let answer = json(keycloak_introspect(&auth, &rpt, Some("requesting_party_token")).await).await;
    assert_eq!(answer["active"], true);
    assert_eq!(
        answer["permissions"],
        json!([{"rsid": id, "rsname": "album", "scopes": ["view"],
                "resource_id": id, "resource_scopes": ["view"]}])
    );
    assert_eq!(answer["aud"], RS.0);
    assert_eq!(answer["typ"], "Bearer");
    assert!(answer["jti"].is_string() && answer["exp"].is_i64() && answer["iat"].is_i64());
    assert!(answer.get("scope").is_none());

    // Without a hint, or with access_token: a plain access-token answer, no permissions.
    for hint in [None, Some("access_token")] {
        let plain = json(keycloak_introspect(&auth, &rpt, hint).await).await;
        assert_eq!(plain["active"], true, "{hint:?}");
        assert!(plain.get("permissions").is_none(), "{hint:?}: {plain}");
        assert!(plain.get("authorization").is_none(), "{hint:?}: {plain}");
        assert_eq!(plain["sub"], BOB.0);
        assert_eq!(plain["azp"], APP.0);
        assert_eq!(plain["token_type"], "Bearer");
    }
    // Any other hint → 400 "Unsupported token type.".
    for hint in ["refresh_token", "rpt"] {
        let body = assert_error(
            keycloak_introspect(&auth, &rpt, Some(hint)).await,
            400,
            "invalid_request",
        )
        .await;
        assert_eq!(body["error_description"], "Unsupported token type.");
    }
    // Credentials in the body work too (next to an unrelated bearer token, as python-keycloak
    // sends them); a missing token is a 400.
    let response = http()
        .post(&url)
        .bearer_auth(&pat)
        .form(&[
            ("client_id", RS.0),
            ("client_secret", RS.1),
            ("token", rpt.as_str()),
            ("token_type_hint", "requesting_party_token"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(json(response).await["permissions"][0]["rsid"], json!(id));
    let response = http()
        .post(&url)
        .basic_auth(RS.0, Some(RS.1))
        .form(&[("token_type_hint", "requesting_party_token")])
        .send()
        .await
        .unwrap();
    let body = assert_error(response, 400, "invalid_request").await;
    assert_eq!(body["error_description"], "Token not provided.");

    // An empty scope list: `scopes` left out, `resource_scopes: []`.
    let empty = auth.mint_rpt(uma_test_as::RptSpec::active_for(
        id.as_str(),
        Vec::<String>::new(),
        60,
    ));
    let answer =
        json(keycloak_introspect(&auth, &empty, Some("requesting_party_token")).await).await;
    assert_eq!(
        answer["permissions"],
        json!([{"rsid": id, "rsname": "album", "resource_id": id, "resource_scopes": []}])
    );
    // A PAT with the RPT hint is not an RPT: exactly {"active":false}, like an unknown token
    // (Keycloak 26).
    let answer = json(keycloak_introspect(&auth, &pat, Some("requesting_party_token")).await).await;
    assert_eq!(answer, json!({"active": false}));
    let answer =
        json(keycloak_introspect(&auth, "nope", Some("requesting_party_token")).await).await;
    assert_eq!(answer, json!({"active": false}));
    assert_eq!(auth.count(Endpoint::Introspection), 11);
}

#[tokio::test]
async fn keycloak_jwt_rpts_carry_authorization_permissions() {
    let auth = keycloak()
        .realm("acme")
        .rpt_format(RptFormat::Jwt)
        .spawn()
        .await
        .unwrap();
    let (pat, id) = keycloak_album(&auth).await;
    let bob = id_token(&auth, BOB).await;
    let bob_claims = verify(&auth, &bob).await;
    assert_eq!(bob_claims["typ"], "ID");
    assert_eq!(bob_claims["iss"], auth.issuer());
    let ticket = keycloak_ticket(
        &auth,
        &pat,
        &json!([{"resource_id": id, "resource_scopes": ["view"]}]),
    )
    .await;
    let body = ok_json(
        keycloak_grant(
            &auth,
            &[
                ("ticket", ticket.as_str()),
                ("claim_token", bob.as_str()),
                ("claim_token_format", ID_TOKEN_FORMAT),
            ],
        )
        .await,
    )
    .await;
    let rpt = body["access_token"].as_str().unwrap();
    assert_eq!(decode_header(rpt).unwrap().typ.as_deref(), Some("JWT"));
    let rpt_claims = verify(&auth, rpt).await;
    assert_eq!(
        rpt_claims["authorization"],
        json!({"permissions": [{"rsid": id, "rsname": "album", "scopes": ["view"]}]})
    );
    assert!(rpt_claims.get("permissions").is_none());
    assert!(rpt_claims.get("client_id").is_none());
    assert_eq!(rpt_claims["aud"], RS.0, "the resource server's client id");
    assert_eq!(rpt_claims["azp"], APP.0, "the requesting client");
    assert_eq!(rpt_claims["sub"], BOB.0);
    assert_eq!(rpt_claims["typ"], "Bearer");
    assert_eq!(rpt_claims["iss"], auth.issuer());
    // The JWT RPT is introspected like an opaque one.
    let answer = json(keycloak_introspect(&auth, rpt, Some("requesting_party_token")).await).await;
    assert_eq!(answer["jti"], rpt_claims["jti"]);
    assert_eq!(answer["permissions"][0]["resource_id"], json!(id));
    // A Keycloak access token is not an ID token: refused as a claim token.
    let access = user_token(&auth, BOB, "openid").await;
    let response = keycloak_grant(
        &auth,
        &[
            ("ticket", ticket.as_str()),
            ("claim_token", access["access_token"].as_str().unwrap()),
            ("claim_token_format", ID_TOKEN_FORMAT),
        ],
    )
    .await;
    assert_error(response, 400, "invalid_grant").await;
}

// ---------------------------------------------------------------------------------------------
// WSO2
// ---------------------------------------------------------------------------------------------

fn wso2() -> uma_test_as::AuthServerBuilder {
    builder()
        .dialect(Dialect::Wso2)
        .policy(Policy::resource("album").scopes(["view"]).users(["bob"]))
}

/// A WSO2 PAT: the owner's password grant with `scope=uma_protection`.
async fn wso2_pat(auth: &TestAs, owner: (&str, &str)) -> String {
    let body = ok_json(
        http()
            .post(auth.endpoint_url(Endpoint::Token))
            .basic_auth(RS.0, Some(RS.1))
            .form(&[
                ("grant_type", "password"),
                ("username", owner.0),
                ("password", owner.1),
                ("scope", "uma_protection"),
            ])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(body["token_type"], "Bearer");
    body["access_token"].as_str().unwrap().to_owned()
}

fn wso2_album() -> Value {
    json!({"name": "album", "type": "", "icon_uri": "", "description": "",
           "resource_scopes": ["view", "edit"]})
}

/// Asserts a WSO2 resource-API error: status and `{"code", "description"}`.
async fn assert_wso2_error(response: Response, status: u16, code: &str) -> Value {
    let (got, body) = status_and_json(response).await;
    assert_eq!(got, status, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert!(body["description"].is_string(), "{body}");
    assert!(body.get("error").is_none(), "{body}");
    body
}

#[tokio::test]
async fn wso2_paths_and_no_discovery() {
    let auth = wso2().spawn().await.unwrap();
    let base = auth.base_url();
    assert_eq!(auth.issuer(), base);
    assert_eq!(auth.jwt_issuer(), format!("{base}/oauth2/token"));
    let expected = [
        (Endpoint::Token, "/oauth2/token"),
        (Endpoint::Introspection, "/oauth2/introspect"),
        (
            Endpoint::ResourceRegistration,
            "/api/identity/oauth2/uma/resourceregistration/v1.0/resource",
        ),
        (
            Endpoint::Permission,
            "/api/identity/oauth2/uma/permission/v1.0/permission",
        ),
        (Endpoint::Jwks, "/oauth2/jwks"),
        (Endpoint::Revocation, "/oauth2/revoke"),
    ];
    for (endpoint, path) in expected {
        assert_eq!(auth.endpoint_url(endpoint), format!("{base}{path}"));
    }
    let response = http()
        .get(format!("{base}/.well-known/uma2-configuration"))
        .send()
        .await
        .unwrap();
    assert_error(response, 404, "not_found").await;
    assert_eq!(auth.count(Endpoint::Discovery), 1, "the miss is counted");
    assert_eq!(kids(&auth).await.len(), 1);
    assert_eq!(auth.count(Endpoint::Jwks), 1);
    // ID tokens name the token endpoint as issuer, like WSO2's.
    let bob = id_token(&auth, BOB).await;
    assert_eq!(verify(&auth, &bob).await["iss"], auth.jwt_issuer());
    assert_eq!(auth.requests(Endpoint::Token)[0].uri, "/oauth2/token");

    // Fault knobs act on WSO2's paths.
    let alice = wso2_pat(&auth, ALICE).await;
    auth.reject_next_pat(1);
    let url = auth.endpoint_url(Endpoint::ResourceRegistration);
    let response = post_json(&url, &alice, &wso2_album()).await;
    assert_wso2_error(response, 401, "Unauthorized").await;
    let id = register(&auth, &alice, wso2_album()).await;
    auth.fail_next(Endpoint::Permission, 1, 500);
    let body = json!([{"resource_id": id, "resource_scopes": ["view"]}]);
    let response = post_json(&auth.endpoint_url(Endpoint::Permission), &alice, &body).await;
    assert_error(response, 500, "server_error").await;
    auth.close_next(Endpoint::Introspection, 1);
    let closed = http()
        .post(auth.endpoint_url(Endpoint::Introspection))
        .bearer_auth(&alice)
        .form(&[("token", alice.as_str())])
        .send()
        .await;
    assert!(
        closed.is_err(),
        "the connection is closed without an answer"
    );
    assert_eq!(auth.count(Endpoint::Introspection), 1);
    assert_eq!(auth.count(Endpoint::ResourceRegistration), 2);
    assert_eq!(auth.count(Endpoint::Permission), 1);
}

#[tokio::test]
async fn wso2_pats_must_belong_to_the_resource_owner() {
    let auth = wso2().spawn().await.unwrap();
    let url = auth.endpoint_url(Endpoint::ResourceRegistration);
    // A client-credentials PAT is issued but has no resource owner: 401 everywhere.
    let client_pat = pat(&auth, RS).await;
    let response = post_json(&url, &client_pat, &wso2_album()).await;
    let body = assert_wso2_error(response, 401, "Unauthorized").await;
    assert_eq!(body["description"], "Unauthorized User.");
    let response = http()
        .get(&url)
        .bearer_auth(&client_pat)
        .send()
        .await
        .unwrap();
    assert_wso2_error(response, 401, "Unauthorized").await;
    let response = http().get(&url).send().await.unwrap();
    assert_wso2_error(response, 401, "Unauthorized").await;

    // The owner's password-grant PAT works; the owner is that user, whatever the body says.
    let alice = wso2_pat(&auth, ALICE).await;
    let mut body = wso2_album();
    body["owner"] = json!("bob");
    let id = register(&auth, &alice, body).await;
    assert_eq!(auth.resource(&id).unwrap().owner.as_deref(), Some(ALICE.0));

    // Permission endpoint: error/error_description, WSO2's words.
    let permission = auth.endpoint_url(Endpoint::Permission);
    let response = post_json(
        &permission,
        &client_pat,
        &json!([{"resource_id": id, "resource_scopes": ["view"]}]),
    )
    .await;
    let body = assert_error(response, 401, "unauthorized").await;
    assert_eq!(body["error_description"], "Unauthorized user");
    // Another owner's PAT cannot ask about alice's resource.
    let bob = wso2_pat(&auth, BOB).await;
    let response = post_json(
        &permission,
        &bob,
        &json!([{"resource_id": id, "resource_scopes": ["view"]}]),
    )
    .await;
    assert_error(response, 400, "invalid_resource_id").await;
    // Nor read it.
    let response = http()
        .get(format!("{url}/{id}"))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_wso2_error(response, 401, "Unauthorized").await;
}

#[tokio::test]
async fn wso2_resource_api_shapes() {
    let auth = wso2().spawn().await.unwrap();
    let url = auth.endpoint_url(Endpoint::ResourceRegistration);
    let alice = wso2_pat(&auth, ALICE).await;

    // All five fields are required (empty strings are fine), scopes must not be empty.
    for missing in ["name", "type", "icon_uri", "description"] {
        let mut body = wso2_album();
        body.as_object_mut().unwrap().remove(missing);
        let response = post_json(&url, &alice, &body).await;
        let error = assert_wso2_error(response, 400, "invalid_request").await;
        assert!(error["description"].as_str().unwrap().contains(missing));
    }
    for scopes in [json!([]), Value::Null] {
        let mut body = wso2_album();
        body["resource_scopes"] = scopes;
        let response = post_json(&url, &alice, &body).await;
        let error = assert_wso2_error(response, 400, "invalid_request").await;
        assert_eq!(error["description"], "Resource scopes are missing");
    }

    // Create: 201, absolute Location, {"_id"} only.
    let response = post_json(&url, &alice, &wso2_album()).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let created = json(response).await;
    let id = created["_id"].as_str().unwrap().to_owned();
    assert_eq!(created, json!({"_id": id}));
    assert_eq!(location, format!("{url}/{id}"));
    assert_eq!(id.len(), 36, "WSO2 ids are UUIDs");

    // Read: strings, all five fields.
    let read = json(
        http()
            .get(&location)
            .bearer_auth(&alice)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(read["resource_scopes"], json!(["view", "edit"]));
    assert_eq!(read["_id"], json!(id));
    assert_eq!(read["description"], "");

    // Duplicate name → 409 conflict; another owner may use the name.
    let response = post_json(&url, &alice, &wso2_album()).await;
    assert_wso2_error(response, 409, "conflict").await;
    let bob = wso2_pat(&auth, BOB).await;
    let bobs = register(&auth, &bob, wso2_album()).await;

    // List: the owner's resources only.
    let list = json(http().get(&url).bearer_auth(&alice).send().await.unwrap()).await;
    assert_eq!(list, json!([id]));

    // PUT → 201 {"_id"}; the same validation.
    let mut update = wso2_album();
    update["resource_scopes"] = json!(["view"]);
    let response = http()
        .put(&location)
        .bearer_auth(&alice)
        .json(&update)
        .send()
        .await
        .unwrap();
    assert_eq!(status_and_json(response).await, (201, json!({"_id": id})));
    assert_eq!(auth.resource(&id).unwrap().resource_scopes, ["view"]);
    update["resource_scopes"] = json!([]);
    let response = http()
        .put(&location)
        .bearer_auth(&alice)
        .json(&update)
        .send()
        .await
        .unwrap();
    assert_wso2_error(response, 400, "invalid_request").await;
    let response = http()
        .put(format!("{url}/{bobs}"))
        .bearer_auth(&alice)
        .json(&wso2_album())
        .send()
        .await
        .unwrap();
    assert_wso2_error(response, 401, "Unauthorized").await;
    // Malformed JSON is a code/description error too.
    let response = http()
        .post(&url)
        .bearer_auth(&alice)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_wso2_error(response, 400, "invalid_request").await;

    // DELETE → 204; unknown → 404 not_found.
    let response = http()
        .delete(&location)
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let response = http()
        .get(&location)
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_wso2_error(response, 404, "not_found").await;
}

/// The WSO2 uma-ticket grant: an ID token as claim_token, no format.
async fn wso2_grant(auth: &TestAs, ticket: &str, claim_token: Option<&str>) -> Response {
    let mut form = vec![("grant_type", UMA_TICKET_GRANT), ("ticket", ticket)];
    if let Some(token) = claim_token {
        form.push(("claim_token", token));
    }
    http()
        .post(auth.endpoint_url(Endpoint::Token))
        .basic_auth(APP.0, Some(APP.1))
        .form(&form)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn wso2_permissions_grant_and_introspection() {
    let auth = wso2()
        .policy(Policy::resource("album").scopes(["edit"]).owner_approval())
        .spawn()
        .await
        .unwrap();
    let alice = wso2_pat(&auth, ALICE).await;
    let id = register(&auth, &alice, wso2_album()).await;
    let permission = auth.endpoint_url(Endpoint::Permission);

    // Array only.
    let response = post_json(
        &permission,
        &alice,
        &json!({"resource_id": id, "resource_scopes": ["view"]}),
    )
    .await;
    assert_error(response, 400, "invalid_request").await;
    let ticket = |scopes: Value| {
        let permission = permission.clone();
        let alice = alice.clone();
        let id = id.clone();
        async move {
            let response = post_json(
                &permission,
                &alice,
                &json!([{"resource_id": id, "resource_scopes": scopes}]),
            )
            .await;
            let (status, body) = status_and_json(response).await;
            assert_eq!(status, 201, "{body}");
            body["ticket"].as_str().unwrap().to_owned()
        }
    };
    let view = ticket(json!(["view"])).await;
    assert_eq!(view.len(), 36, "WSO2 tickets are UUIDs");
    assert_eq!(view.matches('-').count(), 4);

    let bob = id_token(&auth, BOB).await;
    let eve = id_token(&auth, ALICE).await;
    let generic = |body: &Value| {
        assert_eq!(
            body["error_description"],
            "Provided Authorization Grant is invalid"
        );
        assert!(body.get("ticket").is_none());
    };
    // No claim token → invalid_grant (and the ticket is not spent).
    generic(&assert_error(wso2_grant(&auth, &view, None).await, 400, "invalid_grant").await);
    // The owner is not granted view → invalid_grant (not request_denied); the ticket is spent.
    generic(
        &assert_error(
            wso2_grant(&auth, &view, Some(&eve)).await,
            400,
            "invalid_grant",
        )
        .await,
    );
    generic(
        &assert_error(
            wso2_grant(&auth, &view, Some(&bob)).await,
            400,
            "invalid_grant",
        )
        .await,
    );
    // A pair that would need the owner's approval → invalid_grant, no request created.
    let edit = ticket(json!(["edit"])).await;
    generic(
        &assert_error(
            wso2_grant(&auth, &edit, Some(&bob)).await,
            400,
            "invalid_grant",
        )
        .await,
    );
    assert!(auth.pending_requests(ALICE.0).is_empty());
    // A garbage claim token → invalid_grant.
    let fresh = ticket(json!(["view"])).await;
    generic(
        &assert_error(
            wso2_grant(&auth, &fresh, Some("garbage")).await,
            400,
            "invalid_grant",
        )
        .await,
    );

    // Success: bob, with a fresh ticket, no claim_token_format; `rpt` is ignored.
    let fresh = ticket(json!(["view"])).await;
    let response = http()
        .post(auth.endpoint_url(Endpoint::Token))
        .basic_auth(APP.0, Some(APP.1))
        .form(&[
            ("grant_type", UMA_TICKET_GRANT),
            ("ticket", fresh.as_str()),
            ("claim_token", bob.as_str()),
            ("rpt", "whatever"),
        ])
        .send()
        .await
        .unwrap();
    let body = ok_json(response).await;
    assert_eq!(body["token_type"], "Bearer");
    assert!(body.get("upgraded").is_none());
    let rpt = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(rpt.len(), 36, "WSO2 tokens are UUIDs");
    // Single-use ticket.
    generic(
        &assert_error(
            wso2_grant(&auth, &fresh, Some(&bob)).await,
            400,
            "invalid_grant",
        )
        .await,
    );

    // Introspection with the owner's PAT as bearer.
    let answer = introspect(&auth, &alice, &rpt).await;
    assert_eq!(answer["active"], true);
    assert_eq!(
        answer["permissions"],
        json!([{"resource_id": id, "resource_scopes": ["view"]}])
    );
    assert_eq!(answer["username"], "bob@carbon.super");
    assert_eq!(answer["aut"], "APPLICATION_USER");
    assert_eq!(answer["token_type"], "Bearer");
    assert_eq!(answer["client_id"], APP.0);
    assert!(answer["nbf"].is_i64());
    let answer = introspect(&auth, &alice, &alice).await;
    assert_eq!(answer["scope"], "uma_protection");
    assert!(answer.get("permissions").is_none());
    assert_eq!(answer["username"], "alice@carbon.super");
}

// ---------------------------------------------------------------------------------------------
// The binary
// ---------------------------------------------------------------------------------------------

const BIN: &str = env!("CARGO_BIN_EXE_uma-test-as");

/// Starts the binary; returns it with the address from its first stdout line.
async fn start(args: &[&str]) -> (Child, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let first = BufReader::new(stdout)
        .lines()
        .next_line()
        .await
        .unwrap()
        .unwrap();
    let addr = first
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line: {first}"))
        .to_owned();
    (child, addr)
}

async fn exit_code(args: &[&str]) -> i32 {
    Command::new(BIN)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .unwrap()
        .code()
        .unwrap()
}

#[tokio::test]
async fn binary_speaks_the_chosen_dialect() {
    let (mut child, addr) = start(&["--listen", "127.0.0.1:0", "--dialect", "keycloak"]).await;
    let doc: Value = json(
        http()
            .get(format!(
                "http://{addr}/realms/uma/.well-known/uma2-configuration"
            ))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(doc["issuer"], format!("http://{addr}/realms/uma"));
    assert_eq!(
        doc["permission_endpoint"],
        format!("http://{addr}/realms/uma/authz/protection/permission")
    );
    let response = http()
        .get(format!("http://{addr}/.well-known/uma2-configuration"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    // The sample clients work at Keycloak's token endpoint.
    let response = http()
        .post(format!(
            "http://{addr}/realms/uma/protocol/openid-connect/token"
        ))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "photo-api"),
            ("client_secret", "photo-api-secret"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(json(response).await["token_type"], "bearer");
    child.kill().await.unwrap();

    let (mut child, addr) = start(&[
        "--listen",
        "127.0.0.1:0",
        "--dialect",
        "keycloak",
        "--realm",
        "acme",
    ])
    .await;
    let response = http()
        .get(format!(
            "http://{addr}/realms/acme/.well-known/openid-configuration"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    child.kill().await.unwrap();

    let (mut child, addr) = start(&["--listen", "127.0.0.1:0", "--dialect", "WSO2"]).await;
    let response = http()
        .get(format!("http://{addr}/.well-known/uma2-configuration"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let response = http()
        .get(format!("http://{addr}/oauth2/jwks"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    child.kill().await.unwrap();

    assert_eq!(
        exit_code(&["--listen", "127.0.0.1:0", "--dialect", "gluu"]).await,
        2
    );
    assert_eq!(
        exit_code(&["--listen", "127.0.0.1:0", "--realm", "acme"]).await,
        2
    );
    assert_eq!(
        exit_code(&[
            "--listen",
            "127.0.0.1:0",
            "--dialect",
            "keycloak",
            "--realm",
            "a/b"
        ])
        .await,
        2
    );
}

// ---------------------------------------------------------------------------------------------
// Key rotation
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn key_rotation_publishes_both_keys_until_the_old_one_is_retired() {
    let auth = builder()
        .policy(Policy::resource("album").scopes(["view"]).users(["bob"]))
        .rpt_format(RptFormat::Jwt)
        .spawn()
        .await
        .unwrap();
    let (pat, id) = album(&auth).await;
    let old_kid = auth.signing_kid();
    let old_id_token = id_token(&auth, BOB).await;
    let old_rpt = rpt(grant(
        &auth,
        &ticket_for(&auth, &pat, &id, &["view"]).await,
        Some(&old_id_token),
        &[],
    )
    .await)
    .await;
    assert_eq!(
        decode_header(&old_rpt).unwrap().kid.as_deref(),
        Some(old_kid.as_str())
    );

    let new_kid = auth.rotate_signing_key();
    assert_ne!(new_kid, old_kid);
    assert_eq!(auth.signing_kid(), new_kid);
    assert_eq!(kids(&auth).await, [new_kid.clone(), old_kid.clone()]);
    // New tokens carry the new kid; old ones still verify against the JWKS.
    let new_id_token = id_token(&auth, BOB).await;
    let new_rpt = rpt(grant(
        &auth,
        &ticket_for(&auth, &pat, &id, &["view"]).await,
        Some(&old_id_token),
        &[],
    )
    .await)
    .await;
    for (token, kid) in [
        (&new_id_token, &new_kid),
        (&new_rpt, &new_kid),
        (&old_rpt, &old_kid),
        (&old_id_token, &old_kid),
    ] {
        assert_eq!(decode_header(token).unwrap().kid.as_ref(), Some(kid));
        verify(&auth, token).await;
    }
    let minted = auth.mint_id_token(BOB.0, APP.0);
    assert_eq!(
        decode_header(&minted).unwrap().kid.as_deref(),
        Some(new_kid.as_str())
    );

    // Retiring drops the old key: old ID tokens no longer work as claim tokens.
    auth.retire_old_keys();
    assert_eq!(kids(&auth).await, std::slice::from_ref(&new_kid));
    let response = grant(
        &auth,
        &ticket_for(&auth, &pat, &id, &["view"]).await,
        Some(&old_id_token),
        &[],
    )
    .await;
    assert_error(response, 400, "invalid_grant").await;
    rpt(grant(
        &auth,
        &ticket_for(&auth, &pat, &id, &["view"]).await,
        Some(&new_id_token),
        &[],
    )
    .await)
    .await;
    // Opaque state is untouched: the old RPT still introspects.
    assert_eq!(introspect(&auth, &pat, &old_rpt).await["active"], true);
    assert_eq!(auth.count(Endpoint::Jwks), 6);
    // Rotating twice keeps every unretired key, newest first.
    let third = auth.rotate_signing_key();
    let fourth = auth.rotate_signing_key();
    assert_eq!(kids(&auth).await, [fourth, third, new_kid]);
}
