//! `UmaLayer` against a real Keycloak 26 (items 1–6 of "The suite against real Keycloak"; the
//! AS outage is in `outage.rs`). Run by `interop/keycloak/test.sh`.

#![allow(
    clippy::unwrap_used,
    reason = "tests against a live server: a failure is a test failure"
)]

mod common;

use std::time::Duration;

use common::*;
use http::{Method, StatusCode};
use serde_json::{Value, json};
use tower_uma::{
    Dialect, IntrospectionCache, ResourceDecl, ResourceMap, Route, UmaLayer, UmaLayerBuilder,
    jwt::{JwtValidation, RptValidation},
    registration::ResourceSyncMode,
};

/// `/albums/{id}`: `GET` needs `view`, `DELETE` needs `delete`, on the resource `id`.
fn album_route(id: &str) -> Route {
    Route::new("/albums/{id}")
        .resource_id(id)
        .scopes(Method::GET, ["view"])
        .scopes(Method::DELETE, ["delete"])
}

/// A resource `label-…` of `photo-api` (scopes view and delete) behind a layer that
/// `configure` adjusts, serving the echo app.
struct Album {
    pat: String,
    id: String,
    url: String,
    layer: UmaLayer,
}

impl Album {
    async fn new(label: &str, configure: impl FnOnce(UmaLayerBuilder) -> UmaLayerBuilder) -> Self {
        let pat = pat_of(RS_ID, RS_SECRET).await;
        let id = register(
            &pat,
            json!({"name": unique(label), "resource_scopes": ["view", "delete"]}),
        )
        .await;
        let builder = discover(RS_ID, RS_SECRET)
            .await
            .resources(ResourceMap::new().route(album_route(&id)));
        let layer = configure(builder).build().await.unwrap();
        let url = format!("{}/albums/{id}", protected(layer.clone()).await);
        Self {
            pat,
            id,
            url,
            layer,
        }
    }

    /// A ticket for `GET`, and bob's RPT for it.
    async fn bobs_rpt(&self) -> String {
        rpt("bob", &ticket_of(&get(&self.url, Method::GET, None).await)).await
    }

    async fn remove(self) {
        unregister(&self.pat, &self.id).await;
    }
}

/// Item 1: discovery from `/.well-known/uma2-configuration`, the PAT, the layer's start (it
/// registers its declared resource); a wrong secret stops the start with an error that says so.
#[tokio::test]
async fn discovery_pat_and_start() {
    require_keycloak().await;
    let name = unique("album-start");
    let layer = discover(RS_ID, RS_SECRET)
        .await
        .resources(
            ResourceMap::new().route(
                Route::new("/albums/{id}")
                    .declare(ResourceDecl::new(&name, ["view", "delete"]))
                    .scopes(Method::GET, ["view"]),
            ),
        )
        .build()
        .await
        .expect("the layer starts against Keycloak");
    assert_eq!(layer.as_uri(), ISSUER);
    assert!(layer.as_health().all_closed(), "{}", layer.as_health());
    let id = layer
        .resource_id(&name)
        .expect("the declared resource has an id");
    let pat = pat_of(RS_ID, RS_SECRET).await;
    let r = resource(&pat, &id).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["name"], json!(name));
    assert_eq!(scope_names(&r.body), ["delete", "view"]);
    unregister(&pat, &id).await;

    let err = discover(RS_ID, "not-the-secret")
        .await
        .resources(
            ResourceMap::new().route(
                Route::new("/x/{id}")
                    .declare(ResourceDecl::new(unique("x"), ["view"]))
                    .any_method(["view"]),
            ),
        )
        .build()
        .await
        .expect_err("a wrong client secret stops the start");
    // Keycloak answers 401 invalid_client to the PAT request; the start fails on the PAT.
    assert_eq!(err.kind(), tower_uma::error::ErrorKind::Pat, "{err:#}");
    // The whole chain says what Keycloak answered (26.7 says `unauthorized_client` where
    // RFC 6749 §5.2 has `invalid_client`) and what to check; no secret in it.
    let chain = format!("{err:#}");
    assert!(
        chain.contains(
            "no PAT could be obtained: token endpoint answered 401 unauthorized_client: \
             check client_id and the client secret"
        ),
        "{chain}"
    );
    assert!(!chain.contains("not-the-secret"), "{chain}");
}

