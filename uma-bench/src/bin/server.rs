//! `uma-bench-server`: an axum hello-world (`GET /hello` answers `Hello, World!`) served
//! bare or behind [`UmaLayer`], or uma-proxy's forwarding service in front of such a
//! hello-world, with or without [`UmaLayer`], for end-to-end benchmarks.
//!
//! ```text
//! uma-bench-server --mode bare  --listen 127.0.0.1:0          # also --mode upstream
//! uma-bench-server --mode layer --listen 127.0.0.1:0 --tokens 100 --token-file /tmp/rpts
//! uma-bench-server --mode layer-outer --tokens 100 --token-file /tmp/rpts   # layer around the router
//! uma-bench-server --mode noop-layer                 # a do-nothing layer, for axum's own cost
//! uma-bench-server --mode proxy-bare --upstream http://127.0.0.1:8080
//! uma-bench-server --mode proxy-uma  --upstream http://127.0.0.1:8080 --token-file /tmp/rpts
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
//! The modes without UMA (`bare`, `upstream`, `noop-layer`, `proxy-bare`) write `--tokens`
//! stand-in tokens of the same shape (43 random base64url characters, like the AS's RPTs) to
//! `--token-file`, which they ignore. The scripts send them, so that every server receives the
//! same requests, `Authorization` header included, and a comparison measures what the layer
//! does rather than what the client sends.
//!
//! `proxy-bare` serves [`uma_proxy::forwarding_service`] to `--upstream` with
//! [`uma_proxy::serve`], as the `uma-proxy` binary does, without UMA. `proxy-uma` serves the
//! same forwarding service behind an [`UmaLayer`] built as in `layer` mode (in-process AS,
//! `/hello` mapped to the resource, `GET` needs `read`), i.e. what `uma-proxy` serves; its
//! RPTs are cached by sending one request per RPT through the proxy (to the upstream, which
//! must be up) before the first line is printed.
//!
//! With `--threads 1` (the default) the server runs on a current-thread tokio runtime; more
//! threads use the multi-thread runtime. SIGINT or SIGTERM stops it gracefully, which lets
//! valgrind write its output; in `layer` and `proxy-uma` modes it then prints to stderr how many
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
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use http::{
    Method, Request, StatusCode,
    header::{AUTHORIZATION, HOST},
};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tower::{Layer, ServiceExt};
use tower_uma::{IntrospectionCache, ResourceMap, Route, UmaLayer};
use uma_test_as::{AuthServer, Endpoint, ResourceDescription, RptPermission, RptSpec, TestAs};

const RS_ID: &str = "bench-api";
const RS_SECRET: &str = "bench-api-secret-41c9";
/// The path the hello-world answers on.
const PATH: &str = "/hello";

/// What sits in front of the hello-world handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// The axum app alone (`upstream` is the same: the hello-world the proxies forward to).
    #[value(alias = "upstream")]
    Bare,
    /// The app behind `UmaLayer`, with every RPT cached before the first request.
    Layer,
    /// The app with a layer that does nothing, added the same way (`Router::layer`): what
    /// axum itself charges for any layer (it boxes the layered route once more).
    NoopLayer,
    /// `UmaLayer` wrapped around the whole router instead of added with `Router::layer`.
    LayerOuter,
    /// uma-proxy's forwarding service to `--upstream`, without UMA.
    ProxyBare,
    /// uma-proxy's forwarding service to `--upstream` behind `UmaLayer`, RPTs cached.
    ProxyUma,
    /// An authorization server alone (uma-test-as) for the `uma-proxy` binary: client
    /// `bench-api`, a resource `hello` (owner `alice`, scopes `read`, `write`), `--tokens` RPTs
    /// granting `read` on it; the `listening on` line names its issuer.
    As,
}

