use std::time::Duration;

use http::{HeaderMap, Method};
use serde_json::{Value, json};

use super::*;
use crate::resources::{PathError, Resolution, ResourceRef, ScopeMode};

/// A `keycloak.json` as Keycloak's console downloads it, with `enforcer` as its section.
fn keycloak_json(enforcer: &Value) -> String {
    json!({
        "realm": "photos",
        "auth-server-url": "http://127.0.0.1:8280/",
        "ssl-required": "external",
        "resource": "photo-api",
        "verify-token-audience": true,
        "credentials": {"secret": "photo-api-secret"},
        "confidential-port": 0,
        "policy-enforcer": enforcer,
    })
    .to_string()
}

fn config(enforcer: &Value) -> KeycloakConfig {
    KeycloakConfig::from_json(&keycloak_json(enforcer)).expect("a valid configuration")
}

fn error(enforcer: &Value) -> KeycloakConfigError {
    KeycloakConfig::from_json(&keycloak_json(enforcer)).expect_err("refused")
}

fn resolve(map: &ResourceMap, method: &Method, path: &str) -> Result<Resolution, PathError> {
    map.resolve_request(method, path, &HeaderMap::new())
}

fn protected(name: &str, scopes: &[&str], mode: ScopeMode) -> Resolution {
    Resolution::Protected {
        resource: ResourceRef::Name(name.to_owned()),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        scope_mode: mode,
        enforcement: None,
    }
}

#[test]
fn the_consoles_download_is_read_as_it_is() {
    let c = config(&json!({}));
    assert_eq!(c.issuer(), "http://127.0.0.1:8280/realms/photos");
    assert_eq!(c.realm(), "photos");
    assert_eq!(c.client_id(), "photo-api");
    assert_eq!(c.client_secret().secret(), "photo-api-secret");
    assert!(!c.user_managed_access());
    // Without user-managed-access, Keycloak exchanges plain access tokens.
    assert_eq!(c.permission_exchange(), Some(PermissionExchange::new()));
    // No paths: Keycloak loads every resource; here lazy paths find them.
    assert_eq!(c.lazy_paths(), Some(LazyPaths::new()));
    // The secret stays out of Debug.
    assert!(!format!("{c:?}").contains("photo-api-secret"));
}

#[test]
fn a_standalone_policy_enforcer_json_is_read_too() {
    let text = json!({
        "realm": "photos",
        "auth-server-url": "https://sso.example.com",
        "resource": "photo-api",
        "credentials": {"secret": "s"},
        "enforcement-mode": "ENFORCING",
        "user-managed-access": {},
        "paths": [{"name": "Album", "path": "/albums/{id}", "scopes": ["view"]}],
    })
    .to_string();
    let c = KeycloakConfig::from_json(&text).expect("valid");
    assert!(c.user_managed_access());
    assert_eq!(c.permission_exchange(), None);
    assert_eq!(c.lazy_paths(), None);
    assert_eq!(
        resolve(&c.resource_map(), &Method::GET, "/albums/7"),
        Ok(protected("Album", &["view"], ScopeMode::Any))
    );
}