/// Item 2: create, update (changed scopes), delete (`ReconcileAndDelete`), and a second start
/// that writes nothing, on a resource server of the test's own.
#[tokio::test]
async fn resource_sync_creates_updates_deletes_and_then_writes_nothing() {
    require_keycloak().await;
    let rs = TempRs::create("rs-sync").await;
    let relay = Relay::start().await;
    let builder = |decls: Vec<ResourceDecl>| {
        let rs_id = rs.client_id.clone();
        let secret = rs.secret.clone();
        let relay = relay.clone();
        async move {
            let mut map = ResourceMap::new();
            for (i, d) in decls.into_iter().enumerate() {
                map = map.route(
                    Route::new(&format!("/r{i}/{{id}}"))
                        .declare(d)
                        .any_method(["view"]),
                );
            }
            discover(&rs_id, &secret)
                .await
                .resource_registration_endpoint(relay.via(&resource_set_url()))
                .resource_sync(ResourceSyncMode::ReconcileAndDelete)
                .resources(map)
        }
    };
    // First start: two creates.
    let _first = builder(vec![
        ResourceDecl::new("a", ["view"]),
        ResourceDecl::new("b", ["view", "delete"]),
    ])
    .await
    .build()
    .await
    .expect("first start");
    let writes = relay.writes();
    assert_eq!(
        writes.iter().filter(|w| w.starts_with("POST ")).count(),
        2,
        "{writes:?}"
    );
    let names: Vec<Value> = rs
        .resources()
        .await
        .iter()
        .map(|r| r["name"].clone())
        .collect();
    assert!(
        names.contains(&json!("a")) && names.contains(&json!("b")),
        "{names:?}"
    );

    // Second start: `a` gets a scope, `b` is no longer declared.
    relay.clear();
    let layer = builder(vec![ResourceDecl::new("a", ["view", "delete"])])
        .await
        .build()
        .await
        .expect("second start");
    let writes = relay.writes();
    assert_eq!(
        writes.iter().filter(|w| w.starts_with("PUT ")).count(),
        1,
        "{writes:?}"
    );
    assert_eq!(
        writes.iter().filter(|w| w.starts_with("DELETE ")).count(),
        1,
        "{writes:?}"
    );
    let all = rs.resources().await;
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0]["name"], "a");
    assert_eq!(scope_names(&all[0]), ["delete", "view"]);
    assert_eq!(layer.resource_id("a").as_deref(), all[0]["_id"].as_str());

    // Third start with the same declarations: reads only.
    relay.clear();
    let _third = builder(vec![ResourceDecl::new("a", ["view", "delete"])])
        .await
        .build()
        .await
        .expect("third start");
    assert_eq!(relay.writes(), Vec::<String>::new());
    assert!(!relay.seen().is_empty(), "the sync read through the relay");
    rs.remove().await;
}

