//! `uma-forwarder`: the smallest reverse proxy hyper allows, the baseline `run-proxy.sh`
//! measures the `uma-proxy` binary against.
//!
//! ```text
//! uma-forwarder --upstream http://127.0.0.1:8080 [--listen 127.0.0.1:0]
//! ```
//!
//! A hyper HTTP/1.1 server with keep-alive, and for each request hyper-util's legacy client
//! (pooled keep-alive connections, `TCP_NODELAY`) to `--upstream`: the request's path and
//! query on the upstream's authority, the hop-by-hop headers removed (RFC 9110 §7.6.1:
//! `Connection` and every header it names, `Keep-Alive`, `Proxy-Connection`,
//! `Proxy-Authenticate`, `Proxy-Authorization`, `TE`, `Trailer`, `Transfer-Encoding`,
//! `Upgrade`) both ways, bodies streamed both ways, `502` when the upstream fails. Nothing
//! else: no authorization, no forwarding headers, no metrics, no logs, no timeout.
//!
//! It runs on the multi-thread Tokio runtime with its default worker count, like `uma-proxy`
//! (pinned to one CPU, both get one worker). The first line on stdout is
//! `listening on http://ADDR`, once it serves; SIGINT or SIGTERM ends it (so valgrind writes
//! its output).
#![allow(
    clippy::print_stdout,
    reason = "the forwarder reports its address on stdout"
)]

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;

use clap::Parser;
use http::header::{self, HeaderMap, HeaderName};
use http::uri::{Authority, Uri};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use hyper::body::{Bytes, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// The smallest hyper-util reverse proxy: the baseline of `run-proxy.sh`.
#[derive(Debug, Parser)]
#[command(name = "uma-forwarder", version)]
struct Args {
    /// Where requests go: http://HOST:PORT.
    #[arg(long)]
    upstream: String,
    /// The address to listen on; port 0 picks a free one (the first line of output says which).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
}

type Body = UnsyncBoxBody<Bytes, hyper::Error>;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let authority: Authority = args
        .upstream
        .strip_prefix("http://")
        .ok_or("--upstream must be http://HOST:PORT")?
        .trim_end_matches('/')
        .parse()?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(serve(args.listen, authority))
}

async fn serve(listen: SocketAddr, authority: Authority) -> Result<(), Box<dyn std::error::Error>> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Incoming> =
        Client::builder(TokioExecutor::new()).build(connector);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on http://{}", listener.local_addr()?)?;
        out.flush()?;
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        let (stream, _) = tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = term.recv() => return Ok(()),
            accepted = listener.accept() => accepted?,
        };
        let _ = stream.set_nodelay(true);
        let client = client.clone();
        let authority = authority.clone();
        let service =
            hyper::service::service_fn(move |req| forward(client.clone(), authority.clone(), req));
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// One request to the upstream and its response back, hop-by-hop headers removed.
async fn forward(
    client: Client<HttpConnector, Incoming>,
    authority: Authority,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let (mut parts, body) = req.into_parts();
    let mut uri = Uri::builder().scheme("http").authority(authority);
    if let Some(pq) = parts.uri.path_and_query() {
        uri = uri.path_and_query(pq.clone());
    }
    let Ok(uri) = uri.build() else {
        return Ok(bad_gateway());
    };
    parts.uri = uri;
    remove_hop_by_hop(&mut parts.headers);
    match client.request(Request::from_parts(parts, body)).await {
        Ok(resp) => {
            let (mut parts, body) = resp.into_parts();
            remove_hop_by_hop(&mut parts.headers);
            Ok(Response::from_parts(parts, body.boxed_unsync()))
        }
        Err(_) => Ok(bad_gateway()),
    }
}

fn bad_gateway() -> Response<Body> {
    let mut resp = Response::new(
        Full::new(Bytes::from_static(b"Bad Gateway\n"))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *resp.status_mut() = StatusCode::BAD_GATEWAY;
    resp
}

/// The hop-by-hop headers of RFC 9110 §7.6.1 (and the old `Keep-Alive`/`Proxy-Connection`).
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes the hop-by-hop headers, those `Connection` names included.
fn remove_hop_by_hop(headers: &mut HeaderMap) {
    if let Some(connection) = headers.get(header::CONNECTION) {
        let named: Vec<HeaderName> = connection
            .as_bytes()
            .split(|&b| b == b',')
            .filter_map(|t| HeaderName::from_bytes(t.trim_ascii()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}
