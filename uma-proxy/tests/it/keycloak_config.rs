//! `uma-proxy --keycloak-config keycloak.json`: the binary started from Keycloak's own
//! adapter configuration, against `uma-test-as` in the Keycloak dialect.

use http::{Method, StatusCode};
use serde_json::json;
use tower_uma::challenge::parse_uma_challenge;
use uma_test_as::{AuthServer, Dialect, ResourceDescription, RptSpec, TestAs};

use crate::common::{Proxy, RS_ID, RS_SECRET, send, start_upstream, write_config};

async fn start_keycloak_as() -> TestAs {
    AuthServer::builder()
        .dialect(Dialect::Keycloak)
        .client(RS_ID, RS_SECRET)
        .spawn()
        .await
        .expect("the test AS starts")
}

fn register(as_: &TestAs, name: &str, scopes: &[&str], uris: &[&str]) -> String {
    let id = as_.register_resource(
        "alice",
        ResourceDescription {
            name: Some(name.into()),
            resource_scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            ..ResourceDescription::default()
        },
    );
    assert!(as_.set_resource_uris(&id, uris));
    id
}

/// uma-proxy started from `keycloak_json` alone, in front of `upstream`; its address.
async fn start_from_keycloak_json(
    keycloak_json: &serde_json::Value,
    upstream: &str,
) -> (Proxy, std::net::SocketAddr) {
    let file = write_config(&keycloak_json.to_string());
    let mut proxy = Proxy::spawn_args(
        &[
            "--keycloak-config",
            file.to_str().expect("a UTF-8 path"),
            "--upstream",
            upstream,
            "--listen",
            "127.0.0.1:0",
        ],
        &[],
    );
    let addr = proxy.listening().await;
    (proxy, addr)
}

#[tokio::test]
async fn the_binary_starts_from_a_keycloak_json_alone() {
    let as_ = start_keycloak_as().await;
    let album = register(&as_, "album", &["view", "delete"], &["/albums/*"]);
    let index = register(&as_, "index", &["list"], &["/index/*"]);
    let upstream = start_upstream().await;
    let issuer = as_.issuer();
    let realm = issuer.rsplit('/').next().expect("a realm").to_owned();
    // As Keycloak's console writes it, plus the enforcer section.
    let keycloak_json = json!({
        "realm": realm,
        "auth-server-url": as_.base_url() + "/",
        "ssl-required": "external",
        "resource": RS_ID,
        "credentials": {"secret": RS_SECRET},
        "confidential-port": 0,
        "policy-enforcer": {
            "user-managed-access": {},
            "lazy-load-paths": true,
            "paths": [
                {"name": "album", "path": "/albums/{id}", "scopes": ["view"],
                 "methods": [{"method": "DELETE", "scopes": ["delete"]}]},
                {"path": "/health", "enforcement-mode": "DISABLED"}
            ]
        }
    });
    let (_proxy, addr) = start_from_keycloak_json(&keycloak_json, &upstream.url()).await;
    let url = |path: &str| format!("http://{addr}{path}");

    let health = send(Method::GET, &url("/health"), &[]).await;
    assert_eq!(health.status, StatusCode::OK);
    let denied = send(Method::GET, &url("/albums/1"), &[]).await;
    assert_eq!(denied.status, StatusCode::UNAUTHORIZED);
    let header = denied.headers[http::header::WWW_AUTHENTICATE]
        .to_str()
        .expect("ascii");
    let challenge = parse_uma_challenge(header).expect("a UMA challenge");
    assert_eq!(challenge.realm.as_deref(), Some(realm.as_str()));
    assert_eq!(challenge.as_uri, issuer);

    let view = as_.mint_rpt(RptSpec::active_for(&album, ["view"], 300));
    let bearer = format!("Bearer {view}");
    let ok = send(
        Method::GET,
        &url("/albums/1"),
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK);
    let delete = send(
        Method::DELETE,
        &url("/albums/1"),
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(delete.status, StatusCode::UNAUTHORIZED);
    // Lazy paths.
    let list = as_.mint_rpt(RptSpec::active_for(&index, ["list"], 300));
    let bearer = format!("Bearer {list}");
    let lazy = send(Method::GET, &url("/index/a"), &[("authorization", &bearer)]).await;
    assert_eq!(lazy.status, StatusCode::OK);
    let nothing = send(Method::GET, &url("/nothing"), &[("authorization", &bearer)]).await;
    assert_eq!(nothing.status, StatusCode::FORBIDDEN);
    assert_eq!(upstream.seen().len(), 3);
}

#[tokio::test]
async fn a_bad_keycloak_json_is_refused_with_its_key() {
    let file = write_config(
        &json!({"realm": "r", "auth-server-url": "https://kc.example", "resource": "c",
                "credentials": {"secret": "s"},
                "policy-enforcer": {"paths": [{"name": "A", "path": "/a",
                    "claim-information-point": {"http": {}}}]}})
        .to_string(),
    );
    let file = file.to_str().expect("a UTF-8 path");
    let mut proxy = Proxy::spawn_args(
        &[
            "--keycloak-config",
            file,
            "--upstream",
            "http://127.0.0.1:9",
        ],
        &[],
    );
    let status = proxy.exit_status().await;
    assert_eq!(status.code(), Some(2));
    proxy
        .stderr_contains(
            "`policy-enforcer.paths[0].claim-information-point.http`: is not supported",
        )
        .await;
}

#[tokio::test]
async fn on_deny_redirect_to_turns_denials_into_redirects() {
    let as_ = start_keycloak_as().await;
    let album = register(&as_, "album", &["view"], &["/albums/*"]);
    let upstream = start_upstream().await;
    let realm = as_.issuer().rsplit('/').next().expect("a realm").to_owned();
    let keycloak_json = json!({
        "realm": realm,
        "auth-server-url": as_.base_url() + "/",
        "resource": RS_ID,
        "credentials": {"secret": RS_SECRET},
        "policy-enforcer": {
            "user-managed-access": {},
            "on-deny-redirect-to": "/access-denied",
            "paths": [{"name": "album", "path": "/albums/{id}", "scopes": ["view"]}]
        }
    });
    let (_proxy, addr) = start_from_keycloak_json(&keycloak_json, &upstream.url()).await;
    let url = |path: &str| format!("http://{addr}{path}");
    let bearer = format!(
        "Bearer {}",
        as_.mint_rpt(RptSpec::active_for(&album, ["view"], 300))
    );
    // No path matches: a denial, redirected as Keycloak's enforcer does.
    let unmapped = send(Method::GET, &url("/nothing"), &[("authorization", &bearer)]).await;
    assert_eq!(unmapped.status, StatusCode::FOUND);
    assert_eq!(unmapped.headers[http::header::LOCATION], "/access-denied");
    // A UMA client still gets its challenge, and a granted request passes.
    let challenged = send(Method::GET, &url("/albums/1"), &[]).await;
    assert_eq!(challenged.status, StatusCode::UNAUTHORIZED);
    assert!(challenged.headers.get(http::header::LOCATION).is_none());
    let ok = send(
        Method::GET,
        &url("/albums/1"),
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(upstream.seen().len(), 1);
}
