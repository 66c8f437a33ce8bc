//! Resource registration that reconciles (docs/protocol.md §11 checks 32–37, §4.5), the
//! dry run, and resources registered at run time, against `uma-test-as`.

use std::time::Duration;

use crate::common::*;
use http::StatusCode;
use tower_uma::{
    ResourceDecl, ResourceMap, Route,
    error::ErrorKind,
    registration::{ResourceChange, ResourceSyncMode},
    resources::{RequestInfo, Resolution, ResourceRef},
};
use uma_test_as::{Endpoint, TestAs};

fn map(scopes: &[&str], with_photo: bool) -> ResourceMap {
    let mut m = ResourceMap::new().route(
        Route::new("/albums/{id}")
            .declare(
                ResourceDecl::new("album", scopes.iter().copied())
                    .with_type("https://example.com/rsrc/album")
                    .with_description("A photo album")
                    .with_icon_uri("https://example.com/album.png")
                    .with_owner("alice"),
            )
            .any_method([scopes[0]]),
    );
    if with_photo {
        m = m.route(
            Route::new("/photos/{id}")
                .declare(ResourceDecl::new("photo", ["view"]))
                .any_method(["view"]),
        );
    }
    m
}

fn writes(as_: &TestAs) -> Vec<String> {
    as_.requests(Endpoint::ResourceRegistration)
        .into_iter()
        .filter(|r| r.method != "GET")
        .map(|r| format!("{} {}", r.method, r.uri))
        .collect()
}

async fn check_32_first_start_creates_each_resource_with_its_description(f: Flavor) {
    let as_ = start_as_in(f).await;
    let layer = layer_builder(&as_, f)
        .await
        .resources(map(&["view", "delete"], true))
        .build()
        .await
        .expect("builds");
    let posts: Vec<_> = as_
        .requests(Endpoint::ResourceRegistration)
        .into_iter()
        .filter(|r| r.method == "POST")
        .collect();
    assert_eq!(posts.len(), 2);
    let album: serde_json::Value = serde_json::from_slice(&posts[0].body).expect("JSON");
    assert_eq!(album["name"], "album");
    assert_eq!(album["type"], "https://example.com/rsrc/album");
    assert_eq!(album["description"], "A photo album");
    assert_eq!(album["icon_uri"], "https://example.com/album.png");
    assert_eq!(
        album["resource_scopes"],
        serde_json::json!(["view", "delete"])
    );
    assert!(
        header(&posts[0], "authorization")
            .expect("PAT")
            .starts_with("Bearer ")
    );
    assert_eq!(header(&posts[0], "content-type"), Some("application/json"));
    // The returned _id is the one used in permission requests.
    let id = layer.resource_id("album").expect("id");
    assert_eq!(as_.resource_id("album"), Some(id.clone()));
    let (url, _) = protected(layer).await;
    let _ = http()
        .get(format!("{url}/albums/1"))
        .send()
        .await
        .expect("answer");
    assert_eq!(permission_bodies(&as_)[0][0]["resource_id"], id.as_str());
}

async fn check_34_36_second_start_writes_nothing_and_changes_are_put(f: Flavor) {
    let as_ = start_as_in(f).await;
    let _ = layer_builder(&as_, f)
        .await
        .resources(map(&["view"], true))
        .build()
        .await
        .expect("first");
    let after_first = writes(&as_).len();
    let _ = layer_builder(&as_, f)
        .await
        .resources(map(&["view"], true))
        .build()
        .await
        .expect("second");
    assert_eq!(
        writes(&as_).len(),
        after_first,
        "idempotent: {:?}",
        writes(&as_)
    );

    // A changed scope set → one PUT with the full description.
    let builder = layer_builder(&as_, f)
        .await
        .resources(map(&["view", "delete"], true));
    let plan = builder.check_resources().await.expect("dry run");
    assert_eq!(
        writes(&as_).len(),
        after_first,
        "the dry run writes nothing"
    );
    assert_eq!(
        plan.to_string().lines().next(),
        Some(
            format!(
                "~ album ({}): resource_scopes",
                as_.resource_id("album").expect("id")
            )
            .as_str()
        )
    );
    let _ = builder.build().await.expect("third");
    let w = writes(&as_);
    assert_eq!(w.len(), after_first + 1);
    assert!(w.last().expect("a write").starts_with("PUT "), "{w:?}");
    let id = as_.resource_id("album").expect("id");
    let mut scopes = as_.resource(&id).expect("resource").resource_scopes;
    scopes.sort();
    assert_eq!(scopes, ["delete", "view"]);
}