/// An axum hello-world, bare or behind tower-uma, for end-to-end benchmarks.
#[derive(Debug, Parser)]
#[command(name = "uma-bench-server", version)]
struct Args {
    /// bare (or upstream): the app alone; layer: behind UmaLayer with an in-process AS and
    /// cached RPTs (added with Router::layer); layer-outer: the same with UmaLayer around the
    /// whole router; noop-layer: a do-nothing layer added with Router::layer; proxy-bare: uma-proxy forwarding to --upstream; proxy-uma: the same behind
    /// UmaLayer with an in-process AS and cached RPTs; as: the AS alone, for the uma-proxy
    /// binary (the `listening on` line names its issuer).
    #[arg(long, value_enum)]
    mode: Mode,
    /// proxy modes: the upstream to forward to, e.g. http://127.0.0.1:8080.
    #[arg(long, required_if_eq_any = [("mode", "proxy-bare"), ("mode", "proxy-uma")])]
    upstream: Option<String>,
    /// The address to listen on; port 0 picks a free one (the first line of output says which).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// How many RPTs to mint and cache (layer and proxy-uma modes), or stand-in tokens to
    /// write (the other modes).
    #[arg(long, default_value_t = 100)]
    tokens: usize,
    /// Where to write the RPTs or stand-in tokens, one per line (default: print them as
    /// `rpt VALUE`).
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
    if matches!(args.mode, Mode::ProxyBare | Mode::ProxyUma) {
        return run_proxy(args).await;
    }
    if args.mode == Mode::As {
        return run_as(args).await;
    }
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let addr = listener.local_addr()?;
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let (auth, tokens) = match args.mode {
        Mode::Layer => {
            let (layer, auth, tokens) = uma_layer(args.tokens).await?;
            let app = app().layer(layer);
            warm(&app, &auth, &tokens).await?;
            announce(addr, &tokens, args.token_file.as_deref())?;
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown())
                .await?;
            (Some(auth), tokens)
        }
        Mode::LayerOuter => {
            let (layer, auth, tokens) = uma_layer(args.tokens).await?;
            let app = layer.layer(app());
            warm(&app, &auth, &tokens).await?;
            announce(addr, &tokens, args.token_file.as_deref())?;
            axum::serve(
                listener,
                axum::ServiceExt::<Request<Body>>::into_make_service(app),
            )
            .with_graceful_shutdown(shutdown())
            .await?;
            (Some(auth), tokens)
        }
        Mode::NoopLayer => {
            let app = app().layer(tower::layer::layer_fn(|svc| svc));
            announce(
                addr,
                &stand_in_tokens(args.tokens),
                args.token_file.as_deref(),
            )?;
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown())
                .await?;
            (None, Vec::new())
        }
        _ => {
            announce(
                addr,
                &stand_in_tokens(args.tokens),
                args.token_file.as_deref(),
            )?;
            axum::serve(listener, app())
                .with_graceful_shutdown(shutdown())
                .await?;
            (None, Vec::new())
        }
    };
    if let Some(auth) = auth {
        report_calls(&auth, tokens.len());
    }
    Ok(())
}

/// The AS with the resource server's client and the resource `hello` (owner `alice`, scopes
/// `read` and `write`); returns it and the resource's id.
async fn start_as() -> Result<(TestAs, String), Box<dyn std::error::Error>> {
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
    Ok((auth, resource_id))
}

/// `as`: the AS alone, with its RPTs written out, until shutdown.
async fn run_as(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let (auth, resource_id) = start_as().await?;
    let tokens = mint(&auth, &resource_id, args.tokens)?;
    if let Some(path) = &args.token_file {
        let mut body = tokens.join("\n");
        body.push('\n');
        std::fs::write(path, body)?;
    }
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {}", auth.issuer())?;
        out.flush()?;
    }
    shutdown().await;
    report_calls(&auth, tokens.len());
    Ok(())
}

/// `n` tokens shaped like the AS's RPTs (32 random bytes, base64url without padding), for the
/// modes without UMA, which ignore them.
fn stand_in_tokens(n: usize) -> Vec<String> {
    use base64::Engine as _;
    (0..n)
        .map(|_| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
        })
        .collect()
}