#[test]
fn methods_scopes_and_modes_decide_as_keycloaks_enforcer_does() {
    let c = config(&json!({
        "paths": [
            {"name": "Album", "path": "/albums/{id}", "scopes": ["view", "edit"],
             "methods": [
                {"method": "GET", "scopes": ["view"]},
                {"method": "POST", "scopes": ["edit", "admin"], "scopes-enforcement-mode": "ANY"},
                {"method": "PUT", "scopes": ["edit", "admin"], "scopes-enforcement-mode": "ALL"}]},
            {"name": "Any", "path": "/any/*"},
            {"path": "/health", "enforcement-mode": "DISABLED"},
        ]
    }));
    let map = c.resource_map();
    assert_eq!(
        resolve(&map, &Method::GET, "/albums/1"),
        Ok(protected("Album", &["view"], ScopeMode::All))
    );
    assert_eq!(
        resolve(&map, &Method::POST, "/albums/1"),
        Ok(protected("Album", &["edit", "admin"], ScopeMode::Any))
    );
    assert_eq!(
        resolve(&map, &Method::PUT, "/albums/1"),
        Ok(protected("Album", &["edit", "admin"], ScopeMode::All))
    );
    // Without an entry: the path's scopes, any one of them; never 405.
    assert_eq!(
        resolve(&map, &Method::DELETE, "/albums/1"),
        Ok(protected("Album", &["view", "edit"], ScopeMode::Any))
    );
    // No scopes at all: any permission for the resource.
    assert_eq!(
        resolve(&map, &Method::PATCH, "/any/x/y"),
        Ok(protected("Any", &[], ScopeMode::Any))
    );
    for method in [Method::GET, Method::POST, Method::DELETE] {
        assert_eq!(resolve(&map, &method, "/health"), Ok(Resolution::Public));
    }
    assert_eq!(
        resolve(&map, &Method::GET, "/other"),
        Ok(Resolution::Unmapped)
    );
    // The same normalisation as every map.
    assert_eq!(
        resolve(&map, &Method::GET, "/albums/%2e%2e/admin"),
        Err(PathError::DotSegment)
    );
}

#[test]
fn a_path_without_name_takes_the_resource_found_by_its_uri() {
    let c = config(&json!({
        "paths": [{"path": "/docs/{id}", "methods": [{"method": "GET", "scopes": ["read"]}]}]
    }));
    let map = c.resource_map();
    // Not looked up yet (or the AS has none): nothing can grant it, whatever `Unmapped` says.
    assert_eq!(
        resolve(&map, &Method::GET, "/docs/1"),
        Ok(Resolution::Forbidden)
    );
    assert_eq!(
        enforcer_paths_by_uri(&c.parsed.enforcer.paths, &c.cells)[0].0,
        "/docs/{id}"
    );
    c.cells[0].set("r-9".to_owned()).expect("unset");
    // Every map of this configuration sees the id found at build.
    let by_id = Resolution::Protected {
        resource: ResourceRef::Id("r-9".to_owned()),
        scopes: vec!["read".to_owned()],
        scope_mode: ScopeMode::All,
        enforcement: None,
    };
    assert_eq!(resolve(&map, &Method::GET, "/docs/1"), Ok(by_id.clone()));
    assert_eq!(
        resolve(&c.resource_map(), &Method::GET, "/docs/1"),
        Ok(by_id)
    );
}

#[test]
fn http_method_as_scope_names_the_scope() {
    let c = config(&json!({
        "http-method-as-scope": true,
        "paths": [{"name": "R", "path": "/r",
                   "methods": [{"method": "GET", "scopes": ["read"]}]}]
    }));
    let map = c.resource_map();
    assert_eq!(
        resolve(&map, &Method::DELETE, "/r"),
        Ok(protected("R", &["DELETE"], ScopeMode::Any))
    );
    assert_eq!(
        resolve(&map, &Method::GET, "/r"),
        Ok(protected("R", &["read"], ScopeMode::All))
    );
}

#[test]
fn entries_with_the_same_path_are_merged() {
    let c = config(&json!({
        "paths": [
            {"name": "A", "path": "/a", "methods": [{"method": "GET", "scopes": ["r"]}]},
            {"name": "B", "path": "/a", "methods": [{"method": "POST", "scopes": ["w"]}]},
        ]
    }));
    let map = c.resource_map();
    assert_eq!(
        resolve(&map, &Method::POST, "/a"),
        Ok(protected("A", &["w"], ScopeMode::All))
    );
}

