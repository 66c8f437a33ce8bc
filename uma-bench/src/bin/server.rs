//! `uma-bench-server`: an axum hello-world (`GET /hello` answers `Hello, World!`) served
//! bare or behind [`UmaLayer`], for end-to-end benchmarks.
//!
//! ```text
//! uma-bench-server --mode bare  --listen 127.0.0.1:0
//! uma-bench-server --mode layer --listen 127.0.0.1:0 --tokens 100 --token-file /tmp/rpts
//! ```
//!
//! The first line on stdout is always `listening on http://ADDR`, printed once the server
//! is ready to answer. In `layer` mode the server first starts an in-process `uma-test-as`,
//! registers the resource, mints `--tokens` RPTs (valid for two days), sends one request per
//! RPT through the layer so that every RPT is cached (and checks each is allowed), and writes
//! the RPTs to `--token-file`, one per line (or prints them after the first line, as
//! `rpt VALUE`, when no file is given). The cache keeps entries for a day, so a benchmark never
//! sees an expiry.
//!
//! With `--threads 1` (the default) the server runs on a current-thread tokio runtime; more
//! threads use the multi-thread runtime. SIGINT or SIGTERM stops it gracefully, which lets
//! valgrind write its output; in `layer` mode it then prints to stderr how many
//! introspection calls the AS received.
//!
//! [`UmaLayer`]: tower_uma::UmaLayer
#![allow(
    clippy::print_stdout,
    reason = "the server reports its address and RPTs on stdout"
)]

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use axum::serve::ListenerExt;
use clap::{Parser, ValueEnum};
use http::{Method, Request, StatusCode, header::AUTHORIZATION};
use tower::ServiceExt;
use tower_uma::{IntrospectionCache, ResourceMap, Route, UmaLayer};
use uma_test_as::{AuthServer, Endpoint, ResourceDescription, RptPermission, RptSpec, TestAs};

const RS_ID: &str = "bench-api";
const RS_SECRET: &str = "bench-api-secret-41c9";
/// The path the hello-world answers on.
const PATH: &str = "/hello";

/// What sits in front of the hello-world handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// The axum app alone.
    Bare,
    /// The app behind `UmaLayer`, with every RPT cached before the first request.
    Layer,
}

/// An axum hello-world, bare or behind tower-uma, for end-to-end benchmarks.
#[derive(Debug, Parser)]
#[command(name = "uma-bench-server", version)]
struct Args {
    /// bare: the app alone; layer: behind UmaLayer with an in-process AS and cached RPTs.
    #[arg(long, value_enum)]
    mode: Mode,
    /// The address to listen on; port 0 picks a free one (the first line of output says which).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// layer mode: how many RPTs to mint and cache.
    #[arg(long, default_value_t = 100)]
    tokens: usize,
    /// layer mode: where to write the RPTs, one per line (default: print them as `rpt VALUE`).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Runtime threads; 1 uses tokio's current-thread runtime.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let rt = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()?
    };
    rt.block_on(run(args))
}

/// The hello-world app.
fn app() -> Router {
    Router::new().route(PATH, get(|| async { "Hello, World!" }))
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let (app, auth, tokens) = match args.mode {
        Mode::Bare => (app(), None, Vec::new()),
        Mode::Layer => {
            let (app, auth, tokens) = layered(args.tokens).await?;
            (app, Some(auth), tokens)
        }
    };

    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let addr = listener.local_addr()?;
    if let Some(path) = &args.token_file {
        let mut body = tokens.join("\n");
        body.push('\n');
        std::fs::write(path, body)?;
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on http://{addr}")?;
    if args.token_file.is_none() {
        for t in &tokens {
            writeln!(out, "rpt {t}")?;
        }
    }
    out.flush()?;
    drop(out);

    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown())
        .await?;
    if let Some(auth) = auth {
        eprintln!(
            "uma-bench-server: the AS received {} introspection calls for {} RPTs",
            auth.count(Endpoint::Introspection),
            tokens.len()
        );
    }
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Starts the AS, builds the layer, mints `count` RPTs and caches each of them.
async fn layered(
    count: usize,
) -> Result<(Router, TestAs, Vec<String>), Box<dyn std::error::Error>> {
    let auth = AuthServer::builder()
        .client(RS_ID, RS_SECRET)
        .spawn()
        .await?;
    let resource_id = auth.register_resource(
        "alice",
        ResourceDescription {
            name: Some("hello".into()),
            resource_scopes: vec!["read".into(), "write".into()],
            ..ResourceDescription::default()
        },
    );
    let cache = IntrospectionCache::builder()
        .max_entries(u64::try_from(count)?.max(10_000))
        .max_ttl(Duration::from_secs(24 * 3_600))
        .build();
    let layer = UmaLayer::discover(auth.issuer(), RS_ID, RS_SECRET)
        .insecure_allow_http()
        .await?
        .realm("bench")
        .resources(
            ResourceMap::new().route(
                Route::new(PATH)
                    .resource_id(&resource_id)
                    .scopes(Method::GET, ["read"]),
            ),
        )
        .cache(cache)
        .build()
        .await?;
    let app = app().layer(layer);

    let now = i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs())?;
    let tokens: Vec<String> = (0..count)
        .map(|n| {
            auth.mint_rpt(RptSpec {
                sub: Some("bob".into()),
                client_id: Some("bench-app".into()),
                exp: Some(now + 2 * 24 * 3_600),
                iat: Some(now),
                permissions: vec![
                    RptPermission::new(&resource_id, ["read"]),
                    RptPermission::new(format!("album-{n}"), ["view"]),
                ],
                ..RptSpec::default()
            })
        })
        .collect();
    for token in &tokens {
        let req = Request::get(PATH)
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())?;
        let status = app.clone().oneshot(req).await?.status();
        if status != StatusCode::OK {
            return Err(format!("warming the cache: an RPT got {status}").into());
        }
    }
    let calls = auth.count(Endpoint::Introspection);
    if calls != u64::try_from(count)? {
        return Err(
            format!("warming the cache made {calls} introspection calls for {count} RPTs").into(),
        );
    }
    Ok((app, auth, tokens))
}
