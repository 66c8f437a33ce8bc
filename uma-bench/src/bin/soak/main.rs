//! `uma-soak`: a long run of the `uma-proxy` binary under load, with churning tokens and an
//! authorization server that keeps failing, checked for what must hold over hours.
//!
//! ```text
//! uma-soak --proxy target/release/uma-proxy --mode no-admin  --duration 180
//! uma-soak --proxy target/release/uma-proxy --mode unscraped --duration 3600
//! uma-soak --proxy target/release/uma-proxy --mode scraped   --max-outage-as-calls off
//! ```
//!
//! It starts, in this process, a `uma-test-as` and an upstream that checks every request it
//! receives; spawns the proxy binary against them (its configuration written to a temporary
//! file: a cache of `--cache-entries`, `max_ttl` `--max-ttl`, AS timeout `--as-timeout`);
//! mints `--tokens` RPTs and sends a mix of requests over `--connections` keep-alive
//! connections: mostly valid RPTs picked at random (many more than the cache holds, so it
//! churns), plus revoked RPTs, RPTs lacking the scope, unknown tokens, no token, a public route
//! and an unmapped one. One valid RPT is revoked every `--revoke-every` seconds (and replaced).
//!
//! Every `--phase` seconds the AS changes state, in this cycle: healthy, refusing (every call
//! to its token, introspection and permission endpoints has its connection closed without an
//! answer), healthy, answering 503, healthy, hanging (`--hang` seconds before answering,
//! longer than the proxy's AS timeout). After each outage a fresh RPT is sent until it is
//! allowed: the recovery time.
//!
//! Meanwhile it samples the proxy's resident memory and open file descriptors every second,
//! reads its log (JSON lines on standard error), and with `--mode scraped` reads `/metrics`
//! every `--scrape-every` seconds (`unscraped` configures the admin listener but never reads
//! it; `no-admin` has none, the default configuration). At the end it stops the proxy with
//! SIGTERM and prints the figures and one `PASS`/`FAIL` line per check; the exit status is 1
//! when a check failed, 2 when the run itself could not be carried out. The checks are listed
//! in `uma-bench/README.md` (the soak section); `uma-bench/run-soak.sh` builds the binaries and
//! runs the modes one after the other.
#![allow(
    clippy::print_stdout,
    reason = "the soak run reports its figures on stdout"
)]

mod faults;
mod load;
mod proxy;
mod report;
mod tokens;
mod upstream;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use uma_test_as::{AuthServer, ResourceDescription, TestAs};

use crate::report::Report;
use crate::tokens::Tokens;

/// The resource server's client at the AS.
const RS_ID: &str = "soak-api";
const RS_SECRET: &str = "soak-api-secret-7d21";

/// Who may be checked, and how.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// No `admin_listen`: the default configuration, no `/metrics`.
    NoAdmin,
    /// `admin_listen` set, `/metrics` never read during the run.
    Unscraped,
    /// `admin_listen` set, `/metrics` read every `--scrape-every` seconds.
    Scraped,
}

/// A bound that can be switched off (`off`) to report a figure without judging it.
#[derive(Clone, Copy, Debug)]
struct Bound(Option<f64>);

fn parse_bound(s: &str) -> Result<Bound, String> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(Bound(None));
    }
    s.parse::<f64>()
        .map(|v| Bound(Some(v)))
        .map_err(|_| format!("expected a number or `off`, got {s}"))
}

/// A soak run of the uma-proxy binary: load, churning tokens and a failing AS.
#[derive(Debug, Parser)]
#[command(name = "uma-soak", version)]
struct Args {
    /// The uma-proxy binary (build it with `cargo build --release -p uma-proxy`).
    #[arg(long)]
    proxy: PathBuf,
    /// Admin listener and scraping.
    #[arg(long, value_enum, default_value_t = Mode::NoAdmin)]
    mode: Mode,
    /// Seconds of load, rounded up to whole phases ending with a healthy one.
    #[arg(long, default_value_t = 300)]
    duration: u64,
    /// Seconds between two changes of the AS's state.
    #[arg(long, default_value_t = 14)]
    phase: u64,
    /// Valid RPTs in use at any time.
    #[arg(long, default_value_t = 6600)]
    tokens: usize,
    /// The proxy's `[cache] max_entries`.
    #[arg(long, default_value_t = 2000)]
    cache_entries: u64,
    /// The proxy's `[cache] max_ttl`, in seconds.
    #[arg(long, default_value_t = 30)]
    max_ttl: u64,
    /// The proxy's `[cache] stale_if_error`, in seconds.
    #[arg(long, default_value_t = 0)]
    stale_if_error: u64,
    /// The proxy's `[authorization_server] timeout`, in seconds.
    #[arg(long, default_value_t = 3)]
    as_timeout: u64,
    /// How long the AS waits before answering in the hanging phases, in seconds.
    #[arg(long, default_value_t = 4)]
    hang: u64,
    /// Concurrent keep-alive connections sending requests back to back.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Seconds between two revocations of a valid RPT.
    #[arg(long, default_value_t = 2)]
    revoke_every: u64,
    /// Seconds between two reads of `/metrics` (`--mode scraped`).
    #[arg(long, default_value_t = 2)]
    scrape_every: u64,
    /// Seconds left out of the memory and descriptor comparison at the start: the cache
    /// fills, and with a metrics recorder its latency summaries grow to their working size
    /// (every series has seen its extremes within a fault cycle, then a 60 s window).
    #[arg(long, default_value_t = 150)]
    settle: u64,
    /// How far (percent) the median RSS and descriptor count of the last third may be from
    /// those of the first third (samples from the second half of healthy phases only).
    #[arg(long, default_value_t = 10.0)]
    flat_tolerance: f64,
    /// Longest recovery allowed, in seconds (or `off`).
    #[arg(long, default_value = "30", value_parser = parse_bound)]
    max_recovery: Bound,
    /// Most proxy log lines per second allowed during outages (or `off`).
    #[arg(long, default_value = "5", value_parser = parse_bound)]
    max_outage_log_rate: Bound,
    /// Most calls the AS may receive in one outage phase, all faulted endpoints together
    /// (or `off`).
    #[arg(long, default_value = "200", value_parser = parse_bound)]
    max_outage_as_calls: Bound,
}