#[test]
fn path_cache_and_lazy_paths() {
    let c = config(&json!({
        "lazy-load-paths": true,
        "http-method-as-scope": true,
        "path-cache": {"max-entries": 5, "lifespan": 2000},
        "paths": [{"name": "A", "path": "/a"}, {"path": "/p", "enforcement-mode": "DISABLED"}]
    }));
    let expected = LazyPaths::new()
        .max_entries(5)
        .lifespan(Some(Duration::from_secs(2)))
        .method_as_scope(true)
        .exclude_names(["A"]);
    assert_eq!(c.lazy_paths(), Some(expected));
    // A path-cache section alone turns lazy paths on, as in Keycloak; -1 never expires.
    let c =
        config(&json!({"path-cache": {"lifespan": -1}, "paths": [{"name": "A", "path": "/a"}]}));
    assert_eq!(
        c.lazy_paths(),
        Some(LazyPaths::new().lifespan(None).exclude_names(["A"]))
    );
    let c = config(&json!({"paths": [{"name": "A", "path": "/a"}]}));
    assert_eq!(c.lazy_paths(), None);
}

#[test]
fn unsupported_keys_are_errors_naming_their_json_path() {
    let cases = [
        (
            json!({"paths": [{"name": "A", "path": "/a"}, {"name": "B", "path": "/b"},
                   {"name": "C", "path": "/c", "claim-information-point": {"http": {}}}]}),
            "policy-enforcer.paths[2].claim-information-point.http",
        ),
        (
            json!({"claim-information-point": {"my-provider": {}}}),
            "policy-enforcer.claim-information-point.my-provider",
        ),
        (
            json!({"paths": [{"name": "A", "path": "/a",
                   "claim-information-point": {"claims": {"c": "{request.body}"}}}]}),
            "policy-enforcer.paths[0].claim-information-point.claims.c",
        ),
        (
            json!({"lazy-load-paths": true, "paths": [{"name": "A", "path": "/a"}],
                   "claim-information-point": {"claims": {"c": "x"}}}),
            "policy-enforcer.claim-information-point",
        ),
        (
            json!({"enforcement-mode": "PERMISSIVE"}),
            "policy-enforcer.enforcement-mode",
        ),
        (
            json!({"enforcement-mode": "DISABLED"}),
            "policy-enforcer.enforcement-mode",
        ),
        (
            json!({"paths": [{"name": "A", "path": "/a", "enforcement-mode": "PERMISSIVE"}]}),
            "policy-enforcer.paths[0].enforcement-mode",
        ),
        (
            json!({"paths": [{"name": "A", "path": "/a",
                   "methods": [{"method": "GET", "scopes-enforcement-mode": "DISABLED"}]}]}),
            "policy-enforcer.paths[0].methods[0].scopes-enforcement-mode",
        ),
    ];
    for (enforcer, key) in cases {
        let e = error(&enforcer);
        assert_eq!(e.key(), key, "{e}");
        assert!(e.message().contains("not supported"), "{e}");
        assert!(e.to_string().starts_with(&format!("`{key}`: ")), "{e}");
    }
}

#[test]
fn on_deny_redirect_to_gives_a_redirect_layer() {
    assert!(config(&json!({})).on_deny_redirect_to().is_none());
    let layer = config(&json!({"on-deny-redirect-to": "/access-denied"}))
        .on_deny_redirect_to()
        .expect("a redirect");
    assert!(format!("{layer:?}").contains("/access-denied"));
    for bad in [json!(""), json!("/a\nb"), json!(7)] {
        let e = error(&json!({"on-deny-redirect-to": bad}));
        assert_eq!(e.key(), "policy-enforcer.on-deny-redirect-to", "{e}");
    }
}

