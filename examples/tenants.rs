//! Two tenants behind one `TenantLayer`, each with its own authorization server, as a short
//! transcript.
//!
//! Run with `cargo run --example tenants`.
//!
//! It starts two `uma-test-as` in-process, one per customer (`acme` and `globex`, each with
//! the user bob, who may view albums), and one photo-album API whose requests belong to
//! `acme` when they are for the host `acme.localhost`, and to `globex` under the path prefix
//! `/globex` (stripped before the API sees the path). Then:
//!
//! 1. `GET /albums/42` for `acme.localhost` without a token → `401`, a ticket from acme's AS;
//! 2. bob gets an RPT for it from acme's AS → `200`;
//! 3. the same RPT at `/globex/albums/42` → `401` from globex's AS: acme's token grants nothing
//!    at globex, although both call their resource `album`;
//! 4. bob gets an RPT from globex's AS → `200`, and the API saw `/albums/42` (the prefix
//!    stripped, the router wrapped by the layer so that it routes the stripped path);
//! 5. a request no tenant takes → `404`, and neither AS was called;
//! 6. acme's AS goes down → acme's requests get `403` + `Warning`; globex is untouched.
//!
//! It ends in a few seconds and exits 0.
#![allow(
    clippy::print_stdout,
    reason = "the transcript is the point of this example"
)]

use axum::Router;
use axum::routing::get;
use http::Method;
use serde_json::Value;
use tower_uma::challenge::parse_uma_challenge;
use tower_uma::tenant::{TenantLayer, TenantMatch};
use tower_uma::{ResourceDecl, ResourceMap, Route, UmaLayer};
use uma_test_as::{AuthServer, Endpoint, Policy, TestAs};

const ID_TOKEN: &str = "http://openid.net/specs/openid-connect-core-1_0.html#IDToken";
const UMA_GRANT: &str = "urn:ietf:params:oauth:grant-type:uma-ticket";

type Failure = Box<dyn std::error::Error>;

/// One customer's authorization server: the API's client, the app, bob who may view albums.
async fn customer_as() -> Result<TestAs, Failure> {
    Ok(AuthServer::builder()
        .client("photo-api", "photo-api-secret")
        .client("photo-app", "photo-app-secret")
        .user("bob", "bob-pw")
        .policy(Policy::resource("album").scopes(["view"]).users(["bob"]))
        .spawn()
        .await?)
}

/// The same API description for every tenant; each AS gives `album` its own id.
fn tenant(authz: &TestAs, realm: &str) -> tower_uma::UmaLayerBuilder {
    UmaLayer::discover(authz.issuer(), "photo-api", "photo-api-secret")
        .insecure_allow_http() // the demo ASes speak plain http on loopback
        .realm(realm)
        .resources(
            ResourceMap::new().route(
                Route::new("/albums/{id}")
                    .declare(ResourceDecl::new("album", ["view"]))
                    .scopes(Method::GET, ["view"]),
            ),
        )
}