/// Item 2: more resources than Keycloak's page of 100; a second start finds them all and
/// writes nothing.
#[tokio::test]
async fn resource_sync_beyond_one_page() {
    require_keycloak().await;
    const N: usize = 130;
    let rs = TempRs::create("rs-page").await;
    let relay = Relay::start().await;
    let start = || async {
        let mut map = ResourceMap::new();
        for i in 0..N {
            map = map.route(
                Route::new(&format!("/p{i}/{{id}}"))
                    .declare(ResourceDecl::new(format!("photo-{i:03}"), ["view"]))
                    .any_method(["view"]),
            );
        }
        discover(&rs.client_id, &rs.secret)
            .await
            .resource_registration_endpoint(relay.via(&resource_set_url()))
            .resource_sync(ResourceSyncMode::ReconcileAndDelete)
            .request_timeout(Duration::from_secs(20))
            .resources(map)
            .build()
            .await
            .expect("the layer starts")
    };
    let first = start().await;
    assert_eq!(relay.writes().len(), N, "one create each");
    assert_eq!(rs.resources().await.len(), N);
    relay.clear();
    let second = start().await;
    assert_eq!(
        relay.writes(),
        Vec::<String>::new(),
        "a second start writes nothing"
    );
    for i in 0..N {
        let name = format!("photo-{i:03}");
        assert_eq!(
            first.resource_id(&name),
            second.resource_id(&name),
            "{name}"
        );
        assert!(second.resource_id(&name).is_some(), "{name}");
    }
    rs.remove().await;
}

/// Item 3: 401 with a ticket → bob's RPT from Keycloak (uma-ticket grant) → 200 with the
/// principal; DELETE → 401 → `access_denied` from Keycloak.
#[tokio::test]
async fn the_whole_uma_flow() {
    require_keycloak().await;
    let album = Album::new("album-flow", |b| b).await;
    let url = &album.url;

    let first = get(url, Method::GET, None).await;
    let challenge = first.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(challenge.contains("realm=\"photos\""), "{challenge}");
    let rpt = rpt("bob", &ticket_of(&first)).await;
    let ok = answer(get(url, Method::GET, Some(&rpt)).await).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    let p = &ok.body["principal"];
    assert_eq!(p["resource_id"], json!(album.id));
    assert_eq!(p["scopes"], json!(["view"]));
    // Keycloak's introspection of an RPT (token_type_hint=requesting_party_token) carries no
    // `sub` and no `client_id`: the principal has none either (local validation has them).
    assert_eq!(p["subject"], Value::Null);

    let ticket = ticket_of(&get(url, Method::DELETE, Some(&rpt)).await);
    let denied = uma_grant(&user_token("bob").await, &ticket, &[]).await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN, "{}", denied.text);
    assert_eq!(denied.body["error"], "access_denied");
    album.remove().await;
}

/// Item 4: bob asks with `submit_request=true`, alice approves through Keycloak's account
/// API, bob's next grant succeeds (on a resource of alice's with owner-managed access).
#[tokio::test]
async fn owner_approval_through_the_account_api() {
    require_keycloak().await;
    let pat = pat_of(RS_ID, RS_SECRET).await;
    let id = Admin::login()
        .await
        .create_user_resource(RS_ID, &unique("alice-album"), "alice", &["view", "delete"])
        .await;
    let layer = discover(RS_ID, RS_SECRET)
        .await
        .resources(ResourceMap::new().route(album_route(&id)))
        .build()
        .await
        .unwrap();
    let url = format!("{}/albums/{id}", protected(layer).await);
    let rpt = approved_delete(&url, &id).await;
    let ok = answer(get(&url, Method::DELETE, Some(&rpt)).await).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    assert_eq!(ok.body["principal"]["scopes"], json!(["delete"]));
    unregister(&pat, &id).await;
}

/// Item 5: the `permissions` Keycloak really sends when introspecting an RPT, read by the
/// layer; a plain access token (no permissions) is challenged, not let through.
#[tokio::test]
async fn introspection_of_real_rpts() {
    require_keycloak().await;
    let album = Album::new("album-introspect", |b| {
        b.rpt_validation(RptValidation::Introspect)
    })
    .await;
    let (url, id) = (&album.url, &album.id);
    let rpt = album.bobs_rpt().await;

    let seen = introspect(&rpt).await;
    assert_eq!(seen["active"], true);
    let perms = seen["permissions"].as_array().expect("permissions");
    assert_eq!(perms.len(), 1, "{seen}");
    assert_eq!(perms[0]["rsid"], json!(id));
    assert_eq!(perms[0]["resource_id"], json!(id));
    assert_eq!(perms[0]["scopes"], json!(["view"]));
    assert_eq!(perms[0]["resource_scopes"], json!(["view"]));

    let ok = answer(get(url, Method::GET, Some(&rpt)).await).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    assert_eq!(ok.body["principal"]["scopes"], json!(["view"]));

    // bob's plain access token is not an RPT (Keycloak calls it inactive under the RPT hint):
    // a new challenge.
    let plain = user_token("bob").await;
    assert_eq!(introspect(&plain).await, json!({"active": false}));
    ticket_of(&get(url, Method::GET, Some(&plain)).await);
    album.remove().await;
}