async fn deletes_only_when_asked_and_only_undeclared_resources(f: Flavor) {
    let as_ = start_as_in(f).await;
    let _ = layer_builder(&as_, f)
        .await
        .resources(map(&["view"], true))
        .build()
        .await
        .expect("first");
    // photo is no longer declared: kept by default…
    let _ = layer_builder(&as_, f)
        .await
        .resources(map(&["view"], false))
        .build()
        .await
        .expect("reconcile");
    assert!(as_.resource_id("photo").is_some());
    // …and deleted on request.
    let builder = layer_builder(&as_, f)
        .await
        .resources(map(&["view"], false))
        .resource_sync(ResourceSyncMode::ReconcileAndDelete);
    let plan = builder.check_resources().await.expect("plan");
    assert!(
        plan.changes
            .iter()
            .any(|c| matches!(c, ResourceChange::Delete { name, .. } if name == "photo")),
        "{plan}"
    );
    let _ = builder.build().await.expect("delete");
    assert!(as_.resource_id("photo").is_none());
    assert!(as_.resource_id("album").is_some());
}

#[tokio::test]
async fn check_33_tolerates_create_shapes() {
    let as_ = start_as().await;
    // 201 with the full object and no Location (Keycloak): the list answers empty, the
    // create answers the whole representation with scope objects.
    as_.respond_next(
        Endpoint::ResourceRegistration,
        1,
        200,
        "application/json",
        "[]",
    );
    as_.respond_next(
        Endpoint::ResourceRegistration,
        1,
        201,
        "application/json",
        r#"{"_id":"kc-1","name":"album","resource_scopes":[{"name":"view"}],"owner":{"id":"o"}}"#,
    );
    let layer = discover(&as_)
        .await
        .resources(map(&["view"], false))
        .build()
        .await
        .expect("builds");
    assert_eq!(layer.resource_id("album").as_deref(), Some("kc-1"));
    // 201 with `Location` and `_id` is the AS's own standard answer (check_32).
}

#[tokio::test]
async fn check_34_conflict_on_create_looks_the_resource_up() {
    let as_ = start_as().await;
    let existing = as_.register_resource(
        "alice",
        uma_test_as::ResourceDescription {
            name: Some("album".into()),
            resource_scopes: vec!["view".into()],
            ..Default::default()
        },
    );
    // The list answers empty (a stale view), the create gets 409, the lookup finds it.
    as_.respond_next(
        Endpoint::ResourceRegistration,
        1,
        200,
        "application/json",
        "[]",
    );
    as_.respond_next(
        Endpoint::ResourceRegistration,
        1,
        409,
        "application/json",
        r#"{"error":"invalid_request","error_description":"Resource with name [album] already exists."}"#,
    );
    let layer = discover(&as_)
        .await
        .resources(map(&["view"], false))
        .build()
        .await
        .expect("builds");
    assert_eq!(layer.resource_id("album"), Some(existing));
}

/// Keycloak lists at most 100 resources when the query names no `max` (docs/protocol.md §4.2), so
/// a resource past the first page must still be found: not re-created (a 409 whose lookup
/// fails), and resolvable by name.
#[tokio::test]
async fn keycloak_lists_past_its_default_page() {
    let f = Flavor::Keycloak;
    let as_ = start_as_in(f).await;
    for i in 0..100 {
        as_.register_resource(
            "alice",
            uma_test_as::ResourceDescription {
                name: Some(format!("filler-{i:03}")),
                resource_scopes: vec!["view".into()],
                ..Default::default()
            },
        );
    }
    let album = as_.register_resource(
        "alice",
        uma_test_as::ResourceDescription {
            name: Some("album".into()),
            r#type: Some("https://example.com/rsrc/album".into()),
            description: Some("A photo album".into()),
            icon_uri: Some("https://example.com/album.png".into()),
            resource_scopes: vec!["view".into()],
            ..Default::default()
        },
    );
    let layer = layer_builder(&as_, f)
        .await
        .resources(map(&["view"], false))
        .build()
        .await
        .expect("builds");
    assert_eq!(layer.resource_id("album"), Some(album));
    assert_eq!(writes(&as_), Vec::<String>::new(), "nothing to write");
}

