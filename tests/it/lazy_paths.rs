//! Keycloak's enforcer configuration and lazy paths, end to end against `uma-test-as` in the
//! Keycloak dialect over loopback: paths no route matches are resolved by the resources'
//! `uris`, through the path cache; configured paths always keep their rule.

use http::StatusCode;
use serde_json::json;
use tower_uma::challenge::parse_uma_challenge;
use tower_uma::keycloak::{KeycloakConfig, LazyPaths};
use tower_uma::resources::Unmapped;
use tower_uma::{ResourceMap, Route, UmaLayer};
use uma_test_as::{Endpoint, ResourceDescription, TestAs};

use crate::common::{
    Flavor, expect_challenge, expect_unreachable, get_plain, get_with, http, layer_builder,
    protected, rpt_for, start_as_in,
};

/// Registers `name` with `scopes` and Keycloak `uris`, owned by the resource server as the
/// resources of Keycloak's console are; returns its id.
fn register(as_: &TestAs, name: &str, scopes: &[&str], uris: &[&str]) -> String {
    register_for(as_, crate::common::RS_ID, name, scopes, uris)
}

/// [`register`] with another owner.
fn register_for(as_: &TestAs, owner: &str, name: &str, scopes: &[&str], uris: &[&str]) -> String {
    let id = as_.register_resource(
        owner,
        ResourceDescription {
            name: Some(name.into()),
            resource_scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            ..ResourceDescription::default()
        },
    );
    assert!(as_.set_resource_uris(&id, uris));
    id
}

/// The lazy lookups the layer made: the `uri` of each resource-set query by matching URI.
fn lookups(as_: &TestAs) -> Vec<String> {
    as_.requests(Endpoint::ResourceRegistration)
        .iter()
        .filter(|r| r.uri.contains("matchingUri=true"))
        .map(|r| {
            let query = r.uri.split_once('?').map(|(_, q)| q).unwrap_or_default();
            let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).expect("a query");
            pairs
                .into_iter()
                .find(|(k, _)| k == "uri")
                .map(|(_, v)| v)
                .unwrap_or_default()
        })
        .collect()
}

async fn lazy_layer(as_: &TestAs, map: ResourceMap, lazy: LazyPaths) -> UmaLayer {
    layer_builder(as_, Flavor::Keycloak)
        .await
        .resources(map)
        .lazy_paths(lazy)
        .build()
        .await
        .expect("the layer builds")
}

/// An AS with the resource `album` (scope `view`, uris `/albums/*`), a layer with lazy paths
/// and no routes in front of the counting app, and an RPT for `album`'s `view`.
struct Album {
    as_: TestAs,
    url: String,
    calls: crate::common::Calls,
    rpt: String,
}

impl Album {
    async fn start() -> Self {
        let as_ = start_as_in(Flavor::Keycloak).await;
        let album = register(&as_, "album", &["view"], &["/albums/*"]);
        let layer = lazy_layer(&as_, ResourceMap::new(), LazyPaths::new()).await;
        let (url, calls) = protected(layer).await;
        let rpt = rpt_for(&as_, &album, &["view"]);
        Self {
            as_,
            url,
            calls,
            rpt,
        }
    }
}

#[tokio::test]
async fn unmapped_paths_are_resolved_by_the_resources_uris() {
    let as_ = start_as_in(Flavor::Keycloak).await;
    let album = register(&as_, "album", &["view", "delete"], &["/albums/*"]);
    let layer = lazy_layer(&as_, ResourceMap::new(), LazyPaths::new()).await;
    let (url, calls) = protected(layer).await;
    let http = http();

    // No token: a ticket for the resource found by its uris, for its scopes.
    let resp = get_plain(&http, &url, "/albums/1").await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    expect_challenge(&resp, &as_);
    // An RPT for one of its scopes is enough (Keycloak: any of the resource's scopes).
    let rpt = rpt_for(&as_, &album, &["view"]);
    let resp = get_with(&http, &url, "/albums/2", &rpt).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(calls.get(), 1);
    // An RPT for another resource is not.
    let other = register(&as_, "other", &["view"], &["/other"]);
    let resp = get_with(&http, &url, "/albums/3", &rpt_for(&as_, &other, &["view"])).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    // Nothing matches: unmapped, denied.
    let resp = get_with(&http, &url, "/nothing", &rpt).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(calls.get(), 1);
    assert_eq!(
        lookups(&as_),
        ["/albums/1", "/albums/2", "/albums/3", "/nothing"]
    );
}

