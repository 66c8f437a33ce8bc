//! Keycloak's own `keycloak.json` with a `policy-enforcer` section (issue 14, "Their config,
//! as it is", "Lazy paths", "Permission exchange" and "Pushed claims"), against the real Keycloak: the layer built by
//! `KeycloakConfig::discover`, a configured path for a resource the console owns, lazy paths
//! resolved by the resources' `uris` with Keycloak's `matchingUri` query, and a resource bound
//! to a configured path that lazy paths must not hand out (keycloak/keycloak-client#190).
//! Run by `interop/keycloak/test.sh`.

#![allow(
    clippy::unwrap_used,
    reason = "tests against a live server: a failure is a test failure"
)]

mod common;

use common::*;
use http::{Method, StatusCode};
use serde_json::json;
use tower_uma::keycloak::KeycloakConfig;

/// The layer `config` describes, on Keycloak's plain-http loopback address.
async fn build(config: &KeycloakConfig) -> tower_uma::UmaLayer {
    config
        .discover()
        .insecure_allow_http()
        .build()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_keycloak_json_with_lazy_paths_protects_the_api() {
    require_keycloak().await;
    let pat = pat_of(RS_ID, RS_SECRET).await;
    // Resources as an admin makes them in the console: scopes and uris, owned by the client.
    let conf = unique("conf");
    let lazy = unique("lazy");
    let conf_id = register(
        &pat,
        json!({"name": conf, "resource_scopes": ["view", "delete"],
               "uris": [format!("/{conf}-elsewhere/*")]}),
    )
    .await;
    let lazy_id = register(
        &pat,
        json!({"name": lazy, "resource_scopes": ["view", "delete"],
               "uris": [format!("/{lazy}/*")]}),
    )
    .await;
    // A path without `name`: its resource is the one whose uris hold the path.
    let by_uri = unique("byuri");
    let by_uri_path = format!("/{by_uri}/{{id}}");
    let by_uri_id = register(
        &pat,
        json!({"name": by_uri, "resource_scopes": ["view"], "uris": [by_uri_path]}),
    )
    .await;
    // The file as Keycloak's console downloads it, with the enforcer section added.
    let text = json!({
        "realm": "photos",
        "auth-server-url": format!("{BASE}/"),
        "ssl-required": "external",
        "resource": RS_ID,
        "credentials": {"secret": RS_SECRET},
        "confidential-port": 0,
        "policy-enforcer": {
            "user-managed-access": {},
            "lazy-load-paths": true,
            "paths": [
                {"name": conf, "path": "/conf/{id}",
                 "methods": [{"method": "GET", "scopes": ["view"]},
                             {"method": "DELETE", "scopes": ["delete"]}]},
                {"path": "/health", "enforcement-mode": "DISABLED"},
                {"path": by_uri_path, "scopes": ["view"]}
            ]
        }
    })
    .to_string();
    let config = KeycloakConfig::from_json(&text).unwrap();
    assert_eq!(config.issuer(), ISSUER);
    let layer = build(&config).await;
    let url = protected(layer).await;

    assert_eq!(
        get(&format!("{url}/health"), Method::GET, None)
            .await
            .status(),
        StatusCode::OK
    );

    // A configured path: Keycloak's ticket, bob's RPT (he may view), no DELETE.
    let conf_url = format!("{url}/conf/1");
    let rpt_conf = rpt("bob", &ticket_of(&get(&conf_url, Method::GET, None).await)).await;
    let ok = answer(get(&conf_url, Method::GET, Some(&rpt_conf)).await).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    assert_eq!(ok.body["principal"]["resource_id"], json!(conf_id));
    let delete = get(&conf_url, Method::DELETE, Some(&rpt_conf)).await;
    assert_eq!(delete.status(), StatusCode::UNAUTHORIZED);

    // The path without `name`, by the resource Keycloak found for it at build.
    let by_uri_url = format!("{url}/{by_uri}/3");
    let rpt_by_uri = rpt(
        "bob",
        &ticket_of(&get(&by_uri_url, Method::GET, None).await),
    )
    .await;
    let ok = answer(get(&by_uri_url, Method::GET, Some(&rpt_by_uri)).await).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    assert_eq!(ok.body["principal"]["resource_id"], json!(by_uri_id));

    // A lazy path: found by its uris at Keycloak (the bare prefix too), any of its scopes.
    let lazy_url = format!("{url}/{lazy}/photos/7");
    let rpt_lazy = rpt("bob", &ticket_of(&get(&lazy_url, Method::GET, None).await)).await;
    for path in [format!("/{lazy}/photos/7"), format!("/{lazy}")] {
        let ok = answer(get(&format!("{url}{path}"), Method::GET, Some(&rpt_lazy)).await).await;
        assert_eq!(ok.status, StatusCode::OK, "{path}: {}", ok.text);
        assert_eq!(ok.body["principal"]["resource_id"], json!(lazy_id));
    }
    // The RPT for one resource does not open the other.
    let wrong = get(&lazy_url, Method::GET, Some(&rpt_conf)).await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);

    // `conf` is bound to /conf/{id}: its uris do not open another path, whatever the token.
    let elsewhere = format!("{url}/{conf}-elsewhere/x");
    let refused = get(&elsewhere, Method::GET, Some(&rpt_conf)).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    // No resource at all: unmapped.
    let nothing = format!("{url}/{}", unique("nothing"));
    let refused = get(&nothing, Method::GET, Some(&rpt_lazy)).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);

    unregister(&pat, &conf_id).await;
    unregister(&pat, &lazy_id).await;
    unregister(&pat, &by_uri_id).await;
}