/// Item 5: local validation against Keycloak's JWKS, including a key rotation made through the
/// admin API: RPTs signed with the new key are accepted (the unknown `kid` refetches the
/// keys), and so are those signed before.
#[tokio::test]
async fn local_jwt_validation_and_key_rotation() {
    require_keycloak().await;
    let album = Album::new("album-jwt", |b| {
        b.rpt_validation(RptValidation::Local)
            .jwt_validation(JwtValidation::new().refetch_interval(Duration::from_secs(1)))
    })
    .await;
    let url = &album.url;
    let bob_sub = claims(&user_token("bob").await)["sub"].clone();

    let before = album.bobs_rpt().await;
    let ok = answer(get(url, Method::GET, Some(&before)).await).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    assert_eq!(
        ok.body["principal"]["subject"], bob_sub,
        "local validation reads `sub`"
    );
    assert_eq!(ok.body["principal"]["scopes"], json!(["view"]));

    // Rotate: a new RSA key with a priority above every key the realm has.
    let admin = Admin::login().await;
    let keys = admin.call(Method::GET, "/keys", None).await;
    let top = keys.body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| k["providerPriority"].as_i64())
        .max()
        .unwrap_or(100);
    let realm = admin.call(Method::GET, "", None).await;
    let made = admin
        .call(
            Method::POST,
            "/components",
            Some(json!({
                "name": unique("rotated"),
                "providerId": "rsa-generated",
                "providerType": "org.keycloak.keys.KeyProvider",
                "parentId": realm.body["id"],
                "config": {"priority": [(top + 1).to_string()], "keySize": ["2048"], "algorithm": ["RS256"]},
            })),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.text);

    let after = album.bobs_rpt().await;
    assert_ne!(
        jwt_part(&before, 0)["kid"],
        jwt_part(&after, 0)["kid"],
        "Keycloak signs with the new key"
    );
    // An unknown kid refetches the keys, at most once per refetch_interval (1 s here).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let resp = get(url, Method::GET, Some(&after)).await;
        if resp.status() == StatusCode::OK {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "an RPT with the new kid is still refused: {}",
            resp.status()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let layer_again = answer(get(url, Method::GET, Some(&before)).await).await;
    assert_eq!(
        layer_again.status,
        StatusCode::OK,
        "an RPT signed before the rotation"
    );
    // A token that is not a signed RPT of this realm is challenged, not accepted.
    let forged = format!(
        "{}.{}.AAAA",
        before.split('.').next().unwrap(),
        before.split('.').nth(1).unwrap()
    );
    ticket_of(&get(url, Method::GET, Some(&forged)).await);
    album.remove().await;
}

