//! The smallest hyper 1 service protected by `UmaLayer` (no axum).
//!
//! Run with `cargo run --example hyper`, after starting the bundled AS in another terminal:
//!
//! ```text
//! cargo run -p uma-test-as -- --listen 127.0.0.1:8180 --config uma-test-as/examples/as.toml
//! ```
//!
//! It prints `listening on http://127.0.0.1:3001` and protects `/albums` and every path below
//! it (the route `/albums/*`) with scope `view` of the resource `album`. `curl -i http://127.0.0.1:3001/albums/1`
//! answers `401` with a UMA challenge; anything else answers `403` (unmapped).
#![allow(clippy::print_stdout, reason = "an example that says where it listens")]

use std::convert::Infallible;

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tower::ServiceBuilder;
use tower_uma::{ResourceDecl, ResourceMap, Route, UmaLayer, UmaPrincipal};

async fn album(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let who = req
        .extensions()
        .get::<UmaPrincipal>()
        .and_then(|p| p.subject().map(str::to_owned))
        .unwrap_or_default();
    Ok(Response::new(Full::new(Bytes::from(format!(
        "an album, shown to {who}\n"
    )))))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Logs on standard error, filtered by `RUST_LOG`: `RUST_LOG=tower_uma=debug` prints one
    // line per request the layer decides (errors only when unset).
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let uma = UmaLayer::discover("http://127.0.0.1:8180", "photo-api", "photo-api-secret")
        .insecure_allow_http()
        .realm("photos")
        .resources(
            ResourceMap::new().route(
                Route::new("/albums/*")
                    .declare(ResourceDecl::new("album", ["view"]).with_owner("alice"))
                    .scopes(Method::GET, ["view"]),
            ),
        )
        .build()
        .await?;
    let service = ServiceBuilder::new().layer(uma).service_fn(album);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:3001").await?;
    println!("listening on http://{}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let service = TowerToHyperService::new(service.clone());
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
