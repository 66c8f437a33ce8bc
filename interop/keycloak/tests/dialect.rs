//! `uma-test-as --dialect keycloak` against the real thing: the same requests go to Keycloak
//! and to the imitation (discovery, PAT, resource set CRUD and listing, permission tickets,
//! uma-ticket grants including denials, introspection of RPTs and of other tokens, error
//! bodies), and the answers' status, fields and JSON types are compared. A difference a client
//! or the layer could notice is fixed in `uma-test-as`; the deliberate ones are listed in
//! [`DELIBERATE`] and in uma-test-as/README.md ("Keycloak").

#![allow(
    clippy::unwrap_used,
    reason = "tests against a live server: a failure is a test failure"
)]

mod common;

use std::collections::BTreeSet;

use common::*;
use http::StatusCode;
use serde_json::{Value, json};
use uma_test_as::{AuthServer, Dialect, Policy, RptFormat, TestAs};

/// Differences kept on purpose, as `label: difference` prefixes (see uma-test-as/README.md).
const DELIBERATE: &[&str] = &[
    // Token responses say `bearer` in lower case, as older Keycloak versions did (Keycloak 26
    // says `Bearer`): clients and the layer must read it without regard to case.
    "pat: value of token_type:",
    "grant: value of token_type:",
    // No refresh-token grant in the imitation, so no refresh token with the RPT.
    "grant: .refresh_token:",
    // Claims of the user's session and profile (acr, sid, names, e-mail, roles, allowed
    // origins, scope, and the `account` audience those roles add) are not imitated; the
    // layer reads none of them.
    "introspect RPT: .acr:",
    "introspect RPT, no hint: .acr:",
    "introspect RPT, no hint: .allowed-origins:",
    "introspect RPT, no hint: .aud:",
    "introspect RPT, no hint: .email",
    "introspect RPT, no hint: .family_name:",
    "introspect RPT, no hint: .given_name:",
    "introspect RPT, no hint: .name:",
    "introspect RPT, no hint: .preferred_username:",
    "introspect RPT, no hint: .realm_access:",
    "introspect RPT, no hint: .resource_access:",
    "introspect RPT, no hint: .scope:",
    "introspect RPT, no hint: .sid:",
];

/// One side of the comparison: where it is and how its requesting party's app authenticates.
struct Target {
    issuer: String,
    /// `photo-app` is public at Keycloak; the imitation has no public clients.
    app_secret: Option<&'static str>,
}

impl Target {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    async fn user_token(&self, user: &str) -> String {
        let mut form = vec![
            ("grant_type", "password"),
            ("client_id", APP_ID),
            ("username", user),
            ("password", user),
            ("scope", "openid"),
        ];
        if let Some(secret) = self.app_secret {
            form.push(("client_secret", secret));
        }
        let a = answer(
            http()
                .post(self.url("/protocol/openid-connect/token"))
                .form(&form)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text);
        a.body["access_token"].as_str().unwrap().to_owned()
    }
}

/// What a JSON value looks like: member names and types, not values. Arrays show the shape of
/// their first element (and `[]` when empty).
fn shape(v: &Value) -> Value {
    match v {
        Value::Null => json!("null"),
        Value::Bool(_) => json!("bool"),
        Value::Number(_) => json!("number"),
        Value::String(_) => json!("string"),
        Value::Array(a) => match a.first() {
            Some(first) => json!([shape(first)]),
            None => json!([]),
        },
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
    }
}

/// The differences between two shapes, as `path: what` lines.
fn differences(path: &str, kc: &Value, imit: &Value, out: &mut Vec<String>) {
    match (kc, imit) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                let p = format!("{path}.{k}");
                match (a.get(k), b.get(k)) {
                    (Some(x), Some(y)) => differences(&p, x, y, out),
                    (Some(x), None) => out.push(format!("{p}: only Keycloak sends it ({x})")),
                    (None, Some(y)) => out.push(format!("{p}: only the imitation sends it ({y})")),
                    (None, None) => {}
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => match (a.first(), b.first()) {
            (Some(x), Some(y)) => differences(&format!("{path}[]"), x, y, out),
            (None, None) => {}
            _ => out.push(format!("{path}: Keycloak {kc}, imitation {imit}")),
        },
        _ if kc != imit => out.push(format!("{path}: Keycloak {kc}, imitation {imit}")),
        _ => {}
    }
}

