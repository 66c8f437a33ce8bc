//! The table's checks and the guard's question to the map, without an authorization server
//! (the flows through a real one are in `tests/it/axum_router.rs`).

use ::axum::routing::{MethodRouter, get, post};
use http::Method;

use super::{RouteTableError, UmaRouter, layer_template};
use crate::resources::{ResourceMapError, Route};

fn handler() -> MethodRouter {
    get(|| async { "ok" })
}

fn read(rule: Route) -> Route {
    rule.resource_id("r").scopes(Method::GET, ["read"])
}

fn table(paths: &[&str]) -> UmaRouter {
    paths
        .iter()
        .fold(UmaRouter::new(), |t, p| t.route(p, handler(), read))
}

fn invalid_path(result: Result<(), RouteTableError>) -> String {
    match result {
        Err(RouteTableError::InvalidPath { reason, .. }) => reason,
        other => panic!("expected an invalid path, got {other:?}"),
    }
}

#[test]
fn axum_paths_become_layer_templates() {
    assert_eq!(layer_template("/").as_deref(), Ok("/"));
    assert_eq!(
        layer_template("/albums/{id}").as_deref(),
        Ok("/albums/{id}")
    );
    assert_eq!(layer_template("/files/{*path}").as_deref(), Ok("/files/*"));
    assert_eq!(layer_template("/{*rest}").as_deref(), Ok("/*"));
}

#[test]
fn paths_axum_refuses_are_errors() {
    for path in ["", "albums", "/albums/:id", "/files/*rest", "/files/*"] {
        let reason = invalid_path(table(&[path]).validate());
        assert!(reason.contains("axum"), "{path}: {reason}");
    }
    let reason = invalid_path(table(&["/files/{*path}/x"]).validate());
    assert!(reason.contains("last segment"), "{reason}");
    // A parameter inside a segment: axum's router takes `/{id}.json` only with a literal
    // before the parameter, the layer matches whole segments only.
    let reason = invalid_path(table(&["/{id}.json"]).validate());
    assert!(reason.contains("axum's router refuses it"), "{reason}");
    assert!(matches!(
        table(&["/v-{id}"]).validate(),
        Err(RouteTableError::Rule(
            ResourceMapError::InvalidTemplate { .. }
        ))
    ));
}

#[test]
fn trailing_slashes_and_empty_segments_are_errors() {
    for path in ["/albums/", "/albums//{id}", "//albums"] {
        let reason = invalid_path(table(&[path]).validate());
        assert!(reason.contains("trailing slash"), "{path}: {reason}");
    }
}

#[test]
fn the_same_path_twice_is_an_error() {
    assert_eq!(
        table(&["/albums/{id}", "/albums/{id}"]).validate(),
        Err(RouteTableError::DuplicatePath {
            path: "/albums/{id}".to_owned()
        })
    );
    // Paths axum tells apart but the layer matches alike (literals ignoring case).
    assert!(matches!(
        table(&["/albums", "/Albums"]).validate(),
        Err(RouteTableError::Rule(
            ResourceMapError::DuplicateRoute { .. }
        ))
    ));
    // Conflicts of axum's router.
    let reason = invalid_path(table(&["/albums/{id}", "/albums/{name}"]).validate());
    assert!(reason.contains("conflict"), "{reason}");
}

#[test]
fn a_rule_for_another_path_is_an_error() {
    let t: UmaRouter = UmaRouter::new().route("/albums/{id}", handler(), |_| {
        Route::new("/photos/{id}")
            .resource_id("r")
            .scopes(Method::GET, ["read"])
    });
    assert_eq!(
        t.validate(),
        Err(RouteTableError::RuleForAnotherPath {
            path: "/albums/{id}".to_owned(),
            template: "/photos/{id}".to_owned(),
        })
    );
}

#[test]
fn invalid_rules_are_errors() {
    let t: UmaRouter = UmaRouter::new().route("/albums/{id}", handler(), |r| r.resource_id("r"));
    assert_eq!(
        t.validate(),
        Err(RouteTableError::Rule(ResourceMapError::NoScopes {
            template: "/albums/{id}".to_owned()
        }))
    );
}

#[test]
fn nested_routes_take_the_prefix() {
    let inner = table(&["/", "/albums/{id}", "/files/{*path}"]);
    let t = UmaRouter::new().nest("/v1/{tenant}", inner);
    let map = t.resource_map().expect("valid");
    let paths: Vec<&str> = t.entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/v1/{tenant}",
            "/v1/{tenant}/albums/{id}",
            "/v1/{tenant}/files/{*path}"
        ]
    );
    assert_eq!(map.template_of(2), Some("/v1/{tenant}/files/*"));
    for prefix in ["/", "/v1/", "v1", "/{*rest}", "/v1//x"] {
        let t = UmaRouter::new().nest(prefix, table(&["/albums"]));
        assert!(
            matches!(t.validate(), Err(RouteTableError::InvalidPath { .. })),
            "{prefix}"
        );
    }
    // A nested path equal to one of the outer table.
    let t = table(&["/v1/albums"]).nest("/v1", table(&["/albums"]));
    assert!(matches!(
        t.validate(),
        Err(RouteTableError::DuplicatePath { .. })
    ));
}

#[test]
fn merged_tables_keep_their_first_error() {
    let broken = table(&["/albums/"]);
    let t = table(&["/photos"]).merge(broken).merge(table(&["x"]));
    assert!(invalid_path(t.validate()).contains("trailing slash"));
}

#[test]
fn state_is_given_to_every_route() {
    #[derive(Clone)]
    struct AppState;
    let t: UmaRouter<AppState> = UmaRouter::new().route(
        "/albums/{id}",
        get(|_: ::axum::extract::State<AppState>| async { "ok" }),
        read,
    );
    let t: UmaRouter = t.with_state(AppState);
    assert!(t.validate().is_ok());
}

/// The guard's question: which route's own rule the layer applies.
#[test]
fn the_deciding_route_is_the_best_match_of_the_normalised_path() {
    let t: UmaRouter = UmaRouter::new()
        .route("/albums", handler(), read)
        .route("/{user}/albums", handler(), read)
        .public("/albums/featured", handler().post(|| async {}))
        .route("/albums/{id}", post(|| async {}), |r| {
            r.resource_id("r").scopes(Method::POST, ["write"])
        });
    let map = t.resource_map().expect("valid");
    let decided = |method: Method, path: &str| map.deciding_route(&method, path);
    assert_eq!(decided(Method::GET, "/albums"), Some(0));
    assert_eq!(decided(Method::GET, "/bob/albums"), Some(1));
    // A path that starts with `//` is refused (axum would run `/{user}/albums`).
    assert_eq!(decided(Method::GET, "//albums"), None);
    assert_eq!(decided(Method::GET, "/albums/featured"), Some(2));
    // Decided by `/albums/{id}`'s rule, but axum runs the public route's handler.
    assert_eq!(decided(Method::POST, "/albums/featured"), None);
    assert_eq!(decided(Method::POST, "/albums/7"), Some(3));
    assert_eq!(decided(Method::GET, "/albums/../albums"), None);
    assert_eq!(decided(Method::GET, "/photos"), None);
}