/// Writes the RPTs to `token_file` (if any) and prints `listening on http://ADDR`, then the
/// RPTs as `rpt VALUE` lines when there is no file.
fn announce(
    addr: SocketAddr,
    tokens: &[String],
    token_file: Option<&std::path::Path>,
) -> std::io::Result<()> {
    if let Some(path) = token_file {
        let mut body = tokens.join("\n");
        body.push('\n');
        std::fs::write(path, body)?;
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on http://{addr}")?;
    if token_file.is_none() {
        for t in tokens {
            writeln!(out, "rpt {t}")?;
        }
    }
    out.flush()
}

/// Prints on stderr how many introspection calls the AS received.
fn report_calls(auth: &TestAs, tokens: usize) {
    eprintln!(
        "uma-bench-server: the AS received {} introspection calls for {tokens} RPTs",
        auth.count(Endpoint::Introspection),
    );
}

/// `proxy-bare` and `proxy-uma`: uma-proxy's forwarding service, without or with the layer,
/// served by `uma_proxy::serve` (as the `uma-proxy` binary serves it).
async fn run_proxy(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let upstream = args
        .upstream
        .as_deref()
        .ok_or("--upstream is required in proxy modes")?;
    let forward = uma_proxy::forwarding_service(
        uma_proxy::Upstream::parse(upstream)?,
        uma_proxy::ForwardOptions::default(),
    );
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let addr = listener.local_addr()?;
    let grace = Duration::from_secs(5);
    let (server, auth, tokens) = if args.mode == Mode::ProxyUma {
        let (layer, auth, tokens) = uma_layer(args.tokens).await?;
        let service = layer.layer(forward);
        let server = tokio::spawn(uma_proxy::serve(listener, service, shutdown(), grace));
        warm_over_http(addr, &tokens).await?;
        let calls = auth.count(Endpoint::Introspection);
        if calls != u64::try_from(tokens.len())? {
            return Err(format!(
                "warming the cache made {calls} introspection calls for {} RPTs",
                tokens.len()
            )
            .into());
        }
        (server, Some(auth), tokens)
    } else {
        let server = tokio::spawn(uma_proxy::serve(listener, forward, shutdown(), grace));
        (server, None, stand_in_tokens(args.tokens))
    };
    announce(addr, &tokens, args.token_file.as_deref())?;
    server.await?;
    if let Some(auth) = auth {
        report_calls(&auth, tokens.len());
    }
    Ok(())
}

/// Sends `GET /hello` with each RPT to the proxy at `addr` over one keep-alive connection
/// (so the layer caches every RPT), and checks each is answered `200`.
async fn warm_over_http(
    addr: SocketAddr,
    tokens: &[String],
) -> Result<(), Box<dyn std::error::Error>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let conn = tokio::spawn(conn);
    for token in tokens {
        sender.ready().await?;
        let req = Request::get(PATH)
            .header(HOST, addr.to_string())
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .body(Empty::<Bytes>::new())?;
        let resp = sender.send_request(req).await?;
        let status = resp.status();
        resp.into_body().collect().await?;
        if status != StatusCode::OK {
            return Err(format!("warming the cache through the proxy: an RPT got {status}").into());
        }
    }
    drop(sender);
    conn.await??;
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

/// Caches each RPT by sending one request through `app`, and checks that this made one
/// introspection call per RPT.
async fn warm<S>(
    app: &S,
    auth: &TestAs,
    tokens: &[String],
) -> Result<(), Box<dyn std::error::Error>>
where
    S: tower::Service<Request<Body>, Response = axum::response::Response> + Clone,
    S::Error: std::error::Error + 'static,
{
    for token in tokens {
        let req = Request::get(PATH)
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())?;
        let status = app.clone().oneshot(req).await?.status();
        if status != StatusCode::OK {
            return Err(format!("warming the cache: an RPT got {status}").into());
        }
    }
    let calls = auth.count(Endpoint::Introspection);
    if calls != u64::try_from(tokens.len())? {
        return Err(format!(
            "warming the cache made {calls} introspection calls for {} RPTs",
            tokens.len()
        )
        .into());
    }
    Ok(())
}

/// Starts the AS, registers the resource, builds the layer (`/hello`, `GET` needs `read`; a
/// cache keeping entries for a day) and mints `count` RPTs, none of them cached yet.
async fn uma_layer(
    count: usize,
) -> Result<(UmaLayer, TestAs, Vec<String>), Box<dyn std::error::Error>> {
    let (auth, resource_id) = start_as().await?;
    let cache = IntrospectionCache::builder()
        .max_entries(u64::try_from(count)?.max(10_000))
        .max_ttl(Duration::from_secs(24 * 3_600))
        .build();
    let layer = UmaLayer::discover(auth.issuer(), RS_ID, RS_SECRET)
        .insecure_allow_http()
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

    let tokens = mint(&auth, &resource_id, count)?;
    Ok((layer, auth, tokens))
}

/// `count` RPTs for bob, valid for two days, granting `read` on `resource_id` (and one more
/// permission each, so that they differ as real RPTs do).
fn mint(
    auth: &TestAs,
    resource_id: &str,
    count: usize,
) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let now = i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs())?;
    let tokens: Vec<String> = (0..count)
        .map(|n| {
            auth.mint_rpt(RptSpec {
                sub: Some("bob".into()),
                client_id: Some("bench-app".into()),
                exp: Some(now + 2 * 24 * 3_600),
                iat: Some(now),
                permissions: vec![
                    RptPermission::new(resource_id, ["read"]),
                    RptPermission::new(format!("album-{n}"), ["view"]),
                ],
                ..RptSpec::default()
            })
        })
        .collect();
    Ok(tokens)
}
