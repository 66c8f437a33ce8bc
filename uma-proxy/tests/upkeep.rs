//! Memory of the metrics recorder while nothing scrapes `/metrics`.
//!
//! The Prometheus recorder buffers every histogram sample until its handle's upkeep folds the
//! buffer into a fixed-size summary. This test is a binary of its own because it measures
//! the process's resident memory, which tests running beside it would disturb.
#![allow(clippy::unwrap_used, reason = "test code: a failure is a test failure")]

mod common;

use std::time::Duration;

use metrics::{Key, Level, Metadata, Recorder};
use metrics_exporter_prometheus::PrometheusBuilder;
use tokio::sync::oneshot;
use uma_proxy::{Config, Overrides, run};

use common::{RS_SECRET, SECRET_ENV, SOON, config, start_as, start_upstream};

/// The resident memory of this process, in bytes.
fn vm_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib * 1024
}

/// `run` with a recorder handle and no admin listener (so nothing can scrape): histogram
/// samples recorded for several upkeep intervals must not pile up. Each buffered sample
/// takes 16 bytes; the test records 9 million over about six seconds (144 MiB if nothing
/// drains them) and allows half of that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn histogram_samples_are_drained_without_a_scrape() {
    const BATCHES: u64 = 60;
    const PER_BATCH: u64 = 150_000;
    const SAMPLE_BYTES: u64 = 16;

    let auth = start_as().await;
    let up = start_upstream().await;
    let text = config(&auth, &up.url(), "");
    let env = |n: &str| (n == SECRET_ENV).then(|| RS_SECRET.to_owned());
    let config = Config::from_toml_str(&text, "upkeep.toml", &Overrides::default(), env).unwrap();
    assert!(config.admin_listen.is_none());

    let recorder = PrometheusBuilder::new().build_recorder();
    let (listening_tx, listening) = oneshot::channel();
    let (stop, stopped) = oneshot::channel::<()>();
    let proxy = tokio::spawn(run(
        config,
        Some(recorder.handle()),
        move |addr| {
            let _ = listening_tx.send(addr);
        },
        async {
            let _ = stopped.await;
        },
    ));
    tokio::time::timeout(SOON, listening)
        .await
        .unwrap()
        .unwrap();

    static METADATA: Metadata<'static> = Metadata::new(module_path!(), Level::INFO, None);
    static KEY: Key = Key::from_static_name("upkeep_test_seconds");
    let histogram = recorder.register_histogram(&KEY, &METADATA);
    let before = vm_rss();
    let mut peak = before;
    for _ in 0..BATCHES {
        for i in 0..PER_BATCH {
            histogram.record(i as f64 * 1e-6);
        }
        peak = peak.max(vm_rss());
        // Real time: the drain is the recorder's upkeep task inside `run`, on a real interval,
        // and what is measured is this process's memory while it runs.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let grown = peak.saturating_sub(before);
    let undrained = BATCHES * PER_BATCH * SAMPLE_BYTES;
    assert!(
        grown < undrained / 2,
        "resident memory grew by {} MiB while {} MiB of samples were recorded: the samples \
         are not drained without a scrape",
        grown >> 20,
        undrained >> 20
    );
    // The drained samples reached the summary. (A sample written into a buffer block at the
    // very moment the upkeep swaps it out can be lost: the exporter's buffer allows that.)
    let rendered = recorder.handle().render();
    let count: u64 = rendered
        .lines()
        .find_map(|l| l.strip_prefix("upkeep_test_seconds_count "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sample count in\n{rendered}"));
    assert!(
        count * 100 >= BATCHES * PER_BATCH * 99,
        "{count} samples of {} reached the summary",
        BATCHES * PER_BATCH
    );

    stop.send(()).unwrap();
    tokio::time::timeout(SOON, proxy)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
