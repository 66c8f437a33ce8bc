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
//! Set `UMA_ISSUER`, `UMA_CLIENT_ID` and `UMA_CLIENT_SECRET` to use another AS, and
//! `UMA_DIALECT=keycloak` for Keycloak (the README's "Keycloak in five minutes").
#![allow(clippy::print_stdout, reason = "an example that says where it listens")]

use axum::{Extension, Router, routing::get};
use http::Method;
use tower_uma::{Dialect, ResourceDecl, ResourceMap, Route, UmaLayer, UmaPrincipal};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_owned());
    let dialect = match env("UMA_DIALECT", "standard").as_str() {
        "keycloak" => Dialect::Keycloak,
        _ => Dialect::Standard,
    };
    let uma = UmaLayer::discover(
        env("UMA_ISSUER", "http://127.0.0.1:8180"),
        env("UMA_CLIENT_ID", "photo-api"),
        env("UMA_CLIENT_SECRET", "photo-api-secret"),
    )
    .dialect(dialect)
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