#[test]
fn claim_information_points_push_claims_per_path() {
    let c = config(&json!({
        "claim-information-point": {"claims": {"org": "{request.header['X-Org']}", "app": "photos"}},
        "paths": [
            {"name": "A", "path": "/albums/{album id}", "claim-information-point": {"claims": {
                "album": "{request.path['album id']}", "app": ["photos", "{request.method}"]}}},
            {"path": "/health", "enforcement-mode": "DISABLED"}
        ]
    }));
    let map = crate::resources::Resolver::Map(c.resource_map());
    let mut headers = http::HeaderMap::new();
    headers.insert("x-org", http::HeaderValue::from_static("acme"));
    let Ok(crate::resources::Resolved::Protected(need)) =
        map.resolve(&http::Method::PUT, "/albums/7", &headers)
    else {
        panic!("a protected route");
    };
    let pushing = need.claims.expect("claims pushed");
    let uri: http::Uri = "/albums/7".parse().expect("a uri");
    let values = pushing.claims.resolve(&crate::resources::ClaimRequest {
        method: &http::Method::PUT,
        uri: &uri,
        path: "/albums/7",
        headers: &headers,
        params: &pushing.params,
        body: None,
    });
    let v = |s: &[&str]| s.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    assert_eq!(values["org"], v(&["acme"]));
    // The path's own claim replaces the section's of the same name.
    assert_eq!(values["app"], v(&["photos", "PUT"]));
    assert_eq!(values["album"], v(&["7"]));
    // A parameter the path does not have.
    let e = error(&json!({"paths": [{"name": "A", "path": "/a/{id}",
        "claim-information-point": {"claims": {"c": "{request.path['other']}"}}}]}));
    assert_eq!(e.key(), "policy-enforcer.paths[0].path", "{e}");
    assert!(e.message().contains("no such parameter"), "{e}");
}

#[test]
fn typos_and_wrong_values_are_errors_naming_their_json_path() {
    let cases = [
        (
            json!({"lazy-load-path": true}),
            "policy-enforcer.lazy-load-path",
        ),
        (
            json!({"paths": [{"name": "A", "path": "/a", "method": []}]}),
            "policy-enforcer.paths[0].method",
        ),
        (
            json!({"path-cache": {"max-entry": 1}}),
            "policy-enforcer.path-cache.max-entry",
        ),
        (
            json!({"enforcement-mode": "enforcing"}),
            "policy-enforcer.enforcement-mode",
        ),
        (
            json!({"lazy-load-paths": "yes"}),
            "policy-enforcer.lazy-load-paths",
        ),
        (
            json!({"paths": [{"name": "A", "path": "/a", "methods": [{"method": "get"}]}]}),
            "policy-enforcer.paths[0].methods[0].method",
        ),
        (
            json!({"paths": [{"name": "A", "path": "/a", "methods": [{"method": "DELTE"}]}]}),
            "policy-enforcer.paths[0].methods[0].method",
        ),
        (
            json!({"paths": [{"name": "A", "path": "/a", "scopes": ["ok", ""]}]}),
            "policy-enforcer.paths[0].scopes[1]",
        ),
        (
            json!({"paths": [{"name": "A"}]}),
            "policy-enforcer.paths[0].path",
        ),
        (
            json!({"paths": [{"name": "A", "path": "/static/*.html"}]}),
            "policy-enforcer.paths[0].path",
        ),
        (
            json!({"paths": [{"name": "A", "path": "/a/{id}"}, {"name": "B", "path": "/a/{x}"}]}),
            "policy-enforcer.paths[1].path",
        ),
        (json!({"realm": "other"}), "policy-enforcer.realm"),
        (
            json!({"user-managed-access": {"x": 1}}),
            "policy-enforcer.user-managed-access.x",
        ),
    ];
    for (enforcer, key) in cases {
        let e = error(&enforcer);
        assert_eq!(e.key(), key, "{e}");
    }
}