/// Item 6: revocation at Keycloak. Keycloak then introspects the RPT as inactive; the layer
/// keeps serving its cached result until the cache's `max_ttl` (the documented bound), or at
/// once after `forget_token`.
#[tokio::test]
async fn revocation_at_keycloak_and_the_cache_bound() {
    require_keycloak().await;
    let max_ttl = Duration::from_secs(4);
    let album = Album::new("album-revoke", |b| {
        b.cache(IntrospectionCache::builder().max_ttl(max_ttl).build())
    })
    .await;
    let url = &album.url;

    // Bound: the cache's max_ttl.
    let rpt1 = album.bobs_rpt().await;
    assert_eq!(
        get(url, Method::GET, Some(&rpt1)).await.status(),
        StatusCode::OK
    );
    revoke(&rpt1).await;
    assert_eq!(
        introspect(&rpt1).await["active"],
        false,
        "Keycloak forgot the RPT"
    );
    assert_eq!(
        get(url, Method::GET, Some(&rpt1)).await.status(),
        StatusCode::OK,
        "still served from the cache"
    );
    challenged_within(url, &rpt1, max_ttl).await;

    // At once: forget_token from a revocation hook.
    let rpt2 = album.bobs_rpt().await;
    assert_eq!(
        get(url, Method::GET, Some(&rpt2)).await.status(),
        StatusCode::OK
    );
    revoke(&rpt2).await;
    album.layer.forget_token(&rpt2);
    ticket_of(&get(url, Method::GET, Some(&rpt2)).await);
    album.remove().await;
}

/// The Keycloak dialect without discovery derives the same endpoints from the issuer.
#[tokio::test]
async fn endpoints_derived_from_the_issuer_work() {
    require_keycloak().await;
    let pat = pat_of(RS_ID, RS_SECRET).await;
    let id = register(
        &pat,
        json!({"name": unique("album-derived"), "resource_scopes": ["view"]}),
    )
    .await;
    let layer = UmaLayer::builder(ISSUER, RS_ID, RS_SECRET)
        .dialect(Dialect::Keycloak)
        .insecure_allow_http()
        .resources(ResourceMap::new().route(album_route(&id)))
        .build()
        .await
        .unwrap();
    let url = format!("{}/albums/{id}", protected(layer).await);
    let rpt = rpt("bob", &ticket_of(&get(&url, Method::GET, None).await)).await;
    assert_eq!(
        get(&url, Method::GET, Some(&rpt)).await.status(),
        StatusCode::OK
    );
    unregister(&pat, &id).await;
}

/// A PAT that Keycloak stops accepting (the client's not-before moved past it, as an admin's
/// "Revocation → Set to now" does) is answered `403 invalid_bearer_token`, not `401`: the
/// layer takes a new PAT and retries once, so the next request still gets its ticket.
#[tokio::test]
async fn a_pat_keycloak_refuses_is_replaced_at_once() {
    require_keycloak().await;
    let rs = TempRs::create("rs-pat").await;
    let layer = discover(&rs.client_id, &rs.secret)
        .await
        .resources(
            ResourceMap::new().route(
                Route::new("/albums/{id}")
                    .declare(ResourceDecl::new("album", ["view"]))
                    .scopes(Method::GET, ["view"]),
            ),
        )
        .build()
        .await
        .unwrap();
    let url = format!("{}/albums/1", protected(layer).await);
    ticket_of(&get(&url, Method::GET, None).await);

    // Every token of this client issued before `cut` is refused from now on; `old_pat` was
    // issued before it, like the layer's.
    let old_pat = rs.pat().await;
    let cut = now() + 1;
    let admin = Admin::login().await;
    let mut client = admin
        .call(Method::GET, &format!("/clients/{}", rs.uuid), None)
        .await
        .body;
    client["notBefore"] = json!(cut);
    let put = admin
        .call(Method::PUT, &format!("/clients/{}", rs.uuid), Some(client))
        .await;
    assert_eq!(put.status, StatusCode::NO_CONTENT, "{}", put.text);
    while now() < cut {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stale = answer(
        http()
            .get(resource_set_url())
            .bearer_auth(&old_pat)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(stale.status, StatusCode::FORBIDDEN, "{}", stale.text);
    assert_eq!(stale.body["error"], "invalid_bearer_token");

    // The layer's PAT is refused the same way: it takes a new one and the ticket comes.
    ticket_of(&get(&url, Method::GET, None).await);
    rs.remove().await;
}