#[tokio::test]
async fn answers_are_cached_no_resource_included() {
    let as_ = start_as_in(Flavor::Keycloak).await;
    let album = register(&as_, "album", &["view"], &["/albums/*"]);
    let layer = lazy_layer(&as_, ResourceMap::new(), LazyPaths::new()).await;
    let (url, _) = protected(layer).await;
    let http = http();
    let rpt = rpt_for(&as_, &album, &["view"]);
    for _ in 0..3 {
        let resp = get_with(&http, &url, "/albums/1", &rpt).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let resp = get_with(&http, &url, "/nothing", &rpt).await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    }
    assert_eq!(lookups(&as_), ["/albums/1", "/nothing"]);
    // Without a cache, every request asks.
    let layer = lazy_layer(&as_, ResourceMap::new(), LazyPaths::new().max_entries(0)).await;
    let (url, _) = protected(layer).await;
    as_.clear_requests();
    for _ in 0..2 {
        let resp = get_with(&http, &url, "/albums/1", &rpt).await;
        assert_eq!(resp.status(), StatusCode::OK);
    }
    assert_eq!(lookups(&as_), ["/albums/1", "/albums/1"]);
}

#[tokio::test]
async fn configured_paths_keep_their_rule_whatever_the_uris_say() {
    let as_ = start_as_in(Flavor::Keycloak).await;
    let album = register(
        &as_,
        "album",
        &["view", "admin"],
        &["/albums/*", "/manage/*"],
    );
    register(&as_, "generic", &["view"], &["/albums/special"]);
    // The configuration binds `album` to /albums/{id} with a scope of its own for GET, and
    // makes /albums/special public.
    let map = ResourceMap::new()
        .route(
            Route::new("/albums/{id}")
                .resource_name("album")
                .scopes(http::Method::GET, ["admin"]),
        )
        .route(Route::public("/albums/special"));
    let lazy = LazyPaths::new().exclude_names(["album"]);
    let layer = lazy_layer(&as_, map, lazy).await;
    let (url, _) = protected(layer).await;
    let http = http();
    let view = rpt_for(&as_, &album, &["view"]);
    for _ in 0..2 {
        // The configured rule (`admin`), not the resource's generic scopes.
        let resp = get_with(&http, &url, "/albums/1", &view).await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        // Public as configured, although `generic` lists the path in its uris.
        let resp = get_plain(&http, &url, "/albums/special").await;
        assert_eq!(resp.status(), StatusCode::OK);
        // Found by its uris, but `album` is bound to configured paths: no resource
        // (keycloak/keycloak-client#190: its generic scopes must not open another path).
        let resp = get_with(&http, &url, "/manage/users", &view).await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    }
    // Only the unconfigured path was looked up, once.
    assert_eq!(lookups(&as_), ["/manage/users"]);
}

#[tokio::test]
async fn lazy_paths_normalise_as_configured_paths_do() {
    let Album {
        as_,
        url,
        calls,
        rpt,
    } = Album::start().await;
    let http = http();
    // (reqwest resolves `%2e%2e` itself, so dot segments cannot be sent from here.)
    for refused in [
        "/albums/a%2Fb",
        "/albums/x;y",
        "/albums/a%5Cb",
        "/albums/%252e",
    ] {
        let resp = get_with(&http, &url, refused, &rpt).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{refused}");
    }
    // One canonical spelling is asked about, and cached for all of them.
    for spelling in ["/albums//%31/", "/albums/1", "/%61lbums/1"] {
        let resp = get_with(&http, &url, spelling, &rpt).await;
        assert_eq!(resp.status(), StatusCode::OK, "{spelling}");
    }
    assert_eq!(calls.get(), 3);
    assert_eq!(lookups(&as_), ["/albums/1"]);
}