/// The scenario, run against one target: every answer, labelled.
async fn scenario(t: &Target, pat: &str, resource_name: &str) -> Vec<(String, Answer)> {
    let mut out: Vec<(String, Answer)> = Vec::new();
    let h = http();
    let send =
        |req: reqwest::RequestBuilder| async move { answer(req.send().await.unwrap()).await };

    // Discovery.
    out.push((
        "discovery".into(),
        send(h.get(t.url("/.well-known/uma2-configuration"))).await,
    ));
    // The PAT (the real one is fetched by the caller; this is the answer's shape).
    out.push((
        "pat".into(),
        send(
            h.post(t.url("/protocol/openid-connect/token"))
                .basic_auth(RS_ID, Some(RS_SECRET))
                .form(&[("grant_type", "client_credentials")]),
        )
        .await,
    ));
    out.push((
        "pat with a wrong secret".into(),
        send(
            h.post(t.url("/protocol/openid-connect/token"))
                .basic_auth(RS_ID, Some("wrong"))
                .form(&[("grant_type", "client_credentials")]),
        )
        .await,
    ));

    // Resource set CRUD and listing.
    let rs = t.url("/authz/protection/resource_set");
    let uris = [
        format!("/{resource_name}/{{id}}/photos"),
        format!("/{resource_name}-all/*"),
    ];
    let created = send(
        h.post(&rs)
            .bearer_auth(pat)
            .json(&json!({"name": resource_name, "type": "urn:photo-api:album", "resource_scopes": ["view", "delete"], "uris": uris})),
    )
    .await;
    let id = created.body["_id"].as_str().unwrap_or_default().to_owned();
    out.push(("resource create".into(), created));
    // Lazy paths' query: `{id}` templates, and `/prefix/*` matching its bare prefix too.
    for (label, path) in [
        ("a template", format!("/{resource_name}/7/photos")),
        (
            "a template, another path",
            format!("/{resource_name}/7/videos"),
        ),
        ("a wildcard", format!("/{resource_name}-all/a/b")),
        ("a wildcard's bare prefix", format!("/{resource_name}-all")),
    ] {
        let found = send(
            // The names and paths are made of letters, digits, `-` and `/`: nothing to escape.
            h.get(format!("{rs}?uri={path}&matchingUri=true&deep=true&max=-1"))
                .bearer_auth(pat),
        )
        .await;
        let ids: Vec<&str> = found
            .body
            .as_array()
            .map(|a| a.iter().filter_map(|r| r["_id"].as_str()).collect())
            .unwrap_or_default();
        // The same resource found, or none, on both sides (shapes compare an empty array
        // with a non-empty one).
        let mut compared = found.clone();
        compared.body = if ids.contains(&id.as_str()) {
            json!([{"found": "this test's resource"}])
        } else {
            json!([])
        };
        out.push((format!("resource list by matching uri, {label}"), compared));
    }
    out.push((
        "resource create, same name".into(),
        send(
            h.post(&rs)
                .bearer_auth(pat)
                .json(&json!({"name": resource_name, "resource_scopes": ["view"]})),
        )
        .await,
    ));
    out.push((
        "resource read".into(),
        send(h.get(format!("{rs}/{id}")).bearer_auth(pat)).await,
    ));
    out.push((
        "resource update".into(),
        send(
            h.put(format!("{rs}/{id}"))
                .bearer_auth(pat)
                .json(&json!({"name": resource_name, "type": "urn:photo-api:album", "resource_scopes": ["view", "delete"]})),
        )
        .await,
    ));
    out.push((
        "resource list by name".into(),
        send(
            h.get(format!("{rs}?name={resource_name}&exactName=true"))
                .bearer_auth(pat),
        )
        .await,
    ));
    out.push((
        "resource list deep".into(),
        send(
            h.get(format!(
                "{rs}?name={resource_name}&exactName=true&deep=true"
            ))
            .bearer_auth(pat),
        )
        .await,
    ));
    out.push((
        "resource read unknown".into(),
        send(h.get(format!("{rs}/no-such-id")).bearer_auth(pat)).await,
    ));
    out.push(("resource without a PAT".into(), send(h.get(&rs)).await));
    out.push((
        "resource with an unknown PAT".into(),
        send(h.get(&rs).bearer_auth("not-a-pat")).await,
    ));
    out.push((
        "resource read, id with an escaped unreserved character".into(),
        send(
            h.get(format!("{rs}/{}", id.replacen('-', "%2D", 1)))
                .bearer_auth(pat),
        )
        .await,
    ));

    // Permission tickets.
    let perm = t.url("/authz/protection/permission");
    let view = json!([{"resource_id": id, "resource_scopes": ["view"]}]);
    let delete = json!([{"resource_id": id, "resource_scopes": ["delete"]}]);
    let ticket_view = send(h.post(&perm).bearer_auth(pat).json(&view)).await;
    let tv = ticket_view.body["ticket"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    out.push(("ticket".into(), ticket_view));
    let ticket_delete = send(h.post(&perm).bearer_auth(pat).json(&delete)).await;
    let td = ticket_delete.body["ticket"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    out.push((
        "ticket, bare object".into(),
        send(h.post(&perm).bearer_auth(pat).json(&view[0])).await,
    ));
    out.push((
        "ticket, empty array".into(),
        send(h.post(&perm).bearer_auth(pat).json(&json!([]))).await,
    ));
    out.push((
        "ticket, unknown resource".into(),
        send(
            h.post(&perm)
                .bearer_auth(pat)
                .json(&json!([{"resource_id": "no-such-id", "resource_scopes": ["view"]}])),
        )
        .await,
    ));
    out.push((
        "ticket without a PAT".into(),
        send(h.post(&perm).json(&view)).await,
    ));

    // The uma-ticket grant.
    let token = t.url("/protocol/openid-connect/token");
    let bob = t.user_token("bob").await;
    let grant = |ticket: String, extra: Vec<(&'static str, &'static str)>| {
        let mut form = vec![("grant_type", UMA_GRANT.to_owned()), ("ticket", ticket)];
        form.extend(extra.into_iter().map(|(k, v)| (k, v.to_owned())));
        h.post(&token).bearer_auth(&bob).form(&form)
    };
    let granted = send(grant(tv.clone(), vec![])).await;
    let rpt = granted.body["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    out.push(("grant".into(), granted));
    out.push(("grant denied".into(), send(grant(td.clone(), vec![])).await));
    out.push((
        "grant denied, submit_request".into(),
        send(grant(td.clone(), vec![("submit_request", "true")])).await,
    ));
    out.push((
        "grant denied, submit_request=false".into(),
        send(grant(td.clone(), vec![("submit_request", "false")])).await,
    ));
    out.push((
        "grant denied, submit_request empty".into(),
        send(grant(td.clone(), vec![("submit_request", "")])).await,
    ));
    out.push((
        "grant, forged ticket".into(),
        send(grant("not-a-ticket".into(), vec![])).await,
    ));
    out.push((
        "grant, no ticket".into(),
        send(
            h.post(&token)
                .bearer_auth(&bob)
                .form(&[("grant_type", UMA_GRANT)]),
        )
        .await,
    ));

    // Introspection.
    let intro = t.url("/protocol/openid-connect/token/introspect");
    let introspect = |token: String, hint: Option<&'static str>| {
        let mut form = vec![("token", token)];
        if let Some(hint) = hint {
            form.push(("token_type_hint", hint.to_owned()));
        }
        h.post(&intro)
            .basic_auth(RS_ID, Some(RS_SECRET))
            .form(&form)
    };
    let rpt_hint = Some("requesting_party_token");
    out.push((
        "introspect RPT".into(),
        send(introspect(rpt.clone(), rpt_hint)).await,
    ));
    out.push((
        "introspect RPT, no hint".into(),
        send(introspect(rpt.clone(), None)).await,
    ));
    out.push((
        "introspect PAT".into(),
        send(introspect(pat.to_owned(), rpt_hint)).await,
    ));
    out.push((
        "introspect user token".into(),
        send(introspect(bob.clone(), rpt_hint)).await,
    ));
    out.push((
        "introspect garbage".into(),
        send(introspect("garbage".into(), rpt_hint)).await,
    ));
    out.push((
        "introspect, no token".into(),
        send(
            h.post(&intro)
                .basic_auth(RS_ID, Some(RS_SECRET))
                .form(&[("token_type_hint", "requesting_party_token")]),
        )
        .await,
    ));
    out.push((
        "introspect with the PAT only".into(),
        send(
            h.post(&intro)
                .bearer_auth(pat)
                .form(&[("token", rpt.as_str())]),
        )
        .await,
    ));

    // Deletion, then the resource is gone.
    out.push((
        "resource delete".into(),
        send(h.delete(format!("{rs}/{id}")).bearer_auth(pat)).await,
    ));
    out.push((
        "resource read deleted".into(),
        send(h.get(format!("{rs}/{id}")).bearer_auth(pat)).await,
    ));
    out.push((
        "grant, resource deleted".into(),
        send(grant(tv.clone(), vec![])).await,
    ));
    out
}

async fn imitation(resource_name: &str) -> TestAs {
    AuthServer::builder()
        .dialect(Dialect::Keycloak)
        .realm("photos")
        .client(RS_ID, RS_SECRET)
        .client(APP_ID, "photo-app-secret")
        .user("alice", "alice")
        .user("bob", "bob")
        .policy(
            Policy::resource(resource_name)
                .scopes(["view"])
                .users(["bob"]),
        )
        .rpt_format(RptFormat::Jwt)
        .spawn()
        .await
        .expect("the imitation starts")
}

/// Keys of the discovery document: those the imitation sends must be Keycloak's too, with
/// the same types; Keycloak's many others (OpenID Connect metadata) are not compared.
fn discovery_subset(kc: &Value, imit: &Value) -> Value {
    let keys: Vec<&String> = imit
        .as_object()
        .map(|o| o.keys().collect())
        .unwrap_or_default();
    let mut picked = serde_json::Map::new();
    for k in keys {
        if let Some(v) = kc.get(k) {
            picked.insert(k.clone(), v.clone());
        }
    }
    Value::Object(picked)
}

#[tokio::test]
async fn the_imitation_answers_like_keycloak() {
    require_keycloak().await;
    let name = unique("compare-album");
    let imit = imitation(&name).await;
    let kc_target = Target {
        issuer: ISSUER.to_owned(),
        app_secret: None,
    };
    let imit_target = Target {
        issuer: imit.issuer(),
        app_secret: Some("photo-app-secret"),
    };
    let kc = scenario(&kc_target, &pat_of(RS_ID, RS_SECRET).await, &name).await;
    let imit_pat = {
        let a = answer(
            http()
                .post(imit_target.url("/protocol/openid-connect/token"))
                .basic_auth(RS_ID, Some(RS_SECRET))
                .form(&[("grant_type", "client_credentials")])
                .send()
                .await
                .unwrap(),
        )
        .await;
        a.body["access_token"].as_str().unwrap().to_owned()
    };
    let im = scenario(&imit_target, &imit_pat, &name).await;

    let mut found = Vec::new();
    let mut report = String::new();
    for ((label, k), (_, i)) in kc.iter().zip(&im) {
        report.push_str(&format!(
            "== {label}\n   Keycloak  {} {}\n   imitation {} {}\n",
            k.status,
            k.text.chars().take(300).collect::<String>(),
            i.status,
            i.text.chars().take(300).collect::<String>()
        ));
        if k.status != i.status {
            found.push(format!(
                "{label}: status: Keycloak {}, imitation {}",
                k.status, i.status
            ));
        }
        let kb = if label == "discovery" {
            discovery_subset(&k.body, &i.body)
        } else {
            k.body.clone()
        };
        let mut d = Vec::new();
        differences("", &shape(&kb), &shape(&i.body), &mut d);
        // Error codes must agree; descriptions only where they carry meaning (Keycloak's
        // `access_denied` says `not_authorized` or `request_submitted`).
        if k.body.get("error").is_some() || i.body.get("error").is_some() {
            let meaningful = k.body["error"] == "access_denied";
            if k.body["error"] != i.body["error"]
                || (meaningful && k.body["error_description"] != i.body["error_description"])
            {
                d.push(format!(
                    "error: Keycloak {} {}, imitation {} {}",
                    k.body["error"],
                    k.body["error_description"],
                    i.body["error"],
                    i.body["error_description"]
                ));
            }
        }
        // Values that say what a token is.
        for key in ["token_type", "typ", "upgraded", "active"] {
            if let (Some(a), Some(b)) = (k.body.get(key), i.body.get(key))
                && a != b
            {
                d.push(format!("value of {key}: Keycloak {a}, imitation {b}"));
            }
        }
        if k.text.is_empty() != i.text.is_empty() {
            d.push(format!(
                "body: Keycloak {:?}, imitation {:?}",
                k.text, i.text
            ));
        }
        found.extend(d.into_iter().map(|d| format!("{label}: {d}")));
    }
    eprintln!("{report}");
    let unexpected: Vec<&String> = found
        .iter()
        .filter(|f| !DELIBERATE.iter().any(|d| f.starts_with(d)))
        .collect();
    assert!(
        unexpected.is_empty(),
        "the imitation differs from Keycloak:\n{}",
        unexpected
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
}