#[tokio::test]
async fn check_37_error_bodies_are_surfaced() {
    let as_ = start_as().await;
    let _ = discover(&as_)
        .await
        .resources(map(&["view"], false))
        .build()
        .await
        .expect("first");
    let id = as_.resource_id("album").expect("id");
    // WSO2-style error body on create → a registration error naming the resource.
    as_.respond_next(
        Endpoint::ResourceRegistration,
        1,
        200,
        "application/json",
        "[]",
    );
    as_.respond_next(
        Endpoint::ResourceRegistration,
        1,
        400,
        "application/json",
        r#"{"code":"invalid_request","description":"Resource scopes are missing"}"#,
    );
    let err = discover(&as_)
        .await
        .resources(map(&["view"], false))
        .build()
        .await
        .expect_err("a registration error");
    assert_eq!(err.kind(), ErrorKind::Registration);
    // The whole chain: the sync, the resource, the AS's answer.
    let msg = format!("{err:#}");
    assert!(
        msg.contains("album") && msg.contains("400") && msg.contains("Resource scopes are missing"),
        "{msg}"
    );
    assert!(as_.resource(&id).is_some(), "nothing was deleted");
}

/// A wrong client secret stops the layer at start with the token endpoint's answer and what
/// to check, each cause once, and no secret anywhere.
#[tokio::test]
async fn a_wrong_client_secret_says_so_at_start() {
    let as_ = start_as().await;
    let wrong = "photo-api-secret-WRONG";
    let err = tower_uma::UmaLayer::discover(as_.issuer(), RS_ID, wrong)
        .insecure_allow_http()
        .resources(map(&["view"], false))
        .build()
        .await
        .expect_err("the AS refuses the client");
    assert_eq!(err.kind(), ErrorKind::Pat);
    assert!(!err.is_transient(), "a retry would not help");
    let chain = format!("{err:#}");
    assert_eq!(
        chain,
        "listing registered resources: no PAT could be obtained: token endpoint answered 401 \
         invalid_client: check client_id and the client secret (client authentication failed)"
    );
    // Display and the source chain: each level says one thing.
    let mut levels = vec![err.to_string()];
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        levels.push(s.to_string());
        source = s.source();
    }
    assert_eq!(levels.join(": "), chain);
    for (i, level) in levels.iter().enumerate() {
        for later in &levels[i + 1..] {
            assert!(
                !level.contains(later.as_str()),
                "{level:?} repeats {later:?}"
            );
        }
    }
    let debug = format!("{err:?}");
    for text in [&chain, &debug] {
        assert!(!text.contains(wrong) && !text.contains(RS_SECRET), "{text}");
    }
    assert_eq!(as_.count(Endpoint::ResourceRegistration), 0);
}

/// A layer whose route `/albums/{id}` needs `view` of the resource named `album-{id}`.
async fn albums_by_name(as_: &TestAs, lookup_interval: Duration) -> tower_uma::UmaLayer {
    let map = ResourceMap::new().route(Route::new("/albums/{id}").resolver(
        |req: &RequestInfo<'_>| match req.param("id") {
            Some(id) => Resolution::protected(ResourceRef::Name(format!("album-{id}")), ["view"]),
            None => Resolution::Unmapped,
        },
    ));
    discover(as_)
        .await
        .resources(map)
        .resource_lookup_interval(lookup_interval)
        .build()
        .await
        .expect("builds")
}