/// Without `user-managed-access` (Keycloak's default), a plain access token is exchanged at
/// Keycloak for the permissions its user may have (the uma-ticket grant with `permission`,
/// `audience` and `response_mode=permissions`), as Keycloak's own enforcer does; a refusal is
/// `403` without a ticket, and requests without a token still get a ticket.
#[tokio::test]
async fn plain_access_tokens_are_exchanged_for_permissions() {
    require_keycloak().await;
    let pat = pat_of(RS_ID, RS_SECRET).await;
    let name = unique("exchange");
    let id = register(
        &pat,
        json!({"name": name, "resource_scopes": ["view", "delete"]}),
    )
    .await;
    let text = json!({
        "realm": "photos",
        "auth-server-url": BASE,
        "resource": RS_ID,
        "credentials": {"secret": RS_SECRET},
        "policy-enforcer": {
            "paths": [
                {"name": name, "path": "/ex/{id}",
                 "methods": [
                    {"method": "GET", "scopes": ["view"]},
                    {"method": "DELETE", "scopes": ["delete"]},
                    {"method": "POST", "scopes": ["view", "delete"], "scopes-enforcement-mode": "ANY"},
                    {"method": "PUT", "scopes": ["view", "delete"], "scopes-enforcement-mode": "ALL"}]}
            ]
        }
    })
    .to_string();
    let config = KeycloakConfig::from_json(&text).unwrap();
    assert!(config.permission_exchange().is_some());
    let layer = build(&config).await;
    let url = format!("{}/ex/1", protected(layer).await);
    // bob's plain access token: Keycloak's introspection calls it inactive under the RPT hint.
    let bob = user_token("bob").await;
    assert_eq!(introspect(&bob).await["active"], json!(false));

    let ok = answer(get(&url, Method::GET, Some(&bob)).await).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    assert_eq!(ok.body["principal"]["resource_id"], json!(id));
    assert_eq!(ok.body["principal"]["scopes"], json!(["view"]));
    assert_eq!(ok.body["principal"]["client_id"], json!(APP_ID));
    // ANY: Keycloak grants view of view and delete, enough.
    let any = get(&url, Method::POST, Some(&bob)).await;
    assert_eq!(any.status(), StatusCode::OK);
    // Refused by Keycloak, or not all scopes: 403 without a ticket.
    for method in [Method::DELETE, Method::PUT] {
        let refused = get(&url, method.clone(), Some(&bob)).await;
        assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{method}");
        assert!(
            refused.headers().get("www-authenticate").is_none(),
            "{method}"
        );
        assert!(refused.headers().get("warning").is_none(), "{method}");
    }
    // No token, or one Keycloak does not accept: a ticket, and an RPT still works.
    let ticket = ticket_of(&get(&url, Method::GET, None).await);
    ticket_of(&get(&url, Method::GET, Some("not-a-keycloak-token")).await);
    let rpt = rpt("bob", &ticket).await;
    assert_eq!(
        get(&url, Method::GET, Some(&rpt)).await.status(),
        StatusCode::OK
    );

    unregister(&pat, &id).await;
}

