//! The smallest axum service protected by `UmaLayer`.
//!
//! Run with `cargo run --example axum`, after starting the bundled AS in another terminal:
//!
//! ```text
//! cargo run -p uma-test-as -- --listen 127.0.0.1:8180 --config uma-test-as/examples/as.toml
//! ```
//!
//! It registers the resource `album` at the AS, prints `listening on http://127.0.0.1:3000`
//! and serves `GET /albums/{id}` (scope `view`). Then
//! `curl -i http://127.0.0.1:3000/albums/1` answers `401` with
//! `WWW-Authenticate: UMA realm="photos", as_uri="http://127.0.0.1:8180", ticket="…"`.
//! Set `UMA_ISSUER`, `UMA_CLIENT_ID` and `UMA_CLIENT_SECRET` to use another AS.
//!
//! With `RUST_LOG=tower_uma=debug` it logs one line per request it decides (on standard
//! error): the method, path, resource, scopes, outcome (`challenged`, `allowed`, …), reason
//! (`no_token`, `granted`, `insufficient_scope`, …) and the token's fingerprint, never the
//! token.
#![allow(clippy::print_stdout, reason = "an example that says where it listens")]

use axum::{Extension, Router, routing::get};
use http::Method;
use tower_uma::{ResourceDecl, ResourceMap, Route, UmaLayer, UmaPrincipal};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Logs on standard error, filtered by `RUST_LOG`: `RUST_LOG=tower_uma=debug` prints one
    // line per request the layer decides (errors only when unset).
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_owned());
    let uma = UmaLayer::discover(
        env("UMA_ISSUER", "http://127.0.0.1:8180"),
        env("UMA_CLIENT_ID", "photo-api"),
        env("UMA_CLIENT_SECRET", "photo-api-secret"),
    )
    .insecure_allow_http()
    .await?
    .realm("photos")
    .resources(
        ResourceMap::new().route(
            Route::new("/albums/{id}")
                .declare(ResourceDecl::new("album", ["view"]).with_owner("alice"))
                .scopes(Method::GET, ["view"]),
        ),
    )
    .build()
    .await?;

    let app = Router::new()
        .route(
            "/albums/{id}",
            get(|Extension(p): Extension<UmaPrincipal>| async move {
                format!("an album, shown to {}\n", p.subject().unwrap_or_default())
            }),
        )
        .layer(uma);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
