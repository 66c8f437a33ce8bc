//! The smallest axum service protected by `UmaLayer`, its one route table declared with
//! `tower_uma::axum::UmaRouter` (each path written once, with its handler and its UMA rule).
//!
//! Run with `cargo run --example axum --features axum`, after starting the bundled AS in
//! another terminal:
//!
//! ```text
//! cargo run -p uma-test-as -- --listen 127.0.0.1:8180 --config uma-test-as/examples/as.toml
//! ```
//!
//! It registers the resource `album` at the AS, prints `listening on http://127.0.0.1:3000`
//! and serves `GET /albums/{id}` (scope `view`) and a public `GET /health`. Then
//! `curl -i http://127.0.0.1:3000/albums/1` answers `401` with
//! `WWW-Authenticate: UMA realm="photos", as_uri="http://127.0.0.1:8180", ticket="…"`.
//! Set `UMA_ISSUER`, `UMA_CLIENT_ID` and `UMA_CLIENT_SECRET` to use another AS, and
//! `UMA_DIALECT=keycloak` for Keycloak (the README's "Keycloak in five minutes").
//!
//! With `RUST_LOG=tower_uma=debug` it logs one line per request it decides (on standard
//! error): the method, path, resource, scopes, outcome (`challenged`, `allowed`, …), reason
//! (`no_token`, `granted`, `insufficient_scope`, …) and the token's fingerprint, never the
//! token.
#![allow(clippy::print_stdout, reason = "an example that says where it listens")]

use axum::routing::get;
use http::Method;
use tower_uma::axum::UmaRouter;
use tower_uma::{Dialect, ResourceDecl, UmaLayer, UmaPrincipal};

/// `GET /albums/{id}`: only with an RPT granting `view` on `album`.
async fn show_album(p: UmaPrincipal) -> String {
    format!("an album, shown to {}\n", p.subject().unwrap_or_default())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Logs on standard error, filtered by `RUST_LOG`: `RUST_LOG=tower_uma=debug` prints one
    // line per request the layer decides (errors only when unset).
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_owned());
    let dialect: Dialect = env("UMA_DIALECT", "standard").parse()?;
    let uma = UmaLayer::discover(
        env("UMA_ISSUER", "http://127.0.0.1:8180"),
        env("UMA_CLIENT_ID", "photo-api"),
        env("UMA_CLIENT_SECRET", "photo-api-secret"),
    )
    .dialect(dialect)
    .insecure_allow_http()
    .realm("photos");

    let (app, _uma) = UmaRouter::new()
        .route("/albums/{id}", get(show_album), |rule| {
            rule.declare(ResourceDecl::new("album", ["view"]).with_owner("alice"))
                .scopes(Method::GET, ["view"])
        })
        .public("/health", get(|| async { "ok\n" }))
        .build(uma)
        .await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