#[tokio::test]
async fn resources_created_at_run_time_are_resolved_by_name() {
    let as_ = start_as().await;
    let layer = albums_by_name(&as_, Duration::from_secs(5)).await;
    let id7 = layer
        .registry()
        .register(ResourceDecl::new("album-7", ["view"]).with_owner("alice"))
        .await
        .expect("registered");
    assert_eq!(layer.registry().id("album-7"), Some(id7.clone()));
    let (url, calls) = protected(layer.clone()).await;
    let rpt = rpt_for(&as_, &id7, &["view"]);
    let resp = http()
        .get(format!("{url}/albums/7"))
        .bearer_auth(&rpt)
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status(), StatusCode::OK);
    // The same RPT does not open another album's resource.
    let id8 = as_.register_resource(
        "alice",
        uma_test_as::ResourceDescription {
            name: Some("album-8".into()),
            resource_scopes: vec!["view".into()],
            ..Default::default()
        },
    );
    let resp = http()
        .get(format!("{url}/albums/8"))
        .bearer_auth(&rpt)
        .send()
        .await
        .expect("answer");
    assert_eq!(
        resp.status(),
        StatusCode::UNAUTHORIZED,
        "album-8 was found at the AS by name"
    );
    assert_eq!(layer.registry().id("album-8"), Some(id8));
    // A name the AS does not have: nothing can grant it (and lookups are rate-limited).
    let before = as_.count(Endpoint::ResourceRegistration);
    for _ in 0..5 {
        let resp = http()
            .get(format!("{url}/albums/404"))
            .send()
            .await
            .expect("answer");
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    }
    assert!(
        as_.count(Endpoint::ResourceRegistration) - before <= 3,
        "at most one refresh"
    );
    assert_eq!(calls.get(), 1);
    layer.registry().delete("album-7").await.expect("deleted");
    assert!(as_.resource(&id7).is_none());
}

/// When the AS cannot list its resources, a name the layer does not know is answered as an
/// AS failure (403 + Warning), also for the rest of the refresh interval, never as "no such
/// resource" (a plain 403).
#[tokio::test]
async fn a_failed_lookup_answers_unreachable_until_the_next_refresh() {
    let as_ = start_as().await;
    let layer = albums_by_name(&as_, Duration::from_secs(5)).await;
    let (url, calls) = protected(layer).await;
    as_.fail_next(Endpoint::ResourceRegistration, 1, 500);
    let before = as_.count(Endpoint::ResourceRegistration);
    for album in ["1", "2"] {
        let resp = http()
            .get(format!("{url}/albums/{album}"))
            .send()
            .await
            .expect("answer");
        expect_unreachable(&resp);
    }
    assert_eq!(
        as_.count(Endpoint::ResourceRegistration) - before,
        1,
        "one list call in the interval"
    );
    assert_eq!(calls.get(), 0);
}

/// A lookup of an unknown name lists the AS but reads only the resources it has not read
/// before, so requests for made-up names cannot make the layer re-read every resource.
#[tokio::test]
async fn lookups_read_only_resources_new_since_the_last_listing() {
    let as_ = start_as().await;
    let album = |name: &str| uma_test_as::ResourceDescription {
        name: Some(name.into()),
        resource_scopes: vec!["view".into()],
        ..Default::default()
    };
    for i in 1..=10 {
        as_.register_resource("alice", album(&format!("album-{i}")));
    }
    let layer = albums_by_name(&as_, Duration::ZERO).await;
    let (url, calls) = protected(layer.clone()).await;
    let answered = async |path: &str| {
        let before = as_.count(Endpoint::ResourceRegistration);
        let resp = http()
            .get(format!("{url}{path}"))
            .send()
            .await
            .expect("answer");
        (
            resp.status(),
            as_.count(Endpoint::ResourceRegistration) - before,
        )
    };
    // The first lookup lists the AS and reads its 10 resources.
    assert_eq!(answered("/albums/404").await, (StatusCode::FORBIDDEN, 11));
    assert!(layer.registry().id("album-3").is_some());
    // The next one lists again and reads nothing.
    assert_eq!(answered("/albums/405").await, (StatusCode::FORBIDDEN, 1));
    // A resource made since is read, and found.
    let id11 = as_.register_resource("alice", album("album-11"));
    assert_eq!(answered("/albums/11").await, (StatusCode::UNAUTHORIZED, 2));
    assert_eq!(layer.registry().id("album-11"), Some(id11));
    assert_eq!(calls.get(), 0);
}

per_dialect!(
    check_32_first_start_creates_each_resource_with_its_description,
    check_34_36_second_start_writes_nothing_and_changes_are_put,
    deletes_only_when_asked_and_only_undeclared_resources,
);
