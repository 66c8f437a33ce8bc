//! Resident memory per cached introspection result.
//!
//! Fills the cache of a real [`UmaLayer`] with 100,000 RPTs, each carrying two permissions,
//! by sending one request per RPT through the layer, and prints the growth of the process's
//! resident set (`VmRSS`) per entry (target: at most 1 KiB). The cache is built with
//! `max_entries(200_000)`: such a result weighs one "typical entry" (two before results were
//! stored compactly; see `IntrospectionCacheBuilder::max_entries`), so all 100,000 fit.
//!
//! The authorization server runs in a child process (this same executable, started with
//! `UMA_MEMORY_BENCH_AS` set): the test AS records every request it receives, which would
//! otherwise be counted as the cache's memory. The child mints the RPTs and writes them to a
//! file; the parent reads them, warms the layer, its HTTP client and the cache with the first
//! 1,000 RPTs, takes the baseline, then fills the other 99,000; the growth is divided by
//! 99,000.
//!
//! Run with `cargo bench --bench memory`. Without `--bench` (as `cargo test --benches` runs
//! it) it fills 3,000 entries only.
//!
//! [`UmaLayer`]: tower_uma::UmaLayer
#![allow(clippy::print_stdout, reason = "a bench reports its figures on stdout")]

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use axum::Router;
use futures_util::StreamExt;
use http::{HeaderValue, StatusCode};
use tower::ServiceExt;
use uma_test_as::Endpoint;

/// Set in the child process's environment: the file the minted RPTs go to.
const CHILD_ENV: &str = "UMA_MEMORY_BENCH_AS";
/// Set in the child process's environment: how many RPTs to mint.
const COUNT_ENV: &str = "UMA_MEMORY_BENCH_RPTS";
/// RPTs that warm the client, the layer and the cache before the baseline.
const WARM: usize = 1_000;
/// Requests in flight while filling.
const CONCURRENCY: usize = 64;

/// The child: starts the AS, mints `count` RPTs into the file named by [`CHILD_ENV`], prints
/// the issuer and the resource id, and serves until its stdin closes.
fn child(path: &str, count: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let env = rt.block_on(support::start());
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).expect("the token file"));
    for n in 0..count {
        writeln!(file, "{}", env.rpt(n)).expect("writing a token");
    }
    file.flush().expect("writing the tokens");
    println!("{} {}", env.auth.issuer(), env.resource_id);
    std::io::stdout().flush().expect("stdout");
    // Serve on the runtime's worker until the parent closes our stdin.
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    let introspections = env.auth.count(Endpoint::Introspection);
    eprintln!("memory bench AS: {introspections} introspection requests served");
    drop(env);
    drop(rt);
}

/// Sends one request per token through `svc`, [`CONCURRENCY`] at a time; each must be
/// allowed.
async fn send_all(svc: &Router, tokens: &[HeaderValue]) {
    futures_util::stream::iter(tokens)
        .map(|auth| svc.clone().oneshot(support::request(Some(auth))))
        .buffer_unordered(CONCURRENCY)
        .for_each(|resp| async move {
            assert_eq!(resp.expect("infallible").status(), StatusCode::OK);
        })
        .await;
}

/// The resident set size of this process, in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("a VmRSS line")
        * 1024
}

fn main() {
    if std::env::var(CHILD_ENV).is_err() && !support::selected("memory") {
        return;
    }
    let total: usize = if support::bench_mode() {
        100_000
    } else {
        3_000
    };
    let fill = total - WARM;
    if let Ok(path) = std::env::var(CHILD_ENV) {
        let count = std::env::var(COUNT_ENV)
            .ok()
            .and_then(|n| n.parse().ok())
            .expect("the parent says how many RPTs to mint");
        child(&path, count);
        return;
    }

    let started = Instant::now();
    let token_file: PathBuf =
        std::env::temp_dir().join(format!("uma-memory-bench-{}.tokens", std::process::id()));
    let mut as_process = Command::new(std::env::current_exe().expect("this executable"))
        .env(CHILD_ENV, &token_file)
        .env(COUNT_ENV, total.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the AS child process starts");
    let mut line = String::new();
    BufReader::new(as_process.stdout.take().expect("piped stdout"))
        .read_line(&mut line)
        .expect("the child's first line");
    let (issuer, resource_id) = line.trim().split_once(' ').expect("issuer and resource id");
    let tokens: Vec<HeaderValue> = std::fs::read_to_string(&token_file)
        .expect("the token file")
        .lines()
        .map(support::bearer)
        .collect();
    let _ = std::fs::remove_file(&token_file);
    // `HeaderValue`s made from a `String` allocate their shared buffer at the first clone:
    // clone each once now, so the requests' clones allocate nothing that outlives them.
    for t in &tokens {
        drop(t.clone());
    }
    assert_eq!(tokens.len(), total);
    let minted = started.elapsed();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    rt.block_on(async {
        let cache = tower_uma::IntrospectionCache::builder()
            .max_entries(200_000)
            .max_ttl(std::time::Duration::from_secs(3_600))
            .build();
        let layer = support::layer_at(issuer, resource_id, cache.clone()).await;
        let svc = support::app().layer(layer);
        send_all(&svc, &tokens[..WARM]).await;
        assert_eq!(cache.entry_count().await, WARM as u64);
        let before = rss();
        let fill_started = Instant::now();
        send_all(&svc, &tokens[WARM..]).await;
        let entries = cache.entry_count().await;
        let after = rss();
        let filled = fill_started.elapsed();

        let grown = after.saturating_sub(before);
        let per_entry = grown as f64 / fill as f64;
        println!(
            "memory: {entries} entries cached through the layer for {total} RPTs with 2 permissions each \
             ({WARM} before the baseline, {fill} measured)"
        );
        println!(
            "  VmRSS {:.1} MiB -> {:.1} MiB: +{:.1} MiB, {per_entry:.0} bytes per entry",
            before as f64 / 1_048_576.0,
            after as f64 / 1_048_576.0,
            grown as f64 / 1_048_576.0
        );
        let verdict = if per_entry <= 1_024.0 { "met" } else { "MISSED" };
        println!("  target: at most 1,024 bytes per entry: {verdict}");
        println!(
            "  (minting {total} RPTs in the child took {:.1} s; filling {fill} took {:.1} s, {:.0} introspections/s)",
            minted.as_secs_f64(),
            filled.as_secs_f64(),
            fill as f64 / filled.as_secs_f64()
        );
        assert_eq!(entries, total as u64, "every RPT is cached");
    });
    drop(as_process.stdin.take());
    let _ = as_process.wait();
}
