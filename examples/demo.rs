//! The whole UMA 2.0 flow on the bundled authorization server, as a readable transcript.
//!
//! Run with `cargo run --example demo`.
//!
//! It starts `uma-test-as` in-process (users alice and bob), a photo-album API protected by
//! `UmaLayer` (alice owns the albums; bob may view them but not delete them), and a UMA
//! client that walks the flow, printing every HTTP exchange, and under each step the calls the
//! layer itself made to the AS (discovery, its PAT, resource registration, permission requests,
//! introspection), read from the AS's request log:
//!
//! 1. `GET /albums/42` without a token → `401` with a UMA challenge and a permission ticket;
//! 2. bob signs in at the AS (password grant) for an ID token;
//! 3. the client trades the ticket and bob's ID token for an RPT (UMA grant);
//! 4. `GET /albums/42` with the RPT → `200`;
//! 5. `DELETE /albums/42` with the same RPT → `401` and a new ticket;
//! 6. the AS answers that ticket with `request_denied`: bob may not delete.
//!
//! It ends in a few seconds and exits 0. Tokens are shortened in the transcript.
#![allow(
    clippy::print_stdout,
    reason = "the transcript is the point of this example"
)]

use std::time::Duration;

use axum::Router;
use axum::extract::Path;
use axum::routing::get;
use axum::{Extension, Json};
use http::Method;
use serde_json::{Value, json};
use tower_uma::{
    ResourceDecl, ResourceMap, Route, UmaLayer, UmaPrincipal, challenge::parse_uma_challenge,
};
use uma_test_as::{AuthServer, Endpoint, Policy, RecordedRequest, TestAs};

const ID_TOKEN: &str = "http://openid.net/specs/openid-connect-core-1_0.html#IDToken";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Logs on standard error, filtered by `RUST_LOG`: `RUST_LOG=tower_uma=debug` prints one
    // line per request the layer decides (errors only when unset).
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    // The authorization server: a resource server client, a client app, two users, and the
    // owner's policy for albums: bob may view.
    let authz = AuthServer::builder()
        .client("photo-api", "photo-api-secret")
        .client("photo-app", "photo-app-secret")
        .user("alice", "alice-pw")
        .user("bob", "bob-pw")
        .policy(Policy::resource("album").scopes(["view"]).users(["bob"]))
        .spawn()
        .await?;
    println!("authorization server  {}", authz.issuer());
    let mut seen = LayerCalls::default();

    // The protected API: one resource, "album", owned by alice, registered at start-up.
    let uma = UmaLayer::discover(authz.issuer(), "photo-api", "photo-api-secret")
        .insecure_allow_http() // the demo AS speaks plain http on loopback
        .realm("photos")
        .resources(
            ResourceMap::new().route(
                Route::new("/albums/{id}")
                    .declare(ResourceDecl::new("album", ["view", "delete"]).with_owner("alice"))
                    .scopes(Method::GET, ["view"])
                    .scopes(Method::DELETE, ["delete"]),
            ),
        )
        .build()
        .await?;
    let app = Router::new()
        .route("/albums/{id}", get(show_album).delete(delete_album))
        .layer(uma);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let api = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    println!("photo API             {api}  (album owned by alice; bob may view)\n");
    step("0. the layer starts: it discovers the AS, gets its PAT and registers `album`");
    seen.show(&authz);
    println!();

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .no_proxy()
        .build()?;
    let token_endpoint = format!("{}/token", authz.issuer());

    step("1. bob's app asks for an album, without a token");
    let resp = http.get(format!("{api}/albums/42")).send().await?;
    show_request("GET", &format!("{api}/albums/42"), None);
    seen.show(&authz);
    let challenge = show_response(resp).await?.challenge;
    let ticket = challenge.ok_or("expected a UMA challenge")?;

    step("2. bob signs in at the authorization server for an ID token");
    show_request(
        "POST",
        &token_endpoint,
        Some(
            "Authorization: Basic … (photo-app's client id and secret, RFC 6749 §2.3.1)\n    \
             grant_type=password&username=bob&password=…&scope=openid",
        ),
    );
    let resp = http
        .post(&token_endpoint)
        .basic_auth("photo-app", Some("photo-app-secret"))
        .form(&[
            ("grant_type", "password"),
            ("username", "bob"),
            ("password", "bob-pw"),
            ("scope", "openid"),
        ])
        .send()
        .await?;
    let body = show_response(resp).await?.json;
    let id_token = body["id_token"]
        .as_str()
        .ok_or("expected an id_token")?
        .to_owned();

    step("3. the app trades the ticket and bob's ID token for an RPT");
    let rpt = uma_grant(&http, &token_endpoint, &ticket, &id_token).await?["access_token"]
        .as_str()
        .ok_or("expected an RPT")?
        .to_owned();

    step("4. the app retries with the RPT");
    show_request(
        "GET",
        &format!("{api}/albums/42"),
        Some(&format!("Authorization: Bearer {}", short(&rpt))),
    );
    let resp = http
        .get(format!("{api}/albums/42"))
        .bearer_auth(&rpt)
        .send()
        .await?;
    seen.show(&authz);
    show_response(resp).await?;

    step("5. the app tries to delete the album with the same RPT");
    show_request(
        "DELETE",
        &format!("{api}/albums/42"),
        Some(&format!("Authorization: Bearer {}", short(&rpt))),
    );
    let resp = http
        .delete(format!("{api}/albums/42"))
        .bearer_auth(&rpt)
        .send()
        .await?;
    seen.show(&authz);
    let ticket = show_response(resp)
        .await?
        .challenge
        .ok_or("expected a UMA challenge")?;

    step("6. the app asks for delete permission; alice's policy does not allow it");
    let answer = uma_grant(&http, &token_endpoint, &ticket, &id_token).await?;
    if answer["error"] != "request_denied" {
        return Err(format!("expected request_denied, got {answer}").into());
    }

    println!("\nDone: bob could view album 42 and was refused its deletion.");
    Ok(())
}