#[test]
fn connection_keys_are_checked() {
    let base = json!({"realm": "r", "auth-server-url": "https://kc", "resource": "c",
                      "credentials": {"secret": "s"}});
    let with = |key: &str, value: Value| {
        let mut v = base.clone();
        v[key] = value;
        KeycloakConfig::from_json(&v.to_string())
    };
    let without = |key: &str| {
        let mut v = base.clone();
        v.as_object_mut().expect("an object").remove(key);
        KeycloakConfig::from_json(&v.to_string())
    };
    assert_eq!(without("realm").expect_err("missing").key(), "realm");
    assert_eq!(
        without("credentials").expect_err("missing").key(),
        "credentials.secret"
    );
    assert_eq!(
        with("credentials", json!({"jwt": {}}))
            .expect_err("jwt")
            .key(),
        "credentials.jwt"
    );
    assert_eq!(
        with("public-client", json!(true))
            .expect_err("public")
            .key(),
        "public-client"
    );
    assert_eq!(
        with("truststore", json!("x.jks")).expect_err("trust").key(),
        "truststore"
    );
    assert_eq!(with("colour", json!(1)).expect_err("typo").key(), "colour");
    // Credentials in the AS's URL: refused, and not repeated.
    for url in ["https://rs:pw-s3cret@kc", "https://rs:pw#s3cret@kc/auth"] {
        let e = with("auth-server-url", json!(url)).expect_err("user info");
        assert_eq!(e.key(), "auth-server-url", "{e}");
        assert!(!e.to_string().contains("s3cret"), "{e}");
    }
    assert!(with("public-client", json!(false)).is_ok());
    assert!(with("enable-cors", json!(true)).is_ok());
    assert!(with("connection-timeout-millis", json!(500)).is_ok());
    let e = KeycloakConfig::from_json("{").expect_err("not JSON");
    assert_eq!(e.key(), "");
    assert!(e.to_string().starts_with("not valid JSON"), "{e}");
}

#[test]
fn files_are_named_in_errors() {
    let e = KeycloakConfig::from_path("/nonexistent/keycloak.json".as_ref()).expect_err("no file");
    assert!(
        e.to_string()
            .starts_with("/nonexistent/keycloak.json: cannot read the file"),
        "{e}"
    );
}

#[test]
fn paths_keycloak_never_matches_are_refused() {
    // Keycloak compares request paths without a trailing or doubled `/` with the path as
    // written: these entries never match there, and must not open `/x/public` here.
    for (path, says) in [
        ("/x/public/", "ends with `/`"),
        ("/x//public", "empty segment"),
    ] {
        let e = error(&json!({"paths": [
            {"name": "X", "path": "/x/*"},
            {"path": path, "enforcement-mode": "DISABLED"},
        ]}));
        assert_eq!(e.key(), "policy-enforcer.paths[1].path", "{path}");
        assert!(e.message().contains(says), "{path}: {e}");
        assert!(e.message().contains("\"/x/public\""), "{path}: {e}");
    }
    // The root is a path of its own.
    let c = config(&json!({"paths": [{"name": "Root", "path": "/"}]}));
    assert_eq!(
        resolve(&c.resource_map(), &Method::GET, "/"),
        Ok(protected("Root", &[], ScopeMode::Any))
    );
}

#[test]
fn public_patterns_are_refused_where_keycloak_loads_every_resource() {
    // No enforced path and no `lazy-load-paths`: Keycloak loads every resource at start-up,
    // and one with `uris: ["/albums/*"]` beats `/*` for `/albums/1`. Here `/*` would win.
    for (paths, at) in [
        (json!([{"path": "/*", "enforcement-mode": "DISABLED"}]), 0),
        (json!([{"path": "*", "enforcement-mode": "DISABLED"}]), 0),
        (
            json!([{"path": "/health", "enforcement-mode": "DISABLED"},
                   {"path": "/public/{page}", "enforcement-mode": "DISABLED"}]),
            1,
        ),
    ] {
        for extra in [json!({}), json!({"path-cache": {"lifespan": 1000}})] {
            let mut enforcer = json!({"paths": paths.clone()});
            enforcer
                .as_object_mut()
                .expect("an object")
                .extend(extra.as_object().expect("an object").clone());
            let e = error(&enforcer);
            assert_eq!(e.key(), format!("policy-enforcer.paths[{at}].path"), "{e}");
            assert!(e.message().contains("lazy-load-paths"), "{e}");
        }
        // With lazy paths asked for, Keycloak keeps DISABLED paths public, as tower-uma does;
        // with an enforced path, it loads no resource at start-up.
        config(&json!({"lazy-load-paths": true, "paths": paths.clone()}));
        let mut with_enforced = paths.as_array().expect("an array").clone();
        with_enforced.push(json!({"name": "A", "path": "/a"}));
        config(&json!({"paths": with_enforced}));
    }
    // Paths without a pattern too: a resource with `uris: ["/api/*"]` matches `/api` as
    // closely, and Keycloak tries the resources and the paths in a hash map's order
    // (Keycloak's Default Resource, `/*`, beats a DISABLED `/` that way).
    for path in ["/", "/api", "/health"] {
        let e = error(&json!({"paths": [{"path": path, "enforcement-mode": "DISABLED"}]}));
        assert_eq!(e.key(), "policy-enforcer.paths[0].path", "{e}");
        assert!(e.message().contains("lazy-load-paths"), "{e}");
        let c = config(&json!({"lazy-load-paths": true,
                               "paths": [{"path": path, "enforcement-mode": "DISABLED"}]}));
        assert!(c.lazy_paths().is_some());
    }
    // No paths at all: every path is resolved at Keycloak.
    assert!(config(&json!({"paths": []})).lazy_paths().is_some());
}