/// A resource Keycloak grants only to requests pushing `org=acme` (a regex policy on the
/// context attribute `org`), and what must be deleted afterwards.
struct AcmeOnly {
    pat: String,
    admin: Admin,
    server: String,
    /// The resource's name and id.
    name: String,
    id: String,
    policy_id: String,
    permission_id: String,
}

impl AcmeOnly {
    async fn create() -> Self {
        let pat = pat_of(RS_ID, RS_SECRET).await;
        let name = unique("claims");
        let id = register(&pat, json!({"name": name, "resource_scopes": ["view"]})).await;
        let admin = Admin::login().await;
        let server = format!(
            "/clients/{}/authz/resource-server",
            admin.client_uuid(RS_ID).await
        );
        let policy = admin
            .call(
                Method::POST,
                &format!("{server}/policy/regex"),
                Some(
                    json!({"name": unique("org-acme"), "targetClaim": "org", "pattern": "^acme$",
                            "targetContextAttributes": true, "logic": "POSITIVE"}),
                ),
            )
            .await;
        assert_eq!(policy.status, StatusCode::CREATED, "{}", policy.text);
        let policy_id = policy.body["id"].as_str().unwrap().to_owned();
        let permission = admin
            .call(
                Method::POST,
                &format!("{server}/permission/resource"),
                Some(json!({"name": unique("org-perm"), "resources": [id],
                            "policies": [policy_id], "decisionStrategy": "UNANIMOUS"})),
            )
            .await;
        assert_eq!(
            permission.status,
            StatusCode::CREATED,
            "{}",
            permission.text
        );
        let permission_id = permission.body["id"].as_str().unwrap().to_owned();
        Self {
            pat,
            admin,
            server,
            name,
            id,
            policy_id,
            permission_id,
        }
    }

    /// A `keycloak.json` protecting `path` (`method` needs `view`) with this resource, pushing
    /// `org` from `template`.
    fn config(&self, path: &str, method: &str, template: &str) -> KeycloakConfig {
        let text = json!({
            "realm": "photos",
            "auth-server-url": BASE,
            "resource": RS_ID,
            "credentials": {"secret": RS_SECRET},
            "policy-enforcer": {
                "paths": [
                    {"name": self.name, "path": path,
                     "methods": [{"method": method, "scopes": ["view"]}],
                     "claim-information-point": {"claims": {"org": template}}}
                ]
            }
        })
        .to_string();
        KeycloakConfig::from_json(&text).unwrap()
    }