async fn show_album(
    Path(id): Path<String>,
    Extension(who): Extension<UmaPrincipal>,
) -> Json<Value> {
    Json(json!({
        "album": id,
        "title": "Holidays",
        "viewer": who.subject(),
        "granted": who.scopes(),
    }))
}

async fn delete_album(Path(id): Path<String>) -> String {
    format!("album {id} deleted")
}

async fn uma_grant(
    http: &reqwest::Client,
    token_endpoint: &str,
    ticket: &str,
    id_token: &str,
) -> Result<Value, Box<dyn std::error::Error>> {
    show_request(
        "POST",
        token_endpoint,
        Some(&format!(
            "Authorization: Basic … (photo-app's client id and secret)\n    \
             grant_type=urn:ietf:params:oauth:grant-type:uma-ticket&ticket={}&claim_token={}&claim_token_format={ID_TOKEN}",
            short(ticket),
            short(id_token)
        )),
    );
    let resp = http
        .post(token_endpoint)
        .basic_auth("photo-app", Some("photo-app-secret"))
        .form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:uma-ticket"),
            ("ticket", ticket),
            ("claim_token", id_token),
            ("claim_token_format", ID_TOKEN),
        ])
        .send()
        .await?;
    Ok(show_response(resp).await?.json)
}

struct Shown {
    json: Value,
    challenge: Option<String>,
}

fn step(title: &str) {
    println!("── {title}");
}

fn show_request(method: &str, url: &str, detail: Option<&str>) {
    println!("  → {method} {url}");
    if let Some(d) = detail {
        println!("    {d}");
    }
}

async fn show_response(resp: reqwest::Response) -> Result<Shown, Box<dyn std::error::Error>> {
    println!("  ← {}", resp.status());
    let mut challenge = None;
    if let Some(v) = resp.headers().get(http::header::WWW_AUTHENTICATE) {
        let v = v.to_str()?;
        let c = parse_uma_challenge(v)?;
        println!(
            "    WWW-Authenticate: UMA realm=\"{}\", as_uri=\"{}\", ticket=\"{}\"",
            c.realm.as_deref().unwrap_or(""),
            c.as_uri,
            short(&c.ticket)
        );
        challenge = Some(c.ticket);
    }
    if let Some(w) = resp.headers().get(http::header::WARNING) {
        println!("    Warning: {}", w.to_str()?);
    }
    let text = resp.text().await?;
    let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if !text.is_empty() {
        println!("    {}", shorten_tokens(&json).unwrap_or(text));
    }
    println!();
    Ok(Shown { json, challenge })
}

/// The body with every token-like member shortened.
fn shorten_tokens(v: &Value) -> Option<String> {
    let mut v = v.as_object()?.clone();
    for key in ["access_token", "id_token", "ticket", "refresh_token"] {
        if let Some(Value::String(s)) = v.get_mut(key) {
            *s = short(s);
        }
    }
    serde_json::to_string(&v).ok()
}

/// The calls the layer made to the AS, printed once each: everything the AS recorded except
/// the demo client's own calls (photo-app's, at the token endpoint).
#[derive(Default)]
struct LayerCalls {
    shown: [usize; 5],
}

impl LayerCalls {
    const ENDPOINTS: [Endpoint; 5] = [
        Endpoint::Discovery,
        Endpoint::Token,
        Endpoint::ResourceRegistration,
        Endpoint::Permission,
        Endpoint::Introspection,
    ];

    fn show(&mut self, authz: &TestAs) {
        for (i, endpoint) in Self::ENDPOINTS.into_iter().enumerate() {
            let requests = authz.requests(endpoint);
            for r in requests.iter().skip(self.shown[i]) {
                let body = String::from_utf8_lossy(&r.body);
                // The client app's own grants are in the transcript above.
                if endpoint == Endpoint::Token && !body.contains("client_credentials") {
                    continue;
                }
                println!("    ⇢ the layer → AS: {} {}", r.method, r.uri);
                println!("        Authorization: {}", credential(r, endpoint));
                if !body.is_empty() {
                    println!("        {}", shorten_form(&body));
                }
            }
            self.shown[i] = requests.len();
        }
    }
}

/// What the layer authenticated with, without printing it.
fn credential(r: &RecordedRequest, endpoint: Endpoint) -> String {
    match r.header("authorization") {
        Some(v) if v.starts_with("Basic ") => {
            "Basic … (photo-api's client id and secret, RFC 6749 §2.3.1)".to_owned()
        }
        Some(v) if v.starts_with("Bearer ") && endpoint == Endpoint::Introspection => {
            "Bearer … (its PAT; RFC 7662 §2.1)".to_owned()
        }
        Some(v) if v.starts_with("Bearer ") => "Bearer … (its PAT, UMA FedAuthz §1.3)".to_owned(),
        Some(_) => "(another scheme)".to_owned(),
        None => "none (public metadata)".to_owned(),
    }
}

/// A form or JSON body with the values of token-like fields shortened.
fn shorten_form(body: &str) -> String {
    if body.starts_with('[') || body.starts_with('{') {
        return body.to_owned();
    }
    body.split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if ["token", "ticket", "client_secret"].contains(&k) => {
                format!("{k}={}", short(v))
            }
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn short(token: &str) -> String {
    let head: String = token.chars().take(8).collect();
    format!("{head}…")
}