#[test]
fn paths_keycloak_would_weigh_otherwise_are_refused() {
    // A third entry that agrees at one length must not hide a disagreement one longer:
    // Keycloak takes `/{tenant}/*` (the first of two `*` alike) for `/public/x/y`, tower-uma
    // the literal `public`.
    for first in ["/{tenant}/{page}", "/public/{page}"] {
        let e = error(&json!({"paths": [
            {"path": first, "enforcement-mode": "DISABLED"},
            {"name": "Tenant", "path": "/{tenant}/*", "scopes": ["use"]},
            {"path": "/public/*", "enforcement-mode": "DISABLED"},
        ]}));
        assert!(e.message().contains("`/public/"), "{e}");
    }
    // Keycloak: a template matching the whole path beats a trailing `*`; tower-uma: the
    // literal `api` first. `GET /api/admin` would be public here, enforced there.
    let e = error(&json!({"paths": [
        {"path": "/api/*", "enforcement-mode": "DISABLED"},
        {"name": "Admin", "path": "/{tenant}/admin", "scopes": ["admin"]},
    ]}));
    assert_eq!(e.key(), "policy-enforcer.paths[1].path");
    assert!(e.message().contains("`/api/admin`"), "{e}");
    // Keycloak: the first listed of two templates alike; tower-uma: the literal `a` first.
    let e = error(&json!({"paths": [
        {"name": "B", "path": "/{y}/b", "scopes": ["s"]},
        {"path": "/a/{x}", "enforcement-mode": "DISABLED"},
    ]}));
    assert_eq!(e.key(), "policy-enforcer.paths[1].path");
    assert!(e.message().contains("`/a/b`"), "{e}");
    assert!(e.message().contains("list \"/a/{x}\" before"), "{e}");
    // Two enforced resources swapped.
    let e = error(&json!({"paths": [
        {"name": "B", "path": "/{y}/b"},
        {"name": "A", "path": "/a/{x}"},
    ]}));
    assert_eq!(e.key(), "policy-enforcer.paths[1].path");
    // Written so that both agree: the more specific template first, an entry for the path.
    let c = config(&json!({"paths": [
        {"path": "/a/{x}", "enforcement-mode": "DISABLED"},
        {"name": "B", "path": "/{y}/b", "scopes": ["s"]},
    ]}));
    assert_eq!(
        resolve(&c.resource_map(), &Method::GET, "/a/b"),
        Ok(Resolution::Public)
    );
    let c = config(&json!({"paths": [
        {"path": "/api/*", "enforcement-mode": "DISABLED"},
        {"name": "Admin", "path": "/{tenant}/admin", "scopes": ["admin"]},
        {"name": "Admin", "path": "/api/admin", "scopes": ["admin"]},
    ]}));
    assert_eq!(
        resolve(&c.resource_map(), &Method::GET, "/api/admin"),
        Ok(protected("Admin", &["admin"], ScopeMode::Any))
    );
    // The same rule either way: nothing to refuse.
    config(&json!({"paths": [
        {"name": "Admin", "path": "/api/*", "scopes": ["admin"]},
        {"name": "Admin", "path": "/{tenant}/admin", "scopes": ["admin"]},
    ]}));
}