/// What every task of the run shares.
pub(crate) struct Run {
    t0: Instant,
    /// The current phase; its fault is [`faults::Fault::of`] it.
    phase: AtomicU64,
    /// Set when the load must stop.
    stop: AtomicBool,
    pub(crate) tokens: Tokens,
    pub(crate) report: Report,
    /// The registered resource.
    resource_id: String,
    /// A revoked RPT may still be let through this long after its revocation (ms): a cached
    /// answer lives `max_ttl` (+ `stale_if_error` while the AS fails), plus the AS timeout and
    /// a second for requests in flight.
    revoke_bound_ms: u64,
    /// An allowed answer during an outage must follow an allowed answer from a healthy AS for
    /// the same RPT by at most this long (ms): the same bound.
    justify_ms: u64,
}

impl Run {
    /// Milliseconds since the start.
    pub(crate) fn now_ms(&self) -> u64 {
        u64::try_from(self.t0.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub(crate) fn phase(&self) -> u64 {
        self.phase.load(Ordering::SeqCst)
    }

    pub(crate) fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("uma-soak: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(soak(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("uma-soak: the run could not be carried out: {e}");
            ExitCode::from(2)
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn start_as() -> Result<(TestAs, String), BoxError> {
    let auth = AuthServer::builder()
        .client(RS_ID, RS_SECRET)
        .spawn()
        .await?;
    let resource_id = auth.register_resource(
        "alice",
        ResourceDescription {
            name: Some("album".into()),
            resource_scopes: vec!["view".into(), "edit".into()],
            ..Default::default()
        },
    );
    Ok((auth, resource_id))
}

/// One run; `Ok(true)` when every check passed.
async fn soak(args: Args) -> Result<bool, BoxError> {
    // Whole phases, the last one healthy (so that every outage is followed by a recovery).
    let mut phases = args.duration.div_ceil(args.phase.max(1)).max(1);
    if faults::Fault::of(phases - 1) != faults::Fault::Healthy {
        phases += 1;
    }
    let phase_ms = args.phase.max(1) * 1000;
    let bound_ms = (args.max_ttl + args.stale_if_error + args.as_timeout + 1) * 1000;
    println!(
        "uma-soak: mode {:?}, {} phases of {} s ({} s), {} RPTs against a cache of {}, \
         max_ttl {} s, stale_if_error {} s, AS timeout {} s, AS hangs {} s, {} connections",
        args.mode,
        phases,
        args.phase,
        phases * args.phase,
        args.tokens,
        args.cache_entries,
        args.max_ttl,
        args.stale_if_error,
        args.as_timeout,
        args.hang,
        args.connections
    );

    let (auth, resource_id) = start_as().await?;
    let auth = Arc::new(auth);
    let run = Arc::new(Run {
        t0: Instant::now(),
        phase: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        tokens: Tokens::new(),
        report: Report::new(phases),
        resource_id,
        revoke_bound_ms: bound_ms,
        justify_ms: bound_ms,
    });
    let upstream = upstream::start(Arc::clone(&run)).await?;
    let proxy = proxy::spawn(&args, &auth, upstream, Arc::clone(&run)).await?;
    println!(
        "uma-soak: proxy pid {} listening on {}{}",
        proxy.pid,
        proxy.addr,
        proxy
            .admin
            .map(|a| format!(", admin on {a}"))
            .unwrap_or_default()
    );

    run.tokens
        .mint_initial(&auth, &run.resource_id, args.tokens);
    let t_load = run.now_ms();
    let sampler = tokio::spawn(proxy::sample(
        Arc::clone(&run),
        proxy.pid,
        Arc::clone(&auth),
    ));
    let scraper = match (args.mode, proxy.admin) {
        (Mode::Scraped, Some(admin)) => Some(tokio::spawn(load::scrape(
            Arc::clone(&run),
            admin,
            Duration::from_secs(args.scrape_every.max(1)),
        ))),
        _ => None,
    };
    let revoker = tokio::spawn(tokens::revoke_periodically(
        Arc::clone(&run),
        Arc::clone(&auth),
        Duration::from_secs(args.revoke_every.max(1)),
    ));
    let mut connections = tokio::task::JoinSet::new();
    for _ in 0..args.connections.max(1) {
        connections.spawn(load::connection(Arc::clone(&run), proxy.addr));
    }

    let schedule = faults::Schedule {
        phases,
        phase_ms,
        hang: Duration::from_secs(args.hang),
        proxy: proxy.addr,
        max_probe: Duration::from_millis(phase_ms),
    };
    faults::run_schedule(&run, &auth, &schedule, async {
        run.stop.store(true, Ordering::SeqCst);
        while connections.join_next().await.is_some() {}
    })
    .await;
    let load_ms = run.now_ms().saturating_sub(t_load);
    revoker.abort();
    if let Some(s) = scraper {
        s.abort();
    }
    sampler.abort();

    let metrics = match proxy.admin {
        Some(admin) => load::get(admin, "/metrics", None)
            .await
            .ok()
            .map(|(_, body)| body),
        None => None,
    };
    let exit = proxy.stop().await;
    let outcome = report::evaluate(&run, &args, load_ms, &exit, metrics.as_deref());
    Ok(outcome)
}
