//! `uma-loadgen`: a small HTTP/1.1 load generator with keep-alive connections.
//!
//! ```text
//! uma-loadgen --url http://127.0.0.1:8080/hello --connections 4 --duration 5s
//! uma-loadgen --url http://127.0.0.1:8080/hello --requests 10000 --token-file /tmp/rpts
//! uma-loadgen --url http://127.0.0.1:8080/items/1 --header 'x-api: 1' --duration 2s
//! ```
//!
//! Each connection is one hyper HTTP/1.1 client connection (`hyper::client::conn::http1`)
//! sending its requests one after the other and reading every body to the end. With
//! `--token-file` each request carries `Authorization: Bearer T`, the tokens taken in turn;
//! `--header` adds any header. A response whose status is not `--expect-status` counts as an
//! error and makes the exit status 1.
//!
//! The last line on stdout is machine-readable:
//! `requests=N errors=E seconds=S rps=R connections=C client_cpu=F p50_ms=A p99_ms=B`
//! (`client_cpu`: this process's CPU time over the measured wall time; near 1.0 means the load
//! generator, not the server, may be the bottleneck; `p50_ms`, `p99_ms`: the median and 99th
//! percentile latency of the counted requests, from writing the request to reading the whole
//! response, in milliseconds).
#![allow(
    clippy::print_stdout,
    reason = "the load generator reports its figures on stdout"
)]

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use http::header::{AUTHORIZATION, HOST, HeaderName};
use http::{HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A keep-alive HTTP/1.1 load generator.
#[derive(Debug, Parser)]
#[command(name = "uma-loadgen", version)]
struct Args {
    /// The URL to request (http only), e.g. http://127.0.0.1:8080/hello.
    #[arg(long)]
    url: Uri,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Measure for this long (e.g. 5s, 500ms); the default when --requests is not given.
    #[arg(long, value_parser = parse_duration, conflicts_with = "requests")]
    duration: Option<Duration>,
    /// Send exactly this many requests (over all connections), then stop.
    #[arg(long)]
    requests: Option<u64>,
    /// Run this long before measuring (duration mode only).
    #[arg(long, value_parser = parse_duration, default_value = "0s")]
    warmup: Duration,
    /// A file of bearer tokens, one per line, sent in turn as `Authorization: Bearer T`.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// An extra request header, `Name: value`; may be repeated.
    #[arg(long = "header", value_parser = parse_header)]
    headers: Vec<(HeaderName, HeaderValue)>,
    /// The request method.
    #[arg(long, default_value = "GET")]
    method: Method,
    /// The status every response must have.
    #[arg(long, default_value_t = 200)]
    expect_status: u16,
    /// Use a minimal HTTP/1.1 client instead of hyper's: requests serialised in advance,
    /// responses parsed only for the status and `Content-Length` (no chunked bodies). It
    /// costs less CPU per request, so that one core of load can saturate one core of server.
    #[arg(long)]
    raw: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (number, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((s, "s"), |i| s.split_at(i));
    let value: f64 = number.parse().map_err(|_| format!("not a duration: {s}"))?;
    let secs = match unit {
        "s" => value,
        "ms" => value / 1e3,
        "m" => value * 60.0,
        _ => return Err(format!("unknown unit in {s} (use s, ms or m)")),
    };
    Ok(Duration::from_secs_f64(secs))
}

fn parse_header(s: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = s
        .split_once(':')
        .ok_or_else(|| format!("expected `Name: value`, got {s}"))?;
    let name = HeaderName::try_from(name.trim()).map_err(|e| e.to_string())?;
    let value = HeaderValue::try_from(value.trim()).map_err(|e| e.to_string())?;
    Ok((name, value))
}

/// What every connection shares.
struct Plan {
    uri: Uri,
    authority: String,
    method: Method,
    headers: Vec<(HeaderName, HeaderValue)>,
    tokens: Vec<HeaderValue>,
    expect: u16,
    /// With `--raw`: the serialised requests, one per token (or a single one).
    raw: Vec<Vec<u8>>,
    /// Requests not yet started, in `--requests` mode.
    remaining: Option<AtomicU64>,
    /// Duration mode: when counting starts and when everything stops.
    measure_from: Instant,
    stop_at: Option<Instant>,
    /// Connection `i` uses tokens `i`, `i + stride`, `i + 2 stride`, …
    stride: usize,
    errors: AtomicU64,
    first_error: std::sync::Mutex<Option<String>>,
}

impl Plan {
    fn request(&self, n: usize) -> Request<Empty<Bytes>> {
        let mut req = Request::builder()
            .method(self.method.clone())
            .uri(self.uri.path_and_query().map_or("/", |p| p.as_str()))
            .header(HOST, self.authority.as_str());
        for (name, value) in &self.headers {
            req = req.header(name, value);
        }
        if !self.tokens.is_empty() {
            req = req.header(AUTHORIZATION, self.tokens[n % self.tokens.len()].clone());
        }
        req.body(Empty::new()).expect("a valid request")
    }

    fn take_one(&self) -> bool {
        match &self.remaining {
            Some(left) => left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok(),
            None => self.stop_at.is_none_or(|t| Instant::now() < t),
        }
    }

    fn error(&self, what: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_error.lock().expect("not poisoned");
        first.get_or_insert(what);
    }
}

/// The latencies of the requests one connection completed inside the measured window, in
/// microseconds.
type Latencies = Vec<u32>;

/// Microseconds since `t0`, saturating.
fn micros_since(t0: Instant) -> u32 {
    u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX)
}

/// The `q` quantile (0..=1) of sorted latencies, in milliseconds (nearest rank).
fn quantile_ms(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    f64::from(sorted[rank.clamp(1, sorted.len()) - 1]) / 1e3
}

/// One keep-alive connection: requests until the plan says stop; returns the latencies of
/// those that completed inside the measured window.
async fn connection(
    plan: Arc<Plan>,
    index: usize,
) -> Result<Latencies, Box<dyn std::error::Error + Send + Sync>> {
    let stream = TcpStream::connect(plan.authority.as_str()).await?;
    stream.set_nodelay(true)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut counted = Latencies::new();
    let mut n = index;
    while plan.take_one() {
        sender.ready().await?;
        let t0 = Instant::now();
        let resp = sender.send_request(plan.request(n)).await?;
        let status = resp.status();
        resp.into_body().collect().await?;
        if status.as_u16() != plan.expect {
            plan.error(format!("status {status}"));
        }
        if plan.remaining.is_some() || Instant::now() >= plan.measure_from {
            counted.push(micros_since(t0));
        }
        n += plan.stride;
    }
    Ok(counted)
}

/// One keep-alive connection of the minimal client (`--raw`); as [`connection`].
async fn raw_connection(
    plan: Arc<Plan>,
    index: usize,
) -> Result<Latencies, Box<dyn std::error::Error + Send + Sync>> {
    let mut stream = TcpStream::connect(plan.authority.as_str()).await?;
    stream.set_nodelay(true)?;
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut counted = Latencies::new();
    let mut n = index;
    while plan.take_one() {
        let t0 = Instant::now();
        stream.write_all(&plan.raw[n % plan.raw.len()]).await?;
        let status = loop {
            if let Some((status, len)) = parse_response(&buf)? {
                buf.drain(..len);
                break status;
            }
            if stream.read_buf(&mut buf).await? == 0 {
                return Err("the server closed the connection".into());
            }
        };
        if status != plan.expect {
            plan.error(format!("status {status}"));
        }
        if plan.remaining.is_some() || Instant::now() >= plan.measure_from {
            counted.push(micros_since(t0));
        }
        n += plan.stride;
    }
    Ok(counted)
}

/// The status and total length of the first response in `buf`, once it is complete.
fn parse_response(buf: &[u8]) -> Result<Option<(u16, usize)>, String> {
    let Some(head) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head_text = std::str::from_utf8(&buf[..head]).map_err(|_| "a non-UTF-8 response head")?;
    let mut lines = head_text.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or("a malformed status line")?;
    let mut length = 0;
    for line in lines {
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        if name.eq_ignore_ascii_case("content-length") {
            length = value
                .trim()
                .parse()
                .map_err(|_| "a malformed Content-Length")?;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err("chunked responses need the hyper client (drop --raw)".into());
        }
    }
    let total = head + 4 + length;
    Ok((buf.len() >= total).then_some((status, total)))
}

/// The requests of the minimal client, serialised: one per token, or one without.
fn serialise(
    method: &Method,
    uri: &Uri,
    authority: &str,
    headers: &[(HeaderName, HeaderValue)],
    tokens: &[HeaderValue],
) -> Vec<Vec<u8>> {
    let one = |token: Option<&HeaderValue>| {
        let mut req = Vec::new();
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        req.extend_from_slice(
            format!("{method} {path} HTTP/1.1\r\nhost: {authority}\r\n").as_bytes(),
        );
        for (name, value) in headers
            .iter()
            .map(|(n, v)| (n, v))
            .chain(token.map(|t| (&AUTHORIZATION, t)))
        {
            req.extend_from_slice(name.as_str().as_bytes());
            req.extend_from_slice(b": ");
            req.extend_from_slice(value.as_bytes());
            req.extend_from_slice(b"\r\n");
        }
        req.extend_from_slice(b"\r\n");
        req
    };
    if tokens.is_empty() {
        vec![one(None)]
    } else {
        tokens.iter().map(|t| one(Some(t))).collect()
    }
}

/// CPU seconds used by this process so far (utime + stime from /proc/self/stat).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after_name = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 of proc(5), counted from the state field (3).
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let args = Args::parse();
    if args.url.scheme_str() != Some("http") {
        return Err("only http:// URLs are supported".into());
    }
    let authority = args
        .url
        .authority()
        .ok_or("the URL has no host")?
        .to_string();
    let tokens = match &args.token_file {
        Some(path) => std::fs::read_to_string(path)?
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|t| HeaderValue::try_from(format!("Bearer {}", t.trim())))
            .collect::<Result<Vec<_>, _>>()?,
        None => Vec::new(),
    };
    let connections = args.connections.max(1);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let started = Instant::now();
        let (measure_from, stop_at) = match args.requests {
            Some(_) => (started, None),
            None => {
                let from = started + args.warmup;
                (from, Some(from + args.duration.unwrap_or(Duration::from_secs(5))))
            }
        };
        let raw = if args.raw {
            serialise(&args.method, &args.url, &authority, &args.headers, &tokens)
        } else {
            Vec::new()
        };
        let plan = Arc::new(Plan {
            raw,
            uri: args.url.clone(),
            authority,
            method: args.method,
            headers: args.headers,
            tokens,
            expect: args.expect_status,
            remaining: args.requests.map(AtomicU64::new),
            measure_from,
            stop_at,
            stride: connections,
            errors: AtomicU64::new(0),
            first_error: std::sync::Mutex::new(None),
        });
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..connections {
            if args.raw {
                tasks.spawn(raw_connection(Arc::clone(&plan), i));
            } else {
                tasks.spawn(connection(Arc::clone(&plan), i));
            }
        }
        if args.requests.is_none() && !args.warmup.is_zero() {
            tokio::time::sleep_until(measure_from.into()).await;
        }
        let cpu_at_start = cpu_seconds().unwrap_or(0.0);
        let mut latencies = Latencies::new();
        while let Some(done) = tasks.join_next().await {
            latencies.extend(done??);
        }
        latencies.sort_unstable();
        let total = latencies.len() as u64;
        let (p50, p99) = (quantile_ms(&latencies, 0.50), quantile_ms(&latencies, 0.99));
        // Requests still in flight at the deadline finish and are counted: include their time.
        let seconds = measure_from.elapsed().as_secs_f64();
        let cpu = cpu_seconds().unwrap_or(0.0) - cpu_at_start;
        let errors = plan.errors.load(Ordering::Relaxed);
        let rps = total as f64 / seconds;
        println!(
            "uma-loadgen: {total} requests in {seconds:.2} s over {connections} connections: {rps:.0} req/s, {errors} errors, latency p50 {p50:.3} ms, p99 {p99:.3} ms"
        );
        println!(
            "requests={total} errors={errors} seconds={seconds:.3} rps={rps:.1} connections={connections} client_cpu={:.2} p50_ms={p50:.3} p99_ms={p99:.3}",
            cpu / seconds
        );
        if errors > 0 {
            let first = plan.first_error.lock().expect("not poisoned").clone().unwrap_or_default();
            return Err(format!("{errors} responses were not {} (first: {first})", plan.expect).into());
        }
        Ok(())
    })
}