#[tokio::main]
async fn main() -> Result<(), Failure> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let (acme, globex) = (customer_as().await?, customer_as().await?);
    println!("acme's authorization server    {}", acme.issuer());
    println!("globex's authorization server  {}", globex.issuer());

    let layer = TenantLayer::builder()
        .tenant(
            "acme",
            TenantMatch::default().host("acme.localhost"),
            tenant(&acme, "acme-photos"),
        )
        .tenant(
            "globex",
            TenantMatch::default()
                .path_prefix("/globex")
                .strip_prefix(true),
            tenant(&globex, "globex-photos"),
        )
        .build()
        .await?;
    let router = Router::new().route(
        "/albums/{id}",
        get(|uri: http::Uri| async move { format!("an album; the API saw {}", uri.path()) }),
    );
    // The layer wraps the whole router (not `Router::layer`, which axum runs after routing):
    // globex's prefix is stripped first, so axum routes `/albums/{id}` for `/globex/albums/…`.
    let app = tower::Layer::layer(&layer, router);
    let app = axum::ServiceExt::<axum::extract::Request>::into_make_service(app);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let api = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    println!(
        "photo API                      {api}\n  acme: Host acme.localhost; globex: {api}/globex/…\n"
    );

    let http = reqwest::Client::builder().no_proxy().build()?;
    let get = |path: &str, host: Option<&str>, token: Option<&str>| {
        let mut req = http.get(format!("{api}{path}"));
        if let Some(host) = host {
            req = req.header(http::header::HOST, host);
        }
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        req.send()
    };

    println!("1. GET /albums/42, Host acme.localhost, no token");
    let resp = get("/albums/42", Some("acme.localhost"), None).await?;
    let ticket = challenge(&resp, &acme)?;

    println!("2. bob trades the ticket for an RPT at acme's AS, and retries");
    let rpt = rpt(&http, &acme, &ticket).await?;
    let resp = get("/albums/42", Some("acme.localhost"), Some(&rpt)).await?;
    expect(resp.status(), 200)?;
    println!("   200 {}", resp.text().await?);

    println!("3. the same RPT at /globex/albums/42");
    let resp = get("/globex/albums/42", None, Some(&rpt)).await?;
    let globex_ticket = challenge(&resp, &globex)?;
    println!("   acme's RPT grants nothing at globex");

    println!("4. bob trades globex's ticket for an RPT at globex's AS, and retries");
    let globex_rpt = self::rpt(&http, &globex, &globex_ticket).await?;
    let resp = get("/globex/albums/42", None, Some(&globex_rpt)).await?;
    expect(resp.status(), 200)?;
    let body = resp.text().await?;
    println!("   200 {body}");
    if !body.ends_with(" /albums/42") {
        return Err(format!("the API did not see the stripped path: {body}").into());
    }

    println!("5. GET /albums/42 for a host no tenant has");
    let before = calls(&acme) + calls(&globex);
    let resp = get("/albums/42", Some("nobody.localhost"), Some(&rpt)).await?;
    expect(resp.status(), 404)?;
    let after = calls(&acme) + calls(&globex);
    println!("   404; calls to the two ASes: {} more", after - before);
    if after != before {
        return Err("an AS was called for a request no tenant takes".into());
    }

    println!("6. acme's AS goes down");
    for e in Endpoint::ALL {
        acme.set_down(e, true);
    }
    let resp = get(
        "/albums/7",
        Some("acme.localhost"),
        Some("a-token-acme-never-saw"),
    )
    .await?;
    expect(resp.status(), 403)?;
    let warning = resp.headers().get(http::header::WARNING).cloned();
    println!("   acme: 403, Warning: {warning:?}");
    let resp = get("/globex/albums/7", None, None).await?;
    challenge(&resp, &globex)?;
    println!("   globex: still challenges with its own AS");

    println!("\nDone: two tenants, one layer, nothing shared.");
    Ok(())
}

/// The ticket of a `401` UMA challenge naming `authz`.
fn challenge(resp: &reqwest::Response, authz: &TestAs) -> Result<String, Failure> {
    expect(resp.status(), 401)?;
    let header = resp
        .headers()
        .get(http::header::WWW_AUTHENTICATE)
        .ok_or("no challenge")?
        .to_str()?;
    let c = parse_uma_challenge(header)?;
    println!(
        "   401 UMA realm={:?} as_uri={} ticket={}…",
        c.realm.as_deref().unwrap_or(""),
        c.as_uri,
        c.ticket.get(..8).unwrap_or(&c.ticket)
    );
    if c.as_uri != authz.issuer() {
        return Err(format!("the challenge names {}, not {}", c.as_uri, authz.issuer()).into());
    }
    Ok(c.ticket)
}

/// bob's RPT for `ticket` at `authz`: an ID token (password grant), then the UMA grant.
async fn rpt(http: &reqwest::Client, authz: &TestAs, ticket: &str) -> Result<String, Failure> {
    let token = format!("{}/token", authz.issuer());
    let id: Value = http
        .post(&token)
        .basic_auth("photo-app", Some("photo-app-secret"))
        .form(&[
            ("grant_type", "password"),
            ("username", "bob"),
            ("password", "bob-pw"),
            ("scope", "openid"),
        ])
        .send()
        .await?
        .json()
        .await?;
    let id_token = id["id_token"].as_str().ok_or("no id_token")?;
    let answer: Value = http
        .post(&token)
        .basic_auth("photo-app", Some("photo-app-secret"))
        .form(&[
            ("grant_type", UMA_GRANT),
            ("ticket", ticket),
            ("claim_token", id_token),
            ("claim_token_format", ID_TOKEN),
        ])
        .send()
        .await?
        .json()
        .await?;
    Ok(answer["access_token"].as_str().ok_or("no RPT")?.to_owned())
}

/// Every call `authz` has seen.
fn calls(authz: &TestAs) -> u64 {
    Endpoint::ALL.iter().map(|e| authz.count(*e)).sum()
}

fn expect(status: http::StatusCode, want: u16) -> Result<(), Failure> {
    if status.as_u16() == want {
        Ok(())
    } else {
        Err(format!("expected {want}, got {status}").into())
    }
}