#[tokio::test]
async fn a_failed_lookup_is_refused_and_not_cached() {
    let Album {
        as_,
        url,
        calls,
        rpt,
    } = Album::start().await;
    let http = http();
    as_.fail_next(Endpoint::ResourceRegistration, 1, 500);
    let resp = get_with(&http, &url, "/albums/1", &rpt).await;
    expect_unreachable(&resp);
    assert_eq!(calls.get(), 0);
    let resp = get_with(&http, &url, "/albums/1", &rpt).await;
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_keycloak_json_configures_the_layer() {
    let as_ = start_as_in(Flavor::Keycloak).await;
    let album = register(&as_, "album", &["view", "delete"], &["/albums/*"]);
    let issuer = as_.issuer();
    let realm = issuer.rsplit('/').next().expect("a realm").to_owned();
    let text = json!({
        "realm": realm,
        "auth-server-url": as_.base_url() + "/",
        "ssl-required": "external",
        "resource": crate::common::RS_ID,
        "credentials": {"secret": crate::common::RS_SECRET},
        "confidential-port": 0,
        "policy-enforcer": {
            "user-managed-access": {},
            "lazy-load-paths": true,
            "paths": [
                {"name": "album", "path": "/albums/{id}",
                 "methods": [{"method": "DELETE", "scopes": ["delete"]}], "scopes": ["view"]},
                {"path": "/health", "enforcement-mode": "DISABLED"}
            ]
        }
    })
    .to_string();
    let config = KeycloakConfig::from_json(&text).expect("a valid configuration");
    assert_eq!(config.issuer(), issuer);
    let layer = config
        .discover()
        .insecure_allow_http()
        .build()
        .await
        .expect("the layer builds");
    let (url, calls) = protected(layer).await;
    let http = http();
    let view = rpt_for(&as_, &album, &["view"]);
    assert_eq!(
        get_plain(&http, &url, "/health").await.status(),
        StatusCode::OK
    );
    assert_eq!(
        get_with(&http, &url, "/albums/1", &view).await.status(),
        StatusCode::OK
    );
    let delete = http
        .delete(format!("{url}/albums/1"))
        .bearer_auth(&view)
        .send()
        .await
        .expect("an answer");
    assert_eq!(delete.status(), StatusCode::UNAUTHORIZED);
    // The challenge names the configured realm and the discovered issuer.
    let header = delete.headers()[http::header::WWW_AUTHENTICATE]
        .to_str()
        .expect("ascii");
    let challenge = parse_uma_challenge(header).expect("a UMA challenge");
    assert_eq!(challenge.realm.as_deref(), Some(realm.as_str()));
    assert_eq!(challenge.as_uri, issuer);
    // Lazy paths: another resource by its uris, with its own scopes; `album`, bound to a
    // configured path, is not found that way (its uris also match `/albums`).
    let index = register(&as_, "index", &["list"], &["/index/*"]);
    let list = rpt_for(&as_, &index, &["list"]);
    assert_eq!(
        get_with(&http, &url, "/index/a", &list).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        get_with(&http, &url, "/albums", &view).await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(calls.get(), 3);
}

/// A `keycloak.json` for `as_`'s realm with this `policy-enforcer` section.
fn keycloak_json(as_: &TestAs, enforcer: &serde_json::Value) -> String {
    let issuer = as_.issuer();
    let realm = issuer.rsplit('/').next().expect("a realm");
    json!({
        "realm": realm,
        "auth-server-url": as_.base_url(),
        "resource": crate::common::RS_ID,
        "credentials": {"secret": crate::common::RS_SECRET},
        "policy-enforcer": enforcer,
    })
    .to_string()
}

/// The layer of a `keycloak.json` for `as_` with this `policy-enforcer` section.
async fn build_from(
    as_: &TestAs,
    enforcer: &serde_json::Value,
) -> Result<UmaLayer, tower_uma::Error> {
    let config = KeycloakConfig::from_json(&keycloak_json(as_, enforcer)).expect("valid");
    config.discover().insecure_allow_http().build().await
}

#[tokio::test]
async fn a_path_without_name_is_the_resource_its_uri_names() {
    let as_ = start_as_in(Flavor::Keycloak).await;
    // `docs` holds the path as written; `wide` only matches it; `pattern` matches the other.
    let docs = register(&as_, "docs", &["read", "write"], &["/docs/{id}"]);
    register(&as_, "wide", &["read"], &["/docs/*"]);
    let pattern = register(&as_, "pattern", &["read"], &["/files/*"]);
    let enforcer = json!({
        "user-managed-access": {},
        "paths": [
            {"path": "/docs/{id}", "methods": [{"method": "GET", "scopes": ["read"]}]},
            {"path": "/files/{name}", "scopes": ["read"]},
            {"path": "/nowhere/{id}", "scopes": ["read"]}
        ]
    });
    let layer = build_from(&as_, &enforcer).await.expect("the layer builds");
    let (url, calls) = protected(layer).await;
    let http = http();
    let read_docs = rpt_for(&as_, &docs, &["read"]);
    assert_eq!(
        get_with(&http, &url, "/docs/1", &read_docs).await.status(),
        StatusCode::OK
    );
    let read_files = rpt_for(&as_, &pattern, &["read"]);
    assert_eq!(
        get_with(&http, &url, "/files/a", &read_files)
            .await
            .status(),
        StatusCode::OK
    );
    // The exact holder wins over the one that only matches.
    assert_eq!(
        get_with(&http, &url, "/docs/1", &read_files).await.status(),
        StatusCode::UNAUTHORIZED
    );
    // No resource for the path: denied.
    assert_eq!(
        get_with(&http, &url, "/nowhere/1", &read_docs)
            .await
            .status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(calls.get(), 2);

    // Two resources holding the same path: the layer does not start (nor does Keycloak's).
    register(&as_, "docs-again", &["read"], &["/docs/{id}"]);
    let e = build_from(&as_, &enforcer).await.expect_err("ambiguous");
    assert!(e.to_string().contains("2 resources hold it"), "{e}");
}

/// An enforced path without `name` or `id` whose resource the AS does not have is denied
/// even when unmapped paths are let through (Keycloak's enforcer denies it), and lazy paths
/// do not decide it.
#[tokio::test]
async fn a_path_without_a_resource_is_denied_whatever_unmapped_says() {
    let as_ = start_as_in(Flavor::Keycloak).await;
    let docs = register(&as_, "docs", &["read"], &["/docs/*"]);
    let enforcer = json!({
        "user-managed-access": {},
        "lazy-load-paths": true,
        "paths": [
            {"name": "docs", "path": "/docs/*", "scopes": ["read"]},
            {"path": "/admin", "scopes": ["admin"]}
        ]
    });
    let config = KeycloakConfig::from_json(&keycloak_json(&as_, &enforcer)).expect("valid");
    let layer = config
        .discover()
        .insecure_allow_http()
        .unmapped(Unmapped::Allow)
        .build()
        .await
        .expect("the layer builds");
    // Created after the start: the path's lookup at start found nothing.
    register(&as_, "late-admin", &["admin"], &["/admin"]);
    let (url, calls) = protected(layer).await;
    let http = http();
    assert_eq!(
        get_plain(&http, &url, "/admin").await.status(),
        StatusCode::FORBIDDEN
    );
    let read = rpt_for(&as_, &docs, &["read"]);
    assert_eq!(
        get_with(&http, &url, "/admin", &read).await.status(),
        StatusCode::FORBIDDEN
    );
    // Paths no entry matches still follow `unmapped`.
    assert_eq!(
        get_plain(&http, &url, "/elsewhere").await.status(),
        StatusCode::OK
    );
    assert_eq!(calls.get(), 1);
}

/// `paths[].name` is the resource server's own resource of that name, as Keycloak's enforcer
/// finds it (`owner` = the client): a user's resource of the same name does not take the
/// binding over.
#[tokio::test]
async fn a_name_binds_only_to_the_resource_servers_own_resource() {
    let as_ = start_as_in(Flavor::Keycloak).await;
    let enforcer = json!({
        "user-managed-access": {},
        "paths": [{"name": "Admin", "path": "/admin/*", "scopes": ["admin"]}]
    });
    let layer = build_from(&as_, &enforcer).await.expect("the layer builds");
    let (url, calls) = protected(layer).await;
    let http = http();
    // alice makes a resource called `Admin` and has every permission for it.
    let hers = register_for(&as_, "alice", "Admin", &["admin"], &[]);
    let rpt = rpt_for(&as_, &hers, &["admin"]);
    assert_eq!(
        get_with(&http, &url, "/admin/users", &rpt).await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(calls.get(), 0);
    // The resource server's own `Admin` is the one.
    let ours = register(&as_, "Admin", &["admin"], &[]);
    let layer = build_from(&as_, &enforcer).await.expect("the layer builds");
    let (url, calls) = protected(layer).await;
    assert_eq!(
        get_with(&http, &url, "/admin/users", &rpt).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let granted = rpt_for(&as_, &ours, &["admin"]);
    assert_eq!(
        get_with(&http, &url, "/admin/users", &granted)
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(calls.get(), 1);
    // Two of its own by that name (Keycloak's console forbids it): neither is taken.
    let twin = register(&as_, "Admin", &["admin"], &[]);
    let layer = build_from(&as_, &enforcer).await.expect("the layer builds");
    let (url, calls) = protected(layer).await;
    for token in [&granted, &rpt_for(&as_, &twin, &["admin"])] {
        let resp = get_with(&http, &url, "/admin/users", token).await;
        expect_unreachable(&resp);
    }
    assert_eq!(calls.get(), 0);
}