    /// A confidential client of the realm and bob's access token from it (Keycloak refuses
    /// claims in an exchange for tokens of public clients: "Public clients are not allowed to
    /// send claims"). Returns the client's id at the admin API and the token.
    async fn bob_of_a_confidential_client(&self) -> (String, String) {
        let app = unique("claims-app");
        let created = self
            .admin
            .call(
                Method::POST,
                "/clients",
                Some(
                    json!({"clientId": app, "secret": "app-secret", "publicClient": false,
                            "directAccessGrantsEnabled": true, "standardFlowEnabled": false}),
                ),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        let app_uuid = self.admin.client_uuid(&app).await;
        let token = answer(
            http()
                .post(token_url())
                .form(&[
                    ("grant_type", "password"),
                    ("client_id", app.as_str()),
                    ("client_secret", "app-secret"),
                    ("username", "bob"),
                    ("password", "bob"),
                ])
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(token.status, StatusCode::OK, "{}", token.text);
        (
            app_uuid,
            token.body["access_token"].as_str().unwrap().to_owned(),
        )
    }

    /// Deletes the client `app_uuid`, the permission, the policy and the resource.
    async fn remove(self, app_uuid: &str) {
        let server = &self.server;
        for path in [
            format!("/clients/{app_uuid}"),
            format!("{server}/permission/{}", self.permission_id),
            format!("{server}/policy/{}", self.policy_id),
        ] {
            let _ = self.admin.call(Method::DELETE, &path, None).await;
        }
        unregister(&self.pat, &self.id).await;
    }
}

/// A `claim-information-point` with the `claims` provider: the organisation read from a header
/// reaches Keycloak's policies (a regex policy on the context attribute `org`), through the
/// permission exchange (`claim_token`) and through the ticket (`claims`), and an RPT Keycloak
/// granted under one organisation does not serve a request pushing another.
#[tokio::test]
async fn pushed_claims_reach_keycloaks_policies() {
    require_keycloak().await;
    let acme = AcmeOnly::create().await;
    let config = acme.config("/claims/{id}", "GET", "{request.header['X-Org']}");
    let url = format!("{}/claims/1", protected(build(&config).await).await);
    let send = |org: Option<&'static str>, token: Option<String>| {
        let url = url.clone();
        async move {
            let mut req = http().get(url);
            if let Some(org) = org {
                req = req.header("x-org", org);
            }
            if let Some(token) = token {
                req = req.bearer_auth(token);
            }
            req.send().await.unwrap()
        }
    };

    // Permission exchange: the claims go as Keycloak's claim token.
    let (app_uuid, bob) = acme.bob_of_a_confidential_client().await;
    let ok = answer(send(Some("acme"), Some(bob.clone())).await).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    for org in [Some("beta"), None] {
        let refused = send(org, Some(bob.clone())).await;
        assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{org:?}");
    }

    // The UMA flow: the ticket carries the claims, and Keycloak writes them into the RPT.
    let ticket = ticket_of(&send(Some("acme"), None).await);
    let rpt = rpt("bob", &ticket).await;
    let permissions = &claims(&rpt)["authorization"]["permissions"];
    assert_eq!(
        permissions[0]["claims"],
        json!({"org": ["acme"]}),
        "{permissions}"
    );
    // Keycloak's introspection leaves the claims out: the layer reads them from the RPT.
    let introspected = introspect(&rpt).await;
    assert_eq!(introspected["active"], json!(true));
    assert!(
        introspected["permissions"][0].get("claims").is_none(),
        "{introspected}"
    );
    let ok = answer(send(Some("acme"), Some(rpt.clone())).await).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    // Under another organisation the RPT does not serve; the exchange Keycloak then answers
    // refuses.
    let other = send(Some("beta"), Some(rpt)).await;
    assert_eq!(other.status(), StatusCode::FORBIDDEN);
    acme.remove(&app_uuid).await;
}

/// The same policy, the organisation read from a field of the JSON body
/// (`{request.body['/org']}`) that a `ClaimBodyLayer` read: Keycloak grants the exchange only
/// for bodies pushing `acme`.
#[tokio::test]
async fn claims_from_a_json_body_reach_keycloaks_policies() {
    require_keycloak().await;
    let acme = AcmeOnly::create().await;
    let config = acme.config("/orders", "POST", "{request.body['/customer/org']}");
    let app = echo_app()
        .layer(build(&config).await)
        .layer(tower_uma::resources::ClaimBodyLayer::new(4096));
    let url = format!("http://{}/orders", serve(app).await);
    let (app_uuid, bob) = acme.bob_of_a_confidential_client().await;
    let post = |body: &'static str| {
        http()
            .post(&url)
            .header("content-type", "application/json")
            .bearer_auth(&bob)
            .body(body)
            .send()
    };
    let ok = answer(
        post(r#"{"customer": {"org": "acme"}, "n": 1}"#)
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    for body in [r#"{"customer": {"org": "beta"}}"#, r#"{"n": 1}"#] {
        let refused = post(body).await.unwrap();
        assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{body}");
    }
    acme.remove(&app_uuid).await;
}
